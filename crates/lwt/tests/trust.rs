//! lwtkit on a host that changes under it: routes removed or rewritten by
//! others, devices deleted, commands killed at every step, other users,
//! `ip netns exec`. Each test builds its own namespaces.
mod common;

use std::{
    os::unix::{
        fs::PermissionsExt,
        process::{CommandExt, ExitStatusExt},
    },
    process::{Command, Output},
};

use common::{json, lwt, Netns, Pair};

/// `lwt -n NS ARGS` with extra environment variables.
fn lwt_env(ns: &Netns, env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lwt"))
        .arg("-n")
        .arg(&ns.name)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("lwt runs")
}

/// Asserts `lwt check` finds nothing to complain about.
fn agrees(ns: &Netns) {
    let out = ns.lwt(&["check", "-j"]);
    assert!(
        out.status.success(),
        "state and kernel disagree: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn state_dir(ns: &Netns) -> std::path::PathBuf {
    let cookie = ns.run(|| {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("socket");
        let mut c: u64 = 0;
        let mut len = 8u32;
        // SAFETY: getsockopt SO_NETNS_COOKIE into a u64.
        let rc = unsafe {
            libc::getsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&s),
                libc::SOL_SOCKET,
                71,
                (&mut c as *mut u64).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0);
        c
    });
    format!("/run/lwtkit/ns-{cookie}").into()
}

#[test]
fn detach_does_not_resurrect_a_local_route_whose_address_is_gone() {
    require_root!();
    let p = Pair::new("res");
    p.a.ip(&["addr", "add", "10.0.0.20/24", "dev", "va"]);
    p.a.count_on("10.0.0.20/32", "va", "in", &["--local"]);
    p.a.ip(&["addr", "del", "10.0.0.20/24", "dev", "va"]);
    let out = json(&p.a.lwt_ok(&["detach", "10.0.0.20/32", "--local", "-j"]));
    assert_eq!(out["route_now"], "gone", "{out}");
    let local = p.a.ip(&["route", "show", "table", "local"]);
    assert!(!local.contains("10.0.0.20"), "route came back: {local}");
    agrees(&p.a);
    assert!(p
        .a
        .lwt_err(&["detach", "10.0.0.20/32", "--local"])
        .contains("not managed"));
}

#[test]
fn detach_leaves_a_route_the_user_replaced() {
    require_root!();
    let p = Pair::new("rpl");
    p.a.count_on("10.0.0.9/32", "va", "out", &[]);
    p.a.ip(&[
        "route",
        "replace",
        "10.0.0.9/32",
        "dev",
        "va",
        "proto",
        "static",
    ]);
    let before = p.a.routes();
    let err = p.a.lwt_err(&["detach", "10.0.0.9/32"]);
    assert!(err.contains("changed outside lwtkit"), "{err}");
    assert_eq!(p.a.routes(), before, "the user's route is untouched");
    // lwtkit forgot it: nothing managed, state agrees.
    agrees(&p.a);
    let listed = json(&p.a.lwt_ok(&["list", "-j"]));
    assert_eq!(listed, serde_json::json!([]));
    assert!(p
        .a
        .lwt_err(&["detach", "10.0.0.9/32"])
        .contains("not managed"));
}

#[test]
fn force_restores_a_route_the_user_replaced() {
    require_root!();
    let p = Pair::new("frc");
    let before = p.a.routes();
    p.a.count_on("10.0.0.9/32", "va", "out", &[]);
    p.a.ip(&[
        "route",
        "replace",
        "10.0.0.9/32",
        "dev",
        "va",
        "proto",
        "static",
    ]);
    p.a.lwt_ok(&["detach", "10.0.0.9/32", "--force"]);
    assert_eq!(
        p.a.routes(),
        before,
        "lwtkit's created route deleted on --force"
    );
}

#[test]
fn a_deleted_device_does_not_wedge_detach_or_reset() {
    require_root!();
    let p = Pair::new("dev");
    p.a.ip(&["link", "add", "vx", "type", "veth", "peer", "name", "vy"]);
    p.a.ip(&["link", "set", "vx", "up"]);
    p.a.ip(&["link", "set", "vy", "up"]);
    p.a.ip(&["addr", "add", "10.9.0.1/24", "dev", "vx"]);
    p.a.ip(&[
        "route",
        "add",
        "10.9.1.0/24",
        "via",
        "10.9.0.2",
        "dev",
        "vx",
    ]);
    for prefix in ["10.9.1.0/24", "10.9.2.0/24"] {
        p.a.count_on(prefix, "vx", "out", &[]);
    }
    p.a.count_on("10.9.0.1/32", "vx", "in", &["--local"]);
    p.a.ip(&["link", "del", "vx"]);
    // Re-created with another ifindex: lwtkit must not restore onto it.
    p.a.ip(&["link", "add", "vx", "type", "veth", "peer", "name", "vy"]);
    let out = json(&p.a.lwt_ok(&["detach", "10.9.1.0/24", "-j"]));
    assert_eq!(out["route_now"], "gone", "{out}");
    let done = json(&p.a.lwt_ok(&["reset", "-j"]));
    assert_eq!(done["routes"], 2, "{done}");
    let routes = p.a.routes();
    assert!(!routes.contains("10.9."), "nothing brought back: {routes}");
    agrees(&p.a);
}

#[test]
fn features_do_not_overwrite_each_others_hooks() {
    require_root!();
    let p = Pair::new("own");
    let before = p.a.routes();
    p.a.lwt_ok(&[
        "encap",
        "add",
        "192.168.100.7/32",
        "--dev",
        "va",
        "--type",
        "gre",
        "--remote",
        "10.0.0.3",
    ]);
    let tunnel_mtu = p.a.ip(&["route", "show", "192.168.100.7/32"]);
    // attach on the tunnel's hook is refused, naming the owner and its verb.
    let err = p.a.lwt_err(&[
        "attach",
        "192.168.100.7/32",
        "--dev",
        "va",
        "--hook",
        "xmit",
        "--builtin",
        "count",
    ]);
    assert!(err.contains("lwt encap del"), "{err}");
    // Another hook of the same route is fine, and owned by attach.
    p.a.count_on("192.168.100.7/32", "va", "out", &[]);
    // A plain detach takes only attach's hook: the tunnel stays.
    let d = json(&p.a.lwt_ok(&["detach", "192.168.100.7/32", "-j"]));
    assert_eq!(d["route_now"], "kept", "{d}");
    assert_eq!(p.a.ip(&["route", "show", "192.168.100.7/32"]), tunnel_mtu);
    let tunnels = json(&p.a.lwt_ok(&["encap", "list", "-j"]));
    assert_eq!(tunnels.as_array().map(Vec::len), Some(1), "{tunnels}");
    // detach of the tunnel's hook by `lwt detach` is refused.
    let err =
        p.a.lwt_err(&["detach", "192.168.100.7/32", "--hook", "xmit"]);
    assert!(err.contains("lwt encap del"), "{err}");
    // encap del with a count hook beside it: only the tunnel goes, MTU back.
    p.a.count_on("192.168.100.7/32", "va", "out", &[]);
    p.a.lwt_ok(&["encap", "del", "192.168.100.7/32"]);
    let route = p.a.ip(&["route", "show", "192.168.100.7/32"]);
    assert!(route.contains("lwtkit-count"), "count hook kept: {route}");
    assert!(
        !route.contains("mtu"),
        "the tunnel's MTU went with it: {route}"
    );
    p.a.lwt_ok(&["detach", "192.168.100.7/32"]);
    assert_eq!(p.a.routes(), before);
    agrees(&p.a);
}

#[test]
fn state_is_private_to_root() {
    require_root!();
    let p = Pair::new("prv");
    p.a.count_on("10.0.0.9/32", "va", "out", &[]);
    let dir = state_dir(&p.a);
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
    };
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(std::path::Path::new("/run/lwtkit")), 0o700);
    assert_eq!(mode(&dir.join("lock")), 0o600);
    for e in std::fs::read_dir(dir.join("routes"))
        .expect("records")
        .flatten()
    {
        assert_eq!(mode(&e.path()), 0o600, "{}", e.path().display());
    }
    // `nobody` cannot even open the lock file to hold it.
    let lock = dir.join("lock");
    let held = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(["flock", "-s", "-n"])
        .arg(&lock)
        .arg("true")
        .output()
        .expect("setpriv runs");
    assert!(!held.status.success(), "nobody opened the lock");
}

#[test]
fn a_lock_wait_is_bounded_and_names_the_holder() {
    require_root!();
    let p = Pair::new("lck");
    p.a.count_on("10.0.0.9/32", "va", "out", &[]);
    let lock = state_dir(&p.a).join("lock");
    // Its own process group: the lock is held by `sleep` too, so both go.
    let mut holder = Command::new("flock")
        .arg(&lock)
        .args(["sleep", "30"])
        .process_group(0)
        .spawn()
        .expect("flock runs");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let start = std::time::Instant::now();
    let out = lwt_env(
        &p.a,
        &[("LWT_LOCK_TIMEOUT", "1")],
        &["detach", "10.0.0.9/32"],
    );
    let waited = start.elapsed();
    // SAFETY: kill(2) of the process group this test started.
    unsafe {
        libc::kill(-(holder.id() as i32), libc::SIGKILL);
    }
    let _ = holder.wait();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("pid {}", holder.id())) && err.contains("flock"),
        "{err}"
    );
    assert!(waited.as_secs() < 10, "waited {waited:?}");
    // Readers take no lock.
    p.a.lwt_ok(&["list"]);
    p.a.lwt_ok(&["detach", "10.0.0.9/32"]);
}

#[test]
fn ip_netns_exec_is_refused_with_the_right_command() {
    require_root!();
    let ns = Netns::new("nse");
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name, env!("CARGO_BIN_EXE_lwt"), "list"])
        .output()
        .expect("ip netns exec runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(&format!("lwt -n {}", ns.name)), "{err}");
}

#[test]
fn dead_namespaces_are_collected_by_cookie_not_inode() {
    require_root!();
    let ns = Netns::new("gc");
    // A dead namespace's leftovers whose recorded inode is a live one's
    // (the kernel reuses inodes): its cookie is not alive, so they go.
    let live_inode = std::fs::metadata(format!("/run/netns/{}", ns.name))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .expect("stat");
    let dead = std::path::Path::new("/run/lwtkit/ns-18446744073709551000");
    std::fs::create_dir_all(dead.join("routes")).expect("mkdir");
    std::fs::write(
        dead.join("netns.json"),
        format!("{{\"inode\": {live_inode}}}"),
    )
    .expect("write");
    let dead_pins = std::path::Path::new("/sys/fs/bpf/lwtkit/ns-18446744073709551000");
    std::fs::create_dir_all(dead_pins).expect("mkdir pins");
    ns.lwt_ok(&["filter", "create", "gc"]);
    assert!(!dead.exists(), "dead namespace's records kept");
    assert!(!dead_pins.exists(), "dead namespace's pins kept");
    // The live one's state is kept.
    assert!(state_dir(&ns).exists());
}

/// Every step of attach and detach where a `kill -9` can land.
const ATTACH_STEPS: [&str; 2] = ["attach:intent", "attach:route"];
const DETACH_STEPS: [&str; 2] = ["detach:intent", "detach:route"];

fn killed(out: &Output) -> bool {
    out.status.signal() == Some(9)
}

#[test]
fn kill_9_at_every_step_of_attach_and_detach_converges() {
    require_root!();
    let p = Pair::new("k9");
    let before = p.a.routes();
    let local_before =
        p.a.ip(&["-d", "route", "show", "table", "local", "10.0.0.2"]);
    for step in ATTACH_STEPS {
        for (prefix, local) in [("10.0.0.9/32", false), ("10.0.0.2/32", true)] {
            let mut args = vec![
                "attach",
                prefix,
                "--dev",
                "va",
                "--hook",
                "in",
                "--builtin",
                "count",
            ];
            if local {
                args.push("--local");
            } else {
                args[5] = "out";
            }
            let out = lwt_env(&p.a, &[("LWT_FAILPOINT", step)], &args);
            assert!(killed(&out), "{step}: not killed: {out:?}");
            // The next command finishes what the killed one left.
            agrees(&p.a);
            // Whatever the kill left, detach gives back the original route.
            let mut detach = vec!["detach", prefix];
            if local {
                detach.push("--local");
            }
            let out = p.a.lwt(&detach);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() || err.contains("not managed"),
                "{step}: {err}"
            );
            assert_eq!(p.a.routes(), before, "{step} {prefix}: routes differ");
            agrees(&p.a);
        }
    }
    for step in DETACH_STEPS {
        for (prefix, local) in [("10.0.0.9/32", false), ("10.0.0.2/32", true)] {
            let mut args = vec![
                "attach",
                prefix,
                "--dev",
                "va",
                "--hook",
                "in",
                "--builtin",
                "count",
            ];
            let mut detach = vec!["detach", prefix];
            if local {
                args.push("--local");
                detach.push("--local");
            } else {
                args[5] = "out";
            }
            p.a.lwt_ok(&args);
            let out = lwt_env(&p.a, &[("LWT_FAILPOINT", step)], &detach);
            assert!(killed(&out), "{step}: not killed: {out:?}");
            agrees(&p.a);
            let out = p.a.lwt(&detach);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() || err.contains("not managed"),
                "{step}: {err}"
            );
            assert_eq!(p.a.routes(), before, "{step} {prefix}: routes differ");
            agrees(&p.a);
        }
    }
    assert_eq!(
        p.a.ip(&["-d", "route", "show", "table", "local", "10.0.0.2"]),
        local_before,
        "the local route is exactly as it was"
    );
    // Nothing of lwtkit's is left in the namespace.
    let _ = lwt(&["-n", &p.a.name, "reset"]);
}

#[test]
fn unprivileged_readers_work_and_say_what_they_cannot_see() {
    require_root!();
    let p = Pair::new("unp");
    p.a.count_on("10.0.0.9/32", "va", "out", &[]);
    // A copy nobody may run (the build tree may sit under private directories).
    let bin = std::env::temp_dir().join(format!("lwt-unpriv-{}", std::process::id()));
    std::fs::copy(env!("CARGO_BIN_EXE_lwt"), &bin).expect("copy lwt");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let as_nobody = |verb: &str| {
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", p.a.name))
            .args([
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--",
            ])
            .arg(&bin)
            .arg(verb)
            .output()
            .expect("nsenter runs")
    };
    let list = as_nobody("list");
    let stats = as_nobody("stats");
    let _ = std::fs::remove_file(&bin);
    let (out, err) = (
        String::from_utf8_lossy(&list.stdout),
        String::from_utf8_lossy(&list.stderr),
    );
    assert!(list.status.success(), "{err}");
    assert!(
        out.contains("10.0.0.9/32 encap bpf out lwtkit-count"),
        "{out}"
    );
    assert!(err.contains("readable by root only"), "{err}");
    let out = String::from_utf8_lossy(&stats.stdout);
    assert!(stats.status.success());
    assert!(out.contains("without root"), "{out}");
    assert!(!out.contains("no lwtkit built-ins attached"), "{out}");
}

#[test]
fn pins_no_record_names_are_swept_under_the_lock() {
    require_root!();
    let p = Pair::new("swp");
    p.a.count_on("10.0.0.9/32", "va", "out", &[]);
    let pins = std::path::PathBuf::from(
        state_dir(&p.a)
            .to_string_lossy()
            .replace("/run/lwtkit", "/sys/fs/bpf/lwtkit"),
    );
    let orphan = pins.join("254_10_9_9_9_32");
    let staged = pins.join("254_10_0_0_9_32").join("xmit_next");
    let sid_staged = pins.join("seg6local").join("254_fc00__b_128_next");
    for d in [&orphan, &staged, &sid_staged] {
        std::fs::create_dir_all(d).expect("mkdir on bpffs");
    }
    // `lwt check` reports them; the next command that changes anything
    // removes them, under the lock.
    assert!(!p.a.lwt(&["check"]).status.success());
    p.a.count_on("10.0.0.10/32", "va", "out", &[]);
    agrees(&p.a);
    for d in [&orphan, &staged, &sid_staged] {
        assert!(!d.exists(), "{} left", d.display());
    }
    assert!(
        pins.join("254_10_0_0_9_32").join("out").exists(),
        "live pins kept"
    );
}

#[test]
fn a_refused_attach_leaves_no_pins_behind() {
    require_root!();
    let p = Pair::new("nop");
    let before = p.a.routes();
    // The kernel refuses the route (unreachable gateway) after the pins were staged.
    let err = p.a.lwt_err(&[
        "attach",
        "192.0.2.128/25",
        "--dev",
        "va",
        "--via",
        "10.9.9.9",
        "--hook",
        "out",
        "--builtin",
        "count",
    ]);
    assert!(err.contains("192.0.2.128/25"), "{err}");
    assert_eq!(p.a.routes(), before);
    let pins = std::path::PathBuf::from(
        state_dir(&p.a)
            .to_string_lossy()
            .replace("/run/lwtkit", "/sys/fs/bpf/lwtkit"),
    );
    let left: Vec<String> = std::fs::read_dir(&pins)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "pins left: {left:?}");
    agrees(&p.a);
}

#[test]
fn a_tunnel_keeps_the_routes_other_metrics_and_gives_its_mtu_back() {
    require_root!();
    let p = Pair::new("mtr");
    p.a.ip(&[
        "route",
        "add",
        "198.51.100.0/24",
        "dev",
        "va",
        "initcwnd",
        "20",
        "rto_min",
        "50ms",
    ]);
    p.a.ip(&[
        "-6",
        "route",
        "add",
        "2001:db8:7::/64",
        "dev",
        "va",
        "metric",
        "100",
        "initcwnd",
        "30",
    ]);
    let before = p.a.routes();
    p.a.lwt_ok(&[
        "encap",
        "add",
        "198.51.100.0/24",
        "--dev",
        "va",
        "--type",
        "gre",
        "--remote",
        "10.0.0.3",
    ]);
    p.a.lwt_ok(&[
        "encap",
        "add",
        "2001:db8:7::/64",
        "--dev",
        "va",
        "--type",
        "ip6ip6",
        "--remote",
        "fd00::3",
    ]);
    let v4 = p.a.ip(&["route", "show", "198.51.100.0/24"]);
    assert!(
        v4.contains("mtu 1476") && v4.contains("initcwnd 20") && v4.contains("rto_min lock 50ms"),
        "{v4}"
    );
    let v6 = p.a.ip(&["-6", "route", "show", "2001:db8:7::/64"]);
    assert!(
        v6.contains("mtu 1460") && v6.contains("initcwnd 30"),
        "{v6}"
    );
    p.a.lwt_ok(&["encap", "del", "198.51.100.0/24"]);
    p.a.lwt_ok(&["encap", "del", "2001:db8:7::/64"]);
    assert_eq!(p.a.routes(), before, "routes exactly as they were");
}

#[test]
fn a_reader_that_goes_away_ends_the_command_quietly() {
    require_root!();
    let p = Pair::new("pip");
    for i in 0..50 {
        p.a.ip(&["route", "add", &format!("10.8.0.{i}/32"), "dev", "va"]);
    }
    p.a.count_on("10.0.0.9/32", "va", "out", &[]);
    // `lwt list | head -0`: stdout closed before lwt writes.
    let mut child = Command::new(env!("CARGO_BIN_EXE_lwt"))
        .args(["-n", &p.a.name, "list"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("lwt runs");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
