use netlink_packet_core::{DoneMessage, NLM_F_MULTIPART};
use netlink_packet_route::route::RouteMessage;

use super::*;

#[test]
fn ext_ack_text_is_extracted() {
    let mut payload = vec![0u8; 16];
    let msg = b"Invalid prefix length\0";
    let len = (4 + msg.len()) as u16;
    payload.extend_from_slice(&len.to_ne_bytes());
    payload.extend_from_slice(&1u16.to_ne_bytes());
    payload.extend_from_slice(msg);
    assert_eq!(
        ext_ack_message(&payload).as_deref(),
        Some("Invalid prefix length")
    );
    assert_eq!(ext_ack_message(&payload[..16]), None);
}

/// One netlink message as the kernel would put it in a datagram.
fn message(seq: u32, flags: u16, payload: NetlinkPayload<RouteNetlinkMessage>) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.sequence_number = seq;
    header.flags = flags;
    let mut msg = NetlinkMessage::new(header, payload);
    msg.finalize();
    let mut buf = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut buf);
    buf
}

fn route() -> NetlinkPayload<RouteNetlinkMessage> {
    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(RouteMessage::default()))
}

fn done(code: i32, extended_ack: Vec<u8>) -> NetlinkPayload<RouteNetlinkMessage> {
    let mut msg = DoneMessage::default();
    msg.code = code;
    msg.extended_ack = extended_ack;
    NetlinkPayload::Done(msg)
}

#[test]
fn a_dump_flagged_interrupted_on_any_header_is_marked() {
    let mut data = message(7, NLM_F_MULTIPART, route());
    data.extend(message(7, NLM_F_MULTIPART | NLM_F_DUMP_INTR, route()));
    let mut out = Replies::default();
    assert!(!collect(&data, 7, false, &mut out).expect("decodes"));
    assert_eq!(out.messages.len(), 2);
    assert!(out.interrupted);

    // The flag may come on NLMSG_DONE alone.
    let mut out = Replies::default();
    let mut data = message(7, NLM_F_MULTIPART, route());
    data.extend(message(
        7,
        NLM_F_MULTIPART | NLM_F_DUMP_INTR,
        done(0, vec![]),
    ));
    assert!(collect(&data, 7, false, &mut out).expect("decodes"));
    assert_eq!(out.messages.len(), 1);
    assert!(out.interrupted);
}

#[test]
fn a_whole_dump_is_not_marked_and_other_sequences_are_skipped() {
    let mut data = message(6, NLM_F_MULTIPART | NLM_F_DUMP_INTR, route());
    data.extend(message(7, NLM_F_MULTIPART, route()));
    data.extend(message(7, NLM_F_MULTIPART, done(0, vec![])));
    let mut out = Replies::default();
    assert!(collect(&data, 7, false, &mut out).expect("decodes"));
    assert_eq!(out.messages.len(), 1);
    assert!(!out.interrupted);
}

#[test]
fn a_failed_dump_reports_the_errno_and_text_of_its_done_message() {
    let text = b"ipv4: FIB table does not exist\0";
    let mut tlvs = ((4 + text.len()) as u16).to_ne_bytes().to_vec();
    tlvs.extend_from_slice(&1u16.to_ne_bytes());
    tlvs.extend_from_slice(text);
    tlvs.resize((tlvs.len() + 3) & !3, 0);
    let data = message(3, NLM_F_MULTIPART, done(-libc::ENOENT, tlvs));
    let err = collect(&data, 3, false, &mut Replies::default()).expect_err("fails");
    assert_eq!(err.errno(), Some(libc::ENOENT));
    assert!(err
        .to_string()
        .starts_with("ipv4: FIB table does not exist"));
}

#[test]
fn interrupted_dumps_are_sent_again_until_whole() {
    let mut calls = 0;
    let got = retry_interrupted(DUMP_ATTEMPTS, || {
        calls += 1;
        Ok((calls, calls < 3))
    });
    assert_eq!(got.ok(), Some(3));
    assert_eq!(calls, 3);
}

#[test]
fn a_dump_interrupted_every_time_gives_up_after_the_last_attempt() {
    let mut calls = 0;
    let got = retry_interrupted(DUMP_ATTEMPTS, || {
        calls += 1;
        Ok(((), true))
    });
    assert!(matches!(
        got,
        Err(NetlinkError::Interrupted { attempts: 5 })
    ));
    assert_eq!(calls, DUMP_ATTEMPTS);
}

#[test]
fn a_failed_attempt_is_not_retried() {
    let mut calls = 0;
    let got: Result<(), _> = retry_interrupted(DUMP_ATTEMPTS, || {
        calls += 1;
        Err(NetlinkError::Decode("bad".into()))
    });
    assert!(matches!(got, Err(NetlinkError::Decode(_))));
    assert_eq!(calls, 1);
}
