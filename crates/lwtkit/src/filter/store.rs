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
    fs,
    os::fd::{AsFd, AsRawFd},
    path::{Path, PathBuf},
};

use libbpf_rs::{MapCore, MapFlags, MapHandle, ObjectBuilder};
use lwtkit_common::{
    filter::{Cell, PolicyConfig, RuleStats},
    maps::filter as maps,
    pins,
};
use serde::{Deserialize, Serialize};

use super::{
    compile::compile_with_slots,
    handling::{Fragments, Handling, Malformed},
    rule::{Rule, RuleSpec, Verdict},
};
use crate::{
    builtin,
    error::{Error, FilterError, LoadError, Result, StateError},
    loader::{last_line, BuiltinSpec, LibbpfLog},
    ns::{failpoint, Intent, Outcome, Probe, Step, Txn},
    state::{NetnsState, Origin},
};

/// Rules a policy holds unless `--capacity` says otherwise.
pub const DEFAULT_CAPACITY: u32 = 16_384;
/// The largest `--capacity`.
pub const MAX_CAPACITY: u32 = 1 << 22;
/// Cells reserved per rule of capacity in each generation (tree nodes,
/// leaf lists, the rule itself); measured at ~6-10 for mixed rule sets.
const CELLS_PER_RULE: u32 = 8;
const MIN_CELLS: u32 = 65_536;
/// Default event rate limit per rule and CPU.
pub const LOG_RATE: u32 = 100;
pub const LOG_BURST: u32 = 200;

/// What lwtkit keeps about a policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub id: u32,
    pub name: String,
    pub default: Verdict,
    /// Most rules held at once (counter slots run 1..=capacity; rule ids
    /// are not bounded by it).
    pub capacity: u32,
    /// Cells per generation.
    pub cells: u32,
    pub generation: u32,
    pub rules: Vec<Rule>,
    /// What earlier generations counted for rules that carried over (and,
    /// under 0, for the default): added to the live generation's counters.
    #[serde(default)]
    pub carried: std::collections::BTreeMap<u32, RuleCounters>,
    /// The id the next new rule gets: ids only grow, so an id never names
    /// two rules (a `rule del N` cannot hit a rule added since). 0 in
    /// records written before ids were kept monotonic: then one past the
    /// highest id.
    #[serde(default)]
    pub next_id: u32,
    /// Each rule's counter slot in 1..=capacity, by rule id. Rules missing
    /// here (records written before slots) count in the slot of their id,
    /// which was then at most `capacity`.
    #[serde(default)]
    pub slots: std::collections::BTreeMap<u32, u32>,
    /// What happens to non-first fragments (records written before this
    /// setting: pass).
    #[serde(default)]
    pub fragments: Fragments,
    /// What happens to malformed packets (records written before this
    /// setting: drop).
    #[serde(default)]
    pub malformed: Malformed,
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

    /// The counter slot of rule `id`.
    pub fn slot_of(&self, id: u32) -> u32 {
        self.slots.get(&id).copied().unwrap_or(id)
    }

    /// A counter slot no current rule uses (the policy is not full).
    fn free_slot(&self) -> Option<u32> {
        let used: std::collections::BTreeSet<u32> =
            self.rules.iter().map(|r| self.slot_of(r.id)).collect();
        (1..=self.capacity).find(|s| !used.contains(s))
    }
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

    fn record_path(&self, name: &str) -> PathBuf {
        self.state
            .dir()
            .join("filters")
            .join(format!("{name}.json"))
    }

    /// bpffs directory of a policy's maps.
    pub fn pin_dir(&self, name: &str) -> PathBuf {
        self.state.pin_root().join(pins::filter::DIR).join(name)
    }

    /// The namespace's event ring buffer.
    pub fn events_pin(&self) -> PathBuf {
        self.state.pin_root().join(pins::EVENTS)
    }

    /// The filter program of policy `name`, for the loader: on the
    /// policy's pinned maps and the namespace's event ring buffer, named
    /// `lwtkit-filter-<policy>` on the route.
    pub fn program(&self, name: &str) -> BuiltinSpec {
        let dir = self.pin_dir(name);
        let mut maps_to_reuse: Vec<(String, PathBuf)> = pins::filter::MAPS
            .iter()
            .map(|(map, file)| (map.to_string(), dir.join(file)))
            .collect();
        maps_to_reuse.push((maps::EVENTS.into(), self.events_pin()));
        BuiltinSpec {
            name: "filter".into(),
            route_name: format!("lwtkit-filter-{name}"),
            maps_to_reuse,
            constants: Vec::new(),
            origin: Origin::Filter {
                policy: name.into(),
            },
        }
    }

    pub fn get(&self, name: &str) -> Result<Policy> {
        validate_name(name)?;
        let path = self.record_path(name);
        let bytes = fs::read(&path).map_err(|_| FilterError::UnknownPolicy(name.into()))?;
        let mut policy: Policy = serde_json::from_slice(&bytes).map_err(|e| StateError::Io {
            path,
            reason: e.to_string(),
        })?;
        // Which half packets walk, and what happens to fragments and
        // malformed packets, is the kernel's to say: a command killed
        // between the config map and the record would otherwise make the
        // next change write into the live half (or undo a setting).
        if let Ok(cfg) = live_settings(&self.pin_dir(name).join(pins::filter::CONFIG)) {
            policy.generation = cfg.generation;
            if let Some((fragments, malformed)) = cfg.handling {
                policy.fragments = fragments;
                policy.malformed = malformed;
            }
        }
        Ok(policy)
    }

    pub fn all(&self) -> Result<Vec<Policy>> {
        let dir = self.state.dir().join("filters");
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
            next_id: 1,
            slots: Default::default(),
            fragments: handling.fragments,
            malformed: handling.malformed,
        };
        let mut created = policy.clone();
        created.generation = 1;
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
            .create_maps(&policy)
            .and_then(|()| self.publish(&policy, &policy.rules));
        if let Err(e) = made {
            txn.finish(pending, Outcome::Undone)?;
            return Err(e);
        }
        failpoint("filter-create:maps");
        self.save(txn, &created)?;
        txn.finish(pending, Outcome::Done)?;
        Ok(created)
    }

    fn create_maps(&self, p: &Policy) -> Result<()> {
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
                maps::RULE_STATS => m.set_max_entries(2 * p.rule_slots()).map_err(load_err)?,
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
        let dir = self.pin_dir(&p.name);
        fs::create_dir_all(&dir).map_err(|e| StateError::Io {
            path: dir.clone(),
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

    /// Compiles `rules` into the idle generation, resets the counters of
    /// `fresh` rule ids, flips the generation and waits out readers of the
    /// old one. Nothing live changes if compiling fails.
    fn publish(&self, p: &Policy, rules: &[Rule]) -> Result<()> {
        let compiled = compile_with_slots(rules, |r| p.slot_of(r.id)).map_err(|reason| {
            FilterError::Compile {
                policy: p.name.clone(),
                reason,
            }
        })?;
        if compiled.cells.len() > p.cells as usize {
            return Err(FilterError::TooBig {
                policy: p.name.clone(),
                needs: compiled.cells.len(),
                holds: p.cells,
            }
            .into());
        }
        let dir = self.pin_dir(&p.name);
        let next = p.generation ^ 1;
        write_cells(
            &dir.join(pins::filter::CELLS),
            (next * p.cells) as usize,
            &compiled.cells,
            (p.cells * 2) as usize,
        )?;
        write_config(&dir, &config_of(p, next))?;
        wait_for_readers();
        Ok(())
    }

    /// `lwt filter set`: changes what happens to non-first fragments and
    /// malformed packets (`None`: keep), live on every route the policy is
    /// on. The config map is rewritten with the same generation, so
    /// packets see the old or the new setting, and the rules unchanged.
    pub fn set_handling(
        &self,
        txn: &Txn,
        name: &str,
        fragments: Option<Fragments>,
        malformed: Option<Malformed>,
    ) -> Result<Policy> {
        let mut p = self.get(name)?;
        p.fragments = fragments.unwrap_or(p.fragments);
        p.malformed = malformed.unwrap_or(p.malformed);
        let dir = self.pin_dir(name);
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
        let pending = txn.intend(intent)?;
        if let Err(e) = write_config(&dir, &config_of(&p, p.generation)) {
            txn.finish(pending, Outcome::Undone)?;
            return Err(e);
        }
        failpoint("filter-set:config");
        txn.finish(pending, Outcome::Done)?;
        Ok(p)
    }

    /// Zeroes the counter `slots` of generation `generation`.
    fn zero_slots(
        &self,
        p: &Policy,
        generation: u32,
        slots: impl Iterator<Item = u32>,
    ) -> Result<()> {
        let pin = self.pin_dir(&p.name).join(pins::filter::RULE_STATS);
        let map = open_map(&pin)?;
        let cpus = libbpf_rs::num_possible_cpus().map_err(|e| map_err(&pin, e))?;
        let entries: Vec<u32> = slots.map(|s| generation * p.rule_slots() + s).collect();
        if zero_batch(&map, &entries, cpus) {
            return Ok(());
        }
        let zero = vec![vec![0u8; size_of::<RuleStats>()]; cpus];
        for entry in entries {
            map.update_percpu(&entry.to_ne_bytes(), &zero, MapFlags::ANY)
                .map_err(|e| map_err(&pin, e))?;
        }
        Ok(())
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

    /// Commits a new rule list whose counter slots are `slots` (by rule
    /// id) and whose next new id is `next_id`: the idle generation's
    /// counters of those slots are zeroed (a reused slot starts from zero),
    /// the rules compiled and swapped in; then what the old generation
    /// counted for rules that carry over (same id and spec, so the same
    /// slot) and for the default is folded into `carried`, so counters
    /// neither reset nor mix when rules change.
    fn commit(
        &self,
        txn: &Txn,
        mut p: Policy,
        rules: Vec<Rule>,
        slots: std::collections::BTreeMap<u32, u32>,
        next_id: u32,
    ) -> Result<Policy> {
        let old_p = p.clone();
        let old = p.generation;
        let next = old ^ 1;
        p.slots = slots;
        p.next_id = next_id;
        self.zero_slots(
            &p,
            next,
            std::iter::once(0).chain(rules.iter().map(|r| p.slot_of(r.id))),
        )?;
        // The flip is the change: once the config map says `next`, the new
        // rules are live and the record must say so, even if lwt is killed
        // right after (then the counters carried over are those read here,
        // short of the exact ones read after the flip by what the old
        // generation counts in between).
        let mut early = p.clone();
        early.generation = next;
        early.rules = rules.clone();
        early.carried = self.carry(&old_p, &rules)?;
        let mut intent = Intent::new(
            "lwt filter",
            Probe::Generation {
                config: self.pin_dir(&p.name).join(pins::filter::CONFIG),
                after: next,
            },
        );
        intent.done = vec![txn.put_step(&early)?];
        let pending = txn.intend(intent)?;
        failpoint("filter-commit:intent");
        if let Err(e) = self.publish(&p, &rules) {
            txn.finish(pending, Outcome::Undone)?;
            return Err(e);
        }
        failpoint("filter-commit:flip");
        p.carried = self.carry(&old_p, &rules)?;
        p.generation = next;
        p.rules = rules;
        self.save(txn, &p)?;
        txn.discard(pending)?;
        Ok(p)
    }

    /// What `old` counted (its generation and what it carried), for the
    /// default and for the rules of `rules` that carry over from it (same
    /// id and spec, so the same slot): the `carried` of the next record.
    fn carry(
        &self,
        old: &Policy,
        rules: &[Rule],
    ) -> Result<std::collections::BTreeMap<u32, RuleCounters>> {
        let pin = self.pin_dir(&old.name).join("rule_stats");
        let map = open_map(&pin)?;
        let base = old.generation * old.rule_slots();
        // By id, so finding what carries over is linear, not rules x rules.
        let before: std::collections::HashMap<u32, &Rule> =
            old.rules.iter().map(|r| (r.id, r)).collect();
        let carried: Vec<(u32, u32)> = std::iter::once((0, 0))
            .chain(
                rules
                    .iter()
                    .filter(|r| before.get(&r.id).is_some_and(|o| *o == *r))
                    .map(|r| (r.id, old.slot_of(r.id))),
            )
            .collect();
        // Many slots: the whole generation in one batch call rather than
        // one call per rule.
        let all = if carried.len() > 64 {
            read_batch(&map, base, old.rule_slots())
        } else {
            None
        };
        carried
            .into_iter()
            .map(|(id, slot)| {
                let mut c = old.carried.get(&id).copied().unwrap_or_default();
                match all.as_ref().and_then(|a| a.get(slot as usize)) {
                    Some(now) => c.add(now),
                    None => c.add(&Self::read_slot(&map, &pin, base + slot)?),
                }
                Ok((id, c))
            })
            .collect()
    }

    /// `lwt filter rule add`: returns the new rule. It gets the policy's
    /// next id (ids are never reused) and a free counter slot.
    pub fn add_rule(&self, txn: &Txn, name: &str, spec: RuleSpec) -> Result<Rule> {
        let p = self.get(name)?;
        let full = || FilterError::Full {
            policy: name.into(),
            capacity: p.capacity,
        };
        if p.rules.len() as u32 >= p.capacity {
            return Err(full().into());
        }
        let id = p.next_rule_id();
        let next_id = id
            .checked_add(1)
            .ok_or_else(|| FilterError::IdsExhausted(name.into()))?;
        let slot = p.free_slot().ok_or_else(full)?;
        let rule = Rule { id, spec };
        let mut rules = p.rules.clone();
        rules.push(rule.clone());
        let mut slots: std::collections::BTreeMap<u32, u32> =
            p.rules.iter().map(|r| (r.id, p.slot_of(r.id))).collect();
        slots.insert(id, slot);
        self.commit(txn, p, rules, slots, next_id)?;
        Ok(rule)
    }

    /// `lwt filter rule del`.
    pub fn del_rule(&self, txn: &Txn, name: &str, id: u32) -> Result<Rule> {
        let p = self.get(name)?;
        let gone = p
            .rules
            .iter()
            .find(|r| r.id == id)
            .cloned()
            .ok_or_else(|| FilterError::NoRule {
                policy: name.into(),
                id,
            })?;
        let rules: Vec<Rule> = p.rules.iter().filter(|r| r.id != id).cloned().collect();
        let slots = rules.iter().map(|r| (r.id, p.slot_of(r.id))).collect();
        let next_id = p.next_rule_id();
        self.commit(txn, p, rules, slots, next_id)?;
        Ok(gone)
    }

    /// `lwt filter replace`: the whole rule set at once. The new rules get
    /// new ids, in file order, continuing from the policy's next id (so
    /// none carries an old rule's counters), and counter slots 1, 2, ...
    pub fn replace(&self, txn: &Txn, name: &str, specs: Vec<RuleSpec>) -> Result<Policy> {
        let p = self.get(name)?;
        if specs.len() as u64 > u64::from(p.capacity) {
            return Err(FilterError::TooManyRules {
                policy: name.into(),
                rules: specs.len(),
                capacity: p.capacity,
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
        let slots = rules.iter().zip(1..).map(|(r, s)| (r.id, s)).collect();
        self.commit(txn, p, rules, slots, next_id)
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
        let pin = self.pin_dir(&p.name).join(pins::filter::RULE_STATS);
        let map = open_map(&pin)?;
        std::iter::once((0, 0))
            .chain(p.rules.iter().map(|r| (r.id, p.slot_of(r.id))))
            .map(|(id, slot)| {
                let mut c = Self::read_slot(&map, &pin, p.generation * p.rule_slots() + slot)?;
                if let Some(prev) = p.carried.get(&id) {
                    c.add(prev);
                }
                Ok((id, c))
            })
            .collect()
    }
}

/// The generation packets are judged by now, as the policy's config map
/// (pinned at `config`) says: the kernel's truth, not the record's.
pub fn live_generation(config: &Path) -> Result<u32> {
    live_settings(config).map(|c| c.generation)
}

/// What a policy's config map holds now.
pub struct LiveConfig {
    pub generation: u32,
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
        handling,
    })
}

/// The config map's value for policy `p` with live generation `generation`.
fn config_of(p: &Policy, generation: u32) -> PolicyConfig {
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
    let len = (total * size_of::<Cell>()).next_multiple_of(4096);
    // SAFETY: maps the whole array map (created BPF_F_MMAPABLE) shared and
    // read only, reads within its bounds (checked above), unmaps.
    unsafe {
        let base = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            map.as_fd().as_raw_fd(),
            0,
        );
        if base == libc::MAP_FAILED {
            return Err(err(std::io::Error::last_os_error()));
        }
        let cells = std::slice::from_raw_parts(base.cast::<Cell>().add(at), n).to_vec();
        libc::munmap(base, len);
        Ok(cells)
    }
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
    let len = (total * size_of::<Cell>()).next_multiple_of(4096);
    // SAFETY: maps the whole array map (created BPF_F_MMAPABLE) shared,
    // writes within its bounds (checked above), unmaps before returning.
    unsafe {
        let base = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        );
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        std::ptr::copy_nonoverlapping(cells.as_ptr(), base.cast::<Cell>().add(at), cells.len());
        libc::munmap(base, len);
    }
    Ok(())
}

/// Zeroes `entries` of the per-CPU counter map in one `BPF_MAP_UPDATE_BATCH`
/// (per-CPU arrays have it since Linux 5.6): one syscall instead of one
/// per rule. False when the kernel refuses it (the caller then goes entry
/// by entry; zeroing twice is harmless).
fn zero_batch(map: &MapHandle, entries: &[u32], cpus: usize) -> bool {
    let Ok(count) = u32::try_from(entries.len()) else {
        return false;
    };
    if count == 0 {
        return true;
    }
    // Each per-CPU value is the value rounded up to 8 bytes, once per
    // possible CPU.
    let elem = (map.value_size() as usize).next_multiple_of(8) * cpus;
    let zeros = vec![0u8; entries.len() * elem];
    let opts = libbpf_rs::libbpf_sys::bpf_map_batch_opts {
        sz: size_of::<libbpf_rs::libbpf_sys::bpf_map_batch_opts>() as _,
        ..Default::default()
    };
    let mut done = count;
    // SAFETY: `entries` holds `count` u32 keys and `zeros` `count` per-CPU
    // values of the map's size; the kernel reads only those.
    let rc = unsafe {
        libbpf_rs::libbpf_sys::bpf_map_update_batch(
            map.as_fd().as_raw_fd(),
            entries.as_ptr().cast(),
            zeros.as_ptr().cast(),
            &mut done,
            &opts,
        )
    };
    rc == 0 && done == count
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

/// Waits for an RCU grace period: after it, no BPF program that started
/// before the call is still running.
fn wait_for_readers() {
    const MEMBARRIER_CMD_GLOBAL: libc::c_long = 1;
    // SAFETY: membarrier takes no pointers.
    let rc = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) };
    if rc != 0 {
        // Without membarrier, wait far longer than any program runs.
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
