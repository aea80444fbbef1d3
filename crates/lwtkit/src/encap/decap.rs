//! `lwt decap`: lwtkit's own decapsulator for the far side of an overlay,
//! a tcx ingress program that strips IP-in-IP, GRE, FOU and GUE headers, so
//! both ends work without kernel tunnel modules. Its link is pinned on
//! bpffs, so it stays attached after `lwt` exits, until `lwt decap del`.
use std::{fs, path::PathBuf};

use libbpf_rs::{AsRawLibbpf, MapCore, MapFlags, MapHandle, ObjectBuilder};
use lwtkit_common::encap::{decap as kinds, DecapConfig};
use serde::{Deserialize, Serialize};

use crate::{
    attach::ifindex,
    builtin,
    error::{Error, Result},
    inventory::read_counters,
    loader::{last_line, LibbpfLog},
    state::NetnsState,
    system,
};

/// A device lwtkit decapsulates on.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DecapRecord {
    pub dev: String,
    pub kinds: Vec<String>,
    pub fou_port: Option<u16>,
    pub gue_port: Option<u16>,
    #[serde(default)]
    pub packets: u64,
    #[serde(default)]
    pub bytes: u64,
    #[serde(default)]
    pub refused: u64,
}

/// Parses the tunnel kinds: ipip, sit, ip6ip6, ip4in6 (all IP-in-IP), gre, fou, gue.
pub fn parse_kinds(names: &[String]) -> Result<u32> {
    let mut bits = 0;
    for n in names {
        bits |= match n.as_str() {
            "ipip" | "sit" | "ip6ip6" | "ip4in6" => kinds::IP_IN_IP,
            "gre" => kinds::GRE,
            "fou" => kinds::FOU,
            "gue" => kinds::GUE,
            other => return Err(Error::Invalid(format!("unknown tunnel type `{other}` to decapsulate: expected ipip, sit, ip6ip6, ip4in6, gre, fou or gue"))),
        };
    }
    Ok(bits)
}

fn dirs() -> Result<(PathBuf, PathBuf)> {
    let bpffs = system::ensure_bpffs()?;
    let (dir, pins) = NetnsState::paths(&bpffs)?;
    Ok((dir.join("decap"), pins.join("decap")))
}

fn err(path: &std::path::Path, e: impl std::fmt::Display) -> Error {
    Error::State {
        path: path.into(),
        reason: e.to_string(),
    }
}

/// `lwt decap add`: attaches (or reconfigures) the decapsulator on `dev`.
pub fn add(record: &DecapRecord) -> Result<()> {
    system::require_attach_privileges("lwt decap add")?;
    let index = ifindex(&record.dev)?;
    let bits = parse_kinds(&record.kinds)?;
    if bits & kinds::FOU != 0 && record.fou_port.is_none() {
        return Err(Error::Invalid("decapsulating fou needs --fou-port".into()));
    }
    if bits & kinds::GUE != 0 && record.gue_port.is_none() {
        return Err(Error::Invalid("decapsulating gue needs --gue-port".into()));
    }
    let config = DecapConfig {
        kinds: bits,
        fou_port: record.fou_port.unwrap_or(0),
        gue_port: record.gue_port.unwrap_or(0),
    };
    // SAFETY: DecapConfig is plain data.
    let value = unsafe {
        std::slice::from_raw_parts(
            (&config as *const DecapConfig).cast::<u8>(),
            size_of::<DecapConfig>(),
        )
    };
    let (dir, pins) = dirs()?;
    let dev_pins = pins.join(&record.dev);
    if dev_pins.join("link").exists() {
        // Already attached: a map update changes what it strips.
        let map = MapHandle::from_pinned_path(dev_pins.join("config"))
            .map_err(|_| Error::MissingPin(dev_pins.join("config")))?;
        map.update(&0u32.to_ne_bytes(), value, MapFlags::ANY)
            .map_err(|e| err(&dev_pins, e))?;
    } else {
        let b = builtin::find("decap")
            .ok_or_else(|| Error::UnknownBuiltin("decap".into(), builtin::names()))?;
        let bytes = b.object().to_vec();
        let log = LibbpfLog::capture();
        let loaded = ObjectBuilder::default()
            .open_memory(&bytes)
            .and_then(|o| o.load());
        let messages = log.finish();
        let mut obj = loaded.map_err(|e| Error::Load {
            program: "lwtkit decap".into(),
            reason: format!("{e}: {}", last_line(&messages)),
        })?;
        fs::create_dir_all(&dev_pins).map_err(|e| err(&dev_pins, e))?;
        for mut m in obj.maps_mut() {
            let (pin, is_config) = match m.name().to_string_lossy().as_ref() {
                "DECAP_CONFIG" => (dev_pins.join("config"), true),
                "DECAP_STATS" => (dev_pins.join("stats"), false),
                _ => continue,
            };
            if is_config {
                m.update(&0u32.to_ne_bytes(), value, MapFlags::ANY)
                    .map_err(|e| err(&pin, e))?;
            }
            m.pin(&pin).map_err(|e| err(&pin, e))?;
        }
        let prog = obj
            .progs()
            .find(|p| p.name() == "decap_ingress")
            .ok_or_else(|| err(&dev_pins, "no decap program"))?;
        let link_pin = std::ffi::CString::new(dev_pins.join("link").to_string_lossy().as_bytes())
            .map_err(|e| err(&dev_pins, e))?;
        // SAFETY: attaching a loaded program through libbpf; the link is
        // pinned, then disconnected so freeing it leaves it attached.
        unsafe {
            let opts = libbpf_rs::libbpf_sys::bpf_tcx_opts {
                sz: size_of::<libbpf_rs::libbpf_sys::bpf_tcx_opts>() as _,
                ..Default::default()
            };
            let link = libbpf_rs::libbpf_sys::bpf_program__attach_tcx(
                prog.as_libbpf_object().as_ptr(),
                index as i32,
                &opts,
            );
            if link.is_null() || (link as isize) < 0 && (link as isize) > -4096 {
                let _ = fs::remove_dir_all(&dev_pins);
                return Err(err(
                    &dev_pins,
                    format!(
                        "attaching to {} (tcx ingress): {}",
                        record.dev,
                        std::io::Error::last_os_error()
                    ),
                ));
            }
            let rc = libbpf_rs::libbpf_sys::bpf_link__pin(link, link_pin.as_ptr());
            libbpf_rs::libbpf_sys::bpf_link__disconnect(link);
            libbpf_rs::libbpf_sys::bpf_link__destroy(link);
            if rc != 0 {
                let _ = fs::remove_dir_all(&dev_pins);
                return Err(err(
                    &dev_pins,
                    format!(
                        "pinning the link: {}",
                        std::io::Error::from_raw_os_error(-rc)
                    ),
                ));
            }
        }
    }
    fs::create_dir_all(&dir).map_err(|e| err(&dir, e))?;
    let path = dir.join(format!("{}.json", record.dev));
    fs::write(
        &path,
        serde_json::to_vec_pretty(record).map_err(|e| err(&path, e))?,
    )
    .map_err(|e| err(&path, e))
}

/// `lwt decap del`: detaches the decapsulator from `dev`.
pub fn del(dev: &str) -> Result<()> {
    system::require_attach_privileges("lwt decap del")?;
    let (dir, pins) = dirs()?;
    let path = dir.join(format!("{dev}.json"));
    if !path.exists() {
        return Err(Error::Invalid(format!(
            "lwtkit does not decapsulate on {dev}"
        )));
    }
    // The pinned link is the only reference: removing it detaches.
    fs::remove_dir_all(pins.join(dev)).map_err(|e| err(&pins, e))?;
    fs::remove_file(&path).map_err(|e| err(&path, e))
}

/// `lwt decap list`: devices with their counters.
pub fn list() -> Result<Vec<DecapRecord>> {
    let (dir, pins) = dirs()?;
    let Ok(entries) = fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut out: Vec<DecapRecord> = entries
        .flatten()
        .filter_map(|e| fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect();
    for r in &mut out {
        if let Ok(c) = read_counters(&pins.join(&r.dev).join("stats")) {
            let (ok, bad) = (
                c.first().copied().unwrap_or_default(),
                c.get(1).copied().unwrap_or_default(),
            );
            (r.packets, r.bytes, r.refused) = (ok.packets, ok.bytes, bad.packets);
        }
    }
    out.sort_by(|a, b| a.dev.cmp(&b.dev));
    Ok(out)
}
