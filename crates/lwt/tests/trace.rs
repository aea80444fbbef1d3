//! `lwt trace` on a program lwtkit did not attach: iproute2's `ip route
//! ... encap bpf out obj` puts the seed's C program on a route in a
//! throwaway namespace; the trace shows the dropped :8080 SYN and the
//! passed :8081 request with their verdicts, and leaves the route as it was.
mod common;

use std::{
    io::{BufRead, BufReader, Read},
    process::Child,
    time::Duration,
};

use common::{compile_bpf, json, serve_tcp, tcp_works, tcp_works_soon, Pair};

/// Waits until the trace says what it traces (its programs are attached
/// by then); returns those lines.
fn wait_ready(child: &mut Child) -> String {
    wait_ready_keep(child).0
}

/// [`wait_ready`], and the rest of stderr once the trace ends.
fn wait_ready_keep(child: &mut Child) -> (String, std::thread::JoinHandle<String>) {
    let stderr = child.stderr.take().expect("piped stderr");
    let mut reader = BufReader::new(stderr);
    let mut line = String::new();
    reader.read_line(&mut line).expect("read stderr");
    // Keep draining stderr so the trace never blocks on it.
    let rest = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = reader.read_to_string(&mut rest);
        rest
    });
    (line, rest)
}

fn iproute2_drop_route(p: &Pair) -> String {
    let obj = compile_bpf("drop_tcp_8080");
    p.a.ip(&[
        "route",
        "add",
        "10.0.0.3/32",
        "dev",
        "va",
        "encap",
        "bpf",
        "out",
        "obj",
        obj.to_str().expect("utf-8"),
        "section",
        "lwt_out",
    ]);
    p.a.ip(&["-d", "route", "show", "10.0.0.3/32"])
}

#[test]
fn trace_shows_dropped_8080_syn_and_passed_8081_of_an_iproute2_program() {
    require_root!();
    let p = Pair::new("trc");
    serve_tcp(&p.b, &["10.0.0.3:8080", "10.0.0.3:8081"]);
    assert!(tcp_works_soon(&p.a, "10.0.0.3:8081"), "baseline");
    let before = iproute2_drop_route(&p);
    assert!(before.contains("drop_tcp_8080.o:[lwt_out]"), "{before}");
    let pcap = std::env::temp_dir().join(format!("lwtkit-trace-{}.pcap", std::process::id()));

    let mut child = p.a.lwt_spawn(&[
        "-j",
        "trace",
        "10.0.0.3/32",
        "--timeout",
        "8",
        "--pcap",
        pcap.to_str().expect("utf-8"),
    ]);
    let ready = wait_ready(&mut child);
    assert!(
        ready.contains("tracing out drop_tcp_8080.o:[lwt_out]"),
        "{ready}"
    );
    assert!(!tcp_works(&p.a, "10.0.0.3:8080"), "8080 is dropped");
    assert!(tcp_works(&p.a, "10.0.0.3:8081"), "8081 passes");
    let out = child.wait_with_output().expect("lwt trace");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let events: Vec<serde_json::Value> = stdout.lines().map(json).collect();
    for e in &events {
        for key in [
            "time", "hook", "prog", "verdict", "proto", "src", "dst", "sport", "dport", "len",
        ] {
            assert!(e.get(key).is_some(), "{key} missing: {e}");
        }
        assert_eq!(e["hook"], "out", "{e}");
        assert_eq!(e["prog"], "drop_tcp_8080.o:[lwt_out]", "{e}");
    }
    let syn_8080 = events
        .iter()
        .find(|e| e["dport"] == 8080)
        .unwrap_or_else(|| panic!("no :8080 packet traced: {stdout}"));
    assert_eq!(syn_8080["verdict"], "BPF_DROP", "{stdout}");
    assert_eq!(syn_8080["proto"], "tcp");
    assert_eq!(syn_8080["src"], "10.0.0.2");
    let to_8081: Vec<_> = events.iter().filter(|e| e["dport"] == 8081).collect();
    assert!(!to_8081.is_empty(), "no :8081 packet traced: {stdout}");
    assert!(to_8081.iter().all(|e| e["verdict"] == "BPF_OK"), "{stdout}");
    assert!(
        events
            .iter()
            .all(|e| e["dport"] != 8080 || e["verdict"] == "BPF_DROP"),
        "{stdout}"
    );

    // The pcap holds the traced packets.
    let file = std::fs::File::open(&pcap).expect("pcap written");
    let mut r = pcap_file::pcap::PcapReader::new(file).expect("a pcap");
    let mut n = 0;
    while let Some(pkt) = r.next_packet() {
        let pkt = pkt.expect("packet");
        assert_eq!(pkt.data[0] >> 4, 4, "raw IPv4");
        n += 1;
    }
    assert_eq!(n, events.len());
    let _ = std::fs::remove_file(&pcap);

    let after = p.a.ip(&["-d", "route", "show", "10.0.0.3/32"]);
    assert_eq!(before, after, "the route is untouched");
}

#[test]
fn trace_stopped_by_ctrl_c_leaves_the_route_and_count_stops_it() {
    require_root!();
    let p = Pair::new("trcc");
    let before = iproute2_drop_route(&p);
    let mut child = p.a.lwt_spawn(&["trace", "10.0.0.3/32"]);
    wait_ready(&mut child);
    // SAFETY: signalling the child we started, by its pid.
    let rc = unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert_eq!(rc, 0);
    let start = std::time::Instant::now();
    while child.try_wait().expect("wait").is_none() {
        assert!(start.elapsed() < Duration::from_secs(5), "Ctrl-C stops it");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(before, p.a.ip(&["-d", "route", "show", "10.0.0.3/32"]));

    let mut child = p.a.lwt_spawn(&[
        "-j",
        "trace",
        "10.0.0.3/32",
        "--count",
        "1",
        "--timeout",
        "10",
    ]);
    wait_ready(&mut child);
    assert!(!tcp_works(&p.a, "10.0.0.3:8080"));
    let out = child.wait_with_output().expect("lwt trace");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);

    let err = p.a.lwt_err(&["trace", "10.0.0.9/32", "--timeout", "1"]);
    assert!(err.contains("no route 10.0.0.9/32"), "{err}");
}

#[test]
fn trace_reports_only_the_route_and_counts_what_the_ring_could_not_hold() {
    require_root!();
    let p = Pair::new("trcl");
    p.b.ip(&["addr", "add", "10.0.0.4/24", "dev", "vb"]);
    serve_tcp(&p.b, &["10.0.0.3:8081", "10.0.0.4:8081"]);
    // Neighbours resolved first: nothing waits in an ARP queue later.
    assert!(tcp_works_soon(&p.a, "10.0.0.3:8081"), "baseline");
    assert!(tcp_works_soon(&p.a, "10.0.0.4:8081"), "baseline");
    let before = iproute2_drop_route(&p);

    let mut child =
        p.a.lwt_spawn(&["-j", "trace", "10.0.0.3/32", "--timeout", "6"]);
    let (_, stderr) = wait_ready_keep(&mut child);
    // A stopped tracer reads nothing: more packets than the 1 MiB ring
    // holds (a few thousand events) must be counted as lost, not vanish.
    // SAFETY: signalling the child we started, by its pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGSTOP) }, 0);
    let sent = common::send_udp_lossy(&p.a, "10.0.0.3:9", 20_000, 16);
    let other = common::send_udp_lossy(&p.a, "10.0.0.4:9", 5_000, 16);
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGCONT) }, 0);
    let out = child.wait_with_output().expect("lwt trace");
    assert!(out.status.success());
    assert!(sent > 15_000 && other > 4_000, "sent {sent} and {other}");

    let stdout = String::from_utf8_lossy(&out.stdout);
    let events: Vec<serde_json::Value> = stdout.lines().map(json).collect();
    assert!(
        events.iter().all(|e| e["dst"] == "10.0.0.3"),
        "another destination traced"
    );
    let stderr = stderr.join().expect("stderr");
    let lost: usize = stderr
        .lines()
        .find_map(|l| l.split_once(" packet(s) not reported")?.0.parse().ok())
        .unwrap_or_else(|| panic!("no lost count: {stderr}"));
    assert!(lost > 0, "{stderr}");
    // Every packet of the route is either reported or counted lost; the
    // other destination's packets never reached the ring.
    assert_eq!(events.len() + lost, sent, "{stderr}");
    assert_eq!(before, p.a.ip(&["-d", "route", "show", "10.0.0.3/32"]));
}

#[test]
fn trace_shows_the_passes_of_an_in_program_on_a_forwarding_route() {
    require_root!();
    let ch = common::Chain::new("trcf");
    // Neighbours first: a datagram waiting in an ARP queue is not traced.
    ch.c.ip(&[
        "neigh",
        "replace",
        "10.1.0.1",
        "lladdr",
        "02:00:00:00:00:01",
        "dev",
        "vc",
    ]);
    assert!(ch.a_to_c("10.1.0.2:7000").is_some(), "baseline");
    ch.b.lwt_ok(&[
        "attach",
        "10.1.0.2/32",
        "--dev",
        "vbc",
        "--hook",
        "in",
        "--builtin",
        "count",
    ]);
    let mut child =
        ch.b.lwt_spawn(&["-j", "trace", "10.1.0.2/32", "--timeout", "5"]);
    let ready = wait_ready(&mut child);
    assert!(ready.contains("tracing in lwtkit-count"), "{ready}");
    // Forwarded from A: passed B's in program. Sent by B itself: no in
    // program ran, nothing to report.
    for _ in 0..3 {
        assert!(ch.a_to_c("10.1.0.2:7001").is_some(), "forwarded");
    }
    common::send_udp(&ch.b, "10.1.0.2:7002", 3, 8);
    let out = child.wait_with_output().expect("lwt trace");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let events: Vec<serde_json::Value> = stdout.lines().map(json).collect();
    // a_to_c picks a port of its own per datagram.
    let forwarded: Vec<_> = events.iter().filter(|e| e["src"] == "10.0.0.2").collect();
    assert_eq!(forwarded.len(), 3, "{stdout}");
    for e in forwarded {
        assert_eq!(e["hook"], "in", "{e}");
        assert_eq!(e["verdict"], "BPF_OK", "{e}");
        assert_eq!(e["src"], "10.0.0.2", "{e}");
    }
    assert!(
        events.iter().all(|e| e["dport"] != 7002),
        "B's own packets: {stdout}"
    );
}

#[test]
fn trace_shows_drops_and_local_deliveries_of_an_iproute2_in_program() {
    require_root!();
    let p = Pair::new("trci");
    serve_tcp(&p.b, &["10.0.0.3:8080", "10.0.0.3:8081"]);
    assert!(tcp_works_soon(&p.a, "10.0.0.3:8081"), "baseline");
    let obj = compile_bpf("drop_tcp_8080");
    let show = ["-d", "route", "show", "table", "local", "10.0.0.3"];
    p.b.ip(&[
        "route",
        "replace",
        "local",
        "10.0.0.3",
        "dev",
        "vb",
        "table",
        "local",
        "proto",
        "kernel",
        "scope",
        "host",
        "src",
        "10.0.0.3",
        "encap",
        "bpf",
        "in",
        "obj",
        obj.to_str().expect("utf-8"),
        "section",
        "lwt_in",
    ]);
    let before = p.b.ip(&show);
    assert!(before.contains("drop_tcp_8080.o:[lwt_in]"), "{before}");

    let mut child =
        p.b.lwt_spawn(&["-j", "trace", "10.0.0.3/32", "--local", "--timeout", "6"]);
    let ready = wait_ready(&mut child);
    assert!(
        ready.contains("tracing in drop_tcp_8080.o:[lwt_in]"),
        "{ready}"
    );
    assert!(!tcp_works(&p.a, "10.0.0.3:8080"), "8080 is dropped");
    for _ in 0..3 {
        assert!(tcp_works(&p.a, "10.0.0.3:8081"), "8081 passes");
    }
    let out = child.wait_with_output().expect("lwt trace");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let events: Vec<serde_json::Value> = stdout.lines().map(json).collect();
    assert!(events.iter().all(|e| e["hook"] == "in"), "{stdout}");
    assert!(
        events
            .iter()
            .all(|e| e["prog"] == "drop_tcp_8080.o:[lwt_in]"),
        "{stdout}"
    );
    let to_8080: Vec<_> = events.iter().filter(|e| e["dport"] == 8080).collect();
    assert!(!to_8080.is_empty(), "no :8080 packet traced: {stdout}");
    assert!(
        to_8080.iter().all(|e| e["verdict"] == "BPF_DROP"),
        "{stdout}"
    );
    // Three connections: each SYN, ACK, request, FIN... passed the program.
    let to_8081: Vec<_> = events.iter().filter(|e| e["dport"] == 8081).collect();
    assert!(to_8081.len() >= 9, "passes of :8081 missing: {stdout}");
    assert!(to_8081.iter().all(|e| e["verdict"] == "BPF_OK"), "{stdout}");
    let syns = to_8081
        .iter()
        .filter(|e| e["len"] == 60 && e["src"] == "10.0.0.2")
        .count();
    assert!(syns >= 3, "{stdout}");
    assert_eq!(before, p.b.ip(&show), "the route is untouched");
}

#[test]
fn trace_shows_local_deliveries_of_an_in_program_on_an_ipv6_local_route() {
    require_root!();
    let p = Pair::new("trci6");
    serve_tcp(&p.b, &["[fd00::3]:8080", "[fd00::3]:8081"]);
    assert!(tcp_works_soon(&p.a, "[fd00::3]:8081"), "baseline");
    let obj = compile_bpf("drop_tcp_8080");
    p.b.lwt_ok(&[
        "attach",
        "fd00::3/128",
        "--local",
        "--dev",
        "vb",
        "--hook",
        "in",
        "--obj",
        obj.to_str().expect("utf-8"),
        "--section",
        "lwt_in",
    ]);
    let mut child =
        p.b.lwt_spawn(&["-j", "trace", "fd00::3/128", "--local", "--timeout", "5"]);
    wait_ready(&mut child);
    assert!(!tcp_works(&p.a, "[fd00::3]:8080"), "8080 is dropped");
    assert!(tcp_works(&p.a, "[fd00::3]:8081"), "8081 passes");
    let out = child.wait_with_output().expect("lwt trace");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let events: Vec<serde_json::Value> = stdout.lines().map(json).collect();
    assert!(events.iter().all(|e| e["hook"] == "in"), "{stdout}");
    let verdicts = |port: u16| -> Vec<&serde_json::Value> {
        events
            .iter()
            .filter(|e| e["dport"] == port)
            .map(|e| &e["verdict"])
            .collect()
    };
    let (dropped, passed) = (verdicts(8080), verdicts(8081));
    assert!(
        !dropped.is_empty() && dropped.iter().all(|v| *v == "BPF_DROP"),
        "{stdout}"
    );
    assert!(
        passed.len() >= 3 && passed.iter().all(|v| *v == "BPF_OK"),
        "{stdout}"
    );
    assert!(events.iter().all(|e| e["dst"] == "fd00::3"), "{stdout}");
}
