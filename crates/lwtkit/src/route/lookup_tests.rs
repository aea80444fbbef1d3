use netlink_packet_core::Emitable;
use netlink_packet_route::route::RouteHeader;

use super::*;
use crate::route::ops::address;

fn net(s: &str) -> IpNet {
    s.parse().expect("valid prefix")
}

fn key(dst: &str, table: u32) -> RouteKey {
    RouteKey {
        dst: net(dst),
        table,
    }
}

/// A route as a dump or a fibmatch answer shows it.
fn route(dst: &str, table: u32, kind: RouteType, metric: Option<u32>) -> RouteMessage {
    let dst = net(dst);
    let mut r = RouteMessage::default();
    r.header.address_family = family(&dst);
    r.header.destination_prefix_length = dst.prefix_len();
    r.header.kind = kind;
    set_table(&mut r, table);
    if dst.prefix_len() > 0 {
        r.attributes
            .push(RouteAttribute::Destination(address(dst.network())));
    }
    if let Some(m) = metric {
        r.attributes.push(RouteAttribute::Priority(m));
    }
    r
}

fn unicast(dst: &str, table: u32) -> RouteMessage {
    route(dst, table, RouteType::Unicast, None)
}

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().expect("valid address"))
}

#[test]
fn pick_takes_exact_table_and_prefix_lowest_metric_first() {
    let routes = vec![
        route("fd00::3/128", 254, RouteType::Unicast, Some(1024)),
        route("fd00::3/128", 100, RouteType::Unicast, Some(1)),
        route("fd00::/64", 254, RouteType::Unicast, Some(1)),
        route("fd00::3/128", 254, RouteType::Unicast, Some(512)),
    ];
    let got = pick(routes, &key("fd00::3/128", 254)).expect("found");
    assert_eq!(table_of(&got), 254);
    assert_eq!(crate::route::ops::metric_of(&got), 512);
    assert_eq!(pick(Vec::new(), &key("fd00::3/128", 254)), None);
}

#[test]
fn pick_ignores_broadcast_multicast_and_cached_clones() {
    let mut clone = unicast("10.0.0.255/32", 255);
    clone.header.flags |= RouteFlags::Cloned;
    let routes = vec![
        route("10.0.0.255/32", 255, RouteType::Broadcast, None),
        route("10.0.0.255/32", 255, RouteType::Multicast, None),
        clone,
    ];
    assert_eq!(pick(routes.clone(), &key("10.0.0.255/32", 255)), None);
    let mut with_local = routes;
    with_local.push(route("10.0.0.255/32", 255, RouteType::Local, None));
    let got = pick(with_local, &key("10.0.0.255/32", 255)).expect("found");
    assert_eq!(got.header.kind, RouteType::Local);
}

#[test]
fn an_answer_with_our_table_and_prefix_is_found() {
    let k = key("10.0.0.3/32", 254);
    assert_eq!(judge(&k, &unicast("10.0.0.3/32", 254)), Verdict::Found);
    let local = route("10.0.0.3/32", 254, RouteType::Local, None);
    assert_eq!(judge(&k, &local), Verdict::Found);
    let v6 = route("fd00::/64", 254, RouteType::Unicast, Some(256));
    assert_eq!(judge(&key("fd00::/64", 254), &v6), Verdict::Found);
    let default = unicast("0.0.0.0/0", 254);
    assert_eq!(judge(&key("0.0.0.0/0", 254), &default), Verdict::Found);
}

#[test]
fn an_answer_from_our_table_with_a_shorter_prefix_means_absent() {
    let k = key("10.0.0.3/32", 254);
    assert_eq!(judge(&k, &unicast("10.0.0.0/24", 254)), Verdict::Absent);
    assert_eq!(judge(&k, &unicast("0.0.0.0/0", 254)), Verdict::Absent);
    let k6 = key("fd00::3/128", 100);
    assert_eq!(judge(&k6, &unicast("::/0", 100)), Verdict::Absent);
}

#[test]
fn an_answer_from_another_table_settles_nothing() {
    let k = key("10.0.0.3/32", 254);
    // A rule sent the lookup elsewhere; or table local answered first.
    assert_eq!(judge(&k, &unicast("10.0.0.3/32", 100)), Verdict::Unsure);
    assert_eq!(judge(&k, &unicast("10.0.0.0/24", 255)), Verdict::Unsure);
    assert_eq!(judge(&k, &unicast("0.0.0.0/0", 253)), Verdict::Unsure);
}

#[test]
fn broadcast_multicast_clones_and_strangers_settle_nothing() {
    let k = key("10.0.0.255/32", 254);
    let bcast = route("10.0.0.255/32", 254, RouteType::Broadcast, None);
    assert_eq!(judge(&k, &bcast), Verdict::Unsure);
    let mcast = route("ff00::/8", 254, RouteType::Multicast, Some(256));
    assert_eq!(judge(&key("ff00::/8", 254), &mcast), Verdict::Unsure);
    // What a kernel without RTM_F_FIB_MATCH would send: the looked-up
    // address as a /32 clone, whatever route it came from.
    let mut clone = unicast("10.0.0.3/32", 254);
    clone.header.flags |= RouteFlags::Cloned;
    assert_eq!(judge(&key("10.0.0.3/32", 254), &clone), Verdict::Unsure);
    let stranger = unicast("192.168.0.0/16", 254);
    assert_eq!(judge(&key("10.0.0.0/8", 254), &stranger), Verdict::Unsure);
}

#[test]
fn a_more_specific_answer_asks_for_another_probe() {
    let k = key("10.0.0.0/24", 254);
    let inner = unicast("10.0.0.0/25", 255);
    assert_eq!(judge(&k, &inner), Verdict::Inside(net("10.0.0.0/25")));
    assert_eq!(next_probe(&k.dst, &net("10.0.0.0/25")), ip("10.0.0.128"));
    assert_eq!(next_probe(&k.dst, &net("10.0.0.128/25")), ip("10.0.0.127"));
    assert_eq!(
        next_probe(&net("fd00::/64"), &net("fd00::ffff:ffff:ffff:ffff/128")),
        ip("fd00::ffff:ffff:ffff:fffe")
    );
    assert_eq!(
        next_probe(&net("10.0.0.0/31"), &net("10.0.0.0/32")),
        ip("10.0.0.1")
    );
}

#[test]
fn first_probes_avoid_addresses_the_kernel_answers_without_the_fib() {
    assert_eq!(first_probe(&net("10.0.0.3/32")), ip("10.0.0.3"));
    assert_eq!(first_probe(&net("10.0.0.0/24")), ip("10.0.0.0"));
    assert_eq!(first_probe(&net("0.0.0.0/0")), ip("0.0.0.1"));
    assert_eq!(first_probe(&net("0.0.0.0/8")), ip("0.0.0.1"));
    assert_eq!(first_probe(&net("0.0.0.0/32")), None);
    assert_eq!(first_probe(&net("224.0.0.0/4")), None);
    assert_eq!(first_probe(&net("255.255.255.255/32")), None);
    assert_eq!(first_probe(&net("fd00::3/128")), ip("fd00::3"));
    assert_eq!(
        first_probe(&net("fd00::/64")),
        ip("fd00::ffff:ffff:ffff:ffff")
    );
    assert_eq!(
        first_probe(&net("::/0")),
        ip("feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
    );
    assert_eq!(first_probe(&net("ff02::/16")), None);
    // Past the multicast block: class E is looked up normally.
    assert_eq!(
        next_probe(&net("192.0.0.0/2"), &net("192.0.0.0/3")),
        ip("240.0.0.0")
    );
    // What is left of ours outside the answer is multicast only.
    assert_eq!(next_probe(&net("224.0.0.0/3"), &net("240.0.0.0/4")), None);
}

/// The header bytes of a request (family, dst_len, src_len, tos, table,
/// protocol, scope, type, then flags).
fn header_bytes(r: &RouteMessage) -> Vec<u8> {
    let mut buf = vec![0u8; r.header.buffer_len()];
    let h: &RouteHeader = &r.header;
    h.emit(&mut buf);
    buf
}

#[test]
fn table_dumps_zero_every_field_strict_checking_refuses() {
    let req = table_request(AddressFamily::Inet6, 1000);
    assert_eq!(header_bytes(&req), [10, 0, 0, 0, 252, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(table_of(&req), 1000);
    let req = table_request(AddressFamily::Inet, 254);
    assert_eq!(header_bytes(&req)[..8], [2, 0, 0, 0, 254, 0, 0, 0]);
}

#[test]
fn fibmatch_requests_ask_ipv4_for_the_table_and_not_ipv6() {
    let v4 = fib_match_request("10.0.0.3".parse().expect("valid"));
    assert_eq!(
        header_bytes(&v4),
        [2, 32, 0, 0, 0, 0, 0, 0, 0x00, 0x30, 0, 0]
    );
    let v6 = fib_match_request("fd00::3".parse().expect("valid"));
    assert_eq!(
        header_bytes(&v6),
        [10, 128, 0, 0, 0, 0, 0, 0, 0x00, 0x20, 0, 0]
    );
    assert_eq!(
        v6.attributes,
        vec![RouteAttribute::Destination(address(
            "fd00::3".parse().expect("valid")
        ))]
    );
}
