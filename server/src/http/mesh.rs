//! The store mesh: this unit's peers and the artifacts it shares with them.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, get, web};

use outpost_security::auth::roles::Permission;

use super::auth::Caller;
use super::{ApiError, AppState};
use crate::hq::artifacts::ArtifactView;
use crate::mesh::PeersView;

/// What `GET /api/v1/peers` answers: the mesh node's view and the catalog snapshots.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Peers {
    /// The mesh node: this unit, its peers and its content store.
    #[serde(flatten)]
    pub mesh: PeersView,
    /// Catalog snapshots HQ offered through the mesh and whether they were applied
    /// (`fetching`, `applying`, `applied`, `failed` with the reason).
    pub catalog_artifacts: Vec<ArtifactView>,
}

/// The store's other units on the mesh, their state, and the artifacts here with
/// their origin and peer byte counts. `{"enabled":false,…}` when `[p2p]` is off.
#[utoipa::path(tag = "ops", responses((status = 200, body = Peers), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 503, body = super::ErrorBody)))]
#[get("/api/v1/peers")]
pub async fn peers(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ReadLogs)?;
    let mesh = crate::mesh::view(state.mesh.as_ref()).await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "mesh_unavailable",
            format!("the store mesh node does not answer: {e}"),
        )
    })?;
    let catalog_artifacts = crate::hq::artifacts::list(state.sales.store())?;
    Ok(HttpResponse::Ok().json(Peers {
        mesh,
        catalog_artifacts,
    }))
}
