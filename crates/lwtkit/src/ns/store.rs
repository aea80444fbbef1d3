//! Records on disk: one JSON file per object, replaced atomically (write
//! to a private temporary file, fsync, rename), readable and writable by
//! root only (directories 0700, files 0600). A reader sees a record whole
//! or not at all, so readers need no lock.
use std::{
    fs::{self, DirBuilder, File, OpenOptions},
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Error, Result, StateError};

/// Something lwtkit keeps one file of per object, in its own directory of
/// the namespace's state (`routes/`, `filters/`, `encap/`, ...).
pub trait Record: Serialize + DeserializeOwned {
    /// The directory, under the namespace's state directory.
    const DIR: &'static str;
    /// The file name (without `.json`): plain, unique within `DIR`.
    fn key(&self) -> String;
}

pub(crate) fn state_err(path: &Path, e: impl std::fmt::Display) -> Error {
    StateError::Io {
        path: path.into(),
        reason: e.to_string(),
    }
    .into()
}

/// Creates `dir` and its missing parents, 0700.
pub(crate) fn ensure_dir(dir: &Path) -> Result<()> {
    let make = || DirBuilder::new().recursive(true).mode(0o700).create(dir);
    // A collector may remove an empty root between two levels: once more.
    make()
        .or_else(|e| match e.kind() {
            std::io::ErrorKind::NotFound => make(),
            _ => Err(e),
        })
        .map_err(|e| state_err(dir, e))
}

/// Creates `dir` 0700, and makes an existing one 0700 (older lwtkit
/// versions made their directories world-readable).
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    ensure_dir(dir)?;
    let meta = fs::metadata(dir).map_err(|e| state_err(dir, e))?;
    if meta.permissions().mode() & 0o777 != 0o700 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| state_err(dir, e))?;
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically, 0600.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    if let Some(parent) = path.parent() {
        ensure_dir(parent)?;
    }
    let tmp = path.with_extension(format!(
        "tmp.{}.{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let write = || -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        // The rename itself must survive too where the file system keeps anything.
        if let Some(parent) = path.parent() {
            File::open(parent)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        state_err(path, e)
    })
}

pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| state_err(path, e))?;
    write_atomic(path, &bytes)
}

/// Reads a record; `None` when it does not exist.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| state_err(path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(state_err(path, e)),
    }
}

/// Every `*.json` record of `dir`, sorted by file name.
pub(crate) fn read_all<T: DeserializeOwned>(dir: &Path) -> Result<Vec<T>> {
    let mut paths: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(state_err(dir, e)),
    };
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        // A record removed between the listing and the read is simply gone.
        if let Some(r) = read_json(&p)? {
            out.push(r);
        }
    }
    Ok(out)
}

/// Removes a file; a missing one is already removed.
pub(crate) fn remove_file(path: &Path) -> Result<()> {
    tracing::trace!("removing {}", path.display());
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(state_err(path, e)),
        _ => Ok(()),
    }
}

/// Removes a directory tree; a missing one is already removed.
pub(crate) fn remove_tree(path: &Path) -> Result<()> {
    tracing::debug!("removing {} (pins or records)", path.display());
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(state_err(path, e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn records_are_private_and_replaced_whole() {
        let dir = std::env::temp_dir().join(format!("lwtkit-store-{}", std::process::id()));
        let path = dir.join("a/b.json");
        write_json(&path, &vec![1, 2, 3]).expect("write");
        write_json(&path, &vec![4]).expect("rewrite");
        assert_eq!(read_json::<Vec<u32>>(&path).expect("read"), Some(vec![4]));
        let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.join("a")), 0o700);
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.join("a")).expect("list").count(), 1);
        assert_eq!(
            read_all::<Vec<u32>>(&dir.join("a")).expect("all"),
            vec![vec![4]]
        );
        assert_eq!(
            read_json::<Vec<u32>>(&dir.join("none.json")).expect("read"),
            None
        );
        remove_tree(&dir).expect("cleanup");
        remove_tree(&dir).expect("idempotent");
    }
}
