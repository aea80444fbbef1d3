//! The kernel's symbols from `/proc/kallsyms`, read in one place: `lwt
//! test` names the helpers a program calls, `lwt trace` the code where a
//! drop is an LWT program's. Addresses read as zero when the kernel hides
//! them from this caller (`kernel.kptr_restrict`).

/// One line: `ffffffff81e90530 T bpf_lwt_xmit_push_encap [module]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Symbol<'a> {
    pub addr: u64,
    /// `t`/`T` text, `d`/`D` data, ...
    pub kind: &'a str,
    pub name: &'a str,
    /// The module's name for module symbols (`[vxlan]` without brackets).
    pub module: Option<&'a str>,
}

/// The text of `/proc/kallsyms`, if it can be read.
pub fn read() -> Option<String> {
    std::fs::read_to_string("/proc/kallsyms").ok()
}

/// The symbols of kallsyms `text`; malformed lines are skipped.
pub fn parse(text: &str) -> impl Iterator<Item = Symbol<'_>> {
    text.lines().filter_map(|line| {
        let mut parts = line.split_whitespace();
        let addr = u64::from_str_radix(parts.next()?, 16).ok()?;
        let kind = parts.next()?;
        let name = parts.next()?;
        let module = parts
            .next()
            .map(|m| m.trim_start_matches('[').trim_end_matches(']'));
        Some(Symbol {
            addr,
            kind,
            name,
            module,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_read_with_their_module_and_bad_ones_skipped() {
        let text = "ffffffff814ca810 T __bpf_call_base\n\
                    zzzz T broken\n\
                    0000000000000000 t run_lwt_bpf.isra.0\n\
                    ffffffffc0a01000 t vxlan_xmit\t[vxlan]\n";
        let syms: Vec<Symbol<'_>> = parse(text).collect();
        assert_eq!(syms.len(), 3);
        assert_eq!(
            syms[0],
            Symbol {
                addr: 0xffff_ffff_814c_a810,
                kind: "T",
                name: "__bpf_call_base",
                module: None
            }
        );
        assert_eq!((syms[1].addr, syms[1].name), (0, "run_lwt_bpf.isra.0"));
        assert_eq!(syms[2].module, Some("vxlan"));
    }
}
