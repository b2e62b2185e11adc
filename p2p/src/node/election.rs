//! The origin election for one artifact (docs/p2p.md, "Exactly one origin download"):
//! the lowest peer id among this unit and its live roster peers, minus those passed over,
//! fetches from origin; a fetcher that sees a lower live fetcher stops; a fetcher under
//! which no new chunk appears in the store for the stall timeout is passed over, and
//! when everyone was passed over a new round starts.
//!
//! A pure state machine, generic over the peer id: the node hands it what it sees on each
//! tick as values and acts on the [`Decision`] (starting or stopping its origin task), so
//! the rules are tested here without a swarm or an HTTP origin.

use std::collections::HashSet;
use std::hash::Hash;
use std::time::{Duration, Instant};

use crate::chunks::Bitfield;

/// The election's clocks: [`crate::P2pConfig`]'s `election_delay` and `stall_timeout`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timing {
    /// How long after the offer (or restart) to wait before deciding, so the peers'
    /// announcements have arrived.
    pub delay: Duration,
    /// How long the fetcher may go without a new chunk in the store before it is passed
    /// over.
    pub stall: Duration,
}

/// A live (connected, admitted) roster peer as the election sees it.
pub(super) struct Candidate<'a, P> {
    pub peer: P,
    /// Whether it has announced anything since its connection came up: until every live
    /// peer has, the election waits rather than decide on an empty view of one.
    pub heard: bool,
    /// Whether its last announcement of the artifact said it fetches from origin.
    pub fetching: bool,
    /// The chunks it announced for the artifact, if it announced any.
    pub have: Option<&'a Bitfield>,
}

/// What this unit sees of one artifact at one moment.
pub(super) struct View<'a, P> {
    /// This unit.
    pub local: P,
    /// When the download began here (the offer, or the restart).
    pub started: Instant,
    pub now: Instant,
    /// The chunks present here.
    pub have: &'a Bitfield,
    /// Whether this unit's origin download runs.
    pub fetching: bool,
    /// Whether the download failed (every live unit's origin attempts did): no more
    /// elections.
    pub failed: bool,
    pub live: &'a [Candidate<'a, P>],
}

/// What the node should do after one [`Election::decide`].
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Decision<P> {
    /// Too early, failed, or a live peer has not announced yet: nothing.
    Wait,
    /// This unit's origin download runs and no lower live unit fetches: keep it.
    Keep,
    /// A lower live unit, not passed over, fetches from origin: stop ours.
    Stop,
    /// Every chunk is present somewhere in the store: nobody needs origin.
    Complete,
    /// This unit is the fetcher: start the origin download for the chunks not in
    /// `elsewhere` (the union of this unit's and its live peers' chunks).
    Fetch {
        /// Chunks present on this unit or a live peer.
        elsewhere: Bitfield,
    },
    /// Another unit is the fetcher and has not stalled: nothing.
    Follow(P),
    /// The fetcher made no progress for [`Timing::stall`]: it is passed over.
    PassOver(P),
    /// Everyone, this unit included, was passed over: the next round starts from all.
    NewRound,
}

/// One artifact's election state. Changed only by [`Election::decide`] and the two
/// events the node reports: progress ([`Election::progressed`]) and this unit's origin
/// attempts giving up ([`Election::pass_turn`]).
#[derive(Debug)]
pub(super) struct Election<P> {
    /// The unit this one believes fetches from origin (none when the store has it all).
    leader: Option<P>,
    /// Units passed over in this round (stalled, or their origin attempts failed).
    excluded: HashSet<P>,
    /// When the store last got closer to complete (or the leader changed): the stall
    /// clock.
    last_progress: Instant,
    /// Chunks in the union of this unit's and its live peers' bitfields at the last
    /// progress.
    last_union: u32,
}

impl<P: Copy + Ord + Hash> Election<P> {
    /// A new election for a download that began `now` with `present` chunks here.
    pub(super) fn new(now: Instant, present: u32) -> Election<P> {
        Election {
            leader: None,
            excluded: HashSet::new(),
            last_progress: now,
            last_union: present,
        }
    }

    /// The unit this one believes fetches from origin.
    pub(super) fn leader(&self) -> Option<P> {
        self.leader
    }

    /// A chunk arrived here: the fetcher is not stalled.
    pub(super) fn progressed(&mut self, now: Instant) {
        self.last_progress = now;
    }

    /// This unit's origin attempts gave up: it passes its turn (the next live unit
    /// tries). Returns whether every live unit has now tried, i.e. the offer is bad or
    /// origin is down.
    pub(super) fn pass_turn(&mut self, local: P, live: &[P]) -> bool {
        self.excluded.insert(local);
        live.iter().all(|p| self.excluded.contains(p))
    }

    /// One election step on what this unit sees now.
    pub(super) fn decide(&mut self, view: &View<'_, P>, timing: Timing) -> Decision<P> {
        let now = view.now;
        let since = now.duration_since(view.started);
        if view.failed || since < timing.delay {
            return Decision::Wait;
        }
        let mut union = view.have.clone();
        for b in view.live.iter().filter_map(|c| c.have) {
            for i in 0..b.len() {
                if b.get(i) {
                    union.set(i);
                }
            }
        }
        // Decide only on a full view: every live peer has announced since it connected
        // (bounded: after 4 election delays, decide anyway).
        let unheard = view.live.iter().any(|c| !c.heard);
        if unheard && since < 4 * timing.delay {
            return Decision::Wait;
        }
        let lower_fetcher = view
            .live
            .iter()
            .any(|c| c.peer < view.local && !self.excluded.contains(&c.peer) && c.fetching);
        let leader = std::iter::once(view.local)
            .chain(view.live.iter().map(|c| c.peer))
            .filter(|p| !self.excluded.contains(p))
            .min();
        if view.fetching {
            return if lower_fetcher {
                Decision::Stop
            } else {
                Decision::Keep
            };
        }
        if union.is_full() {
            self.leader = None;
            return Decision::Complete;
        }
        if leader != self.leader {
            self.leader = leader;
            self.last_progress = now;
        }
        if union.count() > self.last_union {
            self.last_union = union.count();
            self.last_progress = now;
        }
        match leader {
            Some(l) if l == view.local => {
                self.last_progress = now;
                Decision::Fetch { elsewhere: union }
            }
            Some(l) => {
                if now.duration_since(self.last_progress) > timing.stall {
                    self.excluded.insert(l);
                    self.last_progress = now;
                    Decision::PassOver(l)
                } else {
                    Decision::Follow(l)
                }
            }
            None => {
                self.excluded.clear();
                Decision::NewRound
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing {
        delay: Duration::from_secs(1),
        stall: Duration::from_secs(10),
    };
    const SEC: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    fn bits(len: u32, set: &[u32]) -> Bitfield {
        let mut b = Bitfield::new(len);
        for i in set {
            b.set(*i);
        }
        b
    }

    fn peer(peer: u8, have: Option<&Bitfield>) -> Candidate<'_, u8> {
        Candidate {
            peer,
            heard: true,
            fetching: false,
            have,
        }
    }

    /// One step for `local` at `start + at`, with nothing of its own running.
    fn step(
        e: &mut Election<u8>,
        local: u8,
        start: Instant,
        at: Duration,
        have: &Bitfield,
        live: &[Candidate<'_, u8>],
    ) -> Decision<u8> {
        let view = View {
            local,
            started: start,
            now: start + at,
            have,
            fetching: false,
            failed: false,
            live,
        };
        e.decide(&view, T)
    }

    #[test]
    fn nothing_is_decided_before_the_delay_or_after_a_failure() {
        let start = Instant::now();
        let have = bits(4, &[]);
        let mut e = Election::new(start, 0);
        assert_eq!(
            step(&mut e, 1, start, T.delay - MS, &have, &[]),
            Decision::Wait
        );
        let failed = View {
            local: 1,
            started: start,
            now: start + 5 * SEC,
            have: &have,
            fetching: false,
            failed: true,
            live: &[],
        };
        assert_eq!(e.decide(&failed, T), Decision::Wait);
        assert_eq!(e.leader(), None);
        assert_eq!(
            step(&mut e, 1, start, T.delay, &have, &[]),
            Decision::Fetch {
                elsewhere: have.clone()
            }
        );
    }

    #[test]
    fn the_lowest_live_unit_fetches_with_the_union_of_what_the_store_has() {
        let start = Instant::now();
        let mine = bits(6, &[0]);
        let theirs = bits(6, &[1, 4]);
        // This unit (1) is the lowest: it fetches what nobody has.
        let mut e = Election::new(start, 1);
        let live = [peer(2, Some(&theirs)), peer(3, None)];
        assert_eq!(
            step(&mut e, 1, start, T.delay, &mine, &live),
            Decision::Fetch {
                elsewhere: bits(6, &[0, 1, 4])
            }
        );
        assert_eq!(e.leader(), Some(1));
        // This unit (3) is not: it follows the lowest live one.
        let mut e = Election::new(start, 1);
        let live = [peer(2, Some(&theirs)), peer(1, None)];
        assert_eq!(
            step(&mut e, 3, start, T.delay, &mine, &live),
            Decision::Follow(1)
        );
        assert_eq!(e.leader(), Some(1));
    }

    #[test]
    fn an_unheard_peer_holds_the_decision_for_at_most_four_delays() {
        let start = Instant::now();
        let have = bits(4, &[]);
        let mut e = Election::new(start, 0);
        let mut quiet = peer(0, None);
        quiet.heard = false;
        let live = [quiet];
        assert_eq!(
            step(&mut e, 1, start, 2 * SEC, &have, &live),
            Decision::Wait
        );
        assert_eq!(e.leader(), None);
        assert_eq!(
            step(&mut e, 1, start, 4 * T.delay, &have, &live),
            Decision::Follow(0)
        );
    }

    #[test]
    fn nobody_fetches_when_the_store_has_every_chunk() {
        let start = Instant::now();
        let mine = bits(4, &[0, 1]);
        let a = bits(4, &[2]);
        let b = bits(4, &[3]);
        let mut e = Election::new(start, 2);
        let live = [peer(0, Some(&a)), peer(2, Some(&b))];
        assert_eq!(
            step(&mut e, 1, start, T.delay, &mine, &live[..1]),
            Decision::Follow(0)
        );
        assert_eq!(
            step(&mut e, 1, start, 2 * SEC, &mine, &live),
            Decision::Complete
        );
        assert_eq!(e.leader(), None);
    }

    #[test]
    fn a_running_fetcher_stops_only_for_a_lower_live_unpassed_fetcher() {
        let start = Instant::now();
        let have = bits(4, &[]);
        let running = |e: &mut Election<u8>, live: &[Candidate<'_, u8>]| {
            let view = View {
                local: 5,
                started: start,
                now: start + 2 * SEC,
                have: &have,
                fetching: true,
                failed: false,
                live,
            };
            e.decide(&view, T)
        };
        let fetching = |p: u8| Candidate {
            fetching: true,
            ..peer(p, None)
        };
        let mut e = Election::new(start, 0);
        assert_eq!(running(&mut e, &[peer(3, None)]), Decision::Keep);
        assert_eq!(running(&mut e, &[fetching(7)]), Decision::Keep);
        assert_eq!(running(&mut e, &[fetching(3)]), Decision::Stop);
        // A lower fetcher that was passed over does not stop ours.
        let mut e = Election::new(start, 0);
        assert!(!e.pass_turn(3, &[3, 7]));
        assert_eq!(running(&mut e, &[fetching(3)]), Decision::Keep);
    }

    #[test]
    fn a_stalled_fetcher_is_passed_over_and_the_next_lowest_takes_over() {
        let start = Instant::now();
        let have = bits(4, &[]);
        let mut e = Election::new(start, 0);
        let live = [peer(1, None)];
        assert_eq!(
            step(&mut e, 2, start, T.delay, &have, &live),
            Decision::Follow(1)
        );
        // The stall clock started when 1 became the leader.
        assert_eq!(
            step(&mut e, 2, start, T.delay + T.stall, &have, &live),
            Decision::Follow(1)
        );
        assert_eq!(
            step(&mut e, 2, start, T.delay + T.stall + MS, &have, &live),
            Decision::PassOver(1)
        );
        assert_eq!(
            step(&mut e, 2, start, T.delay + T.stall + 2 * MS, &have, &live),
            Decision::Fetch {
                elsewhere: have.clone()
            }
        );
        assert_eq!(e.leader(), Some(2));
    }

    #[test]
    fn new_chunks_in_the_store_reset_the_stall_clock() {
        let start = Instant::now();
        let have = bits(4, &[]);
        let before = bits(4, &[0]);
        let after = bits(4, &[0, 1]);
        let mut e = Election::new(start, 0);
        assert_eq!(
            step(&mut e, 2, start, T.delay, &have, &[peer(1, Some(&before))]),
            Decision::Follow(1)
        );
        // A new chunk in a peer's announcement restarts the clock.
        let at = T.delay + 5 * SEC;
        let live = [peer(1, Some(&after))];
        assert_eq!(
            step(&mut e, 2, start, at, &have, &live),
            Decision::Follow(1)
        );
        assert_eq!(
            step(&mut e, 2, start, at + T.stall, &have, &live),
            Decision::Follow(1)
        );
        // So does a chunk arriving here.
        e.progressed(start + at + T.stall);
        assert_eq!(
            step(&mut e, 2, start, at + 2 * T.stall, &have, &live),
            Decision::Follow(1)
        );
        // The same chunks announced again are no progress.
        assert_eq!(
            step(&mut e, 2, start, at + 2 * T.stall + MS, &have, &live),
            Decision::PassOver(1)
        );
        assert_eq!(
            step(&mut e, 2, start, at + 2 * T.stall + 2 * MS, &have, &live),
            Decision::Fetch {
                elsewhere: after.clone()
            }
        );
    }

    #[test]
    fn when_everyone_was_passed_over_a_new_round_starts() {
        let start = Instant::now();
        let have = bits(4, &[]);
        let live = [peer(1, None)];
        let mut e = Election::new(start, 0);
        // This unit's origin attempts failed; 1 has not tried yet.
        assert!(!e.pass_turn(2, &[1]));
        assert_eq!(
            step(&mut e, 2, start, T.delay, &have, &live),
            Decision::Follow(1)
        );
        assert_eq!(
            step(&mut e, 2, start, T.delay + T.stall + MS, &have, &live),
            Decision::PassOver(1)
        );
        assert_eq!(
            step(&mut e, 2, start, T.delay + T.stall + 2 * MS, &have, &live),
            Decision::NewRound
        );
        assert_eq!(
            step(&mut e, 2, start, T.delay + T.stall + 3 * MS, &have, &live),
            Decision::Follow(1)
        );
    }

    #[test]
    fn passing_the_turn_reports_when_every_live_unit_has_tried() {
        let start = Instant::now();
        let mut e: Election<u8> = Election::new(start, 0);
        // Alone: this unit was the only one to try.
        assert!(e.pass_turn(2, &[]));
        let mut e: Election<u8> = Election::new(start, 0);
        assert!(!e.pass_turn(2, &[1, 3]));
        assert!(!e.pass_turn(3, &[1, 2]));
        assert!(e.pass_turn(1, &[2, 3]));
    }
}
