//! `lwt export`, `lwt apply -f`, `lwt diff -f`: one file states what lwtkit
//! holds in a namespace; apply converges on it (and only touches what
//! differs), diff says what differs, drift made outside lwtkit included.
mod common;

use std::path::{Path, PathBuf};

use common::{compile_bpf, json, serve_tcp, tcp_works, tcp_works_soon, Netns, Pair};
use serde_json::Value;

/// A config file of its own for each test.
fn write(tag: &str, text: &str) -> PathBuf {
    let path = common::scratch(&format!("{tag}.toml"));
    std::fs::write(&path, text).expect("write config");
    path
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// A JSON listing without what changes with every load or packet: ids,
/// tags, counters, the `#<id>` of program names and pin paths.
fn stable(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| {
                    ![
                        "id",
                        "tag",
                        "packets",
                        "bytes",
                        "dropped",
                        "stats",
                        "unmatched",
                        "map_bytes",
                        "pin",
                        "counters",
                        "logged",
                        "suppressed",
                        "malformed_packets",
                        "passed",
                        "refused",
                        // The host's addresses as they are now (a link-local
                        // one may still be in DAD at the first look).
                        "accepting",
                        // What a policy's programs are specialised for
                        // depends on its history (one-rule changes only
                        // widen them; a replace, as `apply` makes, narrows).
                        "program",
                        "program_spec",
                    ]
                    .contains(&k.as_str())
                })
                .map(|(k, v)| (k.clone(), stable(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(stable).collect()),
        Value::String(s) => Value::String(
            s.split(' ')
                .map(|w| match w.rsplit_once('#') {
                    Some((name, id)) if id.chars().all(|c| c.is_ascii_digit()) => name,
                    _ => w,
                })
                .collect::<Vec<_>>()
                .join(" "),
        ),
        other => other.clone(),
    }
}

/// What a user sees of lwtkit's state: every listing, minus ids and counters.
fn observed(ns: &Netns) -> Vec<Value> {
    [
        &["list", "-j"][..],
        &["filter", "list", "-j"],
        &["encap", "list", "-j"],
        &["decap", "list", "-j"],
        &["seg6local", "list", "-j"],
    ]
    .iter()
    .map(|args| stable(&json(&ns.lwt_ok(args))))
    .collect()
}

/// Program ids of every route hook and SID.
fn program_ids(ns: &Netns) -> String {
    let mut ids = Vec::new();
    for line in ns.routes().lines() {
        for w in line.split_whitespace() {
            if let Some((_, id)) = w.rsplit_once('#') {
                ids.push(format!(
                    "{} {id}",
                    line.split_whitespace().next().unwrap_or("")
                ));
            }
        }
    }
    ids.join("\n")
}

/// One of each kind on `a` of a pair, made with the verbs: a count hook,
/// an object with a custom section (prog_type), a filter policy dropping
/// TCP 8080 to B, a tunnel, a decapsulator and a SID.
fn one_of_each(pair: &Pair) {
    let a = &pair.a;
    let obj = compile_bpf("custom_section");
    a.count_on("10.0.0.3/32", "va", "out", &[]);
    a.lwt_ok(&[
        "attach",
        "10.0.0.9/32",
        "--dev",
        "va",
        "--hook",
        "xmit",
        "--obj",
        p(&obj),
        "--prog-type",
        "lwt_xmit",
        "--headroom",
        "16",
    ]);
    a.lwt_ok(&["filter", "create", "web", "--fragments", "drop"]);
    a.lwt_ok(&[
        "filter",
        "rule",
        "add",
        "web",
        "dst",
        "10.0.0.3/32",
        "proto",
        "tcp",
        "dport",
        "8080",
        "drop",
        "log",
    ]);
    a.lwt_ok(&[
        "filter", "rule", "add", "web", "proto", "udp", "dport", "9", "drop",
    ]);
    a.lwt_ok(&[
        "filter",
        "attach",
        "web",
        "10.0.0.3/32",
        "--dev",
        "va",
        "--hook",
        "xmit",
    ]);
    a.lwt_ok(&[
        "encap",
        "add",
        "10.9.0.0/24",
        "--dev",
        "va",
        "--type",
        "fou",
        "--remote",
        "10.0.0.3",
        "--port",
        "5555",
    ]);
    a.lwt_ok(&["decap", "add", "--dev", "va", "--type", "ipip,gre"]);
    a.lwt_ok(&[
        "seg6local",
        "add",
        "fc00::b",
        "--dev",
        "va",
        "--builtin",
        "end-dt6",
        "--dt6-table",
        "local",
    ]);
}

#[test]
fn export_then_reset_then_apply_gives_back_the_same_state_and_traffic() {
    require_root!();
    let pair = Pair::new("cfgrt");
    let a = &pair.a;
    serve_tcp(&pair.b, &["10.0.0.3:8080", "10.0.0.3:8081"]);
    one_of_each(&pair);
    assert!(tcp_works_soon(a, "10.0.0.3:8081"));
    assert!(!tcp_works(a, "10.0.0.3:8080"), "the policy drops 8080");
    let before = observed(a);
    let routes = a.routes();

    let file = write("roundtrip", &a.lwt_ok(&["export"]));
    a.lwt_ok(&["reset"]);
    assert!(
        tcp_works_soon(a, "10.0.0.3:8080"),
        "nothing filters after reset"
    );
    let out = a.lwt_ok(&["apply", "-f", p(&file)]);
    assert!(out.contains("7 change(s) applied"), "{out}");

    assert_eq!(observed(a), before);
    let strip = |s: &str| {
        s.split_whitespace()
            .map(|w| w.rsplit_once('#').map_or(w, |(n, _)| n))
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(strip(&a.routes()), strip(&routes));
    assert!(tcp_works_soon(a, "10.0.0.3:8081"));
    assert!(
        !tcp_works(a, "10.0.0.3:8080"),
        "the policy drops 8080 again"
    );
    assert!(a.findings().is_empty(), "{:?}", a.findings());
    // The file of the applied state is the file applied.
    assert_eq!(
        a.lwt_ok(&["export"]),
        std::fs::read_to_string(&file).expect("file")
    );
}

#[test]
fn a_second_apply_changes_nothing_and_keeps_program_ids() {
    require_root!();
    let pair = Pair::new("cfgid");
    let a = &pair.a;
    let file = write(
        "again",
        r#"
[[attach]]
route = "10.0.0.3/32"
dev = "va"
hook = "out"
builtin = "count"

[[filter]]
name = "web"
rules = ["dst 10.0.0.3/32 proto tcp dport 8080 drop"]
attach = [{ route = "10.0.0.3/32", dev = "va", hook = "xmit" }]

[[tunnel]]
route = "10.9.0.0/24"
dev = "va"
type = "ipip"
remote = "10.0.0.3"

[[sid]]
sid = "fc00::b"
dev = "va"
builtin = "end"
"#,
    );
    a.lwt_ok(&["apply", "-f", p(&file)]);
    let ids = program_ids(a);
    let policy = json(&a.lwt_ok(&["filter", "show", "web", "-j"]));
    assert_eq!(a.lwt_ok(&["apply", "-f", p(&file)]).trim(), "no changes");
    let again = json(&a.lwt_ok(&["apply", "-j", "-f", p(&file)]));
    assert_eq!(again["changes"], serde_json::json!([]), "{again}");
    assert_eq!(program_ids(a), ids, "nothing was reloaded");
    let now = json(&a.lwt_ok(&["filter", "show", "web", "-j"]));
    assert_eq!(
        now["rules"][0]["id"], policy["rules"][0]["id"],
        "rules kept their ids"
    );
    let out = a.lwt(&["diff", "-f", p(&file)]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("in sync"));
}

#[test]
fn ip_route_replace_is_drift_that_diff_reports_and_apply_repairs() {
    require_root!();
    let pair = Pair::new("cfgdr");
    let a = &pair.a;
    serve_tcp(&pair.b, &["10.0.0.3:8080", "10.0.0.3:8081"]);
    let file = write(
        "drift",
        r#"
[[filter]]
name = "web"
rules = ["dst 10.0.0.3/32 proto tcp dport 8080 drop"]
attach = [{ route = "10.0.0.3/32", dev = "va", hook = "xmit" }]
"#,
    );
    a.lwt_ok(&["apply", "-f", p(&file)]);
    assert!(tcp_works_soon(a, "10.0.0.3:8081"));
    assert!(!tcp_works(a, "10.0.0.3:8080"));
    // A routing daemon rewrites the route: the filter is gone.
    a.ip(&["route", "replace", "10.0.0.3/32", "dev", "va"]);
    assert!(
        tcp_works(a, "10.0.0.3:8080"),
        "the rewrite took the filter off"
    );
    let out = a.lwt(&["diff", "-f", p(&file)]);
    assert_eq!(out.status.code(), Some(1), "diff exits 1 when it differs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("repair 10.0.0.3/32 table main hook xmit")
            && text.contains("changed outside lwtkit"),
        "{text}"
    );
    let plan = json(&String::from_utf8_lossy(
        &a.lwt(&["diff", "-j", "-f", p(&file)]).stdout,
    ));
    assert_eq!(plan["changes"][0]["action"], "repair", "{plan}");

    let out = a.lwt_ok(&["apply", "-f", p(&file)]);
    assert!(out.contains("1 change(s) applied"), "{out}");
    assert!(!tcp_works(a, "10.0.0.3:8080"), "the filter is back");
    assert!(tcp_works(a, "10.0.0.3:8081"));
    assert_eq!(a.lwt(&["diff", "-f", p(&file)]).status.code(), Some(0));
    assert!(a.findings().is_empty(), "{:?}", a.findings());
}

#[test]
fn a_bad_file_changes_nothing() {
    require_root!();
    let pair = Pair::new("cfgbad");
    let a = &pair.a;
    a.count_on("10.0.0.3/32", "va", "out", &[]);
    let good = r#"
[[attach]]
route = "10.0.0.3/32"
dev = "va"
hook = "xmit"
builtin = "pass"

[[filter]]
name = "web"
rules = ["dport 80 drop"]
attach = [{ route = "10.0.0.4/32", dev = "va", hook = "out" }]
"#;
    let bad = [
        ("key", good.replace("hook = \"xmit\"", "hook = \"xmit\"\nheadrom = 4"), "`headrom`"),
        ("rule", good.replace("dport 80 drop", "dport 80 dorp"), "rule 1"),
        ("dev", good.replace("\"va\", hook", "\"nope\", hook"), "unknown device `nope`"),
        ("obj", good.replace("builtin = \"pass\"", "obj = \"missing.o\""), "missing.o"),
        ("prefix", good.replace("10.0.0.4/32", "10.0.0.4/16"), "host bits"),
        ("twice", format!("{good}\n[[attach]]\nroute = \"10.0.0.3/32\"\ndev = \"va\"\nhook = \"xmit\"\nbuiltin = \"count\"\n"), "named twice"),
    ];
    let routes = a.routes();
    let listing = observed(a);
    for (tag, text, says) in bad {
        let file = write(&format!("bad-{tag}"), &text);
        let err = a.lwt_err(&["apply", "-f", p(&file)]);
        assert!(err.contains(says), "{tag}: {err}");
        assert!(
            err.contains(p(&file)),
            "{tag}: the error names the file: {err}"
        );
        assert_eq!(
            a.lwt(&["diff", "-f", p(&file)]).status.code(),
            Some(2),
            "{tag}"
        );
        assert_eq!(a.routes(), routes, "{tag}: routes untouched");
        assert_eq!(observed(a), listing, "{tag}: lwtkit's state untouched");
    }
}

#[test]
fn a_changed_rule_set_is_one_replace_and_prune_removes_what_the_file_does_not_name() {
    require_root!();
    let pair = Pair::new("cfgpr");
    let a = &pair.a;
    let first = write(
        "prune-1",
        r#"
[[attach]]
route = "10.0.0.3/32"
dev = "va"
hook = "out"
builtin = "count"

[[filter]]
name = "web"
rules = ["dport 80 drop", "dport 81 drop"]
attach = [{ route = "10.0.0.3/32", dev = "va", hook = "xmit" }]

[[decap]]
dev = "va"
type = ["ipip"]
"#,
    );
    a.lwt_ok(&["apply", "-f", p(&first)]);
    let second = write(
        "prune-2",
        r#"
[[filter]]
name = "web"
rules = ["dport 80 drop", "dport 82 drop"]
attach = [{ route = "10.0.0.3/32", dev = "va", hook = "xmit" }]
"#,
    );
    let check = json(&a.lwt_ok(&["apply", "-j", "--check", "-f", p(&second)]));
    assert_eq!(check["applied"], false);
    assert_eq!(
        check["changes"].as_array().map(Vec::len),
        Some(1),
        "{check}"
    );
    assert_eq!(
        check["unnamed"].as_array().map(Vec::len),
        Some(2),
        "{check}"
    );
    let rules = |a: &Netns| -> Vec<String> {
        json(&a.lwt_ok(&["filter", "show", "web", "-j"]))["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .map(|r| r["text"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(
        rules(a),
        ["dport 80 drop", "dport 81 drop"],
        "--check changed nothing"
    );
    let done = json(&a.lwt_ok(&["apply", "-j", "-f", p(&second)]));
    let changes = done["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 1, "{done}");
    assert_eq!(changes[0]["object"], "policy web");
    assert_eq!(rules(a), ["dport 80 drop", "dport 82 drop"]);
    assert_eq!(
        json(&a.lwt_ok(&["decap", "list", "-j"]))
            .as_array()
            .map(Vec::len),
        Some(1),
        "kept without --prune"
    );
    let out = a.lwt(&["diff", "--prune", "-f", p(&second)]);
    assert_eq!(out.status.code(), Some(1));
    a.lwt_ok(&["apply", "--prune", "-f", p(&second)]);
    assert_eq!(
        json(&a.lwt_ok(&["decap", "list", "-j"])),
        serde_json::json!([])
    );
    let list = a.lwt_ok(&["list"]);
    assert!(!list.contains("lwtkit-count"), "{list}");
    assert!(list.contains("filter policy web"), "{list}");
    assert_eq!(
        a.lwt(&["diff", "--prune", "-f", p(&second)]).status.code(),
        Some(0)
    );
}

#[test]
fn an_apply_killed_midway_converges_on_the_next() {
    require_root!();
    let text = r#"
[[attach]]
route = "10.0.0.3/32"
dev = "va"
hook = "out"
builtin = "count"

[[filter]]
name = "web"
rules = ["dst 10.0.0.3/32 proto tcp dport 8080 drop"]
attach = [{ route = "10.0.0.3/32", dev = "va", hook = "xmit" }]

[[tunnel]]
route = "10.9.0.0/24"
dev = "va"
type = "gre"
remote = "10.0.0.3"
"#;
    // Killed in the policy's rule change, in the tunnel's map entry, and in
    // a route change: each leaves part of the file applied.
    for point in ["filter-commit:flip", "encap:map", "attach:route"] {
        let pair = Pair::new("cfgkill");
        let a = &pair.a;
        let file = write(&format!("kill-{}", point.replace(':', "-")), text);
        let out = a.lwt_env(&[("LWT_FAILPOINT", point)], &["apply", "-f", p(&file)]);
        assert!(!out.status.success(), "{point}: the apply was killed");
        assert_eq!(
            a.lwt(&["diff", "-f", p(&file)]).status.code(),
            Some(1),
            "{point}"
        );
        a.lwt_ok(&["apply", "-f", p(&file)]);
        assert!(a.findings().is_empty(), "{point}: {:?}", a.findings());
        assert_eq!(
            a.lwt(&["diff", "-f", p(&file)]).status.code(),
            Some(0),
            "{point}"
        );
        assert_eq!(
            a.lwt_ok(&["apply", "-f", p(&file)]).trim(),
            "no changes",
            "{point}"
        );
    }
}

#[test]
fn a_new_default_verdict_in_the_file_is_set_live_on_every_route_of_the_policy() {
    require_root!();
    let pair = Pair::new("cfgdef");
    let (a, b) = (&pair.a, &pair.b);
    serve_tcp(b, &["10.0.0.3:8080", "10.0.0.3:8081"]);
    let text = |default: &str| {
        format!(
            r#"
[[filter]]
name = "web"
default = "{default}"
rules = ["proto tcp dport 8080 drop"]
attach = [
  {{ route = "10.0.0.3/32", dev = "va", hook = "xmit" }},
  {{ route = "10.0.0.0/24", dev = "va", hook = "out" }},
]
"#
        )
    };
    let allow = write("default-allow", &text("allow"));
    a.lwt_ok(&["apply", "-f", p(&allow)]);
    assert!(tcp_works_soon(a, "10.0.0.3:8081"));
    assert!(!tcp_works(a, "10.0.0.3:8080"), "the rule drops 8080");
    let ids = program_ids(a);

    let drop = write("default-drop", &text("drop"));
    let out = a.lwt(&["diff", "-f", p(&drop)]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("default allow -> drop"), "{said}");

    let done = json(&a.lwt_ok(&["apply", "-j", "-f", p(&drop)]));
    let changes = done["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 1, "one change: {done}");
    assert_eq!(changes[0]["object"], "policy web");
    assert_eq!(changes[0]["action"], "update");
    // Live, in the map every attachment reads: the routes keep their programs.
    assert_eq!(program_ids(a), ids, "no route was touched");
    assert!(!tcp_works(a, "10.0.0.3:8081"), "no rule allows 8081 now");
    assert!(!tcp_works(a, "10.0.0.3:8080"));
    let shown = json(&a.lwt_ok(&["filter", "show", "web", "-j"]));
    assert_eq!(shown["default"], "drop", "{shown}");
    assert_eq!(shown["attachments"].as_array().map(Vec::len), Some(2));
    assert_eq!(a.lwt(&["diff", "-f", p(&drop)]).status.code(), Some(0));
    assert!(a.findings().is_empty(), "{:?}", a.findings());

    // And back.
    a.lwt_ok(&["apply", "-f", p(&allow)]);
    assert!(tcp_works_soon(a, "10.0.0.3:8081"));
    assert!(!tcp_works(a, "10.0.0.3:8080"));
}

/// Compiles `examples/bpf/drop_tcp_8080.c` dropping TCP to `port` into
/// `out` (the same path for both builds: a rebuild in place).
fn build_drop(port: u16, out: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/bpf/drop_tcp_8080.c");
    let text = std::fs::read_to_string(&src).expect("example source");
    let changed = text.replace("bswap16(8080)", &format!("bswap16({port})"));
    assert_ne!(port == 8080, changed != text, "the port is in the source");
    let c = out.with_extension("c");
    std::fs::write(&c, changed).expect("write source");
    let arch_include = format!("-I/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    let built = std::process::Command::new("clang")
        .args(["-O2", "-g", "-target", "bpf", &arch_include, "-c"])
        .arg(&c)
        .arg("-o")
        .arg(out)
        .output()
        .expect("clang is installed (scripts/setup.sh)");
    assert!(built.status.success(), "{built:?}");
}

#[test]
fn an_object_rebuilt_at_the_same_path_is_a_change_that_apply_loads() {
    require_root!();
    let pair = Pair::new("cfgobj");
    let (a, b) = (&pair.a, &pair.b);
    serve_tcp(b, &["10.0.0.3:8080", "10.0.0.3:8081"]);
    let dir = std::env::temp_dir().join(format!("lwtkit-config-obj-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let obj = dir.join("drop.o");
    build_drop(8080, &obj);
    let file = write(
        "rebuilt",
        &format!(
            r#"
[[attach]]
route = "10.0.0.3/32"
dev = "va"
hook = "xmit"
obj = "{}"
section = "lwt_xmit"
"#,
            p(&obj)
        ),
    );
    a.lwt_ok(&["apply", "-f", p(&file)]);
    assert!(tcp_works_soon(a, "10.0.0.3:8081"));
    assert!(!tcp_works(a, "10.0.0.3:8080"));
    assert_eq!(a.lwt(&["diff", "-f", p(&file)]).status.code(), Some(0));
    let ids = program_ids(a);

    // Rebuilt in place: the same path and section, other bytes.
    build_drop(8081, &obj);
    let out = a.lwt(&["diff", "-f", p(&file)]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("the file changed since it was attached"),
        "{said}"
    );
    let done = json(&a.lwt_ok(&["apply", "-j", "-f", p(&file)]));
    assert_eq!(done["changes"].as_array().map(Vec::len), Some(1), "{done}");
    assert_ne!(program_ids(a), ids, "the new build was loaded");
    assert!(
        tcp_works_soon(a, "10.0.0.3:8080"),
        "the new build lets 8080 through"
    );
    assert!(!tcp_works(a, "10.0.0.3:8081"), "and drops 8081");
    assert_eq!(a.lwt(&["diff", "-f", p(&file)]).status.code(), Some(0));
    let second = json(&a.lwt_ok(&["apply", "-j", "-f", p(&file)]));
    assert_eq!(second["changes"], serde_json::json!([]), "{second}");
    let _ = std::fs::remove_dir_all(&dir);
}
