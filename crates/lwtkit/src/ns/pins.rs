//! What each entry of a namespace's pin tree is, by lwtkit's layout alone
//! ([`lwtkit_common::pins`]): one reading for the sweep, which removes
//! leftovers, and for `lwt check`, which reports them, so the two never
//! disagree about a staging directory.
use lwtkit_common::pins;

/// The directory an entry is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parent {
    /// The namespace's pin directory: a route's directory by its key, and
    /// the directories shared by a feature's records.
    Root,
    /// A route's directory: its hooks (`in`, `out`, `xmit`).
    Route,
    /// `filters/`: a policy's maps, by its name.
    Filters,
    /// `decap/`: a decapsulator, by its device's name.
    Decap,
    /// `seg6local/`: a SID, by its route key.
    Seg6local,
}

/// What an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinEntry {
    /// The namespace's, no one record's (`events`, `encap`, and the
    /// features' directories).
    Shared,
    /// A change's staging directory: it outlives only a killed change.
    Staging,
    /// The pins of the record (or the hook) the entry's name is the key of.
    Owned,
}

/// What entry `name` of directory `parent` is. Route and SID keys end in a
/// prefix length and hooks are words, so `<key>_next` (and `:next`) is
/// staging there. Policy and device names may end in `_next` but never
/// hold a `:` (policy names are checked; the kernel refuses `:` in device
/// names), so only `<name>:next` is staging there.
pub fn classify(parent: Parent, name: &str) -> PinEntry {
    let colon_next = name.ends_with(":next");
    match parent {
        Parent::Root if pins::SHARED_DIRS.contains(&name) => PinEntry::Shared,
        Parent::Root | Parent::Route | Parent::Seg6local
            if colon_next || name.ends_with("_next") =>
        {
            PinEntry::Staging
        }
        Parent::Filters | Parent::Decap if colon_next => PinEntry::Staging,
        _ => PinEntry::Owned,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_is_told_from_keys_by_each_directorys_names() {
        use PinEntry::*;
        for (parent, name, want) in [
            (Parent::Root, "254_10_0_0_3_32", Owned),
            (Parent::Root, "254_10_0_0_3_32_next", Staging),
            (Parent::Root, "filters", Shared),
            (Parent::Root, "events", Shared),
            (Parent::Root, "encap", Shared),
            (Parent::Route, "out", Owned),
            (Parent::Route, "out_next", Staging),
            // A policy mid-growth stages its maps as `<name>:next`.
            (Parent::Filters, "web", Owned),
            (Parent::Filters, "web:next", Staging),
            (Parent::Filters, "web_next", Owned),
            (Parent::Decap, "vb:next", Staging),
            (Parent::Decap, "eth_next", Owned),
            (Parent::Seg6local, "254_fc00__b_128_next", Staging),
            (Parent::Seg6local, "254_fc00__b_128", Owned),
        ] {
            assert_eq!(classify(parent, name), want, "{parent:?} {name}");
        }
    }
}
