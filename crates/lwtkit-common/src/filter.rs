//! Layout of a compiled filter policy as the kernel program reads it.
//!
//! A policy lives in one array map of 32-byte [`Cell`]s holding two
//! generations side by side (`[0, capacity)` and `[capacity, 2*capacity)`).
//! [`PolicyConfig`] names the live generation; a replace writes the other
//! one, flips `generation`, then waits for an RCU grace period before that
//! half may be written again, so every packet sees one whole rule set.
//!
//! Inside a generation, cell 0 is the header, the rest holds decision-tree
//! nodes, leaves' rule records (inline, contiguous) and the rule-id table,
//! addressed by cell index relative to the generation's base.

/// Dimensions the decision tree cuts on, as indices into [`PacketKey::dims`].
/// Addresses are four big-endian 32-bit words (IPv4 uses word 0 only).
pub mod dim {
    pub const SRC0: usize = 0;
    pub const DST0: usize = 4;
    pub const PROTO: usize = 8;
    /// Source port, or the ICMP type for ICMP/ICMPv6.
    pub const SPORT: usize = 9;
    /// Destination port, or the ICMP code for ICMP/ICMPv6.
    pub const DPORT: usize = 10;
    /// 1 when the L4 header was reached (ports, type, flags are real).
    pub const L4: usize = 11;
    pub const COUNT: usize = 12;
    /// Bit width of each dimension's values.
    pub const WIDTH: [u8; COUNT] = [32, 32, 32, 32, 32, 32, 32, 32, 8, 16, 16, 1];
}

/// One 32-byte unit of the policy array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cell {
    pub w: [u32; 8],
}

/// Node kinds, in `w[0] & 0xff` of a node cell.
pub mod node {
    /// `w[0]`: kind | dim << 8 | shift << 16 | bits << 24; `w[1]`: first
    /// child cell; child `i` is at `w[1] + i` for `i = (dims[dim] >> shift) & ((1 << bits) - 1)`.
    pub const INTERNAL: u32 = 1;
    /// `w[1]`: rule count; `w[2]`: first cell of the leaf's rule records,
    /// inline and contiguous, in rank order: one cell ([`super::RuleRecord`])
    /// per rule in an IPv4 tree, two in an IPv6 tree (the record, then
    /// [`super::V6Words`]).
    pub const LEAF: u32 = 2;
}

/// Header cell of a generation (cell 0 of it).
/// `w[0]`: number of IPv4 trees, `w[1]`: cell listing their roots;
/// `w[2]`, `w[3]`: the same for IPv6; `w[4]`: cells used; `w[5]`: first
/// cell of the rule-id table (the id of counter slot `s` is word `s % 8`
/// of cell `w[5] + s / 8`), read only to log.
pub const HEADER_CELL: u32 = 0;
/// Header word holding the rule-id table's first cell.
pub const HEADER_IDS: usize = 5;
/// Header word holding the action table's first cell (0: no rule of the
/// generation has an action beyond allow/drop). The action of counter slot
/// `s` is the [`ActionRecord`] in cell `w[6] + s`, for `s < w[7]`; read only
/// after a match whose flags name an action, so the matching walk does not
/// grow.
pub const HEADER_ACTIONS: usize = 6;
/// Header word holding the number of slots the action table covers.
pub const HEADER_ACTION_SLOTS: usize = 7;

/// A rule as a leaf holds it: one 32-byte cell with everything an IPv4
/// packet is checked against (IPv6 trees add a [`V6Words`] cell). A rule
/// is copied into every leaf whose region it overlaps.
///
/// A packet matches when every field agrees, all checked without branches:
/// `(addr ^ word) & mask(plen) == 0` for both addresses, `proto_mask &
/// (packet proto ^ proto) == 0`, the ports inside the ranges (full ranges
/// when the rule names none; a packet without L4 has ports 0), the TCP
/// flags under the mask, and L4 present when `NEEDS_L4`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleRecord {
    /// Word 0 of the source and destination prefixes (host-order value of
    /// the big-endian word; IPv4 addresses whole), host bits clear.
    pub src: u32,
    pub dst: u32,
    pub sport_lo: u16,
    pub sport_hi: u16,
    pub dport_lo: u16,
    pub dport_hi: u16,
    pub proto: u8,
    /// 0xff when the rule names a protocol, else 0.
    pub proto_mask: u8,
    /// Prefix lengths within word 0 (0 to 32; the rest of an IPv6
    /// prefix's length is in [`V6Words::plen`]).
    pub src_plen: u8,
    pub dst_plen: u8,
    pub tcp_flags_mask: u8,
    pub tcp_flags_value: u8,
    /// [`rule_flags`].
    pub flags: u16,
    /// The rule's per-rule counter slot, `1..=capacity` (slots are reused,
    /// ids are not); the rule id is in the generation's id table.
    pub slot: u32,
    /// The rule's rank in priority order (lower wins across trees).
    pub rank: u32,
}

/// Second cell of a record in an IPv6 tree: address words 1 to 3 and the
/// prefix length within each (0 to 32): `plen[0..3]` the source's,
/// `plen[3..6]` the destination's.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct V6Words {
    pub src: [u32; 3],
    pub dst: [u32; 3],
    pub plen: [u8; 8],
}

pub mod rule_flags {
    pub const DROP: u16 = 1 << 0;
    pub const LOG: u16 = 1 << 1;
    /// The rule names addresses; `V6` says which family.
    pub const HAS_FAMILY: u16 = 1 << 2;
    pub const V6: u16 = 1 << 3;
    pub const HAS_PROTO: u16 = 1 << 4;
    /// The rule looks at the L4 header (ports, ICMP type, TCP flags): a
    /// packet without one (non-first fragment, truncated) never matches.
    pub const NEEDS_L4: u16 = 1 << 5;
    /// The rule's action ([`super::action_kind`]), in bits 8 to 10; 0 for
    /// allow and drop. Its parameters are in the generation's action table.
    pub const ACTION_SHIFT: u16 = 8;
    pub const ACTION_MASK: u16 = 0x7 << ACTION_SHIFT;
}

/// What a rule does beyond allow/drop (`(flags & ACTION_MASK) >> ACTION_SHIFT`,
/// and [`ActionRecord::kind`]).
pub mod action_kind {
    pub const NONE: u8 = 0;
    pub const SNAT: u8 = 1;
    pub const DNAT: u8 = 2;
    pub const MARK: u8 = 3;
    pub const REDIRECT: u8 = 4;
}

/// [`ActionRecord::flags`].
pub mod action_flags {
    /// `mark N reroute`: return `BPF_LWT_REROUTE` after setting the mark.
    pub const REROUTE: u8 = 1 << 0;
    /// `snat ... port N` / `dnat ... port N`: rewrite the TCP/UDP source /
    /// destination port too.
    pub const PORT: u8 = 1 << 1;
    /// The address is IPv6.
    pub const V6: u8 = 1 << 2;
}

/// The parameters of one rule's action: one cell of the generation's action
/// table, at the rule's counter slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ActionRecord {
    /// [`action_kind`].
    pub kind: u8,
    /// [`action_flags`].
    pub flags: u8,
    /// snat/dnat: the length of the target prefix (NETMAP: the bits taken
    /// from `addr`, the rest kept from the packet); 32 or 128 for one address.
    pub plen: u8,
    /// IPv6 prefix translation (NPTv6, RFC 6296), checksum-neutral: where
    /// [`Self::npt_adj`] goes: 1 into 16-bit word 3 (prefixes up to /48),
    /// 2 into the first interface-id word that is not 0xffff (/49 to /64);
    /// 0: not NPTv6 (the L4 checksum is updated instead).
    pub npt_word: u8,
    /// snat/dnat with [`action_flags::PORT`]: the new source/destination
    /// port (host order).
    pub port: u16,
    /// NPTv6: the one's-complement adjustment added to the word
    /// [`Self::npt_word`] names when the address is not 0xffff there.
    pub npt_adj: u16,
    /// mark: the mark; redirect: the device's ifindex.
    pub value: u32,
    pub _pad3: u32,
    /// snat/dnat: the target address as four host-order values of its
    /// big-endian words (IPv4 in word 0), as [`PacketKey`]'s dims hold them.
    pub addr: [u32; 4],
}

/// What the actions of one rule did, per CPU, indexed like [`RuleStats`]
/// (generation and counter slot) in the policy's `ACTION_STATS` map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ActionStats {
    /// Translated (snat/dnat), rerouted (mark reroute), marked (mark
    /// alone) or redirected, by the rule's kind.
    pub done: u64,
    /// The rewrite or redirect failed (helper error, device gone): dropped.
    pub failed: u64,
    /// `mark N reroute` met a packet already carrying mark N: not rerouted
    /// again (it went on on its route).
    pub loops: u64,
}

/// Policy-wide settings, the single entry of the policy's config map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyConfig {
    /// Live generation: 0 or 1.
    pub generation: u32,
    /// Cells per generation.
    pub capacity: u32,
    /// 1: drop when no rule matches.
    pub default_drop: u32,
    /// lwtkit's id of the policy (carried in events).
    pub policy_id: u32,
    /// Events allowed per rule per CPU per second, and burst.
    pub log_rate: u32,
    pub log_burst: u32,
    /// Rule-counter slots per generation: the rule with counter slot `s`
    /// ([`RuleRecord::slot`]) of generation `g` counts in entry
    /// `g * rule_slots + s` (entry `g * rule_slots` for the default), so a
    /// new rule set starts from zero while the old one finishes counting in
    /// its own entries.
    pub rule_slots: u32,
    /// 1: drop non-first fragments; 0: pass them (their datagram is judged
    /// by its first fragment). They never meet the rules.
    pub fragments_drop: u32,
    /// 1: malformed packets get the default verdict; 0: they are dropped.
    pub malformed_default: u32,
}

/// Per-rule, per-CPU statistics, indexed by the rule's counter slot
/// ([`RuleRecord::slot`]); slot 0 counts the packets no rule matched (judged
/// by the default verdict).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleStats {
    pub packets: u64,
    pub bytes: u64,
    /// Events emitted and events suppressed by the rate limit.
    pub logged: u64,
    pub suppressed: u64,
    /// Token bucket of the rate limit (tokens scaled by 1e9, last refill).
    pub tokens: u64,
    pub last_ns: u64,
}

/// What the parser makes of a packet, before any rule is tried.
pub mod packet_class {
    /// An unfragmented packet, an atomic fragment, or a first fragment that
    /// holds every L4 field the rules read: judged by the rules.
    pub const WHOLE: u32 = 0;
    /// A fragment with a non-zero offset (not 1): no L4 header; passed or
    /// dropped by the policy's fragment setting, never by the rules.
    pub const LATER_FRAGMENT: u32 = 1;
    /// Not judgeable: not IPv4/IPv6, a cut IP header, an IPv6 header chain
    /// longer than [`super::MAX_EXT_HEADERS`] or cut short, a cut L4 header.
    /// Dropped, or judged by the default (`--malformed default`).
    pub const MALFORMED: u32 = 2;
    /// A fragment that could rewrite or hide what the rules read: offset 1
    /// (8 bytes, RFC 1858/3128), or a first fragment that ends before the
    /// header chain or the L4 fields do. Always dropped.
    pub const EVASIVE: u32 = 3;
}

/// Per-attachment counters, indexed by [`verdict_slot`].
pub mod verdict_slot {
    pub const ALLOWED: u32 = 0;
    pub const DROPPED: u32 = 1;
    /// Malformed packets and evasive fragments (see [`super::packet_class`]),
    /// whatever their verdict.
    pub const MALFORMED: u32 = 2;
    pub const COUNT: u32 = 3;
}

/// [`Event::verdict`] values beyond allow (0) and drop (1): what an action did.
pub mod event_verdict {
    pub const ALLOW: u8 = 0;
    pub const DROP: u8 = 1;
    pub const TRANSLATED: u8 = 2;
    pub const REROUTED: u8 = 3;
    pub const REDIRECTED: u8 = 4;
    pub const FAILED: u8 = 5;
    pub const LOOP: u8 = 6;
    pub const MARKED: u8 = 7;
}

/// Rule id reported when no rule matched (the default verdict applied).
pub const NO_RULE: u32 = u32::MAX;

/// Bytes of the packet (from L3) an event carries at most.
pub const EVENT_SNAPLEN: usize = 128;

/// A `log` rule's ring-buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Event {
    pub time_ns: u64,
    pub policy_id: u32,
    pub rule_id: u32,
    /// 0 in, 1 out, 2 xmit.
    pub hook: u8,
    /// [`event_verdict`]: 0 allow, 1 drop, or what the rule's action did.
    pub verdict: u8,
    /// 4 or 6.
    pub family: u8,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    /// Packet length (L3) and bytes captured into `data`.
    pub len: u32,
    pub caplen: u32,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub data: [u8; EVENT_SNAPLEN],
}

/// What one instance of the filter program is specialised for: the
/// paths of `bin/filter.rs` it keeps. User space sets it before load as the
/// `.rodata.spec` section ([`crate::maps::filter::SPEC_SECTION`]); libbpf
/// freezes that map, so the verifier reads each field as a constant, never
/// visits the paths it rules out and removes them (`opt_remove_dead_code`).
/// An instance must cover every generation packets may walk: a policy
/// change that needs more first swaps in an instance that has it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "user", derive(serde::Serialize, serde::Deserialize))]
pub struct ProgramSpec {
    /// Most IPv4 trees of a generation: 0 (IPv4 packets meet no rule), 1
    /// (the walk is called directly), or more (a `bpf_loop` over the trees,
    /// up to [`MAX_TREES`]).
    pub v4_trees: u32,
    /// The same for IPv6.
    pub v6_trees: u32,
    /// 1: some rule logs (the event path is kept).
    pub log: u32,
    /// 1: some rule has an action (NAT, mark, redirect: their paths, the
    /// ICMP error and fragment translations, are kept).
    pub actions: u32,
}

impl ProgramSpec {
    /// Every path: what the object holds before user space sets the
    /// section, and what a policy without a recorded specialisation runs.
    pub const GENERIC: ProgramSpec = ProgramSpec {
        v4_trees: MAX_TREES,
        v6_trees: MAX_TREES,
        log: 1,
        actions: 1,
    };
    /// No path a rule uses: an empty policy's.
    pub const NONE: ProgramSpec = ProgramSpec {
        v4_trees: 0,
        v6_trees: 0,
        log: 0,
        actions: 0,
    };

    /// Every path either needs: an instance that serves both.
    pub fn union(self, o: ProgramSpec) -> ProgramSpec {
        ProgramSpec {
            v4_trees: Self::trees(self.v4_trees.max(o.v4_trees)),
            v6_trees: Self::trees(self.v6_trees.max(o.v6_trees)),
            log: self.log | o.log,
            actions: self.actions | o.actions,
        }
    }

    /// Whether this instance has every path `o` needs.
    pub fn covers(self, o: ProgramSpec) -> bool {
        self.union(o) == self
    }

    /// Tree counts the program tells apart: 0, 1, and any more.
    pub fn trees(n: u32) -> u32 {
        if n > 1 {
            MAX_TREES
        } else {
            n
        }
    }
}

const _: () = assert!(core::mem::size_of::<ProgramSpec>() == 16);
const _: () = assert!(core::mem::size_of::<RuleRecord>() == 32);
const _: () = assert!(core::mem::size_of::<V6Words>() == 32);
const _: () = assert!(core::mem::size_of::<ActionRecord>() == 32);
const _: () = assert!(core::mem::size_of::<ActionStats>() == 24);
const _: () = assert!(core::mem::size_of::<Cell>() == 32);
const _: () = assert!(core::mem::size_of::<PolicyConfig>() == 36);
const _: () = assert!(core::mem::size_of::<Event>() == 192);

/// Bounds of the kernel walk, shared with the compiler.
pub const MAX_DEPTH: u32 = 32;
/// Most decision trees per family (rules are split by which fields are wide).
pub const MAX_TREES: u32 = 8;
/// Most rules a leaf may list (the compiler splits or refuses beyond).
pub const MAX_LEAF: u32 = 64;
/// IPv6 extension headers walked; a packet whose L4 header lies beyond
/// them is malformed.
pub const MAX_EXT_HEADERS: u32 = 8;
