//! What lwtkit needs from the system before it touches anything: the right
//! network namespace, privileges, and a mounted bpffs.
use std::{
    fs::File,
    os::fd::AsRawFd,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use nix::sched::{setns, CloneFlags};

use crate::error::Result;

/// What the system lacks for lwtkit: the namespace, privileges, bpffs, the
/// kernel's support for BPF on routes.
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    #[error("network namespace `{name}` not found ({path} is missing); list them with `ip netns`")]
    MissingNetns { name: String, path: PathBuf },
    #[error("cannot enter network namespace `{name}`: {reason}")]
    EnterNetns {
        name: String,
        reason: std::io::Error,
    },
    #[error("invalid network namespace name `{0}`")]
    NetnsName(String),
    #[error("cannot read the network namespace cookie: {0}")]
    Cookie(std::io::Error),
    #[error("cannot stat /proc/self/ns/net: {0}")]
    NetnsInode(std::io::Error),
    #[error("{what} needs {caps} (run as root)")]
    Privileges { what: String, caps: String },
    #[error(
        "this kernel cannot attach BPF programs to routes (CONFIG_LWTUNNEL_BPF missing?): {0}"
    )]
    NoLwtBpf(String),
    #[error("bpffs is not mounted at /sys/fs/bpf and mounting it failed: {0}")]
    Bpffs(String),
    #[error("lwt runs under `ip netns exec {name}`, whose private /sys hides lwtkit's pins on /sys/fs/bpf; run `lwt -n {name} ...` instead")]
    PrivateSys { name: String },
}

/// Where `ip netns` keeps its named namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";
/// Where bpffs lives.
pub const BPFFS: &str = "/sys/fs/bpf";

/// Moves this (single-threaded) process into network namespace `name`, like
/// `ip -n NAME`. Must run before any socket is opened.
pub fn enter_netns(name: &str) -> Result<()> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(SystemError::NetnsName(name.into()).into());
    }
    let path = Path::new(NETNS_RUN_DIR).join(name);
    let file = File::open(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => SystemError::MissingNetns {
            name: name.into(),
            path: path.clone(),
        },
        _ => SystemError::EnterNetns {
            name: name.into(),
            reason: e,
        },
    })?;
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| SystemError::EnterNetns {
        name: name.into(),
        reason: std::io::Error::from_raw_os_error(e as i32),
    })?;
    ENTERED_BY_NAME.store(true, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// The current network namespace's cookie: unique for the boot, never
/// reused, so state keyed by it can never be confused with a later netns.
pub fn netns_cookie() -> Result<u64> {
    const SO_NETNS_COOKIE: libc::c_int = 71;
    // An unbound socket: works even with loopback down.
    // SAFETY: socket(2) with constant arguments; the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(SystemError::Cookie(std::io::Error::last_os_error()).into());
    }
    // SAFETY: fd is a fresh socket we own.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as u32;
    // SAFETY: valid fd, out pointer and length for a u64 option.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(SystemError::Cookie(std::io::Error::last_os_error()).into());
    }
    Ok(cookie)
}

/// The current network namespace's inode (as `ls -L /proc/self/ns/net`).
pub fn netns_inode() -> Result<u64> {
    std::fs::metadata("/proc/self/ns/net")
        .map(|m| m.ino())
        .map_err(|e| SystemError::NetnsInode(e).into())
}

/// `NS_GET_ID` (`_IOR(0xb7, 0xd, __u64)`): a namespace's 64-bit id, which
/// for a network namespace is its cookie (Linux 6.18; older kernels answer
/// ENOTTY).
const NS_GET_ID: libc::c_ulong = (2 << 30) | (8 << 16) | (0xb7 << 8) | 0xd;

/// The id (cookie) of the namespace `file` refers to, or the errno.
fn ns_id(file: &File) -> std::result::Result<u64, i32> {
    let mut id: u64 = 0;
    // SAFETY: NS_GET_ID writes one u64 through the pointer.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_ID as _, &mut id as *mut u64) };
    if rc == 0 {
        Ok(id)
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}

/// Cookies of every network namespace that is still alive: those a task
/// is in, those bind-mounted anywhere (`ip netns`, container runtimes:
/// nsfs mounts in any mount namespace) and those held open by a file
/// descriptor. `None` when the kernel cannot tell a namespace's cookie
/// from outside it (no `NS_GET_ID`), or when some task's namespace is out
/// of sight: this process is in a PID namespace of its own (a container
/// without the host's PIDs), or the kernel refused a task's
/// /proc/PID/task/TID/ns/net (a ptrace access check, which a process with
/// fewer capabilities than the task fails, as under a systemd unit's
/// CapabilityBoundingSet) and that task is not in a namespace a visible
/// task is in. A namespace out of sight is not proven dead.
pub fn live_netns_cookies() -> Option<std::collections::HashSet<u64>> {
    if !in_initial_pid_namespace() {
        tracing::debug!("not in the initial PID namespace: some tasks are out of sight");
        return None;
    }
    // Which namespace a task is in, told by the inode of its /proc/.../net/dev
    // (each namespace's proc entries are its own), which no ptrace check
    // guards: refused tasks are matched against visible ones by it.
    let net_dev = |task: &Path| {
        std::fs::metadata(task.join("net/dev"))
            .map(|m| m.ino())
            .ok()
    };
    let mut visible_nets: std::collections::HashSet<u64> =
        net_dev(Path::new("/proc/self")).into_iter().collect();
    let mut refused: Vec<PathBuf> = Vec::new();
    let mut candidates: std::collections::HashMap<u64, PathBuf> = Default::default();
    let mut mount_namespaces = std::collections::HashSet::new();
    let nsfs_dev = std::fs::metadata("/proc/self/ns/net")
        .map(|m| m.dev())
        .unwrap_or(u64::MAX);
    let mut consider = |path: PathBuf| {
        if let Ok(m) = std::fs::metadata(&path) {
            if m.dev() == nsfs_dev {
                candidates.entry(m.ino()).or_insert(path);
            }
        }
    };
    if let Ok(procs) = std::fs::read_dir("/proc") {
        for p in procs.flatten() {
            let dir = p.path();
            if !p
                .file_name()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
            {
                continue;
            }
            if let Ok(tasks) = std::fs::read_dir(dir.join("task")) {
                for t in tasks.flatten() {
                    let task = t.path();
                    match std::fs::metadata(task.join("ns/net")) {
                        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                            refused.push(task);
                            continue;
                        }
                        Ok(_) => visible_nets.extend(net_dev(&task)),
                        Err(_) => {}
                    }
                    consider(task.join("ns/net"));
                }
            }
            if let Ok(fds) = std::fs::read_dir(dir.join("fd")) {
                // stat, not readlink: an fd opened through a bind mount reads
                // as its path, but stats as the namespace it holds.
                for fd in fds.flatten() {
                    consider(fd.path());
                }
            }
            let mnt = std::fs::metadata(dir.join("ns/mnt"))
                .map(|m| m.ino())
                .unwrap_or(0);
            if mount_namespaces.insert(mnt) {
                if let Ok(info) = std::fs::read_to_string(dir.join("mountinfo")) {
                    // Field 4 is the mount's root (`net:[INODE]` for a bound
                    // netns), field 5 where it is mounted in that process's view.
                    for l in info.lines() {
                        let mut f = l.split(' ');
                        let (Some(root), Some(at)) = (f.nth(3), f.next()) else {
                            continue;
                        };
                        if net_inode(root).is_some() {
                            consider(dir.join("root").join(at.trim_start_matches('/')));
                        }
                    }
                }
            }
        }
    }
    if let Ok(named) = std::fs::read_dir(NETNS_RUN_DIR) {
        for n in named.flatten() {
            consider(n.path());
        }
    }
    if let Some(task) = refused
        .iter()
        .find(|t| !net_dev(t).is_some_and(|n| visible_nets.contains(&n)))
    {
        tracing::debug!(
            "{} refused (no CAP_SYS_PTRACE over it) and in a namespace no visible task is in",
            task.display()
        );
        return None;
    }
    let mut live = std::collections::HashSet::new();
    for path in candidates.values() {
        let Ok(file) = File::open(path) else {
            continue;
        };
        match ns_id(&file) {
            Ok(id) => {
                live.insert(id);
            }
            Err(libc::ENOTTY) | Err(libc::EINVAL) => return None,
            Err(_) => {}
        }
    }
    // Our own namespace, whatever the scan saw.
    live.insert(netns_cookie().ok()?);
    Some(live)
}

/// Whether this process is in the initial PID namespace, whose /proc shows
/// every task (the kernel gives the initial namespaces fixed inode
/// numbers: `PROC_PID_INIT_INO`).
fn in_initial_pid_namespace() -> bool {
    const PROC_PID_INIT_INO: u64 = 0xEFFF_FFFC;
    std::fs::metadata("/proc/self/ns/pid").is_ok_and(|m| m.ino() == PROC_PID_INIT_INO)
}

/// The named namespace (`/run/netns/NAME`) this process is in, if any.
pub fn current_netns_name() -> Option<String> {
    let ours = std::fs::metadata("/proc/self/ns/net").ok()?;
    std::fs::read_dir(NETNS_RUN_DIR)
        .ok()?
        .flatten()
        .find(|n| {
            std::fs::metadata(n.path())
                .is_ok_and(|m| m.ino() == ours.ino() && m.dev() == ours.dev())
        })
        .map(|n| n.file_name().to_string_lossy().into_owned())
}

/// `ip netns exec NS lwt ...` runs lwt in a mount namespace of its own with
/// a fresh /sys, where bpffs (and lwtkit's pins) are not mounted. Working
/// there would mean a second, empty view of lwtkit's state. Returns the
/// namespace's name when that is the case.
pub fn private_sys_of_ip_netns_exec() -> Option<String> {
    // Entered with `lwt -n`: the mount namespace is the caller's own.
    if ENTERED_BY_NAME.load(std::sync::atomic::Ordering::Relaxed) || is_bpffs(Path::new(BPFFS)) {
        return None;
    }
    // A named namespace without bpffs on /sys/fs/bpf: `ip netns exec`
    // remounted /sys for it (nsenter and `lwt -n` keep the host's /sys).
    current_netns_name()
}

static ENTERED_BY_NAME: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `net:[4026531840]` -> 4026531840.
fn net_inode(s: &str) -> Option<u64> {
    s.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "(unknown)".into())
}

/// Linux capability numbers lwtkit checks.
#[derive(Clone, Copy, Debug)]
pub enum Capability {
    NetAdmin = 12,
    SysAdmin = 21,
    Bpf = 39,
}

fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

pub fn has_capability(cap: Capability) -> bool {
    effective_caps() & (1u64 << cap as u32) != 0
}

/// Whether this process may load BPF programs: CAP_BPF or CAP_SYS_ADMIN.
pub fn may_load_bpf() -> bool {
    has_capability(Capability::Bpf) || has_capability(Capability::SysAdmin)
}

/// Attaching loads programs and changes routes: CAP_BPF (or CAP_SYS_ADMIN)
/// and CAP_NET_ADMIN.
pub fn require_attach_privileges(what: &str) -> Result<()> {
    let bpf = has_capability(Capability::Bpf) || has_capability(Capability::SysAdmin);
    if !(bpf && has_capability(Capability::NetAdmin)) {
        return Err(SystemError::Privileges {
            what: what.into(),
            caps: "CAP_NET_ADMIN and CAP_BPF (or CAP_SYS_ADMIN)".into(),
        }
        .into());
    }
    Ok(())
}

/// Makes sure bpffs is mounted at /sys/fs/bpf, mounting it when it is not.
pub fn ensure_bpffs() -> Result<PathBuf> {
    let root = PathBuf::from(BPFFS);
    if is_bpffs(&root) {
        return Ok(root);
    }
    nix::mount::mount(
        Some("bpf"),
        &root,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| SystemError::Bpffs(e.desc().to_string()))?;
    if is_bpffs(&root) {
        Ok(root)
    } else {
        Err(SystemError::Bpffs("mount reported success but no bpffs is there".into()).into())
    }
}

pub fn is_bpffs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type() == nix::sys::statfs::BPF_FS_MAGIC)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_inodes_parse_from_links_and_mount_roots() {
        assert_eq!(net_inode("net:[4026531840]"), Some(4026531840));
        assert_eq!(net_inode("mnt:[4026531840]"), None);
        assert_eq!(net_inode("/"), None);
    }

    #[test]
    fn our_own_namespace_is_alive() {
        let ours = netns_cookie().expect("cookie");
        if let Some(live) = live_netns_cookies() {
            assert!(live.contains(&ours));
        }
    }

    #[test]
    fn ns_get_id_is_the_cookie() {
        let file = File::open("/proc/self/ns/net").expect("open");
        if let Ok(id) = ns_id(&file) {
            assert_eq!(id, netns_cookie().expect("cookie"));
        }
    }
}
