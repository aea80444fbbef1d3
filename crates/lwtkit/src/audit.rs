//! `lwt check`: does what lwtkit remembers agree with what the kernel
//! holds? Finishes interrupted changes first (as every command that takes
//! the lock does), then compares every store with the kernel:
//!
//! - routes: each carries the recorded programs, whose pins exist and hold
//!   the programs the route names; each hook's owner still exists (a
//!   tunnel, a policy);
//! - tunnels ([`tunnels`]): a route hook of an encap origin, and the
//!   `tunnels` trie entry the record calls for; no entry without a record;
//! - SIDs ([`sids`]): the route's `End.BPF` program is the recorded one, and
//!   the pin holds it;
//! - decapsulators ([`decaps`]): pins whose tcx link serves the device, maps
//!   holding the recorded configuration and addresses;
//! - filter policies ([`filters`]): pins, the live generation, and the live
//!   rule set byte for byte what the record's rules compile to;
//! - the pin tree ([`pins`]): no staging directory left, no pins without a
//!   record.
//!
//! Each part compares data already read, so it is unit-tested without a
//! kernel; [`check`] does the reading.
mod decaps;
mod filters;
mod pins;
mod sids;
mod tunnels;

use std::path::Path;

use netlink_packet_route::route::RouteMessage;
use serde::Serialize;

use crate::{
    attach::{standing, Standing},
    encap::{decap::DecapRecord, TunnelRecord},
    error::Result,
    filter::store::Policy,
    ns::Namespace,
    route::{
        kernel::{marks, split_program_name, RouteTable},
        netlink::Rtnl,
        ops::RouteKey,
    },
    seg6local::SidRecord,
    state::{Origin, RouteRecord},
    system,
};

/// One disagreement between lwtkit's state and the kernel.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Finding {
    /// What kind of disagreement (see docs/check.md): `gone`, `drift`,
    /// `missing-pin`, `wrong-program`, `orphan-hook`, `tunnel-route`,
    /// `tunnel-entry`, `orphan-entry`, `defunct`, `decap-maps`,
    /// `generation`, `policy-config`, `rules`, `staging`, `orphan-pins`.
    pub kind: &'static str,
    pub what: String,
}

impl Finding {
    fn new(kind: &'static str, what: impl Into<String>) -> Self {
        Self {
            kind,
            what: what.into(),
        }
    }
}

pub fn check() -> Result<Vec<Finding>> {
    system::require_attach_privileges("lwt check")?;
    let ns = Namespace::open()?;
    let txn = ns.begin_unswept("lwt check")?;
    findings(&txn)
}

/// What `lwt doctor` reports of lwtkit's own state: the comparisons of
/// [`check`], read without the lock, so nothing is finished, swept or
/// created. A change in flight shows as its intents (and may show as a
/// finding until the next command finishes it).
pub struct Health {
    /// Whether lwtkit keeps anything in this namespace.
    pub exists: bool,
    /// Intents a killed (or running) command left.
    pub pending: usize,
    pub findings: Vec<Finding>,
}

/// [`check`] read-only; `None` when this process may not read lwtkit's
/// records (not root).
pub fn health() -> Result<Option<Health>> {
    let ns = Namespace::open_readonly()?;
    if !ns.readable() {
        return Ok(None);
    }
    if !ns.exists() {
        return Ok(Some(Health {
            exists: false,
            pending: 0,
            findings: Vec::new(),
        }));
    }
    let pending = crate::ns::intent::pending(&ns.dir().join("intents"))?.len();
    Ok(Some(Health {
        exists: true,
        pending,
        findings: findings(&ns)?,
    }))
}

/// Every store of `ns` against the kernel.
fn findings(ns: &Namespace) -> Result<Vec<Finding>> {
    let mut rtnl = Rtnl::open()?;
    let records = ns.all::<RouteRecord>()?;
    let tunnel_records = ns.all::<TunnelRecord>()?;
    let sid_records = ns.all::<SidRecord>()?;
    let decap_records = ns.all::<DecapRecord>()?;
    // The records as written: the live generation is compared with them.
    let mut policies = ns.all::<Policy>()?;
    let mut out = Vec::new();
    for p in &mut policies {
        if let Err(e) = crate::filter::store::load_rules(&ns.dir().join("filters"), p) {
            out.push(Finding::new(
                "rules",
                format!("policy `{}`: its rules file cannot be read: {e}", p.name),
            ));
        }
    }
    for rec in &records {
        let key = RouteKey {
            dst: rec.dst,
            table: rec.table,
        };
        out.extend(route_findings(
            rec,
            rtnl.lookup(&key)?.as_ref(),
            pinned_program_id,
        ));
    }
    out.extend(owner_findings(&records, &tunnel_records, &policies));
    out.extend(tunnels::check(
        &tunnel_records,
        &records,
        tunnels::read_trie(&ns.pin_root().join("encap").join("tunnels")).as_ref(),
    ));
    for s in &sid_records {
        let key = RouteKey {
            dst: s.sid,
            table: s.table,
        };
        let current = rtnl.lookup(&key)?.map(|r| marks(&r));
        out.extend(sids::check(s, current.as_ref(), pinned_program_id));
    }
    for d in &decap_records {
        let seen = crate::encap::decap::observe(&ns.pin_root().join("decap").join(&d.dev), &d.dev);
        out.extend(decaps::check(d, &seen));
    }
    for p in &policies {
        out.extend(filters::check(
            p,
            &filters::observe(&ns.pin_root().join("filters").join(&p.name)),
        ));
    }
    let expected = pins::Expected::of(&records, &policies, &decap_records, &sid_records);
    out.extend(pins::stray(ns.pin_root(), &expected));
    Ok(out)
}

/// The id of the program pinned at `pin`, if one is.
fn pinned_program_id(pin: &Path) -> Option<u32> {
    libbpf_rs::ProgramHandle::from_pinned_path(pin)
        .ok()
        .map(|p| p.id())
}

/// Whether the pin at `pin` holds the program the route names `name`.
fn pin_finding(
    what: &str,
    pin: &Path,
    name: &str,
    pinned: &dyn Fn(&Path) -> Option<u32>,
) -> Option<Finding> {
    match pinned(pin) {
        None => Some(Finding::new(
            "missing-pin",
            format!("{what}: pin {} is gone", pin.display()),
        )),
        Some(id) if split_program_name(name).1 != Some(id) => Some(Finding::new(
            "wrong-program",
            format!(
                "{what}: pin {} holds program {id}, the route names `{name}`",
                pin.display()
            ),
        )),
        Some(_) => None,
    }
}

/// A route record against the route the kernel holds (`current`) and the
/// programs its pins hold (`pinned`: the id of the program pinned at a path).
fn route_findings(
    rec: &RouteRecord,
    current: Option<&RouteMessage>,
    pinned: impl Fn(&Path) -> Option<u32>,
) -> Vec<Finding> {
    let key = RouteKey {
        dst: rec.dst,
        table: rec.table,
    };
    let mut out = Vec::new();
    match standing(rec, current) {
        Standing::Ours => {}
        Standing::Gone => out.push(Finding::new(
            "gone",
            format!("route {key} is recorded but no longer exists"),
        )),
        Standing::Drifted { found } => out.push(Finding::new(
            "drift",
            format!("route {key} carries {found:?}, not lwtkit's programs"),
        )),
    }
    for (hook, h) in &rec.hooks {
        out.extend(pin_finding(
            &format!("route {key} hook {hook}"),
            &h.pin,
            &h.name,
            &pinned,
        ));
        if let Some(c) = h.counters.as_ref().filter(|c| !c.exists()) {
            out.push(Finding::new(
                "missing-pin",
                format!(
                    "route {key} hook {hook}: counters pin {} is gone",
                    c.display()
                ),
            ));
        }
    }
    out
}

/// Hooks whose owner is gone: a tunnel's hook without its tunnel record,
/// a filter's hook without its policy.
fn owner_findings(
    records: &[RouteRecord],
    tunnels: &[TunnelRecord],
    policies: &[Policy],
) -> Vec<Finding> {
    let mut out = Vec::new();
    for rec in records {
        let key = RouteKey {
            dst: rec.dst,
            table: rec.table,
        };
        for (hook, h) in &rec.hooks {
            match &h.origin {
                Origin::Encap { .. }
                    if !tunnels
                        .iter()
                        .any(|t| t.dst == rec.dst && t.table == rec.table && t.hook == *hook) =>
                {
                    out.push(Finding::new(
                        "orphan-hook",
                        format!("route {key} hook {hook} runs a tunnel program, but lwtkit has no tunnel for it"),
                    ));
                }
                Origin::Filter { policy } if !policies.iter().any(|p| p.name == *policy) => {
                    out.push(Finding::new(
                        "orphan-hook",
                        format!(
                            "route {key} hook {hook} runs filter policy `{policy}`, which has no record"
                        ),
                    ));
                }
                _ => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{
        hook::Hook,
        route::{
            codec::{BpfProgAttr, LwtBpf},
            ops::{self, NewRoute},
        },
        state::HookRecord,
    };

    fn record(name: &str, origin: Origin) -> RouteRecord {
        RouteRecord {
            dst: "10.0.0.9/32".parse().expect("prefix"),
            table: 254,
            local: false,
            dev: "va".into(),
            original: None,
            headroom: None,
            hooks: BTreeMap::from([(
                Hook::Out,
                HookRecord {
                    name: name.into(),
                    pin: "/pins/254_10_0_0_9_32/out/prog".into(),
                    counters: None,
                    origin,
                    object_sha256: None,
                },
            )]),
            mtu_hook: None,
            stand_in: false,
        }
    }

    fn route_with(name: &str) -> RouteMessage {
        let mut r = ops::new_route(&NewRoute {
            key: RouteKey {
                dst: "10.0.0.9/32".parse().expect("prefix"),
                table: 254,
            },
            local: false,
            oif: 2,
            via: None,
        });
        let mut bpf = LwtBpf::default();
        bpf.set_hook(
            Hook::Out,
            Some(BpfProgAttr {
                fd: Some(3),
                name: name.into(),
            }),
        );
        r.attributes.extend(bpf.encode().expect("encode"));
        r
    }

    fn kinds(f: &[Finding]) -> Vec<&'static str> {
        f.iter().map(|f| f.kind).collect()
    }

    #[test]
    fn a_route_is_checked_against_the_kernel_and_its_pins() {
        let builtin = Origin::Builtin {
            name: "count".into(),
        };
        let rec = record("lwtkit-count:[lwt_out]#7", builtin);
        let route = route_with("lwtkit-count:[lwt_out]#7");
        assert!(route_findings(&rec, Some(&route), |_| Some(7)).is_empty());
        assert_eq!(kinds(&route_findings(&rec, None, |_| Some(7))), ["gone"]);
        let other = route_with("drop.o:[lwt_out]");
        assert_eq!(
            kinds(&route_findings(&rec, Some(&other), |_| Some(7))),
            ["drift"]
        );
        assert_eq!(
            kinds(&route_findings(&rec, Some(&route), |_| None)),
            ["missing-pin"]
        );
        assert_eq!(
            kinds(&route_findings(&rec, Some(&route), |_| Some(8))),
            ["wrong-program"]
        );
    }

    #[test]
    fn hooks_whose_owner_is_gone_are_reported() {
        let encap = record(
            "lwtkit-encap-gre:[lwt_xmit]#9",
            Origin::Encap {
                tunnel: "gre".into(),
            },
        );
        let filter = record(
            "lwtkit-filter-web:[lwt_out]#5",
            Origin::Filter {
                policy: "web".into(),
            },
        );
        let found = owner_findings(&[encap, filter], &[], &[]);
        assert_eq!(kinds(&found), ["orphan-hook", "orphan-hook"]);
        assert!(found[1].what.contains("`web`"), "{found:?}");
    }
}
