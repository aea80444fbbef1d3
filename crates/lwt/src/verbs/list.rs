//! `lwt list [--table ID|NAME|all]`
use lwtkit::inventory::{self, RouteEntry};

use super::Output;
use crate::args::ListArgs;

pub fn run(a: ListArgs, out: &Output) -> anyhow::Result<()> {
    super::warn_if_unprivileged("lwt list");
    let table = match a.table.as_deref() {
        None | Some("all") => None,
        Some(t) => Some(lwtkit::route::table::parse_table(t)?),
    };
    let routes = inventory::list(table)?;
    out.emit(&routes, |rs| {
        rs.iter().map(render).collect::<Vec<_>>().join("\n")
    })
}

fn render(r: &RouteEntry) -> String {
    let mut line = String::new();
    if r.kind != "unicast" {
        line.push_str(&r.kind);
        line.push(' ');
    }
    line.push_str(&r.dst);
    line.push(' ');
    line.push_str(&r.encap.to_string());
    if let Some(dev) = &r.dev {
        line.push_str(&format!(" dev {dev}"));
    }
    line.push_str(&format!(" table {}", r.table));
    for (hook, info) in r.encap.bpf_hooks() {
        if let Some(origin) = &info.origin {
            line.push_str(&format!(
                "\n    {hook}: {} id {} tag {} ({origin})",
                info.name,
                info.id.map_or("?".into(), |i| i.to_string()),
                info.tag.as_deref().unwrap_or("?")
            ));
        }
    }
    line
}
