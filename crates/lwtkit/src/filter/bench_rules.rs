//! Benchmark-shaped rule sets: mixed /16, /24 and /32 source and
//! destination prefixes, TCP and UDP, exact destination ports and ranges,
//! some source ports, both verdicts; seeded, so every run builds the same set.
use ipnet::IpNet;

use super::rule::{PortRange, Rule, RuleSpec, Verdict};

/// `n` rules from `seed` (ids 1..=n, in order).
pub fn bench_rules(n: usize, seed: u64) -> Vec<Rule> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (1..=n as u32)
        .map(|id| {
            let r = next();
            let prefix = |bits: u64, v: u32| {
                let plen = [16u8, 24, 32][(bits % 3) as usize];
                IpNet::new(std::net::Ipv4Addr::from(v).into(), plen)
                    .map(|n| n.trunc())
                    .ok()
            };
            let mut spec = RuleSpec::new(if r & 1 == 0 {
                Verdict::Drop
            } else {
                Verdict::Allow
            });
            spec.src = prefix(r >> 1, next() as u32);
            spec.dst = prefix(r >> 3, next() as u32);
            spec.proto = Some(if r & 0x20 == 0 { 6 } else { 17 });
            let port = (next() % 65_000) as u16 + 1;
            spec.dport = Some(if r % 10 < 7 {
                PortRange::single(port)
            } else {
                PortRange {
                    lo: port,
                    hi: port.saturating_add((next() % 2000) as u16),
                }
            });
            if r % 10 == 9 {
                spec.sport = Some(PortRange {
                    lo: 1024,
                    hi: 65_535,
                });
            }
            Rule { id, spec }
        })
        .collect()
}
