//! `encap mpls`: the label stack pushed, and its TTL.
use std::fmt;

use netlink_packet_route::route::{RouteLwTunnelEncap, RouteMplsIpTunnel};

use super::{opt, Encap};

/// Reads an `encap mpls` payload; attributes of other shapes are skipped.
pub(super) fn decode(nlas: &[RouteLwTunnelEncap]) -> Encap {
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

/// The options after `encap mpls`, as iproute2 prints them.
pub(super) fn write(f: &mut fmt::Formatter<'_>, encap: &Encap) -> fmt::Result {
    let Encap::Mpls { labels, ttl } = encap else {
        return Ok(());
    };
    if !labels.is_empty() {
        let stack: Vec<String> = labels.iter().map(u32::to_string).collect();
        write!(f, " {}", stack.join("/"))?;
    }
    opt(f, "ttl", ttl)
}
