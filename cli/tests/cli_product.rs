//! The `braid` command as users and scripts meet it: namespaces, hash prefixes, exit
//! statuses, JSON shapes, closed or full stdout, empty keys, and messages. Run on the real
//! binary.

mod cli_common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use braidlog::kv::{KvOp, Op};
use cli_common::{braid, json, ok};
use serde_json::Value;

/// Two writes of `key` in namespace `ns` (the root when `None`) that did not see each
/// other: a conflict, as two replicas syncing would make it.
fn conflict(dir: &Path, ns: Option<&str>, key: &str, values: [&str; 2]) {
    let log = braidlog::Log::open(dir).unwrap();
    let mut kv = braidlog::Kv::open(&log).unwrap();
    if let Some(ns) = ns {
        kv = kv.namespace(ns).unwrap();
    }
    let base = log.heads().unwrap();
    for v in values {
        let op = KvOp::new(kv.namespace_path(), key.as_bytes(), Op::Put(v.into())).unwrap();
        log.add(base.clone(), op.encode()).unwrap();
    }
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// A user debugging an app that keeps its keys in a namespace finds, inspects and resolves
/// its conflict from what the commands print.
#[test]
fn a_conflict_in_a_namespace_is_found_shown_and_resolved() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("r");
    ok(&dir, &["put", "top", "level"]);
    conflict(&dir, Some("app"), "widget", ["red", "blue"]);

    // Every namespace is listed, with counts.
    assert_eq!(
        ok(&dir, &["ns"]),
        "(root)\t1 key\t0 conflicts\napp\t1 key\t1 conflict\n"
    );
    assert_eq!(
        lines(&ok(&dir, &["--json", "ns"])),
        vec![
            serde_json::json!({"ns": null, "keys": 1, "conflicts": 0}),
            serde_json::json!({"ns": "app", "keys": 1, "conflicts": 1}),
        ]
    );
    // `conflicts` and `ls` cover every namespace without --ns, and name it.
    let conflicts = ok(&dir, &["conflicts"]);
    assert!(
        conflicts.starts_with("[app] widget\tCONFLICT: "),
        "{conflicts}"
    );
    assert_eq!(json(&dir, &["conflicts"])["ns"], "app");
    assert_eq!(ok(&dir, &["ls"]).lines().count(), 2);
    assert_eq!(ok(&dir, &["--ns", "app", "conflicts"]).lines().count(), 1);
    assert_eq!(ok(&dir, &["--ns", "other", "conflicts"]), "");

    // A key asked for in the wrong namespace: not found, and where it is.
    let out = braid(&dir, &["get", "widget"]);
    assert_eq!(code(&out), Some(3));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("--ns app get widget"), "{err}");

    // `get` shows the conflict, exits 4, and the hint has the flags that act on it.
    let out = braid(&dir, &["--ns", "app", "get", "widget"]);
    assert_eq!(code(&out), Some(4));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("in namespace app"), "{text}");
    let hint = text.lines().last().unwrap();
    // It names the replica given with --dir, so it acts on the same one.
    let dir_flag = format!(
        "braid --dir {} --ns app resolve widget VALUE",
        dir.display()
    );
    assert!(hint.contains(&dir_flag), "{text}");
    // --ns works before and after the subcommand.
    let after = braid(&dir, &["get", "--ns", "app", "widget"]);
    assert_eq!(code(&after), Some(4));

    // Following the hint resolves it.
    let resolve: Vec<&str> = hint
        .split("braid ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .take_while(|w| *w != "VALUE")
        .collect();
    let followed = Command::new(env!("CARGO_BIN_EXE_braid"))
        .args(&resolve)
        .arg("purple")
        .output()
        .unwrap();
    assert!(followed.status.success(), "{resolve:?}");
    assert_eq!(ok(&dir, &["--ns", "app", "get", "widget"]), "purple\n");
    assert_eq!(ok(&dir, &["conflicts"]), "");

    // Listings name the namespace, in text and JSON.
    let log = ok(&dir, &["log"]);
    assert!(log.contains("put [app] widget = purple"), "{log}");
    let last = lines(&ok(&dir, &["--json", "log"])).pop().unwrap();
    assert_eq!(
        last["kv"],
        serde_json::json!({"ns": "app", "key": "widget", "op": "put", "value": "purple"})
    );
    assert_eq!(last["payload"], Value::Null);
    let shown = json(&dir, &["show", last["hash"].as_str().unwrap()]);
    assert_eq!(shown["kv"]["ns"], "app");
    let out = braid(&dir, &["graph", "--key", "widget"]);
    assert_eq!(
        code(&out),
        Some(3),
        "no such key in the root: not an empty drawing"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ns app graph --key widget"));
    let graph = ok(&dir, &["--ns", "app", "graph", "--key", "widget"]);
    assert_eq!(graph.matches(" -> ").count(), 2, "{graph}");
    assert!(ok(&dir, &["graph"]).contains("put [app] widget = purple"));

    // `history` gives the causal depth.
    let history = lines(&ok(&dir, &["--json", "--ns", "app", "history", "widget"]));
    assert_eq!(history[0]["depth"], 2);
    assert_eq!(history[0]["ns"], "app");
    assert!(ok(&dir, &["--ns", "app", "history", "widget"]).contains("depth 2"));

    // `--ns ""` is not the root: refused.
    assert_eq!(code(&braid(&dir, &["--ns", "", "ls"])), Some(2));
}

#[test]
fn any_unique_hash_prefix_names_a_node() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("r");
    let first = ok(&dir, &["add", "first"]).trim().to_string();
    // Every length from 4 to 64 names it, in any case.
    for len in 4..=64 {
        let shown = json(&dir, &["show", &first[..len]]);
        assert_eq!(shown["hash"], first.as_str());
    }
    assert_eq!(
        json(&dir, &["show", &first[..8].to_uppercase()])["hash"],
        first.as_str()
    );
    let child = ok(&dir, &["add", "--link", &first[..6], "child"]);
    assert_eq!(
        json(&dir, &["show", &child[..12]])["links"],
        serde_json::json!([first])
    );

    // Too short, not hex: usage (2). Unknown: not found (3).
    assert_eq!(code(&braid(&dir, &["show", &first[..3]])), Some(2));
    assert_eq!(code(&braid(&dir, &["show", "zzzz"])), Some(2));
    let absent = (0..u16::MAX)
        .map(|i| format!("{i:04x}"))
        .find(|p| !first.starts_with(p.as_str()) && !child.starts_with(p.as_str()))
        .unwrap();
    let out = braid(&dir, &["show", &absent]);
    assert_eq!(code(&out), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no node"));

    // Ambiguous: add nodes until two share their first four hex digits.
    let log = braidlog::Log::open(&dir).unwrap();
    let mut seen = std::collections::HashMap::new();
    let shared = (0u32..)
        .find_map(|i| {
            let h = log
                .append(i.to_be_bytes().to_vec())
                .unwrap()
                .hash()
                .to_string();
            seen.insert(h[..4].to_string(), h.clone())
                .map(|_| h[..4].to_string())
        })
        .unwrap();
    drop(log);
    let out = braid(&dir, &["show", &shared]);
    assert_eq!(code(&out), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("ambiguous"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn exit_statuses_are_the_documented_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("r");
    // No replica: not found, and nothing created.
    assert_eq!(code(&braid(&dir, &["get", "k"])), Some(3));
    assert!(!dir.exists());
    ok(&dir, &["put", "k", "v"]);
    assert_eq!(code(&braid(&dir, &["get", "k"])), Some(0));
    assert_eq!(code(&braid(&dir, &["get", "missing"])), Some(3));
    assert_eq!(code(&braid(&dir, &["del", "missing"])), Some(3));
    assert_eq!(code(&braid(&dir, &["history", "missing"])), Some(3));
    assert_eq!(code(&braid(&dir, &["resolve", "missing", "x"])), Some(3));
    // A failure: resolving what has no conflict.
    assert_eq!(code(&braid(&dir, &["resolve", "k", "x"])), Some(1));
    // Usage.
    assert_eq!(code(&braid(&dir, &["get"])), Some(2));
    assert_eq!(code(&braid(&dir, &["--ns", "app", "heads"])), Some(2));
    conflict(&dir, None, "c", ["1", "2"]);
    let out = braid(&dir, &["--json", "get", "c"]);
    assert_eq!(code(&out), Some(4));
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["conflict"], true);
    // `resolve --pick`: a prefix of no version is not found, of both is ambiguous.
    assert_eq!(
        code(&braid(&dir, &["resolve", "c", "--pick", "zzzz"])),
        Some(3)
    );
    assert_eq!(code(&braid(&dir, &["resolve", "c", "--pick", ""])), Some(2));
    let first = got["versions"][0]["hash"].as_str().unwrap();
    ok(
        &dir,
        &["resolve", "c", "--pick", &first[..8].to_uppercase()],
    );
    assert_eq!(
        ok(&dir, &["get", "c"]),
        format!("{}\n", got["versions"][0]["value"].as_str().unwrap())
    );
}

/// Every command either prints JSON with `--json` or refuses it.
#[test]
fn every_command_honours_or_refuses_json() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("r");
    let hash = json(&dir, &["put", "k", "v"])["hash"]
        .as_str()
        .unwrap()
        .to_string();
    let add = json(&dir, &["add", "raw"]);
    assert_eq!(add["hash"].as_str().unwrap().len(), 64);
    let key = json(&dir, &["id"])["public_key"]
        .as_str()
        .unwrap()
        .to_string();
    let saved = tmp.path().join("saved");
    let saved = saved.to_str().unwrap();
    let dir_str = dir.to_str().unwrap();
    for args in [
        vec!["init"],
        vec!["heads"],
        vec!["log"],
        vec!["show", &hash[..6]],
        vec!["graph"],
        vec!["graph", "--key", "k"],
        vec!["verify"],
        vec!["put", "k", "w"],
        vec!["get", "k"],
        vec!["history", "k"],
        vec!["ls"],
        vec!["ns"],
        vec!["conflicts"],
        vec!["del", "k"],
        vec!["id"],
        vec!["trust", "add", &key],
        vec!["trust", "list"],
        vec!["policy"],
        vec!["watch", "--since", "0", "--count", "2"],
        vec!["salvage", "--from", dir_str, "--to", saved],
    ] {
        let mut all = vec!["--json"];
        all.extend_from_slice(&args);
        let text = ok(&dir, &all);
        for line in text.lines() {
            assert!(
                serde_json::from_str::<Value>(line).is_ok(),
                "{args:?} printed {line:?}"
            );
        }
    }
    let graph = lines(&ok(&dir, &["--json", "graph"]));
    assert_eq!(graph.len(), 4, "one document per node");
    let refused = braid(&dir, &["--json", "demo"]);
    assert_eq!(code(&refused), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no JSON"));
}

/// Runs braid with stdout going to `stdout`.
fn braid_to(dir: &Path, args: &[&str], stdout: Stdio) -> Output {
    Command::new(env!("CARGO_BIN_EXE_braid"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

/// A pipe whose reader is already gone: every write to it fails with EPIPE.
fn closed_pipe() -> Stdio {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    // SAFETY: `pipe` writes two new descriptors into the array it is given.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors are open and owned by nothing else; each is owned once.
    let (reader, writer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(reader);
    writer.into()
}

fn full_device() -> Stdio {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap()
        .into()
}

#[test]
fn a_closed_stdout_ends_quietly_and_a_committed_write_still_succeeds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("r");
    for i in 0..3 {
        ok(&dir, &["put", &format!("k{i}"), "v"]);
    }
    for args in [
        vec!["ls"],
        vec!["log"],
        vec!["heads"],
        vec!["graph"],
        vec!["get", "k1"],
        vec!["history", "k1"],
        vec!["ns"],
        vec!["verify"],
        vec!["watch", "--since", "0", "--count", "1"],
    ] {
        let out = braid_to(&dir, &args, closed_pipe());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(&out), Some(0), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: {err}");
    }
    // A write whose hash cannot be printed happened: success.
    let out = braid_to(&dir, &["put", "piped", "yes"], closed_pipe());
    assert_eq!(
        code(&out),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(ok(&dir, &["get", "piped"]), "yes\n");
    let out = braid_to(&dir, &["del", "piped"], closed_pipe());
    assert_eq!(code(&out), Some(0));
    assert_eq!(code(&braid(&dir, &["get", "piped"])), Some(3));
}

#[test]
fn a_full_stdout_fails_reads_and_reports_committed_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("r");
    ok(&dir, &["put", "k", "v"]);
    let out = braid_to(&dir, &["ls"], full_device());
    assert_eq!(code(&out), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("writing to stdout"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    let out = braid_to(&dir, &["put", "full", "disk"], full_device());
    assert_eq!(code(&out), Some(0));
    let err = String::from_utf8(out.stderr).unwrap();
    let hash = json(&dir, &["get", "full"])["versions"][0]["hash"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(err.contains(&format!("committed as {hash}")), "{err}");
}

#[test]
fn empty_keys_are_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("r");
    ok(&dir, &["put", "", "nothing"]);
    assert_eq!(ok(&dir, &["get", ""]), "nothing\n");
    assert_eq!(ok(&dir, &["ls"]), "\"\"\tnothing\n");
    assert_eq!(json(&dir, &["get", ""])["key"], "");
    assert!(ok(&dir, &["log"]).contains("put \"\" = nothing"));
    ok(&dir, &["del", ""]);
    assert_eq!(code(&braid(&dir, &["get", ""])), Some(3));
}

#[test]
fn counts_read_as_words_and_graph_labels_are_cut_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("r");
    let long = "é".repeat(50);
    ok(&dir, &["add", &long]);
    let init = ok(&dir, &["init"]);
    assert!(init.trim().ends_with(", 1 node"), "{init}");
    let verify = ok(&dir, &["verify"]);
    assert!(verify.contains("ok: 1 node, 1 head, "), "{verify}");
    let graph = ok(&dir, &["graph"]);
    let label = format!("{}…", "é".repeat(31));
    assert!(graph.contains(&format!("\\n{label}\"")), "{graph}");
}

/// A sync stores what it receives before it prints: a closed stdout does not fail it, and
/// a server keeps serving whether or not its output is read.
#[test]
fn sync_and_serve_outlive_their_readers() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    ok(&a, &["put", "from-a", "1"]);
    let (mut server, addr) = cli_common::spawn(&a, &["serve", "--listen", "127.0.0.1:0"]);
    // The server's reader goes away after the address.
    drop(server.stdout.take());
    for _ in 0..2 {
        let out = braid_to(&b, &["sync", &addr], closed_pipe());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(&out), Some(0), "{err}");
        assert!(err.is_empty(), "{err}");
    }
    assert_eq!(ok(&b, &["get", "from-a"]), "1\n");
    cli_common::interrupt(&server);
    assert!(server.wait().unwrap().success());
}
