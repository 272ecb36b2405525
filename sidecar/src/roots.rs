//! Where inputs may be written: path validation against the allowed roots.
//!
//! A destination path must be absolute and already normalized (no `.`, `..`, `//` or trailing
//! `/`), lie strictly below one allowed root, and stay below it after resolving symlinks in its
//! existing ancestors; the destination itself must not be a symlink or a directory.
//!
//! The allowed roots are either given explicitly (`--input-root`, repeatable; env
//! `C4GH_INPUT_ROOTS`, comma-separated) or, by default, derived from the container's mount table
//! (`/proc/self/mountinfo`): every mount point except the root file system and system locations
//! (`/proc`, `/sys`, `/dev`, `/etc`, `/run`, `/var/run`, `/c4gh` — the key, CA and credential
//! volumes — and the key directory). In a pod this means: an input must land on a volume the
//! operator mounted for it, never on the image's file system, a credential volume or the key
//! volume.

use std::io;
use std::path::{Component, Path, PathBuf};

/// System locations that are never input roots, even when they are mount points.
const SYSTEM_PREFIXES: &[&str] = &[
    "/proc",
    "/sys",
    "/dev",
    "/etc",
    "/run",
    "/var/run",
    c4gh_contract::pod::RESERVED_DIR,
];

/// Why a destination path was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// The path is relative.
    #[error("path {path} is not absolute")]
    NotAbsolute {
        /// The path.
        path: PathBuf,
    },
    /// The path contains `.`, `..`, repeated or trailing separators.
    #[error("path {path} is not normalized (no \".\", \"..\", \"//\" or trailing \"/\" allowed)")]
    NotNormalized {
        /// The path.
        path: PathBuf,
    },
    /// The path is not strictly below any allowed root.
    #[error(
        "path {path} is not below an allowed input root ({roots}); mount a volume there or pass --input-root"
    )]
    OutsideRoots {
        /// The path.
        path: PathBuf,
        /// The allowed roots, comma-separated.
        roots: String,
    },
    /// A symlink in an existing ancestor leads outside the root.
    #[error("path {path} resolves to {resolved} through a symlink, outside its root {root}")]
    SymlinkEscape {
        /// The path.
        path: PathBuf,
        /// Where its existing ancestor resolves to.
        resolved: PathBuf,
        /// The root the path was checked against.
        root: PathBuf,
    },
    /// The destination exists and is a symlink or a directory.
    #[error("path {path} exists and is a {kind}; inputs are written as regular files or FIFOs")]
    BadExisting {
        /// The path.
        path: PathBuf,
        /// "symlink" or "directory".
        kind: &'static str,
    },
    /// The file system could not be inspected.
    #[error("cannot inspect {path}: {source}")]
    Io {
        /// The path inspected.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// The allowed roots for input destinations.
#[derive(Debug, Clone)]
pub struct Roots {
    roots: Vec<PathBuf>,
}

impl Roots {
    /// Explicit roots. Each must be absolute and normalized.
    pub fn explicit(roots: Vec<PathBuf>) -> Result<Self, PathError> {
        for root in &roots {
            normalized(root)?;
        }
        Ok(Roots { roots })
    }

    /// Roots from a mount table in `/proc/self/mountinfo` format, excluding `/`, system
    /// locations and `exclude` (the key directory) with everything under them.
    pub fn from_mountinfo(mountinfo: &str, exclude: &[&Path]) -> Self {
        let mut roots: Vec<PathBuf> = mountinfo
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .map(|p| PathBuf::from(unescape_mount(p)))
            .filter(|p| p != Path::new("/"))
            .filter(|p| !SYSTEM_PREFIXES.iter().any(|s| p.starts_with(s)))
            .filter(|p| !exclude.iter().any(|e| p.starts_with(e) || e.starts_with(p)))
            .collect();
        roots.sort();
        roots.dedup();
        Roots { roots }
    }

    /// Roots from this process's mount table.
    pub fn from_own_mounts(exclude: &[&Path]) -> Result<Self, PathError> {
        let path = Path::new("/proc/self/mountinfo");
        let text = std::fs::read_to_string(path).map_err(|source| PathError::Io {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self::from_mountinfo(&text, exclude))
    }

    /// The roots, for logging.
    pub fn as_slice(&self) -> &[PathBuf] {
        &self.roots
    }

    /// Checks a destination path; returns the root it belongs to (the longest matching one).
    ///
    /// Missing parent directories are allowed (the fetcher creates them below the root).
    pub fn check(&self, path: &Path) -> Result<PathBuf, PathError> {
        normalized(path)?;
        let root = self
            .roots
            .iter()
            .filter(|r| path.starts_with(r) && path != r.as_path())
            .max_by_key(|r| r.as_os_str().len())
            .ok_or_else(|| PathError::OutsideRoots {
                path: path.to_owned(),
                roots: self.display_roots(),
            })?;
        let canonical_root = canonicalize(root)?;
        let mut ancestor = path.parent();
        while let Some(dir) = ancestor {
            match std::fs::canonicalize(dir) {
                Ok(resolved) => {
                    if !resolved.starts_with(&canonical_root) {
                        return Err(PathError::SymlinkEscape {
                            path: path.to_owned(),
                            resolved,
                            root: root.clone(),
                        });
                    }
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && dir != root.as_path() => {
                    ancestor = dir.parent();
                }
                Err(source) => {
                    return Err(PathError::Io {
                        path: dir.to_owned(),
                        source,
                    });
                }
            }
        }
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_symlink() => Err(PathError::BadExisting {
                path: path.to_owned(),
                kind: "symlink",
            }),
            Ok(meta) if meta.is_dir() => Err(PathError::BadExisting {
                path: path.to_owned(),
                kind: "directory",
            }),
            Ok(_) => Ok(root.clone()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(root.clone()),
            Err(source) => Err(PathError::Io {
                path: path.to_owned(),
                source,
            }),
        }
    }

    fn display_roots(&self) -> String {
        if self.roots.is_empty() {
            return "none".into();
        }
        self.roots
            .iter()
            .map(|r| r.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn canonicalize(path: &Path) -> Result<PathBuf, PathError> {
    std::fs::canonicalize(path).map_err(|source| PathError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Checks that `path` is absolute and written in normal form.
fn normalized(path: &Path) -> Result<(), PathError> {
    if !path.is_absolute() {
        return Err(PathError::NotAbsolute {
            path: path.to_owned(),
        });
    }
    let rebuilt: PathBuf = path.components().collect();
    let has_dots = path
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir));
    let text = path.as_os_str().as_encoded_bytes();
    let trailing = text.len() > 1 && text.ends_with(b"/");
    if has_dots || trailing || rebuilt.as_os_str() != path.as_os_str() || text.contains(&0) {
        return Err(PathError::NotNormalized {
            path: path.to_owned(),
        });
    }
    Ok(())
}

/// Undoes the octal escapes (`\040` for space …) of `/proc/self/mountinfo`.
fn unescape_mount(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 4)
            .filter(|_| bytes[i] == b'\\')
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u8::from_str_radix(d, 8).ok());
        match escaped {
            Some(v) => {
                out.push(v);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 0:21 / / ro,relatime - overlay overlay rw
23 22 0:22 / /proc rw - proc proc rw
24 22 0:23 / /dev rw - tmpfs tmpfs rw
25 22 8:1 /pvc/dir0 /data/in rw - ext4 /dev/sda1 rw
26 22 0:30 / /c4gh/key rw - tmpfs tmpfs rw
27 22 0:31 / /c4gh/auth ro - tmpfs tmpfs rw
28 22 8:1 /etc-hosts /etc/hosts rw - ext4 /dev/sda1 rw
29 22 0:32 / /scratch\\040space rw - tmpfs tmpfs rw
30 22 0:33 / /keys rw - tmpfs tmpfs rw
";

    #[test]
    fn mount_roots_exclude_system_and_key_dirs() {
        let roots = Roots::from_mountinfo(MOUNTINFO, &[Path::new("/keys")]);
        assert_eq!(
            roots.as_slice(),
            [PathBuf::from("/data/in"), PathBuf::from("/scratch space")]
        );
    }

    #[test]
    fn rejects_unnormalized_and_outside_paths() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let roots = Roots::explicit(vec![root.clone()]).unwrap();
        let r = root.display();
        for (path, needle) in [
            ("relative/x".to_string(), "not absolute"),
            (format!("{r}/a/../b"), "not normalized"),
            (format!("{r}/./b"), "not normalized"),
            (format!("{r}//b"), "not normalized"),
            (format!("{r}/b/"), "not normalized"),
            (format!("{r}"), "not below an allowed input root"),
            ("/etc/passwd".to_string(), "not below an allowed input root"),
            (format!("{r}x/file"), "not below an allowed input root"),
        ] {
            let err = roots.check(Path::new(&path)).unwrap_err().to_string();
            assert!(err.contains(needle), "{path}: {err}");
        }
        assert_eq!(roots.check(&root.join("sub/new/file")).unwrap(), root);
    }

    #[test]
    fn rejects_symlink_escapes_and_symlink_targets() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("escape")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("f"), root.join("link")).unwrap();
        std::fs::create_dir(root.join("adir")).unwrap();
        let roots = Roots::explicit(vec![root.clone()]).unwrap();
        let err = roots.check(&root.join("escape/deeper/file")).unwrap_err();
        assert!(matches!(err, PathError::SymlinkEscape { .. }), "{err}");
        let err = roots.check(&root.join("link")).unwrap_err();
        assert!(err.to_string().contains("is a symlink"), "{err}");
        let err = roots.check(&root.join("adir")).unwrap_err();
        assert!(err.to_string().contains("is a directory"), "{err}");
    }

    #[test]
    fn longest_root_wins() {
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("inner");
        std::fs::create_dir(&inner).unwrap();
        let roots = Roots::explicit(vec![dir.path().to_owned(), inner.clone()]).unwrap();
        assert_eq!(roots.check(&inner.join("f")).unwrap(), inner);
    }
}
