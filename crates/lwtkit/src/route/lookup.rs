//! Finding the one route a [`RouteKey`] names without reading every route
//! of the namespace.
//!
//! First the kernel's own FIB lookup (`ip route get fibmatch ADDR`:
//! RTM_GETROUTE with RTM_F_FIB_MATCH) for an address inside the prefix. Its
//! answer is the route a packet to that address would take, which settles
//! the question only in some cases: the answer has exactly our prefix and
//! table (found), or it comes from our table with a shorter prefix (our
//! table has no route with our prefix that a packet could use: absent).
//! Anything else (an answer from another table because of fib rules, a
//! lookup error such as an `unreachable` route, a more specific route in
//! the way after a few addresses) falls back to a dump the kernel filters
//! by family and table (NETLINK_GET_STRICT_CHK with RTA_TABLE), read in
//! full. See docs/kernel.md, "Finding one route".
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use netlink_packet_route::{
    route::{RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteType},
    AddressFamily, RouteNetlinkMessage,
};

use super::{
    netlink::{NetlinkError, Rtnl},
    ops::{dst_of, family, metric_of, set_table, table_of, RouteKey},
    table::{RT_TABLE_LOCAL, RT_TABLE_MAIN},
};

/// Lookups tried, each for an address outside the more specific routes the
/// previous ones hit, before reading the whole table.
const PROBES: usize = 4;

/// Finds the route `key` names: exactly that table and prefix, the lowest
/// metric first, broadcast and multicast routes and cached clones ignored.
pub fn find(rtnl: &mut Rtnl, key: &RouteKey) -> Result<Option<RouteMessage>, NetlinkError> {
    match by_fib_lookup(rtnl, key) {
        Ok(Some(answer)) => return Ok(answer),
        Ok(None) => {}
        // No strict checking (kernels before 4.20): no kernel-side filter
        // and no trustworthy fibmatch; read the family and filter here.
        Err(e) if e.errno() == Some(libc::ENOPROTOOPT) => {
            return Ok(pick(dump_family(rtnl, family(&key.dst))?, key));
        }
        Err(e) => return Err(e),
    }
    Ok(pick(table_routes(rtnl, family(&key.dst), key.table)?, key))
}

/// Every route of `key`'s table and prefix, whatever its metric (`ip
/// route show table T exact DST`), lowest metric first.
pub fn find_all(rtnl: &mut Rtnl, key: &RouteKey) -> Result<Vec<RouteMessage>, NetlinkError> {
    let routes = match table_routes(rtnl, family(&key.dst), key.table) {
        Err(e) if e.errno() == Some(libc::ENOPROTOOPT) => dump_family(rtnl, family(&key.dst))?,
        other => other?,
    };
    Ok(all_of(routes, key))
}

/// The route `key` names among `routes`, as [`find`] defines it.
pub fn pick(
    routes: impl IntoIterator<Item = RouteMessage>,
    key: &RouteKey,
) -> Option<RouteMessage> {
    all_of(routes, key).into_iter().next()
}

/// The routes of `key` among `routes`, lowest metric first: exactly that
/// table and prefix, broadcast and multicast routes and cached clones
/// ignored.
fn all_of(routes: impl IntoIterator<Item = RouteMessage>, key: &RouteKey) -> Vec<RouteMessage> {
    let mut found: Vec<RouteMessage> = routes
        .into_iter()
        .filter(|r| table_of(r) == key.table && dst_of(r) == Some(key.dst))
        .filter(|r| !matches!(r.header.kind, RouteType::Broadcast | RouteType::Multicast))
        .filter(|r| !r.header.flags.contains(RouteFlags::Cloned))
        .collect();
    found.sort_by_key(metric_of);
    found
}

/// Every route of `table` in one family, filtered by the kernel (`ip route
/// show table T`); a table that does not exist has none.
pub fn table_routes(
    rtnl: &mut Rtnl,
    family: AddressFamily,
    table: u32,
) -> Result<Vec<RouteMessage>, NetlinkError> {
    match rtnl.dump_strict(RouteNetlinkMessage::GetRoute(table_request(family, table))) {
        Ok(replies) => Ok(new_routes(replies)),
        Err(e) if e.errno() == Some(libc::ENOENT) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// RTM_GETROUTE for a dump of one family's `table`: under strict checking
/// the kernel wants every other header field zero (`ip_valid_fib_dump_req`).
fn table_request(family: AddressFamily, table: u32) -> RouteMessage {
    let mut req = RouteMessage::default();
    req.header.address_family = family;
    set_table(&mut req, table);
    req
}

fn dump_family(rtnl: &mut Rtnl, family: AddressFamily) -> Result<Vec<RouteMessage>, NetlinkError> {
    let mut req = RouteMessage::default();
    req.header.address_family = family;
    Ok(new_routes(rtnl.dump(RouteNetlinkMessage::GetRoute(req))?))
}

fn new_routes(replies: Vec<RouteNetlinkMessage>) -> Vec<RouteMessage> {
    replies
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewRoute(r) => Some(r),
            _ => None,
        })
        .collect()
}

/// What one FIB lookup says about `key`.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The answer is a route with exactly our table and prefix.
    Found,
    /// The answer comes from our table with a shorter prefix: the table has
    /// no usable route with ours.
    Absent,
    /// A more specific route inside ours answered; another address of ours
    /// may get past it.
    Inside(IpNet),
    /// The answer says nothing certain about our table.
    Unsure,
}

/// Judges the fibmatch `answer` for `key`. Only answers from `key`'s own
/// table count, as the kernel reports it (RTA_TABLE).
pub fn judge(key: &RouteKey, answer: &RouteMessage) -> Verdict {
    // A cloned route is a lookup result, not a FIB entry: not fibmatch.
    if answer.header.flags.contains(RouteFlags::Cloned) {
        return Verdict::Unsure;
    }
    let Some(dst) = dst_of(answer) else {
        return Verdict::Unsure;
    };
    let ours = table_of(answer) == key.table;
    if dst == key.dst {
        let plain = !matches!(
            answer.header.kind,
            RouteType::Broadcast | RouteType::Multicast
        );
        return if ours && plain {
            Verdict::Found
        } else {
            Verdict::Unsure
        };
    }
    if dst.contains(&key.dst) {
        return if ours {
            Verdict::Absent
        } else {
            Verdict::Unsure
        };
    }
    if key.dst.contains(&dst) {
        return Verdict::Inside(dst);
    }
    Verdict::Unsure
}

/// `Some(route or none)` when FIB lookups settle the question, `None` when
/// only reading the table will.
fn by_fib_lookup(
    rtnl: &mut Rtnl,
    key: &RouteKey,
) -> Result<Option<Option<RouteMessage>>, NetlinkError> {
    let Some(mut addr) = first_probe(&key.dst) else {
        return Ok(None);
    };
    for _ in 0..PROBES {
        let Some(answer) = fib_match(rtnl, addr)? else {
            return Ok(None);
        };
        match judge(key, &answer) {
            Verdict::Found => {
                if key.dst.addr().is_ipv4()
                    && key.table == RT_TABLE_MAIN
                    && !local_table_lacks(rtnl, key)?
                {
                    return Ok(None);
                }
                return Ok(Some(Some(answer)));
            }
            Verdict::Absent => return Ok(Some(None)),
            Verdict::Inside(inner) => match next_probe(&key.dst, &inner) {
                Some(next) => addr = next,
                None => return Ok(None),
            },
            Verdict::Unsure => return Ok(None),
        }
    }
    Ok(None)
}

/// Without fib rules of its own, a namespace keeps IPv4 tables `local` and
/// `main` in one trie, and a lookup reports every answer from it as table
/// main: a `local` route of our prefix would look like ours. It is not ours
/// when table local has no route of our prefix (a dump of table local: the
/// kernel walks the trie, but sends only local's few routes).
fn local_table_lacks(rtnl: &mut Rtnl, key: &RouteKey) -> Result<bool, NetlinkError> {
    Ok(table_routes(rtnl, AddressFamily::Inet, RT_TABLE_LOCAL)?
        .iter()
        .all(|r| dst_of(r) != Some(key.dst)))
}

/// `ip route get fibmatch ADDR`: the FIB entry the kernel would use for a
/// packet to `addr` (rules applied), or `None` when the lookup fails
/// (no route, an `unreachable`/`prohibit`/`blackhole` route, ...).
fn fib_match(rtnl: &mut Rtnl, addr: IpAddr) -> Result<Option<RouteMessage>, NetlinkError> {
    match rtnl.get_strict(RouteNetlinkMessage::GetRoute(fib_match_request(addr))) {
        Ok(replies) => Ok(new_routes(replies).into_iter().next()),
        Err(NetlinkError::Kernel { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

fn fib_match_request(addr: IpAddr) -> RouteMessage {
    let mut req = RouteMessage::default();
    let (family, len, dst) = match addr {
        IpAddr::V4(a) => (AddressFamily::Inet, 32, RouteAddress::Inet(a)),
        IpAddr::V6(a) => (AddressFamily::Inet6, 128, RouteAddress::Inet6(a)),
    };
    req.header.address_family = family;
    req.header.destination_prefix_length = len;
    // IPv4 reports table main for every answer unless asked for the table
    // the lookup used; IPv6 reports the route's own table and refuses the
    // flag under strict checking.
    req.header.flags = match addr {
        IpAddr::V4(_) => RouteFlags::FibMatch | RouteFlags::LookupTable,
        IpAddr::V6(_) => RouteFlags::FibMatch,
    };
    req.attributes.push(RouteAttribute::Destination(dst));
    req
}

/// The first address of `net` to look up: IPv4 its network address, IPv6
/// its last address (the first one of an IPv6 prefix is the subnet-router
/// anycast address, which a router holds in table local). Addresses whose
/// lookup the kernel answers without the FIB (IPv4 0.0.0.0), with a type
/// of their own (IPv4 multicast, 255.255.255.255) or from table local
/// (IPv6 multicast) are skipped.
pub fn first_probe(net: &IpNet) -> Option<IpAddr> {
    match net {
        IpNet::V4(n) => probeable_v4(u32::from(n.network()), n),
        IpNet::V6(n) => probeable_v6(u128::from(n.broadcast()), n),
    }
}

/// An address of `net` outside `inner` (a more specific route that
/// answered the last lookup): just after it, else just before it.
pub fn next_probe(net: &IpNet, inner: &IpNet) -> Option<IpAddr> {
    match (net, inner) {
        (IpNet::V4(n), IpNet::V4(i)) => {
            let after = u32::from(i.broadcast()).checked_add(1);
            let before = u32::from(i.network()).checked_sub(1);
            [after, before]
                .into_iter()
                .flatten()
                .filter_map(|a| probeable_v4(a, n))
                .find(|a| !inner.contains(a))
        }
        (IpNet::V6(n), IpNet::V6(i)) => {
            let after = u128::from(i.broadcast()).checked_add(1);
            let before = u128::from(i.network()).checked_sub(1);
            [after, before]
                .into_iter()
                .flatten()
                .filter_map(|a| probeable_v6(a, n))
                .find(|a| !inner.contains(a))
        }
        _ => None,
    }
}

/// `a`, or the next address the kernel looks up in the FIB, if it is in `net`.
fn probeable_v4(a: u32, net: &ipnet::Ipv4Net) -> Option<IpAddr> {
    let a = match Ipv4Addr::from(a) {
        // daddr 0.0.0.0 means "this host", answered without the FIB.
        x if x.is_unspecified() => 1,
        // Multicast destinations get RTN_MULTICAST whatever the route is.
        x if x.is_multicast() => u32::from(Ipv4Addr::new(240, 0, 0, 0)),
        x if x.is_broadcast() => return None,
        _ => a,
    };
    let x = Ipv4Addr::from(a);
    (net.contains(&x) && !x.is_broadcast()).then_some(IpAddr::V4(x))
}

fn probeable_v6(a: u128, net: &ipnet::Ipv6Net) -> Option<IpAddr> {
    // Below ff00::/8 (multicast, answered by table local).
    let x = Ipv6Addr::from(a.min(u128::from(Ipv6Addr::new(
        0xfeff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff,
    ))));
    net.contains(&x).then_some(IpAddr::V6(x))
}

#[cfg(test)]
#[path = "lookup_tests.rs"]
mod tests;
