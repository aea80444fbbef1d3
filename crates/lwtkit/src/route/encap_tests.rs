//! Unit tests of `encap.rs`.
//! Captured messages live in `testdata/*.txt`, each with the `ip` command
//! that produced it. Dumps: bpf, ip, ip6, seg6, seg6local (this kernel
//! builds those). iproute2 requests only: mpls, rpl, ioam6, xfrm, ila (the
//! kernel here lacks them and refused the route). The rest is hand-built.
use netlink_packet_core::{DefaultNla, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{
    route::{RouteSeg6LocalTunnel, Seg6LocalAction},
    RouteNetlinkMessage,
};

use super::*;

struct Capture {
    /// The `encap ...` part of iproute2's `ip route show` line, if the
    /// kernel accepted the route.
    ip_text: Option<String>,
    attrs: Vec<RouteAttribute>,
}

fn capture(file: &str) -> Capture {
    let mut bytes = Vec::new();
    let mut ip_text = None;
    for line in file.lines() {
        if let Some(text) = line.strip_prefix("# ip:") {
            let from = text.find("encap ").expect("ip line shows an encap");
            let to = text.find(" dev ").unwrap_or(text.len());
            ip_text = Some(text[from..to].trim().to_owned());
        } else if !line.starts_with('#') {
            bytes.extend(
                line.split_whitespace()
                    .map(|b| u8::from_str_radix(b, 16).expect("hex byte")),
            );
        }
    }
    let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes)
        .expect("captured message parses");
    let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(route)) = msg.payload else {
        panic!("not an RTM_NEWROUTE");
    };
    Capture {
        ip_text,
        attrs: route.attributes,
    }
}

fn encap_of(file: &str) -> Encap {
    from_route_attributes(&capture(file).attrs).expect("route has an encap")
}

macro_rules! testdata {
    ($($name:literal),* $(,)?) => {
        [$(($name, include_str!(concat!("testdata/", $name, ".txt")))),*]
    };
}

const DUMPS: [(&str, &str); 15] = testdata![
    "bpf_out",
    "bpf_all",
    "bpf_xmit6",
    "ip",
    "ip_full",
    "ip6",
    "seg6_encap",
    "seg6_inline",
    "seg6_encap4",
    "seg6local_end",
    "seg6local_dx4",
    "seg6local_dt6",
    "seg6local_x",
    "seg6local_b6",
    "seg6local_bpf",
];
const REQUESTS: [(&str, &str); 5] = testdata!["mpls", "rpl", "ioam6", "xfrm", "ila"];

fn file(name: &str) -> &'static str {
    DUMPS
        .iter()
        .chain(&REQUESTS)
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
        .expect("known capture")
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().expect("IPv6 literal")
}

#[test]
fn every_captured_dump_prints_like_iproute2() {
    for (name, f) in DUMPS {
        let cap = capture(f);
        let encap = from_route_attributes(&cap.attrs).expect("route has an encap");
        assert_eq!(Some(encap.to_string()), cap.ip_text, "{name}");
    }
}

#[test]
fn bpf_dump_has_names_and_nothing_else() {
    let encap = encap_of(file("bpf_all"));
    let hooks: Vec<(Hook, &str)> = encap
        .bpf_hooks()
        .into_iter()
        .map(|(h, p)| (h, p.name.as_str()))
        .collect();
    assert_eq!(
        hooks,
        [
            (Hook::In, "drop.o:[lwt_in]"),
            (Hook::Out, "drop.o:[lwt_out]"),
            (Hook::Xmit, "drop.o:[lwt_xmit]")
        ]
    );
    // Added with headroom 20; the kernel does not dump it.
    assert!(matches!(encap, Encap::Bpf { headroom: None, .. }));
    assert!(encap
        .bpf_hooks()
        .iter()
        .all(|(_, p)| p.id.is_none() && p.headroom.is_none()));
    let v6_route = encap_of(file("bpf_xmit6"));
    assert_eq!(v6_route.to_string(), "encap bpf xmit drop.o:[lwt_xmit]");
}

#[test]
fn end_bpf_dump_gives_program_name_and_id() {
    let encap = encap_of(file("seg6local_bpf"));
    let Encap::Seg6local {
        action,
        bpf: Some(bpf),
        ..
    } = &encap
    else {
        panic!("{encap:?}")
    };
    assert_eq!(
        (action.as_str(), bpf.name.as_str(), bpf.id),
        ("End.BPF", "drop.o:[lwt_seg6local]", Some(144))
    );
    assert_eq!(
        encap.to_string(),
        "encap seg6local action End.BPF endpoint drop.o:[lwt_seg6local]"
    );
}

#[test]
fn ip_dumps_carry_every_field() {
    // `tos 16` on the command line is read as hex by iproute2: 0x16 = 22.
    assert_eq!(
        encap_of(file("ip_full")),
        Encap::Ip {
            id: Some(6),
            src: Some(Ipv4Addr::new(10, 0, 0, 1)),
            dst: Some(Ipv4Addr::new(10, 1, 1, 2)),
            ttl: Some(4),
            tos: Some(0x16),
            flags: vec!["key".into(), "csum".into()],
            opts: vec![],
        }
    );
    // Unset fields still come back from the kernel, as zeroes.
    let Encap::Ip {
        src, tos, flags, ..
    } = encap_of(file("ip"))
    else {
        panic!()
    };
    assert_eq!(
        (src, tos, flags.len()),
        (Some(Ipv4Addr::UNSPECIFIED), Some(0), 0)
    );
    assert_eq!(
        encap_of(file("ip6")),
        Encap::Ip6 {
            id: Some(7),
            src: Some(Ipv6Addr::UNSPECIFIED),
            dst: Some(v6("fd00::99")),
            hoplimit: Some(4),
            tc: Some(0x32),
            flags: vec![],
            opts: vec![],
        }
    );
}

#[test]
fn seg6_segments_are_in_visiting_order() {
    let seg6 = |segments: &[&str], mode: &str| Encap::Seg6 {
        mode: mode.into(),
        segments: segments.iter().map(|s| v6(s)).collect(),
        hmac: None,
        tunsrc: None,
    };
    assert_eq!(
        encap_of(file("seg6_encap")),
        seg6(&["fc00::1", "fc00::2"], "encap")
    );
    assert_eq!(encap_of(file("seg6_encap4")), seg6(&["fc00::4"], "encap"));
    // Inline mode: iproute2 adds a `::` slot the kernel fills with the
    // packet's original destination.
    assert_eq!(
        encap_of(file("seg6_inline")),
        seg6(&["fc00::3", "::"], "inline")
    );
    assert_eq!(
        encap_of(file("seg6_encap")).to_string(),
        "encap seg6 mode encap segs 2 [ fc00::1 fc00::2 ]"
    );
}

#[test]
fn seg6local_dumps_keep_their_parameters() {
    let Encap::Seg6local { action, nh4, .. } = encap_of(file("seg6local_dx4")) else {
        panic!()
    };
    assert_eq!(
        (action.as_str(), nh4),
        ("End.DX4", Some(Ipv4Addr::new(10, 0, 0, 2)))
    );
    let Encap::Seg6local { action, table, .. } = encap_of(file("seg6local_dt6")) else {
        panic!()
    };
    assert_eq!((action.as_str(), table), ("End.DT6", Some(100)));
    let Encap::Seg6local { nh6, .. } = encap_of(file("seg6local_x")) else {
        panic!()
    };
    assert_eq!(nh6, Some(v6("fd00::2")));
    let Encap::Seg6local { action, srh, .. } = encap_of(file("seg6local_b6")) else {
        panic!()
    };
    assert_eq!(
        (action.as_str(), srh),
        ("End.B6.Encaps", Some(vec![v6("fc00::a"), v6("fc00::b")]))
    );
    let end = encap_of(file("seg6local_end"));
    assert!(
        matches!(&end, Encap::Seg6local { action, bpf: None, srh: None, table: None, .. } if action == "End")
    );
}

// Decoded from iproute2's requests: what the kernel would have been told.
#[test]
fn mpls_request_decodes() {
    let encap = encap_of(file("mpls"));
    assert_eq!(
        encap,
        Encap::Mpls {
            labels: vec![100, 200],
            ttl: Some(10)
        }
    );
    assert_eq!(encap.to_string(), "encap mpls 100/200 ttl 10");
}

#[test]
fn rpl_request_decodes() {
    let encap = encap_of(file("rpl"));
    assert_eq!(
        encap,
        Encap::Rpl {
            segments: vec![v6("fc00::1"), v6("fc00::2")]
        }
    );
    assert_eq!(encap.to_string(), "encap rpl segs 2 [ fc00::1 fc00::2 ]");
}

#[test]
fn ioam6_request_decodes() {
    let encap = encap_of(file("ioam6"));
    assert_eq!(
        encap,
        Encap::Ioam6 {
            mode: Some("inline".into()),
            tundst: None,
            tunsrc: None,
            trace: Some(Ioam6Trace {
                ns: 1,
                trace_type: 0x80_0000,
                size: 12
            }),
            freq_k: Some(1),
            freq_n: Some(1),
        }
    );
    assert_eq!(
        encap.to_string(),
        "encap ioam6 freq 1/1 mode inline trace prealloc type 0x800000 ns 1 size 12"
    );
}

#[test]
fn xfrm_request_decodes() {
    let encap = encap_of(file("xfrm"));
    assert_eq!(
        encap,
        Encap::Xfrm {
            if_id: Some(5),
            link: None
        }
    );
    assert_eq!(encap.to_string(), "encap xfrm if_id 5");
}

#[test]
fn ila_request_decodes() {
    let encap = encap_of(file("ila"));
    assert_eq!(
        encap,
        Encap::Ila {
            locator: Some("2001:0:0:1".into()),
            csum_mode: Some("no-action".into()),
            ident_type: Some("luid".into()),
            hook_type: Some("output".into()),
        }
    );
    assert_eq!(
        encap.to_string(),
        "encap ila 2001:0:0:1 csum-mode no-action ident-type luid hook-type output"
    );
}

fn raw(kind: u16, value: &[u8]) -> RouteLwTunnelEncap {
    RouteLwTunnelEncap::Other(DefaultNla::new(kind, value.to_vec()))
}

// Hand-built: the kernel's ila_fill_encap_info puts ILA_ATTR_PAD (6)
// before the u64 locator when it needs aligning.
#[test]
fn ila_dump_with_pad_decodes() {
    let nlas = [
        raw(6, &[]),
        raw(1, &[0xfd, 0, 0, 0, 0, 0x12, 0, 0x34]),
        raw(7, &[3]),
        raw(8, &[32]),
        raw(9, &[1]),
    ];
    assert_eq!(
        decode(&RouteLwEnCapType::Ila, &nlas).to_string(),
        "encap ila fd00:0:12:34 csum-mode neutral-map-auto ident-type use-format hook-type input"
    );
    let odd = [raw(1, &[1, 2, 3]), raw(7, &[9])];
    assert_eq!(
        decode(&RouteLwEnCapType::Ila, &odd),
        Encap::Ila {
            locator: None,
            csum_mode: Some("unknown(9)".into()),
            ident_type: None,
            hook_type: None
        }
    );
}

// Hand-built: encap-mode IOAM, in the order ioam6_fill_encap_info dumps.
#[test]
fn ioam6_encap_mode_shows_tunnel_ends() {
    let nlas = [
        RouteLwTunnelEncap::Ioam6(RouteIoam6Tunnel::FreqK(2)),
        RouteLwTunnelEncap::Ioam6(RouteIoam6Tunnel::FreqN(5)),
        RouteLwTunnelEncap::Ioam6(RouteIoam6Tunnel::Mode(Ioam6Mode::Encap)),
        RouteLwTunnelEncap::Ioam6(RouteIoam6Tunnel::Src(v6("fd00::1"))),
        RouteLwTunnelEncap::Ioam6(RouteIoam6Tunnel::Dst(v6("fd00::2"))),
    ];
    assert_eq!(
        decode(&RouteLwEnCapType::Ioam6, &nlas).to_string(),
        "encap ioam6 freq 2/5 mode encap tunsrc fd00::1 tundst fd00::2"
    );
}

#[test]
fn xfrm_with_link_and_mpls_without_ttl() {
    let nlas = [
        RouteLwTunnelEncap::Xfrm(RouteXfrmTunnel::IfId(9)),
        RouteLwTunnelEncap::Xfrm(RouteXfrmTunnel::Link(4)),
    ];
    assert_eq!(
        decode(&RouteLwEnCapType::Xfrm, &nlas).to_string(),
        "encap xfrm if_id 9 link_dev 4"
    );
    let mpls = decode(&RouteLwEnCapType::Mpls, &[]);
    assert_eq!(
        (mpls.to_string(), mpls.kind()),
        ("encap mpls".to_owned(), "mpls")
    );
}

#[test]
fn odd_input_does_not_panic() {
    // BPF payload the codec refuses (hook without a name).
    let bad_bpf = [raw(2, &[8, 0, 1, 0, 6, 0, 0, 0])];
    assert_eq!(
        decode(&RouteLwEnCapType::Bpf, &bad_bpf),
        Encap::Other { type_id: 6 }
    );
    // Payloads of the wrong type are skipped.
    let seg6local = [
        RouteLwTunnelEncap::Ip(RouteIpTunnel::Ttl(3)),
        raw(10, &[0xff]),
    ];
    assert!(matches!(
        decode(&RouteLwEnCapType::Seg6Local, &seg6local),
        Encap::Seg6local { bpf: None, .. }
    ));
    for t in [
        RouteLwEnCapType::Mpls,
        RouteLwEnCapType::Seg6,
        RouteLwEnCapType::Rpl,
        RouteLwEnCapType::Ioam6,
    ] {
        let _ = decode(&t, &bad_bpf).to_string();
    }
    let unknown = decode(&RouteLwEnCapType::Other(42), &[]);
    assert_eq!(
        (unknown.kind(), unknown.to_string()),
        ("other", "encap type 42".to_owned())
    );
    // No encap, or LWTUNNEL_ENCAP_NONE.
    assert_eq!(from_route_attributes(&[RouteAttribute::Oif(3)]), None);
    assert_eq!(
        from_route_attributes(&[RouteAttribute::EncapType(RouteLwEnCapType::None)]),
        None
    );
    // Type without payload.
    let bare = from_route_attributes(&[RouteAttribute::EncapType(RouteLwEnCapType::Seg6)]);
    assert_eq!(
        bare.map(|e| e.to_string()),
        Some("encap seg6 mode unknown segs 0 [ ]".to_owned())
    );
}

#[test]
fn seg6local_end_bpf_built_by_the_codec_reads_back() {
    let end_bpf = Seg6LocalBpf {
        prog: BpfProgAttr {
            fd: Some(7),
            name: "prog.o:[lwt_seg6local]".into(),
        },
        id: None,
    };
    let mut encap = from_route_attributes(&end_bpf.route_attributes()).expect("encap");
    assert_eq!(
        encap.to_string(),
        "encap seg6local action End.BPF endpoint prog.o:[lwt_seg6local]"
    );
    encap.endpoint_mut().expect("endpoint").tag = Some("0123456789abcdef".into());
    let json = serde_json::to_value(&encap).expect("json");
    assert_eq!(json["bpf"]["tag"], "0123456789abcdef");
    // Built from a request, attribute 1 (the fd) reads as the id.
    assert_eq!(json["bpf"]["id"], 7);
    assert_eq!(json["action"], "End.BPF");
    let plain = [RouteLwTunnelEncap::Seg6Local(RouteSeg6LocalTunnel::Action(
        Seg6LocalAction::EndDt4,
    ))];
    let mut dt4 = decode(&RouteLwEnCapType::Seg6Local, &plain);
    assert!(dt4.endpoint_mut().is_none());
    assert!(dt4.bpf_hook_mut(Hook::In).is_none());
}

#[test]
fn bpf_json_repeats_headroom_in_each_hook() {
    let bpf = LwtBpf {
        output: Some(BpfProgAttr {
            fd: Some(6),
            name: "drop.o:[lwt_out]".into(),
        }),
        xmit: Some(BpfProgAttr {
            fd: Some(7),
            name: "lwtkit:vxlan".into(),
        }),
        headroom: Some(14),
        ..LwtBpf::default()
    };
    let mut encap = Encap::from(&bpf);
    encap.bpf_hook_mut(Hook::Xmit).expect("xmit hook").id = Some(31);
    assert!(encap.bpf_hook_mut(Hook::In).is_none());
    assert_eq!(
        encap.to_string(),
        "encap bpf out drop.o:[lwt_out] xmit lwtkit:vxlan headroom 14"
    );
    assert_eq!(
        serde_json::to_string(&encap).expect("json"),
        r#"{"encap":"bpf","out":{"name":"drop.o:[lwt_out]","headroom":14},"xmit":{"name":"lwtkit:vxlan","id":31,"headroom":14},"headroom":14}"#
    );
    let input_only = Encap::from(&LwtBpf {
        input: bpf.output.clone(),
        ..LwtBpf::default()
    });
    assert_eq!(
        serde_json::to_string(&input_only).expect("json"),
        r#"{"encap":"bpf","in":{"name":"drop.o:[lwt_out]"}}"#
    );
}

#[test]
fn json_is_tagged_by_encap_kind() {
    let json = serde_json::to_value(encap_of(file("seg6_encap"))).expect("json");
    assert_eq!(
        json,
        serde_json::json!({"encap": "seg6", "mode": "encap", "segments": ["fc00::1", "fc00::2"]})
    );
    let json = serde_json::to_value(encap_of(file("seg6local_bpf"))).expect("json");
    assert_eq!(
        json,
        serde_json::json!({"encap": "seg6local", "action": "End.BPF", "bpf": {"name": "drop.o:[lwt_seg6local]", "id": 144}})
    );
}

#[test]
fn kind_names_every_type() {
    let kinds: Vec<&str> = DUMPS
        .iter()
        .chain(&REQUESTS)
        .map(|(_, f)| encap_of(f).kind())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        kinds,
        [
            "bpf",
            "ila",
            "ioam6",
            "ip",
            "ip6",
            "mpls",
            "rpl",
            "seg6",
            "seg6local",
            "xfrm"
        ]
    );
}
