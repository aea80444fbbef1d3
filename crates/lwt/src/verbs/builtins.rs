//! `lwt builtins`: the programs embedded in lwtkit.
use lwtkit::builtin::BUILTINS;
use serde::Serialize;

use super::Output;

#[derive(Serialize)]
struct BuiltinInfo {
    name: &'static str,
    about: &'static str,
    hooks: Vec<lwtkit::Hook>,
}

pub fn run(out: &Output) -> anyhow::Result<()> {
    let list: Vec<BuiltinInfo> = BUILTINS
        .iter()
        .map(|b| BuiltinInfo {
            name: b.name,
            about: b.about,
            hooks: b.hooks().collect(),
        })
        .collect();
    out.emit(&list, |l| {
        l.iter()
            .map(|b| {
                format!(
                    "{:<10} hooks {:<13} {}",
                    b.name,
                    b.hooks
                        .iter()
                        .map(|h| h.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                    b.about
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    })
}
