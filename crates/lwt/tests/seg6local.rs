//! SRv6 end to end across a chain of namespaces: lwtkit's SRv6
//! encapsulation, the kernel's own seg6local End.DT6 as a peer, and
//! lwtkit's End.BPF built-ins (`end` counting per SID, `end-dt6`).
mod common;

use common::{json, Chain};

/// The chain plus C's 2001:db8:c::2, which B routes to C.
fn chain(tag: &str) -> Chain {
    let chain = Chain::new(tag);
    chain
        .c
        .ip(&["addr", "add", "2001:db8:c::2/128", "dev", "lo", "nodad"]);
    chain
        .b
        .ip(&["-6", "route", "add", "2001:db8:c::/64", "via", "fd01::2"]);
    chain
}

/// C's own End.DT6 SID fc00::c, which B routes to C, delivers locally.
fn kernel_end_dt6_on_c(chain: &Chain) {
    chain
        .b
        .ip(&["-6", "route", "add", "fc00::c", "via", "fd01::2"]);
    chain.c.ip(&[
        "-6",
        "route",
        "add",
        "fc00::c",
        "encap",
        "seg6local",
        "action",
        "End.DT6",
        "table",
        "255",
        "dev",
        "vc",
    ]);
}

#[test]
fn srv6_encap_into_the_kernels_end_dt6() {
    require_root!();
    let chain = chain("dt6");
    // C's own End.DT6 SID decapsulates and delivers locally (table local).
    kernel_end_dt6_on_c(&chain);
    chain.a.lwt_ok(&[
        "encap",
        "add",
        "2001:db8:c::2/128",
        "--dev",
        "va",
        "--type",
        "srv6",
        "--segments",
        "fc00::c",
    ]);
    assert_eq!(
        chain.a_to_c("[2001:db8:c::2]:7000").as_deref(),
        Some(&b"through the chain"[..]),
        "C's End.DT6 delivered the inner packet"
    );
    let list = json(&chain.a.lwt_ok(&["encap", "list", "-j"]));
    assert_eq!(list[0]["stats"]["packets"], 1, "{list}");
    chain.a.lwt_ok(&["encap", "del", "2001:db8:c::2/128"]);
}

#[test]
fn end_bpf_builtins_count_per_sid_and_decapsulate() {
    require_root!();
    let chain = chain("ebpf");
    // B: `end` on fc00::b counts and moves on to fc00::c; C: the kernel's End.DT6.
    chain.b.lwt_ok(&[
        "seg6local",
        "add",
        "fc00::b",
        "--dev",
        "vb",
        "--builtin",
        "end",
    ]);
    kernel_end_dt6_on_c(&chain);
    let shown = chain.b.ip(&["-6", "route", "show", "fc00::b"]);
    assert!(
        shown.contains("encap seg6local action End.BPF endpoint lwtkit-end:[lwt_seg6local]#"),
        "{shown}"
    );
    chain.a.lwt_ok(&[
        "encap",
        "add",
        "2001:db8:c::2/128",
        "--dev",
        "va",
        "--type",
        "srv6",
        "--segments",
        "fc00::b,fc00::c",
    ]);
    for _ in 0..3 {
        assert_eq!(
            chain.a_to_c("[2001:db8:c::2]:7000").as_deref(),
            Some(&b"through the chain"[..])
        );
    }
    let sids = json(&chain.b.lwt_ok(&["seg6local", "list", "-j"]));
    assert_eq!(sids[0]["dst"], "fc00::b/128");
    // `lwt list` knows the SID is lwtkit's.
    let listed = json(&chain.b.lwt_ok(&["list", "-j"]));
    let sid = listed
        .as_array()
        .and_then(|a| a.iter().find(|r| r["dst"] == "fc00::b/128"))
        .expect("SID listed");
    assert_eq!(sid["managed"], true, "{sid}");
    assert_eq!(sids[0]["packets"], 3, "{sids}");
    chain.b.lwt_ok(&["seg6local", "del", "fc00::b"]);
    assert_eq!(chain.b.ip(&["-6", "route", "show", "fc00::b"]).trim(), "");

    // B: `end-dt6` decapsulates and forwards the inner packet to C by table main.
    chain.b.lwt_ok(&[
        "seg6local",
        "add",
        "fc00::b",
        "--dev",
        "vb",
        "--builtin",
        "end-dt6",
    ]);
    assert_eq!(
        chain.a_to_c("[2001:db8:c::2]:7000").as_deref(),
        Some(&b"through the chain"[..]),
        "B's End.BPF end-dt6 decapsulated"
    );
    let sids = json(&chain.b.lwt_ok(&["seg6local", "list", "-j"]));
    assert_eq!(sids[0]["packets"], 1, "{sids}");
    assert_eq!(sids[0]["dropped"], 0, "{sids}");
    let err = chain.b.lwt_err(&[
        "seg6local",
        "add",
        "fc00::d",
        "--dev",
        "vb",
        "--builtin",
        "nosuch",
    ]);
    assert!(err.contains("unknown built-in"), "{err}");
    let err = chain.b.lwt_err(&["seg6local", "del", "fc00::d"]);
    assert!(err.contains("not managed"), "{err}");
}

#[test]
fn third_party_end_bpf_objects_run_on_a_sid() {
    require_root!();
    let chain = chain("tpo");
    let obj = common::compile_bpf("seg6_pass");
    chain.b.lwt_ok(&[
        "seg6local",
        "add",
        "fc00::b",
        "--dev",
        "vb",
        "--obj",
        obj.to_str().expect("utf-8"),
    ]);
    kernel_end_dt6_on_c(&chain);
    let shown = chain.b.ip(&["-6", "route", "show", "fc00::b"]);
    assert!(
        shown.contains("End.BPF endpoint seg6_pass.o:[lwt_seg6local]#"),
        "{shown}"
    );
    chain.a.lwt_ok(&[
        "encap",
        "add",
        "2001:db8:c::2/128",
        "--dev",
        "va",
        "--type",
        "srv6",
        "--segments",
        "fc00::b,fc00::c",
    ]);
    assert_eq!(
        chain.a_to_c("[2001:db8:c::2]:7000").as_deref(),
        Some(&b"through the chain"[..])
    );
    chain.b.lwt_ok(&["seg6local", "del", "fc00::b"]);
}

#[test]
fn end_bpf_programs_in_custom_sections_run_only_with_prog_type() {
    require_root!();
    let chain = chain("tpt");
    let obj = common::compile_bpf("seg6_custom_section");
    let obj = obj.to_str().expect("utf-8");
    let add = |extra: &[&'static str]| {
        let mut args = vec!["seg6local", "add", "fc00::b", "--dev", "vb", "--obj", obj];
        args.extend_from_slice(extra);
        args
    };
    // Link-local routes come and go with DAD on their own: leave them out.
    let routes = || {
        chain
            .b
            .routes()
            .lines()
            .filter(|l| !l.contains("fe80:") && !l.contains("ff00::/8"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let before = routes();
    let err = chain.b.lwt_err(&add(&[]));
    assert!(
        err.contains("`end_pass`")
            && err.contains("lwtkit_test_end_pass")
            && err.contains("--prog-type lwt_seg6local"),
        "{err}"
    );
    assert_eq!(routes(), before, "a refused program changes nothing");

    chain.b.lwt_ok(&add(&["--prog-type", "lwt_seg6local"]));
    kernel_end_dt6_on_c(&chain);
    chain.a.lwt_ok(&[
        "encap",
        "add",
        "2001:db8:c::2/128",
        "--dev",
        "va",
        "--type",
        "srv6",
        "--segments",
        "fc00::b,fc00::c",
    ]);
    assert_eq!(
        chain.a_to_c("[2001:db8:c::2]:7000").as_deref(),
        Some(&b"through the chain"[..]),
        "the forced program runs as End.BPF"
    );
}

#[test]
fn srv6_encapsulation_of_forwarded_traffic_on_the_input_hook() {
    require_root!();
    let chain = chain("sin");
    // B pushes SRv6 onto what it forwards to C; C's End.DT6 delivers it.
    kernel_end_dt6_on_c(&chain);
    chain.b.ip(&["-6", "route", "del", "2001:db8:c::/64"]);
    chain.b.lwt_ok(&[
        "encap",
        "add",
        "2001:db8:c::2/128",
        "--dev",
        "vbc",
        "--hook",
        "in",
        "--type",
        "srv6",
        "--segments",
        "fc00::c",
    ]);
    assert_eq!(
        chain.a_to_c("[2001:db8:c::2]:7000").as_deref(),
        Some(&b"through the chain"[..])
    );
    let tunnels = json(&chain.b.lwt_ok(&["encap", "list", "-j"]));
    assert_eq!(tunnels[0]["hook"], "in");
    assert_eq!(tunnels[0]["stats"]["packets"], 1, "{tunnels}");
}
