//! lwtkit's errors: each names what the user got wrong or what the system
//! lacks, so the CLI can print it as is.
//!
//! Each module with failure modes of its own has its own enum, joined here
//! transparently (its sentence is the `Display`), so a library user matches
//! `Error::Attach(AttachError::Drift { .. })` or `Error::Load(LoadError::Verifier { log, .. })`.
pub use crate::{
    agent::AgentError,
    attach::AttachError,
    config::ConfigError,
    encap::{decap::DecapError, EncapError},
    events::EventsError,
    filter::FilterError,
    loader::LoadError,
    ns::StateError,
    probe::ProbeError,
    reset::ResetError,
    route::{codec::CodecError, netlink::NetlinkError},
    scaffold::ScaffoldError,
    seg6local::Seg6Error,
    system::SystemError,
    test_run::TestRunError,
    trace::TraceError,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid prefix {0}")]
    InvalidPrefix(String),
    #[error("invalid address `{0}`")]
    InvalidAddress(String),
    #[error("unknown device `{0}` in this network namespace")]
    UnknownDevice(String),
    #[error(
        "unknown routing table `{0}`: use a number, main, local, default or a name from rt_tables"
    )]
    UnknownTable(String),
    /// Loading a program: object, selection, type, verifier.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// lwtkit's records, pins and lock.
    #[error(transparent)]
    State(#[from] StateError),
    /// What the system must provide: namespace, privileges, bpffs, kernel support.
    #[error(transparent)]
    System(#[from] SystemError),
    /// Routes lwtkit would not change, or does not manage.
    #[error(transparent)]
    Attach(#[from] AttachError),
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error(transparent)]
    Encap(#[from] EncapError),
    #[error(transparent)]
    Decap(#[from] DecapError),
    #[error(transparent)]
    Seg6local(#[from] Seg6Error),
    #[error(transparent)]
    Events(#[from] EventsError),
    #[error(transparent)]
    Reset(#[from] ResetError),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(transparent)]
    Probe(#[from] ProbeError),
    /// `lwt test`: packets, refusals, test-run failures.
    #[error(transparent)]
    TestRun(#[from] TestRunError),
    /// `lwt new`: the project's name and files.
    #[error(transparent)]
    Scaffold(#[from] ScaffoldError),
    /// `lwt trace`: finding and following a route's programs.
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// A BPF encap or End.BPF attribute that cannot be built or read.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// `lwt apply`, `diff`: the config file, its plan, a change that failed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `lwt agent`: what it could not watch or serve.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// Bad input whose message names the flag (the checks of [`crate::validate`]).
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A stable word for what kind of error this is, for machines (`lwt -j`
    /// prints it next to the sentence): the module's name, or the kind of
    /// bad input.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidPrefix(_) | Error::InvalidAddress(_) | Error::Invalid(_) => "invalid",
            Error::UnknownDevice(_) => "unknown_device",
            Error::UnknownTable(_) => "unknown_table",
            Error::Load(_) => "load",
            Error::State(_) => "state",
            Error::System(_) => "system",
            Error::Attach(_) => "attach",
            Error::Filter(_) => "filter",
            Error::Encap(_) => "encap",
            Error::Decap(_) => "decap",
            Error::Seg6local(_) => "seg6local",
            Error::Events(_) => "events",
            Error::Reset(_) => "reset",
            Error::Netlink(_) => "netlink",
            Error::Probe(_) => "probe",
            Error::TestRun(_) => "test_run",
            Error::Scaffold(_) => "scaffold",
            Error::Trace(_) => "trace",
            Error::Codec(_) => "codec",
            Error::Config(_) => "config",
            Error::Agent(_) => "agent",
        }
    }
}

/// The [`Error::kind`] of the first lwtkit error in `chain` (an error and
/// its sources), whether it was joined into [`Error`] or not.
pub fn kind_of<'a>(
    chain: impl IntoIterator<Item = &'a (dyn std::error::Error + 'static)>,
) -> Option<&'static str> {
    chain.into_iter().find_map(|e| {
        macro_rules! module {
            ($($ty:ty => $kind:literal),* $(,)?) => {
                $(if e.is::<$ty>() { return Some($kind); })*
            };
        }
        if let Some(e) = e.downcast_ref::<Error>() {
            return Some(e.kind());
        }
        module!(
            LoadError => "load", StateError => "state", SystemError => "system",
            AttachError => "attach", FilterError => "filter", EncapError => "encap",
            DecapError => "decap", Seg6Error => "seg6local", EventsError => "events",
            ResetError => "reset", NetlinkError => "netlink", ProbeError => "probe",
            TestRunError => "test_run", ScaffoldError => "scaffold", TraceError => "trace",
            CodecError => "codec", ConfigError => "config", AgentError => "agent",
        );
        None
    })
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn module_errors_keep_their_sentences_and_are_matched_by_module() {
        let e: Error = AttachError::Multipath("10.0.0.0/8 table main".into()).into();
        assert_eq!(
            e.to_string(),
            "route 10.0.0.0/8 table main is a multipath route; its encaps live on each next hop, which lwtkit does not attach to"
        );
        assert!(matches!(e, Error::Attach(AttachError::Multipath(_))));
        for (is_local, text) in [
            (true, "is a local route; pass --local"),
            (false, "is not a local route; drop --local"),
        ] {
            let e = AttachError::LocalMismatch {
                route: "r".into(),
                is_local,
            };
            assert_eq!(e.to_string(), format!("route r exists and {text}"));
        }
        let e: Error = DecapError::KeyRange(1 << 32).into();
        assert_eq!(
            e.to_string(),
            "--key 4294967296 does not fit in 32 bits (0 to 4294967295)"
        );
        let e: Error = ResetError::Incomplete(vec!["a: x".into(), "b: y".into()]).into();
        assert_eq!(
            e.to_string(),
            "lwt reset left some things in place:\n  a: x\n  b: y"
        );
    }

    #[test]
    fn kinds_are_found_wherever_the_error_sits_in_the_chain() {
        let joined: Error = DecapError::KeyRange(1 << 32).into();
        assert_eq!(
            kind_of([&joined as &(dyn std::error::Error + 'static)]),
            Some("decap")
        );
        let bare = FilterError::Rule(crate::filter::RuleError::BadVerdict("x".into()));
        assert_eq!(
            kind_of([&bare as &(dyn std::error::Error + 'static)]),
            Some("filter")
        );
        let io = std::io::Error::other("x");
        assert_eq!(kind_of([&io as &(dyn std::error::Error + 'static)]), None);
        assert_eq!(Error::UnknownDevice("x".into()).kind(), "unknown_device");
    }

    #[test]
    fn no_module_error_repeats_its_cause_as_a_source() {
        // `lwt` prints the whole chain ({:#}): a sentence that already says
        // its cause must not carry it again as a source.
        let kernel = || NetlinkError::Kernel {
            errno: libc::EINVAL,
            message: None,
        };
        let errors: [Error; 4] = [
            AttachError::Route {
                route: "r".into(),
                reason: kernel(),
            }
            .into(),
            FilterError::Rule(crate::filter::RuleError::BadVerdict("x".into())).into(),
            SystemError::Cookie(std::io::Error::from_raw_os_error(libc::EPERM)).into(),
            LoadError::Failed {
                program: "p".into(),
                reason: "r".into(),
            }
            .into(),
        ];
        for e in errors {
            assert!(e.source().is_none(), "{e}");
        }
    }
}
