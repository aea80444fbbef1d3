//! `cargo run --release -p lwtkit-bench -- [testrun|e2e|encap|routes|all]`
//!
//! testrun: ns per packet of the filter at 10, 1k, 10k and 100k rules,
//! measured by BPF_PROG_TEST_RUN (mean of 1M repeats, median of 5 runs),
//! beside the empty program (`pass`) of the same hook.
//! e2e: UDP across a veth pair between two throwaway namespaces: no
//! filter, an empty program on the hook, lwtkit, nftables as a plain
//! chain, nftables with a set; the sender's CPU time per packet and
//! packets per second, as ratios to the no-filter run; then the filter
//! program's own ns per packet in that traffic (BPF run-time statistics),
//! and the empty program's, beside its test-run figure (`e2e --lwt PATH`
//! adds the same policy attached by another build).
//! Needs root; removes its namespaces.
//! encap: VXLAN through lwtkit against plain routing and a kernel device;
//! `encap --types`: every tunnel type's TCP throughput against plain routing.
//! mix: the filter's cost per rule family (`mix [--seed N] [--reps N]
//! [--sweep PACKETS] [--rules N]`): one hot packet and a sweep of different
//! packets at 10 and 100k rules, checked against the model, beside the
//! empty program; marks families over the targets.
//! routes: `lwt attach`/`lwt detach` of one route among 500,000 routes
//! against an empty namespace (`routes --lwt PATH` times another build).
//! nat: 1:1 NAT through a gateway namespace: plain forwarding, lwtkit
//! stateless NAT, nftables stateless rewriting (notrack) and nftables
//! snat/dnat with conntrack (TCP and UDP both ways, ratios to plain
//! forwarding), and a translation's cost by test-run (not part of `all`).
//! blast NETNS ADDR:PORT SECONDS: the benchmarks' UDP sender alone (for
//! profiling a setup made by hand): 18-byte payloads, sendmmsg x64, CPU 0.
//! changes: replace 100k rules with 100k others, add one, delete one
//! (`changes --lwt PATH` times another build; not part of `all`).
//! memlat: ns per dependent random read into BPF maps of 64 KiB to 32 MiB
//! by layout (one array, mmapable array, array of kmalloc'ed arrays, hash
//! maps), cold (repeat = 1, kernel stats) and hot (not part of `all`).
mod changes;
mod e2e;
mod encap_bench;
mod memlat;
mod mix;
mod nat_bench;
mod progstats;
mod routes;
mod testrun;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let what = args.first().cloned().unwrap_or_else(|| "all".into());
    if !matches!(
        what.as_str(),
        "testrun"
            | "mix"
            | "memlat"
            | "e2e"
            | "encap"
            | "routes"
            | "changes"
            | "nat"
            | "blast"
            | "all"
    ) {
        anyhow::bail!(
            "usage: lwtkit-bench [testrun|mix [--seed N]|memlat|e2e [--lwt PATH] [--hook out|xmit]|encap [--types]|routes [--lwt PATH]|changes [--lwt PATH] [--capacity N]|nat [--mappings]|blast NETNS ADDR:PORT SECONDS|all]"
        );
    }
    if matches!(what.as_str(), "testrun" | "all") {
        testrun::run()?;
    }
    if what == "mix" {
        mix::run(args.get(1..).unwrap_or_default())?;
    }
    if what == "memlat" {
        memlat::run(args.get(1..).unwrap_or_default())?;
    }
    if matches!(what.as_str(), "e2e" | "all") {
        e2e::run(if what == "e2e" {
            args.get(1..).unwrap_or_default()
        } else {
            &[]
        })?;
    }
    if what == "encap" && args.get(1).is_some_and(|a| a == "--types") {
        encap_bench::run_types()?;
    } else if matches!(what.as_str(), "encap" | "all") {
        encap_bench::run()?;
    }
    if what == "nat" {
        if args.get(1).is_some_and(|a| a == "--mappings") {
            nat_bench::mappings()?;
        } else {
            nat_bench::run()?;
        }
    }
    if what == "blast" {
        e2e::blast_cmd(args.get(1..).unwrap_or_default())?;
    }
    if what == "changes" {
        changes::run(args.get(1..).unwrap_or_default())?;
    }
    if matches!(what.as_str(), "routes" | "all") {
        routes::run(args.get(1..).unwrap_or_default())?;
    }
    Ok(())
}
