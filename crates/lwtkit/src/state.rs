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

use crate::{error::Result, hook::Hook, system};

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
}

impl RouteRecord {
    /// Key of a route, safe as a file name and as a bpffs name (bpffs
    /// refuses names with dots): table and prefix.
    pub fn key(dst: &ipnet::IpNet, table: u32) -> String {
        format!("{table}_{}", dst.to_string().replace(['/', ':', '.'], "_"))
    }
}

impl crate::ns::Record for RouteRecord {
    const DIR: &'static str = "routes";
    fn key(&self) -> String {
        RouteRecord::key(&self.dst, self.table)
    }
}

/// The state of one network namespace, locked while held: the older
/// interface of the stores not yet moved onto [`crate::ns::Txn`].
pub struct NetnsState {
    dir: PathBuf,
    pin_dir: PathBuf,
    _lock: Option<crate::ns::lock::Held>,
}

impl NetnsState {
    /// The current namespace's state and pin directories, without opening
    /// or locking anything.
    pub fn paths(bpffs: &Path) -> Result<(PathBuf, PathBuf)> {
        let cookie = system::netns_cookie()?;
        Ok((
            Path::new(STATE_ROOT).join(format!("ns-{cookie}")),
            bpffs.join(PIN_DIR).join(format!("ns-{cookie}")),
        ))
    }

    /// Opens (creating) the current namespace's state and takes its lock.
    pub fn open(bpffs: &Path) -> Result<Self> {
        let (dir, pin_dir) = Self::paths(bpffs)?;
        crate::ns::store::ensure_dir(&dir)?;
        crate::ns::store::ensure_dir(&pin_dir)?;
        let lock = crate::ns::lock::acquire(&dir, "lwt", crate::ns::lock::timeout())?;
        Ok(Self {
            dir,
            pin_dir,
            _lock: Some(lock),
        })
    }

    /// Opens the state only if it exists, without a lock (readers).
    pub fn open_existing(bpffs: &Path) -> Result<Option<Self>> {
        let (dir, pin_dir) = Self::paths(bpffs)?;
        if !dir.exists() {
            return Ok(None);
        }
        Ok(Some(Self {
            dir,
            pin_dir,
            _lock: None,
        }))
    }

    /// A view of `ns` for the older stores: writes through it are only safe
    /// while the caller holds the namespace's transaction.
    pub fn view(ns: &crate::ns::Namespace) -> Self {
        Self {
            dir: ns.dir().to_path_buf(),
            pin_dir: ns.pin_root().to_path_buf(),
            _lock: None,
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
