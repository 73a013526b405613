//! What every peer's child process shares: the workload's keys and values, a framed TCP
//! transport that counts bytes and messages, the memory sampler, and the result line.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::workload::status_kib;

/// Bytes of every value written.
pub const VALUE_BYTES: usize = 100;
/// Updates per write transaction (per change, per flush) on every peer.
pub const BATCH: u64 = 10_000;

/// The key of update `i`: every update writes a key of its own.
pub fn key(i: u64) -> String {
    format!("key/{i:012}")
}

/// The value of update `i`: 100 bytes that do not compress (blake3's output stream), so that
/// no peer gains from compressing a repeated filler.
pub fn value(i: u64) -> Vec<u8> {
    let mut out = vec![0; VALUE_BYTES];
    blake3::Hasher::new()
        .update(&i.to_le_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

/// What one side of a workload measured.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub secs: f64,
    /// Round trips (for the lock-step peers: non-empty messages both ways / 2, rounded up).
    pub round_trips: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Updates this side stored as new.
    pub moved: u64,
}

impl Outcome {
    /// Prints the result line the parent parses, with this process's memory figures.
    pub fn print(&self, anon_kib: u64) {
        println!(
            "RESULT {} {} {} {} {} {} {}",
            self.secs,
            self.round_trips,
            self.bytes_sent,
            self.bytes_received,
            self.moved,
            status_kib("VmHWM"),
            anon_kib
        );
    }
}

/// A length-prefixed (u32 BE) message stream over TCP that counts what it carries. An empty
/// frame means "nothing to say" and is not counted as a message.
pub struct Wire {
    stream: TcpStream,
    pub sent: u64,
    pub received: u64,
    pub messages: u64,
}

impl Wire {
    pub fn serve() -> Wire {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        println!("PORT {}", listener.local_addr().unwrap().port());
        std::io::stdout().flush().unwrap();
        Wire::new(listener.accept().unwrap().0)
    }

    pub fn connect(port: u16) -> Wire {
        Wire::new(TcpStream::connect(("127.0.0.1", port)).unwrap())
    }

    fn new(stream: TcpStream) -> Wire {
        stream.set_nodelay(true).unwrap();
        Wire {
            stream,
            sent: 0,
            received: 0,
            messages: 0,
        }
    }

    pub fn send(&mut self, msg: &[u8]) {
        let len = u32::try_from(msg.len()).unwrap();
        self.stream.write_all(&len.to_be_bytes()).unwrap();
        self.stream.write_all(msg).unwrap();
        if !msg.is_empty() {
            self.sent += 4 + msg.len() as u64;
            self.messages += 1;
        }
    }

    /// The next frame; `None` when the peer closed the stream.
    pub fn recv(&mut self) -> Option<Vec<u8>> {
        let mut len = [0; 4];
        if self.stream.read_exact(&mut len).is_err() {
            return None;
        }
        let mut msg = vec![0; u32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut msg).unwrap();
        if !msg.is_empty() {
            self.received += 4 + msg.len() as u64;
            self.messages += 1;
        }
        Some(msg)
    }

    /// The outcome so far: round trips are messages both ways / 2, rounded up.
    pub fn outcome(&self, secs: f64, moved: u64) -> Outcome {
        Outcome {
            secs,
            round_trips: self.messages.div_ceil(2),
            bytes_sent: self.sent,
            bytes_received: self.received,
            moved,
        }
    }
}

/// Samples `RssAnon` every 5 ms until finished; the peak of the samples.
pub struct AnonSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AnonSampler {
    pub fn start() -> AnonSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(status_kib("RssAnon")));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(status_kib("RssAnon"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        AnonSampler {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        self.peak.load(Ordering::Relaxed).max(status_kib("RssAnon"))
    }
}

/// `fsync`s a file this side wrote, so its durability matches a durable commit.
pub fn append_durably(path: &std::path::Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
    f.sync_data().unwrap();
}
