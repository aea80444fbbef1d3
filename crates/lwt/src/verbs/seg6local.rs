//! `lwt seg6local add|del|list`
use lwtkit::{
    attach::parse_prefix,
    seg6local::{self, Seg6Request},
};

use super::Output;
use crate::args::Seg6Verb;

pub fn run(v: Seg6Verb, out: &Output) -> anyhow::Result<()> {
    match v {
        Seg6Verb::Add {
            sid,
            dev,
            builtin,
            obj,
            section,
            prog_type,
            table,
            dt6_table,
        } => {
            let req = Seg6Request {
                sid: parse_prefix(&sid)?,
                dev,
                builtin,
                object: obj.map(|p| (p, section)),
                table: super::table(table.as_deref())?,
                dt6_table: super::table_flag("--dt6-table", dt6_table.as_deref())?,
                force_type: prog_type.is_some(),
            };
            let r = seg6local::SidView::of(seg6local::add(&req)?);
            out.emit(&r, |r| {
                format!("SID {} runs {} (End.BPF, dev {})", r.dst, r.name, r.dev)
            })
        }
        Seg6Verb::Del { sid, table } => {
            let r = seg6local::del(parse_prefix(&sid)?, super::table(table.as_deref())?)?;
            out.emit(&seg6local::SidView::of(r), |r| {
                format!("removed SID {}", r.dst)
            })
        }
        Seg6Verb::List => {
            let sids = seg6local::list()?;
            out.emit(&sids, |s| {
                s.iter()
                    .map(|v| {
                        format!(
                            "{} table {} dev {} {}  packets {} bytes {} dropped {}",
                            v.dst,
                            v.table,
                            v.record.dev,
                            v.record.name,
                            v.packets,
                            v.bytes,
                            v.dropped
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
    }
}
