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

/// Zeroes `entries` of the per-CPU map, in one `BPF_MAP_UPDATE_BATCH`
/// when the kernel takes it (per-CPU arrays have it since Linux 5.6),
/// else entry by entry.
pub fn zero(map: &libbpf_rs::MapHandle, entries: &[u32]) -> libbpf_rs::Result<()> {
    use std::os::fd::{AsFd, AsRawFd};
    if entries.is_empty() {
        return Ok(());
    }
    let cpus = libbpf_rs::num_possible_cpus()?;
    // Each per-CPU value is the value rounded up to 8 bytes, once per
    // possible CPU.
    let per_cpu = (map.value_size() as usize).next_multiple_of(8);
    if let Ok(count) = u32::try_from(entries.len()) {
        let zeros = vec![0u8; entries.len() * per_cpu * cpus];
        let opts = libbpf_rs::libbpf_sys::bpf_map_batch_opts {
            sz: size_of::<libbpf_rs::libbpf_sys::bpf_map_batch_opts>() as _,
            ..Default::default()
        };
        let mut done = count;
        // SAFETY: `entries` holds `count` u32 keys and `zeros` `count`
        // per-CPU values of the map's size; the kernel reads only those.
        let rc = unsafe {
            libbpf_rs::libbpf_sys::bpf_map_update_batch(
                map.as_fd().as_raw_fd(),
                entries.as_ptr().cast(),
                zeros.as_ptr().cast(),
                &mut done,
                &opts,
            )
        };
        if rc == 0 && done == count {
            return Ok(());
        }
    }
    let zero = vec![vec![0u8; map.value_size() as usize]; cpus];
    for entry in entries {
        map.update_percpu(&entry.to_ne_bytes(), &zero, MapFlags::ANY)?;
    }
    Ok(())
}
