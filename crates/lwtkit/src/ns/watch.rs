//! Watches: routes lwtkit made that the kernel will not remove for it.
//!
//! The kernel removes the `local` route of an IPv6 address it made itself
//! when the address goes (`addrconf` deletes `ifp->rt`). lwtkit cannot
//! replace that route in place (metric 0 becomes 1024 on any add), so for an
//! `in` hook it adds its own (metric 1) and then removes the kernel's; the
//! kernel will never remove lwtkit's. A watch records that duty: every
//! command that begins a transaction checks each watched address and, once
//! it has left its device, deletes lwtkit's route (if it is still the one
//! lwtkit made) and lwtkit's records of it, and says so.
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{intent, Record, Step, Txn};
use crate::{
    error::Result,
    route::{
        kernel::{delete_if_ours, Deleted, Marks},
        link,
        netlink::Rtnl,
        ops::RouteKey,
    },
};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watch {
    /// The address whose removal ends the route.
    pub addr: IpAddr,
    pub ifindex: u32,
    pub dst: IpNet,
    pub table: u32,
    /// What the route carries while it is lwtkit's, and its metric: a route
    /// of other programs or another metric is not lwtkit's to delete.
    pub marks: Marks,
    pub metric: u32,
    /// lwtkit's bookkeeping to drop once the route is gone.
    pub forget: Vec<Step>,
}

impl Record for Watch {
    const DIR: &'static str = "watches";
    fn key(&self) -> String {
        RouteKey {
            dst: self.dst,
            table: self.table,
        }
        .record_key()
    }
}

/// Ends every watched route whose address is gone; returns what it did.
pub fn reap(txn: &Txn, rtnl: &mut Rtnl) -> Result<Vec<String>> {
    let mut done = Vec::new();
    for w in txn.all::<Watch>()? {
        if link::has_address(rtnl, w.ifindex, w.addr)? {
            continue;
        }
        let key = RouteKey {
            dst: w.dst,
            table: w.table,
        };
        // Exactly lwtkit's route: its metric, its device, its programs. A
        // kernel route of metric 0 for the same address (on another device)
        // would win a plain lookup and hide it.
        let found = delete_if_ours(rtnl, &key, Some(w.ifindex), w.metric, &w.marks)?;
        intent::apply(&w.forget)?;
        txn.remove::<Watch>(&w.key())?;
        let what = match found {
            Deleted::Ours => format!(
                "address {} is gone from its device, so lwtkit removed its local route {key} (the kernel removes only the local routes it made)",
                w.addr
            ),
            Deleted::Gone => format!(
                "address {} is gone from its device and so is lwtkit's local route {key}; lwtkit dropped its records",
                w.addr
            ),
            Deleted::NotOurs(other) => format!(
                "address {} is gone from its device; the local route {key} of metric {} carries {} now, not lwtkit's programs, so lwtkit left it and dropped its records",
                w.addr,
                w.metric,
                if other.is_empty() {
                    "no program".to_string()
                } else {
                    other.into_values().collect::<Vec<_>>().join(", ")
                }
            ),
        };
        tracing::warn!("{what}");
        done.push(what);
    }
    Ok(done)
}
