//! What wakes the agent: rtnetlink notifications (routes of both families,
//! links, addresses) on a socket opened inside the target namespace, the
//! config file's directory (inotify), and signals (signalfd). All three are
//! file descriptors, polled from the agent's one thread.
use std::{
    io,
    os::fd::{AsFd, BorrowedFd},
    path::{Path, PathBuf},
};

use netlink_sys::{protocols::NETLINK_ROUTE, Socket};
use nix::sys::{
    inotify::{AddWatchFlags, InitFlags, Inotify},
    signal::{SigSet, Signal},
    signalfd::{SfdFlags, SignalFd},
};

use super::AgentError;

/// rtnetlink multicast groups (`enum rtnetlink_groups`, uapi
/// linux/rtnetlink.h): a route replaced or deleted is announced on its
/// family's route group; a device going down or away on the link group,
/// and the routes the kernel flushes with it are not announced one by one
/// (IPv4), so links and addresses wake the agent too.
pub const GROUPS: [u32; 5] = [
    libc::RTNLGRP_LINK,
    libc::RTNLGRP_IPV4_IFADDR,
    libc::RTNLGRP_IPV4_ROUTE,
    libc::RTNLGRP_IPV6_IFADDR,
    libc::RTNLGRP_IPV6_ROUTE,
];

use libc::{RTM_DELADDR, RTM_DELLINK, RTM_DELROUTE, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE};

/// What a batch of notifications said, for the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Notified {
    pub routes: usize,
    pub links: usize,
    pub addresses: usize,
    /// The socket's buffer overflowed: notifications were lost, so
    /// anything may have changed.
    pub overrun: bool,
}

impl Notified {
    pub fn any(&self) -> bool {
        self.routes + self.links + self.addresses > 0 || self.overrun
    }
}

/// A netlink socket subscribed to the groups above, in the namespace the
/// calling thread is in.
pub struct RouteWatch {
    socket: Socket,
}

impl RouteWatch {
    pub fn open() -> Result<Self, AgentError> {
        let err = |reason: io::Error| AgentError::Watch {
            what: "route and link notifications (rtnetlink)".into(),
            reason,
        };
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(err)?;
        socket.bind_auto().map_err(err)?;
        for group in GROUPS {
            socket.add_membership(group).map_err(err)?;
        }
        // A burst (a device with many routes going away) should fit; if it
        // does not, ENOBUFS says so and the agent checks everything.
        let _ = socket.set_rx_buf_sz(4 << 20);
        socket.set_non_blocking(true).map_err(err)?;
        Ok(Self { socket })
    }

    /// Reads every pending notification.
    pub fn drain(&mut self) -> Notified {
        let mut seen = Notified::default();
        loop {
            match self.socket.recv_from_full() {
                Ok((data, _)) if data.is_empty() => break,
                Ok((data, _)) => count(&data, &mut seen),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => seen.overrun = true,
                Err(e) => {
                    tracing::warn!("reading route notifications: {e}; checking everything");
                    seen.overrun = true;
                    break;
                }
            }
        }
        seen
    }
}

impl AsFd for RouteWatch {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// Counts the messages of one datagram by type (`struct nlmsghdr`: u32
/// length, u16 type, ...).
fn count(mut data: &[u8], seen: &mut Notified) {
    while data.len() >= 16 {
        let len = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize;
        let kind = u16::from_ne_bytes([data[4], data[5]]);
        match kind {
            RTM_NEWROUTE | RTM_DELROUTE => seen.routes += 1,
            RTM_NEWLINK | RTM_DELLINK => seen.links += 1,
            RTM_NEWADDR | RTM_DELADDR => seen.addresses += 1,
            _ => {}
        }
        // Messages are 4-byte aligned (NLMSG_ALIGN).
        let step = (len + 3) & !3;
        if len < 16 || step > data.len() {
            break;
        }
        data = &data[step..];
    }
}

/// inotify on the config file's directory: an editor's save, a rename into
/// place and a Kubernetes ConfigMap's symlink swap (`..data`) all show
/// there, and a watch on the file itself would be lost with its inode.
pub struct FileWatch {
    inotify: Inotify,
    dir: PathBuf,
}

impl FileWatch {
    pub fn open(file: &Path) -> Result<Self, AgentError> {
        let dir = match file.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let err = |e: nix::Error| AgentError::Watch {
            what: format!("the directory {}", dir.display()),
            reason: io::Error::from_raw_os_error(e as i32),
        };
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).map_err(err)?;
        inotify
            .add_watch(
                &dir,
                AddWatchFlags::IN_CLOSE_WRITE
                    | AddWatchFlags::IN_MOVED_TO
                    | AddWatchFlags::IN_CREATE
                    | AddWatchFlags::IN_DELETE
                    | AddWatchFlags::IN_ATTRIB,
            )
            .map_err(err)?;
        Ok(Self { inotify, dir })
    }

    /// Reads the pending events; whether there were any.
    pub fn drain(&self) -> bool {
        let mut any = false;
        loop {
            match self.inotify.read_events() {
                Ok(events) if !events.is_empty() => any = true,
                Ok(_) | Err(nix::Error::EAGAIN) => break,
                Err(e) => {
                    tracing::warn!("watching {}: {e}", self.dir.display());
                    break;
                }
            }
        }
        any
    }
}

impl AsFd for FileWatch {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }
}

/// What a signal asks of the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asked {
    Reload,
    Stop(Signal),
}

/// SIGHUP, SIGTERM and SIGINT, blocked in the calling thread (and so in
/// every thread it starts after) and read from a signalfd.
pub struct Signals {
    fd: SignalFd,
}

impl Signals {
    pub fn block() -> Result<Self, AgentError> {
        let err = |e: nix::Error| AgentError::Watch {
            what: "signals".into(),
            reason: io::Error::from_raw_os_error(e as i32),
        };
        let mut mask = SigSet::empty();
        for s in [Signal::SIGHUP, Signal::SIGTERM, Signal::SIGINT] {
            mask.add(s);
        }
        mask.thread_block().map_err(err)?;
        let fd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(err)?;
        Ok(Self { fd })
    }

    /// The pending signals, in order.
    pub fn drain(&self) -> Vec<Asked> {
        let mut out = Vec::new();
        while let Ok(Some(info)) = self.fd.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGHUP) => out.push(Asked::Reload),
                Ok(s) => out.push(Asked::Stop(s)),
                Err(_) => {}
            }
        }
        out
    }
}

impl AsFd for Signals {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: u16, len: u32) -> Vec<u8> {
        let mut m = len.to_ne_bytes().to_vec();
        m.extend_from_slice(&kind.to_ne_bytes());
        m.resize(len as usize, 0);
        m
    }

    #[test]
    fn groups_are_the_uapi_numbers_netlink_add_membership_takes() {
        // enum rtnetlink_groups: RTNLGRP_NONE is 0, so LINK is 1, ...
        assert_eq!(GROUPS, [1, 5, 7, 9, 11]);
    }

    #[test]
    fn notifications_are_counted_by_kind_across_one_datagram() {
        let mut data = header(RTM_NEWROUTE, 60);
        data.extend(header(RTM_DELLINK, 32));
        data.extend(header(RTM_NEWADDR, 18)); // padded to 20
        data.resize(data.len() + 2, 0);
        data.extend(header(3, 16)); // NLMSG_DONE: not counted
        let mut seen = Notified::default();
        count(&data, &mut seen);
        assert_eq!(
            seen,
            Notified {
                routes: 1,
                links: 1,
                addresses: 1,
                overrun: false
            }
        );
        assert!(seen.any());
        assert!(!Notified::default().any());
    }
}
