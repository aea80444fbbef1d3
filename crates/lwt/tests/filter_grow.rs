//! Policies that grow past their capacity: `filter replace` and `rule add`
//! beyond what a policy was made for swap bigger maps in on every route
//! and hook it is attached to, while packets flow, with no packet that a
//! rule drops getting through and no allowed packet refused; counters
//! (per rule, default, per attachment) carry over.
mod common;

use std::{
    net::UdpSocket,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    time::{Duration, Instant},
};

use common::{json, send_udp_lossy, Netns, Pair};
use serde_json::Value;

fn show(ns: &Netns, name: &str) -> Value {
    json(&ns.lwt_ok(&["filter", "show", name, "-j"]))
}

fn rule(show: &Value, id: u64) -> &Value {
    show["rules"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["id"] == id))
        .unwrap_or_else(|| panic!("no rule {id} in {show}"))
}

fn stats_row(ns: &Netns, dst: &str, hook: &str) -> Value {
    let stats = json(&ns.lwt_ok(&["stats", "-j"]));
    stats
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["dst"] == dst && r["hook"] == hook))
        .cloned()
        .unwrap_or_else(|| panic!("no stats row for {dst} hook {hook}: {stats}"))
}

/// `n` distinct drop rules (UDP to 198.18.x.y, port 1000 + i % 50000),
/// then `extra` lines.
fn rules_file(name: &str, n: usize, extra: &[&str]) -> PathBuf {
    let mut text = String::with_capacity(n * 48);
    for i in 0..n {
        text.push_str(&format!(
            "dst 198.18.{}.{}/32 proto udp dport {} drop\n",
            (i >> 8) & 0xff,
            i & 0xff,
            1000 + i % 50_000
        ));
    }
    for l in extra {
        text.push_str(l);
        text.push('\n');
    }
    let file = common::scratch(name);
    std::fs::write(&file, text).expect("rules file");
    file
}

/// What a sender saw while a change ran: sends the routes' hooks refused
/// or accepted, per kind of datagram.
#[derive(Debug, Default)]
struct Seen {
    /// Datagrams a rule drops that were accepted (must stay 0).
    leaked: usize,
    dropped: usize,
    allowed: usize,
    /// Datagrams no rule drops that were refused (must stay 0).
    refused: usize,
}

/// Sends, until `stop`, datagrams to each of `drop_to` (which a rule drops
/// before, during and after the change) and to `allow_to` (which none
/// does), from `ns`; the out hook's verdict is the send's result.
fn sender(
    ns: &Netns,
    drop_to: &'static [&'static str],
    allow_to: &'static str,
    stop: Arc<AtomicBool>,
) -> mpsc::Receiver<Seen> {
    let (tx, rx) = mpsc::channel();
    ns.spawn(move || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("udp socket");
        let mut seen = Seen::default();
        while !stop.load(Ordering::Relaxed) {
            for to in drop_to {
                match s.send_to(b"x", to) {
                    Ok(_) => seen.leaked += 1,
                    Err(_) => seen.dropped += 1,
                }
            }
            match s.send_to(b"y", allow_to) {
                Ok(_) => seen.allowed += 1,
                Err(_) => seen.refused += 1,
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let _ = tx.send(seen);
    });
    rx
}

/// The program names on 10.0.0.3 and 10.0.0.5 (their `#id` changes when
/// the policy's maps are swapped).
fn programs(ns: &Netns) -> String {
    ns.ip(&["route", "show", "10.0.0.3"]) + &ns.ip(&["route", "show", "10.0.0.5"])
}

#[test]
fn a_default_policy_takes_thousands_of_rules_on_two_routes_while_packets_flow() {
    require_root!();
    let p = Pair::new("grw");
    let a = &p.a;
    a.lwt_ok(&["filter", "create", "web"]);
    a.lwt_ok(&[
        "filter", "rule", "add", "web", "proto", "udp", "dport", "9999", "drop",
    ]);
    for dst in ["10.0.0.3/32", "10.0.0.5/32"] {
        a.lwt_ok(&[
            "filter", "attach", "web", dst, "--dev", "va", "--hook", "out",
        ]);
    }
    assert_eq!(send_udp_lossy(a, "10.0.0.3:9999", 5, 8), 0);
    assert_eq!(send_udp_lossy(a, "10.0.0.5:9999", 3, 8), 0);
    assert_eq!(send_udp_lossy(a, "10.0.0.3:7000", 4, 8), 4);
    let before = show(a, "web");
    let capacity = before["capacity"].as_u64().expect("capacity");
    let bytes_before = before["map_bytes"].as_u64().expect("map bytes");
    let programs_before = programs(a);

    let stop = Arc::new(AtomicBool::new(false));
    let seen = sender(
        a,
        &["10.0.0.3:9999", "10.0.0.5:9999"],
        "10.0.0.3:7000",
        stop.clone(),
    );
    std::thread::sleep(Duration::from_millis(100));
    let n = 4 * capacity as usize;
    let file = rules_file("grow.rules", n, &["proto udp dport 9999 drop"]);
    let started = Instant::now();
    a.lwt_ok(&[
        "filter",
        "replace",
        "web",
        "--file",
        file.to_str().expect("utf-8"),
    ]);
    let took = started.elapsed();
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let seen = seen
        .recv_timeout(Duration::from_secs(10))
        .expect("the sender ends");
    eprintln!("replace of {n} rules (growth) took {took:?}; sender saw {seen:?}");
    assert_eq!(seen.leaked, 0, "a dropped datagram got through: {seen:?}");
    assert_eq!(seen.refused, 0, "an allowed datagram was refused: {seen:?}");
    assert!(seen.dropped > 0 && seen.allowed > 0, "{seen:?}");

    let after = show(a, "web");
    assert!(
        after["capacity"].as_u64().expect("capacity") > n as u64,
        "{}",
        after["capacity"]
    );
    assert!(after["map_bytes"].as_u64().expect("bytes") > bytes_before);
    assert_eq!(after["rules"].as_array().map(Vec::len), Some(n + 1));
    assert_ne!(
        programs(a),
        programs_before,
        "each route runs a new program"
    );
    assert!(programs(a).matches("lwtkit-filter-web").count() == 2);
    // The default's counter carried over (4 datagrams to 7000 before, the
    // sender's since).
    assert_eq!(
        after["unmatched"]["packets"].as_u64(),
        Some(4 + seen.allowed as u64),
        "{}",
        after["unmatched"]
    );
    // Each attachment's counters go on.
    let row = stats_row(a, "10.0.0.5/32", "out");
    assert!(
        row["dropped"]["packets"].as_u64().expect("dropped") >= 3,
        "{row}"
    );
    // The rules of the file are live on both routes.
    assert_eq!(send_udp_lossy(a, "10.0.0.3:9999", 2, 8), 0);
    assert_eq!(send_udp_lossy(a, "10.0.0.5:9999", 2, 8), 0);
    assert_eq!(send_udp_lossy(a, "198.18.0.7:1007", 2, 8), 0);
    assert_eq!(send_udp_lossy(a, "10.0.0.5:7000", 2, 8), 2);
    assert_eq!(a.findings(), vec![]);
    let pins = a.pin_dir().join("filters");
    let left: Vec<String> = std::fs::read_dir(&pins)
        .expect("filter pins")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec!["web".to_string()], "no staged maps are left");

    for dst in ["10.0.0.3/32", "10.0.0.5/32"] {
        a.lwt_ok(&["filter", "detach", "web", dst]);
    }
    a.lwt_ok(&["filter", "delete", "web"]);
    let records: Vec<String> = std::fs::read_dir(a.state_dir().join("filters"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        records.is_empty(),
        "delete leaves no rules file: {records:?}"
    );
}

#[test]
fn rules_added_one_by_one_grow_a_policy_and_every_counter_carries_over() {
    require_root!();
    let p = Pair::new("gra");
    let a = &p.a;
    a.lwt_ok(&["filter", "create", "ids", "--capacity", "2"]);
    let add = |port: u16| {
        let port = port.to_string();
        json(&a.lwt_ok(&[
            "-j", "filter", "rule", "add", "ids", "proto", "udp", "dport", &port, "drop",
        ]))["id"]
            .as_u64()
            .expect("id")
    };
    assert_eq!(add(9001), 1);
    assert_eq!(add(9002), 2);
    a.lwt_ok(&[
        "filter",
        "attach",
        "ids",
        "10.0.0.3/32",
        "--dev",
        "va",
        "--hook",
        "out",
    ]);
    a.lwt_ok(&[
        "filter",
        "attach",
        "ids",
        "10.0.0.5/32",
        "--dev",
        "va",
        "--hook",
        "out",
    ]);
    assert_eq!(send_udp_lossy(a, "10.0.0.3:9001", 5, 8), 0);
    assert_eq!(send_udp_lossy(a, "10.0.0.5:9002", 4, 8), 0);
    assert_eq!(send_udp_lossy(a, "10.0.0.5:7000", 3, 8), 3);
    let dropped_before = stats_row(a, "10.0.0.5/32", "out")["dropped"]["packets"].clone();

    // Past 2, 4 and 8 rules: three growths.
    let mut capacities = vec![];
    for port in 9003..=9011u16 {
        add(port);
        capacities.push(show(a, "ids")["capacity"].as_u64().expect("capacity"));
        assert_eq!(a.findings(), vec![], "after adding the rule for {port}");
    }
    assert_eq!(capacities, vec![4, 4, 8, 8, 8, 8, 16, 16, 16]);
    let shown = show(a, "ids");
    assert_eq!(rule(&shown, 1)["packets"], 5, "{shown}");
    assert_eq!(rule(&shown, 2)["packets"], 4, "{shown}");
    assert_eq!(shown["unmatched"]["packets"], 3, "{shown}");
    assert_eq!(
        stats_row(a, "10.0.0.5/32", "out")["dropped"]["packets"],
        dropped_before
    );
    // Old and new rules drop on both routes, and count on.
    assert_eq!(send_udp_lossy(a, "10.0.0.5:9001", 1, 8), 0);
    assert_eq!(send_udp_lossy(a, "10.0.0.3:9011", 2, 8), 0);
    let shown = show(a, "ids");
    assert_eq!(rule(&shown, 1)["packets"], 6, "{shown}");
    assert_eq!(rule(&shown, 11)["packets"], 2, "{shown}");
    // Deleting rules does not shrink the policy, nor disturb the others.
    a.lwt_ok(&["filter", "rule", "del", "ids", "2"]);
    let shown = show(a, "ids");
    assert_eq!(shown["capacity"], 16);
    assert_eq!(rule(&shown, 1)["packets"], 6, "{shown}");
    assert_eq!(a.findings(), vec![]);
}

#[test]
fn a_policy_grows_on_an_ipv6_local_route_that_still_goes_with_its_address() {
    require_root!();
    let p = Pair::new("gr6");
    let a = &p.a;
    a.ip(&["-6", "addr", "add", "fd00::20/64", "dev", "va", "nodad"]);
    a.lwt_ok(&["filter", "create", "v6", "--capacity", "1"]);
    a.lwt_ok(&[
        "filter", "rule", "add", "v6", "proto", "udp", "dport", "9001", "drop",
    ]);
    a.lwt_ok(&[
        "filter",
        "attach",
        "v6",
        "fd00::20/128",
        "--dev",
        "va",
        "--hook",
        "in",
        "--local",
    ]);
    let before = a.ip(&["-6", "route", "show", "table", "local", "fd00::20"]);
    a.lwt_ok(&[
        "filter", "rule", "add", "v6", "proto", "udp", "dport", "9002", "drop",
    ]);
    let after = a.ip(&["-6", "route", "show", "table", "local", "fd00::20"]);
    assert_eq!(show(a, "v6")["capacity"], 2);
    assert!(after.contains("lwtkit-filter-v6"), "{after}");
    assert_ne!(before, after, "the route runs a program on the new maps");
    assert_eq!(a.findings(), vec![]);
    // The address goes: the next lwt command removes lwtkit's local route.
    a.ip(&["-6", "addr", "del", "fd00::20/64", "dev", "va"]);
    let out = a.lwt(&["check"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("fd00::20") && err.contains("is gone"), "{err}");
    let now = a.ip(&["-6", "route", "show", "table", "local", "fd00::20"]);
    assert_eq!(now.trim(), "", "stand-in removed after the growth");
}

/// `LWT_GROW_RULES=N` sets the size (default 1,000,000).
#[test]
#[ignore = "slow: a million rules (run with --ignored)"]
fn a_default_policy_takes_a_million_rules() {
    require_root!();
    let n: usize = std::env::var("LWT_GROW_RULES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let p = Pair::new("grm");
    let a = &p.a;
    a.lwt_ok(&["filter", "create", "big"]);
    a.lwt_ok(&[
        "filter",
        "attach",
        "big",
        "10.0.0.3/32",
        "--dev",
        "va",
        "--hook",
        "out",
    ]);
    let file = rules_file("million.rules", n, &["proto udp dport 9999 drop"]);
    let started = Instant::now();
    a.lwt_ok(&[
        "filter",
        "replace",
        "big",
        "--file",
        file.to_str().expect("utf-8"),
    ]);
    let replace = started.elapsed();
    let started = Instant::now();
    a.lwt_ok(&[
        "filter", "rule", "add", "big", "proto", "udp", "dport", "9998", "drop",
    ]);
    let add = started.elapsed();
    let shown = show(a, "big");
    eprintln!(
        "{n} rules: replace (with growth) {replace:?}, add {add:?}, capacity {}, maps {} bytes",
        shown["capacity"], shown["map_bytes"]
    );
    assert_eq!(shown["rules"].as_array().map(Vec::len), Some(n + 2));
    assert_eq!(send_udp_lossy(a, "10.0.0.3:9999", 2, 8), 0);
    assert_eq!(send_udp_lossy(a, "10.0.0.3:9998", 2, 8), 0);
    assert_eq!(send_udp_lossy(a, "10.0.0.3:7000", 2, 8), 2);
    assert_eq!(a.findings(), vec![]);
}

/// A policy whose record an older lwtkit wrote (rules inline in the JSON,
/// counters in the live generation only, `carried` for the rest) keeps
/// its rules and counters through its next change, which moves it to a
/// rules file and to counting in both generations.
#[test]
fn a_record_written_before_rules_files_is_moved_over_with_its_counters() {
    require_root!();
    let p = Pair::new("grold");
    let a = &p.a;
    a.lwt_ok(&["filter", "create", "old"]);
    for port in ["9001", "9002"] {
        a.lwt_ok(&[
            "filter", "rule", "add", "old", "proto", "udp", "dport", port, "drop",
        ]);
    }
    a.lwt_ok(&[
        "filter",
        "attach",
        "old",
        "10.0.0.3/32",
        "--dev",
        "va",
        "--hook",
        "out",
    ]);
    assert_eq!(send_udp_lossy(a, "10.0.0.3:9001", 5, 8), 0);
    assert_eq!(send_udp_lossy(a, "10.0.0.3:7000", 2, 8), 2);
    // The record as an older lwtkit wrote it: what was counted since the
    // last change is in the live generation, which that lwtkit read alone.
    let shown = show(a, "old");
    let dir = a.state_dir().join("filters");
    let record = dir.join("old.json");
    let mut v = json(&std::fs::read_to_string(&record).expect("record"));
    let o = v.as_object_mut().expect("object");
    let file = o.remove("rules_file").expect("rules file");
    o.remove("journal_len");
    o.remove("both_generations");
    o.remove("rules_version");
    let rules: Vec<Value> = shown["rules"].as_array().expect("rules").clone();
    let slots: serde_json::Map<String, Value> = rules
        .iter()
        .map(|r| (r["id"].to_string(), r["id"].clone()))
        .collect();
    o.insert("rules".into(), Value::Array(rules));
    o.insert("slots".into(), Value::Object(slots));
    std::fs::write(&record, v.to_string()).expect("old record");
    for e in std::fs::read_dir(&dir).expect("records").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("old.rules.") || name.starts_with("old.journal.") {
            std::fs::remove_file(e.path()).expect("rules file");
        }
    }
    assert!(file.is_string());
    assert_eq!(rule(&show(a, "old"), 1)["packets"], 5);
    assert_eq!(a.findings(), vec![]);

    // Its next change moves it over; counters carry, rules stay live.
    a.lwt_ok(&[
        "filter", "rule", "add", "old", "proto", "udp", "dport", "9003", "drop",
    ]);
    let shown = show(a, "old");
    assert_eq!(rule(&shown, 1)["packets"], 5, "{shown}");
    assert_eq!(shown["unmatched"]["packets"], 2, "{shown}");
    assert_eq!(send_udp_lossy(a, "10.0.0.3:9001", 1, 8), 0);
    assert_eq!(send_udp_lossy(a, "10.0.0.3:9003", 1, 8), 0);
    a.lwt_ok(&["filter", "rule", "del", "old", "2"]);
    let shown = show(a, "old");
    assert_eq!(rule(&shown, 1)["packets"], 6, "{shown}");
    assert_eq!(rule(&shown, 3)["packets"], 1, "{shown}");
    assert_eq!(shown["unmatched"]["packets"], 2, "{shown}");
    let v = json(&std::fs::read_to_string(&record).expect("record"));
    assert_eq!(v["both_generations"], true, "{v}");
    assert!(v.get("rules").is_none(), "rules in their file: {v}");
    assert_eq!(a.findings(), vec![]);
}
