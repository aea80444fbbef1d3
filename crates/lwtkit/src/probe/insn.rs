//! Tiny programs built instruction by instruction, loaded only to hear the
//! verifier's answer: never attached, never run, closed at once.
use std::os::fd::{FromRawFd, OwnedFd};

use libbpf_rs::libbpf_sys;

/// One eBPF instruction (`struct bpf_insn`, little-endian layout).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

// Opcode parts (include/uapi/linux/bpf_common.h, bpf.h).
const LDX: u8 = 0x01;
const STX: u8 = 0x03;
const ALU64: u8 = 0x07;
const JMP: u8 = 0x05;
const MEM: u8 = 0x60;
const MOV: u8 = 0xb0;
const ADD: u8 = 0x00;
const K: u8 = 0x00;
const X: u8 = 0x08;
const EXIT: u8 = 0x90;
const JGT: u8 = 0x20;

/// Access sizes: `BPF_B`, `BPF_H`, `BPF_W`, `BPF_DW`.
pub fn size_code(bytes: u8) -> u8 {
    match bytes {
        1 => 0x10,
        2 => 0x08,
        8 => 0x18,
        _ => 0x00,
    }
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (dst & 0xf) | (src << 4),
        off,
        imm,
    }
}

/// `dst = *(size *)(src + off)`
pub fn load(bytes: u8, dst: u8, src: u8, off: i16) -> Insn {
    insn(LDX | MEM | size_code(bytes), dst, src, off, 0)
}

/// `*(size *)(dst + off) = src`
pub fn store(bytes: u8, dst: u8, src: u8, off: i16) -> Insn {
    insn(STX | MEM | size_code(bytes), dst, src, off, 0)
}

/// `dst = imm`
pub fn mov_imm(dst: u8, imm: i32) -> Insn {
    insn(ALU64 | MOV | K, dst, 0, 0, imm)
}

/// `dst = src`
pub fn mov_reg(dst: u8, src: u8) -> Insn {
    insn(ALU64 | MOV | X, dst, src, 0, 0)
}

/// `dst += imm`
pub fn add_imm(dst: u8, imm: i32) -> Insn {
    insn(ALU64 | ADD | K, dst, 0, 0, imm)
}

/// `if dst > src goto +off`
pub fn jgt_reg(dst: u8, src: u8, off: i16) -> Insn {
    insn(JMP | JGT | X, dst, src, off, 0)
}

pub fn exit() -> Insn {
    insn(JMP | EXIT, 0, 0, 0, 0)
}

/// What loading a probe program told.
#[derive(Debug)]
pub enum Verdict {
    Accepted(OwnedFd),
    /// The verifier refused it (EACCES, EINVAL).
    Refused,
    /// Anything else: no privilege (EPERM), no such program type, ...
    Error(std::io::Error),
}

/// Loads `insns` as a GPL program of `prog_type` without a log.
pub fn try_load(prog_type: u32, insns: &[Insn]) -> Verdict {
    let license = c"GPL";
    // SAFETY: `insns` is a valid array of `struct bpf_insn` (same layout),
    // the license a NUL-terminated string; no options.
    let fd = unsafe {
        libbpf_sys::bpf_prog_load(
            prog_type,
            std::ptr::null(),
            license.as_ptr(),
            insns.as_ptr().cast(),
            insns.len() as _,
            std::ptr::null_mut(),
        )
    };
    if fd >= 0 {
        // SAFETY: a new fd the kernel gave us.
        return Verdict::Accepted(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    match -fd {
        libc::EACCES | libc::EINVAL => Verdict::Refused,
        e => Verdict::Error(std::io::Error::from_raw_os_error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_encode_as_the_kernel_reads_them() {
        // r0 = *(u32 *)(r1 + 8): 0x61 0x10 0x0008 0x00000000
        let i = load(4, 0, 1, 8);
        assert_eq!((i.code, i.regs, i.off, i.imm), (0x61, 0x10, 8, 0));
        // *(u64 *)(r1 + 152) = r2: 0x7b 0x21
        let i = store(8, 1, 2, 152);
        assert_eq!((i.code, i.regs, i.off), (0x7b, 0x21, 152));
        assert_eq!(mov_imm(0, 0).code, 0xb7);
        assert_eq!(exit().code, 0x95);
        assert_eq!(jgt_reg(4, 3, 1).code, 0x2d);
        assert_eq!(std::mem::size_of::<Insn>(), 8);
    }
}
