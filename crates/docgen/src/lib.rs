//! Documentation generated from the clap definitions of every binary of the project: shell
//! completions (bash, zsh, fish) and man pages (one page per command and subcommand), plus
//! [`lint`], the check every `--help` text passes (no doc-comment artefacts in user text).
//!
//! `cargo xtask completions --out DIR` runs the `c4gh-docgen` binary, which calls [`generate`]:
//!
//! ```text
//! DIR/completions/bash/c4gh        DIR/completions/zsh/_c4gh      DIR/completions/fish/c4gh.fish
//! DIR/man/man1/c4gh.1              DIR/man/man1/c4gh-encrypt.1    …
//! ```
//!
//! ```
//! let names: Vec<String> = c4gh_docgen::binaries().iter().map(|b| b.name.to_owned()).collect();
//! assert_eq!(names, ["c4gh", "c4gh-sidecar", "c4gh-drs-server", "c4gh-operator", "kubectl-c4gh"]);
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Command;
use clap_complete::Shell;

/// One binary: its installed name and its command-line definition.
pub struct Binary {
    /// The executable's file name.
    pub name: &'static str,
    /// Its clap definition.
    pub command: Command,
}

/// Every binary the project ships.
pub fn binaries() -> Vec<Binary> {
    vec![
        Binary {
            name: "c4gh",
            command: c4gh_cli::cli::command(),
        },
        Binary {
            name: "c4gh-sidecar",
            command: c4gh_sidecar::cli::command(),
        },
        Binary {
            name: "c4gh-drs-server",
            command: drs_server::cli::command(),
        },
        Binary {
            name: "c4gh-operator",
            command: c4gh_operator::config::command(),
        },
        Binary {
            name: "kubectl-c4gh",
            command: kubectl_c4gh::cli::command(),
        },
    ]
}

/// Files written by [`generate`].
#[derive(Debug, Default)]
pub struct Generated {
    /// Completion scripts.
    pub completions: Vec<PathBuf>,
    /// Man pages.
    pub man_pages: Vec<PathBuf>,
}

/// Where a shell looks for completions, relative to the output directory.
fn completion_path(shell: Shell, name: &str) -> PathBuf {
    match shell {
        Shell::Zsh => PathBuf::from(format!("completions/zsh/_{name}")),
        Shell::Fish => PathBuf::from(format!("completions/fish/{name}.fish")),
        _ => PathBuf::from(format!("completions/{shell}/{name}")),
    }
}

/// Writes completions for bash, zsh and fish and the man pages of every binary under `out`.
///
/// # Errors
///
/// A file cannot be written.
pub fn generate(out: &Path) -> anyhow::Result<Generated> {
    let mut generated = Generated::default();
    let man_dir = out.join("man").join("man1");
    std::fs::create_dir_all(&man_dir).with_context(|| format!("creating {}", man_dir.display()))?;
    for binary in binaries() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let path = out.join(completion_path(shell, binary.name));
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            let mut script = Vec::new();
            let mut command = binary.command.clone();
            clap_complete::generate(shell, &mut command, binary.name, &mut script);
            std::fs::write(&path, script).with_context(|| format!("writing {}", path.display()))?;
            generated.completions.push(path);
        }
        clap_mangen::generate_to(binary.command.clone(), &man_dir)
            .with_context(|| format!("writing the man pages of {}", binary.name))?;
    }
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&man_dir)
        .with_context(|| format!("reading {}", man_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "1"))
        .collect();
    pages.sort();
    generated.man_pages = pages;
    Ok(generated)
}

/// Problems in the help texts of `command` and its subcommands: Markdown (backticks, `**`,
/// links), implementation notes (`(No `, TODO, Rust paths), unbalanced brackets, commands
/// without an about text and visible arguments without help. Empty when all is well.
pub fn lint(command: &Command) -> Vec<String> {
    let mut command = command.clone();
    command.build();
    let mut problems = Vec::new();
    lint_tree(&command, command.get_name(), &mut problems);
    problems
}

fn lint_tree(command: &Command, path: &str, problems: &mut Vec<String>) {
    if command.get_about().is_none() {
        problems.push(format!("{path}: no about text"));
    }
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if arg.is_hide_set() || id == "help" || id == "version" {
            continue;
        }
        if arg.get_help().is_none() && arg.get_long_help().is_none() {
            problems.push(format!("{path}: argument {id} has no help"));
        }
    }
    let mut short = command.clone();
    let mut long = command.clone();
    for (kind, text) in [
        ("-h", short.render_help().to_string()),
        ("--help", long.render_long_help().to_string()),
    ] {
        for problem in lint_text(&text) {
            problems.push(format!("{path} {kind}: {problem}"));
        }
    }
    for sub in command.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        lint_tree(sub, &format!("{path} {}", sub.get_name()), problems);
    }
}

/// Problems in one rendered help text.
pub fn lint_text(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = |what: &str| format!("line {}: {what}: {:?}", n + 1, line.trim());
        for (needle, what) in [
            ("`", "Markdown backtick"),
            ("**", "Markdown bold"),
            ("](", "Markdown link"),
            ("(No ", "implementation note"),
            ("TODO", "TODO"),
            ("FIXME", "FIXME"),
            ("crate::", "Rust path"),
            ("Self::", "Rust path"),
            ("[`", "rustdoc link"),
        ] {
            if line.contains(needle) {
                problems.push(at(what));
            }
        }
        if line.contains("::") && line.split_whitespace().any(is_rust_path) {
            problems.push(at("Rust path"));
        }
    }
    for (open, close) in [('(', ')'), ('[', ']'), ('{', '}')] {
        let opened = text.matches(open).count();
        let closed = text.matches(close).count();
        if opened != closed {
            problems.push(format!(
                "unbalanced {open}{close}: {opened} opened, {closed} closed"
            ));
        }
    }
    if text.matches('"').count() % 2 == 1 {
        problems.push("an odd number of double quotes".to_owned());
    }
    problems
}

/// `a::b`-style words (not URLs, not `host::port` IPv6 forms).
fn is_rust_path(word: &str) -> bool {
    let word = word.trim_matches(|c: char| !c.is_alphanumeric() && c != ':' && c != '_');
    word.split("::").count() > 1
        && word
            .split("::")
            .all(|seg| !seg.is_empty() && seg.chars().all(|c| c.is_alphanumeric() || c == '_'))
        && word.chars().any(char::is_alphabetic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lint_finds_doc_comment_artefacts() {
        assert!(lint_text("Encrypt stdin for one recipient [env: X=]\n").is_empty());
        let bad = lint_text("Utility\n(No `Debug`: it holds the passphrase.)\nsee crate::cli\n");
        assert!(bad.iter().any(|p| p.contains("backtick")), "{bad:?}");
        assert!(
            bad.iter().any(|p| p.contains("implementation note")),
            "{bad:?}"
        );
        assert!(bad.iter().any(|p| p.contains("Rust path")), "{bad:?}");
        assert!(!lint_text("a [link](https://x)\n").is_empty());
        assert!(!lint_text("unbalanced (paren\n").is_empty());
        assert!(!lint_text("uses std::fs::read\n").is_empty());
        assert!(lint_text("listen on [::1]:8443 or https://x/y\n").is_empty());
    }
}
