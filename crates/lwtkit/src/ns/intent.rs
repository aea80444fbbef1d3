//! Write-ahead intents. Before lwtkit changes anything in the kernel it
//! records what it is about to do: what the kernel will show once the
//! change took effect (the probe), and the bookkeeping to apply in either
//! case (`done`: the change happened; `undone`: it did not). After the
//! change it applies one side and removes the intent.
//!
//! A command killed in between leaves the intent behind. The next command
//! in the namespace, under the lock, reads what the kernel holds now and
//! finishes the intent accordingly, so `kill -9` at any point converges:
//! records and pins always end up describing what the kernel runs, and
//! the route as it was before lwtkit (carried in the intent) is never lost.
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::store;
use crate::{
    error::Result,
    route::{
        kernel::{self, Marks, RouteTable},
        ops::RouteKey,
        swap::HookSwap,
    },
};

/// What in the kernel tells whether a change took effect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "probe", rename_all = "snake_case")]
pub enum Probe {
    /// The route carries exactly these program names (`None`: the route is gone).
    Route {
        dst: IpNet,
        table: u32,
        after: Option<Marks>,
    },
    /// A filter policy's config map says this generation is live.
    Generation { config: PathBuf, after: u32 },
    /// A pin exists (a tcx link, pinned once attached).
    Pinned { path: PathBuf },
    /// A pin is gone.
    Unpinned { path: PathBuf },
    /// A record holds exactly this text: for changes only lwtkit's own maps
    /// see, whose record is written last.
    Record { path: PathBuf, json: String },
    /// A map entry holds exactly this value (hex key and value).
    MapValue {
        pin: PathBuf,
        key: String,
        value: String,
    },
}

/// One piece of bookkeeping, idempotent so it can be applied twice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Write a record (JSON text).
    Put { path: PathBuf, json: String },
    /// Remove a file.
    Remove { path: PathBuf },
    /// Remove a directory tree (pins).
    RemoveTree { path: PathBuf },
    /// Remove a directory if it is empty.
    RemoveEmptyDir { path: PathBuf },
    /// Move staged pins into place, replacing what is there.
    Rename { from: PathBuf, to: PathBuf },
    /// Set a map entry (hex key and value).
    MapPut {
        pin: PathBuf,
        key: String,
        value: String,
    },
    /// Delete a map entry.
    MapDelete { pin: PathBuf, key: String },
    /// Delete a route lwtkit added (hex of its RTM_NEWROUTE payload: prefix,
    /// table, device and metric), if it is still there and still carries
    /// exactly `marks` ([`kernel::delete_if_ours`]).
    DeleteRoute {
        route: String,
        #[serde(default)]
        marks: Marks,
    },
    /// Zero per-CPU counter entries: `(first, count)` ranges.
    ZeroCounters {
        pin: PathBuf,
        ranges: Vec<(u32, u32)>,
    },
    /// Put back what per-CPU counter entries held (the first words of
    /// each value, summed over CPUs: packets, bytes, logged, suppressed),
    /// in the first CPU's slot, the others zero: what a change zeroed
    /// before it was undone.
    RestoreCounters {
        pin: PathBuf,
        entries: Vec<(u32, [u64; 4])>,
    },
    /// Swap the programs of some hooks of a route in place, if it carries
    /// exactly the programs `before` names (a route gone, already swapped
    /// or changed by someone else is left alone).
    SwapHooks {
        dst: IpNet,
        table: u32,
        before: Marks,
        swaps: Vec<HookSwap>,
    },
}

/// Which bookkeeping applies when the kernel shows neither the change nor
/// the state before it (someone else changed it meanwhile).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Done,
    Undone,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    pub verb: String,
    pub pid: u32,
    pub probe: Probe,
    pub done: Vec<Step>,
    pub undone: Vec<Step>,
}

impl Intent {
    pub fn new(verb: &str, probe: Probe) -> Self {
        Self {
            verb: verb.into(),
            pid: std::process::id(),
            probe,
            done: Vec::new(),
            undone: Vec::new(),
        }
    }
}

/// Reads the kernel: did the change the intent describes take effect?
pub fn observe(probe: &Probe, routes: &mut dyn RouteTable) -> Result<Outcome> {
    let took = match probe {
        Probe::Route { dst, table, after } => {
            let now = routes
                .lookup(&RouteKey {
                    dst: *dst,
                    table: *table,
                })?
                .map(|r| kernel::marks(&r));
            now == *after
        }
        Probe::Generation { config, after } => {
            // The live generation is the first word of the config value.
            use libbpf_rs::{MapCore, MapFlags, MapHandle};
            MapHandle::from_pinned_path(config)
                .ok()
                .and_then(|m| m.lookup(&0u32.to_ne_bytes(), MapFlags::ANY).ok().flatten())
                .and_then(|v| v.get(..4).and_then(|b| b.try_into().ok()))
                .map(u32::from_ne_bytes)
                == Some(*after)
        }
        Probe::Pinned { path } => path.exists(),
        Probe::Unpinned { path } => !path.exists(),
        Probe::Record { path, json } => {
            std::fs::read_to_string(path).is_ok_and(|text| text == *json)
        }
        Probe::MapValue { pin, key, value } => {
            use libbpf_rs::{MapCore, MapFlags, MapHandle};
            MapHandle::from_pinned_path(pin)
                .ok()
                .and_then(|m| m.lookup(&unhex(key), MapFlags::ANY).ok().flatten())
                .is_some_and(|v| v == unhex(value))
        }
    };
    Ok(if took { Outcome::Done } else { Outcome::Undone })
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok())
        .collect()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Applies bookkeeping steps in order.
pub fn apply(steps: &[Step]) -> Result<()> {
    use libbpf_rs::{MapCore, MapFlags, MapHandle};
    for step in steps {
        match step {
            Step::Put { path, json } => store::write_atomic(path, json.as_bytes())?,
            Step::Remove { path } => store::remove_file(path)?,
            Step::RemoveTree { path } => store::remove_tree(path)?,
            Step::RemoveEmptyDir { path } => {
                let _ = std::fs::remove_dir(path);
            }
            Step::Rename { from, to } => {
                if from.exists() {
                    store::remove_tree(to)?;
                    std::fs::rename(from, to).map_err(|e| store::state_err(to, e))?;
                }
            }
            Step::MapPut { pin, key, value } => {
                if let Ok(map) = MapHandle::from_pinned_path(pin) {
                    map.update(&unhex(key), &unhex(value), MapFlags::ANY)
                        .map_err(|e| store::state_err(pin, e))?;
                    // Perhaps a policy's config: a flip.
                    flipped();
                }
            }
            Step::MapDelete { pin, key } => {
                if let Ok(map) = MapHandle::from_pinned_path(pin) {
                    let _ = map.delete(&unhex(key));
                }
            }
            Step::DeleteRoute { route, marks } => {
                use crate::route::ops;
                let Some(route) = ops::from_hex(route) else {
                    continue;
                };
                let Some(dst) = ops::dst_of(&route) else {
                    continue;
                };
                let key = RouteKey {
                    dst,
                    table: ops::table_of(&route),
                };
                let mut rtnl = crate::route::netlink::Rtnl::open()?;
                let found = kernel::delete_if_ours(
                    &mut rtnl,
                    &key,
                    ops::oif_of(&route),
                    ops::metric_of(&route),
                    marks,
                )?;
                if let kernel::Deleted::NotOurs(other) = found {
                    tracing::warn!(route = %key, ?other, "left a route lwtkit did not make");
                }
            }
            Step::ZeroCounters { pin, ranges } => {
                if let Ok(map) = MapHandle::from_pinned_path(pin) {
                    // After a flip: no program that read the old generation
                    // may still count there.
                    wait_for_readers();
                    let entries: Vec<u32> = ranges
                        .iter()
                        .flat_map(|(first, n)| *first..first.saturating_add(*n))
                        .collect();
                    crate::percpu::zero(&map, &entries).map_err(|e| store::state_err(pin, e))?;
                }
            }
            Step::RestoreCounters { pin, entries } => {
                if let Ok(map) = MapHandle::from_pinned_path(pin) {
                    let cpus =
                        libbpf_rs::num_possible_cpus().map_err(|e| store::state_err(pin, e))?;
                    let size = map.value_size() as usize;
                    for (entry, words) in entries {
                        let mut values = vec![vec![0u8; size]; cpus];
                        for (i, w) in words.iter().enumerate() {
                            if let Some(b) = values[0].get_mut(8 * i..8 * i + 8) {
                                b.copy_from_slice(&w.to_ne_bytes());
                            }
                        }
                        map.update_percpu(&entry.to_ne_bytes(), &values, MapFlags::ANY)
                            .map_err(|e| store::state_err(pin, e))?;
                    }
                }
            }
            Step::SwapHooks {
                dst,
                table,
                before,
                swaps,
            } => {
                let mut rtnl = crate::route::netlink::Rtnl::open()?;
                let key = RouteKey {
                    dst: *dst,
                    table: *table,
                };
                let swapped = crate::route::swap::swap_hooks(&mut rtnl, &key, before, swaps)?;
                flipped();
                tracing::info!(route = %key, ?swapped, "swapping hooks of an interrupted change");
            }
        }
    }
    Ok(())
}

/// Whether a policy's live generation may have flipped since this
/// process last waited for readers: at start it may have (a command killed
/// right after a flip leaves one for the next to wait out).
static FLIPPED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Says a policy's live generation (or the programs on its routes) just
/// changed: the next [`wait_for_readers`] must wait.
pub fn flipped() {
    FLIPPED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Waits for an RCU grace period, unless one passed since the last flip
/// of this process: afterwards no BPF program that started before the
/// flip is still running (LWT programs run with bottom halves disabled,
/// an RCU read-side section), so the old generation and its counters are
/// nobody's. `membarrier(MEMBARRIER_CMD_GLOBAL)` is `synchronize_rcu()`;
/// without it, a sleep far longer than any program runs.
pub fn wait_for_readers() {
    if !FLIPPED.swap(false, std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    const MEMBARRIER_CMD_GLOBAL: libc::c_long = 1;
    // SAFETY: membarrier takes no pointers.
    let rc = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) };
    if rc != 0 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The pending intents of a namespace, oldest first.
pub fn pending(dir: &Path) -> Result<Vec<(PathBuf, Intent)>> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(out);
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    for p in paths {
        if let Some(i) = store::read_json::<Intent>(&p)? {
            out.push((p, i));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intents_round_trip_as_json() {
        let mut i = Intent::new(
            "lwt attach",
            Probe::Route {
                dst: "10.0.0.3/32".parse().expect("valid"),
                table: 254,
                after: Some(Marks::from([(
                    "out".into(),
                    "lwtkit-count:[lwt_out]#7".into(),
                )])),
            },
        );
        i.done.push(Step::Rename {
            from: "/a_next".into(),
            to: "/a".into(),
        });
        i.undone.push(Step::MapPut {
            pin: "/m".into(),
            key: hex(&[1, 2]),
            value: hex(&[0xff]),
        });
        let text = serde_json::to_string(&i).expect("json");
        assert_eq!(serde_json::from_str::<Intent>(&text).expect("parse"), i);
        assert_eq!(unhex(&hex(&[0, 0xab, 7])), vec![0, 0xab, 7]);
    }
}
