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
    fs::{self, File},
    path::{Path, PathBuf},
};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::{
    error::{Error, Result},
    hook::Hook,
    system,
};

pub const STATE_ROOT: &str = "/run/lwtkit";
pub const PIN_DIR: &str = "lwtkit";

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
}

impl RouteRecord {
    /// Key of a route, safe as a file name and as a bpffs name (bpffs
    /// refuses names with dots): table and prefix.
    pub fn key(dst: &ipnet::IpNet, table: u32) -> String {
        format!("{table}_{}", dst.to_string().replace(['/', ':', '.'], "_"))
    }
}

/// The state of one network namespace, locked while held.
pub struct NetnsState {
    dir: PathBuf,
    pin_dir: PathBuf,
    _lock: Flock<File>,
}

#[derive(Serialize, Deserialize)]
struct NetnsInfo {
    inode: u64,
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
        let cookie = system::netns_cookie()?;
        let dir = Path::new(STATE_ROOT).join(format!("ns-{cookie}"));
        let pin_dir = bpffs.join(PIN_DIR).join(format!("ns-{cookie}"));
        for d in [dir.join("routes"), pin_dir.clone()] {
            fs::create_dir_all(&d).map_err(|e| state_err(&d, e))?;
        }
        let lock_path = dir.join("lock");
        let file = File::create(&lock_path).map_err(|e| state_err(&lock_path, e))?;
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| state_err(&lock_path, std::io::Error::from_raw_os_error(e as i32)))?;
        let info = NetnsInfo {
            inode: system::netns_inode()?,
        };
        write_json(&dir.join("netns.json"), &info)?;
        Ok(Self {
            dir,
            pin_dir,
            _lock: lock,
        })
    }

    /// Opens the state only if it exists (read-only verbs: list, stats).
    /// Read-only verbs (list, stats, events) take a shared lock and write
    /// nothing.
    pub fn open_existing(bpffs: &Path) -> Result<Option<Self>> {
        let (dir, pin_dir) = Self::paths(bpffs)?;
        let lock_path = dir.join("lock");
        let Ok(file) = File::open(&lock_path) else {
            return Ok(None);
        };
        let lock = Flock::lock(file, FlockArg::LockShared)
            .map_err(|(_, e)| state_err(&lock_path, std::io::Error::from_raw_os_error(e as i32)))?;
        Ok(Some(Self {
            dir,
            pin_dir,
            _lock: lock,
        }))
    }

    pub fn load(&self, key: &str) -> Result<Option<RouteRecord>> {
        let path = self.record_path(key);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::State {
                    path,
                    reason: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(state_err(&path, e)),
        }
    }

    pub fn save(&self, key: &str, record: &RouteRecord) -> Result<()> {
        write_json(&self.record_path(key), record)
    }

    pub fn remove(&self, key: &str) -> Result<()> {
        let path = self.record_path(key);
        fs::remove_file(&path).map_err(|e| state_err(&path, e))?;
        let _ = fs::remove_dir_all(self.pin_dir.join(key));
        Ok(())
    }

    pub fn records(&self) -> Result<Vec<RouteRecord>> {
        let dir = self.dir.join("routes");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir)
            .map_err(|e| state_err(&dir, e))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(key) = name.strip_suffix(".json") {
                if let Some(r) = self.load(key)? {
                    out.push(r);
                }
            }
        }
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

    /// Directory for one route's hook pins (not created).
    pub fn pin_dir(&self, key: &str, hook: Hook) -> PathBuf {
        self.pin_dir.join(key).join(hook.as_str())
    }

    /// A fresh, empty directory beside a hook's pins where the pins of its
    /// next program wait until the route accepted it.
    pub fn staging_dir(&self, key: &str, hook: Hook) -> Result<PathBuf> {
        let d = self
            .pin_dir
            .join(key)
            .join(format!("{}_next", hook.as_str()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).map_err(|e| state_err(&d, e))?;
        Ok(d)
    }

    fn record_path(&self, key: &str) -> PathBuf {
        self.dir.join("routes").join(format!("{key}.json"))
    }
}

/// Removes the state and pins of network namespaces that no longer exist
/// (their routes died with them, so their programs are only held by pins).
pub fn collect_garbage(bpffs: &Path) {
    let live = system::live_netns_inodes();
    let Ok(entries) = fs::read_dir(STATE_ROOT) else {
        return;
    };
    for e in entries.flatten() {
        let dir = e.path();
        let inode = fs::read(dir.join("netns.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<NetnsInfo>(&b).ok())
            .map(|i| i.inode);
        if matches!(inode, Some(ino) if !live.contains(&ino)) {
            tracing::debug!(dir = %dir.display(), "removing state of a vanished network namespace");
            let _ = fs::remove_dir_all(bpffs.join(PIN_DIR).join(e.file_name()));
            let _ = fs::remove_dir_all(&dir);
        }
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::State {
        path: path.into(),
        reason: e.to_string(),
    })?;
    fs::write(&tmp, bytes).map_err(|e| state_err(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| state_err(path, e))
}

fn state_err(path: &Path, e: std::io::Error) -> Error {
    Error::State {
        path: path.into(),
        reason: e.to_string(),
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
