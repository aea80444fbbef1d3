//! RFC 6296 NPTv6: checksum-neutral translation between two IPv6 prefixes
//! of the same length, up to /64. The prefix bits are replaced, and one
//! 16-bit word outside the prefix takes an adjustment so that the
//! one's-complement sum of the address is unchanged: every transport
//! checksum (TCP, UDP, ICMPv6 pseudo-header) stays valid without touching
//! it.
//!
//! User space builds an [`Nptv6`] per direction when it compiles a rule
//! ([`Nptv6::new`], [`Nptv6::reverse`]); the kernel program applies it with
//! [`Nptv6::translate`], which is plain arithmetic on 16 bytes (bounded
//! loops, no helper), so both sides run the same code.
//!
//! Which word takes the adjustment (the kernel's `ip6t_NPT` picks it the
//! same way): for prefixes up to /48 the subnet word, bits 48..63; for
//! longer ones the first word of the interface identifier (bits 64..127)
//! that is not 0xFFFF. A result of 0xFFFF is written as 0x0000 (the same
//! number in one's complement), so a translated word is never 0xFFFF.

/// One direction of a prefix translation, precomputed at rule-compile time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Nptv6 {
    /// The prefix translated from, host bits zero, network order.
    pub from: [u8; 16],
    /// The prefix translated to, host bits zero, network order.
    pub to: [u8; 16],
    /// Prefix length, 1..=64.
    pub len: u8,
    pub _pad: u8,
    /// One's-complement sum of `from`'s words minus that of `to`'s: what
    /// the adjusted word gains (a big-endian 16-bit value).
    pub adjustment: u16,
    pub _pad2: u32,
}

const _: () = assert!(core::mem::size_of::<Nptv6>() == 40);

/// Why two prefixes cannot make an [`Nptv6`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nptv6Error {
    /// The length is 0 or longer than 64 (RFC 6296 needs a word outside
    /// the prefix, in the subnet or interface identifier).
    Length(u8),
    /// A prefix has bits set past its length.
    HostBits,
}

/// Adds two 16-bit words in one's complement (end-around carry).
#[inline(always)]
pub const fn ones_add(a: u16, b: u16) -> u16 {
    let s = a as u32 + b as u32;
    ((s & 0xffff) + (s >> 16)) as u16
}

/// `a - b` in one's complement.
#[inline(always)]
pub const fn ones_sub(a: u16, b: u16) -> u16 {
    ones_add(a, !b)
}

/// The one's-complement sum of the eight big-endian words of an address.
#[inline(always)]
pub fn ones_sum(addr: &[u8; 16]) -> u16 {
    let mut s = 0u16;
    for i in 0..8 {
        s = ones_add(s, word(addr, i));
    }
    s
}

/// Word `i` (0..8) of an address, big-endian.
#[inline(always)]
pub fn word(addr: &[u8; 16], i: usize) -> u16 {
    let i = i & 7;
    u16::from_be_bytes([addr[2 * i], addr[2 * i + 1]])
}

#[inline(always)]
fn set_word(addr: &mut [u8; 16], i: usize, w: u16) {
    let i = i & 7;
    let b = w.to_be_bytes();
    addr[2 * i] = b[0];
    addr[2 * i + 1] = b[1];
}

/// The mask of the prefix bits of byte `i` for a prefix of `len` bits.
#[inline(always)]
fn prefix_mask(len: u8, i: usize) -> u8 {
    let start = (i as u32) * 8;
    let len = len as u32;
    if len >= start + 8 {
        0xff
    } else if len <= start {
        0
    } else {
        0xffu8 << (8 - (len - start))
    }
}

impl Nptv6 {
    /// The translation from prefix `from` to prefix `to`, both `len` bits.
    pub fn new(from: [u8; 16], to: [u8; 16], len: u8) -> Result<Self, Nptv6Error> {
        if len == 0 || len > 64 {
            return Err(Nptv6Error::Length(len));
        }
        for (i, (f, t)) in from.iter().zip(&to).enumerate() {
            let host = !prefix_mask(len, i);
            if f & host != 0 || t & host != 0 {
                return Err(Nptv6Error::HostBits);
            }
        }
        Ok(Nptv6 {
            from,
            to,
            len,
            _pad: 0,
            adjustment: ones_sub(ones_sum(&from), ones_sum(&to)),
            _pad2: 0,
        })
    }

    /// The other direction of the same mapping.
    pub fn reverse(&self) -> Self {
        Nptv6 {
            from: self.to,
            to: self.from,
            adjustment: ones_sub(ones_sum(&self.to), ones_sum(&self.from)),
            ..*self
        }
    }

    /// Whether `addr` lies in the prefix translated from.
    #[inline(always)]
    pub fn contains(&self, addr: &[u8; 16]) -> bool {
        let mut differ = 0u8;
        for (i, (a, f)) in addr.iter().zip(&self.from).enumerate() {
            differ |= (a ^ f) & prefix_mask(self.len, i);
        }
        differ == 0
    }

    /// The word that takes the adjustment in `addr` (whose host bits are
    /// kept by the translation), or `None` when no word can: a /48-or-shorter
    /// subnet 0xFFFF (it would map onto the same word as subnet 0, since
    /// both are zero in one's complement), or an interface identifier of
    /// four 0xFFFF words.
    #[inline(always)]
    pub fn adjusted_word(&self, addr: &[u8; 16]) -> Option<usize> {
        if self.len <= 48 {
            return (word(addr, 3) != 0xffff).then_some(3);
        }
        (4..8).find(|&i| word(addr, i) != 0xffff)
    }

    /// `addr` translated, or `None` when it is outside the prefix or no
    /// word can take the adjustment ([`Nptv6::adjusted_word`]).
    #[inline(always)]
    pub fn translate(&self, addr: &[u8; 16]) -> Option<[u8; 16]> {
        if !self.contains(addr) {
            return None;
        }
        let idx = self.adjusted_word(addr)?;
        let mut out = *addr;
        for (i, (o, t)) in out.iter_mut().zip(&self.to).enumerate() {
            let m = prefix_mask(self.len, i);
            *o = (*o & !m) | (t & m);
        }
        let mut w = ones_add(word(&out, idx), self.adjustment);
        if w == 0xffff {
            w = 0;
        }
        set_word(&mut out, idx, w);
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    fn addr(words: [u16; 8]) -> [u8; 16] {
        let mut a = [0u8; 16];
        for (i, w) in words.iter().enumerate() {
            a[2 * i..2 * i + 2].copy_from_slice(&w.to_be_bytes());
        }
        a
    }

    /// Plain integer arithmetic, independent of `ones_add`: the sum of the
    /// words modulo 0xFFFF, the quantity a transport checksum sees.
    fn sum_mod(a: &[u8; 16]) -> u32 {
        (0..8).map(|i| u32::from(word(a, i))).sum::<u32>() % 0xffff
    }

    /// RFC 6296 section 3.1's example: fd01:203:405::/48 inside,
    /// 2001:db8:1::/48 outside; fd01:203:405:1::1234 leaves as
    /// 2001:db8:1:d550::1234.
    #[test]
    fn the_rfc_example_maps_subnet_1_to_d550() {
        let inside = addr([0xfd01, 0x0203, 0x0405, 0, 0, 0, 0, 0]);
        let outside = addr([0x2001, 0x0db8, 0x0001, 0, 0, 0, 0, 0]);
        let out = Nptv6::new(inside, outside, 48).expect("valid");
        let host = addr([0xfd01, 0x0203, 0x0405, 0x0001, 0, 0, 0, 0x1234]);
        let mapped = out.translate(&host).expect("in the prefix");
        assert_eq!(
            mapped,
            addr([0x2001, 0x0db8, 0x0001, 0xd550, 0, 0, 0, 0x1234])
        );
        assert_eq!(out.reverse().translate(&mapped), Some(host));
    }

    #[test]
    fn the_sum_of_the_address_is_kept_for_every_length() {
        let inside = addr([0xfd00, 0xabcd, 0x1234, 0x5600, 0, 0, 0, 0]);
        let outside = addr([0x2001, 0x0db8, 0xfeed, 0xbe00, 0, 0, 0, 0]);
        for len in [16u8, 24, 32, 40, 48, 52, 56, 60, 64] {
            let mask = |a: [u8; 16]| {
                let mut m = a;
                for (i, b) in m.iter_mut().enumerate() {
                    *b &= prefix_mask(len, i);
                }
                m
            };
            let (from, to) = (mask(inside), mask(outside));
            let t = Nptv6::new(from, to, len).expect("valid");
            let mut host = from;
            for (i, b) in host.iter_mut().enumerate() {
                *b |= !prefix_mask(len, i) & (0x5a ^ i as u8);
            }
            let mapped = t.translate(&host).expect("in the prefix");
            assert_eq!(sum_mod(&mapped), sum_mod(&host), "/{len}");
            assert!(t.reverse().contains(&mapped), "/{len}");
            assert_eq!(t.reverse().translate(&mapped), Some(host), "/{len}");
            for i in 0..16 {
                let m = prefix_mask(len, i);
                assert_eq!(mapped[i] & m, to[i], "/{len} prefix byte {i}");
            }
        }
    }

    #[test]
    fn up_to_48_the_subnet_word_is_adjusted_beyond_it_the_identifier() {
        let from = addr([0xfd00, 0x1, 0x2, 0, 0, 0, 0, 0]);
        let to = addr([0x2001, 0xdb8, 0x7, 0, 0, 0, 0, 0]);
        let t = Nptv6::new(from, to, 48).expect("valid");
        let host = addr([0xfd00, 0x1, 0x2, 0x10, 0x20, 0x30, 0x40, 0x50]);
        let m = t.translate(&host).expect("maps");
        assert_eq!(
            (4..8).map(|i| word(&m, i)).collect::<Vec<_>>(),
            [0x20, 0x30, 0x40, 0x50]
        );
        assert_ne!(word(&m, 3), 0x10);

        let t = Nptv6::new(from, to, 56).expect("valid");
        let m = t.translate(&host).expect("maps");
        assert_eq!(word(&m, 3), 0x10, "bits 56..63 are host bits and stay");
        assert_ne!(word(&m, 4), 0x20, "the first identifier word takes it");
        assert_eq!(
            (5..8).map(|i| word(&m, i)).collect::<Vec<_>>(),
            [0x30, 0x40, 0x50]
        );

        // An identifier word of 0xFFFF is skipped for the next one.
        let host = addr([0xfd00, 0x1, 0x2, 0x10, 0xffff, 0x30, 0x40, 0x50]);
        let m = t.translate(&host).expect("maps");
        assert_eq!(word(&m, 4), 0xffff);
        assert_ne!(word(&m, 5), 0x30);
    }

    #[test]
    fn words_that_cannot_be_adjusted_are_refused() {
        let from = addr([0xfd00, 0x1, 0x2, 0, 0, 0, 0, 0]);
        let to = addr([0x2001, 0xdb8, 0x7, 0, 0, 0, 0, 0]);
        let t = Nptv6::new(from, to, 48).expect("valid");
        let subnet_ffff = addr([0xfd00, 0x1, 0x2, 0xffff, 0, 0, 0, 1]);
        assert_eq!(t.translate(&subnet_ffff), None);
        let t = Nptv6::new(from, to, 64).expect("valid");
        let all_ones = addr([0xfd00, 0x1, 0x2, 0, 0xffff, 0xffff, 0xffff, 0xffff]);
        assert_eq!(t.translate(&all_ones), None);
    }

    /// The 0xFFFF rule: a result of 0xFFFF is written 0x0000, and the
    /// reverse brings subnet 0 back from it.
    #[test]
    fn a_result_of_ffff_is_written_as_zero() {
        let from = addr([0xfd00, 0x1, 0x2, 0, 0, 0, 0, 0]);
        let to = addr([0x2001, 0xdb8, 0x7, 0, 0, 0, 0, 0]);
        let t = Nptv6::new(from, to, 48).expect("valid");
        // The subnet that would map to 0xFFFF: 0xFFFF - adjustment.
        let subnet = ones_sub(0xffff, t.adjustment);
        let host = addr([0xfd00, 0x1, 0x2, subnet, 0, 0, 0, 9]);
        let m = t.translate(&host).expect("maps");
        assert_eq!(word(&m, 3), 0);
        assert_eq!(t.reverse().translate(&m), Some(host));
        // And subnet 0 maps to the adjustment itself, and back.
        let zero = addr([0xfd00, 0x1, 0x2, 0, 0, 0, 0, 9]);
        let m = t.translate(&zero).expect("maps");
        assert_eq!(word(&m, 3), t.adjustment);
        assert_eq!(t.reverse().translate(&m), Some(zero));
    }

    #[test]
    fn addresses_outside_the_prefix_are_not_translated() {
        let from = addr([0xfd00, 0x1, 0x2, 0, 0, 0, 0, 0]);
        let to = addr([0x2001, 0xdb8, 0x7, 0, 0, 0, 0, 0]);
        let t = Nptv6::new(from, to, 48).expect("valid");
        assert_eq!(t.translate(&addr([0xfd00, 0x1, 0x3, 0, 0, 0, 0, 1])), None);
        assert!(!t.contains(&to));
    }

    #[test]
    fn bad_prefixes_are_refused() {
        let from = addr([0xfd00, 0x1, 0x2, 0, 0, 0, 0, 0]);
        assert_eq!(Nptv6::new(from, from, 0), Err(Nptv6Error::Length(0)));
        assert_eq!(Nptv6::new(from, from, 65), Err(Nptv6Error::Length(65)));
        assert_eq!(Nptv6::new(from, from, 32), Err(Nptv6Error::HostBits));
        let odd = addr([0xfd00, 0x1, 0x3, 0, 0, 0, 0, 0]);
        assert_eq!(Nptv6::new(odd, odd, 47), Err(Nptv6Error::HostBits));
        assert!(Nptv6::new(odd, odd, 48).is_ok());
    }

    /// Every adjustment an exhaustive sweep of the subnet word can meet:
    /// each of the 65,535 mappable subnets round-trips and no two collide.
    #[test]
    fn every_subnet_round_trips_and_none_collide() {
        let from = addr([0xfd12, 0x3456, 0x789a, 0, 0, 0, 0, 0]);
        let to = addr([0x2001, 0x0db8, 0x00ff, 0, 0, 0, 0, 0]);
        let t = Nptv6::new(from, to, 48).expect("valid");
        let back = t.reverse();
        let mut seen = std::collections::HashSet::new();
        for subnet in 0..0xffffu16 {
            let host = addr([0xfd12, 0x3456, 0x789a, subnet, 0, 0, 0, 1]);
            let m = t.translate(&host).expect("maps");
            assert!(seen.insert(word(&m, 3)), "subnet {subnet:#x} collides");
            assert_eq!(back.translate(&m), Some(host), "subnet {subnet:#x}");
        }
    }
}
