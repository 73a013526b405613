//! How a store's refusal of received nodes becomes the session's error.

use super::error::SyncError;
use crate::identity::PeerId;
use crate::log::{verify_parallel, LogError};
use crate::node::{Node, NodeError};

/// Checks the signatures of a batch received from `peer` before it is stored (on every core,
/// in batches); a bad one ends the session naming node and author.
pub(crate) fn screen(peer: PeerId, batch: &mut [Node]) -> Result<(), SyncError> {
    verify_parallel(batch).map_err(|e| refused(peer, LogError::Node(e)))
}

/// Turns a store refusal of a received batch into the session's error: a policy or signature
/// refusal names the node and author; anything else stays a store error.
pub(crate) fn refused(peer: PeerId, e: LogError) -> SyncError {
    match e {
        LogError::Policy(p) if p.node().is_some() => SyncError::Rejected {
            peer,
            node: p.node().expect("checked"),
            author: p.author(),
            reason: p.to_string(),
        },
        LogError::Node(NodeError::BadSignature { node, author }) => SyncError::Rejected {
            peer,
            node,
            author: Some(author),
            reason: "signature is not the author's".into(),
        },
        other => SyncError::Store(other),
    }
}
