//! `lwt attach PREFIX --dev DEV --hook H (--obj FILE | --pinned PATH | --builtin NAME)`
use lwtkit::{
    attach::{self, AttachRequest},
    loader::{BuiltinSpec, ProgramSource},
    Error,
};

use super::Output;
use crate::args::AttachArgs;

pub fn run(a: AttachArgs, out: &Output) -> anyhow::Result<()> {
    let source = match (a.obj, a.pinned, a.builtin) {
        (Some(path), None, None) => ProgramSource::Object {
            path,
            section: a.section,
            program: a.program,
            prog_type: a.prog_type.map(Into::into),
        },
        (None, Some(p), None) => ProgramSource::Pinned(p),
        (None, None, Some(b)) => ProgramSource::Builtin(BuiltinSpec::standalone(&b)?),
        _ => unreachable!("clap's `source` group makes the three exclusive and one required"),
    };
    let req = AttachRequest {
        dst: attach::parse_prefix(&a.route.prefix)?,
        dev: a.dev,
        hook: a.hook.into(),
        source,
        headroom: a.headroom,
        table: super::table(a.route.table.as_deref())?,
        local: a.route.local,
        via: a
            .via
            .map(|v| v.parse().map_err(|_| Error::InvalidAddress(v)))
            .transpose()?,
        mtu_reduction: None,
        force: a.force,
    };
    let done = attach::attach(&req)?;
    out.emit(&done, |d| {
        format!(
            "attached {} to {} hook {} (prog id {}, tag {}){}",
            d.name,
            d.route,
            d.hook,
            d.id,
            d.tag,
            if d.created { "; route created" } else { "" }
        )
    })
}
