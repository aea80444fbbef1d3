//! Runs the kernel filter program on packets without any route, through
//! BPF_PROG_TEST_RUN: for the property test against the reference model and
//! for the per-packet benchmarks. Only read-only hooks' semantics are
//! involved; the filter never pushes an encapsulation, so test-running it is
//! safe on every hook.
use std::{
    os::fd::{AsFd, FromRawFd, OwnedFd},
    time::Duration,
};

use libbpf_rs::{MapCore, MapFlags, Object, ObjectBuilder, ProgramInput};
use lwtkit_common::{
    filter::{Cell, PolicyConfig, ProgramSpec, NO_RULE},
    maps::filter::{ACTION_STATS, CELLS, CONFIG, RULE_STATS, SPEC_SECTION},
};

use super::{
    compile::{compile_with_slots, Compiled},
    handling::{Fragments, Handling, Malformed},
    rule::{Rule, Verdict},
    spec,
    store::config_bytes,
};
use crate::{
    builtin,
    error::{Error, LoadError, Result},
    hook::Hook,
    loader::{last_line, LibbpfLog},
};

/// A loaded filter (or any built-in) program with its own, unpinned maps.
pub struct Harness {
    object: Object,
    entry: String,
    /// Rule ids by counter slot - 1: rule `ids[i]` counts in slot `i + 1`,
    /// as in a policy filled by `filter replace`.
    ids: Vec<u32>,
    /// Counter slot by rule id (the inverse of `ids`).
    slots_by_id: std::collections::HashMap<u32, u32>,
    /// The live generation and counter slots per generation.
    generation: u32,
    slots: u32,
}

fn err(what: &str, e: impl std::fmt::Display) -> Error {
    LoadError::Failed {
        program: "filter test harness".into(),
        reason: format!("{what}: {e}"),
    }
    .into()
}

impl Harness {
    /// The filter program for `hook`, holding `rules` in generation 0; the
    /// rule at index `i` counts in slot `i + 1`, whatever its id.
    pub fn filter(rules: &[Rule], default: Verdict, hook: Hook) -> Result<Self> {
        Self::filter_with(rules, &Handling::new(default), hook, 0)
    }

    /// As [`Harness::filter`], with the policy's fragment and malformed
    /// settings, the rules in generation `generation` (0 or 1) of a cells
    /// map holding two, as a policy's does.
    pub fn filter_with(
        rules: &[Rule],
        handling: &Handling,
        hook: Hook,
        generation: u32,
    ) -> Result<Self> {
        let (slots_by_id, compiled) = compiled(rules)?;
        Self::filter_cells(
            rules,
            &slots_by_id,
            &compiled.cells,
            handling,
            hook,
            generation,
        )
    }

    /// As [`Harness::filter_with`], the program specialised as `spec`
    /// (which must cover what the rules need) instead of for the rules.
    pub fn filter_as(
        rules: &[Rule],
        handling: &Handling,
        hook: Hook,
        spec: ProgramSpec,
    ) -> Result<Self> {
        let (slots_by_id, compiled) = compiled(rules)?;
        Self::filter_spec(
            rules,
            &slots_by_id,
            &compiled.cells,
            handling,
            hook,
            0,
            spec,
        )
    }

    /// As [`Harness::filter_with`], with cells made elsewhere (a policy
    /// changed one rule at a time, [`super::patch`]) in which rule `id`
    /// counts in slot `slots[id]`. The program is specialised for what
    /// `rules` and `cells` need ([`spec::needs`]), as a policy's would be
    /// after a replace with them.
    pub fn filter_cells(
        rules: &[Rule],
        slots: &std::collections::HashMap<u32, u32>,
        cells: &[Cell],
        handling: &Handling,
        hook: Hook,
        generation: u32,
    ) -> Result<Self> {
        let spec = spec::needs(rules, cells);
        Self::filter_spec(rules, slots, cells, handling, hook, generation, spec)
    }

    fn filter_spec(
        rules: &[Rule],
        slots: &std::collections::HashMap<u32, u32>,
        cells: &[Cell],
        handling: &Handling,
        hook: Hook,
        generation: u32,
        spec: ProgramSpec,
    ) -> Result<Self> {
        let generation = generation & 1;
        let top = rules
            .iter()
            .filter_map(|r| slots.get(&r.id))
            .copied()
            .max()
            .unwrap_or(0);
        let mut ids = vec![0u32; top as usize];
        for r in rules {
            if let Some(&s) = slots.get(&r.id) {
                ids[s as usize - 1] = r.id;
            }
        }
        let slots_by_id = slots.clone();
        let image = cells;
        let cells = image.len().max(16) as u32;
        let slots = top + 1;
        let spec = spec::bytes(spec);
        let mut h = Self::load("filter", hook, |name, m| match name {
            SPEC_SECTION => m.set_initial_value(&spec),
            CELLS => {
                m.set_max_entries(2 * cells)?;
                m.set_map_flags(libbpf_rs::libbpf_sys::BPF_F_MMAPABLE)
            }
            RULE_STATS | ACTION_STATS => m.set_max_entries(2 * slots),
            _ => Ok(()),
        })?;
        h.ids = ids;
        h.slots_by_id = slots_by_id;
        h.write_cells((generation * cells) as usize, image)?;
        h.generation = generation;
        h.slots = slots;
        let config = PolicyConfig {
            generation,
            capacity: cells,
            default_drop: u32::from(handling.default == Verdict::Drop),
            policy_id: 1,
            log_rate: 1,
            log_burst: 1,
            rule_slots: slots,
            fragments_drop: u32::from(handling.fragments == Fragments::Drop),
            malformed_default: u32::from(handling.malformed == Malformed::Default),
        };
        h.map(CONFIG)?
            .update(&0u32.to_ne_bytes(), config_bytes(&config), MapFlags::ANY)
            .map_err(|e| err("config", e))?;
        Ok(h)
    }

    /// A built-in without a policy (`pass`, `count`) for `hook`.
    pub fn builtin(name: &str, hook: Hook) -> Result<Self> {
        Self::load(name, hook, |_, _| Ok(()))
    }

    fn load(
        name: &str,
        hook: Hook,
        mut size: impl FnMut(&str, &mut libbpf_rs::OpenMapMut) -> libbpf_rs::Result<()>,
    ) -> Result<Self> {
        let b = builtin::find(name)
            .ok_or_else(|| LoadError::UnknownBuiltin(name.into(), builtin::names()))?;
        let entry = b
            .entry(hook)
            .ok_or_else(|| err("entry", format!("{name} has no {hook} program")))?;
        let bytes = b.object().to_vec();
        let log = LibbpfLog::capture();
        let open = ObjectBuilder::default().open_memory(&bytes);
        let loaded = open.and_then(|mut open| {
            for mut m in open.maps_mut() {
                let n = m.name().to_string_lossy().into_owned();
                size(&n, &mut m)?;
            }
            for mut p in open.progs_mut() {
                p.set_autoload(p.name().to_string_lossy() == entry);
            }
            open.load()
        });
        let messages = log.finish();
        let object = loaded.map_err(|e| err("load", format!("{e}: {}", last_line(&messages))))?;
        Ok(Self {
            object,
            entry: entry.into(),
            ids: Vec::new(),
            slots_by_id: Default::default(),
            generation: 0,
            slots: 0,
        })
    }

    fn map(&self, name: &str) -> Result<libbpf_rs::Map<'_>> {
        self.object
            .maps()
            .find(|m| m.name() == name)
            .ok_or_else(|| err("map", format!("no map {name}")))
    }

    fn write_cells(&self, at: usize, cells: &[Cell]) -> Result<()> {
        let map = self.map(CELLS)?;
        super::store::write_cells_fd(map.as_fd(), at, cells, map.max_entries() as usize)
            .map_err(|e| err("mmap cells", e))
    }

    /// Runs the program once on an L3 packet (an Ethernet header is added,
    /// as test-run needs one); returns the program's return code.
    pub fn run(&self, l3: &[u8]) -> Result<i32> {
        self.run_repeat(l3, 1).map(|(rc, _)| rc)
    }

    /// Runs the program once on an L3 packet; returns the program's return
    /// code and the packet as it left it (L3, the Ethernet header taken off
    /// again): what rewriting actions made of it.
    pub fn run_out(&self, l3: &[u8]) -> Result<(i32, Vec<u8>)> {
        let frame = ethernet_frame(l3);
        let prog = self
            .object
            .progs_mut()
            .find(|p| p.name().to_string_lossy() == self.entry)
            .ok_or_else(|| err("program", "missing"))?;
        let mut data = vec![0u8; frame.len() + 256];
        let input = ProgramInput {
            data_in: Some(&frame),
            data_out: Some(&mut data),
            repeat: 1,
            ..Default::default()
        };
        let out = prog.test_run(input).map_err(|e| err("test run", e))?;
        let rc = out.return_value as i32;
        let len = out.data.map_or(0, |d| d.len());
        data.truncate(len);
        Ok((rc, data.get(14..).map(<[u8]>::to_vec).unwrap_or_default()))
    }

    /// Runs `repeat` times; returns the code and the mean time per run.
    pub fn run_repeat(&self, l3: &[u8], repeat: u32) -> Result<(i32, Duration)> {
        let frame = ethernet_frame(l3);
        let prog = self
            .object
            .progs_mut()
            .find(|p| p.name().to_string_lossy() == self.entry)
            .ok_or_else(|| err("program", "missing"))?;
        let input = ProgramInput {
            data_in: Some(&frame),
            repeat,
            ..Default::default()
        };
        let out = prog.test_run(input).map_err(|e| err("test run", e))?;
        Ok((out.return_value as i32, out.duration))
    }

    /// The kernel's run-time statistics of the program: total ns spent in
    /// it and runs, counted only while [`enable_stats`] is held (the kernel
    /// times each run with `sched_clock` around the program alone).
    pub fn run_stats(&self) -> Result<(u64, u64)> {
        let prog = self
            .object
            .progs()
            .find(|p| p.name().to_string_lossy() == self.entry)
            .ok_or_else(|| err("program", "missing"))?;
        let info = crate::prog_info::info(prog.as_fd()).map_err(|e| err("prog info", e))?;
        Ok((info.run_time_ns, info.run_cnt))
    }

    /// The program's size: instructions after the verifier (8 bytes each)
    /// and bytes of machine code the JIT made.
    pub fn sizes(&self) -> Result<(u32, u32)> {
        let prog = self
            .object
            .progs()
            .find(|p| p.name().to_string_lossy() == self.entry)
            .ok_or_else(|| err("program", "missing"))?;
        let info = crate::prog_info::info(prog.as_fd()).map_err(|e| err("prog info", e))?;
        Ok((info.xlated_prog_len / 8, info.jited_prog_len))
    }

    /// Per-rule packet counters summed over CPUs, by counter slot: index 0
    /// is "no rule", index `i + 1` the rule at index `i`.
    pub fn rule_hits(&self) -> Result<Vec<u64>> {
        let map = self.map(RULE_STATS)?;
        let base = self.generation * self.slots;
        (0..=self.ids.len() as u32)
            .map(|slot| {
                let [packets] =
                    crate::percpu::sum(&map, base + slot).map_err(|e| err("rule stats", e))?;
                Ok(packets)
            })
            .collect()
    }

    /// The attachment's packet counters, by `verdict_slot`: allowed,
    /// dropped, malformed.
    pub fn verdict_counts(&self) -> Result<[u64; 3]> {
        let map = self.map(lwtkit_common::maps::ATTACH_STATS)?;
        let mut out = [0u64; 3];
        for (slot, n) in out.iter_mut().enumerate() {
            let [packets] =
                crate::percpu::sum(&map, slot as u32).map_err(|e| err("attach stats", e))?;
            *n = packets;
        }
        Ok(out)
    }

    /// Packets counted for the rule with id `rule` (`None`: no rule matched).
    pub fn hits_of(&self, rule: Option<u32>) -> Result<u64> {
        let map = self.map(RULE_STATS)?;
        let entry = self.generation * self.slots + self.slot_of(rule);
        let [packets] = crate::percpu::sum(&map, entry).map_err(|e| err("rule stats", e))?;
        Ok(packets)
    }

    /// The counter slot a decision for rule id `rule` lands in (0 for "no
    /// rule", or an id this harness does not hold).
    pub fn slot_of(&self, rule: Option<u32>) -> u32 {
        rule.filter(|r| *r != NO_RULE)
            .and_then(|id| self.slots_by_id.get(&id).copied())
            .unwrap_or(0)
    }
}

/// Turns on the kernel's per-program run-time statistics for as long as
/// the returned fd is open (`BPF_ENABLE_STATS`; the
/// `kernel.bpf_stats_enabled` sysctl is left alone).
pub fn enable_stats() -> Result<OwnedFd> {
    // SAFETY: a plain bpf() command; the fd it returns is ours.
    let fd = unsafe {
        libbpf_rs::libbpf_sys::bpf_enable_stats(libbpf_rs::libbpf_sys::BPF_STATS_RUN_TIME)
    };
    if fd < 0 {
        return Err(err("enable stats", std::io::Error::last_os_error()));
    }
    // SAFETY: a new fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// test-run runs `eth_type_trans` on the frame: give it an Ethernet header
/// with the right EtherType (IPv6 when the version nibble says so).
pub fn ethernet_frame(l3: &[u8]) -> Vec<u8> {
    let ethertype: [u8; 2] = if l3.first().is_some_and(|b| b >> 4 == 6) {
        [0x86, 0xdd]
    } else {
        [0x08, 0x00]
    };
    let mut f = Vec::with_capacity(14 + l3.len());
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01]);
    f.extend_from_slice(&ethertype);
    f.extend_from_slice(l3);
    f
}

/// `rules` with the rule at index `i` in counter slot `i + 1`: those
/// slots by rule id, and the rules compiled with them.
fn compiled(rules: &[Rule]) -> Result<(std::collections::HashMap<u32, u32>, Compiled)> {
    let slots_by_id: std::collections::HashMap<u32, u32> = rules
        .iter()
        .zip(1..)
        .map(|(r, slot)| (r.id, slot))
        .collect();
    let slot_of = |r: &Rule| slots_by_id.get(&r.id).copied().unwrap_or(0);
    let compiled = compile_with_slots(rules, slot_of).map_err(|e| err("compile", e))?;
    Ok((slots_by_id, compiled))
}
