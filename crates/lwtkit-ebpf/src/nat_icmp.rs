//! ICMP and ICMPv6 errors through a stateless NAT rule, on `lwt_xmit` (the
//! only LWT hook that may write the packet). An error carries the start of
//! the packet it reports; that packet went the other way through the
//! gateway, so the rule's mapping applies to its opposite address (and
//! port). Done as the kernel's NAT does it (`nf_nat_icmp_reply_translation`
//! in net/netfilter/nf_nat_proto.c), but incrementally and statelessly:
//!
//! - the embedded address, with the embedded IPv4 header checksum;
//! - the embedded TCP/UDP port when the rule rewrites one;
//! - the embedded L4 checksum whenever its field is in the packet (it
//!   covers the embedded addresses and ports: an incremental update gives
//!   back the checksum the original sender computed even when the datagram
//!   is cut, as Linux does for a whole TCP header and any UDP header); a
//!   UDP checksum of zero (none) stays zero;
//! - the ICMP checksum, which covers the whole ICMP message (and for ICMPv6
//!   the pseudo-header with the outer addresses);
//! - the outer address the rule rewrites, with the outer IPv4 checksum.
//!
//! Every update is incremental, so an error that arrived with a bad
//! checksum keeps a bad one (the receiver drops it; Linux recomputes and
//! therefore verifies first). Checksum fields inside the ICMP payload are
//! data, not this packet's L4 checksum: they are updated with
//! `bpf_l3_csum_replace`, which changes only the field and never looks at
//! `skb->ip_summed`. The ICMP checksum itself goes through
//! `bpf_l4_csum_replace`, non-pseudo for payload changes, `BPF_F_PSEUDO_HDR`
//! (with `BPF_F_IPV6`) for the ICMPv6 outer address, so that a
//! `CHECKSUM_COMPLETE` packet's `skb->csum` stays right: every data change
//! is matched by a checksum field change in the same packet. Stores use no
//! flags (no `BPF_F_RECOMPUTE_CSUM`) for the same reason.
//!
//! Nothing is written before everything is read and checked: a packet that
//! is not translated comes back untouched with the reason.
use aya_ebpf::{helpers::bpf_skb_load_bytes, programs::SkBuffContext};
use lwtkit_common::{
    filter::MAX_EXT_HEADERS,
    nat_icmp::{outcome, Translation},
};

/// `bpf_l4_csum_replace` flags (include/uapi/linux/bpf.h).
const BPF_F_PSEUDO_HDR: u64 = 1 << 4;
/// Linux 6.16+: the pseudo-header change is an IPv6 address, whose change
/// and the checksum's cancel out in `skb->csum` (older kernels refuse the
/// flag with -EINVAL; [`ipv6_pseudo_update`] then goes without it).
const BPF_F_IPV6: u64 = 1 << 7;

const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;

/// Where the ICMP (or ICMPv6) header of a packet starts.
#[derive(Clone, Copy)]
pub struct Icmp {
    pub v6: bool,
    /// Offset from the start of the IP header.
    pub off: usize,
}

/// The ICMP or ICMPv6 header of the packet, when it has one and is not a
/// later fragment. Any message type: [`translate`] tells errors apart.
#[inline(always)]
pub fn locate(ctx: &SkBuffContext) -> Option<Icmp> {
    let len = ctx.len() as usize;
    let h: [u8; 20] = ctx.load(0).ok()?;
    match h[0] >> 4 {
        4 => {
            let ihl = usize::from(h[0] & 0xf) * 4;
            let frag = u16::from_be_bytes([h[6], h[7]]) & 0x1fff;
            (ihl >= 20 && ihl <= len && h[9] == IPPROTO_ICMP && frag == 0).then_some(Icmp { v6: false, off: ihl })
        }
        6 => match walk_v6(ctx, h[6], 40) {
            Walk::L4 { proto: IPPROTO_ICMPV6, off } if off <= len => Some(Icmp { v6: true, off }),
            _ => None,
        },
        _ => None,
    }
}

/// Where an IPv6 extension header chain led.
pub enum Walk {
    /// The upper-layer header `proto` starts at `off`.
    L4 { proto: u8, off: usize },
    /// A fragment that is not the first: no upper-layer header.
    Later,
    /// The chain runs past the end of the packet.
    Cut,
    /// More extension headers than the walk's bound.
    TooLong,
}

/// Walks IPv6 extension headers from `off`, the first being `nh`.
#[inline(always)]
pub fn walk_v6(ctx: &SkBuffContext, mut nh: u8, mut off: usize) -> Walk {
    for _ in 0..MAX_EXT_HEADERS {
        match nh {
            0 | 43 | 60 | 51 => {
                let Ok(e) = ctx.load::<[u8; 2]>(off & 0xffff) else { return Walk::Cut };
                off += if nh == 51 { (usize::from(e[1]) + 2) * 4 } else { (usize::from(e[1]) + 1) * 8 };
                nh = e[0];
            }
            44 => {
                let Ok(f) = ctx.load::<[u8; 4]>(off & 0xffff) else { return Walk::Cut };
                if u16::from_be_bytes([f[2], f[3]]) >> 3 != 0 {
                    return Walk::Later;
                }
                off += 8;
                nh = f[0];
            }
            _ => return Walk::L4 { proto: nh, off },
        }
    }
    match nh {
        0 | 43 | 60 | 51 | 44 => Walk::TooLong,
        _ => Walk::L4 { proto: nh, off },
    }
}

/// Translates the ICMP error at `icmp` by `t` (the mapping its rule applies
/// to the outer header); returns an [`outcome`]. [`outcome::FAILED`] means
/// a helper failed after the first write: drop the packet. Any other
/// outcome but `TRANSLATED*` leaves the packet as it was.
/// An ICMPv6 error's addresses are read into `a`.
#[inline(always)]
pub fn translate(ctx: &SkBuffContext, icmp: Icmp, t: &Translation, a: &mut V6Addrs) -> u32 {
    if icmp.v6 != (t.v6 != 0) {
        return outcome::MISMATCH;
    }
    if icmp.v6 {
        return translate_v6(ctx, icmp.off, t, a);
    }
    match translate_v4(ctx, icmp.off, t) {
        Ok(code) | Err(code) => code,
    }
}

/// The embedded L4 fields to rewrite, found before anything is written.
struct L4Fields {
    /// The port's offset, its bytes before and after.
    port: Option<(usize, [u8; 2], [u8; 2])>,
    /// The checksum field's offset.
    csum: Option<usize>,
    udp: bool,
}

/// Finds the embedded L4 fields at `l4` (`None`: the upper-layer header is
/// not in the packet). `src_side`: the embedded packet's source is the
/// translated side.
#[inline(always)]
fn l4_fields(ctx: &SkBuffContext, l4: Option<(u8, usize)>, v6: bool, src_side: bool, t: &Translation) -> Result<L4Fields, u32> {
    let mut f = L4Fields { port: None, csum: None, udp: false };
    let Some((proto, l4)) = l4 else {
        // Ports asked for but no upper-layer header: a port rule on a
        // later fragment or a cut chain; the address alone is still right.
        return Ok(f);
    };
    let len = ctx.len() as usize;
    let (ports, csum_off) = match proto {
        IPPROTO_TCP => (true, 16),
        IPPROTO_UDP => (true, 6),
        IPPROTO_ICMPV6 if v6 => (false, 2),
        _ => (false, 0),
    };
    f.udp = proto == IPPROTO_UDP;
    if ports && t.to_port != 0 {
        let at = l4 + if src_side { 0 } else { 2 };
        let Ok(old) = ctx.load::<[u8; 2]>(at & 0xffff) else { return Err(outcome::MALFORMED) };
        if t.from_port != 0 && u16::from_be_bytes(old) != t.from_port {
            return Err(outcome::MISMATCH);
        }
        f.port = Some((at, old, t.to_port.to_be_bytes()));
    }
    if csum_off != 0 && l4 + csum_off + 2 <= len {
        let at = l4 + csum_off;
        let Ok(c) = ctx.load::<[u8; 2]>(at & 0xffff) else { return Err(outcome::MALFORMED) };
        if !(f.udp && c == [0, 0]) {
            f.csum = Some(at);
        }
    }
    Ok(f)
}

#[inline(always)]
fn raw16(b: [u8; 2]) -> u64 {
    u64::from(u16::from_ne_bytes(b))
}

#[inline(always)]
fn raw32(b: [u8; 4]) -> u64 {
    u64::from(u32::from_ne_bytes(b))
}

/// `~from + to` over 16 bytes in one's complement, folded, in the byte
/// order the kernel's checksum code sums memory in: the `diff` argument of
/// the csum_replace helpers (size 0).
#[inline(always)]
fn diff16(from: &[u8; 16], to: &[u8; 16]) -> u64 {
    let mut acc = 0u32;
    for i in 0..8 {
        let f = u16::from_ne_bytes([from[2 * i], from[2 * i + 1]]);
        let n = u16::from_ne_bytes([to[2 * i], to[2 * i + 1]]);
        acc += u32::from(!f) + u32::from(n);
    }
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    u64::from(acc)
}

/// Rewrites the embedded L4 port and checksum (the checksum by `addr`, an
/// update of the pseudo-header address: `(from, to, size)` as
/// `bpf_l3_csum_replace` takes them), and carries both changes into the
/// ICMP checksum at `icmp_csum`.
#[inline(always)]
fn rewrite_l4(ctx: &SkBuffContext, f: &L4Fields, addr: (u64, u64, u64), icmp_csum: usize) -> Result<(), u32> {
    let failed = |_| outcome::FAILED;
    if let Some(c) = f.csum {
        let old: [u8; 2] = ctx.load(c).map_err(failed)?;
        ctx.l3_csum_replace(c, addr.0, addr.1, addr.2).map_err(failed)?;
        if let Some((_, p_old, p_new)) = f.port {
            ctx.l3_csum_replace(c, raw16(p_old), raw16(p_new), 2).map_err(failed)?;
        }
        let mut new: [u8; 2] = ctx.load(c).map_err(failed)?;
        if f.udp && new == [0, 0] {
            // Zero means "no checksum" in UDP: the same sum is 0xFFFF.
            new = [0xff, 0xff];
            ctx.store(c, &new, 0).map_err(failed)?;
        }
        ctx.l4_csum_replace(icmp_csum, raw16(old), raw16(new), 2).map_err(failed)?;
    }
    if let Some((at, old, new)) = f.port {
        ctx.store(at, &new, 0).map_err(failed)?;
        ctx.l4_csum_replace(icmp_csum, raw16(old), raw16(new), 2).map_err(failed)?;
    }
    Ok(())
}

#[inline(always)]
fn is_error_v4(kind: u8) -> bool {
    // Destination unreachable (port unreachable, fragmentation needed, ...),
    // time exceeded, parameter problem. Not redirects: a redirect names a
    // gateway on the far side of the NAT (Linux's NAT drops those about a
    // NATed connection); not source quench (deprecated, RFC 6633).
    matches!(kind, 3 | 11 | 12)
}

#[inline(always)]
fn is_error_v6(kind: u8) -> bool {
    // Destination unreachable, packet too big, time exceeded, parameter
    // problem; 128 and up are informational (echo, neighbour discovery).
    matches!(kind, 1..=4)
}

#[inline(always)]
fn translate_v4(ctx: &SkBuffContext, icmp: usize, t: &Translation) -> Result<u32, u32> {
    let len = ctx.len() as usize;
    let h: [u8; 8] = ctx.load(icmp & 0xffff).map_err(|_| outcome::MALFORMED)?;
    if !is_error_v4(h[0]) {
        return Ok(outcome::NOT_ERROR);
    }
    let e = icmp + 8;
    let ip: [u8; 20] = ctx.load(e & 0xffff).map_err(|_| outcome::MALFORMED)?;
    let ihl = usize::from(ip[0] & 0xf) * 4;
    if ip[0] >> 4 != 4 || ihl < 20 || e + ihl > len {
        return Err(outcome::MALFORMED);
    }
    let from = [t.from[0], t.from[1], t.from[2], t.from[3]];
    let to = [t.to[0], t.to[1], t.to[2], t.to[3]];
    let dst = t.dst != 0;
    let (outer_at, inner_at) = if dst { (16, 12) } else { (12, 16) };
    let outer: [u8; 4] = ctx.load(outer_at).map_err(|_| outcome::MALFORMED)?;
    // Read again rather than taken from `ip`: byte by byte, the compiler
    // spills each one (a frame the verifier's 512 bytes cannot spare).
    let inner: [u8; 4] = ctx.load((e + inner_at) & 0xffff).map_err(|_| outcome::MALFORMED)?;
    let from32 = u32::from_ne_bytes(from);
    if u32::from_ne_bytes(outer) != from32 || u32::from_ne_bytes(inner) != from32 {
        return Err(outcome::MISMATCH);
    }
    let later = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff != 0;
    let l4 = if later { None } else { Some((ip[9], e + ihl)) };
    let f = l4_fields(ctx, l4, false, dst, t)?;

    // Everything is checked: make the bytes to write writable at once, so
    // that a failure comes before the first write.
    let mut need = e + 20;
    if let Some(c) = f.csum {
        need = need.max(c + 2);
    }
    if let Some((p, _, _)) = f.port {
        need = need.max(p + 2);
    }
    ctx.pull_data(need as u32).map_err(|_| outcome::FAILED)?;

    let failed = |_| outcome::FAILED;
    let addr = (raw32(from), raw32(to), 4);
    rewrite_l4(ctx, &f, addr, icmp + 2)?;
    // The embedded address and its header checksum change by opposite
    // amounts: the ICMP checksum does not move for them.
    ctx.store(e + inner_at, &to, 0).map_err(failed)?;
    ctx.l3_csum_replace(e + 10, addr.0, addr.1, 4).map_err(failed)?;
    ctx.store(outer_at, &to, 0).map_err(failed)?;
    ctx.l3_csum_replace(10, addr.0, addr.1, 4).map_err(failed)?;
    Ok(if f.csum.is_some() { outcome::TRANSLATED_L4 } else { outcome::TRANSLATED })
}

/// The outer and embedded addresses an ICMPv6 error is checked by, read
/// into memory the caller provides: the filter program's per-CPU scratch
/// (its stack is spent by the matcher), the test program's stack.
#[repr(C)]
#[derive(Default)]
pub struct V6Addrs {
    pub outer: [u8; 16],
    pub inner: [u8; 16],
}

/// Reads the 16 bytes at `off` into `to` (no copy through the stack).
#[inline(always)]
fn load16(ctx: &SkBuffContext, off: usize, to: &mut [u8; 16]) -> Result<(), u32> {
    // SAFETY: `to` is 16 writable bytes.
    let rc = unsafe { bpf_skb_load_bytes(ctx.skb.skb.cast(), (off & 0xffff) as u32, to.as_mut_ptr().cast(), 16) };
    if rc == 0 {
        Ok(())
    } else {
        Err(outcome::MALFORMED)
    }
}

/// [`translate`] of an ICMPv6 error, with its addresses read into `a`.
#[inline(always)]
pub fn translate_v6(ctx: &SkBuffContext, icmp: usize, t: &Translation, a: &mut V6Addrs) -> u32 {
    match translate_v6_in(ctx, icmp, t, a) {
        Ok(code) | Err(code) => code,
    }
}

#[inline(always)]
fn translate_v6_in(ctx: &SkBuffContext, icmp: usize, t: &Translation, a: &mut V6Addrs) -> Result<u32, u32> {
    let kind: u8 = ctx.load(icmp & 0xffff).map_err(|_| outcome::MALFORMED)?;
    if !is_error_v6(kind) {
        return Ok(outcome::NOT_ERROR);
    }
    let e = icmp + 8;
    // The embedded IPv6 header must be there whole (its last byte is).
    let _: u8 = ctx.load((e + 39) & 0xffff).map_err(|_| outcome::MALFORMED)?;
    let ip: [u8; 8] = ctx.load(e & 0xffff).map_err(|_| outcome::MALFORMED)?;
    if ip[0] >> 4 != 6 {
        return Err(outcome::MALFORMED);
    }
    let dst = t.dst != 0;
    let (outer_at, inner_at) = if dst { (24, 8) } else { (8, 24) };
    load16(ctx, outer_at, &mut a.outer)?;
    load16(ctx, e + inner_at, &mut a.inner)?;
    if a.outer != t.from || a.inner != t.from {
        return Err(outcome::MISMATCH);
    }
    let len = ctx.len() as usize;
    let l4 = match walk_v6(ctx, ip[6], e + 40) {
        Walk::L4 { proto, off } if off <= len => Some((proto, off)),
        // Cut inside the chain, or a later fragment: no upper layer here.
        Walk::L4 { .. } | Walk::Later | Walk::Cut => None,
        Walk::TooLong => return Err(outcome::MALFORMED),
    };
    let f = l4_fields(ctx, l4, true, dst, t)?;

    let mut need = e + 40;
    if let Some(c) = f.csum {
        need = need.max(c + 2);
    }
    if let Some((p, _, _)) = f.port {
        need = need.max(p + 2);
    }
    ctx.pull_data(need as u32).map_err(|_| outcome::FAILED)?;

    let failed = |_| outcome::FAILED;
    let diff = diff16(&t.from, &t.to);
    let icmp_csum = icmp + 2;
    rewrite_l4(ctx, &f, (0, diff, 0), icmp_csum)?;
    // The embedded address is ICMPv6 payload (no header checksum in IPv6).
    ctx.store(e + inner_at, &t.to, 0).map_err(failed)?;
    ctx.l4_csum_replace(icmp_csum, 0, diff, 0).map_err(failed)?;
    ctx.store(outer_at, &t.to, 0).map_err(failed)?;
    ipv6_pseudo_update(ctx, icmp_csum, diff).map_err(failed)?;
    Ok(if f.csum.is_some() { outcome::TRANSLATED_L4 } else { outcome::TRANSLATED })
}

/// Updates the L4 checksum at `csum` for a change of an IPv6 address in the
/// pseudo-header by `diff` ([`diff16`]).
#[inline(always)]
pub fn ipv6_pseudo_update(ctx: &SkBuffContext, csum: usize, diff: u64) -> Result<(), aya_ebpf::cty::c_long> {
    match ctx.l4_csum_replace(csum, 0, diff, BPF_F_PSEUDO_HDR | BPF_F_IPV6) {
        Ok(()) => Ok(()),
        // Before 6.16 the flag is unknown (-EINVAL) and nothing was done.
        Err(-22) => ctx.l4_csum_replace(csum, 0, diff, BPF_F_PSEUDO_HDR),
        Err(e) => Err(e),
    }
}
