//! `lwt attach` and `lwt detach`: put a program on a route's hook, keeping
//! the hooks lwtkit attached earlier, and take it off again, restoring the
//! route exactly as it was before lwtkit first touched it, but only while
//! the route is still lwtkit's.
//!
//! Every change runs in a namespace transaction ([`crate::ns::Txn`]):
//! everything that can fail on user input (device, object, verifier)
//! happens first; then an intent records what is about to happen (the
//! route as it was included); then one route message changes the kernel
//! (create is exclusive, replace never creates); then the bookkeeping of
//! the intent is applied. A kill anywhere is finished by the next command.
//!
//! Each hook has one owner ([`Owner`]): `lwt attach`, a filter policy or a
//! tunnel. A feature never replaces or removes another's hook.
use std::{
    net::IpAddr,
    os::fd::{AsRawFd, OwnedFd},
};

use ipnet::IpNet;
use libbpf_rs::ProgramHandle;
use lwtkit_common::pins;
use netlink_packet_route::route::{RouteAttribute, RouteMessage, RouteMetric, RouteType};

use crate::{
    error::{Error, Result, StateError, SystemError},
    hook::Hook,
    loader::{self, ProgramSource},
    ns::{self, failpoint, Intent, Namespace, Outcome, Probe, Step, Txn},
    route::{
        codec::{BpfProgAttr, CodecError, LwtBpf, MAX_HEADROOM},
        encap,
        kernel::{marks, Marks, RouteTable},
        netlink::{NetlinkError, Rtnl},
        ops::{self, NewRoute, RouteKey},
        table::{table_name, RT_TABLE_LOCAL},
    },
    state::{HookRecord, Owner, RouteRecord},
    system,
};

/// Routes lwtkit will not change (it could not put them back exactly, or
/// another owner holds the hook), or does not manage.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("headroom {0} is over the kernel's limit of 256 bytes (LWT_BPF_MAX_HEADROOM)")]
    Headroom(u32),
    /// The route, as `lwt` names it.
    #[error("route {0} is not managed by lwtkit (nothing lwtkit attached there); see `lwt list`")]
    NotManaged(String),
    #[error("route {route}: lwtkit attached there on dev {managed}, not {given}")]
    WrongDevice {
        route: String,
        managed: String,
        given: String,
    },
    #[error("route {route} carries a BPF `{hook}` program that lwtkit did not attach (`{name}`); lwtkit could not put it back on detach (a dump names programs but gives no handle to them), so remove it first (`ip route` can)")]
    ForeignHook {
        route: String,
        hook: Hook,
        name: String,
    },
    #[error("route {route} has no `{hook}` hook attached by lwtkit")]
    HookNotAttached { route: String, hook: Hook },
    /// The kernel refused the route change.
    #[error("route {route}: {reason}")]
    Route { route: String, reason: NetlinkError },
    #[error("route {route} was changed outside lwtkit: it should carry {expected} but carries {found}. lwtkit left the route untouched and dropped its own records of it{hint}")]
    Drift {
        route: String,
        expected: String,
        found: String,
        hint: &'static str,
    },
    #[error("hook `{hook}` of route {route} belongs to {owner}; {verb} will not replace or remove it (`{remover}` does)")]
    OwnedHook {
        route: String,
        hook: Hook,
        owner: String,
        verb: String,
        remover: String,
    },
    /// A `local` route outside table `local` (without `force`): the table's
    /// name, the prefix.
    #[error("--local with table {table}: lwtkit would put a local route for {dst} in table {table}, and the host would then accept traffic for {dst} as its own; attach to the address's route in table local (drop --table), or pass --force if that is what you want")]
    LocalOutsideTableLocal { table: String, dst: IpNet },
    #[error("route {0} is a multipath route; its encaps live on each next hop, which lwtkit does not attach to")]
    Multipath(String),
    #[error("route {route} exists on another device (ifindex {ifindex}); lwtkit will not move it, pass that device with --dev")]
    OtherDevice { route: String, ifindex: u32 },
    #[error("route {0} exists with another gateway; lwtkit will not change it (drop --via)")]
    OtherGateway(String),
    /// `--local` given for a route that is not local, or not given for one that is.
    #[error("route {route} exists and is {}a local route; {}", not_unless(.is_local), if_local(.is_local))]
    LocalMismatch { route: String, is_local: bool },
    #[error("route {0} is an IPv6 route of metric 0 (made by the kernel); the kernel turns metric 0 into 1024 on every add or replace, so it cannot be replaced in place")]
    MetricZero(String),
    /// Another encap type (its iproute2 name) than BPF.
    #[error("route {route} carries a `{kind}` encap; a route has one encap, and lwtkit will not replace it with BPF")]
    ForeignEncap { route: String, kind: &'static str },
    #[error("route {route}: {reason}")]
    UnreadableEncap { route: String, reason: CodecError },
}

fn not_unless(is_local: &bool) -> &'static str {
    if *is_local {
        ""
    } else {
        "not "
    }
}

fn if_local(is_local: &bool) -> &'static str {
    if *is_local {
        "pass --local"
    } else {
        "drop --local"
    }
}

/// What `lwt attach` asks for.
#[derive(Clone, Debug)]
pub struct AttachRequest {
    pub dst: IpNet,
    pub dev: String,
    pub hook: Hook,
    pub source: ProgramSource,
    pub headroom: Option<u32>,
    pub table: Option<u32>,
    pub local: bool,
    pub via: Option<IpAddr>,
    /// Lower the route's MTU (and advertised MSS) by this many bytes below
    /// the device's, so encapsulated TCP never needs fragmenting.
    pub mtu_reduction: Option<u32>,
    /// Allow what is refused as probably a mistake: a `local` route
    /// outside table `local`.
    pub force: bool,
}

/// What an attach did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Attached {
    pub route: String,
    pub dst: IpNet,
    pub table: String,
    pub hook: Hook,
    pub name: String,
    pub id: u32,
    pub tag: String,
    /// This attach created the route (it did not exist).
    pub created: bool,
}

/// What `lwt detach` asks for.
#[derive(Clone, Debug)]
pub struct DetachRequest {
    pub dst: IpNet,
    pub dev: Option<String>,
    pub hook: Option<Hook>,
    pub table: Option<u32>,
    pub local: bool,
    /// Restore or delete the route even if it no longer carries lwtkit's programs.
    pub force: bool,
    /// Whose hooks to take off: `None` takes every owner's (reset).
    pub owner: Option<Owner>,
}

impl DetachRequest {
    /// `lwt detach`'s request: the hooks `lwt attach` put there.
    pub fn new(dst: IpNet, table: Option<u32>, local: bool) -> Self {
        Self {
            dst,
            dev: None,
            hook: None,
            table,
            local,
            force: false,
            owner: Some(Owner::Attach),
        }
    }
}

/// What a detach did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Detached {
    pub route: String,
    pub dst: IpNet,
    /// The table's name (`main`, `local`, or the number).
    pub table: String,
    pub hooks: Vec<Hook>,
    /// `restored`: back to the route as it was; `deleted`: lwtkit had
    /// created it; `kept`: other lwtkit hooks remain; `gone`: the route had
    /// vanished (device or address removed), so only lwtkit's records went.
    pub route_now: &'static str,
    /// What else the user should know (hooks of other owners that remain).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Parses a prefix as `ip route` does: `ADDR/LEN`, or a bare address as a
/// host route. Host bits set beyond the length are an error.
pub fn parse_prefix(s: &str) -> Result<IpNet> {
    let net: IpNet = match s.parse::<IpNet>() {
        Ok(n) => n,
        Err(_) => s.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
            Error::InvalidPrefix(format!(
                "`{s}`: expected ADDRESS/LEN, e.g. 10.0.0.3/32 or fc00::/64"
            ))
        })?,
    };
    if net.network() != net.addr() {
        return Err(Error::InvalidPrefix(format!(
            "`{s}`: host bits set; did you mean {}?",
            net.trunc()
        )));
    }
    Ok(net)
}

pub fn ifindex(dev: &str) -> Result<u32> {
    nix::net::if_::if_nametoindex(dev).map_err(|_| Error::UnknownDevice(dev.into()))
}

/// The route a request names.
pub fn route_key(dst: IpNet, table: Option<u32>, local: bool) -> RouteKey {
    RouteKey {
        dst,
        table: table.unwrap_or_else(|| ops::default_table(local)),
    }
}

fn check_request(req: &AttachRequest) -> Result<()> {
    if let Some(h) = req.headroom.filter(|h| *h > MAX_HEADROOM) {
        return Err(AttachError::Headroom(h).into());
    }
    if let Some(gw) = req.via {
        if gw.is_ipv4() != req.dst.addr().is_ipv4() {
            return Err(Error::InvalidAddress(format!(
                "{gw}: gateway family differs from {}",
                req.dst
            )));
        }
        crate::validate::host_address("--via", gw).map_err(Error::Invalid)?;
    }
    crate::validate::table_id("--table", req.table).map_err(Error::Invalid)?;
    check_local_table(req)?;
    Ok(())
}

/// Attaches the program `req` names to the route, creating the route or
/// replacing it in place.
pub fn attach(req: &AttachRequest) -> Result<Attached> {
    check_request(req)?;
    system::require_attach_privileges("lwt attach")?;
    let ns = Namespace::open()?;
    let txn = ns.begin("lwt attach")?;
    attach_in(&txn, &mut Rtnl::open()?, req)
}

/// How a record relates to the route the kernel holds now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// The route carries exactly the programs the record names.
    Ours,
    /// The route is gone (its device or address was removed, or someone deleted it).
    Gone,
    /// The route is there but carries other programs (or none).
    Drifted { found: Marks },
}

/// The marks a record says its route carries.
pub fn record_marks(record: &RouteRecord) -> Marks {
    record
        .hooks
        .iter()
        .map(|(h, r)| (h.to_string(), r.name.clone()))
        .collect()
}

/// Compares a record with the route now in the kernel.
pub fn standing(record: &RouteRecord, current: Option<&RouteMessage>) -> Standing {
    match current {
        None => Standing::Gone,
        Some(r) => {
            let found = marks(r);
            if found == record_marks(record) {
                Standing::Ours
            } else {
                Standing::Drifted { found }
            }
        }
    }
}

fn describe(m: &Marks) -> String {
    if m.is_empty() {
        "no BPF program".into()
    } else {
        m.iter()
            .map(|(h, n)| format!("{h} `{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The route's record if it still describes the kernel's route; a stale
/// record (route gone or changed by someone else) is dropped with its pins.
fn live_record(
    txn: &Txn,
    key: &RouteKey,
    current: Option<&RouteMessage>,
) -> Result<Option<RouteRecord>> {
    let skey = RouteRecord::key(&key.dst, key.table);
    let Some(record) = txn.get::<RouteRecord>(&skey)? else {
        return Ok(None);
    };
    match standing(&record, current) {
        Standing::Ours => Ok(Some(record)),
        other => {
            tracing::warn!(route = %key, ?other, "dropping lwtkit's stale record of a route changed outside lwtkit");
            forget(txn, &skey)?;
            Ok(None)
        }
    }
}

/// Drops a route's record and pins: the pins first, so that a kill in
/// between leaves a record that accounts for what is left.
fn forget(txn: &Txn, skey: &str) -> Result<()> {
    ns::intent::apply(&[
        Step::RemoveTree {
            path: txn.pin_root().join(skey),
        },
        txn.remove_step::<RouteRecord>(skey),
    ])
}

/// The owner a program source gives its hook.
pub fn owner_of(source: &ProgramSource) -> Owner {
    match source {
        ProgramSource::Builtin(spec) => spec.origin.owner(),
        ProgramSource::Shared { origin, .. } => origin.owner(),
        ProgramSource::Object { .. } | ProgramSource::Pinned(_) => Owner::Attach,
    }
}

fn verb_of(owner: &Owner) -> &'static str {
    match owner {
        Owner::Attach => "lwt attach",
        Owner::Filter(_) => "lwt filter",
        Owner::Encap => "lwt encap",
    }
}

/// What a feature adds to an attach or detach so that its own change is
/// part of the same intent: bookkeeping for either outcome, and a change
/// made after the intent is recorded and before the route changes (a
/// tunnel's map entry).
#[derive(Default)]
pub struct Extra<'a> {
    pub done: Vec<Step>,
    pub undone: Vec<Step>,
    #[allow(clippy::type_complexity)]
    pub before_route: Option<Box<dyn FnOnce() -> Result<()> + 'a>>,
}

/// [`attach`] inside a transaction the caller holds.
pub fn attach_in(txn: &Txn, rtnl: &mut Rtnl, req: &AttachRequest) -> Result<Attached> {
    attach_with(txn, rtnl, req, Extra::default())
}

/// [`attach_in`], with a feature's own change riding on the same intent.
pub fn attach_with(
    txn: &Txn,
    rtnl: &mut Rtnl,
    req: &AttachRequest,
    extra: Extra,
) -> Result<Attached> {
    check_request(req)?;
    let oif = ifindex(&req.dev)?;
    let key = route_key(req.dst, req.table, req.local);
    let skey = RouteRecord::key(&key.dst, key.table);
    let route_label = key.to_string();
    let existing = rtnl.lookup(&key)?;
    let record = live_record(txn, &key, existing.as_ref())?;
    // The kernel's own IPv6 local route (metric 0) cannot be replaced in
    // place: lwtkit stands in for it with a route of its own.
    let stand_in = req.local && existing.as_ref().is_some_and(is_kernel_ipv6_local);
    if let Some(existing) = &existing {
        check_existing_shape(existing, req, oif, &route_label, stand_in)?;
        check_foreign_encap(existing, record.as_ref(), &route_label)?;
    }
    let owner = owner_of(&req.source);
    if let Some(h) = record.as_ref().and_then(|r| r.hooks.get(&req.hook)) {
        let holder = h.origin.owner();
        if holder != owner {
            return Err(AttachError::OwnedHook {
                route: route_label,
                hook: req.hook,
                owner: holder.to_string(),
                verb: verb_of(&owner).into(),
                remover: holder.remover(&req.dst.to_string(), req.hook),
            }
            .into());
        }
    }

    let mut loaded = loader::load(&req.source, req.hook)?;

    let mut bpf = LwtBpf {
        headroom: req.headroom.or(record.as_ref().and_then(|r| r.headroom)),
        ..LwtBpf::default()
    };
    let kept_fds = match &record {
        Some(rec) => keep_hooks(rec, &[req.hook], &mut bpf)?,
        None => Vec::new(),
    };
    bpf.set_hook(
        req.hook,
        Some(BpfProgAttr {
            fd: Some(loaded.fd().as_raw_fd() as u32),
            name: loaded.route_name.clone(),
        }),
    );

    let mut route = match &existing {
        Some(r) => ops::without_encap(ops::sanitize(r)),
        None => ops::new_route(&NewRoute {
            key: key.clone(),
            local: req.local,
            oif,
            via: req.via,
        }),
    };
    ops::set_oif(&mut route, oif);
    if let Some(gw) = req.via {
        ops::set_gateway(&mut route, gw);
    }
    if stand_in {
        route
            .attributes
            .retain(|a| !matches!(a, RouteAttribute::Priority(_)));
        route
            .attributes
            .push(RouteAttribute::Priority(STAND_IN_METRIC));
    }
    route.attributes.extend(bpf.encode()?);
    if let Some(reduce) = req.mtu_reduction {
        let dev_mtu = crate::route::link::mtu(rtnl, oif)?.unwrap_or(1500);
        lower_mtu(&mut route, dev_mtu, reduce, req.dst.addr().is_ipv6());
    }

    // The pins are staged beside the live ones once the intent is written
    // (its undone side removes them), before the route changes.
    let route_pins = txn.pin_root().join(&skey);
    let stage = route_pins.join(format!("{}_next", req.hook.as_str()));
    let live = route_pins.join(req.hook.as_str());
    let hook_record = HookRecord {
        name: loaded.route_name.clone(),
        pin: live.join(pins::program::PROG),
        counters: loaded
            .has_counters()
            .then(|| live.join(pins::program::COUNTERS)),
        origin: loaded.origin.clone(),
        object_sha256: loaded.object_sha256.clone(),
    };
    let created = existing.is_none() || stand_in;
    let mut new_record = record.clone().unwrap_or_else(|| RouteRecord {
        dst: key.dst,
        table: key.table,
        local: existing
            .as_ref()
            .map_or(req.local, |r| r.header.kind == RouteType::Local),
        dev: req.dev.clone(),
        original: existing.as_ref().map(|r| ops::to_hex(&ops::sanitize(r))),
        headroom: None,
        hooks: Default::default(),
        mtu_hook: None,
        stand_in,
    });
    new_record.dev = req.dev.clone();
    new_record.headroom = bpf.headroom;
    new_record.hooks.insert(req.hook, hook_record.clone());
    if req.mtu_reduction.is_some() {
        new_record.mtu_hook = Some(req.hook);
    }

    let mut intent = Intent::new(
        "lwt attach",
        Probe::Route {
            dst: key.dst,
            table: key.table,
            after: Some(record_marks(&new_record)),
        },
    );
    intent.done = vec![
        Step::Rename {
            from: stage.clone(),
            to: live,
        },
        txn.put_step(&new_record)?,
    ];
    intent.undone = vec![
        Step::RemoveTree {
            path: stage.clone(),
        },
        Step::RemoveEmptyDir {
            path: route_pins.clone(),
        },
    ];
    if new_record.stand_in {
        intent.done.push(txn.put_step(&stand_in_watch(
            txn,
            &new_record,
            oif,
            vec![
                txn.remove_step::<RouteRecord>(&skey),
                Step::RemoveTree { path: route_pins },
            ],
        ))?);
    }
    if stand_in {
        // Until the kernel's route is gone, a lookup still finds it: a kill
        // in between takes lwtkit's away again.
        intent.undone.push(Step::DeleteRoute {
            route: ops::to_hex(&ops::without_encap(route.clone())),
            marks: record_marks(&new_record),
        });
    }
    intent.done.extend(extra.done);
    intent.undone.extend(extra.undone);
    let pending = txn.intend(intent)?;
    failpoint("attach:intent");
    // A failed pin changes nothing.
    let staged = ns::store::remove_tree(&stage)
        .and_then(|()| ns::store::ensure_dir(&stage))
        .and_then(|()| loaded.pin(&stage));
    if let Err(e) = staged {
        txn.finish(pending, Outcome::Undone)?;
        return Err(e);
    }
    failpoint("attach:staged");
    if let Some(change) = extra.before_route {
        if let Err(e) = change() {
            txn.finish(pending, Outcome::Undone)?;
            return Err(e);
        }
    }
    let sent = if stand_in {
        // lwtkit's route first (metric 1, behind the kernel's metric 0), then
        // the kernel's goes: the address is never without a local route.
        existing.as_ref().map_or(Ok(()), |kernels| {
            rtnl.create(route).and_then(|()| {
                failpoint("attach:stand-in");
                rtnl.delete(kernels)
            })
        })
    } else if created {
        rtnl.create(route)
    } else {
        rtnl.replace(route)
    };
    drop(kept_fds);
    failpoint("attach:route");
    if let Err(e) = sent {
        txn.finish(pending, Outcome::Undone)?;
        return Err(route_error(&route_label, e));
    }
    txn.finish(pending, Outcome::Done)?;

    let handle = ProgramHandle::from_pinned_path(&hook_record.pin)
        .map_err(|_| StateError::MissingPin(hook_record.pin.clone()))?;
    Ok(Attached {
        route: route_label,
        dst: key.dst,
        table: crate::route::table::table_name(key.table),
        hook: req.hook,
        name: hook_record.name,
        id: handle.id(),
        tag: hex(&handle.tag()),
        created,
    })
}

/// A `local` route makes the host accept traffic for its prefix from
/// whichever table it is in (IPv4 input takes any RTN_LOCAL lookup result
/// as local delivery), so one outside table `local` needs `force`.
fn check_local_table(req: &AttachRequest) -> Result<()> {
    let table = req.table.unwrap_or_else(|| ops::default_table(req.local));
    if !req.local || table == RT_TABLE_LOCAL || req.force {
        return Ok(());
    }
    Err(AttachError::LocalOutsideTableLocal {
        table: table_name(table),
        dst: req.dst,
    }
    .into())
}

/// The metric of lwtkit's stand-in for the kernel's IPv6 local route.
pub const STAND_IN_METRIC: u32 = 1;

/// The kernel's own `local` route of an IPv6 address: metric 0, which no
/// add or replace can produce (0 becomes 1024).
fn is_kernel_ipv6_local(r: &RouteMessage) -> bool {
    r.header.kind == RouteType::Local
        && r.header.address_family == netlink_packet_route::AddressFamily::Inet6
        && ops::metric_of(r) == 0
}

/// The watch that removes lwtkit's stand-in local route once its address
/// leaves the device ([`crate::ns::watch`]).
fn stand_in_watch(
    _txn: &Txn,
    record: &RouteRecord,
    ifindex: u32,
    forget: Vec<Step>,
) -> ns::watch::Watch {
    ns::watch::Watch {
        addr: record.dst.addr(),
        ifindex,
        dst: record.dst,
        table: record.table,
        marks: record_marks(record),
        metric: STAND_IN_METRIC,
        forget,
    }
}

/// Sets the route's MTU and advertised MSS `reduce` bytes below `dev_mtu`,
/// keeping every other metric (initcwnd, rto_min, locks, ...). The floor is
/// the family's minimum MTU (IPv6: 1280).
pub fn lower_mtu(route: &mut RouteMessage, dev_mtu: u32, reduce: u32, v6: bool) {
    let floor = if v6 { 1280 } else { 576 };
    let mtu = dev_mtu.saturating_sub(reduce).max(floor);
    let mut metrics = metrics_of(route);
    metrics.retain(|m| !matches!(m, RouteMetric::Mtu(_) | RouteMetric::Advmss(_)));
    metrics.push(RouteMetric::Mtu(mtu));
    metrics.push(RouteMetric::Advmss(tcp_mss(mtu, v6)));
    set_metrics(route, metrics);
}

/// The TCP payload of one segment on a route of MTU `mtu`, without TCP
/// options: the MTU less the IP (20 or 40 bytes) and TCP (20) headers.
pub fn tcp_mss(mtu: u32, v6: bool) -> u32 {
    mtu.saturating_sub(if v6 { 60 } else { 40 })
}

fn set_metrics(route: &mut RouteMessage, metrics: Vec<RouteMetric>) {
    route
        .attributes
        .retain(|a| !matches!(a, RouteAttribute::Metrics(_)));
    if !metrics.is_empty() {
        route.attributes.push(RouteAttribute::Metrics(metrics));
    }
}

fn metrics_of(route: &RouteMessage) -> Vec<RouteMetric> {
    route
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Metrics(m) => Some(m.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// Puts every hook of `record` but those in `except` into `bpf`, by opening
/// its pin; the returned fds must stay open until the route is sent.
fn keep_hooks(record: &RouteRecord, except: &[Hook], bpf: &mut LwtBpf) -> Result<Vec<OwnedFd>> {
    let mut fds = Vec::new();
    for (hook, h) in record.hooks.iter().filter(|(h, _)| !except.contains(h)) {
        let fd = libbpf_rs::Program::fd_from_pinned_path(&h.pin)
            .map_err(|_| StateError::MissingPin(h.pin.clone()))?;
        bpf.set_hook(
            *hook,
            Some(BpfProgAttr {
                fd: Some(fd.as_raw_fd() as u32),
                name: h.name.clone(),
            }),
        );
        fds.push(fd);
    }
    Ok(fds)
}

/// Refuses routes lwtkit could not replace faithfully: a different device,
/// gateway or type than asked for, multipath routes (their encaps are per
/// next hop), and IPv6 routes of metric 0 (the kernel turns metric 0 into
/// 1024 on any add or replace, so the route could not be replaced in place).
fn check_existing_shape(
    existing: &RouteMessage,
    req: &AttachRequest,
    oif: u32,
    route: &str,
    stand_in: bool,
) -> Result<()> {
    let attrs = &existing.attributes;
    if attrs
        .iter()
        .any(|a| matches!(a, RouteAttribute::MultiPath(_)))
    {
        return Err(AttachError::Multipath(route.into()).into());
    }
    if let Some(cur) = ops::oif_of(existing) {
        if cur != oif {
            return Err(AttachError::OtherDevice {
                route: route.into(),
                ifindex: cur,
            }
            .into());
        }
    }
    if let Some(gw) = req.via {
        let cur = attrs.iter().find_map(|a| match a {
            RouteAttribute::Gateway(g) => Some(g.clone()),
            _ => None,
        });
        if cur.is_some_and(|c| c != ops::address(gw)) {
            return Err(AttachError::OtherGateway(route.into()).into());
        }
    }
    let is_local = existing.header.kind == RouteType::Local;
    if req.local != is_local {
        return Err(AttachError::LocalMismatch {
            route: route.into(),
            is_local,
        }
        .into());
    }
    if req.dst.addr().is_ipv6() && ops::metric_of(existing) == 0 && !stand_in {
        return Err(AttachError::MetricZero(route.into()).into());
    }
    Ok(())
}

/// Refuses to replace encaps lwtkit cannot put back: another encap type, or
/// BPF hooks someone else attached (a dump gives their names, not the
/// programs). `record` is lwtkit's live record of the route, if any: its
/// hooks are exactly the route's (checked by [`live_record`]).
fn check_foreign_encap(
    existing: &RouteMessage,
    record: Option<&RouteRecord>,
    route: &str,
) -> Result<()> {
    if record.is_some() {
        return Ok(());
    }
    let live_bpf = LwtBpf::from_route_attributes(&existing.attributes).map_err(|reason| {
        AttachError::UnreadableEncap {
            route: route.into(),
            reason,
        }
    })?;
    if let Some(bpf) = live_bpf {
        if let Some((h, prog)) = bpf.hooks().next() {
            return Err(AttachError::ForeignHook {
                route: route.into(),
                hook: h,
                name: prog.name.clone(),
            }
            .into());
        }
    }
    match encap::from_route_attributes(&existing.attributes) {
        Some(other) => Err(AttachError::ForeignEncap {
            route: route.into(),
            kind: other.kind(),
        }
        .into()),
        None => Ok(()),
    }
}

/// Takes lwtkit's program(s) off a route.
pub fn detach(req: &DetachRequest) -> Result<Detached> {
    system::require_attach_privileges("lwt detach")?;
    let ns = Namespace::open()?;
    let txn = ns.begin("lwt detach")?;
    detach_in(&txn, &mut Rtnl::open()?, req)
}

/// What detach will do to the kernel's route.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// Nothing: the route is gone; only lwtkit's records go.
    Forget,
    /// Put the original route back (replace, never create).
    Restore(RouteMessage),
    /// Delete the route lwtkit created.
    Delete(RouteMessage),
    /// Re-send the route with the remaining hooks (fds added by the caller).
    Resend { base: RouteMessage, keep: Vec<Hook> },
}

/// Decides what taking `remove` off the route means, given what the kernel
/// holds now (`current`). Refuses (after nothing changed) when the route is
/// no longer lwtkit's, unless `force`.
pub fn plan_detach(
    record: &RouteRecord,
    current: Option<&RouteMessage>,
    remove: &[Hook],
    force: bool,
    label: &str,
) -> Result<Plan> {
    match standing(record, current) {
        Standing::Gone => return Ok(Plan::Forget),
        Standing::Drifted { found } if !force => {
            return Err(AttachError::Drift {
                route: label.into(),
                expected: describe(&record_marks(record)),
                found: describe(&found),
                hint: "; with --force lwtkit restores or deletes it anyway",
            }
            .into())
        }
        _ => {}
    }
    let current = current.ok_or_else(|| AttachError::NotManaged(label.into()))?;
    let keep: Vec<Hook> = record
        .hooks
        .keys()
        .filter(|h| !remove.contains(h))
        .copied()
        .collect();
    // A stand-in for the kernel's IPv6 local route stays (without programs):
    // the kernel's metric-0 route cannot be made again.
    if !keep.is_empty() || record.stand_in {
        let mut base = ops::without_encap(ops::sanitize(current));
        if record.mtu_hook.is_some_and(|h| remove.contains(&h)) {
            // Only the owner that lowered the MTU puts it back, as it was.
            let before = record
                .original
                .as_deref()
                .and_then(ops::from_hex)
                .map(|o| metrics_of(&o))
                .unwrap_or_default();
            set_metrics(&mut base, before);
        }
        return Ok(Plan::Resend { base, keep });
    }
    Ok(match record.original.as_deref() {
        Some(hex) => Plan::Restore(ops::from_hex(hex).ok_or_else(|| StateError::Io {
            path: RouteRecord::key(&record.dst, record.table).into(),
            reason: "recorded original route does not decode".into(),
        })?),
        None => Plan::Delete(current.clone()),
    })
}

/// The hooks of `record` a detach by `owner` takes off (`hook`: just that
/// one), or why it may not.
fn hooks_to_remove(
    record: &RouteRecord,
    hook: Option<Hook>,
    owner: Option<&Owner>,
    label: &str,
) -> Result<Vec<Hook>> {
    let owns = |h: &HookRecord| owner.is_none_or(|o| h.origin.owner() == *o);
    match hook {
        Some(hook) => {
            let h = record
                .hooks
                .get(&hook)
                .ok_or_else(|| AttachError::HookNotAttached {
                    route: label.into(),
                    hook,
                })?;
            if !owns(h) {
                let holder = h.origin.owner();
                return Err(AttachError::OwnedHook {
                    route: label.into(),
                    hook,
                    owner: holder.to_string(),
                    verb: owner.map_or("lwt reset", verb_of).into(),
                    remover: holder.remover(&record.dst.to_string(), hook),
                }
                .into());
            }
            Ok(vec![hook])
        }
        None => {
            let mine: Vec<Hook> = record
                .hooks
                .iter()
                .filter(|(_, h)| owns(h))
                .map(|(k, _)| *k)
                .collect();
            if mine.is_empty() {
                let (hook, h) = record
                    .hooks
                    .iter()
                    .next()
                    .ok_or_else(|| AttachError::NotManaged(label.into()))?;
                let holder = h.origin.owner();
                return Err(AttachError::OwnedHook {
                    route: label.into(),
                    hook: *hook,
                    owner: holder.to_string(),
                    verb: owner.map_or("lwt reset", verb_of).into(),
                    remover: holder.remover(&record.dst.to_string(), *hook),
                }
                .into());
            }
            Ok(mine)
        }
    }
}

/// [`detach`] inside a transaction the caller holds.
pub fn detach_in(txn: &Txn, rtnl: &mut Rtnl, req: &DetachRequest) -> Result<Detached> {
    detach_with(txn, rtnl, req, Vec::new())
}

/// [`detach_in`], with a feature's own bookkeeping (`done`) applied once
/// the route no longer runs its hook.
pub fn detach_with(
    txn: &Txn,
    rtnl: &mut Rtnl,
    req: &DetachRequest,
    extra_done: Vec<Step>,
) -> Result<Detached> {
    let key = route_key(req.dst, req.table, req.local);
    let skey = RouteRecord::key(&key.dst, key.table);
    let route_label = key.to_string();
    let record = txn
        .get::<RouteRecord>(&skey)?
        .ok_or_else(|| AttachError::NotManaged(route_label.clone()))?;
    if let Some(dev) = &req.dev {
        if *dev != record.dev {
            return Err(AttachError::WrongDevice {
                route: route_label,
                managed: record.dev.clone(),
                given: dev.clone(),
            }
            .into());
        }
    }
    let remove = hooks_to_remove(&record, req.hook, req.owner.as_ref(), &route_label)?;
    let current = rtnl.lookup(&key)?;
    let plan = match plan_detach(&record, current.as_ref(), &remove, req.force, &route_label) {
        Ok(p) => p,
        Err(e @ Error::Attach(AttachError::Drift { .. })) => {
            forget(txn, &skey)?;
            return Err(e);
        }
        Err(e) => return Err(e),
    };

    let mut after = record.clone();
    for h in &remove {
        after.hooks.remove(h);
    }
    if after.mtu_hook.is_some_and(|h| remove.contains(&h)) {
        after.mtu_hook = None;
    }
    let route_pins = txn.pin_root().join(&skey);
    let mut intent = Intent::new(
        "lwt detach",
        Probe::Route {
            dst: key.dst,
            table: key.table,
            after: match &plan {
                Plan::Forget | Plan::Delete(_) => None,
                Plan::Restore(original) => Some(marks(original)),
                Plan::Resend { .. } => Some(record_marks(&after)),
            },
        },
    );
    intent.done = if after.hooks.is_empty() {
        vec![
            txn.remove_step::<RouteRecord>(&skey),
            Step::RemoveTree {
                path: route_pins.clone(),
            },
        ]
    } else {
        let mut steps: Vec<Step> = remove
            .iter()
            .map(|h| Step::RemoveTree {
                path: route_pins.join(h.as_str()),
            })
            .collect();
        steps.push(txn.put_step(&after)?);
        steps
    };
    if record.stand_in && !matches!(plan, Plan::Forget) {
        // The watch now looks after what remains: lwtkit's hooks, or the
        // plain stand-in route alone.
        let forget = if after.hooks.is_empty() {
            Vec::new()
        } else {
            vec![
                txn.remove_step::<RouteRecord>(&skey),
                Step::RemoveTree {
                    path: route_pins.clone(),
                },
            ]
        };
        // The watch's device, or the record's: never 0, which no address
        // is on, so reaping would take the stand-in away at once.
        let ifindex = match txn.get::<ns::watch::Watch>(&skey)? {
            Some(w) => w.ifindex,
            None => ifindex(&record.dev)?,
        };
        intent
            .done
            .push(txn.put_step(&stand_in_watch(txn, &after, ifindex, forget))?);
    }
    intent.done.extend(extra_done);
    let pending = txn.intend(intent)?;
    failpoint("detach:intent");
    let mut kept_fds = Vec::new();
    let sent = match &plan {
        Plan::Forget => Ok(()),
        Plan::Restore(original) => rtnl.replace(original.clone()),
        Plan::Delete(route) => rtnl.delete(route),
        Plan::Resend { base, keep } => {
            let mut route = base.clone();
            if !keep.is_empty() {
                let mut bpf = LwtBpf {
                    headroom: record.headroom,
                    ..LwtBpf::default()
                };
                kept_fds = keep_hooks(&record, &remove, &mut bpf)?;
                route.attributes.extend(bpf.encode()?);
            }
            rtnl.replace(route)
        }
    };
    drop(kept_fds);
    failpoint("detach:route");
    match sent {
        Ok(()) => txn.finish(pending, Outcome::Done)?,
        Err(e) if e.errno() == Some(libc::ENOENT) || e.errno() == Some(libc::ESRCH) => {
            // Vanished between the look and the change: nothing to restore.
            txn.finish(pending, Outcome::Done)?;
            return Ok(Detached {
                route: route_label,
                dst: key.dst,
                table: crate::route::table::table_name(key.table),
                hooks: remove,
                route_now: "gone",
                note: Some("the route vanished meanwhile; lwtkit dropped its records".into()),
            });
        }
        Err(e) => {
            txn.finish(pending, Outcome::Undone)?;
            return Err(route_error(&route_label, e));
        }
    }
    let note = if record.stand_in && after.hooks.is_empty() {
        Some(format!("as lwtkit's own local route (metric {STAND_IN_METRIC}): the kernel's cannot be made again; lwtkit removes it once the address leaves its device"))
    } else {
        None
    }
    .or_else(|| (!after.hooks.is_empty()).then(|| {
        let others: Vec<String> = after
            .hooks
            .iter()
            .map(|(h, r)| format!("{h} ({})", r.origin.owner()))
            .collect();
        format!("still attached: {}", others.join(", "))
    }));
    let route_now = match plan {
        Plan::Forget => "gone",
        Plan::Restore(_) => "restored",
        Plan::Delete(_) => "deleted",
        Plan::Resend { .. } if after.hooks.is_empty() => "restored",
        Plan::Resend { .. } => "kept",
    };
    Ok(Detached {
        route: route_label,
        dst: key.dst,
        table: crate::route::table::table_name(key.table),
        hooks: remove,
        route_now,
        note: if route_now == "gone" {
            Some("the route had vanished (device or address removed?); lwtkit dropped its records and did not bring it back".into())
        } else {
            note
        },
    })
}

fn route_error(route: &str, e: NetlinkError) -> Error {
    match e.errno() {
        Some(libc::EOPNOTSUPP) | Some(libc::EAFNOSUPPORT) => {
            SystemError::NoLwtBpf(e.to_string()).into()
        }
        Some(libc::EPERM) => SystemError::Privileges {
            what: format!("changing route {route}"),
            caps: "CAP_NET_ADMIN".into(),
        }
        .into(),
        _ => AttachError::Route {
            route: route.into(),
            reason: e,
        }
        .into(),
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
#[path = "attach_tests.rs"]
mod plan_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_errors_name_the_missing_feature() {
        let no_encap = NetlinkError::Kernel {
            errno: libc::EOPNOTSUPP,
            message: Some("lwt encapsulation type not supported".into()),
        };
        assert!(matches!(
            route_error("r", no_encap),
            Error::System(SystemError::NoLwtBpf(_))
        ));
        let eperm = NetlinkError::Kernel {
            errno: libc::EPERM,
            message: None,
        };
        assert!(matches!(
            route_error("r", eperm),
            Error::System(SystemError::Privileges { .. })
        ));
        let other = NetlinkError::Kernel {
            errno: libc::EINVAL,
            message: Some("Invalid prefix".into()),
        };
        let text = route_error("10.0.0.0/8 table main", other).to_string();
        assert!(
            text.contains("Invalid prefix") && text.contains("10.0.0.0/8"),
            "{text}"
        );
    }

    #[test]
    fn prefixes_parse_like_ip_route() {
        assert_eq!(parse_prefix("10.0.0.3").ok(), "10.0.0.3/32".parse().ok());
        assert_eq!(parse_prefix("fc00::/64").ok(), "fc00::/64".parse().ok());
        assert!(matches!(
            parse_prefix("10.0.0.300/32"),
            Err(Error::InvalidPrefix(_))
        ));
        assert!(matches!(
            parse_prefix("10.0.0.0/33"),
            Err(Error::InvalidPrefix(_))
        ));
        let err = parse_prefix("10.0.0.3/24").expect_err("host bits");
        assert!(err.to_string().contains("10.0.0.0/24"), "{err}");
    }
}
