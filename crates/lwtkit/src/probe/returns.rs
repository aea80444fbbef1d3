//! What each return code does on each hook. The verifier accepts any value
//! from these program types, so this cannot be probed: it is read from
//! the kernel source (net/core/lwt_bpf.c `run_lwt_bpf`, `bpf_input`,
//! `bpf_output`, `bpf_xmit`; net/ipv6/seg6_local.c `input_action_end_bpf`),
//! see docs/kernel.md.
use serde::Serialize;

use super::ProgType;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReturnCode {
    /// `BPF_OK`, ..., or `other` for every value not listed.
    #[serde(skip)]
    pub name: &'static str,
    /// The value, `None` for `other`.
    pub value: Option<u32>,
    pub effect: &'static str,
}

const OTHER: &str = "other";

fn rc(name: &'static str, value: Option<u32>, effect: &'static str) -> ReturnCode {
    ReturnCode {
        name,
        value,
        effect,
    }
}

/// The return codes of `ty`, `BPF_OK` first and `other` last.
pub fn of(ty: ProgType) -> Vec<ReturnCode> {
    const OK: Option<u32> = Some(0);
    const DROP: Option<u32> = Some(2);
    const REDIRECT: Option<u32> = Some(7);
    const REROUTE: Option<u32> = Some(128);
    match ty {
        ProgType::LwtIn => vec![
            rc("BPF_OK", OK, "continue: the route's own input (local delivery or forwarding)"),
            rc("BPF_DROP", DROP, "drop the packet (-EPERM)"),
            rc("BPF_REDIRECT", REDIRECT, "not allowed here: the kernel warns once (\"Illegal redirect return code\") and treats it as BPF_OK"),
            rc("BPF_LWT_REROUTE", REROUTE, "look up the input route again for the (possibly rewritten or encapsulated) packet and hand it to that route; a packet that is not IPv4 or IPv6 is dropped (-EAFNOSUPPORT)"),
            rc(OTHER, None, "drop the packet (-EINVAL), the kernel warns once (\"Illegal return value\")"),
        ],
        ProgType::LwtOut => vec![
            rc("BPF_OK", OK, "continue: the route's own output"),
            rc("BPF_DROP", DROP, "drop the packet (-EPERM)"),
            rc("BPF_REDIRECT", REDIRECT, "not allowed here: the kernel warns once (\"Illegal redirect return code\") and treats it as BPF_OK"),
            rc("BPF_LWT_REROUTE", REROUTE, "silently ignored: treated as BPF_OK (bpf_output only checks for errors)"),
            rc(OTHER, None, "drop the packet (-EINVAL), the kernel warns once (\"Illegal return value\")"),
        ],
        ProgType::LwtXmit => vec![
            rc("BPF_OK", OK, "continue to the neighbour output; the packet is dropped (-EINVAL) if the program changed skb->protocol (an encap that changes the family must return BPF_LWT_REROUTE)"),
            rc("BPF_DROP", DROP, "drop the packet (-EPERM)"),
            rc("BPF_REDIRECT", REDIRECT, "send the packet where bpf_redirect()/bpf_clone_redirect() said (skb_do_redirect), the route's output is skipped"),
            rc("BPF_LWT_REROUTE", REROUTE, "look up a new output route for the packet's (new) destination, honouring skb->mark, and send it there (dst_output)"),
            rc(OTHER, None, "drop the packet (-EINVAL), the kernel warns once (\"Illegal return value\")"),
        ],
        ProgType::LwtSeg6local => vec![
            rc("BPF_OK", OK, "look up the next hop for the (advanced) IPv6 destination and forward (seg6_lookup_nexthop)"),
            rc("BPF_DROP", DROP, "drop the packet"),
            rc("BPF_REDIRECT", REDIRECT, "skip the lookup: use the route bpf_lwt_seg6_action() set (END_X, END_T, END_DT6, ...)"),
            rc("BPF_LWT_REROUTE", REROUTE, "not a valid code here: drop, the kernel warns once (\"bpf-seg6local: Illegal return value\")"),
            rc(OTHER, None, "drop, the kernel warns once (\"bpf-seg6local: Illegal return value\"); any code also drops when the program left an invalid SRH"),
        ],
    }
}
