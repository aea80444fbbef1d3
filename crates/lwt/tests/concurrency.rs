//! 32 `lwt` processes at once in one namespace: tunnels added, changed and
//! deleted, count hooks attached and detached, rules added, deleted and
//! replaced on one policy attached to a route. Each prefix (and each rule
//! port) has one process running a fixed sequence on it; the processes
//! interleave at the namespace lock. Afterwards records, pins and routes
//! agree, the end state is the one a serial run gives, rule ids are
//! unique and the policy is one serial order of its changes, and every
//! tunnel counts exactly its own packets.
mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Read,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use common::{json, send_udp, send_udp_lossy, Netns, Pair};
use serde_json::Value;

const ENCAPS: usize = 12;
const ATTACHES: usize = 10;
const RULERS: usize = 8;
const REPLACERS: usize = 2;

/// What one process does.
#[derive(Clone, Copy, Debug)]
enum Role {
    /// Tunnel `i` on 192.168.(100+i).0/24.
    Encap(usize),
    /// Count hooks on 10.20.i.0/24.
    Attach(usize),
    /// Rules for UDP port 1000+j of policy `pol`.
    Rules(usize),
    /// `filter replace pol` with file `k` (ports 2000+10k .. 2002+10k).
    Replace(usize),
}

fn roles() -> Vec<Role> {
    let mut v: Vec<Role> = (0..ENCAPS).map(Role::Encap).collect();
    v.extend((0..ATTACHES).map(Role::Attach));
    v.extend((0..RULERS).map(Role::Rules));
    v.extend((0..REPLACERS).map(Role::Replace));
    // Interleave the kinds in the launch order too.
    v.sort_by_key(|r| match r {
        Role::Encap(i) | Role::Attach(i) | Role::Rules(i) | Role::Replace(i) => *i,
    });
    v
}

/// The tunnel type of tunnel `i` first, and the one it may change to.
fn kinds(i: usize) -> [&'static str; 2] {
    if i % 2 == 0 {
        ["gre", "vxlan"]
    } else {
        ["vxlan", "gre"]
    }
}

fn encap_add(i: usize, kind: &str, remote: &str) -> Vec<String> {
    let mut v: Vec<String> = [
        "encap",
        "add",
        &format!("192.168.{}.0/24", 100 + i),
        "--dev",
        "va",
        "--type",
        kind,
        "--remote",
        remote,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if kind == "vxlan" {
        v.extend(
            [
                "--vni",
                &(100 + i).to_string(),
                "--inner-dst-mac",
                "02:00:00:00:00:01",
            ]
            .map(String::from),
        );
    }
    v
}

fn args(line: &str) -> Vec<String> {
    line.split_whitespace().map(String::from).collect()
}

fn replace_file(k: usize) -> std::path::PathBuf {
    let file = common::scratch(&format!("rules{k}"));
    let text: String = replace_ports(k)
        .iter()
        .map(|p| format!("dst 10.30.0.0/24 proto udp dport {p} drop\n"))
        .collect();
    std::fs::write(&file, text).expect("rules file");
    file
}

fn replace_ports(k: usize) -> [u16; 3] {
    let base = 2000 + 10 * k as u16;
    [base, base + 1, base + 2]
}

/// One command a process ran, and how it ended.
struct Ran {
    args: Vec<String>,
    out: Output,
}

impl Ran {
    fn ok(&self) -> bool {
        self.out.status.success()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }

    fn json(&self) -> Value {
        json(&String::from_utf8_lossy(&self.out.stdout))
    }
}

/// Runs `lwt -n NS -j ARGS`, killing it (by its pid) at `deadline`.
fn run_bounded(ns: &str, args: Vec<String>, deadline: Instant) -> Ran {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lwt"))
        .args(["-n", ns, "-j"])
        .args(&args)
        .env("LWT_LOCK_TIMEOUT", "600")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lwt starts");
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("`lwt {}` still running at the deadline", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    if let Some(mut o) = child.stdout.take() {
        o.read_to_end(&mut stdout).expect("stdout");
    }
    if let Some(mut e) = child.stderr.take() {
        e.read_to_end(&mut stderr).expect("stderr");
    }
    Ran {
        args,
        out: Output {
            status,
            stdout,
            stderr,
        },
    }
}

/// Plays `role`'s fixed sequence in namespace `ns`.
fn play(ns: &str, role: Role, deadline: Instant) -> Vec<Ran> {
    let mut done = Vec::new();
    let mut run = |a: Vec<String>| -> Value {
        let r = run_bounded(ns, a, deadline);
        let v = if r.ok() { r.json() } else { Value::Null };
        done.push(r);
        v
    };
    match role {
        Role::Encap(i) => {
            let [first, other] = kinds(i);
            let prefix = format!("192.168.{}.0/24", 100 + i);
            run(encap_add(i, first, "10.0.0.3"));
            match i % 4 {
                0 => {
                    run(args(&format!("encap del {prefix}")));
                }
                1 => {
                    run(args(&format!("encap del {prefix}")));
                    run(encap_add(i, first, "10.0.0.3"));
                }
                2 => {
                    run(encap_add(i, other, "10.0.0.3"));
                }
                _ => {
                    run(encap_add(i, first, "10.0.0.4"));
                }
            }
        }
        Role::Attach(i) => {
            let prefix = format!("10.20.{i}.0/24");
            let attach = |hook: &str| {
                args(&format!(
                    "attach {prefix} --dev va --hook {hook} --builtin count"
                ))
            };
            run(attach("out"));
            match i % 3 {
                0 => {
                    run(args(&format!("detach {prefix}")));
                }
                1 => {
                    run(attach("xmit"));
                    run(args(&format!("detach {prefix} --hook out")));
                }
                _ => {
                    run(args(&format!("detach {prefix}")));
                    run(attach("out"));
                }
            }
        }
        Role::Rules(j) => {
            let add = args(&format!(
                "filter rule add pol dst 10.30.0.0/24 proto udp dport {} drop",
                1000 + j
            ));
            let id = |v: &Value| v["id"].as_u64().unwrap_or(0);
            let a = id(&run(add.clone()));
            run(args(&format!("filter rule del pol {a}")));
            let b = id(&run(add));
            if j % 2 == 1 {
                run(args(&format!("filter rule del pol {b}")));
            }
        }
        Role::Replace(k) => {
            run(vec![
                "filter".into(),
                "replace".into(),
                "pol".into(),
                "--file".into(),
                replace_file(k).display().to_string(),
            ]);
        }
    }
    done
}

fn setup(ns: &Netns) {
    ns.lwt_ok(&["filter", "create", "pol"]);
    ns.lwt_ok(&[
        "filter",
        "attach",
        "pol",
        "10.30.0.0/24",
        "--dev",
        "va",
        "--hook",
        "out",
    ]);
}

/// Program ids (`...#1234`) differ from run to run.
fn normalize(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '#' && chars.peek().is_some_and(char::is_ascii_digit) {
            while chars.peek().is_some_and(char::is_ascii_digit) {
                chars.next();
            }
            out.push('N');
        }
    }
    out
}

fn strip(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(k, _)| k != "id" && k != "stats")
                .map(|(k, v)| (k, strip(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(strip).collect()),
        other => other,
    }
}

/// Routes and the route and tunnel listings, without ids and counters.
fn routes_and_tunnels(ns: &Netns) -> String {
    let mut s = normalize(&ns.routes());
    for args in [&["-j", "list"][..], &["-j", "encap", "list"]] {
        s.push_str(&normalize(&strip(json(&ns.lwt_ok(args))).to_string()));
        s.push('\n');
    }
    s
}

#[test]
fn thirty_two_processes_at_once_end_as_a_serial_run_would() {
    require_root!();
    let p = Pair::new("con");
    let pristine = p.a.routes();
    setup(&p.a);
    let deadline = Instant::now() + Duration::from_secs(300);
    let name = p.a.name.clone();
    let threads: Vec<(Role, std::thread::JoinHandle<Vec<Ran>>)> = roles()
        .into_iter()
        .map(|role| {
            let ns = name.clone();
            (role, std::thread::spawn(move || play(&ns, role, deadline)))
        })
        .collect();
    assert_eq!(threads.len(), 32);
    let results: Vec<(Role, Vec<Ran>)> = threads
        .into_iter()
        .map(|(role, t)| (role, t.join().expect("process thread")))
        .collect();
    eprintln!(
        "32 processes done {:?} before the deadline",
        deadline.saturating_duration_since(Instant::now())
    );

    // Every command succeeded, but a rule delete that a replace beat to it.
    for (role, ran) in &results {
        for r in ran {
            let lost_to_replace = matches!(role, Role::Rules(_))
                && r.args[1] == "rule"
                && r.args[2] == "del"
                && r.stderr().contains("has no rule");
            assert!(
                r.ok() || lost_to_replace,
                "{role:?}: `lwt {}`: {}",
                r.args.join(" "),
                r.stderr()
            );
        }
    }
    assert_eq!(p.a.findings(), vec![], "records, pins and routes agree");

    // Routes and tunnels: each prefix as its last command left it.
    let listed = json(&p.a.lwt_ok(&["list", "-j"]));
    let hooks_of = |dst: &str| -> Option<BTreeSet<String>> {
        listed
            .as_array()?
            .iter()
            .find(|r| r["dst"] == dst)
            .map(|r| {
                ["in", "out", "xmit"]
                    .iter()
                    .filter(|h| r.get(**h).is_some())
                    .map(|h| h.to_string())
                    .collect()
            })
    };
    for i in 0..ATTACHES {
        let want: Option<BTreeSet<String>> = match i % 3 {
            0 => None,
            1 => Some(["xmit".to_string()].into()),
            _ => Some(["out".to_string()].into()),
        };
        assert_eq!(hooks_of(&format!("10.20.{i}.0/24")), want, "attach {i}");
    }
    let tunnels = json(&p.a.lwt_ok(&["encap", "list", "-j"]));
    let tunnel = |i: usize| {
        tunnels
            .as_array()
            .and_then(|t| {
                t.iter()
                    .find(|t| t["dst"] == format!("192.168.{}.0/24", 100 + i))
            })
            .cloned()
    };
    for i in 0..ENCAPS {
        let [first, other] = kinds(i);
        let want = match i % 4 {
            0 => None,
            1 => Some((first, "10.0.0.3")),
            2 => Some((other, "10.0.0.3")),
            _ => Some((first, "10.0.0.4")),
        };
        let got = tunnel(i);
        assert_eq!(
            got.as_ref().map(|t| (
                t["type"].as_str().unwrap_or(""),
                t["remote"].as_str().unwrap_or("")
            )),
            want,
            "tunnel {i}: {got:?}"
        );
        assert_eq!(
            hooks_of(&format!("192.168.{}.0/24", 100 + i)),
            want.map(|_| ["xmit".to_string()].into()),
            "tunnel {i}'s route"
        );
    }
    assert_eq!(
        tunnels.as_array().map(Vec::len),
        Some((0..ENCAPS).filter(|i| i % 4 != 0).count())
    );

    // The same sequences one process after another, in a namespace of
    // their own, give the same routes and listings.
    let serial = Pair::new("cons");
    setup(&serial.a);
    for role in roles() {
        if matches!(role, Role::Encap(_) | Role::Attach(_)) {
            for r in play(&serial.a.name, role, deadline) {
                assert!(r.ok(), "serial `lwt {}`: {}", r.args.join(" "), r.stderr());
            }
        }
    }
    assert_eq!(routes_and_tunnels(&p.a), routes_and_tunnels(&serial.a));
    drop(serial);

    // The policy: one serial order of its changes.
    policy_is_a_serial_outcome(&p.a, &results);

    // Each tunnel counts its own packets, exactly.
    for i in (0..ENCAPS).filter(|i| i % 4 != 0) {
        for n in 0..3 + i {
            send_udp(
                &p.a,
                &format!("192.168.{}.7:{}", 100 + i, 9000 + n),
                1,
                64 + n,
            );
        }
    }
    let tunnels = json(&p.a.lwt_ok(&["encap", "list", "-j"]));
    for t in tunnels.as_array().expect("tunnels") {
        let dst = t["dst"].as_str().expect("dst");
        let octet: usize = dst
            .split('.')
            .nth(2)
            .and_then(|s| s.parse().ok())
            .expect("prefix");
        let i = octet - 100;
        assert_eq!(t["stats"]["packets"], (3 + i) as u64, "{t}");
        assert_eq!(t["stats"]["no_tunnel"], 0, "{t}");
    }

    // Taking it all off gives the routes back as they were.
    p.a.lwt_ok(&["reset"]);
    assert_eq!(p.a.routes(), pristine);
    assert_eq!(p.a.findings(), vec![]);
}

/// The policy's rules are those of one serial order of the changes made:
/// the last replace's whole file (consecutive ids `f..f+3`), plus the rules
/// added after it that their process did not delete; a delete that found
/// its rule gone names a rule older than that replace. Every id is unique,
/// and each rule judges and counts the packets to its port.
fn policy_is_a_serial_outcome(ns: &Netns, results: &[(Role, Vec<Ran>)]) {
    let show = json(&ns.lwt_ok(&["filter", "show", "pol", "-j"]));
    let rules: BTreeMap<u64, u16> = show["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| {
            (
                r["id"].as_u64().expect("id"),
                r["dport"]["lo"].as_u64().expect("port") as u16,
            )
        })
        .collect();
    assert_eq!(rules.len(), show["rules"].as_array().map_or(0, Vec::len));
    let last: Vec<usize> = (0..REPLACERS)
        .filter(|k| {
            replace_ports(*k)
                .iter()
                .any(|p| rules.values().any(|v| v == p))
        })
        .collect();
    assert_eq!(last.len(), 1, "one replace's rules survive: {show}");
    let ids_of = |port: u16| rules.iter().find(|(_, p)| **p == port).map(|(id, _)| *id);
    let replaced: Vec<u64> = replace_ports(last[0])
        .iter()
        .map(|p| ids_of(*p).unwrap_or_else(|| panic!("port {p} of the last replace: {show}")))
        .collect();
    let f = replaced[0];
    assert_eq!(
        replaced,
        [f, f + 1, f + 2],
        "a replace numbers its file in order"
    );

    let mut added = Vec::new();
    let mut deleted = BTreeSet::new();
    for (role, ran) in results {
        let Role::Rules(j) = role else { continue };
        for r in ran {
            if r.args[2] == "add" {
                added.push((1000 + *j as u16, r.json()["id"].as_u64().expect("id")));
            } else {
                let id: u64 = r.args[4].parse().expect("id");
                if r.ok() {
                    deleted.insert(id);
                } else {
                    assert!(id < f, "rule {id} vanished but no replace came after it");
                }
            }
        }
    }
    let ids: BTreeSet<u64> = added.iter().map(|(_, id)| *id).collect();
    assert_eq!(ids.len(), added.len(), "rule ids are unique: {added:?}");
    assert!(
        ids.iter().all(|id| !(f..f + 3).contains(id)),
        "an add took a replace's id"
    );
    let mut want: BTreeMap<u64, u16> = replace_ports(last[0])
        .iter()
        .zip(f..)
        .map(|(p, id)| (id, *p))
        .collect();
    for (port, id) in &added {
        if *id > f + 2 && !deleted.contains(id) {
            want.insert(*id, *port);
        }
    }
    assert_eq!(rules, want, "{show}");
    eprintln!(
        "policy: {} rules added, {} deleted, replace {} last (ids {f}..{}), {} rules left",
        added.len(),
        deleted.len(),
        last[0],
        f + 2,
        rules.len()
    );

    // The live rules are the listed ones: one datagram per port.
    let ports: Vec<u16> = (1000..1000 + RULERS as u16)
        .chain((0..REPLACERS).flat_map(replace_ports))
        .collect();
    for port in &ports {
        let ruled = rules.values().any(|p| p == port);
        let accepted = send_udp_lossy(ns, &format!("10.30.0.5:{port}"), 1, 32);
        assert_eq!(accepted, usize::from(!ruled), "port {port}");
    }
    let show = json(&ns.lwt_ok(&["filter", "show", "pol", "-j"]));
    for r in show["rules"].as_array().expect("rules") {
        assert_eq!(r["packets"], 1, "{r}");
    }
    let unruled = ports
        .iter()
        .filter(|p| !rules.values().any(|v| v == *p))
        .count();
    assert_eq!(show["unmatched"]["packets"], unruled as u64, "{show}");
}
