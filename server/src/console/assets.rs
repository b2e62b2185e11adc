//! The console's stylesheet and script, compiled into the binary and served with a
//! content hash in their path, so a browser may cache them for good.

use actix_web::{HttpResponse, get, web};

/// The stylesheet.
pub const CSS: &str = include_str!("../../console/console.css");
/// The script: self-refreshing panels, the log tail, one-click forms.
pub const JS: &str = include_str!("../../console/console.js");

/// Where the stylesheet is served; the version changes the path on every release.
pub const CSS_PATH: &str = concat!(
    "/console/assets/console-",
    env!("CARGO_PKG_VERSION"),
    ".css"
);
/// Where the script is served.
pub const JS_PATH: &str = concat!("/console/assets/console-", env!("CARGO_PKG_VERSION"), ".js");

/// An embedded asset by name.
#[get("/console/assets/{name}")]
pub async fn asset(name: web::Path<String>) -> HttpResponse {
    let path = format!("/console/assets/{name}");
    let (body, kind) = if path == CSS_PATH {
        (CSS, "text/css; charset=utf-8")
    } else if path == JS_PATH {
        (JS, "text/javascript; charset=utf-8")
    } else {
        return HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("no such asset");
    };
    HttpResponse::Ok()
        .content_type(kind)
        .insert_header(("cache-control", "public, max-age=31536000, immutable"))
        .insert_header(("x-content-type-options", "nosniff"))
        .body(body)
}

#[cfg(test)]
mod tests {
    /// The whole console (assets and the code that renders its pages) stays small:
    /// the assets are a fraction of the ~300 KB budget.
    #[test]
    fn assets_stay_small() {
        assert!(super::CSS.len() + super::JS.len() < 40 * 1024);
    }
}
