//! SRv6 end to end across a chain of namespaces: lwtkit's SRv6
//! encapsulation, the kernel's own seg6local End.DT6 as a peer, and
//! lwtkit's End.BPF built-ins (`end` counting per SID, `end-dt6`).
mod common;

use std::{net::UdpSocket, time::Duration};

use common::{json, Netns};

/// A — B — C: A fd00::2 / B fd00::3 on the first link, B fd01::1 /
/// C fd01::2 on the second; C owns 2001:db8:c::2 and routes back via B;
/// A sends SIDs (fc00::/16) to B; B has SRv6 enabled and forwards.
struct Chain {
    a: Netns,
    b: Netns,
    c: Netns,
}

impl Chain {
    fn new(tag: &str) -> Self {
        let (a, b, c) = (
            Netns::new(&format!("{tag}a")),
            Netns::new(&format!("{tag}b")),
            Netns::new(&format!("{tag}c")),
        );
        a.ip(&[
            "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &b.name,
        ]);
        b.ip(&[
            "link", "add", "vbc", "type", "veth", "peer", "name", "vc", "netns", &c.name,
        ]);
        for (ns, dev, addr) in [
            (&a, "va", "fd00::2/64"),
            (&b, "vb", "fd00::3/64"),
            (&b, "vbc", "fd01::1/64"),
            (&c, "vc", "fd01::2/64"),
        ] {
            ns.ip(&["addr", "add", addr, "dev", dev, "nodad"]);
            ns.ip(&["link", "set", dev, "up"]);
        }
        c.ip(&["addr", "add", "2001:db8:c::2/128", "dev", "lo"]);
        c.ip(&["-6", "route", "add", "default", "via", "fd01::1"]);
        b.ip(&["-6", "route", "add", "2001:db8:c::/64", "via", "fd01::2"]);
        a.ip(&["-6", "route", "add", "fc00::/16", "via", "fd00::3"]);
        for ns in [&b, &c] {
            sysctl(
                ns,
                &[
                    "net.ipv6.conf.all.seg6_enabled=1",
                    "net.ipv6.conf.all.forwarding=1",
                ],
            );
        }
        sysctl(&b, &["net.ipv6.conf.vb.seg6_enabled=1"]);
        sysctl(&c, &["net.ipv6.conf.vc.seg6_enabled=1"]);
        std::thread::sleep(Duration::from_millis(200));
        Chain { a, b, c }
    }
}

fn sysctl(ns: &Netns, settings: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &ns.name, "sysctl", "-qw"])
        .args(settings)
        .output()
        .expect("sysctl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends one datagram from A to [2001:db8:c::2]:7000; returns what C received.
fn a_to_c(chain: &Chain) -> Option<Vec<u8>> {
    let sock = chain
        .c
        .run(|| UdpSocket::bind("[2001:db8:c::2]:7000").expect("bind in C"));
    sock.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    chain.a.run(|| {
        let s = UdpSocket::bind("[::]:0").expect("udp");
        s.send_to(b"over-srv6", "[2001:db8:c::2]:7000")
            .expect("send");
    });
    let mut buf = [0u8; 64];
    sock.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
}

#[test]
fn srv6_encap_into_the_kernels_end_dt6() {
    require_root!();
    let chain = Chain::new("dt6");
    // C's own End.DT6 SID decapsulates and delivers locally (table local).
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
    chain
        .b
        .ip(&["-6", "route", "add", "fc00::c", "via", "fd01::2"]);
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
        a_to_c(&chain).as_deref(),
        Some(&b"over-srv6"[..]),
        "C's End.DT6 delivered the inner packet"
    );
    let list = json(&chain.a.lwt_ok(&["encap", "list", "-j"]));
    assert_eq!(list[0]["stats"]["packets"], 1, "{list}");
    chain.a.lwt_ok(&["encap", "del", "2001:db8:c::2/128"]);
}

#[test]
fn end_bpf_builtins_count_per_sid_and_decapsulate() {
    require_root!();
    let chain = Chain::new("ebpf");
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
        assert_eq!(a_to_c(&chain).as_deref(), Some(&b"over-srv6"[..]));
    }
    let sids = json(&chain.b.lwt_ok(&["seg6local", "list", "-j"]));
    assert_eq!(sids[0]["sid"], "fc00::b/128");
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
        a_to_c(&chain).as_deref(),
        Some(&b"over-srv6"[..]),
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
