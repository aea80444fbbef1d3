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
#[path = "codec_tests.rs"]
mod tests;
