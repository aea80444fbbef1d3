//! The seam between lwtkit's route logic and the kernel: the four route
//! operations attach, detach and recovery need, behind a trait, so that
//! logic is unit-tested against a fake kernel and the namespace tests
//! prove the real one (rtnetlink).
//!
//! Semantics follow rtnetlink's own split: *create* is exclusive
//! (`NLM_F_CREATE|NLM_F_EXCL`: fails if the route exists), *replace* never
//! creates (`NLM_F_REPLACE` alone: fails with ENOENT if the route vanished),
//! so a restore can never bring back a route someone removed.
use std::collections::BTreeMap;

use netlink_packet_core::NLM_F_REPLACE;
use netlink_packet_route::{route::RouteMessage, RouteNetlinkMessage};

use super::{
    codec::{LwtBpf, Seg6LocalBpf},
    netlink::{NetlinkError, Rtnl},
    ops::{self, RouteKey},
};

/// What identifies the programs a route runs: hook (`in`, `out`, `xmit`,
/// `seg6local`) to the program name it carries. lwtkit's names end in
/// `#<program id>`, so equal marks mean the very same programs.
pub type Marks = BTreeMap<String, String>;

/// A program name on a route split into its name and the program id that
/// lwtkit's names end with: `drop.o:[lwt_out]#42` is (`drop.o:[lwt_out]`,
/// 42). A name without a numeric `#<id>` (iproute2's) stays whole.
pub fn split_program_name(name: &str) -> (&str, Option<u32>) {
    match name.rsplit_once('#').map(|(base, id)| (base, id.parse())) {
        Some((base, Ok(id))) => (base, Some(id)),
        _ => (name, None),
    }
}

/// The marks of a route (empty: it runs no BPF program).
pub fn marks(route: &RouteMessage) -> Marks {
    let mut m = Marks::new();
    if let Ok(Some(bpf)) = LwtBpf::from_route_attributes(&route.attributes) {
        for (hook, prog) in bpf.hooks() {
            m.insert(hook.to_string(), prog.name.clone());
        }
    }
    if let Ok(Some(s)) = Seg6LocalBpf::from_route_attributes(&route.attributes) {
        m.insert("seg6local".into(), s.prog.name.clone());
    }
    m
}

/// The route operations lwtkit performs.
pub trait RouteTable {
    /// The route with exactly this table and prefix (lowest metric first).
    fn lookup(&mut self, key: &RouteKey) -> Result<Option<RouteMessage>, NetlinkError>;
    /// Every route with exactly this table and prefix, whatever its
    /// metric (lowest first).
    fn lookup_all(&mut self, key: &RouteKey) -> Result<Vec<RouteMessage>, NetlinkError>;
    /// Adds a route that must not exist yet.
    fn create(&mut self, route: RouteMessage) -> Result<(), NetlinkError>;
    /// Replaces a route that must still exist.
    fn replace(&mut self, route: RouteMessage) -> Result<(), NetlinkError>;
    /// Deletes exactly this route.
    fn delete(&mut self, route: &RouteMessage) -> Result<(), NetlinkError>;
}

impl RouteTable for Rtnl {
    fn lookup(&mut self, key: &RouteKey) -> Result<Option<RouteMessage>, NetlinkError> {
        super::lookup::find(self, key)
    }

    fn lookup_all(&mut self, key: &RouteKey) -> Result<Vec<RouteMessage>, NetlinkError> {
        super::lookup::find_all(self, key)
    }

    fn create(&mut self, route: RouteMessage) -> Result<(), NetlinkError> {
        ops::add(self, route)
    }

    fn replace(&mut self, route: RouteMessage) -> Result<(), NetlinkError> {
        self.execute(RouteNetlinkMessage::NewRoute(route), NLM_F_REPLACE)
    }

    fn delete(&mut self, route: &RouteMessage) -> Result<(), NetlinkError> {
        ops::delete(self, route)
    }
}

/// What [`delete_if_ours`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deleted {
    /// The route carried lwtkit's programs; the kernel acknowledged its
    /// deletion.
    Ours,
    /// No route of that prefix, table, device and metric (or it went
    /// between the look and the delete).
    Gone,
    /// The route there carries other programs: left alone.
    NotOurs(Marks),
}

/// Deletes the route lwtkit made for `key` at exactly `metric` (on device
/// `oif`, when given), if it still carries exactly `expected`. Routes of
/// other metrics (the kernel's metric-0 local route beside lwtkit's
/// stand-in) are neither looked at nor touched, and a route of that metric
/// carrying other programs is someone else's.
pub fn delete_if_ours(
    routes: &mut dyn RouteTable,
    key: &RouteKey,
    oif: Option<u32>,
    metric: u32,
    expected: &Marks,
) -> Result<Deleted, NetlinkError> {
    let candidates: Vec<RouteMessage> = routes
        .lookup_all(key)?
        .into_iter()
        .filter(|r| ops::metric_of(r) == metric)
        .filter(|r| oif.is_none() || ops::oif_of(r) == oif)
        .collect();
    let Some(ours) = candidates.iter().find(|r| marks(r) == *expected) else {
        return Ok(match candidates.first() {
            Some(other) => Deleted::NotOurs(marks(other)),
            None => Deleted::Gone,
        });
    };
    match routes.delete(ours) {
        Ok(()) => Ok(Deleted::Ours),
        Err(e) if e.errno() == Some(libc::ESRCH) => Ok(Deleted::Gone),
        Err(e) => Err(e),
    }
}

/// An in-memory kernel for unit tests: routes keyed by table and prefix,
/// with the same create / replace / delete rules as rtnetlink.
#[cfg(test)]
pub mod fake {
    use std::collections::HashMap;

    use super::*;

    #[derive(Default)]
    pub struct FakeRoutes {
        pub routes: HashMap<(u32, ipnet::IpNet), RouteMessage>,
        /// Operations performed, for assertions (`create`, `replace`, `delete`).
        pub log: Vec<&'static str>,
    }

    fn key_of(route: &RouteMessage) -> (u32, ipnet::IpNet) {
        (
            ops::table_of(route),
            ops::dst_of(route).expect("test routes have a destination"),
        )
    }

    fn errno(errno: i32) -> NetlinkError {
        NetlinkError::Kernel {
            errno,
            message: None,
        }
    }

    impl RouteTable for FakeRoutes {
        fn lookup(&mut self, key: &RouteKey) -> Result<Option<RouteMessage>, NetlinkError> {
            Ok(self.routes.get(&(key.table, key.dst)).cloned())
        }

        fn lookup_all(&mut self, key: &RouteKey) -> Result<Vec<RouteMessage>, NetlinkError> {
            Ok(self.lookup(key)?.into_iter().collect())
        }

        fn create(&mut self, route: RouteMessage) -> Result<(), NetlinkError> {
            self.log.push("create");
            let k = key_of(&route);
            if self.routes.contains_key(&k) {
                return Err(errno(libc::EEXIST));
            }
            self.routes.insert(k, route);
            Ok(())
        }

        fn replace(&mut self, route: RouteMessage) -> Result<(), NetlinkError> {
            self.log.push("replace");
            let k = key_of(&route);
            if !self.routes.contains_key(&k) {
                return Err(errno(libc::ENOENT));
            }
            self.routes.insert(k, route);
            Ok(())
        }

        fn delete(&mut self, route: &RouteMessage) -> Result<(), NetlinkError> {
            self.log.push("delete");
            self.routes
                .remove(&key_of(route))
                .map(|_| ())
                .ok_or_else(|| errno(libc::ESRCH))
        }
    }
}

#[cfg(test)]
mod tests {
    use netlink_packet_route::route::RouteAttribute;

    use super::{fake::FakeRoutes, *};
    use crate::route::codec::{BpfProgAttr, LwtBpf};

    fn stand_in(metric: u32, prog: Option<&str>) -> RouteMessage {
        let mut r = ops::new_route(&ops::NewRoute {
            key: key(),
            local: true,
            oif: 3,
            via: None,
        });
        r.attributes.push(RouteAttribute::Priority(metric));
        if let Some(name) = prog {
            let mut bpf = LwtBpf::default();
            bpf.set_hook(
                crate::hook::Hook::In,
                Some(BpfProgAttr {
                    fd: Some(9),
                    name: name.into(),
                }),
            );
            r.attributes.extend(bpf.encode().expect("encodes"));
        }
        r
    }

    fn key() -> RouteKey {
        RouteKey {
            dst: "fd00::20/128".parse().expect("valid"),
            table: 255,
        }
    }

    fn ours() -> Marks {
        Marks::from([("in".into(), "lwtkit-count:[lwt_in]#7".into())])
    }

    #[test]
    fn program_names_split_at_their_id() {
        assert_eq!(
            split_program_name("drop.o:[lwt_out]#42"),
            ("drop.o:[lwt_out]", Some(42))
        );
        assert_eq!(
            split_program_name("lwtkit-filter-web:[lwt_out]#7"),
            ("lwtkit-filter-web:[lwt_out]", Some(7))
        );
        assert_eq!(
            split_program_name("drop.o:[lwt_out]"),
            ("drop.o:[lwt_out]", None)
        );
        assert_eq!(split_program_name("odd#name"), ("odd#name", None));
        assert_eq!(split_program_name("a#b#9"), ("a#b", Some(9)));
    }

    #[test]
    fn delete_if_ours_deletes_only_lwtkits_route_at_its_metric() {
        let mut k = FakeRoutes::default();
        k.create(stand_in(1, Some("lwtkit-count:[lwt_in]#7")))
            .expect("added");
        assert_eq!(
            delete_if_ours(&mut k, &key(), Some(3), 1, &ours()).expect("no kernel error"),
            Deleted::Ours
        );
        assert!(k.routes.is_empty());
        assert_eq!(
            delete_if_ours(&mut k, &key(), Some(3), 1, &ours()).expect("no kernel error"),
            Deleted::Gone
        );
    }

    #[test]
    fn delete_if_ours_leaves_other_programs_metrics_and_devices() {
        let mut k = FakeRoutes::default();
        // Someone else's route of that metric.
        k.create(stand_in(1, None)).expect("added");
        assert_eq!(
            delete_if_ours(&mut k, &key(), Some(3), 1, &ours()).expect("no kernel error"),
            Deleted::NotOurs(Marks::new())
        );
        // lwtkit's programs, but at the kernel's metric or on another device.
        k.routes.clear();
        k.create(stand_in(0, Some("lwtkit-count:[lwt_in]#7")))
            .expect("added");
        assert_eq!(
            delete_if_ours(&mut k, &key(), Some(3), 1, &ours()).expect("no kernel error"),
            Deleted::Gone
        );
        assert_eq!(
            delete_if_ours(&mut k, &key(), Some(4), 0, &ours()).expect("no kernel error"),
            Deleted::Gone
        );
        assert_eq!(k.routes.len(), 1);
        assert!(!k.log.contains(&"delete"), "{:?}", k.log);
    }
}
