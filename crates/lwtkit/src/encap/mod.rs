//! Overlays without a tunnel device per peer: `lwt encap` steers a prefix
//! into a tunnel by attaching lwtkit's encapsulation program to the route
//! and storing the tunnel's outer headers in a map keyed by table and
//! destination. Changing a remote is a map update; thousands of prefixes
//! share the maps, and each table gets its own program instance.
pub mod decap;
pub mod header;

use std::{fs, net::IpAddr, path::PathBuf};

use ipnet::IpNet;
use libbpf_rs::{MapCore, MapFlags, MapHandle, ObjectBuilder};
use lwtkit_common::{
    encap::{EncapEntry, EncapKey, EncapStats, MAX_HEADER, MAX_TUNNELS},
    maps,
    pins::{
        self,
        encap::{STATS, TUNNELS},
    },
};
use serde::{Deserialize, Serialize};

pub use header::{parse_mac, Tos, TunnelSpec, TunnelType};

use crate::{
    attach::{self, AttachRequest, Attached, DetachRequest, Detached, Extra},
    builtin,
    error::{AttachError, Error, LoadError, Result, StateError},
    hook::Hook,
    loader::{last_line, BuiltinSpec, LibbpfLog, ProgramSource},
    ns::{self, failpoint, intent::hex, Intent, Namespace, Outcome, Probe, Step, Txn},
    route::{link, netlink::Rtnl, ops, table::table_name},
    state::{Origin, Owner, RouteRecord},
    system,
};

/// Why a tunnel cannot be built, added or removed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EncapError {
    #[error("unknown tunnel type `{0}`: expected vxlan, fou, gue, ipip, sit, ip6ip6, ip4in6, gre or srv6")]
    UnknownType(String),
    /// A flag's value that does not fit the tunnel type (the message names the flag).
    #[error("{0}")]
    Invalid(String),
    #[error("{kind} carries {inner} packets, but the prefix is {prefix}")]
    InnerFamily {
        kind: TunnelType,
        inner: &'static str,
        prefix: &'static str,
    },
    #[error("--local {local} and --remote {remote} are of different families")]
    Families { local: IpAddr, remote: IpAddr },
    #[error("{kind} needs an IPv{want} outer header, but --remote is {remote}")]
    OuterFamily {
        kind: TunnelType,
        want: u8,
        remote: IpAddr,
    },
    #[error("the outer headers take {0} bytes, more than the kernel's 256")]
    TooLong(usize),
    /// `--local` left out, and the device has no address of the remote's family.
    #[error("{dev} has no IPv{family} address to use as the tunnel source; pass --local")]
    NoLocalAddress { dev: String, family: u8 },
    #[error("loop: the outer destination {remote} is inside {dst}, so the encapsulated packet would be encapsulated again")]
    LoopIntoItself { remote: IpAddr, dst: IpNet },
    /// The remote lies inside another tunnel's prefix of the same table.
    #[error(
        "loop: the outer destination {remote} is inside {other}, which is itself encapsulated"
    )]
    LoopIntoTunnel { remote: IpAddr, other: IpNet },
    /// The prefix would take in another tunnel's remote.
    #[error(
        "loop: {dst} would take in the outer packets of the tunnel for {other} (remote inside it)"
    )]
    LoopTakesRemote { dst: IpNet, other: IpNet },
    #[error("{dst} is encapsulated on hook {hook}; `lwt encap del` it before moving it to hook {wanted}")]
    OtherHook {
        dst: IpNet,
        hook: Hook,
        wanted: Hook,
    },
    /// The namespace's pinned maps predate the table in the key.
    #[error("the tunnel maps in this namespace have an older layout ({key_size}-byte keys, not {expected}); `lwt encap del` its {tunnels} tunnel(s) or `lwt reset`, then add them again")]
    OldMaps {
        key_size: usize,
        expected: usize,
        tunnels: usize,
    },
    /// The table's name.
    #[error("no lwtkit tunnel for {dst} table {table}")]
    NoTunnel { dst: IpNet, table: String },
}

/// What `lwt encap add` asks for (before the local address is resolved).
#[derive(Clone, Debug)]
pub struct EncapRequest {
    pub dst: IpNet,
    pub dev: String,
    pub table: Option<u32>,
    pub hook: Hook,
    pub spec: TunnelSpec,
    /// `false`: `local` was given by the user; `true`: pick the device's.
    pub local_from_dev: bool,
}

/// A tunnel lwtkit keeps.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TunnelRecord {
    pub dst: IpNet,
    pub table: u32,
    pub dev: String,
    pub hook: Hook,
    #[serde(flatten)]
    pub spec: TunnelSpec,
    pub counter: u32,
    pub header_len: usize,
}

/// A tunnel as `lwt encap list` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct TunnelView {
    pub dst: IpNet,
    pub table: String,
    pub dev: String,
    pub hook: Hook,
    #[serde(flatten)]
    pub spec: TunnelSpec,
    pub header_len: usize,
    /// What TCP through the route gets; `None` when the route or its MTU
    /// metric cannot be read. (`segments` is srv6's segment list.)
    pub tcp_segments: Option<Segments>,
    pub stats: EncapStats,
}

/// The TCP segment sizes a tunnel's route gives, without TCP options
/// (timestamps take 12 bytes more from each).
///
/// TCP takes its MSS from the route MTU, which lwtkit lowers by the header
/// so that a single (non-GSO) segment fits the device once encapsulated.
/// `bpf_lwt_push_encap` also shrinks a GSO packet's segment size by the
/// header (`handle_gso_type`), and no LWT helper sets it back, so each
/// segment cut from a GSO packet carries `header_len` bytes less than the
/// MSS: the outer segments are one header short of the device MTU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Segments {
    /// The route's `mtu` metric.
    pub route_mtu: u32,
    /// TCP payload bytes of a single segment (route MTU - IP and TCP headers).
    pub mss: u32,
    /// TCP payload bytes of each segment cut from a GSO packet.
    pub gso_segment: u32,
}

impl Segments {
    /// The sizes for a route MTU, inner family and header length.
    pub fn new(route_mtu: u32, inner_v6: bool, header_len: usize) -> Self {
        // The MSS lwtkit advertises on the route (`attach::lower_mtu`).
        let mss = attach::tcp_mss(route_mtu, inner_v6);
        Segments {
            route_mtu,
            mss,
            gso_segment: mss.saturating_sub(header_len as u32),
        }
    }
}

/// The segment sizes the route of `dst` in `table` gives now (its `mtu`
/// metric as the kernel holds it).
pub fn segments(rtnl: &mut Rtnl, dst: &IpNet, table: u32, header_len: usize) -> Option<Segments> {
    use netlink_packet_route::route::{RouteAttribute, RouteMetric};
    let route = crate::route::lookup::find(rtnl, &ops::RouteKey { dst: *dst, table }).ok()??;
    let mtu = route.attributes.iter().find_map(|a| match a {
        RouteAttribute::Metrics(m) => m.iter().find_map(|m| match m {
            RouteMetric::Mtu(v) => Some(*v),
            _ => None,
        }),
        _ => None,
    })?;
    Some(Segments::new(mtu, dst.addr().is_ipv6(), header_len))
}

/// What TCP through the tunnel of `dst` in `table` gets now, and its
/// header length: the sizes from its route's MTU and its record's header.
/// `None` when there is no such tunnel or its route has no MTU metric.
/// Reads that one record and that one route, for `lwt encap add` to print.
pub fn tunnel_segments(dst: &IpNet, table: u32) -> Result<Option<(Segments, usize)>> {
    let record: Option<TunnelRecord> =
        Namespace::open_readonly()?.get(&RouteRecord::key(dst, table))?;
    let Some(record) = record else {
        return Ok(None);
    };
    Ok(segments(&mut Rtnl::open()?, dst, table, record.header_len).map(|s| (s, record.header_len)))
}

impl crate::ns::Record for TunnelRecord {
    const DIR: &'static str = "encap";
    fn key(&self) -> String {
        RouteRecord::key(&self.dst, self.table)
    }
}

/// The namespace's tunnel map pins (read only: nothing is created).
fn pins() -> Result<PathBuf> {
    Ok(Namespace::open_readonly()?
        .pin_root()
        .join(pins::encap::DIR))
}

/// The trie key of `dst` in `table`, as the map takes it.
fn key_of(dst: &IpNet, table: u32) -> [u8; KEY_SIZE] {
    let key = match dst.network() {
        IpAddr::V4(a) => EncapKey::new(table, &a.octets(), dst.prefix_len().into()),
        IpAddr::V6(a) => EncapKey::new(table, &a.octets(), dst.prefix_len().into()),
    };
    let mut k = [0u8; KEY_SIZE];
    k[..4].copy_from_slice(&key.prefix_len.to_ne_bytes());
    k[4..8].copy_from_slice(&key.table);
    k[8..12].copy_from_slice(&key.family);
    k[12..].copy_from_slice(&key.addr);
    k
}

const KEY_SIZE: usize = size_of::<EncapKey>();

/// The trie value of a tunnel: its header block and counter slot.
fn entry_value(header: &header::Header, counter: u32) -> Vec<u8> {
    let mut entry = EncapEntry {
        len: header.bytes.len() as u16,
        flags: header.flags,
        counter,
        header: [0; MAX_HEADER],
    };
    entry.header[..header.bytes.len()].copy_from_slice(&header.bytes);
    // SAFETY: EncapEntry is plain data.
    unsafe {
        std::slice::from_raw_parts(
            (&entry as *const EncapEntry).cast::<u8>(),
            size_of::<EncapEntry>(),
        )
    }
    .to_vec()
}

/// The trie entry (key, value) a tunnel record stands for: what `lwt
/// check` expects the namespace's `tunnels` map to hold.
pub(crate) fn expected_entry(record: &TunnelRecord) -> Result<(Vec<u8>, Vec<u8>)> {
    let header = record
        .spec
        .header(record.dst.addr().is_ipv6())
        .map_err(|e| Error::Invalid(e.to_string()))?;
    Ok((
        key_of(&record.dst, record.table).to_vec(),
        entry_value(&header, record.counter),
    ))
}

/// A trie key as `dst table T` (for keys no record explains).
pub(crate) fn describe_key(key: &[u8]) -> String {
    let word = |r: std::ops::Range<usize>| {
        key.get(r)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .unwrap_or_default()
    };
    let bits = u32::from_ne_bytes(word(0..4)).saturating_sub(EncapKey::HEADER_BITS);
    let table = u32::from_be_bytes(word(4..8));
    let addr: Option<IpAddr> = match word(8..12)[3] {
        4 => Some(IpAddr::from(word(12..16))),
        6 => key
            .get(12..28)
            .and_then(|b| <[u8; 16]>::try_from(b).ok())
            .map(IpAddr::from),
        _ => None,
    };
    match addr.and_then(|a| IpNet::new(a, bits.min(128) as u8).ok()) {
        Some(net) => format!("{net} table {}", table_name(table)),
        None => format!("key {}", hex(key)),
    }
}

/// The entry a trie value describes: (header length, counter slot).
pub(crate) fn entry_summary(value: &[u8]) -> Option<(u16, u32)> {
    let len = u16::from_ne_bytes(value.get(0..2)?.try_into().ok()?);
    let counter = u32::from_ne_bytes(value.get(4..8)?.try_into().ok()?);
    Some((len, counter))
}

fn state_err(path: &std::path::Path, e: impl std::fmt::Display) -> Error {
    StateError::Io {
        path: path.into(),
        reason: e.to_string(),
    }
    .into()
}

/// Creates and pins the namespace's tunnel maps once. Maps of an older
/// key layout (without the table) are replaced when no tunnel uses them.
fn ensure_maps(pins: &std::path::Path, tunnels_recorded: usize) -> Result<()> {
    let trie = pins.join(TUNNELS);
    if trie.exists() {
        let key_size = MapHandle::from_pinned_path(&trie)
            .map_err(|_| StateError::MissingPin(trie.clone()))?
            .key_size() as usize;
        if key_size == KEY_SIZE {
            return Ok(());
        }
        if tunnels_recorded > 0 {
            return Err(EncapError::OldMaps {
                key_size,
                expected: KEY_SIZE,
                tunnels: tunnels_recorded,
            }
            .into());
        }
        for pin in [trie, pins.join(STATS)] {
            let _ = fs::remove_file(&pin);
        }
    }
    let b = builtin::find("encap")
        .ok_or_else(|| LoadError::UnknownBuiltin("encap".into(), builtin::names()))?;
    let bytes = b.object().to_vec();
    let log = LibbpfLog::capture();
    let loaded = ObjectBuilder::default()
        .open_memory(&bytes)
        .and_then(|mut open| {
            for mut p in open.progs_mut() {
                p.set_autoload(false);
            }
            open.load()
        });
    let messages = log.finish();
    let mut obj = loaded.map_err(|e| LoadError::Failed {
        program: "tunnel maps".into(),
        reason: format!("{e}: {}", last_line(&messages)),
    })?;
    ns::store::ensure_dir(pins)?;
    for mut m in obj.maps_mut() {
        let Some(file) = pins::of_map(pins::encap::MAPS, &m.name().to_string_lossy()) else {
            continue;
        };
        let pin = pins.join(file);
        m.pin(&pin).map_err(|e| state_err(&pin, e))?;
    }
    Ok(())
}

/// `lwt encap add`: validates everything, stores the tunnel, attaches.
pub fn add(req: EncapRequest) -> Result<Attached> {
    system::require_attach_privileges("lwt encap add")?;
    let ns = Namespace::open()?;
    let txn = ns.begin("lwt encap add")?;
    add_in(&txn, &mut Rtnl::open()?, req)
}

/// [`add`] inside a transaction the caller holds. The map entry, the route
/// and the tunnel record change under one intent: a kill anywhere leaves
/// either the old tunnel or the new one.
pub fn add_in(txn: &Txn, rtnl: &mut Rtnl, mut req: EncapRequest) -> Result<Attached> {
    // Bad input is refused before anything is looked up or changed.
    req.spec.validate()?;
    if !req.local_from_dev {
        req.spec.validate_local()?;
    }
    crate::validate::table_id("--table", req.table).map_err(Error::Invalid)?;
    let oif = attach::ifindex(&req.dev)?;
    let inner_v6 = req.dst.addr().is_ipv6();
    let remote = req.spec.outer_dst()?;
    if req.local_from_dev {
        req.spec.local = link::addresses(rtnl, oif)?
            .into_iter()
            .find(|a| a.is_ipv4() == remote.is_ipv4())
            .ok_or_else(|| EncapError::NoLocalAddress {
                dev: req.dev.clone(),
                family: if remote.is_ipv4() { 4 } else { 6 },
            })?;
    }
    let header = req.spec.header(inner_v6)?;
    let table = req.table.unwrap_or_else(|| ops::default_table(false));
    let pins = txn.pin_root().join(pins::encap::DIR);
    let existing: Vec<TunnelRecord> = txn.all()?;
    // The outer packet is routed again: it must not come back here.
    if req.dst.contains(&remote) {
        return Err(EncapError::LoopIntoItself {
            remote,
            dst: req.dst,
        }
        .into());
    }
    if let Some(other) = existing
        .iter()
        .find(|r| r.table == table && r.dst != req.dst && r.dst.contains(&remote))
    {
        return Err(EncapError::LoopIntoTunnel {
            remote,
            other: other.dst,
        }
        .into());
    }
    if let Some(other) = existing.iter().find(|r| {
        r.table == table
            && r.dst != req.dst
            && r.spec.outer_dst().is_ok_and(|o| req.dst.contains(&o))
    }) {
        return Err(EncapError::LoopTakesRemote {
            dst: req.dst,
            other: other.dst,
        }
        .into());
    }
    if let Some(other) = existing
        .iter()
        .find(|r| r.dst == req.dst && r.table == table && r.hook != req.hook)
    {
        return Err(EncapError::OtherHook {
            dst: req.dst,
            hook: other.hook,
            wanted: req.hook,
        }
        .into());
    }
    ensure_maps(&pins, existing.len())?;
    let previous = existing
        .iter()
        .find(|r| r.dst == req.dst && r.table == table)
        .cloned();
    let counter = previous.as_ref().map(|p| p.counter).unwrap_or_else(|| {
        (1..MAX_TUNNELS)
            .find(|c| existing.iter().all(|r| r.counter != *c))
            .unwrap_or(MAX_TUNNELS - 1)
    });
    let value = entry_value(&header, counter);
    let tunnels = MapHandle::from_pinned_path(pins.join(TUNNELS))
        .map_err(|_| StateError::MissingPin(pins.join(TUNNELS)))?;
    let key = key_of(&req.dst, table);
    let trie = pins.join(TUNNELS);
    // Undone, the entry is the previous tunnel's (as its record says) or
    // none. Not a lookup: an LPM trie answers a lookup with the longest
    // prefix that covers the key, a wider tunnel's entry when this prefix
    // has none.
    let restore = match &previous {
        Some(p) => Step::MapPut {
            pin: trie.clone(),
            key: hex(&key),
            value: hex(&expected_entry(p)?.1),
        },
        None => Step::MapDelete {
            pin: trie.clone(),
            key: hex(&key),
        },
    };
    if previous.is_none() {
        let stats = MapHandle::from_pinned_path(pins.join(STATS))
            .map_err(|_| StateError::MissingPin(pins.join(STATS)))?;
        let cpus = libbpf_rs::num_possible_cpus().map_err(|e| state_err(&pins, e))?;
        let zero = vec![vec![0u8; size_of::<EncapStats>()]; cpus];
        let _ = stats.update_percpu(&counter.to_ne_bytes(), &zero, MapFlags::ANY);
    }
    let record = TunnelRecord {
        dst: req.dst,
        table,
        dev: req.dev.clone(),
        hook: req.hook,
        spec: req.spec.clone(),
        counter,
        header_len: header.bytes.len(),
    };
    let put = txn.put_step(&record)?;
    let update = move || -> Result<()> {
        tunnels
            .update(&key, &value, MapFlags::ANY)
            .map_err(|e| state_err(&trie, e))?;
        failpoint("encap:map");
        Ok(())
    };
    // Same route shape as before (device, hook, header size): the map
    // update is the whole change; the program stays.
    let same_route = previous.as_ref().is_some_and(|p| {
        p.dev == req.dev && p.hook == req.hook && p.header_len == header.bytes.len()
    });
    if let Some(current) = same_route
        .then(|| current_attachment(txn, &req.dst, table, req.hook))
        .flatten()
    {
        let Step::Put { path, json } = &put else {
            unreachable!("put_step makes a Put")
        };
        let mut intent = Intent::new(
            "lwt encap add",
            Probe::Record {
                path: path.clone(),
                json: json.clone(),
            },
        );
        intent.undone = vec![restore];
        let pending = txn.intend(intent)?;
        if let Err(e) = update() {
            txn.finish(pending, Outcome::Undone)?;
            return Err(e);
        }
        ns::intent::apply(&[put])?;
        txn.finish(pending, Outcome::Done)?;
        return Ok(current);
    }
    // One program serves every route of a kind in a table: share a
    // sibling's (same table, which the program has built in, and same type,
    // hook and header size, so the same route name fits both).
    let source = existing
        .iter()
        .filter(|r| {
            r.dst != req.dst
                && r.table == table
                && r.spec.kind == req.spec.kind
                && r.hook == req.hook
                && r.header_len == header.bytes.len()
        })
        .find_map(|r| shared_source(txn, &r.dst, r.table, r.hook))
        .unwrap_or_else(|| {
            ProgramSource::Builtin(program(&req.spec.kind.to_string(), &pins, table))
        });
    attach::attach_with(
        txn,
        rtnl,
        &AttachRequest {
            dst: req.dst,
            dev: req.dev.clone(),
            hook: req.hook,
            source,
            // The route MTU below accounts for the header; a headroom too would
            // make the kernel subtract it a second time.
            headroom: None,
            table: Some(table),
            local: false,
            via: None,
            mtu_reduction: Some(header.bytes.len() as u32),
            force: false,
        },
        Extra {
            done: vec![put],
            undone: vec![restore],
            before_route: Some(Box::new(update)),
        },
    )
}

/// The encapsulation program for the routes of `table`, for the loader: on
/// the namespace's tunnel maps (pinned in `pins`), with the table built in
/// (the program cannot see its route), named `lwtkit-encap-<kind>`.
fn program(kind: &str, pins: &std::path::Path, table: u32) -> BuiltinSpec {
    BuiltinSpec {
        name: "encap".into(),
        route_name: format!("lwtkit-encap-{kind}"),
        maps_to_reuse: pins::encap::MAPS
            .iter()
            .map(|(map, file)| (map.to_string(), pins.join(file)))
            .collect(),
        constants: vec![(
            maps::encap::TABLE_SECTION.into(),
            table.to_ne_bytes().to_vec(),
        )],
        origin: Origin::Encap {
            tunnel: kind.into(),
        },
    }
}

/// The pinned program of another tunnel's route, to share.
fn shared_source(txn: &Txn, dst: &IpNet, table: u32, hook: Hook) -> Option<ProgramSource> {
    let record = txn
        .get::<RouteRecord>(&RouteRecord::key(dst, table))
        .ok()??;
    let h = record.hooks.get(&hook)?;
    h.pin.exists().then(|| ProgramSource::Shared {
        pin: h.pin.clone(),
        name: h.name.clone(),
        origin: h.origin.clone(),
    })
}

/// What is attached to the route now, if lwtkit's records and pins say so.
fn current_attachment(txn: &Txn, dst: &IpNet, table: u32, hook: Hook) -> Option<Attached> {
    let record = txn
        .get::<RouteRecord>(&RouteRecord::key(dst, table))
        .ok()??;
    let h = record.hooks.get(&hook)?;
    let prog = libbpf_rs::ProgramHandle::from_pinned_path(&h.pin).ok()?;
    Some(Attached {
        route: ops::RouteKey { dst: *dst, table }.to_string(),
        dst: *dst,
        table: table_name(table),
        hook,
        name: h.name.clone(),
        id: prog.id(),
        tag: prog.tag().iter().map(|b| format!("{b:02x}")).collect(),
        created: false,
    })
}

/// `lwt encap del`: detaches and forgets the tunnel.
pub fn del(dst: IpNet, table: Option<u32>) -> Result<Detached> {
    system::require_attach_privileges("lwt encap del")?;
    let ns = Namespace::open()?;
    let txn = ns.begin("lwt encap del")?;
    del_in(&txn, &mut Rtnl::open()?, dst, table)
}

/// [`del`] inside a transaction the caller holds.
pub fn del_in(txn: &Txn, rtnl: &mut Rtnl, dst: IpNet, table: Option<u32>) -> Result<Detached> {
    let table = table.unwrap_or_else(|| ops::default_table(false));
    let skey = RouteRecord::key(&dst, table);
    let record: TunnelRecord = txn.get(&skey)?.ok_or_else(|| EncapError::NoTunnel {
        dst,
        table: table_name(table),
    })?;
    // The tunnel's entry and record go once the route no longer runs it.
    // The entry first: a kill in between leaves a record that accounts for it.
    let forget = vec![
        Step::MapDelete {
            pin: txn.pin_root().join(pins::encap::DIR).join(TUNNELS),
            key: hex(&key_of(&dst, table)),
        },
        txn.remove_step::<TunnelRecord>(&skey),
    ];
    let req = DetachRequest {
        hook: Some(record.hook),
        owner: Some(Owner::Encap),
        ..DetachRequest::new(dst, Some(table), false)
    };
    match attach::detach_with(txn, rtnl, &req, forget.clone()) {
        Ok(d) => Ok(d),
        // The tunnel goes whatever happened to its route: gone (device
        // deleted), or changed outside lwtkit (reported, left alone).
        Err(Error::Attach(AttachError::NotManaged(route))) => {
            ns::intent::apply(&forget)?;
            Ok(Detached {
                route,
                dst,
                table: crate::route::table::table_name(table),
                hooks: vec![record.hook],
                route_now: "gone",
                note: Some("lwtkit had no record of the route any more".into()),
            })
        }
        Err(e @ Error::Attach(AttachError::Drift { .. })) => {
            ns::intent::apply(&forget)?;
            Err(e)
        }
        Err(e) => Err(e),
    }
}

/// Packets the namespace's encapsulation dropped before finding a tunnel
/// (no tunnel for their destination, or not IP): counted once per
/// namespace, not per route.
pub fn unrouted() -> Result<EncapStats> {
    Ok(MapHandle::from_pinned_path(pins()?.join(STATS))
        .map(|m| read_stats(&m, lwtkit_common::encap::NO_TUNNEL_SLOT))
        .unwrap_or_default())
}

/// The tunnels lwtkit keeps in this namespace, as recorded.
pub fn tunnels() -> Result<Vec<TunnelRecord>> {
    let mut out: Vec<TunnelRecord> = Namespace::open_readonly()?.all()?;
    out.sort_by_key(|r| (r.table, r.dst.to_string()));
    Ok(out)
}

/// `lwt encap list`: every tunnel with its counters.
pub fn list() -> Result<Vec<TunnelView>> {
    // lwtkit's records and pins are root's: say so, not "nothing here".
    system::require_attach_privileges("lwt encap list")?;
    let stats = MapHandle::from_pinned_path(pins()?.join(STATS)).ok();
    let mut rtnl = Rtnl::open().ok();
    Ok(tunnels()?
        .into_iter()
        .map(|r| {
            let tcp_segments = rtnl
                .as_mut()
                .and_then(|n| segments(n, &r.dst, r.table, r.header_len));
            let s = stats
                .as_ref()
                .map(|m| read_stats(m, r.counter))
                .unwrap_or_default();
            TunnelView {
                dst: r.dst,
                table: table_name(r.table),
                dev: r.dev,
                hook: r.hook,
                spec: r.spec,
                header_len: r.header_len,
                tcp_segments,
                stats: s,
            }
        })
        .collect())
}

fn read_stats(map: &MapHandle, slot: u32) -> EncapStats {
    let [packets, bytes, no_tunnel, push_failed, malformed] =
        crate::percpu::sum(map, slot).unwrap_or_default();
    EncapStats {
        packets,
        bytes,
        no_tunnel,
        push_failed,
        malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_sizes_follow_the_route_mtu_and_the_header() {
        // VXLAN over IPv4 (50 bytes) on a 1500-byte device: lwtkit lowers
        // the route MTU to 1450, and GSO segments lose the header again.
        let s = Segments::new(1450, false, 50);
        assert_eq!((s.route_mtu, s.mss, s.gso_segment), (1450, 1410, 1360));
        // IPv6 inside: 40 + 20 bytes of headers.
        let s = Segments::new(1430, true, 70);
        assert_eq!((s.mss, s.gso_segment), (1370, 1300));
        // Nothing below zero on absurd inputs.
        assert_eq!(Segments::new(30, false, 50).gso_segment, 0);
        // The MSS printed is the one lwtkit puts on the route.
        let mut route = netlink_packet_route::route::RouteMessage::default();
        attach::lower_mtu(&mut route, 1500, 50, false);
        let advmss = route.attributes.iter().find_map(|a| match a {
            netlink_packet_route::route::RouteAttribute::Metrics(m) => {
                m.iter().find_map(|m| match m {
                    netlink_packet_route::route::RouteMetric::Advmss(v) => Some(*v),
                    _ => None,
                })
            }
            _ => None,
        });
        assert_eq!(advmss, Some(Segments::new(1450, false, 50).mss));
    }

    #[test]
    fn trie_keys_start_with_the_table_and_count_its_bits() {
        let k = key_of(&"198.51.100.0/24".parse().expect("prefix"), 100);
        assert_eq!(k.len(), 28);
        assert_eq!(u32::from_ne_bytes([k[0], k[1], k[2], k[3]]), 32 + 32 + 24);
        assert_eq!(&k[4..8], &[0, 0, 0, 100], "table, big-endian");
        assert_eq!(&k[8..12], &[0, 0, 0, 4], "family tag");
        assert_eq!(&k[12..16], &[198, 51, 100, 0]);
        assert!(k[16..].iter().all(|b| *b == 0));

        let k = key_of(&"2001:db8::/32".parse().expect("prefix"), 254);
        assert_eq!(u32::from_ne_bytes([k[0], k[1], k[2], k[3]]), 64 + 32);
        assert_eq!(&k[4..12], &[0, 0, 0, 254, 0, 0, 0, 6]);
        assert_eq!(&k[12..16], &[0x20, 0x01, 0x0d, 0xb8]);
    }
}
