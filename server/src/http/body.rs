//! The JSON body extractor: content type, size limit and parse errors, all answered as
//! API errors that name the field at fault.

use std::future::Future;
use std::pin::Pin;

use actix_web::web::BytesMut;
use actix_web::{FromRequest, HttpRequest, dev::Payload, http::StatusCode, web};
use futures::StreamExt;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Largest body accepted, set as app data by the server.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// A JSON request body parsed into `T`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<web::Data<BodyLimit>>()
            .map_or(256 * 1024, |l| l.0);
        let content_type = req
            .headers()
            .get(actix_web::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| {
                s.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        let declared = req
            .headers()
            .get(actix_web::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            if content_type.as_deref() != Some("application/json") {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "the body must be JSON, sent with Content-Type: application/json",
                ));
            }
            let too_large = || {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!("the body is larger than {limit} bytes"),
                )
            };
            if declared.is_some_and(|n| n > limit) {
                return Err(too_large());
            }
            let mut buf = BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| {
                    ApiError::bad_request(
                        "body_unreadable",
                        format!("the body could not be read: {e}"),
                    )
                })?;
                if buf.len() + chunk.len() > limit {
                    return Err(too_large());
                }
                buf.extend_from_slice(&chunk);
            }
            parse(&buf).map(JsonBody)
        })
    }
}

/// Parse JSON into `T`, naming the field at fault on error. JSON has one number type:
/// `5.0` is the integer 5 (as JSON Schema's `integer` says), so a body refused only
/// for an integral float where an integer goes is read again with those as integers.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    match parse_as_is(bytes) {
        Err(e) if e.code == "invalid_type" && e.message.contains("floating point") => {
            let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
                return Err(e);
            };
            if !integralize(&mut value) {
                return Err(e);
            }
            // A number is what it was: its own error if it still does not fit.
            serde_json::to_vec(&value).map_or(Err(e), |again| parse_as_is(&again))
        }
        other => other,
    }
}

/// Turns every float of `v` with no fraction that fits a 64-bit integer into that
/// integer (every such float is one exactly); says whether any was.
fn integralize(v: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Number(n) if n.is_f64() => {
            let Some(f) = n.as_f64() else { return false };
            if f.fract() != 0.0
                || !(-9.223_372_036_854_776e18..1.844_674_407_370_955_2e19).contains(&f)
            {
                return false;
            }
            *v = if f < 0.0 {
                Value::from(f as i64)
            } else {
                Value::from(f as u64)
            };
            true
        }
        Value::Array(items) => items.iter_mut().fold(false, |any, i| integralize(i) | any),
        Value::Object(map) => map.values_mut().fold(false, |any, i| integralize(i) | any),
        _ => false,
    }
}

fn parse_as_is<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        let (code, field) = match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                ("malformed_json", None)
            }
            serde_json::error::Category::Io => ("body_unreadable", None),
            serde_json::error::Category::Data => {
                let named = |prefix: &str| {
                    message.split('`').nth(1).map(|name| {
                        if prefix == "." || prefix.is_empty() {
                            name.to_owned()
                        } else {
                            format!("{prefix}.{name}")
                        }
                    })
                };
                if message.starts_with("unknown field") {
                    // The path already ends with the unknown field's name.
                    ("unknown_field", Some(path.clone()))
                } else if message.starts_with("missing field") {
                    ("missing_field", named(&path))
                } else if message.starts_with("invalid type") {
                    ("invalid_type", Some(path.clone()))
                } else {
                    ("invalid_value", Some(path.clone()))
                }
            }
        };
        let field = field.filter(|f| !f.is_empty() && f != ".");
        let mut err = ApiError::bad_request(code, message);
        err.field = field;
        err
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Line {
        quantity: u32,
    }
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Req {
        lines: Vec<Line>,
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse::<Req>(br#"{"lines":[{"quantity":-1}]}"#).unwrap_err();
        assert_eq!(
            (e.code.as_ref(), e.field.as_deref()),
            ("invalid_value", Some("lines[0].quantity"))
        );
        let e = parse::<Req>(br#"{"lines":[{"quantity":"2"}]}"#).unwrap_err();
        assert_eq!(
            (e.code.as_ref(), e.field.as_deref()),
            ("invalid_type", Some("lines[0].quantity"))
        );
        let e = parse::<Req>(br#"{"lines":[],"extra":1}"#).unwrap_err();
        assert_eq!(
            (e.code.as_ref(), e.field.as_deref()),
            ("unknown_field", Some("extra"))
        );
        let e = parse::<Req>(br#"{}"#).unwrap_err();
        assert_eq!(
            (e.code.as_ref(), e.field.as_deref()),
            ("missing_field", Some("lines"))
        );
        // An integral float is the integer; a fraction, or a float too large to be
        // exact, is still refused with its field.
        let r = parse::<Req>(br#"{"lines":[{"quantity":2.0},{"quantity":3e0}]}"#).unwrap();
        assert_eq!(r.lines[0].quantity + r.lines[1].quantity, 5);
        let e = parse::<Req>(br#"{"lines":[{"quantity":1},{"quantity":2.5}]}"#).unwrap_err();
        assert_eq!(
            (e.code.as_ref(), e.field.as_deref()),
            ("invalid_type", Some("lines[1].quantity"))
        );
        let e = parse::<Req>(br#"{"lines":[{"quantity":-2.0}]}"#).unwrap_err();
        assert_eq!(
            (e.code.as_ref(), e.field.as_deref()),
            ("invalid_value", Some("lines[0].quantity"))
        );
        let e = parse::<Req>(br#"{"lines":[{"quantity":1e300}]}"#).unwrap_err();
        assert_eq!(e.code, "invalid_type");
        let e = parse::<Req>(br#"{"lines":[{"quantity":1}"#).unwrap_err();
        assert_eq!(e.code, "malformed_json");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }
}
