//! The shared peers directory: pinned source snapshots of third-party projects that no registry
//! this project can reach publishes (SDA, TESK), built by `cargo xtask setup` into the cache.

use std::env;
use std::path::{Path, PathBuf};

use crate::run::Error;

/// `C4GH_PEERS_DIR`, else the first `shared/peers` found next to the checkout or one level up
/// (a worktree under `wt/`) that holds `marker` (a path relative to the peers directory).
pub fn dir(marker: &str) -> Result<PathBuf, Error> {
    if let Some(dir) = env::var_os("C4GH_PEERS_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let candidates = [
        root.join("..").join("shared").join("peers"),
        root.join("..").join("..").join("shared").join("peers"),
    ];
    candidates
        .iter()
        .find(|d| d.join(marker).exists())
        .cloned()
        .ok_or_else(|| {
            Error::Message(format!(
                "the source snapshot {marker} is not in {}; set C4GH_PEERS_DIR to the \
                 directory holding it",
                candidates
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ))
        })
}
