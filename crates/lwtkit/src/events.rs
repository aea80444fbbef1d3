//! `lwt events`: reads the ring buffer the filter's `log` rules write to,
//! decodes each record, and optionally writes the captured bytes as pcap
//! (raw IP link type, so tcpdump and tshark read it as is).
use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use libbpf_rs::{MapHandle, RingBufferBuilder};
use lwtkit_common::filter::{event_verdict, Event, EVENT_SNAPLEN, NO_RULE};
use serde::Serialize;

use crate::{
    error::{Error, Result, StateError},
    filter::store::Policies,
    hook::Hook,
    state::NetnsState,
    system,
};

/// Why events cannot be followed or written.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("no lwtkit filter events: bpffs is not mounted")]
    NoBpffs,
    /// No policy, so no event ring buffer.
    #[error("no filter policy exists in this namespace, so there are no events to follow (`lwt filter create`)")]
    NoPolicy,
    #[error("pcap file {path}: {reason}")]
    PcapFile { path: PathBuf, reason: String },
    #[error("writing pcap: {0}")]
    PcapWrite(String),
}

/// One decoded event.
#[derive(Clone, Debug, Serialize)]
pub struct EventRecord {
    /// Wall-clock time, seconds since the epoch.
    pub time: f64,
    pub hook: Hook,
    pub policy: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<u32>,
    pub verdict: &'static str,
    pub proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub len: u32,
    /// The first bytes of the packet from L3 (hex in JSON).
    #[serde(serialize_with = "hex")]
    pub data: Vec<u8>,
}

fn hex<S: serde::Serializer>(data: &[u8], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&data.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// Decodes a raw ring-buffer record (native layout of [`Event`]).
pub fn decode(
    raw: &[u8],
    policies: &HashMap<u32, String>,
    mono_to_wall: f64,
) -> Option<EventRecord> {
    if raw.len() < size_of::<Event>() {
        return None;
    }
    // SAFETY: the record is an Event written by the kernel program; read unaligned.
    let ev: Event = unsafe { std::ptr::read_unaligned(raw.as_ptr().cast::<Event>()) };
    let addr = |b: [u8; 16]| -> IpAddr {
        if ev.family == 6 {
            IpAddr::V6(Ipv6Addr::from(b))
        } else {
            IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
        }
    };
    let caplen = (ev.caplen as usize).min(EVENT_SNAPLEN);
    Some(EventRecord {
        time: mono_to_wall + ev.time_ns as f64 / 1e9,
        hook: [Hook::In, Hook::Out, Hook::Xmit]
            .get(usize::from(ev.hook))
            .copied()
            .unwrap_or(Hook::Out),
        policy: policies
            .get(&ev.policy_id)
            .cloned()
            .unwrap_or_else(|| format!("#{}", ev.policy_id)),
        rule: (ev.rule_id != NO_RULE).then_some(ev.rule_id),
        verdict: match ev.verdict {
            event_verdict::DROP => "drop",
            event_verdict::TRANSLATED => "translated",
            event_verdict::REROUTED => "rerouted",
            event_verdict::REDIRECTED => "redirected",
            event_verdict::FAILED => "failed",
            event_verdict::LOOP => "loop",
            event_verdict::MARKED => "marked",
            _ => "allow",
        },
        proto: ev.proto,
        src: addr(ev.src),
        dst: addr(ev.dst),
        sport: ev.sport,
        dport: ev.dport,
        len: ev.len,
        data: ev.data[..caplen].to_vec(),
    })
}

/// Seconds to add to a CLOCK_MONOTONIC reading (the kernel's ktime) to get
/// wall-clock time.
pub(crate) fn monotonic_offset() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let mono = ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9;
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    wall - mono
}

/// When to stop following.
#[derive(Clone, Copy, Debug, Default)]
pub struct Until {
    pub count: Option<usize>,
    pub timeout: Option<Duration>,
}

/// Follows the namespace's events, calling `on_event` for each, until
/// `until` is met (or forever). Returns how many were seen.
pub fn follow(until: Until, mut on_event: impl FnMut(EventRecord) -> Result<()>) -> Result<usize> {
    // lwtkit's records and pins are root's: say so, not "nothing here".
    system::require_attach_privileges("lwt events")?;
    // Following for no event or no time would only ever report nothing.
    if until.count == Some(0) {
        return Err(Error::Invalid(
            "--count 0 is out of range: stop after 1 or more events".into(),
        ));
    }
    if until.timeout.is_some_and(|t| t.is_zero()) {
        return Err(Error::Invalid(
            "--timeout 0 is out of range: follow for more than 0 seconds".into(),
        ));
    }
    let bpffs = Path::new(system::BPFFS);
    if !system::is_bpffs(bpffs) {
        return Err(EventsError::NoBpffs.into());
    }
    let (policies, pin) = {
        let state = NetnsState::open_existing(bpffs)?.ok_or(EventsError::NoPolicy)?;
        let p = Policies::new(&state);
        let names: HashMap<u32, String> = p.all()?.into_iter().map(|p| (p.id, p.name)).collect();
        (names, p.events_pin())
    };
    let map = MapHandle::from_pinned_path(&pin).map_err(|_| EventsError::NoPolicy)?;
    let offset = monotonic_offset();
    let seen = std::cell::Cell::new(0usize);
    let draining = std::cell::Cell::new(false);
    let failure: std::cell::RefCell<Option<Error>> = std::cell::RefCell::new(None);
    let want = until.count.unwrap_or(usize::MAX);
    {
        let mut builder = RingBufferBuilder::new();
        builder
            .add(&map, |raw: &[u8]| {
                if draining.get() || seen.get() >= want || failure.borrow().is_some() {
                    return 0;
                }
                if let Some(ev) = decode(raw, &policies, offset) {
                    seen.set(seen.get() + 1);
                    if let Err(e) = on_event(ev) {
                        *failure.borrow_mut() = Some(e);
                        return -1;
                    }
                }
                0
            })
            .map_err(|e| StateError::Io {
                path: pin.clone(),
                reason: e.to_string(),
            })?;
        let rb = builder.build().map_err(|e| StateError::Io {
            path: pin.clone(),
            reason: e.to_string(),
        })?;
        // Follow what happens from now on: drop what waited in the ring
        // (the read position is shared and survives between followers).
        draining.set(true);
        let _ = rb.consume();
        draining.set(false);
        let start = Instant::now();
        loop {
            let left = until.timeout.map(|t| t.saturating_sub(start.elapsed()));
            if seen.get() >= want || left.is_some_and(|l| l.is_zero()) || failure.borrow().is_some()
            {
                break;
            }
            let wait = left
                .unwrap_or(Duration::from_millis(200))
                .min(Duration::from_millis(200));
            let _ = rb.poll(wait);
        }
    }
    match failure.into_inner() {
        Some(e) => Err(e),
        None => Ok(seen.get()),
    }
}

/// Writes events' bytes as a pcap file with link type RAW (IPv4/IPv6 from L3).
pub struct PcapSink {
    /// Unbuffered: an interrupted `lwt events` still leaves whole records.
    writer: pcap_file::pcap::PcapWriter<std::fs::File>,
}

impl PcapSink {
    pub fn create(path: &Path) -> Result<Self> {
        let pcap_err = |e: &dyn std::fmt::Display| EventsError::PcapFile {
            path: path.into(),
            reason: e.to_string(),
        };
        let file = std::fs::File::create(path).map_err(|e| pcap_err(&e))?;
        let header = pcap_file::pcap::PcapHeader {
            datalink: pcap_file::DataLink::RAW,
            snaplen: EVENT_SNAPLEN as u32,
            ..Default::default()
        };
        let writer =
            pcap_file::pcap::PcapWriter::with_header(file, header).map_err(|e| pcap_err(&e))?;
        Ok(Self { writer })
    }

    pub fn write(&mut self, ev: &EventRecord) -> Result<()> {
        let ts = Duration::from_secs_f64(ev.time.max(0.0));
        let packet = pcap_file::pcap::PcapPacket::new(ts, ev.len, &ev.data);
        self.writer
            .write_packet(&packet)
            .map_err(|e| EventsError::PcapWrite(e.to_string()))?;
        Ok(())
    }

    pub fn finish(self) -> Result<()> {
        let mut inner = self.writer.into_writer();
        std::io::Write::flush(&mut inner).map_err(|e| EventsError::PcapWrite(e.to_string()).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_decode_from_kernel_layout() {
        let mut ev = Event {
            time_ns: 2_000_000_000,
            policy_id: 3,
            rule_id: 7,
            hook: 1,
            verdict: 1,
            family: 4,
            proto: 6,
            sport: 40000,
            dport: 8080,
            len: 60,
            caplen: 4,
            src: [0; 16],
            dst: [0; 16],
            data: [0; EVENT_SNAPLEN],
        };
        ev.src[..4].copy_from_slice(&[10, 0, 0, 2]);
        ev.dst[..4].copy_from_slice(&[10, 0, 0, 3]);
        ev.data[..4].copy_from_slice(&[0x45, 0, 0, 60]);
        // SAFETY: Event is plain data.
        let raw = unsafe {
            std::slice::from_raw_parts((&ev as *const Event).cast::<u8>(), size_of::<Event>())
        };
        let names = HashMap::from([(3, "web".to_string())]);
        let rec = decode(raw, &names, 100.0).expect("decodes");
        assert_eq!(rec.policy, "web");
        assert_eq!(rec.rule, Some(7));
        assert_eq!(rec.hook, Hook::Out);
        assert_eq!(rec.verdict, "drop");
        assert_eq!(rec.dst, "10.0.0.3".parse::<IpAddr>().expect("ip"));
        assert_eq!(rec.data, vec![0x45, 0, 0, 60]);
        assert!((rec.time - 102.0).abs() < 1e-9);
        assert!(decode(&raw[..100], &names, 0.0).is_none());
    }
}
