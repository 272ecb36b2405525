//! A TCP pass-through on loopback for resume tests: it forwards bytes unchanged (TLS stays end
//! to end) and, while `slow` is set, holds the server-to-client direction to a fixed rate, so
//! that a test can stop a client in the middle of a body; while `refuse` is set it cuts every
//! connection and closes new ones at once (a server that went away).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Server-to-client bytes per second while slow.
pub const SLOW_BYTES_PER_SEC: u64 = 2 << 20;

/// The running pass-through.
#[derive(Debug)]
pub struct Throttle {
    /// Whether the server-to-client direction is held to [`SLOW_BYTES_PER_SEC`].
    pub slow: Arc<AtomicBool>,
    /// Whether connections are cut.
    pub refuse: Arc<AtomicBool>,
}

impl Throttle {
    /// Forwards every connection accepted on `listener` to `upstream`; starts slow.
    pub fn start(listener: TcpListener, upstream: SocketAddr) -> Self {
        let slow = Arc::new(AtomicBool::new(true));
        let refuse = Arc::new(AtomicBool::new(false));
        let (flag, cut) = (Arc::clone(&slow), Arc::clone(&refuse));
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if cut.load(Ordering::SeqCst) {
                    continue;
                }
                let (flag, cut) = (Arc::clone(&flag), Arc::clone(&cut));
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        forward(client, server, flag, cut).await;
                    }
                });
            }
        });
        Throttle { slow, refuse }
    }
}

async fn forward(
    client: TcpStream,
    server: TcpStream,
    slow: Arc<AtomicBool>,
    refuse: Arc<AtomicBool>,
) {
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    let up = async move {
        let _ = tokio::io::copy(&mut client_rx, &mut server_tx).await;
        let _ = server_tx.shutdown().await;
    };
    let down = async move {
        let mut buf = vec![0u8; 16 * 1024];
        while !refuse.load(Ordering::SeqCst) {
            let n = match server_rx.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if client_tx.write_all(&buf[..n]).await.is_err() {
                break;
            }
            if slow.load(Ordering::SeqCst) {
                let micros = n as u64 * 1_000_000 / SLOW_BYTES_PER_SEC;
                tokio::time::sleep(Duration::from_micros(micros)).await;
            }
        }
        let _ = client_tx.shutdown().await;
    };
    tokio::join!(up, down);
}
