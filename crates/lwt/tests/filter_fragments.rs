//! The filter's invariant on the lwt_in hook of a local route, with real
//! packets between namespaces: no packet that reaches a socket can evade a
//! rule its reassembled packet would match. The two bypasses seen before
//! (a TCP SYN split into an 8-byte first fragment and a fragment at offset
//! 1; an IPv6 SYN behind nine destination-options headers) reach TCP
//! without the filter and are dropped and counted with it; fragmented UDP
//! to an allowed port keeps working, until `--fragments drop`.
mod common;

use std::net::{Ipv4Addr, Ipv6Addr};

use common::{
    json,
    tunnel::{listen_udp, recv_within, send_raw4, send_raw6, RawCapture},
    Netns, Pair,
};
use serde_json::Value;

const IPPROTO_TCP: i32 = 6;
const IPPROTO_RAW: i32 = 255;
const IPPROTO_DSTOPTS: i32 = 60;
const A4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const B4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);

fn a6() -> Ipv6Addr {
    "fd00::2".parse().expect("address")
}

fn b6() -> Ipv6Addr {
    "fd00::3".parse().expect("address")
}

fn sum16(data: &[u8]) -> u32 {
    data.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A 20-byte TCP SYN from port 40000 to `dport`, its checksum over
/// `pseudo` (the address family's pseudo-header without the length and
/// protocol, which are added here).
fn tcp_syn(dport: u16, pseudo: &[u8]) -> Vec<u8> {
    let mut t = 40000u16.to_be_bytes().to_vec();
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    let sum = sum16(pseudo) + 6 + t.len() as u32 + sum16(&t);
    t[16..18].copy_from_slice(&fold(sum).to_be_bytes());
    t
}

/// An IPv4 header for a fragment of datagram `id` (the kernel fills in the
/// checksum and total length of IP_HDRINCL packets), then `payload`.
fn ipv4_fragment(id: u16, offset_units: u16, more: bool, payload: &[u8]) -> Vec<u8> {
    let field = offset_units | if more { 0x2000 } else { 0 };
    let mut h = vec![0x45, 0, 0, 0];
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&field.to_be_bytes());
    h.extend_from_slice(&[64, 6, 0, 0]);
    h.extend_from_slice(&A4.octets());
    h.extend_from_slice(&B4.octets());
    h.extend_from_slice(payload);
    h
}

/// Whether TCP on b answered (SYN-ACK or RST from port 22) within a second:
/// the SYN reached b's TCP. `v6` captures are without the IP header.
fn tcp_answered(capture: &RawCapture, v6: bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(1000);
    while std::time::Instant::now() < deadline {
        let Some(p) = capture.recv_within(200) else {
            continue;
        };
        let at = if v6 { 0 } else { usize::from(p[0] & 0xf) * 4 };
        if p.get(at..at + 2) == Some(&22u16.to_be_bytes()[..]) {
            return true;
        }
    }
    false
}

/// The `lwt stats -j` row of one route and hook.
fn stats_row(ns: &Netns, dst: &str, hook: &str) -> Value {
    let stats = json(&ns.lwt_ok(&["stats", "-j"]));
    stats
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["dst"] == dst && r["hook"] == hook))
        .cloned()
        .unwrap_or_else(|| panic!("no stats row for {dst} hook {hook}: {stats}"))
}

/// Attaches `policy` to b's local route of `prefix` on `in`. The kernel's
/// IPv6 local routes (metric 0) cannot be replaced in place, so for IPv6 b
/// gets a local route of its own in table 100, looked up before table
/// local (b's rules only; b is a throwaway namespace).
fn attach_local_in(b: &Netns, policy: &str, prefix: &str) {
    let mut args = vec![
        "filter", "attach", policy, prefix, "--dev", "vb", "--hook", "in", "--local",
    ];
    if prefix.contains(':') {
        if !b.ip(&["-6", "rule", "show"]).contains("lookup 100") {
            b.ip(&["-6", "rule", "add", "pref", "10", "lookup", "100"]);
            b.ip(&["-6", "rule", "del", "pref", "0"]);
            b.ip(&["-6", "rule", "add", "pref", "1000", "lookup", "local"]);
        }
        args.extend(["--table", "100", "--force"]);
    }
    b.lwt_ok(&args);
}

fn ssh_policy_on_b(p: &Pair, prefix: &str) {
    p.b.lwt_ok(&["filter", "create", "ssh"]);
    p.b.lwt_ok(&[
        "filter", "rule", "add", "ssh", "proto", "tcp", "dport", "22", "drop",
    ]);
    attach_local_in(&p.b, "ssh", prefix);
}

/// The SYN to port 22 as an 8-byte first fragment (ports and sequence
/// number, no flags) and a fragment at offset 1 (the rest).
fn send_tiny_fragment_syn(p: &Pair, id: u16) {
    let mut pseudo = A4.octets().to_vec();
    pseudo.extend_from_slice(&B4.octets());
    let syn = tcp_syn(22, &pseudo);
    send_raw4(
        &p.a,
        IPPROTO_RAW,
        None,
        B4,
        ipv4_fragment(id, 0, true, &syn[..8]),
    );
    send_raw4(
        &p.a,
        IPPROTO_RAW,
        None,
        B4,
        ipv4_fragment(id, 1, false, &syn[8..]),
    );
}

#[test]
fn tiny_first_fragment_and_offset_1_cannot_sneak_a_syn_past_a_port_rule() {
    require_root!();
    let p = Pair::new("frtiny");
    let capture = RawCapture::open(&p.a, IPPROTO_TCP);
    // Without the filter the two fragments reassemble into a SYN b answers.
    let answered = (0..3).any(|i| {
        send_tiny_fragment_syn(&p, 0x4000 + i);
        tcp_answered(&capture, false)
    });
    assert!(answered, "baseline: b's TCP answers the fragmented SYN");

    ssh_policy_on_b(&p, "10.0.0.3/32");
    send_tiny_fragment_syn(&p, 0x4100);
    assert!(
        !tcp_answered(&capture, false),
        "the fragmented SYN to port 22 must not reach TCP"
    );
    let row = stats_row(&p.b, "10.0.0.3/32", "in");
    assert_eq!(
        row["malformed"]["packets"], 2,
        "both fragments are dropped as evasive: {row}"
    );
    let show = json(&p.b.lwt_ok(&["filter", "show", "ssh", "-j"]));
    assert_eq!(show["malformed_packets"], 2, "{show}");

    // A first fragment of 16 bytes holds the flags: it is judged by its
    // ports, and rule 1 drops it; the fragment after it (offset 2) passes
    // and reassembles into nothing.
    let mut pseudo = A4.octets().to_vec();
    pseudo.extend_from_slice(&B4.octets());
    let syn = tcp_syn(22, &pseudo);
    send_raw4(
        &p.a,
        IPPROTO_RAW,
        None,
        B4,
        ipv4_fragment(0x4200, 0, true, &syn[..16]),
    );
    send_raw4(
        &p.a,
        IPPROTO_RAW,
        None,
        B4,
        ipv4_fragment(0x4200, 2, false, &syn[16..]),
    );
    assert!(!tcp_answered(&capture, false));
    let show = json(&p.b.lwt_ok(&["filter", "show", "ssh", "-j"]));
    assert_eq!(show["rules"][0]["packets"], 1, "{show}");
    let row = stats_row(&p.b, "10.0.0.3/32", "in");
    assert_eq!(row["dropped"]["packets"], 1, "{row}");
}

/// A SYN to port 22 of fd00::3 behind nine destination-options headers
/// (each 8 bytes: a PadN option).
fn send_syn_behind_nine_headers(p: &Pair) {
    let mut pseudo = a6().octets().to_vec();
    pseudo.extend_from_slice(&b6().octets());
    let syn = tcp_syn(22, &pseudo);
    let mut payload = Vec::new();
    for i in 0..9 {
        let next = if i == 8 { 6 } else { 60 };
        payload.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
    }
    payload.extend_from_slice(&syn);
    send_raw6(&p.a, IPPROTO_DSTOPTS, b6(), payload);
}

#[test]
fn ipv6_syn_behind_nine_extension_headers_is_malformed_and_dropped() {
    require_root!();
    let p = Pair::new("frnine");
    let capture = RawCapture::open6(&p.a, IPPROTO_TCP);
    let answered = (0..5).any(|_| {
        send_syn_behind_nine_headers(&p);
        tcp_answered(&capture, true)
    });
    assert!(
        answered,
        "baseline: b's TCP answers the SYN behind nine headers"
    );

    ssh_policy_on_b(&p, "fd00::3/128");
    send_syn_behind_nine_headers(&p);
    assert!(
        !tcp_answered(&capture, true),
        "the SYN behind nine headers must not reach TCP"
    );
    let row = stats_row(&p.b, "fd00::3/128", "in");
    assert_eq!(row["malformed"]["packets"], 1, "{row}");
    assert_eq!(row["dropped"]["packets"], 0, "{row}");

    // `--malformed default` hands such packets to the default verdict
    // (allow here): TCP answers again.
    p.b.lwt_ok(&["filter", "set", "ssh", "--malformed", "default"]);
    send_syn_behind_nine_headers(&p);
    assert!(
        tcp_answered(&capture, true),
        "--malformed default lets it through"
    );
}

#[test]
fn fragmented_udp_to_an_allowed_port_passes_until_fragments_drop() {
    require_root!();
    let p = Pair::new("frudp");
    let v4 = listen_udp(&p.b, "10.0.0.3:9000");
    let v6 = listen_udp(&p.b, "[fd00::3]:9000");
    let other = listen_udp(&p.b, "10.0.0.3:9001");
    p.b.lwt_ok(&["filter", "create", "frag", "--default", "drop"]);
    p.b.lwt_ok(&[
        "filter", "rule", "add", "frag", "proto", "udp", "dport", "9000", "allow",
    ]);
    for prefix in ["10.0.0.3/32", "fd00::3/128"] {
        attach_local_in(&p.b, "frag", prefix);
    }
    let show = p.b.lwt_ok(&["filter", "show", "frag"]);
    assert!(show.contains("fragments pass, malformed drop"), "{show}");

    // 3000 bytes over a 1500-byte MTU: three fragments each; the first is
    // judged by its ports, the others pass.
    let send = |to: &'static str| common::send_udp(&p.a, to, 1, 3000);
    send("10.0.0.3:9000");
    send("[fd00::3]:9000");
    send("10.0.0.3:9001");
    let got4 = recv_within(&v4, 2000).map(|d| d.len());
    assert_eq!(got4, Some(3000), "IPv4 datagram to the allowed port");
    let got6 = recv_within(&v6, 2000).map(|d| d.len());
    assert_eq!(got6, Some(3000), "IPv6 datagram to the allowed port");
    assert_eq!(
        recv_within(&other, 500),
        None,
        "9001 is dropped by the default"
    );

    let out =
        p.b.lwt_ok(&["filter", "set", "frag", "--fragments", "drop"]);
    assert!(out.contains("fragments drop"), "{out}");
    let before = stats_row(&p.b, "10.0.0.3/32", "in")["dropped"]["packets"]
        .as_u64()
        .unwrap_or_default();
    send("10.0.0.3:9000");
    assert_eq!(recv_within(&v4, 1000), None, "--fragments drop stops it");
    let after = stats_row(&p.b, "10.0.0.3/32", "in")["dropped"]["packets"]
        .as_u64()
        .unwrap_or_default();
    assert_eq!(after - before, 2, "the two later fragments are dropped");
    // Unfragmented datagrams to the port still pass.
    common::send_udp(&p.a, "10.0.0.3:9000", 1, 100);
    assert_eq!(recv_within(&v4, 1000).map(|d| d.len()), Some(100));
}
