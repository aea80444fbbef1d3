//! The filter program specialised at load time (`.rodata.spec`): a rule
//! set without actions, logging or IPv6 rules loads a smaller program, and
//! every specialisation judges packets as the program with every path.
//! Needs root (BPF_PROG_TEST_RUN).
use lwtkit::{
    filter::{
        handling::Handling,
        model::{judge, parse_packet},
        rule::{Rule, RuleSpec, Verdict},
        testrun::Harness,
    },
    Hook,
};
use lwtkit_common::filter::ProgramSpec;

fn rules(lines: &[&str]) -> Vec<Rule> {
    lines
        .iter()
        .zip(1..)
        .map(|(l, id)| Rule {
            id,
            spec: l.parse::<RuleSpec>().expect("rule parses"),
        })
        .collect()
}

fn root_or_skip(test: &str) -> bool {
    if unsafe { libc_geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("LWT_TEST_REQUIRE_ROOT").is_some_and(|v| !v.is_empty() && v != "0") {
        panic!("{test} needs root (BPF_PROG_TEST_RUN), and LWT_TEST_REQUIRE_ROOT is set, so it may not be skipped");
    }
    eprintln!("SKIPPED {test}: needs root (BPF_PROG_TEST_RUN)");
    false
}

/// An IPv4 or IPv6 TCP/UDP packet from `src` to `dst`.
fn packet(v6: bool, proto: u8, dport: u16) -> Vec<u8> {
    let mut l4 = vec![0u8; 20];
    l4[0..2].copy_from_slice(&40000u16.to_be_bytes());
    l4[2..4].copy_from_slice(&dport.to_be_bytes());
    if proto == 6 {
        l4[12] = 0x50;
        l4[13] = 0x02;
    }
    let mut p = if v6 {
        let mut h = vec![0u8; 40];
        h[0] = 0x60;
        h[4..6].copy_from_slice(&(l4.len() as u16).to_be_bytes());
        h[6] = proto;
        h[7] = 64;
        h[8..24].copy_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        h[24..40].copy_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3]);
        h
    } else {
        let mut h = vec![0u8; 20];
        h[0] = 0x45;
        h[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
        h[8] = 64;
        h[9] = proto;
        h[12..16].copy_from_slice(&[10, 0, 0, 1]);
        h[16..20].copy_from_slice(&[10, 0, 0, 3]);
        h
    };
    p.extend_from_slice(&l4);
    p
}

const PLAIN: [&str; 3] = [
    "dst 10.0.0.3/32 proto tcp dport 22 drop",
    "dst 10.0.0.0/24 proto udp dport 53 allow",
    "priority 2000 proto udp drop",
];

#[test]
fn a_policy_without_actions_log_or_ipv6_loads_a_smaller_program() {
    if !root_or_skip("a_policy_without_actions_log_or_ipv6_loads_a_smaller_program") {
        return;
    }
    let r = rules(&PLAIN[..2]);
    let handling = Handling::new(Verdict::Allow);
    for hook in [Hook::In, Hook::Out, Hook::Xmit] {
        let lean = Harness::filter_with(&r, &handling, hook, 0).expect("specialised loads");
        let full =
            Harness::filter_as(&r, &handling, hook, ProgramSpec::GENERIC).expect("generic loads");
        let (lean_insns, lean_jit) = lean.sizes().expect("sizes");
        let (full_insns, full_jit) = full.sizes().expect("sizes");
        eprintln!("{hook}: specialised {lean_insns} insns, {lean_jit} B JIT; every path {full_insns} insns, {full_jit} B JIT");
        assert!(
            lean_insns < full_insns && lean_jit < full_jit,
            "{hook}: specialised {lean_insns}/{lean_jit} vs {full_insns}/{full_jit}"
        );
    }
}

#[test]
fn every_specialisation_judges_as_the_model() {
    if !root_or_skip("every_specialisation_judges_as_the_model") {
        return;
    }
    let sets: [&[&str]; 4] = [
        &PLAIN,
        &[
            "dst 10.0.0.3/32 proto tcp dport 22 drop log",
            "proto udp dport 53 drop",
        ],
        &[
            "dst fd00::3/128 proto tcp dport 22 drop",
            "dst 10.0.0.3/32 proto udp drop",
        ],
        &[
            "dst 10.0.0.3/32 proto tcp dport 22 mark 7",
            "dst 10.0.0.0/8 proto udp dport 53 drop",
        ],
    ];
    let handling = Handling::new(Verdict::Allow);
    for lines in sets {
        let r = rules(lines);
        for hook in [Hook::In, Hook::Out, Hook::Xmit] {
            let specialised =
                Harness::filter_with(&r, &handling, hook, 0).expect("specialised loads");
            let generic = Harness::filter_as(&r, &handling, hook, ProgramSpec::GENERIC)
                .expect("generic loads");
            for v6 in [false, true] {
                for (proto, dport) in [(6, 22), (6, 80), (17, 53), (17, 54)] {
                    let p = packet(v6, proto, dport);
                    let (verdict, _) = judge(&r, &handling, &parse_packet(&p));
                    let want = if verdict == Verdict::Drop { 2 } else { 0 };
                    let a = specialised.run(&p).expect("runs");
                    let b = generic.run(&p).expect("runs");
                    assert_eq!(
                        a, b,
                        "{lines:?} {hook} v6={v6} {proto}/{dport}: specialised vs every path"
                    );
                    assert_eq!(
                        a, want,
                        "{lines:?} {hook} v6={v6} {proto}/{dport}: vs the model"
                    );
                }
            }
        }
    }
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// Not a check: the hot test-run cost of the specialised program against
/// the one with every path, on 10,000 benchmark rules (IPv4, no log, no
/// actions), alternating in one process. `cargo test --release -p lwtkit
/// --test filter_specialised -- --ignored --nocapture`.
#[test]
#[ignore = "a timing, not a check"]
fn timing_specialised_against_every_path() {
    if !root_or_skip("timing_specialised_against_every_path") {
        return;
    }
    let rules = lwtkit::filter::bench_rules(10_000, 7);
    let handling = Handling::new(Verdict::Allow);
    let pkt = packet(false, 17, 9);
    let cells = lwtkit::filter::compile::compile(&rules)
        .expect("compiles")
        .cells;
    println!(
        "specialised for: {}",
        lwtkit::filter::spec::describe(lwtkit::filter::spec::needs(&rules, &cells))
    );
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(15);
    for hook in [Hook::Out, Hook::Xmit] {
        let lean = Harness::filter_with(&rules, &handling, hook, 0).expect("specialised loads");
        let full = Harness::filter_as(&rules, &handling, hook, ProgramSpec::GENERIC)
            .expect("generic loads");
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let order: [(&Harness, &mut Vec<f64>); 2] = if round % 2 == 0 {
                [(&lean, &mut a), (&full, &mut b)]
            } else {
                [(&full, &mut b), (&lean, &mut a)]
            };
            for (h, v) in order {
                let (_, t) = h.run_repeat(&pkt, 300_000).expect("runs");
                v.push(t.as_nanos() as f64);
            }
        }
        let stats = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            (v[0], v[v.len() / 2])
        };
        let ((amin, amed), (bmin, bmed)) = (stats(&mut a), stats(&mut b));
        let ((ai, aj), (bi, bj)) = (lean.sizes().expect("sizes"), full.sizes().expect("sizes"));
        println!("{hook}: specialised min {amin:.0} median {amed:.0} ns ({ai} insns, {aj} B JIT); every path min {bmin:.0} median {bmed:.0} ns ({bi} insns, {bj} B JIT); {rounds} alternating rounds of 300,000 runs");
    }
}
