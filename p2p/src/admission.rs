//! Admission: a [`NetworkBehaviour`] that refuses every connection, inbound or
//! outbound, whose peer is not on the store roster or is banned. It sits first in the
//! composed behaviour, so a refused peer never reaches gossip or the chunk protocol:
//! the swarm closes the connection as soon as the peer id is authenticated by Noise.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Instant;

use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId};

use crate::roster::Roster;

/// Why a peer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// Not on the store roster.
    #[error("peer is not on the store roster")]
    NotOnRoster,
    /// Banned for serving bad data.
    #[error("peer is banned")]
    Banned,
}

/// A refused connection, reported to the node for logging and `peers()`.
#[derive(Debug, Clone)]
pub struct Rejected {
    /// The refused peer.
    pub peer: PeerId,
    /// Its address.
    pub addr: Multiaddr,
    /// Why.
    pub reason: Refusal,
}

/// The admission behaviour.
pub struct Admission {
    local: PeerId,
    roster: Roster,
    banned: HashMap<PeerId, Instant>,
    events: VecDeque<Rejected>,
}

impl Admission {
    /// Admits the members of `roster` (and ourselves).
    pub fn new(local: PeerId, roster: Roster) -> Admission {
        Admission {
            local,
            roster,
            banned: HashMap::new(),
            events: VecDeque::new(),
        }
    }

    /// Replaces the roster; the caller disconnects peers no longer on it.
    pub fn set_roster(&mut self, roster: Roster) {
        self.roster = roster;
    }

    /// The roster in force.
    pub fn roster(&self) -> &Roster {
        &self.roster
    }

    /// Bans `peer` until `until`.
    pub fn ban(&mut self, peer: PeerId, until: Instant) {
        self.banned.insert(peer, until);
    }

    /// Whether `peer` is banned now.
    pub fn is_banned(&self, peer: &PeerId) -> bool {
        self.banned.get(peer).is_some_and(|t| *t > Instant::now())
    }

    /// Whether `peer` may be connected.
    pub fn check(&self, peer: &PeerId) -> Result<(), Refusal> {
        if *peer != self.local && !self.roster.contains(peer) {
            return Err(Refusal::NotOnRoster);
        }
        if self.is_banned(peer) {
            return Err(Refusal::Banned);
        }
        Ok(())
    }

    fn admit(
        &mut self,
        peer: PeerId,
        addr: &Multiaddr,
    ) -> Result<dummy::ConnectionHandler, ConnectionDenied> {
        match self.check(&peer) {
            Ok(()) => Ok(dummy::ConnectionHandler),
            Err(reason) => {
                if self.events.len() < 64 {
                    self.events.push_back(Rejected {
                        peer,
                        addr: addr.clone(),
                        reason: reason.clone(),
                    });
                }
                Err(ConnectionDenied::new(reason))
            }
        }
    }
}

impl NetworkBehaviour for Admission {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Rejected;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.admit(peer, remote)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.admit(peer, addr)
    }

    fn on_swarm_event(&mut self, _: FromSwarm) {}

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        e: THandlerOutEvent<Self>,
    ) {
        let _: Infallible = e;
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Rejected, THandlerInEvent<Self>>> {
        match self.events.pop_front() {
            Some(e) => Poll::Ready(ToSwarm::GenerateEvent(e)),
            None => Poll::Pending,
        }
    }
}
