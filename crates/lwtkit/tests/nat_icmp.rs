//! ICMP and ICMPv6 errors through the kernel-side NAT piece
//! (`crates/lwtkit-ebpf/src/nat_icmp.rs`), proven on packets by
//! BPF_PROG_TEST_RUN of the test-only program `lwtkit-nat-test` (an
//! `lwt_xmit` program that never pushes an encapsulation).
//!
//! The expected packet is built with etherparse from what the inside host
//! really sent (its own address and port): a translated error must equal
//! it byte for byte, cut where the error cut the embedded datagram. Every
//! checksum is also verified with an RFC 1071 sum written here, never with
//! the code under test. The sweep draws random errors in both directions
//! (seed printed, `LWTKIT_SEED` replays one). Needs root.
mod nat;

use libbpf_rs::ObjectBuilder;
use lwtkit_common::{
    maps,
    nat_icmp::{outcome, NatCase},
};
use nat::*;

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

/// One error from outside back through the gateway's return rule
/// (`dst public -> inside`, port `public -> inside` when given), about a
/// datagram of the inside host's cut after `cut` bytes: built, then
/// checked against the error the inside host should see ([`Self::gives`]).
#[derive(Clone, Copy)]
struct ReturnError<'a> {
    sender: &'a [u8],
    kind: u8,
    code: u8,
    rest: [u8; 4],
    l4: L4,
    ports: Option<(u16, u16)>,
    cut: usize,
}

impl<'a> ReturnError<'a> {
    fn new(sender: &'a [u8], kind: u8, code: u8, l4: L4, cut: usize) -> Self {
        ReturnError {
            sender,
            kind,
            code,
            rest: [0; 4],
            l4,
            ports: None,
            cut,
        }
    }

    /// The error's bytes 4-7 (an MTU, a pointer).
    fn rest(self, rest: [u8; 4]) -> Self {
        ReturnError { rest, ..self }
    }

    /// The inside port and the public one it was translated to.
    fn ports(self, ports: (u16, u16)) -> Self {
        ReturnError {
            ports: Some(ports),
            ..self
        }
    }

    /// Runs the error through `p` and checks the outcome is `want` and the
    /// packet the one the inside host should see.
    fn gives(self, p: &Prog, g: &Gateway, want: u32) {
        let ReturnError {
            sender,
            kind,
            code,
            rest,
            l4,
            ports,
            cut,
        } = self;
        let (inside, public) = outbound(g, l4, ports, 24);
        let arrived = error_about(sender, &g.public, kind, code, rest, &public, cut);
        let expected = icmp(
            sender,
            &g.inside,
            kind,
            code,
            rest,
            &embedded_expected(&inside, &public, cut),
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
        let what = format!("type {kind} code {code} {l4:?} ports {ports:?} cut {cut}");
        assert_eq!((rc, name(got)), (0, name(want)), "{what}");
        assert_same(&out, &expected, &what);
        assert_checksums(&out, &what);
    }
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
    ReturnError::new(&g.far, 3, 3, L4::Udp, whole).gives(&p, &g, outcome::TRANSLATED_L4);
    // With the source port translated back as well (a NAPT-style rule).
    ReturnError::new(&g.far, 3, 3, L4::Udp, whole)
        .ports((5000, 40000))
        .gives(&p, &g, outcome::TRANSLATED_L4);
    // Time exceeded from a router (traceroute), embedding TCP, whole.
    ReturnError::new(&g.router, 11, 0, L4::Tcp, whole).gives(&p, &g, outcome::TRANSLATED_L4);
    ReturnError::new(&g.router, 11, 0, L4::Tcp, whole)
        .ports((5000, 40000))
        .gives(&p, &g, outcome::TRANSLATED_L4);
    // Fragmentation needed with a next-hop MTU of 1400 (PMTU discovery).
    ReturnError::new(&g.router, 3, 4, L4::Tcp, whole)
        .rest([0, 0, 0x05, 0x78])
        .gives(&p, &g, outcome::TRANSLATED_L4);
    // Parameter problem, pointer 9.
    ReturnError::new(&g.router, 12, 0, L4::Udp, whole)
        .rest([9, 0, 0, 0])
        .gives(&p, &g, outcome::TRANSLATED_L4);
    // A UDP datagram sent without a checksum keeps none.
    ReturnError::new(&g.far, 3, 3, L4::UdpNoSum, whole)
        .ports((5000, 40000))
        .gives(&p, &g, outcome::TRANSLATED);
    // Time exceeded for a ping (ICMP has no pseudo-header: address only).
    ReturnError::new(&g.router, 11, 0, L4::Echo, whole).gives(&p, &g, outcome::TRANSLATED);
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
    ReturnError::new(&g.far, 3, 3, L4::Udp, 28)
        .ports((5000, 40000))
        .gives(&p, &g, outcome::TRANSLATED_L4);
    ReturnError::new(&g.router, 11, 0, L4::Tcp, 28)
        .ports((5000, 40000))
        .gives(&p, &g, outcome::TRANSLATED);
    // TCP cut right after its checksum field, and right before it.
    ReturnError::new(&g.router, 11, 0, L4::Tcp, 20 + 18).gives(&p, &g, outcome::TRANSLATED_L4);
    ReturnError::new(&g.router, 11, 0, L4::Tcp, 20 + 16).gives(&p, &g, outcome::TRANSLATED);
    // Half the field: that byte stays as it came (as in Linux, which wants
    // the whole TCP header before it touches the checksum).
    ReturnError::new(&g.router, 11, 0, L4::Tcp, 20 + 17).gives(&p, &g, outcome::TRANSLATED);
    // Ports not asked for: only the embedded IP header is needed.
    ReturnError::new(&g.router, 11, 0, L4::Tcp, 20).gives(&p, &g, outcome::TRANSLATED);
    // Cut inside the whole TCP datagram's payload: the header checksum
    // field is there, the update gives the sender's checksum back.
    ReturnError::new(&g.router, 11, 0, L4::Tcp, 20 + 20 + 5)
        .ports((5000, 40000))
        .gives(&p, &g, outcome::TRANSLATED_L4);
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
    ReturnError::new(&g.router, 2, 0, L4::Tcp, whole)
        .rest([0, 0, 0x05, 0x00])
        .gives(&p, &g, outcome::TRANSLATED_L4);
    ReturnError::new(&g.router, 2, 0, L4::Tcp, whole)
        .rest([0, 0, 0x05, 0x00])
        .ports((5000, 40000))
        .gives(&p, &g, outcome::TRANSLATED_L4);
    // Port unreachable (code 4), embedding UDP, with the port.
    ReturnError::new(&g.far, 1, 4, L4::Udp, whole)
        .ports((5000, 40000))
        .gives(&p, &g, outcome::TRANSLATED_L4);
    // Hop limit exceeded for a ping6: the embedded ICMPv6 checksum covers
    // the embedded addresses and is updated.
    ReturnError::new(&g.router, 3, 0, L4::Echo, whole).gives(&p, &g, outcome::TRANSLATED_L4);
    // Parameter problem, pointer 6.
    ReturnError::new(&g.router, 4, 0, L4::Udp, whole)
        .rest([0, 0, 0, 6])
        .gives(&p, &g, outcome::TRANSLATED_L4);
    // Cut: the IPv6 header and 8 bytes of TCP (no checksum field).
    ReturnError::new(&g.router, 3, 0, L4::Tcp, 48)
        .ports((5000, 40000))
        .gives(&p, &g, outcome::TRANSLATED);
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
        // The outer header carries options too (a record-route router).
        let outer = words.min(4);
        let arrived = outer_options(
            error_about(&g.router, &g.public, 11, 0, [0; 4], &public, 1000),
            outer,
        );
        let expected = outer_options(
            error_about(&g.router, &g.inside, 11, 0, [0; 4], &inside, 1000),
            outer,
        );
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

/// `pkt` (an IPv4 packet without options) with `words` words of NOP/EOL
/// options added to its header, lengths and header checksum fixed.
fn outer_options(mut pkt: Vec<u8>, words: usize) -> Vec<u8> {
    let options: Vec<u8> = (0..words * 4)
        .map(|i| if i + 1 == words * 4 { 0 } else { 1 })
        .collect();
    pkt.splice(20..20, options);
    pkt[0] = 0x40 | (5 + words) as u8;
    let total = pkt.len() as u16;
    pkt[2..4].copy_from_slice(&total.to_be_bytes());
    pkt[10..12].copy_from_slice(&[0, 0]);
    let c = !fold(sum(&pkt[..20 + 4 * words], 0));
    pkt[10..12].copy_from_slice(&c.to_be_bytes());
    pkt
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

/// What the translation must do with a drawn error, decided here from the
/// packet's shape alone.
#[allow(clippy::too_many_arguments)]
fn expected_outcome(
    is6: bool,
    kind: u8,
    l4: L4,
    ports: bool,
    dst: bool,
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
    // for a rule on the outer destination, else the destination port.
    let port_end = if dst { 2 } else { 4 };
    if ports && has_ports && l4_there && n < hdr + port_end {
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
        // Half the cases run back through a `dnat`-side rule (outer
        // destination public -> inside: the error is about what the inside
        // host sent), half out through an `snat`-side rule (outer source
        // inside -> public: the inside host reports a packet a far client
        // sent to the public address).
        let dst = rng.below(2) == 0;
        let (view, wire) = if dst {
            // What the inside host sent, and what the gateway made of it.
            let wire = sent.with(&public, &far, pport, sent.dport);
            (sent.clone(), wire)
        } else {
            // What the far client sent, and what reached the inside host.
            let client = Flow {
                src: far.clone(),
                dst: public.clone(),
                sport: sent.dport,
                dport: pport,
                ..sent.clone()
            };
            let delivered = client.with(&far, &inside, sent.dport, iport);
            (client, delivered)
        };
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
        let whole = wire.bytes();
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
        let body = embedded_expected(&view, &wire, n);
        let (arrived, expected_pkt, case) = if dst {
            // From the far host or a router on the way.
            let sender = if rng.below(2) == 0 {
                far.clone()
            } else {
                g.router.clone()
            };
            let ports = if ports { (pport, iport) } else { (0, 0) };
            (
                icmp(&sender, &public, kind, code, rest, cut(&whole, n), &[]),
                icmp(&sender, &inside, kind, code, rest, &body, &[]),
                translation(&public, &inside, true, ports),
            )
        } else {
            let ports = if ports { (iport, pport) } else { (0, 0) };
            (
                icmp(&inside, &far, kind, code, rest, cut(&whole, n), &[]),
                icmp(&public, &far, kind, code, rest, &body, &[]),
                translation(&inside, &public, false, ports),
            )
        };
        let want = expected_outcome(is6, kind, l4, ports, dst, whole.len(), hdr, n);
        let (rc, got, out) = p.run(&case, &arrived);
        let what = format!(
            "case {i} (seed {seed:#x}): v6 {is6} dnat-side {dst} type {kind} code {code} {l4:?} ports {ports} opts/exts {} cut {n} of {}",
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
