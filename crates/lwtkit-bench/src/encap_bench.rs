//! Encapsulation end to end: TCP throughput and UDP packets per second from
//! namespace A to B over a veth pair, for plain routing (the floor), lwtkit's
//! VXLAN encapsulation into a kernel vxlan device in B, and a kernel vxlan
//! device in A with the same VNI and path.
use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream, UdpSocket},
    time::{Duration, Instant},
};

use crate::e2e::{in_netns, lwt, pair, sh, Ns};

const TCP_BYTES: usize = 512 << 20;
const UDP_SECONDS: f64 = 2.0;

struct Setup {
    a: Ns,
    b: Ns,
    /// The inner address of B that the measured traffic goes to.
    target: &'static str,
}

/// B's kernel vxlan device (VNI 42) holding 192.168.100.3; returns its MAC.
fn vxlan_in_b(b: &Ns) -> anyhow::Result<String> {
    sh(
        "ip",
        &[
            "-n", &b.0, "link", "add", "vx0", "type", "vxlan", "id", "42", "local", "10.0.0.3",
            "dstport", "4789",
        ],
    )?;
    sh(
        "ip",
        &["-n", &b.0, "addr", "add", "192.168.100.3/24", "dev", "vx0"],
    )?;
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

fn setup(mode: &str) -> anyhow::Result<Setup> {
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
            let mac = vxlan_in_b(&b)?;
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
            let mac = vxlan_in_b(&b)?;
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
        target: "192.168.100.3",
    })
}

/// MB/s of one TCP stream A -> B.
fn tcp(s: &Setup) -> anyhow::Result<f64> {
    let listener = in_netns(&s.b, move || TcpListener::bind("192.168.100.3:7001"))??;
    let server = std::thread::spawn(move || -> std::io::Result<usize> {
        let (mut c, _) = listener.accept()?;
        let mut buf = vec![0u8; 1 << 16];
        let mut n = 0;
        loop {
            let r = c.read(&mut buf)?;
            if r == 0 {
                return Ok(n);
            }
            n += r;
        }
    });
    let target = s.target;
    let secs = in_netns(&s.a, move || -> anyhow::Result<f64> {
        let mut c = TcpStream::connect((target, 7001))?;
        let chunk = vec![0x42u8; 1 << 16];
        let t = Instant::now();
        let mut sent = 0;
        while sent < TCP_BYTES {
            c.write_all(&chunk)?;
            sent += chunk.len();
        }
        c.shutdown(std::net::Shutdown::Write)?;
        let _ = c.read(&mut [0u8; 1]);
        Ok(t.elapsed().as_secs_f64())
    })??;
    let got = server
        .join()
        .map_err(|_| anyhow::anyhow!("server panicked"))??;
    anyhow::ensure!(got == TCP_BYTES, "received {got} of {TCP_BYTES} bytes");
    Ok(TCP_BYTES as f64 / secs / 1e6)
}

/// Datagrams per second A -> B (64-byte payloads, one socket).
fn udp(s: &Setup) -> anyhow::Result<f64> {
    let _sink = in_netns(&s.b, || UdpSocket::bind("192.168.100.3:7002"))??;
    let target = s.target;
    in_netns(&s.a, move || -> anyhow::Result<f64> {
        let sock = UdpSocket::bind("0.0.0.0:0")?;
        sock.connect((target, 7002))?;
        let payload = [0u8; 64];
        let t = Instant::now();
        let mut n = 0u64;
        while t.elapsed().as_secs_f64() < UDP_SECONDS {
            for _ in 0..256 {
                if sock.send(&payload).is_ok() {
                    n += 1;
                }
            }
        }
        Ok(n as f64 / t.elapsed().as_secs_f64())
    })?
}

/// Runs of each mode, alternating (plain, lwtkit, kernel, plain, ...), so
/// that drift on a shared machine hits every mode alike; medians reported.
const RUNS: usize = 5;

pub fn run() -> anyhow::Result<()> {
    println!("\nencapsulation end to end: A -> B over veth, one TCP stream of {} MiB, UDP 64-byte payloads for {UDP_SECONDS} s; median of {RUNS} alternating runs", TCP_BYTES >> 20);
    let modes = [
        ("plain", "plain routing"),
        ("lwtkit", "lwtkit vxlan (lwt_xmit)"),
        ("kernel", "kernel vxlan device"),
    ];
    let mut tcp_runs = vec![Vec::new(); modes.len()];
    let mut udp_runs = vec![Vec::new(); modes.len()];
    for run in 0..RUNS {
        for (i, (mode, _)) in modes.iter().enumerate() {
            let s = setup(mode)?;
            let (t, u) = (tcp(&s)?, udp(&s)?);
            drop(s);
            println!(
                "  run {} {mode:<7} TCP {t:>8.0} MB/s  UDP {:>8.1} kpps",
                run + 1,
                u / 1e3
            );
            tcp_runs[i].push(t);
            udp_runs[i].push(u);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let t: Vec<f64> = tcp_runs.iter_mut().map(median).collect();
    let u: Vec<f64> = udp_runs.iter_mut().map(median).collect();
    println!(
        "{:<34} {:>10} {:>8} {:>10} {:>8}",
        "", "TCP MB/s", "ratio", "UDP kpps", "ratio"
    );
    for (i, (_, name)) in modes.iter().enumerate() {
        println!(
            "{name:<34} {:>10.0} {:>8.2} {:>10.1} {:>8.2}",
            t[i],
            t[i] / t[0],
            u[i] / 1e3,
            u[i] / u[0]
        );
    }
    println!(
        "lwtkit vxlan / kernel vxlan device: TCP {:.2}x, UDP {:.2}x",
        t[1] / t[2],
        u[1] / u[2]
    );
    Ok(())
}
