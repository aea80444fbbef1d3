//! The rule language of `lwt filter`: words parsed into a validated
//! [`RuleSpec`], printed back in canonical order, and rules files.
//!
//! ```text
//! [priority N] [src CIDR] [dst CIDR] [proto tcp|udp|icmp|icmpv6|NUM]
//! [sport P|P-Q] [dport P|P-Q] [icmp-type N] [tcp-flags FLAGS] ACTION [log]
//!
//! ACTION: allow | drop | snat ADDR|PREFIX [port N] | dnat ADDR|PREFIX [port N]
//!         | mark N [reroute] | redirect DEV
//! ```
//!
//! Keywords come in any order before the action, each at most once; `log`
//! may only follow the action. Example: `dst 10.0.0.3/32 proto tcp dport
//! 8080 drop log`. A rules file holds one rule per line, `#` starts a comment.
//!
//! What a rule matches (the executable reference is [`super::model`]):
//! - every part it names must match; a rule naming nothing matches every
//!   well-formed packet. Malformed packets only ever get the default verdict.
//! - the matching rule with the lowest priority wins (default
//!   [`DEFAULT_PRIORITY`]); ties go to the lower rule id. Ids follow the
//!   order of a rules file; `rule add` takes the smallest free id, so after
//!   a `rule del` a new rule can take an older rule's place in a tie: give
//!   rules that must win distinct priorities.
//! - `src`/`dst`: the packet is of the prefix's family and inside it.
//! - `sport`/`dport` without `proto` match TCP and UDP, nothing else.
//! - `icmp-type N` matches ICMP (IPv4, protocol 1) or ICMPv6 (IPv6,
//!   protocol 58) messages of type N, so `proto icmp icmp-type 8` only
//!   matches IPv4 packets and `proto icmpv6 icmp-type 128` only IPv6 ones.
//!   A plain `proto icmp` (no `icmp-type`) compares only the protocol byte,
//!   in either family.
//! - `tcp-flags syn,!ack` matches TCP segments with SYN set and ACK clear;
//!   unlisted flags don't matter. It implies `proto tcp`.
//! - ports, `icmp-type` and `tcp-flags` look at the L4 header: a packet
//!   without one (non-first fragment, truncated header, IPv6 extension chain
//!   too long) never matches such a rule.
use std::{fmt, net::IpAddr, str::FromStr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// IP protocol numbers the rule language names.
pub mod ip_proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
}

/// Priority of a rule that doesn't give one.
pub const DEFAULT_PRIORITY: u32 = 1000;

/// What happens to a packet a rule matches (or, for a policy's default, to
/// a packet no rule matches).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allow,
    Drop,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Drop => "drop",
        }
    }

    fn from_word(word: &str) -> Option<Self> {
        match word {
            "allow" => Some(Verdict::Allow),
            "drop" => Some(Verdict::Drop),
            _ => None,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Verdict {
    type Err = RuleError;

    fn from_str(s: &str) -> Result<Self, RuleError> {
        Self::from_word(s).ok_or_else(|| RuleError::BadVerdict(s.to_string()))
    }
}

/// What a rule does to a packet it matches beyond passing it: rewrite an
/// address (NAT), set the mark (and route again), or send it out of a
/// device. A rule with an action passes the packet (its verdict is allow).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Action {
    /// Rewrite the source: to one address, or (a prefix) keeping the host
    /// bits of the rule's `src` prefix (NETMAP), and for TCP/UDP optionally
    /// the source port (the reply side of a port forward).
    Snat {
        to: IpNet,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
    },
    /// Rewrite the destination, likewise from the rule's `dst` prefix, and
    /// for TCP/UDP optionally the destination port.
    Dnat {
        to: IpNet,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
    },
    /// Set `skb->mark`; `reroute`: look the route up again with it.
    Mark {
        mark: u32,
        #[serde(default)]
        reroute: bool,
    },
    /// Send the packet out of `dev` (a layer-3 device). `ifindex` is
    /// resolved in the namespace when the rule is added (0 until then).
    Redirect {
        dev: String,
        #[serde(default)]
        ifindex: u32,
    },
}

impl Action {
    /// The action's keyword.
    pub fn word(&self) -> &'static str {
        match self {
            Action::Snat { .. } => "snat",
            Action::Dnat { .. } => "dnat",
            Action::Mark { .. } => "mark",
            Action::Redirect { .. } => "redirect",
        }
    }

    /// The family of the address it writes, if it writes one.
    pub fn family(&self) -> Option<u8> {
        match self {
            Action::Snat { to, .. } | Action::Dnat { to, .. } => Some(family_of(*to)),
            _ => None,
        }
    }

    /// The hooks that can carry it out: rewriting and redirecting need
    /// `xmit` (the only LWT hook that may write the packet or redirect);
    /// a reroute needs `in` or `xmit` (`out` ignores `BPF_LWT_REROUTE`).
    pub fn hooks(&self) -> &'static [crate::hook::Hook] {
        use crate::hook::Hook;
        match self {
            Action::Snat { .. } | Action::Dnat { .. } | Action::Redirect { .. } => &[Hook::Xmit],
            Action::Mark { reroute: true, .. } => &[Hook::In, Hook::Xmit],
            Action::Mark { reroute: false, .. } => &[Hook::In, Hook::Out, Hook::Xmit],
        }
    }

    /// What the counters call the packets it handled.
    pub fn done_word(&self) -> &'static str {
        match self {
            Action::Snat { .. } | Action::Dnat { .. } => "translated",
            Action::Mark { reroute: true, .. } => "rerouted",
            Action::Mark { reroute: false, .. } => "marked",
            Action::Redirect { .. } => "redirected",
        }
    }
}

/// An address as the rule language prints it: a host prefix bare.
struct AddrWord(IpNet);

impl fmt::Display for AddrWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.prefix_len() == self.0.max_prefix_len() {
            write!(f, "{}", self.0.addr())
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Snat { to, port } | Action::Dnat { to, port } => {
                write!(f, "{} {}", self.word(), AddrWord(*to))?;
                if let Some(p) = port {
                    write!(f, " port {p}")?;
                }
                Ok(())
            }
            Action::Mark { mark, reroute } => {
                write!(f, "mark {mark}")?;
                if *reroute {
                    f.write_str(" reroute")?;
                }
                Ok(())
            }
            Action::Redirect { dev, .. } => write!(f, "redirect {dev}"),
        }
    }
}

/// An inclusive port range; a single port has `lo == hi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub const fn single(port: u16) -> Self {
        Self { lo: port, hi: port }
    }

    pub fn contains(self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }

    /// `P` or `P-Q` (inclusive, `P <= Q`).
    pub fn parse(word: &str) -> Result<Self, RuleError> {
        match word.split_once('-') {
            None => parse_port(word, word).map(Self::single),
            Some((lo, hi)) => {
                let (lo, hi) = (parse_port(lo, word)?, parse_port(hi, word)?);
                if lo > hi {
                    return Err(RuleError::ReversedRange(word.to_string()));
                }
                Ok(Self { lo, hi })
            }
        }
    }
}

/// One port of `word` (which may be a range): digits only, 0-65535.
fn parse_port(digits: &str, word: &str) -> Result<u16, RuleError> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RuleError::BadPort(word.to_string()));
    }
    digits
        .parse::<u16>()
        .map_err(|_| RuleError::PortOutOfRange(digits.to_string()))
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

/// TCP flags a rule tests: a segment matches when `(flags & mask) == value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TcpFlags {
    pub mask: u8,
    pub value: u8,
}

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
    /// Flag names in bit order, the order [`fmt::Display`] prints them in.
    pub const NAMES: [(u8, &'static str); 8] = [
        (Self::FIN, "fin"),
        (Self::SYN, "syn"),
        (Self::RST, "rst"),
        (Self::PSH, "psh"),
        (Self::ACK, "ack"),
        (Self::URG, "urg"),
        (Self::ECE, "ece"),
        (Self::CWR, "cwr"),
    ];

    pub fn matches(self, flags: u8) -> bool {
        flags & self.mask == self.value
    }

    /// Comma-separated flag names (case-insensitive), each optionally
    /// prefixed with `!` (the flag must be clear), e.g. `syn,!ack`.
    pub fn parse(word: &str) -> Result<Self, RuleError> {
        let mut flags = Self { mask: 0, value: 0 };
        for item in word.split(',') {
            let (set, name) = match item.strip_prefix('!') {
                Some(name) => (false, name),
                None => (true, item),
            };
            let bit = Self::NAMES
                .iter()
                .find(|(_, n)| n.eq_ignore_ascii_case(name))
                .map(|(bit, _)| *bit)
                .ok_or_else(|| RuleError::BadTcpFlag {
                    flag: item.to_string(),
                    flags: word.to_string(),
                })?;
            if flags.mask & bit != 0 {
                return Err(RuleError::DuplicateTcpFlag {
                    flag: name.to_ascii_lowercase(),
                    flags: word.to_string(),
                });
            }
            flags.mask |= bit;
            if set {
                flags.value |= bit;
            }
        }
        Ok(flags)
    }
}

impl fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (bit, name) in Self::NAMES {
            if self.mask & bit == 0 {
                continue;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if self.value & bit == 0 {
                f.write_str("!")?;
            }
            f.write_str(name)?;
        }
        Ok(())
    }
}

/// The name the rule language uses for a protocol number, if it has one.
pub fn proto_name(proto: u8) -> Option<&'static str> {
    match proto {
        ip_proto::ICMP => Some("icmp"),
        ip_proto::TCP => Some("tcp"),
        ip_proto::UDP => Some("udp"),
        ip_proto::ICMPV6 => Some("icmpv6"),
        _ => None,
    }
}

/// `proto`'s value: a name (case-insensitive) or a number 0-255.
pub fn parse_proto(word: &str) -> Result<u8, RuleError> {
    for p in [
        ip_proto::TCP,
        ip_proto::UDP,
        ip_proto::ICMP,
        ip_proto::ICMPV6,
    ] {
        if proto_name(p).is_some_and(|n| n.eq_ignore_ascii_case(word)) {
            return Ok(p);
        }
    }
    if word.is_empty() || !word.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RuleError::UnknownProto(word.to_string()));
    }
    word.parse::<u8>()
        .map_err(|_| RuleError::ProtoOutOfRange(word.to_string()))
}

/// How error messages and [`RuleSpec`]'s display name a protocol.
struct ProtoWord(u8);

impl fmt::Display for ProtoWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match proto_name(self.0) {
            Some(name) => f.write_str(name),
            None => write!(f, "{}", self.0),
        }
    }
}

/// A rule as the user wrote it (validated), without an id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSpec {
    pub priority: u32,
    pub src: Option<IpNet>,
    pub dst: Option<IpNet>,
    pub proto: Option<u8>,
    pub sport: Option<PortRange>,
    pub dport: Option<PortRange>,
    pub icmp_type: Option<u8>,
    pub tcp_flags: Option<TcpFlags>,
    /// `allow` for a rule with an action.
    pub verdict: Verdict,
    /// What the rule does beyond passing the packet (NAT, mark, redirect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    pub log: bool,
}

/// A rule in a policy: its spec and lwtkit's id (ids start at 1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub id: u32,
    #[serde(flatten)]
    pub spec: RuleSpec,
}

/// The keywords that take a value, in canonical order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Keyword {
    Priority,
    Src,
    Dst,
    Proto,
    Sport,
    Dport,
    IcmpType,
    TcpFlags,
}

impl Keyword {
    const ALL: [Keyword; 8] = [
        Keyword::Priority,
        Keyword::Src,
        Keyword::Dst,
        Keyword::Proto,
        Keyword::Sport,
        Keyword::Dport,
        Keyword::IcmpType,
        Keyword::TcpFlags,
    ];

    fn word(self) -> &'static str {
        match self {
            Keyword::Priority => "priority",
            Keyword::Src => "src",
            Keyword::Dst => "dst",
            Keyword::Proto => "proto",
            Keyword::Sport => "sport",
            Keyword::Dport => "dport",
            Keyword::IcmpType => "icmp-type",
            Keyword::TcpFlags => "tcp-flags",
        }
    }

    fn from_word(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.word() == word)
    }
}

/// Words that can't be a keyword's value: taking one as such would only
/// hide the real mistake (a missing value).
fn is_reserved(word: &str) -> bool {
    Keyword::from_word(word).is_some()
        || Verdict::from_word(word).is_some()
        || ACTION_WORDS.contains(&word)
        || word == "log"
}

/// The actions that take parameters.
const ACTION_WORDS: [&str; 4] = ["snat", "dnat", "mark", "redirect"];

/// An action's address: `ADDR` (one address) or `PREFIX` (host bits clear).
fn parse_target(word: &str) -> Result<IpNet, RuleError> {
    parse_cidr(word)
}

/// A device name as the kernel takes one (`IFNAMSIZ` 16 with the NUL).
fn parse_dev(word: &str) -> Result<String, RuleError> {
    if word.is_empty()
        || word.len() > 15
        || word.contains(['/', ' '])
        || word == "."
        || word == ".."
    {
        return Err(RuleError::BadDevice(word.to_string()));
    }
    Ok(word.to_string())
}

/// Parses the action that starts at `words[*i]` (its keyword already
/// taken as `word`), advancing `i` past its parameters.
fn parse_action(word: &str, words: &[&str], i: &mut usize) -> Result<Action, RuleError> {
    let mut value = |what: &'static str| -> Result<&str, RuleError> {
        match words.get(*i) {
            Some(&v) if !is_reserved(v) && v != "port" && v != "reroute" => {
                *i += 1;
                Ok(v)
            }
            _ => Err(RuleError::MissingValue(what)),
        }
    };
    match word {
        "snat" | "dnat" => {
            let to = parse_target(value(if word == "snat" { "snat" } else { "dnat" })?)?;
            let port = if words.get(*i) == Some(&"port") {
                *i += 1;
                let p = match words.get(*i) {
                    Some(&v) if !is_reserved(v) => v,
                    _ => return Err(RuleError::MissingValue("port")),
                };
                *i += 1;
                match parse_port(p, p)? {
                    0 => {
                        return Err(RuleError::PortZero(if word == "snat" {
                            "snat"
                        } else {
                            "dnat"
                        }))
                    }
                    p => Some(p),
                }
            } else {
                None
            };
            Ok(if word == "snat" {
                Action::Snat { to, port }
            } else {
                Action::Dnat { to, port }
            })
        }
        "mark" => {
            let v = value("mark")?;
            let digits = !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
            let mark = v
                .parse::<u32>()
                .ok()
                .filter(|_| digits)
                .ok_or_else(|| RuleError::BadMark(v.to_string()))?;
            let reroute = words.get(*i) == Some(&"reroute");
            if reroute {
                *i += 1;
            }
            Ok(Action::Mark { mark, reroute })
        }
        _ => Ok(Action::Redirect {
            dev: parse_dev(value("redirect")?)?,
            ifindex: 0,
        }),
    }
}

fn parse_cidr(word: &str) -> Result<IpNet, RuleError> {
    // A bare address is the host prefix, as `ip route` takes it.
    let net = match word.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => word
            .parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| RuleError::BadCidr(word.to_string()))?,
    };
    // Name the prefix as the user wrote it.
    check_network(net).map_err(|e| match e {
        RuleError::HostBits { network, .. } => RuleError::HostBits {
            given: word.to_string(),
            network,
        },
        e => e,
    })?;
    Ok(net)
}

fn check_network(net: IpNet) -> Result<(), RuleError> {
    if net.trunc() != net {
        return Err(RuleError::HostBits {
            given: net.to_string(),
            network: net.trunc().to_string(),
        });
    }
    Ok(())
}

fn parse_icmp_type(word: &str) -> Result<u8, RuleError> {
    if word.is_empty() || !word.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RuleError::BadIcmpType(word.to_string()));
    }
    word.parse::<u8>()
        .map_err(|_| RuleError::IcmpTypeOutOfRange(word.to_string()))
}

fn family_of(net: IpNet) -> u8 {
    match net {
        IpNet::V4(_) => 4,
        IpNet::V6(_) => 6,
    }
}

impl RuleSpec {
    /// A rule matching everything with `verdict`, at the default priority.
    pub fn new(verdict: Verdict) -> Self {
        Self {
            priority: DEFAULT_PRIORITY,
            src: None,
            dst: None,
            proto: None,
            sport: None,
            dport: None,
            icmp_type: None,
            tcp_flags: None,
            verdict,
            action: None,
            log: false,
        }
    }

    /// Parses the words of one rule (those after `rule add NAME`; they may
    /// start with `priority N`).
    pub fn parse(words: &[&str]) -> Result<Self, RuleError> {
        let mut priority = None;
        let mut spec = Self::new(Verdict::Allow);
        let mut i = 0;
        let verdict = loop {
            let Some(&word) = words.get(i) else {
                return Err(RuleError::MissingVerdict);
            };
            i += 1;
            if let Some(verdict) = Verdict::from_word(word) {
                break verdict;
            }
            if ACTION_WORDS.contains(&word) {
                spec.action = Some(parse_action(word, words, &mut i)?);
                break Verdict::Allow;
            }
            if word == "log" {
                return Err(RuleError::LogBeforeVerdict);
            }
            let keyword = Keyword::from_word(word)
                .ok_or_else(|| RuleError::UnknownKeyword(word.to_string()))?;
            let value = match words.get(i) {
                Some(&value) if !is_reserved(value) => value,
                _ => return Err(RuleError::MissingValue(keyword.word())),
            };
            i += 1;
            let duplicate = match keyword {
                Keyword::Priority => priority.is_some(),
                Keyword::Src => spec.src.is_some(),
                Keyword::Dst => spec.dst.is_some(),
                Keyword::Proto => spec.proto.is_some(),
                Keyword::Sport => spec.sport.is_some(),
                Keyword::Dport => spec.dport.is_some(),
                Keyword::IcmpType => spec.icmp_type.is_some(),
                Keyword::TcpFlags => spec.tcp_flags.is_some(),
            };
            if duplicate {
                return Err(RuleError::Duplicate(keyword.word()));
            }
            match keyword {
                Keyword::Priority => {
                    let digits = value.bytes().all(|b| b.is_ascii_digit());
                    let p = value.parse::<u32>().ok().filter(|_| digits);
                    priority = Some(p.ok_or_else(|| RuleError::BadPriority(value.to_string()))?);
                }
                Keyword::Src => spec.src = Some(parse_cidr(value)?),
                Keyword::Dst => spec.dst = Some(parse_cidr(value)?),
                Keyword::Proto => spec.proto = Some(parse_proto(value)?),
                Keyword::Sport => spec.sport = Some(PortRange::parse(value)?),
                Keyword::Dport => spec.dport = Some(PortRange::parse(value)?),
                Keyword::IcmpType => spec.icmp_type = Some(parse_icmp_type(value)?),
                Keyword::TcpFlags => spec.tcp_flags = Some(TcpFlags::parse(value)?),
            }
        };
        spec.verdict = verdict;
        spec.priority = priority.unwrap_or(DEFAULT_PRIORITY);
        match words.get(i) {
            None => {}
            Some(&"log") => {
                spec.log = true;
                i += 1;
                if let Some(&word) = words.get(i) {
                    return Err(RuleError::AfterLog(word.to_string()));
                }
            }
            Some(&word) => {
                return Err(RuleError::AfterVerdict {
                    word: word.to_string(),
                    verdict: spec
                        .action
                        .as_ref()
                        .map_or(verdict.as_str(), Action::word)
                        .to_string(),
                })
            }
        }
        if spec.tcp_flags.is_some() && spec.proto.is_none() {
            spec.proto = Some(ip_proto::TCP);
        }
        spec.validate()?;
        Ok(spec)
    }

    /// Checks what no single word can: that the parts of the rule fit
    /// together. [`RuleSpec::parse`] runs it; run it on specs that come from
    /// elsewhere (deserialized state) before trusting them.
    pub fn validate(&self) -> Result<(), RuleError> {
        for net in [self.src, self.dst].into_iter().flatten() {
            check_network(net)?;
        }
        if let (Some(src), Some(dst)) = (self.src, self.dst) {
            if family_of(src) != family_of(dst) {
                return Err(RuleError::FamilyMismatch {
                    src: src.to_string(),
                    dst: dst.to_string(),
                });
            }
        }
        let addr_family = self
            .src
            .or(self.dst)
            .map(family_of)
            .or(self.action.as_ref().and_then(Action::family));
        if let Some(action) = &self.action {
            self.validate_action(action, addr_family)?;
        }
        match (self.proto, addr_family) {
            (Some(ip_proto::ICMP), Some(6)) => {
                return Err(RuleError::IcmpFamily {
                    proto: "icmp",
                    family: 6,
                })
            }
            (Some(ip_proto::ICMPV6), Some(4)) => {
                return Err(RuleError::IcmpFamily {
                    proto: "icmpv6",
                    family: 4,
                })
            }
            _ => {}
        }
        for (keyword, range) in [(Keyword::Sport, self.sport), (Keyword::Dport, self.dport)] {
            let Some(range) = range else { continue };
            if range.lo > range.hi {
                return Err(RuleError::ReversedRange(format!(
                    "{}-{}",
                    range.lo, range.hi
                )));
            }
            if let Some(p) = self
                .proto
                .filter(|&p| p != ip_proto::TCP && p != ip_proto::UDP)
            {
                return Err(RuleError::PortsNeedTcpUdp {
                    keyword: keyword.word(),
                    proto: ProtoWord(p).to_string(),
                });
            }
        }
        if self.icmp_type.is_some()
            && !matches!(self.proto, Some(ip_proto::ICMP | ip_proto::ICMPV6))
        {
            return Err(RuleError::IcmpTypeNeedsIcmp(
                self.proto.map(|p| ProtoWord(p).to_string()),
            ));
        }
        if let Some(flags) = self.tcp_flags {
            if self.proto != Some(ip_proto::TCP) {
                return Err(RuleError::TcpFlagsNeedTcp(
                    self.proto.map(|p| ProtoWord(p).to_string()),
                ));
            }
            if flags.mask == 0 || flags.value & !flags.mask != 0 {
                return Err(RuleError::BadTcpFlagBits {
                    mask: flags.mask,
                    value: flags.value,
                });
            }
        }
        Ok(())
    }

    /// An action's parameters against the rule's matching parts.
    fn validate_action(&self, action: &Action, family: Option<u8>) -> Result<(), RuleError> {
        if self.verdict != Verdict::Allow {
            return Err(RuleError::ActionWithDrop);
        }
        let (to, matched, keyword) = match action {
            Action::Snat { to, port } | Action::Dnat { to, port } => {
                if port.is_some() && !matches!(self.proto, Some(ip_proto::TCP | ip_proto::UDP)) {
                    return Err(RuleError::PortNeedsTcpUdp {
                        action: action.word(),
                        proto: self.proto.map(|p| ProtoWord(p).to_string()),
                    });
                }
                if matches!(action, Action::Snat { .. }) {
                    (*to, self.src, "src")
                } else {
                    (*to, self.dst, "dst")
                }
            }
            Action::Mark {
                mark: 0,
                reroute: true,
            } => return Err(RuleError::RerouteMarkZero),
            Action::Mark { .. } => return Ok(()),
            Action::Redirect { dev, .. } => return parse_dev(dev).map(|_| ()),
        };
        check_network(to)?;
        if family.is_some_and(|f| f != family_of(to)) {
            return Err(RuleError::ActionFamily {
                action: action.word(),
                to: to.to_string(),
                family: family.unwrap_or(0),
            });
        }
        if to.prefix_len() != to.max_prefix_len() {
            // NETMAP: the host bits come from the packet, so the rule must
            // match a prefix of the same length on that side.
            match matched {
                Some(m) if m.prefix_len() == to.prefix_len() => {}
                _ => {
                    return Err(RuleError::PrefixMapping {
                        action: action.word(),
                        to: to.to_string(),
                        keyword,
                        len: to.prefix_len(),
                    })
                }
            }
        }
        Ok(())
    }

    /// `Some(4)`/`Some(6)` when the rule can only match packets of that
    /// family: it names addresses, or an ICMP type (`proto icmp` is IPv4,
    /// `icmpv6` IPv6). A plain `proto icmp` without `icmp-type` compares the
    /// protocol byte in either family, so it doesn't fix the family.
    pub fn family(&self) -> Option<u8> {
        if let Some(net) = self.src.or(self.dst) {
            return Some(family_of(net));
        }
        // A rule that writes an address takes that address's family.
        if let Some(f) = self.action.as_ref().and_then(Action::family) {
            return Some(f);
        }
        match (self.proto, self.icmp_type) {
            (Some(ip_proto::ICMP), Some(_)) => Some(4),
            (Some(ip_proto::ICMPV6), Some(_)) => Some(6),
            _ => None,
        }
    }

    /// The rule looks at the L4 header: ports, ICMP type or TCP flags.
    pub fn needs_l4(&self) -> bool {
        self.sport.is_some()
            || self.dport.is_some()
            || self.icmp_type.is_some()
            || self.tcp_flags.is_some()
    }
}

impl fmt::Display for RuleSpec {
    /// Canonical order; `priority` only when it isn't the default.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.priority != DEFAULT_PRIORITY {
            write!(f, "priority {} ", self.priority)?;
        }
        if let Some(src) = self.src {
            write!(f, "src {src} ")?;
        }
        if let Some(dst) = self.dst {
            write!(f, "dst {dst} ")?;
        }
        if let Some(proto) = self.proto {
            write!(f, "proto {} ", ProtoWord(proto))?;
        }
        if let Some(sport) = self.sport {
            write!(f, "sport {sport} ")?;
        }
        if let Some(dport) = self.dport {
            write!(f, "dport {dport} ")?;
        }
        if let Some(icmp_type) = self.icmp_type {
            write!(f, "icmp-type {icmp_type} ")?;
        }
        if let Some(flags) = self.tcp_flags {
            write!(f, "tcp-flags {flags} ")?;
        }
        match &self.action {
            Some(action) => write!(f, "{action}")?,
            None => f.write_str(self.verdict.as_str())?,
        }
        if self.log {
            f.write_str(" log")?;
        }
        Ok(())
    }
}

impl FromStr for RuleSpec {
    type Err = RuleError;

    fn from_str(s: &str) -> Result<Self, RuleError> {
        Self::parse(&s.split_whitespace().collect::<Vec<_>>())
    }
}

/// Parses a rules file: one rule per line, `#` to end of line is a comment,
/// blank lines are skipped. Errors name the 1-based line.
pub fn parse_rules_file(text: &str) -> Result<Vec<RuleSpec>, RuleError> {
    let mut rules = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let code = line.split('#').next().unwrap_or_default();
        let words: Vec<&str> = code.split_whitespace().collect();
        if words.is_empty() {
            continue;
        }
        let spec = RuleSpec::parse(&words).map_err(|error| RuleError::Line {
            line: index + 1,
            error: Box::new(error),
        })?;
        rules.push(spec);
    }
    Ok(rules)
}

/// A rule the user wrote wrong; each message names the offending word.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RuleError {
    #[error("unknown keyword `{0}`; expected priority, src, dst, proto, sport, dport, icmp-type, tcp-flags, then an action: allow, drop, snat, dnat, mark or redirect")]
    UnknownKeyword(String),
    #[error("missing value after `{0}`")]
    MissingValue(&'static str),
    #[error("`{0}` given twice")]
    Duplicate(&'static str),
    #[error("bad CIDR `{0}`: expected ADDRESS/LEN, e.g. 10.0.0.0/8 or fc00::/64")]
    BadCidr(String),
    #[error("bad CIDR `{given}`: host bits are set; did you mean {network}?")]
    HostBits { given: String, network: String },
    #[error("src `{src}` and dst `{dst}` are of different address families")]
    FamilyMismatch { src: String, dst: String },
    #[error("bad port `{0}`: expected a number 0-65535 or a range P-Q")]
    BadPort(String),
    #[error("port `{0}` out of range 0-65535")]
    PortOutOfRange(String),
    #[error("reversed port range `{0}`: write the lower port first")]
    ReversedRange(String),
    #[error("unknown protocol `{0}`: use tcp, udp, icmp, icmpv6 or a number 0-255")]
    UnknownProto(String),
    #[error("protocol `{0}` out of range 0-255")]
    ProtoOutOfRange(String),
    #[error("`{keyword}` needs proto tcp or udp (or no proto, meaning both), not {proto}")]
    PortsNeedTcpUdp {
        keyword: &'static str,
        proto: String,
    },
    #[error("`icmp-type` needs proto icmp or icmpv6{}", .0.as_ref().map(|p| format!(", not {p}")).unwrap_or_default())]
    IcmpTypeNeedsIcmp(Option<String>),
    #[error("bad icmp-type `{0}`: expected a number 0-255")]
    BadIcmpType(String),
    #[error("icmp-type `{0}` out of range 0-255")]
    IcmpTypeOutOfRange(String),
    #[error("proto {proto} does not fit the rule's IPv{family} addresses; use {}", if *.family == 6 { "icmpv6" } else { "icmp" })]
    IcmpFamily { proto: &'static str, family: u8 },
    #[error("`tcp-flags` needs proto tcp (or no proto){}", .0.as_ref().map(|p| format!(", not {p}")).unwrap_or_default())]
    TcpFlagsNeedTcp(Option<String>),
    #[error("unknown TCP flag `{flag}` in `{flags}`: use fin, syn, rst, psh, ack, urg, ece, cwr, each optionally prefixed with `!` (flag clear), separated by commas")]
    BadTcpFlag { flag: String, flags: String },
    #[error("TCP flag `{flag}` listed twice in `{flags}`")]
    DuplicateTcpFlag { flag: String, flags: String },
    #[error("bad TCP flags mask {mask:#04x} value {value:#04x}: the mask must be non-zero and cover the value")]
    BadTcpFlagBits { mask: u8, value: u8 },
    #[error("bad priority `{0}`: expected a number 0-4294967295")]
    BadPriority(String),
    #[error("bad verdict `{0}`: use allow or drop")]
    BadVerdict(String),
    #[error("missing action: end the rule with allow, drop, snat ADDR, dnat ADDR, mark N or redirect DEV")]
    MissingVerdict,
    #[error("`log` goes after the action, e.g. `drop log`")]
    LogBeforeVerdict,
    #[error("unexpected `{word}` after `{verdict}`: only `log` may follow the action; put keywords before it")]
    AfterVerdict { word: String, verdict: String },
    #[error("a rule with an action passes the packet on; it cannot also drop it")]
    ActionWithDrop,
    #[error("`port` after {action} needs proto tcp or udp{}", .proto.as_ref().map(|p| format!(", not {p}")).unwrap_or_default())]
    PortNeedsTcpUdp {
        action: &'static str,
        proto: Option<String>,
    },
    #[error("`port 0` after {0}: a translated port must be 1-65535")]
    PortZero(&'static str),
    #[error("{action} {to} is IPv{}, but the rule matches IPv{family}; an address translation keeps the family", if *.family == 4 { 6 } else { 4 })]
    ActionFamily {
        action: &'static str,
        to: String,
        family: u8,
    },
    #[error("{action} {to} maps a prefix (host bits kept): the rule needs `{keyword}` of the same length (/{len}) to map from")]
    PrefixMapping {
        action: &'static str,
        to: String,
        keyword: &'static str,
        len: u8,
    },
    #[error("`mark 0 reroute` cannot tell a rerouted packet from any unmarked one; use a mark of 1 or more")]
    RerouteMarkZero,
    #[error("bad mark `{0}`: expected a number 0-4294967295")]
    BadMark(String),
    #[error("bad device name `{0}`: 1-15 characters, no `/` or space")]
    BadDevice(String),
    #[error("unexpected `{0}` after `log`: the rule ends there")]
    AfterLog(String),
    #[error("line {line}: {error}")]
    Line { line: usize, error: Box<RuleError> },
}

#[cfg(test)]
#[path = "rule_tests.rs"]
mod tests;
