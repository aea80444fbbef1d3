//! Load-time specialisation of the filter program: what a rule set needs
//! of it ([`needs`]), as the `.rodata.spec` constant a program instance is
//! loaded with ([`constants`]). The verifier reads the constant and drops
//! the paths it rules out, so a policy without actions, logging or IPv6
//! rules runs a smaller program (docs/filter.md, "Specialised programs").
use lwtkit_common::{
    filter::{Cell, ProgramSpec},
    maps::filter::SPEC_SECTION,
};

use ipnet::IpNet;

use super::rule::Rule;

/// What a generation holding `rules`, compiled to `cells`, needs of the
/// program: its trees per family (from the header; none for a family no
/// rule can match, whose trees the compiler still emits, empty), whether
/// any rule logs or acts.
pub fn needs(rules: &[Rule], cells: &[Cell]) -> ProgramSpec {
    let header = cells.first().copied().unwrap_or_default();
    let trees = |v6: bool, n: u32| {
        if rules.iter().any(|r| in_family(r, v6)) {
            ProgramSpec::trees(n)
        } else {
            0
        }
    };
    ProgramSpec {
        v4_trees: trees(false, header.w[0]),
        v6_trees: trees(true, header.w[2]),
        log: u32::from(rules.iter().any(|r| r.spec.log)),
        actions: u32::from(rules.iter().any(|r| r.spec.action.is_some())),
    }
}

/// Whether the compiler puts `r` in the trees of IPv6 (`v6`) or IPv4: the
/// family of its addresses, or of the address it writes, or both when it
/// has neither (`compile::family_ok`).
fn in_family(r: &Rule, v6: bool) -> bool {
    let s = &r.spec;
    let family = s.src.or(s.dst).map(|n| matches!(n, IpNet::V6(_))).or(s
        .action
        .as_ref()
        .and_then(|a| a.family())
        .map(|f| f == 6));
    family.is_none_or(|f| f == v6)
}

/// The loader's constants for an instance specialised as `spec`.
pub fn constants(spec: ProgramSpec) -> Vec<(String, Vec<u8>)> {
    vec![(SPEC_SECTION.into(), bytes(spec))]
}

/// `spec` as the section holds it.
pub fn bytes(spec: ProgramSpec) -> Vec<u8> {
    [spec.v4_trees, spec.v6_trees, spec.log, spec.actions]
        .iter()
        .flat_map(|w| w.to_ne_bytes())
        .collect()
}

/// What the instance keeps, for `filter show`: `ipv4 1 tree, no ipv6, no
/// log, no actions`, or `every path`.
pub fn describe(spec: ProgramSpec) -> String {
    if spec == ProgramSpec::GENERIC {
        return "every path".into();
    }
    let trees = |family: &str, n: u32| match n {
        0 => format!("no {family}"),
        1 => format!("{family} 1 tree"),
        _ => format!("{family} trees"),
    };
    let mut parts = vec![trees("ipv4", spec.v4_trees), trees("ipv6", spec.v6_trees)];
    parts.push(if spec.log != 0 { "log" } else { "no log" }.into());
    parts.push(
        if spec.actions != 0 {
            "actions"
        } else {
            "no actions"
        }
        .into(),
    );
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::{compile::compile, rule::RuleSpec};

    fn rules(lines: &[&str]) -> Vec<Rule> {
        lines
            .iter()
            .zip(1..)
            .map(|(l, id)| Rule {
                id,
                spec: l.parse::<RuleSpec>().expect("rule parses"),
            })
            .collect()
    }

    fn needs_of(lines: &[&str]) -> ProgramSpec {
        let r = rules(lines);
        needs(&r, &compile(&r).expect("compiles").cells)
    }

    #[test]
    fn an_empty_policy_needs_no_path() {
        let none = ProgramSpec {
            v4_trees: 0,
            v6_trees: 0,
            log: 0,
            actions: 0,
        };
        assert_eq!(needs_of(&[]), none);
        assert_eq!(describe(none), "no ipv4, no ipv6, no log, no actions");
    }

    #[test]
    fn log_actions_and_families_are_what_the_rules_use() {
        let s = needs_of(&["dst 10.0.0.3/32 proto tcp dport 22 drop"]);
        assert_eq!((s.v4_trees, s.v6_trees, s.log, s.actions), (1, 0, 0, 0));
        let s = needs_of(&["dst 10.0.0.3/32 drop log", "dst fc00::3/128 allow"]);
        assert_eq!((s.v4_trees, s.v6_trees, s.log, s.actions), (1, 1, 1, 0));
        let s = needs_of(&["proto tcp dport 22 drop"]);
        assert_eq!(
            (s.v4_trees, s.v6_trees),
            (1, 1),
            "no address: both families"
        );
        let s = needs_of(&["dst 10.0.0.3/32 mark 7"]);
        assert_eq!(s.actions, 1);
    }

    #[test]
    fn a_record_written_before_specialisation_runs_every_path() {
        let old =
            r#"{"id":1,"name":"web","default":"allow","capacity":256,"cells":4096,"generation":0}"#;
        let p: crate::filter::store::Policy =
            serde_json::from_str(old).expect("an old record reads");
        assert_eq!(p.spec, None);
        assert_eq!(p.program_spec(), ProgramSpec::GENERIC);
        assert_eq!(describe(p.program_spec()), "every path");
    }

    #[test]
    fn a_union_covers_both_and_tree_counts_are_zero_one_or_many() {
        let a = ProgramSpec {
            v4_trees: 1,
            v6_trees: 0,
            log: 0,
            actions: 1,
        };
        let b = ProgramSpec {
            v4_trees: 0,
            v6_trees: 1,
            log: 1,
            actions: 0,
        };
        let u = a.union(b);
        assert!(u.covers(a) && u.covers(b) && !a.covers(b));
        assert_eq!(ProgramSpec::trees(3), ProgramSpec::GENERIC.v4_trees);
        assert!(ProgramSpec::GENERIC.covers(u));
        assert_eq!(bytes(u).len(), std::mem::size_of::<ProgramSpec>());
    }
}
