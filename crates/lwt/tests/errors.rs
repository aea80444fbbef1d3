//! Bad input and missing system features: a clear message naming the
//! problem, a non-zero exit, and no change to the routes.
mod common;

use std::process::Command;

use common::{compile_bpf, lwt, Netns};

/// A namespace with one veth (v0, up) and a snapshot of its routes.
fn setup(tag: &str) -> (Netns, String) {
    let ns = Netns::new(tag);
    ns.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
    ns.ip(&["link", "set", "v0", "up"]);
    ns.ip(&["addr", "add", "10.9.0.1/24", "dev", "v0"]);
    let routes = ns.routes();
    (ns, routes)
}

/// What lwtkit keeps in `ns`, as its list verbs show it.
fn lwt_state(ns: &Netns) -> String {
    [
        &["list", "-j"][..],
        &["encap", "list", "-j"],
        &["seg6local", "list", "-j"],
        &["filter", "list", "-j"],
    ]
    .iter()
    .map(|args| ns.lwt_ok(args))
    .collect()
}

/// Runs `lwt -n NS ARGS`, expects failure with `needle` in stderr (lwt's
/// own error, or clap's for a value out of a flag's range), and no change
/// to the routes or to lwtkit's state.
fn fails_cleanly(ns: &Netns, before: &str, args: &[&str], needle: &str) {
    let state = lwt_state(ns);
    let err = ns.lwt_err(args);
    assert!(
        err.contains(needle),
        "lwt {}: expected `{needle}` in: {err}",
        args.join(" ")
    );
    assert!(
        err.starts_with("lwt: error:") || err.starts_with("error: invalid value"),
        "{err}"
    );
    assert_eq!(ns.routes(), before, "lwt {} changed routes", args.join(" "));
    assert_eq!(
        lwt_state(ns),
        state,
        "lwt {} changed lwtkit's state",
        args.join(" ")
    );
}

/// `lwt encap add PREFIX --dev v0` followed by `rest` (split on spaces).
fn encap_add<'a>(prefix: &'a str, rest: &'a str) -> Vec<&'a str> {
    let mut args = vec!["encap", "add", prefix, "--dev", "v0"];
    args.extend(rest.split_whitespace());
    args
}

#[test]
fn tunnel_flags_out_of_range_or_of_another_type_are_refused() {
    require_root!();
    let (ns, before) = setup("tun");
    let p = "192.168.5.0/24";
    let cases = [
        (
            "--type fou --remote 10.9.0.2 --port 0",
            "0 is not in 1..=65535",
        ),
        (
            "--type vxlan --remote 10.9.0.2 --vni 16777216 --inner-dst-mac 02:00:00:00:00:01",
            "16777216 is not in 0..=16777215",
        ),
        (
            "--type gre --remote 10.9.0.2 --ttl 0",
            "0 is not in 1..=255",
        ),
        (
            "--type gre --remote 10.9.0.2 --ttl 256",
            "256 is not in 1..=255",
        ),
        (
            "--type gre --remote 10.9.0.2 --tos 256",
            "bad --tos `256`: inherit or 0-255",
        ),
        (
            "--type gre --remote 10.9.0.2 --table 0",
            "--table: table 0 is not a table",
        ),
        (
            "--type gue --remote 10.9.0.2 --port 6080 --vni 5",
            "--vni applies only to vxlan",
        ),
        (
            "--type ipip --remote 10.9.0.2 --port 5555",
            "--port applies only to the UDP tunnels vxlan, fou and gue",
        ),
        (
            "--type gre --remote 10.9.0.2 --inner-dst-mac 02:00:00:00:00:01",
            "--inner-dst-mac applies only to vxlan",
        ),
        (
            "--type ipip --remote 10.9.0.2 --segments fc00::1",
            "--segments applies only to srv6",
        ),
        (
            "--type gre --remote 0.0.0.0",
            "--remote 0.0.0.0 is the unspecified address, not a host address",
        ),
        (
            "--type gre --remote 224.0.0.5",
            "--remote 224.0.0.5 is a multicast address",
        ),
        (
            "--type gre --remote 255.255.255.255",
            "--remote 255.255.255.255 is the broadcast address",
        ),
        (
            "--type gre --remote 10.9.0.2 --local 0.0.0.0",
            "--local 0.0.0.0 is the unspecified address",
        ),
        (
            "--type srv6 --segments ::",
            "--segments :: is the unspecified address",
        ),
        (
            "--type srv6 --segments fc00::1,ff02::1",
            "--segments ff02::1 is a multicast address",
        ),
        (
            "--type srv6 --segments fc00::1 --remote 10.9.0.2",
            "srv6 needs an IPv6 outer header",
        ),
        (
            "--type ipip --remote fd00::2",
            "ipip needs an IPv4 outer header",
        ),
    ];
    for (rest, needle) in cases {
        fails_cleanly(&ns, &before, &encap_add(p, rest), needle);
    }
}

#[test]
fn other_numbers_out_of_range_are_refused() {
    require_root!();
    let (ns, before) = setup("num");
    let cases: [(&[&str], &str); 7] = [
        (
            &["filter", "create", "p", "--capacity", "0"],
            "0 is not in 1..=4194304",
        ),
        (
            &["filter", "create", "p", "--capacity", "4194305"],
            "4194305 is not in 1..=4194304",
        ),
        (
            &["stats", "--watch", "--count", "0"],
            "'--count <N>': `0` is not a count of 1 or more",
        ),
        (
            &["stats", "--watch", "--interval", "0"],
            "'--interval <SECS>': `0` is not a number of seconds greater than 0",
        ),
        (
            &["events", "--count", "0"],
            "'--count <N>': `0` is not a count of 1 or more",
        ),
        (
            &["events", "--timeout", "0"],
            "'--timeout <SECS>': `0` is not a number of seconds greater than 0",
        ),
        (
            &[
                "attach",
                "10.0.0.3/32",
                "--dev",
                "v0",
                "--hook",
                "out",
                "--builtin",
                "count",
                "--table",
                "0",
            ],
            "--table: table 0 is not a table",
        ),
    ];
    for (args, needle) in cases {
        fails_cleanly(&ns, &before, args, needle);
    }
}

#[test]
fn gateways_that_are_not_a_host_are_refused() {
    require_root!();
    let (ns, before) = setup("gw");
    for (via, what) in [
        ("0.0.0.0", "the unspecified address"),
        ("224.0.0.1", "a multicast address"),
        ("255.255.255.255", "the broadcast address"),
    ] {
        fails_cleanly(
            &ns,
            &before,
            &[
                "attach",
                "10.0.0.3/32",
                "--dev",
                "v0",
                "--hook",
                "out",
                "--builtin",
                "count",
                "--via",
                via,
            ],
            &format!("--via {via} is {what}"),
        );
    }
}

#[test]
fn end_bpf_refuses_programs_of_other_types_and_misplaced_flags() {
    require_root!();
    let (ns, before) = setup("s6e");
    let xdp = compile_bpf("not_lwt");
    let xdp = xdp.to_str().expect("utf-8");
    let custom = compile_bpf("custom_section");
    let custom = custom.to_str().expect("utf-8");
    fn add<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["seg6local", "add", "fc00::b", "--dev", "v0"];
        args.extend_from_slice(extra);
        args
    }
    let with_obj = |obj| add(&["--obj", obj]);
    fails_cleanly(
        &ns,
        &before,
        &with_obj(xdp),
        "program `pass_xdp` is of type xdp, but End.BPF needs lwt_seg6local",
    );
    fails_cleanly(&ns, &before, &with_obj(xdp), "--prog-type lwt_seg6local");
    fails_cleanly(
        &ns,
        &before,
        &with_obj(custom),
        "section `lwtkit_test_drop_all`, which libbpf does not know",
    );
    fails_cleanly(
        &ns,
        &before,
        &add(&["--builtin", "end", "--dt6-table", "100"]),
        "--dt6-table applies only to --builtin end-dt6",
    );
    fails_cleanly(
        &ns,
        &before,
        &add(&["--builtin", "end-dt6", "--dt6-table", "0"]),
        "--dt6-table: table 0 is not a table",
    );
}

#[test]
fn local_routes_outside_table_local_need_force() {
    require_root!();
    let (ns, before) = setup("loc");
    let attach = |extra: &[&'static str]| {
        let mut args = vec![
            "attach",
            "10.9.0.7/32",
            "--local",
            "--table",
            "main",
            "--dev",
            "v0",
            "--hook",
            "in",
            "--builtin",
            "count",
        ];
        args.extend_from_slice(extra);
        args
    };
    fails_cleanly(
        &ns,
        &before,
        &attach(&[]),
        "the host would then accept traffic for 10.9.0.7/32",
    );
    fails_cleanly(&ns, &before, &attach(&[]), "--force");
    ns.lwt_ok(&["filter", "create", "pol"]);
    fails_cleanly(
        &ns,
        &before,
        &[
            "filter",
            "attach",
            "pol",
            "10.9.0.7/32",
            "--local",
            "--table",
            "main",
            "--dev",
            "v0",
            "--hook",
            "in",
        ],
        "--force",
    );

    // With --force it is done, and undone by detach.
    ns.lwt_ok(&attach(&["--force"]));
    let main = ns.ip(&["route", "show", "table", "main"]);
    assert!(main.contains("local 10.9.0.7"), "{main}");
    ns.lwt_ok(&["detach", "10.9.0.7/32", "--local", "--table", "main"]);
    assert_eq!(ns.routes(), before);
}

#[test]
fn bad_arguments_are_named_and_change_nothing() {
    require_root!();
    let (ns, before) = setup("bad");
    let obj = compile_bpf("drop_tcp_8080");
    let obj = obj.to_str().expect("utf-8");
    let attach = |prefix: &'static str| {
        vec![
            "attach",
            prefix,
            "--dev",
            "v0",
            "--hook",
            "out",
            "--builtin",
            "count",
        ]
    };
    fails_cleanly(
        &ns,
        &before,
        &attach("10.0.0.300/32"),
        "invalid prefix `10.0.0.300/32`",
    );
    fails_cleanly(&ns, &before, &attach("10.0.0.0/33"), "invalid prefix");
    fails_cleanly(&ns, &before, &attach("10.0.0.3/24"), "host bits set");
    fails_cleanly(
        &ns,
        &before,
        &[
            "attach",
            "10.0.0.3/32",
            "--dev",
            "nosuch0",
            "--hook",
            "out",
            "--builtin",
            "count",
        ],
        "unknown device `nosuch0`",
    );
    fails_cleanly(
        &ns,
        &before,
        &[
            "attach",
            "10.0.0.3/32",
            "--dev",
            "v0",
            "--hook",
            "out",
            "--builtin",
            "nosuch",
        ],
        "unknown built-in program `nosuch`",
    );
    fails_cleanly(
        &ns,
        &before,
        &[
            "attach",
            "10.0.0.3/32",
            "--dev",
            "v0",
            "--hook",
            "out",
            "--obj",
            "/nonexistent/x.o",
        ],
        "no such file",
    );
    fails_cleanly(
        &ns,
        &before,
        &[
            "attach",
            "10.0.0.3/32",
            "--dev",
            "v0",
            "--hook",
            "out",
            "--obj",
            obj,
            "--section",
            "nope",
        ],
        "section `nope` not found",
    );
    fails_cleanly(
        &ns,
        &before,
        &[
            "attach",
            "10.0.0.3/32",
            "--dev",
            "v0",
            "--hook",
            "out",
            "--obj",
            obj,
            "--program",
            "nope",
        ],
        "program `nope` not found",
    );
    fails_cleanly(
        &ns,
        &before,
        &[
            "attach",
            "10.0.0.3/32",
            "--dev",
            "v0",
            "--hook",
            "in",
            "--obj",
            obj,
            "--section",
            "lwt_out",
        ],
        "needs lwt_in",
    );
    fails_cleanly(
        &ns,
        &before,
        &[
            "attach",
            "10.0.0.3/32",
            "--dev",
            "v0",
            "--hook",
            "out",
            "--builtin",
            "count",
            "--headroom",
            "257",
        ],
        "headroom 257",
    );
    fails_cleanly(
        &ns,
        &before,
        &[
            "attach",
            "10.0.0.3/32",
            "--dev",
            "v0",
            "--hook",
            "out",
            "--builtin",
            "count",
            "--table",
            "nosuchtable",
        ],
        "unknown routing table",
    );
    fails_cleanly(
        &ns,
        &before,
        &["detach", "10.0.0.3/32"],
        "not managed by lwtkit",
    );
    fails_cleanly(
        &ns,
        &before,
        &["detach", "10.9.0.0/24"],
        "not managed by lwtkit",
    );
    // Not a BPF object at all.
    let junk = common::scratch("junk.o");
    std::fs::write(&junk, b"not an elf").expect("write");
    fails_cleanly(
        &ns,
        &before,
        &[
            "attach",
            "10.0.0.3/32",
            "--dev",
            "v0",
            "--hook",
            "out",
            "--obj",
            junk.to_str().expect("utf-8"),
        ],
        "not a loadable BPF object",
    );
}

#[test]
fn decap_flags_out_of_range_are_named_and_change_nothing() {
    require_root!();
    let (ns, before) = setup("dcf");
    let cases: &[(&[&str], &str)] = &[
        (
            &["--type", "fou", "--fou-port", "0"],
            "--fou-port 0 is out of range",
        ),
        (
            &["--type", "fou", "--fou-port", "65536"],
            "--fou-port 65536 is out of range",
        ),
        (
            &["--type", "gue", "--gue-port", "0"],
            "--gue-port 0 is out of range",
        ),
        (
            &["--type", "gue", "--gue-port", "99999"],
            "--gue-port 99999 is out of range",
        ),
        (
            &["--type", "gre", "--key", "4294967296"],
            "--key 4294967296 does not fit in 32 bits",
        ),
        (&["--type", "ipip", "--key", "1"], "--key is a GRE key"),
        (
            &["--type", "ipip", "--local", "0.0.0.0"],
            "--local `0.0.0.0`: the unspecified address",
        ),
        (
            &["--type", "ipip", "--local", "224.0.0.5"],
            "--local `224.0.0.5`: a multicast address",
        ),
        (
            &["--type", "ipip", "--local", "10.9.0.0/24"],
            "--local `10.9.0.0/24`: not an address",
        ),
        (
            &["--type", "ipip", "--local", "10.9.0.99"],
            "--local 10.9.0.99 is not an address of this host",
        ),
        (
            &["--type", "ipip", "--remote", "::"],
            "--remote `::`: the unspecified address",
        ),
        (
            &["--type", "ipip", "--remote", "ff02::1"],
            "--remote `ff02::1`: a multicast address",
        ),
        (
            &["--type", "ipip", "--remote", "255.255.255.255"],
            "--remote `255.255.255.255`: the broadcast address",
        ),
        (
            &[
                "--type",
                "fou,gue",
                "--fou-port",
                "5555",
                "--gue-port",
                "5555",
            ],
            "both 5555",
        ),
        (&["--type", "vxlan"], "unknown tunnel type `vxlan`"),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["decap", "add", "--dev", "v0"];
        args.extend_from_slice(extra);
        fails_cleanly(&ns, &before, &args, needle);
        assert_eq!(
            ns.lwt_ok(&["decap", "list", "-j"]).trim(),
            "[]",
            "{args:?} left a decapsulator"
        );
    }
}

#[test]
fn wrong_program_type_is_refused() {
    require_root!();
    let (ns, before) = setup("typ");
    let obj = compile_bpf("not_lwt");
    fails_cleanly(
        &ns,
        &before,
        &[
            "attach",
            "10.0.0.3/32",
            "--dev",
            "v0",
            "--hook",
            "xmit",
            "--obj",
            obj.to_str().expect("utf-8"),
        ],
        "is of type xdp",
    );
}

#[test]
fn verifier_rejection_shows_the_log_tail() {
    require_root!();
    let (ns, before) = setup("ver");
    let obj = compile_bpf("rejected");
    let err = ns.lwt_err(&[
        "attach",
        "10.0.0.3/32",
        "--dev",
        "v0",
        "--hook",
        "out",
        "--obj",
        obj.to_str().expect("utf-8"),
    ]);
    assert!(
        err.contains("verifier rejected program `rejected.o:[lwt_out]`"),
        "{err}"
    );
    assert!(err.contains("verifier log"), "{err}");
    assert!(
        err.contains("invalid access to packet"),
        "the useful line of the log is shown: {err}"
    );
    assert_eq!(ns.routes(), before);
}

#[test]
fn program_names_over_255_bytes_are_refused() {
    require_root!();
    let (ns, before) = setup("nam");
    let obj = compile_bpf("drop_tcp_8080");
    let long = obj.with_file_name(format!("{}.o", "n".repeat(250)));
    std::fs::copy(&obj, &long).expect("copy");
    fails_cleanly(
        &ns,
        &before,
        &[
            "attach",
            "10.0.0.3/32",
            "--dev",
            "v0",
            "--hook",
            "out",
            "--obj",
            long.to_str().expect("utf-8"),
        ],
        "at most 255",
    );
}

#[test]
fn missing_namespace_is_named() {
    require_root!();
    let out = lwt(&["-n", "lwtt-no-such-ns", "list"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("network namespace `lwtt-no-such-ns` not found"),
        "{err}"
    );
}

#[test]
fn unprivileged_attach_is_refused_before_anything_happens() {
    require_root!();
    // setpriv drops to nobody with no capabilities; no -n, since entering a
    // namespace needs privileges too. The check comes before any change.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(env!("CARGO_BIN_EXE_lwt"))
        .args([
            "attach",
            "203.0.113.1/32",
            "--dev",
            "lo",
            "--hook",
            "out",
            "--builtin",
            "count",
        ])
        .output()
        .expect("setpriv (util-linux) runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs CAP_NET_ADMIN and CAP_BPF"), "{err}");
}

#[test]
fn unprivileged_reading_verbs_say_what_they_cannot_see() {
    require_root!();
    for verb in [
        &["list"][..],
        &["stats"],
        &["filter", "list"],
        &["encap", "list"],
        &["decap", "list"],
        &["seg6local", "list"],
        &["events", "--count", "1", "--timeout", "1"],
        &["check"],
    ] {
        let out = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
            ])
            .arg(env!("CARGO_BIN_EXE_lwt"))
            .args(verb)
            .output()
            .expect("setpriv (util-linux) runs");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(said.contains("root"), "lwt {}: {said}", verb.join(" "));
        for nothing in [
            "no filter policy exists",
            "no lwtkit built-ins attached",
            "no tunnel",
        ] {
            assert!(!said.contains(nothing), "lwt {}: {said}", verb.join(" "));
        }
    }
}

#[test]
fn bpffs_that_cannot_be_mounted_is_reported() {
    require_root!();
    let (ns, before) = setup("bfs");
    // In a private mount namespace, hide /sys/fs under a read-only tmpfs:
    // no bpffs and nowhere to mount one.
    let script = format!(
        "mount -t tmpfs -o ro none /sys/fs && exec {} -n {} attach 10.0.0.3/32 --dev v0 --hook out --builtin count",
        env!("CARGO_BIN_EXE_lwt"),
        ns.name
    );
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .output()
        .expect("unshare runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bpffs is not mounted"), "{err}");
    assert_eq!(ns.routes(), before);
}
