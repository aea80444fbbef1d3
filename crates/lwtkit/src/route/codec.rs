//! Typed codecs for the BPF attributes of lightweight-tunnel routes:
//! `encap bpf` (`LWTUNNEL_ENCAP_BPF`, hooks in/out/xmit plus headroom) and
//! seg6local `End.BPF`.
//!
//! netlink-packet-route knows both encap types but not these payloads: it
//! hands them back as raw [`DefaultNla`]s. This module builds and reads those
//! raw attributes, shaped like rtnetlink's `output_seg6`: a typed value turns
//! into `[RouteAttribute::EncapType(..), RouteAttribute::Encap(..)]`.
//!
//! What the kernel sends back differs from what it accepts (see
//! `net/core/lwt_bpf.c`, `net/ipv6/seg6_local.c`):
//! - `encap bpf` dumps carry only each hook's program *name*: no fd, no id,
//!   and no `LWT_BPF_XMIT_HEADROOM`.
//! - seg6local `End.BPF` dumps carry the program *id* in the attribute that
//!   carries the fd in a request (`SEG6_LOCAL_BPF_PROG`), plus the name.
use std::{fmt, path::Path};

use netlink_packet_core::{DefaultNla, Emitable, Nla, NlasIterator, NLA_F_NESTED, NLA_TYPE_MASK};
use netlink_packet_route::route::{
    RouteAttribute, RouteLwEnCapType, RouteLwTunnelEncap, RouteSeg6LocalTunnel, Seg6LocalAction,
};

use crate::hook::Hook;

/// Longest program name lwtkit sends, in bytes, without the trailing NUL.
///
/// The kernel takes up to 256 (*seen* on 6.18: 256 attached and dumped whole,
/// 257 got `EINVAL`), but it sizes route dumps and notifications for a name
/// of 256 bytes *including* the NUL (`bpf_encap_nlsize`); 255 stays inside
/// that estimate.
pub const MAX_PROG_NAME: usize = 255;

/// `LWT_BPF_MAX_HEADROOM`: the kernel answers `ERANGE` above it.
pub const MAX_HEADROOM: u32 = 256;

// include/uapi/linux/lwtunnel.h
const LWT_BPF_PROG_FD: u16 = 1;
const LWT_BPF_PROG_NAME: u16 = 2;
const LWT_BPF_XMIT_HEADROOM: u16 = 4;

// include/uapi/linux/seg6_local.h
const SEG6_LOCAL_ACTION: u16 = 1;
const SEG6_LOCAL_BPF: u16 = 8;
const SEG6_LOCAL_BPF_PROG: u16 = 1;
const SEG6_LOCAL_BPF_PROG_NAME: u16 = 2;

/// Why a BPF encap could not be built or read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("BPF program name is empty: the kernel tells routes apart by this name")]
    EmptyProgName,
    #[error("BPF program name {name:?} contains a NUL byte")]
    NulInProgName { name: String },
    #[error("BPF program name is {len} bytes long, the limit is {max} (MAX_PROG_NAME)")]
    ProgNameTooLong { len: usize, max: usize },
    #[error(
        "headroom {headroom} is over the kernel's limit of {max} bytes (LWT_BPF_MAX_HEADROOM)"
    )]
    HeadroomTooLarge { headroom: u32, max: u32 },
    #[error("no BPF program on any hook: the kernel needs at least one of in, out, xmit")]
    NoHook,
    #[error("{what} has no program fd: the kernel needs an fd to attach a program")]
    MissingFd { what: String },
    #[error("{attr} is missing from the {within}")]
    MissingAttribute {
        attr: &'static str,
        within: &'static str,
    },
    #[error("{attr} is {got} bytes long, expected {expected}")]
    BadLength {
        attr: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("malformed netlink attributes in {within}: {reason}")]
    Malformed {
        within: &'static str,
        reason: String,
    },
    #[error("{within} holds an attribute of another encap type: {found}")]
    ForeignAttribute { within: &'static str, found: String },
}

/// One BPF program as a route's encap names it.
///
/// `fd` is needed to attach (the kernel takes a reference on the program);
/// dumps never return it. `name` is how the kernel compares routes, so it
/// must be unique and stable; iproute2 uses `"<object>:[<section>]"`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct BpfProgAttr {
    pub fd: Option<u32>,
    pub name: String,
}

impl BpfProgAttr {
    /// A program to attach, with its name checked against the kernel's rules.
    pub fn new(fd: u32, name: impl Into<String>) -> Result<Self, CodecError> {
        let name = name.into();
        validate_prog_name(&name)?;
        Ok(Self { fd: Some(fd), name })
    }
}

impl fmt::Display for BpfProgAttr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// The name iproute2 gives a program it attaches: `"drop.o:[lwt_out]"` for
/// `obj /some/dir/drop.o section lwt_out`.
pub fn iproute2_prog_name(object: &Path, section: &str) -> String {
    let base = object
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| object.to_string_lossy().into_owned());
    format!("{base}:[{section}]")
}

/// Checks a program name before it goes to the kernel: not empty (routes
/// are compared by name), no NUL (the kernel would cut it there), at most
/// [`MAX_PROG_NAME`] bytes.
pub fn validate_prog_name(name: &str) -> Result<(), CodecError> {
    if name.is_empty() {
        return Err(CodecError::EmptyProgName);
    }
    if name.contains('\0') {
        return Err(CodecError::NulInProgName {
            name: name.to_owned(),
        });
    }
    if name.len() > MAX_PROG_NAME {
        return Err(CodecError::ProgNameTooLong {
            len: name.len(),
            max: MAX_PROG_NAME,
        });
    }
    Ok(())
}

/// The `encap bpf` payload of a route: up to one program per hook, and the
/// headroom hint (`LWT_BPF_XMIT_HEADROOM`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct LwtBpf {
    pub input: Option<BpfProgAttr>,
    pub output: Option<BpfProgAttr>,
    pub xmit: Option<BpfProgAttr>,
    pub headroom: Option<u32>,
}

impl LwtBpf {
    pub fn hook(&self, h: Hook) -> Option<&BpfProgAttr> {
        match h {
            Hook::In => self.input.as_ref(),
            Hook::Out => self.output.as_ref(),
            Hook::Xmit => self.xmit.as_ref(),
        }
    }

    pub fn set_hook(&mut self, h: Hook, p: Option<BpfProgAttr>) {
        let slot = match h {
            Hook::In => &mut self.input,
            Hook::Out => &mut self.output,
            Hook::Xmit => &mut self.xmit,
        };
        *slot = p;
    }

    /// The hooks that carry a program, in kernel order (in, out, xmit).
    pub fn hooks(&self) -> impl Iterator<Item = (Hook, &BpfProgAttr)> {
        Hook::ALL
            .into_iter()
            .filter_map(|h| self.hook(h).map(|p| (h, p)))
    }

    /// True when no hook carries a program (headroom alone does not count).
    pub fn is_empty(&self) -> bool {
        self.hooks().next().is_none()
    }

    /// Everything the kernel checks before it accepts this encap: at least
    /// one hook, each with an fd and a valid name, headroom within limits.
    pub fn validate(&self) -> Result<(), CodecError> {
        if self.is_empty() {
            return Err(CodecError::NoHook);
        }
        for (h, p) in self.hooks() {
            if p.fd.is_none() {
                return Err(CodecError::MissingFd {
                    what: format!("hook {h}"),
                });
            }
            validate_prog_name(&p.name)?;
        }
        if let Some(headroom) = self.headroom.filter(|h| *h > MAX_HEADROOM) {
            return Err(CodecError::HeadroomTooLarge {
                headroom,
                max: MAX_HEADROOM,
            });
        }
        Ok(())
    }

    /// The nested attributes of `RTA_ENCAP`, in the order iproute2 sends
    /// them. Does not validate: call [`LwtBpf::validate`] (or use
    /// [`LwtBpf::encode`]) first, or the kernel may refuse the route.
    pub fn to_encap(&self) -> Vec<RouteLwTunnelEncap> {
        let mut nlas: Vec<RouteLwTunnelEncap> = self
            .hooks()
            .map(|(h, p)| {
                RouteLwTunnelEncap::Other(nest(
                    h.nla_kind(),
                    &prog_nlas(p, LWT_BPF_PROG_FD, LWT_BPF_PROG_NAME),
                ))
            })
            .collect();
        if let Some(headroom) = self.headroom {
            nlas.push(RouteLwTunnelEncap::Other(DefaultNla::new(
                LWT_BPF_XMIT_HEADROOM,
                headroom.to_ne_bytes().to_vec(),
            )));
        }
        nlas
    }

    /// `[EncapType(Bpf), Encap(to_encap())]`, ready to push onto a route
    /// message. Does not validate; see [`LwtBpf::encode`].
    pub fn route_attributes(&self) -> Vec<RouteAttribute> {
        vec![
            RouteAttribute::EncapType(RouteLwEnCapType::Bpf),
            RouteAttribute::Encap(self.to_encap()),
        ]
    }

    /// [`LwtBpf::validate`], then [`LwtBpf::route_attributes`].
    pub fn encode(&self) -> Result<Vec<RouteAttribute>, CodecError> {
        self.validate()?;
        Ok(self.route_attributes())
    }

    /// Reads the nested attributes of a BPF `RTA_ENCAP`, as a request or a
    /// dump carries them. Unknown attributes are skipped (newer kernels may
    /// add some); a hook without a name is an error.
    pub fn from_encap(nlas: &[RouteLwTunnelEncap]) -> Result<Self, CodecError> {
        const WITHIN: &str = "BPF encap (RTA_ENCAP)";
        let mut bpf = LwtBpf::default();
        for nla in nlas {
            let RouteLwTunnelEncap::Other(raw) = nla else {
                return Err(CodecError::ForeignAttribute {
                    within: WITHIN,
                    found: format!("{nla:?}"),
                });
            };
            let kind = raw.kind() & NLA_TYPE_MASK;
            let value = nla_value(raw);
            if let Some(h) = Hook::from_nla_kind(kind) {
                let prog = parse_prog(
                    &value,
                    "LWT_BPF_PROG_NAME",
                    "LWT_BPF_PROG_FD",
                    hook_attr_name(h),
                )?;
                bpf.set_hook(
                    h,
                    Some(BpfProgAttr {
                        fd: prog.first,
                        name: prog.name,
                    }),
                );
            } else if kind == LWT_BPF_XMIT_HEADROOM {
                bpf.headroom = Some(parse_u32(&value, "LWT_BPF_XMIT_HEADROOM")?);
            }
        }
        Ok(bpf)
    }

    /// The BPF encap of a route, `None` when the route has another encap or
    /// none. Order of `RTA_ENCAP_TYPE` and `RTA_ENCAP` does not matter.
    pub fn from_route_attributes(attrs: &[RouteAttribute]) -> Result<Option<Self>, CodecError> {
        let is_bpf = attrs
            .iter()
            .any(|a| matches!(a, RouteAttribute::EncapType(RouteLwEnCapType::Bpf)));
        if !is_bpf {
            return Ok(None);
        }
        let nlas = attrs
            .iter()
            .find_map(|a| match a {
                RouteAttribute::Encap(nlas) => Some(nlas),
                _ => None,
            })
            .ok_or(CodecError::MissingAttribute {
                attr: "RTA_ENCAP",
                within: "BPF route",
            })?;
        Self::from_encap(nlas).map(Some)
    }
}

/// seg6local `End.BPF`: the program run on the segment endpoint.
///
/// Encoding sends `prog.fd`; a dump returns the program id in `id` (and no
/// fd), because the kernel reuses `SEG6_LOCAL_BPF_PROG` for the id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seg6LocalBpf {
    pub prog: BpfProgAttr,
    pub id: Option<u32>,
}

impl Seg6LocalBpf {
    /// Checks that the program can be attached: an fd and a valid name.
    pub fn validate(&self) -> Result<(), CodecError> {
        if self.prog.fd.is_none() {
            return Err(CodecError::MissingFd {
                what: "End.BPF endpoint".into(),
            });
        }
        validate_prog_name(&self.prog.name)
    }

    /// `SEG6_LOCAL_ACTION = END_BPF` and the nested `SEG6_LOCAL_BPF`, as
    /// iproute2 sends them. The fd goes in `SEG6_LOCAL_BPF_PROG`; `id` is
    /// not sent. Does not validate.
    pub fn to_encap(&self) -> Vec<RouteLwTunnelEncap> {
        let bpf = nest(
            SEG6_LOCAL_BPF,
            &prog_nlas(&self.prog, SEG6_LOCAL_BPF_PROG, SEG6_LOCAL_BPF_PROG_NAME),
        );
        vec![
            RouteLwTunnelEncap::Seg6Local(RouteSeg6LocalTunnel::Action(Seg6LocalAction::EndBpf)),
            // Same shape netlink-packet-route gives an unknown seg6local
            // attribute when it parses, so encode and parse round-trip.
            RouteLwTunnelEncap::Seg6Local(RouteSeg6LocalTunnel::Other(bpf)),
        ]
    }

    /// `[EncapType(Seg6Local), Encap(to_encap())]`. Does not validate.
    pub fn route_attributes(&self) -> Vec<RouteAttribute> {
        vec![
            RouteAttribute::EncapType(RouteLwEnCapType::Seg6Local),
            RouteAttribute::Encap(self.to_encap()),
        ]
    }

    /// [`Seg6LocalBpf::validate`], then [`Seg6LocalBpf::route_attributes`].
    pub fn encode(&self) -> Result<Vec<RouteAttribute>, CodecError> {
        self.validate()?;
        Ok(self.route_attributes())
    }

    /// The End.BPF program of a seg6local encap: `None` when the action is
    /// not End.BPF. Reads `SEG6_LOCAL_BPF_PROG` as the program id, which is
    /// what a dump carries.
    pub fn from_encap(nlas: &[RouteLwTunnelEncap]) -> Result<Option<Self>, CodecError> {
        const WITHIN: &str = "seg6local encap (RTA_ENCAP)";
        let mut is_end_bpf = false;
        let mut bpf_value = None;
        for nla in nlas {
            match nla {
                RouteLwTunnelEncap::Seg6Local(RouteSeg6LocalTunnel::Action(action)) => {
                    is_end_bpf = *action == Seg6LocalAction::EndBpf;
                }
                RouteLwTunnelEncap::Seg6Local(RouteSeg6LocalTunnel::Other(raw))
                | RouteLwTunnelEncap::Other(raw) => {
                    match raw.kind() & NLA_TYPE_MASK {
                        SEG6_LOCAL_BPF => bpf_value = Some(nla_value(raw)),
                        // A seg6local payload parsed without its encap type.
                        SEG6_LOCAL_ACTION => {
                            is_end_bpf = parse_u32(&nla_value(raw), "SEG6_LOCAL_ACTION")?
                                == u32::from(Seg6LocalAction::EndBpf);
                        }
                        _ => {}
                    }
                }
                RouteLwTunnelEncap::Seg6Local(_) => {}
                other => {
                    return Err(CodecError::ForeignAttribute {
                        within: WITHIN,
                        found: format!("{other:?}"),
                    });
                }
            }
        }
        if !is_end_bpf {
            return Ok(None);
        }
        let value = bpf_value.ok_or(CodecError::MissingAttribute {
            attr: "SEG6_LOCAL_BPF",
            within: "End.BPF encap",
        })?;
        let prog = parse_prog(
            &value,
            "SEG6_LOCAL_BPF_PROG_NAME",
            "SEG6_LOCAL_BPF_PROG",
            "SEG6_LOCAL_BPF",
        )?;
        Ok(Some(Self {
            prog: BpfProgAttr {
                fd: None,
                name: prog.name,
            },
            id: prog.first,
        }))
    }

    /// The End.BPF program of a route, `None` when the route is not a
    /// seg6local End.BPF route.
    pub fn from_route_attributes(attrs: &[RouteAttribute]) -> Result<Option<Self>, CodecError> {
        let is_seg6local = attrs
            .iter()
            .any(|a| matches!(a, RouteAttribute::EncapType(RouteLwEnCapType::Seg6Local)));
        if !is_seg6local {
            return Ok(None);
        }
        match attrs.iter().find_map(|a| match a {
            RouteAttribute::Encap(nlas) => Some(nlas),
            _ => None,
        }) {
            Some(nlas) => Self::from_encap(nlas),
            None => Ok(None),
        }
    }
}

fn hook_attr_name(h: Hook) -> &'static str {
    match h {
        Hook::In => "LWT_BPF_IN",
        Hook::Out => "LWT_BPF_OUT",
        Hook::Xmit => "LWT_BPF_XMIT",
    }
}

/// `{fd_kind: u32, name_kind: NUL-terminated string}`; fd left out when unknown.
fn prog_nlas(p: &BpfProgAttr, fd_kind: u16, name_kind: u16) -> Vec<DefaultNla> {
    let mut name = p.name.as_bytes().to_vec();
    name.push(0);
    let mut nlas = Vec::with_capacity(2);
    if let Some(fd) = p.fd {
        nlas.push(DefaultNla::new(fd_kind, fd.to_ne_bytes().to_vec()));
    }
    nlas.push(DefaultNla::new(name_kind, name));
    nlas
}

/// A nested attribute, flagged `NLA_F_NESTED` as iproute2 flags it.
fn nest(kind: u16, children: &[DefaultNla]) -> DefaultNla {
    let mut value = vec![0; children.buffer_len()];
    children.emit(&mut value);
    DefaultNla::new(kind | NLA_F_NESTED, value)
}

/// `DefaultNla` keeps its payload private; emitting it is the way out.
fn nla_value(nla: &DefaultNla) -> Vec<u8> {
    let mut value = vec![0; nla.value_len()];
    nla.emit_value(&mut value);
    value
}

fn parse_u32(value: &[u8], attr: &'static str) -> Result<u32, CodecError> {
    let bytes: [u8; 4] = value.try_into().map_err(|_| CodecError::BadLength {
        attr,
        expected: 4,
        got: value.len(),
    })?;
    Ok(u32::from_ne_bytes(bytes))
}

/// A program nest's content: attribute 1 (an fd in requests, an id in
/// seg6local dumps) and the name.
struct ProgNest {
    first: Option<u32>,
    name: String,
}

fn parse_prog(
    value: &[u8],
    name_attr: &'static str,
    first_attr: &'static str,
    within: &'static str,
) -> Result<ProgNest, CodecError> {
    let mut first = None;
    let mut name = None;
    for nla in NlasIterator::new(value) {
        let nla = nla.map_err(|e| CodecError::Malformed {
            within,
            reason: e.to_string(),
        })?;
        match nla.kind() {
            1 => first = Some(parse_u32(nla.value(), first_attr)?),
            2 => {
                // The kernel's string ends at the first NUL.
                let raw = nla.value();
                let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
                name = Some(String::from_utf8_lossy(&raw[..end]).into_owned());
            }
            _ => {}
        }
    }
    let name = name.ok_or(CodecError::MissingAttribute {
        attr: name_attr,
        within,
    })?;
    Ok(ProgNest { first, name })
}

#[cfg(test)]
mod tests {
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
        0x64, 0x00, 0x00, 0x00, 0x18, 0x00, 0x05, 0x06, 0x83, 0xd3, 0x05, 0x6b, 0x00, 0x00, 0x00,
        0x00, 0x02, 0x20, 0x00, 0x00, 0xfe, 0x03, 0xfd, 0x01, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00,
        0x01, 0x00, 0x0a, 0x00, 0x00, 0x03, 0x30, 0x00, 0x16, 0x80, 0x24, 0x00, 0x02, 0x80, 0x08,
        0x00, 0x01, 0x00, 0x06, 0x00, 0x00, 0x00, 0x15, 0x00, 0x02, 0x00, 0x64, 0x72, 0x6f, 0x70,
        0x2e, 0x6f, 0x3a, 0x5b, 0x6c, 0x77, 0x74, 0x5f, 0x6f, 0x75, 0x74, 0x5d, 0x00, 0xe1, 0x01,
        0x00, 0x08, 0x00, 0x04, 0x00, 0x0e, 0x00, 0x00, 0x00, 0x06, 0x00, 0x15, 0x00, 0x06, 0x00,
        0x00, 0x00, 0x08, 0x00, 0x04, 0x00, 0x03, 0x00, 0x00, 0x00,
    ];

    // After the route above: ip -n lwtc-7026 -4 route show 10.0.0.3
    // iproute2 prints: 10.0.0.3  encap bpf out drop.o:[lwt_out] dev veth0 scope link
    // The RTM_NEWROUTE of the dump reply for that route: the name only.
    const BPF_OUT_DUMP: &[u8] = &[
        0x5c, 0x00, 0x00, 0x00, 0x18, 0x00, 0x22, 0x00, 0x83, 0xd3, 0x05, 0x6b, 0x88, 0x1b, 0x00,
        0x00, 0x02, 0x20, 0x00, 0x00, 0xfe, 0x03, 0xfd, 0x01, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00,
        0x0f, 0x00, 0xfe, 0x00, 0x00, 0x00, 0x08, 0x00, 0x01, 0x00, 0x0a, 0x00, 0x00, 0x03, 0x08,
        0x00, 0x04, 0x00, 0x03, 0x00, 0x00, 0x00, 0x20, 0x00, 0x16, 0x00, 0x1c, 0x00, 0x02, 0x00,
        0x15, 0x00, 0x02, 0x00, 0x64, 0x72, 0x6f, 0x70, 0x2e, 0x6f, 0x3a, 0x5b, 0x6c, 0x77, 0x74,
        0x5f, 0x6f, 0x75, 0x74, 0x5d, 0x00, 0x00, 0x00, 0x00, 0x06, 0x00, 0x15, 0x00, 0x06, 0x00,
        0x00, 0x00,
    ];

    // ip -n lwtc-7026 -4 route add 10.0.0.4/32 dev veth0 \
    //     encap bpf in obj /tmp/lwtc/drop.o section lwt_in \
    //     out obj /tmp/lwtc/drop.o section lwt_out \
    //     xmit obj /tmp/lwtc/drop.o section lwt_xmit headroom 20
    // Program fds: in 6, out 8, xmit 11 (iproute2 opens the object 3 times).
    const BPF_ALL_REQUEST: &[u8] = &[
        0xa8, 0x00, 0x00, 0x00, 0x18, 0x00, 0x05, 0x06, 0x83, 0xd3, 0x05, 0x6b, 0x00, 0x00, 0x00,
        0x00, 0x02, 0x20, 0x00, 0x00, 0xfe, 0x03, 0xfd, 0x01, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00,
        0x01, 0x00, 0x0a, 0x00, 0x00, 0x04, 0x74, 0x00, 0x16, 0x80, 0x20, 0x00, 0x01, 0x80, 0x08,
        0x00, 0x01, 0x00, 0x06, 0x00, 0x00, 0x00, 0x14, 0x00, 0x02, 0x00, 0x64, 0x72, 0x6f, 0x70,
        0x2e, 0x6f, 0x3a, 0x5b, 0x6c, 0x77, 0x74, 0x5f, 0x69, 0x6e, 0x5d, 0x00, 0x24, 0x00, 0x02,
        0x80, 0x08, 0x00, 0x01, 0x00, 0x08, 0x00, 0x00, 0x00, 0x15, 0x00, 0x02, 0x00, 0x64, 0x72,
        0x6f, 0x70, 0x2e, 0x6f, 0x3a, 0x5b, 0x6c, 0x77, 0x74, 0x5f, 0x6f, 0x75, 0x74, 0x5d, 0x00,
        0x00, 0x00, 0x00, 0x24, 0x00, 0x03, 0x80, 0x08, 0x00, 0x01, 0x00, 0x0b, 0x00, 0x00, 0x00,
        0x16, 0x00, 0x02, 0x00, 0x64, 0x72, 0x6f, 0x70, 0x2e, 0x6f, 0x3a, 0x5b, 0x6c, 0x77, 0x74,
        0x5f, 0x78, 0x6d, 0x69, 0x74, 0x5d, 0x00, 0x00, 0x00, 0x08, 0x00, 0x04, 0x00, 0x14, 0x00,
        0x00, 0x00, 0x06, 0x00, 0x15, 0x00, 0x06, 0x00, 0x00, 0x00, 0x08, 0x00, 0x04, 0x00, 0x03,
        0x00, 0x00, 0x00,
    ];

    // ip -n lwtc-7026 -4 route show 10.0.0.4
    // 10.0.0.4  encap bpf in drop.o:[lwt_in] out drop.o:[lwt_out] xmit drop.o:[lwt_xmit] dev veth0 scope link
    const BPF_ALL_DUMP: &[u8] = &[
        0x90, 0x00, 0x00, 0x00, 0x18, 0x00, 0x22, 0x00, 0x83, 0xd3, 0x05, 0x6b, 0x92, 0x1b, 0x00,
        0x00, 0x02, 0x20, 0x00, 0x00, 0xfe, 0x03, 0xfd, 0x01, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00,
        0x0f, 0x00, 0xfe, 0x00, 0x00, 0x00, 0x08, 0x00, 0x01, 0x00, 0x0a, 0x00, 0x00, 0x04, 0x08,
        0x00, 0x04, 0x00, 0x03, 0x00, 0x00, 0x00, 0x54, 0x00, 0x16, 0x00, 0x18, 0x00, 0x01, 0x00,
        0x14, 0x00, 0x02, 0x00, 0x64, 0x72, 0x6f, 0x70, 0x2e, 0x6f, 0x3a, 0x5b, 0x6c, 0x77, 0x74,
        0x5f, 0x69, 0x6e, 0x5d, 0x00, 0x1c, 0x00, 0x02, 0x00, 0x15, 0x00, 0x02, 0x00, 0x64, 0x72,
        0x6f, 0x70, 0x2e, 0x6f, 0x3a, 0x5b, 0x6c, 0x77, 0x74, 0x5f, 0x6f, 0x75, 0x74, 0x5d, 0x00,
        0x00, 0x00, 0x00, 0x1c, 0x00, 0x03, 0x00, 0x16, 0x00, 0x02, 0x00, 0x64, 0x72, 0x6f, 0x70,
        0x2e, 0x6f, 0x3a, 0x5b, 0x6c, 0x77, 0x74, 0x5f, 0x78, 0x6d, 0x69, 0x74, 0x5d, 0x00, 0x00,
        0x00, 0x06, 0x00, 0x15, 0x00, 0x06, 0x00, 0x00, 0x00,
    ];

    // ip -n lwtc-7026 -6 route add fc00::1/128 encap seg6local action End.BPF \
    //     endpoint obj /tmp/lwtc/drop.o section lwt_seg6local dev veth0
    // Program fd 6.
    const END_BPF_REQUEST: &[u8] = &[
        0x74, 0x00, 0x00, 0x00, 0x18, 0x00, 0x05, 0x06, 0x83, 0xd3, 0x05, 0x6b, 0x00, 0x00, 0x00,
        0x00, 0x0a, 0x80, 0x00, 0x00, 0xfe, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00,
        0x01, 0x00, 0xfc, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x01, 0x34, 0x00, 0x16, 0x80, 0x08, 0x00, 0x01, 0x00, 0x0f, 0x00, 0x00, 0x00,
        0x28, 0x00, 0x08, 0x80, 0x08, 0x00, 0x01, 0x00, 0x06, 0x00, 0x00, 0x00, 0x1b, 0x00, 0x02,
        0x00, 0x64, 0x72, 0x6f, 0x70, 0x2e, 0x6f, 0x3a, 0x5b, 0x6c, 0x77, 0x74, 0x5f, 0x73, 0x65,
        0x67, 0x36, 0x6c, 0x6f, 0x63, 0x61, 0x6c, 0x5d, 0x00, 0x00, 0x06, 0x00, 0x15, 0x00, 0x07,
        0x00, 0x00, 0x00, 0x08, 0x00, 0x04, 0x00, 0x03, 0x00, 0x00, 0x00,
    ];

    // ip -n lwtc-7026 -6 route show fc00::1
    // fc00::1  encap seg6local action End.BPF endpoint drop.o:[lwt_seg6local] dev veth0 metric 1024 pref medium
    // SEG6_LOCAL_BPF_PROG carries the program id here (0x90 = 144), not an fd.
    const END_BPF_DUMP: &[u8] = &[
        0xb0, 0x00, 0x00, 0x00, 0x18, 0x00, 0x22, 0x00, 0x83, 0xd3, 0x05, 0x6b, 0x19, 0x1c, 0x00,
        0x00, 0x0a, 0x80, 0x00, 0x00, 0xfe, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00,
        0x0f, 0x00, 0xfe, 0x00, 0x00, 0x00, 0x14, 0x00, 0x01, 0x00, 0xfc, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x06, 0x00,
        0x00, 0x04, 0x00, 0x00, 0x08, 0x00, 0x04, 0x00, 0x03, 0x00, 0x00, 0x00, 0x34, 0x00, 0x16,
        0x00, 0x08, 0x00, 0x01, 0x00, 0x0f, 0x00, 0x00, 0x00, 0x28, 0x00, 0x08, 0x00, 0x08, 0x00,
        0x01, 0x00, 0x90, 0x00, 0x00, 0x00, 0x1b, 0x00, 0x02, 0x00, 0x64, 0x72, 0x6f, 0x70, 0x2e,
        0x6f, 0x3a, 0x5b, 0x6c, 0x77, 0x74, 0x5f, 0x73, 0x65, 0x67, 0x36, 0x6c, 0x6f, 0x63, 0x61,
        0x6c, 0x5d, 0x00, 0x00, 0x06, 0x00, 0x15, 0x00, 0x07, 0x00, 0x00, 0x00, 0x24, 0x00, 0x0c,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x05, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];

    const RTA_ENCAP: u16 = 22;
    const RTA_ENCAP_TYPE: u16 = 21;

    fn route_message(bytes: &[u8]) -> RouteMessage {
        let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes)
            .expect("captured message parses");
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
            let parsed =
                <RouteMessage as netlink_packet_core::Parseable<[u8]>>::parse(&buf).unwrap();
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
        let raw = |kind: u16, value: &[u8]| {
            RouteLwTunnelEncap::Other(DefaultNla::new(kind, value.to_vec()))
        };
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
        let ok = LwtBpf::from_encap(&[raw(9, &[1, 2, 3]), raw(1, &[8, 0, 2, 0, b'a', 0, b'z', 0])])
            .unwrap();
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
}
