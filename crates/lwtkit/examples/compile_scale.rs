//! Compiles benchmark-shaped rule sets (mixed /16, /24, /32 source and
//! destination prefixes, exact ports and ranges, protocols) and prints the
//! time, cells, depth and leaf size: `cargo run --release --example compile_scale`.
use std::time::Instant;

use lwtkit::filter::{bench_rules, compile::compile};

fn main() {
    for n in [10usize, 1_000, 10_000, 100_000] {
        let rules = bench_rules(n, 42);
        let t = Instant::now();
        match compile(&rules) {
            Ok(c) => println!(
                "{n:>7} rules: {:>8.1} ms, {:>9} cells ({:.1}/rule), depth {}, leaf {}",
                t.elapsed().as_secs_f64() * 1e3,
                c.cells.len(),
                c.cells.len() as f64 / n as f64,
                c.max_depth,
                c.max_leaf
            ),
            Err(e) => println!("{n:>7} rules: {e}"),
        }
    }
}
