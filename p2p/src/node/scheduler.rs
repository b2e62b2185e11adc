//! Which chunk to ask of which peer, for one artifact (docs/p2p.md, "Announce and
//! fetch"). Pure and generic over the peer id: the node hands it the download and the
//! peers' announced bitfields as values and sends the requests it returns; randomness
//! comes from the caller's `Rng`, so tests seed it.
//!
//! - Rarest first: of the chunks a peer holds that nobody is asked for yet, the peer is
//!   asked for one that the fewest peers hold (ties at random), so rare chunks spread
//!   before their holders leave.
//! - Peers are filled least loaded first (ties at random), each up to
//!   `requests_per_peer` requests in flight, and at most `max_peers` peers have requests
//!   in flight for the artifact.
//! - Endgame: once every missing chunk that some peer holds has been asked, a peer with
//!   a free slot is also asked for the least-asked chunk it holds and is not already
//!   asked for (the lowest index among equals), so one slow peer does not hold back the
//!   end; no chunk is asked of more than [`MAX_ASKED`] peers at once.
//! - A chunk present here, received and being written, or held by no peer is not asked.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use rand::Rng;
use rand::seq::{IndexedRandom, SliceRandom};

use crate::chunks::Bitfield;

/// At most this many peers are asked for one chunk at once (in endgame).
pub(super) const MAX_ASKED: usize = 2;

/// How much of the mesh one artifact may use at once ([`crate::P2pConfig`]'s
/// `max_peers` and `requests_per_peer`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Peers with requests in flight.
    pub max_peers: usize,
    /// Requests in flight per peer.
    pub requests_per_peer: usize,
}

/// A usable peer that announced the artifact.
pub(super) struct Holder<'a, P> {
    pub peer: P,
    /// The chunks it announced.
    pub have: &'a Bitfield,
    /// Whether it announced the chunk list.
    pub has_list: bool,
}

/// One artifact's download as the scheduler sees it.
pub(super) struct Wanted<'a, P> {
    /// The chunks present here.
    pub have: &'a Bitfield,
    /// Chunks received and being written: not asked again.
    pub writing: &'a HashSet<u32>,
    /// Requests in flight, as (peer, chunk).
    pub in_flight: &'a [(P, u32)],
}

/// Which peer to ask for the chunk list: one that announced it, at random.
pub(super) fn list_source<P: Copy>(holders: &[Holder<'_, P>], rng: &mut impl Rng) -> Option<P> {
    let with_list: Vec<P> = holders
        .iter()
        .filter(|h| h.has_list)
        .map(|h| h.peer)
        .collect();
    with_list.choose(rng).copied()
}

/// The chunk requests to send now, as (peer, chunk), given the requests in flight.
pub(super) fn chunk_requests<P: Copy + Eq + Hash>(
    want: &Wanted<'_, P>,
    holders: &[Holder<'_, P>],
    limits: Limits,
    rng: &mut impl Rng,
) -> Vec<(P, u32)> {
    let n = want.have.len();
    let mut rarity = vec![0u32; n as usize];
    for h in holders {
        for i in 0..n {
            if h.have.get(i) {
                rarity[i as usize] += 1;
            }
        }
    }
    let missing: Vec<u32> = (0..n)
        .filter(|i| !want.have.get(*i) && !want.writing.contains(i) && rarity[*i as usize] > 0)
        .collect();
    if missing.is_empty() {
        return Vec::new();
    }
    let mut load: HashMap<P, usize> = HashMap::new();
    let mut asked: HashMap<u32, usize> = HashMap::new();
    for (p, i) in want.in_flight {
        *load.entry(*p).or_default() += 1;
        *asked.entry(*i).or_default() += 1;
    }
    // Asked of whom, including the requests planned here.
    let mut pairs: HashSet<(P, u32)> = want.in_flight.iter().copied().collect();
    let mut order: Vec<&Holder<'_, P>> = holders.iter().collect();
    order.shuffle(rng);
    order.sort_by_key(|h| load.get(&h.peer).copied().unwrap_or(0));
    let mut active: HashSet<P> = load.keys().copied().collect();
    let mut sends: Vec<(P, u32)> = Vec::new();
    for h in order {
        let p = h.peer;
        if !active.contains(&p) && active.len() >= limits.max_peers {
            continue;
        }
        let mut l = load.get(&p).copied().unwrap_or(0);
        while l < limits.requests_per_peer {
            let unasked: Vec<u32> = missing
                .iter()
                .copied()
                .filter(|i| h.have.get(*i) && !asked.contains_key(i))
                .collect();
            let pick = if !unasked.is_empty() {
                let best = unasked
                    .iter()
                    .map(|i| rarity[*i as usize])
                    .min()
                    .unwrap_or(0);
                let rarest: Vec<u32> = unasked
                    .into_iter()
                    .filter(|i| rarity[*i as usize] == best)
                    .collect();
                rarest.choose(rng).copied()
            } else if missing.iter().all(|i| asked.contains_key(i)) {
                // Endgame: the least-asked chunk this peer has and is not asked for.
                missing
                    .iter()
                    .copied()
                    .filter(|i| h.have.get(*i) && asked.get(i).copied().unwrap_or(0) < MAX_ASKED)
                    .filter(|i| !pairs.contains(&(p, *i)))
                    .min_by_key(|i| asked.get(i).copied().unwrap_or(0))
            } else {
                // Chunks this peer lacks are still unasked: others will be asked first.
                None
            };
            let Some(i) = pick else { break };
            *asked.entry(i).or_default() += 1;
            pairs.insert((p, i));
            sends.push((p, i));
            l += 1;
            active.insert(p);
        }
    }
    sends
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const A: u8 = b'a';
    const B: u8 = b'b';
    const C: u8 = b'c';
    const D: u8 = b'd';

    fn bits(len: u32, set: &[u32]) -> Bitfield {
        let mut b = Bitfield::new(len);
        for i in set {
            b.set(*i);
        }
        b
    }

    fn holder(peer: u8, have: &Bitfield) -> Holder<'_, u8> {
        Holder {
            peer,
            have,
            has_list: true,
        }
    }

    fn limits(max_peers: usize, requests_per_peer: usize) -> Limits {
        Limits {
            max_peers,
            requests_per_peer,
        }
    }

    /// The plan for a download with nothing here and nothing being written.
    fn plan(
        n: u32,
        in_flight: &[(u8, u32)],
        holders: &[Holder<'_, u8>],
        limits: Limits,
        seed: u64,
    ) -> Vec<(u8, u32)> {
        let have = Bitfield::new(n);
        let writing = HashSet::new();
        let want = Wanted {
            have: &have,
            writing: &writing,
            in_flight,
        };
        chunk_requests(&want, holders, limits, &mut StdRng::seed_from_u64(seed))
    }

    #[test]
    fn a_peer_is_asked_for_its_rarest_chunks_first() {
        // Rarity: chunk 0 is held by 4 peers, 1 by 3, 2 by 2, 3 and 4 by 1. Only `A` may
        // be asked (max_peers 1, and it is the active one).
        let all = bits(5, &[0, 1, 2, 3, 4]);
        let (b, c, d) = (bits(5, &[0, 1, 2]), bits(5, &[0, 1]), bits(5, &[0]));
        let holders = [holder(B, &b), holder(A, &all), holder(C, &c), holder(D, &d)];
        for seed in 0..16 {
            let sends = plan(5, &[(A, 4)], &holders, limits(1, 5), seed);
            assert_eq!(sends, vec![(A, 3), (A, 2), (A, 1), (A, 0)], "seed {seed}");
        }
    }

    #[test]
    fn ties_among_the_rarest_chunks_and_least_loaded_peers_are_broken_at_random() {
        let all = bits(4, &[0, 1, 2, 3]);
        let holders = [holder(A, &all), holder(B, &all)];
        let mut chunks = HashSet::new();
        let mut peers = HashSet::new();
        for seed in 0..64 {
            let sends = plan(4, &[], &holders, limits(1, 1), seed);
            assert_eq!(sends.len(), 1);
            peers.insert(sends[0].0);
            chunks.insert(sends[0].1);
        }
        assert_eq!(peers, HashSet::from([A, B]));
        assert_eq!(chunks, HashSet::from([0, 1, 2, 3]));
    }

    #[test]
    fn the_least_loaded_peer_is_filled_first() {
        let all = bits(4, &[0, 1, 2, 3]);
        let holders = [holder(A, &all), holder(B, &all)];
        for seed in 0..16 {
            let sends = plan(4, &[(A, 0)], &holders, limits(2, 2), seed);
            let who: Vec<u8> = sends.iter().map(|s| s.0).collect();
            assert_eq!(who, vec![B, B, A], "seed {seed}");
            let asked: HashSet<u32> = sends.iter().map(|s| s.1).collect();
            assert_eq!(asked, HashSet::from([1, 2, 3]), "seed {seed}");
        }
    }

    #[test]
    fn endgame_asks_a_second_peer_for_the_least_asked_chunk_and_never_a_third() {
        let both = bits(3, &[0, 1, 2]);
        let holders = [holder(A, &both), holder(B, &both), holder(C, &both)];
        // Every chunk is asked of `A`, and chunk 1 of `C` too: `B` duplicates the
        // least-asked chunks, lowest index first; nobody is asked for chunk 1 again and
        // `A` and `C` are not asked twice for the same chunk.
        let in_flight = [(A, 0), (A, 1), (A, 2), (C, 1)];
        for seed in 0..16 {
            let sends = plan(3, &in_flight, &holders, limits(4, 4), seed);
            let mut sends_sorted = sends.clone();
            sends_sorted.sort();
            assert_eq!(sends_sorted, vec![(B, 0), (B, 2)], "seed {seed}");
        }
        // Once each chunk is asked of MAX_ASKED peers, nothing more is sent.
        let in_flight = [(A, 0), (A, 1), (A, 2), (B, 0), (C, 1), (C, 2)];
        assert!(plan(3, &in_flight, &holders, limits(4, 4), 0).is_empty());
    }

    #[test]
    fn endgame_waits_until_every_missing_chunk_is_asked() {
        // Chunk 2 is held only by `C`, which may not be asked (max_peers 2 and `A`, `B`
        // are active): `A` and `B`, with free slots, duplicate nothing meanwhile.
        let ab = bits(3, &[0, 1]);
        let c = bits(3, &[2]);
        let holders = [holder(A, &ab), holder(B, &ab), holder(C, &c)];
        for seed in 0..16 {
            assert!(plan(3, &[(A, 0), (B, 1)], &holders, limits(2, 4), seed).is_empty());
        }
        // With `C` allowed, chunk 2 is asked; duplicates may follow it.
        let sends = plan(3, &[(A, 0), (B, 1)], &holders, limits(3, 4), 0);
        assert!(sends.contains(&(C, 2)), "{sends:?}");
    }

    #[test]
    fn a_peer_is_not_asked_for_a_chunk_it_alone_is_already_asked_for() {
        let one = bits(1, &[0]);
        let holders = [holder(A, &one)];
        assert!(plan(1, &[(A, 0)], &holders, limits(4, 4), 0).is_empty());
    }

    #[test]
    fn peers_with_nothing_useful_are_not_asked() {
        // Chunk 0 is here, chunk 1 is being written, chunk 2 nobody holds.
        let have = bits(3, &[0]);
        let writing = HashSet::from([1]);
        let want = Wanted {
            have: &have,
            writing: &writing,
            in_flight: &[],
        };
        let (a, b) = (bits(3, &[0]), bits(3, &[0, 1]));
        let holders = [holder(A, &a), holder(B, &b)];
        let mut rng = StdRng::seed_from_u64(0);
        assert!(chunk_requests(&want, &holders, limits(4, 4), &mut rng).is_empty());
        assert!(chunk_requests(&want, &[], limits(4, 4), &mut rng).is_empty());
        // Complete here: nothing to ask whatever the peers hold.
        let full = bits(3, &[0, 1, 2]);
        let want = Wanted {
            have: &full,
            writing: &HashSet::new(),
            in_flight: &[],
        };
        let holders = [holder(A, &full)];
        assert!(chunk_requests(&want, &holders, limits(4, 4), &mut rng).is_empty());
    }

    #[test]
    fn requests_per_peer_caps_each_peer_counting_those_in_flight() {
        let all = bits(10, &(0..10).collect::<Vec<_>>());
        let holders = [holder(A, &all), holder(B, &all)];
        for seed in 0..16 {
            let sends = plan(10, &[], &holders, limits(4, 3), seed);
            assert_eq!(sends.iter().filter(|s| s.0 == A).count(), 3);
            assert_eq!(sends.iter().filter(|s| s.0 == B).count(), 3);
            let asked: HashSet<u32> = sends.iter().map(|s| s.1).collect();
            assert_eq!(asked.len(), 6, "no duplicates before endgame");
            let sends = plan(10, &[(A, 0), (A, 1)], &holders, limits(4, 3), seed);
            assert_eq!(sends.iter().filter(|s| s.0 == A).count(), 1);
            assert_eq!(sends.iter().filter(|s| s.0 == B).count(), 3);
            let sends = plan(10, &[(A, 0), (A, 1), (A, 2)], &holders, limits(4, 3), seed);
            assert!(sends.iter().all(|s| s.0 == B), "{sends:?}");
        }
    }

    #[test]
    fn max_peers_caps_the_peers_with_requests_in_flight() {
        let all = bits(10, &(0..10).collect::<Vec<_>>());
        let holders = [holder(A, &all), holder(B, &all), holder(C, &all)];
        for seed in 0..16 {
            let sends = plan(10, &[], &holders, limits(2, 2), seed);
            let peers: HashSet<u8> = sends.iter().map(|s| s.0).collect();
            assert_eq!(peers.len(), 2, "{sends:?}");
            assert_eq!(sends.len(), 4);
            // An active peer keeps its place: only `C` is asked.
            let sends = plan(10, &[(C, 0)], &holders, limits(1, 2), seed);
            assert_eq!(sends.len(), 1);
            assert_eq!(sends[0].0, C);
        }
    }

    #[test]
    fn random_downloads_keep_every_limit() {
        let mut rng = StdRng::seed_from_u64(7);
        for round in 0..200 {
            let n = rng.random_range(1..40);
            let random_bits = |rng: &mut StdRng, p: f64| {
                let set: Vec<u32> = (0..n).filter(|_| rng.random_bool(p)).collect();
                bits(n, &set)
            };
            let have = random_bits(&mut rng, 0.3);
            let writing: HashSet<u32> = (0..n).filter(|_| rng.random_bool(0.05)).collect();
            let peers: Vec<(u8, Bitfield)> = (0..rng.random_range(0..6))
                .map(|p| (p, random_bits(&mut rng, 0.5)))
                .collect();
            let holders: Vec<Holder<'_, u8>> = peers.iter().map(|(p, b)| holder(*p, b)).collect();
            let lim = limits(rng.random_range(1..4), rng.random_range(1..5));
            // Requests in flight as a previous plan would have left them.
            let want = Wanted {
                have: &have,
                writing: &writing,
                in_flight: &[],
            };
            let in_flight = chunk_requests(&want, &holders, lim, &mut rng);
            let in_flight: Vec<(u8, u32)> = in_flight
                .into_iter()
                .filter(|_| rng.random_bool(0.7))
                .collect();
            let want = Wanted {
                have: &have,
                writing: &writing,
                in_flight: &in_flight,
            };
            let sends = chunk_requests(&want, &holders, lim, &mut rng);
            let all: Vec<(u8, u32)> = in_flight.iter().chain(&sends).copied().collect();
            let distinct: HashSet<(u8, u32)> = all.iter().copied().collect();
            assert_eq!(
                distinct.len(),
                all.len(),
                "round {round}: a pair asked twice"
            );
            let active: HashSet<u8> = all.iter().map(|s| s.0).collect();
            assert!(active.len() <= lim.max_peers, "round {round}");
            for (p, b) in &peers {
                let load = all.iter().filter(|s| s.0 == *p).count();
                assert!(load <= lim.requests_per_peer, "round {round}");
                for (_, i) in sends.iter().filter(|s| s.0 == *p) {
                    assert!(b.get(*i) && !have.get(*i) && !writing.contains(i));
                }
            }
            for i in 0..n {
                assert!(all.iter().filter(|s| s.1 == i).count() <= MAX_ASKED);
            }
        }
    }

    #[test]
    fn the_chunk_list_is_asked_of_a_peer_that_announced_it() {
        let none = bits(2, &[]);
        let mut holders = [holder(A, &none), holder(B, &none), holder(C, &none)];
        holders[1].has_list = false;
        let mut rng = StdRng::seed_from_u64(3);
        let picked: HashSet<u8> = (0..64)
            .filter_map(|_| list_source(&holders, &mut rng))
            .collect();
        assert_eq!(picked, HashSet::from([A, C]));
        for h in &mut holders {
            h.has_list = false;
        }
        assert_eq!(list_source(&holders, &mut rng), None);
    }
}
