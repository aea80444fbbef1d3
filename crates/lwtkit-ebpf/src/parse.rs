//! Packet parsing for the filter: from the L3 header to the fields rules
//! look at, and the packet's class (judged by the rules, a later fragment,
//! malformed, evasive). Mirrors lwtkit's reference model
//! (crates/lwtkit/src/filter/model.rs) exactly; a property test holds them
//! to it.
use aya_ebpf::{helpers::bpf_skb_load_bytes, programs::SkBuffContext};
use lwtkit_common::filter::{dim, packet_class as class, MAX_EXT_HEADERS};

/// What the filter knows about a packet.
#[derive(Default)]
pub struct PacketKey {
    /// Tree dimensions (see `lwtkit_common::filter::dim`), padded to 16 so
    /// a masked index is always in bounds.
    pub dims: [u32; 16],
    pub v6: bool,
    /// The L4 header was reached and is long enough for ports/type/flags.
    pub l4: bool,
    pub tcp_flags: u8,
    /// `lwtkit_common::filter::packet_class`: only `WHOLE` meets the rules.
    pub class: u32,
    /// Where the L4 header starts (after IPv4 options or the IPv6 header
    /// chain), for actions that update its checksum; 0 when not reached.
    pub l4_off: u32,
}

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;

/// Where the header chain left the parser.
enum L3 {
    /// The L4 header of `proto` starts at `off`; `first` when more
    /// fragments follow (a first fragment).
    L4 { proto: u8, off: usize, first: bool },
    /// A packet of another class than `WHOLE`, with its protocol.
    Class { proto: u8, class: u32 },
}

/// `size_of::<T>()` bytes of the packet at `off`: read straight from the
/// linear data when they lie in it (a bounds check, no helper call), else
/// copied by `bpf_skb_load_bytes` (paged data).
#[inline(always)]
fn load<T: Copy>(ctx: &SkBuffContext, off: usize) -> Option<T> {
    // SAFETY: reads two fields of the program's own context.
    let (start, end) = unsafe { ((*ctx.skb.skb).data as usize, (*ctx.skb.skb).data_end as usize) };
    let at = start + (off & 0xffff);
    if at + core::mem::size_of::<T>() <= end {
        // SAFETY: in [data, data_end), as just checked (the verifier checks it too).
        Some(unsafe { core::ptr::read_unaligned(at as *const T) })
    } else {
        ctx.load(off & 0xffff).ok()
    }
}

/// `N` words of the packet at `off`, each in memory order (the bytes of
/// word `i` are bytes `4i..4i+4`: [`byte`] and [`be32`] read them): one
/// 32-bit load a word from the linear data, where a read of unknown
/// alignment (as [`load`]'s) becomes one load per byte and the shifts and
/// ors that put them together; else copied by `bpf_skb_load_bytes`.
#[inline(always)]
fn load_words<const N: usize>(ctx: &SkBuffContext, off: usize) -> Option<[u32; N]> {
    // SAFETY: reads two fields of the program's own context.
    let (start, end) = unsafe { ((*ctx.skb.skb).data as usize, (*ctx.skb.skb).data_end as usize) };
    let at = start + (off & 0xffff);
    if at + 4 * N <= end {
        let mut w = [0u32; N];
        for (i, word) in w.iter_mut().enumerate() {
            *word = load_word(at + 4 * i);
        }
        Some(w)
    } else {
        ctx.load(off & 0xffff).ok()
    }
}

/// The 4 bytes at `at` (a packet pointer whose 4 bytes the caller checked
/// against `data_end`), in memory order, by one 32-bit load. The verifier
/// allows packet loads of any alignment where the CPU has efficient
/// unaligned access (`check_pkt_ptr_alignment`: x86-64, arm64); the
/// compiler cannot know that, hence the instruction written out.
#[inline(always)]
fn load_word(at: usize) -> u32 {
    #[cfg(target_arch = "bpf")]
    {
        let v: u64;
        // SAFETY: reads 4 bytes the caller proved to be in the packet.
        unsafe {
            core::arch::asm!("{v} = *(u32 *)({p} + 0)", p = in(reg) at, v = lateout(reg) v, options(pure, readonly, nostack))
        };
        v as u32
    }
    #[cfg(not(target_arch = "bpf"))]
    {
        // SAFETY: as above.
        unsafe { core::ptr::read_unaligned(at as *const u32) }
    }
}

/// Byte `i` of words read by [`load_words`].
#[inline(always)]
fn byte<const N: usize>(w: &[u32; N], i: usize) -> u8 {
    (u32::from_le(w[i / 4]) >> (8 * (i % 4))) as u8
}

/// The big-endian value of word `i` of words read by [`load_words`].
#[inline(always)]
fn be32<const N: usize>(w: &[u32; N], i: usize) -> u32 {
    u32::from_be(w[i])
}

/// The ports from `p`, the first word of a TCP or UDP header.
#[inline(always)]
fn set_ports(p: &[u32; 1], key: &mut PacketKey) {
    key.dims[dim::SPORT] = u32::from(u16::from_be_bytes([byte(p, 0), byte(p, 1)]));
    key.dims[dim::DPORT] = u32::from(u16::from_be_bytes([byte(p, 2), byte(p, 3)]));
}

/// Parses the packet; malformed ones come back with class `MALFORMED`.
#[inline(always)]
pub fn parse(ctx: &SkBuffContext) -> PacketKey {
    parse_from(ctx, 0)
}

/// [`parse`] without the call to the object's `memset`: the key starts
/// from zeroes the compiler cannot see, as literal ones make it build the
/// key with that call, a loop of one byte per iteration (16 to 32 per
/// packet). It costs stack: `xmit`, whose frame and its NAT function's
/// must fit the verifier's 512 bytes together, keeps [`parse`].
#[inline(always)]
pub fn parse_lean(ctx: &SkBuffContext) -> PacketKey {
    parse_from(ctx, crate::opaque_zero())
}

#[inline(always)]
fn parse_from(ctx: &SkBuffContext, zero: u32) -> PacketKey {
    let mut key = PacketKey { dims: [zero; 16], v6: false, l4: false, tcp_flags: 0, class: class::MALFORMED, l4_off: 0 };
    let len = ctx.len() as usize;
    // Either family needs 20 bytes: load them once, then what IPv6 adds.
    if len < 20 {
        return key;
    }
    let Some(h) = load_words::<5>(ctx, 0) else { return key };
    let l3 = match byte(&h, 0) >> 4 {
        4 => parse_v4(&h, len, &mut key),
        6 => parse_v6(ctx, &h, len, &mut key),
        _ => None,
    };
    let Some(l3) = l3 else { return key };
    match l3 {
        L3::L4 { proto, off, first } => {
            key.dims[dim::PROTO] = u32::from(proto);
            key.l4_off = off as u32;
            key.class = parse_l4(ctx, len, off, proto, first, &mut key);
        }
        L3::Class { proto, class } => {
            key.dims[dim::PROTO] = u32::from(proto);
            key.class = class;
        }
    }
    key.dims[dim::L4] = u32::from(key.l4);
    key
}

/// A fragment's class from its offset (in 8-byte units), or `None` when it
/// is a first fragment or none.
#[inline(always)]
fn fragment_class(offset: u16) -> Option<u32> {
    match offset {
        0 => None,
        1 => Some(class::EVASIVE),
        _ => Some(class::LATER_FRAGMENT),
    }
}

#[inline(always)]
fn parse_v4(h: &[u32; 5], len: usize, key: &mut PacketKey) -> Option<L3> {
    let ihl = usize::from(byte(h, 0) & 0xf) * 4;
    if ihl < 20 || ihl > len {
        return None;
    }
    key.dims[dim::SRC0] = be32(h, 3);
    key.dims[dim::DST0] = be32(h, 4);
    let frag = u16::from_be_bytes([byte(h, 6), byte(h, 7)]);
    let proto = byte(h, 9);
    if let Some(class) = fragment_class(frag & 0x1fff) {
        return Some(L3::Class { proto, class });
    }
    Some(L3::L4 { proto, off: ihl, first: frag & 0x2000 != 0 })
}

#[inline(always)]
fn parse_v6(ctx: &SkBuffContext, first: &[u32; 5], len: usize, key: &mut PacketKey) -> Option<L3> {
    if len < 40 {
        return None;
    }
    // Bytes 20..40: the rest of the source and the destination.
    let rest = load_words::<5>(ctx, 20)?;
    key.v6 = true;
    for i in 0..3 {
        key.dims[dim::SRC0 + i] = be32(first, 2 + i);
    }
    key.dims[dim::SRC0 + 3] = be32(&rest, 0);
    for i in 0..4 {
        key.dims[dim::DST0 + i] = be32(&rest, 1 + i);
    }
    let mut nh = byte(first, 6);
    let mut off = 40usize;
    let mut first = false;
    // A chain cut short is evasive in a first fragment, malformed otherwise.
    let cut = |first: bool| if first { class::EVASIVE } else { class::MALFORMED };
    for _ in 0..MAX_EXT_HEADERS {
        match nh {
            0 | 43 | 60 | 51 => {
                if off + 2 > len {
                    return Some(L3::Class { proto: nh, class: cut(first) });
                }
                let e: [u8; 2] = load(ctx, off)?;
                off += if nh == 51 { (usize::from(e[1]) + 2) * 4 } else { (usize::from(e[1]) + 1) * 8 };
                nh = e[0];
            }
            44 => {
                if off + 8 > len {
                    return Some(L3::Class { proto: nh, class: cut(first) });
                }
                let f: [u8; 4] = load(ctx, off)?;
                let frag = u16::from_be_bytes([f[2], f[3]]);
                if let Some(class) = fragment_class(frag >> 3) {
                    return Some(L3::Class { proto: f[0], class });
                }
                first |= frag & 1 != 0;
                off += 8;
                nh = f[0];
            }
            _ => return Some(L3::L4 { proto: nh, off, first }),
        }
    }
    match nh {
        // The L4 header lies beyond the walk's bound.
        0 | 43 | 60 | 51 | 44 => Some(L3::Class { proto: nh, class: class::MALFORMED }),
        _ => Some(L3::L4 { proto: nh, off, first }),
    }
}

/// Reads the L4 fields rules look at; returns the packet's class: `WHOLE`,
/// or, when they are cut short, `EVASIVE` for a first fragment and
/// `MALFORMED` otherwise.
#[inline(always)]
fn parse_l4(ctx: &SkBuffContext, len: usize, off: usize, proto: u8, first: bool, key: &mut PacketKey) -> u32 {
    let need = match proto {
        IPPROTO_TCP => 14,
        IPPROTO_UDP => 4,
        IPPROTO_ICMP if !key.v6 => 2,
        IPPROTO_ICMPV6 if key.v6 => 2,
        _ => return class::WHOLE,
    };
    let short = if first { class::EVASIVE } else { class::MALFORMED };
    if off + need > len {
        return short;
    }
    match proto {
        IPPROTO_TCP => {
            // Bytes 0..4 (ports) and 12..14 (offset, flags): the 14 that
            // `need` checked, in whole words.
            let Some(p) = load_words::<1>(ctx, off) else { return short };
            let Some(f) = load::<[u8; 2]>(ctx, off + 12) else { return short };
            set_ports(&p, key);
            key.tcp_flags = f[1];
        }
        IPPROTO_UDP => {
            let Some(p) = load_words::<1>(ctx, off) else { return short };
            set_ports(&p, key);
        }
        _ => {
            let Some(i) = load::<[u8; 2]>(ctx, off) else { return short };
            key.dims[dim::SPORT] = u32::from(i[0]);
            key.dims[dim::DPORT] = u32::from(i[1]);
        }
    }
    key.l4 = true;
    class::WHOLE
}

/// The flow an ICMP or ICMPv6 error reports, as that flow's own packets
/// meet the rules: the packet embedded in the error (at `icmp + 8`, the
/// error's ICMP header at `icmp`) went out of the flow's far end, so the
/// flow's packets through this hook are it reversed: its destination as
/// source, its source as destination, its ports swapped, the same protocol
/// (TCP flags none: the embedded packet's are not the reversed packet's).
/// Written into `key`; `false` (and `key` not to be used) unless the
/// embedded packet is TCP or UDP of the error's family with its ports in
/// the packet (not a later fragment, not cut before them).
///
/// Read with `bpf_skb_load_bytes` only (the caller is a global function
/// whose callers may write the packet after it).
#[inline(always)]
pub fn embedded_flow(ctx: &SkBuffContext, v6: bool, icmp: usize, key: &mut PacketKey) -> bool {
    let len = ctx.len() as usize;
    let e = icmp + 8;
    key.dims = [0; 16];
    key.v6 = v6;
    key.tcp_flags = 0;
    key.class = class::MALFORMED;
    key.l4 = false;
    key.l4_off = 0;
    let (proto, l4) = if v6 {
        let Ok(ip) = ctx.load::<[u8; 8]>(e & 0xffff) else { return false };
        if ip[0] >> 4 != 6 {
            return false;
        }
        // Straight into the key (no copy through the stack: the verifier
        // adds the caller's frame to `judge`'s), then to host order.
        let skb = ctx.skb.skb.cast();
        let dst = key.dims[dim::DST0..dim::DST0 + 4].as_mut_ptr().cast();
        let src = key.dims[dim::SRC0..dim::SRC0 + 4].as_mut_ptr().cast();
        // SAFETY: each target is 4 u32s (16 bytes) of `key`.
        let rc = unsafe {
            bpf_skb_load_bytes(skb, ((e + 8) & 0xffff) as u32, dst, 16) | bpf_skb_load_bytes(skb, ((e + 24) & 0xffff) as u32, src, 16)
        };
        if rc != 0 {
            return false;
        }
        for i in 0..4 {
            key.dims[dim::SRC0 + i] = u32::from_be(key.dims[dim::SRC0 + i]);
            key.dims[dim::DST0 + i] = u32::from_be(key.dims[dim::DST0 + i]);
        }
        match crate::nat_icmp::walk_v6(ctx, ip[6], e + 40) {
            crate::nat_icmp::Walk::L4 { proto, off } => (proto, off),
            _ => return false,
        }
    } else {
        let Ok(ip) = ctx.load::<[u8; 20]>(e & 0xffff) else { return false };
        let ihl = usize::from(ip[0] & 0xf) * 4;
        if ip[0] >> 4 != 4 || ihl < 20 || u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff != 0 {
            return false;
        }
        key.dims[dim::DST0] = u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]);
        key.dims[dim::SRC0] = u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]);
        (ip[9], e + ihl)
    };
    if (proto != IPPROTO_TCP && proto != IPPROTO_UDP) || l4 + 4 > len {
        return false;
    }
    let Ok(p) = ctx.load::<[u8; 4]>(l4 & 0xffff) else { return false };
    key.dims[dim::PROTO] = u32::from(proto);
    key.dims[dim::SPORT] = u32::from(u16::from_be_bytes([p[2], p[3]]));
    key.dims[dim::DPORT] = u32::from(u16::from_be_bytes([p[0], p[1]]));
    key.dims[dim::L4] = 1;
    key.l4 = true;
    key.class = class::WHOLE;
    true
}
