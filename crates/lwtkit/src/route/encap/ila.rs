//! `encap ila`: identifier-locator addressing, read from raw attributes.
use std::fmt;

use netlink_packet_core::{Nla, NLA_TYPE_MASK};
use netlink_packet_route::route::RouteLwTunnelEncap;

use super::{opt, Encap};

// include/uapi/linux/ila.h
const ILA_ATTR_LOCATOR: u16 = 1;
const ILA_ATTR_CSUM_MODE: u16 = 7;
const ILA_ATTR_IDENT_TYPE: u16 = 8;
const ILA_ATTR_HOOK_TYPE: u16 = 9;

/// netlink-packet-route has no ILA payload: read the raw attributes. The
/// kernel may put an `ILA_ATTR_PAD` before the u64 locator; it is skipped
/// with everything else unknown.
pub(super) fn decode(nlas: &[RouteLwTunnelEncap]) -> Encap {
    let (mut locator, mut csum_mode, mut ident_type, mut hook_type) = (None, None, None, None);
    for nla in nlas {
        let RouteLwTunnelEncap::Other(raw) = nla else {
            continue;
        };
        let mut value = vec![0; raw.value_len()];
        raw.emit_value(&mut value);
        match (raw.kind() & NLA_TYPE_MASK, value.as_slice()) {
            // The locator is in network byte order; iproute2 shows it as
            // four 16-bit hex groups.
            (ILA_ATTR_LOCATOR, &[a, b, c, d, e, f, g, h]) => {
                let groups = [[a, b], [c, d], [e, f], [g, h]]
                    .map(|w| format!("{:x}", u16::from_be_bytes(w)));
                locator = Some(groups.join(":"));
            }
            (ILA_ATTR_CSUM_MODE, &[v]) => {
                let name = match v {
                    0 => "adj-transport",
                    1 => "neutral-map",
                    2 => "no-action",
                    3 => "neutral-map-auto",
                    _ => "",
                };
                csum_mode = Some(known_or_number(name, v));
            }
            (ILA_ATTR_IDENT_TYPE, &[v]) => {
                let name = match v {
                    0 => "iid",
                    1 => "luid",
                    2 => "virt-v4",
                    3 => "virt-uni-v6",
                    4 => "virt-multi-v6",
                    5 => "nonlocal-addr",
                    32 => "use-format",
                    _ => "",
                };
                ident_type = Some(known_or_number(name, v));
            }
            (ILA_ATTR_HOOK_TYPE, &[v]) => {
                let name = match v {
                    0 => "output",
                    1 => "input",
                    _ => "",
                };
                hook_type = Some(known_or_number(name, v));
            }
            _ => {}
        }
    }
    Encap::Ila {
        locator,
        csum_mode,
        ident_type,
        hook_type,
    }
}

fn known_or_number(name: &str, v: u8) -> String {
    if name.is_empty() {
        format!("unknown({v})")
    } else {
        name.to_owned()
    }
}

/// The options after `encap ila`, as iproute2 prints them.
pub(super) fn write(f: &mut fmt::Formatter<'_>, encap: &Encap) -> fmt::Result {
    let Encap::Ila {
        locator,
        csum_mode,
        ident_type,
        hook_type,
    } = encap
    else {
        return Ok(());
    };
    if let Some(l) = locator {
        write!(f, " {l}")?;
    }
    opt(f, "csum-mode", csum_mode)?;
    opt(f, "ident-type", ident_type)?;
    opt(f, "hook-type", hook_type)
}
