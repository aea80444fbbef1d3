//! Bulk TCP through every tunnel type with GSO on: 100 MiB uploads that
//! must arrive intact with no push refused, and frames captured on the far
//! side dissected by an independent packet library (etherparse), checksums
//! included: the outer IPv4 header, the outer UDP checksum over IPv6 (which
//! default Linux receivers require), DF, and the IPv6 flow label.
mod common;

use std::{
    ffi::CString,
    io::{ErrorKind, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use common::{json, Netns, Pair};
use etherparse::{Ipv4Header, Ipv6Header, TcpHeader, UdpHeader};

const BULK: usize = 100 << 20;
const INNER_V4: &str = "192.168.50.3";
const INNER_V6: &str = "2001:db8:50::3";

/// Where the far side takes the headers off.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Receiver {
    /// A kernel vxlan device (no udp6zerocsumrx: it needs real checksums).
    KernelVxlan,
    /// `lwt decap` on `vb`.
    Decap,
    /// The kernel's seg6local End.DT6 (IPv6 inner) or End.DX4 (IPv4 inner).
    Seg6local,
}

struct Case {
    tag: &'static str,
    kind: &'static str,
    inner_v6: bool,
    outer_v6: bool,
    receiver: Receiver,
}

fn case(tag: &'static str, kind: &'static str, inner_v6: bool, outer_v6: bool) -> Case {
    let receiver = match kind {
        "vxlan" => Receiver::KernelVxlan,
        "srv6" => Receiver::Seg6local,
        _ => Receiver::Decap,
    };
    Case {
        tag,
        kind,
        inner_v6,
        outer_v6,
        receiver,
    }
}

/// Sets up the far side in B; returns the inner destination address.
fn far_side(p: &Pair, c: &Case) -> &'static str {
    let inner = if c.inner_v6 { INNER_V6 } else { INNER_V4 };
    match c.receiver {
        Receiver::KernelVxlan => {
            let local = if c.outer_v6 { "fd00::3" } else { "10.0.0.3" };
            p.b.ip(&[
                "link",
                "add",
                "vx0",
                "address",
                "02:00:00:00:b0:01",
                "type",
                "vxlan",
                "id",
                "42",
                "dstport",
                "4789",
                "local",
                local,
                "dev",
                "vb",
            ]);
            p.b.ip(&["addr", "add", "192.168.50.3/24", "dev", "vx0"]);
            p.b.ip(&["addr", "add", "2001:db8:50::3/64", "dev", "vx0", "nodad"]);
            p.b.ip(&["link", "set", "vx0", "up"]);
        }
        Receiver::Decap | Receiver::Seg6local => {
            p.b.ip(&["addr", "add", "192.168.50.3/32", "dev", "lo"]);
            p.b.ip(&["addr", "add", "2001:db8:50::3/128", "dev", "lo", "nodad"]);
        }
    }
    match c.receiver {
        Receiver::Decap => {
            p.b.lwt_ok(&[
                "decap",
                "add",
                "--dev",
                "vb",
                "--type",
                c.kind,
                "--fou-port",
                "5555",
                "--gue-port",
                "6080",
            ]);
        }
        Receiver::Seg6local => {
            p.b.sysctl(&[
                "net.ipv6.conf.all.seg6_enabled=1",
                "net.ipv6.conf.vb.seg6_enabled=1",
            ]);
            let action: &[&str] = if c.inner_v6 {
                &["action", "End.DT6", "table", "local"]
            } else {
                &["action", "End.DX4", "nh4", INNER_V4]
            };
            let mut args = vec!["-6", "route", "add", "fc00::b", "encap", "seg6local"];
            args.extend_from_slice(action);
            args.extend_from_slice(&["dev", "vb"]);
            p.b.ip(&args);
        }
        Receiver::KernelVxlan => {}
    }
    inner
}

fn encap_args(c: &Case, prefix: &str) -> Vec<String> {
    let remote = if c.outer_v6 { "fd00::3" } else { "10.0.0.3" };
    let mut a: Vec<String> = ["encap", "add", prefix, "--dev", "va", "--type", c.kind]
        .iter()
        .map(|s| s.to_string())
        .collect();
    match c.kind {
        "srv6" => a.extend(["--segments".into(), "fc00::b".into()]),
        _ => a.extend(["--remote".into(), remote.into()]),
    }
    match c.kind {
        "vxlan" => a.extend(
            ["--vni", "42", "--inner-dst-mac", "02:00:00:00:b0:01"]
                .iter()
                .map(|s| s.to_string()),
        ),
        "fou" => a.extend(["--port".into(), "5555".into()]),
        "gue" => a.extend(["--port".into(), "6080".into()]),
        _ => {}
    }
    a
}

/// FNV-1a: the same digest however the stream is chunked.
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}
const FNV0: u64 = 0xcbf2_9ce4_8422_2325;

/// Uploads `len` pseudo-random bytes from A to `to` in B; returns
/// (bytes received, digest matched).
fn upload(p: &Pair, to: SocketAddr, len: usize) -> Result<(usize, bool), String> {
    let listener =
        p.b.run(move || TcpListener::bind(to).expect("bind the sink in B"));
    let sink = thread::spawn(move || -> Result<(usize, u64), String> {
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
        let (mut n, mut d, mut buf) = (0, FNV0, vec![0u8; 1 << 16]);
        loop {
            match s.read(&mut buf) {
                Ok(0) => return Ok((n, d)),
                Ok(k) => {
                    d = fnv(d, &buf[..k]);
                    n += k;
                }
                Err(e) => return Err(format!("read stalled after {n} bytes: {e}")),
            }
        }
    });
    let sent = p.a.run(move || -> Result<u64, String> {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3))
            .map_err(|e| format!("connect: {e}"))?;
        s.set_write_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let (mut rng, mut d, mut chunk) = (0x9e37_79b9_7f4a_7c15u64, FNV0, vec![0u8; 1 << 16]);
        let mut sent = 0;
        while sent < len {
            let n = (len - sent).min(chunk.len());
            for w in chunk[..n].chunks_mut(8) {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                w.copy_from_slice(&rng.to_le_bytes()[..w.len()]);
            }
            d = fnv(d, &chunk[..n]);
            s.write_all(&chunk[..n])
                .map_err(|e| format!("write stalled after {sent} bytes: {e}"))?;
            sent += n;
        }
        s.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
        Ok(d)
    })?;
    let (n, got) = sink.join().map_err(|_| "sink thread panicked")??;
    Ok((n, got == sent))
}

/// Frames arriving on one device of a namespace, gathered by a thread.
struct Capture {
    frames: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Capture {
    fn start(ns: &Netns, dev: &str, keep: usize) -> Capture {
        let dev = CString::new(dev).expect("device name");
        let fd = ns.run(move || {
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
            // SAFETY: a fresh fd owned here.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            // SAFETY: a NUL-terminated name.
            let ifindex = unsafe { libc::if_nametoindex(dev.as_ptr()) };
            // SAFETY: sockaddr_ll is plain data.
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
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&tv as *const libc::timeval).cast(),
                    size_of::<libc::timeval>() as libc::socklen_t,
                )
            };
            fd
        });
        let frames = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (f, s) = (frames.clone(), stop.clone());
        let thread = thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            while !s.load(Ordering::Relaxed) {
                // SAFETY: sockaddr_ll is plain data.
                let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                let mut from_len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                // SAFETY: buffers of the sizes passed.
                let n = unsafe {
                    libc::recvfrom(
                        fd.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        0,
                        (&mut from as *mut libc::sockaddr_ll).cast(),
                        &mut from_len,
                    )
                };
                let Ok(n) = usize::try_from(n) else { continue };
                // Incoming frames only (PACKET_OUTGOING is 4).
                let mut v = f.lock().expect("frames");
                if from.sll_pkttype != 4 && v.len() < keep {
                    v.push(buf[..n].to_vec());
                }
            }
        });
        Capture {
            frames,
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Vec<Vec<u8>> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        std::mem::take(&mut *self.frames.lock().expect("frames"))
    }
}

/// What one captured tunnel frame showed.
#[derive(Debug, Default)]
struct Seen {
    tcp_payload: usize,
    outer_len: usize,
}

/// Dissects one frame of the tunnel with etherparse; `None` if it is not
/// a tunnel frame carrying TCP. Panics on any inconsistency.
fn dissect(c: &Case, frame: &[u8]) -> Option<Seen> {
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let l3 = &frame[14..];
    let what = c.tag;
    // Outer header.
    let (next, rest, outer_v6hdr, outer_len) = match ethertype {
        0x0800 if !c.outer_v6 => {
            let (h, rest) = Ipv4Header::from_slice(l3).ok()?;
            if ![4u8, 41, 47, 17].contains(&h.protocol.0) {
                return None;
            }
            // The header must sum to 0xffff (RFC 1071). The program
            // writes 0xffff where the computed checksum is 0: the same sum,
            // and 0 would make bpf_lwt_push_encap compute it again over the
            // header as pushed (before lwtkit's protocol fix-up).
            let computed = h.calc_header_checksum();
            assert!(
                h.header_checksum == computed || (computed == 0 && h.header_checksum == 0xffff),
                "{what}: outer IPv4 header checksum {:#06x}, computed {computed:#06x}",
                h.header_checksum
            );
            // DF: the kernel's default for the type (unset for vxlan).
            assert_eq!(
                h.dont_fragment,
                c.kind != "vxlan",
                "{what}: outer DF as the kernel's {} tunnel sets it",
                c.kind
            );
            let len = usize::from(h.total_len);
            (h.protocol.0, &rest[..len - h.header_len()], None, len)
        }
        0x86dd if c.outer_v6 => {
            let (h, rest) = Ipv6Header::from_slice(l3).ok()?;
            if ![4u8, 41, 47, 17, 43].contains(&h.next_header.0) {
                return None;
            }
            assert_ne!(
                h.flow_label.value(),
                0,
                "{what}: outer flow label from the flow hash"
            );
            let len = usize::from(h.payload_length);
            (h.next_header.0, &rest[..len], Some(h), 40 + len)
        }
        _ => return None,
    };
    // The shim between the outer header and the inner packet.
    let inner: Vec<u8> = match next {
        17 => {
            let (u, payload) = UdpHeader::from_slice(rest).ok()?;
            assert_eq!(usize::from(u.length), rest.len(), "{what}: UDP length");
            let shim = match c.kind {
                "vxlan" => 8 + 14,
                "gue" => 4,
                _ => 0,
            };
            let mut inner = payload[shim..].to_vec();
            if let Some(ip6) = outer_v6hdr.as_ref().filter(|_| outer_len > 1500) {
                // A GSO packet (veth carries them whole): the field holds
                // the pseudo-header sum the kernel's segmentation completes.
                let mut sum: u32 = ip6
                    .source
                    .chunks(2)
                    .chain(ip6.destination.chunks(2))
                    .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
                    .sum();
                sum += rest.len() as u32 + 17;
                while sum > 0xffff {
                    sum = (sum & 0xffff) + (sum >> 16);
                }
                assert_eq!(u32::from(u.checksum), sum, "{what}: GSO UDP checksum seed");
            } else if let Some(ip6) = &outer_v6hdr {
                assert_ne!(u.checksum, 0, "{what}: UDP checksum over IPv6 is not 0");
                // The inner TCP checksum may still be left to offload on a
                // veth: finish it the way the NIC would, then the outer UDP
                // checksum must hold over the frame as it will be.
                finish_inner_tcp(&mut inner);
                let mut whole = payload[..shim].to_vec();
                whole.extend_from_slice(&inner);
                let want = u.calc_checksum_ipv6(ip6, &whole).expect("checksum");
                assert_eq!(u.checksum, want, "{what}: outer UDP checksum over IPv6");
            }
            inner
        }
        47 => rest[4..].to_vec(),
        43 => {
            let hdr_len = 8 + 8 * usize::from(rest[1]);
            rest[hdr_len..].to_vec()
        }
        _ => rest.to_vec(),
    };
    let tcp_payload = match inner[0] >> 4 {
        4 => {
            let (h, rest) = Ipv4Header::from_slice(&inner).ok()?;
            if h.protocol.0 != 6 {
                return None;
            }
            let (t, payload) = TcpHeader::from_slice(rest).ok()?;
            let _ = t;
            payload.len()
        }
        6 => {
            let (h, rest) = Ipv6Header::from_slice(&inner).ok()?;
            if h.next_header.0 != 6 {
                return None;
            }
            let (_, payload) = TcpHeader::from_slice(rest).ok()?;
            payload.len()
        }
        _ => return None,
    };
    Some(Seen {
        tcp_payload,
        outer_len,
    })
}

/// Writes the correct TCP checksum into an inner IPv4/IPv6 TCP packet.
fn finish_inner_tcp(inner: &mut [u8]) {
    let (sum, at) = match inner[0] >> 4 {
        4 => {
            let Ok((h, rest)) = Ipv4Header::from_slice(inner) else {
                return;
            };
            if h.protocol.0 != 6 {
                return;
            }
            let Ok((t, payload)) = TcpHeader::from_slice(rest) else {
                return;
            };
            (
                t.calc_checksum_ipv4(&h, payload).expect("tcp checksum"),
                h.header_len() + 16,
            )
        }
        6 => {
            let Ok((h, rest)) = Ipv6Header::from_slice(inner) else {
                return;
            };
            if h.next_header.0 != 6 {
                return;
            }
            let Ok((t, payload)) = TcpHeader::from_slice(rest) else {
                return;
            };
            (t.calc_checksum_ipv6(&h, payload).expect("tcp checksum"), 56)
        }
        _ => return,
    };
    inner[at..at + 2].copy_from_slice(&sum.to_be_bytes());
}

fn run(c: Case) {
    let p = Pair::new(c.tag);
    let inner = far_side(&p, &c);
    let prefix = format!("{inner}/{}", if c.inner_v6 { 128 } else { 32 });
    if c.kind == "srv6" {
        p.a.ip(&["-6", "route", "add", "fc00::b", "via", "fd00::3"]);
    }
    let args = encap_args(&c, &prefix);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    p.a.lwt_ok(&args);
    let to: SocketAddr = if c.inner_v6 {
        format!("[{inner}]:7001")
    } else {
        format!("{inner}:7001")
    }
    .parse()
    .expect("socket address");

    // Frames of a first upload, dissected.
    let capture = Capture::start(&p.b, "vb", 400);
    let (n, intact) = upload(&p, to, 4 << 20).unwrap_or_else(|e| panic!("{}: {e}", c.tag));
    assert_eq!((n, intact), (4 << 20, true), "{}: 4 MiB intact", c.tag);
    let frames = capture.finish();
    let seen: Vec<Seen> = frames.iter().filter_map(|f| dissect(&c, f)).collect();
    // veth carries GSO packets whole: 4 MiB is as few as ~64 frames.
    assert!(
        seen.len() > 20,
        "{}: tunnel frames with TCP captured ({} of {})",
        c.tag,
        seen.len(),
        frames.len()
    );
    // veth passes GSO packets whole, so frames over the MTU are GSO
    // packets; the largest single-segment frame must fit the device.
    let single = seen.iter().filter(|s| s.outer_len <= 1500);
    let largest = single.clone().map(|s| s.outer_len).max().unwrap_or(0);
    let mss = single.map(|s| s.tcp_payload).max().unwrap_or(0);
    let gso = seen.iter().filter(|s| s.outer_len > 1500).count();
    assert!(gso > 0, "{}: GSO packets went through whole", c.tag);
    eprintln!(
        "{}: largest single-segment outer packet {largest} bytes (TCP payload {mss}), {gso} GSO packets",
        c.tag
    );

    // The bulk upload.
    let started = Instant::now();
    let (n, intact) = upload(&p, to, BULK).unwrap_or_else(|e| panic!("{}: {e}", c.tag));
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(n, BULK, "{}: every byte arrived", c.tag);
    assert!(intact, "{}: the bytes arrived intact", c.tag);
    eprintln!(
        "{}: 100 MiB in {secs:.2} s ({:.0} MB/s)",
        c.tag,
        BULK as f64 / secs / 1e6
    );
    let list = json(&p.a.lwt_ok(&["encap", "list", "-j"]));
    let stats = &list[0]["stats"];
    assert_eq!(stats["push_failed"], 0, "{}: {list}", c.tag);
    let segments = (BULK / 1400) as u64;
    assert!(
        stats["packets"].as_u64().is_some_and(|n| n < segments / 2),
        "{}: the upload went through as GSO packets: {list}",
        c.tag
    );
    p.a.lwt_ok(&["encap", "del", &prefix]);
}

#[test]
fn vxlan_ipv4_outer_carries_100mb() {
    require_root!();
    run(case("bkvx", "vxlan", false, false));
}

#[test]
fn vxlan_ipv6_outer_with_checksums_carries_100mb_into_a_default_vxlan_device() {
    require_root!();
    run(case("bkvx6", "vxlan", true, true));
}

#[test]
fn fou_ipv6_outer_carries_100mb() {
    require_root!();
    run(case("bkfou", "fou", false, true));
}

#[test]
fn gue_ipv4_outer_carries_100mb() {
    require_root!();
    run(case("bkgue", "gue", true, false));
}

#[test]
fn gue_ipv6_outer_carries_100mb() {
    require_root!();
    run(case("bkgue6", "gue", false, true));
}

#[test]
fn gre_ipv4_outer_carries_100mb() {
    require_root!();
    run(case("bkgre", "gre", false, false));
}

#[test]
fn gre_ipv6_outer_carries_100mb() {
    require_root!();
    run(case("bkgre6", "gre", true, true));
}

#[test]
fn ipip_carries_100mb() {
    require_root!();
    run(case("bkipip", "ipip", false, false));
}

#[test]
fn sit_carries_100mb() {
    require_root!();
    run(case("bksit", "sit", true, false));
}

#[test]
fn ip6ip6_carries_100mb() {
    require_root!();
    run(case("bk66", "ip6ip6", true, true));
}

#[test]
fn ip4in6_carries_100mb() {
    require_root!();
    run(case("bk46", "ip4in6", false, true));
}

#[test]
fn srv6_ipv6_inner_carries_100mb_into_end_dt6() {
    require_root!();
    run(case("bksr6", "srv6", true, true));
}

#[test]
fn srv6_ipv4_inner_carries_100mb_into_end_dx4() {
    require_root!();
    run(case("bksr4", "srv6", false, true));
}
