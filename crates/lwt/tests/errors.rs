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

/// Runs `lwt -n NS ARGS`, expects failure with `needle` in stderr, and no
/// route change.
fn fails_cleanly(ns: &Netns, before: &str, args: &[&str], needle: &str) {
    let err = ns.lwt_err(args);
    assert!(
        err.contains(needle),
        "lwt {}: expected `{needle}` in: {err}",
        args.join(" ")
    );
    assert!(err.starts_with("lwt: error:"), "{err}");
    assert_eq!(ns.routes(), before, "lwt {} changed routes", args.join(" "));
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
    let junk = std::env::temp_dir().join(format!("lwtkit-junk-{}.o", std::process::id()));
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
