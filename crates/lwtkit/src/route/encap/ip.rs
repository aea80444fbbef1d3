//! `encap ip`: an IPv4 tunnel's metadata for a collect-metadata device.
use std::fmt;

use netlink_packet_route::route::{RouteIpTunnel, RouteIpTunnelFlags, RouteLwTunnelEncap};

use super::{opt, tunnel_flags, Encap};

/// Reads an `encap ip` payload; attributes of other shapes are skipped.
pub(super) fn decode(nlas: &[RouteLwTunnelEncap]) -> Encap {
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

/// The options after `encap ip`, as iproute2 prints them.
pub(super) fn write(f: &mut fmt::Formatter<'_>, encap: &Encap) -> fmt::Result {
    let Encap::Ip {
        id,
        src,
        dst,
        ttl,
        tos,
        flags,
        opts,
    } = encap
    else {
        return Ok(());
    };
    opt(f, "id", id)?;
    opt(f, "src", src)?;
    opt(f, "dst", dst)?;
    opt(f, "ttl", ttl)?;
    opt(f, "tos", tos)?;
    flags.iter().chain(opts).try_for_each(|x| write!(f, " {x}"))
}
