//! The committed CRD (`manifests/base/crd.yaml`) equals the one generated from the Rust types.
//! Regenerate with `UPDATE_CRD=1 cargo test -p c4gh-operator --test crd`.

use std::fs;
use std::path::Path;

#[test]
fn committed_crd_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/base/crd.yaml");
    let generated = c4gh_operator::policy::crd_yaml().unwrap();
    if std::env::var_os("UPDATE_CRD").is_some() {
        fs::write(&path, &generated).unwrap();
    }
    let committed = fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale: regenerate it with `UPDATE_CRD=1 cargo test -p c4gh-operator --test crd` and commit it",
        path.display()
    );
}
