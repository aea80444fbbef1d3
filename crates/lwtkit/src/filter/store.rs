//! Filter policies of one network namespace: their records (name, default
//! verdict, rules with ids) on tmpfs, their maps pinned on bpffs, and the
//! atomic swap of a compiled rule set into the live maps.
//!
//! Atomic replace: the cells map holds two generations. A change compiles
//! the whole new rule set into the idle half, flips `generation` in the
//! config map (one word), then waits for an RCU grace period
//! (`membarrier(MEMBARRIER_CMD_GLOBAL)`): LWT programs run inside RCU
//! read-side sections, so afterwards no packet can still be walking the old
//! half, which the next change may then overwrite. A packet reads the
//! generation once, so it is judged entirely by the old or the new set.
use std::{
    collections::BTreeMap,
    fs,
    os::fd::{AsFd, AsRawFd},
    path::{Path, PathBuf},
};

use libbpf_rs::{MapCore, MapFlags, MapHandle, ObjectBuilder};
use lwtkit_common::{
    filter::{Cell, PolicyConfig, ProgramSpec},
    maps::filter as maps,
    pins,
};
use serde::{Deserialize, Serialize};

use super::{
    compile::compile_with_slots,
    handling::{Fragments, Handling, Malformed},
    patch,
    rule::{Rule, RuleSpec, Verdict},
    rules_file, spec,
};
use crate::{
    attach::{self, Standing},
    builtin,
    error::{Error, FilterError, LoadError, Result, StateError},
    hook::Hook,
    loader::{self, last_line, BuiltinSpec, LibbpfLog, ProgramSource},
    ns::{
        failpoint,
        intent::{flipped, wait_for_readers},
        watch::Watch,
        Intent, Outcome, Probe, Step, Txn,
    },
    route::{
        kernel::{Marks, RouteTable},
        netlink::Rtnl,
        ops::RouteKey,
        swap::{marks_after, swap_hooks, HookSwap, Swapped},
    },
    state::{HookRecord, NetnsState, Origin, RouteRecord},
};

/// Counter slots a new policy has unless `--capacity` says otherwise: a
/// preallocation, since a policy grows (in powers of two) as rules arrive.
pub const DEFAULT_CAPACITY: u32 = 256;
/// The largest `--capacity`, and the most rules a policy holds.
pub const MAX_CAPACITY: u32 = 1 << 22;
/// Cells reserved per rule of capacity in each generation (tree nodes,
/// leaf lists, the rule itself); measured at ~6-10 for mixed rule sets.
const CELLS_PER_RULE: u32 = 8;
const MIN_CELLS: u32 = 4096;
/// The most cells a generation holds (1 GiB of cells each).
pub const MAX_CELLS: u32 = 1 << 25;
/// Default event rate limit per rule and CPU.
pub const LOG_RATE: u32 = 100;
pub const LOG_BURST: u32 = 200;

/// What lwtkit keeps about a policy: a small JSON record, and its rules,
/// their counter slots and carried counters in a compact rules file
/// beside it ([`super::rules_file`]) that the record names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub id: u32,
    pub name: String,
    pub default: Verdict,
    /// Counter slots per generation, less the default's (rule slots run
    /// 1..=capacity; rule ids are not bounded by it). Grows with the rules.
    pub capacity: u32,
    /// Cells per generation.
    pub cells: u32,
    pub generation: u32,
    /// The rules (in the rules file; inline in records written before
    /// rules files).
    #[serde(default, skip_serializing)]
    pub rules: Vec<Rule>,
    /// What earlier generations counted for rules that carried over (and,
    /// under 0, for the default): added to the live generation's counters.
    /// The rules file's, plus the record's `carried`.
    #[serde(skip)]
    pub carried: std::collections::BTreeMap<u32, RuleCounters>,
    /// What the record itself carries on top of the rules file's (what the
    /// old generation counted between the intent of a change and its
    /// flip); all of it in records written before rules files.
    #[serde(
        default,
        rename = "carried",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub carried_extra: std::collections::BTreeMap<u32, RuleCounters>,
    /// What earlier maps' action counters counted for rules that carried
    /// over a growth (the new maps start at zero): added to what the
    /// `action_stats` map counts, as `carried` is for rule counters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub carried_actions: std::collections::BTreeMap<u32, ActionCounters>,
    /// The id the next new rule gets: ids only grow, so an id never names
    /// two rules (a `rule del N` cannot hit a rule added since). 0 in
    /// records written before ids were kept monotonic: then one past the
    /// highest id.
    #[serde(default)]
    pub next_id: u32,
    /// Each rule's counter slot in 1..=capacity, by rule id. Rules missing
    /// here (records written before slots) count in the slot of their id,
    /// which was then at most `capacity`.
    #[serde(default, skip_serializing)]
    pub slots: std::collections::BTreeMap<u32, u32>,
    /// What happens to non-first fragments (records written before this
    /// setting: pass).
    #[serde(default)]
    pub fragments: Fragments,
    /// What happens to malformed packets (records written before this
    /// setting: drop).
    #[serde(default)]
    pub malformed: Malformed,
    /// The rules file (`<name>.rules.<version>` beside the record) holding
    /// `rules`, `slots` and the base of `carried`; `None`: they are inline
    /// (records written before rules files, or no rules were ever set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules_file: Option<String>,
    /// The version of the last rules file written.
    #[serde(default)]
    pub rules_version: u64,
    /// Entries of the rules file's journal (`<name>.journal.<version>`)
    /// that count: rules added and deleted one at a time since the file.
    #[serde(default)]
    pub journal_len: u32,
    /// Rules count in their slot of both generations (a slot is zeroed
    /// only when a new rule takes it), so a change leaves the counters of
    /// the rules that stay alone. Records written before count in the live
    /// generation only, with `carried` holding the rest; their next change
    /// moves them over.
    #[serde(default)]
    pub both_generations: bool,
    /// What the policy's programs are specialised for ([`super::spec`]):
    /// every program attached for it is loaded with this, which covers
    /// every generation packets may walk. `None` (records written before
    /// specialisation): every path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<ProgramSpec>,
}

impl Policy {
    /// The default verdict and the fragment and malformed settings.
    pub fn handling(&self) -> Handling {
        Handling {
            default: self.default,
            fragments: self.fragments,
            malformed: self.malformed,
        }
    }

    /// Counter slots per generation (rules' 1..=capacity, and 0).
    pub fn rule_slots(&self) -> u32 {
        self.capacity + 1
    }

    /// The id the next new rule gets.
    pub fn next_rule_id(&self) -> u32 {
        let past_highest = self.rules.iter().map(|r| r.id).max().unwrap_or(0) + 1;
        self.next_id.max(past_highest)
    }

    /// What the policy's programs are specialised for.
    pub fn program_spec(&self) -> ProgramSpec {
        self.spec.unwrap_or(ProgramSpec::GENERIC)
    }

    /// The counter slot of rule `id`.
    pub fn slot_of(&self, id: u32) -> u32 {
        self.slots.get(&id).copied().unwrap_or(id)
    }

    /// The lowest counter slot no current rule uses: at most one past the
    /// number of rules, so past the capacity only when the policy is full
    /// (the change then grows it).
    fn free_slot(&self) -> u32 {
        let n = self.rules.len() + 1;
        let mut used = vec![false; n + 1];
        for s in self.all_slots() {
            if let Some(u) = used.get_mut(s as usize) {
                *u = true;
            }
        }
        (1..=n).find(|s| !used[*s]).unwrap_or(n) as u32
    }

    /// The counter slot of every rule (in no particular order): the slot
    /// map's values when it names every rule (one pass, no lookups).
    fn all_slots(&self) -> Box<dyn Iterator<Item = u32> + '_> {
        if self.slots.len() == self.rules.len() {
            Box::new(self.slots.values().copied())
        } else {
            Box::new(self.rules.iter().map(|r| self.slot_of(r.id)))
        }
    }
}

/// The sizes a policy needs to hold rules whose highest counter slot is
/// `slots` and that compile to `cells` cells: what it has, or powers of
/// two that fit (`None`: past the largest policy).
pub fn sizes_for(p: &Policy, slots: u32, cells: usize) -> Option<(u32, u32)> {
    let capacity = if slots > p.capacity {
        slots.checked_next_power_of_two()?.min(MAX_CAPACITY)
    } else {
        p.capacity
    };
    let cells = if cells > p.cells as usize {
        u32::try_from(cells).ok()?.checked_next_power_of_two()?
    } else {
        p.cells
    };
    (slots <= capacity && cells <= MAX_CELLS).then_some((capacity, cells))
}

/// Per-rule counters summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleCounters {
    pub packets: u64,
    pub bytes: u64,
    pub logged: u64,
    pub suppressed: u64,
}

impl RuleCounters {
    fn add(&mut self, o: &RuleCounters) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.logged += o.logged;
        self.suppressed += o.suppressed;
    }
}

/// What a rule's action did, summed over CPUs and generations
/// ([`lwtkit_common::filter::ActionStats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionCounters {
    /// Translated, rerouted, marked or redirected (by the rule's action).
    pub done: u64,
    pub failed: u64,
    pub loops: u64,
}

impl ActionCounters {
    fn add(&mut self, o: &ActionCounters) {
        self.done += o.done;
        self.failed += o.failed;
        self.loops += o.loops;
    }
}

/// The policies of the current namespace.
pub struct Policies<'a> {
    state: &'a NetnsState,
}

/// Policy names become file and bpffs names: keep them plain.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(FilterError::InvalidName(name.into()).into())
    }
}

impl crate::ns::Record for Policy {
    const DIR: &'static str = "filters";
    fn key(&self) -> String {
        self.name.clone()
    }
}

impl<'a> Policies<'a> {
    pub fn new(state: &'a NetnsState) -> Self {
        Self { state }
    }

    /// The directory of the policies' records and rules files.
    fn records_dir(&self) -> PathBuf {
        self.state.dir().join("filters")
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.records_dir().join(format!("{name}.json"))
    }

    /// bpffs directory of a policy's maps.
    pub fn pin_dir(&self, name: &str) -> PathBuf {
        self.state.pin_root().join(pins::filter::DIR).join(name)
    }

    /// Where a policy's bigger maps are staged while it grows (policy
    /// names have no `:`, so this is no policy's; the namespace sweeps
    /// `:next` directories no intent covers).
    fn stage_dir(&self, name: &str) -> PathBuf {
        self.state
            .pin_root()
            .join(pins::filter::DIR)
            .join(format!("{name}:next"))
    }

    /// The namespace's event ring buffer.
    pub fn events_pin(&self) -> PathBuf {
        self.state.pin_root().join(pins::EVENTS)
    }

    /// The filter program of policy `name`, for the loader: on the
    /// policy's pinned maps and the namespace's event ring buffer, named
    /// `lwtkit-filter-<policy>` on the route.
    pub fn program(&self, name: &str) -> BuiltinSpec {
        self.program_on(name, &self.pin_dir(name), self.spec_of(name))
    }

    /// What policy `name`'s programs are specialised for, by its record
    /// alone (its rules are not read): every path when it names none or
    /// cannot be read (the program then loads, or fails, as before).
    pub fn spec_of(&self, name: &str) -> ProgramSpec {
        fs::read(self.record_path(name))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Policy>(&bytes).ok())
            .map_or(ProgramSpec::GENERIC, |p| p.program_spec())
    }

    /// [`Policies::program`] for `lwt test`: it reads the policy's rules
    /// (cells and config) but counts and logs into maps of its own, so test
    /// packets never show in `filter show`, `stats` or `events`.
    pub fn program_for_test(&self, name: &str) -> BuiltinSpec {
        let mut spec = self.program(name);
        spec.maps_to_reuse.retain(|(map, _)| {
            map == lwtkit_common::maps::filter::CELLS || map == lwtkit_common::maps::filter::CONFIG
        });
        spec
    }

    /// [`Policies::program`] on the maps pinned in `dir`, specialised as
    /// `spec`.
    fn program_on(&self, name: &str, dir: &Path, spec: ProgramSpec) -> BuiltinSpec {
        let mut maps_to_reuse: Vec<(String, PathBuf)> = pins::filter::MAPS
            .iter()
            .map(|(map, file)| (map.to_string(), dir.join(file)))
            // Policies made before actions have no action counters: their
            // programs get a map of their own.
            .filter(|(map, pin)| map != maps::ACTION_STATS || pin.exists())
            .collect();
        maps_to_reuse.push((maps::EVENTS.into(), self.events_pin()));
        BuiltinSpec {
            name: "filter".into(),
            route_name: format!("lwtkit-filter-{name}"),
            maps_to_reuse,
            constants: spec::constants(spec),
            origin: Origin::Filter {
                policy: name.into(),
            },
        }
    }

    pub fn get(&self, name: &str) -> Result<Policy> {
        validate_name(name)?;
        let mut policy = self.read(name)?;
        // Which half packets walk, and what happens to fragments and
        // malformed packets, is the kernel's to say: a command killed
        // between the config map and the record would otherwise make the
        // next change write into the live half (or undo a setting).
        if let Ok(cfg) = live_settings(&self.pin_dir(name).join(pins::filter::CONFIG)) {
            policy.generation = cfg.generation;
            policy.default = cfg.default;
            if let Some((fragments, malformed)) = cfg.handling {
                policy.fragments = fragments;
                policy.malformed = malformed;
            }
        }
        Ok(policy)
    }

    /// The record of policy `name` with its rules file read.
    fn read(&self, name: &str) -> Result<Policy> {
        let path = self.record_path(name);
        let mut tries = 0;
        loop {
            let bytes = fs::read(&path).map_err(|_| FilterError::UnknownPolicy(name.into()))?;
            let mut policy: Policy =
                serde_json::from_slice(&bytes).map_err(|e| StateError::Io {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            match load_rules(&self.records_dir(), &mut policy) {
                // A reader without the lock: a change replaced the record
                // and the rules file it named in between.
                Err(_) if tries < 8 && fs::read(&path).is_ok_and(|now| now != bytes) => {
                    tries += 1;
                }
                other => return other.map(|()| policy),
            }
        }
    }

    pub fn all(&self) -> Result<Vec<Policy>> {
        let dir = self.records_dir();
        let mut out = Vec::new();
        if let Ok(entries) = fs::read_dir(&dir) {
            for e in entries.flatten() {
                if let Some(name) = e.file_name().to_string_lossy().strip_suffix(".json") {
                    out.push(self.get(name)?);
                }
            }
        }
        out.sort_by_key(|p| p.id);
        Ok(out)
    }

    fn save(&self, txn: &Txn, p: &Policy) -> Result<()> {
        txn.put(p)
    }

    /// Writes `p`'s rules, their slots and `carried` to a new rules file
    /// and points `p` at it (with nothing carried in the record itself).
    /// Returns the new file (to remove if the change does not happen) and
    /// the one `p` named before (to remove once it does).
    fn write_rules(
        &self,
        p: &mut Policy,
        carried: &BTreeMap<u32, RuleCounters>,
    ) -> Result<(PathBuf, Option<PathBuf>)> {
        let dir = self.records_dir();
        let old = p.rules_file.as_ref().map(|f| dir.join(f));
        p.rules_version += 1;
        let file = format!("{}.rules.{}", p.name, p.rules_version);
        let path = dir.join(&file);
        let bytes = rules_file::encode(&p.rules, |id| p.slot_of(id), carried);
        crate::ns::store::write_atomic(&path, &bytes)?;
        p.rules_file = Some(file);
        p.journal_len = 0;
        p.carried_extra = BTreeMap::new();
        Ok((path, old))
    }

    /// `lwt filter create`: makes the policy's maps and pins them; fragments
    /// and malformed packets get the documented defaults.
    pub fn create(
        &self,
        txn: &Txn,
        name: &str,
        default: Verdict,
        capacity: Option<u32>,
    ) -> Result<Policy> {
        self.create_with(txn, name, Handling::new(default), capacity)
    }

    /// `lwt filter create` with `--fragments` / `--malformed`.
    pub fn create_with(
        &self,
        txn: &Txn,
        name: &str,
        handling: Handling,
        capacity: Option<u32>,
    ) -> Result<Policy> {
        let default = handling.default;
        validate_name(name)?;
        if self.record_path(name).exists() {
            return Err(FilterError::Exists(name.into()).into());
        }
        let capacity = capacity.unwrap_or(DEFAULT_CAPACITY);
        crate::validate::in_range("--capacity", capacity.into(), 1, MAX_CAPACITY.into())
            .map_err(Error::Invalid)?;
        let cells = capacity.saturating_mul(CELLS_PER_RULE).max(MIN_CELLS);
        let id = self.all()?.iter().map(|p| p.id).max().unwrap_or(0) + 1;
        let policy = Policy {
            id,
            name: name.into(),
            default,
            capacity,
            cells,
            generation: 0,
            rules: Vec::new(),
            carried: Default::default(),
            carried_extra: Default::default(),
            carried_actions: Default::default(),
            next_id: 1,
            slots: Default::default(),
            fragments: handling.fragments,
            malformed: handling.malformed,
            rules_file: None,
            rules_version: 0,
            journal_len: 0,
            both_generations: true,
            spec: None,
        };
        let mut created = policy.clone();
        created.generation = 1;
        // No rule yet: the first programs keep no path a rule uses.
        created.spec = Some(ProgramSpec::NONE);
        // A kill before the record is written leaves pins no record names:
        // the next command removes them.
        let Step::Put { path, json } = txn.put_step(&created)? else {
            unreachable!("put_step makes a Put")
        };
        let mut intent = Intent::new("lwt filter create", Probe::Record { path, json });
        intent.undone = vec![Step::RemoveTree {
            path: self.pin_dir(name),
        }];
        let pending = txn.intend(intent)?;
        let made = self
            .create_maps_in(&policy, &self.pin_dir(name))
            .and_then(|()| self.compile(&policy, &policy.rules))
            .and_then(|cells| self.publish(&policy, &cells));
        if let Err(e) = made {
            txn.finish(pending, Outcome::Undone)?;
            return Err(e);
        }
        failpoint("filter-create:maps");
        self.save(txn, &created)?;
        txn.finish(pending, Outcome::Done)?;
        Ok(created)
    }

    /// Makes maps sized for `p` and pins them in `dir`.
    fn create_maps_in(&self, p: &Policy, dir: &Path) -> Result<()> {
        let b = builtin::find("filter")
            .ok_or_else(|| LoadError::UnknownBuiltin("filter".into(), builtin::names()))?;
        let bytes = b.object().to_vec();
        let load_err = |e: libbpf_rs::Error| LoadError::Failed {
            program: format!("maps of policy {}", p.name),
            reason: e.to_string(),
        };
        let log = LibbpfLog::capture();
        let open = ObjectBuilder::default().open_memory(&bytes);
        let messages = log.finish();
        let mut open = open.map_err(|e| LoadError::Failed {
            program: format!("maps of policy {}", p.name),
            reason: format!("{e}: {}", last_line(&messages)),
        })?;
        for mut prog in open.progs_mut() {
            prog.set_autoload(false);
        }
        let events = self.events_pin();
        for mut m in open.maps_mut() {
            let name = m.name().to_string_lossy().into_owned();
            match name.as_str() {
                maps::CELLS => {
                    m.set_max_entries(p.cells * 2).map_err(load_err)?;
                    m.set_map_flags(libbpf_rs::libbpf_sys::BPF_F_MMAPABLE)
                        .map_err(load_err)?;
                }
                maps::RULE_STATS | maps::ACTION_STATS => {
                    m.set_max_entries(2 * p.rule_slots()).map_err(load_err)?
                }
                maps::EVENTS if events.exists() => m.reuse_pinned_map(&events).map_err(load_err)?,
                _ => {}
            }
        }
        let log = LibbpfLog::capture();
        let loaded = open.load();
        let messages = log.finish();
        let mut obj = loaded.map_err(|e| LoadError::Failed {
            program: format!("maps of policy {}", p.name),
            reason: format!("{e}: {}", last_line(&messages)),
        })?;
        fs::create_dir_all(dir).map_err(|e| StateError::Io {
            path: dir.into(),
            reason: e.to_string(),
        })?;
        for mut m in obj.maps_mut() {
            let name = m.name().to_string_lossy().into_owned();
            let pin = match pins::of_map(pins::filter::MAPS, &name) {
                Some(file) => dir.join(file),
                None if name == maps::EVENTS && !events.exists() => events.clone(),
                None => continue,
            };
            m.pin(&pin).map_err(|e| StateError::Io {
                path: pin.clone(),
                reason: format!("cannot pin: {e}"),
            })?;
        }
        Ok(())
    }

    /// `rules` compiled with their counter slots in `p`.
    fn compile(&self, p: &Policy, rules: &[Rule]) -> Result<Vec<Cell>> {
        compile_with_slots(rules, |r| p.slot_of(r.id))
            .map(|c| c.cells)
            .map_err(|reason| {
                FilterError::Compile {
                    policy: p.name.clone(),
                    reason,
                }
                .into()
            })
    }

    /// The live generation of `old` with one rule changed ([`patch`]), or
    /// why it is not made that way.
    fn patch(
        &self,
        old: &Policy,
        after: &Policy,
        change: patch::Change,
    ) -> std::result::Result<Vec<Cell>, patch::Fallback> {
        let pin = self.pin_dir(&old.name).join(pins::filter::CELLS);
        let (per_gen, total) = (old.cells as usize, 2 * old.cells as usize);
        let base = old.generation as usize * per_gen;
        let unreadable = |e: Error| patch::Fallback::Unreadable(e.to_string());
        let header = read_cells(&pin, base, 1, total).map_err(unreadable)?;
        let used = header.first().map_or(0, |h| h.w[4] as usize);
        if used == 0 || used > per_gen {
            return Err(patch::Fallback::Unreadable(format!(
                "the live header says {used} cells"
            )));
        }
        let image = read_cells(&pin, base, used, total).map_err(unreadable)?;
        patch::apply(
            image,
            &after.rules,
            |r| after.slot_of(r.id),
            change,
            per_gen,
        )
    }

    /// Writes compiled `cells` into the idle generation, flips the
    /// generation and waits out readers of the old one.
    fn publish(&self, p: &Policy, cells: &[Cell]) -> Result<()> {
        if cells.len() > p.cells as usize {
            return Err(FilterError::TooBig {
                policy: p.name.clone(),
                needs: cells.len(),
                holds: p.cells,
            }
            .into());
        }
        let dir = self.pin_dir(&p.name);
        let next = p.generation ^ 1;
        timed("publish.cells", || {
            write_cells(
                &dir.join(pins::filter::CELLS),
                (next * p.cells) as usize,
                cells,
                (p.cells * 2) as usize,
            )
        })?;
        timed("publish.flip", || write_config(&dir, &config_of(p, next)))?;
        flipped();
        timed("publish.wait", wait_for_readers);
        Ok(())
    }

    /// `lwt filter set`: changes the default verdict and what happens to
    /// non-first fragments and malformed packets (`None`: keep), live on
    /// every route the policy is on. All three are words of the config map,
    /// which is rewritten whole with the same generation in one update, so
    /// each packet sees the old settings or the new ones, and the rules
    /// unchanged. Rule counters stay; the default's (rule 0) counts on
    /// under the new verdict.
    pub fn set_handling(
        &self,
        txn: &Txn,
        name: &str,
        default: Option<Verdict>,
        fragments: Option<Fragments>,
        malformed: Option<Malformed>,
    ) -> Result<Policy> {
        let mut p = self.get(name)?;
        p.default = default.unwrap_or(p.default);
        p.fragments = fragments.unwrap_or(p.fragments);
        p.malformed = malformed.unwrap_or(p.malformed);
        let dir = self.pin_dir(name);
        // A record written before rules files keeps its rules in a file now.
        let mut undone = Vec::new();
        if p.rules_file.is_none() && !p.rules.is_empty() {
            let carried = p.carried.clone();
            let (new, _) = self.write_rules(&mut p, &carried)?;
            undone.push(Step::Remove { path: new });
        }
        // The config map is the change: once it holds the new settings the
        // record follows, even after a kill (the intent's probe reads it).
        let config = dir.join(pins::filter::CONFIG);
        let key = crate::ns::intent::hex(&0u32.to_ne_bytes());
        let value = crate::ns::intent::hex(config_bytes(&config_of(&p, p.generation)));
        let mut intent = Intent::new(
            "lwt filter set",
            Probe::MapValue {
                pin: config.clone(),
                key,
                value,
            },
        );
        intent.done = vec![txn.put_step(&p)?];
        intent.undone = undone;
        let pending = txn.intend(intent)?;
        if let Err(e) = write_config(&dir, &config_of(&p, p.generation)) {
            txn.finish(pending, Outcome::Undone)?;
            return Err(e);
        }
        failpoint("filter-set:config");
        txn.finish(pending, Outcome::Done)?;
        Ok(p)
    }

    /// Zeroes the counter entries `entries` (generation and slot already
    /// folded in) of the policy's counter map.
    fn zero_entries(&self, p: &Policy, entries: &[u32]) -> Result<()> {
        let pin = self.pin_dir(&p.name).join(pins::filter::RULE_STATS);
        let map = open_map(&pin)?;
        crate::percpu::zero(&map, entries).map_err(|e| map_err(&pin, e))?;
        let pin = self.pin_dir(&p.name).join(pins::filter::ACTION_STATS);
        if pin.exists() {
            let map = open_map(&pin)?;
            crate::percpu::zero(&map, entries).map_err(|e| map_err(&pin, e))?;
        }
        Ok(())
    }

    /// What the actions of `p`'s rules did, by rule id (rules without an
    /// action are left out), summed over CPUs and both generations.
    /// Policies made before actions have no such counters: none.
    pub fn action_counters(&self, p: &Policy) -> Result<BTreeMap<u32, ActionCounters>> {
        let acted: Vec<u32> = p
            .rules
            .iter()
            .filter(|r| r.spec.action.is_some())
            .map(|r| r.id)
            .collect();
        self.action_totals(p, &self.pin_dir(&p.name), &acted)
    }

    /// Whether the policy's maps keep action counters: policies made
    /// before actions have no `action_stats` map (their programs count
    /// into one of their own, which nothing reads) until their next rule
    /// change moves them onto maps that have one ([`Policies::commit`]).
    pub fn keeps_action_counters(&self, name: &str) -> bool {
        self.pin_dir(name).join(pins::filter::ACTION_STATS).exists()
    }

    /// What the actions of rules `ids` of `p` did: what `p` carried, and
    /// what the `action_stats` map pinned in `dir` counts in their slots
    /// of both generations (nothing when there is no such map).
    fn action_totals(
        &self,
        p: &Policy,
        dir: &Path,
        ids: &[u32],
    ) -> Result<BTreeMap<u32, ActionCounters>> {
        let pin = dir.join(pins::filter::ACTION_STATS);
        let mut out: BTreeMap<u32, ActionCounters> = ids
            .iter()
            .map(|id| (*id, p.carried_actions.get(id).copied().unwrap_or_default()))
            .collect();
        if ids.is_empty() || !pin.exists() {
            return Ok(out);
        }
        let map = open_map(&pin)?;
        let per_gen = p.rule_slots();
        for id in ids {
            let slot = p.slot_of(*id);
            let c = out.entry(*id).or_default();
            for g in [0, 1] {
                let [done, failed, loops] =
                    crate::percpu::sum(&map, g * per_gen + slot).map_err(|e| map_err(&pin, e))?;
                c.add(&ActionCounters {
                    done,
                    failed,
                    loops,
                });
            }
        }
        Ok(out)
    }

    /// The non-zero entries among `entries` (generation and slot folded
    /// in) of the policy's `action_stats` map, summed over CPUs, as
    /// [`Step::RestoreCounters`] puts them back (none without the map).
    fn read_action_entries(&self, p: &Policy, entries: &[u32]) -> Result<Vec<(u32, [u64; 4])>> {
        let pin = self.pin_dir(&p.name).join(pins::filter::ACTION_STATS);
        if entries.is_empty() || !pin.exists() {
            return Ok(Vec::new());
        }
        let map = open_map(&pin)?;
        let mut out = Vec::new();
        for &e in entries {
            let [done, failed, loops] =
                crate::percpu::sum(&map, e).map_err(|e| map_err(&pin, e))?;
            if done | failed | loops != 0 {
                out.push((e, [done, failed, loops, 0]));
            }
        }
        Ok(out)
    }

    /// The non-zero counter entries among `entries` (generation and slot
    /// folded in) of the policy's counter map, summed over CPUs.
    fn read_entries(&self, p: &Policy, entries: &[u32]) -> Result<Vec<(u32, [u64; 4])>> {
        let (Some(&lo), Some(&hi)) = (entries.iter().min(), entries.iter().max()) else {
            return Ok(Vec::new());
        };
        let pin = self.pin_dir(&p.name).join(pins::filter::RULE_STATS);
        let map = open_map(&pin)?;
        // Many entries: one batch call over their range.
        let batch = if entries.len() > 64 {
            read_batch(&map, lo, hi - lo + 1)
        } else {
            None
        };
        let mut out = Vec::new();
        for &e in entries {
            let c = match batch.as_ref().and_then(|b| b.get((e - lo) as usize)) {
                Some(c) => *c,
                None => read_slot(&map, &pin, e)?,
            };
            if c != RuleCounters::default() {
                out.push((e, [c.packets, c.bytes, c.logged, c.suppressed]));
            }
        }
        Ok(out)
    }

    /// The journal of `p`'s rules file.
    fn journal_path(&self, p: &Policy) -> PathBuf {
        self.records_dir()
            .join(format!("{}.journal.{}", p.name, p.rules_version))
    }

    /// Writes `entry` as entry `p.journal_len` of the journal (what a
    /// killed change left past the entries the record counts goes first).
    fn append_journal(&self, p: &Policy, entry: &[u8]) -> Result<()> {
        use std::{
            io::Write,
            os::unix::fs::{FileExt, OpenOptionsExt},
        };
        let path = self.journal_path(p);
        let at = rules_file::journal_bytes(p.journal_len);
        let write = || -> std::io::Result<()> {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)?;
            f.set_len(at)?;
            f.write_all_at(entry, at)?;
            f.flush()?;
            f.sync_all()
        };
        write().map_err(|e| {
            StateError::Io {
                path: path.clone(),
                reason: e.to_string(),
            }
            .into()
        })
    }

    /// Commits `change` (with `next_id` the next new rule id): the new
    /// rules are compiled into the idle generation, which is flipped live
    /// in one write for every route the policy is on. Counters: a rule
    /// counts in its slot of both generations, so rules that stay keep
    /// counting where they are; a slot a new rule takes is zeroed in the
    /// idle generation before the flip and in the other once nobody counts
    /// there any more. The record: one journal entry for a rule added or
    /// deleted, a new rules file for a replace (or a long journal). A rule
    /// set that does not fit the policy's maps grows them
    /// ([`Policies::grow`]).
    fn commit(&self, txn: &Txn, old: Policy, change: Change, next_id: u32) -> Result<Policy> {
        let replace = matches!(change, Change::Replace(_));
        let after = self.commit_rules(txn, old, change, next_id)?;
        if !replace {
            return Ok(after);
        }
        // A replace makes the paths the old rules needed unneeded: the
        // programs are swapped for ones without them (no packet walks the
        // old generation any more). One-rule changes keep the wider
        // programs until then: each swap loads and verifies a program per
        // attachment. Best effort: the wider programs judge the same.
        let needs = self.live_needs(&after)?;
        if needs == after.program_spec() {
            return Ok(after);
        }
        let name = after.name.clone();
        match self.respecialise(txn, after, needs) {
            Ok(p) => Ok(p),
            Err(e) => {
                tracing::warn!("policy {name} keeps its wider programs: {e}");
                self.get(&name)
            }
        }
    }

    /// What the live generation of `p` (its rules, compiled in its cells)
    /// needs of the program.
    fn live_needs(&self, p: &Policy) -> Result<ProgramSpec> {
        let pin = self.pin_dir(&p.name).join(pins::filter::CELLS);
        let total = 2 * p.cells as usize;
        let header = read_cells(&pin, (p.generation * p.cells) as usize, 1, total)?;
        Ok(spec::needs(&p.rules, &header))
    }

    /// [`Policies::commit`] of the rules: the cells, counters and records,
    /// on programs that have every path the old and new rules need.
    fn commit_rules(&self, txn: &Txn, old: Policy, change: Change, next_id: u32) -> Result<Policy> {
        let live = old.generation;
        let next = live ^ 1;
        let slots_per_gen = old.rule_slots();
        let mut after = old.clone();
        after.next_id = next_id;
        after.generation = next;
        after.both_generations = true;
        // Counter entries to zero before the flip, and slot ranges of the
        // old live generation to zero after it.
        let mut pre: Vec<u32> = Vec::new();
        let mut post: Vec<(u32, u32)> = Vec::new();
        let mut entry = None;
        // A one-rule change patches the live cells instead of compiling
        // every rule again.
        let one = match &change {
            Change::Add(rule, slot) => Some((rule.clone(), *slot, true)),
            Change::Del(id) => old
                .rules
                .iter()
                .find(|r| r.id == *id)
                .map(|r| (r.clone(), old.slot_of(*id), false)),
            Change::Replace(_) => None,
        };
        match change {
            Change::Add(rule, slot) => {
                // Nobody counts in a free slot: both generations now.
                pre = vec![live * slots_per_gen + slot, next * slots_per_gen + slot];
                entry = Some(rules_file::add_entry(&rule, slot));
                after.slots.insert(rule.id, slot);
                after.rules.push(rule);
            }
            Change::Del(id) => {
                after.rules.retain(|r| r.id != id);
                after.slots.remove(&id);
                after.carried.remove(&id);
                after.carried_extra.remove(&id);
                after.carried_actions.remove(&id);
                entry = Some(rules_file::del_entry(id));
            }
            Change::Replace(rules) => {
                let n = rules.len() as u32;
                after.slots = rules.iter().zip(1..).map(|(r, s)| (r.id, s)).collect();
                after.rules = rules;
                after.carried.retain(|id, _| *id == 0);
                after.carried_extra.retain(|id, _| *id == 0);
                after.carried_actions.clear();
                pre = (1..=n).map(|s| next * slots_per_gen + s).collect();
                post = vec![(1, n)];
            }
        }
        let patched = one.map(|(rule, slot, add)| {
            let change = if add {
                patch::Change::Add(&rule, slot)
            } else {
                patch::Change::Del(&rule, slot)
            };
            timed("patch", || self.patch(&old, &after, change))
        });
        let cells = match patched {
            Some(Ok(cells)) => cells,
            Some(Err(why)) => {
                tracing::debug!(?why, "the change is compiled whole");
                timed("compile", || self.compile(&after, &after.rules))?
            }
            None => timed("compile", || self.compile(&after, &after.rules))?,
        };
        // The programs must serve both generations until the flip: a
        // path the new rules need and the programs lack comes first.
        let wide = old.program_spec().union(spec::needs(&after.rules, &cells));
        after.spec = Some(wide);
        let top = after.all_slots().max().unwrap_or(0);
        let (capacity, ncells) =
            sizes_for(&after, top, cells.len()).ok_or_else(|| FilterError::TooBig {
                policy: after.name.clone(),
                needs: cells.len(),
                holds: MAX_CELLS,
            })?;
        // A policy made before action counters moves onto maps that have
        // them the way a growing policy moves: new maps, a program on them
        // swapped into every attachment, under one intent.
        let without_actions = !self.keeps_action_counters(&old.name);
        if (capacity, ncells) != (after.capacity, after.cells) || without_actions {
            after.capacity = capacity;
            after.cells = ncells;
            return self.grow(txn, old, after, &cells);
        }
        // Programs with the paths the new rules need and the attached ones
        // lack: staged now (a kill leaves staging the namespace sweeps),
        // swapped onto every route right before the flip under the
        // change's intent: a kill before the flip swaps the old programs
        // back, after it finishes the swaps.
        let mut widening = if wide == old.program_spec() {
            None
        } else {
            let mut rtnl = Rtnl::open()?;
            let routes = self.attached_routes(txn, &mut rtnl, &old.name)?;
            let moves = timed("specialise", || {
                self.stage_programs(&old.name, &self.pin_dir(&old.name), wide, &routes)
            })?;
            Some((rtnl, moves))
        };
        // A record written before both generations counted: what its rules
        // counted so far goes to `carried`, both generations start over.
        let migrating = !old.both_generations;
        let kept: Vec<u32> = if migrating {
            let before: std::collections::HashSet<u32> = old.rules.iter().map(|r| r.id).collect();
            std::iter::once(0)
                .chain(
                    after
                        .rules
                        .iter()
                        .map(|r| r.id)
                        .filter(|id| before.contains(id)),
                )
                .collect()
        } else {
            Vec::new()
        };
        if migrating {
            pre = (0..slots_per_gen)
                .map(|s| next * slots_per_gen + s)
                .collect();
            post = vec![(0, slots_per_gen)];
            entry = None;
            after.carried = nonzero(self.totals(&old, &self.pin_dir(&old.name), &kept)?);
            after.carried_extra.clear();
        }
        // What the entries to zero hold (for a replace, the idle
        // generation's counts of the rules it replaces): zeroed only once
        // the intent can put them back, so a change that fails or is
        // killed before its flip loses no count.
        let held = timed("counters", || self.read_entries(&after, &pre))?;
        let held_actions = timed("counters", || self.read_action_entries(&after, &pre))?;

        // The flip is the change: once the config map says `next`, the new
        // rules are live and the record must say so, even if lwt is killed
        // right after.
        let mut intent = Intent::new(
            "lwt filter",
            Probe::Generation {
                config: self.pin_dir(&after.name).join(pins::filter::CONFIG),
                after: next,
            },
        );
        if !post.is_empty() {
            let ranges: Vec<(u32, u32)> = post
                .iter()
                .map(|(first, n)| (live * slots_per_gen + first, *n))
                .collect();
            intent.done.push(Step::ZeroCounters {
                pin: self.pin_dir(&after.name).join(pins::filter::RULE_STATS),
                ranges: ranges.clone(),
            });
            let actions = self.pin_dir(&after.name).join(pins::filter::ACTION_STATS);
            if actions.exists() {
                intent.done.push(Step::ZeroCounters {
                    pin: actions,
                    ranges,
                });
            }
        }
        if !held.is_empty() {
            intent.undone.push(Step::RestoreCounters {
                pin: self.pin_dir(&after.name).join(pins::filter::RULE_STATS),
                entries: held,
            });
        }
        if !held_actions.is_empty() {
            intent.undone.push(Step::RestoreCounters {
                pin: self.pin_dir(&after.name).join(pins::filter::ACTION_STATS),
                entries: held_actions,
            });
        }
        if let Some((_, moves)) = &widening {
            self.swap_steps(txn, moves, &mut intent)?;
        }
        let journaled = entry
            .filter(|_| old.rules_file.is_some() && old.journal_len < JOURNAL_MAX && !migrating);
        let pending = timed("records", || -> Result<_> {
            if let Some(entry) = &journaled {
                timed("records.journal", || self.append_journal(&old, entry))?;
                after.journal_len = old.journal_len + rules_file::entries_of(entry);
                intent.done.push(txn.put_step(&after)?);
            } else {
                let carried = after.carried.clone();
                let (new_file, old_file) = self.write_rules(&mut after, &carried)?;
                intent.done.push(txn.put_step(&after)?);
                if let Some(path) = old_file {
                    intent.done.push(Step::Remove { path });
                    intent.done.push(Step::Remove {
                        path: self.journal_path(&old),
                    });
                }
                intent.undone.push(Step::Remove { path: new_file });
            }
            timed("records.intent", || txn.intend(intent))
        })?;
        failpoint("filter-commit:intent");
        if let Err(e) = timed("counters", || self.zero_entries(&after, &pre)) {
            txn.finish(pending, Outcome::Undone)?;
            return Err(e);
        }
        failpoint("filter-commit:zeroed");
        if let Some((rtnl, moves)) = widening.as_mut().filter(|(_, m)| !m.is_empty()) {
            if let Err(e) = timed("specialise", || {
                self.swap_all(rtnl, &old.name, moves, || failpoint("filter-widen:swap"))
            }) {
                txn.finish(pending, Outcome::Undone)?;
                return Err(e);
            }
            // One grace period: no packet runs the old programs, which
            // lack paths the new rules need, when the flip comes.
            flipped();
            wait_for_readers();
        }
        if let Err(e) = timed("publish", || self.publish(&old, &cells)) {
            txn.finish(pending, Outcome::Undone)?;
            return Err(e);
        }
        failpoint("filter-commit:flip");
        // What the old generation counted between the first read and the
        // flip: in the record itself, so the rules file is written once.
        let exact = if migrating {
            Some(timed("counters", || {
                self.totals(&old, &self.pin_dir(&old.name), &kept)
            })?)
        } else {
            None
        };
        timed("records", || {
            timed("records.finish", || txn.finish(pending, Outcome::Done))
        })?;
        if let Some(exact) = exact {
            after.carried_extra = extra_of(&nonzero(exact.clone()), &after.carried);
            after.carried = nonzero(exact);
            if !after.carried_extra.is_empty() {
                timed("records", || self.save(txn, &after))?;
            }
        }
        Ok(after)
    }

    /// Commits `rules` into bigger maps (`p` has the new capacity and
    /// cells, `cells` is `rules` compiled), on every route and hook the
    /// policy is attached to, with no moment without the filter:
    ///
    /// 1. New maps are made in a staging directory; the live generation
    ///    gets the cells packets walk now (copied: they hold no absolute
    ///    index), the idle one `rules`; its config says the live one.
    /// 2. For each attachment a filter program is loaded on the new maps
    ///    (and on the hook's own counters map, so `lwt stats` goes on) and
    ///    pinned beside the live one.
    /// 3. The intent names every step for both outcomes; a mark file is
    ///    the commit point (its probe): before it, a kill undoes; after
    ///    it, recovery finishes the swaps.
    /// 4. Each route is replaced in place with the new program on its
    ///    hooks (only if it still carries what its record names). Packets
    ///    are judged by the same rules before and after.
    /// 5. Once no packet walks the old maps, the new maps' config flips to
    ///    the new rules: one write for every route at once.
    /// 6. Counters: what the old maps counted, and the new maps' live
    ///    generation during the swaps, are carried; then the staged pins
    ///    replace the old ones and the records follow.
    fn grow(&self, txn: &Txn, old: Policy, mut after: Policy, cells: &[Cell]) -> Result<Policy> {
        let name = after.name.clone();
        let live = old.generation;
        let next = live ^ 1;
        let dir = self.pin_dir(&name);
        let stage = self.stage_dir(&name);
        let mark = self.records_dir().join(format!("{name}.grow"));
        let mut rtnl = Rtnl::open()?;
        let routes = self.attached_routes(txn, &mut rtnl, &name)?;
        let mut cleanup = vec![Step::RemoveTree {
            path: stage.clone(),
        }];
        for (_, rec, hooks) in &routes {
            for hook in hooks {
                cleanup.push(Step::RemoveTree {
                    path: staged_hook_dir(&rec.hooks[hook].pin, *hook),
                });
            }
        }
        cleanup.push(Step::Remove { path: mark.clone() });
        let mut intent = Intent::new(
            "lwt filter grow",
            Probe::Record {
                path: mark.clone(),
                json: GROW_MARK.into(),
            },
        );
        intent.done = cleanup.clone();
        intent.undone = cleanup.clone();
        let mut pending = txn.intend(intent)?;
        failpoint("filter-grow:intent");

        let staged = timed("grow", || {
            self.stage_growth(&old, &after, cells, &stage, &routes)
        });
        let moves = match staged {
            Ok(m) => m,
            Err(e) => {
                txn.finish(pending, Outcome::Undone)?;
                return Err(e);
            }
        };
        // What the rules that stay (and the default) counted in the old
        // maps: carried, since the new maps start at zero.
        let before: std::collections::HashSet<u32> = old.rules.iter().map(|r| r.id).collect();
        let kept: Vec<u32> = std::iter::once(0)
            .chain(
                after
                    .rules
                    .iter()
                    .map(|r| r.id)
                    .filter(|id| before.contains(id)),
            )
            .collect();
        let early = match self.totals(&old, &dir, &kept) {
            Ok(c) => nonzero(c),
            Err(e) => {
                txn.finish(pending, Outcome::Undone)?;
                return Err(e);
            }
        };
        // The same for what their actions did (rules without an action
        // count nothing there).
        let acted: Vec<u32> = kept
            .iter()
            .copied()
            .filter(|id| acts(&after, *id))
            .collect();
        let early_actions = match self.action_totals(&old, &dir, &acted) {
            Ok(c) => nonzero_actions(c),
            Err(e) => {
                txn.finish(pending, Outcome::Undone)?;
                return Err(e);
            }
        };
        after.carried_actions = early_actions.clone();
        let (new_file, old_file) = match timed("records", || self.write_rules(&mut after, &early)) {
            Ok(files) => files,
            Err(e) => {
                txn.finish(pending, Outcome::Undone)?;
                return Err(e);
            }
        };
        after.carried = early;

        let mut done = Vec::new();
        let mut undone = Vec::new();
        for m in &moves {
            done.push(Step::SwapHooks {
                dst: m.key.dst,
                table: m.key.table,
                before: m.before.clone(),
                swaps: m.swaps.clone(),
            });
            undone.push(Step::SwapHooks {
                dst: m.key.dst,
                table: m.key.table,
                before: marks_after(&m.before, &m.swaps),
                swaps: m.back.clone(),
            });
        }
        done.push(Step::MapPut {
            pin: stage.join(pins::filter::CONFIG),
            key: crate::ns::intent::hex(&0u32.to_ne_bytes()),
            value: crate::ns::intent::hex(config_bytes(&config_of(&after, next))),
        });
        // Until the flip the new maps' live generation runs the old rules,
        // whose counts in the slots of new rules must not count for them.
        let fresh: Vec<u32> = after
            .rules
            .iter()
            .filter(|r| !before.contains(&r.id))
            .map(|r| live * after.rule_slots() + after.slot_of(r.id))
            .collect();
        let fresh = ranges_of(fresh);
        done.push(Step::ZeroCounters {
            pin: stage.join(pins::filter::ACTION_STATS),
            ranges: fresh.clone(),
        });
        done.push(Step::ZeroCounters {
            pin: stage.join(pins::filter::RULE_STATS),
            ranges: fresh,
        });
        for m in &moves {
            done.extend(m.renames.iter().cloned());
            done.push(txn.put_step(&m.record)?);
            // A stand-in local route's watch knows it by its programs.
            if let Some(mut w) = txn.get::<Watch>(&m.key.record_key())? {
                w.marks = marks_after(&m.before, &m.swaps);
                done.push(txn.put_step(&w)?);
            }
        }
        done.push(Step::Rename {
            from: stage.clone(),
            to: dir.clone(),
        });
        done.push(txn.put_step(&after)?);
        if let Some(path) = old_file {
            done.push(Step::Remove { path });
            done.push(Step::Remove {
                path: self.journal_path(&old),
            });
        }
        done.push(Step::Remove { path: mark.clone() });
        undone.extend(cleanup);
        undone.push(Step::Remove { path: new_file });
        let mut intent = Intent::new(
            "lwt filter grow",
            Probe::Record {
                path: mark.clone(),
                json: GROW_MARK.into(),
            },
        );
        intent.done = done;
        intent.undone = undone;
        timed("records", || txn.amend(&mut pending, intent))?;
        failpoint("filter-grow:staged");

        // The commit point: from here a kill finishes the growth.
        if let Err(e) = crate::ns::store::write_atomic(&mark, GROW_MARK.as_bytes()) {
            txn.finish(pending, Outcome::Undone)?;
            return Err(e);
        }
        let swapped = timed("grow", || -> Result<()> {
            for (i, m) in moves.iter().enumerate() {
                match swap_hooks(&mut rtnl, &m.key, &m.before, &m.swaps) {
                    Ok(Swapped::Done) => {}
                    Ok(Swapped::NotOurs { found }) => {
                        tracing::warn!(route = %m.key, ?found, "a route of policy {name} changed outside lwtkit; left alone");
                    }
                    Err(e) => {
                        return Err(e);
                    }
                }
                if i == 0 {
                    failpoint("filter-grow:swap");
                }
            }
            // Every route runs the new maps: the new rules go live
            // everywhere at once (a packet still on the old maps is judged
            // by the old rules, as before the flip).
            write_config(&stage, &config_of(&after, next))
        });
        if let Err(e) = swapped {
            txn.finish(pending, Outcome::Undone)?;
            return Err(e);
        }
        failpoint("filter-grow:flip");
        // One grace period: no packet runs the old programs or walks the
        // new maps' old generation any more.
        flipped();
        wait_for_readers();
        // The rules that stay count on in the new maps' slots; what they
        // counted in the old maps is final now.
        let exact = self.totals(&old, &dir, &kept).map(nonzero);
        let exact_actions = self.action_totals(&old, &dir, &acted).map(nonzero_actions);
        timed("records", || txn.finish(pending, Outcome::Done))?;
        let mut changed = false;
        if let Ok(exact) = exact {
            after.carried_extra = extra_of(&exact, &after.carried);
            after.carried = exact;
            changed |= !after.carried_extra.is_empty();
        }
        if let Ok(exact) = exact_actions {
            changed |= exact != early_actions;
            after.carried_actions = exact;
        }
        if changed {
            self.save(txn, &after)?;
        }
        Ok(after)
    }

    /// Swaps a program specialised as `spec` onto every route and hook
    /// policy `p` is attached to, on the same maps, with no moment without
    /// the filter, and records `spec` as the policy's: what a change that
    /// needs a path the programs lack does first (`spec` then covers the
    /// old generation and the new), and what a replace that leaves paths
    /// unneeded does after its flip. The rules are untouched: packets are
    /// judged alike before and after.
    ///
    /// As a growth ([`Policies::grow`]) without new maps: the programs are
    /// loaded and pinned beside the live ones, the intent names every step
    /// for both outcomes, a mark file is the commit point (before it a
    /// kill undoes, after it recovery finishes the swaps), then each route
    /// is replaced in place and the staged pins and records follow.
    fn respecialise(&self, txn: &Txn, mut p: Policy, spec: ProgramSpec) -> Result<Policy> {
        // Called after a change, whose record names its rules file.
        debug_assert!(p.rules_file.is_some() || p.rules.is_empty());
        let name = p.name.clone();
        let mark = self.records_dir().join(format!("{name}.spec"));
        let mut rtnl = Rtnl::open()?;
        let routes = self.attached_routes(txn, &mut rtnl, &name)?;
        if routes.is_empty() {
            // Nothing runs the policy: the record alone says what the next
            // attachment loads.
            p.spec = Some(spec);
            txn.put(&p)?;
            return Ok(p);
        }
        let mut cleanup = Vec::new();
        for (_, rec, hooks) in &routes {
            for hook in hooks {
                cleanup.push(Step::RemoveTree {
                    path: staged_hook_dir(&rec.hooks[hook].pin, *hook),
                });
            }
        }
        cleanup.push(Step::Remove { path: mark.clone() });
        let probe = || Probe::Record {
            path: mark.clone(),
            json: SPEC_MARK.into(),
        };
        let mut intent = Intent::new("lwt filter specialise", probe());
        intent.done = cleanup.clone();
        intent.undone = cleanup.clone();
        let mut pending = txn.intend(intent)?;
        failpoint("filter-narrow:intent");
        tracing::debug!(policy = %name, from = ?p.spec, to = ?spec, "specialising the policy's programs");
        let staged = timed("specialise", || {
            self.stage_programs(&name, &self.pin_dir(&name), spec, &routes)
        });
        let moves = match staged {
            Ok(m) => m,
            Err(e) => {
                txn.finish(pending, Outcome::Undone)?;
                return Err(e);
            }
        };
        p.spec = Some(spec);
        let mut intent = Intent::new("lwt filter specialise", probe());
        self.swap_steps(txn, &moves, &mut intent)?;
        let (mut done, mut undone) = (intent.done, intent.undone);
        done.push(txn.put_step(&p)?);
        done.push(Step::Remove { path: mark.clone() });
        undone.extend(cleanup);
        let mut intent = Intent::new("lwt filter specialise", probe());
        intent.done = done;
        intent.undone = undone;
        txn.amend(&mut pending, intent)?;
        failpoint("filter-narrow:staged");

        // The commit point: from here a kill finishes the swaps.
        if let Err(e) = crate::ns::store::write_atomic(&mark, SPEC_MARK.as_bytes()) {
            txn.finish(pending, Outcome::Undone)?;
            return Err(e);
        }
        let swapped = timed("specialise", || {
            self.swap_all(&mut rtnl, &name, &moves, || failpoint("filter-narrow:swap"))
        });
        if let Err(e) = swapped {
            txn.finish(pending, Outcome::Undone)?;
            return Err(e);
        }
        // One grace period: no packet runs the old programs any more (the
        // caller may flip to rules they lack).
        flipped();
        wait_for_readers();
        timed("records", || txn.finish(pending, Outcome::Done))?;
        Ok(p)
    }

    /// The steps of swapping `moves`' staged programs in, for both
    /// outcomes of `intent`: done, each route swapped (if it still carries
    /// what it did), the staged pins in place and the records; undone, the
    /// old programs back and the staging gone.
    fn swap_steps(&self, txn: &Txn, moves: &[Move], intent: &mut Intent) -> Result<()> {
        for m in moves {
            intent.done.push(Step::SwapHooks {
                dst: m.key.dst,
                table: m.key.table,
                before: m.before.clone(),
                swaps: m.swaps.clone(),
            });
            intent.undone.push(Step::SwapHooks {
                dst: m.key.dst,
                table: m.key.table,
                before: marks_after(&m.before, &m.swaps),
                swaps: m.back.clone(),
            });
        }
        for m in moves {
            intent.done.extend(m.renames.iter().cloned());
            intent.done.push(txn.put_step(&m.record)?);
            // A stand-in local route's watch knows it by its programs.
            if let Some(mut w) = txn.get::<Watch>(&m.key.record_key())? {
                w.marks = marks_after(&m.before, &m.swaps);
                intent.done.push(txn.put_step(&w)?);
            }
            for r in &m.renames {
                if let Step::Rename { from, .. } = r {
                    intent.undone.push(Step::RemoveTree { path: from.clone() });
                }
            }
        }
        Ok(())
    }

    /// Replaces every route of `moves` in place with its staged programs
    /// (a route changed outside lwtkit meanwhile is left alone), calling
    /// `after_first` (a failpoint) after the first.
    fn swap_all(
        &self,
        rtnl: &mut Rtnl,
        name: &str,
        moves: &[Move],
        after_first: impl Fn(),
    ) -> Result<()> {
        for (i, m) in moves.iter().enumerate() {
            match swap_hooks(rtnl, &m.key, &m.before, &m.swaps)? {
                Swapped::Done => {}
                Swapped::NotOurs { found } => {
                    tracing::warn!(route = %m.key, ?found, "a route of policy {name} changed outside lwtkit; left alone");
                }
            }
            if i == 0 {
                after_first();
            }
        }
        Ok(())
    }

    /// The routes policy `name` runs on that are still lwtkit's (a route
    /// gone or changed outside lwtkit is left alone), with its hooks there.
    fn attached_routes(
        &self,
        txn: &Txn,
        rtnl: &mut Rtnl,
        name: &str,
    ) -> Result<Vec<(RouteKey, RouteRecord, Vec<Hook>)>> {
        let mut out = Vec::new();
        for rec in txn.all::<RouteRecord>()? {
            let hooks: Vec<Hook> = rec
                .hooks
                .iter()
                .filter(|(_, h)| matches!(&h.origin, Origin::Filter { policy } if policy == name))
                .map(|(hook, _)| *hook)
                .collect();
            if hooks.is_empty() {
                continue;
            }
            let key = RouteKey {
                dst: rec.dst,
                table: rec.table,
            };
            let current = rtnl.lookup(&key)?;
            if attach::standing(&rec, current.as_ref()) != Standing::Ours {
                tracing::warn!(route = %key, "policy {name} grows without a route changed outside lwtkit");
                continue;
            }
            out.push((key, rec, hooks));
        }
        Ok(out)
    }

    /// Steps 1 and 2 of [`Policies::grow`]: the new maps in `stage` and a
    /// program on them for every hook of `routes`, pinned beside the live one.
    fn stage_growth(
        &self,
        old: &Policy,
        p: &Policy,
        cells: &[Cell],
        stage: &Path,
        routes: &[(RouteKey, RouteRecord, Vec<Hook>)],
    ) -> Result<Vec<Move>> {
        let live = old.generation;
        crate::ns::store::remove_tree(stage)?;
        self.create_maps_in(p, stage)?;
        let old_cells = read_cells(
            &self.pin_dir(&p.name).join(pins::filter::CELLS),
            (live * old.cells) as usize,
            old.cells as usize,
            (2 * old.cells) as usize,
        )?;
        let new_cells = stage.join(pins::filter::CELLS);
        let total = (2 * p.cells) as usize;
        write_cells(&new_cells, (live * p.cells) as usize, &old_cells, total)?;
        write_cells(&new_cells, ((live ^ 1) * p.cells) as usize, cells, total)?;
        write_config(stage, &config_of(p, live))?;
        self.stage_programs(&p.name, stage, p.program_spec(), routes)
    }

    /// A filter program for every hook of `routes`, on the policy's maps
    /// pinned in `maps` and specialised as `spec`, pinned beside the live
    /// one (and on the hook's own counters map, so `lwt stats` goes on):
    /// what each route's swap needs.
    fn stage_programs(
        &self,
        name: &str,
        maps: &Path,
        spec: ProgramSpec,
        routes: &[(RouteKey, RouteRecord, Vec<Hook>)],
    ) -> Result<Vec<Move>> {
        let mut moves = Vec::new();
        for (key, rec, hooks) in routes {
            let mut m = Move {
                key: key.clone(),
                record: rec.clone(),
                before: attach::record_marks(rec),
                swaps: Vec::new(),
                back: Vec::new(),
                renames: Vec::new(),
            };
            for hook in hooks {
                let h = &rec.hooks[hook];
                let live_dir = h.pin.parent().map(Path::to_path_buf).unwrap_or_default();
                let staged = staged_hook_dir(&h.pin, *hook);
                let mut program = self.program_on(name, maps, spec);
                if let Some(c) = &h.counters {
                    program
                        .maps_to_reuse
                        .push((lwtkit_common::maps::ATTACH_STATS.into(), c.clone()));
                }
                let mut loaded = loader::load(&ProgramSource::Builtin(program), *hook)?;
                crate::ns::store::remove_tree(&staged)?;
                crate::ns::store::ensure_dir(&staged)?;
                let pinned = loaded.pin(&staged)?;
                m.record.hooks.insert(
                    *hook,
                    HookRecord {
                        name: loaded.route_name.clone(),
                        pin: live_dir.join(pins::program::PROG),
                        counters: pinned
                            .counters
                            .map(|_| live_dir.join(pins::program::COUNTERS)),
                        origin: h.origin.clone(),
                        object_sha256: None,
                    },
                );
                m.swaps.push(HookSwap {
                    hook: *hook,
                    pin: pinned.pin,
                    name: loaded.route_name.clone(),
                });
                m.back.push(HookSwap {
                    hook: *hook,
                    pin: h.pin.clone(),
                    name: h.name.clone(),
                });
                m.renames.push(Step::Rename {
                    from: staged,
                    to: live_dir,
                });
            }
            moves.push(m);
        }
        Ok(moves)
    }

    /// What rules `ids` of `p` (0: the default) counted in all, by id: what
    /// `p` carried, and what the maps pinned in `dir` count in their slots
    /// (both generations; the live one only for records written before).
    fn totals(&self, p: &Policy, dir: &Path, ids: &[u32]) -> Result<BTreeMap<u32, RuleCounters>> {
        let pin = dir.join(pins::filter::RULE_STATS);
        let slots: Vec<u32> = ids.iter().map(|id| p.slot_of(*id)).collect();
        let mut gens = vec![p.generation];
        if p.both_generations {
            gens.push(p.generation ^ 1);
        }
        let mut out: BTreeMap<u32, RuleCounters> = ids
            .iter()
            .map(|id| (*id, p.carried.get(id).copied().unwrap_or_default()))
            .collect();
        for g in gens {
            let now = read_generation(&pin, g, p.rule_slots(), &slots)?;
            for (id, n) in ids.iter().zip(now) {
                out.entry(*id).or_default().add(&n);
            }
        }
        Ok(out)
    }

    /// `lwt filter rule add`: returns the new rule. It gets the policy's
    /// next id (ids are never reused) and a free counter slot; a full
    /// policy grows.
    pub fn add_rule(&self, txn: &Txn, name: &str, spec: RuleSpec) -> Result<Rule> {
        let p = timed("read", || self.get(name))?;
        if p.rules.len() as u64 >= u64::from(MAX_CAPACITY) {
            return Err(FilterError::Full {
                policy: name.into(),
                capacity: MAX_CAPACITY,
            }
            .into());
        }
        let id = p.next_rule_id();
        let next_id = id
            .checked_add(1)
            .ok_or_else(|| FilterError::IdsExhausted(name.into()))?;
        let slot = p.free_slot();
        let rule = Rule { id, spec };
        self.commit(txn, p, Change::Add(rule.clone(), slot), next_id)?;
        Ok(rule)
    }

    /// `lwt filter rule del`.
    pub fn del_rule(&self, txn: &Txn, name: &str, id: u32) -> Result<Rule> {
        let p = timed("read", || self.get(name))?;
        let gone = p
            .rules
            .iter()
            .find(|r| r.id == id)
            .cloned()
            .ok_or_else(|| FilterError::NoRule {
                policy: name.into(),
                id,
            })?;
        let next_id = p.next_rule_id();
        self.commit(txn, p, Change::Del(id), next_id)?;
        Ok(gone)
    }

    /// `lwt filter replace`: the whole rule set at once. The new rules get
    /// new ids, in file order, continuing from the policy's next id (so
    /// none carries an old rule's counters), and counter slots 1, 2, ...;
    /// a policy too small for them grows.
    pub fn replace(&self, txn: &Txn, name: &str, specs: Vec<RuleSpec>) -> Result<Policy> {
        let p = timed("read", || self.get(name))?;
        if specs.len() as u64 > u64::from(MAX_CAPACITY) {
            return Err(FilterError::TooManyRules {
                policy: name.into(),
                rules: specs.len(),
                capacity: MAX_CAPACITY,
            }
            .into());
        }
        let first = p.next_rule_id();
        let next_id = u32::try_from(specs.len())
            .ok()
            .and_then(|n| first.checked_add(n))
            .ok_or_else(|| FilterError::TooFewIds {
                policy: name.into(),
                rules: specs.len(),
            })?;
        let rules: Vec<Rule> = specs
            .into_iter()
            .zip(first..)
            .map(|(spec, id)| Rule { id, spec })
            .collect();
        self.commit(txn, p, Change::Replace(rules), next_id)
    }

    /// `lwt filter delete`: only when no route uses it (the caller checks).
    pub fn delete(&self, txn: &Txn, name: &str) -> Result<()> {
        self.get(name)?;
        let pins = self.pin_dir(name);
        let mut intent = Intent::new(
            "lwt filter delete",
            Probe::Unpinned {
                path: pins.join(pins::filter::CONFIG),
            },
        );
        intent.done = vec![txn.remove_step::<Policy>(name)];
        // Its rules files, and any a killed change left behind.
        let ours = [format!("{name}.rules."), format!("{name}.journal.")];
        for e in fs::read_dir(self.records_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            let file = e.file_name().to_string_lossy().into_owned();
            if ours.iter().any(|o| file.starts_with(o)) {
                intent.done.push(Step::Remove { path: e.path() });
            }
        }
        let pending = txn.intend(intent)?;
        if let Err(e) = crate::ns::store::remove_tree(&pins) {
            txn.finish(pending, Outcome::Undone)?;
            return Err(e);
        }
        failpoint("filter-delete:pins");
        txn.finish(pending, Outcome::Done)
    }

    /// Bytes the kernel says the policy's own maps hold (cells, config,
    /// per-CPU counters; not the namespace's shared event ring buffer):
    /// the sum of each map's `memlock` in its fdinfo, which kernels since
    /// 6.4 compute from the map's own memory-usage callback.
    pub fn map_bytes(&self, name: &str) -> Result<u64> {
        let dir = self.pin_dir(name);
        let mut total = 0;
        for (_, file) in pins::filter::MAPS {
            let pin = dir.join(file);
            if *file == pins::filter::ACTION_STATS && !pin.exists() {
                continue;
            }
            let map = open_map(&pin)?;
            let fdinfo = format!("/proc/self/fdinfo/{}", map.as_fd().as_raw_fd());
            let text = fs::read_to_string(&fdinfo).map_err(|e| StateError::Io {
                path: fdinfo.clone().into(),
                reason: e.to_string(),
            })?;
            total += text
                .lines()
                .find_map(|l| l.strip_prefix("memlock:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
        }
        Ok(total)
    }

    /// Per-rule counters of a policy, summed over CPUs and generations, by
    /// rule id; id 0 is the packets the default verdict judged.
    pub fn rule_counters(&self, p: &Policy) -> Result<Vec<(u32, RuleCounters)>> {
        let ids: Vec<u32> = std::iter::once(0)
            .chain(p.rules.iter().map(|r| r.id))
            .collect();
        let totals = self.totals(p, &self.pin_dir(&p.name), &ids)?;
        Ok(ids
            .into_iter()
            .map(|id| (id, totals.get(&id).copied().unwrap_or_default()))
            .collect())
    }
}

/// One change of a policy's rules.
enum Change {
    /// A new rule, in a free counter slot.
    Add(Rule, u32),
    /// Rule `id` goes.
    Del(u32),
    /// Every rule at once (new ids; counter slots 1, 2, ...).
    Replace(Vec<Rule>),
}

/// Journal entries a rules file takes before a change writes a new one.
const JOURNAL_MAX: u32 = 4096;

/// Sorted entries as `(first, count)` runs.
fn ranges_of(mut entries: Vec<u32>) -> Vec<(u32, u32)> {
    entries.sort_unstable();
    let mut out: Vec<(u32, u32)> = Vec::new();
    for e in entries {
        match out.last_mut() {
            Some((first, n)) if *first + *n == e => *n += 1,
            _ => out.push((e, 1)),
        }
    }
    out
}

/// Counters without the zero ones.
/// Whether rule `id` of `p` has an action (counts in `action_stats`).
fn acts(p: &Policy, id: u32) -> bool {
    p.rules
        .iter()
        .any(|r| r.id == id && r.spec.action.is_some())
}

fn nonzero_actions(c: BTreeMap<u32, ActionCounters>) -> BTreeMap<u32, ActionCounters> {
    c.into_iter()
        .filter(|(_, c)| *c != ActionCounters::default())
        .collect()
}

fn nonzero(c: BTreeMap<u32, RuleCounters>) -> BTreeMap<u32, RuleCounters> {
    c.into_iter()
        .filter(|(_, v)| *v != RuleCounters::default())
        .collect()
}

/// Runs `f`, logging how long it took as `phase` at debug level under
/// the `lwtkit::timing` target (`LWT_LOG=lwtkit::timing=debug`): where a
/// change's time goes, for `lwtkit-bench changes`.
pub(crate) fn timed<T>(phase: &str, f: impl FnOnce() -> T) -> T {
    let t = std::time::Instant::now();
    let out = f();
    tracing::debug!(target: "lwtkit::timing", phase, us = t.elapsed().as_micros() as u64);
    out
}

/// What a growing policy does to one route.
struct Move {
    key: RouteKey,
    /// The route's record once its hooks run the new programs.
    record: RouteRecord,
    /// The programs the route carries now (its record's).
    before: Marks,
    /// The new programs, staged.
    swaps: Vec<HookSwap>,
    /// The programs to put back if the growth is undone.
    back: Vec<HookSwap>,
    /// Staged hook pins into place.
    renames: Vec<Step>,
}

/// The text of the mark file that commits a growth.
const GROW_MARK: &str = "growing\n";

/// The text of the mark file that commits a swap of specialised programs.
const SPEC_MARK: &str = "specialising\n";

/// Where a hook's new program is staged: `<hook>_next` beside the live
/// `<hook>` directory of the program pinned at `pin` (swept once no
/// intent covers it).
fn staged_hook_dir(pin: &Path, hook: Hook) -> PathBuf {
    let live = pin.parent().unwrap_or(pin);
    live.with_file_name(format!("{}_next", hook.as_str()))
}

/// What `exact` holds beyond `early` (counters only grow), non-zero only.
fn extra_of(
    exact: &BTreeMap<u32, RuleCounters>,
    early: &BTreeMap<u32, RuleCounters>,
) -> BTreeMap<u32, RuleCounters> {
    exact
        .iter()
        .filter_map(|(id, e)| {
            let b = early.get(id).copied().unwrap_or_default();
            let d = RuleCounters {
                packets: e.packets.saturating_sub(b.packets),
                bytes: e.bytes.saturating_sub(b.bytes),
                logged: e.logged.saturating_sub(b.logged),
                suppressed: e.suppressed.saturating_sub(b.suppressed),
            };
            (d != RuleCounters::default()).then_some((*id, d))
        })
        .collect()
}

/// Fills `p`'s rules, slots and carried counters from the rules file its
/// record names in `dir` (records written before rules files hold them
/// inline).
pub fn load_rules(dir: &Path, p: &mut Policy) -> Result<()> {
    let Some(file) = &p.rules_file else {
        p.carried = p.carried_extra.clone();
        return Ok(());
    };
    let read = |path: &Path| {
        fs::read(path).map_err(|e| StateError::Io {
            path: path.into(),
            reason: e.to_string(),
        })
    };
    let path = dir.join(file);
    let mut data = rules_file::decode(&read(&path)?).map_err(|reason| StateError::Io {
        path: path.clone(),
        reason,
    })?;
    if p.journal_len > 0 {
        let path = dir.join(format!("{}.journal.{}", p.name, p.rules_version));
        rules_file::replay(&mut data, &read(&path)?, p.journal_len)
            .map_err(|reason| StateError::Io { path, reason })?;
    }
    p.rules = data.rules;
    p.slots = data.slots;
    p.carried = data.carried;
    for (id, c) in &p.carried_extra {
        p.carried.entry(*id).or_default().add(c);
    }
    Ok(())
}

/// What generation `generation` of the counter map pinned at `pin` (of
/// `per_gen` slots a generation) counted in `slots`, summed over CPUs, in
/// the order given.
fn read_generation(
    pin: &Path,
    generation: u32,
    per_gen: u32,
    slots: &[u32],
) -> Result<Vec<RuleCounters>> {
    let map = open_map(pin)?;
    let base = generation * per_gen;
    // Many slots: the whole generation in one batch call rather than one
    // call per rule.
    let all = if slots.len() > 64 {
        read_batch(&map, base, per_gen)
    } else {
        None
    };
    slots
        .iter()
        .map(|s| match all.as_ref().and_then(|a| a.get(*s as usize)) {
            Some(c) => Ok(*c),
            None => read_slot(&map, pin, base + s),
        })
        .collect()
}

/// Reads one counter slot, summed over CPUs.
fn read_slot(map: &MapHandle, pin: &Path, slot: u32) -> Result<RuleCounters> {
    let [packets, bytes, logged, suppressed] =
        crate::percpu::sum(map, slot).map_err(|e| map_err(pin, e))?;
    Ok(RuleCounters {
        packets,
        bytes,
        logged,
        suppressed,
    })
}

/// The generation packets are judged by now, as the policy's config map
/// (pinned at `config`) says: the kernel's truth, not the record's.
pub fn live_generation(config: &Path) -> Result<u32> {
    live_settings(config).map(|c| c.generation)
}

/// What a policy's config map holds now.
pub struct LiveConfig {
    pub generation: u32,
    /// For packets no rule matches.
    pub default: Verdict,
    /// The fragment and malformed settings (`None`: a config map written
    /// before they existed).
    pub handling: Option<(Fragments, Malformed)>,
}

/// Reads the live generation and settings from the config map pinned at
/// `config` (also from a map older than the settings).
pub fn live_settings(config: &Path) -> Result<LiveConfig> {
    let map = open_map(config)?;
    let value = map
        .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
        .map_err(|e| map_err(config, e))?
        .ok_or_else(|| StateError::MissingPin(config.into()))?;
    let word = |i: usize| -> Option<u32> {
        value
            .get(4 * i..4 * i + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_ne_bytes)
    };
    let generation = word(0).ok_or_else(|| StateError::MissingPin(config.into()))?;
    let default = match word(std::mem::offset_of!(PolicyConfig, default_drop) / 4) {
        Some(0) => Verdict::Allow,
        Some(_) => Verdict::Drop,
        None => return Err(StateError::MissingPin(config.into()).into()),
    };
    let handling = word(std::mem::offset_of!(PolicyConfig, fragments_drop) / 4)
        .zip(word(
            std::mem::offset_of!(PolicyConfig, malformed_default) / 4,
        ))
        .map(|(f, m)| {
            (
                if f != 0 {
                    Fragments::Drop
                } else {
                    Fragments::Pass
                },
                if m != 0 {
                    Malformed::Default
                } else {
                    Malformed::Drop
                },
            )
        });
    Ok(LiveConfig {
        generation,
        default,
        handling,
    })
}

/// The config map's value for policy `p` with live generation `generation`.
pub(crate) fn config_of(p: &Policy, generation: u32) -> PolicyConfig {
    PolicyConfig {
        generation,
        capacity: p.cells,
        default_drop: u32::from(p.default == Verdict::Drop),
        policy_id: p.id,
        log_rate: LOG_RATE,
        log_burst: LOG_BURST,
        rule_slots: p.rule_slots(),
        fragments_drop: u32::from(p.fragments == Fragments::Drop),
        malformed_default: u32::from(p.malformed == Malformed::Default),
    }
}

/// Writes the config map of the policy whose maps are pinned in `dir`.
fn write_config(dir: &Path, config: &PolicyConfig) -> Result<()> {
    let cfg_map = open_map(&dir.join(pins::filter::CONFIG))?;
    if cfg_map.value_size() as usize != size_of::<PolicyConfig>() {
        // Made before the fragment and malformed settings existed.
        return Err(StateError::Io {
            path: dir.join(pins::filter::CONFIG),
            reason: format!(
                "the policy's config map holds {} bytes, this lwtkit writes {}: the policy was made by an older lwtkit; recreate it",
                cfg_map.value_size(),
                size_of::<PolicyConfig>()
            ),
        }
        .into());
    }
    cfg_map
        .update(&0u32.to_ne_bytes(), config_bytes(config), MapFlags::ANY)
        .map_err(|e| map_err(dir, e))
}

/// A config as the bytes of the map value.
pub(crate) fn config_bytes(config: &PolicyConfig) -> &[u8] {
    // SAFETY: PolicyConfig is plain u32 fields, no padding.
    unsafe {
        std::slice::from_raw_parts(
            (config as *const PolicyConfig).cast::<u8>(),
            size_of::<PolicyConfig>(),
        )
    }
}

/// The whole config map value of a policy (pinned at `config`).
pub(crate) fn live_config(config: &Path) -> Result<PolicyConfig> {
    let map = open_map(config)?;
    let value = map
        .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
        .map_err(|e| map_err(config, e))?
        .filter(|v| v.len() == size_of::<PolicyConfig>())
        .ok_or_else(|| StateError::MissingPin(config.into()))?;
    let mut c = PolicyConfig::default();
    // SAFETY: PolicyConfig is plain u32 fields; the length is checked above.
    unsafe {
        std::ptr::copy_nonoverlapping(
            value.as_ptr(),
            (&mut c as *mut PolicyConfig).cast::<u8>(),
            value.len(),
        );
    }
    Ok(c)
}

/// Reads `n` cells from cell `at` of the cells map pinned at `pin`, which
/// holds `total` cells: the rule set the kernel walks, for `lwt check`.
pub(crate) fn read_cells(pin: &Path, at: usize, n: usize, total: usize) -> Result<Vec<Cell>> {
    let map = open_map(pin)?;
    let err = |e: std::io::Error| -> Error {
        StateError::Io {
            path: pin.into(),
            reason: format!("mmap: {e}"),
        }
        .into()
    };
    if at + n > total {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "cells past the end of the map",
        )));
    }
    // SAFETY: maps the cells asked for of the array map (created
    // BPF_F_MMAPABLE) shared and read only, reads within them, unmaps.
    unsafe {
        let (base, len, skip) = map_cells(map.as_fd(), at, n, libc::PROT_READ).map_err(err)?;
        let cells =
            std::slice::from_raw_parts(base.cast::<u8>().add(skip).cast::<Cell>(), n).to_vec();
        libc::munmap(base, len);
        Ok(cells)
    }
}

/// Maps cells `at..at + n` of an mmap-able cells map (whole pages around
/// them, populated at once rather than page by page): the mapping, its
/// length and the byte offset of cell `at` in it.
///
/// # Safety
/// The caller unmaps it and stays within the `n` cells.
unsafe fn map_cells(
    fd: std::os::fd::BorrowedFd<'_>,
    at: usize,
    n: usize,
    prot: libc::c_int,
) -> std::io::Result<(*mut libc::c_void, usize, usize)> {
    let start = at * size_of::<Cell>();
    let offset = start / 4096 * 4096;
    let len = (start + n * size_of::<Cell>() - offset)
        .next_multiple_of(4096)
        .max(4096);
    // SAFETY: a fresh shared mapping of the map's fd; the caller's contract.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            fd.as_raw_fd(),
            offset as libc::off_t,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    Ok((base, len, start - offset))
}

fn open_map(pin: &Path) -> Result<MapHandle> {
    MapHandle::from_pinned_path(pin).map_err(|_| StateError::MissingPin(pin.into()).into())
}

fn map_err(path: &Path, e: libbpf_rs::Error) -> Error {
    StateError::Io {
        path: path.into(),
        reason: e.to_string(),
    }
    .into()
}

/// Writes `cells` at cell `at` of the mmap-able cells map pinned at `pin`.
fn write_cells(pin: &Path, at: usize, cells: &[Cell], total: usize) -> Result<()> {
    let map = open_map(pin)?;
    write_cells_fd(map.as_fd(), at, cells, total).map_err(|e| {
        StateError::Io {
            path: pin.into(),
            reason: format!("mmap: {e}"),
        }
        .into()
    })
}

/// Writes `cells` at cell `at` of an mmap-able array map of `total` cells.
pub(crate) fn write_cells_fd(
    fd: std::os::fd::BorrowedFd<'_>,
    at: usize,
    cells: &[Cell],
    total: usize,
) -> std::io::Result<()> {
    if at + cells.len() > total {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "cells past the end of the map",
        ));
    }
    if cells.is_empty() {
        return Ok(());
    }
    // SAFETY: maps the cells written of the array map (created
    // BPF_F_MMAPABLE) shared, writes within them, unmaps before returning.
    unsafe {
        let (base, len, skip) = map_cells(fd, at, cells.len(), libc::PROT_READ | libc::PROT_WRITE)?;
        std::ptr::copy_nonoverlapping(
            cells.as_ptr(),
            base.cast::<u8>().add(skip).cast::<Cell>(),
            cells.len(),
        );
        libc::munmap(base, len);
    }
    Ok(())
}

/// Entries `from..from + n` of the per-CPU counter map, summed over CPUs,
/// by `BPF_MAP_LOOKUP_BATCH` (per-CPU arrays have it since Linux 5.6);
/// `None` when the kernel refuses it (the caller reads entry by entry).
fn read_batch(map: &MapHandle, from: u32, n: u32) -> Option<Vec<RuleCounters>> {
    let cpus = libbpf_rs::num_possible_cpus().ok()?;
    let per_cpu = (map.value_size() as usize).next_multiple_of(8);
    let elem = per_cpu * cpus;
    let mut keys = vec![0u32; n as usize];
    let mut values = vec![0u8; n as usize * elem];
    let opts = libbpf_rs::libbpf_sys::bpf_map_batch_opts {
        sz: size_of::<libbpf_rs::libbpf_sys::bpf_map_batch_opts>() as _,
        ..Default::default()
    };
    let mut got = 0usize;
    // The batch starts after the key `in_batch` names (none: at key 0).
    let mut prev: Option<u32> = from.checked_sub(1);
    while got < n as usize {
        let mut count = n - got as u32;
        let mut out = 0u32;
        // SAFETY: `keys` and `values` have room for `count` more keys and
        // per-CPU values from index `got`; `prev` and `out` are u32 keys.
        let rc = unsafe {
            libbpf_rs::libbpf_sys::bpf_map_lookup_batch(
                map.as_fd().as_raw_fd(),
                prev.as_mut()
                    .map_or(std::ptr::null_mut(), |p| (p as *mut u32).cast()),
                (&mut out as *mut u32).cast(),
                keys[got..].as_mut_ptr().cast(),
                values[got * elem..].as_mut_ptr().cast(),
                &mut count,
                &opts,
            )
        };
        if count == 0 || (rc != 0 && got + (count as usize) < n as usize && rc != -libc::ENOENT) {
            return None;
        }
        got += count as usize;
        prev = Some(out);
    }
    // Keys must be exactly from..from + n, in order.
    if keys.iter().zip(from..).any(|(k, want)| *k != want) {
        return None;
    }
    Some(
        values
            .chunks_exact(elem)
            .map(|v| {
                let mut c = RuleCounters::default();
                for cpu in v.chunks_exact(per_cpu) {
                    let word = |i: usize| {
                        cpu.get(8 * i..8 * i + 8)
                            .and_then(|b| b.try_into().ok())
                            .map_or(0, u64::from_ne_bytes)
                    };
                    c.add(&RuleCounters {
                        packets: word(0),
                        bytes: word(1),
                        logged: word(2),
                        suppressed: word(3),
                    });
                }
                c
            })
            .collect(),
    )
}
