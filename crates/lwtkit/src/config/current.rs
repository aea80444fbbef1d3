//! What lwtkit holds in the namespace now: its records, each read back
//! against the kernel (a route rewritten outside lwtkit is drift, a
//! decapsulator whose device went away is defunct).
use std::collections::BTreeMap;

use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};

use super::plan::{
    Current, HeldDecap, HeldHook, HeldPolicy, HeldSid, HeldTunnel, Kernel, Program, RouteId,
    SidProgram,
};
use crate::{
    attach::{standing, Standing},
    encap::{
        decap::{self, DecapRecord},
        TunnelRecord,
    },
    error::Result,
    filter::store::Policies,
    hook::Hook,
    ns::Namespace,
    route::{
        kernel::{marks, Marks, RouteTable},
        netlink::Rtnl,
        ops::RouteKey,
    },
    seg6local::SidRecord,
    state::{HookRecord, NetnsState, Origin, RouteRecord},
};

fn describe(m: &Marks) -> String {
    if m.is_empty() {
        "no BPF program".into()
    } else {
        m.iter()
            .map(|(h, n)| format!("{h} `{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn kernel_of(record: &RouteRecord, route: Option<&RouteMessage>) -> Kernel {
    match standing(record, route) {
        Standing::Ours => Kernel::Ours,
        Standing::Gone => Kernel::Gone,
        Standing::Drifted { found } => Kernel::Drifted(describe(&found)),
    }
}

fn gateway(route: &RouteMessage) -> Option<std::net::IpAddr> {
    route.attributes.iter().find_map(|a| match a {
        RouteAttribute::Gateway(RouteAddress::Inet(v4)) => Some((*v4).into()),
        RouteAttribute::Gateway(RouteAddress::Inet6(v6)) => Some((*v6).into()),
        _ => None,
    })
}

/// The program a hook's record names (`None`: a tunnel's).
fn program_of(h: &HookRecord, hook: Hook) -> Option<Program> {
    Some(match &h.origin {
        Origin::Builtin { name } => Program::Builtin(name.clone()),
        Origin::Object { path, section } => Program::Object {
            path: path.clone(),
            section: section.clone(),
            program: None,
            // A section libbpf does not give this hook's type was forced.
            prog_type: (Hook::from_section(section) != Some(hook)).then_some(hook),
            digest: h.object_sha256.clone(),
        },
        Origin::Pinned { path } => Program::Pinned(path.clone()),
        Origin::Filter { policy } => Program::Filter(policy.clone()),
        Origin::Encap { .. } => return None,
    })
}

fn sid_program(r: &SidRecord) -> SidProgram {
    match &r.origin {
        Origin::Object { path, section } => SidProgram::Object {
            path: path.clone(),
            section: section.clone(),
            force_type: section != lwtkit_common::maps::sections::LWT_SEG6LOCAL,
            digest: r.object_sha256.clone(),
        },
        Origin::Builtin { name } => SidProgram::Builtin {
            name: name.clone(),
            dt6_table: r
                .dt6_table
                .or_else(|| (name == "end-dt6").then_some(crate::route::table::RT_TABLE_MAIN)),
        },
        other => SidProgram::Builtin {
            name: other.to_string(),
            dt6_table: None,
        },
    }
}

/// Reads lwtkit's state in `ns` and the kernel's routes and links behind it.
pub fn current(ns: &Namespace, rtnl: &mut Rtnl) -> Result<Current> {
    let mut c = Current::default();
    let records: Vec<RouteRecord> = ns.all()?;
    let mut route_kernel = BTreeMap::new();
    for rec in &records {
        let route = RouteId {
            dst: rec.dst,
            table: rec.table,
        };
        let msg = rtnl.lookup(&RouteKey {
            dst: rec.dst,
            table: rec.table,
        })?;
        let kernel = kernel_of(rec, msg.as_ref());
        route_kernel.insert(route, kernel.clone());
        let via = msg
            .as_ref()
            .filter(|_| rec.original.is_none())
            .and_then(gateway);
        for (hook, h) in &rec.hooks {
            let Some(program) = program_of(h, *hook) else {
                continue;
            };
            c.hooks.insert(
                (route, *hook),
                HeldHook {
                    dev: rec.dev.clone(),
                    local: rec.local,
                    headroom: rec.headroom,
                    program,
                    via,
                    kernel: kernel.clone(),
                },
            );
        }
    }
    let state = NetnsState::view(ns);
    let policies = Policies::new(&state);
    for p in policies.all()? {
        let mut rules = p.rules.clone();
        rules.sort_by_key(|r| r.id);
        c.policies.insert(
            p.name.clone(),
            HeldPolicy {
                handling: p.handling(),
                capacity: p.capacity,
                rules: rules.into_iter().map(|r| r.spec).collect(),
            },
        );
    }
    for t in ns.all::<TunnelRecord>()? {
        let route = RouteId {
            dst: t.dst,
            table: t.table,
        };
        // The tunnel's hook on its route's record, and that route in the kernel.
        let rec = records
            .iter()
            .find(|r| r.dst == t.dst && r.table == t.table);
        let kernel = match rec {
            Some(r)
                if r.hooks
                    .get(&t.hook)
                    .is_some_and(|h| matches!(h.origin, Origin::Encap { .. })) =>
            {
                route_kernel.get(&route).cloned().unwrap_or(Kernel::Gone)
            }
            _ => Kernel::Gone,
        };
        c.tunnels.insert(
            route,
            HeldTunnel {
                dev: t.dev.clone(),
                hook: t.hook,
                spec: t.spec.clone(),
                kernel,
            },
        );
    }
    let decap_pins = ns.pin_root().join(lwtkit_common::pins::decap::DIR);
    for d in ns.all::<DecapRecord>()? {
        let seen = decap::observe(&decap_pins.join(&d.dev), &d.dev);
        let attached = seen.defunct.is_none() && seen.missing.is_empty();
        c.decaps.insert(
            d.dev.clone(),
            HeldDecap {
                record: d,
                attached,
            },
        );
    }
    for s in ns.all::<SidRecord>()? {
        let route = RouteId {
            dst: s.sid,
            table: s.table,
        };
        let found = rtnl
            .lookup(&RouteKey {
                dst: s.sid,
                table: s.table,
            })?
            .map(|r| marks(&r));
        let expected = Marks::from([("seg6local".to_string(), s.name.clone())]);
        let kernel = match found {
            None => Kernel::Gone,
            Some(m) if m == expected => Kernel::Ours,
            Some(m) => Kernel::Drifted(describe(&m)),
        };
        c.sids.insert(
            route,
            HeldSid {
                dev: s.dev.clone(),
                program: sid_program(&s),
                kernel,
            },
        );
    }
    Ok(c)
}
