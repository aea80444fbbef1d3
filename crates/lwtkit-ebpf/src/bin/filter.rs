//! Built-in `filter`: judges each packet by a policy's rules (allow or
//! drop), counts per rule and per attachment, and reports `log` rules'
//! packets through the ring buffer, rate-limited per rule.
#![no_std]
#![no_main]

use aya_ebpf::{
    btf_maps::{PerCpuArray, RingBuf},
    helpers::{bpf_ktime_get_ns, bpf_skb_load_bytes},
    macros::btf_map,
    programs::SkBuffContext,
};
use lwtkit_common::{
    filter::{dim, packet_class as class, rule_flags as rf, verdict_slot, Event, PolicyConfig, RuleStats, EVENT_SNAPLEN},
    maps,
    verdict::{BPF_DROP, BPF_OK},
};
use lwtkit_ebpf::{
    counters::count,
    gpl_license, lwt_program, map_named,
    matcher::{decide, generation, rule_id, Decision, CONFIG},
    parse::{parse, PacketKey},
};

/// Per-rule statistics, indexed by counter slot (sized at policy creation).
#[btf_map]
static RULE_STATS: PerCpuArray<RuleStats, 1> = PerCpuArray::new();
map_named!(RULE_STATS, maps::filter::RULE_STATS);

/// Events of `log` rules (shared by every filter in the namespace).
#[btf_map]
static EVENTS: RingBuf<(), { 1 << 20 }> = RingBuf::new();
map_named!(EVENTS, maps::filter::EVENTS);

const NS_PER_SEC: u64 = 1_000_000_000;

#[inline(always)]
fn judge(ctx: &SkBuffContext, hook: u8) -> i32 {
    let Some(cfg) = CONFIG.get(0) else { return BPF_OK };
    let gen = generation(cfg);
    let len = u64::from(ctx.len());
    let default = if cfg.default_drop != 0 { BPF_DROP } else { BPF_OK };
    let key = parse(ctx);
    match key.class {
        class::WHOLE => {}
        class::LATER_FRAGMENT => {
            // No L4 header to judge: the datagram's first fragment was.
            if cfg.fragments_drop != 0 {
                count(verdict_slot::DROPPED, ctx.len());
                return BPF_DROP;
            }
            count(verdict_slot::ALLOWED, ctx.len());
            return BPF_OK;
        }
        class::MALFORMED if cfg.malformed_default != 0 => {
            count(verdict_slot::MALFORMED, ctx.len());
            count_default(cfg, gen, len);
            return default;
        }
        _ => {
            count(verdict_slot::MALFORMED, ctx.len());
            return BPF_DROP;
        }
    }
    let d = decide(&key, cfg, gen);
    let verdict = if !d.matched {
        default
    } else if d.flags & rf::DROP != 0 {
        BPF_DROP
    } else {
        BPF_OK
    };
    // Slot 0 of the generation counts packets no rule matched (rule slots
    // start at 1; ids, which events carry, are not slots).
    let slot = if d.matched { d.slot } else { 0 };
    let stats_slot = gen.wrapping_mul(cfg.rule_slots).wrapping_add(slot);
    if let Some(s) = RULE_STATS.get_ptr_mut(stats_slot) {
        // SAFETY: this CPU's slot; no other writer.
        let s = unsafe { &mut *s };
        s.packets += 1;
        s.bytes += len;
        if d.matched && d.flags & rf::LOG != 0 {
            log_event(ctx, cfg, s, &key, &d, hook, verdict);
        }
    }
    let slot = if verdict == BPF_DROP { verdict_slot::DROPPED } else { verdict_slot::ALLOWED };
    count(slot, ctx.len());
    verdict
}

/// Slot 0 of the generation's rule counters: packets the default judged.
#[inline(always)]
fn count_default(cfg: &PolicyConfig, gen: u32, len: u64) {
    if let Some(s) = RULE_STATS.get_ptr_mut(gen.wrapping_mul(cfg.rule_slots)) {
        // SAFETY: this CPU's slot; no other writer.
        unsafe {
            (*s).packets += 1;
            (*s).bytes += len;
        }
    }
}

/// Token bucket per rule and CPU: `log_rate` events per second, bursts of
/// `log_burst`; what does not fit is counted as suppressed.
#[inline(always)]
fn log_event(ctx: &SkBuffContext, cfg: &PolicyConfig, s: &mut RuleStats, key: &PacketKey, d: &Decision, hook: u8, verdict: i32) {
    let now = unsafe { bpf_ktime_get_ns() };
    let elapsed = now.saturating_sub(s.last_ns).min(10 * NS_PER_SEC);
    s.last_ns = now;
    let cap = u64::from(cfg.log_burst) * NS_PER_SEC;
    s.tokens = (s.tokens + elapsed * u64::from(cfg.log_rate)).min(cap);
    if s.tokens < NS_PER_SEC {
        s.suppressed += 1;
        return;
    }
    let Some(mut entry) = EVENTS.reserve_untyped::<Event>(0) else {
        s.suppressed += 1;
        return;
    };
    s.tokens -= NS_PER_SEC;
    s.logged += 1;
    // SAFETY: the reserved entry is Event-sized and only written here.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    ev.time_ns = now;
    ev.policy_id = cfg.policy_id;
    ev.rule_id = rule_id(d);
    ev.hook = hook;
    ev.verdict = u8::from(verdict == BPF_DROP);
    ev.family = if key.v6 { 6 } else { 4 };
    ev.proto = key.dims[dim::PROTO] as u8;
    ev.sport = key.dims[dim::SPORT] as u16;
    ev.dport = key.dims[dim::DPORT] as u16;
    let len = ctx.len();
    ev.len = len;
    for i in 0..4 {
        ev.src[4 * i..4 * i + 4].copy_from_slice(&key.dims[dim::SRC0 + i].to_be_bytes());
        ev.dst[4 * i..4 * i + 4].copy_from_slice(&key.dims[dim::DST0 + i].to_be_bytes());
    }
    ev.caplen = snapshot(ctx, &mut ev.data);
    entry.submit(0);
}

/// Copies the first bytes of the packet (from L3) into `data`; returns how
/// many. The length is kept provably in 1..=EVENT_SNAPLEN for the verifier.
#[inline(always)]
fn snapshot(ctx: &SkBuffContext, data: &mut [u8; EVENT_SNAPLEN]) -> u32 {
    let n = ctx.len().min(EVENT_SNAPLEN as u32);
    if n == 0 {
        return 0;
    }
    // SAFETY: `data` holds EVENT_SNAPLEN bytes and 1 <= n <= EVENT_SNAPLEN.
    let rc = unsafe { bpf_skb_load_bytes(ctx.skb.skb.cast(), 0, data.as_mut_ptr().cast(), n) };
    if rc == 0 {
        n
    } else {
        0
    }
}

#[inline(always)]
fn judge_in(ctx: SkBuffContext) -> i32 {
    judge(&ctx, 0)
}
#[inline(always)]
fn judge_out(ctx: SkBuffContext) -> i32 {
    judge(&ctx, 1)
}
#[inline(always)]
fn judge_xmit(ctx: SkBuffContext) -> i32 {
    judge(&ctx, 2)
}

lwt_program!(filter_in, "lwt_in", judge_in);
lwt_program!(filter_out, "lwt_out", judge_out);
lwt_program!(filter_xmit, "lwt_xmit", judge_xmit);

gpl_license!();
