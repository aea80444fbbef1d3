//! The kernel's own run-time statistics of the programs lwtkit put on a
//! namespace's routes (`BPF_ENABLE_STATS`, fd-scoped: the sysctl is left
//! alone), so the end-to-end benchmarks can say what the program itself
//! costs per packet in real traffic, beside its test-run figure.
use std::os::fd::{AsFd, FromRawFd, OwnedFd};

use lwtkit::{filter::testrun::enable_stats, prog_info};

use crate::e2e::{lwt, Ns};

/// The programs on `ns`'s routes (every hook `lwt list` reports), opened
/// by id.
pub struct Programs(Vec<OwnedFd>);

/// Summed `run_time_ns` and `run_cnt` of a set of programs.
#[derive(Clone, Copy, Default)]
pub struct Reading {
    pub ns: u64,
    pub runs: u64,
}

impl Reading {
    /// Mean ns per run since `before`.
    pub fn per_run_since(self, before: Reading) -> f64 {
        (self.ns - before.ns) as f64 / (self.runs - before.runs).max(1) as f64
    }
}

impl Programs {
    pub fn on_routes(ns: &Ns) -> anyhow::Result<Self> {
        let json = lwt(ns, &["-j", "list"])?;
        let mut fds = Vec::new();
        for part in json.split("\"id\":").skip(1) {
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            let id: u32 = digits.parse()?;
            // SAFETY: a plain bpf() command; the fd it returns is ours.
            let fd = unsafe { libbpf_sys::bpf_prog_get_fd_by_id(id) };
            anyhow::ensure!(fd >= 0, "program {id}: {}", std::io::Error::last_os_error());
            // SAFETY: a new fd owned by nobody else.
            fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        Ok(Programs(fds))
    }

    pub fn read(&self) -> anyhow::Result<Reading> {
        let mut r = Reading::default();
        for fd in &self.0 {
            let info = prog_info::info(fd.as_fd())?;
            r.ns += info.run_time_ns;
            r.runs += info.run_cnt;
        }
        Ok(r)
    }
}

/// Statistics on while the value lives.
pub fn stats_on() -> anyhow::Result<OwnedFd> {
    Ok(enable_stats()?)
}
