//! The rule matcher: walk the policy's decision tree to a leaf, then check
//! the leaf's few rules in priority order. Cost depends on the tree depth
//! and the leaf size, both bounded, not on the number of rules.
use aya_ebpf::{btf_maps::Array, macros::btf_map};
use lwtkit_common::filter::{dim, node, rule_flags as rf, Cell, PolicyConfig, RuleHead, MAX_DEPTH, MAX_LEAF, NO_RULE};

use crate::parse::PacketKey;

/// The compiled policy, two generations side by side (sized at policy creation).
#[btf_map]
pub static CELLS: Array<Cell, 1> = Array::new();

#[btf_map]
pub static CONFIG: Array<PolicyConfig, 1> = Array::new();

/// The winning rule: its id and flags, or `NO_RULE`.
pub struct Decision {
    pub rule_id: u32,
    pub flags: u16,
}

#[inline(always)]
fn cell(index: u32) -> Option<&'static Cell> {
    CELLS.get(index)
}

/// Finds the first matching rule of the live generation.
#[inline(always)]
pub fn decide(key: &PacketKey, cfg: &PolicyConfig) -> Decision {
    let none = Decision { rule_id: NO_RULE, flags: 0 };
    let base = if cfg.generation == 1 { cfg.capacity } else { 0 };
    let Some(header) = cell(base) else { return none };
    let mut at = if key.v6 { header.w[1] } else { header.w[0] };
    let mut leaf = None;
    for _ in 0..MAX_DEPTH {
        let Some(n) = cell(base.wrapping_add(at)) else { return none };
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
    let Some(leaf) = leaf else { return none };
    if leaf.w[0] & 0xff != node::LEAF {
        return none;
    }
    let count = leaf.w[1];
    let list = leaf.w[2];
    for i in 0..MAX_LEAF {
        if i >= count {
            break;
        }
        let Some(refs) = cell(base.wrapping_add(list).wrapping_add(i / 8)) else { break };
        let r = refs.w[(i & 7) as usize];
        let Some(head) = cell(base.wrapping_add(r)) else { break };
        // SAFETY: a rule's first cell is a RuleHead (same size, plain data).
        let head: &RuleHead = unsafe { &*(head as *const Cell).cast::<RuleHead>() };
        if !fields_match(head, key) {
            continue;
        }
        if head.flags & rf::HAS_FAMILY != 0 {
            let Some(addrs) = cell(base.wrapping_add(r).wrapping_add(1)) else { break };
            if !addresses_match(head, addrs, key) {
                continue;
            }
        }
        return Decision { rule_id: head.id, flags: head.flags };
    }
    none
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
