//! `encap xfrm`: the xfrm interface id (and link) a route sends through.
use std::fmt;

use netlink_packet_route::route::{RouteLwTunnelEncap, RouteXfrmTunnel};

use super::{opt, Encap};

/// Reads an `encap xfrm` payload; attributes of other shapes are skipped.
pub(super) fn decode(nlas: &[RouteLwTunnelEncap]) -> Encap {
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

/// The options after `encap xfrm`, as iproute2 prints them.
pub(super) fn write(f: &mut fmt::Formatter<'_>, encap: &Encap) -> fmt::Result {
    let Encap::Xfrm { if_id, link } = encap else {
        return Ok(());
    };
    opt(f, "if_id", if_id)?;
    opt(f, "link_dev", link)
}
