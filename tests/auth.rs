//! Signed authorship through the public API: identities, signed nodes over sync, tampering in
//! transit, policies on local writes and on sync, the audit in `verify`, and convergent merges.

use braidlog::kv::{Deterministic, KvRead};
use std::collections::BTreeSet;

use braidlog::kv::Kv;
use braidlog::sync::wire::{self as codec, Decoder, Message};
use braidlog::sync::{sync, Mode, SyncError, SyncOptions, SyncReport};
use braidlog::{Hash, Identity, Log, LogError, Node, Policy, PolicyError, PolicyMode};
use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;

use common::{assert_verified, hashes, replica, try_both, Replica};

type Outcome = (Result<SyncReport, SyncError>, Result<SyncReport, SyncError>);

/// Syncs `a` (pushing) into `b` (pulling) through a relay that rewrites the first node frame
/// from `a` with `tamper`.
async fn through_tamperer(a: &Log, b: &Log, tamper: impl Fn(&mut Vec<u8>) + Send) -> Outcome {
    let (sa, pa) = tokio::io::duplex(64 * 1024);
    let (sb, pb) = tokio::io::duplex(64 * 1024);
    let (mut pa_r, mut pa_w) = tokio::io::split(pa);
    let (mut pb_r, mut pb_w) = tokio::io::split(pb);
    let a_to_b = async move {
        let mut dec = Decoder::new();
        let mut buf = vec![0u8; 16 * 1024];
        let mut done = false;
        if pb_w.write_all(&codec::preamble()).await.is_err() {
            return;
        }
        loop {
            let n = match pa_r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            dec.push(&buf[..n]);
            let mut out = Vec::new();
            while let Ok(Some(mut msg)) = dec.next_message() {
                if let (Message::Node(bytes), false) = (&mut msg, done) {
                    tamper(bytes);
                    done = true;
                }
                codec::encode(&msg, &mut out);
            }
            if pb_w.write_all(&out).await.is_err() {
                return;
            }
        }
    };
    let b_to_a = async move {
        let _ = tokio::io::copy(&mut pb_r, &mut pa_w).await;
        let _ = pa_w.shutdown().await;
    };
    let (ra, rb, _, _) = tokio::join!(
        async {
            let r = sync(a, sa, SyncOptions::new(Mode::Push)).await;
            r
        },
        sync(b, sb, SyncOptions::new(Mode::Pull)),
        a_to_b,
        b_to_a
    );
    (ra, rb)
}

#[test]
fn a_replica_signs_with_its_own_identity_kept_in_its_directory() {
    let r = replica();
    let id = r.log.identity().unwrap().expect("signing by default");
    let node = r.log.append(b"x".to_vec()).unwrap();
    assert_eq!(node.author(), Some(id.public_key()));
    assert!(node.timestamp_ms().unwrap() > 1_600_000_000_000);
    let path = r.log.path().join(braidlog::IDENTITY_FILE);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // An app-supplied identity, and unsigned writes when asked.
    let app = Identity::generate();
    r.log.set_identity(Some(app.clone()));
    assert_eq!(
        r.log.append(b"y".to_vec()).unwrap().author(),
        Some(app.public_key())
    );
    r.log.set_identity(None);
    assert_eq!(r.log.append(b"z".to_vec()).unwrap().author(), None);
    assert_verified(&r.log);
}

#[tokio::test]
async fn signed_nodes_replicate_and_verify_on_the_other_side() {
    let (a, b) = (replica(), replica());
    for i in 0..50u32 {
        a.log.append(i.to_be_bytes().to_vec()).unwrap();
    }
    b.log.set_policy(&Policy::new(PolicyMode::Signed)).unwrap();
    let (ra, rb) = try_both(&a.log, &b.log).await;
    ra.unwrap();
    assert_eq!(rb.unwrap().nodes_received, 50);
    assert_eq!(hashes(&a.log), hashes(&b.log));
    let report = b.log.verify().unwrap();
    assert!(report.is_ok());
    let author = a.log.identity().unwrap().unwrap().public_key();
    assert_eq!(report.authors.get(&author), Some(&50));
    assert_eq!(report.unsigned, 0);
}

/// Offsets in a signed node's encoding (see the layout in `braidlog::node`).
const AUTHOR: usize = 1;
const TIMESTAMP: usize = 33;
const LINK_COUNT: usize = 41;

#[tokio::test]
async fn tampering_in_transit_is_rejected_and_the_store_is_unchanged() {
    type Tamper = fn(&mut Vec<u8>);
    let cases: [(&str, Tamper); 5] = [
        ("author", |b| {
            b[AUTHOR..AUTHOR + 32].copy_from_slice(Identity::generate().public_key().as_bytes())
        }),
        ("timestamp", |b| b[TIMESTAMP + 7] ^= 1),
        ("payload", |b| {
            let at = b.len() - 65;
            b[at] ^= 1
        }),
        ("links", |b| {
            // One link becomes none: the node claims to be a root.
            assert_eq!(b[LINK_COUNT], 1);
            b[LINK_COUNT] = 0;
            b.drain(LINK_COUNT + 1..LINK_COUNT + 33);
        }),
        ("signature", |b| {
            let at = b.len() - 1;
            b[at] ^= 1
        }),
    ];
    for (what, tamper) in cases {
        let (a, b) = (replica(), replica());
        let base = a.log.append(b"shared".to_vec()).unwrap();
        b.log.insert(&[&base]).unwrap();
        a.log.append(b"next".to_vec()).unwrap();
        let before = hashes(&b.log);
        let (_, rb) = through_tamperer(&a.log, &b.log, tamper).await;
        match rb {
            Err(SyncError::Rejected { node, author, .. }) => {
                assert_ne!(node, Hash::default(), "{what}");
                assert!(author.is_some(), "{what}");
            }
            other => panic!("{what}: expected a rejection, got {other:?}"),
        }
        assert_eq!(hashes(&b.log), before, "{what}: store unchanged");
        assert_verified(&b.log);
        // Without the tamperer the same sync succeeds.
        let (ra, rb) = try_both(&a.log, &b.log).await;
        ra.unwrap();
        rb.unwrap();
        assert_eq!(hashes(&a.log), hashes(&b.log), "{what}");
    }
}

#[tokio::test]
async fn unsigned_nodes_are_rejected_where_signatures_are_required() {
    let (a, b) = (replica(), replica());
    a.log.set_identity(None);
    let unsigned = a.log.append(b"anonymous".to_vec()).unwrap();
    b.log.set_policy(&Policy::new(PolicyMode::Signed)).unwrap();
    b.log.append(b"mine".to_vec()).unwrap();
    let before = hashes(&b.log);
    let (_, rb) = try_both(&a.log, &b.log).await;
    match rb {
        Err(SyncError::Rejected { node, author, .. }) => {
            assert_eq!((node, author), (unsigned.hash(), None))
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(hashes(&b.log), before);
    // Local writes face the policy too.
    b.log.set_identity(None);
    assert!(matches!(
        b.log.append(b"x".to_vec()),
        Err(LogError::Policy(PolicyError::Unsigned { .. }))
    ));
    assert_verified(&b.log);
}

#[tokio::test]
async fn an_unknown_author_is_rejected_and_an_allow_list_change_applies_at_the_next_sync() {
    let (a, b) = (replica(), replica());
    let alice = a.log.identity().unwrap().unwrap().public_key();
    let bob = b.log.identity().unwrap().unwrap().public_key();
    let mut policy = Policy::new(PolicyMode::Trusted);
    policy.trusted.insert(bob);
    b.log.set_policy(&policy).unwrap();
    b.log.append(b"bob's".to_vec()).unwrap();
    let from_alice = a.log.append(b"alice's".to_vec()).unwrap();
    let before = hashes(&b.log);
    let (ra, rb) = try_both(&a.log, &b.log).await;
    match rb {
        Err(SyncError::Rejected { node, author, .. }) => {
            assert_eq!((node, author), (from_alice.hash(), Some(alice)))
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    // The sender learns why, with node and author.
    match ra {
        Err(SyncError::PeerAborted { reason, detail }) => {
            assert_eq!(reason, braidlog::sync::AbortReason::Refused);
            assert!(detail.contains(&from_alice.hash().to_string()), "{detail}");
            assert!(detail.contains(&alice.to_string()), "{detail}");
        }
        other => panic!("the sender should see the refusal: {other:?}"),
    }
    assert_eq!(hashes(&b.log), before);
    b.log.trust(alice).unwrap();
    let (ra, rb) = try_both(&a.log, &b.log).await;
    ra.unwrap();
    rb.unwrap();
    assert!(b.log.contains(&from_alice.hash()).unwrap());
    // Removing her again refuses her next node, keeps the stored one.
    b.log.distrust(alice).unwrap();
    let later = a.log.append(b"alice again".to_vec()).unwrap();
    let (_, rb) = try_both(&a.log, &b.log).await;
    assert!(matches!(rb, Err(SyncError::Rejected { node, .. }) if node == later.hash()));
    assert!(b.log.contains(&from_alice.hash()).unwrap());
    // The auditor's view: every node held to the policy in force when it arrived.
    let report = b.log.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.violations);
    assert_eq!(report.policies.len(), 3);
}

#[test]
fn verify_checks_each_node_against_the_policy_in_force_when_it_was_stored() {
    let r = replica();
    r.log.set_identity(None);
    r.log.append(b"before any policy".to_vec()).unwrap();
    r.log.set_policy(&Policy::new(PolicyMode::Signed)).unwrap();
    r.log.set_identity(Some(Identity::generate()));
    r.log.append(b"signed".to_vec()).unwrap();
    let report = r.log.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.violations);
    assert_eq!(report.unsigned, 1);
    assert_eq!(report.policies, vec![(1, Policy::new(PolicyMode::Signed))]);
}

#[test]
fn a_forged_node_is_never_stored_whatever_the_policy() {
    let r = replica();
    let n = Node::signed(&Identity::generate(), 1, [], b"x".to_vec()).unwrap();
    let mut bytes = n.encode();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    assert!(matches!(
        Node::decode(&bytes)
            .map_err(LogError::from)
            .and_then(|n| r.log.insert(&[n])),
        Err(LogError::Node(braidlog::NodeError::BadSignature { .. }))
    ));
    assert!(r.log.is_empty().unwrap());
}

/// Three replicas that all resolve the same conflicts automatically, at the same time, write
/// three different nodes per key (authors differ); those agree, so the key reads as one value
/// and a further automatic pass writes nothing: one round, not an endless exchange.
#[tokio::test]
async fn three_replicas_auto_resolving_the_same_conflicts_stop_after_one_round() {
    let reps: Vec<(Replica, Kv)> = (0..3)
        .map(|_| {
            let r = replica();
            let kv = Kv::open(&r.log).unwrap();
            (r, kv)
        })
        .collect();
    let keys: Vec<Vec<u8>> = (0..10).map(|k| format!("key{k}").into_bytes()).collect();
    for (i, (_, kv)) in reps.iter().enumerate() {
        for k in &keys {
            kv.put(k, format!("v{i}").into_bytes()).unwrap();
        }
    }
    let everyone = |reps: &[(Replica, Kv)]| {
        let logs: Vec<Log> = reps.iter().map(|(r, _)| r.log.clone()).collect();
        async move {
            for _ in 0..2 {
                for i in 0..logs.len() {
                    for j in i + 1..logs.len() {
                        let (x, y) = try_both(&logs[i], &logs[j]).await;
                        x.unwrap();
                        y.unwrap();
                    }
                }
            }
        }
    };
    everyone(&reps).await;
    for (_, kv) in &reps {
        assert_eq!(kv.conflicts().count(), keys.len());
    }
    // Concurrently: every replica resolves every key before hearing of the others.
    for (_, kv) in &reps {
        for k in &keys {
            assert!(kv.resolve(k, Deterministic).unwrap().is_some());
        }
    }
    everyone(&reps).await;
    for (r, kv) in &reps {
        assert_eq!(kv.conflicts().count(), 0);
        for k in &keys {
            let got = kv.get(k).unwrap().unwrap();
            assert_eq!(got.len(), 3, "three resolutions, one per author");
            assert!(!got.is_conflict());
            assert_eq!(got.value(), reps[0].1.get(k).unwrap().unwrap().value());
            assert_eq!(
                kv.resolve(k, Deterministic).unwrap(),
                None,
                "no second round"
            );
        }
        assert_verified(&r.log);
    }
}

/// What a random node in the property is.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Trusted,
    Untrusted,
    Unsigned,
    Forged,
}

#[derive(Debug, Clone)]
struct Case {
    mode: PolicyMode,
    /// (replica, kind) per write.
    writes: Vec<(u8, Kind)>,
}

impl Arbitrary for Case {
    fn arbitrary(g: &mut Gen) -> Case {
        let mode = *g
            .choose(&[PolicyMode::Any, PolicyMode::Signed, PolicyMode::Trusted])
            .unwrap();
        let kinds = [Kind::Trusted, Kind::Untrusted, Kind::Unsigned, Kind::Forged];
        let n = usize::arbitrary(g) % 16;
        let writes = (0..n)
            .map(|_| (u8::arbitrary(g) % 3, *g.choose(&kinds).unwrap()))
            .collect();
        Case { mode, writes }
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Case>> {
        let mode = self.mode;
        let writes = self.writes.clone();
        // Drop one write at a time.
        Box::new((0..writes.len()).rev().map(move |i| {
            let mut w = writes.clone();
            w.remove(i);
            Case { mode, writes: w }
        }))
    }
}

/// Random signed, unsigned and forged nodes written at three replicas under one policy, plus
/// a fourth replica (policy `Any`) that pushes its own mix into each: after syncing, the three
/// hold exactly the same nodes, every one of them one the policy accepts, every write the
/// policy accepts is among them, and `verify` passes everywhere.
fn prop_replicas_hold_exactly_what_the_policy_accepts(case: Case) -> TestResult {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let trusted = Identity::from_secret_bytes(&[1; 32]);
    let stranger = Identity::from_secret_bytes(&[2; 32]);
    let mut policy = Policy::new(case.mode);
    policy.trusted.insert(trusted.public_key());
    let reps: Vec<Replica> = (0..3).map(|_| replica()).collect();
    for r in &reps {
        r.log.set_policy(&policy).unwrap();
    }
    let outsider = replica();
    let mut accepted = BTreeSet::new();
    for (i, (rep, kind)) in case.writes.iter().enumerate() {
        let log = if i % 4 == 3 {
            &outsider.log
        } else {
            &reps[*rep as usize].log
        };
        let heads = log.heads().unwrap();
        let payload = format!("w{i}").into_bytes();
        let node = match kind {
            Kind::Trusted => Node::signed(&trusted, i as u64, heads, payload).unwrap(),
            Kind::Untrusted => Node::signed(&stranger, i as u64, heads, payload).unwrap(),
            Kind::Unsigned => Node::new(heads, payload).unwrap(),
            Kind::Forged => {
                let good = Node::signed(&trusted, i as u64, heads, payload).unwrap();
                let mut bytes = good.encode();
                let last = bytes.len() - 1;
                bytes[last] ^= 0x40;
                Node::decode(&bytes).unwrap()
            }
        };
        // Whether, not why: the property is "stored exactly when allowed", so any refusal
        // (policy, signature) counts and the error kinds are left to the unit tests.
        let allowed = policy.allows(&node).is_ok() && node.verify_signature().is_ok();
        let is_outsider = std::ptr::eq(log, &outsider.log);
        let stored = log.insert(&[&node]).is_ok();
        let expect_stored = if is_outsider {
            node.verify_signature().is_ok()
        } else {
            allowed
        };
        if stored != expect_stored {
            return TestResult::error(format!("write {i} ({kind:?}): stored {stored}"));
        }
        if stored && !is_outsider {
            accepted.insert(node.hash());
        }
    }
    rt.block_on(async {
        for r in &reps {
            // The outsider's stream stops at its first refused node; what it delivered before
            // passed the policy (verify checks that below).
            let _ = try_both(&outsider.log, &r.log).await;
        }
        for _ in 0..2 {
            for i in 0..3 {
                for j in i + 1..3 {
                    let (x, y) = try_both(&reps[i].log, &reps[j].log).await;
                    x.unwrap();
                    y.unwrap();
                }
            }
        }
    });
    let first = hashes(&reps[0].log);
    for r in &reps {
        let held = hashes(&r.log);
        if held != first || !accepted.is_subset(&held) {
            return TestResult::error("replicas differ or lost an accepted write");
        }
        for h in &held {
            let n = r.log.get(h).unwrap().unwrap();
            // Any refusal fails the property: every held node must pass the policy.
            if policy.allows(&n).is_err() {
                return TestResult::error(format!("holds {h}, which the policy refuses"));
            }
        }
        let report = r.log.verify().unwrap();
        if !report.is_ok() {
            return TestResult::error(format!("{:?}", report.violations));
        }
    }
    TestResult::passed()
}

#[test]
fn replicas_hold_exactly_what_the_policy_accepts() {
    QuickCheck::new()
        .tests(25)
        .quickcheck(prop_replicas_hold_exactly_what_the_policy_accepts as fn(Case) -> TestResult);
}

/// The largest signed node (the payload limit, 104 bytes of authorship) replicates.
#[tokio::test]
async fn a_signed_node_at_the_payload_limit_replicates() {
    let (a, b) = (replica(), replica());
    let big = a
        .log
        .append(vec![7u8; braidlog::MAX_PAYLOAD_BYTES])
        .unwrap();
    assert!(big.encoded_len() <= braidlog::MAX_NODE_BYTES);
    assert!(matches!(
        a.log.append(vec![7u8; braidlog::MAX_PAYLOAD_BYTES + 1]),
        Err(LogError::Node(braidlog::NodeError::PayloadTooLarge { .. }))
    ));
    b.log.set_policy(&Policy::new(PolicyMode::Signed)).unwrap();
    let (ra, rb) = try_both(&a.log, &b.log).await;
    ra.unwrap();
    rb.unwrap();
    assert_eq!(b.log.get(&big.hash()).unwrap().unwrap(), big);
    assert_verified(&b.log);
}

#[test]
#[ignore = "writes fuzz/corpus/node_decode/signed-node; run by hand to record the seed"]
fn record_signed_node_seed() {
    let id = Identity::from_secret_bytes(&[3; 32]);
    let root = Node::signed(&id, 1_764_403_200_000, [], b"root".to_vec()).unwrap();
    let n = Node::signed(&id, 1_764_403_200_001, [root.hash()], b"child".to_vec()).unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/node_decode");
    std::fs::write(dir.join("signed-node"), n.encode()).unwrap();
}
