//! A `Log` in a temporary directory against an in-memory model of its nodes and heads.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use crate::hash::{Hash, HASH_LEN};
use crate::log::LogError as Error;
use crate::log::{Durability, Inserted, Log, LogOptions};
use crate::node::{Node, NODE_FORMAT_VERSION};
use crate::sim::Input;

/// The reference the log is compared with: the node set and the heads.
#[derive(Default)]
struct Model {
    nodes: HashMap<Hash, Node>,
    order: Vec<Hash>,
    heads: BTreeSet<Hash>,
}

impl Model {
    fn add(&mut self, node: &Node) -> bool {
        if self.nodes.contains_key(&node.hash()) {
            return false;
        }
        for l in node.links() {
            self.heads.remove(l);
        }
        self.heads.insert(node.hash());
        self.order.push(node.hash());
        self.nodes.insert(node.hash(), node.clone());
        true
    }

    fn has_all_links(&self, node: &Node, earlier: &[Node]) -> bool {
        node.links()
            .iter()
            .all(|l| self.nodes.contains_key(l) || earlier.iter().any(|e| e.hash() == *l))
    }

    /// A link: an existing node most of the time, otherwise a hash nobody stored.
    fn pick_link(&self, input: &mut Input<'_>) -> Hash {
        let choice = input.u16() as usize;
        if self.order.is_empty() || choice % 16 == 15 {
            Hash::of(&choice.to_le_bytes())
        } else {
            self.order[choice % self.order.len()]
        }
    }
}

fn payload(input: &mut Input<'_>) -> Vec<u8> {
    let len = input.byte() as usize % 48;
    input.bytes(len).to_vec()
}

/// Bytes that are usually a node with existing links, sometimes with one byte changed.
fn node_bytes(model: &Model, input: &mut Input<'_>) -> Vec<u8> {
    let mut links: Vec<Hash> = (0..input.byte() % 4)
        .map(|_| model.pick_link(input))
        .collect();
    links.sort_unstable();
    links.dedup();
    let body = payload(input);
    let mut out = vec![NODE_FORMAT_VERSION, links.len() as u8];
    for l in &links {
        out.extend_from_slice(l.as_bytes());
    }
    out.push(body.len() as u8);
    out.extend_from_slice(&body);
    let mutate = input.byte();
    if mutate >= 0xc0 {
        let at = input.u16() as usize % (out.len() + 1);
        match mutate % 3 {
            0 if at < out.len() => out[at] ^= input.byte() | 1,
            1 => out.insert(at, input.byte()),
            _ if at < out.len() => {
                out.remove(at);
            }
            _ => {}
        }
    }
    out
}

/// `log_ops`: runs the operations encoded in `data` on a fresh log in `dir` (which must be
/// empty) and on an in-memory model; after every operation the outcomes must agree, and at
/// the end the log's node set, heads, feed order and `verify` must match the model.
pub fn check_log_ops(dir: &Path, data: &[u8]) {
    let mut input = Input::new(data);
    // A tiny first map (64 KiB) makes the map-full-then-grow path common.
    let options = LogOptions {
        map_size: if input.byte() & 1 == 0 {
            64 << 10
        } else {
            1 << 20
        },
        durability: Durability::NoSync,
    };
    let mut log = Log::open_with(dir, options.clone()).expect("open");
    // The model predicts ids: unsigned nodes (a signed node's id depends on the clock).
    log.set_identity(None);
    let mut model = Model::default();
    let mut ops = 0;
    while !input.is_empty() && ops < 64 {
        ops += 1;
        match input.byte() % 6 {
            0 => {
                let links: Vec<Hash> = (0..input.byte() % 4)
                    .map(|_| model.pick_link(&mut input))
                    .collect();
                let expected = Node::new(links.iter().copied(), payload(&mut input)).unwrap();
                let got = log.add(links, expected.payload().to_vec());
                if model.has_all_links(&expected, &[]) {
                    assert_eq!(got.expect("add with stored links"), expected);
                    model.add(&expected);
                } else {
                    assert!(matches!(got, Err(Error::MissingLink { .. })), "{got:?}");
                }
            }
            1 => {
                let body = payload(&mut input);
                let expected = Node::new(model.heads.iter().copied(), body.clone()).unwrap();
                assert_eq!(log.append(body).expect("append"), expected);
                model.add(&expected);
            }
            2 => {
                let bytes = node_bytes(&model, &mut input);
                let got = Node::decode(&bytes)
                    .map_err(Error::from)
                    .and_then(|n| log.insert(&[n]))
                    .map(|i| i[0]);
                match Node::decode(&bytes) {
                    Err(e) => assert!(matches!(got, Err(Error::Node(ref g)) if *g == e), "{got:?}"),
                    Ok(n) if !model.has_all_links(&n, &[]) => {
                        assert!(matches!(got, Err(Error::MissingLink { .. })), "{got:?}")
                    }
                    Ok(n) => {
                        let known = model.nodes.contains_key(&n.hash());
                        match got.expect("insert of a valid node") {
                            Inserted::New(_) => assert!(!known && model.add(&n)),
                            Inserted::Existing(_) => assert!(known),
                        }
                    }
                }
            }
            3 => {
                let mut batch: Vec<Node> = Vec::new();
                let mut valid = true;
                for _ in 0..input.byte() % 6 {
                    let node = match input.byte() % 4 {
                        // An already stored node, or one repeated from this batch.
                        0 if !model.order.is_empty() => {
                            let h = model.order[input.u16() as usize % model.order.len()];
                            model.nodes[&h].clone()
                        }
                        1 if !batch.is_empty() => {
                            batch[input.byte() as usize % batch.len()].clone()
                        }
                        // A node linking to one earlier in the batch.
                        2 if !batch.is_empty() => {
                            let prev = batch[input.byte() as usize % batch.len()].hash();
                            Node::new([prev], payload(&mut input)).unwrap()
                        }
                        _ => Node::decode(&node_bytes(&model, &mut input))
                            .unwrap_or_else(|_| Node::new([], payload(&mut input)).unwrap()),
                    };
                    valid &= model.has_all_links(&node, &batch);
                    batch.push(node);
                }
                let before = log.last_seq().unwrap();
                let got = log.insert(&batch);
                if valid {
                    let got = got.expect("batch with stored links");
                    assert_eq!(got.len(), batch.len());
                    for (node, outcome) in batch.iter().zip(got) {
                        let fresh = model.add(node);
                        assert_eq!(fresh, matches!(outcome, Inserted::New(_)), "{outcome:?}");
                    }
                } else {
                    assert!(matches!(got, Err(Error::MissingLink { .. })), "{got:?}");
                    assert_eq!(log.last_seq().unwrap(), before, "a failed batch wrote");
                }
            }
            4 => {
                if let Some(h) = model
                    .order
                    .get(input.u16() as usize % (model.order.len() + 1))
                {
                    assert_eq!(log.get(h).unwrap().as_ref(), Some(&model.nodes[h]));
                } else {
                    let absent = Hash([input.byte(); HASH_LEN]);
                    assert_eq!(log.get(&absent).unwrap(), model.nodes.get(&absent).cloned());
                }
            }
            _ => {
                drop(log);
                log = Log::open_with(dir, options.clone()).expect("reopen");
                log.set_identity(None);
            }
        }
    }
    check_against_model(&log, &model);
}

fn check_against_model(log: &Log, model: &Model) {
    let heads: Vec<Hash> = model.heads.iter().copied().collect();
    assert_eq!(log.heads().unwrap(), heads);
    assert_eq!(log.len().unwrap(), model.order.len() as u64);
    let feed: Vec<Hash> = log.changes(0).map(|e| e.unwrap().node.hash()).collect();
    assert_eq!(feed, model.order, "feed is not the arrival order");
    for (h, n) in &model.nodes {
        assert_eq!(log.get(h).unwrap().as_ref(), Some(n));
    }
    let report = log.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.violations);
}
