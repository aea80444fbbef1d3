//! `kill -9` at every step of every verb that changes a namespace: each
//! failpoint of the library (`LWT_FAILPOINT`) is hit by the verbs that pass
//! it, on every path they take (a route created, replaced, stacked,
//! restored; a program shared; a map entry updated in place; a policy's
//! rules added, deleted, replaced under counted traffic; a decapsulator
//! attached or reconfigured). After each kill:
//!
//! - the process died of SIGKILL with its intent on disk;
//! - `lwt check` agrees (it finishes the intent, as any command would);
//! - what a user sees (routes of both families, every listing) is the
//!   namespace before the verb or after it, never something in between;
//! - undoing (detach, encap del, seg6local del, decap del, filter delete)
//!   brings the routes back exactly as they were.
//!
//! Each test builds its own namespaces.
mod common;

use std::{os::unix::process::ExitStatusExt, path::Path};

use common::{json, send_udp_lossy, Netns, Pair};
use serde_json::Value;

/// One crash experiment: from the namespace as it is (`pristine`), run
/// `setup`, then `verb` killed at `point`.
struct Case {
    point: &'static str,
    setup: Vec<String>,
    verb: String,
    /// Commands that take everything the setup and the verb made off
    /// again; each may find its object already gone.
    undo: Vec<String>,
    /// Run after the setup (traffic whose counters must survive).
    prepare: Option<fn(&Netns)>,
    /// Run once the killed verb was finished by `lwt check`.
    inspect: Option<fn(&Netns)>,
    /// Whether the states compared may differ in what the policy's
    /// programs are specialised for (`filter show`'s `program`): a kill
    /// while a replace swaps leaner programs in leaves the wider ones,
    /// which judge alike (the case's `inspect` checks which).
    loose_program: bool,
}

fn case(point: &'static str, setup: &[&str], verb: &str, undo: &[&str]) -> Case {
    Case {
        point,
        setup: setup.iter().map(|s| s.to_string()).collect(),
        verb: verb.into(),
        undo: undo.iter().map(|s| s.to_string()).collect(),
        prepare: None,
        inspect: None,
        loose_program: false,
    }
}

fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// Program ids (`...#1234` in route names) differ from run to run.
fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '#' && chars.peek().is_some_and(char::is_ascii_digit) {
            while chars.peek().is_some_and(char::is_ascii_digit) {
                chars.next();
            }
            out.push('N');
        }
    }
    out
}

/// A listing without what differs between two runs of the same commands:
/// program and rule ids, and counters (checked on their own).
fn strip(v: Value) -> Value {
    const VARYING: [&str; 10] = [
        "id",
        "packets",
        "bytes",
        "passed",
        "stats",
        "unmatched",
        "logged",
        "suppressed",
        "dropped",
        "refused",
    ];
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(k, _)| !VARYING.contains(&k.as_str()))
                .map(|(k, v)| (k, strip(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(strip).collect()),
        other => other,
    }
}

/// What a user sees of the namespace: every route of both families and
/// every listing.
fn snapshot(ns: &Netns) -> String {
    snapshot_of(ns, true)
}

/// [`snapshot`], with or without what the policies' programs are
/// specialised for.
fn snapshot_of(ns: &Netns, program: bool) -> String {
    let mut s = normalize(&detailed_routes(ns));
    for verb in [
        "list",
        "encap list",
        "seg6local list",
        "decap list",
        "filter list",
    ] {
        let mut args = vec!["-j"];
        args.extend(words(verb));
        let mut v = strip(json(&ns.lwt_ok(&args)));
        if !program {
            for p in v.as_array_mut().into_iter().flatten() {
                if let Some(m) = p.as_object_mut() {
                    m.remove("program");
                    m.remove("program_spec");
                }
            }
        }
        s.push_str(&format!("{verb}: {}\n", normalize(&v.to_string())));
    }
    s
}

/// Every route of both families with all `ip -d` prints (protocol,
/// scope, metrics, type), but the IPv6 link-local ones the kernel adds on
/// its own schedule.
fn detailed_routes(ns: &Netns) -> String {
    let all = ns.ip(&["-d", "route", "show", "table", "all"])
        + &ns.ip(&["-d", "-6", "route", "show", "table", "all"]);
    all.lines()
        .filter(|l| !l.contains("fe80:"))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn run_all(ns: &Netns, lines: &[String]) {
    for line in lines {
        ns.lwt_ok(&words(line));
    }
}

/// Runs the undo commands; one may only fail because its object is gone.
fn undo(ns: &Netns, lines: &[String]) {
    const GONE: [&str; 6] = [
        "is not managed by lwtkit",
        "no lwtkit tunnel for",
        "lwtkit does not decapsulate on",
        "unknown policy",
        "is not attached to",
        "has no rule",
    ];
    for line in lines {
        let out = ns.lwt(&words(line));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || GONE.iter().any(|g| err.contains(g)),
            "`lwt {line}`: {err}"
        );
    }
}

fn intents(ns: &Netns) -> usize {
    std::fs::read_dir(ns.state_dir().join("intents"))
        .map(|d| d.flatten().count())
        .unwrap_or(0)
}

/// Asserts `lwt check` finds nothing; returns nothing else.
fn agrees(ns: &Netns, context: &str) {
    let found = ns.findings();
    assert!(
        found.is_empty(),
        "{context}: lwt check disagrees: {found:?}"
    );
}

/// Runs one crash experiment; returns which state the kill left: the
/// namespace `before` the verb or `after` it.
fn crash(ns: &Netns, c: &Case) -> &'static str {
    let ctx = format!("`lwt {}` killed at {}", c.verb, c.point);
    let snapshot = |ns: &Netns| snapshot_of(ns, !c.loose_program);
    let pristine = snapshot(ns);
    let pristine_routes = detailed_routes(ns);
    run_all(ns, &c.setup);
    if let Some(f) = c.prepare {
        f(ns);
    }
    let before = snapshot(ns);
    let out = ns.lwt_env(&[("LWT_FAILPOINT", c.point)], &words(&c.verb));
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGKILL),
        "{ctx}: not killed: {out:?}"
    );
    assert!(intents(ns) > 0, "{ctx}: no intent left on disk");
    agrees(ns, &ctx);
    assert_eq!(intents(ns), 0, "{ctx}: the intent was not finished");
    let mid = snapshot(ns);
    if let Some(f) = c.inspect {
        f(ns);
    }
    undo(ns, &c.undo);
    assert_eq!(
        detailed_routes(ns),
        pristine_routes,
        "{ctx}: undo left other routes"
    );
    assert_eq!(snapshot(ns), pristine, "{ctx}: undo left something behind");
    agrees(ns, &ctx);

    // The same verb run to its end from the same start: the `after` state.
    run_all(ns, &c.setup);
    if let Some(f) = c.prepare {
        f(ns);
    }
    assert_eq!(snapshot(ns), before, "{ctx}: the setup is not repeatable");
    ns.lwt_ok(&words(&c.verb));
    let after = snapshot(ns);
    undo(ns, &c.undo);
    assert_eq!(
        detailed_routes(ns),
        pristine_routes,
        "{ctx}: undo left other routes"
    );
    agrees(ns, &ctx);

    if mid == before {
        "before"
    } else {
        assert_eq!(
            mid, after,
            "{ctx}: the namespace is neither as before the verb nor as after it\n--- before\n{before}"
        );
        "after"
    }
}

/// Where a kill at `point` leaves the namespace: before the kernel change
/// (the intent written, nothing else; a tunnel's map entry written, its
/// route not; a policy's maps made, its record not) or after it.
fn expected(point: &str) -> &'static str {
    // Leaner programs are swapped in once a replace is done.
    if point.starts_with("filter-narrow:") {
        return "after";
    }
    // Wider programs go on every route before the change's flip.
    if point == "filter-widen:swap" {
        return "before";
    }
    if point.ends_with(":intent")
        || point.ends_with(":staged")
        || point.ends_with(":zeroed")
        || point == "encap:map"
        || point == "filter-create:maps"
    {
        "before"
    } else {
        "after"
    }
}

/// Runs every case in `ns`, in order.
fn crash_all(ns: &Netns, cases: &[Case]) {
    for c in cases {
        let left = crash(ns, c);
        eprintln!("{:<22} `lwt {}`: {left}", c.point, c.verb);
        assert_eq!(
            left,
            expected(c.point),
            "`lwt {}` killed at {}",
            c.verb,
            c.point
        );
    }
}

/// A [`Pair`] plus what the cases expect in `a`: a route lwtkit did not
/// make (10.0.0.10/32, and 192.168.102.0/24 for tunnels), and a veth pair
/// of its own (`vx` 10.9.0.1, `vy`) for decapsulators.
fn pair(tag: &str) -> Pair {
    let p = Pair::new(tag);
    p.a.ip(&[
        "route",
        "add",
        "10.0.0.10/32",
        "dev",
        "va",
        "proto",
        "static",
    ]);
    p.a.ip(&[
        "route",
        "add",
        "192.168.102.0/24",
        "dev",
        "va",
        "proto",
        "static",
    ]);
    p.a.ip(&["link", "add", "vx", "type", "veth", "peer", "name", "vy"]);
    p.a.ip(&["addr", "add", "10.9.0.1/24", "dev", "vx"]);
    p.a.ip(&["link", "set", "vx", "up"]);
    p.a.ip(&["link", "set", "vy", "up"]);
    settle(&p.a);
    p
}

/// Waits until the links are up and IPv6 has left DAD: the kernel's own
/// route changes (`linkdown`, link-local routes, addresses a decapsulator
/// takes) must not pass for lwtkit's.
fn settle(ns: &Netns) {
    for _ in 0..200 {
        let links = ns.ip(&["link", "show"]);
        let down = links
            .lines()
            .filter(|l| l.contains(": v"))
            .any(|l| !l.contains("LOWER_UP"));
        let tentative = !ns
            .ip(&["-6", "addr", "show", "tentative"])
            .trim()
            .is_empty();
        if !down && !tentative && !ns.routes().contains("linkdown") {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the links of {} never settled", ns.name);
}

const COUNT9: &str = "attach 10.0.0.9/32 --dev va --hook out --builtin count";
const GRE100: &str = "encap add 192.168.100.0/24 --dev va --type gre --remote 10.0.0.3";
const GRE101: &str = "encap add 192.168.101.0/24 --dev va --type gre --remote 10.0.0.3";
const GRE102: &str = "encap add 192.168.102.0/24 --dev va --type gre --remote 10.0.0.3";

fn attach_cases() -> Vec<Case> {
    let mut v = Vec::new();
    for point in ["attach:staged", "attach:intent", "attach:route"] {
        v.extend([
            // A route lwtkit creates, one it replaces, a hook stacked on
            // another, a hook's program replaced in place, a local route.
            case(point, &[], COUNT9, &["detach 10.0.0.9/32"]),
            case(
                point,
                &[],
                "attach 10.0.0.10/32 --dev va --hook xmit --builtin count",
                &["detach 10.0.0.10/32"],
            ),
            case(
                point,
                &[COUNT9],
                "attach 10.0.0.9/32 --dev va --hook xmit --builtin pass",
                &["detach 10.0.0.9/32"],
            ),
            case(
                point,
                &[COUNT9],
                "attach 10.0.0.9/32 --dev va --hook out --builtin pass",
                &["detach 10.0.0.9/32"],
            ),
            case(
                point,
                &[],
                "attach 10.0.0.2/32 --local --dev va --hook in --builtin count",
                &["detach 10.0.0.2/32 --local"],
            ),
            // The same steps under `filter attach` and `encap add`: a new
            // tunnel, one sharing a sibling's program, one on a route that
            // was there.
            case(
                point,
                &["filter create web"],
                "filter attach web 10.0.0.11/32 --dev va --hook out",
                &["filter detach web 10.0.0.11/32", "filter delete web"],
            ),
            case(point, &[], GRE100, &["encap del 192.168.100.0/24"]),
            case(
                point,
                &[GRE101],
                GRE100,
                &["encap del 192.168.100.0/24", "encap del 192.168.101.0/24"],
            ),
            case(point, &[], GRE102, &["encap del 192.168.102.0/24"]),
        ]);
    }
    v
}

fn detach_cases() -> Vec<Case> {
    let mut v = Vec::new();
    for point in ["detach:intent", "detach:route"] {
        v.extend([
            // Delete what lwtkit created, restore what was there, re-send
            // with a hook left, restore a local route.
            case(
                point,
                &[COUNT9],
                "detach 10.0.0.9/32",
                &["detach 10.0.0.9/32"],
            ),
            case(
                point,
                &["attach 10.0.0.10/32 --dev va --hook xmit --builtin count"],
                "detach 10.0.0.10/32",
                &["detach 10.0.0.10/32"],
            ),
            case(
                point,
                &[
                    COUNT9,
                    "attach 10.0.0.9/32 --dev va --hook xmit --builtin pass",
                ],
                "detach 10.0.0.9/32 --hook xmit",
                &["detach 10.0.0.9/32"],
            ),
            case(
                point,
                &["attach 10.0.0.2/32 --local --dev va --hook in --builtin count"],
                "detach 10.0.0.2/32 --local",
                &["detach 10.0.0.2/32 --local"],
            ),
            // The same under `filter detach` and `encap del` (a tunnel on a
            // route that was there; a tunnel beside a counted hook, whose
            // MTU goes back).
            case(
                point,
                &[
                    "filter create web",
                    "filter attach web 10.0.0.11/32 --dev va --hook out",
                ],
                "filter detach web 10.0.0.11/32",
                &["filter detach web 10.0.0.11/32", "filter delete web"],
            ),
            case(
                point,
                &[GRE100],
                "encap del 192.168.100.0/24",
                &["encap del 192.168.100.0/24"],
            ),
            case(
                point,
                &[GRE102],
                "encap del 192.168.102.0/24",
                &["encap del 192.168.102.0/24"],
            ),
            case(
                point,
                &[
                    GRE100,
                    "attach 192.168.100.0/24 --dev va --hook out --builtin count",
                ],
                "encap del 192.168.100.0/24",
                &["encap del 192.168.100.0/24", "detach 192.168.100.0/24"],
            ),
        ]);
    }
    v
}

fn encap_cases() -> Vec<Case> {
    let del = &["encap del 192.168.100.0/24"][..];
    vec![
        // The map entry written, the route not yet: a new tunnel, a remote
        // changed in place (the map is the whole change), a new shape.
        case("encap:map", &[], GRE100, del),
        case(
            "encap:map",
            &[GRE100],
            "encap add 192.168.100.0/24 --dev va --type gre --remote 10.0.0.4",
            del,
        ),
        case(
            "encap:map",
            &[GRE100],
            "encap add 192.168.100.0/24 --dev va --type vxlan --remote 10.0.0.3 --vni 5 --inner-dst-mac 02:00:00:00:00:01",
            del,
        ),
        case(
            "encap:map",
            &[],
            "encap add 2001:db8:100::/64 --dev va --type gre --remote 10.0.0.3",
            &["encap del 2001:db8:100::/64"],
        ),
        // Inside a wider tunnel: a trie lookup of the new prefix answers
        // with the wider entry, which must not be taken for its own.
        case(
            "encap:map",
            &["encap add 192.168.0.0/16 --dev va --type gre --remote 10.0.0.3"],
            GRE100,
            &["encap del 192.168.100.0/24", "encap del 192.168.0.0/16"],
        ),
    ]
}

fn seg6local_cases() -> Vec<Case> {
    const END: &str = "seg6local add fc00::b --dev va --builtin end";
    let del = &["seg6local del fc00::b"][..];
    let mut v = Vec::new();
    for point in [
        "seg6local-add:staged",
        "seg6local-add:intent",
        "seg6local-add:route",
    ] {
        v.push(case(point, &[], END, del));
        v.push(case(
            point,
            &[END],
            "seg6local add fc00::b --dev va --builtin end-dt6",
            del,
        ));
    }
    for point in ["seg6local-del:intent", "seg6local-del:route"] {
        v.push(case(point, &[END], "seg6local del fc00::b", del));
    }
    v
}

fn filter_cases() -> Vec<Case> {
    vec![
        case(
            "filter-create:maps",
            &[],
            "filter create web",
            &["filter delete web"],
        ),
        case(
            "filter-delete:pins",
            &[
                "filter create web",
                "filter rule add web dst 10.0.0.8/32 proto udp dport 7001 drop",
            ],
            "filter delete web",
            &["filter delete web"],
        ),
        // The settings go to the config map first; the record follows.
        case(
            "filter-set:config",
            &["filter create web"],
            "filter set web --default drop --fragments drop --malformed default",
            &["filter delete web"],
        ),
    ]
}

const NAT_ADD: &str =
    "nat add --inside 10.7.0.0/24 --public 203.0.113.0/24 --out-route 10.0.0.0/24 --public-dev va";

/// `lwt nat add` and `del` make several changes (policies, rules,
/// attachments), each crash-safe as its verb is; the mapping's record says
/// what is half done, and the next `lwt nat` command finishes it.
fn nat_cases() -> Vec<Case> {
    let del = &["nat del --inside 10.7.0.0/24"][..];
    vec![
        case("nat-add:record", &[], NAT_ADD, del),
        case("nat-add:outbound-rule", &[], NAT_ADD, del),
        case("nat-add:inbound-rule", &[], NAT_ADD, del),
        case(
            "nat-del:rule",
            &[NAT_ADD],
            "nat del --inside 10.7.0.0/24",
            del,
        ),
    ]
}

/// A `nat` verb killed at each of its own steps: `lwt check` agrees (each
/// step it made is whole), `nat list` shows the mapping as interrupted,
/// and the next `nat` command converges: `nat del` takes off what was
/// made, back to the routes before, and a `nat add` run again makes it.
fn crash_nat(ns: &Netns, c: &Case) {
    let ctx = format!("`lwt {}` killed at {}", c.verb, c.point);
    let pristine = snapshot(ns);
    let pristine_routes = detailed_routes(ns);
    run_all(ns, &c.setup);
    let out = ns.lwt_env(&[("LWT_FAILPOINT", c.point)], &words(&c.verb));
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGKILL),
        "{ctx}: not killed: {out:?}"
    );
    agrees(ns, &ctx);
    let list = json(&ns.lwt_ok(&["-j", "nat", "list"]));
    let state = &list[0]["state"];
    assert!(*state == "adding" || *state == "removing", "{ctx}: {list}");
    // The same add again first undoes (or finishes) the interrupted
    // command, then makes the mapping whole.
    ns.lwt_ok(&words(NAT_ADD));
    let list = json(&ns.lwt_ok(&["-j", "nat", "list"]));
    assert_eq!(list[0]["state"], "active", "{ctx}: {list}");
    assert!(list[0]["outbound"]["id"].is_number(), "{ctx}: {list}");
    assert!(list[0]["inbound"]["id"].is_number(), "{ctx}: {list}");
    undo(ns, &c.undo);
    assert_eq!(detailed_routes(ns), pristine_routes, "{ctx}: routes");
    assert_eq!(snapshot(ns), pristine, "{ctx}: left something behind");
    agrees(ns, &ctx);
    // Killed again, then `nat del`: nothing is left either.
    run_all(ns, &c.setup);
    let out = ns.lwt_env(&[("LWT_FAILPOINT", c.point)], &words(&c.verb));
    assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{ctx}");
    ns.lwt_ok(&words(c.undo[0].as_str()));
    assert_eq!(
        detailed_routes(ns),
        pristine_routes,
        "{ctx}: routes after del"
    );
    assert_eq!(snapshot(ns), pristine, "{ctx}: del left something behind");
    assert_eq!(ns.lwt_ok(&["-j", "nat", "list"]).trim(), "[]", "{ctx}");
}

fn decap_cases() -> Vec<Case> {
    const GRE: &str = "decap add --dev vx --type gre";
    let del = &["decap del --dev vx"][..];
    vec![
        case("decap-add:intent", &[], GRE, del),
        case("decap-add:link", &[], GRE, del),
        // A live decapsulator reconfigured through its maps.
        case(
            "decap-add:record",
            &[GRE],
            "decap add --dev vx --type gre,ipip --key 7 --local 10.9.0.1 --remote 10.9.0.2",
            del,
        ),
        case("decap-del:link", &[GRE], "decap del --dev vx", del),
    ]
}

// ------------------------------------------------- rule changes, counted

/// The policy's route, and the datagrams sent through it before the change:
/// 3 to port 7001 (rule 1), 2 to 7002 (rule 2), 4 to 7003 (no rule).
const POLICY: [&str; 4] = [
    "filter create web",
    "filter rule add web dst 10.0.0.8/32 proto udp dport 7001 drop",
    "filter rule add web dst 10.0.0.8/32 proto udp dport 7002 drop",
    "filter attach web 10.0.0.8/32 --dev va --hook out",
];
const SENT: [(u16, usize); 3] = [(7001, 3), (7002, 2), (7003, 4)];

fn counted_traffic(ns: &Netns) {
    for (port, n) in SENT {
        let accepted = send_udp_lossy(ns, &format!("10.0.0.8:{port}"), n, 32);
        let dropped = port != 7003;
        assert_eq!(accepted, if dropped { 0 } else { n }, "port {port}");
    }
}

/// [`counted_traffic`], then one more change (a rule for a port no datagram
/// used), so what rules 1 and 2 counted is in the idle generation: the one a
/// `replace` zeroes for its new rules before it flips.
fn counted_traffic_then_flip(ns: &Netns) {
    counted_traffic(ns);
    ns.lwt_ok(&words(
        "filter rule add web dst 10.0.0.8/32 proto udp dport 7009 allow",
    ));
}

/// After the kill: every rule on record counts what it counted before
/// (rules 1 and 2 kept their ids; a new rule starts at zero), and a
/// datagram to each port meets exactly the rules the record lists:
/// dropped and counted by its rule, or passed and counted as unmatched.
fn rules_are_live_and_counted(ns: &Netns) {
    let show = || json(&ns.lwt_ok(&["filter", "show", "web", "-j"]));
    let port_of = |r: &Value| r["dport"]["lo"].as_u64().expect("dport") as u16;
    let before = show();
    let rules = before["rules"].as_array().expect("rules").clone();
    let mut ids: Vec<u64> = rules
        .iter()
        .map(|r| r["id"].as_u64().expect("id"))
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), rules.len(), "rule ids are unique: {before}");
    for r in &rules {
        let want = match r["id"].as_u64() {
            Some(1) => 3,
            Some(2) => 2,
            _ => 0,
        };
        assert_eq!(
            r["packets"], want,
            "rule {r} counted {want} before the change"
        );
    }
    assert_eq!(before["unmatched"]["packets"], 4, "{before}");
    let ports = [7001u16, 7002, 7003, 7004];
    for port in ports {
        let ruled = rules.iter().any(|r| port_of(r) == port);
        let accepted = send_udp_lossy(ns, &format!("10.0.0.8:{port}"), 1, 32);
        assert_eq!(accepted, usize::from(!ruled), "port {port}: {before}");
    }
    let after = show();
    for r in after["rules"].as_array().expect("rules") {
        let old = rules
            .iter()
            .find(|o| o["id"] == r["id"])
            .and_then(|o| o["packets"].as_u64())
            .expect("same rules");
        // One datagram went to each port above (none to a rule's other port).
        let sent = u64::from(ports.contains(&port_of(r)));
        assert_eq!(r["packets"].as_u64(), Some(old + sent), "{r}");
    }
    let unruled = ports
        .iter()
        .filter(|p| !rules.iter().any(|r| port_of(r) == **p))
        .count() as u64;
    assert_eq!(
        after["unmatched"]["packets"].as_u64(),
        Some(4 + unruled),
        "{after}"
    );
}

fn commit_cases(rules_file: &Path) -> Vec<Case> {
    let replace = format!("filter replace web --file {}", rules_file.display());
    let mut v = Vec::new();
    for point in ["filter-commit:intent", "filter-commit:flip"] {
        for verb in [
            "filter rule add web dst 10.0.0.8/32 proto udp dport 7003 drop",
            "filter rule del web 2",
            replace.as_str(),
        ] {
            v.push(Case {
                prepare: Some(counted_traffic),
                inspect: Some(rules_are_live_and_counted),
                ..case(
                    point,
                    &POLICY,
                    verb,
                    &["filter detach web 10.0.0.8/32", "filter delete web"],
                )
            });
        }
    }
    // Killed once the new rules' counter slots are zeroed, before the flip:
    // the counts they held (rules 1 and 2's, in the idle generation) come
    // back with the old rules.
    for verb in [
        "filter rule add web dst 10.0.0.8/32 proto udp dport 7003 drop",
        "filter rule del web 2",
        replace.as_str(),
    ] {
        v.push(Case {
            prepare: Some(counted_traffic_then_flip),
            inspect: Some(rules_are_live_and_counted),
            ..case(
                "filter-commit:zeroed",
                &POLICY,
                verb,
                &["filter detach web 10.0.0.8/32", "filter delete web"],
            )
        });
    }
    v
}

/// A policy of capacity 2 with rules 1 and 2, on two routes: the rule
/// add (or the replace with three rules) of a case must grow it.
const SMALL_POLICY: [&str; 5] = [
    "filter create web --capacity 2",
    "filter rule add web dst 10.0.0.8/32 proto udp dport 7001 drop",
    "filter rule add web dst 10.0.0.8/32 proto udp dport 7002 drop",
    "filter attach web 10.0.0.8/32 --dev va --hook out",
    "filter attach web 10.0.0.7/32 --dev va --hook out",
];

/// A growing policy killed at each step: before the commit point the old
/// maps, programs and rules are live on both routes; after it, the new
/// ones, and counters carried either way.
fn grow_cases(rules_file: &Path) -> Vec<Case> {
    let replace = format!("filter replace web --file {}", rules_file.display());
    let mut v = Vec::new();
    for point in [
        "filter-grow:intent",
        "filter-grow:staged",
        "filter-grow:swap",
        "filter-grow:flip",
    ] {
        for verb in [
            "filter rule add web dst 10.0.0.8/32 proto udp dport 7003 drop",
            replace.as_str(),
        ] {
            v.push(Case {
                prepare: Some(counted_traffic),
                inspect: Some(grown_or_not),
                ..case(
                    point,
                    &SMALL_POLICY,
                    verb,
                    &[
                        "filter detach web 10.0.0.8/32",
                        "filter detach web 10.0.0.7/32",
                        "filter delete web",
                    ],
                )
            });
        }
    }
    v
}

/// After a kill during a growth: the rules on record are live and counted
/// on the first route, and the second route judges by them too.
fn grown_or_not(ns: &Netns) {
    rules_are_live_and_counted(ns);
    let shown = json(&ns.lwt_ok(&["filter", "show", "web", "-j"]));
    let rules = shown["rules"].as_array().expect("rules");
    let grown = rules.len() > 2;
    assert_eq!(shown["capacity"], if grown { 4 } else { 2 }, "{shown}");
    // The replaced rules have one for any destination (port 7002).
    let ruled = rules
        .iter()
        .any(|r| r["dport"]["lo"] == 7002 && r["dst"].is_null());
    assert_eq!(ruled, grown && rules[0]["id"] != 1, "{shown}");
    let accepted = send_udp_lossy(ns, "10.0.0.7:7002", 1, 32);
    assert_eq!(accepted, usize::from(!ruled), "{shown}");
    let routes = ns.ip(&["route", "show"]);
    assert_eq!(
        routes.matches("lwtkit-filter-web").count(),
        2,
        "both routes keep the filter: {routes}"
    );
}

/// [`POLICY`] on a second route too: a change's new programs go on both.
const TWO_ROUTES: [&str; 5] = [
    "filter create web",
    "filter rule add web dst 10.0.0.8/32 proto udp dport 7001 drop",
    "filter rule add web dst 10.0.0.8/32 proto udp dport 7002 drop",
    "filter attach web 10.0.0.8/32 --dev va --hook out",
    "filter attach web 10.0.0.7/32 --dev va --hook out",
];

/// Programs specialised for what the rules use, killed at each step of
/// swapping others in: a first `log` rule needs programs with the log
/// path on both routes before its flip (the old programs and rules, or
/// the new ones); a replace without it swaps leaner ones in after its
/// flip (the new rules either way, on the wider programs or the leaner).
fn spec_cases(rules_file: &Path) -> Vec<Case> {
    let replace = format!("filter replace web --file {}", rules_file.display());
    let undo = [
        "filter detach web 10.0.0.8/32",
        "filter detach web 10.0.0.7/32",
        "filter delete web",
    ];
    let mut v = Vec::new();
    for point in [
        "filter-commit:intent",
        "filter-commit:zeroed",
        "filter-widen:swap",
        "filter-commit:flip",
    ] {
        v.push(Case {
            prepare: Some(counted_traffic),
            inspect: Some(specialised_for_the_rules),
            ..case(
                point,
                &TWO_ROUTES,
                "filter rule add web dst 10.0.0.8/32 proto udp dport 7003 drop log",
                &undo,
            )
        });
    }
    let mut logging = TWO_ROUTES.map(String::from).to_vec();
    logging.push("filter rule add web dst 10.0.0.9/32 proto udp dport 7009 drop log".into());
    for point in [
        "filter-narrow:intent",
        "filter-narrow:staged",
        "filter-narrow:swap",
    ] {
        v.push(Case {
            prepare: Some(counted_traffic),
            inspect: Some(specialised_for_the_rules),
            loose_program: true,
            setup: logging.clone(),
            ..case(point, &[], &replace, &undo)
        });
    }
    v
}

/// After a kill while programs were swapped: the rules on record are live
/// and counted on both routes, which carry the policy's programs; those
/// keep the log path if a rule logs (and may keep it after a replace
/// dropped it: the next replace swaps leaner ones in).
fn specialised_for_the_rules(ns: &Netns) {
    rules_are_live_and_counted(ns);
    let shown = json(&ns.lwt_ok(&["filter", "show", "web", "-j"]));
    let logs = shown["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .any(|r| r["log"] == true);
    let log_path = shown["program_spec"]["log"] == 1;
    assert!(
        log_path || !logs,
        "a log rule on programs without the log path: {shown}"
    );
    let routes = ns.ip(&["route", "show"]);
    assert_eq!(
        routes.matches("lwtkit-filter-web").count(),
        2,
        "both routes keep the filter: {routes}"
    );
    // The second route's program counts in the policy's maps.
    assert_eq!(
        send_udp_lossy(ns, "10.0.0.7:7001", 1, 32),
        1,
        "no rule for 10.0.0.7"
    );
    let now = json(&ns.lwt_ok(&["filter", "show", "web", "-j"]));
    assert_eq!(
        now["unmatched"]["packets"].as_u64(),
        shown["unmatched"]["packets"].as_u64().map(|n| n + 1),
        "the second route judges by the policy: {now}"
    );
    if log_path && !logs {
        let file = common::scratch("narrow-again");
        let rules: Vec<String> = shown["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .map(|r| r["text"].as_str().expect("text").to_string() + "\n")
            .collect();
        std::fs::write(&file, rules.concat()).expect("rules file");
        ns.lwt_ok(&[
            "filter",
            "replace",
            "web",
            "--file",
            file.to_str().expect("utf-8"),
        ]);
        let again = json(&ns.lwt_ok(&["filter", "show", "web", "-j"]));
        assert_eq!(
            again["program_spec"]["log"], 0,
            "the next replace narrows: {again}"
        );
    }
}

fn three_rules_file() -> std::path::PathBuf {
    let file = common::scratch("three-rules");
    std::fs::write(
        &file,
        "dst 10.0.0.8/32 proto udp dport 7001 drop\ndst 10.0.0.8/32 proto udp dport 7004 drop\nproto udp dport 7002 drop\n",
    )
    .expect("rules file");
    file
}

fn rules_file() -> std::path::PathBuf {
    let file = common::scratch("rules");
    std::fs::write(
        &file,
        "dst 10.0.0.8/32 proto udp dport 7001 drop\ndst 10.0.0.8/32 proto udp dport 7004 drop\n",
    )
    .expect("rules file");
    file
}

// ------------------------------------------------------------------ tests

#[test]
fn every_failpoint_of_the_library_is_exercised_here() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../lwtkit/src");
    let mut in_library = std::collections::BTreeSet::new();
    let mut dirs = vec![src];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).expect("library sources").flatten() {
            let path = e.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&path).expect("source");
                for part in text.split("failpoint(\"").skip(1) {
                    if let Some((name, _)) = part.split_once('"') {
                        in_library.insert(name.to_string());
                    }
                }
            }
        }
    }
    let mut here: std::collections::BTreeSet<String> = [
        attach_cases(),
        detach_cases(),
        encap_cases(),
        seg6local_cases(),
        filter_cases(),
        commit_cases(Path::new("/nonexistent")),
        grow_cases(Path::new("/nonexistent")),
        spec_cases(Path::new("/nonexistent")),
        decap_cases(),
        nat_cases(),
    ]
    .into_iter()
    .flatten()
    .map(|c| c.point.to_string())
    .collect();
    // Killed in tests/ingress_v6.rs, which builds the IPv6 local route it needs.
    here.insert("attach:stand-in".to_string());
    assert_eq!(in_library.len(), 34, "{in_library:?}");
    assert_eq!(here, in_library);
}

#[test]
fn kill_9_at_every_step_of_attach_converges_to_before_or_after() {
    require_root!();
    let p = pair("cra");
    crash_all(&p.a, &attach_cases());
}

#[test]
fn kill_9_at_every_step_of_detach_converges_to_before_or_after() {
    require_root!();
    let p = pair("crd");
    crash_all(&p.a, &detach_cases());
}

#[test]
fn kill_9_between_a_tunnels_map_entry_and_its_route_converges() {
    require_root!();
    let p = pair("cre");
    crash_all(&p.a, &encap_cases());
}

#[test]
fn kill_9_at_every_step_of_seg6local_add_and_del_converges() {
    require_root!();
    let p = pair("crs");
    crash_all(&p.a, &seg6local_cases());
}

#[test]
fn kill_9_at_filter_create_and_delete_converges() {
    require_root!();
    let p = pair("crf");
    crash_all(&p.a, &filter_cases());
}

#[test]
fn kill_9_during_a_rule_change_keeps_live_rules_and_counters_as_recorded() {
    require_root!();
    let p = pair("crc");
    crash_all(&p.a, &commit_cases(&rules_file()));
}

#[test]
fn kill_9_at_every_step_of_a_growing_policy_leaves_it_old_or_new_on_every_route() {
    require_root!();
    let p = pair("crg");
    crash_all(&p.a, &grow_cases(&three_rules_file()));
}

#[test]
fn kill_9_while_specialised_programs_are_swapped_leaves_rules_old_or_new_on_every_route() {
    require_root!();
    let p = pair("crs");
    crash_all(&p.a, &spec_cases(&rules_file()));
}

#[test]
fn kill_9_in_nat_add_and_del_is_finished_by_the_next_nat_command() {
    require_root!();
    let p = pair("crn");
    for c in nat_cases() {
        crash_nat(&p.a, &c);
    }
}

#[test]
fn kill_9_at_every_step_of_decap_add_and_del_converges() {
    require_root!();
    let p = pair("crx");
    crash_all(&p.a, &decap_cases());
}

/// Everything at once in `a` of a [`pair`]: a counted route, a tunnel, a
/// policy on a route, a SID, a decapsulator.
const EVERYTHING: [&str; 7] = [
    COUNT9,
    GRE100,
    "filter create web",
    "filter attach web 10.0.0.11/32 --dev va --hook out",
    "seg6local add fc00::b --dev va --builtin end",
    "decap add --dev vx --type gre",
    "attach 10.0.0.10/32 --dev va --hook xmit --builtin count",
];

#[test]
fn kill_9_during_reset_leaves_a_namespace_a_second_reset_clears() {
    require_root!();
    let p = pair("crr");
    let ns = &p.a;
    let pristine = detailed_routes(ns);
    // Reset takes tunnels off first, then SIDs, decapsulators, routes and
    // policies: a kill at each kind's step leaves some of it done.
    for point in [
        "detach:intent",
        "detach:route",
        "seg6local-del:intent",
        "seg6local-del:route",
        "decap-del:link",
        "filter-delete:pins",
    ] {
        for line in EVERYTHING {
            ns.lwt_ok(&words(line));
        }
        let out = ns.lwt_env(&[("LWT_FAILPOINT", point)], &["reset"]);
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGKILL),
            "reset killed at {point}: {out:?}"
        );
        agrees(ns, point);
        ns.lwt_ok(&["reset"]);
        assert_eq!(
            detailed_routes(ns),
            pristine,
            "reset after a kill at {point}"
        );
        agrees(ns, point);
    }
}
