//! `braid watch` streaming writes made here, by other processes, and by peers through a live
//! `serve` and `sync --live`; and what those two report as they run. Real processes; every
//! wait is on a line a process prints.

mod cli_common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout};
use std::time::Duration;

use cli_common::{interrupt, ok, wait_bounded};
use serde_json::Value;

/// Starts a long-running braid; returns it and a reader on its stdout.
fn start(dir: &Path, args: &[&str]) -> (Child, BufReader<ChildStdout>) {
    let mut child = cli_common::start(&[], dir, args);
    let out = BufReader::new(child.stdout.take().unwrap());
    (child, out)
}

/// The next line the process prints (blocks until it does).
fn next_line(out: &mut BufReader<ChildStdout>) -> String {
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(!line.is_empty(), "the process ended its output");
    line.trim_end().to_string()
}

fn doc(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

#[test]
fn watch_streams_local_other_process_and_peer_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    ok(&a, &["init"]);
    let (mut server, mut server_out) = start(
        &a,
        &["--json", "serve", "--listen", "127.0.0.1:0", "--live"],
    );
    let addr = doc(&next_line(&mut server_out))["listening"]
        .as_str()
        .unwrap()
        .to_string();
    // From the start of the (empty) feed, so no write can slip in before it looks.
    let (watch, mut watch_out) = start(&a, &["--json", "watch", "--since", "0", "--count", "3"]);

    let (client, mut client_out) = start(&b, &["--json", "sync", "--live", &addr]);
    assert_eq!(doc(&next_line(&mut client_out))["event"], "live");

    // Another process writes to a.
    ok(&a, &["put", "local", "1"]);
    let e = doc(&next_line(&mut watch_out));
    assert_eq!(
        (e["key"].as_str(), e["op"].as_str()),
        (Some("local"), Some("put"))
    );
    assert_eq!(e["ns"], Value::Null);
    assert_eq!(e["conflict"], false);
    assert_eq!(
        e["origin"], "local",
        "signed with a's own key: written here"
    );

    // b's live session receives it and reports its running count.
    let n = doc(&next_line(&mut client_out));
    assert_eq!(
        (n["event"].as_str(), n["nodes"].as_u64()),
        (Some("nodes"), Some(1))
    );

    // A write on b reaches a through the live sessions, in a namespace.
    ok(&b, &["--ns", "app", "put", "remote", "2"]);
    let e = doc(&next_line(&mut watch_out));
    assert_eq!(
        (e["key"].as_str(), e["ns"].as_str()),
        (Some("remote"), Some("app"))
    );
    assert_eq!(e["value"], "2");
    assert_eq!(e["origin"], "peer", "signed by b");
    ok(&a, &["--ns", "app", "del", "remote"]);
    let e = doc(&next_line(&mut watch_out));
    assert_eq!(
        (e["key"].as_str(), e["op"].as_str()),
        (Some("remote"), Some("del"))
    );
    let out = wait_bounded(watch, Duration::from_secs(30), "watch --count 3");
    assert!(out.status.success());

    // The server reported the session and its running count.
    interrupt(&client);
    assert!(wait_bounded(client, Duration::from_secs(30), "sync --live")
        .status
        .success());
    interrupt(&server);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut server_out, &mut rest).unwrap();
    assert!(server.wait().unwrap().success());
    let events: Vec<Value> = rest.lines().map(doc).collect();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert!(kinds.contains(&"session_started"), "{rest}");
    assert!(kinds.contains(&"session_done"), "{rest}");
    assert!(kinds.contains(&"nodes"), "{rest}");
    let last = events.last().unwrap();
    assert_eq!(last["sessions"], 1, "{rest}");
}

#[test]
fn watch_in_text_filters_by_namespace_and_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("r");
    ok(&dir, &["put", "user/ann", "1"]);
    ok(&dir, &["--ns", "app", "put", "user/bob", "2"]);
    ok(&dir, &["--ns", "app", "put", "other", "3"]);
    ok(&dir, &["--ns", "app", "put", "user/cy", "4"]);
    let text = ok(
        &dir,
        &[
            "--ns", "app", "watch", "user/", "--since", "0", "--count", "2",
        ],
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].contains("put [app] user/bob = 2"), "{text}");
    assert!(lines[1].contains("put [app] user/cy = 4"), "{text}");
    let all = ok(&dir, &["watch", "--since", "0", "--count", "4"]);
    assert!(
        all.lines().next().unwrap().contains("put user/ann = 1"),
        "{all}"
    );
}
