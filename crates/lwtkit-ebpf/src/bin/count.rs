//! Built-in `count`: passes every packet and counts packets and bytes.
//! One entry per hook; the loader keeps only the one it attaches.
#![no_std]
#![no_main]

use aya_ebpf::programs::SkBuffContext;
use lwtkit_common::{filter::verdict_slot, verdict::BPF_OK};
use lwtkit_ebpf::{counters::count, gpl_license, lwt_program};

#[inline(always)]
fn pass_and_count(ctx: SkBuffContext) -> i32 {
    count(verdict_slot::ALLOWED, ctx.len());
    BPF_OK
}

lwt_program!(count_in, "lwt_in", pass_and_count);
lwt_program!(count_out, "lwt_out", pass_and_count);
lwt_program!(count_xmit, "lwt_xmit", pass_and_count);

gpl_license!();
