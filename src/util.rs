//! Small helpers shared by modules: atomic file writes and the per-user cache folder.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Write a file atomically: a temporary file beside it, flushed to disk, then renamed over it
/// and the rename flushed, so an interrupted write (or a power cut) never leaves a half-written
/// file in place of a good one. The one way fastdet writes weights, states, configs and results.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |tmp| std::fs::write(tmp, bytes).map_err(|e| Error::io(tmp, e)))
}

/// [`write_atomic`] for a writer that takes a path (tch's `VarStore::save`): `write` fills the
/// temporary file, whose name ends in `path`'s own name (its extension picks tch's format);
/// then it is synced and renamed over `path`, and the folder synced. A failed write removes the
/// temporary file and leaves `path` as it was.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".tmp-{}-{name}", std::process::id()));
    let written = write(&tmp).and_then(|()| {
        // The data on disk before the rename makes it visible.
        let f = std::fs::File::open(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })?;
    sync_dir(dir)
}

/// The rename on disk: a folder's entries are flushed by syncing the folder itself (Unix; a
/// no-op elsewhere).
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(dir, e))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// The per-user cache every clone shares (`$FASTDET_CACHE`, else `$XDG_CACHE_HOME/fastdet`,
/// else `~/.cache/fastdet`; `out/` when none of them is set).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("FASTDET_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|p| PathBuf::from(p).join("fastdet")))
        .or_else(|| std::env::var_os("HOME").map(|p| PathBuf::from(p).join(".cache").join("fastdet")))
        .unwrap_or_else(|| PathBuf::from("out"))
}

/// The fastdet source tree this was built from (its `data/`, `models/`, `examples/`). A build
/// against another PyTorch (`scripts/torch_build.sh`) compiles these sources from a generated
/// manifest under `build/` and names the tree in `FASTDET_ROOT` at compile time.
pub fn crate_root() -> PathBuf {
    PathBuf::from(option_env!("FASTDET_ROOT").unwrap_or(env!("CARGO_MANIFEST_DIR")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn write_atomic_replaces_and_a_failed_write_keeps_the_old_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("sub").join("a.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let e = write_atomic_with(&path, |t| {
            std::fs::write(t, b"half").unwrap();
            Err(Error::Invalid("interrupted".into()))
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "interrupted");
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        // The temporary file ends in the target's name (tch picks the format by extension) and is gone.
        write_atomic_with(&path, |t| {
            assert!(t.file_name().unwrap().to_string_lossy().ends_with("-a.json"));
            std::fs::write(t, b"three").map_err(|e| Error::io(t, e))
        })
        .unwrap();
        assert_eq!(names(path.parent().unwrap()), vec!["a.json"]);
    }
}
