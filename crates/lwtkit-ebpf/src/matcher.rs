//! The rule matcher: walk the policy's decision trees to a leaf each, then
//! check the leaf's few rules in priority order. Cost depends on the tree
//! depth and the leaf size, both bounded, not on the number of rules.
//!
//! A leaf holds its rules' records inline and contiguous (one cell per
//! rule in IPv4 trees, two in IPv6 trees), so after the tree nodes a packet
//! reads a few adjacent cache lines, and each record is checked without
//! branches on its fields.
use aya_ebpf::{btf_maps::Array, cty::c_void, helpers::bpf_loop, macros::btf_map};
use lwtkit_common::{
    filter::{
        dim, node, rule_flags as rf, Cell, PolicyConfig, RuleRecord, V6Words, HEADER_IDS, MAX_DEPTH, MAX_LEAF,
        MAX_TREES, NO_RULE,
    },
    maps,
};

use crate::parse::PacketKey;

/// The compiled policy, two generations side by side (sized at policy creation).
#[btf_map]
pub static CELLS: Array<Cell, 1> = Array::new();
crate::map_named!(CELLS, maps::filter::CELLS);

#[btf_map]
pub static CONFIG: Array<PolicyConfig, 1> = Array::new();
crate::map_named!(CONFIG, maps::filter::CONFIG);

/// The winning rule: whether one matched, its counter slot and flags.
pub struct Decision {
    pub matched: bool,
    pub slot: u32,
    pub flags: u16,
    /// The generation's base cell (for [`rule_id`]).
    pub base: u32,
}

#[inline(always)]
fn cell(index: u32) -> Option<&'static Cell> {
    CELLS.get(index)
}

/// State shared with the per-tree callback of `bpf_loop`.
///
/// The fields that start at zero lie between ones that do not: four
/// adjacent zeroes become a call to the object's `memset`, a loop of one
/// byte per iteration.
#[repr(C)]
struct Search<'a> {
    key: &'a PacketKey,
    base: u32,
    best_slot: u32,
    list: u32,
    best_flags: u32,
    /// Cells per record: 1 in IPv4 trees, 2 in IPv6 trees.
    stride: u32,
    /// The leaf being scanned: its first record cell (absolute) and its
    /// number of records.
    records: u32,
    best_rank: u32,
    count: u32,
}

/// The live generation, read once per packet: the walk and the counters
/// then agree on it even if a replace flips it meanwhile.
#[inline(always)]
pub fn generation(cfg: &PolicyConfig) -> u32 {
    // SAFETY: an aligned u32 inside a map value.
    unsafe { core::ptr::read_volatile(&cfg.generation) }
}

/// The first cell of `generation` (its header) in the policy's cells.
#[inline(always)]
pub fn base_of(cfg: &PolicyConfig, generation: u32) -> u32 {
    if generation == 1 {
        cfg.capacity
    } else {
        0
    }
}

/// Finds the matching rule of lowest rank across the live generation's
/// trees for the packet's family. The trees are walked by `bpf_loop`
/// (which the verifier inlines into a plain loop), so it checks one walk
/// rather than every tree's.
///
/// `trees(v6)`: the most trees of that family the program instance was
/// specialised for (a load-time constant, `ProgramSpec`): 0, no walk at
/// all; 1, the one tree's walk inline, without the loop; more, the loop.
/// The verifier sees the constant and drops the other paths.
///
/// `INLINE`: the leaf records checked in line ([`INLINE_RECORDS`]); 0
/// keeps all of the walk in callbacks, the one tree's included: the
/// verifier then leaves the search's fields unknown after it, which a
/// caller with much code after the decision needs (filter.rs, `decide`).
#[inline(always)]
pub fn decide<const INLINE: u32>(
    key: &PacketKey,
    cfg: &PolicyConfig,
    generation: u32,
    trees: impl Fn(bool) -> u32,
) -> Decision {
    let base = base_of(cfg, generation);
    let none = Decision { matched: false, slot: 0, flags: 0, base };
    let most = trees(key.v6);
    if most == 0 {
        return none;
    }
    let Some(header) = cell(base) else { return none };
    let (trees, list, stride) = if key.v6 { (header.w[2], header.w[3], 2) } else { (header.w[0], header.w[1], 1) };
    let mut search = Search { key, base, list, stride, best_rank: u32::MAX, best_slot: 0, best_flags: 0, records: 0, count: 0 };
    if most == 1 && INLINE > 0 {
        // The one tree's walk, inline: no loop and no call.
        if trees != 0 {
            if let Some(roots) = cell(base.wrapping_add(list)) {
                walk::<INLINE>(&mut search, roots.w[0]);
            }
        }
    } else {
        // SAFETY: the callback gets `search` back as its context and only
        // reads and writes it within this call.
        unsafe {
            bpf_loop(
                trees.min(MAX_TREES),
                search_tree::<INLINE> as *mut c_void,
                (&mut search as *mut Search).cast(),
                0,
            );
        }
    }
    Decision { matched: search.best_rank != u32::MAX, slot: search.best_slot, flags: search.best_flags as u16, base }
}

/// The rule id of counter slot `slot` (only for events).
#[inline(always)]
pub fn rule_id(d: &Decision) -> u32 {
    let Some(header) = cell(d.base) else { return NO_RULE };
    let at = d.base.wrapping_add(header.w[HEADER_IDS]).wrapping_add(d.slot / 8);
    match cell(at) {
        Some(c) => c.w[(d.slot & 7) as usize],
        None => NO_RULE,
    }
}

extern "C" fn search_tree<const INLINE: u32>(index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the `Search` that `decide` passed to bpf_loop.
    let s = unsafe { &mut *ctx.cast::<Search>() };
    let Some(roots) = cell(s.base.wrapping_add(s.list)) else { return 1 };
    let root = roots.w[(index & 7) as usize];
    walk::<INLINE>(s, root);
    0
}

/// Walks one tree to its leaf, then checks the leaf's records: the first
/// `INLINE` in line ([`INLINE_RECORDS`] where the verifier can afford
/// them), any beyond them (a leaf the compiler could
/// not split) by a nested `bpf_loop`, so the verifier checks one chunk's
/// scan, not 64 records after each of the walk's 32 possible depths.
#[inline(always)]
fn walk<const INLINE: u32>(s: &mut Search, root: u32) {
    let key = s.key;
    let base = s.base;
    let mut at = root;
    let mut leaf = None;
    for _ in 0..MAX_DEPTH {
        let Some(n) = cell(base.wrapping_add(at)) else { return };
        let w0 = n.w[0];
        if w0 & 0xff != node::INTERNAL {
            leaf = Some(n);
            break;
        }
        let d = ((w0 >> 8) & 0xf) as usize;
        let shift = (w0 >> 16) & 0x1f;
        let bits = (w0 >> 24) & 0xf;
        let index = (key.dims[d] >> shift) & ((1u32 << bits) - 1);
        at = n.w[1].wrapping_add(index);
    }
    let Some(leaf) = leaf else { return };
    if leaf.w[0] & 0xff != node::LEAF {
        return;
    }
    s.records = base.wrapping_add(leaf.w[2]);
    s.count = leaf.w[1].min(MAX_LEAF);
    for i in 0..INLINE {
        if i >= s.count {
            return;
        }
        if let Scan::Stop = check_record(s, i) {
            return;
        }
    }
    if s.count > INLINE {
        // SAFETY: the callback gets `s` back as its context and only reads
        // and writes it within this call.
        unsafe {
            bpf_loop(
                (s.count - INLINE).div_ceil(SCAN_CHUNK),
                scan_records::<INLINE> as *mut c_void,
                (s as *mut Search).cast(),
                0,
            );
        }
    }
}

/// Records a leaf's walk checks in line, without a callback: as many as
/// the compiler puts in a leaf it can still split (its `BINTH`), so only
/// leaves of rules it could not separate take the nested loop.
pub const INLINE_RECORDS: u32 = 8;

/// Records checked per call of the leaf scan's callback, past the
/// [`INLINE_RECORDS`] (a call costs about as much as checking a record).
const SCAN_CHUNK: u32 = 4;

/// Checks records `INLINE + index * SCAN_CHUNK ..` of the leaf;
/// returns 1 (stop) at a match or past the last record.
extern "C" fn scan_records<const INLINE: u32>(index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the `Search` that `walk` passed to bpf_loop.
    let s = unsafe { &mut *ctx.cast::<Search>() };
    let first = INLINE + (index as u32).wrapping_mul(SCAN_CHUNK);
    for j in 0..SCAN_CHUNK {
        let i = first + j;
        if i >= s.count {
            return 1;
        }
        match check_record(s, i) {
            Scan::Next => {}
            Scan::Stop => return 1,
        }
    }
    0
}

enum Scan {
    Next,
    Stop,
}

/// Checks record `i` of the leaf: takes it and stops at a match (the leaf
/// holds rules in rank order), stops at a rule ranked below the best match
/// of an earlier tree.
#[inline(always)]
fn check_record(s: &mut Search, i: u32) -> Scan {
    let at = s.records.wrapping_add(i.wrapping_mul(s.stride));
    let Some(c) = cell(at) else { return Scan::Stop };
    // SAFETY: a record cell is a RuleRecord (same size, plain data).
    let r: &RuleRecord = unsafe { &*(c as *const Cell).cast::<RuleRecord>() };
    if r.rank >= s.best_rank {
        return Scan::Stop;
    }
    if !record_matches(r, s.key) {
        return Scan::Next;
    }
    if s.stride == 2 {
        let Some(c2) = cell(at.wrapping_add(1)) else { return Scan::Stop };
        // SAFETY: the second cell of an IPv6 record is V6Words.
        let w: &V6Words = unsafe { &*(c2 as *const Cell).cast::<V6Words>() };
        if !v6_words_match(w, s.key) {
            return Scan::Next;
        }
    }
    s.best_rank = r.rank;
    s.best_slot = r.slot;
    s.best_flags = u32::from(r.flags);
    Scan::Stop
}

/// The mask of the first `plen` bits of a 32-bit word (`plen` 0 to 32),
/// by shifts alone.
#[inline(always)]
fn mask_of(plen: u8) -> u32 {
    !(u64::from(u32::MAX) >> plen) as u32
}

/// 1 when `v` lies outside `lo..=hi`, by arithmetic alone: `v - lo`
/// (wrapping) exceeds `hi - lo` exactly when their difference, in 64
/// bits, is negative.
#[inline(always)]
fn outside(v: u32, lo: u16, hi: u16) -> u32 {
    let span = u64::from(u32::from(hi).wrapping_sub(u32::from(lo)));
    let off = u64::from(v.wrapping_sub(u32::from(lo)));
    (span.wrapping_sub(off) >> 63) as u32
}

/// Every field of the record's first cell, without branches: the
/// mismatches of all fields are or-ed and tested once. (Branch-free also
/// keeps the verifier's paths through a leaf linear in its size.)
#[inline(always)]
fn record_matches(r: &RuleRecord, k: &PacketKey) -> bool {
    let mut bad = (k.dims[dim::SRC0] ^ r.src) & mask_of(r.src_plen);
    bad |= (k.dims[dim::DST0] ^ r.dst) & mask_of(r.dst_plen);
    bad |= (k.dims[dim::PROTO] ^ u32::from(r.proto)) & u32::from(r.proto_mask);
    bad |= outside(k.dims[dim::SPORT], r.sport_lo, r.sport_hi);
    bad |= outside(k.dims[dim::DPORT], r.dport_lo, r.dport_hi);
    bad |= u32::from((k.tcp_flags & r.tcp_flags_mask) ^ r.tcp_flags_value);
    // NEEDS_L4 without an L4 header.
    bad |= (u32::from(r.flags & rf::NEEDS_L4) >> rf::NEEDS_L4.trailing_zeros()) & (k.dims[dim::L4] ^ 1);
    bad == 0
}

/// Words 1 to 3 of an IPv6 record's prefixes.
#[inline(always)]
fn v6_words_match(w: &V6Words, k: &PacketKey) -> bool {
    let mut bad = 0;
    for i in 0..3 {
        bad |= (k.dims[dim::SRC0 + 1 + i] ^ w.src[i]) & mask_of(w.plen[i]);
        bad |= (k.dims[dim::DST0 + 1 + i] ^ w.dst[i]) & mask_of(w.plen[3 + i]);
    }
    bad == 0
}
