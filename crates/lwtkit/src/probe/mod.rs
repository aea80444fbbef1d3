//! `lwt hooks`: what the running kernel lets a program do on each LWT hook,
//! probed rather than remembered. For `lwt_in`, `lwt_out`, `lwt_xmit` and
//! `lwt_seg6local`: every helper of `enum bpf_func_id` (one load per
//! helper, as libbpf's `libbpf_probe_bpf_helper` does), the `__sk_buff`
//! fields it may read and write, direct packet access, and what each
//! return code does there (from the kernel source).
//!
//! Probing only loads tiny programs and closes them: nothing is attached
//! or run, nothing is kept.
pub mod context;
pub mod helpers;
pub mod insn;
pub mod markdown;
pub mod returns;

use std::{fmt, str::FromStr};

use libbpf_rs::{libbpf_sys, ProgramType};
use serde::{ser::SerializeMap, Serialize, Serializer};

pub use context::{Context, FieldAccess};
pub use returns::ReturnCode;

/// Why the kernel could not be probed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("probing what the hooks may do loads BPF programs, which needs CAP_BPF (or CAP_SYS_ADMIN): run it as root")]
    Privileges,
    #[error("probing {what} failed: {reason}")]
    Kernel {
        what: String,
        reason: std::io::Error,
    },
    #[error("unknown hook `{0}`: one of in, out, xmit, seg6local (or lwt_in, lwt_out, lwt_xmit, lwt_seg6local)")]
    UnknownHook(String),
}

impl ProbeError {
    fn from_load(e: std::io::Error) -> Self {
        if e.raw_os_error() == Some(libc::EPERM) {
            ProbeError::Privileges
        } else {
            ProbeError::Kernel {
                what: "a program load".into(),
                reason: e,
            }
        }
    }
}

/// An LWT program type: the three route hooks and seg6local `End.BPF`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProgType {
    LwtIn,
    LwtOut,
    LwtXmit,
    LwtSeg6local,
}

impl ProgType {
    pub const ALL: [ProgType; 4] = [
        ProgType::LwtIn,
        ProgType::LwtOut,
        ProgType::LwtXmit,
        ProgType::LwtSeg6local,
    ];

    /// `lwt_in`, ...: the key of `lwt hooks -j` and the libbpf section name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProgType::LwtIn => "lwt_in",
            ProgType::LwtOut => "lwt_out",
            ProgType::LwtXmit => "lwt_xmit",
            ProgType::LwtSeg6local => "lwt_seg6local",
        }
    }

    pub fn program_type(self) -> ProgramType {
        match self {
            ProgType::LwtIn => ProgramType::LwtIn,
            ProgType::LwtOut => ProgramType::LwtOut,
            ProgType::LwtXmit => ProgramType::LwtXmit,
            ProgType::LwtSeg6local => ProgramType::LwtSeg6local,
        }
    }
}

impl fmt::Display for ProgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProgType {
    type Err = ProbeError;
    /// `xmit` or `lwt_xmit`, `seg6local` or `lwt_seg6local`, ...
    fn from_str(s: &str) -> Result<Self, ProbeError> {
        let bare = s.strip_prefix("lwt_").unwrap_or(s);
        Self::ALL
            .into_iter()
            .find(|t| &t.as_str()[4..] == bare)
            .ok_or_else(|| ProbeError::UnknownHook(s.into()))
    }
}

/// What one program type may do on this kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HookCapabilities {
    /// Whether this kernel knows the program type at all (`lwt_seg6local`
    /// needs CONFIG_IPV6_SEG6_BPF); when not, nothing is allowed.
    pub supported: bool,
    /// Helper name (bpf-helpers(7)) -> whether this type may call it, in
    /// helper id order.
    #[serde(serialize_with = "ordered_map")]
    pub helpers: Vec<(String, bool)>,
    pub context: Context,
    /// `BPF_OK`, `BPF_DROP`, `BPF_REDIRECT`, `BPF_LWT_REROUTE`, `other`.
    #[serde(serialize_with = "return_codes")]
    pub return_codes: Vec<ReturnCode>,
}

impl HookCapabilities {
    /// Whether the helper named `name` (`bpf_redirect`) may be called;
    /// `None` for a name that is not a helper.
    pub fn helper(&self, name: &str) -> Option<bool> {
        self.helpers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
    }

    pub fn allowed_helpers(&self) -> impl Iterator<Item = &str> {
        self.helpers
            .iter()
            .filter(|(_, a)| *a)
            .map(|(n, _)| n.as_str())
    }
}

/// The probe of several program types, in the order asked for; serializes
/// as an object keyed by `lwt_in`, `lwt_out`, ...
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hooks(pub Vec<(ProgType, HookCapabilities)>);

impl Hooks {
    pub fn get(&self, ty: ProgType) -> Option<&HookCapabilities> {
        self.0.iter().find(|(t, _)| *t == ty).map(|(_, c)| c)
    }
}

impl Serialize for Hooks {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (t, c) in &self.0 {
            m.serialize_entry(t.as_str(), c)?;
        }
        m.end()
    }
}

/// Probes `types` on the running kernel.
pub fn probe(types: &[ProgType]) -> Result<Hooks, ProbeError> {
    // Without the privilege libbpf's probes answer "no" rather than fail.
    if !crate::system::may_load_bpf() {
        return Err(ProbeError::Privileges);
    }
    let mut out = Vec::with_capacity(types.len());
    for &ty in types {
        out.push((ty, probe_one(ty)?));
    }
    Ok(Hooks(out))
}

fn probe_one(ty: ProgType) -> Result<HookCapabilities, ProbeError> {
    let pt = ty.program_type() as u32;
    // SAFETY: plain calls into libbpf with no options.
    let known = unsafe { libbpf_sys::libbpf_probe_bpf_prog_type(pt, std::ptr::null()) };
    match known {
        1 => {}
        0 => return Ok(unsupported(ty)),
        e => return Err(libbpf_error(ty, e)),
    }
    let mut helpers = Vec::with_capacity(helpers::HELPERS.len());
    for &(name, id) in helpers::HELPERS {
        // SAFETY: as above; libbpf loads `call id; exit` and reads the log.
        let allowed = match unsafe { libbpf_sys::libbpf_probe_bpf_helper(pt, id, std::ptr::null()) }
        {
            1 => true,
            0 => false,
            e => return Err(libbpf_error(ty, e)),
        };
        helpers.push((name.to_string(), allowed));
    }
    Ok(HookCapabilities {
        supported: true,
        helpers,
        context: context::probe(pt)?,
        return_codes: returns::of(ty),
    })
}

/// A program type the kernel does not know: nothing allowed.
fn unsupported(ty: ProgType) -> HookCapabilities {
    let none = FieldAccess {
        read: false,
        write: false,
    };
    HookCapabilities {
        supported: false,
        helpers: helpers::HELPERS
            .iter()
            .map(|(n, _)| (n.to_string(), false))
            .collect(),
        context: Context {
            direct_packet_read: false,
            direct_packet_write: false,
            fields: context::SK_BUFF_FIELDS
                .iter()
                .map(|(n, _, _)| (n.to_string(), none))
                .collect(),
        },
        return_codes: returns::of(ty),
    }
}

/// A negative errno from libbpf's probes.
fn libbpf_error(ty: ProgType, rc: i32) -> ProbeError {
    if -rc == libc::EPERM {
        ProbeError::Privileges
    } else {
        ProbeError::Kernel {
            what: ty.to_string(),
            reason: std::io::Error::from_raw_os_error(-rc),
        }
    }
}

/// A list of (name, value) pairs as a JSON object, in list order.
pub(crate) fn ordered_map<S: Serializer, V: Serialize>(
    pairs: &[(String, V)],
    s: S,
) -> Result<S::Ok, S::Error> {
    let mut m = s.serialize_map(Some(pairs.len()))?;
    for (k, v) in pairs {
        m.serialize_entry(k, v)?;
    }
    m.end()
}

fn return_codes<S: Serializer>(codes: &[ReturnCode], s: S) -> Result<S::Ok, S::Error> {
    let mut m = s.serialize_map(Some(codes.len()))?;
    for c in codes {
        m.serialize_entry(c.name, c)?;
    }
    m.end()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helper_table_is_every_id_from_1_in_order() {
        for (i, (name, id)) in helpers::HELPERS.iter().enumerate() {
            assert_eq!(*id as usize, i + 1, "{name}");
            assert!(name.starts_with("bpf_"), "{name}");
        }
        assert!(helpers::HELPERS.contains(&("bpf_lwt_push_encap", 73)));
        assert!(helpers::HELPERS.contains(&("bpf_redirect", 23)));
    }

    #[test]
    fn hooks_parse_with_or_without_the_lwt_prefix() {
        assert_eq!("xmit".parse::<ProgType>().ok(), Some(ProgType::LwtXmit));
        assert_eq!(
            "lwt_seg6local".parse::<ProgType>().ok(),
            Some(ProgType::LwtSeg6local)
        );
        assert!("tc".parse::<ProgType>().is_err());
        assert!("lwt_".parse::<ProgType>().is_err());
    }

    #[test]
    fn every_hook_documents_the_four_codes_and_the_rest() {
        for t in ProgType::ALL {
            let names: Vec<_> = returns::of(t).iter().map(|c| c.name).collect();
            assert_eq!(
                names,
                [
                    "BPF_OK",
                    "BPF_DROP",
                    "BPF_REDIRECT",
                    "BPF_LWT_REROUTE",
                    "other"
                ]
            );
        }
    }
}
