//! What the route MTU gives TCP (`encap add` and `encap list` state the
//! segment sizes), and `--df` on the wire: a tunnel from A to C through a router B whose link
//! towards C has a smaller MTU (1300) than the tunnel's ends (1500), so the
//! outer packets of a TCP upload do not fit on the way. C's own device is
//! 1500 bytes, so C advertises the full MSS and the limit is only in the
//! middle, where PMTU discovery has to find it.
//!
//! What this kernel does (docs/encap.md, "DF and the path MTU"):
//! - DF set: B drops the outer packets and sends ICMP "fragmentation
//!   needed" to A, which receives it and learns nothing: the ICMP quotes an
//!   outer GRE/UDP packet, and no protocol handler of A's (no GRE/FOU
//!   modules, no UDP socket of the tunnel) updates a path MTU from it. TCP
//!   through the tunnel stalls, unless TCP's own black-hole probing
//!   (`net.ipv4.tcp_mtu_probing=1`) shrinks its segments.
//! - DF unset: B fragments the outer packets; a kernel vxlan device on C
//!   reassembles them (the stack reassembles before the UDP socket) and the
//!   upload arrives; `lwt decap` counts the fragments and leaves them to the
//!   stack, which has no tunnel to hand them to, so nothing arrives.
mod common;

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    thread,
    time::{Duration, Instant},
};

use common::{json, Chain, Netns, Pair};

const INNER: &str = "192.168.60.3";
const UPLOAD: usize = 1 << 20;

/// A chain whose middle link (B's `vbc`) carries at most 1300 bytes.
fn narrow_chain(tag: &str) -> Chain {
    let ch = Chain::new(tag);
    ch.b.ip(&["link", "set", "vbc", "mtu", "1300"]);
    ch
}

/// Uploads UPLOAD bytes from A to INNER:7009 in C; returns the bytes C
/// received within `limit`.
fn upload(ch: &Chain, limit: Duration) -> usize {
    let to: SocketAddr = format!("{INNER}:7009").parse().expect("address");
    let listener = ch.c.run(move || TcpListener::bind(to).expect("bind in C"));
    let deadline = Instant::now() + limit;
    let sink = thread::spawn(move || -> usize {
        listener.set_nonblocking(true).expect("nonblocking");
        let mut s = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(10))
                }
                Err(_) => return 0,
            }
        };
        s.set_nonblocking(false).expect("blocking");
        let mut n = 0;
        let mut buf = vec![0u8; 1 << 16];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("timeout");
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
        }
        n
    });
    ch.a.spawn(move || {
        let Ok(mut s) = TcpStream::connect_timeout(&to, Duration::from_secs(3)) else {
            return;
        };
        let _ = s.set_write_timeout(Some(limit));
        if s.write_all(&vec![0x42u8; UPLOAD]).is_ok() {
            let _ = s.shutdown(std::net::Shutdown::Write);
        }
        // Keep the socket until the deadline: closing it early would reset
        // a stalled connection instead of showing the stall.
        thread::sleep(deadline.saturating_duration_since(Instant::now()));
    });
    sink.join().expect("sink")
}

/// A counter of `/proc/net/snmp` (e.g. "Icmp" "InDestUnreachs") in `ns`.
fn snmp(ns: &Netns, group: &'static str, name: &'static str) -> u64 {
    ns.run(move || {
        let text = std::fs::read_to_string("/proc/thread-self/net/snmp").expect("snmp");
        let rows: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(&format!("{group}:")))
            .collect();
        let (names, values) = (rows[0], rows[1]);
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0)
    })
}

/// GRE from A to C, decapsulated by `lwt decap` on C.
fn gre_tunnel(ch: &Chain, df: &str) {
    ch.c.ip(&["addr", "add", &format!("{INNER}/32"), "dev", "lo"]);
    ch.c.lwt_ok(&["decap", "add", "--dev", "vc", "--type", "gre"]);
    ch.a.lwt_ok(&[
        "encap",
        "add",
        &format!("{INNER}/32"),
        "--dev",
        "va",
        "--type",
        "gre",
        "--remote",
        "10.1.0.2",
        "--df",
        df,
    ]);
}

#[test]
fn df_set_through_a_narrower_link_gets_frag_needed_back_but_no_path_mtu_so_tcp_stalls() {
    require_root!();
    let ch = narrow_chain("dfset");
    gre_tunnel(&ch, "set");
    let icmp_before = snmp(&ch.a, "Icmp", "InDestUnreachs");
    let got = upload(&ch, Duration::from_secs(4));
    assert!(
        got < UPLOAD / 2,
        "the upload stalls: {got} of {UPLOAD} bytes arrived"
    );
    // B answered with ICMP (fragmentation needed) and A received it...
    assert!(
        snmp(&ch.b, "Icmp", "OutDestUnreachs") > 0,
        "B sent fragmentation needed"
    );
    assert!(
        snmp(&ch.a, "Icmp", "InDestUnreachs") > icmp_before,
        "A received it"
    );
    // ...but nothing learned a path MTU towards the remote.
    let route = ch.a.ip(&["route", "get", "10.1.0.2"]);
    assert!(!route.contains("mtu"), "no cached path MTU: {route}");
    // TCP's black-hole probing gets the upload through.
    ch.a.sysctl(&["net.ipv4.tcp_mtu_probing=1"]);
    let got = upload(&ch, Duration::from_secs(40));
    assert_eq!(got, UPLOAD, "with tcp_mtu_probing=1 the upload arrives");
}

#[test]
fn df_unset_is_fragmented_on_the_way_and_a_kernel_vxlan_device_reassembles() {
    require_root!();
    let ch = narrow_chain("dfvx");
    ch.c.ip(&[
        "link", "add", "vx0", "type", "vxlan", "id", "42", "local", "10.1.0.2", "dstport", "4789",
        "dev", "vc",
    ]);
    ch.c.ip(&["addr", "add", "192.168.60.3/24", "dev", "vx0"]);
    ch.c.ip(&["link", "set", "vx0", "up"]);
    let link = ch.c.ip(&["-o", "link", "show", "vx0"]);
    let mac = link
        .split("link/ether ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("vx0's MAC")
        .to_string();
    ch.a.lwt_ok(&[
        "encap",
        "add",
        &format!("{INNER}/32"),
        "--dev",
        "va",
        "--type",
        "vxlan",
        "--remote",
        "10.1.0.2",
        "--vni",
        "42",
        "--inner-dst-mac",
        &mac,
        "--df",
        "unset",
    ]);
    let reasm = snmp(&ch.c, "Ip", "ReasmOKs");
    let got = upload(&ch, Duration::from_secs(20));
    assert_eq!(got, UPLOAD, "the upload arrives");
    assert!(
        snmp(&ch.c, "Ip", "ReasmOKs") > reasm + 100,
        "C reassembled the outer fragments"
    );
}

#[test]
fn df_unset_fragments_reach_lwt_decap_which_counts_them_and_delivers_nothing() {
    require_root!();
    let ch = narrow_chain("dfgre");
    gre_tunnel(&ch, "unset");
    let got = upload(&ch, Duration::from_secs(4));
    assert!(got < UPLOAD / 2, "{got} of {UPLOAD} bytes arrived");
    let list = json(&ch.c.lwt_ok(&["decap", "list", "-j"]));
    let fragments = list[0]["passed"]["fragments"].as_u64().unwrap_or(0);
    assert!(fragments > 0, "decap counted outer fragments: {list}");
    assert!(
        snmp(&ch.c, "Ip", "ReasmOKs") > 0,
        "the stack reassembled them (and had no tunnel for them)"
    );
}

#[test]
fn encap_add_and_list_state_the_tcp_segment_sizes_the_route_gives() {
    require_root!();
    let p = Pair::new("segs");
    // vxlan over IPv4 (50 bytes) on a 1500-byte veth, IPv4 and IPv6 inner.
    let out = p.a.lwt_ok(&[
        "encap",
        "add",
        "192.168.70.3/32",
        "--dev",
        "va",
        "--type",
        "vxlan",
        "--remote",
        "10.0.0.3",
        "--vni",
        "42",
        "--inner-dst-mac",
        "02:00:00:00:b0:01",
    ]);
    assert!(
        out.contains("route mtu 1450: TCP segments carry up to 1410 bytes, segments cut from GSO packets 1360"),
        "{out}"
    );
    p.a.lwt_ok(&[
        "encap",
        "add",
        "2001:db8:70::3/128",
        "--dev",
        "va",
        "--type",
        "vxlan",
        "--remote",
        "10.0.0.3",
        "--vni",
        "42",
        "--inner-dst-mac",
        "02:00:00:00:b0:01",
    ]);
    let list = json(&p.a.lwt_ok(&["encap", "list", "-j"]));
    let sizes = |dst: &str| {
        list.as_array()
            .expect("tunnels")
            .iter()
            .find(|t| t["dst"] == dst)
            .map(|t| t["tcp_segments"].clone())
            .expect("the tunnel")
    };
    assert_eq!(
        sizes("192.168.70.3/32"),
        serde_json::json!({"route_mtu": 1450, "mss": 1410, "gso_segment": 1360})
    );
    assert_eq!(
        sizes("2001:db8:70::3/128"),
        serde_json::json!({"route_mtu": 1450, "mss": 1390, "gso_segment": 1340})
    );
    let text = p.a.lwt_ok(&["encap", "list"]);
    assert!(
        text.contains("route mtu 1450 tcp segments 1410 (from GSO packets 1360)"),
        "{text}"
    );
}
