//! Built-in `pass`: returns BPF_OK and does nothing else. The floor the
//! benchmarks measure other programs against.
#![no_std]
#![no_main]

use aya_ebpf::programs::SkBuffContext;
use lwtkit_common::verdict::BPF_OK;
use lwtkit_ebpf::{gpl_license, lwt_program};

#[inline(always)]
fn pass(_ctx: SkBuffContext) -> i32 {
    BPF_OK
}

lwt_program!(pass_in, "lwt_in", pass);
lwt_program!(pass_out, "lwt_out", pass);
lwt_program!(pass_xmit, "lwt_xmit", pass);

gpl_license!();
