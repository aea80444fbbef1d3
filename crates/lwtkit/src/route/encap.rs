//! A readable, serialisable model of every lightweight-tunnel encap a route
//! can carry, for `lwt list`: decoded from netlink-packet-route's typed
//! payloads (MPLS, IP, IP6, SEG6, SEG6LOCAL, RPL, IOAM6, XFRM), from
//! [`super::codec`] for BPF, and from raw attributes for ILA; printed the way
//! iproute2 prints `ip route` (`encap seg6 mode encap segs 2 [ ... ]`).
//!
//! Decoding never fails: what cannot be read is left out, and a BPF payload
//! the codec rejects becomes [`Encap::Other`].
use std::{
    fmt,
    net::{Ipv4Addr, Ipv6Addr},
};

use netlink_packet_core::{Nla, NLA_TYPE_MASK};
use netlink_packet_route::route::{
    Ioam6Mode, RouteAttribute, RouteIoam6Tunnel, RouteIp6Tunnel, RouteIp6TunnelFlags,
    RouteIpTunnel, RouteIpTunnelFlags, RouteLwEnCapType, RouteLwTunnelEncap, RouteMplsIpTunnel,
    RouteRplIpTunnel, RouteSeg6IpTunnel, RouteSeg6LocalTunnel, RouteXfrmTunnel, Seg6Mode,
};
use serde::Serialize;

use super::codec::{BpfProgAttr, LwtBpf, Seg6LocalBpf};
use crate::hook::Hook;

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

/// The IOAM pre-allocated trace an `encap ioam6` route inserts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Ioam6Trace {
    /// IOAM namespace id.
    pub ns: u16,
    /// Trace type bits, as iproute2's `type 0x800000`.
    #[serde(rename = "type")]
    pub trace_type: u32,
    /// Bytes pre-allocated for node data.
    pub size: u32,
}

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
        RouteLwEnCapType::Mpls => decode_mpls(nlas),
        RouteLwEnCapType::Ip => decode_ip(nlas),
        RouteLwEnCapType::Ila => decode_ila(nlas),
        RouteLwEnCapType::Ip6 => decode_ip6(nlas),
        RouteLwEnCapType::Seg6 => decode_seg6(nlas),
        RouteLwEnCapType::Bpf => match LwtBpf::from_encap(nlas) {
            Ok(bpf) => Encap::from(&bpf),
            Err(_) => Encap::Other {
                type_id: u16::from(*encap_type),
            },
        },
        RouteLwEnCapType::Seg6Local => decode_seg6local(nlas),
        RouteLwEnCapType::Rpl => decode_rpl(nlas),
        RouteLwEnCapType::Ioam6 => decode_ioam6(nlas),
        RouteLwEnCapType::Xfrm => decode_xfrm(nlas),
        other => Encap::Other {
            type_id: u16::from(*other),
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

fn decode_mpls(nlas: &[RouteLwTunnelEncap]) -> Encap {
    let (mut labels, mut ttl) = (Vec::new(), None);
    for nla in nlas {
        match nla {
            RouteLwTunnelEncap::Mpls(RouteMplsIpTunnel::Destination(stack)) => {
                labels = stack.iter().map(|l| l.label).collect();
            }
            RouteLwTunnelEncap::Mpls(RouteMplsIpTunnel::Ttl(t)) => ttl = Some(*t),
            _ => {}
        }
    }
    Encap::Mpls { labels, ttl }
}

fn tunnel_flags(key: bool, csum: bool, seq: bool) -> Vec<String> {
    [(key, "key"), (csum, "csum"), (seq, "seq")]
        .into_iter()
        .filter(|(set, _)| *set)
        .map(|(_, name)| name.to_owned())
        .collect()
}

fn decode_ip(nlas: &[RouteLwTunnelEncap]) -> Encap {
    let (mut id, mut src, mut dst, mut ttl, mut tos) = (None, None, None, None, None);
    let (mut flags, mut opts) = (Vec::new(), Vec::new());
    for nla in nlas {
        let RouteLwTunnelEncap::Ip(attr) = nla else {
            continue;
        };
        match attr {
            RouteIpTunnel::Id(v) => id = Some(*v),
            RouteIpTunnel::Source(v) => src = Some(*v),
            RouteIpTunnel::Destination(v) => dst = Some(*v),
            RouteIpTunnel::Ttl(v) => ttl = Some(*v),
            RouteIpTunnel::Tos(v) => tos = Some(*v),
            RouteIpTunnel::Flags(f) => {
                flags = tunnel_flags(
                    f.contains(RouteIpTunnelFlags::Key),
                    f.contains(RouteIpTunnelFlags::Checksum),
                    f.contains(RouteIpTunnelFlags::Sequence),
                );
            }
            RouteIpTunnel::Opts(o) => opts = o.iter().map(|o| o.to_string()).collect(),
            _ => {}
        }
    }
    Encap::Ip {
        id,
        src,
        dst,
        ttl,
        tos,
        flags,
        opts,
    }
}

fn decode_ip6(nlas: &[RouteLwTunnelEncap]) -> Encap {
    let (mut id, mut src, mut dst, mut hoplimit, mut tc) = (None, None, None, None, None);
    let (mut flags, mut opts) = (Vec::new(), Vec::new());
    for nla in nlas {
        let RouteLwTunnelEncap::Ip6(attr) = nla else {
            continue;
        };
        match attr {
            RouteIp6Tunnel::Id(v) => id = Some(*v),
            RouteIp6Tunnel::Source(v) => src = Some(*v),
            RouteIp6Tunnel::Destination(v) => dst = Some(*v),
            RouteIp6Tunnel::Hoplimit(v) => hoplimit = Some(*v),
            RouteIp6Tunnel::Tc(v) => tc = Some(*v),
            RouteIp6Tunnel::Flags(f) => {
                flags = tunnel_flags(
                    f.contains(RouteIp6TunnelFlags::Key),
                    f.contains(RouteIp6TunnelFlags::Checksum),
                    f.contains(RouteIp6TunnelFlags::Sequence),
                );
            }
            RouteIp6Tunnel::Opts(o) => opts = o.iter().map(|o| o.to_string()).collect(),
            _ => {}
        }
    }
    Encap::Ip6 {
        id,
        src,
        dst,
        hoplimit,
        tc,
        flags,
        opts,
    }
}

// include/uapi/linux/ila.h
const ILA_ATTR_LOCATOR: u16 = 1;
const ILA_ATTR_CSUM_MODE: u16 = 7;
const ILA_ATTR_IDENT_TYPE: u16 = 8;
const ILA_ATTR_HOOK_TYPE: u16 = 9;

/// netlink-packet-route has no ILA payload: read the raw attributes. The
/// kernel may put an `ILA_ATTR_PAD` before the u64 locator; it is skipped
/// with everything else unknown.
fn decode_ila(nlas: &[RouteLwTunnelEncap]) -> Encap {
    let (mut locator, mut csum_mode, mut ident_type, mut hook_type) = (None, None, None, None);
    for nla in nlas {
        let RouteLwTunnelEncap::Other(raw) = nla else {
            continue;
        };
        let mut value = vec![0; raw.value_len()];
        raw.emit_value(&mut value);
        match (raw.kind() & NLA_TYPE_MASK, value.as_slice()) {
            // The locator is in network byte order; iproute2 shows it as
            // four 16-bit hex groups.
            (ILA_ATTR_LOCATOR, &[a, b, c, d, e, f, g, h]) => {
                let groups = [[a, b], [c, d], [e, f], [g, h]]
                    .map(|w| format!("{:x}", u16::from_be_bytes(w)));
                locator = Some(groups.join(":"));
            }
            (ILA_ATTR_CSUM_MODE, &[v]) => {
                let name = match v {
                    0 => "adj-transport",
                    1 => "neutral-map",
                    2 => "no-action",
                    3 => "neutral-map-auto",
                    _ => "",
                };
                csum_mode = Some(known_or_number(name, v));
            }
            (ILA_ATTR_IDENT_TYPE, &[v]) => {
                let name = match v {
                    0 => "iid",
                    1 => "luid",
                    2 => "virt-v4",
                    3 => "virt-uni-v6",
                    4 => "virt-multi-v6",
                    5 => "nonlocal-addr",
                    32 => "use-format",
                    _ => "",
                };
                ident_type = Some(known_or_number(name, v));
            }
            (ILA_ATTR_HOOK_TYPE, &[v]) => {
                let name = match v {
                    0 => "output",
                    1 => "input",
                    _ => "",
                };
                hook_type = Some(known_or_number(name, v));
            }
            _ => {}
        }
    }
    Encap::Ila {
        locator,
        csum_mode,
        ident_type,
        hook_type,
    }
}

fn known_or_number(name: &str, v: u8) -> String {
    if name.is_empty() {
        format!("unknown({v})")
    } else {
        name.to_owned()
    }
}

fn seg6_mode_name(mode: Seg6Mode) -> String {
    match u32::from(mode) {
        0 => "inline".into(),
        1 => "encap".into(),
        2 => "l2encap".into(),
        3 => "encap.red".into(),
        4 => "l2encap.red".into(),
        n => format!("unknown({n})"),
    }
}

fn decode_seg6(nlas: &[RouteLwTunnelEncap]) -> Encap {
    let (mut mode, mut segments, mut hmac, mut tunsrc) =
        (String::from("unknown"), Vec::new(), None, None);
    for nla in nlas {
        match nla {
            RouteLwTunnelEncap::Seg6(RouteSeg6IpTunnel::Seg6(h)) => {
                mode = seg6_mode_name(h.mode);
                // netlink-packet-route already gives them in visiting order.
                segments = h.segments.clone();
                hmac = h.hmac;
            }
            RouteLwTunnelEncap::Seg6(RouteSeg6IpTunnel::Src(a)) => tunsrc = Some(*a),
            _ => {}
        }
    }
    Encap::Seg6 {
        mode,
        segments,
        hmac,
        tunsrc,
    }
}

fn decode_seg6local(nlas: &[RouteLwTunnelEncap]) -> Encap {
    let mut action = String::from("unknown");
    let (mut table, mut nh4, mut nh6, mut iif, mut oif, mut vrftable, mut srh) =
        (None, None, None, None, None, None, None);
    for nla in nlas {
        let RouteLwTunnelEncap::Seg6Local(attr) = nla else {
            continue;
        };
        match attr {
            RouteSeg6LocalTunnel::Action(a) => action = a.to_string(),
            RouteSeg6LocalTunnel::Table(v) => table = Some(*v),
            RouteSeg6LocalTunnel::Nh4(v) => nh4 = Some(*v),
            RouteSeg6LocalTunnel::Nh6(v) => nh6 = Some(*v),
            RouteSeg6LocalTunnel::Iif(v) => iif = Some(*v),
            RouteSeg6LocalTunnel::Oif(v) => oif = Some(*v),
            RouteSeg6LocalTunnel::VrfTable(v) => vrftable = Some(*v),
            // The SRH holds the last segment first.
            RouteSeg6LocalTunnel::Srh(s) => srh = Some(s.segments.iter().rev().copied().collect()),
            _ => {}
        }
    }
    let bpf = Seg6LocalBpf::from_encap(nlas)
        .ok()
        .flatten()
        .map(|b| BpfHookInfo {
            id: b.id,
            ..BpfHookInfo::from(&b.prog)
        });
    Encap::Seg6local {
        action,
        table,
        nh4,
        nh6,
        iif,
        oif,
        vrftable,
        srh,
        bpf,
    }
}

fn decode_rpl(nlas: &[RouteLwTunnelEncap]) -> Encap {
    let segments = nlas
        .iter()
        .find_map(|nla| match nla {
            // Wire order is reversed, as in an SRv6 SRH.
            RouteLwTunnelEncap::Rpl(RouteRplIpTunnel::Srh(srh)) => {
                Some(srh.segments.iter().rev().copied().collect())
            }
            _ => None,
        })
        .unwrap_or_default();
    Encap::Rpl { segments }
}

fn decode_ioam6(nlas: &[RouteLwTunnelEncap]) -> Encap {
    let (mut mode, mut tundst, mut tunsrc, mut trace, mut freq_k, mut freq_n) =
        (None, None, None, None, None, None);
    for nla in nlas {
        let RouteLwTunnelEncap::Ioam6(attr) = nla else {
            continue;
        };
        match attr {
            RouteIoam6Tunnel::Mode(m) => {
                mode = Some(match m {
                    Ioam6Mode::Inline => "inline".to_owned(),
                    Ioam6Mode::Encap => "encap".to_owned(),
                    Ioam6Mode::Auto => "auto".to_owned(),
                    other => format!("unknown({})", u8::from(*other)),
                })
            }
            RouteIoam6Tunnel::Dst(a) => tundst = Some(*a),
            RouteIoam6Tunnel::Src(a) => tunsrc = Some(*a),
            RouteIoam6Tunnel::Trace(t) => {
                trace = Some(Ioam6Trace {
                    ns: t.namespace_id,
                    trace_type: t.trace_type,
                    size: u32::from(t.remlen) * 4,
                })
            }
            RouteIoam6Tunnel::FreqK(v) => freq_k = Some(*v),
            RouteIoam6Tunnel::FreqN(v) => freq_n = Some(*v),
            _ => {}
        }
    }
    Encap::Ioam6 {
        mode,
        tundst,
        tunsrc,
        trace,
        freq_k,
        freq_n,
    }
}

fn decode_xfrm(nlas: &[RouteLwTunnelEncap]) -> Encap {
    let (mut if_id, mut link) = (None, None);
    for nla in nlas {
        match nla {
            RouteLwTunnelEncap::Xfrm(RouteXfrmTunnel::IfId(v)) => if_id = Some(*v),
            RouteLwTunnelEncap::Xfrm(RouteXfrmTunnel::Link(v)) => link = Some(*v),
            _ => {}
        }
    }
    Encap::Xfrm { if_id, link }
}

/// Writes ` key value` when the value is there.
fn opt<T: fmt::Display>(f: &mut fmt::Formatter<'_>, key: &str, v: &Option<T>) -> fmt::Result {
    match v {
        Some(v) => write!(f, " {key} {v}"),
        None => Ok(()),
    }
}

fn segs(f: &mut fmt::Formatter<'_>, segments: &[Ipv6Addr]) -> fmt::Result {
    write!(f, " segs {} [", segments.len())?;
    for s in segments {
        write!(f, " {s}")?;
    }
    f.write_str(" ]")
}

/// iproute2 names the well-known tables (`rtnl_rttable_n2a`).
fn table_name(table: u32) -> String {
    match table {
        253 => "default".into(),
        254 => "main".into(),
        255 => "local".into(),
        n => n.to_string(),
    }
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
            Encap::Mpls { labels, ttl } => {
                if !labels.is_empty() {
                    let stack: Vec<String> = labels.iter().map(u32::to_string).collect();
                    write!(f, " {}", stack.join("/"))?;
                }
                opt(f, "ttl", ttl)
            }
            Encap::Ip {
                id,
                src,
                dst,
                ttl,
                tos,
                flags,
                opts,
            } => {
                opt(f, "id", id)?;
                opt(f, "src", src)?;
                opt(f, "dst", dst)?;
                opt(f, "ttl", ttl)?;
                opt(f, "tos", tos)?;
                flags.iter().chain(opts).try_for_each(|x| write!(f, " {x}"))
            }
            Encap::Ila {
                locator,
                csum_mode,
                ident_type,
                hook_type,
            } => {
                if let Some(l) = locator {
                    write!(f, " {l}")?;
                }
                opt(f, "csum-mode", csum_mode)?;
                opt(f, "ident-type", ident_type)?;
                opt(f, "hook-type", hook_type)
            }
            Encap::Ip6 {
                id,
                src,
                dst,
                hoplimit,
                tc,
                flags,
                opts,
            } => {
                opt(f, "id", id)?;
                opt(f, "src", src)?;
                opt(f, "dst", dst)?;
                opt(f, "hoplimit", hoplimit)?;
                opt(f, "tc", tc)?;
                flags.iter().chain(opts).try_for_each(|x| write!(f, " {x}"))
            }
            Encap::Seg6 {
                mode,
                segments,
                hmac,
                tunsrc,
            } => {
                write!(f, " mode {mode}")?;
                segs(f, segments)?;
                if let Some(h) = hmac {
                    write!(f, " hmac 0x{h:X}")?;
                }
                opt(f, "tunsrc", tunsrc)
            }
            Encap::Bpf {
                input,
                out,
                xmit,
                headroom,
            } => {
                opt(f, "in", input)?;
                opt(f, "out", out)?;
                opt(f, "xmit", xmit)?;
                opt(f, "headroom", headroom)
            }
            Encap::Seg6local {
                action,
                table,
                nh4,
                nh6,
                iif,
                oif,
                vrftable,
                srh,
                bpf,
            } => {
                write!(f, " action {action}")?;
                if let Some(s) = srh {
                    segs(f, s)?;
                }
                opt(f, "table", &table.map(table_name))?;
                opt(f, "vrftable", &vrftable.map(table_name))?;
                opt(f, "nh4", nh4)?;
                opt(f, "nh6", nh6)?;
                opt(f, "iif", iif)?;
                opt(f, "oif", oif)?;
                opt(f, "endpoint", bpf)
            }
            Encap::Rpl { segments } => segs(f, segments),
            Encap::Ioam6 {
                mode,
                tundst,
                tunsrc,
                trace,
                freq_k,
                freq_n,
            } => {
                if let (Some(k), Some(n)) = (freq_k, freq_n) {
                    write!(f, " freq {k}/{n}")?;
                }
                opt(f, "mode", mode)?;
                opt(f, "tunsrc", tunsrc)?;
                opt(f, "tundst", tundst)?;
                if let Some(t) = trace {
                    write!(
                        f,
                        " trace prealloc type {:#08x} ns {} size {}",
                        t.trace_type, t.ns, t.size
                    )?;
                }
                Ok(())
            }
            Encap::Xfrm { if_id, link } => {
                opt(f, "if_id", if_id)?;
                opt(f, "link_dev", link)
            }
            Encap::Other { .. } => Ok(()),
        }
    }
}

#[cfg(test)]
#[path = "encap_tests.rs"]
mod tests;
