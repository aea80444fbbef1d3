//! lwtkit's errors: each names what the user got wrong or what the system
//! lacks, so the CLI can print it as is.
use std::path::PathBuf;

use crate::{hook::Hook, route::netlink::NetlinkError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid prefix {0}")]
    InvalidPrefix(String),
    #[error("invalid address `{0}`")]
    InvalidAddress(String),
    #[error("unknown device `{0}` in this network namespace")]
    UnknownDevice(String),
    #[error(
        "unknown routing table `{0}`: use a number, main, local, default or a name from rt_tables"
    )]
    UnknownTable(String),
    #[error("network namespace `{name}` not found ({path} is missing); list them with `ip netns`")]
    MissingNetns { name: String, path: PathBuf },
    #[error("cannot enter network namespace `{name}`: {reason}")]
    EnterNetns {
        name: String,
        reason: std::io::Error,
    },
    #[error("object file {path}: {reason}")]
    Object { path: PathBuf, reason: String },
    #[error("{0}")]
    ProgramSelection(String),
    #[error("program `{program}` is of type {found}, but hook `{hook}` needs {expected}{hint}")]
    WrongProgramType {
        program: String,
        hook: Hook,
        found: String,
        expected: String,
        hint: &'static str,
    },
    #[error("the kernel verifier rejected program `{program}`: {reason}\n--- verifier log (tail) ---\n{log}")]
    Verifier {
        program: String,
        reason: String,
        log: String,
    },
    #[error("loading program `{program}` failed: {reason}")]
    Load { program: String, reason: String },
    #[error("headroom {0} is over the kernel's limit of 256 bytes (LWT_BPF_MAX_HEADROOM)")]
    Headroom(u32),
    #[error("program name `{name}` is {len} bytes; the kernel accepts at most 255 (rename the object or section)")]
    ProgramNameTooLong { name: String, len: usize },
    #[error("pin {0} not found or not readable (is it on bpffs, and are you root?)")]
    MissingPin(PathBuf),
    #[error("unknown built-in program `{0}`; built-ins: {1}")]
    UnknownBuiltin(String, String),
    #[error("{what} needs {caps} (run as root)")]
    Privileges { what: String, caps: String },
    #[error(
        "this kernel cannot attach BPF programs to routes (CONFIG_LWTUNNEL_BPF missing?): {0}"
    )]
    NoLwtBpf(String),
    #[error("bpffs is not mounted at /sys/fs/bpf and mounting it failed: {0}")]
    Bpffs(String),
    #[error("route {0} is not managed by lwtkit (nothing lwtkit attached there); see `lwt list`")]
    NotManaged(String),
    #[error("route {route}: lwtkit attached there on dev {managed}, not {given}")]
    WrongDevice {
        route: String,
        managed: String,
        given: String,
    },
    #[error("route {route} carries a BPF `{hook}` program that lwtkit did not attach (`{name}`); lwtkit could not put it back on detach (a dump names programs but gives no handle to them), so remove it first (`ip route` can)")]
    ForeignHook {
        route: String,
        hook: Hook,
        name: String,
    },
    #[error("route {route} has no `{hook}` hook attached by lwtkit")]
    HookNotAttached { route: String, hook: Hook },
    #[error("route {route}: {reason}")]
    Route { route: String, reason: NetlinkError },
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("lwtkit state {path}: {reason}")]
    State { path: PathBuf, reason: String },
    #[error("another lwt command holds the lock of this namespace ({path}): {holder}; gave up after {waited} s (LWT_LOCK_TIMEOUT sets the wait)")]
    LockTimeout {
        path: PathBuf,
        waited: f64,
        holder: String,
    },
    #[error("lwt runs under `ip netns exec {name}`, whose private /sys hides lwtkit's pins on /sys/fs/bpf; run `lwt -n {name} ...` instead")]
    PrivateSys { name: String },
    #[error("route {route} was changed outside lwtkit: it should carry {expected} but carries {found}. lwtkit left the route untouched and dropped its own records of it{hint}")]
    Drift {
        route: String,
        expected: String,
        found: String,
        hint: &'static str,
    },
    #[error("hook `{hook}` of route {route} belongs to {owner}; {verb} will not replace or remove it (`{remover}` does)")]
    OwnedHook {
        route: String,
        hook: Hook,
        owner: String,
        verb: String,
        remover: String,
    },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
