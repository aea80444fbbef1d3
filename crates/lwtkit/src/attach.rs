//! `lwt attach` and `lwt detach`: put a program on a route's hook, keeping
//! the hooks lwtkit attached earlier, and take it off again, restoring the
//! route exactly as it was before lwtkit first touched it.
//!
//! Order matters for "nothing half-applied": everything that can fail on
//! user input (device, object, verifier) happens before the route changes;
//! the route is changed by one atomic RTM_NEWROUTE with NLM_F_REPLACE; pins
//! are staged beside the live ones and swapped in only after the kernel
//! accepted the route.
use std::{
    fs,
    net::IpAddr,
    os::fd::{AsRawFd, OwnedFd},
};

use ipnet::IpNet;
use libbpf_rs::ProgramHandle;
use netlink_packet_route::route::{RouteAttribute, RouteMessage, RouteMetric, RouteType};

use crate::{
    error::{Error, Result},
    hook::Hook,
    loader::{self, ProgramSource},
    route::{
        codec::{BpfProgAttr, LwtBpf, MAX_HEADROOM},
        encap,
        netlink::{NetlinkError, Rtnl},
        ops::{self, NewRoute, RouteKey},
    },
    state::{self, HookRecord, NetnsState, RouteRecord},
    system,
};

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
}

/// What a detach did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Detached {
    pub route: String,
    pub hooks: Vec<Hook>,
    /// `restored`: back to the route as it was; `deleted`: lwtkit had
    /// created it; `kept`: other lwtkit hooks remain.
    pub route_now: &'static str,
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

/// Attaches the program `req` names to the route, creating the route or
/// replacing it in place.
pub fn attach(req: &AttachRequest) -> Result<Attached> {
    if let Some(h) = req.headroom.filter(|h| *h > MAX_HEADROOM) {
        return Err(Error::Headroom(h));
    }
    if let Some(gw) = req.via {
        if gw.is_ipv4() != req.dst.addr().is_ipv4() {
            return Err(Error::InvalidAddress(format!(
                "{gw}: gateway family differs from {}",
                req.dst
            )));
        }
    }
    system::require_attach_privileges("lwt attach")?;
    let oif = ifindex(&req.dev)?;
    let (state, key, skey, route_label) = open_route(req.dst, req.table, req.local)?;
    let record = state.load(&skey)?;
    let mut rtnl = Rtnl::open()?;
    let existing = ops::find(&mut rtnl, &key)?;

    // The hooks the route already has must all be lwtkit's (or the one we replace).
    let live_bpf = existing
        .as_ref()
        .map(|r| LwtBpf::from_route_attributes(&r.attributes))
        .transpose()
        .map_err(|e| Error::Invalid(format!("route {route_label}: {e}")))?
        .flatten();
    if let Some(existing) = &existing {
        check_existing_shape(existing, req, oif, &route_label)?;
        check_foreign_encap(existing, live_bpf.as_ref(), record.as_ref(), &route_label)?;
    }

    let mut loaded = loader::load(&req.source, req.hook)?;

    let mut bpf = LwtBpf {
        headroom: req.headroom.or(record.as_ref().and_then(|r| r.headroom)),
        ..LwtBpf::default()
    };
    let kept_fds = match &record {
        Some(rec) => keep_hooks(rec, req.hook, &mut bpf)?,
        None => Vec::new(),
    };
    bpf.set_hook(
        req.hook,
        Some(BpfProgAttr {
            fd: Some(loaded.fd().as_raw_fd() as u32),
            name: loaded.route_name.clone(),
        }),
    );

    let base = match &existing {
        Some(r) => ops::without_encap(ops::sanitize(r)),
        None => ops::new_route(&NewRoute {
            key: key.clone(),
            local: req.local,
            oif,
            via: req.via,
        }),
    };
    let mut route = base;
    ops::set_oif(&mut route, oif);
    if let Some(gw) = req.via {
        ops::set_gateway(&mut route, gw);
    }
    route
        .attributes
        .extend(bpf.encode().map_err(|e| Error::Invalid(e.to_string()))?);

    if let Some(reduce) = req.mtu_reduction {
        let dev_mtu = crate::route::link::mtu(&mut rtnl, oif)?.unwrap_or(1500);
        let mtu = dev_mtu.saturating_sub(reduce).max(576);
        let ip_tcp = if req.dst.addr().is_ipv6() { 60 } else { 40 };
        route
            .attributes
            .retain(|a| !matches!(a, RouteAttribute::Metrics(_)));
        route.attributes.push(RouteAttribute::Metrics(vec![
            RouteMetric::Mtu(mtu),
            RouteMetric::Advmss(mtu - ip_tcp),
        ]));
    }

    // Stage the pins before the route changes; a failed pin changes nothing.
    let stage = state.staging_dir(&skey, req.hook)?;
    let staged = match loaded.pin(&stage) {
        Ok(s) => s,
        Err(e) => {
            let _ = fs::remove_dir_all(&stage);
            return Err(e);
        }
    };
    // A route lwtkit creates is added exclusively: should the lookup have
    // missed one with the same key (one the kernel skips, or a concurrent
    // add), the kernel refuses rather than overwrite an unrecorded route.
    let sent = match &existing {
        Some(_) => ops::replace(&mut rtnl, route),
        None => ops::add(&mut rtnl, route),
    };
    if let Err(e) = sent {
        let _ = fs::remove_dir_all(&stage);
        return Err(route_error(&route_label, e));
    }
    drop(kept_fds);

    // The route now holds the program; swap the staged pins in.
    let live = state.pin_dir(&skey, req.hook);
    let _ = fs::remove_dir_all(&live);
    fs::rename(&stage, &live).map_err(|e| Error::State {
        path: live.clone(),
        reason: e.to_string(),
    })?;
    let hook_record = HookRecord {
        pin: live.join("prog"),
        counters: staged.counters.as_ref().map(|_| live.join("counters")),
        ..staged
    };

    let created = existing.is_none();
    let mut record = record.unwrap_or_else(|| RouteRecord {
        dst: key.dst,
        table: key.table,
        local: existing
            .as_ref()
            .map_or(req.local, |r| r.header.kind == RouteType::Local),
        dev: req.dev.clone(),
        original: existing.as_ref().map(|r| ops::to_hex(&ops::sanitize(r))),
        headroom: None,
        hooks: Default::default(),
    });
    record.dev = req.dev.clone();
    record.headroom = bpf.headroom;
    record.hooks.insert(req.hook, hook_record.clone());
    state.save(&skey, &record)?;

    let handle = ProgramHandle::from_pinned_path(&hook_record.pin)
        .map_err(|_| Error::MissingPin(hook_record.pin.clone()))?;
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

/// Puts every hook of `record` but `except` into `bpf`, by opening its
/// pin; the returned fds must stay open until the route is sent.
fn keep_hooks(record: &RouteRecord, except: Hook, bpf: &mut LwtBpf) -> Result<Vec<OwnedFd>> {
    let mut fds = Vec::new();
    for (hook, h) in record.hooks.iter().filter(|(h, _)| **h != except) {
        let fd = libbpf_rs::Program::fd_from_pinned_path(&h.pin)
            .map_err(|_| Error::MissingPin(h.pin.clone()))?;
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
) -> Result<()> {
    let attrs = &existing.attributes;
    if attrs
        .iter()
        .any(|a| matches!(a, RouteAttribute::MultiPath(_)))
    {
        return Err(Error::Invalid(format!("route {route} is a multipath route; its encaps live on each next hop, which lwtkit does not attach to")));
    }
    if let Some(cur) = ops::oif_of(existing) {
        if cur != oif {
            return Err(Error::Invalid(format!(
                "route {route} exists on another device (ifindex {cur}); lwtkit will not move it, pass that device with --dev"
            )));
        }
    }
    if let Some(gw) = req.via {
        let cur = attrs.iter().find_map(|a| match a {
            RouteAttribute::Gateway(g) => Some(g.clone()),
            _ => None,
        });
        if cur.is_some_and(|c| c != ops::address(gw)) {
            return Err(Error::Invalid(format!(
                "route {route} exists with another gateway; lwtkit will not change it (drop --via)"
            )));
        }
    }
    let is_local = existing.header.kind == RouteType::Local;
    if req.local != is_local {
        return Err(Error::Invalid(format!(
            "route {route} exists and is {}a local route; {}",
            if is_local { "" } else { "not " },
            if is_local {
                "pass --local"
            } else {
                "drop --local"
            }
        )));
    }
    let metric = attrs.iter().find_map(|a| match a {
        RouteAttribute::Priority(p) => Some(*p),
        _ => None,
    });
    if req.dst.addr().is_ipv6() && metric.unwrap_or(0) == 0 {
        return Err(Error::Invalid(format!(
            "route {route} is an IPv6 route of metric 0 (made by the kernel); the kernel turns metric 0 into 1024 on every add or replace, so it cannot be replaced in place"
        )));
    }
    Ok(())
}

/// Refuses to replace encaps lwtkit cannot put back: another encap type, or
/// BPF hooks someone else attached (a dump gives their names, not the programs).
fn check_foreign_encap(
    existing: &RouteMessage,
    live_bpf: Option<&LwtBpf>,
    record: Option<&RouteRecord>,
    route: &str,
) -> Result<()> {
    if let Some(bpf) = live_bpf {
        for (h, prog) in bpf.hooks() {
            let ours = record
                .and_then(|r| r.hooks.get(&h))
                .is_some_and(|rec| rec.name == prog.name);
            if !ours {
                return Err(Error::ForeignHook {
                    route: route.into(),
                    hook: h,
                    name: prog.name.clone(),
                });
            }
        }
        return Ok(());
    }
    match encap::from_route_attributes(&existing.attributes) {
        Some(other) => Err(Error::Invalid(format!(
            "route {route} carries a `{}` encap; a route has one encap, and lwtkit will not replace it with BPF",
            other.kind()
        ))),
        None => Ok(()),
    }
}

/// Takes the namespace's state (locked, after collecting what vanished
/// namespaces left) and names the route: its key, record key and label.
fn open_route(
    dst: IpNet,
    table: Option<u32>,
    local: bool,
) -> Result<(NetnsState, RouteKey, String, String)> {
    let bpffs = system::ensure_bpffs()?;
    state::collect_garbage(&bpffs);
    let state = NetnsState::open(&bpffs)?;
    let key = RouteKey {
        dst,
        table: table.unwrap_or_else(|| ops::default_table(local)),
    };
    let skey = RouteRecord::key(&key.dst, key.table);
    let label = key.to_string();
    Ok((state, key, skey, label))
}

/// Takes lwtkit's program(s) off a route.
pub fn detach(req: &DetachRequest) -> Result<Detached> {
    system::require_attach_privileges("lwt detach")?;
    let (state, key, skey, route_label) = open_route(req.dst, req.table, req.local)?;
    let mut record = state
        .load(&skey)?
        .ok_or_else(|| Error::NotManaged(route_label.clone()))?;
    if let Some(dev) = &req.dev {
        if *dev != record.dev {
            return Err(Error::WrongDevice {
                route: route_label,
                managed: record.dev.clone(),
                given: dev.clone(),
            });
        }
    }
    let mut rtnl = Rtnl::open()?;

    if let Some(hook) = req.hook {
        if !record.hooks.contains_key(&hook) {
            return Err(Error::HookNotAttached {
                route: route_label,
                hook,
            });
        }
        if record.hooks.len() > 1 {
            let current = ops::find(&mut rtnl, &key)?.ok_or_else(|| {
                Error::Invalid(format!(
                    "route {route_label} is gone; `lwt detach` without --hook cleans up"
                ))
            })?;
            let mut bpf = LwtBpf {
                headroom: record.headroom,
                ..LwtBpf::default()
            };
            let _fds = keep_hooks(&record, hook, &mut bpf)?;
            let mut route = ops::without_encap(ops::sanitize(&current));
            route
                .attributes
                .extend(bpf.encode().map_err(|e| Error::Invalid(e.to_string()))?);
            ops::replace(&mut rtnl, route).map_err(|e| route_error(&route_label, e))?;
            let _ = fs::remove_dir_all(state.pin_dir(&skey, hook));
            record.hooks.remove(&hook);
            state.save(&skey, &record)?;
            return Ok(Detached {
                route: route_label,
                hooks: vec![hook],
                route_now: "kept",
            });
        }
    }

    let hooks: Vec<Hook> = record.hooks.keys().copied().collect();
    let route_now = match &record.original {
        Some(hex) => {
            let original = ops::from_hex(hex).ok_or_else(|| Error::State {
                path: skey.clone().into(),
                reason: "recorded original route does not decode".into(),
            })?;
            ops::replace(&mut rtnl, original).map_err(|e| route_error(&route_label, e))?;
            "restored"
        }
        None => {
            if let Some(current) = ops::find(&mut rtnl, &key)? {
                ops::delete(&mut rtnl, &current).map_err(|e| route_error(&route_label, e))?;
            }
            "deleted"
        }
    };
    state.remove(&skey)?;
    Ok(Detached {
        route: route_label,
        hooks,
        route_now,
    })
}

fn route_error(route: &str, e: NetlinkError) -> Error {
    match e.errno() {
        Some(libc::EOPNOTSUPP) | Some(libc::EAFNOSUPPORT) => Error::NoLwtBpf(e.to_string()),
        Some(libc::EPERM) => Error::Privileges {
            what: format!("changing route {route}"),
            caps: "CAP_NET_ADMIN".into(),
        },
        _ => Error::Route {
            route: route.into(),
            reason: e,
        },
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_errors_name_the_missing_feature() {
        let no_encap = NetlinkError::Kernel {
            errno: libc::EOPNOTSUPP,
            message: Some("lwt encapsulation type not supported".into()),
        };
        assert!(matches!(route_error("r", no_encap), Error::NoLwtBpf(_)));
        let eperm = NetlinkError::Kernel {
            errno: libc::EPERM,
            message: None,
        };
        assert!(matches!(route_error("r", eperm), Error::Privileges { .. }));
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
