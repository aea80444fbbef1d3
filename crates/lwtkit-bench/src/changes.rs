//! Changes to a large policy: wall time of the whole `lwt` process for
//! replacing 100k rules with 100k others, adding one rule to 100k and
//! deleting one from 100k (median of several repetitions), in a throwaway
//! namespace; beside it, compiling 100k rules alone in this process (the
//! part of every change that does not depend on the store).
use std::{path::PathBuf, time::Instant};

use lwtkit::filter::{bench_rules, compile::compile};

use crate::e2e::{sh, Ns};

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
    let timed = |args: &[&str]| -> anyhow::Result<(f64, String)> {
        let mut full = vec!["-n", ns.0.as_str()];
        full.extend_from_slice(args);
        let t = Instant::now();
        let out = sh(exe, &full)?;
        Ok((t.elapsed().as_secs_f64() * 1e3, out))
    };
    let mut create = vec!["filter", "create", "big"];
    if let Some(c) = capacity {
        create.extend(["--capacity", c]);
    }
    timed(&create)?;
    let file = |i: usize| files[i % 2].to_str().unwrap_or_default().to_string();
    let first = timed(&["filter", "replace", "big", "--file", &file(0)])?.0;
    let (mut replace, mut add, mut del) = (Vec::new(), Vec::new(), Vec::new());
    for i in 1..=REPS {
        replace.push(timed(&["filter", "replace", "big", "--file", &file(i)])?.0);
        let (ms, out) = timed(&[
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
        add.push(ms);
        let id = out
            .split("\"id\":")
            .nth(1)
            .and_then(|s| s.trim_start().split(|c: char| !c.is_ascii_digit()).next())
            .ok_or_else(|| anyhow::anyhow!("no id in {out}"))?
            .to_string();
        del.push(timed(&["filter", "rule", "del", "big", &id])?.0);
    }
    let rules = bench_rules(RULES, 42);
    let compiles: Vec<f64> = (0..REPS)
        .map(|_| {
            let t = Instant::now();
            compile(&rules).map(|_| t.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("compile: {e}"))?;
    println!("changes to a {RULES}-rule policy, wall time of `lwt` (median of {REPS})");
    println!("  first replace (empty -> {RULES})   {first:>9.0} ms");
    println!(
        "  replace {RULES} with {RULES} others {:>9.0} ms",
        median(replace)
    );
    println!(
        "  add one rule                        {:>9.0} ms",
        median(add)
    );
    println!(
        "  delete one rule                     {:>9.0} ms",
        median(del)
    );
    println!(
        "  compile {RULES} rules (in process)  {:>9.0} ms",
        median(compiles)
    );
    Ok(())
}
