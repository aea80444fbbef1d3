//! A policy's rules on disk: a compact binary file beside the policy's
//! JSON record, written once per change (atomic rename) under a new
//! version and named by the record, so the record and the intent of a
//! change stay small whatever the number of rules.
//!
//! Changes of one rule append a 64-byte entry to the journal of that
//! version instead (`<name>.journal.<version>`, the record says how many
//! entries count), so `rule add` and `rule del` write a constant amount
//! whatever the policy's size; `replace`, growth and a long journal write
//! a new version.
//!
//! Layout (little endian): the magic `LWTR`, format version, rule count,
//! carried-counter count; then one 64-byte entry per rule (id, counter
//! slot, priority, which parts are present, source and destination
//! prefixes, protocol, ICMP type, TCP flags, port ranges), followed, for
//! a rule with an action (format 2), by a 64-byte side entry with the
//! action's parameters (kind, flags, port, mark or ifindex, target prefix,
//! device name); then one 40-byte entry per carried counter (id, packets,
//! bytes, logged, suppressed). Format 1 files (no actions) load as before.
use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use ipnet::IpNet;

use super::{
    rule::{Action, PortRange, Rule, RuleSpec, TcpFlags, Verdict},
    store::RuleCounters,
};

const MAGIC: &[u8; 4] = b"LWTR";
/// Written: 2 (side entries for actions); read: 1 and 2.
const FORMAT: u32 = 2;
const HEADER: usize = 16;
const RULE: usize = 64;
const CARRIED: usize = 40;

const SRC: u32 = 1;
const DST: u32 = 1 << 1;
const PROTO: u32 = 1 << 2;
const SPORT: u32 = 1 << 3;
const DPORT: u32 = 1 << 4;
const ICMP: u32 = 1 << 5;
const FLAGS: u32 = 1 << 6;
const DROP: u32 = 1 << 7;
const LOG: u32 = 1 << 8;
/// The next 64-byte entry is this rule's action (format 2).
const ACTION: u32 = 1 << 9;

/// Side entry kinds.
const A_SNAT: u8 = 1;
const A_DNAT: u8 = 2;
const A_MARK: u8 = 3;
const A_REDIRECT: u8 = 4;
/// Side entry flags.
const A_PORT: u8 = 1;
const A_REROUTE: u8 = 2;
/// A journal entry that deletes the rule of its id.
const DELETE: u32 = 1 << 31;

/// What the file holds: rules, each rule's counter slot by id, and the
/// counters earlier generations carried, by id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RulesData {
    pub rules: Vec<Rule>,
    pub slots: BTreeMap<u32, u32>,
    pub carried: BTreeMap<u32, RuleCounters>,
}

fn put_prefix(out: &mut [u8], p: &IpNet) {
    match p.addr() {
        IpAddr::V4(a) => {
            out[0] = 4;
            out[2..6].copy_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            out[0] = 6;
            out[2..18].copy_from_slice(&a.octets());
        }
    }
    out[1] = p.prefix_len();
}

fn get_prefix(b: &[u8]) -> Option<IpNet> {
    let addr = match b[0] {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(&b[2..6]).ok()?)),
        6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&b[2..18]).ok()?)),
        _ => return None,
    };
    IpNet::new(addr, b[1]).ok()
}

/// Writes rule `r` with counter slot `slot` into a 64-byte entry.
fn put_rule(e: &mut [u8], r: &Rule, slot: u32) {
    let s = &r.spec;
    let mut flags = 0;
    e[0..4].copy_from_slice(&r.id.to_le_bytes());
    e[4..8].copy_from_slice(&slot.to_le_bytes());
    e[8..12].copy_from_slice(&s.priority.to_le_bytes());
    if let Some(p) = &s.src {
        flags |= SRC;
        put_prefix(&mut e[16..34], p);
    }
    if let Some(p) = &s.dst {
        flags |= DST;
        put_prefix(&mut e[34..52], p);
    }
    if let Some(p) = s.proto {
        flags |= PROTO;
        e[52] = p;
    }
    if let Some(t) = s.icmp_type {
        flags |= ICMP;
        e[53] = t;
    }
    if let Some(f) = s.tcp_flags {
        flags |= FLAGS;
        e[54] = f.mask;
        e[55] = f.value;
    }
    if let Some(p) = s.sport {
        flags |= SPORT;
        e[56..58].copy_from_slice(&p.lo.to_le_bytes());
        e[58..60].copy_from_slice(&p.hi.to_le_bytes());
    }
    if let Some(p) = s.dport {
        flags |= DPORT;
        e[60..62].copy_from_slice(&p.lo.to_le_bytes());
        e[62..64].copy_from_slice(&p.hi.to_le_bytes());
    }
    if s.verdict == Verdict::Drop {
        flags |= DROP;
    }
    if s.log {
        flags |= LOG;
    }
    if s.action.is_some() {
        flags |= ACTION;
    }
    e[12..16].copy_from_slice(&flags.to_le_bytes());
}

/// Bytes of rule `r`'s entries: 64, or 128 with an action's side entry.
fn entry_len(r: &Rule) -> usize {
    if r.spec.action.is_some() {
        2 * RULE
    } else {
        RULE
    }
}

/// Writes `a` into a 64-byte side entry.
fn put_action(e: &mut [u8], a: &Action) {
    match a {
        Action::Snat { to, port } | Action::Dnat { to, port } => {
            e[0] = if matches!(a, Action::Snat { .. }) {
                A_SNAT
            } else {
                A_DNAT
            };
            put_prefix(&mut e[8..26], to);
            if let Some(p) = port {
                e[1] |= A_PORT;
                e[2..4].copy_from_slice(&p.to_le_bytes());
            }
        }
        Action::Mark { mark, reroute } => {
            e[0] = A_MARK;
            if *reroute {
                e[1] |= A_REROUTE;
            }
            e[4..8].copy_from_slice(&mark.to_le_bytes());
        }
        Action::Redirect { dev, ifindex } => {
            e[0] = A_REDIRECT;
            e[4..8].copy_from_slice(&ifindex.to_le_bytes());
            let name = dev.as_bytes();
            let n = name.len().min(16);
            e[26] = n as u8;
            e[27..27 + n].copy_from_slice(&name[..n]);
        }
    }
}

/// Reads a side entry.
fn get_action(e: &[u8], id: u32) -> Result<Action, String> {
    let prefix = || get_prefix(&e[8..26]).ok_or_else(|| format!("rule {id}: a bad action address"));
    Ok(match e[0] {
        A_SNAT => Action::Snat {
            to: prefix()?,
            port: (e[1] & A_PORT != 0).then(|| u16_at(e, 2)),
        },
        A_DNAT => Action::Dnat {
            to: prefix()?,
            port: (e[1] & A_PORT != 0).then(|| u16_at(e, 2)),
        },
        A_MARK => Action::Mark {
            mark: u32_at(e, 4),
            reroute: e[1] & A_REROUTE != 0,
        },
        A_REDIRECT => {
            let n = usize::from(e[26]).min(16);
            Action::Redirect {
                dev: String::from_utf8(e[27..27 + n].to_vec())
                    .map_err(|_| format!("rule {id}: a bad device name"))?,
                ifindex: u32_at(e, 4),
            }
        }
        k => return Err(format!("rule {id}: unknown action kind {k}")),
    })
}

/// Writes rule `r` (and its action's side entry) at the start of `e`,
/// which holds [`entry_len`] bytes.
fn put_entries(e: &mut [u8], r: &Rule, slot: u32) {
    put_rule(&mut e[..RULE], r, slot);
    if let Some(a) = &r.spec.action {
        put_action(&mut e[RULE..2 * RULE], a);
    }
}

/// Reads the rule at the start of `b` and its side entry if it has one:
/// the rule, its counter slot and the bytes taken.
fn get_entries(b: &[u8]) -> Result<(Rule, u32, usize), String> {
    let e = b.get(..RULE).ok_or("a cut rule entry")?;
    let (mut rule, slot) = get_rule(e)?;
    if u32_at(e, 12) & ACTION == 0 {
        return Ok((rule, slot, RULE));
    }
    let side = b
        .get(RULE..2 * RULE)
        .ok_or_else(|| format!("rule {}: its action entry is cut", rule.id))?;
    rule.spec.action = Some(get_action(side, rule.id)?);
    Ok((rule, slot, 2 * RULE))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// Reads a 64-byte rule entry: the rule and its counter slot.
fn get_rule(e: &[u8]) -> Result<(Rule, u32), String> {
    let id = u32_at(e, 0);
    let flags = u32_at(e, 12);
    let has = |f: u32| flags & f != 0;
    let prefix =
        |at: usize| get_prefix(&e[at..at + 18]).ok_or_else(|| format!("rule {id}: a bad prefix"));
    let range = |at: usize| PortRange {
        lo: u16_at(e, at),
        hi: u16_at(e, at + 2),
    };
    let spec = RuleSpec {
        priority: u32_at(e, 8),
        src: has(SRC).then(|| prefix(16)).transpose()?,
        dst: has(DST).then(|| prefix(34)).transpose()?,
        proto: has(PROTO).then_some(e[52]),
        icmp_type: has(ICMP).then_some(e[53]),
        tcp_flags: has(FLAGS).then_some(TcpFlags {
            mask: e[54],
            value: e[55],
        }),
        sport: has(SPORT).then(|| range(56)),
        dport: has(DPORT).then(|| range(60)),
        verdict: if has(DROP) {
            Verdict::Drop
        } else {
            Verdict::Allow
        },
        action: None,
        log: has(LOG),
    };
    Ok((Rule { id, spec }, u32_at(e, 4)))
}

/// A journal entry that adds rule `r` with counter slot `slot` (two
/// 64-byte entries for a rule with an action: [`entries_of`] counts them).
pub fn add_entry(r: &Rule, slot: u32) -> Vec<u8> {
    let mut e = vec![0u8; entry_len(r)];
    put_entries(&mut e, r, slot);
    e
}

/// The journal entries `bytes` (an [`add_entry`] or [`del_entry`]) take.
pub fn entries_of(bytes: &[u8]) -> u32 {
    (bytes.len() / RULE) as u32
}

/// A journal entry that deletes rule `id`.
pub fn del_entry(id: u32) -> Vec<u8> {
    let mut e = vec![0u8; RULE];
    e[0..4].copy_from_slice(&id.to_le_bytes());
    e[12..16].copy_from_slice(&DELETE.to_le_bytes());
    e
}

/// Bytes of `n` journal entries.
pub fn journal_bytes(n: u32) -> u64 {
    u64::from(n) * RULE as u64
}

/// Applies the first `n` entries of `journal` to `data`: added rules go
/// last, in order; deleted ones go (ids are never reused, so one pass).
pub fn replay(data: &mut RulesData, journal: &[u8], n: u32) -> Result<(), String> {
    let want = journal_bytes(n) as usize;
    let entries = journal.get(..want).ok_or_else(|| {
        format!(
            "journal of {} bytes, {n} entries need {want}",
            journal.len()
        )
    })?;
    let mut gone = std::collections::HashSet::new();
    let mut at = 0;
    while at < entries.len() {
        let e = &entries[at..];
        if u32_at(e, 12) & DELETE != 0 {
            gone.insert(u32_at(e, 0));
            at += RULE;
        } else {
            let (rule, slot, used) = get_entries(e)?;
            data.slots.insert(rule.id, slot);
            data.rules.push(rule);
            at += used;
        }
    }
    if !gone.is_empty() {
        data.rules.retain(|r| !gone.contains(&r.id));
        for id in &gone {
            data.slots.remove(id);
        }
    }
    Ok(())
}

/// The file's bytes; `slot_of` gives each rule's counter slot.
pub fn encode(
    rules: &[Rule],
    slot_of: impl Fn(u32) -> u32,
    carried: &BTreeMap<u32, RuleCounters>,
) -> Vec<u8> {
    let body_len: usize = rules.iter().map(entry_len).sum();
    let mut out = vec![0u8; HEADER + body_len + CARRIED * carried.len()];
    out[0..4].copy_from_slice(MAGIC);
    out[4..8].copy_from_slice(&FORMAT.to_le_bytes());
    out[8..12].copy_from_slice(&(rules.len() as u32).to_le_bytes());
    out[12..16].copy_from_slice(&(carried.len() as u32).to_le_bytes());
    let (body, tail) = out[HEADER..].split_at_mut(body_len);
    let mut at = 0;
    for r in rules {
        let n = entry_len(r);
        put_entries(&mut body[at..at + n], r, slot_of(r.id));
        at += n;
    }
    for ((id, c), e) in carried.iter().zip(tail.chunks_exact_mut(CARRIED)) {
        e[0..4].copy_from_slice(&id.to_le_bytes());
        for (i, v) in [c.packets, c.bytes, c.logged, c.suppressed]
            .into_iter()
            .enumerate()
        {
            e[8 + 8 * i..16 + 8 * i].copy_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// Reads a file [`encode`] wrote; the reason when it is not one.
pub fn decode(b: &[u8]) -> Result<RulesData, String> {
    if b.len() < HEADER || &b[0..4] != MAGIC {
        return Err("not a rules file".into());
    }
    let format = u32_at(b, 4);
    if format != 1 && format != FORMAT {
        return Err(format!("rules file format {format} unknown"));
    }
    let n = u32_at(b, 8) as usize;
    let m = u32_at(b, 12) as usize;
    let mut data = RulesData {
        rules: Vec::with_capacity(n.min(b.len() / RULE)),
        ..RulesData::default()
    };
    let mut slots = Vec::with_capacity(n.min(b.len() / RULE));
    let mut at = HEADER;
    for _ in 0..n {
        let e = b.get(at..).unwrap_or_default();
        // Format 1 has no side entries (its ACTION bit is never set).
        let (rule, slot, used) = get_entries(e).map_err(|reason| {
            format!(
                "rules file of {} bytes, {n} rules and {m} counters: {reason}",
                b.len()
            )
        })?;
        slots.push((rule.id, slot));
        data.rules.push(rule);
        at += used;
    }
    if b.len() != at + CARRIED * m {
        return Err(format!(
            "rules file of {} bytes, {n} rules and {m} counters need {}",
            b.len(),
            at + CARRIED * m
        ));
    }
    let tail = &b[at..];
    // Built in bulk (sorted first), not one insert at a time.
    data.slots = slots.into_iter().collect();
    for e in tail.chunks_exact(CARRIED) {
        let word = |i: usize| {
            u64::from_le_bytes(
                e[8 + 8 * i..16 + 8 * i]
                    .try_into()
                    .expect("8 bytes in a 40-byte entry"),
            )
        };
        data.carried.insert(
            u32_at(e, 0),
            RuleCounters {
                packets: word(0),
                bytes: word(1),
                logged: word(2),
                suppressed: word(3),
            },
        );
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::rule::parse_rules_file;

    #[test]
    fn rules_slots_and_carried_counters_round_trip() {
        let text =
            "priority 7 src 10.0.0.0/8 dst 192.0.2.1 proto udp sport 5-6 dport 53 allow log\n\
                    src 2001:db8::/32 dst 2001:db8:1::1/128 proto tcp tcp-flags syn,!ack drop\n\
                    proto icmp icmp-type 8 drop\n\
                    drop\n\
                    src 10.1.0.0/24 snat 203.0.113.0/24 log\n\
                    dst 203.0.113.7 proto tcp dnat 10.1.0.2 port 8080\n\
                    dport 53 mark 7 reroute\n\
                    dst 198.51.100.0/24 redirect tun0\n\
                    src 10.1.0.2 proto tcp sport 8080 snat 203.0.113.7 port 80\n";
        let mut rules: Vec<Rule> = parse_rules_file(text)
            .expect("rules")
            .into_iter()
            .zip([3u32, 9, 10, 4_000_000_000, 11, 12, 13, 14, 15])
            .map(|(spec, id)| Rule { id, spec })
            .collect();
        if let Some(Action::Redirect { ifindex, .. }) = rules[7].spec.action.as_mut() {
            *ifindex = 42;
        }
        let carried = BTreeMap::from([
            (
                0,
                RuleCounters {
                    packets: 1,
                    bytes: 2,
                    logged: 3,
                    suppressed: 4,
                },
            ),
            (
                9,
                RuleCounters {
                    packets: u64::MAX,
                    ..Default::default()
                },
            ),
        ]);
        let bytes = encode(&rules, |id| id % 1000 + 1, &carried);
        let back = decode(&bytes).expect("decode");
        assert_eq!(back.rules, rules);
        assert_eq!(back.carried, carried);
        assert_eq!(back.slots.get(&4_000_000_000), Some(&1));
        assert_eq!(back.slots.get(&9), Some(&10));
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        assert_eq!(bytes.len(), HEADER + RULE * 14 + CARRIED * 2);

        // A format-1 file (written before actions) still loads.
        let plain: Vec<Rule> = rules[..4].to_vec();
        let mut old = encode(&plain, |id| id % 1000 + 1, &carried);
        old[4..8].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(decode(&old).expect("format 1").rules, plain);
        let mut data = back.clone();
        let with_action = Rule {
            id: 4_000_000_003,
            spec: rules[5].spec.clone(),
        };
        let entry = add_entry(&with_action, 99);
        assert_eq!(entries_of(&entry), 2);
        replay(&mut data, &entry, 2).expect("replay an action");
        assert_eq!(data.rules.last(), Some(&with_action));
        let rules: Vec<Rule> = rules[..4].to_vec();
        let back = decode(&encode(&rules, |id| id % 1000 + 1, &carried)).expect("decode");

        // A journal: add a rule, delete two (one of them just added).
        let mut data = back;
        let added = Rule {
            id: 4_000_000_001,
            spec: rules[0].spec.clone(),
        };
        let mut journal = add_entry(&added, 77);
        journal.extend(del_entry(9));
        let later = Rule {
            id: 4_000_000_002,
            spec: rules[1].spec.clone(),
        };
        journal.extend(add_entry(&later, 5));
        journal.extend(del_entry(4_000_000_001));
        // Bytes past the entries the record counts are a killed change's.
        journal.extend(del_entry(3));
        replay(&mut data, &journal, 4).expect("replay");
        let ids: Vec<u32> = data.rules.iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![3, 10, 4_000_000_000, 4_000_000_002]);
        assert_eq!(data.slots.get(&4_000_000_002), Some(&5));
        assert_eq!(data.slots.get(&9), None);
        assert_eq!(data.slots.get(&4_000_000_001), None);
        assert!(replay(&mut data, &journal, 6).is_err());
        assert!(decode(b"JSON").is_err());
    }
}

#[cfg(test)]
mod timing {
    use super::*;

    /// `cargo test --release -p lwtkit --lib rules_file::timing -- --ignored --nocapture`
    #[test]
    #[ignore = "a timing, not a check"]
    fn encode_and_decode_100k_rules() {
        let rules: Vec<Rule> = crate::filter::bench_rules(100_000, 42);
        let t = std::time::Instant::now();
        let bytes = encode(&rules, |id| id, &BTreeMap::new());
        let enc = t.elapsed();
        let t = std::time::Instant::now();
        let back = decode(&bytes).expect("decode");
        eprintln!(
            "100k rules: encode {enc:?}, decode {:?}, {} bytes",
            t.elapsed(),
            bytes.len()
        );
        assert_eq!(back.rules.len(), rules.len());
    }
}
