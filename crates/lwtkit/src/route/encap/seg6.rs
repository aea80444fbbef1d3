//! `encap seg6`: an SRv6 segment list pushed (or inserted inline).
use std::fmt;

use netlink_packet_route::route::{RouteLwTunnelEncap, RouteSeg6IpTunnel, Seg6Mode};

use super::{opt, segs, Encap};

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

/// Reads an `encap seg6` payload; attributes of other shapes are skipped.
pub(super) fn decode(nlas: &[RouteLwTunnelEncap]) -> Encap {
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

/// The options after `encap seg6`, as iproute2 prints them.
pub(super) fn write(f: &mut fmt::Formatter<'_>, encap: &Encap) -> fmt::Result {
    let Encap::Seg6 {
        mode,
        segments,
        hmac,
        tunsrc,
    } = encap
    else {
        return Ok(());
    };
    write!(f, " mode {mode}")?;
    segs(f, segments)?;
    if let Some(h) = hmac {
        write!(f, " hmac 0x{h:X}")?;
    }
    opt(f, "tunsrc", tunsrc)
}
