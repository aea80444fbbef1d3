//! The seed's ingress scenario over IPv6: programs on the `in` hook of the
//! kernel's local route of an IPv6 address, which lwtkit stands in for
//! (the kernel's metric-0 route cannot be replaced in place).
mod common;

use common::{json, serve_tcp, tcp_works, tcp_works_soon, Pair};

fn local_route(p: &Pair) -> String {
    p.a.ip(&["-6", "route", "show", "table", "local", "fd00::2"])
}

#[test]
fn ipv6_ingress_filter_on_the_local_route_drops_and_detach_keeps_the_address_reachable() {
    require_root!();
    let p = Pair::new("in6");
    serve_tcp(&p.a, &["[fd00::2]:8080", "[fd00::2]:8081"]);
    assert!(tcp_works_soon(&p.b, "[fd00::2]:8080"), "baseline");
    assert!(local_route(&p).contains("metric 0"), "{}", local_route(&p));

    p.a.lwt_ok(&["filter", "create", "web6"]);
    p.a.lwt_ok(&[
        "filter",
        "rule",
        "add",
        "web6",
        "dst",
        "fd00::2/128",
        "proto",
        "tcp",
        "dport",
        "8080",
        "drop",
    ]);
    p.a.lwt_ok(&[
        "filter",
        "attach",
        "web6",
        "fd00::2/128",
        "--local",
        "--dev",
        "va",
        "--hook",
        "in",
    ]);
    let during = local_route(&p);
    assert!(
        during.contains("encap bpf in lwtkit-filter") && during.contains("metric 1"),
        "lwtkit's route stands in: {during}"
    );
    assert!(
        !during.contains("metric 0"),
        "the kernel's route gave way: {during}"
    );
    assert!(
        !tcp_works(&p.b, "[fd00::2]:8080"),
        "8080 dropped on ingress"
    );
    assert!(tcp_works(&p.b, "[fd00::2]:8081"), "8081 still works");
    let shown = json(&p.a.lwt_ok(&["filter", "show", "web6", "-j"]));
    assert!(
        shown["rules"][0]["packets"].as_u64().unwrap_or(0) >= 1,
        "{shown}"
    );

    // Detach: the address stays reachable through lwtkit's plain stand-in.
    let out = json(&p.a.lwt_ok(&["filter", "detach", "web6", "fd00::2/128", "--local", "-j"]));
    assert_eq!(out[0]["route_now"], "restored", "{out}");
    let after = local_route(&p);
    assert!(
        after.contains("local fd00::2") && !after.contains("encap"),
        "{after}"
    );
    assert!(tcp_works(&p.b, "[fd00::2]:8080"));
    assert!(p.a.lwt(&["check"]).status.success());
}

#[test]
fn a_stand_in_local_route_does_not_outlive_its_address() {
    require_root!();
    let p = Pair::new("gone6");
    p.a.ip(&["-6", "addr", "add", "fd00::20/64", "dev", "va", "nodad"]);
    p.a.count_on("fd00::20/128", "va", "in", &["--local"]);
    let with =
        p.a.ip(&["-6", "route", "show", "table", "local", "fd00::20"]);
    assert!(with.contains("lwtkit-count"), "{with}");
    // The kernel removes only the local route it made; lwtkit's stays...
    p.a.ip(&["-6", "addr", "del", "fd00::20/64", "dev", "va"]);
    let stale =
        p.a.ip(&["-6", "route", "show", "table", "local", "fd00::20"]);
    assert!(stale.contains("fd00::20"), "kernel left lwtkit's: {stale}");
    // ...until the next lwt command, which removes it and says so.
    let out = p.a.lwt(&["check"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("fd00::20") && err.contains("is gone"), "{err}");
    let now =
        p.a.ip(&["-6", "route", "show", "table", "local", "fd00::20"]);
    assert_eq!(now.trim(), "", "stand-in removed");
    assert!(p
        .a
        .lwt_err(&["detach", "fd00::20/128", "--local"])
        .contains("not managed"));

    // Also after a detach left the plain stand-in behind.
    p.a.ip(&["-6", "addr", "add", "fd00::21/64", "dev", "va", "nodad"]);
    p.a.count_on("fd00::21/128", "va", "in", &["--local"]);
    p.a.lwt_ok(&["detach", "fd00::21/128", "--local"]);
    p.a.ip(&["-6", "addr", "del", "fd00::21/64", "dev", "va"]);
    p.a.lwt_ok(&["list"]);
    p.a.lwt_ok(&["check"]);
    let now =
        p.a.ip(&["-6", "route", "show", "table", "local", "fd00::21"]);
    assert_eq!(now.trim(), "", "plain stand-in removed with its address");
}

#[test]
fn kill_9_between_the_stand_in_and_the_kernels_route_leaves_one_local_route() {
    require_root!();
    let p = Pair::new("k96");
    let before = local_route(&p);
    for step in ["attach:intent", "attach:stand-in", "attach:route"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_lwt"))
            .args([
                "-n",
                &p.a.name,
                "attach",
                "fd00::2/128",
                "--local",
                "--dev",
                "va",
            ])
            .args(["--hook", "in", "--builtin", "count"])
            .env("LWT_FAILPOINT", step)
            .output()
            .expect("lwt runs");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&out.status),
            Some(9),
            "{step}"
        );
        assert!(p.a.lwt(&["check"]).status.success(), "{step}");
        let now = local_route(&p);
        // Exactly one local route for the address: the kernel's, or lwtkit's.
        assert_eq!(now.lines().count(), 1, "{step}: {now}");
        if now.contains("lwtkit-count") {
            p.a.lwt_ok(&["detach", "fd00::2/128", "--local"]);
        } else {
            assert_eq!(now, before, "{step}");
        }
    }
}

#[test]
fn a_stand_in_is_removed_with_its_address_even_behind_a_kernel_route_of_metric_0() {
    require_root!();
    let p = Pair::new("hide6");
    p.a.ip(&["-6", "addr", "add", "fd00::20/64", "dev", "va", "nodad"]);
    p.a.count_on("fd00::20/128", "va", "in", &["--local"]);
    // The same address on a second device: the kernel adds its own local
    // route (metric 0, dev vx) beside lwtkit's stand-in (metric 1, dev va),
    // and a lookup of the prefix finds the kernel's first.
    p.a.ip(&["link", "add", "vx", "type", "veth", "peer", "name", "vy"]);
    p.a.ip(&["link", "set", "vx", "up"]);
    p.a.ip(&["link", "set", "vy", "up"]);
    p.a.ip(&["-6", "addr", "add", "fd00::20/64", "dev", "vx", "nodad"]);
    let both =
        p.a.ip(&["-6", "route", "show", "table", "local", "fd00::20"]);
    assert!(
        both.contains("dev vx proto kernel metric 0") && both.contains("lwtkit-count"),
        "{both}"
    );

    p.a.ip(&["-6", "addr", "del", "fd00::20/64", "dev", "va"]);
    let out = p.a.lwt(&["check"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("removed its local route"), "{err}");
    let now =
        p.a.ip(&["-6", "route", "show", "table", "local", "fd00::20"]);
    assert_eq!(now.lines().count(), 1, "lwtkit's stand-in removed: {now}");
    assert!(
        now.contains("dev vx proto kernel metric 0"),
        "the kernel's route stays: {now}"
    );
    assert!(p
        .a
        .lwt_err(&["detach", "fd00::20/128", "--local"])
        .contains("not managed"));
}

#[test]
fn undoing_an_interrupted_stand_in_leaves_someone_elses_route_of_its_metric() {
    require_root!();
    let p = Pair::new("und6");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lwt"))
        .args(["-n", &p.a.name, "attach", "fd00::2/128", "--local"])
        .args(["--dev", "va", "--hook", "in", "--builtin", "count"])
        .env("LWT_FAILPOINT", "attach:intent")
        .output()
        .expect("lwt runs");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(9)
    );
    // Before the next command finishes the intent, someone adds a plain
    // local route of the stand-in's metric and device.
    p.a.ip(&[
        "-6", "route", "add", "local", "fd00::2", "dev", "va", "table", "local", "metric", "1",
    ]);
    assert!(p.a.lwt(&["check"]).status.success());
    let now = local_route(&p);
    assert!(
        now.contains("dev va proto kernel metric 0") && now.contains("dev va metric 1"),
        "both routes stay: {now}"
    );
    assert!(!now.contains("encap"), "{now}");
}
