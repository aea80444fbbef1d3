//! The names of the maps and sections in lwtkit's kernel objects, which
//! user space looks up by name (to size, fill, pin or reuse a map).
//!
//! aya names a `#[btf_map]` map after its Rust static, so each map constant
//! here is the identifier of a static in `crates/lwtkit-ebpf`. The kernel
//! crate checks that at compile time (`lwtkit_ebpf::map_named!`), and
//! lwtkit's unit tests open the built objects and compare their maps with
//! [`filter::ALL`], [`encap::ALL`], ... and [`IN_EVERY_OBJECT`]
//! (`builtin::tests`).

/// Every built-in's per-attachment counters, a per-CPU array of
/// [`crate::Counters`] indexed by `filter::verdict_slot`
/// (`lwtkit-ebpf/src/counters.rs`).
pub const ATTACH_STATS: &str = "ATTACH_STATS";

/// The maps of the kernel crate's library (`counters.rs`, `matcher.rs`):
/// the linker keeps them in every object, used or not, and libbpf creates
/// them at each load (one entry each where unused).
pub const IN_EVERY_OBJECT: &[&str] = &[ATTACH_STATS, filter::CELLS, filter::CONFIG];

/// `lwtkit-filter` (`bin/filter.rs`, `matcher.rs`).
pub mod filter {
    /// The compiled policy, two generations of [`crate::filter::Cell`]s.
    pub const CELLS: &str = "CELLS";
    /// The one [`crate::filter::PolicyConfig`] (live generation, default).
    pub const CONFIG: &str = "CONFIG";
    /// Per-rule [`crate::filter::RuleStats`], per CPU, by counter slot.
    pub const RULE_STATS: &str = "RULE_STATS";
    /// The ring buffer of `log` rules' [`crate::filter::Event`]s.
    pub const EVENTS: &str = "EVENTS";
    /// Per-rule [`crate::filter::ActionStats`], per CPU, indexed as `RULE_STATS`.
    pub const ACTION_STATS: &str = "ACTION_STATS";
    /// Per-CPU scratch of the ICMPv6 error translation (the BPF stack is
    /// shared by the matcher's frame and the translation's).
    pub const NAT_SCRATCH: &str = "NAT_SCRATCH";
    /// ELF section (and libbpf map) of the program's load-time
    /// specialisation, a [`crate::filter::ProgramSpec`]: which paths the
    /// instance keeps. The kernel side spells the same name in its
    /// `link_section` (checked against this one at compile time).
    pub const SPEC_SECTION: &str = ".rodata.spec";
    /// The maps the object's programs use (data sections aside).
    pub const ALL: &[&str] = &[
        CELLS,
        CONFIG,
        RULE_STATS,
        ACTION_STATS,
        EVENTS,
        NAT_SCRATCH,
        super::ATTACH_STATS,
    ];
}

/// `lwtkit-encap` (`bin/encap.rs`).
pub mod encap {
    /// The LPM trie of [`crate::encap::EncapEntry`] by [`crate::encap::EncapKey`].
    pub const TUNNELS: &str = "TUNNELS";
    /// Per-tunnel [`crate::encap::EncapStats`], per CPU.
    pub const TUNNEL_STATS: &str = "TUNNEL_STATS";
    /// ELF section (and libbpf map) of the program's one load-time
    /// constant, the table its routes live in (a `u32`): user space sets it
    /// before load, so each table gets its own program instance. The kernel
    /// side spells the same name in its `link_section` (a literal, checked
    /// against this one at compile time).
    pub const TABLE_SECTION: &str = ".rodata.table";
    /// Per-CPU scratch for the outer header being built (the 512-byte BPF
    /// stack cannot hold it), and for the checksum walk.
    pub const HEADER: &str = "HEADER";
    pub const SCRATCH: &str = "SCRATCH";
    /// The maps the object's programs use (data sections aside).
    pub const ALL: &[&str] = &[TUNNELS, TUNNEL_STATS, HEADER, SCRATCH];
}

/// `lwtkit-decap` (`bin/decap.rs`).
pub mod decap {
    /// The one [`crate::encap::DecapConfig`].
    pub const CONFIG: &str = "DECAP_CONFIG";
    /// [`crate::Counters`] per `encap::decap_stat` slot, per CPU.
    pub const STATS: &str = "DECAP_STATS";
    /// The LPM trie of outer destinations taken.
    pub const LOCAL: &str = "DECAP_LOCAL";
    /// The LPM trie of outer sources taken (with `REMOTE_FILTER`).
    pub const REMOTE: &str = "DECAP_REMOTE";
    /// The maps the object's program uses.
    pub const ALL: &[&str] = &[CONFIG, STATS, LOCAL, REMOTE];
}

/// `lwtkit-seg6` (`bin/seg6.rs`).
pub mod seg6 {
    /// The table `end-dt6` looks decapsulated packets up in.
    pub const DT6_TABLE: &str = "DT6_TABLE";
    /// The maps the object's programs use.
    pub const ALL: &[&str] = &[DT6_TABLE, super::ATTACH_STATS];
}

/// `lwtkit-count` (`bin/count.rs`).
pub mod count {
    /// The maps the object's programs use.
    pub const ALL: &[&str] = &[super::ATTACH_STATS];
}

/// `lwtkit-pass` (`bin/pass.rs`) uses no maps.
pub mod pass {
    /// The maps the object's programs use.
    pub const ALL: &[&str] = &[];
}

/// `lwtkit-nat-test` (`bin/nat_test.rs`): a test-only program, not a
/// built-in, that applies `nat_icmp` and `nptv6` to test-run packets.
pub mod nat_test {
    /// The one [`crate::nat_icmp::NatCase`] to apply.
    pub const CASE: &str = "NAT_CASE";
    /// The [`crate::nat_icmp::outcome`] of the last run (a `u32`).
    pub const RESULT: &str = "NAT_RESULT";
    /// Per-CPU scratch of the translation (as the filter's).
    pub const SCRATCH: &str = "NAT_SCRATCH";
    /// The maps the object's program uses.
    pub const ALL: &[&str] = &[CASE, RESULT, SCRATCH];
}

/// Program sections, which give libbpf the program type.
pub mod sections {
    pub const LWT_IN: &str = "lwt_in";
    pub const LWT_OUT: &str = "lwt_out";
    pub const LWT_XMIT: &str = "lwt_xmit";
    /// SRv6 `End.BPF` programs.
    pub const LWT_SEG6LOCAL: &str = "lwt_seg6local";
    /// The decapsulator (tcx ingress).
    pub const TCX_INGRESS: &str = "tcx/ingress";
}

/// Whether `a` and `b` are the same string, in a `const` context: the
/// kernel crate's compile-time checks of its statics' names use it.
pub const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel keeps a map name of at most 15 bytes of letters, digits,
    /// `_` and `.` (`bpf_obj_name_cpy` in `kernel/bpf/syscall.c`); within
    /// that, `bpftool map` shows the names user space looks maps up by.
    #[test]
    fn map_names_fit_the_kernels_object_names() {
        let all = [
            IN_EVERY_OBJECT,
            filter::ALL,
            encap::ALL,
            decap::ALL,
            seg6::ALL,
            count::ALL,
            pass::ALL,
            nat_test::ALL,
            &[encap::TABLE_SECTION, filter::SPEC_SECTION],
        ];
        for name in all.iter().flat_map(|names| names.iter()) {
            assert!(!name.is_empty() && name.len() <= 15, "{name}");
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.'),
                "{name}"
            );
        }
    }

    #[test]
    fn same_compares_whole_strings() {
        assert!(same("TUNNELS", encap::TUNNELS));
        assert!(!same("TUNNEL", encap::TUNNELS));
        assert!(!same("TUNNELZ", encap::TUNNELS));
        assert!(same("", ""));
    }
}
