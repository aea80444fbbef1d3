//! Per-packet cost of the filter program, by BPF_PROG_TEST_RUN.
use std::time::Duration;

use lwtkit::{
    filter::{bench_rules, rule::Verdict, testrun::Harness},
    Hook,
};

const REPEAT: u32 = 1_000_000;
const RUNS: usize = 5;

/// A UDP/IPv4 packet from 10.200.0.1:40000 to 10.200.0.2:`dport`.
pub fn udp_packet(dport: u16) -> Vec<u8> {
    let mut p = vec![0u8; 28 + 32];
    p[0] = 0x45;
    let len = p.len() as u16;
    p[2..4].copy_from_slice(&len.to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&[10, 200, 0, 1]);
    p[16..20].copy_from_slice(&[10, 200, 0, 2]);
    p[20..22].copy_from_slice(&40000u16.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    p[24..26].copy_from_slice(&40u16.to_be_bytes());
    p
}

/// A packet that matches the first rule of a bench set exactly.
fn matching_packet(rule: &lwtkit::filter::rule::Rule) -> Vec<u8> {
    let mut p = udp_packet(rule.spec.dport.map_or(80, |d| d.lo));
    p[9] = rule.spec.proto.unwrap_or(17);
    if let Some(std::net::IpAddr::V4(a)) = rule.spec.src.map(|n| n.addr()) {
        p[12..16].copy_from_slice(&a.octets());
    }
    if let Some(std::net::IpAddr::V4(a)) = rule.spec.dst.map(|n| n.addr()) {
        p[16..20].copy_from_slice(&a.octets());
    }
    if p[9] == 6 {
        // A TCP header needs 20 bytes; the payload has room.
        p[32] = 0x50;
    }
    p
}

fn median_ns(h: &Harness, pkt: &[u8]) -> anyhow::Result<f64> {
    let mut runs: Vec<Duration> = (0..RUNS)
        .map(|_| h.run_repeat(pkt, REPEAT).map(|(_, d)| d))
        .collect::<Result<_, _>>()?;
    runs.sort();
    Ok(runs[RUNS / 2].as_nanos() as f64)
}

pub fn run() -> anyhow::Result<()> {
    let hook = Hook::Out;
    let miss = udp_packet(7);
    let floor = median_ns(&Harness::builtin("pass", hook)?, &miss)?;
    println!("filter per-packet cost, BPF_PROG_TEST_RUN on lwt_out (mean of {REPEAT} repeats, median of {RUNS} runs)");
    println!(
        "{:>8} {:>12} {:>12} {:>10} {:>12} {:>12}",
        "rules", "no match ns", "match ns", "setup ms", "over floor", "x floor"
    );
    println!(
        "{:>8} {:>12.1} {:>12} {:>10} {:>12} {:>12}",
        "empty", floor, "-", "-", "-", "1.00"
    );
    let mut at10 = None;
    for n in [10usize, 1_000, 10_000, 100_000] {
        let rules = bench_rules(n, 42);
        let t = std::time::Instant::now();
        let h = Harness::filter(&rules, Verdict::Allow, hook)?;
        let compile_ms = t.elapsed().as_secs_f64() * 1e3;
        let none = median_ns(&h, &miss)?;
        let hit = median_ns(&h, &matching_packet(&rules[0]))?;
        let worst = none.max(hit);
        let base = *at10.get_or_insert(worst);
        println!(
            "{n:>8} {none:>12.1} {hit:>12.1} {compile_ms:>10.0} {:>+11.1}ns {:>12.2}   ({:.2}x the 10-rule cost)",
            worst - floor,
            worst / floor,
            worst / base
        );
    }
    Ok(())
}
