//! A policy's programs are specialised for what its rules use (no log,
//! action or IPv6 path the rules do not need): a change that needs a path
//! the attached programs lack swaps programs that have it onto every route
//! first, and the new rule takes effect in real traffic; a replace that
//! no longer needs a path swaps leaner programs back. `filter show` says
//! what the programs keep.
mod common;

use common::{json, send_udp, send_udp_lossy, Netns, Pair};
use serde_json::Value;

fn show(ns: &Netns, name: &str) -> Value {
    json(&ns.lwt_ok(&["filter", "show", name, "--json"]))
}

/// `filter show`'s specialisation: (ipv4 trees, ipv6 trees, log, actions).
fn spec(ns: &Netns, name: &str) -> (u64, u64, u64, u64) {
    let v = show(ns, name);
    let s = &v["program_spec"];
    let f = |k: &str| s[k].as_u64().unwrap_or_else(|| panic!("no {k} in {v}"));
    (f("v4_trees"), f("v6_trees"), f("log"), f("actions"))
}

fn rule_with<'a>(show: &'a Value, text: &str) -> &'a Value {
    show["rules"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["text"] == text))
        .unwrap_or_else(|| panic!("no rule `{text}` in {show}"))
}

fn add(ns: &Netns, policy: &str, rule: &str) {
    let mut args = vec!["filter", "rule", "add", policy];
    args.extend(rule.split_whitespace());
    ns.lwt_ok(&args);
}

/// Policy `name` with `rules`, on the `out` hook of 10.0.0.3/32 and
/// fd00::3/128 via `va` in A.
fn attached(p: &Pair, name: &str, rules: &[&str]) {
    p.a.lwt_ok(&["filter", "create", name]);
    for r in rules {
        add(&p.a, name, r);
    }
    for dst in ["10.0.0.3/32", "fd00::3/128"] {
        p.a.lwt_ok(&[
            "filter", "attach", name, dst, "--dev", "va", "--hook", "out",
        ]);
    }
}

fn agrees(ns: &Netns) {
    let found = ns.findings();
    assert!(found.is_empty(), "lwt check disagrees: {found:?}");
}

#[test]
fn a_log_rule_added_to_a_specialised_policy_logs_real_packets() {
    require_root!();
    let p = Pair::new("spl");
    attached(&p, "web", &["dst 10.0.0.3/32 proto udp dport 7 drop"]);
    assert_eq!(spec(&p.a, "web"), (1, 0, 0, 0), "IPv4 rules only, no log");
    let before = common::prog_id(&p.a, "10.0.0.3/32", "out");
    assert_eq!(send_udp_lossy(&p.a, "10.0.0.3:7", 5, 16), 0, "7 is dropped");

    add(&p.a, "web", "dst 10.0.0.3/32 proto udp dport 9 drop log");
    assert_eq!(
        spec(&p.a, "web"),
        (1, 0, 1, 0),
        "the programs keep the log path now"
    );
    assert_ne!(
        common::prog_id(&p.a, "10.0.0.3/32", "out"),
        before,
        "a new program on the route"
    );
    assert_eq!(send_udp_lossy(&p.a, "10.0.0.3:9", 3, 16), 0, "9 is dropped");
    assert_eq!(send_udp_lossy(&p.a, "10.0.0.3:7", 2, 16), 0, "7 still is");
    let v = show(&p.a, "web");
    let logged = rule_with(&v, "dst 10.0.0.3/32 proto udp dport 9 drop log");
    assert_eq!(logged["packets"], 3, "{v}");
    assert_eq!(logged["logged"], 3, "every packet logged: {v}");
    assert_eq!(
        rule_with(&v, "dst 10.0.0.3/32 proto udp dport 7 drop")["packets"],
        7,
        "{v}"
    );
    agrees(&p.a);

    // A replace without logging swaps leaner programs back, counters stay.
    let file = std::env::temp_dir().join(format!("lwtkit-spec-{}.rules", std::process::id()));
    std::fs::write(&file, "dst 10.0.0.3/32 proto udp dport 7 drop\n").expect("rules file");
    let logging = common::prog_id(&p.a, "10.0.0.3/32", "out");
    p.a.lwt_ok(&[
        "filter",
        "replace",
        "web",
        "--file",
        file.to_str().expect("utf-8"),
    ]);
    let _ = std::fs::remove_file(&file);
    assert_eq!(
        spec(&p.a, "web"),
        (1, 0, 0, 0),
        "no log path after the replace"
    );
    assert_ne!(
        common::prog_id(&p.a, "10.0.0.3/32", "out"),
        logging,
        "a leaner program"
    );
    assert_eq!(
        send_udp_lossy(&p.a, "10.0.0.3:7", 1, 16),
        0,
        "7 still dropped"
    );
    assert_eq!(send_udp_lossy(&p.a, "10.0.0.3:9", 1, 16), 1, "9 allowed");
    agrees(&p.a);
}

#[test]
fn an_ipv6_rule_added_to_an_ipv4_only_policy_drops_ipv6_packets() {
    require_root!();
    let p = Pair::new("sp6");
    attached(&p, "web", &["dst 10.0.0.3/32 proto udp dport 7 drop"]);
    assert_eq!(spec(&p.a, "web"), (1, 0, 0, 0));
    assert_eq!(
        send_udp_lossy(&p.a, "[fd00::3]:9", 2, 16),
        2,
        "no IPv6 rule yet"
    );

    add(&p.a, "web", "dst fd00::3/128 proto udp dport 9 drop");
    assert_eq!(
        spec(&p.a, "web"),
        (1, 1, 0, 0),
        "the programs walk IPv6 trees now"
    );
    assert_eq!(
        send_udp_lossy(&p.a, "[fd00::3]:9", 4, 16),
        0,
        "IPv6 :9 dropped"
    );
    assert_eq!(
        send_udp_lossy(&p.a, "[fd00::3]:10", 1, 16),
        1,
        "other ports pass"
    );
    assert_eq!(
        send_udp_lossy(&p.a, "10.0.0.3:7", 1, 16),
        0,
        "IPv4 rule still holds"
    );
    let v = show(&p.a, "web");
    assert_eq!(
        rule_with(&v, "dst fd00::3/128 proto udp dport 9 drop")["packets"],
        4,
        "{v}"
    );
    agrees(&p.a);
}

#[test]
fn an_action_added_to_a_specialised_policy_acts_on_real_packets() {
    require_root!();
    let p = Pair::new("spa");
    attached(&p, "web", &["dst 10.0.0.3/32 proto udp dport 7 drop"]);
    assert_eq!(spec(&p.a, "web").3, 0, "no action path");

    add(&p.a, "web", "dst 10.0.0.3/32 proto udp dport 9 mark 7");
    assert_eq!(
        spec(&p.a, "web").3,
        1,
        "the programs keep the action path now"
    );
    send_udp(&p.a, "10.0.0.3:9", 5, 16);
    let v = show(&p.a, "web");
    let marked = rule_with(&v, "dst 10.0.0.3/32 proto udp dport 9 mark 7");
    assert_eq!(
        marked["action_counters"]["done"], 5,
        "every packet marked: {v}"
    );
    assert_eq!(
        send_udp_lossy(&p.a, "10.0.0.3:7", 1, 16),
        0,
        "7 still dropped"
    );
    agrees(&p.a);
}
