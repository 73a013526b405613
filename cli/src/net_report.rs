//! What `sync` and `serve` print as they run: the summary of a session, the progress line,
//! the live running count, and the server's report of its sessions.

use std::time::Duration;

use braidlog::sync::{Phase, Progress, ServeEvent, SyncReport};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tokio::sync::mpsc;

use crate::kv::plural;
use crate::output::write_line;

/// A one-line summary of a sync, for people.
pub fn summary(r: &SyncReport) -> String {
    format!(
        "sent {}, received {} new ({}); {} out, {} in; {}; {:.1} ms",
        plural(r.nodes_sent, "node"),
        r.nodes_received,
        plural(r.duplicates, "duplicate"),
        plural(r.bytes_sent, "byte"),
        plural(r.bytes_received, "byte"),
        plural(u64::from(r.round_trips), "round trip"),
        r.duration.as_secs_f64() * 1000.0
    )
}

pub fn report_json(r: &SyncReport) -> serde_json::Value {
    json!({
        "peer": r.peer.map(|p| p.to_string()),
        "nodes_sent": r.nodes_sent,
        "nodes_received": r.nodes_received,
        "duplicates": r.duplicates,
        "bytes_sent": r.bytes_sent,
        "bytes_received": r.bytes_received,
        "round_trips": r.round_trips,
        "duration_ms": r.duration.as_secs_f64() * 1000.0,
    })
}

/// A phase of a session, in words.
fn phase_words(phase: Phase) -> &'static str {
    match phase {
        Phase::Handshake => "handshaking",
        Phase::CatchUp => "catching up",
        Phase::Live => "live",
        Phase::Finished => "finished",
        #[allow(unreachable_patterns)] // the library may add phases
        _ => "syncing",
    }
}

/// Draws progress events on stderr (indicatif hides the bar when stderr is not a terminal).
/// In a live session, prints one line on stdout when catch-up is over, so scripts know, then
/// one line per commit of nodes from the peer with the store's running count.
pub fn progress_bar(
    mut events: mpsc::Receiver<Progress>,
    log: braidlog::Log,
    json: bool,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut announced = false;
        let mut commits = log.subscribe();
        let start = log.len().unwrap_or(0);
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} [{elapsed_precise}]")
                .expect("a valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        // Lines on stdout are best effort: once its reader is gone, the session goes on.
        let print = |line: String| bar.suspend(|| write_line(&line).is_ok());
        let mut stdout_ok = true;
        loop {
            tokio::select! {
                p = events.recv() => {
                    let Some(p) = p else { break };
                    if p.phase == Phase::Live && !announced {
                        announced = true;
                        let line = if json {
                            json!({"event": "live", "nodes_received": p.nodes_received, "nodes_sent": p.nodes_sent}).to_string()
                        } else {
                            format!(
                                "caught up ({} received, {} sent); live until Ctrl-C",
                                p.nodes_received, p.nodes_sent
                            )
                        };
                        stdout_ok &= print(line);
                    }
                    let total = p
                        .total_hint
                        .map(|t| format!(" of at most {t}"))
                        .unwrap_or_default();
                    bar.set_message(format!(
                        "{}: received {}{total}, sent {}, {} bytes",
                        phase_words(p.phase), p.nodes_received, p.nodes_sent, p.bytes
                    ));
                }
                Some(_) = commits.changed(), if announced && stdout_ok => {
                    let nodes = log.len().unwrap_or(0);
                    stdout_ok &= print(nodes_line(json, nodes, nodes.saturating_sub(start)));
                }
            }
        }
        bar.finish_and_clear();
    })
}

/// The running count printed as a live session stores nodes.
fn nodes_line(json: bool, nodes: u64, new: u64) -> String {
    if json {
        json!({"event": "nodes", "nodes": nodes, "new": new}).to_string()
    } else {
        format!(
            "{} in the store ({new} new since start)",
            plural(nodes, "node")
        )
    }
}

/// What a server reports as it runs: failed sessions and accepts on stderr (they are
/// errors); sessions that start and end well, and the store's running count, on stdout. One
/// line each, JSON with `--json`. Lines go through a bounded queue to a printing thread, so a
/// slow or absent reader of the output never stalls the server (lines it cannot take are
/// dropped; a line says how many).
pub struct ServeLog {
    tx: std::sync::mpsc::SyncSender<(bool, String)>,
    dropped: std::sync::atomic::AtomicU64,
    sessions: std::sync::atomic::AtomicU64,
    json: bool,
}

impl ServeLog {
    pub fn start(json: bool) -> (std::sync::Arc<ServeLog>, std::thread::JoinHandle<()>) {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(bool, String)>(1024);
        let printer = std::thread::spawn(move || {
            let mut stdout_ok = true;
            for (to_stderr, line) in rx {
                if to_stderr {
                    crate::exit::warn(&line);
                } else if stdout_ok {
                    stdout_ok = write_line(&line).is_ok();
                }
            }
        });
        let log = ServeLog {
            tx,
            dropped: Default::default(),
            sessions: Default::default(),
            json,
        };
        (std::sync::Arc::new(log), printer)
    }

    pub fn send(&self, to_stderr: bool, value: serde_json::Value, text: String) {
        use std::sync::atomic::Ordering::Relaxed;
        let line = if self.json { value.to_string() } else { text };
        let dropped = self.dropped.load(Relaxed);
        if dropped > 0 {
            let note = format!(
                "serve: {} dropped: output was not read",
                plural(dropped, "line")
            );
            if self.tx.try_send((true, note)).is_ok() {
                self.dropped.fetch_sub(dropped, Relaxed);
            }
        }
        if self.tx.try_send((to_stderr, line)).is_err() {
            self.dropped.fetch_add(1, Relaxed);
        }
    }

    pub fn event(&self, log: &braidlog::Log, e: ServeEvent<'_>) {
        use std::sync::atomic::Ordering::Relaxed;
        match e {
            ServeEvent::Accepted { peer } => self.send(
                false,
                json!({"event": "session_started", "peer": peer.to_string()}),
                format!("session with {peer} started"),
            ),
            ServeEvent::Finished { peer, report } => {
                let n = self.sessions.fetch_add(1, Relaxed) + 1;
                let nodes = log.len().unwrap_or(0);
                let mut value = report_json(report);
                value["event"] = json!("session_done");
                value["peer_addr"] = json!(peer.to_string());
                value["sessions"] = json!(n);
                value["nodes"] = json!(nodes);
                self.send(
                    false,
                    value,
                    format!(
                        "session with {peer} done: {}; {} so far, {} in the store",
                        summary(report),
                        plural(n, "session"),
                        plural(nodes, "node")
                    ),
                )
            }
            ServeEvent::Failed { peer, error, .. } => {
                self.sessions.fetch_add(1, Relaxed);
                self.send(
                    true,
                    json!({"event": "session_failed", "peer": peer.to_string(), "error": error.to_string()}),
                    format!("serve: session with {peer} failed: {error}"),
                )
            }
            ServeEvent::AcceptFailed { error, retry_in } => self.send(
                true,
                json!({"event": "accept_failed", "error": error.to_string(), "retry_ms": retry_in.as_millis() as u64}),
                format!("serve: accept failed: {error}; retrying in {retry_in:?}"),
            ),
            #[allow(unreachable_patterns)] // the library may add events
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_read_as_words() {
        assert_eq!(phase_words(Phase::CatchUp), "catching up");
        assert_eq!(phase_words(Phase::Handshake), "handshaking");
    }

    #[test]
    fn summaries_count_in_words() {
        let r = SyncReport {
            nodes_sent: 1,
            round_trips: 1,
            ..Default::default()
        };
        let s = summary(&r);
        assert!(
            s.starts_with("sent 1 node, received 0 new (0 duplicates); 0 bytes out"),
            "{s}"
        );
        assert!(s.contains("; 1 round trip;"), "{s}");
    }
}
