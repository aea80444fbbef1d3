//! `lwt agent --metrics ADDR:PORT`: Prometheus text (format 0.0.4, encoded
//! by prometheus-client) at `/metrics`, read afresh from lwtkit's pinned
//! maps at each scrape, and a small HTTP/1.1 server on a std listener.
//!
//! Every name begins with `lwtkit_`; counters end in `_total` (the encoder
//! adds it to the names below).
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
    registry::Registry,
};

use super::{AgentError, AgentStats};
use crate::{encap, filter, inventory, seg6local};

type Labels = Vec<(&'static str, String)>;

#[derive(Debug)]
enum Samples {
    Counter(Vec<(Labels, u64)>),
    Gauge(Vec<(Labels, f64)>),
}

/// One metric family: a name (without `_total`), its help, its samples.
#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    samples: Samples,
}

/// The families of one scrape, read before encoding.
#[derive(Debug, Default)]
struct Scrape {
    families: Vec<Family>,
}

impl Scrape {
    fn counter(&mut self, name: &'static str, help: &'static str, samples: Vec<(Labels, u64)>) {
        self.families.push(Family {
            name,
            help,
            samples: Samples::Counter(samples),
        });
    }

    fn gauge(&mut self, name: &'static str, help: &'static str, samples: Vec<(Labels, f64)>) {
        self.families.push(Family {
            name,
            help,
            samples: Samples::Gauge(samples),
        });
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in &self.families {
            match &f.samples {
                Samples::Counter(samples) => {
                    let mut fam =
                        encoder.encode_descriptor(f.name, f.help, None, MetricType::Counter)?;
                    for (labels, v) in samples {
                        ConstCounter::new(*v).encode(fam.encode_family(labels)?)?;
                    }
                }
                Samples::Gauge(samples) => {
                    let mut fam =
                        encoder.encode_descriptor(f.name, f.help, None, MetricType::Gauge)?;
                    for (labels, v) in samples {
                        ConstGauge::new(*v).encode(fam.encode_family(labels)?)?;
                    }
                }
            }
        }
        Ok(())
    }
}

fn labels<const N: usize>(pairs: [(&'static str, String); N]) -> Labels {
    pairs.into_iter().collect()
}

/// Logs a part of the namespace that could not be read this scrape (its
/// families are then empty, not stale).
fn or_empty<T>(what: &str, r: crate::error::Result<Vec<T>>) -> Vec<T> {
    r.unwrap_or_else(|e| {
        tracing::debug!("metrics: {what} unreadable: {e}");
        Vec::new()
    })
}

/// Reads every counter of the namespace and the agent's own.
fn scrape(agent: &AgentStats) -> Scrape {
    let mut s = Scrape::default();
    hooks(&mut s);
    rules(&mut s);
    tunnels(&mut s);
    sids(&mut s);
    decaps(&mut s);
    agent_families(&mut s, agent);
    s
}

fn hooks(s: &mut Scrape) {
    let stats = or_empty("route hooks", inventory::stats());
    let l = |h: &inventory::HookStats| {
        labels([
            ("route", h.dst.clone()),
            ("table", h.table.clone()),
            ("hook", h.hook.as_str().to_string()),
            ("program", h.program.clone()),
        ])
    };
    let each = |f: fn(&inventory::HookStats) -> u64| -> Vec<(Labels, u64)> {
        stats.iter().map(|h| (l(h), f(h))).collect()
    };
    s.counter(
        "lwtkit_hook_packets",
        "Packets the built-in on a route's hook handled (count, filter, encap).",
        each(|h| h.packets),
    );
    s.counter(
        "lwtkit_hook_bytes",
        "Bytes the built-in on a route's hook handled.",
        each(|h| h.bytes),
    );
    s.counter(
        "lwtkit_hook_drops",
        "Packets the built-in on a route's hook dropped (a filter's drops, a tunnel's packets without a tunnel or refused by the kernel).",
        each(|h| h.dropped.packets),
    );
    s.counter(
        "lwtkit_hook_malformed",
        "Packets the built-in on a route's hook could not parse (dropped or judged by the policy's default).",
        each(|h| h.malformed.packets),
    );
}

fn rules(s: &mut Scrape) {
    let policies = or_empty("filter policies", filter::manage::list());
    let (mut packets, mut bytes, mut done, mut failed, mut logged, mut lost) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for p in &policies {
        let default = labels([
            ("policy", p.name.clone()),
            ("rule", "default".into()),
            ("action", p.default.to_string()),
        ]);
        packets.push((default.clone(), p.unmatched.packets));
        bytes.push((default, p.unmatched.bytes));
        let (mut p_logged, mut p_lost) = (p.unmatched.logged, p.unmatched.suppressed);
        for r in &p.rules {
            let action = match &r.rule.spec.action {
                Some(a) => a
                    .to_string()
                    .split(' ')
                    .next()
                    .unwrap_or_default()
                    .to_string(),
                None => r.rule.spec.verdict.to_string(),
            };
            let l = labels([
                ("policy", p.name.clone()),
                ("rule", r.rule.id.to_string()),
                ("action", action),
            ]);
            packets.push((l.clone(), r.counters.packets));
            bytes.push((l.clone(), r.counters.bytes));
            if let Some(a) = &r.action_counters {
                let mut with = l.clone();
                with.push(("done_as", a.done_as.to_string()));
                done.push((with, a.counters.done));
                failed.push((l, a.counters.failed));
            }
            p_logged += r.counters.logged;
            p_lost += r.counters.suppressed;
        }
        logged.push((labels([("policy", p.name.clone())]), p_logged));
        lost.push((labels([("policy", p.name.clone())]), p_lost));
    }
    s.counter(
        "lwtkit_rule_packets",
        "Packets a filter rule matched, over every route the policy is on (rule=\"default\": no rule matched).",
        packets,
    );
    s.counter("lwtkit_rule_bytes", "Bytes a filter rule matched.", bytes);
    s.counter(
        "lwtkit_rule_action_done",
        "Packets a rule's action handled (done_as: translated, rerouted, marked, redirected).",
        done,
    );
    s.counter(
        "lwtkit_rule_action_failed",
        "Packets a rule's action could not handle.",
        failed,
    );
    s.counter(
        "lwtkit_events_logged",
        "Events of `log` rules written to the namespace's ring buffer.",
        logged,
    );
    s.counter(
        "lwtkit_events_lost",
        "Events of `log` rules not written: over the rule's rate limit or the ring buffer full (the filter counts both as suppressed).",
        lost,
    );
}

fn tunnels(s: &mut Scrape) {
    let list = or_empty("tunnels", encap::list());
    let l = |t: &encap::TunnelView| {
        labels([
            ("route", t.dst.to_string()),
            ("table", t.table.clone()),
            ("type", t.spec.kind.as_str().to_string()),
            (
                "remote",
                t.spec.remote.map(|r| r.to_string()).unwrap_or_default(),
            ),
        ])
    };
    s.counter(
        "lwtkit_tunnel_packets",
        "Packets a tunnel encapsulated.",
        list.iter().map(|t| (l(t), t.stats.packets)).collect(),
    );
    s.counter(
        "lwtkit_tunnel_bytes",
        "Bytes a tunnel encapsulated (inner packets).",
        list.iter().map(|t| (l(t), t.stats.bytes)).collect(),
    );
    let mut errors = Vec::new();
    for t in &list {
        for (reason, n) in [
            ("push_failed", t.stats.push_failed),
            ("malformed", t.stats.malformed),
        ] {
            let mut with = l(t);
            with.push(("reason", reason.to_string()));
            errors.push((with, n));
        }
    }
    // Counted once per namespace: the destination had no tunnel.
    if let Ok(u) = encap::unrouted() {
        errors.push((
            labels([
                ("route", String::new()),
                ("table", String::new()),
                ("type", String::new()),
                ("remote", String::new()),
                ("reason", "no_tunnel".to_string()),
            ]),
            u.no_tunnel + u.push_failed + u.malformed,
        ));
    }
    s.counter(
        "lwtkit_tunnel_errors",
        "Packets a tunnel dropped, by reason (push_failed: the kernel refused the header; malformed: not IP; no_tunnel, per namespace: no tunnel for the destination).",
        errors,
    );
}

fn sids(s: &mut Scrape) {
    let list = or_empty("SIDs", seg6local::list());
    let l = |v: &seg6local::SidView| {
        labels([
            ("sid", v.dst.to_string()),
            ("table", v.table.clone()),
            ("program", v.name.clone()),
        ])
    };
    s.counter(
        "lwtkit_sid_packets",
        "Packets an End.BPF SID's built-in handled.",
        list.iter().map(|v| (l(v), v.packets)).collect(),
    );
    s.counter(
        "lwtkit_sid_bytes",
        "Bytes an End.BPF SID's built-in handled.",
        list.iter().map(|v| (l(v), v.bytes)).collect(),
    );
    s.counter(
        "lwtkit_sid_drops",
        "Packets an End.BPF SID's built-in dropped.",
        list.iter().map(|v| (l(v), v.dropped)).collect(),
    );
}

fn decaps(s: &mut Scrape) {
    let list = or_empty("decapsulators", encap::decap::list());
    let dev = |d: &encap::decap::DecapRecord| labels([("dev", d.dev.clone())]);
    s.counter(
        "lwtkit_decap_packets",
        "Packets a decapsulator stripped of their outer headers.",
        list.iter().map(|d| (dev(d), d.packets)).collect(),
    );
    s.counter(
        "lwtkit_decap_bytes",
        "Bytes a decapsulator passed on (inner packets).",
        list.iter().map(|d| (dev(d), d.bytes)).collect(),
    );
    s.counter(
        "lwtkit_decap_refused",
        "Packets dropped because the kernel refused to remove their outer headers.",
        list.iter().map(|d| (dev(d), d.refused)).collect(),
    );
    let mut passed = Vec::new();
    for d in &list {
        let p = &d.passed;
        for (reason, n) in [
            ("not_tunnel", p.not_tunnel),
            ("not_local", p.not_local),
            ("not_remote", p.not_remote),
            ("gre_key", p.gre_key),
            ("inner", p.inner),
            ("gue_control", p.gue_control),
            ("fragments", p.fragments),
            ("unsupported", p.unsupported),
            ("malformed", p.malformed),
        ] {
            passed.push((
                labels([("dev", d.dev.clone()), ("reason", reason.into())]),
                n,
            ));
        }
    }
    s.counter(
        "lwtkit_decap_passed",
        "Packets a decapsulator left untouched for the stack, by reason.",
        passed,
    );
    s.gauge(
        "lwtkit_decap_attached",
        "1 while the decapsulator is attached to its device, 0 when defunct (the device went away).",
        list.iter()
            .map(|d| {
                let up = d.state == encap::decap::DecapState::Attached;
                (dev(d), if up { 1.0 } else { 0.0 })
            })
            .collect(),
    );
}

fn agent_families(s: &mut Scrape, a: &AgentStats) {
    let n = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    s.counter(
        "lwtkit_agent_drift_repairs",
        "Changes that put back what was changed outside lwtkit (a rewritten or vanished route, a defunct decapsulator): repairs, and any change made while the namespace had held the current file.",
        vec![(vec![], n(&a.drift_repairs))],
    );
    s.counter(
        "lwtkit_agent_changes",
        "Changes the agent applied, by action (create, update, repair, remove).",
        a.changes_by_action()
            .into_iter()
            .map(|(action, v)| (labels([("action", action)]), v))
            .collect(),
    );
    s.counter(
        "lwtkit_agent_apply_errors",
        "Checks or applies that failed (logged); the agent tries again at the next notification or interval.",
        vec![(vec![], n(&a.apply_errors))],
    );
    s.counter(
        "lwtkit_agent_config_reloads",
        "Times a changed config file (or SIGHUP) was read and accepted.",
        vec![(vec![], n(&a.reloads))],
    );
    s.counter(
        "lwtkit_agent_config_errors",
        "Times a changed config file was refused (the last good one stays).",
        vec![(vec![], n(&a.config_errors))],
    );
    s.counter(
        "lwtkit_agent_checks",
        "Comparisons of the file with the namespace.",
        vec![(vec![], n(&a.checks))],
    );
    s.gauge(
        "lwtkit_agent_config_applied_timestamp_seconds",
        "When the namespace last held what the file states (seconds since the epoch).",
        vec![(vec![], a.applied_at())],
    );
    s.gauge(
        "lwtkit_agent_in_sync",
        "1 when the last check found the namespace as the file states.",
        vec![(vec![], n(&a.in_sync) as f64)],
    );
}

/// The whole /metrics page.
pub fn render(agent: &AgentStats) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape(agent)));
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
    out
}

/// Serves /metrics on `listener` from a thread of its own (one request
/// at a time: a scrape reads every map, and Prometheus scrapes one by one).
pub fn serve(listener: TcpListener, agent: Arc<AgentStats>) -> crate::error::Result<()> {
    let addr = listener
        .local_addr()
        .map_err(|reason| AgentError::Metrics {
            addr: "?".into(),
            reason,
        })?;
    tracing::info!("lwt agent: serving metrics on http://{addr}/metrics");
    std::thread::Builder::new()
        .name("lwt-metrics".into())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(stream) => {
                        if let Err(e) = answer(stream, &agent) {
                            tracing::debug!("metrics request: {e}");
                        }
                    }
                    Err(e) => tracing::debug!("metrics accept: {e}"),
                }
            }
        })
        .map_err(|reason| AgentError::Metrics {
            addr: addr.to_string(),
            reason,
        })?;
    Ok(())
}

fn answer(stream: TcpStream, agent: &AgentStats) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.by_ref().take(8192).read_line(&mut request)?;
    // The rest of the head, up to the blank line (headers are not needed).
    let mut line = String::new();
    let mut head = request.len();
    while head < 16384 {
        line.clear();
        if reader.by_ref().take(8192).read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        head += line.len();
    }
    let mut words = request.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, kind, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => (
            "200 OK",
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            render(agent),
        ),
        ("GET" | "HEAD", "/") => (
            "200 OK",
            "text/plain; charset=utf-8",
            "lwt agent: metrics at /metrics\n".to_string(),
        ),
        ("GET" | "HEAD", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET /metrics\n".to_string(),
        ),
    };
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    if method != "HEAD" {
        out.write_all(body.as_bytes())?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_counters_render_as_prometheus_text_with_lwtkit_names() {
        let a = AgentStats::default();
        a.count(crate::config::Action::Repair, false);
        a.count(crate::config::Action::Create, true);
        a.count(crate::config::Action::Create, false);
        let mut s = Scrape::default();
        agent_families(&mut s, &a);
        let mut registry = Registry::default();
        registry.register_collector(Box::new(s));
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).expect("encodes");
        assert!(out.contains("# TYPE lwtkit_agent_drift_repairs_total counter\n"));
        assert!(out.contains("\nlwtkit_agent_drift_repairs_total 2\n"));
        assert!(out.contains("lwtkit_agent_changes_total{action=\"repair\"} 1\n"));
        assert!(out.contains("lwtkit_agent_changes_total{action=\"create\"} 2\n"));
        assert!(out.contains("# TYPE lwtkit_agent_config_applied_timestamp_seconds gauge\n"));
        for line in out.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("lwtkit_"), "{line}");
        }
    }
}
