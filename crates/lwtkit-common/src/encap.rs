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

/// ELF section (and libbpf map) of the `encap` program's one load-time
/// constant, the table its routes live in (a `u32`): user space sets it
/// before load, so each table gets its own program instance. The kernel side
/// spells the same name in its `link_section`.
pub const TABLE_SECTION: &str = ".rodata.table";

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
