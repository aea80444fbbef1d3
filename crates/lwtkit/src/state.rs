//! What lwtkit remembers about the routes it manages, per network
//! namespace: the route as it was before the first attach (to restore it
//! on detach), and each attached hook's program pin.
//!
//! Records live on tmpfs under /run/lwtkit and pins under
//! /sys/fs/bpf/lwtkit, both keyed by the namespace's cookie (never reused),
//! so both vanish together at reboot. A lock file serialises lwt commands
//! on one namespace.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{error::Result, hook::Hook};

pub use crate::ns::{PIN_DIR, STATE_ROOT};

/// Where a hook's program came from, as `lwt list` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Origin {
    Object { path: PathBuf, section: String },
    Pinned { path: PathBuf },
    Builtin { name: String },
    Filter { policy: String },
    Encap { tunnel: String },
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Object { path, section } => {
                write!(f, "object {} section {section}", path.display())
            }
            Origin::Pinned { path } => write!(f, "pinned {}", path.display()),
            Origin::Builtin { name } => write!(f, "builtin {name}"),
            Origin::Filter { policy } => write!(f, "filter policy {policy}"),
            Origin::Encap { tunnel } => write!(f, "encap {tunnel}"),
        }
    }
}

/// Who owns a hook: the feature that put it there, and the only one that
/// takes it off or replaces it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// `lwt attach` (objects, pins, built-ins).
    Attach,
    /// `lwt filter attach` of this policy.
    Filter(String),
    /// `lwt encap add`.
    Encap,
}

impl Origin {
    pub fn owner(&self) -> Owner {
        match self {
            Origin::Object { .. } | Origin::Pinned { .. } | Origin::Builtin { .. } => Owner::Attach,
            Origin::Filter { policy } => Owner::Filter(policy.clone()),
            Origin::Encap { .. } => Owner::Encap,
        }
    }
}

impl Owner {
    /// The command that removes this owner's hook from `route` (`dst` and table flags).
    pub fn remover(&self, route: &str, hook: Hook) -> String {
        match self {
            Owner::Attach => format!("lwt detach {route} --hook {hook}"),
            Owner::Filter(p) => format!("lwt filter detach {p} {route}"),
            Owner::Encap => format!("lwt encap del {route}"),
        }
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Owner::Attach => write!(f, "`lwt attach`"),
            Owner::Filter(p) => write!(f, "filter policy `{p}`"),
            Owner::Encap => write!(f, "an `lwt encap` tunnel"),
        }
    }
}

/// One hook lwtkit attached to a route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookRecord {
    /// The name the route carries (`drop.o:[lwt_out]`).
    pub name: String,
    /// bpffs pin of the program, re-sent when the route is replaced.
    pub pin: PathBuf,
    /// bpffs pin of the per-CPU counters map, for built-ins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counters: Option<PathBuf>,
    pub origin: Origin,
    /// SHA-256 (hex) of the object file the program was loaded from, read
    /// before it was opened: `lwt apply` tells a file rebuilt at the same
    /// path by it. `None` for built-ins, pins and records older than it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_sha256: Option<String>,
}

/// One route lwtkit manages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRecord {
    pub dst: ipnet::IpNet,
    pub table: u32,
    pub local: bool,
    pub dev: String,
    /// The route before lwtkit's first attach, as a netlink RTM_NEWROUTE
    /// message (hex), or `None` when lwtkit created the route.
    pub original: Option<String>,
    pub headroom: Option<u32>,
    pub hooks: BTreeMap<Hook, HookRecord>,
    /// The hook whose owner lowered the route's MTU (a tunnel), so that
    /// only that owner's removal puts the MTU back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu_hook: Option<Hook>,
    /// The route is lwtkit's stand-in for the kernel's IPv6 local route
    /// (metric 0), which it removed: the kernel will not remove this one
    /// when the address goes, so a watch does ([`crate::ns::watch`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stand_in: bool,
}

impl RouteRecord {
    /// Key of a route, safe as a file name and as a bpffs name (bpffs
    /// refuses names with dots): table and prefix.
    pub fn key(dst: &ipnet::IpNet, table: u32) -> String {
        crate::route::ops::RouteKey { dst: *dst, table }.record_key()
    }
}

impl crate::ns::Record for RouteRecord {
    const DIR: &'static str = "routes";
    fn key(&self) -> String {
        RouteRecord::key(&self.dst, self.table)
    }
}

/// A namespace's records and pins as the filter store reads them: a view
/// of a [`crate::ns::Namespace`]. Writing goes through a [`crate::ns::Txn`].
pub struct NetnsState {
    dir: PathBuf,
    pin_dir: PathBuf,
}

impl NetnsState {
    /// The current namespace's state if lwtkit keeps any (readers: no lock).
    pub fn open_existing(_bpffs: &Path) -> Result<Option<Self>> {
        let ns = crate::ns::Namespace::open_readonly()?;
        Ok(ns.dir().exists().then(|| Self::view(&ns)))
    }

    /// A view of `ns` for the older stores: writes through it are only safe
    /// while the caller holds the namespace's transaction.
    pub fn view(ns: &crate::ns::Namespace) -> Self {
        Self {
            dir: ns.dir().to_path_buf(),
            pin_dir: ns.pin_root().to_path_buf(),
        }
    }

    pub fn load(&self, key: &str) -> Result<Option<RouteRecord>> {
        crate::ns::store::read_json(&self.record_path(key))
    }

    pub fn records(&self) -> Result<Vec<RouteRecord>> {
        let mut out: Vec<RouteRecord> = crate::ns::store::read_all(&self.dir.join("routes"))?;
        out.sort_by_key(|r| (r.table, r.dst.to_string()));
        Ok(out)
    }

    /// This namespace's state directory (records).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// This namespace's bpffs directory (pins).
    pub fn pin_root(&self) -> &Path {
        &self.pin_dir
    }

    fn record_path(&self, key: &str) -> PathBuf {
        self.dir.join("routes").join(format!("{key}.json"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_keys_are_file_names() {
        let v4: ipnet::IpNet = "10.0.0.3/32".parse().expect("valid");
        let v6: ipnet::IpNet = "fc00::/64".parse().expect("valid");
        assert_eq!(RouteRecord::key(&v4, 254), "254_10_0_0_3_32");
        assert_eq!(RouteRecord::key(&v6, 255), "255_fc00___64");
    }
}
