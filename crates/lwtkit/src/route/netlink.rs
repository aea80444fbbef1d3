//! A small synchronous rtnetlink client: send one request, collect the
//! replies of a dump or the kernel's acknowledgement (with its extended-ack
//! message, which names what the kernel disliked).
use std::io;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR,
    NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// A change request in words, for `lwt -v`: `route replace 10.0.0.3/32
/// table 254 metric 1 (encap)`.
fn describe(msg: &RouteNetlinkMessage, flags: u16) -> String {
    use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
    use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
    let verb = if flags & NLM_F_REPLACE != 0 {
        "replace"
    } else if flags & (NLM_F_CREATE | NLM_F_EXCL) != 0 {
        "add"
    } else {
        "change"
    };
    let route = |m: &RouteMessage| {
        let mut dst = None;
        let (mut table, mut metric, mut encap) = (u32::from(m.header.table), 0, false);
        for a in &m.attributes {
            match a {
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => dst = Some(ip.to_string()),
                RouteAttribute::Destination(RouteAddress::Inet6(ip)) => dst = Some(ip.to_string()),
                RouteAttribute::Table(t) => table = *t,
                RouteAttribute::Priority(p) => metric = *p,
                RouteAttribute::Encap(_) => encap = true,
                _ => {}
            }
        }
        let dst = dst.unwrap_or_else(|| "default".into());
        let encap = if encap { " (encap)" } else { "" };
        format!(
            "{dst}/{} table {table} metric {metric}{encap}",
            m.header.destination_prefix_length
        )
    };
    match msg {
        RouteNetlinkMessage::NewRoute(m) => format!("route {verb} {}", route(m)),
        RouteNetlinkMessage::DelRoute(m) => format!("route del {}", route(m)),
        other => {
            let text = format!("{other:?}");
            let kind = text.split('(').next().unwrap_or_default();
            format!("{kind} ({verb})")
        }
    }
}

/// How many times a dump is sent when the kernel marks every answer as
/// interrupted by concurrent changes (NLM_F_DUMP_INTR).
pub const DUMP_ATTEMPTS: usize = 5;

/// A failed netlink request: the kernel's errno and its extended-ack text.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("netlink socket: {0}")]
    Io(#[from] io::Error),
    #[error("{}", kernel_message(*errno, message))]
    Kernel { errno: i32, message: Option<String> },
    #[error("cannot decode netlink reply: {0}")]
    Decode(String),
    #[error("the kernel's answer changed while it was being read, {attempts} times in a row (routes or addresses changing fast); try again")]
    Interrupted { attempts: usize },
}

fn kernel_message(errno: i32, message: &Option<String>) -> String {
    let text = io::Error::from_raw_os_error(errno);
    match message {
        Some(m) => format!("{m} ({text})"),
        None => text.to_string(),
    }
}

impl NetlinkError {
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Kernel { errno, .. } => Some(*errno),
            NetlinkError::Io(e) => e.raw_os_error(),
            NetlinkError::Decode(_) | NetlinkError::Interrupted { .. } => None,
        }
    }
}

/// One rtnetlink socket of the current network namespace.
pub struct Rtnl {
    socket: Socket,
    seq: u32,
}

/// The messages of one answer, and whether the kernel flagged it as
/// inconsistent (NLM_F_DUMP_INTR on any of its headers, NLMSG_DONE included).
#[derive(Debug, Default)]
struct Replies {
    messages: Vec<RouteNetlinkMessage>,
    interrupted: bool,
}

impl Rtnl {
    pub fn open() -> Result<Self, NetlinkError> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        // Errors carry only the request header plus the kernel's text.
        socket.set_cap_ack(true)?;
        socket.set_ext_ack(true)?;
        Ok(Self { socket, seq: 0 })
    }

    /// Sends a request that changes state and waits for its ack.
    pub fn execute(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Result<(), NetlinkError> {
        let what = describe(&msg, flags);
        let done = self.exchange(msg, flags | NLM_F_ACK).map(|_| ());
        match &done {
            Ok(()) => tracing::debug!("kernel: {what}"),
            Err(e) => tracing::debug!("kernel refused: {what}: {e}"),
        }
        done
    }

    /// Sends a dump request and returns every message of the reply; a dump
    /// the kernel flags as interrupted is sent again (at most
    /// [`DUMP_ATTEMPTS`] times in all).
    pub fn dump(
        &mut self,
        msg: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        retry_interrupted(DUMP_ATTEMPTS, || {
            self.exchange(msg.clone(), NLM_F_DUMP)
                .map(|r| (r.messages, r.interrupted))
        })
    }

    /// [`Rtnl::dump`] with the kernel's strict checking of the request
    /// (NETLINK_GET_STRICT_CHK), so that it honours the filters in it (for
    /// routes: family, table, type, protocol, device) instead of ignoring
    /// them. Fails with ENOPROTOOPT on kernels before 4.20.
    pub fn dump_strict(
        &mut self,
        msg: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.strictly(|rtnl| rtnl.dump(msg))
    }

    /// Sends a single-object request (e.g. RTM_GETLINK by name).
    pub fn get(
        &mut self,
        msg: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.exchange(msg, 0).map(|r| r.messages)
    }

    /// [`Rtnl::get`] with strict checking: the kernel refuses flags and
    /// attributes it would otherwise ignore.
    pub fn get_strict(
        &mut self,
        msg: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.strictly(|rtnl| rtnl.get(msg))
    }

    /// Runs `f` with NETLINK_GET_STRICT_CHK on. The kernel reads the option
    /// when it handles each request, so turning it off afterwards leaves
    /// the socket's other requests as they were.
    fn strictly<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, NetlinkError>,
    ) -> Result<T, NetlinkError> {
        self.socket.set_netlink_get_strict_chk(true)?;
        let out = f(self);
        let reset = self.socket.set_netlink_get_strict_chk(false);
        let out = out?;
        reset?;
        Ok(out)
    }

    fn exchange(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Result<Replies, NetlinkError> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut req = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        req.finalize();
        let mut buf = vec![0u8; req.buffer_len()];
        req.serialize(&mut buf);
        self.socket.send(&buf, 0)?;

        // A single-object request without an ack ends with its first answer.
        let first_ends = flags & NLM_F_DUMP != NLM_F_DUMP && flags & NLM_F_ACK == 0;
        let mut replies = Replies::default();
        loop {
            let (data, _) = self.socket.recv_from_full()?;
            if collect(&data, self.seq, first_ends, &mut replies)? {
                return Ok(replies);
            }
        }
    }
}

/// Adds the messages of one received datagram that answer request `seq` to
/// `out`. Returns whether the answer is complete (NLMSG_DONE, an ack, or
/// the first message when `first_ends`).
fn collect(
    data: &[u8],
    seq: u32,
    first_ends: bool,
    out: &mut Replies,
) -> Result<bool, NetlinkError> {
    let mut offset = 0;
    while offset < data.len() {
        let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[offset..])
            .map_err(|e| NetlinkError::Decode(e.to_string()))?;
        let len = reply.header.length as usize;
        if len == 0 {
            return Err(NetlinkError::Decode("zero-length message".into()));
        }
        offset += (len + 3) & !3;
        if reply.header.sequence_number != seq {
            continue;
        }
        if reply.header.flags & NLM_F_DUMP_INTR != 0 {
            out.interrupted = true;
        }
        match reply.payload {
            // A dump that fails (a table that does not exist, a filter the
            // kernel refuses) ends with NLMSG_DONE carrying the errno.
            NetlinkPayload::Done(done) if done.code < 0 => {
                return Err(NetlinkError::Kernel {
                    errno: -done.code,
                    message: tlv_message(&done.extended_ack),
                })
            }
            NetlinkPayload::Done(_) => return Ok(true),
            NetlinkPayload::Error(e) => match e.code {
                Some(code) => {
                    return Err(NetlinkError::Kernel {
                        errno: -code.get(),
                        message: ext_ack_message(&e.header),
                    })
                }
                None => return Ok(true),
            },
            NetlinkPayload::InnerMessage(m) => {
                out.messages.push(m);
                if first_ends {
                    return Ok(true);
                }
            }
            _ => {}
        }
    }
    Ok(false)
}

/// Runs `once` (one dump, and whether the kernel flagged it interrupted)
/// until an answer comes back whole, at most `attempts` times.
fn retry_interrupted<T>(
    attempts: usize,
    mut once: impl FnMut() -> Result<(T, bool), NetlinkError>,
) -> Result<T, NetlinkError> {
    for _ in 0..attempts {
        let (answer, interrupted) = once()?;
        if !interrupted {
            return Ok(answer);
        }
    }
    Err(NetlinkError::Interrupted { attempts })
}

/// Pulls `NLMSGERR_ATTR_MSG` out of an error payload (capped: the request's
/// 16-byte header, then TLVs).
fn ext_ack_message(payload: &[u8]) -> Option<String> {
    tlv_message(payload.get(16..)?)
}

/// `NLMSGERR_ATTR_MSG` among extended-ack TLVs.
fn tlv_message(mut tlvs: &[u8]) -> Option<String> {
    const NLMSGERR_ATTR_MSG: u16 = 1;
    while tlvs.len() >= 4 {
        let len = u16::from_ne_bytes([tlvs[0], tlvs[1]]) as usize;
        let kind = u16::from_ne_bytes([tlvs[2], tlvs[3]]);
        if len < 4 || len > tlvs.len() {
            break;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let text = &tlvs[4..len];
            let text = text.split(|b| *b == 0).next().unwrap_or_default();
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        tlvs = tlvs.get((len + 3) & !3..).unwrap_or_default();
    }
    None
}

#[cfg(test)]
#[path = "netlink_tests.rs"]
mod tests;
