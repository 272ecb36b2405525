//! Where the source tree and the workspace's own binaries are.
//!
//! `cargo xtask test` builds every package's binaries (`cargo build --workspace --bins`) into the
//! target directory, next to the test executables (`target/debug/`); `cargo test` alone builds
//! only those of packages with integration tests. A missing binary fails the test with the
//! command that builds it.

use std::path::PathBuf;

use crate::Error;

/// The repository root (the workspace directory).
pub fn root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map_or(manifest_dir.clone(), PathBuf::from)
}

/// Path of the binary `name` of workspace package `package`, from the target directory this
/// executable runs from.
pub fn binary(name: &str, package: &str) -> Result<PathBuf, Error> {
    let exe = std::env::current_exe().map_err(|source| Error::Io {
        context: "locating the running executable".into(),
        source,
    })?;
    // Test executables live in target/<profile>/deps, other binaries in target/<profile>.
    let mut dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::Missing {
            what: format!("{name} (package {package})"),
            path,
            fix: format!("cargo build -p {package} (`cargo xtask test` builds every binary first)"),
        })
    }
}
