//! A fault-injecting TLS proxy for soak tests: it terminates the client's TLS with a
//! certificate of its own CA, opens a TLS connection to the real server for every client
//! connection, passes requests through unchanged and damages responses on purpose — per
//! connection at most one fault at a random offset: the connection cut (FIN without TLS
//! `close_notify`), reset (RST), one flipped bit, or a stall longer than the client's deadlines.
//!
//! Terminating TLS is what lets a flipped bit reach the client's HTTP, JSON, Crypt4GH and
//! checksum code (under end-to-end TLS it would only ever be a record MAC failure) — it stands
//! for a corrupting hop or server. Offsets are log-uniform, so small responses (DRS object JSON,
//! access URLs, headers) are hit as often as bodies. A bit is never flipped within 80 bytes after
//! a `://`, so that a damaged URL cannot send the client to an address outside loopback.
//!
//! Faults are reproducible from the seed: the n-th connection whose first request names object
//! `ID` gets the fault drawn from `(seed, ID, n)`, whatever other connections run concurrently
//! (use one HTTP client per object id for that).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;

/// What the proxy does wrong.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The seed all faults derive from.
    pub seed: u64,
    /// Share of connections that get a fault.
    pub fault_rate: f64,
    /// How long a stall lasts (longer than the client's deadlines).
    pub stall: Duration,
    /// Largest fault offset in a connection's response bytes.
    pub max_offset: u64,
}

/// Faults injected so far.
#[derive(Debug, Default)]
pub struct ProxyStats {
    /// Client connections accepted.
    pub connections: AtomicU64,
    /// Connections cut (FIN, no `close_notify`).
    pub cuts: AtomicU64,
    /// Connections reset (RST).
    pub resets: AtomicU64,
    /// Bits flipped.
    pub flips: AtomicU64,
    /// Flips not done because they would have landed in a URL.
    pub flips_skipped: AtomicU64,
    /// Stalls.
    pub stalls: AtomicU64,
}

impl ProxyStats {
    /// Faults that actually happened.
    pub fn faults(&self) -> u64 {
        self.cuts.load(Ordering::Relaxed)
            + self.resets.load(Ordering::Relaxed)
            + self.flips.load(Ordering::Relaxed)
            + self.stalls.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    Cut(u64),
    Reset(u64),
    Flip(u64, u8),
    Stall(u64),
}

impl Fault {
    fn offset(self) -> u64 {
        match self {
            Fault::Cut(o) | Fault::Reset(o) | Fault::Flip(o, _) | Fault::Stall(o) => o,
        }
    }
}

/// The running proxy.
pub struct FaultProxy {
    addr: SocketAddr,
    ca_pem: String,
    /// What it injected.
    pub stats: Arc<ProxyStats>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared {
    config: ProxyConfig,
    upstream: SocketAddr,
    connector: tokio_rustls::TlsConnector,
    acceptor: tokio_rustls::TlsAcceptor,
    per_object: Mutex<HashMap<String, u64>>,
    stats: Arc<ProxyStats>,
}

impl FaultProxy {
    /// Binds `127.0.0.1:0` (use [`FaultProxy::addr`] before the upstream exists, e.g. as the
    /// server's public URL).
    pub async fn bind() -> (TcpListener, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        (listener, addr)
    }

    /// Proxies `listener` to the TLS server at `upstream` (trusting `upstream_ca_pem`).
    pub fn start(
        listener: TcpListener,
        upstream: SocketAddr,
        upstream_ca_pem: &str,
        config: ProxyConfig,
    ) -> FaultProxy {
        let addr = listener.local_addr().unwrap();
        let ca = testkit::tls::TestCa::new("fault proxy test CA").unwrap();
        let leaf = ca.issue_server(&["localhost", "127.0.0.1"]).unwrap();
        let mut tls = testkit::tls::server_config(&leaf).unwrap();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let mut client = testkit::tls::client_config(upstream_ca_pem).unwrap();
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        let stats = Arc::new(ProxyStats::default());
        let shared = Arc::new(Shared {
            config,
            upstream,
            connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
            acceptor,
            per_object: Mutex::new(HashMap::new()),
            stats: Arc::clone(&stats),
        });
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    let _ = serve(shared, tcp).await;
                });
            }
        });
        FaultProxy {
            addr,
            ca_pem: ca.cert_pem(),
            stats,
            task,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The CA certificate clients must trust (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }
}

/// The object id a request names (`…/objects/ID…`), else the path.
fn object_key(request: &[u8]) -> String {
    let line = request.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let path = line.split(' ').nth(1).unwrap_or_default();
    match path.find("/objects/") {
        Some(i) => path[i + "/objects/".len()..]
            .split(['/', '?'])
            .next()
            .unwrap_or_default()
            .to_owned(),
        None => path.to_owned(),
    }
}

fn draw(config: &ProxyConfig, key: &str, n: u64) -> Option<Fault> {
    let mut h = config.seed ^ 0x9e37_79b9_7f4a_7c15;
    for b in key.bytes().chain(n.to_le_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut rng = StdRng::seed_from_u64(h);
    if !rng.gen_bool(config.fault_rate) {
        return None;
    }
    let max = (config.max_offset.max(2) as f64).ln();
    let offset = rng.gen_range(0.0..max).exp() as u64;
    Some(match rng.gen_range(0..4) {
        0 => Fault::Cut(offset),
        1 => Fault::Reset(offset),
        2 => Fault::Flip(offset, rng.gen_range(0..8)),
        _ => Fault::Stall(offset),
    })
}

async fn serve(shared: Arc<Shared>, tcp: TcpStream) -> std::io::Result<()> {
    shared.stats.connections.fetch_add(1, Ordering::Relaxed);
    let std_tcp = tcp.into_std()?;
    let handle = std_tcp.try_clone()?;
    let tcp = TcpStream::from_std(std_tcp)?;
    let mut client = shared.acceptor.accept(tcp).await?;
    let mut first = vec![0u8; 16 * 1024];
    let n = client.read(&mut first).await?;
    if n == 0 {
        return Ok(());
    }
    let key = object_key(&first[..n]);
    let index = {
        let mut map = shared.per_object.lock().unwrap();
        let e = map.entry(key.clone()).or_insert(0);
        *e += 1;
        *e
    };
    let mut fault = draw(&shared.config, &key, index);
    let up = TcpStream::connect(shared.upstream).await?;
    let name = rustls::pki_types::ServerName::IpAddress(shared.upstream.ip().into());
    let mut server = shared.connector.connect(name, up).await?;
    server.write_all(&first[..n]).await?;
    let (mut client_rx, mut client_tx) = tokio::io::split(client);
    let (mut server_rx, mut server_tx) = tokio::io::split(server);
    let upstream = async {
        let _ = tokio::io::copy(&mut client_rx, &mut server_tx).await;
        let _ = server_tx.shutdown().await;
        std::future::pending::<()>().await;
    };
    let downstream = async {
        let mut buf = vec![0u8; 16 * 1024];
        let mut sent = 0u64;
        let mut tail: Vec<u8> = Vec::new();
        loop {
            let n = server_rx.read(&mut buf).await?;
            if n == 0 {
                client_tx.shutdown().await?;
                return Ok::<_, std::io::Error>(());
            }
            let chunk = &mut buf[..n];
            if let Some(f) = fault.filter(|f| f.offset() < sent + n as u64) {
                fault = None;
                let i = usize::try_from(f.offset().saturating_sub(sent)).unwrap();
                match f {
                    Fault::Flip(_, bit) => {
                        let mut before = tail.clone();
                        before.extend_from_slice(&chunk[..i]);
                        let window = &before[before.len().saturating_sub(80)..];
                        if window.windows(3).any(|w| w == b"://") {
                            shared.stats.flips_skipped.fetch_add(1, Ordering::Relaxed);
                        } else {
                            chunk[i] ^= 1 << bit;
                            shared.stats.flips.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Fault::Cut(_) | Fault::Reset(_) => {
                        client_tx.write_all(&chunk[..i]).await?;
                        client_tx.flush().await?;
                        // Returning drops every handle of the socket: a FIN, or with a zero
                        // linger time an RST, and never a TLS close_notify.
                        if let Fault::Reset(_) = f {
                            socket2::SockRef::from(&handle).set_linger(Some(Duration::ZERO))?;
                            shared.stats.resets.fetch_add(1, Ordering::Relaxed);
                        } else {
                            shared.stats.cuts.fetch_add(1, Ordering::Relaxed);
                        }
                        return Ok(());
                    }
                    Fault::Stall(_) => {
                        client_tx.write_all(&chunk[..i]).await?;
                        client_tx.flush().await?;
                        shared.stats.stalls.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(shared.config.stall).await;
                        client_tx.write_all(&chunk[i..]).await?;
                        client_tx.flush().await?;
                        sent += n as u64;
                        continue;
                    }
                }
            }
            client_tx.write_all(chunk).await?;
            client_tx.flush().await?;
            sent += n as u64;
            let keep = chunk.len().min(80);
            tail = chunk[chunk.len() - keep..].to_vec();
        }
    };
    tokio::select! {
        () = upstream => Ok(()),
        r = downstream => r,
    }
}
