//! Per-connection time limits: a client must send a request's headers within `--header-timeout`
//! (counted from the connection's start, or from the first byte of a later request), and a
//! keep-alive connection waiting for its next request is closed after `--idle-timeout`.
//!
//! hyper's own `header_read_timeout` is not used: it starts when hyper begins waiting for a
//! request head, which on a keep-alive connection is the end of the previous response, so it
//! would also be the idle timeout, and it covers HTTP/1 only. Here one `Activity` per
//! connection follows both phases, for HTTP/1.1 and HTTP/2: `Watched` (the connection's I/O)
//! notes the first byte read while no request is open (HTTP/1.1 only: an HTTP/2 client sends
//! frames between requests, so there the header timeout covers the first request, the idle
//! timeout the time between the others), `Activity::begin` marks a request
//! as open until its response body has been sent (`Busy`, kept in the body), and
//! `Activity::expired` resolves when the phase the connection is in has lasted too long. A
//! connection is only ever closed with no request open, so no answer is cut.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes, HttpBody};
use hyper::body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The two client timeouts (`--header-timeout`, `--idle-timeout`).
#[derive(Debug, Clone, Copy)]
pub struct ClientTimeouts {
    /// How long a client may take to send a request's headers; also the longest pause allowed
    /// while it sends a body (`limits.rs`).
    pub header: Duration,
    /// How long a connection with no open request may wait for the next one.
    pub idle: Duration,
}

/// No head has started (`head_since`).
const NONE: u64 = u64::MAX;

#[derive(Debug)]
struct Shared {
    started: Instant,
    /// Requests whose response has not been sent to the end.
    open: AtomicUsize,
    /// Milliseconds after `started` when the last open request finished.
    idle_since: AtomicU64,
    /// Milliseconds after `started` when the first byte of the next request head was read, or
    /// `NONE`.
    head_since: AtomicU64,
    changed: tokio::sync::Notify,
}

/// What one connection is doing, shared by its I/O, its requests and its watchdog.
#[derive(Debug, Clone)]
pub(crate) struct Activity(Arc<Shared>);

impl Activity {
    /// A new connection: its first request's headers are due within the header timeout from now.
    pub(crate) fn new() -> Activity {
        Activity(Arc::new(Shared {
            started: Instant::now(),
            open: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            changed: tokio::sync::Notify::new(),
        }))
    }

    fn now(&self) -> u64 {
        u64::try_from(self.0.started.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    /// A request's head has arrived: the connection is busy until the returned guard is dropped.
    pub(crate) fn begin(&self) -> Busy {
        self.0.open.fetch_add(1, Ordering::SeqCst);
        self.0.head_since.store(NONE, Ordering::SeqCst);
        Busy(self.clone())
    }

    /// Bytes were read from the client; with no request open they start the next request's head.
    fn bytes_read(&self) {
        if self.0.open.load(Ordering::SeqCst) == 0
            && self.0.head_since.load(Ordering::SeqCst) == NONE
        {
            self.0.head_since.store(self.now(), Ordering::SeqCst);
            self.0.changed.notify_one();
        }
    }

    /// Resolves once the connection has had no open request for `timeouts.idle`, or a request
    /// head has been arriving for `timeouts.header`; never while a request is open.
    pub(crate) async fn expired(&self, timeouts: ClientTimeouts) {
        loop {
            // `notify_one` keeps a permit when nobody waits, so a change between this check
            // and the wait below is not missed.
            let deadline = phase_deadline(
                self.0.open.load(Ordering::SeqCst),
                self.0.idle_since.load(Ordering::SeqCst),
                self.0.head_since.load(Ordering::SeqCst),
                timeouts,
            );
            match deadline {
                None => self.0.changed.notified().await,
                Some(at) if at <= self.now() => return,
                Some(at) => {
                    let wake =
                        tokio::time::Instant::from_std(self.0.started) + Duration::from_millis(at);
                    tokio::select! {
                        _ = tokio::time::sleep_until(wake) => {}
                        _ = self.0.changed.notified() => {}
                    }
                }
            }
        }
    }
}

/// When (milliseconds after the connection started) a connection in this state is to be
/// closed: never while a request is open; a head that started arriving gets the header
/// timeout; otherwise the idle time counts from the last response.
fn phase_deadline(
    open: usize,
    idle_since: u64,
    head_since: u64,
    timeouts: ClientTimeouts,
) -> Option<u64> {
    let millis = |duration: Duration| u64::try_from(duration.as_millis()).unwrap_or(NONE - 1);
    if open > 0 {
        return None;
    }
    Some(match head_since {
        NONE => idle_since.saturating_add(millis(timeouts.idle)),
        since => since.saturating_add(millis(timeouts.header)),
    })
}

/// An open request; dropping it (when the response body has been sent, or a drain is over)
/// starts the connection's idle time when it was the last.
#[derive(Debug)]
pub(crate) struct Busy(Activity);

impl Drop for Busy {
    fn drop(&mut self) {
        let shared = &self.0 .0;
        if shared.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            shared.idle_since.store(self.0.now(), Ordering::SeqCst);
            shared.changed.notify_one();
        }
    }
}

/// A response body that keeps its request open until hyper has sent it (and dropped it).
pub(crate) struct BusyBody {
    body: Body,
    _busy: Busy,
}

impl BusyBody {
    pub(crate) fn wrap(body: Body, busy: Busy) -> Body {
        Body::new(BusyBody { body, _busy: busy })
    }
}

impl HttpBody for BusyBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A connection's I/O, noting reads in its `Activity`.
pub(crate) struct Watched<T> {
    inner: T,
    activity: Activity,
    /// Whether a read while idle starts a request head: on HTTP/1.1. An HTTP/2 client also
    /// sends frames between requests (window updates, pings, settings acknowledgements), so
    /// there the header timeout covers the first request only and the idle timeout the rest.
    marks_heads: bool,
}

impl<T> Watched<T> {
    pub(crate) fn new(inner: T, activity: Activity, marks_heads: bool) -> Watched<T> {
        Watched {
            inner,
            activity,
            marks_heads,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.marks_heads && matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before
        {
            self.activity.bytes_read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUTS: ClientTimeouts = ClientTimeouts {
        header: Duration::from_millis(300),
        idle: Duration::from_millis(600),
    };

    fn state(activity: &Activity) -> (usize, u64) {
        (
            activity.0.open.load(Ordering::SeqCst),
            activity.0.head_since.load(Ordering::SeqCst),
        )
    }

    #[test]
    fn deadlines_follow_the_phase() {
        // A new connection (head since 0) gets the header timeout.
        assert_eq!(phase_deadline(0, 0, 0, TIMEOUTS), Some(300));
        // An open request never expires.
        assert_eq!(phase_deadline(1, 0, NONE, TIMEOUTS), None);
        assert_eq!(phase_deadline(2, 0, 5, TIMEOUTS), None);
        // Idle since the last response.
        assert_eq!(phase_deadline(0, 5000, NONE, TIMEOUTS), Some(5600));
        // A head started arriving while idle.
        assert_eq!(phase_deadline(0, 5000, 5100, TIMEOUTS), Some(5400));
    }

    #[test]
    fn requests_and_reads_move_the_phase() {
        let activity = Activity::new();
        assert_eq!(state(&activity), (0, 0));
        let first = activity.begin();
        assert_eq!(state(&activity), (1, NONE));
        // Reads while a request is open (its body, a pipelined head) start nothing.
        activity.bytes_read();
        assert_eq!(state(&activity), (1, NONE));
        let second = activity.begin();
        drop(first);
        assert_eq!(state(&activity), (1, NONE));
        drop(second);
        assert_eq!(state(&activity), (0, NONE));
        activity.bytes_read();
        let (open, head_since) = state(&activity);
        assert_eq!(open, 0);
        assert_ne!(head_since, NONE);
        // Later bytes of the same head keep its start.
        activity.bytes_read();
        assert_eq!(state(&activity), (0, head_since));
    }
}
