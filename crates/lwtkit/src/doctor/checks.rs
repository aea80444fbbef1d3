//! Each check's decision: facts in, a [`Check`] out. Pure, so every
//! failing input is unit-tested without the host it describes.
use super::{Check, Sandboxed, Status};

/// A kernel release as `major.minor.patch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    /// `6.18.44-fc-v657` -> 6.18.44; `6.8` -> 6.8.0.
    pub fn parse(release: &str) -> Option<Self> {
        let numeric: String = release
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let mut parts = numeric.split('.').filter(|p| !p.is_empty());
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        Some(Self(major, minor, patch))
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

fn check(name: &str, status: Status, detail: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        status,
        detail: detail.into(),
    }
}

/// LWT BPF came in 4.10, `bpf_lwt_push_encap` on `lwt_xmit` (ENCAP_IP) in
/// 5.3 (as docs/kernel.md has it), tcx (used by
/// `lwt decap`) in 6.6.
pub fn kernel(release: &str, v: Option<Version>) -> Check {
    let name = "kernel";
    match v {
        None => check(name, Status::Warn, format!("cannot read a version in the release `{release}`; the checks by version below assume a recent kernel")),
        Some(v) if v < Version(4, 10, 0) => check(name, Status::Fail, format!("Linux {release}: BPF programs on routes need Linux 4.10 or newer; upgrade the kernel")),
        Some(v) if v < Version(6, 6, 0) => check(name, Status::Warn, format!("Linux {release}: lwt attach works, but `lwt decap` needs tcx (6.6){}; upgrade for all of lwtkit", if v < Version(5, 3, 0) { " and `lwt encap` needs bpf_lwt_push_encap with BPF_LWT_ENCAP_IP (5.3)" } else { "" })),
        Some(_) => check(name, Status::Ok, format!("Linux {release}")),
    }
}

/// CAP_BPF (or CAP_SYS_ADMIN) and CAP_NET_ADMIN to load and attach;
/// CAP_SYS_ADMIN for `lwt -n` (setns) and mounting bpffs.
pub fn privileges(bpf: bool, net_admin: bool, sys_admin: bool) -> Check {
    let name = "privileges";
    let mut missing = Vec::new();
    if !bpf {
        missing.push("CAP_BPF");
    }
    if !net_admin {
        missing.push("CAP_NET_ADMIN");
    }
    if !sys_admin {
        missing.push("CAP_SYS_ADMIN");
    }
    if !(bpf || sys_admin) || !net_admin {
        check(name, Status::Fail, format!("missing {}: lwt cannot load programs or change routes; run it as root (sudo lwt ...)", missing.join(", ")))
    } else if !sys_admin {
        check(name, Status::Warn, "missing CAP_SYS_ADMIN: `lwt -n NAME` (entering a namespace) and mounting bpffs will fail; run as root for those")
    } else {
        check(name, Status::Ok, "CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN")
    }
}

/// A feature probed in the throwaway namespace.
pub fn sandboxed(name: &str, what: &str, s: &Sandboxed, missing: Status, fix: &str) -> Check {
    match s {
        Sandboxed::Works => check(
            name,
            Status::Ok,
            format!("{what}: works (probed in a throwaway namespace)"),
        ),
        Sandboxed::Missing(why) => check(
            name,
            missing,
            format!("{what}: the kernel refused it ({why}); {fix}"),
        ),
        Sandboxed::NotProbed(why) => check(
            name,
            Status::Warn,
            format!("{what}: not probed ({why}); run `lwt doctor` as root to probe it"),
        ),
    }
}

pub fn bpffs(mounted: bool) -> Check {
    if mounted {
        check("bpffs", Status::Ok, "mounted at /sys/fs/bpf")
    } else {
        check("bpffs", Status::Warn, "not mounted at /sys/fs/bpf: lwt mounts it on its first change (as root); to mount it yourself: mount -t bpf bpf /sys/fs/bpf")
    }
}

pub fn btf(vmlinux: bool) -> Check {
    if vmlinux {
        check("btf", Status::Ok, "/sys/kernel/btf/vmlinux present")
    } else {
        check("btf", Status::Warn, "no /sys/kernel/btf/vmlinux: the kernel lacks CONFIG_DEBUG_INFO_BTF, so CO-RE programs and tracing programs (fentry/fexit) cannot load; use a kernel built with it")
    }
}

/// Ring buffers carry `lwt events`; `bpf_loop` is for bounded loops.
pub fn ringbuf(map: bool, helper: bool) -> Check {
    if map && helper {
        check(
            "ringbuf",
            Status::Ok,
            "BPF ring buffers and bpf_ringbuf_output on LWT hooks",
        )
    } else {
        check("ringbuf", Status::Fail, "no BPF ring buffer (Linux 5.8+) on LWT hooks: `lwt filter` and `lwt events` cannot load; upgrade the kernel")
    }
}

pub fn bpf_loop(helper: bool) -> Check {
    if helper {
        check("bpf_loop", Status::Ok, "bpf_loop callable from LWT hooks")
    } else {
        check("bpf_loop", Status::Warn, "bpf_loop (Linux 5.17+) is not callable from LWT hooks: programs needing long loops must unroll them")
    }
}

/// Since 5.11 BPF memory is charged to the memory cgroup and
/// RLIMIT_MEMLOCK no longer applies.
pub fn memlock(v: Option<Version>, limit: Option<u64>) -> Check {
    let name = "memlock";
    if v.is_some_and(|v| v >= Version(5, 11, 0)) {
        return check(name, Status::Ok, "BPF memory is charged to the memory cgroup (Linux 5.11+); RLIMIT_MEMLOCK does not apply");
    }
    match limit {
        None => check(name, Status::Ok, "RLIMIT_MEMLOCK unlimited"),
        Some(l) if l < 64 << 20 => check(name, Status::Warn, format!("RLIMIT_MEMLOCK is {} KiB and this kernel charges BPF maps to it: large filters and maps fail to load; raise it (ulimit -l unlimited, or LimitMEMLOCK=infinity in a systemd unit)", l >> 10)),
        Some(l) => check(name, Status::Ok, format!("RLIMIT_MEMLOCK {} MiB", l >> 20)),
    }
}

/// `ip netns exec` gives lwt a private /sys without lwtkit's pins.
pub fn netns_exec(private_sys_of: Option<&str>) -> Check {
    match private_sys_of {
        Some(ns) => check("ip-netns-exec", Status::Fail, format!("running under `ip netns exec {ns}`, whose private /sys hides lwtkit's pins on /sys/fs/bpf: every other lwt command refuses to run here; use `lwt -n {ns} ...` instead")),
        None => check("ip-netns-exec", Status::Ok, "lwt sees the host's /sys/fs/bpf (use `lwt -n NAME`, not `ip netns exec NAME lwt`)"),
    }
}

/// accept_local matters to `in` programs that push a header with a
/// source of this host and return BPF_LWT_REROUTE: the second input
/// lookup sees a local source, a martian unless accept_local is 1.
pub fn accept_local(value: Option<u32>, in_routes: usize) -> Check {
    let name = "sysctl accept_local";
    match value {
        Some(0) if in_routes > 0 => check(name, Status::Warn, format!("net.ipv4.conf.all.accept_local=0 and {in_routes} route(s) carry an `in` program: one that encapsulates with a source address of this host and returns BPF_LWT_REROUTE has its packets dropped as martians; if yours does: sysctl -w net.ipv4.conf.all.accept_local=1")),
        Some(v) => check(name, Status::Ok, format!("net.ipv4.conf.all.accept_local={v}{}", if v == 0 { " (set it to 1 before an `in` program re-routes packets whose source is this host)" } else { "" })),
        None => check(name, Status::Ok, "no IPv4 in this namespace"),
    }
}

/// seg6_enabled: an SRv6 packet is dropped on arrival unless `all` or the
/// receiving device allows it.
pub fn seg6_enabled(all: Option<u32>, enabled_devices: &[String], sids: usize) -> Check {
    let name = "sysctl seg6_enabled";
    let all_on = all == Some(1);
    if sids == 0 || all_on {
        let note = if all_on {
            String::new()
        } else {
            " (enable it on the devices SRv6 packets arrive on before using End.BPF)".into()
        };
        return check(
            name,
            Status::Ok,
            format!(
                "net.ipv6.conf.all.seg6_enabled={}{note}",
                all.map(|v| v.to_string()).unwrap_or("-".into())
            ),
        );
    }
    if enabled_devices.is_empty() {
        check(name, Status::Warn, format!("{sids} seg6local route(s) here, but seg6_enabled is 0 on every device: SRv6 packets are dropped on arrival; sysctl -w net.ipv6.conf.all.seg6_enabled=1 (or net.ipv6.conf.DEV.seg6_enabled=1 on the receiving device)"))
    } else {
        check(
            name,
            Status::Ok,
            format!(
                "enabled on {} only; SRv6 packets arriving on other devices are dropped",
                enabled_devices.join(", ")
            ),
        )
    }
}

/// rp_filter: strict reverse-path filtering (1) on a device drops packets
/// whose source is routed out of another device, which is what tunnelled
/// and decapsulated traffic often looks like.
pub fn rp_filter(strict_devices: &[String], tunnels: usize) -> Check {
    let name = "sysctl rp_filter";
    if strict_devices.is_empty() {
        return check(name, Status::Ok, "no device filters reverse paths strictly");
    }
    if tunnels == 0 {
        return check(
            name,
            Status::Ok,
            format!(
                "strict (1) on {}; with tunnels (lwt encap/decap) prefer loose mode (2)",
                strict_devices.join(", ")
            ),
        );
    }
    check(name, Status::Warn, format!("strict reverse-path filtering (rp_filter=1, the max of `all` and the device's) on {} while {tunnels} tunnel(s) or decapsulator(s) are set up here: decapsulated or returning packets whose source routes out of another device are dropped; use loose mode: sysctl -w net.ipv4.conf.all.rp_filter=2 and net.ipv4.conf.DEV.rp_filter=2", strict_devices.join(", ")))
}

/// lwtkit's own records and pins against the kernel, read-only.
pub fn state(health: Result<Option<(bool, usize, Vec<String>)>, String>) -> Check {
    let name = "lwtkit state";
    match health {
        Err(e) => check(name, Status::Warn, format!("cannot read lwtkit's state: {e}")),
        Ok(None) => check(name, Status::Warn, "lwtkit's records are readable by root only: run `lwt doctor` as root to check them"),
        Ok(Some((false, _, _))) => check(name, Status::Ok, "lwtkit keeps nothing in this namespace"),
        Ok(Some((true, pending, findings))) if !findings.is_empty() => check(name, Status::Fail, format!("{} disagreement(s) between lwtkit's records and the kernel (orphans, drift): {}{}; `lwt check` details them, `lwt detach`/`lwt reset` takes lwtkit's work off", findings.len(), findings.join("; "), if pending > 0 { format!(" ({pending} change(s) in flight: any lwt command finishes them)") } else { String::new() })),
        Ok(Some((true, pending, _))) if pending > 0 => check(name, Status::Warn, format!("{pending} change(s) a killed or running lwt command left in flight: the next lwt command (e.g. `lwt check`) finishes them")),
        Ok(Some(_)) => check(name, Status::Ok, "records and pins agree with the kernel"),
    }
}

/// BPF_PROG_TEST_RUN of an `lwt_xmit` program that calls
/// `bpf_lwt_push_encap`: the helper reads `skb_dst(skb)->dev`, and a test
/// run has no dst. No upstream fix is known (checked up to 6.18).
pub fn bug_xmit_test_run(v: Option<Version>) -> Check {
    let name = "bug: lwt_xmit test-run with bpf_lwt_push_encap";
    match v {
        Some(v) if v < Version(5, 3, 0) => check(name, Status::Ok, "this kernel has no bpf_lwt_push_encap on lwt_xmit"),
        _ => check(name, Status::Warn, "BPF_PROG_TEST_RUN of an lwt_xmit program that calls bpf_lwt_push_encap dereferences the route's device, which a test run does not have: a NULL dereference that can crash this kernel (no upstream fix known through 6.18). Never test-run such a program; test encapsulation on real routes in a namespace. The fix to look for: bpf_lwt_push_ip_encap() (net/core/lwt_bpf.c) no longer using skb_dst(skb)->dev unchecked"),
    }
}

/// `handle_gso_encap` matches `IPPROTO_IP` (0) where IPIP is 4, and knows
/// no routing header: GSO packets pushed into IPIP, 4in6 or SRv6 outers
/// are refused. No upstream fix known (checked up to 6.18).
pub fn bug_gso_ipip(v: Option<Version>) -> Check {
    let name = "bug: GSO refused for IPIP outers of bpf_lwt_push_encap";
    match v {
        Some(v) if v < Version(5, 3, 0) => check(name, Status::Ok, "this kernel has no bpf_lwt_push_encap on lwt_xmit"),
        _ => check(name, Status::Warn, "bpf_lwt_push_encap refuses GSO packets whose outer header is IPv4 carrying IPIP (4in4) or IPv6 carrying IPv4 (4in6) or a routing header (SRv6): bulk TCP through such tunnels stalls. Prefer GRE, UDP (VXLAN, FOU, GUE) or ip6ip6 outers, the kernel's own `encap seg6` for SRv6, or turn GSO/TSO off on the sending device (ethtool -K DEV gso off tso off). The fix to look for: handle_gso_encap() (net/core/lwt_bpf.c) matching IPPROTO_IPIP instead of IPPROTO_IP"),
    }
}

/// Before 6.5, positive values from the xmit redirect and reroute paths
/// (NET_XMIT_DROP, NET_XMIT_CN, ...) were taken as "continue" after the
/// skb had been freed: a use-after-free. Fixed by "lwt: Fix return values
/// of BPF xmit ops" (6.5, backported to stable).
pub fn bug_illegal_returns(v: Option<Version>) -> Check {
    let name = "bug: lwt_xmit return values after the skb is freed";
    match v {
        Some(v) if v < Version(6, 5, 0) => check(name, Status::Warn, format!("Linux {v}: before 6.5 an lwt_xmit redirect (BPF_REDIRECT) or reroute whose transmit drops returns a positive code that ip_finish_output2 takes as \"continue\" with a freed skb (use-after-free, crash). Look for the fix \"lwt: Fix return values of BPF xmit ops\" (Yan Zhai, Linux 6.5, backported to stable kernels) in your kernel's changelog, or upgrade; until then avoid BPF_REDIRECT and BPF_LWT_REROUTE into devices that may drop")),
        _ => check(name, Status::Ok, "fixed in this kernel (Linux 6.5+: \"lwt: Fix return values of BPF xmit ops\")"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(c: &Check) -> Status {
        c.status
    }

    #[test]
    fn versions_parse_from_releases() {
        assert_eq!(Version::parse("6.18.44-fc-v657"), Some(Version(6, 18, 44)));
        assert_eq!(Version::parse("5.15.0-91-generic"), Some(Version(5, 15, 0)));
        assert_eq!(Version::parse("6.8"), Some(Version(6, 8, 0)));
        assert_eq!(Version::parse("6.1-rc3"), Some(Version(6, 1, 0)));
        assert_eq!(Version::parse("linux"), None);
        assert_eq!(Version::parse("6"), None);
    }

    #[test]
    fn old_kernels_fail_or_warn() {
        assert_eq!(st(&kernel("4.9.0", Version::parse("4.9.0"))), Status::Fail);
        let c = kernel("5.2.0", Version::parse("5.2.0"));
        assert_eq!(st(&c), Status::Warn);
        assert!(c.detail.contains("push_encap"));
        assert_eq!(st(&kernel("6.1.0", Version::parse("6.1.0"))), Status::Warn);
        assert_eq!(st(&kernel("x", None)), Status::Warn);
        assert_eq!(st(&kernel("6.18.1", Version::parse("6.18.1"))), Status::Ok);
    }

    #[test]
    fn missing_privileges_fail_and_say_run_as_root() {
        let c = privileges(false, false, false);
        assert_eq!(st(&c), Status::Fail);
        assert!(
            c.detail.contains("CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN") && c.detail.contains("root")
        );
        assert_eq!(st(&privileges(true, false, true)), Status::Fail);
        // CAP_SYS_ADMIN stands in for CAP_BPF.
        assert_eq!(st(&privileges(false, true, true)), Status::Ok);
        assert_eq!(st(&privileges(true, true, false)), Status::Warn);
        assert_eq!(st(&privileges(true, true, true)), Status::Ok);
    }

    #[test]
    fn sandboxed_features_missing_or_unprobed() {
        let m = sandboxed(
            "lwt-bpf",
            "x",
            &Sandboxed::Missing("EOPNOTSUPP".into()),
            Status::Fail,
            "fix",
        );
        assert_eq!(st(&m), Status::Fail);
        assert!(m.detail.contains("fix"));
        let n = sandboxed(
            "seg6",
            "x",
            &Sandboxed::NotProbed("EPERM".into()),
            Status::Warn,
            "fix",
        );
        assert_eq!(st(&n), Status::Warn);
        assert!(n.detail.contains("as root"));
        assert_eq!(
            st(&sandboxed("a", "x", &Sandboxed::Works, Status::Fail, "")),
            Status::Ok
        );
    }

    #[test]
    fn missing_mounts_btf_ringbuf_loop_warn_or_fail() {
        assert_eq!(st(&bpffs(false)), Status::Warn);
        assert!(bpffs(false).detail.contains("mount -t bpf"));
        assert_eq!(st(&bpffs(true)), Status::Ok);
        assert_eq!(st(&btf(false)), Status::Warn);
        assert_eq!(st(&ringbuf(false, true)), Status::Fail);
        assert_eq!(st(&ringbuf(true, false)), Status::Fail);
        assert_eq!(st(&ringbuf(true, true)), Status::Ok);
        assert_eq!(st(&bpf_loop(false)), Status::Warn);
    }

    #[test]
    fn a_low_memlock_limit_bites_only_before_5_11() {
        let old = Version::parse("5.10.0");
        let c = memlock(old, Some(64 << 10));
        assert_eq!(st(&c), Status::Warn);
        assert!(c.detail.contains("ulimit -l"));
        assert_eq!(st(&memlock(old, None)), Status::Ok);
        assert_eq!(
            st(&memlock(Version::parse("6.1.0"), Some(64 << 10))),
            Status::Ok
        );
    }

    #[test]
    fn ip_netns_exec_fails_and_names_the_namespace() {
        let c = netns_exec(Some("lab"));
        assert_eq!(st(&c), Status::Fail);
        assert!(c.detail.contains("lwt -n lab"));
        assert_eq!(st(&netns_exec(None)), Status::Ok);
    }

    #[test]
    fn sysctls_warn_only_where_they_bite() {
        assert_eq!(st(&accept_local(Some(0), 2)), Status::Warn);
        assert!(accept_local(Some(0), 2).detail.contains("accept_local=1"));
        assert_eq!(st(&accept_local(Some(0), 0)), Status::Ok);
        assert_eq!(st(&accept_local(Some(1), 2)), Status::Ok);

        let w = seg6_enabled(Some(0), &[], 1);
        assert_eq!(st(&w), Status::Warn);
        assert!(w.detail.contains("seg6_enabled=1"));
        assert_eq!(st(&seg6_enabled(Some(0), &["eth0".into()], 1)), Status::Ok);
        assert_eq!(st(&seg6_enabled(Some(0), &[], 0)), Status::Ok);
        assert_eq!(st(&seg6_enabled(Some(1), &[], 3)), Status::Ok);

        let r = rp_filter(&["eth0".into()], 1);
        assert_eq!(st(&r), Status::Warn);
        assert!(r.detail.contains("rp_filter=2") && r.detail.contains("eth0"));
        assert_eq!(st(&rp_filter(&["eth0".into()], 0)), Status::Ok);
        assert_eq!(st(&rp_filter(&[], 4)), Status::Ok);
    }

    #[test]
    fn state_disagreements_fail_and_unreadable_state_warns() {
        let f = state(Ok(Some((true, 0, vec!["gone: 10.0.0.9/32".into()]))));
        assert_eq!(st(&f), Status::Fail);
        assert!(f.detail.contains("lwt check"));
        assert_eq!(st(&state(Ok(Some((true, 1, vec![]))))), Status::Warn);
        assert_eq!(st(&state(Ok(None))), Status::Warn);
        assert_eq!(st(&state(Err("EIO".into()))), Status::Warn);
        assert_eq!(st(&state(Ok(Some((false, 0, vec![]))))), Status::Ok);
        assert_eq!(st(&state(Ok(Some((true, 0, vec![]))))), Status::Ok);
    }

    #[test]
    fn known_bugs_by_version_say_what_fix_to_look_for() {
        let v = Version::parse("6.18.0");
        let t = bug_xmit_test_run(v);
        assert_eq!(st(&t), Status::Warn);
        assert!(t.detail.contains("Never test-run"));
        assert_eq!(st(&bug_xmit_test_run(Version::parse("4.19.0"))), Status::Ok);
        let g = bug_gso_ipip(v);
        assert_eq!(st(&g), Status::Warn);
        assert!(g.detail.contains("IPPROTO_IPIP"));
        let r = bug_illegal_returns(Version::parse("6.1.0"));
        assert_eq!(st(&r), Status::Warn);
        assert!(r.detail.contains("lwt: Fix return values of BPF xmit ops"));
        assert_eq!(st(&bug_illegal_returns(v)), Status::Ok);
        assert_eq!(st(&bug_illegal_returns(None)), Status::Ok);
    }
}
