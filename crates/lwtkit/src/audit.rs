//! `lwt check`: does what lwtkit remembers agree with what the kernel
//! holds? Finishes interrupted changes first (as every command that takes
//! the lock does), then compares each record with the kernel: routes carry
//! the recorded programs, pins exist and hold the programs the routes name,
//! no pins are left without a record.
use serde::Serialize;

use crate::{
    attach::{standing, Standing},
    error::Result,
    ns::Namespace,
    route::{kernel::RouteTable, netlink::Rtnl, ops::RouteKey},
    state::RouteRecord,
    system,
};

/// One disagreement between lwtkit's state and the kernel.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Finding {
    /// `drift`, `gone`, `missing-pin`, `wrong-program`, `orphan-pins`.
    pub kind: &'static str,
    pub what: String,
}

/// Pin directories that belong to the namespace, not to one route.
const SHARED_PIN_DIRS: [&str; 5] = ["filters", "events", "encap", "decap", "seg6local"];

pub fn check() -> Result<Vec<Finding>> {
    system::require_attach_privileges("lwt check")?;
    let ns = Namespace::open()?;
    let txn = ns.begin("lwt check")?;
    let mut rtnl = Rtnl::open()?;
    let mut out = Vec::new();
    let records = txn.all::<RouteRecord>()?;
    for rec in &records {
        let key = RouteKey {
            dst: rec.dst,
            table: rec.table,
        };
        match standing(rec, rtnl.lookup(&key)?.as_ref()) {
            Standing::Ours => {}
            Standing::Gone => out.push(Finding {
                kind: "gone",
                what: format!("route {key} is recorded but no longer exists"),
            }),
            Standing::Drifted { found } => out.push(Finding {
                kind: "drift",
                what: format!("route {key} carries {found:?}, not lwtkit's programs"),
            }),
        }
        for (hook, h) in &rec.hooks {
            match libbpf_rs::ProgramHandle::from_pinned_path(&h.pin) {
                Err(_) => out.push(Finding {
                    kind: "missing-pin",
                    what: format!("route {key} hook {hook}: pin {} is gone", h.pin.display()),
                }),
                Ok(p) => {
                    let id = h.name.rsplit_once('#').and_then(|(_, id)| id.parse().ok());
                    if id != Some(p.id()) {
                        out.push(Finding {
                            kind: "wrong-program",
                            what: format!(
                                "route {key} hook {hook}: pin {} holds program {}, the route names `{}`",
                                h.pin.display(),
                                p.id(),
                                h.name
                            ),
                        });
                    }
                }
            }
        }
    }
    let keys: Vec<String> = records
        .iter()
        .map(|r| RouteRecord::key(&r.dst, r.table))
        .collect();
    if let Ok(entries) = std::fs::read_dir(txn.pin_root()) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !SHARED_PIN_DIRS.contains(&name.as_str()) && !keys.contains(&name) {
                out.push(Finding {
                    kind: "orphan-pins",
                    what: format!("{} has no record", e.path().display()),
                });
            }
        }
    }
    Ok(out)
}
