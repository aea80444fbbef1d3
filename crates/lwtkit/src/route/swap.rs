//! Swapping the programs of some hooks of a route lwtkit owns, in place:
//! one `RTM_NEWROUTE` with `NLM_F_REPLACE` (never creates), the route as
//! the kernel gave it (metrics, priority, MTU kept), the swapped hooks'
//! new programs and every other hook's program unchanged (re-opened by the
//! id its name ends with). Only when the route carries exactly the
//! programs the caller expects: a route that vanished or that someone
//! else changed is left alone.
use std::{
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::PathBuf,
};

use serde::{Deserialize, Serialize};

use super::{
    codec::{BpfProgAttr, LwtBpf},
    kernel::{marks, split_program_name, Marks, RouteTable},
    netlink::Rtnl,
    ops::{self, RouteKey},
};
use crate::{
    error::{Result, StateError},
    hook::Hook,
};

/// One hook's new program: pinned at `pin`, carried on the route as `name`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookSwap {
    pub hook: Hook,
    pub pin: PathBuf,
    pub name: String,
}

/// What a swap found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Swapped {
    /// The route now carries the new programs.
    Done,
    /// The route is gone, or carries other programs than `before`: untouched.
    NotOurs { found: Option<Marks> },
}

/// The marks `before` with the swaps applied.
pub fn marks_after(before: &Marks, swaps: &[HookSwap]) -> Marks {
    let mut m = before.clone();
    for s in swaps {
        m.insert(s.hook.to_string(), s.name.clone());
    }
    m
}

/// Replaces the programs of `swaps` on route `key` if it carries exactly
/// the programs `before` names.
pub fn swap_hooks(
    rtnl: &mut Rtnl,
    key: &RouteKey,
    before: &Marks,
    swaps: &[HookSwap],
) -> Result<Swapped> {
    let Some(current) = rtnl.lookup(key)? else {
        return Ok(Swapped::NotOurs { found: None });
    };
    let found = marks(&current);
    if found != *before {
        return Ok(Swapped::NotOurs { found: Some(found) });
    }
    let old = LwtBpf::from_route_attributes(&current.attributes)?.unwrap_or_default();
    let mut bpf = LwtBpf {
        headroom: old.headroom,
        ..LwtBpf::default()
    };
    // Every fd must stay open until the route is sent.
    let mut fds: Vec<OwnedFd> = Vec::new();
    for h in Hook::ALL {
        let (fd, name) = if let Some(s) = swaps.iter().find(|s| s.hook == h) {
            let fd = libbpf_rs::Program::fd_from_pinned_path(&s.pin)
                .map_err(|_| StateError::MissingPin(s.pin.clone()))?;
            (fd, s.name.clone())
        } else if let Some(p) = old.hook(h) {
            (fd_of_named(&p.name)?, p.name.clone())
        } else {
            continue;
        };
        bpf.set_hook(
            h,
            Some(BpfProgAttr {
                fd: Some(fd.as_raw_fd() as u32),
                name,
            }),
        );
        fds.push(fd);
    }
    let mut route = ops::without_encap(ops::sanitize(&current));
    route.attributes.extend(bpf.encode()?);
    match rtnl.replace(route) {
        Ok(()) => Ok(Swapped::Done),
        // Gone between the lookup and the replace.
        Err(e) if e.errno() == Some(libc::ENOENT) || e.errno() == Some(libc::ESRCH) => {
            Ok(Swapped::NotOurs { found: None })
        }
        Err(e) => Err(e.into()),
    }
}

/// An fd of the program a route name ends with (`...#<id>`).
fn fd_of_named(name: &str) -> Result<OwnedFd> {
    let id = split_program_name(name).1.ok_or_else(|| StateError::Io {
        path: PathBuf::from(name),
        reason: "the route's program name carries no program id".into(),
    })?;
    // SAFETY: bpf_prog_get_fd_by_id takes a plain id and returns a new fd
    // (or a negative errno), which is owned here.
    let fd = unsafe { libbpf_rs::libbpf_sys::bpf_prog_get_fd_by_id(id) };
    if fd < 0 {
        return Err(StateError::Io {
            path: PathBuf::from(name),
            reason: format!("program {id}: {}", std::io::Error::from_raw_os_error(-fd)),
        }
        .into());
    }
    // SAFETY: a fresh fd nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
