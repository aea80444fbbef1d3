//! `lwt encap add|del|list`
use std::net::IpAddr;

use lwtkit::{
    attach::parse_prefix,
    encap::{self, parse_mac, EncapError, EncapRequest, Tos, TunnelSpec, TunnelType, TunnelView},
    Error, Hook,
};

use super::Output;
use crate::args::{EncapAddArgs, EncapHookArg, EncapVerb};

fn addr(flag: &str, s: &str) -> Result<IpAddr, Error> {
    s.parse()
        .map_err(|_| Error::InvalidAddress(format!("{s} (--{flag})")))
}

pub fn run(v: EncapVerb, out: &Output) -> anyhow::Result<()> {
    match v {
        EncapVerb::Add(a) => add(*a, out),
        EncapVerb::Del { prefix, table } => {
            let done = encap::del(parse_prefix(&prefix)?, super::table(table.as_deref())?)?;
            out.emit(&done, |d| {
                format!("removed the tunnel of {}; route {}", d.route, d.route_now)
            })
        }
        EncapVerb::List => {
            let tunnels = encap::list()?;
            let unrouted = encap::unrouted()?;
            let mut text: Vec<String> = tunnels.iter().map(render).collect();
            if unrouted.no_tunnel + unrouted.malformed > 0 {
                text.push(format!(
                    "(namespace-wide: {} packets had no tunnel for their destination, {} were not IP; both dropped)",
                    unrouted.no_tunnel, unrouted.malformed
                ));
            }
            out.emit(&tunnels, |_| text.join("\n"))
        }
    }
}

fn add(a: EncapAddArgs, out: &Output) -> anyhow::Result<()> {
    let kind: TunnelType = a.kind.parse().map_err(Error::Encap)?;
    let remote = a.remote.as_deref().map(|r| addr("remote", r)).transpose()?;
    let segments = a
        .segments
        .iter()
        .map(|s| {
            s.parse().map_err(|_| {
                Error::InvalidAddress(format!("{s} (--segments needs IPv6 addresses)"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let tos = match a.tos.as_deref() {
        None | Some("inherit") => Tos::Inherit,
        Some(t) => Tos::Fixed(
            t.parse()
                .map_err(|_| EncapError::Invalid(format!("bad --tos `{t}`: inherit or 0-255")))
                .map_err(Error::Encap)?,
        ),
    };
    let local = a.local.as_deref().map(|l| addr("local", l)).transpose()?;
    let spec = TunnelSpec {
        kind,
        remote,
        local: local.unwrap_or(IpAddr::V4(0.into())),
        vni: a.vni,
        port: a.port,
        inner_dst_mac: a
            .inner_dst_mac
            .as_deref()
            .map(parse_mac)
            .transpose()
            .map_err(Error::Encap)?,
        segments,
        ttl: a.ttl,
        tos,
        df: a
            .df
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e: encap::header::EncapError| Error::Invalid(e.to_string()))?,
        udp6_zero_csum: a.udp6_zero_csum,
    };
    let req = EncapRequest {
        dst: parse_prefix(&a.prefix)?,
        dev: a.dev,
        table: super::table(a.table.as_deref())?,
        hook: match a.hook {
            EncapHookArg::Xmit => Hook::Xmit,
            EncapHookArg::In => Hook::In,
        },
        spec,
        local_from_dev: local.is_none(),
    };
    let on_input = req.hook == Hook::In;
    let fixup_kind = req.spec.kind.needs_proto_fixup();
    let (dst, table) = (
        req.dst,
        req.table.unwrap_or(lwtkit::route::table::RT_TABLE_MAIN),
    );
    let done = encap::add(req)?;
    // What TCP through the route gets (text only: the JSON is attach's).
    let segments = encap::tunnel_segments(&dst, table).ok().flatten();
    if on_input
        && std::fs::read_to_string("/proc/sys/net/ipv4/conf/all/accept_local")
            .is_ok_and(|v| v.trim() == "0")
    {
        eprintln!(
            "lwt: note: on the in hook the outer packet is routed as input again with this host's address as source; \
             set net.ipv4.conf.<ingress dev>.accept_local=1 (and .all) or it is dropped as a martian"
        );
    }
    if on_input && fixup_kind {
        eprintln!(
            "lwt: note: on the in hook, {kind} cannot carry GSO packets (TCP merged by GRO on the way in): \
             bpf_lwt_push_encap refuses them under this outer protocol and the program cannot rewrite the header \
             on lwt_in; they are dropped and counted as push-failed in `lwt encap list`. Use --hook xmit for TCP"
        );
    }
    out.emit(&done, |d| {
        let mut text = format!(
            "{} now goes into the {kind} tunnel (hook {}, prog id {})",
            d.route, d.hook, d.id
        );
        if let Some((s, header)) = segments {
            text.push_str(&format!(
                "\nroute mtu {}: TCP segments carry up to {} bytes, segments cut from GSO packets {} \
                 (the kernel shrinks GSO segments by the {header}-byte header; docs/encap.md, GSO and TCP)",
                s.route_mtu, s.mss, s.gso_segment
            ));
        }
        text
    })
}

fn render(t: &TunnelView) -> String {
    let s = &t.spec;
    let mut line = format!(
        "{} table {} dev {} {} {}",
        t.dst, t.table, t.dev, t.hook, s.kind
    );
    if let Some(r) = s.remote {
        line.push_str(&format!(" remote {r}"));
    }
    line.push_str(&format!(" local {}", s.local));
    if let Some(v) = s.vni {
        line.push_str(&format!(" vni {v}"));
    }
    if let Some(p) = s.port {
        line.push_str(&format!(" port {p}"));
    }
    if !s.segments.is_empty() {
        line.push_str(&format!(
            " segments {}",
            s.segments
                .iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    if let Some(df) = s.df {
        line.push_str(&format!(" df {}", df.as_str()));
    }
    if s.udp6_zero_csum {
        line.push_str(" udp6-zero-csum");
    }
    line.push_str(&format!(" header {} bytes", t.header_len));
    if let Some(s) = t.tcp_segments {
        line.push_str(&format!(
            "\n    route mtu {} tcp segments {} (from GSO packets {})",
            s.route_mtu, s.mss, s.gso_segment
        ));
    }
    line.push_str(&format!(
        "\n    packets {} bytes {} errors: no-tunnel {} push-failed {} malformed {}",
        t.stats.packets, t.stats.bytes, t.stats.no_tunnel, t.stats.push_failed, t.stats.malformed
    ));
    line
}
