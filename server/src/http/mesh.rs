//! The store mesh: this unit's peers and the artifacts it shares with them.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, get, web};

use outpost_security::auth::roles::Permission;

use super::auth::Caller;
use super::{ApiError, AppState};

/// The store's other units on the mesh, their state, and the artifacts here with
/// their origin and peer byte counts. `{"enabled":false,…}` when `[p2p]` is off.
#[utoipa::path(tag = "ops", responses((status = 200, body = crate::mesh::PeersView), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 503, body = super::ErrorBody)))]
#[get("/api/v1/peers")]
pub async fn peers(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ReadLogs)?;
    let mut view = crate::mesh::view(state.mesh.as_ref()).await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "mesh_unavailable",
            format!("the store mesh node does not answer: {e}"),
        )
    })?;
    view.catalog_artifacts = crate::artifacts::list(state.sales.store())?;
    Ok(HttpResponse::Ok().json(view))
}
