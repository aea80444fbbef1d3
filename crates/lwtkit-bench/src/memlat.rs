//! What one dependent random read into a multi-megabyte BPF map costs
//! from a BPF program, by the memory behind the map.
//!
//! A pointer chase through a random cyclic permutation of 64-byte
//! elements: each run of the program loads the chase position from a
//! one-element state map, follows D links (each link's address is the
//! previous link's value, so the reads cannot overlap) and stores the
//! position back, so the next run continues where this one stopped and
//! starts cold. ns per dependent read is (run(D) - run(0)) / D.
//!
//! The programs are a few dozen raw instructions built here (a socket
//! filter, never attached, only test-run; no encapsulation helper), so
//! each layout runs exactly the loads it names and nothing else. Layouts:
//!
//! - `array`: one `BPF_MAP_TYPE_ARRAY` (above 32 KiB: vmalloc, 4 KiB
//!   pages), as the filter's CELLS;
//! - `array-mmap`: the same with `BPF_F_MMAPABLE` (always vmalloc);
//! - `chunks`: `ARRAY_OF_MAPS` of inner arrays of 504 elements (312-byte
//!   `struct bpf_array` + 504 × 64 = 32,568 bytes: kmalloc, the direct
//!   map); a link is (chunk, offset), a read is the outer slot then the
//!   element, both lookups inlined by the verifier;
//! - `chunks-noinl`: the same with `BPF_F_INNER_MAP` inner maps (the
//!   verifier does not inline the inner lookup: a helper call);
//! - `hash`: `BPF_MAP_TYPE_HASH`, preallocated (elements in one vmalloc
//!   area); `hash-noprealloc`: `BPF_F_NO_PREALLOC` (elements from slab);
//!   a read is a hash lookup (bucket, then element).
//!
//! `--stride 64` chases one element per 4 KiB page: the lines read then
//! fit the caches while their pages overflow the TLB, which isolates the
//! page walk's share.
use std::{
    ffi::CString,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use libbpf_sys as sys;

/// Bytes per element (a cache line; the filter's cells are 32).
const ELEM: u32 = 64;
/// Elements per inner array: 312 (`struct bpf_array` on 6.18) + 504 × 64
/// = 32,568 bytes, under kmalloc's 32 KiB bound in `__bpf_map_area_alloc`.
const CHUNK: u32 = 504;
/// Dependent reads per run.
const DEPTHS: [u32; 4] = [0, 1, 2, 4];
const SIZES: [u64; 4] = [64 << 10, 1 << 20, 8 << 20, 32 << 20];

struct Opts {
    reps: usize,
    runs: usize,
    hot: u32,
    seed: u64,
    /// Only sizes up to this many bytes.
    max_size: u64,
    /// Chase only every `stride`-th element (64: one per 4 KiB page, so
    /// the lines read fit the caches while their pages do not fit the TLB).
    stride: u32,
}

fn parse(args: &[String]) -> anyhow::Result<Opts> {
    let mut o = Opts {
        reps: 5,
        runs: 10_000,
        hot: 1_000_000,
        seed: 1,
        max_size: u64::MAX,
        stride: 1,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || crate::mix::flag_value(&mut it, a);
        match a.as_str() {
            "--reps" => o.reps = val()?.max(1) as usize,
            "--runs" => o.runs = val()?.max(1) as usize,
            "--hot" => o.hot = val()?.clamp(1, u64::from(u32::MAX)) as u32,
            "--seed" => o.seed = val()?,
            "--max-mib" => o.max_size = val()?.max(1) << 20,
            "--stride" => o.stride = val()?.clamp(1, 1 << 16) as u32,
            _ => anyhow::bail!(
                "usage: lwtkit-bench memlat [--reps N] [--runs N] [--hot REPEAT] [--seed N] [--max-mib N] [--stride ELEMENTS]"
            ),
        }
    }
    Ok(o)
}

/// One BPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R6: u8 = 6;
const R7: u8 = 7;
const R8: u8 = 8;
const R10: u8 = 10;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

/// A program under construction, with its jumps to the common exit.
#[derive(Default)]
struct Asm {
    code: Vec<Insn>,
    to_out: Vec<usize>,
}

impl Asm {
    fn map_fd(&mut self, dst: u8, fd: i32) {
        // BPF_LD | BPF_DW | BPF_IMM with BPF_PSEUDO_MAP_FD.
        self.code.push(insn(0x18, dst, 1, 0, fd));
        self.code.push(insn(0, 0, 0, 0, 0));
    }
    fn mov(&mut self, dst: u8, src: u8) {
        self.code.push(insn(0xbf, dst, src, 0, 0));
    }
    fn stack_key(&mut self, off: i16, src: u8) {
        // *(u32 *)(r10 + off) = src; r2 = r10 + off.
        self.code.push(insn(0x63, R10, src, off, 0));
        self.mov(R2, R10);
        self.code.push(insn(0x07, R2, 0, 0, i32::from(off)));
    }
    /// `bpf_map_lookup_elem(r1, r2)`, then to the exit on NULL.
    fn lookup(&mut self) {
        self.code.push(insn(0x85, 0, 0, 0, 1));
        self.to_out.push(self.code.len());
        self.code.push(insn(0x15, R0, 0, 0, 0));
    }
    fn load32(&mut self, dst: u8, src: u8, off: i16) {
        self.code.push(insn(0x61, dst, src, off, 0));
    }
    fn store32(&mut self, dst: u8, off: i16, src: u8) {
        self.code.push(insn(0x63, dst, src, off, 0));
    }
    fn finish(mut self) -> Vec<Insn> {
        let out = self.code.len();
        for at in self.to_out {
            self.code[at].off = (out - at - 1) as i16;
        }
        self.code.push(insn(0xb7, R0, 0, 0, 0));
        self.code.push(insn(0x95, 0, 0, 0, 0));
        self.code
    }
}

/// How a layout's program follows one link.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// A map keyed by the element index (array or hash): r6 = next index.
    Flat,
    /// Outer array of inner arrays: r6 = chunk, r8 = offset.
    Chunks,
}

/// The chase program: load the position, follow `depth` links, store it.
fn chase_program(kind: Kind, state: i32, cells: i32, depth: u32) -> Vec<Insn> {
    let mut a = Asm::default();
    // r7 = &state[0]; r6 (and r8) = the position.
    a.code.push(insn(0x62, R10, 0, -8, 0));
    a.map_fd(R1, state);
    a.mov(R2, R10);
    a.code.push(insn(0x07, R2, 0, 0, -8));
    a.lookup();
    a.mov(R7, R0);
    a.load32(R6, R7, 0);
    if kind == Kind::Chunks {
        a.load32(R8, R7, 4);
    }
    for _ in 0..depth {
        a.map_fd(R1, cells);
        a.stack_key(-8, R6);
        a.lookup();
        if kind == Kind::Chunks {
            // r0 is the inner map; look the offset up in it.
            a.mov(R1, R0);
            a.stack_key(-4, R8);
            a.lookup();
            a.load32(R8, R0, 4);
        }
        a.load32(R6, R0, 0);
    }
    a.store32(R7, 0, R6);
    if kind == Kind::Chunks {
        a.store32(R7, 4, R8);
    }
    a.finish()
}

fn os_err(what: &str, rc: i32) -> anyhow::Error {
    anyhow::anyhow!("{what}: {}", std::io::Error::from_raw_os_error(-rc))
}

fn load_program(insns: &[Insn]) -> anyhow::Result<OwnedFd> {
    let mut log = vec![0u8; 1 << 20];
    let mut opts = sys::bpf_prog_load_opts {
        sz: size_of::<sys::bpf_prog_load_opts>() as _,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr().cast(),
        ..Default::default()
    };
    let (name, license) = (CString::new("lwt_memlat")?, CString::new("GPL")?);
    // SAFETY: `insns` are `struct bpf_insn`s (same layout); every pointer
    // in opts lives across the call.
    let fd = unsafe {
        sys::bpf_prog_load(
            sys::BPF_PROG_TYPE_SOCKET_FILTER,
            name.as_ptr(),
            license.as_ptr(),
            insns.as_ptr().cast(),
            insns.len() as _,
            &mut opts,
        )
    };
    if fd < 0 {
        let text = String::from_utf8_lossy(&log);
        anyhow::bail!(
            "loading the chase program: {}\n{}",
            std::io::Error::from_raw_os_error(-fd),
            text.trim_end_matches('\0')
        );
    }
    // SAFETY: a new fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn create_map(
    kind: sys::bpf_map_type,
    value: u32,
    entries: u32,
    flags: u32,
    inner: Option<&OwnedFd>,
) -> anyhow::Result<OwnedFd> {
    let opts = sys::bpf_map_create_opts {
        sz: size_of::<sys::bpf_map_create_opts>() as _,
        map_flags: flags,
        inner_map_fd: inner.map_or(0, |f| f.as_raw_fd() as u32),
        ..Default::default()
    };
    // SAFETY: plain values and a valid opts.
    let fd = unsafe { sys::bpf_map_create(kind, std::ptr::null(), 4, value, entries, &opts) };
    if fd < 0 {
        return Err(os_err("creating a map", fd));
    }
    // SAFETY: a new fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn update<V>(map: &OwnedFd, key: u32, value: &V) -> anyhow::Result<()> {
    // SAFETY: key and value are valid for the map's key and value sizes.
    let rc = unsafe {
        sys::bpf_map_update_elem(
            map.as_raw_fd(),
            (&key as *const u32).cast(),
            (value as *const V).cast(),
            0,
        )
    };
    if rc != 0 {
        return Err(os_err("filling a map", rc));
    }
    Ok(())
}

/// A random cyclic permutation of `0..n` (Sattolo): `next[i]` is the
/// element after `i`, and following it from 0 visits every element.
fn cycle(n: u32, seed: u64) -> Vec<u32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut rand = move || {
        // xorshift64*
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        s.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut order: Vec<u32> = (0..n).collect();
    for i in (1..n as usize).rev() {
        let j = (rand() % i as u64) as usize;
        order.swap(i, j);
    }
    // Sattolo's shuffle gives one n-cycle as the map i -> order[i].
    order
}

/// One layout: its maps (kept open) and a chase program per depth.
struct Layout {
    name: &'static str,
    _maps: Vec<OwnedFd>,
    progs: Vec<OwnedFd>,
    /// Helper calls left in the depth-1 program after the verifier
    /// (0: every lookup inlined).
    calls: usize,
    /// KiB of vmalloc areas the layout's maps took (0: all kmalloc).
    vmalloc_kib: u64,
}

fn programs(kind: Kind, state: &OwnedFd, cells: &OwnedFd) -> anyhow::Result<Vec<OwnedFd>> {
    DEPTHS
        .iter()
        .map(|&d| {
            load_program(&chase_program(
                kind,
                state.as_raw_fd(),
                cells.as_raw_fd(),
                d,
            ))
        })
        .collect()
}

fn helper_calls(prog: &OwnedFd) -> anyhow::Result<usize> {
    use std::os::fd::AsFd;
    let xlated = lwtkit::prog_info::xlated(prog.as_fd())?;
    Ok(xlated.chunks_exact(8).filter(|i| i[0] == 0x85).count())
}

fn layout(name: &'static str, maps: Vec<OwnedFd>, progs: Vec<OwnedFd>) -> anyhow::Result<Layout> {
    let calls = helper_calls(&progs[1])?;
    Ok(Layout {
        name,
        _maps: maps,
        progs,
        calls,
        vmalloc_kib: 0,
    })
}

/// The vmalloc areas that BPF maps hold now (address range, bytes), by
/// the allocating function `/proc/vmallocinfo` names (`array_map_alloc`,
/// `htab_map_alloc`, `bpf_map_area_alloc`, ...; guard pages included).
fn vmalloc_map_areas() -> std::collections::HashSet<(String, u64)> {
    let Ok(text) = std::fs::read_to_string("/proc/vmallocinfo") else {
        return Default::default();
    };
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let range = f.next()?.to_string();
            let bytes = f.next()?.parse::<u64>().ok()?;
            let caller = f.next()?;
            (caller.contains("map_alloc") || caller.contains("map_area")).then_some((range, bytes))
        })
        .collect()
}

/// [`Layout`] built by `f`, with the vmalloc bytes of the areas that
/// appeared while it was built (maps freed meanwhile do not count; other
/// processes' new maps would).
fn measured(f: impl FnOnce() -> anyhow::Result<Layout>) -> anyhow::Result<Layout> {
    let before = vmalloc_map_areas();
    let mut l = f()?;
    l.vmalloc_kib = vmalloc_map_areas()
        .difference(&before)
        .map(|a| a.1)
        .sum::<u64>()
        >> 10;
    Ok(l)
}

/// A flat map (array or hash) of `n` elements linked by `next`.
fn flat(
    name: &'static str,
    map_type: sys::bpf_map_type,
    flags: u32,
    next: &[u32],
) -> anyhow::Result<Layout> {
    let n = next.len() as u32;
    let state = create_map(sys::BPF_MAP_TYPE_ARRAY, 8, 1, 0, None)?;
    let cells = create_map(map_type, ELEM, n, flags, None)?;
    let mut v = [0u32; (ELEM / 4) as usize];
    for (i, &to) in next.iter().enumerate() {
        v[0] = to;
        update(&cells, i as u32, &v)?;
    }
    let progs = programs(Kind::Flat, &state, &cells)?;
    layout(name, vec![state, cells], progs)
}

/// An outer array of inner arrays of [`CHUNK`] elements.
fn chunks(name: &'static str, inner_flags: u32, next: &[u32]) -> anyhow::Result<Layout> {
    let n = next.len() as u32;
    let count = n.div_ceil(CHUNK);
    let state = create_map(sys::BPF_MAP_TYPE_ARRAY, 8, 1, 0, None)?;
    let template = create_map(sys::BPF_MAP_TYPE_ARRAY, ELEM, CHUNK, inner_flags, None)?;
    let outer = create_map(
        sys::BPF_MAP_TYPE_ARRAY_OF_MAPS,
        4,
        count,
        0,
        Some(&template),
    )?;
    let mut inner = Vec::with_capacity(count as usize);
    for c in 0..count {
        let m = create_map(sys::BPF_MAP_TYPE_ARRAY, ELEM, CHUNK, inner_flags, None)?;
        update(&outer, c, &(m.as_raw_fd() as u32))?;
        inner.push(m);
    }
    let mut v = [0u32; (ELEM / 4) as usize];
    for (i, &to) in next.iter().enumerate() {
        let i = i as u32;
        v[0] = to / CHUNK;
        v[1] = to % CHUNK;
        update(&inner[(i / CHUNK) as usize], i % CHUNK, &v)?;
    }
    let progs = programs(Kind::Chunks, &state, &outer)?;
    let mut maps = vec![state, template, outer];
    maps.extend(inner);
    layout(name, maps, progs)
}

/// Every layout at `size` bytes, linked in one random cycle through
/// every `stride`-th element (the others point at element 0, unvisited).
fn build(size: u64, seed: u64, stride: u32) -> anyhow::Result<Vec<Layout>> {
    let n = (size / u64::from(ELEM)) as u32;
    let order = cycle((n / stride).max(2), seed ^ size);
    let mut next = vec![0u32; n as usize];
    for (p, &to) in order.iter().enumerate() {
        next[p * stride as usize] = to * stride;
    }
    let (array, hash) = (sys::BPF_MAP_TYPE_ARRAY, sys::BPF_MAP_TYPE_HASH);
    Ok(vec![
        measured(|| flat("array", array, 0, &next))?,
        measured(|| flat("array-mmap", array, sys::BPF_F_MMAPABLE, &next))?,
        measured(|| chunks("chunks", 0, &next))?,
        measured(|| chunks("chunks-noinl", sys::BPF_F_INNER_MAP, &next))?,
        measured(|| flat("hash", hash, 0, &next))?,
        measured(|| flat("hash-noprealloc", hash, sys::BPF_F_NO_PREALLOC, &next))?,
    ])
}

/// Test-runs `prog` `repeat` times in one call; test-run's mean ns.
fn test_run(prog: &OwnedFd, repeat: u32) -> anyhow::Result<u32> {
    // An Ethernet frame test-run accepts; the program never reads it.
    let frame = [0u8; 64];
    let mut opts = sys::bpf_test_run_opts {
        sz: size_of::<sys::bpf_test_run_opts>() as _,
        data_in: frame.as_ptr().cast(),
        data_size_in: frame.len() as u32,
        repeat: repeat as _,
        ..Default::default()
    };
    // SAFETY: every pointer in opts lives across the call.
    let rc = unsafe { sys::bpf_prog_test_run_opts(prog.as_raw_fd(), &mut opts) };
    if rc != 0 {
        return Err(os_err("test run", rc));
    }
    Ok(opts.duration)
}

/// The kernel's run-time statistics of `prog`: (ns, runs).
fn stats(prog: &OwnedFd) -> anyhow::Result<(u64, u64)> {
    use std::os::fd::AsFd;
    let info = lwtkit::prog_info::info(prog.as_fd())?;
    Ok((info.run_time_ns, info.run_cnt))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Per layout, per depth: the mean ns per run over `runs` cold runs
/// (each program of the layout run once in turn, `runs` times), by the
/// kernel's statistics. `empty` gets the empty program's figure, run in
/// the same rotation.
fn sweep(
    layouts: &[Layout],
    empty: &OwnedFd,
    runs: usize,
    rep: usize,
) -> anyhow::Result<(Vec<[f64; 4]>, f64)> {
    let _stats = lwtkit::filter::testrun::enable_stats()?;
    let mut out = vec![[0.0; 4]; layouts.len()];
    let mut empty_ns = Vec::new();
    for k in 0..layouts.len() {
        let li = (k + rep) % layouts.len();
        let l = &layouts[li];
        let before: Vec<(u64, u64)> = l.progs.iter().map(stats).collect::<Result<_, _>>()?;
        let e0 = stats(empty)?;
        for i in 0..runs {
            for j in 0..DEPTHS.len() {
                test_run(&l.progs[(i + j + rep) % DEPTHS.len()], 1)?;
            }
            test_run(empty, 1)?;
        }
        for (d, b) in before.iter().enumerate() {
            let (ns, n) = stats(&l.progs[d])?;
            out[li][d] = (ns - b.0) as f64 / (n - b.1).max(1) as f64;
        }
        let (ns, n) = stats(empty)?;
        empty_ns.push((ns - e0.0) as f64 / (n - e0.1).max(1) as f64);
    }
    Ok((out, median(empty_ns)))
}

/// Per layout, per depth: test-run's mean over `repeat` back-to-back runs.
fn hot(
    layouts: &[Layout],
    empty: &OwnedFd,
    repeat: u32,
    rep: usize,
) -> anyhow::Result<(Vec<[f64; 4]>, f64)> {
    let mut out = vec![[0.0; 4]; layouts.len()];
    let mut empty_ns = Vec::new();
    for k in 0..layouts.len() {
        let li = (k + rep) % layouts.len();
        for j in 0..DEPTHS.len() {
            let d = (j + rep) % DEPTHS.len();
            out[li][d] = f64::from(test_run(&layouts[li].progs[d], repeat)?);
        }
        empty_ns.push(f64::from(test_run(empty, repeat)?));
    }
    Ok((out, median(empty_ns)))
}

/// ns per dependent read at each depth > 0: (run(D) - run(0)) / D.
fn per_read(t: &[f64; 4]) -> [f64; 3] {
    [1, 2, 3].map(|i| (t[i] - t[0]) / f64::from(DEPTHS[i]))
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let o = parse(args)?;
    let empty = load_program(&Asm::default().finish())?;
    println!(
        "memlat: ns per dependent read, pointer chase through a random cycle of {ELEM}-byte elements, \
         BPF_PROG_TEST_RUN on a socket filter; sweep = {} cold runs (repeat = 1) per program, timed by the \
         kernel's program stats; hot = repeat {} (test-run's mean); ns/read = (run(D) - run(0)) / D; \
         median of {} repetitions, layouts and depths in rotated order; every {} element(s) chased",
        o.runs, o.hot, o.reps, o.stride
    );
    println!("load average at start: {}", loadavg());
    println!(
        "{:>7} {:<16} {:>5} {:>9} {:>9} {:>7} {:>7} {:>7} {:>9} {:>7} {:>7} {:>7}",
        "size",
        "layout",
        "calls",
        "vmall KiB",
        "sweep D0",
        "D1/rd",
        "D2/rd",
        "D4/rd",
        "hot D0",
        "D1/rd",
        "D2/rd",
        "D4/rd"
    );
    for &size in SIZES.iter().filter(|&&s| s <= o.max_size) {
        let layouts = build(size, o.seed, o.stride)?;
        let mut sw: Vec<Vec<[f64; 4]>> = vec![Vec::new(); layouts.len()];
        let mut ht: Vec<Vec<[f64; 4]>> = vec![Vec::new(); layouts.len()];
        let (mut sw_empty, mut ht_empty) = (Vec::new(), Vec::new());
        for rep in 0..o.reps {
            let (s, e) = sweep(&layouts, &empty, o.runs, rep)?;
            sw_empty.push(e);
            let (h, he) = hot(&layouts, &empty, o.hot, rep)?;
            ht_empty.push(he);
            for (i, (s, h)) in s.into_iter().zip(h).enumerate() {
                sw[i].push(s);
                ht[i].push(h);
            }
        }
        let med = |v: &[[f64; 4]]| -> [f64; 4] {
            [0, 1, 2, 3].map(|d| median(v.iter().map(|t| t[d]).collect()))
        };
        // Per-read figures are medians of each repetition's own
        // differences (so one noisy repetition moves one sample).
        let med_read = |v: &[[f64; 4]]| -> [f64; 3] {
            let reads: Vec<[f64; 3]> = v.iter().map(per_read).collect();
            [0, 1, 2].map(|d| median(reads.iter().map(|r| r[d]).collect()))
        };
        let label = if size >= 1 << 20 {
            format!("{}MiB", size >> 20)
        } else {
            format!("{}KiB", size >> 10)
        };
        for (i, l) in layouts.iter().enumerate() {
            let (s, h) = (med(&sw[i]), med(&ht[i]));
            let (sr, hr) = (med_read(&sw[i]), med_read(&ht[i]));
            println!(
                "{label:>7} {:<16} {:>5} {:>9} {:>9.1} {:>7.1} {:>7.1} {:>7.1} {:>9.1} {:>7.1} {:>7.1} {:>7.1}",
                l.name, l.calls, l.vmalloc_kib, s[0], sr[0], sr[1], sr[2], h[0], hr[0], hr[1], hr[2]
            );
        }
        println!(
            "{label:>7} {:<16} {:>5} {:>9} {:>9.1} {:>7} {:>7} {:>7} {:>9.1}",
            "empty program",
            0,
            "-",
            median(sw_empty),
            "",
            "",
            "",
            median(ht_empty)
        );
    }
    println!("load average at end: {}", loadavg());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chase_visits_every_element_once_before_coming_back() {
        for n in [2u32, 3, 1000, 4096] {
            let next = cycle(n, 7);
            let (mut at, mut seen) = (0u32, vec![false; n as usize]);
            for _ in 0..n {
                assert!(
                    !seen[at as usize],
                    "element {at} visited twice in a chase of {n}"
                );
                seen[at as usize] = true;
                at = next[at as usize];
            }
            assert_eq!(at, 0);
        }
    }

    #[test]
    fn chase_programs_end_in_a_common_exit() {
        let p = chase_program(Kind::Chunks, 3, 4, 2);
        let exit = p.len() - 2;
        for (i, ins) in p.iter().enumerate() {
            if ins.code == 0x15 {
                assert_eq!(i as i64 + 1 + i64::from(ins.off), exit as i64);
            }
        }
        assert_eq!(p[exit + 1].code, 0x95);
    }
}
