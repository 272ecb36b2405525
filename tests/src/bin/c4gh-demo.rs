//! `cargo xtask demo`: the whole flow on the real node, narrated (see `c4gh_e2e::scenario`).

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    c4gh_e2e::scenario::run(&|line| println!("{line}")).await?;
    println!("Demo complete.");
    Ok(())
}
