//! `encap ip6`: an IPv6 tunnel's metadata for a collect-metadata device.
use std::fmt;

use netlink_packet_route::route::{RouteIp6Tunnel, RouteIp6TunnelFlags, RouteLwTunnelEncap};

use super::{opt, tunnel_flags, Encap};

/// Reads an `encap ip6` payload; attributes of other shapes are skipped.
pub(super) fn decode(nlas: &[RouteLwTunnelEncap]) -> Encap {
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

/// The options after `encap ip6`, as iproute2 prints them.
pub(super) fn write(f: &mut fmt::Formatter<'_>, encap: &Encap) -> fmt::Result {
    let Encap::Ip6 {
        id,
        src,
        dst,
        hoplimit,
        tc,
        flags,
        opts,
    } = encap
    else {
        return Ok(());
    };
    opt(f, "id", id)?;
    opt(f, "src", src)?;
    opt(f, "dst", dst)?;
    opt(f, "hoplimit", hoplimit)?;
    opt(f, "tc", tc)?;
    flags.iter().chain(opts).try_for_each(|x| write!(f, " {x}"))
}
