//! `c4gh-drs-server`: parse the command line, start logging, run the subcommand.

use clap::Parser;
use drs_server::cli;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    if let Err(err) = drs_server::telemetry::init(cli.log_format, &cli.log_filter) {
        eprintln!("c4gh-drs-server: cannot set up logging: {err}");
        return std::process::ExitCode::from(2);
    }
    let json_logs = cli.log_format == drs_server::telemetry::LogFormat::Json;
    match cli.run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) if json_logs => {
            tracing::error!(error = format!("{err:#}"), "c4gh-drs-server failed");
            std::process::ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("c4gh-drs-server: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
