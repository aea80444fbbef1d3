//! Offsets of kernel structure fields, read from the running kernel's BTF
//! (`/sys/kernel/btf/vmlinux`), for the tracing programs that read
//! `sk_buff`, `dst_entry` and friends without CO-RE relocations.
use std::ffi::{CStr, CString};

use libbpf_rs::libbpf_sys;
use lwtkit_common::trace::TraceConfig;

use super::TraceError;

const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_TYPE_TAG: u32 = 18;

/// The kernel's BTF, freed on drop.
struct Vmlinux(*mut libbpf_sys::btf);

impl Drop for Vmlinux {
    fn drop(&mut self) {
        // SAFETY: loaded by btf__load_vmlinux_btf, freed once.
        unsafe { libbpf_sys::btf__free(self.0) };
    }
}

impl Vmlinux {
    fn load() -> Result<Self, TraceError> {
        // SAFETY: no arguments; returns a pointer or an error pointer.
        let btf = unsafe { libbpf_sys::btf__load_vmlinux_btf() };
        if btf.is_null() || (btf as isize) < 0 && (btf as isize) > -4096 {
            return Err(TraceError::NoBtf);
        }
        Ok(Self(btf))
    }

    fn ty(&self, id: u32) -> Option<&libbpf_sys::btf_type> {
        // SAFETY: the pointer lives as long as self.
        unsafe { libbpf_sys::btf__type_by_id(self.0, id).as_ref() }
    }

    fn name(&self, off: u32) -> String {
        // SAFETY: as above; NUL-terminated string in the BTF's string table.
        let p = unsafe { libbpf_sys::btf__name_by_offset(self.0, off) };
        if p.is_null() {
            return String::new();
        }
        // SAFETY: non-null, NUL-terminated.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }

    fn struct_id(&self, name: &str) -> Option<u32> {
        let c = CString::new(name).ok()?;
        // SAFETY: valid BTF and C string.
        let id = unsafe { libbpf_sys::btf__find_by_name_kind(self.0, c.as_ptr(), KIND_STRUCT) };
        u32::try_from(id).ok()
    }

    /// Follows typedefs and qualifiers to the type they name.
    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..16 {
            let Some(t) = self.ty(id) else { return id };
            match kind(t) {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    // SAFETY: for these kinds the union holds a type id.
                    id = unsafe { t.__bindgen_anon_1.type_ };
                }
                _ => return id,
            }
        }
        id
    }

    /// Byte offset of `field` in struct/union `id`, looking into anonymous
    /// members; with the field's type id.
    fn member(&self, id: u32, field: &str) -> Option<(u32, u32)> {
        let t = self.ty(id)?;
        if !matches!(kind(t), KIND_STRUCT | KIND_UNION) {
            return None;
        }
        let vlen = (t.info & 0xffff) as usize;
        let kflag = t.info >> 31 == 1;
        // SAFETY: a struct's members follow its btf_type in the BTF data.
        let members = unsafe {
            std::slice::from_raw_parts(
                (t as *const libbpf_sys::btf_type).add(1) as *const libbpf_sys::btf_member,
                vlen,
            )
        };
        for m in members {
            let bits = if kflag {
                m.offset & 0x00ff_ffff
            } else {
                m.offset
            };
            let name = self.name(m.name_off);
            if name == field {
                return Some((bits / 8, m.type_));
            }
            if name.is_empty() {
                if let Some((off, ty)) = self.member(self.resolve(m.type_), field) {
                    return Some((bits / 8 + off, ty));
                }
            }
        }
        None
    }

    /// Offset of `path` (fields, each inside the previous) from struct `name`.
    fn offset(&self, name: &str, path: &[&str]) -> Result<u32, TraceError> {
        let missing = || TraceError::KernelLayout(format!("{name}.{}", path.join(".")));
        let mut id = self.struct_id(name).ok_or_else(missing)?;
        let mut total = 0;
        for field in path {
            let (off, ty) = self.member(id, field).ok_or_else(missing)?;
            total += off;
            id = self.resolve(ty);
        }
        Ok(total)
    }
}

fn kind(t: &libbpf_sys::btf_type) -> u32 {
    (t.info >> 24) & 0x1f
}

/// The offsets the tracing programs need, for this kernel.
pub fn offsets() -> Result<TraceConfig, TraceError> {
    let btf = Vmlinux::load()?;
    Ok(TraceConfig {
        skb_data: btf.offset("sk_buff", &["data"])?,
        skb_len: btf.offset("sk_buff", &["len"])?,
        skb_refdst: btf.offset("sk_buff", &["_skb_refdst"])?,
        dst_dev: btf.offset("dst_entry", &["dev"])?,
        dst_lwtstate: btf.offset("dst_entry", &["lwtstate"])?,
        dev_nd_net: btf.offset("net_device", &["nd_net", "net"])?,
        net_inum: btf.offset("net", &["ns", "inum"])?,
        lwt_data: btf.offset("lwtunnel_state", &["data"])?,
        prog_aux: btf.offset("bpf_prog", &["aux"])?,
        aux_id: btf.offset("bpf_prog_aux", &["id"])?,
        lwt_type: btf.offset("lwtunnel_state", &["type"])?,
        skb_dev: btf.offset("sk_buff", &["dev"])?,
        dev_ifindex: btf.offset("net_device", &["ifindex"])?,
        skb_iif: btf.offset("sk_buff", &["skb_iif"])?,
        skb_head: btf.offset("sk_buff", &["head"])?,
        skb_network_header: btf.offset("sk_buff", &["network_header"])?,
        ..TraceConfig::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_of_this_kernel_are_found_and_plausible() {
        if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
            eprintln!("SKIPPED: no kernel BTF");
            return;
        }
        let o = offsets().expect("offsets");
        // sk_buff starts with next/prev (or an rb_node): data is far in.
        assert!(o.skb_data > 100 && o.skb_len > 50, "{o:?}");
        assert_eq!(o.lwt_data % 4, 0);
        assert!(o.net_inum > 0, "{o:?}");
        assert!(o.skb_refdst > 0 && o.dev_ifindex > 0, "{o:?}");
    }
}
