//! Prints a hash of the cells each benchmark family compiles into, and the
//! time: `cargo run --release --example compile_hash` (to check that a
//! change to the compiler keeps its output byte for byte).
use std::{hash::Hasher, time::Instant};

use lwtkit::filter::{
    bench_families::{family_rules, Family},
    compile::compile,
};

fn main() {
    for n in [1_000usize, 100_000] {
        for (i, family) in Family::ALL.into_iter().enumerate() {
            let rules = family_rules(family, n, 7 + i as u64);
            let t = Instant::now();
            let c = compile(&rules).expect("compiles");
            let ms = t.elapsed().as_secs_f64() * 1e3;
            let mut h = std::collections::hash_map::DefaultHasher::new();
            for cell in &c.cells {
                for w in cell.w {
                    h.write_u32(w);
                }
            }
            println!(
                "{:<12} {n:>7} rules: {:>8.1} ms, {:>8} cells, hash {:016x}",
                family.name(),
                ms,
                c.cells.len(),
                h.finish()
            );
        }
    }
}
