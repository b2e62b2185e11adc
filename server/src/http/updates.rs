//! `GET /api/v1/update`: the releases of this unit and where its update stands, for
//! the console and for technicians (`docs/updates.md`).

use actix_web::{HttpResponse, get, post, web};
use outpost_updater::layout::Layout;
use outpost_updater::state::UpdateState;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use outpost_security::auth::roles::Permission;

use super::auth::Caller;
use super::error::ApiError;

/// This unit's releases and its update.
#[derive(Debug, Serialize, ToSchema)]
pub struct UpdateStatus {
    /// The running release (the binary's stamp).
    pub running: String,
    /// This build's target triple.
    pub target: String,
    /// The highest release that ever passed its health gate here (the anti-rollback
    /// floor), when one did.
    pub highest_installed: Option<String>,
    /// The releases directory, when this unit updates itself.
    pub releases_dir: Option<String>,
    /// What `current` names.
    pub current: Option<String>,
    /// What `previous` names (a rollback goes there).
    pub previous: Option<String>,
    /// Every release installed, oldest first.
    pub installed: Vec<String>,
    /// A release switched to and on probation until its health gate.
    pub pending: Option<PendingView>,
    /// The last update's result.
    pub last: Option<LastView>,
}

/// A release on probation.
#[derive(Debug, Serialize, ToSchema)]
pub struct PendingView {
    /// From.
    pub from: String,
    /// To.
    pub to: String,
    /// Unix seconds of the switch.
    pub switched_at: i64,
    /// Starts so far.
    pub starts: u32,
    /// Why its gate failed, when it did.
    pub gate_failed: Option<String>,
}

/// The last update's result.
#[derive(Debug, Serialize, ToSchema)]
pub struct LastView {
    /// The release the update was to.
    pub version: String,
    /// The release before.
    pub from: String,
    /// `installed`, `rolled_back` or `rolled_back_by_hand`.
    pub result: String,
    /// Why.
    pub reason: String,
    /// Unix seconds.
    pub at: i64,
}

/// The status of `releases` (none: the unit does not update itself), with the
/// floor read from the data dir by the caller.
pub fn update_status(
    releases: Option<&std::path::Path>,
    highest_installed: Option<String>,
) -> Result<UpdateStatus, outpost_updater::UpdateError> {
    let mut status = UpdateStatus {
        running: outpost_updater::stamp::running_version().to_string(),
        target: outpost_updater::target().to_owned(),
        highest_installed,
        releases_dir: None,
        current: None,
        previous: None,
        installed: Vec::new(),
        pending: None,
        last: None,
    };
    let Some(dir) = releases else {
        return Ok(status);
    };
    let l = Layout::new(dir);
    let state = UpdateState::load(&l.state_path())?;
    status.releases_dir = Some(dir.display().to_string());
    status.current = l.current()?.map(|v| v.to_string());
    status.previous = l.previous()?.map(|v| v.to_string());
    status.installed = l.installed()?.iter().map(ToString::to_string).collect();
    status.pending = state.pending.map(|p| PendingView {
        from: p.from.to_string(),
        to: p.to.to_string(),
        switched_at: p.switched_at,
        starts: p.starts,
        gate_failed: p.gate_failed,
    });
    status.last = state.last.map(|o| LastView {
        version: o.version.to_string(),
        from: o.from.to_string(),
        result: o.result.as_str().to_owned(),
        reason: o.reason,
        at: o.at,
    });
    Ok(status)
}

/// This unit's releases and the state of its update.
#[utoipa::path(tag = "ops", responses((status = 200, body = UpdateStatus), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 500, body = super::ErrorBody)))]
#[get("/api/v1/update")]
pub async fn get_update(
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ReadLogs)?;
    let floor = crate::access::releases::floor(state.sales.store())
        .map_err(|e| internal(format!("the anti-rollback floor: {e}")))?
        .map(|v| v.to_string());
    let status = update_status(state.settings.updates.releases_dir.as_deref(), floor)
        .map_err(|e| internal(format!("the releases directory: {e}")))?;
    Ok(HttpResponse::Ok().json(status))
}

fn internal(message: String) -> ApiError {
    ApiError::new(
        actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
        "update_status_unavailable",
        message,
    )
}

/// A release bundle to apply.
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    /// The bundle directory on this unit (`manifest.json`, the archive, any deltas).
    #[schema(min_length = 1)]
    pub bundle: String,
}

/// What switched.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApplyAnswer {
    /// The release before.
    pub from: String,
    /// The release switched to; it starts on probation.
    pub to: String,
    /// `delta` or `full`: how its files arrived.
    pub via: String,
    /// The server restarts into it now.
    pub restarting: bool,
}

/// Apply a release bundle: verify, stage, self-test on a copy of the data dir, switch,
/// and restart into it (the supervisor starts it on probation; a failure is rolled
/// back by itself). Refusals are `422` with the updater's code, and audited.
#[utoipa::path(tag = "ops", request_body = ApplyRequest, responses((status = 202, body = ApplyAnswer), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 409, body = super::ErrorBody), (status = 422, body = super::ErrorBody)))]
#[post("/api/v1/update")]
pub async fn post_update(
    caller: Caller,
    state: web::Data<AppState>,
    body: super::body::JsonBody<ApplyRequest>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::Configure)?;
    let req = body.0;
    if req.bundle.trim().is_empty() {
        return Err(
            ApiError::bad_request("invalid_bundle", "bundle must name a directory").field("bundle"),
        );
    }
    let (store, access, settings) = (
        state.sales.store().clone(),
        state.security.clone(),
        state.settings.clone(),
    );
    let actor = caller.name().to_owned();
    let bundle = std::path::PathBuf::from(req.bundle);
    let result = web::block(move || {
        crate::update::live::apply_bundle(&store, &access, &settings, &bundle, &actor)
    })
    .await
    .map_err(|e| internal(format!("the update task: {e}")))?;
    use crate::update::live::LiveUpdateError as E;
    let switched = result.map_err(|e| {
        let status = match &e {
            E::NotUpdating | E::NotServe => actix_web::http::StatusCode::CONFLICT,
            E::Update(u) if u.code() == "busy" => actix_web::http::StatusCode::CONFLICT,
            _ => actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError::new(status, e.code(), e.to_string())
    })?;
    // Answer first, then stop: the supervisor starts the new release.
    crate::update::live::restart_soon(&state.restart);
    Ok(HttpResponse::Accepted().json(ApplyAnswer {
        from: switched.from.to_string(),
        to: switched.to.to_string(),
        via: match switched.via {
            outpost_updater::apply::Via::Delta => "delta",
            outpost_updater::apply::Via::Full => "full",
        }
        .into(),
        restarting: true,
    }))
}

/// A rollback asked of the running server.
#[derive(Debug, Serialize, ToSchema)]
pub struct RollbackAnswer {
    /// The release running now.
    pub from: String,
    /// The release it goes back to.
    pub to: String,
    /// The server restarts now; the guard rolls back before it starts again.
    pub restarting: bool,
}

/// Roll back to the previous release: recorded in the update journal, then the
/// server restarts and the guard (`outpost-supervisor`, or systemd's `ExecStartPre`)
/// switches back before it starts again, restoring a migrating release's data
/// snapshot. `409` without a releases directory, a previous release or a supervisor.
#[utoipa::path(tag = "ops", responses((status = 202, body = RollbackAnswer), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 409, body = super::ErrorBody), (status = 500, body = super::ErrorBody)))]
#[post("/api/v1/update/rollback")]
pub async fn post_rollback(
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::Configure)?;
    let (access, settings) = (state.security.clone(), state.settings.clone());
    let actor = caller.name().to_owned();
    let result =
        web::block(move || crate::update::live::request_rollback(&access, &settings, &actor))
            .await
            .map_err(|e| internal(format!("the rollback task: {e}")))?;
    use crate::update::live::LiveUpdateError as E;
    let (from, to) = result.map_err(|e| {
        let status = match &e {
            E::NotUpdating | E::NotSupervised => actix_web::http::StatusCode::CONFLICT,
            E::Update(u) if u.code() == "no_previous" => actix_web::http::StatusCode::CONFLICT,
            _ => actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.code(), e.to_string())
    })?;
    crate::update::live::restart_soon(&state.restart);
    Ok(HttpResponse::Accepted().json(RollbackAnswer {
        from: from.to_string(),
        to: to.to_string(),
        restarting: true,
    }))
}
