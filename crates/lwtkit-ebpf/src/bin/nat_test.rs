//! Test-only program (not a built-in; never attached): applies one
//! translation from `NAT_CASE` to the packet it is test-run on and records
//! the outcome in `NAT_RESULT`, so lwtkit's tests can prove `nat_icmp` and
//! `nptv6` on packets before a rule uses them. It never pushes an
//! encapsulation, so `BPF_PROG_TEST_RUN` on it is safe.
#![no_std]
#![no_main]

use aya_ebpf::{btf_maps::Array, macros::btf_map, programs::SkBuffContext};
use lwtkit_common::{
    maps,
    nat_icmp::{op, outcome, NatCase, Translation},
    verdict::{BPF_DROP, BPF_OK},
};
use lwtkit_ebpf::{
    gpl_license, lwt_program, map_named,
    nat_icmp::{locate, translate},
    nptv6,
};

#[btf_map]
static NAT_CASE: Array<NatCase, 1> = Array::new();
map_named!(NAT_CASE, maps::nat_test::CASE);

#[btf_map]
static NAT_RESULT: Array<u32, 1> = Array::new();
map_named!(NAT_RESULT, maps::nat_test::RESULT);

#[inline(always)]
fn apply(ctx: &SkBuffContext, case: &NatCase) -> u32 {
    match case.op {
        op::ICMP => match locate(ctx) {
            Some(icmp) => translate(ctx, icmp, &case.translation),
            None => outcome::NOT_ERROR,
        },
        op::NPTV6_SRC | op::NPTV6_DST => {
            let dst = case.op == op::NPTV6_DST;
            let (from, to) = match nptv6::mapping(ctx, dst, &case.nptv6) {
                Ok(pair) => pair,
                Err(code) => return code,
            };
            // An ICMPv6 error takes the same pair into its embedded packet.
            if let Some(icmp) = locate(ctx).filter(|i| i.v6) {
                let t = Translation { from, to, v6: 1, dst: u8::from(dst), ..Translation::default() };
                let code = translate(ctx, icmp, &t);
                if code != outcome::NOT_ERROR {
                    return code;
                }
            }
            nptv6::store(ctx, dst, &to)
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
