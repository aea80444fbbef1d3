//! Tunnels: each record has its route record, whose hook is a tunnel's
//! (encap origin, encap program) and carries the lowered MTU, and the
//! entry the record calls for in the namespace's `tunnels` trie (header,
//! flags, counter slot, byte for byte); every trie entry has a record.
use std::{collections::BTreeMap, path::Path};

use libbpf_rs::{MapCore, MapFlags, MapHandle};

use super::Finding;
use crate::{
    encap::{describe_key, entry_summary, expected_entry, TunnelRecord},
    route::ops::RouteKey,
    state::{Origin, RouteRecord},
};

/// Every entry of the trie pinned at `pin` (`None`: no trie is pinned).
/// A lookup answers with the longest prefix covering the key, which for a
/// key the trie holds is its own entry.
pub(super) fn read_trie(pin: &Path) -> Option<BTreeMap<Vec<u8>, Vec<u8>>> {
    let map = MapHandle::from_pinned_path(pin).ok()?;
    Some(
        map.keys()
            .filter_map(|k| {
                let v = map.lookup(&k, MapFlags::ANY).ok()??;
                Some((k, v))
            })
            .collect(),
    )
}

pub(super) fn check(
    tunnels: &[TunnelRecord],
    routes: &[RouteRecord],
    trie: Option<&BTreeMap<Vec<u8>, Vec<u8>>>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut explained = Vec::new();
    for t in tunnels {
        let label = RouteKey {
            dst: t.dst,
            table: t.table,
        }
        .to_string();
        let route = routes.iter().find(|r| r.dst == t.dst && r.table == t.table);
        match route.map(|r| (r, r.hooks.get(&t.hook))) {
            None => out.push(Finding::new(
                "tunnel-route",
                format!("tunnel {label}: lwtkit has no record of its route"),
            )),
            Some((_, None)) => out.push(Finding::new(
                "tunnel-route",
                format!("tunnel {label}: its route has no hook {}", t.hook),
            )),
            Some((r, Some(h))) => {
                if !matches!(h.origin, Origin::Encap { .. }) || !h.name.starts_with("lwtkit-encap-")
                {
                    out.push(Finding::new(
                        "tunnel-route",
                        format!(
                            "tunnel {label}: hook {} runs `{}` ({}), not lwtkit's encapsulation",
                            t.hook, h.name, h.origin
                        ),
                    ));
                }
                if r.mtu_hook != Some(t.hook) {
                    out.push(Finding::new(
                        "tunnel-route",
                        format!(
                            "tunnel {label}: the route record does not say hook {} lowered its MTU",
                            t.hook
                        ),
                    ));
                }
            }
        }
        let (key, want) = match expected_entry(t) {
            Ok(e) => e,
            Err(e) => {
                out.push(Finding::new(
                    "tunnel-entry",
                    format!("tunnel {label}: its record does not make a header: {e}"),
                ));
                continue;
            }
        };
        explained.push(key.clone());
        let Some(trie) = trie else {
            out.push(Finding::new(
                "missing-pin",
                format!("tunnel {label}: the namespace's tunnels map is not pinned"),
            ));
            continue;
        };
        match trie.get(&key) {
            None => out.push(Finding::new(
                "tunnel-entry",
                format!("tunnel {label}: the tunnels map has no entry for it"),
            )),
            Some(v) if *v != want => {
                let what = match (entry_summary(v), entry_summary(&want)) {
                    (Some((len, c)), Some((wlen, wc))) if (len, c) != (wlen, wc) => format!(
                        "a {len}-byte header counted in slot {c}, the record says {wlen} bytes in slot {wc}"
                    ),
                    _ => "another header than the record's".into(),
                };
                out.push(Finding::new(
                    "tunnel-entry",
                    format!("tunnel {label}: the tunnels map holds {what}"),
                ));
            }
            Some(_) => {}
        }
    }
    for key in trie.into_iter().flat_map(|t| t.keys()) {
        if !explained.contains(key) {
            out.push(Finding::new(
                "orphan-entry",
                format!(
                    "the tunnels map has an entry for {} that no tunnel record explains",
                    describe_key(key)
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        encap::header::{Tos, TunnelSpec, TunnelType},
        hook::Hook,
        state::HookRecord,
    };

    fn tunnel(dst: &str, counter: u32) -> TunnelRecord {
        TunnelRecord {
            dst: dst.parse().expect("prefix"),
            table: 254,
            dev: "va".into(),
            hook: Hook::Xmit,
            spec: TunnelSpec {
                kind: TunnelType::Gre,
                remote: Some("10.0.0.3".parse().expect("addr")),
                local: "10.0.0.2".parse().expect("addr"),
                vni: None,
                port: None,
                inner_dst_mac: None,
                segments: vec![],
                ttl: None,
                tos: Tos::Inherit,
                df: None,
                udp6_zero_csum: false,
            },
            counter,
            header_len: 24,
        }
    }

    fn route_of(t: &TunnelRecord, origin: Origin) -> RouteRecord {
        RouteRecord {
            dst: t.dst,
            table: t.table,
            local: false,
            dev: "va".into(),
            original: None,
            headroom: None,
            hooks: [(
                Hook::Xmit,
                HookRecord {
                    name: "lwtkit-encap-gre:[lwt_xmit]#4".into(),
                    pin: "/p".into(),
                    counters: None,
                    origin,
                    object_sha256: None,
                },
            )]
            .into(),
            mtu_hook: Some(Hook::Xmit),
            stand_in: false,
        }
    }

    fn kinds(f: &[Finding]) -> Vec<&'static str> {
        f.iter().map(|f| f.kind).collect()
    }

    #[test]
    fn a_tunnel_needs_its_route_hook_and_its_exact_map_entry() {
        let t = tunnel("192.168.100.0/24", 3);
        let encap = Origin::Encap {
            tunnel: "gre".into(),
        };
        let routes = [route_of(&t, encap.clone())];
        let (key, value) = expected_entry(&t).expect("entry");
        let trie = BTreeMap::from([(key.clone(), value.clone())]);
        assert_eq!(
            check(std::slice::from_ref(&t), &routes, Some(&trie)),
            vec![]
        );
        // No route record, or a hook of another owner.
        assert_eq!(
            kinds(&check(std::slice::from_ref(&t), &[], Some(&trie))),
            ["tunnel-route"]
        );
        let counted = route_of(
            &t,
            Origin::Builtin {
                name: "count".into(),
            },
        );
        assert_eq!(
            kinds(&check(std::slice::from_ref(&t), &[counted], Some(&trie))),
            ["tunnel-route"]
        );
        // The entry missing, counting in another slot, or no map at all.
        let empty = BTreeMap::new();
        assert_eq!(
            kinds(&check(std::slice::from_ref(&t), &routes, Some(&empty))),
            ["tunnel-entry"]
        );
        let (_, other_slot) = expected_entry(&tunnel("192.168.100.0/24", 4)).expect("entry");
        let moved = BTreeMap::from([(key, other_slot)]);
        let found = check(std::slice::from_ref(&t), &routes, Some(&moved));
        assert_eq!(kinds(&found), ["tunnel-entry"]);
        assert!(found[0].what.contains("slot 4"), "{found:?}");
        assert_eq!(
            kinds(&check(std::slice::from_ref(&t), &routes, None)),
            ["missing-pin"]
        );
    }

    #[test]
    fn an_entry_without_a_record_is_named_by_its_prefix() {
        let (key, value) = expected_entry(&tunnel("2001:db8::/32", 1)).expect("entry");
        let trie = BTreeMap::from([(key, value)]);
        let found = check(&[], &[], Some(&trie));
        assert_eq!(kinds(&found), ["orphan-entry"]);
        assert!(
            found[0].what.contains("2001:db8::/32 table main"),
            "{found:?}"
        );
    }
}
