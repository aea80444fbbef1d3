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
