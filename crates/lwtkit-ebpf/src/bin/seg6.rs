//! Built-in SRv6 `End.BPF` behaviours for seg6local routes (the kernel has
//! already validated the SRH and advanced to the next segment):
//! `end` counts packets per SID and lets the End behaviour continue;
//! `end_dt6` decapsulates and looks the inner IPv6 packet up in a table,
//! like End.DT6, through `bpf_lwt_seg6_action`.
#![no_std]
#![no_main]

use aya_ebpf::{btf_maps::Array, helpers::bpf_lwt_seg6_action, macros::btf_map, programs::SkBuffContext};
use lwtkit_common::{
    filter::verdict_slot,
    maps,
    verdict::{BPF_DROP, BPF_OK, BPF_REDIRECT},
};
use lwtkit_ebpf::{counters::count, gpl_license, map_named};

/// `SEG6_LOCAL_ACTION_END_DT6` (include/uapi/linux/seg6_local.h).
const END_DT6: u32 = 7;

/// The table End.DT6 looks the inner packet up in (set before attach).
#[btf_map]
static DT6_TABLE: Array<u32, 1> = Array::new();
map_named!(DT6_TABLE, maps::seg6::DT6_TABLE);

#[unsafe(no_mangle)]
#[unsafe(link_section = "lwt_seg6local")]
pub fn seg6_end(skb: *mut aya_ebpf::bindings::__sk_buff) -> i32 {
    let ctx = SkBuffContext::new(skb);
    count(verdict_slot::ALLOWED, ctx.len());
    BPF_OK
}

#[unsafe(no_mangle)]
#[unsafe(link_section = "lwt_seg6local")]
pub fn seg6_end_dt6(skb: *mut aya_ebpf::bindings::__sk_buff) -> i32 {
    let ctx = SkBuffContext::new(skb);
    let len = ctx.len();
    let mut table = DT6_TABLE.get(0).copied().unwrap_or(254);
    // SAFETY: the action parameter is a 4-byte table id on the stack.
    let rc = unsafe { bpf_lwt_seg6_action(skb, END_DT6, (&mut table as *mut u32).cast(), 4) };
    if rc != 0 {
        count(verdict_slot::DROPPED, len);
        return BPF_DROP;
    }
    count(verdict_slot::ALLOWED, len);
    BPF_REDIRECT
}

gpl_license!();
