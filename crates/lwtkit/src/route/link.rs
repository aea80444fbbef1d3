//! Link and address facts lwtkit needs from rtnetlink (`ip link` / `ip addr`).
use std::net::IpAddr;

use netlink_packet_route::{
    address::{AddressAttribute, AddressMessage, AddressScope},
    link::{LinkAttribute, LinkMessage},
    RouteNetlinkMessage,
};

use super::netlink::{NetlinkError, Rtnl};

/// The MTU of interface `index`.
pub fn mtu(rtnl: &mut Rtnl, index: u32) -> Result<Option<u32>, NetlinkError> {
    let mut req = LinkMessage::default();
    req.header.index = index;
    let replies = rtnl.get(RouteNetlinkMessage::GetLink(req))?;
    Ok(replies.into_iter().find_map(|m| match m {
        RouteNetlinkMessage::NewLink(l) => l.attributes.into_iter().find_map(|a| match a {
            LinkAttribute::Mtu(m) => Some(m),
            _ => None,
        }),
        _ => None,
    }))
}

/// Global-scope addresses of interface `index`, IPv4 first.
pub fn addresses(rtnl: &mut Rtnl, index: u32) -> Result<Vec<IpAddr>, NetlinkError> {
    let mut out: Vec<IpAddr> = rtnl
        .dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()))?
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewAddress(a)
                if a.header.index == index && a.header.scope == AddressScope::Universe =>
            {
                a.attributes.into_iter().find_map(|x| match x {
                    AddressAttribute::Address(ip) => Some(ip),
                    _ => None,
                })
            }
            _ => None,
        })
        .collect();
    out.sort_by_key(|a| a.is_ipv6());
    Ok(out)
}

/// Whether interface `index` holds address `addr` (any scope, any state).
pub fn has_address(rtnl: &mut Rtnl, index: u32, addr: IpAddr) -> Result<bool, NetlinkError> {
    Ok(rtnl
        .dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()))?
        .into_iter()
        .any(|m| match m {
            RouteNetlinkMessage::NewAddress(a) if a.header.index == index => a
                .attributes
                .iter()
                .any(|x| matches!(x, AddressAttribute::Address(ip) if *ip == addr)),
            _ => false,
        }))
}
