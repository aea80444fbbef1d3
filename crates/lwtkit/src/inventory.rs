//! `lwt list` and `lwt stats`: what carries an encap in this namespace, and
//! what lwtkit's built-ins counted.
use libbpf_rs::{MapCore, MapHandle, ProgramHandle};
use lwtkit_common::{filter::verdict_slot, Counters};
use netlink_packet_route::route::{RouteMessage, RouteType};
use serde::Serialize;

use crate::{
    attach::hex,
    error::Result,
    hook::Hook,
    route::{
        encap::{self, Encap},
        netlink::Rtnl,
        ops,
        table::table_name,
    },
    state::{NetnsState, Origin, RouteRecord},
    system,
};

/// One route with a lightweight-tunnel encap.
#[derive(Clone, Debug, Serialize)]
pub struct RouteEntry {
    pub dst: String,
    pub table: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dev: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(flatten)]
    pub encap: Encap,
    /// lwtkit attached at least one hook here.
    pub managed: bool,
}

/// Lists routes that carry an encap, in `table` (all tables when `None`).
pub fn list(table: Option<u32>) -> Result<Vec<RouteEntry>> {
    let mut rtnl = Rtnl::open()?;
    let routes = ops::dump_all(&mut rtnl)?;
    let records = read_records();
    let sids: Vec<crate::seg6local::SidRecord> = crate::ns::Namespace::open_readonly()
        .and_then(|ns| ns.all())
        .unwrap_or_default();
    let mut out = Vec::new();
    for r in routes
        .iter()
        .filter(|r| table.is_none_or(|t| ops::table_of(r) == t))
    {
        let Some(mut enc) = encap::from_route_attributes(&r.attributes) else {
            continue;
        };
        let dst = ops::dst_of(r);
        let record = records
            .iter()
            .find(|rec| Some(rec.dst) == dst && rec.table == ops::table_of(r));
        // A SID lwtkit added: its End.BPF program carries the recorded name.
        let mut managed = sids.iter().any(|sid| {
            Some(sid.sid) == dst
                && sid.table == ops::table_of(r)
                && crate::route::kernel::marks(r).get("seg6local") == Some(&sid.name)
        });
        if let Some(rec) = record {
            enc.set_bpf_headroom(rec.headroom);
            for hook in Hook::ALL {
                let (Some(info), Some(h)) = (enc.bpf_hook_mut(hook), rec.hooks.get(&hook)) else {
                    continue;
                };
                if info.name != h.name {
                    continue;
                }
                managed = true;
                info.origin = Some(h.origin.to_string());
                if let Ok(p) = ProgramHandle::from_pinned_path(&h.pin) {
                    info.id = Some(p.id());
                    info.tag = Some(hex(&p.tag()));
                }
            }
        }
        out.push(RouteEntry {
            dst: dst.map_or_else(
                || "?".into(),
                |d| {
                    if d.prefix_len() == 0 {
                        "default".into()
                    } else {
                        d.to_string()
                    }
                },
            ),
            table: table_name(ops::table_of(r)),
            dev: ops::oif_of(r).and_then(ifname),
            kind: route_type(r),
            encap: enc,
            managed,
        });
    }
    Ok(out)
}

/// What one built-in counted on one route and hook: every packet it saw,
/// and how they were judged (`count` allows everything).
#[derive(Clone, Debug, Serialize)]
pub struct HookStats {
    pub dst: String,
    pub table: String,
    pub hook: Hook,
    pub program: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    pub packets: u64,
    pub bytes: u64,
    pub allowed: Counters,
    pub dropped: Counters,
    pub malformed: Counters,
    /// A filter policy's rules with actions and what they did, summed over
    /// every route and hook the policy is on (rule counters are the
    /// policy's, not the attachment's).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<RuleActionStats>,
}

/// What one rule's action did (`lwt stats`, under its policy's attachments).
#[derive(Clone, Debug, Serialize)]
pub struct RuleActionStats {
    pub rule: u32,
    /// The action as the rule language writes it (`snat 203.0.113.7`).
    pub action: String,
    /// `translated`, `rerouted`, `marked` or `redirected`.
    pub done_as: &'static str,
    pub done: u64,
    pub failed: u64,
    pub loops: u64,
}

/// The action counters of `policy`'s rules, `None` when unreadable.
fn policy_actions(policy: &str) -> Option<Vec<RuleActionStats>> {
    let state = NetnsState::open_existing(std::path::Path::new(system::BPFFS)).ok()??;
    let policies = crate::filter::store::Policies::new(&state);
    let p = policies.get(policy).ok()?;
    let counters = policies.action_counters(&p).ok()?;
    Some(
        p.rules
            .iter()
            .filter_map(|r| {
                let a = r.spec.action.as_ref()?;
                let c = counters.get(&r.id).copied().unwrap_or_default();
                Some(RuleActionStats {
                    rule: r.id,
                    action: a.to_string(),
                    done_as: a.done_word(),
                    done: c.done,
                    failed: c.failed,
                    loops: c.loops,
                })
            })
            .collect(),
    )
}

/// Counters of every built-in lwtkit attached in this namespace, per-CPU
/// slots summed.
pub fn stats() -> Result<Vec<HookStats>> {
    let mut out = Vec::new();
    let tunnels = crate::encap::list().unwrap_or_default();
    for rec in read_records() {
        for (hook, h) in &rec.hooks {
            if let Origin::Encap { .. } = &h.origin {
                // Tunnels count in the namespace's shared tunnel counters.
                if let Some(t) = tunnels
                    .iter()
                    .find(|t| t.dst == rec.dst && t.table == table_name(rec.table))
                {
                    let st = &t.stats;
                    let dropped = Counters {
                        packets: st.no_tunnel + st.push_failed,
                        bytes: 0,
                    };
                    out.push(HookStats {
                        dst: rec.dst.to_string(),
                        table: table_name(rec.table),
                        hook: *hook,
                        program: h.name.clone(),
                        policy: None,
                        packets: st.packets + dropped.packets,
                        bytes: st.bytes,
                        allowed: Counters {
                            packets: st.packets,
                            bytes: st.bytes,
                        },
                        dropped,
                        malformed: Counters {
                            packets: st.malformed,
                            bytes: 0,
                        },
                        actions: Vec::new(),
                    });
                }
                continue;
            }
            let Some(pin) = &h.counters else { continue };
            // Unreadable without privileges: the caller has said so once.
            let Ok(slots) = read_counters(pin) else {
                continue;
            };
            let slot = |i: u32| slots.get(i as usize).copied().unwrap_or_default();
            let (allowed, dropped, malformed) = (
                slot(verdict_slot::ALLOWED),
                slot(verdict_slot::DROPPED),
                slot(verdict_slot::MALFORMED),
            );
            let policy = match &h.origin {
                Origin::Filter { policy } => Some(policy.clone()),
                _ => None,
            };
            let actions = policy
                .as_deref()
                .and_then(policy_actions)
                .unwrap_or_default();
            out.push(HookStats {
                dst: rec.dst.to_string(),
                table: table_name(rec.table),
                hook: *hook,
                program: h.name.clone(),
                policy,
                packets: allowed.packets + dropped.packets + malformed.packets,
                bytes: allowed.bytes + dropped.bytes + malformed.bytes,
                allowed,
                dropped,
                malformed,
                actions,
            });
        }
    }
    Ok(out)
}

/// Sums the per-CPU slots of each entry of a pinned counters map.
pub fn read_counters(pin: &std::path::Path) -> Result<Vec<Counters>> {
    let map = MapHandle::from_pinned_path(pin)
        .map_err(|_| crate::ns::StateError::MissingPin(pin.into()))?;
    let entries = map.info().map(|i| i.info.max_entries).unwrap_or(1);
    (0..entries)
        .map(|key| {
            let [packets, bytes] =
                crate::percpu::sum(&map, key).map_err(|e| crate::ns::StateError::Io {
                    path: pin.into(),
                    reason: e.to_string(),
                })?;
            Ok(Counters { packets, bytes })
        })
        .collect()
}

fn read_records() -> Vec<RouteRecord> {
    if !system::is_bpffs(std::path::Path::new(system::BPFFS)) {
        return Vec::new();
    }
    NetnsState::open_existing(std::path::Path::new(system::BPFFS))
        .ok()
        .flatten()
        .and_then(|s| s.records().ok())
        .unwrap_or_default()
}

fn ifname(index: u32) -> Option<String> {
    let mut buf = [0u8; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr().cast()) };
    if p.is_null() {
        return Some(format!("if{index}"));
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..end]).into_owned())
}

fn route_type(r: &RouteMessage) -> String {
    match r.header.kind {
        RouteType::Unicast => "unicast".into(),
        RouteType::Local => "local".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}
