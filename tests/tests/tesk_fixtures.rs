//! The operator's TESK fixtures (`operator/tests/fixtures/tesk/`) are what the real TESK
//! creates: the real `tesk-api` and taskmaster run the capture's TES tasks on the real node, in
//! a namespace the operator does not touch, and the normalised objects must equal the
//! committed ones (`c4gh_e2e::tesk_fixtures`). With `C4GH_UPDATE_FIXTURES=1` the capture
//! replaces them instead.

use std::time::Instant;

use c4gh_e2e::node::Node;
use c4gh_e2e::tesk_fixtures::{self, UPDATE_ENV};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tesk_fixtures_are_what_the_real_tesk_creates() -> anyhow::Result<()> {
    let started = Instant::now();
    let node = Node::start().await?;
    eprintln!("node Ready after {:.1} s", started.elapsed().as_secs_f64());
    let t = Instant::now();
    let captured = tesk_fixtures::capture(&node).await;
    eprintln!("capture: {:.1} s", t.elapsed().as_secs_f64());
    drop(node);
    let captured = captured?;
    if std::env::var_os(UPDATE_ENV).is_some_and(|v| v == "1") {
        tesk_fixtures::write(&captured)?;
        eprintln!(
            "wrote {} fixtures under {}; review the diff",
            captured.len(),
            tesk_fixtures::fixtures_dir().display()
        );
        return Ok(());
    }
    tesk_fixtures::check(&captured)
}
