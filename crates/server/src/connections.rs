//! The connections a server holds, and who gives way when they are all
//! taken (docs/security.md, "Connections").
//!
//! `--max-connections` bounds the connections served at once. Clients that
//! hold a connection without using it — a header block sent a byte at a
//! time, answers pipelined and never read, an idle keep-alive — would
//! otherwise keep every newcomer waiting. So each connection's socket is
//! watched: since when it has waited for a request (from its accept, or the
//! end of its last request's handling), whether a request is being handled
//! on it, and whether an answer has been waiting to be written
//! ([`Watched`]). Then:
//!
//! - an answer the client does not take for `--write-timeout` closes the
//!   connection;
//! - when a new connection arrives and every slot is taken, the connection
//!   that has waited longest without a request being handled (at least
//!   [`MIN_STALL`]: a header block sent a byte at a time counts as waiting,
//!   however steadily it trickles) is closed to make room, taken first from
//!   the client address that holds the most connections. A connection whose
//!   request is being handled is never closed this way.
//!
//! This is the policy of nginx's reusable connections, with a fair share
//! between client addresses.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// How long a connection must have waited without a request being handled
/// before a newcomer may take its place: long enough for a client that
/// just connected to send its request.
pub const MIN_STALL: Duration = Duration::from_millis(500);

/// Every open connection, for the accept loop and the write-timeout sweep.
#[derive(Debug)]
pub(crate) struct Connections {
    epoch: Instant,
    open: Mutex<HashMap<u64, Arc<Connection>>>,
    next: AtomicU64,
}

/// What is known of one connection.
#[derive(Debug)]
pub(crate) struct Connection {
    id: u64,
    peer: IpAddr,
    epoch: Instant,
    /// Milliseconds from `epoch` to when it began to wait for a request:
    /// its accept, or the end of its last request's handling.
    waiting: AtomicU64,
    /// Milliseconds from `epoch` to when a write began to wait; 0: none is.
    write_waiting: AtomicU64,
    /// Requests being handled (hyper's HTTP/1 handles one at a time).
    busy: AtomicUsize,
    /// Told to close.
    close: Notify,
}

impl Connections {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Connections {
            epoch: Instant::now(),
            open: Mutex::default(),
            next: AtomicU64::new(1),
        })
    }

    fn millis(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// A new connection from `peer`, known until the returned guard drops.
    pub(crate) fn open(self: &Arc<Self>, peer: IpAddr) -> Registered {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection {
            id,
            peer,
            epoch: self.epoch,
            waiting: AtomicU64::new(self.millis()),
            write_waiting: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
            close: Notify::new(),
        });
        self.lock().insert(id, Arc::clone(&connection));
        Registered {
            connections: Arc::clone(self),
            connection,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Connection>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes the connection that has been stalled longest, from the
    /// address holding the most connections; `false` when none is stalled.
    pub(crate) fn make_room(&self) -> bool {
        let now = self.millis();
        let open = self.lock();
        let mut per_peer: HashMap<IpAddr, usize> = HashMap::new();
        for connection in open.values() {
            *per_peer.entry(connection.peer).or_default() += 1;
        }
        let victim = open
            .values()
            .filter(|c| c.busy.load(Ordering::Relaxed) == 0 || c.write_waiting.load(Ordering::Relaxed) != 0)
            .filter(|c| now.saturating_sub(c.waiting.load(Ordering::Relaxed)) >= MIN_STALL.as_millis() as u64)
            .max_by_key(|c| {
                (
                    per_peer.get(&c.peer).copied().unwrap_or(0),
                    now.saturating_sub(c.waiting.load(Ordering::Relaxed)),
                )
            });
        match victim {
            Some(victim) => {
                tracing::debug!(peer = %victim.peer, "all connections taken: closing a stalled one");
                victim.close.notify_one();
                true
            }
            None => false,
        }
    }

    /// Closes every connection whose answer has waited `timeout` to be
    /// written; run once a second.
    pub(crate) fn sweep(&self, timeout: Duration) {
        let now = self.millis();
        for connection in self.lock().values() {
            let since = connection.write_waiting.load(Ordering::Relaxed);
            if since != 0 && now.saturating_sub(since) >= timeout.as_millis() as u64 {
                tracing::debug!(peer = %connection.peer, "the client took no answer for the write timeout: closing");
                connection.close.notify_one();
            }
        }
    }
}

/// A connection's entry, removed when this drops.
#[derive(Debug)]
pub(crate) struct Registered {
    connections: Arc<Connections>,
    connection: Arc<Connection>,
}

impl Registered {
    pub(crate) fn connection(&self) -> &Arc<Connection> {
        &self.connection
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.connections.lock().remove(&self.connection.id);
    }
}

impl Connection {
    fn now(&self) -> u64 {
        // 0 means "no write waiting", so a time is never 0.
        (self.epoch.elapsed().as_millis() as u64).max(1)
    }

    /// Resolves when this connection is told to close.
    pub(crate) async fn closed(&self) {
        self.close.notified().await;
    }

    /// Marks a request as being handled until the guard drops.
    pub(crate) fn handling(self: &Arc<Self>) -> Handling {
        self.busy.fetch_add(1, Ordering::Relaxed);
        Handling(Arc::clone(self))
    }
}

/// A request being handled on a connection.
#[derive(Debug)]
pub(crate) struct Handling(Arc<Connection>);

impl Drop for Handling {
    fn drop(&mut self) {
        let c = &self.0;
        c.waiting.store(c.now(), Ordering::Relaxed);
        c.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A socket whose writes are noted on its [`Connection`]: a write that
/// waits, and the next that moves bytes.
#[derive(Debug)]
pub(crate) struct Watched<T> {
    io: T,
    connection: Arc<Connection>,
}

impl<T> Watched<T> {
    pub(crate) fn new(io: T, connection: Arc<Connection>) -> Self {
        Watched { io, connection }
    }

    fn wrote(&self, result: &Poll<io::Result<usize>>) {
        match result {
            Poll::Ready(Ok(n)) if *n > 0 => {
                self.connection.write_waiting.store(0, Ordering::Relaxed);
            }
            Poll::Pending => {
                let c = &self.connection;
                let _ = c
                    .write_waiting
                    .compare_exchange(0, c.now(), Ordering::Relaxed, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write(cx, data);
        self.wrote(&result);
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write_vectored(cx, data);
        self.wrote(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
