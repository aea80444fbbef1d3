//! Rule families for the rule-mix benchmark (`lwtkit-bench mix`): each a
//! seeded generator of rules of one shape, and a seeded sweep of packets
//! for a rule set (half built to fall inside a random rule, half random
//! in the same address families). Which rule, if any, a packet really
//! matches is the model's business ([`super::model::evaluate`]); the
//! packets are only aimed.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::{
    bench_rules,
    rule::{ip_proto, PortRange, Rule, RuleSpec, TcpFlags, Verdict},
};

/// The rule shapes the mix benchmark measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// [`bench_rules`]: /16, /24, /32 sources and destinations, TCP/UDP,
    /// exact destination ports and ranges, some source-port ranges.
    Bench,
    /// Wide sources (/8 to /16) to /24 or /32 destinations, UDP, wide
    /// destination and source port ranges.
    WideRanges,
    /// /16 destinations with a source port (exact or a range), TCP/UDP,
    /// no source address.
    Dst16Sport,
    /// A /32 source to a /24 destination, TCP/UDP, an exact destination port.
    Src32Dst24,
    /// Half IPv6 (random global /32, /48, /64, /128 prefixes, with ports),
    /// half IPv4 (/16 to /32).
    Mixed46,
    /// TCP with flags (e.g. `syn,!ack`) and a destination port, and
    /// ICMP/ICMPv6 with a type, to /24 or /32 destinations.
    FlagsIcmp,
}

impl Family {
    pub const ALL: [Family; 6] = [
        Family::Bench,
        Family::WideRanges,
        Family::Dst16Sport,
        Family::Src32Dst24,
        Family::Mixed46,
        Family::FlagsIcmp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Family::Bench => "bench",
            Family::WideRanges => "wide-ranges",
            Family::Dst16Sport => "dst16-sport",
            Family::Src32Dst24 => "src32-dst24",
            Family::Mixed46 => "mixed-4-6",
            Family::FlagsIcmp => "flags-icmp",
        }
    }
}

/// xorshift64: the benchmarks' seeded generator.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

fn v4(addr: u32, plen: u8) -> Option<IpNet> {
    IpNet::new(Ipv4Addr::from(addr).into(), plen)
        .map(|n| n.trunc())
        .ok()
}

fn v6(addr: u128, plen: u8) -> Option<IpNet> {
    IpNet::new(Ipv6Addr::from(addr).into(), plen)
        .map(|n| n.trunc())
        .ok()
}

/// A random global unicast IPv6 address (2000::/3).
fn global6(rng: &mut Rng) -> u128 {
    let a = u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64());
    a >> 3 | 1 << 125
}

fn range(rng: &mut Rng, max_width: u64) -> PortRange {
    let lo = rng.below(65_000) as u16 + 1;
    PortRange {
        lo,
        hi: lo.saturating_add(rng.below(max_width + 1) as u16),
    }
}

/// `n` rules of `family` from `seed` (ids 1..=n, in order).
pub fn family_rules(family: Family, n: usize, seed: u64) -> Vec<Rule> {
    if family == Family::Bench {
        return bench_rules(n, seed);
    }
    let mut rng = Rng::new(seed);
    (1..=n as u32)
        .map(|id| {
            let r = rng.next_u64();
            let mut spec = RuleSpec::new(if r & 1 == 0 {
                Verdict::Drop
            } else {
                Verdict::Allow
            });
            let tcp_udp = if r & 2 == 0 {
                ip_proto::TCP
            } else {
                ip_proto::UDP
            };
            match family {
                Family::Bench => unreachable!("handled above"),
                Family::WideRanges => {
                    spec.src = v4(rng.next_u64() as u32, 8 + rng.below(9) as u8);
                    spec.dst = v4(rng.next_u64() as u32, [24, 32][rng.below(2) as usize]);
                    spec.proto = Some(ip_proto::UDP);
                    spec.dport = Some(range(&mut rng, 20_000));
                    if r % 4 != 0 {
                        spec.sport = Some(range(&mut rng, 30_000));
                    }
                }
                Family::Dst16Sport => {
                    spec.dst = v4(rng.next_u64() as u32, 16);
                    spec.proto = Some(tcp_udp);
                    spec.sport = Some(if r % 3 == 0 {
                        range(&mut rng, 1_000)
                    } else {
                        PortRange::single(rng.below(65_000) as u16 + 1)
                    });
                }
                Family::Src32Dst24 => {
                    spec.src = v4(rng.next_u64() as u32, 32);
                    spec.dst = v4(rng.next_u64() as u32, 24);
                    spec.proto = Some(tcp_udp);
                    spec.dport = Some(PortRange::single(rng.below(65_000) as u16 + 1));
                }
                Family::Mixed46 => {
                    if r & 4 == 0 {
                        let plen = |rng: &mut Rng| [32u8, 48, 64, 128][rng.below(4) as usize];
                        spec.src = v6(global6(&mut rng), plen(&mut rng));
                        spec.dst = v6(global6(&mut rng), plen(&mut rng));
                    } else {
                        let plen = |rng: &mut Rng| [16u8, 24, 32][rng.below(3) as usize];
                        spec.src = v4(rng.next_u64() as u32, plen(&mut rng));
                        spec.dst = v4(rng.next_u64() as u32, plen(&mut rng));
                    }
                    spec.proto = Some(tcp_udp);
                    spec.dport = Some(if r % 10 < 7 {
                        PortRange::single(rng.below(65_000) as u16 + 1)
                    } else {
                        range(&mut rng, 2_000)
                    });
                }
                Family::FlagsIcmp => {
                    let dst_len = [24u8, 32][rng.below(2) as usize];
                    match r % 3 {
                        0 => {
                            spec.dst = v4(rng.next_u64() as u32, dst_len);
                            spec.proto = Some(ip_proto::TCP);
                            spec.dport = Some(PortRange::single(rng.below(65_000) as u16 + 1));
                            spec.tcp_flags = Some(
                                [
                                    TcpFlags {
                                        mask: TcpFlags::SYN | TcpFlags::ACK,
                                        value: TcpFlags::SYN,
                                    },
                                    TcpFlags {
                                        mask: TcpFlags::RST,
                                        value: TcpFlags::RST,
                                    },
                                    TcpFlags {
                                        mask: TcpFlags::FIN | TcpFlags::ACK,
                                        value: TcpFlags::FIN | TcpFlags::ACK,
                                    },
                                ][rng.below(3) as usize],
                            );
                        }
                        1 => {
                            spec.dst = v4(rng.next_u64() as u32, dst_len);
                            spec.proto = Some(ip_proto::ICMP);
                            spec.icmp_type = Some([0u8, 3, 8, 11][rng.below(4) as usize]);
                        }
                        _ => {
                            let hi = 0x2001_0db8_u128 << 96;
                            let a = rng.next_u64();
                            spec.dst =
                                v6(hi | u128::from(a) << 32, [64u8, 128][rng.below(2) as usize]);
                            spec.proto = Some(ip_proto::ICMPV6);
                            spec.icmp_type = Some([1u8, 128, 129, 135][rng.below(4) as usize]);
                        }
                    }
                }
            }
            Rule { id, spec }
        })
        .collect()
}

/// A random address inside `net` (or anywhere in `family` without one).
fn addr_in(rng: &mut Rng, net: Option<IpNet>, family: u8) -> IpAddr {
    match (net, family) {
        (Some(IpNet::V4(n)), _) => {
            let host = if n.prefix_len() == 32 {
                0
            } else {
                rng.next_u64() as u32 & (u32::MAX >> n.prefix_len())
            };
            IpAddr::V4(Ipv4Addr::from(u32::from(n.network()) | host))
        }
        (Some(IpNet::V6(n)), _) => {
            let host = if n.prefix_len() == 128 {
                0
            } else {
                (u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64()))
                    & (u128::MAX >> n.prefix_len())
            };
            IpAddr::V6(Ipv6Addr::from(u128::from(n.network()) | host))
        }
        (None, 6) => IpAddr::V6(Ipv6Addr::from(global6(rng))),
        (None, _) => IpAddr::V4(Ipv4Addr::from(rng.next_u64() as u32)),
    }
}

fn port_in(rng: &mut Rng, r: Option<PortRange>) -> u16 {
    match r {
        Some(r) => r.lo + rng.below(u64::from(r.hi - r.lo) + 1) as u16,
        None => rng.below(65_535) as u16 + 1,
    }
}

/// Fields of one benchmark packet.
#[derive(Clone, Copy, Debug)]
pub struct PacketFields {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    /// Ports; for ICMP the type and code.
    pub sport: u16,
    pub dport: u16,
    pub tcp_flags: u8,
}

/// An L3 packet (IPv4 or IPv6 by the addresses) with a full L4 header of
/// `proto` and a few bytes of payload.
pub fn build_packet(f: &PacketFields) -> Vec<u8> {
    let l4_len = match f.proto {
        ip_proto::TCP => 20,
        _ => 8,
    };
    let payload = 8;
    let mut l4 = vec![0u8; l4_len + payload];
    match f.proto {
        ip_proto::ICMP | ip_proto::ICMPV6 => {
            l4[0] = f.sport as u8;
            l4[1] = f.dport as u8;
        }
        _ => {
            l4[0..2].copy_from_slice(&f.sport.to_be_bytes());
            l4[2..4].copy_from_slice(&f.dport.to_be_bytes());
            if f.proto == ip_proto::TCP {
                l4[12] = 0x50;
                l4[13] = f.tcp_flags;
            } else {
                let len = l4.len() as u16;
                l4[4..6].copy_from_slice(&len.to_be_bytes());
            }
        }
    }
    match (f.src, f.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut p = vec![0u8; 20];
            p[0] = 0x45;
            p[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
            p[8] = 64;
            p[9] = f.proto;
            p[12..16].copy_from_slice(&s.octets());
            p[16..20].copy_from_slice(&d.octets());
            p.extend_from_slice(&l4);
            p
        }
        (s, d) => {
            let to6 = |a: IpAddr| match a {
                IpAddr::V6(a) => a,
                IpAddr::V4(a) => a.to_ipv6_mapped(),
            };
            let mut p = vec![0u8; 40];
            p[0] = 0x60;
            p[4..6].copy_from_slice(&(l4.len() as u16).to_be_bytes());
            p[6] = f.proto;
            p[7] = 64;
            p[8..24].copy_from_slice(&to6(s).octets());
            p[24..40].copy_from_slice(&to6(d).octets());
            p.extend_from_slice(&l4);
            p
        }
    }
}

/// A packet aimed inside `rule`: every field the rule names is taken from
/// its range, the others are random.
pub fn packet_for(rng: &mut Rng, rule: &RuleSpec) -> PacketFields {
    let family = rule.family().unwrap_or(4);
    let proto = rule.proto.unwrap_or(ip_proto::UDP);
    let (sport, dport) = if matches!(proto, ip_proto::ICMP | ip_proto::ICMPV6) {
        (u16::from(rule.icmp_type.unwrap_or(8)), 0)
    } else {
        (port_in(rng, rule.sport), port_in(rng, rule.dport))
    };
    let tcp_flags = match rule.tcp_flags {
        Some(f) => f.value | (rng.next_u64() as u8 & !f.mask),
        None => TcpFlags::ACK,
    };
    PacketFields {
        src: addr_in(rng, rule.src, family),
        dst: addr_in(rng, rule.dst, family),
        proto,
        sport,
        dport,
        tcp_flags,
    }
}

/// A random packet in the address family and with the protocol of a
/// random rule of `rules` (so IPv6 and ICMP show up where the rules have them).
pub fn random_packet(rng: &mut Rng, rules: &[Rule]) -> PacketFields {
    let like = &rules[rng.below(rules.len() as u64) as usize].spec;
    let family = like.family().unwrap_or(4);
    let proto = like.proto.unwrap_or(ip_proto::UDP);
    let (sport, dport) = if matches!(proto, ip_proto::ICMP | ip_proto::ICMPV6) {
        (rng.below(256) as u16, rng.below(16) as u16)
    } else {
        (port_in(rng, None), port_in(rng, None))
    };
    PacketFields {
        src: addr_in(rng, None, family),
        dst: addr_in(rng, None, family),
        proto,
        sport,
        dport,
        tcp_flags: rng.next_u64() as u8,
    }
}

/// `n` packets for `rules` from `seed`: alternately aimed at a random rule
/// (`true` in the pair) and random.
pub fn sweep_packets(rules: &[Rule], n: usize, seed: u64) -> Vec<(bool, Vec<u8>)> {
    let mut rng = Rng::new(seed ^ 0x5eed_5eed);
    (0..n)
        .map(|i| {
            if i % 2 == 0 {
                let r = &rules[rng.below(rules.len() as u64) as usize];
                (true, build_packet(&packet_for(&mut rng, &r.spec)))
            } else {
                (false, build_packet(&random_packet(&mut rng, rules)))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::model::{evaluate, parse_packet, Class};

    #[test]
    fn every_family_makes_valid_rules_and_aimed_packets_match_their_rule() {
        for family in Family::ALL {
            let rules = family_rules(family, 200, 7);
            for r in &rules {
                r.spec
                    .validate()
                    .unwrap_or_else(|e| panic!("{family:?} {}: {e}", r.spec));
            }
            let mut rng = Rng::new(9);
            for r in &rules {
                let pkt = build_packet(&packet_for(&mut rng, &r.spec));
                let key = parse_packet(&pkt);
                assert_eq!(key.class, Class::Whole, "{family:?}");
                assert!(
                    crate::filter::model::matches(&r.spec, &key),
                    "{family:?}: packet aimed at `{}` misses it: {key:?}",
                    r.spec
                );
                assert!(evaluate(&rules, Verdict::Allow, &key).1.is_some());
            }
        }
    }
}
