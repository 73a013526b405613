//! # braidlog
//!
//! Replicated, auditable history without a master. Every replica accepts writes at any time;
//! replicas converge by exchanging what the other lacks.
//!
//! History is a content-addressed merkle DAG: a [`Node`] holds a payload and links to earlier
//! nodes, and its id is the blake3 [`Hash`](struct@Hash) of its canonical encoding, so any two replicas agree
//! on ids and any tampering shows. A [`Log`] stores one replica's DAG in LMDB: nodes, heads
//! (nodes nothing links to yet), and a local changes feed in arrival order, which is always
//! topological. Every write is one transaction.
//!
//! Every replica has an Ed25519 [`Identity`] and signs its writes with it by default: a node
//! names its author and the time the author claims, and its id covers both. A [`Policy`]
//! per log (any, signed, or an allow-list of authors) is enforced on every node stored,
//! local or received, and [`Log::verify`] checks every signature.
//!
//! ```
//! # fn main() -> Result<(), braidlog::Error> {
//! use braidlog::Log;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let log = Log::open(dir.path())?;
//!
//! let root = log.append(b"genesis".to_vec())?;          // links to the current heads
//! let left = log.add([root.hash()], b"left".to_vec())?;  // explicit links
//! let right = log.add([root.hash()], b"right".to_vec())?;
//! assert_eq!(log.heads()?.len(), 2);                     // a fork: two heads
//!
//! let merge = log.append(b"merge".to_vec())?;            // links both heads
//! assert_eq!(merge.links().len(), 2);
//! assert_eq!(log.heads()?, vec![merge.hash()]);
//!
//! // The feed is arrival order, and every node comes after its links.
//! let feed: Vec<_> = log.changes(0).map(|c| c.unwrap().node.hash()).collect();
//! assert_eq!(feed, vec![root.hash(), left.hash(), right.hash(), merge.hash()]);
//! assert!(log.verify()?.is_ok());
//! # Ok(()) }
//! ```
//!
//! ## Layout
//! Layers, bottom up; each uses only the layers below it (`docs/ARCHITECTURE.md`):
//! - `hash`: [`struct@Hash`], the blake3 digest naming every node.
//! - `identity`: the two identities of a replica, named apart: the signing key
//!   ([`Identity`], [`PublicKey`]) and the replica id ([`PeerId`]).
//! - `node`: [`Node`], its canonical encodings (unsigned and signed) and its limits.
//! - `store` (private): the only module that knows LMDB and its files: opening, map growth,
//!   every table's byte layout, transactions that cannot commit after a failed write, file
//!   checks before LMDB maps a file, the page reader salvage uses; [`StorageError`].
//! - `log`: [`Log`], the replica API, with its write path, changes feed, views, policy,
//!   verify; [`LogError`].
//! - [`kv`]: the key-value view with explicit conflicts ([`Kv`]), conditional writes, the
//!   merge toolkit and merge operators (`docs/MERGING.md`); [`KvError`].
//! - [`sync`]: replication over any byte stream: the wire format, the sans-IO session, the
//!   tokio driver, one server for TCP and iroh; [`SyncError`].
//! - `salvage`: copying the genuine nodes out of a damaged store.
//! - `sim` (feature `sim`): the simulator: N replicas under fuzzer- or seed-driven schedules with
//!   convergence checks an application extends with its own merge logic and invariants.
//! - `error`: the umbrella [`Error`] every layer's error converts into.

mod error;
mod hash;
mod identity;
pub mod kv;
mod log;
mod node;
#[cfg(all(unix, target_pointer_width = "64", target_endian = "little"))]
mod salvage;
#[cfg(feature = "sim")]
pub mod sim;
mod store;
pub mod sync;

pub use error::{Error, Result};
pub use hash::{Hash, ParseHashError, HASH_LEN, SHORT_HEX_LEN};
pub use identity::{
    now_ms, Identity, IdentityError, ParseKeyError, PeerId, PublicKey, IDENTITY_FILE,
    PUBLIC_KEY_LEN, SIGNATURE_LEN,
};
pub use kv::{Kv, KvError, KvRead};
pub use log::{
    verify_parallel, Change, Changes, Durability, FeedEntry, Inserted, Log, LogError, LogOptions,
    LookupError, Origin, Policy, PolicyError, PolicyMode, RawChanges, RawEntry, Subscription,
    VerifyReport, View, Violation, Writer, MAX_REPORTED_VIOLATIONS, MAX_TRUSTED, MIN_PREFIX_HEX,
    ORIGIN_WINDOW,
};
pub use node::{
    verify_signatures, Authorship, Node, NodeError, MAX_LINKS, MAX_NODE_BYTES, MAX_PAYLOAD_BYTES,
    NODE_FORMAT_VERSION, SIGNED_FORMAT_VERSION, SIGNED_OVERHEAD, SIGNING_CONTEXT,
};
#[cfg(all(unix, target_pointer_width = "64", target_endian = "little"))]
pub use salvage::{salvage, SalvageReport};
pub use store::file::{check_pages, FileProblem};
pub use store::{
    EngineError, Entries, ReadTxn, StorageError, Table, ViewTxn, STORE_FORMAT_VERSION,
};
pub use sync::{Mode, SyncError};
#[cfg(feature = "net")]
pub use sync::{SyncOptions, SyncReport};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
