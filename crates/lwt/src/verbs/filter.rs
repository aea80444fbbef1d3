//! `lwt filter ...`: policies, rules, attachments.
use lwtkit::{
    attach::parse_prefix,
    filter::{
        handling::{Fragments, Handling, Malformed},
        manage::{self, PolicyView},
        rule::{Rule, RuleSpec, Verdict},
        FilterError,
    },
    Error,
};

use super::Output;
use crate::args::{FilterVerb, FragmentsArg, MalformedArg, RuleVerb, VerdictArg};

/// A rule added or deleted, as `-j` prints it: its policy, its fields as
/// `filter show` has them, and its text.
#[derive(serde::Serialize)]
struct RuleOut<'a> {
    policy: &'a str,
    #[serde(flatten)]
    rule: &'a Rule,
    text: String,
}

impl<'a> RuleOut<'a> {
    fn of(policy: &'a str, rule: &'a Rule) -> Self {
        Self {
            policy,
            rule,
            text: rule.spec.to_string(),
        }
    }
}

impl From<VerdictArg> for Verdict {
    fn from(a: VerdictArg) -> Self {
        match a {
            VerdictArg::Allow => Verdict::Allow,
            VerdictArg::Drop => Verdict::Drop,
        }
    }
}

impl From<FragmentsArg> for Fragments {
    fn from(a: FragmentsArg) -> Self {
        match a {
            FragmentsArg::Pass => Fragments::Pass,
            FragmentsArg::Drop => Fragments::Drop,
        }
    }
}

impl From<MalformedArg> for Malformed {
    fn from(a: MalformedArg) -> Self {
        match a {
            MalformedArg::Drop => Malformed::Drop,
            MalformedArg::Default => Malformed::Default,
        }
    }
}

pub fn run(v: FilterVerb, out: &Output) -> anyhow::Result<()> {
    match v {
        FilterVerb::Create {
            name,
            default,
            capacity,
            fragments,
            malformed,
        } => {
            let handling = Handling {
                default: default.into(),
                fragments: fragments.into(),
                malformed: malformed.into(),
            };
            let p = manage::create_with(&name, handling, capacity)?;
            let shown = serde_json::json!({
                "policy": p.name,
                "id": p.id,
                "default": p.default,
                "capacity": p.capacity,
                "fragments": p.fragments,
                "malformed": p.malformed,
            });
            out.emit(&shown, |_| {
                format!(
                    "created policy {} (default {}, capacity {} rules, fragments {}, malformed {})",
                    p.name,
                    p.default.as_str(),
                    p.capacity,
                    p.fragments,
                    p.malformed
                )
            })
        }
        FilterVerb::Set {
            name,
            default,
            fragments,
            malformed,
        } => {
            let p = manage::set(
                &name,
                default.map(Into::into),
                fragments.map(Into::into),
                malformed.map(Into::into),
            )?;
            out.emit(
                &serde_json::json!({ "policy": p.name, "default": p.default, "fragments": p.fragments, "malformed": p.malformed }),
                |_| {
                    format!(
                        "policy {}: default {}, fragments {}, malformed {}",
                        p.name, p.default.as_str(), p.fragments, p.malformed
                    )
                },
            )
        }
        FilterVerb::Delete { name } => {
            manage::delete(&name)?;
            out.emit(
                &serde_json::json!({ "policy": name, "deleted": true }),
                |_| format!("deleted policy {name}"),
            )
        }
        FilterVerb::Rule(RuleVerb::Add { name, words }) => {
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            let spec = RuleSpec::parse(&words).map_err(|e| Error::Filter(FilterError::Rule(e)))?;
            let rule = manage::add_rule(&name, spec)?;
            out.emit(&RuleOut::of(&name, &rule), |r| {
                format!("added rule {} to {name}: {}", r.rule.id, r.text)
            })
        }
        FilterVerb::Rule(RuleVerb::Del { name, id }) => {
            let rule = manage::del_rule(&name, id)?;
            out.emit(&RuleOut::of(&name, &rule), |r| {
                format!("deleted rule {} from {name}: {}", r.rule.id, r.text)
            })
        }
        FilterVerb::Replace {
            name,
            file,
            allow_empty,
        } => {
            let p = manage::replace_from_file(&name, &file, allow_empty)?;
            out.emit(
                &serde_json::json!({ "policy": p.name, "rules": p.rules.len() }),
                |_| format!("replaced the rules of {}: {} rules", p.name, p.rules.len()),
            )
        }
        FilterVerb::Show { name } => {
            let view = manage::show(&name)?;
            out.emit(&view, render)
        }
        FilterVerb::List => {
            let views = manage::list()?;
            out.emit(&views, |vs| {
                vs.iter().map(render).collect::<Vec<_>>().join("\n")
            })
        }
        FilterVerb::Attach {
            name,
            prefix,
            dev,
            hook,
            table,
            local,
            force,
        } => {
            let done = manage::attach_policy(
                &name,
                parse_prefix(&prefix)?,
                &dev,
                hook.into(),
                super::table(table.as_deref())?,
                local,
                force,
            )?;
            out.emit(&done, |d| {
                format!(
                    "attached policy {name} to {} hook {} (prog id {})",
                    d.route, d.hook, d.id
                )
            })
        }
        FilterVerb::Detach {
            name,
            prefix,
            table,
            local,
        } => {
            let done = manage::detach_policy(
                &name,
                parse_prefix(&prefix)?,
                super::table(table.as_deref())?,
                local,
            )?;
            out.emit(&done, |ds| {
                ds.iter()
                    .map(|d| {
                        format!(
                            "detached policy {name} from {} hook {}; route {}",
                            d.route,
                            d.hooks
                                .iter()
                                .map(|h| h.as_str())
                                .collect::<Vec<_>>()
                                .join(","),
                            d.route_now
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
    }
}

fn render(v: &PolicyView) -> String {
    let mut s = format!(
        "policy {} (id {}, default {}, capacity {}, maps {} bytes, fragments {}, malformed {})\n",
        v.name,
        v.id,
        v.default.as_str(),
        v.capacity,
        v.map_bytes,
        v.fragments,
        v.malformed
    );
    if v.rules.is_empty() {
        s.push_str("  no rules\n");
    }
    for r in &v.rules {
        s.push_str(&format!(
            "  {:>5}  prio {:<6} {:<60} packets {} bytes {}{}\n",
            r.rule.id,
            r.rule.spec.priority,
            r.text,
            r.counters.packets,
            r.counters.bytes,
            if r.rule.spec.log {
                format!(
                    " logged {} suppressed {}",
                    r.counters.logged, r.counters.suppressed
                )
            } else {
                String::new()
            }
        ));
        if let Some(a) = &r.action_counters {
            s.push_str(&format!(
                "  {:>5}  {:<67} {} {} failed {}{}\n",
                "",
                "",
                a.done_as,
                a.counters.done,
                a.counters.failed,
                if a.done_as == "rerouted" {
                    format!(" loops {}", a.counters.loops)
                } else {
                    String::new()
                }
            ));
        }
    }
    s.push_str(&format!(
        "  {:>5}  default {:<58} packets {} bytes {}\n",
        "-",
        v.default.as_str(),
        v.unmatched.packets,
        v.unmatched.bytes
    ));
    s.push_str(&format!(
        "  {:>5}  malformed {:<56} packets {}\n",
        "-",
        match v.malformed {
            Malformed::Drop => "drop (and evasive fragments)",
            Malformed::Default => "default (evasive fragments: drop)",
        },
        v.malformed_packets
    ));
    for a in &v.attachments {
        s.push_str(&format!(
            "  attached: {} table {} dev {} hook {}\n",
            a.dst, a.table, a.dev, a.hook
        ));
    }
    s.push_str(&format!("  program: {}\n", v.program));
    if let Some(note) = &v.note {
        s.push_str(&format!("  note: {note}\n"));
    }
    s
}
