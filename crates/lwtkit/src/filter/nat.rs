//! `lwt nat`: a 1:1 NAT gateway in one command, written as filter rules.
//!
//! `nat add` is sugar over the rule actions: an `snat` rule in the policy
//! on the outbound route's `xmit` hook and a `dnat` rule in the policy on
//! the public prefix's route (`xmit`), made with the filter's own
//! operations (policy create, rule add, attach) inside one transaction.
//! A route whose `xmit` already carries a policy gets the rule in that
//! policy; otherwise the NAT's own policy (`NAME-out`, `NAME-in`) is
//! created and attached. A record per mapping (`nat/<inside>.json`) says
//! which rule is whose and what `nat add` made, so that `nat del` takes
//! off exactly that and puts the routes back as they were.
//!
//! Each step is crash-safe as its verb is. The mapping as a whole: the
//! record is written (state `adding`) before the first step and marked
//! `active` after the last; an error in between undoes the steps done, in
//! reverse, before the error is returned. A `nat add` killed in between
//! leaves its record `adding`: the next `lwt nat add` or `nat del` in the
//! namespace undoes what of it was done before anything else (and `nat
//! list` shows it as interrupted meanwhile). `nat del` marks the record
//! `removing` first, so a killed `del` is finished the same way.
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{
    manage,
    rule::{RuleSpec, Verdict},
    store::Policies,
    FilterError,
};
use crate::{
    attach::{self, AttachRequest, DetachRequest},
    error::{Error, Result},
    hook::Hook,
    loader::ProgramSource,
    ns::{Namespace, Txn},
    route::{kernel::RouteTable, netlink::Rtnl, ops, ops::RouteKey, table::table_name},
    state::{NetnsState, Origin, Owner, RouteRecord},
    system,
};

/// Where a mapping stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NatState {
    /// `nat add` is (or was, if it was killed) making it.
    Adding,
    /// Both rules are in place.
    Active,
    /// `nat del` is (or was) taking it off.
    Removing,
}

/// One direction of a mapping: a rule in a policy on a route's `xmit`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatSide {
    pub policy: String,
    pub dst: IpNet,
    pub table: u32,
    pub dev: String,
    /// The rule as `filter show` writes it.
    pub rule: String,
    /// Its id, once added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<u32>,
    /// `lwt nat` created the policy: it goes with the last mapping in it.
    pub made_policy: bool,
    /// `lwt nat` attached the policy to this route: it comes off (the
    /// route back as it was) with the last mapping that uses it.
    pub made_attach: bool,
}

impl NatSide {
    fn uses(&self, other: &NatSide) -> bool {
        self.policy == other.policy && self.dst == other.dst && self.table == other.table
    }
}

/// One 1:1 mapping, as lwtkit keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatRecord {
    pub inside: IpNet,
    pub public: IpNet,
    pub state: NatState,
    /// The `snat` rule, on the outbound route.
    pub outbound: NatSide,
    /// The `dnat` rule, on the public prefix's route.
    pub inbound: NatSide,
}

impl crate::ns::Record for NatRecord {
    const DIR: &'static str = "nat";
    fn key(&self) -> String {
        key_of(&self.inside)
    }
}

fn key_of(inside: &IpNet) -> String {
    inside.to_string().replace(['/', ':', '.'], "_")
}

/// What `lwt nat add` asks for.
#[derive(Clone, Debug)]
pub struct NatRequest {
    /// The inside prefix (or address).
    pub inside: IpNet,
    /// The public prefix of the same length (or address).
    pub public: IpNet,
    /// The route outbound packets leave by (its `xmit` gets the `snat`).
    pub out_route: IpNet,
    /// Its device (default: the device of that route as the kernel has it).
    pub out_dev: Option<String>,
    /// The device of the public prefix's route (default: the device of the
    /// route to the inside prefix).
    pub public_dev: Option<String>,
    /// The table of both routes (default main).
    pub table: Option<u32>,
    /// The name of the policies `nat` creates: `NAME-out`, `NAME-in`.
    pub name: String,
}

/// The policy name `nat add` uses by default.
pub const DEFAULT_NAME: &str = "nat";

fn refuse(reason: String) -> Error {
    FilterError::Nat(reason).into()
}

/// Checks a request without the namespace: families, lengths, prefixes.
pub fn check_request(req: &NatRequest) -> Result<()> {
    let v4 = req.inside.addr().is_ipv4();
    if req.public.addr().is_ipv4() != v4 {
        return Err(Error::Invalid(format!(
            "--inside {} and --public {} are of different families (NAT46/64 cannot be done on an LWT hook: no hook may change the protocol)",
            req.inside, req.public
        )));
    }
    if req.out_route.addr().is_ipv4() != v4 {
        return Err(Error::Invalid(format!(
            "--out-route {} is not of the family of --inside {}",
            req.out_route, req.inside
        )));
    }
    if req.inside.prefix_len() != req.public.prefix_len() {
        return Err(Error::Invalid(format!(
            "--inside {} and --public {} differ in length: a 1:1 mapping keeps the host bits, so both need the same prefix length",
            req.inside, req.public
        )));
    }
    if req.inside == req.public {
        return Err(Error::Invalid(format!(
            "--inside and --public are both {}",
            req.inside
        )));
    }
    super::store::validate_name(&format!("{}-out", req.name))?;
    crate::validate::table_id("--table", req.table).map_err(Error::Invalid)?;
    Ok(())
}

fn overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The rule of each direction.
fn rules_of(inside: IpNet, public: IpNet) -> Result<(RuleSpec, RuleSpec)> {
    let parse = |words: Vec<String>| {
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        RuleSpec::parse(&words).map_err(|e| Error::Filter(FilterError::Rule(e)))
    };
    let host = |n: IpNet| {
        if n.prefix_len() == n.max_prefix_len() {
            n.addr().to_string()
        } else {
            n.to_string()
        }
    };
    let snat = parse(vec![
        "src".into(),
        inside.to_string(),
        "snat".into(),
        host(public),
    ])?;
    let dnat = parse(vec![
        "dst".into(),
        public.to_string(),
        "dnat".into(),
        host(inside),
    ])?;
    Ok((snat, dnat))
}

fn dev_name(index: u32) -> Option<String> {
    let mut buf = [0u8; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr().cast()) };
    if p.is_null() {
        return None;
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// The device of the route `dst` in `table`, as the kernel has it.
fn route_dev(rtnl: &mut Rtnl, dst: IpNet, table: u32) -> Result<Option<String>> {
    Ok(rtnl
        .lookup(&RouteKey { dst, table })?
        .and_then(|r| ops::oif_of(&r))
        .and_then(dev_name))
}

/// Plans one side: which policy gets the rule, and whether `nat` creates
/// it and attaches it.
#[allow(clippy::too_many_arguments)]
fn plan_side(
    state: &NetnsState,
    policies: &Policies,
    others: &[NatRecord],
    default_policy: String,
    dst: IpNet,
    table: u32,
    dev: String,
    rule: &RuleSpec,
) -> Result<NatSide> {
    let on_route = state
        .load(&RouteRecord::key(&dst, table))?
        .and_then(|r| r.hooks.get(&Hook::Xmit).map(|h| h.origin.clone()));
    let attached = on_route.is_some();
    let policy = match on_route {
        Some(Origin::Filter { policy }) => policy,
        Some(other) => {
            let route = format!("{dst} table {}", table_name(table));
            return Err(refuse(format!(
                "route {route} hook xmit carries {} ({}); a NAT rule needs a filter policy there. Take it off first (`{}`); nothing changed",
                other.owner(),
                other,
                other.owner().remover(&format!("{dst} --table {}", table_name(table)), Hook::Xmit)
            )));
        }
        None => default_policy,
    };
    let exists = policies.get(&policy).is_ok();
    let mut side = NatSide {
        policy,
        dst,
        table,
        dev,
        rule: rule.to_string(),
        rule_id: None,
        made_policy: !exists,
        made_attach: !attached,
    };
    // What another mapping's `nat add` made is this one's too: it goes
    // with the last mapping that uses it.
    for o in others {
        for s in [&o.outbound, &o.inbound] {
            if s.policy == side.policy && s.made_policy {
                side.made_policy = true;
            }
            if s.uses(&side) && s.made_attach {
                side.made_attach = true;
            }
        }
    }
    Ok(side)
}

/// Mappings whose state is not `active` are what a killed `nat add` or
/// `nat del` left: undone (or finished), before anything else.
fn finish_pending(txn: &Txn, rtnl: &mut Rtnl) -> Result<()> {
    for rec in txn.all::<NatRecord>()? {
        if rec.state != NatState::Active {
            tracing::info!(inside = %rec.inside, state = ?rec.state, "finishing an interrupted lwt nat");
            remove_in(txn, rtnl, &rec)?;
        }
    }
    Ok(())
}

/// The rule of `side` in its policy, if it is there.
fn find_rule(policies: &Policies, side: &NatSide) -> Result<Option<u32>> {
    let Ok(p) = policies.get(&side.policy) else {
        return Ok(None);
    };
    Ok(p.rules
        .iter()
        .filter(|r| r.spec.to_string() == side.rule)
        .find(|r| side.rule_id.is_none_or(|id| id == r.id))
        .map(|r| r.id))
}

/// Whether `policy` is on `dst`/`table`'s `xmit`, as lwtkit's record says.
fn attached_to(state: &NetnsState, side: &NatSide) -> Result<bool> {
    Ok(state
        .load(&RouteRecord::key(&side.dst, side.table))?
        .and_then(|r| r.hooks.get(&Hook::Xmit).cloned())
        .is_some_and(|h| matches!(&h.origin, Origin::Filter { policy } if *policy == side.policy)))
}

/// Takes a mapping off: its rules, then what only it still uses (an
/// attachment `nat` made: the route back as it was; a policy `nat` made,
/// once empty), then its record. Each step finds its object gone or
/// takes it off, so running it again (after a kill) finishes it.
fn remove_in(txn: &Txn, rtnl: &mut Rtnl, rec: &NatRecord) -> Result<()> {
    use crate::ns::Record;
    if rec.state == NatState::Active {
        let mut removing = rec.clone();
        removing.state = NatState::Removing;
        txn.put(&removing)?;
    }
    let state = NetnsState::view(txn);
    let policies = Policies::new(&state);
    let others: Vec<NatRecord> = txn
        .all::<NatRecord>()?
        .into_iter()
        .filter(|o| o.key() != rec.key())
        .collect();
    for side in [&rec.inbound, &rec.outbound] {
        if let Some(id) = find_rule(&policies, side)? {
            policies.del_rule(txn, &side.policy, id)?;
        }
        crate::ns::failpoint("nat-del:rule");
        let shared = others
            .iter()
            .any(|o| o.outbound.uses(side) || o.inbound.uses(side));
        if side.made_attach && !shared && attached_to(&state, side)? {
            attach::detach_in(
                txn,
                rtnl,
                &DetachRequest {
                    hook: Some(Hook::Xmit),
                    owner: Some(Owner::Filter(side.policy.clone())),
                    ..DetachRequest::new(side.dst, Some(side.table), false)
                },
            )?;
        }
        let used = others
            .iter()
            .any(|o| o.outbound.policy == side.policy || o.inbound.policy == side.policy);
        if side.made_policy && !used {
            if let Ok(p) = policies.get(&side.policy) {
                let on_routes = state.records()?.iter().any(|r| {
                    r.hooks.values().any(
                        |h| matches!(&h.origin, Origin::Filter { policy } if *policy == side.policy),
                    )
                });
                if p.rules.is_empty() && !on_routes {
                    policies.delete(txn, &side.policy)?;
                }
            }
        }
    }
    txn.remove::<NatRecord>(&rec.key())
}

/// Adds one side: the policy (if `nat` makes it), the rule, the attachment.
fn add_side(txn: &Txn, rtnl: &mut Rtnl, rec: &mut NatRecord, outbound: bool) -> Result<()> {
    let state = NetnsState::view(txn);
    let policies = Policies::new(&state);
    let side = if outbound {
        &rec.outbound
    } else {
        &rec.inbound
    };
    if policies.get(&side.policy).is_err() {
        policies.create(txn, &side.policy, Verdict::Allow, None)?;
    }
    let words: Vec<String> = side.rule.split_whitespace().map(String::from).collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let mut spec = RuleSpec::parse(&words).map_err(|e| Error::Filter(FilterError::Rule(e)))?;
    manage::resolve(&mut spec)?;
    // A policy on other routes too: each hook must serve the rule.
    for a in manage::attachments(&state, &side.policy)? {
        manage::check_hook(&side.policy, "the new rule".into(), &spec, a.hook)?;
    }
    let rule = policies.add_rule(txn, &side.policy, spec)?;
    let (side, dst_dev) = {
        let side = if outbound {
            &mut rec.outbound
        } else {
            &mut rec.inbound
        };
        side.rule_id = Some(rule.id);
        (side.clone(), side.dev.clone())
    };
    txn.put(rec)?;
    if outbound {
        crate::ns::failpoint("nat-add:outbound-rule");
    } else {
        crate::ns::failpoint("nat-add:inbound-rule");
    }
    if !attached_to(&state, &side)? {
        attach::attach_in(
            txn,
            rtnl,
            &AttachRequest {
                dst: side.dst,
                dev: dst_dev,
                hook: Hook::Xmit,
                source: ProgramSource::Builtin(policies.program(&side.policy)),
                headroom: None,
                table: Some(side.table),
                local: false,
                via: None,
                mtu_reduction: None,
                force: false,
            },
        )?;
    }
    Ok(())
}

/// `lwt nat add`: the mapping, whole or not at all.
pub fn add(req: &NatRequest) -> Result<NatView> {
    check_request(req)?;
    system::require_attach_privileges("lwt nat add")?;
    let ns = Namespace::open()?;
    let txn = ns.begin("lwt nat add")?;
    let mut rtnl = Rtnl::open()?;
    finish_pending(&txn, &mut rtnl)?;
    let rec = plan(&txn, &mut rtnl, req)?;
    add_in(&txn, &mut rtnl, rec.clone())?;
    let state = NetnsState::view(&txn);
    view_of(&Policies::new(&state), &rec_now(&txn, &rec)?)
}

fn rec_now(txn: &Txn, rec: &NatRecord) -> Result<NatRecord> {
    use crate::ns::Record;
    Ok(txn
        .get::<NatRecord>(&rec.key())?
        .unwrap_or_else(|| rec.clone()))
}

/// Checks the request against the namespace and plans the record; changes
/// nothing.
fn plan(txn: &Txn, rtnl: &mut Rtnl, req: &NatRequest) -> Result<NatRecord> {
    let table = req.table.unwrap_or(ops::default_table(false));
    let others = txn.all::<NatRecord>()?;
    for o in &others {
        if overlap(&o.inside, &req.inside) || overlap(&o.public, &req.public) {
            return Err(refuse(format!(
                "{} <-> {} overlaps the mapping {} <-> {} (`lwt nat del --inside {}` takes it off); nothing changed",
                req.inside, req.public, o.inside, o.public, o.inside
            )));
        }
    }
    let (snat, dnat) = rules_of(req.inside, req.public)?;
    let out_dev = match &req.out_dev {
        Some(d) => {
            attach::ifindex(d)?;
            d.clone()
        }
        None => route_dev(rtnl, req.out_route, table)?.ok_or_else(|| {
            refuse(format!(
                "no route {} in table {} to put the snat rule on; give --out-dev to create it; nothing changed",
                req.out_route,
                table_name(table)
            ))
        })?,
    };
    let public_dev = match &req.public_dev {
        Some(d) => {
            attach::ifindex(d)?;
            d.clone()
        }
        None => route_dev(rtnl, req.inside, table)?.ok_or_else(|| {
            refuse(format!(
                "no route {} in table {} to take the public prefix's device from; give --public-dev; nothing changed",
                req.inside,
                table_name(table)
            ))
        })?,
    };
    if req.public == req.out_route {
        return Err(Error::Invalid(format!(
            "--public {} is the --out-route: the public prefix needs a route of its own toward the inside",
            req.public
        )));
    }
    let state = NetnsState::view(txn);
    let policies = Policies::new(&state);
    let outbound = plan_side(
        &state,
        &policies,
        &others,
        format!("{}-out", req.name),
        req.out_route,
        table,
        out_dev,
        &snat,
    )?;
    let inbound = plan_side(
        &state,
        &policies,
        &others,
        format!("{}-in", req.name),
        req.public,
        table,
        public_dev,
        &dnat,
    )?;
    for side in [&outbound, &inbound] {
        if find_rule(&policies, side)?.is_some() {
            return Err(refuse(format!(
                "policy `{}` already has the rule `{}`; nothing changed",
                side.policy, side.rule
            )));
        }
    }
    Ok(NatRecord {
        inside: req.inside,
        public: req.public,
        state: NatState::Adding,
        outbound,
        inbound,
    })
}

/// Makes the planned mapping in `txn`; on an error, undoes what was done.
pub fn add_in(txn: &Txn, rtnl: &mut Rtnl, mut rec: NatRecord) -> Result<()> {
    rec.state = NatState::Adding;
    txn.put(&rec)?;
    crate::ns::failpoint("nat-add:record");
    let made =
        add_side(txn, rtnl, &mut rec, true).and_then(|()| add_side(txn, rtnl, &mut rec, false));
    if let Err(e) = made {
        use crate::ns::Record;
        let now = txn.get::<NatRecord>(&rec.key())?.unwrap_or(rec);
        if let Err(undo) = remove_in(txn, rtnl, &now) {
            tracing::warn!(%undo, "undoing a failed lwt nat add");
        }
        return Err(e);
    }
    rec.state = NatState::Active;
    txn.put(&rec)
}

/// `lwt nat del`: the mapping of `inside` (or of `public`) taken off.
pub fn del(inside: Option<IpNet>, public: Option<IpNet>) -> Result<NatView> {
    system::require_attach_privileges("lwt nat del")?;
    let ns = Namespace::open()?;
    let txn = ns.begin("lwt nat del")?;
    let mut rtnl = Rtnl::open()?;
    let wanted = |r: &NatRecord| Some(r.inside) == inside || Some(r.public) == public;
    // A mapping a killed command left half made or half removed: finishing
    // it takes it off, which is what was asked.
    let interrupted = txn
        .all::<NatRecord>()?
        .into_iter()
        .find(|r| wanted(r) && r.state != NatState::Active);
    if let Some(rec) = interrupted {
        let state = NetnsState::view(&txn);
        let view = view_of(&Policies::new(&state), &rec)?;
        finish_pending(&txn, &mut rtnl)?;
        return Ok(view);
    }
    finish_pending(&txn, &mut rtnl)?;
    let rec = txn
        .all::<NatRecord>()?
        .into_iter()
        .find(|r| wanted(r))
        .ok_or_else(|| {
            refuse(format!(
                "no NAT mapping of {} (`lwt nat list` shows them)",
                inside
                    .map(|i| format!("--inside {i}"))
                    .or(public.map(|p| format!("--public {p}")))
                    .unwrap_or_default()
            ))
        })?;
    let state = NetnsState::view(&txn);
    let view = view_of(&Policies::new(&state), &rec)?;
    remove_in(&txn, &mut rtnl, &rec)?;
    Ok(view)
}

/// One direction of a mapping as `nat list` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct NatSideView {
    pub policy: String,
    pub dst: IpNet,
    pub table: String,
    pub dev: String,
    pub route: String,
    /// The rule's id, when it is in its policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
    pub text: String,
    /// Packets the rule matched, and what its action did.
    pub packets: u64,
    pub bytes: u64,
    pub translated: u64,
    pub failed: u64,
}

/// A mapping as `nat add`, `del` and `list` show it.
#[derive(Clone, Debug, Serialize)]
pub struct NatView {
    pub inside: IpNet,
    pub public: IpNet,
    /// `active`; `adding` or `removing` when such a command was killed
    /// (the next `nat add` or `nat del` finishes it).
    pub state: NatState,
    pub outbound: NatSideView,
    pub inbound: NatSideView,
}

fn side_view(policies: &Policies, side: &NatSide) -> Result<NatSideView> {
    let mut v = NatSideView {
        policy: side.policy.clone(),
        dst: side.dst,
        table: table_name(side.table),
        dev: side.dev.clone(),
        route: format!("{} table {}", side.dst, table_name(side.table)),
        id: None,
        text: side.rule.clone(),
        packets: 0,
        bytes: 0,
        translated: 0,
        failed: 0,
    };
    let Some(id) = find_rule(policies, side)? else {
        return Ok(v);
    };
    v.id = Some(id);
    let p = policies.get(&side.policy)?;
    if let Some((_, c)) = policies
        .rule_counters(&p)?
        .into_iter()
        .find(|(r, _)| *r == id)
    {
        v.packets = c.packets;
        v.bytes = c.bytes;
    }
    if let Some(a) = policies.action_counters(&p)?.get(&id) {
        v.translated = a.done;
        v.failed = a.failed;
    }
    Ok(v)
}

fn view_of(policies: &Policies, rec: &NatRecord) -> Result<NatView> {
    Ok(NatView {
        inside: rec.inside,
        public: rec.public,
        state: rec.state,
        outbound: side_view(policies, &rec.outbound)?,
        inbound: side_view(policies, &rec.inbound)?,
    })
}

/// `lwt nat list`: every mapping with its counters (read only).
pub fn list() -> Result<Vec<NatView>> {
    system::require_attach_privileges("lwt nat list")?;
    let ns = Namespace::open_readonly()?;
    let state = NetnsState::view(&ns);
    let policies = Policies::new(&state);
    let mut out = Vec::new();
    for rec in ns.all::<NatRecord>()? {
        out.push(view_of(&policies, &rec)?);
    }
    out.sort_by_key(|v| (v.inside.addr().is_ipv6(), v.inside));
    Ok(out)
}
