//! `lwt export [-o FILE]`
use std::path::Path;

use anyhow::Context;

use super::Output;

pub fn run(output: Option<&Path>, out: &Output) -> anyhow::Result<()> {
    let file = lwtkit::config::export()?;
    let text = format!(
        "# lwtkit's state in this namespace, as `lwt export` wrote it; `lwt apply -f` gives it back (docs/config.md)\n\n{}",
        file.to_toml()
    );
    match output {
        Some(path) => {
            std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
            out.emit(&serde_json::json!({ "written": path }), |_| String::new())
        }
        None if out.json => out.emit(&file, |_| String::new()),
        None => {
            super::print_line(text.trim_end());
            Ok(())
        }
    }
}
