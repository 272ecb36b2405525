//! `c4gh`: a drop-in for the reference Python `crypt4gh` and `crypt4gh-keygen` tools, built on the
//! `c4gh` library. Data flows from stdin to stdout; see `docs/c4gh-cli.md`.

mod commands;

use c4gh_cli::cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse_from(cli::args_with_keygen_alias(std::env::args_os()));
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if commands::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("c4gh: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
