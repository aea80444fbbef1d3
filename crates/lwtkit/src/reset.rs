//! `lwt reset`: takes off everything lwtkit put in the current network
//! namespace — tunnels, SIDs, decapsulators, hooks (their routes restored or
//! removed), filter policies — and removes its records and pins. Run it
//! before deleting a namespace: the kernel drops the routes with the
//! namespace, but bpffs pins outlive it.
use std::fs;

use serde::Serialize;

use crate::{
    attach::{self, DetachRequest},
    encap::{self, decap},
    error::{Error, Result},
    filter::store::Policies,
    ns::Namespace,
    route::netlink::Rtnl,
    seg6local,
    state::{NetnsState, RouteRecord},
    system,
};

/// What a reset took off.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Reset {
    pub tunnels: usize,
    pub sids: usize,
    pub decaps: usize,
    pub routes: usize,
    pub policies: usize,
    /// What was found changed outside lwtkit, and left as it was.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

pub fn reset() -> Result<Reset> {
    system::require_attach_privileges("lwt reset")?;
    let bpffs = system::ensure_bpffs()?;
    let (dir, pins) = NetnsState::paths(&bpffs)?;
    let mut done = Reset::default();
    if !dir.exists() && !pins.exists() {
        return Ok(done);
    }
    let mut failures = Vec::new();
    fn note(failures: &mut Vec<String>, what: String, r: Result<()>) {
        if let Err(e) = r {
            failures.push(format!("{what}: {e}"));
        }
    }
    for t in encap::tunnels()? {
        note(
            &mut failures,
            format!("tunnel {}", t.dst),
            encap::del(t.dst, Some(t.table)).map(|_| done.tunnels += 1),
        );
    }
    for s in seg6local::list()? {
        note(
            &mut failures,
            format!("SID {}", s.record.sid),
            seg6local::del(s.record.sid, Some(s.record.table)).map(|_| done.sids += 1),
        );
    }
    for d in decap::list()? {
        note(
            &mut failures,
            format!("decap on {}", d.dev),
            decap::del(&d.dev).map(|_| done.decaps += 1),
        );
    }
    {
        let ns = Namespace::open()?;
        let txn = ns.begin("lwt reset")?;
        let mut rtnl = Rtnl::open()?;
        for r in txn.all::<RouteRecord>()? {
            let req = DetachRequest {
                owner: None,
                ..DetachRequest::new(r.dst, Some(r.table), r.local)
            };
            match attach::detach_in(&txn, &mut rtnl, &req) {
                Ok(d) => {
                    done.routes += 1;
                    if d.route_now == "gone" {
                        done.notes
                            .push(format!("route {}: gone already; records dropped", d.route));
                    }
                }
                // A route changed outside lwtkit is left as it is; its records are gone.
                Err(e @ Error::Drift { .. }) => done.notes.push(e.to_string()),
                Err(e) => failures.push(format!("route {}: {e}", r.dst)),
            }
        }
        let state = NetnsState::view(&txn);
        let policies = Policies::new(&state);
        for p in policies.all()? {
            note(
                &mut failures,
                format!("policy {}", p.name),
                policies.delete(&p.name).map(|_| done.policies += 1),
            );
        }
    }
    if !failures.is_empty() {
        return Err(Error::Invalid(format!(
            "lwt reset left some things in place:\n  {}",
            failures.join("\n  ")
        )));
    }
    for d in [&pins, &dir] {
        fs::remove_dir_all(d).map_err(|e| Error::State {
            path: d.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    // The roots go too once no namespace uses them.
    for root in [pins.parent(), dir.parent()].into_iter().flatten() {
        let _ = fs::remove_dir(root);
    }
    Ok(done)
}
