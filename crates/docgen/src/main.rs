//! `c4gh-docgen --out DIR`: writes shell completions and man pages of every binary into DIR
//! (run by `cargo xtask completions`).

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let out = match (args.next(), args.next(), args.next()) {
        (Some(flag), Some(dir), None) if flag == "--out" => PathBuf::from(dir),
        _ => {
            eprintln!("usage: c4gh-docgen --out DIR");
            return ExitCode::from(2);
        }
    };
    match c4gh_docgen::generate(&out) {
        Ok(generated) => {
            println!(
                "wrote {} completion scripts and {} man pages under {}",
                generated.completions.len(),
                generated.man_pages.len(),
                out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("c4gh-docgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}
