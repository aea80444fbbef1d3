//! `lwt reset`: takes off everything lwtkit put in the current network
//! namespace — tunnels, SIDs, decapsulators, hooks (their routes restored or
//! removed), filter policies — and removes its records and pins. Run it
//! before deleting a namespace: the kernel drops the routes with the
//! namespace, but bpffs pins outlive it.

use serde::Serialize;

use crate::{
    attach::{self, DetachRequest},
    encap::{self, decap, TunnelRecord},
    error::{AttachError, Error, Result},
    filter::store::Policies,
    ns::{watch::Watch, Namespace},
    route::netlink::Rtnl,
    seg6local::{self, SidRecord},
    state::{NetnsState, RouteRecord},
    system,
};

/// Why a reset did not finish.
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    /// What could not be taken off, each with why.
    #[error("lwt reset left some things in place:\n  {}", .0.join("\n  "))]
    Incomplete(Vec<String>),
}

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
    let ns = Namespace::open()?;
    let mut done = Reset::default();
    if !ns.exists() {
        ns.remove_empty_roots();
        return Ok(done);
    }
    let mut failures = Vec::new();
    {
        let txn = ns.begin("lwt reset")?;
        let mut rtnl = Rtnl::open()?;
        // Something changed outside lwtkit is left as it is (its records go,
        // a note says so); anything else that fails keeps the reset from
        // finishing.
        let mut tally = |what: String, r: Result<()>, count: &mut usize| match r {
            Ok(()) => *count += 1,
            Err(e @ Error::Attach(AttachError::Drift { .. })) => {
                done.notes.push(format!("{what}: {e}"))
            }
            Err(e) => failures.push(format!("{what}: {e}")),
        };
        let mut counts = [0usize; 5];
        for t in txn.all::<TunnelRecord>()? {
            let r = encap::del_in(&txn, &mut rtnl, t.dst, Some(t.table)).map(|_| ());
            tally(format!("tunnel {}", t.dst), r, &mut counts[0]);
        }
        for s in txn.all::<SidRecord>()? {
            let r = seg6local::del_in(&txn, &mut rtnl, s.sid, Some(s.table)).map(|_| ());
            tally(format!("SID {}", s.sid), r, &mut counts[1]);
        }
        for d in txn.all::<decap::DecapRecord>()? {
            let r = decap::del_in(&txn, &d.dev);
            tally(format!("decap on {}", d.dev), r, &mut counts[2]);
        }
        for r in txn.all::<RouteRecord>()? {
            let req = DetachRequest {
                owner: None,
                ..DetachRequest::new(r.dst, Some(r.table), r.local)
            };
            let res = attach::detach_in(&txn, &mut rtnl, &req).map(|_| ());
            tally(format!("route {}", r.dst), res, &mut counts[3]);
        }
        let state = NetnsState::view(&txn);
        let policies = Policies::new(&state);
        for p in policies.all()? {
            let r = policies.delete(&txn, &p.name);
            tally(format!("policy {}", p.name), r, &mut counts[4]);
        }
        [
            done.tunnels,
            done.sids,
            done.decaps,
            done.routes,
            done.policies,
        ] = counts;
        if !failures.is_empty() {
            return Err(ResetError::Incomplete(failures).into());
        }
        // Still under the lock: nothing of lwtkit's is left here but the
        // watches of stand-in local routes, which must go with their address.
        crate::ns::store::remove_tree(ns.pin_root())?;
        if txn.all::<Watch>()?.is_empty() {
            crate::ns::store::remove_tree(ns.dir())?;
        } else {
            for e in std::fs::read_dir(ns.dir()).into_iter().flatten().flatten() {
                let name = e.file_name();
                if ![<Watch as crate::ns::Record>::DIR, "lock", "holder.json"]
                    .iter()
                    .any(|k| name == *k)
                {
                    let p = e.path();
                    if p.is_dir() {
                        crate::ns::store::remove_tree(&p)?;
                    } else {
                        crate::ns::store::remove_file(&p)?;
                    }
                }
            }
        }
    }
    ns.remove_empty_roots();
    Ok(done)
}
