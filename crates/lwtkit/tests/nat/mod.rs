//! Shared by the NAT packet tests (`nat_icmp.rs`, `nptv6.rs`): the
//! test-only `lwtkit-nat-test` program under BPF_PROG_TEST_RUN, checksums
//! verified with an RFC 1071 sum written here (never the code under test),
//! packets built with etherparse, and a seedable generator.
#![allow(dead_code)]

use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{
    IcmpEchoHeader, Icmpv4Type, Icmpv6Type, Ipv4Header, Ipv4Options, TcpHeader, UdpHeader,
};
use libbpf_rs::{MapCore, MapFlags, Object, ObjectBuilder, ProgramInput};
use lwtkit::filter::testrun::ethernet_frame;
use lwtkit_common::{
    maps,
    nat_icmp::{op, outcome, NatCase, Translation},
};

pub const OBJ: &[u8] = include_bytes!(env!("LWTKIT_NAT_TEST_OBJ"));

// ---------------------------------------------------------------- harness

pub struct Prog {
    object: Object,
}

impl Prog {
    pub fn load() -> Prog {
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

    /// Writes the case the program applies to every packet.
    pub fn set_case(&self, case: &NatCase) {
        // SAFETY: NatCase is repr(C) with explicit padding, all bytes initialised.
        let value = unsafe {
            std::slice::from_raw_parts((case as *const NatCase).cast::<u8>(), size_of::<NatCase>())
        };
        self.map(maps::nat_test::CASE)
            .update(&0u32.to_ne_bytes(), value, MapFlags::ANY)
            .expect("case written");
    }

    /// The outcome of the last packet the program saw.
    pub fn last_outcome(&self) -> u32 {
        let result = self
            .map(maps::nat_test::RESULT)
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
            .expect("lookup")
            .expect("one slot");
        u32::from_ne_bytes(result[..4].try_into().expect("4 bytes"))
    }

    /// Pins the program at `path` (on bpffs), for iproute2 to attach.
    pub fn pin(&self, path: &std::path::Path) {
        let mut prog = self.object.progs_mut().next().expect("one program");
        prog.pin(path).expect("pinned");
    }

    /// Runs the program once on `l3` with `case`: the return code, the
    /// outcome it recorded and the packet as it left.
    pub fn run(&self, case: &NatCase, l3: &[u8]) -> (i32, u32, Vec<u8>) {
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

pub fn is_root() -> bool {
    extern "C" {
        fn geteuid() -> u32;
    }
    // SAFETY: geteuid has no preconditions.
    unsafe { geteuid() == 0 }
}

/// Whether to run (root), skip, or fail for want of root under CI.
pub fn root_or_skip(test: &str) -> bool {
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
pub fn sum(data: &[u8], mut acc: u64) -> u64 {
    for c in data.chunks(2) {
        acc += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    acc
}

pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// A checksummed region verifies when its sum (with the checksum) is 0xFFFF.
pub fn verifies(acc: u64) -> bool {
    fold(acc) == 0xffff
}

/// Checks every checksum the packet carries: the outer IPv4 header, the
/// ICMP or ICMPv6 message (with its pseudo-header), the embedded IPv4
/// header when whole, and the embedded L4 checksum when the embedded
/// datagram is whole. Returns what it checked, for the messages.
pub fn assert_checksums(p: &[u8], what: &str) {
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

pub fn l4_verifies(proto: u8, src: &[u8], dst: &[u8], l4: &[u8], what: &str) {
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
pub fn outer_l4_v6(p: &[u8]) -> usize {
    let mut nh = p[6];
    let mut off = 40;
    while nh == 60 && off + 2 <= p.len() {
        nh = p[off];
        off += (usize::from(p[off + 1]) + 1) * 8;
    }
    off
}

pub fn last_next_header(p: &[u8]) -> u8 {
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
pub enum L4 {
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
pub struct Flow {
    pub src: Vec<u8>,
    pub dst: Vec<u8>,
    pub l4: L4,
    pub sport: u16,
    pub dport: u16,
    pub payload: Vec<u8>,
    /// IPv4 options (a multiple of 4 bytes, at most 40).
    pub options: Vec<u8>,
    /// IPv6 destination-options headers, each (n + 1) * 8 bytes long.
    pub exts: Vec<u8>,
}

impl Flow {
    pub fn v6(&self) -> bool {
        self.src.len() == 16
    }

    pub fn with(&self, src: &[u8], dst: &[u8], sport: u16, dport: u16) -> Flow {
        Flow {
            src: src.to_vec(),
            dst: dst.to_vec(),
            sport,
            dport,
            ..self.clone()
        }
    }

    pub fn proto(&self) -> u8 {
        match self.l4 {
            L4::Udp | L4::UdpNoSum => 17,
            L4::Tcp => 6,
            L4::Echo if self.v6() => 58,
            L4::Echo => 1,
            L4::Gre => 47,
        }
    }

    /// The upper-layer header and payload, checksummed by etherparse.
    pub fn l4_bytes(&self) -> Vec<u8> {
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
    pub fn bytes(&self) -> Vec<u8> {
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
pub fn dest_opts(sizes: &[u8]) -> Vec<u8> {
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

pub fn arr4(a: &[u8]) -> [u8; 4] {
    a.get(..4)
        .and_then(|s| s.try_into().ok())
        .unwrap_or_default()
}

pub fn arr16(a: &[u8]) -> [u8; 16] {
    a.try_into().unwrap_or_default()
}

pub fn v4(a: &str) -> Vec<u8> {
    a.parse::<Ipv4Addr>().expect("v4").octets().to_vec()
}

pub fn v6(a: &str) -> Vec<u8> {
    a.parse::<Ipv6Addr>().expect("v6").octets().to_vec()
}

/// An ICMP (ICMPv6 when the addresses are) message of `kind`/`code` with
/// bytes 4..8 `rest`, carrying `body`, from `src` to `dst`, checksummed by
/// etherparse. `outer_exts`: IPv6 destination options before the ICMPv6
/// header.
pub fn icmp(
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

pub fn cut(v: &[u8], n: usize) -> &[u8] {
    &v[..n.min(v.len())]
}

pub fn translation(from: &[u8], to: &[u8], dst: bool, ports: (u16, u16)) -> NatCase {
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

pub fn name(code: u32) -> &'static str {
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

pub fn assert_same(got: &[u8], want: &[u8], what: &str) {
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

/// What the inside host should find embedded: what it sent, cut to `n`
/// bytes, except a checksum field cut in half, whose one byte stays as it
/// was on the wire (`on_wire`).
pub fn embedded_expected(sent: &Flow, on_wire: &Flow, n: usize) -> Vec<u8> {
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
pub fn error_about(
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

// ------------------------------------------------------------------ sweep

/// splitmix64: small, seedable, good enough to draw packets.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    pub fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.below(from.len() as u64) as usize]
    }
}

pub fn seed() -> u64 {
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
