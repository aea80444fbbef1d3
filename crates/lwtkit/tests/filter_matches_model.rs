//! Property test: the kernel filter program and the Rust reference model
//! must give the same verdict, the same winning rule and the same counters
//! for every packet. Random rule sets (priorities with ties, prefixes of
//! both families, ports, ranges, ICMP types, TCP flags) and settings
//! (default, `--fragments`, `--malformed`, live generation 0 or 1) meet
//! random packets (valid, truncated, IPv4 options, fragments of every kind,
//! IPv6 extension-header chains with non-zero lengths, longer than the
//! walk's bound, malformed), each run through BPF_PROG_TEST_RUN. Each run
//! draws a new seed and prints it; `LWTKIT_SEED=<seed>` replays one. Needs
//! root.
use ipnet::IpNet;
use lwtkit::{
    filter::{
        bench_families::{family_rules, sweep_packets, Family},
        compile::compile_with_slots,
        handling::{Fragments, Handling, Malformed},
        image::verify,
        model::{judge, parse_packet, Class, Decider},
        patch::{self, Change},
        rule::{PortRange, Rule, RuleSpec, TcpFlags, Verdict},
        testrun::Harness,
    },
    Hook,
};

/// xorshift64*: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

const V4_POOL: [[u8; 4]; 6] = [
    [10, 0, 0, 3],
    [10, 0, 1, 7],
    [10, 1, 2, 3],
    [192, 168, 5, 9],
    [172, 16, 0, 1],
    [10, 0, 0, 200],
];
const V6_POOL: [[u16; 8]; 4] = [
    [0xfd00, 0, 0, 0, 0, 0, 0, 3],
    [0xfd00, 0, 1, 0, 0, 0, 0, 7],
    [0x2001, 0xdb8, 0, 5, 0, 0, 0, 1],
    [0xfd00, 0, 0, 0, 0xffff, 0, 0, 9],
];
const PORTS: [u16; 6] = [22, 53, 80, 443, 8080, 40000];

fn v4(r: &mut Rng) -> [u8; 4] {
    let mut a = r.pick(&V4_POOL);
    if r.chance(20) {
        a[3] = r.next() as u8;
    }
    if r.chance(30) {
        a = (r.next() as u32).to_be_bytes();
    }
    a
}

fn v6(r: &mut Rng) -> [u8; 16] {
    let w = r.pick(&V6_POOL);
    let mut o = [0u8; 16];
    for (i, x) in w.iter().enumerate() {
        o[2 * i..2 * i + 2].copy_from_slice(&x.to_be_bytes());
    }
    if r.chance(20) {
        o[15] = r.next() as u8;
    }
    if r.chance(30) {
        o[4..12].copy_from_slice(&r.next().to_be_bytes());
    }
    o
}

fn random_prefix(r: &mut Rng, is_v6: bool) -> IpNet {
    if is_v6 {
        let plen = r.pick(&[16u8, 32, 48, 64, 100, 127, 128]);
        IpNet::new(std::net::Ipv6Addr::from(v6(r)).into(), plen)
            .expect("valid")
            .trunc()
    } else {
        let plen = r.pick(&[0u8, 8, 16, 24, 30, 32]);
        IpNet::new(std::net::Ipv4Addr::from(v4(r)).into(), plen)
            .expect("valid")
            .trunc()
    }
}

fn random_rule(r: &mut Rng) -> Option<RuleSpec> {
    let mut s = RuleSpec::new(if r.chance(50) {
        Verdict::Drop
    } else {
        Verdict::Allow
    });
    s.priority = r.pick(&[1u32, 5, 5, 10, 1000, 1000]);
    s.log = r.chance(10);
    let is_v6 = r.chance(40);
    if r.chance(60) {
        s.src = Some(random_prefix(r, is_v6));
    }
    if r.chance(60) {
        s.dst = Some(random_prefix(r, is_v6));
    }
    match r.below(7) {
        0 => s.proto = Some(6),
        1 => s.proto = Some(17),
        2 => s.proto = Some(if is_v6 { 58 } else { 1 }),
        3 => s.proto = Some(47),
        _ => {}
    }
    let port = |r: &mut Rng| {
        let p = r.pick(&PORTS);
        if r.chance(30) {
            PortRange {
                lo: p.saturating_sub(r.below(100) as u16),
                hi: p.saturating_add(r.below(1000) as u16),
            }
        } else {
            PortRange::single(p)
        }
    };
    let ported = matches!(s.proto, None | Some(6) | Some(17));
    if ported && r.chance(50) {
        s.dport = Some(port(r));
    }
    if ported && r.chance(20) {
        s.sport = Some(port(r));
    }
    if matches!(s.proto, Some(1) | Some(58)) && r.chance(60) {
        s.icmp_type = Some(r.pick(&[0u8, 3, 8, 128, 129]));
    }
    if matches!(s.proto, None | Some(6)) && s.sport.is_none() && r.chance(15) {
        s.proto = Some(6);
        let mask = r.pick(&[0x02u8, 0x12, 0x11, 0x04]);
        s.tcp_flags = Some(TcpFlags {
            mask,
            value: mask & r.next() as u8,
        });
    }
    s.validate().ok().map(|_| s)
}

fn l4(r: &mut Rng, proto: u8) -> Vec<u8> {
    match proto {
        6 => {
            let mut t = vec![0u8; 20];
            t[0..2].copy_from_slice(&r.pick(&PORTS).to_be_bytes());
            t[2..4].copy_from_slice(&r.pick(&PORTS).to_be_bytes());
            t[12] = 0x50;
            t[13] = r.pick(&[0x02u8, 0x12, 0x10, 0x11, 0x04, 0x18]);
            t
        }
        17 => {
            let mut u = vec![0u8; 8];
            u[0..2].copy_from_slice(&r.pick(&PORTS).to_be_bytes());
            u[2..4].copy_from_slice(&(r.pick(&PORTS) + r.below(3) as u16).to_be_bytes());
            u
        }
        1 | 58 => vec![
            r.pick(&[0u8, 3, 8, 128, 129]),
            r.below(4) as u8,
            0,
            0,
            0,
            0,
            0,
            0,
        ],
        _ => vec![0u8; 8],
    }
}

/// Bytes of L4 header the filter reads for `proto` (0: none).
fn l4_needs(proto: u8, is_v6: bool) -> usize {
    match (proto, is_v6) {
        (6, _) => 14,
        (17, _) => 4,
        (1, false) | (58, true) => 2,
        _ => 0,
    }
}

/// A fragment offset (8-byte units) of each kind: first/none (0), the
/// evasive 1, or a later one.
fn fragment_offset(r: &mut Rng) -> u16 {
    match r.below(10) {
        0..=4 => 0,
        5 | 6 => 1,
        7 => 2,
        _ => 2 + r.below(8000) as u16,
    }
}

/// An IPv6 extension header of `kind` with a random (non-zero when the
/// kind allows) length; the next-header byte is set later.
fn ext_header(r: &mut Rng, kind: u8) -> Vec<u8> {
    match kind {
        44 => {
            let off = fragment_offset(r);
            let more = u16::from(r.chance(60));
            let field = off << 3 | more | (r.below(4) as u16) << 1;
            let mut h = vec![0, r.next() as u8];
            h.extend_from_slice(&field.to_be_bytes());
            h.extend_from_slice(&(r.next() as u32).to_be_bytes());
            h
        }
        51 => {
            // Payload length in 4-byte units minus 2: 12 to 24 bytes.
            let units = 1 + r.below(4) as u8;
            let mut h = vec![0u8; (usize::from(units) + 2) * 4];
            h[1] = units;
            for b in h.iter_mut().skip(2) {
                *b = r.next() as u8;
            }
            h
        }
        _ => {
            let units = if r.chance(50) {
                0
            } else {
                1 + r.below(3) as u8
            };
            let mut h = vec![0u8; (usize::from(units) + 1) * 8];
            h[1] = units;
            for b in h.iter_mut().skip(2) {
                *b = r.next() as u8;
            }
            h
        }
    }
}

fn random_packet(r: &mut Rng) -> Vec<u8> {
    let is_v6 = r.chance(40);
    let proto = r.pick(&[6u8, 6, 17, 17, if is_v6 { 58 } else { 1 }, 47]);
    let (mut p, l4_at) = if is_v6 {
        let mut h = vec![0u8; 40];
        h[0] = 0x60;
        h[8..24].copy_from_slice(&v6(r));
        h[24..40].copy_from_slice(&v6(r));
        // An extension-header chain, sometimes longer than the walk allows.
        let n = match r.below(10) {
            0..=3 => 0,
            4..=7 => 1 + r.below(4) as usize,
            _ => 5 + r.below(6) as usize,
        };
        let mut nh_at = 6usize;
        for _ in 0..n {
            let kind = r.pick(&[0u8, 43, 60, 60, 44, 44, 51]);
            h[nh_at] = kind;
            nh_at = h.len();
            let e = ext_header(r, kind);
            h.extend_from_slice(&e);
        }
        h[nh_at] = proto;
        let at = h.len();
        h.extend_from_slice(&l4(r, proto));
        let len = (h.len() - 40) as u16;
        h[4..6].copy_from_slice(&len.to_be_bytes());
        (h, at)
    } else {
        let opts = if r.chance(15) {
            4 * (1 + r.below(3) as usize)
        } else {
            0
        };
        let mut h = vec![0u8; 20 + opts];
        h[0] = 0x40 | ((20 + opts) / 4) as u8;
        h[8] = 64;
        h[9] = proto;
        if r.chance(40) {
            // MF, DF or neither (an atomic datagram), at any offset kind.
            let flags = r.pick(&[0x2000u16, 0x2000, 0x4000, 0]);
            let off = fragment_offset(r);
            h[6..8].copy_from_slice(&(flags | off).to_be_bytes());
        }
        h[12..16].copy_from_slice(&v4(r));
        h[16..20].copy_from_slice(&v4(r));
        let at = h.len();
        h.extend_from_slice(&l4(r, proto));
        let len = h.len() as u16;
        h[2..4].copy_from_slice(&len.to_be_bytes());
        (h, at)
    };
    let min = if is_v6 { 40 } else { 20 };
    if r.chance(10) {
        // Cut inside the L4 fields the filter reads: a short first fragment
        // (when the fragment bits say so) or a truncated packet.
        let need = l4_needs(proto, is_v6).max(1);
        p.truncate((l4_at + r.below(need as u64) as usize).max(min));
    } else if r.chance(10) {
        // Truncated anywhere past the fixed IP header: test-run refuses
        // shorter frames (the model's own unit tests cover those).
        let keep = min + r.below(p.len().saturating_sub(min) as u64 + 1) as usize;
        p.truncate(keep);
    }
    if r.chance(3) {
        p[0] = (p[0] & 0x0f) | r.pick(&[0x00u8, 0x50, 0x70]);
    }
    if r.chance(3) && p[0] >> 4 == 4 {
        p[0] = 0x40 | r.below(5) as u8;
    }
    p
}

/// The seed of this run: `LWTKIT_SEED` (decimal or 0x-hex), else a new one.
fn seed() -> u64 {
    if let Ok(s) = std::env::var("LWTKIT_SEED") {
        let parsed = match s.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => s.parse(),
        };
        return parsed.unwrap_or_else(|e| panic!("LWTKIT_SEED `{s}`: {e}"));
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    // xorshift needs a non-zero state.
    (t ^ u64::from(std::process::id()).rotate_left(32)) | 1
}

#[test]
fn kernel_filter_agrees_with_the_model_on_100k_packets() {
    if unsafe { libc_geteuid() } != 0 {
        // CI sets LWT_TEST_REQUIRE_ROOT: there a skip would be a silent pass.
        if std::env::var_os("LWT_TEST_REQUIRE_ROOT").is_some_and(|v| !v.is_empty() && v != "0") {
            panic!("kernel_filter_agrees_with_the_model_on_100k_packets needs root (BPF_PROG_TEST_RUN), and LWT_TEST_REQUIRE_ROOT is set, so it may not be skipped");
        }
        eprintln!("SKIPPED kernel_filter_agrees_with_the_model_on_100k_packets: needs root (BPF_PROG_TEST_RUN)");
        return;
    }
    let seed = seed();
    eprintln!("seed {seed:#x} (LWTKIT_SEED={seed:#x} replays this run)");
    let mut r = Rng(seed);
    let sizes = [
        1usize, 3, 8, 20, 50, 120, 300, 700, 200, 5, 40, 90, 400, 500, 10, 60, 250, 30, 600, 15,
    ];
    let per_set = 5_000;
    let mut total = 0usize;
    let mut classes = std::collections::BTreeMap::new();
    for (set, &n) in sizes.iter().enumerate() {
        let handling = Handling {
            default: if set % 2 == 0 {
                Verdict::Allow
            } else {
                Verdict::Drop
            },
            fragments: if r.chance(50) {
                Fragments::Pass
            } else {
                Fragments::Drop
            },
            malformed: if r.chance(50) {
                Malformed::Drop
            } else {
                Malformed::Default
            },
        };
        let hook = [Hook::In, Hook::Out, Hook::Xmit][set % 3];
        // Both halves of the cells map: generation 1 reads rules at the
        // generation's base and counts in the second half of the counters.
        let generation = (set / 2 % 2) as u32;
        let (rules, h) = (0..20)
            .find_map(|_| {
                let specs: Vec<RuleSpec> = std::iter::repeat_with(|| random_rule(&mut r))
                    .flatten()
                    .take(n)
                    .collect();
                // Ids as a long-lived policy has them: sparse, past any
                // counter slot, so the kernel must count by slot and report
                // by id.
                let rules: Vec<Rule> = specs
                    .into_iter()
                    .zip((1_000_000u32..).step_by(7))
                    .map(|(spec, id)| Rule { id, spec })
                    .collect();
                match Harness::filter_with(&rules, &handling, hook, generation) {
                    Ok(h) => Some((rules, h)),
                    // Some random sets are beyond the compiler's budget, as
                    // `filter replace` would say: draw another.
                    Err(e) if e.to_string().contains("compile:") => None,
                    Err(e) => panic!("seed {seed:#x} set {set}: filter does not load: {e}"),
                }
            })
            .unwrap_or_else(|| panic!("seed {seed:#x} set {set}: no rule set of {n} compiles"));
        let mut expected = vec![0u64; rules.len() + 1];
        let mut verdicts = [0u64; 3];
        for i in 0..per_set {
            let pkt = random_packet(&mut r);
            let (verdict, decider) = judge(&rules, &handling, &parse_packet(&pkt));
            let rc = h
                .run(&pkt)
                .unwrap_or_else(|e| panic!("test run of {pkt:02x?}: {e}"));
            let want_rc = if verdict == Verdict::Drop { 2 } else { 0 };
            // Rules and the default count per rule; the fragment and
            // malformed settings only per attachment.
            let rule = match decider {
                Decider::Rule(id) => Some(Some(id)),
                Decider::Default => Some(None),
                Decider::Fragments | Decider::Malformed => None,
            };
            let class = parse_packet(&pkt).class;
            *classes.entry(format!("{class:?}")).or_insert(0u64) += 1;
            let malformed = matches!(class, Class::Malformed | Class::Evasive);
            verdicts[if malformed {
                2
            } else if verdict == Verdict::Drop {
                1
            } else {
                0
            }] += 1;
            let (slot, hits) = match rule {
                Some(rule) => {
                    let slot = h.slot_of(rule) as usize;
                    expected[slot] += 1;
                    (slot, h.hits_of(rule).expect("rule stats"))
                }
                None => (0, expected[0]),
            };
            if rc != want_rc || hits != expected[slot] {
                let text: Vec<String> = rules
                    .iter()
                    .map(|x| format!("{}: {}", x.id, x.spec))
                    .collect();
                panic!(
                    "seed {seed:#x} set {set} packet {i} ({handling:?}, generation {generation}): kernel rc {rc} (rule slot hits {hits}, expected {}) but model says {verdict:?} by {decider:?}\npacket {pkt:02x?}\nkey {:?}\nrules:\n{}",
                    expected[slot],
                    parse_packet(&pkt),
                    text.join("\n")
                );
            }
            total += 1;
        }
        assert_eq!(
            h.rule_hits().expect("rule stats"),
            expected,
            "seed {seed:#x} set {set}: per-rule hits differ"
        );
        assert_eq!(
            h.verdict_counts().expect("attachment stats"),
            verdicts,
            "seed {seed:#x} set {set}: allowed/dropped/malformed counters differ"
        );
    }
    assert!(total >= 100_000);
    // Every class must have been exercised, in numbers.
    for class in ["Whole", "LaterFragment", "Malformed", "Evasive"] {
        let n = classes.get(class).copied().unwrap_or(0);
        assert!(
            n >= 1_000,
            "seed {seed:#x}: only {n} packets of class {class}"
        );
    }
    eprintln!("{total} packets ({classes:?}): kernel and model agree");
}

/// The layout at scale: 100,000 rules of the benchmark and the mixed
/// IPv4/IPv6 families, 10,000 of the others (IPv4 and IPv6 trees, wide
/// ranges, flags and ICMP types, leaves full of records shared between
/// leaves), in generation 0 or 1, each met by packets aimed at random rules
/// and random ones; verdict and counter checked against the model packet
/// by packet (the model scans every rule, so the packets are few).
#[test]
fn kernel_filter_agrees_with_the_model_at_100k_rules_of_every_family() {
    if unsafe { libc_geteuid() } != 0 {
        if std::env::var_os("LWT_TEST_REQUIRE_ROOT").is_some_and(|v| !v.is_empty() && v != "0") {
            panic!("kernel_filter_agrees_with_the_model_at_100k_rules_of_every_family needs root (BPF_PROG_TEST_RUN), and LWT_TEST_REQUIRE_ROOT is set, so it may not be skipped");
        }
        eprintln!("SKIPPED kernel_filter_agrees_with_the_model_at_100k_rules_of_every_family: needs root (BPF_PROG_TEST_RUN)");
        return;
    }
    const PACKETS: usize = 600;
    let seed = seed();
    eprintln!("seed {seed:#x} (LWTKIT_SEED={seed:#x} replays this run)");
    for (i, family) in Family::ALL.into_iter().enumerate() {
        let fseed = seed.wrapping_add(i as u64);
        let n = if matches!(family, Family::Bench | Family::Mixed46) {
            100_000
        } else {
            10_000
        };
        let rules = lwtkit::filter::bench_families::family_rules(family, n, fseed);
        let default = if i % 2 == 0 {
            Verdict::Allow
        } else {
            Verdict::Drop
        };
        let handling = Handling::new(default);
        let generation = (i % 2) as u32 ^ 1;
        let h = Harness::filter_with(&rules, &handling, Hook::Out, generation)
            .unwrap_or_else(|e| panic!("seed {seed:#x} {}: {e}", family.name()));
        let mut matched = 0;
        for (k, (_, pkt)) in sweep_packets(&rules, PACKETS, fseed).iter().enumerate() {
            let (verdict, decider) = judge(&rules, &handling, &parse_packet(pkt));
            let rule = match decider {
                Decider::Rule(id) => Some(id),
                _ => None,
            };
            matched += usize::from(rule.is_some());
            let before = h.hits_of(rule).expect("rule stats");
            let rc = h.run(pkt).expect("test run");
            let after = h.hits_of(rule).expect("rule stats");
            let want = if verdict == Verdict::Drop { 2 } else { 0 };
            assert!(
                rc == want && after == before + 1,
                "seed {seed:#x} {} packet {k} (generation {generation}): kernel rc {rc}, counter of {rule:?} {before} -> {after}, but the model says {verdict:?} by {decider:?}\nkey {:?}",
                family.name(),
                parse_packet(pkt)
            );
        }
        // Half the packets are aimed at a rule.
        assert!(
            matched >= PACKETS / 2,
            "seed {seed:#x} {}: only {matched} of {PACKETS} packets matched a rule",
            family.name()
        );
    }
}

/// A policy built by one-rule changes, as `rule add` / `rule del` make it:
/// 100,000 rules compiled whole, then 200 random adds (at the default
/// priority and at others, so new rules land before, between and after
/// the others) and deletes applied by `filter::patch` to the cells, with
/// the counter slot a new rule gets (the lowest free one). The cells pass
/// `image::verify` every 25 changes; then the kernel walks them, in
/// generation 0 and 1, over a sweep of packets aimed at the rules (the
/// added ones too) and random ones, and verdict and counter must be the
/// model's for the final rules.
#[test]
fn kernel_filter_agrees_with_the_model_after_200_one_rule_changes_to_100k_rules() {
    if unsafe { libc_geteuid() } != 0 {
        if std::env::var_os("LWT_TEST_REQUIRE_ROOT").is_some_and(|v| !v.is_empty() && v != "0") {
            panic!("kernel_filter_agrees_with_the_model_after_200_one_rule_changes_to_100k_rules needs root (BPF_PROG_TEST_RUN), and LWT_TEST_REQUIRE_ROOT is set, so it may not be skipped");
        }
        eprintln!("SKIPPED kernel_filter_agrees_with_the_model_after_200_one_rule_changes_to_100k_rules: needs root (BPF_PROG_TEST_RUN)");
        return;
    }
    const PACKETS: usize = 1_000;
    let seed = seed();
    eprintln!("seed {seed:#x} (LWTKIT_SEED={seed:#x} replays this run)");
    for (i, family) in [Family::Bench, Family::Mixed46].into_iter().enumerate() {
        let mut r = Rng(seed.wrapping_add(i as u64) | 1);
        let mut rules = family_rules(family, 100_000, seed.wrapping_add(i as u64));
        let mut slots: std::collections::HashMap<u32, u32> =
            rules.iter().zip(1..).map(|(r, s)| (r.id, s)).collect();
        let mut cells = compile_with_slots(&rules, |x| slots[&x.id])
            .unwrap_or_else(|e| panic!("seed {seed:#x}: {e}"))
            .cells;
        let mut next_id = 100_001u32;
        let mut free: std::collections::BTreeSet<u32> = Default::default();
        let (mut patched, mut whole) = (0, 0);
        for step in 0..200 {
            let before = cells.clone();
            let change = if r.chance(50) {
                let at = r.below(rules.len() as u64) as usize;
                let gone = rules.remove(at);
                let slot = slots.remove(&gone.id).expect("slot");
                free.insert(slot);
                (gone, slot, false)
            } else {
                let mut spec = family_rules(family, 1, r.next()).remove(0).spec;
                let any = r.below(2000) as u32;
                spec.priority = r.pick(&[spec.priority, 10, 5000, any]);
                let rule = Rule { id: next_id, spec };
                next_id += 1;
                let slot = free.pop_first().unwrap_or(rules.len() as u32 + 1);
                slots.insert(rule.id, slot);
                rules.push(rule.clone());
                (rule, slot, true)
            };
            let (rule, slot, add) = change;
            let ch = if add {
                Change::Add(&rule, slot)
            } else {
                Change::Del(&rule, slot)
            };
            cells = match patch::apply(before, &rules, |x| slots[&x.id], ch, 1 << 24) {
                Ok(c) => {
                    patched += 1;
                    c
                }
                Err(_) => {
                    whole += 1;
                    compile_with_slots(&rules, |x| slots[&x.id])
                        .expect("compiles")
                        .cells
                }
            };
            // Checking the cells costs about a whole compile: every 25 changes.
            if step % 25 == 24 {
                verify(&cells, &rules, |x| slots[&x.id]).unwrap_or_else(|e| {
                    panic!("seed {seed:#x} {} change {step}: {e}", family.name())
                });
            }
        }
        eprintln!(
            "{}: {patched} changes patched, {whole} compiled whole",
            family.name()
        );
        assert!(
            patched >= 150,
            "seed {seed:#x}: only {patched} of 200 changes patched"
        );
        let added: Vec<Rule> = rules.iter().filter(|x| x.id > 100_000).cloned().collect();
        let mut packets = sweep_packets(&rules, PACKETS, seed ^ 7);
        if !added.is_empty() {
            packets.extend(sweep_packets(&added, PACKETS / 2, seed ^ 9));
        }
        for generation in [0u32, 1] {
            let handling = Handling::new(Verdict::Allow);
            let h = Harness::filter_cells(&rules, &slots, &cells, &handling, Hook::Out, generation)
                .unwrap_or_else(|e| panic!("seed {seed:#x} {}: {e}", family.name()));
            for (k, (_, pkt)) in packets.iter().enumerate() {
                let (verdict, decider) = judge(&rules, &handling, &parse_packet(pkt));
                let rule = match decider {
                    Decider::Rule(id) => Some(id),
                    _ => None,
                };
                let before = h.hits_of(rule).expect("rule stats");
                let rc = h.run(pkt).expect("test run");
                let after = h.hits_of(rule).expect("rule stats");
                let want = if verdict == Verdict::Drop { 2 } else { 0 };
                assert!(
                    rc == want && after == before + 1,
                    "seed {seed:#x} {} packet {k} (generation {generation}, after one-rule changes): kernel rc {rc}, counter of {rule:?} {before} -> {after}, but the model says {verdict:?} by {decider:?}\nkey {:?}",
                    family.name(),
                    parse_packet(pkt)
                );
            }
        }
    }
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}
