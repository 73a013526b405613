//! Compatibility: a store written by braidlog 0.1.0 (store format 1) and a session recorded
//! with protocol version 3 still open, verify and interoperate.
//!
//! The fixtures in `tests/fixtures` were written once by the program in
//! `tests/fixtures/GENERATOR.md` and are never regenerated to make this test pass: a failure
//! here means the on-disk or the wire format changed. LMDB data files are only portable
//! between machines of the same word size and byte order, hence the `cfg`.
#![cfg(all(unix, target_pointer_width = "64", target_endian = "little"))]

use braidlog::kv::KvRead;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use braidlog::kv::Kv;
use braidlog::sync::wire::{
    decode_body, encode, preamble, Decoder, Message, PREAMBLE_LEN, PROTOCOL_VERSION,
};
use braidlog::sync::{Mode, Session, SessionConfig};
use braidlog::{Hash, Identity, Log, PeerId, Policy, PolicyMode, PublicKey, STORE_FORMAT_VERSION};

mod common;

use common::assert_verified;

const STORE: &str = "store-fmt1";
const SESSION: &str = "session-v3";

/// A log's node count, heads and feed (seq, hash).
type State = (u64, Vec<Hash>, Vec<(u64, Hash)>);
/// A kv version: its node, its depth, its value (`None`: a tombstone).
type Version = (Hash, u64, Option<Vec<u8>>);

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(format!(
        "{}/tests/fixtures/{rel}",
        env!("CARGO_MANIFEST_DIR")
    ))
}

/// An expected.txt, by keyword: a keyword and fields a line; `#` lines, and fields past those
/// a check reads, are notes.
struct Expected(BTreeMap<String, Vec<Vec<String>>>);

impl Expected {
    fn load(rel: &str) -> Expected {
        let text = std::fs::read_to_string(fixture(rel)).unwrap();
        let lines = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty());
        Expected::from(lines.map(|l| l.split_whitespace().map(String::from).collect()))
    }
    fn from(lines: impl Iterator<Item = Vec<String>>) -> Expected {
        let mut map: BTreeMap<String, Vec<Vec<String>>> = BTreeMap::new();
        for mut fields in lines {
            map.entry(fields.remove(0)).or_default().push(fields);
        }
        Expected(map)
    }
    /// The fields after `key` of every line starting with it.
    fn all(&self, key: &str) -> &[Vec<String>] {
        self.0.get(key).map_or(&[], Vec::as_slice)
    }
    fn one(&self, key: &str) -> &str {
        let [fields] = self.all(key) else {
            panic!("not one {key} line")
        };
        &fields[0]
    }
    /// The lines starting with `key`, as records of their own (`a-after count 15`...).
    fn sub(&self, key: &str) -> Expected {
        Expected::from(self.all(key).iter().cloned())
    }
    /// The `count`, `head` and `node seq hash` lines, as a log's state.
    fn state(&self) -> State {
        let count = self.one("count").parse().unwrap();
        let heads = self.all("head").iter().map(|f| f[0].parse().unwrap());
        let feed = self.all("node").iter();
        let feed = feed.map(|f| (f[0].parse().unwrap(), f[1].parse().unwrap()));
        (count, heads.collect(), feed.collect())
    }
}

fn state(log: &Log) -> State {
    let feed = log
        .changes(0)
        .map(|e| e.unwrap())
        .map(|e| (e.seq, e.node.hash()));
    (log.len().unwrap(), log.heads().unwrap(), feed.collect())
}

/// A copy of a fixture store (its data file; LMDB makes the lock file) in a fresh directory.
fn copy_store(rel: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(fixture(rel).join("data.mdb"), dir.join("data.mdb")).unwrap();
    (tmp, dir)
}

#[test]
fn store_fixture_opens_verifies_and_reads_back() {
    let exp = Expected::load(&format!("{STORE}/expected.txt"));
    assert_eq!(exp.one("format"), STORE_FORMAT_VERSION.to_string());
    let (_tmp, dir) = copy_store(STORE);
    let recorded: PeerId = exp.one("peer").parse().unwrap();
    // Read-only, the stored peer id is kept; a read-write open of a copy (another file)
    // replaces it, by design (see `peer`).
    assert_eq!(Log::open_read_only(&dir).unwrap().peer_id(), recorded);
    let log = Log::open(&dir).unwrap();
    assert_ne!(log.peer_id(), recorded);

    let kv = Kv::open(&log).unwrap();
    let report = log.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.violations);
    let (count, heads, feed) = exp.state();
    assert_eq!(state(&log), (count, heads, feed.clone()));
    assert_eq!((report.nodes, report.views), (count, 1));
    for (_, h) in &feed {
        assert_eq!(log.get(h).unwrap().unwrap().hash(), *h);
    }

    let authors: BTreeMap<PublicKey, u64> = (exp.all("author").iter())
        .map(|f| (f[0].parse().unwrap(), f[1].parse().unwrap()))
        .collect();
    assert_eq!(report.authors, authors);
    assert_eq!(report.unsigned.to_string(), exp.one("unsigned"));
    let history: Vec<(u64, Policy)> = (exp.all("policy").iter())
        .map(|f| {
            let mut p = Policy::new(f[1].parse::<PolicyMode>().unwrap());
            p.trusted = f[2..].iter().map(|k| k.parse().unwrap()).collect();
            (f[0].parse().unwrap(), p)
        })
        .collect();
    assert_eq!(log.policy_history().unwrap(), history);
    assert_eq!(report.policies, history);
    assert_eq!(log.policy().unwrap(), history.last().unwrap().1);

    // Every version of every key, tombstones included, in hash order.
    let mut versions: BTreeMap<String, Vec<Version>> = BTreeMap::new();
    for f in exp.all("kv") {
        let value = (f[3] == "put").then(|| hex::decode(&f[4]).unwrap());
        let v = (f[1].parse().unwrap(), f[2].parse().unwrap(), value);
        versions.entry(f[0].clone()).or_default().push(v);
    }
    for (key, want) in &versions {
        let got = kv.versions(key).unwrap();
        let got: Vec<_> = (got.iter())
            .map(|v| (v.hash, v.depth, v.value().map(<[u8]>::to_vec)))
            .collect();
        assert_eq!(&got, want, "key {key}");
    }
    let present: BTreeSet<String> = (versions.iter())
        .filter(|(_, vs)| vs.iter().any(|v| v.2.is_some()))
        .map(|(k, _)| k.clone())
        .collect();
    let key =
        |e: braidlog::kv::Result<braidlog::kv::Entry>| String::from_utf8(e.unwrap().key).unwrap();
    assert_eq!(kv.iter().map(key).collect::<BTreeSet<_>>(), present);
    let conflicts: Vec<String> = exp.all("conflict").iter().map(|f| f[0].clone()).collect();
    assert_eq!(kv.conflicts().map(key).collect::<Vec<_>>(), conflicts);

    // The old store takes new writes under its stored policy (trusted: alice, bob).
    log.set_identity(None);
    assert!(matches!(
        log.append(b"unsigned".to_vec()),
        Err(braidlog::LogError::Policy(_))
    ));
    log.set_identity(Some(Identity::from_secret_bytes(&[1; 32]))); // alice, as in GENERATOR.md
    let put = kv.put("shape", b"resolved".to_vec()).unwrap();
    assert_eq!(kv.get("shape").unwrap().unwrap().hashes(), [put]);
    assert_verified(&log);
}

/// A recorded direction's frames (length prefix included), after checking its preamble.
fn frames(bytes: &[u8]) -> Vec<&[u8]> {
    assert_eq!(bytes[..PREAMBLE_LEN], preamble(), "magic, version");
    let (mut rest, mut out) = (&bytes[PREAMBLE_LEN..], Vec::new());
    while !rest.is_empty() {
        let len = 4 + u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        out.push(&rest[..len]);
        rest = &rest[len..];
    }
    out
}

fn recorded(file: &str) -> Vec<u8> {
    std::fs::read(fixture(&format!("{SESSION}/{file}"))).unwrap()
}

fn hello(frame: &[u8]) -> braidlog::sync::wire::Hello {
    match decode_body(&frame[4..]).unwrap() {
        Message::Hello(h) => h,
        other => panic!("first frame is {}", other.name()),
    }
}

#[test]
fn recorded_frames_decode_and_encode_back_to_the_same_bytes() {
    let exp = Expected::load(&format!("{SESSION}/expected.txt"));
    assert_eq!(exp.one("protocol"), PROTOCOL_VERSION.to_string());
    for (file, side) in [("a-to-b.bin", "a"), ("b-to-a.bin", "b")] {
        let bytes = recorded(file);
        let mut decoder = Decoder::new();
        decoder.push(&bytes);
        let mut names = Vec::new();
        for frame in frames(&bytes) {
            let msg = decode_body(&frame[4..]).unwrap();
            let mut again = Vec::new();
            encode(&msg, &mut again);
            assert_eq!(again, frame, "{file}: {} frame", msg.name());
            assert_eq!(decoder.next_message().unwrap().as_ref(), Some(&msg));
            names.push(msg.name().to_string());
        }
        assert!(decoder.next_message().unwrap().is_none());
        assert_eq!(names, exp.all(&format!("{side}-frames"))[0]);
        let peer: PeerId = exp.one(&format!("{side}-peer")).parse().unwrap();
        assert_eq!(hello(frames(&bytes)[0]).peer, peer);
    }
}

/// Replays one side of the recorded session with today's code: a fresh session over a copy of
/// that side's starting store reads every frame the other side wrote. It must write exactly
/// what this side recorded, and end with exactly the recorded nodes, in the same feed order.
///
/// Why this is deterministic. A side's bytes depend on (1) its peer id, random per store and
/// new for every copy: compared after putting the recorded one back into the Hello; (2) its
/// Bloom filter key, random per session in the driver: the recording used fixed keys and the
/// replay reads its side's key back from its recorded Summary; (3) the schedule, that is which
/// messages a side has handled before it polls for output: the recording (GENERATOR.md) made
/// each side poll everything at the start and after every message it handled, and so does the
/// replay, so a side's output is a function of its input. The tokio driver batches reads and
/// may put a control frame (Done) earlier; GENERATOR.md records that its frames are otherwise
/// the same. Replaying both sides closes the loop: each side reads what old code wrote, and
/// writes exactly what old code read.
fn replay(store: &str, other_side: &str, own_side: &str, expected_state: &str) {
    let exp = Expected::load(&format!("{SESSION}/expected.txt"));
    let own = recorded(own_side);
    let key = (frames(&own).iter()).find_map(|f| match decode_body(&f[4..]).unwrap() {
        Message::Summary(s) => s.filter.map(|f| f.key),
        _ => None,
    });
    let (_tmp, dir) = copy_store(store);
    let log = Log::open(&dir).unwrap();
    let cfg = SessionConfig {
        mode: Mode::Both,
        live: false,
        filter_key: key.unwrap_or([0; 32]),
    };
    let mut session = Session::new(log.clone(), cfg).unwrap();
    let mut out = preamble().to_vec();
    let drain = |s: &mut Session<Log>, out: &mut Vec<u8>| {
        while let Some(m) = s.poll_transmit().unwrap() {
            encode(&m, out);
        }
    };
    drain(&mut session, &mut out);
    for frame in frames(&recorded(other_side)) {
        session.handle(decode_body(&frame[4..]).unwrap()).unwrap();
        drain(&mut session, &mut out);
    }
    assert!(session.is_finished());
    // First what this side took in from old code (the compatibility that matters), then
    // what it wrote (stricter: a legal change of output, say a node sent whole instead of
    // as a delta, fails here too; judge such a failure by the frame it names).
    assert_verified(&log);
    assert_eq!(state(&log), exp.sub(expected_state).state());

    let (written, want) = (frames(&out), frames(&own));
    let mut hello = hello(written[0]);
    assert_eq!(hello.peer, log.peer_id());
    hello.peer = self::hello(want[0]).peer;
    let mut first = Vec::new();
    encode(&Message::Hello(hello), &mut first);
    let written = std::iter::once(&first[..]).chain(written[1..].iter().copied());
    for (i, (got, want)) in written.zip(&want).enumerate() {
        let name = decode_body(&want[4..]).unwrap().name();
        assert!(
            got == *want,
            "{own_side}: today's code writes another frame {i} ({name})"
        );
    }
    assert_eq!(frames(&out).len(), want.len(), "{own_side}: frame count");
}

#[test]
fn replayed_to_side_b_the_recorded_a_stream_gives_the_recorded_b_stream_and_nodes() {
    replay(
        &format!("{SESSION}/b-store"),
        "a-to-b.bin",
        "b-to-a.bin",
        "b-after",
    );
}

#[test]
fn replayed_to_side_a_the_recorded_b_stream_gives_the_recorded_a_stream_and_nodes() {
    replay(STORE, "b-to-a.bin", "a-to-b.bin", "a-after");
}
