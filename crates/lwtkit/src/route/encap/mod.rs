//! A readable, serialisable model of every lightweight-tunnel encap a route
//! can carry, for `lwt list`: decoded from netlink-packet-route's typed
//! payloads (MPLS, IP, IP6, SEG6, SEG6LOCAL, RPL, IOAM6, XFRM), from
//! [`super::codec`] for BPF, and from raw attributes for ILA; printed the way
//! iproute2 prints `ip route` (`encap seg6 mode encap segs 2 [ ... ]`).
//!
//! Decoding never fails: what cannot be read is left out, and a BPF payload
//! the codec rejects becomes [`Encap::Other`].
mod bpf;
mod ila;
mod ioam6;
mod ip;
mod ip6;
mod mpls;
mod rpl;
mod seg6;
mod seg6local;
mod xfrm;

use std::{
    fmt,
    net::{Ipv4Addr, Ipv6Addr},
};

use netlink_packet_route::route::{RouteAttribute, RouteLwEnCapType, RouteLwTunnelEncap};
use serde::Serialize;

pub use self::{bpf::BpfHookInfo, ioam6::Ioam6Trace};
use crate::hook::Hook;

/// The encap of a route, one variant per `LWTUNNEL_ENCAP_*` type.
///
/// Segment lists are in the order packets visit them (iproute2's order),
/// not the reversed order of the SRH on the wire.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "encap", rename_all = "lowercase")]
pub enum Encap {
    Mpls {
        labels: Vec<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        ttl: Option<u8>,
    },
    Ip {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        /// Tunnel source (named apart from the route's own `dst`).
        #[serde(rename = "tunsrc", skip_serializing_if = "Option::is_none")]
        src: Option<Ipv4Addr>,
        #[serde(rename = "tundst", skip_serializing_if = "Option::is_none")]
        dst: Option<Ipv4Addr>,
        #[serde(skip_serializing_if = "Option::is_none")]
        ttl: Option<u8>,
        #[serde(skip_serializing_if = "Option::is_none")]
        tos: Option<u8>,
        /// `key`, `csum`, `seq`.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        flags: Vec<String>,
        /// geneve/vxlan/erspan options, as iproute2 prints them.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        opts: Vec<String>,
    },
    Ila {
        /// 64-bit locator as four hex groups, e.g. `2001:0:0:1`.
        #[serde(skip_serializing_if = "Option::is_none")]
        locator: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        csum_mode: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        ident_type: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        hook_type: Option<String>,
    },
    Ip6 {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        /// Tunnel source (named apart from the route's own `dst`).
        #[serde(rename = "tunsrc", skip_serializing_if = "Option::is_none")]
        src: Option<Ipv6Addr>,
        #[serde(rename = "tundst", skip_serializing_if = "Option::is_none")]
        dst: Option<Ipv6Addr>,
        #[serde(skip_serializing_if = "Option::is_none")]
        hoplimit: Option<u8>,
        #[serde(skip_serializing_if = "Option::is_none")]
        tc: Option<u8>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        flags: Vec<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        opts: Vec<String>,
    },
    Seg6 {
        /// `inline`, `encap`, `l2encap`, `encap.red`, `l2encap.red`.
        mode: String,
        /// Inline mode carries an extra `::` slot for the original destination.
        segments: Vec<Ipv6Addr>,
        #[serde(skip_serializing_if = "Option::is_none")]
        hmac: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        tunsrc: Option<Ipv6Addr>,
    },
    Bpf {
        #[serde(rename = "in", skip_serializing_if = "Option::is_none")]
        input: Option<BpfHookInfo>,
        #[serde(skip_serializing_if = "Option::is_none")]
        out: Option<BpfHookInfo>,
        #[serde(skip_serializing_if = "Option::is_none")]
        xmit: Option<BpfHookInfo>,
        /// Never in a kernel dump; known only from lwtkit's own records.
        #[serde(skip_serializing_if = "Option::is_none")]
        headroom: Option<u32>,
    },
    Seg6local {
        /// iproute2's spelling: `End`, `End.DX4`, `End.BPF`, ...
        action: String,
        /// The table End.T/End.DT* look up (apart from the route's `table`).
        #[serde(rename = "lookup_table", skip_serializing_if = "Option::is_none")]
        table: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        nh4: Option<Ipv4Addr>,
        #[serde(skip_serializing_if = "Option::is_none")]
        nh6: Option<Ipv6Addr>,
        #[serde(skip_serializing_if = "Option::is_none")]
        iif: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        oif: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        vrftable: Option<u32>,
        /// Segments of the SRH that End.B6 / End.B6.Encaps push.
        #[serde(skip_serializing_if = "Option::is_none")]
        srh: Option<Vec<Ipv6Addr>>,
        /// The End.BPF program, with its id from the dump.
        #[serde(skip_serializing_if = "Option::is_none")]
        bpf: Option<BpfHookInfo>,
    },
    Rpl {
        segments: Vec<Ipv6Addr>,
    },
    Ioam6 {
        /// `inline`, `encap`, `auto`.
        #[serde(skip_serializing_if = "Option::is_none")]
        mode: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        tundst: Option<Ipv6Addr>,
        #[serde(skip_serializing_if = "Option::is_none")]
        tunsrc: Option<Ipv6Addr>,
        #[serde(skip_serializing_if = "Option::is_none")]
        trace: Option<Ioam6Trace>,
        #[serde(skip_serializing_if = "Option::is_none")]
        freq_k: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        freq_n: Option<u32>,
    },
    Xfrm {
        #[serde(skip_serializing_if = "Option::is_none")]
        if_id: Option<u32>,
        /// ifindex of `link_dev`.
        #[serde(skip_serializing_if = "Option::is_none")]
        link: Option<u32>,
    },
    /// An encap type this model does not know, or a payload it could not read.
    Other {
        type_id: u16,
    },
}

/// The encap of a route from its attributes: `None` when the route has no
/// `RTA_ENCAP_TYPE` (or `LWTUNNEL_ENCAP_NONE`).
pub fn from_route_attributes(attrs: &[RouteAttribute]) -> Option<Encap> {
    let encap_type = attrs.iter().find_map(|a| match a {
        RouteAttribute::EncapType(t) => Some(*t),
        _ => None,
    })?;
    if encap_type == RouteLwEnCapType::None {
        return None;
    }
    let nlas = attrs
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Encap(nlas) => Some(nlas.as_slice()),
            _ => None,
        })
        .unwrap_or(&[]);
    Some(decode(&encap_type, nlas))
}

/// Reads the nested `RTA_ENCAP` attributes of an encap of type `encap_type`.
/// Attributes of the wrong shape are skipped; it never panics.
pub fn decode(encap_type: &RouteLwEnCapType, nlas: &[RouteLwTunnelEncap]) -> Encap {
    match encap_type {
        RouteLwEnCapType::Mpls => mpls::decode(nlas),
        RouteLwEnCapType::Ip => ip::decode(nlas),
        RouteLwEnCapType::Ila => ila::decode(nlas),
        RouteLwEnCapType::Ip6 => ip6::decode(nlas),
        RouteLwEnCapType::Seg6 => seg6::decode(nlas),
        RouteLwEnCapType::Bpf => bpf::decode(nlas),
        RouteLwEnCapType::Seg6Local => seg6local::decode(nlas),
        RouteLwEnCapType::Rpl => rpl::decode(nlas),
        RouteLwEnCapType::Ioam6 => ioam6::decode(nlas),
        RouteLwEnCapType::Xfrm => xfrm::decode(nlas),
        other => Encap::Other {
            type_id: u16::from(*other),
        },
    }
}

impl Encap {
    /// iproute2's name of the encap type; `"other"` for [`Encap::Other`].
    pub fn kind(&self) -> &'static str {
        match self {
            Encap::Mpls { .. } => "mpls",
            Encap::Ip { .. } => "ip",
            Encap::Ila { .. } => "ila",
            Encap::Ip6 { .. } => "ip6",
            Encap::Seg6 { .. } => "seg6",
            Encap::Bpf { .. } => "bpf",
            Encap::Seg6local { .. } => "seg6local",
            Encap::Rpl { .. } => "rpl",
            Encap::Ioam6 { .. } => "ioam6",
            Encap::Xfrm { .. } => "xfrm",
            Encap::Other { .. } => "other",
        }
    }

    /// The program on hook `h` of a BPF encap, to fill in id, tag, origin.
    pub fn bpf_hook_mut(&mut self, h: Hook) -> Option<&mut BpfHookInfo> {
        let Encap::Bpf {
            input, out, xmit, ..
        } = self
        else {
            return None;
        };
        match h {
            Hook::In => input.as_mut(),
            Hook::Out => out.as_mut(),
            Hook::Xmit => xmit.as_mut(),
        }
    }

    /// Sets the route headroom of a BPF encap (a dump never carries it;
    /// lwtkit knows it from its records), on the encap and on each hook.
    pub fn set_bpf_headroom(&mut self, value: Option<u32>) {
        if let Encap::Bpf {
            input,
            out,
            xmit,
            headroom,
        } = self
        {
            *headroom = value;
            for info in [input, out, xmit].into_iter().flatten() {
                info.headroom = value;
            }
        }
    }

    /// The hooks of a BPF encap that carry a program, in kernel order.
    pub fn bpf_hooks(&self) -> Vec<(Hook, &BpfHookInfo)> {
        let Encap::Bpf {
            input, out, xmit, ..
        } = self
        else {
            return Vec::new();
        };
        [(Hook::In, input), (Hook::Out, out), (Hook::Xmit, xmit)]
            .into_iter()
            .filter_map(|(h, p)| p.as_ref().map(|p| (h, p)))
            .collect()
    }

    /// The End.BPF program of a seg6local encap.
    pub fn endpoint_mut(&mut self) -> Option<&mut BpfHookInfo> {
        match self {
            Encap::Seg6local { bpf, .. } => bpf.as_mut(),
            _ => None,
        }
    }
}

/// iproute2's names of an IP tunnel's flags that are set.
fn tunnel_flags(key: bool, csum: bool, seq: bool) -> Vec<String> {
    [(key, "key"), (csum, "csum"), (seq, "seq")]
        .into_iter()
        .filter(|(set, _)| *set)
        .map(|(_, name)| name.to_owned())
        .collect()
}

/// Writes ` key value` when the value is there.
fn opt<T: fmt::Display>(f: &mut fmt::Formatter<'_>, key: &str, v: &Option<T>) -> fmt::Result {
    match v {
        Some(v) => write!(f, " {key} {v}"),
        None => Ok(()),
    }
}

/// Writes ` segs N [ a b ... ]`.
fn segs(f: &mut fmt::Formatter<'_>, segments: &[Ipv6Addr]) -> fmt::Result {
    write!(f, " segs {} [", segments.len())?;
    for s in segments {
        write!(f, " {s}")?;
    }
    f.write_str(" ]")
}

impl fmt::Display for Encap {
    /// The `encap ...` part of `ip route` output, without trailing space.
    /// Interfaces are shown by ifindex, where iproute2 shows their names.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Encap::Other { type_id } = self {
            return write!(f, "encap type {type_id}");
        }
        write!(f, "encap {}", self.kind())?;
        match self {
            Encap::Mpls { .. } => mpls::write(f, self),
            Encap::Ip { .. } => ip::write(f, self),
            Encap::Ila { .. } => ila::write(f, self),
            Encap::Ip6 { .. } => ip6::write(f, self),
            Encap::Seg6 { .. } => seg6::write(f, self),
            Encap::Bpf { .. } => bpf::write(f, self),
            Encap::Seg6local { .. } => seg6local::write(f, self),
            Encap::Rpl { .. } => rpl::write(f, self),
            Encap::Ioam6 { .. } => ioam6::write(f, self),
            Encap::Xfrm { .. } => xfrm::write(f, self),
            Encap::Other { .. } => Ok(()),
        }
    }
}

/// Names `encap_tests.rs` takes from here through `use super::*`.
#[cfg(test)]
use {
    super::codec::{BpfProgAttr, LwtBpf, Seg6LocalBpf},
    netlink_packet_route::route::{Ioam6Mode, RouteIoam6Tunnel, RouteIpTunnel, RouteXfrmTunnel},
};

#[cfg(test)]
#[path = "../encap_tests.rs"]
mod tests;
