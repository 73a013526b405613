//! How a store's refusal of received nodes becomes the session's error.

use super::error::SyncError;
use super::store::StoreError;
use crate::identity::PeerId;
use crate::log::verify_parallel;
use crate::node::{Node, NodeError};

/// Checks the signatures of a batch received from `peer` before it is stored (on every core,
/// in batches); a bad one ends the session naming node and author.
pub(crate) fn screen<E>(peer: PeerId, batch: &mut [Node]) -> Result<(), SyncError<E>> {
    verify_parallel(batch).map_err(|e| match e {
        NodeError::BadSignature { node, author } => SyncError::Rejected {
            peer,
            node,
            author: Some(author),
            reason: "signature is not the author's".into(),
        },
        other => SyncError::InvalidNode {
            peer,
            source: other,
        },
    })
}

/// Turns a store refusal of a received batch into the session's error: a policy or signature
/// refusal names the node and author; anything else stays a store error.
pub(crate) fn refused<E: StoreError>(peer: PeerId, e: E) -> SyncError<E> {
    match e.refusal() {
        Some(r) => SyncError::Rejected {
            peer,
            node: r.node,
            author: r.author,
            reason: r.reason,
        },
        None => SyncError::Store(e),
    }
}
