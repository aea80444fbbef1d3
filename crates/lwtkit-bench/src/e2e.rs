//! End to end: UDP from namespace A to B across a veth pair, with the same
//! rules as lwtkit's filter, nftables as a plain chain, and nftables as one
//! concatenated interval map; and lwtkit's empty program on the same route
//! and hook, which separates the hook's cost from the rules'. The benchmark itself uses `ip` and `nft` to
//! build its topology and baselines; the product never does.
use std::{
    fs::File,
    io::Write,
    net::UdpSocket,
    os::fd::AsRawFd,
    process::Command,
    time::{Duration, Instant},
};

use lwtkit::filter::{
    bench_rules,
    model::{evaluate, parse_packet},
    rule::{Rule, Verdict},
};

const RULES: usize = 10_000;
/// The nftables chain's one run (two orders of magnitude slower).
const SECONDS: f64 = 3.0;
/// Runs per mode in `run`; each run is SLICES slices of SLICE_SECONDS per
/// mode, the modes alternating within each slice, so a burst of other
/// work on the machine falls on every mode alike.
const RUNS: usize = 9;
const SLICES: usize = 5;
const SLICE_SECONDS: f64 = 0.4;
const BATCH: usize = 64;

pub struct Ns(pub String);

impl Ns {
    pub fn new(tag: &str) -> anyhow::Result<Self> {
        let name = format!("lwtbench-{tag}-{}", std::process::id());
        sh("ip", &["netns", "add", &name])?;
        Ok(Ns(name))
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = lwt(self, &["reset"]);
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

pub fn sh(cmd: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(cmd).args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "{cmd} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn lwt(ns: &Ns, args: &[&str]) -> anyhow::Result<String> {
    let exe = std::env::current_exe()?.with_file_name("lwt");
    lwt_at(exe.to_str().unwrap_or("lwt"), ns, args)
}

/// `lwt` of the build at `exe` (another build, for before/after).
pub fn lwt_at(exe: &str, ns: &Ns, args: &[&str]) -> anyhow::Result<String> {
    let mut full = vec!["-n", ns.0.as_str()];
    full.extend_from_slice(args);
    sh(exe, &full)
}

/// The benchmark's rules: no source ports (the nft map key has none), none
/// matching the measured traffic, and no two overlapping (an nft interval
/// map refuses overlaps, and overlaps would make the three filters differ).
fn rules() -> Vec<Rule> {
    let probe = lwtkit_bench_packet();
    let key = parse_packet(&probe);
    let mut kept: Vec<Rule> = Vec::new();
    for r in bench_rules(RULES * 2, 7) {
        if kept.len() == RULES {
            break;
        }
        if r.spec.sport.is_some()
            || evaluate(std::slice::from_ref(&r), Verdict::Allow, &key)
                .1
                .is_some()
        {
            continue;
        }
        let overlaps = |a: &Rule, b: &Rule| {
            let net = |x: Option<ipnet::IpNet>, y: Option<ipnet::IpNet>| match (x, y) {
                (Some(x), Some(y)) => x.contains(&y.network()) || y.contains(&x.network()),
                _ => true,
            };
            let ports = match (a.spec.dport, b.spec.dport) {
                (Some(p), Some(q)) => p.lo <= q.hi && q.lo <= p.hi,
                _ => true,
            };
            a.spec.proto == b.spec.proto
                && net(a.spec.src, b.spec.src)
                && net(a.spec.dst, b.spec.dst)
                && ports
        };
        if kept.iter().all(|k| !overlaps(k, &r)) {
            kept.push(Rule {
                id: kept.len() as u32 + 1,
                spec: r.spec,
            });
        }
    }
    kept
}

fn lwtkit_bench_packet() -> Vec<u8> {
    let mut p = vec![0u8; 28 + 18];
    p[0] = 0x45;
    p[9] = 17;
    p[12..16].copy_from_slice(&[10, 0, 0, 2]);
    p[16..20].copy_from_slice(&[10, 0, 0, 3]);
    p[20..22].copy_from_slice(&40000u16.to_be_bytes());
    p[22..24].copy_from_slice(&9u16.to_be_bytes());
    p
}

fn nft_match(r: &Rule) -> String {
    let proto = if r.spec.proto == Some(6) {
        "tcp"
    } else {
        "udp"
    };
    let mut m = String::new();
    if let Some(s) = r.spec.src {
        m.push_str(&format!("ip saddr {s} "));
    }
    if let Some(d) = r.spec.dst {
        m.push_str(&format!("ip daddr {d} "));
    }
    match r.spec.dport {
        Some(p) if p.lo == p.hi => m.push_str(&format!("{proto} dport {} ", p.lo)),
        Some(p) => m.push_str(&format!("{proto} dport {}-{} ", p.lo, p.hi)),
        None => m.push_str(&format!("meta l4proto {proto} ")),
    }
    m
}

fn verdict(r: &Rule) -> &'static str {
    if r.spec.verdict == Verdict::Drop {
        "drop"
    } else {
        "accept"
    }
}

fn nft_chain(rules: &[Rule]) -> String {
    let mut s = String::from("table inet lwtbench {\n chain out {\n  type filter hook output priority 0; policy accept;\n");
    for r in rules {
        s.push_str(&format!("  {}{}\n", nft_match(r), verdict(r)));
    }
    s.push_str(" }\n}\n");
    s
}

fn nft_map(rules: &[Rule]) -> String {
    let mut s = String::from(
        "table inet lwtbench {\n map rules {\n  type ipv4_addr . ipv4_addr . inet_proto . inet_service : verdict\n  flags interval\n  elements = {\n",
    );
    let items: Vec<String> = rules
        .iter()
        .map(|r| {
            let net =
                |n: Option<ipnet::IpNet>| n.map_or("0.0.0.0/0".to_string(), |n| n.to_string());
            let proto = if r.spec.proto == Some(6) {
                "tcp"
            } else {
                "udp"
            };
            let port = r.spec.dport.map_or("0-65535".into(), |p| {
                if p.lo == p.hi {
                    p.lo.to_string()
                } else {
                    format!("{}-{}", p.lo, p.hi)
                }
            });
            format!(
                "   {} . {} . {proto} . {port} : {}",
                net(r.spec.src),
                net(r.spec.dst),
                verdict(r)
            )
        })
        .collect();
    s.push_str(&items.join(",\n"));
    s.push_str("\n  }\n }\n chain out {\n  type filter hook output priority 0; policy accept;\n  ip saddr . ip daddr . meta l4proto . th dport vmap @rules\n }\n}\n");
    s
}

/// Two namespaces joined by a veth pair: A 10.0.0.2 on `va`, B 10.0.0.3 on `vb`.
pub fn pair(tag: &str) -> anyhow::Result<(Ns, Ns)> {
    let a = Ns::new(&format!("{tag}a"))?;
    let b = Ns::new(&format!("{tag}b"))?;
    sh(
        "ip",
        &[
            "-n", &a.0, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &b.0,
        ],
    )?;
    for (ns, dev, addr) in [(&a, "va", "10.0.0.2/24"), (&b, "vb", "10.0.0.3/24")] {
        sh("ip", &["-n", &ns.0, "addr", "add", addr, "dev", dev])?;
        sh("ip", &["-n", &ns.0, "link", "set", dev, "up"])?;
        sh("ip", &["-n", &ns.0, "link", "set", "lo", "up"])?;
    }
    Ok((a, b))
}

/// Runs `f` on a thread inside namespace `ns` (sockets it makes stay there).
pub fn in_netns<T: Send + 'static>(
    ns: &Ns,
    f: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    let path = format!("/run/netns/{}", ns.0);
    std::thread::spawn(move || -> anyhow::Result<T> {
        let file = File::open(&path)?;
        // SAFETY: setns on a valid namespace fd, for this thread only.
        anyhow::ensure!(
            unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } == 0,
            "setns"
        );
        Ok(f())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("namespace thread panicked"))?
}

/// A UDP socket bound in namespace `ns` (sockets stay in the namespace
/// they were made in); kept open and never read, so B drops the datagrams
/// quietly instead of answering with ICMP errors.
fn sink(ns: &Ns, addr: &str) -> anyhow::Result<UdpSocket> {
    let path = format!("/run/netns/{}", ns.0);
    let addr = addr.to_string();
    std::thread::spawn(move || -> anyhow::Result<UdpSocket> {
        let f = File::open(&path)?;
        // SAFETY: setns on a valid namespace fd, for this thread only.
        anyhow::ensure!(
            unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } == 0,
            "setns"
        );
        Ok(UdpSocket::bind(addr)?)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("sink thread panicked"))?
}

/// Sends UDP from A for `seconds`; returns (packets per second, sender CPU ns per packet).
fn blast(a: &Ns, seconds: f64) -> anyhow::Result<(f64, f64)> {
    let (sent, secs, cpu_ns) = blast_raw(a, seconds)?;
    Ok((sent as f64 / secs, cpu_ns / sent.max(1) as f64))
}

/// Sends UDP from A for `seconds`; returns the datagrams sent, the seconds
/// taken and the sender's CPU ns meanwhile.
fn blast_raw(a: &Ns, seconds: f64) -> anyhow::Result<(u64, f64, f64)> {
    let path = format!("/run/netns/{}", a.0);
    std::thread::scope(|s| {
        s.spawn(|| -> anyhow::Result<(u64, f64, f64)> {
            let f = File::open(&path)?;
            // SAFETY: setns on a valid namespace fd, for this thread only.
            anyhow::ensure!(
                unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } == 0,
                "setns"
            );
            // The same CPU in every mode and run.
            crate::encap_bench::pin(0);
            let sock = UdpSocket::bind("10.0.0.2:40000")?;
            sock.connect("10.0.0.3:9")?;
            send_for(&sock, &[0x5au8; 18], seconds)
        })
        .join()
        .map_err(|_| anyhow::anyhow!("sender thread panicked"))?
    })
}

/// `blast NETNS ADDR:PORT SECONDS`: the sender alone, from namespace
/// NETNS (one made by hand, for a profile); prints packets per second and
/// CPU ns per packet.
pub fn blast_cmd(args: &[String]) -> anyhow::Result<()> {
    let [ns, to, secs] = args else {
        anyhow::bail!("usage: lwtkit-bench blast NETNS ADDR:PORT SECONDS");
    };
    let to: std::net::SocketAddr = to.parse()?;
    let secs: f64 = secs.parse()?;
    let f = File::open(format!("/run/netns/{ns}"))?;
    // SAFETY: setns on a valid namespace fd, for this thread only.
    anyhow::ensure!(
        unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } == 0,
        "setns"
    );
    crate::encap_bench::pin(0);
    let sock = UdpSocket::bind("0.0.0.0:0")?;
    sock.connect(to)?;
    let (sent, took, cpu_ns) = send_for(&sock, &[0x5au8; 18], secs)?;
    println!(
        "{:.1} kpps, {:.0} CPU ns/pkt",
        sent as f64 / took / 1e3,
        cpu_ns / sent.max(1) as f64
    );
    Ok(())
}

/// Sends `payload` on the connected `sock` with `sendmmsg` (BATCH per call)
/// for `seconds`; returns the datagrams sent, the seconds taken and the
/// calling thread's CPU time in ns meanwhile.
pub fn send_for(sock: &UdpSocket, payload: &[u8], seconds: f64) -> anyhow::Result<(u64, f64, f64)> {
    let mut iov: Vec<libc::iovec> = (0..BATCH)
        .map(|_| libc::iovec {
            iov_base: payload.as_ptr() as *mut _,
            iov_len: payload.len(),
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = iov
        .iter_mut()
        .map(|v| {
            // SAFETY: a zeroed msghdr is valid; the iovec is set.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = v;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    let cpu = || {
        // SAFETY: getrusage fills a zeroed struct.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) };
        (u.ru_utime.tv_sec + u.ru_stime.tv_sec) as f64 * 1e9
            + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) as f64 * 1e3
    };
    let (c0, t0) = (cpu(), Instant::now());
    let mut sent = 0u64;
    while t0.elapsed().as_secs_f64() < seconds {
        // SAFETY: msgs point at live iovecs and payload.
        let n = unsafe { libc::sendmmsg(sock.as_raw_fd(), msgs.as_mut_ptr(), BATCH as u32, 0) };
        anyhow::ensure!(n >= 0, "sendmmsg: {}", std::io::Error::last_os_error());
        sent += n as u64;
    }
    Ok((sent, t0.elapsed().as_secs_f64(), cpu() - c0))
}

/// What sits on A's egress to 10.0.0.3 while the sender runs.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    NoFilter,
    /// lwtkit's empty built-in (`pass`) on the same hook: what the route's
    /// `lwt_out` hook and a program call cost before any rule.
    Empty,
    Lwtkit,
    NftMap,
    /// The same policy attached by another build's `lwt` (`--lwt PATH`),
    /// so its own filter program runs on the same maps.
    Other,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::NoFilter => "no filter",
            Mode::Empty => "empty program",
            Mode::Lwtkit => "lwtkit filter",
            Mode::NftMap => "nftables interval map",
            Mode::Other => "lwtkit, --lwt build",
        }
    }
}

/// Loads an nftables ruleset file into `a`.
fn nft_load(a: &Ns, path: &std::path::Path) -> anyhow::Result<()> {
    sh(
        "ip",
        &[
            "netns",
            "exec",
            &a.0,
            "nft",
            "-f",
            path.to_str().unwrap_or_default(),
        ],
    )?;
    Ok(())
}

fn nft_unload(a: &Ns) -> anyhow::Result<()> {
    sh(
        "ip",
        &[
            "netns", "exec", &a.0, "nft", "delete", "table", "inet", "lwtbench",
        ],
    )?;
    Ok(())
}

/// The hook the bench policy runs on (`--hook`, default `out`).
static HOOK: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

fn hook() -> &'static str {
    HOOK.get().copied().unwrap_or("out")
}

/// The bench policy on the sender's route to B.
fn attach_args() -> [&'static str; 8] {
    [
        "filter",
        "attach",
        "bench",
        "10.0.0.3/32",
        "--dev",
        "va",
        "--hook",
        hook(),
    ]
}

fn detach_args() -> [&'static str; 4] {
    ["filter", "detach", "bench", "10.0.0.3/32"]
}

/// lwtkit's empty program on the same route and hook.
fn attach_empty_args() -> [&'static str; 8] {
    [
        "attach",
        "10.0.0.3/32",
        "--dev",
        "va",
        "--hook",
        hook(),
        "--builtin",
        "pass",
    ]
}
fn detach_empty_args() -> [&'static str; 4] {
    ["detach", "10.0.0.3/32", "--hook", hook()]
}

/// Puts `mode` in place, sends for SLICE_SECONDS, takes it away again:
/// the datagrams sent, the seconds taken, the sender's CPU ns.
fn measure(
    a: &Ns,
    mode: Mode,
    nft_map_file: &std::path::Path,
    other: Option<&str>,
) -> anyhow::Result<(u64, f64, f64)> {
    let other = other.unwrap_or("lwt");
    match mode {
        Mode::NoFilter => {}
        Mode::Empty => {
            lwt(a, &attach_empty_args())?;
        }
        Mode::Lwtkit => {
            lwt(a, &attach_args())?;
        }
        Mode::Other => {
            lwt_at(other, a, &attach_args())?;
        }
        Mode::NftMap => nft_load(a, nft_map_file)?,
    }
    let result = blast_raw(a, SLICE_SECONDS);
    match mode {
        Mode::NoFilter => {}
        Mode::Empty => {
            lwt(a, &detach_empty_args())?;
        }
        Mode::Lwtkit => {
            lwt(a, &detach_args())?;
        }
        Mode::Other => {
            lwt_at(other, a, &detach_args())?;
        }
        Mode::NftMap => nft_unload(a)?,
    }
    result
}

/// The filter program's own ns per packet in real traffic (the kernel's
/// run-time statistics, on only for these extra runs, so the timed runs
/// above do not carry their two clock reads per packet), attached by
/// `exe` with `attach` (taken away by `detach`), for `seconds`; and that
/// run's sender CPU ns per packet.
fn in_program(
    a: &Ns,
    exe: &str,
    attach: &[&str],
    detach: &[&str],
    seconds: f64,
) -> anyhow::Result<(f64, f64)> {
    lwt_at(exe, a, attach)?;
    let progs = crate::progstats::Programs::on_routes(a)?;
    let stats = crate::progstats::stats_on()?;
    let before = progs.read()?;
    let sent = blast(a, seconds);
    let after = progs.read()?;
    drop(stats);
    lwt_at(exe, a, detach)?;
    Ok((after.per_run_since(before), sent?.1))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let usage = "usage: lwtkit-bench e2e [--lwt PATH] [--hook out|xmit]";
    let mut other = None;
    let mut rest = args;
    while let [flag, value, tail @ ..] = rest {
        match (flag.as_str(), value.as_str()) {
            ("--lwt", path) => other = Some(path),
            ("--hook", h @ ("out" | "xmit")) => {
                let _ = HOOK.set(if h == "out" { "out" } else { "xmit" });
            }
            _ => anyhow::bail!(usage),
        }
        rest = tail;
    }
    if !rest.is_empty() {
        anyhow::bail!(usage);
    }
    let modes: Vec<Mode> = if other.is_some() {
        vec![
            Mode::NoFilter,
            Mode::Empty,
            Mode::Lwtkit,
            Mode::Other,
            Mode::NftMap,
        ]
    } else {
        vec![Mode::NoFilter, Mode::Empty, Mode::Lwtkit, Mode::NftMap]
    };
    let rules = rules();
    println!(
        "\nend to end: UDP 18-byte payloads A -> B over veth, sendmmsg x{BATCH}, {SLICES} slices of {SLICE_SECONDS} s per mode and run, the modes alternating in each slice in rotated order, {} non-overlapping rules, none matching, the policy and the empty program on lwt_{}; {RUNS} runs; medians, and the median of each run's ratio to that run's no-filter figure",
        rules.len(),
        hook()
    );
    let (a, b) = pair("flt")?;
    std::thread::sleep(Duration::from_millis(300));
    let _sink = sink(&b, "10.0.0.3:9")?;
    let dir = std::env::temp_dir().join(format!("lwtbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    let file = dir.join("rules.txt");
    let mut f = File::create(&file)?;
    for r in &rules {
        writeln!(f, "{}", r.spec)?;
    }
    lwt(
        &a,
        &[
            "filter",
            "create",
            "bench",
            "--capacity",
            &(rules.len() + 16).to_string(),
        ],
    )?;
    let t = Instant::now();
    lwt(
        &a,
        &[
            "filter",
            "replace",
            "bench",
            "--file",
            file.to_str().unwrap_or_default(),
        ],
    )?;
    let replace_s = t.elapsed().as_secs_f64();
    let map_file = dir.join("rules-map.nft");
    std::fs::write(&map_file, nft_map(&rules))?;

    // runs[mode][run] = (pps, cpu ns per packet)
    let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new(); modes.len()];
    for run in 0..RUNS {
        let mut sums = vec![(0u64, 0f64, 0f64); modes.len()];
        for slice in 0..SLICES {
            for k in 0..modes.len() {
                let i = (run + slice + k) % modes.len();
                let (sent, secs, cpu) = measure(&a, modes[i], &map_file, other)?;
                sums[i] = (sums[i].0 + sent, sums[i].1 + secs, sums[i].2 + cpu);
            }
        }
        for (i, (sent, secs, cpu)) in sums.into_iter().enumerate() {
            runs[i].push((sent as f64 / secs, cpu / sent.max(1) as f64));
        }
    }
    // The program's own cost in this traffic, against its test-run cost
    // on the benchmark's packet (one hot packet, repeated).
    // Alternating when there are two builds: RUNS one-second runs each.
    let this = std::env::current_exe()?
        .with_file_name("lwt")
        .to_string_lossy()
        .into_owned();
    // (what, which build, attach, detach)
    let (attach, detach) = (attach_args(), detach_args());
    let (attach_empty, detach_empty) = (attach_empty_args(), detach_empty_args());
    let mut programs = vec![("filter program", this.as_str(), &attach[..], &detach[..])];
    programs.extend(other.map(|exe| ("filter program", exe, &attach[..], &detach[..])));
    programs.push((
        "empty program",
        this.as_str(),
        &attach_empty[..],
        &detach_empty[..],
    ));
    let mut inside: Vec<Vec<(f64, f64)>> = vec![Vec::new(); programs.len()];
    for run in 0..RUNS {
        for k in 0..programs.len() {
            let i = (run + k) % programs.len();
            let (_, exe, attach, detach) = programs[i];
            inside[i].push(in_program(&a, exe, attach, detach, 1.0)?);
        }
    }
    let on: lwtkit::Hook = hook().parse().map_err(anyhow::Error::msg)?;
    let h = lwtkit::filter::testrun::Harness::filter(&rules, Verdict::Allow, on)?;
    let floor = lwtkit::filter::testrun::Harness::builtin("pass", on)?;
    let pkt = lwtkit_bench_packet();
    let testrun_ns = |h: &lwtkit::filter::testrun::Harness| -> anyhow::Result<f64> {
        let mut v = Vec::new();
        for _ in 0..5 {
            v.push(h.run_repeat(&pkt, 1_000_000)?.1.as_nanos() as f64);
        }
        Ok(median(v))
    };
    let (filter_tr, floor_tr) = (testrun_ns(&h)?, testrun_ns(&floor)?);
    lwt(&a, &["filter", "delete", "bench"])?;

    // The plain chain is two orders of magnitude slower: one run, shorter.
    let chain_file = dir.join("rules-chain.nft");
    std::fs::write(&chain_file, nft_chain(&rules))?;
    nft_load(&a, &chain_file)?;
    let chain = blast(&a, SECONDS)?;
    nft_unload(&a)?;

    // Loading 100k rules through `lwt filter replace`, end to end.
    let big = dir.join("rules-100k.txt");
    let mut f = File::create(&big)?;
    for r in bench_rules(100_000, 42) {
        writeln!(f, "{}", r.spec)?;
    }
    lwt(&a, &["filter", "create", "big", "--capacity", "100000"])?;
    let t = Instant::now();
    lwt(
        &a,
        &[
            "filter",
            "replace",
            "big",
            "--file",
            big.to_str().unwrap_or_default(),
        ],
    )?;
    let replace_100k = t.elapsed().as_secs_f64();
    lwt(&a, &["filter", "delete", "big"])?;
    let _ = std::fs::remove_dir_all(&dir);

    println!(
        "{:<26} {:>10} {:>12} {:>14} {:>12}   per-run pps ratios",
        "", "kpps", "pps ratio", "CPU ns/pkt", "CPU ratio"
    );
    let base = &runs[0];
    for (i, mode) in modes.iter().enumerate() {
        let pps_ratios: Vec<f64> = runs[i].iter().zip(base).map(|(r, b)| r.0 / b.0).collect();
        let cpu_ratios: Vec<f64> = runs[i].iter().zip(base).map(|(r, b)| r.1 / b.1).collect();
        let each: Vec<String> = pps_ratios.iter().map(|r| format!("{r:.2}")).collect();
        println!(
            "{:<26} {:>10.1} {:>12.2} {:>14.0} {:>12.2}   {}",
            mode.name(),
            median(runs[i].iter().map(|r| r.0).collect()) / 1e3,
            median(pps_ratios),
            median(runs[i].iter().map(|r| r.1).collect()),
            median(cpu_ratios),
            each.join(" ")
        );
    }
    let base_pps = median(base.iter().map(|r| r.0).collect());
    let base_cpu = median(base.iter().map(|r| r.1).collect());
    println!(
        "{:<26} {:>10.1} {:>12.2} {:>14.0} {:>12.2}   (one run, against the median no-filter run)",
        "nftables chain",
        chain.0 / 1e3,
        chain.0 / base_pps,
        chain.1,
        chain.1 / base_cpu
    );
    for ((what, exe, _, _), runs) in programs.iter().zip(&inside) {
        let each: Vec<String> = runs.iter().map(|r| format!("{:.0}", r.0)).collect();
        println!(
            "{what} of {exe} in this traffic (BPF_ENABLE_STATS, {RUNS} more 1-s runs): median {:.0} ns per packet in the program ({}); sender CPU {:.0} ns/pkt",
            median(runs.iter().map(|r| r.0).collect()),
            each.join(" "),
            median(runs.iter().map(|r| r.1).collect()),
        );
    }
    println!(
        "same policy by BPF_PROG_TEST_RUN on lwt_{}, this packet repeated 1M times: {filter_tr:.0} ns (empty program {floor_tr:.0} ns)",
        hook()
    );
    println!(
        "lwt filter replace of {} rules: {:.2} s; of 100000 benchmark rules: {:.2} s",
        rules.len(),
        replace_s,
        replace_100k
    );
    Ok(())
}
