//! Views: indexes kept in step with the log inside the same write transaction.
//!
//! A view sees every node once, in feed (topological) order, whether it was added locally, in a
//! batch, or received by sync, and in the same transaction that stores it: a view never lags
//! or runs ahead of the log, even across a crash. Each view has a watermark in the meta table
//! (its version and the last seq it applied); registering a view catches it up from there, and
//! a new version rebuilds it from the feed. [`crate::Log::verify`] checks that every registered
//! view equals a rebuild.

use heed::RwTxn;

use crate::error::Result;
use crate::node::Node;
use crate::store::Table;

/// One node being stored, as a view sees it.
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    /// Position in the local changes feed (1-based, increasing, topological).
    pub seq: u64,
    /// The node.
    pub node: &'a Node,
}

/// A materialised index over the log. Implement it to keep an app-specific index.
///
/// `apply` runs inside the log's write transaction. It may run more than once for the same
/// change when a transaction is retried (the map grew), so it must keep all of its state in
/// its tables, never in memory. Returning an error aborts the whole write.
pub trait View: Send + Sync + 'static {
    /// A stable name, unique per log; it keys the view's watermark.
    fn name(&self) -> &str;

    /// The version of the view's table layout. Changing it makes the next registration
    /// rebuild the view from the feed.
    fn version(&self) -> u32 {
        1
    }

    /// Every table the view writes, so a rebuild can clear them and `verify` compare them.
    fn tables(&self) -> Vec<Table>;

    /// Updates the tables for one new node.
    fn apply(&self, txn: &mut RwTxn<'_>, change: Change<'_>) -> Result<()>;
}

pub(crate) fn watermark_key(view: &dyn View) -> Vec<u8> {
    format!("{}{}", crate::store::meta::VIEW_PREFIX, view.name()).into_bytes()
}

pub(crate) fn encode_watermark(version: u32, seq: u64) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[..4].copy_from_slice(&version.to_be_bytes());
    out[4..].copy_from_slice(&seq.to_be_bytes());
    out
}

pub(crate) fn decode_watermark(bytes: &[u8]) -> Option<(u32, u64)> {
    let v = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?);
    let s = u64::from_be_bytes(bytes.get(4..12)?.try_into().ok()?);
    Some((v, s))
}
