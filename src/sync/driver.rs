//! The tokio driver: moves frames between a byte stream and a [`Session`] over a [`Log`].
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

use std::time::{Duration, Instant};

use rand::RngCore;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant as Deadline;

use super::budget::Held;
use super::codec::{encode, preamble, Decoder};
use super::error::SyncError;
use super::options::{Progress, SyncOptions, SyncReport};
use super::session::{Phase, Session, SessionConfig, SessionStats};
use crate::log::Log;

/// Bytes of frames prepared per trip to the blocking pool.
const OUT_CHUNK: usize = 256 * 1024;
/// The read buffer starts small (an idle connection costs little) and doubles up to
/// [`READ_MAX`] while reads fill it.
const READ_START: usize = 8 * 1024;
const READ_MAX: usize = 64 * 1024;
/// Progress is reported at most once per this many nodes (and on every phase change).
const PROGRESS_EVERY: u64 = 1000;
/// How often a live session checks the store for commits made by another process.
const LIVE_POLL: Duration = Duration::from_secs(1);
/// After a shutdown, how long a busy session may take to finish (a live one to write its
/// `Close`) before it ends anyway.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// How long a failing session may take to tell the peer why.
const ABORT_GRACE: Duration = Duration::from_secs(2);
/// Most bytes read from the peer after an abort, waiting for it to close.
const ABORT_DRAIN: usize = 256 * 1024;
/// A session that moved no byte for this long when a shutdown comes is idle: it ends at once.
const QUIET: Duration = Duration::from_secs(1);

/// Syncs `log` with the peer at the other end of `stream`, per `options`.
///
/// Returns when both sides have what the other had at the start (or, when live, when either
/// side closes). A peer that does not finish its handshake, or goes quiet, in time fails it
/// with [`SyncError::Timeout`] (see [`SyncOptions`]; both are on by default). On error,
/// everything received and checked so far is kept, and the peer is told why with an `Abort`
/// when it can be; [`sync_reporting`] also says what was done before the error.
pub async fn sync<T>(log: &Log, stream: T, options: SyncOptions) -> Result<SyncReport, SyncError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send,
{
    sync_reporting(log, stream, options)
        .await
        .map_err(|f| f.error)
}

/// A sync that failed, with what it did before: the nodes it committed (kept in the store)
/// and sent.
#[derive(Debug)]
pub struct SyncFailure {
    /// Why it failed.
    pub error: SyncError,
    /// The counters up to the failure; `nodes_received` counts only nodes committed.
    pub report: SyncReport,
}

impl std::fmt::Display for SyncFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (after storing {} new nodes)",
            self.error, self.report.nodes_received
        )
    }
}

impl std::error::Error for SyncFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// [`sync`], reporting the counters on failure too.
pub async fn sync_reporting<T>(
    log: &Log,
    stream: T,
    options: SyncOptions,
) -> Result<SyncReport, SyncFailure>
where
    T: AsyncRead + AsyncWrite + Unpin + Send,
{
    let started = Instant::now();
    // Subscribe before reading the heads, so no commit between the two is missed.
    let sub = log.subscribe();
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    let cfg = SessionConfig {
        mode: options.mode,
        live: options.live,
        filter_key: key,
    };
    let store = log.clone();
    let limits = options.limits.clone();
    let mut driver = Driver {
        session: None,
        bytes_in: 0,
        bytes_out: 0,
        last_progress: (Phase::Handshake, 0),
        out: preamble().to_vec(),
        pos: 0,
        write_broken: false,
    };
    let fail = |error, driver: &Driver| SyncFailure {
        error,
        report: driver.report(started),
    };
    let session = tokio::task::spawn_blocking(move || Session::with_limits(store, cfg, limits));
    match joined(session.await).and_then(|r| r) {
        Ok(s) => driver.session = Some(s),
        Err(e) => return Err(fail(e, &driver)),
    }
    let (mut rd, mut wr) = tokio::io::split(stream);
    let result = driver.run(&mut rd, &mut wr, &options, sub, log).await;
    if let Err(e) = result {
        let e = driver.abort(&mut rd, &mut wr, e, &options).await;
        return Err(fail(e, &driver));
    }
    if driver.session.is_none() {
        return Err(fail(
            SyncError::ShuttingDown { state: "finishing" },
            &driver,
        ));
    }
    Ok(driver.report(started))
}

/// A blocking task's outcome: a panic in a session step is a bug and propagates; a task the
/// runtime cancelled (it is shutting down) is a typed error, never a panic.
fn joined<R>(r: Result<R, tokio::task::JoinError>) -> Result<R, SyncError> {
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

struct Driver {
    /// Taken while a store step runs in the blocking pool; `None` afterwards only if that
    /// task was cancelled, and then the run has already returned.
    session: Option<Session<Log>>,
    bytes_in: u64,
    bytes_out: u64,
    last_progress: (Phase, u64),
    /// Encoded frames being written, and how much of them is.
    out: Vec<u8>,
    pos: usize,
    /// A write failed: nothing more can be sent.
    write_broken: bool,
}

/// Which deadline is next, to name it in the error.
#[derive(Clone, Copy)]
enum Wait {
    Handshake,
    Idle,
    Close,
}

impl Driver {
    fn report(&self, started: Instant) -> SyncReport {
        let st = self.session.as_ref().map(|s| s.stats().clone());
        let st: SessionStats = st.unwrap_or_default();
        SyncReport {
            peer: self.session.as_ref().and_then(|s| s.peer_id()),
            nodes_sent: st.nodes_sent,
            nodes_received: st.nodes_received,
            duplicates: st.duplicates,
            bytes_sent: self.bytes_out,
            bytes_received: self.bytes_in,
            node_bytes_sent: st.node_bytes_sent,
            node_bytes_received: st.node_bytes_received,
            filtered: st.filtered,
            round_trips: st.round_trips,
            duration: started.elapsed(),
        }
    }

    /// After `error` ended the run: commits the checked batch (an interrupted sync keeps what
    /// it got), then tells the peer why with an `Abort`, best-effort: after the frames already
    /// begun, within [`ABORT_GRACE`] (or the idle timeout, if shorter), never at all once a
    /// write failed. Gives back the error.
    async fn abort<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
        &mut self,
        rd: &mut R,
        wr: &mut W,
        error: SyncError,
        options: &SyncOptions,
    ) -> SyncError {
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
        let Some(msg) = msg.filter(|_| !self.write_broken) else {
            return error;
        };
        let mut tail = self.out.split_off(self.pos.min(self.out.len()));
        encode(&msg, &mut tail);
        let send = async {
            wr.write_all(&tail).await?;
            wr.flush().await?;
            wr.shutdown().await
        };
        // Then read on to the peer's end of stream (at most [`ABORT_DRAIN`] bytes): closing a
        // TCP socket with unread bytes resets it, and a reset may overtake the abort. Not
        // after a timeout (a silent peer will not close) or for a shutdown (it must be
        // prompt).
        let linger = !matches!(
            error,
            SyncError::Timeout { .. } | SyncError::ShuttingDown { .. }
        );
        let drain = async {
            let mut sink = [0u8; 4096];
            let mut left = if linger { ABORT_DRAIN } else { 0 };
            while left > 0 {
                match rd.read(&mut sink).await? {
                    0 => break,
                    n => left = left.saturating_sub(n),
                }
            }
            Ok::<(), std::io::Error>(())
        };
        match options.idle_timeout {
            // `None` means the caller may run no timers: write, but wait for no reader.
            None => {
                if send.await.is_ok() {
                    self.bytes_out += tail.len() as u64;
                }
            }
            Some(idle) => {
                let _ = tokio::time::timeout(idle.min(ABORT_GRACE), async {
                    send.await?;
                    self.bytes_out += tail.len() as u64;
                    drain.await
                })
                .await;
            }
        }
        error
    }

    fn s(&self) -> &Session<Log> {
        self.session.as_ref().expect("present between store steps")
    }

    /// Runs `f` on the session in the blocking pool.
    async fn blocking<R: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Session<Log>) -> Result<R, SyncError> + Send + 'static,
    ) -> Result<R, SyncError> {
        let mut s = self.session.take().ok_or(SyncError::ShuttingDown {
            state: "running a store step",
        })?;
        let (s, r) = joined(
            tokio::task::spawn_blocking(move || {
                let r = f(&mut s);
                (s, r)
            })
            .await,
        )?;
        self.session = Some(s);
        r
    }

    fn progress(&mut self, options: &SyncOptions) {
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
            bytes: self.bytes_in + self.bytes_out,
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

    async fn run<R, W>(
        &mut self,
        rd: &mut R,
        wr: &mut W,
        options: &SyncOptions,
        mut sub: crate::log::Subscription,
        log: &Log,
    ) -> Result<(), SyncError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut dec = Decoder::new();
        let mut held = Held::new(options.memory.clone());
        let mut tmp = vec![0u8; READ_START];
        let mut eof = false;
        let mut shutdown = options.shutdown.clone();
        let mut write_failed: Option<std::io::Error> = None;
        // Commits by other processes on the same store do not reach `sub`: look at the feed's
        // end now and then while live.
        let mut poll: Option<tokio::time::Interval> = None;
        let now = Deadline::now();
        let handshake_by = options.handshake_timeout.map(|d| now + d);
        let mut idle_by = options.idle_timeout.map(|d| now + d);
        let mut active = now;
        let mut close_by: Option<Deadline> = None;
        loop {
            if let (Some(_), true) = (&write_failed, eof) {
                return Err(write_failed.take().expect("checked").into());
            }
            if self.pos == self.out.len() && write_failed.is_none() && self.s().wants_transmit() {
                let buf = std::mem::take(&mut self.out);
                self.out = self
                    .blocking(move |s| {
                        let mut buf = buf;
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
                self.pos = 0;
                // Our own store work is not the peer's silence.
                active = Deadline::now();
                idle_by = options.idle_timeout.map(|d| active + d);
            }
            if self.s().is_finished() && self.pos == self.out.len() {
                break;
            }
            let phase = self.s().phase();
            let live = phase == Phase::Live;
            let live_session = self.s().is_live();
            if live && poll.is_none() {
                let mut p = tokio::time::interval(LIVE_POLL);
                p.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                poll = Some(p);
            }
            // Room for one more read: what the decoder and the session hold plus the buffer.
            let short = held.cover(dec.buffered() + tmp.len() + self.s().buffered_bytes());
            let can_read = !eof && short.is_none() && self.s().wants_input();
            let deadline = [
                handshake_by
                    .filter(|_| phase == Phase::Handshake)
                    .map(|d| (d, Wait::Handshake)),
                // A live session may be quiet for any time, but not halfway through a frame,
                // starved of memory, or with bytes the peer does not take.
                idle_by
                    .filter(|_| {
                        !live || dec.buffered() > 0 || short.is_some() || self.pos < self.out.len()
                    })
                    .map(|d| (d, Wait::Idle)),
                close_by.map(|d| (d, Wait::Close)),
            ]
            .into_iter()
            .flatten()
            .min_by_key(|(d, _)| *d);
            tokio::select! {
                r = rd.read(&mut tmp), if can_read => {
                    let n = r?;
                    if n == 0 {
                        eof = true;
                        self.blocking(|s| s.on_eof()).await?;
                        if !self.s().is_finished() {
                            return Err(SyncError::UnexpectedEof { state: "reading" });
                        }
                        continue;
                    }
                    self.bytes_in += n as u64;
                    dec.push(&tmp[..n]);
                    if n == tmp.len() && tmp.len() < READ_MAX {
                        tmp.resize(tmp.len() * 2, 0);
                    }
                    let mut msgs = Vec::new();
                    while let Some(m) = dec.next_message()? {
                        msgs.push(m);
                    }
                    dec.compact();
                    if !msgs.is_empty() {
                        self.blocking(move |s| {
                            for m in msgs {
                                s.handle(m)?;
                            }
                            if s.phase() == Phase::Live {
                                s.flush()?;
                            }
                            Ok(())
                        })
                        .await?;
                    }
                    active = Deadline::now();
                    idle_by = options.idle_timeout.map(|d| active + d);
                }
                r = wr.write(&self.out[self.pos..]), if self.pos < self.out.len() => {
                    let n = match r {
                        Ok(n) => n,
                        // A live peer that closed first stops reading: nothing is lost.
                        Err(_) if self.s().phase() == Phase::Finished && live_session => break,
                        // The peer hung up: read on to its end of stream, which says why
                        // (typed), unless that already came.
                        Err(e) if eof => {
                            self.write_broken = true;
                            return Err(e.into());
                        }
                        Err(e) => {
                            write_failed = Some(e);
                            self.write_broken = true;
                            self.out.clear();
                            self.pos = 0;
                            continue;
                        }
                    };
                    self.pos += n;
                    self.bytes_out += n as u64;
                    active = Deadline::now();
                    idle_by = options.idle_timeout.map(|d| active + d);
                }
                () = held.wait(short.unwrap_or(0)), if short.is_some() && !eof => {}
                seq = sub.changed(), if live => {
                    if let Some(seq) = seq {
                        self.session.as_mut().expect("present").local_changed(seq);
                    }
                }
                _ = tick(&mut poll), if live => {
                    if let Ok(seq) = log.last_seq() {
                        self.session.as_mut().expect("present").local_changed(seq);
                    }
                }
                _ = wait_true(&mut shutdown), if shutdown.is_some() => {
                    shutdown = None;
                    if live {
                        self.blocking(|s| s.close()).await?;
                    } else if phase == Phase::Handshake || active.elapsed() >= QUIET {
                        // Idle: the store step in progress has finished; the caller commits
                        // what it checked.
                        return Err(SyncError::ShuttingDown { state: self.state() });
                    }
                    // Busy: it may finish on its own, for a while.
                    close_by = Some(Deadline::now() + CLOSE_GRACE);
                }
                () = sleep_until(deadline.map(|d| d.0)), if deadline.is_some() => {
                    let (after, state) = match deadline.map(|d| d.1) {
                        Some(Wait::Handshake) => (options.handshake_timeout, "handshaking"),
                        Some(Wait::Close) => {
                            return Err(SyncError::ShuttingDown { state: self.state() })
                        }
                        _ => (options.idle_timeout, self.state()),
                    };
                    return Err(SyncError::Timeout { state, after: after.unwrap_or_default() });
                }
            }
            self.progress(options);
        }
        if let Err(e) = wr.flush().await {
            if !self.s().is_live() {
                return Err(e.into());
            }
        }
        // The peer may already be gone once both sides are done; that is not an error.
        let _ = wr.shutdown().await;
        self.progress(options);
        Ok(())
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

async fn sleep_until(deadline: Option<Deadline>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
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
        let r = joined(task.await);
        assert!(matches!(r, Err(SyncError::ShuttingDown { .. })), "{r:?}");
    }
}
