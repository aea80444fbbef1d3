//! Unit tests of `rule.rs`.
use super::*;

fn spec(text: &str) -> RuleSpec {
    text.parse()
        .unwrap_or_else(|e| panic!("`{text}` should parse: {e}"))
}

fn error(text: &str) -> RuleError {
    match text.parse::<RuleSpec>() {
        Ok(spec) => panic!("`{text}` should fail, parsed as {spec:?}"),
        Err(e) => e,
    }
}

fn net(text: &str) -> IpNet {
    text.parse()
        .unwrap_or_else(|e| panic!("`{text}` is a test prefix: {e}"))
}

#[test]
fn parses_the_example_rule() {
    let s = spec("dst 10.0.0.3/32 proto tcp dport 8080 drop log");
    assert_eq!(
        s,
        RuleSpec {
            dst: Some(net("10.0.0.3/32")),
            proto: Some(ip_proto::TCP),
            dport: Some(PortRange::single(8080)),
            log: true,
            ..RuleSpec::new(Verdict::Drop)
        }
    );
    assert_eq!(
        s.to_string(),
        "dst 10.0.0.3/32 proto tcp dport 8080 drop log"
    );
    assert_eq!(s.family(), Some(4));
    assert!(s.needs_l4());
}

#[test]
fn keywords_in_any_order_give_the_same_rule() {
    let a = spec("priority 7 src 10.0.0.0/8 dst 10.1.0.0/16 proto udp sport 1-2 dport 53 allow");
    let b = spec("dport 53 proto udp sport 1-2 dst 10.1.0.0/16 priority 7 src 10.0.0.0/8 allow");
    assert_eq!(a, b);
    assert_eq!(a.priority, 7);
    assert_eq!(a.sport, Some(PortRange { lo: 1, hi: 2 }));
}

#[test]
fn a_bare_verdict_matches_everything_at_default_priority() {
    let s = spec("allow");
    assert_eq!(s, RuleSpec::new(Verdict::Allow));
    assert_eq!(s.priority, DEFAULT_PRIORITY);
    assert_eq!(s.family(), None);
    assert!(!s.needs_l4());
    assert_eq!(s.to_string(), "allow");
    assert_eq!(spec("drop log").to_string(), "drop log");
}

#[test]
fn priority_is_printed_only_when_not_default() {
    assert_eq!(spec("priority 1000 drop").to_string(), "drop");
    assert_eq!(spec("priority 0 drop").to_string(), "priority 0 drop");
    assert_eq!(spec("priority 4294967295 drop").priority, u32::MAX);
}

#[test]
fn display_is_canonical() {
    let cases = [
        ("proto 6 drop", "proto tcp drop"),
        ("proto UDP allow", "proto udp allow"),
        ("proto 1 allow", "proto icmp allow"),
        ("proto 58 allow", "proto icmpv6 allow"),
        ("proto 47 allow", "proto 47 allow"),
        ("proto 0 allow", "proto 0 allow"),
        ("dport 80-80 drop", "dport 80 drop"),
        ("sport 0-65535 drop", "sport 0-65535 drop"),
        ("src 10.0.0.1 drop", "src 10.0.0.1/32 drop"),
        ("dst fc00:0:0::1 drop", "dst fc00::1/128 drop"),
        ("src 0.0.0.0/0 drop", "src 0.0.0.0/0 drop"),
        (
            "tcp-flags ACK,!SYN drop",
            "proto tcp tcp-flags !syn,ack drop",
        ),
        (
            "tcp-flags cwr,ece,urg,ack,psh,rst,syn,fin allow",
            "proto tcp tcp-flags fin,syn,rst,psh,ack,urg,ece,cwr allow",
        ),
        (
            "icmp-type 8 proto icmp drop log",
            "proto icmp icmp-type 8 drop log",
        ),
    ];
    for (input, canonical) in cases {
        let s = spec(input);
        assert_eq!(s.to_string(), canonical, "from `{input}`");
        assert_eq!(spec(canonical), s, "`{canonical}` parses back");
    }
}

/// A small deterministic generator (xorshift) so the round trip covers
/// many combinations without a property-testing dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn random_words(rng: &mut Rng) -> Vec<String> {
    let mut parts: Vec<Vec<String>> = Vec::new();
    let v6 = rng.below(2) == 0;
    let addr = |rng: &mut Rng| {
        if v6 {
            let plen = rng.below(129) as u8;
            let a = std::net::Ipv6Addr::from(u128::from(rng.next()) << 64 | u128::from(rng.next()));
            ipnet::Ipv6Net::new(a, plen).map(|n| n.trunc().to_string())
        } else {
            let plen = rng.below(33) as u8;
            let a = std::net::Ipv4Addr::from(rng.next() as u32);
            ipnet::Ipv4Net::new(a, plen).map(|n| n.trunc().to_string())
        }
        .unwrap_or_else(|e| panic!("prefix length in range: {e}"))
    };
    let port = |rng: &mut Rng| {
        let (a, b) = (rng.below(65536), rng.below(65536));
        if rng.below(2) == 0 {
            a.to_string()
        } else {
            format!("{}-{}", a.min(b), a.max(b))
        }
    };
    if rng.below(3) == 0 {
        parts.push(vec![
            "priority".into(),
            rng.next().to_string().chars().take(9).collect(),
        ]);
    }
    if rng.below(2) == 0 {
        parts.push(vec!["src".into(), addr(rng)]);
    }
    if rng.below(2) == 0 {
        parts.push(vec!["dst".into(), addr(rng)]);
    }
    match rng.below(6) {
        0 => {
            parts.push(vec!["proto".into(), "tcp".into()]);
            if rng.below(2) == 0 {
                parts.push(vec!["tcp-flags".into(), random_flags(rng)]);
            }
            parts.push(vec!["dport".into(), port(rng)]);
        }
        1 => {
            parts.push(vec!["proto".into(), "udp".into()]);
            parts.push(vec!["sport".into(), port(rng)]);
        }
        2 => {
            let p = if v6 { "icmpv6" } else { "icmp" };
            parts.push(vec!["proto".into(), p.into()]);
            if rng.below(2) == 0 {
                parts.push(vec!["icmp-type".into(), rng.below(256).to_string()]);
            }
        }
        3 => {
            // Any number but the ICMPs, which must fit the address family.
            let p = match rng.below(256) {
                1 | 58 => 47,
                p => p,
            };
            parts.push(vec!["proto".into(), p.to_string()]);
        }
        4 => parts.push(vec!["tcp-flags".into(), random_flags(rng)]),
        _ => {
            if rng.below(2) == 0 {
                parts.push(vec!["sport".into(), port(rng)]);
            }
            if rng.below(2) == 0 {
                parts.push(vec!["dport".into(), port(rng)]);
            }
        }
    }
    // Shuffle the keyword groups: order must not matter.
    for i in (1..parts.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        parts.swap(i, j);
    }
    let mut words: Vec<String> = parts.into_iter().flatten().collect();
    words.push(if rng.below(2) == 0 { "allow" } else { "drop" }.into());
    if rng.below(2) == 0 {
        words.push("log".into());
    }
    words
}

fn random_flags(rng: &mut Rng) -> String {
    let mut items = Vec::new();
    for (_, name) in TcpFlags::NAMES {
        match rng.below(3) {
            0 => items.push(name.to_string()),
            1 => items.push(format!("!{}", name.to_uppercase())),
            _ => {}
        }
    }
    if items.is_empty() {
        items.push("syn".into());
    }
    items.join(",")
}

#[test]
fn display_parses_back_to_the_same_rule() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..5000 {
        let words = random_words(&mut rng);
        let line = words.join(" ");
        let s = spec(&line);
        let shown = s.to_string();
        assert_eq!(spec(&shown), s, "`{line}` shown as `{shown}`");
        assert_eq!(spec(&shown).to_string(), shown);
    }
}

#[test]
fn parse_takes_words_and_from_str_splits_whitespace() {
    let words = ["priority", "5", "proto", "udp", "dport", "53", "allow"];
    let a = RuleSpec::parse(&words);
    let b = "  priority 5\tproto udp   dport 53 allow \n".parse::<RuleSpec>();
    assert_eq!(a, b);
    assert!(a.is_ok());
}

#[test]
fn port_ranges() {
    assert_eq!(PortRange::parse("0"), Ok(PortRange::single(0)));
    assert_eq!(PortRange::parse("65535"), Ok(PortRange::single(65535)));
    assert_eq!(
        PortRange::parse("1024-2048"),
        Ok(PortRange { lo: 1024, hi: 2048 })
    );
    assert_eq!(
        PortRange::parse("70000"),
        Err(RuleError::PortOutOfRange("70000".into()))
    );
    assert_eq!(
        PortRange::parse("1-70000"),
        Err(RuleError::PortOutOfRange("70000".into()))
    );
    assert_eq!(
        PortRange::parse("99999999999999999999999"),
        Err(RuleError::PortOutOfRange("99999999999999999999999".into()))
    );
    for bad in [
        "http", "", "-", "80-", "-80", "+80", "8 0", "1-2-3", "0x50", "-1",
    ] {
        assert_eq!(
            PortRange::parse(bad),
            Err(RuleError::BadPort(bad.into())),
            "`{bad}`"
        );
    }
    assert_eq!(
        PortRange::parse("90-80"),
        Err(RuleError::ReversedRange("90-80".into()))
    );
    let r = PortRange { lo: 10, hi: 20 };
    assert!(!r.contains(9) && r.contains(10) && r.contains(20) && !r.contains(21));
}

#[test]
fn tcp_flags_syntax() {
    let f = TcpFlags::parse("syn,!ack").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        f,
        TcpFlags {
            mask: TcpFlags::SYN | TcpFlags::ACK,
            value: TcpFlags::SYN
        }
    );
    assert!(f.matches(0x02) && f.matches(0x02 | 0x01 | 0x80));
    assert!(!f.matches(0x12) && !f.matches(0x10) && !f.matches(0));
    assert_eq!(f.to_string(), "syn,!ack");
    assert_eq!(
        TcpFlags::parse("!RST"),
        Ok(TcpFlags {
            mask: 0x04,
            value: 0
        })
    );
    let all = TcpFlags::parse("fin,syn,rst,psh,ack,urg,ece,cwr");
    assert_eq!(
        all,
        Ok(TcpFlags {
            mask: 0xff,
            value: 0xff
        })
    );
    for (bit, name) in TcpFlags::NAMES {
        assert_eq!(
            TcpFlags::parse(name),
            Ok(TcpFlags {
                mask: bit,
                value: bit
            })
        );
    }
    assert_eq!(
        TcpFlags::parse("syn,sny"),
        Err(RuleError::BadTcpFlag {
            flag: "sny".into(),
            flags: "syn,sny".into()
        })
    );
    assert_eq!(
        TcpFlags::parse("syn,,ack"),
        Err(RuleError::BadTcpFlag {
            flag: "".into(),
            flags: "syn,,ack".into()
        })
    );
    assert_eq!(
        TcpFlags::parse("!!syn"),
        Err(RuleError::BadTcpFlag {
            flag: "!!syn".into(),
            flags: "!!syn".into()
        })
    );
    assert_eq!(
        TcpFlags::parse("syn,!SYN"),
        Err(RuleError::DuplicateTcpFlag {
            flag: "syn".into(),
            flags: "syn,!SYN".into()
        })
    );
}

#[test]
fn tcp_flags_imply_proto_tcp() {
    let s = spec("tcp-flags syn,!ack drop");
    assert_eq!(s.proto, Some(ip_proto::TCP));
    assert_eq!(s, spec("proto tcp tcp-flags syn,!ack drop"));
    assert_eq!(s, spec("tcp-flags syn,!ack proto 6 drop"));
    assert!(s.needs_l4());
    assert_eq!(s.family(), None);
}

#[test]
fn family_and_l4_needs() {
    assert_eq!(spec("src 10.0.0.0/8 drop").family(), Some(4));
    assert_eq!(spec("dst fc00::/7 drop").family(), Some(6));
    assert_eq!(spec("src ::/0 dst ::1 drop").family(), Some(6));
    assert_eq!(spec("proto icmp icmp-type 8 drop").family(), Some(4));
    assert_eq!(spec("proto icmpv6 icmp-type 128 drop").family(), Some(6));
    // A plain protocol compares the protocol byte in either family.
    assert_eq!(spec("proto icmp drop").family(), None);
    assert_eq!(spec("proto icmpv6 drop").family(), None);
    assert_eq!(spec("dport 53 drop").family(), None);

    assert!(!spec("src 10.0.0.0/8 proto tcp drop").needs_l4());
    assert!(!spec("proto icmp drop").needs_l4());
    assert!(spec("sport 1 drop").needs_l4());
    assert!(spec("dport 1 drop").needs_l4());
    assert!(spec("proto icmp icmp-type 0 drop").needs_l4());
    assert!(spec("tcp-flags fin drop").needs_l4());
}

#[test]
fn ports_fit_tcp_udp_or_no_proto() {
    assert!("proto udp dport 53 allow".parse::<RuleSpec>().is_ok());
    assert!("proto tcp sport 1-1023 allow".parse::<RuleSpec>().is_ok());
    assert!("dport 53 allow".parse::<RuleSpec>().is_ok());
    assert_eq!(
        error("proto icmp dport 5 drop"),
        RuleError::PortsNeedTcpUdp {
            keyword: "dport",
            proto: "icmp".into()
        }
    );
    assert_eq!(
        error("sport 5 proto 47 drop"),
        RuleError::PortsNeedTcpUdp {
            keyword: "sport",
            proto: "47".into()
        }
    );
    assert_eq!(
        error("proto icmp dport 5 drop").to_string(),
        "`dport` needs proto tcp or udp (or no proto, meaning both), not icmp"
    );
}

#[test]
fn icmp_rules_fit_their_family() {
    assert!("src 10.0.0.0/8 proto icmp icmp-type 8 drop"
        .parse::<RuleSpec>()
        .is_ok());
    assert!("dst fc00::/7 proto icmpv6 icmp-type 135 drop"
        .parse::<RuleSpec>()
        .is_ok());
    assert_eq!(
        error("src fc00::/7 proto icmp drop"),
        RuleError::IcmpFamily {
            proto: "icmp",
            family: 6
        }
    );
    assert_eq!(
        error("dst 10.0.0.0/8 proto 58 drop"),
        RuleError::IcmpFamily {
            proto: "icmpv6",
            family: 4
        }
    );
    assert_eq!(
        error("src fc00::/7 proto icmp drop").to_string(),
        "proto icmp does not fit the rule's IPv6 addresses; use icmpv6"
    );
    assert_eq!(
        error("icmp-type 8 drop"),
        RuleError::IcmpTypeNeedsIcmp(None)
    );
    assert_eq!(
        error("icmp-type 8 drop").to_string(),
        "`icmp-type` needs proto icmp or icmpv6"
    );
    assert_eq!(
        error("proto tcp icmp-type 8 drop").to_string(),
        "`icmp-type` needs proto icmp or icmpv6, not tcp"
    );
    assert_eq!(
        error("proto icmp icmp-type 256 drop"),
        RuleError::IcmpTypeOutOfRange("256".into())
    );
    assert_eq!(
        error("proto icmp icmp-type echo drop"),
        RuleError::BadIcmpType("echo".into())
    );
    assert_eq!(spec("proto icmp icmp-type 255 drop").icmp_type, Some(255));
}

#[test]
fn tcp_flags_need_tcp() {
    assert_eq!(
        error("proto udp tcp-flags syn drop"),
        RuleError::TcpFlagsNeedTcp(Some("udp".into()))
    );
    assert_eq!(
        error("proto udp tcp-flags syn drop").to_string(),
        "`tcp-flags` needs proto tcp (or no proto), not udp"
    );
    assert_eq!(
        error("tcp-flags syn proto icmp drop"),
        RuleError::TcpFlagsNeedTcp(Some("icmp".into()))
    );
}

#[test]
fn every_word_error_names_the_word() {
    let cases: &[(&str, &str)] = &[
        ("dprt 80 drop", "unknown keyword `dprt`"),
        ("src 10.0.0.300/8 drop", "bad CIDR `10.0.0.300/8`"),
        ("src 10.0.0.0/33 drop", "bad CIDR `10.0.0.0/33`"),
        ("dst fc00::/129 drop", "bad CIDR `fc00::/129`"),
        ("dst host.example drop", "bad CIDR `host.example`"),
        (
            "src 10.0.0.3/24 drop",
            "bad CIDR `10.0.0.3/24`: host bits are set; did you mean 10.0.0.0/24?",
        ),
        (
            "dst fc00:0::1/64 drop",
            "bad CIDR `fc00:0::1/64`: host bits are set; did you mean fc00::/64?",
        ),
        ("dport 70000 drop", "port `70000` out of range 0-65535"),
        ("dport 90-80 drop", "reversed port range `90-80`"),
        ("sport http drop", "bad port `http`"),
        ("dport 80 dport 81 drop", "`dport` given twice"),
        ("dport 80 dport http drop", "`dport` given twice"),
        ("priority 1 priority 2 drop", "`priority` given twice"),
        ("src 10.0.0.0/8 src 11.0.0.0/8 drop", "`src` given twice"),
        ("proto tcp proto udp drop", "`proto` given twice"),
        ("proto sctp drop", "unknown protocol `sctp`"),
        ("proto 256 drop", "protocol `256` out of range 0-255"),
        ("proto -1 drop", "unknown protocol `-1`"),
        ("priority high drop", "bad priority `high`"),
        ("priority -1 drop", "bad priority `-1`"),
        ("priority +1 drop", "bad priority `+1`"),
        ("priority 4294967296 drop", "bad priority `4294967296`"),
        ("tcp-flags sny drop", "unknown TCP flag `sny` in `sny`"),
        (
            "src 10.0.0.0/8 dst fc00::/7 drop",
            "src `10.0.0.0/8` and dst `fc00::/7` are of different address families",
        ),
        (
            "dport 80",
            "missing action: end the rule with allow, drop, snat ADDR, dnat ADDR, mark N or redirect DEV",
        ),
        ("", "missing action: end the rule with allow, drop"),
        ("dport", "missing value after `dport`"),
        ("dport drop", "missing value after `dport`"),
        ("src dst 10.0.0.0/8 drop", "missing value after `src`"),
        ("tcp-flags log", "missing value after `tcp-flags`"),
        ("log drop", "`log` goes after the action"),
        ("dport 80 log drop", "`log` goes after the action"),
        (
            "drop log now",
            "unexpected `now` after `log`: the rule ends there",
        ),
        ("drop log log", "unexpected `log` after `log`"),
        (
            "drop dport 80",
            "unexpected `dport` after `drop`: only `log` may follow the action",
        ),
        ("allow drop", "unexpected `drop` after `allow`"),
        ("Drop", "unknown keyword `Drop`"),
    ];
    for (input, message) in cases {
        let got = error(input).to_string();
        assert!(
            got.starts_with(message),
            "`{input}`: got `{got}`, want `{message}...`"
        );
    }
}

#[test]
fn rules_files_skip_comments_and_blank_lines() {
    let text = "\
# web server
priority 10 dst 10.0.0.3/32 proto tcp dport 8080 drop log   # no 8080

   \t
src fc00::/7 allow#trailing comment
proto icmp icmp-type 8 drop
#dport 1 drop
";
    let rules = parse_rules_file(text);
    assert_eq!(
        rules,
        Ok(vec![
            spec("priority 10 dst 10.0.0.3/32 proto tcp dport 8080 drop log"),
            spec("src fc00::/7 allow"),
            spec("proto icmp icmp-type 8 drop"),
        ])
    );
    assert_eq!(parse_rules_file(""), Ok(vec![]));
    assert_eq!(parse_rules_file("# only\n\n"), Ok(vec![]));
}

#[test]
fn rules_file_errors_carry_the_line() {
    let text = "allow\n\n# comment\ndrop\nproto tcp\ndrop\ndport 99999 drop\n";
    let e = parse_rules_file(text);
    assert_eq!(
        e,
        Err(RuleError::Line {
            line: 5,
            error: Box::new(RuleError::MissingVerdict)
        })
    );
    let e = parse_rules_file("allow\r\ndprt 1 drop\r\n").map_err(|e| e.to_string());
    assert_eq!(e, Err("line 2: unknown keyword `dprt`; expected priority, src, dst, proto, sport, dport, icmp-type, tcp-flags, then an action: allow, drop, snat, dnat, mark or redirect".into()));
}

#[test]
fn verdict_words() {
    assert_eq!("allow".parse::<Verdict>(), Ok(Verdict::Allow));
    assert_eq!("drop".parse::<Verdict>(), Ok(Verdict::Drop));
    assert_eq!(
        "deny".parse::<Verdict>(),
        Err(RuleError::BadVerdict("deny".into()))
    );
    assert_eq!(Verdict::Drop.to_string(), "drop");
}

#[test]
fn rules_serialize_flat_with_lowercase_verdicts() {
    let rule = Rule {
        id: 3,
        spec: spec("priority 5 src 10.0.0.0/8 tcp-flags syn,!ack dport 22 drop log"),
    };
    let json = serde_json::to_value(&rule).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        json,
        serde_json::json!({
            "id": 3, "priority": 5, "src": "10.0.0.0/8", "dst": null, "proto": 6,
            "sport": null, "dport": {"lo": 22, "hi": 22}, "icmp_type": null,
            "tcp_flags": {"mask": 0x12, "value": 0x02}, "verdict": "drop", "log": true
        })
    );
    let back: Rule = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, rule);
}

#[test]
fn validate_rejects_specs_the_parser_would_not_build() {
    let base = RuleSpec::new(Verdict::Drop);
    let bad = [
        (
            RuleSpec {
                src: Some(net("10.0.0.1/8")),
                ..base.clone()
            },
            "host bits",
        ),
        (
            RuleSpec {
                src: Some(net("10.0.0.0/8")),
                dst: Some(net("::/0")),
                ..base.clone()
            },
            "different address families",
        ),
        (
            RuleSpec {
                dport: Some(PortRange { lo: 2, hi: 1 }),
                ..base.clone()
            },
            "reversed port range `2-1`",
        ),
        (
            RuleSpec {
                proto: Some(1),
                sport: Some(PortRange::single(1)),
                ..base.clone()
            },
            "needs proto tcp or udp",
        ),
        (
            RuleSpec {
                icmp_type: Some(1),
                ..base.clone()
            },
            "needs proto icmp",
        ),
        (
            RuleSpec {
                tcp_flags: Some(TcpFlags { mask: 2, value: 2 }),
                ..base.clone()
            },
            "needs proto tcp",
        ),
        (
            RuleSpec {
                proto: Some(6),
                tcp_flags: Some(TcpFlags { mask: 2, value: 3 }),
                ..base.clone()
            },
            "mask 0x02 value 0x03",
        ),
        (
            RuleSpec {
                proto: Some(6),
                tcp_flags: Some(TcpFlags { mask: 0, value: 0 }),
                ..base.clone()
            },
            "non-zero",
        ),
    ];
    for (s, message) in bad {
        let got = s.validate().map_err(|e| e.to_string());
        assert!(
            matches!(&got, Err(m) if m.contains(message)),
            "{s:?}: got {got:?}, want `{message}`"
        );
    }
    assert_eq!(base.validate(), Ok(()));
}

#[test]
fn actions_parse_and_print_back_in_canonical_form() {
    for text in [
        "src 10.1.0.2/32 snat 203.0.113.7",
        "src 10.1.0.0/24 snat 203.0.113.0/24 log",
        "dst 203.0.113.7/32 dnat 10.1.0.2",
        "dst 203.0.113.7/32 proto tcp dport 80 dnat 10.1.0.2 port 8080",
        "src 10.1.0.2/32 proto tcp sport 8080 snat 203.0.113.7 port 80",
        "src 10.1.0.0/24 proto udp snat 203.0.113.0/24 port 53 log",
        "dst 203.0.113.0/24 dnat 10.1.0.0/24",
        "proto udp dport 53 mark 7 reroute",
        "mark 4294967295",
        "dst 198.51.100.0/24 redirect tun0 log",
        "priority 5 snat 192.0.2.1",
    ] {
        assert_eq!(spec(text).to_string(), text, "{text}");
    }
    // A host prefix prints as the address.
    assert_eq!(
        spec("src 10.1.0.2/32 snat 203.0.113.7/32").to_string(),
        "src 10.1.0.2/32 snat 203.0.113.7"
    );
    let s = spec("dst 203.0.113.7 proto tcp dnat 10.1.0.2 port 8080");
    assert_eq!(s.verdict, Verdict::Allow);
    assert_eq!(
        s.action,
        Some(Action::Dnat {
            to: "10.1.0.2/32".parse().expect("test value"),
            port: Some(8080)
        })
    );
    assert_eq!(
        spec("src 10.1.0.2 proto tcp sport 8080 snat 203.0.113.7 port 80").action,
        Some(Action::Snat {
            to: "203.0.113.7/32".parse().expect("test value"),
            port: Some(80)
        })
    );
    assert_eq!(
        spec("mark 7 reroute").action,
        Some(Action::Mark {
            mark: 7,
            reroute: true
        })
    );
    // A rule that writes an address takes that address's family.
    assert_eq!(spec("proto udp snat 192.0.2.1").family(), Some(4));
    let json = serde_json::to_string(&spec(
        "src 10.1.0.2 proto tcp sport 8080 snat 203.0.113.7 port 80",
    ))
    .expect("test value");
    assert!(
        json.contains(r#""action":{"kind":"snat","to":"203.0.113.7/32","port":80}"#),
        "{json}"
    );
    let json = serde_json::to_string(&spec("src 10.1.0.2 snat 203.0.113.7")).expect("test value");
    assert!(
        json.contains(r#""action":{"kind":"snat","to":"203.0.113.7/32"}"#),
        "{json}"
    );
    let json = serde_json::to_string(&spec("mark 7 reroute")).expect("test value");
    assert!(
        json.contains(r#""action":{"kind":"mark","mark":7,"reroute":true}"#),
        "{json}"
    );
    assert!(!serde_json::to_string(&spec("drop"))
        .expect("test value")
        .contains("action"));
}

#[test]
fn action_errors_say_what_is_wrong() {
    let cases: &[(&str, &str)] = &[
        ("snat", "missing value after `snat`"),
        ("snat log", "missing value after `snat`"),
        ("dnat 10.0.0.1 port", "missing value after `port`"),
        ("proto tcp dnat 10.0.0.1 port 70000", "port `70000` out of range"),
        ("dnat 10.0.0.1 port 80", "`port` after dnat needs proto tcp or udp"),
        ("proto icmp dnat 10.0.0.1 port 80", "`port` after dnat needs proto tcp or udp, not icmp"),
        ("proto tcp dnat 10.0.0.1 port 0", "`port 0` after dnat: a translated port must be 1-65535"),
        ("snat 10.0.0.1 port", "missing value after `port`"),
        ("proto udp snat 10.0.0.1 port 65536", "port `65536` out of range"),
        ("proto tcp snat 10.0.0.1 port 0", "`port 0` after snat: a translated port must be 1-65535"),
        ("snat 10.0.0.1 port 80", "`port` after snat needs proto tcp or udp"),
        ("proto icmp snat 10.0.0.1 port 80", "`port` after snat needs proto tcp or udp, not icmp"),
        ("src 10.0.0.1 proto tcp snat 10.0.0.2 port x", "bad port `x`"),
        ("src 10.0.0.0/8 snat fd00::1", "snat fd00::1/128 is IPv6, but the rule matches IPv4"),
        ("src fd00::/64 snat 192.0.2.1", "snat 192.0.2.1/32 is IPv4, but the rule matches IPv6"),
        ("snat 192.0.2.0/24", "snat 192.0.2.0/24 maps a prefix (host bits kept): the rule needs `src` of the same length (/24)"),
        ("src 10.0.0.0/16 snat 192.0.2.0/24", "the rule needs `src` of the same length (/24)"),
        ("src 10.0.0.0/24 dnat 192.0.2.0/24", "the rule needs `dst` of the same length (/24)"),
        ("snat 192.0.2.1/24", "bad CIDR `192.0.2.1/24`: host bits are set"),
        ("mark x", "bad mark `x`"),
        ("mark 4294967296", "bad mark `4294967296`"),
        ("mark 0 reroute", "`mark 0 reroute` cannot tell"),
        ("redirect", "missing value after `redirect`"),
        ("redirect a/b", "bad device name `a/b`"),
        ("redirect tun0 drop", "unexpected `drop` after `redirect`"),
        ("snat 192.0.2.1 dport 80", "unexpected `dport` after `snat`"),
        ("proto icmpv6 snat 192.0.2.1", "proto icmpv6 does not fit the rule's IPv4 addresses"),
    ];
    for (input, message) in cases {
        let got = error(input).to_string();
        assert!(
            got.starts_with(message) || got.contains(message),
            "`{input}`: got `{got}`, want `{message}...`"
        );
    }
}
