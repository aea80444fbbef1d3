//! Packet parsing for the filter: from the L3 header to the fields rules
//! look at. Mirrors lwtkit's reference model (crates/lwtkit/src/filter/model.rs)
//! exactly; a property test holds them to it.
use aya_ebpf::programs::SkBuffContext;
use lwtkit_common::filter::{dim, MAX_EXT_HEADERS};

/// What the filter knows about a packet.
pub struct PacketKey {
    /// Tree dimensions (see `lwtkit_common::filter::dim`), padded to 16 so
    /// a masked index is always in bounds.
    pub dims: [u32; 16],
    pub v6: bool,
    /// The L4 header was reached and is long enough for ports/type/flags.
    pub l4: bool,
    pub tcp_flags: u8,
}

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;

/// Parses the packet; `None` when it is not a well-formed IPv4/IPv6 header.
#[inline(always)]
pub fn parse(ctx: &SkBuffContext) -> Option<PacketKey> {
    let len = ctx.len() as usize;
    // Either family needs 20 bytes: load them once, then what IPv6 adds.
    if len < 20 {
        return None;
    }
    let h: [u8; 20] = ctx.load(0).ok()?;
    let mut key = PacketKey { dims: [0; 16], v6: false, l4: false, tcp_flags: 0 };
    let (proto, l4_off) = match h[0] >> 4 {
        4 => parse_v4(&h, len, &mut key)?,
        6 => parse_v6(ctx, &h, len, &mut key)?,
        _ => return None,
    };
    key.dims[dim::PROTO] = u32::from(proto);
    if let Some(off) = l4_off {
        parse_l4(ctx, len, off, proto, &mut key);
    }
    key.dims[dim::L4] = u32::from(key.l4);
    Some(key)
}

/// Returns the protocol and, unless this is a non-first fragment, where L4 starts.
#[inline(always)]
fn parse_v4(h: &[u8; 20], len: usize, key: &mut PacketKey) -> Option<(u8, Option<usize>)> {
    let ihl = usize::from(h[0] & 0xf) * 4;
    if ihl < 20 || ihl > len {
        return None;
    }
    key.dims[dim::SRC0] = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
    key.dims[dim::DST0] = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
    let frag_off = u16::from_be_bytes([h[6], h[7]]) & 0x1fff;
    Some((h[9], if frag_off != 0 { None } else { Some(ihl) }))
}

#[inline(always)]
fn parse_v6(ctx: &SkBuffContext, first: &[u8; 20], len: usize, key: &mut PacketKey) -> Option<(u8, Option<usize>)> {
    if len < 40 {
        return None;
    }
    // Bytes 20..40: the rest of the source and the destination.
    let rest: [u8; 20] = ctx.load(20).ok()?;
    let byte = |i: usize| if i < 20 { first[i] } else { rest[i - 20] };
    key.v6 = true;
    for i in 0..4 {
        key.dims[dim::SRC0 + i] = u32::from_be_bytes([byte(8 + 4 * i), byte(9 + 4 * i), byte(10 + 4 * i), byte(11 + 4 * i)]);
        key.dims[dim::DST0 + i] = u32::from_be_bytes([rest[4 + 4 * i], rest[5 + 4 * i], rest[6 + 4 * i], rest[7 + 4 * i]]);
    }
    let mut nh = first[6];
    let mut off = 40usize;
    for _ in 0..MAX_EXT_HEADERS {
        match nh {
            0 | 43 | 60 | 51 => {
                if off + 2 > len {
                    return Some((nh, None));
                }
                let e: [u8; 2] = ctx.load(off & 0xffff).ok()?;
                off += if nh == 51 { (usize::from(e[1]) + 2) * 4 } else { (usize::from(e[1]) + 1) * 8 };
                nh = e[0];
            }
            44 => {
                if off + 8 > len {
                    return Some((nh, None));
                }
                let f: [u8; 4] = ctx.load(off & 0xffff).ok()?;
                if u16::from_be_bytes([f[2], f[3]]) >> 3 != 0 {
                    return Some((f[0], None));
                }
                off += 8;
                nh = f[0];
            }
            _ => return Some((nh, Some(off))),
        }
    }
    match nh {
        0 | 43 | 60 | 51 | 44 => Some((nh, None)),
        _ => Some((nh, Some(off))),
    }
}

#[inline(always)]
fn parse_l4(ctx: &SkBuffContext, len: usize, off: usize, proto: u8, key: &mut PacketKey) {
    let off = off & 0xffff;
    match proto {
        IPPROTO_TCP if off + 14 <= len => {
            if let Ok(t) = ctx.load::<[u8; 14]>(off) {
                key.dims[dim::SPORT] = u32::from(u16::from_be_bytes([t[0], t[1]]));
                key.dims[dim::DPORT] = u32::from(u16::from_be_bytes([t[2], t[3]]));
                key.tcp_flags = t[13];
                key.l4 = true;
            }
        }
        IPPROTO_UDP if off + 4 <= len => {
            if let Ok(u) = ctx.load::<[u8; 4]>(off) {
                key.dims[dim::SPORT] = u32::from(u16::from_be_bytes([u[0], u[1]]));
                key.dims[dim::DPORT] = u32::from(u16::from_be_bytes([u[2], u[3]]));
                key.l4 = true;
            }
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 if off + 2 <= len && (proto == IPPROTO_ICMPV6) == key.v6 => {
            if let Ok(i) = ctx.load::<[u8; 2]>(off) {
                key.dims[dim::SPORT] = u32::from(i[0]);
                key.dims[dim::DPORT] = u32::from(i[1]);
                key.l4 = true;
            }
        }
        _ => {}
    }
}
