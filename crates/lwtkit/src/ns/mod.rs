//! The namespace transaction layer: the one way lwtkit changes anything.
//!
//! - [`Namespace::open`] names the current network namespace by its cookie
//!   (never reused in a boot), makes sure bpffs is there (and refuses the
//!   private /sys of `ip netns exec`), and collects what dead namespaces
//!   left behind.
//! - [`Namespace::begin`] takes the namespace's lock (bounded wait), finishes
//!   intents a killed command left behind, and hands out a [`Txn`]. Only a
//!   `Txn` writes records, intents and pin bookkeeping, so a change without
//!   the lock cannot be written.
//! - Readers use the `Namespace` itself: no lock, each record is replaced
//!   atomically, so every read sees a whole record.
//!
//! Layout (records on tmpfs, pins on bpffs, both keyed by the cookie):
//! ```text
//! /run/lwtkit/ns-<cookie>/{lock,holder.json}   the lock and who holds it
//! /run/lwtkit/ns-<cookie>/intents/*.json       changes in flight
//! /run/lwtkit/ns-<cookie>/<kind>/<key>.json    records (routes, filters, encap, decap, seg6local)
//! /sys/fs/bpf/lwtkit/ns-<cookie>/...           pins
//! ```
mod error;
pub mod gc;
pub mod intent;
pub mod lock;
pub mod pins;
pub mod store;
pub mod watch;

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

pub use error::StateError;
pub use intent::{Intent, Outcome, Probe, Step};
pub use store::Record;

use crate::{
    error::{Result, SystemError},
    route::netlink::Rtnl,
    system,
};

/// Where records live (tmpfs: emptied at reboot, as routes are).
pub const STATE_ROOT: &str = "/run/lwtkit";
/// lwtkit's directory on bpffs.
pub const PIN_DIR: &str = lwtkit_common::pins::ROOT;

/// Which records own which pin directories: a record `<kind>/KEY.json`
/// owns the pins `<sub>/KEY/` (routes own directories at the top).
const OWNED_PINS: [(&str, &str, pins::Parent); 4] = [
    ("routes", "", pins::Parent::Root),
    ("seg6local", "seg6local", pins::Parent::Seg6local),
    ("decap", "decap", pins::Parent::Decap),
    ("filters", "filters", pins::Parent::Filters),
];

/// The current network namespace, as lwtkit keeps it.
pub struct Namespace {
    cookie: u64,
    dir: PathBuf,
    pins: PathBuf,
}

impl Namespace {
    /// Opens the namespace for a command that changes it: bpffs mounted
    /// (mounting it if needed), dead namespaces' leftovers collected.
    pub fn open() -> Result<Self> {
        if let Some(name) = system::private_sys_of_ip_netns_exec() {
            return Err(SystemError::PrivateSys { name }.into());
        }
        let bpffs = system::ensure_bpffs()?;
        let root = Path::new(STATE_ROOT);
        store::ensure_private_dir(root)?;
        // The pin root is made by the first change that pins (`begin`);
        // one an older lwtkit made world-readable is closed here.
        if bpffs.join(PIN_DIR).exists() {
            store::ensure_private_dir(&bpffs.join(PIN_DIR))?;
        }
        gc::collect(root, &bpffs.join(PIN_DIR));
        Self::at(&bpffs)
    }

    /// Opens the namespace for reading: nothing is created or mounted.
    pub fn open_readonly() -> Result<Self> {
        if let Some(name) = system::private_sys_of_ip_netns_exec() {
            return Err(SystemError::PrivateSys { name }.into());
        }
        Self::at(Path::new(system::BPFFS))
    }

    fn at(bpffs: &Path) -> Result<Self> {
        let cookie = system::netns_cookie()?;
        Ok(Self {
            cookie,
            dir: Path::new(STATE_ROOT).join(format!("ns-{cookie}")),
            pins: bpffs.join(PIN_DIR).join(format!("ns-{cookie}")),
        })
    }

    pub fn cookie(&self) -> u64 {
        self.cookie
    }

    /// The namespace's record directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The namespace's pin directory on bpffs.
    pub fn pin_root(&self) -> &Path {
        &self.pins
    }

    /// Removes lwtkit's directories on bpffs and tmpfs that hold nothing
    /// any more (no namespace uses them), so bpffs keeps nothing of lwtkit.
    pub fn remove_empty_roots(&self) {
        for root in [self.pins.parent(), self.dir.parent()]
            .into_iter()
            .flatten()
        {
            let _ = std::fs::remove_dir(root);
        }
    }

    /// Whether lwtkit keeps anything here.
    pub fn exists(&self) -> bool {
        self.dir.exists() || self.pins.exists()
    }

    /// Whether this process may read lwtkit's records (root only: they
    /// live in 0700 directories).
    pub fn readable(&self) -> bool {
        match std::fs::read_dir(STATE_ROOT) {
            Ok(_) => true,
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        }
    }

    fn record_path<T: Record>(&self, key: &str) -> PathBuf {
        self.dir.join(T::DIR).join(format!("{key}.json"))
    }

    /// One record, if it exists.
    pub fn get<T: Record>(&self, key: &str) -> Result<Option<T>> {
        store::read_json(&self.record_path::<T>(key))
    }

    /// Every record of a kind.
    pub fn all<T: Record>(&self) -> Result<Vec<T>> {
        store::read_all(&self.dir.join(T::DIR))
    }

    /// Takes the lock for `verb` and finishes what killed commands left.
    pub fn begin(&self, verb: &str) -> Result<Txn<'_>> {
        let txn = self.begin_unswept(verb)?;
        txn.sweep();
        Ok(txn)
    }

    /// [`Namespace::begin`] without removing leftover pins, for `lwt check`,
    /// which reports them as it finds them.
    pub fn begin_unswept(&self, verb: &str) -> Result<Txn<'_>> {
        store::ensure_private_dir(&self.dir)?;
        store::ensure_private_dir(&self.pins)?;
        let held = lock::acquire(&self.dir, verb, lock::timeout())?;
        let txn = Txn {
            ns: self,
            _held: held,
            seq: AtomicU32::new(0),
        };
        txn.recover()?;
        Ok(txn)
    }
}

/// A change in progress: the namespace, locked.
pub struct Txn<'a> {
    ns: &'a Namespace,
    _held: lock::Held,
    seq: AtomicU32,
}

impl std::ops::Deref for Txn<'_> {
    type Target = Namespace;
    fn deref(&self) -> &Namespace {
        self.ns
    }
}

/// An intent written and not yet finished.
#[must_use = "finish the intent once the kernel change is done or failed"]
pub struct Pending {
    path: PathBuf,
    intent: Intent,
}

impl Txn<'_> {
    /// Writes a record.
    pub fn put<T: Record>(&self, record: &T) -> Result<()> {
        store::write_json(&self.record_path::<T>(&record.key()), record)
    }

    /// Removes a record (a missing one is fine).
    pub fn remove<T: Record>(&self, key: &str) -> Result<()> {
        store::remove_file(&self.record_path::<T>(key))
    }

    /// The step that writes `record`, for an intent.
    pub fn put_step<T: Record>(&self, record: &T) -> Result<Step> {
        let path = self.record_path::<T>(&record.key());
        let json = serde_json::to_string_pretty(record).map_err(|e| store::state_err(&path, e))?;
        Ok(Step::Put { path, json })
    }

    /// The step that removes record `key`, for an intent.
    pub fn remove_step<T: Record>(&self, key: &str) -> Step {
        Step::Remove {
            path: self.record_path::<T>(key),
        }
    }

    /// Records `intent` durably before the kernel change it announces.
    pub fn intend(&self, intent: Intent) -> Result<Pending> {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join("intents").join(format!(
            "{:020}-{}-{n}.json",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
            std::process::id()
        ));
        store::write_json(&path, &intent)?;
        Ok(Pending { path, intent })
    }

    /// Replaces a pending intent with `intent`, atomically (the file is
    /// renamed over): a change that learns what it will do only after its
    /// first steps (a staged program's id) announces it before the kernel
    /// sees it.
    pub fn amend(&self, pending: &mut Pending, intent: Intent) -> Result<()> {
        store::write_json(&pending.path, &intent)?;
        pending.intent = intent;
        Ok(())
    }

    /// Applies the bookkeeping of `outcome` and forgets the intent.
    pub fn finish(&self, pending: Pending, outcome: Outcome) -> Result<()> {
        let steps = match outcome {
            Outcome::Done => &pending.intent.done,
            Outcome::Undone => &pending.intent.undone,
        };
        intent::apply(steps)?;
        store::remove_file(&pending.path)
    }

    /// Forgets an intent whose bookkeeping the caller did itself.
    pub fn discard(&self, pending: Pending) -> Result<()> {
        store::remove_file(&pending.path)
    }

    /// Finishes every intent left by a command that died, by what the
    /// kernel shows now, and ends watched routes whose address is gone.
    fn recover(&self) -> Result<()> {
        self.finish_intents()?;
        if self.dir.join(<watch::Watch as Record>::DIR).exists() {
            watch::reap(self, &mut Rtnl::open()?)?;
        }
        Ok(())
    }

    /// Pins are lwtkit's only while a record names them. Once every intent
    /// is finished (and under the lock, so nothing is in flight), staging
    /// directories and pin directories without their record are leftovers:
    /// of a kill before intents existed, of an older lwtkit, of a record
    /// removed by hand. Removing a leftover tcx link pin detaches that
    /// decapsulator, which no record would let anyone remove otherwise.
    fn sweep(&self) {
        for (kind, sub, parent) in OWNED_PINS {
            let Ok(entries) = std::fs::read_dir(self.pins.join(sub)) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if parent == pins::Parent::Root && !e.path().is_dir() {
                    continue;
                }
                let leftover = match pins::classify(parent, &name) {
                    pins::PinEntry::Shared => continue,
                    pins::PinEntry::Staging => true,
                    pins::PinEntry::Owned => {
                        !self.dir.join(kind).join(format!("{name}.json")).exists()
                    }
                };
                if leftover {
                    tracing::info!(pins = %e.path().display(), "removing pins no record names");
                    let _ = store::remove_tree(&e.path());
                } else if parent == pins::Parent::Root {
                    // A route's hooks stage as `<hook>_next` beside `<hook>`.
                    for i in std::fs::read_dir(e.path()).into_iter().flatten().flatten() {
                        let hook = i.file_name().to_string_lossy().into_owned();
                        if pins::classify(pins::Parent::Route, &hook) == pins::PinEntry::Staging {
                            let _ = store::remove_tree(&i.path());
                        }
                    }
                }
            }
        }
    }

    fn finish_intents(&self) -> Result<()> {
        let pending = intent::pending(&self.dir.join("intents"))?;
        if pending.is_empty() {
            return Ok(());
        }
        let mut rtnl = Rtnl::open()?;
        for (path, i) in pending {
            let outcome = intent::observe(&i.probe, &mut rtnl)?;
            tracing::info!(verb = %i.verb, pid = i.pid, ?outcome, "finishing an interrupted change");
            self.finish(Pending { path, intent: i }, outcome)?;
        }
        // A command killed right after a flip: its packets may still walk
        // what is now the idle generation, which this command may write.
        intent::wait_for_readers();
        Ok(())
    }
}

/// Kills this process where `LWT_FAILPOINT` names `point`: fault injection
/// for the crash tests (SIGKILL, as `kill -9` would, so nothing unwinds).
pub fn failpoint(point: &str) {
    if std::env::var("LWT_FAILPOINT").is_ok_and(|p| p == point) {
        // SAFETY: kill(2) on our own pid.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
