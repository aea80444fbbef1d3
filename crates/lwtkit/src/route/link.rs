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

/// The link-layer type (`ARPHRD_*`) of interface `index`, `None` when it
/// is gone.
pub fn link_type(rtnl: &mut Rtnl, index: u32) -> Result<Option<u16>, NetlinkError> {
    let mut req = LinkMessage::default();
    req.header.index = index;
    let replies = match rtnl.get(RouteNetlinkMessage::GetLink(req)) {
        Ok(r) => r,
        Err(e) if e.errno() == Some(libc::ENODEV) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(replies.into_iter().find_map(|m| match m {
        RouteNetlinkMessage::NewLink(l) => Some(u16::from(l.header.link_layer_type)),
        _ => None,
    }))
}

/// Whether `bpf_redirect` may send into a device of link-layer type
/// `arphrd` from an LWT hook: only devices that take packets without a
/// link-layer header (`dev_is_mac_header_xmit()` false in
/// include/linux/if_arp.h: ip tunnels, tun, wireguard, raw IP, PPP). Into
/// any other, `__bpf_redirect_common` drops the packet (-ERANGE): an LWT
/// packet has no MAC header.
pub fn takes_bare_ip(arphrd: u16) -> bool {
    const TUNNEL: u16 = 768;
    const TUNNEL6: u16 = 769;
    const SIT: u16 = 776;
    const IPGRE: u16 = 778;
    const PIMREG: u16 = 779;
    const PPP: u16 = 512;
    const RAWIP: u16 = 519;
    const VOID: u16 = 0xffff;
    const NONE: u16 = 0xfffe;
    matches!(
        arphrd,
        TUNNEL | TUNNEL6 | SIT | IPGRE | PIMREG | PPP | RAWIP | VOID | NONE
    )
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
