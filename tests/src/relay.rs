//! A loopback TCP relay in front of a real server that cuts its first connection mid-response:
//! the network failure a long download meets, made on purpose. It passes bytes through
//! unchanged (TLS included, so the client still talks to the real server), and after
//! `cut_after` bytes from the server on the first connection it stops forwarding, tells the
//! test ([`Relay::cut`]), waits `pause`, and closes both sides. Later connections pass through
//! whole.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::Error;

/// The running relay; dropping it stops accepting.
#[derive(Debug)]
pub struct Relay {
    addr: SocketAddr,
    cut: Arc<Notify>,
    accept: JoinHandle<()>,
}

impl Relay {
    /// Listens on 127.0.0.1 and relays to `target` (a loopback address).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when it cannot listen.
    pub async fn start(target: SocketAddr, cut_after: u64, pause: Duration) -> Result<Self, Error> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|source| Error::Io {
                context: "listening for the relay".into(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Io {
            context: "the relay's address".into(),
            source,
        })?;
        let cut = Arc::new(Notify::new());
        let first = Arc::new(AtomicBool::new(true));
        let notify = Arc::clone(&cut);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let limit = first.swap(false, Ordering::SeqCst).then_some((
                    cut_after,
                    pause,
                    Arc::clone(&notify),
                ));
                tokio::spawn(relay(client, target, limit));
            }
        });
        Ok(Relay { addr, cut, accept })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Resolves when the first connection has been cut (before it is closed).
    pub async fn cut(&self) {
        self.cut.notified().await;
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn relay(client: TcpStream, target: SocketAddr, limit: Option<(u64, Duration, Arc<Notify>)>) {
    let Ok(server) = TcpStream::connect(target).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
    });
    let mut sent = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match server_read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let n = match &limit {
            Some((cut_after, _, _)) => {
                usize::try_from(cut_after.saturating_sub(sent)).map_or(n, |left| n.min(left))
            }
            None => n,
        };
        if client_write.write_all(&buf[..n]).await.is_err() {
            break;
        }
        sent += n as u64;
        if let Some((cut_after, pause, notify)) = &limit
            && sent >= *cut_after
        {
            notify.notify_one();
            tokio::time::sleep(*pause).await;
            break;
        }
    }
    upstream.abort();
}
