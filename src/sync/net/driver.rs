//! The tokio driver: moves messages between a [`Conn`] and a [`Session`] over any
//! [`SyncStore`].
//!
//! It reads and writes at the same time (a session may be sending a long stream while the peer
//! sends one too), and runs every store step of the session in `spawn_blocking`, so no LMDB
//! transaction is held across an `.await` and the executor never waits on the disk.
//!
//! Everything a peer can make it hold or wait for is bounded here: it reads only while the
//! session wants input (its outgoing side is under its bound) and while the connection's peer
//! data is covered by the memory budget; it encodes the next outgoing chunk only once the last
//! one is written; the handshake and every quiet spell before the session is live have a
//! deadline; a shutdown ends the session after the store step in progress.

use std::time::Instant;

use rand::RngCore;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use super::budget::Held;
use super::conn::{Conn, Deadlines, Wait};
use super::options::{Progress, SyncOptions, SyncReport};
use crate::log::LogError;
use crate::log::Subscription;
use crate::sync::error::SyncError;
use crate::sync::limits::{CLOSE_GRACE, LIVE_POLL, OUT_CHUNK, PROGRESS_EVERY, QUIET};
use crate::sync::session::{Phase, Session, SessionConfig, SessionStats};
use crate::sync::store::StoreError;
use crate::sync::store::SyncStore;
use crate::sync::wire::codec::encode;

/// Syncs `store` (a [`crate::Log`], or any [`SyncStore`]) with the peer at the other end of
/// `stream`, per `options`.
///
/// Returns when both sides have what the other had at the start (or, when live, when either
/// side closes). A peer that does not finish its handshake, or goes quiet, in time fails it
/// with [`SyncError::Timeout`] (see [`SyncOptions`]; both are on by default). On error,
/// everything received and checked so far is kept, and the peer is told why with an `Abort`
/// when it can be; [`sync_reporting`] also says what was done before the error.
pub async fn sync<S, T>(
    store: &S,
    stream: T,
    options: SyncOptions,
) -> Result<SyncReport, SyncError<S::Error>>
where
    S: SyncStore + Clone + Send + 'static,
    T: AsyncRead + AsyncWrite + Unpin + Send,
{
    sync_reporting(store, stream, options)
        .await
        .map_err(|f| f.error)
}

/// A sync that failed, with what it did before: the nodes it committed (kept in the store)
/// and sent.
#[derive(Debug)]
pub struct SyncFailure<E = LogError> {
    /// Why it failed.
    pub error: SyncError<E>,
    /// The counters up to the failure; `nodes_received` counts only nodes committed.
    pub report: SyncReport,
}

impl<E: StoreError> std::fmt::Display for SyncFailure<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (after storing {} new nodes)",
            self.error, self.report.nodes_received
        )
    }
}

impl<E: StoreError> std::error::Error for SyncFailure<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// [`sync`], reporting the counters on failure too.
pub async fn sync_reporting<S, T>(
    store: &S,
    stream: T,
    options: SyncOptions,
) -> Result<SyncReport, SyncFailure<S::Error>>
where
    S: SyncStore + Clone + Send + 'static,
    T: AsyncRead + AsyncWrite + Unpin + Send,
{
    let started = Instant::now();
    // Subscribe before reading the heads, so no commit between the two is missed.
    let changes = store.subscribe();
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    let cfg = SessionConfig {
        mode: options.mode,
        live: options.live,
        filter_key: key,
    };
    let (owned, limits) = (store.clone(), options.limits.clone());
    let (rd, wr) = tokio::io::split(stream);
    let mut conn = Conn::new(rd, wr);
    let mut driver = Driver {
        session: None,
        last_progress: (Phase::Handshake, 0),
    };
    let session = tokio::task::spawn_blocking(move || Session::with_limits(owned, cfg, limits));
    match joined(session.await).and_then(|r| r) {
        Ok(s) => driver.session = Some(s),
        Err(error) => {
            let report = driver.report(&conn, started);
            return Err(SyncFailure { error, report });
        }
    }
    let result = driver.run(&mut conn, &options, changes, store).await;
    let error = match result {
        Err(e) => Some(driver.abort(&mut conn, e, &options).await),
        Ok(()) if driver.session.is_none() => Some(SyncError::ShuttingDown { state: "finishing" }),
        Ok(()) => None,
    };
    let report = driver.report(&conn, started);
    match error {
        Some(error) => Err(SyncFailure { error, report }),
        None => Ok(report),
    }
}

/// A blocking task's outcome: a panic in a session step is a bug and propagates; a task the
/// runtime cancelled (it is shutting down) is a typed error, never a panic.
fn joined<R, E>(r: Result<R, tokio::task::JoinError>) -> Result<R, SyncError<E>> {
    match r {
        Ok(v) => Ok(v),
        Err(e) => match e.try_into_panic() {
            Ok(p) => std::panic::resume_unwind(p),
            Err(_) => Err(SyncError::ShuttingDown {
                state: "running a store step",
            }),
        },
    }
}

struct Driver<S: SyncStore> {
    /// Taken while a store step runs in the blocking pool; `None` afterwards only if that
    /// task was cancelled, and then the run has already returned.
    session: Option<Session<S>>,
    last_progress: (Phase, u64),
}

/// What woke the driver.
enum Event {
    Read(std::io::Result<usize>),
    Wrote(std::io::Result<usize>),
    Memory,
    LocalChange(Option<u64>),
    Poll,
    Shutdown,
    Deadline(Wait),
}

impl<S: SyncStore + Clone + Send + 'static> Driver<S> {
    fn report<R, W>(&self, conn: &Conn<R, W>, started: Instant) -> SyncReport {
        let st = self.session.as_ref().map(|s| s.stats().clone());
        let st: SessionStats = st.unwrap_or_default();
        SyncReport {
            peer: self.session.as_ref().and_then(|s| s.peer_id()),
            nodes_sent: st.nodes_sent,
            nodes_received: st.nodes_received,
            duplicates: st.duplicates,
            bytes_sent: conn.wr.bytes,
            bytes_received: conn.rd.bytes,
            node_bytes_sent: st.node_bytes_sent,
            node_bytes_received: st.node_bytes_received,
            filtered: st.filtered,
            round_trips: st.round_trips,
            duration: started.elapsed(),
        }
    }

    /// After `error` ended the run: commits the checked batch (an interrupted sync keeps what
    /// it got), then tells the peer why with an `Abort`, best-effort (see [`Conn::abort`]),
    /// never at all once a write failed. Gives back the error.
    async fn abort<R, W>(
        &mut self,
        conn: &mut Conn<R, W>,
        error: SyncError<S::Error>,
        options: &SyncOptions,
    ) -> SyncError<S::Error>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        if self.session.is_none() {
            return error;
        }
        let (error, msg) = match self
            .blocking(move |s| {
                let m = s.abort(&error);
                Ok((error, m))
            })
            .await
        {
            Ok(r) => r,
            Err(e) => return e,
        };
        let Some(msg) = msg.filter(|_| !conn.wr.broken) else {
            return error;
        };
        // Not after a timeout (a silent peer will not close) or for a shutdown (it must be
        // prompt).
        let linger = !matches!(
            error,
            SyncError::Timeout { .. } | SyncError::ShuttingDown { .. }
        );
        conn.abort(&msg, linger, options.idle_timeout).await;
        error
    }

    fn s(&self) -> &Session<S> {
        self.session.as_ref().expect("present between store steps")
    }

    /// Runs `f` on the session in the blocking pool.
    async fn blocking<R: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Session<S>) -> Result<R, SyncError<S::Error>> + Send + 'static,
    ) -> Result<R, SyncError<S::Error>> {
        let mut s = self
            .session
            .take()
            .ok_or(SyncError::<S::Error>::ShuttingDown {
                state: "running a store step",
            })?;
        let (s, r) = joined(
            tokio::task::spawn_blocking(move || {
                let r = f(&mut s);
                (s, r)
            })
            .await,
        )
        .map_err(|e: SyncError<S::Error>| e)?;
        self.session = Some(s);
        r
    }

    fn progress<R, W>(&mut self, options: &SyncOptions, conn: &Conn<R, W>) {
        let Some(tx) = &options.progress else { return };
        let Some(s) = self.session.as_ref() else {
            return;
        };
        let st = s.stats();
        let nodes = st.nodes_sent + st.nodes_received;
        let phase = s.phase();
        if phase == self.last_progress.0 && nodes < self.last_progress.1 + PROGRESS_EVERY {
            return;
        }
        self.last_progress = (phase, nodes);
        let _ = tx.try_send(Progress {
            phase,
            nodes_sent: st.nodes_sent,
            nodes_received: st.nodes_received,
            bytes: conn.rd.bytes + conn.wr.bytes,
            total_hint: st.total_hint,
        });
    }

    fn state(&self) -> &'static str {
        match self.session.as_ref().map(|s| s.phase()) {
            Some(Phase::Handshake) => "handshaking",
            Some(Phase::CatchUp) => "catching up",
            Some(Phase::Live) => "live",
            _ => "finishing",
        }
    }

    /// Encodes the session's next messages, up to [`OUT_CHUNK`] bytes, in the blocking pool.
    async fn encode_chunk<W: AsyncWrite + Unpin>(
        &mut self,
        wr: &mut super::conn::WriteHalf<W>,
    ) -> Result<(), SyncError<S::Error>> {
        let mut buf = wr.take_buffer();
        let buf = self
            .blocking(move |s| {
                buf.clear();
                while buf.len() < OUT_CHUNK {
                    match s.poll_transmit()? {
                        Some(m) => encode(&m, &mut buf),
                        None => break,
                    }
                }
                Ok(buf)
            })
            .await?;
        wr.set_chunk(buf);
        Ok(())
    }

    /// Hands the messages read to the session (and, live, flushes), in the blocking pool.
    async fn take_input<R: AsyncRead + Unpin>(
        &mut self,
        rd: &mut super::conn::ReadHalf<R>,
    ) -> Result<(), SyncError<S::Error>> {
        let msgs = rd.messages()?;
        if msgs.is_empty() {
            return Ok(());
        }
        self.blocking(move |s| {
            for m in msgs {
                s.handle(m)?;
            }
            if s.phase() == Phase::Live {
                s.flush()?;
            }
            Ok(())
        })
        .await
    }

    /// Moves messages between `conn` and the session until it is over. Each turn encodes the
    /// next chunk when the last one is written, then waits for one [`Event`].
    async fn run<R, W>(
        &mut self,
        conn: &mut Conn<R, W>,
        options: &SyncOptions,
        mut changes: Option<Subscription>,
        store: &S,
    ) -> Result<(), SyncError<S::Error>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut held = Held::new(options.memory.clone());
        let mut shutdown = options.shutdown.clone();
        let mut clock = Deadlines::new(options.handshake_timeout, options.idle_timeout);
        // Commits by other processes on the same store do not reach `changes`: look at the
        // feed's end now and then while live.
        let mut poll: Option<tokio::time::Interval> = None;
        loop {
            if let Some(e) = conn.take_failure() {
                return Err(e.into());
            }
            if conn.wr.ready() && self.s().wants_transmit() {
                self.encode_chunk(&mut conn.wr).await?;
                // Our own store work is not the peer's silence.
                clock.touch();
            }
            if self.s().is_finished() && !conn.wr.unsent() {
                break;
            }
            let phase = self.s().phase();
            let live = phase == Phase::Live;
            if live && poll.is_none() {
                let mut p = tokio::time::interval(LIVE_POLL);
                p.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                poll = Some(p);
            }
            // Room for one more read: what the connection and the session hold.
            let short = held.cover(conn.buffered() + self.s().buffered_bytes());
            let eof = conn.rd.eof;
            let can_read = !eof && short.is_none() && self.s().wants_input();
            let deadline = clock.next(phase, conn.mid_frame_or_unsent() || short.is_some());
            let (rd, wr) = (&mut conn.rd, &mut conn.wr);
            let event = tokio::select! {
                r = rd.read(), if can_read => Event::Read(r),
                r = wr.write(), if wr.unsent() => Event::Wrote(r),
                () = held.wait(short.unwrap_or(0)), if short.is_some() && !eof => Event::Memory,
                seq = changed(&mut changes), if live => Event::LocalChange(seq),
                _ = tick(&mut poll), if live => Event::Poll,
                _ = wait_true(&mut shutdown), if shutdown.is_some() => Event::Shutdown,
                () = sleep_until(deadline), if deadline.is_some() => {
                    Event::Deadline(deadline.map_or(Wait::Idle, |d| d.1))
                }
            };
            match event {
                Event::Read(r) => {
                    if r? == 0 {
                        self.blocking(|s| s.on_eof()).await?;
                        if !self.s().is_finished() {
                            return Err(SyncError::UnexpectedEof { state: "reading" });
                        }
                        continue;
                    }
                    self.take_input(&mut conn.rd).await?;
                    clock.touch();
                }
                Event::Wrote(Ok(_)) => clock.touch(),
                // A live peer that closed first stops reading: nothing is lost.
                Event::Wrote(Err(_)) if phase == Phase::Finished && self.s().is_live() => break,
                Event::Wrote(Err(e)) => {
                    conn.wr.fail(e);
                    // The peer hung up: read on to its end of stream, which says why
                    // (typed), unless that already came.
                    if let Some(e) = conn.take_failure() {
                        return Err(e.into());
                    }
                    continue;
                }
                Event::Memory => {}
                Event::LocalChange(seq) => {
                    if let (Some(seq), Some(s)) = (seq, self.session.as_mut()) {
                        s.local_changed(seq);
                    }
                }
                Event::Poll => {
                    if let (Ok(seq), Some(s)) = (store.last_seq(), self.session.as_mut()) {
                        s.local_changed(seq);
                    }
                }
                Event::Shutdown => {
                    shutdown = None;
                    if live {
                        self.blocking(|s| s.close()).await?;
                    } else if phase == Phase::Handshake || clock.quiet_for() >= QUIET {
                        // Idle: the store step in progress has finished; the caller commits
                        // what it checked.
                        return Err(SyncError::ShuttingDown {
                            state: self.state(),
                        });
                    }
                    // Busy: it may finish on its own, for a while.
                    clock.close_within(CLOSE_GRACE);
                }
                Event::Deadline(Wait::Handshake) => {
                    return Err(SyncError::Timeout {
                        state: "handshaking",
                        after: options.handshake_timeout.unwrap_or_default(),
                    })
                }
                Event::Deadline(Wait::Close) => {
                    return Err(SyncError::ShuttingDown {
                        state: self.state(),
                    })
                }
                Event::Deadline(Wait::Idle) => {
                    return Err(SyncError::Timeout {
                        state: self.state(),
                        after: options.idle_timeout.unwrap_or_default(),
                    })
                }
            }
            self.progress(options, conn);
        }
        if let Err(e) = conn.wr.flush().await {
            if !self.s().is_live() {
                return Err(e.into());
            }
        }
        // The peer may already be gone once both sides are done; that is not an error.
        let _ = conn.wr.shutdown().await;
        self.progress(options, conn);
        Ok(())
    }
}

async fn changed(changes: &mut Option<Subscription>) -> Option<u64> {
    match changes {
        Some(c) => c.changed().await,
        None => std::future::pending().await,
    }
}

async fn tick(poll: &mut Option<tokio::time::Interval>) {
    match poll {
        Some(p) => {
            p.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<(tokio::time::Instant, Wait)>) {
    match deadline {
        Some((d, _)) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn wait_true(rx: &mut Option<watch::Receiver<bool>>) {
    match rx {
        Some(rx) => {
            // A dropped sender counts as a shutdown, as it always has.
            let _ = rx.wait_for(|v| *v).await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The runtime cancels blocking tasks when it shuts down: the driver then returns a typed
    /// error instead of panicking on the `JoinError`.
    #[tokio::test]
    async fn a_cancelled_task_is_an_error_not_a_panic() {
        let task = tokio::spawn(std::future::pending::<()>());
        task.abort();
        let r: Result<(), SyncError> = joined(task.await);
        assert!(matches!(r, Err(SyncError::ShuttingDown { .. })), "{r:?}");
    }
}
