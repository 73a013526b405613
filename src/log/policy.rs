//! Policies: which nodes a log accepts, enforced on local writes and on every node received.
//!
//! A policy is a mode ([`PolicyMode::Any`], [`PolicyMode::Signed`], [`PolicyMode::Trusted`])
//! and an allow-list of author keys (used by `Trusted`, kept whatever the mode so switching back
//! and forth loses nothing). It is stored in the log's meta table as a history:
//!
//! | meta key                    | value                                   |
//! |-----------------------------|-----------------------------------------|
//! | `policy/<seq as 16 hex>`    | postcard `{ mode u8, trusted: [key] }`  |
//!
//! An entry at `seq` governs the nodes stored after feed position `seq`, until the next entry.
//! No entry means `Any`. Changing the policy never touches stored nodes: a node accepted under
//! an earlier policy stays, and [`crate::Log::verify`] checks each node against the policy that
//! was in force when it arrived, so an auditor sees exactly what each node was held to.
//!
//! Every signature is checked before a node is stored whatever the policy: a signed node whose
//! signature fails is never valid data, so `Any` means "signed or unsigned", not "forged".

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::error::{LogError, Result};
use crate::hash::Hash;
use crate::identity::PublicKey;
use crate::node::{verify_signatures, Node, NodeError};
use crate::store::StorageError;
use crate::store::{ReadTxn, Store};

/// Most keys an allow-list may hold (a policy entry stays one small meta value).
pub const MAX_TRUSTED: usize = 4096;

/// What a log requires of every node it stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum PolicyMode {
    /// Signed and unsigned nodes alike (signatures that are present must still be valid).
    #[default]
    Any,
    /// A valid signature, by any key.
    Signed,
    /// A valid signature by a key on the allow-list.
    Trusted,
}

impl std::fmt::Display for PolicyMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PolicyMode::Any => "any",
            PolicyMode::Signed => "signed",
            PolicyMode::Trusted => "trusted",
        })
    }
}

impl std::str::FromStr for PolicyMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<PolicyMode, String> {
        match s {
            "any" => Ok(PolicyMode::Any),
            "signed" => Ok(PolicyMode::Signed),
            "trusted" => Ok(PolicyMode::Trusted),
            _ => Err(format!("unknown policy {s:?} (any, signed, trusted)")),
        }
    }
}

/// A log's policy: a mode and the allow-list of author keys.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Policy {
    /// What every node must satisfy.
    pub mode: PolicyMode,
    /// Authors accepted under [`PolicyMode::Trusted`].
    pub trusted: BTreeSet<PublicKey>,
}

/// A node a policy refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The policy requires a signature and the node has none.
    #[error("node {node} is unsigned; the {mode} policy requires a signature")]
    Unsigned {
        /// The node.
        node: Hash,
        /// The policy's mode.
        mode: PolicyMode,
    },
    /// The node is signed by a key that is not on the allow-list.
    #[error("node {node} is signed by {author}, which is not on the allow-list")]
    Untrusted {
        /// The node.
        node: Hash,
        /// Its author.
        author: PublicKey,
    },
    /// An allow-list may not grow past [`MAX_TRUSTED`] keys.
    #[error("an allow-list holds at most {max} keys")]
    AllowListFull {
        /// [`MAX_TRUSTED`].
        max: usize,
    },
}

impl PolicyError {
    /// The refused node, when a node was refused.
    pub fn node(&self) -> Option<Hash> {
        match self {
            PolicyError::Unsigned { node, .. } | PolicyError::Untrusted { node, .. } => Some(*node),
            PolicyError::AllowListFull { .. } => None,
        }
    }

    /// Its author, when it names one.
    pub fn author(&self) -> Option<PublicKey> {
        match self {
            PolicyError::Untrusted { author, .. } => Some(*author),
            _ => None,
        }
    }
}

impl Policy {
    /// A policy of this mode with an empty allow-list.
    pub fn new(mode: PolicyMode) -> Policy {
        Policy {
            mode,
            trusted: BTreeSet::new(),
        }
    }

    /// Whether the node's author satisfies the policy. The signature itself is checked
    /// separately (and always): see [`Policy::admit`].
    pub fn allows(&self, node: &Node) -> std::result::Result<(), PolicyError> {
        match (self.mode, node.author()) {
            (PolicyMode::Any, _) => Ok(()),
            (mode, None) => Err(PolicyError::Unsigned {
                node: node.hash(),
                mode,
            }),
            (PolicyMode::Signed, Some(_)) => Ok(()),
            (PolicyMode::Trusted, Some(author)) if self.trusted.contains(&author) => Ok(()),
            (PolicyMode::Trusted, Some(author)) => Err(PolicyError::Untrusted {
                node: node.hash(),
                author,
            }),
        }
    }

    /// The whole check a node passes before it is stored: the policy, then the signature
    /// (unless already known good). Policy first: it is cheap and names the author.
    pub fn admit(&self, node: &Node) -> Result<()> {
        self.allows(node).map_err(LogError::Policy)?;
        if !node.signature_checked() {
            node.verify_signature()?;
        }
        Ok(())
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("encoding into a Vec cannot fail")
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Policy> {
        let p: Policy = postcard::from_bytes(bytes)
            .map_err(|e| StorageError::Corrupt(format!("policy entry: {e}")))?;
        if p.trusted.len() > MAX_TRUSTED {
            return Err(StorageError::Corrupt(format!(
                "policy allow-list of {} keys",
                p.trusted.len()
            ))
            .into());
        }
        Ok(p)
    }
}

/// The policy in force now (the newest history entry), read in `txn`.
pub(crate) fn current(store: &Store, txn: ReadTxn<'_>) -> Result<Policy> {
    match store.meta.last_policy(txn)? {
        None => Ok(Policy::default()),
        Some(bytes) => Policy::decode(bytes),
    }
}

/// Every history entry, oldest first: `(seq, policy)` governs nodes after `seq`.
pub(crate) fn history(store: &Store, txn: ReadTxn<'_>) -> Result<Vec<(u64, Policy)>> {
    (store.meta.policies(txn)?.into_iter())
        .map(|(seq, bytes)| Ok((seq, Policy::decode(bytes)?)))
        .collect()
}

/// Checks signatures of many received nodes on every core, each thread a batch: nodes are
/// marked good, or the first bad one (in slice order within its chunk) is named. Runs on the
/// calling thread's scope; callers in async code call it from a blocking task.
pub fn verify_parallel(nodes: &mut [Node]) -> std::result::Result<(), NodeError> {
    let pending = nodes.iter().filter(|n| !n.signature_checked()).count();
    let threads = threads_for(pending, || {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    });
    if threads == 1 {
        return verify_signatures(nodes);
    }
    let chunk = nodes.len().div_ceil(threads);
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = nodes
            .chunks_mut(chunk)
            .map(|c| s.spawn(move || verify_signatures(c)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("verification does not panic"))
            .collect()
    });
    results.into_iter().collect()
}

/// Threads to check `pending` signatures on: one per 64 nodes, at most `cores()`. The core
/// count is asked only when there are enough nodes to split: it reads cgroup files (tens of
/// microseconds, more than checking a small batch of unsigned nodes).
fn threads_for(pending: usize, cores: impl FnOnce() -> usize) -> usize {
    let most = pending / 64;
    if most < 2 {
        1
    } else {
        cores().min(most).max(1)
    }
}

/// What `verify` checks beyond storage: every stored signature, and every node against the
/// policy that was in force when it was stored (the history in the meta table).
pub(crate) struct Audit {
    history: Vec<(u64, Policy)>,
    /// Index in `history` of the entry in force for the current seq (`None` before the first:
    /// `Any`).
    at: Option<usize>,
    chunk: Vec<(u64, Node)>,
    chunk_bytes: usize,
    /// Signed nodes per author.
    pub authors: std::collections::BTreeMap<PublicKey, u64>,
    /// Unsigned nodes.
    pub unsigned: u64,
}

/// A broken authorship invariant, as the audit reports it.
pub(crate) enum Finding {
    BadSignature {
        seq: u64,
        node: Hash,
        author: PublicKey,
    },
    Refused {
        seq: u64,
        error: PolicyError,
    },
}

const AUDIT_CHUNK_NODES: usize = 4096;
const AUDIT_CHUNK_BYTES: usize = 32 << 20;

impl Audit {
    pub fn load(store: &Store, txn: ReadTxn<'_>) -> Result<Audit> {
        Ok(Audit {
            history: history(store, txn)?,
            at: None,
            chunk: Vec::new(),
            chunk_bytes: 0,
            authors: Default::default(),
            unsigned: 0,
        })
    }

    /// The policy history, for reports.
    pub fn history(&self) -> &[(u64, Policy)] {
        &self.history
    }

    /// Checks one stored node (in feed order).
    pub fn node(&mut self, seq: u64, node: Node, out: &mut impl FnMut(Finding)) {
        while self
            .history
            .get(self.at.map_or(0, |i| i + 1))
            .is_some_and(|(s, _)| *s < seq)
        {
            self.at = Some(self.at.map_or(0, |i| i + 1));
        }
        if let Some(i) = self.at {
            if let Err(error) = self.history[i].1.allows(&node) {
                out(Finding::Refused { seq, error });
            }
        }
        match node.author() {
            None => self.unsigned += 1,
            Some(a) => {
                *self.authors.entry(a).or_default() += 1;
                self.chunk_bytes += node.encoded_len();
                self.chunk.push((seq, node));
                if self.chunk.len() >= AUDIT_CHUNK_NODES || self.chunk_bytes >= AUDIT_CHUNK_BYTES {
                    self.flush(out);
                }
            }
        }
    }

    /// Checks the signatures still buffered.
    pub fn flush(&mut self, out: &mut impl FnMut(Finding)) {
        let (seqs, mut nodes): (Vec<u64>, Vec<Node>) = self.chunk.drain(..).unzip();
        self.chunk_bytes = 0;
        if verify_parallel(&mut nodes).is_ok() {
            return;
        }
        for (seq, n) in seqs.into_iter().zip(&nodes) {
            if let Err(NodeError::BadSignature { node, author }) = n.verify_signature() {
                out(Finding::BadSignature { seq, node, author });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    #[test]
    fn modes_accept_what_they_say() {
        let alice = Identity::generate();
        let bob = Identity::generate();
        let unsigned = Node::new([], b"u".to_vec()).unwrap();
        let by_alice = Node::signed(&alice, 1, [], b"a".to_vec()).unwrap();
        let by_bob = Node::signed(&bob, 1, [], b"b".to_vec()).unwrap();
        let any = Policy::new(PolicyMode::Any);
        let signed = Policy::new(PolicyMode::Signed);
        let mut trusted = Policy::new(PolicyMode::Trusted);
        trusted.trusted.insert(alice.public_key());
        for n in [&unsigned, &by_alice, &by_bob] {
            assert!(any.allows(n).is_ok());
        }
        assert_eq!(
            signed.allows(&unsigned),
            Err(PolicyError::Unsigned {
                node: unsigned.hash(),
                mode: PolicyMode::Signed
            })
        );
        assert!(signed.allows(&by_bob).is_ok());
        assert!(trusted.allows(&by_alice).is_ok());
        assert_eq!(
            trusted.allows(&by_bob),
            Err(PolicyError::Untrusted {
                node: by_bob.hash(),
                author: bob.public_key()
            })
        );
        assert_eq!(Policy::decode(&trusted.encode()).unwrap(), trusted);
    }

    #[test]
    fn parallel_verification_names_the_forgery() {
        let id = Identity::generate();
        let mut nodes: Vec<Node> = (0..300u32)
            .map(|i| {
                let n = Node::signed(&id, 7, [], i.to_be_bytes().to_vec()).unwrap();
                Node::decode(&n.encode()).unwrap()
            })
            .collect();
        let mut bytes = nodes[200].encode();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        nodes[200] = Node::decode(&bytes).unwrap();
        let err = verify_parallel(&mut nodes).unwrap_err();
        assert!(matches!(err, NodeError::BadSignature { node, .. } if node == nodes[200].hash()));
        nodes.remove(200);
        verify_parallel(&mut nodes).unwrap();
        assert!(nodes.iter().all(Node::signature_checked));
    }

    #[test]
    fn small_batches_never_ask_for_the_core_count() {
        for pending in [0, 1, 64, 127] {
            assert_eq!(super::threads_for(pending, || panic!("asked")), 1);
        }
        assert_eq!(super::threads_for(128, || 8), 2);
        assert_eq!(super::threads_for(10_000, || 8), 8);
        assert_eq!(super::threads_for(10_000, || 0), 1);
    }
}
