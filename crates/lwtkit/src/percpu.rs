//! Reading per-CPU counters: every counter value lwtkit's programs keep is
//! a run of `u64`s per CPU slot, which user space sums.
use libbpf_rs::{MapCore, MapFlags};

/// The first `N` `u64` words of `key`'s value, summed over CPUs.
pub fn sum<const N: usize>(map: &dyn MapCore, key: u32) -> libbpf_rs::Result<[u64; N]> {
    let slots = map
        .lookup_percpu(&key.to_ne_bytes(), MapFlags::ANY)?
        .unwrap_or_default();
    let mut total = [0u64; N];
    for slot in &slots {
        for (i, t) in total.iter_mut().enumerate() {
            if let Some(b) = slot.get(8 * i..8 * i + 8) {
                *t = t.saturating_add(u64::from_ne_bytes(b.try_into().unwrap_or_default()));
            }
        }
    }
    Ok(total)
}

/// The most bytes of zeroed per-CPU values [`zero`] hands the kernel in
/// one batch: a policy of a million counter slots on many CPUs would
/// otherwise need gigabytes at once.
const BATCH_BYTES: usize = 1 << 20;

/// Entries per batch when each entry's per-CPU value takes `value_size`
/// bytes (rounded up to 8) on each of `cpus` CPUs: as many as fit in
/// [`BATCH_BYTES`], at least one.
fn batch_entries(value_size: usize, cpus: usize) -> usize {
    let per_entry = value_size.next_multiple_of(8).max(8) * cpus.max(1);
    (BATCH_BYTES / per_entry).max(1)
}

/// Zeroes `entries` of the per-CPU map, in `BPF_MAP_UPDATE_BATCH` calls of
/// at most [`BATCH_BYTES`] of values when the kernel takes them (per-CPU
/// arrays have it since Linux 5.6), else entry by entry.
pub fn zero(map: &libbpf_rs::MapHandle, entries: &[u32]) -> libbpf_rs::Result<()> {
    use std::os::fd::{AsFd, AsRawFd};
    if entries.is_empty() {
        return Ok(());
    }
    let cpus = libbpf_rs::num_possible_cpus()?;
    // Each per-CPU value is the value rounded up to 8 bytes, once per
    // possible CPU.
    let per_cpu = (map.value_size() as usize).next_multiple_of(8);
    let batch = batch_entries(map.value_size() as usize, cpus);
    let zeros = vec![0u8; batch.min(entries.len()) * per_cpu * cpus];
    let opts = libbpf_rs::libbpf_sys::bpf_map_batch_opts {
        sz: size_of::<libbpf_rs::libbpf_sys::bpf_map_batch_opts>() as _,
        ..Default::default()
    };
    let mut rest = entries;
    for chunk in entries.chunks(batch) {
        // `chunk` is at most `batch` long, which is at most 2^20.
        let count = chunk.len() as u32;
        let mut done = count;
        // SAFETY: `chunk` holds `count` u32 keys and `zeros` at least
        // `count` per-CPU values of the map's size; the kernel reads only
        // those.
        let rc = unsafe {
            libbpf_rs::libbpf_sys::bpf_map_update_batch(
                map.as_fd().as_raw_fd(),
                chunk.as_ptr().cast(),
                zeros.as_ptr().cast(),
                &mut done,
                &opts,
            )
        };
        if rc != 0 || done != count {
            break;
        }
        rest = &rest[chunk.len()..];
    }
    let zero = vec![vec![0u8; map.value_size() as usize]; cpus];
    for entry in rest {
        map.update_percpu(&entry.to_ne_bytes(), &zero, MapFlags::ANY)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_stay_within_their_byte_bound_and_cover_every_entry() {
        // A rule counter (one u64) on 4 CPUs: 32 bytes an entry.
        assert_eq!(batch_entries(8, 4), BATCH_BYTES / 32);
        // Values round up to 8 bytes per CPU (12 -> 16).
        assert_eq!(batch_entries(12, 64), BATCH_BYTES / (16 * 64));
        // An entry larger than the bound still goes, alone.
        assert_eq!(batch_entries(1 << 16, 512), 1);
        for (value, cpus) in [(8, 1), (32, 2), (40, 256), (8, 4096)] {
            let n = batch_entries(value, cpus);
            assert!(n * value.next_multiple_of(8) * cpus <= BATCH_BYTES);
            let entries: Vec<u32> = (0..1_000_003).collect();
            let chunks: Vec<&[u32]> = entries.chunks(n).collect();
            assert!(chunks.iter().all(|c| c.len() <= n));
            assert_eq!(chunks.concat(), entries, "every entry once, in order");
        }
    }
}
