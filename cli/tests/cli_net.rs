//! `braid serve` and `braid sync` as two real processes over loopback, and the network
//! failures a user meets.

mod cli_common;

use std::io::Write;
use std::path::Path;

use std::time::Duration;

use cli_common::{braid, interrupt, json, ok, spawn, spawn_wrapped, terminate, wait_bounded};

/// Starts `braid serve` on a free port; returns the child and the address it printed first.
fn serve(dir: &Path, extra: &[&str]) -> (std::process::Child, String) {
    let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    spawn(dir, &args)
}

#[test]
fn two_processes_sync_see_a_conflict_and_its_resolution() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    ok(&a, &["put", "color", "red"]);
    ok(&b, &["put", "color", "blue"]);
    ok(&b, &["put", "size", "large"]);

    let (server, addr) = serve(&a, &[]);
    let report = json(&b, &["sync", &addr]);
    assert_eq!(report["nodes_received"], 1);
    assert_eq!(report["nodes_sent"], 2);
    assert_eq!(report["round_trips"], 1);

    for dir in [&a, &b] {
        // A conflict is exit status 4, with the versions printed as usual.
        let out = braid(dir, &["--json", "get", "color"]);
        assert_eq!(out.status.code(), Some(4));
        let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(got["conflict"], true, "{got}");
        let mut values: Vec<String> = got["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["value"].as_str().unwrap().to_string())
            .collect();
        values.sort();
        assert_eq!(values, ["blue", "red"]);
    }
    let text = String::from_utf8(braid(&b, &["get", "color"]).stdout).unwrap();
    assert!(text.contains("CONFLICT"), "{text}");
    assert_eq!(json(&b, &["conflicts"])["key"], "color");

    ok(&b, &["resolve", "color", "purple"]);
    let again = json(&b, &["sync", &addr]);
    assert_eq!(again["nodes_sent"], 1);
    assert_eq!(again["nodes_received"], 0);

    interrupt(&server);
    let out = server.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "serve stops cleanly on Ctrl-C: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("stopped: 2 sessions"));

    for dir in [&a, &b] {
        assert_eq!(ok(dir, &["get", "color"]).trim(), "purple");
        assert_eq!(ok(dir, &["get", "size"]).trim(), "large");
        ok(dir, &["verify"]);
    }
    assert_eq!(ok(&a, &["heads"]), ok(&b, &["heads"]));
}

#[test]
fn push_and_pull_move_one_way() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    ok(&a, &["put", "from-a", "1"]);
    ok(&b, &["put", "from-b", "2"]);
    let (server, addr) = serve(&a, &[]);
    let pushed = json(&b, &["sync", "--push", &addr]);
    assert_eq!(
        (
            pushed["nodes_sent"].as_u64(),
            pushed["nodes_received"].as_u64()
        ),
        (Some(1), Some(0))
    );
    assert!(
        braid(&b, &["get", "from-a"]).status.code() != Some(0),
        "push did not pull"
    );
    let pulled = json(&b, &["sync", "--pull", &addr]);
    assert_eq!(pulled["nodes_received"], 1);
    interrupt(&server);
    server.wait_with_output().unwrap();
    assert_eq!(ok(&b, &["get", "from-a"]).trim(), "1");
}

#[test]
fn an_unreachable_peer_is_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    ok(tmp.path(), &["put", "k", "v"]);
    let out = braid(tmp.path(), &["sync", &format!("127.0.0.1:{port}")]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("syncing with"), "{err}");
    // The cause once: the transport error wraps the OS error and repeats its text.
    assert_eq!(err.matches("refused").count(), 1, "{err}");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(ok(tmp.path(), &["get", "k"]).trim(), "v");
}

#[test]
fn a_peer_speaking_another_protocol_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    ok(tmp.path(), &["put", "k", "v"]);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let fake = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let _ = s.write_all(b"SSH-2.0-OpenSSH_9.6\r\n");
        let mut sink = [0u8; 1024];
        let _ = std::io::Read::read(&mut s, &mut sink);
    });
    let out = braid(tmp.path(), &["sync", &addr]);
    fake.join().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("not a braidlog peer"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    ok(tmp.path(), &["verify"]);
    assert_eq!(ok(tmp.path(), &["get", "k"]).trim(), "v");
}

/// A live server notices a write made by another process on its store (it cannot hear that
/// commit, so it checks the feed's end while live) and forwards it to a live client.
#[test]
fn live_sessions_forward_writes_from_other_processes() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    ok(&a, &["init"]);
    let (mut server, addr) = serve(&a, &["--live"]);
    let (client, live) = spawn(&b, &["--json", "sync", "--live", &addr]);
    assert!(live.contains("\"event\":\"live\""), "{live}");
    // Written by a third process while both sessions are live.
    ok(&a, &["put", "late", "arrival"]);
    // Wait for the replicated state itself (bounded), not for a guessed delay.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if b.join("data.mdb").exists() && braid(&b, &["get", "late"]).status.success() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the write never reached the live client"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(ok(&b, &["get", "late"]).trim(), "arrival");
    interrupt(&client);
    let out = client.wait_with_output().unwrap();
    assert!(out.status.success(), "a live sync ends cleanly on Ctrl-C");
    interrupt(&server);
    assert!(server.wait().unwrap().success());
}

/// A client that connects and never speaks must not keep `serve` from stopping on SIGTERM.
#[test]
fn serve_stops_on_sigterm_with_an_idle_peer_connected() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, addr) = serve(tmp.path(), &[]);
    let mut idle = std::net::TcpStream::connect(&addr).unwrap();
    // The server's first bytes prove it accepted the connection.
    let mut first = [0u8; 8];
    std::io::Read::read_exact(&mut idle, &mut first).unwrap();
    assert_eq!(&first, b"braidlog");
    terminate(&server);
    let out = wait_bounded(server, Duration::from_secs(15), "serve after SIGTERM");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("stopped: 1 session (1 failed)"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let local = idle.local_addr().unwrap().to_string();
    assert!(
        stderr.contains(&format!("session with {local} failed")) && stderr.contains("shutdown"),
        "the failed session is logged with its peer and reason: {stderr}"
    );
}

/// `braid sync` against a server that accepts and then says nothing fails with a timeout.
#[test]
fn sync_with_a_silent_server_times_out() {
    let tmp = tempfile::tempdir().unwrap();
    ok(tmp.path(), &["put", "k", "v"]);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let silent = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        // Hold the connection, silent, until the client goes away.
        let mut sink = [0u8; 1024];
        while std::io::Read::read(&mut s, &mut sink).unwrap_or(0) > 0 {}
    });
    let out = braid(tmp.path(), &["sync", "--handshake-timeout", "1s", &addr]);
    silent.join().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("peer silent for 1s while handshaking"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    ok(tmp.path(), &["verify"]);
}

/// Under a descriptor limit far below the connections it is offered, `serve` keeps
/// accepting after "too many open files", ends the idle sessions by their handshake timeout,
/// and an honest client still syncs.
#[test]
fn serve_under_a_descriptor_limit_survives_a_flood_and_serves_honest_clients() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    ok(&a, &["put", "from-a", "1"]);
    ok(&b, &["put", "from-b", "2"]);
    let (server, addr) = spawn_wrapped(
        &["prlimit", "--nofile=64", "--"],
        &a,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--handshake-timeout",
            "2s",
        ],
    );
    let idle: Vec<_> = (0..100)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    let report = json(&b, &["sync", &addr]);
    assert_eq!(report["nodes_received"], 1);
    assert_eq!(report["nodes_sent"], 1);
    interrupt(&server);
    let out = wait_bounded(server, Duration::from_secs(15), "serve after Ctrl-C");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("accept failed"),
        "the limit was reached: {stderr}"
    );
    assert!(stderr.contains("while handshaking"), "{stderr}");
    drop(idle);
    assert_eq!(ok(&a, &["get", "from-b"]).trim(), "2");
}
