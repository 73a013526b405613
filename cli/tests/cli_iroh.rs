//! `braid serve --iroh` and `braid sync TICKET` as real processes on loopback (relays off):
//! the ticket comes first, an allowed key syncs, a refused one learns nothing and is told how
//! to be allowed, a bad ticket is a clear error, and plain TCP warns off loopback.

mod cli_common;

use std::path::Path;
use std::process::Child;
use std::time::Duration;

use cli_common::{fails, interrupt, json, ok, spawn, wait_bounded};

const LIMIT: Duration = Duration::from_secs(60);

/// A child process that is killed if the test fails before stopping it.
struct Running(Option<Child>);

impl Running {
    fn take(mut self) -> Child {
        self.0.take().expect("present until taken")
    }

    /// Takes the child if `ok`; otherwise fails the test (and the child is killed).
    fn take_checked(self, ok: bool, what: &str) -> Child {
        assert!(ok, "{what}");
        self.take()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `braid serve --iroh` on loopback; returns the child and the ticket it printed first.
fn serve_iroh(dir: &Path, extra: &[&str]) -> (Running, String) {
    let mut args = vec!["serve", "--iroh", "--bind", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let (child, ticket) = spawn(dir, &args);
    let child = Running(Some(child));
    assert!(ticket.starts_with("braid"), "first line: {ticket:?}");
    (child, ticket)
}

/// Stops a server with Ctrl-C; returns its stderr.
fn stop(child: Running) -> String {
    let child = child.take();
    interrupt(&child);
    let out = wait_bounded(child, LIMIT, "braid serve --iroh");
    assert!(out.status.success());
    String::from_utf8(out.stderr).unwrap()
}

fn id(dir: &Path) -> String {
    ok(dir, &["id"]).trim().to_string()
}

#[test]
fn an_allowed_key_syncs_and_a_refused_one_learns_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    ok(&a, &["put", "color", "red"]);
    ok(&b, &["put", "size", "large"]);
    let (kb, kc) = (id(&b), id(&c));
    let (server, ticket) = serve_iroh(&a, &["--allow", &kb]);

    let report = json(&b, &["sync", &ticket]);
    assert_eq!(report["nodes_received"], 1, "{report}");
    assert_eq!(report["nodes_sent"], 1, "{report}");
    assert_eq!(ok(&b, &["get", "color"]).trim(), "red");
    assert_eq!(ok(&a, &["get", "size"]).trim(), "large");

    let err = fails(&c, &["sync", "--pull", &ticket]);
    assert!(err.contains("refused") && err.contains(&kc), "{err}");
    assert!(err.contains(&format!("--allow {kc}")), "{err}");
    let heads = json(&c, &["heads"]);
    assert_eq!(heads.as_array().map(|h| h.len()), Some(0), "{heads}");

    let log = stop(server);
    assert!(log.contains(&format!("refused {kc}")), "{log}");
}

#[test]
fn an_author_on_the_allow_list_may_connect() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    ok(&a, &["put", "k", "v"]);
    let kb = id(&b);
    ok(&a, &["trust", "add", &kb]);
    let (server, ticket) = serve_iroh(&a, &[]);
    ok(&b, &["sync", "--pull", &ticket]);
    assert_eq!(ok(&b, &["get", "k"]).trim(), "v");
    stop(server);
}

#[test]
fn a_server_nobody_may_reach_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    ok(&a, &["init"]);
    let (server, _) = serve_iroh(&a, &[]);
    let log = stop(server);
    assert!(log.contains("no key may connect"), "{log}");
}

#[test]
fn a_bad_ticket_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let b = tmp.path().join("b");
    let err = fails(&b, &["sync", "braid0000"]);
    assert!(err.contains("ticket"), "{err}");
    let long = format!("braid{}", "a".repeat(2000));
    let err = fails(&b, &["sync", &long]);
    assert!(err.contains("at most 1024 characters"), "{err}");
}

#[test]
fn plain_tcp_off_loopback_warns() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    ok(&a, &["init"]);
    let (child, addr) = spawn(&a, &["serve", "--listen", "0.0.0.0:0"]);
    let child = Running(Some(child)).take_checked(addr.starts_with("0.0.0.0:"), &addr);
    interrupt(&child);
    let out = wait_bounded(child, LIMIT, "braid serve");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("unauthenticated and unencrypted"), "{err}");
    // On loopback it says nothing of the kind.
    let (child, _) = spawn(&a, &["serve", "--listen", "127.0.0.1:0"]);
    interrupt(&child);
    let out = wait_bounded(child, LIMIT, "braid serve");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!err.contains("unencrypted"), "{err}");
}

/// Polls `braid get KEY` until it prints `want`: the writer is another process, so there is
/// no event to wait on. Bounded well below the 30 s re-announcement, so only an announcement
/// of the write itself passes.
fn until_value(dir: &Path, key: &str, want: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let out = cli_common::braid(dir, &["get", key]);
        if String::from_utf8_lossy(&out.stdout).trim() == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{key} never became {want:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn gossip_carries_a_write_made_by_another_process_to_every_replica() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs: Vec<_> = ["a", "b", "c"].iter().map(|d| tmp.path().join(d)).collect();
    ok(&dirs[0], &["put", "k", "one"]);
    let (server, ticket) = serve_iroh(&dirs[0], &["--open", "--gossip"]);
    let mut members = Vec::new();
    for d in &dirs[1..] {
        // The first line is the summary of the first sync: the replica has caught up.
        let (child, first) = spawn(
            d,
            &[
                "sync",
                &ticket,
                "--gossip",
                "--open",
                "--bind",
                "127.0.0.1:0",
            ],
        );
        let child = Running(Some(child));
        assert!(first.contains("received 1 new"), "{first}");
        members.push(child);
    }
    // A write by a separate `braid put` process next to the server.
    ok(&dirs[0], &["put", "k", "two"]);
    for d in &dirs[1..] {
        until_value(d, "k", "two");
    }
    // Once more, now that the swarm is up (the first write may ride on a join's greeting).
    ok(&dirs[0], &["put", "k", "three"]);
    for d in &dirs[1..] {
        until_value(d, "k", "three");
    }
    for m in members {
        let m = m.take();
        interrupt(&m);
        let out = wait_bounded(m, LIMIT, "braid sync --gossip");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    stop(server);
}
