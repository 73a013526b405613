use super::*;
use crate::kv::op::key_id;
use crate::kv::{Kv, KvError};
use crate::kv::{KvRead, Write};

fn setup() -> (tempfile::TempDir, Log, Kv) {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let kv = Kv::open(&log).unwrap();
    (dir, log, kv)
}

fn dump(log: &Log, table: Table) -> Vec<(Vec<u8>, Vec<u8>)> {
    log.read(|txn| {
        let mut out = Vec::new();
        for item in txn.iter(table)? {
            let (k, v) = item?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok::<_, StorageError>(out)
    })
    .unwrap()
}

#[test]
fn tables_follow_the_documented_layout() {
    let (_dir, log, kv) = setup();
    let t = kv.tables;
    let h1 = kv.put(b"k\0", b"v1".to_vec()).unwrap();
    let h2 = kv
        .write(b"k\0", Write::from(Op::Del).superseding([]))
        .unwrap();
    let id = key_id(b"", b"k\0");
    assert_eq!(id, b"\x00k\x00\xff\x00\x01");

    let mut current = dump(&log, t.current);
    current.sort();
    let mut expected = vec![
        ([id.clone(), h1.as_bytes().to_vec()].concat(), {
            let mut v = vec![1];
            v.extend_from_slice(&1u64.to_be_bytes());
            v.extend_from_slice(b"v1");
            v
        }),
        ([id.clone(), h2.as_bytes().to_vec()].concat(), {
            let mut v = vec![0];
            v.extend_from_slice(&1u64.to_be_bytes());
            v
        }),
    ];
    expected.sort();
    assert_eq!(current, expected);

    let ops = dump(&log, t.ops);
    assert_eq!(ops.len(), 2);
    assert!(ops
        .iter()
        .all(|(_, v)| v[..8] == 1u64.to_be_bytes() && v[8..] == id[..]));

    let history = dump(&log, t.history);
    assert_eq!(
        history,
        vec![
            (
                [id.clone(), 1u64.to_be_bytes().to_vec()].concat(),
                h1.as_bytes().to_vec()
            ),
            (
                [id.clone(), 2u64.to_be_bytes().to_vec()].concat(),
                h2.as_bytes().to_vec()
            ),
        ]
    );
    assert_eq!(dump(&log, t.conflicts), vec![(id.clone(), vec![])]);
    let counts = [2u64.to_be_bytes(), 1u64.to_be_bytes()].concat();
    assert_eq!(dump(&log, t.keys), vec![(id.clone(), counts)]);

    // Superseding both clears the conflict and leaves one current version, depth 2.
    let h3 = kv.put(b"k\0", b"v3".to_vec()).unwrap();
    assert!(dump(&log, t.conflicts).is_empty());
    let current = dump(&log, t.current);
    assert_eq!(current.len(), 1);
    assert_eq!(current[0].0, [id, h3.as_bytes().to_vec()].concat());
    assert_eq!(current[0].1[1..9], 2u64.to_be_bytes());
}

#[test]
fn non_kv_nodes_leave_the_tables_empty() {
    let (_dir, log, kv) = setup();
    log.append(b"plain".to_vec()).unwrap();
    let mut bad = crate::kv::op::MAGIC.to_vec();
    bad.extend_from_slice(&[1, 0xff, 0xff, 0xff]);
    log.append(bad).unwrap();
    for t in (KvView { tables: kv.tables }).tables() {
        assert!(dump(&log, t).is_empty());
    }
}

/// The watcher's early-exit conflict check agrees with reading every version.
#[test]
fn in_conflict_agrees_with_versions() {
    let (_dir, log, kv) = setup();
    let cases: [&[Op]; 6] = [
        &[Op::Put(b"a".to_vec())],
        &[Op::Put(b"a".to_vec()), Op::Put(b"b".to_vec())],
        &[Op::Put(b"a".to_vec()), Op::Del],
        &[Op::Del, Op::Del],
        &[
            Op::Put(b"a".to_vec()),
            Op::Put(b"a".to_vec()),
            Op::Put(b"a".to_vec()),
        ],
        &[Op::Put(b"a".to_vec()), Op::Put(b"a".to_vec()), Op::Del],
    ];
    for (i, ops) in cases.iter().enumerate() {
        let key = format!("k{i}");
        for (j, op) in ops.iter().enumerate() {
            // Distinct nodes for equal operations: link a different unrelated node each.
            let extra = log.append(vec![i as u8, j as u8]).unwrap().hash();
            kv.write(&key, Write::from(op.clone()).superseding([extra]))
                .unwrap();
        }
        assert_eq!(
            kv.versions(&key).unwrap().len(),
            ops.len(),
            "all concurrent"
        );
        let id = key_id(b"", key.as_bytes());
        let fast = log.read(|txn| in_conflict(&kv.tables, &txn, &id)).unwrap();
        assert_eq!(fast, kv.versions(&key).unwrap().is_conflict(), "{ops:?}");
    }
}

#[test]
fn fold_records_follow_the_documented_layout() {
    let (_dir, log, kv) = setup();
    let a = kv
        .write(b"k", Write::from(Op::Del).superseding([]))
        .unwrap();
    let b = kv
        .write(b"k", Write::from(Op::Put(b"x".to_vec())).superseding([]))
        .unwrap();
    let payload = crate::kv::fold::Fold {
        namespace: vec![],
        key: b"k".to_vec(),
    }
    .encode();
    let plain = log.append(b"not kv".to_vec()).unwrap().hash();
    let fold = log.add([a, b, plain], payload).unwrap().hash();
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    let id = key_id(b"", b"k");
    let expected = [
        &[0u8][..],
        &1u64.to_be_bytes(),
        &2u16.to_be_bytes(),
        lo.as_bytes(),
        hi.as_bytes(),
        &id,
    ]
    .concat();
    let folds = dump(&log, kv.tables.folds);
    assert_eq!(folds, vec![(fold.as_bytes().to_vec(), expected)]);
    let record = FoldRecord::decode(&folds[0].1).unwrap();
    assert_eq!((record.active, record.links), (false, vec![lo, hi]));
    // A put linking the fold activates it and supersedes both versions through it.
    kv.write(
        b"k",
        Write::from(Op::Put(b"v".to_vec())).superseding([fold]),
    )
    .unwrap();
    assert_eq!(dump(&log, kv.tables.folds)[0].1[0], 1);
    assert_eq!(kv.versions(b"k").unwrap().len(), 1);
}

/// A damaged conflict counter on disk makes writes to that key fail with a typed error,
/// storing nothing, and `verify` reports the view until a rebuild repairs it.
#[test]
fn damaged_counts_fail_the_write_and_verify() {
    let (_dir, log, kv) = setup();
    kv.put(b"k", b"1".to_vec()).unwrap();
    let id = key_id(b"", b"k");
    let store = log.store();
    store
        .write(|txn| txn.put(kv.tables.keys, &id, &[0; 16]))
        .unwrap();
    let before = log.len().unwrap();
    let err = kv.put(b"k", b"2".to_vec()).unwrap_err();
    assert!(
        matches!(
            err,
            KvError::Log(LogError::Storage(StorageError::Corrupt(_)))
        ),
        "{err}"
    );
    assert_eq!(log.len().unwrap(), before, "nothing stored");
    assert!(!log.verify().unwrap().is_ok());
    log.reindex().unwrap();
    kv.put(b"k", b"2".to_vec()).unwrap();
    assert!(log.verify().unwrap().is_ok());
}

#[test]
fn corrupt_records_are_reported_not_panicked_on() {
    assert!(FoldRecord::decode(&[]).is_err());
    assert!(FoldRecord::decode(&[2; 11]).is_err(), "state byte");
    assert!(FoldRecord::decode(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]).is_err());
    assert!(decode_version(&[0; 10], &[1]).is_err());
    assert!(decode_version(&[0; 40], &[]).is_err());
    assert!(decode_version(&[0; 40], &[1, 0]).is_err());
    assert!(decode_version(&[0; 40], &[7; 9]).is_err());
    assert!(decode_op_record(&[0; 7]).is_err());
    let v = decode_version(&[3; 40], &[1, 0, 0, 0, 0, 0, 0, 0, 5, b'x']).unwrap();
    assert_eq!(
        (v.depth, v.op, v.hash),
        (5, Op::Put(b"x".to_vec()), Hash([3; 32]))
    );
}
