use super::*;
use crate::identity::Identity;
use quickcheck::{quickcheck, TestResult};

fn h(i: u8) -> Hash {
    Hash([i; 32])
}

#[test]
fn layout_is_as_documented() {
    let n = Node::new([h(2), h(1)], b"xy".to_vec()).unwrap();
    let bytes = n.encode();
    assert_eq!(bytes[0], 1);
    assert_eq!(bytes[1], 2);
    assert_eq!(&bytes[2..34], &[1; 32]);
    assert_eq!(&bytes[34..66], &[2; 32]);
    assert_eq!(&bytes[66..], &[2, b'x', b'y']);
    assert_eq!(n.encoded_len(), bytes.len());
    assert_eq!(n.hash(), Hash::of(&bytes));
}

#[test]
fn rejects_non_canonical() {
    let n = Node::new([h(1), h(2)], b"p".to_vec()).unwrap();
    let good = n.encode();

    let mut swapped = good.clone();
    swapped[2..34].copy_from_slice(&[2; 32]);
    swapped[34..66].copy_from_slice(&[1; 32]);
    assert_eq!(
        Node::decode(&swapped),
        Err(NodeError::UnsortedLinks { index: 1 })
    );

    let mut dup = good.clone();
    dup[34..66].copy_from_slice(&[1; 32]);
    assert_eq!(
        Node::decode(&dup),
        Err(NodeError::UnsortedLinks { index: 1 })
    );

    let mut trailing = good.clone();
    trailing.push(0);
    assert_eq!(
        Node::decode(&trailing),
        Err(NodeError::TrailingBytes { extra: 1 })
    );

    let mut version = good.clone();
    version[0] = 3;
    assert!(matches!(
        Node::decode(&version),
        Err(NodeError::UnknownVersion { got: 3, .. })
    ));

    // Payload length 1 written as an overlong varint (0x81 0x00).
    let mut overlong = good[..66].to_vec();
    overlong.extend_from_slice(&[0x81, 0x00, b'p']);
    assert_eq!(Node::decode(&overlong), Err(NodeError::NonCanonical));

    assert!(matches!(
        Node::decode(&good[..good.len() - 1]),
        Err(NodeError::Malformed(_))
    ));
    assert!(matches!(Node::decode(&[]), Err(NodeError::Malformed(_))));
}

#[test]
fn enforces_limits() {
    let big = vec![0u8; MAX_PAYLOAD_BYTES + 1];
    assert!(matches!(
        Node::new([], big),
        Err(NodeError::PayloadTooLarge { .. })
    ));
    let links = (0..=MAX_LINKS as u32).map(|i| Hash::of(&i.to_le_bytes()));
    assert!(matches!(
        Node::new(links, vec![]),
        Err(NodeError::TooManyLinks { .. })
    ));
    let max = Node::new([], vec![0; MAX_PAYLOAD_BYTES]).unwrap();
    assert!(max.encoded_len() <= MAX_NODE_BYTES);
    assert!(matches!(
        Node::decode(&vec![1; MAX_NODE_BYTES + 1]),
        Err(NodeError::TooLarge { .. })
    ));
}

#[test]
fn decode_expecting_checks_hash() {
    let n = Node::new([], b"a".to_vec()).unwrap();
    let err = Node::decode_expecting(&n.encode(), h(9)).unwrap_err();
    assert!(
        matches!(err, NodeError::HashMismatch { expected, got } if expected == h(9) && got == n.hash())
    );
}

fn signed(links: &[Hash], payload: &[u8]) -> Node {
    let id = Identity::from_secret_bytes(&[5; 32]);
    Node::signed(
        &id,
        0x0102_0304_0506_0708,
        links.iter().copied(),
        payload.to_vec(),
    )
    .unwrap()
}

#[test]
fn signed_layout_is_as_documented() {
    let n = signed(&[h(2), h(1)], b"xy");
    let bytes = n.encode();
    let key = Identity::from_secret_bytes(&[5; 32]).public_key();
    assert_eq!(bytes[0], 2);
    assert_eq!(&bytes[1..33], key.as_bytes());
    assert_eq!(&bytes[33..41], &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(bytes[41], 2);
    assert_eq!(&bytes[42..74], &[1; 32]);
    assert_eq!(&bytes[106..109], &[2, b'x', b'y']);
    assert_eq!(&bytes[109..], &n.authorship().unwrap().signature);
    assert_eq!(bytes.len(), 109 + 64);
    assert_eq!(n.encoded_len(), bytes.len());
    assert_eq!(n.hash(), Hash::of(&bytes));
    let back = Node::decode(&bytes).unwrap();
    assert_eq!(back, n);
    assert!(!back.signature_checked());
    back.verify_signature().unwrap();
    assert_eq!(back.author(), Some(key));
    assert_eq!(back.timestamp_ms(), Some(0x0102_0304_0506_0708));
}

/// Any change to author, timestamp, links, payload or signature is a different id and a
/// signature that no longer verifies (or bytes that do not decode at all).
#[test]
fn tampering_with_any_field_breaks_the_signature() {
    let n = signed(&[h(1)], b"payload");
    let good = n.encode();
    let sig_at = good.len() - 64;
    let other = Identity::from_secret_bytes(&[6; 32]).public_key();
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut author = good.clone();
    author[1..33].copy_from_slice(other.as_bytes());
    cases.push(("author", author));
    let mut ts = good.clone();
    ts[40] ^= 1;
    cases.push(("timestamp", ts));
    let mut link = good.clone();
    link[42] ^= 1;
    cases.push(("links", link));
    let mut payload = good.clone();
    payload[sig_at - 1] ^= 1;
    cases.push(("payload", payload));
    let mut sig = good.clone();
    sig[sig_at + 3] ^= 1;
    cases.push(("signature", sig));
    for (what, bytes) in cases {
        let t = Node::decode(&bytes).unwrap();
        assert_ne!(t.hash(), n.hash(), "{what}");
        assert!(
            matches!(t.verify_signature(), Err(NodeError::BadSignature { node, .. }) if node == t.hash()),
            "{what}"
        );
        let mut batch = vec![n.clone(), t];
        assert!(verify_signatures(&mut batch).is_err(), "{what}");
    }
}

#[test]
fn signed_rejects_non_canonical() {
    let good = signed(&[h(1)], b"p").encode();
    let mut trailing = good.clone();
    trailing.push(0);
    assert_eq!(
        Node::decode(&trailing),
        Err(NodeError::TrailingBytes { extra: 1 })
    );
    assert!(matches!(
        Node::decode(&good[..good.len() - 1]),
        Err(NodeError::Malformed(_))
    ));
    // Payload length 1 written as an overlong varint: two more bytes in the signed part.
    let mut overlong = good[..74].to_vec();
    overlong.extend_from_slice(&[0x81, 0x00, b'p']);
    overlong.extend_from_slice(&good[good.len() - 64..]);
    assert_eq!(Node::decode(&overlong), Err(NodeError::NonCanonical));
}

#[test]
fn signed_limits() {
    let links: Vec<Hash> = (0..MAX_LINKS as u32)
        .map(|i| Hash::of(&i.to_le_bytes()))
        .collect();
    let max = signed(&links, &vec![0; MAX_PAYLOAD_BYTES]);
    assert!(max.encoded_len() <= MAX_NODE_BYTES);
    assert_eq!(Node::decode(&max.encode()).unwrap(), max);
}

quickcheck! {
    fn prop_signed_round_trip(links: Vec<u8>, payload: Vec<u8>) -> bool {
        let links: Vec<Hash> = links.into_iter().map(h).collect();
        let n = signed(&links, &payload);
        let bytes = n.encode();
        bytes.len() == n.encoded_len()
            && Node::decode(&bytes).as_ref() == Ok(&n)
            && Node::decode(&bytes).unwrap().verify_signature().is_ok()
    }

    fn prop_signed_accepted_bytes_are_canonical(bytes: Vec<u8>) -> TestResult {
        let mut v = bytes;
        v.insert(0, 2);
        match Node::decode(&v) {
            Ok(n) => TestResult::from_bool(n.encode() == v),
            Err(_) => TestResult::discard(),
        }
    }

    fn prop_round_trip(links: Vec<u8>, payload: Vec<u8>) -> bool {
        let n = Node::new(links.into_iter().map(h), payload).unwrap();
        let bytes = n.encode();
        bytes.len() == n.encoded_len() && Node::decode(&bytes).as_ref() == Ok(&n)
    }

    fn prop_decode_arbitrary_never_panics(bytes: Vec<u8>) -> bool {
        let _ = Node::decode(&bytes);
        let mut v = bytes;
        v.insert(0, 1);
        let _ = Node::decode(&v);
        true
    }

    fn prop_accepted_bytes_are_canonical(bytes: Vec<u8>) -> TestResult {
        let mut v = bytes;
        v.insert(0, 1);
        match Node::decode(&v) {
            Ok(n) => TestResult::from_bool(n.encode() == v),
            Err(_) => TestResult::discard(),
        }
    }

    fn prop_varint_len(n: usize) -> bool {
        varint_len(n) == postcard::to_stdvec(&n).unwrap().len()
    }
}
