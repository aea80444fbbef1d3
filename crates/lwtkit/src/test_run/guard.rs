//! Refuses test-runs known to crash the running kernel, before anything
//! runs: a program on `lwt_in` or `lwt_xmit` that calls
//! `bpf_lwt_push_encap`. The helper reaches for the route's device
//! (`skb_dst(skb)->dev`: `bpf_lwt_push_ip_encap` on xmit,
//! `seg6_do_srh_encap` for the SEG6 modes on in), and a test-run skb has
//! no route: a NULL dereference in the kernel (see docs/kernel.md).
use std::os::fd::BorrowedFd;

use super::TestRunError;

/// `BPF_JMP | BPF_CALL`.
const CALL: u8 = 0x85;

/// The helpers whose test-run crashes, by their kernel symbol (the
/// `func` of their `bpf_func_proto`).
const DANGEROUS: [&str; 2] = ["bpf_lwt_xmit_push_encap", "bpf_lwt_in_push_encap"];

/// What the check found.
#[derive(Debug, PartialEq, Eq)]
pub enum Finding {
    Safe,
    /// The program calls `bpf_lwt_push_encap`.
    PushEncap,
    /// It calls helpers this check cannot name (addresses hidden).
    Unknown(String),
}

/// Looks through the verifier's (xlated) instructions of the loaded
/// program behind `fd`. There a helper call's `imm` is the helper's
/// address minus `__bpf_call_base` (`fixup_bpf_calls`), kept in the dump
/// only when the caller may see kernel addresses (`bpf_dump_raw_ok`), so
/// `/proc/kallsyms` names it.
pub fn check(fd: BorrowedFd<'_>) -> Result<Finding, TestRunError> {
    let insns = xlated(fd)?;
    let calls: Vec<i32> = helper_calls(&insns);
    if calls.is_empty() {
        return Ok(Finding::Safe);
    }
    let syms = kallsyms(&DANGEROUS);
    Ok(decide(&calls, &syms))
}

/// The `imm` of every helper call (`src_reg` 0) in raw instructions.
fn helper_calls(insns: &[u8]) -> Vec<i32> {
    insns
        .chunks_exact(8)
        .filter(|i| i[0] == CALL && i[1] >> 4 == 0)
        .map(|i| i32::from_le_bytes([i[4], i[5], i[6], i[7]]))
        .collect()
}

/// Addresses of `__bpf_call_base` and the dangerous helpers, when visible.
pub struct Symbols {
    pub base: Option<u64>,
    pub helpers: Vec<u64>,
}

/// The decision, apart from the kernel: a call to a dangerous helper, or
/// calls that cannot be told apart (hidden addresses), refuse.
pub fn decide(calls: &[i32], syms: &Symbols) -> Finding {
    let Some(base) = syms.base.filter(|b| *b != 0) else {
        return Finding::Unknown("kernel addresses are hidden (/proc/kallsyms shows zeros), so its helper calls cannot be named".into());
    };
    if calls.contains(&0) {
        return Finding::Unknown(
            "the kernel hid its helper calls' addresses (kernel.kptr_restrict)".into(),
        );
    }
    let dangerous = syms
        .helpers
        .iter()
        .map(|a| a.wrapping_sub(base) as i64 as i32);
    for d in dangerous {
        if calls.contains(&d) {
            return Finding::PushEncap;
        }
    }
    Finding::Safe
}

fn kallsyms(names: &[&str]) -> Symbols {
    let mut syms = Symbols {
        base: None,
        helpers: Vec::new(),
    };
    let Some(text) = crate::kallsyms::read() else {
        return syms;
    };
    for s in crate::kallsyms::parse(&text) {
        if s.name == "__bpf_call_base" {
            syms.base = Some(s.addr);
        } else if names.contains(&s.name) {
            syms.helpers.push(s.addr);
        }
    }
    syms
}

/// The program's instructions as the verifier left them.
fn xlated(fd: BorrowedFd<'_>) -> Result<Vec<u8>, TestRunError> {
    let insns =
        crate::prog_info::xlated(fd).map_err(|e| TestRunError::ProgramInfo(e.to_string()))?;
    if insns.is_empty() {
        return Err(TestRunError::ProgramInfo(
            "the kernel does not show this program's instructions".into(),
        ));
    }
    Ok(insns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(imm: i32) -> [u8; 8] {
        let i = imm.to_le_bytes();
        [CALL, 0, 0, 0, i[0], i[1], i[2], i[3]]
    }

    #[test]
    fn helper_calls_are_read_and_bpf_to_bpf_calls_skipped() {
        let mut insns = call(5).to_vec();
        let mut sub = call(7);
        sub[1] = 1 << 4; // src_reg = BPF_PSEUDO_CALL
        insns.extend_from_slice(&sub);
        insns.extend_from_slice(&[0x95, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(helper_calls(&insns), vec![5]);
    }

    #[test]
    fn a_push_encap_call_is_found_by_its_address() {
        let syms = Symbols {
            base: Some(0xffff_ffff_814c_a810),
            helpers: vec![0xffff_ffff_81e9_0530],
        };
        let push = (0xffff_ffff_81e9_0530u64 - 0xffff_ffff_814c_a810) as i32;
        assert_eq!(decide(&[12, push], &syms), Finding::PushEncap);
        assert_eq!(decide(&[12, 40], &syms), Finding::Safe);
    }

    #[test]
    fn hidden_addresses_are_not_taken_as_safe() {
        let hidden = Symbols {
            base: Some(0),
            helpers: vec![0],
        };
        assert!(matches!(decide(&[12], &hidden), Finding::Unknown(_)));
        let zeroed_calls = Symbols {
            base: Some(0xffff_ffff_814c_a810),
            helpers: vec![],
        };
        assert!(matches!(decide(&[0], &zeroed_calls), Finding::Unknown(_)));
    }
}
