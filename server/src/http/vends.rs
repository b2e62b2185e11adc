//! Selling one vend: the machine's keypad (or its screen) asks for a slot, the vend
//! runs to its end over the cashless reader (or the cash credit) and the dispenser,
//! and its outcome comes back (`docs/vending.md`).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, post, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::Caller;
use super::body::JsonBody;
use super::{ApiError, AppState, idempotency_key};
use crate::domain::vending::{PayMethod, SlotId, VendRecord, VendState};
use crate::sales::idempotency::fingerprint;
use crate::vending::{VendError, VendRequestKey};
use outpost_security::auth::roles::Permission;

/// What the customer chose.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VendBody {
    /// The slot, tray letter and column as on the keypad label (`B7`).
    #[schema(pattern = "^[A-Z][1-9][0-9]?$")]
    pub slot: String,
    /// How the customer pays: `cashless` (the default; the MDB cashless reader) or
    /// `cash` (the credit of coins and notes already inserted; the rest comes back
    /// as change).
    #[serde(default)]
    pub method: Option<PayMethod>,
}

/// A vend as it ended (or, with 202, as it stands while its outcome is not known).
#[derive(Debug, Serialize, ToSchema)]
pub struct VendView {
    /// The vend's id; a completed vend's sale has the same id.
    pub id: Uuid,
    /// The slot.
    pub slot: String,
    /// The product, as the slot held it at selection.
    pub sku: String,
    /// The price charged (or that would have been), in minor units.
    pub price: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// How it was paid.
    pub method: PayMethod,
    /// `completed` (sold), `failed` (nothing sold, nothing charged), `unpaid` (the
    /// product dropped and no charge could be recorded), or a state still open.
    pub state: VendState,
    /// Why it failed or went unpaid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Unpaid, and the charge may still appear in the cashless provider's settlement.
    pub capture_in_doubt: bool,
    /// When it was selected (RFC 3339).
    pub created_at: String,
    /// When it last changed state (RFC 3339).
    pub updated_at: String,
}

impl From<&VendRecord> for VendView {
    fn from(r: &VendRecord) -> Self {
        let at = |t: time::OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        };
        VendView {
            id: r.id,
            slot: r.slot.to_string(),
            sku: r.sku.as_str().to_owned(),
            price: r.price.minor(),
            currency: r.cart.currency.code().to_owned(),
            method: r.method,
            state: r.state(),
            failure: r.failure.clone(),
            capture_in_doubt: r.capture_in_doubt,
            created_at: at(r.created_at),
            updated_at: at(r.updated_at),
        }
    }
}

/// The vend `id` as an answer: 202 while open, else `status`.
fn answer(
    state: &AppState,
    id: Uuid,
    status: actix_web::http::StatusCode,
    replayed: bool,
) -> Result<HttpResponse, ApiError> {
    let r = crate::vending::get(state.sales.store(), id)?.ok_or_else(|| {
        VendError::Internal(format!("vend {id} is bound to a key but not recorded"))
    })?;
    let mut resp = if r.state().is_final() {
        HttpResponse::build(status)
    } else {
        HttpResponse::Accepted()
    };
    if replayed {
        resp.insert_header(("Idempotent-Replayed", "true"));
    }
    Ok(resp.json(VendView::from(&r)))
}

/// Sell one product from a slot: the customer pays on the cashless reader (VEND
/// REQUEST), the spiral turns, the drop sensor confirms, and the charge is taken
/// (VEND SUCCESS) or given back (VEND FAILURE). Or the customer pays with the
/// machine's cash credit (`"method": "cash"`): the note in escrow is stacked only
/// when the vend can be paid and changed, the price comes off the credit, and after
/// the drop the rest is paid back as change (a product that does not drop leaves its
/// price in the credit). Runs to its end before answering (up to the reader's wait
/// for a card). Needs an `Idempotency-Key`: a retry with it gets the vend it started,
/// never a second vend.
#[utoipa::path(
    tag = "vending",
    params(("Idempotency-Key" = String, Header, pattern = "^[!-~]{1,255}$", description = "1 to 255 visible ASCII characters, unique per vend, reused on retry")),
    request_body = VendBody,
    responses(
        (status = 201, body = VendView, description = "the vend ended: `completed`, `failed` (declined, not dispensed) or `unpaid`"),
        (status = 200, body = VendView, description = "a retry: the vend this key started, ended (`Idempotent-Replayed: true`)"),
        (status = 202, body = VendView, description = "the vend's outcome is not known yet (a device's answer was lost): recovery finishes it; retry with the same key"),
        (status = 400, body = super::ErrorBody, description = "no or a bad Idempotency-Key, or a bad slot"),
        (status = 404, body = super::ErrorBody, description = "no such slot"),
        (status = 409, body = super::ErrorBody, description = "the slot cannot sell (`slot_not_sellable`) or another vend is running (`vend_in_progress`)"),
        (status = 422, body = super::ErrorBody, description = "the key was used for another request (`idempotency_key_reused`); cash: the machine has no coin changer or bill validator (`method_not_supported`), the credit is below the price (`insufficient_credit`), or the tubes cannot pay the change (`no_change`; a note in escrow is returned). Nothing was charged or dropped"),
        (status = 503, body = super::ErrorBody, description = "no dispenser, or no cashless reader (cashless) configured (`device_unavailable`)"),
    )
)]
#[post("/api/v1/vending/vends")]
pub async fn vend(
    caller: Caller,
    req: HttpRequest,
    state: web::Data<AppState>,
    body: JsonBody<VendBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::Sell)?;
    super::require_unlocked(&state)?;
    let key = idempotency_key(&req)?;
    let b = body.0;
    let slot = SlotId::parse(&b.slot)
        .map_err(|e| ApiError::bad_request("invalid_slot", e.to_string()).field("slot"))?;
    let method = b.method.unwrap_or(PayMethod::Cashless);
    let fp = fingerprint("vend", &(slot.to_string(), method));
    // A retry finds its vend, open or ended, without waiting for the machine.
    if let Some((used, id)) = crate::vending::by_request_key(state.sales.store(), &key)? {
        if used != fp {
            return Err(VendError::KeyReused.into());
        }
        return answer(&state, id, StatusCode::OK, true);
    }
    let request = VendRequestKey {
        key,
        fingerprint: fp,
    };
    // The vend runs in its own task: a client that hangs up does not cut it short
    // (it would be left open for recovery); its retry with the key finds it.
    let vending = state.vending.clone();
    let keyed = request.clone();
    let run =
        actix_web::rt::spawn(async move { vending.vend_keyed(slot, method, Some(keyed)).await });
    let ran = run
        .await
        .map_err(|e| VendError::Internal(format!("the vend's task failed: {e}")))?;
    match ran {
        Ok(r) => answer(&state, r.id, StatusCode::CREATED, false),
        Err(VendError::KeyUsed(id)) => answer(&state, id, StatusCode::OK, true),
        Err(VendError::OutcomeUnknown) => {
            match crate::vending::by_request_key(state.sales.store(), &request.key)? {
                Some((_, id)) => answer(&state, id, StatusCode::ACCEPTED, false),
                None => Err(VendError::OutcomeUnknown.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}
