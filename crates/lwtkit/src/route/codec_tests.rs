//! Unit tests of `codec.rs`.
//! Golden bytes captured on kernel 6.18 with iproute2 6.1.0 (strace of
//! `ip`'s sendmsg/recvmsg) in a throwaway namespace with a veth pair
//! (veth0 = ifindex 3). strace decodes the 16-byte nlmsghdr field by
//! field; it is written back here as it was sent or received.
//! `/tmp/lwtc/drop.o` holds sections lwt_in/lwt_out/lwt_xmit/lwt_seg6local
//! that return 2 (BPF_DROP).
#![allow(clippy::unwrap_used)] // a panic is how a test reports failure
use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLA_ALIGNTO};
use netlink_packet_route::{route::RouteMessage, RouteNetlinkMessage};

use super::*;

// ip -n lwtc-7026 -4 route add 10.0.0.3/32 dev veth0 \
//     encap bpf out obj /tmp/lwtc/drop.o section lwt_out headroom 14
// RTM_NEWROUTE request; the program fd was 6. iproute2 left the three
// padding bytes after the name's NUL uninitialised (e1 01 00).
const BPF_OUT_REQUEST: &[u8] = &[
    0x64, 0x00, 0x00, 0x00, 0x18, 0x00, 0x05, 0x06, 0x83, 0xd3, 0x05, 0x6b, 0x00, 0x00, 0x00, 0x00,
    0x02, 0x20, 0x00, 0x00, 0xfe, 0x03, 0xfd, 0x01, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x01, 0x00,
    0x0a, 0x00, 0x00, 0x03, 0x30, 0x00, 0x16, 0x80, 0x24, 0x00, 0x02, 0x80, 0x08, 0x00, 0x01, 0x00,
    0x06, 0x00, 0x00, 0x00, 0x15, 0x00, 0x02, 0x00, 0x64, 0x72, 0x6f, 0x70, 0x2e, 0x6f, 0x3a, 0x5b,
    0x6c, 0x77, 0x74, 0x5f, 0x6f, 0x75, 0x74, 0x5d, 0x00, 0xe1, 0x01, 0x00, 0x08, 0x00, 0x04, 0x00,
    0x0e, 0x00, 0x00, 0x00, 0x06, 0x00, 0x15, 0x00, 0x06, 0x00, 0x00, 0x00, 0x08, 0x00, 0x04, 0x00,
    0x03, 0x00, 0x00, 0x00,
];

// After the route above: ip -n lwtc-7026 -4 route show 10.0.0.3
// iproute2 prints: 10.0.0.3  encap bpf out drop.o:[lwt_out] dev veth0 scope link
// The RTM_NEWROUTE of the dump reply for that route: the name only.
const BPF_OUT_DUMP: &[u8] = &[
    0x5c, 0x00, 0x00, 0x00, 0x18, 0x00, 0x22, 0x00, 0x83, 0xd3, 0x05, 0x6b, 0x88, 0x1b, 0x00, 0x00,
    0x02, 0x20, 0x00, 0x00, 0xfe, 0x03, 0xfd, 0x01, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x0f, 0x00,
    0xfe, 0x00, 0x00, 0x00, 0x08, 0x00, 0x01, 0x00, 0x0a, 0x00, 0x00, 0x03, 0x08, 0x00, 0x04, 0x00,
    0x03, 0x00, 0x00, 0x00, 0x20, 0x00, 0x16, 0x00, 0x1c, 0x00, 0x02, 0x00, 0x15, 0x00, 0x02, 0x00,
    0x64, 0x72, 0x6f, 0x70, 0x2e, 0x6f, 0x3a, 0x5b, 0x6c, 0x77, 0x74, 0x5f, 0x6f, 0x75, 0x74, 0x5d,
    0x00, 0x00, 0x00, 0x00, 0x06, 0x00, 0x15, 0x00, 0x06, 0x00, 0x00, 0x00,
];

// ip -n lwtc-7026 -4 route add 10.0.0.4/32 dev veth0 \
//     encap bpf in obj /tmp/lwtc/drop.o section lwt_in \
//     out obj /tmp/lwtc/drop.o section lwt_out \
//     xmit obj /tmp/lwtc/drop.o section lwt_xmit headroom 20
// Program fds: in 6, out 8, xmit 11 (iproute2 opens the object 3 times).
const BPF_ALL_REQUEST: &[u8] = &[
    0xa8, 0x00, 0x00, 0x00, 0x18, 0x00, 0x05, 0x06, 0x83, 0xd3, 0x05, 0x6b, 0x00, 0x00, 0x00, 0x00,
    0x02, 0x20, 0x00, 0x00, 0xfe, 0x03, 0xfd, 0x01, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x01, 0x00,
    0x0a, 0x00, 0x00, 0x04, 0x74, 0x00, 0x16, 0x80, 0x20, 0x00, 0x01, 0x80, 0x08, 0x00, 0x01, 0x00,
    0x06, 0x00, 0x00, 0x00, 0x14, 0x00, 0x02, 0x00, 0x64, 0x72, 0x6f, 0x70, 0x2e, 0x6f, 0x3a, 0x5b,
    0x6c, 0x77, 0x74, 0x5f, 0x69, 0x6e, 0x5d, 0x00, 0x24, 0x00, 0x02, 0x80, 0x08, 0x00, 0x01, 0x00,
    0x08, 0x00, 0x00, 0x00, 0x15, 0x00, 0x02, 0x00, 0x64, 0x72, 0x6f, 0x70, 0x2e, 0x6f, 0x3a, 0x5b,
    0x6c, 0x77, 0x74, 0x5f, 0x6f, 0x75, 0x74, 0x5d, 0x00, 0x00, 0x00, 0x00, 0x24, 0x00, 0x03, 0x80,
    0x08, 0x00, 0x01, 0x00, 0x0b, 0x00, 0x00, 0x00, 0x16, 0x00, 0x02, 0x00, 0x64, 0x72, 0x6f, 0x70,
    0x2e, 0x6f, 0x3a, 0x5b, 0x6c, 0x77, 0x74, 0x5f, 0x78, 0x6d, 0x69, 0x74, 0x5d, 0x00, 0x00, 0x00,
    0x08, 0x00, 0x04, 0x00, 0x14, 0x00, 0x00, 0x00, 0x06, 0x00, 0x15, 0x00, 0x06, 0x00, 0x00, 0x00,
    0x08, 0x00, 0x04, 0x00, 0x03, 0x00, 0x00, 0x00,
];

// ip -n lwtc-7026 -4 route show 10.0.0.4
// 10.0.0.4  encap bpf in drop.o:[lwt_in] out drop.o:[lwt_out] xmit drop.o:[lwt_xmit] dev veth0 scope link
const BPF_ALL_DUMP: &[u8] = &[
    0x90, 0x00, 0x00, 0x00, 0x18, 0x00, 0x22, 0x00, 0x83, 0xd3, 0x05, 0x6b, 0x92, 0x1b, 0x00, 0x00,
    0x02, 0x20, 0x00, 0x00, 0xfe, 0x03, 0xfd, 0x01, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x0f, 0x00,
    0xfe, 0x00, 0x00, 0x00, 0x08, 0x00, 0x01, 0x00, 0x0a, 0x00, 0x00, 0x04, 0x08, 0x00, 0x04, 0x00,
    0x03, 0x00, 0x00, 0x00, 0x54, 0x00, 0x16, 0x00, 0x18, 0x00, 0x01, 0x00, 0x14, 0x00, 0x02, 0x00,
    0x64, 0x72, 0x6f, 0x70, 0x2e, 0x6f, 0x3a, 0x5b, 0x6c, 0x77, 0x74, 0x5f, 0x69, 0x6e, 0x5d, 0x00,
    0x1c, 0x00, 0x02, 0x00, 0x15, 0x00, 0x02, 0x00, 0x64, 0x72, 0x6f, 0x70, 0x2e, 0x6f, 0x3a, 0x5b,
    0x6c, 0x77, 0x74, 0x5f, 0x6f, 0x75, 0x74, 0x5d, 0x00, 0x00, 0x00, 0x00, 0x1c, 0x00, 0x03, 0x00,
    0x16, 0x00, 0x02, 0x00, 0x64, 0x72, 0x6f, 0x70, 0x2e, 0x6f, 0x3a, 0x5b, 0x6c, 0x77, 0x74, 0x5f,
    0x78, 0x6d, 0x69, 0x74, 0x5d, 0x00, 0x00, 0x00, 0x06, 0x00, 0x15, 0x00, 0x06, 0x00, 0x00, 0x00,
];

// ip -n lwtc-7026 -6 route add fc00::1/128 encap seg6local action End.BPF \
//     endpoint obj /tmp/lwtc/drop.o section lwt_seg6local dev veth0
// Program fd 6.
const END_BPF_REQUEST: &[u8] = &[
    0x74, 0x00, 0x00, 0x00, 0x18, 0x00, 0x05, 0x06, 0x83, 0xd3, 0x05, 0x6b, 0x00, 0x00, 0x00, 0x00,
    0x0a, 0x80, 0x00, 0x00, 0xfe, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x01, 0x00,
    0xfc, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
    0x34, 0x00, 0x16, 0x80, 0x08, 0x00, 0x01, 0x00, 0x0f, 0x00, 0x00, 0x00, 0x28, 0x00, 0x08, 0x80,
    0x08, 0x00, 0x01, 0x00, 0x06, 0x00, 0x00, 0x00, 0x1b, 0x00, 0x02, 0x00, 0x64, 0x72, 0x6f, 0x70,
    0x2e, 0x6f, 0x3a, 0x5b, 0x6c, 0x77, 0x74, 0x5f, 0x73, 0x65, 0x67, 0x36, 0x6c, 0x6f, 0x63, 0x61,
    0x6c, 0x5d, 0x00, 0x00, 0x06, 0x00, 0x15, 0x00, 0x07, 0x00, 0x00, 0x00, 0x08, 0x00, 0x04, 0x00,
    0x03, 0x00, 0x00, 0x00,
];

// ip -n lwtc-7026 -6 route show fc00::1
// fc00::1  encap seg6local action End.BPF endpoint drop.o:[lwt_seg6local] dev veth0 metric 1024 pref medium
// SEG6_LOCAL_BPF_PROG carries the program id here (0x90 = 144), not an fd.
const END_BPF_DUMP: &[u8] = &[
    0xb0, 0x00, 0x00, 0x00, 0x18, 0x00, 0x22, 0x00, 0x83, 0xd3, 0x05, 0x6b, 0x19, 0x1c, 0x00, 0x00,
    0x0a, 0x80, 0x00, 0x00, 0xfe, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x0f, 0x00,
    0xfe, 0x00, 0x00, 0x00, 0x14, 0x00, 0x01, 0x00, 0xfc, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x06, 0x00, 0x00, 0x04, 0x00, 0x00,
    0x08, 0x00, 0x04, 0x00, 0x03, 0x00, 0x00, 0x00, 0x34, 0x00, 0x16, 0x00, 0x08, 0x00, 0x01, 0x00,
    0x0f, 0x00, 0x00, 0x00, 0x28, 0x00, 0x08, 0x00, 0x08, 0x00, 0x01, 0x00, 0x90, 0x00, 0x00, 0x00,
    0x1b, 0x00, 0x02, 0x00, 0x64, 0x72, 0x6f, 0x70, 0x2e, 0x6f, 0x3a, 0x5b, 0x6c, 0x77, 0x74, 0x5f,
    0x73, 0x65, 0x67, 0x36, 0x6c, 0x6f, 0x63, 0x61, 0x6c, 0x5d, 0x00, 0x00, 0x06, 0x00, 0x15, 0x00,
    0x07, 0x00, 0x00, 0x00, 0x24, 0x00, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00,
];

const RTA_ENCAP: u16 = 22;
const RTA_ENCAP_TYPE: u16 = 21;

fn route_message(bytes: &[u8]) -> RouteMessage {
    let msg =
        NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes).expect("captured message parses");
    match msg.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(route)) => route,
        other => panic!("expected RTM_NEWROUTE, got {other:?}"),
    }
}

fn prog(fd: Option<u32>, name: &str) -> BpfProgAttr {
    BpfProgAttr {
        fd,
        name: name.into(),
    }
}

fn nla_align(len: usize) -> usize {
    len.div_ceil(NLA_ALIGNTO) * NLA_ALIGNTO
}

/// Zeroes the alignment padding of the attributes in `buf`, descending
/// into attributes flagged `NLA_F_NESTED` (iproute2 flags every nest).
/// iproute2 does not clear padding; the kernel ignores it.
fn zero_padding(buf: &mut [u8]) {
    let mut pos = 0;
    while pos + 4 <= buf.len() {
        let len = u16::from_ne_bytes([buf[pos], buf[pos + 1]]) as usize;
        let kind = u16::from_ne_bytes([buf[pos + 2], buf[pos + 3]]);
        assert!(len >= 4 && pos + len <= buf.len(), "bad attribute at {pos}");
        if kind & NLA_F_NESTED != 0 {
            zero_padding(&mut buf[pos + 4..pos + len]);
        }
        let end = (pos + nla_align(len)).min(buf.len());
        buf[pos + len..end].fill(0);
        pos = end;
    }
}

/// The whole top-level attribute `kind` (header included) of a netlink
/// route message, padding zeroed.
fn top_attr(msg: &[u8], kind: u16) -> Vec<u8> {
    // nlmsghdr (16) + rtmsg (12)
    let mut attrs = msg[28..].to_vec();
    zero_padding(&mut attrs);
    let mut pos = 0;
    while pos + 4 <= attrs.len() {
        let len = u16::from_ne_bytes([attrs[pos], attrs[pos + 1]]) as usize;
        let k = u16::from_ne_bytes([attrs[pos + 2], attrs[pos + 3]]) & NLA_TYPE_MASK;
        if k == kind {
            return attrs[pos..pos + nla_align(len)].to_vec();
        }
        pos += nla_align(len);
    }
    panic!("attribute {kind} not found");
}

fn emitted(attr: &RouteAttribute) -> Vec<u8> {
    let mut buf = vec![0; attr.buffer_len()];
    attr.emit(&mut buf);
    buf
}

/// Compares our RTA_ENCAP with iproute2's. The one expected difference:
/// iproute2 flags RTA_ENCAP itself NLA_F_NESTED; `RouteAttribute::Encap`
/// only does so for encap types netlink-packet-route knows to need it,
/// and the kernel's LWT parsers do not require it.
fn assert_same_encap(ours: &[RouteAttribute], captured: &[u8]) {
    let [RouteAttribute::EncapType(_), encap @ RouteAttribute::Encap(_)] = ours else {
        panic!("route_attributes() should be [EncapType, Encap], got {ours:?}");
    };
    let mut want = top_attr(captured, RTA_ENCAP);
    assert_eq!(want[3] & 0x80, 0x80, "iproute2 flags RTA_ENCAP nested");
    want[3] &= 0x7f;
    assert_eq!(emitted(encap), want, "RTA_ENCAP differs from iproute2's");
    assert_eq!(
        emitted(&ours[0]),
        top_attr(captured, RTA_ENCAP_TYPE),
        "RTA_ENCAP_TYPE differs"
    );
}

#[test]
fn bpf_out_request_decodes_with_fd_and_headroom() {
    let route = route_message(BPF_OUT_REQUEST);
    let bpf = LwtBpf::from_route_attributes(&route.attributes).unwrap();
    let want = LwtBpf {
        output: Some(prog(Some(6), "drop.o:[lwt_out]")),
        headroom: Some(14),
        ..LwtBpf::default()
    };
    assert_eq!(bpf, Some(want));
}

#[test]
fn bpf_out_encodes_like_iproute2() {
    let bpf = LwtBpf {
        output: Some(prog(Some(6), "drop.o:[lwt_out]")),
        headroom: Some(14),
        ..LwtBpf::default()
    };
    assert_same_encap(&bpf.encode().unwrap(), BPF_OUT_REQUEST);
}

#[test]
fn bpf_out_whole_request_matches_iproute2_but_for_the_encap_flag() {
    // Rebuild the whole message in iproute2's attribute order.
    let captured = route_message(BPF_OUT_REQUEST);
    let bpf = LwtBpf {
        output: Some(prog(Some(6), "drop.o:[lwt_out]")),
        headroom: Some(14),
        ..LwtBpf::default()
    };
    let mut route = RouteMessage::default();
    route.header = captured.header.clone();
    let [encap_type, encap] = <[RouteAttribute; 2]>::try_from(bpf.route_attributes()).unwrap();
    route.attributes = vec![
        captured.attributes[0].clone(),
        encap,
        encap_type,
        captured.attributes[3].clone(),
    ];
    let original = NetlinkMessage::<RouteNetlinkMessage>::deserialize(BPF_OUT_REQUEST).unwrap();
    let mut msg = NetlinkMessage::new(
        original.header,
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(route)),
    );
    msg.finalize();
    let mut ours = vec![0; msg.buffer_len()];
    msg.serialize(&mut ours);

    let mut want = BPF_OUT_REQUEST.to_vec();
    zero_padding(&mut want[28..]);
    // RTA_ENCAP's type field: 0x8016 from iproute2, 0x0016 from us.
    assert_eq!(&want[36..40], &[0x30, 0x00, 0x16, 0x80]);
    want[39] = 0x00;
    assert_eq!(ours, want);
}

#[test]
fn bpf_dump_returns_names_but_no_fd_or_headroom() {
    let route = route_message(BPF_OUT_DUMP);
    let bpf = LwtBpf::from_route_attributes(&route.attributes)
        .unwrap()
        .unwrap();
    // The route was added with headroom 14: the kernel keeps it but never dumps it.
    assert_eq!(
        bpf,
        LwtBpf {
            output: Some(prog(None, "drop.o:[lwt_out]")),
            ..LwtBpf::default()
        }
    );
}

#[test]
fn bpf_three_hooks_request_decodes_and_encodes_like_iproute2() {
    let want = LwtBpf {
        input: Some(prog(Some(6), "drop.o:[lwt_in]")),
        output: Some(prog(Some(8), "drop.o:[lwt_out]")),
        xmit: Some(prog(Some(11), "drop.o:[lwt_xmit]")),
        headroom: Some(20),
    };
    let route = route_message(BPF_ALL_REQUEST);
    assert_eq!(
        LwtBpf::from_route_attributes(&route.attributes).unwrap(),
        Some(want.clone())
    );
    assert_same_encap(&want.encode().unwrap(), BPF_ALL_REQUEST);
}

#[test]
fn bpf_three_hooks_dump_lists_them_in_kernel_order() {
    let route = route_message(BPF_ALL_DUMP);
    let bpf = LwtBpf::from_route_attributes(&route.attributes)
        .unwrap()
        .unwrap();
    let hooks: Vec<(Hook, &str)> = bpf.hooks().map(|(h, p)| (h, p.name.as_str())).collect();
    assert_eq!(
        hooks,
        [
            (Hook::In, "drop.o:[lwt_in]"),
            (Hook::Out, "drop.o:[lwt_out]"),
            (Hook::Xmit, "drop.o:[lwt_xmit]")
        ]
    );
    assert!(bpf.hooks().all(|(_, p)| p.fd.is_none()));
    assert_eq!(bpf.headroom, None);
}

#[test]
fn end_bpf_encodes_like_iproute2() {
    let end_bpf = Seg6LocalBpf {
        prog: prog(Some(6), "drop.o:[lwt_seg6local]"),
        id: None,
    };
    assert_same_encap(&end_bpf.encode().unwrap(), END_BPF_REQUEST);
}

#[test]
fn end_bpf_dump_carries_the_program_id() {
    let route = route_message(END_BPF_DUMP);
    let end_bpf = Seg6LocalBpf::from_route_attributes(&route.attributes).unwrap();
    assert_eq!(
        end_bpf,
        Some(Seg6LocalBpf {
            prog: prog(None, "drop.o:[lwt_seg6local]"),
            id: Some(144)
        })
    );
    // Not a BPF encap route.
    assert_eq!(
        LwtBpf::from_route_attributes(&route.attributes).unwrap(),
        None
    );
}

#[test]
fn bpf_route_is_not_end_bpf() {
    let route = route_message(BPF_OUT_DUMP);
    assert_eq!(
        Seg6LocalBpf::from_route_attributes(&route.attributes).unwrap(),
        None
    );
}

#[test]
fn seg6local_without_end_bpf_is_none() {
    let nlas = [RouteLwTunnelEncap::Seg6Local(RouteSeg6LocalTunnel::Action(
        Seg6LocalAction::End,
    ))];
    assert_eq!(Seg6LocalBpf::from_encap(&nlas).unwrap(), None);
    let missing = [RouteLwTunnelEncap::Seg6Local(RouteSeg6LocalTunnel::Action(
        Seg6LocalAction::EndBpf,
    ))];
    assert!(matches!(
        Seg6LocalBpf::from_encap(&missing),
        Err(CodecError::MissingAttribute { .. })
    ));
}

#[test]
fn encoded_route_parses_back_through_netlink_packet_route() {
    let bpf = LwtBpf {
        input: Some(prog(Some(3), "a")),
        xmit: Some(prog(Some(4), "lwtkit:xmit:vxlan")),
        headroom: Some(50),
        ..LwtBpf::default()
    };
    let end_bpf = Seg6LocalBpf {
        prog: prog(Some(5), "lwtkit:end_bpf"),
        id: None,
    };
    for (attrs, check) in [
        (
            bpf.route_attributes(),
            Box::new(|a: &[RouteAttribute]| {
                assert_eq!(LwtBpf::from_route_attributes(a).unwrap(), Some(bpf.clone()))
            }) as Box<dyn Fn(&[RouteAttribute])>,
        ),
        (
            end_bpf.route_attributes(),
            Box::new(|a: &[RouteAttribute]| {
                // Parsed as a dump would be: attribute 1 lands in `id`.
                let got = Seg6LocalBpf::from_route_attributes(a).unwrap().unwrap();
                assert_eq!(
                    (got.prog.name.as_str(), got.id),
                    ("lwtkit:end_bpf", Some(5))
                );
            }),
        ),
    ] {
        let mut route = RouteMessage::default();
        route.attributes = attrs;
        let mut buf = vec![0; route.buffer_len()];
        route.emit(&mut buf);
        let parsed = <RouteMessage as netlink_packet_core::Parseable<[u8]>>::parse(&buf).unwrap();
        check(&parsed.attributes);
    }
}

#[test]
fn hook_accessors_follow_the_hook() {
    let mut bpf = LwtBpf::default();
    assert!(bpf.is_empty());
    bpf.headroom = Some(8);
    assert!(bpf.is_empty(), "headroom alone is no hook");
    bpf.set_hook(Hook::Xmit, Some(prog(Some(9), "x")));
    assert_eq!(bpf.hook(Hook::Xmit).map(|p| p.name.as_str()), Some("x"));
    assert_eq!(bpf.hook(Hook::In), None);
    assert_eq!(
        bpf.hooks().map(|(h, _)| h).collect::<Vec<_>>(),
        [Hook::Xmit]
    );
    bpf.set_hook(Hook::Xmit, None);
    assert!(bpf.is_empty());
}

#[test]
fn names_are_checked_before_they_reach_the_kernel() {
    assert_eq!(validate_prog_name(&"n".repeat(MAX_PROG_NAME)), Ok(()));
    assert_eq!(
        validate_prog_name(&"n".repeat(MAX_PROG_NAME + 1)),
        Err(CodecError::ProgNameTooLong { len: 256, max: 255 })
    );
    assert_eq!(validate_prog_name(""), Err(CodecError::EmptyProgName));
    assert!(matches!(
        validate_prog_name("a\0b"),
        Err(CodecError::NulInProgName { .. })
    ));
    assert!(BpfProgAttr::new(3, "x".repeat(300)).is_err());
    assert_eq!(BpfProgAttr::new(3, "ok"), Ok(prog(Some(3), "ok")));

    let long = LwtBpf {
        output: Some(prog(Some(3), &"n".repeat(256))),
        ..LwtBpf::default()
    };
    assert!(matches!(
        long.encode(),
        Err(CodecError::ProgNameTooLong { .. })
    ));
    let end_bpf = Seg6LocalBpf {
        prog: prog(Some(3), &"n".repeat(256)),
        id: None,
    };
    assert!(matches!(
        end_bpf.encode(),
        Err(CodecError::ProgNameTooLong { .. })
    ));
}

#[test]
fn encode_refuses_what_the_kernel_refuses() {
    assert_eq!(LwtBpf::default().encode(), Err(CodecError::NoHook));
    let no_fd = LwtBpf {
        input: Some(prog(None, "x")),
        ..LwtBpf::default()
    };
    assert!(matches!(no_fd.encode(), Err(CodecError::MissingFd { .. })));
    let big = LwtBpf {
        input: Some(prog(Some(3), "x")),
        headroom: Some(MAX_HEADROOM + 1),
        ..LwtBpf::default()
    };
    assert_eq!(
        big.encode(),
        Err(CodecError::HeadroomTooLarge {
            headroom: 257,
            max: 256
        })
    );
    let max = LwtBpf {
        input: Some(prog(Some(3), "x")),
        headroom: Some(MAX_HEADROOM),
        ..LwtBpf::default()
    };
    assert!(max.encode().is_ok());
    let end_bpf = Seg6LocalBpf {
        prog: prog(None, "x"),
        id: Some(7),
    };
    assert!(matches!(
        end_bpf.encode(),
        Err(CodecError::MissingFd { .. })
    ));
}

#[test]
fn odd_input_gives_errors_not_panics() {
    let raw =
        |kind: u16, value: &[u8]| RouteLwTunnelEncap::Other(DefaultNla::new(kind, value.to_vec()));
    // Hook nest whose inner attribute claims more bytes than there are.
    assert!(matches!(
        LwtBpf::from_encap(&[raw(2, &[0xff, 0x00, 0x02, 0x00])]),
        Err(CodecError::Malformed { .. })
    ));
    // Hook without a name.
    assert!(matches!(
        LwtBpf::from_encap(&[raw(2, &[8, 0, 1, 0, 6, 0, 0, 0])]),
        Err(CodecError::MissingAttribute {
            attr: "LWT_BPF_PROG_NAME",
            ..
        })
    ));
    // Headroom of the wrong size.
    assert!(matches!(
        LwtBpf::from_encap(&[raw(4, &[1, 0])]),
        Err(CodecError::BadLength { .. })
    ));
    // Unknown attributes are skipped; the name stops at its NUL.
    let ok =
        LwtBpf::from_encap(&[raw(9, &[1, 2, 3]), raw(1, &[8, 0, 2, 0, b'a', 0, b'z', 0])]).unwrap();
    assert_eq!(ok.input, Some(prog(None, "a")));
    // Another encap type's payload.
    let seg6 = RouteLwTunnelEncap::Seg6Local(RouteSeg6LocalTunnel::Table(5));
    assert!(matches!(
        LwtBpf::from_encap(&[seg6]),
        Err(CodecError::ForeignAttribute { .. })
    ));
    // Encap type without RTA_ENCAP.
    let attrs = [RouteAttribute::EncapType(RouteLwEnCapType::Bpf)];
    assert!(matches!(
        LwtBpf::from_route_attributes(&attrs),
        Err(CodecError::MissingAttribute { .. })
    ));
}

#[test]
fn iproute2_names_use_the_object_basename() {
    assert_eq!(
        iproute2_prog_name(Path::new("/tmp/lwtc/drop.o"), "lwt_out"),
        "drop.o:[lwt_out]"
    );
    assert_eq!(
        iproute2_prog_name(Path::new("x.o"), "lwt_seg6local"),
        "x.o:[lwt_seg6local]"
    );
}
