//! The mesh wire format under arbitrary input: a peer's request, response, gossip
//! message and chunk list, as bytes anyone on the LAN could send. Nothing panics; what
//! decodes re-encodes to the same bytes (requests and responses) or to a message that
//! decodes the same (gossip); a chunk list that parses holds whole chaining values.
//! Bounded by `PROPTEST_CASES` (default 256 per property); failures are kept in
//! `proptest-regressions/`.

use outpost_p2p::chunks::{ChunkList, Root};
use outpost_p2p::wire::{self, Gossip};
use proptest::prelude::*;

/// Random bytes, and frames that start with a valid tag and a plausible length.
fn frame() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..128),
        (1u8..=3, proptest::collection::vec(any::<u8>(), 0..80)).prop_map(|(tag, rest)| {
            let mut b = vec![tag];
            b.extend(rest);
            b
        }),
        (1u8..=2, any::<[u8; 32]>(), any::<u32>()).prop_map(|(tag, root, i)| {
            let mut b = vec![tag];
            b.extend_from_slice(&root);
            if tag == 2 {
                b.extend_from_slice(&i.to_be_bytes());
            }
            b
        }),
    ]
}

/// JSON-ish gossip: random text, and `Have` messages with fields bent out of shape.
fn gossip() -> impl Strategy<Value = Vec<u8>> {
    let have = (
        any::<u64>(),
        "[A-Za-z0-9+/=]{0,24}",
        any::<bool>(),
        proptest::collection::vec("[ -~]{0,12}", 0..3),
    )
        .prop_map(|(size, bitfield, has_list, addrs)| {
            serde_json::json!({
                "type": "have",
                "root": "ab".repeat(32),
                "size": size % (1 << 34),
                "bitfield": bitfield,
                "has_list": has_list,
                "fetching_origin": false,
                "addrs": addrs,
                "seq": 1,
            })
            .to_string()
            .into_bytes()
        });
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        "[ -~]{0,200}".prop_map(String::into_bytes),
        have,
    ]
}

proptest! {
    #[test]
    fn requests_decode_or_refuse_and_round_trip(b in frame()) {
        if let Ok(r) = wire::decode_request(&b) {
            prop_assert_eq!(wire::encode_request(&r), b);
        }
    }

    #[test]
    fn responses_decode_or_refuse_and_round_trip(b in frame()) {
        if let Ok(r) = wire::decode_response(&b) {
            prop_assert_eq!(wire::encode_response(&r), b);
        }
    }

    #[test]
    fn gossip_decodes_or_refuses_and_its_bitfield_fits(b in gossip()) {
        if let Ok(g) = Gossip::decode(&b) {
            prop_assert_eq!(Gossip::decode(&g.encode()).ok(), Some(g.clone()));
            if let Gossip::Have { .. } = &g {
                prop_assert!(g.have_bits().is_some());
            }
        }
    }

    #[test]
    fn chunk_lists_parse_only_whole(
        root in any::<[u8; 32]>(),
        size in 0u64..(1 << 30),
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let root = Root::from_hex(&root.iter().map(|b| format!("{b:02x}")).collect::<String>())
            .unwrap();
        if let Ok(list) = ChunkList::from_bytes(root, size, &bytes) {
            prop_assert_eq!(list.size(), size);
            prop_assert_eq!(bytes.len() % 32, 0);
        }
    }
}
