//! `lwt`: eBPF programs on the lightweight-tunnel hooks of routes.
//! Thin: parse, enter the namespace, run one verb, render. The work lives
//! in the lwtkit library.
mod args;
mod verbs;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

fn main() -> ExitCode {
    // `-j` anywhere asks for JSON errors, even when the rest does not parse.
    let json = std::env::args()
        .skip(1)
        .any(|a| a == "--json" || (a.starts_with('-') && !a.starts_with("--") && a.contains('j')));
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version print as usual; usage errors exit 2 as clap's do.
        Err(e) if json && e.use_stderr() => {
            let text = e.render().to_string();
            let what = text.split("\n\nUsage:").next().unwrap_or_default();
            let what: Vec<&str> = what.split_whitespace().collect();
            print_error(what.join(" ").trim_start_matches("error: "), "usage");
            return ExitCode::from(2);
        }
        Err(e) => e.exit(),
    };
    // The agent is a service: its repairs are what it is for, so they show.
    init_logging(cli.global.verbose, matches!(cli.verb, args::Verb::Agent(_)));
    let json = cli.global.json;
    // `lwt diff` exits as diff(1) does: 1 for a difference, 2 for trouble.
    let failure = if matches!(cli.verb, args::Verb::Diff(_)) {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if json => {
            let kind = lwtkit::error::kind_of(e.chain()).unwrap_or("error");
            print_error(&format!("{e:#}"), kind);
            failure
        }
        Err(e) => {
            eprintln!("lwt: error: {e:#}");
            failure
        }
    }
}

/// An error as one JSON object on stderr.
fn print_error(message: &str, kind: &str) {
    let v = serde_json::json!({ "error": message, "kind": kind });
    eprintln!("{v}");
}

/// Warnings (what lwtkit cleaned up on its own) show by default; `-v`
/// shows each kernel change, `-vv` more; LWT_LOG overrides both.
fn init_logging(verbose: u8, service: bool) {
    let level = match verbose {
        0 if service => "warn,lwtkit=info,lwt=info",
        0 => "warn",
        1 => "warn,lwtkit=debug,lwt=debug",
        _ => "debug,lwtkit=trace,lwt=trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LWT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .without_time()
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

fn run(cli: args::Cli) -> anyhow::Result<()> {
    // The agent's metrics listen where lwt was started (the host, for
    // `-n`): one Prometheus scrapes each namespace's agent on its port.
    let metrics = match &cli.verb {
        args::Verb::Agent(a) => verbs::agent::listen(a)?,
        _ => None,
    };
    // Like `ip -n`: everything below runs inside the namespace.
    if let Some(ns) = &cli.global.netns {
        lwtkit::system::enter_netns(ns)?;
    }
    let out = verbs::Output {
        json: cli.global.json,
    };
    // Neither needs lwtkit's pins: the doctor reports a private /sys
    // (below) as one of its checks, and probing the hooks touches nothing.
    let verb = match cli.verb {
        args::Verb::Doctor => return verbs::doctor::run(&out),
        args::Verb::Hooks(a) => return verbs::hooks::run(a, &out),
        // Needs no pins unless it tests a policy (which then says so).
        args::Verb::Test(a) => return verbs::test::run(a, &out),
        args::Verb::New(a) => return verbs::new::run(a, &out),
        args::Verb::Completions { shell } => {
            let mut cmd = args::Cli::command();
            clap_complete::generate(shell, &mut cmd, "lwt", &mut std::io::stdout());
            return Ok(());
        }
        args::Verb::Man { dir } => return write_man_pages(&dir),
        other => other,
    };
    // `ip netns exec` hides lwtkit's pins behind a private /sys.
    if let Some(name) = lwtkit::system::private_sys_of_ip_netns_exec() {
        return Err(lwtkit::system::SystemError::PrivateSys { name }.into());
    }
    match verb {
        args::Verb::Attach(a) => verbs::attach::run(a, &out),
        args::Verb::Detach(a) => verbs::detach::run(a, &out),
        args::Verb::List(a) => verbs::list::run(a, &out),
        args::Verb::Stats(a) => verbs::stats::run(a, &out),
        args::Verb::Builtins => verbs::builtins::run(&out),
        args::Verb::Reset => {
            let done = lwtkit::reset::reset()?;
            out.emit(&done, |d| {
                format!(
                    "took off {} tunnel(s), {} SID(s), {} decapsulator(s), {} route(s), {} policy(ies); lwtkit keeps nothing here now",
                    d.tunnels, d.sids, d.decaps, d.routes, d.policies
                )
            })
        }
        args::Verb::Check => {
            let findings = lwtkit::audit::check()?;
            out.emit(&findings, |f| {
                if f.is_empty() {
                    "lwtkit's state agrees with the kernel".into()
                } else {
                    f.iter()
                        .map(|x| format!("{}: {}", x.kind, x.what))
                        .collect::<Vec<_>>()
                        .join("\n")
                }
            })?;
            if findings.is_empty() {
                Ok(())
            } else {
                Err(anyhow::anyhow!(
                    "{} disagreement(s) between lwtkit's state and the kernel",
                    findings.len()
                ))
            }
        }
        args::Verb::Hooks(_)
        | args::Verb::Doctor
        | args::Verb::Test(_)
        | args::Verb::New(_)
        | args::Verb::Completions { .. }
        | args::Verb::Man { .. } => {
            unreachable!("run above")
        }
        args::Verb::Events(a) => verbs::events::run(a, &out),
        args::Verb::Trace(a) => verbs::trace::run(a, &out),
        args::Verb::Filter(v) => verbs::filter::run(v, &out),
        args::Verb::Nat(v) => verbs::nat::run(v, &out),
        args::Verb::Encap(v) => verbs::encap::run(v, &out),
        args::Verb::Seg6local(v) => verbs::seg6local::run(v, &out),
        args::Verb::Decap(v) => verbs::decap::run(v, &out),
        args::Verb::Export { output } => verbs::export::run(output.as_deref(), &out),
        args::Verb::Apply(a) => verbs::apply::run(a, &out),
        args::Verb::Agent(a) => verbs::agent::run(a, metrics),
        args::Verb::Diff(a) => {
            if verbs::diff::run(a, &out)? {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

/// lwt.1 and a page per verb and sub-verb (`lwt-filter-rule-add.1`).
fn write_man_pages(dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = args::Cli::command();
    cmd.build();
    let mut written = 0;
    let mut todo = vec![(String::from("lwt"), cmd)];
    while let Some((name, cmd)) = todo.pop() {
        let path = dir.join(format!("{name}.1"));
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd.clone())
            .title(name.to_uppercase())
            .render(&mut page)
            .with_context(|| format!("rendering {name}.1"))?;
        std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
        written += 1;
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            todo.push((format!("{name}-{}", sub.get_name()), sub.clone()));
        }
    }
    eprintln!("wrote {written} man page(s) into {}", dir.display());
    Ok(())
}
