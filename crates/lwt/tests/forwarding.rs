//! Encapsulation of forwarded traffic (`--hook in`) and SRv6 into the
//! kernel's End.DX4, across a chain of namespaces A — B — C.
mod common;

use common::{json, Chain};

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
    chain.b.sysctl(&[
        "net.ipv4.conf.all.accept_local=1",
        "net.ipv4.conf.vb.accept_local=1",
    ]);
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
        chain.a_to_c("192.168.70.2:7000").as_deref(),
        Some(&b"through the chain"[..])
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
        chain.a_to_c("192.168.80.2:7001").as_deref(),
        Some(&b"through the chain"[..]),
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
