//! The rule matcher: walk the policy's decision tree to a leaf, then check
//! the leaf's few rules in priority order. Cost depends on the tree depth
//! and the leaf size, both bounded, not on the number of rules.
use aya_ebpf::{btf_maps::Array, cty::c_void, helpers::bpf_loop, macros::btf_map};
use lwtkit_common::{
    filter::{dim, node, rule_flags as rf, Cell, PolicyConfig, RuleHead, MAX_DEPTH, MAX_LEAF, MAX_TREES, NO_RULE},
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

/// The winning rule: its id, counter slot and flags, or `NO_RULE` (slot 0).
pub struct Decision {
    pub rule_id: u32,
    pub slot: u32,
    pub flags: u16,
}

#[inline(always)]
fn cell(index: u32) -> Option<&'static Cell> {
    CELLS.get(index)
}

/// State shared with the per-tree callback of `bpf_loop`.
#[repr(C)]
struct Search<'a> {
    key: &'a PacketKey,
    base: u32,
    list: u32,
    best_rank: u32,
    best_id: u32,
    best_slot: u32,
    best_flags: u32,
}

/// The live generation, read once per packet: the walk and the counters
/// then agree on it even if a replace flips it meanwhile.
#[inline(always)]
pub fn generation(cfg: &PolicyConfig) -> u32 {
    // SAFETY: an aligned u32 inside a map value.
    unsafe { core::ptr::read_volatile(&cfg.generation) }
}

/// Finds the matching rule of lowest rank across the live generation's
/// trees for the packet's family. The trees are walked by `bpf_loop`, so
/// the verifier checks one walk rather than every tree's.
#[inline(always)]
pub fn decide(key: &PacketKey, cfg: &PolicyConfig, generation: u32) -> Decision {
    let none = Decision { rule_id: NO_RULE, slot: 0, flags: 0 };
    let base = if generation == 1 { cfg.capacity } else { 0 };
    let Some(header) = cell(base) else { return none };
    let (trees, list) = if key.v6 { (header.w[2], header.w[3]) } else { (header.w[0], header.w[1]) };
    let mut search = Search { key, base, list, best_rank: u32::MAX, best_id: NO_RULE, best_slot: 0, best_flags: 0 };
    // SAFETY: the callback gets `search` back as its context and only reads
    // and writes it within this call.
    unsafe {
        bpf_loop(
            trees.min(MAX_TREES),
            search_tree as *mut c_void,
            (&mut search as *mut Search).cast(),
            0,
        );
    }
    Decision { rule_id: search.best_id, slot: search.best_slot, flags: search.best_flags as u16 }
}

extern "C" fn search_tree(index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the `Search` that `decide` passed to bpf_loop.
    let s = unsafe { &mut *ctx.cast::<Search>() };
    let Some(roots) = cell(s.base.wrapping_add(s.list)) else { return 1 };
    let root = roots.w[(index & 7) as usize];
    if let Some(head) = walk(s.base, root, s.key) {
        if head._reserved[0] < s.best_rank {
            s.best_rank = head._reserved[0];
            s.best_id = head.id;
            s.best_slot = head.slot;
            s.best_flags = u32::from(head.flags);
        }
    }
    0
}

/// Walks one tree to its leaf and returns the leaf's first matching rule
/// (leaves list rules in rank order).
#[inline(always)]
fn walk(base: u32, root: u32, key: &PacketKey) -> Option<&'static RuleHead> {
    let mut at = root;
    let mut leaf = None;
    for _ in 0..MAX_DEPTH {
        let n = cell(base.wrapping_add(at))?;
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
    let leaf = leaf?;
    if leaf.w[0] & 0xff != node::LEAF {
        return None;
    }
    let count = leaf.w[1];
    let list = leaf.w[2];
    for i in 0..MAX_LEAF {
        if i >= count {
            break;
        }
        let refs = cell(base.wrapping_add(list).wrapping_add(i / 8))?;
        let r = refs.w[(i & 7) as usize];
        let head = cell(base.wrapping_add(r))?;
        // SAFETY: a rule's first cell is a RuleHead (same size, plain data).
        let head: &RuleHead = unsafe { &*(head as *const Cell).cast::<RuleHead>() };
        if !fields_match(head, key) {
            continue;
        }
        if head.flags & rf::HAS_FAMILY != 0 {
            let addrs = cell(base.wrapping_add(r).wrapping_add(1))?;
            if !addresses_match(head, addrs, key) {
                continue;
            }
        }
        return Some(head);
    }
    None
}

#[inline(always)]
fn fields_match(h: &RuleHead, k: &PacketKey) -> bool {
    let f = h.flags;
    if f & rf::HAS_PROTO != 0 && u32::from(h.proto) != k.dims[dim::PROTO] {
        return false;
    }
    if f & rf::NEEDS_L4 != 0 {
        if !k.l4 {
            return false;
        }
        let sport = k.dims[dim::SPORT];
        let dport = k.dims[dim::DPORT];
        if sport < u32::from(h.sport_lo) || sport > u32::from(h.sport_hi) {
            return false;
        }
        if dport < u32::from(h.dport_lo) || dport > u32::from(h.dport_hi) {
            return false;
        }
        if k.tcp_flags & h.tcp_flags_mask != h.tcp_flags_value {
            return false;
        }
    }
    true
}

#[inline(always)]
fn addresses_match(h: &RuleHead, a: &Cell, k: &PacketKey) -> bool {
    if (h.flags & rf::V6 != 0) != k.v6 {
        return false;
    }
    prefix_match(&a.w, 0, k, dim::SRC0, h.src_plen) && prefix_match(&a.w, 4, k, dim::DST0, h.dst_plen)
}

#[inline(always)]
fn prefix_match(words: &[u32; 8], at: usize, k: &PacketKey, d: usize, plen: u8) -> bool {
    let mut left = u32::from(plen);
    for i in 0..4 {
        if left == 0 {
            return true;
        }
        let mask = if left >= 32 { u32::MAX } else { u32::MAX << (32 - left) };
        if (words[at + i] ^ k.dims[d + i]) & mask != 0 {
            return false;
        }
        left = left.saturating_sub(32);
    }
    true
}
