//! `lwt trace --printk`: the seed's way, for programs that still call
//! `bpf_printk`: the kernel's trace_pipe, line by line (tracefs is mounted
//! when it is not). The pipe is global: it carries every program's lines,
//! from every namespace, and reading consumes them.
use std::{
    io::Read,
    os::fd::AsRawFd,
    path::Path,
    time::{Duration, Instant},
};

use crate::error::{Result, StateError};

const TRACEFS: &str = "/sys/kernel/tracing";

fn io_err(path: &Path, e: impl std::fmt::Display) -> crate::Error {
    StateError::Io {
        path: path.into(),
        reason: e.to_string(),
    }
    .into()
}

/// Mounts tracefs on /sys/kernel/tracing unless it is there already.
fn ensure_tracefs() -> Result<()> {
    let pipe = Path::new(TRACEFS).join("trace_pipe");
    if pipe.exists() {
        return Ok(());
    }
    nix::mount::mount(
        Some("tracefs"),
        TRACEFS,
        Some("tracefs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| io_err(Path::new(TRACEFS), format!("cannot mount tracefs: {e}")))
}

/// Streams trace_pipe lines until `count` lines or `timeout`.
pub fn follow(
    count: Option<usize>,
    timeout: Option<Duration>,
    mut on_line: impl FnMut(&str) -> Result<()>,
) -> Result<usize> {
    ensure_tracefs()?;
    let path = Path::new(TRACEFS).join("trace_pipe");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags_nonblock()
        .open(&path)
        .map_err(|e| io_err(&path, e))?;
    let start = Instant::now();
    let want = count.unwrap_or(usize::MAX);
    let mut seen = 0;
    let mut pending = String::new();
    let mut buf = [0u8; 8192];
    while seen < want {
        let left = timeout.map(|t| t.saturating_sub(start.elapsed()));
        if left.is_some_and(|l| l.is_zero()) {
            break;
        }
        let wait = left
            .unwrap_or(Duration::from_millis(200))
            .min(Duration::from_millis(200));
        let mut pfd = libc::pollfd {
            fd: file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut pfd, 1, wait.as_millis() as i32) };
        if ready <= 0 {
            continue;
        }
        let n = match file.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(io_err(&path, e)),
        };
        pending.push_str(&String::from_utf8_lossy(&buf[..n]));
        while let Some(i) = pending.find('\n') {
            let line: String = pending.drain(..=i).collect();
            if seen < want {
                seen += 1;
                on_line(line.trim_end())?;
            }
        }
    }
    Ok(seen)
}

trait NonBlock {
    fn custom_flags_nonblock(&mut self) -> &mut Self;
}

impl NonBlock for std::fs::OpenOptions {
    fn custom_flags_nonblock(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NONBLOCK)
    }
}
