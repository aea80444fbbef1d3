//! `lwt trace`'s kernel side: tracing programs only, no LWT ones.
//! - `trace_verdict`, fexit on the traced LWT program (one instance per
//!   program, for programs with BTF, where the kernel allows trampolines):
//!   the skb and the program's exact return code.
//! - `trace_queued` (tp_btf/net_dev_queue) and `trace_dropped`
//!   (tp_btf/kfree_skb): for any program, with or without BTF. A packet
//!   queued on the traced route's device with a destination in its
//!   prefix is reported as having passed the route's out/xmit programs
//!   (and its in program when it was received, i.e. forwarded); a packet the kernel frees from
//!   inside `bpf_input/bpf_output/bpf_xmit` (net/core/lwt_bpf.c) whose
//!   route is in this namespace is reported as dropped by that hook's
//!   program, with the program's id and the name the route carries.
//! - `trace_delivered` (a netfilter program on LOCAL_IN, first of the
//!   namespace's hooks): a packet delivered locally through a route whose
//!   `in` program is traced passed that program (`ip_local_deliver` /
//!   `ip6_input` run after `lwt_input`, the route still on the skb).
//! Kernel structures are read with bpf_probe_read_kernel at offsets user
//! space takes from the kernel's BTF (TRACE_CONFIG).
#![no_std]
#![no_main]

use aya_ebpf::{
    btf_maps::{Array, PerCpuArray, RingBuf},
    helpers::{
        bpf_ktime_get_ns, bpf_probe_read_kernel, bpf_probe_read_kernel_buf,
        bpf_probe_read_kernel_str_bytes,
    },
    macros::btf_map,
};
use lwtkit_common::trace::{self, source, TraceConfig, TraceEvent};
use lwtkit_ebpf::{gpl_license, map_named};


#[btf_map]
static TRACE_CONFIG: Array<TraceConfig, 1> = Array::new();
map_named!(TRACE_CONFIG, trace::CONFIG);

#[btf_map]
static TRACE_EVENTS: RingBuf<(), { 1 << 20 }> = RingBuf::new();
map_named!(TRACE_EVENTS, trace::EVENTS);

#[btf_map]
static TRACE_LOST: PerCpuArray<u64, 1> = PerCpuArray::new();
map_named!(TRACE_LOST, trace::LOST);

/// `LWTUNNEL_ENCAP_BPF` (include/uapi/linux/lwtunnel.h).
const ENCAP_BPF: u16 = 6;

#[inline(always)]
fn read<T>(addr: u64) -> Option<T> {
    if addr == 0 {
        return None;
    }
    // SAFETY: probe_read faults safely on a bad address.
    unsafe { bpf_probe_read_kernel(addr as *const T) }.ok()
}

/// The `n`th u64 of a tracing program's context, read as a plain number
/// (not as the verifier's typed pointer, so offsets can be added to it).
#[inline(always)]
fn arg(ctx: *const u64, n: usize) -> Option<u64> {
    // SAFETY: ctx holds the traced function's arguments (and, for fexit,
    // its return value after them).
    unsafe { bpf_probe_read_kernel(ctx.add(n)) }.ok()
}

/// The skb's route (`skb_dst`: `_skb_refdst` without its flag bit).
#[inline(always)]
fn dst_of(cfg: &TraceConfig, skb: u64) -> Option<u64> {
    let refdst: u64 = read(skb + u64::from(cfg.skb_refdst))?;
    Some(refdst & !1)
}

/// Whether the route's device lives in the traced namespace.
#[inline(always)]
fn in_netns(cfg: &TraceConfig, dst: u64) -> bool {
    let inum = (|| {
        let dev: u64 = read(dst + u64::from(cfg.dst_dev))?;
        let net: u64 = read(dev + u64::from(cfg.dev_nd_net))?;
        read::<u32>(net + u64::from(cfg.net_inum))
    })();
    inum == Some(cfg.netns_inum)
}

/// Where the skb's IP header starts (`head + network_header`).
#[inline(always)]
fn l3_of(cfg: &TraceConfig, skb: u64) -> Option<u64> {
    let head: u64 = read(skb + u64::from(cfg.skb_head))?;
    let nh: u16 = read(skb + u64::from(cfg.skb_network_header))?;
    Some(head + u64::from(nh))
}

/// Sends one event; `l3` is [`l3_of`] the skb, `slot` the route's
/// `struct bpf_lwt_prog` for the hook (tracepoint events) or 0 (fexit).
#[inline(always)]
fn emit(
    cfg: &TraceConfig,
    skb: u64,
    l3: u64,
    hook: u32,
    retval: i32,
    src: u32,
    slot: u64,
    ifindex: u32,
    iif: u32,
) -> Option<()> {
    // From the IP header: on a device queue skb->data is at L2 already.
    let data: u64 = read(skb + u64::from(cfg.skb_data))?;
    let len: u32 = read(skb + u64::from(cfg.skb_len))?;
    let len = if l3 >= data && l3 - data < 256 {
        len.saturating_sub((l3 - data) as u32)
    } else {
        len
    };
    let data = if l3 >= data && l3 - data < 256 { l3 } else { data };
    let Some(mut entry) = TRACE_EVENTS.reserve_untyped::<TraceEvent>(0) else {
        if let Some(lost) = TRACE_LOST.get_ptr_mut(0) {
            // SAFETY: this CPU's slot; no other writer.
            unsafe { *lost += 1 };
        }
        return None;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: the reserved record is ours until submitted.
    unsafe {
        (*ev).time_ns = bpf_ktime_get_ns();
        (*ev).hook = hook;
        (*ev).retval = retval;
        (*ev).len = len;
        (*ev).source = src;
        (*ev).ifindex = ifindex;
        (*ev).iif = iif;
        (*ev).prog_id = cfg.prog_id;
        (*ev).name[0] = 0;
        if slot != 0 {
            let id = read::<u64>(slot)
                .and_then(|prog| read::<u64>(prog + u64::from(cfg.prog_aux)))
                .and_then(|aux| read::<u32>(aux + u64::from(cfg.aux_id)));
            (*ev).prog_id = id.unwrap_or(0);
            if let Some(name) = read::<u64>(slot + 8) {
                let _ = bpf_probe_read_kernel_str_bytes(name as *const u8, &mut (*ev).name);
            }
        }
        // A whole snapshot: bytes past the packet's end are the skb's
        // tailroom, and user space keeps only `caplen` of them.
        (*ev).caplen = if bpf_probe_read_kernel_buf(data as *const u8, &mut (*ev).data).is_ok() {
            len.min(trace::SNAPLEN as u32)
        } else {
            0
        };
    }
    entry.submit(0);
    Some(())
}

#[unsafe(no_mangle)]
#[unsafe(link_section = "fexit/lwt_prog")]
pub fn trace_verdict(ctx: *const u64) -> i32 {
    let _ = verdict(ctx);
    0
}

#[inline(always)]
fn verdict(ctx: *const u64) -> Option<()> {
    let cfg = TRACE_CONFIG.get(0)?;
    let skb = arg(ctx, 0)?;
    // The LWT program's one argument, then its return value.
    let retval = arg(ctx, 1)? as i32;
    let dst = dst_of(cfg, skb)?;
    if !in_netns(cfg, dst) {
        return None;
    }
    emit(cfg, skb, l3_of(cfg, skb)?, cfg.hook, retval, source::FEXIT, 0, 0, 0)
}

/// The route's `struct bpf_lwt` if the skb's route has a BPF encap and
/// lives in the traced namespace.
#[inline(always)]
fn bpf_lwt(cfg: &TraceConfig, skb: u64) -> Option<(u64, u64)> {
    let dst = dst_of(cfg, skb)?;
    let state: u64 = read(dst + u64::from(cfg.dst_lwtstate))?;
    let ty: u16 = read(state + u64::from(cfg.lwt_type))?;
    if ty != ENCAP_BPF || !in_netns(cfg, dst) {
        return None;
    }
    Some((dst, state + u64::from(cfg.lwt_data)))
}

/// `struct bpf_lwt { struct bpf_lwt_prog in, out, xmit; int family; }`,
/// `struct bpf_lwt_prog { struct bpf_prog *prog; char *name; }`.
#[inline(always)]
fn slot(lwt: u64, hook: u32) -> u64 {
    lwt + 16 * u64::from(hook - 1)
}

/// `TP_PROTO(struct sk_buff *skb)`
#[unsafe(no_mangle)]
#[unsafe(link_section = "tp_btf/net_dev_queue")]
pub fn trace_queued(ctx: *const u64) -> i32 {
    let _ = queued(ctx);
    0
}

#[inline(always)]
fn queued(ctx: *const u64) -> Option<()> {
    let cfg = TRACE_CONFIG.get(0)?;
    if cfg.hooks & (1 << 1 | 1 << 2 | 1 << 3) == 0 {
        return None;
    }
    let skb = arg(ctx, 0)?;
    let dev: u64 = read(skb + u64::from(cfg.skb_dev))?;
    let net: u64 = read(dev + u64::from(cfg.dev_nd_net))?;
    if read::<u32>(net + u64::from(cfg.net_inum)) != Some(cfg.netns_inum) {
        return None;
    }
    let ifindex: u32 = read(dev + u64::from(cfg.dev_ifindex))?;
    if !cfg.oifs.contains(&ifindex) {
        return None;
    }
    let l3 = l3_of(cfg, skb)?;
    if !to_prefix(cfg, l3)? {
        return None;
    }
    let iif: u32 = read(skb + u64::from(cfg.skb_iif)).unwrap_or(0);
    emit(cfg, skb, l3, 0, 0, source::QUEUED, 0, ifindex, iif)
}

/// Whether the destination of the packet whose IP header is at `l3` lies
/// in the traced prefix (so only the traced route's packets reach user space).
#[inline(always)]
fn to_prefix(cfg: &TraceConfig, l3: u64) -> Option<bool> {
    let version = read::<u8>(l3)? >> 4;
    let (at, bytes) = match version {
        4 if cfg.family == 4 => (16, 4),
        6 if cfg.family == 6 => (24, 16),
        _ => return Some(false),
    };
    let dst: [u8; 16] = read(l3 + at)?;
    let mut left = cfg.plen.min(bytes * 8);
    for i in 0..16 {
        if left == 0 {
            break;
        }
        let bits = left.min(8);
        let mask = (0xff00u16 >> bits) as u8;
        if (dst[i] ^ cfg.prefix[i]) & mask != 0 {
            return Some(false);
        }
        left -= bits;
    }
    Some(true)
}

/// `NF_ACCEPT` (include/uapi/linux/netfilter.h): the tracer never changes
/// what happens to a packet.
const NF_ACCEPT: i32 = 1;

/// `struct bpf_nf_ctx { const struct nf_hook_state *state; struct sk_buff *skb; }`
/// (include/net/netfilter/nf_bpf_link.h), on LOCAL_IN.
#[unsafe(no_mangle)]
#[unsafe(link_section = "netfilter")]
pub fn trace_delivered(ctx: *const u64) -> i32 {
    let _ = delivered(ctx);
    NF_ACCEPT
}

#[inline(always)]
fn delivered(ctx: *const u64) -> Option<()> {
    let cfg = TRACE_CONFIG.get(0)?;
    if cfg.hooks & (1 << 1) == 0 {
        return None;
    }
    let skb = arg(ctx, 1)?;
    let (_, lwt) = bpf_lwt(cfg, skb)?;
    let slot = slot(lwt, 1);
    let l3 = l3_of(cfg, skb)?;
    if read::<u64>(slot).unwrap_or(0) == 0 || !to_prefix(cfg, l3)? {
        return None;
    }
    let iif: u32 = read(skb + u64::from(cfg.skb_iif)).unwrap_or(0);
    emit(cfg, skb, l3, 1, 0, source::DELIVERED, slot, 0, iif)
}

/// `TP_PROTO(struct sk_buff *skb, void *location, enum skb_drop_reason
/// reason, struct sock *rx_sk)`
#[unsafe(no_mangle)]
#[unsafe(link_section = "tp_btf/kfree_skb")]
pub fn trace_dropped(ctx: *const u64) -> i32 {
    let _ = dropped(ctx);
    0
}

#[inline(always)]
fn dropped(ctx: *const u64) -> Option<()> {
    let cfg = TRACE_CONFIG.get(0)?;
    let location = arg(ctx, 1)?;
    let mut hook = u32::MAX;
    for r in cfg.ranges.iter() {
        if r[0] != 0 && location >= r[0] && location < r[1] {
            hook = r[2] as u32;
        }
    }
    if hook == u32::MAX {
        return None;
    }
    let skb = arg(ctx, 0)?;
    let (_, lwt) = bpf_lwt(cfg, skb)?;
    if hook == 0 {
        // run_lwt_bpf serves every hook: name the route's first traced program.
        for h in 1..=3u32 {
            if hook == 0
                && cfg.hooks & (1 << h) != 0
                && read::<u64>(slot(lwt, h)).unwrap_or(0) != 0
            {
                hook = h;
            }
        }
    }
    if hook == 0 || hook > 3 || cfg.hooks & (1 << hook) == 0 {
        return None;
    }
    emit(cfg, skb, l3_of(cfg, skb)?, hook, 2, source::FREED, slot(lwt, hook), 0, 0)
}

gpl_license!();
