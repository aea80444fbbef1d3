//! `lwt seg6local`: SRv6 `End.BPF` behaviours on local SIDs — a seg6local
//! route whose action runs a BPF program (lwtkit's `end` / `end-dt6`, or a
//! program of an object file), pinned and recorded like every lwtkit hook.
use std::{fs, path::Path};

use ipnet::IpNet;
use netlink_packet_route::route::RouteAttribute;
use serde::{Deserialize, Serialize};

use crate::{
    attach::ifindex,
    error::{Error, Result},
    inventory::read_counters,
    loader,
    route::{
        codec::{BpfProgAttr, Seg6LocalBpf},
        netlink::Rtnl,
        ops::{self, NewRoute, RouteKey},
        table::{table_name, RT_TABLE_MAIN},
    },
    state::{NetnsState, Origin, RouteRecord},
    system,
};

/// What `lwt seg6local add` asks for.
#[derive(Clone, Debug)]
pub struct Seg6Request {
    pub sid: IpNet,
    pub dev: String,
    pub builtin: Option<String>,
    pub object: Option<(std::path::PathBuf, Option<String>)>,
    pub table: Option<u32>,
    /// The table `end-dt6` looks decapsulated packets up in.
    pub dt6_table: Option<u32>,
    /// Load the object's program as `lwt_seg6local` whatever its section
    /// says (`--prog-type lwt_seg6local`); the verifier judges it.
    pub force_type: bool,
}

impl Seg6Request {
    /// Refuses flags that do not fit the behaviour and tables that are not
    /// tables, before anything is loaded or changed.
    pub fn validate(&self) -> Result<()> {
        use crate::validate::table_id;
        table_id("--table", self.table).map_err(Error::Invalid)?;
        table_id("--dt6-table", self.dt6_table).map_err(Error::Invalid)?;
        if self.dt6_table.is_some() && self.builtin.as_deref() != Some("end-dt6") {
            return Err(Error::Invalid(format!(
                "--dt6-table applies only to --builtin end-dt6 (the table End.DT6 looks decapsulated packets up in), not to {}",
                match (&self.builtin, &self.object) {
                    (Some(b), _) => format!("--builtin {b}"),
                    _ => "--obj".to_string(),
                }
            )));
        }
        if self.force_type && self.object.is_none() {
            return Err(Error::Invalid(
                "--prog-type applies only to --obj; built-ins have their type".into(),
            ));
        }
        Ok(())
    }
}

/// A SID lwtkit manages.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SidRecord {
    pub sid: IpNet,
    pub table: u32,
    pub dev: String,
    pub name: String,
    pub origin: Origin,
    pub pin: std::path::PathBuf,
    pub counters: Option<std::path::PathBuf>,
}

/// A SID as `lwt seg6local list` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct SidView {
    #[serde(flatten)]
    pub record: SidRecord,
    pub table_name: String,
    pub packets: u64,
    pub bytes: u64,
    pub dropped: u64,
}

fn dirs(state: &NetnsState) -> (std::path::PathBuf, std::path::PathBuf) {
    (
        state.dir().join("seg6local"),
        state.pin_root().join("seg6local"),
    )
}

fn err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::State {
        path: path.into(),
        reason: e.to_string(),
    }
}

/// `lwt seg6local add`: a seg6local End.BPF route for the SID.
pub fn add(req: &Seg6Request) -> Result<SidRecord> {
    req.validate()?;
    system::require_attach_privileges("lwt seg6local add")?;
    if !req.sid.addr().is_ipv6() {
        return Err(Error::InvalidPrefix(format!(
            "`{}`: a SID is an IPv6 address or prefix",
            req.sid
        )));
    }
    let oif = ifindex(&req.dev)?;
    let bpffs = system::ensure_bpffs()?;
    let state = NetnsState::open(&bpffs)?;
    let table = req.table.unwrap_or(RT_TABLE_MAIN);
    let key = RouteKey {
        dst: req.sid,
        table,
    };
    let skey = RouteRecord::key(&req.sid, table);
    let (dir, pins) = dirs(&state);
    let record_path = dir.join(format!("{skey}.json"));
    let mut rtnl = Rtnl::open()?;
    if ops::find(&mut rtnl, &key)?.is_some() && !record_path.exists() {
        return Err(Error::Invalid(format!(
            "route {key} exists and is not a SID lwtkit added; remove it first"
        )));
    }
    let mut loaded = loader::load_seg6local(
        req.builtin.as_deref(),
        req.object
            .as_ref()
            .map(|(p, s)| (p.as_path(), s.as_deref())),
        req.dt6_table.unwrap_or(RT_TABLE_MAIN),
        req.force_type,
    )?;
    let bpf = Seg6LocalBpf {
        prog: BpfProgAttr {
            fd: Some(std::os::fd::AsRawFd::as_raw_fd(&loaded.fd()) as u32),
            name: loaded.route_name.clone(),
        },
        id: None,
    };
    let mut route = ops::new_route(&NewRoute {
        key: key.clone(),
        local: false,
        oif,
        via: None,
    });
    route
        .attributes
        .retain(|a| !matches!(a, RouteAttribute::Gateway(_)));
    route
        .attributes
        .extend(bpf.encode().map_err(|e| Error::Invalid(e.to_string()))?);
    let stage = pins.join(format!("{skey}_next"));
    let _ = fs::remove_dir_all(&stage);
    fs::create_dir_all(&stage).map_err(|e| err(&stage, e))?;
    let staged = loaded.pin(&stage)?;
    if let Err(e) = ops::replace(&mut rtnl, route) {
        let _ = fs::remove_dir_all(&stage);
        return Err(Error::Route {
            route: key.to_string(),
            reason: e,
        });
    }
    let live = pins.join(&skey);
    let _ = fs::remove_dir_all(&live);
    fs::rename(&stage, &live).map_err(|e| err(&live, e))?;
    let record = SidRecord {
        sid: req.sid,
        table,
        dev: req.dev.clone(),
        name: staged.name,
        origin: staged.origin,
        pin: live.join("prog"),
        counters: staged.counters.map(|_| live.join("counters")),
    };
    fs::create_dir_all(&dir).map_err(|e| err(&dir, e))?;
    fs::write(
        &record_path,
        serde_json::to_vec_pretty(&record).map_err(|e| err(&record_path, e))?,
    )
    .map_err(|e| err(&record_path, e))?;
    Ok(record)
}

/// `lwt seg6local del`: removes the SID's route and its pins.
pub fn del(sid: IpNet, table: Option<u32>) -> Result<SidRecord> {
    system::require_attach_privileges("lwt seg6local del")?;
    let bpffs = system::ensure_bpffs()?;
    let state = NetnsState::open(&bpffs)?;
    let table = table.unwrap_or(RT_TABLE_MAIN);
    let skey = RouteRecord::key(&sid, table);
    let (dir, pins) = dirs(&state);
    let record_path = dir.join(format!("{skey}.json"));
    let record: SidRecord = fs::read(&record_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| Error::NotManaged(format!("{sid} table {}", table_name(table))))?;
    let mut rtnl = Rtnl::open()?;
    if let Some(current) = ops::find(&mut rtnl, &RouteKey { dst: sid, table })? {
        ops::delete(&mut rtnl, &current).map_err(|e| Error::Route {
            route: sid.to_string(),
            reason: e,
        })?;
    }
    let _ = fs::remove_dir_all(pins.join(&skey));
    fs::remove_file(&record_path).map_err(|e| err(&record_path, e))?;
    Ok(record)
}

/// `lwt seg6local list`: lwtkit's SIDs with their counters.
pub fn list() -> Result<Vec<SidView>> {
    let bpffs = Path::new(system::BPFFS);
    let Some(state) = NetnsState::open_existing(bpffs)? else {
        return Ok(Vec::new());
    };
    let (dir, _) = dirs(&state);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let Some(record) = fs::read(e.path())
            .ok()
            .and_then(|b| serde_json::from_slice::<SidRecord>(&b).ok())
        else {
            continue;
        };
        let c = record
            .counters
            .as_deref()
            .and_then(|p| read_counters(p).ok())
            .unwrap_or_default();
        let slot = |i: usize| c.get(i).copied().unwrap_or_default();
        out.push(SidView {
            table_name: table_name(record.table),
            packets: slot(0).packets + slot(1).packets,
            bytes: slot(0).bytes + slot(1).bytes,
            dropped: slot(1).packets,
            record,
        });
    }
    out.sort_by_key(|v| v.record.sid.to_string());
    Ok(out)
}
