//! Two merge operators built on sums of deltas: [`Counter`] and [`CountingSet`].
//!
//! Every version of such a key records, for each element (one, for a counter), its *total*
//! and the *delta* that this write applied. The value of a set of versions is the sum of the
//! deltas of every operation behind them, each counted once, however the operations were
//! merged: a merge writes the totals with zero deltas, so merges add nothing and the result
//! does not depend on which replica merged what, or in which order nodes arrived.
//!
//! Summing the whole history would cost a walk to the first write on every merge. Instead:
//! with `B` the merge base of the versions, the operations behind them are those behind `B`
//! plus those since `B` ([`Ancestry::since`]); the first part is the value of `B` (its stored
//! totals when `B` is one operation, the same computation again when it is several), the
//! second is a short walk. Cost: the operations since the merge base.
//!
//! A version this module cannot decode (a tombstone, another program's value, a hostile
//! peer's bytes) makes the merge decline: the conflict stays visible.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ancestry::Ancestry;
use super::merge::Merge;
use super::op::Op;
use super::{Kv, KvError, KvRead, Result, Version, Write};
use crate::hash::Hash;

/// How deep the merge-base recursion of criss-cross histories goes before a merge declines.
const MAX_DEPTH: usize = 64;

/// Element -> (total, delta).
type Sums = BTreeMap<Vec<u8>, (i64, i64)>;

/// How a kind of value stores its sums.
trait Codec {
    fn decode(value: &[u8]) -> Option<Sums>;
    fn encode(sums: &Sums) -> Vec<u8>;
}

/// The totals of the union of the histories behind `set`, or `None` when some operation in
/// it cannot be decoded (or the numbers overflow).
fn totals<C: Codec>(
    anc: &Ancestry<'_>,
    set: &[Hash],
    depth: usize,
) -> Result<Option<BTreeMap<Vec<u8>, i64>>> {
    let decode = |h: &Hash| -> Result<Option<Sums>> {
        Ok(anc.op(h)?.and_then(|op| op.value().and_then(C::decode)))
    };
    if depth > MAX_DEPTH {
        return Ok(None);
    }
    match set {
        [] => return Ok(Some(BTreeMap::new())),
        [one] => return Ok(decode(one)?.map(|s| s.into_iter().map(|(e, (t, _))| (e, t)).collect())),
        _ => {}
    }
    let base = anc.merge_base(set)?;
    let Some(mut acc) = totals::<C>(anc, &base, depth + 1)? else {
        return Ok(None);
    };
    for h in anc.since(&base, set)? {
        let Some(sums) = decode(&h)? else {
            return Ok(None);
        };
        for (e, (_, d)) in sums {
            let t = acc.entry(e).or_insert(0);
            let Some(n) = t.checked_add(d) else {
                return Ok(None);
            };
            *t = n;
        }
    }
    Ok(Some(acc))
}

/// The merged value written by a merge: the totals, zero deltas.
fn merged<C: Codec>(versions: &[Version], anc: &Ancestry<'_>) -> Result<Option<Op>> {
    let hashes: Vec<Hash> = versions.iter().map(|v| v.hash).collect();
    Ok(totals::<C>(anc, &hashes, 0)?.map(|t| {
        let sums = t
            .into_iter()
            .filter(|(_, t)| *t != 0)
            .map(|(e, t)| (e, (t, 0)))
            .collect();
        Op::Put(C::encode(&sums))
    }))
}

/// Reads the totals of `key` (merging a conflict in memory), lets `change` pick new totals
/// and deltas, and writes them if the key did not change meanwhile; retries like
/// [`Kv::update`].
fn adjust<C: Codec>(kv: &Kv, key: &[u8], mut change: impl FnMut(&mut Sums)) -> Result<Hash> {
    let mut tries = 0;
    loop {
        let (seen, sums) = kv.read(|snap| {
            let seen = snap.versions(key)?.hashes();
            let anc = snap.ancestry(key)?;
            let totals = totals::<C>(&anc, &seen, 0)?.ok_or_else(|| undecodable(key))?;
            Ok((seen, totals))
        })?;
        let mut sums: Sums = sums
            .into_iter()
            .filter(|(_, t)| *t != 0)
            .map(|(e, t)| (e, (t, 0)))
            .collect();
        change(&mut sums);
        tries += 1;
        match kv.write(key, Write::put(C::encode(&sums)).expecting(&seen)) {
            Err(KvError::Changed { .. }) if tries < super::MAX_UPDATE_TRIES => {}
            r => return r,
        }
    }
}

fn undecodable(key: &[u8]) -> KvError {
    KvError::Codec {
        key: key.to_vec(),
        hash: Hash([0; 32]),
        message: "cannot sum: an operation behind it is not a value of this kind, a total \
                  overflows, or criss-cross merges nest deeper than 64"
            .into(),
    }
}

fn totals_now<C: Codec>(kv: &Kv, key: &[u8]) -> Result<BTreeMap<Vec<u8>, i64>> {
    kv.read(|snap| {
        let seen = snap.versions(key)?.hashes();
        totals::<C>(&snap.ancestry(key)?, &seen, 0)?.ok_or_else(|| undecodable(key))
    })
}

/// A counter: a signed 64-bit total changed by adding deltas. Concurrent adds all count.
///
/// Value: `total` then `delta`, each an `i64` big-endian (16 bytes).
///
/// ```
/// # #[allow(unused_imports)] use braidlog::kv::{KvRead, Write};
/// # fn main() -> Result<(), braidlog::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let log = braidlog::Log::open(dir.path())?;
/// use braidlog::kv::{Counter, Kv};
/// let kv = Kv::open(&log)?;
/// kv.register_merge("stock/", Counter)?;
/// Counter::add(&kv, "stock/apples", 10)?;
/// Counter::add(&kv, "stock/apples", -3)?;
/// assert_eq!(Counter::value(&kv, "stock/apples")?, 7);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Counter;

impl Codec for Counter {
    fn decode(value: &[u8]) -> Option<Sums> {
        let (t, d) = value.split_first_chunk::<8>()?;
        let d: [u8; 8] = d.try_into().ok()?;
        Some(BTreeMap::from([(
            Vec::new(),
            (i64::from_be_bytes(*t), i64::from_be_bytes(d)),
        )]))
    }
    fn encode(sums: &Sums) -> Vec<u8> {
        let (t, d) = sums.get(&[][..]).copied().unwrap_or((0, 0));
        [t.to_be_bytes(), d.to_be_bytes()].concat()
    }
}

impl Counter {
    /// Adds `delta` to the counter at `key` (a conflict is merged in the same write).
    ///
    /// Needs a signed log (the default): on an unsigned one, two replicas that add the same
    /// delta to the same total write the same node, and the adds count once (see
    /// `docs/MERGING.md`, "Identical writes are one node").
    pub fn add(kv: &Kv, key: impl AsRef<[u8]>, delta: i64) -> Result<Hash> {
        let key = key.as_ref();
        adjust::<Counter>(kv, key, |sums| {
            let (t, _) = sums.get(&[][..]).copied().unwrap_or((0, 0));
            sums.insert(Vec::new(), (t.saturating_add(delta), delta));
        })
    }

    /// The counter's value: the sum of every delta behind its current versions (0 when
    /// never written).
    pub fn value(kv: &Kv, key: impl AsRef<[u8]>) -> Result<i64> {
        Ok(totals_now::<Counter>(kv, key.as_ref())?
            .get(&[][..])
            .copied()
            .unwrap_or(0))
    }

    /// The value recording `total` and the `delta` that led to it (a merge records 0), for
    /// an application that writes or resolves a counter itself.
    pub fn encode(total: i64, delta: i64) -> Vec<u8> {
        [total.to_be_bytes(), delta.to_be_bytes()].concat()
    }

    /// The `(total, delta)` a version of a counter records.
    pub fn decode(value: &[u8]) -> Option<(i64, i64)> {
        <Counter as Codec>::decode(value)?.remove(&[][..])
    }
}

impl Merge for Counter {
    fn merge(&self, versions: &[Version], ancestry: &Ancestry<'_>) -> Result<Option<Op>> {
        merged::<Counter>(versions, ancestry)
    }
}

/// A set of byte strings, each element a count that insert sets to 1 and remove to 0 (by
/// recording the delta that does it). An element is present while its count is positive.
/// Sequential inserts and removes behave as a set; when an insert and a remove of the same
/// element are concurrent, both deltas count: removing a present element concurrently on
/// two replicas leaves it absent, and so does a remove concurrent with a re-insert that
/// followed another remove.
///
/// Value: postcard of the sorted list of `(element, count, delta)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingSet;

#[derive(Serialize, Deserialize)]
struct Item(#[serde(with = "serde_bytes")] Vec<u8>, i64, i64);

impl Codec for CountingSet {
    fn decode(value: &[u8]) -> Option<Sums> {
        let items: Vec<Item> = postcard::from_bytes(value).ok()?;
        let mut out = Sums::new();
        for Item(e, t, d) in items {
            // Strictly increasing: one encoding per set.
            if out.last_key_value().is_some_and(|(last, _)| *last >= e) {
                return None;
            }
            out.insert(e, (t, d));
        }
        Some(out)
    }
    fn encode(sums: &Sums) -> Vec<u8> {
        let items: Vec<Item> = sums
            .iter()
            .map(|(e, &(t, d))| Item(e.clone(), t, d))
            .collect();
        postcard::to_stdvec(&items).expect("writing to a Vec cannot fail")
    }
}

impl CountingSet {
    fn set(kv: &Kv, key: &[u8], element: &[u8], target: i64) -> Result<Hash> {
        adjust::<CountingSet>(kv, key, |sums| {
            let (t, _) = sums.get(element).copied().unwrap_or((0, 0));
            sums.insert(element.to_vec(), (target, target - t));
        })
    }

    /// Inserts `element` into the set at `key`.
    pub fn insert(kv: &Kv, key: impl AsRef<[u8]>, element: impl AsRef<[u8]>) -> Result<Hash> {
        Self::set(kv, key.as_ref(), element.as_ref(), 1)
    }

    /// Removes `element` from the set at `key`.
    pub fn remove(kv: &Kv, key: impl AsRef<[u8]>, element: impl AsRef<[u8]>) -> Result<Hash> {
        Self::set(kv, key.as_ref(), element.as_ref(), 0)
    }

    /// A value holding exactly `members` (each with count 1 and no delta): a starting
    /// value, or a resolution written by hand.
    pub fn encode_members(members: impl IntoIterator<Item = impl AsRef<[u8]>>) -> Vec<u8> {
        let sums: Sums = members
            .into_iter()
            .map(|m| (m.as_ref().to_vec(), (1, 0)))
            .collect();
        <CountingSet as Codec>::encode(&sums)
    }

    /// The elements present, in order.
    pub fn members(kv: &Kv, key: impl AsRef<[u8]>) -> Result<Vec<Vec<u8>>> {
        Ok(totals_now::<CountingSet>(kv, key.as_ref())?
            .into_iter()
            .filter(|(_, t)| *t > 0)
            .map(|(e, _)| e)
            .collect())
    }
}

impl Merge for CountingSet {
    fn merge(&self, versions: &[Version], ancestry: &Ancestry<'_>) -> Result<Option<Op>> {
        merged::<CountingSet>(versions, ancestry)
    }
}
