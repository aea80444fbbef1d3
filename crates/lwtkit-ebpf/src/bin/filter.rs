//! Built-in `filter`: judges each packet by a policy's rules (allow, drop,
//! or an action: NAT, mark and reroute, redirect), counts per rule and per
//! attachment, and reports `log` rules' packets through the ring buffer,
//! rate-limited per rule.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::__sk_buff,
    btf_maps::{PerCpuArray, RingBuf},
    helpers::{bpf_ktime_get_ns, bpf_redirect, bpf_skb_load_bytes},
    macros::btf_map,
    programs::SkBuffContext,
};
use lwtkit_common::{
    filter::{
        action_flags as af, action_kind as ak, dim, event_verdict as ev, packet_class as class, rule_flags as rf,
        verdict_slot, ActionRecord, ActionStats, Cell, Event, PolicyConfig, ProgramSpec, RuleStats, EVENT_SNAPLEN,
        HEADER_ACTIONS, HEADER_ACTION_SLOTS,
    },
    maps,
    verdict::{BPF_DROP, BPF_LWT_REROUTE, BPF_OK, BPF_REDIRECT},
};
use lwtkit_ebpf::{
    counters::count,
    gpl_license, lwt_program, map_named,
    matcher::{self, base_of, generation, rule_id, Decision, CELLS, CONFIG, INLINE_RECORDS},
    nat::{icmp_error_v4, icmp_error_v6, is_icmp_error_v4, is_icmp_error_v6, rewrite_v4, rewrite_v6, NatScratch, Side},
    parse::{embedded_flow, parse, parse_lean, PacketKey},
};

/// Per-rule statistics, indexed by counter slot (sized at policy creation).
#[btf_map]
static RULE_STATS: PerCpuArray<RuleStats, 1> = PerCpuArray::new();
map_named!(RULE_STATS, maps::filter::RULE_STATS);

/// What each rule's action did, indexed like RULE_STATS (generation and
/// counter slot), so RULE_STATS keeps its layout.
#[btf_map]
static ACTION_STATS: PerCpuArray<ActionStats, 1> = PerCpuArray::new();
map_named!(ACTION_STATS, maps::filter::ACTION_STATS);

/// The hooks, as events name them.
const IN: u8 = 0;
const OUT: u8 = 1;
const XMIT: u8 = 2;

/// Events of `log` rules (shared by every filter in the namespace).
#[btf_map]
static EVENTS: RingBuf<(), { 1 << 20 }> = RingBuf::new();
map_named!(EVENTS, maps::filter::EVENTS);

const NS_PER_SEC: u64 = 1_000_000_000;

/// What this instance is specialised for, set by user space before load
/// (libbpf freezes the map, so the verifier reads every field as a
/// constant and removes the paths it rules out). The placeholder keeps
/// every path. The section is `lwtkit_common::maps::filter::SPEC_SECTION`.
#[unsafe(no_mangle)]
#[unsafe(link_section = ".rodata.spec")]
static FILTER_SPEC: ProgramSpec = ProgramSpec::GENERIC;
const _: () = assert!(maps::same(".rodata.spec", maps::filter::SPEC_SECTION));

/// The specialisation's fields, each read where it decides (a volatile
/// load: the compiler cannot fold in the placeholder, and the verifier
/// sees the loaded value, not a register the compiler spilled).
#[inline(always)]
fn spec_trees(v6: bool) -> u32 {
    // SAFETY: aligned u32s of a static.
    unsafe {
        if v6 {
            core::ptr::read_volatile(&FILTER_SPEC.v6_trees)
        } else {
            core::ptr::read_volatile(&FILTER_SPEC.v4_trees)
        }
    }
}

/// The rule that `key` meets in generation `gen`, walked as this
/// instance is specialised ([`spec_trees`]). A program with actions
/// (`xmit` only) decides in up to three places (the packet, a later
/// fragment's rewrite, an ICMP error's flow) ahead of the NAT code: its
/// whole walk stays in callbacks (`decide::<0>`), one tree's included.
/// The inline walk and inline leaf records keep precise state that the
/// verifier would carry through all of that, past its 1M-instruction
/// limit and the 512-byte stack.
#[inline(always)]
fn decide(key: &PacketKey, cfg: &PolicyConfig, gen: u32) -> Decision {
    if spec_actions() {
        matcher::decide::<0>(key, cfg, gen, spec_trees)
    } else {
        matcher::decide::<INLINE_RECORDS>(key, cfg, gen, spec_trees)
    }
}

#[inline(always)]
fn spec_log() -> bool {
    // SAFETY: an aligned u32 of a static.
    unsafe { core::ptr::read_volatile(&FILTER_SPEC.log) != 0 }
}

#[inline(always)]
fn spec_actions() -> bool {
    // SAFETY: an aligned u32 of a static.
    unsafe { core::ptr::read_volatile(&FILTER_SPEC.actions) != 0 }
}

#[inline(always)]
fn judge<const HOOK: u8>(ctx: &SkBuffContext) -> i32 {
    let Some(cfg) = CONFIG.get(0) else { return BPF_OK };
    let gen = generation(cfg);
    let len = u64::from(ctx.len());
    let default = if cfg.default_drop != 0 { BPF_DROP } else { BPF_OK };
    let key = if HOOK == XMIT { parse(ctx) } else { parse_lean(ctx) };
    match key.class {
        class::WHOLE => {}
        class::LATER_FRAGMENT => {
            // No L4 header to judge: the datagram's first fragment was.
            if cfg.fragments_drop != 0 {
                count(verdict_slot::DROPPED, ctx.len());
                return BPF_DROP;
            }
            count(verdict_slot::ALLOWED, ctx.len());
            if HOOK == XMIT && spec_actions() {
                return fragment_action(ctx, &key, cfg, gen);
            }
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
    let mut d = decide(&key, cfg, gen);
    // An ICMP error about a translated flow: translated by the flow's rule
    // (then `d` is that rule), or `None` and judged as any packet.
    let flow = if HOOK == XMIT && spec_actions() { error_of_flow(ctx, &key, &mut d, cfg, gen) } else { None };
    let mut verdict = if !d.matched {
        default
    } else if d.flags & rf::DROP != 0 {
        BPF_DROP
    } else {
        BPF_OK
    };
    let mut event = if verdict == BPF_DROP { ev::DROP } else { ev::ALLOW };
    // Slot 0 of the generation counts packets no rule matched (rule slots
    // start at 1; ids, which events carry, are not slots).
    let slot = if d.matched { d.slot } else { 0 };
    let stats_slot = gen.wrapping_mul(cfg.rule_slots).wrapping_add(slot);
    let kind = ((d.flags & rf::ACTION_MASK) >> rf::ACTION_SHIFT) as u8;
    if let Some(done) = flow {
        (verdict, event) = done;
    } else if d.matched && kind != ak::NONE && spec_actions() {
        (verdict, event) = act::<HOOK>(ctx, &key, &d, kind, stats_slot, true);
    }
    if let Some(s) = RULE_STATS.get_ptr_mut(stats_slot) {
        // SAFETY: this CPU's slot; no other writer.
        let s = unsafe { &mut *s };
        s.packets += 1;
        s.bytes += len;
        if d.matched && d.flags & rf::LOG != 0 && spec_log() {
            log_event(ctx, cfg, s, &key, &d, HOOK, event);
        }
    }
    let slot = if verdict == BPF_DROP { verdict_slot::DROPPED } else { verdict_slot::ALLOWED };
    count(slot, ctx.len());
    verdict
}

/// The action of the rule that matched (`d`, its kind `kind`), counted in
/// ACTION_STATS entry `stats_slot`: the program's return code and what the
/// event says. `whole`: the packet has its L4 header (not a later
/// fragment). A rewrite or redirect that fails drops the packet (it would
/// otherwise leave untranslated).
#[inline(always)]
fn act<const HOOK: u8>(ctx: &SkBuffContext, key: &PacketKey, d: &Decision, kind: u8, stats_slot: u32, whole: bool) -> (i32, u8) {
    let stats = ACTION_STATS.get_ptr_mut(stats_slot);
    let tally = |which: Tally| {
        if let Some(s) = stats {
            // SAFETY: this CPU's slot; no other writer.
            let s = unsafe { &mut *s };
            match which {
                Tally::Done => s.done += 1,
                Tally::Failed => s.failed += 1,
                Tally::Loop => s.loops += 1,
            }
        }
    };
    let Some(a) = action_of(d) else {
        tally(Tally::Failed);
        return (BPF_DROP, ev::FAILED);
    };
    match kind {
        ak::SNAT | ak::DNAT => {
            // Attach refuses NAT on other hooks.
            if HOOK != XMIT || (a.flags & af::V6 != 0) != key.v6 {
                tally(Tally::Failed);
                return (BPF_DROP, ev::FAILED);
            }
            let what = u32::from(kind == ak::DNAT) * NAT_DNAT
                | u32::from(whole) * NAT_WHOLE
                | (key.dims[dim::PROTO] & 0xff) << 8
                | (key.dims[dim::SPORT] & 0xff) << 16;
            let done = if key.v6 {
                filter_nat6(ctx.skb.skb, d.base, d.slot, what, key.l4_off)
            } else {
                filter_nat4(ctx.skb.skb, d.base, d.slot, what)
            };
            if done != NAT_DONE {
                tally(Tally::Failed);
                return (BPF_DROP, ev::FAILED);
            }
            tally(Tally::Done);
            // A new destination is routed anew: it may lie on another
            // route than the one the packet was on.
            if kind == ak::DNAT {
                (BPF_LWT_REROUTE, ev::TRANSLATED)
            } else {
                (BPF_OK, ev::TRANSLATED)
            }
        }
        ak::MARK => {
            let reroute = a.flags & af::REROUTE != 0;
            if !reroute {
                ctx.set_mark(a.value);
                tally(Tally::Done);
                return (BPF_OK, ev::MARKED);
            }
            // SAFETY: reads a field of the program's own context.
            let mark = unsafe { (*ctx.skb.skb).mark };
            if mark == a.value {
                // Rerouted here already (a route whose policy marks it
                // again): go on on this route instead of looping.
                tally(Tally::Loop);
                return (BPF_OK, ev::LOOP);
            }
            ctx.set_mark(a.value);
            tally(Tally::Done);
            if HOOK == OUT {
                // `out` ignores BPF_LWT_REROUTE (attach refuses it there).
                return (BPF_OK, ev::MARKED);
            }
            (BPF_LWT_REROUTE, ev::REROUTED)
        }
        ak::REDIRECT if HOOK == XMIT => {
            // SAFETY: a helper call with plain integers.
            let rc = unsafe { bpf_redirect(a.value, 0) };
            if rc as i32 == BPF_REDIRECT {
                tally(Tally::Done);
                (BPF_REDIRECT, ev::REDIRECTED)
            } else {
                tally(Tally::Failed);
                (BPF_DROP, ev::FAILED)
            }
        }
        _ => {
            tally(Tally::Failed);
            (BPF_DROP, ev::FAILED)
        }
    }
}

/// An ICMP or ICMPv6 error (`key`, which the rules judged as `d`) about a
/// flow a snat/dnat rule translates, on xmit in a policy with actions:
/// translated by that rule, the flow's, found by the error's embedded
/// packet reversed ([`filter_flow`]), with the rule's port on the
/// embedded packet. Only when the error's own decision does not stand
/// against it: no rule, or an allow or snat/dnat rule (a drop stays a
/// drop, a mark or redirect its own). Then `d` becomes the flow's rule,
/// whose action counters count it, and the result is the verdict and
/// event; `None` (`d` untouched) when the error is not such, or the flow's
/// translation does not apply to it (the outer address is not the
/// embedded one's counterpart), and it is judged as any packet.
#[inline(always)]
fn error_of_flow(ctx: &SkBuffContext, key: &PacketKey, d: &mut Decision, cfg: &PolicyConfig, gen: u32) -> Option<(i32, u8)> {
    let proto = key.dims[dim::PROTO];
    let icmp_type = key.dims[dim::SPORT];
    let error = if key.v6 { is_icmp_error_v6(proto, icmp_type) } else { is_icmp_error_v4(proto, icmp_type) };
    if !error || !key.l4 {
        return None;
    }
    let kind = ((d.flags & rf::ACTION_MASK) >> rf::ACTION_SHIFT) as u8;
    if d.matched && (d.flags & rf::DROP != 0 || (kind != ak::NONE && kind != ak::SNAT && kind != ak::DNAT)) {
        return None;
    }
    if filter_flow_key(ctx.skb.skb, gen, key.l4_off) != FLOW_FOUND || filter_flow(gen) != FLOW_FOUND {
        return None;
    }
    let s = NAT_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: this CPU's scratch, which filter_flow just wrote.
    let (slot, flags) = unsafe { ((*s).flow_slot, (*s).flow_flags as u16) };
    let fd = Decision { matched: true, slot, flags, base: d.base };
    let fkind = ((flags & rf::ACTION_MASK) >> rf::ACTION_SHIFT) as u8;
    let a = action_of(&fd)?;
    if (a.flags & af::V6 != 0) != key.v6 {
        return None;
    }
    let done = filter_flow_nat(ctx.skb.skb, fd.base, fd.slot, u32::from(fkind == ak::DNAT), key.l4_off);
    if done == NAT_SKIPPED {
        return None;
    }
    *d = fd;
    let stats_slot = gen.wrapping_mul(cfg.rule_slots).wrapping_add(slot);
    if let Some(st) = ACTION_STATS.get_ptr_mut(stats_slot) {
        // SAFETY: this CPU's slot; no other writer.
        let st = unsafe { &mut *st };
        if done == NAT_DONE {
            st.done += 1;
        } else {
            st.failed += 1;
        }
    }
    Some(if done != NAT_DONE {
        (BPF_DROP, ev::FAILED)
    } else if fkind == ak::DNAT {
        (BPF_LWT_REROUTE, ev::TRANSLATED)
    } else {
        (BPF_OK, ev::TRANSLATED)
    })
}

/// [`filter_flow_key`]: the key is built; [`filter_flow`]: the error's
/// flow matched a snat/dnat rule, whose counter slot and flags are in
/// [`NAT_SCRATCH`].
const FLOW_FOUND: u32 = 1;

/// The flow of the ICMP/ICMPv6 error (its ICMP header at `icmp`), as its
/// packets meet the rules: the embedded packet reversed
/// ([`embedded_flow`]), written into [`NAT_SCRATCH`]; [`FLOW_FOUND`] when
/// it is a TCP or UDP packet with its ports and generation `gen` of the
/// policy has actions (else no rule can translate it: 0).
///
/// Global functions, as [`filter_nat4`] and for the same reasons: the
/// parse and the matcher are verified once more, not once per path of
/// `judge`'s, and their frames are beside `judge`'s, not inside. The
/// verifier adds up the frames of a call chain (`judge`, [`filter_flow`],
/// the matcher's two `bpf_loop` callbacks) against 512 bytes: the parse
/// has a function of its own, outside that chain, and the key lives in
/// the scratch map.
#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn filter_flow_key(skb: *mut __sk_buff, gen: u32, icmp: u32) -> u32 {
    let ctx = SkBuffContext::new(skb);
    let Some(cfg) = CONFIG.get(0) else { return 0 };
    let Some(header) = CELLS.get(base_of(cfg, gen)) else { return 0 };
    if header.w[HEADER_ACTION_SLOTS] == 0 {
        return 0;
    }
    let Some(s) = NAT_SCRATCH.get_ptr_mut(0) else { return 0 };
    // SAFETY: this CPU's scratch; nothing else uses it meanwhile.
    let s = unsafe { &mut *s };
    let Ok(version) = ctx.load::<u8>(0) else { return 0 };
    if embedded_flow(&ctx, version >> 4 == 6, icmp as usize, &mut s.flow) {
        FLOW_FOUND
    } else {
        0
    }
}

/// The rule of generation `gen` that the flow [`filter_flow_key`] left in
/// [`NAT_SCRATCH`] meets: [`FLOW_FOUND`] when that is a snat or dnat rule
/// (its slot and flags then in the scratch), 0 otherwise.
#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn filter_flow(gen: u32) -> u32 {
    let Some(cfg) = CONFIG.get(0) else { return 0 };
    let Some(s) = NAT_SCRATCH.get_ptr_mut(0) else { return 0 };
    // SAFETY: this CPU's scratch; nothing else uses it meanwhile.
    let s = unsafe { &mut *s };
    let d = decide(&s.flow, cfg, gen);
    let kind = ((d.flags & rf::ACTION_MASK) >> rf::ACTION_SHIFT) as u8;
    if !d.matched || (kind != ak::SNAT && kind != ak::DNAT) {
        return 0;
    }
    s.flow_slot = d.slot;
    s.flow_flags = u32::from(d.flags);
    FLOW_FOUND
}

/// The ICMP/ICMPv6 error (its ICMP header at `icmp`) translated by its
/// flow's snat (`dnat` 0) or dnat (1) rule in counter slot `slot` of the
/// generation at `base`: the outer address, the embedded packet's opposite
/// address and, for a rule with `port N`, its opposite port, with every
/// checksum ([`icmp_error_v4`], [`icmp_error_v6`]). [`NAT_SKIPPED`] when
/// the translation does not apply to the error (untouched), else as
/// [`filter_nat`].
///
/// A global function of its own rather than a mode of [`filter_nat4`]:
/// with the port path alive the translation's frame grows, and the
/// verifier adds `judge`'s frame and the callee's ("combined stack size
/// ... Too large" past 512 bytes); this one holds the error translations
/// alone.
#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn filter_flow_nat(skb: *mut __sk_buff, base: u32, slot: u32, dnat: u32, icmp: u32) -> u32 {
    let ctx = SkBuffContext::new(skb);
    let d = Decision { matched: true, slot, flags: 0, base };
    let Some(a) = action_of(&d) else { return NAT_FAILED };
    let Some(s) = NAT_SCRATCH.get_ptr_mut(0) else { return NAT_FAILED };
    // SAFETY: this CPU's scratch; nothing else uses it meanwhile.
    let s = unsafe { &mut *s };
    let side = if dnat == 0 { Side::Src } else { Side::Dst };
    let port = if a.flags & af::PORT != 0 { a.port } else { 0 };
    let done = if a.flags & af::V6 != 0 {
        icmp_error_v6(&ctx, side, icmp as usize, &a.addr, a.plen, a.npt_word, a.npt_adj, port, s)
    } else {
        icmp_error_v4(&ctx, side, a.addr[0], a.plen, port, s)
    };
    match done {
        Some(Ok(())) => NAT_DONE,
        Some(Err(())) => NAT_FAILED,
        None => NAT_SKIPPED,
    }
}

/// Scratch memory of [`filter_nat`]'s ICMP error translations, per CPU.
#[btf_map]
static NAT_SCRATCH: PerCpuArray<NatScratch, 1> = PerCpuArray::new();
map_named!(NAT_SCRATCH, maps::filter::NAT_SCRATCH);

/// [`filter_nat`]'s `what`: a dnat (else snat); the packet has its L4
/// header (not a later fragment). Bits 8-15 hold the protocol, 16-23 the
/// ICMP type (the low byte of the key's source port).
const NAT_DNAT: u32 = 1;
const NAT_WHOLE: u32 = 2;
/// [`filter_nat`]'s results: translated; a helper failed (drop).
const NAT_DONE: u32 = 0;
const NAT_FAILED: u32 = 1;
/// [`filter_flow_nat`]'s result when the flow's translation does not
/// apply to the error: nothing done.
const NAT_SKIPPED: u32 = 2;

/// The address translation of the snat/dnat rule in counter slot `slot`
/// of the generation at `base` (its record read here), for a packet as
/// `what` says, its L4 header at `l4_off`: an IPv4 or IPv6 rewrite, or an
/// ICMP/ICMPv6 error translated whole (the embedded packet with it).
///
/// A global BPF function: the verifier checks it once, for any arguments
/// (the context and scalars), instead of once per path the matcher leaves
/// by, which took the program past the verifier's million instructions;
/// and its stack frame is its own (inlined, the translation's buffers and
/// `judge`'s exceeded LLVM's 512-byte frame). The two frames together must
/// still fit 512 bytes (the verifier adds them up): an ICMP error's
/// translation and addresses live in [`NAT_SCRATCH`], and each family has
/// a function (and frame) of its own, [`filter_nat4`] and [`filter_nat6`].
#[inline(always)]
fn filter_nat<const V6: bool>(skb: *mut __sk_buff, base: u32, slot: u32, what: u32, l4_off: u32) -> u32 {
    let ctx = SkBuffContext::new(skb);
    let d = Decision { matched: true, slot, flags: 0, base };
    let Some(a) = action_of(&d) else { return NAT_FAILED };
    let whole = what & NAT_WHOLE != 0;
    let side = if what & NAT_DNAT == 0 { Side::Src } else { Side::Dst };
    // `snat ... port N` rewrites the source port, `dnat ... port N` the
    // destination port; a later fragment carries none.
    let port = if a.flags & af::PORT != 0 && whole { Some(a.port) } else { None };
    let proto = (what >> 8) & 0xff;
    let icmp_type = (what >> 16) & 0xff;
    let done = if V6 {
        let mut error = None;
        if whole && is_icmp_error_v6(proto, icmp_type) {
            if let Some(s) = NAT_SCRATCH.get_ptr_mut(0) {
                // SAFETY: this CPU's scratch; nothing else uses it meanwhile.
                let s = unsafe { &mut *s };
                // An ICMPv6 error carries the packet that caused it, whose
                // addresses mirror the outer ones: translated together.
                error = icmp_error_v6(&ctx, side, l4_off as usize, &a.addr, a.plen, a.npt_word, a.npt_adj, 0, s);
            }
        }
        match error {
            Some(r) => r,
            None => {
                let l4 = if whole { Some((proto as u8, l4_off as usize)) } else { None };
                rewrite_v6(&ctx, side, &a.addr, a.plen, a.npt_word, a.npt_adj, l4, port)
            }
        }
    } else if whole && is_icmp_error_v4(proto, icmp_type) {
        // An ICMP error carries the packet that caused it, whose
        // addresses mirror the outer ones: translated together.
        let error = match NAT_SCRATCH.get_ptr_mut(0) {
            // SAFETY: this CPU's scratch; nothing else uses it meanwhile.
            Some(s) => icmp_error_v4(&ctx, side, a.addr[0], a.plen, 0, unsafe { &mut *s }),
            None => None,
        };
        error.unwrap_or_else(|| rewrite_v4(&ctx, side, a.addr[0], a.plen, port))
    } else {
        rewrite_v4(&ctx, side, a.addr[0], a.plen, port)
    };
    if done.is_ok() {
        NAT_DONE
    } else {
        NAT_FAILED
    }
}

/// [`filter_nat`] of an IPv4 packet (whose L4 offset the rewrite reads
/// from the header: an argument it did not use would be left unset by the
/// compiler, which the verifier refuses).
#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn filter_nat4(skb: *mut __sk_buff, base: u32, slot: u32, what: u32) -> u32 {
    filter_nat::<false>(skb, base, slot, what, 0)
}

/// [`filter_nat`] of an IPv6 packet.
#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn filter_nat6(skb: *mut __sk_buff, base: u32, slot: u32, what: u32, l4_off: u32) -> u32 {
    filter_nat::<true>(skb, base, slot, what, l4_off)
}

/// Which ActionStats counter an action moves.
#[derive(Clone, Copy)]
enum Tally {
    Done,
    Failed,
    Loop,
}

/// The action record of the matched rule's counter slot, from the
/// generation's action table (read only after a match that has one).
#[inline(always)]
fn action_of(d: &Decision) -> Option<&'static ActionRecord> {
    let header = CELLS.get(d.base)?;
    if d.slot >= header.w[HEADER_ACTION_SLOTS] {
        return None;
    }
    let c: &Cell = CELLS.get(d.base.wrapping_add(header.w[HEADER_ACTIONS]).wrapping_add(d.slot))?;
    // SAFETY: an action-table cell is an ActionRecord (same size, plain data).
    Some(unsafe { &*(c as *const Cell).cast::<ActionRecord>() })
}

/// A later fragment passed by `--fragments pass`, on xmit: in a policy
/// with actions, the rule a packet with its addresses and protocol (and no
/// L4 header) meets gives its address rewrite, so the fragments of a
/// translated datagram are translated alike. Nothing else happens to it.
#[inline(always)]
fn fragment_action(ctx: &SkBuffContext, key: &PacketKey, cfg: &PolicyConfig, gen: u32) -> i32 {
    let Some(header) = CELLS.get(base_of(cfg, gen)) else { return BPF_OK };
    if header.w[HEADER_ACTION_SLOTS] == 0 {
        return BPF_OK;
    }
    let d = decide(key, cfg, gen);
    let kind = ((d.flags & rf::ACTION_MASK) >> rf::ACTION_SHIFT) as u8;
    if !d.matched || (kind != ak::SNAT && kind != ak::DNAT) {
        return BPF_OK;
    }
    let stats_slot = gen.wrapping_mul(cfg.rule_slots).wrapping_add(d.slot);
    act::<XMIT>(ctx, key, &d, kind, stats_slot, false).0
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
fn log_event(ctx: &SkBuffContext, cfg: &PolicyConfig, s: &mut RuleStats, key: &PacketKey, d: &Decision, hook: u8, event: u8) {
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
    ev.verdict = event;
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
    judge::<IN>(&ctx)
}
#[inline(always)]
fn judge_out(ctx: SkBuffContext) -> i32 {
    judge::<OUT>(&ctx)
}
#[inline(always)]
fn judge_xmit(ctx: SkBuffContext) -> i32 {
    judge::<XMIT>(&ctx)
}

lwt_program!(filter_in, "lwt_in", judge_in);
lwt_program!(filter_out, "lwt_out", judge_out);
lwt_program!(filter_xmit, "lwt_xmit", judge_xmit);

gpl_license!();
