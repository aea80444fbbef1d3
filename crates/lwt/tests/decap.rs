//! Both ends of an overlay with lwtkit alone: `lwt encap` in A, `lwt decap`
//! (tcx ingress) in B, for every type the kernel here cannot decapsulate
//! itself, carrying TCP uploads that must arrive intact.
mod common;

use std::{
    collections::hash_map::DefaultHasher,
    hash::Hasher,
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    time::Duration,
};

use common::{json, Pair};

const UPLOAD: usize = 4 << 20;

fn payload() -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..UPLOAD)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn digest(data: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    h.write(data);
    h.finish()
}

/// Uploads `data` from A to `addr` in B; returns B's digest of it.
fn upload(p: &Pair, addr: SocketAddr, data: Vec<u8>) -> Option<u64> {
    let listener = p.b.run(move || TcpListener::bind(addr).expect("bind in B"));
    let server = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().ok()?;
        c.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let mut got = Vec::new();
        c.read_to_end(&mut got).ok()?;
        Some(digest(&got))
    });
    let sent = p.a.run(move || {
        let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).ok()?;
        c.write_all(&data).ok()?;
        c.shutdown(std::net::Shutdown::Write).ok()
    });
    sent?;
    server.join().ok().flatten()
}

#[test]
fn tcp_arrives_intact_through_lwtkit_on_both_ends() {
    require_root!();
    let p = Pair::new("dcp");
    p.b.ip(&["addr", "add", "192.168.50.3/32", "dev", "lo"]);
    p.b.ip(&["addr", "add", "2001:db8:50::3/128", "dev", "lo", "nodad"]);
    p.b.lwt_ok(&[
        "decap",
        "add",
        "--dev",
        "vb",
        "--type",
        "ipip,sit,ip6ip6,ip4in6,gre,fou,gue",
        "--fou-port",
        "5555",
        "--gue-port",
        "6080",
    ]);
    // Every type carries a bulk upload with GSO on, ipip and ip4in6 too:
    // bpf_lwt_push_encap refuses GSO packets under protocol 4, so the
    // program pushes 0 there and writes 4 back after the push
    // (docs/kernel.md, GSO through bpf_lwt_push_encap).
    let cases: &[(&str, &str, &[&str], usize)] = &[
        ("192.168.50.3", "10.0.0.3", &["--type", "ipip"], UPLOAD),
        ("2001:db8:50::3", "10.0.0.3", &["--type", "sit"], UPLOAD),
        ("2001:db8:50::3", "fd00::3", &["--type", "ip6ip6"], UPLOAD),
        ("192.168.50.3", "fd00::3", &["--type", "ip4in6"], UPLOAD),
        ("192.168.50.3", "10.0.0.3", &["--type", "gre"], UPLOAD),
        ("2001:db8:50::3", "fd00::3", &["--type", "gre"], UPLOAD),
        (
            "192.168.50.3",
            "10.0.0.3",
            &["--type", "fou", "--port", "5555"],
            UPLOAD,
        ),
        (
            "2001:db8:50::3",
            "10.0.0.3",
            &["--type", "gue", "--port", "6080"],
            UPLOAD,
        ),
    ];
    for (i, (inner, remote, kind, size)) in cases.iter().enumerate() {
        let prefix = if inner.contains(':') {
            format!("{inner}/128")
        } else {
            format!("{inner}/32")
        };
        let mut args = vec![
            "encap",
            "add",
            prefix.as_str(),
            "--dev",
            "va",
            "--remote",
            remote,
        ];
        args.extend_from_slice(kind);
        p.a.lwt_ok(&args);
        let addr: SocketAddr = if inner.contains(':') {
            format!("[{inner}]:{}", 7100 + i)
        } else {
            format!("{inner}:{}", 7100 + i)
        }
        .parse()
        .expect("addr");
        let data: Vec<u8> = payload()[..*size].to_vec();
        let want = digest(&data);
        assert_eq!(
            upload(&p, addr, data),
            Some(want),
            "{kind:?} over {remote}: {size} bytes arrive intact"
        );
        let tunnels = json(&p.a.lwt_ok(&["encap", "list", "-j"]));
        assert!(
            tunnels[0]["stats"]["packets"]
                .as_u64()
                .is_some_and(|n| n > 0),
            "{tunnels}"
        );
        assert_eq!(tunnels[0]["stats"]["push_failed"], 0, "{kind:?}: {tunnels}");
        p.a.lwt_ok(&["encap", "del", &prefix]);
    }
    let decaps = json(&p.b.lwt_ok(&["decap", "list", "-j"]));
    assert!(
        decaps[0]["packets"].as_u64().is_some_and(|n| n > 100),
        "{decaps}"
    );
    assert_eq!(decaps[0]["refused"], 0, "{decaps}");
    p.b.lwt_ok(&["decap", "del", "--dev", "vb"]);
    let err = p.b.lwt_err(&["decap", "del", "--dev", "vb"]);
    assert!(err.contains("does not decapsulate"), "{err}");
    let err =
        p.b.lwt_err(&["decap", "add", "--dev", "vb", "--type", "fou"]);
    assert!(err.contains("--fou-port"), "{err}");
}

#[test]
fn one_program_serves_every_tunnel_of_a_kind() {
    require_root!();
    let p = Pair::new("shr");
    for a in ["192.168.51.3/32", "192.168.51.4/32"] {
        p.b.ip(&["addr", "add", a, "dev", "lo"]);
    }
    p.b.lwt_ok(&["decap", "add", "--dev", "vb", "--type", "gre"]);
    for dst in ["192.168.51.3/32", "192.168.51.4/32"] {
        p.a.lwt_ok(&[
            "encap", "add", dst, "--dev", "va", "--remote", "10.0.0.3", "--type", "gre",
        ]);
    }
    let list = json(&p.a.lwt_ok(&["list", "-j"]));
    let ids: Vec<u64> = list
        .as_array()
        .expect("routes")
        .iter()
        .filter_map(|r| r["xmit"]["id"].as_u64())
        .collect();
    assert_eq!(ids.len(), 2, "{list}");
    assert_eq!(ids[0], ids[1], "both routes run one program: {list}");
    p.a.lwt_ok(&["encap", "del", "192.168.51.3/32"]);
    let data = payload()[..1000].to_vec();
    let want = digest(&data);
    assert_eq!(
        upload(&p, "192.168.51.4:7200".parse().expect("addr"), data),
        Some(want),
        "the other tunnel still works"
    );
}
