//! `PushRoster`: the store mesh's roster HQ made when a unit of the store enrolled (or
//! left), kept in the data dir and applied to the running mesh at once.
//!
//! The roster is trusted only under HQ's key: `[p2p] hq_public_key`, else the key of
//! the unit's enrolment. It must name this unit (HQ signed a roster with this unit on
//! it), the store of the roster the unit holds, and a version not older than it.

use outpost_p2p::roster::SignedRoster;
use outpost_proto::hq;
use tonic::Status;

use crate::access::Access;
use crate::config::Settings;
use crate::mesh;

/// Applies one push; answers the version now held.
pub async fn apply(
    settings: &Settings,
    access: &Access,
    node: Option<&outpost_p2p::Client>,
    push: hq::RosterPush,
) -> Result<hq::PushReply, Status> {
    let roster = SignedRoster::from_json(&push.roster_json)
        .map_err(|e| Status::invalid_argument(format!("roster_json: {e}")))?;
    let key = match (&settings.p2p.hq_public_key, access.hq_verifying_key()) {
        (Some(hex), _) => outpost_security::enroll::hex32("p2p.hq_public_key", hex)
            .ok()
            .and_then(|b| outpost_p2p::identity::ed25519::PublicKey::try_from_bytes(&b).ok())
            .ok_or_else(|| Status::failed_precondition("p2p.hq_public_key is not a key"))?,
        (None, Some(k)) => outpost_p2p::identity::ed25519::PublicKey::try_from_bytes(k.as_bytes())
            .map_err(|e| Status::internal(format!("the enrolled HQ key: {e}")))?,
        (None, None) => {
            return Err(Status::failed_precondition(
                "this unit knows no HQ key to check a roster with: enrol it with HQ (or set p2p.hq_public_key)",
            ));
        }
    };
    let checked = roster.verify(&key).map_err(|e| {
        Status::invalid_argument(format!("roster_json: {e} (not signed by this unit's HQ)"))
    })?;
    let me = match node {
        Some(n) => n.peer_id(),
        None => {
            let has_identity = mesh::mesh_dir(&settings.data_dir).exists();
            if !has_identity {
                return Err(Status::failed_precondition(
                    "this unit has no mesh identity: it was not put on a roster (enrol it with HQ)",
                ));
            }
            mesh::unit_identity(&settings.data_dir, access)
                .map_err(|e| Status::unavailable(e.to_string()))?
                .public()
                .to_peer_id()
        }
    };
    if !checked.contains(&me) {
        return Err(Status::invalid_argument(format!(
            "roster_json: the roster does not name this unit ({me}): HQ sent another store's or an outdated roster"
        )));
    }
    let dir = settings.data_dir.clone();
    let kept = tokio::task::spawn_blocking(move || mesh::kept_roster(&dir))
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::internal(e.to_string()))?;
    if let Some(kept) = &kept {
        if kept.store_id != roster.store_id {
            return Err(Status::invalid_argument(format!(
                "roster_json: the roster is for store {:?}, this unit is in {:?}",
                roster.store_id, kept.store_id
            )));
        }
        if roster.version < kept.version {
            return Err(Status::failed_precondition(format!(
                "roster version {} is older than the one this unit holds ({})",
                roster.version, kept.version
            )));
        }
        if roster.version == kept.version {
            return Ok(hq::PushReply {
                version: kept.version,
            });
        }
    }
    // The running node checks it against the roster it runs (the store) first.
    if let Some(node) = node {
        node.set_roster(roster.clone()).await.map_err(|e| {
            Status::failed_precondition(format!("the running mesh refused it: {e}"))
        })?;
    }
    let dir = settings.data_dir.clone();
    let keep = roster.clone();
    tokio::task::spawn_blocking(move || mesh::keep_roster(&dir, &keep))
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::unavailable(e.to_string()))?;
    tracing::info!(
        version = roster.version,
        peers = roster.peers.len(),
        "Took the store roster HQ pushed"
    );
    Ok(hq::PushReply {
        version: roster.version,
    })
}
