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
