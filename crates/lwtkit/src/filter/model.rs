//! Reference model of what the filter's kernel program computes: the packet
//! fields it extracts ([`parse_packet`]) and the verdict a policy gives them
//! ([`evaluate`]). The kernel program must agree with it bit for bit; it is
//! written for obviousness, not speed.
//!
//! Parsing starts at the IP header. A packet whose version isn't 4 or 6, or
//! whose fixed IP header is cut short, is malformed (family 0) and gets the
//! policy's default verdict. A packet whose L4 header can't be reached or is
//! cut short (non-first fragment, extension chain longer than
//! [`MAX_EXT_HEADERS`], truncated) keeps its addresses and protocol but has
//! `l4 == false`, so rules on ports, ICMP type or TCP flags never match it.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use lwtkit_common::filter::MAX_EXT_HEADERS;

use super::rule::{ip_proto, Rule, RuleSpec, Verdict};

/// IPv6 extension headers the parser walks over.
mod ext {
    pub const HOP_BY_HOP: u8 = 0;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const AH: u8 = 51;
    pub const DEST_OPTS: u8 = 60;

    pub fn is_ext(nh: u8) -> bool {
        matches!(nh, HOP_BY_HOP | ROUTING | FRAGMENT | AH | DEST_OPTS)
    }
}

/// The fields of a packet that rules look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PacketKey {
    /// 4, 6, or 0 for a malformed packet (then every field is 0).
    pub family: u8,
    /// Addresses as on the wire; IPv4 in the first 4 bytes, the rest 0.
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// The L4 protocol (IPv6: the first header after the extension chain,
    /// or the header where the walk stopped).
    pub proto: u8,
    /// The L4 fields below were read; when false they are 0.
    pub l4: bool,
    /// Ports; for ICMP/ICMPv6 the message type and code.
    pub sport: u16,
    pub dport: u16,
    pub tcp_flags: u8,
}

impl PacketKey {
    pub fn src_ip(&self) -> Option<IpAddr> {
        ip(self.family, &self.src)
    }

    pub fn dst_ip(&self) -> Option<IpAddr> {
        ip(self.family, &self.dst)
    }
}

fn ip(family: u8, bytes: &[u8; 16]) -> Option<IpAddr> {
    match family {
        4 => Some(IpAddr::V4(Ipv4Addr::new(
            bytes[0], bytes[1], bytes[2], bytes[3],
        ))),
        6 => Some(IpAddr::V6(Ipv6Addr::from(*bytes))),
        _ => None,
    }
}

fn be16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

/// Extracts the [`PacketKey`] of a packet starting at its IP header.
pub fn parse_packet(l3: &[u8]) -> PacketKey {
    match l3.first().map(|b| b >> 4) {
        Some(4) => parse_ipv4(l3),
        Some(6) => parse_ipv6(l3),
        _ => PacketKey::default(),
    }
}

fn parse_ipv4(l3: &[u8]) -> PacketKey {
    if l3.len() < 20 {
        return PacketKey::default();
    }
    let ihl = usize::from(l3[0] & 0xf);
    if ihl < 5 || ihl * 4 > l3.len() {
        return PacketKey::default();
    }
    let mut key = PacketKey {
        family: 4,
        proto: l3[9],
        ..PacketKey::default()
    };
    key.src[..4].copy_from_slice(&l3[12..16]);
    key.dst[..4].copy_from_slice(&l3[16..20]);
    if be16(l3, 6) & 0x1fff != 0 {
        // A non-first fragment: its payload doesn't start with an L4 header.
        return key;
    }
    parse_l4(&mut key, l3, ihl * 4);
    key
}

fn parse_ipv6(l3: &[u8]) -> PacketKey {
    let len = l3.len();
    if len < 40 {
        return PacketKey::default();
    }
    let mut key = PacketKey {
        family: 6,
        ..PacketKey::default()
    };
    key.src.copy_from_slice(&l3[8..24]);
    key.dst.copy_from_slice(&l3[24..40]);
    let mut nh = l3[6];
    let mut off = 40;
    // Stopping early leaves l4 false and proto at the header where the walk
    // stopped (for a non-first fragment: the fragment's next header).
    for _ in 0..MAX_EXT_HEADERS {
        match nh {
            ext::HOP_BY_HOP | ext::ROUTING | ext::DEST_OPTS => {
                if off + 2 > len {
                    key.proto = nh;
                    return key;
                }
                let next = l3[off];
                off += (usize::from(l3[off + 1]) + 1) * 8;
                nh = next;
            }
            ext::FRAGMENT => {
                if off + 8 > len {
                    key.proto = nh;
                    return key;
                }
                let next = l3[off];
                if be16(l3, off + 2) >> 3 != 0 {
                    key.proto = next;
                    return key;
                }
                off += 8;
                nh = next;
            }
            ext::AH => {
                if off + 2 > len {
                    key.proto = nh;
                    return key;
                }
                let next = l3[off];
                off += (usize::from(l3[off + 1]) + 2) * 4;
                nh = next;
            }
            _ => break,
        }
    }
    key.proto = nh;
    if !ext::is_ext(nh) {
        parse_l4(&mut key, l3, off);
    }
    key
}

/// Reads the L4 fields of `key.proto` at `off`, if they are all there.
fn parse_l4(key: &mut PacketKey, l3: &[u8], off: usize) {
    let len = l3.len();
    match (key.proto, key.family) {
        (ip_proto::TCP, _) if off + 14 <= len => {
            key.sport = be16(l3, off);
            key.dport = be16(l3, off + 2);
            key.tcp_flags = l3[off + 13];
            key.l4 = true;
        }
        (ip_proto::UDP, _) if off + 4 <= len => {
            key.sport = be16(l3, off);
            key.dport = be16(l3, off + 2);
            key.l4 = true;
        }
        (ip_proto::ICMP, 4) | (ip_proto::ICMPV6, 6) if off + 2 <= len => {
            key.sport = u16::from(l3[off]);
            key.dport = u16::from(l3[off + 1]);
            key.l4 = true;
        }
        _ => {}
    }
}

/// Whether `rule` matches a packet (malformed packets match no rule).
pub fn matches(rule: &RuleSpec, pkt: &PacketKey) -> bool {
    if pkt.family != 4 && pkt.family != 6 {
        return false;
    }
    if rule.family().is_some_and(|f| f != pkt.family) {
        return false;
    }
    if let Some(net) = rule.src {
        if !pkt.src_ip().is_some_and(|a| net.contains(&a)) {
            return false;
        }
    }
    if let Some(net) = rule.dst {
        if !pkt.dst_ip().is_some_and(|a| net.contains(&a)) {
            return false;
        }
    }
    if rule.proto.is_some_and(|p| p != pkt.proto) {
        return false;
    }
    let has_ports = rule.sport.is_some() || rule.dport.is_some();
    if has_ports && rule.proto.is_none() && pkt.proto != ip_proto::TCP && pkt.proto != ip_proto::UDP
    {
        return false;
    }
    if rule.needs_l4() && !pkt.l4 {
        return false;
    }
    if rule.sport.is_some_and(|r| !r.contains(pkt.sport)) {
        return false;
    }
    if rule.dport.is_some_and(|r| !r.contains(pkt.dport)) {
        return false;
    }
    if let Some(icmp_type) = rule.icmp_type {
        let is_icmp = matches!(
            (pkt.proto, pkt.family),
            (ip_proto::ICMP, 4) | (ip_proto::ICMPV6, 6)
        );
        if !is_icmp || pkt.sport != u16::from(icmp_type) {
            return false;
        }
    }
    if let Some(flags) = rule.tcp_flags {
        if pkt.proto != ip_proto::TCP || !flags.matches(pkt.tcp_flags) {
            return false;
        }
    }
    true
}

/// The verdict of a policy for a packet, and the id of the rule that gave it
/// (`None`: no rule matched, or the packet is malformed; `default` applies).
/// The matching rule with the lowest priority wins, ties to the lower id.
pub fn evaluate(rules: &[Rule], default: Verdict, pkt: &PacketKey) -> (Verdict, Option<u32>) {
    rules
        .iter()
        .filter(|r| matches(&r.spec, pkt))
        .min_by_key(|r| (r.spec.priority, r.id))
        .map_or((default, None), |r| (r.spec.verdict, Some(r.id)))
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
