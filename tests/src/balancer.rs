//! A loopback L4 load balancer for several replicas of a server: each new client connection
//! goes to the next backend in turn (round robin), bytes pass through unchanged (TLS included,
//! so clients talk to the real servers), and a connection that carries no byte either way for
//! `idle` is closed, as cloud load balancers close idle connections. [`Balancer::connections`]
//! counts the connections each backend got.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::Error;

/// The running balancer; dropping it stops accepting (open connections end with their tasks).
#[derive(Debug)]
pub struct Balancer {
    addr: SocketAddr,
    counts: Arc<Vec<AtomicUsize>>,
    accept: JoinHandle<()>,
}

impl Balancer {
    /// Listens on 127.0.0.1 and spreads connections over `backends` (loopback addresses).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when it cannot listen; [`Error::Unexpected`] without backends.
    pub async fn start(backends: Vec<SocketAddr>, idle: Duration) -> Result<Self, Error> {
        if backends.is_empty() {
            return Err(Error::Unexpected("a balancer needs a backend".into()));
        }
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|source| Error::Io {
                context: "listening for the balancer".into(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Io {
            context: "the balancer's address".into(),
            source,
        })?;
        let counts: Arc<Vec<AtomicUsize>> =
            Arc::new(backends.iter().map(|_| AtomicUsize::new(0)).collect());
        let tally = Arc::clone(&counts);
        let accept = tokio::spawn(async move {
            let mut next = 0usize;
            while let Ok((client, _)) = listener.accept().await {
                let index = next % backends.len();
                next += 1;
                tally[index].fetch_add(1, Ordering::SeqCst);
                tokio::spawn(relay(client, backends[index], idle));
            }
        });
        Ok(Balancer {
            addr,
            counts,
            accept,
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections each backend got so far, in the order of the backends.
    pub fn connections(&self) -> Vec<usize> {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::SeqCst))
            .collect()
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Copies both ways until either side closes or nothing moves for `idle`.
async fn relay(client: TcpStream, target: SocketAddr, idle: Duration) {
    let Ok(server) = TcpStream::connect(target).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let (mut up, mut down) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        tokio::select! {
            read = client_read.read(&mut up) => match read {
                Ok(n) if n > 0 => {
                    if server_write.write_all(&up[..n]).await.is_err() {
                        break;
                    }
                }
                _ => break,
            },
            read = server_read.read(&mut down) => match read {
                Ok(n) if n > 0 => {
                    if client_write.write_all(&down[..n]).await.is_err() {
                        break;
                    }
                }
                _ => break,
            },
            () = tokio::time::sleep(idle) => break,
        }
    }
    let _ = client_write.shutdown().await;
    let _ = server_write.shutdown().await;
}
