//! Declarative config: one TOML file states what lwtkit should hold in a
//! namespace (`lwt export`, `lwt apply -f`, `lwt diff -f`).
//!
//! - [`file`]: the file as written (serde, unknown keys refused);
//! - [`desired`]: the file checked against the namespace, as each verb
//!   checks its flags (a bad file changes nothing);
//! - [`current`]: lwtkit's records, read back against the kernel;
//! - [`plan`]: desired and current in, changes out, in a safe order (pure);
//! - [`apply`]: each change through the library's own operation, in one
//!   transaction;
//! - [`export`]: the current state as a file.
pub mod apply;
pub mod current;
pub mod desired;
pub mod export;
pub mod file;
pub mod plan;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use file::ConfigFile;
pub use plan::{Action, Change, Plan};

use crate::{
    error::{Error, Result},
    ns::Namespace,
    route::netlink::Rtnl,
    system,
};

/// What is wrong with a config file, or which change of an apply failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("line {line}{}: {reason}", entry.as_ref().map(|e| format!(", {e}")).unwrap_or_default())]
    Syntax {
        line: usize,
        entry: Option<String>,
        reason: String,
    },
    /// An entry the namespace or the verb's own checks refuse.
    #[error("{entry}: {error}")]
    Entry { entry: String, error: Box<Error> },
    /// A difference no library operation can make.
    #[error("{0}")]
    Unplannable(String),
    /// A change of the plan failed; those before it are done.
    #[error("{action} {object} failed after {done} change(s) were made: {error} (the changes made stay; apply again once the cause is fixed)")]
    Change {
        action: Action,
        object: String,
        done: usize,
        error: Box<Error>,
    },
}

impl ConfigError {
    pub(crate) fn entry(entry: String, error: Error) -> Self {
        ConfigError::Entry {
            entry,
            error: Box::new(error),
        }
    }
}

/// A config file read and checked against the current namespace.
pub struct Loaded {
    pub file: ConfigFile,
    pub desired: plan::Desired,
}

/// Reads and checks the file at `path` (relative object and pin paths are
/// read from its directory).
pub fn load(path: &Path) -> Result<Loaded> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.into(),
        reason: e.to_string(),
    })?;
    load_text(path, &text)
}

/// Checks `text` as the contents of the file at `path` (`lwt agent` keeps
/// the last good text, so a bad edit never replaces it).
pub fn load_text(path: &Path, text: &str) -> Result<Loaded> {
    let file = ConfigFile::parse(text).map_err(|e| match e {
        ConfigError::Syntax { .. } => ConfigError::Read {
            path: path.into(),
            reason: e.to_string(),
        },
        other => other,
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let base = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let desired = desired::desired(&file, &base, &mut Rtnl::open()?).map_err(|e| match e {
        ConfigError::Entry { entry, error } => ConfigError::Read {
            path: path.into(),
            reason: format!("{entry}: {error}"),
        },
        other => other,
    })?;
    Ok(Loaded { file, desired })
}

fn plan_of(loaded: &Loaded, ns: &Namespace, prune: bool) -> Result<Plan> {
    let current = current::current(ns, &mut Rtnl::open()?)?;
    plan::plan(&loaded.desired, &current, prune)
        .map_err(|e| Error::from(ConfigError::Unplannable(e.0)))
}

/// `lwt diff -f FILE`: what `apply` would change (no lock, nothing changed).
pub fn diff(path: &Path, prune: bool) -> Result<Plan> {
    system::require_attach_privileges("lwt diff")?;
    diff_loaded(&load(path)?, prune)
}

/// What applying `loaded` would change (no lock, nothing changed).
pub fn diff_loaded(loaded: &Loaded, prune: bool) -> Result<Plan> {
    plan_of(loaded, &Namespace::open_readonly()?, prune)
}

/// What an apply did.
#[derive(Clone, Debug, Serialize)]
pub struct Applied {
    /// `false` with `--check`: the plan was only printed.
    pub applied: bool,
    #[serde(flatten)]
    pub plan: Plan,
}

/// `lwt apply -f FILE`: the whole file is checked first (a bad file
/// changes nothing); then, under the namespace's lock, the plan is made
/// from lwtkit's records and the kernel and run change by change, each
/// through the library's own operation. `check`: plan only.
pub fn apply(path: &Path, check: bool, prune: bool) -> Result<Applied> {
    system::require_attach_privileges("lwt apply")?;
    let loaded = load(path)?;
    if check {
        let plan = plan_of(&loaded, &Namespace::open_readonly()?, prune)?;
        return Ok(Applied {
            applied: false,
            plan,
        });
    }
    Ok(Applied {
        applied: true,
        plan: apply_loaded(&loaded, prune, "lwt apply")?,
    })
}

/// Applies `loaded` under the namespace's lock, as `verb`: the plan is
/// made from lwtkit's records and the kernel once the lock is held.
pub fn apply_loaded(loaded: &Loaded, prune: bool, verb: &str) -> Result<Plan> {
    let ns = Namespace::open()?;
    let txn = ns.begin(verb)?;
    let plan = plan_of(loaded, &txn, prune)?;
    let mut rtnl = Rtnl::open()?;
    for (done, change) in plan.changes.iter().enumerate() {
        tracing::debug!(action = %change.action, object = %change.object, "{verb}");
        apply::run(&txn, &mut rtnl, &loaded.desired, change).map_err(|error| {
            ConfigError::Change {
                action: change.action,
                object: change.object.clone(),
                done,
                error: Box::new(error),
            }
        })?;
    }
    Ok(plan)
}

/// `lwt export`: the namespace's current lwtkit state as a config file.
pub fn export() -> Result<ConfigFile> {
    system::require_attach_privileges("lwt export")?;
    let ns = Namespace::open_readonly()?;
    let current = current::current(&ns, &mut Rtnl::open()?)?;
    Ok(export::export(&current))
}
