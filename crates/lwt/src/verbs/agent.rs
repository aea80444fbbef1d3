//! `lwt agent -f FILE [--metrics ADDR:PORT] [--interval SECS] [--prune]`:
//! runs until SIGTERM or SIGINT; it prints logs, not results.
use std::net::TcpListener;

use crate::args::AgentArgs;

/// Binds the metrics listener (before `-n` enters the namespace).
pub fn listen(a: &AgentArgs) -> anyhow::Result<Option<TcpListener>> {
    a.metrics
        .map(|addr| {
            TcpListener::bind(addr).map_err(|reason| {
                lwtkit::Error::from(lwtkit::agent::AgentError::Metrics {
                    addr: addr.to_string(),
                    reason,
                })
                .into()
            })
        })
        .transpose()
}

pub fn run(a: AgentArgs, metrics: Option<TcpListener>) -> anyhow::Result<()> {
    let opts = lwtkit::agent::Options::new(a.file, a.interval, a.prune)?;
    lwtkit::agent::run(opts, metrics)?;
    Ok(())
}
