//! `lwt doctor`: passes on this host, explains what bites (lwtkit state
//! gone wrong, `ip netns exec`, a sysctl an `in` program needs, missing
//! privileges), and leaves nothing behind. Each test builds its own
//! namespaces.
mod common;

use std::process::Command;

use common::{json, Netns, Pair};

/// The doctor's checks as (name, status, detail).
fn checks(stdout: &[u8]) -> Vec<(String, String, String)> {
    let v = json(&String::from_utf8_lossy(stdout));
    v["checks"]
        .as_array()
        .expect("checks array")
        .iter()
        .map(|c| {
            let s = |k: &str| {
                c[k].as_str()
                    .unwrap_or_else(|| panic!("{k} in {c}"))
                    .to_string()
            };
            (s("name"), s("status"), s("detail"))
        })
        .collect()
}

fn find<'a>(cs: &'a [(String, String, String)], name: &str) -> &'a (String, String, String) {
    cs.iter()
        .find(|c| c.0 == name)
        .unwrap_or_else(|| panic!("no check {name} in {cs:?}"))
}

#[test]
fn doctor_passes_here_and_leaves_the_namespace_as_it_was() {
    require_root!();
    let ns = Netns::new("doc");
    let before = ns.routes();
    let out = ns.lwt(&["doctor", "-j"]);
    assert!(
        out.status.success(),
        "doctor failed here: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let cs = checks(&out.stdout);
    for name in [
        "kernel",
        "privileges",
        "ip-netns-exec",
        "bpffs",
        "btf",
        "lwt-bpf",
        "seg6",
        "seg6-bpf",
        "tcx",
        "netfilter-bpf",
        "ringbuf",
        "bpf_loop",
        "memlock",
        "sysctl accept_local",
        "sysctl seg6_enabled",
        "sysctl rp_filter",
        "lwtkit state",
        "bug: lwt_xmit test-run with bpf_lwt_push_encap",
        "bug: GSO refused for IPIP outers of bpf_lwt_push_encap",
        "bug: lwt_xmit return values after the skb is freed",
    ] {
        let c = find(&cs, name);
        assert!(["ok", "warn", "fail"].contains(&c.1.as_str()), "{c:?}");
        assert_ne!(c.1, "fail", "{c:?}");
    }
    // Probed for real in the throwaway namespace.
    for name in ["lwt-bpf", "seg6", "seg6-bpf", "tcx", "netfilter-bpf"] {
        assert_eq!(find(&cs, name).1, "ok", "{:?}", find(&cs, name));
    }
    assert_eq!(ns.routes(), before, "the doctor changed the namespace");
    assert!(
        !ns.ip(&["route", "show", "table", "all"])
            .contains("lwtkit-doctor"),
        "a probe route leaked"
    );
}

#[test]
fn doctor_fails_when_lwtkits_route_is_gone_and_points_to_lwt_check() {
    require_root!();
    let p = Pair::new("docgone");
    p.a.count_on("10.0.0.9/32", "va", "out", &[]);
    p.a.ip(&["route", "del", "10.0.0.9/32"]);
    let out = p.a.lwt(&["doctor", "-j"]);
    assert_eq!(out.status.code(), Some(1), "doctor should fail");
    let cs = checks(&out.stdout);
    let s = find(&cs, "lwtkit state");
    assert_eq!(s.1, "fail", "{s:?}");
    assert!(
        s.2.contains("10.0.0.9") && s.2.contains("lwt check"),
        "{s:?}"
    );
    // Read-only: the record is still there for `lwt check` to report.
    assert!(!p.a.lwt(&["check"]).status.success());
}

#[test]
fn an_in_program_makes_accept_local_worth_a_warning() {
    require_root!();
    let p = Pair::new("docacc");
    p.a.count_on("10.0.0.2/32", "va", "in", &["--local"]);
    let out = p.a.lwt(&["doctor", "-j"]);
    assert!(out.status.success());
    let c = find(&checks(&out.stdout), "sysctl accept_local").clone();
    assert_eq!(c.1, "warn", "{c:?}");
    assert!(
        c.2.contains("sysctl -w net.ipv4.conf.all.accept_local=1"),
        "{c:?}"
    );
}

#[test]
fn under_ip_netns_exec_the_doctor_says_to_use_lwt_n() {
    require_root!();
    let ns = Netns::new("docexec");
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.name,
            env!("CARGO_BIN_EXE_lwt"),
            "doctor",
            "-j",
        ])
        .output()
        .expect("ip netns exec runs");
    assert_eq!(out.status.code(), Some(1));
    let c = find(&checks(&out.stdout), "ip-netns-exec").clone();
    assert_eq!(c.1, "fail");
    assert!(c.2.contains(&format!("lwt -n {}", ns.name)), "{c:?}");
}

#[test]
fn without_privileges_the_doctor_reports_them_instead_of_erroring() {
    require_root!();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            env!("CARGO_BIN_EXE_lwt"),
            "doctor",
            "-j",
        ])
        .output()
        .expect("setpriv runs");
    assert_eq!(out.status.code(), Some(1));
    let cs = checks(&out.stdout);
    let p = find(&cs, "privileges");
    assert_eq!(p.1, "fail");
    assert!(p.2.contains("CAP_BPF") && p.2.contains("root"), "{p:?}");
    // What needs privileges says so, as a warning, not as a failure.
    for name in ["lwt-bpf", "ringbuf", "lwtkit state"] {
        let c = find(&cs, name);
        assert_eq!(c.1, "warn", "{c:?}");
        assert!(c.2.contains("root"), "{c:?}");
    }
    assert_eq!(cs.iter().filter(|c| c.1 == "fail").count(), 1, "{cs:?}");
}
