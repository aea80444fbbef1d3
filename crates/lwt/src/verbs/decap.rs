//! `lwt decap add|del|list`
use lwtkit::encap::decap::{self, DecapArgs, DecapRecord, DecapState};

use super::Output;
use crate::args::DecapVerb;

fn join<T: ToString>(v: &[T]) -> String {
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Where tunnels are taken from and to, in words.
fn endpoints(r: &DecapRecord) -> String {
    let local = if r.local.is_empty() {
        format!("this host's addresses ({})", join(&r.accepting))
    } else {
        join(&r.local)
    };
    let mut s = format!("to {local}");
    if !r.remote.is_empty() {
        s.push_str(&format!(" from {}", join(&r.remote)));
    }
    if let Some(k) = r.key {
        s.push_str(&format!(", gre key {k}"));
    }
    s
}

fn render(r: &DecapRecord) -> String {
    let state = match r.state {
        DecapState::Attached => "attached".to_string(),
        DecapState::Defunct => format!(
            "defunct ({})",
            r.note.as_deref().unwrap_or("not attached to the device")
        ),
    };
    let p = &r.passed;
    format!(
        "{} {}  {} {}\n  decapsulated: packets {} bytes {}  refused {}\n  passed: not-tunnel {} not-local {} not-remote {} gre-key {} inner {} gue-control {} fragments {} unsupported {} malformed {}",
        r.dev,
        join(&r.kinds),
        state,
        endpoints(r),
        r.packets,
        r.bytes,
        r.refused,
        p.not_tunnel,
        p.not_local,
        p.not_remote,
        p.gre_key,
        p.inner,
        p.gue_control,
        p.fragments,
        p.unsupported,
        p.malformed
    )
}

pub fn run(v: DecapVerb, out: &Output) -> anyhow::Result<()> {
    match v {
        DecapVerb::Add {
            dev,
            kinds,
            fou_port,
            gue_port,
            key,
            local,
            remote,
        } => {
            let r = decap::record(&DecapArgs {
                dev,
                kinds,
                fou_port,
                gue_port,
                key,
                local,
                remote,
            })?;
            decap::add(&r)?;
            let shown = decap::list()?
                .into_iter()
                .find(|x| x.dev == r.dev)
                .unwrap_or(r);
            out.emit(&shown, |r| {
                format!(
                    "decapsulating {} on {} {}",
                    join(&r.kinds),
                    r.dev,
                    endpoints(r)
                )
            })
        }
        DecapVerb::Del { dev } => {
            decap::del(&dev)?;
            out.emit(&serde_json::json!({ "dev": dev }), |_| {
                format!("stopped decapsulating on {dev}")
            })
        }
        DecapVerb::List => {
            let list = decap::list()?;
            out.emit(&list, |l| {
                l.iter().map(render).collect::<Vec<_>>().join("\n")
            })
        }
    }
}
