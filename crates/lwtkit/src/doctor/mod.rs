//! `lwt doctor`: is this host ready for LWT programs, and what will bite?
//! Gathers facts (kernel, privileges, mounts, sysctls, a throwaway
//! namespace's answers, lwtkit's own state read-only) and hands each to a
//! pure decision in [`checks`]. It never fails itself: what it cannot
//! learn (without privileges, say) becomes a check that says so.
pub mod checks;
pub mod sandbox;

use std::path::Path;

use libbpf_rs::{libbpf_sys, ProgramType};
use serde::Serialize;

use crate::{
    encap::{decap::DecapRecord, TunnelRecord},
    ns::Namespace,
    probe::helpers::HELPERS,
    route::{codec::LwtBpf, netlink::Rtnl, ops},
    system::{self, Capability},
};
use checks::Version;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One check: a warning or failure says what to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether any check failed (`lwt doctor` exits 1).
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.status == Status::Fail)
    }
}

/// What trying a feature in the throwaway namespace showed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sandboxed {
    Works,
    /// The kernel refused it: the reason.
    Missing(String),
    /// It could not be tried (no privileges, ...): the reason.
    NotProbed(String),
}

/// Examines this host (in the current network namespace).
pub fn run() -> Report {
    let release = system::kernel_release();
    let v = Version::parse(&release);
    let bpf = system::has_capability(Capability::Bpf);
    let net_admin = system::has_capability(Capability::NetAdmin);
    let sys_admin = system::has_capability(Capability::SysAdmin);
    let private_sys = system::private_sys_of_ip_netns_exec();
    let sandbox = sandbox::probe();
    let usage = Usage::read();

    let mut out = vec![
        checks::kernel(&release, v),
        checks::privileges(bpf, net_admin, sys_admin),
        checks::netns_exec(private_sys.as_deref()),
        checks::bpffs(system::is_bpffs(Path::new(system::BPFFS))),
        checks::btf(Path::new("/sys/kernel/btf/vmlinux").exists()),
        checks::sandboxed("lwt-bpf", "a route with a BPF program (encap bpf xmit)", &sandbox.lwt_bpf, Status::Fail, "the kernel lacks CONFIG_LWTUNNEL_BPF: lwtkit cannot work here; use a kernel built with it"),
        checks::sandboxed("seg6", "an SRv6 route (encap seg6 mode encap)", &sandbox.seg6, Status::Warn, "the kernel lacks CONFIG_IPV6_SEG6_LWTUNNEL: `lwt seg6local` and SRv6 routes cannot work; use a kernel built with it (or load the module)"),
        checks::sandboxed("seg6-bpf", "a seg6local End.BPF route", &sandbox.seg6_bpf, Status::Warn, "the kernel lacks CONFIG_IPV6_SEG6_BPF: `lwt seg6local` cannot work; use a kernel built with it"),
        checks::sandboxed("tcx", "a tcx ingress link", &sandbox.tcx, Status::Warn, "tcx needs Linux 6.6: `lwt decap` cannot work here"),
        checks::sandboxed("netfilter-bpf", "a netfilter BPF link (LOCAL_IN)", &sandbox.netfilter, Status::Warn, "the kernel lacks CONFIG_NETFILTER_BPF_LINK (Linux 6.4+): `lwt trace` cannot show the packets an `in` program passes for local delivery (its drops and forwarded passes still show)"),
    ];
    let helper = |name: &str| helper_allowed(ProgramType::LwtXmit, name);
    // Without the privilege libbpf's probes answer "no" rather than fail.
    let probes = if system::may_load_bpf() {
        (
            ringbuf_map(),
            helper("bpf_ringbuf_output"),
            helper("bpf_loop"),
        )
    } else {
        let no = || Err("loading BPF programs needs CAP_BPF".to_string());
        (no(), no(), no())
    };
    match probes {
        (Ok(map), Ok(out_helper), Ok(lp)) => {
            out.push(checks::ringbuf(map, out_helper));
            out.push(checks::bpf_loop(lp));
        }
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            for name in ["ringbuf", "bpf_loop"] {
                out.push(Check {
                    name: name.into(),
                    status: Status::Warn,
                    detail: format!("not probed ({e}); run `lwt doctor` as root to probe it"),
                });
            }
        }
    }
    out.push(checks::memlock(v, memlock_limit()));
    out.push(checks::accept_local(
        sysctl("net/ipv4/conf/all/accept_local"),
        usage.in_routes,
    ));
    out.push(checks::seg6_enabled(
        sysctl("net/ipv6/conf/all/seg6_enabled"),
        &devices_with("net/ipv6/conf", "seg6_enabled", |_, d| d == 1),
        usage.seg6local_routes,
    ));
    out.push(checks::rp_filter(
        &devices_with("net/ipv4/conf", "rp_filter", |all, d| all.max(d) == 1),
        usage.tunnels,
    ));
    out.push(checks::state(
        crate::audit::health()
            .map(|h| {
                h.map(|h| {
                    let f = h
                        .findings
                        .iter()
                        .map(|f| format!("{}: {}", f.kind, f.what))
                        .collect();
                    (h.exists, h.pending, f)
                })
            })
            .map_err(|e| e.to_string()),
    ));
    out.push(checks::bug_xmit_test_run(v));
    out.push(checks::bug_gso_ipip(v));
    out.push(checks::bug_illegal_returns(v));
    Report { checks: out }
}

/// What is set up here that makes a sysctl matter.
#[derive(Default)]
struct Usage {
    /// Routes with an `in` BPF program.
    in_routes: usize,
    /// seg6local routes (any behaviour).
    seg6local_routes: usize,
    /// lwtkit tunnels and decapsulators (records: root only).
    tunnels: usize,
}

impl Usage {
    fn read() -> Self {
        let mut u = Usage::default();
        if let Ok(routes) = Rtnl::open().and_then(|mut r| ops::dump_all(&mut r)) {
            for r in &routes {
                if matches!(LwtBpf::from_route_attributes(&r.attributes), Ok(Some(b)) if b.input.is_some())
                {
                    u.in_routes += 1;
                }
                if r.attributes.iter().any(|a| {
                    matches!(
                        a,
                        netlink_packet_route::route::RouteAttribute::EncapType(
                            netlink_packet_route::route::RouteLwEnCapType::Seg6Local
                        )
                    )
                }) {
                    u.seg6local_routes += 1;
                }
            }
        }
        if let Ok(ns) = Namespace::open_readonly() {
            if ns.readable() && ns.exists() {
                u.tunnels = ns.all::<TunnelRecord>().map(|t| t.len()).unwrap_or(0)
                    + ns.all::<DecapRecord>().map(|d| d.len()).unwrap_or(0);
            }
        }
        u
    }
}

fn sysctl(path: &str) -> Option<u32> {
    std::fs::read_to_string(Path::new("/proc/sys").join(path))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Devices under /proc/sys/`dir` (not `all`, `default`, `lo`) whose
/// `key`, with `all`'s value, satisfies `pick(all, device)`.
fn devices_with(dir: &str, key: &str, pick: impl Fn(u32, u32) -> bool) -> Vec<String> {
    let all = sysctl(&format!("{dir}/all/{key}")).unwrap_or(0);
    let Ok(entries) = std::fs::read_dir(Path::new("/proc/sys").join(dir)) else {
        return Vec::new();
    };
    let mut out: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|d| !matches!(d.as_str(), "all" | "default" | "lo"))
        .filter(|d| sysctl(&format!("{dir}/{d}/{key}")).is_some_and(|v| pick(all, v)))
        .collect();
    out.sort();
    out
}

fn helper_allowed(ty: ProgramType, name: &str) -> Result<bool, String> {
    let id = HELPERS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, id)| *id)
        .ok_or_else(|| format!("no helper {name}"))?;
    // SAFETY: a libbpf probe with no options.
    match unsafe { libbpf_sys::libbpf_probe_bpf_helper(ty as u32, id, std::ptr::null()) } {
        1 => Ok(true),
        0 => Ok(false),
        e => Err(std::io::Error::from_raw_os_error(-e).to_string()),
    }
}

fn ringbuf_map() -> Result<bool, String> {
    // SAFETY: a libbpf probe with no options.
    match unsafe {
        libbpf_sys::libbpf_probe_bpf_map_type(libbpf_sys::BPF_MAP_TYPE_RINGBUF, std::ptr::null())
    } {
        1 => Ok(true),
        0 => Ok(false),
        e => Err(std::io::Error::from_raw_os_error(-e).to_string()),
    }
}

/// RLIMIT_MEMLOCK's soft limit; `None` when unlimited.
fn memlock_limit() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) } != 0
        || r.rlim_cur == libc::RLIM_INFINITY
    {
        return None;
    }
    Some(r.rlim_cur)
}
