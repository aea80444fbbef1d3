//! What a policy does with packets its rules cannot judge: non-first
//! fragments (`--fragments`) and malformed packets (`--malformed`).
use std::fmt;

use serde::{Deserialize, Serialize};

use super::rule::Verdict;

/// Non-first fragments carry no L4 header, so no rule can judge them; their
/// datagram is judged by its first fragment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fragments {
    /// Let them through: without the first fragment they reassemble into
    /// nothing, so fragmented traffic the rules allow keeps working.
    #[default]
    Pass,
    /// Drop them: no fragmented datagram gets through.
    Drop,
}

/// Packets the filter cannot parse to the fields the rules read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Malformed {
    /// Drop them, whatever the default verdict.
    #[default]
    Drop,
    /// Give them the policy's default verdict.
    Default,
}

impl Fragments {
    pub fn as_str(self) -> &'static str {
        match self {
            Fragments::Pass => "pass",
            Fragments::Drop => "drop",
        }
    }
}

impl Malformed {
    pub fn as_str(self) -> &'static str {
        match self {
            Malformed::Drop => "drop",
            Malformed::Default => "default",
        }
    }
}

impl fmt::Display for Fragments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything besides the rules that decides a packet's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handling {
    /// For packets no rule matches.
    pub default: Verdict,
    pub fragments: Fragments,
    pub malformed: Malformed,
}

impl Handling {
    /// `default` for unmatched packets, and the documented defaults for
    /// fragments (pass) and malformed packets (drop).
    pub fn new(default: Verdict) -> Self {
        Self {
            default,
            fragments: Fragments::default(),
            malformed: Malformed::default(),
        }
    }
}
