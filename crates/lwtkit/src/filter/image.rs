//! Reading a compiled generation back: its header, the leaves of its
//! trees with the region each covers, their records as rules again, and
//! [`verify`], which says whether the cells judge packets exactly as a
//! rule set does whatever way they were built (compiled whole, or changed
//! one rule at a time by [`super::patch`]).
use std::collections::HashMap;

use lwtkit_common::filter::{
    dim, node, rule_flags as rf, Cell, RuleRecord, V6Words, HEADER_IDS, MAX_DEPTH, MAX_TREES,
};

use super::{
    compile::{self, child_index_base, covers, Flat, Region, IDS_META},
    rule::Rule,
};

/// What cell 0 of a generation says.
#[derive(Clone, Debug)]
pub(super) struct Header {
    /// Roots of the IPv4 trees, then of the IPv6 trees.
    pub(super) roots: [Vec<u32>; 2],
    /// First cell and number of cells of the rule-id table.
    pub(super) ids: u32,
    pub(super) ids_len: u32,
}

/// A leaf of a tree and the part of the packet space it judges.
#[derive(Clone, Debug)]
pub(super) struct Leaf {
    pub(super) at: u32,
    pub(super) region: Region,
    pub(super) depth: u32,
}

/// Why cells cannot be read as a compiled generation.
pub(super) type Broken = String;

/// Reads the header of the generation `image` (exactly its used cells).
pub(super) fn header(image: &[Cell]) -> Result<Header, Broken> {
    let h = image.first().ok_or("no header cell")?;
    let len = image.len() as u64;
    if u64::from(h.w[4]) != len {
        return Err(format!(
            "the header says {} cells are used, {len} given",
            h.w[4]
        ));
    }
    let mut roots = [Vec::new(), Vec::new()];
    for (fam, out) in roots.iter_mut().enumerate() {
        let (n, list) = (h.w[2 * fam], h.w[2 * fam + 1]);
        if n > MAX_TREES || (n > 0 && u64::from(list) >= len) {
            return Err(format!("bad tree list ({n} trees at cell {list})"));
        }
        for t in 0..n as usize {
            let root = image[list as usize].w[t];
            if u64::from(root) >= len {
                return Err(format!("tree root {root} past the used cells"));
            }
            out.push(root);
        }
    }
    let ids = h.w[HEADER_IDS];
    // The cell before the table holds its length; generations written
    // before it did end with the table.
    let meta = ids.checked_sub(1).and_then(|m| image.get(m as usize));
    let ids_len = match meta {
        Some(m) if m.w[1] == IDS_META => m.w[0],
        _ => (len as u32).saturating_sub(ids),
    };
    if ids == 0 || u64::from(ids) + u64::from(ids_len) > len {
        return Err(format!("bad rule-id table ({ids_len} cells at {ids})"));
    }
    Ok(Header {
        roots,
        ids,
        ids_len,
    })
}

/// The leaves of the tree at `root` that `along` (a rule's ranges; `None`:
/// every leaf) overlaps, in order; at most `limit` of them (`None` past it).
pub(super) fn leaves(
    image: &[Cell],
    root: u32,
    v6: bool,
    along: Option<&Region>,
    limit: usize,
) -> Result<Option<Vec<Leaf>>, Broken> {
    let mut out = Vec::new();
    let mut stack = vec![(root, compile::full_region(v6), 0u32)];
    while let Some((at, region, depth)) = stack.pop() {
        let n = image
            .get(at as usize)
            .ok_or_else(|| format!("node {at} past the used cells"))?;
        match n.w[0] & 0xff {
            node::LEAF => {
                if out.len() == limit {
                    return Ok(None);
                }
                out.push(Leaf { at, region, depth });
            }
            node::INTERNAL if depth + 1 < MAX_DEPTH => {
                let d = ((n.w[0] >> 8) & 0xf) as usize;
                let shift = (n.w[0] >> 16) & 0x1f;
                let bits = (n.w[0] >> 24) & 0xf;
                if d >= dim::COUNT || bits == 0 {
                    return Err(format!("node {at} cuts dimension {d} into 2^{bits}"));
                }
                let (lo, hi) = region[d];
                let width = 64 - u64::from(hi - lo).leading_zeros();
                if width != shift + bits {
                    return Err(format!("node {at} does not cut its region evenly"));
                }
                let first = n.w[1].wrapping_add(child_index_base(lo, shift, bits));
                if u64::from(first) + (1u64 << bits) > image.len() as u64 {
                    return Err(format!("children of node {at} past the used cells"));
                }
                let span = match along {
                    Some(r) => compile::child_span(r[d], (lo, hi), shift),
                    None => Some((0, (1usize << bits) - 1)),
                };
                let Some((c0, c1)) = span else { continue };
                let step = 1u64 << shift;
                // Pushed last to first, so leaves come out in order.
                for c in (c0..=c1).rev() {
                    let clo = (u64::from(lo) + c as u64 * step) as u32;
                    let mut sub = region;
                    sub[d] = (clo, (u64::from(clo) + step - 1) as u32);
                    stack.push((first + c as u32, sub, depth + 1));
                }
            }
            _ => return Err(format!("cell {at} is no tree node")),
        }
    }
    Ok(Some(out))
}

/// The records of the leaf at `at`: each rule's first cell and, in IPv6
/// trees, its address words.
pub(super) fn records(
    image: &[Cell],
    at: u32,
    v6: bool,
) -> Result<Vec<(RuleRecord, V6Words)>, Broken> {
    let leaf = image[at as usize].w;
    let stride = if v6 { 2 } else { 1 };
    let (n, first) = (leaf[1] as usize, leaf[2] as usize);
    if n > 0 && first + n * stride > image.len() {
        return Err(format!("records of leaf {at} past the used cells"));
    }
    Ok((0..n)
        .map(|i| {
            let c = first + i * stride;
            let v6w = if v6 {
                from_cell(&image[c + 1])
            } else {
                V6Words::default()
            };
            (from_cell(&image[c]), v6w)
        })
        .collect())
}

/// A cell as the plain 32-byte value it holds.
pub(super) fn from_cell<T: Copy + Default>(c: &Cell) -> T {
    const { assert!(size_of::<T>() == 32) };
    let mut v = T::default();
    // SAFETY: T is 32 bytes of plain integers (asserted above).
    unsafe {
        core::ptr::copy_nonoverlapping(
            c.w.as_ptr().cast::<u8>(),
            (&mut v as *mut T).cast::<u8>(),
            32,
        )
    };
    v
}

/// The ranges a record matches, per dimension (what `compile::flatten`
/// made it from).
pub(super) fn ranges_of(rec: &RuleRecord, v6: &V6Words) -> Region {
    let wr = |w: u32, plen: u8| compile::word_range(w, u32::from(plen), 0);
    let mut r = [(0u32, 0u32); dim::COUNT];
    r[dim::SRC0] = wr(rec.src, rec.src_plen);
    r[dim::DST0] = wr(rec.dst, rec.dst_plen);
    for i in 0..3 {
        r[dim::SRC0 + 1 + i] = wr(v6.src[i], v6.plen[i]);
        r[dim::DST0 + 1 + i] = wr(v6.dst[i], v6.plen[3 + i]);
    }
    r[dim::PROTO] = if rec.proto_mask != 0 {
        (u32::from(rec.proto), u32::from(rec.proto))
    } else {
        (0, 0xff)
    };
    r[dim::SPORT] = (u32::from(rec.sport_lo), u32::from(rec.sport_hi));
    r[dim::DPORT] = (u32::from(rec.dport_lo), u32::from(rec.dport_hi));
    r[dim::L4] = if rec.flags & rf::NEEDS_L4 != 0 {
        (1, 1)
    } else {
        (0, 1)
    };
    r
}

/// A record of a leaf as the compiler's flat rule (`id` from the id table).
pub(super) fn flat_of(rec: RuleRecord, v6: V6Words, id: u32) -> Flat {
    Flat {
        ranges: ranges_of(&rec, &v6),
        leaf_only: rec.tcp_flags_mask != 0,
        id,
        rec,
        v6,
    }
}

pub(super) fn overlaps(ranges: &Region, region: &Region) -> bool {
    (0..dim::COUNT).all(|d| ranges[d].0 <= region[d].1 && ranges[d].1 >= region[d].0)
}

/// Whether a flat rule matches every packet of `region` on the fields the
/// tree cuts (so nothing ranked after it there can win).
pub(super) fn shadows(f: &Flat, region: &Region) -> bool {
    !f.leaf_only && (0..dim::COUNT).all(|d| covers(f.ranges[d], region[d]))
}

/// Two records of the same rule, whatever their rank.
pub(super) fn same_rule(a: &RuleRecord, b: &RuleRecord) -> bool {
    RuleRecord { rank: 0, ..*a } == RuleRecord { rank: 0, ..*b }
}

/// Checks that the generation `image` judges every packet as `rules`
/// (each counting in the slot `slot_of` gives it) do:
///
/// - every record is a rule's, field for field, with one rank per rule
///   and family-split part, and ranks in the rules' order (priority, id);
/// - each part of a rule sits in one tree of each family it belongs to,
///   and every leaf of that tree lists exactly the tree's parts that
///   overlap its region, in rank order, up to the first that covers the
///   region (what the compiler writes); a part in no tree is covered
///   everywhere, in some tree, by a part ranked before it;
/// - the rule-id table names each rule's id at its slot.
pub fn verify(
    image: &[Cell],
    rules: &[Rule],
    slot_of: impl Fn(&Rule) -> u32,
) -> Result<(), String> {
    let h = header(image)?;
    let mut sorted: Vec<&Rule> = rules.iter().collect();
    sorted.sort_by_key(|r| (r.spec.priority, r.id));
    // Every part of every rule in order; its index is its place in that order.
    let mut parts: Vec<Flat> = Vec::new();
    let mut by_slot: HashMap<u32, Vec<usize>> = HashMap::new();
    for r in sorted {
        let slot = slot_of(r);
        let id_cell = h.ids as usize + slot as usize / 8;
        if slot / 8 >= h.ids_len || image[id_cell].w[slot as usize % 8] != r.id {
            return Err(format!(
                "the rule-id table does not name rule {} at slot {slot}",
                r.id
            ));
        }
        for f in compile::flatten(r, slot) {
            by_slot.entry(slot).or_default().push(parts.len());
            parts.push(f);
        }
    }
    let mut rank: Vec<Option<u32>> = vec![None; parts.len()];
    for (fam, v6) in [false, true].into_iter().enumerate() {
        // Which tree holds each part, and what each leaf lists.
        let mut tree_of: Vec<Option<usize>> = vec![None; parts.len()];
        let mut listed: Vec<HashMap<u32, Vec<usize>>> = Vec::new();
        for (t, &root) in h.roots[fam].iter().enumerate() {
            let all = leaves(image, root, v6, None, usize::MAX)?.unwrap_or_default();
            let mut tree = HashMap::new();
            for leaf in all {
                let mut list = Vec::new();
                for (rec, v6w) in records(image, leaf.at, v6)? {
                    let k = by_slot
                        .get(&rec.slot)
                        .and_then(|ks| {
                            ks.iter().copied().find(|&k| {
                                same_rule(&parts[k].rec, &rec) && (!v6 || parts[k].v6 == v6w)
                            })
                        })
                        .ok_or_else(|| {
                            format!(
                                "leaf {} holds a record of no rule on record (slot {})",
                                leaf.at, rec.slot
                            )
                        })?;
                    if !compile::family_ok(&parts[k], v6) {
                        return Err(format!(
                            "rule {} is in a tree of the other family",
                            parts[k].id
                        ));
                    }
                    match rank[k] {
                        None => rank[k] = Some(rec.rank),
                        Some(r) if r != rec.rank => {
                            return Err(format!("rule {} has two ranks", parts[k].id))
                        }
                        Some(_) => {}
                    }
                    match tree_of[k] {
                        None => tree_of[k] = Some(t),
                        Some(u) if u != t => {
                            return Err(format!("rule {} is in two trees", parts[k].id))
                        }
                        Some(_) => {}
                    }
                    list.push(k);
                }
                tree.insert(leaf.at, list);
            }
            listed.push(tree);
        }
        for (t, &root) in h.roots[fam].iter().enumerate() {
            let members: Vec<usize> = (0..parts.len())
                .filter(|&k| tree_of[k] == Some(t))
                .collect();
            expect(
                image,
                &parts,
                root,
                compile::full_region(v6),
                members,
                &listed[t],
            )?;
        }
        // A part in no tree must be covered wherever it reaches, in one tree.
        for k in (0..parts.len()).filter(|&k| tree_of[k].is_none()) {
            if !compile::family_ok(&parts[k], v6) {
                continue;
            }
            let mut hidden = false;
            for (t, &root) in h.roots[fam].iter().enumerate() {
                let all = leaves(image, root, v6, Some(&parts[k].ranges), usize::MAX)?
                    .unwrap_or_default();
                hidden |= all.iter().all(|leaf| {
                    listed[t].get(&leaf.at).is_some_and(|list| {
                        list.iter()
                            .any(|&j| j < k && shadows(&parts[j], &leaf.region))
                    })
                });
            }
            if !hidden {
                return Err(format!("rule {} is missing from the trees", parts[k].id));
            }
        }
    }
    let ranked: Vec<u32> = rank.into_iter().flatten().collect();
    if ranked.windows(2).any(|w| w[0] >= w[1]) {
        return Err("ranks are not in the rules' order".into());
    }
    Ok(())
}

/// Follows the tree from the node at `at` (over `region`) with the tree's
/// parts `members` (in order) as the compiler hands them down, and checks
/// that each leaf lists what it must.
fn expect(
    image: &[Cell],
    parts: &[Flat],
    at: u32,
    region: Region,
    members: Vec<usize>,
    listed: &HashMap<u32, Vec<usize>>,
) -> Result<(), String> {
    // What reaches this node: the parts that overlap it, up to the first
    // that covers it (the members overlap every cut above already).
    let mut here = Vec::with_capacity(members.len());
    for k in members {
        if overlaps(&parts[k].ranges, &region) {
            here.push(k);
            if shadows(&parts[k], &region) {
                break;
            }
        }
    }
    let n = image[at as usize].w;
    if n[0] & 0xff == node::LEAF {
        let got = listed.get(&at).map(Vec::as_slice).unwrap_or_default();
        if got != here.as_slice() {
            return Err(format!(
                "leaf {at} lists {} rule(s) where the rules on record need {}",
                got.len(),
                here.len()
            ));
        }
        return Ok(());
    }
    let d = ((n[0] >> 8) & 0xf) as usize;
    let shift = (n[0] >> 16) & 0x1f;
    let bits = (n[0] >> 24) & 0xf;
    let (lo, hi) = region[d];
    let first = n[1].wrapping_add(child_index_base(lo, shift, bits));
    let mut kids: Vec<Vec<usize>> = vec![Vec::new(); 1 << bits];
    for &k in &here {
        if let Some((c0, c1)) = compile::child_span(parts[k].ranges[d], (lo, hi), shift) {
            for kid in &mut kids[c0..=c1] {
                kid.push(k);
            }
        }
    }
    let step = 1u64 << shift;
    for (c, kid) in kids.into_iter().enumerate() {
        let clo = (u64::from(lo) + c as u64 * step) as u32;
        let mut sub = region;
        sub[d] = (clo, (u64::from(clo) + step - 1) as u32);
        expect(image, parts, first + c as u32, sub, kid, listed)?;
    }
    Ok(())
}
