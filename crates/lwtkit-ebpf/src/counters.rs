//! Per-attachment packet and byte counters: one slot per CPU, summed by
//! user space. Each loaded program instance has its own map, so one route
//! and hook map to one counter.
use aya_ebpf::{btf_maps::PerCpuArray, macros::btf_map, programs::SkBuffContext};
use lwtkit_common::Counters;

#[btf_map]
static COUNTERS: PerCpuArray<Counters, 1> = PerCpuArray::new();

/// Counts `ctx` as one packet of `ctx.len()` bytes (the L3 length).
#[inline(always)]
pub fn count(ctx: &SkBuffContext) {
    if let Some(c) = COUNTERS.get_ptr_mut(0) {
        // Per-CPU slot: no other writer, plain adds are race free.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += u64::from(ctx.len());
        }
    }
}
