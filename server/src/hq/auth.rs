//! Who may change this store through its gRPC port when the port has no mutual TLS.
//!
//! With `sync.hq_ca` the port speaks mutual TLS and only HQ's named client certificate
//! gets in: the handshake is the authentication, and this module is not in the way.
//! Without it the port is plaintext on loopback, where any local process can connect;
//! there [`Authenticated`] wraps `StoreService` and lets a call through only when it
//!
//! - only reads ([`READS`]: `GetStatus`, `GetPushState`, `GetArtifactState`; the
//!   health and reflection services are not wrapped at all), or
//! - carries HQ's push token (metadata [`PUSH_TOKEN_METADATA`], see
//!   [`outpost_security::push_token`]) for this store and unit, signed by the HQ key
//!   this unit trusts ([`Access::hq_verifying_key`]) and within its validity, or
//! - carries `authorization: Bearer <session id>` of a live staff session (the REST
//!   login's) whose principal holds the admin role.
//!
//! Every other call is refused before the service sees it (a catalog stream is not
//! read at all): `UNAUTHENTICATED` without any credential, `PERMISSION_DENIED` with
//! one that does not hold, each with the reason, and an audit entry. When a push token
//! is present it decides alone, whatever else the call carries. Every method not
//! listed as a read needs a credential, so a method added to `hq.proto` is closed
//! until it is listed.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use outpost_security::auth::roles::Role;
use outpost_security::push_token::{PUSH_TOKEN_METADATA, PushToken};
use time::OffsetDateTime;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;
use tonic::{Code, Status};

use crate::access::Access;

/// The `StoreService` methods that only read; open to any caller that reaches the port.
pub const READS: [&str; 3] = ["GetStatus", "GetPushState", "GetArtifactState"];

/// Refusals audited one by one per [`AUDIT_WINDOW`]; past that they are counted, and
/// the count goes into the next audited refusal, so a local process hammering the port
/// cannot grow the audit log without bound.
const AUDITS_PER_WINDOW: u32 = 60;
const AUDIT_WINDOW: Duration = Duration::from_secs(60);

/// Who a call was let through for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Caller {
    /// A read: anyone.
    Anyone,
    /// HQ, by its push token.
    Hq,
    /// A local admin, by the named staff account's session.
    Admin(String),
}

/// Why a call was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `Unauthenticated` (no credential) or `PermissionDenied` (one that does not hold).
    pub code: Code,
    /// For people: what was wrong.
    pub reason: String,
    /// The staff account whose session was refused, when one was named.
    pub account: Option<String>,
}

impl Refusal {
    fn denied(reason: impl Into<String>) -> Self {
        Refusal {
            code: Code::PermissionDenied,
            reason: reason.into(),
            account: None,
        }
    }

    /// The answer to the caller.
    fn status(&self, method: &str) -> Status {
        match self.code {
            Code::Unauthenticated => Status::unauthenticated(format!(
                "{method} changes this store, and this port has no mutual TLS: send HQ's push token (gRPC metadata `{PUSH_TOKEN_METADATA}`) or an admin session (`authorization: Bearer <session id>` from POST /api/v1/auth/login); nothing was applied"
            )),
            code => Status::new(
                code,
                format!("{method} refused: {}; nothing was applied", self.reason),
            ),
        }
    }
}

/// The decision for the calls of one port.
pub struct PushAuth {
    access: Arc<Access>,
    /// This unit's store and unit id, which a push token must name.
    store: String,
    unit: String,
    audits: Mutex<AuditBudget>,
}

impl std::fmt::Debug for PushAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushAuth")
            .field("store", &self.store)
            .field("unit", &self.unit)
            .finish_non_exhaustive()
    }
}

impl PushAuth {
    /// Checks calls for unit `unit` of store `store` against `access`'s HQ key and
    /// sessions.
    pub fn new(access: Arc<Access>, store: impl Into<String>, unit: impl Into<String>) -> Self {
        PushAuth {
            access,
            store: store.into(),
            unit: unit.into(),
            audits: Mutex::new(AuditBudget::new(Instant::now())),
        }
    }

    /// Whether a call of `method` (the last segment of its path; `None` when the path
    /// is not one of this service's) with `headers` may go through at `now`.
    pub fn check(
        &self,
        method: Option<&str>,
        headers: &http::HeaderMap,
        now: OffsetDateTime,
    ) -> Result<Caller, Refusal> {
        if method.is_some_and(|m| READS.contains(&m)) {
            return Ok(Caller::Anyone);
        }
        if let Some(value) = headers.get(PUSH_TOKEN_METADATA) {
            let key = self.access.hq_verifying_key().ok_or_else(|| {
                Refusal::denied(
                    "this unit trusts no HQ key ([security] hq_public_key is not set), so it cannot check a push token: use an admin session, or mutual TLS (sync.hq_ca)",
                )
            })?;
            let text = value
                .to_str()
                .map_err(|_| Refusal::denied("malformed push token: not ASCII"))?;
            PushToken::verify_text(text, &key)
                .and_then(|t| t.check(&self.store, &self.unit, now))
                .map_err(|e| Refusal::denied(e.to_string()))?;
            return Ok(Caller::Hq);
        }
        if let Some(value) = headers.get(http::header::AUTHORIZATION) {
            let id = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .filter(|id| !id.is_empty())
                .ok_or_else(|| Refusal::denied("authorization must be `Bearer <session id>`"))?;
            let principal = self.access.session(id).map_err(|_| {
                Refusal::denied(
                    "the session is not live (expired, ended or unknown): log in again at POST /api/v1/auth/login",
                )
            })?;
            if !principal.roles.contains(&Role::Admin) {
                let roles: Vec<&str> = principal.roles.iter().map(|r| r.as_str()).collect();
                return Err(Refusal {
                    code: Code::PermissionDenied,
                    reason: format!(
                        "{} holds the roles [{}]; changing the store from a session needs the admin role",
                        principal.name,
                        roles.join(", ")
                    ),
                    account: Some(principal.name),
                });
            }
            return Ok(Caller::Admin(principal.name));
        }
        Err(Refusal {
            code: Code::Unauthenticated,
            reason: "no credential".into(),
            account: None,
        })
    }

    /// Records a refusal (within the audit budget) and logs it; returns the answer.
    async fn refuse(&self, method: &str, peer: Option<SocketAddr>, refusal: Refusal) -> Status {
        let from = peer.map_or_else(|| "an unknown address".to_owned(), |p| p.to_string());
        let audit = self
            .audits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(Instant::now());
        if let Some(unaudited) = audit {
            tracing::warn!(method, from = %from, reason = %refusal.reason, "Refused a gRPC call without valid credentials");
            let mut detail = format!("{method} from {from}: {}", refusal.reason);
            if unaudited > 0 {
                detail.push_str(&format!(
                    " (and {unaudited} earlier refusals not audited one by one)"
                ));
            }
            let actor = refusal.account.clone().unwrap_or_else(|| "-".into());
            self.audit(actor, "hq.push.refused", detail).await;
        } else {
            tracing::debug!(method, from = %from, reason = %refusal.reason, "Refused a gRPC call without valid credentials");
        }
        refusal.status(method)
    }

    /// Appends to the audit log off the async workers (it may fsync).
    async fn audit(&self, actor: String, action: &'static str, detail: String) {
        let access = self.access.clone();
        if let Err(e) =
            tokio::task::spawn_blocking(move || access.audit(&actor, action, &detail)).await
        {
            tracing::error!(error = %e, action, "Failed to append to the audit log");
        }
    }
}

/// How many refusals may still be audited one by one in the current window.
#[derive(Debug)]
struct AuditBudget {
    window_start: Instant,
    used: u32,
    /// Refusals counted but not audited since the last audited one.
    unaudited: u64,
}

impl AuditBudget {
    fn new(now: Instant) -> Self {
        AuditBudget {
            window_start: now,
            used: 0,
            unaudited: 0,
        }
    }

    /// `Some(n)`: audit this refusal, noting the `n` before it that were not;
    /// `None`: only count it.
    fn take(&mut self, now: Instant) -> Option<u64> {
        if now.duration_since(self.window_start) >= AUDIT_WINDOW {
            self.window_start = now;
            self.used = 0;
        }
        if self.used < AUDITS_PER_WINDOW {
            self.used += 1;
            Some(std::mem::take(&mut self.unaudited))
        } else {
            self.unaudited += 1;
            None
        }
    }
}

/// The method of a call to service `service` (`/pkg.Service/Method` -> `Method`).
fn method_of<'a>(path: &'a str, service: &str) -> Option<&'a str> {
    path.strip_prefix('/')?
        .strip_prefix(service)?
        .strip_prefix('/')
        .filter(|m| !m.is_empty() && !m.contains('/'))
}

/// A gRPC service behind [`PushAuth`]: calls that may not go through are answered
/// with the refusal and never reach it.
#[derive(Debug, Clone)]
pub struct Authenticated<S> {
    inner: S,
    auth: Arc<PushAuth>,
}

impl<S> Authenticated<S> {
    /// `inner`, behind `auth`.
    pub fn new(inner: S, auth: Arc<PushAuth>) -> Self {
        Authenticated { inner, auth }
    }
}

impl<S: NamedService> NamedService for Authenticated<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for Authenticated<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + NamedService
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let method = method_of(req.uri().path(), S::NAME);
        let decision = self
            .auth
            .check(method, req.headers(), OffsetDateTime::now_utc());
        let method = method.unwrap_or(req.uri().path()).to_owned();
        let peer = req
            .extensions()
            .get::<tonic::transport::server::TcpConnectInfo>()
            .and_then(|i| i.remote_addr());
        let auth = self.auth.clone();
        // The instance polled ready serves this call; the next call gets a clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            match decision {
                Ok(Caller::Admin(account)) => {
                    // HQ-owned state changed by a person on site: worth a line.
                    auth.audit(account, "hq.push.admin", method).await;
                    inner.call(req).await
                }
                Ok(_) => inner.call(req).await,
                Err(refusal) => Ok(auth.refuse(&method, peer, refusal).await.into_http()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_security::auth::roles::Principal;
    use outpost_security::push_token::{PushToken, PushTokenSigner};

    const SECRET: [u8; 32] = [5; 32];

    /// An `Access` over a fresh data dir, trusting `SECRET`'s public key when `hq_key`.
    fn access(dir: &std::path::Path, hq_key: bool) -> Arc<Access> {
        let s = if hq_key {
            let hq = outpost_security::lease::HqSigner::from_bytes(SECRET);
            crate::access::testing::enrolled_settings(dir, &hq)
        } else {
            let mut s = crate::config::Settings {
                data_dir: dir.to_owned(),
                ..crate::config::Settings::default()
            };
            s.security.allow_software = true;
            s.security.password_hashing = "fast".into();
            s
        };
        crate::access::open_data_dir(&s, &crate::store::StoreOptions::default())
            .unwrap()
            .1
    }

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn token(signer: &PushTokenSigner, store: &str, unit: &str, at: OffsetDateTime) -> String {
        signer
            .sign_text(&PushToken::new(store, unit, at, time::Duration::minutes(5)))
            .unwrap()
    }

    fn code(r: Result<Caller, Refusal>) -> Code {
        r.map(|_| Code::Ok).unwrap_or_else(|e| e.code)
    }

    #[test]
    fn reads_are_open_and_everything_else_needs_a_credential() {
        let dir = tempfile::tempdir().unwrap();
        let auth = PushAuth::new(access(dir.path(), false), "store-1", "unit-1");
        let now = OffsetDateTime::now_utc();
        for m in READS {
            assert_eq!(auth.check(Some(m), &headers(&[]), now), Ok(Caller::Anyone));
        }
        for m in [
            Some("PushCatalog"),
            Some("PushTaxRates"),
            Some("SendCommand"),
            Some("SomethingNew"),
            None,
        ] {
            let e = auth.check(m, &headers(&[]), now).unwrap_err();
            assert_eq!(e.code, Code::Unauthenticated, "{m:?}");
            assert!(
                e.status("PushTaxRates")
                    .message()
                    .contains(PUSH_TOKEN_METADATA)
            );
        }
    }

    #[test]
    fn push_tokens_hold_only_for_this_unit_within_their_time_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let auth = PushAuth::new(access(dir.path(), true), "store-1", "unit-1");
        let hq = PushTokenSigner::from_bytes(SECRET);
        let now = OffsetDateTime::now_utc();
        let with = |t: &str| headers(&[(PUSH_TOKEN_METADATA, t)]);
        let ok = token(&hq, "store-1", "unit-1", now);
        assert_eq!(
            auth.check(Some("PushTaxRates"), &with(&ok), now),
            Ok(Caller::Hq)
        );
        let cases = [
            (token(&hq, "store-1", "unit-2", now), "unit \"unit-2\""),
            (token(&hq, "store-9", "unit-1", now), "store \"store-9\""),
            (
                token(&hq, "store-1", "unit-1", now - time::Duration::minutes(20)),
                "expired",
            ),
            (
                token(
                    &PushTokenSigner::from_bytes([6; 32]),
                    "store-1",
                    "unit-1",
                    now,
                ),
                "not signed by the HQ key",
            ),
            ("bm9wZQ==".to_owned(), "too short"),
        ];
        for (t, why) in cases {
            let e = auth
                .check(Some("PushTaxRates"), &with(&t), now)
                .unwrap_err();
            assert_eq!(e.code, Code::PermissionDenied, "{why}");
            assert!(e.reason.contains(why), "{} !~ {why}", e.reason);
        }
        // A bad token is not rescued by an admin session beside it.
        let admin = auth.access.start_session(Principal {
            name: "root".into(),
            roles: vec![Role::Admin],
        });
        let bearer = format!("Bearer {admin}");
        let bad = token(&hq, "store-1", "unit-2", now);
        let both = headers(&[(PUSH_TOKEN_METADATA, &bad), ("authorization", &bearer)]);
        assert_eq!(
            code(auth.check(Some("PushTaxRates"), &both, now)),
            Code::PermissionDenied
        );
    }

    #[test]
    fn a_token_on_a_unit_without_an_hq_key_is_refused_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let auth = PushAuth::new(access(dir.path(), false), "store-1", "unit-1");
        let now = OffsetDateTime::now_utc();
        let t = token(
            &PushTokenSigner::from_bytes(SECRET),
            "store-1",
            "unit-1",
            now,
        );
        let e = auth
            .check(
                Some("PushTaxRates"),
                &headers(&[(PUSH_TOKEN_METADATA, &t)]),
                now,
            )
            .unwrap_err();
        assert_eq!(e.code, Code::PermissionDenied);
        assert!(e.reason.contains("hq_public_key"), "{}", e.reason);
    }

    #[test]
    fn only_a_live_admin_session_may_push() {
        let dir = tempfile::tempdir().unwrap();
        let access = access(dir.path(), false);
        let auth = PushAuth::new(access.clone(), "store-1", "unit-1");
        let now = OffsetDateTime::now_utc();
        let session = |name: &str, roles: Vec<Role>| {
            access.start_session(Principal {
                name: name.into(),
                roles,
            })
        };
        let bearer = |id: &str| headers(&[("authorization", &format!("Bearer {id}"))]);
        let admin = session("alice", vec![Role::Technician, Role::Admin]);
        assert_eq!(
            auth.check(Some("PushDeviceConfig"), &bearer(&admin), now),
            Ok(Caller::Admin("alice".into()))
        );
        let supervisor = session("bob", vec![Role::Supervisor, Role::Technician]);
        let e = auth
            .check(Some("PushDeviceConfig"), &bearer(&supervisor), now)
            .unwrap_err();
        assert_eq!(
            (e.code, e.account.as_deref()),
            (Code::PermissionDenied, Some("bob"))
        );
        assert!(e.reason.contains("admin role"), "{}", e.reason);
        access.end_session(&admin);
        assert_eq!(
            code(auth.check(Some("PushDeviceConfig"), &bearer(&admin), now)),
            Code::PermissionDenied
        );
        for value in ["Basic YWxpY2U6eA==", "Bearer ", "bearer x"] {
            let h = headers(&[("authorization", value)]);
            assert_eq!(
                code(auth.check(Some("PushDeviceConfig"), &h, now)),
                Code::PermissionDenied,
                "{value}"
            );
        }
    }

    #[test]
    fn the_method_is_read_from_this_service_s_paths_only() {
        let svc = "outpost.hq.v1.StoreService";
        assert_eq!(
            method_of("/outpost.hq.v1.StoreService/GetStatus", svc),
            Some("GetStatus")
        );
        for path in [
            "/outpost.hq.v1.StoreServiceX/GetStatus",
            "/other.Service/GetStatus",
            "/outpost.hq.v1.StoreService/",
            "/outpost.hq.v1.StoreService/GetStatus/x",
            "outpost.hq.v1.StoreService/GetStatus",
        ] {
            assert_eq!(method_of(path, svc), None, "{path}");
        }
    }

    #[test]
    fn refusals_past_the_budget_are_counted_into_the_next_audited_one() {
        let t0 = Instant::now();
        let mut b = AuditBudget::new(t0);
        for _ in 0..AUDITS_PER_WINDOW {
            assert_eq!(b.take(t0), Some(0));
        }
        assert_eq!(b.take(t0), None);
        assert_eq!(b.take(t0 + Duration::from_secs(1)), None);
        assert_eq!(b.take(t0 + AUDIT_WINDOW), Some(2));
        assert_eq!(b.take(t0 + AUDIT_WINDOW), Some(0));
    }
}
