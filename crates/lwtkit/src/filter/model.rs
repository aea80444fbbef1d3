//! Reference model of what the filter's kernel program computes: the packet
//! fields it extracts and the packet's class ([`parse_packet`]), and the
//! verdict a policy gives them ([`judge`]). The kernel program must agree
//! with it bit for bit; it is written for obviousness, not speed.
//!
//! Parsing starts at the IP header. The invariant it serves: no packet that
//! reaches a socket or the next hop can evade a rule its reassembled packet
//! would match. So only [`Class::Whole`] packets meet the rules, and they
//! carry every L4 field a rule reads (or their protocol has none):
//! - a fragment with a non-zero offset has no L4 header:
//!   [`Class::LaterFragment`], passed or dropped by `--fragments`; its
//!   datagram is judged by its first fragment;
//! - a fragment at offset 1 (8 bytes) could rewrite the TCP flags of the
//!   first (RFC 1858, RFC 3128), and a first fragment that ends before the
//!   IPv6 header chain or the L4 fields do could hide them:
//!   [`Class::Evasive`], always dropped;
//! - a packet that is not IPv4/IPv6, has a cut IP header, an IPv6 header
//!   chain longer than [`MAX_EXT_HEADERS`] or cut short, or a cut L4 header:
//!   [`Class::Malformed`], dropped or judged by the default (`--malformed`).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use lwtkit_common::filter::MAX_EXT_HEADERS;

use ipnet::IpNet;

use super::{
    handling::{Fragments, Handling, Malformed},
    rule::{ip_proto, Action, Rule, RuleSpec, Verdict},
};

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

/// What a packet is to the filter before any rule is tried (the kernel's
/// `lwtkit_common::filter::packet_class`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Class {
    /// Judged by the rules: not a fragment, an atomic fragment, or a first
    /// fragment holding every L4 field the rules read.
    #[default]
    Whole,
    /// A fragment with an offset of 2 or more (8-byte units).
    LaterFragment,
    /// Cannot be parsed to the fields rules read.
    Malformed,
    /// A fragment that could rewrite or hide what the rules read.
    Evasive,
}

/// The fields of a packet that rules look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PacketKey {
    /// 4, 6, or 0 when the IP header itself is malformed (then every field
    /// is 0).
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
    pub class: Class,
}

impl PacketKey {
    /// A packet whose IP header is malformed.
    pub fn malformed() -> Self {
        Self {
            class: Class::Malformed,
            ..Self::default()
        }
    }

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

/// The class of a fragment at `offset` (8-byte units), `None` for offset 0.
fn fragment_class(offset: u16) -> Option<Class> {
    match offset {
        0 => None,
        1 => Some(Class::Evasive),
        _ => Some(Class::LaterFragment),
    }
}

/// Extracts the [`PacketKey`] of a packet starting at its IP header.
pub fn parse_packet(l3: &[u8]) -> PacketKey {
    match l3.first().map(|b| b >> 4) {
        Some(4) => parse_ipv4(l3),
        Some(6) => parse_ipv6(l3),
        _ => PacketKey::malformed(),
    }
}

fn parse_ipv4(l3: &[u8]) -> PacketKey {
    if l3.len() < 20 {
        return PacketKey::malformed();
    }
    let ihl = usize::from(l3[0] & 0xf);
    if ihl < 5 || ihl * 4 > l3.len() {
        return PacketKey::malformed();
    }
    let mut key = PacketKey {
        family: 4,
        proto: l3[9],
        ..PacketKey::default()
    };
    key.src[..4].copy_from_slice(&l3[12..16]);
    key.dst[..4].copy_from_slice(&l3[16..20]);
    let frag = be16(l3, 6);
    if let Some(class) = fragment_class(frag & 0x1fff) {
        key.class = class;
        return key;
    }
    parse_l4(&mut key, l3, ihl * 4, frag & 0x2000 != 0);
    key
}

fn parse_ipv6(l3: &[u8]) -> PacketKey {
    let len = l3.len();
    if len < 40 {
        return PacketKey::malformed();
    }
    let mut key = PacketKey {
        family: 6,
        ..PacketKey::default()
    };
    key.src.copy_from_slice(&l3[8..24]);
    key.dst.copy_from_slice(&l3[24..40]);
    let mut nh = l3[6];
    let mut off = 40;
    // More fragments follow (a fragment header at offset 0 with M set).
    let mut first = false;
    // A chain cut short: evasive in a first fragment, malformed otherwise.
    let cut = |key: &mut PacketKey, nh: u8, first: bool| {
        key.proto = nh;
        key.class = if first {
            Class::Evasive
        } else {
            Class::Malformed
        };
    };
    for _ in 0..MAX_EXT_HEADERS {
        match nh {
            ext::HOP_BY_HOP | ext::ROUTING | ext::DEST_OPTS | ext::AH => {
                if off + 2 > len {
                    cut(&mut key, nh, first);
                    return key;
                }
                let next = l3[off];
                off += ext_len(nh, l3[off + 1]);
                nh = next;
            }
            ext::FRAGMENT => {
                if off + 8 > len {
                    cut(&mut key, nh, first);
                    return key;
                }
                let next = l3[off];
                let field = be16(l3, off + 2);
                if let Some(class) = fragment_class(field >> 3) {
                    key.proto = next;
                    key.class = class;
                    return key;
                }
                first |= field & 1 != 0;
                off += 8;
                nh = next;
            }
            _ => break,
        }
    }
    key.proto = nh;
    if ext::is_ext(nh) {
        // The L4 header lies beyond the walk's bound.
        key.class = Class::Malformed;
        return key;
    }
    parse_l4(&mut key, l3, off, first);
    key
}

/// Reads the L4 fields of `key.proto` at `off`. When they are cut short the
/// packet is evasive if it is a first fragment (`first`), else malformed.
fn parse_l4(key: &mut PacketKey, l3: &[u8], off: usize, first: bool) {
    let need = match (key.proto, key.family) {
        (ip_proto::TCP, _) => 14,
        (ip_proto::UDP, _) => 4,
        (ip_proto::ICMP, 4) | (ip_proto::ICMPV6, 6) => 2,
        _ => return,
    };
    if off + need > l3.len() {
        key.class = if first {
            Class::Evasive
        } else {
            Class::Malformed
        };
        return;
    }
    if key.proto == ip_proto::TCP || key.proto == ip_proto::UDP {
        key.sport = be16(l3, off);
        key.dport = be16(l3, off + 2);
    } else {
        key.sport = u16::from(l3[off]);
        key.dport = u16::from(l3[off + 1]);
    }
    if key.proto == ip_proto::TCP {
        key.tcp_flags = l3[off + 13];
    }
    key.l4 = true;
}

/// Whether `rule` matches a packet (only [`Class::Whole`] packets meet
/// rules).
pub fn matches(rule: &RuleSpec, pkt: &PacketKey) -> bool {
    if pkt.class != Class::Whole || (pkt.family != 4 && pkt.family != 6) {
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

/// Who decided a packet's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decider {
    /// The rule with this id.
    Rule(u32),
    /// The default verdict: no rule matched, or a malformed packet under
    /// `--malformed default`.
    Default,
    /// `--fragments`, for a non-first fragment.
    Fragments,
    /// A malformed packet dropped (`--malformed drop`), or an evasive
    /// fragment (always dropped).
    Malformed,
}

/// The verdict of a policy for a packet, and who gave it. On `xmit`, an
/// ICMP/ICMPv6 error that its flow's rule translates ([`error_action`],
/// which reads the packet's bytes) passes before this applies.
pub fn judge(rules: &[Rule], h: &Handling, pkt: &PacketKey) -> (Verdict, Decider) {
    match pkt.class {
        Class::Whole => match evaluate(rules, h.default, pkt) {
            (v, Some(id)) => (v, Decider::Rule(id)),
            (v, None) => (v, Decider::Default),
        },
        Class::LaterFragment => match h.fragments {
            Fragments::Pass => (Verdict::Allow, Decider::Fragments),
            Fragments::Drop => (Verdict::Drop, Decider::Fragments),
        },
        Class::Malformed if h.malformed == Malformed::Default => (h.default, Decider::Default),
        Class::Malformed | Class::Evasive => (Verdict::Drop, Decider::Malformed),
    }
}

/// The verdict of the rules for a packet, and the id of the rule that gave
/// it (`None`: no rule matched, or the packet is not [`Class::Whole`];
/// `default` applies). The matching rule with the lowest priority wins,
/// ties to the lower id. [`judge`] says what happens to packets that are
/// not whole.
pub fn evaluate(rules: &[Rule], default: Verdict, pkt: &PacketKey) -> (Verdict, Option<u32>) {
    rules
        .iter()
        .filter(|r| matches(&r.spec, pkt))
        .min_by_key(|r| (r.spec.priority, r.id))
        .map_or((default, None), |r| (r.spec.verdict, Some(r.id)))
}

/// What a rule's action makes of a packet: the fields it rewrites and
/// where the packet goes (the reference for the kernel's `nat.rs`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effect {
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    /// The TCP/UDP source port (`snat ... port N`; never on a later
    /// fragment, which carries no port).
    pub sport: Option<u16>,
    /// The TCP/UDP destination port (`dnat ... port N`; never on a later
    /// fragment).
    pub dport: Option<u16>,
    pub mark: Option<u32>,
    /// The route is looked up again (after a `dnat`, and `mark N reroute`).
    pub reroute: bool,
    /// Sent out of this ifindex.
    pub redirect: Option<u32>,
}

/// `addr` mapped into `to`: the prefix bits of `to`, the host bits of
/// `addr` (NETMAP); a whole address when `to` is one.
pub fn netmap(addr: IpAddr, to: IpNet) -> IpAddr {
    match (addr, to) {
        (IpAddr::V4(a), IpNet::V4(t)) => {
            let mask = u32::from(t.netmask());
            IpAddr::V4(Ipv4Addr::from(
                (u32::from(a) & !mask) | (u32::from(t.network()) & mask),
            ))
        }
        (IpAddr::V6(a), IpNet::V6(t)) => {
            let mask = u128::from(t.netmask());
            IpAddr::V6(Ipv6Addr::from(
                (u128::from(a) & !mask) | (u128::from(t.network()) & mask),
            ))
        }
        // Validation keeps families apart; a mismatch rewrites nothing.
        (a, _) => a,
    }
}

/// `addr` translated by a rule's action from prefix `from` (the rule's
/// `src` for snat, `dst` for dnat) to `to`: NPTv6 (RFC 6296) for IPv6
/// prefixes up to /64 of the same length (the prefix replaced, then a
/// host word adjusted so the address's one's-complement sum stays: word 3
/// up to /48, else the first interface-id word that is not 0xffff; `None`
/// when that word is 0xffff, which cannot be translated), NETMAP otherwise.
pub fn translate(addr: IpAddr, from: Option<IpNet>, to: IpNet) -> Option<IpAddr> {
    let mapped = netmap(addr, to);
    let (IpAddr::V6(m), Some(IpNet::V6(f)), IpNet::V6(t)) = (mapped, from, to) else {
        return Some(mapped);
    };
    let Some((word, adj)) = super::compile::npt66(f, t) else {
        return Some(mapped);
    };
    let mut w = m.segments();
    let at = if word == 1 {
        3
    } else {
        (4..8).find(|&i| w[i] != 0xffff)?
    };
    if w[at] == 0xffff {
        return None;
    }
    let mut sum = u32::from(w[at]) + u32::from(adj);
    sum = (sum & 0xffff) + (sum >> 16);
    w[at] = if sum as u16 == 0xffff { 0 } else { sum as u16 };
    Some(IpAddr::V6(Ipv6Addr::from(w)))
}

/// What `rule`'s action makes of `pkt`. A `dnat` reroutes: the new
/// destination may be routed elsewhere than the route the packet was on.
pub fn effect(rule: &RuleSpec, pkt: &PacketKey) -> Effect {
    let mut e = Effect::default();
    let Some(action) = &rule.action else { return e };
    match action {
        Action::Snat { to, port } => {
            e.src = pkt.src_ip().and_then(|a| translate(a, rule.src, *to));
            if pkt.l4 && matches!(pkt.proto, ip_proto::TCP | ip_proto::UDP) {
                e.sport = *port;
            }
        }
        Action::Dnat { to, port } => {
            e.dst = pkt.dst_ip().and_then(|a| translate(a, rule.dst, *to));
            if pkt.l4 && matches!(pkt.proto, ip_proto::TCP | ip_proto::UDP) {
                e.dport = *port;
            }
            e.reroute = true;
        }
        Action::Mark { mark, reroute } => {
            e.mark = Some(*mark);
            e.reroute = *reroute;
        }
        Action::Redirect { ifindex, .. } => e.redirect = Some(*ifindex),
    }
    e
}

/// The rule whose action applies to `pkt`, by id, and what it does. Whole
/// packets: the rule that decides them. Later fragments (which rules never
/// judge, having no ports) passed by `--fragments pass`: the rule that a
/// packet with their addresses and protocol and no L4 header would meet,
/// and of its action only an address rewrite, so a fragmented datagram's
/// fragments are translated alike when its translation names no ports.
pub fn action_for(rules: &[Rule], h: &Handling, pkt: &PacketKey) -> Option<(u32, Effect)> {
    let probe = match pkt.class {
        Class::Whole => *pkt,
        Class::LaterFragment if h.fragments == Fragments::Pass => PacketKey {
            class: Class::Whole,
            ..*pkt
        },
        _ => return None,
    };
    let rule = rules
        .iter()
        .filter(|r| matches(&r.spec, &probe))
        .min_by_key(|r| (r.spec.priority, r.id))?;
    let action = rule.spec.action.as_ref()?;
    if pkt.class == Class::LaterFragment
        && !matches!(action, Action::Snat { .. } | Action::Dnat { .. })
    {
        return None;
    }
    let mut e = effect(&rule.spec, &probe);
    if pkt.class == Class::LaterFragment {
        e.sport = None;
        e.dport = None;
    }
    Some((rule.id, e))
}

/// What the flow's rule makes of an ICMP/ICMPv6 error about it
/// ([`error_action`]): the outer header's rewrite (`effect`: the address
/// on the rule's side; `reroute` for a `dnat`), and the embedded packet's
/// opposite address and port (a `dnat` rule rewrites the embedded source
/// and source port, an `snat` rule the embedded destination and
/// destination port).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorEffect {
    pub effect: Effect,
    pub inner_src: Option<IpAddr>,
    pub inner_dst: Option<IpAddr>,
    pub inner_sport: Option<u16>,
    pub inner_dport: Option<u16>,
}

/// Whether an error of `family` with ICMP type `kind` is one the filter
/// looks into for its flow: IPv4 destination unreachable, source quench,
/// redirect, time exceeded, parameter problem; ICMPv6 destination
/// unreachable, packet too big, time exceeded, parameter problem.
fn is_error(family: u8, kind: u8) -> bool {
    match family {
        4 => matches!(kind, 3 | 4 | 5 | 11 | 12),
        _ => matches!(kind, 1..=4),
    }
}

/// Whether the translation translates an error of this type: not IPv4
/// redirects or source quench (a redirect names a gateway beyond the NAT).
fn is_translated_error(family: u8, kind: u8) -> bool {
    match family {
        4 => matches!(kind, 3 | 11 | 12),
        _ => matches!(kind, 1..=4),
    }
}

/// The length in bytes of an IPv6 extension header `nh` whose length
/// byte is `units`: AH counts 4-byte units after the first two, the others
/// 8-byte units after the first.
fn ext_len(nh: u8, units: u8) -> usize {
    let units = usize::from(units);
    if nh == ext::AH {
        (units + 2) * 4
    } else {
        (units + 1) * 8
    }
}

/// Walks an IPv6 extension header chain from `off`, the first header
/// being `nh`, as the translation does: the upper-layer protocol and its
/// offset, or `None` (cut, a later fragment, longer than the bound).
fn walk_chain(l3: &[u8], mut nh: u8, mut off: usize) -> Option<(u8, usize)> {
    for _ in 0..MAX_EXT_HEADERS {
        match nh {
            ext::HOP_BY_HOP | ext::ROUTING | ext::DEST_OPTS | ext::AH => {
                let next = *l3.get(off)?;
                off += ext_len(nh, *l3.get(off + 1)?);
                nh = next;
            }
            ext::FRAGMENT => {
                let f = l3.get(off..off + 4)?;
                if be16(f, 2) >> 3 != 0 {
                    return None;
                }
                off += 8;
                nh = f[0];
            }
            _ => return Some((nh, off)),
        }
    }
    (!ext::is_ext(nh)).then_some((nh, off))
}

/// The flow an ICMP or ICMPv6 error (a [`Class::Whole`] packet starting at
/// its IP header) reports, as the flow's own packets meet the rules: the
/// packet embedded in the error reversed (its destination as source, its
/// source as destination, ports swapped, the same protocol, no TCP
/// flags). `None` unless the packet is an error of a type in [`is_error`]
/// and the embedded packet is TCP or UDP of the same family with its ports
/// in the packet (not a later fragment, not cut before them). Also the
/// ICMP header's offset.
pub fn error_flow(l3: &[u8]) -> Option<(PacketKey, usize)> {
    let outer = parse_packet(l3);
    if !matches!(
        (outer.family, outer.proto),
        (4, ip_proto::ICMP) | (6, ip_proto::ICMPV6)
    ) {
        return None;
    }
    if outer.class != Class::Whole || !outer.l4 || !is_error(outer.family, outer.sport as u8) {
        return None;
    }
    let icmp = if outer.family == 4 {
        usize::from(l3[0] & 0xf) * 4
    } else {
        walk_chain(l3, l3[6], 40)?.1
    };
    let e = icmp + 8;
    let mut key = PacketKey {
        family: outer.family,
        l4: true,
        ..PacketKey::default()
    };
    let (proto, l4) = if outer.family == 4 {
        let ip = l3.get(e..e + 20)?;
        let ihl = usize::from(ip[0] & 0xf) * 4;
        if ip[0] >> 4 != 4 || ihl < 20 || be16(ip, 6) & 0x1fff != 0 {
            return None;
        }
        key.dst[..4].copy_from_slice(&ip[12..16]);
        key.src[..4].copy_from_slice(&ip[16..20]);
        (ip[9], e + ihl)
    } else {
        let ip = l3.get(e..e + 40)?;
        if ip[0] >> 4 != 6 {
            return None;
        }
        key.dst.copy_from_slice(&ip[8..24]);
        key.src.copy_from_slice(&ip[24..40]);
        walk_chain(l3, ip[6], e + 40)?
    };
    if proto != ip_proto::TCP && proto != ip_proto::UDP {
        return None;
    }
    let ports = l3.get(l4..l4 + 4)?;
    key.proto = proto;
    key.sport = be16(ports, 2);
    key.dport = be16(ports, 0);
    Some((key, icmp))
}

/// An ICMP/ICMPv6 error (`l3`, on `xmit`) translated by the rule of the
/// flow it reports ([`error_flow`]): the rule's id and what it does. Only
/// when the error's own decision does not stand against it — no rule
/// matched it, or an allow or snat/dnat rule did (a drop stays a drop, a
/// mark or redirect its own) — and the flow's best rule is a `snat` or
/// `dnat` whose translation applies to the error: of a type the
/// translation knows ([`is_translated_error`]), its outer address on the
/// rule's side (the destination for `dnat`, the source for `snat`) the
/// embedded packet's opposite one, and mappable. Then the error passes,
/// translated, even under a default `drop`. `None`: the error is judged
/// as any packet ([`judge`], [`action_for`]).
pub fn error_action(rules: &[Rule], l3: &[u8]) -> Option<(u32, ErrorEffect)> {
    let outer = parse_packet(l3);
    let (flow, icmp) = error_flow(l3)?;
    if let Some(r) = rules
        .iter()
        .filter(|r| matches(&r.spec, &outer))
        .min_by_key(|r| (r.spec.priority, r.id))
    {
        let stands = match &r.spec.action {
            None => r.spec.verdict == Verdict::Drop,
            Some(a) => !matches!(a, Action::Snat { .. } | Action::Dnat { .. }),
        };
        if stands {
            return None;
        }
    }
    let rule = rules
        .iter()
        .filter(|r| matches(&r.spec, &flow))
        .min_by_key(|r| (r.spec.priority, r.id))?;
    if !is_translated_error(outer.family, l3[icmp]) {
        return None;
    }
    let e = icmp + 8;
    let (src_at, dst_at, len) = if outer.family == 4 {
        (12, 16, 4)
    } else {
        (8, 24, 16)
    };
    let addr_at = |at: usize| {
        ip(outer.family, &{
            let mut b = [0u8; 16];
            b[..len].copy_from_slice(&l3[at..at + len]);
            b
        })
    };
    let mut out = ErrorEffect::default();
    match rule.spec.action.as_ref()? {
        Action::Dnat { to, port } => {
            let old = addr_at(dst_at)?;
            if addr_at(e + src_at)? != old {
                return None;
            }
            let new = translate(old, rule.spec.dst, *to)?;
            out.effect.dst = Some(new);
            out.effect.reroute = true;
            out.inner_src = Some(new);
            out.inner_sport = *port;
        }
        Action::Snat { to, port } => {
            let old = addr_at(src_at)?;
            if addr_at(e + dst_at)? != old {
                return None;
            }
            let new = translate(old, rule.spec.src, *to)?;
            out.effect.src = Some(new);
            out.inner_dst = Some(new);
            out.inner_dport = *port;
        }
        _ => return None,
    }
    Some((rule.id, out))
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
