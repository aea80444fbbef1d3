//! `lwt filter` end to end in namespaces: policies that drop real traffic
//! on egress and ingress, rules changed live, counters and events that
//! match what was sent, and bad input refused without changing anything.
mod common;

use std::{
    io::Read,
    net::UdpSocket,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    thread,
    time::{Duration, Instant},
};

use common::{json, send_udp_lossy, serve_tcp, tcp_works, tcp_works_soon, Netns, Pair};
use serde_json::Value;

/// Creates policy `name` in `ns` and adds `rules` (each one rule's words).
fn policy(ns: &Netns, name: &str, rules: &[&str]) {
    ns.lwt_ok(&["filter", "create", name]);
    for rule in rules {
        let mut args = vec!["filter", "rule", "add", name];
        args.extend(rule.split_whitespace());
        ns.lwt_ok(&args);
    }
}

/// `lwt filter attach NAME PREFIX --dev DEV --hook HOOK [EXTRA...]`.
fn attach(ns: &Netns, name: &str, prefix: &str, dev: &str, hook: &str, extra: &[&str]) {
    let mut args = vec![
        "filter", "attach", name, prefix, "--dev", dev, "--hook", hook,
    ];
    args.extend_from_slice(extra);
    ns.lwt_ok(&args);
}

/// `lwt filter show NAME --json`.
fn show(ns: &Netns, name: &str) -> Value {
    json(&ns.lwt_ok(&["filter", "show", name, "--json"]))
}

/// The rule with `id` in `filter show --json` output.
fn rule(show: &Value, id: u64) -> &Value {
    show["rules"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["id"] == id))
        .unwrap_or_else(|| panic!("no rule {id} in {show}"))
}

/// Each rule of `filter show --json` output as (id, text).
fn rule_texts(show: &Value) -> Vec<(u64, String)> {
    show["rules"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .map(|r| {
                    (
                        r["id"].as_u64().unwrap_or_default(),
                        r["text"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The `lwt stats -j` row of one route and hook.
fn stats_row(ns: &Netns, dst: &str, hook: &str) -> Value {
    let stats = json(&ns.lwt_ok(&["stats", "-j"]));
    stats
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["dst"] == dst && r["hook"] == hook))
        .cloned()
        .unwrap_or_else(|| panic!("no stats row for {dst} hook {hook}: {stats}"))
}

#[test]
fn seed_egress_as_one_rule_drops_tcp_8080_and_detach_restores() {
    require_root!();
    let p = Pair::new("fegr");
    serve_tcp(&p.b, &["10.0.0.3:8080", "10.0.0.3:8081"]);
    assert!(tcp_works_soon(&p.a, "10.0.0.3:8080"), "baseline");

    policy(
        &p.a,
        "web",
        &["dst 10.0.0.3/32 proto tcp dport 8080 drop log"],
    );
    attach(&p.a, "web", "10.0.0.3/32", "va", "out", &[]);
    assert!(
        !tcp_works(&p.a, "10.0.0.3:8080"),
        "8080 must be dropped on egress"
    );
    assert!(tcp_works(&p.a, "10.0.0.3:8081"), "8081 must still work");

    let shown = show(&p.a, "web");
    let r = rule(&shown, 1);
    assert_eq!(
        r["text"], "dst 10.0.0.3/32 proto tcp dport 8080 drop log",
        "{shown}"
    );
    assert!(r["packets"].as_u64().is_some_and(|n| n > 0), "{shown}");
    assert_eq!(shown["attachments"][0]["dst"], "10.0.0.3/32", "{shown}");
    assert_eq!(shown["attachments"][0]["hook"], "out", "{shown}");
    let row = stats_row(&p.a, "10.0.0.3/32", "out");
    assert_eq!(row["policy"], "web", "{row}");
    assert!(
        row["dropped"]["packets"].as_u64().is_some_and(|n| n > 0),
        "{row}"
    );
    assert!(
        row["allowed"]["packets"].as_u64().is_some_and(|n| n > 0),
        "8081's packets are allowed: {row}"
    );

    let err = p.a.lwt_err(&["filter", "delete", "web"]);
    assert!(
        err.contains("attached") && err.contains("10.0.0.3/32"),
        "delete names the route it is attached to: {err}"
    );

    let out = p.a.lwt_ok(&["filter", "detach", "web", "10.0.0.3/32"]);
    assert!(
        out.contains("deleted"),
        "the created route is deleted: {out}"
    );
    assert_eq!(p.a.ip(&["route", "show", "10.0.0.3/32"]).trim(), "");
    assert!(tcp_works(&p.a, "10.0.0.3:8080"), "8080 works after detach");
    p.a.lwt_ok(&["filter", "delete", "web"]);
    let err = p.a.lwt_err(&["filter", "show", "web"]);
    assert!(err.contains("unknown policy `web`"), "{err}");
}

#[test]
fn seed_ingress_as_one_rule_on_the_local_route_and_detach_restores_it_exactly() {
    require_root!();
    let p = Pair::new("fing");
    serve_tcp(&p.a, &["10.0.0.2:8080", "10.0.0.2:8081"]);
    assert!(tcp_works_soon(&p.b, "10.0.0.2:8080"), "baseline");
    let before =
        p.a.ip(&["-d", "route", "show", "table", "local", "10.0.0.2"]);
    assert!(before.contains("local 10.0.0.2"), "{before}");

    policy(
        &p.a,
        "in8080",
        &["src 10.0.0.3/32 proto tcp dport 8080 drop"],
    );
    attach(&p.a, "in8080", "10.0.0.2/32", "va", "in", &["--local"]);
    let during = p.a.ip(&["route", "show", "table", "local", "10.0.0.2"]);
    assert!(
        during.contains("encap bpf in lwtkit-filter-in8080:[lwt_in]"),
        "{during}"
    );
    assert!(
        !tcp_works(&p.b, "10.0.0.2:8080"),
        "8080 must be dropped on ingress"
    );
    assert!(tcp_works(&p.b, "10.0.0.2:8081"), "8081 must still work");

    let out =
        p.a.lwt_ok(&["filter", "detach", "in8080", "10.0.0.2/32", "--local"]);
    assert!(out.contains("restored"), "{out}");
    let after =
        p.a.ip(&["-d", "route", "show", "table", "local", "10.0.0.2"]);
    assert_eq!(after, before, "the local route is back exactly as it was");
    assert!(tcp_works(&p.b, "10.0.0.2:8080"));
}

#[test]
fn ipv6_rule_drops_tcp_8080_on_egress() {
    require_root!();
    let p = Pair::new("fv6");
    serve_tcp(&p.b, &["[fd00::3]:8080", "[fd00::3]:8081"]);
    assert!(tcp_works_soon(&p.a, "[fd00::3]:8080"), "baseline");
    policy(&p.a, "web6", &["dst fd00::3/128 proto tcp dport 8080 drop"]);
    attach(&p.a, "web6", "fd00::3/128", "va", "out", &[]);
    assert!(!tcp_works(&p.a, "[fd00::3]:8080"), "v6 8080 dropped");
    assert!(tcp_works(&p.a, "[fd00::3]:8081"), "v6 8081 works");
    let shown = show(&p.a, "web6");
    assert!(
        rule(&shown, 1)["packets"].as_u64().is_some_and(|n| n > 0),
        "{shown}"
    );
    p.a.lwt_ok(&["filter", "detach", "web6", "fd00::3/128"]);
    assert!(tcp_works(&p.a, "[fd00::3]:8080"), "works after detach");
}

#[test]
fn rule_counters_equal_the_datagrams_sent() {
    require_root!();
    let p = Pair::new("fcnt");
    policy(
        &p.a,
        "udp",
        &["proto udp dport 9999 drop", "proto udp dport 9998 allow"],
    );
    attach(&p.a, "udp", "10.0.0.3/32", "va", "out", &[]);
    const PAYLOAD: u64 = 100;
    const WIRE: u64 = 20 + 8 + PAYLOAD;
    // A hook's drop reaches the sender: each send fails (EPERM).
    let accepted = send_udp_lossy(&p.a, "10.0.0.3:9999", 40, PAYLOAD as usize);
    assert_eq!(accepted, 0, "sends to the dropped port are refused");
    let accepted = send_udp_lossy(&p.a, "10.0.0.3:9998", 25, PAYLOAD as usize);
    assert_eq!(accepted, 25, "sends to the allowed port go out");

    let shown = show(&p.a, "udp");
    let (drop, allow) = (rule(&shown, 1), rule(&shown, 2));
    assert_eq!(drop["packets"], 40, "{shown}");
    assert_eq!(drop["bytes"], 40 * WIRE, "{shown}");
    assert_eq!(allow["packets"], 25, "{shown}");
    assert_eq!(allow["bytes"], 25 * WIRE, "{shown}");
    // Only this UDP goes out through the route (ARP is not IP).
    let row = stats_row(&p.a, "10.0.0.3/32", "out");
    assert_eq!(row["policy"], "udp", "{row}");
    assert_eq!(row["dropped"]["packets"], 40, "{row}");
    assert_eq!(row["dropped"]["bytes"], 40 * WIRE, "{row}");
    assert_eq!(row["allowed"]["packets"], 25, "{row}");
    assert_eq!(row["packets"], 65, "{row}");
    assert_eq!(row["malformed"]["packets"], 0, "{row}");
    let text = p.a.lwt_ok(&["filter", "show", "udp"]);
    assert!(
        text.contains("dport 9999 drop") && text.contains("packets 40"),
        "{text}"
    );
}

#[test]
fn rules_change_live_on_every_route_the_policy_is_attached_to() {
    require_root!();
    let p = Pair::new("flive");
    p.b.ip(&["addr", "add", "10.0.0.4/24", "dev", "vb"]);
    serve_tcp(&p.b, &["0.0.0.0:8080"]);
    for dst in ["10.0.0.3:8080", "10.0.0.4:8080"] {
        assert!(tcp_works_soon(&p.a, dst), "baseline {dst}");
    }
    policy(&p.a, "shared", &[]);
    for prefix in ["10.0.0.3/32", "10.0.0.4/32"] {
        attach(&p.a, "shared", prefix, "va", "out", &[]);
    }
    assert_eq!(
        show(&p.a, "shared")["attachments"].as_array().map(Vec::len),
        Some(2)
    );

    let out = p.a.lwt_ok(&[
        "filter", "rule", "add", "shared", "proto", "tcp", "dport", "8080", "drop",
    ]);
    assert!(out.contains("added rule 1"), "{out}");
    // The empty policy's programs walk no tree: the first rule swapped
    // programs that do onto both routes; the next changes keep them.
    let ids = [
        common::prog_id(&p.a, "10.0.0.3/32", "out"),
        common::prog_id(&p.a, "10.0.0.4/32", "out"),
    ];
    // Both connections run at once: one rule add changed both routes.
    let [a3, a4] = both(&p.a, "10.0.0.3:8080", "10.0.0.4:8080");
    assert!(!a3 && !a4, "8080 dropped on both routes ({a3}, {a4})");

    p.a.lwt_ok(&["filter", "rule", "del", "shared", "1"]);
    let [a3, a4] = both(&p.a, "10.0.0.3:8080", "10.0.0.4:8080");
    assert!(a3 && a4, "8080 works again on both routes ({a3}, {a4})");
    assert_eq!(
        [
            common::prog_id(&p.a, "10.0.0.3/32", "out"),
            common::prog_id(&p.a, "10.0.0.4/32", "out"),
        ],
        ids,
        "a rule change that needs no new path keeps the programs"
    );
    assert_eq!(rule_texts(&show(&p.a, "shared")), vec![]);
}

/// Tries two TCP connections from `ns` at the same time.
fn both(ns: &Netns, x: &str, y: &str) -> [bool; 2] {
    thread::scope(|s| {
        let other = s.spawn(|| tcp_works(ns, y));
        let first = tcp_works(ns, x);
        [first, other.join().expect("connect thread")]
    })
}

#[test]
fn replace_swaps_the_whole_rule_set_and_a_bad_file_changes_nothing() {
    require_root!();
    let p = Pair::new("frep");
    serve_tcp(&p.b, &["10.0.0.3:8080", "10.0.0.3:8081"]);
    assert!(tcp_works_soon(&p.a, "10.0.0.3:8080"), "baseline");
    policy(&p.a, "rp", &["proto tcp dport 8080 drop"]);
    attach(&p.a, "rp", "10.0.0.3/32", "va", "out", &[]);
    assert!(!tcp_works(&p.a, "10.0.0.3:8080"), "old rule drops 8080");

    let good = common::scratch("replace-good.rules");
    std::fs::write(
        &good,
        "# 8081 is closed now; 8080 open again\n\
         \n\
         priority 10 dst 10.0.0.3/32 proto tcp dport 8081 drop   # the new block\n\
         \x20\x20\t\n\
         proto udp dport 53 allow\n\
         #proto tcp dport 8080 drop\n",
    )
    .expect("write rules file");
    let out = p.a.lwt_ok(&[
        "filter",
        "replace",
        "rp",
        "--file",
        good.to_str().expect("utf-8"),
    ]);
    assert!(out.contains("2 rules"), "{out}");
    assert!(tcp_works(&p.a, "10.0.0.3:8080"), "8080 open after replace");
    assert!(
        !tcp_works(&p.a, "10.0.0.3:8081"),
        "8081 closed after replace"
    );
    // The new rules get new ids, after the replaced rule's 1.
    let shown = show(&p.a, "rp");
    assert_eq!(
        rule_texts(&shown),
        vec![
            (
                2,
                "priority 10 dst 10.0.0.3/32 proto tcp dport 8081 drop".to_string()
            ),
            (3, "proto udp dport 53 allow".to_string()),
        ],
        "{shown}"
    );
    assert!(rule(&shown, 2)["packets"].as_u64().is_some_and(|n| n > 0));

    let bad = common::scratch("replace-bad.rules");
    std::fs::write(
        &bad,
        "# bad on line 3\nproto tcp dport 8082 drop\nproto tcp dport 70000 drop\n",
    )
    .expect("write rules file");
    let err = p.a.lwt_err(&[
        "filter",
        "replace",
        "rp",
        "--file",
        bad.to_str().expect("utf-8"),
    ]);
    assert!(err.contains("line 3"), "{err}");
    assert!(err.contains("70000"), "{err}");
    assert_eq!(show(&p.a, "rp"), shown, "show unchanged by a bad file");
    assert!(tcp_works(&p.a, "10.0.0.3:8080"), "8080 still open");
    assert!(!tcp_works(&p.a, "10.0.0.3:8081"), "8081 still closed");

    let err =
        p.a.lwt_err(&["filter", "replace", "rp", "--file", "/nonexistent/rules"]);
    assert!(err.contains("/nonexistent/rules"), "{err}");

    // A file of comments only: refused unless --allow-empty says so.
    let empty = common::scratch("replace-empty.rules");
    std::fs::write(&empty, "# nothing yet\n\n").expect("write rules file");
    let empty = empty.to_str().expect("utf-8");
    let err = p.a.lwt_err(&["filter", "replace", "rp", "--file", empty]);
    assert!(err.contains("--allow-empty"), "{err}");
    let texts = |v: &serde_json::Value| -> Vec<String> {
        v["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .map(|r| r["text"].to_string())
            .collect()
    };
    assert_eq!(
        texts(&show(&p.a, "rp")),
        texts(&shown),
        "rules unchanged by an empty file"
    );
    p.a.lwt_ok(&["filter", "replace", "rp", "--file", empty, "--allow-empty"]);
    assert!(tcp_works(&p.a, "10.0.0.3:8081"), "8081 open: no rules left");
}

#[test]
fn events_report_logged_drops_as_json_text_and_pcap() {
    require_root!();
    let p = Pair::new("fev");
    serve_tcp(&p.b, &["10.0.0.3:8081"]);
    assert!(tcp_works_soon(&p.a, "10.0.0.3:8081"), "baseline");
    policy(
        &p.a,
        "logged",
        &["dst 10.0.0.3/32 proto tcp dport 8080 drop log"],
    );
    attach(&p.a, "logged", "10.0.0.3/32", "va", "out", &[]);

    let pcap = common::scratch("events.pcap");
    let pcap_arg = pcap.to_str().expect("utf-8");
    let args = [
        "events",
        "--count",
        "1",
        "--timeout",
        "10",
        "--json",
        "--pcap",
        pcap_arg,
    ];
    let start = Instant::now();
    let lines = follow_while_connecting(&p, &args);
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "stopped at --count 1, not at --timeout"
    );
    assert_eq!(lines.len(), 1, "--count 1 prints one event: {lines:?}");
    let ev = json(&lines[0]);
    assert_eq!(ev["policy"], "logged", "{ev}");
    assert_eq!(ev["rule"], 1, "{ev}");
    assert_eq!(ev["verdict"], "drop", "{ev}");
    assert_eq!(ev["proto"], 6, "{ev}");
    assert_eq!(ev["src"], "10.0.0.2", "{ev}");
    assert_eq!(ev["dst"], "10.0.0.3", "{ev}");
    assert_eq!(ev["dport"], 8080, "{ev}");
    assert_eq!(ev["hook"], "out", "{ev}");
    assert!(
        ev["data"].as_str().is_some_and(|d| d.starts_with("45")),
        "{ev}"
    );

    let file = std::fs::File::open(&pcap).expect("pcap written");
    let mut reader = pcap_file::pcap::PcapReader::new(file).expect("a pcap file");
    assert_eq!(u32::from(reader.header().datalink), 101, "link type RAW");
    let packet = reader
        .next_packet()
        .expect("one packet")
        .expect("readable packet");
    assert_eq!(packet.data[0], 0x45, "IPv4, 20-byte header");
    assert_eq!(&packet.data[16..20], &[10, 0, 0, 3], "dst 10.0.0.3");
    assert_eq!(packet.data[9], 6, "TCP");
    assert_eq!(
        u64::from(packet.orig_len),
        ev["len"].as_u64().unwrap_or_default()
    );
    assert!(reader.next_packet().is_none(), "only one packet");

    let lines = follow_while_connecting(&p, &["events", "--count", "1", "--timeout", "10"]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("DROP") && lines[0].contains("10.0.0.3:8080"),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("policy logged rule 1"), "{}", lines[0]);
}

/// Runs `lwt events ARGS` in A, tries TCP to 10.0.0.3:8080 once it is
/// listening, and returns the lines it printed.
fn follow_while_connecting(p: &Pair, args: &[&str]) -> Vec<String> {
    follow(&p.a, args, || {
        assert!(!tcp_works(&p.a, "10.0.0.3:8080"), "8080 is dropped");
    })
}

/// Runs `lwt events ARGS` (which must stop by itself) in `ns`, runs
/// `traffic` once it has had time to start following, and returns the
/// lines it printed.
fn follow(ns: &Netns, args: &[&str], traffic: impl FnOnce()) -> Vec<String> {
    let mut child = ns.lwt_spawn(args);
    thread::sleep(Duration::from_millis(300));
    traffic();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for lwt events") {
            break status;
        }
        if start.elapsed() > Duration::from_secs(12) {
            let _ = child.kill();
            panic!("lwt {} did not stop", args.join(" "));
        }
        thread::sleep(Duration::from_millis(50));
    };
    let (mut out, mut err) = (String::new(), String::new());
    if let Some(mut s) = child.stdout.take() {
        s.read_to_string(&mut out).expect("stdout");
    }
    if let Some(mut s) = child.stderr.take() {
        s.read_to_string(&mut err).expect("stderr");
    }
    assert!(status.success(), "lwt events failed: {err}");
    out.lines().map(str::to_string).collect()
}

#[test]
fn ipv6_events_carry_v6_addresses_and_raw_ip_bytes() {
    require_root!();
    let p = Pair::new("fev6");
    policy(
        &p.a,
        "v6log",
        &["dst fd00::3/128 proto udp dport 9 drop log"],
    );
    attach(&p.a, "v6log", "fd00::3/128", "va", "out", &[]);
    let pcap = common::scratch("events6.pcap");
    let args = [
        "events",
        "--count",
        "1",
        "--timeout",
        "10",
        "--json",
        "--pcap",
        pcap.to_str().expect("utf-8"),
    ];
    let lines = follow(&p.a, &args, || {
        send_udp_lossy(&p.a, "[fd00::3]:9", 1, 2);
    });
    assert_eq!(lines.len(), 1, "{lines:?}");
    let ev = json(&lines[0]);
    assert_eq!(ev["src"], "fd00::2", "{ev}");
    assert_eq!(ev["dst"], "fd00::3", "{ev}");
    assert_eq!(ev["proto"], 17, "{ev}");
    assert_eq!(ev["dport"], 9, "{ev}");
    assert_eq!(ev["len"], 40 + 8 + 2, "{ev}");
    assert!(
        ev["data"].as_str().is_some_and(|d| d.starts_with('6')),
        "{ev}"
    );
    let file = std::fs::File::open(&pcap).expect("pcap written");
    let mut reader = pcap_file::pcap::PcapReader::new(file).expect("a pcap file");
    assert_eq!(u32::from(reader.header().datalink), 101, "link type RAW");
    let packet = reader
        .next_packet()
        .expect("one packet")
        .expect("readable packet");
    assert_eq!(packet.data[0] >> 4, 6, "IPv6");
    let dst: std::net::Ipv6Addr = "fd00::3".parse().expect("address");
    assert_eq!(&packet.data[24..40], &dst.octets(), "dst fd00::3");
}

#[test]

fn ipv6_events_in_text_bracket_addresses_that_carry_a_port() {
    require_root!();
    let p = Pair::new("fev6t");
    policy(
        &p.a,
        "v6log",
        &["dst fd00::3/128 proto udp dport 9 drop log"],
    );
    attach(&p.a, "v6log", "fd00::3/128", "va", "out", &[]);
    let lines = follow(&p.a, &["events", "--count", "1", "--timeout", "10"], || {
        send_udp_lossy(&p.a, "[fd00::3]:9", 1, 2);
    });
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("> [fd00::3]:9 "), "{}", lines[0]);
    assert!(lines[0].contains("[fd00::2]:"), "{}", lines[0]);
}

#[test]

fn events_follow_only_what_happens_after_they_start() {
    require_root!();
    let p = Pair::new("fevold");
    policy(&p.a, "old", &["proto udp dport 9 drop log"]);
    attach(&p.a, "old", "10.0.0.3/32", "va", "out", &[]);
    send_udp_lossy(&p.a, "10.0.0.3:9", 5, 2);
    let shown = show(&p.a, "old");
    assert_eq!(rule(&shown, 1)["logged"], 5, "{shown}");
    let lines = follow(&p.a, &["events", "--timeout", "1", "--json"], || {});
    assert_eq!(
        lines,
        Vec::<String>::new(),
        "nothing happened while following"
    );
}

#[test]

fn replace_starts_the_new_rules_counters_at_zero_under_load() {
    require_root!();
    let p = Pair::new("frepc");
    policy(&p.a, "busy", &["proto udp dport 9 drop"]);
    attach(&p.a, "busy", "10.0.0.3/32", "va", "out", &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let (done_tx, done) = mpsc::channel();
    let flooding = stop.clone();
    p.a.spawn(move || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("udp socket");
        while !flooding.load(Ordering::Relaxed) {
            let _ = s.send_to(b"x", "10.0.0.3:9");
        }
        let _ = done_tx.send(());
    });
    // The rule of `busy` matches the flood; the rule of `idle` matches nothing sent.
    let (busy, idle) = (common::scratch("busy.rules"), common::scratch("idle.rules"));
    std::fs::write(&busy, "proto udp dport 9 drop\n").expect("write rules file");
    std::fs::write(&idle, "proto udp dport 1 drop\n").expect("write rules file");
    let replace = |file: &PathBuf| {
        p.a.lwt_ok(&[
            "filter",
            "replace",
            "busy",
            "--file",
            file.to_str().expect("utf-8"),
        ]);
    };
    let mut leaked = Vec::new();
    for _ in 0..5 {
        replace(&busy);
        thread::sleep(Duration::from_millis(50));
        replace(&idle);
        leaked.push(show(&p.a, "busy")["rules"][0]["packets"].clone());
    }
    stop.store(true, Ordering::Relaxed);
    done.recv().expect("flood stopped");
    assert_eq!(
        leaked,
        vec![serde_json::json!(0); 5],
        "packets counted on `proto udp dport 1 drop` right after each replace"
    );
}

#[test]
fn log_rate_limit_suppresses_a_flood_and_accounts_for_every_packet() {
    require_root!();
    let p = Pair::new("frate");
    policy(&p.a, "flood", &["proto udp dport 9997 drop log"]);
    attach(&p.a, "flood", "10.0.0.3/32", "va", "out", &[]);
    let start = Instant::now();
    send_udp_lossy(&p.a, "10.0.0.3:9997", 3000, 10);
    let secs = start.elapsed().as_secs() + 1;
    let shown = show(&p.a, "flood");
    let r = rule(&shown, 1);
    let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} in {shown}"));
    assert_eq!(n("packets"), 3000, "{shown}");
    assert_eq!(n("logged") + n("suppressed"), n("packets"), "{shown}");
    // Each CPU the sender ran on: a burst of 200, then 100 a second.
    let cpus = thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    assert!(n("logged") >= 200, "the burst is logged: {shown}");
    assert!(
        n("logged") <= (cpus * (200 + 100 * secs)).min(1500),
        "the flood is suppressed: {shown}"
    );
}

#[test]
fn rule_ids_are_never_reused_and_each_rule_counts_from_zero() {
    require_root!();
    let p = Pair::new("fids");
    // Capacity 2: ids soon pass it, while at most two rules are held.
    p.a.lwt_ok(&["filter", "create", "ids", "--capacity", "2"]);
    let add = |words: &str| {
        let mut args = vec!["filter", "rule", "add", "ids"];
        args.extend(words.split_whitespace());
        p.a.lwt_ok(&args)
    };
    assert!(add("proto udp dport 9001 drop").contains("added rule 1"));
    assert!(add("proto udp dport 9002 drop").contains("added rule 2"));
    attach(&p.a, "ids", "10.0.0.3/32", "va", "out", &[]);
    send_udp_lossy(&p.a, "10.0.0.3:9001", 5, 10);
    assert_eq!(rule(&show(&p.a, "ids"), 1)["packets"], 5);

    p.a.lwt_ok(&["filter", "rule", "del", "ids", "1"]);
    let out = add("proto udp dport 9003 drop");
    assert!(
        out.contains("added rule 3"),
        "a deleted id is not reused: {out}"
    );
    // Someone who meant the old rule 1 cannot delete the new rule by mistake.
    let err = p.a.lwt_err(&["filter", "rule", "del", "ids", "1"]);
    assert!(err.contains("no rule 1"), "{err}");

    send_udp_lossy(&p.a, "10.0.0.3:9003", 7, 10);
    send_udp_lossy(&p.a, "10.0.0.3:9002", 4, 10);
    let shown = show(&p.a, "ids");
    assert_eq!(
        rule_texts(&shown),
        vec![
            (2, "proto udp dport 9002 drop".to_string()),
            (3, "proto udp dport 9003 drop".to_string())
        ]
    );
    assert_eq!(
        rule(&shown, 3)["packets"],
        7,
        "rule 3 starts at zero, not at rule 1's 5: {shown}"
    );
    assert_eq!(rule(&shown, 2)["packets"], 4, "{shown}");

    // Round after round, ids keep growing past the capacity; counters stay right.
    for round in 0..3u64 {
        p.a.lwt_ok(&["filter", "rule", "del", "ids", &(3 + round).to_string()]);
        let out = add("proto udp dport 9003 drop");
        assert!(out.contains(&format!("added rule {}", 4 + round)), "{out}");
        send_udp_lossy(&p.a, "10.0.0.3:9003", 3, 10);
        assert_eq!(rule(&show(&p.a, "ids"), 4 + round)["packets"], 3);
    }

    let file = common::scratch("ids.rules");
    std::fs::write(
        &file,
        "proto udp dport 9004 drop\nproto udp dport 9005 drop\n",
    )
    .expect("write rules file");
    p.a.lwt_ok(&[
        "filter",
        "replace",
        "ids",
        "--file",
        file.to_str().expect("utf-8"),
    ]);
    send_udp_lossy(&p.a, "10.0.0.3:9005", 2, 10);
    let shown = show(&p.a, "ids");
    assert_eq!(
        rule_texts(&shown),
        vec![
            (7, "proto udp dport 9004 drop".to_string()),
            (8, "proto udp dport 9005 drop".to_string())
        ],
        "replace continues the ids"
    );
    assert_eq!(rule(&shown, 7)["packets"], 0, "{shown}");
    assert_eq!(rule(&shown, 8)["packets"], 2, "{shown}");
}

/// Runs `lwt ARGS` expecting failure with `needle` in its message, and
/// checks that neither the policies nor the routes changed.
fn refused(ns: &Netns, args: &[&str], needle: &str) {
    let (policies, before) = (ns.lwt_ok(&["filter", "list", "-j"]), routes(ns));
    let err = ns.lwt_err(args);
    assert!(
        err.starts_with("lwt: error:"),
        "lwt {}: {err}",
        args.join(" ")
    );
    assert!(
        err.contains(needle),
        "lwt {}: expected `{needle}` in: {err}",
        args.join(" ")
    );
    assert_eq!(
        ns.lwt_ok(&["filter", "list", "-j"]),
        policies,
        "lwt {} changed the policies",
        args.join(" ")
    );
    assert_eq!(routes(ns), before, "lwt {} changed routes", args.join(" "));
}

/// Every route of `ns` but the IPv6 link-local ones, which the kernel adds
/// by itself once duplicate address detection ends.
fn routes(ns: &Netns) -> String {
    ns.routes()
        .lines()
        .filter(|l| !l.contains("fe80:"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn bad_input_is_named_and_changes_nothing() {
    require_root!();
    let p = Pair::new("fbad");
    policy(&p.a, "pol", &["proto tcp dport 8080 drop"]);
    attach(&p.a, "pol", "10.0.0.3/32", "va", "out", &[]);
    let add = |words: &'static str| {
        let mut args = vec!["filter", "rule", "add", "pol"];
        args.extend(words.split_whitespace());
        args
    };
    let a = &p.a;
    refused(a, &add("dprt 80 drop"), "unknown keyword `dprt`");
    refused(
        a,
        &add("dst 10.0.0.300/32 drop"),
        "bad CIDR `10.0.0.300/32`",
    );
    refused(a, &add("src 10.0.0.3/24 drop"), "host bits");
    refused(a, &add("dport 70000 drop"), "port `70000` out of range");
    refused(a, &add("dport 90-80 drop"), "reversed port range `90-80`");
    refused(a, &add("proto tcp dport 80"), "missing action");
    refused(
        a,
        &["filter", "rule", "add", "nosuch", "dport", "80", "drop"],
        "unknown policy `nosuch`",
    );
    refused(a, &["filter", "show", "nosuch"], "unknown policy `nosuch`");
    refused(
        a,
        &[
            "filter",
            "attach",
            "nosuch",
            "10.0.0.5/32",
            "--dev",
            "va",
            "--hook",
            "out",
        ],
        "unknown policy `nosuch`",
    );
    refused(a, &["filter", "rule", "del", "pol", "99"], "no rule 99");
    refused(a, &["filter", "create", "pol"], "already exists");
    refused(a, &["filter", "create", "a.b"], "invalid policy name `a.b`");
    refused(
        a,
        &[
            "filter",
            "attach",
            "pol",
            "10.0.0.5/32",
            "--dev",
            "nosuch0",
            "--hook",
            "out",
        ],
        "nosuch0",
    );
    refused(
        a,
        &["filter", "detach", "pol", "10.0.0.5/32"],
        "not attached to 10.0.0.5/32",
    );
    refused(
        a,
        &["filter", "delete", "nosuch"],
        "unknown policy `nosuch`",
    );
    let shown = show(a, "pol");
    assert_eq!(
        rule_texts(&shown),
        vec![(1, "proto tcp dport 8080 drop".to_string())]
    );
}

#[test]
fn stats_watch_prints_one_json_array_of_rates_per_interval() {
    require_root!();
    let p = Pair::new("fwatch");
    policy(&p.a, "w", &["proto udp dport 9996 drop"]);
    attach(&p.a, "w", "10.0.0.3/32", "va", "out", &[]);
    let child = p.a.lwt_spawn(&[
        "stats",
        "--watch",
        "--interval",
        "0.5",
        "--count",
        "2",
        "--json",
    ]);
    thread::sleep(Duration::from_millis(300));
    send_udp_lossy(&p.a, "10.0.0.3:9996", 50, 10);
    let out = child.wait_with_output().expect("lwt stats --watch");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<Value> = text.lines().map(json).collect();
    assert_eq!(lines.len(), 2, "--count 2: {text}");
    let mut dropped = 0.0;
    for line in &lines {
        let row = line
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["dst"] == "10.0.0.3/32"))
            .unwrap_or_else(|| panic!("a row for the route: {line}"));
        for field in ["pps", "bps", "dropped_pps"] {
            assert!(row[field].is_number(), "{field} in {row}");
        }
        assert_eq!(row["policy"], "w", "{row}");
        assert!(row["time"].as_f64().is_some_and(|t| t > 1.7e9), "{row}");
        dropped += row["dropped_pps"].as_f64().unwrap_or_default() * 0.5;
    }
    assert!(
        dropped > 0.0 && dropped <= 50.0,
        "the 50 drops show up as a rate: {text}"
    );
}

#[test]
fn stats_watch_redraws_on_a_terminal_and_prints_timestamped_blocks_when_piped() {
    require_root!();
    let p = Pair::new("fwatcht");
    policy(&p.a, "w", &["proto udp dport 9996 drop"]);
    attach(&p.a, "w", "10.0.0.3/32", "va", "out", &[]);
    let watch = ["stats", "--watch", "--interval", "0.2", "--count", "2"];
    let piped = p.a.lwt_ok(&watch);
    let heads: Vec<&str> = piped
        .lines()
        .filter(|l| l.contains(" UTC, rates"))
        .collect();
    assert_eq!(heads.len(), 2, "one timestamped block per refresh: {piped}");
    assert!(heads[0].as_bytes()[2] == b':', "HH:MM:SS first: {piped}");
    assert!(
        !piped.contains('\u{1b}'),
        "no escape codes when piped: {piped}"
    );

    // On a terminal (script(1) gives it one), each refresh homes the
    // cursor and clears, so the table stays in place.
    if let Ok(o) = std::process::Command::new("script")
        .arg("--version")
        .output()
    {
        if o.status.success() {
            let cmd = format!(
                "{} -n {} {}",
                env!("CARGO_BIN_EXE_lwt"),
                p.a.name,
                watch.join(" ")
            );
            let out = std::process::Command::new("script")
                .args(["-qec", &cmd, "/dev/null"])
                .output()
                .expect("script runs");
            let text = String::from_utf8_lossy(&out.stdout);
            assert_eq!(text.matches("\u{1b}[H\u{1b}[J").count(), 2, "{text:?}");
        }
    }
}

#[test]
fn counters_of_a_large_policy_survive_adding_and_deleting_other_rules() {
    require_root!();
    let p = Pair::new("fbig");
    // 200 rules (more than the carry-over reads one by one), then the
    // counted one last.
    let file = common::scratch("big.rules");
    let mut text: String = (0..200)
        .map(|i| {
            format!(
                "dst 192.0.2.{} proto udp dport {} drop\n",
                i % 250,
                1000 + i
            )
        })
        .collect();
    text.push_str("proto udp dport 9999 drop\n");
    std::fs::write(&file, text).expect("rules file");
    p.a.lwt_ok(&["filter", "create", "big", "--capacity", "1000"]);
    p.a.lwt_ok(&[
        "filter",
        "replace",
        "big",
        "--file",
        file.to_str().expect("utf-8 path"),
    ]);
    attach(&p.a, "big", "10.0.0.3/32", "va", "out", &[]);
    assert_eq!(send_udp_lossy(&p.a, "10.0.0.3:9999", 30, 10), 0);
    let counted = show(&p.a, "big")["rules"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["text"] == "proto udp dport 9999 drop"))
        .and_then(|r| r["id"].as_u64())
        .expect("the counted rule");
    let added = json(&p.a.lwt_ok(&[
        "-j", "filter", "rule", "add", "big", "proto", "udp", "dport", "7", "drop",
    ]));
    assert_eq!(rule(&show(&p.a, "big"), counted)["packets"], 30);
    assert_eq!(send_udp_lossy(&p.a, "10.0.0.3:9999", 5, 10), 0);
    p.a.lwt_ok(&["filter", "rule", "del", "big", &added["id"].to_string()]);
    p.a.lwt_ok(&["filter", "rule", "del", "big", "1"]);
    let shown = show(&p.a, "big");
    assert_eq!(rule(&shown, counted)["packets"], 35, "{shown}");
    assert_eq!(shown["rules"].as_array().map(Vec::len), Some(200));
    // The maps' bytes: at least the cells (8 per rule of capacity, 8,000
    // per generation, 32 bytes each).
    assert!(
        shown["map_bytes"]
            .as_u64()
            .is_some_and(|b| b >= 2 * 8_000 * 32),
        "{shown}"
    );
}

#[test]
fn a_policy_named_like_a_staging_pin_keeps_its_pins_across_commands() {
    require_root!();
    let p = Pair::new("fnxt");
    serve_tcp(&p.b, &["10.0.0.3:8080", "10.0.0.3:8081"]);
    assert!(tcp_works_soon(&p.a, "10.0.0.3:8080"), "baseline");
    policy(
        &p.a,
        "web_next",
        &["dst 10.0.0.3/32 proto tcp dport 8080 drop"],
    );
    attach(&p.a, "web_next", "10.0.0.3/32", "va", "out", &[]);
    // Every command sweeps staging pins first: `web_next` is a name, not one.
    p.a.lwt_ok(&[
        "filter", "rule", "add", "web_next", "proto", "udp", "dport", "9", "drop",
    ]);
    p.a.lwt_ok(&["check"]);
    assert!(!tcp_works(&p.a, "10.0.0.3:8080"), "8080 still dropped");
    assert!(tcp_works(&p.a, "10.0.0.3:8081"), "8081 still works");
    assert_eq!(
        show(&p.a, "web_next")["rules"].as_array().map(Vec::len),
        Some(2)
    );
}
