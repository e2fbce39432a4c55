//! What one client of the listener may take before it has proven anything: a bounded number of
//! connections at once, and deadlines on every connection, so that slow or idle clients (a
//! slowloris, or simply hundreds of open sockets) can neither grow the bot's memory nor starve
//! `/healthz`, `/metrics` and the signed deliveries of file descriptors.
//!
//! Written as an axum [`Listener`] because neither axum nor hyper bounds connections, and
//! hyper's header timeout does not cover the body or idle keep-alive connections.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Limits of the webhook listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Connections served at once; further ones wait in the kernel's backlog until one ends.
    pub max_connections: usize,
    /// A connection that sends nothing for this long is closed (a request half sent, or an idle
    /// keep-alive connection).
    pub idle_timeout: Duration,
    /// No connection lives longer than this, however it trickles.
    pub max_connection_age: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 32,
            idle_timeout: Duration::from_secs(10),
            max_connection_age: Duration::from_secs(30),
        }
    }
}

/// A [`TcpListener`] that accepts only while fewer than `max_connections` are open.
pub(crate) struct LimitedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    limits: ServerLimits,
}

impl LimitedListener {
    pub fn new(inner: TcpListener, limits: ServerLimits) -> Self {
        LimitedListener { inner, permits: Arc::new(Semaphore::new(limits.max_connections.max(1))), limits }
    }
}

impl Listener for LimitedListener {
    type Io = LimitedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let permit = self.permits.clone().acquire_owned().await.expect("the connection semaphore is never closed");
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    return (LimitedStream::new(stream, permit, self.limits), addr);
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment instead of spinning.
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection holding its slot until it is dropped, closed by its deadlines.
pub(crate) struct LimitedStream {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
    age: Pin<Box<Sleep>>,
}

impl LimitedStream {
    fn new(stream: TcpStream, permit: OwnedSemaphorePermit, limits: ServerLimits) -> Self {
        LimitedStream {
            stream,
            _permit: permit,
            idle_timeout: limits.idle_timeout,
            idle: Box::pin(tokio::time::sleep(limits.idle_timeout)),
            age: Box::pin(tokio::time::sleep(limits.max_connection_age)),
        }
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        if self.age.as_mut().poll(cx).is_ready() {
            return Some(io::Error::new(io::ErrorKind::TimedOut, "connection older than the server allows"));
        }
        None
    }
}

impl AsyncRead for LimitedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.expired(cx) {
            return Poll::Ready(Err(e));
        }
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if result.is_ok() && buf.filled().len() > before {
                    let next = Instant::now() + self.idle_timeout;
                    self.idle.as_mut().reset(next);
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                ready!(self.idle.as_mut().poll(cx));
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "client sent nothing for too long")))
            }
        }
    }
}

impl AsyncWrite for LimitedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if let Some(e) = self.expired(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.expired(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
