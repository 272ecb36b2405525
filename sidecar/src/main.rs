//! The `c4gh-sidecar` binary: parse the command line, start logging, call the library.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use c4gh_sidecar::cli::{Cli, Command};
use c4gh_sidecar::{cleanup::Cleanup, fetch_cli, gate, run, seal, telemetry};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init_logging(cli.log_format);
    match execute(cli.command) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "c4gh-sidecar failed");
            eprintln!("c4gh-sidecar: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn execute(command: Command) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match command {
        Command::Probe(args) => Ok(gate::probe_main(&args)),
        Command::Seal(args) => Ok(seal::seal_main(&args)),
        Command::Gate(args) => Ok(runtime.block_on(gate::gate_main(&args))),
        Command::Run(args) => {
            let cleanup = Arc::new(Cleanup::new());
            let key_dir = args.key_dir.clone();
            let result = runtime.block_on(run::run(args, Arc::clone(&cleanup)));
            runtime.shutdown_timeout(Duration::from_secs(5));
            run::final_sweep(&cleanup, &key_dir);
            let summary = result.context("the sidecar could not start; no key was kept")?;
            Ok(if summary.outputs_failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Fetch(args) => {
            let cleanup = Arc::new(Cleanup::new());
            let result = runtime.block_on(fetch_cli::fetch(args, Arc::clone(&cleanup)));
            runtime.shutdown_timeout(Duration::from_secs(5));
            cleanup.sweep();
            let failed = result?;
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
