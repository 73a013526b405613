//! Identities: an Ed25519 key pair that signs nodes, and the public key that names an author.
//!
//! A replica's default identity lives in its directory as `identity.key`: the 32-byte secret
//! seed, readable by the owner only (mode 0600 on Unix). It is made on first use with a
//! create-if-absent link, so two processes opening a fresh replica at once end up with the same
//! key. An app may supply its own identity instead (a user's key kept in a keychain, say).
//!
//! A copied replica directory copies its key too: both copies then sign as the same author.
//! Give each replica its own key when the distinction matters (see `docs/SECURITY.md`).

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::RwLock;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// File name of a replica's default identity inside its directory.
pub const IDENTITY_FILE: &str = "identity.key";

/// Length of a public key in bytes.
pub const PUBLIC_KEY_LEN: usize = 32;

/// Length of a signature in bytes.
pub const SIGNATURE_LEN: usize = 64;

/// An author's Ed25519 public key. Shown as 64 lowercase hex characters.
///
/// Any 32 bytes parse; whether they are a usable key shows when a signature is checked (a
/// node whose key is not a valid curve point, or is of small order, never verifies).
///
/// ```
/// use braidlog::identity::{Identity, PublicKey};
/// let id = Identity::generate();
/// let key: PublicKey = id.public_key().to_string().parse().unwrap();
/// assert_eq!(key, id.public_key());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PublicKey(pub [u8; PUBLIC_KEY_LEN]);

impl PublicKey {
    /// The raw key.
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.0
    }

    /// The first 12 hex characters, for people. Not unique; never parse it back.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.short())
    }
}

/// Why a string is not a [`PublicKey`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a public key is 64 hex characters: {0}")]
pub struct ParseKeyError(String);

impl FromStr for PublicKey {
    type Err = ParseKeyError;
    fn from_str(s: &str) -> Result<PublicKey, ParseKeyError> {
        let mut b = [0u8; PUBLIC_KEY_LEN];
        hex::decode_to_slice(s.trim(), &mut b).map_err(|e| ParseKeyError(e.to_string()))?;
        Ok(PublicKey(b))
    }
}

/// Why an identity could not be loaded or stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The key file could not be read or written.
    #[error("identity file {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The key file does not hold exactly a 32-byte seed.
    #[error("identity file {path} holds {len} bytes, expected 32")]
    Malformed {
        /// The key file.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
    /// Others than the owner may read or write the key file: it is refused, as ssh refuses a
    /// private key that others can read.
    #[error(
        "identity file {path} has mode {mode:o}; it must be readable by its owner only (0600)"
    )]
    Permissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// An Ed25519 signing key: who this replica (or app user) writes as.
///
/// `Debug` shows the public key only; the secret never appears in logs.
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
}

impl Identity {
    /// A fresh random identity (from the operating system's generator).
    pub fn generate() -> Identity {
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        Identity::from_secret_bytes(&seed)
    }

    /// The identity with this 32-byte secret seed.
    pub fn from_secret_bytes(seed: &[u8; 32]) -> Identity {
        Identity {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// The 32-byte secret seed, to store the identity elsewhere. Handle with care.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The public key that names this author.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.key.verifying_key().to_bytes())
    }

    /// Signs `message` (deterministic Ed25519).
    pub(crate) fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.key.sign(message).to_bytes()
    }

    /// Reads the identity kept in `dir` (see [`IDENTITY_FILE`]), creating it on first use.
    pub fn load_or_create(dir: &Path) -> Result<Identity, IdentityError> {
        let path = dir.join(IDENTITY_FILE);
        match read_key(&path)? {
            Some(id) => Ok(id),
            None => {
                create_key(dir, &path)?;
                read_key(&path)?.ok_or_else(|| IdentityError::Io {
                    path: path.clone(),
                    source: std::io::ErrorKind::NotFound.into(),
                })
            }
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.public_key())
    }
}

/// Checks a signature over `message` with strict Ed25519 rules (canonical `s`, no small-order
/// key or `R`), so one signature is valid for one message and key only.
pub(crate) fn verify_strict(key: &PublicKey, message: &[u8], sig: &[u8; SIGNATURE_LEN]) -> bool {
    let Ok(vk) = VerifyingKey::from_bytes(&key.0) else {
        return false;
    };
    let sig = ed25519_dalek::Signature::from_bytes(sig);
    vk.verify_strict(message, &sig).is_ok()
}

/// Checks many signatures at once (Ed25519 batch verification, about twice as fast per
/// signature). `false` means at least one is bad: check them one by one to find it.
pub(crate) fn verify_batch(items: &[(PublicKey, [u8; 32], [u8; SIGNATURE_LEN])]) -> bool {
    let mut keys = Vec::with_capacity(items.len());
    for (k, _, _) in items {
        match VerifyingKey::from_bytes(&k.0) {
            // Weak (small-order) keys are refused outright, as `verify_strict` refuses them.
            Ok(vk) if !vk.is_weak() => keys.push(vk),
            _ => return false,
        }
    }
    let messages: Vec<&[u8]> = items.iter().map(|(_, m, _)| m.as_slice()).collect();
    let sigs: Vec<ed25519_dalek::Signature> = items
        .iter()
        .map(|(_, _, s)| ed25519_dalek::Signature::from_bytes(s))
        .collect();
    ed25519_dalek::verify_batch(&messages, &sigs, &keys).is_ok()
}

fn read_key(path: &Path) -> Result<Option<Identity>, IdentityError> {
    let io = |source| IdentityError::Io {
        path: path.into(),
        source,
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(IdentityError::Permissions {
                path: path.into(),
                mode,
            });
        }
    }
    let bytes = std::fs::read(path).map_err(io)?;
    let seed: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| IdentityError::Malformed {
            path: path.into(),
            len: meta.len(),
        })?;
    Ok(Some(Identity::from_secret_bytes(&seed)))
}

/// Writes a new key to a private temporary file, then links it into place only if no key is
/// there yet: a crash leaves either no key or a whole one, and a racing process's key wins
/// consistently (both then read the file that was linked first).
fn create_key(dir: &Path, path: &Path) -> Result<(), IdentityError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| IdentityError::Io { path: p, source }
    };
    let mut nonce = [0u8; 8];
    rand::rng().fill_bytes(&mut nonce);
    let tmp = dir.join(format!("{IDENTITY_FILE}.{}.tmp", hex::encode(nonce)));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let written = (|| {
        let mut f = opts.open(&tmp)?;
        f.write_all(&Identity::generate().secret_bytes())?;
        f.sync_all()
    })();
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            // Make the new directory entry durable too.
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io(path)(e)),
    }
}

/// How a log signs its local writes: with the replica's default identity (loaded or made on
/// first use), with one the app supplied, or not at all.
pub(crate) struct Signing {
    dir: PathBuf,
    choice: RwLock<Choice>,
}

#[derive(Clone)]
enum Choice {
    /// The replica's default identity, not loaded yet.
    Default,
    With(Box<Identity>),
    Off,
}

impl Signing {
    pub fn new(dir: &Path) -> Signing {
        Signing {
            dir: dir.into(),
            choice: RwLock::new(Choice::Default),
        }
    }

    /// The identity local writes are signed with, if any.
    pub fn current(&self) -> Result<Option<Identity>, IdentityError> {
        let choice = self
            .choice
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match choice {
            Choice::With(id) => Ok(Some(*id)),
            Choice::Off => Ok(None),
            Choice::Default => {
                let mut c = self.choice.write().unwrap_or_else(|e| e.into_inner());
                if let Choice::Default = *c {
                    *c = Choice::With(Box::new(Identity::load_or_create(&self.dir)?));
                }
                Ok(match &*c {
                    Choice::With(id) => Some((**id).clone()),
                    _ => None,
                })
            }
        }
    }

    pub fn set(&self, id: Option<Identity>) {
        *self.choice.write().unwrap_or_else(|e| e.into_inner()) = match id {
            Some(id) => Choice::With(Box::new(id)),
            None => Choice::Off,
        };
    }

    /// Builds a local node: signed now by the current identity, or unsigned when signing is
    /// off.
    pub fn node(
        &self,
        links: impl IntoIterator<Item = crate::Hash>,
        payload: Vec<u8>,
    ) -> crate::Result<crate::Node> {
        Ok(match self.current()? {
            Some(id) => crate::Node::signed(&id, now_ms(), links, payload)?,
            None => crate::Node::new(links, payload)?,
        })
    }
}

/// Milliseconds since the Unix epoch by this machine's clock (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_identity_is_created_once_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::load_or_create(dir.path()).unwrap();
        let b = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(a.public_key(), b.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(IDENTITY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // No temporary files left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn a_key_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        Identity::load_or_create(dir.path()).unwrap();
        let path = dir.path().join(IDENTITY_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Identity::load_or_create(dir.path()),
            Err(IdentityError::Permissions { mode: 0o644, .. })
        ));
    }

    #[test]
    fn a_truncated_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        Identity::load_or_create(dir.path()).unwrap();
        let path = dir.path().join(IDENTITY_FILE);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..31]).unwrap();
        assert!(matches!(
            Identity::load_or_create(dir.path()),
            Err(IdentityError::Malformed { len: 31, .. })
        ));
    }

    #[test]
    fn signatures_verify_strictly_and_in_batches() {
        let ids: Vec<Identity> = (0..4).map(|_| Identity::generate()).collect();
        let items: Vec<_> = (ids.iter().enumerate())
            .map(|(i, id)| {
                let m = [i as u8; 32];
                (id.public_key(), m, id.sign(&m))
            })
            .collect();
        assert!(verify_batch(&items));
        for (k, m, s) in &items {
            assert!(verify_strict(k, m, s));
        }
        let mut bad = items.clone();
        bad[2].1[0] ^= 1;
        assert!(!verify_batch(&bad));
        assert!(!verify_strict(&bad[2].0, &bad[2].1, &bad[2].2));
        // A weak (identity point) key never verifies.
        let mut weak = [0u8; 32];
        weak[0] = 1;
        assert!(!verify_strict(&PublicKey(weak), &[0; 32], &[0; 64]));
    }

    #[test]
    fn debug_hides_the_secret() {
        let id = Identity::from_secret_bytes(&[7; 32]);
        let shown = format!("{id:?}");
        assert!(!shown.contains(&hex::encode([7u8; 32])));
        assert!(shown.contains(&id.public_key().to_string()));
    }
}
