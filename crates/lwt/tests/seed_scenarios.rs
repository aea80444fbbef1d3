//! The seed's two scenarios end to end in namespaces: a third-party C
//! program (compiled by clang here) and the built-in `count`.
mod common;

use common::{compile_bpf, json, send_udp, serve_tcp, tcp_works, tcp_works_soon, Pair};

#[test]
fn egress_program_drops_tcp_8080_and_detach_restores() {
    require_root!();
    let p = Pair::new("egr");
    serve_tcp(&p.b, &["10.0.0.3:8080", "10.0.0.3:8081"]);
    assert!(
        tcp_works_soon(&p.a, "10.0.0.3:8080"),
        "baseline: 8080 reachable"
    );
    let obj = compile_bpf("drop_tcp_8080");
    let obj = obj.to_str().expect("utf-8 path");

    let out = p.a.lwt_ok(&[
        "attach",
        "10.0.0.3/32",
        "--dev",
        "va",
        "--hook",
        "out",
        "--obj",
        obj,
    ]);
    assert!(out.contains("drop_tcp_8080.o:[lwt_out]"), "{out}");
    let routes = p.a.ip(&["route", "show", "10.0.0.3/32"]);
    assert!(
        routes.contains("encap bpf out drop_tcp_8080.o:[lwt_out]"),
        "ip route shows the program: {routes}"
    );

    assert!(
        !tcp_works(&p.a, "10.0.0.3:8080"),
        "8080 must be dropped on egress"
    );
    assert!(tcp_works(&p.a, "10.0.0.3:8081"), "8081 must still work");

    let out = p.a.lwt_ok(&["detach", "10.0.0.3/32"]);
    assert!(
        out.contains("deleted"),
        "route lwtkit created is deleted: {out}"
    );
    assert_eq!(p.a.ip(&["route", "show", "10.0.0.3/32"]).trim(), "");
    assert!(
        tcp_works(&p.a, "10.0.0.3:8080"),
        "8080 works again after detach"
    );
}

#[test]
fn ingress_program_on_local_route_drops_and_detach_restores_it_exactly() {
    require_root!();
    let p = Pair::new("ing");
    serve_tcp(&p.a, &["10.0.0.2:8080", "10.0.0.2:8081"]);
    assert!(tcp_works_soon(&p.b, "10.0.0.2:8080"), "baseline");
    let before =
        p.a.ip(&["-d", "route", "show", "table", "local", "10.0.0.2"]);
    assert!(before.contains("local 10.0.0.2"), "{before}");
    let obj = compile_bpf("drop_tcp_8080");
    let obj = obj.to_str().expect("utf-8 path");

    p.a.lwt_ok(&[
        "attach",
        "10.0.0.2/32",
        "--local",
        "--dev",
        "va",
        "--hook",
        "in",
        "--headroom",
        "14",
        "--obj",
        obj,
    ]);
    let during = p.a.ip(&["route", "show", "table", "local", "10.0.0.2"]);
    assert!(
        during.contains("encap bpf in drop_tcp_8080.o:[lwt_in]"),
        "{during}"
    );
    let list = json(&p.a.lwt_ok(&["list", "--table", "local", "--json"]));
    let entry = list
        .as_array()
        .and_then(|a| a.iter().find(|r| r["dst"] == "10.0.0.2/32"))
        .expect("listed");
    assert_eq!(entry["type"], "local");
    assert_eq!(entry["headroom"], 14, "{entry}");
    assert_eq!(entry["in"]["headroom"], 14, "{entry}");

    assert!(
        !tcp_works(&p.b, "10.0.0.2:8080"),
        "8080 must be dropped on ingress"
    );
    assert!(tcp_works(&p.b, "10.0.0.2:8081"), "8081 must still work");

    let out = p.a.lwt_ok(&["detach", "10.0.0.2/32", "--local"]);
    assert!(out.contains("restored"), "{out}");
    let after =
        p.a.ip(&["-d", "route", "show", "table", "local", "10.0.0.2"]);
    assert_eq!(after, before, "the local route is back exactly as it was");
    assert!(tcp_works(&p.b, "10.0.0.2:8080"));
}

#[test]
fn builtin_count_on_egress_counts_exactly_what_was_sent() {
    require_root!();
    let p = Pair::new("cnt");
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
    send_udp(&p.a, "10.0.0.3:9999", 50, 100);

    let stats = json(&p.a.lwt_ok(&["--json", "stats"]));
    let row = &stats[0];
    assert_eq!(row["dst"], "10.0.0.3/32");
    assert_eq!(row["hook"], "out");
    assert_eq!(row["packets"], 50, "{stats}");
    assert_eq!(row["bytes"], 50 * (20 + 8 + 100), "{stats}");
    let text = p.a.lwt_ok(&["stats"]);
    assert!(
        text.contains("10.0.0.3/32") && text.contains("50"),
        "{text}"
    );
    p.a.lwt_ok(&["detach", "10.0.0.3/32"]);
    assert_eq!(json(&p.a.lwt_ok(&["stats", "-j"])), serde_json::json!([]));
}

#[test]
fn builtin_count_on_ingress_local_route_counts_exactly() {
    require_root!();
    let p = Pair::new("cin");
    p.a.lwt_ok(&[
        "attach",
        "10.0.0.2",
        "--local",
        "--dev",
        "va",
        "--hook",
        "in",
        "--headroom",
        "14",
        "--builtin",
        "count",
    ]);
    send_udp(&p.b, "10.0.0.2:9999", 30, 10);
    let stats = json(&p.a.lwt_ok(&["stats", "--json"]));
    assert_eq!(stats[0]["hook"], "in");
    assert_eq!(stats[0]["table"], "local");
    assert_eq!(stats[0]["packets"], 30, "{stats}");
    assert_eq!(stats[0]["bytes"], 30 * (20 + 8 + 10), "{stats}");
    p.a.lwt_ok(&["detach", "10.0.0.2", "--local"]);
}

#[test]
fn ipv6_egress_drop_works() {
    require_root!();
    let p = Pair::new("v6");
    serve_tcp(&p.b, &["[fd00::3]:8080", "[fd00::3]:8081"]);
    assert!(tcp_works_soon(&p.a, "[fd00::3]:8080"), "baseline");
    let obj = compile_bpf("drop_tcp_8080");
    p.a.lwt_ok(&[
        "attach",
        "fd00::3/128",
        "--dev",
        "va",
        "--hook",
        "out",
        "--obj",
        obj.to_str().expect("utf-8"),
    ]);
    assert!(!tcp_works(&p.a, "[fd00::3]:8080"));
    assert!(tcp_works(&p.a, "[fd00::3]:8081"));
    p.a.lwt_ok(&["detach", "fd00::3/128"]);
    assert!(tcp_works(&p.a, "[fd00::3]:8080"));
}
