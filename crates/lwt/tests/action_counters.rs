//! What a rule's action did (translated, rerouted, redirected, failed) is
//! kept as its packet counters are: across a policy's growth into bigger
//! maps, and put back when a change is killed before its flip. A policy
//! made before action counters existed (no `action_stats` map) says so in
//! `filter show` and is moved onto maps that keep them by its next rule
//! change. Traffic: the inside host C (10.1.0.2) through gateway B to the
//! outside host A (10.0.0.2), `snat` on B's route to A.
mod common;

use std::time::{Duration, Instant};

use common::{json, send_udp, Chain, Netns};

/// B with policy `out` (`--capacity` as given) on the xmit of its route to A.
fn gateway(tag: &str, capacity: &str) -> Chain {
    let g = Chain::new(tag);
    let b = &g.b;
    b.lwt_ok(&["filter", "create", "out", "--capacity", capacity]);
    b.lwt_ok(&[
        "filter",
        "rule",
        "add",
        "out",
        "src",
        "10.1.0.2",
        "snat",
        "203.0.113.7",
    ]);
    b.lwt_ok(&[
        "filter",
        "attach",
        "out",
        "10.0.0.2/32",
        "--dev",
        "vb",
        "--hook",
        "xmit",
    ]);
    g
}

/// The `snat` rule's action counters (`done`, `failed`) and its packets.
fn translated(b: &Netns) -> (u64, u64, u64) {
    let v = json(&b.lwt_ok(&["-j", "filter", "show", "out"]));
    let rule = v["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .find(|r| r["text"] == "src 10.1.0.2/32 snat 203.0.113.7")
        .unwrap_or_else(|| panic!("no snat rule in {v}"))
        .clone();
    let a = &rule["action_counters"];
    (
        a["done"].as_u64().expect("done"),
        a["failed"].as_u64().expect("failed"),
        rule["packets"].as_u64().expect("packets"),
    )
}

/// Sends `n` datagrams from C to A and waits until B's rule counted them
/// (`before` + n translated).
fn translate(g: &Chain, n: usize, before: u64) -> u64 {
    send_udp(&g.c, "10.0.0.2:9700", n, 16);
    let want = before + n as u64;
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let (done, _, _) = translated(&g.b);
        if done >= want || Instant::now() > until {
            assert_eq!(done, want, "translated datagrams");
            return done;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn agrees(b: &Netns) {
    let found = b.findings();
    assert!(found.is_empty(), "lwt check disagrees: {found:?}");
}

#[test]
fn action_counters_are_carried_when_a_policy_grows() {
    require_root!();
    let g = gateway("acgr", "1");
    let b = &g.b;
    let done = translate(&g, 5, 0);
    let capacity =
        |b: &Netns| json(&b.lwt_ok(&["-j", "filter", "show", "out"]))["capacity"].clone();
    let small = capacity(b);
    for i in 1..=3 {
        b.lwt_ok(&[
            "filter",
            "rule",
            "add",
            "out",
            "dst",
            &format!("192.0.2.{i}"),
            "drop",
        ]);
    }
    assert_ne!(capacity(b), small, "the policy grew into bigger maps");
    let (now, failed, packets) = translated(b);
    assert_eq!(
        (now, failed),
        (done, 0),
        "what the action did before the growth"
    );
    assert_eq!(packets, done, "rule counters are carried too");
    // And it counts on in the new maps.
    translate(&g, 3, done);
    agrees(b);
}

#[test]
fn a_killed_replace_puts_back_what_the_actions_counted() {
    require_root!();
    let g = gateway("acrp", "256");
    let b = &g.b;
    let done = translate(&g, 4, 0);
    // A second change: the live generation flips, the snat rule's counts
    // now lie in the idle one, which a replace writes (and zeroes) first.
    b.lwt_ok(&["filter", "rule", "add", "out", "dst", "192.0.2.1", "drop"]);
    assert_eq!(translated(b).0, done);
    let file = std::env::temp_dir().join(format!("lwt-acrp-{}.rules", std::process::id()));
    std::fs::write(&file, "src 10.1.0.2 snat 203.0.113.7\ndst 192.0.2.2 drop\n")
        .expect("rules file");
    let out = b.lwt_env(
        &[("LWT_FAILPOINT", "filter-commit:zeroed")],
        &[
            "filter",
            "replace",
            "out",
            "--file",
            file.to_str().expect("path"),
        ],
    );
    let _ = std::fs::remove_file(&file);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{out:?}");
    // `lwt check` finishes the killed replace (undone: before its flip).
    agrees(b);
    let (now, failed, packets) = translated(b);
    assert_eq!((now, failed, packets), (done, 0, done), "counts put back");
}

#[test]
fn a_policy_made_before_action_counters_says_so_and_its_next_rule_change_moves_it_onto_maps_that_keep_them(
) {
    require_root!();
    let g = Chain::new("acld");
    let b = &g.b;
    b.lwt_ok(&["filter", "create", "old"]);
    b.lwt_ok(&["filter", "rule", "add", "old", "dst", "192.0.2.1", "drop"]);
    b.lwt_ok(&[
        "filter",
        "attach",
        "old",
        "10.0.0.2/32",
        "--dev",
        "vb",
        "--hook",
        "xmit",
    ]);
    // What lwtkit before action counters left: no `action_stats` pin.
    let pin = b.pin_dir().join("filters/old/action_stats");
    std::fs::remove_file(&pin).expect("remove the action_stats pin");
    let shown = json(&b.lwt_ok(&["-j", "filter", "show", "old"]));
    let note = shown["note"].as_str().expect("a note");
    assert!(note.contains("made before action counters"), "{note}");
    assert!(b
        .lwt_ok(&["filter", "show", "old"])
        .contains("note: policy `old` was made before action counters"));
    agrees(b);
    let routes = b.routes();

    // The next rule change: new maps with action counters, a program on
    // them swapped into the route in place.
    b.lwt_ok(&[
        "filter",
        "rule",
        "add",
        "old",
        "src",
        "10.1.0.2",
        "snat",
        "203.0.113.7",
    ]);
    assert!(pin.exists(), "the action_stats map is pinned");
    let shown = json(&b.lwt_ok(&["-j", "filter", "show", "old"]));
    assert!(shown.get("note").is_none(), "{shown}");
    assert_ne!(b.routes(), routes, "the route runs the new program");
    agrees(b);
    send_udp(&g.c, "10.0.0.2:9701", 3, 16);
    let until = Instant::now() + Duration::from_secs(5);
    let done = loop {
        let v = json(&b.lwt_ok(&["-j", "filter", "show", "old"]));
        let done = v["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .find(|r| r["text"] == "src 10.1.0.2/32 snat 203.0.113.7")
            .and_then(|r| r["action_counters"]["done"].as_u64())
            .unwrap_or(0);
        if done >= 3 || Instant::now() > until {
            break done;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(done, 3, "the snat rule's translations are counted");
}
