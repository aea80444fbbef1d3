//! One rule added or deleted without compiling the whole rule set again:
//! the live generation's cells are read back and only the leaves the rule
//! overlaps change (a leaf that outgrows `MAX_LEAF` is cut into a subtree
//! by the compiler's own builder). The result is a whole generation, which
//! the store writes into the idle half and flips as for any change, so a
//! packet still meets the old rule set or the new one.
//!
//! What stays as the compiler left it (see [`super::image::verify`]): each
//! part of a rule lives in one tree per family; a leaf lists the parts of
//! its tree that overlap it, in rank order, up to the first that covers
//! it. A new rule goes into the tree of its family where it reaches the
//! fewest leaves, with a rank between its neighbours' (the compiler spreads
//! ranks out for this). New records are appended after the used cells (the
//! old ones stay as garbage until the next whole compile), so the cells a
//! change writes, its time, follow the leaves it touches, not the policy.
//!
//! When the change cannot be made in place it says why ([`Fallback`]) and
//! the caller compiles the whole set: no room between the neighbours'
//! ranks, a rule that reaches too many leaves, a deleted rule that covered
//! a leaf (rules it hid there would have to come back), or a generation
//! too full for the appended records.
use std::collections::HashMap;

use lwtkit_common::filter::{node, Cell, RuleRecord, V6Words, MAX_LEAF};

use super::{
    compile::{self, as_cell, ids_meta, Builder, Flat},
    image::{self, flat_of, shadows, Leaf},
    rule::Rule,
};
use lwtkit_common::filter::HEADER_IDS;

/// Most leaves one change rewrites before a whole compile is the cheaper way.
const MAX_TOUCHED: usize = 4096;
/// Rank distance a new rule keeps from the rule before it: room for the
/// next rules added after it (a new rule has the highest id, so rules of
/// one priority arrive in rank order) before the ranks run out.
const RANK_STEP: u64 = 64;

/// Why a change was not made in place (the caller compiles the whole set).
#[derive(Debug, PartialEq, Eq)]
pub enum Fallback {
    /// The cells are not a generation this module can read.
    Unreadable(String),
    /// No free rank between the new rule's neighbours.
    NoRank,
    /// The rule reaches more than `MAX_TOUCHED` leaves.
    TooWide,
    /// The deleted rule covered a leaf: rules it hid there come back.
    Uncovers,
    /// A leaf cut into a subtree failed (the whole compile says why).
    Split,
    /// The appended records do not fit the generation.
    Full,
    /// The new rule has an action (NAT, mark, redirect): its parameters
    /// go into the action table, which a whole compile lays out.
    Action,
}

/// One rule's change.
pub enum Change<'a> {
    /// `rule` is new, counting in `slot`.
    Add(&'a Rule, u32),
    /// `rule`, counting in `slot`, goes.
    Del(&'a Rule, u32),
}

/// Applies `change` to `image` (the live generation's used cells) and
/// returns the new generation. `rules` are the rules after the change,
/// `slot_of` their counter slots, `limit` the cells a generation holds.
pub fn apply(
    mut image: Vec<Cell>,
    rules: &[Rule],
    slot_of: impl Fn(&Rule) -> u32,
    change: Change,
    limit: usize,
) -> Result<Vec<Cell>, Fallback> {
    let h = image::header(&image).map_err(Fallback::Unreadable)?;
    let mut runs = Runs::default();
    match change {
        Change::Add(rule, _) if rule.spec.action.is_some() => return Err(Fallback::Action),
        Change::Add(rule, slot) => {
            let mut parts = compile::flatten(rule, slot);
            let (lo, hi) = neighbour_ranks(&image, &h.roots, rules, rule, &slot_of)?;
            let step = ((hi - lo) / (parts.len() as u64 + 1)).min(RANK_STEP);
            if step == 0 || lo >= hi {
                return Err(Fallback::NoRank);
            }
            for (i, p) in parts.iter_mut().enumerate() {
                p.rec.rank = (lo + step * (i as u64 + 1)) as u32;
            }
            set_id(&mut image, slot, rule.id)?;
            for part in &parts {
                for (fam, v6) in [false, true].into_iter().enumerate() {
                    if compile::family_ok(part, v6) {
                        add_part(&mut image, &h.roots[fam], v6, part, &mut runs, limit)?;
                    }
                }
            }
        }
        Change::Del(rule, slot) => {
            for part in compile::flatten(rule, slot) {
                for (fam, v6) in [false, true].into_iter().enumerate() {
                    if !compile::family_ok(&part, v6) {
                        continue;
                    }
                    // Only the tree that holds the part has its records.
                    let Some((t, _)) = locate(&image, &h.roots[fam], v6, &part)? else {
                        continue;
                    };
                    let found =
                        image::leaves(&image, h.roots[fam][t], v6, Some(&part.ranges), MAX_TOUCHED)
                            .map_err(Fallback::Unreadable)?
                            .ok_or(Fallback::TooWide)?;
                    for leaf in found {
                        del_in_leaf(&mut image, &leaf, v6, slot, &mut runs)?;
                    }
                }
            }
            set_id(&mut image, slot, 0)?;
        }
    }
    if image.len() > limit {
        return Err(Fallback::Full);
    }
    image[0].w[4] = image.len() as u32;
    Ok(image)
}

/// Leaves a search looks at per tree before looking further.
const CAPS: [usize; 3] = [16, 256, MAX_TOUCHED];

/// The tree of family `v6` (an index into `roots`) that holds `part` (a
/// record of the same rule and fields), and its rank there; `None` when no
/// tree lists it (it is hidden wherever it reaches).
fn locate(
    image: &[Cell],
    roots: &[u32],
    v6: bool,
    part: &Flat,
) -> Result<Option<(usize, u32)>, Fallback> {
    for cap in CAPS {
        let mut complete = true;
        for (t, &root) in roots.iter().enumerate() {
            let Some(found) = image::leaves(image, root, v6, Some(&part.ranges), cap)
                .map_err(Fallback::Unreadable)?
            else {
                complete = false;
                continue;
            };
            for leaf in found {
                let list = image::records(image, leaf.at, v6).map_err(Fallback::Unreadable)?;
                if let Some((r, _)) = list
                    .iter()
                    .find(|(r, _)| r.slot == part.rec.slot && image::same_rule(r, &part.rec))
                {
                    return Ok(Some((t, r.rank)));
                }
            }
        }
        if complete {
            return Ok(None);
        }
    }
    Err(Fallback::TooWide)
}

/// The ranks of the rules on either side of `rule` in rank order
/// (priority, then id) that the trees hold: the new rule's ranks go
/// strictly between them.
fn neighbour_ranks(
    image: &[Cell],
    roots: &[Vec<u32>; 2],
    rules: &[Rule],
    rule: &Rule,
    slot_of: &impl Fn(&Rule) -> u32,
) -> Result<(u64, u64), Fallback> {
    let key = |r: &Rule| (r.spec.priority, r.id);
    // The ranks of a rule's parts that some tree holds.
    let ranks_of = |r: &Rule| -> Result<Vec<u32>, Fallback> {
        let mut out = Vec::new();
        for part in compile::flatten(r, slot_of(r)) {
            for (fam, v6) in [false, true].into_iter().enumerate() {
                if compile::family_ok(&part, v6) {
                    if let Some((_, rank)) = locate(image, &roots[fam], v6, &part)? {
                        out.push(rank);
                    }
                }
            }
        }
        Ok(out)
    };
    let mut skip: Vec<u32> = vec![rule.id];
    let mut lo = None;
    // The nearest rule before it that the trees hold (a rule hidden
    // everywhere has no rank: the one before it then).
    for _ in 0..8 {
        let Some(prev) = rules
            .iter()
            .filter(|r| key(r) < key(rule) && !skip.contains(&r.id))
            .max_by_key(|r| key(r))
        else {
            lo = Some(0);
            break;
        };
        match ranks_of(prev)?.into_iter().max() {
            Some(rank) => {
                lo = Some(u64::from(rank));
                break;
            }
            None => skip.push(prev.id),
        }
    }
    let mut hi = None;
    for _ in 0..8 {
        let Some(next) = rules
            .iter()
            .filter(|r| key(r) > key(rule) && !skip.contains(&r.id))
            .min_by_key(|r| key(r))
        else {
            hi = Some(u64::from(u32::MAX));
            break;
        };
        match ranks_of(next)?.into_iter().min() {
            Some(rank) => {
                hi = Some(u64::from(rank));
                break;
            }
            None => skip.push(next.id),
        }
    }
    lo.zip(hi).ok_or(Fallback::NoRank)
}

/// Writes rule `id` at `slot` of the rule-id table, moving the table to the
/// end of the used cells (twice as long) when the slot is past it.
fn set_id(image: &mut Vec<Cell>, slot: u32, id: u32) -> Result<(), Fallback> {
    let h = image::header(image).map_err(Fallback::Unreadable)?;
    let (mut ids, len) = (h.ids, h.ids_len);
    if slot / 8 >= len {
        let grown = (slot / 8 + 1).max(2 * len);
        let old: Vec<Cell> = image[ids as usize..(ids + len) as usize].to_vec();
        image.push(ids_meta(grown));
        let at = image.len() as u32;
        image.extend(old);
        image.resize((at + grown) as usize, Cell::default());
        image[0].w[HEADER_IDS] = at;
        image[0].w[4] = image.len() as u32;
        ids = at;
    }
    image[(ids + slot / 8) as usize].w[(slot % 8) as usize] = id;
    Ok(())
}

/// Record runs written by this change, by content: leaves that end up with
/// the same records share one run, as the compiler's do.
#[derive(Default)]
struct Runs(HashMap<(bool, Vec<(u32, u32)>), u32>);

/// Points the leaf at `at` to `list`, appending its records (or reusing a
/// run this change wrote with the same ones).
fn write_leaf(
    image: &mut Vec<Cell>,
    at: u32,
    v6: bool,
    list: &[(RuleRecord, V6Words)],
    runs: &mut Runs,
) {
    let key = (
        v6,
        list.iter()
            .map(|(r, _)| (r.slot, r.rank))
            .collect::<Vec<_>>(),
    );
    let first = if list.is_empty() {
        0
    } else if let Some(&first) = runs.0.get(&key) {
        first
    } else {
        let first = image.len() as u32;
        for (rec, v6w) in list {
            image.push(as_cell(rec));
            if v6 {
                image.push(as_cell(v6w));
            }
        }
        runs.0.insert(key, first);
        first
    };
    let mut c = Cell::default();
    c.w[0] = node::LEAF;
    c.w[1] = list.len() as u32;
    c.w[2] = first;
    image[at as usize] = c;
    image[0].w[4] = image.len() as u32;
}

/// Adds one part of a new rule to the tree of family `v6` where it reaches
/// the fewest leaves.
fn add_part(
    image: &mut Vec<Cell>,
    roots: &[u32],
    v6: bool,
    part: &Flat,
    runs: &mut Runs,
    limit: usize,
) -> Result<(), Fallback> {
    // The tree where it reaches the fewest leaves, looking further only
    // when no tree is done within a few leaves.
    let mut best: Option<Vec<Leaf>> = None;
    for cap in CAPS {
        for &root in roots {
            let cap = best.as_ref().map_or(cap, Vec::len);
            if let Some(found) = image::leaves(image, root, v6, Some(&part.ranges), cap)
                .map_err(Fallback::Unreadable)?
            {
                if best.as_ref().is_none_or(|b| found.len() < b.len()) {
                    best = Some(found);
                }
            }
        }
        if best.is_some() {
            break;
        }
    }
    let touched = best.ok_or(Fallback::TooWide)?;
    for leaf in touched {
        let mut list = image::records(image, leaf.at, v6).map_err(Fallback::Unreadable)?;
        let at = list.partition_point(|(r, _)| r.rank < part.rec.rank);
        // A rule ranked before it already decides every packet here.
        let hidden = list[..at]
            .iter()
            .any(|(r, w)| shadows(&flat_of(*r, *w, 0), &leaf.region));
        if hidden {
            continue;
        }
        if shadows(part, &leaf.region) {
            list.truncate(at);
        }
        list.insert(at, (part.rec, part.v6));
        if list.len() <= MAX_LEAF as usize {
            write_leaf(image, leaf.at, v6, &list, runs);
        } else {
            split(image, &leaf, v6, &list, limit)?;
        }
    }
    Ok(())
}

/// Cuts a leaf whose rules outgrew it into a subtree, as the compiler
/// would have built it over the leaf's region.
fn split(
    image: &mut Vec<Cell>,
    leaf: &Leaf,
    v6: bool,
    list: &[(RuleRecord, V6Words)],
    limit: usize,
) -> Result<(), Fallback> {
    let h = image::header(image).map_err(Fallback::Unreadable)?;
    let id_of = |slot: u32| {
        image
            .get((h.ids + slot / 8) as usize)
            .map_or(0, |c| c.w[(slot % 8) as usize])
    };
    let flats: Vec<Flat> = list
        .iter()
        .map(|(r, w)| flat_of(*r, *w, id_of(r.slot)))
        .collect();
    let mut b = Builder {
        cells: std::mem::take(image),
        max_depth: 0,
        max_leaf: 0,
        budget: limit,
        leaves: HashMap::new(),
        stride: if v6 { 2 } else { 1 },
    };
    let built = b.build(
        &flats,
        (0..flats.len()).collect(),
        leaf.region,
        leaf.at,
        leaf.depth,
    );
    *image = b.cells;
    image[0].w[4] = image.len() as u32;
    built.map_err(|_| Fallback::Split)
}

/// Takes the records of counter slot `slot` out of a leaf.
fn del_in_leaf(
    image: &mut Vec<Cell>,
    leaf: &Leaf,
    v6: bool,
    slot: u32,
    runs: &mut Runs,
) -> Result<(), Fallback> {
    let list = image::records(image, leaf.at, v6).map_err(Fallback::Unreadable)?;
    if !list.iter().any(|(r, _)| r.slot == slot) {
        return Ok(());
    }
    // The last record may have covered the leaf, hiding rules after it.
    if let Some((r, w)) = list.last() {
        if r.slot == slot && shadows(&flat_of(*r, *w, 0), &leaf.region) {
            return Err(Fallback::Uncovers);
        }
    }
    let kept: Vec<_> = list.into_iter().filter(|(r, _)| r.slot != slot).collect();
    write_leaf(image, leaf.at, v6, &kept, runs);
    Ok(())
}

#[cfg(test)]
#[path = "patch_tests.rs"]
mod tests;
