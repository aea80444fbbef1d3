//! `encap bpf`: the programs on a route's `in`, `out` and `xmit` hooks
//! (decoded by [`crate::route::codec`]), and what `lwt list` adds to them.
use std::fmt;

use netlink_packet_route::route::{RouteLwEnCapType, RouteLwTunnelEncap};
use serde::Serialize;

use super::{opt, Encap};
use crate::route::codec::{BpfProgAttr, LwtBpf};

/// A BPF program attached to a route, as `lwt list` shows it.
///
/// The kernel dumps only `name` for `encap bpf` (plus `id` for seg6local
/// End.BPF); `id`, `tag` and `origin` are for callers to fill in from what
/// they know about the program (see [`Encap::bpf_hook_mut`]).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BpfHookInfo {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// The route's headroom, repeated here so JSON consumers find it with
    /// the hook.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headroom: Option<u32>,
}

impl BpfHookInfo {
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            id: None,
            tag: None,
            origin: None,
            headroom: None,
        }
    }
}

impl From<&BpfProgAttr> for BpfHookInfo {
    fn from(p: &BpfProgAttr) -> Self {
        Self::named(p.name.clone())
    }
}

impl fmt::Display for BpfHookInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// Reads an `encap bpf` payload with [`LwtBpf`]; one it refuses is
/// [`Encap::Other`].
pub(super) fn decode(nlas: &[RouteLwTunnelEncap]) -> Encap {
    match LwtBpf::from_encap(nlas) {
        Ok(bpf) => Encap::from(&bpf),
        Err(_) => Encap::Other {
            type_id: u16::from(RouteLwEnCapType::Bpf),
        },
    }
}

impl From<&LwtBpf> for Encap {
    /// Each hook also carries the headroom (see [`BpfHookInfo::headroom`]).
    fn from(bpf: &LwtBpf) -> Self {
        let info = |p: &Option<BpfProgAttr>| {
            p.as_ref().map(|p| BpfHookInfo {
                headroom: bpf.headroom,
                ..BpfHookInfo::from(p)
            })
        };
        Encap::Bpf {
            input: info(&bpf.input),
            out: info(&bpf.output),
            xmit: info(&bpf.xmit),
            headroom: bpf.headroom,
        }
    }
}

/// The options after `encap bpf`, as iproute2 prints them.
pub(super) fn write(f: &mut fmt::Formatter<'_>, encap: &Encap) -> fmt::Result {
    let Encap::Bpf {
        input,
        out,
        xmit,
        headroom,
    } = encap
    else {
        return Ok(());
    };
    opt(f, "in", input)?;
    opt(f, "out", out)?;
    opt(f, "xmit", xmit)?;
    opt(f, "headroom", headroom)
}
