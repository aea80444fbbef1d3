//! `lwt nat add`, `del`, `list` through the gateway of issue 9: the inside
//! host C (10.1.0.2, fd01::2) — gateway B — the outside host A (10.0.0.2,
//! fd00::2). One command on B maps the inside network onto a public one
//! both ways; traffic shows it, `nat del` puts B's routes back.
mod common;

use common::{json, serve_tcp, tcp_works_soon, Chain, Netns};

/// What a user sees of B: routes of both families, policies, mappings.
fn snapshot(b: &Netns) -> String {
    format!(
        "{}\n{}\n{}\n{}",
        b.ip(&["route", "show", "table", "all"]),
        b.ip(&["-6", "route", "show", "table", "all"]),
        b.lwt_ok(&["-j", "filter", "list"]),
        b.lwt_ok(&["-j", "nat", "list"]),
    )
}

fn mapping<'a>(list: &'a serde_json::Value, inside: &str) -> &'a serde_json::Value {
    list.as_array()
        .expect("array")
        .iter()
        .find(|m| m["inside"] == inside)
        .unwrap_or_else(|| panic!("no mapping of {inside} in {list}"))
}

#[test]
fn nat_add_maps_an_inside_ipv4_network_onto_a_public_one_both_ways_and_del_restores_the_routes() {
    require_root!();
    let g = Chain::new("nata4");
    let b = &g.b;
    let before = snapshot(b);
    let added = json(&b.lwt_ok(&[
        "-j",
        "nat",
        "add",
        "--inside",
        "10.1.0.0/24",
        "--public",
        "203.0.113.0/24",
        "--out-route",
        "10.0.0.0/24",
    ]));
    assert_eq!(added["state"], "active", "{added}");
    assert_eq!(added["outbound"]["policy"], "nat-out");
    assert_eq!(added["outbound"]["dev"], "vb");
    assert_eq!(added["inbound"]["dst"], "203.0.113.0/24");
    assert_eq!(added["inbound"]["dev"], "vbc");
    // In rule form: what `filter show` has.
    let out = b.lwt_ok(&["filter", "show", "nat-out"]);
    assert!(out.contains("src 10.1.0.0/24 snat 203.0.113.0/24"), "{out}");
    assert!(out.contains("attached: 10.0.0.0/24 table main dev vb hook xmit"));
    let inb = b.lwt_ok(&["filter", "show", "nat-in"]);
    assert!(inb.contains("dst 203.0.113.0/24 dnat 10.1.0.0/24"), "{inb}");

    // Inside to outside: A sees the public address (host bits kept).
    let (seen, answer) = common::udp_exchange(&g.c, &g.a, "10.0.0.2:9300", "10.0.0.2:9300", 2);
    assert_eq!(seen.ip().to_string(), "203.0.113.2");
    assert_eq!(answer.to_string(), "10.0.0.2:9300");
    // Outside to the public address: the inside host, which sees A.
    let (seen, answer) = common::udp_exchange(&g.a, &g.c, "10.1.0.2:9301", "203.0.113.2:9301", 2);
    assert_eq!(seen.ip().to_string(), "10.0.0.2");
    assert_eq!(answer.to_string(), "203.0.113.2:9301");
    serve_tcp(&g.c, &["10.1.0.2:8080"]);
    assert!(
        tcp_works_soon(&g.a, "203.0.113.2:8080"),
        "TCP to the public address"
    );

    let list = json(&b.lwt_ok(&["-j", "nat", "list"]));
    let m = mapping(&list, "10.1.0.0/24");
    assert!(m["outbound"]["translated"].as_u64() >= Some(2), "{m}");
    assert!(m["inbound"]["translated"].as_u64() >= Some(2), "{m}");
    assert_eq!(m["outbound"]["failed"], 0);
    let text = b.lwt_ok(&["nat", "list"]);
    assert!(text.contains("10.1.0.0/24 <-> 203.0.113.0/24"), "{text}");

    // A second mapping through the same routes extends the same policies.
    b.lwt_ok(&[
        "nat",
        "add",
        "--inside",
        "10.1.1.0/24",
        "--public",
        "198.51.100.0/24",
        "--out-route",
        "10.0.0.0/24",
        "--public-dev",
        "vbc",
    ]);
    let out = json(&b.lwt_ok(&["-j", "filter", "show", "nat-out"]));
    assert_eq!(out["rules"].as_array().map(Vec::len), Some(2), "{out}");

    // Deleting the first keeps the second working on routes still lwtkit's.
    b.lwt_ok(&["nat", "del", "--inside", "10.1.0.0/24"]);
    assert!(b.lwt_ok(&["nat", "list"]).contains("10.1.1.0/24"));
    assert!(b.routes().contains("lwtkit-filter-nat-out"));
    b.lwt_ok(&["nat", "del", "--public", "198.51.100.0/24"]);
    assert_eq!(snapshot(b), before, "nat del put B back as it was");
    // Without the mapping the inside leaves untranslated again.
    let (seen, _) = common::udp_exchange(&g.c, &g.a, "10.0.0.2:9302", "10.0.0.2:9302", 2);
    assert_eq!(seen.ip().to_string(), "10.1.0.2");
}

#[test]
fn nat_add_maps_an_inside_ipv6_prefix_by_nptv6_both_ways() {
    require_root!();
    let g = Chain::new("nata6");
    let b = &g.b;
    let before = snapshot(b);
    b.lwt_ok(&[
        "nat",
        "add",
        "--inside",
        "fd01::/64",
        "--public",
        "fd99::/64",
        "--out-route",
        "fd00::/64",
    ]);
    let (seen, answer) = common::udp_exchange(&g.c, &g.a, "[fd00::2]:9400", "[fd00::2]:9400", 2);
    let std::net::IpAddr::V6(public) = seen.ip() else {
        panic!("IPv6 expected")
    };
    assert_eq!(public.segments()[..4], [0xfd99, 0, 0, 0], "{public}");
    assert_eq!(answer.to_string(), "[fd00::2]:9400");
    // The outside reaches the inside host at the address it saw.
    let to = format!("[{public}]:9401");
    let (seen, _) = common::udp_exchange(&g.a, &g.c, "[fd01::2]:9401", &to, 2);
    assert_eq!(seen.ip().to_string(), "fd00::2");
    let list = json(&b.lwt_ok(&["-j", "nat", "list"]));
    let m = mapping(&list, "fd01::/64");
    assert!(m["inbound"]["translated"].as_u64() >= Some(1), "{m}");
    b.lwt_ok(&["nat", "del", "--inside", "fd01::/64"]);
    assert_eq!(snapshot(b), before, "nat del put B back as it was");
}

#[test]
fn bad_nat_requests_are_refused_and_change_nothing() {
    require_root!();
    let g = Chain::new("natab");
    let b = &g.b;
    b.lwt_ok(&[
        "nat",
        "add",
        "--inside",
        "10.1.0.0/24",
        "--public",
        "203.0.113.0/24",
        "--out-route",
        "10.0.0.0/24",
    ]);
    // A policy attached on `in` elsewhere and on the xmit of the route a
    // new public prefix gets: its `dnat` rule cannot run there, which is
    // found after the outbound half is made; that half is undone.
    b.lwt_ok(&["filter", "create", "guard"]);
    b.lwt_ok(&[
        "filter",
        "attach",
        "guard",
        "10.0.0.2/32",
        "--dev",
        "vb",
        "--hook",
        "in",
    ]);
    b.lwt_ok(&[
        "filter",
        "attach",
        "guard",
        "198.51.100.0/24",
        "--dev",
        "vbc",
        "--hook",
        "xmit",
    ]);
    b.lwt_ok(&[
        "attach",
        "10.0.0.9/32",
        "--dev",
        "vb",
        "--hook",
        "xmit",
        "--builtin",
        "count",
    ]);
    let before = snapshot(b);
    let cases: &[(&[&str], &str)] = &[
        (
            &["--inside", "10.2.0.0/24", "--public", "198.51.0.0/16"],
            "differ in length",
        ),
        (
            &["--inside", "10.2.0.0/24", "--public", "fd99::/120"],
            "different families",
        ),
        (
            &["--inside", "10.1.0.0/25", "--public", "198.51.100.0/25"],
            "overlaps the mapping 10.1.0.0/24 <-> 203.0.113.0/24",
        ),
        (
            &["--inside", "10.2.0.0/24", "--public", "203.0.113.0/24"],
            "overlaps the mapping",
        ),
        (
            &["--inside", "10.2.0.0/24", "--public", "192.0.2.0/24"],
            "no route 10.2.0.0/24 in table main",
        ),
        (
            &[
                "--inside",
                "10.1.1.0/24",
                "--public",
                "198.51.100.0/24",
                "--public-dev",
                "vbc",
            ],
            "cannot run on hook in",
        ),
        (
            &[
                "--inside",
                "10.1.1.0/24",
                "--public",
                "192.0.2.0/24",
                "--public-dev",
                "nosuch0",
            ],
            "nosuch0",
        ),
    ];
    for (args, says) in cases {
        let mut words = vec!["nat", "add", "--out-route", "10.0.0.0/24"];
        words.extend_from_slice(args);
        let err = b.lwt_err(&words);
        assert!(err.contains(says), "`lwt {}`: {err}", words.join(" "));
        assert_eq!(snapshot(b), before, "`lwt {}` changed B", words.join(" "));
    }
    // A route whose xmit another owner holds is named with its remover.
    let err = b.lwt_err(&[
        "nat",
        "add",
        "--inside",
        "10.1.1.0/24",
        "--public",
        "192.0.2.0/24",
        "--out-route",
        "10.0.0.9/32",
        "--public-dev",
        "vbc",
    ]);
    assert!(err.contains("lwt detach 10.0.0.9/32"), "{err}");
    assert_eq!(snapshot(b), before);
    let err = b.lwt_err(&["nat", "del", "--inside", "10.9.0.0/24"]);
    assert!(
        err.contains("no NAT mapping of --inside 10.9.0.0/24"),
        "{err}"
    );
    assert_eq!(snapshot(b), before);
}

#[test]
fn concurrent_nat_adds_of_overlapping_mappings_make_exactly_one() {
    require_root!();
    let g = Chain::new("natac");
    let b = &g.b;
    let before = snapshot(b);
    // Four commands at once, each a different inside /24 onto the same
    // public /24 (they all overlap): one wins, the others are refused.
    let children: Vec<_> = (0..4)
        .map(|i| {
            let inside = format!("10.1.{i}.0/24");
            b.lwt_spawn(&[
                "nat",
                "add",
                "--inside",
                &inside,
                "--public",
                "203.0.113.0/24",
                "--out-route",
                "10.0.0.0/24",
                "--public-dev",
                "vbc",
            ])
        })
        .collect();
    let outs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().expect("lwt ran"))
        .collect();
    let won = outs.iter().filter(|o| o.status.success()).count();
    assert_eq!(won, 1, "{outs:?}");
    for o in outs.iter().filter(|o| !o.status.success()) {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("overlaps the mapping"), "{err}");
    }
    let list = json(&b.lwt_ok(&["-j", "nat", "list"]));
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    let out = json(&b.lwt_ok(&["-j", "filter", "show", "nat-out"]));
    assert_eq!(out["rules"].as_array().map(Vec::len), Some(1), "{out}");
    let found = b.findings();
    assert!(found.is_empty(), "lwt check disagrees: {found:?}");
    let inside = list[0]["inside"].as_str().expect("inside").to_string();
    b.lwt_ok(&["nat", "del", "--inside", &inside]);
    assert_eq!(snapshot(b), before);
}
