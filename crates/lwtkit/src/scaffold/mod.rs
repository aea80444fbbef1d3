//! `lwt new NAME --lang c|rust`: a small project to start an LWT program
//! from: one program per hook with the right section names, a build file,
//! and sample packets that `make test` runs through `lwt test`.
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::test_run::packet;

#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error("project name `{0}` must start with a letter and hold only letters, digits, `-` and `_` (at most 64)")]
    Name(String),
    #[error("{0} exists already; pick another name or directory")]
    Exists(PathBuf),
    #[error("writing {path}: {reason}")]
    Io { path: PathBuf, reason: String },
}

/// The language of the generated program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// clang, `SEC("lwt_out")`, linux/bpf.h.
    C,
    /// aya-ebpf with the pinned nightly and bpf-linker, `#[btf_map]` maps.
    Rust,
}

/// What was written.
#[derive(Clone, Debug, Serialize)]
pub struct Created {
    pub dir: PathBuf,
    pub lang: Lang,
    pub files: Vec<String>,
    /// The object `make` builds, relative to `dir`.
    pub object: String,
}

/// The packets `make test` runs: a SYN to :8080 (the example drops it),
/// one to :8081 and a UDP datagram over IPv6 (passed).
pub const SAMPLE_PACKETS: [&str; 3] = [
    "tcp 10.0.0.2:40000 > 10.0.0.3:8080 flags S",
    "tcp 10.0.0.2:40001 > 10.0.0.3:8081 flags S",
    "udp [fd00::2]:5000 > [fd00::3]:53 len 100",
];

pub fn validate_name(name: &str) -> Result<(), ScaffoldError> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ScaffoldError::Name(name.into()))
    }
}

fn fill(template: &str, name: &str) -> String {
    template
        .replace("{{name}}", name)
        .replace("{{ident}}", &name.replace('-', "_"))
}

/// The files of a project `name` in `lang`: (path in the project, bytes).
pub fn files(name: &str, lang: Lang) -> Result<Vec<(String, Vec<u8>)>, ScaffoldError> {
    validate_name(name)?;
    let text = |path: &str, t: &str| (path.to_string(), fill(t, name).into_bytes());
    let mut out = match lang {
        Lang::C => vec![
            text(&format!("{name}.c"), include_str!("c/prog.c")),
            text("Makefile", include_str!("c/Makefile")),
        ],
        Lang::Rust => vec![
            text("src/main.rs", include_str!("rust/main.rs")),
            text("Cargo.toml", include_str!("rust/Cargo.toml")),
            text(".cargo/config.toml", include_str!("rust/config.toml")),
            text(
                "rust-toolchain.toml",
                include_str!("rust/rust-toolchain.toml"),
            ),
            text("Makefile", include_str!("rust/Makefile")),
            text(".gitignore", "target/\n"),
        ],
    };
    out.push(("packets.pcap".into(), sample_pcap()?));
    Ok(out)
}

fn sample_pcap() -> Result<Vec<u8>, ScaffoldError> {
    let io = |e: String| ScaffoldError::Io {
        path: "packets.pcap".into(),
        reason: e,
    };
    let packets: Vec<Vec<u8>> = SAMPLE_PACKETS
        .iter()
        .map(|s| packet::from_spec(s).map_err(|e| io(e.to_string())))
        .collect::<Result<_, _>>()?;
    let header = pcap_file::pcap::PcapHeader {
        datalink: pcap_file::DataLink::RAW,
        ..Default::default()
    };
    let mut w = pcap_file::pcap::PcapWriter::with_header(Vec::new(), header)
        .map_err(|e| io(e.to_string()))?;
    for (i, p) in packets.iter().enumerate() {
        let ts = std::time::Duration::from_millis(i as u64);
        w.write_packet(&pcap_file::pcap::PcapPacket::new(ts, p.len() as u32, p))
            .map_err(|e| io(e.to_string()))?;
    }
    Ok(w.into_writer())
}

/// Writes project `name` into `parent/name`, which must not exist.
pub fn create(parent: &Path, name: &str, lang: Lang) -> Result<Created, ScaffoldError> {
    let files = files(name, lang)?;
    let dir = parent.join(name);
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir));
    }
    for (rel, bytes) in &files {
        let path = dir.join(rel);
        let io = |e: std::io::Error| ScaffoldError::Io {
            path: path.clone(),
            reason: e.to_string(),
        };
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).map_err(io)?;
        }
        std::fs::write(&path, bytes).map_err(io)?;
    }
    Ok(Created {
        dir,
        lang,
        files: files.into_iter().map(|(f, _)| f).collect(),
        object: match lang {
            Lang::C => format!("{name}.o"),
            Lang::Rust => format!("target/bpfel-unknown-none/release/{name}"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for ok in ["demo", "drop-8080", "a_b2"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "9lives", "a/b", "a b", "..", &"x".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_hook_has_its_section_and_no_placeholder_is_left() {
        for lang in [Lang::C, Lang::Rust] {
            let files = files("my-prog", lang).expect("files");
            let all: String = files
                .iter()
                .filter(|(f, _)| f != "packets.pcap")
                .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
                .collect();
            assert!(!all.contains("{{"), "{lang:?}");
            for section in ["lwt_in", "lwt_out", "lwt_xmit", "lwt_seg6local"] {
                assert!(
                    all.contains(&format!("\"{section}\"")),
                    "{lang:?} {section}"
                );
            }
            assert!(all.contains("my_prog_out"), "{lang:?}: identifiers use _");
            assert!(files.iter().any(|(f, _)| f == "Makefile"));
        }
    }

    #[test]
    fn the_sample_pcap_holds_the_sample_packets() {
        let dir = std::env::temp_dir().join(format!("lwtkit-scaffold-{}", std::process::id()));
        let made = create(&dir, "demo", Lang::C).expect("create");
        let read = packet::read_pcap(&made.dir.join("packets.pcap")).expect("pcap");
        assert_eq!(read.len(), SAMPLE_PACKETS.len());
        assert!(matches!(
            create(&dir, "demo", Lang::C),
            Err(ScaffoldError::Exists(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
