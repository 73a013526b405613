//! The application under test: a stock counter that every replica may adjust at any time,
//! offline, merged on arrival. Shared by the example and the `app_counter` fuzz target.
//!
//! The value of key `stock` is, per replica, the units it added and the units it removed
//! (a PN-counter): the count is the sum of additions minus the sum of removals. Two versions
//! merge by taking, per replica, the greater of each (each replica's own tallies only grow),
//! a pure function of the versions, so replicas that merge the same conflict agree.

use braidlog::kv::KvRead;
use braidlog::kv::MergeFn;
use braidlog::kv::{Op, Version};
use braidlog::sim::{App, Input, Replica};

const KEY: &[u8] = b"stock";

/// Per replica: (added, removed).
type Tallies = Vec<(u32, u32)>;

fn decode(value: &[u8]) -> Tallies {
    value
        .chunks_exact(8)
        .map(|c| {
            let n = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap());
            (n(&c[..4]), n(&c[4..]))
        })
        .collect()
}

fn encode(tallies: &Tallies) -> Vec<u8> {
    let mut out = Vec::with_capacity(tallies.len() * 8);
    for (a, r) in tallies {
        out.extend_from_slice(&a.to_le_bytes());
        out.extend_from_slice(&r.to_le_bytes());
    }
    out
}

/// The merge: per replica, the greatest tallies any version has.
fn merge(versions: &[Version]) -> Tallies {
    let mut out: Tallies = Vec::new();
    for t in versions.iter().filter_map(|v| v.value()).map(decode) {
        out.resize(out.len().max(t.len()), (0, 0));
        for (o, (a, r)) in out.iter_mut().zip(t) {
            *o = (o.0.max(a), o.1.max(r));
        }
    }
    out
}

fn count(tallies: &Tallies) -> i64 {
    tallies
        .iter()
        .map(|&(a, r)| i64::from(a) - i64::from(r))
        .sum()
}

/// The app: its operations, its merge, and what must hold at the end.
#[derive(Debug, Default)]
pub struct Stock {
    /// Units added minus units removed, over every operation on every replica.
    pub expected: i64,
}

impl App for Stock {
    fn op(&mut self, replica: &Replica, input: &mut Input<'_>) -> braidlog::Result<()> {
        let kv = replica.kv();
        let mut tallies = match kv.get(KEY)? {
            Some(versions) => merge(versions.as_slice()),
            None => Vec::new(),
        };
        let units = 1 + u32::from(input.byte() % 4);
        let i = replica.index();
        tallies.resize(tallies.len().max(i + 1), (0, 0));
        if input.flip() {
            tallies[i].0 += units;
            self.expected += i64::from(units);
        } else {
            tallies[i].1 += units;
            self.expected -= i64::from(units);
        }
        // `put` supersedes every version current in its transaction: the ones read above
        // (nothing arrives in between in a simulation, which runs one step at a time).
        kv.put(KEY, encode(&tallies))?;
        Ok(())
    }

    fn on_sync(&mut self, replica: &Replica) -> braidlog::Result<()> {
        replica.kv().resolve(
            KEY,
            MergeFn::new(|_, versions| Op::Put(encode(&merge(versions)))),
        )?;
        Ok(())
    }

    fn check(&mut self, replicas: &[Replica]) {
        for r in replicas {
            let versions = r.kv().get(KEY).unwrap();
            let got = versions.as_ref().map_or(0, |v| {
                assert!(!v.is_conflict(), "replica {}: conflict left", r.index());
                count(&decode(v.value().unwrap()))
            });
            assert_eq!(got, self.expected, "replica {} miscounts", r.index());
        }
    }
}
