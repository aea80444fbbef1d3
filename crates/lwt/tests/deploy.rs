//! Running lwtkit as a service: the systemd units pass `systemd-analyze
//! verify` and hold what lwt needs; an lwt restricted as the units restrict
//! it leaves alone the state of namespaces it cannot see; the Kubernetes
//! manifests hold their invariants; `cargo install` and the Debian package
//! give a working lwt (those two build in release: `--ignored`).
mod common;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use common::Netns;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lwtt-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// `Key=value` lines of a unit, in order.
fn directives(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn directive(unit: &str, key: &str) -> Vec<String> {
    directives(unit)
        .into_iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v)
        .collect()
}

const UNITS: [&str; 2] = ["lwtkit.service", "lwtkit-agent.service"];

/// The capabilities lwt uses (the units say why, one by one).
const UNIT_CAPS: [&str; 6] = [
    "CAP_BPF",
    "CAP_NET_ADMIN",
    "CAP_SYS_ADMIN",
    "CAP_PERFMON",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_PTRACE",
];

#[test]
fn systemd_units_apply_at_boot_reset_on_stop_and_hold_only_what_lwt_needs() {
    let oneshot = read("contrib/systemd/lwtkit.service");
    let agent = read("contrib/systemd/lwtkit-agent.service");
    assert_eq!(directive(&oneshot, "Type"), ["oneshot"]);
    assert_eq!(directive(&oneshot, "RemainAfterExit"), ["yes"]);
    assert_eq!(
        directive(&oneshot, "ExecStart"),
        ["/usr/bin/lwt apply -f /etc/lwtkit/lwtkit.toml"]
    );
    assert_eq!(directive(&oneshot, "ExecStop"), ["/usr/bin/lwt reset"]);
    assert_eq!(
        directive(&agent, "ExecStart"),
        ["/usr/bin/lwt agent -f /etc/lwtkit/lwtkit.toml --metrics 127.0.0.1:9469"]
    );
    for (name, unit) in [
        ("lwtkit.service", &oneshot),
        ("lwtkit-agent.service", &agent),
    ] {
        assert_eq!(
            directive(unit, "After"),
            ["network-online.target"],
            "{name}"
        );
        assert_eq!(
            directive(unit, "Wants"),
            ["network-online.target"],
            "{name}"
        );
        for key in ["CapabilityBoundingSet", "AmbientCapabilities"] {
            let caps: BTreeSet<String> = directive(unit, key)
                .iter()
                .flat_map(|v| v.split_whitespace().map(String::from))
                .collect();
            let want: BTreeSet<String> = UNIT_CAPS.iter().map(|c| c.to_string()).collect();
            assert_eq!(caps, want, "{name} {key}");
        }
        for (key, want) in [
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("NoNewPrivileges", "yes"),
            ("LimitMEMLOCK", "infinity"),
            ("SystemCallArchitectures", "native"),
            ("LockPersonality", "yes"),
            ("ReadWritePaths", "/run/lwtkit /sys/fs/bpf"),
            (
                "RestrictAddressFamilies",
                "AF_NETLINK AF_UNIX AF_INET AF_INET6",
            ),
        ] {
            assert_eq!(directive(unit, key), [want], "{name} {key}");
        }
        // /run/netns is read by -n NAME: nothing may hide it.
        for hiding in ["InaccessiblePaths", "TemporaryFileSystem", "PrivateNetwork"] {
            assert!(directive(unit, hiding).is_empty(), "{name} {hiding}");
        }
    }
}

#[test]
fn systemd_analyze_verify_finds_nothing_to_say_about_the_units() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "SKIPPED {}: systemd-analyze is not installed (apt-get install systemd)",
            module_path!()
        );
        return;
    }
    // The units as installed, with lwt where this build put it and its man
    // pages (the units' Documentation=) where man finds them.
    let dir = scratch("units");
    let man1 = dir.join("man/man1");
    let out = Command::new(env!("CARGO_BIN_EXE_lwt"))
        .args(["man", "--dir"])
        .arg(&man1)
        .output()
        .expect("lwt man");
    assert!(out.status.success(), "{out:?}");
    let mut paths = Vec::new();
    for unit in UNITS {
        let text = read(&format!("contrib/systemd/{unit}"))
            .replace("/usr/bin/lwt", env!("CARGO_BIN_EXE_lwt"));
        let path = dir.join(unit);
        std::fs::write(&path, text).expect("write unit");
        paths.push(path);
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&paths)
        .env("MANPATH", dir.join("man"))
        .output()
        .expect("systemd-analyze runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let about_ours: Vec<&str> = said
        .lines()
        .filter(|l| UNITS.iter().any(|u| l.contains(u)))
        .collect();
    assert!(about_ours.is_empty(), "systemd-analyze verify:\n{said}");
    assert!(out.status.success(), "systemd-analyze verify:\n{said}");
    let _ = std::fs::remove_dir_all(&dir);
}

// ------------------------------------------------------------- hardening

/// A task in a network namespace of its own that nothing else names (no
/// bind mount under /run/netns): only /proc shows it is alive.
struct Unnamed {
    child: Child,
    /// The child is in its own namespace (never reset ours by mistake).
    entered: bool,
}

impl Unnamed {
    fn new() -> Self {
        let child = Command::new("unshare")
            .args(["--net", "--", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare runs");
        // Dropped (killed and reaped) on any failure from here.
        let mut held = Self {
            child,
            entered: false,
        };
        let ours = std::fs::read_link("/proc/self/ns/net").expect("our netns");
        held.entered = (0..100).any(|_| {
            std::fs::read_link(held.netns()).is_ok_and(|l| l != ours) || {
                std::thread::sleep(Duration::from_millis(20));
                false
            }
        });
        assert!(held.entered, "unshare did not enter a network namespace");
        held
    }

    fn netns(&self) -> String {
        format!("/proc/{}/ns/net", self.child.id())
    }

    /// `lwt ARGS` inside the namespace.
    fn lwt(&self, args: &[&str]) -> std::process::Output {
        Command::new("nsenter")
            .arg(format!("--net={}", self.netns()))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_lwt"))
            .args(args)
            .output()
            .expect("nsenter runs")
    }

    /// The namespace's id (`NS_GET_ID`), which names lwtkit's state.
    fn cookie(&self) -> u64 {
        use std::os::fd::AsRawFd;
        const NS_GET_ID: libc::c_ulong = 0x8008_b70d;
        let f = std::fs::File::open(self.netns()).expect("open netns");
        let mut id: u64 = 0;
        // SAFETY: NS_GET_ID writes one u64 through the pointer.
        let rc = unsafe { libc::ioctl(f.as_raw_fd(), NS_GET_ID, &mut id as *mut u64) };
        assert_eq!(rc, 0, "NS_GET_ID");
        id
    }
}

impl Drop for Unnamed {
    fn drop(&mut self) {
        if self.entered {
            let _ = self.lwt(&["reset"]);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_lwt_restricted_as_the_units_restrict_it_keeps_the_state_of_namespaces_it_cannot_see() {
    require_root!();
    if Command::new("setpriv").arg("--version").output().is_err() {
        common::skip(module_path!(), "setpriv (util-linux) is not installed");
        return;
    }
    // lwtkit state in a namespace only a root task with every capability
    // holds (as a container runtime's would be).
    let held = Unnamed::new();
    let up = Command::new("nsenter")
        .arg(format!("--net={}", held.netns()))
        .args(["--", "ip", "link", "set", "lo", "up"])
        .status()
        .expect("nsenter runs");
    assert!(up.success());
    let out = held.lwt(&[
        "attach",
        "192.0.2.9/32",
        "--dev",
        "lo",
        "--hook",
        "out",
        "--builtin",
        "count",
    ]);
    assert!(out.status.success(), "{out:?}");
    let state = PathBuf::from(format!("/run/lwtkit/ns-{}", held.cookie()));
    let pins = PathBuf::from(format!("/sys/fs/bpf/lwtkit/ns-{}", held.cookie()));
    assert!(state.is_dir() && pins.is_dir());

    // A change elsewhere by lwt with the units' capabilities (no
    // CAP_SYS_PTRACE: the task's /proc entries are closed to it) runs the
    // garbage collection of dead namespaces.
    let other = Netns::new("restricted");
    let restricted = |args: &[&str]| {
        let out = Command::new("setpriv")
            .args([
                "--inh-caps=-all",
                "--bounding-set=-all,+bpf,+net_admin,+sys_admin,+perfmon,+sys_resource",
                "--",
                env!("CARGO_BIN_EXE_lwt"),
                "-n",
                &other.name,
            ])
            .args(args)
            .output()
            .expect("setpriv runs");
        assert!(out.status.success(), "lwt {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let count = ["--dev", "lo", "--builtin", "count"];
    restricted(&[&["attach", "192.0.2.7/32", "--hook", "out"][..], &count].concat());
    // The capabilities are enough for lwt's work: a second hook on the
    // same route (the first is reopened by id), a listing, a reset.
    restricted(&[&["attach", "192.0.2.7/32", "--hook", "xmit"][..], &count].concat());
    let listed = restricted(&["list"]);
    assert!(listed.contains("lwtkit-count:[lwt_xmit]"), "{listed}");
    assert!(listed.contains("lwtkit-count:[lwt_out]"), "{listed}");
    restricted(&["reset"]);
    assert!(!other.routes().contains("192.0.2.7"), "{}", other.routes());

    // The namespace it could not see is alive, and so is its state.
    assert!(state.is_dir(), "{} was collected", state.display());
    assert!(pins.is_dir(), "{} was collected", pins.display());
    let listed = held.lwt(&["list"]);
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("192.0.2.9"),
        "{listed:?}"
    );
    let check = held.lwt(&["check"]);
    assert!(check.status.success(), "{check:?}");
}

// ------------------------------------------------------------ kubernetes

fn yaml(rel: &str) -> serde_yaml::Value {
    serde_yaml::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn s(v: &serde_yaml::Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

fn seq(v: &serde_yaml::Value) -> &Vec<serde_yaml::Value> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("not a list: {v:?}"))
}

#[test]
fn the_daemonset_runs_the_agent_on_every_node_with_only_what_it_needs() {
    let ds = yaml("deploy/kubernetes/daemonset.yaml");
    assert_eq!(s(&ds["kind"]), "DaemonSet");
    let pod = &ds["spec"]["template"];
    let spec = &pod["spec"];
    assert_eq!(spec["hostNetwork"].as_bool(), Some(true));
    assert_ne!(
        spec["hostPID"].as_bool(),
        Some(true),
        "hostPID is not needed"
    );
    // Every node: one toleration of everything.
    assert!(seq(&spec["tolerations"])
        .iter()
        .any(|t| s(&t["operator"]) == "Exists" && t.get("key").is_none()));

    let containers = seq(&spec["containers"]);
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    let sc = &c["securityContext"];
    assert_eq!(sc["privileged"].as_bool(), Some(false));
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    let caps = |k: &str| -> BTreeSet<String> {
        seq(&sc["capabilities"][k])
            .iter()
            .map(|v| s(v).to_string())
            .collect()
    };
    assert_eq!(
        caps("add"),
        ["BPF", "NET_ADMIN", "SYS_ADMIN", "PERFMON", "SYS_RESOURCE"]
            .map(String::from)
            .into()
    );
    assert_eq!(caps("drop"), ["ALL".to_string()].into());

    // The host paths lwt works in, mounted where lwt looks for them.
    let volumes = seq(&spec["volumes"]);
    let mounts = seq(&c["volumeMounts"]);
    let mounted_at = |path: &str| -> &serde_yaml::Value {
        let m = mounts
            .iter()
            .find(|m| s(&m["mountPath"]) == path)
            .unwrap_or_else(|| panic!("nothing mounted at {path}"));
        volumes
            .iter()
            .find(|v| v["name"] == m["name"])
            .unwrap_or_else(|| panic!("no volume {:?}", m["name"]))
    };
    for path in ["/sys/fs/bpf", "/run/lwtkit", "/run/netns"] {
        assert_eq!(s(&mounted_at(path)["hostPath"]["path"]), path);
    }

    // The agent's -f file is the ConfigMap's key, in the mounted directory.
    let args: Vec<&str> = seq(&c["args"]).iter().map(s).collect();
    assert_eq!(args.first(), Some(&"agent"));
    let after = |flag: &str| -> &str {
        let i = args
            .iter()
            .position(|a| *a == flag)
            .unwrap_or_else(|| panic!("no {flag} in {args:?}"));
        args[i + 1]
    };
    let file = Path::new(after("-f"));
    let volume = mounted_at(file.parent().expect("a directory").to_str().expect("utf-8"));
    let cm_name = s(&volume["configMap"]["name"]);
    let cm = yaml("deploy/kubernetes/configmap.yaml");
    assert_eq!(s(&cm["kind"]), "ConfigMap");
    assert_eq!(s(&cm["metadata"]["name"]), cm_name);
    let key = file.file_name().expect("a file").to_str().expect("utf-8");
    let config = s(&cm["data"][key]);
    lwtkit::config::ConfigFile::parse(config).expect("the ConfigMap's file parses as a config");

    // Metrics: the port the agent listens on is the one annotated for
    // Prometheus, declared on the container and probed for liveness.
    let port: u16 = after("--metrics")
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .expect("--metrics ADDR:PORT");
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(s(&annotations["prometheus.io/scrape"]), "true");
    assert_eq!(s(&annotations["prometheus.io/port"]), port.to_string());
    assert_eq!(s(&annotations["prometheus.io/path"]), "/metrics");
    let declared = seq(&c["ports"])
        .iter()
        .find(|p| p["containerPort"].as_u64() == Some(u64::from(port)))
        .expect("the metrics port is declared");
    let probe = &c["livenessProbe"]["httpGet"];
    assert_eq!(s(&probe["path"]), "/metrics");
    assert!(
        probe["port"] == declared["name"] || probe["port"].as_u64() == Some(u64::from(port)),
        "liveness probes {:?}",
        probe["port"]
    );
}

#[test]
fn kustomization_names_every_manifest_and_the_image_recipe_ships_only_the_binary() {
    let k = yaml("deploy/kubernetes/kustomization.yaml");
    let listed: BTreeSet<&str> = seq(&k["resources"]).iter().map(s).collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(repo().join("deploy/kubernetes"))
        .expect("deploy/kubernetes")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(
        listed,
        on_disk.iter().map(String::as_str).collect::<BTreeSet<_>>()
    );
    let ds = yaml("deploy/kubernetes/daemonset.yaml");
    let image = s(&ds["spec"]["template"]["spec"]["containers"][0]["image"]);
    let named = s(&k["images"][0]["name"]);
    assert!(image.starts_with(named), "{image} vs {named}");

    let recipe = read("deploy/container/Containerfile");
    let stages: Vec<&str> = recipe.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    assert!(
        recipe.contains("scripts/setup.sh"),
        "built with the repo's setup"
    );
    let runtime = recipe.rsplit("\nFROM ").next().expect("runtime stage");
    let copies: Vec<&str> = runtime.lines().filter(|l| l.starts_with("COPY")).collect();
    assert_eq!(copies, ["COPY --from=build /out/usr/bin/lwt /usr/bin/lwt"]);
}

// ------------------------------------------------------------- packaging

/// A clone of the committed tree (what a new user gets).
fn clean_clone() -> PathBuf {
    let dir = scratch("clone");
    let out = Command::new("git")
        .args(["clone", "--quiet", "--no-hardlinks"])
        .arg(repo())
        .arg(dir.join("src"))
        .output()
        .expect("git runs");
    assert!(out.status.success(), "{out:?}");
    dir
}

#[test]
#[ignore = "builds lwt in release from a fresh clone (kernel programs included): several minutes"]
fn cargo_install_from_a_clean_clone_gives_a_working_lwt() {
    let dir = clean_clone();
    let root = dir.join("root");
    let out = Command::new("cargo")
        .args(["install", "--locked", "--path", "crates/lwt", "--root"])
        .arg(&root)
        .current_dir(dir.join("src"))
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(root.join("bin/lwt"))
        .arg("--version")
        .output()
        .expect("the installed lwt runs");
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("lwt "),
        "{out:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "builds lwt in release and, when missing, cargo-deb: several minutes"]
fn the_debian_package_carries_the_binary_units_completions_man_pages_docs_and_conffile() {
    if Command::new("dpkg-deb").arg("--version").output().is_err() {
        eprintln!("SKIPPED {}: dpkg-deb is not installed", module_path!());
        return;
    }
    let out = Command::new("bash")
        .arg("scripts/package-deb.sh")
        .current_dir(repo())
        .output()
        .expect("package-deb.sh runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let debs: Vec<PathBuf> = std::fs::read_dir(repo().join("target/debian"))
        .expect("target/debian")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "{debs:?}");
    let list = Command::new("dpkg-deb")
        .arg("-c")
        .arg(&debs[0])
        .output()
        .expect("dpkg-deb runs");
    let list = String::from_utf8_lossy(&list.stdout);
    for file in [
        "./usr/bin/lwt",
        "./lib/systemd/system/lwtkit.service",
        "./lib/systemd/system/lwtkit-agent.service",
        "./etc/lwtkit/lwtkit.toml",
        "./usr/share/bash-completion/completions/lwt",
        "./usr/share/zsh/vendor-completions/_lwt",
        "./usr/share/fish/vendor_completions.d/lwt.fish",
        "./usr/share/man/man1/lwt.1.gz",
        "./usr/share/man/man1/lwt-apply.1.gz",
        "./usr/share/man/man1/lwt-filter-rule-add.1.gz",
        "./usr/share/doc/lwtkit/README.md",
        "./usr/share/doc/lwtkit/docs/deploy.md",
        "./usr/share/doc/lwtkit/docs/config.md",
    ] {
        assert!(
            list.lines().any(|l| l.ends_with(file)),
            "{file} is not in the package:\n{list}"
        );
    }
    let conffiles = Command::new("dpkg-deb")
        .args(["-I"])
        .arg(&debs[0])
        .arg("conffiles")
        .output()
        .expect("dpkg-deb runs");
    assert_eq!(
        String::from_utf8_lossy(&conffiles.stdout).trim(),
        "/etc/lwtkit/lwtkit.toml"
    );
}
