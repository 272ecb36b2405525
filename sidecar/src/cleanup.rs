//! The files the sidecar must remove when it ends: `.part` files in progress, plaintext outputs
//! and FIFOs. Paths are registered *before* they are created, so a fetch cancelled at any await
//! point leaves nothing the sweep does not know about.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A set of paths to remove on shutdown.
#[derive(Debug, Default)]
pub struct Cleanup {
    paths: Mutex<BTreeSet<PathBuf>>,
}

impl Cleanup {
    /// Creates an empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `path` (call before creating it).
    pub fn register(&self, path: &Path) {
        self.lock().insert(path.to_owned());
    }

    /// Removes `path` from the set (it was renamed away or must survive the sidecar).
    pub fn forget(&self, path: &Path) {
        self.lock().remove(path);
    }

    /// Whether `path` is registered.
    pub fn contains(&self, path: &Path) -> bool {
        self.lock().contains(path)
    }

    /// Removes every registered path that exists; returns how many were removed. Errors other
    /// than "not found" are logged and the path stays registered.
    pub fn sweep(&self) -> usize {
        let mut paths = self.lock();
        let mut removed = 0;
        paths.retain(|path| match std::fs::remove_file(path) {
            Ok(()) => {
                removed += 1;
                false
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove file on shutdown");
                true
            }
        });
        removed
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<PathBuf>> {
        self.paths
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_registered_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        for p in [&a, &b, &c] {
            std::fs::write(p, b"x").unwrap();
        }
        let cleanup = Cleanup::new();
        cleanup.register(&a);
        cleanup.register(&b);
        cleanup.register(&dir.path().join("never-created"));
        cleanup.forget(&b);
        assert_eq!(cleanup.sweep(), 1);
        assert!(!a.exists() && b.exists() && c.exists());
        assert_eq!(cleanup.sweep(), 0);
    }
}
