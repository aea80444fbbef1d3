//! The filter program's translations against the reference model: random
//! IPv4 and IPv6 packets (TCP, UDP, ICMP, ICMPv6; IPv4 options, IPv6
//! extension headers; first and later fragments; UDP without a checksum)
//! meet NAT rules (one address, NETMAP prefixes, a destination or source
//! port, NPTv6 /64 and /48)
//! through BPF_PROG_TEST_RUN on `xmit`. The packet the program leaves must
//! carry the model's addresses and ports, every other byte unchanged but
//! the checksums, and (for whole packets) checksums that hold, computed
//! here from the bytes. Each run draws a seed; `LWTKIT_SEED` replays one.
//! Needs root.
use std::net::IpAddr;

use lwtkit::{
    filter::{
        handling::Handling,
        model::{action_for, error_action, judge, parse_packet, Class},
        rule::{Rule, Verdict},
        testrun::Harness,
    },
    Hook,
};

const RULES: [&str; 9] = [
    "src 10.1.0.0/24 snat 203.0.113.0/24",
    "dst 198.51.100.7 proto udp dnat 10.1.0.9 port 5353",
    "dst 198.51.100.8 dnat 10.1.0.8",
    "src fd01::/64 snat fd99::/64",
    "src fd02::/48 snat 2001:db8:7::/48",
    "dst fd00::7 dnat fd01::9",
    "dst fd00::8 proto tcp dnat fd01::8 port 8443",
    // The reply side of a port forward: the source port rewritten.
    "src 192.0.2.1 proto tcp sport 40000-40049 snat 203.0.113.80 port 80",
    "src fd03::1 proto udp snat fd99::3 port 53",
];

const V4_SRC: [[u8; 4]; 3] = [[10, 1, 0, 5], [10, 1, 0, 200], [192, 0, 2, 1]];
const V4_DST: [[u8; 4]; 3] = [[198, 51, 100, 7], [198, 51, 100, 8], [198, 51, 100, 9]];
const V6_SRC: [&str; 4] = [
    "fd01::2",
    "fd01::ffff:ffff:1:2",
    "fd02:0:0:12::9",
    "fd03::1",
];
const V6_DST: [&str; 3] = ["fd00::7", "fd00::8", "fd00::9"];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The Internet checksum of `parts` laid end to end (each of even length
/// but the last).
fn sum(parts: &[&[u8]]) -> u16 {
    let mut s = 0u64;
    let bytes: Vec<u8> = parts.concat();
    for c in bytes.chunks(2) {
        s += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// A packet: bytes, where its L4 header starts, and whether it is whole
/// (not a fragment).
struct Built {
    bytes: Vec<u8>,
    l4: usize,
    proto: u8,
    whole: bool,
}

fn l4_header(rng: &mut Rng, proto: u8) -> Vec<u8> {
    let payload_len = 4 + 4 * rng.below(6) as usize;
    let mut l4 = match proto {
        6 => {
            let mut t = vec![0u8; 20];
            t[12] = 0x50;
            t[13] = 0x18;
            t
        }
        17 => vec![0u8; 8],
        _ => {
            let mut i = vec![0u8; 8];
            i[0] = if proto == 1 { 8 } else { 128 };
            i[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
            i
        }
    };
    if proto == 6 || proto == 17 {
        l4[0..2].copy_from_slice(&(40000 + rng.below(100) as u16).to_be_bytes());
        let dport = [53u16, 80, 443, 5353][rng.below(4) as usize];
        l4[2..4].copy_from_slice(&dport.to_be_bytes());
    }
    l4.extend((0..payload_len).map(|_| rng.below(256) as u8));
    if proto == 17 {
        let n = l4.len() as u16;
        l4[4..6].copy_from_slice(&n.to_be_bytes());
    }
    l4
}

/// The L4 checksum field's offset in the L4 header, and whether it sums a
/// pseudo-header.
fn csum_at(proto: u8) -> Option<(usize, bool)> {
    match proto {
        6 => Some((16, true)),
        17 => Some((6, true)),
        1 => Some((2, false)),
        58 => Some((2, true)),
        _ => None,
    }
}

/// The L4 checksum over `l4` with the pseudo-header of `src`, `dst`.
fn l4_sum(v6: bool, src: &[u8], dst: &[u8], proto: u8, l4: &[u8]) -> u16 {
    let pseudo = csum_at(proto).is_some_and(|(_, p)| p);
    let len = l4.len() as u32;
    if !pseudo {
        return sum(&[l4]);
    }
    if v6 {
        sum(&[src, dst, &len.to_be_bytes(), &[0, 0, 0, proto], l4])
    } else {
        sum(&[src, dst, &[0, proto], &(len as u16).to_be_bytes(), l4])
    }
}

fn build_v4(rng: &mut Rng) -> Built {
    let proto = [6u8, 17, 1][rng.below(3) as usize];
    let src = V4_SRC[rng.below(3) as usize];
    let dst = V4_DST[rng.below(3) as usize];
    let words = rng.below(3) as usize;
    let ihl = 20 + 4 * words;
    let mut l4 = l4_header(rng, proto);
    let frag = rng.below(6);
    // 0..3: whole; 4: a first fragment; 5: a later fragment.
    let (flags, whole) = match frag {
        4 => (0x2000u16, false),
        5 => (0x0004u16, false),
        _ => (0x4000u16, true),
    };
    if let Some((at, _)) = csum_at(proto) {
        let zero_udp = proto == 17 && rng.below(4) == 0;
        if !zero_udp {
            let c = l4_sum(false, &src, &dst, proto, &l4);
            l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
        }
    }
    let mut p = vec![0u8; ihl];
    p[0] = 0x40 | (ihl / 4) as u8;
    let total = (ihl + l4.len()) as u16;
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p[4..6].copy_from_slice(&0x0badu16.to_be_bytes());
    p[6..8].copy_from_slice(&flags.to_be_bytes());
    p[8] = 64;
    p[9] = proto;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    // NOP options.
    p[20..ihl].fill(1);
    let c = sum(&[&p]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend(&l4);
    Built {
        bytes: p,
        l4: ihl,
        proto,
        whole,
    }
}

fn v6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>().expect("ipv6").octets()
}

fn build_v6(rng: &mut Rng) -> Built {
    let proto = [6u8, 17, 58][rng.below(3) as usize];
    let src = v6(V6_SRC[rng.below(4) as usize]);
    let dst = v6(V6_DST[rng.below(3) as usize]);
    let mut exts: Vec<u8> = Vec::new();
    let mut kinds: Vec<u8> = (0..rng.below(3))
        .map(|_| [60u8, 0][rng.below(2) as usize])
        .collect();
    // Hop-by-hop only first.
    kinds.sort_by_key(|k| *k != 0);
    kinds.dedup_by(|a, b| *a == 0 && *b == 0);
    let frag = rng.below(6);
    let whole = frag < 4;
    if !whole {
        kinds.push(44);
    }
    let mut l4 = l4_header(rng, proto);
    if let Some((at, _)) = csum_at(proto) {
        let c = l4_sum(true, &src, &dst, proto, &l4);
        l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
    for (i, k) in kinds.iter().enumerate() {
        let next = kinds.get(i + 1).copied().unwrap_or(proto);
        if *k == 44 {
            let off: u16 = if frag == 4 { 1 } else { (5 << 3) | 1 };
            exts.extend([next, 0]);
            exts.extend(off.to_be_bytes());
            exts.extend(0x1234_5678u32.to_be_bytes());
        } else {
            let len = rng.below(2) as u8;
            exts.extend([next, len]);
            // PadN over the rest of the header.
            let rest = 8 * (usize::from(len) + 1) - 2;
            exts.extend([1u8, (rest - 2) as u8]);
            exts.extend(std::iter::repeat_n(0u8, rest - 2));
        }
    }
    let mut p = vec![0u8; 40];
    p[0] = 0x60;
    let plen = (exts.len() + l4.len()) as u16;
    p[4..6].copy_from_slice(&plen.to_be_bytes());
    p[6] = kinds.first().copied().unwrap_or(proto);
    p[7] = 64;
    p[8..24].copy_from_slice(&src);
    p[24..40].copy_from_slice(&dst);
    let l4_at = 40 + exts.len();
    p.extend(&exts);
    p.extend(&l4);
    Built {
        bytes: p,
        l4: l4_at,
        proto,
        whole,
    }
}

fn addr(b: &[u8], v6: bool, dst: bool) -> IpAddr {
    if v6 {
        let at = if dst { 24 } else { 8 };
        IpAddr::from(<[u8; 16]>::try_from(&b[at..at + 16]).expect("16 bytes"))
    } else {
        let at = if dst { 16 } else { 12 };
        IpAddr::from(<[u8; 4]>::try_from(&b[at..at + 4]).expect("4 bytes"))
    }
}

fn seed() -> u64 {
    match std::env::var("LWTKIT_SEED") {
        Ok(s) => match s.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => s.parse(),
        }
        .unwrap_or_else(|e| panic!("LWTKIT_SEED `{s}`: {e}")),
        Err(_) => {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        }
    }
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

#[test]
fn translations_match_the_model_and_checksums_hold() {
    if !root("translations_match_the_model_and_checksums_hold") {
        return;
    }
    let seed = seed();
    eprintln!("seed {seed:#x} (LWTKIT_SEED={seed:#x} replays this run)");
    let rules: Vec<Rule> = RULES
        .iter()
        .zip(1..)
        .map(|(text, id)| Rule {
            id,
            spec: text.parse().unwrap_or_else(|e| panic!("`{text}`: {e}")),
        })
        .collect();
    let handling = Handling::new(Verdict::Allow);
    let h = Harness::filter_with(&rules, &handling, Hook::Xmit, 0).expect("filter loads");
    let mut rng = Rng(seed);
    let mut translated = 0;
    let mut sport_rewritten = 0;
    for n in 0..3000 {
        let v6 = rng.below(2) == 1;
        let p = if v6 {
            build_v6(&mut rng)
        } else {
            build_v4(&mut rng)
        };
        let key = parse_packet(&p.bytes);
        let want = action_for(&rules, &handling, &key);
        let (rc, out) = h.run_out(&p.bytes).expect("test run");
        let ctx = || {
            format!(
                "packet {n} (seed {seed:#x}): {:02x?}\nout {out:02x?}\nwant {want:?}",
                p.bytes
            )
        };
        assert_eq!(out.len(), p.bytes.len(), "{}", ctx());
        let Some((_, e)) = want.clone() else {
            assert_eq!(rc, 0, "{}", ctx());
            assert_eq!(out, p.bytes, "untouched: {}", ctx());
            continue;
        };
        translated += 1;
        if p.whole && e.sport.is_some() {
            sport_rewritten += 1;
        }
        assert_eq!(rc, if e.reroute { 128 } else { 0 }, "{}", ctx());
        assert_eq!(
            addr(&out, v6, false),
            e.src.unwrap_or(addr(&p.bytes, v6, false)),
            "src: {}",
            ctx()
        );
        assert_eq!(
            addr(&out, v6, true),
            e.dst.unwrap_or(addr(&p.bytes, v6, true)),
            "dst: {}",
            ctx()
        );
        let has_ports = p.whole || key.class != Class::LaterFragment;
        if has_ports && (p.proto == 6 || p.proto == 17) {
            let sport = u16::from_be_bytes([out[p.l4], out[p.l4 + 1]]);
            assert_eq!(sport, e.sport.unwrap_or(key.sport), "sport: {}", ctx());
            let dport = u16::from_be_bytes([out[p.l4 + 2], out[p.l4 + 3]]);
            assert_eq!(dport, e.dport.unwrap_or(key.dport), "dport: {}", ctx());
        }
        // Every other byte is as it was, but the checksums.
        let csum = csum_at(p.proto).map(|(at, _)| p.l4 + at);
        for (i, (a, b)) in p.bytes.iter().zip(&out).enumerate() {
            let addr_bytes = if v6 { 8..40 } else { 12..20 };
            let l3_sum = !v6 && (10..12).contains(&i);
            let l4_sum = has_ports && csum.is_some_and(|c| (c..c + 2).contains(&i));
            let port = has_ports
                && ((e.sport.is_some() && (p.l4..p.l4 + 2).contains(&i))
                    || (e.dport.is_some() && (p.l4 + 2..p.l4 + 4).contains(&i)));
            if !(addr_bytes.contains(&i) || l3_sum || l4_sum || port) {
                assert_eq!(a, b, "byte {i}: {}", ctx());
            }
        }
        if !v6 {
            let ihl = usize::from(out[0] & 0xf) * 4;
            assert_eq!(sum(&[&out[..ihl]]), 0, "IPv4 header checksum: {}", ctx());
        }
        if p.whole {
            if let Some((at, _)) = csum_at(p.proto) {
                let l4 = &out[p.l4..];
                let field = u16::from_be_bytes([l4[at], l4[at + 1]]);
                if p.proto == 17
                    && !v6
                    && u16::from_be_bytes([p.bytes[p.l4 + 6], p.bytes[p.l4 + 7]]) == 0
                {
                    assert_eq!(field, 0, "a UDP checksum of zero stays zero: {}", ctx());
                } else {
                    let (s, d) = if v6 {
                        (&out[8..24], &out[24..40])
                    } else {
                        (&out[12..16], &out[16..20])
                    };
                    assert_eq!(
                        l4_sum(v6, s, d, p.proto, l4),
                        0,
                        "L4 checksum holds: {}",
                        ctx()
                    );
                }
            }
        }
    }
    eprintln!("{translated} of 3000 packets translated, {sport_rewritten} with a new source port");
    assert!(
        sport_rewritten > 20,
        "only {sport_rewritten} packets had their source port rewritten"
    );
    assert!(
        translated > 500,
        "only {translated} packets were translated"
    );
}

/// A port forward both ways (the public 203.0.113.7:80 / fd99::7:80 to the
/// inside 10.1.0.2:8080 / fd01::2:8080, TCP and UDP), and the inside
/// network's address rules behind it (NETMAP, NPTv6), which the error of a
/// flow must not take instead of the flow's port rule.
const FORWARD: [&str; 10] = [
    "dst 203.0.113.7 proto tcp dport 80 dnat 10.1.0.2 port 8080",
    "dst 203.0.113.7 proto udp dport 80 dnat 10.1.0.2 port 8080",
    "src 10.1.0.2 proto tcp sport 8080 snat 203.0.113.7 port 80",
    "src 10.1.0.2 proto udp sport 8080 snat 203.0.113.7 port 80",
    "dst fd99::7 proto tcp dport 80 dnat fd01::2 port 8080",
    "dst fd99::7 proto udp dport 80 dnat fd01::2 port 8080",
    "src fd01::2 proto tcp sport 8080 snat fd99::7 port 80",
    "src fd01::2 proto udp sport 8080 snat fd99::7 port 80",
    "src 10.1.0.0/24 snat 198.51.100.0/24",
    "src fd01::/64 snat fd98::/64",
];

/// An ICMP (ICMPv6) error of `kind` from `src` to `dst` about the packet
/// `inner` (its IP header and L4 header, checksums right), cut to `keep`
/// bytes of it; the outer checksums right.
fn icmp_error(v6: bool, kind: u8, src: &[u8], dst: &[u8], inner: &[u8], keep: usize) -> Vec<u8> {
    let mut icmp = vec![kind, 0, 0, 0, 0, 0, 0x05, 0x78];
    icmp.extend(&inner[..keep.min(inner.len())]);
    let c = if v6 {
        l4_sum(true, src, dst, 58, &icmp)
    } else {
        sum(&[&icmp])
    };
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    ip_packet(v6, if v6 { 58 } else { 1 }, src, dst, &icmp)
}

/// An IP packet of `proto` from `src` to `dst` around `l4` (IPv4: its
/// header checksum right).
fn ip_packet(v6: bool, proto: u8, src: &[u8], dst: &[u8], l4: &[u8]) -> Vec<u8> {
    let mut p;
    if v6 {
        p = vec![0u8; 40];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&(l4.len() as u16).to_be_bytes());
        p[6] = proto;
        p[7] = 64;
        p[8..24].copy_from_slice(src);
        p[24..40].copy_from_slice(dst);
    } else {
        p = vec![0u8; 20];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
        p[8] = 64;
        p[9] = proto;
        p[12..16].copy_from_slice(src);
        p[16..20].copy_from_slice(dst);
        let c = sum(&[&p]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
    }
    p.extend(l4);
    p
}

/// A TCP or UDP packet from `src`:`sport` to `dst`:`dport`, its checksum right.
fn flow_packet(v6: bool, proto: u8, src: &[u8], dst: &[u8], sport: u16, dport: u16) -> Vec<u8> {
    let mut l4 = if proto == 6 {
        vec![0u8; 20]
    } else {
        vec![0u8; 8]
    };
    l4[0..2].copy_from_slice(&sport.to_be_bytes());
    l4[2..4].copy_from_slice(&dport.to_be_bytes());
    if proto == 6 {
        l4[12] = 0x50;
        l4[13] = 0x18;
    }
    l4.extend(b"payload!");
    if proto == 17 {
        let n = l4.len() as u16;
        l4[4..6].copy_from_slice(&n.to_be_bytes());
    }
    let (at, _) = csum_at(proto).expect("tcp or udp");
    let c = l4_sum(v6, src, dst, proto, &l4);
    l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
    ip_packet(v6, proto, src, dst, &l4)
}

/// One error of the kinds a port-forward gateway meets, drawn at random:
/// (a) from a router beyond the client about the public side's reply,
/// addressed to the public address; (b) from the inside server about the
/// forwarded packet, to the client. Sometimes the flow is not the
/// forward's (another port), the error comes from another inside host, is
/// cut before the ports, or is not a translated type.
fn forward_error(rng: &mut Rng) -> (Vec<u8>, bool) {
    let v6 = rng.below(2) == 1;
    let proto = [6u8, 17][rng.below(2) as usize];
    // The public address, the inside server, the client, a router beyond
    // the client, another inside host.
    let [public, inside, client, router, other] = if v6 {
        ["fd99::7", "fd01::2", "fd00::2", "fd00::fe", "fd01::fe"].map(v6_addr)
    } else {
        [
            [203, 0, 113, 7],
            [10, 1, 0, 2],
            [10, 0, 0, 2],
            [10, 0, 0, 254],
            [10, 1, 0, 254],
        ]
        .map(|a: [u8; 4]| a.to_vec())
    };
    let cport = 40000 + rng.below(1000) as u16;
    let odd = rng.below(8);
    let kind = if v6 {
        [1u8, 2, 3, 4][rng.below(4) as usize]
    } else if odd == 7 {
        [4u8, 5][rng.below(2) as usize]
    } else {
        [3u8, 11, 12][rng.below(3) as usize]
    };
    // The embedded packet whole, or cut two bytes into its ports.
    let keep = |inner: &[u8]| {
        let l4 = if proto == 6 { 20 } else { 8 };
        if odd == 2 {
            inner.len() - b"payload!".len() - l4 + 2
        } else {
            inner.len()
        }
    };
    let mut p = if rng.below(2) == 0 {
        // (a): the reply public:80 -> client, reported to the public address.
        let sport = if odd == 1 { 81 } else { 80 };
        let inner = flow_packet(v6, proto, &public, &client, sport, cport);
        icmp_error(v6, kind, &router, &public, &inner, keep(&inner))
    } else {
        // (b): client -> inside:8080 reported by the inside host (or
        // another inside host: a router on the inside).
        let dport = if odd == 1 { 8081 } else { 8080 };
        let inner = flow_packet(v6, proto, &client, &inside, cport, dport);
        let from = if odd == 3 { &other } else { &inside };
        icmp_error(v6, kind, from, &client, &inner, keep(&inner))
    };
    // Now and then an error about a later fragment (no ports).
    if odd == 4 && !v6 {
        let e = 28;
        p[e + 6] = 0x00;
        p[e + 7] = 0x10;
        let c = {
            let mut h = p[e..e + 20].to_vec();
            h[10] = 0;
            h[11] = 0;
            sum(&[&h])
        };
        p[e + 10..e + 12].copy_from_slice(&c.to_be_bytes());
        let mut icmp = p[20..].to_vec();
        icmp[2] = 0;
        icmp[3] = 0;
        let c = sum(&[&icmp]);
        p[22..24].copy_from_slice(&c.to_be_bytes());
    }
    let whole_inner = odd != 2;
    (p, whole_inner)
}

fn v6_addr(s: &str) -> Vec<u8> {
    v6(s).to_vec()
}

/// The addresses (at `src_at`, `dst_at`) and ports of the embedded packet
/// of an error whose ICMP header is at `icmp`.
struct Inner {
    at: usize,
    l4: usize,
    proto: u8,
}

fn inner_of(p: &[u8]) -> Inner {
    let v6 = p[0] >> 4 == 6;
    let at = if v6 { 48 } else { 28 };
    if v6 {
        Inner {
            at,
            l4: at + 40,
            proto: p[at + 6],
        }
    } else {
        Inner {
            at,
            l4: at + usize::from(p[at] & 0xf) * 4,
            proto: p[at + 9],
        }
    }
}

#[test]
fn icmp_errors_about_port_forwarded_flows_match_the_model() {
    if !root("icmp_errors_about_port_forwarded_flows_match_the_model") {
        return;
    }
    let seed = seed();
    eprintln!("seed {seed:#x} (LWTKIT_SEED={seed:#x} replays this run)");
    let parse = |texts: &[&str]| -> Vec<Rule> {
        texts
            .iter()
            .zip(1..)
            .map(|(text, id)| Rule {
                id,
                spec: text.parse().unwrap_or_else(|e| panic!("`{text}`: {e}")),
            })
            .collect()
    };
    // The forward; the forward under a default drop; the forward behind a
    // drop of every ICMP error (a drop stays a drop).
    let forward = parse(&FORWARD);
    let mut guarded_texts = vec!["proto icmp drop", "proto icmpv6 drop"];
    guarded_texts.extend(FORWARD);
    let guarded = parse(&guarded_texts);
    let policies = [
        ("forward", &forward, Handling::new(Verdict::Allow)),
        ("default drop", &forward, Handling::new(Verdict::Drop)),
        ("icmp dropped", &guarded, Handling::new(Verdict::Allow)),
    ];
    let mut rng = Rng(seed);
    let mut by_flow = [[0u32; 2]; 2];
    let mut port_rewritten = 0;
    let mut dropped = 0;
    for (name, rules, handling) in &policies {
        let h = Harness::filter_with(rules, handling, Hook::Xmit, 0).expect("filter loads");
        for n in 0..600 {
            let (p, whole_inner) = forward_error(&mut rng);
            let v6 = p[0] >> 4 == 6;
            let want = error_action(rules, &p);
            let (rc, out) = h.run_out(&p).expect("test run");
            let ctx = || {
                format!(
                    "{name}, packet {n} (seed {seed:#x}): {p:02x?}\nout {out:02x?}\nwant {want:?}"
                )
            };
            assert_eq!(out.len(), p.len(), "{}", ctx());
            let Some((id, e)) = want.clone() else {
                // Judged as any packet: its own rule or the default.
                let key = parse_packet(&p);
                let (verdict, _) = judge(rules, handling, &key);
                if verdict == Verdict::Drop {
                    dropped += u32::from(*name == "icmp dropped");
                    assert_eq!(rc, 2, "dropped: {}", ctx());
                    continue;
                }
                match action_for(rules, handling, &key) {
                    None => {
                        assert_eq!(rc, 0, "{}", ctx());
                        assert_eq!(out, p, "untouched: {}", ctx());
                    }
                    Some((_, fx)) => {
                        assert_eq!(rc, if fx.reroute { 128 } else { 0 }, "{}", ctx());
                        assert_eq!(
                            addr(&out, v6, false),
                            fx.src.unwrap_or(addr(&p, v6, false)),
                            "src: {}",
                            ctx()
                        );
                        assert_eq!(
                            addr(&out, v6, true),
                            fx.dst.unwrap_or(addr(&p, v6, true)),
                            "dst: {}",
                            ctx()
                        );
                    }
                }
                continue;
            };
            assert_ne!(
                *name,
                "icmp dropped",
                "a drop of the error itself stands: {}",
                ctx()
            );
            let rule = &rules[(id - 1) as usize].spec;
            let dnat = e.effect.dst.is_some();
            by_flow[usize::from(v6)][usize::from(dnat)] += 1;
            assert_eq!(rc, if e.effect.reroute { 128 } else { 0 }, "{}", ctx());
            // The outer header.
            assert_eq!(
                addr(&out, v6, false),
                e.effect.src.unwrap_or(addr(&p, v6, false)),
                "src: {}",
                ctx()
            );
            assert_eq!(
                addr(&out, v6, true),
                e.effect.dst.unwrap_or(addr(&p, v6, true)),
                "dst: {}",
                ctx()
            );
            // The embedded packet: the opposite address and port.
            let i = inner_of(&p);
            let inner_addr = |b: &[u8], dst: bool| addr(&b[i.at..], v6, dst);
            assert_eq!(
                inner_addr(&out, false),
                e.inner_src.unwrap_or(inner_addr(&p, false)),
                "embedded src: {}",
                ctx()
            );
            assert_eq!(
                inner_addr(&out, true),
                e.inner_dst.unwrap_or(inner_addr(&p, true)),
                "embedded dst: {}",
                ctx()
            );
            let port = |b: &[u8], at: usize| u16::from_be_bytes([b[i.l4 + at], b[i.l4 + at + 1]]);
            assert_eq!(
                port(&out, 0),
                e.inner_sport.unwrap_or(port(&p, 0)),
                "embedded sport: {} ({rule})",
                ctx()
            );
            assert_eq!(
                port(&out, 2),
                e.inner_dport.unwrap_or(port(&p, 2)),
                "embedded dport: {}",
                ctx()
            );
            if e.inner_sport.is_some() || e.inner_dport.is_some() {
                port_rewritten += 1;
            }
            // Every other byte as it was, but the checksums.
            let icmp_at = if v6 { 40 } else { 20 };
            let (csum_at_inner, _) = csum_at(i.proto).expect("tcp or udp");
            for (k, (a, b)) in p.iter().zip(&out).enumerate() {
                let addrs = |base: usize| {
                    if v6 {
                        base + 8..base + 40
                    } else {
                        base + 12..base + 20
                    }
                };
                let changed = addrs(0).contains(&k)
                    || addrs(i.at).contains(&k)
                    || (!v6 && (10..12).contains(&k))
                    || (!v6 && (i.at + 10..i.at + 12).contains(&k))
                    || (icmp_at + 2..icmp_at + 4).contains(&k)
                    || (i.l4..i.l4 + 4).contains(&k)
                    || (i.l4 + csum_at_inner..i.l4 + csum_at_inner + 2).contains(&k);
                if !changed {
                    assert_eq!(a, b, "byte {k}: {}", ctx());
                }
            }
            // Every checksum holds, computed here from the bytes.
            if !v6 {
                assert_eq!(sum(&[&out[..20]]), 0, "IPv4 header checksum: {}", ctx());
                assert_eq!(
                    sum(&[&out[i.at..i.at + 20]]),
                    0,
                    "embedded IPv4 header checksum: {}",
                    ctx()
                );
                assert_eq!(sum(&[&out[20..]]), 0, "ICMP checksum: {}", ctx());
            } else {
                assert_eq!(
                    l4_sum(true, &out[8..24], &out[24..40], 58, &out[40..]),
                    0,
                    "ICMPv6 checksum: {}",
                    ctx()
                );
            }
            if whole_inner {
                let (s, d) = if v6 {
                    (&out[i.at + 8..i.at + 24], &out[i.at + 24..i.at + 40])
                } else {
                    (&out[i.at + 12..i.at + 16], &out[i.at + 16..i.at + 20])
                };
                assert_eq!(
                    l4_sum(v6, s, d, i.proto, &out[i.l4..]),
                    0,
                    "embedded L4 checksum: {}",
                    ctx()
                );
            }
        }
    }
    eprintln!("translated by their flow's rule: v4 snat {}, v4 dnat {}, v6 snat {}, v6 dnat {}; {port_rewritten} with the port; {dropped} dropped by the drop of ICMP", by_flow[0][0], by_flow[0][1], by_flow[1][0], by_flow[1][1]);
    for (family, counts) in [("IPv4", by_flow[0]), ("IPv6", by_flow[1])] {
        assert!(
            counts[0] > 20 && counts[1] > 20,
            "too few {family} errors translated by their flow: {counts:?}"
        );
    }
    assert!(
        port_rewritten > 100,
        "only {port_rewritten} embedded ports rewritten"
    );
    assert!(
        dropped > 100,
        "only {dropped} errors dropped by `proto icmp drop`"
    );
}

/// Whether the test may run (root); without root it skips loudly, or
/// fails when LWT_TEST_REQUIRE_ROOT says it may not skip.
fn root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc_geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("LWT_TEST_REQUIRE_ROOT").is_some_and(|v| !v.is_empty() && v != "0") {
        panic!("{test} needs root (BPF_PROG_TEST_RUN), and LWT_TEST_REQUIRE_ROOT is set, so it may not be skipped");
    }
    eprintln!("SKIPPED {test}: needs root (BPF_PROG_TEST_RUN)");
    false
}

/// Host `i` of 100,000 inside hosts (10.0.0.0 + i) and its public address
/// (100.64.0.0 + a permutation of i: not a prefix mapping, each one a rule).
fn inside(i: u32) -> [u8; 4] {
    (0x0a00_0000 + i).to_be_bytes()
}
fn public(i: u32) -> [u8; 4] {
    (0x6440_0000 + (i.wrapping_mul(7919).wrapping_add(12345) & 0x1_ffff)).to_be_bytes()
}

#[test]
fn a_hundred_thousand_one_to_one_mappings_translate_every_sampled_host() {
    if !root("a_hundred_thousand_one_to_one_mappings_translate_every_sampled_host") {
        return;
    }
    const HOSTS: u32 = 100_000;
    let seed = seed();
    eprintln!("seed {seed:#x} (LWTKIT_SEED={seed:#x} replays this run)");
    let ip = |a: [u8; 4]| std::net::Ipv4Addr::from(a);
    // Even hosts: `src INSIDE snat PUBLIC`; odd hosts: `dst PUBLIC dnat INSIDE`.
    let rules: Vec<Rule> = (0..HOSTS)
        .map(|i| {
            let text = if i % 2 == 0 {
                format!("src {} snat {}", ip(inside(i)), ip(public(i)))
            } else {
                format!("dst {} dnat {}", ip(public(i)), ip(inside(i)))
            };
            Rule {
                id: i + 1,
                spec: text.parse().unwrap_or_else(|e| panic!("`{text}`: {e}")),
            }
        })
        .collect();
    let h = Harness::filter(&rules, Verdict::Allow, Hook::Xmit).expect("100,000 mappings load");
    let far = [198, 51, 100, 1];
    let mut rng = Rng(seed | 1);
    let (mut snat, mut dnat, mut untouched) = (0, 0, 0);
    for n in 0..3000 {
        let i = rng.below(u64::from(HOSTS)) as u32;
        let outbound = rng.below(2) == 0;
        let (src, dst) = if outbound {
            (inside(i), far)
        } else {
            (far, public(i))
        };
        let p = flow_packet(false, 17, &src, &dst, 40000 + (n % 1000) as u16, 53);
        let (rc, out) = h.run_out(&p).expect("test run");
        let ctx = || format!("packet {n} host {i} (seed {seed:#x}): {p:02x?} -> {out:02x?}");
        let (want_src, want_dst, want_rc) = match (outbound, i % 2 == 0) {
            (true, true) => (public(i), dst, 0),
            (false, false) => (src, inside(i), 128),
            // No rule for this host in this direction.
            _ => (src, dst, 0),
        };
        assert_eq!(rc, want_rc, "{}", ctx());
        assert_eq!(out[12..16], want_src, "src: {}", ctx());
        assert_eq!(out[16..20], want_dst, "dst: {}", ctx());
        assert_eq!(sum(&[&out[..20]]), 0, "IPv4 header checksum: {}", ctx());
        assert_eq!(
            l4_sum(false, &out[12..16], &out[16..20], 17, &out[20..]),
            0,
            "UDP checksum: {}",
            ctx()
        );
        match (out == p, want_rc) {
            (true, _) => untouched += 1,
            (false, 128) => dnat += 1,
            (false, _) => snat += 1,
        }
    }
    eprintln!("3000 packets: {snat} source-translated, {dnat} destination-translated, {untouched} without a mapping");
    assert!(
        snat > 500 && dnat > 500 && untouched > 1000,
        "the sample missed a kind: {snat} {dnat} {untouched}"
    );
}
