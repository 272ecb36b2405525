//! Completions and man pages are generated for every binary, and the man pages name every
//! subcommand.

use c4gh_docgen::{binaries, generate};

#[test]
fn completions_and_man_pages_cover_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let generated = generate(dir.path()).unwrap();
    assert_eq!(generated.completions.len(), 3 * binaries().len());
    for binary in binaries() {
        let page = dir.path().join(format!("man/man1/{}.1", binary.name));
        let text = std::fs::read_to_string(&page).unwrap();
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{}",
            page.display()
        );
        let bash =
            std::fs::read_to_string(dir.path().join(format!("completions/bash/{}", binary.name)))
                .unwrap();
        let zsh =
            std::fs::read_to_string(dir.path().join(format!("completions/zsh/_{}", binary.name)))
                .unwrap();
        let fish = std::fs::read_to_string(
            dir.path()
                .join(format!("completions/fish/{}.fish", binary.name)),
        )
        .unwrap();
        for sub in binary.command.get_subcommands() {
            let name = sub.get_name();
            if name == "help" {
                continue;
            }
            assert!(
                text.contains(name),
                "{} does not mention {name}",
                page.display()
            );
            let sub_page = dir
                .path()
                .join(format!("man/man1/{}-{name}.1", binary.name));
            assert!(sub_page.exists(), "{} missing", sub_page.display());
            for (shell, script) in [("bash", &bash), ("zsh", &zsh), ("fish", &fish)] {
                assert!(
                    script.contains(name),
                    "{shell} completion of {} lacks {name}",
                    binary.name
                );
            }
        }
        for arg in binary
            .command
            .get_arguments()
            .filter(|a| a.get_long().is_some())
        {
            let long = arg.get_long().unwrap();
            if !arg.is_hide_set() {
                assert!(
                    fish.contains(long),
                    "fish completion of {} lacks --{long}",
                    binary.name
                );
            }
        }
    }
    let encrypt = std::fs::read_to_string(dir.path().join("man/man1/c4gh-encrypt.1")).unwrap();
    assert!(encrypt.contains("recipient_pk"), "{encrypt}");
}
