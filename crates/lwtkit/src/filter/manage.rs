//! The `lwt filter` verbs as library calls: each checks privileges and
//! bpffs, takes the namespace lock, and leaves nothing half-done.
use std::path::Path;

use ipnet::IpNet;
use serde::Serialize;

use super::{
    handling::{Fragments, Handling, Malformed},
    rule::{parse_rules_file, Action, Rule, RuleSpec, Verdict},
    store::{ActionCounters, Policies, Policy, RuleCounters},
};
use crate::{
    attach::{self, AttachRequest, Attached, DetachRequest, Detached},
    error::{FilterError, Result},
    hook::Hook,
    loader::ProgramSource,
    ns::{Namespace, Txn},
    route::{netlink::Rtnl, ops, table::table_name},
    state::{NetnsState, Origin, Owner, RouteRecord},
    system,
};

/// Runs `f` with the namespace's policies, in a transaction.
fn with_policies<T>(
    what: &str,
    f: impl FnOnce(&Policies, &NetnsState, &Txn) -> Result<T>,
) -> Result<T> {
    system::require_attach_privileges(what)?;
    let ns = super::store::timed("open", Namespace::open)?;
    let txn = super::store::timed("begin", || ns.begin(what))?;
    let state = NetnsState::view(&txn);
    let policies = Policies::new(&state);
    f(&policies, &state, &txn)
}

/// Runs `f` with the namespace's policies, read only (no lock).
fn reading_policies<T>(
    what: &str,
    f: impl FnOnce(&Policies, &NetnsState) -> Result<T>,
) -> Result<T> {
    system::require_attach_privileges(what)?;
    let ns = Namespace::open_readonly()?;
    let state = NetnsState::view(&ns);
    let policies = Policies::new(&state);
    f(&policies, &state)
}

pub fn create(name: &str, default: Verdict, capacity: Option<u32>) -> Result<Policy> {
    create_with(name, Handling::new(default), capacity)
}

/// `lwt filter create` with `--fragments` / `--malformed`.
pub fn create_with(name: &str, handling: Handling, capacity: Option<u32>) -> Result<Policy> {
    with_policies("lwt filter create", |p, _, txn| {
        p.create_with(txn, name, handling, capacity)
    })
}

/// `lwt filter set`: the default verdict and what happens to non-first
/// fragments and malformed packets (`None`: unchanged), live on every
/// route the policy is on, in one write.
pub fn set(
    name: &str,
    default: Option<Verdict>,
    fragments: Option<Fragments>,
    malformed: Option<Malformed>,
) -> Result<Policy> {
    with_policies("lwt filter set", |p, _, txn| {
        p.set_handling(txn, name, default, fragments, malformed)
    })
}

/// Deletes a policy no route uses.
pub fn delete(name: &str) -> Result<()> {
    with_policies("lwt filter delete", |p, state, txn| {
        p.get(name)?;
        let users = attachments(state, name)?;
        if let Some(a) = users.first() {
            return Err(FilterError::InUse {
                policy: name.into(),
                routes: users.len(),
                dst: a.dst,
                hook: a.hook,
            }
            .into());
        }
        p.delete(txn, name)
    })
}

pub fn add_rule(name: &str, mut spec: RuleSpec) -> Result<Rule> {
    with_policies("lwt filter rule add", |p, state, txn| {
        p.get(name)?;
        resolve(&mut spec)?;
        for a in attachments(state, name)? {
            check_hook(name, "the new rule".into(), &spec, a.hook)?;
        }
        p.add_rule(txn, name, spec)
    })
}

/// Resolves what a rule's action names in the namespace: a `redirect`
/// device's ifindex, refusing a device that is gone or has a link-layer
/// header (an LWT redirect sends the packet bare: `bpf_redirect` into an
/// Ethernet device drops it).
pub fn resolve(spec: &mut RuleSpec) -> Result<()> {
    let Some(Action::Redirect { dev, ifindex }) = spec.action.as_mut() else {
        return Ok(());
    };
    let index = attach::ifindex(dev).map_err(|_| FilterError::Redirect {
        dev: dev.clone(),
        reason: "no such device in this namespace".into(),
    })?;
    let kind = crate::route::link::link_type(&mut Rtnl::open()?, index)?.ok_or_else(|| {
        FilterError::Redirect {
            dev: dev.clone(),
            reason: "no such device in this namespace".into(),
        }
    })?;
    if !crate::route::link::takes_bare_ip(kind) {
        return Err(FilterError::Redirect {
            dev: dev.clone(),
            reason: format!(
                "the device has a link-layer header (type {kind}{}); an LWT redirect sends the bare IP packet, which such a device drops. Redirect into a layer-3 device (tun, wireguard, ip tunnels), or route to the device instead",
                if kind == 1 { ", Ethernet" } else { "" }
            ),
        }
        .into());
    }
    *ifindex = index;
    Ok(())
}

/// Refuses a rule whose action `hook` cannot carry out.
pub(crate) fn check_hook(policy: &str, rule: String, spec: &RuleSpec, hook: Hook) -> Result<()> {
    let Some(action) = &spec.action else {
        return Ok(());
    };
    let hooks = action.hooks();
    if hooks.contains(&hook) {
        return Ok(());
    }
    Err(FilterError::ActionHook {
        policy: policy.into(),
        rule,
        text: spec.to_string(),
        hook,
        action: action.word(),
        needs: hooks
            .iter()
            .map(|h| h.as_str())
            .collect::<Vec<_>>()
            .join(" or "),
    }
    .into())
}

pub fn del_rule(name: &str, id: u32) -> Result<Rule> {
    with_policies("lwt filter rule del", |p, _, txn| p.del_rule(txn, name, id))
}

/// Replaces every rule with those of `file`, atomically.
/// A file without a single rule empties the policy only with `allow_empty`
/// (a file of comments is more often a mistake than a wish).
pub fn replace_from_file(name: &str, file: &Path, allow_empty: bool) -> Result<Policy> {
    let started = std::time::Instant::now();
    let text = std::fs::read_to_string(file).map_err(|e| FilterError::RulesFile {
        path: file.into(),
        reason: e.to_string(),
    })?;
    let specs = parse_rules_file(&text).map_err(|e| FilterError::RulesFile {
        path: file.into(),
        reason: e.to_string(),
    })?;
    if specs.is_empty() && !allow_empty {
        return Err(FilterError::RulesFile {
            path: file.into(),
            reason: "holds no rule (only comments or blank lines); pass --allow-empty to empty the policy".into(),
        }
        .into());
    }
    tracing::debug!(target: "lwtkit::timing", phase = "parse", us = started.elapsed().as_micros() as u64);
    let mut specs = specs;
    with_policies("lwt filter replace", |p, state, txn| {
        p.get(name)?;
        let hooks: Vec<Hook> = attachments(state, name)?
            .into_iter()
            .map(|a| a.hook)
            .collect();
        for (line, spec) in specs.iter_mut().enumerate() {
            resolve(spec)?;
            for hook in &hooks {
                check_hook(name, format!("rule {} of the file", line + 1), spec, *hook)?;
            }
        }
        p.replace(txn, name, specs)
    })
}

/// A route and hook a policy is attached to.
#[derive(Clone, Debug, Serialize)]
pub struct PolicyAttachment {
    pub dst: IpNet,
    pub table: String,
    pub dev: String,
    pub hook: Hook,
}

/// Malformed packets and evasive fragments the policy's attachments
/// counted (attachments whose counters cannot be read count 0).
fn malformed_packets(state: &NetnsState, policy: &str) -> Result<u64> {
    let mut total = 0;
    for rec in state.records()? {
        for h in rec.hooks.values() {
            if !matches!(&h.origin, Origin::Filter { policy: p } if p == policy) {
                continue;
            }
            if let Some(c) = h
                .counters
                .as_deref()
                .and_then(|pin| crate::inventory::read_counters(pin).ok())
                .and_then(|c| {
                    c.get(lwtkit_common::filter::verdict_slot::MALFORMED as usize)
                        .copied()
                })
            {
                total += c.packets;
            }
        }
    }
    Ok(total)
}

pub(crate) fn attachments(state: &NetnsState, policy: &str) -> Result<Vec<PolicyAttachment>> {
    let mut out = Vec::new();
    for rec in state.records()? {
        for (hook, h) in &rec.hooks {
            if matches!(&h.origin, Origin::Filter { policy: p } if p == policy) {
                out.push(PolicyAttachment {
                    dst: rec.dst,
                    table: table_name(rec.table),
                    dev: rec.dev.clone(),
                    hook: *hook,
                });
            }
        }
    }
    Ok(out)
}

/// `lwt filter show`: the policy, its rules with counters, where it is attached.
#[derive(Clone, Debug, Serialize)]
pub struct PolicyView {
    pub name: String,
    pub id: u32,
    pub default: Verdict,
    pub capacity: u32,
    /// Bytes the policy's maps hold in the kernel (all CPUs' counters).
    pub map_bytes: u64,
    pub fragments: Fragments,
    pub malformed: Malformed,
    /// Packets no rule matched (judged by the default verdict).
    pub unmatched: RuleCounters,
    /// Malformed packets and evasive fragments, summed over the policy's
    /// attachments (as `lwt stats` counts them).
    pub malformed_packets: u64,
    pub rules: Vec<RuleView>,
    pub attachments: Vec<PolicyAttachment>,
    /// What the policy's programs are specialised for (the paths they
    /// keep): `program` in text, `program` and `program_spec` in JSON.
    pub program: String,
    pub program_spec: lwtkit_common::filter::ProgramSpec,
    /// What the user should know about the counters (a policy made
    /// before action counters: they read zero until its next rule change).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RuleView {
    #[serde(flatten)]
    pub rule: Rule,
    pub text: String,
    #[serde(flatten)]
    pub counters: RuleCounters,
    /// What the rule's action did (rules with an action only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_counters: Option<ActionView>,
}

/// What a rule's action did, named as the action says it.
#[derive(Clone, Debug, Serialize)]
pub struct ActionView {
    /// `translated`, `rerouted`, `marked` or `redirected`.
    pub done_as: &'static str,
    #[serde(flatten)]
    pub counters: ActionCounters,
}

pub fn show(name: &str) -> Result<PolicyView> {
    reading_policies("lwt filter show", |p, state| {
        let policy = p.get(name)?;
        view(p, state, policy)
    })
}

/// Every policy of the namespace.
pub fn list() -> Result<Vec<PolicyView>> {
    reading_policies("lwt filter list", |p, state| {
        p.all()?
            .into_iter()
            .map(|policy| view(p, state, policy))
            .collect()
    })
}

fn view(p: &Policies, state: &NetnsState, policy: Policy) -> Result<PolicyView> {
    let counters: std::collections::HashMap<u32, RuleCounters> =
        p.rule_counters(&policy)?.into_iter().collect();
    let actions = p.action_counters(&policy)?;
    let mut rules: Vec<RuleView> = policy
        .rules
        .iter()
        .map(|r| RuleView {
            rule: r.clone(),
            text: r.spec.to_string(),
            counters: counters.get(&r.id).copied().unwrap_or_default(),
            action_counters: r.spec.action.as_ref().map(|a| ActionView {
                done_as: a.done_word(),
                counters: actions.get(&r.id).copied().unwrap_or_default(),
            }),
        })
        .collect();
    rules.sort_by_key(|r| (r.rule.spec.priority, r.rule.id));
    Ok(PolicyView {
        name: policy.name.clone(),
        id: policy.id,
        default: policy.default,
        capacity: policy.capacity,
        map_bytes: p.map_bytes(&policy.name)?,
        fragments: policy.fragments,
        malformed: policy.malformed,
        malformed_packets: malformed_packets(state, &policy.name)?,
        program: super::spec::describe(policy.program_spec()),
        program_spec: policy.program_spec(),
        unmatched: counters.get(&0).copied().unwrap_or_default(),
        note: (!p.keeps_action_counters(&policy.name)).then(|| {
            format!(
                "policy `{}` was made before action counters: its actions count nowhere lwtkit reads (shown as 0) until its next rule change (rule add, rule del or replace) moves it onto maps that keep them",
                policy.name
            )
        }),
        rules,
        attachments: attachments(state, &policy.name)?,
    })
}

/// `lwt filter attach`: the filter program on `hook` of the route
/// (`force`: as [`AttachRequest::force`]).
pub fn attach_policy(
    name: &str,
    dst: IpNet,
    dev: &str,
    hook: Hook,
    table: Option<u32>,
    local: bool,
    force: bool,
) -> Result<Attached> {
    with_policies("lwt filter attach", |p, _, txn| {
        let policy = p.get(name)?;
        for r in &policy.rules {
            check_hook(name, format!("rule {}", r.id), &r.spec, hook)?;
            // The device a redirect names must still be the one resolved.
            if let Some(Action::Redirect { ifindex, .. }) = &r.spec.action {
                let mut spec = r.spec.clone();
                resolve(&mut spec)?;
                if let Some(Action::Redirect { ifindex: now, dev }) = &spec.action {
                    if now != ifindex {
                        return Err(FilterError::Redirect {
                            dev: dev.clone(),
                            reason: format!(
                                "rule {} resolved it as ifindex {ifindex}, the namespace has it as {now} now; add the rule again",
                                r.id
                            ),
                        }
                        .into());
                    }
                }
            }
        }
        attach::attach_in(
            txn,
            &mut Rtnl::open()?,
            &AttachRequest {
                dst,
                dev: dev.into(),
                hook,
                source: ProgramSource::Builtin(p.program(name)),
                headroom: None,
                table,
                local,
                via: None,
                mtu_reduction: None,
                force,
            },
        )
    })
}

/// `lwt filter detach`: takes the policy off every hook of the route.
pub fn detach_policy(
    name: &str,
    dst: IpNet,
    table: Option<u32>,
    local: bool,
) -> Result<Vec<Detached>> {
    let table_id = table.unwrap_or_else(|| ops::default_table(local));
    with_policies("lwt filter detach", |p, state, txn| {
        p.get(name)?;
        let hooks: Vec<Hook> = state
            .load(&RouteRecord::key(&dst, table_id))?
            .map(|r| {
                r.hooks
                    .iter()
                    .filter(
                        |(_, h)| matches!(&h.origin, Origin::Filter { policy } if policy == name),
                    )
                    .map(|(hook, _)| *hook)
                    .collect()
            })
            .unwrap_or_default();
        if hooks.is_empty() {
            return Err(FilterError::NotAttached {
                policy: name.into(),
                dst,
                table: table_name(table_id),
            }
            .into());
        }
        let mut rtnl = Rtnl::open()?;
        hooks
            .into_iter()
            .map(|hook| {
                attach::detach_in(
                    txn,
                    &mut rtnl,
                    &DetachRequest {
                        hook: Some(hook),
                        owner: Some(Owner::Filter(name.into())),
                        ..DetachRequest::new(dst, Some(table_id), local)
                    },
                )
            })
            .collect()
    })
}
