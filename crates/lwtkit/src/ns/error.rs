//! How keeping lwtkit's state can fail: records, pins, the lock.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A record or pin that could not be read, written, pinned or removed.
    #[error("lwtkit state {path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("pin {0} not found or not readable (is it on bpffs, and are you root?)")]
    MissingPin(PathBuf),
    #[error("another lwt command holds the lock of this namespace ({path}): {holder}; gave up after {waited} s (LWT_LOCK_TIMEOUT sets the wait)")]
    LockTimeout {
        path: PathBuf,
        waited: f64,
        holder: String,
    },
    /// A change asked for the lock its own process already holds: a bug,
    /// refused at once instead of waiting for itself.
    #[error("internal error: `{verb}` asked again for the lock of {dir} that this process holds; a change must run inside the one transaction it has")]
    NestedLock { verb: String, dir: PathBuf },
}
