//! `lwt decap`: lwtkit's own decapsulator for the far side of an overlay,
//! a tcx ingress program that strips IP-in-IP, GRE, FOU and GUE headers, so
//! both ends work without kernel tunnel modules. Its link is pinned on
//! bpffs, so it stays attached after `lwt` exits, until `lwt decap del`.
//!
//! It takes only tunnel packets sent to this host (its local routes when
//! `lwt decap add` ran, or `--local`), optionally only from `--remote`,
//! and for GRE only with the configured key (or none); everything else
//! passes untouched to the next tcx program and the classic tc filters,
//! counted by why it was passed.
mod addrs;
mod link;

use std::{net::IpAddr, path::Path};

use ipnet::IpNet;
use libbpf_rs::{MapCore, MapFlags, MapHandle, ObjectBuilder};
use lwtkit_common::{
    encap::{decap as kinds, decap_flags, decap_stat, DecapConfig},
    pins::{
        self,
        decap::{CONFIG, LINK, LOCAL, REMOTE, STATS},
    },
};
use serde::{Deserialize, Serialize};

pub use self::addrs::{host_locals, parse_endpoints};
use self::link::LinkState;
use crate::{
    attach::ifindex,
    builtin,
    error::{Error, LoadError, Result, StateError},
    inventory::read_counters,
    loader::{last_line, LibbpfLog},
    ns::{self, failpoint, store, Intent, Namespace, Outcome, Probe, Step, Txn},
    system,
};

/// What `lwt decap` refuses: flags that do not fit, addresses that are not
/// this host's, a device lwtkit does not decapsulate on.
#[derive(Debug, thiserror::Error)]
pub enum DecapError {
    /// The flag, the value given.
    #[error("{flag} {value} is out of range: a UDP port is 1 to 65535")]
    PortRange { flag: &'static str, value: u64 },
    #[error("--key {0} does not fit in 32 bits (0 to {max})", max = u32::MAX)]
    KeyRange(u64),
    #[error("unknown tunnel type `{0}` to decapsulate: expected ipip, sit, ip6ip6, ip4in6, gre, fou or gue")]
    UnknownKind(String),
    /// FOU or GUE without its port flag.
    #[error("decapsulating {kind} needs {flag}")]
    PortNeeded {
        kind: &'static str,
        flag: &'static str,
    },
    #[error("--fou-port and --gue-port are both {0}: give each its own port")]
    SamePort(u16),
    #[error("--key is a GRE key: add gre to --type")]
    KeyWithoutGre,
    /// A `--local`/`--remote` value that is no address (`what` says why).
    #[error("{flag} `{value}`: {what}")]
    BadAddress {
        flag: String,
        value: String,
        what: &'static str,
    },
    /// A `--local`/`--remote` address that cannot be a tunnel endpoint.
    #[error("{flag} `{value}`: {why}; {flag} takes unicast host addresses")]
    NotUnicast {
        flag: String,
        value: String,
        why: &'static str,
    },
    #[error("{flag}: {count} addresses, at most {max}")]
    TooManyAddresses {
        flag: String,
        count: usize,
        max: u32,
    },
    #[error("--local {0} is not an address of this host (no local route covers it; see `ip route show table all type local`)")]
    NotLocal(IpAddr),
    /// The device.
    #[error("this host has no address that tunnels to {0} could be sent to; add one first")]
    NoHostAddress(String),
    #[error(
        "this host has {count} local addresses, more than the decapsulator's {max}; pass --local"
    )]
    TooManyLocals { count: usize, max: u32 },
    /// The device.
    #[error("lwtkit does not decapsulate on {0}")]
    NotDecapsulating(String),
}

/// A device lwtkit decapsulates on.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DecapRecord {
    pub dev: String,
    /// The tunnel types taken (`types`, as `--type` names them; records
    /// from before say `kinds`).
    #[serde(rename = "types", alias = "kinds")]
    pub kinds: Vec<String>,
    pub fou_port: Option<u16>,
    pub gue_port: Option<u16>,
    /// GRE: take only packets with this key (without it: only keyless GRE).
    #[serde(default)]
    pub key: Option<u32>,
    /// Outer destinations to take; empty: every address of this host.
    #[serde(default)]
    pub local: Vec<IpAddr>,
    /// Outer sources to take; empty: any.
    #[serde(default)]
    pub remote: Vec<IpAddr>,
    /// Decapsulated packets and their bytes (after the outer headers went).
    #[serde(default)]
    pub packets: u64,
    #[serde(default)]
    pub bytes: u64,
    /// Packets dropped because the kernel refused to remove the headers.
    #[serde(default)]
    pub refused: u64,
    /// Packets passed untouched, by reason.
    #[serde(default)]
    pub passed: DecapPassed,
    /// Whether the program is still attached to the device of that name.
    #[serde(default)]
    pub state: DecapState,
    /// Why a decapsulator is defunct.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The outer destinations the program takes now (its local trie).
    #[serde(default)]
    pub accepting: Vec<IpNet>,
}

impl DecapRecord {
    /// A record for `lwt decap add` with no counters.
    pub fn new(dev: impl Into<String>, kinds: Vec<String>) -> Self {
        DecapRecord {
            dev: dev.into(),
            kinds,
            fou_port: None,
            gue_port: None,
            key: None,
            local: Vec::new(),
            remote: Vec::new(),
            packets: 0,
            bytes: 0,
            refused: 0,
            passed: DecapPassed::default(),
            state: DecapState::Attached,
            note: None,
            accepting: Vec::new(),
        }
    }
}

/// Packets the decapsulator let pass untouched, by reason (see
/// `lwtkit_common::encap::decap_stat`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecapPassed {
    /// Not a tunnel packet of a configured type.
    pub not_tunnel: u64,
    /// Outer destination not this host's (or not in `--local`).
    pub not_local: u64,
    /// Outer source not in `--remote`.
    pub not_remote: u64,
    /// GRE key not the configured one (or a key where none is configured).
    pub gre_key: u64,
    /// Inner version not the one announced.
    pub inner: u64,
    /// GUE control messages.
    pub gue_control: u64,
    /// Outer fragments: the stack reassembles them but cannot decapsulate.
    pub fragments: u64,
    /// Tunnel features lwtkit does not strip.
    pub unsupported: u64,
    /// Outer IPv4 headers with a bad checksum or length.
    pub malformed: u64,
}

/// Whether a decapsulator still runs on its device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecapState {
    #[default]
    Attached,
    /// The device it was attached to is gone (deleted, or deleted and
    /// created again); `lwt decap add` attaches it again.
    Defunct,
}

/// What `lwt decap add` was given, before its values are checked.
#[derive(Clone, Debug, Default)]
pub struct DecapArgs {
    pub dev: String,
    pub kinds: Vec<String>,
    pub fou_port: Option<u64>,
    pub gue_port: Option<u64>,
    pub key: Option<u64>,
    pub local: Vec<String>,
    pub remote: Vec<String>,
}

/// Checks the flags of `lwt decap add` and turns them into a record.
/// Errors name the flag.
pub fn record(args: &DecapArgs) -> Result<DecapRecord> {
    let port = |flag: &'static str, v: Option<u64>| -> Result<Option<u16>> {
        v.map(|n| {
            u16::try_from(n)
                .ok()
                .filter(|p| *p != 0)
                .ok_or(DecapError::PortRange { flag, value: n }.into())
        })
        .transpose()
    };
    let key = args
        .key
        .map(|k| u32::try_from(k).map_err(|_| DecapError::KeyRange(k)))
        .transpose()?;
    let mut r = DecapRecord::new(args.dev.clone(), args.kinds.clone());
    r.fou_port = port("--fou-port", args.fou_port)?;
    r.gue_port = port("--gue-port", args.gue_port)?;
    r.key = key;
    r.local = parse_endpoints("--local", &args.local)?;
    r.remote = parse_endpoints("--remote", &args.remote)?;
    check(&r)?;
    Ok(r)
}

/// Parses the tunnel kinds: ipip (IPv4 in IPv4), sit (IPv6 in IPv4),
/// ip6ip6, ip4in6, gre, fou, gue.
pub fn parse_kinds(names: &[String]) -> Result<u32> {
    let mut bits = 0;
    for n in names {
        bits |= match n.as_str() {
            "ipip" => kinds::IPIP,
            "sit" => kinds::SIT,
            "ip6ip6" => kinds::IP6IP6,
            "ip4in6" => kinds::IP4IN6,
            "gre" => kinds::GRE,
            "fou" => kinds::FOU,
            "gue" => kinds::GUE,
            other => return Err(DecapError::UnknownKind(other.into()).into()),
        };
    }
    Ok(bits)
}

/// The checks that need no kernel: kinds, ports, key, addresses.
fn check(r: &DecapRecord) -> Result<u32> {
    let bits = parse_kinds(&r.kinds)?;
    if bits & kinds::FOU != 0 && r.fou_port.is_none() {
        return Err(DecapError::PortNeeded {
            kind: "fou",
            flag: "--fou-port",
        }
        .into());
    }
    if bits & kinds::GUE != 0 && r.gue_port.is_none() {
        return Err(DecapError::PortNeeded {
            kind: "gue",
            flag: "--gue-port",
        }
        .into());
    }
    for (flag, p) in [("--fou-port", r.fou_port), ("--gue-port", r.gue_port)] {
        if p == Some(0) {
            return Err(DecapError::PortRange { flag, value: 0 }.into());
        }
    }
    if bits & kinds::FOU != 0 && bits & kinds::GUE != 0 && r.fou_port == r.gue_port {
        return Err(DecapError::SamePort(r.fou_port.unwrap_or_default()).into());
    }
    if r.key.is_some() && bits & kinds::GRE == 0 {
        return Err(DecapError::KeyWithoutGre.into());
    }
    let text = |v: &[IpAddr]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
    parse_endpoints("--local", &text(&r.local))?;
    parse_endpoints("--remote", &text(&r.remote))?;
    Ok(bits)
}

impl crate::ns::Record for DecapRecord {
    const DIR: &'static str = "decap";
    fn key(&self) -> String {
        self.dev.clone()
    }
}

fn err(path: &Path, e: impl std::fmt::Display) -> Error {
    StateError::Io {
        path: path.into(),
        reason: e.to_string(),
    }
    .into()
}

fn config_bytes(c: &DecapConfig) -> &[u8] {
    // SAFETY: DecapConfig is plain #[repr(C)] data without padding.
    unsafe {
        std::slice::from_raw_parts(
            (c as *const DecapConfig).cast::<u8>(),
            size_of::<DecapConfig>(),
        )
    }
}

/// `lwt decap add`: attaches (or reconfigures) the decapsulator on `dev`.
/// Every check happens before anything changes. A decapsulator whose
/// device was deleted (and perhaps created again) is replaced.
pub fn add(record: &DecapRecord) -> Result<()> {
    system::require_attach_privileges("lwt decap add")?;
    check(record)?;
    let ns = Namespace::open()?;
    let txn = ns.begin("lwt decap add")?;
    add_in(&txn, record)
}

/// [`add`] inside a transaction the caller holds.
pub fn add_in(txn: &Txn, record: &DecapRecord) -> Result<()> {
    let config = config_of(record)?;
    let index = ifindex(&record.dev)?;
    let locals = addrs::local_set(&record.dev, index, &record.local)?;
    let remotes = remotes_of(record);
    let pins = txn.pin_root().join(pins::decap::DIR);
    let dev_pins = pins.join(&record.dev);
    let mut stored = record.clone();
    stored.accepting = locals.clone();
    let put = txn.put_step(&stored)?;
    let complete = pins::decap::ALL.iter().all(|p| dev_pins.join(p).exists());
    let live = complete
        && link::state(&dev_pins.join(LINK), &record.dev, Some(index)) == LinkState::Attached;
    if live {
        // Only lwtkit's own maps change: the record goes first, and the map
        // changes are the intent's `done` steps, so a kill after the record
        // is finished by the next command (the maps follow the record).
        let old = txn.get::<DecapRecord>(&record.dev)?;
        let Step::Put { path, json } = put.clone() else {
            unreachable!("put_step makes a Put")
        };
        let mut intent = Intent::new("lwt decap add", Probe::Record { path, json });
        intent.done = reconfigure_steps(&dev_pins, &config, &locals, &remotes)?;
        intent.undone = match &old {
            Some(o) => vec![txn.put_step(o)?],
            None => vec![txn.remove_step::<DecapRecord>(&record.dev)],
        };
        let pending = txn.intend(intent)?;
        if let Err(e) = ns::intent::apply(&[put]) {
            txn.finish(pending, Outcome::Undone)?;
            return Err(e);
        }
        failpoint("decap-add:record");
        return txn.finish(pending, Outcome::Done);
    }
    // Attach the new one beside whatever is left, then drop the old pins
    // (a defunct link, or pins of an older lwtkit): no moment without a
    // decapsulator. ':' cannot occur in a device name. The staged link is
    // the kernel's word that the new decapsulator is attached; the rename
    // that moves it is the last step.
    let staging = pins.join(format!("{}:next", record.dev));
    let _ = store::remove_tree(&staging);
    let mut intent = Intent::new(
        "lwt decap add",
        Probe::Pinned {
            path: staging.join(LINK),
        },
    );
    intent.done = vec![
        put,
        Step::RemoveTree {
            path: dev_pins.clone(),
        },
        Step::Rename {
            from: staging.clone(),
            to: dev_pins,
        },
    ];
    intent.undone = vec![Step::RemoveTree {
        path: staging.clone(),
    }];
    let pending = txn.intend(intent)?;
    failpoint("decap-add:intent");
    if let Err(e) = attach_new(&record.dev, index, &staging, &config, &locals, &remotes) {
        txn.finish(pending, Outcome::Undone)?;
        return Err(e);
    }
    failpoint("decap-add:link");
    txn.finish(pending, Outcome::Done)
}

/// The configuration map value a record calls for.
pub(crate) fn config_of(record: &DecapRecord) -> Result<DecapConfig> {
    let bits = check(record)?;
    let mut flags = 0;
    if record.key.is_some() {
        flags |= decap_flags::GRE_KEY;
    }
    if !record.remote.is_empty() {
        flags |= decap_flags::REMOTE_FILTER;
    }
    Ok(DecapConfig {
        kinds: bits,
        fou_port: record.fou_port.unwrap_or(0),
        gue_port: record.gue_port.unwrap_or(0),
        gre_key: record.key.unwrap_or(0),
        flags,
    })
}

/// The remote trie a record calls for.
pub(crate) fn remotes_of(record: &DecapRecord) -> Vec<IpNet> {
    let mut v: Vec<IpNet> = record.remote.iter().map(|a| IpNet::from(*a)).collect();
    v.sort();
    v.dedup();
    v
}

/// What the kernel holds for one decapsulator, for `lwt check`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Observed {
    /// Pins (of `pins::decap::ALL`) that are not there.
    pub missing: Vec<&'static str>,
    /// Why the pinned link does not serve the device (`None`: it does).
    pub defunct: Option<String>,
    pub config: Option<DecapConfig>,
    pub local: Option<Vec<IpNet>>,
    pub remote: Option<Vec<IpNet>>,
}

/// Reads the pins of the decapsulator on `dev` under `dev_pins`.
pub(crate) fn observe(dev_pins: &Path, dev: &str) -> Observed {
    let map = |name: &str| MapHandle::from_pinned_path(dev_pins.join(name)).ok();
    let config = map("config").and_then(|m| {
        let v = m.lookup(&0u32.to_ne_bytes(), MapFlags::ANY).ok()??;
        let mut c = DecapConfig::default();
        // SAFETY: DecapConfig is plain #[repr(C)] data; the length is checked.
        (v.len() == size_of::<DecapConfig>()).then(|| unsafe {
            std::ptr::copy_nonoverlapping(
                v.as_ptr(),
                (&mut c as *mut DecapConfig).cast::<u8>(),
                v.len(),
            );
            c
        })
    });
    Observed {
        missing: pins::decap::ALL
            .into_iter()
            .filter(|p| !dev_pins.join(p).exists())
            .collect(),
        defunct: match link::state(&dev_pins.join("link"), dev, ifindex(dev).ok()) {
            LinkState::Attached => None,
            LinkState::Defunct(why) => Some(why),
        },
        config,
        local: map("local").map(|m| addrs::contents(&m)),
        remote: map("remote").map(|m| addrs::contents(&m)),
    }
}

/// The steps that change a live decapsulator through its maps. New
/// addresses go in before the configuration changes and old ones leave
/// after it, so a wanted address is never missing in between. Each step
/// is idempotent: recovery may apply them again.
fn reconfigure_steps(
    dev_pins: &Path,
    config: &DecapConfig,
    locals: &[IpNet],
    remotes: &[IpNet],
) -> Result<Vec<Step>> {
    let present = |name: &str| -> Result<Vec<IpNet>> {
        let p = dev_pins.join(name);
        let m = MapHandle::from_pinned_path(&p).map_err(|_| StateError::MissingPin(p))?;
        Ok(addrs::contents(&m))
    };
    let (local_now, remote_now) = (present("local")?, present("remote")?);
    plan_reconfigure(
        dev_pins,
        config,
        [
            (dev_pins.join("local"), locals, local_now.as_slice()),
            (dev_pins.join("remote"), remotes, remote_now.as_slice()),
        ],
    )
}

/// [`reconfigure_steps`] for tries (pin, wanted, present now).
fn plan_reconfigure(
    dev_pins: &Path,
    config: &DecapConfig,
    tries: [(std::path::PathBuf, &[IpNet], &[IpNet]); 2],
) -> Result<Vec<Step>> {
    // Old and new addresses are in a trie together for a moment: refused
    // here when they do not fit, as a step failing on every retry would
    // keep the intent from ever finishing.
    for (pin, want, now) in &tries {
        let both = now.iter().filter(|n| !want.contains(n)).count() + want.len();
        if both > lwtkit_common::encap::MAX_DECAP_ADDRS as usize {
            return Err(Error::Invalid(format!(
                "reconfiguring the decapsulator needs its old and new addresses in {} at once ({both}, more than {}); `lwt decap del` it first",
                pin.display(),
                lwtkit_common::encap::MAX_DECAP_ADDRS
            )));
        }
    }
    let mut steps = Vec::new();
    for (pin, want, _) in &tries {
        steps.extend(want.iter().map(|n| Step::MapPut {
            pin: pin.clone(),
            key: ns::intent::hex(&addrs::key_of(n)),
            value: ns::intent::hex(&[1]),
        }));
    }
    steps.push(Step::MapPut {
        pin: dev_pins.join("config"),
        key: ns::intent::hex(&0u32.to_ne_bytes()),
        value: ns::intent::hex(config_bytes(config)),
    });
    for (pin, want, now) in &tries {
        steps.extend(
            now.iter()
                .filter(|n| !want.contains(n))
                .map(|n| Step::MapDelete {
                    pin: pin.clone(),
                    key: ns::intent::hex(&addrs::key_of(n)),
                }),
        );
    }
    Ok(steps)
}

/// Loads a fresh decapsulator, fills its maps, attaches it to `index` and
/// pins everything under `at`.
fn attach_new(
    dev: &str,
    index: u32,
    at: &Path,
    config: &DecapConfig,
    locals: &[IpNet],
    remotes: &[IpNet],
) -> Result<()> {
    let b = builtin::find("decap")
        .ok_or_else(|| LoadError::UnknownBuiltin("decap".into(), builtin::names()))?;
    let bytes = b.object().to_vec();
    let log = LibbpfLog::capture();
    let loaded = ObjectBuilder::default()
        .open_memory(&bytes)
        .and_then(|o| o.load());
    let messages = log.finish();
    let mut obj = loaded.map_err(|e| LoadError::Failed {
        program: "lwtkit decap".into(),
        reason: format!("{e}: {}", last_line(&messages)),
    })?;
    store::ensure_dir(at)?;
    for mut m in obj.maps_mut() {
        let Some(name) = pins::of_map(pins::decap::MAPS, &m.name().to_string_lossy()) else {
            continue;
        };
        let pin = at.join(name);
        let filled = match name {
            CONFIG => m.update(&0u32.to_ne_bytes(), config_bytes(config), MapFlags::ANY),
            LOCAL => addrs::insert_all(&m, locals),
            REMOTE => addrs::insert_all(&m, remotes),
            _ => Ok(()),
        };
        filled.map_err(|e| err(&pin, e))?;
        m.pin(&pin).map_err(|e| err(&pin, e))?;
    }
    let prog = obj
        .progs()
        .find(|p| p.name() == "decap_ingress")
        .ok_or_else(|| err(at, "no decap program"))?;
    link::attach_pinned(&prog, index, &at.join(LINK)).map_err(|e| err(at, format!("{dev}: {e}")))
}

/// `lwt decap del`: detaches the decapsulator from `dev` (attached or defunct).
pub fn del(dev: &str) -> Result<()> {
    system::require_attach_privileges("lwt decap del")?;
    let ns = Namespace::open()?;
    let txn = ns.begin("lwt decap del")?;
    del_in(&txn, dev)
}

/// [`del`] inside a transaction the caller holds.
pub fn del_in(txn: &Txn, dev: &str) -> Result<()> {
    if txn.get::<DecapRecord>(dev)?.is_none() {
        return Err(DecapError::NotDecapsulating(dev.into()).into());
    }
    // The pinned link is the only reference: removing it detaches.
    let pins = txn.pin_root().join(pins::decap::DIR);
    let dev_pins = pins.join(dev);
    let mut intent = Intent::new(
        "lwt decap del",
        Probe::Unpinned {
            path: dev_pins.join(LINK),
        },
    );
    intent.done = vec![
        txn.remove_step::<DecapRecord>(dev),
        Step::RemoveTree {
            path: dev_pins.clone(),
        },
        Step::RemoveTree {
            path: pins.join(format!("{dev}:next")),
        },
    ];
    let pending = txn.intend(intent)?;
    if let Err(e) = store::remove_file(&dev_pins.join(LINK)) {
        txn.finish(pending, Outcome::Undone)?;
        return Err(e);
    }
    failpoint("decap-del:link");
    txn.finish(pending, Outcome::Done)
}

/// `lwt decap list`: devices with their state, addresses and counters.
pub fn list() -> Result<Vec<DecapRecord>> {
    // lwtkit's records and pins are root's: say so, not "nothing here".
    system::require_attach_privileges("lwt decap list")?;
    let ns = Namespace::open_readonly()?;
    let pins = ns.pin_root().join(pins::decap::DIR);
    let mut out: Vec<DecapRecord> = ns.all()?;
    for r in &mut out {
        let dev_pins = pins.join(&r.dev);
        match link::state(&dev_pins.join(LINK), &r.dev, ifindex(&r.dev).ok()) {
            LinkState::Attached => (r.state, r.note) = (DecapState::Attached, None),
            LinkState::Defunct(why) => (r.state, r.note) = (DecapState::Defunct, Some(why)),
        }
        if let Ok(m) = MapHandle::from_pinned_path(dev_pins.join(LOCAL)) {
            r.accepting = addrs::contents(&m);
        }
        if let Ok(c) = read_counters(&dev_pins.join(STATS)) {
            let n = |slot: u32| c.get(slot as usize).copied().unwrap_or_default();
            (r.packets, r.bytes) = (n(decap_stat::TAKEN).packets, n(decap_stat::TAKEN).bytes);
            r.refused = n(decap_stat::REFUSED).packets;
            r.passed = DecapPassed {
                not_tunnel: n(decap_stat::NOT_TUNNEL).packets,
                not_local: n(decap_stat::NOT_LOCAL).packets,
                not_remote: n(decap_stat::NOT_REMOTE).packets,
                gre_key: n(decap_stat::GRE_KEY).packets,
                inner: n(decap_stat::INNER).packets,
                gue_control: n(decap_stat::GUE_CONTROL).packets,
                fragments: n(decap_stat::FRAGMENT).packets,
                unsupported: n(decap_stat::UNSUPPORTED).packets,
                malformed: n(decap_stat::MALFORMED).packets,
            };
        }
    }
    out.sort_by(|a, b| a.dev.cmp(&b.dev));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: impl FnOnce(&mut DecapArgs)) -> DecapArgs {
        let mut a = DecapArgs {
            dev: "vb".into(),
            kinds: vec!["gre".into(), "fou".into(), "gue".into()],
            fou_port: Some(5555),
            gue_port: Some(6080),
            ..Default::default()
        };
        extra(&mut a);
        a
    }

    fn refused(a: DecapArgs) -> String {
        record(&a).expect_err("must be refused").to_string()
    }

    #[test]
    fn flags_are_range_checked_and_named() {
        assert!(record(&args(|_| {})).is_ok());
        for (bad, needle) in [
            (
                args(|a| a.fou_port = Some(0)),
                "--fou-port 0 is out of range",
            ),
            (
                args(|a| a.fou_port = Some(65536)),
                "--fou-port 65536 is out of range",
            ),
            (
                args(|a| a.gue_port = Some(0)),
                "--gue-port 0 is out of range",
            ),
            (args(|a| a.gue_port = Some(5555)), "both 5555"),
            (
                args(|a| a.key = Some(1 << 32)),
                "--key 4294967296 does not fit in 32 bits",
            ),
            (
                args(|a| a.local = vec!["224.0.0.1".into()]),
                "--local `224.0.0.1`: a multicast",
            ),
            (
                args(|a| a.remote = vec!["::".into()]),
                "--remote `::`: the unspecified",
            ),
            (args(|a| a.fou_port = None), "needs --fou-port"),
        ] {
            let e = refused(bad);
            assert!(e.contains(needle), "expected `{needle}` in: {e}");
        }
        let e = refused(args(|a| {
            a.kinds = vec!["ipip".into()];
            a.key = Some(7);
        }));
        assert!(e.contains("--key is a GRE key"), "{e}");
        assert_eq!(
            record(&args(|a| a.key = Some(u64::from(u32::MAX))))
                .expect("max key")
                .key,
            Some(u32::MAX)
        );
    }

    #[test]
    fn each_ip_in_ip_name_is_its_own_kind() {
        let bits = |n: &[&str]| parse_kinds(&n.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(bits(&["ipip"]).expect("ipip"), kinds::IPIP);
        assert_eq!(bits(&["sit"]).expect("sit"), kinds::SIT);
        assert_ne!(bits(&["ip6ip6"]).expect("a"), bits(&["ip4in6"]).expect("b"));
        assert!(bits(&["vxlan"]).is_err());
    }

    #[test]
    fn a_reconfiguration_adds_addresses_then_configures_then_removes() {
        let net = |s: &str| s.parse::<IpNet>().expect("net");
        let (a, b, c) = (net("10.0.0.1/32"), net("10.0.0.2/32"), net("10.0.0.3/32"));
        let config = DecapConfig::default();
        let dir = Path::new("/p/decap/vb");
        let steps = plan_reconfigure(
            dir,
            &config,
            [
                (dir.join("local"), &[b, c], &[a, b]),
                (dir.join("remote"), &[], &[c]),
            ],
        )
        .expect("steps");
        let what: Vec<(&str, String)> = steps
            .iter()
            .map(|s| match s {
                Step::MapPut { pin, key, .. } => ("put", format!("{} {key}", pin.display())),
                Step::MapDelete { pin, key } => ("del", format!("{} {key}", pin.display())),
                other => panic!("unexpected step {other:?}"),
            })
            .collect();
        let key = |n: &IpNet| ns::intent::hex(&addrs::key_of(n));
        assert_eq!(
            what,
            [
                ("put", format!("/p/decap/vb/local {}", key(&b))),
                ("put", format!("/p/decap/vb/local {}", key(&c))),
                (
                    "put",
                    format!("/p/decap/vb/config {}", ns::intent::hex(&[0; 4]))
                ),
                ("del", format!("/p/decap/vb/local {}", key(&a))),
                ("del", format!("/p/decap/vb/remote {}", key(&c))),
            ]
        );
        // Old and new together must fit the trie, or nothing starts.
        let many: Vec<IpNet> = (0..=lwtkit_common::encap::MAX_DECAP_ADDRS)
            .map(|i| net(&format!("10.{}.{}.{}/32", i >> 16, (i >> 8) & 255, i & 255)))
            .collect();
        let (old, new) = many.split_at(2);
        let e = plan_reconfigure(
            dir,
            &config,
            [
                (dir.join("local"), new, old),
                (dir.join("remote"), &[], &[]),
            ],
        )
        .expect_err("too many at once");
        assert!(e.to_string().contains("decap del"), "{e}");
    }

    #[test]
    fn old_records_still_read() {
        let old = r#"{"dev":"vb","kinds":["gre"],"fou_port":null,"gue_port":null,"packets":0,"bytes":0,"refused":0}"#;
        let r: DecapRecord = serde_json::from_str(old).expect("old record");
        assert_eq!(
            (r.key, r.local.len(), r.state),
            (None, 0, DecapState::Attached)
        );
    }
}
