//! `lwt trace`: the layout its kernel programs and user space share.
//!
//! The tracing programs read kernel structures (`sk_buff`, `dst_entry`,
//! `net_device`, `bpf_prog`) at offsets user space takes from the running
//! kernel's BTF and writes into [`TraceConfig`], so one object works on
//! every kernel without CO-RE relocations.

/// Bytes of each packet a trace event carries (from the IP header).
pub const SNAPLEN: usize = 128;
/// Bytes of a route's program name a tracepoint event keeps.
pub const NAME_LEN: usize = 64;

/// Map names (the `#[btf_map]` statics of the `trace` object).
pub const CONFIG: &str = "TRACE_CONFIG";
pub const EVENTS: &str = "TRACE_EVENTS";
/// Events that found the ring buffer full (one per-CPU u64, summed by user
/// space over CPUs and every tracing object it loaded).
pub const LOST: &str = "TRACE_LOST";
/// Output devices of the traced route that [`TraceConfig::oifs`] holds at most.
pub const OIFS: usize = 4;

/// Function names of the programs in the `trace` object.
pub mod programs {
    /// fexit on the traced LWT program: one event per packet with its verdict.
    pub const VERDICT: &str = "trace_verdict";
    /// tp_btf/net_dev_queue: packets of this namespace queued on a device,
    /// having passed the out/xmit hooks of their route (the route itself
    /// is gone by then: `__dev_queue_xmit` drops the dst first).
    pub const QUEUED: &str = "trace_queued";
    /// tp_btf/kfree_skb: packets freed inside the kernel's LWT BPF hook
    /// functions (net/core/lwt_bpf.c), i.e. dropped by the program.
    pub const DROPPED: &str = "trace_dropped";
    /// netfilter LOCAL_IN: packets delivered to this host through a route
    /// whose `in` program is traced (they passed it).
    pub const DELIVERED: &str = "trace_delivered";
}

/// Offsets into kernel structures, and what to trace.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceConfig {
    /// The namespace's inode number (`/proc/self/ns/net`): packets of
    /// other namespaces are ignored.
    pub netns_inum: u32,
    /// The hook of the traced program (1 in, 2 out, 3 xmit), copied into events.
    pub hook: u32,
    /// The traced program's id, copied into events.
    pub prog_id: u32,
    pub skb_data: u32,
    pub skb_len: u32,
    /// `sk_buff._skb_refdst` (the dst pointer, low bit a flag).
    pub skb_refdst: u32,
    pub dst_dev: u32,
    pub dst_lwtstate: u32,
    /// `net_device.nd_net` (a `possible_net_t` holding `struct net *`).
    pub dev_nd_net: u32,
    /// `net.ns.inum`.
    pub net_inum: u32,
    /// `lwtunnel_state.data`, where `struct bpf_lwt` starts.
    pub lwt_data: u32,
    pub prog_aux: u32,
    pub aux_id: u32,
    /// `lwtunnel_state.type` (u16).
    pub lwt_type: u32,
    pub skb_dev: u32,
    /// Hooks the tracepoint programs report (bit 1 in, 2 out, 3 xmit).
    pub hooks: u32,
    pub dev_ifindex: u32,
    pub skb_head: u32,
    /// `sk_buff.network_header` (u16, from `head`).
    pub skb_network_header: u32,
    /// `sk_buff.skb_iif` (int): the device a received packet arrived on.
    pub skb_iif: u32,
    /// [start, end, hook) of kernel code (from /proc/kallsyms) where a
    /// `kfree_skb` is a drop by an LWT program: `run_lwt_bpf` (shared by
    /// the hooks when not inlined: hook 0, the route's first traced
    /// program) and `bpf_input/bpf_output/bpf_xmit` (hooks 1, 2, 3).
    pub ranges: [[u64; 3]; RANGES],
    /// The traced route's output devices (0: unused): the queue tracepoint
    /// reports only packets queued on one of them...
    pub oifs: [u32; OIFS],
    /// ...whose destination lies in the traced prefix: 4 or 6, the prefix
    /// length, and the prefix's bytes (IPv4 in the first 4).
    pub family: u32,
    pub plen: u32,
    pub prefix: [u8; 16],
}

/// Code ranges [`TraceConfig::ranges`] holds.
pub const RANGES: usize = 6;

const _: () = assert!(core::mem::size_of::<TraceConfig>() == 80 + 24 * RANGES + 4 * OIFS + 24);

/// One packet the traced program saw, and what it returned.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TraceEvent {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC).
    pub time_ns: u64,
    pub prog_id: u32,
    pub hook: u32,
    pub retval: i32,
    /// `skb->len` after the program (L3 on every LWT hook).
    pub len: u32,
    pub caplen: u32,
    /// 0: the fexit program's exact return code; 1: queued on a device of
    /// this namespace (it passed whatever hooks its route has); 2: freed
    /// inside the hook (a drop); 3: delivered locally through the route
    /// (it passed the route's `in` program).
    pub source: u32,
    /// The device the packet was queued on (source 1).
    pub ifindex: u32,
    /// The device it arrived on, 0 when this host sent it (source 1): a
    /// forwarded packet queued on the route's device also passed the
    /// route's `in` program.
    pub iif: u32,
    pub data: [u8; SNAPLEN],
    /// The route's name for the program (tracepoint events only).
    pub name: [u8; NAME_LEN],
}

/// [`TraceEvent::source`] values.
pub mod source {
    pub const FEXIT: u32 = 0;
    pub const QUEUED: u32 = 1;
    pub const FREED: u32 = 2;
    pub const DELIVERED: u32 = 3;
}

const _: () = assert!(core::mem::size_of::<TraceEvent>() == 40 + SNAPLEN + NAME_LEN);
