//! Test-only program (not a built-in; never attached): applies one
//! translation from `NAT_CASE` to the packet it is test-run on and records
//! the outcome in `NAT_RESULT`, so lwtkit's tests can prove `nat_icmp` and
//! `nptv6` on packets before a rule uses them. It never pushes an
//! encapsulation, so `BPF_PROG_TEST_RUN` on it is safe.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::__sk_buff,
    btf_maps::{Array, PerCpuArray},
    macros::btf_map,
    programs::SkBuffContext,
};
use lwtkit_common::{
    maps,
    nat_icmp::{op, outcome, NatCase, Translation},
    verdict::{BPF_DROP, BPF_OK},
};
use lwtkit_ebpf::{
    gpl_license, lwt_program, map_named,
    nat::NatScratch,
    nat_icmp::{locate, translate, Icmp},
    nptv6,
};

#[btf_map]
static NAT_CASE: Array<NatCase, 1> = Array::new();
map_named!(NAT_CASE, maps::nat_test::CASE);

#[btf_map]
static NAT_RESULT: Array<u32, 1> = Array::new();
map_named!(NAT_RESULT, maps::nat_test::RESULT);

/// The translation to apply and the addresses it reads, as the filter
/// program keeps them.
#[btf_map]
static NAT_SCRATCH: PerCpuArray<NatScratch, 1> = PerCpuArray::new();
map_named!(NAT_SCRATCH, maps::nat_test::SCRATCH);

/// Translates the ICMP (`V6` false) or ICMPv6 error whose header is at
/// `off` by the translation in `NAT_SCRATCH`.
#[inline(always)]
fn icmp<const V6: bool>(skb: *mut __sk_buff, off: u32) -> u32 {
    let ctx = SkBuffContext::new(skb);
    let Some(s) = NAT_SCRATCH.get_ptr_mut(0) else { return 0 };
    // SAFETY: this CPU's scratch; test runs do not race on one CPU.
    let s = unsafe { &mut *s };
    translate(&ctx, Icmp { v6: V6, off: off as usize }, &s.t, &mut s.addrs)
}

/// [`icmp`] as the filter program calls its translation: global BPF
/// functions, one per family, each checked by the verifier once (not on
/// every path of [`apply`]) in a stack frame of its own.
#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn nat_test_icmp4(skb: *mut __sk_buff, off: u32) -> u32 {
    icmp::<false>(skb, off)
}

/// See [`nat_test_icmp4`].
#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn nat_test_icmp6(skb: *mut __sk_buff, off: u32) -> u32 {
    icmp::<true>(skb, off)
}

/// The translation of the ICMP error in the packet, if it is one.
#[inline(always)]
fn icmp_error(ctx: &SkBuffContext) -> u32 {
    match locate(ctx) {
        Some(i) if i.v6 => nat_test_icmp6(ctx.skb.skb, i.off as u32),
        Some(i) => nat_test_icmp4(ctx.skb.skb, i.off as u32),
        None => outcome::NOT_ERROR,
    }
}

/// The NPTv6 pair of `NAT_CASE` for the packet's destination (`dst` 1) or
/// source address into `NAT_SCRATCH`'s translation: 0, or the outcome
/// that says why not. A global function too, so that the program's own
/// frame stays small beside the translation's.
#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn nat_test_nptv6(skb: *mut __sk_buff, dst: u32) -> u32 {
    let ctx = SkBuffContext::new(skb);
    let (Some(case), Some(s)) = (NAT_CASE.get(0), NAT_SCRATCH.get_ptr_mut(0)) else { return 0 };
    let dst = dst != 0;
    match nptv6::mapping(&ctx, dst, &case.nptv6) {
        Ok((from, to)) => {
            // SAFETY: this CPU's scratch, not used by a call meanwhile.
            unsafe { (*s).t = Translation { from, to, v6: 1, dst: u8::from(dst), ..Translation::default() } };
            0
        }
        Err(code) => code,
    }
}

#[inline(always)]
fn apply(ctx: &SkBuffContext, case: &NatCase) -> u32 {
    let Some(s) = NAT_SCRATCH.get_ptr_mut(0) else { return 0 };
    match case.op {
        op::ICMP => {
            // SAFETY: this CPU's scratch, not used by a call meanwhile.
            unsafe { (*s).t = case.translation };
            icmp_error(ctx)
        }
        op::NPTV6_SRC | op::NPTV6_DST => {
            let dst = case.op == op::NPTV6_DST;
            let code = nat_test_nptv6(ctx.skb.skb, u32::from(dst));
            if code != 0 {
                return code;
            }
            // An ICMPv6 error takes the same pair into its embedded packet.
            let code = icmp_error(ctx);
            if code != outcome::NOT_ERROR {
                return code;
            }
            // SAFETY: as above.
            nptv6::store(ctx, dst, unsafe { &(*s).t.to })
        }
        _ => 0,
    }
}

#[inline(always)]
fn nat_test(ctx: SkBuffContext) -> i32 {
    let Some(case) = NAT_CASE.get(0) else { return BPF_DROP };
    let code = apply(&ctx, case);
    if let Some(r) = NAT_RESULT.get_ptr_mut(0) {
        // SAFETY: the map's one slot; test runs do not race.
        unsafe { *r = code };
    }
    if code == outcome::FAILED {
        BPF_DROP
    } else {
        BPF_OK
    }
}

lwt_program!(nat_test_xmit, "lwt_xmit", nat_test);

gpl_license!();
