//! Detach and restore logic against a fake kernel: every way a route can
//! change under lwtkit, decided without root.
use std::collections::BTreeMap;

use netlink_packet_route::route::{RouteAttribute, RouteMessage, RouteMetric};

use super::*;
use crate::{
    route::{
        codec::{BpfProgAttr, LwtBpf},
        kernel::{fake::FakeRoutes, RouteTable},
        ops::{self, NewRoute, RouteKey},
    },
    state::{HookRecord, Origin, Owner, RouteRecord},
};

fn key() -> RouteKey {
    RouteKey {
        dst: "10.0.0.9/32".parse().expect("valid"),
        table: 254,
    }
}

/// The route as the user had it: with an initcwnd metric lwtkit must keep.
fn plain_route() -> RouteMessage {
    let mut r = ops::new_route(&NewRoute {
        key: key(),
        local: false,
        oif: 3,
        via: None,
    });
    r.attributes
        .push(RouteAttribute::Metrics(vec![RouteMetric::InitCwnd(20)]));
    r
}

fn with_programs(base: &RouteMessage, progs: &[(Hook, &str)]) -> RouteMessage {
    let mut bpf = LwtBpf::default();
    for (h, name) in progs {
        bpf.set_hook(
            *h,
            Some(BpfProgAttr {
                fd: None,
                name: (*name).into(),
            }),
        );
    }
    let mut r = ops::without_encap(base.clone());
    r.attributes.extend(bpf.route_attributes());
    r
}

fn hook(name: &str, origin: Origin) -> HookRecord {
    HookRecord {
        name: name.into(),
        pin: format!("/nonexistent/{name}").into(),
        counters: None,
        origin,
        object_sha256: None,
    }
}

fn builtin() -> Origin {
    Origin::Builtin {
        name: "count".into(),
    }
}

fn encap() -> Origin {
    Origin::Encap {
        tunnel: "gre".into(),
    }
}

fn record(original: Option<&RouteMessage>, hooks: &[(Hook, HookRecord)]) -> RouteRecord {
    RouteRecord {
        dst: key().dst,
        table: key().table,
        local: false,
        dev: "v0".into(),
        original: original.map(|r| ops::to_hex(&ops::sanitize(r))),
        headroom: None,
        hooks: hooks.iter().cloned().collect::<BTreeMap<_, _>>(),
        mtu_hook: None,
        stand_in: false,
    }
}

/// Runs a plan against the fake kernel the way `detach_in` does.
fn execute(kernel: &mut FakeRoutes, plan: &Plan, rec: &RouteRecord) -> Result<(), NetlinkError> {
    match plan {
        Plan::Forget => Ok(()),
        Plan::Restore(r) => kernel.replace(r.clone()),
        Plan::Delete(r) => kernel.delete(r),
        Plan::Resend { base, keep } => {
            let progs: Vec<(Hook, &str)> = keep
                .iter()
                .map(|h| (*h, rec.hooks[h].name.as_str()))
                .collect();
            kernel.replace(with_programs(base, &progs))
        }
    }
}

fn kernel_with(route: RouteMessage) -> FakeRoutes {
    let mut k = FakeRoutes::default();
    k.routes.insert((key().table, key().dst), route);
    k
}

#[test]
fn detach_restores_the_original_route_while_it_is_lwtkits() {
    let original = plain_route();
    let rec = record(
        Some(&original),
        &[(Hook::Out, hook("lwtkit-count:[lwt_out]#7", builtin()))],
    );
    let mut k = kernel_with(with_programs(
        &original,
        &[(Hook::Out, "lwtkit-count:[lwt_out]#7")],
    ));
    let current = k.lookup(&key()).expect("get");
    let plan = plan_detach(&rec, current.as_ref(), &[Hook::Out], false, "r").expect("plan");
    assert!(matches!(plan, Plan::Restore(_)));
    execute(&mut k, &plan, &rec).expect("restore");
    let now = k.lookup(&key()).expect("get").expect("route");
    assert_eq!(ops::sanitize(&now), ops::sanitize(&original));
}

#[test]
fn a_vanished_route_is_forgotten_not_resurrected() {
    // `ip addr del` took the local route away, or the device was deleted.
    let original = plain_route();
    let rec = record(
        Some(&original),
        &[(Hook::In, hook("lwtkit-count:[lwt_in]#9", builtin()))],
    );
    let mut k = FakeRoutes::default();
    let plan = plan_detach(&rec, None, &[Hook::In], false, "r").expect("plan");
    assert_eq!(plan, Plan::Forget);
    execute(&mut k, &plan, &rec).expect("nothing to do");
    assert!(k.routes.is_empty(), "the route must not come back");
    // Even a restore attempted anyway cannot create it: replace never creates.
    assert!(k.replace(original).is_err());
    assert!(k.routes.is_empty());
}

#[test]
fn a_route_replaced_by_the_user_is_left_alone() {
    let rec = record(
        None,
        &[(Hook::Out, hook("lwtkit-count:[lwt_out]#7", builtin()))],
    );
    // `ip route replace 10.0.0.9/32 dev v0 proto static`: no programs now.
    let users = plain_route();
    let mut k = kernel_with(users.clone());
    let current = k.lookup(&key()).expect("get");
    let err = plan_detach(&rec, current.as_ref(), &[Hook::Out], false, "10.0.0.9/32")
        .expect_err("drift refused");
    let text = err.to_string();
    assert!(
        matches!(err, Error::Attach(AttachError::Drift { .. })),
        "{text}"
    );
    assert!(
        text.contains("changed outside lwtkit") && text.contains("--force"),
        "{text}"
    );
    assert_eq!(k.routes[&(254, key().dst)], users, "untouched");
    assert!(k.log.is_empty());
    // --force deletes it as lwtkit created it.
    let plan = plan_detach(&rec, current.as_ref(), &[Hook::Out], true, "r").expect("forced");
    execute(&mut k, &plan, &rec).expect("delete");
    assert!(k.routes.is_empty());
}

#[test]
fn a_program_swapped_by_someone_else_is_drift() {
    let original = plain_route();
    let rec = record(
        Some(&original),
        &[(Hook::Xmit, hook("drop.o:[lwt_xmit]#41", builtin()))],
    );
    let theirs = with_programs(&original, &[(Hook::Xmit, "drop.o:[lwt_xmit]#42")]);
    assert_eq!(
        standing(&rec, Some(&theirs)),
        Standing::Drifted {
            found: Marks::from([("xmit".into(), "drop.o:[lwt_xmit]#42".into())])
        }
    );
}

#[test]
fn a_route_lwtkit_created_is_deleted() {
    let rec = record(None, &[(Hook::Out, hook("p#1", builtin()))]);
    let mut k = kernel_with(with_programs(&plain_route(), &[(Hook::Out, "p#1")]));
    let current = k.lookup(&key()).expect("get");
    let plan = plan_detach(&rec, current.as_ref(), &[Hook::Out], false, "r").expect("plan");
    assert!(matches!(plan, Plan::Delete(_)));
    execute(&mut k, &plan, &rec).expect("delete");
    assert!(k.routes.is_empty());
}

#[test]
fn removing_a_tunnel_hook_keeps_the_other_owner_and_puts_the_mtu_back() {
    let original = plain_route();
    let mut rec = record(
        Some(&original),
        &[
            (Hook::Out, hook("count#1", builtin())),
            (Hook::Xmit, hook("encap#2", encap())),
        ],
    );
    rec.mtu_hook = Some(Hook::Xmit);
    let mut lowered = with_programs(
        &original,
        &[(Hook::Out, "count#1"), (Hook::Xmit, "encap#2")],
    );
    lower_mtu(&mut lowered, 1500, 24, false);
    let mut k = kernel_with(lowered);
    let current = k.lookup(&key()).expect("get");
    let plan = plan_detach(&rec, current.as_ref(), &[Hook::Xmit], false, "r").expect("plan");
    let Plan::Resend { base, keep } = &plan else {
        panic!("expected a resend, got {plan:?}")
    };
    assert_eq!(keep, &vec![Hook::Out]);
    assert_eq!(
        metrics_of(base),
        vec![RouteMetric::InitCwnd(20)],
        "MTU back, initcwnd kept"
    );
    execute(&mut k, &plan, &rec).expect("resend");
    let now = k.lookup(&key()).expect("get").expect("route");
    assert_eq!(marks(&now), Marks::from([("out".into(), "count#1".into())]));

    // Taking off the count hook instead leaves the tunnel's MTU alone.
    let plan = plan_detach(&rec, current.as_ref(), &[Hook::Out], false, "r").expect("plan");
    let Plan::Resend { base, .. } = &plan else {
        panic!("expected a resend")
    };
    assert!(metrics_of(base).contains(&RouteMetric::Mtu(1476)));
}

#[test]
fn features_do_not_remove_each_others_hooks() {
    let rec = record(
        None,
        &[
            (Hook::Out, hook("count#1", builtin())),
            (Hook::Xmit, hook("encap#2", encap())),
        ],
    );
    // `lwt detach` takes only what `lwt attach` put there.
    assert_eq!(
        hooks_to_remove(&rec, None, Some(&Owner::Attach), "r").expect("own hooks"),
        vec![Hook::Out]
    );
    let err = hooks_to_remove(&rec, Some(Hook::Xmit), Some(&Owner::Attach), "r")
        .expect_err("tunnel hook");
    assert!(
        err.to_string().contains("lwt encap del 10.0.0.9/32"),
        "{err}"
    );
    // `lwt encap del` takes only the tunnel's.
    assert_eq!(
        hooks_to_remove(&rec, Some(Hook::Xmit), Some(&Owner::Encap), "r").expect("tunnel"),
        vec![Hook::Xmit]
    );
    let only_tunnel = record(None, &[(Hook::Xmit, hook("encap#2", encap()))]);
    let err = hooks_to_remove(&only_tunnel, None, Some(&Owner::Attach), "r")
        .expect_err("nothing of attach's");
    assert!(
        matches!(err, Error::Attach(AttachError::OwnedHook { .. })),
        "{err}"
    );
    // reset takes everything.
    assert_eq!(
        hooks_to_remove(&rec, None, None, "r").expect("all"),
        vec![Hook::Out, Hook::Xmit]
    );
}

#[test]
fn mtu_lowering_keeps_other_metrics_and_the_ipv6_floor() {
    let mut r = plain_route();
    lower_mtu(&mut r, 1500, 50, false);
    let m = metrics_of(&r);
    assert!(m.contains(&RouteMetric::InitCwnd(20)));
    assert!(m.contains(&RouteMetric::Mtu(1450)) && m.contains(&RouteMetric::Advmss(1410)));
    lower_mtu(&mut r, 1300, 100, true);
    assert!(metrics_of(&r).contains(&RouteMetric::Mtu(1280)));
}

#[test]
fn the_fake_kernel_keeps_rtnetlinks_rules() {
    let mut k = FakeRoutes::default();
    k.create(plain_route()).expect("create");
    assert_eq!(
        k.create(plain_route()).expect_err("exclusive").errno(),
        Some(libc::EEXIST)
    );
    k.delete(&plain_route()).expect("delete");
    assert_eq!(
        k.replace(plain_route()).expect_err("never creates").errno(),
        Some(libc::ENOENT)
    );
}
