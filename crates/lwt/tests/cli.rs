//! The CLI beside the tools it sits with: JSON errors under `-j`,
//! completions and man pages, and `-v` showing each kernel change.
mod common;

use common::{json, lwt, Pair};

#[test]
fn json_errors_are_one_object_on_stderr_with_the_usual_exit_codes() {
    // A usage error: exit 2 as clap's, the missing flags named.
    let out = lwt(&["-j", "attach", "10.0.0.0/24"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let e = json(String::from_utf8_lossy(&out.stderr).trim());
    assert_eq!(e["kind"], "usage", "{e}");
    assert!(
        e["error"].as_str().expect("a message").contains("--dev"),
        "{e}"
    );

    // A refusal by lwtkit: exit 1, the module as the kind.
    let out = lwt(&["-j", "-n", "lwtt-no-such-namespace", "list"]);
    assert_eq!(out.status.code(), Some(1));
    let e = json(String::from_utf8_lossy(&out.stderr).trim());
    assert_eq!(e["kind"], "system", "{e}");
    assert!(e["error"]
        .as_str()
        .expect("a message")
        .contains("lwtt-no-such-namespace"));

    // Without -j: the sentence as before.
    let out = lwt(&["-n", "lwtt-no-such-namespace", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("lwt: error: network namespace"));
}

#[test]
fn completions_load_in_bash_and_name_the_verbs() {
    let out = lwt(&["completions", "bash"]);
    assert!(out.status.success());
    let script = String::from_utf8_lossy(&out.stdout);
    assert!(script.contains("filter") && script.contains("encap"));
    let path = std::env::temp_dir().join(format!("lwt-completion-{}.bash", std::process::id()));
    std::fs::write(&path, script.as_bytes()).expect("temp file");
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg(&path)
        .output()
        .expect("bash");
    let _ = std::fs::remove_file(&path);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    for shell in ["zsh", "fish"] {
        let out = lwt(&["completions", shell]);
        assert!(out.status.success() && !out.stdout.is_empty(), "{shell}");
    }
}

#[test]
fn man_pages_are_written_for_every_verb() {
    let dir = std::env::temp_dir().join(format!("lwt-man-{}", std::process::id()));
    let out = lwt(&["man", "--dir", dir.to_str().expect("utf-8")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for page in [
        "lwt.1",
        "lwt-attach.1",
        "lwt-filter-rule-add.1",
        "lwt-encap-add.1",
    ] {
        let text =
            std::fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH"), "{page} is roff");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn verbose_shows_each_route_change_lwtkit_makes() {
    require_root!();
    let p = Pair::new("cliv");
    let out = p.a.lwt(&[
        "-v",
        "attach",
        "10.9.0.0/24",
        "--dev",
        "va",
        "--hook",
        "out",
        "--builtin",
        "count",
    ]);
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("kernel: loaded program lwtkit-count"), "{log}");
    assert!(
        log.contains("kernel: route add 10.9.0.0/24 table 254"),
        "{log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "no colour codes when stderr is not a terminal: {log}"
    );
    let out =
        p.a.lwt_env(&[("LWT_LOG", "debug")], &["detach", "10.9.0.0/24"]);
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("kernel: route del 10.9.0.0/24"), "{log}");
    // Quiet by default.
    p.a.count_on("10.9.0.0/24", "va", "out", &[]);
    let out = p.a.lwt(&["detach", "10.9.0.0/24"]);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Keys lwt's JSON never carries (internal fields, or another verb's word
/// for the same thing): docs/json.md.
const NOT_IN_THE_SCHEMA: [&str; 11] = [
    "sid",
    "table_name",
    "pin",
    "cells",
    "generation",
    "next_id",
    "rules_version",
    "journal_len",
    "both_generations",
    "carried",
    "kinds",
];

/// Checks one JSON value against docs/json.md's common rules; returns the
/// problems found, with their paths.
fn schema_problems(v: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    use serde_json::Value;
    match v {
        Value::Null => out.push(format!("{path}: null (absent values are absent keys)")),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                schema_problems(item, &format!("{path}[{i}]"), out);
            }
        }
        Value::Object(map) => {
            if map.get("route").is_some_and(Value::is_string)
                && !(map.contains_key("dst") && map.contains_key("table"))
            {
                out.push(format!("{path}: a route without its dst and table keys"));
            }
            for (k, v) in map {
                let at = format!("{path}.{k}");
                if NOT_IN_THE_SCHEMA.contains(&k.as_str()) {
                    out.push(format!("{at}: not a key of lwt's JSON"));
                }
                let ok = match k.as_str() {
                    "table" => v.is_string(),
                    "dst" => v.as_str().is_some_and(|s| {
                        s.parse::<ipnet::IpNet>().is_ok() || s.parse::<std::net::IpAddr>().is_ok()
                    }),
                    "hook" => v
                        .as_str()
                        .is_some_and(|h| ["in", "out", "xmit", "seg6local"].contains(&h)),
                    "origin" => v.is_string(),
                    "policy" => v.is_string(),
                    _ => true,
                };
                if !ok {
                    out.push(format!("{at}: {v} is not of the documented shape"));
                }
                schema_problems(v, &at, out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_verbs_json_follows_one_schema() {
    require_root!();
    let p = Pair::new("clij");
    let obj_out = common::compile_bpf("drop_tcp_8080");
    let obj = obj_out.to_str().expect("utf-8");
    let rules = common::scratch("schema.rules");
    std::fs::write(
        &rules,
        "proto udp dport 53 drop\ndst 10.0.0.3/32 proto tcp dport 8080 drop log\n",
    )
    .expect("rules file");
    let rules = rules.to_str().expect("utf-8").to_string();
    let config = common::scratch("schema.toml");
    let config = config.to_str().expect("utf-8").to_string();
    let steps: Vec<Vec<&str>> = vec![
        vec![
            "attach",
            "10.0.0.3/32",
            "--dev",
            "va",
            "--hook",
            "out",
            "--builtin",
            "count",
        ],
        vec![
            "attach",
            "10.0.0.3/32",
            "--dev",
            "va",
            "--hook",
            "xmit",
            "--obj",
            obj,
        ],
        vec!["filter", "create", "web"],
        vec!["filter", "set", "web", "--fragments", "drop"],
        vec![
            "filter", "rule", "add", "web", "proto", "tcp", "dport", "22", "drop",
        ],
        vec!["filter", "replace", "web", "--file", &rules],
        vec!["filter", "rule", "del", "web", "3"],
        vec![
            "filter",
            "attach",
            "web",
            "10.0.0.4/32",
            "--dev",
            "va",
            "--hook",
            "out",
        ],
        vec![
            "encap",
            "add",
            "10.9.0.0/24",
            "--dev",
            "va",
            "--type",
            "vxlan",
            "--remote",
            "10.0.0.3",
            "--vni",
            "5",
            "--inner-dst-mac",
            "02:00:00:00:00:01",
        ],
        vec!["decap", "add", "--dev", "va", "--type", "ipip,gre"],
        vec![
            "seg6local",
            "add",
            "fc00:1::1/128",
            "--dev",
            "va",
            "--builtin",
            "end",
        ],
        vec!["filter", "create", "nat"],
        vec![
            "filter",
            "rule",
            "add",
            "nat",
            "src",
            "10.0.0.2/32",
            "snat",
            "203.0.113.7",
        ],
        vec![
            "filter",
            "attach",
            "nat",
            "10.0.0.5/32",
            "--dev",
            "va",
            "--hook",
            "xmit",
        ],
        vec!["filter", "show", "nat"],
        vec!["export", "-o", &config],
        vec!["apply", "-f", &config, "--check"],
        vec!["diff", "-f", &config],
        vec!["apply", "-f", &config],
        vec![
            "nat",
            "add",
            "--inside",
            "10.8.0.0/24",
            "--public",
            "198.51.100.0/24",
            "--out-route",
            "10.0.0.0/24",
            "--public-dev",
            "va",
        ],
        vec!["nat", "list"],
        vec!["list"],
        vec!["stats"],
        vec!["builtins"],
        vec!["check"],
        vec!["hooks"],
        vec!["filter", "show", "web"],
        vec!["filter", "list"],
        vec!["encap", "list"],
        vec!["decap", "list"],
        vec!["seg6local", "list"],
        vec![
            "test",
            "--hook",
            "out",
            "--builtin",
            "pass",
            "--packet",
            "udp 10.0.0.2:1 > 10.0.0.3:2",
        ],
        vec![
            "test",
            "--hook",
            "out",
            "--policy",
            "web",
            "--packet",
            "udp 10.0.0.2:1 > 10.0.0.3:53",
        ],
        vec!["stats", "--watch", "--interval", "0.1", "--count", "1"],
        vec!["seg6local", "del", "fc00:1::1/128"],
        vec!["decap", "del", "--dev", "va"],
        vec!["encap", "del", "10.9.0.0/24"],
        vec!["filter", "detach", "web", "10.0.0.4/32"],
        vec!["filter", "delete", "web"],
        vec!["filter", "detach", "nat", "10.0.0.5/32"],
        vec!["filter", "delete", "nat"],
        vec!["nat", "del", "--inside", "10.8.0.0/24"],
        vec!["detach", "10.0.0.3/32", "--hook", "xmit"],
        vec!["detach", "10.0.0.3/32"],
        vec!["reset"],
    ];
    let mut problems = Vec::new();
    for step in &steps {
        let mut args = vec!["-j"];
        args.extend(step.iter().copied());
        let stdout = p.a.lwt_ok(&args);
        let lines: Vec<&str> = stdout.lines().filter(|l| !l.is_empty()).collect();
        assert!(!lines.is_empty(), "lwt {} printed nothing", step.join(" "));
        for line in lines {
            let v = json(line);
            schema_problems(&v, &format!("lwt -j {}", step.join(" ")), &mut problems);
        }
    }
    // doctor exits 1 when a check fails, its JSON is the same either way.
    let out = p.a.lwt(&["-j", "doctor"]);
    schema_problems(
        &json(&String::from_utf8_lossy(&out.stdout)),
        "lwt -j doctor",
        &mut problems,
    );
    let _ = std::fs::remove_file(&config);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
