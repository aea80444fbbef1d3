//! Types shared by lwtkit's kernel programs and its user space.
//!
//! Every map key, map value and event layout that crosses the kernel/user
//! boundary is defined here once, `#[repr(C)]` with explicit padding, so both
//! sides agree on the bytes.
#![no_std]

pub mod encap;
pub mod filter;
pub mod maps;
pub mod nat_icmp;
pub mod nptv6;
pub mod pins;
pub mod trace;

/// Packet and byte counters of one attachment, one slot per CPU in a
/// per-CPU array; user space sums the slots.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(serde::Serialize))]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
}

const _: () = assert!(core::mem::size_of::<Counters>() == 16);

/// Verdicts an LWT program returns (`include/uapi/linux/bpf.h`).
pub mod verdict {
    pub const BPF_OK: i32 = 0;
    pub const BPF_DROP: i32 = 2;
    pub const BPF_REDIRECT: i32 = 7;
    pub const BPF_LWT_REROUTE: i32 = 128;
}
