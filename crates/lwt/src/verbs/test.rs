//! `lwt test --hook H (--obj FILE | --builtin NAME | --policy NAME | --pinned PATH) (--pcap FILE | --packet SPEC...)`
use lwtkit::{
    loader::{BuiltinSpec, ProgramSource},
    test_run::{self, packet, TestProgram, TestRequest},
    Hook,
};

use super::Output;
use crate::args::{TestArgs, TestHookArg};

pub fn run(a: TestArgs, out: &Output) -> anyhow::Result<()> {
    let hook = match a.hook {
        TestHookArg::In => Some(Hook::In),
        TestHookArg::Out => Some(Hook::Out),
        TestHookArg::Xmit => Some(Hook::Xmit),
        TestHookArg::Seg6local => None,
    };
    let program = match (a.obj, a.pinned, a.builtin, a.policy) {
        (Some(path), None, None, None) => TestProgram::Source(ProgramSource::Object {
            path,
            section: a.section,
            program: a.program,
            prog_type: a.prog_type.map(Into::into),
        }),
        (None, Some(p), None, None) => TestProgram::Source(ProgramSource::Pinned(p)),
        (None, None, Some(b), None) => {
            TestProgram::Source(ProgramSource::Builtin(BuiltinSpec::standalone(&b)?))
        }
        (None, None, None, Some(name)) => TestProgram::Policy(name),
        _ => unreachable!("clap's `source` group makes the four exclusive and one required"),
    };
    let packets = match a.pcap {
        Some(path) => packet::read_pcap(&path)?,
        None => a
            .packet
            .iter()
            .map(|s| packet::from_spec(s))
            .collect::<Result<_, _>>()?,
    };
    let req = TestRequest {
        hook,
        program,
        packets,
        repeat: u32::try_from(a.repeat).unwrap_or(u32::MAX),
    };
    let results = test_run::run(&req)?;
    if let Some(path) = &a.out {
        let outs: Vec<&[u8]> = results.iter().map(|r| r.out.as_slice()).collect();
        packet::write_pcap(path, &outs)?;
    }
    out.emit(&results, |rs| {
        let mut text = String::new();
        for r in rs {
            text.push_str(&format!(
                "{:>3}  {}  {} ({})  {} ns\n",
                r.index, r.packet, r.verdict, r.retval, r.ns
            ));
            for c in &r.changes {
                text.push_str(&format!("       {} {} -> {}\n", c.field, c.before, c.after));
            }
            if r.mark != 0 {
                text.push_str(&format!("       mark 0 -> {:#x}\n", r.mark));
            }
            if r.priority != 0 {
                text.push_str(&format!("       priority 0 -> {}\n", r.priority));
            }
        }
        text
    })
}
