//! `c4gh-drs-server`: parse the command line, start logging, run the subcommand.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    if let Err(err) = drs_server::telemetry::init(cli.log_format, &cli.log_filter) {
        eprintln!("c4gh-drs-server: cannot set up logging: {err}");
        return std::process::ExitCode::from(2);
    }
    match cli.run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "c4gh-drs-server failed");
            eprintln!("c4gh-drs-server: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
