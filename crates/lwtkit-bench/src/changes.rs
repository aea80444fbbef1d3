//! Changes to a large policy: wall time of the whole `lwt` process for
//! replacing 100k rules with 100k others, adding one rule to 100k and
//! deleting one from 100k (median of several repetitions), in a throwaway
//! namespace; beside it, compiling 100k rules alone in this process (the
//! part of every change that does not depend on the store). Each `lwt`
//! runs with `LWT_LOG=lwtkit::timing=debug`, so it reports where its time
//! went (records, compile, counters, publish, parse); the medians of
//! those are printed beside the wall time.
use std::{path::PathBuf, time::Instant};

use lwtkit::filter::{bench_rules, compile::compile};

use crate::e2e::Ns;

/// The phases `lwt` reports (`lwtkit::timing`), in print order; the
/// dotted ones are parts of the phase before the dot.
const PHASES: [&str; NP] = [
    "read",
    "records",
    "compile",
    "counters",
    "publish",
    "grow",
    "parse",
    "records.journal",
    "records.intent",
    "records.finish",
    "publish.cells",
    "publish.flip",
    "publish.wait",
    "open",
    "begin",
    "patch",
];
const NP: usize = 16;

/// One timed `lwt` run: wall ms, stdout, ms per phase.
struct Run {
    ms: f64,
    out: String,
    phases: [f64; NP],
}

/// Sums the `phase="P" us=N` lines of `lwt`'s debug log by phase, in ms.
fn phases(log: &str) -> [f64; NP] {
    let mut sums = [0f64; NP];
    for line in log.lines() {
        // Without the terminal colours tracing puts around fields.
        let plain: String = {
            let mut out = String::new();
            let mut chars = line.chars();
            while let Some(c) = chars.next() {
                if c == '\u{1b}' {
                    for c in chars.by_ref() {
                        if c == 'm' {
                            break;
                        }
                    }
                } else {
                    out.push(c);
                }
            }
            out
        };
        let field = |name: &str| {
            plain
                .split(&format!("{name}="))
                .nth(1)
                .and_then(|v| v.split_whitespace().next())
                .map(|v| v.trim_matches('"').to_string())
        };
        if let (Some(phase), Some(us)) = (field("phase"), field("us")) {
            if let (Some(i), Ok(us)) = (PHASES.iter().position(|p| *p == phase), us.parse::<f64>())
            {
                sums[i] += us / 1e3;
            }
        }
    }
    sums
}

fn median_phases(runs: &[Run]) -> [f64; NP] {
    let mut out = [0f64; NP];
    for (i, o) in out.iter_mut().enumerate() {
        *o = median(runs.iter().map(|r| r.phases[i]).collect());
    }
    out
}

fn print_row(label: &str, runs: &[Run]) {
    let p = median_phases(runs);
    println!(
        "  {label:<36}{:>7.0} ms   read {:>4.0}  write {:>4.0}  compile {:>5.0}  patch {:>4.0}  counters {:>4.0}  publish {:>4.0}  grow {:>4.0}  parse {:>4.0}",
        median(runs.iter().map(|r| r.ms).collect()),
        p[0],
        p[1],
        p[2],
        p[15],
        p[3],
        p[4],
        p[5],
        p[6]
    );
    println!(
        "  {:<43}records: journal {:>3.0} intent {:>3.0} finish {:>3.0}   publish: cells {:>3.0} flip {:>3.0} wait {:>3.0}   open {:>3.0} lock {:>3.0}",
        "", p[7], p[8], p[9], p[10], p[11], p[12], p[13], p[14]
    );
}

const RULES: usize = 100_000;
const REPS: usize = 3;

fn rules_file(seed: u64) -> anyhow::Result<PathBuf> {
    let path = std::env::temp_dir().join(format!(
        "lwtbench-changes-{}-{seed}.rules",
        std::process::id()
    ));
    let text: String = bench_rules(RULES, seed)
        .iter()
        .map(|r| format!("{}\n", r.spec))
        .collect();
    std::fs::write(&path, text)?;
    Ok(path)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let mut lwt = std::env::current_exe()?.with_file_name("lwt");
    let mut capacity: Option<String> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--lwt" => {
                lwt = it
                    .next()
                    .map(PathBuf::from)
                    .ok_or_else(|| anyhow::anyhow!("--lwt needs a path"))?
            }
            "--capacity" => capacity = it.next().cloned(),
            _ => anyhow::bail!("usage: lwtkit-bench changes [--lwt PATH] [--capacity N]"),
        }
    }
    let files = [rules_file(42)?, rules_file(43)?];
    let result = measure(&lwt, capacity.as_deref(), &files);
    for f in &files {
        let _ = std::fs::remove_file(f);
    }
    result
}

fn measure(
    lwt: &std::path::Path,
    capacity: Option<&str>,
    files: &[PathBuf; 2],
) -> anyhow::Result<()> {
    let ns = Ns::new("changes")?;
    let exe = lwt.to_str().unwrap_or("lwt");
    let timed = |args: &[&str]| -> anyhow::Result<Run> {
        let mut full = vec!["-n", ns.0.as_str()];
        full.extend_from_slice(args);
        let t = Instant::now();
        let out = std::process::Command::new(exe)
            .args(&full)
            .env("LWT_LOG", "warn,lwtkit::timing=debug")
            .output()?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        anyhow::ensure!(
            out.status.success(),
            "lwt {}: {}",
            full.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(Run {
            ms,
            out: String::from_utf8_lossy(&out.stdout).into_owned(),
            phases: phases(&String::from_utf8_lossy(&out.stderr)),
        })
    };
    let mut create = vec!["filter", "create", "big"];
    if let Some(c) = capacity {
        create.extend(["--capacity", c]);
    }
    timed(&create)?;
    let file = |i: usize| files[i % 2].to_str().unwrap_or_default().to_string();
    let first = timed(&["filter", "replace", "big", "--file", &file(0)])?;
    let (mut replace, mut add, mut del) = (Vec::new(), Vec::new(), Vec::new());
    for i in 1..=REPS {
        replace.push(timed(&["filter", "replace", "big", "--file", &file(i)])?);
        let run = timed(&[
            "-j",
            "filter",
            "rule",
            "add",
            "big",
            "dst",
            "192.0.2.1/32",
            "proto",
            "udp",
            "dport",
            "9",
            "drop",
        ])?;
        let id = run
            .out
            .split("\"id\":")
            .nth(1)
            .and_then(|s| s.trim_start().split(|c: char| !c.is_ascii_digit()).next())
            .ok_or_else(|| anyhow::anyhow!("no id in {}", run.out))?
            .to_string();
        add.push(run);
        del.push(timed(&["filter", "rule", "del", "big", &id])?);
    }
    let rules = bench_rules(RULES, 42);
    let compiles: Vec<f64> = (0..REPS)
        .map(|_| {
            let t = Instant::now();
            compile(&rules).map(|_| t.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("compile: {e}"))?;
    println!(
        "changes to a {RULES}-rule policy, wall time of `lwt` (median of {REPS}) and its phases (ms)"
    );
    print_row(&format!("first replace (empty -> {RULES})"), &[first]);
    print_row(&format!("replace {RULES} with {RULES} others"), &replace);
    print_row("add one rule", &add);
    print_row("delete one rule", &del);
    println!(
        "  compile {RULES} rules (in process)  {:>9.0} ms",
        median(compiles)
    );
    Ok(())
}
