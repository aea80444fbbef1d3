//! Layout of the encapsulation map: per destination prefix, the outer
//! header block the `encap` program pushes, prebuilt by user space; the
//! kernel only fills in what changes per packet (lengths, the UDP source
//! port from the flow hash, TTL/ToS when inherited, the IPv4 checksum).

/// Most bytes of outer headers one encapsulation pushes (the kernel's limit
/// for `bpf_lwt_push_encap(BPF_LWT_ENCAP_IP)`).
pub const MAX_HEADER: usize = 256;

/// Key of the encapsulation trie: the routing table of the route, the
/// 32-bit family tag (`[0, 0, 0, 4]` or `[0, 0, 0, 6]`) and the prefix.
/// `prefix_len` counts the table and family bits (always all of them, so
/// a lookup never leaves its table or family) plus the prefix bits of `addr`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EncapKey {
    pub prefix_len: u32,
    /// The route's table id, big-endian: the trie compares bytes in order.
    pub table: [u8; 4],
    pub family: [u8; 4],
    pub addr: [u8; 16],
}

impl EncapKey {
    pub const TABLE_BITS: u32 = 32;
    pub const FAMILY_BITS: u32 = 32;
    /// Bits of every key before the address: table and family.
    pub const HEADER_BITS: u32 = Self::TABLE_BITS + Self::FAMILY_BITS;
    /// Bytes after `prefix_len` (the trie's data size).
    pub const DATA_LEN: usize = 24;

    /// The key of `addr` (4 or 16 bytes, network order) / `prefix_len` in `table`.
    pub fn new(table: u32, addr: &[u8], prefix_len: u32) -> Self {
        let mut k = EncapKey {
            prefix_len: Self::HEADER_BITS + prefix_len,
            table: table.to_be_bytes(),
            family: [0, 0, 0, if addr.len() == 16 { 6 } else { 4 }],
            addr: [0; 16],
        };
        let n = addr.len().min(16);
        k.addr[..n].copy_from_slice(&addr[..n]);
        k
    }
}

const _: () = assert!(core::mem::size_of::<EncapKey>() == 4 + EncapKey::DATA_LEN);

pub mod flags {
    /// The outer header is IPv6 (else IPv4, 20 bytes, no options).
    pub const OUTER_V6: u16 = 1 << 0;
    /// A UDP header follows the outer IP header (at 20 or 40).
    pub const UDP: u16 = 1 << 1;
    /// Copy the inner TTL / hop limit to the outer header.
    pub const TTL_INHERIT: u16 = 1 << 2;
    /// Copy the inner ToS / traffic class to the outer header.
    pub const TOS_INHERIT: u16 = 1 << 3;
    /// IPv4 outer: DF from the inner packet (an IPv6 inner packet sets it,
    /// as the kernel's vxlan `df inherit` does). Without it the prebuilt
    /// header's DF bit stays as user space set it.
    pub const DF_INHERIT: u16 = 1 << 4;
    /// IPv6 outer: the flow label from the inner flow's hash (as the
    /// kernel's `ip6_make_flowlabel`), so IPv6 ECMP can spread tunnels.
    pub const FLOW_LABEL: u16 = 1 << 5;
    /// UDP over IPv6: compute the UDP checksum (else it stays 0, RFC 6935).
    pub const UDP6_CSUM: u16 = 1 << 6;
    /// The outer protocol / next header byte is one that
    /// `bpf_lwt_push_encap` refuses for GSO packets (IPIP 4, routing
    /// header 43): push with 0 there (which the kernel maps to the
    /// IP-in-IP GSO types) and write the real byte back after the push.
    pub const PROTO_FIXUP: u16 = 1 << 7;
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
    /// The GRE key packets must carry when [`decap_flags::GRE_KEY`] is set.
    pub gre_key: u32,
    /// [`decap_flags`] bits.
    pub flags: u32,
}

const _: () = assert!(core::mem::size_of::<DecapConfig>() == 16);

/// Tunnel kinds the decapsulator accepts: outer family, then inner family.
pub mod decap {
    /// IPv4 in IPv4 (protocol 4).
    pub const IPIP: u32 = 1 << 0;
    pub const GRE: u32 = 1 << 1;
    pub const FOU: u32 = 1 << 2;
    pub const GUE: u32 = 1 << 3;
    /// IPv6 in IPv4 (protocol 41).
    pub const SIT: u32 = 1 << 4;
    /// IPv6 in IPv6 (next header 41).
    pub const IP6IP6: u32 = 1 << 5;
    /// IPv4 in IPv6 (next header 4).
    pub const IP4IN6: u32 = 1 << 6;
}

/// Switches in [`DecapConfig::flags`].
pub mod decap_flags {
    /// GRE packets must carry the key [`super::DecapConfig::gre_key`];
    /// without it, only GRE packets without a key are taken.
    pub const GRE_KEY: u32 = 1 << 0;
    /// Only outer sources in the remote trie are taken.
    pub const REMOTE_FILTER: u32 = 1 << 1;
}

/// Most prefixes in each of the decapsulator's address tries (local
/// destinations, allowed remotes).
pub const MAX_DECAP_ADDRS: u32 = 16_384;

/// Slots of the decapsulator's per-CPU counters (`Counters` each): what it
/// took, and why it let each other packet pass untouched.
pub mod decap_stat {
    /// Decapsulated and handed back to the device's ingress.
    pub const TAKEN: u32 = 0;
    /// Dropped: the kernel refused to remove the outer headers.
    pub const REFUSED: u32 = 1;
    /// Passed: not a tunnel packet of a configured type (all other traffic).
    pub const NOT_TUNNEL: u32 = 2;
    /// Passed: the outer destination is not an address of this host (or
    /// not in `--local`), or the kernel would route it elsewhere.
    pub const NOT_LOCAL: u32 = 3;
    /// Passed: the outer source is not in `--remote`.
    pub const NOT_REMOTE: u32 = 4;
    /// Passed: GRE with another key, with a key when none is configured,
    /// or without one when one is.
    pub const GRE_KEY: u32 = 5;
    /// Passed: the inner header is not the IP version the outer one announces.
    pub const INNER: u32 = 6;
    /// Passed: a GUE control message (C bit).
    pub const GUE_CONTROL: u32 = 7;
    /// Passed: an outer IPv4 or IPv6 fragment of a tunnel packet for this
    /// host; the stack reassembles it but has no tunnel to hand it to.
    pub const FRAGMENT: u32 = 8;
    /// Passed: a tunnel packet with features lwtkit does not strip (IPv4
    /// options, GRE checksum/sequence/routing/version, GUE options or
    /// flags, GUE payloads other than IPv4/IPv6, GRE payloads other than IP).
    pub const UNSUPPORTED: u32 = 9;
    /// Passed: an outer IPv4 header with a bad checksum or length.
    pub const MALFORMED: u32 = 10;
    pub const COUNT: u32 = 11;
}
