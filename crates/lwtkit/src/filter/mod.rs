//! Filter policies: named rule sets held in maps, compiled into a decision
//! tree, attached to any route and hook, changed live.
pub mod bench_families;
pub mod bench_rules;
pub mod compile;
pub mod handling;
pub mod image;
pub use bench_rules::bench_rules;
pub mod manage;
pub mod model;
pub mod nat;
pub mod patch;
pub mod rule;
pub mod rules_file;
pub mod spec;
pub mod store;
pub mod testrun;

use std::path::PathBuf;

use ipnet::IpNet;

pub use self::{compile::CompileError, rule::RuleError};
use crate::hook::Hook;

/// What `lwt filter` refuses, and why a rule set does not fit its policy.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("invalid policy name `{0}`: use 1-64 letters, digits, `-` or `_`")]
    InvalidName(String),
    #[error("unknown policy `{0}` (create it with `lwt filter create {0}`)")]
    UnknownPolicy(String),
    #[error("policy `{0}` already exists")]
    Exists(String),
    #[error("rule: {0}")]
    Rule(RuleError),
    /// What `lwt nat` refuses (the sentence names the mapping or route).
    #[error("nat: {0}")]
    Nat(String),
    /// A rules file that could not be read or parsed.
    #[error("rules file {path}: {reason}")]
    RulesFile { path: PathBuf, reason: String },
    #[error("policy `{policy}`: {reason}")]
    Compile {
        policy: String,
        reason: CompileError,
    },
    #[error("policy `{policy}`: the compiled rule set needs {needs} cells, more than a policy holds ({holds})")]
    TooBig {
        policy: String,
        needs: usize,
        holds: u32,
    },
    #[error("policy `{policy}` is full ({capacity} rules, the most a policy holds)")]
    Full { policy: String, capacity: u32 },
    #[error("{rules} rules do not fit policy `{policy}` (a policy holds at most {capacity})")]
    TooManyRules {
        policy: String,
        rules: usize,
        capacity: u32,
    },
    #[error(
        "policy `{0}` has used every rule id; recreate it (`filter replace` into a new policy)"
    )]
    IdsExhausted(String),
    #[error("policy `{policy}` has too few rule ids left for {rules} rules; replace them into a new policy")]
    TooFewIds { policy: String, rules: usize },
    #[error("policy `{policy}` has no rule {id}")]
    NoRule { policy: String, id: u32 },
    /// Delete refused: the policy still runs on `routes` route(s), e.g. on `hook` of `dst`.
    #[error("policy `{policy}` is attached to {routes} route(s), e.g. {dst} hook {hook}; detach it first (`lwt filter detach {policy} {dst}`)")]
    InUse {
        policy: String,
        routes: usize,
        dst: IpNet,
        hook: Hook,
    },
    /// A rule's action that the hook cannot carry out.
    #[error("policy `{policy}` {rule} (`{text}`) cannot run on hook {hook}: `{action}` needs hook {needs}; nothing changed")]
    ActionHook {
        policy: String,
        /// `rule N`, or `the new rule`.
        rule: String,
        text: String,
        hook: Hook,
        action: &'static str,
        needs: String,
    },
    #[error("redirect {dev}: {reason}")]
    Redirect { dev: String, reason: String },
    #[error("policy `{policy}` is not attached to {dst} table {table}")]
    NotAttached {
        policy: String,
        dst: IpNet,
        table: String,
    },
}
