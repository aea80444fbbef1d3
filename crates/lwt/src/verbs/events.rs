//! `lwt events [--count N] [--timeout SECS] [--pcap FILE]`
use std::time::Duration;

use lwtkit::events::{self, EventRecord, PcapSink, Until};

use super::Output;
use crate::args::EventsArgs;

pub fn run(a: EventsArgs, out: &Output) -> anyhow::Result<()> {
    let until = Until {
        count: a.count.map(|c| usize::try_from(c).unwrap_or(usize::MAX)),
        timeout: a.timeout.map(Duration::from_secs_f64),
    };
    let mut pcap = a.pcap.as_deref().map(PcapSink::create).transpose()?;
    let seen = events::follow(until, |ev| {
        if let Some(p) = pcap.as_mut() {
            p.write(&ev)?;
        }
        let line = if out.json {
            super::json_line(&ev).unwrap_or_default()
        } else {
            render(&ev)
        };
        super::print_line(&line);
        Ok(())
    })?;
    if let Some(p) = pcap {
        p.finish()?;
    }
    if !out.json {
        eprintln!("{seen} event(s)");
    }
    Ok(())
}

fn render(e: &EventRecord) -> String {
    let proto = lwtkit::filter::rule::proto_name(e.proto)
        .map_or_else(|| e.proto.to_string(), str::to_string);
    let ports = match e.proto {
        6 | 17 => format!(
            " {} > {}",
            std::net::SocketAddr::new(e.src, e.sport),
            std::net::SocketAddr::new(e.dst, e.dport)
        ),
        1 | 58 => format!(" {} > {} type {} code {}", e.src, e.dst, e.sport, e.dport),
        _ => format!(" {} > {}", e.src, e.dst),
    };
    format!(
        "{} {} {} policy {} rule {} {proto}{ports} len {}",
        super::clock(e.time),
        e.hook,
        e.verdict.to_uppercase(),
        e.policy,
        e.rule.map_or("-".into(), |r| r.to_string()),
        e.len
    )
}
