//! The chunk protocol with peers (request-response, `crate::wire`): serving their
//! requests from the store, asking them for chunk lists and chunks as the scheduler
//! plans, handling their answers and the blocking writers' results, and banning a peer
//! that serves bad data.

use std::time::Instant;

use libp2p::PeerId;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};

use super::scheduler::{self, Holder, Limits, Wanted};
use super::{Internal, Node, PeerRecord, Pending};
use crate::chunks::{Bitfield, Root};
use crate::store::{StoreError, Written};
use crate::wire::{Request, Response};

impl Node {
    pub(super) fn on_chunks(&mut self, ev: request_response::Event<Request, Response>) {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.serve(peer, request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => self.on_response(peer, request_id, response),
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                tracing::debug!(%peer, %error, "Chunk request failed");
                self.clear_pending(request_id);
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "Inbound chunk request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn serve(&mut self, peer: PeerId, request: Request, channel: ResponseChannel<Response>) {
        tracing::trace!(%peer, ?request, "Serving a request");
        if self.swarm.behaviour().admission.check(&peer).is_err() {
            let _ = self
                .swarm
                .behaviour_mut()
                .chunks
                .send_response(channel, Response::NotFound);
            return;
        }
        let store = self.store.clone();
        let tx = self.internal_tx.clone();
        #[cfg(feature = "test-utils")]
        let fault = self.cfg.fault;
        tokio::task::spawn_blocking(move || {
            let (root, response) = match request {
                Request::ChunkList(root) => (
                    root,
                    match (store.info(&root), store.chunk_list(&root)) {
                        (Some(i), Some(l)) => Response::ChunkList {
                            size: i.size,
                            bytes: l.to_bytes(),
                        },
                        _ => Response::NotFound,
                    },
                ),
                #[cfg(feature = "test-utils")]
                Request::Chunk(root, _) if fault == Some(crate::config::ServeFault::DenyChunks) => {
                    (root, Response::NotFound)
                }
                Request::Chunk(root, index) => (
                    root,
                    match store.read_chunk(&root, index) {
                        #[allow(unused_mut)]
                        Ok(mut data) => {
                            #[cfg(feature = "test-utils")]
                            match fault {
                                Some(crate::config::ServeFault::CorruptChunks) => data[0] ^= 0xff,
                                Some(crate::config::ServeFault::TruncateChunks) => {
                                    data.pop();
                                }
                                Some(
                                    crate::config::ServeFault::DenyChunks
                                    | crate::config::ServeFault::FloodAnnouncements,
                                )
                                | None => {}
                            }
                            Response::Chunk { index, data }
                        }
                        Err(_) => Response::NotFound,
                    },
                ),
            };
            let _ = tx.blocking_send(Internal::Serve {
                channel,
                response,
                root,
            });
        });
    }

    fn clear_pending(&mut self, id: OutboundRequestId) -> Option<(PeerId, Pending)> {
        let (peer, what) = self.pending.remove(&id)?;
        match &what {
            Pending::List(root) => {
                if let Some(d) = self.downloads.get_mut(root) {
                    d.list_request = None;
                }
            }
            Pending::Chunk(root, index) => {
                if let Some(d) = self.downloads.get_mut(root)
                    && let Some(v) = d.in_flight.get_mut(index)
                {
                    v.retain(|(_, rid, _)| *rid != id);
                    if v.is_empty() {
                        d.in_flight.remove(index);
                    }
                }
            }
        }
        Some((peer, what))
    }

    fn on_response(&mut self, peer: PeerId, id: OutboundRequestId, response: Response) {
        let Some((_, what)) = self.clear_pending(id) else {
            return;
        };
        let store = self.store.clone();
        let tx = self.internal_tx.clone();
        match (what, response) {
            (Pending::List(root), Response::ChunkList { size, bytes }) => {
                tokio::task::spawn_blocking(move || {
                    let result = match store.info(&root) {
                        Some(i) if i.size != size => {
                            Err(StoreError::Chunk(crate::chunks::ChunkError::BadSize(size)))
                        }
                        _ => store.set_chunk_list(root, &bytes),
                    };
                    let _ = tx.blocking_send(Internal::PeerList { peer, root, result });
                });
            }
            (Pending::Chunk(root, index), Response::Chunk { index: got, data }) => {
                let Some(d) = self.downloads.get_mut(&root) else {
                    return;
                };
                if got != index {
                    self.punish(
                        peer,
                        root,
                        &format!("answered chunk {got} for chunk {index}"),
                    );
                    return;
                }
                if d.have.get(index) || !d.pending_writes.insert(index) {
                    return; // endgame duplicate
                }
                let bytes = data.len() as u64;
                tokio::task::spawn_blocking(move || {
                    let result = store.write_chunk(root, index, &data);
                    let _ = tx.blocking_send(Internal::PeerChunk {
                        peer,
                        root,
                        index,
                        bytes,
                        result,
                    });
                });
            }
            (Pending::Chunk(root, index), Response::NotFound) => {
                // A stale announcement: forget that the peer has it. Denying what it
                // announced, announcement after announcement, is lying: banned (one
                // denial counts per announcement, so the other requests in flight to
                // a peer that really dropped the artifact count no further).
                let mut lies = 0;
                if let Some(r) = self.peers.get_mut(&peer)
                    && let Some((bits, _)) = r.have.get_mut(&root)
                {
                    if bits.get(index) && r.denied_since_announce.insert(root) {
                        r.denied_chunks += 1;
                        lies = r.denied_chunks;
                    }
                    let mut fresh = Bitfield::new(bits.len());
                    for i in (0..bits.len()).filter(|i| bits.get(*i) && *i != index) {
                        fresh.set(i);
                    }
                    *bits = fresh;
                }
                if lies >= super::MAX_DENIED_CHUNKS {
                    self.punish(
                        peer,
                        root,
                        &format!("denied chunks it had announced, after {lies} announcements"),
                    );
                }
                self.schedule(root);
            }
            (Pending::List(root), Response::NotFound) => {
                if let Some(r) = self.peers.get_mut(&peer)
                    && let Some(h) = r.have.get_mut(&root)
                {
                    h.1 = false;
                }
            }
            (Pending::List(root) | Pending::Chunk(root, _), _) => {
                self.punish(peer, root, "answered with the wrong response kind");
            }
        }
    }

    fn punish(&mut self, peer: PeerId, root: Root, why: &str) {
        tracing::warn!(%peer, %root, why, "Banning a peer that served bad data");
        self.ban(peer);
        self.peers
            .entry(peer)
            .or_insert_with(PeerRecord::new)
            .bad_chunks += 1;
        self.metrics.entry(root).or_default().rejected_chunks += 1;
    }

    /// Bans `peer` for `ban_duration`, disconnects it, forgets what it announced and
    /// frees the requests in flight to it.
    pub(super) fn ban(&mut self, peer: PeerId) {
        let until = Instant::now() + self.cfg.ban_duration;
        self.swarm.behaviour_mut().admission.ban(peer, until);
        let _ = self.swarm.disconnect_peer_id(peer);
        let r = self.peers.entry(peer).or_insert_with(PeerRecord::new);
        r.have.clear();
        r.fetching.clear();
        // Requests in flight to it are lost with the connection; free them now.
        let ids: Vec<OutboundRequestId> = self
            .pending
            .iter()
            .filter(|(_, (p, _))| *p == peer)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.clear_pending(id);
        }
    }

    pub(super) fn on_internal(&mut self, i: Internal) {
        match i {
            Internal::Serve {
                channel,
                response,
                root,
            } => {
                if let Response::Chunk { data, .. } = &response {
                    self.metrics.entry(root).or_default().served_bytes += data.len() as u64;
                }
                tracing::trace!(%root, "Sending a response");
                if self
                    .swarm
                    .behaviour_mut()
                    .chunks
                    .send_response(channel, response)
                    .is_err()
                {
                    tracing::debug!(%root, "The requester went away before the response");
                }
            }
            Internal::PeerChunk {
                peer,
                root,
                index,
                bytes,
                result,
            } => {
                if let Some(d) = self.downloads.get_mut(&root) {
                    d.pending_writes.remove(&index);
                }
                match result {
                    Ok(w) => {
                        if w == Written::New {
                            self.metrics.entry(root).or_default().peer_bytes += bytes;
                        }
                        self.chunk_arrived(root, index);
                    }
                    Err(StoreError::Chunk(e)) => self.punish(peer, root, &e.to_string()),
                    Err(e) => tracing::error!(%root, index, error = %e, "Failed to store a chunk"),
                }
                self.schedule(root);
            }
            Internal::PeerList { peer, root, result } => {
                if let Some(d) = self.downloads.get_mut(&root) {
                    d.list_request = None;
                }
                match result {
                    Ok(list) => {
                        if let Some(d) = self.downloads.get_mut(&root) {
                            d.list = Some(list);
                            d.dirty = true;
                        }
                        self.schedule(root);
                    }
                    Err(StoreError::Chunk(e)) => self.punish(peer, root, &e.to_string()),
                    Err(e) => tracing::error!(%root, error = %e, "Failed to store a chunk list"),
                }
            }
        }
    }

    /// Asks peers for what `root`'s download lacks: the chunk list from a peer that has
    /// it (unless one is asked already or origin is fetching it), else the chunks the
    /// scheduler plans.
    pub(super) fn schedule(&mut self, root: Root) {
        let Some(d) = self.downloads.get(&root) else {
            return;
        };
        let now = Instant::now();
        let holders: Vec<Holder<'_, PeerId>> = self
            .peers
            .iter()
            .filter(|(p, _)| self.usable_peer(p))
            .filter_map(|(p, r)| {
                r.have.get(&root).map(|(b, l)| Holder {
                    peer: *p,
                    have: b,
                    has_list: *l,
                })
            })
            .collect();
        if d.list.is_none() {
            let busy = d
                .list_request
                .is_some_and(|(_, t)| now.duration_since(t) < self.cfg.request_timeout);
            if busy || d.origin.is_some() {
                return;
            }
            let Some(p) = scheduler::list_source(&holders, &mut rand::rng()) else {
                return;
            };
            let id = self
                .swarm
                .behaviour_mut()
                .chunks
                .send_request(&p, Request::ChunkList(root));
            self.pending.insert(id, (p, Pending::List(root)));
            if let Some(d) = self.downloads.get_mut(&root) {
                d.list_request = Some((p, now));
            }
            return;
        }
        let in_flight: Vec<(PeerId, u32)> = d
            .in_flight
            .iter()
            .flat_map(|(i, v)| v.iter().map(|(p, _, _)| (*p, *i)))
            .collect();
        let want = Wanted {
            have: &d.have,
            writing: &d.pending_writes,
            in_flight: &in_flight,
        };
        let limits = Limits {
            max_peers: self.cfg.max_peers,
            requests_per_peer: self.cfg.requests_per_peer,
        };
        let sends = scheduler::chunk_requests(&want, &holders, limits, &mut rand::rng());
        for (p, i) in sends {
            let id = self
                .swarm
                .behaviour_mut()
                .chunks
                .send_request(&p, Request::Chunk(root, i));
            self.pending.insert(id, (p, Pending::Chunk(root, i)));
            if let Some(d) = self.downloads.get_mut(&root) {
                d.in_flight.entry(i).or_default().push((p, id, now));
            }
        }
    }
}
