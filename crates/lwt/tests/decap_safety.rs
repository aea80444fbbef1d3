//! `lwt decap` on a host that also routes and filters: it takes only
//! tunnel packets for this host (and from `--remote`, with the GRE key),
//! leaves every other packet untouched to the kernel, to later tcx
//! programs and to classic tc filters, counts why, and survives its device
//! being deleted and created again. Tunnel packets are made by hand and
//! sent through raw sockets, so every case is exact.
mod common;

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    sync::mpsc,
    thread,
    time::Duration,
};

use common::{
    compile_bpf, json, send_udp,
    tunnel::{
        gre, gue0, ipv4, listen_udp, recv_within, send_raw4, send_raw6, send_udp_payload, udp4,
        udp6, RawCapture, IPPROTO_GRE, IPPROTO_IPIP, IPPROTO_IPV6,
    },
    Chain, Netns, Pair,
};

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
/// Long enough for a packet that was going to arrive.
const NOTHING_MS: u64 = 600;

/// The decapsulator's entry for `dev` in `lwt decap list -j`.
fn decap_entry(ns: &Netns, dev: &str) -> serde_json::Value {
    let list = json(&ns.lwt_ok(&["decap", "list", "-j"]));
    list.as_array()
        .and_then(|l| l.iter().find(|d| d["dev"] == dev).cloned())
        .unwrap_or_else(|| panic!("no decapsulator on {dev}: {list}"))
}

fn passed(ns: &Netns, why: &str) -> u64 {
    decap_entry(ns, "vb")["passed"][why]
        .as_u64()
        .unwrap_or_else(|| panic!("no passed.{why}"))
}

fn taken(ns: &Netns) -> u64 {
    decap_entry(ns, "vb")["packets"].as_u64().expect("packets")
}

/// Neighbours resolved before the first raw packet, so none waits for ARP.
fn warm_up(from: &Netns, to: &str) {
    send_udp(from, &format!("{to}:9"), 1, 1);
    thread::sleep(Duration::from_millis(300));
}

/// An IPIP packet from A to `outer_dst` carrying a UDP datagram to B:`port`.
fn ipip_to(from: &Netns, outer_dst: Ipv4Addr, port: u16, data: &[u8]) {
    send_raw4(from, IPPROTO_IPIP, None, outer_dst, udp4(A, B, port, data));
}

#[test]
fn tunnels_to_other_hosts_are_forwarded_not_decapsulated() {
    require_root!();
    // B routes between A and C, and decapsulates IPIP on vb.
    let ch = Chain::new("dre");
    warm_up(&ch.a, "10.1.0.2");
    ch.b.lwt_ok(&["decap", "add", "--dev", "vb", "--type", "ipip"]);
    let inner = listen_udp(&ch.b, "10.0.0.3:7301");
    let at_c = RawCapture::open(&ch.c, IPPROTO_IPIP);

    // To C's address: B must forward the tunnel packet as it is, not
    // open it and deliver the inner packet itself.
    ipip_to(&ch.a, Ipv4Addr::new(10, 1, 0, 2), 7301, b"for C");
    let got = at_c.recv_within(3000).expect("C receives the IPIP packet");
    assert_eq!(got[9], 4, "still IPIP at C");
    assert_eq!(&got[20..], udp4(A, B, 7301, b"for C"), "inner intact");
    assert_eq!(
        recv_within(&inner, NOTHING_MS),
        None,
        "B did not decapsulate"
    );

    // To an address nobody has on B's link: B forwards it (and fails to
    // resolve it), it does not decapsulate it.
    let mac = ch.b.ip(&["-j", "link", "show", "vb"]);
    let mac = json(&mac)[0]["address"].as_str().expect("mac").to_string();
    ch.a.ip(&["neigh", "add", "10.0.0.99", "lladdr", &mac, "dev", "va"]);
    ipip_to(&ch.a, Ipv4Addr::new(10, 0, 0, 99), 7301, b"for nobody");
    assert_eq!(recv_within(&inner, NOTHING_MS), None, "10.0.0.99 is not B");
    assert_eq!(passed(&ch.b, "not_local"), 2);
    assert_eq!(taken(&ch.b), 0);

    // To B itself: taken.
    ipip_to(&ch.a, B, 7301, b"for B");
    assert_eq!(recv_within(&inner, 3000).as_deref(), Some(&b"for B"[..]));
    assert_eq!(taken(&ch.b), 1);
    let text = ch.b.lwt_ok(&["decap", "list"]);
    assert!(text.contains("not-local 2"), "{text}");
}

#[test]
fn addresses_follow_the_kernel_and_decap_add() {
    require_root!();
    let ch = Chain::new("dad");
    warm_up(&ch.a, "10.1.0.2");
    ch.b.ip(&["addr", "add", "192.168.60.1/32", "dev", "lo"]);
    ch.b.lwt_ok(&["decap", "add", "--dev", "vb", "--type", "ipip"]);
    assert!(
        decap_entry(&ch.b, "vb")["accepting"]
            .to_string()
            .contains("192.168.60.1/32"),
        "B's addresses are taken"
    );
    let inner = listen_udp(&ch.b, "10.0.0.3:7302");
    let at_c = RawCapture::open(&ch.c, IPPROTO_IPIP);

    // The address moves from B to C. B's trie still lists it, but B's FIB
    // now forwards it, and the decapsulator goes by the FIB.
    ch.b.ip(&["addr", "del", "192.168.60.1/32", "dev", "lo"]);
    ch.b.ip(&["route", "add", "192.168.60.1/32", "via", "10.1.0.2"]);
    ch.c.ip(&["addr", "add", "192.168.60.1/32", "dev", "lo"]);
    ipip_to(&ch.a, Ipv4Addr::new(192, 168, 60, 1), 7302, b"moved");
    assert!(at_c.recv_within(3000).is_some(), "forwarded to C");
    assert_eq!(
        recv_within(&inner, NOTHING_MS),
        None,
        "not decapsulated on B"
    );
    assert_eq!(passed(&ch.b, "not_local"), 1);

    // An address B gains is taken once `decap add` runs again.
    ch.b.ip(&["addr", "add", "192.168.61.1/32", "dev", "lo"]);
    ipip_to(&ch.a, Ipv4Addr::new(192, 168, 61, 1), 7302, b"too early");
    assert_eq!(recv_within(&inner, NOTHING_MS), None);
    assert_eq!(passed(&ch.b, "not_local"), 2);
    ch.b.lwt_ok(&["decap", "add", "--dev", "vb", "--type", "ipip"]);
    let accepting = decap_entry(&ch.b, "vb")["accepting"].to_string();
    assert!(accepting.contains("192.168.61.1/32"), "{accepting}");
    assert!(!accepting.contains("192.168.60.1/32"), "{accepting}");
    ipip_to(&ch.a, Ipv4Addr::new(192, 168, 61, 1), 7302, b"in time");
    assert_eq!(recv_within(&inner, 3000).as_deref(), Some(&b"in time"[..]));
}

#[test]
fn an_ipv6_address_moved_away_is_forwarded_not_decapsulated() {
    require_root!();
    let ch = Chain::new("da6");
    ch.b.ip(&["addr", "add", "2001:db8:60::1/128", "dev", "lo", "nodad"]);
    ch.b.lwt_ok(&["decap", "add", "--dev", "vb", "--type", "ip6ip6"]);
    let inner = listen_udp(&ch.b, "[fd00::3]:7308");
    let at_c = RawCapture::open6(&ch.c, IPPROTO_IPV6);
    let a6: Ipv6Addr = "fd00::2".parse().expect("v6");
    let b6: Ipv6Addr = "fd00::3".parse().expect("v6");
    let moved: Ipv6Addr = "2001:db8:60::1".parse().expect("v6");
    warm_up(&ch.a, "[fd01::2]");
    let send = |dst: Ipv6Addr, data: &[u8]| {
        send_raw6(&ch.a, IPPROTO_IPV6, dst, udp6(a6, b6, 7308, data));
    };

    send(moved, b"still B's");
    assert_eq!(
        recv_within(&inner, 3000).as_deref(),
        Some(&b"still B's"[..])
    );

    ch.b.ip(&["addr", "del", "2001:db8:60::1/128", "dev", "lo"]);
    ch.b.ip(&["-6", "route", "add", "2001:db8:60::1/128", "via", "fd01::2"]);
    ch.c.ip(&["addr", "add", "2001:db8:60::1/128", "dev", "lo", "nodad"]);
    // (Up to three tries: the first may meet B's neighbour entry for C
    // being probed again after the route change.)
    let forwarded = (0..3).any(|_| {
        send(moved, b"now C's");
        at_c.recv_within(2000).is_some()
    });
    assert!(forwarded, "forwarded to C: {}", decap_entry(&ch.b, "vb"));
    assert_eq!(
        recv_within(&inner, NOTHING_MS),
        None,
        "not decapsulated on B"
    );
    assert!(passed(&ch.b, "not_local") >= 1);
    assert_eq!(taken(&ch.b), 1);
}

#[test]
fn local_and_remote_lists_narrow_what_is_taken() {
    require_root!();
    let p = Pair::new("drm");
    p.a.ip(&["addr", "add", "10.0.0.5/24", "dev", "va"]);
    p.b.ip(&["addr", "add", "192.168.50.3/32", "dev", "lo"]);
    p.a.ip(&["route", "add", "192.168.50.3/32", "via", "10.0.0.3"]);
    warm_up(&p.a, "10.0.0.3");
    p.b.lwt_ok(&[
        "decap",
        "add",
        "--dev",
        "vb",
        "--type",
        "ipip",
        "--remote",
        "10.0.0.2",
        "--local",
        "192.168.50.3",
    ]);
    let inner = listen_udp(&p.b, "10.0.0.3:7303");
    let lb = Ipv4Addr::new(192, 168, 50, 3);
    let pkt = |data: &[u8]| udp4(A, B, 7303, data);

    send_raw4(&p.a, IPPROTO_IPIP, Some(A), lb, pkt(b"listed"));
    assert_eq!(recv_within(&inner, 3000).as_deref(), Some(&b"listed"[..]));

    let other = Ipv4Addr::new(10, 0, 0, 5);
    send_raw4(&p.a, IPPROTO_IPIP, Some(other), lb, pkt(b"other source"));
    assert_eq!(
        recv_within(&inner, NOTHING_MS),
        None,
        "10.0.0.5 is not --remote"
    );
    assert_eq!(passed(&p.b, "not_remote"), 1);

    send_raw4(&p.a, IPPROTO_IPIP, Some(A), B, pkt(b"other local"));
    assert_eq!(
        recv_within(&inner, NOTHING_MS),
        None,
        "10.0.0.3 is not --local"
    );
    assert_eq!(passed(&p.b, "not_local"), 1);
    assert_eq!(taken(&p.b), 1);

    // Without the lists again: every address of B, any source.
    p.b.lwt_ok(&["decap", "add", "--dev", "vb", "--type", "ipip"]);
    send_raw4(&p.a, IPPROTO_IPIP, Some(other), B, pkt(b"open again"));
    assert_eq!(
        recv_within(&inner, 3000).as_deref(),
        Some(&b"open again"[..])
    );
}

#[test]
fn gre_takes_only_its_key() {
    require_root!();
    let p = Pair::new("dky");
    warm_up(&p.a, "10.0.0.3");
    let inner = listen_udp(&p.b, "10.0.0.3:7304");
    let send = |key: Option<u32>, data: &[u8]| {
        let payload = gre(key, 0x0800, &udp4(A, B, 7304, data));
        send_raw4(&p.a, IPPROTO_GRE, None, B, payload);
    };

    p.b.lwt_ok(&[
        "decap", "add", "--dev", "vb", "--type", "gre", "--key", "42",
    ]);
    send(Some(42), b"key 42");
    assert_eq!(recv_within(&inner, 3000).as_deref(), Some(&b"key 42"[..]));
    send(Some(43), b"key 43");
    send(None, b"no key");
    assert_eq!(recv_within(&inner, NOTHING_MS), None, "wrong or no key");
    assert_eq!(passed(&p.b, "gre_key"), 2);
    // A GRE checksum is not something lwtkit strips: passed, counted.
    let mut with_csum = gre(Some(42), 0x0800, &udp4(A, B, 7304, b"csum"));
    with_csum[0] |= 0x80;
    send_raw4(&p.a, IPPROTO_GRE, None, B, with_csum);
    assert_eq!(recv_within(&inner, NOTHING_MS), None, "GRE with checksum");
    assert_eq!(passed(&p.b, "unsupported"), 1);

    // Without --key only keyless GRE is taken, as a kernel GRE device
    // without a key does.
    p.b.lwt_ok(&["decap", "add", "--dev", "vb", "--type", "gre"]);
    send(Some(42), b"key 42 again");
    assert_eq!(recv_within(&inner, NOTHING_MS), None, "keyed GRE passed");
    send(None, b"no key again");
    assert_eq!(
        recv_within(&inner, 3000).as_deref(),
        Some(&b"no key again"[..])
    );
    assert_eq!(passed(&p.b, "gre_key"), 3);
    assert_eq!(taken(&p.b), 2);
}

/// Keeps a tcx program attached to a device in a namespace (with libbpf,
/// as another tool would) until dropped.
struct OtherTcx {
    stop: Option<mpsc::Sender<()>>,
    done: Option<thread::JoinHandle<()>>,
}

impl OtherTcx {
    fn attach(ns: &Netns, dev: &'static str, obj: std::path::PathBuf) -> Self {
        let path = format!("/run/netns/{}", ns.name);
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let done = thread::spawn(move || {
            use libbpf_rs::{AsRawLibbpf, ObjectBuilder};
            let f = std::fs::File::open(&path).expect("netns");
            // SAFETY: entering a namespace on this thread only.
            let rc =
                unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns");
            let obj = ObjectBuilder::default()
                .open_file(&obj)
                .and_then(|o| o.load())
                .expect("second tcx program loads");
            let prog = obj.progs().next().expect("one program");
            let name = std::ffi::CString::new(dev).expect("name");
            // SAFETY: a valid C string; a loaded program and its options.
            let link = unsafe {
                let index = libc::if_nametoindex(name.as_ptr());
                let opts = libbpf_rs::libbpf_sys::bpf_tcx_opts {
                    sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_tcx_opts>() as _,
                    ..Default::default()
                };
                libbpf_rs::libbpf_sys::bpf_program__attach_tcx(
                    prog.as_libbpf_object().as_ptr(),
                    index as i32,
                    &opts,
                )
            };
            assert!(
                !link.is_null() && (link as isize) > 0,
                "tcx attach: {}",
                std::io::Error::last_os_error()
            );
            ready_tx.send(()).expect("ready");
            let _ = stop_rx.recv();
            // SAFETY: the link made above, freed once (which detaches it).
            unsafe { libbpf_rs::libbpf_sys::bpf_link__destroy(link) };
        });
        ready_rx.recv().expect("second tcx program attached");
        OtherTcx {
            stop: Some(stop_tx),
            done: Some(done),
        }
    }
}

impl Drop for OtherTcx {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(d) = self.done.take() {
            let _ = d.join();
        }
    }
}

#[test]
fn packets_it_does_not_take_reach_later_tcx_programs_and_tc_filters() {
    require_root!();
    let p = Pair::new("dch");
    warm_up(&p.a, "10.0.0.3");
    p.b.lwt_ok(&["decap", "add", "--dev", "vb", "--type", "ipip"]);
    // After it: another tcx program dropping UDP 7778, then a classic
    // cls_bpf filter dropping UDP 7777.
    let _tcx = OtherTcx::attach(&p.b, "vb", compile_bpf("tcx_drop_udp_7778"));
    let classic = compile_bpf("tc_drop_udp_7777");
    for args in [
        vec!["qdisc", "add", "dev", "vb", "clsact"],
        vec![
            "filter",
            "add",
            "dev",
            "vb",
            "ingress",
            "bpf",
            "da",
            "obj",
            classic.to_str().expect("utf-8"),
            "sec",
            "classifier",
        ],
    ] {
        let out = std::process::Command::new("tc")
            .args(["-n", &p.b.name])
            .args(&args)
            .output()
            .expect("tc runs");
        assert!(
            out.status.success(),
            "tc {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let socks: Vec<_> = [7777u16, 7778, 7779]
        .iter()
        .map(|port| listen_udp(&p.b, &format!("10.0.0.3:{port}")))
        .collect();
    let plain = |port: u16| send_udp_payload(&p.a, &format!("10.0.0.3:{port}"), b"plain".to_vec());

    plain(7777);
    assert_eq!(
        recv_within(&socks[0], NOTHING_MS),
        None,
        "the classic filter dropped 7777"
    );
    plain(7778);
    assert_eq!(
        recv_within(&socks[1], NOTHING_MS),
        None,
        "the second tcx program dropped 7778"
    );
    plain(7779);
    assert_eq!(recv_within(&socks[2], 3000).as_deref(), Some(&b"plain"[..]));
    assert!(
        passed(&p.b, "not_tunnel") >= 3,
        "{}",
        decap_entry(&p.b, "vb")
    );

    // A decapsulated packet goes through the same chain again.
    ipip_to(&p.a, B, 7777, b"inner 7777");
    ipip_to(&p.a, B, 7779, b"inner 7779");
    assert_eq!(
        recv_within(&socks[2], 3000).as_deref(),
        Some(&b"inner 7779"[..])
    );
    assert_eq!(
        recv_within(&socks[0], NOTHING_MS),
        None,
        "inner 7777 dropped too"
    );
    assert_eq!(taken(&p.b), 2);
}

#[test]
fn a_recreated_device_gets_its_decapsulator_back() {
    require_root!();
    let p = Pair::new("drc");
    p.b.lwt_ok(&["decap", "add", "--dev", "vb", "--type", "ipip"]);
    p.b.ip(&["link", "del", "vb"]);
    let gone = decap_entry(&p.b, "vb");
    assert_eq!(gone["state"], "defunct", "{gone}");
    assert!(
        gone["note"].as_str().is_some_and(|n| n.contains("deleted")),
        "{gone}"
    );
    let text = p.b.lwt_ok(&["decap", "list"]);
    assert!(text.contains("defunct"), "{text}");

    p.a.ip(&[
        "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &p.b.name,
    ]);
    for (ns, dev, v4) in [(&p.a, "va", "10.0.0.2/24"), (&p.b, "vb", "10.0.0.3/24")] {
        ns.ip(&["addr", "add", v4, "dev", dev]);
        ns.ip(&["link", "set", dev, "up"]);
    }
    let again = decap_entry(&p.b, "vb");
    assert_eq!(
        again["state"], "defunct",
        "a new vb has no program yet: {again}"
    );

    p.b.lwt_ok(&["decap", "add", "--dev", "vb", "--type", "ipip"]);
    assert_eq!(decap_entry(&p.b, "vb")["state"], "attached");
    warm_up(&p.a, "10.0.0.3");
    let inner = listen_udp(&p.b, "10.0.0.3:7305");
    ipip_to(&p.a, B, 7305, b"back");
    assert_eq!(recv_within(&inner, 3000).as_deref(), Some(&b"back"[..]));
    assert_eq!(taken(&p.b), 1);
}

#[test]
fn inner_versions_are_checked_and_gue_control_passes_untouched() {
    require_root!();
    let p = Pair::new("din");
    warm_up(&p.a, "10.0.0.3");
    p.b.lwt_ok(&[
        "decap",
        "add",
        "--dev",
        "vb",
        "--type",
        "ipip,fou,gue",
        "--fou-port",
        "5555",
        "--gue-port",
        "6080",
    ]);
    // What the decapsulator passes reaches B's own sockets on those ports,
    // byte for byte.
    let fou = listen_udp(&p.b, "10.0.0.3:5555");
    let gue = listen_udp(&p.b, "10.0.0.3:6080");
    let inner = listen_udp(&p.b, "10.0.0.3:7306");
    let inner6 = listen_udp(&p.b, "[fd00::3]:7306");
    let v4 = udp4(A, B, 7306, b"v4 inside");
    let a6: Ipv6Addr = "fd00::2".parse().expect("v6");
    let b6: Ipv6Addr = "fd00::3".parse().expect("v6");
    let v6 = udp6(a6, b6, 7306, b"v6 inside");

    // FOU: the inner version must be 4 or 6.
    let junk = b"Z is not an IP version".to_vec();
    send_udp_payload(&p.a, "10.0.0.3:5555", junk.clone());
    assert_eq!(recv_within(&fou, 3000), Some(junk), "passed untouched");
    assert_eq!(passed(&p.b, "inner"), 1);
    send_udp_payload(&p.a, "10.0.0.3:5555", v6.clone());
    assert_eq!(
        recv_within(&inner6, 3000).as_deref(),
        Some(&b"v6 inside"[..])
    );

    // GUE: a control message is not data; it goes to B's socket as sent.
    let control = gue0(0x20, 0, b"control message");
    send_udp_payload(&p.a, "10.0.0.3:6080", control.clone());
    assert_eq!(
        recv_within(&gue, 3000),
        Some(control),
        "control passed untouched"
    );
    assert_eq!(passed(&p.b, "gue_control"), 1);
    // GUE saying IPv4 (4) around an IPv6 packet.
    let lying = gue0(0, 4, &v6);
    send_udp_payload(&p.a, "10.0.0.3:6080", lying.clone());
    assert_eq!(
        recv_within(&gue, 3000),
        Some(lying),
        "mismatch passed untouched"
    );
    assert_eq!(passed(&p.b, "inner"), 2);
    // GUE variant 0 with IPv4, and variant 1 (the IP header right after UDP).
    send_udp_payload(&p.a, "10.0.0.3:6080", gue0(0, 4, &v4));
    assert_eq!(
        recv_within(&inner, 3000).as_deref(),
        Some(&b"v4 inside"[..])
    );
    send_udp_payload(&p.a, "10.0.0.3:6080", v4.clone());
    assert_eq!(
        recv_within(&inner, 3000).as_deref(),
        Some(&b"v4 inside"[..]),
        "variant 1"
    );

    // IPIP (protocol 4) around an IPv6 packet is not taken.
    send_raw4(&p.a, IPPROTO_IPIP, None, B, v6);
    assert_eq!(recv_within(&inner6, NOTHING_MS), None);
    assert_eq!(passed(&p.b, "inner"), 3);
    assert_eq!(taken(&p.b), 3);
}

#[test]
fn outer_fragments_are_counted_not_lost_silently() {
    require_root!();
    let p = Pair::new("dfr");
    warm_up(&p.a, "10.0.0.3");
    p.b.lwt_ok(&["decap", "add", "--dev", "vb", "--type", "ipip"]);
    let inner = listen_udp(&p.b, "10.0.0.3:7307");
    // 3000 bytes of inner packet through a 1500-byte link: three outer
    // fragments, which A's kernel makes (DF is clear).
    ipip_to(&p.a, B, 7307, &[7u8; 2972]);
    thread::sleep(Duration::from_millis(300));
    assert_eq!(passed(&p.b, "fragments"), 3, "{}", decap_entry(&p.b, "vb"));
    assert_eq!(taken(&p.b), 0);
    assert_eq!(recv_within(&inner, NOTHING_MS), None);
    let text = p.b.lwt_ok(&["decap", "list"]);
    assert!(text.contains("fragments 3"), "{text}");
    // A tunnel packet that fits is taken as usual.
    ipip_to(&p.a, B, 7307, b"small");
    assert_eq!(recv_within(&inner, 3000).as_deref(), Some(&b"small"[..]));
}

#[test]
fn hand_made_ipv4_headers_have_valid_checksums() {
    let h = ipv4(A, B, 4, b"x");
    let sum: u32 = h[..20]
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    assert_eq!((sum & 0xffff) + (sum >> 16), 0xffff);
}
