//! Helpers for the tests that run the real `braid` binary.
#![allow(dead_code)] // each test file uses its own subset

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

/// Runs `braid --dir DIR ARGS...` to completion.
pub fn braid(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_braid"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("the braid binary runs")
}

/// Runs a command that must succeed; returns its stdout.
pub fn ok(dir: &Path, args: &[&str]) -> String {
    let out = braid(dir, args);
    assert!(
        out.status.success(),
        "braid {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must fail; returns its error output.
pub fn fails(dir: &Path, args: &[&str]) -> String {
    let out = braid(dir, args);
    assert!(!out.status.success(), "braid {args:?} should fail");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!err.trim().is_empty());
    err
}

/// Runs a command with `--json` and parses its output.
pub fn json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(dir, &all)).unwrap()
}

/// Starts `braid --dir DIR ARGS...` (run through `wrapper`, e.g. `prlimit --nofile=64 --`, when
/// it is not empty) with stdout and stderr piped.
pub fn start(wrapper: &[&str], dir: &Path, args: &[&str]) -> Child {
    let braid = env!("CARGO_BIN_EXE_braid");
    let mut command = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut c = Command::new(program);
            c.args(rest).arg(braid);
            c
        }
        None => Command::new(braid),
    };
    command
        .arg("--dir")
        .arg(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Starts a long-running command (serve, sync --live) and returns it with the first line it
/// printed: the bound address for `serve`, the "caught up" event for `sync --live`.
pub fn spawn(dir: &Path, args: &[&str]) -> (Child, String) {
    spawn_wrapped(&[], dir, args)
}

/// Sends SIGINT (what Ctrl-C sends).
pub fn interrupt(child: &Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Like [`spawn`], with the binary run through `wrapper` (e.g. `prlimit --nofile=64 --`).
pub fn spawn_wrapped(wrapper: &[&str], dir: &Path, args: &[&str]) -> (Child, String) {
    let mut child = start(wrapper, dir, args);
    let mut first = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    (child, first.trim().to_string())
}

/// Sends SIGTERM (what a service manager sends).
pub fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits for `child` to exit, at most `limit`; kills it and fails the test if it does not.
pub fn wait_bounded(mut child: Child, limit: std::time::Duration, what: &str) -> Output {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what}: still running after {limit:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
