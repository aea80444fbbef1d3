//! Which route `lwt attach` and `lwt detach` work on when several routes
//! could answer for a prefix: lwtkit asks the kernel's FIB lookup first and
//! must not be fooled by more specific routes, fib rules, table local or
//! metrics (docs/kernel.md, "Finding one route").
mod common;

use common::{json, send_udp, Pair};

fn attach_count(ns: &common::Netns, dst: &str, hook: &str) -> String {
    ns.lwt_ok(&[
        "attach",
        dst,
        "--dev",
        "va",
        "--hook",
        hook,
        "--builtin",
        "count",
    ])
}

#[test]
fn a_route_behind_a_more_specific_one_is_the_one_attached() {
    require_root!();
    let p = Pair::new("lkin");
    p.a.ip(&[
        "route",
        "add",
        "192.0.2.0/24",
        "via",
        "10.0.0.3",
        "metric",
        "50",
    ]);
    // Covers the prefix's first address, which lwtkit looks up first.
    p.a.ip(&["route", "add", "192.0.2.0/25", "via", "10.0.0.3"]);
    let before = p.a.ip(&["-d", "route", "show", "192.0.2.0/24"]);

    let out = attach_count(&p.a, "192.0.2.0/24", "xmit");
    assert!(!out.contains("route created"), "{out}");
    let during = p.a.ip(&["-d", "route", "show", "192.0.2.0/24"]);
    assert!(
        during.contains("encap bpf xmit") && during.contains("metric 50"),
        "{during}"
    );
    assert_eq!(during.lines().count(), 1, "{during}");
    let inner = p.a.ip(&["route", "show", "192.0.2.0/25"]);
    assert!(!inner.contains("encap"), "{inner}");

    // Only the /24's own traffic (outside the /25) passes its program.
    send_udp(&p.a, "192.0.2.200:9", 4, 1);
    send_udp(&p.a, "192.0.2.7:9", 3, 1);
    let stats = json(&p.a.lwt_ok(&["stats", "-j"]));
    assert_eq!(stats[0]["packets"], 4, "{stats}");

    p.a.lwt_ok(&["detach", "192.0.2.0/24"]);
    assert_eq!(p.a.ip(&["-d", "route", "show", "192.0.2.0/24"]), before);
}

#[test]
fn a_main_route_of_the_hosts_own_address_is_told_apart_from_its_local_route() {
    require_root!();
    let p = Pair::new("lkloc");
    // Without rules of its own the namespace keeps tables local and main
    // in one trie, and the kernel's lookup names both "main".
    p.a.ip(&["route", "add", "10.0.0.2/32", "dev", "va", "metric", "7"]);
    let main_before =
        p.a.ip(&["-d", "route", "show", "table", "main", "10.0.0.2/32"]);
    let local_before =
        p.a.ip(&["-d", "route", "show", "table", "local", "10.0.0.2/32"]);

    let out = attach_count(&p.a, "10.0.0.2/32", "out");
    assert!(!out.contains("route created"), "{out}");
    let main = p.a.ip(&["route", "show", "table", "main", "10.0.0.2/32"]);
    assert!(
        main.contains("encap bpf out") && main.contains("metric 7"),
        "{main}"
    );
    assert_eq!(
        p.a.ip(&["-d", "route", "show", "table", "local", "10.0.0.2/32"]),
        local_before
    );

    p.a.lwt_ok(&["detach", "10.0.0.2/32"]);
    assert_eq!(
        p.a.ip(&["-d", "route", "show", "table", "main", "10.0.0.2/32"]),
        main_before
    );
    assert_eq!(
        p.a.ip(&["-d", "route", "show", "table", "local", "10.0.0.2/32"]),
        local_before
    );
}

#[test]
fn a_rule_that_sends_the_prefix_elsewhere_does_not_hide_the_main_route() {
    require_root!();
    let p = Pair::new("lkrule");
    p.a.ip(&[
        "rule",
        "add",
        "to",
        "203.0.113.0/24",
        "lookup",
        "100",
        "pref",
        "100",
    ]);
    p.a.ip(&[
        "route",
        "add",
        "203.0.113.0/24",
        "dev",
        "va",
        "table",
        "100",
    ]);
    p.a.ip(&["route", "add", "203.0.113.0/24", "via", "10.0.0.3"]);
    let main_before = p.a.ip(&["-d", "route", "show", "203.0.113.0/24"]);
    let t100_before = p.a.ip(&["-d", "route", "show", "table", "100"]);

    let out = attach_count(&p.a, "203.0.113.0/24", "out");
    assert!(!out.contains("route created"), "{out}");
    let main = p.a.ip(&["route", "show", "203.0.113.0/24"]);
    assert!(
        main.contains("encap bpf out") && main.contains("via 10.0.0.3"),
        "{main}"
    );
    assert_eq!(
        p.a.ip(&["-d", "route", "show", "table", "100"]),
        t100_before
    );
    // With a rule of its own, the namespace keeps table local apart: the
    // local route of the host's address is found in its own table.
    attach_count(&p.a, "10.0.0.2/32", "out");
    let local = p.a.ip(&["route", "show", "table", "local", "10.0.0.2/32"]);
    assert!(!local.contains("encap"), "{local}");

    p.a.lwt_ok(&["detach", "10.0.0.2/32"]);
    p.a.lwt_ok(&["detach", "203.0.113.0/24"]);
    assert_eq!(
        p.a.ip(&["-d", "route", "show", "203.0.113.0/24"]),
        main_before
    );
    assert_eq!(
        p.a.ip(&["route", "show", "table", "main", "10.0.0.2/32"])
            .trim(),
        ""
    );
}

#[test]
fn the_lowest_metric_ipv6_route_is_the_one_attached() {
    require_root!();
    let p = Pair::new("lkmet");
    for metric in ["200", "100"] {
        p.a.ip(&[
            "-6",
            "route",
            "add",
            "fd00:1::/64",
            "via",
            "fd00::3",
            "metric",
            metric,
        ]);
    }
    let before = p.a.ip(&["-6", "-d", "route", "show", "fd00:1::/64"]);

    attach_count(&p.a, "fd00:1::/64", "out");
    let during = p.a.ip(&["-6", "route", "show", "fd00:1::/64"]);
    let with_encap: Vec<&str> = during.lines().filter(|l| l.contains("encap")).collect();
    assert_eq!(with_encap.len(), 1, "{during}");
    assert!(with_encap[0].contains("metric 100"), "{during}");

    p.a.lwt_ok(&["detach", "fd00:1::/64"]);
    assert_eq!(
        p.a.ip(&["-6", "-d", "route", "show", "fd00:1::/64"]),
        before
    );
}

#[test]
fn default_routes_of_both_families_are_found() {
    require_root!();
    let p = Pair::new("lkdef");
    p.a.ip(&["route", "add", "default", "via", "10.0.0.3"]);
    p.a.ip(&["-6", "route", "add", "default", "via", "fd00::3"]);
    let before = p.a.routes();

    for dst in ["0.0.0.0/0", "::/0"] {
        let out = attach_count(&p.a, dst, "out");
        assert!(!out.contains("route created"), "{dst}: {out}");
    }
    let v4 = p.a.ip(&["route", "show", "default"]);
    let v6 = p.a.ip(&["-6", "route", "show", "default"]);
    assert!(
        v4.contains("encap bpf out") && v4.contains("via 10.0.0.3"),
        "{v4}"
    );
    assert!(
        v6.contains("encap bpf out") && v6.contains("via fd00::3"),
        "{v6}"
    );
    send_udp(&p.a, "198.51.100.7:9", 3, 1);
    let stats = json(&p.a.lwt_ok(&["stats", "-j"]));
    let v4_packets: u64 = stats
        .as_array()
        .expect("array")
        .iter()
        .filter(|s| s["dst"] == "0.0.0.0/0")
        .map(|s| s["packets"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(v4_packets, 3, "{stats}");

    p.a.lwt_ok(&["detach", "0.0.0.0/0"]);
    p.a.lwt_ok(&["detach", "::/0"]);
    assert_eq!(p.a.routes(), before);
}

#[test]
fn a_route_the_kernel_lookup_skips_is_refused_not_overwritten() {
    require_root!();
    let p = Pair::new("lkskip");
    p.a.ip(&["-6", "route", "add", "default", "via", "fd00::3"]);
    p.a.ip(&["-6", "route", "add", "fd00:9::/64", "via", "fd00::99"]);
    // A gateway that failed to answer: with forwarding off the kernel's
    // lookup passes over the route and answers with the default route.
    p.a.ip(&[
        "-6", "neigh", "replace", "fd00::99", "dev", "va", "nud", "failed",
    ]);
    let before = p.a.ip(&["-6", "-d", "route", "show", "fd00:9::/64"]);

    let err = p.a.lwt_err(&[
        "attach",
        "fd00:9::/64",
        "--dev",
        "va",
        "--hook",
        "out",
        "--builtin",
        "count",
    ]);
    assert!(err.contains("already has a route"), "{err}");
    assert_eq!(
        p.a.ip(&["-6", "-d", "route", "show", "fd00:9::/64"]),
        before
    );
    assert_eq!(json(&p.a.lwt_ok(&["list", "-j"])), serde_json::json!([]));
}
