//! The S3-compatible object store of the object-store tests: SeaweedFS's `weed`, built by
//! `tests/seaweedfs/build.sh` from the `github.com/seaweedfs/seaweedfs` Go module pinned in
//! `tests/seaweedfs/go.mod` (the module proxy serves it only as a pseudo-version) into the cache
//! directory. The script stamps what it built, so only the first setup pays for the Go build.

use std::path::Path;

use crate::python::cache_dir;
use crate::run::{Cmd, Error};

/// Builds `weed` unless the cached build is current.
pub fn ensure() -> Result<(), Error> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("tests")
        .join("seaweedfs")
        .join("build.sh");
    Cmd::new("go").args(["version"]).run().map_err(|err| {
        Error::Message(format!(
            "{err}: building SeaweedFS needs Go (version in tests/seaweedfs/go.mod)"
        ))
    })?;
    Cmd::new("bash")
        .arg_path(&script)
        .arg_path(&cache_dir().join("seaweedfs").join("bin"))
        .run()
}
