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
/// node whose key is not a valid curve point, or is of small order, never verifies; see
/// `docs/SECURITY.md` for the validation rule, ZIP-215).
///
/// ```
/// use braidlog::{Identity, PublicKey};
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
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The key file could not be read or written.
    #[error("identity file {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The underlying error (shared, so the error can be cloned).
        source: std::sync::Arc<std::io::Error>,
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
                    source: std::io::Error::from(std::io::ErrorKind::NotFound).into(),
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

/// The key a signature is checked against, or `None` for bytes that are no usable key: not a
/// curve point, or a point of small order (a weak key, which would let one signature pass for
/// many messages). Both [`verify_single`] and [`verify_batch`] decode keys here, so they refuse
/// the same keys.
fn verification_key(key: &PublicKey) -> Option<ed25519_consensus::VerificationKey> {
    match VerifyingKey::from_bytes(&key.0) {
        Ok(vk) if !vk.is_weak() => ed25519_consensus::VerificationKey::try_from(key.0).ok(),
        _ => None,
    }
}

/// Checks one signature over `message` under the ZIP-215 rules (`ed25519-consensus`):
/// cofactored verification, canonical `s`, and no small-order key (see [`verification_key`]).
///
/// This rule, not a stricter cofactorless one, is used because batch verification provably
/// agrees with it: [`verify_batch`] accepts a set of signatures exactly when each passes here,
/// so whether a node is valid depends on its bytes only, never on the path that checked it.
pub(crate) fn verify_single(key: &PublicKey, message: &[u8], sig: &[u8; SIGNATURE_LEN]) -> bool {
    let Some(vk) = verification_key(key) else {
        return false;
    };
    vk.verify(&ed25519_consensus::Signature::from(*sig), message)
        .is_ok()
}

/// Checks many signatures at once (ZIP-215 batch verification, about twice as fast per
/// signature). `true` exactly when every one passes [`verify_single`]; `false` means at least
/// one is bad: check them one by one to find it.
pub(crate) fn verify_batch(items: &[(PublicKey, [u8; 32], [u8; SIGNATURE_LEN])]) -> bool {
    let mut batch = ed25519_consensus::batch::Verifier::new();
    // Decoding a key is two point decompressions, about as costly as a signature's share of
    // the batch; a batch is mostly one author's nodes, so each key is decoded once.
    let mut keys: Vec<(PublicKey, ed25519_consensus::VerificationKeyBytes)> = Vec::new();
    for (k, m, s) in items {
        let vk = match keys.iter().find(|(seen, _)| seen == k) {
            Some((_, vk)) => *vk,
            None => {
                let Some(vk) = verification_key(k) else {
                    return false;
                };
                let vk = ed25519_consensus::VerificationKeyBytes::from(vk);
                // A batch naming many authors checks a bounded list, then decodes again.
                if keys.len() < 64 {
                    keys.push((*k, vk));
                }
                vk
            }
        };
        batch.queue((vk, ed25519_consensus::Signature::from(*s), m));
    }
    batch.verify(BatchRng(rand::rng())).is_ok()
}

/// The thread-local CSPRNG of `rand`, behind the `rand_core` 0.6 traits that
/// `ed25519-consensus` takes, for the batch verifier's random coefficients.
struct BatchRng(rand::rngs::ThreadRng);

impl rand_core::RngCore for BatchRng {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill_bytes(dest)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.0.fill_bytes(dest);
        Ok(())
    }
}

/// `ThreadRng` is a cryptographically secure generator (ChaCha, reseeded from the OS).
impl rand_core::CryptoRng for BatchRng {}

fn read_key(path: &Path) -> Result<Option<Identity>, IdentityError> {
    let io = |source: std::io::Error| IdentityError::Io {
        path: path.into(),
        source: source.into(),
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
        move |source: std::io::Error| IdentityError::Io {
            path: p,
            source: source.into(),
        }
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
    fn signatures_verify_singly_and_in_batches() {
        let ids: Vec<Identity> = (0..4).map(|_| Identity::generate()).collect();
        let items: Vec<_> = (ids.iter().enumerate())
            .map(|(i, id)| {
                let m = [i as u8; 32];
                (id.public_key(), m, id.sign(&m))
            })
            .collect();
        assert!(verify_batch(&items));
        for (k, m, s) in &items {
            assert!(verify_single(k, m, s));
        }
        let mut bad = items.clone();
        bad[2].1[0] ^= 1;
        assert!(!verify_batch(&bad));
        assert!(!verify_single(&bad[2].0, &bad[2].1, &bad[2].2));
        // A weak (identity point) key never verifies.
        let mut weak = [0u8; 32];
        weak[0] = 1;
        assert!(!verify_single(&PublicKey(weak), &[0; 32], &[0; 64]));
    }

    /// A mixed-order key `A' = a*B + T` (T a torsion point of order 8) with signatures made
    /// by hand with `a`. Under the former cofactorless rules single verification refused most
    /// of them while a randomized batch let some through at random, so replicas diverged.
    /// Single and batch verification must give the same answer for every signature, every
    /// time (under ZIP-215 both accept them).
    #[test]
    fn single_and_batch_verification_agree_on_mixed_order_keys() {
        use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
        use curve25519_dalek::scalar::Scalar;
        use sha2::{Digest, Sha512};

        let random_scalar = || {
            let mut w = [0u8; 64];
            rand::rng().fill_bytes(&mut w);
            Scalar::from_bytes_mod_order_wide(&w)
        };
        let a = random_scalar();
        let torsion = EIGHT_TORSION[1];
        let key_point = ED25519_BASEPOINT_POINT * a + torsion;
        let key = PublicKey(key_point.compress().to_bytes());

        let honest: Vec<_> = (0..8u8)
            .map(|i| {
                let id = Identity::generate();
                let m = [i; 32];
                (id.public_key(), m, id.sign(&m))
            })
            .collect();
        assert!(verify_batch(&honest));

        let mut disagreements = 0;
        let mut accepted = 0;
        for i in 0..64u8 {
            let mut m = [0u8; 32];
            rand::rng().fill_bytes(&mut m);
            m[0] = i;
            let r = random_scalar();
            let big_r = (ED25519_BASEPOINT_POINT * r).compress().to_bytes();
            let mut h = Sha512::new();
            h.update(big_r);
            h.update(key.0);
            h.update(m);
            let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
            let s = r + k * a;
            let mut sig = [0u8; SIGNATURE_LEN];
            sig[..32].copy_from_slice(&big_r);
            sig[32..].copy_from_slice(s.as_bytes());

            let single = verify_single(&key, &m, &sig);
            accepted += usize::from(single);
            for t in 0..20usize {
                let mut items = honest.clone();
                items.insert(t % (items.len() + 1), (key, m, sig));
                if verify_batch(&items) != single {
                    disagreements += 1;
                }
            }
        }
        assert_eq!(disagreements, 0, "single and batch verification disagreed");
        // Under ZIP-215 (cofactored) these signatures are valid, deterministically.
        assert!(accepted == 64, "{accepted} of 64 accepted");
    }

    #[test]
    fn debug_hides_the_secret() {
        let id = Identity::from_secret_bytes(&[7; 32]);
        let shown = format!("{id:?}");
        assert!(!shown.contains(&hex::encode([7u8; 32])));
        assert!(shown.contains(&id.public_key().to_string()));
    }
}
