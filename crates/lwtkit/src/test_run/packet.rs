//! Packets for `lwt test`: built from a one-line spec, read from a pcap,
//! written to one, and summed up field by field to show what a program
//! changed.
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

use serde::Serialize;

use super::TestRunError;

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const ICMPV6: u8 = 58;

/// Parses `tcp 10.0.0.2:40000 > 10.0.0.3:8080 flags S`, `udp
/// [fd00::2]:5000 > [fd00::3]:53 len 100` or `icmp 10.0.0.2 > 10.0.0.3`
/// into an L3 packet with valid checksums. `len` is the whole IP packet's
/// length (as `lwt events` and `lwt trace` print it), padded with zeros.
pub fn from_spec(spec: &str) -> Result<Vec<u8>, TestRunError> {
    let bad = |why: &str| TestRunError::PacketSpec {
        spec: spec.into(),
        reason: why.into(),
    };
    let words: Vec<&str> = spec.split_whitespace().collect();
    let [proto, src, arrow, dst, rest @ ..] = words.as_slice() else {
        return Err(bad("expected PROTO SRC > DST [flags F] [len N] [ttl N]"));
    };
    if *arrow != ">" {
        return Err(bad("expected `>` between source and destination"));
    }
    let proto = match *proto {
        "tcp" => TCP,
        "udp" => UDP,
        "icmp" | "icmp6" | "icmpv6" => ICMP,
        other => return Err(bad(&format!("unknown protocol `{other}` (tcp, udp, icmp)"))),
    };
    let ported = proto != ICMP;
    let (src, sport) = endpoint(src, "source", ported).map_err(|e| bad(&e))?;
    let (dst, dport) = endpoint(dst, "destination", ported).map_err(|e| bad(&e))?;
    if src.is_ipv4() != dst.is_ipv4() {
        return Err(bad("source and destination are of different families"));
    }
    let mut flags = if proto == TCP { 0x02 } else { 0 };
    let mut len = None;
    let mut ttl = 64u8;
    let mut it = rest.iter();
    while let Some(key) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| bad(&format!("`{key}` needs a value")))?;
        match *key {
            "flags" if proto == TCP => flags = tcp_flags(value).map_err(|e| bad(&e))?,
            "len" => {
                len = Some(
                    value
                        .parse::<usize>()
                        .map_err(|_| bad(&format!("len `{value}` is not a number")))?,
                )
            }
            "ttl" | "hlim" => {
                ttl = value
                    .parse()
                    .map_err(|_| bad(&format!("ttl `{value}` is not 0-255")))?
            }
            other => return Err(bad(&format!("unknown key `{other}` (flags, len, ttl)"))),
        }
    }
    let proto = if proto == ICMP && src.is_ipv6() {
        ICMPV6
    } else {
        proto
    };
    let mut l4 = match proto {
        TCP => {
            let mut h = vec![0u8; 20];
            h[0..2].copy_from_slice(&sport.to_be_bytes());
            h[2..4].copy_from_slice(&dport.to_be_bytes());
            h[4..8].copy_from_slice(&1u32.to_be_bytes());
            h[12] = 0x50;
            h[13] = flags;
            h[14..16].copy_from_slice(&64240u16.to_be_bytes());
            h
        }
        UDP => {
            let mut h = vec![0u8; 8];
            h[0..2].copy_from_slice(&sport.to_be_bytes());
            h[2..4].copy_from_slice(&dport.to_be_bytes());
            h
        }
        // Echo request, id 1, sequence 1.
        _ => vec![if proto == ICMP { 8 } else { 128 }, 0, 0, 0, 0, 1, 0, 1],
    };
    let ip_len = if src.is_ipv4() { 20 } else { 40 };
    let min = ip_len + l4.len();
    let total = len.unwrap_or(min);
    if total < min {
        return Err(bad(&format!(
            "len {total} is shorter than the headers ({min})"
        )));
    }
    if total > 65535 {
        return Err(bad("len is more than 65535"));
    }
    l4.resize(total - ip_len, 0);
    if proto == UDP {
        let n = l4.len() as u16;
        l4[4..6].copy_from_slice(&n.to_be_bytes());
    }
    let mut p = ip_header(src, dst, proto, ttl, l4.len());
    let sum_at = match proto {
        TCP => 16,
        UDP => 6,
        _ => 2,
    };
    let pseudo = if proto == ICMP {
        0
    } else {
        pseudo_sum(src, dst, proto, l4.len())
    };
    let mut c = !fold(pseudo + sum(&l4));
    if proto == UDP && c == 0 {
        c = 0xffff;
    }
    l4[sum_at..sum_at + 2].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&l4);
    Ok(p)
}

/// `ADDR:PORT` (IPv6: `[ADDR]:PORT`), or a bare address when the protocol
/// has no ports; `role` (source, destination) names the side in errors.
fn endpoint(s: &str, role: &str, ported: bool) -> Result<(IpAddr, u16), String> {
    let addr = |a: &str| -> Result<IpAddr, String> {
        a.trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| format!("{role} `{a}` is not an address"))
    };
    if !ported {
        return Ok((addr(s)?, 0));
    }
    let form = || format!("{role} `{s}` is not ADDR:PORT (IPv6: [ADDR]:PORT)");
    let (a, port) = s.rsplit_once(':').ok_or_else(form)?;
    // A bare IPv6 address has colons of its own: it needs the brackets.
    if a.contains(':') && !(a.starts_with('[') && a.ends_with(']')) {
        return Err(form());
    }
    let port = match port.parse::<u32>() {
        Ok(p) => u16::try_from(p)
            .map_err(|_| format!("{role} port `{port}` is out of range (0-65535)"))?,
        Err(_) => return Err(format!("{role} port `{port}` is not a number (0-65535)")),
    };
    Ok((addr(a)?, port))
}

/// `S`, `SA`, `FA`, `R`, `PA`: tcpdump's letters (`.` is ACK too).
fn tcp_flags(s: &str) -> Result<u8, String> {
    s.chars().try_fold(0u8, |acc, c| {
        let bit = match c.to_ascii_uppercase() {
            'F' => 0x01,
            'S' => 0x02,
            'R' => 0x04,
            'P' => 0x08,
            'A' | '.' => 0x10,
            'U' => 0x20,
            'E' => 0x40,
            'W' | 'C' => 0x80,
            _ => return Err(format!("unknown TCP flag `{c}` (F S R P A U E W)")),
        };
        Ok(acc | bit)
    })
}

fn ip_header(src: IpAddr, dst: IpAddr, proto: u8, ttl: u8, l4_len: usize) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut h = vec![0u8; 20];
            h[0] = 0x45;
            h[2..4].copy_from_slice(&((20 + l4_len) as u16).to_be_bytes());
            h[6] = 0x40; // DF
            h[8] = ttl;
            h[9] = proto;
            h[12..16].copy_from_slice(&s.octets());
            h[16..20].copy_from_slice(&d.octets());
            let c = !fold(sum(&h));
            h[10..12].copy_from_slice(&c.to_be_bytes());
            h
        }
        (s, d) => {
            let mut h = vec![0u8; 40];
            h[0] = 0x60;
            h[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            h[6] = proto;
            h[7] = ttl;
            h[8..24].copy_from_slice(&v6(s).octets());
            h[24..40].copy_from_slice(&v6(d).octets());
            h
        }
    }
}

fn v6(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V6(a) => a,
        IpAddr::V4(a) => a.to_ipv6_mapped(),
    }
}

fn sum(b: &[u8]) -> u32 {
    b.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

fn pseudo_sum(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u32 {
    let addrs = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => [s.octets().to_vec(), d.octets().to_vec()].concat(),
        (s, d) => [v6(s).octets().to_vec(), v6(d).octets().to_vec()].concat(),
    };
    sum(&addrs) + u32::from(proto) + len as u32
}

/// The L3 packets of a pcap file: Ethernet (the 14-byte header, and VLAN
/// tags, are taken off), Linux cooked (SLL) or raw IP link types.
pub fn read_pcap(path: &Path) -> Result<Vec<Vec<u8>>, TestRunError> {
    let err = |reason: String| TestRunError::Pcap {
        path: path.into(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let mut reader = pcap_file::pcap::PcapReader::new(file)
        .map_err(|e| err(format!("{e} (only pcap files are read, not pcapng)")))?;
    let link = reader.header().datalink;
    let mut out = Vec::new();
    while let Some(pkt) = reader.next_packet() {
        let pkt = pkt.map_err(|e| err(e.to_string()))?;
        let data = &pkt.data;
        let l3 = match link {
            pcap_file::DataLink::ETHERNET => strip_ethernet(data),
            pcap_file::DataLink::LINUX_SLL => data.get(16..),
            pcap_file::DataLink::RAW | pcap_file::DataLink::IPV4 | pcap_file::DataLink::IPV6 => {
                Some(&data[..])
            }
            other => {
                return Err(err(format!(
                    "link type {other:?} is not read (Ethernet, Linux cooked or raw IP)"
                )))
            }
        };
        match l3 {
            Some(l3) if matches!(l3.first().map(|b| b >> 4), Some(4 | 6)) => out.push(l3.to_vec()),
            _ => {
                return Err(err(format!(
                    "packet {} is not IPv4 or IPv6 (LWT programs see only IP packets)",
                    out.len() + 1
                )))
            }
        }
    }
    if out.is_empty() {
        return Err(err("holds no packets".into()));
    }
    Ok(out)
}

fn strip_ethernet(frame: &[u8]) -> Option<&[u8]> {
    let mut off = 12;
    loop {
        let ty = u16::from_be_bytes([*frame.get(off)?, *frame.get(off + 1)?]);
        match ty {
            0x8100 | 0x88a8 => off += 4,
            0x0800 | 0x86dd => return frame.get(off + 2..),
            _ => return None,
        }
    }
}

/// Writes L3 packets as a pcap of link type raw IP.
pub fn write_pcap(path: &Path, packets: &[&[u8]]) -> Result<(), TestRunError> {
    let err = |reason: String| TestRunError::Pcap {
        path: path.into(),
        reason,
    };
    let file = std::fs::File::create(path).map_err(|e| err(e.to_string()))?;
    let header = pcap_file::pcap::PcapHeader {
        datalink: pcap_file::DataLink::RAW,
        ..Default::default()
    };
    let mut w =
        pcap_file::pcap::PcapWriter::with_header(file, header).map_err(|e| err(e.to_string()))?;
    for (i, p) in packets.iter().enumerate() {
        let ts = std::time::Duration::from_micros(i as u64);
        w.write_packet(&pcap_file::pcap::PcapPacket::new(ts, p.len() as u32, p))
            .map_err(|e| err(e.to_string()))?;
    }
    Ok(())
}

/// What a packet's headers say, for display and for diffs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub proto: String,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub len: usize,
    #[serde(skip)]
    fields: Vec<(&'static str, String)>,
}

impl Summary {
    /// Reads an L3 packet; whatever is missing or malformed stays unset.
    pub fn of(l3: &[u8]) -> Self {
        let mut s = Summary {
            proto: "?".into(),
            len: l3.len(),
            ..Default::default()
        };
        let (proto, l4) = match l3.first().map(|b| b >> 4) {
            Some(4) if l3.len() >= 20 => {
                let ihl = usize::from(l3[0] & 0xf) * 4;
                s.src = Some(Ipv4Addr::new(l3[12], l3[13], l3[14], l3[15]).into());
                s.dst = Some(Ipv4Addr::new(l3[16], l3[17], l3[18], l3[19]).into());
                s.fields.push(("version", "4".into()));
                s.fields.push(("tos", format!("{:#04x}", l3[1])));
                s.fields.push(("ip.len", be(l3, 2).to_string()));
                s.fields.push(("ip.id", be(l3, 4).to_string()));
                s.fields.push(("ip.frag", format!("{:#06x}", be(l3, 6))));
                s.fields.push(("ttl", l3[8].to_string()));
                s.fields.push(("ip.csum", format!("{:#06x}", be(l3, 10))));
                (l3[9], l3.get(ihl..).unwrap_or_default())
            }
            Some(6) if l3.len() >= 40 => {
                let a = |o: usize| {
                    let mut b = [0u8; 16];
                    b.copy_from_slice(&l3[o..o + 16]);
                    Ipv6Addr::from(b)
                };
                s.src = Some(a(8).into());
                s.dst = Some(a(24).into());
                s.fields.push(("version", "6".into()));
                s.fields.push((
                    "tclass/flow",
                    format!("{:#010x}", u32::from_be_bytes([l3[0], l3[1], l3[2], l3[3]])),
                ));
                s.fields.push(("ip.len", be(l3, 4).to_string()));
                s.fields.push(("hlim", l3[7].to_string()));
                (l3[6], &l3[40..])
            }
            _ => return s,
        };
        s.fields.push(("proto", proto.to_string()));
        s.proto = match proto {
            TCP => "tcp".into(),
            UDP => "udp".into(),
            ICMP => "icmp".into(),
            ICMPV6 => "icmp6".into(),
            4 => "ipip".into(),
            41 => "ipv6".into(),
            47 => "gre".into(),
            43 => "ipv6-route".into(),
            n => n.to_string(),
        };
        if matches!(proto, TCP | UDP) && l4.len() >= 4 {
            s.sport = Some(be(l4, 0));
            s.dport = Some(be(l4, 2));
        }
        match proto {
            TCP if l4.len() >= 20 => {
                s.fields.push(("tcp.flags", format!("{:#04x}", l4[13])));
                s.fields.push(("tcp.csum", format!("{:#06x}", be(l4, 16))));
            }
            UDP if l4.len() >= 8 => {
                s.fields.push(("udp.len", be(l4, 4).to_string()));
                s.fields.push(("udp.csum", format!("{:#06x}", be(l4, 6))));
            }
            _ => {}
        }
        if let Some(p) = s.sport {
            s.fields.push(("sport", p.to_string()));
        }
        if let Some(p) = s.dport {
            s.fields.push(("dport", p.to_string()));
        }
        if let (Some(a), Some(b)) = (s.src, s.dst) {
            s.fields.push(("src", a.to_string()));
            s.fields.push(("dst", b.to_string()));
        }
        s
    }

    /// `tcp 10.0.0.2:40000 > 10.0.0.3:8080 len 40`
    pub fn line(&self) -> String {
        let ep = |a: Option<IpAddr>, p: Option<u16>| match (a, p) {
            (Some(IpAddr::V6(a)), Some(p)) => format!("[{a}]:{p}"),
            (Some(a), Some(p)) => format!("{a}:{p}"),
            (Some(a), None) => a.to_string(),
            (None, _) => "?".into(),
        };
        format!(
            "{} {} > {} len {}",
            self.proto,
            ep(self.src, self.sport),
            ep(self.dst, self.dport),
            self.len
        )
    }
}

fn be(b: &[u8], o: usize) -> u16 {
    u16::from_be_bytes([b[o], b[o + 1]])
}

/// One field a program changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    pub field: String,
    pub before: String,
    pub after: String,
}

/// The header fields that differ between `before` and `after`, then the
/// length, then (same length, same headers) how many payload bytes moved.
pub fn diff(before: &[u8], after: &[u8]) -> Vec<Change> {
    let (a, b) = (Summary::of(before), Summary::of(after));
    let mut out = Vec::new();
    for (name, old) in &a.fields {
        let new = b
            .fields
            .iter()
            .find(|(n, _)| n == name)
            .map_or("-", |(_, v)| v.as_str());
        if old != new {
            out.push(Change {
                field: (*name).into(),
                before: old.clone(),
                after: new.into(),
            });
        }
    }
    for (name, new) in &b.fields {
        if !a.fields.iter().any(|(n, _)| n == name) {
            out.push(Change {
                field: (*name).into(),
                before: "-".into(),
                after: new.clone(),
            });
        }
    }
    if before.len() != after.len() {
        out.push(Change {
            field: "len".into(),
            before: before.len().to_string(),
            after: after.len().to_string(),
        });
    } else if out.is_empty() && before != after {
        let n = before.iter().zip(after).filter(|(x, y)| x != y).count();
        out.push(Change {
            field: "bytes".into(),
            before: format!("{n} byte(s) differ"),
            after: format!(
                "first at offset {}",
                before
                    .iter()
                    .zip(after)
                    .position(|(x, y)| x != y)
                    .unwrap_or(0)
            ),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_spec_builds_a_syn_with_valid_checksums() {
        let p = from_spec("tcp 10.0.0.2:40000 > 10.0.0.3:8080 flags S").expect("valid");
        assert_eq!(p.len(), 40);
        assert_eq!(fold(sum(&p[..20])), 0xffff, "IPv4 header checksum");
        let l4 = &p[20..];
        assert_eq!(
            fold(
                pseudo_sum(
                    "10.0.0.2".parse().expect("ip"),
                    "10.0.0.3".parse().expect("ip"),
                    TCP,
                    l4.len()
                ) + sum(l4)
            ),
            0xffff,
            "TCP checksum"
        );
        let s = Summary::of(&p);
        assert_eq!(s.line(), "tcp 10.0.0.2:40000 > 10.0.0.3:8080 len 40");
        assert_eq!(p[33], 0x02);
    }

    #[test]
    fn udp6_spec_with_len_is_padded_to_that_length() {
        let p = from_spec("udp [fd00::2]:5000 > [fd00::3]:53 len 100").expect("valid");
        assert_eq!(p.len(), 100);
        assert_eq!(p[0] >> 4, 6);
        assert_eq!(be(&p, 4), 60);
        assert_eq!(be(&p, 44), 60, "udp length");
        assert_eq!(
            Summary::of(&p).line(),
            "udp [fd00::2]:5000 > [fd00::3]:53 len 100"
        );
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        for (spec, want) in [
            ("tcp 10.0.0.2:1 10.0.0.3:2", "expected"),
            ("sctp 10.0.0.2:1 > 10.0.0.3:2", "unknown protocol"),
            ("tcp 10.0.0.2 > 10.0.0.3:2", "ADDR:PORT"),
            ("udp 10.0.0.2:1 > [fd00::3]:2", "different families"),
            ("tcp 10.0.0.2:1 > 10.0.0.3:2 flags SZ", "unknown TCP flag"),
            ("udp 10.0.0.2:1 > 10.0.0.3:2 len 10", "shorter"),
            ("udp 10.0.0.2:1 > 10.0.0.3:2 color red", "unknown key"),
            (
                "udp 10.0.0.2:1 > 10.0.0.3:99999",
                "destination port `99999` is out of range (0-65535)",
            ),
            (
                "tcp 10.0.0.2:http > 10.0.0.3:80",
                "source port `http` is not a number",
            ),
            ("udp fd00::2:1 > [fd00::3]:2", "[ADDR]:PORT"),
            ("udp [fd00::zz]:1 > [fd00::3]:2", "source `[fd00::zz]`"),
        ] {
            let e = from_spec(spec).expect_err(spec).to_string();
            assert!(e.contains(want), "{spec}: {e}");
        }
    }

    #[test]
    fn diff_names_the_rewritten_fields() {
        let a = from_spec("tcp 10.0.0.2:40000 > 10.0.0.3:8080").expect("valid");
        let mut b = a.clone();
        b[22..24].copy_from_slice(&8081u16.to_be_bytes());
        b[8] = 63;
        let d = diff(&a, &b);
        let fields: Vec<&str> = d.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["ttl", "dport"], "{d:?}");
        assert_eq!(d[1].before, "8080");
        assert_eq!(d[1].after, "8081");
        assert!(diff(&a, &a).is_empty());
    }

    #[test]
    fn pcap_round_trips_and_ethernet_is_stripped() {
        let dir = std::env::temp_dir().join(format!("lwtkit-pcap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let a = from_spec("tcp 10.0.0.2:1 > 10.0.0.3:8080").expect("valid");
        let b = from_spec("udp [fd00::2]:1 > [fd00::3]:53").expect("valid");
        let raw = dir.join("raw.pcap");
        write_pcap(&raw, &[&a, &b]).expect("write");
        assert_eq!(read_pcap(&raw).expect("read"), vec![a.clone(), b.clone()]);
        let eth = dir.join("eth.pcap");
        let file = std::fs::File::create(&eth).expect("create");
        let header = pcap_file::pcap::PcapHeader {
            datalink: pcap_file::DataLink::ETHERNET,
            ..Default::default()
        };
        let mut w = pcap_file::pcap::PcapWriter::with_header(file, header).expect("w");
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x81, 0x00, 0, 1, 0x08, 0x00]);
        frame.extend_from_slice(&a);
        w.write_packet(&pcap_file::pcap::PcapPacket::new(
            std::time::Duration::ZERO,
            frame.len() as u32,
            &frame,
        ))
        .expect("packet");
        drop(w);
        assert_eq!(read_pcap(&eth).expect("read"), vec![a]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
