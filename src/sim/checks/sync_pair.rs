//! Honest memory replicas syncing under a hostile schedule.

use crate::hash::Hash;
use crate::identity::PeerId;
use crate::node::Node;
use crate::sim::pump::{drive, moves, receives, sends, Ended, MODES};
use crate::sim::Input;
use crate::sync::{MemStore, Mode, SessionConfig, SyncError, SyncStore};

/// Most nodes the replicas of one `sync_pair` input hold together (local writes included).
const PAIR_MAX_NODES: usize = 48;

/// A local write on a memory replica: an append (merging every head), a fork off chosen stored
/// nodes, or the first node of another replica's feed that this one lacks and can store (as a
/// concurrent session with that replica would deliver it). `None` when the node budget is
/// spent.
fn mem_write(
    store: &MemStore,
    others: &[&MemStore],
    made: &mut usize,
    input: &mut Input<'_>,
) -> Option<u64> {
    if *made >= PAIR_MAX_NODES {
        return None;
    }
    *made += 1;
    let kind = input.byte();
    let payload = vec![kind & 0x0f];
    let hashes: Vec<Hash> = store.hashes().into_iter().collect();
    let imported = match others.get(usize::from(kind >> 6) % others.len().max(1)) {
        Some(other) if kind & 0x30 == 0x20 => {
            let have = store.hashes();
            other
                .entries(0, u64::MAX, usize::MAX)
                .expect("memory store")
                .into_iter()
                .map(|e| Node::decode(&e.bytes).expect("stored nodes decode"))
                .find(|n| !have.contains(&n.hash()) && n.links().iter().all(|l| have.contains(l)))
        }
        _ => None,
    };
    let node = if let Some(node) = imported {
        store
            .insert_batch(std::slice::from_ref(&node))
            .map(|_| node)
    } else if kind & 0x30 == 0x30 {
        // An independent root: many of them make head sets far above a `Hello`'s share.
        store.add([], vec![kind, *made as u8])
    } else if kind & 0x30 == 0x10 && !hashes.is_empty() {
        let links = (0..1 + (kind >> 6))
            .map(|_| hashes[input.byte() as usize % hashes.len()])
            .collect::<Vec<_>>();
        store.add(links, payload)
    } else {
        store.append(payload)
    };
    node.expect("a local write with stored links");
    Some(store.last_seq().expect("memory store"))
}

/// `sync_pair`: two or three [`MemStore`] replicas get nodes from the input (appends, forks,
/// merges) and run sessions with each other in input-chosen modes (Push, Pull, Both; live or
/// not) under an input-chosen schedule (see `drive`), with local writes during sessions and
/// sometimes a connection cut at an input-chosen byte.
///
/// Checked: sessions between honest replicas never fail; every session (cut or not) leaves
/// both stores valid and keeps every node they had before it; a complete session gives each
/// receiving side every node the sending side had when it began. At the end, complete two-way
/// syncs (0-1, then 1-2 and 0-1 with three replicas) leave each pair, and then all replicas,
/// with identical node sets and heads.
pub fn check_sync_pair(data: &[u8]) {
    let mut input = Input::new(data);
    let n = 2 + usize::from(input.byte() & 1);
    let stores: Vec<MemStore> = (0..n)
        .map(|i| MemStore::new(PeerId([i as u8 + 1; 16])))
        .collect();
    let mut made = 0;
    for _ in 0..32 {
        if input.is_empty() {
            break;
        }
        let b = input.byte();
        let x = usize::from(b >> 2) % n;
        if b & 3 != 3 {
            let others: Vec<&MemStore> = (0..n).filter(|&o| o != x).map(|o| &stores[o]).collect();
            mem_write(&stores[x], &others, &mut made, &mut input);
            continue;
        }
        let y = (x + 1 + usize::from(b >> 5) % (n - 1)) % n;
        let m = input.byte();
        let modes = [MODES[usize::from(m) % 3], MODES[usize::from(m >> 2) % 3]];
        let cut = (m & 0x40 != 0).then(|| usize::from(input.u16()) % 2048);
        let cfgs = [0, 1].map(|i| SessionConfig {
            mode: modes[i],
            live: m & (0x10 << i) != 0,
            filter_key: [input.byte(); 32],
        });
        let pair = [&stores[x], &stores[y]];
        let before = pair.map(MemStore::hashes);
        // A replica outside the session: writes may import from it, as a concurrent session
        // would.
        let third: Vec<&MemStore> = (0..n)
            .filter(|&o| o != x && o != y)
            .map(|o| &stores[o])
            .collect();
        let mut write =
            |i: usize, input: &mut Input<'_>| mem_write(pair[i], &third, &mut made, input);
        let ended = match drive(pair, cfgs, cut, &mut input, Some(&mut write)) {
            Err(SyncError::ModeMismatch { .. }) if !moves(modes) => Ended::Cut,
            Err(e) => panic!("honest session {x}-{y} ({modes:?}) failed: {e}"),
            // Cut before the Hellos crossed: nothing was decided.
            Ok(Ended::Complete) if !moves(modes) => {
                panic!("modes {modes:?} that move nothing succeeded")
            }
            Ok(ended) => ended,
        };
        for (i, s) in pair.iter().enumerate() {
            s.check().expect("store valid after a session");
            assert!(before[i].is_subset(&s.hashes()), "a session lost nodes");
        }
        if ended == Ended::Complete {
            for i in 0..2 {
                if sends(modes[i]) && receives(modes[1 - i]) {
                    assert!(
                        before[i].is_subset(&pair[1 - i].hashes()),
                        "complete session {x}-{y} ({modes:?}): side {} lacks nodes of side {i}",
                        1 - i
                    );
                }
            }
        }
    }
    let finals: &[(usize, usize)] = if n == 2 {
        &[(0, 1)]
    } else {
        &[(0, 1), (1, 2), (0, 1)]
    };
    for &(x, y) in finals {
        let cfgs = [0, 1].map(|i| SessionConfig {
            mode: Mode::Both,
            live: false,
            filter_key: [i as u8 + 0x51; 32],
        });
        let ended = drive([&stores[x], &stores[y]], cfgs, None, &mut input, None)
            .unwrap_or_else(|e| panic!("final sync {x}-{y} failed: {e}"));
        assert_eq!(ended, Ended::Complete);
        assert_eq!(stores[x].hashes(), stores[y].hashes(), "final sync {x}-{y}");
        assert_eq!(stores[x].heads(), stores[y].heads());
        stores[x].check().expect("valid after the final sync");
        stores[y].check().expect("valid after the final sync");
    }
    for s in &stores[1..] {
        assert_eq!(s.hashes(), stores[0].hashes(), "replicas did not converge");
    }
}
