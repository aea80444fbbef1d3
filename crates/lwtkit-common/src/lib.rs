//! Types shared by lwtkit's kernel programs and its user space.
//!
//! Every map key, map value and event layout that crosses the kernel/user
//! boundary is defined here once, `#[repr(C)]` with explicit padding, so both
//! sides agree on the bytes.
#![no_std]

pub mod filter;

/// Packet and byte counters of one attachment, one slot per CPU in a
/// per-CPU array; user space sums the slots.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(serde::Serialize))]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
}

impl Counters {
    /// Size of the value as the kernel map stores it.
    pub const SIZE: usize = core::mem::size_of::<Self>();

    /// Reads one per-CPU slot as the kernel wrote it (native endian).
    pub fn from_ne_bytes(b: &[u8]) -> Option<Self> {
        let packets = u64::from_ne_bytes(b.get(0..8)?.try_into().ok()?);
        let bytes = u64::from_ne_bytes(b.get(8..16)?.try_into().ok()?);
        Some(Self { packets, bytes })
    }

    /// Adds another slot, saturating rather than wrapping.
    pub fn add(&mut self, other: &Self) {
        self.packets = self.packets.saturating_add(other.packets);
        self.bytes = self.bytes.saturating_add(other.bytes);
    }
}

/// Name of the per-attachment counters map in every built-in program object
/// (a per-CPU array of [`Counters`] indexed by `filter::verdict_slot`).
pub const COUNTERS_MAP: &str = "ATTACH_STATS";

/// Verdicts an LWT program returns (`include/uapi/linux/bpf.h`).
pub mod verdict {
    pub const BPF_OK: i32 = 0;
    pub const BPF_DROP: i32 = 2;
    pub const BPF_REDIRECT: i32 = 7;
    pub const BPF_LWT_REROUTE: i32 = 128;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_round_trip_native_bytes() {
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&7u64.to_ne_bytes());
        raw[8..].copy_from_slice(&900u64.to_ne_bytes());
        let c = Counters::from_ne_bytes(&raw).expect("16 bytes");
        assert_eq!(
            c,
            Counters {
                packets: 7,
                bytes: 900
            }
        );
        assert_eq!(Counters::from_ne_bytes(&raw[..15]), None);
    }
}

pub mod encap;
