//! Building blocks shared by lwtkit's kernel programs: the LWT entry macro,
//! the per-attachment counters, packet parsing and matching, and the NAT
//! pieces (ICMP errors, NPTv6).
#![no_std]
// `asm!` on BPF (for `opaque_zero`), as aya-ebpf itself uses it.
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

pub mod counters;
pub mod matcher;
pub mod nat;
pub mod nat_icmp;
pub mod nptv6;
pub mod parse;

/// Zero, as a value the compiler cannot see through (one `r = 0`
/// instruction it must take as opaque).
///
/// A struct that starts with many zeroes (the packet key) is otherwise
/// built with a call to the object's `memset`, a loop of one byte per
/// iteration, which a profile of real traffic showed as nearly a quarter of the
/// filter program's time; stores of an unknown value are never merged
/// into one.
#[inline(always)]
pub fn opaque_zero() -> u32 {
    #[cfg(target_arch = "bpf")]
    {
        let zero: u64;
        // SAFETY: sets a register, touches nothing else.
        unsafe { core::arch::asm!("{z} = 0", z = out(reg) zero, options(pure, nomem, nostack)) };
        zero as u32
    }
    #[cfg(not(target_arch = "bpf"))]
    {
        0
    }
}

/// Defines an LWT program entry point in section `$section` (`lwt_in`,
/// `lwt_out` or `lwt_xmit`) that wraps the raw `__sk_buff` in an
/// [`aya_ebpf::programs::SkBuffContext`] and calls `$body`.
///
/// aya-ebpf has no LWT attribute macro; libbpf recognises the section name.
#[macro_export]
macro_rules! lwt_program {
    ($name:ident, $section:literal, $body:path) => {
        #[unsafe(no_mangle)]
        #[unsafe(link_section = $section)]
        pub fn $name(skb: *mut aya_ebpf::bindings::__sk_buff) -> i32 {
            $body(aya_ebpf::programs::SkBuffContext::new(skb))
        }
    };
}

/// Checks at compile time that the `#[btf_map]` static `$map` carries the
/// name user space looks its map up by (a `lwtkit_common::maps` constant):
/// aya names a BTF map after its static, so renaming either side alone
/// fails the build.
#[macro_export]
macro_rules! map_named {
    ($map:ident, $name:expr) => {
        const _: () = {
            let _ = core::ptr::addr_of!($map);
            assert!(
                lwtkit_common::maps::same(stringify!($map), $name),
                concat!("the map `", stringify!($map), "` is not named as lwtkit_common::maps says")
            );
        };
    };
}

/// Declares the object's license: GPL, which the helpers lwtkit uses need.
#[macro_export]
macro_rules! gpl_license {
    () => {
        #[unsafe(no_mangle)]
        #[unsafe(link_section = "license")]
        pub static LICENSE: [u8; 4] = *b"GPL\0";
    };
}

/// The kernel programs never unwind; the verifier would reject any path
/// that reached here.
#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
