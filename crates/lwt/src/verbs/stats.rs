//! `lwt stats [--watch]`: per route and hook counters of lwtkit's built-ins,
//! and per rule counters of every filter policy.
use std::{collections::HashMap, time::Duration};

use lwtkit::inventory::{self, HookStats};
use serde::Serialize;

use super::Output;
use crate::args::StatsArgs;

#[derive(Serialize)]
struct Rates<'a> {
    /// When the counters were read (seconds since the epoch).
    time: f64,
    #[serde(flatten)]
    stats: &'a HookStats,
    pps: f64,
    bps: f64,
    dropped_pps: f64,
}

pub fn run(a: StatsArgs, out: &Output) -> anyhow::Result<()> {
    if !super::warn_if_unprivileged("lwt stats") {
        // Nothing to show: every counter lives behind a record root alone reads.
        return out.emit(&Vec::<HookStats>::new(), |_| {
            "no counters readable without root (lwtkit's records and pins are root's)".into()
        });
    }
    if !a.watch {
        let stats = inventory::stats()?;
        return out.emit(&stats, |s| table(s, None));
    }
    if !(a.interval.is_finite() && a.interval > 0.0) {
        anyhow::bail!("--interval {} is out of range: seconds > 0", a.interval);
    }
    if a.count == Some(0) {
        anyhow::bail!("--count 0 is out of range: 1 or more refreshes");
    }
    let interval = Duration::from_secs_f64(a.interval);
    let key = |h: &HookStats| format!("{} {} {}", h.table, h.dst, h.hook);
    let mut before: HashMap<String, HookStats> = inventory::stats()?
        .into_iter()
        .map(|h| (key(&h), h))
        .collect();
    // On a terminal the table redraws in place; piped, each refresh is a
    // timestamped block of plain lines (JSON: one array per refresh).
    let redraw = !out.json && std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut round = 0u64;
    while a.count.is_none_or(|c| round < c) {
        std::thread::sleep(interval);
        round += 1;
        let now = inventory::stats()?;
        let time = super::now();
        let secs = interval.as_secs_f64();
        let rates: Vec<Rates> = now
            .iter()
            .map(|h| {
                let prev = before.get(&key(h));
                let d = |f: fn(&HookStats) -> u64| {
                    prev.map_or(0, |p| f(h).saturating_sub(f(p))) as f64 / secs
                };
                Rates {
                    time,
                    stats: h,
                    pps: d(|s| s.packets),
                    bps: d(|s| s.bytes),
                    dropped_pps: d(|s| s.dropped.packets),
                }
            })
            .collect();
        out.emit(&rates, |r| {
            let head = format!(
                "{} UTC, rates per second over {}s",
                super::clock(time),
                a.interval
            );
            // Home, clear to the end: the new table over the old one.
            let clear = if redraw { "\x1b[H\x1b[J" } else { "" };
            format!("{clear}{head}\n{}", table(&now, Some(r)))
        })?;
        before = now.into_iter().map(|h| (key(&h), h)).collect();
    }
    Ok(())
}

fn table(s: &[HookStats], rates: Option<&Vec<Rates>>) -> String {
    if s.is_empty() {
        return "no lwtkit built-ins attached in this namespace".into();
    }
    let mut text = format!(
        "{:<24} {:<8} {:<5} {:>12} {:>14} {:>12} {:>12}",
        "ROUTE", "TABLE", "HOOK", "PACKETS", "BYTES", "DROPPED", "MALFORMED"
    );
    if rates.is_some() {
        text.push_str(&format!(
            " {:>12} {:>14} {:>12}",
            "PPS", "BYTES/S", "DROP/S"
        ));
    }
    text.push_str("  PROGRAM\n");
    for (i, h) in s.iter().enumerate() {
        text.push_str(&format!(
            "{:<24} {:<8} {:<5} {:>12} {:>14} {:>12} {:>12}",
            h.dst,
            h.table,
            h.hook.as_str(),
            h.packets,
            h.bytes,
            h.dropped.packets,
            h.malformed.packets
        ));
        if let Some(r) = rates.and_then(|r| r.get(i)) {
            text.push_str(&format!(
                " {:>12.1} {:>14.1} {:>12.1}",
                r.pps, r.bps, r.dropped_pps
            ));
        }
        text.push_str(&format!("  {}\n", h.program));
        for a in &h.actions {
            text.push_str(&format!(
                "    rule {} {}: {} {} failed {}{}\n",
                a.rule,
                a.action,
                a.done_as,
                a.done,
                a.failed,
                if a.done_as == "rerouted" {
                    format!(" loops {}", a.loops)
                } else {
                    String::new()
                }
            ));
        }
    }
    text
}
