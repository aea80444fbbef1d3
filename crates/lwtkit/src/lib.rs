//! lwtkit: attach eBPF programs to the lightweight-tunnel hooks of Linux
//! routes (`lwt_in`, `lwt_out`, `lwt_xmit`, seg6local `End.BPF`), keep track
//! of them, count and list what they do.
pub mod hook;
pub mod kallsyms;
pub mod percpu;
pub mod probe;
pub mod prog_info;
pub mod reset;
pub mod route;
pub mod seg6local;

pub use hook::Hook;
pub mod agent;
pub mod builtin;
pub mod config;
pub mod doctor;
pub mod encap;
pub mod error;
pub mod events;
pub mod filter;
pub mod loader;
pub mod scaffold;
pub mod state;
pub mod system;
pub mod test_run;
pub mod trace;
pub mod validate;

pub use error::{Error, Result};
pub mod attach;
pub mod audit;
pub mod inventory;
pub mod ns;
