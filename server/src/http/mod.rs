//! The REST API v1 (actix-web), described by `/api/v1/openapi.json`.
//!
//! # Layout
//! - [`error`]: API errors and their JSON body.
//! - [`body`]: the JSON body extractor (content type, size limit, field-level errors).
//! - [`headers`]: `Idempotency-Key` and `X-Terminal-Id`, parsed into their domain types.
//! - [`catalog`]: products and promotions.
//! - [`pushed`]: the tax table and the planogram HQ pushed.
//! - [`inventory`]: stock levels, counts and adjustments.
//! - [`selling`]: cart pricing, checkout, sales and refunds.
//! - [`customers`]: loyalty customers by card or id.
//! - [`devices`]: the device list, health checks, receipt reprints and the queue.
//! - [`device_inputs`]: a scale's weight, a scanner's scans.
//! - [`ops`]: health, metrics and the OpenAPI document; [`observe`]: the request and
//!   checkout counters behind `/metrics`; [`process`]: memory, files, CPU and disk.
//! - [`auth`]: login, logout and the audit log; [`admin`]: staff accounts and
//!   terminal tokens.
//! - [`vending`]: a vending site's slots (list, edit, refill, count) and its DEX audit.
//! - [`vending_drift`]: the planogram drift report (the slots' counts over time).
//! - [`vending_credit`]: the customer's cash credit for the machine's screen, and the
//!   coin return button.
//! - [`shopper`]: the store QR, shopper sessions and their carts.
//! - [`vends`]: selling one vend.
//! - [`gate`]: what a locked enrolled unit serves until a factor opens its data key.
//!
//! Every route is listed once, in [`api!`]: the same list registers the handlers and
//! builds the OpenAPI document, so the two cannot drift apart.

pub mod admin;
pub mod auth;
pub mod body;
pub mod catalog;
pub mod customers;
pub mod device_inputs;
pub mod devices;
pub mod error;
pub mod exact;
pub mod exit_checks;
use exact::Exact;
pub mod gate;
pub mod headers;
pub mod inventory;
pub mod mesh;
pub mod observe;
pub mod ops;
pub mod process;
pub mod pushed;
pub mod qr_payments;
pub mod selling;
pub mod shopper;
pub mod shopper_pay;
pub mod updates;
pub mod vending;
pub mod vending_credit;
pub mod vending_drift;
pub mod vends;

use std::sync::Arc;
use std::time::Instant;

use actix_web::{HttpRequest, HttpResponse, web};

use crate::config::Settings;
use crate::sales::Sales;
pub use error::{ApiError, ErrorBody};
pub use headers::{idempotency_key, terminal_id};

/// What handlers share.
pub struct AppState {
    /// The selling service (and through it, the store).
    pub sales: Sales,
    /// The settings this run started with.
    pub settings: Arc<Settings>,
    /// When the server started.
    pub started: Instant,
    /// The HQ uplink's state.
    pub sync: Arc<crate::hq::uplink::SyncState>,
    /// The device registry: printer, drawer, display, payment terminal.
    pub devices: Arc<crate::devices::Registry>,
    /// This unit's store-mesh node, when `[p2p] enabled`.
    pub mesh: Option<outpost_p2p::Client>,
    /// Credentials, sessions and the audit log.
    pub security: Arc<crate::access::Access>,
    /// Whether the REST port serves TLS (session cookies are then `Secure`).
    pub tls: bool,
    /// The vending machine: vends over its cashless reader and dispenser.
    pub vending: crate::vending::Vending,
    /// Notified when an update switched to a new release: the server then stops
    /// gracefully and its supervisor starts the new one.
    pub restart: Arc<tokio::sync::Notify>,
    /// The open shopper sessions (self-checkout on the shopper's phone).
    pub shoppers: Arc<crate::shopper::Sessions>,
}

/// `423 device_locked` when the presence lease does not allow transacting.
pub fn require_unlocked(state: &AppState) -> Result<(), ApiError> {
    state.security.check_transact().map_err(|locked| {
        ApiError::new(
            actix_web::http::StatusCode::LOCKED,
            "device_locked",
            locked.reason,
        )
    })
}

macro_rules! api {
    ($($handler:path),* $(,)?) => {
        /// Register every route.
        pub fn register(cfg: &mut web::ServiceConfig) {
            $( cfg.service($handler); )*
        }

        /// The OpenAPI document of every route.
        #[derive(utoipa::OpenApi)]
        #[openapi(
            info(title = "Outpost store API", description = "Sell, price, count stock and look up the catalog of one store, with no WAN needed."),
            paths($($handler),*),
            components(schemas(ErrorBody)),
            modifiers(&SecurityAddon, &CommonResponses, &Exact),
            security(("terminal_token" = []), ("session_cookie" = []))
        )]
        pub struct ApiDoc;

        /// How many handlers [`register`] registers.
        pub const ROUTE_COUNT: usize = [$(stringify!($handler)),*].len();
    };
}

api!(
    ops::healthz,
    ops::metrics,
    ops::openapi,
    ops::sync_status,
    ops::security_status,
    auth::login,
    auth::logout,
    auth::audit,
    admin::list_terminals,
    admin::add_terminal,
    admin::revoke_terminal,
    admin::list_users,
    admin::put_user,
    admin::disable_user,
    catalog::get_product,
    catalog::list_products,
    catalog::list_promotions,
    pushed::get_tax_rates,
    pushed::get_planogram,
    inventory::get_inventory,
    inventory::put_inventory,
    inventory::post_adjustment,
    selling::price_cart,
    selling::checkout,
    selling::get_sale,
    selling::list_sales,
    selling::post_refund,
    customers::get_customer,
    devices::list_devices,
    devices::health_check,
    devices::reprint,
    devices::receipt_queue,
    devices::last_receipt,
    device_inputs::get_weight,
    device_inputs::get_scans,
    mesh::peers,
    updates::get_update,
    updates::post_update,
    updates::post_rollback,
    vending::list_slots,
    vending::get_slot,
    vending::put_slot,
    vending::delete_slot,
    vending::refill_slot,
    vending::count_slot,
    vending::get_dex,
    vending::reset_dex,
    vending::list_alerts,
    vending::clear_temperature,
    vending_drift::get_drift,
    vending_credit::get_credit,
    vending_credit::return_credit,
    shopper::store_qr,
    shopper::open_session,
    shopper::products,
    shopper::get_cart,
    shopper::add_line,
    shopper::remove_line,
    shopper::put_customer,
    shopper::delete_customer,
    shopper_pay::start_checkout,
    shopper_pay::get_checkout,
    shopper_pay::cancel_checkout,
    exit_checks::get_exit_check,
    exit_checks::pass_exit_check,
    qr_payments::notify,
    qr_payments::code,
    vends::vend,
);

/// Adds the two ways to authenticate to the OpenAPI document: a terminal's bearer
/// token and a staff session cookie. `/healthz`, `/api/v1/openapi.json` and the login
/// route override the document-wide requirement with none.
struct SecurityAddon;

impl utoipa::Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "terminal_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("Per-terminal token from `outpost terminals add NAME`"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::access::SESSION_COOKIE,
                "Staff session from POST /api/v1/auth/login",
            ))),
        );
        components.add_security_scheme(
            "metrics_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "Prometheus's scrape token (`[metrics] token_file`, made by `outpost metrics-token FILE`): reads /metrics only",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "shopper_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::shopper::SHOPPER_COOKIE,
                "Shopper session from POST /api/v1/shopper/sessions (the /api/v1/shopper/ routes only)",
            ))),
        );
    }
}

/// Adds the answers every operation can give, whatever its handler: `401` and `403`
/// where credentials are needed, `400` where it takes parameters (a malformed or
/// unknown query, a bad path) or a body (malformed JSON), `413` and `415` where it takes
/// a body; each with the error body. A generated client then handles every answer the server can give.
struct CommonResponses;

impl utoipa::Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                let public = op.security.as_ref().is_some_and(|reqs| {
                    reqs.iter()
                        .all(|r| serde_json::to_value(r).is_ok_and(|v| v == serde_json::json!({})))
                });
                let params = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
                let body = op.request_body.is_some();
                let mut add = |status: &str, description: &str| {
                    op.responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| error(description).into());
                };
                if !public {
                    add("401", "No or unknown credentials (`unauthorized`)");
                    add("403", "The caller's role may not do this (`forbidden`)");
                }
                if params || body {
                    add(
                        "400",
                        "A malformed or unknown parameter, or malformed JSON (`invalid_query`, `invalid_path`, `invalid_json`, …)",
                    );
                }
                if body {
                    add("413", "The body is larger than `http.max_body_bytes`");
                    add("415", "The body is not `application/json`");
                }
            }
        }
    }
}

/// The answer to a request no route serves: `405 Method Not Allowed` with `Allow` when
/// the path is one the API serves with other methods (from the OpenAPI document, so
/// the two cannot disagree), else `404`.
pub async fn no_such_route(req: HttpRequest) -> HttpResponse {
    use actix_web::ResponseError;
    let allowed = allowed_methods(req.path());
    if !allowed.is_empty() {
        return ApiError::new(
            actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!(
                "{} does not serve {}; it serves {}",
                req.path(),
                req.method(),
                allowed.join(", ")
            ),
        )
        .header("allow", allowed.join(", "))
        .error_response();
    }
    ApiError::not_found(
        "no_such_route",
        format!("no route serves {} {}", req.method(), req.path()),
    )
    .error_response()
}

/// The methods the OpenAPI document lists for the path template `path` matches
/// (`{name}` matches one non-empty segment), upper case and sorted.
fn allowed_methods(path: &str) -> Vec<String> {
    static ROUTES: std::sync::OnceLock<Vec<(Vec<String>, Vec<String>)>> =
        std::sync::OnceLock::new();
    let routes = ROUTES.get_or_init(|| {
        let doc = serde_json::to_value(<ApiDoc as utoipa::OpenApi>::openapi()).unwrap_or_default();
        let mut out = Vec::new();
        if let Some(paths) = doc["paths"].as_object() {
            for (template, item) in paths {
                let segments = template.split('/').map(str::to_owned).collect();
                let mut methods: Vec<String> = item
                    .as_object()
                    .map(|m| {
                        m.keys()
                            .filter(|k| {
                                ["get", "put", "post", "delete", "patch"].contains(&k.as_str())
                            })
                            .map(|k| k.to_uppercase())
                            .collect()
                    })
                    .unwrap_or_default();
                methods.sort();
                out.push((segments, methods));
            }
        }
        out
    });
    let parts: Vec<&str> = path.split('/').collect();
    let mut allowed: Vec<String> = routes
        .iter()
        .filter(|(template, _)| {
            template.len() == parts.len()
                && template.iter().zip(&parts).all(|(t, p)| {
                    t == p || (t.starts_with('{') && t.ends_with('}') && !p.is_empty())
                })
        })
        .flat_map(|(_, m)| m.iter().cloned())
        .collect();
    allowed.sort();
    allowed.dedup();
    allowed
}

/// App-wide handlers for query and path extraction errors, so they too answer JSON.
pub fn extractor_config(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::QueryConfig::default()
            .error_handler(|e, _| ApiError::bad_request("invalid_query", e.to_string()).into()),
    )
    .app_data(
        web::PathConfig::default()
            .error_handler(|e, _| ApiError::bad_request("invalid_path", e.to_string()).into()),
    );
}
