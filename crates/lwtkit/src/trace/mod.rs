//! `lwt trace`: every verdict of whatever program sits on a route, live,
//! without changing the route or the program.
//!
//! Two ways in, both read-only and both filtered to this namespace:
//! - tracepoints (tp_btf `net_dev_queue` and `kfree_skb`), for any program,
//!   with or without BTF: a packet whose route carries BPF programs is
//!   reported as passed by them when it is queued on a device (redirected
//!   when queued elsewhere than on the route's device), and as dropped when
//!   the kernel frees it from inside the LWT hook functions. They also
//!   name each packet's program (id, and the name the route carries, which
//!   is all a route dump gives).
//! - fexit on the traced program itself, once its id is known (lwtkit's
//!   names end in `#<id>`; others are learnt from the tracepoints): the
//!   exact return code of every run. It needs BTF in the target and a
//!   kernel that allows BPF trampolines; where it cannot attach, the
//!   tracepoints go on and the reason is reported.
//!
//! Everything is held by this process's file descriptors (links, no pins),
//! so when it stops, by `--count`, `--timeout`, Ctrl-C or a kill, the
//! kernel takes it all away.
pub mod btf;
pub mod printk;

use std::{
    cell::RefCell,
    collections::HashMap,
    net::IpAddr,
    os::fd::{AsFd, AsRawFd, OwnedFd},
    rc::Rc,
    time::{Duration, Instant},
};

use ipnet::IpNet;
use libbpf_rs::{libbpf_sys, Link, MapCore, MapFlags, Object, ObjectBuilder, RingBufferBuilder};
use lwtkit_common::trace::{self as layout, programs, source, TraceConfig, TraceEvent};
use serde::Serialize;

use crate::{
    error::Result,
    hook::Hook,
    loader::{last_line, LibbpfLog},
    route::{
        encap::{self, Encap},
        kernel::split_program_name,
        netlink::Rtnl,
        ops,
    },
    system,
    test_run::{verdict_name, Summary},
};

/// The tracing programs, built from crates/lwtkit-ebpf/src/bin/trace.rs.
static OBJECT: &[u8] = include_bytes!(env!("LWTKIT_TRACE_OBJ"));

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("no route {prefix} in table {table} carries a BPF program{hook} in this namespace (`lwt list` shows what does)")]
    NoRoute {
        prefix: IpNet,
        table: u32,
        hook: String,
    },
    #[error("the kernel has no BTF (/sys/kernel/btf/vmlinux): lwt trace needs it to find its way in kernel structures; use `lwt trace --printk` for programs that print")]
    NoBtf,
    #[error("this kernel's BTF lacks {0}, which lwt trace reads")]
    KernelLayout(String),
    #[error("program `{name}` (id {id}) was loaded without BTF, so no fexit program can attach to it; reload it with BTF (clang -g, or ip route's loader with a -g object), or use `lwt trace --printk` if it prints")]
    NoProgramBtf { name: String, id: u32 },
    #[error("cannot trace program `{name}`: {reason}")]
    Attach { name: String, reason: String },
}

/// What to trace.
#[derive(Clone, Debug)]
pub struct TraceRequest {
    pub prefix: IpNet,
    /// `None`: main, or local with `local`.
    pub table: Option<u32>,
    pub local: bool,
    /// Only this hook's program (default: every BPF hook of the route).
    pub hook: Option<Hook>,
    pub count: Option<usize>,
    pub timeout: Option<Duration>,
}

/// A program on a hook of the route.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    pub hook: Hook,
    /// The name the route carries.
    pub name: String,
    /// Known from the name (lwtkit's `#<id>`) or once a packet named it.
    pub id: Option<u32>,
    /// `fexit` (exact return codes) or `tracepoints`.
    pub via: &'static str,
    /// Why fexit could not attach, when it was tried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The route's output device.
    #[serde(skip)]
    pub oif: Option<u32>,
}

/// One packet the program saw, with its verdict.
#[derive(Clone, Debug, Serialize)]
pub struct TraceRecord {
    /// Seconds since the epoch.
    pub time: f64,
    pub hook: Hook,
    pub prog: String,
    pub prog_id: u32,
    pub verdict: String,
    pub retval: i32,
    /// `fexit`: the program's own return code; `tracepoints`: passed
    /// (`BPF_OK`, `BPF_REDIRECT`) or dropped (`BPF_DROP`), as the kernel
    /// handled the packet.
    pub via: &'static str,
    pub proto: String,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    /// The packet's length after the program (L3).
    pub len: u32,
    /// The first bytes (up to 128) from the IP header.
    #[serde(skip)]
    pub data: Vec<u8>,
}

/// The programs on the route `req` names (in this namespace).
pub fn targets(req: &TraceRequest) -> Result<Vec<Target>> {
    let table = req.table.unwrap_or(ops::default_table(req.local));
    let mut rtnl = Rtnl::open()?;
    let mut out = Vec::new();
    for r in ops::dump_all(&mut rtnl)? {
        if ops::dst_of(&r) != Some(req.prefix) || ops::table_of(&r) != table {
            continue;
        }
        let Some(Encap::Bpf {
            input,
            out: o,
            xmit,
            ..
        }) = encap::from_route_attributes(&r.attributes)
        else {
            continue;
        };
        for (hook, info) in [(Hook::In, input), (Hook::Out, o), (Hook::Xmit, xmit)] {
            let Some(info) = info else { continue };
            if req.hook.is_some_and(|h| h != hook) {
                continue;
            }
            let id = info.id.or_else(|| split_program_name(&info.name).1);
            out.push(Target {
                hook,
                name: info.name,
                id,
                via: "tracepoints",
                note: None,
                oif: ops::oif_of(&r),
            });
        }
    }
    if out.is_empty() {
        return Err(TraceError::NoRoute {
            prefix: req.prefix,
            table,
            hook: req.hook.map(|h| format!(" on {h}")).unwrap_or_default(),
        }
        .into());
    }
    Ok(out)
}

/// The route name a tracepoint event carries (NUL-terminated, truncated).
fn event_name(raw: &[u8]) -> String {
    let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

/// Whether a name an event kept is the route's (which it may truncate).
fn same_name(route: &str, seen: &str) -> bool {
    route == seen || (seen.len() == layout::NAME_LEN - 1 && route.starts_with(seen))
}

fn attach_err(name: &str, what: &str, e: impl std::fmt::Display, log: &str) -> TraceError {
    let detail = crate::loader::verifier_log_tail(log, 12)
        .map(|t| format!("\n--- verifier log (tail) ---\n{t}"))
        .unwrap_or_else(|| last_line(log).to_string());
    TraceError::Attach {
        name: name.into(),
        reason: format!(
            "{what}: {e}{}{detail}",
            if detail.is_empty() || detail.starts_with('\n') {
                ""
            } else {
                ": "
            }
        ),
    }
}

fn config_bytes(c: &TraceConfig) -> &[u8] {
    // SAFETY: TraceConfig is repr(C) plain data without padding holes.
    unsafe {
        std::slice::from_raw_parts((c as *const TraceConfig).cast(), size_of::<TraceConfig>())
    }
}

/// Opens the trace object with only `programs` loaded, `prepare` run on
/// them before loading, and `config` written.
fn open(
    label: &str,
    programs: &[&str],
    config: &TraceConfig,
    mut prepare: impl FnMut(&mut libbpf_rs::OpenProgramMut) -> libbpf_rs::Result<()>,
) -> Result<Object> {
    let bytes = OBJECT.to_vec();
    let log = LibbpfLog::capture();
    let loaded = ObjectBuilder::default()
        .open_memory(&bytes)
        .and_then(|mut open| {
            for mut p in open.progs_mut() {
                let wanted = programs.contains(&p.name().to_string_lossy().as_ref());
                p.set_autoload(wanted);
                if wanted {
                    prepare(&mut p)?;
                }
            }
            open.load()
        });
    let messages = log.finish();
    let object = loaded.map_err(|e| attach_err(label, "loading the tracer", e, &messages))?;
    let map = object
        .maps()
        .find(|m| m.name() == layout::CONFIG)
        .ok_or_else(|| attach_err(label, "config", "missing map", ""))?;
    map.update(&0u32.to_ne_bytes(), config_bytes(config), MapFlags::ANY)
        .map_err(|e| attach_err(label, "config", e, ""))?;
    Ok(object)
}

/// Attaches the programs `names` of `object` (the others were not loaded).
fn attach_all(object: &mut Object, names: &[&str], label: &str) -> Result<Vec<Link>> {
    object
        .progs_mut()
        .filter(|p| names.contains(&p.name().to_string_lossy().as_ref()))
        .map(|p| {
            p.attach_trace().map_err(|e| {
                let what = format!("attaching {}", p.name().to_string_lossy());
                attach_err(label, &what, format!("{e:#}"), "").into()
            })
        })
        .collect()
}

/// An fexit program on one traced program.
struct Tracer {
    object: Object,
    _link: Vec<Link>,
}

/// The BTF name of the program's main function (what fexit attaches to).
fn func_name(fd: &OwnedFd, name: &str, id: u32) -> Result<String> {
    let info_err = |e: String| attach_err(name, "reading the program", e, "");
    let (info, funcs) =
        crate::prog_info::func_info(fd.as_fd()).map_err(|e| info_err(e.to_string()))?;
    if funcs.is_empty() {
        return Err(TraceError::NoProgramBtf {
            name: name.into(),
            id,
        }
        .into());
    }
    // The entry is the function at instruction 0.
    let main = funcs
        .iter()
        .find(|f| f.insn_off == 0)
        .ok_or_else(|| info_err("no function at instruction 0".into()))?;
    // SAFETY: loads the program's BTF by id; freed below.
    let btf = unsafe { libbpf_sys::btf__load_from_kernel_by_id(info.btf_id) };
    if btf.is_null() || (btf as isize) < 0 && (btf as isize) > -4096 {
        return Err(info_err("cannot load its BTF".into()).into());
    }
    // SAFETY: btf is valid until freed.
    let name_of = unsafe {
        let t = libbpf_sys::btf__type_by_id(btf, main.type_id);
        let s = if t.is_null() {
            std::ptr::null()
        } else {
            libbpf_sys::btf__name_by_offset(btf, (*t).name_off)
        };
        let out =
            (!s.is_null()).then(|| std::ffi::CStr::from_ptr(s).to_string_lossy().into_owned());
        libbpf_sys::btf__free(btf);
        out
    };
    name_of.ok_or_else(|| info_err("its BTF does not name its function".into()).into())
}

fn tracer(target: &Target, id: u32, base: &TraceConfig) -> Result<Tracer> {
    let fd = libbpf_rs::Program::fd_from_id(id)
        .map_err(|e| attach_err(&target.name, "the program is gone", e, ""))?;
    let func = func_name(&fd, &target.name, id)?;
    let config = TraceConfig {
        hook: u32::from(target.hook.nla_kind()),
        prog_id: id,
        ..*base
    };
    let raw = fd.as_fd().as_raw_fd();
    let object = open(&target.name, &[programs::VERDICT], &config, |p| {
        p.set_attach_target(raw, Some(func.clone()))
    })?;
    let mut object = object;
    let link = attach_all(&mut object, &[programs::VERDICT], &target.name)?;
    drop(fd);
    Ok(Tracer {
        object,
        _link: link,
    })
}

/// Kernel code where a `kfree_skb` is an LWT program's drop, from
/// /proc/kallsyms: `run_lwt_bpf` under whatever suffix the compiler gave
/// it (`.isra.0`, `.cold`: hook 0, shared), and the hook functions (hooks
/// 1-3, for when it is inlined). Each range ends at the next symbol.
/// Empty when kernel addresses are hidden.
fn ranges() -> [[u64; 3]; layout::RANGES] {
    let mut out = [[0u64; 3]; layout::RANGES];
    let Some(text) = crate::kallsyms::read() else {
        return out;
    };
    let mut addrs: Vec<u64> = Vec::new();
    let mut found: Vec<(u64, u64)> = Vec::new();
    for s in crate::kallsyms::parse(&text) {
        addrs.push(s.addr);
        // lwt_bpf is built in: module symbols (`[module]`) are not it.
        if s.addr == 0 || !matches!(s.kind, "t" | "T") || s.module.is_some() {
            continue;
        }
        let base = s.name.split('.').next().unwrap_or(s.name);
        let hook = match base {
            "run_lwt_bpf" => 0,
            "bpf_input" => 1,
            "bpf_output" => 2,
            "bpf_xmit" => 3,
            _ => continue,
        };
        found.push((s.addr, hook));
    }
    addrs.sort_unstable();
    for (slot, (start, hook)) in out.iter_mut().zip(found) {
        let end = addrs.iter().find(|a| **a > start).copied().unwrap_or(start);
        *slot = [start, end, hook];
    }
    out
}

/// The tracepoint programs, for the `targets` of the route to `prefix`.
/// Without netfilter BPF links (CONFIG_NETFILTER_BPF_LINK), `in` targets
/// get a note: their local deliveries cannot be seen.
fn tracepoints(
    targets: &mut [Target],
    prefix: IpNet,
    base: &TraceConfig,
) -> Result<(Object, Vec<Link>)> {
    let mut oifs = [0u32; layout::OIFS];
    for (slot, oif) in oifs.iter_mut().zip(targets.iter().filter_map(|t| t.oif)) {
        *slot = oif;
    }
    let mut bytes = [0u8; 16];
    let family = match prefix.network() {
        IpAddr::V4(a) => {
            bytes[..4].copy_from_slice(&a.octets());
            4
        }
        IpAddr::V6(a) => {
            bytes = a.octets();
            6
        }
    };
    let config = TraceConfig {
        hooks: targets.iter().fold(0, |m, t| m | 1 << t.hook.nla_kind()),
        oifs,
        family,
        plen: u32::from(prefix.prefix_len()),
        prefix: bytes,
        ..*base
    };
    let tracepoints = [programs::QUEUED, programs::DROPPED];
    let traces_in = config.hooks & 1 << Hook::In.nla_kind() != 0;
    let mut names = tracepoints.to_vec();
    if traces_in {
        names.push(programs::DELIVERED);
    }
    let mut object = open("tracepoints", &names, &config, |_| Ok(()))?;
    let mut links = attach_all(&mut object, &tracepoints, "tracepoints")?;
    if traces_in {
        match delivered(&mut object, family) {
            Ok(link) => links.push(link),
            Err(e) => {
                for t in targets.iter_mut().filter(|t| t.hook == Hook::In) {
                    t.note = Some(format!("local deliveries (passes) not seen: {e}"));
                }
            }
        }
    }
    Ok((object, links))
}

/// Whether this kernel lets `lwt trace` hook netfilter with a BPF link (to
/// see an `in` program's local deliveries). The hook is registered in the
/// calling thread's namespace for an instant: call it from a throwaway one.
pub fn probe_netfilter_link() -> std::result::Result<(), String> {
    let config = TraceConfig::default();
    let mut object =
        open("probe", &[programs::DELIVERED], &config, |_| Ok(())).map_err(|e| e.to_string())?;
    delivered(&mut object, 4)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Netfilter's LOCAL_IN of this namespace, first of its hooks: where a
/// packet the route's `in` program passed for local delivery shows up
/// (`ip_local_deliver`, `ip6_input`), its route still attached.
fn delivered(object: &mut Object, family: u32) -> Result<Link> {
    let prog = object
        .progs_mut()
        .find(|p| p.name() == programs::DELIVERED)
        .ok_or_else(|| attach_err("tracepoints", "netfilter", "missing program", ""))?;
    use libbpf_rs::{NFPROTO_IPV4, NFPROTO_IPV6, NF_INET_LOCAL_IN};
    let opts = libbpf_rs::NetfilterOpts {
        protocol_family: if family == 4 {
            NFPROTO_IPV4
        } else {
            NFPROTO_IPV6
        },
        hooknum: NF_INET_LOCAL_IN,
        // NF_IP_PRI_FIRST itself is refused for BPF links.
        priority: i32::MIN + 1,
        ..Default::default()
    };
    prog.attach_netfilter_with_opts(opts).map_err(|e| {
        attach_err(
            "tracepoints",
            "attaching to netfilter LOCAL_IN",
            format!("{e:#}"),
            "",
        )
        .into()
    })
}

/// A decoded event with what matching it to a target takes.
struct Raw {
    record: TraceRecord,
    /// The route's name for the program (drops).
    name: String,
    source: u32,
    ifindex: u32,
    iif: u32,
}

fn decode(raw: &[u8], mono_to_wall: f64) -> Option<Raw> {
    if raw.len() < size_of::<TraceEvent>() {
        return None;
    }
    // SAFETY: a TraceEvent written by the kernel program; read unaligned.
    let ev: TraceEvent = unsafe { std::ptr::read_unaligned(raw.as_ptr().cast()) };
    let data = ev.data[..(ev.caplen as usize).min(layout::SNAPLEN)].to_vec();
    let s = Summary::of(&data);
    let record = TraceRecord {
        time: mono_to_wall + ev.time_ns as f64 / 1e9,
        hook: Hook::from_nla_kind(ev.hook as u16).unwrap_or(Hook::Out),
        prog: String::new(),
        prog_id: ev.prog_id,
        verdict: verdict_name(ev.retval),
        retval: ev.retval,
        via: if ev.source == source::FEXIT {
            "fexit"
        } else {
            "tracepoints"
        },
        proto: s.proto,
        src: s.src,
        dst: s.dst,
        sport: s.sport,
        dport: s.dport,
        len: ev.len,
        data,
    };
    Some(Raw {
        record,
        name: event_name(&ev.name),
        source: ev.source,
        ifindex: ev.ifindex,
        iif: ev.iif,
    })
}

/// Traces the programs of the route `req` names until `req.count` events,
/// `req.timeout`, or an error from `on_event`. `on_ready` hears the
/// targets once tracing has begun, `on_change` each target whose way in
/// changed (fexit attached, or why it could not). Returns the number of
/// events, and of those lost to a full ring buffer.
pub fn trace(
    req: &TraceRequest,
    on_ready: impl FnOnce(&[Target]),
    mut on_change: impl FnMut(&Target),
    mut on_event: impl FnMut(TraceRecord) -> Result<()>,
) -> Result<Traced> {
    system::require_attach_privileges("lwt trace")?;
    let mut targets = targets(req)?;
    let mut base = btf::offsets()?;
    base.netns_inum = system::netns_inode()? as u32;
    base.ranges = ranges();
    let tp = tracepoints(&mut targets, req.prefix, &base)?;
    // fexit tracers by program id, once tried (None: it could not attach).
    let mut exact: HashMap<u32, Option<Tracer>> = HashMap::new();
    let try_fexit = |t: &mut Target, id: u32, exact: &mut HashMap<u32, Option<Tracer>>| {
        if exact.contains_key(&id) {
            return false;
        }
        match tracer(t, id, &base) {
            Ok(tr) => {
                exact.insert(id, Some(tr));
                t.via = "fexit";
            }
            Err(e) => {
                exact.insert(id, None);
                t.note = Some(format!("fexit not attached ({e}); tracepoints instead"));
            }
        }
        true
    };
    for t in targets.iter_mut() {
        if let Some(id) = t.id {
            try_fexit(t, id, &mut exact);
        }
    }
    on_ready(&targets);

    let offset = crate::events::monotonic_offset();
    let queue: Rc<RefCell<Vec<Vec<u8>>>> = Rc::default();
    let start = Instant::now();
    let want = req.count.unwrap_or(usize::MAX);
    let mut seen = 0usize;
    let mut ring = None;
    // The ring buffers' maps, kept open while their buffers are polled.
    let mut handles: Vec<libbpf_rs::MapHandle> = Vec::new();
    let mut rebuild = true;
    loop {
        if rebuild {
            drop(ring.take());
            handles.clear();
            let objects = std::iter::once(&tp.0).chain(exact.values().flatten().map(|t| &t.object));
            for object in objects {
                if let Some(map) = object.maps().find(|m| m.name() == layout::EVENTS) {
                    handles.push(
                        libbpf_rs::MapHandle::try_from(&map)
                            .map_err(|e| attach_err("ring buffer", "opening", e, ""))?,
                    );
                }
            }
            let mut b = RingBufferBuilder::new();
            for handle in &handles {
                let q = queue.clone();
                b.add(handle, move |raw: &[u8]| {
                    q.borrow_mut().push(raw.to_vec());
                    0
                })
                .map_err(|e| attach_err("ring buffer", "adding", e, ""))?;
            }
            ring = Some(
                b.build()
                    .map_err(|e| attach_err("ring buffer", "building", e, ""))?,
            );
            rebuild = false;
        }
        let left = req.timeout.map(|t| t.saturating_sub(start.elapsed()));
        if seen >= want || left.is_some_and(|l| l.is_zero()) {
            break;
        }
        let wait = left
            .unwrap_or(Duration::from_millis(100))
            .min(Duration::from_millis(100));
        if let Some(r) = &ring {
            let _ = r.poll(wait);
        }
        let batch: Vec<Vec<u8>> = std::mem::take(&mut *queue.borrow_mut());
        for raw in batch {
            if seen >= want {
                break;
            }
            let Some(ev) = decode(&raw, offset) else {
                continue;
            };
            for mut rec in matches(ev, req, &mut targets, &exact) {
                if seen >= want {
                    break;
                }
                if rec.via == "tracepoints" && rec.prog_id != 0 {
                    if let Some(t) = targets
                        .iter_mut()
                        .find(|t| t.name == rec.prog && t.hook == rec.hook)
                    {
                        // Named by a packet: try the exact way for the next ones.
                        t.id.get_or_insert(rec.prog_id);
                        if try_fexit(t, rec.prog_id, &mut exact) {
                            on_change(t);
                            rebuild |= t.via == "fexit";
                        }
                    }
                }
                rec.prog_id = if rec.prog_id == 0 {
                    targets
                        .iter()
                        .find(|t| t.name == rec.prog && t.hook == rec.hook)
                        .and_then(|t| t.id)
                        .unwrap_or(0)
                } else {
                    rec.prog_id
                };
                seen += 1;
                on_event(rec)?;
            }
        }
    }
    drop(ring);
    drop(handles);
    let objects = std::iter::once(&tp.0).chain(exact.values().flatten().map(|t| &t.object));
    let lost = objects.map(lost_in).sum();
    drop(exact);
    drop(tp);
    Ok(Traced {
        reported: seen,
        lost,
    })
}

/// What a trace saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Traced {
    /// Packets reported.
    pub reported: usize,
    /// Packets the kernel programs could not report: the ring buffer was full.
    pub lost: u64,
}

/// The count of events a tracing object found no room for.
fn lost_in(object: &Object) -> u64 {
    object
        .maps()
        .find(|m| m.name() == layout::LOST)
        .and_then(|m| {
            m.lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)
                .ok()
                .flatten()
        })
        .map(|cpus| {
            cpus.iter()
                .filter_map(|v| Some(u64::from_ne_bytes(v.get(..8)?.try_into().ok()?)))
                .sum()
        })
        .unwrap_or(0)
}

/// The records an event makes for the traced route: a drop or an fexit
/// report for its program, or a pass for each out/xmit program of the
/// route when the packet was queued on the route's device. Tracepoints
/// see every route of the namespace: keep this one's (the program's name,
/// and destinations it covers). Programs fexit reports are skipped here.
fn matches(
    ev: Raw,
    req: &TraceRequest,
    targets: &mut [Target],
    exact: &HashMap<u32, Option<Tracer>>,
) -> Vec<TraceRecord> {
    let on_fexit = |t: &Target| {
        t.id.is_some_and(|id| matches!(exact.get(&id), Some(Some(_))))
    };
    let rec = ev.record;
    if ev.source == source::FEXIT {
        return targets
            .iter()
            .find(|t| t.id == Some(rec.prog_id) && t.hook == rec.hook)
            .map(|t| TraceRecord {
                prog: t.name.clone(),
                ..rec
            })
            .into_iter()
            .collect();
    }
    if !rec.dst.is_some_and(|d| req.prefix.contains(&d)) {
        return Vec::new();
    }
    if ev.source == source::FREED {
        return targets
            .iter()
            .find(|t| t.hook == rec.hook && same_name(&t.name, &ev.name) && !on_fexit(t))
            .map(|t| TraceRecord {
                prog: t.name.clone(),
                ..rec
            })
            .into_iter()
            .collect();
    }
    if ev.source == source::DELIVERED {
        return targets
            .iter()
            .find(|t| t.hook == Hook::In && same_name(&t.name, &ev.name) && !on_fexit(t))
            .map(|t| TraceRecord {
                prog: t.name.clone(),
                ..rec
            })
            .into_iter()
            .collect();
    }
    // A received packet queued on the route's device was forwarded by it:
    // it passed the route's in program too.
    targets
        .iter()
        .filter(|t| matches!(t.hook, Hook::Out | Hook::Xmit) || (t.hook == Hook::In && ev.iif != 0))
        .filter(|t| t.oif == Some(ev.ifindex) && !on_fexit(t))
        .map(|t| TraceRecord {
            hook: t.hook,
            prog: t.name.clone(),
            prog_id: t.id.unwrap_or(0),
            data: rec.data.clone(),
            proto: rec.proto.clone(),
            verdict: rec.verdict.clone(),
            ..rec
        })
        .collect()
}

/// Writes traced packets as pcap (raw IP, each cut at 128 bytes), one
/// unbuffered record per packet so an interrupted trace leaves whole ones.
pub struct PcapSink {
    writer: pcap_file::pcap::PcapWriter<std::fs::File>,
}

impl PcapSink {
    pub fn create(path: &std::path::Path) -> Result<Self> {
        let err = |e: &dyn std::fmt::Display| crate::events::EventsError::PcapFile {
            path: path.into(),
            reason: e.to_string(),
        };
        let file = std::fs::File::create(path).map_err(|e| err(&e))?;
        let header = pcap_file::pcap::PcapHeader {
            datalink: pcap_file::DataLink::RAW,
            snaplen: layout::SNAPLEN as u32,
            ..Default::default()
        };
        let writer = pcap_file::pcap::PcapWriter::with_header(file, header).map_err(|e| err(&e))?;
        Ok(Self { writer })
    }

    pub fn write(&mut self, r: &TraceRecord) -> Result<()> {
        let ts = Duration::from_secs_f64(r.time.max(0.0));
        self.writer
            .write_packet(&pcap_file::pcap::PcapPacket::new(ts, r.len, &r.data))
            .map_err(|e| crate::events::EventsError::PcapWrite(e.to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_discovered_names_match_their_route() {
        let long = "x".repeat(100);
        let kept = &long[..layout::NAME_LEN - 1];
        assert!(same_name(&long, kept));
        assert!(same_name("drop.o:[lwt_out]", "drop.o:[lwt_out]"));
        assert!(!same_name("drop.o:[lwt_out]", "drop.o:[lwt_in]"));
        assert!(!same_name("drop.o:[lwt_out]x", "drop.o:[lwt_out]"));
    }

    #[test]
    fn events_decode_with_verdict_names_and_ports() {
        let p =
            crate::test_run::packet::from_spec("tcp 10.0.0.2:40000 > 10.0.0.3:8080").expect("spec");
        let mut ev = TraceEvent {
            time_ns: 1_000_000_000,
            prog_id: 9,
            hook: 2,
            retval: 2,
            len: p.len() as u32,
            caplen: p.len() as u32,
            source: source::FREED,
            ifindex: 0,
            iif: 0,
            data: [0; layout::SNAPLEN],
            name: [0; layout::NAME_LEN],
        };
        ev.data[..p.len()].copy_from_slice(&p);
        ev.name[..16].copy_from_slice(b"drop.o:[lwt_out]");
        // SAFETY: plain data.
        let raw = unsafe {
            std::slice::from_raw_parts(
                (&ev as *const TraceEvent).cast::<u8>(),
                size_of::<TraceEvent>(),
            )
        };
        let ev = decode(raw, 10.0).expect("decodes");
        assert_eq!(ev.name, "drop.o:[lwt_out]");
        assert_eq!(ev.source, source::FREED);
        let r = ev.record;
        assert_eq!(r.verdict, "BPF_DROP");
        assert_eq!(r.via, "tracepoints");
        assert_eq!(r.hook, Hook::Out);
        assert_eq!(r.dport, Some(8080));
        assert_eq!(r.len, 40);
        assert!((r.time - 11.0).abs() < 1e-9);
        assert!(decode(&raw[..10], 0.0).is_none());
    }

    #[test]
    fn the_lwt_hook_functions_have_ranges_here() {
        let r = ranges();
        if r.iter().all(|x| x[0] == 0) {
            eprintln!("SKIPPED: kernel addresses hidden");
            return;
        }
        assert!(r.iter().any(|x| x[2] == 2), "bpf_output: {r:x?}");
        for [start, end, _] in r.iter().filter(|x| x[0] != 0) {
            assert!(start < end && end - start < 64 * 1024, "{r:x?}");
        }
    }
}
