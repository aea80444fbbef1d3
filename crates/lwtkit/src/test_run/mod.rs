//! `lwt test`: runs any LWT program on packets through BPF_PROG_TEST_RUN,
//! without a route. The program is loaded the way `attach` loads it (an
//! object, a built-in, a filter policy on its pinned maps, a pin); each
//! packet gets its verdict by name, the mean time per run, and what the
//! program changed. The test-run quirks are handled here: the Ethernet
//! header the kernel wants in front, one clean run for the verdict and
//! output (repeats reuse the skb, so writes would pile up), the one-page
//! size limit, and programs whose test-run crashes the kernel refused.
pub mod guard;
pub mod packet;

use std::{os::fd::AsRawFd, path::PathBuf};

use libbpf_rs::libbpf_sys;
use serde::Serialize;

use crate::{
    error::Result,
    filter::{store::Policies, testrun::ethernet_frame},
    hook::Hook,
    loader::{self, ProgramSource},
    ns::Namespace,
    state::NetnsState,
    system,
};
pub use packet::{Change, Summary};

/// Why a test run could not be done.
#[derive(Debug, thiserror::Error)]
pub enum TestRunError {
    #[error("packet `{spec}`: {reason}")]
    PacketSpec { spec: String, reason: String },
    #[error("pcap file {path}: {reason}")]
    Pcap { path: PathBuf, reason: String },
    #[error("the kernel cannot test-run lwt_seg6local (End.BPF) programs: BPF_PROG_TEST_RUN was removed for them (CVE-2024-46754); test an End.BPF program on a seg6local route in a network namespace")]
    Seg6local,
    #[error("refusing to test-run `{program}` on {hook}: it calls bpf_lwt_push_encap, which reaches for the route's device, and a test run has no route: on this kernel that is a NULL dereference that can crash the machine (no fix known through 6.18; see `lwt doctor`). Test encapsulation on a real route in a network namespace instead")]
    PushEncap { program: String, hook: Hook },
    #[error("refusing to test-run `{program}` on {hook}: {reason}; lwtkit cannot rule out a bpf_lwt_push_encap call, whose test-run can crash this kernel")]
    CannotInspect {
        program: String,
        hook: Hook,
        reason: String,
    },
    #[error("reading the loaded program's instructions: {0}")]
    ProgramInfo(String),
    #[error("packet {index} ({len} bytes of IP) is too long for a test run: the kernel takes at most one page per packet, about 3.6 KB of IP")]
    TooLong { index: usize, len: usize },
    #[error("BPF_PROG_TEST_RUN failed on packet {index}: {reason}")]
    Run { index: usize, reason: String },
}

/// The program to test.
#[derive(Clone, Debug)]
pub enum TestProgram {
    /// Anything `attach` takes: an object, a built-in, a pin.
    Source(ProgramSource),
    /// A filter policy of this namespace, on its own pinned maps.
    Policy(String),
}

/// What `lwt test` does.
#[derive(Clone, Debug)]
pub struct TestRequest {
    /// `None`: seg6local, which the kernel cannot test-run.
    pub hook: Option<Hook>,
    pub program: TestProgram,
    /// L3 packets (IPv4 or IPv6).
    pub packets: Vec<Vec<u8>>,
    /// Runs per packet for the timing (1 or more).
    pub repeat: u32,
}

/// One packet's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct PacketOutcome {
    /// 1-based, as in the pcap.
    pub index: usize,
    /// `BPF_OK`, `BPF_DROP`, `BPF_REDIRECT`, `BPF_LWT_REROUTE`, or the number.
    pub verdict: String,
    pub retval: i32,
    /// Mean ns per run over the repeats.
    pub ns: u64,
    pub packet: String,
    /// The header fields the program changed (empty: none).
    pub changes: Vec<Change>,
    pub mark: u32,
    pub priority: u32,
    /// The packet as the program left it (L3).
    #[serde(skip)]
    pub out: Vec<u8>,
}

/// The verdict names of net/core/lwt_bpf.c's `run_lwt_bpf`.
pub fn verdict_name(rc: i32) -> String {
    match rc {
        0 => "BPF_OK".into(),
        2 => "BPF_DROP".into(),
        7 => "BPF_REDIRECT".into(),
        128 => "BPF_LWT_REROUTE".into(),
        n => n.to_string(),
    }
}

/// The largest L3 packet a test run takes: one page minus the skb's
/// headroom (NET_SKB_PAD), the shared info, and the Ethernet header.
const MAX_L3: usize = 4096 - 64 - 320 - 14;

/// Loads the program, refuses it if its test-run can crash the kernel,
/// then runs it on each packet.
pub fn run(req: &TestRequest) -> Result<Vec<PacketOutcome>> {
    let Some(hook) = req.hook else {
        return Err(TestRunError::Seg6local.into());
    };
    system::require_attach_privileges("lwt test")?;
    for (i, p) in req.packets.iter().enumerate() {
        if p.len() > MAX_L3 {
            return Err(TestRunError::TooLong {
                index: i + 1,
                len: p.len(),
            }
            .into());
        }
    }
    let source = match &req.program {
        TestProgram::Source(s) => s.clone(),
        TestProgram::Policy(name) => {
            // The policy's rules as `lwt filter attach` loads them, read
            // only (no lock is taken): its counters and events are not
            // shared, so nothing of the namespace's state is written.
            let ns = Namespace::open_readonly()?;
            let state = NetnsState::view(&ns);
            let policies = Policies::new(&state);
            policies.get(name)?;
            ProgramSource::Builtin(policies.program_for_test(name))
        }
    };
    let loaded = loader::load(&source, hook)?;
    // The name without the `#<id>` the loader adds for routes.
    let program = crate::route::kernel::split_program_name(&loaded.route_name)
        .0
        .to_string();
    // lwt_out has no bpf_lwt_push_encap (the verifier refuses the call).
    let finding = match hook {
        Hook::Out => guard::Finding::Safe,
        Hook::In | Hook::Xmit => guard::check(loaded.fd())?,
    };
    match finding {
        guard::Finding::Safe => {}
        guard::Finding::PushEncap => return Err(TestRunError::PushEncap { program, hook }.into()),
        guard::Finding::Unknown(reason) => {
            return Err(TestRunError::CannotInspect {
                program,
                hook,
                reason,
            }
            .into())
        }
    }
    let fd = loaded.fd().as_raw_fd();
    req.packets
        .iter()
        .enumerate()
        .map(|(i, l3)| run_one(fd, i + 1, l3, req.repeat.max(1)))
        .collect()
}

struct RawRun {
    retval: u32,
    duration: u32,
    data: Vec<u8>,
    ctx: SkBuffCtx,
}

/// `struct __sk_buff` as raw words (192 bytes on 6.x; room for growth,
/// as the kernel refuses a ctx_out smaller than its own struct). Only
/// `mark` (word 2) and `priority` (word 8) are read.
type SkBuffCtx = [u32; 64];
const CTX_MARK: usize = 2;
const CTX_PRIORITY: usize = 8;

fn test_run(fd: i32, index: usize, frame: &[u8], repeat: u32) -> Result<RawRun> {
    let mut data = vec![0u8; 65536];
    // All zero: what the kernel requires of the fields it does not take.
    let mut ctx_in: SkBuffCtx = [0; 64];
    let mut ctx_out: SkBuffCtx = [0; 64];
    // SAFETY: plain data, zero-initialised as libbpf's LIBBPF_OPTS does.
    let mut opts: libbpf_sys::bpf_test_run_opts = unsafe { std::mem::zeroed() };
    opts.sz = size_of::<libbpf_sys::bpf_test_run_opts>() as _;
    opts.data_in = frame.as_ptr().cast();
    opts.data_size_in = frame.len() as u32;
    opts.data_out = data.as_mut_ptr().cast();
    opts.data_size_out = data.len() as u32;
    opts.ctx_in = ctx_in.as_mut_ptr().cast();
    opts.ctx_size_in = size_of::<SkBuffCtx>() as u32;
    opts.ctx_out = ctx_out.as_mut_ptr().cast();
    opts.ctx_size_out = size_of::<SkBuffCtx>() as u32;
    opts.repeat = repeat as _;
    // SAFETY: every pointer in opts is valid for the call's duration.
    let rc = unsafe { libbpf_sys::bpf_prog_test_run_opts(fd, &mut opts) };
    if rc != 0 {
        return Err(TestRunError::Run {
            index,
            reason: std::io::Error::from_raw_os_error(-rc).to_string(),
        }
        .into());
    }
    data.truncate(opts.data_size_out as usize);
    Ok(RawRun {
        retval: opts.retval,
        duration: opts.duration,
        data,
        ctx: ctx_out,
    })
}

fn run_one(fd: i32, index: usize, l3: &[u8], repeat: u32) -> Result<PacketOutcome> {
    let frame = ethernet_frame(l3);
    // One run on a fresh skb for the verdict and what changed.
    let once = test_run(fd, index, &frame, 1)?;
    let ns = if repeat > 1 {
        test_run(fd, index, &frame, repeat)?.duration
    } else {
        once.duration
    };
    // data_out carries the 14 bytes the kernel pushes back (zeroed).
    let out = once.data.get(14..).unwrap_or_default().to_vec();
    let rc = once.retval as i32;
    Ok(PacketOutcome {
        index,
        verdict: verdict_name(rc),
        retval: rc,
        ns: u64::from(ns),
        packet: Summary::of(l3).line(),
        changes: packet::diff(l3, &out),
        mark: once.ctx[CTX_MARK],
        priority: once.ctx[CTX_PRIORITY],
        out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_are_named_as_the_kernel_does() {
        assert_eq!(verdict_name(0), "BPF_OK");
        assert_eq!(verdict_name(2), "BPF_DROP");
        assert_eq!(verdict_name(7), "BPF_REDIRECT");
        assert_eq!(verdict_name(128), "BPF_LWT_REROUTE");
        assert_eq!(verdict_name(1), "1");
        assert_eq!(verdict_name(-1), "-1");
    }
}
