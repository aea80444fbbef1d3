//! `lwt decap add|del|list`
use lwtkit::encap::decap::{self, DecapRecord};

use super::Output;
use crate::args::DecapVerb;

pub fn run(v: DecapVerb, out: &Output) -> anyhow::Result<()> {
    match v {
        DecapVerb::Add {
            dev,
            kinds,
            fou_port,
            gue_port,
        } => {
            let r = DecapRecord {
                dev,
                kinds,
                fou_port,
                gue_port,
                packets: 0,
                bytes: 0,
                refused: 0,
            };
            decap::add(&r)?;
            out.emit(&r, |r| {
                format!("decapsulating {} on {}", r.kinds.join(","), r.dev)
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
                l.iter()
                    .map(|r| {
                        format!(
                            "{} {}  packets {} bytes {} refused {}",
                            r.dev,
                            r.kinds.join(","),
                            r.packets,
                            r.bytes,
                            r.refused
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
    }
}
