//! lwtkit's layout on bpffs: the directory and file names of its pins.
//!
//! ```text
//! /sys/fs/bpf/lwtkit/ns-<cookie>/                 one directory per namespace (cookie)
//!   <route key>/<hook>/{prog,counters}            a hook lwtkit attached (route key: table_prefix)
//!   filters/<policy>/{cells,config,rule_stats,action_stats}    a filter policy's maps
//!   events                                        the namespace's event ring buffer
//!   encap/{tunnels,stats}                         the tunnel maps
//!   decap/<dev>/{config,stats,local,remote,link}  a decapsulator and its tcx link
//!   seg6local/<route key>/{prog,counters}         an End.BPF SID
//! ```
//!
//! Each feature's maps are listed with the map name they pin
//! ([`filter::MAPS`], ...), so the loader and the features pair the same
//! names.

use crate::maps;

/// lwtkit's directory on bpffs.
pub const ROOT: &str = "lwtkit";

/// A program lwtkit attached (a route's hook, a SID).
pub mod program {
    /// The program.
    pub const PROG: &str = "prog";
    /// Its per-attachment counters map ([`crate::maps::ATTACH_STATS`]).
    pub const COUNTERS: &str = "counters";
}

/// The namespace's event ring buffer ([`crate::maps::filter::EVENTS`]),
/// shared by every filter policy: a file in the namespace's directory.
pub const EVENTS: &str = "events";

/// Filter policies: `filters/<policy>/`.
pub mod filter {
    use super::maps::filter as m;

    pub const DIR: &str = "filters";
    pub const CELLS: &str = "cells";
    pub const CONFIG: &str = "config";
    pub const RULE_STATS: &str = "rule_stats";
    /// What rules' actions did ([`crate::filter::ActionStats`]); policies
    /// made before actions have none (their programs get a map of their own).
    pub const ACTION_STATS: &str = "action_stats";
    /// A policy's own maps: (map name, pin file in the policy's directory).
    pub const MAPS: &[(&str, &str)] = &[
        (m::CELLS, CELLS),
        (m::CONFIG, CONFIG),
        (m::RULE_STATS, RULE_STATS),
        (m::ACTION_STATS, ACTION_STATS),
    ];
}

/// The namespace's tunnel maps: `encap/`.
pub mod encap {
    use super::maps::encap as m;

    pub const DIR: &str = "encap";
    pub const TUNNELS: &str = "tunnels";
    pub const STATS: &str = "stats";
    /// (map name, pin file in `encap/`).
    pub const MAPS: &[(&str, &str)] = &[(m::TUNNELS, TUNNELS), (m::TUNNEL_STATS, STATS)];
}

/// Decapsulators: `decap/<dev>/`.
pub mod decap {
    use super::maps::decap as m;

    pub const DIR: &str = "decap";
    pub const CONFIG: &str = "config";
    pub const STATS: &str = "stats";
    pub const LOCAL: &str = "local";
    pub const REMOTE: &str = "remote";
    /// The tcx link that keeps the program attached.
    pub const LINK: &str = "link";
    /// (map name, pin file in the device's directory).
    pub const MAPS: &[(&str, &str)] = &[
        (m::CONFIG, CONFIG),
        (m::STATS, STATS),
        (m::LOCAL, LOCAL),
        (m::REMOTE, REMOTE),
    ];
    /// Every pin of a complete decapsulator.
    pub const ALL: [&str; 5] = [CONFIG, STATS, LOCAL, REMOTE, LINK];
}

/// End.BPF SIDs: `seg6local/<route key>/` holds [`program`]'s pins.
pub const SEG6LOCAL: &str = "seg6local";

/// The directories of a namespace's pins that belong to no single route.
pub const SHARED_DIRS: [&str; 5] = [filter::DIR, EVENTS, encap::DIR, decap::DIR, SEG6LOCAL];

/// The pin file of map `name` in `maps` (a feature's `MAPS`).
pub fn of_map(maps: &[(&str, &'static str)], name: &str) -> Option<&'static str> {
    maps.iter().find(|(m, _)| *m == name).map(|(_, p)| *p)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// bpffs refuses names with a dot in directories users make
    /// (`bpf_lookup` in `kernel/bpf/inode.c`: EPERM).
    #[test]
    fn pin_names_are_plain_bpffs_names() {
        let names = [
            ROOT,
            program::PROG,
            program::COUNTERS,
            EVENTS,
            filter::DIR,
            filter::CELLS,
            filter::CONFIG,
            filter::RULE_STATS,
            filter::ACTION_STATS,
            encap::DIR,
            encap::TUNNELS,
            encap::STATS,
            decap::DIR,
            decap::CONFIG,
            decap::STATS,
            decap::LOCAL,
            decap::REMOTE,
            decap::LINK,
            SEG6LOCAL,
        ];
        for name in names {
            assert!(!name.is_empty() && !name.contains(['.', '/']), "{name}");
        }
        assert_eq!(
            of_map(encap::MAPS, maps::encap::TUNNELS),
            Some(encap::TUNNELS)
        );
        assert_eq!(of_map(decap::MAPS, "NOT_A_MAP"), None);
    }
}
