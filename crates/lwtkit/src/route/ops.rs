//! The route operations lwtkit needs, each equivalent to an `ip route`
//! command: dump (`ip route show table all`), replace (`ip route replace`),
//! delete (`ip route del`), and the conversions between a route and the
//! bytes lwtkit keeps to restore it.
use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{Emitable, Parseable, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::{
    route::{
        RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol,
        RouteScope, RouteType,
    },
    AddressFamily, RouteNetlinkMessage,
};

use super::{
    netlink::{NetlinkError, Rtnl},
    table::{RT_TABLE_LOCAL, RT_TABLE_MAIN},
};

/// Where a route lives and what makes it unique for lwtkit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteKey {
    pub dst: IpNet,
    pub table: u32,
}

impl RouteKey {
    /// The route's name in lwtkit's records and pins, safe as a file name
    /// and as a bpffs name (bpffs refuses dots): table and prefix.
    pub fn record_key(&self) -> String {
        format!(
            "{}_{}",
            self.table,
            self.dst.to_string().replace(['/', ':', '.'], "_")
        )
    }
}

impl std::fmt::Display for RouteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} table {}",
            self.dst,
            super::table::table_name(self.table)
        )
    }
}

/// Every route of both families in every table (`ip route show table all`
/// plus `ip -6 route show table all`).
pub fn dump_all(rtnl: &mut Rtnl) -> Result<Vec<RouteMessage>, NetlinkError> {
    let mut routes = Vec::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut req = RouteMessage::default();
        req.header.address_family = family;
        for reply in rtnl.dump(RouteNetlinkMessage::GetRoute(req))? {
            if let RouteNetlinkMessage::NewRoute(r) = reply {
                routes.push(r);
            }
        }
    }
    Ok(routes)
}

/// The route's table (RTA_TABLE wins over the 8-bit header field).
pub fn table_of(route: &RouteMessage) -> u32 {
    route
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(route.header.table))
}

/// The route's destination prefix (`default` routes have no RTA_DST).
pub fn dst_of(route: &RouteMessage) -> Option<IpNet> {
    let len = route.header.destination_prefix_length;
    let addr = route.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(v4)) => Some(IpAddr::V4(*v4)),
        RouteAttribute::Destination(RouteAddress::Inet6(v6)) => Some(IpAddr::V6(*v6)),
        _ => None,
    });
    match (addr, route.header.address_family) {
        (Some(a), _) => IpNet::new(a, len).ok(),
        (None, AddressFamily::Inet) => IpNet::new(IpAddr::V4(0.into()), 0).ok(),
        (None, AddressFamily::Inet6) => IpNet::new(IpAddr::V6(0u128.into()), 0).ok(),
        _ => None,
    }
}

pub fn oif_of(route: &RouteMessage) -> Option<u32> {
    route.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    })
}

/// The route's metric (RTA_PRIORITY); 0 when absent, as the kernel leaves
/// it out of IPv4 routes of metric 0.
pub fn metric_of(route: &RouteMessage) -> u32 {
    route
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Priority(p) => Some(*p),
            _ => None,
        })
        .unwrap_or(0)
}

/// What a new route looks like when lwtkit creates it.
pub struct NewRoute {
    pub key: RouteKey,
    pub local: bool,
    pub oif: u32,
    pub via: Option<IpAddr>,
}

/// A fresh route message for `spec`, as `ip route add` would build it.
pub fn new_route(spec: &NewRoute) -> RouteMessage {
    let mut r = RouteMessage::default();
    let h: &mut RouteHeader = &mut r.header;
    h.address_family = family(&spec.key.dst);
    h.destination_prefix_length = spec.key.dst.prefix_len();
    h.protocol = RouteProtocol::Boot;
    h.kind = if spec.local {
        RouteType::Local
    } else {
        RouteType::Unicast
    };
    h.scope = match (spec.local, spec.via) {
        (true, _) => RouteScope::Host,
        (false, Some(_)) => RouteScope::Universe,
        (false, None) if h.address_family == AddressFamily::Inet6 => RouteScope::Universe,
        (false, None) => RouteScope::Link,
    };
    set_table(&mut r, spec.key.table);
    r.attributes
        .push(RouteAttribute::Destination(address(spec.key.dst.network())));
    r.attributes.push(RouteAttribute::Oif(spec.oif));
    if let Some(gw) = spec.via {
        r.attributes.push(RouteAttribute::Gateway(address(gw)));
    }
    r
}

/// A dumped route made fit to be sent back: kernel-only attributes and
/// flags removed, encap removed (the caller sets its own).
pub fn sanitize(route: &RouteMessage) -> RouteMessage {
    let mut r = route.clone();
    r.header.flags &= RouteFlags::Onlink;
    r.attributes.retain(|a| {
        matches!(
            a,
            RouteAttribute::Destination(_)
                | RouteAttribute::Source(_)
                | RouteAttribute::Gateway(_)
                | RouteAttribute::PrefSource(_)
                | RouteAttribute::Via(_)
                | RouteAttribute::NewDestination(_)
                | RouteAttribute::Preference(_)
                | RouteAttribute::EncapType(_)
                | RouteAttribute::Encap(_)
                | RouteAttribute::TtlPropagate(_)
                | RouteAttribute::Oif(_)
                | RouteAttribute::Priority(_)
                | RouteAttribute::Realm(_)
                | RouteAttribute::Table(_)
                | RouteAttribute::Metrics(_)
                | RouteAttribute::MultiPath(_)
                | RouteAttribute::NhId(_)
        )
    });
    r
}

/// Drops the route's encap attributes.
pub fn without_encap(mut r: RouteMessage) -> RouteMessage {
    r.attributes
        .retain(|a| !matches!(a, RouteAttribute::EncapType(_) | RouteAttribute::Encap(_)));
    r
}

pub fn set_table(r: &mut RouteMessage, table: u32) {
    // 252 is RT_TABLE_COMPAT: the real id is in RTA_TABLE.
    r.header.table = u8::try_from(table).unwrap_or(252);
    r.attributes
        .retain(|a| !matches!(a, RouteAttribute::Table(_)));
    r.attributes.push(RouteAttribute::Table(table));
}

pub fn set_oif(r: &mut RouteMessage, oif: u32) {
    r.attributes
        .retain(|a| !matches!(a, RouteAttribute::Oif(_)));
    r.attributes.push(RouteAttribute::Oif(oif));
}

pub fn set_gateway(r: &mut RouteMessage, gw: IpAddr) {
    r.attributes
        .retain(|a| !matches!(a, RouteAttribute::Gateway(_)));
    r.attributes.push(RouteAttribute::Gateway(address(gw)));
    if r.header.scope == RouteScope::Link {
        r.header.scope = RouteScope::Universe;
    }
}

/// `ip route replace`: creates the route or swaps it in place, atomically.
pub fn replace(rtnl: &mut Rtnl, route: RouteMessage) -> Result<(), NetlinkError> {
    rtnl.execute(
        RouteNetlinkMessage::NewRoute(route),
        NLM_F_CREATE | NLM_F_REPLACE,
    )
}

/// `ip route add`: creates the route, or fails with EEXIST when the table
/// already holds one with the same prefix and metric (and, for IPv4, TOS),
/// which it leaves alone.
pub fn add(rtnl: &mut Rtnl, route: RouteMessage) -> Result<(), NetlinkError> {
    match rtnl.execute(
        RouteNetlinkMessage::NewRoute(route),
        NLM_F_CREATE | NLM_F_EXCL,
    ) {
        Err(NetlinkError::Kernel {
            errno: libc::EEXIST,
            message: None,
        }) => Err(NetlinkError::Kernel {
            errno: libc::EEXIST,
            message: Some("the table already has a route with this prefix and metric".into()),
        }),
        other => other,
    }
}

/// `ip route del`: removes exactly this route (same table, prefix, device
/// and metric).
pub fn delete(rtnl: &mut Rtnl, route: &RouteMessage) -> Result<(), NetlinkError> {
    let mut del = RouteMessage::default();
    del.header.address_family = route.header.address_family;
    del.header.destination_prefix_length = route.header.destination_prefix_length;
    del.header.scope = RouteScope::NoWhere;
    del.header.kind = route.header.kind;
    del.attributes = route
        .attributes
        .iter()
        .filter(|a| {
            matches!(
                a,
                RouteAttribute::Destination(_)
                    | RouteAttribute::Oif(_)
                    | RouteAttribute::Priority(_)
            )
        })
        .cloned()
        .collect();
    set_table(&mut del, table_of(route));
    rtnl.execute(RouteNetlinkMessage::DelRoute(del), 0)
}

/// A route as hex of its RTM_NEWROUTE payload, for lwtkit's records.
pub fn to_hex(route: &RouteMessage) -> String {
    let mut buf = vec![0u8; route.buffer_len()];
    route.emit(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn from_hex(hex: &str) -> Option<RouteMessage> {
    if hex.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    RouteMessage::parse(bytes?.as_slice()).ok()
}

pub fn family(net: &IpNet) -> AddressFamily {
    match net {
        IpNet::V4(_) => AddressFamily::Inet,
        IpNet::V6(_) => AddressFamily::Inet6,
    }
}

pub fn address(a: IpAddr) -> RouteAddress {
    match a {
        IpAddr::V4(v4) => RouteAddress::Inet(v4),
        IpAddr::V6(v6) => RouteAddress::Inet6(v6),
    }
}

/// The table a route goes to when the user names none.
pub fn default_table(local: bool) -> u32 {
    if local {
        RT_TABLE_LOCAL
    } else {
        RT_TABLE_MAIN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_route_round_trips_through_hex() {
        let spec = NewRoute {
            key: RouteKey {
                dst: "10.0.0.3/32".parse().expect("valid"),
                table: 254,
            },
            local: false,
            oif: 7,
            via: None,
        };
        let r = new_route(&spec);
        assert_eq!(r.header.scope, RouteScope::Link);
        let back = from_hex(&to_hex(&r)).expect("parses");
        assert_eq!(back, r);
        assert_eq!(dst_of(&back), Some(spec.key.dst));
        assert_eq!(table_of(&back), 254);
        assert_eq!(oif_of(&back), Some(7));
    }

    #[test]
    fn big_table_ids_use_rta_table() {
        let spec = NewRoute {
            key: RouteKey {
                dst: "fc00::/64".parse().expect("valid"),
                table: 1000,
            },
            local: true,
            oif: 1,
            via: None,
        };
        let r = new_route(&spec);
        assert_eq!(r.header.table, 252);
        assert_eq!(table_of(&r), 1000);
        assert_eq!(r.header.kind, RouteType::Local);
        assert_eq!(from_hex("zz"), None);
    }
}
