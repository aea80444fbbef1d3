//! `lwt stats`
use lwtkit::inventory;

use super::Output;
use crate::args::StatsArgs;

pub fn run(_a: StatsArgs, out: &Output) -> anyhow::Result<()> {
    let stats = inventory::stats()?;
    out.emit(&stats, |s| {
        if s.is_empty() {
            return "no lwtkit built-ins attached in this namespace".into();
        }
        let mut text = format!(
            "{:<24} {:<8} {:<5} {:>14} {:>16}  {}\n",
            "ROUTE", "TABLE", "HOOK", "PACKETS", "BYTES", "PROGRAM"
        );
        for h in s {
            text.push_str(&format!(
                "{:<24} {:<8} {:<5} {:>14} {:>16}  {}\n",
                h.dst,
                h.table,
                h.hook.as_str(),
                h.packets,
                h.bytes,
                h.program
            ));
        }
        text
    })
}
