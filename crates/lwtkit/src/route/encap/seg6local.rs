//! `encap seg6local`: an SRv6 local SID's behaviour (`End`, `End.DT6`,
//! `End.BPF`, ...) and its parameters.
use std::fmt;

use netlink_packet_route::route::{RouteLwTunnelEncap, RouteSeg6LocalTunnel};

use super::{opt, segs, BpfHookInfo, Encap};
use crate::route::codec::Seg6LocalBpf;

/// Reads an `encap seg6local` payload (with its End.BPF program, if any); attributes of other shapes are skipped.
pub(super) fn decode(nlas: &[RouteLwTunnelEncap]) -> Encap {
    let mut action = String::from("unknown");
    let (mut table, mut nh4, mut nh6, mut iif, mut oif, mut vrftable, mut srh) =
        (None, None, None, None, None, None, None);
    for nla in nlas {
        let RouteLwTunnelEncap::Seg6Local(attr) = nla else {
            continue;
        };
        match attr {
            RouteSeg6LocalTunnel::Action(a) => action = a.to_string(),
            RouteSeg6LocalTunnel::Table(v) => table = Some(*v),
            RouteSeg6LocalTunnel::Nh4(v) => nh4 = Some(*v),
            RouteSeg6LocalTunnel::Nh6(v) => nh6 = Some(*v),
            RouteSeg6LocalTunnel::Iif(v) => iif = Some(*v),
            RouteSeg6LocalTunnel::Oif(v) => oif = Some(*v),
            RouteSeg6LocalTunnel::VrfTable(v) => vrftable = Some(*v),
            // The SRH holds the last segment first.
            RouteSeg6LocalTunnel::Srh(s) => srh = Some(s.segments.iter().rev().copied().collect()),
            _ => {}
        }
    }
    let bpf = Seg6LocalBpf::from_encap(nlas)
        .ok()
        .flatten()
        .map(|b| BpfHookInfo {
            id: b.id,
            ..BpfHookInfo::from(&b.prog)
        });
    Encap::Seg6local {
        action,
        table,
        nh4,
        nh6,
        iif,
        oif,
        vrftable,
        srh,
        bpf,
    }
}

/// iproute2 names the well-known tables (`rtnl_rttable_n2a`).
fn table_name(table: u32) -> String {
    match table {
        253 => "default".into(),
        254 => "main".into(),
        255 => "local".into(),
        n => n.to_string(),
    }
}

/// The options after `encap seg6local`, as iproute2 prints them.
pub(super) fn write(f: &mut fmt::Formatter<'_>, encap: &Encap) -> fmt::Result {
    let Encap::Seg6local {
        action,
        table,
        nh4,
        nh6,
        iif,
        oif,
        vrftable,
        srh,
        bpf,
    } = encap
    else {
        return Ok(());
    };
    write!(f, " action {action}")?;
    if let Some(s) = srh {
        segs(f, s)?;
    }
    opt(f, "table", &table.map(table_name))?;
    opt(f, "vrftable", &vrftable.map(table_name))?;
    opt(f, "nh4", nh4)?;
    opt(f, "nh6", nh6)?;
    opt(f, "iif", iif)?;
    opt(f, "oif", oif)?;
    opt(f, "endpoint", bpf)
}
