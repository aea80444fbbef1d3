//! `lwt`: eBPF programs on the lightweight-tunnel hooks of routes.
//! Thin: parse, enter the namespace, run one verb, render. The work lives
//! in the lwtkit library.
mod args;
mod verbs;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    tracing_subscriber::fmt()
        // Warnings (what lwtkit cleaned up on its own) show unless LWT_LOG says otherwise.
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LWT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .without_time()
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lwt: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: args::Cli) -> anyhow::Result<()> {
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
        args::Verb::Hooks(_) | args::Verb::Doctor | args::Verb::Test(_) | args::Verb::New(_) => {
            unreachable!("run above")
        }
        args::Verb::Events(a) => verbs::events::run(a, &out),
        args::Verb::Trace(a) => verbs::trace::run(a, &out),
        args::Verb::Filter(v) => verbs::filter::run(v, &out),
        args::Verb::Encap(v) => verbs::encap::run(v, &out),
        args::Verb::Seg6local(v) => verbs::seg6local::run(v, &out),
        args::Verb::Decap(v) => verbs::decap::run(v, &out),
    }
}
