//! Builds lwtkit's kernel programs (crates/lwtkit-ebpf) for
//! `bpfel-unknown-none` with the kernel crate's pinned nightly and
//! bpf-linker, then hands their paths to the library for `include_bytes!`.
//!
//! The nested cargo must not inherit this build's CARGO*/RUST* variables,
//! or it would build with the outer (stable) compiler and flags.
use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

/// Kernel program binaries of crates/lwtkit-ebpf, exported by name as
/// `LWTKIT_<NAME>_OBJ`: the library embeds the built-ins, lwtkit's tests
/// the test-only `lwtkit-nat-test`.
const PROGRAMS: &[&str] = &[
    "lwtkit-count",
    "lwtkit-decap",
    "lwtkit-encap",
    "lwtkit-filter",
    "lwtkit-nat-test",
    "lwtkit-pass",
    "lwtkit-seg6",
    "lwtkit-trace",
];

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let ebpf = manifest
        .join("../lwtkit-ebpf")
        .canonicalize()
        .expect("crates/lwtkit-ebpf exists");
    let common = manifest.join("../lwtkit-common");
    for dir in [ebpf.join("src"), common.join("src")] {
        println!("cargo:rerun-if-changed={}", dir.display());
    }
    for file in ["Cargo.toml", "Cargo.lock", "rust-toolchain.toml"] {
        println!("cargo:rerun-if-changed={}", ebpf.join(file).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        common.join("Cargo.toml").display()
    );

    let out = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));
    let target_dir = out.join("ebpf-target");
    build_kernel_programs(&ebpf, &target_dir);

    let release = target_dir.join("bpfel-unknown-none/release");
    for name in PROGRAMS {
        let obj = release.join(name);
        assert!(
            obj.exists(),
            "kernel program {} was not built",
            obj.display()
        );
        let var = name.replace('-', "_").to_uppercase();
        println!("cargo:rustc-env={var}_OBJ={}", obj.display());
    }
}

fn build_kernel_programs(ebpf: &Path, target_dir: &Path) {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(ebpf);
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO") || key.starts_with("RUST") {
            cmd.env_remove(key.as_ref());
        }
    }
    cmd.env(
        "CARGO_ENCODED_RUSTFLAGS",
        ["-Cdebuginfo=2", "-Clink-arg=--btf"].join("\x1f"),
    )
    .args(["build", "--release", "--locked", "-Z", "build-std=core"])
    .args(["--target", "bpfel-unknown-none", "--bins"])
    .arg("--target-dir")
    .arg(target_dir);
    let status = cmd.status().unwrap_or_else(|e| {
        panic!("cannot run cargo for the kernel programs ({e}); run scripts/setup.sh first")
    });
    assert!(
        status.success(),
        "building the kernel programs failed: run scripts/setup.sh (nightly-2026-05-19 + rust-src, bpf-linker with LLVM 22)"
    );
}
