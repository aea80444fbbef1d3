//! Filter policies: named rule sets held in maps, compiled into a decision
//! tree, attached to any route and hook, changed live.
pub mod bench_rules;
pub mod compile;
pub mod handling;
pub use bench_rules::bench_rules;
pub mod manage;
pub mod model;
pub mod rule;
pub mod store;
pub mod testrun;
