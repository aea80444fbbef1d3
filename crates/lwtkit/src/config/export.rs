//! The namespace's current state as a config file: `lwt reset` then `lwt
//! apply` of it gives back the same routes, hooks, rules, tunnels and SIDs.
use std::collections::BTreeMap;

use super::{
    file::{AttachEntry, ConfigFile, DecapEntry, FilterAttach, FilterEntry, SidEntry, TunnelEntry},
    plan::{Current, Program, SidProgram},
};
use crate::{
    encap::Tos,
    hook::Hook,
    route::table::{table_name, RT_TABLE_LOCAL, RT_TABLE_MAIN},
};

/// The table as the file names it: absent when it is the default for the
/// route (main, or local for a local route).
fn table_key(table: u32, local: bool) -> Option<String> {
    let default = if local { RT_TABLE_LOCAL } else { RT_TABLE_MAIN };
    (table != default).then(|| table_name(table))
}

/// The config file of `current`.
pub fn export(current: &Current) -> ConfigFile {
    let mut file = ConfigFile::default();
    let mut attachments: BTreeMap<String, Vec<FilterAttach>> = BTreeMap::new();
    for ((route, hook), h) in &current.hooks {
        let force = h.local && route.table != RT_TABLE_LOCAL;
        let mut e = AttachEntry {
            route: route.dst.to_string(),
            table: table_key(route.table, h.local),
            local: h.local,
            force,
            dev: h.dev.clone(),
            hook: *hook,
            headroom: h.headroom.filter(|n| *n > 0),
            via: h.via.map(|v| v.to_string()),
            builtin: None,
            obj: None,
            section: None,
            program: None,
            prog_type: None,
            pinned: None,
        };
        match &h.program {
            Program::Builtin(name) => e.builtin = Some(name.clone()),
            Program::Object {
                path,
                section,
                prog_type,
                ..
            } => {
                e.obj = Some(path.clone());
                e.section = Some(section.clone());
                e.prog_type = prog_type.map(|t: Hook| format!("lwt_{t}"));
            }
            Program::Pinned(path) => e.pinned = Some(path.clone()),
            Program::Filter(policy) => {
                attachments
                    .entry(policy.clone())
                    .or_default()
                    .push(FilterAttach {
                        route: e.route,
                        table: e.table,
                        local: e.local,
                        force: e.force,
                        dev: e.dev,
                        hook: *hook,
                    });
                continue;
            }
        }
        file.attach.push(e);
    }
    for (name, p) in &current.policies {
        file.filter.push(FilterEntry {
            name: name.clone(),
            default: Some(p.handling.default),
            fragments: Some(p.handling.fragments),
            malformed: Some(p.handling.malformed),
            capacity: Some(p.capacity),
            rules: p.rules.iter().map(ToString::to_string).collect(),
            attach: attachments.remove(name).unwrap_or_default(),
        });
    }
    for (route, t) in &current.tunnels {
        let s = &t.spec;
        file.tunnel.push(TunnelEntry {
            route: route.dst.to_string(),
            table: table_key(route.table, false),
            dev: t.dev.clone(),
            hook: Some(t.hook),
            kind: s.kind.to_string(),
            remote: s.remote.map(|r| r.to_string()),
            local: Some(s.local.to_string()),
            vni: s.vni,
            port: s.port,
            inner_dst_mac: s.inner_dst_mac.map(|m| {
                m.iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":")
            }),
            segments: s.segments.iter().map(ToString::to_string).collect(),
            ttl: s.ttl,
            tos: match s.tos {
                Tos::Inherit => None,
                Tos::Fixed(n) => Some(n.to_string()),
            },
            df: s.df.map(|d| d.as_str().to_string()),
            udp6_zero_csum: s.udp6_zero_csum,
        });
    }
    for (dev, d) in &current.decaps {
        let r = &d.record;
        let text = |v: &[std::net::IpAddr]| v.iter().map(ToString::to_string).collect();
        file.decap.push(DecapEntry {
            dev: dev.clone(),
            kinds: r.kinds.clone(),
            fou_port: r.fou_port.map(u64::from),
            gue_port: r.gue_port.map(u64::from),
            key: r.key.map(u64::from),
            local: text(&r.local),
            remote: text(&r.remote),
        });
    }
    for (route, s) in &current.sids {
        let mut e = SidEntry {
            sid: route.dst.to_string(),
            table: table_key(route.table, false),
            dev: s.dev.clone(),
            ..SidEntry::default()
        };
        match &s.program {
            SidProgram::Builtin { name, dt6_table } => {
                e.builtin = Some(name.clone());
                e.dt6_table = dt6_table.filter(|t| *t != RT_TABLE_MAIN).map(table_name);
            }
            SidProgram::Object {
                path,
                section,
                force_type,
                ..
            } => {
                e.obj = Some(path.clone());
                e.section = Some(section.clone());
                e.prog_type = force_type.then(|| "lwt_seg6local".to_string());
            }
        }
        file.sid.push(e);
    }
    file
}
