//! `lwt hooks [HOOK] [--markdown]`: what a program may do on each hook.
use lwtkit::probe::{self, HookCapabilities, ProgType};

use super::Output;
use crate::args::HooksArgs;

pub fn run(a: HooksArgs, out: &Output) -> anyhow::Result<()> {
    let types = match &a.hook {
        Some(h) => vec![h.parse::<ProgType>()?],
        None => ProgType::ALL.to_vec(),
    };
    let hooks = probe::probe(&types)?;
    if a.markdown {
        super::print_line(
            probe::markdown::render(&hooks, &lwtkit::system::kernel_release()).trim_end(),
        );
        return Ok(());
    }
    out.emit(&hooks, |h| {
        h.0.iter()
            .map(|(t, c)| render(*t, c))
            .collect::<Vec<_>>()
            .join("\n\n")
    })
}

fn render(t: ProgType, c: &HookCapabilities) -> String {
    if !c.supported {
        return format!("{t}: this kernel does not know the program type (nothing allowed)");
    }
    let mut lines = vec![format!("{t}:")];
    let allowed: Vec<&str> = c.allowed_helpers().collect();
    lines.push(format!(
        "  helpers ({}): {}",
        allowed.len(),
        allowed.join(" ")
    ));
    let yn = |b: bool| if b { "yes" } else { "no" };
    lines.push(format!(
        "  packet data: direct read {}, direct write {}",
        yn(c.context.direct_packet_read),
        yn(c.context.direct_packet_write)
    ));
    let fields = |pick: fn(&lwtkit::probe::FieldAccess) -> bool| {
        c.context
            .fields
            .iter()
            .filter(|(_, a)| pick(a))
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    lines.push(format!("  context read: {}", fields(|a| a.read)));
    lines.push(format!("  context write: {}", fields(|a| a.write)));
    lines.push("  return codes:".into());
    for r in &c.return_codes {
        let value = r.value.map(|v| format!(" ({v})")).unwrap_or_default();
        lines.push(format!("    {}{value}: {}", r.name, r.effect));
    }
    lines.join("\n")
}
