//! `cargo xtask bench e2e`: pod admission latency with and without the webhook (see
//! `c4gh_e2e::bench`). Argument: pods per series (default 200).

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let pods = match std::env::args().nth(1) {
        Some(n) => n
            .parse()
            .map_err(|err| anyhow::anyhow!("pods per series {n:?}: {err}"))?,
        None => 200,
    };
    let r = c4gh_e2e::bench::admission_latency(pods).await?;
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    println!(
        "pod admission latency through kube-apiserver, {} pods per series:",
        r.pods
    );
    println!(
        "  without webhook: p50 {:.2} ms  p99 {:.2} ms",
        ms(r.without_webhook.p50),
        ms(r.without_webhook.p99)
    );
    println!(
        "  with webhook:    p50 {:.2} ms  p99 {:.2} ms",
        ms(r.with_webhook.p50),
        ms(r.with_webhook.p99)
    );
    println!(
        "  ratio with/without: p50 {:.2}x  p99 {:.2}x",
        ms(r.with_webhook.p50) / ms(r.without_webhook.p50),
        ms(r.with_webhook.p99) / ms(r.without_webhook.p99)
    );
    Ok(())
}
