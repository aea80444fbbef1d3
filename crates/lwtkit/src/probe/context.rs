//! The `__sk_buff` fields a program type may read and write, and whether it
//! may read and write packet data directly: each probed by loading a program
//! that makes exactly that one access.
use serde::Serialize;

use super::{
    insn::{self, Insn, Verdict},
    ProbeError,
};

/// `struct __sk_buff` (include/uapi/linux/bpf.h): (name, offset, size).
/// Arrays are listed element by element.
pub const SK_BUFF_FIELDS: &[(&str, u16, u8)] = &[
    ("len", 0, 4),
    ("pkt_type", 4, 4),
    ("mark", 8, 4),
    ("queue_mapping", 12, 4),
    ("protocol", 16, 4),
    ("vlan_present", 20, 4),
    ("vlan_tci", 24, 4),
    ("vlan_proto", 28, 4),
    ("priority", 32, 4),
    ("ingress_ifindex", 36, 4),
    ("ifindex", 40, 4),
    ("tc_index", 44, 4),
    ("cb[0]", 48, 4),
    ("cb[1]", 52, 4),
    ("cb[2]", 56, 4),
    ("cb[3]", 60, 4),
    ("cb[4]", 64, 4),
    ("hash", 68, 4),
    ("tc_classid", 72, 4),
    ("data", 76, 4),
    ("data_end", 80, 4),
    ("napi_id", 84, 4),
    ("family", 88, 4),
    ("remote_ip4", 92, 4),
    ("local_ip4", 96, 4),
    ("remote_ip6[0]", 100, 4),
    ("remote_ip6[1]", 104, 4),
    ("remote_ip6[2]", 108, 4),
    ("remote_ip6[3]", 112, 4),
    ("local_ip6[0]", 116, 4),
    ("local_ip6[1]", 120, 4),
    ("local_ip6[2]", 124, 4),
    ("local_ip6[3]", 128, 4),
    ("remote_port", 132, 4),
    ("local_port", 136, 4),
    ("data_meta", 140, 4),
    ("flow_keys", 144, 8),
    ("tstamp", 152, 8),
    ("wire_len", 160, 4),
    ("gso_segs", 164, 4),
    ("sk", 168, 8),
    ("gso_size", 176, 4),
    ("tstamp_type", 180, 1),
    ("hwtstamp", 184, 8),
];

const DATA: i16 = 76;
const DATA_END: i16 = 80;

/// What a program type may do with its context and packet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Context {
    /// Loads through `skb->data` .. `skb->data_end`.
    pub direct_packet_read: bool,
    /// Stores through `skb->data` (packet rewriting without helpers).
    pub direct_packet_write: bool,
    /// Field name -> access, in `struct __sk_buff` order.
    #[serde(serialize_with = "super::ordered_map")]
    pub fields: Vec<(String, FieldAccess)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct FieldAccess {
    pub read: bool,
    pub write: bool,
}

impl Context {
    /// The access to field `name`, if it is one.
    pub fn field(&self, name: &str) -> Option<FieldAccess> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, a)| *a)
    }
}

fn read_probe(off: u16, size: u8) -> Vec<Insn> {
    vec![
        insn::load(size, 0, 1, off as i16),
        insn::mov_imm(0, 0),
        insn::exit(),
    ]
}

fn write_probe(off: u16, size: u8) -> Vec<Insn> {
    vec![
        insn::mov_imm(2, 0),
        insn::store(size, 1, 2, off as i16),
        insn::mov_imm(0, 0),
        insn::exit(),
    ]
}

/// One byte at `data`, bounds-checked against `data_end`.
fn packet_probe(write: bool) -> Vec<Insn> {
    let access = if write {
        insn::store(1, 2, 5, 0)
    } else {
        insn::load(1, 5, 2, 0)
    };
    vec![
        insn::load(4, 2, 1, DATA),
        insn::load(4, 3, 1, DATA_END),
        insn::mov_reg(4, 2),
        insn::add_imm(4, 1),
        insn::mov_imm(5, 0),
        insn::jgt_reg(4, 3, 1),
        access,
        insn::mov_imm(0, 0),
        insn::exit(),
    ]
}

/// Whether `prog_type` accepts `insns`; an error that is not the
/// verifier's refusal ends the probe.
pub(super) fn accepts(prog_type: u32, insns: &[Insn]) -> Result<bool, ProbeError> {
    match insn::try_load(prog_type, insns) {
        Verdict::Accepted(_fd) => Ok(true),
        Verdict::Refused => Ok(false),
        Verdict::Error(e) => Err(ProbeError::from_load(e)),
    }
}

pub(super) fn probe(prog_type: u32) -> Result<Context, ProbeError> {
    let mut fields = Vec::with_capacity(SK_BUFF_FIELDS.len());
    for &(name, off, size) in SK_BUFF_FIELDS {
        let access = FieldAccess {
            read: accepts(prog_type, &read_probe(off, size))?,
            write: accepts(prog_type, &write_probe(off, size))?,
        };
        fields.push((name.to_string(), access));
    }
    Ok(Context {
        direct_packet_read: accepts(prog_type, &packet_probe(false))?,
        direct_packet_write: accepts(prog_type, &packet_probe(true))?,
        fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_tile_struct_sk_buff_without_gaps_or_overlaps() {
        let mut end = 0u16;
        for &(name, off, size) in SK_BUFF_FIELDS {
            // tstamp_type (u8) is followed by 3 bytes of padding.
            let expected = if name == "hwtstamp" { 184 } else { end };
            assert_eq!(off, expected, "{name}");
            end = off + size as u16;
        }
        assert_eq!(end, 192, "sizeof(struct __sk_buff)");
    }
}
