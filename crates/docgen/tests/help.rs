//! Every `--help` of every binary, read as a user would: no Markdown, no implementation notes,
//! no Rust paths, balanced brackets, an about text on every command and help on every flag.

use c4gh_docgen::{binaries, lint};

#[test]
fn every_help_text_reads_as_user_text() {
    let mut problems = Vec::new();
    for binary in binaries() {
        problems.extend(lint(&binary.command));
    }
    assert!(
        problems.is_empty(),
        "help text problems:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_binary_shows_examples_and_env_vars() {
    for binary in binaries() {
        let mut command = binary.command.clone();
        let help = command.render_long_help().to_string();
        assert!(
            help.contains("EXAMPLES:"),
            "{} --help has no EXAMPLES:\n{help}",
            binary.name
        );
    }
    let mut operator = c4gh_operator::config::command();
    let help = operator.render_long_help().to_string();
    assert!(help.contains("[env: C4GH_OPERATOR_WEBHOOK_ADDR="), "{help}");
}
