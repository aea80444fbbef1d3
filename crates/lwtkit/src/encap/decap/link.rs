//! The decapsulator's tcx link: attaching it pinned, and telling whether a
//! pinned link still serves the device of that name. When a device is
//! deleted, the kernel detaches its tcx links but the pin keeps the link
//! object: it then reports ifindex 0 (`tcx_link_fill_info`). A device
//! created again under the same name gets a new ifindex and no program.
use std::{ffi::CString, path::Path};

use libbpf_rs::{
    query::{LinkTypeInfo, TcxLinkInfo},
    AsRawLibbpf, Link, Program,
};

/// What a pinned link says about the device named `dev` (index `index`,
/// `None` if there is no such device now).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// Attached to the device of that name.
    Attached,
    /// Not attached to it, and why.
    Defunct(String),
}

pub fn state(pin: &Path, dev: &str, index: Option<u32>) -> LinkState {
    let info = Link::open(pin).and_then(|l| l.info());
    let linked = match info {
        Ok(i) => match i.info {
            LinkTypeInfo::Tcx(TcxLinkInfo { ifindex, .. }) => ifindex,
            _ => return LinkState::Defunct("the pinned link is not a tcx link".into()),
        },
        Err(_) => return LinkState::Defunct("its pinned link is missing".into()),
    };
    match (linked, index) {
        (0, None) => LinkState::Defunct(format!("{dev} was deleted")),
        (0, Some(_)) => LinkState::Defunct(format!(
            "{dev} was deleted and created again; run `lwt decap add` again"
        )),
        (l, Some(i)) if l == i => LinkState::Attached,
        (l, _) => LinkState::Defunct(format!(
            "the program is attached to ifindex {l}, not to {dev}; run `lwt decap add` again"
        )),
    }
}

/// Attaches `prog` to device `index` at tcx ingress and pins the link at
/// `pin`, so it stays attached after this process exits.
pub fn attach_pinned(
    prog: &Program<'_>,
    index: u32,
    pin: &Path,
) -> std::result::Result<(), String> {
    let pin_c = CString::new(pin.to_string_lossy().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: attaching a loaded program through libbpf; the link is
    // pinned, then disconnected so freeing it leaves it attached (the pin
    // holds it). If pinning fails, freeing it closes the last reference
    // and the kernel detaches it.
    unsafe {
        let opts = libbpf_rs::libbpf_sys::bpf_tcx_opts {
            sz: size_of::<libbpf_rs::libbpf_sys::bpf_tcx_opts>() as _,
            ..Default::default()
        };
        let link = libbpf_rs::libbpf_sys::bpf_program__attach_tcx(
            prog.as_libbpf_object().as_ptr(),
            index as i32,
            &opts,
        );
        if link.is_null() || (link as isize) < 0 && (link as isize) > -4096 {
            return Err(format!(
                "attaching at tcx ingress: {}",
                std::io::Error::last_os_error()
            ));
        }
        let rc = libbpf_rs::libbpf_sys::bpf_link__pin(link, pin_c.as_ptr());
        if rc == 0 {
            libbpf_rs::libbpf_sys::bpf_link__disconnect(link);
        }
        libbpf_rs::libbpf_sys::bpf_link__destroy(link);
        if rc != 0 {
            return Err(format!(
                "pinning the link: {}",
                std::io::Error::from_raw_os_error(-rc)
            ));
        }
    }
    tracing::debug!(
        "kernel: tcx ingress link on ifindex {index}, pinned at {}",
        pin.display()
    );
    Ok(())
}
