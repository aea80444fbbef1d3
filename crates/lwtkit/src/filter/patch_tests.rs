//! A policy changed one rule at a time judges every packet as the model
//! does with the same rules, and its cells pass `image::verify`, after
//! every change; a change that cannot be made in place falls back to the
//! whole compile.
use std::collections::HashMap;

use lwtkit_common::filter::{dim, node, rule_flags as rf, Cell, RuleRecord, V6Words, MAX_DEPTH};

use super::*;
use crate::filter::{
    bench_families::{family_rules, sweep_packets, Family, Rng},
    compile::compile_with_slots,
    image::{from_cell, verify},
    model::{evaluate, parse_packet, Class, PacketKey},
    rule::{Rule, RuleSpec, Verdict},
};

/// A policy as the store keeps it: rules, their counter slots (the lowest
/// free one for a new rule), and its live cells.
struct Policy {
    rules: Vec<Rule>,
    slots: HashMap<u32, u32>,
    next_id: u32,
    cells: Vec<Cell>,
    fallbacks: HashMap<String, usize>,
    patched: usize,
}

const LIMIT: usize = 1 << 22;

impl Policy {
    fn new(rules: Vec<Rule>) -> Self {
        let slots: HashMap<u32, u32> = rules.iter().zip(1..).map(|(r, s)| (r.id, s)).collect();
        let next_id = rules.iter().map(|r| r.id).max().unwrap_or(0) + 1;
        let cells = compile_with_slots(&rules, |r| slots[&r.id])
            .expect("compiles")
            .cells;
        Self {
            rules,
            slots,
            next_id,
            cells,
            fallbacks: HashMap::new(),
            patched: 0,
        }
    }

    fn change(&mut self, change: Change) {
        let slots = &self.slots;
        let out = apply(
            self.cells.clone(),
            &self.rules,
            |r| slots[&r.id],
            change,
            LIMIT,
        );
        self.cells = match out {
            Ok(cells) => {
                self.patched += 1;
                cells
            }
            Err(why) => {
                *self.fallbacks.entry(format!("{why:?}")).or_default() += 1;
                compile_with_slots(&self.rules, |r| slots[&r.id])
                    .expect("compiles")
                    .cells
            }
        };
        if let Err(e) = verify(&self.cells, &self.rules, |r| slots[&r.id]) {
            panic!("after {} changes: {e}", self.patched);
        }
    }

    fn add(&mut self, spec: RuleSpec) -> u32 {
        let used: std::collections::HashSet<u32> = self.slots.values().copied().collect();
        let slot = (1..).find(|s| !used.contains(s)).expect("a free slot");
        let rule = Rule {
            id: self.next_id,
            spec,
        };
        self.next_id += 1;
        self.slots.insert(rule.id, slot);
        self.rules.push(rule.clone());
        self.change(Change::Add(&rule, slot));
        rule.id
    }

    fn del(&mut self, id: u32) {
        let at = self.rules.iter().position(|r| r.id == id).expect("rule");
        let rule = self.rules.remove(at);
        let slot = self.slots.remove(&id).expect("slot");
        self.change(Change::Del(&rule, slot));
    }

    /// Every packet of a sweep: the cells' winner is the model's.
    fn agrees(&self, packets: &[(bool, Vec<u8>)]) {
        let by_slot: HashMap<u32, u32> = self.slots.iter().map(|(id, s)| (*s, *id)).collect();
        for (_, pkt) in packets {
            let key = parse_packet(pkt);
            if key.class != Class::Whole {
                continue;
            }
            let want = evaluate(&self.rules, Verdict::Allow, &key).1;
            let got = walk(&self.cells, &key).map(|slot| by_slot[&slot]);
            assert_eq!(got, want, "packet {key:?}");
        }
    }
}

/// The kernel's walk (matcher.rs) over one generation: the counter slot of
/// the winning record.
fn walk(cells: &[Cell], key: &PacketKey) -> Option<u32> {
    let words = |b: &[u8; 16]| -> [u32; 4] {
        core::array::from_fn(|i| {
            u32::from_be_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
        })
    };
    let mut dims = [0u32; dim::COUNT];
    dims[dim::SRC0..dim::SRC0 + 4].copy_from_slice(&words(&key.src));
    dims[dim::DST0..dim::DST0 + 4].copy_from_slice(&words(&key.dst));
    dims[dim::PROTO] = u32::from(key.proto);
    dims[dim::SPORT] = u32::from(key.sport);
    dims[dim::DPORT] = u32::from(key.dport);
    dims[dim::L4] = u32::from(key.l4);
    let v6 = key.family == 6;
    let h = cells[0].w;
    let (trees, list, stride) = if v6 { (h[2], h[3], 2) } else { (h[0], h[1], 1) };
    let mut best: Option<(u32, u32)> = None;
    for t in 0..trees as usize {
        let mut at = cells[list as usize].w[t];
        for _ in 0..MAX_DEPTH {
            let w = cells[at as usize].w;
            if w[0] & 0xff != node::INTERNAL {
                break;
            }
            let d = ((w[0] >> 8) & 0xf) as usize;
            let (shift, bits) = ((w[0] >> 16) & 0x1f, (w[0] >> 24) & 0xf);
            at = w[1].wrapping_add((dims[d] >> shift) & ((1 << bits) - 1));
        }
        let leaf = cells[at as usize].w;
        assert_eq!(leaf[0] & 0xff, node::LEAF);
        for i in 0..leaf[1] {
            let c = (leaf[2] + i * stride) as usize;
            let r: RuleRecord = from_cell(&cells[c]);
            if best.is_some_and(|(rank, _)| r.rank >= rank) {
                break;
            }
            let mask = |plen: u8| !(u64::from(u32::MAX) >> plen) as u32;
            let inside = |v: u32, lo: u16, hi: u16| v >= u32::from(lo) && v <= u32::from(hi);
            let mut ok = (dims[dim::SRC0] ^ r.src) & mask(r.src_plen) == 0
                && (dims[dim::DST0] ^ r.dst) & mask(r.dst_plen) == 0
                && (dims[dim::PROTO] ^ u32::from(r.proto)) & u32::from(r.proto_mask) == 0
                && inside(dims[dim::SPORT], r.sport_lo, r.sport_hi)
                && inside(dims[dim::DPORT], r.dport_lo, r.dport_hi)
                && (key.tcp_flags & r.tcp_flags_mask) == r.tcp_flags_value
                && (r.flags & rf::NEEDS_L4 == 0 || key.l4);
            if ok && v6 {
                let w: V6Words = from_cell(&cells[c + 1]);
                ok = (0..3).all(|i| {
                    (dims[dim::SRC0 + 1 + i] ^ w.src[i]) & mask(w.plen[i]) == 0
                        && (dims[dim::DST0 + 1 + i] ^ w.dst[i]) & mask(w.plen[3 + i]) == 0
                });
            }
            if ok {
                best = Some((r.rank, r.slot));
                break;
            }
        }
    }
    best.map(|(_, slot)| slot)
}

/// A rule of `family` to add: another seed's, at the default priority or
/// one that puts it before, between or after the others.
fn new_rule(family: Family, rng: &mut Rng) -> RuleSpec {
    let mut spec = family_rules(family, 1, rng.next_u64())[0].spec.clone();
    spec.priority = match rng.below(4) {
        0 => 10,
        1 => 5000,
        2 => rng.below(3000) as u32,
        _ => spec.priority,
    };
    spec
}

#[test]
fn one_rule_changes_keep_every_family_equal_to_the_model() {
    for (i, family) in Family::ALL.into_iter().enumerate() {
        let seed = 0x9a7c_0000 + i as u64;
        let mut rng = Rng::new(seed);
        let mut p = Policy::new(family_rules(family, 1500, seed));
        let packets = sweep_packets(&p.rules, 3000, seed);
        for step in 0..200 {
            if rng.below(2) == 0 && !p.rules.is_empty() {
                let id = p.rules[rng.below(p.rules.len() as u64) as usize].id;
                p.del(id);
            } else {
                p.add(new_rule(family, &mut rng));
            }
            if step % 50 == 49 {
                p.agrees(&packets);
            }
        }
        eprintln!(
            "{family:?}: {} patched, fallbacks {:?}",
            p.patched, p.fallbacks
        );
        // Most changes are made in place.
        assert!(
            p.patched >= 150,
            "{family:?}: only {} of 200 changes patched ({:?})",
            p.patched,
            p.fallbacks
        );
        // Packets aimed at the rules added since.
        let added: Vec<Rule> = p.rules.iter().filter(|r| r.id > 1500).cloned().collect();
        if !added.is_empty() {
            p.agrees(&sweep_packets(&added, 1000, seed ^ 1));
        }
    }
}

#[test]
fn a_leaf_that_outgrows_its_rules_becomes_a_subtree() {
    let rule =
        |text: &str| RuleSpec::parse(&text.split_whitespace().collect::<Vec<_>>()).expect("rule");
    let mut p = Policy::new(vec![Rule {
        id: 1,
        spec: rule("dst 10.0.0.0/8 proto udp drop"),
    }]);
    // 80 rules on one address, each its own port: more than a leaf holds.
    for port in 0..80u16 {
        p.add(rule(&format!(
            "dst 10.1.2.3/32 proto udp dport {} allow",
            1000 + port
        )));
    }
    assert!(p.fallbacks.is_empty(), "{:?}", p.fallbacks);
    let mut rng = Rng::new(5);
    p.agrees(&sweep_packets(&p.rules, 2000, rng.next_u64()));
    // Deleting them one by one leaves the first rule alone.
    for id in 2..=81 {
        p.del(id);
    }
    p.agrees(&sweep_packets(&p.rules, 200, 3));
}

#[test]
fn deleting_a_rule_that_hid_others_compiles_whole() {
    let rule =
        |text: &str| RuleSpec::parse(&text.split_whitespace().collect::<Vec<_>>()).expect("rule");
    let mut p = Policy::new(vec![
        Rule {
            id: 1,
            spec: rule("priority 1 drop"),
        },
        Rule {
            id: 2,
            spec: rule("dst 10.0.0.3/32 proto tcp dport 22 allow"),
        },
    ]);
    p.del(1);
    assert_eq!(p.fallbacks.get("Uncovers"), Some(&1), "{:?}", p.fallbacks);
    p.agrees(&sweep_packets(&p.rules, 200, 1));
}

#[test]
fn cells_made_by_changes_are_not_those_of_a_whole_compile_but_verify() {
    let mut p = Policy::new(family_rules(Family::Bench, 300, 1));
    let mut rng = Rng::new(2);
    for _ in 0..20 {
        p.add(new_rule(Family::Bench, &mut rng));
    }
    let slots = &p.slots;
    let whole = compile_with_slots(&p.rules, |r| slots[&r.id])
        .expect("compiles")
        .cells;
    assert_ne!(whole, p.cells);
    verify(&whole, &p.rules, |r| slots[&r.id]).expect("a whole compile verifies");
    // A record of a rule not on record, or one missing, does not verify.
    let mut fewer = p.rules.clone();
    fewer.pop();
    assert!(verify(&p.cells, &fewer, |r| slots[&r.id]).is_err());
}

/// `lwtkit-bench changes` adds and deletes this rule in 100,000 benchmark
/// rules. Cuts of 4,096 children (compile's `MAX_BITS` 12) made it reach
/// more leaves than a change rewrites, and both changes compiled whole
/// (193 ms against the 100 ms target).
#[test]
fn a_narrow_rule_goes_in_and_out_of_100k_rules_in_place() {
    let rule =
        |text: &str| RuleSpec::parse(&text.split_whitespace().collect::<Vec<_>>()).expect("rule");
    for family in [Family::Bench, Family::WideRanges, Family::Mixed46] {
        let mut p = Policy::new(family_rules(family, 100_000, 42));
        let id = p.add(rule("dst 192.0.2.1/32 proto udp dport 9 drop"));
        p.del(id);
        assert_eq!(p.patched, 2, "{family:?}: {:?}", p.fallbacks);
    }
}
