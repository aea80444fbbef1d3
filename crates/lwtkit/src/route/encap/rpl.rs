//! `encap rpl`: an RPL source routing header's segments.
use std::fmt;

use netlink_packet_route::route::{RouteLwTunnelEncap, RouteRplIpTunnel};

use super::{segs, Encap};

/// Reads an `encap rpl` payload; attributes of other shapes are skipped.
pub(super) fn decode(nlas: &[RouteLwTunnelEncap]) -> Encap {
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

/// The options after `encap rpl`, as iproute2 prints them.
pub(super) fn write(f: &mut fmt::Formatter<'_>, encap: &Encap) -> fmt::Result {
    let Encap::Rpl { segments } = encap else {
        return Ok(());
    };
    segs(f, segments)
}
