//! ICMP errors and NPTv6 through the kernel-side NAT pieces
//! (`crates/lwtkit-ebpf/src/nat_icmp.rs`, `nptv6.rs`), proven on packets by
//! BPF_PROG_TEST_RUN of the test-only program `lwtkit-nat-test` (an
//! `lwt_xmit` program that never pushes an encapsulation).
//!
//! The expected packet is built with etherparse from what the inside host
//! really sent (its own address and port): a translated error must equal
//! it byte for byte, cut where the error cut the embedded datagram. Every
//! checksum is also verified with an RFC 1071 sum written here, never with
//! the code under test. The sweep draws random errors (seed printed,
//! `LWTKIT_SEED` replays one). Needs root.
use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{
    IcmpEchoHeader, Icmpv4Type, Icmpv6Type, Ipv4Header, Ipv4Options, TcpHeader, UdpHeader,
};
use libbpf_rs::{MapCore, MapFlags, Object, ObjectBuilder, ProgramInput};
use lwtkit::filter::testrun::ethernet_frame;
use lwtkit_common::{
    maps,
    nat_icmp::{op, outcome, NatCase, Translation},
    nptv6::Nptv6,
};

const OBJ: &[u8] = include_bytes!(env!("LWTKIT_NAT_TEST_OBJ"));

// ---------------------------------------------------------------- harness

struct Prog {
    object: Object,
}

impl Prog {
    fn load() -> Prog {
        let bytes = OBJ.to_vec();
        let open = ObjectBuilder::default()
            .open_memory(&bytes)
            .expect("the object opens");
        let object = open
            .load()
            .expect("lwtkit-nat-test loads (the verifier accepts it)");
        Prog { object }
    }

    fn map(&self, name: &str) -> libbpf_rs::Map<'_> {
        self.object
            .maps()
            .find(|m| m.name() == name)
            .unwrap_or_else(|| panic!("no map {name}"))
    }

    /// Runs the program once on `l3` with `case`: the return code, the
    /// outcome it recorded and the packet as it left.
    fn run(&self, case: &NatCase, l3: &[u8]) -> (i32, u32, Vec<u8>) {
        // SAFETY: NatCase is repr(C) with explicit padding, all bytes initialised.
        let value = unsafe {
            std::slice::from_raw_parts((case as *const NatCase).cast::<u8>(), size_of::<NatCase>())
        };
        self.map(maps::nat_test::CASE)
            .update(&0u32.to_ne_bytes(), value, MapFlags::ANY)
            .expect("case written");
        self.map(maps::nat_test::RESULT)
            .update(&0u32.to_ne_bytes(), &0u32.to_ne_bytes(), MapFlags::ANY)
            .expect("result cleared");
        let frame = ethernet_frame(l3);
        let mut out = vec![0u8; frame.len() + 64];
        let prog = self.object.progs_mut().next().expect("one program");
        let input = ProgramInput {
            data_in: Some(&frame),
            data_out: Some(&mut out),
            ..Default::default()
        };
        let o = prog.test_run(input).expect("test run");
        let rc = o.return_value as i32;
        let data = o.data.map(|d| d[14..].to_vec()).unwrap_or_default();
        let result = self
            .map(maps::nat_test::RESULT)
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
            .expect("lookup")
            .expect("one slot");
        (
            rc,
            u32::from_ne_bytes(result[..4].try_into().expect("4 bytes")),
            data,
        )
    }
}

fn is_root() -> bool {
    extern "C" {
        fn geteuid() -> u32;
    }
    // SAFETY: geteuid has no preconditions.
    unsafe { geteuid() == 0 }
}

/// Whether to run (root), skip, or fail for want of root under CI.
fn root_or_skip(test: &str) -> bool {
    if is_root() {
        return true;
    }
    if std::env::var_os("LWT_TEST_REQUIRE_ROOT").is_some_and(|v| !v.is_empty() && v != "0") {
        panic!("{test} needs root (BPF_PROG_TEST_RUN), and LWT_TEST_REQUIRE_ROOT is set");
    }
    eprintln!("SKIPPED {test}: needs root (BPF_PROG_TEST_RUN)");
    false
}

// ------------------------------------------------- independent arithmetic

/// RFC 1071: the one's-complement sum of `data` (odd length padded).
fn sum(data: &[u8], mut acc: u64) -> u64 {
    for c in data.chunks(2) {
        acc += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    acc
}

fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// A checksummed region verifies when its sum (with the checksum) is 0xFFFF.
fn verifies(acc: u64) -> bool {
    fold(acc) == 0xffff
}

/// Checks every checksum the packet carries: the outer IPv4 header, the
/// ICMP or ICMPv6 message (with its pseudo-header), the embedded IPv4
/// header when whole, and the embedded L4 checksum when the embedded
/// datagram is whole. Returns what it checked, for the messages.
fn assert_checksums(p: &[u8], what: &str) {
    let v6 = p[0] >> 4 == 6;
    let (icmp, src, dst) = if v6 {
        (outer_l4_v6(p), &p[8..24], &p[24..40])
    } else {
        let ihl = usize::from(p[0] & 0xf) * 4;
        assert!(
            verifies(sum(&p[..ihl], 0)),
            "{what}: outer IPv4 header checksum"
        );
        (ihl, &p[12..16], &p[16..20])
    };
    let msg = &p[icmp..];
    let pseudo = if v6 {
        sum(src, sum(dst, (msg.len() as u64) + 58))
    } else {
        0
    };
    assert!(verifies(sum(msg, pseudo)), "{what}: ICMP checksum");
    let e = &msg[8..];
    if e.len() >= 20 && e[0] >> 4 == 4 {
        let ihl = usize::from(e[0] & 0xf) * 4;
        if e.len() >= ihl && ihl >= 20 {
            assert!(
                verifies(sum(&e[..ihl], 0)),
                "{what}: embedded IPv4 header checksum"
            );
            let total = usize::from(u16::from_be_bytes([e[2], e[3]]));
            if total == e.len() && u16::from_be_bytes([e[6], e[7]]) & 0x3fff == 0 {
                l4_verifies(e[9], &e[12..16], &e[16..20], &e[ihl..], what);
            }
        }
    } else if e.len() >= 40 && e[0] >> 4 == 6 {
        let total = 40 + usize::from(u16::from_be_bytes([e[4], e[5]]));
        let l4 = outer_l4_v6(e);
        if total == e.len() && l4 < e.len() {
            let nh = last_next_header(e);
            l4_verifies(nh, &e[8..24], &e[24..40], &e[l4..], what);
        }
    }
}

fn l4_verifies(proto: u8, src: &[u8], dst: &[u8], l4: &[u8], what: &str) {
    let at = match proto {
        6 => 16,
        17 => 6,
        58 => 2,
        _ => return,
    };
    if proto == 17 && l4[6..8] == [0, 0] {
        return; // no checksum
    }
    let _ = at;
    let pseudo = sum(src, sum(dst, l4.len() as u64 + u64::from(proto)));
    assert!(
        verifies(sum(l4, pseudo)),
        "{what}: embedded L4 ({proto}) checksum"
    );
}

/// Offset of the upper-layer header of an IPv6 packet (destination
/// options only, as the tests build them).
fn outer_l4_v6(p: &[u8]) -> usize {
    let mut nh = p[6];
    let mut off = 40;
    while nh == 60 && off + 2 <= p.len() {
        nh = p[off];
        off += (usize::from(p[off + 1]) + 1) * 8;
    }
    off
}

fn last_next_header(p: &[u8]) -> u8 {
    let mut nh = p[6];
    let mut off = 40;
    while nh == 60 && off + 2 <= p.len() {
        nh = p[off];
        off += (usize::from(p[off + 1]) + 1) * 8;
    }
    nh
}

// --------------------------------------------------------- packet builders

#[derive(Clone, Copy, Debug, PartialEq)]
enum L4 {
    Udp,
    /// UDP sent without a checksum (zero).
    UdpNoSum,
    Tcp,
    Echo,
    /// GRE: no ports, no checksum over addresses.
    Gre,
}

/// One datagram as a host sends it (before or after the gateway).
#[derive(Clone, Debug)]
struct Flow {
    src: Vec<u8>,
    dst: Vec<u8>,
    l4: L4,
    sport: u16,
    dport: u16,
    payload: Vec<u8>,
    /// IPv4 options (a multiple of 4 bytes, at most 40).
    options: Vec<u8>,
    /// IPv6 destination-options headers, each (n + 1) * 8 bytes long.
    exts: Vec<u8>,
}

impl Flow {
    fn v6(&self) -> bool {
        self.src.len() == 16
    }

    fn with(&self, src: &[u8], dst: &[u8], sport: u16, dport: u16) -> Flow {
        Flow {
            src: src.to_vec(),
            dst: dst.to_vec(),
            sport,
            dport,
            ..self.clone()
        }
    }

    fn proto(&self) -> u8 {
        match self.l4 {
            L4::Udp | L4::UdpNoSum => 17,
            L4::Tcp => 6,
            L4::Echo if self.v6() => 58,
            L4::Echo => 1,
            L4::Gre => 47,
        }
    }

    /// The upper-layer header and payload, checksummed by etherparse.
    fn l4_bytes(&self) -> Vec<u8> {
        let (s4, d4, s6, d6) = (
            arr4(&self.src),
            arr4(&self.dst),
            arr16(&self.src),
            arr16(&self.dst),
        );
        let p = &self.payload;
        let mut out = Vec::new();
        match self.l4 {
            L4::Udp | L4::UdpNoSum => {
                let mut u = UdpHeader {
                    source_port: self.sport,
                    destination_port: self.dport,
                    length: 8 + p.len() as u16,
                    checksum: 0,
                };
                if self.l4 == L4::Udp {
                    u.checksum = if self.v6() {
                        u.calc_checksum_ipv6_raw(s6, d6, p).expect("fits")
                    } else {
                        u.calc_checksum_ipv4_raw(s4, d4, p).expect("fits")
                    };
                }
                out.extend_from_slice(&u.to_bytes());
            }
            L4::Tcp => {
                let mut t = TcpHeader::new(self.sport, self.dport, 0x0102_0304, 512);
                t.syn = true;
                t.checksum = if self.v6() {
                    t.calc_checksum_ipv6_raw(s6, d6, p).expect("fits")
                } else {
                    t.calc_checksum_ipv4_raw(s4, d4, p).expect("fits")
                };
                out.extend_from_slice(&t.to_bytes());
            }
            L4::Echo => {
                let echo = IcmpEchoHeader {
                    id: self.sport,
                    seq: self.dport,
                };
                if self.v6() {
                    let t = Icmpv6Type::EchoRequest(echo);
                    let h = etherparse::Icmpv6Header::with_checksum(t, s6, d6, p).expect("fits");
                    out.extend_from_slice(&h.to_bytes());
                } else {
                    let h =
                        etherparse::Icmpv4Header::with_checksum(Icmpv4Type::EchoRequest(echo), p);
                    out.extend_from_slice(&h.to_bytes());
                }
            }
            L4::Gre => out.extend_from_slice(&[0, 0, 0x08, 0]),
        }
        out.extend_from_slice(p);
        out
    }

    /// The whole datagram.
    fn bytes(&self) -> Vec<u8> {
        let l4 = self.l4_bytes();
        if self.v6() {
            let mut exts = self.exts.clone();
            let payload_len = (exts.len() + l4.len()) as u16;
            let first = if exts.is_empty() { self.proto() } else { 60 };
            // Chain the destination-options headers to the upper layer.
            let mut off = 0;
            while off < exts.len() {
                let len = (usize::from(exts[off + 1]) + 1) * 8;
                exts[off] = if off + len >= exts.len() {
                    self.proto()
                } else {
                    60
                };
                off += len;
            }
            let mut p = vec![0x60, 0, 0, 0];
            p.extend_from_slice(&payload_len.to_be_bytes());
            p.extend_from_slice(&[first, 9]);
            p.extend_from_slice(&self.src);
            p.extend_from_slice(&self.dst);
            p.extend_from_slice(&exts);
            p.extend_from_slice(&l4);
            p
        } else {
            let mut h =
                Ipv4Header::new(0, 9, self.proto().into(), arr4(&self.src), arr4(&self.dst))
                    .expect("header");
            h.identification = 0x4242;
            h.options = Ipv4Options::try_from(&self.options[..]).expect("options");
            h.set_payload_len(l4.len()).expect("fits");
            h.header_checksum = h.calc_header_checksum();
            let mut p = h.to_bytes().to_vec();
            p.extend_from_slice(&l4);
            p
        }
    }
}

/// `n` destination-options headers of `units` (8-byte units - 1) each,
/// padded with PadN (next header filled in by `Flow::bytes`).
fn dest_opts(sizes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for &units in sizes {
        let len = (usize::from(units) + 1) * 8;
        let mut h = vec![0u8; len];
        h[1] = units;
        h[2] = 1; // PadN
        h[3] = (len - 4) as u8;
        out.extend_from_slice(&h);
    }
    out
}

fn arr4(a: &[u8]) -> [u8; 4] {
    a.get(..4)
        .and_then(|s| s.try_into().ok())
        .unwrap_or_default()
}

fn arr16(a: &[u8]) -> [u8; 16] {
    a.try_into().unwrap_or_default()
}

fn v4(a: &str) -> Vec<u8> {
    a.parse::<Ipv4Addr>().expect("v4").octets().to_vec()
}

fn v6(a: &str) -> Vec<u8> {
    a.parse::<Ipv6Addr>().expect("v6").octets().to_vec()
}

/// An ICMP (ICMPv6 when the addresses are) message of `kind`/`code` with
/// bytes 4..8 `rest`, carrying `body`, from `src` to `dst`, checksummed by
/// etherparse. `outer_exts`: IPv6 destination options before the ICMPv6
/// header.
fn icmp(
    src: &[u8],
    dst: &[u8],
    kind: u8,
    code: u8,
    rest: [u8; 4],
    body: &[u8],
    outer_exts: &[u8],
) -> Vec<u8> {
    let mut p = Vec::new();
    if src.len() == 16 {
        etherparse::PacketBuilder::ipv6(arr16(src), arr16(dst), 64)
            .icmpv6_raw(kind, code, rest)
            .write(&mut p, body)
            .expect("builds");
        if !outer_exts.is_empty() {
            let mut exts = outer_exts.to_vec();
            let mut off = 0;
            while off < exts.len() {
                let len = (usize::from(exts[off + 1]) + 1) * 8;
                exts[off] = if off + len >= exts.len() { 58 } else { 60 };
                off += len;
            }
            p[6] = 60;
            let pl = u16::from_be_bytes([p[4], p[5]]) + exts.len() as u16;
            p[4..6].copy_from_slice(&pl.to_be_bytes());
            p.splice(40..40, exts);
        }
    } else {
        etherparse::PacketBuilder::ipv4(arr4(src), arr4(dst), 64)
            .icmpv4_raw(kind, code, rest)
            .write(&mut p, body)
            .expect("builds");
    }
    p
}

fn cut(v: &[u8], n: usize) -> &[u8] {
    &v[..n.min(v.len())]
}

fn translation(from: &[u8], to: &[u8], dst: bool, ports: (u16, u16)) -> NatCase {
    let mut t = Translation {
        from_port: ports.0,
        to_port: ports.1,
        v6: u8::from(from.len() == 16),
        dst: u8::from(dst),
        ..Translation::default()
    };
    t.from[..from.len()].copy_from_slice(from);
    t.to[..to.len()].copy_from_slice(to);
    NatCase {
        op: op::ICMP,
        translation: t,
        ..NatCase::default()
    }
}

fn name(code: u32) -> &'static str {
    match code {
        outcome::NOT_ERROR => "not-error",
        outcome::TRANSLATED => "translated",
        outcome::TRANSLATED_L4 => "translated+l4",
        outcome::MISMATCH => "mismatch",
        outcome::MALFORMED => "malformed",
        outcome::FAILED => "failed",
        outcome::OUTSIDE => "outside",
        outcome::UNMAPPABLE => "unmappable",
        outcome::REWRITTEN => "rewritten",
        _ => "?",
    }
}

fn assert_same(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let first = got
            .iter()
            .zip(want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        panic!(
            "{what}: packet differs from byte {first} (lengths {} / {})\n got  {:02x?}\n want {:02x?}",
            got.len(),
            want.len(),
            got,
            want
        );
    }
}

// ------------------------------------------------------------ the gateway

/// A 1:1 gateway: the inside host's address and port, and what it is
/// outside. The far host sends errors (or a router on the way does).
struct Gateway {
    inside: Vec<u8>,
    public: Vec<u8>,
    far: Vec<u8>,
    router: Vec<u8>,
}

fn gateway4() -> Gateway {
    Gateway {
        inside: v4("10.1.0.2"),
        public: v4("192.0.2.1"),
        far: v4("198.51.100.7"),
        router: v4("203.0.113.9"),
    }
}

fn gateway6() -> Gateway {
    Gateway {
        inside: v6("fd01::2"),
        public: v6("2001:db8:1::2"),
        far: v6("2001:db8:ff::7"),
        router: v6("2001:db8:fe::9"),
    }
}

/// The inside host's datagram to the far host, as it left the inside host
/// and as the gateway sent it on (source translated, and the port when
/// `ports` says so).
fn outbound(g: &Gateway, l4: L4, ports: Option<(u16, u16)>, payload_len: usize) -> (Flow, Flow) {
    let (inside_port, public_port) = ports.unwrap_or((40000, 40000));
    let inside = Flow {
        src: g.inside.clone(),
        dst: g.far.clone(),
        l4,
        sport: inside_port,
        dport: 53,
        payload: (0..payload_len).map(|i| (i * 7 + 3) as u8).collect(),
        options: Vec::new(),
        exts: Vec::new(),
    };
    let public = inside.with(&g.public, &g.far, public_port, 53);
    (inside, public)
}

/// What the inside host should find embedded: what it sent, cut to `n`
/// bytes, except a checksum field cut in half, whose one byte stays as it
/// was on the wire (`on_wire`).
fn embedded_expected(sent: &Flow, on_wire: &Flow, n: usize) -> Vec<u8> {
    let mut body = cut(&sent.bytes(), n).to_vec();
    let wire = on_wire.bytes();
    let hdr = if sent.v6() {
        40 + sent.exts.len()
    } else {
        20 + sent.options.len()
    };
    let at = match sent.l4 {
        L4::Tcp => Some(16),
        L4::Udp | L4::UdpNoSum => Some(6),
        L4::Echo if sent.v6() => Some(2),
        _ => None,
    };
    if let Some(at) = at {
        if n == hdr + at + 1 {
            body[hdr + at] = wire[hdr + at];
        }
    }
    body
}

/// The error `kind`/`code` about `about` (cut to `n` bytes) from `from` to
/// `to`.
fn error_about(
    from: &[u8],
    to: &[u8],
    kind: u8,
    code: u8,
    rest: [u8; 4],
    about: &Flow,
    n: usize,
) -> Vec<u8> {
    let d = about.bytes();
    icmp(from, to, kind, code, rest, cut(&d, n), &[])
}

/// Runs one error from outside back through the gateway's return rule
/// (`dst public -> inside`, port `public -> inside` when given) and checks
/// it against the error the inside host should see.
#[allow(clippy::too_many_arguments)]
fn return_error(
    p: &Prog,
    g: &Gateway,
    sender: &[u8],
    kind: u8,
    code: u8,
    rest: [u8; 4],
    l4: L4,
    ports: Option<(u16, u16)>,
    n: usize,
    want: u32,
) {
    let (inside, public) = outbound(g, l4, ports, 24);
    let arrived = error_about(sender, &g.public, kind, code, rest, &public, n);
    let expected = icmp(
        sender,
        &g.inside,
        kind,
        code,
        rest,
        &embedded_expected(&inside, &public, n),
        &[],
    );
    assert_checksums(&arrived, "the error as it arrives");
    let case = translation(
        &g.public,
        &g.inside,
        true,
        ports.map(|(i, o)| (o, i)).unwrap_or((0, 0)),
    );
    let (rc, got, out) = p.run(&case, &arrived);
    let what = format!("type {kind} code {code} {l4:?} ports {ports:?} cut {n}");
    assert_eq!((rc, name(got)), (0, name(want)), "{what}");
    assert_same(&out, &expected, &what);
    assert_checksums(&out, &what);
}

#[test]
fn errors_coming_back_through_an_snat_gateway_reach_the_inside_host() {
    if !root_or_skip("errors_coming_back_through_an_snat_gateway_reach_the_inside_host") {
        return;
    }
    let p = Prog::load();
    let g = gateway4();
    let whole = 1000;
    // Port unreachable from the far host, embedding the whole UDP datagram.
    return_error(
        &p,
        &g,
        &g.far,
        3,
        3,
        [0; 4],
        L4::Udp,
        None,
        whole,
        outcome::TRANSLATED_L4,
    );
    // With the source port translated back as well (a NAPT-style rule).
    return_error(
        &p,
        &g,
        &g.far,
        3,
        3,
        [0; 4],
        L4::Udp,
        Some((5000, 40000)),
        whole,
        outcome::TRANSLATED_L4,
    );
    // Time exceeded from a router (traceroute), embedding TCP, whole.
    return_error(
        &p,
        &g,
        &g.router,
        11,
        0,
        [0; 4],
        L4::Tcp,
        None,
        whole,
        outcome::TRANSLATED_L4,
    );
    return_error(
        &p,
        &g,
        &g.router,
        11,
        0,
        [0; 4],
        L4::Tcp,
        Some((5000, 40000)),
        whole,
        outcome::TRANSLATED_L4,
    );
    // Fragmentation needed with a next-hop MTU of 1400 (PMTU discovery).
    return_error(
        &p,
        &g,
        &g.router,
        3,
        4,
        [0, 0, 0x05, 0x78],
        L4::Tcp,
        None,
        whole,
        outcome::TRANSLATED_L4,
    );
    // Parameter problem, pointer 9.
    return_error(
        &p,
        &g,
        &g.router,
        12,
        0,
        [9, 0, 0, 0],
        L4::Udp,
        None,
        whole,
        outcome::TRANSLATED_L4,
    );
    // A UDP datagram sent without a checksum keeps none.
    return_error(
        &p,
        &g,
        &g.far,
        3,
        3,
        [0; 4],
        L4::UdpNoSum,
        Some((5000, 40000)),
        whole,
        outcome::TRANSLATED,
    );
    // Time exceeded for a ping (ICMP has no pseudo-header: address only).
    return_error(
        &p,
        &g,
        &g.router,
        11,
        0,
        [0; 4],
        L4::Echo,
        None,
        whole,
        outcome::TRANSLATED,
    );
}

#[test]
fn errors_with_a_cut_datagram_keep_the_senders_checksum() {
    if !root_or_skip("errors_with_a_cut_datagram_keep_the_senders_checksum") {
        return;
    }
    let p = Prog::load();
    let g = gateway4();
    // RFC 792's minimum: the IP header and 8 bytes. UDP's checksum is in
    // them, TCP's is not.
    return_error(
        &p,
        &g,
        &g.far,
        3,
        3,
        [0; 4],
        L4::Udp,
        Some((5000, 40000)),
        28,
        outcome::TRANSLATED_L4,
    );
    return_error(
        &p,
        &g,
        &g.router,
        11,
        0,
        [0; 4],
        L4::Tcp,
        Some((5000, 40000)),
        28,
        outcome::TRANSLATED,
    );
    // TCP cut right after its checksum field, and right before it.
    return_error(
        &p,
        &g,
        &g.router,
        11,
        0,
        [0; 4],
        L4::Tcp,
        None,
        20 + 18,
        outcome::TRANSLATED_L4,
    );
    return_error(
        &p,
        &g,
        &g.router,
        11,
        0,
        [0; 4],
        L4::Tcp,
        None,
        20 + 16,
        outcome::TRANSLATED,
    );
    // Half the field: that byte stays as it came (as in Linux, which wants
    // the whole TCP header before it touches the checksum).
    return_error(
        &p,
        &g,
        &g.router,
        11,
        0,
        [0; 4],
        L4::Tcp,
        None,
        20 + 17,
        outcome::TRANSLATED,
    );
    // Ports not asked for: only the embedded IP header is needed.
    return_error(
        &p,
        &g,
        &g.router,
        11,
        0,
        [0; 4],
        L4::Tcp,
        None,
        20,
        outcome::TRANSLATED,
    );
    // Cut inside the whole TCP datagram's payload: the header checksum
    // field is there, the update gives the sender's checksum back.
    return_error(
        &p,
        &g,
        &g.router,
        11,
        0,
        [0; 4],
        L4::Tcp,
        Some((5000, 40000)),
        20 + 20 + 5,
        outcome::TRANSLATED_L4,
    );
}

#[test]
fn icmpv6_errors_come_back_translated() {
    if !root_or_skip("icmpv6_errors_come_back_translated") {
        return;
    }
    let p = Prog::load();
    let g = gateway6();
    let whole = 1000;
    // Packet too big, MTU 1280, embedding TCP.
    return_error(
        &p,
        &g,
        &g.router,
        2,
        0,
        [0, 0, 0x05, 0x00],
        L4::Tcp,
        None,
        whole,
        outcome::TRANSLATED_L4,
    );
    return_error(
        &p,
        &g,
        &g.router,
        2,
        0,
        [0, 0, 0x05, 0x00],
        L4::Tcp,
        Some((5000, 40000)),
        whole,
        outcome::TRANSLATED_L4,
    );
    // Port unreachable (code 4), embedding UDP, with the port.
    return_error(
        &p,
        &g,
        &g.far,
        1,
        4,
        [0; 4],
        L4::Udp,
        Some((5000, 40000)),
        whole,
        outcome::TRANSLATED_L4,
    );
    // Hop limit exceeded for a ping6: the embedded ICMPv6 checksum covers
    // the embedded addresses and is updated.
    return_error(
        &p,
        &g,
        &g.router,
        3,
        0,
        [0; 4],
        L4::Echo,
        None,
        whole,
        outcome::TRANSLATED_L4,
    );
    // Parameter problem, pointer 6.
    return_error(
        &p,
        &g,
        &g.router,
        4,
        0,
        [0, 0, 0, 6],
        L4::Udp,
        None,
        whole,
        outcome::TRANSLATED_L4,
    );
    // Cut: the IPv6 header and 8 bytes of TCP (no checksum field).
    return_error(
        &p,
        &g,
        &g.router,
        3,
        0,
        [0; 4],
        L4::Tcp,
        Some((5000, 40000)),
        48,
        outcome::TRANSLATED,
    );
}

/// The other direction: a host behind a `dnat` rule answers with an error;
/// the outbound `snat` rule (source inside -> public) translates the
/// embedded destination (and port) back to what the client sent to.
#[test]
fn errors_from_a_dnat_server_leave_with_the_public_address() {
    if !root_or_skip("errors_from_a_dnat_server_leave_with_the_public_address") {
        return;
    }
    let p = Prog::load();
    for g in [gateway4(), gateway6()] {
        let client = Flow {
            src: g.far.clone(),
            dst: g.public.clone(),
            l4: L4::Udp,
            sport: 5555,
            dport: 53,
            payload: b"query".to_vec(),
            options: Vec::new(),
            exts: Vec::new(),
        };
        // What reached the server after dnat (public:53 -> inside:5353).
        let delivered = client.with(&g.far, &g.inside, 5555, 5353);
        let (kind, code) = if g.inside.len() == 16 { (1, 4) } else { (3, 3) };
        let sent = error_about(&g.inside, &g.far, kind, code, [0; 4], &delivered, 1000);
        let expected = error_about(&g.public, &g.far, kind, code, [0; 4], &client, 1000);
        let case = translation(&g.inside, &g.public, false, (5353, 53));
        let (rc, got, out) = p.run(&case, &sent);
        assert_eq!((rc, name(got)), (0, "translated+l4"));
        assert_same(&out, &expected, "dnat server's error");
        assert_checksums(&out, "dnat server's error");
    }
}

#[test]
fn options_and_extension_headers_are_walked() {
    if !root_or_skip("options_and_extension_headers_are_walked") {
        return;
    }
    let p = Prog::load();
    // IPv4: every option length in the embedded header (IHL 6..15).
    let g = gateway4();
    for words in 1..=10usize {
        let (mut inside, mut public) = outbound(&g, L4::Tcp, Some((5000, 40000)), 16);
        let options: Vec<u8> = (0..words * 4)
            .map(|i| if i + 1 == words * 4 { 0 } else { 1 })
            .collect();
        inside.options = options.clone();
        public.options = options;
        let arrived = error_about(&g.router, &g.public, 11, 0, [0; 4], &public, 1000);
        let expected = error_about(&g.router, &g.inside, 11, 0, [0; 4], &inside, 1000);
        let (_, got, out) = p.run(
            &translation(&g.public, &g.inside, true, (40000, 5000)),
            &arrived,
        );
        assert_eq!(name(got), "translated+l4", "{words} option words");
        assert_same(&out, &expected, &format!("{words} option words"));
        assert_checksums(&out, "options");
    }
    // IPv6: destination options in the embedded packet and before the
    // outer ICMPv6 header.
    let g = gateway6();
    for sizes in [&[0u8][..], &[1, 0], &[3, 0, 2]] {
        let (mut inside, mut public) = outbound(&g, L4::Udp, Some((5000, 40000)), 16);
        inside.exts = dest_opts(sizes);
        public.exts = dest_opts(sizes);
        let outer = dest_opts(sizes);
        let arrived = icmp(&g.far, &g.public, 1, 4, [0; 4], &public.bytes(), &outer);
        let expected = icmp(&g.far, &g.inside, 1, 4, [0; 4], &inside.bytes(), &outer);
        let (_, got, out) = p.run(
            &translation(&g.public, &g.inside, true, (40000, 5000)),
            &arrived,
        );
        assert_eq!(name(got), "translated+l4", "{sizes:?}");
        assert_same(&out, &expected, &format!("extension headers {sizes:?}"));
        assert_checksums(&out, "extension headers");
    }
}

/// Packets that must come back exactly as they went in, with the reason.
#[test]
fn wrong_kinds_and_adversarial_errors_stay_untouched() {
    if !root_or_skip("wrong_kinds_and_adversarial_errors_stay_untouched") {
        return;
    }
    let p = Prog::load();
    let untouched = |case: &NatCase, pkt: Vec<u8>, want: &str, what: &str| {
        let (rc, got, out) = p.run(case, &pkt);
        assert_eq!((rc, name(got)), (0, want), "{what}");
        assert_same(&out, &pkt, what);
    };
    for g in [gateway4(), gateway6()] {
        let is6 = g.inside.len() == 16;
        let back = translation(&g.public, &g.inside, true, (40000, 5000));
        let (_, public) = outbound(&g, L4::Udp, None, 24);
        let d = public.bytes();
        let (unreach, echo, redirect) = if is6 { (1, 128, 137) } else { (3, 8, 5) };
        // Informational messages and redirects are not errors.
        untouched(
            &back,
            icmp(&g.far, &g.public, echo, 0, [0, 1, 0, 1], b"ping", &[]),
            "not-error",
            "echo request",
        );
        untouched(
            &back,
            icmp(&g.router, &g.public, redirect, 1, [0; 4], &d, &[]),
            "not-error",
            "redirect",
        );
        if is6 {
            untouched(
                &back,
                icmp(&g.far, &g.public, 135, 0, [0; 4], &g.public, &[]),
                "not-error",
                "neighbour solicitation",
            );
        } else {
            untouched(
                &back,
                icmp(&g.far, &g.public, 4, 0, [0; 4], &d, &[]),
                "not-error",
                "source quench",
            );
        }
        // Not ICMP at all.
        untouched(&back, d.clone(), "not-error", "a UDP datagram");
        // Embedded header cut short, or too short to hold one.
        untouched(
            &back,
            icmp(
                &g.far,
                &g.public,
                unreach,
                3,
                [0; 4],
                cut(&d, if is6 { 39 } else { 19 }),
                &[],
            ),
            "malformed",
            "embedded header cut",
        );
        untouched(
            &back,
            icmp(&g.far, &g.public, unreach, 3, [0; 4], &[], &[]),
            "malformed",
            "nothing embedded",
        );
        // Ports asked for but cut away.
        let hdr = if is6 { 40 } else { 20 };
        untouched(
            &back,
            icmp(&g.far, &g.public, unreach, 3, [0; 4], cut(&d, hdr + 1), &[]),
            "malformed",
            "ports cut",
        );
        // The embedded packet is somebody else's, or another port's.
        let other = public.with(&g.router, &g.far, 40000, 53).bytes();
        untouched(
            &back,
            icmp(&g.far, &g.public, unreach, 3, [0; 4], &other, &[]),
            "mismatch",
            "embedded source not the public address",
        );
        let port = public.with(&g.public, &g.far, 40001, 53).bytes();
        untouched(
            &back,
            icmp(&g.far, &g.public, unreach, 3, [0; 4], &port, &[]),
            "mismatch",
            "embedded port not the rule's",
        );
        // The outer address is not the rule's.
        untouched(
            &back,
            icmp(&g.far, &g.router, unreach, 3, [0; 4], &d, &[]),
            "mismatch",
            "outer address not the rule's",
        );
        // The other family inside.
        let alien = if is6 {
            outbound(&gateway4(), L4::Udp, None, 8).1.bytes()
        } else {
            outbound(&gateway6(), L4::Udp, None, 8).1.bytes()
        };
        untouched(
            &back,
            icmp(&g.far, &g.public, unreach, 3, [0; 4], &alien, &[]),
            "malformed",
            "embedded packet of the other family",
        );
    }
    // IPv4 only: a bad IHL in the embedded header, an IHL past the end,
    // and a later fragment of an error (no ICMP header to read).
    let g = gateway4();
    let back = translation(&g.public, &g.inside, true, (0, 0));
    let (_, public) = outbound(&g, L4::Udp, None, 24);
    let mut d = public.bytes();
    d[0] = 0x44;
    untouched(
        &back,
        icmp(&g.far, &g.public, 3, 3, [0; 4], &d, &[]),
        "malformed",
        "embedded IHL 4",
    );
    d[0] = 0x4f;
    untouched(
        &back,
        icmp(&g.far, &g.public, 3, 3, [0; 4], cut(&d, 40), &[]),
        "malformed",
        "embedded IHL 15 past the end",
    );
    let mut later = icmp(&g.far, &g.public, 3, 3, [0; 4], &public.bytes(), &[]);
    later[6..8].copy_from_slice(&3u16.to_be_bytes());
    later[10..12].copy_from_slice(&[0, 0]);
    let c = !fold(sum(&later[..20], 0));
    later[10..12].copy_from_slice(&c.to_be_bytes());
    untouched(&back, later, "not-error", "a later fragment of an error");
    // A family the rule is not for.
    let v6rule = translation(&gateway6().public, &gateway6().inside, true, (0, 0));
    untouched(
        &v6rule,
        icmp(&g.far, &g.public, 3, 3, [0; 4], &public.bytes(), &[]),
        "mismatch",
        "an IPv6 rule on an IPv4 error",
    );
}

/// An error that arrived with a bad ICMP checksum is translated but keeps
/// a bad one: nothing here launders a corrupted packet.
#[test]
fn a_bad_icmp_checksum_stays_bad() {
    if !root_or_skip("a_bad_icmp_checksum_stays_bad") {
        return;
    }
    let p = Prog::load();
    for g in [gateway4(), gateway6()] {
        let (inside, public) = outbound(&g, L4::Udp, None, 24);
        let kind = if g.inside.len() == 16 { 1 } else { 3 };
        let mut arrived = error_about(&g.far, &g.public, kind, 3, [0; 4], &public, 1000);
        let mut expected = error_about(&g.far, &g.inside, kind, 3, [0; 4], &inside, 1000);
        let at = if g.inside.len() == 16 { 42 } else { 22 };
        // Off by the same amount (in one's complement) before and after.
        for pkt in [&mut arrived, &mut expected] {
            let c = u64::from(u16::from_be_bytes([pkt[at], pkt[at + 1]]));
            pkt[at..at + 2].copy_from_slice(&fold(c + 0x1234).to_be_bytes());
        }
        let (_, got, out) = p.run(&translation(&g.public, &g.inside, true, (0, 0)), &arrived);
        assert_eq!(name(got), "translated+l4");
        assert_same(&out, &expected, "corrupted checksum");
    }
}

// ----------------------------------------------------------------- NPTv6

fn prefix(words: [u16; 8]) -> [u8; 16] {
    let mut a = [0u8; 16];
    for (i, w) in words.iter().enumerate() {
        a[2 * i..2 * i + 2].copy_from_slice(&w.to_be_bytes());
    }
    a
}

fn nptv6_case(dst: bool, map: Nptv6) -> NatCase {
    NatCase {
        op: if dst { op::NPTV6_DST } else { op::NPTV6_SRC },
        nptv6: map,
        ..NatCase::default()
    }
}

/// Sum of the address words modulo 0xFFFF: what a transport checksum sees.
fn sum_mod(a: &[u8]) -> u64 {
    a.chunks(2)
        .map(|c| u64::from(u16::from_be_bytes([c[0], c[1]])))
        .sum::<u64>()
        % 0xffff
}

#[test]
fn nptv6_rewrites_prefixes_and_leaves_every_l4_checksum_valid() {
    if !root_or_skip("nptv6_rewrites_prefixes_and_leaves_every_l4_checksum_valid") {
        return;
    }
    let p = Prog::load();
    // RFC 6296's example, through the kernel program.
    let inside = prefix([0xfd01, 0x0203, 0x0405, 0, 0, 0, 0, 0]);
    let outside = prefix([0x2001, 0x0db8, 0x0001, 0, 0, 0, 0, 0]);
    let map = Nptv6::new(inside, outside, 48).expect("valid");
    let flow = Flow {
        src: v6("fd01:203:405:1::1234"),
        dst: v6("2001:db8:ff::7"),
        l4: L4::Tcp,
        sport: 40000,
        dport: 443,
        payload: b"hello".to_vec(),
        options: Vec::new(),
        exts: Vec::new(),
    };
    let (_, got, out) = p.run(&nptv6_case(false, map), &flow.bytes());
    assert_eq!(name(got), "rewritten");
    assert_eq!(&out[8..24], &v6("2001:db8:1:d550::1234")[..]);
    assert_eq!(&out[40..], &flow.bytes()[40..], "L4 untouched");
    assert_checksums_l4(&out);

    // Every length the rule may use, each protocol, both directions.
    for len in [16u8, 32, 40, 48, 52, 56, 64] {
        let mask = |a: [u8; 16]| {
            let mut m = a;
            for (i, b) in m.iter_mut().enumerate() {
                let bits = (i32::from(len) - 8 * i as i32).clamp(0, 8);
                *b &= if bits == 0 { 0 } else { 0xffu8 << (8 - bits) };
            }
            m
        };
        let inside = mask(prefix([0xfd00, 0xabcd, 0x1234, 0x5678, 0, 0, 0, 0]));
        let outside = mask(prefix([0x2001, 0x0db8, 0xfeed, 0xbee0, 0, 0, 0, 0]));
        let out_map = Nptv6::new(inside, outside, len).expect("valid");
        for l4 in [L4::Tcp, L4::Udp, L4::Echo] {
            let mut host = inside;
            host[7] |= 0x77 & !mask([0xff; 16])[7];
            host[15] = 0x42;
            host[9] = 0x99;
            let f = Flow {
                src: host.to_vec(),
                l4,
                ..flow.clone()
            };
            let sent = f.bytes();
            let (_, got, out) = p.run(&nptv6_case(false, out_map), &sent);
            let what = format!("/{len} {l4:?}");
            assert_eq!(name(got), "rewritten", "{what}");
            assert_eq!(&out[40..], &sent[40..], "{what}: L4 untouched");
            assert_checksums_l4(&out);
            let new = &out[8..24];
            assert_eq!(mask(arr16(new)), outside, "{what}: the outside prefix");
            assert_eq!(sum_mod(new), sum_mod(&host), "{what}: the sum is kept");
            // Only the word RFC 6296 names changed outside the prefix.
            let word = if len <= 48 {
                3
            } else {
                (4..8)
                    .find(|i| host[2 * i..2 * i + 2] != [0xff, 0xff])
                    .expect("a word")
            };
            for i in 0..8 {
                let prefix_word = usize::from(len) > 16 * i;
                if i != word && !prefix_word {
                    assert_eq!(
                        new[2 * i..2 * i + 2],
                        host[2 * i..2 * i + 2],
                        "{what}: word {i}"
                    );
                }
            }
            assert_ne!(
                new[2 * word..2 * word + 2],
                [0xff, 0xff],
                "{what}: never 0xFFFF"
            );
            // And back, on the reply's destination.
            let reply = Flow {
                src: flow.dst.clone(),
                dst: new.to_vec(),
                ..f.clone()
            }
            .bytes();
            let (_, got, back) = p.run(&nptv6_case(true, out_map.reverse()), &reply);
            assert_eq!(name(got), "rewritten", "{what} back");
            assert_eq!(
                &back[24..40],
                &host[..],
                "{what}: back to the inside address"
            );
            assert_checksums_l4(&back);
        }
    }

    // Outside the prefix, or subnet 0xFFFF: untouched.
    let other = Flow {
        src: v6("fd99::1"),
        ..flow.clone()
    }
    .bytes();
    let (_, got, out) = p.run(&nptv6_case(false, map), &other);
    assert_eq!((name(got), &out), ("outside", &other));
    let ffff = Flow {
        src: v6("fd01:203:405:ffff::1"),
        ..flow.clone()
    }
    .bytes();
    let (_, got, out) = p.run(&nptv6_case(false, map), &ffff);
    assert_eq!((name(got), &out), ("unmappable", &ffff));
}

/// The L4 checksum of a whole IPv6 packet (no extension headers) verifies.
fn assert_checksums_l4(p: &[u8]) {
    l4_verifies(p[6], &p[8..24], &p[24..40], &p[40..], "NPTv6");
}

#[test]
fn icmpv6_errors_through_nptv6_translate_the_embedded_packet_too() {
    if !root_or_skip("icmpv6_errors_through_nptv6_translate_the_embedded_packet_too") {
        return;
    }
    let p = Prog::load();
    let inside = prefix([0xfd01, 0x0203, 0x0405, 0, 0, 0, 0, 0]);
    let outside = prefix([0x2001, 0x0db8, 0x0001, 0, 0, 0, 0, 0]);
    let map = Nptv6::new(inside, outside, 48).expect("valid");
    let host = v6("fd01:203:405:1::1234");
    let public = v6("2001:db8:1:d550::1234");
    let far = v6("2001:db8:ff::7");
    for l4 in [L4::Tcp, L4::Udp, L4::Echo] {
        let sent = Flow {
            src: host.clone(),
            dst: far.clone(),
            l4,
            sport: 40000,
            dport: 53,
            payload: vec![1; 40],
            options: Vec::new(),
            exts: Vec::new(),
        };
        let on_wire = sent.with(&public, &far, 40000, 53);
        for n in [48, 1000] {
            let arrived = error_about(&far, &public, 2, 0, [0, 0, 5, 0], &on_wire, n);
            let expected = error_about(&far, &host, 2, 0, [0, 0, 5, 0], &sent, n);
            let (_, got, out) = p.run(&nptv6_case(true, map.reverse()), &arrived);
            assert!(
                got == outcome::TRANSLATED || got == outcome::TRANSLATED_L4,
                "{l4:?} {n}: {}",
                name(got)
            );
            assert_same(&out, &expected, &format!("{l4:?} cut {n}"));
            assert_checksums(&out, "NPTv6 error");
        }
    }
}

// ------------------------------------------------------------------ sweep

/// splitmix64: small, seedable, good enough to draw packets.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.below(from.len() as u64) as usize]
    }
}

fn seed() -> u64 {
    match std::env::var("LWTKIT_SEED") {
        Ok(s) => {
            let parsed = match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            };
            parsed.unwrap_or_else(|e| panic!("LWTKIT_SEED `{s}`: {e}"))
        }
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    }
}

/// What the translation must do with a drawn error, decided here from the
/// packet's shape alone.
fn expected_outcome(
    is6: bool,
    kind: u8,
    l4: L4,
    ports: bool,
    d_len: usize,
    hdr: usize,
    n: usize,
) -> u32 {
    let error = if is6 {
        (1..=4).contains(&kind)
    } else {
        matches!(kind, 3 | 11 | 12)
    };
    if !error {
        return outcome::NOT_ERROR;
    }
    let n = n.min(d_len);
    let fixed = if is6 { 40 } else { 20 };
    if n < fixed || (!is6 && n < hdr) {
        return outcome::MALFORMED;
    }
    // For IPv6 `hdr` includes the extension headers: cut inside them, the
    // upper layer is absent.
    let l4_there = n >= hdr;
    let has_ports = matches!(l4, L4::Udp | L4::UdpNoSum | L4::Tcp);
    // Only the translated port must be there: the embedded source port
    // (the sweep's rules rewrite the outer destination).
    if ports && has_ports && l4_there && n < hdr + 2 {
        return outcome::MALFORMED;
    }
    let csum_end = match l4 {
        L4::Tcp => Some(18),
        L4::Udp => Some(8),
        L4::Echo if is6 => Some(4),
        _ => None,
    };
    match csum_end {
        Some(end) if l4_there && n >= hdr + end => outcome::TRANSLATED_L4,
        _ => outcome::TRANSLATED,
    }
}

#[test]
fn random_errors_translate_exactly_as_built_from_the_inside() {
    if !root_or_skip("random_errors_translate_exactly_as_built_from_the_inside") {
        return;
    }
    let seed = seed();
    eprintln!("seed {seed:#x} (LWTKIT_SEED={seed:#x} replays this run)");
    let mut rng = Rng(seed);
    let p = Prog::load();
    let mut counts = std::collections::BTreeMap::new();
    for i in 0..3000 {
        let is6 = rng.below(2) == 1;
        let g = if is6 { gateway6() } else { gateway4() };
        // Random addresses in the gateway's roles.
        let (inside, public, far) = if is6 {
            let mut a = [g.inside.clone(), g.public.clone(), g.far.clone()];
            for x in &mut a {
                x[8..].copy_from_slice(&rng.bytes(8));
            }
            (a[0].clone(), a[1].clone(), a[2].clone())
        } else {
            let mut a = [g.inside.clone(), g.public.clone(), g.far.clone()];
            for x in &mut a {
                x[3] = rng.below(254) as u8 + 1;
                x[2] = rng.next() as u8;
            }
            (a[0].clone(), a[1].clone(), a[2].clone())
        };
        let l4 = rng.pick(&[L4::Udp, L4::UdpNoSum, L4::Tcp, L4::Echo, L4::Gre]);
        let ports = rng.below(2) == 1 && matches!(l4, L4::Udp | L4::UdpNoSum | L4::Tcp);
        let (iport, pport) = (rng.below(65535) as u16 + 1, rng.below(65535) as u16 + 1);
        let (iport, pport) = if ports {
            (iport, pport)
        } else {
            (pport, pport)
        };
        let mut sent = Flow {
            src: inside.clone(),
            dst: far.clone(),
            l4,
            sport: iport,
            dport: rng.below(65535) as u16 + 1,
            payload: {
                let n = rng.below(80) as usize;
                rng.bytes(n)
            },
            options: Vec::new(),
            exts: Vec::new(),
        };
        if is6 {
            let n = rng.below(3) as usize;
            let sizes: Vec<u8> = (0..n).map(|_| rng.below(3) as u8).collect();
            sent.exts = dest_opts(&sizes);
        } else {
            let words = rng.below(11) as usize;
            sent.options = (0..words * 4)
                .map(|i| if i + 1 == words * 4 { 0 } else { 1 })
                .collect();
        }
        let on_wire = sent.with(&public, &far, pport, sent.dport);
        // Mostly errors; some informational messages and redirects.
        let kinds: &[u8] = if is6 {
            &[1, 2, 3, 4, 1, 2, 3, 4, 128, 135, 137]
        } else {
            &[3, 11, 12, 3, 11, 12, 3, 0, 4, 5, 8]
        };
        let kind = rng.pick(kinds);
        let code = rng.below(6) as u8;
        let rest = [
            rng.next() as u8,
            rng.next() as u8,
            rng.next() as u8,
            rng.next() as u8,
        ];
        let whole = on_wire.bytes();
        let hdr = if is6 {
            40 + sent.exts.len()
        } else {
            20 + sent.options.len()
        };
        let n = match rng.below(4) {
            0 => whole.len(),
            1 => hdr + rng.below(24) as usize,
            _ => rng.below(whole.len() as u64 + 1) as usize,
        };
        // ICMP errors are small (RFC 792/4443): the whole message fits.
        let sender = if rng.below(2) == 0 {
            far.clone()
        } else {
            g.router.clone()
        };
        let arrived = icmp(&sender, &public, kind, code, rest, cut(&whole, n), &[]);
        let expected_pkt = icmp(
            &sender,
            &inside,
            kind,
            code,
            rest,
            &embedded_expected(&sent, &on_wire, n),
            &[],
        );
        let want = expected_outcome(is6, kind, l4, ports, whole.len(), hdr, n);
        let case = translation(
            &public,
            &inside,
            true,
            if ports { (pport, iport) } else { (0, 0) },
        );
        let (rc, got, out) = p.run(&case, &arrived);
        let what = format!(
            "case {i} (seed {seed:#x}): v6 {is6} type {kind} code {code} {l4:?} ports {ports} opts/exts {} cut {n} of {}",
            hdr,
            whole.len()
        );
        assert_eq!((rc, name(got)), (0, name(want)), "{what}");
        match want {
            outcome::TRANSLATED | outcome::TRANSLATED_L4 => {
                assert_same(&out, &expected_pkt, &what);
                assert_checksums(&out, &what);
            }
            _ => assert_same(&out, &arrived, &what),
        }
        *counts.entry(name(got)).or_insert(0) += 1;
    }
    eprintln!("outcomes: {counts:?}");
    for must in ["translated", "translated+l4", "not-error", "malformed"] {
        assert!(
            counts.get(must).copied().unwrap_or(0) > 50,
            "too few {must}: {counts:?}"
        );
    }
}

#[test]
fn the_object_holds_the_maps_lwtkit_common_names() {
    let open = ObjectBuilder::default().open_memory(OBJ).expect("opens");
    let mut found: Vec<String> = open
        .maps()
        .map(|m| m.name().to_string_lossy().into_owned())
        .filter(|n| !n.contains('.'))
        .collect();
    found.sort();
    let mut want: Vec<String> = maps::nat_test::ALL
        .iter()
        .chain(maps::IN_EVERY_OBJECT)
        .map(|s| s.to_string())
        .collect();
    want.sort();
    assert_eq!(found, want);
    let progs: Vec<(String, String)> = open
        .progs()
        .map(|p| {
            (
                p.name().to_string_lossy().into_owned(),
                p.section().to_string_lossy().into_owned(),
            )
        })
        .collect();
    assert_eq!(
        progs,
        [(
            "nat_test_xmit".to_string(),
            maps::sections::LWT_XMIT.to_string()
        )]
    );
}
