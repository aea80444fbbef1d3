//! `lwt trace PREFIX [--table ID|NAME] [--local] [--hook H] [--count N] [--timeout SECS] [--pcap FILE] [--printk]`
use std::time::Duration;

use lwtkit::trace::{self, printk, PcapSink, TraceRecord, TraceRequest};

use super::Output;
use crate::args::TraceArgs;

pub fn run(a: TraceArgs, out: &Output) -> anyhow::Result<()> {
    let count = a.count.map(|c| usize::try_from(c).unwrap_or(usize::MAX));
    let timeout = a.timeout.map(Duration::from_secs_f64);
    if a.printk {
        let seen = printk::follow(count, timeout, |line| {
            if out.json {
                super::print_line(&serde_json::json!({ "line": line }).to_string());
            } else {
                super::print_line(line);
            }
            Ok(())
        })?;
        if !out.json {
            eprintln!("{seen} line(s)");
        }
        return Ok(());
    }
    let req = TraceRequest {
        prefix: lwtkit::attach::parse_prefix(&a.route.prefix)?,
        table: super::table(a.route.table.as_deref())?,
        local: a.route.local,
        hook: a.hook.map(Into::into),
        count,
        timeout,
    };
    let mut pcap = a.pcap.as_deref().map(PcapSink::create).transpose()?;
    let traced = trace::trace(
        &req,
        |targets| {
            for t in targets {
                eprintln!("{}", describe(t));
            }
        },
        |t| eprintln!("{}", describe(t)),
        |r| {
            if let Some(p) = pcap.as_mut() {
                p.write(&r)?;
            }
            let line = if out.json {
                super::json_line(&r).unwrap_or_default()
            } else {
                render(&r)
            };
            super::print_line(&line);
            Ok(())
        },
    )?;
    if !out.json {
        eprintln!("{} packet(s)", traced.reported);
    }
    if traced.lost > 0 {
        // On stderr in both modes: JSON lines stay one object per packet.
        eprintln!(
            "{} packet(s) not reported: the ring buffer was full (the tracer fell behind; lwt stats counts every packet)",
            traced.lost
        );
    }
    Ok(())
}

fn describe(t: &trace::Target) -> String {
    let id = t.id.map(|i| format!(" (prog id {i})")).unwrap_or_default();
    let note = t
        .note
        .as_deref()
        .map(|n| format!(": {n}"))
        .unwrap_or_default();
    format!("tracing {} {}{id} via {}{note}", t.hook, t.name, t.via)
}

fn render(r: &TraceRecord) -> String {
    let ep = |a: Option<std::net::IpAddr>, p: Option<u16>| match (a, p) {
        (Some(a), Some(p)) => std::net::SocketAddr::new(a, p).to_string(),
        (Some(a), None) => a.to_string(),
        (None, _) => "?".into(),
    };
    format!(
        "{} {} {} {} {} {} > {} len {}",
        super::clock(r.time),
        r.hook,
        r.verdict,
        r.prog,
        r.proto,
        ep(r.src, r.sport),
        ep(r.dst, r.dport),
        r.len
    )
}
