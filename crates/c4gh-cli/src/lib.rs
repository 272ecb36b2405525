//! `c4gh`'s command-line definition, as a library so that shell completions and man pages can be
//! generated from it without running the binary (`c4gh-docgen`).
//!
//! ```
//! let cmd = c4gh_cli::cli::command();
//! assert!(cmd.get_subcommands().any(|s| s.get_name() == "keygen"));
//! ```

pub mod cli;
