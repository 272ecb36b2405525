//! Test support (feature `test-support`): a throw-away CA and a running server over real TLS on
//! an ephemeral loopback port, and a local GA4GH visa issuer ([`LocalVisaIssuer`]), for this
//! crate's and other crates' tests.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let server = drs_server::testing::TestServer::start().await.unwrap();
//! server.add("HG00096", b"hello", &["*"]).unwrap();
//! // A client trusts `server.ca_pem()` and sends `server.bearer()` to `server.drs_url()`.
//! assert!(server.drs_url().starts_with("https://127.0.0.1:"));
//! server.shutdown().await.unwrap();
//! # }
//! ```

use std::path::Path;

use c4gh::keys::{PublicKey, SecretKey};
use tempfile::TempDir;
use zeroize::Zeroizing;

use crate::admin::{AddError, AddOptions, add_file, add_to_store};
use crate::auth::tokens::StaticTokens;
use crate::catalog::ObjectRecord;
use crate::secret::SecretString;
use crate::server::{Config, RunningServer, ServeError, start};
use crate::store::S3Store;
use crate::tls::TlsConfig;

/// Why a test server could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestSupportError {
    /// Certificate generation failed.
    #[error(transparent)]
    Certificate(#[from] testkit::tls::TlsError),
    /// A temporary file could not be written.
    #[error("test server files: {0}")]
    Io(#[from] std::io::Error),
    /// The server did not start.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// A TLS configuration could not be built.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// A self-signed CA that issues server certificates: [`testkit::tls::TestCa`] with this server's
/// [`TlsConfig`].
#[derive(Debug)]
pub struct TestCa {
    ca: testkit::tls::TestCa,
}

impl TestCa {
    /// A new CA.
    pub fn new() -> Result<Self, TestSupportError> {
        Ok(TestCa {
            ca: testkit::tls::TestCa::new("c4gh-drs-server test CA")?,
        })
    }

    /// The CA certificate (PEM) that clients must trust.
    pub fn ca_pem(&self) -> String {
        self.ca.cert_pem()
    }

    /// A certificate (PEM) and key (PEM) for `names` (DNS names or IP addresses).
    pub fn issue(&self, names: &[&str]) -> Result<(String, Zeroizing<String>), TestSupportError> {
        let leaf = self.ca.issue_server(names)?;
        Ok((leaf.cert_pem, leaf.key_pem))
    }

    /// TLS configuration for `localhost` and `127.0.0.1`.
    pub fn server_tls(&self) -> Result<TlsConfig, TestSupportError> {
        let (cert, key) = self.issue(&["localhost", "127.0.0.1"])?;
        Ok(TlsConfig::Pem {
            cert_chain: cert.into_bytes(),
            key: Zeroizing::new(key.as_bytes().to_vec()),
        })
    }
}

/// A server with an empty catalog in a temporary directory, a fresh server key, one static
/// token (subject `tester`), listening on `127.0.0.1:0` with TLS from a fresh [`TestCa`].
#[derive(Debug)]
pub struct TestServer {
    server: RunningServer,
    ca: TestCa,
    catalog: TempDir,
    server_public: PublicKey,
    token: SecretString,
}

/// The subject of [`TestServer::bearer`]'s token.
pub const TEST_SUBJECT: &str = "tester";

impl TestServer {
    /// Starts a server with default settings.
    pub async fn start() -> Result<Self, TestSupportError> {
        Self::start_with(|_| {}).await
    }

    /// Starts a server after `customize` adjusted its [`Config`] (add tokens, a JWT issuer, a
    /// bulk limit…).
    pub async fn start_with(customize: impl FnOnce(&mut Config)) -> Result<Self, TestSupportError> {
        let ca = TestCa::new()?;
        let catalog = tempfile::tempdir()?;
        let key = SecretKey::generate();
        let server_public = key.public_key();
        let token = SecretString::new(format!("test-token-{:032x}", rand::random::<u128>()));
        let mut tokens = StaticTokens::default();
        tokens.insert(TEST_SUBJECT, &token);
        let mut config = Config::new(catalog.path().to_owned(), key, Some(ca.server_tls()?));
        config.tokens = tokens;
        customize(&mut config);
        let server = start(config).await?;
        Ok(TestServer {
            server,
            ca,
            catalog,
            server_public,
            token,
        })
    }

    /// Encrypts `plaintext` for the server key and registers it as `id` with `readers`.
    pub fn add(
        &self,
        id: &str,
        plaintext: &[u8],
        readers: &[&str],
    ) -> Result<ObjectRecord, AddError> {
        self.add_to_dataset(id, plaintext, readers, None)
    }

    /// [`add`](Self::add) with the body uploaded to `store` (a server started with
    /// `settings.body_store` set to the same store serves it from there).
    pub async fn add_in_store(
        &self,
        store: &S3Store,
        id: &str,
        plaintext: &[u8],
        readers: &[&str],
    ) -> Result<ObjectRecord, AddError> {
        let input = self.catalog.path().join(format!(".input-{id}"));
        std::fs::write(&input, plaintext).map_err(|source| AddError::Io {
            what: "writing",
            path: input.clone(),
            source,
        })?;
        let options = AddOptions {
            id: id.to_owned(),
            name: Some(format!("{id}.bin")),
            description: None,
            mime_type: None,
            dataset: None,
            readers: readers.iter().map(|r| (*r).to_owned()).collect(),
        };
        let record = add_to_store(
            self.catalog.path(),
            &self.server_public,
            &input,
            &options,
            store,
        )
        .await;
        let _ = std::fs::remove_file(&input);
        record
    }

    /// [`add`](Self::add), recording the object as part of `dataset`.
    pub fn add_to_dataset(
        &self,
        id: &str,
        plaintext: &[u8],
        readers: &[&str],
        dataset: Option<&str>,
    ) -> Result<ObjectRecord, AddError> {
        let input = self.catalog.path().join(format!(".input-{id}"));
        std::fs::write(&input, plaintext).map_err(|source| AddError::Io {
            what: "writing",
            path: input.clone(),
            source,
        })?;
        let options = AddOptions {
            id: id.to_owned(),
            name: Some(format!("{id}.bin")),
            description: None,
            mime_type: None,
            dataset: dataset.map(str::to_owned),
            readers: readers.iter().map(|r| (*r).to_owned()).collect(),
        };
        let record = add_file(self.catalog.path(), &self.server_public, &input, &options);
        let _ = std::fs::remove_file(&input);
        record
    }

    /// `https://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// `https://127.0.0.1:PORT/ga4gh/drs/v1`.
    pub fn drs_url(&self) -> String {
        self.server.drs_url()
    }

    /// `drs://127.0.0.1:PORT/{id}` (a URI with a port: clients need their allow-port option).
    pub fn drs_uri(&self, id: &str) -> String {
        format!("drs://{}/{id}", self.server.local_addr())
    }

    /// The CA certificate (PEM) to trust.
    pub fn ca_pem(&self) -> String {
        self.ca.ca_pem()
    }

    /// The static bearer token of subject [`TEST_SUBJECT`].
    pub fn token(&self) -> &SecretString {
        &self.token
    }

    /// `Bearer <token>`, the `Authorization` header value.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.token.expose())
    }

    /// The catalog directory.
    pub fn catalog_dir(&self) -> &Path {
        self.catalog.path()
    }

    /// The server's Crypt4GH public key.
    pub fn server_public_key(&self) -> PublicKey {
        self.server_public
    }

    /// The running server.
    pub fn server(&self) -> &RunningServer {
        &self.server
    }

    /// Shuts the server down (the catalog directory is removed when this is dropped).
    pub async fn shutdown(self) -> Result<(), ServeError> {
        self.server.shutdown().await
    }
}

/// A local GA4GH visa issuer for tests: an ES256 key made at start, its JWKS served over HTTPS
/// on `127.0.0.1` (certificate from its own [`TestCa`]), and signed `ControlledAccessGrants`
/// visas. [`LocalVisaIssuer::passport_config`] is what a server needs to trust it. It also
/// signs any claims ([`LocalVisaIssuer::sign`]), so it serves as the OpenID Connect issuer of
/// other tokens (e.g. web identity tokens for an STS).
pub struct LocalVisaIssuer {
    issuer: String,
    jwks_url: String,
    ca: TestCa,
    encoding: jsonwebtoken::EncodingKey,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for LocalVisaIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalVisaIssuer")
            .field("issuer", &self.issuer)
            .field("jwks_url", &self.jwks_url)
            .finish_non_exhaustive()
    }
}

impl Drop for LocalVisaIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LocalVisaIssuer {
    /// The `kid` of the issuer's key.
    pub const KID: &'static str = "local-visa-key";

    /// Starts the issuer (its `iss` is `issuer`).
    pub async fn start(issuer: &str) -> Result<Self, TestSupportError> {
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| std::io::Error::other("generating a P-256 key"))?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|_| std::io::Error::other("loading the P-256 key"))?;
        let public = pair.public_key().as_ref();
        let jwks = serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": Self::KID, "use": "sig", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(&public[1..33]), "y": URL_SAFE_NO_PAD.encode(&public[33..]),
        }]});
        let ca = TestCa::new()?;
        let tls = crate::tls::server_config(&ca.server_tls()?)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let body = jwks.clone();
                async move { axum::Json(body) }
            }),
        );
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        let _ = hyper_util::server::conn::auto::Builder::new(
                            hyper_util::rt::TokioExecutor::new(),
                        )
                        .serve_connection(
                            hyper_util::rt::TokioIo::new(tls),
                            hyper_util::service::TowerToHyperService::new(app),
                        )
                        .await;
                    }
                });
            }
        });
        Ok(LocalVisaIssuer {
            issuer: issuer.to_owned(),
            jwks_url: format!("https://{addr}/jwks"),
            ca,
            encoding: jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref()),
            task,
        })
    }

    /// A configuration trusting this issuer (and its CA for the JWKS).
    pub fn passport_config(&self) -> crate::auth::passport::PassportConfig {
        let mut config =
            crate::auth::passport::PassportConfig::new(vec![crate::auth::passport::VisaIssuer {
                issuer: self.issuer.clone(),
                jwks_url: self.jwks_url.clone(),
            }]);
        config.ca_pem = Some(self.ca.ca_pem().into_bytes());
        config
    }

    /// The issuer (`iss`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The URL of the JWKS (HTTPS on loopback).
    pub fn jwks_url(&self) -> &str {
        &self.jwks_url
    }

    /// The CA of the JWKS server's certificate (PEM).
    pub fn ca_pem(&self) -> String {
        self.ca.ca_pem()
    }

    /// `claims` signed with ES256 under [`LocalVisaIssuer::KID`] (empty if they cannot be
    /// serialised).
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(Self::KID.to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap_or_default()
    }

    /// A `ControlledAccessGrants` visa for `dataset`, held by `holder`, valid for an hour.
    pub fn grant(&self, holder: &str, dataset: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = serde_json::json!({
            "iss": self.issuer, "sub": holder, "iat": now, "exp": now + 3600,
            "ga4gh_visa_v1": {"type": "ControlledAccessGrants", "value": dataset,
                "source": "https://dac.test/local", "by": "dac", "asserted": now - 60}
        });
        self.sign(&claims)
    }
}
