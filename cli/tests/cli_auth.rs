//! The authorship commands of the real `braid` binary, as an app operator and an auditor use
//! them: id, trust, policy, verify, and authors in log, show, get and history.

mod cli_common;

use cli_common::{fails, interrupt, json, ok, spawn};

#[test]
fn an_operator_requires_trusted_signatures_and_an_auditor_verifies_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("r");
    let other = tmp.path().join("other");
    let me = ok(&dir, &["id"]).trim().to_string();
    assert_eq!(me.len(), 64);
    assert_eq!(ok(&dir, &["id"]).trim(), me, "the identity is kept");
    let stranger = ok(&other, &["id"]).trim().to_string();

    assert_eq!(ok(&dir, &["policy"]).trim(), "any (0 trusted keys)");
    ok(&dir, &["trust", "add", &me]);
    ok(&dir, &["policy", "trusted"]);
    assert_eq!(ok(&dir, &["trust", "list"]).trim(), me);
    ok(&dir, &["put", "sku/1", "3 boxes"]);

    // Another replica signs with its own key.
    ok(&other, &["put", "sku/2", "1 crate"]);
    let theirs = ok(&other, &["log"]);
    assert!(
        theirs.contains(&format!("by {}", &stranger[..12])),
        "{theirs}"
    );

    let got = json(&dir, &["get", "sku/1"]);
    assert_eq!(got["versions"][0]["author"], me.as_str());
    assert!(got["versions"][0]["timestamp_ms"].as_u64().unwrap() > 0);
    let history = ok(&dir, &["history", "sku/1"]);
    assert!(history.contains(&format!("by {}", &me[..12])), "{history}");
    let log = ok(&dir, &["log", "--author", &me]);
    assert_eq!(log.lines().count(), 1, "{log}");
    assert!(ok(&dir, &["log", "--author", &stranger]).trim().is_empty());

    let report = ok(&dir, &["verify"]);
    assert!(
        report.contains(&format!("signed by {me}: 1 node,")),
        "{report}"
    );
    assert!(report.contains("policy after seq 0: trusted"), "{report}");
    let audit = json(&dir, &["verify"]);
    assert_eq!(audit["ok"], true);
    assert_eq!(audit["unsigned"], 0);
    assert_eq!(audit["authors"][0]["key"], me.as_str());

    ok(&dir, &["trust", "remove", &me]);
    let err = fails(&dir, &["put", "sku/1", "4 boxes"]);
    assert!(err.contains("not on the allow-list"), "{err}");
    assert!(fails(&dir, &["trust", "add", "not-a-key"]).contains("hex"));
}

/// A server under `trusted` refuses a stranger's push, naming node and author, and stores
/// nothing of it; once the key is trusted, the same push goes through.
#[test]
fn a_trusted_server_refuses_a_stranger_until_trusted() {
    let tmp = tempfile::tempdir().unwrap();
    let (server_dir, client) = (tmp.path().join("server"), tmp.path().join("client"));
    let own = ok(&server_dir, &["id"]).trim().to_string();
    ok(&server_dir, &["trust", "add", &own]);
    ok(&server_dir, &["policy", "trusted"]);
    ok(&server_dir, &["put", "k", "server's"]);
    let stranger = ok(&client, &["id"]).trim().to_string();
    ok(&client, &["put", "j", "client's"]);

    let (server, addr) = spawn(&server_dir, &["serve", "--listen", "127.0.0.1:0"]);
    // The client sees the session end early; the server's log names the refusal (below).
    assert!(fails(&client, &["sync", "--push", &addr]).starts_with("braid:"));
    assert_eq!(json(&server_dir, &["verify"])["nodes"], 1, "nothing stored");

    // The allow-list is read per write: the running server takes the key at the next sync.
    ok(&server_dir, &["trust", "add", &stranger]);
    let report = json(&client, &["sync", "--push", &addr]);
    assert_eq!(report["nodes_sent"], 1);
    interrupt(&server);
    let out = server.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("refused") && log.contains(&stranger),
        "the server reports node and author: {log}"
    );
    let got = json(&server_dir, &["get", "j"]);
    assert_eq!(got["versions"][0]["author"], stranger.as_str());
    assert_eq!(json(&server_dir, &["verify"])["ok"], true);
}
