//! `lwt test`: programs run on packets without a route. The seed's C
//! program (compiled here) and its filter-rule form give DROP for :8080
//! and OK for :8081 from a pcap; a rewriting program's output pcap shows
//! the rewrite; an encapsulating xmit program is refused unrun.
mod common;

use std::path::{Path, PathBuf};

use common::{compile_bpf, json, lwt, Netns};
use etherparse::PacketBuilder;

/// A pcap (Ethernet link type, as tcpdump writes) holding a SYN to :8080
/// and one to :8081, built by etherparse rather than lwt.
fn syns_pcap() -> PathBuf {
    let path = common::scratch("syns.pcap");
    let file = std::fs::File::create(&path).expect("create pcap");
    let header = pcap_file::pcap::PcapHeader {
        datalink: pcap_file::DataLink::ETHERNET,
        ..Default::default()
    };
    let mut w = pcap_file::pcap::PcapWriter::with_header(file, header).expect("pcap writer");
    for port in [8080u16, 8081] {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 3])
            .ipv4([10, 0, 0, 2], [10, 0, 0, 3], 64)
            .tcp(40000, port, 1, 64240)
            .syn()
            .write(&mut frame, &[])
            .expect("build frame");
        w.write_packet(&pcap_file::pcap::PcapPacket::new(
            std::time::Duration::ZERO,
            frame.len() as u32,
            &frame,
        ))
        .expect("write packet");
    }
    path
}

fn verdicts(out: &str) -> Vec<String> {
    json(out)
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(|p| p["verdict"].as_str().expect("verdict").to_string())
        .collect()
}

fn test_ok(ns: Option<&Netns>, args: &[&str]) -> String {
    let out = match ns {
        Some(ns) => ns.lwt(args),
        None => lwt(args),
    };
    assert!(
        out.status.success(),
        "lwt {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn seed_program_drops_8080_and_passes_8081_from_a_pcap_on_each_hook() {
    require_root!();
    let obj = compile_bpf("drop_tcp_8080");
    let pcap = syns_pcap();
    for hook in ["in", "out", "xmit"] {
        let out = test_ok(
            None,
            &[
                "-j",
                "test",
                "--hook",
                hook,
                "--obj",
                obj.to_str().expect("utf-8"),
                "--pcap",
                pcap.to_str().expect("utf-8"),
                "--repeat",
                "100",
            ],
        );
        assert_eq!(verdicts(&out), ["BPF_DROP", "BPF_OK"], "{hook}: {out}");
        let first = &json(&out)[0];
        assert_eq!(first["retval"], 2);
        assert!(first["ns"].as_u64().is_some(), "{out}");
    }
    // Text output names the verdicts too.
    let text = test_ok(
        None,
        &[
            "test",
            "--hook",
            "out",
            "--obj",
            obj.to_str().expect("utf-8"),
            "--packet",
            "tcp 10.0.0.2:40000 > 10.0.0.3:8080 flags S",
            "--packet",
            "tcp [fd00::2]:40000 > [fd00::3]:8081 flags S",
        ],
    );
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].contains(":8080") && lines[0].contains("BPF_DROP"),
        "{text}"
    );
    assert!(
        lines[1].contains("[fd00::3]:8081") && lines[1].contains("BPF_OK"),
        "{text}"
    );
}

#[test]
fn filter_rule_form_gives_the_same_verdicts_as_the_seed_program() {
    require_root!();
    let ns = Netns::new("tpol");
    ns.lwt_ok(&["filter", "create", "web"]);
    ns.lwt_ok(&[
        "filter",
        "rule",
        "add",
        "web",
        "dst",
        "10.0.0.3/32",
        "proto",
        "tcp",
        "dport",
        "8080",
        "drop",
    ]);
    let pcap = syns_pcap();
    for hook in ["in", "out", "xmit"] {
        let out = test_ok(
            Some(&ns),
            &[
                "-j",
                "test",
                "--hook",
                hook,
                "--policy",
                "web",
                "--pcap",
                pcap.to_str().expect("utf-8"),
            ],
        );
        assert_eq!(verdicts(&out), ["BPF_DROP", "BPF_OK"], "{hook}: {out}");
    }
    let err = ns.lwt_err(&[
        "test",
        "--hook",
        "out",
        "--policy",
        "nosuch",
        "--packet",
        "icmp 10.0.0.2 > 10.0.0.3",
    ]);
    assert!(err.contains("nosuch"), "{err}");
}

#[test]
fn rewriting_program_output_pcap_shows_the_rewrite() {
    require_root!();
    let obj = compile_bpf("rewrite_8080_to_8081");
    let out_pcap = common::scratch("rewritten.pcap");
    let out = test_ok(
        None,
        &[
            "-j",
            "test",
            "--hook",
            "xmit",
            "--obj",
            obj.to_str().expect("utf-8"),
            "--packet",
            "tcp 10.0.0.2:40000 > 10.0.0.3:8080 flags S",
            "--packet",
            "udp 10.0.0.2:5000 > 10.0.0.3:53 len 60",
            "--out",
            out_pcap.to_str().expect("utf-8"),
        ],
    );
    let v = json(&out);
    let changes = v[0]["changes"].as_array().expect("changes");
    assert!(
        changes
            .iter()
            .any(|c| c["field"] == "dport" && c["before"] == "8080" && c["after"] == "8081"),
        "{out}"
    );
    assert_eq!(v[0]["mark"], 0x42, "{out}");
    assert!(v[1]["changes"].as_array().expect("changes").is_empty());

    let packets = read_raw_pcap(&out_pcap);
    assert_eq!(packets.len(), 2);
    let p = etherparse::SlicedPacket::from_ip(&packets[0]).expect("an IP packet");
    let Some(etherparse::TransportSlice::Tcp(tcp)) = p.transport else {
        panic!("TCP expected");
    };
    assert_eq!(tcp.destination_port(), 8081);
    let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else {
        panic!("IPv4 expected");
    };
    let want = tcp
        .to_header()
        .calc_checksum_ipv4(&ip.header().to_header(), tcp.payload())
        .expect("checksum");
    assert_eq!(tcp.checksum(), want, "the checksum was fixed too");
}

fn read_raw_pcap(path: &Path) -> Vec<Vec<u8>> {
    let file = std::fs::File::open(path).expect("open pcap");
    let mut r = pcap_file::pcap::PcapReader::new(file).expect("pcap");
    assert_eq!(r.header().datalink, pcap_file::DataLink::RAW);
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        out.push(p.expect("packet").data.into_owned());
    }
    out
}

#[test]
fn encapsulating_xmit_program_is_refused_before_it_runs() {
    require_root!();
    let obj = compile_bpf("push_encap_xmit");
    let out = lwt(&[
        "test",
        "--hook",
        "xmit",
        "--obj",
        obj.to_str().expect("utf-8"),
        "--packet",
        "tcp 10.0.0.2:40000 > 10.0.0.3:8080 flags S",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing") && err.contains("bpf_lwt_push_encap"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "nothing ran: {:?}", out.stdout);
}

#[test]
fn seg6local_and_oversized_packets_are_refused_with_the_reason() {
    require_root!();
    let err = lwt(&[
        "test",
        "--hook",
        "seg6local",
        "--builtin",
        "count",
        "--packet",
        "udp [fd00::2]:1 > [fd00::3]:2",
    ]);
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("CVE-2024-46754"));
    let refused = |packet: &str| {
        let out = lwt(&[
            "test",
            "--hook",
            "out",
            "--builtin",
            "count",
            "--packet",
            packet,
        ]);
        assert!(!out.status.success(), "{packet}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(refused("udp 10.0.0.2:1 > 10.0.0.3:2 len 9000").contains("too long"));
    let err = refused("udp 10.0.0.2:1 > 10.0.0.3:99999");
    assert!(
        err.contains("destination port `99999` is out of range (0-65535)"),
        "{err}"
    );
}

#[test]
fn policy_test_verdicts_match_what_the_policy_does_to_real_traffic() {
    require_root!();
    let p = common::Pair::new("tdiff");
    let ports = [8080u16, 8081, 9005, 9011];
    let addrs: Vec<String> = ports
        .iter()
        .map(|port| format!("10.0.0.3:{port}"))
        .collect();
    let addr_refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
    common::serve_tcp(&p.b, &addr_refs);
    assert!(common::tcp_works_soon(&p.a, "10.0.0.3:8081"), "baseline");
    p.a.lwt_ok(&["filter", "create", "diff"]);
    for rule in [
        "dst 10.0.0.3/32 proto tcp dport 8080 drop",
        "proto tcp dport 9000-9010 drop",
        "proto udp dport 53 drop",
    ] {
        let mut args = vec!["filter", "rule", "add", "diff"];
        args.extend(rule.split_whitespace());
        p.a.lwt_ok(&args);
    }
    // Offline: the policy on SYNs to each port.
    let specs: Vec<String> = ports
        .iter()
        .map(|port| format!("tcp 10.0.0.2:40000 > 10.0.0.3:{port} flags S"))
        .collect();
    let mut args = vec!["-j", "test", "--hook", "out", "--policy", "diff"];
    for s in &specs {
        args.extend(["--packet", s.as_str()]);
    }
    let offline = verdicts(&p.a.lwt_ok(&args));
    // Live: the same policy on the route, real connections.
    p.a.lwt_ok(&[
        "filter",
        "attach",
        "diff",
        "10.0.0.3/32",
        "--dev",
        "va",
        "--hook",
        "out",
    ]);
    for (addr, verdict) in addrs.iter().zip(&offline) {
        let passes = common::tcp_works(&p.a, addr);
        assert_eq!(
            passes,
            verdict == "BPF_OK",
            "{addr}: lwt test said {verdict}, real traffic {}",
            if passes { "passed" } else { "was dropped" }
        );
    }
    assert_eq!(offline, ["BPF_DROP", "BPF_OK", "BPF_DROP", "BPF_OK"]);
}
