//! Atomic file writes: write `.NAME.part` beside the target, fsync, rename, fsync the directory.
//!
//! A reader never sees a half-written file under the final name: it sees the old content, the new
//! content, or nothing.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The temporary name used while `path` is being written: `.NAME.part` in the same directory.
pub fn part_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.part"))
}

/// Writes `bytes` to `path` atomically with permission bits `mode` (applied exactly, whatever the
/// umask).
pub fn write(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let part = part_path(path);
    remove_if_exists(&part)?;
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&part)?;
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&part, path)?;
        sync_dir(path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    result
}

/// Fsyncs the directory holding `path`, so a rename in it is durable.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

/// Removes `path`; a missing file is not an error.
pub fn remove_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_with_exact_mode_and_leaves_no_part() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f.json");
        std::fs::write(part_path(&target), b"stale").unwrap();
        write(&target, b"one", 0o440).unwrap();
        write(&target, b"two", 0o440).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"two");
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o440);
        assert!(!part_path(&target).exists());
        assert_eq!(part_path(&target), dir.path().join(".f.json.part"));
    }
}
