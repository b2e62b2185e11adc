//! One artifact's download, from the offer (or the restart) to completion: accepting
//! offers, chunks arriving from origin or peers, completion, and carrying out the origin
//! election's decisions (starting or stopping this unit's origin task).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use libp2p::PeerId;

use super::election::{Candidate, Decision, Election, Timing, View};
use super::{ANNOUNCE_MIN_GAP, Download, Node, OriginRun};
use crate::chunks::{Bitfield, Root, chunk_count};
use crate::offer::{SignedOffer, now_ms};
use crate::origin::{self, OriginEvent, OriginJob};
use crate::wire::Gossip;
use crate::{Offer, P2pError};

impl Node {
    pub(super) fn begin_download(&mut self, root: Root, size: u64, offer: Option<Offer>) {
        if self.downloads.contains_key(&root) {
            return;
        }
        let have = self
            .store
            .bitfield(&root)
            .unwrap_or_else(|| Bitfield::new(chunk_count(size)));
        let now = Instant::now();
        self.metrics.entry(root).or_default();
        self.downloads.insert(
            root,
            Download {
                offer,
                list: self.store.chunk_list(&root),
                list_request: None,
                election: Election::new(now, have.count()),
                have,
                pending_writes: HashSet::new(),
                in_flight: HashMap::new(),
                started: now,
                origin: None,
                dirty: true,
                last_announce: now - ANNOUNCE_MIN_GAP,
                error: None,
            },
        );
    }

    /// Takes an offer that came from this unit's server (`from_hq`) or from a peer's
    /// gossip, after checking HQ's signature: nothing of an offer that fails it is
    /// stored, fetched or passed on.
    pub(super) fn accept_offer(
        &mut self,
        signed: SignedOffer,
        from_hq: bool,
    ) -> Result<(), P2pError> {
        let offer = signed
            .verify(&self.cfg.hq_key, &self.roster().store_id, now_ms())?
            .clone();
        let root = offer.root;
        let known = self.store.info(&root).is_some();
        // HQ's offer takes a reference each time; a gossiped one only creates the entry.
        self.store
            .ensure(root, offer.size, Some(signed.clone()), from_hq || !known)?;
        if from_hq {
            self.publish(&Gossip::Offer { offer: signed });
        }
        if self.store.is_complete(&root) {
            self.finish(root);
        } else {
            self.begin_download(root, offer.size, Some(offer));
        }
        Ok(())
    }

    /// Whether `root` is whole on disk *and* its download is finished: chunks written
    /// by the blocking writers are in the store a moment before the node handles their
    /// completion (counting their bytes, persisting the artifact), so "complete" waits
    /// for that, and the metrics it reports are final.
    pub(super) fn is_done(&self, root: &Root) -> bool {
        self.store.is_complete(root) && !self.downloads.contains_key(root)
    }

    pub(super) fn on_origin(&mut self, root: Root, ev: OriginEvent) {
        match ev {
            OriginEvent::Bytes(n) => self.metrics.entry(root).or_default().origin_bytes += n,
            OriginEvent::ListReady => {
                if let Some(d) = self.downloads.get_mut(&root) {
                    d.list = self.store.chunk_list(&root);
                    d.dirty = true;
                }
            }
            OriginEvent::Chunk(index) => self.chunk_arrived(root, index),
            OriginEvent::Done => {
                if let Some(d) = self.downloads.get_mut(&root) {
                    d.origin = None;
                    d.dirty = true;
                }
                self.schedule(root);
            }
            OriginEvent::Failed(e) => {
                tracing::error!(%root, error = %e, "Origin download gave up");
                let live: Vec<PeerId> = self
                    .peers
                    .keys()
                    .filter(|p| self.usable_peer(p))
                    .copied()
                    .collect();
                let local = self.local;
                if let Some(d) = self.downloads.get_mut(&root) {
                    d.origin = None;
                    d.dirty = true;
                    // Pass our turn: the next live unit tries (we stay a peer fetcher).
                    if d.election.pass_turn(local, &live) {
                        // Every live unit tried: the offer is bad or origin is down.
                        d.error = Some(e.clone());
                    }
                }
                if let Some(ws) = self.waiters.remove(&root) {
                    let fail = self.downloads.get(&root).is_some_and(|d| d.error.is_some());
                    for w in ws {
                        if fail {
                            let _ = w.send(Err(P2pError::Failed(root, e.clone())));
                        } else {
                            self.waiters.entry(root).or_default().push(w);
                        }
                    }
                }
            }
        }
    }

    pub(super) fn chunk_arrived(&mut self, root: Root, index: u32) {
        let Some(d) = self.downloads.get_mut(&root) else {
            return;
        };
        d.have.set(index);
        d.dirty = true;
        d.election.progressed(Instant::now());
        if d.have.is_full() {
            self.finish(root);
        }
    }

    pub(super) fn finish(&mut self, root: Root) {
        if let Some(mut d) = self.downloads.remove(&root) {
            if let Some(o) = d.origin.take() {
                o.abort.abort();
            }
            let m = self.metrics.entry(root).or_default();
            m.time_to_complete = Some(d.started.elapsed());
            tracing::info!(%root, ms = d.started.elapsed().as_millis() as u64, origin_bytes = m.origin_bytes, peer_bytes = m.peer_bytes, "Artifact complete");
            if let Err(e) = self.store.persist(&root) {
                tracing::error!(%root, error = %e, "Failed to persist a completed artifact");
            }
            self.announce(root);
        }
        if let Some(ws) = self.waiters.remove(&root) {
            for w in ws {
                let _ = w.send(Ok(self.store.data_path(&root)));
            }
        }
    }

    /// One step of `root`'s origin election (the rules are in `election`), carried out:
    /// start this unit's origin task, stop it, or log a fetcher passed over.
    pub(super) fn elect(&mut self, root: Root) {
        let now = Instant::now();
        let Some(d) = self.downloads.get(&root) else {
            return;
        };
        let Some(offer) = d.offer.clone() else { return };
        let live: Vec<PeerId> = self
            .peers
            .keys()
            .filter(|p| self.usable_peer(p))
            .copied()
            .collect();
        let live: Vec<Candidate<'_, PeerId>> = live
            .iter()
            .map(|p| {
                let r = &self.peers[p];
                Candidate {
                    peer: *p,
                    heard: r.heard,
                    fetching: r.fetching.contains(&root),
                    have: r.have.get(&root).map(|(b, _)| b),
                }
            })
            .collect();
        let timing = Timing {
            delay: self.cfg.election_delay,
            stall: self.cfg.stall_timeout,
        };
        let Some(d) = self.downloads.get_mut(&root) else {
            return;
        };
        let view = View {
            local: self.local,
            started: d.started,
            now,
            have: &d.have,
            fetching: d.origin.is_some(),
            failed: d.error.is_some(),
            live: &live,
        };
        match d.election.decide(&view, timing) {
            Decision::Stop => {
                tracing::info!(%root, "A lower live unit fetches from origin; stopping ours");
                if let Some(o) = d.origin.take() {
                    o.abort.abort();
                }
                d.dirty = true;
            }
            Decision::Fetch { elsewhere } => {
                tracing::info!(%root, "This unit fetches from origin");
                let job = OriginJob {
                    offer,
                    store: self.store.clone(),
                    elsewhere,
                    events: self.origin_tx.clone(),
                    attempts: self.cfg.origin_attempts,
                    read_timeout: self.cfg.stall_timeout.max(Duration::from_secs(5)),
                };
                let h = tokio::spawn(origin::run(job));
                d.origin = Some(OriginRun {
                    abort: h.abort_handle(),
                });
                d.dirty = true;
            }
            Decision::PassOver(l) => {
                tracing::warn!(%root, fetcher = %l, "Origin fetcher stalled; passing it over");
            }
            Decision::Wait
            | Decision::Keep
            | Decision::Complete
            | Decision::Follow(_)
            | Decision::NewRound => {}
        }
    }
}
