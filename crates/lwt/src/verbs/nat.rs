//! `lwt nat ...`: 1:1 mappings, as filter rules.
use lwtkit::{
    attach::parse_prefix,
    filter::nat::{self, NatRequest, NatSideView, NatView},
};

use super::Output;
use crate::args::NatVerb;

pub fn run(v: NatVerb, out: &Output) -> anyhow::Result<()> {
    match v {
        NatVerb::Add(a) => {
            let req = NatRequest {
                inside: parse_prefix(&a.inside)?,
                public: parse_prefix(&a.public)?,
                out_route: parse_prefix(&a.out_route)?,
                out_dev: a.out_dev,
                public_dev: a.public_dev,
                table: super::table(a.table.as_deref())?,
                name: a.name,
            };
            let v = nat::add(&req)?;
            out.emit(&v, |v| format!("added {}", render(v)))
        }
        NatVerb::Del { inside, public } => {
            let inside = inside.as_deref().map(parse_prefix).transpose()?;
            let public = public.as_deref().map(parse_prefix).transpose()?;
            let v = nat::del(inside, public)?;
            out.emit(&v, |v| {
                format!(
                    "deleted {} <-> {} (rule {} of {}, rule {} of {})",
                    v.inside,
                    v.public,
                    id(&v.outbound),
                    v.outbound.policy,
                    id(&v.inbound),
                    v.inbound.policy
                )
            })
        }
        NatVerb::List => {
            let all = nat::list()?;
            out.emit(&all, |all| {
                if all.is_empty() {
                    "no NAT mappings".to_string()
                } else {
                    all.iter().map(render).collect::<Vec<_>>().join("\n")
                }
            })
        }
    }
}

fn id(s: &NatSideView) -> String {
    s.id.map_or("-".into(), |i| i.to_string())
}

fn render(v: &NatView) -> String {
    let state = match v.state {
        nat::NatState::Active => String::new(),
        nat::NatState::Adding => {
            "  (interrupted nat add: the next `lwt nat add` or `nat del` undoes it)".into()
        }
        nat::NatState::Removing => {
            "  (interrupted nat del: the next `lwt nat add` or `nat del` finishes it)".into()
        }
    };
    let side = |dir: &str, s: &NatSideView| {
        format!(
            "  {dir:<4} {:<34} policy {} rule {}: {}\n       packets {} bytes {} translated {} failed {}{}",
            format!("{} hook xmit", s.route),
            s.policy,
            id(s),
            s.text,
            s.packets,
            s.bytes,
            s.translated,
            s.failed,
            if s.id.is_none() { " (rule missing)" } else { "" }
        )
    };
    format!(
        "{} <-> {}{state}\n{}\n{}",
        v.inside,
        v.public,
        side("out", &v.outbound),
        side("in", &v.inbound)
    )
}
