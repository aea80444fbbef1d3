//! `lwtkit-bench nat`: 1:1 NAT through a gateway namespace (issue 9, 5).
//!
//! Three namespaces per mode, C (inside, 10.1.0.2) - B (gateway) - A
//! (outside, 10.0.0.2), all four setups made once and kept for the whole
//! run:
//!
//! - `plain`: B forwards; nothing is translated (the floor). A reaches C
//!   at 10.1.0.2.
//! - `lwtkit`: `lwt nat add --inside 10.1.0.0/24 --public 203.0.113.0/24
//!   --out-route 10.0.0.0/24` on B (stateless, `snat`/`dnat` on `xmit`).
//! - `nft-sl`: nftables stateless rewriting in B: `notrack` and `ip daddr
//!   set 10.1.0.2` in prerouting (priority raw, before the route lookup),
//!   `ip saddr set 203.0.113.2` in postrouting.
//! - `nft-ct`: nftables `snat`/`dnat` with conntrack in B.
//!
//! Measured: one TCP stream C -> A (data translated by the source rule,
//! A's ACKs by the destination rule), UDP packets per second C -> A
//! (outbound, source rewritten) and A -> C's public address (inbound,
//! destination rewritten), each as a ratio to `plain` in the same run.
//! Modes alternate in a rotated order, run by run and slice by slice; the
//! sender is pinned to CPU 0, the TCP receiver to CPU 1. Then the
//! translation's own cost by BPF_PROG_TEST_RUN on `lwt_xmit`: the same
//! policy with `snat`/`dnat` against `allow` (the filter program never
//! calls `bpf_lwt_push_encap`, which `Harness` checks).
use std::{
    fs::File,
    io::Read,
    net::{IpAddr, SocketAddr, UdpSocket},
    time::Duration,
};

use lwtkit::{
    filter::{
        rule::{Rule, RuleSpec, Verdict},
        testrun::Harness,
    },
    Hook,
};

use crate::{
    e2e::{in_netns, lwt, send_for, sh, Ns},
    encap_bench::{median, order, pin, tcp_stream},
};

const TCP_BYTES: usize = 128 << 20;
const UDP_SECONDS: f64 = 1.0;
const SLICES: usize = 5;
const RUNS: usize = 5;
const REPEAT: u32 = 1_000_000;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Plain,
    Lwtkit,
    NftStateless,
    NftConntrack,
}

impl Mode {
    const ALL: [Mode; 4] = [
        Mode::Plain,
        Mode::Lwtkit,
        Mode::NftStateless,
        Mode::NftConntrack,
    ];

    fn tag(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::Lwtkit => "lwtkit",
            Mode::NftStateless => "nft-sl",
            Mode::NftConntrack => "nft-ct",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain forwarding",
            Mode::Lwtkit => "lwtkit stateless NAT (xmit)",
            Mode::NftStateless => "nftables stateless, notrack",
            Mode::NftConntrack => "nftables snat/dnat, conntrack",
        }
    }
}

struct Gateway {
    a: Ns,
    b: Ns,
    c: Ns,
    /// Where A sends to reach C.
    inside_seen_from_a: IpAddr,
}

const NFT_STATELESS: &str = "table ip lwtbench {
  chain pre {
    type filter hook prerouting priority raw; policy accept;
    notrack
    ip daddr 203.0.113.2 ip daddr set 10.1.0.2
  }
  chain out {
    type filter hook output priority raw; policy accept;
    notrack
  }
  chain post {
    type filter hook postrouting priority srcnat; policy accept;
    oifname \"vb\" ip saddr 10.1.0.2 ip saddr set 203.0.113.2
  }
}
";

const NFT_CONNTRACK: &str = "table ip lwtbench {
  chain pre {
    type nat hook prerouting priority dstnat; policy accept;
    ip daddr 203.0.113.2 dnat to 10.1.0.2
  }
  chain post {
    type nat hook postrouting priority srcnat; policy accept;
    oifname \"vb\" ip saddr 10.1.0.2 snat to 203.0.113.2
  }
}
";

/// C - B - A for `mode`.
fn gateway(mode: Mode) -> anyhow::Result<Gateway> {
    let tag = format!("nat{}", mode.tag());
    let a = Ns::new(&format!("{tag}a"))?;
    let b = Ns::new(&format!("{tag}b"))?;
    let c = Ns::new(&format!("{tag}c"))?;
    sh(
        "ip",
        &[
            "-n", &a.0, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &b.0,
        ],
    )?;
    sh(
        "ip",
        &[
            "-n", &b.0, "link", "add", "vbc", "type", "veth", "peer", "name", "vc", "netns", &c.0,
        ],
    )?;
    for (ns, dev, addr) in [
        (&a, "va", "10.0.0.2/24"),
        (&b, "vb", "10.0.0.3/24"),
        (&b, "vbc", "10.1.0.1/24"),
        (&c, "vc", "10.1.0.2/24"),
    ] {
        sh("ip", &["-n", &ns.0, "addr", "add", addr, "dev", dev])?;
        sh("ip", &["-n", &ns.0, "link", "set", dev, "up"])?;
        sh("ip", &["-n", &ns.0, "link", "set", "lo", "up"])?;
    }
    sh(
        "ip",
        &["-n", &a.0, "route", "add", "default", "via", "10.0.0.3"],
    )?;
    sh(
        "ip",
        &["-n", &c.0, "route", "add", "default", "via", "10.1.0.1"],
    )?;
    sh(
        "ip",
        &[
            "netns",
            "exec",
            &b.0,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ],
    )?;
    let nft = |rules: &str| -> anyhow::Result<()> {
        let path = std::env::temp_dir().join(format!(
            "lwtbench-nat-{}-{}.nft",
            mode.tag(),
            std::process::id()
        ));
        std::fs::write(&path, rules)?;
        let r = sh(
            "ip",
            &[
                "netns",
                "exec",
                &b.0,
                "nft",
                "-f",
                path.to_str().unwrap_or_default(),
            ],
        );
        let _ = std::fs::remove_file(&path);
        r.map(|_| ())
    };
    let public: IpAddr = "203.0.113.2".parse()?;
    let inside_seen_from_a = match mode {
        Mode::Plain => "10.1.0.2".parse()?,
        Mode::Lwtkit => {
            lwt(
                &b,
                &[
                    "nat",
                    "add",
                    "--inside",
                    "10.1.0.0/24",
                    "--public",
                    "203.0.113.0/24",
                    "--out-route",
                    "10.0.0.0/24",
                ],
            )?;
            public
        }
        Mode::NftStateless => {
            nft(NFT_STATELESS)?;
            public
        }
        Mode::NftConntrack => {
            nft(NFT_CONNTRACK)?;
            public
        }
    };
    std::thread::sleep(Duration::from_millis(300));
    Ok(Gateway {
        a,
        b,
        c,
        inside_seen_from_a,
    })
}

/// Packets `dev` in `ns` has received.
fn rx_packets(ns: &Ns, dev: &'static str) -> anyhow::Result<u64> {
    in_netns(ns, move || -> anyhow::Result<u64> {
        let mut s = String::new();
        File::open("/proc/thread-self/net/dev")?.read_to_string(&mut s)?;
        let line = s
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{dev}:")))
            .ok_or_else(|| anyhow::anyhow!("no {dev} in /proc/net/dev"))?;
        let fields: Vec<&str> = line.split_whitespace().collect();
        Ok(fields.get(2).and_then(|f| f.parse().ok()).unwrap_or(0))
    })?
}

/// Sent and arrived packets, seconds, sender CPU ns.
#[derive(Clone, Copy, Default)]
struct Udp {
    sent: u64,
    arrived: u64,
    secs: f64,
    cpu_ns: f64,
}

impl Udp {
    fn add(&mut self, o: Udp) {
        self.sent += o.sent;
        self.arrived += o.arrived;
        self.secs += o.secs;
        self.cpu_ns += o.cpu_ns;
    }
    fn pps(&self) -> f64 {
        self.sent as f64 / self.secs
    }
    fn arrived_pps(&self) -> f64 {
        self.arrived as f64 / self.secs
    }
    fn cpu_per_packet(&self) -> f64 {
        self.cpu_ns / self.sent.max(1) as f64
    }
}

/// 64-byte UDP payloads from `from` to `to` for `seconds` (a sink bound
/// in `into`, whose `dev` counts arrivals).
fn udp(
    from: &Ns,
    into: &Ns,
    dev: &'static str,
    to: SocketAddr,
    seconds: f64,
) -> anyhow::Result<Udp> {
    let port = to.port();
    let _sink = in_netns(into, move || {
        UdpSocket::bind(SocketAddr::new("0.0.0.0".parse().expect("any"), port))
    })??;
    let rx0 = rx_packets(into, dev)?;
    let (sent, secs, cpu_ns) = in_netns(from, move || -> anyhow::Result<(u64, f64, f64)> {
        pin(0);
        let sock = UdpSocket::bind("0.0.0.0:0")?;
        sock.connect(to)?;
        send_for(&sock, &[0u8; 64], seconds)
    })??;
    std::thread::sleep(Duration::from_millis(20));
    let arrived = rx_packets(into, dev)?.saturating_sub(rx0);
    Ok(Udp {
        sent,
        arrived,
        secs,
        cpu_ns,
    })
}

/// MB/s of one TCP stream C -> A:7001 (sender CPU 0, receiver CPU 1).
fn tcp(g: &Gateway) -> anyhow::Result<f64> {
    let to: SocketAddr = "10.0.0.2:7001".parse()?;
    let (mbs, peer) = tcp_stream(&g.c, &g.a, to, TCP_BYTES)?;
    // The source A saw is the translated one (and A's answers to it came
    // back to C, or the stream would not have finished): the NAT works.
    anyhow::ensure!(
        peer == g.inside_seen_from_a,
        "A saw the stream from {peer}, not {}",
        g.inside_seen_from_a
    );
    Ok(mbs)
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn rules(lines: &[&str]) -> anyhow::Result<Vec<Rule>> {
    lines
        .iter()
        .zip(1..)
        .map(|(l, id)| {
            let words: Vec<&str> = l.split_whitespace().collect();
            Ok(Rule {
                id,
                spec: RuleSpec::parse(&words)?,
            })
        })
        .collect()
}

/// ns per run of `rules`' program on `pkt` (mean of REPEAT, median of RUNS).
fn testrun_ns(h: &Harness, pkt: &[u8]) -> anyhow::Result<f64> {
    let mut v = Vec::new();
    for _ in 0..RUNS {
        v.push(h.run_repeat(pkt, REPEAT)?.1.as_nanos() as f64);
    }
    Ok(median(v))
}

/// The translate path against the same policy with `allow`. A test run
/// repeats on one packet, which a translation changes: each policy maps
/// both ways, so every repetition is translated (back and forth).
fn testrun() -> anyhow::Result<()> {
    let pkt = crate::testrun::udp_packet(9); // 10.200.0.1:40000 > 10.200.0.2:9
    let floor = testrun_ns(&Harness::builtin("pass", Hook::Xmit)?, &pkt)?;
    let cases = [
        (
            "allow (match, no action)",
            vec!["src 10.200.0.1 allow", "src 203.0.113.1 allow"],
        ),
        (
            "snat (source rewritten)",
            vec![
                "src 10.200.0.1 snat 203.0.113.1",
                "src 203.0.113.1 snat 10.200.0.1",
            ],
        ),
        (
            "allow on dst",
            vec!["dst 10.200.0.2 allow", "dst 10.1.0.2 allow"],
        ),
        (
            "dnat (destination rewritten)",
            vec![
                "dst 10.200.0.2 dnat 10.1.0.2",
                "dst 10.1.0.2 dnat 10.200.0.2",
            ],
        ),
    ];
    println!(
        "\nper-packet cost by BPF_PROG_TEST_RUN on lwt_xmit (UDP/IPv4, mean of {REPEAT} repeats, median of {RUNS} runs); empty program {floor:.1} ns"
    );
    let mut base = 0.0;
    for (i, (name, lines)) in cases.iter().enumerate() {
        let h = Harness::filter(&rules(lines)?, Verdict::Allow, Hook::Xmit)?;
        let ns = testrun_ns(&h, &pkt)?;
        let (_, after) = h.run_out(&pkt)?;
        anyhow::ensure!(
            i % 2 == 0 || after != pkt,
            "{name}: the packet was not translated"
        );
        if i % 2 == 0 {
            base = ns;
            println!("  {name:<30} {ns:>7.1} ns");
        } else {
            println!(
                "  {name:<30} {ns:>7.1} ns  (+{:.1} ns for the translation)",
                ns - base
            );
        }
    }
    Ok(())
}

/// The NAT program's own ns per packet in real traffic, each direction
/// (the kernel's run-time statistics, on only for this extra second, so
/// the timed runs do not carry their clock reads).
fn in_program(g: &Gateway) -> anyhow::Result<()> {
    let progs = crate::progstats::Programs::on_routes(&g.b)?;
    let stats = crate::progstats::stats_on()?;
    let r0 = progs.read()?;
    let out = udp(&g.c, &g.a, "va", "10.0.0.2:7002".parse()?, UDP_SECONDS)?;
    let r1 = progs.read()?;
    let inb = udp(
        &g.a,
        &g.c,
        "vc",
        SocketAddr::new(g.inside_seen_from_a, 7003),
        UDP_SECONDS,
    )?;
    let r2 = progs.read()?;
    drop(stats);
    println!(
        "lwtkit's NAT program in this traffic (BPF_ENABLE_STATS, one more second each way): out (snat) {:.0} ns per packet in the program, sender CPU {:.0} ns/pkt; in (dnat) {:.0} ns, sender CPU {:.0} ns/pkt",
        r1.per_run_since(r0),
        out.cpu_per_packet(),
        r2.per_run_since(r1),
        inb.cpu_per_packet()
    );
    Ok(())
}

pub fn run() -> anyhow::Result<()> {
    println!(
        "\nNAT through a gateway namespace: C (10.1.0.2) -> B -> A (10.0.0.2); one TCP stream C -> A of {} MiB; UDP 64-byte payloads, {UDP_SECONDS} s per direction in {SLICES} slices; {RUNS} runs, modes alternating in rotated order; sender CPU 0, TCP receiver CPU 1; load average at start {}",
        TCP_BYTES >> 20,
        load()
    );
    let gws = Mode::ALL
        .iter()
        .map(|m| gateway(*m))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let n = gws.len();
    let mut tcp_runs = vec![Vec::new(); n];
    let mut out_runs: Vec<Vec<Udp>> = vec![Vec::new(); n];
    let mut in_runs: Vec<Vec<Udp>> = vec![Vec::new(); n];
    for run in 0..RUNS {
        let mut t = vec![0.0; n];
        for i in order(n, run) {
            t[i] = tcp(&gws[i])?;
        }
        let mut out = vec![Udp::default(); n];
        let mut inb = vec![Udp::default(); n];
        for slice in 0..SLICES {
            for i in order(n, run + slice) {
                let g = &gws[i];
                let secs = UDP_SECONDS / SLICES as f64;
                out[i].add(udp(&g.c, &g.a, "va", "10.0.0.2:7002".parse()?, secs)?);
                inb[i].add(udp(
                    &g.a,
                    &g.c,
                    "vc",
                    SocketAddr::new(g.inside_seen_from_a, 7003),
                    secs,
                )?);
            }
        }
        for i in 0..n {
            println!(
                "  run {} {:<7} TCP {:>6.0} MB/s  out {:>6.1} kpps (arrived {:>6.1})  in {:>6.1} kpps (arrived {:>6.1})  load {}",
                run + 1,
                Mode::ALL[i].tag(),
                t[i],
                out[i].pps() / 1e3,
                out[i].arrived_pps() / 1e3,
                inb[i].pps() / 1e3,
                inb[i].arrived_pps() / 1e3,
                load()
            );
            tcp_runs[i].push(t[i]);
            out_runs[i].push(out[i]);
            in_runs[i].push(inb[i]);
        }
    }
    // Each run's figure over that run's plain forwarding, then the median.
    let ratio = |f: &dyn Fn(usize, usize) -> f64, i: usize| {
        median((0..RUNS).map(|r| f(i, r) / f(0, r)).collect())
    };
    println!(
        "{:<30} {:>9} {:>6} {:>9} {:>6} {:>9} {:>6} {:>11}",
        "median", "TCP MB/s", "ratio", "out kpps", "ratio", "in kpps", "ratio", "CPU ns/pkt"
    );
    for (i, m) in Mode::ALL.iter().enumerate() {
        println!(
            "{:<30} {:>9.0} {:>6.2} {:>9.1} {:>6.2} {:>9.1} {:>6.2} {:>11.0}",
            m.name(),
            median(tcp_runs[i].clone()),
            ratio(&|i, r| tcp_runs[i][r], i),
            median(out_runs[i].iter().map(Udp::pps).collect()) / 1e3,
            ratio(&|i, r| out_runs[i][r].pps(), i),
            median(in_runs[i].iter().map(Udp::pps).collect()) / 1e3,
            ratio(&|i, r| in_runs[i][r].pps(), i),
            median(
                out_runs[i]
                    .iter()
                    .chain(&in_runs[i])
                    .map(Udp::cpu_per_packet)
                    .collect()
            ),
        );
    }
    println!("load average at the end {}", load());
    in_program(&gws[1])?;
    drop(gws);
    testrun()?;
    mappings()
}

/// Inside host `i` (10.0.0.0 + i) and its public address (100.64.0.0 + a
/// permutation of i, so no prefix maps one onto the other).
fn host(i: u32) -> ([u8; 4], [u8; 4]) {
    let public = 0x6440_0000 + (i.wrapping_mul(7919).wrapping_add(12345) & 0x1_ffff);
    ((0x0a00_0000 + i).to_be_bytes(), public.to_be_bytes())
}

/// A UDP packet from `src` (to 198.51.100.1:53), its UDP checksum not
/// zero (a zero one would skip the L4 update).
fn from(src: [u8; 4]) -> Vec<u8> {
    let mut p = crate::testrun::udp_packet(53);
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&[198, 51, 100, 1]);
    p[26..28].copy_from_slice(&0x1234u16.to_be_bytes());
    p
}

/// What many 1:1 mappings cost a packet (issue 9: "100k 1:1 mappings keep
/// the per-packet cost flat like any policy"), by test-run on `lwt_xmit`:
/// policies of `n` mapped hosts, each one `/32` rule per direction
/// (`src INSIDE snat PUBLIC`, `src PUBLIC snat INSIDE`, so a repeated
/// packet is translated back and forth), for n = 5 and 50,000 (10 and
/// 100,000 rules). Hot: one mapped host repeated; sweep: 10,000 packets
/// of random mapped hosts, each run once (every one checked translated).
/// Each beside the empty program; the three programs take turns; median
/// of RUNS.
pub fn mappings() -> anyhow::Result<()> {
    const SWEEP: usize = 10_000;
    let floor = Harness::builtin("pass", Hook::Xmit)?;
    println!(
        "\n1:1 mappings by BPF_PROG_TEST_RUN on lwt_xmit: hot = one mapped host x {REPEAT}; sweep = mean over {SWEEP} packets of random mapped hosts, once each; median of {RUNS}; load average {}",
        load()
    );
    println!(
        "{:<8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>8}",
        "rules", "hot ns", "hot +ns", "hot x10", "sweep ns", "sweep +ns", "swp x10"
    );
    // Both policies first, so every repetition times the empty program
    // and both policies one after the other.
    let mut policies = Vec::new();
    for hosts in [5u32, 50_000] {
        let lines: Vec<String> = (0..hosts)
            .flat_map(|i| {
                let (inside, public) = host(i);
                let (a, b) = (
                    std::net::Ipv4Addr::from(inside),
                    std::net::Ipv4Addr::from(public),
                );
                [format!("src {a} snat {b}"), format!("src {b} snat {a}")]
            })
            .collect();
        let rules = rules(&lines.iter().map(String::as_str).collect::<Vec<_>>())?;
        let h = Harness::filter(&rules, Verdict::Allow, Hook::Xmit)?;
        let mut rng = lwtkit::filter::bench_families::Rng::new(7);
        let sweep: Vec<Vec<u8>> = (0..SWEEP)
            .map(|_| from(host(rng.below(u64::from(hosts)) as u32).0))
            .collect();
        for p in &sweep {
            anyhow::ensure!(h.run_out(p)?.1 != *p, "a swept packet was not translated");
        }
        policies.push((rules.len(), h, from(host(hosts / 2).0), sweep));
    }
    // Per policy: floor hot, hot, floor sweep, sweep.
    let mut cols: Vec<[Vec<f64>; 4]> = vec![Default::default(); policies.len()];
    for _ in 0..RUNS {
        for ((_, h, hot, sweep), c) in policies.iter().zip(&mut cols) {
            c[0].push(floor.run_repeat(hot, REPEAT)?.1.as_nanos() as f64);
            c[1].push(h.run_repeat(hot, REPEAT)?.1.as_nanos() as f64);
            let (mut f, mut t) = (Duration::ZERO, Duration::ZERO);
            for p in sweep {
                f += floor.run_repeat(p, 1)?.1;
                t += h.run_repeat(p, 1)?.1;
            }
            c[2].push(f.as_nanos() as f64 / SWEEP as f64);
            c[3].push(t.as_nanos() as f64 / SWEEP as f64);
        }
    }
    let mut small = None;
    for ((n, ..), c) in policies.iter().zip(cols) {
        let [fh, th, fs, ts] = c.map(median);
        let (x_hot, x_sweep) = match small {
            Some((h10, s10)) => (format!("{:.2}", th / h10), format!("{:.2}", ts / s10)),
            None => ("-".into(), "-".into()),
        };
        small.get_or_insert((th, ts));
        println!(
            "{n:<8} {th:>8.1} {:>+8.1} {x_hot:>8} {ts:>9.1} {:>+9.1} {x_sweep:>8}",
            th - fh,
            ts - fs
        );
    }
    Ok(())
}
