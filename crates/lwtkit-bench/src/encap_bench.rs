//! Encapsulation end to end, from namespace A to B over a veth pair.
//!
//! `encap`: TCP throughput and UDP packets per second for plain routing (the
//! floor), lwtkit's VXLAN encapsulation into a kernel vxlan device in B, and
//! a kernel vxlan device in A with the same VNI and path.
//! `encap --types`: every tunnel type's TCP throughput (IPv4 and IPv6 inner
//! where the type allows) as a ratio to plain routing between the same two
//! namespaces over the same veth.
//!
//! Every setup exists for the whole run; modes alternate run by run, in a
//! rotated order, so drift on a shared machine hits every mode alike. The
//! sender is pinned to CPU 0 and the TCP receiver to CPU 1 in every mode.
use std::{
    fs::File,
    io::{Read, Write},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::AsFd,
    time::{Duration, Instant},
};

use crate::e2e::{in_netns, lwt, pair, sh, Ns};

const TCP_BYTES: usize = 256 << 20;
/// UDP seconds per mode and run, sent in SLICES slices that alternate
/// between the modes (drift within a run hits every mode alike).
const UDP_SECONDS: f64 = 1.0;
const SLICES: usize = 5;
/// Datagrams per `sendmmsg` call: the sender's own cost per packet is small
/// beside the stack's, so the tunnel's cost shows.
const BATCH: usize = 64;
/// Runs of each mode (the medians of these are reported).
const RUNS: usize = 9;

struct Setup {
    a: Ns,
    b: Ns,
    /// The inner address of B that the measured traffic goes to.
    target: IpAddr,
}

/// Pins the calling thread to one CPU (the machine's last one if fewer).
pub fn pin(cpu: usize) {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    // SAFETY: a zeroed cpu_set_t with one bit set, for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu.min(n - 1), &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// B's kernel vxlan device (VNI 42) holding `addr`; returns its MAC.
fn vxlan_in_b(b: &Ns, local: &str, addrs: &[&str]) -> anyhow::Result<String> {
    sh(
        "ip",
        &[
            "-n", &b.0, "link", "add", "vx0", "type", "vxlan", "id", "42", "local", local,
            "dstport", "4789", "dev", "vb",
        ],
    )?;
    for addr in addrs {
        sh(
            "ip",
            &["-n", &b.0, "addr", "add", addr, "dev", "vx0", "nodad"],
        )?;
    }
    sh("ip", &["-n", &b.0, "link", "set", "vx0", "up"])?;
    let out = sh("ip", &["-n", &b.0, "-o", "link", "show", "vx0"])?;
    let mac = out
        .split("link/ether ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_default()
        .to_string();
    Ok(mac)
}

/// A pair with IPv6 too (fd00::2 / fd00::3 on va / vb).
fn pair6(tag: &str) -> anyhow::Result<(Ns, Ns)> {
    let (a, b) = pair(tag)?;
    for (ns, dev, addr) in [(&a, "va", "fd00::2/64"), (&b, "vb", "fd00::3/64")] {
        sh(
            "ip",
            &["-n", &ns.0, "addr", "add", addr, "dev", dev, "nodad"],
        )?;
    }
    Ok((a, b))
}

fn vxlan_setup(mode: &str) -> anyhow::Result<Setup> {
    let (a, b) = pair(&format!("enc{mode}"))?;
    match mode {
        "plain" => {
            sh(
                "ip",
                &["-n", &b.0, "addr", "add", "192.168.100.3/32", "dev", "lo"],
            )?;
            sh(
                "ip",
                &[
                    "-n",
                    &a.0,
                    "route",
                    "add",
                    "192.168.100.3/32",
                    "via",
                    "10.0.0.3",
                ],
            )?;
        }
        "lwtkit" => {
            let mac = vxlan_in_b(&b, "10.0.0.3", &["192.168.100.3/24"])?;
            lwt(
                &a,
                &[
                    "encap",
                    "add",
                    "192.168.100.3/32",
                    "--dev",
                    "va",
                    "--type",
                    "vxlan",
                    "--remote",
                    "10.0.0.3",
                    "--vni",
                    "42",
                    "--inner-dst-mac",
                    &mac,
                ],
            )?;
        }
        _ => {
            let mac = vxlan_in_b(&b, "10.0.0.3", &["192.168.100.3/24"])?;
            sh(
                "ip",
                &[
                    "-n", &a.0, "link", "add", "vx0", "type", "vxlan", "id", "42", "local",
                    "10.0.0.2", "remote", "10.0.0.3", "dstport", "4789",
                ],
            )?;
            sh(
                "ip",
                &["-n", &a.0, "addr", "add", "192.168.100.2/24", "dev", "vx0"],
            )?;
            sh("ip", &["-n", &a.0, "link", "set", "vx0", "up"])?;
            sh(
                "ip",
                &[
                    "-n",
                    &a.0,
                    "neigh",
                    "add",
                    "192.168.100.3",
                    "lladdr",
                    &mac,
                    "dev",
                    "vx0",
                ],
            )?;
            // B answers 192.168.100.2 through its own vxlan device.
            sh(
                "bridge",
                &[
                    "-n",
                    &b.0,
                    "fdb",
                    "append",
                    "00:00:00:00:00:00",
                    "dev",
                    "vx0",
                    "dst",
                    "10.0.0.2",
                ],
            )?;
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    Ok(Setup {
        a,
        b,
        target: "192.168.100.3".parse()?,
    })
}

/// MB/s of one TCP stream A -> `to` in B (sender on CPU 0, receiver on 1).
fn tcp(a: &Ns, b: &Ns, to: SocketAddr) -> anyhow::Result<f64> {
    tcp_stream(a, b, to, TCP_BYTES).map(|(mbs, _)| mbs)
}

/// MB/s of one stream of `bytes` from `from` to `to` in `into` (sender on
/// CPU 0, receiver on 1), and the source address the receiver saw.
pub fn tcp_stream(
    from: &Ns,
    into: &Ns,
    to: SocketAddr,
    bytes: usize,
) -> anyhow::Result<(f64, IpAddr)> {
    let listener = in_netns(into, move || TcpListener::bind(to))??;
    let server = std::thread::spawn(move || -> std::io::Result<(usize, IpAddr)> {
        pin(1);
        let (mut c, peer) = listener.accept()?;
        let mut buf = vec![0u8; 1 << 16];
        let mut n = 0;
        loop {
            let r = c.read(&mut buf)?;
            if r == 0 {
                return Ok((n, peer.ip()));
            }
            n += r;
        }
    });
    let secs = in_netns(from, move || -> anyhow::Result<f64> {
        pin(0);
        let mut c = TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
        c.set_write_timeout(Some(Duration::from_secs(10)))?;
        let chunk = vec![0x42u8; 1 << 16];
        let t = Instant::now();
        let mut sent = 0;
        while sent < bytes {
            c.write_all(&chunk)?;
            sent += chunk.len();
        }
        c.shutdown(std::net::Shutdown::Write)?;
        let _ = c.read(&mut [0u8; 1]);
        Ok(t.elapsed().as_secs_f64())
    })??;
    let (got, peer) = server
        .join()
        .map_err(|_| anyhow::anyhow!("server panicked"))??;
    anyhow::ensure!(got == bytes, "received {got} of {bytes} bytes");
    Ok((bytes as f64 / secs / 1e6, peer))
}

/// One UDP measurement, or the sum of several.
#[derive(Clone, Copy, Default)]
struct UdpTotals {
    sent: u64,
    arrived: u64,
    secs: f64,
    cpu_ns: f64,
}

impl UdpTotals {
    fn add(&mut self, o: UdpTotals) {
        self.sent += o.sent;
        self.arrived += o.arrived;
        self.secs += o.secs;
        self.cpu_ns += o.cpu_ns;
    }

    fn rates(&self) -> Udp {
        Udp {
            sent: self.sent as f64 / self.secs,
            arrived: self.arrived as f64 / self.secs,
            cpu_ns: self.cpu_ns / self.sent.max(1) as f64,
        }
    }
}

/// UDP rates.
#[derive(Clone, Copy, Default)]
struct Udp {
    /// Datagrams per second the sender got out.
    sent: f64,
    /// Frames per second that arrived on B's veth.
    arrived: f64,
    /// The sending thread's CPU time per datagram (ns).
    cpu_ns: f64,
}

/// Packets B's veth `vb` has received (/proc/thread-self/net/dev of a
/// thread in B).
fn rx_packets(b: &Ns) -> anyhow::Result<u64> {
    in_netns(b, || -> anyhow::Result<u64> {
        let mut s = String::new();
        File::open("/proc/thread-self/net/dev")?.read_to_string(&mut s)?;
        let line = s
            .lines()
            .find(|l| l.trim_start().starts_with("vb:"))
            .ok_or_else(|| anyhow::anyhow!("no vb in B's /proc/net/dev"))?;
        let fields: Vec<&str> = line.split_whitespace().collect();
        Ok(fields.get(2).and_then(|f| f.parse().ok()).unwrap_or(0))
    })?
}

/// 64-byte UDP payloads A -> B for `seconds`, `sendmmsg` x BATCH from one
/// socket on CPU 0 (B receives on the same CPU: veth hands packets to the
/// sending CPU's backlog, and its softirq time is charged to the sender).
fn udp(s: &Setup, seconds: f64) -> anyhow::Result<UdpTotals> {
    let to = SocketAddr::new(s.target, 7002);
    let _sink = in_netns(&s.b, move || UdpSocket::bind(to))??;
    let rx0 = rx_packets(&s.b)?;
    let (sent, secs, cpu_ns) = in_netns(&s.a, move || -> anyhow::Result<(u64, f64, f64)> {
        pin(0);
        let sock = UdpSocket::bind(if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
        sock.connect(to)?;
        crate::e2e::send_for(&sock, &[0u8; 64], seconds)
    })??;
    std::thread::sleep(Duration::from_millis(20));
    let arrived = rx_packets(&s.b)?.saturating_sub(rx0);
    Ok(UdpTotals {
        sent,
        arrived,
        secs,
        cpu_ns,
    })
}

/// Run time and run count of a BPF program, counted by the kernel while a
/// `BPF_ENABLE_STATS` fd is open (scoped to that fd: the sysctl is untouched).
struct ProgStats {
    _enabled: std::os::fd::OwnedFd,
    prog: std::os::fd::OwnedFd,
}

impl ProgStats {
    fn open(id: u32) -> anyhow::Result<Self> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain libbpf calls; the fds returned are ours to own.
        let enabled = unsafe { libbpf_sys::bpf_enable_stats(libbpf_sys::BPF_STATS_RUN_TIME) };
        anyhow::ensure!(
            enabled >= 0,
            "BPF_ENABLE_STATS: {}",
            std::io::Error::last_os_error()
        );
        let _enabled = unsafe { std::os::fd::OwnedFd::from_raw_fd(enabled) };
        let prog = unsafe { libbpf_sys::bpf_prog_get_fd_by_id(id) };
        anyhow::ensure!(prog >= 0, "prog {id}: {}", std::io::Error::last_os_error());
        let prog = unsafe { std::os::fd::OwnedFd::from_raw_fd(prog) };
        Ok(ProgStats { _enabled, prog })
    }

    /// (run time in ns, runs) so far.
    fn read(&self) -> (u64, u64) {
        lwtkit::prog_info::info(self.prog.as_fd())
            .map_or((0, 0), |info| (info.run_time_ns, info.run_cnt))
    }
}

/// The id of the program on `target`'s route in A (`...#ID` in its name).
fn route_prog_id(a: &Ns, target: IpAddr) -> Option<u32> {
    let out = sh("ip", &["-n", &a.0, "route", "show", &target.to_string()]).ok()?;
    let name = out.split_whitespace().find(|w| w.starts_with("lwtkit-"))?;
    lwtkit::route::kernel::split_program_name(name).1
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The order of the modes in run `run`: rotated, so no mode always goes first.
pub fn order(n: usize, run: usize) -> impl Iterator<Item = usize> {
    (0..n).map(move |i| (i + run) % n)
}

/// `lwtkit-bench encap`: lwtkit VXLAN against the kernel vxlan device.
pub fn run() -> anyhow::Result<()> {
    println!(
        "\nencapsulation end to end: A -> B over veth; one TCP stream of {} MiB; UDP 64-byte payloads, sendmmsg x{BATCH}, {UDP_SECONDS} s in {SLICES} slices; {RUNS} runs per mode, alternating in rotated order; sender on CPU 0, TCP receiver on CPU 1",
        TCP_BYTES >> 20
    );
    let modes = [
        ("plain", "plain routing"),
        ("lwtkit", "lwtkit vxlan (lwt_xmit)"),
        ("kernel", "kernel vxlan device"),
    ];
    let setups = modes
        .iter()
        .map(|(m, _)| vxlan_setup(m))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut tcp_runs = vec![Vec::new(); modes.len()];
    let mut udp_runs: Vec<Vec<Udp>> = vec![Vec::new(); modes.len()];
    // ns per packet of lwtkit's encap program during the UDP runs.
    let mut prog_ns = Vec::new();
    let n = modes.len();
    for run in 0..RUNS {
        let mut t = vec![0.0; n];
        for i in order(n, run) {
            let s = &setups[i];
            t[i] = tcp(&s.a, &s.b, SocketAddr::new(s.target, 7001))?;
        }
        let stats = route_prog_id(&setups[1].a, setups[1].target)
            .map(ProgStats::open)
            .transpose()?;
        let before = stats.as_ref().map(ProgStats::read);
        let mut u = vec![UdpTotals::default(); n];
        for slice in 0..SLICES {
            for i in order(n, run + slice) {
                u[i].add(udp(&setups[i], UDP_SECONDS / SLICES as f64)?);
            }
        }
        if let (Some(st), Some((t0, n0))) = (&stats, before) {
            let (t1, n1) = st.read();
            prog_ns.push((t1 - t0) as f64 / (n1 - n0).max(1) as f64);
        }
        for i in 0..n {
            let r = u[i].rates();
            println!(
                "  run {} {:<7} TCP {:>6.0} MB/s  UDP sent {:>6.1} kpps, arrived {:>6.1} kpps, sender CPU {:>5.0} ns/packet",
                run + 1,
                modes[i].0,
                t[i],
                r.sent / 1e3,
                r.arrived / 1e3,
                r.cpu_ns
            );
            tcp_runs[i].push(t[i]);
            udp_runs[i].push(r);
        }
    }
    let t: Vec<f64> = tcp_runs.iter().map(|v| median(v.clone())).collect();
    let field = |i: usize, f: fn(&Udp) -> f64| median(udp_runs[i].iter().map(f).collect());
    println!(
        "{:<26} {:>9} {:>6} {:>10} {:>6} {:>13} {:>13}",
        "median", "TCP MB/s", "ratio", "UDP kpps", "ratio", "arrived kpps", "CPU ns/pkt"
    );
    for (i, (_, name)) in modes.iter().enumerate() {
        let sent = field(i, |u| u.sent);
        println!(
            "{name:<26} {:>9.0} {:>6.2} {:>10.1} {:>6.2} {:>13.1} {:>13.0}",
            t[i],
            t[i] / t[0],
            sent / 1e3,
            sent / field(0, |u| u.sent),
            field(i, |u| u.arrived) / 1e3,
            field(i, |u| u.cpu_ns)
        );
    }
    // Ratios of the same run (the modes ran seconds apart), then their median.
    let per_run =
        |f: &dyn Fn(usize, usize) -> f64| median((0..RUNS).map(|r| f(1, r) / f(2, r)).collect());
    let tcp_ratio = per_run(&|i, r| tcp_runs[i][r]);
    let udp_ratio = per_run(&|i, r| udp_runs[i][r].sent);
    let cpu_ratio = per_run(&|i, r| udp_runs[i][r].cpu_ns);
    println!(
        "lwtkit vxlan / kernel vxlan device, median of per-run ratios: TCP {tcp_ratio:.2}x, UDP {udp_ratio:.2}x (sender CPU per packet {cpu_ratio:.2}x); ratio of medians: TCP {:.2}x, UDP {:.2}x",
        t[1] / t[2],
        field(1, |u| u.sent) / field(2, |u| u.sent)
    );
    if !prog_ns.is_empty() {
        println!(
            "lwtkit's encap program itself (BPF_ENABLE_STATS, UDP runs): median {:.0} ns per packet",
            median(prog_ns)
        );
    }
    Ok(())
}

/// One tunnel of `encap --types`.
struct TypeCase {
    kind: &'static str,
    inner_v6: bool,
    outer_v6: bool,
}

const INNER_V4: &str = "192.168.50.3";
const INNER_V6: &str = "2001:db8:50::3";

/// The pair for `c`: the far side in B (a kernel vxlan device, `lwt decap`,
/// or seg6local), the tunnel in A.
fn type_setup(n: usize, c: &TypeCase) -> anyhow::Result<Setup> {
    let (a, b) = pair6(&format!("ty{n}"))?;
    let inner = if c.inner_v6 { INNER_V6 } else { INNER_V4 };
    let (remote, local) = if c.outer_v6 {
        ("fd00::3", "fd00::3")
    } else {
        ("10.0.0.3", "10.0.0.3")
    };
    let mut args: Vec<String> = ["encap", "add", "", "--dev", "va", "--type", c.kind]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args[2] = format!("{inner}/{}", if c.inner_v6 { 128 } else { 32 });
    match c.kind {
        "vxlan" => {
            let mac = vxlan_in_b(&b, local, &["192.168.50.3/24", "2001:db8:50::3/64"])?;
            args.extend(
                ["--remote", remote, "--vni", "42", "--inner-dst-mac", &mac].map(String::from),
            );
        }
        "srv6" => {
            inner_on_lo(&b)?;
            for s in [
                "net.ipv6.conf.all.seg6_enabled=1",
                "net.ipv6.conf.vb.seg6_enabled=1",
            ] {
                sh("ip", &["netns", "exec", &b.0, "sysctl", "-qw", s])?;
            }
            let mut r = vec![
                "-n",
                &b.0,
                "-6",
                "route",
                "add",
                "fc00::b",
                "encap",
                "seg6local",
            ];
            if c.inner_v6 {
                r.extend(["action", "End.DT6", "table", "local"]);
            } else {
                r.extend(["action", "End.DX4", "nh4", INNER_V4]);
            }
            r.extend(["dev", "vb"]);
            sh("ip", &r)?;
            sh(
                "ip",
                &[
                    "-n", &a.0, "-6", "route", "add", "fc00::b", "via", "fd00::3",
                ],
            )?;
            args.extend(["--segments", "fc00::b"].map(String::from));
        }
        _ => {
            inner_on_lo(&b)?;
            lwt(
                &b,
                &[
                    "decap",
                    "add",
                    "--dev",
                    "vb",
                    "--type",
                    c.kind,
                    "--fou-port",
                    "5555",
                    "--gue-port",
                    "6080",
                ],
            )?;
            args.extend(["--remote", remote].map(String::from));
            match c.kind {
                "fou" => args.extend(["--port", "5555"].map(String::from)),
                "gue" => args.extend(["--port", "6080"].map(String::from)),
                _ => {}
            }
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    lwt(&a, &args)?;
    std::thread::sleep(Duration::from_millis(300));
    Ok(Setup {
        a,
        b,
        target: inner.parse()?,
    })
}

/// B holds both inner addresses on `lo`.
fn inner_on_lo(b: &Ns) -> anyhow::Result<()> {
    sh(
        "ip",
        &["-n", &b.0, "addr", "add", "192.168.50.3/32", "dev", "lo"],
    )?;
    sh(
        "ip",
        &[
            "-n",
            &b.0,
            "addr",
            "add",
            "2001:db8:50::3/128",
            "dev",
            "lo",
            "nodad",
        ],
    )?;
    Ok(())
}

/// The route's `mtu` and `advmss` metrics as `ip route` shows them.
fn route_metrics(a: &Ns, target: IpAddr) -> String {
    let fam = if target.is_ipv6() { "-6" } else { "-4" };
    let out = sh(
        "ip",
        &["-n", &a.0, fam, "route", "show", &target.to_string()],
    )
    .unwrap_or_default();
    let words: Vec<&str> = out.split_whitespace().collect();
    let metric = |name: &str| {
        words
            .iter()
            .position(|w| *w == name)
            .and_then(|i| words.get(i + 1))
            .map_or("-", |v| v)
            .to_string()
    };
    format!("mtu {} advmss {}", metric("mtu"), metric("advmss"))
}

/// `lwtkit-bench encap --types`.
pub fn run_types() -> anyhow::Result<()> {
    let cases = [
        TypeCase {
            kind: "vxlan",
            inner_v6: false,
            outer_v6: false,
        },
        TypeCase {
            kind: "vxlan",
            inner_v6: true,
            outer_v6: false,
        },
        TypeCase {
            kind: "fou",
            inner_v6: false,
            outer_v6: false,
        },
        TypeCase {
            kind: "fou",
            inner_v6: true,
            outer_v6: false,
        },
        TypeCase {
            kind: "gue",
            inner_v6: false,
            outer_v6: false,
        },
        TypeCase {
            kind: "gue",
            inner_v6: true,
            outer_v6: false,
        },
        TypeCase {
            kind: "gre",
            inner_v6: false,
            outer_v6: false,
        },
        TypeCase {
            kind: "gre",
            inner_v6: true,
            outer_v6: false,
        },
        TypeCase {
            kind: "ipip",
            inner_v6: false,
            outer_v6: false,
        },
        TypeCase {
            kind: "sit",
            inner_v6: true,
            outer_v6: false,
        },
        TypeCase {
            kind: "ip6ip6",
            inner_v6: true,
            outer_v6: true,
        },
        TypeCase {
            kind: "ip4in6",
            inner_v6: false,
            outer_v6: true,
        },
        TypeCase {
            kind: "srv6",
            inner_v6: false,
            outer_v6: true,
        },
        TypeCase {
            kind: "srv6",
            inner_v6: true,
            outer_v6: true,
        },
    ];
    let runs = 7;
    println!(
        "\nevery tunnel type, TCP A -> B over veth ({} MiB, GSO on), as a ratio to plain routing between the same namespaces over the same veth (10.0.0.3 / fd00::3 directly); median of {runs} runs, tunnel and plain alternating",
        TCP_BYTES >> 20
    );
    println!(
        "{:<8} {:<5} {:<5} {:>10} {:>10} {:>7}  route",
        "type", "inner", "outer", "tunnel", "plain", "ratio"
    );
    for (n, c) in cases.iter().enumerate() {
        let s = type_setup(n, c)?;
        let plain_to: IpAddr = if c.inner_v6 { "fd00::3" } else { "10.0.0.3" }.parse()?;
        let (mut tun, mut plain, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..runs {
            // Alternate which goes first.
            let (t, p) = if run % 2 == 0 {
                let t = tcp(&s.a, &s.b, SocketAddr::new(s.target, 7001))?;
                (t, tcp(&s.a, &s.b, SocketAddr::new(plain_to, 7001))?)
            } else {
                let p = tcp(&s.a, &s.b, SocketAddr::new(plain_to, 7001))?;
                (tcp(&s.a, &s.b, SocketAddr::new(s.target, 7001))?, p)
            };
            tun.push(t);
            plain.push(p);
            ratio.push(t / p);
        }
        let fam = |v6: bool| if v6 { "IPv6" } else { "IPv4" };
        println!(
            "{:<8} {:<5} {:<5} {:>7.0} MB/s {:>5.0} MB/s {:>6.2}x  {}",
            c.kind,
            fam(c.inner_v6),
            fam(c.outer_v6),
            median(tun),
            median(plain),
            median(ratio),
            route_metrics(&s.a, s.target)
        );
    }
    Ok(())
}
