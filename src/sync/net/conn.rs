//! [`Conn`]: one framed connection. It owns the byte stream's two halves, the codec, the read
//! and write buffers, the byte counters and the deadlines, so the driver only moves messages
//! between it and a session.
//!
//! The read half grows its buffer from [`READ_START`] to [`READ_MAX`] while reads fill it (an
//! idle connection costs little); the write half holds one encoded chunk at a time, and once a
//! write failed it sends nothing more (its failure is reported once the peer's end of stream,
//! which says why, is read).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant as Deadline;

use crate::sync::error::WireError;
use crate::sync::limits::{ABORT_DRAIN, ABORT_GRACE, READ_MAX, READ_START};
use crate::sync::session::Phase;
use crate::sync::wire::codec::{encode, preamble, Decoder};
use crate::sync::wire::message::Message;

/// The read half: the stream, the decoder and the read buffer.
pub(crate) struct ReadHalf<R> {
    rd: R,
    dec: Decoder,
    buf: Vec<u8>,
    /// Bytes read so far.
    pub bytes: u64,
    /// The peer's end of stream came.
    pub eof: bool,
}

/// The write half: the stream and the encoded frames being written.
pub(crate) struct WriteHalf<W> {
    wr: W,
    out: Vec<u8>,
    pos: usize,
    /// Bytes written so far.
    pub bytes: u64,
    /// A write failed and the failure is not reported yet.
    failed: Option<std::io::Error>,
    /// A write failed: nothing more can be sent.
    pub broken: bool,
}

/// One framed connection: [`ReadHalf`] and [`WriteHalf`] apart, so that the driver reads and
/// writes at the same time.
pub(crate) struct Conn<R, W> {
    pub rd: ReadHalf<R>,
    pub wr: WriteHalf<W>,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Conn<R, W> {
    /// A connection whose first bytes out are the preamble.
    pub fn new(rd: R, wr: W) -> Conn<R, W> {
        Conn {
            rd: ReadHalf {
                rd,
                dec: Decoder::new(),
                buf: vec![0u8; READ_START],
                bytes: 0,
                eof: false,
            },
            wr: WriteHalf {
                wr,
                out: preamble().to_vec(),
                pos: 0,
                bytes: 0,
                failed: None,
                broken: false,
            },
        }
    }

    /// Peer bytes held: part of a frame and the read buffer.
    pub fn buffered(&self) -> usize {
        self.rd.dec.buffered() + self.rd.buf.len()
    }

    /// Whether the connection is busy in a way a quiet peer must not stall: halfway through
    /// a frame, or with bytes the peer does not take.
    pub fn mid_frame_or_unsent(&self) -> bool {
        self.rd.dec.buffered() > 0 || self.wr.unsent()
    }

    /// A write failed earlier and the peer's end of stream came: the failure, to report.
    pub fn take_failure(&mut self) -> Option<std::io::Error> {
        if self.rd.eof {
            self.wr.failed.take()
        } else {
            None
        }
    }

    /// Tells the peer why with `abort`, best-effort: after the frames already begun, within
    /// [`ABORT_GRACE`] (or `idle`, if shorter), then reads on to the peer's end of stream (at
    /// most [`ABORT_DRAIN`] bytes) when `linger`: closing a TCP socket with unread bytes
    /// resets it, and a reset may overtake the abort. With `idle` `None` (the caller may run
    /// no timers) it writes but waits for no reader.
    pub async fn abort(&mut self, abort: &Message, linger: bool, idle: Option<Duration>) {
        let w = &mut self.wr;
        let mut tail = w.out.split_off(w.pos.min(w.out.len()));
        encode(abort, &mut tail);
        let send = async {
            w.wr.write_all(&tail).await?;
            w.wr.flush().await?;
            w.wr.shutdown().await
        };
        let rd = &mut self.rd.rd;
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
        match idle {
            None => {
                if send.await.is_ok() {
                    w.bytes += tail.len() as u64;
                }
            }
            Some(idle) => {
                let _ = tokio::time::timeout(idle.min(ABORT_GRACE), async {
                    send.await?;
                    w.bytes += tail.len() as u64;
                    drain.await
                })
                .await;
            }
        }
    }
}

impl<R: AsyncRead + Unpin> ReadHalf<R> {
    /// Reads once into the decoder; the bytes read (0 at the end of stream, which is noted).
    pub async fn read(&mut self) -> std::io::Result<usize> {
        let n = self.rd.read(&mut self.buf).await?;
        if n == 0 {
            self.eof = true;
            return Ok(0);
        }
        self.bytes += n as u64;
        self.dec.push(&self.buf[..n]);
        if n == self.buf.len() && self.buf.len() < READ_MAX {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        Ok(n)
    }

    /// Every whole message received so far.
    pub fn messages(&mut self) -> Result<Vec<Message>, WireError> {
        let mut msgs = Vec::new();
        while let Some(m) = self.dec.next_message()? {
            msgs.push(m);
        }
        self.dec.compact();
        Ok(msgs)
    }
}

impl<W: AsyncWrite + Unpin> WriteHalf<W> {
    /// Whether encoded bytes wait to be written.
    pub fn unsent(&self) -> bool {
        self.pos < self.out.len()
    }

    /// Whether the next chunk may be encoded: the last one is written and no write failed.
    pub fn ready(&self) -> bool {
        !self.unsent() && self.failed.is_none()
    }

    /// The (written) buffer, to encode the next chunk into.
    pub fn take_buffer(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// The next chunk to write.
    pub fn set_chunk(&mut self, out: Vec<u8>) {
        self.out = out;
        self.pos = 0;
    }

    /// Writes once from the chunk; the bytes written.
    pub async fn write(&mut self) -> std::io::Result<usize> {
        let n = self.wr.write(&self.out[self.pos..]).await?;
        self.pos += n;
        self.bytes += n as u64;
        Ok(n)
    }

    /// A write failed: nothing more is sent; the failure waits for the peer's end of stream.
    pub fn fail(&mut self, e: std::io::Error) {
        self.failed = Some(e);
        self.broken = true;
        self.out.clear();
        self.pos = 0;
    }

    /// Flushes what was written.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        self.wr.flush().await
    }

    /// Ends our side of the stream.
    pub async fn shutdown(&mut self) -> std::io::Result<()> {
        self.wr.shutdown().await
    }
}

/// Which deadline is next, to name it in the error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    /// The peer's `Hello` is late.
    Handshake,
    /// Nothing moved for the idle timeout.
    Idle,
    /// A shutdown's grace ran out.
    Close,
}

/// The deadlines of one connection: the handshake, the idle timeout (from the last byte
/// moved either way, or the last chunk encoded: our own store work is not the peer's
/// silence) and a shutdown's grace.
pub(crate) struct Deadlines {
    handshake_by: Option<Deadline>,
    idle: Option<Duration>,
    idle_by: Option<Deadline>,
    active: Deadline,
    close_by: Option<Deadline>,
}

impl Deadlines {
    /// Deadlines from now.
    pub fn new(handshake: Option<Duration>, idle: Option<Duration>) -> Deadlines {
        let now = Deadline::now();
        Deadlines {
            handshake_by: handshake.map(|d| now + d),
            idle,
            idle_by: idle.map(|d| now + d),
            active: now,
            close_by: None,
        }
    }

    /// Something moved: the idle timeout starts again.
    pub fn touch(&mut self) {
        self.active = Deadline::now();
        self.idle_by = self.idle.map(|d| self.active + d);
    }

    /// How long nothing moved.
    pub fn quiet_for(&self) -> Duration {
        self.active.elapsed()
    }

    /// A shutdown came: the session may finish for `grace`.
    pub fn close_within(&mut self, grace: Duration) {
        self.close_by = Some(Deadline::now() + grace);
    }

    /// The next deadline in `phase`. A live session may be quiet for any time, but not when
    /// `busy` (halfway through a frame, starved of memory, or with bytes the peer does not
    /// take).
    pub fn next(&self, phase: Phase, busy: bool) -> Option<(Deadline, Wait)> {
        let live = phase == Phase::Live;
        [
            (self.handshake_by)
                .filter(|_| phase == Phase::Handshake)
                .map(|d| (d, Wait::Handshake)),
            (self.idle_by)
                .filter(|_| !live || busy)
                .map(|d| (d, Wait::Idle)),
            self.close_by.map(|d| (d, Wait::Close)),
        ]
        .into_iter()
        .flatten()
        .min_by_key(|(d, _)| *d)
    }
}
