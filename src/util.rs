//! Small helpers shared by modules: atomic file writes and the per-user cache folder.

use crate::error::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Write a file atomically: a temporary file beside it, flushed to disk, then renamed over it,
/// so an interrupted write never leaves a half-written file in place of a good one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(&tmp, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
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
