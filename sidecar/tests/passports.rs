//! The real `c4gh-sidecar` with GA4GH passports only (`C4GH_PASSPORTS_FILE`, no bearer token)
//! against the real `c4gh-drs-server` trusting a local visa issuer: the passports go in DRS POST
//! bodies, the body comes through the access URL's body token, the input decrypts with the
//! sidecar's key, and neither the visa (nor its signature) nor the body token is in the
//! sidecar's debug-level logs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use c4gh::SecretKey;
use c4gh_sidecar::status::Phase;
use common::{RunEnv, Sidecar, pattern};
use drs_server::testing::{LocalVisaIssuer, TestServer};
use nix::sys::signal::Signal;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passports_only_fetch_the_input_and_never_reach_the_logs() {
    let issuer = LocalVisaIssuer::start("https://visas.test/oidc")
        .await
        .unwrap();
    let config = issuer.passport_config();
    let server = TestServer::start_with(move |c| c.passports = Some(config))
        .await
        .unwrap();
    let plaintext = pattern(300_000, 4);
    server
        .add_to_dataset("granted", &plaintext, &["nobody"], Some("EGAD-SIDECAR"))
        .unwrap();
    let visa = issuer.grant("alice@visas.test", "EGAD-SIDECAR");

    let work = tempfile::tempdir().unwrap();
    let passports = work.path().join("passports.json");
    std::fs::write(&passports, serde_json::to_string(&[&visa]).unwrap()).unwrap();
    let file = work.path().join("data/in/granted.c4gh");
    let env = RunEnv {
        inputs: format!(
            r#"[{{"url":"{}","path":"{}"}}]"#,
            server.drs_uri("granted"),
            file.display()
        ),
        key_dir: work.path().join("key"),
        root: work.path().join("data"),
        ca_pem: server.ca_pem(),
        token: None,
        allowed_host: server.server().local_addr().to_string(),
        extra: vec![(
            c4gh_contract::env::PASSPORTS_FILE.to_owned(),
            passports.display().to_string(),
        )],
    };
    let mut sidecar = Sidecar::start(&env, work.path());
    assert_eq!(
        sidecar.wait_settled().phase,
        Phase::Ready,
        "{}",
        sidecar.log_text()
    );
    let key = SecretKey::read_file(&env.key_dir.join("ephemeral.sec"), || None).unwrap();
    let mut out = Vec::new();
    c4gh::decrypt(&mut &std::fs::read(&file).unwrap()[..], &mut out, &[&key]).unwrap();
    assert_eq!(out, plaintext);
    assert!(sidecar.signal_and_wait(Signal::SIGTERM).success());

    let log = sidecar.log_text();
    let signature = visa.rsplit('.').next().unwrap();
    let payload = visa.split('.').nth(1).unwrap();
    for (what, needle) in [
        ("the visa", visa.as_str()),
        ("the visa's signature", signature),
        ("the visa's payload", payload),
        ("a body token", "c4gh-body.v1."),
    ] {
        assert!(
            !log.contains(needle),
            "{what} is in the sidecar's log:\n{log}"
        );
    }
    // The server saw passports and body tokens only: no authentication failed on the way.
    let metrics = server.server().state().metrics().encode();
    assert!(
        !metrics.contains("c4gh_drs_auth_failures_total{"),
        "{metrics}"
    );
}
