//! `cargo xtask bench e2e`: pod admission latency with and without the webhook (see
//! `c4gh_e2e::bench`), then pod start-up and key removal on the real node (see
//! `c4gh_e2e::node_bench`). Arguments: pods per admission series (default 200), pods per node
//! series (default 30; 0 skips the node), the input counts of the node series with the sidecar
//! (comma-separated, default `1,10,100`).

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let pods = match std::env::args().nth(1) {
        Some(n) => n
            .parse()
            .map_err(|err| anyhow::anyhow!("pods per series {n:?}: {err}"))?,
        None => 200,
    };
    let node_pods: usize = match std::env::args().nth(2) {
        Some(n) => n
            .parse()
            .map_err(|err| anyhow::anyhow!("pods per node series {n:?}: {err}"))?,
        None => 30,
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
    let counts: Vec<usize> = match std::env::args().nth(3) {
        Some(list) => list
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .map_err(|err| anyhow::anyhow!("input count {n:?} in {list:?}: {err}"))
            })
            .collect::<anyhow::Result<_>>()?,
        None => c4gh_e2e::node_bench::INPUT_COUNTS.to_vec(),
    };
    if node_pods == 0 {
        return Ok(());
    }
    println!(
        "pod creation -> task container running on the real node, {node_pods} pods per series:"
    );
    let report =
        c4gh_e2e::node_bench::startup(node_pods, &counts, &|line| println!("{line}")).await?;
    println!("where the time goes (p50/p99 per step):");
    for (label, breakdown) in &report.breakdowns {
        println!("  {label}:");
        for l in breakdown.lines() {
            println!("{l}");
        }
    }
    for (count, series) in &report.with {
        println!(
            "  sidecar start-up overhead, {count} inputs: p50 {:+.3} s  p99 {:+.3} s",
            series.p50 - report.without.p50,
            series.p99 - report.without.p99
        );
    }
    let ten = report
        .with
        .iter()
        .find(|(count, _)| *count == 10)
        .map_or(f64::NAN, |(_, s)| s.p50 - report.without.p50);
    println!(
        "  target: overhead with 10 inputs <= 1.5 s at p50: {:.3} s, {}",
        ten,
        if ten <= 1.5 { "met" } else { "MISSED" }
    );
    println!(
        "  target: key gone <= 2 s after the task's exit in every run: max {:.3} s over {} runs, {}",
        report.key_gone.max,
        report.key_gone.n,
        if report.key_gone.max <= 2.0 {
            "met"
        } else {
            "MISSED"
        }
    );
    Ok(())
}
