//! The config file as written: one TOML section per kind, each entry in
//! the words of its CLI verb. Unknown keys are errors that name the key
//! and the entry.
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::{
    filter::{
        handling::{Fragments, Malformed},
        rule::Verdict,
    },
    hook::Hook,
};

fn is_false(b: &bool) -> bool {
    !*b
}

/// A whole config file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// `lwt attach`: programs on route hooks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attach: Vec<AttachEntry>,
    /// `lwt filter`: policies, their rules and where they are attached.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filter: Vec<FilterEntry>,
    /// `lwt encap add`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tunnel: Vec<TunnelEntry>,
    /// `lwt decap add`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decap: Vec<DecapEntry>,
    /// `lwt seg6local add`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sid: Vec<SidEntry>,
}

/// `lwt attach ROUTE --dev DEV --hook HOOK (--builtin | --obj | --pinned)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachEntry {
    pub route: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub local: bool,
    /// `--force`: a local route outside table local.
    #[serde(default, skip_serializing_if = "is_false")]
    pub force: bool,
    pub dev: String,
    pub hook: Hook,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub obj: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
    /// `lwt_in`, `lwt_out` or `lwt_xmit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prog_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headroom: Option<u32>,
    /// Gateway of a route lwtkit creates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

/// `lwt filter create NAME` with its rules and attachments.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterEntry {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Verdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fragments: Option<Fragments>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub malformed: Option<Malformed>,
    /// Rules to make room for when the policy is created (a hint: the
    /// policy grows as rules arrive; not compared afterwards).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u32>,
    /// Rules in the rule language, highest precedence as the language says.
    #[serde(default)]
    pub rules: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attach: Vec<FilterAttach>,
}

/// `lwt filter attach NAME ROUTE --dev DEV --hook HOOK`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterAttach {
    pub route: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub local: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub force: bool,
    pub dev: String,
    pub hook: Hook,
}

/// `lwt encap add ROUTE --dev DEV --type TYPE ...`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelEntry {
    pub route: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    pub dev: String,
    /// `xmit` (default) or `in`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook: Option<Hook>,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// Outer source (default: the device's address of the remote's family).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inner_dst_mac: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u8>,
    /// `inherit` (default) or 0-255.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tos: Option<String>,
    /// `inherit`, `set` or `unset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub df: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub udp6_zero_csum: bool,
}

/// `lwt decap add --dev DEV --type TYPE,...`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecapEntry {
    pub dev: String,
    #[serde(rename = "type")]
    pub kinds: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fou_port: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gue_port: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub local: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote: Vec<String>,
}

/// `lwt seg6local add SID --dev DEV (--builtin | --obj)`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SidEntry {
    pub sid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    pub dev: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub obj: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section: Option<String>,
    /// `lwt_seg6local`: load the object's program as one whatever its section.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prog_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dt6_table: Option<String>,
}

impl ConfigFile {
    /// Parses the text of a config file; an error names the line, the
    /// entry (`[[attach]] #2`) and what is wrong there.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            ConfigError::Syntax {
                line: text[..offset.min(text.len())].matches('\n').count() + 1,
                entry: entry_at(text, offset),
                reason: e.message().trim().to_string(),
            }
        })
    }

    /// The file as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }
}

/// The `[[kind]] #n` entry that the byte `offset` of `text` is in.
fn entry_at(text: &str, offset: usize) -> Option<String> {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    let mut current = None;
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        if at > offset {
            break;
        }
        let t = line.trim();
        if let Some(kind) = t.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            let kind = kind.trim().to_string();
            let n = counts.entry(kind.clone()).or_default();
            *n += 1;
            current = Some(format!("[[{kind}]] #{n}"));
        } else if t.starts_with('[') {
            current = Some(t.to_string());
        }
        at += line.len();
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses_in_the_words_of_its_verb() {
        let text = r#"
[[attach]]
route = "10.0.0.3/32"
dev = "v0"
hook = "out"
builtin = "count"

[[filter]]
name = "web"
default = "allow"
rules = ["dst 10.0.0.3/32 proto tcp dport 8080 drop log"]
attach = [{ route = "10.0.0.3/32", dev = "v0", hook = "xmit" }]

[[tunnel]]
route = "10.1.0.0/24"
dev = "v0"
type = "fou"
remote = "10.0.0.3"
port = 5555

[[decap]]
dev = "v0"
type = ["ipip", "gre"]

[[sid]]
sid = "fc00::b"
dev = "v0"
builtin = "end"
"#;
        let f = ConfigFile::parse(text).expect("parses");
        assert_eq!(f.attach[0].hook, Hook::Out);
        assert_eq!(f.filter[0].attach[0].hook, Hook::Xmit);
        assert_eq!(f.tunnel[0].kind, "fou");
        assert_eq!(f.decap[0].kinds, ["ipip", "gre"]);
        assert_eq!(f.sid[0].builtin.as_deref(), Some("end"));
        let again = ConfigFile::parse(&f.to_toml()).expect("its own output parses");
        assert_eq!(again, f);
    }

    #[test]
    fn the_example_in_docs_config_md_parses() {
        let doc = include_str!("../../../../docs/config.md");
        let example = doc
            .split("```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("docs/config.md has a TOML example");
        let f = ConfigFile::parse(example).expect("the documented example parses");
        assert_eq!(
            (
                f.attach.len(),
                f.filter.len(),
                f.tunnel.len(),
                f.decap.len(),
                f.sid.len()
            ),
            (4, 1, 1, 1, 1)
        );
        assert_eq!(f.filter[0].attach.len(), 2);
    }

    #[test]
    fn an_unknown_key_is_named_with_its_entry_and_line() {
        let text = "[[attach]]\nroute = \"10.0.0.3/32\"\ndev = \"v0\"\nhook = \"out\"\nbuiltin = \"count\"\n\n[[attach]]\nroute = \"10.0.0.4/32\"\ndev = \"v0\"\nhook = \"out\"\nbuiltin = \"count\"\nheadrom = 4\n";
        let e = ConfigFile::parse(text).expect_err("headrom is no key");
        let s = e.to_string();
        assert!(s.contains("`headrom`"), "{s}");
        assert!(s.contains("[[attach]] #2"), "{s}");
        assert!(s.contains("line 12"), "{s}");
        let e = ConfigFile::parse("[[tunel]]\nroute = \"x\"\n").expect_err("no such kind");
        assert!(e.to_string().contains("`tunel`"), "{e}");
    }
}
