//! Loading the replica's [`PeerId`], and the guard against copied directories.
//!
//! Peers remember replication state per peer id, so two replicas sharing an id would confuse
//! every peer that talks to both (copying a hyperlog directory is a known way to corrupt data
//! this way). The id is therefore bound to the identity of the `data.mdb` file (device and
//! inode): a copied or restored directory has another file, and on open it gets a fresh id.

use super::error::StorageError;
use super::Store;
use crate::identity::PeerId;

fn file_identity(store: &Store) -> Vec<u8> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = std::fs::metadata(store.path().join("data.mdb")) {
            let mut out = m.dev().to_be_bytes().to_vec();
            out.extend_from_slice(&m.ino().to_be_bytes());
            return out;
        }
    }
    let _ = store;
    Vec::new()
}

/// Reads the peer id, creating it on first open and replacing it (and forgetting per-peer
/// state, which belonged to the original) when the store was copied. A read-only store keeps
/// the id it has (or, having none, uses a random one it cannot record).
pub(crate) fn load_or_create(store: &Store) -> Result<PeerId, StorageError> {
    let identity = file_identity(store);
    let stored = store.read(|txn| store.meta.peer_id(txn))?;
    match stored {
        Some((id, bound)) if bound == identity => return Ok(id),
        Some((id, _)) if store.is_read_only() => return Ok(id),
        None if store.is_read_only() => return Ok(PeerId::random()),
        _ => {}
    }
    store.write_retrying(|txn| {
        if let Some((id, bound)) = store.meta.peer_id(txn.read())? {
            if bound == identity {
                return Ok(id); // another process got here first
            }
            // A copy: the state kept about peers was the original's view of them.
            store.meta.clear_peers(txn)?;
        }
        let id = PeerId::random();
        store.meta.set_peer_id(txn, id, &identity)?;
        Ok(id)
    })
}
