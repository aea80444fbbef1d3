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
    seg6local,
    state::NetnsState,
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
    let mut note = |what: String, r: Result<()>| {
        if let Err(e) = r {
            failures.push(format!("{what}: {e}"));
        }
    };
    for t in encap::tunnels()? {
        note(
            format!("tunnel {}", t.dst),
            encap::del(t.dst, Some(t.table)).map(|_| done.tunnels += 1),
        );
    }
    for s in seg6local::list()? {
        note(
            format!("SID {}", s.record.sid),
            seg6local::del(s.record.sid, Some(s.record.table)).map(|_| done.sids += 1),
        );
    }
    for d in decap::list()? {
        note(
            format!("decap on {}", d.dev),
            decap::del(&d.dev).map(|_| done.decaps += 1),
        );
    }
    // Read under the shared lock, then let detach take the exclusive one.
    let routes = NetnsState::open_existing(&bpffs)?
        .map(|s| s.records())
        .transpose()?
        .unwrap_or_default();
    for r in routes {
        let req = DetachRequest {
            dst: r.dst,
            dev: None,
            hook: None,
            table: Some(r.table),
            local: r.local,
        };
        note(
            format!("route {}", r.dst),
            attach::detach(&req).map(|_| done.routes += 1),
        );
    }
    if let Some(state) = NetnsState::open_existing(&bpffs)? {
        let policies = Policies::new(&state);
        for p in policies.all()? {
            note(
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
