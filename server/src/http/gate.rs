//! The gate: what an enrolled unit serves on its REST port while its data key waits for
//! a second factor (HQ's share, the store manager's PIN) or, locked in its TPM, for
//! HQ's recovery. Nothing of the store is readable yet, so it answers only:
//!
//! - `GET /healthz`: `503` with what the unit waits for;
//! - `GET /api/v1/security/status`: `200` with the same, for the console;
//! - `POST /api/v1/security/unlock` `{"pin": "…"}`: the PIN. It needs no login (the
//!   logins are inside the locked data); guesses are limited by the TPM's
//!   dictionary-attack protection, and each try is counted in the audit spool;
//! - anything else: `503 device_locked`.
//!
//! Meanwhile a task asks HQ every few seconds. The first factor that works opens the
//! unit; the gate then stops and hands back the listener, so the store serves on the
//! same port without a moment unbound.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{App, HttpResponse, HttpServer, ResponseError, web};
use outpost_security::seal::SealError;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::ApiError;
use crate::access::AccessError;
use crate::access::escrow_link::EscrowLink;
use crate::access::unseal::{Needs, Opened, Pending};

/// How long the gate waits between two tries to reach HQ.
pub const HQ_RETRY: Duration = Duration::from_secs(5);

/// What the gate shares between its routes and its HQ task.
struct GateState {
    /// The unit while it waits; `None` while a try holds it, or once it opened.
    pending: Mutex<Option<Pending>>,
    /// What it needs (kept for status while a try holds the unit).
    needs: Needs,
    needs_text: String,
    /// The last HQ error, for the status page.
    last_hq_error: Mutex<Option<String>>,
    /// Set once the unit opened, or once a try failed past what another try can change
    /// (the unit then stops with that error).
    opened: watch::Sender<Option<Arc<Mutex<Option<Outcome>>>>>,
}

/// How the wait ended.
type Outcome = Result<Opened, String>;

/// What `GET /api/v1/security/status` answers at the gate.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GateStatus {
    /// Always `waiting`: the data key is not open yet.
    pub state: &'static str,
    /// What would open it.
    pub accepts_hq: bool,
    /// Whether the manager's PIN would.
    pub accepts_pin: bool,
    /// Locked in the TPM: only HQ's recovery.
    pub needs_recovery: bool,
    /// For people.
    pub reason: String,
    /// Why HQ did not answer yet, when it did not.
    pub last_hq_error: Option<String>,
}

/// The PIN form's body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PinBody {
    pin: String,
}

fn status(state: &GateState) -> GateStatus {
    GateStatus {
        state: "waiting",
        accepts_hq: state.needs.hq,
        accepts_pin: state.needs.pin,
        needs_recovery: state.needs.recovery,
        reason: format!("This unit is locked: {}", state.needs_text),
        last_hq_error: state
            .last_hq_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
    }
}

async fn healthz(state: web::Data<GateState>) -> HttpResponse {
    HttpResponse::ServiceUnavailable().json(status(&state))
}

async fn security_status(state: web::Data<GateState>) -> HttpResponse {
    HttpResponse::Ok().json(status(&state))
}

fn locked(state: &GateState) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "device_locked",
        format!("This unit is locked: {}", state.needs_text),
    )
    .header("retry-after", "5")
}

async fn other(state: web::Data<GateState>) -> HttpResponse {
    locked(&state).error_response()
}

async fn unlock(state: web::Data<GateState>, body: web::Bytes) -> HttpResponse {
    let pin = match serde_json::from_slice::<PinBody>(&body) {
        Ok(b) => SecretString::from(b.pin),
        Err(e) => {
            return ApiError::bad_request(
                "invalid_body",
                format!("expected {{\"pin\": \"…\"}}: {e}"),
            )
            .field("pin")
            .error_response();
        }
    };
    if !state.needs.pin {
        return ApiError::new(
            StatusCode::CONFLICT,
            "pin_not_accepted",
            format!(
                "This unit's unlock policy does not take a PIN: {}",
                state.needs_text
            ),
        )
        .error_response();
    }
    let Some(pending) = state
        .pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    else {
        return ApiError::new(
            StatusCode::CONFLICT,
            "unlock_in_progress",
            "Another try (HQ's answer, or a PIN) is being checked; try again in a moment",
        )
        .header("retry-after", "1")
        .error_response();
    };
    // The TPM call blocks for milliseconds (and the software anchor's KDF longer).
    let result = tokio::task::spawn_blocking(move || pending.with_pin(&pin)).await;
    match result {
        Ok(Ok(opened)) => {
            tracing::info!("The store manager's PIN released the data key");
            state
                .opened
                .send_replace(Some(Arc::new(Mutex::new(Some(Ok(opened))))));
            HttpResponse::Ok().json(serde_json::json!({"unlocked": true}))
        }
        Ok(Err(retry)) => {
            let message = retry.error.to_string();
            let answer = match &retry.error {
                AccessError::Seal(SealError::WrongPin) => {
                    ApiError::new(StatusCode::UNAUTHORIZED, "wrong_pin", "Wrong PIN")
                }
                AccessError::Seal(SealError::PinLockedOut { .. }) => ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "pin_locked_out",
                    message.clone(),
                )
                .header("retry-after", "60"),
                AccessError::Seal(SealError::Malformed(_) | SealError::Config(_)) => {
                    ApiError::bad_request("invalid_pin", message.clone()).field("pin")
                }
                _ => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unlock_failed",
                    message.clone(),
                ),
            };
            tracing::warn!(error = %message, "A PIN did not release the data key");
            match retry.pending {
                Some(p) => *state.pending.lock().unwrap_or_else(|p| p.into_inner()) = Some(p),
                None => {
                    state
                        .opened
                        .send_replace(Some(Arc::new(Mutex::new(Some(Err(message))))));
                }
            }
            answer.error_response()
        }
        Err(e) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unlock_failed",
            format!("the PIN check failed: {e}"),
        )
        .error_response(),
    }
}

/// Asks HQ until the unit opens (by HQ or by a PIN).
async fn ask_hq(state: Arc<GateState>, link: Arc<dyn EscrowLink>) {
    let mut opened = state.opened.subscribe();
    loop {
        if opened.borrow().is_some() {
            return;
        }
        let taken = state
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(pending) = taken {
            match pending.with_hq(link.as_ref()).await {
                Ok(o) => {
                    tracing::info!("HQ released the data key");
                    state
                        .opened
                        .send_replace(Some(Arc::new(Mutex::new(Some(Ok(o))))));
                    return;
                }
                Err(retry) => {
                    tracing::warn!(error = %retry.error, "HQ did not release the data key yet");
                    *state
                        .last_hq_error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = Some(retry.error.to_string());
                    match retry.pending {
                        Some(p) => {
                            *state.pending.lock().unwrap_or_else(|p| p.into_inner()) = Some(p)
                        }
                        None => {
                            state
                                .opened
                                .send_replace(Some(Arc::new(Mutex::new(Some(Err(retry
                                    .error
                                    .to_string()))))));
                            return;
                        }
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(HQ_RETRY) => {}
            _ = opened.changed() => {}
        }
    }
}

/// A running gate. Dropping it stops it.
pub struct Gate {
    addr: SocketAddr,
    listener: Option<std::net::TcpListener>,
    server: actix_web::dev::ServerHandle,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    state: Arc<GateState>,
    hq: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Gate {
    fn drop(&mut self) {
        if let Some(hq) = self.hq.take() {
            hq.abort();
        }
        if let Some(served) = self.served.take() {
            let handle = self.server.clone();
            tokio::spawn(async move {
                handle.stop(false).await;
                let _ = served.await;
            });
        }
    }
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Gate {
    /// Serves the gate on `listener` (TLS under `tls`), asking HQ through `link` when the
    /// unit accepts HQ's share or needs its recovery.
    pub fn start(
        listener: std::net::TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        pending: Pending,
        link: Option<Arc<dyn EscrowLink>>,
    ) -> std::io::Result<Gate> {
        let addr = listener.local_addr()?;
        let needs = pending.needs();
        let (opened, _) = watch::channel(None);
        let state = Arc::new(GateState {
            needs_text: pending.needs_text(),
            needs,
            pending: Mutex::new(Some(pending)),
            last_hq_error: Mutex::new(if link.is_none() && (needs.hq || needs.recovery) {
                Some("no HQ URL is configured (sync.hq_url)".into())
            } else {
                None
            }),
            opened,
        });
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/healthz", web::get().to(healthz))
                .route("/api/v1/security/status", web::get().to(security_status))
                .route("/api/v1/security/unlock", web::post().to(unlock))
                .app_data(web::PayloadConfig::new(4096))
                .default_service(web::to(other))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1);
        let served = listener.try_clone()?;
        let server = match tls {
            Some(config) => server.listen_rustls_0_23(served, (*config).clone())?,
            None => server.listen(served)?,
        }
        .run();
        let hq = link
            .filter(|_| needs.hq || needs.recovery)
            .map(|link| tokio::spawn(ask_hq(state.clone(), link)));
        tracing::warn!(%addr, reason = %state.needs_text, "Locked: serving the unlock gate until a factor releases the data key");
        let handle = server.handle();
        Ok(Gate {
            addr,
            listener: Some(listener),
            server: handle,
            served: Some(tokio::spawn(server)),
            state,
            hq,
        })
    }

    /// Where the gate serves.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits until the unit opens, stops the gate, and hands back the unit and the
    /// still-bound listener; or the error that ended the wait (the unit then stops).
    pub async fn opened(mut self) -> Result<(Opened, std::net::TcpListener), String> {
        let mut rx = self.state.opened.subscribe();
        let outcome = loop {
            let got = rx.borrow_and_update().clone();
            if let Some(slot) = got
                && let Some(o) = slot.lock().unwrap_or_else(|p| p.into_inner()).take()
            {
                break o;
            }
            // The sender lives in `state`, which this function holds: `changed` only
            // ends with a new value.
            let _ = rx.changed().await;
        };
        if let Some(hq) = self.hq.take() {
            hq.abort();
        }
        self.server.stop(true).await;
        if let Some(served) = self.served.take() {
            let _ = served.await;
        }
        let listener = self
            .listener
            .take()
            .ok_or_else(|| "the gate's listener is gone".to_owned())?;
        outcome.map(|o| (o, listener))
    }
}
