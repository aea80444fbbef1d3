//! NAT and steering rules with real traffic, through the gateway of issue 9:
//! the inside host C (10.1.0.2) — gateway B — the outside host A
//! (10.0.0.2). On B, the route to A carries an `snat` policy on `xmit`, a
//! route for the public address 203.0.113.7 the `dnat` one. Checksums are
//! checked on frames captured with AF_PACKET and parsed by etherparse, not
//! by the code that wrote them.
mod common;

use std::{
    collections::hash_map::DefaultHasher,
    ffi::CString,
    hash::Hasher,
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::mpsc,
    time::{Duration, Instant},
};

use common::{json, Chain, Netns};

const PUBLIC: &str = "203.0.113.7";

/// A chain A - B - C whose gateway B finishes checksums in software (tx
/// checksum offload off on both its devices), so what A and C capture is
/// the final sum B's incremental updates lead to.
fn software_checksums(tag: &str) -> Chain {
    let chain = Chain::new(tag);
    chain.b.run(|| {
        for dev in ["vb", "vbc"] {
            set_tx_csum(dev, false).expect("tx checksum off");
        }
    });
    chain
}

/// The gateway: `snat` on B's route to A (xmit), `dnat` on B's route for
/// the public address (xmit). B's devices finish checksums in software
/// (tx checksum offload off), so what A and C capture is the final sum
/// that B's incremental updates lead to, also for CHECKSUM_PARTIAL and GSO
/// packets from A and C.
fn gateway(tag: &str) -> Chain {
    let chain = software_checksums(tag);
    let b = &chain.b;
    b.lwt_ok(&["filter", "create", "out"]);
    b.lwt_ok(&[
        "filter", "rule", "add", "out", "src", "10.1.0.2", "snat", PUBLIC,
    ]);
    b.lwt_ok(&["filter", "create", "in"]);
    b.lwt_ok(&[
        "filter", "rule", "add", "in", "dst", PUBLIC, "dnat", "10.1.0.2",
    ]);
    b.lwt_ok(&[
        "filter",
        "attach",
        "out",
        "10.0.0.2/32",
        "--dev",
        "vb",
        "--hook",
        "xmit",
    ]);
    b.lwt_ok(&[
        "filter",
        "attach",
        "in",
        "203.0.113.7/32",
        "--dev",
        "vbc",
        "--hook",
        "xmit",
    ]);
    chain
}

/// `ETHTOOL_STXCSUM` on `dev` in the calling thread's namespace.
fn set_tx_csum(dev: &str, on: bool) -> std::io::Result<()> {
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    #[repr(C)]
    struct Ifreq {
        name: [u8; 16],
        data: *mut EthtoolValue,
        _union_rest: [u8; 16],
    }
    const ETHTOOL_STXCSUM: u32 = 0x17;
    let mut value = EthtoolValue {
        cmd: ETHTOOL_STXCSUM,
        data: u32::from(on),
    };
    let mut req = Ifreq {
        name: [0; 16],
        data: &mut value,
        _union_rest: [0; 16],
    };
    req.name[..dev.len()].copy_from_slice(dev.as_bytes());
    let sock = UdpSocket::bind("0.0.0.0:0")?;
    // SAFETY: a valid socket and an ifreq whose data points at a live
    // ethtool_value, as SIOCETHTOOL expects.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL as _, &mut req) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A UDP socket of the family of `to`, on any address and port.
fn udp_socket_for(to: &SocketAddr) -> UdpSocket {
    UdpSocket::bind(if to.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }).expect("udp")
}

#[test]
fn gateway_translates_udp_both_ways_with_correct_checksums() {
    require_root!();
    let g = gateway("natu");
    let cap_a = Capture::open(&g.a, "va");
    // Inside to outside: A sees the public address; C gets A's reply.
    let (seen, reply) = common::udp_exchange(&g.c, &g.a, "10.0.0.2:9100", "10.0.0.2:9100", 1);
    assert_eq!(seen.ip().to_string(), PUBLIC);
    assert_eq!(reply.to_string(), "10.0.0.2:9100");
    let frame = cap_a
        .frame_with(common::UDP_EXCHANGE_PAYLOAD, Duration::from_secs(2))
        .expect("A captured the datagram");
    let (src, _) = checksums_hold(&frame);
    assert_eq!(src, PUBLIC.parse::<Ipv4Addr>().expect("ip"));
    // Outside to the public address: C sees the real client.
    let cap_c = Capture::open(&g.c, "vc");
    let (seen, reply) = common::udp_exchange(&g.a, &g.c, "10.1.0.2:9101", "203.0.113.7:9101", 1);
    assert_eq!(seen.ip().to_string(), "10.0.0.2");
    assert_eq!(reply.to_string(), "203.0.113.7:9101");
    let frame = cap_c
        .frame_with(common::UDP_EXCHANGE_PAYLOAD, Duration::from_secs(2))
        .expect("C captured the datagram");
    checksums_hold(&frame);
    // Counted per rule as translated.
    let shown = json(&g.b.lwt_ok(&["-j", "filter", "show", "out"]));
    let rule = &shown["rules"][0];
    assert_eq!(rule["action"]["kind"], "snat", "{shown}");
    assert_eq!(rule["action_counters"]["done_as"], "translated", "{shown}");
    assert!(
        rule["action_counters"]["done"].as_u64() >= Some(2),
        "{shown}"
    );
    assert_eq!(rule["action_counters"]["failed"], 0, "{shown}");
    let text = g.b.lwt_ok(&["filter", "show", "in"]);
    assert!(text.contains("dst 203.0.113.7/32 dnat 10.1.0.2"), "{text}");
    assert!(text.contains("translated"), "{text}");
}

#[test]
fn ping_through_the_nat_both_ways() {
    require_root!();
    let g = gateway("natp");
    // C pings A: A answers the public address, C gets the reply from A.
    assert!(ping(&g.c, "10.0.0.2"), "inside to outside");
    // A pings the public address: C answers.
    assert!(ping(&g.a, PUBLIC), "outside to the public address");
}

#[test]
fn bulk_tcp_with_gso_arrives_intact_both_ways() {
    require_root!();
    let g = gateway("natt");
    let cap_a = Capture::open(&g.a, "va");
    const SIZE: usize = 100 << 20;
    let (peer, got) = transfer(&g.a, "10.0.0.2:9200", &g.c, "10.0.0.2:9200", SIZE);
    assert_eq!(peer.ip().to_string(), PUBLIC);
    assert_eq!(got, digest_of(SIZE), "100 MB inside to outside");
    // A TCP segment of that transfer, as A received it: checksums hold.
    let frame = cap_a
        .frame_with(&[0x42; 8], Duration::from_secs(2))
        .expect("a captured segment");
    checksums_hold(&frame);
    let (peer, got) = transfer(&g.c, "10.1.0.2:9201", &g.a, "203.0.113.7:9201", SIZE);
    assert_eq!(peer.ip().to_string(), "10.0.0.2");
    assert_eq!(got, digest_of(SIZE), "100 MB outside to inside");
}

#[test]
fn dnat_with_a_port_rewrites_the_destination_port() {
    require_root!();
    let chain = Chain::new("natd");
    chain
        .b
        .run(|| set_tx_csum("vbc", false).expect("tx checksum off"));
    let b = &chain.b;
    b.lwt_ok(&["filter", "create", "web"]);
    let added = b.lwt_ok(&[
        "filter", "rule", "add", "web", "dst", PUBLIC, "proto", "udp", "dport", "80", "dnat",
        "10.1.0.2", "port", "8080",
    ]);
    assert!(added.contains("dnat 10.1.0.2 port 8080"), "{added}");
    b.lwt_ok(&[
        "filter",
        "attach",
        "web",
        "203.0.113.7/32",
        "--dev",
        "vbc",
        "--hook",
        "xmit",
    ]);
    let cap_c = Capture::open(&chain.c, "vc");
    let srv = chain
        .c
        .run(|| UdpSocket::bind("10.1.0.2:8080").expect("bind 8080"));
    srv.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    chain.a.run(|| {
        UdpSocket::bind("0.0.0.0:0")
            .expect("udp")
            .send_to(b"nat-udp-check", "203.0.113.7:80")
            .expect("send")
    });
    let mut buf = [0u8; 64];
    let (n, peer) = srv.recv_from(&mut buf).expect("arrived on 8080");
    assert_eq!(&buf[..n], b"nat-udp-check");
    assert_eq!(peer.ip().to_string(), "10.0.0.2");
    let frame = cap_c
        .frame_with(common::UDP_EXCHANGE_PAYLOAD, Duration::from_secs(2))
        .expect("captured");
    checksums_hold(&frame);
}

/// A TCP port forward on B: the public `public`:80 to the inside
/// `inside`:8080 (`dnat ... port 8080` on B's route for the public
/// address), and, once `reverse` is set, the reply side (`snat ... port
/// 80` on B's route to A, [`reverse_rule`]).
fn port_forward(tag: &str, public: &str, inside: &str, public_route: &str) -> Chain {
    let chain = software_checksums(tag);
    let b = &chain.b;
    b.lwt_ok(&["filter", "create", "fwd"]);
    let added = b.lwt_ok(&[
        "filter", "rule", "add", "fwd", "dst", public, "proto", "tcp", "dport", "80", "dnat",
        inside, "port", "8080",
    ]);
    assert!(
        added.contains(&format!("dnat {inside} port 8080")),
        "{added}"
    );
    b.lwt_ok(&[
        "filter",
        "attach",
        "fwd",
        public_route,
        "--dev",
        "vbc",
        "--hook",
        "xmit",
    ]);
    chain
}

/// Adds the reply side of [`port_forward`]'s forward: on B's route to A,
/// the inside server's source (and port 8080) back to the public address
/// and port 80.
fn reverse_rule(g: &Chain, public: &str, inside: &str, client_route: &str) {
    let b = &g.b;
    b.lwt_ok(&["filter", "create", "back"]);
    let added = b.lwt_ok(&[
        "filter", "rule", "add", "back", "src", inside, "proto", "tcp", "sport", "8080", "snat",
        public, "port", "80",
    ]);
    assert!(added.contains(&format!("snat {public} port 80")), "{added}");
    b.lwt_ok(&[
        "filter",
        "attach",
        "back",
        client_route,
        "--dev",
        "vb",
        "--hook",
        "xmit",
    ]);
}

/// One TCP exchange from A to `to` with C's server on `bind`: the peer the
/// server saw, the peer A's socket is connected to, and the reply A read.
/// `Err`: A could not connect.
fn tcp_exchange(
    g: &Chain,
    bind: &str,
    to: &str,
) -> Result<(SocketAddr, SocketAddr, Vec<u8>), std::io::Error> {
    let bind: SocketAddr = bind.parse().expect("address");
    let to: SocketAddr = to.parse().expect("address");
    let listener = g.c.run(move || TcpListener::bind(bind).expect("bind"));
    listener.set_nonblocking(true).expect("nonblocking");
    let (tx, rx) = mpsc::channel();
    let server = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(4);
        while Instant::now() < deadline {
            match listener.accept() {
                Ok((mut s, peer)) => {
                    s.set_nonblocking(false).expect("blocking");
                    s.set_read_timeout(Some(Duration::from_secs(3)))
                        .expect("timeout");
                    let mut buf = [0u8; 64];
                    let n = s.read(&mut buf).expect("read");
                    assert_eq!(&buf[..n], b"port-forward-request");
                    s.write_all(b"port-forward-reply").expect("write");
                    let _ = tx.send(peer);
                    return;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    });
    let got =
        g.a.run(move || -> Result<(SocketAddr, Vec<u8>), std::io::Error> {
            let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(2))?;
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            s.write_all(b"port-forward-request")?;
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf)?;
            Ok((s.peer_addr()?, buf[..n].to_vec()))
        });
    server.join().expect("server");
    let (connected, reply) = got?;
    let seen = rx.recv().expect("the server saw the request");
    Ok((seen, connected, reply))
}

/// The TCP source port of an Ethernet frame.
fn tcp_source_port(frame: &[u8]) -> u16 {
    use etherparse::{SlicedPacket, TransportSlice};
    let p = SlicedPacket::from_ethernet(frame).expect("a parsable frame");
    let Some(TransportSlice::Tcp(t)) = &p.transport else {
        panic!("not TCP")
    };
    t.source_port()
}

#[test]
fn a_tcp_port_forward_works_both_ways_with_the_reverse_snat_port_rule() {
    require_root!();
    let g = port_forward("natf", PUBLIC, "10.1.0.2", "203.0.113.7/32");
    // Without the reply side, C answers from 10.1.0.2:8080: A's TCP
    // resets that, and the connection never opens.
    let refused = tcp_exchange(&g, "10.1.0.2:8080", "203.0.113.7:80");
    assert!(
        refused.is_err(),
        "connected without the reverse rule: {refused:?}"
    );
    reverse_rule(&g, PUBLIC, "10.1.0.2", "10.0.0.2/32");
    let cap_a = Capture::open(&g.a, "va");
    let (seen, connected, reply) = tcp_exchange(&g, "10.1.0.2:8080", "203.0.113.7:80")
        .expect("connects with the reverse rule");
    assert_eq!(
        seen.ip().to_string(),
        "10.0.0.2",
        "the server sees the real client"
    );
    assert_eq!(connected.to_string(), "203.0.113.7:80");
    assert_eq!(reply, b"port-forward-reply");
    // The reply as A received it: from port 80, its checksums holding
    // (C's segment was CHECKSUM_PARTIAL; B finished it in software).
    let frame = cap_a
        .frame_with(b"port-forward-reply", Duration::from_secs(2))
        .expect("A captured the reply");
    let (src, _) = checksums_hold(&frame);
    assert_eq!(src.to_string(), PUBLIC);
    assert_eq!(tcp_source_port(&frame), 80);
    let shown = json(&g.b.lwt_ok(&["-j", "filter", "show", "back"]));
    let rule = &shown["rules"][0];
    assert_eq!(rule["action"]["kind"], "snat", "{shown}");
    assert_eq!(rule["action"]["port"], 80, "{shown}");
    assert!(
        rule["action_counters"]["done"].as_u64() >= Some(2),
        "{shown}"
    );
    assert_eq!(rule["action_counters"]["failed"], 0, "{shown}");
    let text = g.b.lwt_ok(&["filter", "show", "back"]);
    assert!(
        text.contains("src 10.1.0.2/32 proto tcp sport 8080 snat 203.0.113.7 port 80"),
        "{text}"
    );
}

#[test]
fn an_ipv6_tcp_port_forward_works_with_the_reverse_snat_port_rule() {
    require_root!();
    let g = port_forward("natf6", "fd99::7", "fd01::2", "fd99::7/128");
    let refused = tcp_exchange(&g, "[fd01::2]:8080", "[fd99::7]:80");
    assert!(
        refused.is_err(),
        "connected without the reverse rule: {refused:?}"
    );
    reverse_rule(&g, "fd99::7", "fd01::2", "fd00::2/128");
    let cap_a = Capture::open(&g.a, "va");
    let (seen, connected, reply) =
        tcp_exchange(&g, "[fd01::2]:8080", "[fd99::7]:80").expect("connects with the reverse rule");
    assert_eq!(
        seen.ip().to_string(),
        "fd00::2",
        "the server sees the real client"
    );
    assert_eq!(connected.to_string(), "[fd99::7]:80");
    assert_eq!(reply, b"port-forward-reply");
    let frame = cap_a
        .frame_with(b"port-forward-reply", Duration::from_secs(2))
        .expect("A captured the reply");
    checksums6_hold(&frame);
    assert_eq!(tcp_source_port(&frame), 80);
}

#[test]
fn mark_and_reroute_takes_the_fwmark_tables_path() {
    require_root!();
    let chain = Chain::new("natm");
    let b = &chain.b;
    // Table 100 sends 10.0.0.0/24 into a tun device that the test reads.
    b.ip(&["tuntap", "add", "dev", "steer0", "mode", "tun"]);
    let tun = Tun::open(b, "steer0");
    b.ip(&["link", "set", "steer0", "up"]);
    b.ip(&[
        "route",
        "add",
        "10.0.0.0/24",
        "dev",
        "steer0",
        "table",
        "100",
    ]);
    b.ip(&["rule", "add", "fwmark", "7", "lookup", "100"]);
    b.lwt_ok(&["filter", "create", "steer"]);
    b.lwt_ok(&[
        "filter", "rule", "add", "steer", "proto", "udp", "dport", "7001", "mark", "7", "reroute",
    ]);
    // Forwarded traffic, on `in` of B's route for A (input lookup matched it).
    b.lwt_ok(&[
        "filter",
        "attach",
        "steer",
        "10.0.0.2/32",
        "--dev",
        "vb",
        "--hook",
        "in",
    ]);
    let srv = chain
        .a
        .run(|| UdpSocket::bind("10.0.0.2:7001").expect("bind"));
    srv.set_read_timeout(Some(Duration::from_millis(1500)))
        .expect("timeout");
    let other = chain
        .a
        .run(|| UdpSocket::bind("10.0.0.2:7002").expect("bind"));
    other
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    chain.c.run(|| {
        let s = UdpSocket::bind("0.0.0.0:0").expect("udp");
        for _ in 0..5 {
            s.send_to(b"steered", "10.0.0.2:7001").expect("send");
        }
        s.send_to(b"not steered", "10.0.0.2:7002").expect("send");
    });
    // The other flow keeps its path.
    let mut buf = [0u8; 64];
    let (n, _) = other
        .recv_from(&mut buf)
        .expect("7002 arrived on the main path");
    assert_eq!(&buf[..n], b"not steered");
    // The marked flow went into table 100's tun, not to A.
    assert!(srv.recv_from(&mut buf).is_err(), "7001 must not reach A");
    let steered = tun.packets_with(b"steered", Duration::from_secs(2));
    assert_eq!(steered, 5, "the five datagrams arrived in the tun");
    let shown = json(&b.lwt_ok(&["-j", "filter", "show", "steer"]));
    let c = &shown["rules"][0]["action_counters"];
    assert_eq!(c["done_as"], "rerouted", "{shown}");
    assert_eq!(c["done"], 5, "{shown}");
    assert_eq!(c["loops"], 0, "{shown}");
}

#[test]
fn mark_and_reroute_steers_a_flow_into_an_lwt_encap_tunnel() {
    require_root!();
    let chain = Chain::new("natv");
    // C decapsulates VXLAN into 192.168.70.2 (a kernel vxlan device).
    chain.c.ip(&[
        "link", "add", "vx0", "type", "vxlan", "id", "42", "local", "10.1.0.2", "dstport", "4789",
    ]);
    chain
        .c
        .ip(&["addr", "add", "192.168.70.2/24", "dev", "vx0"]);
    chain.c.ip(&["link", "set", "vx0", "up"]);
    let link = json(&chain.c.ip(&["-j", "link", "show", "vx0"]));
    let mac = link[0]["address"].as_str().expect("mac").to_string();
    let b = &chain.b;
    // The tunnel lives in table 100; marked packets look that table up.
    b.lwt_ok(&[
        "encap",
        "add",
        "192.168.70.2/32",
        "--dev",
        "vbc",
        "--type",
        "vxlan",
        "--remote",
        "10.1.0.2",
        "--vni",
        "42",
        "--inner-dst-mac",
        &mac,
        "--table",
        "100",
    ]);
    b.ip(&["rule", "add", "fwmark", "7", "lookup", "100"]);
    b.lwt_ok(&["filter", "create", "steer"]);
    b.lwt_ok(&[
        "filter", "rule", "add", "steer", "proto", "udp", "dport", "7200", "mark", "7", "reroute",
    ]);
    b.lwt_ok(&[
        "filter",
        "attach",
        "steer",
        "192.168.70.0/24",
        "--dev",
        "vbc",
        "--hook",
        "in",
    ]);
    let srv = chain
        .c
        .run(|| UdpSocket::bind("192.168.70.2:7200").expect("bind"));
    srv.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    chain.a.run(|| {
        let s = UdpSocket::bind("0.0.0.0:0").expect("udp");
        for _ in 0..5 {
            s.send_to(b"into the tunnel", "192.168.70.2:7200")
                .expect("send");
        }
        for _ in 0..3 {
            s.send_to(b"plain", "192.168.70.2:7201").expect("send");
        }
    });
    let mut buf = [0u8; 64];
    for _ in 0..5 {
        let (n, _) = srv.recv_from(&mut buf).expect("arrived through the tunnel");
        assert_eq!(&buf[..n], b"into the tunnel");
    }
    // The tunnel counted exactly the steered flow, not the other one.
    std::thread::sleep(Duration::from_millis(300));
    let tunnels = json(&b.lwt_ok(&["encap", "list", "-j"]));
    assert_eq!(tunnels[0]["stats"]["packets"], 5, "{tunnels}");
    let shown = json(&b.lwt_ok(&["-j", "filter", "show", "steer"]));
    assert_eq!(shown["rules"][0]["action_counters"]["done"], 5, "{shown}");
}

#[test]
fn a_reroute_back_onto_its_own_route_is_counted_as_a_loop() {
    require_root!();
    let chain = Chain::new("natl");
    let b = &chain.b;
    // fwmark 7 looks up table 100, which has no route for A: the lookup
    // falls back to main, to the same route and the same rule again.
    b.ip(&["rule", "add", "fwmark", "7", "lookup", "100"]);
    b.lwt_ok(&["filter", "create", "again"]);
    b.lwt_ok(&[
        "filter", "rule", "add", "again", "proto", "udp", "dport", "7003", "mark", "7", "reroute",
    ]);
    b.lwt_ok(&[
        "filter",
        "attach",
        "again",
        "10.0.0.2/32",
        "--dev",
        "vb",
        "--hook",
        "xmit",
    ]);
    let srv = chain
        .a
        .run(|| UdpSocket::bind("10.0.0.2:7003").expect("bind"));
    srv.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    chain.c.run(|| {
        let s = UdpSocket::bind("0.0.0.0:0").expect("udp");
        for _ in 0..4 {
            s.send_to(b"looping", "10.0.0.2:7003").expect("send");
        }
    });
    let mut buf = [0u8; 64];
    for _ in 0..4 {
        let (n, _) = srv.recv_from(&mut buf).expect("arrived once rerouted");
        assert_eq!(&buf[..n], b"looping");
    }
    let shown = json(&b.lwt_ok(&["-j", "filter", "show", "again"]));
    let c = &shown["rules"][0]["action_counters"];
    assert_eq!(c["done"], 4, "rerouted once each: {shown}");
    assert_eq!(c["loops"], 4, "then met again with the mark set: {shown}");
    let stats = b.lwt_ok(&["stats"]);
    assert!(
        stats.contains("rule 1 mark 7 reroute: rerouted 4 failed 0 loops 4"),
        "{stats}"
    );
}

#[test]
fn fragmented_datagrams_are_translated_fragment_by_fragment() {
    require_root!();
    let g = gateway("natf");
    // 3000 bytes over a 1500-byte MTU: three fragments each way. The
    // receiver reassembles and checks the UDP checksum over the whole
    // datagram, which the first fragment's translation had to keep right;
    // later fragments must carry the same translated addresses to join it.
    for (from, server, bind, to, want) in [
        (&g.c, &g.a, "10.0.0.2:9300", "10.0.0.2:9300", PUBLIC),
        (&g.a, &g.c, "10.1.0.2:9301", "203.0.113.7:9301", "10.0.0.2"),
    ] {
        let bind: SocketAddr = bind.parse().expect("address");
        let to: SocketAddr = to.parse().expect("address");
        let srv = server.run(move || UdpSocket::bind(bind).expect("bind"));
        srv.set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        from.run(move || {
            UdpSocket::bind("0.0.0.0:0")
                .expect("udp")
                .send_to(&pattern(3000), to)
                .expect("send")
        });
        let mut buf = vec![0u8; 4000];
        let (n, peer) = srv.recv_from(&mut buf).expect("the datagram reassembled");
        assert_eq!(&buf[..n], &pattern(3000)[..]);
        assert_eq!(peer.ip().to_string(), want);
    }
}

#[test]
fn redirect_into_a_tun_and_refused_into_ethernet() {
    require_root!();
    let chain = Chain::new("natr");
    let b = &chain.b;
    b.ip(&["tuntap", "add", "dev", "rd0", "mode", "tun"]);
    let tun = Tun::open(b, "rd0");
    b.ip(&["link", "set", "rd0", "up"]);
    b.lwt_ok(&["filter", "create", "rd"]);
    // An Ethernet device: refused at rule add, nothing changes.
    let before = b.lwt_ok(&["-j", "filter", "show", "rd"]);
    let err = b.lwt_err(&[
        "filter", "rule", "add", "rd", "proto", "udp", "redirect", "vbc",
    ]);
    assert!(
        err.contains("redirect vbc: the device has a link-layer header"),
        "{err}"
    );
    let err = b.lwt_err(&[
        "filter", "rule", "add", "rd", "proto", "udp", "redirect", "nosuch0",
    ]);
    assert!(err.contains("redirect nosuch0: no such device"), "{err}");
    assert_eq!(b.lwt_ok(&["-j", "filter", "show", "rd"]), before);
    b.lwt_ok(&[
        "filter", "rule", "add", "rd", "proto", "udp", "dport", "7100", "redirect", "rd0",
    ]);
    b.lwt_ok(&[
        "filter",
        "attach",
        "rd",
        "10.0.0.2/32",
        "--dev",
        "vb",
        "--hook",
        "xmit",
    ]);
    let srv = chain
        .a
        .run(|| UdpSocket::bind("10.0.0.2:7100").expect("bind"));
    srv.set_read_timeout(Some(Duration::from_millis(1500)))
        .expect("timeout");
    chain.c.run(|| {
        let s = UdpSocket::bind("0.0.0.0:0").expect("udp");
        for _ in 0..3 {
            s.send_to(b"redirected", "10.0.0.2:7100").expect("send");
        }
    });
    assert_eq!(tun.packets_with(b"redirected", Duration::from_secs(2)), 3);
    let mut buf = [0u8; 64];
    assert!(srv.recv_from(&mut buf).is_err(), "redirected away from A");
    let shown = json(&b.lwt_ok(&["-j", "filter", "show", "rd"]));
    let c = &shown["rules"][0]["action_counters"];
    assert_eq!(c["done_as"], "redirected", "{shown}");
    assert_eq!(c["done"], 3, "{shown}");
}

#[test]
fn actions_a_hook_cannot_serve_are_refused_and_nothing_changes() {
    require_root!();
    let chain = Chain::new("natx");
    let b = &chain.b;
    b.lwt_ok(&["filter", "create", "nat"]);
    b.lwt_ok(&[
        "filter", "rule", "add", "nat", "src", "10.1.0.2", "snat", PUBLIC,
    ]);
    let routes = b.routes();
    let listed = b.lwt_ok(&["-j", "list"]);
    for hook in ["in", "out"] {
        let err = b.lwt_err(&[
            "filter",
            "attach",
            "nat",
            "10.0.0.2/32",
            "--dev",
            "vb",
            "--hook",
            hook,
        ]);
        assert!(
            err.contains(&format!("policy `nat` rule 1 (`src 10.1.0.2/32 snat 203.0.113.7`) cannot run on hook {hook}: `snat` needs hook xmit")),
            "{err}"
        );
        assert_eq!(b.routes(), routes);
        assert_eq!(b.lwt_ok(&["-j", "list"]), listed);
    }
    // A reroute cannot run on `out`.
    b.lwt_ok(&["filter", "create", "m"]);
    b.lwt_ok(&["filter", "rule", "add", "m", "mark", "3", "reroute"]);
    let err = b.lwt_err(&[
        "filter",
        "attach",
        "m",
        "10.0.0.2/32",
        "--dev",
        "vb",
        "--hook",
        "out",
    ]);
    assert!(err.contains("`mark` needs hook in or xmit"), "{err}");
    assert_eq!(b.routes(), routes);
    // Adding such a rule to a policy attached there is refused the same way.
    b.lwt_ok(&["filter", "create", "plain"]);
    b.lwt_ok(&[
        "filter",
        "attach",
        "plain",
        "10.0.0.2/32",
        "--dev",
        "vb",
        "--hook",
        "in",
    ]);
    let shown = b.lwt_ok(&["-j", "filter", "show", "plain"]);
    let routes = b.routes();
    let err = b.lwt_err(&[
        "filter", "rule", "add", "plain", "dst", "10.0.0.2", "dnat", "10.1.0.2",
    ]);
    assert!(
        err.contains("the new rule (`dst 10.0.0.2/32 dnat 10.1.0.2`) cannot run on hook in"),
        "{err}"
    );
    let file = std::env::temp_dir().join(format!("lwt-nat-{}.rules", std::process::id()));
    std::fs::write(&file, "drop\nsrc 10.1.0.2 snat 203.0.113.7\n").expect("rules file");
    let err = b.lwt_err(&[
        "filter",
        "replace",
        "plain",
        "--file",
        file.to_str().expect("path"),
    ]);
    let _ = std::fs::remove_file(&file);
    assert!(err.contains("rule 2 of the file"), "{err}");
    assert_eq!(b.lwt_ok(&["-j", "filter", "show", "plain"]), shown);
    assert_eq!(b.routes(), routes);
}

/// An IPv6 gateway: `snat`/`dnat` between the inside fd01::/64 and the
/// outside, on B's route to A's fd00::/64 and on a route for the public
/// `to` (an address, or a /64 for NPTv6).
fn gateway6(tag: &str, inside: &str, public: &str, public_route: &str) -> Chain {
    let chain = software_checksums(tag);
    let b = &chain.b;
    b.lwt_ok(&["filter", "create", "out6"]);
    b.lwt_ok(&[
        "filter", "rule", "add", "out6", "src", inside, "snat", public,
    ]);
    b.lwt_ok(&["filter", "create", "in6"]);
    b.lwt_ok(&[
        "filter", "rule", "add", "in6", "dst", public, "dnat", inside,
    ]);
    b.lwt_ok(&[
        "filter",
        "attach",
        "out6",
        "fd00::2/128",
        "--dev",
        "vb",
        "--hook",
        "xmit",
    ]);
    b.lwt_ok(&[
        "filter",
        "attach",
        "in6",
        public_route,
        "--dev",
        "vbc",
        "--hook",
        "xmit",
    ]);
    chain
}

/// The one's-complement sum of an IPv6 address's 16-bit words.
fn sum16(a: std::net::Ipv6Addr) -> u16 {
    let mut s: u32 = a.segments().iter().map(|w| u32::from(*w)).sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

#[test]
fn nptv6_maps_a_64_checksum_neutrally_both_ways() {
    require_root!();
    let g = gateway6("nat6n", "fd01::/64", "fd99::/64", "fd99::/64");
    // Inside to outside: A sees an fd99::/64 address with the same
    // one's-complement sum as fd01::2 (RFC 6296: no L4 checksum changes).
    let (seen, reply) = common::udp_exchange(&g.c, &g.a, "[fd00::2]:9400", "[fd00::2]:9400", 1);
    let std::net::IpAddr::V6(public) = seen.ip() else {
        panic!("IPv6 expected")
    };
    assert_eq!(public.segments()[..4], [0xfd99, 0, 0, 0], "{public}");
    let inside: std::net::Ipv6Addr = "fd01::2".parse().expect("ip");
    assert_eq!(sum16(public), sum16(inside), "{public} is checksum-neutral");
    assert_ne!(
        public.segments()[4..],
        inside.segments()[4..],
        "the interface id took the adjustment"
    );
    assert_eq!(reply.to_string(), "[fd00::2]:9400");
    // Outside to that address reaches C, which sees the real client; and
    // TCP through both translations.
    let to = format!("[{public}]:9401");
    let to: &'static str = Box::leak(to.into_boxed_str());
    let (seen, _) = common::udp_exchange(&g.a, &g.c, "[fd01::2]:9401", to, 1);
    assert_eq!(seen.ip().to_string(), "fd00::2");
    const SIZE: usize = 20 << 20;
    let (peer, got) = transfer(&g.a, "[fd00::2]:9402", &g.c, "[fd00::2]:9402", SIZE);
    assert_eq!(peer.ip(), std::net::IpAddr::V6(public));
    assert_eq!(got, digest_of(SIZE));
}

#[test]
fn ipv6_one_address_nat_updates_the_l4_checksums() {
    require_root!();
    let g = gateway6("nat6a", "fd01::2", "fd99::7", "fd99::7/128");
    let cap_a = Capture::open(&g.a, "va");
    let (seen, reply) = common::udp_exchange(&g.c, &g.a, "[fd00::2]:9500", "[fd00::2]:9500", 1);
    assert_eq!(seen.ip().to_string(), "fd99::7");
    assert_eq!(reply.to_string(), "[fd00::2]:9500");
    let frame = cap_a
        .frame_with(common::UDP_EXCHANGE_PAYLOAD, Duration::from_secs(2))
        .expect("A captured the datagram");
    checksums6_hold(&frame);
    let (seen, _) = common::udp_exchange(&g.a, &g.c, "[fd01::2]:9501", "[fd99::7]:9501", 1);
    assert_eq!(seen.ip().to_string(), "fd00::2");
    const SIZE: usize = 20 << 20;
    let (peer, got) = transfer(&g.a, "[fd00::2]:9502", &g.c, "[fd00::2]:9502", SIZE);
    assert_eq!(peer.ip().to_string(), "fd99::7");
    assert_eq!(got, digest_of(SIZE), "TCP with GSO through the IPv6 NAT");
    let frame = cap_a
        .frame_with(&[0x42; 8], Duration::from_secs(2))
        .expect("a captured segment");
    checksums6_hold(&frame);
    let shown = json(&g.b.lwt_ok(&["-j", "filter", "show", "out6"]));
    assert_eq!(shown["rules"][0]["action_counters"]["failed"], 0, "{shown}");
}

/// The UDP or TCP checksum of an IPv6 Ethernet frame is what etherparse
/// computes from its bytes.
fn checksums6_hold(frame: &[u8]) {
    use etherparse::{NetSlice, SlicedPacket};
    let p = SlicedPacket::from_ethernet(frame).expect("a parsable frame");
    let Some(NetSlice::Ipv6(ip)) = &p.net else {
        panic!("not IPv6")
    };
    let header = ip.header().to_header();
    transport_checksum_holds(
        &p,
        |u, data| u.calc_checksum_ipv6(&header, data).expect("udp checksum"),
        |t, data| t.calc_checksum_ipv6(&header, data).expect("tcp checksum"),
    );
}

/// The UDP or TCP checksum of a sliced frame is what `udp` / `tcp`
/// compute from its header and payload.
fn transport_checksum_holds(
    p: &etherparse::SlicedPacket<'_>,
    udp: impl Fn(&etherparse::UdpHeader, &[u8]) -> u16,
    tcp: impl Fn(&etherparse::TcpHeader, &[u8]) -> u16,
) {
    use etherparse::TransportSlice;
    match &p.transport {
        Some(TransportSlice::Udp(u)) => {
            assert_eq!(
                u.checksum(),
                udp(&u.to_header(), u.payload()),
                "UDP checksum"
            )
        }
        Some(TransportSlice::Tcp(t)) => {
            assert_eq!(
                t.checksum(),
                tcp(&t.to_header(), t.payload()),
                "TCP checksum"
            )
        }
        other => panic!("not UDP or TCP: {other:?}"),
    }
}

// ------------------------------------------------------------ helpers

/// Bytes `i` of the transfer: a pattern TCP cannot mistake for another.
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| if i % 4096 < 8 { 0x42 } else { (i % 251) as u8 })
        .collect()
}

fn digest_of(size: usize) -> u64 {
    let mut h = DefaultHasher::new();
    let chunk = pattern(1 << 20);
    for _ in 0..size / chunk.len() {
        h.write(&chunk);
    }
    h.finish()
}

/// Sends `size` bytes from `client` to `to`, received by a server bound
/// to `bind` in `server`: the peer the server saw and the digest of what
/// it read.
fn transfer(
    server: &Netns,
    bind: &str,
    client: &Netns,
    to: &str,
    size: usize,
) -> (SocketAddr, u64) {
    let bind: SocketAddr = bind.parse().expect("address");
    let to: SocketAddr = to.parse().expect("address");
    let listener = server.run(move || TcpListener::bind(bind).expect("bind"));
    let reader = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let mut h = DefaultHasher::new();
        // Hash in the sender's chunks, whatever TCP delivers at once.
        let mut chunk = vec![0u8; 1 << 20];
        let mut filled = 0;
        loop {
            let n = s.read(&mut chunk[filled..]).expect("read");
            if n == 0 {
                break;
            }
            filled += n;
            if filled == chunk.len() {
                h.write(&chunk);
                filled = 0;
            }
        }
        assert_eq!(filled, 0, "a whole number of chunks");
        (peer, h.finish())
    });
    client.run(move || {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3)).expect("connect");
        let chunk = pattern(1 << 20);
        for _ in 0..size / chunk.len() {
            s.write_all(&chunk).expect("write");
        }
        s.shutdown(std::net::Shutdown::Write).expect("shutdown");
    });
    reader.join().expect("reader")
}

/// The IPv4 header checksum and the UDP or TCP checksum of an Ethernet
/// frame are what etherparse computes from its bytes; returns the addresses.
fn checksums_hold(frame: &[u8]) -> (Ipv4Addr, Ipv4Addr) {
    use etherparse::{NetSlice, SlicedPacket};
    let p = SlicedPacket::from_ethernet(frame).expect("a parsable frame");
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not IPv4")
    };
    let header = ip.header().to_header();
    assert_eq!(
        header.header_checksum,
        header.calc_header_checksum(),
        "IPv4 header checksum"
    );
    transport_checksum_holds(
        &p,
        |u, data| u.calc_checksum_ipv4(&header, data).expect("udp checksum"),
        |t, data| t.calc_checksum_ipv4(&header, data).expect("tcp checksum"),
    );
    (header.source.into(), header.destination.into())
}

/// An ICMP echo from `ns` to `to` (a raw socket): whether the reply came
/// back from `to` within 3 s.
fn ping(ns: &Netns, to: &'static str) -> bool {
    ns.run(move || {
        // SAFETY: plain socket(2).
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
        assert!(fd >= 0, "raw socket");
        // SAFETY: fd was just returned by socket(2) and is owned here.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let dst: Ipv4Addr = to.parse().expect("address");
        let id: u16 = 0x4c77;
        for seq in 1..=3u16 {
            let mut msg = vec![8u8, 0, 0, 0];
            msg.extend_from_slice(&id.to_be_bytes());
            msg.extend_from_slice(&seq.to_be_bytes());
            msg.extend_from_slice(b"lwt nat echo");
            let sum = inet_sum(&msg);
            msg[2..4].copy_from_slice(&sum.to_be_bytes());
            // SAFETY: sockaddr_in is plain data.
            let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            sa.sin_family = libc::AF_INET as u16;
            sa.sin_addr.s_addr = u32::from(dst).to_be();
            // SAFETY: buffers of the sizes passed.
            unsafe {
                libc::sendto(
                    fd.as_raw_fd(),
                    msg.as_ptr().cast(),
                    msg.len(),
                    0,
                    (&sa as *const libc::sockaddr_in).cast(),
                    size_of::<libc::sockaddr_in>() as u32,
                );
            }
            let deadline = Instant::now() + Duration::from_secs(1);
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 200_000,
            };
            // SAFETY: SO_RCVTIMEO takes a timeval.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&tv as *const libc::timeval).cast(),
                    size_of::<libc::timeval>() as u32,
                )
            };
            let mut buf = [0u8; 256];
            while Instant::now() < deadline {
                // SAFETY: a buffer of the size passed.
                let n =
                    unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n < 28 {
                    continue;
                }
                let ihl = usize::from(buf[0] & 0xf) * 4;
                let from = Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]);
                let icmp = &buf[ihl..n as usize];
                // An echo reply with our id, from the address pinged, and a
                // checksum that holds.
                if from == dst
                    && icmp[0] == 0
                    && icmp[4..6] == id.to_be_bytes()
                    && inet_sum(icmp) == 0
                {
                    return true;
                }
            }
        }
        false
    })
}

/// The Internet checksum of `b` (0 when `b` carries a correct one).
fn inet_sum(b: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in b.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An AF_PACKET socket that sees the frames arriving on one device.
struct Capture(OwnedFd);

impl Capture {
    fn open(ns: &Netns, dev: &str) -> Capture {
        let dev = CString::new(dev).expect("device name");
        ns.run(move || {
            let proto = (libc::ETH_P_ALL as u16).to_be();
            // SAFETY: plain socket(2).
            let fd = unsafe {
                libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    i32::from(proto),
                )
            };
            assert!(fd >= 0, "AF_PACKET: {}", std::io::Error::last_os_error());
            // SAFETY: fd was just returned by socket(2) and is owned here.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            // SAFETY: a NUL-terminated name.
            let ifindex = unsafe { libc::if_nametoindex(dev.as_ptr()) };
            assert!(ifindex > 0, "{dev:?} exists");
            // SAFETY: sockaddr_ll is plain data; all zeroes is valid.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = ifindex as i32;
            // SAFETY: sll is a sockaddr_ll of the size passed.
            let rc = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&sll as *const libc::sockaddr_ll).cast(),
                    size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
            set_timeout(&fd);
            Capture(fd)
        })
    }

    /// The first incoming frame that contains `needle`, within `timeout`.
    fn frame_with(&self, needle: &[u8], timeout: Duration) -> Option<Vec<u8>> {
        const PACKET_OUTGOING: u8 = 4;
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 1 << 16];
        while Instant::now() < deadline {
            // SAFETY: sockaddr_ll is plain data; all zeroes is valid.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut from_len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: buffers of the sizes passed.
            let n = unsafe {
                libc::recvfrom(
                    self.0.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&mut from as *mut libc::sockaddr_ll).cast(),
                    &mut from_len,
                )
            };
            if n <= 0 || from.sll_pkttype == PACKET_OUTGOING {
                continue;
            }
            let frame = &buf[..n as usize];
            if frame.windows(needle.len()).any(|w| w == needle) {
                return Some(frame.to_vec());
            }
        }
        None
    }
}

fn set_timeout(fd: &OwnedFd) {
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 100_000,
    };
    // SAFETY: SO_RCVTIMEO takes a timeval of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVTIMEO");
}

/// A tun device (made with `ip tuntap add`) opened by the test: what the
/// kernel sends into it can be read here.
struct Tun(OwnedFd);

impl Tun {
    fn open(ns: &Netns, dev: &str) -> Tun {
        let name = dev.to_string();
        ns.run(move || {
            let path = CString::new("/dev/net/tun").expect("path");
            // SAFETY: a NUL-terminated path.
            let fd = unsafe {
                libc::open(
                    path.as_ptr(),
                    libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
                )
            };
            assert!(fd >= 0, "/dev/net/tun: {}", std::io::Error::last_os_error());
            // SAFETY: fd was just returned by open(2) and is owned here.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            #[repr(C)]
            struct Ifreq {
                name: [u8; 16],
                flags: i16,
                _rest: [u8; 22],
            }
            const IFF_TUN: i16 = 0x0001;
            const IFF_NO_PI: i16 = 0x1000;
            const TUNSETIFF: libc::c_ulong = 0x400454ca;
            let mut req = Ifreq {
                name: [0; 16],
                flags: IFF_TUN | IFF_NO_PI,
                _rest: [0; 22],
            };
            req.name[..name.len()].copy_from_slice(name.as_bytes());
            // SAFETY: TUNSETIFF takes an ifreq.
            let rc = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut req) };
            assert_eq!(rc, 0, "TUNSETIFF: {}", std::io::Error::last_os_error());
            Tun(fd)
        })
    }

    /// How many IPv4 packets holding `needle` the device got within `wait`.
    fn packets_with(&self, needle: &[u8], wait: Duration) -> usize {
        let deadline = Instant::now() + wait;
        let mut buf = vec![0u8; 1 << 16];
        let mut n_found = 0;
        while Instant::now() < deadline {
            // SAFETY: a buffer of the size passed.
            let n = unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            let p = &buf[..n as usize];
            if p[0] >> 4 == 4 && p.windows(needle.len()).any(|w| w == needle) {
                n_found += 1;
            }
        }
        n_found
    }
}

/// Sends from a connected UDP socket in `ns` to `to` (a closed port) a few
/// times; whether the socket got ECONNREFUSED, which it does only when the
/// packet embedded in the port unreachable is the one it sent.
fn refused(ns: &Netns, to: &'static str) -> bool {
    ns.run(move || {
        let to: SocketAddr = to.parse().expect("address");
        let s = udp_socket_for(&to);
        s.connect(to).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut buf = [0u8; 16];
        (0..3).any(|_| {
            let _ = s.send(b"anyone there?");
            matches!(s.recv(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
        })
    })
}

/// The policy's first rule counted `n` or more translations and no failure.
fn translated_at_least(b: &Netns, policy: &str, n: u64) {
    let shown = json(&b.lwt_ok(&["filter", "show", policy, "-j"]));
    let counters = &shown["rules"][0]["action_counters"];
    assert_eq!(counters["done_as"], "translated", "{shown}");
    assert!(counters["done"].as_u64() >= Some(n), "{shown}");
    assert_eq!(counters["failed"], 0, "{shown}");
}

#[test]
fn a_port_unreachable_comes_back_through_the_nat_to_the_inside_socket() {
    require_root!();
    let g = gateway("naticmp");
    // A connected UDP socket learns of the ICMP error only if the packet
    // embedded in it is the one it sent: 10.1.0.2 -> 10.0.0.2:9 (A saw
    // 203.0.113.7 as the source; B must translate the embedded packet back).
    assert!(
        refused(&g.c, "10.0.0.2:9"),
        "the port unreachable reached the inside socket"
    );
    translated_at_least(&g.b, "in", 1);
}

#[test]
fn an_ipv6_port_unreachable_comes_back_through_one_address_and_nptv6_rules() {
    require_root!();
    for (tag, inside, public, route) in [
        ("nat6pa", "fd01::2", "fd99::7", "fd99::7/128"),
        ("nat6pn", "fd01::/64", "fd99::/64", "fd99::/64"),
    ] {
        let g = gateway6(tag, inside, public, route);
        // A's port unreachable embeds what A got (from the public
        // address): only its translation back finds the inside socket.
        assert!(
            refused(&g.c, "[fd00::2]:9"),
            "{public}: the error reached the inside socket"
        );
        // The error is counted as a translation of the return rule.
        translated_at_least(&g.b, "in6", 1);
    }
}

/// A UDP port forward on B: `public`:80 to `inside`:8080 (`fwd` on B's
/// route for the public address) and its reply side (`back` on B's route
/// to the client A, `client_route`): `src inside proto udp sport 8080 snat
/// public`, with `port 80` when `with_port`.
fn udp_port_forward(
    tag: &str,
    [public, inside, public_route, client_route]: [&str; 4],
    with_port: bool,
) -> Chain {
    let chain = software_checksums(tag);
    let b = &chain.b;
    b.lwt_ok(&["filter", "create", "fwd"]);
    b.lwt_ok(&[
        "filter", "rule", "add", "fwd", "dst", public, "proto", "udp", "dport", "80", "dnat",
        inside, "port", "8080",
    ]);
    b.lwt_ok(&["filter", "create", "back"]);
    let mut back = vec![
        "filter", "rule", "add", "back", "src", inside, "proto", "udp", "sport", "8080", "snat",
        public,
    ];
    if with_port {
        back.extend(["port", "80"]);
    }
    b.lwt_ok(&back);
    for (policy, route, dev) in [("fwd", public_route, "vbc"), ("back", client_route, "vb")] {
        b.lwt_ok(&[
            "filter", "attach", policy, route, "--dev", dev, "--hook", "xmit",
        ]);
    }
    chain
}

/// The ICMP or ICMPv6 error in an Ethernet frame: its source, and the
/// source and destination of the UDP datagram embedded in it; every
/// checksum of it holds (the outer IPv4 header's, the ICMP one with the
/// ICMPv6 pseudo-header, the embedded IPv4 header's and UDP's: the
/// datagram is embedded whole).
fn udp_error_of(frame: &[u8]) -> (std::net::IpAddr, SocketAddr, SocketAddr) {
    use std::net::IpAddr;
    let l3 = &frame[14..];
    let v6 = l3[0] >> 4 == 6;
    let addr = |b: &[u8], at: usize| -> IpAddr {
        if v6 {
            IpAddr::from(<[u8; 16]>::try_from(&b[at..at + 16]).expect("16 bytes"))
        } else {
            IpAddr::from(<[u8; 4]>::try_from(&b[at..at + 4]).expect("4 bytes"))
        }
    };
    let pseudo = |src: &[u8], dst: &[u8], proto: u8, body: &[u8]| -> u16 {
        let mut b = Vec::new();
        b.extend(src);
        b.extend(dst);
        if v6 {
            b.extend((body.len() as u32).to_be_bytes());
            b.extend([0, 0, 0, proto]);
        } else {
            b.extend([0, proto]);
            b.extend((body.len() as u16).to_be_bytes());
        }
        b.extend(body);
        inet_sum(&b)
    };
    let hlen = if v6 { 40 } else { usize::from(l3[0] & 0xf) * 4 };
    let total = if v6 {
        40 + usize::from(u16::from_be_bytes([l3[4], l3[5]]))
    } else {
        usize::from(u16::from_be_bytes([l3[2], l3[3]]))
    };
    let l3 = &l3[..total];
    let icmp = &l3[hlen..];
    if v6 {
        assert_eq!(l3[6], 58, "ICMPv6");
        let (s, d) = (&l3[8..24], &l3[24..40]);
        assert_eq!(pseudo(s, d, 58, icmp), 0, "ICMPv6 checksum");
    } else {
        assert_eq!(l3[9], 1, "ICMP");
        assert_eq!(inet_sum(&l3[..hlen]), 0, "IPv4 header checksum");
        assert_eq!(inet_sum(icmp), 0, "ICMP checksum");
    }
    let inner = &icmp[8..];
    let (ihlen, iaddrs) = if v6 {
        (40, 8..40)
    } else {
        (usize::from(inner[0] & 0xf) * 4, 12..20)
    };
    if !v6 {
        assert_eq!(
            inet_sum(&inner[..ihlen]),
            0,
            "embedded IPv4 header checksum"
        );
    }
    let udp = &inner[ihlen..];
    let half = (iaddrs.end - iaddrs.start) / 2;
    let (s, d) = (
        &inner[iaddrs.start..iaddrs.start + half],
        &inner[iaddrs.start + half..iaddrs.end],
    );
    assert_eq!(pseudo(s, d, 17, udp), 0, "embedded UDP checksum");
    let port = |at: usize| u16::from_be_bytes([udp[at], udp[at + 1]]);
    (
        addr(l3, if v6 { 8 } else { 12 }),
        SocketAddr::new(addr(inner, iaddrs.start), port(0)),
        SocketAddr::new(addr(inner, iaddrs.start + half), port(2)),
    )
}

/// The `done` action counter of `policy`'s rule whose text contains `rule`.
fn done_of(b: &Netns, policy: &str, rule: &str) -> u64 {
    let shown = json(&b.lwt_ok(&["filter", "show", policy, "-j"]));
    let rules = shown["rules"].as_array().expect("rules");
    let r = rules
        .iter()
        .find(|r| r.to_string().contains(rule))
        .unwrap_or_else(|| panic!("no rule `{rule}` in {shown}"));
    assert_eq!(r["action_counters"]["failed"], 0, "{shown}");
    r["action_counters"]["done"].as_u64().expect("done")
}

#[test]
fn a_port_unreachable_from_a_forwarded_closed_port_reaches_the_client_with_the_public_port() {
    require_root!();
    for (tag, net, to, public, client) in [
        (
            "natpu",
            ["203.0.113.7", "10.1.0.2", "203.0.113.7/32", "10.0.0.2/32"],
            "203.0.113.7:80",
            "203.0.113.7",
            "10.0.0.2",
        ),
        (
            "natpu6",
            ["fd99::7", "fd01::2", "fd99::7/128", "fd00::2/128"],
            "[fd99::7]:80",
            "fd99::7",
            "fd00::2",
        ),
    ] {
        // A sends to the public address's port 80; B forwards it to C's
        // port 8080, which is closed; C's port unreachable (from C, about
        // A -> C:8080) goes back through B's reply-side rule, the flow's.
        let g = udp_port_forward(tag, net, false);
        let cap = Capture::open(&g.a, "va");
        // Without `port 80` on the reply side the error is translated by
        // the flow's rule but keeps the inside port: A's socket, connected
        // to :80, never learns of it.
        assert!(
            !refused(&g.a, to),
            "{to}: refused though the error names port 8080"
        );
        let frame = cap
            .frame_with(b"anyone there?", Duration::from_secs(2))
            .expect("A captured the port unreachable");
        let (from, _, about) = udp_error_of(&frame);
        assert_eq!(
            from.to_string(),
            public,
            "the error comes from the public address"
        );
        assert_eq!(about.ip().to_string(), public);
        assert_eq!(about.port(), 8080, "no port rule: the embedded port stays");
        assert!(
            done_of(&g.b, "back", "snat") >= 1,
            "counted on the flow's rule"
        );
        // The reply side with its port: the same error now names the
        // public port 80, and A's socket gets ECONNREFUSED.
        let b = &g.b;
        b.lwt_ok(&["filter", "rule", "del", "back", "1"]);
        b.lwt_ok(&[
            "filter", "rule", "add", "back", "src", net[1], "proto", "udp", "sport", "8080",
            "snat", public, "port", "80",
        ]);
        let cap = Capture::open(&g.a, "va");
        assert!(
            refused(&g.a, to),
            "{to}: the port unreachable reached A's socket"
        );
        let frame = cap
            .frame_with(b"anyone there?", Duration::from_secs(2))
            .expect("A captured the port unreachable");
        let (from, sent, about) = udp_error_of(&frame);
        assert_eq!(from.to_string(), public);
        assert_eq!(sent.ip().to_string(), client);
        assert_eq!(
            about.to_string(),
            to,
            "the embedded destination is the public port"
        );
        assert!(
            done_of(&g.b, "back", "port 80") >= 1,
            "counted on the flow's rule"
        );
    }
}

/// A network beyond A (10.9.0.0/24, fd09::/64 on a device `far0` of
/// `mtu`), which A forwards to and B routes via A with the `snat` policy
/// (`out`, `out6`) on the route: a far hop for traceroute and PMTU
/// discovery. Returns nothing; the routes are B's and A's only.
fn far_network(g: &Chain, mtu: &str) {
    let a = &g.a;
    // A veth pair with no host behind it: A's errors come before any
    // neighbour is looked up.
    a.ip(&[
        "link", "add", "far0", "mtu", mtu, "type", "veth", "peer", "name", "far1", "mtu", mtu,
    ]);
    a.ip(&["link", "set", "far1", "up"]);
    a.ip(&["addr", "add", "10.9.0.1/24", "dev", "far0"]);
    if mtu.parse::<u32>().is_ok_and(|m| m >= 1280) {
        // IPv6 needs links of 1280 bytes or more.
        a.ip(&["addr", "add", "fd09::1/64", "dev", "far0", "nodad"]);
    }
    a.ip(&["link", "set", "far0", "up"]);
    a.sysctl(&["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]);
    let b = &g.b;
    for (policy, net, via) in [
        ("out", "10.9.0.0/24", "10.0.0.2"),
        ("out6", "fd09::/64", "fd00::2"),
    ] {
        if b.lwt(&["filter", "show", policy]).status.success() {
            b.ip(&["route", "add", net, "via", via, "dev", "vb"]);
            b.lwt_ok(&[
                "filter", "attach", policy, net, "--dev", "vb", "--hook", "xmit",
            ]);
        }
    }
}

/// An ICMP error read from a socket's error queue (`IP_RECVERR`,
/// `IPV6_RECVERR`): who sent it, its type and code, and its info (the MTU
/// of a fragmentation needed / packet too big).
#[derive(Debug, PartialEq, Eq)]
struct SockError {
    offender: std::net::IpAddr,
    kind: u8,
    code: u8,
    info: u32,
}

/// A UDP socket in the calling thread's namespace connected to `to`, with
/// errors queued (`IP_RECVERR` / `IPV6_RECVERR`) and hop limit `hops`.
fn probe_socket(to: SocketAddr, hops: i32) -> UdpSocket {
    let s = udp_socket_for(&to);
    s.connect(to).expect("connect");
    let (level, recverr, ttl) = if to.is_ipv6() {
        (
            libc::IPPROTO_IPV6,
            libc::IPV6_RECVERR,
            libc::IPV6_UNICAST_HOPS,
        )
    } else {
        (libc::IPPROTO_IP, libc::IP_RECVERR, libc::IP_TTL)
    };
    setsockopt(&s, level, recverr, 1);
    setsockopt(&s, level, ttl, hops);
    s
}

fn setsockopt(s: &UdpSocket, level: i32, name: i32, value: i32) {
    // SAFETY: a valid socket and a 4-byte option value.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    assert_eq!(
        rc,
        0,
        "setsockopt {level}/{name}: {}",
        std::io::Error::last_os_error()
    );
}

fn getsockopt(s: &UdpSocket, level: i32, name: i32) -> i32 {
    let mut value = 0i32;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: a valid socket and a 4-byte buffer.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            level,
            name,
            (&mut value as *mut i32).cast(),
            &mut len,
        )
    };
    assert_eq!(
        rc,
        0,
        "getsockopt {level}/{name}: {}",
        std::io::Error::last_os_error()
    );
    value
}

/// The next error on the socket's error queue, if one is there.
fn queued_error(s: &UdpSocket) -> Option<SockError> {
    let mut data = [0u8; 256];
    let mut control = [0u64; 64];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: a zeroed msghdr is valid; the buffers outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: as above.
    let n = unsafe {
        libc::recvmsg(
            s.as_raw_fd(),
            &mut msg,
            libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return None;
    }
    // SAFETY: walking the control messages the kernel wrote into `msg`.
    let mut c = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !c.is_null() {
        // SAFETY: `c` points at a control message header inside `control`.
        let h = unsafe { &*c };
        let v4 = h.cmsg_level == libc::SOL_IP && h.cmsg_type == libc::IP_RECVERR;
        let v6 = h.cmsg_level == libc::SOL_IPV6 && h.cmsg_type == libc::IPV6_RECVERR;
        if v4 || v6 {
            // SAFETY: an IP(V6)_RECVERR message holds a sock_extended_err
            // and then the offender's address (SO_EE_OFFENDER).
            unsafe {
                let p = libc::CMSG_DATA(c);
                let ee: libc::sock_extended_err = std::ptr::read_unaligned(p.cast());
                let at = p.add(std::mem::size_of::<libc::sock_extended_err>());
                let offender = if v6 {
                    let sa: libc::sockaddr_in6 = std::ptr::read_unaligned(at.cast());
                    std::net::IpAddr::from(sa.sin6_addr.s6_addr)
                } else {
                    let sa: libc::sockaddr_in = std::ptr::read_unaligned(at.cast());
                    std::net::IpAddr::from(Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)))
                };
                return Some(SockError {
                    offender,
                    kind: ee.ee_type,
                    code: ee.ee_code,
                    info: ee.ee_info,
                });
            }
        }
        // SAFETY: as above.
        c = unsafe { libc::CMSG_NXTHDR(&msg, c) };
    }
    None
}

/// What a traceroute probe with hop limit `hops` from `ns` to `to` gets
/// back: the first error queued on its socket within about 3 s.
fn hop(ns: &Netns, to: &'static str, hops: i32) -> Option<SockError> {
    let to: SocketAddr = to.parse().expect("address");
    ns.run(move || {
        let s = probe_socket(to, hops);
        for _ in 0..3 {
            let _ = s.send(b"traceroute probe");
            for _ in 0..10 {
                if let Some(e) = queued_error(&s) {
                    return Some(e);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        None
    })
}

#[test]
fn traceroute_through_the_nat_shows_the_gateway_and_the_far_hop() {
    require_root!();
    struct Family {
        gateway: fn() -> Chain,
        far: &'static str,
        /// The return policy, the gateway's and the far router's
        /// addresses, time exceeded's type.
        policy: &'static str,
        hops: [&'static str; 2],
        time_exceeded: u8,
    }
    let families = [
        Family {
            gateway: || gateway("natrt"),
            far: "10.9.0.2:33434",
            policy: "in",
            hops: ["10.1.0.1", "10.0.0.2"],
            time_exceeded: 11,
        },
        Family {
            gateway: || gateway6("natrt6", "fd01::2", "fd99::7", "fd99::7/128"),
            far: "[fd09::2]:33434",
            policy: "in6",
            hops: ["fd01::1", "fd00::2"],
            time_exceeded: 3,
        },
    ];
    for f in families {
        let (far, time_exceeded) = (f.far, f.time_exceeded);
        let g = (f.gateway)();
        far_network(&g, "1500");
        // Hop 1: B's own time exceeded (the probe was not translated yet).
        // Hop 2: A's, about the probe as A saw it (from the public
        // address): it reaches the socket only translated back.
        for (hops, offender) in [(1, f.hops[0]), (2, f.hops[1])] {
            let e = hop(&g.c, far, hops).unwrap_or_else(|| panic!("{far}: hop {hops} answered"));
            assert_eq!(
                (e.offender.to_string().as_str(), e.kind),
                (offender, time_exceeded),
                "{far} hop {hops}: {e:?}"
            );
        }
        translated_at_least(&g.b, f.policy, 1);
    }
}

/// The path MTU a connected UDP socket in `ns` learns for `to` after
/// sending `size` bytes with DF (IPv4) / without fragmentation (IPv6) a
/// few times: `IP_MTU` / `IPV6_MTU`, and the error the router sent.
fn learned_mtu(ns: &Netns, to: &'static str, size: usize) -> (i32, Option<SockError>) {
    learned_mtu_from(ns, None, to, size)
}

/// [`learned_mtu`] from a socket bound to `bind` (else any address).
fn learned_mtu_from(
    ns: &Netns,
    bind: Option<&'static str>,
    to: &'static str,
    size: usize,
) -> (i32, Option<SockError>) {
    let to: SocketAddr = to.parse().expect("address");
    ns.run(move || {
        let s = match bind {
            None => probe_socket(to, 64),
            Some(bind) => {
                let s = UdpSocket::bind(bind).expect("bind");
                s.connect(to).expect("connect");
                let (level, recverr) = if to.is_ipv6() {
                    (libc::IPPROTO_IPV6, libc::IPV6_RECVERR)
                } else {
                    (libc::IPPROTO_IP, libc::IP_RECVERR)
                };
                setsockopt(&s, level, recverr, 1);
                s
            }
        };
        let (level, discover, dont, mtu) = if to.is_ipv6() {
            (
                libc::IPPROTO_IPV6,
                libc::IPV6_MTU_DISCOVER,
                libc::IPV6_PMTUDISC_DO,
                libc::IPV6_MTU,
            )
        } else {
            (
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                libc::IP_PMTUDISC_DO,
                libc::IP_MTU,
            )
        };
        setsockopt(&s, level, discover, dont);
        let payload = vec![0x5au8; size];
        let mut error = None;
        for _ in 0..10 {
            let _ = s.send(&payload);
            std::thread::sleep(Duration::from_millis(200));
            if error.is_none() {
                error = queued_error(&s);
            }
            if error.is_some() {
                break;
            }
        }
        (getsockopt(&s, level, mtu), error)
    })
}

#[test]
fn pmtu_discovery_through_the_nat_learns_the_far_links_mtu() {
    require_root!();
    struct Family {
        gateway: fn() -> Chain,
        /// The far link's MTU, the far address, the datagram's size, the
        /// return policy, the error's type and code (fragmentation
        /// needed; packet too big) and who sends it.
        link: &'static str,
        far: &'static str,
        size: usize,
        policy: &'static str,
        error: (u8, u8),
        router: &'static str,
    }
    let families = [
        Family {
            gateway: || gateway("natmtu"),
            link: "1000",
            far: "10.9.0.2:33434",
            size: 1200,
            policy: "in",
            error: (3, 4),
            router: "10.0.0.2",
        },
        Family {
            gateway: || gateway6("natmtu6", "fd01::/64", "fd99::/64", "fd99::/64"),
            link: "1280",
            far: "[fd09::2]:33434",
            size: 1400,
            policy: "in6",
            error: (2, 0),
            router: "fd00::2",
        },
    ];
    for f in families {
        let g = (f.gateway)();
        far_network(&g, f.link);
        // A cannot forward the datagram onto its smaller link: its error,
        // translated back, teaches the inside socket the path MTU.
        let (mtu, error) = learned_mtu(&g.c, f.far, f.size);
        let e = error.unwrap_or_else(|| panic!("{}: the error reached the socket", f.far));
        let want: u32 = f.link.parse().expect("mtu");
        assert_eq!(
            (e.offender.to_string().as_str(), (e.kind, e.code), e.info),
            (f.router, f.error, want),
            "{e:?}"
        );
        assert_eq!(mtu, want as i32, "{}", f.far);
        translated_at_least(&g.b, f.policy, 1);
    }
}

#[test]
fn a_server_behind_a_port_forward_learns_the_path_mtu_beyond_the_client_side() {
    require_root!();
    for (tag, net, far_net, via, link, bind, far, size, router, error) in [
        (
            "natfm",
            ["203.0.113.7", "10.1.0.2", "203.0.113.7/32", "10.0.0.2/32"],
            "10.9.0.0/24",
            "10.0.0.2",
            "1000",
            "10.1.0.2:8080",
            "10.9.0.2:33434",
            1200,
            "10.0.0.2",
            (3, 4),
        ),
        (
            "natfm6",
            ["fd99::7", "fd01::2", "fd99::7/128", "fd00::2/128"],
            "fd09::/64",
            "fd00::2",
            "1280",
            "[fd01::2]:8080",
            "[fd09::2]:33434",
            1400,
            "fd00::2",
            (2, 0),
        ),
    ] {
        // The server C:8080 behind the forward answers a client beyond A,
        // whose next link is narrower: A's error goes to the public
        // address about public:80 -> client, and only the forward's rule,
        // port included, makes it C:8080's.
        let g = udp_port_forward(tag, net, true);
        far_network(&g, link);
        let b = &g.b;
        b.ip(&["route", "add", far_net, "via", via, "dev", "vb"]);
        b.lwt_ok(&[
            "filter", "attach", "back", far_net, "--dev", "vb", "--hook", "xmit",
        ]);
        let (mtu, e) = learned_mtu_from(&g.c, Some(bind), far, size);
        let e = e.unwrap_or_else(|| panic!("{far}: the error reached the server's socket"));
        let want: u32 = link.parse().expect("mtu");
        assert_eq!(
            (e.offender.to_string().as_str(), (e.kind, e.code), e.info),
            (router, error, want),
            "{e:?}"
        );
        assert_eq!(mtu, want as i32, "{far}");
        assert!(
            done_of(b, "fwd", "dnat") >= 1,
            "counted on the forward's rule"
        );
    }
}
