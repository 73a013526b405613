//! The two identities of a replica, named apart:
//! - [`Identity`] (`key.rs`): the Ed25519 key pair that signs nodes, and [`PublicKey`], the
//!   author a node names. Signatures are checked here.
//! - [`PeerId`] (`replica_id.rs`): the replica's random id, which peers remember sync state by.
//!   It signs nothing; the store binds it to its data file.
//!
//! This layer knows no node and no store: everything above uses it.

mod key;
mod replica_id;

pub use key::{
    now_ms, Identity, IdentityError, ParseKeyError, PublicKey, IDENTITY_FILE, PUBLIC_KEY_LEN,
    SIGNATURE_LEN,
};
pub(crate) use key::{verify_batch, verify_single};
pub use replica_id::PeerId;
