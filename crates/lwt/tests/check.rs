//! `lwt check` against every store: silent while records, pins and the
//! kernel agree, and naming each kind of disagreement when something
//! outside lwtkit breaks one of them (a map entry deleted, a route
//! rewritten, a device deleted, a config map written, a pin directory
//! left behind). Each test builds its own namespaces.
mod common;

use libbpf_rs::{MapCore, MapFlags, MapHandle};

use common::{json, Netns, Pair};

/// Every store in use in `ns` (`a` of a [`pair`]): a counted route, a GRE
/// tunnel, a policy on a route, a SID and a decapsulator.
fn everything(ns: &Netns) {
    ns.lwt_ok(&[
        "attach",
        "10.0.0.9/32",
        "--dev",
        "va",
        "--hook",
        "out",
        "--builtin",
        "count",
    ]);
    ns.lwt_ok(&[
        "encap",
        "add",
        "192.168.100.0/24",
        "--dev",
        "va",
        "--type",
        "gre",
        "--remote",
        "10.0.0.3",
    ]);
    ns.lwt_ok(&["filter", "create", "web"]);
    ns.lwt_ok(&[
        "filter",
        "rule",
        "add",
        "web",
        "dst",
        "10.0.0.8/32",
        "proto",
        "udp",
        "dport",
        "9",
        "drop",
    ]);
    ns.lwt_ok(&[
        "filter",
        "attach",
        "web",
        "10.0.0.8/32",
        "--dev",
        "va",
        "--hook",
        "out",
    ]);
    ns.lwt_ok(&[
        "seg6local",
        "add",
        "fc00::b",
        "--dev",
        "va",
        "--builtin",
        "end",
    ]);
    ns.lwt_ok(&["decap", "add", "--dev", "vx", "--type", "gre"]);
}

/// A [`Pair`] whose `a` also has a veth pair of its own, `vx` (10.9.0.1)
/// and `vy`, for a decapsulator.
fn pair(tag: &str) -> Pair {
    let p = Pair::new(tag);
    p.a.ip(&["link", "add", "vx", "type", "veth", "peer", "name", "vy"]);
    p.a.ip(&["addr", "add", "10.9.0.1/24", "dev", "vx"]);
    p.a.ip(&["link", "set", "vx", "up"]);
    p.a.ip(&["link", "set", "vy", "up"]);
    p
}

fn kinds(found: &[(String, String)]) -> Vec<&str> {
    found.iter().map(|(k, _)| k.as_str()).collect()
}

fn map(ns: &Netns, rel: &str) -> MapHandle {
    let pin = ns.pin_dir().join(rel);
    MapHandle::from_pinned_path(&pin).unwrap_or_else(|e| panic!("{}: {e}", pin.display()))
}

#[test]
fn check_agrees_while_every_store_is_in_use_and_after_reset() {
    require_root!();
    let p = pair("chk");
    let before = p.a.routes();
    everything(&p.a);
    assert_eq!(p.a.findings(), vec![]);
    let out = json(&p.a.lwt_ok(&["check", "-j"]));
    assert_eq!(out, serde_json::json!([]));
    p.a.lwt_ok(&["reset"]);
    assert_eq!(p.a.findings(), vec![]);
    assert_eq!(p.a.routes(), before);
}

#[test]
fn check_reports_a_tunnel_entry_deleted_or_added_behind_lwtkit() {
    require_root!();
    let p = pair("chkt");
    everything(&p.a);
    let trie = map(&p.a, "encap/tunnels");
    let keys: Vec<Vec<u8>> = trie.keys().collect();
    assert_eq!(keys.len(), 1, "one tunnel, one entry");
    let value = trie
        .lookup(&keys[0], MapFlags::ANY)
        .expect("lookup")
        .expect("entry");
    trie.delete(&keys[0]).expect("delete");
    let found = p.a.findings();
    assert_eq!(kinds(&found), ["tunnel-entry"], "{found:?}");
    assert!(found[0].1.contains("192.168.100.0/24"), "{found:?}");
    // Back as it was, plus an entry for 192.168.101.0/24 no record explains.
    trie.update(&keys[0], &value, MapFlags::ANY)
        .expect("update");
    let mut foreign = keys[0].clone();
    foreign[14] = 101;
    trie.update(&foreign, &value, MapFlags::ANY)
        .expect("update");
    let found = p.a.findings();
    assert_eq!(kinds(&found), ["orphan-entry"], "{found:?}");
    assert!(
        found[0].1.contains("192.168.101.0/24 table main"),
        "{found:?}"
    );
    trie.delete(&foreign).expect("delete");
    assert_eq!(p.a.findings(), vec![]);
}

#[test]
fn check_reports_hooks_and_records_that_lost_each_other() {
    require_root!();
    let p = pair("chko");
    everything(&p.a);
    // The tunnel's record gone: its route hook has no owner, its entry no record.
    let record = p.a.state_dir().join("encap/254_192_168_100_0_24.json");
    let text = std::fs::read(&record).expect("tunnel record");
    std::fs::remove_file(&record).expect("remove");
    let found = p.a.findings();
    assert_eq!(kinds(&found), ["orphan-hook", "orphan-entry"], "{found:?}");
    std::fs::write(&record, text).expect("restore");
    assert_eq!(p.a.findings(), vec![]);
}

#[test]
fn check_reports_a_sid_route_rewritten_outside_lwtkit() {
    require_root!();
    let p = pair("chks");
    everything(&p.a);
    p.a.ip(&["-6", "route", "replace", "fc00::b/128", "dev", "va"]);
    let found = p.a.findings();
    assert_eq!(kinds(&found), ["drift"], "{found:?}");
    assert!(found[0].1.contains("SID fc00::b/128"), "{found:?}");
    p.a.ip(&["-6", "route", "del", "fc00::b/128"]);
    let found = p.a.findings();
    assert_eq!(kinds(&found), ["gone"], "{found:?}");
    // `seg6local del` forgets it; the rest still agrees.
    p.a.lwt_ok(&["seg6local", "del", "fc00::b"]);
    assert_eq!(p.a.findings(), vec![]);
}

#[test]
fn check_reports_decapsulator_maps_changed_and_a_deleted_device() {
    require_root!();
    let p = pair("chkd");
    everything(&p.a);
    let config = map(&p.a, "decap/vx/config");
    let old = config
        .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
        .expect("lookup")
        .expect("config");
    let mut keyed = old.clone();
    keyed[8..12].copy_from_slice(&7u32.to_ne_bytes());
    config
        .update(&0u32.to_ne_bytes(), &keyed, MapFlags::ANY)
        .expect("update");
    let found = p.a.findings();
    assert_eq!(kinds(&found), ["decap-maps"], "{found:?}");
    config
        .update(&0u32.to_ne_bytes(), &old, MapFlags::ANY)
        .expect("update");
    let local = map(&p.a, "decap/vx/local");
    for k in local.keys().collect::<Vec<_>>() {
        local.delete(&k).expect("delete");
    }
    let found = p.a.findings();
    assert_eq!(kinds(&found), ["decap-maps"], "{found:?}");
    assert!(found[0].1.contains("local map holds nothing"), "{found:?}");
    // `decap add` again puts the addresses back.
    p.a.lwt_ok(&["decap", "add", "--dev", "vx", "--type", "gre"]);
    assert_eq!(p.a.findings(), vec![]);
    p.a.ip(&["link", "del", "vx"]);
    let found = p.a.findings();
    assert_eq!(kinds(&found), ["defunct"], "{found:?}");
    p.a.lwt_ok(&["decap", "del", "--dev", "vx"]);
    assert_eq!(p.a.findings(), vec![]);
}

#[test]
fn check_reports_a_policy_whose_live_rules_are_not_the_recorded_ones() {
    require_root!();
    let p = pair("chkf");
    everything(&p.a);
    // Flip the live generation behind lwtkit: packets walk the other half.
    let config = map(&p.a, "filters/web/config");
    let old = config
        .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
        .expect("lookup")
        .expect("config");
    let mut flipped = old.clone();
    flipped[0] ^= 1;
    config
        .update(&0u32.to_ne_bytes(), &flipped, MapFlags::ANY)
        .expect("update");
    let found = p.a.findings();
    assert_eq!(kinds(&found), ["generation", "rules"], "{found:?}");
    config
        .update(&0u32.to_ne_bytes(), &old, MapFlags::ANY)
        .expect("update");
    assert_eq!(p.a.findings(), vec![]);
    // A record that lost a rule the kernel still runs (it names no rules
    // file any more).
    let record = p.a.state_dir().join("filters/web.json");
    let text = std::fs::read_to_string(&record).expect("policy record");
    let mut v = json(&text);
    let rules_file = v
        .as_object_mut()
        .and_then(|o| o.remove("rules_file"))
        .and_then(|f| f.as_str().map(String::from))
        .expect("the record names its rules file");
    std::fs::write(&record, v.to_string()).expect("write");
    let found = p.a.findings();
    assert_eq!(kinds(&found), ["rules"], "{found:?}");
    assert!(found[0].1.contains("0 rule(s) on record"), "{found:?}");
    std::fs::write(&record, &text).expect("restore");
    assert_eq!(p.a.findings(), vec![]);
    // A rules file gone.
    let rules = p.a.state_dir().join("filters").join(rules_file);
    let bytes = std::fs::read(&rules).expect("rules file");
    std::fs::remove_file(&rules).expect("remove");
    let found = p.a.findings();
    assert!(
        kinds(&found).contains(&"rules") && found[0].1.contains("rules file cannot be read"),
        "{found:?}"
    );
    std::fs::write(&rules, bytes).expect("restore");
    assert_eq!(p.a.findings(), vec![]);
}

#[test]
fn check_reports_staging_dirs_and_pins_without_records() {
    require_root!();
    let p = pair("chkp");
    everything(&p.a);
    let pins = p.a.pin_dir();
    let left = [
        pins.join("254_10_0_0_9_32/xmit_next"),
        pins.join("seg6local/254_fc00__b_128_next"),
        pins.join("decap/vx:next"),
        pins.join("254_10_0_0_7_32"),
        pins.join("filters/gone"),
        // What a policy growing when it was killed leaves: staging, not a
        // policy without a record.
        pins.join("filters/web:next"),
    ];
    for d in &left {
        std::fs::create_dir_all(d).expect("mkdir on bpffs");
    }
    let found = p.a.findings();
    let mut got = kinds(&found);
    got.sort();
    assert_eq!(
        got,
        [
            "orphan-pins",
            "orphan-pins",
            "staging",
            "staging",
            "staging",
            "staging"
        ],
        "{found:?}"
    );
    for d in &left {
        std::fs::remove_dir(d).expect("rmdir");
    }
    assert_eq!(p.a.findings(), vec![]);
}
