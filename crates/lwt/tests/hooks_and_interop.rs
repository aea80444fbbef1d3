//! Stacking hooks on one route, custom sections, and interop with iproute2
//! both ways.
mod common;

use common::{compile_bpf, json, send_udp, serve_tcp, tcp_works, tcp_works_soon, Netns, Pair};

fn bpf_route<'a>(list: &'a serde_json::Value, dst: &str) -> &'a serde_json::Value {
    list.as_array()
        .and_then(|a| a.iter().find(|r| r["dst"] == dst))
        .unwrap_or_else(|| panic!("{dst} not in lwt list: {list}"))
}

#[test]
fn in_out_xmit_stack_on_one_route_and_detach_one_hook_at_a_time() {
    require_root!();
    let p = Pair::new("stk");
    for hook in ["in", "out", "xmit"] {
        p.a.lwt_ok(&[
            "attach",
            "10.0.0.3/32",
            "--dev",
            "va",
            "--hook",
            hook,
            "--builtin",
            "count",
        ]);
    }
    let shown = p.a.ip(&["route", "show", "10.0.0.3/32"]);
    for name in [
        "in lwtkit-count:[lwt_in]",
        "out lwtkit-count:[lwt_out]",
        "xmit lwtkit-count:[lwt_xmit]",
    ] {
        assert!(shown.contains(name), "{name} in {shown}");
    }
    let list = json(&p.a.lwt_ok(&["list", "--json"]));
    let r = bpf_route(&list, "10.0.0.3/32");
    assert_eq!(r["encap"], "bpf");
    assert_eq!(r["table"], "main");
    assert_eq!(r["dev"], "va");
    assert_eq!(r["type"], "unicast");
    for hook in ["in", "out", "xmit"] {
        assert!(
            r[hook]["id"].as_u64().is_some_and(|id| id > 0),
            "{hook} has a program id: {r}"
        );
        // lwtkit's names are unique per program: `<name>#<prog id>`.
        let name = r[hook]["name"].as_str().unwrap_or_default();
        assert_eq!(
            name,
            format!("lwtkit-count:[lwt_{hook}]#{}", r[hook]["id"]),
            "{r}"
        );
    }

    send_udp(&p.a, "10.0.0.3:9", 20, 1);
    let stats = json(&p.a.lwt_ok(&["stats", "-j"]));
    let count = |hook: &str| {
        stats
            .as_array()
            .and_then(|a| a.iter().find(|s| s["hook"] == hook))
            .map(|s| s["packets"].clone())
    };
    assert_eq!(count("out"), Some(20.into()), "{stats}");
    assert_eq!(count("xmit"), Some(20.into()), "{stats}");
    assert_eq!(count("in"), Some(0.into()), "{stats}");

    p.a.lwt_ok(&["detach", "10.0.0.3/32", "--hook", "out"]);
    let shown = p.a.ip(&["route", "show", "10.0.0.3/32"]);
    assert!(
        !shown.contains("lwt_out") && shown.contains("lwt_in") && shown.contains("lwt_xmit"),
        "{shown}"
    );
    let err = p.a.lwt_err(&["detach", "10.0.0.3/32", "--hook", "out"]);
    assert!(err.contains("no `out` hook"), "{err}");
    p.a.lwt_ok(&["detach", "10.0.0.3/32", "--dev", "va"]);
    assert_eq!(p.a.ip(&["route", "show", "10.0.0.3/32"]).trim(), "");
}

#[test]
fn reattach_replaces_the_program_in_place() {
    require_root!();
    let p = Pair::new("rep");
    serve_tcp(&p.b, &["10.0.0.3:8080"]);
    let obj = compile_bpf("drop_tcp_8080");
    p.a.lwt_ok(&[
        "attach",
        "10.0.0.3/32",
        "--dev",
        "va",
        "--hook",
        "out",
        "--builtin",
        "count",
    ]);
    assert!(tcp_works_soon(&p.a, "10.0.0.3:8080"), "baseline");
    p.a.lwt_ok(&[
        "attach",
        "10.0.0.3/32",
        "--dev",
        "va",
        "--hook",
        "out",
        "--obj",
        obj.to_str().expect("utf-8"),
    ]);
    assert!(!tcp_works(&p.a, "10.0.0.3:8080"));
    let shown = p.a.ip(&["route", "show", "10.0.0.3/32"]);
    assert!(
        shown.contains("drop_tcp_8080.o:[lwt_out]") && !shown.contains("lwtkit-count"),
        "{shown}"
    );
    p.a.lwt_ok(&["detach", "10.0.0.3/32"]);
}

#[test]
fn custom_section_needs_prog_type() {
    require_root!();
    let p = Pair::new("cus");
    serve_tcp(&p.b, &["10.0.0.3:8081"]);
    assert!(tcp_works_soon(&p.a, "10.0.0.3:8081"), "baseline");
    let obj = compile_bpf("custom_section");
    let obj = obj.to_str().expect("utf-8");
    let err = p.a.lwt_err(&[
        "attach",
        "10.0.0.3/32",
        "--dev",
        "va",
        "--hook",
        "out",
        "--obj",
        obj,
    ]);
    assert!(err.contains("--prog-type"), "{err}");
    assert_eq!(
        p.a.ip(&["route", "show", "10.0.0.3/32"]).trim(),
        "",
        "nothing changed"
    );

    p.a.lwt_ok(&[
        "attach",
        "10.0.0.3/32",
        "--dev",
        "va",
        "--hook",
        "xmit",
        "--obj",
        obj,
        "--section",
        "lwtkit_test_drop_all",
        "--prog-type",
        "lwt_xmit",
    ]);
    let shown = p.a.ip(&["route", "show", "10.0.0.3/32"]);
    assert!(
        shown.contains("xmit custom_section.o:[lwtkit_test_drop_all]"),
        "{shown}"
    );
    assert!(
        !tcp_works(&p.a, "10.0.0.3:8081"),
        "the program drops everything"
    );
    p.a.lwt_ok(&["detach", "10.0.0.3/32"]);
    assert!(tcp_works(&p.a, "10.0.0.3:8081"));
}

#[test]
fn routes_attached_by_iproute2_are_listed_and_left_alone() {
    require_root!();
    let ns = Netns::new("ipr");
    ns.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
    ns.ip(&["link", "set", "v0", "up"]);
    let obj = compile_bpf("drop_tcp_8080");
    let obj = obj.to_str().expect("utf-8");
    ns.ip(&[
        "route",
        "add",
        "192.0.2.0/24",
        "dev",
        "v0",
        "encap",
        "bpf",
        "xmit",
        "obj",
        obj,
        "section",
        "lwt_xmit",
        "headroom",
        "20",
    ]);
    ns.ip(&[
        "-6",
        "route",
        "add",
        "2001:db8::/64",
        "dev",
        "v0",
        "encap",
        "seg6",
        "mode",
        "encap",
        "segs",
        "fc00::1,fc00::2",
    ]);

    let list = json(&ns.lwt_ok(&["list", "-j"]));
    let r = bpf_route(&list, "192.0.2.0/24");
    assert_eq!(r["xmit"]["name"], "drop_tcp_8080.o:[lwt_xmit]");
    // A kernel dump carries no headroom; only lwtkit's own routes show it.
    assert!(r.get("headroom").is_none(), "{r}");
    assert_eq!(r["managed"], false);
    let s = bpf_route(&list, "2001:db8::/64");
    assert_eq!(s["encap"], "seg6");
    let text = ns.lwt_ok(&["list"]);
    assert!(
        text.contains("192.0.2.0/24") && text.contains("drop_tcp_8080.o:[lwt_xmit]"),
        "{text}"
    );

    // lwtkit does not silently drop someone else's program.
    let err = ns.lwt_err(&[
        "attach",
        "192.0.2.0/24",
        "--dev",
        "v0",
        "--hook",
        "out",
        "--builtin",
        "count",
    ]);
    assert!(
        err.contains("did not attach") && err.contains("drop_tcp_8080.o:[lwt_xmit]"),
        "{err}"
    );
    let err = ns.lwt_err(&["detach", "192.0.2.0/24"]);
    assert!(err.contains("not managed by lwtkit"), "{err}");
    assert!(
        ns.ip(&["route", "show", "192.0.2.0/24"])
            .contains("lwt_xmit"),
        "route untouched"
    );
}

#[test]
fn list_filters_by_table_and_reports_origin() {
    require_root!();
    let ns = Netns::new("tbl");
    ns.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
    ns.ip(&["link", "set", "v0", "up"]);
    ns.lwt_ok(&[
        "attach",
        "198.51.100.0/24",
        "--dev",
        "v0",
        "--hook",
        "xmit",
        "--builtin",
        "count",
        "--table",
        "100",
    ]);
    ns.lwt_ok(&[
        "attach",
        "198.51.100.0/24",
        "--dev",
        "v0",
        "--hook",
        "out",
        "--builtin",
        "count",
    ]);
    let t100 = json(&ns.lwt_ok(&["list", "--table", "100", "-j"]));
    assert_eq!(t100.as_array().map(Vec::len), Some(1), "{t100}");
    assert_eq!(t100[0]["table"], "100");
    assert_eq!(t100[0]["managed"], true);
    assert!(
        t100[0]["xmit"]["origin"]
            .as_str()
            .is_some_and(|o| o.contains("count")),
        "{t100}"
    );
    let all = json(&ns.lwt_ok(&["-j", "list", "--table", "all"]));
    assert_eq!(all.as_array().map(Vec::len), Some(2), "{all}");
    ns.lwt_ok(&["detach", "198.51.100.0/24", "--table", "100"]);
    ns.lwt_ok(&["detach", "198.51.100.0/24"]);
    assert_eq!(json(&ns.lwt_ok(&["list", "-j"])), serde_json::json!([]));
}

#[test]
fn pinned_program_is_attached_and_named_after_its_pin() {
    require_root!();
    let p = Pair::new("pin");
    serve_tcp(&p.b, &["10.0.0.3:8080", "10.0.0.3:8081"]);
    assert!(tcp_works_soon(&p.a, "10.0.0.3:8080"), "baseline");
    // Load and pin the program as another tool would.
    let obj = compile_bpf("drop_tcp_8080");
    let mut open = libbpf_rs::ObjectBuilder::default()
        .open_file(&obj)
        .expect("open object");
    for mut prog in open.progs_mut() {
        prog.set_autoload(prog.name() == "drop_out");
    }
    let loaded = open.load().expect("load");
    let pin = std::path::PathBuf::from(format!("/sys/fs/bpf/lwtt_pinned_{}", std::process::id()));
    let mut prog = loaded
        .progs_mut()
        .find(|p| p.name() == "drop_out")
        .expect("drop_out");
    prog.pin(&pin).expect("pin");
    struct Unpin(std::path::PathBuf);
    impl Drop for Unpin {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _unpin = Unpin(pin.clone());

    let pin_s = pin.to_str().expect("utf-8");
    let err = p.a.lwt_err(&[
        "attach",
        "10.0.0.3/32",
        "--dev",
        "va",
        "--hook",
        "in",
        "--pinned",
        pin_s,
    ]);
    assert!(err.contains("needs lwt_in"), "{err}");
    p.a.lwt_ok(&[
        "attach",
        "10.0.0.3/32",
        "--dev",
        "va",
        "--hook",
        "out",
        "--pinned",
        pin_s,
    ]);
    let shown = p.a.ip(&["route", "show", "10.0.0.3/32"]);
    assert!(
        shown.contains(&format!("out lwtt_pinned_{}:[pinned]", std::process::id())),
        "{shown}"
    );
    assert!(!tcp_works(&p.a, "10.0.0.3:8080"));
    assert!(tcp_works(&p.a, "10.0.0.3:8081"));
    p.a.lwt_ok(&["detach", "10.0.0.3/32"]);
    assert!(pin.exists(), "the user's own pin is left alone");
    let err = p.a.lwt_err(&[
        "attach",
        "10.0.0.3/32",
        "--dev",
        "va",
        "--hook",
        "out",
        "--pinned",
        "/sys/fs/bpf/lwtt-no-such-pin",
    ]);
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn preexisting_gateway_route_is_restored_exactly() {
    require_root!();
    let p = Pair::new("gw");
    p.a.ip(&[
        "route",
        "add",
        "192.0.2.0/24",
        "via",
        "10.0.0.3",
        "dev",
        "va",
        "proto",
        "static",
        "metric",
        "50",
    ]);
    let before = p.a.ip(&["-d", "route", "show", "192.0.2.0/24"]);
    p.a.lwt_ok(&[
        "attach",
        "192.0.2.0/24",
        "--dev",
        "va",
        "--hook",
        "xmit",
        "--builtin",
        "count",
    ]);
    let during = p.a.ip(&["-d", "route", "show", "192.0.2.0/24"]);
    assert!(
        during.contains("encap bpf xmit lwtkit-count:[lwt_xmit]")
            && during.contains("via 10.0.0.3")
            && during.contains("metric 50"),
        "{during}"
    );
    assert_eq!(
        during.lines().count(),
        1,
        "replaced in place, not added beside: {during}"
    );
    send_udp(&p.a, "192.0.2.7:9", 5, 1);
    let stats = json(&p.a.lwt_ok(&["stats", "-j"]));
    assert_eq!(stats[0]["packets"], 5, "{stats}");
    p.a.lwt_ok(&["detach", "192.0.2.0/24"]);
    assert_eq!(p.a.ip(&["-d", "route", "show", "192.0.2.0/24"]), before);
}

#[test]
fn via_sets_the_gateway_of_a_new_route() {
    require_root!();
    let p = Pair::new("via");
    p.a.lwt_ok(&[
        "attach",
        "198.51.100.0/24",
        "--dev",
        "va",
        "--hook",
        "out",
        "--builtin",
        "count",
        "--via",
        "10.0.0.3",
    ]);
    let shown = p.a.ip(&["route", "show", "198.51.100.0/24"]);
    assert!(shown.contains("via 10.0.0.3 dev va"), "{shown}");
    let err = p.a.lwt_err(&[
        "attach",
        "198.51.100.0/24",
        "--dev",
        "va",
        "--hook",
        "out",
        "--builtin",
        "count",
        "--via",
        "fd00::3",
    ]);
    assert!(err.contains("family"), "{err}");
    p.a.lwt_ok(&["detach", "198.51.100.0/24"]);
    assert_eq!(p.a.ip(&["route", "show", "198.51.100.0/24"]).trim(), "");
}

#[test]
fn two_ipv4_routes_each_run_their_own_program() {
    require_root!();
    // The kernel lets IPv4 routes with equal next hops and equally named
    // encaps share one program; lwtkit's per-program names prevent that.
    let p = Pair::new("two");
    for dst in ["10.0.0.3/32", "10.0.0.4/32"] {
        p.a.lwt_ok(&[
            "attach",
            dst,
            "--dev",
            "va",
            "--hook",
            "out",
            "--builtin",
            "count",
        ]);
    }
    send_udp(&p.a, "10.0.0.3:9", 50, 1);
    send_udp(&p.a, "10.0.0.4:9", 7, 1);
    let stats = json(&p.a.lwt_ok(&["stats", "-j"]));
    let packets = |dst: &str| {
        stats
            .as_array()
            .and_then(|a| a.iter().find(|s| s["dst"] == dst))
            .map(|s| s["packets"].clone())
    };
    assert_eq!(packets("10.0.0.3/32"), Some(50.into()), "{stats}");
    assert_eq!(packets("10.0.0.4/32"), Some(7.into()), "{stats}");
    // Re-attaching the same built-in replaces the running program too.
    p.a.lwt_ok(&[
        "attach",
        "10.0.0.3/32",
        "--dev",
        "va",
        "--hook",
        "out",
        "--builtin",
        "count",
    ]);
    send_udp(&p.a, "10.0.0.3:9", 3, 1);
    let stats = json(&p.a.lwt_ok(&["stats", "-j"]));
    let row = stats
        .as_array()
        .and_then(|a| a.iter().find(|s| s["dst"] == "10.0.0.3/32"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(row["packets"], 3, "the new program counts: {stats}");
    for dst in ["10.0.0.3/32", "10.0.0.4/32"] {
        p.a.lwt_ok(&["detach", dst]);
    }
}

#[test]
fn routes_lwtkit_cannot_replace_faithfully_are_refused() {
    require_root!();
    let p = Pair::new("shp");
    let obj = compile_bpf("drop_tcp_8080");
    let obj = obj.to_str().expect("utf-8");
    p.a.ip(&["link", "add", "vx", "type", "veth", "peer", "name", "vy"]);
    p.a.ip(&["link", "set", "vx", "up"]);
    // A foreign program on the very hook lwtkit would replace.
    p.a.ip(&[
        "route",
        "add",
        "192.0.2.0/24",
        "dev",
        "va",
        "encap",
        "bpf",
        "out",
        "obj",
        obj,
        "section",
        "lwt_out",
    ]);
    let before = p.a.routes();
    let err = p.a.lwt_err(&[
        "attach",
        "192.0.2.0/24",
        "--dev",
        "va",
        "--hook",
        "out",
        "--builtin",
        "count",
    ]);
    assert!(err.contains("did not attach"), "{err}");
    assert_eq!(p.a.routes(), before, "the foreign program stays");
    // Another device, another gateway, another type.
    p.a.ip(&[
        "route",
        "add",
        "198.51.100.0/24",
        "via",
        "10.0.0.3",
        "dev",
        "va",
    ]);
    let err = p.a.lwt_err(&[
        "attach",
        "198.51.100.0/24",
        "--dev",
        "vx",
        "--hook",
        "out",
        "--builtin",
        "count",
    ]);
    assert!(err.contains("another device"), "{err}");
    let err = p.a.lwt_err(&[
        "attach",
        "198.51.100.0/24",
        "--dev",
        "va",
        "--via",
        "10.0.0.9",
        "--hook",
        "out",
        "--builtin",
        "count",
    ]);
    assert!(err.contains("another gateway"), "{err}");
    let err = p.a.lwt_err(&[
        "attach",
        "10.0.0.2/32",
        "--dev",
        "va",
        "--table",
        "local",
        "--hook",
        "in",
        "--builtin",
        "count",
    ]);
    assert!(err.contains("pass --local"), "{err}");
    // IPv6 kernel-made local routes (metric 0) are stood in for, not
    // refused: tests/ingress_v6.rs.
    // Multipath routes carry encaps per next hop.
    p.a.ip(&[
        "route",
        "add",
        "203.0.113.0/24",
        "nexthop",
        "via",
        "10.0.0.3",
        "dev",
        "va",
        "nexthop",
        "via",
        "10.0.0.4",
        "dev",
        "va",
    ]);
    let before_mp = p.a.routes();
    let err = p.a.lwt_err(&[
        "attach",
        "203.0.113.0/24",
        "--dev",
        "va",
        "--hook",
        "out",
        "--builtin",
        "count",
    ]);
    assert!(err.contains("multipath"), "{err}");
    assert_eq!(p.a.routes(), before_mp, "nothing changed");
}

#[test]
fn reset_takes_everything_off_and_leaves_no_state() {
    require_root!();
    let p = Pair::new("rst");
    let before = p.a.routes();
    p.a.lwt_ok(&[
        "attach",
        "10.0.0.3/32",
        "--dev",
        "va",
        "--hook",
        "out",
        "--builtin",
        "count",
    ]);
    p.a.lwt_ok(&["filter", "create", "web"]);
    p.a.lwt_ok(&[
        "filter",
        "attach",
        "web",
        "10.0.0.2/32",
        "--local",
        "--dev",
        "va",
        "--hook",
        "in",
    ]);
    p.a.lwt_ok(&[
        "encap",
        "add",
        "192.0.2.0/24",
        "--dev",
        "va",
        "--type",
        "gre",
        "--remote",
        "10.0.0.3",
    ]);
    let done = json(&p.a.lwt_ok(&["reset", "-j"]));
    assert_eq!(done["tunnels"], 1, "{done}");
    assert_eq!(done["routes"], 2, "{done}");
    assert_eq!(done["policies"], 1, "{done}");
    assert_eq!(p.a.routes(), before, "every route is back as it was");
    assert_eq!(json(&p.a.lwt_ok(&["list", "-j"])), serde_json::json!([]));
    let again = json(&p.a.lwt_ok(&["reset", "-j"]));
    assert_eq!(again["routes"], 0, "nothing left: {again}");
}
