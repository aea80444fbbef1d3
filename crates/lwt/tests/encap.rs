//! `lwt encap` end to end: VXLAN into the kernel's own vxlan device (UDP
//! and a 20 MiB TCP upload, over IPv4 and IPv6), every tunnel the kernel
//! here cannot decapsulate captured on the far side and parsed header by
//! header, TTL/ToS inheritance, guard rails that change nothing, and
//! re-pointing a tunnel.
mod common;

use std::{
    ffi::CString,
    io::{ErrorKind, Read, Write},
    net::{
        IpAddr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket,
    },
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    thread,
    time::{Duration, Instant},
};

use common::{json, Netns, Pair};
use serde_json::Value;

// ---------------------------------------------------------------- helpers

fn mac_of(ns: &Netns, dev: &str) -> String {
    let links = json(&ns.ip(&["-j", "link", "show", dev]));
    links[0]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("{dev} has a MAC: {links}"))
        .to_string()
}

fn rx_packets(ns: &Netns, dev: &str) -> u64 {
    let links = json(&ns.ip(&["-s", "-j", "link", "show", dev]));
    links[0]["stats64"]["rx"]["packets"]
        .as_u64()
        .unwrap_or_else(|| panic!("{dev} has rx counters: {links}"))
}

/// A kernel vxlan device in `ns` for `vni`, listening on `local`:4789,
/// with `addr` on it; returns its MAC.
fn kernel_vxlan(
    ns: &Netns,
    dev: &str,
    vni: u32,
    local: &str,
    addr: &str,
    extra: &[&str],
) -> String {
    let vni = vni.to_string();
    let mut args = vec![
        "link", "add", dev, "type", "vxlan", "id", &vni, "local", local, "dstport", "4789",
    ];
    args.extend_from_slice(extra);
    ns.ip(&args);
    ns.ip(&["addr", "add", addr, "dev", dev]);
    ns.ip(&["link", "set", dev, "up"]);
    mac_of(ns, dev)
}

/// `lwt encap add PREFIX --dev va --type KIND ARGS...`
fn encap_add(ns: &Netns, prefix: &str, kind: &str, args: &[&str]) -> String {
    let mut full = vec!["encap", "add", prefix, "--dev", "va", "--type", kind];
    full.extend_from_slice(args);
    ns.lwt_ok(&full)
}

/// `lwt encap add PREFIX --dev va --type vxlan --remote REMOTE --vni VNI --inner-dst-mac MAC`
fn encap_vxlan(ns: &Netns, prefix: &str, remote: &str, vni: u32, mac: &str) -> String {
    let vni = vni.to_string();
    let args = ["--remote", remote, "--vni", &vni, "--inner-dst-mac", mac];
    encap_add(ns, prefix, "vxlan", &args)
}

fn tunnel(ns: &Netns, dst: &str) -> Value {
    let list = json(&ns.lwt_ok(&["encap", "list", "-j"]));
    list.as_array()
        .and_then(|a| a.iter().find(|t| t["dst"] == dst))
        .cloned()
        .unwrap_or_else(|| panic!("{dst} not in encap list: {list}"))
}

fn xmit_prog_id(ns: &Netns, dst: &str) -> u64 {
    let list = json(&ns.lwt_ok(&["list", "-j"]));
    list.as_array()
        .and_then(|a| a.iter().find(|r| r["dst"] == dst))
        .and_then(|r| r["xmit"]["id"].as_u64())
        .unwrap_or_else(|| panic!("{dst} has an xmit program in lwt list: {list}"))
}

/// A UDP socket bound in `ns` (it stays in `ns` when used from here).
fn udp_receiver(ns: &Netns, addr: &str) -> UdpSocket {
    let addr: SocketAddr = addr.parse().expect("socket address");
    ns.run(move || UdpSocket::bind(addr).expect("bind receiver"))
}

fn datagram(i: usize) -> Vec<u8> {
    let mut d = format!("lwtkit-encap-{i:05}-").into_bytes();
    d.extend((0..180).map(|k| (i + k) as u8));
    d
}

/// Sends datagrams `range` from `ns`; returns how many sends the kernel
/// accepted.
fn send_datagrams(ns: &Netns, to: &str, range: std::ops::Range<usize>) -> usize {
    let to: SocketAddr = to.parse().expect("socket address");
    ns.run(move || {
        let s =
            UdpSocket::bind(if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }).expect("udp socket");
        range
            .filter(|&i| s.send_to(&datagram(i), to).is_ok())
            .count()
    })
}

/// Everything that arrives until nothing has for `quiet`.
fn drain(sock: &UdpSocket, quiet: Duration) -> Vec<Vec<u8>> {
    sock.set_read_timeout(Some(quiet)).expect("timeout");
    let mut buf = [0u8; 2048];
    let mut got = Vec::new();
    while let Ok(n) = sock.recv(&mut buf) {
        got.push(buf[..n].to_vec());
    }
    got
}

/// Sends datagrams 0..n from `from` and asserts `rx` gets exactly those.
/// The first goes alone: it waits for the outer neighbour to resolve, and
/// a burst could overflow the neighbour queue meanwhile.
fn exactly_n_datagrams_arrive(from: &Netns, rx: &UdpSocket, to: &str, n: usize) {
    assert_eq!(send_datagrams(from, to, 0..1), 1, "first send accepted");
    rx.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let mut buf = [0u8; 2048];
    let first = rx
        .recv(&mut buf)
        .map(|k| buf[..k].to_vec())
        .expect("the first datagram arrives through the tunnel");
    assert_eq!(first, datagram(0));
    assert_eq!(send_datagrams(from, to, 1..n), n - 1, "sends accepted");
    let rest = drain(rx, Duration::from_millis(500));
    let want: Vec<Vec<u8>> = (1..n).map(datagram).collect();
    assert_eq!(rest.len(), n - 1, "exactly {n} datagrams arrive");
    assert_eq!(rest, want, "payloads intact and in order");
}

/// FNV-1a (64 bits): the same digest however the stream is chunked.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Accepts one connection (within 10 s) and reads it to the end; returns
/// (bytes, digest).
fn spawn_sink(listener: TcpListener) -> thread::JoinHandle<Result<(usize, u64), String>> {
    thread::spawn(move || {
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut s = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(10))
                }
                Err(e) => return Err(format!("accept: {e}")),
            }
        };
        s.set_nonblocking(false).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let (mut n, mut digest, mut buf) = (0, Fnv::new(), vec![0u8; 1 << 16]);
        loop {
            match s.read(&mut buf) {
                Ok(0) => return Ok((n, digest.0)),
                Ok(k) => {
                    digest.update(&buf[..k]);
                    n += k;
                }
                Err(e) => return Err(format!("read after {n} bytes: {e}")),
            }
        }
    })
}

/// Connects from `ns` and writes `len` pseudo-random bytes; returns their
/// digest.
fn upload(ns: &Netns, to: &str, len: usize) -> Result<u64, String> {
    let to: SocketAddr = to.parse().expect("socket address");
    ns.run(move || {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3))
            .map_err(|e| format!("connect: {e}"))?;
        s.set_write_timeout(Some(Duration::from_secs(20)))
            .map_err(|e| e.to_string())?;
        let (mut rng, mut digest, mut chunk) =
            (0x9e37_79b9_7f4a_7c15u64, Fnv::new(), vec![0u8; 1 << 16]);
        let mut sent = 0;
        while sent < len {
            let n = (len - sent).min(chunk.len());
            for w in chunk[..n].chunks_mut(8) {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                w.copy_from_slice(&rng.to_le_bytes()[..w.len()]);
            }
            digest.update(&chunk[..n]);
            s.write_all(&chunk[..n])
                .map_err(|e| format!("write after {sent} bytes: {e}"))?;
            sent += n;
        }
        s.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
        Ok(digest.0)
    })
}

/// One legacy ethtool flag (ETHTOOL_GTSO, ETHTOOL_GGSO) of `dev` in the
/// namespace of the calling thread, read the way `ethtool -k` does.
fn ethtool_flag(dev: &str, cmd: u32) -> std::io::Result<bool> {
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
    let mut value = EthtoolValue { cmd, data: 0 };
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
    Ok(value.data != 0)
}

// ------------------------------------------------- capture and dissection

const PACKET_OUTGOING: u8 = 4;

/// An AF_PACKET socket that sees the frames arriving on one device.
struct Capture(OwnedFd);

impl Capture {
    /// Opens in `ns`; the socket keeps seeing that namespace's device.
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
            Capture(fd)
        })
    }

    /// The first incoming frame that contains `needle`, within `timeout`.
    fn frame_with(&self, needle: &[u8], timeout: Duration) -> Option<Vec<u8>> {
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
            let Ok(n) = usize::try_from(n) else { continue };
            let frame = &buf[..n];
            if from.sll_pkttype != PACKET_OUTGOING
                && frame.windows(needle.len()).any(|w| w == needle)
            {
                return Some(frame.to_vec());
            }
        }
        None
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn ipv4_header_checksum_ok(h: &[u8]) -> bool {
    let mut sum: u32 = (0..h.len() / 2).map(|i| u32::from(be16(h, 2 * i))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum == 0xffff
}

/// One IP header, checked for internal consistency.
#[derive(Debug)]
struct IpHeader<'a> {
    src: IpAddr,
    dst: IpAddr,
    /// Protocol / next header.
    proto: u8,
    ttl: u8,
    tos: u8,
    payload: &'a [u8],
}

/// Parses an IPv4 (20 bytes, no options) or IPv6 header that spans all of
/// `p`: lengths must match and an IPv4 checksum must be valid.
fn parse_ip<'a>(what: &str, p: &'a [u8]) -> IpHeader<'a> {
    match p[0] >> 4 {
        4 => {
            assert_eq!(p[0] & 0x0f, 5, "{what}: IPv4 header of 20 bytes");
            assert_eq!(
                usize::from(be16(p, 2)),
                p.len(),
                "{what}: IPv4 total length matches the bytes on the wire"
            );
            assert!(
                ipv4_header_checksum_ok(&p[..20]),
                "{what}: IPv4 header checksum valid: {:02x?}",
                &p[..20]
            );
            let a = |at: usize| IpAddr::from(<[u8; 4]>::try_from(&p[at..at + 4]).expect("4"));
            IpHeader {
                src: a(12),
                dst: a(16),
                proto: p[9],
                ttl: p[8],
                tos: p[1],
                payload: &p[20..],
            }
        }
        6 => {
            assert_eq!(
                usize::from(be16(p, 4)),
                p.len() - 40,
                "{what}: IPv6 payload length matches the bytes on the wire"
            );
            let a = |at: usize| IpAddr::from(<[u8; 16]>::try_from(&p[at..at + 16]).expect("16"));
            IpHeader {
                src: a(8),
                dst: a(24),
                proto: p[6],
                ttl: p[7],
                tos: (p[0] << 4) | (p[1] >> 4),
                payload: &p[40..],
            }
        }
        v => panic!("{what}: IP version {v}: {p:02x?}"),
    }
}

/// What sits between the outer IP header and the inner packet.
#[derive(Clone, Debug)]
enum Shim {
    None,
    /// UDP to this port, checksum 0; for GUE a 4-byte header follows.
    Udp {
        port: u16,
        gue: bool,
    },
    Gre,
    /// Segment routing header; segments in the order they are visited.
    Srh(Vec<Ipv6Addr>),
}

/// One capture scenario: `encap add` on A, one UDP datagram from A to
/// the inner destination, the frame parsed on B's `vb`.
#[derive(Clone, Debug)]
struct Case {
    tag: &'static str,
    kind: &'static str,
    inner_v6: bool,
    outer_v6: bool,
    args: &'static [&'static str],
    /// Outer protocol / next header.
    proto: u8,
    shim: Shim,
    /// Socket options of the sender: TTL / hop limit and ToS / traffic class.
    send_ttl: Option<u8>,
    send_tos: Option<u8>,
    outer_ttl: u8,
    outer_tos: u8,
}

impl Case {
    fn new(tag: &'static str, kind: &'static str, inner_v6: bool, outer_v6: bool) -> Self {
        Case {
            tag,
            kind,
            inner_v6,
            outer_v6,
            args: &[],
            proto: 0,
            shim: Shim::None,
            send_ttl: None,
            send_tos: None,
            outer_ttl: 64,
            outer_tos: 0,
        }
    }
}

const INNER_V4: &str = "192.168.9.3";
const INNER_V6: &str = "2001:db8:9::3";
const INNER_PORT: u16 = 7777;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("IP address")
}

/// Sends one datagram from a thread of `ns` with the given socket options.
fn send_one(ns: &Netns, to: SocketAddr, payload: Vec<u8>, ttl: Option<u8>, tos: Option<u8>) {
    ns.run(move || {
        let s =
            UdpSocket::bind(if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }).expect("udp socket");
        let set = |level: i32, name: i32, v: u8| {
            let v = i32::from(v);
            // SAFETY: an int option of the size passed.
            let rc = unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    level,
                    name,
                    (&v as *const i32).cast(),
                    size_of::<i32>() as libc::socklen_t,
                )
            };
            assert_eq!(rc, 0, "setsockopt: {}", std::io::Error::last_os_error());
        };
        let (level, ttl_opt, tos_opt) = if to.is_ipv4() {
            (libc::IPPROTO_IP, libc::IP_TTL, libc::IP_TOS)
        } else {
            (
                libc::IPPROTO_IPV6,
                libc::IPV6_UNICAST_HOPS,
                libc::IPV6_TCLASS,
            )
        };
        if let Some(t) = ttl {
            set(level, ttl_opt, t);
        }
        if let Some(t) = tos {
            set(level, tos_opt, t);
        }
        s.send_to(&payload, to).expect("send");
    })
}

/// Runs `case` and asserts every header of the captured frame.
fn check(case: Case) {
    let p = Pair::new(case.tag);
    let inner_dst = if case.inner_v6 { INNER_V6 } else { INNER_V4 };
    let prefix = format!("{inner_dst}/{}", if case.inner_v6 { 128 } else { 32 });
    encap_add(&p.a, &prefix, case.kind, case.args);

    let capture = Capture::open(&p.b, "vb");
    let mut payload = format!("lwtkit {} payload ", case.tag).into_bytes();
    payload.extend(0..=63u8);
    let to = (ip(inner_dst), INNER_PORT)
        .to_socket_addrs()
        .expect("address")
        .next()
        .expect("one address");
    send_one(&p.a, to, payload.clone(), case.send_ttl, case.send_tos);
    let frame = capture
        .frame_with(&payload, Duration::from_secs(3))
        .unwrap_or_else(|| panic!("{}: no frame with the payload arrived on vb", case.tag));
    let what = format!("{} outer", case.tag);

    let (outer_src, outer_dst, ethertype) = if case.outer_v6 {
        ("fd00::2", "fd00::3", 0x86dd)
    } else {
        ("10.0.0.2", "10.0.0.3", 0x0800)
    };
    assert_eq!(be16(&frame, 12), ethertype, "{what}: ethertype");
    let outer = parse_ip(&what, &frame[14..]);
    assert_eq!(
        frame[14] >> 4,
        if case.outer_v6 { 6 } else { 4 },
        "{what}: IP version"
    );
    assert_eq!(outer.src, ip(outer_src), "{what}: source");
    assert_eq!(outer.dst, ip(outer_dst), "{what}: destination");
    assert_eq!(outer.proto, case.proto, "{what}: protocol / next header");
    assert_eq!(outer.ttl, case.outer_ttl, "{what}: TTL / hop limit");
    assert_eq!(outer.tos, case.outer_tos, "{what}: ToS / traffic class");

    let inner_proto = if case.inner_v6 { 41 } else { 4 };
    let rest = outer.payload;
    let inner_bytes = match &case.shim {
        Shim::None => rest,
        Shim::Udp { port, gue } => {
            assert_eq!(be16(rest, 2), *port, "{what}: UDP destination port");
            assert!(be16(rest, 0) >= 49152, "{what}: UDP source port ephemeral");
            assert_eq!(usize::from(be16(rest, 4)), rest.len(), "{what}: UDP length");
            assert_eq!(be16(rest, 6), 0, "{what}: UDP checksum 0");
            if *gue {
                assert_eq!(
                    &rest[8..12],
                    &[0, inner_proto, 0, 0],
                    "{what}: GUE variant 0, no options, protocol = inner"
                );
                &rest[12..]
            } else {
                &rest[8..]
            }
        }
        Shim::Gre => {
            let ethertype = if case.inner_v6 { 0x86dd } else { 0x0800 };
            assert_eq!(be16(rest, 0), 0, "{what}: GRE flags and version 0");
            assert_eq!(be16(rest, 2), ethertype, "{what}: GRE protocol type");
            &rest[4..]
        }
        Shim::Srh(segments) => {
            let n = segments.len();
            assert_eq!(rest[0], inner_proto, "{what}: SRH next header");
            assert_eq!(usize::from(rest[1]), 2 * n, "{what}: SRH length");
            assert_eq!(rest[2], 4, "{what}: routing type 4 (SRH)");
            assert_eq!(usize::from(rest[3]), n - 1, "{what}: segments left");
            assert_eq!(usize::from(rest[4]), n - 1, "{what}: last entry");
            assert_eq!(&rest[5..8], &[0, 0, 0], "{what}: flags and tag");
            let listed: Vec<Ipv6Addr> = rest[8..8 + 16 * n]
                .chunks(16)
                .map(|c| Ipv6Addr::from(<[u8; 16]>::try_from(c).expect("16")))
                .collect();
            let reversed: Vec<Ipv6Addr> = segments.iter().rev().copied().collect();
            assert_eq!(listed, reversed, "{what}: segment list, last first");
            &rest[8 + 16 * n..]
        }
    };

    let what = format!("{} inner", case.tag);
    let inner = parse_ip(&what, inner_bytes);
    let inner_src = if case.inner_v6 { "fd00::2" } else { "10.0.0.2" };
    assert_eq!(inner.src, ip(inner_src), "{what}: source");
    assert_eq!(inner.dst, ip(inner_dst), "{what}: destination");
    assert_eq!(inner.proto, 17, "{what}: UDP");
    assert_eq!(inner.ttl, case.send_ttl.unwrap_or(64), "{what}: TTL");
    assert_eq!(inner.tos, case.send_tos.unwrap_or(0), "{what}: ToS");
    let udp = inner.payload;
    assert_eq!(be16(udp, 2), INNER_PORT, "{what}: UDP destination port");
    assert_eq!(usize::from(be16(udp, 4)), udp.len(), "{what}: UDP length");
    assert_eq!(&udp[8..], &payload[..], "{what}: payload intact");

    let t = tunnel(&p.a, &prefix);
    assert_eq!(t["stats"]["packets"], 1, "{t}");
    assert_eq!(t["stats"]["push_failed"], 0, "{t}");
}

// ------------------------------------------------------------------ tests

#[test]
fn vxlan_into_a_kernel_vxlan_device_carries_udp_and_20mb_of_tcp() {
    require_root!();
    let p = Pair::new("vx");
    let mac = kernel_vxlan(&p.b, "vx0", 42, "10.0.0.3", "192.168.100.3/24", &[]);
    encap_vxlan(&p.a, "192.168.100.3/32", "10.0.0.3", 42, &mac);
    let route = p.a.ip(&["route", "show", "192.168.100.3"]);
    assert!(
        route.contains("mtu 1450") && route.contains("advmss 1410"),
        "the route's MTU and MSS leave room for 50 bytes of VXLAN: {route}"
    );

    // Segmentation offload on the sender's device: the TCP upload below
    // travels as GSO packets that the encapsulation must accept.
    match p.a.run(|| {
        (
            ethtool_flag("va", 0x1e), // ETHTOOL_GTSO
            ethtool_flag("va", 0x23), // ETHTOOL_GGSO
        )
    }) {
        (Ok(tso), Ok(gso)) => assert!(tso && gso, "va has TSO ({tso}) and GSO ({gso}) on"),
        other => eprintln!("skipping the TSO/GSO check: SIOCETHTOOL failed: {other:?}"),
    }

    let rx = udp_receiver(&p.b, "192.168.100.3:7000");
    exactly_n_datagrams_arrive(&p.a, &rx, "192.168.100.3:7000", 100);

    let listener =
        p.b.run(|| TcpListener::bind("192.168.100.3:7001").expect("bind TCP sink"));
    let sink = spawn_sink(listener);
    let started = Instant::now();
    let sent = upload(&p.a, "192.168.100.3:7001", 20 << 20).expect("upload through VXLAN");
    let (received, digest) = sink.join().expect("sink thread").expect("sink");
    eprintln!("20 MiB through VXLAN in {:?}", started.elapsed());
    assert_eq!(received, 20 << 20, "every byte arrived");
    assert_eq!(digest, sent, "the bytes arrived intact");

    let t = tunnel(&p.a, "192.168.100.3/32");
    let stats = &t["stats"];
    assert!(stats["packets"].as_u64().is_some_and(|n| n > 100), "{t}");
    // GSO packets went through the encapsulation whole: far fewer
    // encapsulations than 1410-byte segments.
    let segments = (20u64 << 20) / 1410;
    assert!(
        stats["packets"].as_u64().is_some_and(|n| n < segments / 2),
        "the upload was encapsulated as GSO packets (< {} of them): {t}",
        segments / 2
    );
    for err in ["push_failed", "no_tunnel", "malformed"] {
        assert_eq!(stats[err], 0, "{err}: {t}");
    }

    let out = p.a.lwt_ok(&["encap", "del", "192.168.100.3/32"]);
    assert!(out.contains("192.168.100.3/32"), "{out}");
    assert_eq!(p.a.ip(&["route", "show", "192.168.100.3"]).trim(), "");
    let started = Instant::now();
    let accepted = send_datagrams(&p.a, "192.168.100.3:7000", 0..5);
    assert!(started.elapsed() < Duration::from_secs(1), "fails fast");
    let late = drain(&rx, Duration::from_millis(300));
    assert!(
        late.is_empty(),
        "nothing arrives after encap del ({accepted} of 5 sends accepted)"
    );
    assert_eq!(
        json(&p.a.lwt_ok(&["encap", "list", "-j"])),
        serde_json::json!([])
    );
}

#[test]
fn vxlan_over_ipv6_carries_ipv4_udp_and_tcp_into_a_kernel_vxlan_device() {
    require_root!();
    let p = Pair::new("vx6");
    let mac = kernel_vxlan(
        &p.b,
        "vx0",
        42,
        "fd00::3",
        "192.168.101.3/24",
        &["udp6zerocsumrx"],
    );
    encap_vxlan(&p.a, "192.168.101.3/32", "fd00::3", 42, &mac);
    let t = tunnel(&p.a, "192.168.101.3/32");
    assert_eq!(t["local"], "fd00::2", "outer source from va: {t}");
    let rx = udp_receiver(&p.b, "192.168.101.3:7000");
    exactly_n_datagrams_arrive(&p.a, &rx, "192.168.101.3:7000", 20);
    assert_eq!(tunnel(&p.a, "192.168.101.3/32")["stats"]["packets"], 20);

    // TCP too: GSO packets under an IPv6 outer header with a zero UDP checksum.
    let listener =
        p.b.run(|| TcpListener::bind("192.168.101.3:7001").expect("bind TCP sink"));
    let sink = spawn_sink(listener);
    let sent = upload(&p.a, "192.168.101.3:7001", 8 << 20).expect("upload over IPv6");
    let (received, digest) = sink.join().expect("sink thread").expect("sink");
    assert_eq!(received, 8 << 20, "every byte arrived");
    assert_eq!(digest, sent, "the bytes arrived intact");
    let t = tunnel(&p.a, "192.168.101.3/32");
    assert_eq!(t["stats"]["push_failed"], 0, "{t}");
    p.a.lwt_ok(&["encap", "del", "192.168.101.3/32"]);
}

#[test]
fn ipip_header_on_the_wire() {
    require_root!();
    check(Case {
        args: &["--remote", "10.0.0.3"],
        proto: 4,
        ..Case::new("ipip", "ipip", false, false)
    });
}

#[test]
fn ipip_with_fixed_ttl_and_tos_sets_them_on_the_outer_header() {
    require_root!();
    check(Case {
        args: &["--remote", "10.0.0.3", "--ttl", "7", "--tos", "184"],
        proto: 4,
        outer_ttl: 7,
        outer_tos: 184,
        ..Case::new("ipttl", "ipip", false, false)
    });
}

#[test]
fn sit_header_on_the_wire() {
    require_root!();
    check(Case {
        args: &["--remote", "10.0.0.3"],
        proto: 41,
        ..Case::new("sit", "sit", true, false)
    });
}

#[test]
fn ip6ip6_header_on_the_wire() {
    require_root!();
    check(Case {
        args: &["--remote", "fd00::3"],
        proto: 41,
        ..Case::new("6in6", "ip6ip6", true, true)
    });
}

#[test]
fn ip4in6_header_on_the_wire() {
    require_root!();
    check(Case {
        args: &["--remote", "fd00::3"],
        proto: 4,
        ..Case::new("4in6", "ip4in6", false, true)
    });
}

#[test]
fn gre_over_ipv4_header_on_the_wire() {
    require_root!();
    check(Case {
        args: &["--remote", "10.0.0.3"],
        proto: 47,
        shim: Shim::Gre,
        ..Case::new("gre4", "gre", false, false)
    });
}

#[test]
fn gre_over_ipv6_header_on_the_wire() {
    require_root!();
    check(Case {
        args: &["--remote", "fd00::3"],
        proto: 47,
        shim: Shim::Gre,
        ..Case::new("gre6", "gre", true, true)
    });
}

#[test]
fn fou_header_on_the_wire() {
    require_root!();
    check(Case {
        args: &["--remote", "10.0.0.3", "--port", "5555"],
        proto: 17,
        shim: Shim::Udp {
            port: 5555,
            gue: false,
        },
        ..Case::new("fou", "fou", false, false)
    });
}

#[test]
fn gue_header_names_the_inner_protocol_ipv4() {
    require_root!();
    check(Case {
        args: &["--remote", "10.0.0.3", "--port", "6080"],
        proto: 17,
        shim: Shim::Udp {
            port: 6080,
            gue: true,
        },
        ..Case::new("gue4", "gue", false, false)
    });
}

#[test]
fn gue_header_names_the_inner_protocol_ipv6() {
    require_root!();
    check(Case {
        args: &["--remote", "10.0.0.3", "--port", "6080"],
        proto: 17,
        shim: Shim::Udp {
            port: 6080,
            gue: true,
        },
        ..Case::new("gue6", "gue", true, false)
    });
}

fn segments() -> Vec<Ipv6Addr> {
    vec![
        "fd00::3".parse().expect("ip"),
        "fc00::9".parse().expect("ip"),
    ]
}

#[test]
fn srv6_header_on_the_wire_goes_to_the_first_segment() {
    require_root!();
    check(Case {
        args: &["--segments", "fd00::3,fc00::9"],
        proto: 43,
        shim: Shim::Srh(segments()),
        ..Case::new("srv6", "srv6", true, true)
    });
}

#[test]
fn srv6_carries_ipv4_inner_packets() {
    require_root!();
    check(Case {
        args: &["--segments", "fd00::3,fc00::9"],
        proto: 43,
        shim: Shim::Srh(segments()),
        ..Case::new("srv64", "srv6", false, true)
    });
}

#[test]
fn ipip_inherits_ttl_and_tos_of_the_inner_packet() {
    require_root!();
    check(Case {
        args: &["--remote", "10.0.0.3"],
        proto: 4,
        send_ttl: Some(33),
        send_tos: Some(0x10),
        outer_ttl: 33,
        outer_tos: 0x10,
        ..Case::new("inh4", "ipip", false, false)
    });
}

#[test]
fn ip6ip6_inherits_hop_limit_and_traffic_class() {
    require_root!();
    check(Case {
        args: &["--remote", "fd00::3"],
        proto: 41,
        send_ttl: Some(33),
        send_tos: Some(0x10),
        outer_ttl: 33,
        outer_tos: 0x10,
        ..Case::new("inh6", "ip6ip6", true, true)
    });
}

#[test]
fn guard_rails_refuse_clearly_and_change_nothing() {
    require_root!();
    let p = Pair::new("grd");
    encap_vxlan(
        &p.a,
        "192.168.100.3/32",
        "10.0.0.3",
        42,
        "02:00:00:00:00:42",
    );
    // Link-local routes come and go on their own (va's fe80:: address
    // appears once its DAD ends); everything else must stay put.
    let snapshot = |ns: &Netns| {
        (
            ns.routes()
                .lines()
                .filter(|l| !l.contains("fe80:"))
                .collect::<Vec<_>>()
                .join("\n"),
            ns.lwt_ok(&["encap", "list", "-j"]),
            ns.lwt_ok(&["list", "-j"]),
        )
    };
    let before = snapshot(&p.a);
    // `encap add PREFIX --dev va` and then these arguments.
    let cases = [
        ("10.0.0.0/24 --type ipip --remote 10.0.0.3", "loop"),
        ("192.168.50.0/24 --type ipip --remote 192.168.100.3", "loop"),
        (
            "192.168.5.0/24 --type vxlan --remote 10.0.0.3 --inner-dst-mac 02:00:00:00:00:01",
            "--vni",
        ),
        (
            "192.168.5.0/24 --type vxlan --remote 10.0.0.3 --vni 5",
            "--inner-dst-mac",
        ),
        // The existing tunnel stays as it is when a change is refused.
        (
            "192.168.100.3/32 --type vxlan --remote 10.0.0.3 --inner-dst-mac 02:00:00:00:00:01",
            "--vni",
        ),
        (
            "2001:db8:5::/64 --type ipip --remote 10.0.0.3",
            "ipip carries IPv4 packets, but the prefix is IPv6",
        ),
        (
            "192.168.5.0/24 --type gre --remote fd00::3 --local 10.0.0.2",
            "different families",
        ),
        (
            "192.168.5.0/24 --type nvgre --remote 10.0.0.3",
            "unknown tunnel type `nvgre`",
        ),
        (
            "192.168.5.0/24 --type vxlan --remote 10.0.0.3 --vni 5 --inner-dst-mac 02:00:00:00:00",
            "bad MAC address",
        ),
    ];
    for (args, says) in cases {
        let mut args = args.split_whitespace();
        let mut full = vec!["encap", "add"];
        full.extend(args.next());
        full.extend(["--dev", "va"]);
        full.extend(args);
        let err = p.a.lwt_err(&full);
        assert!(
            err.contains(says),
            "{}: says `{says}`: {err}",
            full.join(" ")
        );
        assert_eq!(snapshot(&p.a), before, "{} changed nothing", full.join(" "));
    }
    for prefix in ["192.168.77.0/24", "10.0.0.0/24"] {
        let err = p.a.lwt_err(&["encap", "del", prefix]);
        assert!(err.contains("no lwtkit tunnel"), "{prefix}: {err}");
        assert_eq!(snapshot(&p.a), before, "encap del {prefix} changed nothing");
    }
}

#[test]
fn changing_the_vni_sends_traffic_to_the_new_vxlan_device() {
    require_root!();
    let p = Pair::new("rep");
    // Two decapsulators in B, told apart by VNI (and MAC); both own the
    // inner destination.
    let mac42 = kernel_vxlan(&p.b, "vx42", 42, "10.0.0.3", "192.168.100.3/24", &[]);
    let mac43 = kernel_vxlan(&p.b, "vx43", 43, "10.0.0.3", "192.168.100.3/24", &[]);
    let rx = udp_receiver(&p.b, "192.168.100.3:7000");
    let to = "192.168.100.3:7000";
    let add = |vni, mac: &str| encap_vxlan(&p.a, "192.168.100.3/32", "10.0.0.3", vni, mac);

    add(42, &mac42);
    let id_before = xmit_prog_id(&p.a, "192.168.100.3/32");
    exactly_n_datagrams_arrive(&p.a, &rx, to, 10);
    let (r42, r43) = (rx_packets(&p.b, "vx42"), rx_packets(&p.b, "vx43"));
    assert!(r42 >= 10, "vx42 decapsulated them: {r42}");

    add(43, &mac43);
    let id_after = xmit_prog_id(&p.a, "192.168.100.3/32");
    eprintln!(
        "program id before the change {id_before}, after {id_after} ({})",
        if id_before == id_after {
            "map update only"
        } else {
            "a new program was attached"
        }
    );
    if id_before != id_after {
        // Then the replaced program must not linger (the route held it).
        let deadline = Instant::now() + Duration::from_secs(3);
        while libbpf_rs::Program::fd_from_id(id_before as u32).is_ok() {
            assert!(
                Instant::now() < deadline,
                "the replaced program {id_before} is still loaded"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
    exactly_n_datagrams_arrive(&p.a, &rx, to, 10);
    assert_eq!(rx_packets(&p.b, "vx42"), r42, "nothing more through VNI 42");
    assert!(
        rx_packets(&p.b, "vx43") >= r43 + 10,
        "VNI 43 carries the traffic now"
    );
    let t = tunnel(&p.a, "192.168.100.3/32");
    assert_eq!(t["vni"], 43, "{t}");
    assert_eq!(
        t["stats"]["packets"], 20,
        "the tunnel keeps its counters across the change: {t}"
    );
    let routes = p.a.ip(&["route", "show", "192.168.100.3"]);
    assert_eq!(routes.lines().count(), 1, "still one route: {routes}");
}
