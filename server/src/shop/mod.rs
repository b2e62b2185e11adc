//! The shopper page: what a phone opens from the store QR (`/shop/?t=<store token>`),
//! served by this unit like the console: HTML from maud, its stylesheet and script
//! compiled into the binary, no CDN, English and Russian (docs/self-checkout.md).
//!
//! The page is a shell the server writes in the shopper's language (with the words
//! the script needs as `data-` attributes); the script opens the shopper session
//! with the token, then drives the `/api/v1/shopper/` routes: scan with the camera
//! where the browser has `BarcodeDetector`, or type a barcode; the cart with its
//! prices and promotions; remove lines.
//!
//! # Layout
//! - [`catalogue`]: the page's words.

pub mod catalogue;

use actix_web::{HttpRequest, HttpResponse, get, web};
use maud::{DOCTYPE, html};

use crate::console::i18n::Lang;
use crate::http::AppState;
use catalogue::Msg;

/// The stylesheet.
pub const CSS: &str = include_str!("../../shop/shop.css");
/// The script.
pub const JS: &str = include_str!("../../shop/shop.js");
/// Where the stylesheet is served; the version changes the path on every release.
pub const CSS_PATH: &str = concat!("/shop/assets/shop-", env!("CARGO_PKG_VERSION"), ".css");
/// Where the script is served.
pub const JS_PATH: &str = concat!("/shop/assets/shop-", env!("CARGO_PKG_VERSION"), ".js");

/// Register the page and its assets.
pub fn register(cfg: &mut web::ServiceConfig) {
    cfg.service(page).service(asset);
}

/// The shopper page.
#[get("/shop/")]
pub async fn page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let l = Lang::of(&req);
    // The words the script shows, in the page's language, as one JSON attribute.
    let words: serde_json::Map<String, serde_json::Value> = Msg::ALL
        .iter()
        .map(|m| (m.id().to_owned(), m.text(l).into()))
        .collect();
    let words = serde_json::Value::Object(words).to_string();
    // Whether the phone already holds a live session (then the script goes straight
    // to the cart instead of spending the token on a new one).
    let session = req.cookie(crate::shopper::SHOPPER_COOKIE).is_some_and(|c| {
        state
            .shoppers
            .touch(c.value(), std::time::Instant::now())
            .is_ok()
    });
    let can_pay = state.sales.qr().is_some();
    let body = html! {
        (DOCTYPE)
        html lang=(l.tag()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (Msg::Title.text(l)) " · " (state.settings.store.name) }
                link rel="icon" href="data:,";
                link rel="stylesheet" href=(CSS_PATH);
                script src=(JS_PATH) defer {}
            }
            body {
                header {
                    h1 { (Msg::Title.text(l)) }
                    p.store { (state.settings.store.name) }
                }
                main #shop data-words=(words) data-session=(if session { "1" } else { "" }) data-pay=(if can_pay { "1" } else { "" }) {
                    p #status role="status" aria-live="polite" { (Msg::Starting.text(l)) }
                    p.intro { (Msg::Intro.text(l)) }
                    section #paid hidden aria-labelledby="paid-title" {
                        h2 #paid-title { (Msg::Paid.text(l)) }
                        p { (Msg::PaidTotal.text(l)) " " strong #paid-total {} }
                        p #paid-points hidden {}
                        h3 { (Msg::ExitCode.text(l)) }
                        img #exit-qr alt=(Msg::ExitCode.text(l)) width="240" height="240";
                        p.note { (Msg::ShowAtExit.text(l)) }
                    }
                    section #scanner {
                        button #scan type="button" hidden { (Msg::Scan.text(l)) }
                        video #camera playsinline muted hidden {}
                    }
                    form #add {
                        label for="barcode" { (Msg::Barcode.text(l)) }
                        div.row {
                            input #barcode name="barcode" inputmode="numeric" autocomplete="off" required maxlength="64";
                            button type="submit" { (Msg::Add.text(l)) }
                        }
                    }
                    form #loyalty {
                        label for="card" { (Msg::LoyaltyCard.text(l)) }
                        div.row {
                            input #card name="card" autocomplete="off" maxlength="64" required;
                            button type="submit" { (Msg::UseCard.text(l)) }
                        }
                        p #card-status {}
                    }
                    section #cart aria-labelledby="cart-title" {
                        h2 #cart-title { (Msg::Cart.text(l)) }
                        ul #lines {}
                        p #empty { (Msg::Empty.text(l)) }
                        dl #totals hidden {
                            dt { (Msg::Subtotal.text(l)) } dd #subtotal {}
                            dt #discounts-label { (Msg::Discounts.text(l)) } dd #discounts {}
                            dt.total { (Msg::Total.text(l)) } dd #total .total {}
                        }
                    }
                    section #checkout {
                        @if can_pay {
                            button #pay type="button" hidden { (Msg::Pay.text(l)) }
                        } @else {
                            p.pay { (Msg::PayLater.text(l)) }
                        }
                        div #paying hidden {
                            p { (Msg::Paying.text(l)) }
                            a #open-wallet href="#" { (Msg::OpenWallet.text(l)) }
                            button #cancel-pay type="button" { (Msg::CancelPay.text(l)) }
                        }
                    }
                }
            }
        }
    };
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("cache-control", "no-store"))
        .insert_header(("x-frame-options", "DENY"))
        // The page's address carries the store token: never send it elsewhere.
        .insert_header(("referrer-policy", "no-referrer"))
        .insert_header((
            "content-security-policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; media-src 'self' blob: mediastream:; form-action 'self'; frame-ancestors 'none'",
        ))
        .insert_header(("permissions-policy", "camera=(self)"))
        .body(body.into_string())
}

/// An embedded asset by name.
#[get("/shop/assets/{name}")]
pub async fn asset(name: web::Path<String>) -> HttpResponse {
    crate::console::assets::serve(
        &format!("/shop/assets/{name}"),
        &[(CSS_PATH, CSS), (JS_PATH, JS)],
    )
}

#[cfg(test)]
mod tests {
    /// The page's assets stay small: a phone on store Wi-Fi loads them at once.
    #[test]
    fn assets_stay_small() {
        assert!(super::CSS.len() + super::JS.len() < 24 * 1024);
    }
}
