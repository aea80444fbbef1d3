//! Layout of the encapsulation map: per destination prefix, the outer
//! header block the `encap` program pushes, prebuilt by user space; the
//! kernel only fills in what changes per packet (lengths, the UDP source
//! port from the flow hash, TTL/ToS when inherited, the IPv4 checksum).

/// Most bytes of outer headers one encapsulation pushes (the kernel's limit
/// for `bpf_lwt_push_encap(BPF_LWT_ENCAP_IP)`).
pub const MAX_HEADER: usize = 256;

/// Key of the encapsulation trie: `prefix_len` counts the 32-bit family tag
/// (`[0, 0, 0, 4]` or `[0, 0, 0, 6]`) plus the prefix bits of `addr`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EncapKey {
    pub prefix_len: u32,
    pub family: [u8; 4],
    pub addr: [u8; 16],
}

impl EncapKey {
    pub const FAMILY_BITS: u32 = 32;
}

pub mod flags {
    /// The outer header is IPv6 (else IPv4, 20 bytes, no options).
    pub const OUTER_V6: u16 = 1 << 0;
    /// A UDP header follows the outer IP header (at 20 or 40).
    pub const UDP: u16 = 1 << 1;
    /// Copy the inner TTL / hop limit to the outer header.
    pub const TTL_INHERIT: u16 = 1 << 2;
    /// Copy the inner ToS / traffic class to the outer header.
    pub const TOS_INHERIT: u16 = 1 << 3;
}

/// The value of the encapsulation trie.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EncapEntry {
    /// Bytes of `header` to push.
    pub len: u16,
    pub flags: u16,
    /// Index into the per-route counters.
    pub counter: u32,
    pub header: [u8; MAX_HEADER],
}

/// Per-route counters, per CPU, indexed by `EncapEntry::counter`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(serde::Serialize))]
pub struct EncapStats {
    pub packets: u64,
    pub bytes: u64,
    /// Packets dropped: no tunnel for their destination.
    pub no_tunnel: u64,
    /// Packets dropped: the kernel refused the push (e.g. GSO it cannot
    /// segment, no headroom).
    pub push_failed: u64,
    /// Packets that were not IPv4/IPv6.
    pub malformed: u64,
}

/// Counters slot for packets whose destination has no tunnel.
pub const NO_TUNNEL_SLOT: u32 = 0;
/// Most encapsulated routes per namespace.
pub const MAX_TUNNELS: u32 = 65_536;

/// What lwtkit's decapsulating tc ingress program strips on one device.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecapConfig {
    /// [`decap`] bits.
    pub kinds: u32,
    /// UDP destination ports of FOU and GUE (0: off).
    pub fou_port: u16,
    pub gue_port: u16,
}

/// Tunnel kinds the decapsulator accepts.
pub mod decap {
    /// IPv4 or IPv6 inside IPv4 or IPv6 (ipip, sit, ip6ip6, ip4in6).
    pub const IP_IN_IP: u32 = 1 << 0;
    pub const GRE: u32 = 1 << 1;
    pub const FOU: u32 = 1 << 2;
    pub const GUE: u32 = 1 << 3;
}
