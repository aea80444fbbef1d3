//! Property test over single packets, with shrinking: packets built from a
//! small structure (family, protocol, ports, flags, IPv6 extension headers
//! with lengths, fragment offset and flags, IPv4 options, a cut) go through
//! the kernel filter by BPF_PROG_TEST_RUN and must get the model's verdict.
//! A failure shrinks to the simplest structure that still disagrees. The
//! rules aim at the evasions: ports and TCP flags behind fragments and long
//! header chains. Each run draws a new seed; `LWTKIT_SEED` replays one.
//! Needs root.
use lwtkit::{
    filter::{
        handling::{Fragments, Handling, Malformed},
        model::{judge, parse_packet},
        rule::{Rule, Verdict},
        testrun::Harness,
    },
    Hook,
};
use proptest::{
    prelude::*,
    test_runner::{Config, RngAlgorithm, TestRng, TestRunner},
};

const RULES: [&str; 7] = [
    "proto tcp dport 22 drop",
    "proto tcp dport 80 tcp-flags syn,!ack drop",
    "priority 10 dst 10.0.0.3 proto udp dport 53 allow",
    "dst 10.0.0.0/8 proto icmp icmp-type 8 drop",
    "dst fd00::3 proto icmpv6 icmp-type 128 drop",
    "src fd00::/16 proto tcp dport 443 allow",
    "priority 2000 proto udp drop",
];

/// What a test packet is made of; `build` turns it into bytes.
#[derive(Clone, Debug)]
struct Shape {
    v6: bool,
    proto: u8,
    dport: u16,
    tcp_flags: u8,
    /// IPv6 extension headers: (kind, n); n is the length in the header's
    /// units, or for a fragment header picks the offset and M bit.
    exts: Vec<(u8, u16)>,
    /// IPv4: fragment offset (8-byte units) and MF.
    frag: (u16, bool),
    v4_option_words: u8,
    /// Keep only this many bytes past the fixed IP header.
    cut: Option<usize>,
}

fn build(s: &Shape) -> Vec<u8> {
    let mut l4 = vec![0u8; 20];
    l4[0..2].copy_from_slice(&40000u16.to_be_bytes());
    l4[2..4].copy_from_slice(&s.dport.to_be_bytes());
    match s.proto {
        6 => {
            l4[12] = 0x50;
            l4[13] = s.tcp_flags;
        }
        1 | 58 => {
            l4[0] = if s.proto == 1 { 8 } else { 128 };
            l4[1] = 0;
        }
        _ => {}
    }
    let (mut p, min) = if s.v6 {
        let mut h = vec![0u8; 40];
        h[0] = 0x60;
        h[8..24].copy_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        h[24..40].copy_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3]);
        let mut nh_at = 6;
        for &(kind, n) in &s.exts {
            h[nh_at] = kind;
            nh_at = h.len();
            match kind {
                44 => {
                    let offset = [0u16, 0, 1, 2, 300][usize::from(n % 5)];
                    let field = offset << 3 | u16::from(n & 8 != 0);
                    h.extend_from_slice(&[0, 0]);
                    h.extend_from_slice(&field.to_be_bytes());
                    h.extend_from_slice(&[0, 0, 0, 7]);
                }
                51 => {
                    let units = 1 + (n % 4) as u8;
                    let mut e = vec![0u8; (usize::from(units) + 2) * 4];
                    e[1] = units;
                    h.extend_from_slice(&e);
                }
                _ => {
                    let units = (n % 4) as u8;
                    let mut e = vec![0u8; (usize::from(units) + 1) * 8];
                    e[1] = units;
                    h.extend_from_slice(&e);
                }
            }
        }
        h[nh_at] = s.proto;
        h.extend_from_slice(&l4);
        let len = (h.len() - 40) as u16;
        h[4..6].copy_from_slice(&len.to_be_bytes());
        (h, 40)
    } else {
        let ihl = 5 + usize::from(s.v4_option_words);
        let mut h = vec![0u8; ihl * 4];
        h[0] = 0x40 | ihl as u8;
        let field = s.frag.0 & 0x1fff | if s.frag.1 { 0x2000 } else { 0 };
        h[6..8].copy_from_slice(&field.to_be_bytes());
        h[8] = 64;
        h[9] = s.proto;
        h[12..16].copy_from_slice(&[10, 0, 0, 1]);
        h[16..20].copy_from_slice(&[10, 0, 0, 3]);
        h.extend_from_slice(&l4);
        let len = h.len() as u16;
        h[2..4].copy_from_slice(&len.to_be_bytes());
        (h, 20)
    };
    if let Some(keep) = s.cut {
        p.truncate(min + keep);
    }
    p
}

fn shape() -> impl Strategy<Value = Shape> {
    let ext = (prop::sample::select(vec![60u8, 0, 43, 44, 51]), 0u16..16);
    (
        any::<bool>(),
        prop::sample::select(vec![6u8, 17, 1, 58, 47]),
        prop::sample::select(vec![22u16, 53, 80, 443, 9000]),
        prop::sample::select(vec![0x02u8, 0x12, 0x10, 0x11]),
        prop::collection::vec(ext, 0..11),
        (
            prop_oneof![Just(0u16), Just(1), Just(2), 3u16..8000],
            any::<bool>(),
        ),
        0u8..4,
        prop::option::of(0usize..120),
    )
        .prop_map(
            |(v6, proto, dport, tcp_flags, exts, frag, v4_option_words, cut)| Shape {
                v6,
                proto,
                dport,
                tcp_flags,
                exts,
                frag,
                v4_option_words,
                cut,
            },
        )
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

#[test]
fn each_packet_gets_the_models_verdict_and_failures_shrink() {
    if unsafe { libc_geteuid() } != 0 {
        if std::env::var_os("LWT_TEST_REQUIRE_ROOT").is_some_and(|v| !v.is_empty() && v != "0") {
            panic!("each_packet_gets_the_models_verdict_and_failures_shrink needs root (BPF_PROG_TEST_RUN), and LWT_TEST_REQUIRE_ROOT is set, so it may not be skipped");
        }
        eprintln!("SKIPPED each_packet_gets_the_models_verdict_and_failures_shrink: needs root (BPF_PROG_TEST_RUN)");
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
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    for (i, (fragments, malformed)) in [
        (Fragments::Pass, Malformed::Drop),
        (Fragments::Drop, Malformed::Default),
        (Fragments::Pass, Malformed::Default),
        (Fragments::Drop, Malformed::Drop),
    ]
    .into_iter()
    .enumerate()
    {
        let handling = Handling {
            default: if i % 2 == 0 {
                Verdict::Allow
            } else {
                Verdict::Drop
            },
            fragments,
            malformed,
        };
        let h =
            Harness::filter_with(&rules, &handling, Hook::In, i as u32 % 2).expect("filter loads");
        bytes[8] = i as u8;
        let mut runner = TestRunner::new_with_rng(
            Config {
                cases: 1000,
                failure_persistence: None,
                ..Config::default()
            },
            TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
        );
        runner
            .run(&shape(), |s| {
                let pkt = build(&s);
                let (verdict, decider) = judge(&rules, &handling, &parse_packet(&pkt));
                let rc = h
                    .run(&pkt)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let want = if verdict == Verdict::Drop { 2 } else { 0 };
                prop_assert_eq!(
                    rc,
                    want,
                    "model: {:?} by {:?}; key {:?}; packet {:02x?}",
                    verdict,
                    decider,
                    parse_packet(&pkt),
                    pkt
                );
                Ok(())
            })
            .unwrap_or_else(|e| panic!("seed {seed:#x} {handling:?}: {e}"));
    }
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}
