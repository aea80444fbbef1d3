//! Built-in `encap`: pushes the outer headers of the tunnel that the
//! encapsulation trie holds for the packet's destination in the routing
//! table of its route, then asks for a new route lookup of the outer
//! packet. A program cannot see which route (or table) invoked it, so the
//! table is a load-time constant: one loaded instance per table serves
//! every route of that table; changing a remote is a map update.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::bpf_lwt_encap_mode::BPF_LWT_ENCAP_IP,
    btf_maps::{lpm_trie::Key, LpmTrie, PerCpuArray},
    helpers::{bpf_csum_diff, bpf_get_hash_recalc, bpf_get_prandom_u32, bpf_lwt_push_encap},
    macros::btf_map,
    programs::SkBuffContext,
};
use lwtkit_common::{
    encap::{flags, EncapEntry, EncapStats, EncapKey, MAX_HEADER, MAX_TUNNELS, NO_TUNNEL_SLOT},
    maps,
    verdict::{BPF_DROP, BPF_LWT_REROUTE},
};
use lwtkit_ebpf::{gpl_license, lwt_program, map_named};

#[btf_map]
static TUNNELS: LpmTrie<[u8; EncapKey::DATA_LEN], EncapEntry, { MAX_TUNNELS as usize }> =
    LpmTrie::new();
map_named!(TUNNELS, maps::encap::TUNNELS);

/// The table of the routes this instance serves, set by user space before
/// load (libbpf freezes the map, so the verifier reads it as a constant).
/// The section is `lwtkit_common::maps::encap::TABLE_SECTION`.
#[unsafe(no_mangle)]
#[unsafe(link_section = ".rodata.table")]
static ENCAP_TABLE: u32 = 0;
const _: () = assert!(maps::same(".rodata.table", maps::encap::TABLE_SECTION));

/// Scratch space for summing packet bytes.
#[btf_map]
static SCRATCH: PerCpuArray<[u8; SUM_CHUNK], 1> = PerCpuArray::new();

/// The header block of packets whose headers must be complete before the
/// push (`lwt_in`, and GSO packets of some types on `lwt_xmit`; too large
/// for the 512-byte stack beside the checksum code).
#[btf_map]
static HEADER: PerCpuArray<[u8; MAX_HEADER], 1> = PerCpuArray::new();

#[btf_map]
static TUNNEL_STATS: PerCpuArray<EncapStats, { MAX_TUNNELS as usize }> = PerCpuArray::new();
map_named!(TUNNEL_STATS, maps::encap::TUNNEL_STATS);
map_named!(HEADER, maps::encap::HEADER);
map_named!(SCRATCH, maps::encap::SCRATCH);

#[inline(always)]
fn stats(slot: u32) -> Option<&'static mut EncapStats> {
    // SAFETY: this CPU's slot; no other writer.
    TUNNEL_STATS.get_ptr_mut(slot).map(|p| unsafe { &mut *p })
}

/// `XMIT`: the `lwt_xmit` entry, which may write the packet; `lwt_in` may
/// not (no `bpf_skb_store_bytes`), so there GSO packets of the types that
/// need the protocol fix-up fail the push and are counted.
#[inline(always)]
fn encapsulate<const XMIT: bool>(ctx: SkBuffContext) -> i32 {
    let len = ctx.len();
    // One load covers an IPv4 header; IPv6 adds the destination's bytes.
    let Ok(h) = ctx.load::<[u8; 20]>(0) else { return malformed() };
    // SAFETY: a plain read of a u32 static; volatile so the compiler cannot
    // fold in the placeholder that user space overwrites.
    let table = unsafe { core::ptr::read_volatile(&ENCAP_TABLE) };
    // The key is built from whole words: zeroing a byte array first would
    // become a call to a byte-by-byte memset.
    let word = |b: &[u8; 20], i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let (words, bits, ttl, tos) = match h[0] >> 4 {
        6 => {
            let Ok(rest) = ctx.load::<[u8; 20]>(20) else { return malformed() };
            let family = u32::from_ne_bytes([0, 0, 0, 6]);
            let dst = [word(&rest, 4), word(&rest, 8), word(&rest, 12), word(&rest, 16)];
            let words = [table.to_be(), family, dst[0], dst[1], dst[2], dst[3]];
            (words, 128, h[7], (h[0] << 4) | (h[1] >> 4))
        }
        4 => {
            let family = u32::from_ne_bytes([0, 0, 0, 4]);
            ([table.to_be(), family, word(&h, 16), 0, 0, 0], 32, h[8], h[1])
        }
        _ => return malformed(),
    };
    const _: () = assert!(EncapKey::DATA_LEN == 24);
    // SAFETY: [u32; 6] and [u8; 24] have the same size; any bytes are valid.
    let data = unsafe { core::mem::transmute::<[u32; 6], [u8; EncapKey::DATA_LEN]>(words) };
    let key = Key::new(EncapKey::HEADER_BITS + bits, data);
    let Some(entry) = TUNNELS.get(&key) else {
        if let Some(s) = stats(NO_TUNNEL_SLOT) {
            s.no_tunnel += 1;
        }
        return BPF_DROP;
    };
    let hlen = u32::from(entry.len);
    if !(20..=MAX_HEADER as u32).contains(&hlen) {
        return BPF_DROP;
    }
    // The same value, in a form whose bounds the verifier can see after
    // the compiler has reloaded it: 20..=256.
    let hlen = 20 + (hlen.wrapping_sub(20) & 0x1ff).min(MAX_HEADER as u32 - 20);
    let outer_len = hlen + len;
    let f = entry.flags;
    // SAFETY: reads of the context the verifier allows on LWT programs.
    let gso = unsafe { (*ctx.skb.skb).gso_size } != 0;
    // The flow hash, once and only where used: UDP source port, IPv6 flow label.
    let hash = if f & (flags::UDP | flags::FLOW_LABEL) != 0 {
        // SAFETY: the helper takes the program's own skb.
        unsafe { bpf_get_hash_recalc(ctx.skb.skb) }
    } else {
        0
    };
    let inner_v6 = h[0] >> 4 == 6;
    // Every field that changes per packet lies in the first PATCHED bytes
    // (an IPv6 or IPv4 header and a UDP header): they are patched in a
    // copy on the stack, the rest of the block is pushed as the map holds it.
    let mut pre = Patched([0; PATCHED]);
    copy_words(pre.0.as_mut_ptr(), entry.header.as_ptr(), PATCHED / 8);
    let hdr = &mut pre.0;
    let udp = if f & flags::OUTER_V6 != 0 {
        hdr[4..6].copy_from_slice(&((outer_len - 40) as u16).to_be_bytes());
        if f & flags::TTL_INHERIT != 0 {
            hdr[7] = ttl;
        }
        if f & flags::TOS_INHERIT != 0 {
            hdr[0] = 0x60 | (tos >> 4);
            hdr[1] = (hdr[1] & 0x0f) | (tos << 4);
        }
        if f & flags::FLOW_LABEL != 0 {
            // ip6_make_flowlabel: the flow hash rotated by 16, low 20 bits.
            let label = hash.rotate_left(16) & 0xf_ffff;
            hdr[1] = (hdr[1] & 0xf0) | (label >> 16) as u8;
            hdr[2] = (label >> 8) as u8;
            hdr[3] = label as u8;
        }
        40
    } else {
        hdr[2..4].copy_from_slice(&(outer_len as u16).to_be_bytes());
        if f & flags::TTL_INHERIT != 0 {
            hdr[8] = ttl;
        }
        if f & flags::TOS_INHERIT != 0 {
            hdr[1] = tos;
        }
        if f & flags::DF_INHERIT != 0 {
            // As the kernel's tunnels: the inner DF, and always for IPv6.
            let df = if inner_v6 { 0x40 } else { h[6] & 0x40 };
            hdr[6] = (hdr[6] & !0x40) | df;
        }
        // An identification per packet, so fragments of different outer
        // packets on the way are never reassembled together.
        let id = unsafe { bpf_get_prandom_u32() } as u16;
        hdr[4..6].copy_from_slice(&id.to_be_bytes());
        hdr[10] = 0;
        hdr[11] = 0;
        let mut sum = ipv4_checksum(hdr);
        // 0 would make the kernel compute it again over the header as
        // pushed (see PROTO_FIXUP); 0xffff is the same sum.
        if sum == 0 {
            sum = 0xffff;
        }
        hdr[10..12].copy_from_slice(&sum.to_be_bytes());
        20
    };
    if f & flags::UDP != 0 {
        // Source port from the flow hash: ECMP entropy for the outer packet.
        let sport = 49152 | (hash & 0x3fff) as u16;
        hdr[udp..udp + 2].copy_from_slice(&sport.to_be_bytes());
        let udp_len = outer_len - udp as u32;
        hdr[udp + 4..udp + 6].copy_from_slice(&(udp_len as u16).to_be_bytes());
        if udp == 40 && f & flags::UDP6_CSUM != 0 {
            // GSO: the pseudo-header sum, which the kernel's UDP tunnel
            // segmentation completes per segment (SKB_GSO_UDP_TUNNEL_CSUM,
            // chosen by push_encap because the field is not 0). Otherwise
            // the whole checksum, computed here.
            let sum = if gso {
                let s = fold(pseudo6(&entry.header, udp_len, 17));
                if s == 0 { 0xffff } else { s }
            } else {
                let s = udp6_checksum(
                    ctx.skb.skb,
                    &entry.header,
                    hlen,
                    u32::from(sport) << 16 | udp_len,
                    len,
                );
                if s < 0 {
                    return push_failed(entry.counter);
                }
                s as u16
            };
            hdr[46..48].copy_from_slice(&sum.to_be_bytes());
        }
    }
    // bpf_lwt_push_encap reads the pushed header of a GSO packet: the UDP
    // checksum field decides SKB_GSO_UDP_TUNNEL_CSUM, and it takes GSO
    // packets only under UDP, GRE or "IP in IP" as it spells it (protocol 0
    // or 41). Such packets are built whole in the scratch map first (ipip,
    // ip4in6 and srv6 pushed with 0, the real byte written after the push:
    // the kernel's segmentation reads the real one later, SKB_GSO_IPXIP4/6).
    // `lwt_in` cannot write the packet, so there every header is built first.
    let whole = !XMIT || (gso && f & (flags::PROTO_FIXUP | flags::UDP6_CSUM) != 0);
    let rc = if whole {
        // SAFETY: this CPU's slot; no other user while the program runs.
        let Some(block) = HEADER.get_ptr_mut(0).map(|p| unsafe { &mut *p }) else {
            return BPF_DROP;
        };
        copy_words(block.as_mut_ptr(), entry.header.as_ptr(), hlen as usize / 8 + 1);
        copy_words(block.as_mut_ptr(), pre.0.as_ptr(), PATCHED / 8);
        let fixup = if XMIT && f & flags::PROTO_FIXUP != 0 {
            let at = if udp == 40 { 6 } else { 9 };
            let real = block[at];
            block[at] = 0;
            Some((at, real))
        } else {
            None
        };
        // SAFETY: `block` holds MAX_HEADER bytes and 20 <= hlen <= MAX_HEADER.
        let rc = unsafe {
            bpf_lwt_push_encap(ctx.skb.skb, BPF_LWT_ENCAP_IP, block.as_mut_ptr().cast(), hlen)
        };
        match fixup {
            Some((at, real)) if rc == 0 => i64::from(ctx.store(at, &real, 0).is_err()),
            _ => rc,
        }
    } else {
        // Pushed straight from the map value, then the patched bytes
        // written over the pushed ones.
        // SAFETY: the map value holds MAX_HEADER bytes, 20 <= hlen <= MAX_HEADER.
        let rc = unsafe {
            bpf_lwt_push_encap(
                ctx.skb.skb,
                BPF_LWT_ENCAP_IP,
                entry.header.as_ptr().cast_mut().cast(),
                hlen,
            )
        };
        // 20, 28, 40 or 48: the outer IP header and UDP, never past hlen.
        let n = udp as u32 + if f & flags::UDP != 0 { 8 } else { 0 };
        if rc == 0 {
            // SAFETY: n <= PATCHED bytes of `pre`.
            let rc = unsafe {
                aya_ebpf::helpers::bpf_skb_store_bytes(
                    ctx.skb.skb.cast(),
                    0,
                    pre.0.as_ptr().cast(),
                    n.min(PATCHED as u32),
                    0,
                )
            };
            i64::from(rc != 0)
        } else {
            rc
        }
    };
    let Some(s) = stats(entry.counter) else { return BPF_DROP };
    if rc != 0 {
        s.push_failed += 1;
        return BPF_DROP;
    }
    s.packets += 1;
    s.bytes += u64::from(len);
    BPF_LWT_REROUTE
}

/// Bytes at the start of the header block that hold every per-packet field.
const PATCHED: usize = 48;

/// The patched bytes, aligned so they are copied a word at a time.
#[repr(C, align(8))]
struct Patched([u8; PATCHED]);

/// Copies `words` 8-byte words (at most MAX_HEADER bytes) from `src` to
/// `dst`, both 8-byte aligned (map values and `Patched`). A plain copy of
/// byte arrays would become a call to a byte-by-byte memcpy.
#[inline(always)]
fn copy_words(dst: *mut u8, src: *const u8, words: usize) {
    let (dst, src) = (dst.cast::<u64>(), src.cast::<u64>());
    for i in 0..MAX_HEADER / 8 {
        if i >= words {
            break;
        }
        // SAFETY: i < MAX_HEADER / 8 words of two MAX_HEADER-byte buffers
        // (callers pass at most that many), aligned as documented.
        unsafe { dst.add(i).write(src.add(i).read()) };
    }
}

#[inline(always)]
fn push_failed(counter: u32) -> i32 {
    if let Some(s) = stats(counter) {
        s.push_failed += 1;
    }
    BPF_DROP
}

/// Folds a ones'-complement sum to 16 bits.
#[inline(always)]
fn fold(mut sum: u64) -> u16 {
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// Sum of the big-endian 16-bit words of `b[from..to]` (constant bounds,
/// whole 32-bit words), summed by the kernel.
#[inline(always)]
fn words(b: &[u8], from: usize, to: usize) -> u64 {
    // SAFETY: from..to lies in `b` (constant bounds at every call).
    let raw = unsafe {
        bpf_csum_diff(
            core::ptr::null_mut(),
            0,
            b.as_ptr().add(from).cast_mut().cast(),
            (to - from) as u32,
            0,
        )
    };
    if raw < 0 {
        0
    } else {
        kernel_sum(raw)
    }
}

/// The IPv6 pseudo header of the outer header in `hdr` (addresses at
/// 8..40), unfolded: addresses, 32-bit length, next header.
#[inline(always)]
fn pseudo6(hdr: &[u8; MAX_HEADER], len: u32, proto: u8) -> u64 {
    words(hdr, 8, 40) + u64::from(len >> 16) + u64::from(len & 0xffff) + u64::from(proto)
}

/// Most bytes of a non-GSO inner packet whose checksum is summed byte by
/// byte (inner protocols other than TCP, UDP, ICMP).
const SUM_LIMIT: u32 = 160 * SUM_CHUNK as u32;
const SUM_CHUNK: usize = 64;

/// A ones'-complement sum computed by the kernel (`bpf_csum_diff` sums
/// native-endian words) as a big-endian sum.
#[inline(always)]
fn kernel_sum(raw: i64) -> u64 {
    u64::from(fold(raw as u32 as u64).swap_bytes())
}

/// The UDP checksum of a non-GSO packet under an IPv6 outer header: the
/// pseudo header, the pushed headers after the IPv6 header, and the inner
/// packet. The inner packet's transport checksum may still be left to
/// offload (CHECKSUM_PARTIAL), so its sum is taken as the kernel's local
/// checksum offload does (`lco_csum`): a TCP, UDP or ICMPv6 segment with its
/// checksum done sums to the complement of its pseudo header, an ICMP
/// message to 0, an IPv4 header to 0. Other inner packets are summed byte
/// by byte (up to SUM_LIMIT bytes; `None` above).
#[inline(never)]
fn udp6_checksum(
    skb: *mut aya_ebpf::bindings::__sk_buff,
    hdr: &[u8; MAX_HEADER],
    hlen: u32,
    port_len: u32,
    len: u32,
) -> i32 {
    // Five arguments at most: the source port and UDP length share one.
    let (sport, udp_len) = (port_len >> 16, port_len & 0xffff);
    let ctx = SkBuffContext::new(skb);
    let Ok(h) = ctx.load::<[u8; 20]>(0) else { return -1 };
    // The headers after the IPv6 one as the map holds them (UDP with source
    // port, length and checksum 0, then the tunnel's own), zero-padded to
    // whole words; the source port and length are added below.
    let n = (hlen.saturating_sub(40) + 3) & !3;
    let n = n.min((MAX_HEADER - 40) as u32);
    // SAFETY: 40 + n <= MAX_HEADER bytes of `hdr`.
    let raw = unsafe {
        bpf_csum_diff(
            core::ptr::null_mut(),
            0,
            hdr.as_ptr().add(40).cast_mut().cast(),
            n,
            0,
        )
    };
    if raw < 0 {
        return -1;
    }
    let mut sum =
        pseudo6(hdr, udp_len, 17) + kernel_sum(raw) + u64::from(sport) + u64::from(udp_len);
    let inner: i64 = match h[0] >> 4 {
        4 => {
            let ihl = u32::from(h[0] & 0x0f) * 4;
            let total = u32::from(u16::from_be_bytes([h[2], h[3]]));
            let fragment = u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0;
            let l4 = u64::from(total.saturating_sub(ihl));
            let pseudo = words(&h, 12, 20) + l4 + u64::from(h[9]);
            match h[9] {
                1 if !fragment => 0,
                6 if !fragment => i64::from(!fold(pseudo)),
                17 if !fragment => {
                    // A UDP checksum of 0 means none: sum the bytes.
                    match ctx.load::<[u8; 2]>((ihl + 6) as usize) {
                        Ok([0, 0]) => -1,
                        Ok(_) => i64::from(!fold(pseudo)),
                        Err(_) => return -1,
                    }
                }
                _ => -1,
            }
        }
        _ => {
            let Ok(rest) = ctx.load::<[u8; 20]>(20) else { return -1 };
            let payload = u64::from(u16::from_be_bytes([h[4], h[5]]));
            let header = words(&h, 0, 20) + words(&rest, 0, 20);
            let pseudo = words(&h, 8, 20) + words(&rest, 0, 20) + payload + u64::from(h[6]);
            match h[6] {
                6 | 17 | 58 => (header + u64::from(!fold(pseudo))) as i64,
                _ => -1,
            }
        }
    };
    if inner >= 0 {
        sum += inner as u64;
    } else {
        let all = sum_bytes(skb, len);
        if all < 0 {
            return -1;
        }
        sum += all as u64;
    }
    let check = !fold(sum);
    i32::from(if check == 0 { 0xffff } else { check })
}

/// The ones'-complement sum (folded) of the packet's first `len` bytes, or
/// -1.
#[inline(never)]
fn sum_bytes(skb: *mut aya_ebpf::bindings::__sk_buff, len: u32) -> i64 {
    if len > SUM_LIMIT {
        return -1;
    }
    let mut sum = 0u64;
    // SAFETY: this CPU's scratch slot; no other user while the program runs.
    let Some(buf) = SCRATCH.get_ptr_mut(0).map(|p| unsafe { &mut *p }) else {
        return -1;
    };
    let mut off = 0u32;
    for _ in 0..(SUM_LIMIT as usize / SUM_CHUNK) {
        if off >= len {
            break;
        }
        let left = len - off;
        let n = if left >= SUM_CHUNK as u32 {
            SUM_CHUNK as u32
        } else {
            *buf = [0u8; SUM_CHUNK];
            ((left - 1) & (SUM_CHUNK as u32 - 1)) + 1
        };
        // SAFETY: 1 <= n <= SUM_CHUNK bytes into `buf`.
        let rc = unsafe {
            aya_ebpf::helpers::bpf_skb_load_bytes(skb.cast(), off, buf.as_mut_ptr().cast(), n)
        };
        if rc != 0 {
            return -1;
        }
        // SAFETY: SUM_CHUNK bytes of `buf`; bytes past n are zero.
        let raw = unsafe {
            bpf_csum_diff(
                core::ptr::null_mut(),
                0,
                buf.as_mut_ptr().cast(),
                SUM_CHUNK as u32,
                0,
            )
        };
        if raw < 0 {
            return -1;
        }
        sum += kernel_sum(raw);
        off += SUM_CHUNK as u32;
    }
    i64::from(fold(sum))
}

#[inline(always)]
fn malformed() -> i32 {
    if let Some(s) = stats(NO_TUNNEL_SLOT) {
        s.malformed += 1;
    }
    BPF_DROP
}

/// The IPv4 header checksum of the first 20 bytes.
#[inline(always)]
fn ipv4_checksum(h: &[u8; PATCHED]) -> u16 {
    let mut sum = 0u32;
    for i in 0..10 {
        sum += u32::from(u16::from_be_bytes([h[2 * i], h[2 * i + 1]]));
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

fn encapsulate_xmit(ctx: SkBuffContext) -> i32 {
    encapsulate::<true>(ctx)
}

fn encapsulate_in(ctx: SkBuffContext) -> i32 {
    encapsulate::<false>(ctx)
}

lwt_program!(encap_xmit, "lwt_xmit", encapsulate_xmit);
lwt_program!(encap_in, "lwt_in", encapsulate_in);

gpl_license!();
