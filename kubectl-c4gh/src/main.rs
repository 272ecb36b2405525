//! `kubectl-c4gh`: parse the command line, run it, print errors with their causes.

use std::process::ExitCode;

use clap::Parser;
use kubectl_c4gh::cli::Cli;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match kubectl_c4gh::run::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kubectl c4gh: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
