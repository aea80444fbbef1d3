//! Built-in `decap`: a tc (tcx) ingress program that strips the outer
//! headers lwtkit's `encap` pushes (IP-in-IP in all four family mixes,
//! GRE, FOU, GUE) so a peer needs no kernel tunnel module. The inner
//! packet is re-injected into the device's ingress, where the stack sees
//! it with the right protocol.
//!
//! It takes only tunnel packets addressed to this host: the outer
//! destination must be in the local trie (the host's local routes, or
//! `--local`) and the kernel's FIB must not route it elsewhere. Every
//! packet it does not take leaves untouched with `TC_ACT_UNSPEC`, so later
//! tcx programs and classic tc filters still see it, and is counted by the
//! reason it was passed.
#![no_std]
#![no_main]

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{
        bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, bpf_fib_lookup as FibLookup,
        BPF_FIB_LKUP_RET_FWD_DISABLED, BPF_FIB_LKUP_RET_NOT_FWDED, BPF_FIB_LOOKUP_SKIP_NEIGH,
        BPF_F_INGRESS, TC_ACT_SHOT, TC_ACT_UNSPEC,
    },
    btf_maps::{lpm_trie::Key, Array, LpmTrie, PerCpuArray},
    helpers::{bpf_fib_lookup, bpf_redirect, bpf_skb_adjust_room},
    macros::btf_map,
    programs::TcContext,
};
use lwtkit_common::{
    encap::{decap, decap_flags, decap_stat, DecapConfig, EncapKey, MAX_DECAP_ADDRS},
    maps, Counters,
};
use lwtkit_ebpf::{gpl_license, map_named};

#[btf_map]
static DECAP_CONFIG: Array<DecapConfig, 1> = Array::new();
map_named!(DECAP_CONFIG, maps::decap::CONFIG);

/// Packets and bytes per [`decap_stat`] slot.
#[btf_map]
static DECAP_STATS: PerCpuArray<Counters, { decap_stat::COUNT as usize }> = PerCpuArray::new();
map_named!(DECAP_STATS, maps::decap::STATS);

/// Outer destinations that are this host's (family tag + address, like the
/// encap trie's keys).
#[btf_map]
static DECAP_LOCAL: LpmTrie<[u8; 20], u8, { MAX_DECAP_ADDRS as usize }> = LpmTrie::new();
map_named!(DECAP_LOCAL, maps::decap::LOCAL);

/// Outer sources allowed when `decap_flags::REMOTE_FILTER` is set.
#[btf_map]
static DECAP_REMOTE: LpmTrie<[u8; 20], u8, { MAX_DECAP_ADDRS as usize }> = LpmTrie::new();
map_named!(DECAP_REMOTE, maps::decap::REMOTE);

const ETH_HLEN: usize = 14;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IPPROTO_IPIP: u8 = 4;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_IPV6: u8 = 41;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_GRE: u8 = 47;

#[inline(always)]
fn bump(slot: u32, len: u32) {
    if let Some(c) = DECAP_STATS.get_ptr_mut(slot) {
        // SAFETY: this CPU's slot.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += u64::from(len);
        }
    }
}

/// What to do with a packet: strip `strip` bytes after the Ethernet header
/// (the inner packet is IPv6 if `inner_v6`), or pass it, counted in a slot.
enum Verdict {
    Take { strip: u32, inner_v6: bool },
    Pass(u32),
}

/// The outer IP header's facts the decision needs.
struct Outer {
    v6: bool,
    /// Length of the outer IP header (with an IPv6 fragment header).
    l3len: u32,
    proto: u8,
    /// A fragment; `later` if not the first one (no tunnel header in it).
    fragment: bool,
    later: bool,
    src: [u8; 16],
    dst: [u8; 16],
}

/// The outer header of a packet whose protocol this device takes, or the
/// counter slot of why it is left alone. Unrelated traffic costs two
/// loads and a comparison.
#[inline(always)]
fn parse_outer(ctx: &TcContext, cfg: &DecapConfig) -> Result<Outer, u32> {
    let eth: [u8; 14] = ctx.load(0).map_err(|_| decap_stat::NOT_TUNNEL)?;
    let mut o = Outer {
        v6: false,
        l3len: 20,
        proto: 0,
        fragment: false,
        later: false,
        src: [0; 16],
        dst: [0; 16],
    };
    match u16::from_be_bytes([eth[12], eth[13]]) {
        0x0800 => {
            let h: [u8; 20] = ctx.load(ETH_HLEN).map_err(|_| decap_stat::NOT_TUNNEL)?;
            o.proto = h[9];
            if !wanted(&o, cfg) {
                return Err(decap_stat::NOT_TUNNEL);
            }
            let total = u32::from(u16::from_be_bytes([h[2], h[3]]));
            if h[0] >> 4 != 4 || total < 20 || total + ETH_HLEN as u32 > ctx.len() {
                return Err(decap_stat::MALFORMED);
            }
            if h[0] != 0x45 {
                return Err(decap_stat::UNSUPPORTED);
            }
            // The stack would drop a header whose checksum is wrong.
            let mut sum = 0u32;
            let mut i = 0;
            while i < 20 {
                sum += u32::from(u16::from_be_bytes([h[i], h[i + 1]]));
                i += 2;
            }
            sum = (sum & 0xffff) + (sum >> 16);
            sum = (sum & 0xffff) + (sum >> 16);
            if sum != 0xffff {
                return Err(decap_stat::MALFORMED);
            }
            let frag = u16::from_be_bytes([h[6], h[7]]);
            o.fragment = frag & 0x3fff != 0;
            o.later = frag & 0x1fff != 0;
            o.src[..4].copy_from_slice(&h[12..16]);
            o.dst[..4].copy_from_slice(&h[16..20]);
        }
        0x86dd => {
            let h: [u8; 40] = ctx.load(ETH_HLEN).map_err(|_| decap_stat::NOT_TUNNEL)?;
            o.v6 = true;
            o.l3len = 40;
            o.proto = h[6];
            if o.proto == IPPROTO_FRAGMENT {
                let f: [u8; 8] = ctx
                    .load(ETH_HLEN + 40)
                    .map_err(|_| decap_stat::NOT_TUNNEL)?;
                o.proto = f[0];
                o.l3len = 48;
                o.fragment = true;
                o.later = u16::from_be_bytes([f[2], f[3]]) >> 3 != 0;
            }
            if !wanted(&o, cfg) {
                return Err(decap_stat::NOT_TUNNEL);
            }
            o.src.copy_from_slice(&h[8..24]);
            o.dst.copy_from_slice(&h[24..40]);
        }
        _ => return Err(decap_stat::NOT_TUNNEL),
    }
    Ok(o)
}

/// The inner header's version nibble at `at` must be `want` (4 or 6).
#[inline(always)]
fn inner_is(ctx: &TcContext, at: usize, want: u8) -> Result<(), u32> {
    let b: u8 = ctx.load(at).map_err(|_| decap_stat::INNER)?;
    if b >> 4 == want {
        Ok(())
    } else {
        Err(decap_stat::INNER)
    }
}

/// Whether this device takes the outer protocol at all.
#[inline(always)]
fn wanted(o: &Outer, cfg: &DecapConfig) -> bool {
    let k = cfg.kinds;
    match (o.proto, o.v6) {
        (IPPROTO_IPIP, false) => k & decap::IPIP != 0,
        (IPPROTO_IPV6, false) => k & decap::SIT != 0,
        (IPPROTO_IPV6, true) => k & decap::IP6IP6 != 0,
        (IPPROTO_IPIP, true) => k & decap::IP4IN6 != 0,
        (IPPROTO_GRE, _) => k & decap::GRE != 0,
        (IPPROTO_UDP, _) => k & (decap::FOU | decap::GUE) != 0,
        _ => false,
    }
}

/// Outer header length and inner family of a tunnel packet this device
/// is configured for, or the counter slot of why it is not one.
#[inline(always)]
fn tunnel(ctx: &TcContext, o: &Outer, cfg: &DecapConfig) -> Result<(u32, bool), u32> {
    let at = ETH_HLEN + o.l3len as usize;
    match o.proto {
        IPPROTO_IPIP => inner_is(ctx, at, 4).map(|_| (o.l3len, false)),
        IPPROTO_IPV6 => inner_is(ctx, at, 6).map(|_| (o.l3len, true)),
        IPPROTO_GRE => {
            let g: [u8; 4] = ctx.load(at).map_err(|_| decap_stat::MALFORMED)?;
            // Checksum, routing, sequence, recursion, flags, version: not ours.
            if g[0] & !0x20 != 0 || g[1] != 0 {
                return Err(decap_stat::UNSUPPORTED);
            }
            let keyed = g[0] & 0x20 != 0;
            let mut len = o.l3len + 4;
            if cfg.flags & decap_flags::GRE_KEY != 0 {
                let key: [u8; 4] = ctx.load(at + 4).map_err(|_| decap_stat::MALFORMED)?;
                if !keyed || u32::from_be_bytes(key) != cfg.gre_key {
                    return Err(decap_stat::GRE_KEY);
                }
                len += 4;
            } else if keyed {
                return Err(decap_stat::GRE_KEY);
            }
            let inner = ETH_HLEN + len as usize;
            match u16::from_be_bytes([g[2], g[3]]) {
                0x0800 => inner_is(ctx, inner, 4).map(|_| (len, false)),
                0x86dd => inner_is(ctx, inner, 6).map(|_| (len, true)),
                _ => Err(decap_stat::UNSUPPORTED),
            }
        }
        IPPROTO_UDP => {
            let u: [u8; 8] = ctx.load(at).map_err(|_| decap_stat::NOT_TUNNEL)?;
            let dport = u16::from_be_bytes([u[2], u[3]]);
            let payload = at + 8;
            if cfg.kinds & decap::FOU != 0 && dport == cfg.fou_port {
                // FOU has no header: the inner version says the family.
                let b: u8 = ctx.load(payload).map_err(|_| decap_stat::INNER)?;
                match b >> 4 {
                    4 => Ok((o.l3len + 8, false)),
                    6 => Ok((o.l3len + 8, true)),
                    _ => Err(decap_stat::INNER),
                }
            } else if cfg.kinds & decap::GUE != 0 && dport == cfg.gue_port {
                gue(ctx, o, payload)
            } else {
                Err(decap_stat::NOT_TUNNEL)
            }
        }
        _ => Err(decap_stat::NOT_TUNNEL),
    }
}

/// GUE (draft-ietf-intarea-gue): variant 0 with no options and no flags
/// carrying IPv4 or IPv6, or variant 1 (the IP header right after UDP).
#[inline(always)]
fn gue(ctx: &TcContext, o: &Outer, at: usize) -> Result<(u32, bool), u32> {
    let g: [u8; 4] = ctx.load(at).map_err(|_| decap_stat::MALFORMED)?;
    match g[0] >> 6 {
        0 => {
            if g[0] & 0x20 != 0 {
                return Err(decap_stat::GUE_CONTROL);
            }
            if g[0] & 0x1f != 0 || g[2] != 0 || g[3] != 0 {
                return Err(decap_stat::UNSUPPORTED);
            }
            let len = o.l3len + 12;
            match g[1] {
                IPPROTO_IPIP => inner_is(ctx, at + 4, 4).map(|_| (len, false)),
                IPPROTO_IPV6 => inner_is(ctx, at + 4, 6).map(|_| (len, true)),
                _ => Err(decap_stat::UNSUPPORTED),
            }
        }
        // Variant 1: the first two bits of an IP version field are 01.
        1 => match g[0] >> 4 {
            4 => Ok((o.l3len + 8, false)),
            6 => Ok((o.l3len + 8, true)),
            _ => Err(decap_stat::INNER),
        },
        _ => Err(decap_stat::UNSUPPORTED),
    }
}

#[inline(always)]
fn trie_key(o: &Outer, addr: &[u8; 16]) -> Key<[u8; 20]> {
    let mut k = Key::new(0, [0u8; 20]);
    if o.v6 {
        k.data[3] = 6;
        k.data[4..20].copy_from_slice(addr);
        k.prefix_len = EncapKey::FAMILY_BITS + 128;
    } else {
        k.data[3] = 4;
        k.data[4..8].copy_from_slice(&addr[..4]);
        k.prefix_len = EncapKey::FAMILY_BITS + 32;
    }
    k
}

/// Whether the outer destination is this host's: in the local trie, and
/// not a destination the kernel would now forward or reject (an address
/// removed since the trie was filled). `bpf_fib_lookup` cannot say "local"
/// itself: it answers NOT_FWDED for local, broadcast, multicast and
/// unroutable destinations alike, and FWD_DISABLED for everything when the
/// device does not forward; those answers leave the trie's word standing.
#[inline(always)]
fn is_local(ctx: &TcContext, o: &Outer) -> bool {
    if DECAP_LOCAL.get(&trie_key(o, &o.dst)).is_none() {
        return false;
    }
    // SAFETY: bpf_fib_lookup is plain data; all-zero is a valid value.
    let mut p: FibLookup = unsafe { core::mem::zeroed() };
    p.l4_protocol = o.proto;
    // SAFETY: reading the device index from the context.
    p.ifindex = unsafe { (*ctx.skb.skb).ingress_ifindex };
    // SAFETY: writing plain integers into the lookup's address unions.
    unsafe {
        if o.v6 {
            p.family = AF_INET6;
            for i in 0..4 {
                let w = i * 4;
                p.__bindgen_anon_3.ipv6_src[i] =
                    u32::from_ne_bytes([o.src[w], o.src[w + 1], o.src[w + 2], o.src[w + 3]]);
                p.__bindgen_anon_4.ipv6_dst[i] =
                    u32::from_ne_bytes([o.dst[w], o.dst[w + 1], o.dst[w + 2], o.dst[w + 3]]);
            }
        } else {
            p.family = AF_INET;
            p.__bindgen_anon_3.ipv4_src =
                u32::from_ne_bytes([o.src[0], o.src[1], o.src[2], o.src[3]]);
            p.__bindgen_anon_4.ipv4_dst =
                u32::from_ne_bytes([o.dst[0], o.dst[1], o.dst[2], o.dst[3]]);
        }
    }
    // SAFETY: the context and a lookup struct of the right size.
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.skb.skb as *mut c_void,
            &mut p,
            size_of::<FibLookup>() as i32,
            BPF_FIB_LOOKUP_SKIP_NEIGH,
        )
    };
    rc < 0
        || rc == i64::from(BPF_FIB_LKUP_RET_NOT_FWDED)
        || rc == i64::from(BPF_FIB_LKUP_RET_FWD_DISABLED)
}

#[inline(always)]
fn decide(ctx: &TcContext, cfg: &DecapConfig) -> Verdict {
    let o = match parse_outer(ctx, cfg) {
        Ok(o) => o,
        Err(slot) => return Verdict::Pass(slot),
    };
    // A later fragment has no tunnel header to look at; only IP-in-IP and
    // GRE can be told from the protocol number alone.
    let shape = if o.later {
        if o.proto == IPPROTO_UDP {
            return Verdict::Pass(decap_stat::NOT_TUNNEL);
        }
        (0, false)
    } else {
        match tunnel(ctx, &o, cfg) {
            Ok(s) => s,
            Err(slot) => return Verdict::Pass(slot),
        }
    };
    if !is_local(ctx, &o) {
        return Verdict::Pass(decap_stat::NOT_LOCAL);
    }
    if cfg.flags & decap_flags::REMOTE_FILTER != 0
        && DECAP_REMOTE.get(&trie_key(&o, &o.src)).is_none()
    {
        return Verdict::Pass(decap_stat::NOT_REMOTE);
    }
    if o.fragment {
        return Verdict::Pass(decap_stat::FRAGMENT);
    }
    Verdict::Take {
        strip: shape.0,
        inner_v6: shape.1,
    }
}

#[unsafe(no_mangle)]
#[unsafe(link_section = "tcx/ingress")]
pub fn decap_ingress(skb: *mut aya_ebpf::bindings::__sk_buff) -> i32 {
    let ctx = TcContext::new(skb);
    let Some(cfg) = DECAP_CONFIG.get(0) else {
        return TC_ACT_UNSPEC;
    };
    let (strip, inner_v6) = match decide(&ctx, cfg) {
        Verdict::Take { strip, inner_v6 } => (strip, inner_v6),
        Verdict::Pass(slot) => {
            bump(slot, ctx.len());
            // tcx "next": later tcx programs and classic tc filters run.
            return TC_ACT_UNSPEC;
        }
    };
    // SAFETY: shrinking room right after the MAC header by the outer headers.
    let rc = unsafe { bpf_skb_adjust_room(skb, -(strip as i32), BPF_ADJ_ROOM_MAC, 0) };
    let ethertype: [u8; 2] = if inner_v6 { [0x86, 0xdd] } else { [0x08, 0x00] };
    if rc != 0 || ctx.store(12, &ethertype, 0).is_err() {
        bump(decap_stat::REFUSED, ctx.len());
        return TC_ACT_SHOT as i32;
    }
    bump(decap_stat::TAKEN, ctx.len());
    // Back into this device's ingress: the stack re-reads the EtherType.
    // SAFETY: plain helper call on this skb's own device.
    let ifindex = unsafe { (*skb).ifindex };
    unsafe { bpf_redirect(ifindex, u64::from(BPF_F_INGRESS)) as i32 }
}

gpl_license!();
