//! The namespace lock: one `flock` per namespace, held by every command
//! that changes anything there, for its whole run. The lock file is 0600
//! in a 0700 directory, so no other user can open it (and stall root by
//! holding it). Waiting is bounded: after the timeout the error says who
//! holds the lock (pid, verb, since when).
use std::{
    fs::OpenOptions,
    os::unix::fs::OpenOptionsExt,
    path::Path,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::store::{self, state_err};
use crate::error::{Result, StateError};

/// How long a command waits for the lock unless `LWT_LOCK_TIMEOUT` (seconds) says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Who holds a lock, written by the holder once it has it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub verb: String,
    /// Seconds since the epoch.
    pub since: u64,
}

/// A held lock; released when dropped (or when the process dies).
pub struct Held {
    _lock: Flock<std::fs::File>,
    dir: Option<std::path::PathBuf>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            held_here().lock().map(|mut h| h.remove(&dir)).ok();
        }
    }
}

/// The locks this process holds: taking one twice would wait on itself.
fn held_here() -> &'static std::sync::Mutex<std::collections::HashSet<std::path::PathBuf>> {
    static HELD: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashSet<std::path::PathBuf>>,
    > = std::sync::OnceLock::new();
    HELD.get_or_init(Default::default)
}

/// The lock timeout in force.
pub fn timeout() -> Duration {
    std::env::var("LWT_LOCK_TIMEOUT")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(DEFAULT_TIMEOUT)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Takes the exclusive lock of state directory `dir` for `verb`, waiting at most `wait`.
pub fn acquire(dir: &Path, verb: &str, wait: Duration) -> Result<Held> {
    store::ensure_dir(dir)?;
    if held_here().lock().is_ok_and(|h| h.contains(dir)) {
        return Err(StateError::NestedLock {
            verb: verb.into(),
            dir: dir.into(),
        }
        .into());
    }
    let path = dir.join("lock");
    let holder_path = dir.join("holder.json");
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_millis(2);
    loop {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| state_err(&path, e))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => {
                let me = Holder {
                    pid: std::process::id(),
                    verb: verb.into(),
                    since: now(),
                };
                store::write_json(&holder_path, &me)?;
                held_here()
                    .lock()
                    .map(|mut h| h.insert(dir.to_path_buf()))
                    .ok();
                return Ok(Held {
                    _lock: lock,
                    dir: Some(dir.to_path_buf()),
                });
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                return Err(StateError::LockTimeout {
                    holder: describe(&path, &holder_path),
                    path,
                    waited: wait.as_secs_f64(),
                }
                .into())
            }
            Err((_, e)) => return Err(state_err(&path, e)),
        }
    }
}

/// Tries the lock once without waiting: `None` when someone holds it.
pub fn try_acquire(dir: &Path) -> Option<Held> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join("lock"))
        .ok()?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock)
        .ok()
        .map(|lock| Held {
            _lock: lock,
            dir: None,
        })
}

/// Who holds the lock at `lock_path`: the kernel's answer (`/proc/locks`
/// names the pid of every flock holder), with the verb from the holder file
/// when that pid wrote it.
fn describe(lock_path: &Path, holder_path: &Path) -> String {
    let recorded = store::read_json::<Holder>(holder_path).ok().flatten();
    match flock_holder(lock_path) {
        Some(pid) => {
            let what = match &recorded {
                Some(h) if h.pid == pid => format!(
                    "`{}`, holding it for {} s",
                    h.verb,
                    now().saturating_sub(h.since)
                ),
                _ => std::fs::read("/proc/".to_string() + &pid.to_string() + "/cmdline")
                    .map(|c| {
                        let words: Vec<String> = c
                            .split(|b| *b == 0)
                            .filter(|w| !w.is_empty())
                            .map(|w| String::from_utf8_lossy(w).into_owned())
                            .collect();
                        format!("`{}`", words.join(" "))
                    })
                    .unwrap_or_else(|_| "a process".into()),
            };
            format!("pid {pid} ({what})")
        }
        None => "a process /proc/locks does not name".into(),
    }
}

/// The pid holding a flock on `path`, from `/proc/locks` (matched by inode).
fn flock_holder(path: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    let id = format!(
        "{:02x}:{:02x}:{}",
        libc::major(m.dev()),
        libc::minor(m.dev()),
        m.ino()
    );
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    // `1: FLOCK  ADVISORY  WRITE 1234 00:1a:5678 0 EOF`
    locks.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(1) == Some(&"FLOCK") && f.get(5) == Some(&id.as_str()))
            .then(|| f.get(4)?.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_times_out_naming_the_first() {
        let dir = std::env::temp_dir().join(format!("lwtkit-lock-{}", std::process::id()));
        let held = acquire(&dir, "lwt attach", Duration::ZERO).expect("first");
        // The same process asking again is a bug, told at once.
        let again = acquire(&dir, "lwt detach", Duration::from_secs(5))
            .err()
            .expect("nested");
        assert!(again.to_string().contains("internal error"), "{again}");
        // Another holder (another open file, as another process has).
        let other = std::fs::File::open(dir.join("lock")).expect("open");
        drop(held);
        let theirs = Flock::lock(other, FlockArg::LockExclusiveNonblock).expect("theirs");
        let err = acquire(&dir, "lwt detach", Duration::from_millis(30))
            .err()
            .expect("second must time out");
        let text = err.to_string();
        assert!(
            text.contains(&format!("pid {}", std::process::id())) && text.contains("lwt attach"),
            "{text}"
        );
        assert!(try_acquire(&dir).is_none());
        drop(theirs);
        assert!(try_acquire(&dir).is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
