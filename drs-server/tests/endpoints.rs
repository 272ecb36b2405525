//! Every endpoint over real TLS against a running server: DRS 1.5 objects, access, OPTIONS,
//! bulk (and its limit), service-info, the re-encrypted header (SDA v2 flavour too), bodies with
//! Range / If-Range, malformed requests, metrics.

// Helpers outside #[test] functions are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use c4gh::keys::SecretKey;
use common::{client, data, expect_problem, key_header};
use drs_server::testing::TestServer;
use reqwest::Method;
use serde_json::{Value, json};

async fn server_with_objects() -> TestServer {
    let server = TestServer::start_with(|config| config.settings.max_bulk = 3)
        .await
        .unwrap();
    server.add("obj-1", &data(200_000), &["*"]).unwrap();
    server.add("small", b"hello crypt4gh", &["*"]).unwrap();
    server
        .add("private", b"for alice only", &["alice"])
        .unwrap();
    server
}

#[tokio::test]
async fn service_info_describes_drs_and_crypt4gh() {
    let server = server_with_objects().await;
    let response = client(&server)
        .get(format!("{}/service-info", server.drs_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let info: Value = response.json().await.unwrap();
    assert_eq!(info["type"]["artifact"], "drs");
    assert_eq!(info["type"]["group"], "org.ga4gh");
    assert_eq!(info["type"]["version"], "1.5.0");
    assert_eq!(info["drs"]["maxBulkRequestLength"], 3);
    assert_eq!(info["crypt4gh"]["protocol_version"], 1);
    assert_eq!(info["crypt4gh"]["public_key_header"], "X-C4GH-Public-Key");
    assert_eq!(info["crypt4gh"]["sda_compatible"], true);
    assert!(
        info["organization"]["url"]
            .as_str()
            .unwrap()
            .starts_with("https://")
    );
}

#[tokio::test]
async fn object_get_and_post() {
    let server = server_with_objects().await;
    let http = client(&server);
    let url = format!("{}/objects/obj-1", server.drs_url());
    let object: Value = http
        .get(&url)
        .header("authorization", server.bearer())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let record: Value =
        serde_json::from_slice(&std::fs::read(server.catalog_dir().join("obj-1.json")).unwrap())
            .unwrap();
    assert_eq!(object["id"], "obj-1");
    assert_eq!(object["name"], "obj-1.bin");
    assert_eq!(
        object["self_uri"],
        format!("drs://{}/obj-1", server.server().local_addr())
    );
    assert_eq!(object["size"], record["body"]["size"]);
    assert_eq!(
        object["size"].as_u64().unwrap(),
        c4gh::body::encrypted_len(200_000)
    );
    assert_eq!(
        object["checksums"],
        json!([{"checksum": record["body"]["sha256"], "type": "sha-256"}])
    );
    let ids: Vec<&str> = object["access_methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["type"], "https");
            m["access_id"].as_str().unwrap()
        })
        .collect();
    assert_eq!(ids, ["crypt4gh-header", "crypt4gh-body"]);
    let parsed: drs::types::DrsObject = serde_json::from_value(object.clone()).unwrap();
    parsed.validate().unwrap();

    let posted: Value = http
        .post(&url)
        .header("authorization", server.bearer())
        .json(&json!({"expand": false}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(posted, object);
    let empty_post = http
        .post(&url)
        .header("authorization", server.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(empty_post.status(), 200);
}

#[tokio::test]
async fn unknown_forbidden_and_invalid_objects() {
    let server = server_with_objects().await;
    let http = client(&server);
    let get = |id: &str| {
        http.get(format!("{}/objects/{id}", server.drs_url()))
            .header("authorization", server.bearer())
            .send()
    };
    let body = expect_problem(get("nope").await.unwrap(), 404, "NOT_FOUND").await;
    assert!(body["detail"].as_str().unwrap().contains("\"nope\""));
    let body = expect_problem(get("private").await.unwrap(), 403, "FORBIDDEN").await;
    assert!(body["detail"].as_str().unwrap().contains("tester"));
    for bad in [
        ".hidden",
        "a%20b",
        "%2E%2Ehidden",
        "x%00y",
        "a%2Fb",
        &"a".repeat(129),
    ] {
        expect_problem(get(bad).await.unwrap(), 400, "INVALID_ID").await;
    }
}

#[tokio::test]
async fn malformed_json_and_methods() {
    let server = server_with_objects().await;
    let http = client(&server);
    let bulk = format!("{}/objects", server.drs_url());
    for (body, needle) in [
        ("{", "EOF"),
        ("[1,2]", "invalid type"),
        ("{\"bulk_object_ids\": \"obj-1\"}", "line 1"),
        ("{}", "bulk_object_ids"),
        ("", "needs a JSON request body"),
    ] {
        let response = http
            .post(&bulk)
            .header("authorization", server.bearer())
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let problem = expect_problem(response, 400, "BAD_REQUEST").await;
        assert!(
            problem["detail"].as_str().unwrap().contains(needle),
            "{body}: {problem}"
        );
    }
    let response = http
        .post(&bulk)
        .header("authorization", server.bearer())
        .header("content-type", "text/plain")
        .body("{\"bulk_object_ids\": []}")
        .send()
        .await
        .unwrap();
    expect_problem(response, 415, "BAD_REQUEST").await;

    let response = http
        .delete(format!("{}/objects/obj-1", server.drs_url()))
        .send()
        .await
        .unwrap();
    let allow = response.headers()["allow"].to_str().unwrap().to_owned();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    let problem = expect_problem(response, 405, "BAD_REQUEST").await;
    assert!(problem["detail"].as_str().unwrap().contains("DELETE"));

    let response = http
        .get(format!("{}/nothing-here", server.base_url()))
        .send()
        .await
        .unwrap();
    expect_problem(response, 404, "NOT_FOUND").await;
}

#[tokio::test]
async fn options_and_access() {
    let server = server_with_objects().await;
    let http = client(&server);
    let response = http
        .request(
            Method::OPTIONS,
            format!("{}/objects/obj-1", server.drs_url()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let auth: Value = response.json().await.unwrap();
    assert_eq!(auth["drs_object_id"], "obj-1");
    assert_eq!(auth["supported_types"], json!(["BearerAuth"]));
    let response = http
        .request(
            Method::OPTIONS,
            format!("{}/objects/nope", server.drs_url()),
        )
        .send()
        .await
        .unwrap();
    expect_problem(response, 404, "NOT_FOUND").await;

    for (access_id, path) in [("crypt4gh-header", "header"), ("crypt4gh-body", "body")] {
        let url = format!("{}/objects/obj-1/access/{access_id}", server.drs_url());
        let got: Value = http
            .get(&url)
            .header("authorization", server.bearer())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            got["url"],
            format!("{}/c4gh/v1/objects/obj-1/{path}", server.base_url())
        );
        let posted: Value = http
            .post(&url)
            .header("authorization", server.bearer())
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(posted, got);
    }
    let response = http
        .get(format!("{}/objects/obj-1/access/s3", server.drs_url()))
        .header("authorization", server.bearer())
        .send()
        .await
        .unwrap();
    expect_problem(response, 404, "NOT_FOUND").await;
    let response = http
        .get(format!(
            "{}/objects/obj-1/access/crypt4gh-body",
            server.drs_url()
        ))
        .send()
        .await
        .unwrap();
    expect_problem(response, 401, "UNAUTHENTICATED").await;
}

#[tokio::test]
async fn bulk_objects_access_and_options_with_limits() {
    let server = server_with_objects().await;
    let http = client(&server);
    let post = |path: &str, body: Value| {
        http.post(format!("{}{path}", server.drs_url()))
            .header("authorization", server.bearer())
            .json(&body)
            .send()
    };
    let got: Value = post(
        "/objects",
        json!({"bulk_object_ids": ["obj-1", "nope", "private"]}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        got["summary"],
        json!({"requested": 3, "resolved": 1, "unresolved": 2})
    );
    assert_eq!(got["resolved_drs_object"][0]["id"], "obj-1");
    assert_eq!(
        got["unresolved_drs_objects"],
        json!([{"error_code": 403, "object_ids": ["private"]},
               {"error_code": 404, "object_ids": ["nope"]}])
    );

    let too_many = post(
        "/objects",
        json!({"bulk_object_ids": ["obj-1", "small", "obj-1", "small"]}),
    )
    .await
    .unwrap();
    let problem = expect_problem(too_many, 413, "BULK_TOO_LARGE").await;
    assert!(problem["detail"].as_str().unwrap().contains("at most 3"));
    let none = post("/objects", json!({"bulk_object_ids": []}))
        .await
        .unwrap();
    expect_problem(none, 400, "BAD_REQUEST").await;

    let got: Value = post(
        "/objects/access",
        json!({"bulk_object_access_ids": [
            {"bulk_object_id": "obj-1", "bulk_access_ids": ["crypt4gh-header", "s3"]},
            {"bulk_object_id": "nope", "bulk_access_ids": ["crypt4gh-body"]}
        ]}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        got["resolved_drs_object_access_urls"],
        json!([{"drs_object_id": "obj-1", "drs_access_id": "crypt4gh-header",
                "url": format!("{}/c4gh/v1/objects/obj-1/header", server.base_url())}])
    );
    assert_eq!(got["unresolved_drs_objects"].as_array().unwrap().len(), 1);
    let too_many = post(
        "/objects/access",
        json!({"bulk_object_access_ids": [
            {"bulk_object_id": "obj-1", "bulk_access_ids": ["crypt4gh-header", "crypt4gh-body"]},
            {"bulk_object_id": "small", "bulk_access_ids": ["crypt4gh-header", "crypt4gh-body"]}
        ]}),
    )
    .await
    .unwrap();
    expect_problem(too_many, 413, "BULK_TOO_LARGE").await;

    let response = http
        .request(Method::OPTIONS, format!("{}/objects", server.drs_url()))
        .json(&json!({"bulk_object_ids": ["obj-1", "nope"]}))
        .send()
        .await
        .unwrap();
    let got: Value = response.json().await.unwrap();
    assert_eq!(got["resolved_drs_object"][0]["drs_object_id"], "obj-1");
    assert_eq!(
        got["unresolved_drs_objects"],
        json!([{"error_code": 404, "object_ids": ["nope"]}])
    );
}

#[tokio::test]
async fn header_key_errors() {
    let server = server_with_objects().await;
    let http = client(&server);
    let url = format!("{}/c4gh/v1/objects/obj-1/header", server.base_url());
    let key = key_header(&SecretKey::generate().public_key());
    let request = || http.get(&url).header("authorization", server.bearer());
    expect_problem(request().send().await.unwrap(), 400, "KEY_MISSING").await;
    let both = request()
        .header("x-c4gh-public-key", &key)
        .header("htsget-context-public-key", &key)
        .send()
        .await
        .unwrap();
    expect_problem(both, 400, "KEY_CONFLICT").await;
    for (bad, needle) in [
        ("%%%", "not base64"),
        ("aGVsbG8=", "not a Crypt4GH public key"),
        ("/w==", "neither a 32-byte"),
        (
            "LS0tLS1CRUdJTiBDUllQVDRHSCBQVUJMSUMgS0VZLS0tLS0K",
            "not a Crypt4GH public key",
        ),
    ] {
        let response = request()
            .header("x-c4gh-public-key", bad)
            .send()
            .await
            .unwrap();
        let problem = expect_problem(response, 400, "KEY_INVALID").await;
        assert!(
            problem["detail"].as_str().unwrap().contains(needle),
            "{bad}: {problem}"
        );
    }
    let unauthenticated = http
        .get(&url)
        .header("x-c4gh-public-key", &key)
        .send()
        .await
        .unwrap();
    expect_problem(unauthenticated, 401, "UNAUTHENTICATED").await;
    // SDA v2 endpoint: same rules.
    let sda = http
        .get(format!("{}/files/obj-1/header", server.base_url()))
        .header("authorization", server.bearer())
        .send()
        .await
        .unwrap();
    expect_problem(sda, 400, "KEY_MISSING").await;
}

/// Writer public key of a single-recipient header: after the 16-byte preamble, the packet length
/// (4) and method (4).
fn writer_key(header: &[u8]) -> [u8; 32] {
    header[24..56].try_into().unwrap()
}

#[tokio::test]
async fn header_decrypts_body_only_with_the_requesters_key() {
    let server = server_with_objects().await;
    let http = client(&server);
    let plaintext = data(200_000);
    let recipient = SecretKey::generate();
    let other = SecretKey::generate();
    let mut headers = Vec::new();
    for (path, key_name) in [
        ("c4gh/v1/objects/obj-1/header", "x-c4gh-public-key"),
        ("files/obj-1/header", "htsget-context-public-key"),
        ("files/obj-1/header", "x-c4gh-public-key"),
    ] {
        let response = http
            .get(format!("{}/{path}", server.base_url()))
            .header("authorization", server.bearer())
            .header(key_name, key_header(&recipient.public_key()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/vnd.ga4gh.crypt4gh.header"
        );
        assert_eq!(response.headers()["cache-control"], "no-store");
        let etag = response.headers()["x-c4gh-content-etag"].clone();
        assert_eq!(response.headers()["sda-content-etag"], etag);
        headers.push((etag, response.bytes().await.unwrap().to_vec()));
    }
    let body_response = http
        .get(format!("{}/c4gh/v1/objects/obj-1/body", server.base_url()))
        .header("authorization", server.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(body_response.status(), 200);
    let etag = body_response.headers()["etag"].clone();
    assert!(etag.to_str().unwrap().starts_with("\"sha256-"));
    let body = body_response.bytes().await.unwrap().to_vec();
    for (header_etag, header) in &headers {
        assert_eq!(header_etag, &etag);
        assert_eq!(header.len(), 124);
        let mut file = header.clone();
        file.extend_from_slice(&body);
        let mut out = Vec::new();
        c4gh::decrypt(&mut &file[..], &mut out, &[&recipient]).unwrap();
        assert_eq!(out, plaintext);
        let mut wrong = Vec::new();
        assert!(c4gh::decrypt(&mut &file[..], &mut wrong, &[&other]).is_err());
        assert!(wrong.is_empty());
    }
    // A fresh writer key per request, even for the same recipient.
    let writers: std::collections::HashSet<[u8; 32]> =
        headers.iter().map(|(_, h)| writer_key(h)).collect();
    assert_eq!(writers.len(), headers.len());
    // The raw 32-byte form of the key works too, and POST with an empty JSON body.
    let raw = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        recipient.public_key().as_bytes(),
    );
    let response = http
        .post(format!(
            "{}/c4gh/v1/objects/obj-1/header",
            server.base_url()
        ))
        .header("authorization", server.bearer())
        .header("x-c4gh-public-key", raw)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let header = response.bytes().await.unwrap();
    let mut file = header.to_vec();
    file.extend_from_slice(&body);
    let mut out = Vec::new();
    c4gh::decrypt(&mut &file[..], &mut out, &[&recipient]).unwrap();
    assert_eq!(out, plaintext);
}

#[tokio::test]
async fn reference_python_crypt4gh_decrypts_what_the_server_sends() {
    let python_crypt4gh = testkit::python_tool("crypt4gh");
    let server = server_with_objects().await;
    let http = client(&server);
    let dir = tempfile::tempdir().unwrap();
    let secret = SecretKey::generate();
    let sk_path = dir.path().join("k.sec");
    secret.write_file(&sk_path, None, None, 0o600).unwrap();
    let header = http
        .get(format!(
            "{}/c4gh/v1/objects/obj-1/header",
            server.base_url()
        ))
        .header("authorization", server.bearer())
        .header("x-c4gh-public-key", key_header(&secret.public_key()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let body = http
        .get(format!("{}/files/obj-1/content", server.base_url()))
        .header("authorization", server.bearer())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let mut file = header.to_vec();
    file.extend_from_slice(&body);
    let output = std::process::Command::new(python_crypt4gh)
        .args(["decrypt", "--sk"])
        .arg(&sk_path)
        .stdin(
            std::fs::File::open({
                let p = dir.path().join("file.c4gh");
                std::fs::write(&p, &file).unwrap();
                p
            })
            .unwrap(),
        )
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "crypt4gh decrypt failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.stdout, data(200_000));
}

#[tokio::test]
async fn body_ranges_resume_and_if_range() {
    let server = server_with_objects().await;
    let http = client(&server);
    let url = format!("{}/c4gh/v1/objects/obj-1/body", server.base_url());
    let get = |range: Option<&str>, if_range: Option<&str>| {
        let mut request = http.get(&url).header("authorization", server.bearer());
        if let Some(range) = range {
            request = request.header("range", range);
        }
        if let Some(if_range) = if_range {
            request = request.header("if-range", if_range);
        }
        request.send()
    };
    let full = get(None, None).await.unwrap();
    assert_eq!(full.headers()["accept-ranges"], "bytes");
    let etag = full.headers()["etag"].to_str().unwrap().to_owned();
    let body = full.bytes().await.unwrap();
    let size = body.len();
    assert_eq!(size as u64, c4gh::body::encrypted_len(200_000));

    // Resume: the first part, then the rest with If-Range.
    let first = get(Some("bytes=0-99999"), None).await.unwrap();
    assert_eq!(first.status(), 206);
    assert_eq!(
        first.headers()["content-range"],
        format!("bytes 0-99999/{size}").as_str()
    );
    let mut joined = first.bytes().await.unwrap().to_vec();
    let rest = get(Some("bytes=100000-"), Some(&etag)).await.unwrap();
    assert_eq!(rest.status(), 206);
    joined.extend_from_slice(&rest.bytes().await.unwrap());
    assert_eq!(joined, body);

    let suffix = get(Some("bytes=-10"), None).await.unwrap();
    assert_eq!(suffix.status(), 206);
    assert_eq!(&suffix.bytes().await.unwrap()[..], &body[size - 10..]);

    // A different validator: the whole body, 200.
    let stale = get(Some("bytes=100000-"), Some("\"sha256-0000\""))
        .await
        .unwrap();
    assert_eq!(stale.status(), 200);
    assert_eq!(stale.bytes().await.unwrap(), body);

    let beyond = get(Some(&format!("bytes={size}-")), None).await.unwrap();
    assert_eq!(
        beyond.headers()["content-range"],
        format!("bytes */{size}").as_str()
    );
    expect_problem(beyond, 416, "RANGE_NOT_SATISFIABLE").await;
    let malformed = get(Some("bytes=9-3"), None).await.unwrap();
    expect_problem(malformed, 400, "BAD_REQUEST").await;

    let head = http
        .head(format!("{}/files/obj-1/content", server.base_url()))
        .header("authorization", server.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], size.to_string().as_str());
    assert_eq!(head.headers()["etag"], etag.as_str());

    let forbidden = http
        .get(format!(
            "{}/c4gh/v1/objects/private/body",
            server.base_url()
        ))
        .header("authorization", server.bearer())
        .send()
        .await
        .unwrap();
    expect_problem(forbidden, 403, "FORBIDDEN").await;
}

#[tokio::test]
async fn objects_added_while_running_are_served_and_metrics_count() {
    let server = TestServer::start().await.unwrap();
    let http = client(&server);
    let url = format!("{}/objects/late", server.drs_url());
    let before = http
        .get(&url)
        .header("authorization", server.bearer())
        .send()
        .await
        .unwrap();
    expect_problem(before, 404, "NOT_FOUND").await;
    server
        .add("late", b"added after start", &["tester"])
        .unwrap();
    let after = http
        .get(&url)
        .header("authorization", server.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 200);
    let key = SecretKey::generate().public_key();
    for _ in 0..2 {
        let response = http
            .get(format!("{}/c4gh/v1/objects/late/header", server.base_url()))
            .header("authorization", server.bearer())
            .header("x-c4gh-public-key", key_header(&key))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let metrics = http
        .get(format!("{}/metrics", server.base_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("c4gh_drs_header_reencryptions_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "c4gh_drs_http_requests_total{route=\"/ga4gh/drs/v1/objects/{object_id}\",method=\"GET\",status=\"404\"} 1"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("c4gh_drs_http_request_duration_seconds_bucket"));
    assert!(
        !metrics.contains("late"),
        "object IDs must not become labels"
    );
    server.shutdown().await.unwrap();
}
