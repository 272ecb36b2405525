//! The whole flow on a real control plane: operator injection, the stored pod executed by the
//! pod runner (sidecar, gate, a task decrypting with the reference Python `crypt4gh`), SIGTERM
//! destroying the key, and a fetch failure failing the gate with its reason.

use c4gh_contract::pod;
use c4gh_e2e::scenario;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_pod_runs_decrypts_with_reference_tool_and_destroys_key() -> anyhow::Result<()> {
    let report = scenario::run(&|line| eprintln!("{line}")).await?;
    assert_eq!(
        report.init_containers[..2],
        [pod::SIDECAR_CONTAINER, pod::GATE_CONTAINER]
    );
    assert_eq!(
        report.task_output.matches("matches the original").count(),
        2,
        "{}",
        report.task_output
    );
    assert!(
        report.key_on_tmpfs || !std::path::Path::new("/dev/shm").is_dir(),
        "/dev/shm exists, so the key volume must be on tmpfs"
    );
    assert!(
        report.failed_gate_message.contains("no-such-object"),
        "the gate's reason names the failed input: {:?}",
        report.failed_gate_message
    );
    Ok(())
}
