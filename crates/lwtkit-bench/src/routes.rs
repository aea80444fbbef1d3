//! Route lookups at scale: how long `lwt attach` and `lwt detach` of one
//! route take in a namespace holding 500,000 other routes (450,000 IPv4
//! /32s and 50,000 IPv6 /128s by default), against the same commands in an
//! otherwise empty namespace measured in the same run. Wall time of the
//! whole `lwt` process, median of several repetitions. The routes are
//! loaded with `ip -batch`; the product never shells out.
use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use crate::e2e::{sh, Ns};

const REPS: usize = 7;

struct Options {
    lwt: PathBuf,
    v4: u32,
    v6: u32,
}

fn options(args: &[String]) -> anyhow::Result<Options> {
    let mut o = Options {
        lwt: std::env::current_exe()?.with_file_name("lwt"),
        v4: 450_000,
        v6: 50_000,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| anyhow::anyhow!("{a} needs a value"))
        };
        match a.as_str() {
            "--lwt" => o.lwt = PathBuf::from(value()?),
            "--v4" => o.v4 = value()?.parse()?,
            "--v6" => o.v6 = value()?.parse()?,
            _ => anyhow::bail!("usage: lwtkit-bench routes [--lwt PATH] [--v4 N] [--v6 N]"),
        }
    }
    anyhow::ensure!(o.v4 <= 1 << 22, "--v4: at most {} (100.64.0.0/10)", 1 << 22);
    Ok(o)
}

/// A namespace with `va` (10.0.0.2/24, fd00::2/64) up, its veth peer `vb`
/// beside it, and the one existing route the "existing route" rows use.
fn namespace(tag: &str) -> anyhow::Result<Ns> {
    let ns = Ns::new(tag)?;
    let n = ns.0.as_str();
    sh(
        "ip",
        &[
            "-n", n, "link", "add", "va", "type", "veth", "peer", "name", "vb",
        ],
    )?;
    sh("ip", &["-n", n, "addr", "add", "10.0.0.2/24", "dev", "va"])?;
    sh(
        "ip",
        &["-n", n, "addr", "add", "fd00::2/64", "dev", "va", "nodad"],
    )?;
    for dev in ["lo", "va", "vb"] {
        sh("ip", &["-n", n, "link", "set", dev, "up"])?;
    }
    sh("ip", &["-n", n, "route", "add", EXISTING, "dev", "va"])?;
    Ok(ns)
}

/// One of the filled routes, present in both namespaces.
const EXISTING: &str = "100.64.0.7/32";

/// `route add` lines for `v4` IPv4 /32s from 100.64.0.0 and `v6` IPv6
/// /128s in fd01::/64, all through `va`.
fn batch(v4: u32, v6: u32) -> String {
    let mut s = String::with_capacity((v4 + v6) as usize * 40);
    let base = u32::from(std::net::Ipv4Addr::new(100, 64, 0, 0));
    // 100.64.0.7 (EXISTING) is already there.
    for i in (0..v4).filter(|i| *i != 7) {
        let _ = writeln!(
            s,
            "route add {}/32 dev va",
            std::net::Ipv4Addr::from(base + i)
        );
    }
    for i in 0..v6 {
        let _ = writeln!(
            s,
            "route add fd01::{:x}:{:x}/128 dev va",
            i >> 16,
            i & 0xffff
        );
    }
    s
}

fn fill(ns: &Ns, file: &Path) -> anyhow::Result<f64> {
    let t = Instant::now();
    sh(
        "ip",
        &["-n", &ns.0, "-batch", file.to_str().unwrap_or_default()],
    )?;
    Ok(t.elapsed().as_secs_f64())
}

fn count_routes(ns: &Ns) -> anyhow::Result<usize> {
    let v4 = sh("ip", &["-n", &ns.0, "-4", "route", "show", "table", "all"])?;
    let v6 = sh("ip", &["-n", &ns.0, "-6", "route", "show", "table", "all"])?;
    Ok(v4.lines().count() + v6.lines().count())
}

/// Milliseconds of one `lwt -n NS ARGS...`, which must succeed.
fn timed(lwt: &Path, ns: &Ns, args: &[&str]) -> anyhow::Result<f64> {
    let t = Instant::now();
    let out = Command::new(lwt).arg("-n").arg(&ns.0).args(args).output()?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    anyhow::ensure!(
        out.status.success(),
        "lwt {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(ms)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The measured pairs: attach (a route lwtkit creates, or an existing one)
/// and the detach that takes it off again.
const CASES: &[(&str, &str, &str)] = &[
    ("10.0.0.3/32", "new route", "route deleted"),
    (EXISTING, "existing route", "route restored"),
    ("fd00::3/128", "new route", "route deleted"),
];

/// Median attach and detach milliseconds per case in `ns`.
fn measure(lwt: &Path, ns: &Ns) -> anyhow::Result<Vec<(f64, f64)>> {
    let mut out = Vec::new();
    for (dst, _, _) in CASES {
        let (mut a, mut d) = (Vec::new(), Vec::new());
        for _ in 0..REPS {
            a.push(timed(
                lwt,
                ns,
                &[
                    "attach",
                    dst,
                    "--dev",
                    "va",
                    "--hook",
                    "out",
                    "--builtin",
                    "count",
                ],
            )?);
            d.push(timed(lwt, ns, &["detach", dst])?);
        }
        out.push((median(a), median(d)));
    }
    Ok(out)
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let o = options(args)?;
    let dir = std::env::temp_dir().join(format!("lwtbench-routes-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = run_in(&o, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_in(o: &Options, dir: &Path) -> anyhow::Result<()> {
    let empty = namespace("rtempty")?;
    let full = namespace("rtfull")?;
    let file = dir.join("routes.batch");
    std::fs::write(&file, batch(o.v4, o.v6))?;
    let fill_s = fill(&full, &file)?;
    let total = count_routes(&full)?;

    let small = measure(&o.lwt, &empty)?;
    let big = measure(&o.lwt, &full)?;
    let list_empty = median(
        (0..3)
            .map(|_| timed(&o.lwt, &empty, &["list"]))
            .collect::<anyhow::Result<_>>()?,
    );
    let list_full = median(
        (0..3)
            .map(|_| timed(&o.lwt, &full, &["list"]))
            .collect::<anyhow::Result<_>>()?,
    );

    println!(
        "\nroute lookups: one route's lwt attach/detach among {} routes ({} IPv4 /32, {} IPv6 /128, loaded in {fill_s:.1} s) and in an empty namespace, same run; wall time of the lwt process, median of {REPS}",
        total, o.v4, o.v6
    );
    println!("lwt: {}", o.lwt.display());
    println!(
        "{:<54} {:>10} {:>10} {:>8}",
        "", "empty ms", "full ms", "ratio"
    );
    let row = |what: String, e: f64, f: f64| {
        println!("{what:<54} {e:>10.1} {f:>10.1} {:>8.1}", f / e);
    };
    for ((dst, new, gone), ((ae, de), (af, df))) in CASES.iter().zip(small.iter().zip(&big)) {
        row(format!("attach {dst} --builtin count ({new})"), *ae, *af);
        row(format!("detach {dst} ({gone})"), *de, *df);
    }
    row(
        "list (reads every route; median of 3)".into(),
        list_empty,
        list_full,
    );
    Ok(())
}
