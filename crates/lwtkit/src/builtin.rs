//! lwtkit's own kernel programs, built by the build script and embedded in
//! the binary: a user never handles their object files.
use crate::hook::Hook;

/// A built-in program: one object with one entry per hook it serves.
pub struct Builtin {
    pub name: &'static str,
    pub about: &'static str,
    object: &'static [u8],
    entries: &'static [(Hook, &'static str)],
    /// The per-CPU counters map the CLI reads for `lwt stats`.
    pub counters_map: Option<&'static str>,
    /// Attachable with `--builtin`; `filter` is attached through a policy.
    pub standalone: bool,
}

impl Builtin {
    /// The object's ELF bytes.
    pub fn object(&self) -> &'static [u8] {
        self.object
    }

    /// The program (function) name serving `hook`, if this built-in has one.
    pub fn entry(&self, hook: Hook) -> Option<&'static str> {
        self.entries
            .iter()
            .find(|(h, _)| *h == hook)
            .map(|(_, p)| *p)
    }

    /// The name the route carries, shaped like iproute2's
    /// `<object>:[<section>]`: `lwtkit-count:[lwt_out]`.
    pub fn route_name(&self, hook: Hook) -> String {
        format!("lwtkit-{}:[{}]", self.name, hook.section())
    }

    pub fn hooks(&self) -> impl Iterator<Item = Hook> + '_ {
        self.entries.iter().map(|(h, _)| *h)
    }
}

pub const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "count",
        about: "passes every packet; counts packets and bytes per route and hook",
        object: include_bytes!(env!("LWTKIT_COUNT_OBJ")),
        entries: &[
            (Hook::In, "count_in"),
            (Hook::Out, "count_out"),
            (Hook::Xmit, "count_xmit"),
        ],
        counters_map: Some(lwtkit_common::maps::ATTACH_STATS),
        standalone: true,
    },
    Builtin {
        name: "pass",
        about: "passes every packet and does nothing else (the benchmarks' floor)",
        object: include_bytes!(env!("LWTKIT_PASS_OBJ")),
        entries: &[
            (Hook::In, "pass_in"),
            (Hook::Out, "pass_out"),
            (Hook::Xmit, "pass_xmit"),
        ],
        counters_map: None,
        standalone: true,
    },
    Builtin {
        name: "encap",
        about: "pushes the outer headers of the route's tunnel (attach with `lwt encap add`)",
        object: include_bytes!(env!("LWTKIT_ENCAP_OBJ")),
        entries: &[(Hook::In, "encap_in"), (Hook::Xmit, "encap_xmit")],
        counters_map: None,
        standalone: false,
    },
    Builtin {
        name: "decap",
        about: "tcx ingress decapsulator for IP-in-IP, GRE, FOU, GUE (attach with `lwt decap add`)",
        object: include_bytes!(env!("LWTKIT_DECAP_OBJ")),
        entries: &[],
        counters_map: None,
        standalone: false,
    },
    Builtin {
        name: "seg6",
        about: "SRv6 End.BPF behaviours `end` (counts per SID) and `end-dt6` (attach with `lwt seg6local add`)",
        object: include_bytes!(env!("LWTKIT_SEG6_OBJ")),
        entries: &[],
        counters_map: Some(lwtkit_common::maps::ATTACH_STATS),
        standalone: false,
    },
    Builtin {
        name: "filter",
        about: "judges packets by a filter policy (attach with `lwt filter attach`)",
        object: include_bytes!(env!("LWTKIT_FILTER_OBJ")),
        entries: &[
            (Hook::In, "filter_in"),
            (Hook::Out, "filter_out"),
            (Hook::Xmit, "filter_xmit"),
        ],
        counters_map: Some(lwtkit_common::maps::ATTACH_STATS),
        standalone: false,
    },
];

pub fn find(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

/// Names of the built-ins `--builtin` takes, for error messages and help.
pub fn names() -> String {
    BUILTINS
        .iter()
        .filter(|b| b.standalone)
        .map(|b| b.name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_is_embedded_as_bpf_elf() {
        let count = find("count").expect("count is built in");
        let obj = count.object();
        assert_eq!(&obj[..4], b"\x7fELF");
        assert_eq!(obj[18], 247, "e_machine is EM_BPF");
        for hook in Hook::ALL {
            assert!(count.entry(hook).is_some());
        }
        assert_eq!(count.route_name(Hook::Out), "lwtkit-count:[lwt_out]");
    }

    /// The maps (by name; data sections have a dot) and the programs
    /// (name, section) of an embedded object, as libbpf reads them.
    fn contents(b: &Builtin) -> (Vec<String>, Vec<String>, Vec<(String, String)>) {
        let bytes = b.object().to_vec();
        let open = libbpf_rs::ObjectBuilder::default()
            .open_memory(&bytes)
            .expect("the embedded object opens");
        let names: Vec<String> = open
            .maps()
            .map(|m| m.name().to_string_lossy().into_owned())
            .collect();
        let (data, mut maps): (Vec<String>, Vec<String>) =
            names.into_iter().partition(|n| n.contains('.'));
        maps.sort();
        let progs = open
            .progs()
            .map(|p| {
                (
                    p.name().to_string_lossy().into_owned(),
                    p.section().to_string_lossy().into_owned(),
                )
            })
            .collect();
        (maps, data, progs)
    }

    /// The `#[btf_map]` statics' names are the map names: the objects hold
    /// exactly the maps `lwtkit_common::maps` names (their own and the
    /// kernel library's), and each program sits in the section its hook's
    /// type needs.
    #[test]
    fn objects_hold_the_maps_and_sections_lwtkit_common_names() {
        use lwtkit_common::maps::{self, sections};
        for b in BUILTINS {
            let (want, prog_section): (&[&str], Option<&str>) = match b.name {
                "count" => (maps::count::ALL, None),
                "pass" => (maps::pass::ALL, None),
                "filter" => (maps::filter::ALL, None),
                "encap" => (maps::encap::ALL, None),
                "decap" => (maps::decap::ALL, Some(sections::TCX_INGRESS)),
                "seg6" => (maps::seg6::ALL, Some(sections::LWT_SEG6LOCAL)),
                other => panic!("built-in `{other}` has no expected maps here"),
            };
            let (found, data, progs) = contents(b);
            let mut want: Vec<String> = want
                .iter()
                .chain(maps::IN_EVERY_OBJECT)
                .map(|s| s.to_string())
                .collect();
            want.sort();
            want.dedup();
            assert_eq!(found, want, "maps of {}", b.name);
            if b.name == "encap" {
                assert!(
                    data.iter().any(|d| d == maps::encap::TABLE_SECTION),
                    "encap's data sections: {data:?}"
                );
            }
            if b.name == "filter" {
                assert!(
                    data.iter().any(|d| d == maps::filter::SPEC_SECTION),
                    "filter's data sections: {data:?}"
                );
            }
            for (hook, entry) in b.entries {
                assert!(
                    progs.iter().any(|(n, s)| n == entry && s == hook.section()),
                    "{}: no program {entry} in {}: {progs:?}",
                    b.name,
                    hook.section()
                );
            }
            if let Some(section) = prog_section {
                assert!(
                    !progs.is_empty() && progs.iter().all(|(_, s)| s == section),
                    "{}: {progs:?}",
                    b.name
                );
            }
        }
    }
}
