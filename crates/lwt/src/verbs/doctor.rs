//! `lwt doctor`: one line per check; exit 1 when one fails.
use super::Output;

pub fn run(out: &Output) -> anyhow::Result<()> {
    let report = lwtkit::doctor::run();
    out.emit(&report, |r| {
        r.checks
            .iter()
            .map(|c| format!("{:<4}  {}: {}", c.status.as_str(), c.name, c.detail))
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    let failed = report
        .checks
        .iter()
        .filter(|c| c.status == lwtkit::doctor::Status::Fail)
        .count();
    if failed > 0 {
        anyhow::bail!("{failed} check(s) failed");
    }
    Ok(())
}
