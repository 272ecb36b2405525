//! The real TESK for `tests/tests/tesk.rs`: the Java TES API `tesk-api` (751d482) built with
//! Maven (JDK 17, dependencies from Maven Central) and the taskmaster `tesk-core` (a50995a)
//! unpacked, both by `tests/tesk/build.sh` from the pinned snapshots in the shared peers
//! directory (`tesk/`) into the cache directory; `cargo xtask images` then packs the taskmaster
//! into the `tesk-taskmaster` image. The script stamps what it built, so only the first setup
//! pays for the Maven build.

use std::path::{Path, PathBuf};

use crate::peers;
use crate::python::cache_dir;
use crate::run::{Cmd, Error};

/// The snapshots' directory, relative to the peers directory.
const SNAPSHOTS: &str = "tesk";
/// The tesk-api snapshot, by which the peers directory is recognised.
const API_SNAPSHOT: &str = "tesk/tesk-api-751d482.tar.gz";

/// Where the build goes: `tesk-api.jar`, `src/tesk-core`.
pub fn out_dir() -> PathBuf {
    cache_dir().join("tesk")
}

/// Builds TESK unless the cached build is current.
pub fn ensure() -> Result<(), Error> {
    let snapshots = peers::dir(API_SNAPSHOT)?.join(SNAPSHOTS);
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("tests")
        .join("tesk")
        .join("build.sh");
    Cmd::new("bash")
        .arg_path(&script)
        .arg_path(&snapshots)
        .arg_path(&out_dir())
        .run()
}
