//! Outer header blocks for each tunnel type, built once in user space and
//! stored in the encapsulation map; the kernel patches only the per-packet
//! fields (see `lwtkit_common::encap`).
use std::{
    fmt,
    net::{IpAddr, Ipv6Addr},
    str::FromStr,
};

use lwtkit_common::encap::{flags, MAX_HEADER};
use serde::{Deserialize, Serialize};

pub use super::EncapError;

/// The tunnel types lwtkit builds headers for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TunnelType {
    Vxlan,
    Fou,
    Gue,
    Ipip,
    Sit,
    Ip6ip6,
    Ip4in6,
    Gre,
    Srv6,
}

impl TunnelType {
    pub const ALL: [TunnelType; 9] = [
        Self::Vxlan,
        Self::Fou,
        Self::Gue,
        Self::Ipip,
        Self::Sit,
        Self::Ip6ip6,
        Self::Ip4in6,
        Self::Gre,
        Self::Srv6,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vxlan => "vxlan",
            Self::Fou => "fou",
            Self::Gue => "gue",
            Self::Ipip => "ipip",
            Self::Sit => "sit",
            Self::Ip6ip6 => "ip6ip6",
            Self::Ip4in6 => "ip4in6",
            Self::Gre => "gre",
            Self::Srv6 => "srv6",
        }
    }
}

impl fmt::Display for TunnelType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TunnelType {
    type Err = EncapError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| EncapError::UnknownType(s.into()))
    }
}

/// ToS / traffic class of the outer header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tos {
    Inherit,
    Fixed(u8),
}

/// The DF bit of an IPv4 outer header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Df {
    /// Copied from an IPv4 inner packet; set for IPv6 inner packets (as
    /// the kernel's vxlan `df inherit` does).
    Inherit,
    Set,
    Unset,
}

impl Df {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inherit => "inherit",
            Self::Set => "set",
            Self::Unset => "unset",
        }
    }
}

impl FromStr for Df {
    type Err = EncapError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Inherit, Self::Set, Self::Unset]
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| EncapError::Invalid(format!("bad --df `{s}`: inherit, set or unset")))
    }
}

/// A MAC address as text (`02:00:00:00:00:01`), as `ip link` prints it.
mod mac_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(mac: &Option<[u8; 6]>, s: S) -> Result<S::Ok, S::Error> {
        match mac {
            Some(m) => s.serialize_str(&super::format_mac(m)),
            None => s.serialize_none(),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Text(String),
        Bytes([u8; 6]),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 6]>, D::Error> {
        match Option::<Either>::deserialize(d)? {
            None => Ok(None),
            Some(Either::Bytes(b)) => Ok(Some(b)),
            Some(Either::Text(t)) => super::parse_mac(&t)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// What `lwt encap add` describes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelSpec {
    #[serde(rename = "type")]
    pub kind: TunnelType,
    /// Outer destination (for srv6: the first segment when absent).
    pub remote: Option<IpAddr>,
    /// Outer source.
    pub local: IpAddr,
    pub vni: Option<u32>,
    pub port: Option<u16>,
    /// Written `aa:bb:cc:dd:ee:ff`; records from before hold six numbers.
    #[serde(with = "mac_text", default)]
    pub inner_dst_mac: Option<[u8; 6]>,
    pub segments: Vec<Ipv6Addr>,
    /// `None`: inherit the inner TTL.
    pub ttl: Option<u8>,
    pub tos: Tos,
    /// IPv4 outer DF; `None`: the type's default ([`TunnelType::default_df`]).
    #[serde(default)]
    pub df: Option<Df>,
    /// UDP over IPv6: send a zero UDP checksum (RFC 6935/6936) instead of
    /// computing it.
    #[serde(default)]
    pub udp6_zero_csum: bool,
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<[u8; 6], EncapError> {
    let parts: Vec<&str> = s.split(':').collect();
    let bad = || EncapError::Invalid(format!("bad MAC address `{s}`: expected aa:bb:cc:dd:ee:ff"));
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (m, p) in mac.iter_mut().zip(parts) {
        *m = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    Ok(mac)
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    let parts: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
    parts.join(":")
}

/// The header block, its length and the flags the kernel needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub bytes: Vec<u8>,
    pub flags: u16,
}

impl TunnelType {
    /// The tunnels with a UDP header (and so a destination port).
    pub fn is_udp(self) -> bool {
        matches!(self, Self::Vxlan | Self::Fou | Self::Gue)
    }

    /// The DF bit the kernel's own tunnel of this kind sets by default:
    /// ip_tunnel devices (ipip, sit, gre, and fou/gue, which are those with
    /// an encap) have `pmtudisc` on unless told otherwise (DF set); a vxlan
    /// device leaves DF clear (`df unset`).
    pub fn default_df(self) -> Df {
        match self {
            Self::Vxlan => Df::Unset,
            _ => Df::Set,
        }
    }

    /// `bpf_lwt_push_encap` refuses GSO packets under this outer protocol
    /// (IPIP 4, routing header 43): the program pushes with 0 and writes
    /// the real byte after the push.
    pub fn needs_proto_fixup(self) -> bool {
        matches!(self, Self::Ipip | Self::Ip4in6 | Self::Srv6)
    }

    /// The outer family the type needs: `Some(true)` IPv6, `Some(false)`
    /// IPv4, `None` either.
    pub fn outer_v6(self) -> Option<bool> {
        match self {
            Self::Ipip | Self::Sit => Some(false),
            Self::Ip6ip6 | Self::Ip4in6 | Self::Srv6 => Some(true),
            Self::Vxlan | Self::Fou | Self::Gue | Self::Gre => None,
        }
    }
}

impl TunnelSpec {
    /// Refuses what the tunnel type cannot carry or the header cannot hold:
    /// flags of other types, numbers out of range, and outer addresses that
    /// are not one host of the family the type needs. `local` is checked by
    /// [`TunnelSpec::validate_local`] (callers may fill it in later).
    pub fn validate(&self) -> Result<(), EncapError> {
        use crate::validate::{host_address, in_range};
        let kind = self.kind;
        let invalid = EncapError::Invalid;
        if let Some(vni) = self.vni {
            if kind != TunnelType::Vxlan {
                return Err(invalid(format!(
                    "--vni applies only to vxlan; {kind} has no VNI"
                )));
            }
            in_range("--vni", vni.into(), 0, (1 << 24) - 1).map_err(invalid)?;
        }
        if let Some(port) = self.port {
            if !kind.is_udp() {
                return Err(invalid(format!(
                    "--port applies only to the UDP tunnels vxlan, fou and gue; {kind} has no UDP header"
                )));
            }
            in_range("--port", port.into(), 1, 65535).map_err(invalid)?;
        }
        if self.inner_dst_mac.is_some() && kind != TunnelType::Vxlan {
            return Err(invalid(format!(
                "--inner-dst-mac applies only to vxlan; {kind} carries IP packets, not Ethernet frames"
            )));
        }
        if !self.segments.is_empty() && kind != TunnelType::Srv6 {
            return Err(invalid(format!(
                "--segments applies only to srv6; {kind} has no segment list"
            )));
        }
        for s in &self.segments {
            host_address("--segments", IpAddr::V6(*s)).map_err(invalid)?;
        }
        if let Some(ttl) = self.ttl {
            in_range("--ttl", ttl.into(), 1, 255).map_err(invalid)?;
        }
        if let Some(remote) = self.remote {
            host_address("--remote", remote).map_err(invalid)?;
        }
        if let (Some(_), Ok(remote)) = (self.df, self.outer_dst()) {
            if remote.is_ipv6() {
                return Err(invalid(format!(
                    "--df applies only to IPv4 outer headers; {remote} is IPv6 (IPv6 has no DF bit: routers never fragment)"
                )));
            }
        }
        if self.udp6_zero_csum {
            if !kind.is_udp() {
                return Err(invalid(format!(
                    "--udp6-zero-csum applies only to the UDP tunnels vxlan, fou and gue; {kind} has no UDP header"
                )));
            }
            if let Ok(remote) = self.outer_dst() {
                if remote.is_ipv4() {
                    return Err(invalid(format!(
                        "--udp6-zero-csum applies only to IPv6 outer headers; over IPv4 ({remote}) the UDP checksum is 0 already"
                    )));
                }
            }
        }
        if let (Some(want_v6), Ok(remote)) = (kind.outer_v6(), self.outer_dst()) {
            if remote.is_ipv6() != want_v6 {
                return Err(EncapError::OuterFamily {
                    kind,
                    want: if want_v6 { 6 } else { 4 },
                    remote,
                });
            }
        }
        if let (Some(remote), TunnelType::Srv6, Some(first)) =
            (self.remote, kind, self.segments.first())
        {
            if remote != IpAddr::V6(*first) {
                return Err(invalid(format!(
                    "--remote {remote} is not the first segment {first}: an SRv6 packet goes to its first segment \
                     (leave --remote out, or put {remote} first in --segments)"
                )));
            }
        }
        Ok(())
    }

    /// Refuses a `local` (outer source) that is not one host.
    pub fn validate_local(&self) -> Result<(), EncapError> {
        crate::validate::host_address("--local", self.local).map_err(EncapError::Invalid)
    }

    /// The outer destination: `--remote`, or the first SRv6 segment.
    pub fn outer_dst(&self) -> Result<IpAddr, EncapError> {
        match (self.remote, self.kind, self.segments.first()) {
            (Some(r), _, _) => Ok(r),
            (None, TunnelType::Srv6, Some(s)) => Ok(IpAddr::V6(*s)),
            (None, TunnelType::Srv6, None) => {
                Err(EncapError::Invalid("srv6 needs --segments".into()))
            }
            (None, k, _) => Err(EncapError::Invalid(format!("{k} needs --remote"))),
        }
    }

    /// Builds the outer header block for packets of the prefix's family.
    pub fn header(&self, inner_v6: bool) -> Result<Header, EncapError> {
        use TunnelType::*;
        self.validate()?;
        self.validate_local()?;
        let remote = self.outer_dst()?;
        if remote.is_ipv4() != self.local.is_ipv4() {
            return Err(EncapError::Families {
                local: self.local,
                remote,
            });
        }
        let outer_v6 = remote.is_ipv6();
        let inner_name = |v6: bool| if v6 { "IPv6" } else { "IPv4" };
        let need_inner = |want_v6: bool| {
            if inner_v6 == want_v6 {
                Ok(())
            } else {
                Err(EncapError::InnerFamily {
                    kind: self.kind,
                    inner: inner_name(want_v6),
                    prefix: inner_name(inner_v6),
                })
            }
        };
        let need_outer = |want_v6: bool| {
            if outer_v6 == want_v6 {
                Ok(())
            } else {
                Err(EncapError::OuterFamily {
                    kind: self.kind,
                    want: if want_v6 { 6 } else { 4 },
                    remote,
                })
            }
        };
        let inner_proto: u8 = if inner_v6 { 41 } else { 4 };
        let ethertype: [u8; 2] = if inner_v6 { [0x86, 0xdd] } else { [0x08, 0x00] };
        // (L4 protocol of the outer header, the bytes after it, UDP?)
        let (proto, rest, udp): (u8, Vec<u8>, bool) = match self.kind {
            Ipip => {
                need_inner(false)?;
                need_outer(false)?;
                (4, vec![], false)
            }
            Sit => {
                need_inner(true)?;
                need_outer(false)?;
                (41, vec![], false)
            }
            Ip6ip6 => {
                need_inner(true)?;
                need_outer(true)?;
                (41, vec![], false)
            }
            Ip4in6 => {
                need_inner(false)?;
                need_outer(true)?;
                (4, vec![], false)
            }
            Gre => (47, vec![0, 0, ethertype[0], ethertype[1]], false),
            Fou => {
                let port = self.port.ok_or_else(|| {
                    EncapError::Invalid("fou needs --port (the peer's FOU port)".into())
                })?;
                (17, udp_header(port), true)
            }
            Gue => {
                let port = self.port.ok_or_else(|| {
                    EncapError::Invalid("gue needs --port (the peer's GUE port)".into())
                })?;
                let mut r = udp_header(port);
                // Variant 0, no options: version 0, C 0, hlen 0, proto = inner.
                r.extend_from_slice(&[0, inner_proto, 0, 0]);
                (17, r, true)
            }
            Vxlan => {
                let vni = self
                    .vni
                    .ok_or_else(|| EncapError::Invalid("vxlan needs --vni".into()))?;
                let mac = self.inner_dst_mac.ok_or_else(|| {
                    EncapError::Invalid(
                        "vxlan needs --inner-dst-mac (the MAC of the peer's vxlan device)".into(),
                    )
                })?;
                let mut r = udp_header(self.port.unwrap_or(4789));
                let v = vni.to_be_bytes();
                r.extend_from_slice(&[0x08, 0, 0, 0, v[1], v[2], v[3], 0]);
                r.extend_from_slice(&mac);
                // A locally administered source MAC naming the VNI.
                r.extend_from_slice(&[0x02, 0x4c, 0x57, v[1], v[2], v[3]]);
                r.extend_from_slice(&ethertype);
                (17, r, true)
            }
            Srv6 => {
                need_outer(true)?;
                if self.segments.is_empty() {
                    return Err(EncapError::Invalid("srv6 needs --segments".into()));
                }
                let n = self.segments.len();
                let mut r = vec![
                    inner_proto,
                    (2 * n) as u8,
                    4,
                    (n - 1) as u8,
                    (n - 1) as u8,
                    0,
                    0,
                    0,
                ];
                // The SRH lists segments last first.
                for s in self.segments.iter().rev() {
                    r.extend_from_slice(&s.octets());
                }
                (43, r, false)
            }
        };
        let ttl = self.ttl.unwrap_or(64);
        let tos = match self.tos {
            Tos::Fixed(t) => t,
            Tos::Inherit => 0,
        };
        let mut bytes = match (remote, self.local) {
            (IpAddr::V4(dst), IpAddr::V4(src)) => {
                let df = if self.df.unwrap_or(self.kind.default_df()) == Df::Set {
                    0x40
                } else {
                    0
                };
                let mut h = vec![0x45, tos, 0, 0, 0, 0, df, 0, ttl, proto, 0, 0];
                h.extend_from_slice(&src.octets());
                h.extend_from_slice(&dst.octets());
                h
            }
            (IpAddr::V6(dst), IpAddr::V6(src)) => {
                let mut h = vec![0x60 | (tos >> 4), tos << 4, 0, 0, 0, 0, proto, ttl];
                h.extend_from_slice(&src.octets());
                h.extend_from_slice(&dst.octets());
                h
            }
            _ => {
                return Err(EncapError::Families {
                    local: self.local,
                    remote,
                })
            }
        };
        bytes.extend_from_slice(&rest);
        if bytes.len() > MAX_HEADER {
            return Err(EncapError::TooLong(bytes.len()));
        }
        let mut f = 0;
        if outer_v6 {
            f |= flags::OUTER_V6;
        }
        if udp {
            f |= flags::UDP;
        }
        if self.ttl.is_none() {
            f |= flags::TTL_INHERIT;
        }
        if self.tos == Tos::Inherit {
            f |= flags::TOS_INHERIT;
        }
        if !outer_v6 && self.df.unwrap_or(self.kind.default_df()) == Df::Inherit {
            f |= flags::DF_INHERIT;
        }
        if outer_v6 {
            f |= flags::FLOW_LABEL;
            if udp && !self.udp6_zero_csum {
                f |= flags::UDP6_CSUM;
            }
        }
        if self.kind.needs_proto_fixup() {
            f |= flags::PROTO_FIXUP;
        }
        Ok(Header { bytes, flags: f })
    }
}

/// A UDP header to `port`; source port, length and (over IPv6, unless
/// `--udp6-zero-csum`) the checksum are filled per packet; over IPv4 the
/// checksum stays 0 (RFC 768), as a kernel vxlan device sends by default.
fn udp_header(port: u16) -> Vec<u8> {
    let p = port.to_be_bytes();
    vec![0, 0, p[0], p[1], 0, 0, 0, 0]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: TunnelType, local: &str, remote: &str) -> TunnelSpec {
        TunnelSpec {
            kind,
            remote: Some(remote.parse().expect("ip")),
            local: local.parse().expect("ip"),
            vni: None,
            port: None,
            inner_dst_mac: None,
            segments: vec![],
            ttl: None,
            tos: Tos::Inherit,
            df: None,
            udp6_zero_csum: false,
        }
    }

    #[test]
    fn macs_are_written_as_text_and_old_records_still_load() {
        let mut s = spec(TunnelType::Vxlan, "192.0.2.1", "192.0.2.2");
        s.inner_dst_mac = Some([0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]);
        let text = serde_json::to_value(&s).expect("serializes");
        assert_eq!(text["inner_dst_mac"], "aa:bb:cc:dd:ee:ff");
        let back: TunnelSpec = serde_json::from_value(text).expect("reads back");
        assert_eq!(back, s);
        let mut old = serde_json::to_value(&s).expect("serializes");
        old["inner_dst_mac"] = serde_json::json!([170, 187, 204, 221, 238, 255]);
        let old: TunnelSpec = serde_json::from_value(old).expect("records from before load");
        assert_eq!(old.inner_dst_mac, s.inner_dst_mac);
    }

    #[test]
    fn vxlan_header_is_ip_udp_vxlan_ethernet() {
        let mut s = spec(TunnelType::Vxlan, "192.0.2.1", "192.0.2.2");
        s.vni = Some(0x123456);
        s.inner_dst_mac = Some([0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]);
        let h = s.header(false).expect("builds");
        assert_eq!(h.bytes.len(), 20 + 8 + 8 + 14);
        assert_eq!(h.bytes[9], 17);
        assert_eq!(&h.bytes[12..20], &[192, 0, 2, 1, 192, 0, 2, 2]);
        assert_eq!(&h.bytes[22..24], &4789u16.to_be_bytes());
        assert_eq!(&h.bytes[28..36], &[0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0]);
        assert_eq!(&h.bytes[36..42], &[0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]);
        assert_eq!(&h.bytes[48..50], &[0x08, 0x00]);
        assert_eq!(
            h.flags,
            flags::UDP | flags::TTL_INHERIT | flags::TOS_INHERIT
        );
    }

    #[test]
    fn guard_rails_name_the_problem() {
        let s = spec(TunnelType::Vxlan, "192.0.2.1", "192.0.2.2");
        assert!(s
            .header(false)
            .expect_err("no vni")
            .to_string()
            .contains("--vni"));
        let s = spec(TunnelType::Ipip, "192.0.2.1", "192.0.2.2");
        assert!(matches!(
            s.header(true),
            Err(EncapError::InnerFamily { .. })
        ));
        let s = spec(TunnelType::Ip6ip6, "192.0.2.1", "192.0.2.2");
        assert!(matches!(
            s.header(true),
            Err(EncapError::OuterFamily { .. })
        ));
        let s = spec(TunnelType::Gre, "192.0.2.1", "2001:db8::1");
        assert!(matches!(s.header(false), Err(EncapError::Families { .. })));
        assert!("nvgre".parse::<TunnelType>().is_err());
        assert!(parse_mac("aa:bb:cc:dd:ee").is_err());
    }

    #[test]
    fn flags_of_other_tunnel_types_are_refused() {
        let refused = |s: &TunnelSpec, needle: &str| {
            let err = s.validate().expect_err(needle).to_string();
            assert!(err.contains(needle), "expected `{needle}` in: {err}");
        };
        let mut s = spec(TunnelType::Gue, "192.0.2.1", "192.0.2.2");
        s.vni = Some(7);
        refused(&s, "--vni applies only to vxlan");
        let mut s = spec(TunnelType::Ipip, "192.0.2.1", "192.0.2.2");
        s.port = Some(5555);
        refused(&s, "--port applies only to the UDP tunnels");
        let mut s = spec(TunnelType::Gre, "192.0.2.1", "192.0.2.2");
        s.inner_dst_mac = Some([2, 0, 0, 0, 0, 1]);
        refused(&s, "--inner-dst-mac applies only to vxlan");
        let mut s = spec(TunnelType::Ip6ip6, "2001:db8::1", "2001:db8::2");
        s.segments = vec!["fc00::1".parse().expect("ip")];
        refused(&s, "--segments applies only to srv6");
        for kind in [TunnelType::Vxlan, TunnelType::Fou, TunnelType::Gue] {
            let mut s = spec(kind, "192.0.2.1", "192.0.2.2");
            s.port = Some(6080);
            assert_eq!(s.validate(), Ok(()), "{kind} takes --port");
        }
    }

    #[test]
    fn numbers_out_of_range_name_the_flag_and_range() {
        let mut s = spec(TunnelType::Fou, "192.0.2.1", "192.0.2.2");
        s.port = Some(0);
        assert_eq!(
            s.validate(),
            Err(EncapError::Invalid(
                "--port 0 is out of range 1-65535".into()
            ))
        );
        let mut s = spec(TunnelType::Vxlan, "192.0.2.1", "192.0.2.2");
        s.vni = Some(1 << 24);
        assert_eq!(
            s.validate(),
            Err(EncapError::Invalid(
                "--vni 16777216 is out of range 0-16777215".into()
            ))
        );
        s.vni = Some((1 << 24) - 1);
        assert_eq!(s.validate(), Ok(()));
        let mut s = spec(TunnelType::Gre, "192.0.2.1", "192.0.2.2");
        s.ttl = Some(0);
        assert_eq!(
            s.validate(),
            Err(EncapError::Invalid("--ttl 0 is out of range 1-255".into()))
        );
    }

    #[test]
    fn outer_addresses_must_be_one_host_of_the_right_family() {
        for remote in ["0.0.0.0", "224.0.0.5", "255.255.255.255"] {
            let s = spec(TunnelType::Gre, "192.0.2.1", remote);
            let err = s.validate().expect_err(remote).to_string();
            assert!(err.contains("--remote") && err.contains(remote), "{err}");
        }
        let s = spec(TunnelType::Gre, "0.0.0.0", "192.0.2.2");
        assert_eq!(s.validate(), Ok(()), "local is checked on its own");
        assert!(s
            .validate_local()
            .expect_err("unspecified")
            .to_string()
            .contains("--local 0.0.0.0"));
        assert!(s.header(false).is_err(), "header() checks local too");
        let mut s = spec(TunnelType::Srv6, "2001:db8::1", "2001:db8::2");
        s.segments = vec!["ff02::1".parse().expect("ip")];
        assert!(s
            .validate()
            .expect_err("multicast")
            .to_string()
            .contains("--segments ff02::1 is a multicast address"));
        let s = spec(TunnelType::Sit, "2001:db8::1", "2001:db8::2");
        assert!(matches!(
            s.validate(),
            Err(EncapError::OuterFamily { want: 4, .. })
        ));
    }

    #[test]
    fn srv6_header_lists_segments_last_first() {
        let mut s = spec(TunnelType::Srv6, "2001:db8::1", "2001:db8::1");
        s.remote = None;
        s.segments = vec![
            "fc00::1".parse().expect("ip"),
            "fc00::2".parse().expect("ip"),
        ];
        let h = s.header(false).expect("builds");
        assert_eq!(h.bytes.len(), 40 + 8 + 32);
        assert_eq!(h.bytes[6], 43);
        assert_eq!(
            &h.bytes[24..40],
            &"fc00::1".parse::<Ipv6Addr>().expect("ip").octets()
        );
        assert_eq!(&h.bytes[40..44], &[4, 4, 4, 1]);
        assert_eq!(
            &h.bytes[48..64],
            &"fc00::2".parse::<Ipv6Addr>().expect("ip").octets()
        );
        assert_eq!(h.flags & flags::OUTER_V6, flags::OUTER_V6);
    }

    #[test]
    fn gre_and_gue_carry_the_inner_protocol() {
        let g = spec(TunnelType::Gre, "192.0.2.1", "192.0.2.2")
            .header(true)
            .expect("builds");
        assert_eq!(&g.bytes[20..24], &[0, 0, 0x86, 0xdd]);
        let mut u = spec(TunnelType::Gue, "192.0.2.1", "192.0.2.2");
        u.port = Some(6080);
        let u = u.header(false).expect("builds");
        assert_eq!(&u.bytes[28..32], &[0, 4, 0, 0]);
        let mut f = spec(TunnelType::Fou, "192.0.2.1", "192.0.2.2");
        assert!(f.header(false).is_err(), "fou needs a port");
        f.port = Some(5555);
        assert_eq!(f.header(false).expect("builds").bytes.len(), 28);
    }
}
