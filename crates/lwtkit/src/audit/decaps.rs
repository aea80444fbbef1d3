//! Decapsulators: every pin there, the pinned tcx link attached to the
//! device of that name (a defunct one is a finding: `lwt decap add` again),
//! and the maps holding what the record says: configuration, the local
//! destinations it accepts, the remotes it takes from.
use ipnet::IpNet;

use super::Finding;
use crate::encap::decap::{config_of, remotes_of, DecapRecord, Observed};

pub(super) fn check(d: &DecapRecord, seen: &Observed) -> Vec<Finding> {
    let label = format!("decapsulator on {}", d.dev);
    let mut out = Vec::new();
    if !seen.missing.is_empty() {
        out.push(Finding::new(
            "missing-pin",
            format!("{label}: pins {} are gone", seen.missing.join(", ")),
        ));
    }
    if let Some(why) = &seen.defunct {
        out.push(Finding::new("defunct", format!("{label}: {why}")));
    }
    let maps = |what: String| Finding::new("decap-maps", format!("{label}: {what}"));
    match (config_of(d), seen.config) {
        (Err(e), _) => out.push(maps(format!("its record is not valid: {e}"))),
        (Ok(want), Some(got)) if want != got => out.push(maps(format!(
            "the config map holds {got:?}, the record calls for {want:?}"
        ))),
        _ => {}
    }
    let sorted = |v: &[IpNet]| {
        let mut v = v.to_vec();
        v.sort();
        v.dedup();
        v
    };
    let list = |v: &[IpNet]| {
        if v.is_empty() {
            "nothing".to_string()
        } else {
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    for (trie, want, got) in [
        ("local", sorted(&d.accepting), seen.local.as_deref()),
        ("remote", remotes_of(d), seen.remote.as_deref()),
    ] {
        if let Some(got) = got.map(sorted).filter(|g| *g != want) {
            out.push(maps(format!(
                "the {trie} map holds {}, the record says {}",
                list(&got),
                list(&want)
            )));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use lwtkit_common::encap::{decap as kinds, DecapConfig};

    use super::*;

    fn record() -> DecapRecord {
        let mut r = DecapRecord::new("vb", vec!["gre".into()]);
        r.accepting = vec!["10.0.0.3/32".parse().expect("net")];
        r
    }

    fn healthy() -> Observed {
        Observed {
            missing: vec![],
            defunct: None,
            config: Some(DecapConfig {
                kinds: kinds::GRE,
                ..Default::default()
            }),
            local: Some(vec!["10.0.0.3/32".parse().expect("net")]),
            remote: Some(vec![]),
        }
    }

    fn kinds_of(f: Vec<Finding>) -> Vec<&'static str> {
        f.into_iter().map(|f| f.kind).collect()
    }

    #[test]
    fn a_decapsulator_is_attached_and_its_maps_say_what_the_record_does() {
        let r = record();
        assert!(check(&r, &healthy()).is_empty());
        let defunct = Observed {
            defunct: Some("vb was deleted".into()),
            ..healthy()
        };
        assert_eq!(kinds_of(check(&r, &defunct)), ["defunct"]);
        let unpinned = Observed {
            missing: vec!["link"],
            ..healthy()
        };
        assert_eq!(kinds_of(check(&r, &unpinned)), ["missing-pin"]);
        // A reconfiguration the maps never saw: another key, another address.
        let mut keyed = r.clone();
        keyed.key = Some(7);
        assert_eq!(kinds_of(check(&keyed, &healthy())), ["decap-maps"]);
        let mut moved = r.clone();
        moved.accepting = vec!["10.0.0.4/32".parse().expect("net")];
        let found = check(&moved, &healthy());
        assert_eq!(found.len(), 1);
        assert!(
            found[0].what.contains("local map holds 10.0.0.3/32"),
            "{found:?}"
        );
        let mut remote = r;
        remote.remote = vec!["10.0.0.2".parse().expect("addr")];
        // The filter flag and the remote trie both differ.
        assert_eq!(
            kinds_of(check(&remote, &healthy())),
            ["decap-maps", "decap-maps"]
        );
    }
}
