//! Encapsulation of forwarded traffic (`--hook in`) and SRv6 into the
//! kernel's End.DX4, across a chain of namespaces A — B — C.
mod common;

use std::{net::UdpSocket, time::Duration};

use common::{json, Netns};

/// A 10.0.0.2 / fd00::2 — B 10.0.0.3 / fd00::3 | 10.1.0.1 / fd01::1 — C 10.1.0.2 / fd01::2.
/// A routes everything else via B; C routes back via B; B forwards.
struct Chain {
    a: Netns,
    b: Netns,
    c: Netns,
}

fn sysctl(ns: &Netns, settings: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &ns.name, "sysctl", "-qw"])
        .args(settings)
        .output()
        .expect("sysctl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
        for (ns, dev, v4, v6) in [
            (&a, "va", "10.0.0.2/24", "fd00::2/64"),
            (&b, "vb", "10.0.0.3/24", "fd00::3/64"),
            (&b, "vbc", "10.1.0.1/24", "fd01::1/64"),
            (&c, "vc", "10.1.0.2/24", "fd01::2/64"),
        ] {
            ns.ip(&["addr", "add", v4, "dev", dev]);
            ns.ip(&["addr", "add", v6, "dev", dev, "nodad"]);
            ns.ip(&["link", "set", dev, "up"]);
        }
        a.ip(&["route", "add", "default", "via", "10.0.0.3"]);
        a.ip(&["-6", "route", "add", "default", "via", "fd00::3"]);
        c.ip(&["route", "add", "default", "via", "10.1.0.1"]);
        c.ip(&["-6", "route", "add", "default", "via", "fd01::1"]);
        sysctl(
            &b,
            &[
                "net.ipv4.ip_forward=1",
                "net.ipv6.conf.all.forwarding=1",
                "net.ipv6.conf.all.seg6_enabled=1",
                "net.ipv6.conf.vb.seg6_enabled=1",
            ],
        );
        std::thread::sleep(Duration::from_millis(200));
        Chain { a, b, c }
    }
}

/// Sends one datagram from A to `to`; returns what a socket bound in C received.
fn a_to_c(chain: &Chain, to: &'static str) -> Option<Vec<u8>> {
    let sock = chain.c.run(move || UdpSocket::bind(to).expect("bind in C"));
    sock.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    chain.a.run(move || {
        let any = if to.starts_with('[') {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        };
        UdpSocket::bind(any)
            .expect("udp")
            .send_to(b"forwarded", to)
            .expect("send");
    });
    let mut buf = [0u8; 64];
    sock.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
}

#[test]
fn forwarded_traffic_is_encapsulated_on_the_input_hook() {
    require_root!();
    let chain = Chain::new("fin");
    // C decapsulates VXLAN into 192.168.70.2; B encapsulates what it forwards there.
    chain.c.ip(&[
        "link", "add", "vx0", "type", "vxlan", "id", "42", "local", "10.1.0.2", "dstport", "4789",
    ]);
    chain
        .c
        .ip(&["addr", "add", "192.168.70.2/24", "dev", "vx0"]);
    chain.c.ip(&["link", "set", "vx0", "up"]);
    // After lwt_in pushes the outer header, the kernel routes the packet as
    // input again, with B's own address as source: B must accept that.
    sysctl(
        &chain.b,
        &[
            "net.ipv4.conf.all.accept_local=1",
            "net.ipv4.conf.vb.accept_local=1",
        ],
    );
    let link = json(&chain.c.ip(&["-j", "link", "show", "vx0"]));
    let mac = link[0]["address"].as_str().expect("mac").to_string();
    chain.b.lwt_ok(&[
        "encap",
        "add",
        "192.168.70.2/32",
        "--dev",
        "vbc",
        "--hook",
        "in",
        "--type",
        "vxlan",
        "--remote",
        "10.1.0.2",
        "--vni",
        "42",
        "--inner-dst-mac",
        &mac,
    ]);
    let shown = chain.b.ip(&["route", "show", "192.168.70.2"]);
    assert!(
        shown.contains("encap bpf in lwtkit-encap-vxlan:[lwt_in]#"),
        "{shown}"
    );
    assert_eq!(
        a_to_c(&chain, "192.168.70.2:7000").as_deref(),
        Some(&b"forwarded"[..])
    );
    let tunnels = json(&chain.b.lwt_ok(&["encap", "list", "-j"]));
    assert_eq!(tunnels[0]["hook"], "in");
    assert_eq!(tunnels[0]["stats"]["packets"], 1, "{tunnels}");
    chain.b.lwt_ok(&["encap", "del", "192.168.70.2/32"]);
}

#[test]
fn srv6_into_the_kernels_end_dx4() {
    require_root!();
    let chain = Chain::new("dx4");
    // B's End.DX4 SID decapsulates and cross-connects the inner IPv4 packet to C.
    chain.b.ip(&[
        "-6",
        "route",
        "add",
        "fc00::b",
        "encap",
        "seg6local",
        "action",
        "End.DX4",
        "nh4",
        "10.1.0.2",
        "dev",
        "vb",
    ]);
    chain.c.ip(&["addr", "add", "192.168.80.2/32", "dev", "lo"]);
    chain.a.lwt_ok(&[
        "encap",
        "add",
        "192.168.80.2/32",
        "--dev",
        "va",
        "--type",
        "srv6",
        "--segments",
        "fc00::b",
    ]);
    chain
        .a
        .ip(&["-6", "route", "add", "fc00::/16", "via", "fd00::3"]);
    assert_eq!(
        a_to_c(&chain, "192.168.80.2:7001").as_deref(),
        Some(&b"forwarded"[..]),
        "End.DX4 delivered the inner IPv4 packet"
    );
}

#[test]
fn srv6_headers_over_256_bytes_are_refused() {
    require_root!();
    let chain = Chain::new("big");
    let segments: Vec<String> = (1..=14).map(|i| format!("fc00::{i:x}")).collect();
    let before = chain.a.routes();
    let err = chain.a.lwt_err(&[
        "encap",
        "add",
        "2001:db8:1::/64",
        "--dev",
        "va",
        "--type",
        "srv6",
        "--segments",
        &segments.join(","),
    ]);
    assert!(err.contains("256"), "{err}");
    assert_eq!(chain.a.routes(), before);
}
