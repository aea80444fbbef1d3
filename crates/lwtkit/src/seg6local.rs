//! `lwt seg6local`: SRv6 `End.BPF` behaviours on local SIDs — a seg6local
//! route whose action runs a BPF program (lwtkit's `end` / `end-dt6`, or a
//! program of an object file), pinned and recorded like every lwtkit hook.
use ipnet::IpNet;
use lwtkit_common::{maps, pins};
use netlink_packet_route::route::RouteAttribute;
use serde::{Deserialize, Serialize};

use crate::{
    attach::ifindex,
    error::{AttachError, Error, LoadError, Result},
    inventory::read_counters,
    loader::{self, BuiltinSpec, EndBpfSource},
    ns::{self, failpoint, store, Intent, Namespace, Outcome, Probe, Step, Txn},
    route::{
        codec::{BpfProgAttr, Seg6LocalBpf},
        kernel::{marks, Marks, RouteTable},
        netlink::Rtnl,
        ops::{self, NewRoute, RouteKey},
        table::{table_name, RT_TABLE_MAIN},
    },
    state::{Origin, RouteRecord},
    system,
};

/// What `lwt seg6local` refuses.
#[derive(Debug, thiserror::Error)]
pub enum Seg6Error {
    /// `--dt6-table` with another behaviour (the flag that was given instead).
    #[error("--dt6-table applies only to --builtin end-dt6 (the table End.DT6 looks decapsulated packets up in), not to {given}")]
    Dt6TableWithout { given: String },
    #[error("--prog-type applies only to --obj; built-ins have their type")]
    ProgTypeWithoutObj,
    /// A route of that SID and table that lwtkit did not add.
    #[error("route {0} exists and is not a SID lwtkit added; remove it first")]
    NotOurs(String),
}

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
            return Err(Seg6Error::Dt6TableWithout {
                given: match (&self.builtin, &self.object) {
                    (Some(b), _) => format!("--builtin {b}"),
                    _ => "--obj".to_string(),
                },
            }
            .into());
        }
        if self.force_type && self.object.is_none() {
            return Err(Seg6Error::ProgTypeWithoutObj.into());
        }
        Ok(())
    }
}

impl Seg6Request {
    /// The End.BPF program to load: a behaviour of the `seg6` built-in
    /// (`end`, or `end-dt6` with its lookup table written into its map) or
    /// a program of an object file.
    pub fn program(&self) -> Result<EndBpfSource> {
        match (&self.builtin, &self.object) {
            (Some(name), None) => {
                let entry = match name.as_str() {
                    "end" => "seg6_end",
                    "end-dt6" => "seg6_end_dt6",
                    _ => {
                        return Err(
                            LoadError::UnknownBuiltin(name.clone(), "end, end-dt6".into()).into(),
                        )
                    }
                };
                let table = self.dt6_table.unwrap_or(RT_TABLE_MAIN);
                let values = if name == "end-dt6" {
                    vec![(
                        maps::seg6::DT6_TABLE.into(),
                        0u32.to_ne_bytes().to_vec(),
                        table.to_ne_bytes().to_vec(),
                    )]
                } else {
                    Vec::new()
                };
                Ok(EndBpfSource::Builtin {
                    spec: BuiltinSpec {
                        name: "seg6".into(),
                        route_name: format!("lwtkit-{name}"),
                        maps_to_reuse: Vec::new(),
                        constants: Vec::new(),
                        origin: Origin::Builtin { name: name.clone() },
                    },
                    entry: entry.into(),
                    values,
                })
            }
            (None, Some((path, section))) => Ok(EndBpfSource::Object {
                path: path.clone(),
                section: section.clone(),
                force_type: self.force_type,
            }),
            _ => Err(
                LoadError::ProgramSelection("give exactly one of --builtin and --obj".into())
                    .into(),
            ),
        }
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
    /// The table `end-dt6` looks decapsulated packets up in (records
    /// written before it was kept: main, the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dt6_table: Option<u32>,
    /// SHA-256 (hex) of the object file of an object's program (as
    /// [`crate::state::HookRecord::object_sha256`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_sha256: Option<String>,
}

/// A SID as `lwt seg6local add/list` show it, in the keys every verb
/// uses (`dst`, `table` by name, `origin` in words); pins stay inside.
#[derive(Clone, Debug, Serialize)]
pub struct SidView {
    #[serde(skip)]
    pub record: SidRecord,
    pub dst: IpNet,
    pub table: String,
    pub dev: String,
    pub name: String,
    pub origin: String,
    pub packets: u64,
    pub bytes: u64,
    pub dropped: u64,
}

impl SidView {
    /// The view of `record`, with the counters read (0 when unreadable).
    pub fn of(record: SidRecord) -> Self {
        let c = record
            .counters
            .as_deref()
            .and_then(|p| read_counters(p).ok())
            .unwrap_or_default();
        let slot = |i: usize| c.get(i).copied().unwrap_or_default();
        Self {
            dst: record.sid,
            table: table_name(record.table),
            dev: record.dev.clone(),
            name: record.name.clone(),
            origin: record.origin.to_string(),
            packets: slot(0).packets + slot(1).packets,
            bytes: slot(0).bytes + slot(1).bytes,
            dropped: slot(1).packets,
            record,
        }
    }
}

impl crate::ns::Record for SidRecord {
    const DIR: &'static str = "seg6local";
    fn key(&self) -> String {
        RouteRecord::key(&self.sid, self.table)
    }
}

impl SidRecord {
    /// What the SID's route carries while it is lwtkit's.
    fn marks(&self) -> Marks {
        Marks::from([("seg6local".to_string(), self.name.clone())])
    }
}

/// `lwt seg6local add`: a seg6local End.BPF route for the SID.
pub fn add(req: &Seg6Request) -> Result<SidRecord> {
    req.validate()?;
    system::require_attach_privileges("lwt seg6local add")?;
    let ns = Namespace::open()?;
    let txn = ns.begin("lwt seg6local add")?;
    add_in(&txn, &mut Rtnl::open()?, req)
}

/// [`add`] inside a transaction the caller holds.
pub fn add_in(txn: &Txn, rtnl: &mut Rtnl, req: &Seg6Request) -> Result<SidRecord> {
    req.validate()?;
    if !req.sid.addr().is_ipv6() {
        return Err(Error::InvalidPrefix(format!(
            "`{}`: a SID is an IPv6 address or prefix",
            req.sid
        )));
    }
    let oif = ifindex(&req.dev)?;
    let table = req.table.unwrap_or(RT_TABLE_MAIN);
    let key = RouteKey {
        dst: req.sid,
        table,
    };
    let skey = RouteRecord::key(&req.sid, table);
    let pins = txn.pin_root().join(pins::SEG6LOCAL);
    let existing = rtnl.lookup(&key)?;
    // A record whose route was removed or rewritten meanwhile is stale.
    let mut ours = false;
    if let Some(record) = txn.get::<SidRecord>(&skey)? {
        ours = existing.as_ref().map(marks) == Some(record.marks());
        if !ours {
            ns::intent::apply(&[
                Step::RemoveTree {
                    path: pins.join(&skey),
                },
                txn.remove_step::<SidRecord>(&skey),
            ])?;
        }
    }
    if existing.is_some() && !ours {
        return Err(Seg6Error::NotOurs(key.to_string()).into());
    }
    let mut loaded = loader::load_seg6local(&req.program()?)?;
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
    route.attributes.extend(bpf.encode()?);
    // The pins are staged once the intent is written (its undone side
    // removes them), before the route changes.
    let stage = pins.join(format!("{skey}_next"));
    let live = pins.join(&skey);
    let record = SidRecord {
        sid: req.sid,
        table,
        dev: req.dev.clone(),
        name: loaded.route_name.clone(),
        origin: loaded.origin.clone(),
        pin: live.join(pins::program::PROG),
        counters: loaded
            .has_counters()
            .then(|| live.join(pins::program::COUNTERS)),
        dt6_table: (req.builtin.as_deref() == Some("end-dt6"))
            .then(|| req.dt6_table.unwrap_or(RT_TABLE_MAIN)),
        object_sha256: loaded.object_sha256.clone(),
    };
    let mut intent = Intent::new(
        "lwt seg6local add",
        Probe::Route {
            dst: key.dst,
            table,
            after: Some(record.marks()),
        },
    );
    intent.done = vec![
        Step::Rename {
            from: stage.clone(),
            to: live,
        },
        txn.put_step(&record)?,
    ];
    intent.undone = vec![Step::RemoveTree {
        path: stage.clone(),
    }];
    let pending = txn.intend(intent)?;
    failpoint("seg6local-add:intent");
    let staged = store::remove_tree(&stage)
        .and_then(|()| store::ensure_dir(&stage))
        .and_then(|()| loaded.pin(&stage));
    if let Err(e) = staged {
        txn.finish(pending, Outcome::Undone)?;
        return Err(e);
    }
    failpoint("seg6local-add:staged");
    let sent = if ours {
        rtnl.replace(route)
    } else {
        rtnl.create(route)
    };
    failpoint("seg6local-add:route");
    match sent {
        Ok(()) => txn.finish(pending, Outcome::Done)?,
        Err(e) => {
            txn.finish(pending, Outcome::Undone)?;
            return Err(AttachError::Route {
                route: key.to_string(),
                reason: e,
            }
            .into());
        }
    }
    Ok(record)
}

/// `lwt seg6local del`: removes the SID's route and its pins.
pub fn del(sid: IpNet, table: Option<u32>) -> Result<SidRecord> {
    system::require_attach_privileges("lwt seg6local del")?;
    let ns = Namespace::open()?;
    let txn = ns.begin("lwt seg6local del")?;
    del_in(&txn, &mut Rtnl::open()?, sid, table)
}

/// [`del`] inside a transaction the caller holds. A SID route removed or
/// rewritten outside lwtkit is left as it is; only lwtkit's records go.
pub fn del_in(txn: &Txn, rtnl: &mut Rtnl, sid: IpNet, table: Option<u32>) -> Result<SidRecord> {
    let table = table.unwrap_or(RT_TABLE_MAIN);
    let key = RouteKey { dst: sid, table };
    let skey = RouteRecord::key(&sid, table);
    let record: SidRecord = txn
        .get(&skey)?
        .ok_or_else(|| AttachError::NotManaged(format!("{sid} table {}", table_name(table))))?;
    // The pins first: a kill in between leaves a record that accounts for them.
    let forget = vec![
        Step::RemoveTree {
            path: txn.pin_root().join(pins::SEG6LOCAL).join(&skey),
        },
        txn.remove_step::<SidRecord>(&skey),
    ];
    let current = rtnl.lookup(&key)?;
    let Some(current) = current else {
        ns::intent::apply(&forget)?;
        return Ok(record);
    };
    let found = marks(&current);
    if found != record.marks() {
        ns::intent::apply(&forget)?;
        return Err(AttachError::Drift {
            route: key.to_string(),
            expected: format!("seg6local `{}`", record.name),
            found: format!("{found:?}"),
            hint: "",
        }
        .into());
    }
    let mut intent = Intent::new(
        "lwt seg6local del",
        Probe::Route {
            dst: sid,
            table,
            after: None,
        },
    );
    intent.done = forget;
    let pending = txn.intend(intent)?;
    failpoint("seg6local-del:intent");
    let sent = rtnl.delete(&current);
    failpoint("seg6local-del:route");
    match sent {
        Ok(()) => txn.finish(pending, Outcome::Done)?,
        Err(e) if e.errno() == Some(libc::ESRCH) => txn.finish(pending, Outcome::Done)?,
        Err(e) => {
            txn.finish(pending, Outcome::Undone)?;
            return Err(AttachError::Route {
                route: sid.to_string(),
                reason: e,
            }
            .into());
        }
    }
    Ok(record)
}

/// `lwt seg6local list`: lwtkit's SIDs with their counters.
pub fn list() -> Result<Vec<SidView>> {
    // lwtkit's records and pins are root's: say so, not "nothing here".
    system::require_attach_privileges("lwt seg6local list")?;
    let mut out: Vec<SidView> = Namespace::open_readonly()?
        .all::<SidRecord>()?
        .into_iter()
        .map(SidView::of)
        .collect();
    out.sort_by_key(|v| v.record.sid.to_string());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(builtin: Option<&str>, dt6_table: Option<u32>) -> Seg6Request {
        Seg6Request {
            sid: "fc00::b/128".parse().expect("sid"),
            dev: "vb".into(),
            builtin: builtin.map(Into::into),
            object: None,
            table: None,
            dt6_table,
            force_type: false,
        }
    }

    #[test]
    fn end_dt6_carries_its_table_into_the_seg6_builtin() {
        let Ok(EndBpfSource::Builtin {
            spec,
            entry,
            values,
        }) = request(Some("end-dt6"), Some(100)).program()
        else {
            panic!("end-dt6 is a built-in behaviour");
        };
        assert_eq!(
            (spec.name.as_str(), spec.route_name.as_str(), entry.as_str()),
            ("seg6", "lwtkit-end-dt6", "seg6_end_dt6")
        );
        assert_eq!(
            values,
            vec![(
                maps::seg6::DT6_TABLE.to_string(),
                0u32.to_ne_bytes().to_vec(),
                100u32.to_ne_bytes().to_vec()
            )]
        );
        let Ok(EndBpfSource::Builtin { values, .. }) = request(Some("end"), None).program() else {
            panic!("end is a built-in behaviour");
        };
        assert!(values.is_empty());
        assert!(matches!(
            request(Some("end-x"), None).program(),
            Err(Error::Load(LoadError::UnknownBuiltin(..)))
        ));
    }
}
