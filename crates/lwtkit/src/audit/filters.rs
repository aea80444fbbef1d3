//! Filter policies: the pins exist, the config map's live generation is
//! the record's (and its other settings are the record's), and the cells
//! packets walk in the live generation judge every packet as the record's
//! rules do (`filter::image::verify`: the trees read back, each leaf
//! checked against the rules that reach it; a policy changed one rule at a
//! time has other cells than a whole compile of the same rules).
use std::path::Path;

use lwtkit_common::filter::{Cell, PolicyConfig};

use super::Finding;
use crate::filter::{
    image::verify,
    store::{config_of, live_config, read_cells, Policy},
};

/// The pins of a policy.
const PINS: [&str; 3] = ["cells", "config", "rule_stats"];

/// What the kernel holds for one policy.
#[derive(Clone, Debug, Default)]
pub(super) struct Observed {
    pub missing: Vec<&'static str>,
    pub config: Option<PolicyConfig>,
    /// The live generation's cells, as many as its header says it uses.
    pub live: Option<Vec<Cell>>,
}

/// Reads the pins of a policy under `dir`.
pub(super) fn observe(dir: &Path) -> Observed {
    let missing = PINS.into_iter().filter(|n| !dir.join(n).exists()).collect();
    let config = live_config(&dir.join("config")).ok();
    let live = config.and_then(|c| {
        let per_gen = c.capacity as usize;
        let total = 2 * per_gen;
        let base = c.generation as usize * per_gen;
        let cells = dir.join("cells");
        let header = read_cells(&cells, base, 1, total).ok()?;
        let used = header.first()?.w[4] as usize;
        if used == 0 || used > per_gen {
            return Some(header);
        }
        read_cells(&cells, base, used, total).ok()
    });
    Observed {
        missing,
        config,
        live,
    }
}

pub(super) fn check(p: &Policy, seen: &Observed) -> Vec<Finding> {
    let label = format!("policy `{}`", p.name);
    let mut out = Vec::new();
    if !seen.missing.is_empty() {
        out.push(Finding::new(
            "missing-pin",
            format!("{label}: pins {} are gone", seen.missing.join(", ")),
        ));
    }
    let Some(c) = seen.config else {
        if !seen.missing.contains(&"config") {
            out.push(Finding::new(
                "policy-config",
                format!("{label}: its config map holds no configuration"),
            ));
        }
        return out;
    };
    if c.generation != p.generation {
        out.push(Finding::new(
            "generation",
            format!(
                "{label}: packets are judged by generation {}, the record says {}",
                c.generation, p.generation
            ),
        ));
    }
    // Every setting but the generation (reported above), as the store
    // writes it.
    let want = config_of(p, c.generation);
    if c != want {
        out.push(Finding::new(
            "policy-config",
            format!("{label}: the config map says {c:?}, the record {want:?}"),
        ));
    }
    let live = seen.live.as_deref().unwrap_or_default();
    if let Err(why) = verify(live, &p.rules, |r| p.slot_of(r.id)) {
        out.push(Finding::new(
            "rules",
            format!(
                "{label}: packets walk another rule set than the {} rule(s) on record ({} live cells: {why})",
                p.rules.len(),
                live.len(),
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::{
        compile::compile_with_slots,
        handling::{Fragments, Malformed},
        rule::{Rule, RuleSpec, Verdict},
    };

    fn policy(rules: &[&str]) -> Policy {
        let rules: Vec<Rule> = rules
            .iter()
            .zip(1..)
            .map(|(text, id)| Rule {
                id,
                spec: RuleSpec::parse(&text.split_whitespace().collect::<Vec<_>>()).expect("rule"),
            })
            .collect();
        Policy {
            id: 1,
            name: "web".into(),
            default: Verdict::Allow,
            capacity: 16,
            cells: 65_536,
            generation: 1,
            next_id: rules.len() as u32 + 1,
            rules,
            carried: Default::default(),
            carried_extra: Default::default(),
            carried_actions: Default::default(),
            slots: Default::default(),
            fragments: Fragments::Pass,
            malformed: Malformed::Drop,
            rules_file: None,
            rules_version: 0,
            journal_len: 0,
            both_generations: true,
            spec: None,
        }
    }

    fn live(p: &Policy) -> Observed {
        Observed {
            missing: vec![],
            config: Some(config_of(p, p.generation)),
            live: Some(
                compile_with_slots(&p.rules, |r| p.slot_of(r.id))
                    .expect("compiles")
                    .cells,
            ),
        }
    }

    fn kinds(f: Vec<Finding>) -> Vec<&'static str> {
        f.into_iter().map(|f| f.kind).collect()
    }

    #[test]
    fn the_live_generation_runs_exactly_the_recorded_rules() {
        let p = policy(&[
            "dst 10.0.0.3/32 proto tcp dport 8080 drop",
            "proto udp drop",
        ]);
        assert!(check(&p, &live(&p)).is_empty());
        // A rule on record the kernel never got, or one it still runs.
        let fewer = policy(&["dst 10.0.0.3/32 proto tcp dport 8080 drop"]);
        assert_eq!(kinds(check(&fewer, &live(&p))), ["rules"]);
        assert_eq!(kinds(check(&p, &live(&fewer))), ["rules"]);
        // The same rules counting in other slots are another rule set too.
        let mut moved = p.clone();
        moved.slots = [(1, 5), (2, 6)].into();
        assert_eq!(kinds(check(&moved, &live(&p))), ["rules"]);
    }

    #[test]
    fn the_record_names_the_live_generation_and_settings() {
        let p = policy(&["proto udp drop"]);
        let mut flipped = live(&p);
        if let Some(c) = flipped.config.as_mut() {
            c.generation = 0;
        }
        assert_eq!(kinds(check(&p, &flipped)), ["generation"]);
        let mut dropping = p.clone();
        dropping.default = Verdict::Drop;
        assert_eq!(kinds(check(&dropping, &live(&p))), ["policy-config"]);
        let gone = Observed {
            missing: vec!["cells", "config", "rule_stats"],
            ..Default::default()
        };
        assert_eq!(kinds(check(&p, &gone)), ["missing-pin"]);
    }
}
