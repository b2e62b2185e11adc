//! The node task's loop: it owns the swarm and reacts to commands from [`Client`]s,
//! swarm events, gossip and a 100 ms tick (elections, scheduling, announcements,
//! redials). Only this task touches the swarm and the node's state.
//!
//! [`Client`]: super::Client

use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, gossipsub, identify, mdns};

use super::{ANNOUNCE_MIN_GAP, BehaviourEvent, Command, MAX_REJECTED_KEPT, Node, PeerRecord, TICK};
use crate::P2pError;
use crate::admission::Rejected;
use crate::chunks::Root;
use crate::offer::{OfferError, SignedOffer, now_ms};
use crate::roster::SignedRoster;
use crate::wire::Gossip;

impl Node {
    pub(super) async fn run(mut self) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                cmd = self.cmd_rx.recv() => match cmd {
                    Some(Command::Shutdown(done)) => {
                        self.stop();
                        let _ = done.send(());
                        return;
                    }
                    Some(cmd) => self.on_command(cmd),
                    None => {
                        self.stop();
                        return;
                    }
                },
                ev = self.swarm.select_next_some() => self.on_swarm(ev),
                Some(i) = self.internal_rx.recv() => self.on_internal(i),
                Some((root, ev)) = self.origin_rx.recv() => self.on_origin(root, ev),
                _ = tick.tick() => self.on_tick(),
            }
        }
    }

    fn stop(&mut self) {
        for d in self.downloads.values_mut() {
            if let Some(o) = d.origin.take() {
                o.abort.abort();
            }
        }
        if let Err(e) = self.store.persist_all() {
            tracing::warn!(error = %e, "Failed to persist bitfields at shutdown");
        }
        tracing::info!(peer = %self.local, "P2p node stopped");
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Offer(offer, reply) => {
                let _ = reply.send(self.accept_offer(offer, true));
            }
            #[cfg(feature = "test-utils")]
            Command::GossipUnchecked(offer, reply) => {
                let r = self
                    .swarm
                    .behaviour_mut()
                    .gossip
                    .publish(self.topic.clone(), Gossip::Offer { offer }.encode())
                    .map(|_| ())
                    .map_err(|e| P2pError::Setup(format!("gossip publish: {e}")));
                let _ = reply.send(r);
            }
            Command::WaitComplete(root, reply) => {
                if self.is_done(&root) {
                    let _ = reply.send(Ok(self.store.data_path(&root)));
                } else if let Some(err) = self.downloads.get(&root).and_then(|d| d.error.clone()) {
                    let _ = reply.send(Err(P2pError::Failed(root, err)));
                } else if self.store.info(&root).is_none() {
                    let _ = reply.send(Err(P2pError::Offer(format!(
                        "artifact {root} is not offered"
                    ))));
                } else {
                    self.waiters.entry(root).or_default().push(reply);
                }
            }
            Command::Status(root, reply) => {
                let _ = reply.send(self.status(&root));
            }
            Command::Artifacts(reply) => {
                let all = self
                    .store
                    .list()
                    .into_iter()
                    .filter_map(|i| self.status(&i.root))
                    .collect();
                let _ = reply.send(all);
            }
            Command::Peers(reply) => {
                let _ = reply.send(self.peer_list());
            }
            Command::Release(root, reply) => {
                let _ = reply.send(self.store.release(&root).map_err(P2pError::from));
            }
            Command::Gc(reply) => {
                let r = self.store.gc().map_err(P2pError::from);
                if let Ok(rep) = &r {
                    for root in &rep.removed {
                        if let Some(mut d) = self.downloads.remove(root)
                            && let Some(o) = d.origin.take()
                        {
                            o.abort.abort();
                        }
                    }
                }
                let _ = reply.send(r);
            }
            Command::SetRoster(signed, reply) => {
                let _ = reply.send(self.set_roster(signed));
            }
            Command::Dial(addr, reply) => {
                let r = self
                    .swarm
                    .dial(addr)
                    .map_err(|e| P2pError::Setup(e.to_string()));
                let _ = reply.send(r);
            }
            Command::Shutdown(_) => {}
        }
    }

    fn set_roster(&mut self, signed: SignedRoster) -> Result<(), P2pError> {
        let roster = signed.verify(&self.cfg.hq_key)?;
        let current = self.roster();
        if roster.store_id != current.store_id {
            return Err(P2pError::Config(format!(
                "roster is for store {:?}, this unit is in {:?}",
                roster.store_id, current.store_id
            )));
        }
        if roster.version < current.version {
            return Err(P2pError::Config(format!(
                "roster version {} is older than {}",
                roster.version, current.version
            )));
        }
        let out: Vec<PeerId> = self
            .swarm
            .connected_peers()
            .filter(|p| !roster.contains(p))
            .copied()
            .collect();
        for p in roster.peers.iter().filter(|p| **p != self.local) {
            self.peers.entry(*p).or_insert_with(PeerRecord::new);
        }
        self.swarm.behaviour_mut().admission.set_roster(roster);
        for p in out {
            tracing::warn!(peer = %p, "Disconnecting a peer no longer on the roster");
            let _ = self.swarm.disconnect_peer_id(p);
        }
        Ok(())
    }

    pub(super) fn publish(&mut self, g: &Gossip) {
        if let Err(e) = self
            .swarm
            .behaviour_mut()
            .gossip
            .publish(self.topic.clone(), g.encode())
        {
            // InsufficientPeers is normal while alone.
            tracing::debug!(error = %e, "Gossip publish failed");
        }
    }

    pub(super) fn announce(&mut self, root: Root) {
        let Some(info) = self.store.info(&root) else {
            return;
        };
        self.seq += 1;
        let g = Gossip::Have {
            root,
            size: info.size,
            bitfield: Gossip::bits(&info.have),
            has_list: info.has_list,
            fetching_origin: self
                .downloads
                .get(&root)
                .is_some_and(|d| d.origin.is_some()),
            addrs: self.listen_addrs.iter().map(|a| a.to_string()).collect(),
            seq: self.seq,
        };
        self.publish(&g);
    }

    pub(super) fn redial(&mut self) {
        self.last_redial = Instant::now();
        for addr in self.cfg.static_peers.clone() {
            let peer = addr.iter().find_map(|p| match p {
                libp2p::multiaddr::Protocol::P2p(id) => Some(id),
                _ => None,
            });
            if peer.is_some_and(|p| self.swarm.is_connected(&p) || p == self.local) {
                continue;
            }
            if peer.is_none() && self.listen_addrs.contains(&addr) {
                continue;
            }
            if let Err(e) = self.swarm.dial(addr.clone()) {
                tracing::debug!(%addr, error = %e, "Dial failed");
            }
        }
        // Roster members whose addresses we learned from their announcements.
        let dial: Vec<(PeerId, Vec<Multiaddr>)> = self
            .peers
            .iter()
            .filter(|(p, r)| !r.addrs.is_empty() && !self.swarm.is_connected(p))
            .filter(|(p, _)| self.swarm.behaviour().admission.check(p).is_ok())
            .map(|(p, r)| (*p, r.addrs.clone()))
            .collect();
        for (p, addrs) in dial {
            let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(p)
                .addresses(addrs)
                .build();
            let _ = self.swarm.dial(opts);
        }
    }

    fn on_swarm(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } => {
                tracing::debug!(peer = %peer_id, "Peer connected");
                let r = self.peers.entry(peer_id).or_insert_with(PeerRecord::new);
                r.last_seen = Some(Instant::now());
                if num_established.get() == 1 {
                    r.heard = false;
                }
                let addr = endpoint.get_remote_address().clone();
                if endpoint.is_dialer() && !r.addrs.contains(&addr) && r.addrs.len() < 8 {
                    r.addrs.push(addr);
                }
                // Tell the newcomer what we have.
                self.last_full_announce = Instant::now() - self.cfg.announce_interval;
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                tracing::info!(peer = %peer_id, "Peer disconnected");
                if let Some(r) = self.peers.get_mut(&peer_id) {
                    r.fetching.clear();
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Admission(Rejected { peer, addr, reason })) => {
                tracing::warn!(%peer, %addr, %reason, "Refused a connection");
                if !self.roster().contains(&peer) {
                    if !self.peers.contains_key(&peer) && self.peers.len() > 256 + MAX_REJECTED_KEPT
                    {
                        return;
                    }
                    let r = self.peers.entry(peer).or_insert_with(PeerRecord::new);
                    r.rejected = true;
                    r.last_seen = Some(Instant::now());
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossip(gossipsub::Event::Message {
                message,
                ..
            })) => {
                let Some(source) = message.source else { return };
                self.on_gossip(source, &message.data);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Chunks(ev)) => self.on_chunks(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(list))) => {
                for (peer, addr) in list {
                    if self.swarm.behaviour().admission.check(&peer).is_ok()
                        && !self.swarm.is_connected(&peer)
                    {
                        let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                            .addresses(vec![addr])
                            .build();
                        let _ = self.swarm.dial(opts);
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                tracing::debug!(peer = %peer_id, agent = %info.agent_version, "Identified peer");
            }
            SwarmEvent::NewListenAddr { address, .. } if !self.listen_addrs.contains(&address) => {
                self.listen_addrs.push(address);
            }
            _ => {}
        }
    }

    fn on_gossip(&mut self, source: PeerId, data: &[u8]) {
        if !self.roster().contains(&source) || self.swarm.behaviour().admission.is_banned(&source) {
            return;
        }
        // Each author has an allowance; one that floods past it is banned.
        let r = self.peers.entry(source).or_insert_with(PeerRecord::new);
        if !r.allow_gossip(Instant::now()) {
            if r.gossip_dropped >= super::GOSSIP_FLOOD_BAN {
                tracing::warn!(peer = %source, dropped = r.gossip_dropped, "Banning a peer that floods announcements");
                self.ban(source);
            }
            return;
        }
        let g = match Gossip::decode(data) {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(peer = %source, error = %e, "Dropping a malformed announcement");
                return;
            }
        };
        match g {
            Gossip::Offer { offer } => {
                if let Err(e) = offer.verify(&self.cfg.hq_key, &self.roster().store_id, now_ms()) {
                    self.refuse_offer(source, &offer, &e);
                    return;
                }
                if self.store.info(&offer.offer.root).is_none()
                    && let Err(e) = self.accept_offer(offer, false)
                {
                    tracing::warn!(peer = %source, error = %e, "Ignoring a gossiped offer");
                }
            }
            ref have @ Gossip::Have {
                root,
                has_list,
                fetching_origin,
                ref addrs,
                ..
            } => {
                let Some(bits) = have.have_bits() else { return };
                let r = self.peers.entry(source).or_insert_with(PeerRecord::new);
                r.last_seen = Some(Instant::now());
                r.heard = true;
                for a in addrs.iter().take(8) {
                    if let Ok(a) = a.parse::<Multiaddr>()
                        && !r.addrs.contains(&a)
                        && r.addrs.len() < 8
                    {
                        r.addrs.push(a);
                    }
                }
                if r.have.len() < 1024 || r.have.contains_key(&root) {
                    r.have.insert(root, (bits, has_list));
                    r.denied_since_announce.remove(&root);
                }
                if fetching_origin {
                    r.fetching.insert(root);
                } else {
                    r.fetching.remove(&root);
                }
                if !self.swarm.is_connected(&source) {
                    let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(source)
                        .addresses(r.addrs.clone())
                        .build();
                    let _ = self.swarm.dial(opts);
                }
                self.schedule(root);
            }
        }
    }

    /// A peer passed on an offer HQ did not sign for this store now: nothing is
    /// fetched; the refusal is logged with the peer and counted, and a peer that must
    /// have forged it (see [`OfferError::is_forgery`]) is banned like one serving bad
    /// chunks.
    fn refuse_offer(&mut self, peer: PeerId, offer: &SignedOffer, e: &OfferError) {
        let r = self.peers.entry(peer).or_insert_with(PeerRecord::new);
        r.refused_offers = r.refused_offers.saturating_add(1);
        if e.is_forgery() {
            tracing::warn!(%peer, root = %offer.offer.root, url = %offer.offer.url, error = %e, "Banning a peer that passed on a forged offer");
            self.ban(peer);
        } else {
            tracing::warn!(%peer, root = %offer.offer.root, error = %e, "Refusing an offer from a peer");
        }
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        for (root, d) in &self.downloads {
            tracing::trace!(
                %root,
                have = d.have.count(),
                in_flight = d.in_flight.len(),
                writes = d.pending_writes.len(),
                list = d.list.is_some(),
                holders = self.peers.values().filter(|r| r.have.contains_key(root)).count(),
                "Download state"
            );
        }
        let roots: Vec<Root> = self.downloads.keys().copied().collect();
        for root in roots {
            // Requests older than the timeout are dropped by request-response itself
            // (OutboundFailure::Timeout), which frees their slot.
            self.elect(root);
            self.schedule(root);
            if let Some(d) = self.downloads.get_mut(&root)
                && d.dirty
                && now.duration_since(d.last_announce) >= ANNOUNCE_MIN_GAP
            {
                d.dirty = false;
                d.last_announce = now;
                self.announce(root);
            }
        }
        #[cfg(feature = "test-utils")]
        if self.cfg.fault == Some(crate::config::ServeFault::FloodAnnouncements) {
            for info in self.store.list() {
                for _ in 0..100 {
                    self.announce(info.root);
                }
            }
        }
        if now.duration_since(self.last_full_announce) >= self.cfg.announce_interval {
            self.last_full_announce = now;
            for info in self.store.list() {
                if info.has_list {
                    self.announce(info.root);
                }
            }
        }
        if now.duration_since(self.last_redial) >= Duration::from_secs(2) {
            self.redial();
        }
    }
}
