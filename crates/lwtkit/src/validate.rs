//! Checks shared by every request that takes addresses, tables and numbers
//! from a user: each returns the sentence to show, naming the flag and what
//! it accepts, so a bad value is refused before anything changes.
use std::net::{IpAddr, Ipv4Addr};

/// `addr`, given as `flag`, must name one host: not the unspecified
/// address, not multicast, not the IPv4 limited broadcast.
pub fn host_address(flag: &str, addr: IpAddr) -> Result<(), String> {
    let what = if addr.is_unspecified() {
        "the unspecified address"
    } else if addr.is_multicast() {
        "a multicast address"
    } else if addr == IpAddr::V4(Ipv4Addr::BROADCAST) {
        "the broadcast address"
    } else {
        return Ok(());
    };
    Err(format!("{flag} {addr} is {what}, not a host address"))
}

/// A routing table id given as `flag`: 0 is `RT_TABLE_UNSPEC`, which the
/// kernel silently takes as main.
pub fn table_id(flag: &str, table: Option<u32>) -> Result<(), String> {
    match table {
        Some(0) => Err(not_a_table(flag)),
        _ => Ok(()),
    }
}

/// What is wrong with table 0, given as `flag`.
pub fn not_a_table(flag: &str) -> String {
    format!(
        "{flag} 0 is not a table (the kernel would read it as main); use 1-{} or a name",
        u32::MAX
    )
}

/// `value` of `flag` must lie in `lo..=hi`.
pub fn in_range(flag: &str, value: u64, lo: u64, hi: u64) -> Result<(), String> {
    if (lo..=hi).contains(&value) {
        Ok(())
    } else {
        Err(format!("{flag} {value} is out of range {lo}-{hi}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_host_addresses_pass() {
        for ok in ["10.0.0.1", "192.0.2.255", "fd00::1", "::1", "127.0.0.1"] {
            assert_eq!(host_address("--remote", ok.parse().expect("ip")), Ok(()));
        }
        for (bad, what) in [
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
            ("224.0.0.1", "multicast"),
            ("ff02::1", "multicast"),
            ("255.255.255.255", "broadcast"),
        ] {
            let err = host_address("--remote", bad.parse().expect("ip")).expect_err(bad);
            assert!(
                err.contains(what) && err.contains("--remote") && err.contains(bad),
                "{err}"
            );
        }
    }

    #[test]
    fn table_zero_and_ranges_are_named() {
        assert!(table_id("--table", Some(0))
            .expect_err("0")
            .contains("--table 0 is not a table"));
        assert_eq!(table_id("--table", Some(254)), Ok(()));
        assert_eq!(table_id("--table", None), Ok(()));
        assert_eq!(
            in_range("--port", 0, 1, 65535),
            Err("--port 0 is out of range 1-65535".into())
        );
        assert_eq!(in_range("--ttl", 255, 1, 255), Ok(()));
    }
}
