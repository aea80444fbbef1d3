//! From the file as written to what it asks for, validated as each verb
//! validates its flags, plus what only the namespace can tell: devices
//! exist, objects are readable and hold the program, pins are programs of
//! the hook's type, a tunnel's device has a source address. Every error
//! names its entry; nothing is changed.
use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use super::{
    file::{AttachEntry, ConfigFile, DecapEntry, FilterEntry, SidEntry, TunnelEntry},
    plan::{
        Desired, Program, RouteId, SidProgram, WantedHook, WantedPolicy, WantedSid, WantedTunnel,
    },
    ConfigError,
};
use crate::{
    attach::{ifindex, parse_prefix},
    encap::{decap, parse_mac, Tos, TunnelSpec, TunnelType},
    error::{Error, Result},
    filter::{handling::Handling, rule::RuleSpec, rule::Verdict},
    hook::Hook,
    loader,
    route::{link, netlink::Rtnl, ops, table::parse_table},
};

/// Checks the whole file against the current namespace; `base` is the
/// directory relative object and pin paths are read from.
pub fn desired(file: &ConfigFile, base: &Path, rtnl: &mut Rtnl) -> Result<Desired, ConfigError> {
    let mut d = Desired::default();
    for (i, e) in file.attach.iter().enumerate() {
        let at = || format!("[[attach]] #{} ({} hook {})", i + 1, e.route, e.hook);
        let (route, hook) = attach_entry(e, base)
            .and_then(|(route, hook, want)| insert_hook(&mut d, route, hook, want))
            .map_err(|e| ConfigError::entry(at(), e))?;
        let _ = (route, hook);
    }
    for (i, e) in file.filter.iter().enumerate() {
        let at = || format!("[[filter]] #{} ({})", i + 1, e.name);
        filter_entry(&mut d, e).map_err(|err| ConfigError::entry(at(), err))?;
    }
    for (i, e) in file.tunnel.iter().enumerate() {
        let at = || format!("[[tunnel]] #{} ({})", i + 1, e.route);
        let (route, t) = tunnel_entry(e, rtnl).map_err(|err| ConfigError::entry(at(), err))?;
        if d.tunnels.insert(route, t).is_some() {
            return Err(ConfigError::entry(at(), named_twice(&route.to_string())));
        }
    }
    for (i, e) in file.decap.iter().enumerate() {
        let at = || format!("[[decap]] #{} ({})", i + 1, e.dev);
        let r = decap_entry(e).map_err(|err| ConfigError::entry(at(), err))?;
        if d.decaps.insert(e.dev.clone(), r).is_some() {
            return Err(ConfigError::entry(at(), named_twice(&e.dev)));
        }
    }
    for (i, e) in file.sid.iter().enumerate() {
        let at = || format!("[[sid]] #{} ({})", i + 1, e.sid);
        let (route, s) = sid_entry(e, base).map_err(|err| ConfigError::entry(at(), err))?;
        if d.sids.insert(route, s).is_some() {
            return Err(ConfigError::entry(at(), named_twice(&route.to_string())));
        }
    }
    // One owner per hook: a tunnel's hook is no one else's.
    for (route, t) in &d.tunnels {
        if d.hooks.contains_key(&(*route, t.hook)) {
            return Err(ConfigError::entry(
                format!("[[tunnel]] {route}"),
                Error::Invalid(format!(
                    "hook {} of {route} is also given to [[attach]] or [[filter]]; a hook has one owner",
                    t.hook
                )),
            ));
        }
    }
    Ok(d)
}

fn named_twice(what: &str) -> Error {
    Error::Invalid(format!("{what} is named twice in the file"))
}

fn table(flag: &str, t: Option<&str>) -> Result<Option<u32>> {
    t.map(|s| parse_table(s).map_err(|e| Error::Invalid(format!("{flag}: {e}"))))
        .transpose()
}

fn route_id(route: &str, t: Option<&str>, local: bool) -> Result<RouteId> {
    let dst = parse_prefix(route)?;
    let table = table("table", t)?.unwrap_or_else(|| ops::default_table(local));
    crate::validate::table_id("table", Some(table)).map_err(Error::Invalid)?;
    Ok(RouteId { dst, table })
}

fn path_in(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn prog_type(s: &str) -> Result<Hook> {
    match s {
        "lwt_in" => Ok(Hook::In),
        "lwt_out" => Ok(Hook::Out),
        "lwt_xmit" => Ok(Hook::Xmit),
        other => Err(Error::Invalid(format!(
            "prog_type `{other}`: lwt_in, lwt_out or lwt_xmit"
        ))),
    }
}

fn insert_hook(
    d: &mut Desired,
    route: RouteId,
    hook: Hook,
    want: WantedHook,
) -> Result<(RouteId, Hook)> {
    if let Some((other, _)) = d
        .hooks
        .iter()
        .find(|((r, _), w)| *r == route && (w.dev != want.dev || w.local != want.local))
    {
        return Err(Error::Invalid(format!(
            "{route} is given another dev or local in another entry (hook {}); a route has one",
            other.1
        )));
    }
    if d.hooks.insert((route, hook), want).is_some() {
        return Err(Error::Invalid(format!(
            "hook {hook} of {route} is named twice in the file; a hook has one owner"
        )));
    }
    Ok((route, hook))
}

fn attach_entry(e: &AttachEntry, base: &Path) -> Result<(RouteId, Hook, WantedHook)> {
    let route = route_id(&e.route, e.table.as_deref(), e.local)?;
    ifindex(&e.dev)?;
    if let Some(h) = e.headroom {
        crate::validate::in_range(
            "headroom",
            h.into(),
            0,
            crate::route::codec::MAX_HEADROOM.into(),
        )
        .map_err(Error::Invalid)?;
    }
    if e.force && !e.local {
        return Err(Error::Invalid("force applies only with local".into()));
    }
    let via = e
        .via
        .as_deref()
        .map(|v| {
            v.parse::<IpAddr>()
                .map_err(|_| Error::InvalidAddress(v.into()))
        })
        .transpose()?;
    let program = match (&e.builtin, &e.obj, &e.pinned) {
        (Some(b), None, None) => {
            if e.section.is_some() || e.program.is_some() || e.prog_type.is_some() {
                return Err(Error::Invalid(
                    "section, program and prog_type go with obj".into(),
                ));
            }
            loader::BuiltinSpec::standalone(b)?;
            Program::Builtin(b.clone())
        }
        (None, Some(obj), None) => {
            let path = path_in(base, obj);
            let forced = e.prog_type.as_deref().map(prog_type).transpose()?;
            let section = loader::resolve_object(
                &path,
                e.section.as_deref(),
                e.program.as_deref(),
                forced,
                e.hook,
            )?;
            Program::Object {
                digest: Some(loader::object_digest(&path)?),
                path,
                section,
                program: e.program.clone(),
                prog_type: forced,
            }
        }
        (None, None, Some(pin)) => {
            if e.section.is_some() || e.program.is_some() || e.prog_type.is_some() {
                return Err(Error::Invalid(
                    "section, program and prog_type go with obj".into(),
                ));
            }
            let path = path_in(base, pin);
            loader::check_pinned(&path, e.hook)?;
            Program::Pinned(path)
        }
        _ => {
            return Err(Error::Invalid(
                "give exactly one of builtin, obj and pinned".into(),
            ))
        }
    };
    Ok((
        route,
        e.hook,
        WantedHook {
            dev: e.dev.clone(),
            local: e.local,
            force: e.force,
            via,
            headroom: e.headroom,
            program,
        },
    ))
}

fn filter_entry(d: &mut Desired, e: &FilterEntry) -> Result<()> {
    crate::filter::store::validate_name(&e.name)?;
    if let Some(c) = e.capacity {
        crate::validate::in_range(
            "capacity",
            c.into(),
            1,
            crate::filter::store::MAX_CAPACITY.into(),
        )
        .map_err(Error::Invalid)?;
    }
    let mut rules = Vec::new();
    for (n, text) in e.rules.iter().enumerate() {
        let spec: RuleSpec = text
            .parse()
            .map_err(|err| Error::Invalid(format!("rule {} `{text}`: {err}", n + 1)))?;
        rules.push(spec);
    }
    let handling = Handling {
        default: e.default.unwrap_or(Verdict::Allow),
        fragments: e.fragments.unwrap_or_default(),
        malformed: e.malformed.unwrap_or_default(),
    };
    if d.policies
        .insert(
            e.name.clone(),
            WantedPolicy {
                handling,
                capacity: e.capacity,
                rules,
            },
        )
        .is_some()
    {
        return Err(named_twice(&format!("policy {}", e.name)));
    }
    for a in &e.attach {
        let route = route_id(&a.route, a.table.as_deref(), a.local)?;
        ifindex(&a.dev)?;
        if a.force && !a.local {
            return Err(Error::Invalid("force applies only with local".into()));
        }
        insert_hook(
            d,
            route,
            a.hook,
            WantedHook {
                dev: a.dev.clone(),
                local: a.local,
                force: a.force,
                via: None,
                headroom: None,
                program: Program::Filter(e.name.clone()),
            },
        )?;
    }
    Ok(())
}

fn addr(key: &str, s: &str) -> Result<IpAddr> {
    s.parse()
        .map_err(|_| Error::InvalidAddress(format!("{s} ({key})")))
}

fn tunnel_entry(e: &TunnelEntry, rtnl: &mut Rtnl) -> Result<(RouteId, WantedTunnel)> {
    let route = route_id(&e.route, e.table.as_deref(), false)?;
    let hook = e.hook.unwrap_or(Hook::Xmit);
    if hook == Hook::Out {
        return Err(Error::Invalid("hook: a tunnel goes on xmit or in".into()));
    }
    let oif = ifindex(&e.dev)?;
    let kind: TunnelType = e.kind.parse().map_err(Error::Encap)?;
    let segments = e
        .segments
        .iter()
        .map(|s| {
            s.parse()
                .map_err(|_| Error::InvalidAddress(format!("{s} (segments needs IPv6 addresses)")))
        })
        .collect::<Result<Vec<_>>>()?;
    let tos = match e.tos.as_deref() {
        None | Some("inherit") => Tos::Inherit,
        Some(t) => Tos::Fixed(
            t.parse()
                .map_err(|_| Error::Invalid(format!("bad tos `{t}`: inherit or 0-255")))?,
        ),
    };
    let local = e.local.as_deref().map(|l| addr("local", l)).transpose()?;
    let mut spec = TunnelSpec {
        kind,
        remote: e.remote.as_deref().map(|r| addr("remote", r)).transpose()?,
        local: local.unwrap_or(IpAddr::V4(0.into())),
        vni: e.vni,
        port: e.port,
        inner_dst_mac: e
            .inner_dst_mac
            .as_deref()
            .map(parse_mac)
            .transpose()
            .map_err(Error::Encap)?,
        segments,
        ttl: e.ttl,
        tos,
        df: e
            .df
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|err: crate::encap::EncapError| Error::Invalid(err.to_string()))?,
        udp6_zero_csum: e.udp6_zero_csum,
    };
    spec.validate().map_err(Error::Encap)?;
    // As `encap add` does: the device's address of the remote's family.
    if local.is_none() {
        let remote = spec.outer_dst().map_err(Error::Encap)?;
        spec.local = link::addresses(rtnl, oif)?
            .into_iter()
            .find(|a| a.is_ipv4() == remote.is_ipv4())
            .ok_or_else(|| crate::encap::EncapError::NoLocalAddress {
                dev: e.dev.clone(),
                family: if remote.is_ipv4() { 4 } else { 6 },
            })?;
    }
    spec.header(route.dst.addr().is_ipv6())
        .map_err(Error::Encap)?;
    Ok((
        route,
        WantedTunnel {
            dev: e.dev.clone(),
            hook,
            spec,
            local_from_dev: local.is_none(),
        },
    ))
}

fn decap_entry(e: &DecapEntry) -> Result<crate::encap::decap::DecapRecord> {
    ifindex(&e.dev)?;
    decap::record(&decap::DecapArgs {
        dev: e.dev.clone(),
        kinds: e.kinds.clone(),
        fou_port: e.fou_port,
        gue_port: e.gue_port,
        key: e.key,
        local: e.local.clone(),
        remote: e.remote.clone(),
    })
}

fn sid_entry(e: &SidEntry, base: &Path) -> Result<(RouteId, WantedSid)> {
    let sid = parse_prefix(&e.sid)?;
    if !sid.addr().is_ipv6() {
        return Err(Error::InvalidPrefix(format!(
            "`{}`: a SID is an IPv6 address or prefix",
            e.sid
        )));
    }
    let t = table("table", e.table.as_deref())?.unwrap_or(crate::route::table::RT_TABLE_MAIN);
    ifindex(&e.dev)?;
    let dt6 = table("dt6_table", e.dt6_table.as_deref())?;
    let force_type = match e.prog_type.as_deref() {
        None => false,
        Some("lwt_seg6local") => true,
        Some(other) => {
            return Err(Error::Invalid(format!(
                "prog_type `{other}`: a SID's program is lwt_seg6local"
            )))
        }
    };
    let req = crate::seg6local::Seg6Request {
        sid,
        dev: e.dev.clone(),
        builtin: e.builtin.clone(),
        object: e
            .obj
            .as_ref()
            .map(|p| (path_in(base, p), e.section.clone())),
        table: Some(t),
        dt6_table: dt6,
        force_type,
    };
    req.validate()?;
    if e.section.is_some() && e.obj.is_none() {
        return Err(Error::Invalid("section goes with obj".into()));
    }
    let program = match (&req.builtin, &req.object) {
        (Some(name), None) => {
            req.program()?;
            SidProgram::Builtin {
                name: name.clone(),
                dt6_table: (name == "end-dt6")
                    .then(|| dt6.unwrap_or(crate::route::table::RT_TABLE_MAIN)),
            }
        }
        (None, Some((path, section))) => SidProgram::Object {
            section: loader::resolve_seg6local_object(path, section.as_deref(), force_type)?,
            digest: Some(loader::object_digest(path)?),
            path: path.clone(),
            force_type,
        },
        _ => return Err(Error::Invalid("give exactly one of builtin and obj".into())),
    };
    Ok((
        RouteId { dst: sid, table: t },
        WantedSid {
            dev: e.dev.clone(),
            program,
        },
    ))
}
