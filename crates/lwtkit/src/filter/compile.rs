//! Compiles a policy's rules into the decision tree the kernel walks
//! (HiCuts-style: each internal node cuts one field's aligned range into
//! 2^k equal parts, indexed by the field's bits; leaves hold at most
//! `MAX_LEAF` rule records, inline and in priority order, so a packet reads
//! its leaf's rules from a few adjacent cache lines).
//!
//! The tree makes the per-packet cost depend on its depth and leaf size,
//! not on the number of rules: a packet never meets rules whose ranges
//! exclude it. Rules that a higher-priority rule covers over a node's whole
//! region are dropped from that node, which keeps leaves short.
use ipnet::IpNet;
use std::collections::HashMap;

use lwtkit_common::filter::{
    action_flags, action_kind, dim, node, rule_flags as rf, ActionRecord, Cell, RuleRecord,
    V6Words, HEADER_ACTIONS, HEADER_ACTION_SLOTS, HEADER_IDS, MAX_DEPTH, MAX_LEAF, MAX_TREES,
};

use super::rule::{Action, Rule, RuleSpec, Verdict};

/// Leaves with at most this many rules are not cut further.
const BINTH: usize = 8;
/// Space factor: a cut may grow the rule copies to `SPFAC` times a node's rules.
const SPFAC: usize = 2;
/// Largest cut: 2^MAX_BITS children (the space factor bounds it by the
/// node's rules first: only nodes of thousands of rules cut this wide).
/// Every level costs a packet one dependent read, the walk's longest
/// step. 12 bits took a level off some 100k-rule trees, but a narrow rule
/// then reached more leaves than a one-rule change rewrites (`patch`'s
/// `MAX_TOUCHED`), so `rule add` compiled whole (193 ms against 99-112),
/// and the sweep gained nothing measurable on the AMD host (docs/
/// benchmarks.md, "Wider cuts, again"). At most 15 (4 bits of the node word).
const MAX_BITS: u32 = 8;
/// Header word holding the number of cells of the rule-id table (the
/// kernel reads only `HEADER_IDS`; a change in place needs the length).
/// Marks the cell before the rule-id table as holding its length (word 0).
pub const IDS_META: u32 = 0x6c77_6964;

/// The cell before a rule-id table of `len` cells (read only by lwtkit:
/// the kernel reads the table from the header's word 5).
pub(super) fn ids_meta(len: u32) -> Cell {
    let mut c = Cell::default();
    c.w[0] = len;
    c.w[1] = IDS_META;
    c
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CompileError {
    #[error("{count} rules overlap on the same addresses, protocol and ports (differing only in tcp-flags or fragment handling), more than the {max} a leaf can hold; rules involved: {ids}")]
    LeafTooLarge { count: usize, max: u32, ids: String },
    #[error("the rule set is too intricate for the matcher: {rules} rules compiled into more than {cells} cells (rules that overlap in many fields at once multiply); split it into several policies")]
    TooComplex { cells: usize, rules: usize },
}

/// One rule as the tree sees it: a range per dimension plus the record
/// the kernel checks in the leaf.
#[derive(Clone, Debug)]
pub(super) struct Flat {
    pub(super) ranges: [(u32, u32); dim::COUNT],
    /// Constraints the tree does not cut on (TCP flags).
    pub(super) leaf_only: bool,
    pub(super) id: u32,
    pub(super) rec: RuleRecord,
    /// Address words 1 to 3 (IPv6 trees' second record cell).
    pub(super) v6: V6Words,
}

/// The cells of one generation.
pub struct Compiled {
    pub cells: Vec<Cell>,
    pub max_depth: u32,
    pub max_leaf: usize,
}

/// Compiles `rules` (any order) into cells, each rule counting in the
/// counter slot of its id (for rule sets whose ids are small, as in tests).
pub fn compile(rules: &[Rule]) -> Result<Compiled, CompileError> {
    compile_with_slots(rules, |r| r.id)
}

/// Compiles `rules` (any order) into cells; rule ids and the counter slot
/// `slot_of` gives each rule go into the heads.
pub fn compile_with_slots(
    rules: &[Rule],
    slot_of: impl Fn(&Rule) -> u32,
) -> Result<Compiled, CompileError> {
    // Merged groups (see `separate`) copy a rule across the cuts of the
    // other groups' field when its own range there is wider; a set that
    // fails that way (over the budget) is compiled again as separate
    // trees, so no rule set that compiled without merging fails with it.
    compile_grouped(rules, &slot_of, true).or_else(|_| compile_grouped(rules, &slot_of, false))
}

fn compile_grouped(
    rules: &[Rule],
    slot_of: &impl Fn(&Rule) -> u32,
    merge: bool,
) -> Result<Compiled, CompileError> {
    let mut sorted: Vec<&Rule> = rules.iter().collect();
    sorted.sort_by_key(|r| (r.spec.priority, r.id));
    let mut flats: Vec<Flat> = sorted.iter().flat_map(|r| flatten(r, slot_of(r))).collect();
    // The kernel takes the match of lowest rank across trees. Ranks are
    // spread over the u32 range, so a rule added later fits between two
    // others without renumbering every record (`super::patch`).
    let gap = rank_gap(flats.len());
    for (i, f) in flats.iter_mut().enumerate() {
        f.rec.rank = ((i as u64 + 1) * u64::from(gap)) as u32;
    }

    let mut b = Builder {
        cells: vec![Cell::default()],
        max_depth: 0,
        max_leaf: 0,
        budget: budget(flats.len()),
        leaves: HashMap::new(),
        stride: 1,
    };
    // One tree per group of rules alike in which fields are wide (EffiCuts'
    // separation): wide rules are then never copied across the cuts that
    // separate narrow ones, which keeps the trees small and shallow.
    for (i, v6) in [false, true].into_iter().enumerate() {
        let members: Vec<usize> = (0..flats.len())
            .filter(|&k| family_ok(&flats[k], v6))
            .collect();
        let groups = separate(&flats, members, merge);
        b.stride = if v6 { 2 } else { 1 };
        let list = b.alloc(1);
        for (t, group) in groups.into_iter().enumerate() {
            let root = b.alloc(1);
            b.build(&flats, group, full_region(v6), root, 0)?;
            b.cells[list as usize].w[t] = root;
            b.cells[0].w[2 * i] = t as u32 + 1;
        }
        b.cells[0].w[2 * i + 1] = list;
    }
    // The rule-id table, by counter slot: read only to log an event.
    let top = flats.iter().map(|f| f.rec.slot).max().unwrap_or(0) as usize;
    // One cell before the table, read only by lwtkit, says how long it
    // is (a one-rule change may move it and make it longer).
    let meta = b.claim(top / 8 + 2, flats.len())?;
    b.cells[meta as usize] = ids_meta(top as u32 / 8 + 1);
    let ids = meta + 1;
    for f in &flats {
        let s = f.rec.slot as usize;
        b.cells[ids as usize + s / 8].w[s % 8] = f.id;
    }
    b.cells[0].w[HEADER_IDS] = ids;
    // The action table, by counter slot: read only after a match whose
    // flags name an action.
    let acted: Vec<(u32, &Action, &RuleSpec)> = sorted
        .iter()
        .filter_map(|r| r.spec.action.as_ref().map(|a| (slot_of(r), a, &r.spec)))
        .collect();
    if let Some(top) = acted.iter().map(|(s, _, _)| *s).max() {
        let n = top as usize + 1;
        if b.cells.len() + n > b.budget {
            return Err(CompileError::TooComplex {
                cells: b.budget,
                rules: flats.len(),
            });
        }
        let first = b.alloc(n);
        for (slot, a, spec) in acted {
            b.cells[first as usize + slot as usize] = as_cell(&action_record(a, spec));
        }
        b.cells[0].w[HEADER_ACTIONS] = first;
        b.cells[0].w[HEADER_ACTION_SLOTS] = n as u32;
    }
    b.cells[0].w[4] = b.cells.len() as u32;
    Ok(Compiled {
        cells: b.cells,
        max_depth: b.max_depth,
        max_leaf: b.max_leaf,
    })
}

/// Cells a rule set may compile into before lwtkit gives up on it.
pub(super) fn budget(rules: usize) -> usize {
    64 * rules + 65_536
}

/// The distance between the ranks of consecutive rules of a compiled set
/// of `flats` rules: the u32 range spread evenly (rank `u32::MAX` is the
/// kernel's "no match", never a rule's).
pub(super) fn rank_gap(flats: usize) -> u32 {
    (u64::from(u32::MAX) / (flats as u64 + 1)).min(u64::from(u32::MAX)) as u32
}

/// Splits rules (in priority order) into at most `MAX_TREES` groups by
/// which of src, dst, sport, dport are wide (cover at least half the field
/// for ports, a /16 or shorter for addresses).
fn separate(flats: &[Flat], members: Vec<usize>, merge: bool) -> Vec<Vec<usize>> {
    let wide = |f: &Flat| -> u8 {
        let r = &f.ranges;
        let big = |(lo, hi): (u32, u32), half: u32| hi - lo >= half;
        u8::from(big(r[dim::SRC0], 1 << 16))
            | u8::from(big(r[dim::DST0], 1 << 16)) << 1
            | u8::from(big(r[dim::SPORT], 1 << 15)) << 2
            | u8::from(big(r[dim::DPORT], 1 << 15)) << 3
    };
    let mut groups: Vec<(u8, Vec<usize>)> = Vec::new();
    for k in members {
        let sig = wide(&flats[k]);
        match groups.iter_mut().find(|(s, _)| *s == sig) {
            Some((_, g)) => g.push(k),
            None => groups.push((sig, vec![k])),
        }
    }
    // Groups narrow in the same address field go into one tree: it can cut
    // on that field, which copies none of them, so a packet walks one
    // tree instead of several (a /24 or /32 destination splits 100k rules
    // as well as it splits any one group of them). The smaller group
    // folds into the largest such group; what the merged tree then finds
    // wide is what either found wide.
    groups.sort_by_key(|(_, g)| std::cmp::Reverse(g.len()));
    let mut i = 1;
    while merge && i < groups.len() {
        let shared = |a: u8, b: u8| !a & !b & 0b11 != 0;
        match (0..i).find(|&j| shared(groups[j].0, groups[i].0)) {
            Some(j) => {
                let (sig, mut g) = groups.remove(i);
                groups[j].0 |= sig;
                groups[j].1.append(&mut g);
                groups[j].1.sort_unstable();
            }
            None => i += 1,
        }
    }
    // Too many groups: fold the smallest into the one with the widest
    // signature that covers both (wider fields only make cuts coarser).
    while groups.len() > MAX_TREES as usize {
        groups.sort_by_key(|(_, g)| std::cmp::Reverse(g.len()));
        let (sig, mut small) = groups.pop().unwrap_or_default();
        let target = groups
            .iter()
            .position(|(s, _)| s & sig == sig)
            .unwrap_or(groups.len() - 1);
        groups[target].0 |= sig;
        groups[target].1.append(&mut small);
        groups[target].1.sort_unstable();
    }
    if groups.is_empty() {
        groups.push((0, Vec::new()));
    }
    groups.into_iter().map(|(_, g)| g).collect()
}

pub(super) fn family_ok(f: &Flat, v6: bool) -> bool {
    f.rec.flags & rf::HAS_FAMILY == 0 || (f.rec.flags & rf::V6 != 0) == v6
}

pub(super) fn full_region(v6: bool) -> [(u32, u32); dim::COUNT] {
    let mut r = [(0u32, 0u32); dim::COUNT];
    for (d, slot) in r.iter_mut().enumerate() {
        let width = dim::WIDTH[d];
        // IPv4 packets carry only the first address word.
        let used =
            v6 || !(d > dim::SRC0 && d < dim::SRC0 + 4 || d > dim::DST0 && d < dim::DST0 + 4);
        *slot = if used { (0, max_of(width)) } else { (0, 0) };
    }
    r
}

pub(super) fn max_of(width: u8) -> u32 {
    if width >= 32 {
        u32::MAX
    } else {
        (1u32 << width) - 1
    }
}

/// A plain 32-byte value as a cell.
pub(super) fn as_cell<T: Copy>(v: &T) -> Cell {
    const { assert!(size_of::<T>() == 32) };
    let mut c = Cell::default();
    // SAFETY: T is 32 bytes of plain integers (asserted above).
    unsafe {
        core::ptr::copy_nonoverlapping(
            (v as *const T).cast::<u8>(),
            c.w.as_mut_ptr().cast::<u8>(),
            32,
        )
    };
    c
}

/// The kernel's kind of an action (0 for allow and drop).
pub fn action_kind_of(a: Option<&Action>) -> u8 {
    match a {
        None => action_kind::NONE,
        Some(Action::Snat { .. }) => action_kind::SNAT,
        Some(Action::Dnat { .. }) => action_kind::DNAT,
        Some(Action::Mark { .. }) => action_kind::MARK,
        Some(Action::Redirect { .. }) => action_kind::REDIRECT,
    }
}

/// NPTv6 (RFC 6296) between prefixes `from` and `to` of the same length
/// (up to /64): which word takes the adjustment (`ActionRecord::npt_word`)
/// and the adjustment, `sum(from) - sum(to)` in one's complement, so the
/// address's sum (and every checksum over it) stays the same.
pub fn npt66(from: ipnet::Ipv6Net, to: ipnet::Ipv6Net) -> Option<(u8, u16)> {
    let plen = to.prefix_len();
    if plen == 0 || plen > 64 || from.prefix_len() != plen {
        return None;
    }
    let mask = u128::from(to.netmask());
    let sum = |x: u128| {
        let mut s = 0u32;
        for i in 0..8 {
            s += ((x >> (16 * i)) & 0xffff) as u32;
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    };
    let f = sum(u128::from(from.network()) & mask);
    let t = sum(u128::from(to.network()) & mask);
    let mut adj = u32::from(f) + u32::from(!t);
    while adj > 0xffff {
        adj = (adj & 0xffff) + (adj >> 16);
    }
    Some((if plen <= 48 { 1 } else { 2 }, adj as u16))
}

/// An action's parameters as the kernel reads them (`spec`: the rule, whose
/// `src`/`dst` prefix an IPv6 prefix translation maps from).
pub fn action_record(a: &Action, spec: &RuleSpec) -> ActionRecord {
    let mut r = ActionRecord {
        kind: action_kind_of(Some(a)),
        ..ActionRecord::default()
    };
    match a {
        Action::Snat { to, port } | Action::Dnat { to, port } => {
            r.addr = words_of(to);
            r.plen = to.prefix_len();
            if let IpNet::V6(t) = to {
                r.flags |= action_flags::V6;
                let from = if matches!(a, Action::Snat { .. }) {
                    spec.src
                } else {
                    spec.dst
                };
                if let Some(IpNet::V6(f)) = from {
                    if let Some((word, adj)) = npt66(f, *t) {
                        r.npt_word = word;
                        r.npt_adj = adj;
                    }
                }
            }
            if let Some(p) = port {
                r.flags |= action_flags::PORT;
                r.port = *p;
            }
        }
        Action::Mark { mark, reroute } => {
            r.value = *mark;
            if *reroute {
                r.flags |= action_flags::REROUTE;
            }
        }
        Action::Redirect { ifindex, .. } => r.value = *ifindex,
    }
    r
}

/// A rule as one or more flat rules (ports without a protocol match TCP and UDP).
pub(super) fn flatten(r: &Rule, slot: u32) -> Vec<Flat> {
    let s = &r.spec;
    let mut flags = if s.verdict == Verdict::Drop {
        rf::DROP
    } else {
        0
    };
    if s.log {
        flags |= rf::LOG;
    }
    let mut ranges = [(0u32, u32::MAX); dim::COUNT];
    for (d, slot) in ranges.iter_mut().enumerate() {
        *slot = (0, max_of(dim::WIDTH[d]));
    }
    let mut rec = RuleRecord {
        slot,
        sport_hi: u16::MAX,
        dport_hi: u16::MAX,
        ..RuleRecord::default()
    };
    let mut v6w = V6Words::default();
    flags |= u16::from(action_kind_of(s.action.as_ref())) << rf::ACTION_SHIFT;
    // A rule that writes an address matches that family only, even
    // without a prefix of its own.
    let family = s.src.or(s.dst).map(|n| matches!(n, IpNet::V6(_))).or(s
        .action
        .as_ref()
        .and_then(|a| a.family())
        .map(|f| f == 6));
    if let Some(v6) = family {
        flags |= rf::HAS_FAMILY;
        if v6 {
            flags |= rf::V6;
        }
        for (net, d) in [(s.src, dim::SRC0), (s.dst, dim::DST0)] {
            let Some(net) = net else { continue };
            let words = words_of(&net);
            // The prefix length within each word, 0 to 32.
            let plen = |i: u32| u32::from(net.prefix_len()).saturating_sub(32 * i).min(32) as u8;
            if d == dim::SRC0 {
                rec.src = words[0];
                rec.src_plen = plen(0);
                v6w.src.copy_from_slice(&words[1..]);
                for i in 1..4 {
                    v6w.plen[i as usize - 1] = plen(i);
                }
            } else {
                rec.dst = words[0];
                rec.dst_plen = plen(0);
                v6w.dst.copy_from_slice(&words[1..]);
                for i in 1..4 {
                    v6w.plen[i as usize + 2] = plen(i);
                }
            }
            for i in 0..4 {
                if !v6 && i > 0 {
                    continue;
                }
                ranges[d + i] = word_range(words[i], u32::from(net.prefix_len()), i as u32);
            }
        }
    }
    let needs_l4 =
        s.sport.is_some() || s.dport.is_some() || s.icmp_type.is_some() || s.tcp_flags.is_some();
    if needs_l4 {
        flags |= rf::NEEDS_L4;
    }
    if let Some(p) = s.sport {
        rec.sport_lo = p.lo;
        rec.sport_hi = p.hi;
    }
    if let Some(p) = s.dport {
        rec.dport_lo = p.lo;
        rec.dport_hi = p.hi;
    }
    if let Some(t) = s.icmp_type {
        rec.sport_lo = u16::from(t);
        rec.sport_hi = u16::from(t);
    }
    if let Some(f) = s.tcp_flags {
        rec.tcp_flags_mask = f.mask;
        rec.tcp_flags_value = f.value;
    }
    ranges[dim::SPORT] = (u32::from(rec.sport_lo), u32::from(rec.sport_hi));
    ranges[dim::DPORT] = (u32::from(rec.dport_lo), u32::from(rec.dport_hi));
    ranges[dim::L4] = if needs_l4 { (1, 1) } else { (0, 1) };
    let leaf_only = rec.tcp_flags_mask != 0;
    let protos: Vec<Option<u8>> = match s.proto {
        Some(p) => vec![Some(p)],
        None if s.sport.is_some() || s.dport.is_some() => vec![Some(6), Some(17)],
        None => vec![None],
    };
    protos
        .into_iter()
        .map(|p| {
            let mut h = rec;
            let mut rg = ranges;
            h.flags = flags;
            if let Some(p) = p {
                h.flags |= rf::HAS_PROTO;
                h.proto = p;
                h.proto_mask = 0xff;
                rg[dim::PROTO] = (u32::from(p), u32::from(p));
            }
            Flat {
                ranges: rg,
                leaf_only,
                id: r.id,
                rec: h,
                v6: v6w,
            }
        })
        .collect()
}

/// Big-endian 32-bit words of a network (IPv4 in word 0).
fn words_of(net: &IpNet) -> [u32; 4] {
    match net {
        IpNet::V4(n) => [u32::from(n.network()), 0, 0, 0],
        IpNet::V6(n) => {
            let o = n.network().octets();
            core::array::from_fn(|i| {
                u32::from_be_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])
            })
        }
    }
}

/// The range word `i` of a prefix covers.
pub(super) fn word_range(word: u32, plen: u32, i: u32) -> (u32, u32) {
    let bits = plen.saturating_sub(32 * i).min(32);
    match bits {
        0 => (0, u32::MAX),
        32 => (word, word),
        b => {
            let mask = u32::MAX << (32 - b);
            (word & mask, (word & mask) | !mask)
        }
    }
}

pub(super) struct Builder {
    pub(super) cells: Vec<Cell>,
    pub(super) max_depth: u32,
    pub(super) max_leaf: usize,
    /// Most cells before the rule set is declared too intricate.
    pub(super) budget: usize,
    /// Leaves already written, by their rules: a leaf with the same rules
    /// as another (of the same family) shares its records.
    pub(super) leaves: HashMap<(u32, Vec<usize>), u32>,
    /// Cells per record in the trees being built: 1 (IPv4), 2 (IPv6).
    pub(super) stride: u32,
}

pub(super) type Region = [(u32, u32); dim::COUNT];

impl Builder {
    fn alloc(&mut self, n: usize) -> u32 {
        let at = self.cells.len() as u32;
        self.cells.resize(self.cells.len() + n, Cell::default());
        at
    }

    /// [`Builder::alloc`] within the budget a rule set of `rules` rules has.
    fn claim(&mut self, n: usize, rules: usize) -> Result<u32, CompileError> {
        if self.cells.len() + n > self.budget {
            return Err(CompileError::TooComplex {
                cells: self.budget,
                rules,
            });
        }
        Ok(self.alloc(n))
    }

    /// Builds the subtree for `members` (indices into `flats`, in priority
    /// order) over `region` into the pre-allocated cell `at`.
    pub(super) fn build(
        &mut self,
        flats: &[Flat],
        members: Vec<usize>,
        region: Region,
        at: u32,
        depth: u32,
    ) -> Result<(), CompileError> {
        self.max_depth = self.max_depth.max(depth);
        let members = prune(flats, members, &region);
        let cut = if members.len() <= BINTH || depth + 1 >= MAX_DEPTH {
            None
        } else {
            choose_cut(flats, &members, &region)
        };
        let Some((d, bits)) = cut else {
            return self.leaf(flats, &members, at);
        };
        let (lo, hi) = region[d];
        let width = 64 - u64::from(hi - lo).leading_zeros(); // log2 of the region size
        let shift = width - bits;
        let children = 1usize << bits;
        let first = self.claim(children, flats.len())?;
        self.cells[at as usize].w[0] = node::INTERNAL | (d as u32) << 8 | shift << 16 | bits << 24;
        self.cells[at as usize].w[1] = first.wrapping_sub(child_index_base(lo, shift, bits));
        let step = 1u64 << shift;
        // Each rule goes to the children its range overlaps, in order, so
        // every child's rules stay in priority order (one pass over the
        // rules rather than one per child).
        let mut kids: Vec<Vec<usize>> = vec![Vec::new(); children];
        for &k in &members {
            if let Some((c0, c1)) = child_span(flats[k].ranges[d], (lo, hi), shift) {
                for kid in &mut kids[c0..=c1] {
                    kid.push(k);
                }
            }
        }
        for (c, kids) in kids.into_iter().enumerate() {
            let clo = (u64::from(lo) + c as u64 * step) as u32;
            let chi = (u64::from(clo) + step - 1) as u32;
            let mut sub = region;
            sub[d] = (clo, chi);
            self.build(flats, kids, sub, first + c as u32, depth + 1)?;
        }
        Ok(())
    }

    fn leaf(&mut self, flats: &[Flat], members: &[usize], at: u32) -> Result<(), CompileError> {
        if members.len() > MAX_LEAF as usize {
            let ids: Vec<String> = members
                .iter()
                .take(8)
                .map(|&k| flats[k].id.to_string())
                .collect();
            return Err(CompileError::LeafTooLarge {
                count: members.len(),
                max: MAX_LEAF,
                ids: ids.join(", ") + if members.len() > 8 { ", ..." } else { "" },
            });
        }
        self.max_leaf = self.max_leaf.max(members.len());
        let stride = self.stride;
        let key = (stride, members.to_vec());
        let records = if members.is_empty() {
            0
        } else if let Some(&at) = self.leaves.get(&key) {
            at
        } else {
            let first = self.claim(members.len() * stride as usize, flats.len())?;
            for (i, &k) in members.iter().enumerate() {
                let c = first as usize + i * stride as usize;
                self.cells[c] = as_cell(&flats[k].rec);
                if stride == 2 {
                    self.cells[c + 1] = as_cell(&flats[k].v6);
                }
            }
            self.leaves.insert(key, first);
            first
        };
        let n = &mut self.cells[at as usize];
        n.w[0] = node::LEAF;
        n.w[1] = members.len() as u32;
        n.w[2] = records;
        Ok(())
    }
}

/// The kernel computes `child = w[1] + ((v >> shift) & mask)`; regions are
/// aligned, so `(lo >> shift) & mask` is the index of the first child.
pub(super) fn child_index_base(lo: u32, shift: u32, bits: u32) -> u32 {
    (lo >> shift) & ((1u32 << bits) - 1)
}

/// The first and last child (of `2^(width - shift)` children of
/// `2^shift` values each, over the aligned `region`) that `range`
/// overlaps; `None` when it misses the region.
pub(super) fn child_span(
    range: (u32, u32),
    region: (u32, u32),
    shift: u32,
) -> Option<(usize, usize)> {
    let (a, b) = (range.0.max(region.0), range.1.min(region.1));
    if a > b {
        return None;
    }
    let first = (u64::from(a - region.0) >> shift) as usize;
    let last = (u64::from(b - region.0) >> shift) as usize;
    Some((first, last))
}

pub(super) fn covers(a: (u32, u32), b: (u32, u32)) -> bool {
    a.0 <= b.0 && a.1 >= b.1
}

/// Drops rules shadowed, over this whole region, by an earlier rule that
/// covers it entirely and has no leaf-only constraints.
fn prune(flats: &[Flat], members: Vec<usize>, region: &Region) -> Vec<usize> {
    let mut out = Vec::with_capacity(members.len());
    for k in members {
        out.push(k);
        let f = &flats[k];
        if !f.leaf_only && (0..dim::COUNT).all(|d| covers(f.ranges[d], region[d])) {
            break;
        }
    }
    out
}

/// Picks the dimension with the most distinct rule ranges in the region and
/// the largest cut that keeps rule copies within `SPFAC`.
fn choose_cut(flats: &[Flat], members: &[usize], region: &Region) -> Option<(usize, u32)> {
    let mut best: Option<(usize, usize)> = None;
    for (d, &(lo, hi)) in region.iter().enumerate() {
        if lo == hi {
            continue;
        }
        let mut distinct: Vec<(u32, u32)> = members
            .iter()
            .map(|&k| {
                let (a, b) = flats[k].ranges[d];
                (a.max(lo), b.min(hi))
            })
            .collect();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() > 1 && best.is_none_or(|(_, n)| distinct.len() > n) {
            best = Some((d, distinct.len()));
        }
    }
    // Rules alike in every field but narrower than the region: cut toward
    // them, so a covering rule can shadow the rest.
    let best = best.or_else(|| {
        region.iter().enumerate().find_map(|(d, &(lo, hi))| {
            (lo != hi
                && members
                    .iter()
                    .any(|&k| !covers(flats[k].ranges[d], (lo, hi))))
            .then_some((d, usize::MAX))
        })
    });
    let (d, distinct) = best?;
    let (lo, hi) = region[d];
    let width = 64 - u64::from(hi - lo).leading_zeros();
    if distinct == usize::MAX {
        return Some((d, MAX_BITS.min(width)));
    }
    let n = members.len();
    let mut bits = 1;
    while bits < MAX_BITS.min(width) {
        let next = bits + 1;
        // Copies: each rule in as many children as its range spans.
        let copies: usize = members
            .iter()
            .filter_map(|&k| child_span(flats[k].ranges[d], (lo, hi), width - next))
            .map(|(c0, c1)| c1 - c0 + 1)
            .sum();
        if copies + (1 << next) > SPFAC * n {
            break;
        }
        bits = next;
    }
    Some((d, bits))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_go_to_the_table_by_slot_and_their_kind_into_the_flags() {
        let rules: Vec<Rule> = [
            (1, "src 10.1.0.0/24 snat 203.0.113.0/24"),
            (2, "proto udp drop"),
            (3, "dst 203.0.113.7 proto tcp dnat 10.1.0.2 port 8080"),
            (4, "mark 7 reroute"),
        ]
        .into_iter()
        .map(|(id, text)| Rule {
            id,
            spec: text.parse().expect("rule"),
        })
        .collect();
        // Slots: rule 1 in 5, 2 in 1, 3 in 2, 4 in 3.
        let slot = |r: &Rule| [0, 5, 1, 2, 3][r.id as usize];
        let c = compile_with_slots(&rules, slot).expect("compiles");
        let h = c.cells[0];
        let (first, n) = (h.w[HEADER_ACTIONS] as usize, h.w[HEADER_ACTION_SLOTS]);
        assert_eq!(n, 6, "slots 0 to 5");
        let at = |s: usize| -> ActionRecord {
            // SAFETY: an action cell is an ActionRecord (32 plain bytes).
            unsafe { std::mem::transmute::<Cell, ActionRecord>(c.cells[first + s]) }
        };
        let snat = at(5);
        assert_eq!((snat.kind, snat.plen), (action_kind::SNAT, 24));
        assert_eq!(
            snat.addr[0],
            u32::from(std::net::Ipv4Addr::new(203, 0, 113, 0))
        );
        let dnat = at(2);
        assert_eq!(
            (dnat.kind, dnat.port, dnat.plen),
            (action_kind::DNAT, 8080, 32)
        );
        assert_eq!(dnat.flags, action_flags::PORT);
        let mark = at(3);
        assert_eq!(
            (mark.kind, mark.value, mark.flags),
            (action_kind::MARK, 7, action_flags::REROUTE)
        );
        assert_eq!(at(1), ActionRecord::default(), "a drop rule has no action");
        // The records of rule 3 say DNAT in their flags; a mark rule
        // without addresses takes no family, an snat rule its address's.
        let kinds: Vec<(u32, u16)> = c
            .cells
            .iter()
            .take(first)
            .filter_map(|cell| {
                // SAFETY: any cell reads as a RuleRecord; only the slot and
                // flags of real records are compared below.
                let r: RuleRecord = unsafe { std::mem::transmute(*cell) };
                (r.slot == 2 && r.dport_lo == 0 && r.proto == 6).then_some((r.slot, r.flags))
            })
            .collect();
        assert!(
            kinds
                .iter()
                .all(|(_, f)| (f & rf::ACTION_MASK) >> rf::ACTION_SHIFT
                    == u16::from(action_kind::DNAT)),
            "{kinds:?}"
        );
        // No action: no table.
        let plain = compile(&rules[1..2]).expect("compiles");
        assert_eq!(plain.cells[0].w[HEADER_ACTION_SLOTS], 0);
    }

    #[test]
    fn heads_carry_the_user_id_and_the_counter_slot() {
        use crate::filter::rule::RuleSpec;
        let rules: Vec<Rule> = [700, 9]
            .into_iter()
            .map(|id| Rule {
                id,
                spec: RuleSpec::parse(&["proto", "udp", "drop"]).expect("rule"),
            })
            .collect();
        let slots = [(700u32, 2u32), (9, 1)];
        let compiled = compile_with_slots(&rules, |r| {
            slots
                .iter()
                .find(|(id, _)| *id == r.id)
                .map_or(0, |(_, s)| *s)
        })
        .expect("compiles");
        // The id table maps slot 1 to id 9 and slot 2 to id 700; the one
        // IPv4 leaf holds the records in rank order: id 9 (slot 1), then 700.
        let ids = compiled.cells[0].w[HEADER_IDS] as usize;
        assert_eq!(&compiled.cells[ids].w[1..3], &[9, 700]);
        let roots = compiled.cells[0].w[1] as usize;
        let leaf = compiled.cells[compiled.cells[roots].w[0] as usize].w;
        assert_eq!((leaf[0], leaf[1]), (node::LEAF, 2));
        let rec = |i: usize| compiled.cells[leaf[2] as usize + i].w;
        // Ranks are spread over the u32 range, in the same order.
        let gap = rank_gap(2);
        assert_eq!((rec(0)[6], rec(0)[7]), (1, gap));
        assert_eq!((rec(1)[6], rec(1)[7]), (2, 2 * gap));
    }

    #[test]
    fn groups_narrow_in_the_same_address_share_one_tree() {
        // Wide sources with and without source ports, wide source ports
        // without sources: four groups by which fields are wide, all
        // narrow in the destination, so one tree cuts them all there.
        let rules: Vec<Rule> = (0..400u32)
            .map(|i| {
                let dst = format!("198.{}.{}.0/24", i % 200, i / 2);
                let text = match i % 4 {
                    0 => {
                        format!("src 10.0.0.0/8 dst {dst} proto udp sport 1000-2000 dport 53 drop")
                    }
                    1 => format!("src 10.0.0.0/8 dst {dst} proto udp dport 53 drop"),
                    2 => format!("dst {dst} proto udp dport 53 drop"),
                    _ => format!("src 10.1.0.0/24 dst {dst} proto udp sport 7 dport 53 drop"),
                };
                Rule {
                    id: i + 1,
                    spec: text.parse().expect("rule"),
                }
            })
            .collect();
        let c = compile(&rules).expect("compiles");
        assert_eq!(c.cells[0].w[0], 1, "one IPv4 tree");
        // Separate trees remain for groups with no narrow address in common.
        let apart: Vec<Rule> = (0..400u32)
            .map(|i| {
                let text = match i % 2 {
                    0 => format!("src 10.{}.{}.0/24 proto udp drop", i % 200, i / 2),
                    _ => format!("dst 198.{}.{}.0/24 proto udp drop", i % 200, i / 2),
                };
                Rule {
                    id: i + 1,
                    spec: text.parse().expect("rule"),
                }
            })
            .collect();
        assert_eq!(compile(&apart).expect("compiles").cells[0].w[0], 2);
    }

    #[test]
    fn prefix_words_become_ranges() {
        assert_eq!(word_range(0x0a00_0000, 8, 0), (0x0a00_0000, 0x0aff_ffff));
        assert_eq!(word_range(0x0a00_0003, 32, 0), (0x0a00_0003, 0x0a00_0003));
        assert_eq!(word_range(0x1234_0000, 48, 1), (0x1234_0000, 0x1234_ffff));
        assert_eq!(word_range(7, 48, 2), (0, u32::MAX));
        assert_eq!(word_range(7, 0, 0), (0, u32::MAX));
    }
}
