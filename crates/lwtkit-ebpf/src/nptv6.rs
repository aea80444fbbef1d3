//! RFC 6296 NPTv6 on the packet, on `lwt_xmit`: the source or destination
//! address is rewritten by a precomputed [`Nptv6`] (the arithmetic lives in
//! `lwtkit_common::nptv6`, shared with user space). The mapping is
//! checksum-neutral: no L4 checksum changes, and neither does `skb->csum`
//! of a `CHECKSUM_COMPLETE` packet (the address's one's-complement sum is
//! the same). An ICMPv6 error's embedded packet needs the same mapping on
//! its opposite address: take the pair from [`mapping`] to
//! `nat_icmp::translate`.
use aya_ebpf::programs::SkBuffContext;
use lwtkit_common::{nat_icmp::outcome, nptv6::Nptv6};

/// The address `map` translates in this IPv6 packet (its destination when
/// `dst`, else its source) and what it becomes; or the [`outcome`] that
/// says why not (`MALFORMED`: not IPv6; `OUTSIDE`; `UNMAPPABLE`).
#[inline(always)]
pub fn mapping(ctx: &SkBuffContext, dst: bool, map: &Nptv6) -> Result<([u8; 16], [u8; 16]), u32> {
    let h: [u8; 40] = ctx.load(0).map_err(|_| outcome::MALFORMED)?;
    if h[0] >> 4 != 6 {
        return Err(outcome::MALFORMED);
    }
    let mut addr = [0u8; 16];
    addr.copy_from_slice(if dst { &h[24..40] } else { &h[8..24] });
    if !map.contains(&addr) {
        return Err(outcome::OUTSIDE);
    }
    let to = map.translate(&addr).ok_or(outcome::UNMAPPABLE)?;
    Ok((addr, to))
}

/// Writes `to` over the packet's destination (`dst`) or source address;
/// [`outcome::REWRITTEN`], or [`outcome::FAILED`] (drop the packet).
#[inline(always)]
pub fn store(ctx: &SkBuffContext, dst: bool, to: &[u8; 16]) -> u32 {
    match ctx.store(if dst { 24 } else { 8 }, to, 0) {
        Ok(()) => outcome::REWRITTEN,
        Err(_) => outcome::FAILED,
    }
}

/// Translates the packet's destination (`dst`) or source address by `map`
/// (not an ICMPv6 error's embedded packet: see [`mapping`]).
#[inline(always)]
pub fn rewrite(ctx: &SkBuffContext, dst: bool, map: &Nptv6) -> u32 {
    match mapping(ctx, dst, map) {
        Ok((_, to)) => store(ctx, dst, &to),
        Err(code) => code,
    }
}
