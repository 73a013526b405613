//! Typed values: a thin layer encoding values with postcard. Keys stay bytes, so their order
//! stays the byte order the scans use.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Kv, KvError, KvRead, Result, Version};
use crate::hash::Hash;

/// One current version with its value decoded (`None` for a tombstone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypedVersion<V> {
    /// The node that wrote it.
    pub hash: Hash,
    /// The decoded value, or `None` for a tombstone.
    pub value: Option<V>,
}

/// A [`Kv`] whose values are `V`, encoded with postcard; see [`Kv::typed`].
///
/// ```
/// # #[allow(unused_imports)] use braidlog::kv::{KvRead, Write};
/// # fn main() -> Result<(), braidlog::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let log = braidlog::Log::open(dir.path())?;
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// struct User { name: String, admin: bool }
///
/// let users = braidlog::kv::Kv::open(&log)?.namespace("users")?.typed::<User>();
/// users.put(b"ada", &User { name: "Ada".into(), admin: true })?;
/// assert_eq!(users.get_single(b"ada")?.unwrap().name, "Ada");
/// # Ok(()) }
/// ```
pub struct Typed<V> {
    kv: Kv,
    _value: PhantomData<fn() -> V>,
}

impl<V> Clone for Typed<V> {
    fn clone(&self) -> Self {
        Typed::new(self.kv.clone())
    }
}

impl<V> Typed<V> {
    pub(crate) fn new(kv: Kv) -> Typed<V> {
        Typed {
            kv,
            _value: PhantomData,
        }
    }

    /// The untyped store underneath.
    pub fn raw(&self) -> &Kv {
        &self.kv
    }
}

impl<V: Serialize + DeserializeOwned> Typed<V> {
    /// Encodes `value` and puts it (see [`Kv::put`]).
    pub fn put(&self, key: impl AsRef<[u8]>, value: &V) -> Result<Hash> {
        let key = key.as_ref();
        let bytes = postcard::to_stdvec(value).map_err(|e| codec(key, Hash::default(), e))?;
        self.kv.put(key, bytes)
    }

    /// Deletes `key` (see [`Kv::del`]).
    pub fn del(&self, key: impl AsRef<[u8]>) -> Result<Hash> {
        self.kv.del(key)
    }

    /// Every current version, decoded; `None` when absent. Several means a conflict.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<TypedVersion<V>>>> {
        let key = key.as_ref();
        let Some(versions) = self.kv.get(key)? else {
            return Ok(None);
        };
        versions
            .iter()
            .map(|v| decode(key, v))
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// The single decoded value, or [`KvError::Conflict`] when the key is in conflict.
    pub fn get_single(&self, key: impl AsRef<[u8]>) -> Result<Option<V>> {
        let key = key.as_ref();
        match self.kv.get_single(key)? {
            None => Ok(None),
            Some(bytes) => postcard::from_bytes(&bytes)
                .map(Some)
                .map_err(|e| codec(key, Hash::default(), e)),
        }
    }
}

fn decode<V: DeserializeOwned>(key: &[u8], v: &Version) -> Result<TypedVersion<V>> {
    let value = match v.value() {
        None => None,
        Some(bytes) => Some(postcard::from_bytes(bytes).map_err(|e| codec(key, v.hash, e))?),
    };
    Ok(TypedVersion {
        hash: v.hash,
        value,
    })
}

fn codec(key: &[u8], hash: Hash, e: postcard::Error) -> KvError {
    KvError::Codec {
        key: key.to_vec(),
        hash,
        message: e.to_string(),
    }
}
