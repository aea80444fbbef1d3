//! The namespace's pin tree: no staging directory a change left behind
//! (`<hook>_next` of a route, `<sid>_next`, `<dev>:next`), and no pins
//! without a record (a route's or hook's directory, a policy's, a SID's, a
//! decapsulator's). The layout:
//!
//! ```text
//! <table>_<prefix>/<hook>/{prog,counters}   routes (hook: in, out, xmit)
//! filters/<policy>/{cells,config,rule_stats}
//! encap/{tunnels,stats}                     the namespace's tunnel maps
//! decap/<dev>/{config,stats,local,remote,link}
//! seg6local/<table>_<sid>/{prog,counters}
//! events                                    the namespace's event ring buffer
//! ```
use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use lwtkit_common::pins;

use super::Finding;
use crate::{
    encap::decap::DecapRecord,
    filter::store::Policy,
    ns::{
        pins::{classify, Parent, PinEntry},
        Record,
    },
    seg6local::SidRecord,
    state::RouteRecord,
};

/// The pin directories the records account for.
#[derive(Debug, Default)]
pub(super) struct Expected {
    /// Route key to the hooks recorded on it.
    pub routes: BTreeMap<String, BTreeSet<String>>,
    pub policies: BTreeSet<String>,
    pub decaps: BTreeSet<String>,
    pub sids: BTreeSet<String>,
}

impl Expected {
    pub fn of(
        routes: &[RouteRecord],
        policies: &[Policy],
        decaps: &[DecapRecord],
        sids: &[SidRecord],
    ) -> Self {
        Self {
            routes: routes
                .iter()
                .map(|r| {
                    (
                        Record::key(r),
                        r.hooks.keys().map(|h| h.as_str().to_string()).collect(),
                    )
                })
                .collect(),
            policies: policies.iter().map(|p| p.name.clone()).collect(),
            decaps: decaps.iter().map(|d| d.dev.clone()).collect(),
            sids: sids.iter().map(Record::key).collect(),
        }
    }
}

fn entries(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .map(|it| {
            it.flatten()
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn staging(path: &Path) -> Finding {
    Finding::new(
        "staging",
        format!(
            "{} is a staging directory an unfinished change left behind",
            path.display()
        ),
    )
}

fn orphan(path: &Path, why: &str) -> Finding {
    Finding::new("orphan-pins", format!("{} {why}", path.display()))
}

/// The entries of a feature's directory `dir` that are staging, or pins of
/// no record in `known`.
fn records(dir: &Path, parent: Parent, known: &BTreeSet<String>, why: &str) -> Vec<Finding> {
    entries(dir)
        .into_iter()
        .filter_map(|(n, p)| match classify(parent, &n) {
            PinEntry::Staging => Some(staging(&p)),
            PinEntry::Owned if !known.contains(&n) => Some(orphan(&p, why)),
            PinEntry::Owned | PinEntry::Shared => None,
        })
        .collect()
}

/// Everything under `root` (the namespace's pin directory) that no record
/// accounts for, each entry read as the namespace's sweep reads it
/// ([`classify`]).
pub(super) fn stray(root: &Path, e: &Expected) -> Vec<Finding> {
    let mut out = Vec::new();
    for (name, path) in entries(root) {
        match name.as_str() {
            pins::EVENTS => {}
            pins::encap::DIR => out.extend(
                entries(&path)
                    .into_iter()
                    .filter(|(n, _)| n != pins::encap::TUNNELS && n != pins::encap::STATS)
                    .map(|(_, p)| orphan(&p, "is not one of the tunnel maps")),
            ),
            pins::filter::DIR => out.extend(records(
                &path,
                Parent::Filters,
                &e.policies,
                "has no policy record",
            )),
            pins::decap::DIR => out.extend(records(
                &path,
                Parent::Decap,
                &e.decaps,
                "has no decapsulator record",
            )),
            pins::SEG6LOCAL => out.extend(records(
                &path,
                Parent::Seg6local,
                &e.sids,
                "has no SID record",
            )),
            _ => match (classify(Parent::Root, &name), e.routes.get(&name)) {
                (PinEntry::Staging, _) => out.push(staging(&path)),
                (_, None) => out.push(orphan(&path, "has no record")),
                (_, Some(hooks)) => {
                    for (n, p) in entries(&path) {
                        if classify(Parent::Route, &n) == PinEntry::Staging {
                            out.push(staging(&p));
                        } else if !hooks.contains(&n) {
                            out.push(orphan(&p, "is a hook the route's record does not have"));
                        }
                    }
                }
            },
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_dirs_and_pins_without_records_are_found_anywhere() {
        let root = std::env::temp_dir().join(format!("lwtkit-pins-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for d in [
            "254_10_0_0_9_32/out",
            "254_10_0_0_9_32/xmit",
            "254_10_0_0_9_32/in_next",
            "254_10_0_0_8_32/out",
            "254_10_0_0_7_32_next",
            "filters/web",
            "filters/web:next",
            "filters/x_next",
            "filters/old",
            "encap",
            "decap/vb",
            "decap/vb:next",
            "decap/vc",
            "seg6local/254_fc00__b_128",
            "seg6local/254_fc00__b_128_next",
            "seg6local/254_fc00__c_128",
        ] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        for f in ["events", "encap/tunnels", "encap/stats", "encap/old"] {
            std::fs::write(root.join(f), b"").expect("write");
        }
        let expected = Expected {
            routes: [("254_10_0_0_9_32".to_string(), ["out".to_string()].into())].into(),
            policies: ["web".to_string(), "x_next".to_string()].into(),
            decaps: ["vb".to_string()].into(),
            sids: ["254_fc00__b_128".to_string()].into(),
        };
        let found: Vec<(&str, String)> = stray(&root, &expected)
            .into_iter()
            .map(|f| {
                let rel = f
                    .what
                    .split_whitespace()
                    .next()
                    .and_then(|p| Path::new(p).strip_prefix(&root).ok())
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                (f.kind, rel)
            })
            .collect();
        let _ = std::fs::remove_dir_all(&root);
        let want = [
            ("staging", "254_10_0_0_7_32_next"),
            ("orphan-pins", "254_10_0_0_8_32"),
            ("staging", "254_10_0_0_9_32/in_next"),
            ("orphan-pins", "254_10_0_0_9_32/xmit"),
            ("staging", "decap/vb:next"),
            ("orphan-pins", "decap/vc"),
            ("orphan-pins", "encap/old"),
            ("orphan-pins", "filters/old"),
            // A policy mid-growth: its staged maps are staging, not orphans.
            ("staging", "filters/web:next"),
            ("staging", "seg6local/254_fc00__b_128_next"),
            ("orphan-pins", "seg6local/254_fc00__c_128"),
        ];
        assert_eq!(
            found,
            want.iter()
                .map(|(k, p)| (*k, p.to_string()))
                .collect::<Vec<_>>()
        );
    }
}
