//! What the kernel says of a loaded program (`BPF_OBJ_GET_INFO_BY_FD`):
//! its counts and run-time statistics, its verifier-translated
//! instructions, its function records. One call site for the syscall; the
//! arrays the kernel fills are owned here, sized from a first call.
use std::os::fd::{AsRawFd, BorrowedFd};

use libbpf_rs::libbpf_sys::{self, bpf_func_info, bpf_prog_info};

/// `bpf_prog_get_info_by_fd` into `info`, which may point at arrays for
/// the kernel to fill (their lengths in `info`).
///
/// # Safety
/// Every pointer set in `info` must be valid for writes of the length set
/// beside it.
unsafe fn get(fd: BorrowedFd<'_>, info: &mut bpf_prog_info) -> std::io::Result<()> {
    let mut len = size_of::<bpf_prog_info>() as u32;
    // SAFETY: `info` is a bpf_prog_info of `len` bytes; the arrays it
    // points at are the caller's promise.
    let rc = unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), info, &mut len) };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(-rc));
    }
    Ok(())
}

/// The program's info without any array: ids, counts, lengths, and the
/// run-time statistics (`run_time_ns`, `run_cnt`, while `BPF_ENABLE_STATS`
/// is held).
pub fn info(fd: BorrowedFd<'_>) -> std::io::Result<bpf_prog_info> {
    let mut info = bpf_prog_info::default();
    // SAFETY: no pointer is set.
    unsafe { get(fd, &mut info) }?;
    Ok(info)
}

/// The program's instructions as the verifier left them (empty when the
/// kernel hides them from this caller).
pub fn xlated(fd: BorrowedFd<'_>) -> std::io::Result<Vec<u8>> {
    let size = info(fd)?.xlated_prog_len;
    if size == 0 {
        return Ok(Vec::new());
    }
    let mut buf = vec![0u8; size as usize];
    let mut want = bpf_prog_info {
        xlated_prog_len: size,
        xlated_prog_insns: buf.as_mut_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: `xlated_prog_insns` points at `size` writable bytes.
    unsafe { get(fd, &mut want) }?;
    buf.truncate(want.xlated_prog_len.min(size) as usize);
    Ok(buf)
}

/// The program's function records (BTF type id and first instruction of
/// each function), with its info (`btf_id`); none without BTF.
pub fn func_info(fd: BorrowedFd<'_>) -> std::io::Result<(bpf_prog_info, Vec<bpf_func_info>)> {
    let first = info(fd)?;
    if first.btf_id == 0 || first.nr_func_info == 0 {
        return Ok((first, Vec::new()));
    }
    let mut funcs = vec![bpf_func_info::default(); first.nr_func_info as usize];
    let mut want = bpf_prog_info {
        nr_func_info: funcs.len() as u32,
        func_info_rec_size: size_of::<bpf_func_info>() as u32,
        func_info: funcs.as_mut_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: `func_info` points at `nr_func_info` records of the size given.
    unsafe { get(fd, &mut want) }?;
    funcs.truncate(want.nr_func_info.min(first.nr_func_info) as usize);
    Ok((first, funcs))
}
