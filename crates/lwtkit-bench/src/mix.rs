//! Per-packet cost of the filter at several rule families, by
//! BPF_PROG_TEST_RUN: one hot packet repeated, and a sweep of different
//! packets each run once, both interleaved with the empty program of the
//! same hook; every sweep packet's verdict and deciding rule are checked
//! against the model first.
use std::time::Duration;

use lwtkit::{
    filter::{
        bench_families::{build_packet, family_rules, packet_for, sweep_packets, Family, Rng},
        compile::compile,
        model::{evaluate, parse_packet},
        rule::{Rule, Verdict},
        testrun::{enable_stats, Harness},
    },
    Hook,
};

const HOT_REPEAT: u32 = 1_000_000;
/// Bounds at 100k rules (the issue's): ns over the empty program, and the
/// ratio to the 10-rule cost.
const MAX_OVER_NS: f64 = 60.0;
const MAX_RATIO: f64 = 1.25;

struct Opts {
    seed: u64,
    reps: usize,
    sweep: usize,
    rules: usize,
    /// Only the family of this name.
    only: Option<String>,
    /// Write each family's rule sets and hot packet into this folder
    /// instead of measuring (for `lwt test --policy` with two builds).
    dump: Option<String>,
}

fn parse(args: &[String]) -> anyhow::Result<Opts> {
    let mut o = Opts {
        seed: 1,
        reps: 5,
        sweep: 10_000,
        rules: 100_000,
        only: None,
        dump: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || flag_value(&mut it, a);
        match a.as_str() {
            "--seed" => o.seed = val()?,
            "--reps" => o.reps = val()?.max(1) as usize,
            "--sweep" => o.sweep = val()?.max(2) as usize,
            "--rules" => o.rules = val()?.max(10) as usize,
            "--only" => o.only = it.next().cloned(),
            "--dump" => o.dump = it.next().cloned(),
            _ => anyhow::bail!(
                "usage: lwtkit-bench mix [--seed N] [--reps N] [--sweep PACKETS] [--rules N] [--only FAMILY] [--dump DIR]"
            ),
        }
    }
    Ok(o)
}

/// A family's own seed, from the run's seed.
fn family_seed(seed: u64, i: usize) -> u64 {
    seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(i as u64 + 1)
}

/// Runs every packet once and checks the kernel's verdict and deciding
/// rule against the model. Returns (aimed packets, aimed that matched a
/// rule, all packets that matched a rule).
fn check(h: &Harness, rules: &[Rule], packets: &[(bool, Vec<u8>)]) -> anyhow::Result<[usize; 3]> {
    let mut out = [0usize; 3];
    for (i, (aimed, pkt)) in packets.iter().enumerate() {
        let key = parse_packet(pkt);
        let (verdict, rule) = evaluate(rules, Verdict::Allow, &key);
        let before = h.hits_of(rule)?;
        let rc = h.run(pkt)?;
        let after = h.hits_of(rule)?;
        let want = if verdict == Verdict::Drop { 2 } else { 0 };
        if rc != want || after != before + 1 {
            anyhow::bail!(
                "packet {i}: kernel rc {rc} (counter of rule {rule:?}: {before} -> {after}) but the model says {verdict:?} by rule {rule:?}\nkey {key:?}"
            );
        }
        out[0] += usize::from(*aimed);
        out[1] += usize::from(*aimed && rule.is_some());
        out[2] += usize::from(rule.is_some());
    }
    Ok(out)
}

/// The number after option `flag` on a bench's command line.
pub fn flag_value(it: &mut std::slice::Iter<String>, flag: &str) -> anyhow::Result<u64> {
    let v = it
        .next()
        .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?;
    v.parse()
        .map_err(|e| anyhow::anyhow!("{flag} {v}: {e} (a whole number)"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Mean ns per run the kernel's run-time statistics counted for `h`
/// since `before` (a [`Harness::run_stats`] reading).
fn stats_mean(h: &Harness, before: (u64, u64)) -> anyhow::Result<f64> {
    let (ns, runs) = h.run_stats()?;
    Ok((ns - before.0) as f64 / (runs - before.1).max(1) as f64)
}

/// Sweep packets, each with whether it was aimed at a rule.
type Sweep = [(bool, Vec<u8>)];

/// One rule set of a family, ready to run.
struct Set {
    n: usize,
    shape: String,
    h: Harness,
    hot: Vec<u8>,
    packets: Vec<(bool, Vec<u8>)>,
    hit: usize,
    aimed_hit: usize,
}

/// What one repetition measured of one program, in ns: the hot packet
/// (mean of HOT_REPEAT test runs), the sweep's mean by test run, and the
/// same sweep by the kernel's run-time statistics (`BPF_ENABLE_STATS`:
/// `sched_clock` around each run of the program alone, without test-run's
/// `ktime_get_ns` pair and loop).
#[derive(Clone, Copy, Default)]
struct Costs {
    hot: f64,
    sweep: f64,
    prog: f64,
}

/// `reps` repetitions, each measuring the empty program and every set in
/// turn (hot packets, then sweeps, then the sweeps again with the
/// statistics on, which add two clock reads to every run), so a burst of
/// other work on the machine falls on all of them alike. Returns
/// `reps[set + 1]`, index 0 the empty program (on the largest set's
/// packets).
fn measure(floor: &Harness, sets: &[Set], reps: usize) -> anyhow::Result<Vec<Vec<Costs>>> {
    let largest = sets.last().ok_or_else(|| anyhow::anyhow!("no rule set"))?;
    let progs: Vec<(&Harness, &[u8], &Sweep)> =
        std::iter::once((floor, &largest.hot[..], &largest.packets[..]))
            .chain(sets.iter().map(|s| (&s.h, &s.hot[..], &s.packets[..])))
            .collect();
    let mut out = Vec::new();
    for _ in 0..reps {
        let mut row = vec![Costs::default(); progs.len()];
        for (c, (h, hot, _)) in row.iter_mut().zip(&progs) {
            c.hot = h.run_repeat(hot, HOT_REPEAT)?.1.as_nanos() as f64;
        }
        for (c, (h, _, packets)) in row.iter_mut().zip(&progs) {
            let mut t = Duration::ZERO;
            for (_, p) in packets.iter() {
                t += h.run_repeat(p, 1)?.1;
            }
            c.sweep = t.as_nanos() as f64 / packets.len() as f64;
        }
        let stats = enable_stats()?;
        for (c, (h, _, packets)) in row.iter_mut().zip(&progs) {
            let before = h.run_stats()?;
            for (_, p) in packets.iter() {
                h.run(p)?;
            }
            c.prog = stats_mean(h, before)?;
        }
        drop(stats);
        out.push(row);
    }
    Ok(out)
}

/// `--dump DIR`: for each family, `FAMILY-N.rules` (one rule a line, as
/// `lwt filter replace --file` reads them) at 10 and `--rules` rules, and
/// `FAMILY.pcap`, the hot packet the measurement uses (raw IP).
fn dump(o: &Opts, dir: &str) -> anyhow::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    for (i, family) in Family::ALL.into_iter().enumerate() {
        if o.only.as_deref().is_some_and(|f| f != family.name()) {
            continue;
        }
        let seed = family_seed(o.seed, i);
        for n in [10, o.rules] {
            let rules = family_rules(family, n, seed);
            let mut f = std::io::BufWriter::new(std::fs::File::create(format!(
                "{dir}/{}-{n}.rules",
                family.name()
            ))?);
            for r in &rules {
                writeln!(f, "{}", r.spec)?;
            }
            f.flush()?;
            if n == 10 {
                let hot = build_packet(&packet_for(&mut Rng::new(seed), &rules[0].spec));
                let path = std::path::PathBuf::from(format!("{dir}/{}.pcap", family.name()));
                lwtkit::test_run::packet::write_pcap(&path, &[&hot])?;
            }
        }
    }
    Ok(())
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let o = parse(args)?;
    if let Some(dir) = &o.dump {
        return dump(&o, dir);
    }
    let hook = Hook::Out;
    let floor = Harness::builtin("pass", hook)?;
    println!(
        "filter per-packet cost by rule family, BPF_PROG_TEST_RUN on {hook}, seed {}: hot = one packet x {HOT_REPEAT}; sweep = mean over {} different packets run once each (half aimed at a rule); the empty program, the 10-rule set and the large one interleaved in each of {} repetitions; medians of each repetition's figures (+ns: over that repetition's empty program; x10: over its 10-rule figure)",
        o.seed, o.sweep, o.reps
    );
    println!(
        "prog = the same sweep timed by the kernel's run-time statistics (BPF_ENABLE_STATS: sched_clock around the program alone, no test-run overhead)"
    );
    println!(
        "{:<12} {:>7} {:>17} {:>8} {:>9} {:>7} {:>9} {:>10} {:>7} {:>8} {:>8} {:>7}  {:>15}  over target",
        "family",
        "rules",
        "trees/d/leaf/cpr",
        "hot ns",
        "hot +ns",
        "hot x10",
        "sweep ns",
        "sweep +ns",
        "swp x10",
        "prog ns",
        "prog +ns",
        "prg x10",
        "matched",
    );
    let mut failing = Vec::new();
    for (i, family) in Family::ALL.into_iter().enumerate() {
        if o.only.as_deref().is_some_and(|f| f != family.name()) {
            continue;
        }
        let seed = family_seed(o.seed, i);
        let mut sets = Vec::new();
        for n in [10, o.rules] {
            let rules = family_rules(family, n, seed);
            let shape = match compile(&rules) {
                Ok(c) => {
                    let (v4, v6) = c.cells.first().map_or((0, 0), |h| (h.w[0], h.w[2]));
                    format!(
                        "{v4}+{v6}/{}/{}/{:.1}",
                        c.max_depth,
                        c.max_leaf,
                        c.cells.len() as f64 / n as f64
                    )
                }
                Err(e) => {
                    println!("{:<12} {n:>7} does not compile: {e}", family.name());
                    failing.push(family.name());
                    break;
                }
            };
            let h = Harness::filter(&rules, Verdict::Allow, hook)?;
            let hot = build_packet(&packet_for(&mut Rng::new(seed), &rules[0].spec));
            let packets = sweep_packets(&rules, o.sweep, seed);
            let [aimed, aimed_hit, hit] = check(&h, &rules, &packets)
                .map_err(|e| anyhow::anyhow!("{} at {n} rules: {e}", family.name()))?;
            if aimed_hit != aimed {
                anyhow::bail!(
                    "{} at {n} rules: only {aimed_hit} of {aimed} aimed packets matched a rule",
                    family.name()
                );
            }
            sets.push(Set {
                n,
                shape,
                h,
                hot,
                packets,
                hit,
                aimed_hit,
            });
        }
        if sets.len() < 2 {
            continue;
        }
        let reps = measure(&floor, &sets, o.reps)?;
        for (k, set) in sets.iter().enumerate() {
            // Medians over the repetitions of each one's own figures, its
            // excess over that repetition's empty program and its ratio to
            // that repetition's 10-rule figure.
            let col = |f: &dyn Fn(&[Costs]) -> f64| median(reps.iter().map(|r| f(r)).collect());
            let [hh, hs, hp] = [
                col(&|r| r[k + 1].hot),
                col(&|r| r[k + 1].sweep),
                col(&|r| r[k + 1].prog),
            ];
            let over_h = col(&|r| r[k + 1].hot - r[0].hot);
            let over_s = col(&|r| r[k + 1].sweep - r[0].sweep);
            let over_p = col(&|r| r[k + 1].prog - r[0].prog);
            let rh = col(&|r| r[k + 1].hot / r[1].hot);
            let rs = col(&|r| r[k + 1].sweep / r[1].sweep);
            let rp = col(&|r| r[k + 1].prog / r[1].prog);
            let mut marks = Vec::new();
            if set.n == o.rules {
                if over_h > MAX_OVER_NS {
                    marks.push("hot +ns");
                }
                if over_s > MAX_OVER_NS {
                    marks.push("sweep +ns");
                }
                if rh > MAX_RATIO {
                    marks.push("hot x10");
                }
                if rs > MAX_RATIO {
                    marks.push("sweep x10");
                }
                if over_p > MAX_OVER_NS {
                    marks.push("prog +ns");
                }
                if rp > MAX_RATIO {
                    marks.push("prog x10");
                }
                if !marks.is_empty() {
                    failing.push(family.name());
                }
            }
            println!(
                "{:<12} {:>7} {:>17} {hh:>8.1} {over_h:>+9.1} {rh:>7.2} {hs:>9.1} {over_s:>+10.1} {rs:>7.2} {hp:>8.1} {over_p:>+8.1} {rp:>7.2}  {:>15}  {}",
                family.name(),
                set.n,
                set.shape,
                format!("{}/{} ({} aimed)", set.hit, set.packets.len(), set.aimed_hit),
                if marks.is_empty() {
                    "-".to_string()
                } else {
                    format!("EXCEEDS: {}", marks.join(", "))
                }
            );
        }
    }
    println!(
        "targets at {} rules: at most +{MAX_OVER_NS} ns over the empty program, at most {MAX_RATIO}x the 10-rule cost; {}",
        o.rules,
        if failing.is_empty() {
            "all families within".to_string()
        } else {
            format!("exceeded by: {}", failing.join(", "))
        }
    );
    Ok(())
}
