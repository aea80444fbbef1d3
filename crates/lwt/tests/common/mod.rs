//! Shared test harness: throwaway network namespaces (unique names, always
//! removed), a veth pair between two of them, servers and clients run in a
//! namespace from a thread, the `lwt` binary, and C programs compiled by
//! clang at test time.
#![allow(dead_code)]

pub mod tunnel;

use std::{
    fs::File,
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::Duration,
};

/// Skips the calling test (loudly) unless it runs as root; with
/// `LWT_TEST_REQUIRE_ROOT` set (CI), fails it instead, so a run cannot pass
/// by skipping.
#[macro_export]
macro_rules! require_root {
    () => {
        if !common::is_root() {
            common::skip(module_path!(), "needs root and network namespaces");
            return;
        }
    };
}

/// Reports a skipped test on stderr, or panics when `LWT_TEST_REQUIRE_ROOT`
/// says skipping is not allowed.
pub fn skip(test: &str, why: &str) {
    if skipping_forbidden() {
        panic!("{test}: {why}, and LWT_TEST_REQUIRE_ROOT is set, so it may not be skipped");
    }
    eprintln!("SKIPPED {test}: {why}");
}

/// `LWT_TEST_REQUIRE_ROOT` is set to anything but empty or `0`.
pub fn skipping_forbidden() -> bool {
    std::env::var_os("LWT_TEST_REQUIRE_ROOT").is_some_and(|v| !v.is_empty() && v != "0")
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc_geteuid() == 0 }
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) -> Output {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("iproute2's ip is installed");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A network namespace that exists for the life of the value.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Self {
        let name = format!(
            "lwtt-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NAME ...`, asserting success.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        String::from_utf8_lossy(&ip(&full).stdout).into_owned()
    }

    /// `ip -n NAME ...`, returning the raw output.
    pub fn ip_raw(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .output()
            .expect("ip runs")
    }

    /// Runs `f` on a thread inside this namespace (sockets it opens stay there).
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        thread::spawn(move || {
            enter(&path);
            f()
        })
        .join()
        .expect("namespace thread")
    }

    /// Like [`run`] but leaves the thread running (servers).
    pub fn spawn(&self, f: impl FnOnce() + Send + 'static) {
        let path = format!("/run/netns/{}", self.name);
        thread::spawn(move || {
            enter(&path);
            f()
        });
    }

    /// Runs `lwt -n NAME ARGS...`.
    pub fn lwt(&self, args: &[&str]) -> Output {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        lwt(&full)
    }

    /// Runs `lwt -n NAME ARGS...` and returns stdout, asserting success.
    pub fn lwt_ok(&self, args: &[&str]) -> String {
        let out = self.lwt(args);
        assert!(
            out.status.success(),
            "lwt {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `lwt -n NAME attach PREFIX --dev DEV --hook HOOK --builtin count EXTRA...`,
    /// asserting success.
    pub fn count_on(&self, prefix: &str, dev: &str, hook: &str, extra: &[&str]) -> String {
        let mut args = vec![
            "attach",
            prefix,
            "--dev",
            dev,
            "--hook",
            hook,
            "--builtin",
            "count",
        ];
        args.extend_from_slice(extra);
        self.lwt_ok(&args)
    }

    /// Runs `lwt` expecting failure; returns stderr.
    pub fn lwt_err(&self, args: &[&str]) -> String {
        let out = self.lwt(args);
        assert!(
            !out.status.success(),
            "lwt {} should have failed but printed {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Starts `lwt -n NAME ARGS...` in the background, stdout and stderr
    /// piped (for verbs that follow, like `events`).
    pub fn lwt_spawn(&self, args: &[&str]) -> Child {
        Command::new(env!("CARGO_BIN_EXE_lwt"))
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("lwt starts")
    }

    /// `lwt -n NAME ARGS...` with extra environment variables.
    pub fn lwt_env(&self, env: &[(&str, &str)], args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_lwt"))
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("lwt runs")
    }

    /// The namespace's cookie (`SO_NETNS_COOKIE`), which names lwtkit's
    /// state and pin directories.
    pub fn cookie(&self) -> u64 {
        self.run(|| {
            let s = UdpSocket::bind("127.0.0.1:0").expect("socket");
            let mut c: u64 = 0;
            let mut len = 8u32;
            extern "C" {
                fn getsockopt(fd: i32, level: i32, name: i32, val: *mut u8, len: *mut u32) -> i32;
            }
            const SOL_SOCKET: i32 = 1;
            const SO_NETNS_COOKIE: i32 = 71;
            // SAFETY: getsockopt SO_NETNS_COOKIE into a u64.
            let rc = unsafe {
                getsockopt(
                    std::os::fd::AsRawFd::as_raw_fd(&s),
                    SOL_SOCKET,
                    SO_NETNS_COOKIE,
                    (&mut c as *mut u64).cast(),
                    &mut len,
                )
            };
            assert_eq!(rc, 0, "SO_NETNS_COOKIE");
            c
        })
    }

    /// lwtkit's record directory for this namespace.
    pub fn state_dir(&self) -> PathBuf {
        format!("/run/lwtkit/ns-{}", self.cookie()).into()
    }

    /// lwtkit's pin directory for this namespace.
    pub fn pin_dir(&self) -> PathBuf {
        format!("/sys/fs/bpf/lwtkit/ns-{}", self.cookie()).into()
    }

    /// What `lwt check -j` reports: (kind, what) of each disagreement.
    pub fn findings(&self) -> Vec<(String, String)> {
        let out = self.lwt(&["check", "-j"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let found: Vec<(String, String)> = json(&stdout)
            .as_array()
            .unwrap_or_else(|| {
                panic!(
                    "lwt check -j: {stdout}{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
            .iter()
            .map(|f| {
                (
                    f["kind"].as_str().unwrap_or_default().to_string(),
                    f["what"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        assert_eq!(
            out.status.success(),
            found.is_empty(),
            "lwt check fails exactly when it finds something: {found:?}"
        );
        found
    }

    /// `sysctl -w` each setting inside this namespace.
    pub fn sysctl(&self, settings: &[&str]) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "sysctl", "-qw"])
            .args(settings)
            .output()
            .expect("sysctl runs");
        assert!(
            out.status.success(),
            "sysctl {settings:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `ip -j route show table all` in this namespace, as text (for greps).
    /// Every route of both families, but what the kernel changes on its own
    /// schedule whatever lwtkit does: the IPv6 link-local routes (added once
    /// a link is up and DAD ends) and the `linkdown` flag (carrier state).
    pub fn routes(&self) -> String {
        let all = self.ip(&["route", "show", "table", "all"])
            + &self.ip(&["-6", "route", "show", "table", "all"]);
        all.lines()
            .filter(|l| !l.starts_with("local fe80:") && !l.starts_with("fe80::/64"))
            .map(|l| format!("{}\n", l.replace(" linkdown", "")))
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Pins outlive the namespace: take lwtkit's off first.
        let out = lwt(&["-n", &self.name, "reset"]);
        if !out.status.success() {
            eprintln!(
                "lwt reset in {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

fn enter(path: &str) {
    let f = File::open(path).expect("netns exists");
    nix_setns(&f);
}

fn nix_setns(f: &File) {
    use std::os::fd::AsRawFd;
    extern "C" {
        fn setns(fd: i32, nstype: i32) -> i32;
    }
    const CLONE_NEWNET: i32 = 0x4000_0000;
    // SAFETY: valid namespace fd.
    let rc = unsafe { setns(f.as_raw_fd(), CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

pub fn lwt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lwt"))
        .args(args)
        .output()
        .expect("lwt runs")
}

/// Two namespaces joined by a veth pair: `a` is 10.0.0.2 / fd00::2 on
/// `va`, `b` is 10.0.0.3 / fd00::3 on `vb`.
pub struct Pair {
    pub a: Netns,
    pub b: Netns,
}

impl Pair {
    pub fn new(tag: &str) -> Self {
        let a = Netns::new(&format!("{tag}a"));
        let b = Netns::new(&format!("{tag}b"));
        a.ip(&[
            "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &b.name,
        ]);
        for (ns, dev, v4, v6) in [
            (&a, "va", "10.0.0.2/24", "fd00::2/64"),
            (&b, "vb", "10.0.0.3/24", "fd00::3/64"),
        ] {
            ns.ip(&["addr", "add", v4, "dev", dev]);
            ns.ip(&["addr", "add", v6, "dev", dev, "nodad"]);
            ns.ip(&["link", "set", dev, "up"]);
        }
        for (ns, dev) in [(&a, "va"), (&b, "vb")] {
            let up = (0..100).any(|_| {
                let s = ns.ip(&["link", "show", dev]);
                s.contains("LOWER_UP") || {
                    thread::sleep(Duration::from_millis(20));
                    false
                }
            });
            assert!(up, "{dev} in {} never came up", ns.name);
        }
        // The kernel adds an IPv6 address's local route once the link is
        // up, a moment later under load: wait, so snapshots of the routes
        // taken now hold it.
        for (ns, addr) in [(&a, "fd00::2"), (&b, "fd00::3")] {
            let there = (0..250).any(|_| {
                let s = ns.ip(&["-6", "route", "show", "table", "local", addr]);
                !s.trim().is_empty() || {
                    thread::sleep(Duration::from_millis(20));
                    false
                }
            });
            assert!(there, "the local route of {addr} in {} never came", ns.name);
        }
        Pair { a, b }
    }
}

/// A — B — C: A 10.0.0.2 / fd00::2 and B 10.0.0.3 / fd00::3 on `va`/`vb`,
/// B 10.1.0.1 / fd01::1 and C 10.1.0.2 / fd01::2 on `vbc`/`vc`. A and C
/// route everything else via B, which forwards both families and has SRv6
/// enabled on `vb`.
pub struct Chain {
    pub a: Netns,
    pub b: Netns,
    pub c: Netns,
}

impl Chain {
    pub fn new(tag: &str) -> Self {
        let (a, b, c) = (
            Netns::new(&format!("{tag}a")),
            Netns::new(&format!("{tag}b")),
            Netns::new(&format!("{tag}c")),
        );
        a.ip(&[
            "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &b.name,
        ]);
        b.ip(&[
            "link", "add", "vbc", "type", "veth", "peer", "name", "vc", "netns", &c.name,
        ]);
        for (ns, dev, v4, v6) in [
            (&a, "va", "10.0.0.2/24", "fd00::2/64"),
            (&b, "vb", "10.0.0.3/24", "fd00::3/64"),
            (&b, "vbc", "10.1.0.1/24", "fd01::1/64"),
            (&c, "vc", "10.1.0.2/24", "fd01::2/64"),
        ] {
            ns.ip(&["addr", "add", v4, "dev", dev]);
            ns.ip(&["addr", "add", v6, "dev", dev, "nodad"]);
            ns.ip(&["link", "set", dev, "up"]);
        }
        for (ns, v4, v6) in [(&a, "10.0.0.3", "fd00::3"), (&c, "10.1.0.1", "fd01::1")] {
            ns.ip(&["route", "add", "default", "via", v4]);
            ns.ip(&["-6", "route", "add", "default", "via", v6]);
        }
        b.sysctl(&[
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
            "net.ipv6.conf.all.seg6_enabled=1",
            "net.ipv6.conf.vb.seg6_enabled=1",
        ]);
        c.sysctl(&[
            "net.ipv6.conf.all.seg6_enabled=1",
            "net.ipv6.conf.vc.seg6_enabled=1",
        ]);
        // IPv6 neighbour discovery waits for the link-local addresses to
        // leave DAD: until then a first datagram sits in a queue for a while.
        for ns in [&a, &b, &c] {
            for _ in 0..100 {
                if ns
                    .ip(&["-6", "addr", "show", "tentative"])
                    .trim()
                    .is_empty()
                {
                    break;
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
        Chain { a, b, c }
    }

    /// Sends one datagram from A to `to`; returns what a socket bound to
    /// `to` in C received within 3 s.
    pub fn a_to_c(&self, to: &'static str) -> Option<Vec<u8>> {
        // A port of its own per call: no two receivers ever meet.
        static PORT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(20_000);
        let mut addr: SocketAddr = to.parse().expect("socket address");
        addr.set_port(PORT.fetch_add(1, Ordering::Relaxed));
        let sock = self
            .c
            .run(move || UdpSocket::bind(addr).expect("bind in C"));
        sock.set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        // One more try on a loaded machine: tests that count packets see
        // the second datagram only when the first was lost.
        for _ in 0..2 {
            self.a.run(move || {
                let any = if addr.is_ipv6() {
                    "[::]:0"
                } else {
                    "0.0.0.0:0"
                };
                UdpSocket::bind(any)
                    .expect("udp")
                    .send_to(b"through the chain", addr)
                    .expect("send");
            });
            let mut buf = [0u8; 64];
            if let Ok(n) = sock.recv(&mut buf) {
                return Some(buf[..n].to_vec());
            }
        }
        None
    }
}

/// Starts TCP servers in `ns` that answer "ok\n" to every connection.
pub fn serve_tcp(ns: &Netns, addrs: &[&str]) {
    for addr in addrs {
        let addr: SocketAddr = addr.parse().expect("socket address");
        let (tx, rx) = std::sync::mpsc::channel();
        ns.spawn(move || {
            let l = TcpListener::bind(addr).expect("bind server");
            tx.send(()).expect("ready");
            for mut s in l.incoming().flatten() {
                let _ = s.write_all(b"ok\n");
            }
        });
        rx.recv().expect("server started");
    }
}

/// Whether a TCP connection from `ns` to `addr` completes and reads "ok".
pub fn tcp_works(ns: &Netns, addr: &str) -> bool {
    let addr: SocketAddr = addr.parse().expect("socket address");
    ns.run(move || {
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(1500)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(1500)));
        let mut buf = [0u8; 3];
        s.read_exact(&mut buf).is_ok() && &buf == b"ok\n"
    })
}

/// Waits (up to 5 s) until a TCP connection from `ns` to `addr` works: for
/// baselines, where neighbour discovery may still be running.
pub fn tcp_works_soon(ns: &Netns, addr: &str) -> bool {
    (0..5).any(|_| tcp_works(ns, addr))
}

/// Sends `n` UDP datagrams of `len` payload bytes from `ns` to `addr`.
pub fn send_udp(ns: &Netns, addr: &str, n: usize, len: usize) {
    let addr: SocketAddr = addr.parse().expect("socket address");
    ns.run(move || {
        let bind = if addr.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        let s = UdpSocket::bind(bind).expect("udp socket");
        let payload = vec![0x5au8; len];
        for _ in 0..n {
            s.send_to(&payload, addr).expect("send");
        }
    })
}

/// Like [`send_udp`], but a send the kernel refuses (a route hook that
/// drops makes it fail with EPERM) is not an error; returns how many sends
/// were accepted.
pub fn send_udp_lossy(ns: &Netns, addr: &str, n: usize, len: usize) -> usize {
    let addr: SocketAddr = addr.parse().expect("socket address");
    ns.run(move || {
        let bind = if addr.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        let s = UdpSocket::bind(bind).expect("udp socket");
        let payload = vec![0x5au8; len];
        (0..n).filter(|_| s.send_to(&payload, addr).is_ok()).count()
    })
}

/// Compiles NAME.c (from tests/bpf, or the repo's examples/bpf) with clang
/// into a temp dir; returns the object.
pub fn compile_bpf(name: &str) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = [
        manifest.join("tests/bpf"),
        manifest.join("../../examples/bpf"),
    ]
    .iter()
    .map(|d| d.join(format!("{name}.c")))
    .find(|p| p.exists())
    .unwrap_or_else(|| panic!("no C source for {name}"));
    let obj = scratch(&format!("{name}.o"));
    let arch_include = format!("-I/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    let out = Command::new("clang")
        .args(["-O2", "-g", "-target", "bpf", &arch_include, "-c"])
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .output()
        .expect("clang is installed (scripts/setup.sh)");
    assert!(
        out.status.success(),
        "clang {}: {}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    obj
}

/// Parses JSON from an lwt command's stdout.
pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// What [`udp_exchange`] sends (captures find the datagram by it).
pub const UDP_EXCHANGE_PAYLOAD: &[u8] = b"nat-udp-check";

/// One UDP datagram from `from` to `to` (a socket bound to `bind` in
/// `server` answers it), sent up to `tries` times: the source the server
/// saw, and the source of the answer the sender got.
pub fn udp_exchange(
    from: &Netns,
    server: &Netns,
    bind: &str,
    to: &str,
    tries: usize,
) -> (SocketAddr, SocketAddr) {
    let bind: SocketAddr = bind.parse().expect("address");
    let to: SocketAddr = to.parse().expect("address");
    let srv = server.run(move || UdpSocket::bind(bind).expect("bind"));
    srv.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let got = srv.recv_from(&mut buf);
        if let Ok((_, peer)) = got {
            let _ = srv.send_to(b"reply", peer);
        }
        let _ = tx.send(got.map(|(_, p)| p));
    });
    let answer = from.run(move || {
        let s = UdpSocket::bind(if to.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }).expect("udp");
        s.set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        for _ in 0..tries {
            s.send_to(UDP_EXCHANGE_PAYLOAD, to).expect("send");
            let mut buf = [0u8; 64];
            if let Ok((_, p)) = s.recv_from(&mut buf) {
                return Ok(p);
            }
        }
        Err("no answer")
    });
    let seen = rx.recv().expect("server").expect("the datagram arrived");
    (seen, answer.expect("the answer arrived"))
}

/// This test process's scratch directory under the system's temp dir,
/// made on first use and removed when the process exits, so a test run
/// leaves no files behind.
pub fn scratch_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch_path();
        std::fs::create_dir_all(&dir).expect("scratch dir");
        // SAFETY: registers a plain function with no state.
        unsafe { libc::atexit(remove_scratch) };
        dir
    })
    .clone()
}

/// `name` in [`scratch_dir`].
pub fn scratch(name: &str) -> PathBuf {
    scratch_dir().join(name)
}

fn scratch_path() -> PathBuf {
    std::env::temp_dir().join(format!("lwtkit-tests-{}", std::process::id()))
}

extern "C" fn remove_scratch() {
    let _ = std::fs::remove_dir_all(scratch_path());
}

/// The program id `lwt list -j` reports on one hook of a route.
pub fn prog_id(ns: &Netns, dst: &str, hook: &str) -> u64 {
    let list = json(&ns.lwt_ok(&["list", "-j"]));
    list.as_array()
        .and_then(|rs| rs.iter().find(|r| r["dst"] == dst))
        .and_then(|r| r[hook]["id"].as_u64())
        .unwrap_or_else(|| panic!("no program id on {dst} hook {hook}: {list}"))
}
