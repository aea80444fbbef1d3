//! Running a plan: each change is one of the library's own operations
//! (attach, detach, a policy's create/set/replace/delete, a tunnel's,
//! decapsulator's or SID's add/del) inside the apply's one transaction,
//! so each is atomic and crash-safe as that verb is, and a killed apply
//! converges on the next.
use super::plan::{Change, Desired, Op, Program, SidProgram, WantedPolicy};
use crate::{
    attach::{self, AttachRequest, DetachRequest},
    encap::{self, decap, EncapRequest},
    error::{Error, Result},
    filter::store::Policies,
    loader::{BuiltinSpec, ProgramSource},
    ns::Txn,
    route::netlink::Rtnl,
    seg6local::{self, Seg6Request},
    state::NetnsState,
};

fn missing(what: String) -> Error {
    Error::Invalid(format!("the plan names {what}, which the file does not"))
}

/// The policy `name` as the file states it.
fn wanted_policy<'a>(desired: &'a Desired, name: &str) -> Result<&'a WantedPolicy> {
    desired
        .policies
        .get(name)
        .ok_or_else(|| missing(format!("policy {name}")))
}

/// Runs one change.
pub fn run(txn: &Txn, rtnl: &mut Rtnl, desired: &Desired, change: &Change) -> Result<()> {
    let state = NetnsState::view(txn);
    let policies = Policies::new(&state);
    match &change.op {
        Op::DetachHook {
            route,
            local,
            hook,
            owner,
        } => {
            let req = DetachRequest {
                hook: Some(*hook),
                owner: Some(owner.clone()),
                ..DetachRequest::new(route.dst, Some(route.table), *local)
            };
            attach::detach_in(txn, rtnl, &req).map(|_| ())
        }
        Op::DelTunnel(route) => encap::del_in(txn, rtnl, route.dst, Some(route.table)).map(|_| ()),
        Op::DelSid(route) => seg6local::del_in(txn, rtnl, route.dst, Some(route.table)).map(|_| ()),
        Op::DelDecap(dev) => decap::del_in(txn, dev),
        Op::CreatePolicy(name) => {
            let want = wanted_policy(desired, name)?;
            policies.create_with(txn, name, want.handling, want.capacity)?;
            if !want.rules.is_empty() {
                policies.replace(txn, name, want.rules.clone())?;
            }
            Ok(())
        }
        Op::SetPolicy(name) => {
            let want = wanted_policy(desired, name)?;
            policies
                .set_handling(
                    txn,
                    name,
                    Some(want.handling.default),
                    Some(want.handling.fragments),
                    Some(want.handling.malformed),
                )
                .map(|_| ())
        }
        Op::ReplaceRules(name) => {
            let want = wanted_policy(desired, name)?;
            policies.replace(txn, name, want.rules.clone()).map(|_| ())
        }
        Op::DeletePolicy(name) => policies.delete(txn, name),
        Op::AddDecap(dev) => {
            let want = desired
                .decaps
                .get(dev)
                .ok_or_else(|| missing(format!("decap on {dev}")))?;
            decap::add_in(txn, want)
        }
        Op::AddTunnel(route) => {
            let want = desired
                .tunnels
                .get(route)
                .ok_or_else(|| missing(format!("tunnel {route}")))?;
            encap::add_in(
                txn,
                rtnl,
                EncapRequest {
                    dst: route.dst,
                    dev: want.dev.clone(),
                    table: Some(route.table),
                    hook: want.hook,
                    spec: want.spec.clone(),
                    // Resolved when the file was checked; given from here on.
                    local_from_dev: false,
                },
            )
            .map(|_| ())
        }
        Op::AttachHook(route, hook) => {
            let want = desired
                .hooks
                .get(&(*route, *hook))
                .ok_or_else(|| missing(format!("{route} hook {hook}")))?;
            let source = match &want.program {
                Program::Builtin(name) => ProgramSource::Builtin(BuiltinSpec::standalone(name)?),
                Program::Object {
                    path,
                    section,
                    program,
                    prog_type,
                    ..
                } => ProgramSource::Object {
                    path: path.clone(),
                    // The section the file's selection resolved to, unless
                    // it chose by function name.
                    section: program.is_none().then(|| section.clone()),
                    program: program.clone(),
                    prog_type: *prog_type,
                },
                Program::Pinned(path) => ProgramSource::Pinned(path.clone()),
                Program::Filter(policy) => {
                    policies.get(policy)?;
                    ProgramSource::Builtin(policies.program(policy))
                }
            };
            attach::attach_in(
                txn,
                rtnl,
                &AttachRequest {
                    dst: route.dst,
                    dev: want.dev.clone(),
                    hook: *hook,
                    source,
                    headroom: want.headroom,
                    table: Some(route.table),
                    local: want.local,
                    via: want.via,
                    mtu_reduction: None,
                    force: want.force,
                },
            )
            .map(|_| ())
        }
        Op::AddSid(route) => {
            let want = desired
                .sids
                .get(route)
                .ok_or_else(|| missing(format!("sid {route}")))?;
            let (builtin, object, dt6_table, force_type) = match &want.program {
                SidProgram::Builtin { name, dt6_table } => {
                    (Some(name.clone()), None, *dt6_table, false)
                }
                SidProgram::Object {
                    path,
                    section,
                    force_type,
                    ..
                } => (
                    None,
                    Some((path.clone(), Some(section.clone()))),
                    None,
                    *force_type,
                ),
            };
            seg6local::add_in(
                txn,
                rtnl,
                &Seg6Request {
                    sid: route.dst,
                    dev: want.dev.clone(),
                    builtin,
                    object,
                    table: Some(route.table),
                    dt6_table,
                    force_type,
                },
            )
            .map(|_| ())
        }
    }
}
