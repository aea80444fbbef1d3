//! Garbage collection of dead namespaces' state. Routes die with their
//! namespace, but records (tmpfs) and pins (bpffs) do not: the pins are all
//! that still holds those programs and maps.
//!
//! Liveness is decided by the namespace **cookie**, which the kernel never
//! hands out twice in a boot (inode numbers it does reuse: a new namespace
//! can get a dead one's inode). Every namespace something still holds (a
//! task, a bind mount in any mount namespace, an open file descriptor) is
//! opened and asked its id with `NS_GET_ID`, which is the cookie.
use std::{
    collections::HashSet,
    fs,
    path::{Path, PathBuf},
};

use super::{lock, store};
use crate::system;

/// What a collection removed.
#[derive(Debug, Default)]
pub struct Collected {
    pub namespaces: Vec<u64>,
}

fn cookie_of_dir(name: &str) -> Option<u64> {
    name.strip_prefix("ns-")?.parse().ok()
}

/// Removes the records and pins of every namespace that is gone. Both
/// halves are looked at: a state directory whose pins are gone and a pin
/// directory whose records are gone. Skipped (not an error) when another
/// process is collecting, when this kernel cannot name namespaces by
/// cookie (it would have to guess by inode), or when this process cannot
/// see every task's namespaces (a PID namespace of its own, or too few
/// capabilities to read another task's: a namespace out of sight is not
/// proven dead).
pub fn collect(state_root: &Path, pin_root: &Path) -> Collected {
    let mut done = Collected::default();
    let gc_dir = state_root;
    if store::ensure_dir(gc_dir).is_err() {
        return done;
    }
    let Ok(_gc) = lock::acquire(
        &gc_dir.join("gc"),
        "garbage collection",
        std::time::Duration::ZERO,
    ) else {
        return done;
    };
    let Some(live) = system::live_netns_cookies() else {
        tracing::debug!(
            "garbage collection skipped: no NS_GET_ID, or some tasks' namespaces are out of sight"
        );
        return done;
    };
    let mut dead: HashSet<u64> = HashSet::new();
    for root in [state_root, pin_root] {
        if let Ok(entries) = fs::read_dir(root) {
            for e in entries.flatten() {
                if let Some(c) = cookie_of_dir(&e.file_name().to_string_lossy()) {
                    if !live.contains(&c) {
                        dead.insert(c);
                    }
                }
            }
        }
    }
    for cookie in dead {
        let state: PathBuf = state_root.join(format!("ns-{cookie}"));
        // A dead namespace has no lwt running in it; a held lock means it is
        // not dead after all (or is being cleaned by someone else).
        let _held = if state.join("lock").exists() {
            match lock::try_acquire(&state) {
                Some(h) => Some(h),
                None => continue,
            }
        } else {
            None
        };
        tracing::debug!(cookie, "removing the state of a vanished network namespace");
        let _ = store::remove_tree(&pin_root.join(format!("ns-{cookie}")));
        let _ = store::remove_tree(&state);
        done.namespaces.push(cookie);
    }
    // Nothing left on bpffs once no namespace has pins (only if empty).
    let _ = fs::remove_dir(pin_root);
    done
}
