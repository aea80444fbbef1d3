//! `lwt encap` and routing tables: overlapping and equal prefixes in the
//! main table and table 100, with `ip rule` steering a source address into
//! table 100, each reach their own tunnel; so do the main table and a VRF's
//! table, where the kernel has VRFs. Checked on the far side, where one
//! kernel vxlan device per tunnel (VNI 42 for main, 43 for the other table)
//! decapsulates, and by each tunnel's counters.
mod common;

use std::{
    ffi::CString,
    net::{SocketAddr, UdpSocket},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::Duration,
};

use common::{json, Netns, Pair};
use serde_json::Value;

/// The source address that `ip rule` sends to table 100 in `a`.
const TABLE_100_SOURCE: &str = "10.9.0.2";
const PORT: u16 = 7000;

/// A (10.0.0.2 on `va`) and B (10.0.0.3 on `vb`) with two kernel vxlan
/// devices, `vx42` (VNI 42, local 10.0.0.3) and `vx43` (VNI 43), both
/// owning the inner destinations 198.51.100.3 and 198.51.100.200.
struct Lab {
    p: Pair,
    mac42: String,
    mac43: String,
    /// Where VNI 43 is reached from A: B's address and A's device.
    remote43: &'static str,
    dev43: &'static str,
}

impl Lab {
    /// `vx43` listens on 10.0.0.4 (B's second address on `vb`); A has
    /// 10.9.0.2 on lo, and `ip rule` sends what comes from it to table 100.
    fn new(tag: &str) -> Self {
        let p = Pair::new(tag);
        p.b.ip(&["addr", "add", "10.0.0.4/24", "dev", "vb"]);
        let mac42 = kernel_vxlan(&p.b, "vx42", 42, "10.0.0.3");
        let mac43 = kernel_vxlan(&p.b, "vx43", 43, "10.0.0.4");
        let source = format!("{TABLE_100_SOURCE}/32");
        p.a.ip(&["addr", "add", &source, "dev", "lo"]);
        let rule = ["rule", "add", "from", TABLE_100_SOURCE, "lookup", "100"];
        p.a.ip(&rule);
        Lab {
            p,
            mac42,
            mac43,
            remote43: "10.0.0.4",
            dev43: "va",
        }
    }

    /// A second veth pair, A's `va2` (10.0.1.2) in VRF `blue` (table 10)
    /// and B's `vb2` (10.0.1.3), with `vx43` listening on 10.0.1.3: VNI 43
    /// is reached through the VRF.
    fn with_vrf(tag: &str) -> Self {
        let p = Pair::new(tag);
        p.a.ip(&[
            "link", "add", "va2", "type", "veth", "peer", "name", "vb2", "netns", &p.b.name,
        ]);
        p.a.ip(&["link", "add", "blue", "type", "vrf", "table", "10"]);
        p.a.ip(&["link", "set", "blue", "up"]);
        p.a.ip(&["link", "set", "va2", "master", "blue"]);
        p.a.ip(&["addr", "add", "10.0.1.2/24", "dev", "va2"]);
        p.a.ip(&["link", "set", "va2", "up"]);
        p.b.ip(&["addr", "add", "10.0.1.3/24", "dev", "vb2"]);
        p.b.ip(&["link", "set", "vb2", "up"]);
        let mac42 = kernel_vxlan(&p.b, "vx42", 42, "10.0.0.3");
        let mac43 = kernel_vxlan(&p.b, "vx43", 43, "10.0.1.3");
        // Let va2 / vb2 come up (carrier) before the first send.
        std::thread::sleep(Duration::from_millis(200));
        Lab {
            p,
            mac42,
            mac43,
            remote43: "10.0.1.3",
            dev43: "va2",
        }
    }

    /// `lwt encap add PREFIX --dev DEV --type vxlan ...` to B's `vx42`
    /// (remote 10.0.0.3 through `va`) or `vx43` (`remote43` through
    /// `dev43`), in `table` if given.
    fn encap(&self, prefix: &str, vni: u32, table: Option<&str>) -> String {
        let (remote, dev, mac) = match vni {
            42 => ("10.0.0.3", "va", &self.mac42),
            43 => (self.remote43, self.dev43, &self.mac43),
            _ => panic!("B has no vxlan device for VNI {vni}"),
        };
        let vni = vni.to_string();
        let mut args = vec![
            "encap",
            "add",
            prefix,
            "--dev",
            dev,
            "--type",
            "vxlan",
            "--remote",
            remote,
            "--vni",
            &vni,
            "--inner-dst-mac",
            mac,
        ];
        if let Some(t) = table {
            args.extend(["--table", t]);
        }
        self.p.a.lwt_ok(&args)
    }

    /// UDP sockets in B on port 7000 of any address, one bound to each
    /// vxlan device: what arrives on one came through that tunnel.
    fn receivers(&self) -> Receivers {
        Receivers {
            vx42: bound_receiver(&self.p.b, "vx42"),
            vx43: bound_receiver(&self.p.b, "vx43"),
        }
    }
}

fn mac_of(ns: &Netns, dev: &str) -> String {
    let links = json(&ns.ip(&["-j", "link", "show", dev]));
    links[0]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("{dev} has a MAC: {links}"))
        .to_string()
}

fn kernel_vxlan(ns: &Netns, dev: &str, vni: u32, local: &str) -> String {
    let vni = vni.to_string();
    ns.ip(&[
        "link", "add", dev, "type", "vxlan", "id", &vni, "local", local, "dstport", "4789",
    ]);
    for addr in ["198.51.100.3/24", "198.51.100.200/24"] {
        ns.ip(&["addr", "add", addr, "dev", dev]);
    }
    ns.ip(&["link", "set", dev, "up"]);
    mac_of(ns, dev)
}

/// An unbound IPv4 UDP socket of the calling thread's namespace, tied to
/// `dev` (SO_BINDTODEVICE): it hears only what arrives on `dev`, and what
/// it sends is routed in `dev`'s VRF when `dev` is one.
fn socket_on_device(dev: &str) -> UdpSocket {
    let name = CString::new(dev).expect("device name");
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: fd was just returned by socket(2) and is owned here.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let name = name.as_bytes_with_nul();
    // SAFETY: a NUL-terminated device name of the length passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            name.as_ptr().cast(),
            name.len() as libc::socklen_t,
        )
    };
    let err = std::io::Error::last_os_error();
    assert_eq!(rc, 0, "SO_BINDTODEVICE {dev}: {err}");
    UdpSocket::from(fd)
}

/// A UDP socket in `ns` on 0.0.0.0:7000 that only hears packets arriving
/// on `dev`.
fn bound_receiver(ns: &Netns, dev: &str) -> UdpSocket {
    let dev = dev.to_string();
    ns.run(move || {
        let sock = socket_on_device(&dev);
        // SAFETY: sockaddr_in is plain data; all zeroes is 0.0.0.0:0.
        let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_port = PORT.to_be();
        // SAFETY: sin is a sockaddr_in of the size passed.
        let rc = unsafe {
            libc::bind(
                sock.as_raw_fd(),
                (&sin as *const libc::sockaddr_in).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
        sock
    })
}

/// Where a flow leaves A from, which decides the table its route is in.
#[derive(Clone, Copy, Debug)]
enum Sender {
    /// An unbound socket: the main table.
    Main,
    /// A socket bound to this source address (an `ip rule` matches it).
    Source(&'static str),
    /// A socket tied to this VRF device: the VRF's table.
    Vrf(&'static str),
}

struct Receivers {
    vx42: UdpSocket,
    vx43: UdpSocket,
}

/// Everything `sock` receives until nothing has arrived for `quiet`.
fn drain(sock: &UdpSocket, quiet: Duration) -> Vec<String> {
    sock.set_read_timeout(Some(quiet)).expect("timeout");
    let mut buf = [0u8; 2048];
    let mut got = Vec::new();
    while let Ok(n) = sock.recv(&mut buf) {
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    got
}

/// One flow: `n` datagrams from A, sent as `from` says, to `dst`:7000.
/// Asserts that exactly these arrive on B's `vx<expected>` and none on the
/// other device.
fn flow_arrives_only_on(
    lab: &Lab,
    rx: &Receivers,
    from: Sender,
    dst: &'static str,
    n: usize,
    expected: u32,
) {
    let tag = format!("{from:?}>{dst}");
    let (hit, miss) = match expected {
        42 => (&rx.vx42, &rx.vx43),
        43 => (&rx.vx43, &rx.vx42),
        _ => panic!("no receiver for VNI {expected}"),
    };
    let to: SocketAddr = format!("{dst}:{PORT}").parse().expect("socket address");
    let send = |range: std::ops::Range<usize>| {
        let tag = tag.clone();
        lab.p.a.run(move || {
            let s = match from {
                Sender::Main => UdpSocket::bind("0.0.0.0:0").expect("udp socket"),
                Sender::Source(src) => UdpSocket::bind((src, 0)).expect("udp socket"),
                Sender::Vrf(dev) => socket_on_device(dev),
            };
            for i in range {
                s.send_to(format!("{tag} #{i}").as_bytes(), to)
                    .expect("send accepted");
            }
        })
    };
    // The first goes alone: it waits for the outer neighbour to resolve.
    send(0..1);
    hit.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let mut buf = [0u8; 2048];
    let first = hit
        .recv(&mut buf)
        .map(|k| String::from_utf8_lossy(&buf[..k]).into_owned())
        .unwrap_or_else(|e| panic!("{tag}: nothing arrived through VNI {expected}: {e}"));
    send(1..n);
    let mut got = vec![first];
    got.extend(drain(hit, Duration::from_millis(500)));
    let want: Vec<String> = (0..n).map(|i| format!("{tag} #{i}")).collect();
    assert_eq!(
        got, want,
        "{tag}: exactly its datagrams, through VNI {expected}"
    );
    let stray = drain(miss, Duration::from_millis(200));
    assert!(
        stray.is_empty(),
        "{tag}: nothing through the other tunnel: {stray:?}"
    );
}

/// The `encap list -j` entry of `dst` in `table`.
fn tunnel(ns: &Netns, dst: &str, table: &str) -> Value {
    let list = json(&ns.lwt_ok(&["encap", "list", "-j"]));
    list.as_array()
        .and_then(|a| a.iter().find(|t| t["dst"] == dst && t["table"] == table))
        .cloned()
        .unwrap_or_else(|| panic!("{dst} table {table} not in encap list: {list}"))
}

fn assert_counted(ns: &Netns, dst: &str, table: &str, packets: u64) {
    let t = tunnel(ns, dst, table);
    assert_eq!(
        t["stats"]["packets"], packets,
        "{dst} table {table} counts only its own packets: {t}"
    );
    for err in ["push_failed", "no_tunnel", "malformed"] {
        assert_eq!(t["stats"][err], 0, "{err}: {t}");
    }
}

/// The xmit program id on `dst` in `table`, from `lwt list`.
fn xmit_prog(ns: &Netns, dst: &str, table: &str) -> (u64, String) {
    let list = json(&ns.lwt_ok(&["list", "--table", "all", "-j"]));
    list.as_array()
        .and_then(|a| a.iter().find(|r| r["dst"] == dst && r["table"] == table))
        .and_then(|r| {
            Some((
                r["xmit"]["id"].as_u64()?,
                r["xmit"]["name"].as_str()?.to_string(),
            ))
        })
        .unwrap_or_else(|| panic!("{dst} table {table} has an xmit program: {list}"))
}

#[test]
fn overlapping_prefixes_in_main_and_table_100_reach_their_own_tunnels() {
    require_root!();
    let lab = Lab::new("tov");
    let a = &lab.p.a;
    lab.encap("198.51.100.0/24", 42, None);
    lab.encap("198.51.100.0/25", 43, Some("100"));
    let rx = lab.receivers();

    // From the main table: the /24 of main, although table 100 holds a
    // longer prefix for the same destination.
    flow_arrives_only_on(&lab, &rx, Sender::Main, "198.51.100.3", 10, 42);
    // From 10.9.0.2, which `ip rule` sends to table 100: its /25.
    flow_arrives_only_on(
        &lab,
        &rx,
        Sender::Source(TABLE_100_SOURCE),
        "198.51.100.3",
        7,
        43,
    );
    // Outside the /25, table 100 has no route: the lookup falls through
    // to main, and main's route finds main's tunnel.
    flow_arrives_only_on(
        &lab,
        &rx,
        Sender::Source(TABLE_100_SOURCE),
        "198.51.100.200",
        5,
        42,
    );

    assert_counted(a, "198.51.100.0/24", "main", 15);
    assert_counted(a, "198.51.100.0/25", "100", 7);

    let (main_id, main_name) = xmit_prog(a, "198.51.100.0/24", "main");
    let (t100_id, t100_name) = xmit_prog(a, "198.51.100.0/25", "100");
    assert_ne!(main_id, t100_id, "each table runs its own program instance");
    assert_ne!(
        main_name, t100_name,
        "and each carries its own name on the route"
    );
    let text = a.lwt_ok(&["encap", "list"]);
    assert!(
        text.contains("198.51.100.0/24 table main dev va xmit vxlan remote 10.0.0.3")
            && text.contains("198.51.100.0/25 table 100 dev va xmit vxlan remote 10.0.0.4"),
        "encap list shows each tunnel's table: {text}"
    );
}

#[test]
fn the_same_prefix_in_two_tables_keeps_two_tunnels_until_one_is_deleted() {
    require_root!();
    let lab = Lab::new("tsm");
    let a = &lab.p.a;
    lab.encap("198.51.100.0/24", 42, None);
    let out = lab.encap("198.51.100.0/24", 43, Some("100"));
    assert!(out.contains("198.51.100.0/24 table 100"), "{out}");
    // A second tunnel route of the same shape in table 100 shares table
    // 100's program; main's stays apart.
    lab.encap("203.0.113.0/24", 43, Some("100"));
    let (main_id, _) = xmit_prog(a, "198.51.100.0/24", "main");
    let (t100_id, _) = xmit_prog(a, "198.51.100.0/24", "100");
    let (sibling_id, _) = xmit_prog(a, "203.0.113.0/24", "100");
    assert_ne!(main_id, t100_id, "one program instance per table");
    assert_eq!(
        t100_id, sibling_id,
        "routes of one table share its instance"
    );

    let rx = lab.receivers();
    flow_arrives_only_on(&lab, &rx, Sender::Main, "198.51.100.3", 6, 42);
    flow_arrives_only_on(
        &lab,
        &rx,
        Sender::Source(TABLE_100_SOURCE),
        "198.51.100.3",
        4,
        43,
    );
    assert_counted(a, "198.51.100.0/24", "main", 6);
    assert_counted(a, "198.51.100.0/24", "100", 4);

    // Loop checks stay per table: a remote inside table 100's tunnel
    // prefix is refused in table 100 but not in main, where nothing
    // encapsulates 203.0.113.0/24.
    let err = a.lwt_err(&[
        "encap",
        "add",
        "192.0.2.0/24",
        "--dev",
        "va",
        "--type",
        "ipip",
        "--remote",
        "203.0.113.9",
        "--table",
        "100",
    ]);
    assert!(err.contains("loop"), "{err}");
    a.lwt_ok(&[
        "encap",
        "add",
        "192.0.2.0/24",
        "--dev",
        "va",
        "--type",
        "ipip",
        "--remote",
        "203.0.113.9",
    ]);

    // Deleting table 100's tunnel leaves main's entry and route alone;
    // table 100's flow now falls through to main's tunnel.
    a.lwt_ok(&["encap", "del", "198.51.100.0/24", "--table", "100"]);
    assert_eq!(
        a.ip(&["route", "show", "table", "100", "198.51.100.0/24"])
            .trim(),
        "",
        "table 100's route is gone"
    );
    flow_arrives_only_on(&lab, &rx, Sender::Main, "198.51.100.3", 3, 42);
    flow_arrives_only_on(
        &lab,
        &rx,
        Sender::Source(TABLE_100_SOURCE),
        "198.51.100.3",
        2,
        42,
    );
    assert_counted(a, "198.51.100.0/24", "main", 11);
    let list = json(&a.lwt_ok(&["encap", "list", "-j"]));
    let mut left: Vec<String> = list
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| {
                    format!(
                        "{} {}",
                        t["dst"].as_str().unwrap_or("?"),
                        t["table"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    left.sort();
    assert_eq!(
        left,
        [
            "192.0.2.0/24 main",
            "198.51.100.0/24 main",
            "203.0.113.0/24 100"
        ],
        "{list}"
    );
}

#[test]
fn the_same_prefix_in_main_and_a_vrf_reaches_each_tunnel() {
    require_root!();
    // Creating a VRF device would make the kernel load the vrf module for
    // the whole host: run only where it is already there.
    if !std::path::Path::new("/sys/module/vrf").exists() {
        eprintln!(
            "SKIPPED {}: the vrf module is not loaded (not loaded by tests: it is host-wide)",
            module_path!()
        );
        return;
    }
    let lab = Lab::with_vrf("tvrf");
    let a = &lab.p.a;
    lab.encap("198.51.100.0/24", 42, None);
    lab.encap("198.51.100.0/24", 43, Some("10"));
    let rx = lab.receivers();
    // The VRF's tunnel is found in table 10, and its outer packet is
    // routed in the VRF too (the kernel's reroute looks up with the
    // route device's VRF as output interface): out through va2.
    flow_arrives_only_on(&lab, &rx, Sender::Main, "198.51.100.3", 5, 42);
    flow_arrives_only_on(&lab, &rx, Sender::Vrf("blue"), "198.51.100.3", 4, 43);
    assert_counted(a, "198.51.100.0/24", "main", 5);
    assert_counted(a, "198.51.100.0/24", "10", 4);
}
