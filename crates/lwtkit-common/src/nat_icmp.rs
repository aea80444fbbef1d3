//! Layouts for translating ICMP and ICMPv6 errors through a stateless NAT
//! rule (`lwtkit-ebpf/src/nat_icmp.rs`): the one address (and port) a rule
//! rewrites, what the translation did, and the map value of the test-only
//! program `lwtkit-nat-test` that proves it on packets.

use crate::nptv6::Nptv6;

/// One address translation, as a rule applies it to the outer header of
/// the packet it matched. An ICMP error's embedded packet travels the other
/// way, so the same mapping applies there to the opposite field: a rule
/// that rewrites the outer destination rewrites the embedded source (and
/// its source port), one that rewrites the outer source the embedded
/// destination.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Translation {
    /// The address before, network order (IPv4: the first 4 bytes).
    pub from: [u8; 16],
    /// The address after.
    pub to: [u8; 16],
    /// The embedded TCP/UDP port on the translated side is rewritten to
    /// `to_port` (host order; 0 leaves ports alone) when it is `from_port`
    /// (0: whatever it is).
    pub from_port: u16,
    pub to_port: u16,
    /// 1 for IPv6.
    pub v6: u8,
    /// 1 when the rule rewrites the outer destination (`dnat`), 0 for the
    /// source (`snat`).
    pub dst: u8,
    pub _pad: [u8; 2],
}

const _: () = assert!(core::mem::size_of::<Translation>() == 40);

/// What a translation did to one packet (the test program's result).
pub mod outcome {
    /// Not an ICMP error of a kind that is translated (not ICMP, an echo,
    /// a redirect, neighbour discovery, a later fragment): untouched; the
    /// caller rewrites it as any other packet.
    pub const NOT_ERROR: u32 = 1;
    /// Translated: outer address, embedded address (and port), the
    /// embedded IPv4 header checksum, the ICMP checksum. The embedded L4
    /// checksum was not in the packet (cut, a later fragment) or is an
    /// unused UDP checksum (zero).
    pub const TRANSLATED: u32 = 2;
    /// As [`TRANSLATED`], and the embedded L4 checksum was updated.
    pub const TRANSLATED_L4: u32 = 3;
    /// An error whose outer or embedded address (or port) is not the one
    /// the rule translates: untouched.
    pub const MISMATCH: u32 = 4;
    /// An error too short or malformed to translate (embedded header cut,
    /// wrong version, bad header length, ports cut when a port is to be
    /// rewritten): untouched.
    pub const MALFORMED: u32 = 5;
    /// A helper failed part way (the packet could not be made writable):
    /// the caller must drop the packet.
    pub const FAILED: u32 = 6;
    /// NPTv6: the address is outside the prefix, untouched.
    pub const OUTSIDE: u32 = 7;
    /// NPTv6: no word of the address can take the adjustment, untouched.
    pub const UNMAPPABLE: u32 = 8;
    /// NPTv6: a packet that is not an ICMPv6 error had its address
    /// rewritten.
    pub const REWRITTEN: u32 = 9;
}

/// What `lwtkit-nat-test` applies to the packet it is test-run on.
pub mod op {
    /// [`super::NatCase::translation`] through `nat_icmp::translate`.
    pub const ICMP: u32 = 1;
    /// [`super::NatCase::nptv6`] on the source address (an ICMPv6 error's
    /// embedded destination with it).
    pub const NPTV6_SRC: u32 = 2;
    /// [`super::NatCase::nptv6`] on the destination address (an ICMPv6
    /// error's embedded source with it).
    pub const NPTV6_DST: u32 = 3;
}

/// The one value of `lwtkit-nat-test`'s case map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatCase {
    /// One of [`op`].
    pub op: u32,
    pub _pad: u32,
    pub translation: Translation,
    pub nptv6: Nptv6,
}

const _: () = assert!(core::mem::size_of::<NatCase>() == 88);
