//! Unit tests of `model.rs`.
use super::*;
use crate::filter::rule::{TcpFlags, DEFAULT_PRIORITY};

const SRC4: [u8; 4] = [192, 0, 2, 1];
const DST4: [u8; 4] = [198, 51, 100, 7];
const SRC6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const DST6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

const SYN: u8 = TcpFlags::SYN;
const ACK: u8 = TcpFlags::ACK;

/// IPv4 header (with `options`, a multiple of 4 bytes) + payload.
/// `frag` is the flags/fragment-offset field.
fn ipv4(proto: u8, options: &[u8], frag: u16, payload: &[u8]) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0);
    assert!(options.len() <= 40);
    let ihl = 5 + options.len() / 4;
    let total = (ihl * 4 + payload.len()) as u16;
    let mut p = vec![0x40 | ihl as u8, 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0x12, 0x34]);
    p.extend_from_slice(&frag.to_be_bytes());
    p.extend_from_slice(&[64, proto, 0, 0]);
    p.extend_from_slice(&SRC4);
    p.extend_from_slice(&DST4);
    p.extend_from_slice(options);
    p.extend_from_slice(payload);
    p
}

/// IPv6 header + payload (extension headers and L4).
fn ipv6(nh: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[nh, 64]);
    p.extend_from_slice(&SRC6);
    p.extend_from_slice(&DST6);
    p.extend_from_slice(payload);
    p
}

fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    h
}

fn udp(sport: u16, dport: u16) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&[0, 8, 0, 0]);
    h
}

fn icmp(kind: u8, code: u8) -> Vec<u8> {
    vec![kind, code, 0, 0, 0, 1, 0, 1]
}

/// Hop-by-hop, routing or destination options: `(hdrlen + 1) * 8` bytes.
fn opts(next: u8, hdrlen: u8) -> Vec<u8> {
    let mut h = vec![0; (usize::from(hdrlen) + 1) * 8];
    h[0] = next;
    h[1] = hdrlen;
    h
}

fn fragment(next: u8, offset: u16, more: bool) -> Vec<u8> {
    let field = offset << 3 | u16::from(more);
    let mut h = vec![next, 0];
    h.extend_from_slice(&field.to_be_bytes());
    h.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    h
}

/// Authentication header: `(len + 2) * 4` bytes.
fn ah(next: u8, len: u8) -> Vec<u8> {
    let mut h = vec![0; (usize::from(len) + 2) * 4];
    h[0] = next;
    h[1] = len;
    h
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn v4_key(proto: u8) -> PacketKey {
    let mut key = PacketKey {
        family: 4,
        proto,
        ..PacketKey::default()
    };
    key.src[..4].copy_from_slice(&SRC4);
    key.dst[..4].copy_from_slice(&DST4);
    key
}

fn v6_key(proto: u8) -> PacketKey {
    PacketKey {
        family: 6,
        src: SRC6,
        dst: DST6,
        proto,
        ..PacketKey::default()
    }
}

fn as_class(key: PacketKey, class: Class) -> PacketKey {
    PacketKey { class, ..key }
}

fn with_l4(key: PacketKey, sport: u16, dport: u16, tcp_flags: u8) -> PacketKey {
    PacketKey {
        l4: true,
        sport,
        dport,
        tcp_flags,
        ..key
    }
}

// ---- parsing ----

#[test]
fn malformed_ip_headers_are_family_zero() {
    let good4 = ipv4(6, &[], 0, &tcp(1, 2, SYN));
    let mut bad_ihl = good4.clone();
    bad_ihl[0] = 0x44;
    let mut long_ihl = ipv4(17, &[], 0, &[]);
    long_ihl[0] = 0x46;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("version 0", vec![0; 60]),
        ("version 5", cat(&[&[0x55], &good4[1..]])),
        ("version 15", vec![0xff; 60]),
        ("ipv4 shorter than 20", good4[..19].to_vec()),
        ("ipv4 ihl 4", bad_ihl),
        ("ipv4 ihl 0", cat(&[&[0x40], &good4[1..]])),
        ("ipv4 ihl past the end", long_ihl),
        ("ipv6 shorter than 40", ipv6(6, &[])[..39].to_vec()),
        ("single version byte", vec![0x60]),
    ];
    for (what, packet) in cases {
        assert_eq!(parse_packet(&packet), PacketKey::malformed(), "{what}");
    }
}

#[test]
fn ipv4_tcp_udp_icmp() {
    assert_eq!(
        parse_packet(&ipv4(6, &[], 0, &tcp(40000, 8080, SYN | ACK))),
        with_l4(v4_key(6), 40000, 8080, SYN | ACK)
    );
    assert_eq!(
        parse_packet(&ipv4(17, &[], 0, &udp(5353, 53))),
        with_l4(v4_key(17), 5353, 53, 0)
    );
    assert_eq!(
        parse_packet(&ipv4(1, &[], 0, &icmp(8, 3))),
        with_l4(v4_key(1), 8, 3, 0)
    );
    // Other protocols carry no L4 fields, whatever follows.
    assert_eq!(parse_packet(&ipv4(47, &[], 0, &tcp(1, 2, 3))), v4_key(47));
    // ICMPv6's number means nothing special in IPv4.
    assert_eq!(parse_packet(&ipv4(58, &[], 0, &icmp(128, 0))), v4_key(58));
}

#[test]
fn ipv4_header_exactly_20_bytes_is_well_formed_but_tcp_needs_its_header() {
    assert_eq!(parse_packet(&ipv4(0, &[], 0, &[])), v4_key(0));
    assert_eq!(
        parse_packet(&ipv4(6, &[], 0, &[])),
        as_class(v4_key(6), Class::Malformed)
    );
}

#[test]
fn ipv4_options_move_the_l4_header() {
    for words in 1..=10u8 {
        let options: Vec<u8> = (0..words * 4).map(|i| i | 1).collect();
        let p = ipv4(17, &options, 0, &udp(7, 9));
        assert_eq!(
            parse_packet(&p),
            with_l4(v4_key(17), 7, 9, 0),
            "ihl {}",
            5 + words
        );
    }
}

#[test]
fn ipv4_total_length_is_not_consulted() {
    let mut p = ipv4(17, &[], 0, &udp(7, 9));
    p[2..4].copy_from_slice(&20u16.to_be_bytes());
    assert_eq!(parse_packet(&p), with_l4(v4_key(17), 7, 9, 0));
}

#[test]
fn ipv4_first_fragment_has_l4_offset_1_is_evasive_later_ones_have_none() {
    const MF: u16 = 0x2000;
    const DF: u16 = 0x4000;
    let full = with_l4(v4_key(6), 1, 2, SYN);
    for frag in [0, MF, DF, 0x8000 | MF | DF] {
        assert_eq!(
            parse_packet(&ipv4(6, &[], frag, &tcp(1, 2, SYN))),
            full,
            "flags {frag:#x}"
        );
    }
    for frag in [1, MF | 1, DF | 1] {
        assert_eq!(
            parse_packet(&ipv4(6, &[], frag, &tcp(1, 2, SYN))),
            as_class(v4_key(6), Class::Evasive),
            "field {frag:#x}"
        );
    }
    for frag in [2, 0x1fff, MF | 0x100, DF | 0x1000] {
        assert_eq!(
            parse_packet(&ipv4(6, &[], frag, &tcp(1, 2, SYN))),
            as_class(v4_key(6), Class::LaterFragment),
            "field {frag:#x}"
        );
    }
}

#[test]
fn ipv4_truncated_at_every_length() {
    let options = [1u8; 8];
    for (proto, l4, needed, full) in [
        (
            6,
            tcp(1000, 2000, SYN),
            14,
            with_l4(v4_key(6), 1000, 2000, SYN),
        ),
        (17, udp(1000, 2000), 4, with_l4(v4_key(17), 1000, 2000, 0)),
        (1, icmp(3, 4), 2, with_l4(v4_key(1), 3, 4, 0)),
    ] {
        // Cut short, an unfragmented packet is malformed, a first
        // fragment (more fragments follow) evasive.
        for (frag, cut) in [(0, Class::Malformed), (0x2000, Class::Evasive)] {
            let p = ipv4(proto, &options, frag, &l4);
            for len in 0..=p.len() {
                let want = if len < 28 {
                    PacketKey::malformed()
                } else if len < 28 + needed {
                    as_class(v4_key(proto), cut)
                } else {
                    full
                };
                assert_eq!(parse_packet(&p[..len]), want, "proto {proto} cut at {len}");
            }
        }
    }
}

#[test]
fn ipv6_tcp_udp_icmpv6() {
    assert_eq!(
        parse_packet(&ipv6(6, &tcp(1, 443, ACK))),
        with_l4(v6_key(6), 1, 443, ACK)
    );
    assert_eq!(
        parse_packet(&ipv6(17, &udp(546, 547))),
        with_l4(v6_key(17), 546, 547, 0)
    );
    assert_eq!(
        parse_packet(&ipv6(58, &icmp(135, 0))),
        with_l4(v6_key(58), 135, 0, 0)
    );
    // ICMPv4's number carries no L4 fields in IPv6.
    assert_eq!(parse_packet(&ipv6(1, &icmp(8, 0))), v6_key(1));
    // No next header.
    assert_eq!(parse_packet(&ipv6(59, &[])), v6_key(59));
    assert_eq!(
        parse_packet(&ipv6(6, &[])),
        as_class(v6_key(6), Class::Malformed)
    );
}

#[test]
fn ipv6_walks_extension_header_chains() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("hop-by-hop", ipv6(0, &cat(&[&opts(6, 0), &tcp(5, 6, SYN)]))),
        (
            "long hop-by-hop",
            ipv6(0, &cat(&[&opts(6, 3), &tcp(5, 6, SYN)])),
        ),
        ("routing", ipv6(43, &cat(&[&opts(6, 2), &tcp(5, 6, SYN)]))),
        (
            "destination options",
            ipv6(60, &cat(&[&opts(6, 1), &tcp(5, 6, SYN)])),
        ),
        (
            "first fragment",
            ipv6(44, &cat(&[&fragment(6, 0, true), &tcp(5, 6, SYN)])),
        ),
        ("ah", ipv6(51, &cat(&[&ah(6, 4), &tcp(5, 6, SYN)]))),
        (
            "hbh, routing, fragment, ah, dest opts",
            ipv6(
                0,
                &cat(&[
                    &opts(43, 0),
                    &opts(44, 2),
                    &fragment(51, 0, false),
                    &ah(60, 1),
                    &opts(6, 0),
                    &tcp(5, 6, SYN),
                ]),
            ),
        ),
    ];
    for (what, p) in cases {
        assert_eq!(parse_packet(&p), with_l4(v6_key(6), 5, 6, SYN), "{what}");
    }
    let p = ipv6(0, &cat(&[&opts(51, 0), &ah(58, 1), &icmp(128, 0)]));
    assert_eq!(parse_packet(&p), with_l4(v6_key(58), 128, 0, 0));
    let p = ipv6(60, &cat(&[&opts(17, 0), &udp(53, 53)]));
    assert_eq!(parse_packet(&p), with_l4(v6_key(17), 53, 53, 0));
}

#[test]
fn ipv6_non_first_fragment_reports_the_fragment_protocol() {
    for offset in [1, 2, 0x100, 0x1fff] {
        for more in [false, true] {
            let p = ipv6(
                0,
                &cat(&[&opts(44, 0), &fragment(17, offset, more), &udp(1, 2)]),
            );
            let class = if offset == 1 {
                Class::Evasive
            } else {
                Class::LaterFragment
            };
            assert_eq!(
                parse_packet(&p),
                as_class(v6_key(17), class),
                "offset {offset} more {more}"
            );
        }
    }
    // An atomic fragment (offset 0, no more fragments) is a whole packet.
    assert_eq!(
        parse_packet(&ipv6(44, &cat(&[&fragment(6, 0, false), &tcp(1, 2, SYN)]))),
        with_l4(v6_key(6), 1, 2, SYN)
    );
    // The reserved and M bits alone don't make a later fragment.
    let mut f = fragment(17, 0, true);
    f[1] = 0xff;
    f[3] |= 0x06;
    assert_eq!(
        parse_packet(&ipv6(44, &cat(&[&f, &udp(1, 2)]))),
        with_l4(v6_key(17), 1, 2, 0)
    );
}

/// `n` destination-options headers, then `last`.
fn chain(n: usize, last: u8) -> Vec<u8> {
    let mut payload = Vec::new();
    for i in 0..n {
        payload.extend(opts(if i + 1 == n { last } else { 60 }, 0));
    }
    payload
}

#[test]
fn ipv6_chains_of_eight_headers_are_walked_longer_ones_are_malformed() {
    assert_eq!(MAX_EXT_HEADERS, 8);
    for n in 1..=8 {
        let p = ipv6(60, &cat(&[&chain(n, 17), &udp(9, 10)]));
        assert_eq!(
            parse_packet(&p),
            with_l4(v6_key(17), 9, 10, 0),
            "{n} headers"
        );
    }
    // A ninth header is where the walk gives up: its type is the protocol,
    // and the packet is malformed (its L4 header lies beyond the bound).
    for ninth in [0, 43, 60, 44, 51] {
        let tail = match ninth {
            44 => fragment(17, 0, false),
            51 => ah(17, 1),
            _ => opts(17, 0),
        };
        let p = ipv6(60, &cat(&[&chain(8, ninth), &tail, &udp(9, 10)]));
        assert_eq!(
            parse_packet(&p),
            as_class(v6_key(ninth), Class::Malformed),
            "ninth header {ninth}"
        );
    }
    // Eight headers the last of which is a fragment header also count.
    let p = ipv6(
        60,
        &cat(&[&chain(7, 44), &fragment(6, 0, true), &tcp(1, 2, 3)]),
    );
    assert_eq!(parse_packet(&p), with_l4(v6_key(6), 1, 2, 3));
    let p = ipv6(
        60,
        &cat(&[&chain(7, 44), &fragment(6, 9, true), &tcp(1, 2, 3)]),
    );
    assert_eq!(parse_packet(&p), as_class(v6_key(6), Class::LaterFragment));
}

#[test]
fn ipv6_extension_header_past_the_end() {
    // hdrlen 255 points 2048 bytes on: the walk stops at the next header.
    let p = ipv6(0, &cat(&[&opts(6, 0)[..2], &[255], &[0; 5], &tcp(1, 2, 3)]));
    let mut h = p.clone();
    h[41] = 255;
    h[40] = 43;
    assert_eq!(parse_packet(&h), as_class(v6_key(43), Class::Malformed));
    let mut h = p;
    h[40] = 6;
    h[41] = 255;
    assert_eq!(parse_packet(&h), as_class(v6_key(6), Class::Malformed));
}

#[test]
fn ipv6_truncated_at_every_length() {
    // 40 IPv6 | 8 hbh | 8 fragment | 12 ah | 16 routing | 20 tcp
    let p = ipv6(
        0,
        &cat(&[
            &opts(44, 0),
            &fragment(51, 0, true),
            &ah(43, 1),
            &opts(6, 1),
            &tcp(7, 8, SYN),
        ]),
    );
    assert_eq!(p.len(), 104);
    // (shortest length, protocol reported) as the walk gets further.
    let stages = [(40, 0), (42, 44), (56, 51), (58, 43), (70, 6)];
    for len in 0..=p.len() {
        let got = parse_packet(&p[..len]);
        let want = if len < 40 {
            PacketKey::malformed()
        } else if len >= 84 + 14 {
            with_l4(v6_key(6), 7, 8, SYN)
        } else {
            let proto = stages
                .iter()
                .rev()
                .find(|(min, _)| len >= *min)
                .map_or(0, |s| s.1);
            // Past the first-fragment header, a cut chain is evasive.
            let class = if len >= 56 {
                Class::Evasive
            } else {
                Class::Malformed
            };
            as_class(v6_key(proto), class)
        };
        assert_eq!(got, want, "cut at {len}");
    }
    for (l4, needed, full) in [
        (udp(7, 8), 4, with_l4(v6_key(17), 7, 8, 0)),
        (icmp(1, 4), 2, with_l4(v6_key(58), 1, 4, 0)),
    ] {
        let p = ipv6(60, &cat(&[&opts(full.proto, 0), &l4]));
        for len in 40..=p.len() {
            let want = if len < 42 {
                as_class(v6_key(60), Class::Malformed)
            } else if len < 48 + needed {
                as_class(v6_key(full.proto), Class::Malformed)
            } else {
                full
            };
            assert_eq!(
                parse_packet(&p[..len]),
                want,
                "proto {} cut at {len}",
                full.proto
            );
        }
    }
}

/// Deterministic xorshift, for throwing junk at the parser.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn junk_never_panics_and_keeps_l4_fields_zero_without_l4() {
    let mut state = 0x2545_f491_4f6c_dd1d;
    let seeds = [
        ipv4(6, &[1; 4], 0, &tcp(1, 2, 3)),
        ipv6(
            0,
            &cat(&[
                &opts(44, 0),
                &fragment(51, 0, true),
                &ah(6, 1),
                &tcp(1, 2, 3),
            ]),
        ),
    ];
    for round in 0..20_000 {
        let mut p = seeds[round % 2].clone();
        for _ in 0..(xorshift(&mut state) % 6) {
            let i = (xorshift(&mut state) as usize) % p.len();
            p[i] = xorshift(&mut state) as u8;
        }
        p.truncate((xorshift(&mut state) as usize) % (p.len() + 1));
        let key = parse_packet(&p);
        if !key.l4 {
            assert_eq!((key.sport, key.dport, key.tcp_flags), (0, 0, 0), "{p:?}");
        }
        if key.family == 0 {
            assert_eq!(key, PacketKey::malformed());
        }
        if key.l4 {
            assert_eq!(key.class, Class::Whole);
        }
    }
}

// ---- evaluation ----

fn rules(texts: &[&str]) -> Vec<Rule> {
    texts
        .iter()
        .zip(1..)
        .map(|(text, id)| Rule {
            id,
            spec: text.parse().unwrap_or_else(|e| panic!("`{text}`: {e}")),
        })
        .collect()
}

fn rule_matches(text: &str, pkt: &PacketKey) -> bool {
    let spec: RuleSpec = text.parse().unwrap_or_else(|e| panic!("`{text}`: {e}"));
    matches(&spec, pkt)
}

#[test]
fn drops_tcp_8080_to_the_peer_and_allows_the_rest() {
    let policy = rules(&["dst 198.51.100.7/32 proto tcp dport 8080 drop log"]);
    let to_8080 = parse_packet(&ipv4(6, &[], 0, &tcp(40000, 8080, SYN)));
    let to_80 = parse_packet(&ipv4(6, &[], 0, &tcp(40000, 80, SYN)));
    let udp_8080 = parse_packet(&ipv4(17, &[], 0, &udp(40000, 8080)));
    assert_eq!(
        evaluate(&policy, Verdict::Allow, &to_8080),
        (Verdict::Drop, Some(1))
    );
    assert_eq!(
        evaluate(&policy, Verdict::Allow, &to_80),
        (Verdict::Allow, None)
    );
    assert_eq!(
        evaluate(&policy, Verdict::Allow, &udp_8080),
        (Verdict::Allow, None)
    );
}

#[test]
fn malformed_packets_get_the_default_even_with_a_catch_all() {
    let policy = rules(&["priority 0 allow", "drop"]);
    assert_eq!(
        evaluate(&policy, Verdict::Drop, &PacketKey::default()),
        (Verdict::Drop, None)
    );
    assert_eq!(
        evaluate(&policy, Verdict::Allow, &parse_packet(&[0x45])),
        (Verdict::Allow, None)
    );
    assert!(!rule_matches(
        "allow",
        &PacketKey {
            family: 5,
            ..PacketKey::default()
        }
    ));
}

#[test]
fn no_rules_means_the_default() {
    let pkt = parse_packet(&ipv6(17, &udp(1, 2)));
    assert_eq!(evaluate(&[], Verdict::Drop, &pkt), (Verdict::Drop, None));
    assert_eq!(evaluate(&[], Verdict::Allow, &pkt), (Verdict::Allow, None));
}

#[test]
fn lowest_priority_wins_then_lowest_id() {
    let pkt = parse_packet(&ipv4(6, &[], 0, &tcp(1, 22, SYN)));
    let policy = rules(&[
        "allow",
        "priority 10 drop",
        "priority 10 allow",
        "priority 5 dport 23 allow",
    ]);
    assert_eq!(
        evaluate(&policy, Verdict::Allow, &pkt),
        (Verdict::Drop, Some(2))
    );
    // Slice order doesn't matter, only priority and id.
    let mut reversed = policy.clone();
    reversed.reverse();
    assert_eq!(
        evaluate(&reversed, Verdict::Allow, &pkt),
        (Verdict::Drop, Some(2))
    );
    // Equal priorities: the lower id (added first) wins.
    let tie = rules(&["proto tcp allow", "dport 22 drop"]);
    assert_eq!(
        evaluate(&tie, Verdict::Drop, &pkt),
        (Verdict::Allow, Some(1))
    );
    let mut swapped = tie.clone();
    swapped.swap(0, 1);
    assert_eq!(
        evaluate(&swapped, Verdict::Drop, &pkt),
        (Verdict::Allow, Some(1))
    );
    // Priority 0 beats everything; priority u32::MAX loses to everything.
    let extremes = rules(&["priority 4294967295 drop", "priority 0 dport 22 allow log"]);
    assert_eq!(
        evaluate(&extremes, Verdict::Drop, &pkt),
        (Verdict::Allow, Some(2))
    );
    assert_eq!(extremes[0].spec.priority, u32::MAX);
    assert_eq!(policy[0].spec.priority, DEFAULT_PRIORITY);
}

#[test]
fn addresses_match_their_family_and_prefix() {
    let v4 = parse_packet(&ipv4(17, &[], 0, &udp(1, 2)));
    let v6 = parse_packet(&ipv6(17, &udp(1, 2)));
    for (rule, on_v4, on_v6) in [
        ("src 192.0.2.0/24 drop", true, false),
        ("src 192.0.2.1/32 drop", true, false),
        ("src 192.0.2.2/32 drop", false, false),
        ("dst 198.51.100.0/24 drop", true, false),
        ("src 198.51.100.0/24 drop", false, false),
        ("src 0.0.0.0/0 drop", true, false),
        ("dst ::/0 drop", false, true),
        ("src 2001:db8::/32 dst 2001:db8::2 drop", false, true),
        ("dst 2001:db8::1/128 drop", false, false),
        ("src 192.0.2.0/24 dst 198.51.100.7 drop", true, false),
        ("src 192.0.2.0/24 dst 198.51.100.8 drop", false, false),
        ("drop", true, true),
    ] {
        assert_eq!(rule_matches(rule, &v4), on_v4, "`{rule}` on IPv4");
        assert_eq!(rule_matches(rule, &v6), on_v6, "`{rule}` on IPv6");
    }
    // An IPv4 address in an IPv6 packet's first bytes is no IPv4 address.
    let mut tricky = v6;
    tricky.src = [192, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    assert!(!rule_matches("src 192.0.2.1/32 drop", &tricky));
}

#[test]
fn ports_without_proto_match_tcp_and_udp_only() {
    let tcp4 = parse_packet(&ipv4(6, &[], 0, &tcp(100, 53, 0)));
    let udp6 = parse_packet(&ipv6(17, &udp(100, 53)));
    // ICMP type 100 code 53 lands in the same fields as the ports would.
    let icmp4 = parse_packet(&ipv4(1, &[], 0, &icmp(100, 53)));
    for rule in [
        "dport 53 drop",
        "sport 100 drop",
        "sport 0-65535 dport 53 drop",
    ] {
        assert!(rule_matches(rule, &tcp4), "`{rule}` tcp");
        assert!(rule_matches(rule, &udp6), "`{rule}` udp");
        assert!(!rule_matches(rule, &icmp4), "`{rule}` icmp");
    }
    assert!(rule_matches("proto udp dport 53 drop", &udp6));
    assert!(!rule_matches("proto udp dport 53 drop", &tcp4));
    assert!(!rule_matches("proto tcp dport 53 drop", &udp6));
}

#[test]
fn port_ranges_are_inclusive() {
    for (port, inside) in [
        (999, false),
        (1000, true),
        (1500, true),
        (2000, true),
        (2001, false),
    ] {
        let pkt = parse_packet(&ipv4(6, &[], 0, &tcp(port, port, 0)));
        assert_eq!(
            rule_matches("dport 1000-2000 drop", &pkt),
            inside,
            "dport {port}"
        );
        assert_eq!(
            rule_matches("proto tcp sport 1000-2000 drop", &pkt),
            inside,
            "sport {port}"
        );
    }
    let pkt = parse_packet(&ipv4(17, &[], 0, &udp(0, 65535)));
    assert!(rule_matches("sport 0 dport 65535 drop", &pkt));
}

#[test]
fn rules_needing_l4_skip_packets_without_it() {
    let gre = parse_packet(&ipv4(47, &[], 0, &udp(1, 80)));
    let icmp_in_v6 = parse_packet(&ipv6(1, &icmp(8, 0)));
    for pkt in [gre, icmp_in_v6] {
        assert!(!pkt.l4);
        assert_eq!(pkt.class, Class::Whole);
        assert!(rule_matches("drop", &pkt));
        assert!(!rule_matches("dport 0-65535 drop", &pkt), "{pkt:?}");
        assert!(!rule_matches("sport 0-65535 drop", &pkt));
    }
}

#[test]
fn packets_that_are_not_whole_meet_no_rule() {
    let later_fragment = parse_packet(&ipv4(6, &[], 0x2002, &tcp(1, 80, SYN)));
    let offset_1 = parse_packet(&ipv4(6, &[], 0x2001, &tcp(1, 80, SYN)));
    let truncated = parse_packet(&ipv6(6, &tcp(1, 80, SYN)[..13]));
    let v6_fragment = parse_packet(&ipv6(44, &cat(&[&fragment(17, 8, false), &udp(1, 80)])));
    for pkt in [later_fragment, offset_1, truncated, v6_fragment] {
        assert!(!pkt.l4);
        assert_ne!(pkt.class, Class::Whole);
        assert!(!rule_matches("drop", &pkt), "{pkt:?}");
        assert!(!rule_matches("proto tcp drop", &pkt));
        assert!(!rule_matches("proto udp drop", &pkt));
        assert_eq!(
            evaluate(&rules(&["allow"]), Verdict::Drop, &pkt),
            (Verdict::Drop, None)
        );
    }
}

#[test]
fn judge_applies_the_fragment_and_malformed_settings() {
    use crate::filter::handling::{Fragments, Handling, Malformed};
    let policy = rules(&["proto tcp dport 22 drop", "proto udp allow"]);
    let later = parse_packet(&ipv4(17, &[], 0x0100, &udp(1, 9000)));
    let offset_1 = parse_packet(&ipv4(17, &[], 0x2001, &udp(1, 9000)));
    let tiny_first = parse_packet(&ipv4(6, &[], 0x2000, &tcp(1, 22, SYN)[..8]));
    let cut = parse_packet(&ipv4(6, &[], 0, &tcp(1, 22, SYN)[..8]));
    let first_udp = parse_packet(&ipv4(17, &[], 0x2000, &udp(1, 9000)));
    for default in [Verdict::Allow, Verdict::Drop] {
        let mut h = Handling::new(default);
        assert_eq!(
            judge(&policy, &h, &later),
            (Verdict::Allow, Decider::Fragments)
        );
        assert_eq!(
            judge(&policy, &h, &offset_1),
            (Verdict::Drop, Decider::Malformed)
        );
        assert_eq!(
            judge(&policy, &h, &tiny_first),
            (Verdict::Drop, Decider::Malformed)
        );
        assert_eq!(
            judge(&policy, &h, &cut),
            (Verdict::Drop, Decider::Malformed)
        );
        assert_eq!(
            judge(&policy, &h, &first_udp),
            (Verdict::Allow, Decider::Rule(2))
        );
        h.fragments = Fragments::Drop;
        h.malformed = Malformed::Default;
        assert_eq!(
            judge(&policy, &h, &later),
            (Verdict::Drop, Decider::Fragments)
        );
        // Evasive fragments stay dropped; malformed ones get the default.
        assert_eq!(
            judge(&policy, &h, &offset_1),
            (Verdict::Drop, Decider::Malformed)
        );
        assert_eq!(
            judge(&policy, &h, &tiny_first),
            (Verdict::Drop, Decider::Malformed)
        );
        assert_eq!(judge(&policy, &h, &cut), (default, Decider::Default));
    }
}

#[test]
fn icmp_type_matches_icmp_of_its_own_family() {
    let echo4 = parse_packet(&ipv4(1, &[], 0, &icmp(8, 0)));
    let echo6 = parse_packet(&ipv6(58, &icmp(128, 0)));
    let ns6 = parse_packet(&ipv6(58, &icmp(135, 8)));
    assert!(rule_matches("proto icmp icmp-type 8 drop", &echo4));
    assert!(!rule_matches("proto icmp icmp-type 0 drop", &echo4));
    assert!(!rule_matches("proto icmp icmp-type 8 drop", &echo6));
    assert!(rule_matches("proto icmpv6 icmp-type 128 drop", &echo6));
    assert!(!rule_matches("proto icmpv6 icmp-type 8 drop", &echo4));
    // The type is compared, not the code.
    assert!(rule_matches("proto icmpv6 icmp-type 135 drop", &ns6));
    assert!(!rule_matches("proto icmpv6 icmp-type 8 drop", &ns6));
    // A truncated message (type only) is malformed: no rule matches it.
    let cut = parse_packet(&ipv4(1, &[], 0, &icmp(8, 0)[..1]));
    assert_eq!(cut.class, Class::Malformed);
    assert!(!rule_matches("proto icmp icmp-type 0 drop", &cut));
    assert!(!rule_matches("proto icmp drop", &cut));
}

#[test]
fn plain_icmp_proto_compares_the_protocol_byte_in_either_family() {
    let icmp_in_v6 = parse_packet(&ipv6(1, &icmp(8, 0)));
    let icmpv6_in_v4 = parse_packet(&ipv4(58, &[], 0, &icmp(128, 0)));
    assert!(rule_matches("proto icmp drop", &icmp_in_v6));
    assert!(rule_matches("proto icmpv6 drop", &icmpv6_in_v4));
    // With a type they are family-bound (and such packets have no L4 anyway).
    assert!(!rule_matches("proto icmp icmp-type 8 drop", &icmp_in_v6));
    assert!(!rule_matches(
        "proto icmpv6 icmp-type 128 drop",
        &icmpv6_in_v4
    ));
    // Forged keys with L4 fields still obey the family.
    let forged = PacketKey {
        l4: true,
        sport: 8,
        ..icmp_in_v6
    };
    assert!(!rule_matches("proto icmp icmp-type 8 drop", &forged));
}

#[test]
fn tcp_flags_select_segments() {
    let syn = parse_packet(&ipv4(6, &[], 0, &tcp(1, 2, SYN)));
    let syn_ack = parse_packet(&ipv6(6, &tcp(1, 2, SYN | ACK)));
    let fin_ack = parse_packet(&ipv4(6, &[], 0, &tcp(1, 2, ACK | TcpFlags::FIN)));
    let udp4 = parse_packet(&ipv4(17, &[], 0, &udp(1, 2)));
    let rule = "tcp-flags syn,!ack drop";
    assert!(rule_matches(rule, &syn));
    assert!(!rule_matches(rule, &syn_ack));
    assert!(!rule_matches(rule, &fin_ack));
    assert!(!rule_matches(rule, &udp4));
    assert!(rule_matches("tcp-flags ack drop", &syn_ack));
    assert!(rule_matches("tcp-flags ack drop", &fin_ack));
    assert!(rule_matches("tcp-flags !rst,!urg drop", &fin_ack));
    assert!(!rule_matches("tcp-flags fin dport 3 drop", &fin_ack));
}

#[test]
fn rules_specs_built_by_hand_follow_the_same_semantics() {
    // Unvalidated specs (e.g. from old state) must not panic the model.
    let pkt = parse_packet(&ipv4(1, &[], 0, &icmp(8, 0)));
    let odd = RuleSpec {
        icmp_type: Some(8),
        ..RuleSpec::new(Verdict::Drop)
    };
    assert!(matches(&odd, &pkt));
    let odd = RuleSpec {
        tcp_flags: Some(TcpFlags { mask: 0, value: 0 }),
        ..RuleSpec::new(Verdict::Drop)
    };
    assert!(!matches(&odd, &pkt));
}

#[test]
fn actions_say_what_a_packet_becomes() {
    use std::net::IpAddr;
    let rules: Vec<Rule> = [
        (1, "src 192.0.2.0/24 snat 203.0.113.0/24"),
        (2, "dst 198.51.100.7 proto udp dnat 10.1.0.2 port 8080"),
        (3, "proto tcp mark 7 reroute"),
    ]
    .into_iter()
    .map(|(id, text)| Rule {
        id,
        spec: text.parse().expect("rule"),
    })
    .collect();
    let h = Handling::new(Verdict::Allow);
    let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
    // NETMAP keeps the host bits: 192.0.2.1 becomes 203.0.113.1.
    let pkt = parse_packet(&ipv4(6, &[], 0, &tcp(1, 2, SYN)));
    let (id, e) = action_for(&rules, &h, &pkt).expect("rule 1 acts");
    assert_eq!(id, 1);
    assert_eq!(e.src, Some(ip("203.0.113.1")));
    assert!(!e.reroute);
    // The dnat rule wins for UDP to 198.51.100.7 only by priority ties:
    // rule 1 matches first (lower id).
    let rules2: Vec<Rule> = rules[1..].to_vec();
    let pkt = parse_packet(&ipv4(17, &[], 0, &udp(1, 53)));
    let (_, e) = action_for(&rules2, &h, &pkt).expect("rule 2 acts");
    assert_eq!(e.dst, Some(ip("10.1.0.2")));
    assert_eq!(e.dport, Some(8080));
    assert!(e.reroute, "a new destination is routed anew");
    // A later fragment gets the address only.
    let frag = parse_packet(&ipv4(17, &[], 100, &[0; 16]));
    assert_eq!(frag.class, Class::LaterFragment);
    let (_, e) = action_for(&rules2, &h, &frag).expect("a later fragment is translated");
    assert_eq!((e.dst, e.dport), (Some(ip("10.1.0.2")), None));
    // ... unless fragments are dropped.
    let drop_frags = Handling {
        fragments: Fragments::Drop,
        ..h
    };
    assert_eq!(action_for(&rules2, &drop_frags, &frag), None);
    // snat ... port N: the reply side of a port forward rewrites the
    // source port, TCP and UDP alike; a later fragment gets the address only.
    let fwd: Vec<Rule> = ["src 192.0.2.0/24 proto tcp sport 2 snat 203.0.113.0/24 port 80"]
        .iter()
        .map(|text| Rule {
            id: 4,
            spec: text.parse().expect("rule"),
        })
        .collect();
    let (_, e) =
        action_for(&fwd, &h, &parse_packet(&ipv4(6, &[], 0, &tcp(2, 9, ACK)))).expect("snat port");
    assert_eq!(
        (e.src, e.sport, e.dport),
        (Some(ip("203.0.113.1")), Some(80), None)
    );
    assert!(!e.reroute);
    let frag = parse_packet(&ipv4(6, &[], 100, &[0; 16]));
    assert_eq!(
        action_for(&fwd, &h, &frag),
        None,
        "a port rule cannot be found for a later fragment"
    );
    // mark and reroute.
    let (_, e) = action_for(
        &rules[2..],
        &h,
        &parse_packet(&ipv4(6, &[], 0, &tcp(1, 2, ACK))),
    )
    .expect("mark");
    assert_eq!((e.mark, e.reroute), (Some(7), true));
    assert_eq!(
        netmap(ip("10.9.8.7"), "192.0.2.0/24".parse().expect("net")),
        ip("192.0.2.7")
    );
    assert_eq!(
        netmap(ip("fd00::1:2"), "fd99::/64".parse().expect("net")),
        ip("fd99::1:2")
    );
    // NPTv6 (RFC 6296): same one's-complement sum, the adjustment in the
    // first interface-id word (a /64) or in word 3 (a /48).
    let sum = |a: IpAddr| {
        let IpAddr::V6(a) = a else { panic!("v6") };
        let mut s: u32 = a.segments().iter().map(|w| u32::from(*w)).sum();
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s
    };
    let net = |s: &str| Some(s.parse::<IpNet>().expect("net"));
    let to64 = translate(
        ip("fd01::2"),
        net("fd01::/64"),
        "fd99::/64".parse().expect("net"),
    )
    .expect("npt");
    assert_eq!(sum(to64), sum(ip("fd01::2")));
    let IpAddr::V6(t) = to64 else { panic!("v6") };
    assert_eq!(t.segments()[..4], [0xfd99, 0, 0, 0]);
    assert_ne!(t.segments()[4], 0, "word 4 took the adjustment");
    // Back again: the inverse mapping gives the original address.
    assert_eq!(
        translate(to64, net("fd99::/64"), "fd01::/64".parse().expect("net")),
        Some(ip("fd01::2"))
    );
    // A /48: word 3 (the subnet) takes the adjustment, the sum holds.
    let to48 = translate(
        ip("fd01:0:0:1::5"),
        net("fd01::/48"),
        "2001:db8:1::/48".parse().expect("net"),
    )
    .expect("npt");
    assert_eq!(sum(to48), sum(ip("fd01:0:0:1::5")));
    let IpAddr::V6(t) = to48 else { panic!("v6") };
    assert_eq!(t.segments()[4..], [0, 0, 0, 5]);
    // A /48 with subnet 0xffff is not translatable.
    assert_eq!(
        translate(
            ip("fd01:0:0:ffff::5"),
            net("fd01::/48"),
            "2001:db8:1::/48".parse().expect("net")
        ),
        None
    );
}

/// An IPv4 ICMP error of `kind` from `src` to `dst` about a UDP datagram
/// `isrc`:`isport` -> `idst`:`idport`, cut to `keep` bytes of it.
fn error4(
    kind: u8,
    [src, dst]: [[u8; 4]; 2],
    inner: ([u8; 4], u16, [u8; 4], u16),
    keep: usize,
) -> Vec<u8> {
    let (isrc, isport, idst, idport) = inner;
    let mut datagram = ipv4(17, &[], 0, &udp(isport, idport));
    datagram[12..16].copy_from_slice(&isrc);
    datagram[16..20].copy_from_slice(&idst);
    datagram.truncate(keep);
    let mut message = icmp(kind, 3);
    message.extend(datagram);
    let mut p = ipv4(1, &[], 0, &message);
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    p
}

const INSIDE: [u8; 4] = [10, 1, 0, 2];
const CLIENT: [u8; 4] = [10, 0, 0, 2];

/// The reply side of a UDP port forward (public 203.0.113.7:80 to the
/// inside 10.1.0.2:8080), before a 1:1 rule for the inside network.
fn forward_back() -> Vec<Rule> {
    rules(&[
        "src 10.1.0.2 proto udp sport 8080 snat 203.0.113.7 port 80",
        "src 10.1.0.0/24 snat 198.51.100.0/24",
    ])
}

#[test]
fn an_error_is_matched_by_its_embedded_packet_reversed() {
    let p = error4(3, [INSIDE, CLIENT], (CLIENT, 40000, INSIDE, 8080), 28);
    let (flow, at) = error_flow(&p).expect("a flow");
    assert_eq!(at, 20, "the ICMP header's offset");
    assert_eq!(
        (
            flow.src_ip(),
            flow.dst_ip(),
            flow.proto,
            flow.sport,
            flow.dport,
            flow.l4
        ),
        (
            Some(IpAddr::V4(INSIDE.into())),
            Some(IpAddr::V4(CLIENT.into())),
            ip_proto::UDP,
            8080,
            40000,
            true
        )
    );
    // Ports cut away, a later fragment, not an error: no flow.
    assert_eq!(
        error_flow(&error4(
            3,
            [INSIDE, CLIENT],
            (CLIENT, 40000, INSIDE, 8080),
            22
        )),
        None
    );
    assert_eq!(error_flow(&ipv4(1, &[], 0, &icmp(8, 0))), None);
}

#[test]
fn an_error_about_a_forwarded_flow_takes_the_flows_rule_and_port() {
    let p = error4(3, [INSIDE, CLIENT], (CLIENT, 40000, INSIDE, 8080), 28);
    let (id, e) = error_action(&forward_back(), &p).expect("translated by its flow");
    let public = Some(IpAddr::V4([203, 0, 113, 7].into()));
    // The forward's rule, not the 1:1 rule that matches the error itself.
    assert_eq!(id, 1);
    assert_eq!(
        (e.effect.src, e.inner_dst, e.inner_dport),
        (public, public, Some(80))
    );
    assert_eq!(
        (e.effect.dst, e.inner_src, e.inner_sport, e.effect.reroute),
        (None, None, None, false)
    );
}

#[test]
fn an_error_about_a_flow_is_judged_by_itself_when_the_flow_cannot_take_it() {
    let about = (CLIENT, 40000, INSIDE, 8080);
    // A drop of the error itself stands.
    let mut guarded = rules(&["proto icmp drop"]);
    guarded.extend(
        forward_back()
            .into_iter()
            .map(|r| Rule { id: r.id + 1, ..r }),
    );
    assert_eq!(
        error_action(&guarded, &error4(3, [INSIDE, CLIENT], about, 28)),
        None
    );
    // Another inside host reports it: the outer address is not the flow's.
    assert_eq!(
        error_action(
            &forward_back(),
            &error4(11, [[10, 1, 0, 254], CLIENT], about, 28)
        ),
        None
    );
    // A redirect is not translated.
    assert_eq!(
        error_action(&forward_back(), &error4(5, [INSIDE, CLIENT], about, 28)),
        None
    );
    // Another flow (port 8081) meets the 1:1 rule, reversed: that one.
    let other = (CLIENT, 40000, INSIDE, 8081);
    let (id, e) =
        error_action(&forward_back(), &error4(3, [INSIDE, CLIENT], other, 28)).expect("1:1");
    assert_eq!((id, e.inner_dport), (2, None));
}
