//! The doctor's throwaway network namespace: a thread of its own that
//! unshares its network namespace, tries what lwtkit needs from the kernel
//! there (a route with a BPF program, a seg6 route, a seg6local End.BPF
//! route, a tcx link, a netfilter BPF link), and ends. The namespace has no name and no other
//! user, so the kernel removes it, and everything in it, when the thread
//! ends, even if lwt is killed: nothing can be left behind.
use std::os::fd::{AsRawFd, OwnedFd};

use ipnet::IpNet;
use libbpf_rs::{libbpf_sys, ProgramType};
use netlink_packet_route::{
    link::{LinkFlags, LinkMessage},
    route::{
        RouteAttribute, RouteLwEnCapType, RouteLwTunnelEncap, RouteSeg6IpTunnel, Seg6Header,
        Seg6Mode,
    },
    RouteNetlinkMessage,
};

use super::Sandboxed;
use crate::{
    probe::insn::{self, Verdict},
    route::{
        codec::{BpfProgAttr, LwtBpf, Seg6LocalBpf},
        netlink::{NetlinkError, Rtnl},
        ops::{self, NewRoute, RouteKey},
    },
};

/// What the throwaway namespace showed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Findings {
    pub lwt_bpf: Sandboxed,
    pub seg6: Sandboxed,
    pub seg6_bpf: Sandboxed,
    pub tcx: Sandboxed,
    pub netfilter: Sandboxed,
}

impl Findings {
    fn none(why: &str) -> Self {
        let n = Sandboxed::NotProbed(why.into());
        Self {
            lwt_bpf: n.clone(),
            seg6: n.clone(),
            seg6_bpf: n.clone(),
            tcx: n.clone(),
            netfilter: n,
        }
    }
}

/// The loopback device's index in a new namespace.
const LO: u32 = 1;
const NAME: &str = "lwtkit-doctor";

/// Runs the probes in a new, anonymous network namespace.
pub fn probe() -> Findings {
    std::thread::spawn(|| {
        // Only this thread moves; the namespace dies with it.
        if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET) {
            return Findings::none(&format!(
                "cannot create a throwaway network namespace: {}",
                e.desc()
            ));
        }
        in_namespace()
    })
    .join()
    .unwrap_or_else(|_| Findings::none("the probe thread failed"))
}

fn in_namespace() -> Findings {
    let mut rtnl = match Rtnl::open() {
        Ok(r) => r,
        Err(e) => return Findings::none(&format!("no rtnetlink socket: {e}")),
    };
    if let Err(e) = loopback_up(&mut rtnl) {
        return Findings::none(&format!("cannot bring lo up: {e}"));
    }
    Findings {
        lwt_bpf: lwt_bpf(&mut rtnl),
        seg6: seg6(&mut rtnl),
        seg6_bpf: seg6_bpf(&mut rtnl),
        tcx: tcx(),
        netfilter: crate::trace::probe_netfilter_link()
            .map_or_else(Sandboxed::Missing, |()| Sandboxed::Works),
    }
}

fn loopback_up(rtnl: &mut Rtnl) -> Result<(), NetlinkError> {
    let mut m = LinkMessage::default();
    m.header.index = LO;
    m.header.flags = LinkFlags::Up;
    m.header.change_mask = LinkFlags::Up;
    rtnl.execute(RouteNetlinkMessage::SetLink(m), 0)
}

/// A program of `ty` that returns `ret`.
fn program(ty: u32, ret: i32) -> Result<OwnedFd, Sandboxed> {
    match insn::try_load(ty, &[insn::mov_imm(0, ret), insn::exit()]) {
        Verdict::Accepted(fd) => Ok(fd),
        Verdict::Refused => Err(Sandboxed::Missing(
            "the verifier refused an empty program".into(),
        )),
        Verdict::Error(e) if e.raw_os_error() == Some(libc::EPERM) => Err(Sandboxed::NotProbed(
            "loading a BPF program needs CAP_BPF".into(),
        )),
        Verdict::Error(e) => Err(Sandboxed::Missing(format!("loading the program: {e}"))),
    }
}

fn route(dst: &str) -> netlink_packet_route::route::RouteMessage {
    let dst: IpNet = dst
        .parse()
        .unwrap_or_else(|_| unreachable!("constant prefix"));
    ops::new_route(&NewRoute {
        key: RouteKey { dst, table: 254 },
        local: false,
        oif: LO,
        via: None,
    })
}

/// The kernel's answer to adding `msg`: a missing encap type is
/// EOPNOTSUPP (`lwtunnel_valid_encap_type`).
fn outcome(rtnl: &mut Rtnl, msg: netlink_packet_route::route::RouteMessage) -> Sandboxed {
    match ops::add(rtnl, msg) {
        Ok(()) => Sandboxed::Works,
        Err(e) => match e.errno() {
            Some(libc::EOPNOTSUPP) | Some(libc::EAFNOSUPPORT) => Sandboxed::Missing(e.to_string()),
            Some(libc::EPERM) => Sandboxed::NotProbed(e.to_string()),
            _ => Sandboxed::Missing(e.to_string()),
        },
    }
}

fn lwt_bpf(rtnl: &mut Rtnl) -> Sandboxed {
    let fd = match program(ProgramType::LwtXmit as u32, 0) {
        Ok(fd) => fd,
        Err(s) => return s,
    };
    let mut msg = route("192.0.2.1/32");
    let bpf = LwtBpf {
        xmit: Some(BpfProgAttr {
            fd: Some(fd.as_raw_fd() as u32),
            name: NAME.into(),
        }),
        ..Default::default()
    };
    match bpf.encode() {
        Ok(attrs) => msg.attributes.extend(attrs),
        Err(e) => return Sandboxed::NotProbed(e.to_string()),
    }
    outcome(rtnl, msg)
}

fn seg6(rtnl: &mut Rtnl) -> Sandboxed {
    let mut msg = route("2001:db8:5::/64");
    let mut srh = Seg6Header::default();
    srh.mode = Seg6Mode::Encap;
    srh.segments = vec![std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)];
    msg.attributes
        .push(RouteAttribute::EncapType(RouteLwEnCapType::Seg6));
    msg.attributes
        .push(RouteAttribute::Encap(vec![RouteLwTunnelEncap::Seg6(
            RouteSeg6IpTunnel::Seg6(srh),
        )]));
    outcome(rtnl, msg)
}

fn seg6_bpf(rtnl: &mut Rtnl) -> Sandboxed {
    let fd = match program(ProgramType::LwtSeg6local as u32, 0) {
        Ok(fd) => fd,
        Err(s) => return s,
    };
    let mut msg = route("2001:db8:6::1/128");
    let bpf = Seg6LocalBpf {
        prog: BpfProgAttr {
            fd: Some(fd.as_raw_fd() as u32),
            name: NAME.into(),
        },
        id: None,
    };
    match bpf.encode() {
        Ok(attrs) => msg.attributes.extend(attrs),
        Err(e) => return Sandboxed::NotProbed(e.to_string()),
    }
    outcome(rtnl, msg)
}

/// A tcx ingress link on lo (Linux 6.6+), closed at once.
fn tcx() -> Sandboxed {
    // TCX_NEXT (-1): pass on, were it ever run.
    let fd = match program(ProgramType::SchedCls as u32, -1) {
        Ok(fd) => fd,
        Err(s) => return s,
    };
    // SAFETY: a valid program fd, an ifindex, no options.
    let link = unsafe {
        libbpf_sys::bpf_link_create(
            fd.as_raw_fd(),
            LO as i32,
            libbpf_sys::BPF_TCX_INGRESS,
            std::ptr::null(),
        )
    };
    if link >= 0 {
        // SAFETY: the link fd is ours; closing it detaches the program.
        drop(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(link) });
        Sandboxed::Works
    } else {
        Sandboxed::Missing(std::io::Error::from_raw_os_error(-link).to_string())
    }
}
