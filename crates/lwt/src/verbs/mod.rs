//! One file per verb; each turns flags into a library request and renders
//! the outcome as text or JSON.
pub mod agent;
pub mod apply;
pub mod attach;
pub mod builtins;
pub mod decap;
pub mod detach;
pub mod diff;
pub mod doctor;
pub mod encap;
pub mod events;
pub mod export;
pub mod filter;
pub mod hooks;
pub mod list;
pub mod nat;
pub mod new;
pub mod seg6local;
pub mod stats;
pub mod test;
pub mod trace;

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
        let line = if self.json {
            json_line(value)?
        } else {
            render(value).trim_end().to_string()
        };
        if !line.is_empty() {
            print_line(&line);
        }
        Ok(())
    }
}

/// `value` as one line of JSON in lwt's one shape (docs/json.md): an
/// absent value is an absent key, never `null`.
pub fn json_line<T: serde::Serialize>(value: &T) -> serde_json::Result<String> {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                map.retain(|_, v| !v.is_null());
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(value)?;
    strip(&mut v);
    serde_json::to_string(&v)
}

/// `HH:MM:SS.micros` (UTC) of a time in seconds since the epoch.
pub fn clock(time: f64) -> String {
    let secs = time as i64;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let micros = ((time - secs as f64) * 1e6) as u64;
    format!("{h:02}:{m:02}:{s:02}.{micros:06}")
}

/// Now, in seconds since the epoch.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Prints one line. A reader that went away (`lwt list | head -1`) ends
/// the command quietly with success, as `ls | head` does: whatever the
/// verb changed is done by then.
pub fn print_line(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("lwt: error: writing the output: {e}");
        std::process::exit(1);
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
