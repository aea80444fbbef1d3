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
