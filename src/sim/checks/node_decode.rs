//! The node decoder against its own canonical form.

use crate::hash::Hash;
use crate::node::Node;

/// `node_decode`: decoding arbitrary bytes never panics, and whatever decodes is canonical:
/// it re-encodes to the same bytes and its id is the hash of those bytes.
pub fn check_node_decode(data: &[u8]) {
    if let Ok(node) = Node::decode(data) {
        assert_eq!(node.encode(), data, "accepted bytes are not canonical");
        assert_eq!(node.encoded_len(), data.len());
        assert_eq!(node.hash(), Hash::of(data));
        let again = Node::decode_expecting(data, node.hash()).expect("decodes twice");
        assert_eq!(again, node);
        // An unsigned node is rebuilt from its parts; a signed one cannot be (no key), and
        // checking its signature must not panic either.
        if node.author().is_none() {
            let rebuilt = Node::new(node.links().iter().copied(), node.payload().to_vec())
                .expect("a decoded node is within limits");
            assert_eq!(rebuilt, node);
        } else {
            let _ = node.verify_signature();
        }
    }
}
