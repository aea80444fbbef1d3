//! One file per verb; each turns flags into a library request and renders
//! the outcome as text or JSON.
pub mod attach;
pub mod builtins;
pub mod decap;
pub mod detach;
pub mod encap;
pub mod events;
pub mod filter;
pub mod list;
pub mod seg6local;
pub mod stats;

/// How results are printed.
pub struct Output {
    pub json: bool,
}

impl Output {
    /// Prints `value` as JSON, or the text `render` makes of it.
    pub fn emit<T: serde::Serialize>(
        &self,
        value: &T,
        render: impl FnOnce(&T) -> String,
    ) -> anyhow::Result<()> {
        if self.json {
            println!("{}", serde_json::to_string(value)?);
        } else {
            let text = render(value);
            if !text.is_empty() {
                println!("{}", text.trim_end());
            }
        }
        Ok(())
    }
}

/// Parses a `--table` value.
pub fn table(arg: Option<&str>) -> anyhow::Result<Option<u32>> {
    table_flag("--table", arg)
}

/// Parses the table value of `flag`; an error names the flag.
pub fn table_flag(flag: &str, arg: Option<&str>) -> anyhow::Result<Option<u32>> {
    arg.map(|s| lwtkit::route::table::parse_table(s).map_err(|e| anyhow::anyhow!("{flag}: {e}")))
        .transpose()
}

/// Read-only verbs work without privileges but see less: say exactly what
/// once. Returns whether lwtkit's records could be read.
pub fn warn_if_unprivileged(what: &str) -> bool {
    let records = lwtkit::ns::Namespace::open_readonly().is_ok_and(|ns| ns.readable());
    if !records {
        eprintln!("lwt: note: lwtkit's records are readable by root only, so {what} cannot tell which routes lwtkit manages, where their programs came from, or what they counted; run it as root to see them");
    } else if lwtkit::system::require_attach_privileges(what).is_err() {
        eprintln!("lwt: note: without CAP_BPF and CAP_NET_ADMIN (root), {what} cannot read lwtkit's programs and counters; ids, tags and counts are missing");
    }
    records
}
