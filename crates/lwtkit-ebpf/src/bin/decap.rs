//! Built-in `decap`: a tc (tcx) ingress program that strips the outer
//! headers lwtkit's `encap` pushes (IP-in-IP in all four family mixes,
//! GRE, FOU, GUE) so a peer needs no kernel tunnel module. The inner
//! packet is re-injected into the device's ingress, where the stack sees
//! it with the right protocol.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, BPF_F_INGRESS, TC_ACT_OK, TC_ACT_SHOT},
    btf_maps::{Array, PerCpuArray},
    helpers::{bpf_redirect, bpf_skb_adjust_room},
    macros::btf_map,
    programs::TcContext,
};
use lwtkit_common::{
    encap::{decap, DecapConfig},
    Counters,
};
use lwtkit_ebpf::gpl_license;

#[btf_map]
static DECAP_CONFIG: Array<DecapConfig, 1> = Array::new();

/// Packets and bytes decapsulated, and packets refused (slot 1).
#[btf_map]
static DECAP_STATS: PerCpuArray<Counters, 2> = PerCpuArray::new();

const ETH_HLEN: usize = 14;

fn bump(slot: u32, len: u32) {
    if let Some(c) = DECAP_STATS.get_ptr_mut(slot) {
        // SAFETY: this CPU's slot.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += u64::from(len);
        }
    }
}

/// Outer header length and inner family (true: IPv6) of a tunnel packet
/// this device accepts, or None to leave the packet alone.
#[inline(always)]
fn outer(ctx: &TcContext, cfg: &DecapConfig) -> Option<(u32, bool)> {
    let eth: [u8; 14] = ctx.load(0).ok()?;
    let (l3len, proto) = match u16::from_be_bytes([eth[12], eth[13]]) {
        0x0800 => {
            let h: [u8; 20] = ctx.load(ETH_HLEN).ok()?;
            if h[0] != 0x45 || u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0 {
                return None;
            }
            (20u32, h[9])
        }
        0x86dd => {
            let h: [u8; 40] = ctx.load(ETH_HLEN).ok()?;
            (40u32, h[6])
        }
        _ => return None,
    };
    let at = ETH_HLEN + l3len as usize;
    match proto {
        4 | 41 if cfg.kinds & decap::IP_IN_IP != 0 => Some((l3len, proto == 41)),
        47 if cfg.kinds & decap::GRE != 0 => {
            let g: [u8; 4] = ctx.load(at).ok()?;
            if g[0] != 0 || g[1] != 0 {
                return None;
            }
            match u16::from_be_bytes([g[2], g[3]]) {
                0x0800 => Some((l3len + 4, false)),
                0x86dd => Some((l3len + 4, true)),
                _ => None,
            }
        }
        17 => {
            let u: [u8; 12] = ctx.load(at).ok()?;
            let dport = u16::from_be_bytes([u[2], u[3]]);
            if cfg.fou_port != 0 && dport == cfg.fou_port && cfg.kinds & decap::FOU != 0 {
                Some((l3len + 8, u[8] >> 4 == 6))
            } else if cfg.gue_port != 0 && dport == cfg.gue_port && cfg.kinds & decap::GUE != 0 && u[8] == 0 {
                Some((l3len + 12, u[9] == 41))
            } else {
                None
            }
        }
        _ => None,
    }
}

#[unsafe(no_mangle)]
#[unsafe(link_section = "tcx/ingress")]
pub fn decap_ingress(skb: *mut aya_ebpf::bindings::__sk_buff) -> i32 {
    let ctx = TcContext::new(skb);
    let Some(cfg) = DECAP_CONFIG.get(0) else { return TC_ACT_OK as i32 };
    let Some((strip, inner_v6)) = outer(&ctx, cfg) else { return TC_ACT_OK as i32 };
    // SAFETY: shrinking room right after the MAC header by the outer headers.
    let rc = unsafe { bpf_skb_adjust_room(skb, -(strip as i32), BPF_ADJ_ROOM_MAC, 0) };
    let ethertype: [u8; 2] = if inner_v6 { [0x86, 0xdd] } else { [0x08, 0x00] };
    if rc != 0 || ctx.store(12, &ethertype, 0).is_err() {
        bump(1, ctx.len());
        return TC_ACT_SHOT as i32;
    }
    bump(0, ctx.len());
    // Back into this device's ingress: the stack re-reads the EtherType.
    // SAFETY: plain helper call on this skb's own device.
    let ifindex = unsafe { (*skb).ifindex };
    unsafe { bpf_redirect(ifindex, u64::from(BPF_F_INGRESS)) as i32 }
}

gpl_license!();
