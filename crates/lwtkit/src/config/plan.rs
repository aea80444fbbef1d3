//! The plan: what it takes to go from the namespace's current state to the
//! file's, as a list of changes in a safe order. [`plan`] is pure (desired
//! and current in, changes out), so an agent can call it as often as it
//! likes and tests need no kernel.
use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use serde::Serialize;

use crate::{
    encap::{decap::DecapRecord, TunnelSpec},
    filter::{handling::Handling, rule::RuleSpec},
    hook::Hook,
    route::table::table_name,
    state::Owner,
};

/// A route as the file and the records name it: prefix and table id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteId {
    pub dst: IpNet,
    pub table: u32,
}

impl std::fmt::Display for RouteId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} table {}", self.dst, table_name(self.table))
    }
}

/// An object file's program as compared: the file, the section the
/// file's selection resolved to, and the file's content (SHA-256, hex).
#[derive(Clone, Copy, Debug)]
pub struct ObjectRef<'a> {
    pub path: &'a std::path::Path,
    pub section: &'a str,
    pub digest: Option<&'a str>,
}

impl ObjectRef<'_> {
    /// The same file's same section with the same content. How the file
    /// selects the program does not matter once it resolved; a digest the
    /// record lacks (attached before lwtkit kept them) is no difference.
    fn same(&self, other: &ObjectRef<'_>) -> bool {
        self.path == other.path
            && self.section == other.section
            && match (self.digest, other.digest) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }

    /// The same file and section, its content changed since the attach.
    fn rebuilt(&self, other: &ObjectRef<'_>) -> bool {
        self.path == other.path && self.section == other.section && !self.same(other)
    }
}

/// A hook's or a SID's program, compared by [`same_program`].
trait Compared: PartialEq {
    /// The object file's program, when it is one.
    fn object(&self) -> Option<ObjectRef<'_>>;
}

/// Whether two programs are the same for the kernel: objects as
/// [`ObjectRef`] says, everything else by equality.
fn same_program<P: Compared>(a: &P, b: &P) -> bool {
    match (a.object(), b.object()) {
        (Some(x), Some(y)) => x.same(&y),
        _ => a == b,
    }
}

/// What differs between the held and the wanted program, in words.
fn program_change<P: Compared + std::fmt::Display>(held: &P, want: &P) -> String {
    match (held.object(), want.object()) {
        (Some(h), Some(w)) if h.rebuilt(&w) => format!(
            "{held}: the file changed since it was attached (sha256 {} -> {})",
            short(h.digest),
            short(w.digest)
        ),
        _ => format!("{held} -> {want}"),
    }
}

fn short(digest: Option<&str>) -> &str {
    digest.map_or("?", |d| d.get(..12).unwrap_or(d))
}

/// The program on a hook, as compared (objects by path, section and content).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Program {
    Builtin(String),
    Object {
        path: std::path::PathBuf,
        section: String,
        /// How the file selects it (kept for the attach itself).
        program: Option<String>,
        prog_type: Option<Hook>,
        /// SHA-256 of the file (`None`: a record older than digests).
        digest: Option<String>,
    },
    Pinned(std::path::PathBuf),
    Filter(String),
}

impl Program {
    /// The owner this program makes of its hook.
    pub fn owner(&self) -> Owner {
        match self {
            Program::Filter(p) => Owner::Filter(p.clone()),
            _ => Owner::Attach,
        }
    }
}

impl Compared for Program {
    fn object(&self) -> Option<ObjectRef<'_>> {
        match self {
            Program::Object {
                path,
                section,
                digest,
                ..
            } => Some(ObjectRef {
                path,
                section,
                digest: digest.as_deref(),
            }),
            _ => None,
        }
    }
}

impl std::fmt::Display for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Program::Builtin(n) => write!(f, "builtin {n}"),
            Program::Object { path, section, .. } => {
                write!(f, "object {} section {section}", path.display())
            }
            Program::Pinned(p) => write!(f, "pinned {}", p.display()),
            Program::Filter(p) => write!(f, "filter policy {p}"),
        }
    }
}

/// A hook the file asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WantedHook {
    pub dev: String,
    pub local: bool,
    pub force: bool,
    pub via: Option<std::net::IpAddr>,
    pub headroom: Option<u32>,
    pub program: Program,
}

/// A policy the file asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WantedPolicy {
    pub handling: Handling,
    pub capacity: Option<u32>,
    pub rules: Vec<RuleSpec>,
}

/// A tunnel the file asks for (its local address resolved).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WantedTunnel {
    pub dev: String,
    pub hook: Hook,
    pub spec: TunnelSpec,
    pub local_from_dev: bool,
}

/// A SID's behaviour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SidProgram {
    Builtin {
        name: String,
        dt6_table: Option<u32>,
    },
    Object {
        path: std::path::PathBuf,
        section: String,
        force_type: bool,
        /// SHA-256 of the file (`None`: a record older than digests).
        digest: Option<String>,
    },
}

impl Compared for SidProgram {
    fn object(&self) -> Option<ObjectRef<'_>> {
        match self {
            SidProgram::Object {
                path,
                section,
                digest,
                ..
            } => Some(ObjectRef {
                path,
                section,
                digest: digest.as_deref(),
            }),
            SidProgram::Builtin { .. } => None,
        }
    }
}

impl std::fmt::Display for SidProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SidProgram::Builtin {
                name,
                dt6_table: Some(t),
            } => write!(f, "builtin {name} dt6-table {}", table_name(*t)),
            SidProgram::Builtin { name, .. } => write!(f, "builtin {name}"),
            SidProgram::Object { path, section, .. } => {
                write!(f, "object {} section {section}", path.display())
            }
        }
    }
}

/// A SID the file asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WantedSid {
    pub dev: String,
    pub program: SidProgram,
}

/// Everything the file asks for, validated.
#[derive(Clone, Debug, Default)]
pub struct Desired {
    pub hooks: BTreeMap<(RouteId, Hook), WantedHook>,
    pub policies: BTreeMap<String, WantedPolicy>,
    pub tunnels: BTreeMap<RouteId, WantedTunnel>,
    pub decaps: BTreeMap<String, DecapRecord>,
    pub sids: BTreeMap<RouteId, WantedSid>,
}

/// How a managed route (or SID route) stands in the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// It carries exactly what lwtkit's record names.
    Ours,
    /// Gone (device or address removed, or deleted outside lwtkit).
    Gone,
    /// Rewritten outside lwtkit: what it carries now.
    Drifted(String),
}

/// A hook lwtkit holds now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldHook {
    pub dev: String,
    pub local: bool,
    pub headroom: Option<u32>,
    pub program: Program,
    /// The route's gateway, for routes lwtkit created (export).
    pub via: Option<std::net::IpAddr>,
    pub kernel: Kernel,
}

/// A policy lwtkit holds now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldPolicy {
    pub handling: Handling,
    pub capacity: u32,
    /// In id order.
    pub rules: Vec<RuleSpec>,
}

/// A tunnel lwtkit holds now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldTunnel {
    pub dev: String,
    pub hook: Hook,
    pub spec: TunnelSpec,
    pub kernel: Kernel,
}

/// A decapsulator lwtkit holds now, and whether it still runs.
#[derive(Clone, Debug)]
pub struct HeldDecap {
    pub record: DecapRecord,
    pub attached: bool,
}

/// A SID lwtkit holds now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldSid {
    pub dev: String,
    pub program: SidProgram,
    pub kernel: Kernel,
}

/// Everything lwtkit holds in the namespace, with the kernel read back.
#[derive(Clone, Debug, Default)]
pub struct Current {
    /// Hooks of `lwt attach` and of filter policies (tunnels' hooks are
    /// the tunnels').
    pub hooks: BTreeMap<(RouteId, Hook), HeldHook>,
    pub policies: BTreeMap<String, HeldPolicy>,
    pub tunnels: BTreeMap<RouteId, HeldTunnel>,
    pub decaps: BTreeMap<String, HeldDecap>,
    pub sids: BTreeMap<RouteId, HeldSid>,
}

/// What a change does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    /// Put back what was changed or removed outside lwtkit.
    Repair,
    Remove,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Repair => "repair",
            Action::Remove => "remove",
        })
    }
}

/// The library operation a change runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    DetachHook {
        route: RouteId,
        local: bool,
        hook: Hook,
        owner: Owner,
    },
    DelTunnel(RouteId),
    DelSid(RouteId),
    DelDecap(String),
    CreatePolicy(String),
    SetPolicy(String),
    ReplaceRules(String),
    AddDecap(String),
    AddTunnel(RouteId),
    AttachHook(RouteId, Hook),
    AddSid(RouteId),
    DeletePolicy(String),
}

impl Op {
    /// The order changes run in: attachments come off before what they
    /// use goes; policies, decapsulators and tunnels exist before the
    /// routes that use them; a policy goes last.
    fn phase(&self) -> u8 {
        match self {
            Op::DetachHook { .. } => 0,
            Op::DelTunnel(_) | Op::DelSid(_) | Op::DelDecap(_) => 1,
            Op::CreatePolicy(_) | Op::SetPolicy(_) | Op::ReplaceRules(_) => 2,
            Op::AddDecap(_) => 3,
            Op::AddTunnel(_) => 4,
            Op::AttachHook(..) => 5,
            Op::AddSid(_) => 6,
            Op::DeletePolicy(_) => 7,
        }
    }
}

/// One change of the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    pub action: Action,
    /// `attach`, `filter`, `tunnel`, `decap`, `sid`.
    pub kind: &'static str,
    /// The object, as its verb names it.
    pub object: String,
    /// What differs, in words.
    pub detail: Vec<String>,
    #[serde(skip)]
    pub op: Op,
}

/// Something lwtkit manages that the file does not name (kept: `--prune`
/// removes it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unnamed {
    pub kind: &'static str,
    pub object: String,
}

/// The changes from current to desired, in the order they run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub changes: Vec<Change>,
    /// Managed objects the file does not name, left alone without `--prune`.
    pub unnamed: Vec<Unnamed>,
}

/// What `plan` refuses: a difference no library operation can make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unplannable(pub String);

fn hook_object(route: &RouteId, hook: Hook) -> String {
    format!("{route} hook {hook}")
}

fn kind_of(program: &Program) -> &'static str {
    match program {
        Program::Filter(_) => "filter",
        _ => "attach",
    }
}

/// Compares desired with current and lists the changes (`prune`: also
/// the removal of what the file does not name).
pub fn plan(desired: &Desired, current: &Current, prune: bool) -> Result<Plan, Unplannable> {
    let mut changes = Vec::new();
    let mut unnamed = Vec::new();
    let mut removal = |kind: &'static str, object: String, op: Op, changes: &mut Vec<Change>| {
        if prune {
            changes.push(Change {
                action: Action::Remove,
                kind,
                object,
                detail: vec!["not in the file".into()],
                op,
            });
        } else {
            unnamed.push(Unnamed { kind, object });
        }
    };

    // Policies.
    for (name, want) in &desired.policies {
        let object = format!("policy {name}");
        match current.policies.get(name) {
            None => changes.push(Change {
                action: Action::Create,
                kind: "filter",
                object,
                detail: vec![format!(
                    "default {}, {} rule(s)",
                    want.handling.default.as_str(),
                    want.rules.len()
                )],
                op: Op::CreatePolicy(name.clone()),
            }),
            Some(held) => {
                if held.handling != want.handling {
                    // One write of the policy's config map: every route it
                    // is on judges by the new settings at once.
                    changes.push(Change {
                        action: Action::Update,
                        kind: "filter",
                        object: object.clone(),
                        detail: vec![handling_detail(&held.handling, &want.handling)],
                        op: Op::SetPolicy(name.clone()),
                    });
                }
                if held.rules != want.rules {
                    changes.push(Change {
                        action: Action::Update,
                        kind: "filter",
                        object,
                        detail: vec![rules_detail(&held.rules, &want.rules)],
                        op: Op::ReplaceRules(name.clone()),
                    });
                }
            }
        }
    }
    for name in current.policies.keys() {
        if !desired.policies.contains_key(name) {
            removal(
                "filter",
                format!("policy {name}"),
                Op::DeletePolicy(name.clone()),
                &mut changes,
            );
        }
    }

    // Hooks: of `lwt attach` and of policies.
    for ((route, hook), want) in &desired.hooks {
        let object = hook_object(route, *hook);
        let kind = kind_of(&want.program);
        let attach = Op::AttachHook(*route, *hook);
        let Some(held) = current.hooks.get(&(*route, *hook)) else {
            changes.push(Change {
                action: Action::Create,
                kind,
                object,
                detail: vec![format!("{} on dev {}", want.program, want.dev)],
                op: attach,
            });
            continue;
        };
        match &held.kernel {
            Kernel::Gone => {
                changes.push(Change {
                    action: Action::Repair,
                    kind,
                    object,
                    detail: vec![format!(
                        "the route is gone; {} attached again",
                        want.program
                    )],
                    op: attach,
                });
                continue;
            }
            Kernel::Drifted(found) => {
                changes.push(Change {
                    action: Action::Repair,
                    kind,
                    object,
                    detail: vec![format!(
                        "the route was changed outside lwtkit (it carries {found}); {} attached again",
                        want.program
                    )],
                    op: attach,
                });
                continue;
            }
            Kernel::Ours => {}
        }
        let moved = held.dev != want.dev || held.local != want.local;
        let new_owner = held.program.owner() != want.program.owner();
        let mut detail = Vec::new();
        if held.dev != want.dev {
            detail.push(format!("dev {} -> {}", held.dev, want.dev));
        }
        if held.local != want.local {
            detail.push(format!("local {} -> {}", held.local, want.local));
        }
        if !same_program(&held.program, &want.program) {
            detail.push(program_change(&held.program, &want.program));
        }
        if want.headroom.is_some() && want.headroom != held.headroom {
            detail.push(format!(
                "headroom {} -> {}",
                held.headroom.unwrap_or(0),
                want.headroom.unwrap_or(0)
            ));
        }
        if detail.is_empty() {
            continue;
        }
        if moved || new_owner {
            // Another owner or device: off first, then on (not atomic).
            detail.push("taken off, then attached again".into());
            changes.push(Change {
                action: Action::Update,
                kind: kind_of(&held.program),
                object: object.clone(),
                detail: detail.clone(),
                op: Op::DetachHook {
                    route: *route,
                    local: held.local,
                    hook: *hook,
                    owner: held.program.owner(),
                },
            });
        }
        changes.push(Change {
            action: Action::Update,
            kind,
            object,
            detail,
            op: attach,
        });
    }
    for ((route, hook), held) in &current.hooks {
        if desired.hooks.contains_key(&(*route, *hook)) {
            continue;
        }
        removal(
            kind_of(&held.program),
            format!("{} ({})", hook_object(route, *hook), held.program),
            Op::DetachHook {
                route: *route,
                local: held.local,
                hook: *hook,
                owner: held.program.owner(),
            },
            &mut changes,
        );
    }

    // Tunnels.
    for (route, want) in &desired.tunnels {
        let held = current.tunnels.get(route).map(|held| {
            let mut detail = Vec::new();
            if held.dev != want.dev {
                detail.push(format!("dev {} -> {}", held.dev, want.dev));
            }
            if held.hook != want.hook {
                detail.push(format!("hook {} -> {}", held.hook, want.hook));
            }
            if held.spec != want.spec {
                detail.push("tunnel header settings differ".into());
            }
            let moved = held.dev != want.dev || held.hook != want.hook;
            Held {
                kernel: &held.kernel,
                detail,
                moved,
            }
        });
        route_object(
            RouteObject {
                kind: "tunnel",
                object: format!("tunnel {route}"),
                created: format!("{} on dev {} hook {}", want.spec.kind, want.dev, want.hook),
                add: Op::AddTunnel(*route),
                del: Op::DelTunnel(*route),
            },
            held,
            &mut changes,
        );
    }
    for route in current.tunnels.keys() {
        if !desired.tunnels.contains_key(route) {
            removal(
                "tunnel",
                format!("tunnel {route}"),
                Op::DelTunnel(*route),
                &mut changes,
            );
        }
    }

    // Decapsulators.
    for (dev, want) in &desired.decaps {
        let object = format!("decap on {dev}");
        let add = Op::AddDecap(dev.clone());
        let Some(held) = current.decaps.get(dev) else {
            changes.push(Change {
                action: Action::Create,
                kind: "decap",
                object,
                detail: vec![want.kinds.join(",")],
                op: add,
            });
            continue;
        };
        if !held.attached {
            changes.push(Change {
                action: Action::Repair,
                kind: "decap",
                object,
                detail: vec!["defunct (its device went away); attached again".into()],
                op: add,
            });
        } else if !same_decap(&held.record, want) {
            changes.push(Change {
                action: Action::Update,
                kind: "decap",
                object,
                detail: vec!["reconfigured".into()],
                op: add,
            });
        }
    }
    for dev in current.decaps.keys() {
        if !desired.decaps.contains_key(dev) {
            removal(
                "decap",
                format!("decap on {dev}"),
                Op::DelDecap(dev.clone()),
                &mut changes,
            );
        }
    }

    // SIDs.
    for (route, want) in &desired.sids {
        let held = current.sids.get(route).map(|held| {
            let mut detail = Vec::new();
            if held.dev != want.dev {
                detail.push(format!("dev {} -> {}", held.dev, want.dev));
            }
            if !same_program(&held.program, &want.program) {
                detail.push(program_change(&held.program, &want.program));
            }
            Held {
                kernel: &held.kernel,
                detail,
                moved: held.dev != want.dev,
            }
        });
        route_object(
            RouteObject {
                kind: "sid",
                object: format!("sid {route}"),
                created: format!("{} on dev {}", want.program, want.dev),
                add: Op::AddSid(*route),
                del: Op::DelSid(*route),
            },
            held,
            &mut changes,
        );
    }
    for route in current.sids.keys() {
        if !desired.sids.contains_key(route) {
            removal(
                "sid",
                format!("sid {route}"),
                Op::DelSid(*route),
                &mut changes,
            );
        }
    }

    // A stable sort keeps each object's own order (off before on).
    changes.sort_by_key(|c| c.op.phase());
    Ok(Plan { changes, unnamed })
}

/// An object lwtkit holds on a route of its own (a tunnel, a SID), as
/// the plan names it and changes it.
struct RouteObject {
    kind: &'static str,
    object: String,
    /// The detail of its creation.
    created: String,
    add: Op,
    del: Op,
}

/// What lwtkit holds of a [`RouteObject`] now: its route's state, what
/// differs from the desired form, and whether that needs a removal first
/// (another device or hook).
struct Held<'a> {
    kernel: &'a Kernel,
    detail: Vec<String>,
    moved: bool,
}

/// The changes that bring one [`RouteObject`] to its desired form:
/// created when lwtkit holds none (`held` None), added again when its
/// route is gone or was changed outside lwtkit, else updated in place or,
/// when it moved, removed and added again; nothing when nothing differs.
fn route_object(o: RouteObject, held: Option<Held>, changes: &mut Vec<Change>) {
    let change = |action, object, detail, op| Change {
        action,
        kind: o.kind,
        object,
        detail,
        op,
    };
    let Some(held) = held else {
        changes.push(change(Action::Create, o.object, vec![o.created], o.add));
        return;
    };
    if let Some(why) = kernel_detail(held.kernel) {
        changes.push(change(Action::Repair, o.object, vec![why], o.add));
        return;
    }
    let mut detail = held.detail;
    if detail.is_empty() {
        return;
    }
    if held.moved {
        detail.push("removed, then added again".into());
        changes.push(change(
            Action::Update,
            o.object.clone(),
            detail.clone(),
            o.del,
        ));
    }
    changes.push(change(Action::Update, o.object, detail, o.add));
}

fn kernel_detail(k: &Kernel) -> Option<String> {
    match k {
        Kernel::Ours => None,
        Kernel::Gone => Some("its route is gone; added again".into()),
        Kernel::Drifted(found) => Some(format!(
            "its route was changed outside lwtkit (it carries {found}); added again"
        )),
    }
}

/// The settings that differ, `default drop -> allow, fragments ...`.
fn handling_detail(held: &Handling, want: &Handling) -> String {
    let mut parts = Vec::new();
    if held.default != want.default {
        parts.push(format!(
            "default {} -> {}",
            held.default.as_str(),
            want.default.as_str()
        ));
    }
    if held.fragments != want.fragments {
        parts.push(format!(
            "fragments {} -> {}",
            held.fragments, want.fragments
        ));
    }
    if held.malformed != want.malformed {
        parts.push(format!(
            "malformed {} -> {}",
            held.malformed, want.malformed
        ));
    }
    parts.join(", ")
}

fn rules_detail(held: &[RuleSpec], want: &[RuleSpec]) -> String {
    let h: BTreeSet<String> = held.iter().map(ToString::to_string).collect();
    let w: BTreeSet<String> = want.iter().map(ToString::to_string).collect();
    let added = w.difference(&h).count();
    let removed = h.difference(&w).count();
    if added == 0 && removed == 0 {
        format!("rules reordered ({} rules); replaced at once", want.len())
    } else {
        format!(
            "rules: {added} added, {removed} removed ({} -> {}); replaced at once",
            held.len(),
            want.len()
        )
    }
}

/// Whether a decapsulator is configured as the file asks (counters and
/// what it accepts now are not configuration).
fn same_decap(a: &DecapRecord, b: &DecapRecord) -> bool {
    let set = |v: &[String]| v.iter().cloned().collect::<BTreeSet<_>>();
    let addrs = |v: &[std::net::IpAddr]| v.iter().copied().collect::<BTreeSet<_>>();
    set(&a.kinds) == set(&b.kinds)
        && a.fou_port == b.fou_port
        && a.gue_port == b.gue_port
        && a.key == b.key
        && addrs(&a.local) == addrs(&b.local)
        && addrs(&a.remote) == addrs(&b.remote)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::rule::Verdict;

    fn route(s: &str) -> RouteId {
        RouteId {
            dst: s.parse().expect("prefix"),
            table: 254,
        }
    }

    fn wanted(program: Program) -> WantedHook {
        WantedHook {
            dev: "v0".into(),
            local: false,
            force: false,
            via: None,
            headroom: None,
            program,
        }
    }

    fn held(program: Program, kernel: Kernel) -> HeldHook {
        HeldHook {
            dev: "v0".into(),
            local: false,
            headroom: None,
            program,
            via: None,
            kernel,
        }
    }

    fn policy(rules: &[&str]) -> (WantedPolicy, HeldPolicy) {
        let rules: Vec<RuleSpec> = rules.iter().map(|r| r.parse().expect("rule")).collect();
        let handling = Handling::new(Verdict::Allow);
        (
            WantedPolicy {
                handling,
                capacity: None,
                rules: rules.clone(),
            },
            HeldPolicy {
                handling,
                capacity: 256,
                rules,
            },
        )
    }

    fn ops(p: &Plan) -> Vec<Op> {
        p.changes.iter().map(|c| c.op.clone()).collect()
    }

    #[test]
    fn the_same_state_plans_nothing() {
        let mut d = Desired::default();
        let mut c = Current::default();
        let r = route("10.0.0.3/32");
        d.hooks
            .insert((r, Hook::Out), wanted(Program::Builtin("count".into())));
        c.hooks.insert(
            (r, Hook::Out),
            held(Program::Builtin("count".into()), Kernel::Ours),
        );
        let (w, h) = policy(&["dst 10.0.0.3/32 proto tcp dport 8080 drop"]);
        d.policies.insert("web".into(), w);
        c.policies.insert("web".into(), h);
        let p = plan(&d, &c, true).expect("plans");
        assert!(p.changes.is_empty(), "{p:?}");
        assert!(p.unnamed.is_empty());
    }

    #[test]
    fn policies_come_before_the_routes_that_use_them_and_go_after() {
        let mut d = Desired::default();
        let mut c = Current::default();
        let (w, _) = policy(&["drop"]);
        d.policies.insert("new".into(), w);
        d.hooks.insert(
            (route("10.0.0.3/32"), Hook::Xmit),
            wanted(Program::Filter("new".into())),
        );
        let (_, h) = policy(&["drop"]);
        c.policies.insert("old".into(), h);
        c.hooks.insert(
            (route("10.0.0.4/32"), Hook::Xmit),
            held(Program::Filter("old".into()), Kernel::Ours),
        );
        let p = plan(&d, &c, true).expect("plans");
        assert_eq!(
            ops(&p),
            vec![
                Op::DetachHook {
                    route: route("10.0.0.4/32"),
                    local: false,
                    hook: Hook::Xmit,
                    owner: Owner::Filter("old".into()),
                },
                Op::CreatePolicy("new".into()),
                Op::AttachHook(route("10.0.0.3/32"), Hook::Xmit),
                Op::DeletePolicy("old".into()),
            ]
        );
        // Without --prune the old policy and its hook stay, named as such.
        let p = plan(&d, &c, false).expect("plans");
        assert_eq!(p.changes.len(), 2);
        assert_eq!(p.unnamed.len(), 2);
    }

    #[test]
    fn changed_rules_are_one_replace_and_settings_one_set() {
        let mut d = Desired::default();
        let mut c = Current::default();
        let (mut w, h) = policy(&["dport 80 drop"]);
        w.rules = vec!["dport 81 drop".parse().expect("rule")];
        w.handling.fragments = crate::filter::handling::Fragments::Drop;
        d.policies.insert("p".into(), w);
        c.policies.insert("p".into(), h);
        let p = plan(&d, &c, false).expect("plans");
        assert_eq!(
            ops(&p),
            vec![Op::SetPolicy("p".into()), Op::ReplaceRules("p".into())]
        );
        assert!(p.changes[1].detail[0].contains("1 added, 1 removed"));
    }

    #[test]
    fn a_new_default_verdict_is_one_set_with_the_other_settings() {
        let mut d = Desired::default();
        let mut c = Current::default();
        let (mut w, h) = policy(&["dport 80 drop"]);
        w.handling.default = Verdict::Drop;
        w.handling.malformed = crate::filter::handling::Malformed::Default;
        d.policies.insert("p".into(), w);
        c.policies.insert("p".into(), h);
        let p = plan(&d, &c, false).expect("plans");
        assert_eq!(ops(&p), vec![Op::SetPolicy("p".into())]);
        assert_eq!(
            p.changes[0].detail,
            vec!["default allow -> drop, malformed drop -> default".to_string()]
        );
    }

    fn object(digest: Option<&str>) -> Program {
        Program::Object {
            path: "/srv/drop.o".into(),
            section: "lwt_xmit".into(),
            program: None,
            prog_type: None,
            digest: digest.map(Into::into),
        }
    }

    #[test]
    fn an_object_rebuilt_at_the_same_path_is_replaced_in_place() {
        let mut d = Desired::default();
        let mut c = Current::default();
        let r = route("10.0.0.3/32");
        d.hooks
            .insert((r, Hook::Xmit), wanted(object(Some("bbbbbbbbbbbbbbbb"))));
        c.hooks.insert(
            (r, Hook::Xmit),
            held(object(Some("aaaaaaaaaaaaaaaa")), Kernel::Ours),
        );
        let p = plan(&d, &c, false).expect("plans");
        assert_eq!(ops(&p), vec![Op::AttachHook(r, Hook::Xmit)]);
        assert_eq!(p.changes[0].action, Action::Update);
        assert!(
            p.changes[0].detail[0].contains(
                "the file changed since it was attached (sha256 aaaaaaaaaaaa -> bbbbbbbbbbbb)"
            ),
            "{:?}",
            p.changes[0].detail
        );
        // The same content: nothing to do.
        c.hooks.insert(
            (r, Hook::Xmit),
            held(object(Some("bbbbbbbbbbbbbbbb")), Kernel::Ours),
        );
        assert!(plan(&d, &c, false).expect("plans").changes.is_empty());
    }

    #[test]
    fn a_record_older_than_digests_is_not_a_difference() {
        let mut d = Desired::default();
        let mut c = Current::default();
        let r = route("10.0.0.3/32");
        d.hooks
            .insert((r, Hook::Xmit), wanted(object(Some("bbbbbbbbbbbbbbbb"))));
        c.hooks
            .insert((r, Hook::Xmit), held(object(None), Kernel::Ours));
        assert!(plan(&d, &c, false).expect("plans").changes.is_empty());
    }

    #[test]
    fn a_sid_object_rebuilt_in_place_is_added_again() {
        let mut d = Desired::default();
        let mut c = Current::default();
        let r = route("fc00::b/128");
        let sid = |digest: &str| SidProgram::Object {
            path: "/srv/end.o".into(),
            section: "lwt_seg6local".into(),
            force_type: false,
            digest: Some(digest.into()),
        };
        d.sids.insert(
            r,
            WantedSid {
                dev: "v0".into(),
                program: sid("22"),
            },
        );
        c.sids.insert(
            r,
            HeldSid {
                dev: "v0".into(),
                program: sid("11"),
                kernel: Kernel::Ours,
            },
        );
        let p = plan(&d, &c, false).expect("plans");
        assert_eq!(ops(&p), vec![Op::AddSid(r)]);
        assert!(p.changes[0].detail[0].contains("the file changed"));
    }

    #[test]
    fn a_rewritten_route_is_repaired_and_a_new_program_replaced_in_place() {
        let mut d = Desired::default();
        let mut c = Current::default();
        let (a, b) = (route("10.0.0.3/32"), route("10.0.0.4/32"));
        for r in [a, b] {
            d.hooks
                .insert((r, Hook::Out), wanted(Program::Builtin("count".into())));
        }
        c.hooks.insert(
            (a, Hook::Out),
            held(
                Program::Builtin("count".into()),
                Kernel::Drifted("no BPF program".into()),
            ),
        );
        c.hooks.insert(
            (b, Hook::Out),
            held(Program::Builtin("pass".into()), Kernel::Ours),
        );
        let p = plan(&d, &c, false).expect("plans");
        assert_eq!(p.changes[0].action, Action::Repair);
        assert!(p.changes[0].detail[0].contains("outside lwtkit"));
        assert_eq!(p.changes[1].action, Action::Update);
        assert_eq!(
            ops(&p),
            vec![Op::AttachHook(a, Hook::Out), Op::AttachHook(b, Hook::Out)]
        );
    }

    #[test]
    fn another_owner_takes_the_hook_after_the_old_one_is_off() {
        let mut d = Desired::default();
        let mut c = Current::default();
        let r = route("10.0.0.3/32");
        let (w, h) = policy(&[]);
        d.policies.insert("p".into(), w);
        c.policies.insert("p".into(), h);
        d.hooks
            .insert((r, Hook::Out), wanted(Program::Filter("p".into())));
        c.hooks.insert(
            (r, Hook::Out),
            held(Program::Builtin("count".into()), Kernel::Ours),
        );
        let p = plan(&d, &c, false).expect("plans");
        assert_eq!(
            ops(&p),
            vec![
                Op::DetachHook {
                    route: r,
                    local: false,
                    hook: Hook::Out,
                    owner: Owner::Attach
                },
                Op::AttachHook(r, Hook::Out)
            ]
        );
    }
}
