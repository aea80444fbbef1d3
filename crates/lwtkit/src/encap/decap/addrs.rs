//! The addresses the decapsulator judges outer headers by: checking the
//! ones a user gives (`--local`, `--remote`), finding this host's own (its
//! `local` routes), and keeping the two address tries in step with them.
use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;
use libbpf_rs::{MapCore, MapFlags};
use lwtkit_common::encap::{EncapKey, MAX_DECAP_ADDRS};
use netlink_packet_route::route::RouteType;

use super::DecapError;
use crate::{
    error::Result,
    route::{
        netlink::Rtnl,
        ops::{dst_of, dump_all, oif_of, table_of},
        table::RT_TABLE_LOCAL,
    },
};

/// Parses `--local` / `--remote` values: host addresses that can be a
/// unicast tunnel endpoint (not unspecified, multicast, broadcast or
/// loopback), without duplicates.
pub fn parse_endpoints(flag: &str, values: &[String]) -> Result<Vec<IpAddr>> {
    let mut out: Vec<IpAddr> = Vec::new();
    for v in values {
        let v = v.trim();
        let addr: IpAddr = v.parse().map_err(|_| {
            let what = if v.contains('/') {
                "not an address (give host addresses, not prefixes)"
            } else {
                "not an IPv4 or IPv6 address"
            };
            DecapError::BadAddress {
                flag: flag.into(),
                value: v.into(),
                what,
            }
        })?;
        if let Some(why) = not_unicast(addr) {
            return Err(DecapError::NotUnicast {
                flag: flag.into(),
                value: v.into(),
                why,
            }
            .into());
        }
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    if out.len() > MAX_DECAP_ADDRS as usize {
        return Err(DecapError::TooManyAddresses {
            flag: flag.into(),
            count: out.len(),
            max: MAX_DECAP_ADDRS,
        }
        .into());
    }
    Ok(out)
}

/// Why `addr` cannot be a tunnel endpoint, if it cannot.
fn not_unicast(addr: IpAddr) -> Option<&'static str> {
    if addr.is_unspecified() {
        return Some("the unspecified address");
    }
    if addr.is_multicast() {
        return Some("a multicast address");
    }
    if addr.is_loopback() {
        return Some("a loopback address");
    }
    match addr {
        IpAddr::V4(a) if a.is_broadcast() => Some("the broadcast address"),
        IpAddr::V4(a) if a.octets()[0] >= 240 => Some("a reserved (class E) address"),
        _ => None,
    }
}

/// This host's local destinations as seen on device `index`: the routes
/// of type `local` in table `local` (addresses, and `ip route add local
/// PREFIX` ranges there), without any that cover a loopback address (the
/// kernel drops those when they arrive on another device) and without
/// IPv6 link-local addresses of other devices. Local routes in other
/// tables (VRFs, transparent proxies behind fwmark rules) are left out:
/// pass `--local` for those.
pub fn host_locals(index: u32) -> Result<Vec<IpNet>> {
    local_routes(index, Some(RT_TABLE_LOCAL))
}

/// Like [`host_locals`], from table `table` or (`None`) from every table.
fn local_routes(index: u32, table: Option<u32>) -> Result<Vec<IpNet>> {
    let mut rtnl = Rtnl::open()?;
    let mut out: Vec<IpNet> = Vec::new();
    let loopback = [
        IpAddr::from([127, 0, 0, 1]),
        IpAddr::from(Ipv6Addr::LOCALHOST),
    ];
    for r in dump_all(&mut rtnl)? {
        if r.header.kind != RouteType::Local || table.is_some_and(|t| table_of(&r) != t) {
            continue;
        }
        let Some(net) = dst_of(&r) else { continue };
        if loopback.iter().any(|l| net.contains(l)) {
            continue;
        }
        let addr = net.addr();
        if let IpAddr::V6(a) = addr {
            let link_local = a.segments()[0] & 0xffc0 == 0xfe80;
            if link_local && oif_of(&r) != Some(index) {
                continue;
            }
        }
        if !out.contains(&net) {
            out.push(net);
        }
    }
    out.sort();
    Ok(out)
}

/// The trie prefixes for the outer destinations to take: the host's own
/// (`given` empty), or the given addresses, each of which must be covered
/// by a local route (in any table).
pub fn local_set(dev: &str, index: u32, given: &[IpAddr]) -> Result<Vec<IpNet>> {
    let set: Vec<IpNet> = if given.is_empty() {
        host_locals(index)?
    } else {
        let host = local_routes(index, None)?;
        for a in given {
            if !host.iter().any(|n| n.contains(a)) {
                return Err(DecapError::NotLocal(*a).into());
            }
        }
        given.iter().map(|a| IpNet::from(*a)).collect()
    };
    if set.is_empty() {
        return Err(DecapError::NoHostAddress(dev.into()).into());
    }
    if set.len() > MAX_DECAP_ADDRS as usize {
        return Err(DecapError::TooManyLocals {
            count: set.len(),
            max: MAX_DECAP_ADDRS,
        }
        .into());
    }
    Ok(set)
}

/// The trie key of `net`: prefix length (family tag bits included), then
/// the family tag `[0, 0, 0, 4|6]` and the address.
pub fn key_of(net: &IpNet) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..4].copy_from_slice(&(EncapKey::FAMILY_BITS + u32::from(net.prefix_len())).to_ne_bytes());
    match net.network() {
        IpAddr::V4(a) => {
            k[7] = 4;
            k[8..12].copy_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            k[7] = 6;
            k[8..24].copy_from_slice(&a.octets());
        }
    }
    k
}

/// The prefix a trie key stands for.
pub fn net_of_key(k: &[u8]) -> Option<IpNet> {
    let bits = u32::from_ne_bytes(k.get(..4)?.try_into().ok()?);
    let len = u8::try_from(bits.checked_sub(EncapKey::FAMILY_BITS)?).ok()?;
    match k.get(7)? {
        4 => {
            let a: [u8; 4] = k.get(8..12)?.try_into().ok()?;
            IpNet::new(IpAddr::from(a), len).ok()
        }
        6 => {
            let a: [u8; 16] = k.get(8..24)?.try_into().ok()?;
            IpNet::new(IpAddr::from(a), len).ok()
        }
        _ => None,
    }
}

/// Adds every prefix of `set` to `trie`.
pub fn insert_all(trie: &dyn MapCore, set: &[IpNet]) -> libbpf_rs::Result<()> {
    for net in set {
        trie.update(&key_of(net), &[1u8], MapFlags::ANY)?;
    }
    Ok(())
}

/// The prefixes in `trie`, sorted.
pub fn contents(trie: &dyn MapCore) -> Vec<IpNet> {
    let mut v: Vec<IpNet> = trie.keys().filter_map(|k| net_of_key(&k)).collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(values: &[&str]) -> Result<Vec<IpAddr>> {
        let v: Vec<String> = values.iter().map(|s| s.to_string()).collect();
        parse_endpoints("--local", &v)
    }

    #[test]
    fn endpoints_are_unicast_host_addresses() {
        assert_eq!(
            parse(&["10.0.0.3", "fd00::3", "10.0.0.3"]).expect("valid"),
            vec![
                IpAddr::from([10, 0, 0, 3]),
                "fd00::3".parse::<IpAddr>().expect("v6")
            ]
        );
        for (bad, why) in [
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
            ("224.0.0.1", "multicast"),
            ("ff02::1", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("127.0.0.1", "loopback"),
            ("::1", "loopback"),
            ("10.0.0.0/24", "not an address"),
            ("nonsense", "not an IPv4 or IPv6 address"),
        ] {
            let e = parse(&[bad]).expect_err(bad).to_string();
            assert!(e.contains(why) && e.contains("--local"), "{bad}: {e}");
        }
    }

    #[test]
    fn trie_keys_round_trip() {
        for net in [
            "10.0.0.3/32",
            "192.0.2.0/24",
            "fd00::3/128",
            "2001:db8::/48",
        ] {
            let net: IpNet = net.parse().expect("prefix");
            assert_eq!(net_of_key(&key_of(&net)), Some(net));
        }
    }
}
