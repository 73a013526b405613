//! The driver's session limits come from `SyncOptions`, and a side that gives up tells the
//! peer why with an `Abort`.

mod common;

use braidlog::sync::{sync, AbortReason, Limits, Mode, SyncError, SyncOptions};
use common::{chain, replica};

/// Three heads: a chain and two branches off its root.
fn three_heads(log: &braidlog::Log) {
    let root = log.append(b"root".to_vec()).unwrap();
    for tag in ["a", "b", "c"] {
        log.insert(&[braidlog::Node::new([root.hash()], tag.as_bytes().to_vec()).unwrap()])
            .unwrap();
    }
    assert_eq!(log.heads().unwrap().len(), 3);
}

#[tokio::test]
async fn a_tightened_limit_takes_effect_and_the_peer_learns_why() {
    let (a, b) = (replica(), replica());
    three_heads(&a.log);
    chain(&b.log, 5, "b");
    let tight = SyncOptions {
        limits: Limits {
            peer_heads: 2,
            ..Limits::default()
        },
        ..SyncOptions::new(Mode::Both)
    };
    let (x, y) = tokio::io::duplex(64 << 10);
    let (ra, rb) = tokio::join!(
        sync(&a.log, x, SyncOptions::new(Mode::Both)),
        sync(&b.log, y, tight)
    );
    match rb {
        Err(SyncError::TooManyHeads {
            count: 3, max: 2, ..
        }) => {}
        r => panic!("the tightened limit should refuse 3 heads: {r:?}"),
    }
    match ra {
        Err(SyncError::PeerAborted { reason, detail }) => {
            assert_eq!(reason, AbortReason::LimitExceeded);
            assert!(detail.contains("3 heads"), "{detail}");
        }
        r => panic!("the peer should learn why: {r:?}"),
    }
    // The same peers with the default limits sync.
    common::both(&a.log, &b.log).await;
    common::assert_same(&a.log, &b.log);
}
