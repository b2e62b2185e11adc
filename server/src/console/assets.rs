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
    serve(
        &format!("/console/assets/{name}"),
        &[(CSS_PATH, CSS), (JS_PATH, JS)],
    )
}

/// The embedded file of `files` (path, content) served at `path`, its type from its
/// extension (`.css`, else script), cached for a year (the path changes with every
/// release) and not sniffed; `404` when no file has that path. The console's and the
/// shopper page's assets are served through it.
pub fn serve(path: &str, files: &[(&str, &'static str)]) -> HttpResponse {
    let Some((at, body)) = files.iter().find(|(p, _)| *p == path) else {
        return HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("no such asset");
    };
    let kind = if at.ends_with(".css") {
        "text/css; charset=utf-8"
    } else {
        "text/javascript; charset=utf-8"
    };
    HttpResponse::Ok()
        .content_type(kind)
        .insert_header(("cache-control", "public, max-age=31536000, immutable"))
        .insert_header(("x-content-type-options", "nosniff"))
        .body(*body)
}

#[cfg(test)]
mod tests {
    use actix_web::body::MessageBody as _;

    /// Each file with its type and a year's cache; an unknown path is `404`.
    #[test]
    fn embedded_files_are_served_by_path() {
        let files = [("/a/x-1.css", "body{}"), ("/a/x-1.js", "go()")];
        let r = super::serve("/a/x-1.css", &files);
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers().get("content-type").unwrap(),
            "text/css; charset=utf-8"
        );
        assert_eq!(
            r.headers().get("cache-control").unwrap(),
            "public, max-age=31536000, immutable"
        );
        assert_eq!(
            r.headers().get("x-content-type-options").unwrap(),
            "nosniff"
        );
        assert_eq!(r.into_body().try_into_bytes().unwrap(), "body{}");
        let r = super::serve("/a/x-1.js", &files);
        assert_eq!(
            r.headers().get("content-type").unwrap(),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(r.into_body().try_into_bytes().unwrap(), "go()");
        let r = super::serve("/a/x-0.js", &files);
        assert_eq!(r.status(), 404);
        assert_eq!(r.into_body().try_into_bytes().unwrap(), "no such asset");
    }

    /// The whole console (assets and the code that renders its pages) stays small:
    /// the assets are a fraction of the ~300 KB budget.
    #[test]
    fn assets_stay_small() {
        assert!(super::CSS.len() + super::JS.len() < 40 * 1024);
    }
}
