//! Overlays without a tunnel device per peer: `lwt encap` steers a prefix
//! into a tunnel by attaching lwtkit's encapsulation program to the route
//! and storing the tunnel's outer headers in a map keyed by destination.
//! Changing a remote is a map update; thousands of prefixes share the maps.
pub mod decap;
pub mod header;

use std::{fs, net::IpAddr, path::PathBuf};

use ipnet::IpNet;
use libbpf_rs::{MapCore, MapFlags, MapHandle, ObjectBuilder};
use lwtkit_common::encap::{EncapEntry, EncapKey, EncapStats, MAX_HEADER, MAX_TUNNELS};
use serde::{Deserialize, Serialize};

pub use header::{parse_mac, Tos, TunnelSpec, TunnelType};

use crate::{
    attach::{self, AttachRequest, Attached, DetachRequest, Detached},
    builtin,
    error::{Error, Result},
    hook::Hook,
    loader::{last_line, LibbpfLog, ProgramSource},
    route::{link, netlink::Rtnl, ops, table::table_name},
    state::{NetnsState, RouteRecord},
    system,
};

pub const TUNNELS_MAP: &str = "TUNNELS";
pub const STATS_MAP: &str = "TUNNEL_STATS";

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
    pub stats: EncapStats,
}

fn paths() -> Result<(PathBuf, PathBuf)> {
    let bpffs = system::ensure_bpffs()?;
    let (dir, pins) = NetnsState::paths(&bpffs)?;
    Ok((dir.join("encap"), pins.join("encap")))
}

fn key_of(dst: &IpNet) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..4].copy_from_slice(&(EncapKey::FAMILY_BITS + u32::from(dst.prefix_len())).to_ne_bytes());
    match dst.network() {
        IpAddr::V4(a) => {
            k[7] = 4;
            k[8..12].copy_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            k[7] = 6;
            k[8..24].copy_from_slice(&a.octets());
        }
    }
    k
}

fn state_err(path: &std::path::Path, e: impl std::fmt::Display) -> Error {
    Error::State {
        path: path.into(),
        reason: e.to_string(),
    }
}

/// Creates and pins the namespace's tunnel maps once.
fn ensure_maps(pins: &std::path::Path) -> Result<()> {
    if pins.join("tunnels").exists() {
        return Ok(());
    }
    let b = builtin::find("encap")
        .ok_or_else(|| Error::UnknownBuiltin("encap".into(), builtin::names()))?;
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
    let mut obj = loaded.map_err(|e| Error::Load {
        program: "tunnel maps".into(),
        reason: format!("{e}: {}", last_line(&messages)),
    })?;
    fs::create_dir_all(pins).map_err(|e| state_err(pins, e))?;
    for mut m in obj.maps_mut() {
        let pin = match m.name().to_string_lossy().as_ref() {
            TUNNELS_MAP => pins.join("tunnels"),
            STATS_MAP => pins.join("stats"),
            _ => continue,
        };
        m.pin(&pin).map_err(|e| state_err(&pin, e))?;
    }
    Ok(())
}

fn records(dir: &std::path::Path) -> Vec<TunnelRecord> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<TunnelRecord> = entries
        .flatten()
        .filter_map(|e| fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect();
    out.sort_by_key(|r| (r.table, r.dst.to_string()));
    out
}

/// `lwt encap add`: validates everything, stores the tunnel, attaches.
pub fn add(mut req: EncapRequest) -> Result<Attached> {
    // Bad input is refused before anything is looked up or changed.
    req.spec
        .validate()
        .map_err(|e| Error::Invalid(e.to_string()))?;
    if !req.local_from_dev {
        req.spec
            .validate_local()
            .map_err(|e| Error::Invalid(e.to_string()))?;
    }
    crate::validate::table_id("--table", req.table).map_err(Error::Invalid)?;
    system::require_attach_privileges("lwt encap add")?;
    let oif = attach::ifindex(&req.dev)?;
    let inner_v6 = req.dst.addr().is_ipv6();
    let remote = req
        .spec
        .outer_dst()
        .map_err(|e| Error::Invalid(e.to_string()))?;
    if req.local_from_dev {
        let mut rtnl = Rtnl::open()?;
        req.spec.local = link::addresses(&mut rtnl, oif)?
            .into_iter()
            .find(|a| a.is_ipv4() == remote.is_ipv4())
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "{} has no IPv{} address to use as the tunnel source; pass --local",
                    req.dev,
                    if remote.is_ipv4() { 4 } else { 6 }
                ))
            })?;
    }
    let header = req
        .spec
        .header(inner_v6)
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let table = req.table.unwrap_or_else(|| ops::default_table(false));
    let (dir, pins) = paths()?;
    let existing = records(&dir);
    // The outer packet is routed again: it must not come back here.
    if req.dst.contains(&remote) {
        return Err(Error::Invalid(format!("loop: the outer destination {remote} is inside {}, so the encapsulated packet would be encapsulated again", req.dst)));
    }
    if let Some(other) = existing
        .iter()
        .find(|r| r.table == table && r.dst != req.dst && r.dst.contains(&remote))
    {
        return Err(Error::Invalid(format!(
            "loop: the outer destination {remote} is inside {}, which is itself encapsulated",
            other.dst
        )));
    }
    if let Some(other) = existing.iter().find(|r| {
        r.table == table
            && r.dst != req.dst
            && r.spec.outer_dst().is_ok_and(|o| req.dst.contains(&o))
    }) {
        return Err(Error::Invalid(format!(
            "loop: {} would take in the outer packets of the tunnel for {} (remote inside it)",
            req.dst, other.dst
        )));
    }
    // The program finds tunnels by destination alone, not by table.
    if let Some(other) = existing
        .iter()
        .find(|r| r.dst == req.dst && r.table != table)
    {
        return Err(Error::Invalid(format!(
            "{} already has a tunnel in table {}; one prefix has one tunnel per namespace",
            req.dst,
            table_name(other.table)
        )));
    }
    if let Some(other) = existing
        .iter()
        .find(|r| r.dst == req.dst && r.table == table && r.hook != req.hook)
    {
        return Err(Error::Invalid(format!(
            "{} is encapsulated on hook {}; `lwt encap del` it before moving it to hook {}",
            req.dst, other.hook, req.hook
        )));
    }
    ensure_maps(&pins)?;
    let previous = existing
        .iter()
        .find(|r| r.dst == req.dst && r.table == table)
        .cloned();
    let counter = previous.as_ref().map(|p| p.counter).unwrap_or_else(|| {
        (1..MAX_TUNNELS)
            .find(|c| existing.iter().all(|r| r.counter != *c))
            .unwrap_or(MAX_TUNNELS - 1)
    });
    let mut entry = EncapEntry {
        len: header.bytes.len() as u16,
        flags: header.flags,
        counter,
        header: [0; MAX_HEADER],
    };
    entry.header[..header.bytes.len()].copy_from_slice(&header.bytes);
    let tunnels = MapHandle::from_pinned_path(pins.join("tunnels"))
        .map_err(|_| Error::MissingPin(pins.join("tunnels")))?;
    // SAFETY: EncapEntry is plain data.
    let value = unsafe {
        std::slice::from_raw_parts(
            (&entry as *const EncapEntry).cast::<u8>(),
            size_of::<EncapEntry>(),
        )
    };
    let key = key_of(&req.dst);
    let old_value = tunnels.lookup(&key, MapFlags::ANY).ok().flatten();
    tunnels
        .update(&key, value, MapFlags::ANY)
        .map_err(|e| state_err(&pins, e))?;
    if previous.is_none() {
        let stats = MapHandle::from_pinned_path(pins.join("stats"))
            .map_err(|_| Error::MissingPin(pins.join("stats")))?;
        let cpus = libbpf_rs::num_possible_cpus().map_err(|e| state_err(&pins, e))?;
        let zero = vec![vec![0u8; size_of::<EncapStats>()]; cpus];
        let _ = stats.update_percpu(&counter.to_ne_bytes(), &zero, MapFlags::ANY);
    }
    // Same route shape as before (device, hook, header size): the map
    // update above is the whole change; the program stays.
    let same_route = previous.as_ref().is_some_and(|p| {
        p.dev == req.dev && p.hook == req.hook && p.header_len == header.bytes.len()
    });
    let current = if same_route {
        current_attachment(&req.dst, table, req.hook)
    } else {
        None
    };
    // One program serves every route of a kind: share a sibling's (same
    // type, hook and header size, so the same route name fits both).
    let source = existing
        .iter()
        .filter(|r| {
            r.dst != req.dst
                && r.spec.kind == req.spec.kind
                && r.hook == req.hook
                && r.header_len == header.bytes.len()
        })
        .find_map(|r| shared_source(&r.dst, r.table, r.hook))
        .unwrap_or_else(|| ProgramSource::Encap {
            kind: req.spec.kind.to_string(),
            maps: pins.clone(),
        });
    let attached = match current {
        Some(a) => Ok(a),
        None => attach::attach(&AttachRequest {
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
        }),
    };
    let attached = match attached {
        Ok(a) => a,
        Err(e) => {
            // Put the map back as it was.
            let _ = match old_value {
                Some(v) => tunnels.update(&key, &v, MapFlags::ANY),
                None => tunnels.delete(&key),
            };
            return Err(e);
        }
    };
    let record = TunnelRecord {
        dst: req.dst,
        table,
        dev: req.dev,
        hook: req.hook,
        spec: req.spec,
        counter,
        header_len: header.bytes.len(),
    };
    fs::create_dir_all(&dir).map_err(|e| state_err(&dir, e))?;
    let path = dir.join(format!("{}.json", RouteRecord::key(&req.dst, table)));
    fs::write(
        &path,
        serde_json::to_vec_pretty(&record).map_err(|e| state_err(&path, e))?,
    )
    .map_err(|e| state_err(&path, e))?;
    Ok(attached)
}

/// The pinned program of another tunnel's route, to share.
fn shared_source(dst: &IpNet, table: u32, hook: Hook) -> Option<ProgramSource> {
    let state = NetnsState::open_existing(std::path::Path::new(system::BPFFS)).ok()??;
    let record = state.load(&RouteRecord::key(dst, table)).ok()??;
    let h = record.hooks.get(&hook)?;
    h.pin.exists().then(|| ProgramSource::Shared {
        pin: h.pin.clone(),
        name: h.name.clone(),
        origin: h.origin.clone(),
    })
}

/// What is attached to the route now, if lwtkit's records and pins say so.
fn current_attachment(dst: &IpNet, table: u32, hook: Hook) -> Option<Attached> {
    let state = NetnsState::open_existing(std::path::Path::new(system::BPFFS)).ok()??;
    let record = state.load(&RouteRecord::key(dst, table)).ok()??;
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
    let table = table.unwrap_or_else(|| ops::default_table(false));
    let (dir, pins) = paths()?;
    let path = dir.join(format!("{}.json", RouteRecord::key(&dst, table)));
    let record: TunnelRecord = fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| {
            Error::Invalid(format!(
                "no lwtkit tunnel for {dst} table {}",
                table_name(table)
            ))
        })?;
    let done = attach::detach(&DetachRequest {
        dst,
        dev: None,
        hook: Some(record.hook),
        table: Some(table),
        local: false,
    })?;
    if let Ok(tunnels) = MapHandle::from_pinned_path(pins.join("tunnels")) {
        let _ = tunnels.delete(&key_of(&dst));
    }
    fs::remove_file(&path).map_err(|e| state_err(&path, e))?;
    Ok(done)
}

/// Packets the namespace's encapsulation dropped before finding a tunnel
/// (no tunnel for their destination, or not IP): counted once per
/// namespace, not per route.
pub fn unrouted() -> Result<EncapStats> {
    let (_, pins) = paths()?;
    Ok(MapHandle::from_pinned_path(pins.join("stats"))
        .map(|m| read_stats(&m, lwtkit_common::encap::NO_TUNNEL_SLOT))
        .unwrap_or_default())
}

/// The tunnels lwtkit keeps in this namespace, as recorded.
pub fn tunnels() -> Result<Vec<TunnelRecord>> {
    let (dir, _) = paths()?;
    Ok(records(&dir))
}

/// `lwt encap list`: every tunnel with its counters.
pub fn list() -> Result<Vec<TunnelView>> {
    let (dir, pins) = paths()?;
    let stats = MapHandle::from_pinned_path(pins.join("stats")).ok();
    Ok(records(&dir)
        .into_iter()
        .map(|r| {
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
