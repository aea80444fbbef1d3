//! {{name}}: one LWT program per hook, from `lwt new {{name}} --lang rust`.
//!
//!   make          build the object (nightly, build-std, bpf-linker --btf)
//!   make test     run every hook's program on packets.pcap with `lwt test`
//!
//! Then on a route: `lwt attach 10.0.0.3/32 --dev DEV --hook out --obj
//! target/bpfel-unknown-none/release/{{name}}`, and `lwt trace 10.0.0.3/32`.
//! Maps: `#[btf_map]` only (libbpf refuses aya's legacy `maps` section).
#![no_std]
#![no_main]

use aya_ebpf::{bindings::__sk_buff, programs::SkBuffContext};

const BPF_OK: i32 = 0;
const BPF_DROP: i32 = 2;

/// The example decision, the same on every hook: drop TCP to port 8080,
/// pass everything else. The packet starts at the IP header on every hook.
#[inline(always)]
fn decide(ctx: &SkBuffContext) -> i32 {
    let Ok(first) = ctx.load::<u8>(0) else {
        return BPF_OK;
    };
    let (proto, l4) = match first >> 4 {
        4 => (ctx.load::<u8>(9), usize::from(first & 0xf) * 4),
        6 => (ctx.load::<u8>(6), 40),
        _ => return BPF_OK,
    };
    if proto != Ok(6) {
        return BPF_OK;
    }
    match ctx.load::<u16>(l4 + 2) {
        Ok(port) if u16::from_be(port) == 8080 => BPF_DROP,
        _ => BPF_OK,
    }
}

/// aya-ebpf has no LWT attribute: a plain function in the section libbpf
/// knows (`lwt_in`, `lwt_out`, `lwt_xmit`, `lwt_seg6local`).
macro_rules! lwt_program {
    ($name:ident, $section:literal, $body:expr) => {
        #[unsafe(no_mangle)]
        #[unsafe(link_section = $section)]
        pub fn $name(skb: *mut __sk_buff) -> i32 {
            $body(&SkBuffContext::new(skb))
        }
    };
}

lwt_program!({{ident}}_in, "lwt_in", decide);
lwt_program!({{ident}}_out, "lwt_out", decide);
lwt_program!({{ident}}_xmit, "lwt_xmit", decide);
// End.BPF: the SRH is validated and the next segment set; BPF_OK goes on.
lwt_program!({{ident}}_seg6local, "lwt_seg6local", |_: &SkBuffContext| BPF_OK);

#[unsafe(no_mangle)]
#[unsafe(link_section = "license")]
pub static LICENSE: [u8; 4] = *b"GPL\0";

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
