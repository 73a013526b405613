//! The tokio driver: moves frames between a byte stream and a [`Session`] over a [`Log`].
//!
//! It reads and writes at the same time (a session may be sending a long stream while the peer
//! sends one too), and runs every store step of the session in `spawn_blocking`, so no LMDB
//! transaction is held across an `.await` and the executor never waits on the disk.

use std::time::{Duration, Instant};

use rand::RngCore;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use super::codec::{encode, preamble, Decoder};
use super::error::SyncError;
use super::session::{Mode, Phase, Session, SessionConfig, SessionStats};
use crate::log::Log;
use crate::peer::PeerId;

/// Bytes of frames prepared per trip to the blocking pool.
const OUT_CHUNK: usize = 256 * 1024;
const READ_CHUNK: usize = 64 * 1024;
/// Progress is reported at most once per this many nodes (and on every phase change).
const PROGRESS_EVERY: u64 = 1000;
/// How often a live session checks the store for commits made by another process.
const LIVE_POLL: Duration = Duration::from_secs(1);

/// How to run a sync.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    /// Direction (default both ways).
    pub mode: Mode,
    /// Keep the session open after catching up, forwarding new nodes both ways (from local
    /// writes and from any other peer) until either side closes. A live session checks the
    /// store's feed every second for commits made by other processes, so it needs a runtime
    /// with timers (`enable_time` or `enable_all`).
    pub live: bool,
    /// Receives [`Progress`] events; never blocks the sync (events are dropped when full).
    pub progress: Option<mpsc::Sender<Progress>>,
    /// When this turns `true`, a live session closes in order (commits, sends `Close`).
    pub shutdown: Option<watch::Receiver<bool>>,
    /// Fail with [`SyncError::Timeout`] when the peer sends nothing for this long before the
    /// session is caught up (a live session may be quiet for any time). `None`: wait forever.
    pub idle_timeout: Option<Duration>,
}

impl SyncOptions {
    /// Options for `mode`, not live.
    pub fn new(mode: Mode) -> SyncOptions {
        SyncOptions {
            mode,
            ..SyncOptions::default()
        }
    }

    /// The same options, live.
    pub fn live(mut self) -> SyncOptions {
        self.live = true;
        self
    }
}

/// A progress event, for drawing a bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Where the session is.
    pub phase: Phase,
    /// Nodes sent so far.
    pub nodes_sent: u64,
    /// New nodes stored so far.
    pub nodes_received: u64,
    /// Bytes on the wire so far, both ways.
    pub bytes: u64,
    /// The peer's feed length: an upper bound of what may be received.
    pub total_hint: Option<u64>,
}

/// What a finished sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// The peer (`None` if it never said hello).
    pub peer: Option<PeerId>,
    /// Nodes sent.
    pub nodes_sent: u64,
    /// New nodes stored.
    pub nodes_received: u64,
    /// Nodes received that were already stored.
    pub duplicates: u64,
    /// Bytes written to the stream.
    pub bytes_sent: u64,
    /// Bytes read from the stream.
    pub bytes_received: u64,
    /// Canonical bytes of the nodes sent.
    pub node_bytes_sent: u64,
    /// Canonical bytes of the new nodes stored.
    pub node_bytes_received: u64,
    /// Candidates not sent because the peer's filter said it had them.
    pub filtered: u64,
    /// Sequential waits for the peer (1 unless a `Want` round was needed).
    pub round_trips: u32,
    /// Wall time.
    pub duration: Duration,
}

/// Syncs `log` with the peer at the other end of `stream`, per `options`.
///
/// Returns when both sides have what the other had at the start (or, when live, when either
/// side closes). On error, everything received and checked so far is kept.
pub async fn sync<T>(log: &Log, stream: T, options: SyncOptions) -> Result<SyncReport, SyncError>
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
    let session = tokio::task::spawn_blocking(move || Session::new(store, cfg))
        .await
        .expect("session setup does not panic")?;
    let mut driver = Driver {
        session: Some(session),
        bytes_in: 0,
        bytes_out: 0,
        last_progress: (Phase::Handshake, 0),
    };
    let result = driver.run(stream, &options, sub, log).await;
    if result.is_err() {
        driver
            .blocking(|s| {
                s.salvage();
                Ok(())
            })
            .await
            .ok();
    }
    result?;
    let s = driver.session.as_ref().expect("returned by every step");
    let st: &SessionStats = s.stats();
    Ok(SyncReport {
        peer: s.peer_id(),
        nodes_sent: st.nodes_sent,
        nodes_received: st.nodes_received,
        duplicates: st.duplicates,
        bytes_sent: driver.bytes_out,
        bytes_received: driver.bytes_in,
        node_bytes_sent: st.node_bytes_sent,
        node_bytes_received: st.node_bytes_received,
        filtered: st.filtered,
        round_trips: st.round_trips,
        duration: started.elapsed(),
    })
}

struct Driver {
    session: Option<Session<Log>>,
    bytes_in: u64,
    bytes_out: u64,
    last_progress: (Phase, u64),
}

impl Driver {
    fn s(&self) -> &Session<Log> {
        self.session.as_ref().expect("returned by every step")
    }

    /// Runs `f` on the session in the blocking pool.
    async fn blocking<R: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Session<Log>) -> Result<R, SyncError> + Send + 'static,
    ) -> Result<R, SyncError> {
        let mut s = self.session.take().expect("returned by every step");
        let (s, r) = tokio::task::spawn_blocking(move || {
            let r = f(&mut s);
            (s, r)
        })
        .await
        .expect("session steps do not panic");
        self.session = Some(s);
        r
    }

    fn progress(&mut self, options: &SyncOptions) {
        let Some(tx) = &options.progress else { return };
        let s = self.session.as_ref().expect("returned by every step");
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

    async fn run<T>(
        &mut self,
        stream: T,
        options: &SyncOptions,
        mut sub: crate::changes::Subscription,
        log: &Log,
    ) -> Result<(), SyncError>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let (mut rd, mut wr) = tokio::io::split(stream);
        let mut dec = Decoder::new();
        let mut out = preamble().to_vec();
        let mut pos = 0;
        let mut tmp = vec![0u8; READ_CHUNK];
        let mut eof = false;
        let mut shutdown = options.shutdown.clone();
        let mut write_failed: Option<std::io::Error> = None;
        // Commits by other processes on the same store do not reach `sub`: look at the feed's
        // end now and then while live. Made on entering the live phase, so only live sessions
        // need a runtime with timers.
        let mut poll: Option<tokio::time::Interval> = None;
        let mut deadline = options
            .idle_timeout
            .map(|d| tokio::time::Instant::now() + d);
        loop {
            if let (Some(_), true) = (&write_failed, eof) {
                return Err(write_failed.take().expect("checked").into());
            }
            if pos == out.len() && write_failed.is_none() && self.s().wants_transmit() {
                let buf = std::mem::take(&mut out);
                out = self
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
                pos = 0;
            }
            if self.s().is_finished() && pos == out.len() {
                break;
            }
            let live = self.s().phase() == Phase::Live;
            let live_session = self.s().is_live();
            if live && poll.is_none() {
                let mut p = tokio::time::interval(LIVE_POLL);
                p.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                poll = Some(p);
            }
            tokio::select! {
                r = rd.read(&mut tmp), if !eof => {
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
                    deadline = options.idle_timeout.map(|d| tokio::time::Instant::now() + d);
                    dec.push(&tmp[..n]);
                    let mut msgs = Vec::new();
                    while let Some(m) = dec.next_message()? {
                        msgs.push(m);
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
                    .await?;
                }
                r = wr.write(&out[pos..]), if pos < out.len() => {
                    let n = match r {
                        Ok(n) => n,
                        // A live peer that closed first stops reading: nothing is lost.
                        Err(_) if self.s().phase() == Phase::Finished && live_session => break,
                        // The peer hung up: read on to its end of stream, which says why
                        // (typed), unless that already came.
                        Err(e) if eof => return Err(e.into()),
                        Err(e) => {
                            write_failed = Some(e);
                            out.clear();
                            pos = 0;
                            continue;
                        }
                    };
                    pos += n;
                    self.bytes_out += n as u64;
                }
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
                () = idle(deadline), if !live && deadline.is_some() => {
                    return Err(SyncError::Timeout {
                        state: "catching up",
                        after: options.idle_timeout.unwrap_or_default(),
                    });
                }
                _ = wait_true(&mut shutdown), if live && shutdown.is_some() => {
                    shutdown = None;
                    self.blocking(|s| s.close()).await?;
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

async fn idle(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn wait_true(rx: &mut Option<watch::Receiver<bool>>) {
    match rx {
        Some(rx) => {
            let _ = rx.wait_for(|v| *v).await;
        }
        None => std::future::pending().await,
    }
}
