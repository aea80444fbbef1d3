//! The rule language of `lwt filter`: words parsed into a validated
//! [`RuleSpec`], printed back in canonical order, and rules files.
//!
//! ```text
//! [priority N] [src CIDR] [dst CIDR] [proto tcp|udp|icmp|icmpv6|NUM]
//! [sport P|P-Q] [dport P|P-Q] [icmp-type N] [tcp-flags FLAGS] allow|drop [log]
//! ```
//!
//! Keywords come in any order before the verdict, each at most once; `log`
//! may only follow the verdict. Example: `dst 10.0.0.3/32 proto tcp dport
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
    pub verdict: Verdict,
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
    Keyword::from_word(word).is_some() || Verdict::from_word(word).is_some() || word == "log"
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
                    verdict,
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
        let addr_family = self.src.or(self.dst).map(family_of);
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

    /// `Some(4)`/`Some(6)` when the rule can only match packets of that
    /// family: it names addresses, or an ICMP type (`proto icmp` is IPv4,
    /// `icmpv6` IPv6). A plain `proto icmp` without `icmp-type` compares the
    /// protocol byte in either family, so it doesn't fix the family.
    pub fn family(&self) -> Option<u8> {
        if let Some(net) = self.src.or(self.dst) {
            return Some(family_of(net));
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
        f.write_str(self.verdict.as_str())?;
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
    #[error("unknown keyword `{0}`; expected priority, src, dst, proto, sport, dport, icmp-type, tcp-flags, then allow or drop")]
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
    #[error("missing verdict: end the rule with allow or drop")]
    MissingVerdict,
    #[error("`log` goes after the verdict, e.g. `drop log`")]
    LogBeforeVerdict,
    #[error("unexpected `{word}` after `{verdict}`: only `log` may follow the verdict; put keywords before it")]
    AfterVerdict { word: String, verdict: Verdict },
    #[error("unexpected `{0}` after `log`: the rule ends there")]
    AfterLog(String),
    #[error("line {line}: {error}")]
    Line { line: usize, error: Box<RuleError> },
}

#[cfg(test)]
mod tests {
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
        let a =
            spec("priority 7 src 10.0.0.0/8 dst 10.1.0.0/16 proto udp sport 1-2 dport 53 allow");
        let b =
            spec("dport 53 proto udp sport 1-2 dst 10.1.0.0/16 priority 7 src 10.0.0.0/8 allow");
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
                let a =
                    std::net::Ipv6Addr::from(u128::from(rng.next()) << 64 | u128::from(rng.next()));
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
                "missing verdict: end the rule with allow or drop",
            ),
            ("", "missing verdict: end the rule with allow or drop"),
            ("dport", "missing value after `dport`"),
            ("dport drop", "missing value after `dport`"),
            ("src dst 10.0.0.0/8 drop", "missing value after `src`"),
            ("tcp-flags log", "missing value after `tcp-flags`"),
            ("log drop", "`log` goes after the verdict"),
            ("dport 80 log drop", "`log` goes after the verdict"),
            (
                "drop log now",
                "unexpected `now` after `log`: the rule ends there",
            ),
            ("drop log log", "unexpected `log` after `log`"),
            (
                "drop dport 80",
                "unexpected `dport` after `drop`: only `log` may follow the verdict",
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
        assert_eq!(e, Err("line 2: unknown keyword `dprt`; expected priority, src, dst, proto, sport, dport, icmp-type, tcp-flags, then allow or drop".into()));
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
}
