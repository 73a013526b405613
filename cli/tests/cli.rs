//! The real `braid` binary, run as a user would.

mod cli_common;

use cli_common::{braid, fails, ok};

#[test]
fn dag_commands_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("r");
    ok(&dir, &["init"]);
    let first = ok(&dir, &["add", "first"]).trim().to_string();
    let second = ok(&dir, &["add", "--link", &first, "second"])
        .trim()
        .to_string();
    assert_eq!(ok(&dir, &["heads"]).trim(), second);

    let heads: serde_json::Value = serde_json::from_str(&ok(&dir, &["--json", "heads"])).unwrap();
    assert_eq!(heads, serde_json::json!([second]));

    let shown: serde_json::Value =
        serde_json::from_str(&ok(&dir, &["--json", "show", &second])).unwrap();
    assert_eq!(shown["payload"], "second");
    assert_eq!(shown["links"], serde_json::json!([first]));
    assert_eq!(shown["seq"], 2);

    let log = ok(&dir, &["--json", "log"]);
    let seqs: Vec<u64> = log
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, vec![1, 2]);

    let dot = ok(&dir, &["graph"]);
    assert!(dot.starts_with("digraph"));
    assert!(dot.contains(&format!("\"{}\" -> \"{}\"", &second[..12], &first[..12])));

    let verify: serde_json::Value = serde_json::from_str(&ok(&dir, &["--json", "verify"])).unwrap();
    assert_eq!(verify["ok"], true);
    assert_eq!(verify["nodes"], 2);
}

#[test]
fn bad_input_gives_one_clear_line_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("r");
    let err = fails(&dir, &["heads"]);
    assert!(err.contains("no replica"), "{err}");
    assert!(
        !dir.join("data.mdb").exists(),
        "a read must not create a store"
    );

    ok(&dir, &["add", "x"]);
    let err = fails(&dir, &["show", "not-hex"]);
    assert!(err.contains("hex"), "{err}");
    let unknown = "00".repeat(32);
    let err = fails(&dir, &["show", &unknown]);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no node"), "{err}");
    let err = fails(&dir, &["add", "--link", &unknown, "y"]);
    assert!(err.contains("no node"), "{err}");
    assert_eq!(
        ok(&dir, &["log"]).lines().count(),
        1,
        "the failed add stored nothing"
    );
}

#[test]
fn verify_exits_non_zero_on_a_flipped_byte_in_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("r");
    ok(&dir, &["add", "CORRUPT-ME-PLEASE"]);
    ok(&dir, &["add", "fine"]);
    let path = dir.join("data.mdb");
    let mut bytes = std::fs::read(&path).unwrap();
    // LMDB is copy-on-write: stale copies of a page may remain, so damage every copy.
    let hits: Vec<usize> = bytes
        .windows(17)
        .enumerate()
        .filter(|(_, w)| *w == b"CORRUPT-ME-PLEASE")
        .map(|(i, _)| i)
        .collect();
    assert!(!hits.is_empty(), "payload is in the file");
    for at in hits {
        bytes[at] ^= 0x20;
    }
    std::fs::write(&path, bytes).unwrap();
    let out = braid(&dir, &["verify"]);
    assert!(!out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("hash to"), "{text}");
    assert!(text.contains("CORRUPT"), "{text}");
}

#[test]
fn every_command_has_help_with_an_example() {
    let tmp = tempfile::tempdir().unwrap();
    for cmd in [
        "init",
        "add",
        "heads",
        "log",
        "show",
        "graph",
        "verify",
        "put",
        "get",
        "del",
        "resolve",
        "conflicts",
        "ls",
        "history",
        "ns",
        "watch",
        "serve",
        "sync",
        "demo",
    ] {
        let help = ok(tmp.path(), &[cmd, "--help"]);
        assert!(help.contains("Example"), "{cmd} --help has no example");
    }
}

#[test]
fn key_value_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("r");
    ok(&dir, &["put", "user/ann", "admin"]);
    ok(&dir, &["put", "user/bob", "guest"]);
    ok(&dir, &["put", "zeta", "last"]);
    ok(&dir, &["put", "user/bob", "owner"]);
    assert_eq!(ok(&dir, &["get", "user/bob"]).trim(), "owner");

    let got: serde_json::Value =
        serde_json::from_str(&ok(&dir, &["--json", "get", "user/bob"])).unwrap();
    assert_eq!(got["key"], "user/bob");
    assert_eq!(got["versions"][0]["value"], "owner");
    assert_eq!(got["versions"][0]["deleted"], false);
    assert_eq!(got["versions"].as_array().unwrap().len(), 1);

    assert_eq!(
        ok(&dir, &["ls", "user/"]),
        "user/ann\tadmin\nuser/bob\towner\n"
    );
    assert_eq!(
        ok(&dir, &["ls", "--from", "user/b", "--to", "zz"]),
        "user/bob\towner\nzeta\tlast\n"
    );
    assert_eq!(ok(&dir, &["conflicts"]), "");

    ok(&dir, &["del", "user/ann"]);
    let err = fails(&dir, &["get", "user/ann"]);
    assert!(err.contains("no key"), "{err}");
    let history = ok(&dir, &["history", "user/bob"]);
    assert_eq!(history.lines().count(), 2);
    assert!(history.lines().next().unwrap().contains("(current)"));

    let dot = ok(&dir, &["graph", "--key", "user/bob"]);
    assert_eq!(
        dot.matches(" -> ").count(),
        1,
        "the second write superseded the first: {dot}"
    );
    assert!(
        dot.contains("put owner") && dot.contains("style=bold"),
        "{dot}"
    );
    assert!(ok(&dir, &["log"]).contains("put user/bob = owner"));

    let err = fails(&dir, &["resolve", "user/bob", "x"]);
    assert!(err.contains("no conflict"), "{err}");

    ok(&dir, &["put", "--ns", "other", "user/bob", "elsewhere"]);
    assert_eq!(
        ok(&dir, &["get", "--ns", "other", "user/bob"]).trim(),
        "elsewhere"
    );
    assert_eq!(ok(&dir, &["get", "user/bob"]).trim(), "owner");

    let file = tmp.path().join("value.bin");
    std::fs::write(&file, [0u8, 159, 146, 150]).unwrap();
    ok(&dir, &["put", "--file", file.to_str().unwrap(), "blob"]);
    assert_eq!(ok(&dir, &["get", "blob"]).trim(), "0x009f9296");
    ok(&dir, &["verify"]);
}

#[test]
fn demo_runs_and_converges() {
    let tmp = tempfile::tempdir().unwrap();
    let out = ok(tmp.path(), &["demo"]);
    assert!(out.contains("CONFLICT on \"color\""), "{out}");
    assert!(out.contains("Converged"), "{out}");
    assert_eq!(out.matches("verify ok").count(), 3, "{out}");
}
