//! A console user over plain HTTP: a session cookie, the CSRF token read off a page,
//! no redirects followed (tests look at them).

use outpost_security::auth::roles::Role;
use reqwest::redirect::Policy;

use crate::helpers::{TestApp, session_for};

/// A staff member's console session.
pub struct Console {
    pub base: String,
    pub cookie: String,
    pub http: reqwest::Client,
}

/// A plain client that follows no redirects.
pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// The value of the first `name="NAME" value="…"` of a page.
pub fn field(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\" value=\""))?;
    let rest = &html[at + name.len() + 15..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// The cookie `name`'s value among a response's `Set-Cookie` headers, and the whole
/// header.
pub fn set_cookie(r: &reqwest::Response, name: &str) -> Option<(String, String)> {
    r.headers().get_all("set-cookie").iter().find_map(|v| {
        let v = v.to_str().ok()?;
        let value = v.strip_prefix(&format!("{name}="))?;
        Some((value.split(';').next()?.to_owned(), v.to_owned()))
    })
}

impl Console {
    /// A session of `name` holding `roles`, opened directly on the app.
    pub fn open(app: &TestApp, name: &str, roles: Vec<Role>) -> Console {
        Console {
            base: app.base.clone(),
            cookie: session_for(&app.security, name, roles),
            http: no_redirects(),
        }
    }

    /// GET a console path: status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// The CSRF token of this session, read off the dashboard.
    pub async fn csrf(&self) -> String {
        let (status, page) = self.get("/console/").await;
        assert_eq!(status, 200, "{page}");
        field(&page, "csrf").expect("the dashboard has a form with a CSRF token")
    }

    /// POST a url-encoded form: status, `Location` and body.
    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, String, String) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).unwrap())
            .send()
            .await
            .unwrap();
        let location = r
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (r.status().as_u16(), location, r.text().await.unwrap())
    }
}
