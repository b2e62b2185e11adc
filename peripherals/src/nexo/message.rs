//! The nexo-style messages Outpost speaks, as serde types (see `docs/nexo.md`).
//!
//! Every message is one JSON object, `{"SaleToPOIRequest": {...}}` or
//! `{"SaleToPOIResponse": {...}}`, holding a [`MessageHeader`] and exactly one body
//! whose name says what it is (`PaymentRequest`, `TransactionStatusResponse`, ...).
//! [`parse_message`] decodes and checks that the header agrees with the body, so a
//! message that decodes is one the driver and the simulator can act on.

use serde::{Deserialize, Serialize};

/// The protocol version Outpost writes in every header.
pub const PROTOCOL_VERSION: &str = "3.0";

/// The longest ServiceID (the caller's key) the protocol carries, in bytes.
pub const MAX_SERVICE_ID: usize = 64;

/// What kind of exchange a message belongs to. Only `Service` is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageClass {
    /// A request the sale system makes and the terminal answers.
    Service,
}

/// Which service a message is about.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MessageCategory {
    /// A card payment or (with `PaymentType` `Refund`) a refund.
    Payment,
    /// Reversal of an approved payment (a void).
    Reversal,
    /// What happened to an earlier payment, by its ServiceID.
    TransactionStatus,
    /// Cancel a payment still waiting for the card. Has no response of its own.
    Abort,
    /// Is the terminal there and ready.
    Diagnosis,
}

/// Whether a message asks or answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageType {
    /// From the sale system to the terminal.
    Request,
    /// From the terminal to the sale system.
    Response,
}

/// The header of every message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MessageHeader {
    /// Always [`PROTOCOL_VERSION`] when Outpost writes it; not checked when read.
    pub protocol_version: String,
    /// Always `Service`.
    pub message_class: MessageClass,
    /// Must agree with the body.
    pub message_category: MessageCategory,
    /// Must agree with the envelope.
    pub message_type: MessageType,
    /// For Payment: the caller's key. For other requests: an id the sale system picks
    /// for that message. A response carries its request's ServiceID.
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    /// The sale system (the Outpost unit).
    #[serde(rename = "SaleID")]
    pub sale_id: String,
    /// The terminal.
    #[serde(rename = "POIID")]
    pub poi_id: String,
}

impl MessageHeader {
    /// A header with the current protocol version.
    pub fn new(
        category: MessageCategory,
        message_type: MessageType,
        service_id: impl Into<String>,
        sale_id: impl Into<String>,
        poi_id: impl Into<String>,
    ) -> Self {
        Self {
            protocol_version: PROTOCOL_VERSION.to_owned(),
            message_class: MessageClass::Service,
            message_category: category,
            message_type,
            service_id: service_id.into(),
            sale_id: sale_id.into(),
            poi_id: poi_id.into(),
        }
    }

    /// The header of the response to a request with this header.
    pub fn response(&self) -> Self {
        Self {
            message_type: MessageType::Response,
            ..self.clone()
        }
    }
}

/// One message on the wire.
// A response is a few hundred bytes larger than a request; messages live one at a
// time per exchange, so boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// From the sale system.
    #[serde(rename = "SaleToPOIRequest")]
    Request(Request),
    /// From the terminal.
    #[serde(rename = "SaleToPOIResponse")]
    Response(Response),
}

impl Message {
    /// The message's header.
    pub fn header(&self) -> &MessageHeader {
        match self {
            Message::Request(r) => &r.header,
            Message::Response(r) => &r.header,
        }
    }
}

/// A request: a header and one body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The header.
    #[serde(rename = "MessageHeader")]
    pub header: MessageHeader,
    /// The body, named after its kind.
    #[serde(flatten)]
    pub body: RequestBody,
}

/// A response: a header and one body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// The header.
    #[serde(rename = "MessageHeader")]
    pub header: MessageHeader,
    /// The body, named after its kind.
    #[serde(flatten)]
    pub body: ResponseBody,
}

/// The body of a request.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RequestBody {
    /// Charge or refund.
    PaymentRequest(PaymentRequest),
    /// Reverse an approved payment.
    ReversalRequest(ReversalRequest),
    /// Ask about an earlier payment.
    TransactionStatusRequest(TransactionStatusRequest),
    /// Cancel a payment in progress.
    AbortRequest(AbortRequest),
    /// Is the terminal ready.
    DiagnosisRequest(DiagnosisRequest),
}

impl RequestBody {
    /// The header category this body needs.
    pub fn category(&self) -> MessageCategory {
        match self {
            RequestBody::PaymentRequest(_) => MessageCategory::Payment,
            RequestBody::ReversalRequest(_) => MessageCategory::Reversal,
            RequestBody::TransactionStatusRequest(_) => MessageCategory::TransactionStatus,
            RequestBody::AbortRequest(_) => MessageCategory::Abort,
            RequestBody::DiagnosisRequest(_) => MessageCategory::Diagnosis,
        }
    }
}

/// The body of a response.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ResponseBody {
    /// The outcome of a payment or refund.
    PaymentResponse(PaymentResponse),
    /// The outcome of a reversal.
    ReversalResponse(ReversalResponse),
    /// What the terminal knows about an earlier payment.
    TransactionStatusResponse(TransactionStatusResponse),
    /// The terminal's state.
    DiagnosisResponse(DiagnosisResponse),
}

impl ResponseBody {
    /// The header category this body needs.
    pub fn category(&self) -> MessageCategory {
        match self {
            ResponseBody::PaymentResponse(_) => MessageCategory::Payment,
            ResponseBody::ReversalResponse(_) => MessageCategory::Reversal,
            ResponseBody::TransactionStatusResponse(_) => MessageCategory::TransactionStatus,
            ResponseBody::DiagnosisResponse(_) => MessageCategory::Diagnosis,
        }
    }
}

/// A payment or a refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PaymentRequest {
    /// How much, in what.
    pub amounts_req: AmountsReq,
    /// Normal or refund; a normal payment when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_data: Option<PaymentData>,
    /// What the terminal may take; anything it accepts when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_conditions: Option<TransactionConditions>,
}

/// The most payment brands one request may allow.
pub const MAX_ALLOWED_BRANDS: usize = 16;

/// The longest payment brand name, in bytes.
pub const MAX_BRAND: usize = 32;

/// Conditions on how a payment may be made (nexo `TransactionConditions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TransactionConditions {
    /// The only payment brands the terminal may accept, e.g. `ApplePay`; 1 to
    /// [`MAX_ALLOWED_BRANDS`] names of 1 to [`MAX_BRAND`] printable ASCII characters.
    pub allowed_payment_brand: Vec<String>,
}

impl PaymentRequest {
    /// The payment brands this request allows, or `None` for any.
    pub fn allowed_brands(&self) -> Option<&[String]> {
        self.transaction_conditions
            .as_ref()
            .map(|c| c.allowed_payment_brand.as_slice())
    }

    /// Whether this is a refund.
    pub fn is_refund(&self) -> bool {
        matches!(
            self.payment_data,
            Some(PaymentData {
                payment_type: PaymentType::Refund
            })
        )
    }
}

/// The amount of a payment. Unlike nexo's decimal amounts, `RequestedAmount` is an
/// integer count of the currency's minor units (cents), so no float is ever involved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AmountsReq {
    /// ISO 4217 code, three upper-case letters.
    pub currency: String,
    /// Minor units, greater than zero.
    pub requested_amount: i64,
}

/// What kind of payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PaymentData {
    /// Normal or refund.
    pub payment_type: PaymentType,
}

/// Normal payment or refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentType {
    /// Money from the card.
    Normal,
    /// Money to the card.
    Refund,
}

/// Success or failure of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResponseResult {
    /// Success or failure.
    pub result: ResultCode,
    /// Why it failed; absent on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_condition: Option<ErrorCondition>,
    /// Free text for the cashier (a decline reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_response: Option<String>,
}

impl ResponseResult {
    /// A success.
    pub fn success() -> Self {
        Self {
            result: ResultCode::Success,
            error_condition: None,
            additional_response: None,
        }
    }

    /// A failure with a condition and a reason.
    pub fn failure(condition: ErrorCondition, reason: impl Into<String>) -> Self {
        Self {
            result: ResultCode::Failure,
            error_condition: Some(condition),
            additional_response: Some(reason.into()),
        }
    }
}

/// Success or failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResultCode {
    /// Done.
    Success,
    /// Not done; see the error condition.
    Failure,
}

/// Why a request failed (the nexo names Outpost uses).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCondition {
    /// The card issuer or the terminal declined.
    Refusal,
    /// The customer cancelled on the terminal.
    Cancel,
    /// The sale system aborted the payment.
    Aborted,
    /// The terminal is busy with another transaction and did not start this one.
    Busy,
    /// Not allowed (a ServiceID already used, reversing a declined payment).
    NotAllowed,
    /// The message was malformed or inconsistent.
    MessageFormat,
    /// TransactionStatus: the payment is still running.
    InProgress,
    /// TransactionStatus or Reversal: no payment under that ServiceID.
    NotFound,
    /// The terminal cannot do it now.
    UnavailableService,
}

/// The answer to a payment or refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PaymentResponse {
    /// Success (approved) or failure (declined, refused, ...).
    pub response: ResponseResult,
    /// What was approved; present on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_result: Option<PaymentResult>,
}

/// The receipt-free summary of an approved payment: no card data beyond what a
/// receipt may show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PaymentResult {
    /// Card brand, e.g. `VISA`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_brand: Option<String>,
    /// The card number masked to its last four digits, e.g. `************4242`.
    #[serde(rename = "MaskedPAN", default, skip_serializing_if = "Option::is_none")]
    pub masked_pan: Option<String>,
    /// The acquirer's authorization code.
    pub approval_code: String,
    /// The amount approved, in minor units.
    pub authorized_amount: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Whether the acquirer authorised it (`true`) or the terminal approved it alone
    /// while the acquirer was unreachable and queued it to forward (`false`); online
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online_flag: Option<bool>,
    /// An identity of the card or wallet without card data, the same for each payment
    /// with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_token: Option<PaymentToken>,
}

/// A token standing for the card (nexo `PaymentToken`), never the card number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PaymentToken {
    /// The token.
    pub token_value: String,
}

/// A reference to an earlier payment, by its ServiceID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MessageReference {
    /// Always `Payment` in Outpost's subset.
    pub message_category: MessageCategory,
    /// The payment's ServiceID (the caller's key).
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    /// The sale system that made it.
    #[serde(rename = "SaleID")]
    pub sale_id: String,
}

/// Reverse (void) an approved payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReversalRequest {
    /// The payment to reverse.
    #[serde(rename = "OriginalPOITransaction")]
    pub original: MessageReference,
    /// Why, e.g. `MerchantCancel`.
    pub reversal_reason: String,
}

/// The answer to a reversal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReversalResponse {
    /// Success, or failure with `NotFound` / `NotAllowed`.
    pub response: ResponseResult,
}

/// Ask what happened to an earlier payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TransactionStatusRequest {
    /// The payment asked about.
    pub message_reference: MessageReference,
}

/// What the terminal knows about an earlier payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TransactionStatusResponse {
    /// Success with the repeated response, or failure with `InProgress` / `NotFound`.
    pub response: ResponseResult,
    /// The latest response the terminal gave for that payment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeated_message_response: Option<RepeatedMessageResponse>,
}

/// The latest answer for an earlier payment, repeated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RepeatedMessageResponse {
    /// The header of that answer.
    pub message_header: MessageHeader,
    /// That answer.
    pub repeated_response_message_body: RepeatedBody,
}

/// A repeated answer: the payment's own, or the reversal's when it was reversed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RepeatedBody {
    /// The payment's outcome.
    PaymentResponse(PaymentResponse),
    /// The payment was reversed.
    ReversalResponse(ReversalResponse),
}

/// Cancel a payment still waiting for the card. The terminal sends no response; the
/// aborted payment itself answers `Failure` / `Aborted`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AbortRequest {
    /// The payment to cancel.
    pub message_reference: MessageReference,
    /// Why, e.g. `MerchantAbort`.
    pub abort_reason: String,
}

/// Ask whether the terminal is there and ready. Empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiagnosisRequest {}

/// The terminal's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DiagnosisResponse {
    /// Success when it could tell.
    pub response: ResponseResult,
    /// Its state.
    #[serde(rename = "POIStatus")]
    pub poi_status: PoiStatus,
    /// Whether it reaches each acquirer; absent when it does not say.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_status: Vec<HostStatus>,
    /// **Outpost extension:** the ServiceIDs of the payments and refunds it approved
    /// offline and has not forwarded yet, at most [`MAX_STORED`]; absent when the
    /// terminal does not report its store-and-forward queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_transactions: Option<Vec<String>>,
}

/// The most stored (offline, not yet forwarded) transactions a Diagnosis may list.
pub const MAX_STORED: usize = 512;

/// The most acquirers a Diagnosis may list.
pub const MAX_HOSTS: usize = 8;

/// Whether the terminal reaches one acquirer (nexo `HostStatus`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostStatus {
    /// The acquirer.
    #[serde(rename = "AcquirerID")]
    pub acquirer_id: String,
    /// Whether it is reachable now.
    pub is_reachable_flag: bool,
}

impl DiagnosisResponse {
    /// A healthy answer with no store-and-forward report.
    pub fn status(global_status: GlobalStatus) -> Self {
        Self {
            response: ResponseResult::success(),
            poi_status: PoiStatus { global_status },
            host_status: Vec::new(),
            stored_transactions: None,
        }
    }
}

/// The terminal's state, as Diagnosis reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PoiStatus {
    /// Overall state.
    pub global_status: GlobalStatus,
}

/// The terminal's overall state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GlobalStatus {
    /// Ready for a payment.
    #[serde(rename = "OK")]
    Ok,
    /// Working on a payment.
    Busy,
    /// In maintenance; payments refused.
    Maintenance,
    /// Cannot reach its acquirer; payments refused.
    Unreachable,
}

/// Why bytes are not a message Outpost can act on.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// Not UTF-8.
    #[error("message is not UTF-8 (invalid byte at {valid_up_to})")]
    NotUtf8 {
        /// Bytes before the first invalid one.
        valid_up_to: usize,
    },
    /// Not JSON, or not a message of the subset.
    #[error("message is not a valid nexo message: {0}")]
    Json(#[from] serde_json::Error),
    /// Decodes, but the header disagrees with the body or a field is out of range.
    #[error("inconsistent nexo message: {0}")]
    Invalid(String),
}

/// Decode and check one message (one frame's payload). Total: any input gets a
/// message or an error, never a panic, and memory stays within a small multiple of
/// the input (serde_json limits nesting to 128 levels).
pub fn parse_message(payload: &[u8]) -> Result<Message, MessageError> {
    let text = std::str::from_utf8(payload).map_err(|e| MessageError::NotUtf8 {
        valid_up_to: e.valid_up_to(),
    })?;
    let message: Message = serde_json::from_str(text)?;
    validate(&message)?;
    Ok(message)
}

/// Encode a message as a frame payload.
pub fn encode_message(message: &Message) -> Result<Vec<u8>, MessageError> {
    Ok(serde_json::to_vec(message)?)
}

fn validate(message: &Message) -> Result<(), MessageError> {
    let invalid = |s: String| Err(MessageError::Invalid(s));
    let header = message.header();
    let (expected_type, category) = match message {
        Message::Request(r) => (MessageType::Request, r.body.category()),
        Message::Response(r) => (MessageType::Response, r.body.category()),
    };
    if header.message_type != expected_type {
        return invalid(format!(
            "MessageType {:?} in a {:?} envelope",
            header.message_type, expected_type
        ));
    }
    if header.message_category != category {
        return invalid(format!(
            "MessageCategory {:?} with a {category:?} body",
            header.message_category
        ));
    }
    check_id("ServiceID", &header.service_id)?;
    check_id("SaleID", &header.sale_id)?;
    check_id("POIID", &header.poi_id)?;
    match message {
        Message::Request(Request {
            body: RequestBody::PaymentRequest(p),
            ..
        }) => {
            check_currency(&p.amounts_req.currency)?;
            if p.amounts_req.requested_amount <= 0 {
                return invalid(format!(
                    "RequestedAmount {} is not positive",
                    p.amounts_req.requested_amount
                ));
            }
            if let Some(brands) = p.allowed_brands() {
                let ok = |b: &String| {
                    !b.is_empty() && b.len() <= MAX_BRAND && b.bytes().all(|c| c.is_ascii_graphic())
                };
                if brands.is_empty() || brands.len() > MAX_ALLOWED_BRANDS || !brands.iter().all(ok)
                {
                    return invalid(format!(
                        "AllowedPaymentBrand must be 1 to {MAX_ALLOWED_BRANDS} names of 1 to \
                         {MAX_BRAND} printable ASCII characters"
                    ));
                }
            }
        }
        Message::Request(Request {
            body:
                RequestBody::ReversalRequest(ReversalRequest { original: r, .. })
                | RequestBody::TransactionStatusRequest(TransactionStatusRequest {
                    message_reference: r,
                })
                | RequestBody::AbortRequest(AbortRequest {
                    message_reference: r,
                    ..
                }),
            ..
        }) => {
            if r.message_category != MessageCategory::Payment {
                return invalid(format!(
                    "a reference to a {:?}, not a Payment",
                    r.message_category
                ));
            }
            check_id("referenced ServiceID", &r.service_id)?;
        }
        Message::Response(Response {
            body: ResponseBody::DiagnosisResponse(d),
            ..
        }) => {
            if d.host_status.len() > MAX_HOSTS {
                return invalid(format!("more than {MAX_HOSTS} HostStatus entries"));
            }
            if let Some(stored) = &d.stored_transactions {
                if stored.len() > MAX_STORED {
                    return invalid(format!("more than {MAX_STORED} StoredTransactions"));
                }
                for id in stored {
                    check_id("StoredTransactions ServiceID", id)?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Whether `id` can be a ServiceID, SaleID or POIID: 1 to [`MAX_SERVICE_ID`]
/// printable ASCII characters, no spaces.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_SERVICE_ID && id.bytes().all(|b| b.is_ascii_graphic())
}

fn check_id(what: &str, id: &str) -> Result<(), MessageError> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(MessageError::Invalid(format!(
            "{what} must be 1 to {MAX_SERVICE_ID} printable ASCII characters"
        )))
    }
}

/// Whether `c` looks like an ISO 4217 code (three upper-case ASCII letters).
pub fn valid_currency(c: &str) -> bool {
    c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase())
}

fn check_currency(c: &str) -> Result<(), MessageError> {
    if valid_currency(c) {
        Ok(())
    } else {
        Err(MessageError::Invalid(format!(
            "Currency {c:?} is not three upper-case letters"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payment(key: &str) -> Message {
        Message::Request(Request {
            header: MessageHeader::new(
                MessageCategory::Payment,
                MessageType::Request,
                key,
                "outpost-1",
                "poi-1",
            ),
            body: RequestBody::PaymentRequest(PaymentRequest {
                amounts_req: AmountsReq {
                    currency: "EUR".into(),
                    requested_amount: 1250,
                },
                payment_data: None,
                transaction_conditions: None,
            }),
        })
    }

    fn wallet(brands: &[&str]) -> Message {
        let mut m = payment("w-1");
        if let Message::Request(Request {
            body: RequestBody::PaymentRequest(p),
            ..
        }) = &mut m
        {
            p.transaction_conditions = Some(TransactionConditions {
                allowed_payment_brand: brands.iter().map(|b| (*b).to_owned()).collect(),
            });
        }
        m
    }

    #[test]
    fn a_wallet_payment_carries_its_allowed_brands_and_round_trips() {
        let m = wallet(&["ApplePay", "GooglePay"]);
        let bytes = encode_message(&m).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            v["SaleToPOIRequest"]["PaymentRequest"]["TransactionConditions"],
            serde_json::json!({"AllowedPaymentBrand": ["ApplePay", "GooglePay"]})
        );
        let back = parse_message(&bytes).unwrap();
        assert_eq!(back, m);
        let Message::Request(Request {
            body: RequestBody::PaymentRequest(p),
            ..
        }) = back
        else {
            panic!("not a payment");
        };
        assert_eq!(p.allowed_brands().map(<[String]>::len), Some(2));
    }

    #[test]
    fn bad_allowed_brands_are_refused() {
        let long = "x".repeat(MAX_BRAND + 1);
        let many: Vec<&str> = std::iter::repeat_n("ApplePay", MAX_ALLOWED_BRANDS + 1).collect();
        for brands in [
            vec![],
            vec![""],
            vec!["Apple Pay"],
            vec![long.as_str()],
            many,
        ] {
            let err = parse_message(&encode_message(&wallet(&brands)).unwrap()).unwrap_err();
            assert!(
                err.to_string().contains("AllowedPaymentBrand"),
                "{brands:?}: {err}"
            );
        }
    }

    #[test]
    fn a_payment_request_has_the_documented_shape_and_round_trips() {
        let m = payment("sale-1-0");
        let bytes = encode_message(&m).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"SaleToPOIRequest": {
                "MessageHeader": {"ProtocolVersion": "3.0", "MessageClass": "Service",
                    "MessageCategory": "Payment", "MessageType": "Request",
                    "ServiceID": "sale-1-0", "SaleID": "outpost-1", "POIID": "poi-1"},
                "PaymentRequest": {"AmountsReq": {"Currency": "EUR", "RequestedAmount": 1250}}
            }})
        );
        assert_eq!(parse_message(&bytes).unwrap(), m);
    }

    #[test]
    fn a_status_response_with_a_repeated_payment_round_trips() {
        let header = MessageHeader::new(
            MessageCategory::Payment,
            MessageType::Response,
            "k",
            "s",
            "p",
        );
        let m = Message::Response(Response {
            header: MessageHeader::new(
                MessageCategory::TransactionStatus,
                MessageType::Response,
                "q1",
                "s",
                "p",
            ),
            body: ResponseBody::TransactionStatusResponse(TransactionStatusResponse {
                response: ResponseResult::success(),
                repeated_message_response: Some(RepeatedMessageResponse {
                    message_header: header,
                    repeated_response_message_body: RepeatedBody::PaymentResponse(
                        PaymentResponse {
                            response: ResponseResult::success(),
                            payment_result: Some(PaymentResult {
                                payment_brand: Some("VISA".into()),
                                masked_pan: Some("************4242".into()),
                                approval_code: "A1".into(),
                                authorized_amount: 5,
                                currency: "EUR".into(),
                                online_flag: Some(false),
                                payment_token: Some(PaymentToken {
                                    token_value: "tok-1".into(),
                                }),
                            }),
                        },
                    ),
                }),
            }),
        });
        let bytes = encode_message(&m).unwrap();
        assert_eq!(parse_message(&bytes).unwrap(), m);
    }

    #[test]
    fn a_diagnosis_reports_the_host_and_the_stored_transactions_within_bounds() {
        let diagnosis = |stored: Vec<String>| {
            let mut d = DiagnosisResponse::status(GlobalStatus::Ok);
            d.host_status = vec![HostStatus {
                acquirer_id: "acq".into(),
                is_reachable_flag: false,
            }];
            d.stored_transactions = Some(stored);
            Message::Response(Response {
                header: MessageHeader::new(
                    MessageCategory::Diagnosis,
                    MessageType::Response,
                    "m1",
                    "s",
                    "p",
                ),
                body: ResponseBody::DiagnosisResponse(d),
            })
        };
        let m = diagnosis(vec!["sale-1-0".into()]);
        let bytes = encode_message(&m).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            v["SaleToPOIResponse"]["DiagnosisResponse"]["HostStatus"],
            serde_json::json!([{"AcquirerID": "acq", "IsReachableFlag": false}])
        );
        assert_eq!(
            v["SaleToPOIResponse"]["DiagnosisResponse"]["StoredTransactions"],
            serde_json::json!(["sale-1-0"])
        );
        assert_eq!(parse_message(&bytes).unwrap(), m);
        for bad in [
            vec!["has space".to_owned()],
            vec![String::new()],
            vec!["k".to_owned(); MAX_STORED + 1],
        ] {
            let err = parse_message(&encode_message(&diagnosis(bad)).unwrap()).unwrap_err();
            assert!(err.to_string().contains("Stored"), "{err}");
        }
    }

    #[test]
    fn wrong_json_is_refused_with_a_clear_error() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "not a valid"),
            (b"{", "not a valid"),
            (b"[]", "not a valid"),
            (b"null", "not a valid"),
            (b"{\"SaleToPOIRequest\": {}}", "not a valid"),
            (b"{\"Other\": {}}", "not a valid"),
            (b"\xff\xfe", "not UTF-8"),
            (
                br#"{"SaleToPOIRequest":{"MessageHeader":{"ProtocolVersion":"3.0","MessageClass":"Service","MessageCategory":"Payment","MessageType":"Request","ServiceID":"k","SaleID":"s","POIID":"p"},"PaymentRequest":{"AmountsReq":{"Currency":"EUR","RequestedAmount":12.5}}}}"#,
                "not a valid",
            ),
        ];
        for (input, want) in cases {
            let err = parse_message(input).unwrap_err().to_string();
            assert!(err.contains(want), "{input:?}: {err}");
        }
    }

    #[test]
    fn a_header_that_disagrees_with_its_body_is_refused() {
        let mut m = payment("k");
        if let Message::Request(r) = &mut m {
            r.header.message_category = MessageCategory::Reversal;
        }
        let err = parse_message(&encode_message(&m).unwrap()).unwrap_err();
        assert!(matches!(err, MessageError::Invalid(_)), "{err}");

        let mut m = payment("k");
        if let Message::Request(r) = &mut m {
            r.header.message_type = MessageType::Response;
        }
        assert!(parse_message(&encode_message(&m).unwrap()).is_err());
    }

    #[test]
    fn out_of_range_fields_are_refused() {
        for (key, currency, amount) in [
            ("", "EUR", 1),
            ("has space", "EUR", 1),
            (&"x".repeat(MAX_SERVICE_ID + 1) as &str, "EUR", 1),
            ("k", "eur", 1),
            ("k", "EURO", 1),
            ("k", "EUR", 0),
            ("k", "EUR", -5),
        ] {
            let mut m = payment(key);
            if let Message::Request(Request {
                body: RequestBody::PaymentRequest(p),
                ..
            }) = &mut m
            {
                p.amounts_req.currency = currency.into();
                p.amounts_req.requested_amount = amount;
            }
            let err = parse_message(&encode_message(&m).unwrap()).unwrap_err();
            assert!(matches!(err, MessageError::Invalid(_)), "{key}: {err}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse_message(deep.as_bytes()).is_err());
    }
}
