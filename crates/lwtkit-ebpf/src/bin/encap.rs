//! Built-in `encap`: pushes the outer headers of the tunnel that the
//! encapsulation trie holds for the packet's destination in the routing
//! table of its route, then asks for a new route lookup of the outer
//! packet. A program cannot see which route (or table) invoked it, so the
//! table is a load-time constant: one loaded instance per table serves
//! every route of that table; changing a remote is a map update.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::bpf_lwt_encap_mode::BPF_LWT_ENCAP_IP,
    btf_maps::{lpm_trie::Key, LpmTrie, PerCpuArray},
    helpers::{bpf_get_hash_recalc, bpf_get_prandom_u32, bpf_lwt_push_encap},
    macros::btf_map,
    programs::SkBuffContext,
};
use lwtkit_common::{
    encap::{flags, EncapEntry, EncapStats, EncapKey, MAX_HEADER, MAX_TUNNELS, NO_TUNNEL_SLOT},
    maps,
    verdict::{BPF_DROP, BPF_LWT_REROUTE},
};
use lwtkit_ebpf::{gpl_license, lwt_program, map_named};

#[btf_map]
static TUNNELS: LpmTrie<[u8; EncapKey::DATA_LEN], EncapEntry, { MAX_TUNNELS as usize }> =
    LpmTrie::new();
map_named!(TUNNELS, maps::encap::TUNNELS);

/// The table of the routes this instance serves, set by user space before
/// load (libbpf freezes the map, so the verifier reads it as a constant).
/// The section is `lwtkit_common::maps::encap::TABLE_SECTION`.
#[unsafe(no_mangle)]
#[unsafe(link_section = ".rodata.table")]
static ENCAP_TABLE: u32 = 0;
const _: () = assert!(maps::same(".rodata.table", maps::encap::TABLE_SECTION));

#[btf_map]
static TUNNEL_STATS: PerCpuArray<EncapStats, { MAX_TUNNELS as usize }> = PerCpuArray::new();
map_named!(TUNNEL_STATS, maps::encap::TUNNEL_STATS);

#[inline(always)]
fn stats(slot: u32) -> Option<&'static mut EncapStats> {
    // SAFETY: this CPU's slot; no other writer.
    TUNNEL_STATS.get_ptr_mut(slot).map(|p| unsafe { &mut *p })
}

#[inline(always)]
fn encapsulate(ctx: SkBuffContext) -> i32 {
    let len = ctx.len();
    // One load covers an IPv4 header; IPv6 adds the destination's bytes.
    let Ok(h) = ctx.load::<[u8; 20]>(0) else { return malformed() };
    let mut key = Key::new(0, [0u8; EncapKey::DATA_LEN]);
    // SAFETY: a plain read of a u32 static; volatile so the compiler cannot
    // fold in the placeholder that user space overwrites.
    let table = unsafe { core::ptr::read_volatile(&ENCAP_TABLE) };
    key.data[0..4].copy_from_slice(&table.to_be_bytes());
    let (ttl, tos) = match h[0] >> 4 {
        6 => {
            let Ok(rest) = ctx.load::<[u8; 20]>(20) else { return malformed() };
            key.data[7] = 6;
            key.data[8..24].copy_from_slice(&rest[4..20]);
            key.prefix_len = EncapKey::HEADER_BITS + 128;
            (h[7], (h[0] << 4) | (h[1] >> 4))
        }
        4 => {
            key.data[7] = 4;
            key.data[8..12].copy_from_slice(&h[16..20]);
            key.prefix_len = EncapKey::HEADER_BITS + 32;
            (h[8], h[1])
        }
        _ => return malformed(),
    };
    let Some(entry) = TUNNELS.get(&key) else {
        if let Some(s) = stats(NO_TUNNEL_SLOT) {
            s.no_tunnel += 1;
        }
        return BPF_DROP;
    };
    let hlen = u32::from(entry.len);
    if !(20..=MAX_HEADER as u32).contains(&hlen) {
        return BPF_DROP;
    }
    // The same value, in a form whose bounds the verifier can see after
    // the compiler has reloaded it: 20..=256.
    let hlen = 20 + (hlen.wrapping_sub(20) & 0x1ff).min(MAX_HEADER as u32 - 20);
    let mut hdr = entry.header;
    let outer_len = hlen + len;
    let f = entry.flags;
    let udp = if f & flags::OUTER_V6 != 0 {
        hdr[4..6].copy_from_slice(&((outer_len - 40) as u16).to_be_bytes());
        if f & flags::TTL_INHERIT != 0 {
            hdr[7] = ttl;
        }
        if f & flags::TOS_INHERIT != 0 {
            hdr[0] = 0x60 | (tos >> 4);
            hdr[1] = (hdr[1] & 0x0f) | (tos << 4);
        }
        40
    } else {
        hdr[2..4].copy_from_slice(&(outer_len as u16).to_be_bytes());
        if f & flags::TTL_INHERIT != 0 {
            hdr[8] = ttl;
        }
        if f & flags::TOS_INHERIT != 0 {
            hdr[1] = tos;
        }
        // An identification per packet, so fragments of different outer
        // packets on the way are never reassembled together.
        let id = unsafe { bpf_get_prandom_u32() } as u16;
        hdr[4..6].copy_from_slice(&id.to_be_bytes());
        hdr[10] = 0;
        hdr[11] = 0;
        let sum = ipv4_checksum(&hdr);
        hdr[10..12].copy_from_slice(&sum.to_be_bytes());
        20
    };
    if f & flags::UDP != 0 {
        // Source port from the flow hash: ECMP entropy for the outer packet.
        let hash = unsafe { bpf_get_hash_recalc(ctx.skb.skb) };
        let sport = 49152 | (hash & 0x3fff) as u16;
        hdr[udp..udp + 2].copy_from_slice(&sport.to_be_bytes());
        hdr[udp + 4..udp + 6].copy_from_slice(&((outer_len - udp as u32) as u16).to_be_bytes());
    }
    // SAFETY: `hdr` holds MAX_HEADER bytes and 20 <= hlen <= MAX_HEADER.
    let rc = unsafe { bpf_lwt_push_encap(ctx.skb.skb, BPF_LWT_ENCAP_IP, hdr.as_mut_ptr().cast(), hlen) };
    let Some(s) = stats(entry.counter) else { return BPF_DROP };
    if rc != 0 {
        s.push_failed += 1;
        return BPF_DROP;
    }
    s.packets += 1;
    s.bytes += u64::from(len);
    BPF_LWT_REROUTE
}

#[inline(always)]
fn malformed() -> i32 {
    if let Some(s) = stats(NO_TUNNEL_SLOT) {
        s.malformed += 1;
    }
    BPF_DROP
}

/// The IPv4 header checksum of the first 20 bytes.
#[inline(always)]
fn ipv4_checksum(h: &[u8; MAX_HEADER]) -> u16 {
    let mut sum = 0u32;
    for i in 0..10 {
        sum += u32::from(u16::from_be_bytes([h[2 * i], h[2 * i + 1]]));
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

lwt_program!(encap_xmit, "lwt_xmit", encapsulate);
lwt_program!(encap_in, "lwt_in", encapsulate);

gpl_license!();
