//! `lwt new`: the generated project builds, and its `make test` runs every
//! hook's program on the sample packets through `lwt test`: the SYN to
//! :8080 dropped, the rest passed.
mod common;

use std::{path::Path, process::Command};

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("lwtkit-new-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Runs `make test` in `project` with this build's lwt; returns stdout.
fn make_test(project: &Path) -> String {
    let mut cmd = Command::new("make");
    cmd.arg("-C")
        .arg(project)
        .arg("test")
        .arg(format!("LWT={}", env!("CARGO_BIN_EXE_lwt")));
    // A nested cargo (the Rust project) must not build with this test's
    // toolchain and flags.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("CARGO") || k.starts_with("RUST") {
            cmd.env_remove(&k);
        }
    }
    let out = cmd.output().expect("make runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "make test: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn assert_verdicts(stdout: &str) {
    for hook in ["in", "out", "xmit"] {
        assert!(stdout.contains(&format!("== {hook}")), "{stdout}");
    }
    let lines: Vec<&str> = stdout.lines().filter(|l| l.contains(" len ")).collect();
    assert_eq!(lines.len(), 9, "three packets on three hooks: {stdout}");
    for l in lines {
        let want = if l.contains(":8080") {
            "BPF_DROP"
        } else {
            "BPF_OK"
        };
        assert!(l.contains(want), "{l}");
    }
}

#[test]
fn new_c_project_builds_and_its_pcap_test_runs() {
    require_root!();
    let dir = temp_dir("c");
    let out = common::lwt(&[
        "new",
        "drop-demo",
        "--lang",
        "c",
        "--dir",
        dir.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{out:?}");
    let project = dir.join("drop-demo");
    for f in ["drop-demo.c", "Makefile", "packets.pcap"] {
        assert!(project.join(f).is_file(), "{f}");
    }
    assert_verdicts(&make_test(&project));
    assert!(project.join("drop-demo.o").is_file());
    // A second `new` does not overwrite it.
    let again = common::lwt(&["new", "drop-demo", "--dir", dir.to_str().expect("utf-8")]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Builds an aya-ebpf crate with the pinned nightly and bpf-linker: about a
/// minute of both CPUs, worth it: the generated project must build.
#[test]
fn new_rust_project_builds_and_its_pcap_test_runs() {
    require_root!();
    let dir = temp_dir("rust");
    let out = common::lwt(&[
        "new",
        "rdemo",
        "--lang",
        "rust",
        "--dir",
        dir.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_verdicts(&make_test(&dir.join("rdemo")));
    let _ = std::fs::remove_dir_all(&dir);
}
