//! `lwt apply -f FILE [--check] [--prune]`
use lwtkit::config::{self, Plan};

use super::Output;
use crate::args::ApplyArgs;

/// The plan as lines: one per change, then what the file does not name.
pub fn render_plan(plan: &Plan, prune_hint: bool) -> String {
    let mut lines: Vec<String> = plan
        .changes
        .iter()
        .map(|c| format!("{} {}: {}", c.action, c.object, c.detail.join("; ")))
        .collect();
    if prune_hint {
        for u in &plan.unnamed {
            lines.push(format!(
                "kept {} (not in the file; --prune removes it)",
                u.object
            ));
        }
    }
    lines.join("\n")
}

pub fn run(a: ApplyArgs, out: &Output) -> anyhow::Result<()> {
    let done = config::apply(&a.file, a.check, a.prune)?;
    out.emit(&done, |d| {
        let mut text = render_plan(&d.plan, true);
        let n = d.plan.changes.len();
        let summary = match (n, d.applied) {
            (0, _) => "no changes".to_string(),
            (n, true) => format!("{n} change(s) applied"),
            (n, false) => format!("{n} change(s) planned; nothing changed (--check)"),
        };
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&summary);
        text
    })
}
