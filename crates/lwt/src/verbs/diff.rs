//! `lwt diff -f FILE [--prune]`: exit 0 in sync, 1 differs, 2 error.
use lwtkit::config;

use super::Output;
use crate::args::DiffArgs;

/// Prints what `apply` would change; returns whether anything differs.
pub fn run(a: DiffArgs, out: &Output) -> anyhow::Result<bool> {
    let plan = config::diff(&a.file, a.prune)?;
    out.emit(&plan, |p| {
        let text = super::apply::render_plan(p, true);
        if p.changes.is_empty() {
            format!("{text}\nin sync").trim_start().to_string()
        } else {
            text
        }
    })?;
    Ok(!plan.changes.is_empty())
}
