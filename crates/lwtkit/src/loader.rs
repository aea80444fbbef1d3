//! Loads an LWT program with libbpf (from an object file, an embedded
//! built-in, or a bpffs pin), checks it fits the hook, and pins it under
//! lwtkit's own bpffs directory.
use std::{
    os::fd::{AsFd, BorrowedFd, OwnedFd},
    path::{Path, PathBuf},
    sync::Mutex,
};

use libbpf_rs::{
    MapCore, Object, ObjectBuilder, OpenObject, PrintLevel, ProgramHandle, ProgramType,
};
use lwtkit_common::{
    maps as map_names,
    pins::program::{COUNTERS, PROG},
};

use crate::{
    builtin,
    error::{Error, Result, StateError},
    hook::Hook,
    route::codec::MAX_PROG_NAME,
    state::{HookRecord, Origin},
};

/// Why a program could not be loaded. A verifier rejection carries the
/// tail of the verifier's log.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("object file {path}: {reason}")]
    Object { path: PathBuf, reason: String },
    /// No program, or several, fit what was asked for.
    #[error("{0}")]
    ProgramSelection(String),
    #[error("program `{program}` is of type {found}, but hook `{hook}` needs {expected}{hint}")]
    WrongProgramType {
        program: String,
        hook: Hook,
        found: String,
        expected: String,
        hint: &'static str,
    },
    #[error("the kernel verifier rejected program `{program}`: {reason}\n--- verifier log (tail) ---\n{log}")]
    Verifier {
        program: String,
        reason: String,
        log: String,
    },
    /// libbpf or the kernel refused the object or program otherwise.
    #[error("loading program `{program}` failed: {reason}")]
    Failed { program: String, reason: String },
    #[error("program name `{name}` is {len} bytes; the kernel accepts at most 255 (rename the object or section)")]
    ProgramNameTooLong { name: String, len: usize },
    /// The name, and the built-ins that are known.
    #[error("unknown built-in program `{0}`; built-ins: {1}")]
    UnknownBuiltin(String, String),
}

/// Where the program to attach comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProgramSource {
    /// A BPF object file; without `section` or `program`, the program whose
    /// section matches the hook, or the object's only program.
    Object {
        path: PathBuf,
        section: Option<String>,
        program: Option<String>,
        prog_type: Option<Hook>,
    },
    /// A program already pinned on bpffs.
    Pinned(PathBuf),
    /// One of lwtkit's built-ins, as a feature (or `--builtin`) specifies it.
    Builtin(BuiltinSpec),
    /// A program lwtkit already attached elsewhere (pinned), to share
    /// under its existing route name and origin.
    Shared {
        pin: PathBuf,
        name: String,
        origin: Origin,
    },
}

/// One instance of an embedded built-in: which object, the maps it shares
/// with other programs, the constants it is built with, the name the route
/// carries and the origin `lwt list` reports. Features build these
/// (`filter::store::Policies::program`, `encap`); the loader knows none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuiltinSpec {
    /// The embedded object ([`builtin::find`]).
    pub name: String,
    /// The route name before `:[<section>]#<id>`: `lwtkit-filter-web`.
    pub route_name: String,
    /// (map name, pin path): maps reused from their pins instead of
    /// created; the others are the instance's own (its counters).
    pub maps_to_reuse: Vec<(String, PathBuf)>,
    /// (data section, bytes): initial values of read-only data sections,
    /// which the verifier sees as constants of this instance.
    pub constants: Vec<(String, Vec<u8>)>,
    pub origin: Origin,
}

impl BuiltinSpec {
    /// A built-in that runs on its own maps (`lwt attach --builtin count`),
    /// named `lwtkit-<name>` on the route. Only the built-ins `--builtin`
    /// takes are accepted.
    pub fn standalone(name: &str) -> Result<Self> {
        builtin::find(name)
            .filter(|b| b.standalone)
            .ok_or_else(|| LoadError::UnknownBuiltin(name.into(), builtin::names()))?;
        Ok(Self {
            name: name.into(),
            route_name: format!("lwtkit-{name}"),
            maps_to_reuse: Vec::new(),
            constants: Vec::new(),
            origin: Origin::Builtin { name: name.into() },
        })
    }
}

/// A program loaded in the kernel, ready to be attached and pinned.
pub struct LoadedProgram {
    fd: OwnedFd,
    /// The name the route will carry.
    pub route_name: String,
    pub origin: Origin,
    /// SHA-256 (hex) of the object file it came from (objects only).
    pub object_sha256: Option<String>,
    /// Kept alive so the counters map can be pinned.
    object: Option<Object>,
    counters_map: Option<&'static str>,
}

impl LoadedProgram {
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Whether [`LoadedProgram::pin`] pins a counters map beside the
    /// program (known before pinning, for the intent that announces it).
    pub fn has_counters(&self) -> bool {
        match (&self.object, self.counters_map) {
            (Some(obj), Some(name)) => obj.maps().any(|m| m.name() == name),
            _ => false,
        }
    }

    /// Pins the program (and its counters map) in `dir`.
    pub fn pin(&mut self, dir: &Path) -> Result<HookRecord> {
        let pin = dir.join(PROG);
        let _ = std::fs::remove_file(&pin);
        pin_fd(self.fd.as_fd(), &pin)?;
        tracing::debug!(
            "kernel: pinned program {} at {}",
            self.route_name,
            pin.display()
        );
        let mut counters = None;
        if let (Some(obj), Some(map_name)) = (self.object.as_mut(), self.counters_map) {
            if let Some(mut map) = obj.maps_mut().find(|m| m.name() == map_name) {
                let path = dir.join(COUNTERS);
                let _ = std::fs::remove_file(&path);
                map.pin(&path).map_err(|e| pin_err(&path, e))?;
                counters = Some(path);
            }
        }
        Ok(HookRecord {
            name: self.route_name.clone(),
            pin,
            counters,
            origin: self.origin.clone(),
            object_sha256: self.object_sha256.clone(),
        })
    }
}

fn pin_err(path: &Path, e: libbpf_rs::Error) -> Error {
    StateError::Io {
        path: path.into(),
        reason: format!("cannot pin: {e}"),
    }
    .into()
}

/// Pins the program behind `fd` at `path` (bpf_obj_pin).
fn pin_fd(fd: BorrowedFd<'_>, path: &Path) -> Result<()> {
    use std::os::{fd::AsRawFd, unix::ffi::OsStrExt};
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::Invalid(format!("pin path {} contains NUL", path.display())))?;
    // SAFETY: a valid fd and NUL-terminated path for the duration of the call.
    let rc = unsafe { libbpf_rs::libbpf_sys::bpf_obj_pin(fd.as_raw_fd(), c.as_ptr()) };
    if rc != 0 {
        return Err(StateError::Io {
            path: path.into(),
            reason: format!("cannot pin: {}", std::io::Error::from_raw_os_error(-rc)),
        }
        .into());
    }
    Ok(())
}

/// Loads the program `source` describes for `hook`.
pub fn load(source: &ProgramSource, hook: Hook) -> Result<LoadedProgram> {
    let loaded = load_any(source, hook)?;
    tracing::debug!("kernel: loaded program {} for {hook:?}", loaded.route_name);
    Ok(loaded)
}

fn load_any(source: &ProgramSource, hook: Hook) -> Result<LoadedProgram> {
    if let ProgramSource::Shared { pin, name, origin } = source {
        let handle = ProgramHandle::from_pinned_path(pin)
            .map_err(|_| StateError::MissingPin(pin.clone()))?;
        if handle.prog_type() != hook.prog_type() {
            return Err(LoadError::WrongProgramType {
                program: name.clone(),
                hook,
                found: prog_type_name(handle.prog_type()),
                expected: prog_type_name(hook.prog_type()),
                hint: "",
            }
            .into());
        }
        let fd = handle
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| LoadError::Failed {
                program: name.clone(),
                reason: e.to_string(),
            })?;
        return Ok(LoadedProgram {
            fd,
            route_name: name.clone(),
            origin: origin.clone(),
            object_sha256: None,
            object: None,
            counters_map: None,
        });
    }
    let mut loaded = load_source(source, hook)?;
    // The kernel compares BPF encaps by name and lets IPv4 routes with equal
    // next hops share one: a name unique to this program keeps each route on
    // its own program (and a re-attach from being mistaken for the old one).
    let id = libbpf_rs::Program::id_from_fd(loaded.fd.as_fd()).map_err(|e| LoadError::Failed {
        program: loaded.route_name.clone(),
        reason: e.to_string(),
    })?;
    loaded.route_name = format!("{}#{id}", loaded.route_name);
    check_name(&loaded.route_name)?;
    Ok(loaded)
}

fn load_source(source: &ProgramSource, hook: Hook) -> Result<LoadedProgram> {
    match source {
        ProgramSource::Builtin(spec) => load_builtin(spec, hook),
        ProgramSource::Object {
            path,
            section,
            program,
            prog_type,
        } => load_object_file(
            path,
            section.as_deref(),
            program.as_deref(),
            *prog_type,
            hook,
        ),
        ProgramSource::Pinned(path) => load_pinned(path, hook),
        ProgramSource::Shared { .. } => unreachable!("shared programs are handled by `load`"),
    }
}

/// The built-in `spec` names, for `hook`: its shared maps reused from their
/// pins, its constants set, its own maps (counters) created.
fn load_builtin(spec: &BuiltinSpec, hook: Hook) -> Result<LoadedProgram> {
    let name = spec.name.as_str();
    let b = builtin::find(name)
        .ok_or_else(|| LoadError::UnknownBuiltin(name.into(), builtin::names()))?;
    let entry = b.entry(hook).ok_or_else(|| {
        LoadError::ProgramSelection(format!(
            "built-in `{name}` has no program for hook `{hook}`"
        ))
    })?;
    let route_name = format!("{}:[{}]", spec.route_name, hook.section());
    check_name(&route_name)?;
    // libbpf parses the ELF in place; give it an owned, malloc-aligned copy.
    let bytes = b.object().to_vec();
    let log = LibbpfLog::capture();
    let open = ObjectBuilder::default()
        .name(format!("lwtkit-{name}"))
        .and_then(|o| o.open_memory(&bytes));
    let messages = log.finish();
    let mut open = open.map_err(|e| LoadError::Failed {
        program: route_name.clone(),
        reason: format!("{e}: {}", last_line(&messages)),
    })?;
    prepare_maps(&mut open, spec, &route_name)?;
    let (object, fd) = load_one(open, entry, hook.prog_type(), &route_name)?;
    Ok(LoadedProgram {
        fd,
        route_name,
        origin: spec.origin.clone(),
        object_sha256: None,
        object: Some(object),
        counters_map: b.counters_map,
    })
}

/// Sets `spec`'s constants and points its shared maps at their pins, in
/// an object not loaded yet.
fn prepare_maps(open: &mut OpenObject, spec: &BuiltinSpec, route_name: &str) -> Result<()> {
    let mut unset: Vec<&str> = spec.constants.iter().map(|(n, _)| n.as_str()).collect();
    for mut m in open.maps_mut() {
        let map_name = m.name().to_string_lossy().into_owned();
        if let Some((section, bytes)) = spec.constants.iter().find(|(n, _)| *n == map_name) {
            // libbpf refuses a value of another size than the section's.
            m.set_initial_value(bytes).map_err(|e| LoadError::Failed {
                program: route_name.into(),
                reason: format!("setting {section}: {e}"),
            })?;
            unset.retain(|n| n != section);
            continue;
        }
        let Some((_, pin)) = spec.maps_to_reuse.iter().find(|(n, _)| *n == map_name) else {
            continue;
        };
        m.reuse_pinned_map(pin)
            .map_err(|_| StateError::MissingPin(pin.clone()))?;
    }
    if let Some(section) = unset.first() {
        return Err(LoadError::Failed {
            program: route_name.into(),
            reason: format!("the object has no {section} section to set"),
        }
        .into());
    }
    Ok(())
}

/// SHA-256 (hex) of the object file at `path`: what `lwt apply` compares
/// with the digest recorded at attach to see a file rebuilt in place.
pub fn object_digest(path: &Path) -> Result<String> {
    let err = |reason: String| LoadError::Object {
        path: path.into(),
        reason,
    };
    // As `select_in_file` says it.
    if !path.is_file() {
        return Err(err("no such file".into()).into());
    }
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    Ok(digest_hex(&bytes))
}

fn digest_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Which program of the object file `attach` would load for `hook`, and
/// its type, checked without loading anything: `lwt apply` validates a
/// whole file this way before it changes anything.
pub fn resolve_object(
    path: &Path,
    section: Option<&str>,
    program: Option<&str>,
    prog_type: Option<Hook>,
    hook: Hook,
) -> Result<String> {
    let (_, chosen, _) = select_in_file(path, section, program, prog_type, hook)?;
    Ok(chosen.section)
}

/// Opens `path` and picks the program for `hook`: the object (not
/// loaded), the program and the type to load it as.
fn select_in_file(
    path: &Path,
    section: Option<&str>,
    program: Option<&str>,
    prog_type: Option<Hook>,
    hook: Hook,
) -> Result<(OpenObject, ObjProgram, ProgramType)> {
    let obj_err = |reason: String| LoadError::Object {
        path: path.into(),
        reason,
    };
    if !path.is_file() {
        return Err(obj_err("no such file".into()).into());
    }
    let log = LibbpfLog::capture();
    let opened = ObjectBuilder::default().open_file(path);
    let messages = log.finish();
    let open = opened.map_err(|e| {
        let detail = last_line(&messages);
        obj_err(format!(
            "not a loadable BPF object: {e}{}{detail}",
            if detail.is_empty() { "" } else { ": " }
        ))
    })?;
    let programs: Vec<ObjProgram> = open
        .progs()
        .map(|p| ObjProgram {
            name: p.name().to_string_lossy().into_owned(),
            section: p.section().to_string_lossy().into_owned(),
            prog_type: p.prog_type(),
        })
        .collect();
    let chosen = select_program(&programs, section, program, hook)
        .map_err(&obj_err)?
        .clone();

    let ty = match prog_type {
        Some(forced) => forced.prog_type(),
        None if chosen.prog_type == ProgramType::Unspec => {
            return Err(obj_err(format!(
                "section `{}` is not one libbpf knows, so the program type is unknown; pass --prog-type {}",
                chosen.section,
                hook.section()
            )).into())
        }
        None => chosen.prog_type,
    };
    if ty != hook.prog_type() {
        // Forcing an LWT type is only sensible for another LWT program.
        let hint = if Hook::from_prog_type(ty).is_some() {
            "; pick the program for this hook with --section/--program (or --prog-type if its section name is custom)"
        } else {
            "; it is not an LWT program at all"
        };
        return Err(LoadError::WrongProgramType {
            program: chosen.name.clone(),
            hook,
            found: prog_type_name(ty),
            expected: prog_type_name(hook.prog_type()),
            hint,
        }
        .into());
    }
    Ok((open, chosen, ty))
}

fn load_object_file(
    path: &Path,
    section: Option<&str>,
    program: Option<&str>,
    prog_type: Option<Hook>,
    hook: Hook,
) -> Result<LoadedProgram> {
    // Read before the file is opened: a rebuild in between then shows as
    // a changed file to the next `lwt apply`, never as the same one.
    let object_sha256 = Some(object_digest(path)?);
    let (mut open, chosen, ty) = select_in_file(path, section, program, prog_type, hook)?;
    let base = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let route_name = format!("{base}:[{}]", chosen.section);
    check_name(&format!("{route_name}#{}", u32::MAX))?;
    for mut p in open.progs_mut() {
        p.set_autoload(p.name().to_string_lossy() == chosen.name);
    }
    let (object, fd) = load_one(open, &chosen.name, ty, &route_name)?;
    Ok(LoadedProgram {
        fd,
        route_name,
        origin: Origin::Object {
            path: absolute(path),
            section: chosen.section.clone(),
        },
        object_sha256,
        object: Some(object),
        counters_map: None,
    })
}

fn load_pinned(path: &Path, hook: Hook) -> Result<LoadedProgram> {
    let handle =
        ProgramHandle::from_pinned_path(path).map_err(|_| StateError::MissingPin(path.into()))?;
    if handle.prog_type() != hook.prog_type() {
        return Err(LoadError::WrongProgramType {
            program: path.display().to_string(),
            hook,
            found: prog_type_name(handle.prog_type()),
            expected: prog_type_name(hook.prog_type()),
            hint: "",
        }
        .into());
    }
    let base = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let route_name = format!("{base}:[pinned]");
    check_name(&format!("{route_name}#{}", u32::MAX))?;
    let fd = handle
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| StateError::MissingPin(PathBuf::from(format!("{} ({e})", path.display()))))?;
    Ok(LoadedProgram {
        fd,
        route_name,
        origin: Origin::Pinned {
            path: absolute(path),
        },
        object_sha256: None,
        object: None,
        counters_map: None,
    })
}

/// A program for a seg6local `End.BPF` route: of type `lwt_seg6local`, on
/// no hook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndBpfSource {
    /// Program `entry` of a built-in, named `<route_name>:[lwt_seg6local]`
    /// on the route; `values` (map name, key, value) are written into its
    /// maps after load.
    Builtin {
        spec: BuiltinSpec,
        entry: String,
        values: Vec<(String, Vec<u8>, Vec<u8>)>,
    },
    /// A program of an object file: the one in `section` (by default
    /// `lwt_seg6local`), or the object's only program. It must be of type
    /// `lwt_seg6local` by its section, unless `force_type` loads it as one
    /// anyway (the verifier then judges it).
    Object {
        path: PathBuf,
        section: Option<String>,
        force_type: bool,
    },
}

/// Loads the End.BPF program `source` describes.
pub fn load_seg6local(source: &EndBpfSource) -> Result<LoadedProgram> {
    const SECTION: &str = map_names::sections::LWT_SEG6LOCAL;
    let (bytes, label, entry, origin, counters_map) = match source {
        EndBpfSource::Builtin { spec, entry, .. } => {
            let b = builtin::find(&spec.name)
                .ok_or_else(|| LoadError::UnknownBuiltin(spec.name.clone(), builtin::names()))?;
            (
                b.object().to_vec(),
                spec.route_name.clone(),
                entry.clone(),
                spec.origin.clone(),
                b.counters_map,
            )
        }
        EndBpfSource::Object {
            path,
            section,
            force_type,
        } => {
            let (bytes, chosen) = select_seg6local(path, section.as_deref(), *force_type)?;
            let (name, sec) = (chosen.name.clone(), chosen.section.clone());
            let base = path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            (
                bytes,
                format!("{base}:[{sec}]"),
                name,
                Origin::Object {
                    path: absolute(path),
                    section: sec,
                },
                None,
            )
        }
    };
    let log = LibbpfLog::capture();
    let opened = ObjectBuilder::default().open_memory(&bytes);
    let messages = log.finish();
    let mut open = opened.map_err(|e| LoadError::Failed {
        program: label.clone(),
        reason: format!("{e}: {}", last_line(&messages)),
    })?;
    if let EndBpfSource::Builtin { spec, .. } = source {
        prepare_maps(&mut open, spec, &label)?;
    }
    let (object, fd) = load_one(open, &entry, ProgramType::LwtSeg6local, &label)?;
    if let EndBpfSource::Builtin { values, .. } = source {
        for (map, key, value) in values {
            let m = object
                .maps()
                .find(|m| m.name().to_string_lossy() == *map)
                .ok_or_else(|| LoadError::Failed {
                    program: label.clone(),
                    reason: format!("the object has no map {map}"),
                })?;
            m.update(key, value, libbpf_rs::MapFlags::ANY)
                .map_err(|e| LoadError::Failed {
                    program: label.clone(),
                    reason: format!("setting {map}: {e}"),
                })?;
        }
    }
    let id = libbpf_rs::Program::id_from_fd(fd.as_fd()).map_err(|e| LoadError::Failed {
        program: label.clone(),
        reason: e.to_string(),
    })?;
    let route_name = match source {
        EndBpfSource::Builtin { .. } => format!("{label}:[{SECTION}]#{id}"),
        EndBpfSource::Object { .. } => format!("{label}#{id}"),
    };
    check_name(&route_name)?;
    let object_sha256 = match source {
        EndBpfSource::Object { .. } => Some(digest_hex(&bytes)),
        EndBpfSource::Builtin { .. } => None,
    };
    Ok(LoadedProgram {
        fd,
        route_name,
        origin,
        object_sha256,
        object: Some(object),
        counters_map,
    })
}

/// The End.BPF program of the object file `path` that `seg6local add`
/// would load, checked without loading it: its section.
pub fn resolve_seg6local_object(
    path: &Path,
    section: Option<&str>,
    force_type: bool,
) -> Result<String> {
    Ok(select_seg6local(path, section, force_type)?.1.section)
}

/// Reads `path` and picks its End.BPF program: the bytes and the program.
fn select_seg6local(
    path: &Path,
    section: Option<&str>,
    force_type: bool,
) -> Result<(Vec<u8>, ObjProgram)> {
    const SECTION: &str = map_names::sections::LWT_SEG6LOCAL;
    let obj_err = |reason: String| LoadError::Object {
        path: path.into(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| obj_err(e.to_string()))?;
    let log = LibbpfLog::capture();
    let opened = ObjectBuilder::default().open_memory(&bytes);
    let messages = log.finish();
    let open = opened.map_err(|e| {
        obj_err(format!(
            "not a loadable BPF object: {e}: {}",
            last_line(&messages)
        ))
    })?;
    let programs: Vec<ObjProgram> = open
        .progs()
        .map(|p| ObjProgram {
            name: p.name().to_string_lossy().into_owned(),
            section: p.section().to_string_lossy().into_owned(),
            prog_type: p.prog_type(),
        })
        .collect();
    let want = section.unwrap_or(SECTION);
    let matching: Vec<&ObjProgram> = programs.iter().filter(|p| p.section == want).collect();
    let chosen = match (matching.as_slice(), programs.as_slice()) {
        ([one], _) => *one,
        ([], [only]) if section.is_none() => only,
        ([], _) => return Err(obj_err(format!("section `{want}` not found")).into()),
        (many, _) => {
            return Err(obj_err(format!(
                "section `{want}` holds several programs: {}",
                many.iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .into())
        }
    };
    check_seg6local_type(chosen, force_type).map_err(&obj_err)?;
    let chosen = chosen.clone();
    Ok((bytes, chosen))
}

/// Checks that `path` pins a program of `hook`'s type (nothing is loaded).
pub fn check_pinned(path: &Path, hook: Hook) -> Result<()> {
    load_pinned(path, hook).map(|_| ())
}

/// An End.BPF program must be `lwt_seg6local`: the kernel takes only that
/// type on the route (`bpf_prog_get_type`), but a program of another type
/// loaded as one passes the verifier and then misreads the return codes
/// (XDP_PASS is 2, BPF_DROP there). So the type the section gives is
/// required, unless the user forces it.
fn check_seg6local_type(p: &ObjProgram, force_type: bool) -> std::result::Result<(), String> {
    if force_type || p.prog_type == ProgramType::LwtSeg6local {
        return Ok(());
    }
    if p.prog_type == ProgramType::Unspec {
        return Err(format!(
            "program `{}` is in section `{}`, which libbpf does not know, so its type is unknown; End.BPF needs lwt_seg6local: pass --prog-type lwt_seg6local if it is one",
            p.name, p.section
        ));
    }
    Err(format!(
        "program `{}` is of type {}, but End.BPF needs lwt_seg6local (its return codes mean something else there); pass --prog-type lwt_seg6local only if it really is an End.BPF program in a misnamed section",
        p.name,
        prog_type_name(p.prog_type)
    ))
}

/// Program names that go on the route: the kernel takes at most 255 bytes.
pub fn check_name(name: &str) -> Result<()> {
    if name.len() > MAX_PROG_NAME {
        return Err(LoadError::ProgramNameTooLong {
            name: name.into(),
            len: name.len(),
        }
        .into());
    }
    Ok(())
}

#[derive(Clone, Debug)]
struct ObjProgram {
    name: String,
    section: String,
    prog_type: ProgramType,
}

/// Picks the program to attach, or says why it cannot.
fn select_program<'a>(
    programs: &'a [ObjProgram],
    section: Option<&str>,
    program: Option<&str>,
    hook: Hook,
) -> std::result::Result<&'a ObjProgram, String> {
    let listing = || {
        programs
            .iter()
            .map(|p| format!("{} [{}]", p.name, p.section))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if programs.is_empty() {
        return Err("contains no BPF programs".into());
    }
    let pick = |matches: Vec<&'a ObjProgram>, what: String| match matches.len() {
        1 => Ok(matches[0]),
        0 => Err(format!("{what} not found; programs: {}", listing())),
        _ => Err(format!(
            "{what} is ambiguous: {}; choose one with --program",
            matches
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    };
    match (section, program) {
        (_, Some(name)) => {
            let found = programs
                .iter()
                .filter(|p| p.name == name && section.is_none_or(|s| p.section == s));
            pick(found.collect(), format!("program `{name}`"))
        }
        (Some(s), None) => pick(
            programs.iter().filter(|p| p.section == s).collect(),
            format!("section `{s}`"),
        ),
        (None, None) => {
            let for_hook: Vec<_> = programs
                .iter()
                .filter(|p| p.section == hook.section())
                .collect();
            match for_hook.len() {
                0 if programs.len() == 1 => Ok(&programs[0]),
                0 => Err(format!(
                    "no program in section `{}` and several programs to choose from: {}; choose with --section or --program",
                    hook.section(),
                    listing()
                )),
                _ => pick(for_hook, format!("section `{}`", hook.section())),
            }
        }
    }
}

/// Loads the one program `entry` of `open` as `ty` and returns the object
/// with an owned fd of the program. Verifier failures carry the log's tail.
fn load_one(
    mut open: OpenObject,
    entry: &str,
    ty: ProgramType,
    label: &str,
) -> Result<(Object, OwnedFd)> {
    for mut p in open.progs_mut() {
        let is_entry = p.name().to_string_lossy() == entry;
        p.set_autoload(is_entry);
        if is_entry {
            p.set_prog_type(ty);
        }
    }
    let log = LibbpfLog::capture();
    let loaded = open.load();
    let messages = log.finish();
    let object = loaded.map_err(|e| load_error(label, &e, &messages))?;
    let fd = object
        .progs()
        .find(|p| p.name().to_string_lossy() == entry)
        .ok_or_else(|| LoadError::Failed {
            program: label.into(),
            reason: "program vanished after load".into(),
        })?
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| LoadError::Failed {
            program: label.into(),
            reason: e.to_string(),
        })?;
    Ok((object, fd))
}

fn load_error(label: &str, e: &libbpf_rs::Error, messages: &str) -> Error {
    match verifier_log_tail(messages, 30) {
        Some(log) => LoadError::Verifier {
            program: label.into(),
            reason: e.to_string(),
            log,
        }
        .into(),
        None => {
            let detail = last_line(messages);
            LoadError::Failed {
                program: label.into(),
                reason: format!("{e}{}{detail}", if detail.is_empty() { "" } else { ": " }),
            }
            .into()
        }
    }
}

/// The last `lines` lines of the verifier log libbpf printed between its
/// BEGIN/END PROG LOAD LOG markers.
pub fn verifier_log_tail(messages: &str, lines: usize) -> Option<String> {
    let start = messages.find("-- BEGIN PROG LOAD LOG --")?;
    let body = &messages[start..];
    let body = body
        .split_once('\n')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let body = body.split("-- END PROG LOAD LOG --").next().unwrap_or(body);
    let all: Vec<&str> = body.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = &all[all.len().saturating_sub(lines)..];
    Some(tail.join("\n"))
}

/// The last non-empty line libbpf printed, trimmed of its `libbpf: ` prefix.
pub(crate) fn last_line(messages: &str) -> &str {
    let line = messages
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or_default();
    line.strip_prefix("libbpf: ").unwrap_or(line).trim()
}

fn prog_type_name(ty: ProgramType) -> String {
    match Hook::from_prog_type(ty) {
        Some(h) => h.section().to_string(),
        None if ty == ProgramType::LwtSeg6local => "lwt_seg6local".into(),
        None => format!("{ty:?}").to_lowercase(),
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Collects what libbpf prints while one load runs.
static LIBBPF_MESSAGES: Mutex<String> = Mutex::new(String::new());

pub(crate) struct LibbpfLog;

impl LibbpfLog {
    pub(crate) fn capture() -> Self {
        fn collect(_level: PrintLevel, msg: String) {
            if let Ok(mut m) = LIBBPF_MESSAGES.lock() {
                m.push_str(&msg);
            }
        }
        if let Ok(mut m) = LIBBPF_MESSAGES.lock() {
            m.clear();
        }
        libbpf_rs::set_print(Some((PrintLevel::Debug, collect)));
        LibbpfLog
    }

    pub(crate) fn finish(self) -> String {
        libbpf_rs::set_print(None);
        LIBBPF_MESSAGES
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prog(name: &str, section: &str) -> ObjProgram {
        ObjProgram {
            name: name.into(),
            section: section.into(),
            prog_type: ProgramType::Unspec,
        }
    }

    #[test]
    fn selects_the_section_matching_the_hook() {
        let progs = [
            prog("a", "lwt_in"),
            prog("b", "lwt_out"),
            prog("c", "lwt_xmit"),
        ];
        assert_eq!(
            select_program(&progs, None, None, Hook::Out).map(|p| p.name.as_str()),
            Ok("b")
        );
        assert_eq!(
            select_program(&progs, Some("lwt_xmit"), None, Hook::Out).map(|p| p.name.as_str()),
            Ok("c")
        );
        assert_eq!(
            select_program(&progs, None, Some("a"), Hook::Out).map(|p| p.name.as_str()),
            Ok("a")
        );
        let err = select_program(&progs, Some("nope"), None, Hook::Out).expect_err("missing");
        assert!(err.contains("section `nope` not found"), "{err}");
    }

    #[test]
    fn a_lone_program_is_taken_and_ambiguity_is_named() {
        let lone = [prog("only", "my_custom")];
        assert_eq!(
            select_program(&lone, None, None, Hook::Xmit).map(|p| p.name.as_str()),
            Ok("only")
        );
        let two = [prog("x", "custom1"), prog("y", "custom2")];
        let err = select_program(&two, None, None, Hook::Xmit).expect_err("ambiguous");
        assert!(
            err.contains("x [custom1]") && err.contains("--section"),
            "{err}"
        );
        let same = [prog("x", "lwt_out"), prog("y", "lwt_out")];
        let err = select_program(&same, None, None, Hook::Out).expect_err("ambiguous");
        assert!(err.contains("ambiguous"), "{err}");
    }

    #[test]
    fn verifier_tail_keeps_the_end_of_the_log() {
        let msgs = "libbpf: prog 'p': BPF program load failed: Permission denied\nlibbpf: prog 'p': -- BEGIN PROG LOAD LOG --\n0: R1=ctx()\n1: (b7) r0 = 0\nR0 !read_ok\n-- END PROG LOAD LOG --\nlibbpf: failed\n";
        assert_eq!(
            verifier_log_tail(msgs, 2).as_deref(),
            Some("1: (b7) r0 = 0\nR0 !read_ok")
        );
        assert_eq!(verifier_log_tail("no log here", 5), None);
    }

    #[test]
    fn end_bpf_takes_only_lwt_seg6local_unless_forced() {
        let typed = |ty| ObjProgram {
            name: "p".into(),
            section: "s".into(),
            prog_type: ty,
        };
        assert!(check_seg6local_type(&typed(ProgramType::LwtSeg6local), false).is_ok());
        let err = check_seg6local_type(&typed(ProgramType::Xdp), false).expect_err("xdp");
        assert!(
            err.contains("`p`")
                && err.contains("type xdp")
                && err.contains("--prog-type lwt_seg6local"),
            "{err}"
        );
        let err = check_seg6local_type(&typed(ProgramType::Unspec), false).expect_err("unknown");
        assert!(
            err.contains("section `s`") && err.contains("--prog-type"),
            "{err}"
        );
        for ty in [ProgramType::Xdp, ProgramType::Unspec, ProgramType::LwtIn] {
            assert!(check_seg6local_type(&typed(ty), true).is_ok());
        }
    }

    #[test]
    fn by_name_only_the_standalone_builtins_are_taken() {
        let count = BuiltinSpec::standalone("count").expect("count runs alone");
        assert_eq!(count.route_name, "lwtkit-count");
        assert!(count.maps_to_reuse.is_empty() && count.constants.is_empty());
        assert_eq!(count.origin.owner(), crate::state::Owner::Attach);
        // The filter and the encapsulation need a feature's maps.
        for name in ["filter", "encap", "nosuch"] {
            assert!(
                matches!(
                    BuiltinSpec::standalone(name),
                    Err(Error::Load(LoadError::UnknownBuiltin(..)))
                ),
                "{name}"
            );
        }
    }

    #[test]
    fn long_names_are_refused() {
        assert!(check_name(&"a".repeat(255)).is_ok());
        assert!(matches!(
            check_name(&"a".repeat(256)),
            Err(Error::Load(LoadError::ProgramNameTooLong { len: 256, .. }))
        ));
    }
}
