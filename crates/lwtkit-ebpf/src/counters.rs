//! Per-attachment counters: packets and bytes by verdict slot (allowed,
//! dropped, malformed), one slot per CPU, summed by user space. Each loaded
//! program instance has its own map, so one route and hook map to one
//! set of counters. Shared by every built-in (`count` only uses ALLOWED).
use aya_ebpf::{btf_maps::PerCpuArray, macros::btf_map};
use lwtkit_common::{filter::verdict_slot, maps, Counters};

#[btf_map]
pub static ATTACH_STATS: PerCpuArray<Counters, { verdict_slot::COUNT as usize }> = PerCpuArray::new();
crate::map_named!(ATTACH_STATS, maps::ATTACH_STATS);

/// Counts one packet of `len` bytes (the L3 length) in `slot`.
#[inline(always)]
pub fn count(slot: u32, len: u32) {
    if let Some(c) = ATTACH_STATS.get_ptr_mut(slot) {
        // Per-CPU slot: no other writer, plain adds are race free.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += u64::from(len);
        }
    }
}
