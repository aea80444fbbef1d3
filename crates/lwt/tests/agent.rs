//! `lwt agent`: a running agent keeps a namespace as its config file
//! states (a route rewritten outside lwtkit is put back within a second, a
//! changed file or SIGHUP converges, a bad file changes nothing), serves
//! Prometheus text, and three agents on one file (three namespaces standing
//! for nodes) converge together.
mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{json, send_udp, Netns, Pair};

/// A directory of config files for one test, removed at the end.
struct ConfigDir(PathBuf);

impl ConfigDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("lwtkit-agent-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        ConfigDir(dir)
    }

    /// Writes `name` as an editor or a ConfigMap update does: a new file
    /// renamed into place.
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        let tmp = self.0.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).expect("write config");
        std::fs::rename(&tmp, &path).expect("rename config");
        path
    }
}

impl Drop for ConfigDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// A number for each agent's log file.
fn log_serial() -> u32 {
    static SERIAL: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// An `lwt -n NS agent` process started by the test, stopped (SIGTERM, then
/// SIGKILL) by its pid when dropped, also when the test fails. Declare it
/// after the namespaces it runs in, so it stops before they are reset.
struct Agent {
    child: Child,
    log: PathBuf,
    metrics: String,
}

impl Agent {
    fn start(ns: &Netns, file: &Path) -> Agent {
        Agent::start_with(ns, file, &[])
    }

    fn start_with(ns: &Netns, file: &Path, env: &[(&str, &str)]) -> Agent {
        let log = file.with_extension(format!("{}.{}.log", ns.name, log_serial()));
        let child = Command::new(env!("CARGO_BIN_EXE_lwt"))
            .envs(env.iter().copied())
            .args(["-n", &ns.name, "agent", "-f", p(file)])
            .args(["--metrics", "127.0.0.1:0", "--interval", "30"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("lwt agent starts");
        let mut agent = Agent {
            child,
            log,
            metrics: String::new(),
        };
        let started = Instant::now();
        while !agent.log().contains(" applied (") {
            if let Ok(Some(status)) = agent.child.try_wait() {
                panic!(
                    "lwt agent exited ({status}) before applying:\n{}",
                    agent.log()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "lwt agent did not apply {} in 30 s:\n{}",
                file.display(),
                agent.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = agent.log();
        let addr = log
            .split("serving metrics on http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .expect("the agent logs its metrics address");
        agent.metrics = addr.to_string();
        agent
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the pid of a child this test started.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// Waits up to `secs` for the log to say `needle`.
    fn wait_log(&self, needle: &str, secs: u64) {
        let started = Instant::now();
        while !self.log().contains(needle) {
            assert!(
                started.elapsed() < Duration::from_secs(secs),
                "the agent did not log {needle:?} in {secs} s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// GET /metrics: the body, after checking the status and content type.
    fn scrape(&self) -> String {
        let mut s = TcpStream::connect(&self.metrics).expect("connect to the metrics port");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        write!(s, "GET /metrics HTTP/1.1\r\nHost: lwt\r\n\r\n").expect("request");
        let mut reply = String::new();
        s.read_to_string(&mut reply).expect("reply");
        let (head, body) = reply.split_once("\r\n\r\n").expect("an HTTP reply");
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        assert!(
            head.contains("Content-Type: text/plain; version=0.0.4"),
            "{head}"
        );
        body.to_string()
    }

    /// The metrics page parsed by a Prometheus text parser, every line
    /// accounted for (the parser skips what it cannot read, so the samples
    /// it returns must be all the page's sample lines).
    fn metrics(&self) -> prometheus_parse::Scrape {
        let body = self.scrape();
        let samples = body
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .count();
        for line in body.lines().filter(|l| l.starts_with('#')) {
            assert!(
                line.starts_with("# HELP lwtkit_") || line.starts_with("# TYPE lwtkit_"),
                "{line}"
            );
        }
        let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
            .expect("Prometheus text");
        assert_eq!(scrape.samples.len(), samples, "unparsed lines in:\n{body}");
        for s in &scrape.samples {
            assert!(s.metric.starts_with("lwtkit_"), "{}", s.metric);
            if let prometheus_parse::Value::Counter(_) = s.value {
                assert!(s.metric.ends_with("_total"), "counter {}", s.metric);
            }
        }
        scrape
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("lwt agent's log:\n{}", self.log());
        }
        // SAFETY: kill(2) on the pid of a child this test started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of `metric` whose labels include all of `with`.
fn value(scrape: &prometheus_parse::Scrape, metric: &str, with: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && with.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

/// `lwt -n NS diff -f FILE`'s exit code (its output on stderr, for a
/// failure's story).
fn diff_code(ns: &Netns, file: &Path) -> Option<i32> {
    let out = ns.lwt(&["diff", "-f", p(file)]);
    if out.status.code() != Some(0) {
        eprintln!(
            "lwt -n {} diff: {}{}",
            ns.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out.status.code()
}

/// The id after `#` in the program name on `prefix`'s route.
fn program_id(ns: &Netns, prefix: &str) -> Option<String> {
    let route = ns.ip(&["route", "show", prefix]);
    let name = route
        .split_whitespace()
        .find(|w| w.contains("lwtkit-count"))?;
    Some(name.rsplit_once('#')?.1.to_string())
}

fn rules_of(ns: &Netns, policy: &str) -> Vec<String> {
    let v = json(&ns.lwt_ok(&["-j", "filter", "show", policy]));
    v["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| r["text"].as_str().expect("text").to_string())
        .collect()
}

const COUNT_ON_PEER: &str = r#"
[[attach]]
route = "10.0.0.3/32"
dev = "va"
hook = "out"
builtin = "count"
"#;

#[test]
fn agent_repairs_a_route_rewritten_outside_lwtkit_within_a_second_and_counts_it() {
    require_root!();
    let pair = Pair::new("agr");
    let dir = ConfigDir::new("repair");
    let file = dir.write("lab.toml", COUNT_ON_PEER);
    let agent = Agent::start(&pair.a, &file);
    let before = program_id(&pair.a, "10.0.0.3").expect("the agent attached count");
    assert_eq!(diff_code(&pair.a, &file), Some(0));

    // A routing daemon rewrites the route: no program on it any more.
    pair.a.ip(&["route", "replace", "10.0.0.3/32", "dev", "va"]);
    let rewritten = Instant::now();
    let mut after = None;
    while rewritten.elapsed() < Duration::from_secs(3) {
        after = program_id(&pair.a, "10.0.0.3");
        if after.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = rewritten.elapsed();
    let after = after.expect("the agent put count back on the route");
    assert!(took < Duration::from_secs(1), "repaired after {took:?}");
    assert_ne!(after, before, "a new program is on the route");
    let route = pair.a.ip(&["route", "show", "10.0.0.3"]);
    assert!(
        route.contains(&format!(
            "encap bpf out lwtkit-count:[lwt_out]#{after} dev va"
        )),
        "{route}"
    );
    // Once the repair's bookkeeping is done (the route shows before),
    // lwtkit's record names the program the route carries.
    agent.wait_log("repair attach 10.0.0.3/32 table main hook out", 5);
    assert_eq!(diff_code(&pair.a, &file), Some(0));
    pair.a.lwt_ok(&["check"]);

    let m = agent.metrics();
    assert_eq!(
        value(&m, "lwtkit_agent_drift_repairs_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        value(&m, "lwtkit_agent_changes_total", &[("action", "repair")]),
        Some(1.0)
    );
    assert_eq!(value(&m, "lwtkit_agent_in_sync", &[]), Some(1.0));
    assert!(value(&m, "lwtkit_agent_config_applied_timestamp_seconds", &[]).unwrap_or(0.0) > 1e9);
}

#[test]
fn a_repair_waits_for_a_running_lwt_command_and_leaves_its_work_alone() {
    require_root!();
    let pair = Pair::new("agl");
    let dir = ConfigDir::new("lock");
    let file = dir.write("lab.toml", COUNT_ON_PEER);
    let agent = Agent::start(&pair.a, &file);

    // A command holds the namespace's lock (as every mutating `lwt` does).
    let lock = std::fs::File::open(
        PathBuf::from(format!("/run/lwtkit/ns-{}", pair.a.cookie())).join("lock"),
    )
    .expect("the namespace's lock file");
    use std::os::fd::AsRawFd;
    // SAFETY: flock(2) on a file this test opened.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    pair.a.ip(&["route", "replace", "10.0.0.3/32", "dev", "va"]);
    std::thread::sleep(Duration::from_millis(1500));
    // The agent saw the drift but waits for the lock: nothing repaired yet
    // (and readers, like diff, do not wait).
    assert_eq!(program_id(&pair.a, "10.0.0.3"), None);
    assert_eq!(diff_code(&pair.a, &file), Some(1));
    drop(lock);
    let released = Instant::now();
    while program_id(&pair.a, "10.0.0.3").is_none() {
        assert!(
            released.elapsed() < Duration::from_secs(1),
            "not repaired within a second of the lock's release:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    agent.wait_log("repair attach 10.0.0.3/32 table main hook out", 5);
    assert_eq!(diff_code(&pair.a, &file), Some(0));

    // What another command attaches (not in the file) is kept.
    pair.a.lwt_ok(&[
        "attach",
        "10.0.0.9/32",
        "--dev",
        "va",
        "--hook",
        "out",
        "--builtin",
        "pass",
    ]);
    std::thread::sleep(Duration::from_millis(1000));
    let route = pair.a.ip(&["route", "show", "10.0.0.9"]);
    assert!(route.contains("lwtkit-pass:[lwt_out]#"), "{route}");
    let m = agent.metrics();
    assert_eq!(
        value(&m, "lwtkit_agent_drift_repairs_total", &[]),
        Some(1.0)
    );
    assert_eq!(value(&m, "lwtkit_agent_apply_errors_total", &[]), Some(0.0));
}

#[test]
fn metrics_parse_as_prometheus_text_and_count_the_traffic_sent() {
    require_root!();
    let pair = Pair::new("agm");
    let dir = ConfigDir::new("metrics");
    let file = dir.write(
        "lab.toml",
        &format!(
            r#"{COUNT_ON_PEER}
[[filter]]
name = "web"
rules = ["dst 10.0.0.3/32 proto udp dport 9999 allow"]
attach = [{{ route = "10.0.0.3/32", dev = "va", hook = "xmit" }}]
"#
        ),
    );
    let agent = Agent::start(&pair.a, &file);
    send_udp(&pair.a, "10.0.0.3:9999", 20, 100);

    let m = agent.metrics();
    let hook = [("route", "10.0.0.3/32"), ("table", "main"), ("hook", "out")];
    assert_eq!(value(&m, "lwtkit_hook_packets_total", &hook), Some(20.0));
    // 20 × (IPv4 20 + UDP 8 + 100).
    assert_eq!(value(&m, "lwtkit_hook_bytes_total", &hook), Some(2560.0));
    assert_eq!(value(&m, "lwtkit_hook_drops_total", &hook), Some(0.0));
    let program = m
        .samples
        .iter()
        .find(|s| s.metric == "lwtkit_hook_packets_total" && s.labels.get("hook") == Some("out"))
        .and_then(|s| s.labels.get("program"))
        .expect("a program label");
    assert!(program.starts_with("lwtkit-count:[lwt_out]#"), "{program}");
    let rule = [("policy", "web"), ("rule", "1"), ("action", "allow")];
    assert_eq!(value(&m, "lwtkit_rule_packets_total", &rule), Some(20.0));
    assert_eq!(
        value(
            &m,
            "lwtkit_hook_packets_total",
            &[("route", "10.0.0.3/32"), ("hook", "xmit")]
        ),
        Some(20.0)
    );
    assert_eq!(
        value(&m, "lwtkit_events_lost_total", &[("policy", "web")]),
        Some(0.0)
    );
    assert_eq!(
        value(&m, "lwtkit_agent_drift_repairs_total", &[]),
        Some(0.0)
    );
    assert_eq!(value(&m, "lwtkit_agent_apply_errors_total", &[]), Some(0.0));
    // Read afresh at each scrape.
    send_udp(&pair.a, "10.0.0.3:9999", 5, 100);
    let m = agent.metrics();
    assert_eq!(value(&m, "lwtkit_hook_packets_total", &hook), Some(25.0));
}

const WEB_ONE_RULE: &str = r#"
[[filter]]
name = "web"
rules = ["dst 10.0.0.3/32 proto udp dport 9999 allow"]
attach = [{ route = "10.0.0.3/32", dev = "va", hook = "out" }]
"#;

const WEB_TWO_RULES: &str = r#"
[[filter]]
name = "web"
rules = [
  "dst 10.0.0.3/32 proto udp dport 9999 allow",
  "dst 10.0.0.3/32 proto tcp dport 8080 drop",
]
attach = [{ route = "10.0.0.3/32", dev = "va", hook = "out" }]
"#;

#[test]
fn a_changed_file_or_sighup_converges_and_a_bad_file_changes_nothing() {
    require_root!();
    let pair = Pair::new("agh");
    let dir = ConfigDir::new("reload");
    let file = dir.write("lab.toml", WEB_ONE_RULE);
    let agent = Agent::start(&pair.a, &file);
    assert_eq!(rules_of(&pair.a, "web").len(), 1);

    // The file changes: the new rule is there within seconds.
    dir.write("lab.toml", WEB_TWO_RULES);
    let started = Instant::now();
    while rules_of(&pair.a, "web").len() != 2 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the new rule never came:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    agent.wait_log("rules: 1 added, 0 removed (1 -> 2)", 5);
    assert_eq!(diff_code(&pair.a, &file), Some(0));

    // A rule added by hand changes no route, so no notification says so:
    // SIGHUP makes the agent check (and put the file's rules back).
    pair.a.lwt_ok(&[
        "filter",
        "rule",
        "add",
        "web",
        "dst",
        "10.0.0.3/32",
        "proto",
        "tcp",
        "dport",
        "22",
        "drop",
    ]);
    assert_eq!(rules_of(&pair.a, "web").len(), 3);
    assert_eq!(diff_code(&pair.a, &file), Some(1));
    agent.signal(libc::SIGHUP);
    let started = Instant::now();
    while rules_of(&pair.a, "web").len() != 2 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "SIGHUP did not converge:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    agent.wait_log("SIGHUP: reading", 5);
    agent.wait_log("rules: 0 added, 1 removed (3 -> 2)", 5);
    assert_eq!(diff_code(&pair.a, &file), Some(0));

    // A bad file: logged, and nothing changes.
    let routes = pair.a.routes();
    let rules = rules_of(&pair.a, "web");
    let good = dir.0.join("good.toml");
    std::fs::write(&good, WEB_TWO_RULES).expect("copy");
    dir.write(
        "lab.toml",
        &WEB_TWO_RULES.replace("dport 8080 drop", "dport 8080 dorp"),
    );
    agent.wait_log("the new file is refused, nothing changed", 5);
    assert!(agent.log().contains("dorp"), "{}", agent.log());
    // SIGHUP reads it again: still refused, still nothing changed.
    agent.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(pair.a.routes(), routes);
    assert_eq!(rules_of(&pair.a, "web"), rules);
    assert_eq!(diff_code(&pair.a, &good), Some(0));
    let m = agent.metrics();
    assert_eq!(
        value(&m, "lwtkit_agent_config_errors_total", &[]),
        Some(2.0)
    );
    assert_eq!(
        value(&m, "lwtkit_agent_config_reloads_total", &[]),
        Some(2.0)
    );
    // The file's new rule is a change, the hand-added rule taken off a repair.
    assert_eq!(
        value(&m, "lwtkit_agent_drift_repairs_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        value(&m, "lwtkit_agent_changes_total", &[("action", "update")]),
        Some(2.0)
    );

    // The agent still repairs from the last good file.
    pair.a.ip(&["route", "replace", "10.0.0.3/32", "dev", "va"]);
    agent.wait_log("repair filter 10.0.0.3/32 table main hook out", 3);
    assert_eq!(diff_code(&pair.a, &good), Some(0));
}

/// A namespace standing for a node: a veth pair `va`/`vb` inside it,
/// 10.0.0.2/24 on `va`.
fn node(tag: &str) -> Netns {
    let ns = Netns::new(tag);
    ns.ip(&["link", "add", "va", "type", "veth", "peer", "name", "vb"]);
    ns.ip(&["addr", "add", "10.0.0.2/24", "dev", "va"]);
    ns.ip(&["link", "set", "va", "up"]);
    ns.ip(&["link", "set", "vb", "up"]);
    ns
}

#[test]
fn three_nodes_with_an_agent_each_converge_within_five_seconds_of_a_config_change() {
    require_root!();
    let nodes = [node("agf1"), node("agf2"), node("agf3")];
    let dir = ConfigDir::new("fleet");
    let file = dir.write(
        "fleet.toml",
        &format!("{COUNT_ON_PEER}{WEB_ONE_RULE}").replace("hook = \"out\" }", "hook = \"xmit\" }"),
    );
    let agents: Vec<Agent> = nodes.iter().map(|n| Agent::start(n, &file)).collect();
    for n in &nodes {
        assert_eq!(diff_code(n, &file), Some(0), "{}", n.name);
    }

    // The fleet's file changes: a rule more, a route more.
    let changed = format!(
        r#"{COUNT_ON_PEER}{WEB_TWO_RULES}
[[attach]]
route = "10.0.0.4/32"
dev = "va"
hook = "out"
builtin = "pass"
"#
    )
    .replace("hook = \"out\" }", "hook = \"xmit\" }");
    dir.write("fleet.toml", &changed);
    let started = Instant::now();
    let mut pending: Vec<&Netns> = nodes.iter().collect();
    while !pending.is_empty() {
        pending.retain(|n| diff_code(n, &file) != Some(0));
        assert!(
            started.elapsed() < Duration::from_secs(5) || pending.is_empty(),
            "not converged after 5 s: {:?}",
            pending.iter().map(|n| &n.name).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for n in &nodes {
        assert_eq!(rules_of(n, "web").len(), 2, "{}", n.name);
        let route = n.ip(&["route", "show", "10.0.0.4"]);
        assert!(
            route.contains("lwtkit-pass:[lwt_out]#"),
            "{}: {route}",
            n.name
        );
    }
    drop(agents);
}

#[test]
fn a_bad_file_at_start_is_an_error_and_changes_nothing() {
    require_root!();
    let ns = node("agb");
    let dir = ConfigDir::new("bad");
    let file = dir.write(
        "lab.toml",
        &format!("{COUNT_ON_PEER}{WEB_TWO_RULES}").replace("dport 8080 drop", "dport 8080 dorp"),
    );
    let routes = ns.routes();
    let out = ns.lwt(&["agent", "-f", p(&file), "--metrics", "127.0.0.1:0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("lab.toml") && err.contains("dorp"), "{err}");
    assert_eq!(ns.routes(), routes);
    assert!(ns.lwt_ok(&["-j", "filter", "list"]).trim() == "[]");
    // And an interval that is no interval is refused by the flag's check.
    let out = ns.lwt(&["agent", "-f", p(&file), "--interval", "0"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_route_flushed_with_its_device_is_attached_again_when_the_device_comes_back() {
    require_root!();
    let pair = Pair::new("agd");
    let dir = ConfigDir::new("linkdown");
    let file = dir.write("lab.toml", COUNT_ON_PEER);
    let agent = Agent::start(&pair.a, &file);
    assert!(program_id(&pair.a, "10.0.0.3").is_some());

    // The kernel flushes IPv4 routes of a device that goes down without a
    // route notification each; the link notification is what says so.
    pair.a.ip(&["link", "set", "va", "down"]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(pair.a.ip(&["route", "show", "10.0.0.3"]).trim(), "");
    pair.a.ip(&["link", "set", "va", "up"]);
    let up = Instant::now();
    while program_id(&pair.a, "10.0.0.3").is_none() {
        assert!(
            up.elapsed() < Duration::from_secs(2),
            "not attached again within 2 s of the link coming back:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // lwtkit's record went with the route, so the plan says create; the
    // file had not changed, so it is counted as a drift repair (once the
    // apply's bookkeeping is done: the route shows before).
    let counted = Instant::now();
    while value(&agent.metrics(), "lwtkit_agent_drift_repairs_total", &[]) != Some(1.0) {
        assert!(
            counted.elapsed() < Duration::from_secs(2),
            "{}",
            agent.scrape()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(diff_code(&pair.a, &file), Some(0));
}

#[test]
fn an_agent_killed_mid_repair_leaves_what_the_next_command_finishes() {
    require_root!();
    let pair = Pair::new("agk");
    let dir = ConfigDir::new("kill");
    let file = dir.write("lab.toml", COUNT_ON_PEER);
    pair.a.lwt_ok(&["apply", "-f", p(&file)]);
    // In sync at start, so the first kernel change it makes is the repair.
    let mut agent = Agent::start_with(&pair.a, &file, &[("LWT_FAILPOINT", "attach:route")]);
    pair.a.ip(&["route", "replace", "10.0.0.3/32", "dev", "va"]);
    let started = Instant::now();
    let status = loop {
        if let Ok(Some(status)) = agent.child.try_wait() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the agent was not killed mid-repair:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{}", agent.log());
    // Killed after the route change, before its bookkeeping: the next
    // command under the lock finishes it, and records agree with the kernel.
    let route = pair.a.ip(&["route", "show", "10.0.0.3"]);
    assert!(route.contains("lwtkit-count:[lwt_out]#"), "{route}");
    pair.a.lwt_ok(&["check"]);
    assert_eq!(diff_code(&pair.a, &file), Some(0));
    let again = Agent::start(&pair.a, &file);
    assert!(
        again.log().contains(" applied (0 change(s))"),
        "{}",
        again.log()
    );
    pair.a.lwt_ok(&["check"]);
}
