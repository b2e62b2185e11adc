//! The bare pieces every console document uses: `<head>`, the response with its
//! security headers, the CSRF field.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use maud::{Markup, html};

use super::assets;
use super::catalogue::Msg;
use super::i18n::Lang;

/// The form field that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf";

/// `<head>` with the embedded stylesheet and script.
pub fn head(l: Lang, title: Msg) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (l.t(title)) " · Outpost" }
            link rel="icon" href="data:,";
            link rel="stylesheet" href=(assets::CSS_PATH);
            script src=(assets::JS_PATH) defer {}
        }
    }
}

/// The hidden CSRF field of a form.
pub fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(token); }
}

/// A finished page as a response.
pub fn html_response(status: StatusCode, body: Markup) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("cache-control", "no-store"))
        .insert_header(("x-frame-options", "DENY"))
        .insert_header(("referrer-policy", "same-origin"))
        .insert_header((
            "content-security-policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; form-action 'self'; frame-ancestors 'none'",
        ))
        .body(body.into_string())
}
