//! Hand-made tunnel packets for the decapsulator's tests: inner IPv4/IPv6
//! UDP datagrams, GRE and GUE headers, sent from a namespace through raw
//! IP sockets (the kernel adds the outer header) or UDP sockets (FOU,
//! GUE), and raw sockets that capture what a namespace receives.
use std::{
    mem::size_of,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::Duration,
};

use super::Netns;

pub const IPPROTO_IPIP: i32 = 4;
pub const IPPROTO_IPV6: i32 = 41;
pub const IPPROTO_GRE: i32 = 47;

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 header (no options, DF clear, TTL 64) with its checksum, then `payload`.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0x12, 0x34, 0, 0, 64, proto, 0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// An IPv4 UDP datagram (UDP checksum 0: none, which IPv4 allows).
pub fn udp4(src: Ipv4Addr, dst: Ipv4Addr, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut u = 40000u16.to_be_bytes().to_vec();
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(data);
    ipv4(src, dst, 17, &u)
}

/// An IPv6 UDP datagram with its (mandatory) checksum.
pub fn udp6(src: Ipv6Addr, dst: Ipv6Addr, dport: u16, data: &[u8]) -> Vec<u8> {
    let len = (8 + data.len()) as u16;
    let mut u = 40000u16.to_be_bytes().to_vec();
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&len.to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(data);
    let mut pseudo = src.octets().to_vec();
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&u32::from(len).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 17]);
    pseudo.extend_from_slice(&u);
    let c = match checksum(&pseudo) {
        0 => 0xffff,
        c => c,
    };
    u[6..8].copy_from_slice(&c.to_be_bytes());
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&[17, 64]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(&u);
    h
}

/// A GRE header (no checksum or sequence; a key if given) for an inner
/// packet of EtherType `proto`, then the inner packet.
pub fn gre(key: Option<u32>, proto: u16, inner: &[u8]) -> Vec<u8> {
    let mut g = vec![if key.is_some() { 0x20 } else { 0 }, 0];
    g.extend_from_slice(&proto.to_be_bytes());
    if let Some(k) = key {
        g.extend_from_slice(&k.to_be_bytes());
    }
    g.extend_from_slice(inner);
    g
}

/// A GUE variant 0 header without options: `first` is its first byte
/// (0 for data, 0x20 for a control message), `proto` the inner protocol.
pub fn gue0(first: u8, proto: u8, inner: &[u8]) -> Vec<u8> {
    let mut g = vec![first, proto, 0, 0];
    g.extend_from_slice(inner);
    g
}

fn sockaddr_in(a: Ipv4Addr) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(a.octets()),
        },
        sin_zero: [0; 8],
    }
}

fn raw_socket(proto: i32) -> OwnedFd {
    raw_socket_of(libc::AF_INET, proto)
}

fn raw_socket_of(family: i32, proto: i32) -> OwnedFd {
    // SAFETY: plain socket(2) call.
    let fd = unsafe { libc::socket(family, libc::SOCK_RAW, proto) };
    assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor we own.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Sends `payload` from `ns` in an IPv4 packet of protocol `proto` to
/// `dst`, from `src` if given; the kernel builds the outer header (and
/// fragments it if it is larger than the MTU: DF is clear).
pub fn send_raw4(ns: &Netns, proto: i32, src: Option<Ipv4Addr>, dst: Ipv4Addr, payload: Vec<u8>) {
    ns.run(move || {
        let fd = raw_socket(proto);
        let off: libc::c_int = libc::IP_PMTUDISC_DONT;
        // SAFETY: valid socket, option value and length.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                (&off as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        if let Some(s) = src {
            let sa = sockaddr_in(s);
            // SAFETY: valid socket and address.
            let rc = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&sa as *const libc::sockaddr_in).cast(),
                    size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            };
            assert_eq!(rc, 0, "bind {s}: {}", std::io::Error::last_os_error());
        }
        let sa = sockaddr_in(dst);
        // SAFETY: valid socket, buffer and address.
        let n = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                payload.as_ptr().cast(),
                payload.len(),
                0,
                (&sa as *const libc::sockaddr_in).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        assert!(n >= 0, "sendto {dst}: {}", std::io::Error::last_os_error());
    })
}

/// Sends `payload` from `ns` in an IPv6 packet with next header `proto`
/// to `dst`; the kernel builds the outer header.
pub fn send_raw6(ns: &Netns, proto: i32, dst: Ipv6Addr, payload: Vec<u8>) {
    ns.run(move || {
        let fd = raw_socket_of(libc::AF_INET6, proto);
        let sa = libc::sockaddr_in6 {
            sin6_family: libc::AF_INET6 as libc::sa_family_t,
            sin6_port: 0,
            sin6_flowinfo: 0,
            sin6_addr: libc::in6_addr {
                s6_addr: dst.octets(),
            },
            sin6_scope_id: 0,
        };
        // SAFETY: valid socket, buffer and address.
        let n = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                payload.as_ptr().cast(),
                payload.len(),
                0,
                (&sa as *const libc::sockaddr_in6).cast(),
                size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            )
        };
        assert!(n >= 0, "sendto {dst}: {}", std::io::Error::last_os_error());
    })
}

/// Sends `payload` from `ns` in one UDP datagram to `to` (FOU, GUE).
pub fn send_udp_payload(ns: &Netns, to: &str, payload: Vec<u8>) {
    let to: SocketAddr = to.parse().expect("socket address");
    ns.run(move || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("udp socket");
        s.send_to(&payload, to).expect("send");
    })
}

/// A UDP socket bound in `ns`.
pub fn listen_udp(ns: &Netns, at: &str) -> UdpSocket {
    let at: SocketAddr = at.parse().expect("socket address");
    ns.run(move || UdpSocket::bind(at).expect("bind"))
}

/// The next datagram on `s` within `ms` milliseconds.
pub fn recv_within(s: &UdpSocket, ms: u64) -> Option<Vec<u8>> {
    s.set_read_timeout(Some(Duration::from_millis(ms)))
        .expect("timeout");
    let mut buf = vec![0u8; 65536];
    s.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
}

/// A raw socket in a namespace: every packet of its protocol delivered
/// to that namespace (IPv4: outer header included; IPv6: without it).
pub struct RawCapture(OwnedFd);

impl RawCapture {
    pub fn open(ns: &Netns, proto: i32) -> Self {
        RawCapture(ns.run(move || raw_socket(proto)))
    }

    pub fn open6(ns: &Netns, proto: i32) -> Self {
        RawCapture(ns.run(move || raw_socket_of(libc::AF_INET6, proto)))
    }

    /// The next packet within `ms` milliseconds.
    pub fn recv_within(&self, ms: u64) -> Option<Vec<u8>> {
        let tv = libc::timeval {
            tv_sec: (ms / 1000) as libc::time_t,
            tv_usec: ((ms % 1000) * 1000) as libc::suseconds_t,
        };
        let mut buf = vec![0u8; 65536];
        // SAFETY: valid socket, option value and buffer.
        let n = unsafe {
            libc::setsockopt(
                self.0.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            );
            libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0)
        };
        (n > 0).then(|| buf[..n as usize].to_vec())
    }
}
