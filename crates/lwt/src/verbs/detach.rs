//! `lwt detach PREFIX [--dev DEV] [--hook H] [--table T] [--local]`
use lwtkit::attach::{self, DetachRequest};

use super::Output;
use crate::args::DetachArgs;

pub fn run(a: DetachArgs, out: &Output) -> anyhow::Result<()> {
    let req = DetachRequest {
        dev: a.dev,
        hook: a.hook.map(Into::into),
        force: a.force,
        ..DetachRequest::new(
            attach::parse_prefix(&a.route.prefix)?,
            super::table(a.route.table.as_deref())?,
            a.route.local,
        )
    };
    let done = attach::detach(&req)?;
    out.emit(&done, |d| {
        let hooks: Vec<String> = d.hooks.iter().map(|h| h.to_string()).collect();
        let mut text = format!(
            "detached {} from {}; route {}",
            hooks.join(", "),
            d.route,
            d.route_now
        );
        if let Some(note) = &d.note {
            text.push_str(&format!(" ({note})"));
        }
        text
    })
}
