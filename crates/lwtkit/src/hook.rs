//! The three LWT BPF hooks of a route and what each implies: netlink
//! attribute, program type, the section name libbpf gives it.
use std::{fmt, str::FromStr};

use libbpf_rs::ProgramType;
use lwtkit_common::maps::sections;
use serde::{Deserialize, Serialize};

/// A BPF hook of a lightweight-tunnel route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hook {
    /// `lwt_in`: input route lookup matched the route.
    In,
    /// `lwt_out`: locally generated packets, before neighbour resolution.
    Out,
    /// `lwt_xmit`: in `ip_finish_output2`, also for forwarded packets.
    Xmit,
}

impl Hook {
    pub const ALL: [Hook; 3] = [Hook::In, Hook::Out, Hook::Xmit];

    /// `LWT_BPF_IN` / `LWT_BPF_OUT` / `LWT_BPF_XMIT`.
    pub fn nla_kind(self) -> u16 {
        match self {
            Hook::In => 1,
            Hook::Out => 2,
            Hook::Xmit => 3,
        }
    }

    pub fn from_nla_kind(kind: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|h| h.nla_kind() == kind)
    }

    /// The program type the kernel requires on this hook.
    pub fn prog_type(self) -> ProgramType {
        match self {
            Hook::In => ProgramType::LwtIn,
            Hook::Out => ProgramType::LwtOut,
            Hook::Xmit => ProgramType::LwtXmit,
        }
    }

    pub fn from_prog_type(ty: ProgramType) -> Option<Self> {
        Self::ALL.into_iter().find(|h| h.prog_type() == ty)
    }

    /// Section name libbpf maps to this hook's program type.
    pub fn section(self) -> &'static str {
        match self {
            Hook::In => sections::LWT_IN,
            Hook::Out => sections::LWT_OUT,
            Hook::Xmit => sections::LWT_XMIT,
        }
    }

    pub fn from_section(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|h| h.section() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Hook::In => "in",
            Hook::Out => "out",
            Hook::Xmit => "xmit",
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Hook {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|h| h.as_str() == s)
            .ok_or_else(|| format!("unknown hook `{s}`: expected in, out or xmit"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_names_round_trip() {
        for h in Hook::ALL {
            assert_eq!(h.as_str().parse::<Hook>(), Ok(h));
            assert_eq!(Hook::from_section(h.section()), Some(h));
            assert_eq!(Hook::from_nla_kind(h.nla_kind()), Some(h));
            assert_eq!(Hook::from_prog_type(h.prog_type()), Some(h));
        }
        assert!("egress".parse::<Hook>().is_err());
    }
}
