//! Stateless address translation on `lwt_xmit` (the only LWT hook that may
//! write the packet): rewrite an IPv4 or IPv6 source or destination address
//! (one address, or a prefix keeping the host bits: NETMAP; IPv6 prefixes
//! up to /64 as RFC 6296 NPTv6, checksum-neutral) and the TCP/UDP port on
//! the same side (`snat ... port N`: the source port, `dnat ... port N`:
//! the destination port), with every checksum updated incrementally by
//! the kernel's helpers.
//!
//! - The IPv4 header checksum: `bpf_l3_csum_replace`.
//! - TCP/UDP: `bpf_l4_csum_replace` with `BPF_F_PSEUDO_HDR` for the
//!   address (it is in the pseudo-header). For a `CHECKSUM_PARTIAL` packet
//!   (locally sent, GSO super-packets) the field holds the pseudo-header
//!   sum that the device or the GSO code finishes; the helper updates it
//!   as such, and leaves it alone for a port change (not in the
//!   pseudo-header: the final sum covers the new port anyway). UDP also
//!   gets `BPF_F_MARK_MANGLED_0`: a zero checksum (none) stays zero, and a
//!   sum that becomes zero is written as 0xffff.
//! - ICMP has no pseudo-header: an echo keeps its checksum and its id.
//!   ICMP and ICMPv6 errors (the packet embedded in them) are translated
//!   by `nat_icmp.rs`: see [`icmp_error_v4`] and [`icmp_error_v6`].
//! - Fragments: a first fragment carries the L4 header and its checksum,
//!   which covers the whole datagram: updated like an unfragmented packet.
//!   A later fragment gets the address rewrite only.
use aya_ebpf::{
    helpers::{bpf_csum_diff, bpf_skb_load_bytes},
    programs::SkBuffContext,
};
use lwtkit_common::nat_icmp::{outcome, Translation};

use crate::{
    nat_icmp::{translate_v6, V6Addrs},
    parse::PacketKey,
};

/// `bpf_l4_csum_replace` flags (include/uapi/linux/bpf.h).
const BPF_F_PSEUDO_HDR: u64 = 1 << 4;
const BPF_F_MARK_MANGLED_0: u64 = 1 << 5;

const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;
/// `bpf_l4_csum_replace`: the diff is over IPv6 addresses (kernels that
/// know the flag, added in 2025, then leave `skb->csum` of a
/// CHECKSUM_COMPLETE packet alone, which the address change and the
/// checksum change cancel out in); kernels without it refuse the flag
/// (-EINVAL), and the update is tried again without it.
const BPF_F_IPV6: u64 = 1 << 7;

/// [`lwtkit_common::filter::ActionRecord::npt_word`]: the adjustment goes
/// into word 3 (prefixes up to /48) ...
pub const NPT_WORD3: u8 = 1;
/// ... or into the first interface-id word that is not 0xffff (/49 to /64).
pub const NPT_IID: u8 = 2;

/// Which address a rewrite changes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Src,
    Dst,
}

/// The mask of the first `plen` bits of a 32-bit word (`plen` 0 to 32).
#[inline(always)]
fn mask_of(plen: u8) -> u32 {
    !(u64::from(u32::MAX) >> (plen & 63).min(32)) as u32
}

/// `old` mapped into the prefix `to`/`plen`: its bits, the host bits of `old`.
#[inline(always)]
pub fn netmap4(old: u32, to: u32, plen: u8) -> u32 {
    let m = mask_of(plen);
    (old & !m) | (to & m)
}

/// Rewrites the IPv4 `side` address to `to`/`plen` (NETMAP; `plen` 32:
/// the address itself) and, with `port`, the TCP/UDP port on that side.
/// `Err(())` when a helper refused (the packet is then dropped by the
/// caller and counted as failed).
#[inline(always)]
pub fn rewrite_v4(ctx: &SkBuffContext, side: Side, to: u32, plen: u8, port: Option<u16>) -> Result<(), ()> {
    let h: [u8; 20] = ctx.load(0).map_err(|_| ())?;
    if h[0] >> 4 != 4 {
        return Err(());
    }
    let ihl = usize::from(h[0] & 0xf) * 4;
    let frag = u16::from_be_bytes([h[6], h[7]]);
    let proto = h[9];
    let at = if side == Side::Src { 12 } else { 16 };
    let old = u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
    let new = netmap4(old, to, plen);
    // Only an unfragmented packet or a first fragment holds the L4 header.
    let has_l4 = frag & 0x1fff == 0;
    if has_l4 && new != old {
        l4_pseudo(ctx, ihl, proto, old.to_be(), new.to_be())?;
    }
    if has_l4 {
        if let Some(p) = port {
            rewrite_port(ctx, side, ihl, proto, p)?;
        }
    }
    if new != old {
        ctx.l3_csum_replace(10, u64::from(old.to_be()), u64::from(new.to_be()), 4)
            .map_err(|_| ())?;
        ctx.store(at, &new.to_be(), 0).map_err(|_| ())?;
    }
    Ok(())
}

/// Updates the TCP or UDP checksum for an address of the pseudo-header
/// going from `old` to `new` (network order); other protocols have none
/// over the addresses.
#[inline(always)]
fn l4_pseudo(ctx: &SkBuffContext, ihl: usize, proto: u8, old: u32, new: u32) -> Result<(), ()> {
    let (off, flags) = match proto {
        IPPROTO_TCP => (ihl + 16, BPF_F_PSEUDO_HDR | 4),
        IPPROTO_UDP => (ihl + 6, BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0 | 4),
        // ICMP (echo: id and checksum untouched) and the rest.
        _ => return Ok(()),
    };
    ctx.l4_csum_replace(off & 0xffff, u64::from(old), u64::from(new), flags)
        .map_err(|_| ())
}

/// Sets the TCP/UDP `side` port (source: bytes 0-1 of the L4 header,
/// destination: 2-3) to `port`, updating the checksum (no pseudo-header:
/// the port is in the L4 header itself, so for a `CHECKSUM_PARTIAL` packet
/// the helper leaves the field, a pseudo-header sum, alone and the final
/// sum covers the new port).
#[inline(always)]
fn rewrite_port(ctx: &SkBuffContext, side: Side, ihl: usize, proto: u8, port: u16) -> Result<(), ()> {
    let (csum, flags) = match proto {
        IPPROTO_TCP => (ihl + 16, 2),
        IPPROTO_UDP => (ihl + 6, BPF_F_MARK_MANGLED_0 | 2),
        _ => return Ok(()),
    };
    let at = (ihl + if side == Side::Src { 0 } else { 2 }) & 0xffff;
    let old: u16 = ctx.load(at).map_err(|_| ())?;
    let new = port.to_be();
    if old == new {
        return Ok(());
    }
    ctx.l4_csum_replace(csum & 0xffff, u64::from(old), u64::from(new), flags)
        .map_err(|_| ())?;
    ctx.store(at, &new, 0).map_err(|_| ())
}

/// `old` (an IPv6 address as network-order words) mapped by a rule onto
/// `to`/`plen` (NETMAP per word), with the RFC 6296 NPTv6 adjustment when
/// `npt_word` names one; `Err(())`: no word can take the adjustment.
#[inline(always)]
fn map_v6(old: &[u32; 4], to: &[u32; 4], plen: u8, npt_word: u8, npt_adj: u16) -> Result<[u32; 4], ()> {
    let mut new = *old;
    for i in 0..4 {
        let p = plen.saturating_sub(32 * i as u8).min(32);
        // Words as host-order values of the big-endian words.
        let o = u32::from_be(old[i]);
        new[i] = netmap4(o, to[i], p).to_be();
    }
    if npt_word == 0 {
        return Ok(new);
    }
    // RFC 6296 3.2, 3.5: the adjustment goes into word 3 (prefixes up to
    // /48, the subnet word) or into the first interface-id word that is
    // not 0xffff (/49 to /64); a /48 subnet of 0xffff cannot be translated.
    let mut w = 8usize;
    if npt_word == NPT_WORD3 {
        w = 3;
    } else {
        // Words 4 to 7: the halves of address words 2 and 3.
        let iid = [u32::from_be(new[2]) >> 16, u32::from_be(new[2]) & 0xffff, u32::from_be(new[3]) >> 16, u32::from_be(new[3]) & 0xffff];
        if iid[0] != 0xffff {
            w = 4;
        } else if iid[1] != 0xffff {
            w = 5;
        } else if iid[2] != 0xffff {
            w = 6;
        } else if iid[3] != 0xffff {
            w = 7;
        }
    }
    if w >= 8 {
        return Err(());
    }
    // Stack arrays are indexed by constants only (the verifier refuses
    // arithmetic on a stack pointer with a variable offset).
    let shift = if w % 2 == 0 { 16 } else { 0 };
    let host = u32::from_be(match w / 2 {
        0 => new[0],
        1 => new[1],
        2 => new[2],
        _ => new[3],
    });
    let v = ((host >> shift) & 0xffff) as u16;
    if v == 0xffff {
        return Err(());
    }
    let mut sum = u32::from(v) + u32::from(npt_adj);
    sum = (sum & 0xffff) + (sum >> 16);
    let mut nv = sum as u16;
    if nv == 0xffff {
        nv = 0;
    }
    let word = ((host & !(0xffffu32 << shift)) | (u32::from(nv) << shift)).to_be();
    match w / 2 {
        0 => new[0] = word,
        1 => new[1] = word,
        2 => new[2] = word,
        _ => new[3] = word,
    }
    Ok(new)
}

/// Rewrites the IPv6 `side` address to `to`/`plen` (NETMAP per word).
/// `npt_word`/`npt_adj`: RFC 6296 NPTv6, checksum-neutral (the adjustment
/// goes into that 16-bit word, no L4 checksum changes); otherwise the L4
/// checksum at `l4` (protocol and offset, `None` for a later fragment) is
/// updated for the pseudo-header by the difference of the addresses, and
/// with `port` the TCP/UDP port on `side` is rewritten too.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn rewrite_v6(
    ctx: &SkBuffContext,
    side: Side,
    to: &[u32; 4],
    plen: u8,
    npt_word: u8,
    npt_adj: u16,
    l4: Option<(u8, usize)>,
    port: Option<u16>,
) -> Result<(), ()> {
    let at = if side == Side::Src { 8 } else { 24 };
    let old: [u32; 4] = ctx.load(at).map_err(|_| ())?;
    let new = map_v6(&old, to, plen, npt_word, npt_adj)?;
    // NPTv6 is checksum-neutral: no L4 checksum changes.
    let l4 = if npt_word == 0 { l4 } else { None };
    if let Some((proto, off)) = l4 {
        let (csum, mut flags) = match proto {
            IPPROTO_TCP => (off + 16, BPF_F_PSEUDO_HDR),
            IPPROTO_UDP => (off + 6, BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0),
            IPPROTO_ICMPV6 => (off + 2, BPF_F_PSEUDO_HDR),
            _ => (0, 0),
        };
        if csum != 0 {
            // SAFETY: two 16-byte buffers on the stack, sizes as passed
            // (the helper only reads them).
            let diff = unsafe { bpf_csum_diff(old.as_ptr().cast_mut(), 16, new.as_ptr().cast_mut(), 16, 0) };
            if diff < 0 {
                return Err(());
            }
            flags |= BPF_F_IPV6;
            if ctx.l4_csum_replace(csum & 0xffff, 0, diff as u64, flags).is_err() {
                flags &= !BPF_F_IPV6;
                ctx.l4_csum_replace(csum & 0xffff, 0, diff as u64, flags)
                    .map_err(|_| ())?;
            }
        }
        if let Some(p) = port {
            rewrite_port(ctx, side, off, proto, p)?;
        }
    }
    if new != old {
        ctx.store(at, &new, 0).map_err(|_| ())?;
    }
    Ok(())
}

/// Translates an IPv4 ICMP error a rule rewrites on `side` to `to`/`plen`:
/// the outer address, and the packet embedded in the error, which travels
/// the other way (its opposite address, the embedded IPv4 and L4
/// checksums, the ICMP checksum; [`crate::nat_icmp::translate`]). `None`
/// when the error is not one to translate that way (its embedded packet
/// is not the translated one, or is cut): the caller rewrites the outer
/// header alone. `Some(Err(()))`: a helper failed part way; drop. `s`:
/// where the translation is built. `port`: the rule's port (`snat/dnat
/// ... port N`), which the embedded packet's opposite port becomes (with
/// its checksums); the error's flow then must have its ports in it.
#[inline(always)]
pub fn icmp_error_v4(
    ctx: &SkBuffContext,
    side: Side,
    to: u32,
    plen: u8,
    port: u16,
    s: &mut NatScratch,
) -> Option<Result<(), ()>> {
    let icmp = crate::nat_icmp::locate(ctx)?;
    let h: [u8; 20] = ctx.load(0).ok()?;
    let at = if side == Side::Src { 12 } else { 16 };
    let old = u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
    let new = netmap4(old, to, plen);
    s.t = Translation {
        dst: u8::from(side == Side::Dst),
        to_port: port,
        ..Translation::default()
    };
    s.t.from[..4].copy_from_slice(&old.to_be_bytes());
    s.t.to[..4].copy_from_slice(&new.to_be_bytes());
    match crate::nat_icmp::translate(ctx, icmp, &s.t, &mut s.addrs) {
        outcome::TRANSLATED | outcome::TRANSLATED_L4 => Some(Ok(())),
        outcome::FAILED => Some(Err(())),
        _ => None,
    }
}

/// What [`icmp_error_v4`] and [`icmp_error_v6`] work in: the translation
/// and the addresses it checks, kept off the BPF stack (the filter
/// program's frame and the translation's share its 512 bytes).
#[repr(C)]
#[derive(Default)]
pub struct NatScratch {
    pub t: Translation,
    pub addrs: V6Addrs,
    pub old: [u32; 4],
    /// The filter's reversed key of an ICMP error's embedded packet (its
    /// flow) and the rule it matched: counter slot and flags.
    pub flow: PacketKey,
    pub flow_slot: u32,
    pub flow_flags: u32,
}

/// Translates an ICMPv6 error (its ICMPv6 header at `icmp`) a rule
/// rewrites on `side` to `to`/`plen` (NPTv6 with `npt_word`/`npt_adj`, as
/// [`rewrite_v6`]): the outer address, the embedded packet's opposite
/// address, its L4 checksum (unchanged in value for NPTv6, which is
/// checksum-neutral) and the ICMPv6 checksum with its pseudo-header
/// ([`crate::nat_icmp::translate_v6`]). `None` when the error is not one
/// to translate that way: the caller rewrites the outer header alone.
/// `Some(Err(()))`: a helper failed part way; drop. `port`: as for
/// [`icmp_error_v4`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn icmp_error_v6(
    ctx: &SkBuffContext,
    side: Side,
    icmp: usize,
    to: &[u32; 4],
    plen: u8,
    npt_word: u8,
    npt_adj: u16,
    port: u16,
    s: &mut NatScratch,
) -> Option<Result<(), ()>> {
    let at = if side == Side::Src { 8 } else { 24 };
    // SAFETY: `s.old` is 16 writable bytes.
    let rc = unsafe { bpf_skb_load_bytes(ctx.skb.skb.cast(), at, s.old.as_mut_ptr().cast(), 16) };
    if rc != 0 {
        return None;
    }
    // An address no word of which can take the NPTv6 adjustment is left to
    // the outer rewrite, which refuses it the same way.
    let new = map_v6(&s.old, to, plen, npt_word, npt_adj).ok()?;
    s.t.v6 = 1;
    s.t.dst = u8::from(side == Side::Dst);
    s.t.from_port = 0;
    s.t.to_port = port;
    for i in 0..4 {
        s.t.from[4 * i..4 * i + 4].copy_from_slice(&s.old[i].to_ne_bytes());
        s.t.to[4 * i..4 * i + 4].copy_from_slice(&new[i].to_ne_bytes());
    }
    match translate_v6(ctx, icmp, &s.t, &mut s.addrs) {
        outcome::TRANSLATED | outcome::TRANSLATED_L4 => Some(Ok(())),
        outcome::FAILED => Some(Err(())),
        _ => None,
    }
}

/// Whether the IPv6 packet is an ICMPv6 error (destination unreachable,
/// packet too big, time exceeded, parameter problem), for
/// [`icmp_error_v6`].
#[inline(always)]
pub fn is_icmp_error_v6(proto: u32, icmp_type: u32) -> bool {
    proto == u32::from(IPPROTO_ICMPV6) && matches!(icmp_type, 1..=4)
}

/// Whether the IPv4 packet is an ICMP error (type 3, 4, 5, 11 or 12), for
/// [`icmp_error_v4`].
#[inline(always)]
pub fn is_icmp_error_v4(proto: u32, icmp_type: u32) -> bool {
    proto == u32::from(IPPROTO_ICMP) && matches!(icmp_type, 3 | 4 | 5 | 11 | 12)
}
