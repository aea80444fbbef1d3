//! `encap ioam6`: an IOAM pre-allocated trace inserted (or encapsulated).
use std::fmt;

use netlink_packet_route::route::{Ioam6Mode, RouteIoam6Tunnel, RouteLwTunnelEncap};
use serde::Serialize;

use super::{opt, Encap};

/// The IOAM pre-allocated trace an `encap ioam6` route inserts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Ioam6Trace {
    /// IOAM namespace id.
    pub ns: u16,
    /// Trace type bits, as iproute2's `type 0x800000`.
    #[serde(rename = "type")]
    pub trace_type: u32,
    /// Bytes pre-allocated for node data.
    pub size: u32,
}

/// Reads an `encap ioam6` payload; attributes of other shapes are skipped.
pub(super) fn decode(nlas: &[RouteLwTunnelEncap]) -> Encap {
    let (mut mode, mut tundst, mut tunsrc, mut trace, mut freq_k, mut freq_n) =
        (None, None, None, None, None, None);
    for nla in nlas {
        let RouteLwTunnelEncap::Ioam6(attr) = nla else {
            continue;
        };
        match attr {
            RouteIoam6Tunnel::Mode(m) => {
                mode = Some(match m {
                    Ioam6Mode::Inline => "inline".to_owned(),
                    Ioam6Mode::Encap => "encap".to_owned(),
                    Ioam6Mode::Auto => "auto".to_owned(),
                    other => format!("unknown({})", u8::from(*other)),
                })
            }
            RouteIoam6Tunnel::Dst(a) => tundst = Some(*a),
            RouteIoam6Tunnel::Src(a) => tunsrc = Some(*a),
            RouteIoam6Tunnel::Trace(t) => {
                trace = Some(Ioam6Trace {
                    ns: t.namespace_id,
                    trace_type: t.trace_type,
                    size: u32::from(t.remlen) * 4,
                })
            }
            RouteIoam6Tunnel::FreqK(v) => freq_k = Some(*v),
            RouteIoam6Tunnel::FreqN(v) => freq_n = Some(*v),
            _ => {}
        }
    }
    Encap::Ioam6 {
        mode,
        tundst,
        tunsrc,
        trace,
        freq_k,
        freq_n,
    }
}

/// The options after `encap ioam6`, as iproute2 prints them.
pub(super) fn write(f: &mut fmt::Formatter<'_>, encap: &Encap) -> fmt::Result {
    let Encap::Ioam6 {
        mode,
        tundst,
        tunsrc,
        trace,
        freq_k,
        freq_n,
    } = encap
    else {
        return Ok(());
    };
    if let (Some(k), Some(n)) = (freq_k, freq_n) {
        write!(f, " freq {k}/{n}")?;
    }
    opt(f, "mode", mode)?;
    opt(f, "tunsrc", tunsrc)?;
    opt(f, "tundst", tundst)?;
    if let Some(t) = trace {
        write!(
            f,
            " trace prealloc type {:#08x} ns {} size {}",
            t.trace_type, t.ns, t.size
        )?;
    }
    Ok(())
}
