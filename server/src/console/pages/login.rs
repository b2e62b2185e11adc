//! Logging in and out, and the language switch.
//!
//! The login form has no session yet, so its CSRF token binds to a random nonce in a
//! short-lived cookie of its own (`SameSite=Strict`, `HttpOnly`) instead.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use maud::{DOCTYPE, html};
use secrecy::SecretString;
use serde::Deserialize;

use super::super::catalogue::Msg;
use super::super::i18n::{LANG_COOKIE, Lang};
use super::super::page::{ConsoleError, csrf_field, head, html_response, notice};
use super::super::session::{
    ConsoleForm, Posted, csrf_ok, csrf_token, session_cookie, split_form, state_of,
};
use crate::access::SESSION_COOKIE;
use crate::access::staff::LoginError;
use crate::http::AppState;
use outpost_security::auth::AuthError;
use outpost_security::auth::roles::Role;

/// The cookie holding the login form's nonce.
const NONCE_COOKIE: &str = "outpost_console_login";

/// `next` when it is a console path, else the dashboard: never a redirect elsewhere.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/console/")
                && !n.contains("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control) =>
        {
            n.to_owned()
        }
        _ => "/console/".to_owned(),
    }
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

fn login_form(
    l: Lang,
    nonce: &str,
    next: &str,
    status: StatusCode,
    error: Option<Msg>,
) -> HttpResponse {
    let token = csrf_token(nonce);
    let body = html! {
        (DOCTYPE)
        html lang=(l.tag()) {
            (head(l, Msg::LogIn))
            body {
                main #main.login.card {
                    div.lang {
                        form method="post" action="/console/lang" {
                            (csrf_field(&token))
                            @for other in Lang::ALL {
                                @if other != l {
                                    button.secondary type="submit" name="lang" value=(other.tag()) lang=(other.tag()) translate="no" { (other.native_name()) }
                                }
                            }
                        }
                    }
                    h1 { (l.t(Msg::ConsoleTitle)) }
                    p.muted { (l.t(Msg::LoginIntro)) }
                    @if let Some(e) = error { (notice(false, l.t(e), None)) }
                    form method="post" action="/console/login" {
                        (csrf_field(&token))
                        input type="hidden" name="next" value=(next);
                        label for="username" { (l.t(Msg::Username)) }
                        input #username name="username" autocomplete="username" required autofocus;
                        label for="password" { (l.t(Msg::Password)) }
                        input #password type="password" name="password" autocomplete="current-password" required;
                        p { button type="submit" { (l.t(Msg::LogIn)) } }
                    }
                }
            }
        }
    };
    let mut r = html_response(status, body);
    let cookie = Cookie::build(NONCE_COOKIE, nonce.to_owned())
        .path("/console/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(actix_web::cookie::time::Duration::hours(1))
        .finish();
    let _ = r.add_cookie(&cookie);
    r
}

fn new_nonce() -> String {
    blake3::hash(&rand::random::<[u8; 32]>())
        .to_hex()
        .to_string()
}

/// The login page.
#[get("/console/login")]
pub async fn login_page(req: HttpRequest, q: web::Query<NextQuery>) -> HttpResponse {
    let l = Lang::of(&req);
    let nonce = req
        .cookie(NONCE_COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|v| v.len() == 64)
        .unwrap_or_else(new_nonce);
    login_form(
        l,
        &nonce,
        &safe_next(q.next.as_deref()),
        StatusCode::OK,
        None,
    )
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

/// Log in: the API's login (throttle, hashing queue, audit), then the session cookie.
#[post("/console/login")]
pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    let l = Lang::of(&req);
    if req.headers().contains_key("authorization") {
        return Err(ConsoleError::new(StatusCode::FORBIDDEN, Msg::ErrTerminal).lang(l));
    }
    let (token, form) = split_form::<LoginForm>(&body).map_err(|e| {
        ConsoleError::new(StatusCode::BAD_REQUEST, Msg::ErrBadForm)
            .detail(e)
            .lang(l)
    })?;
    let nonce = req.cookie(NONCE_COOKIE).map(|c| c.value().to_owned());
    if !matches!((&nonce, &token), (Some(n), Some(t)) if csrf_ok(n, t)) {
        return Err(ConsoleError::new(StatusCode::FORBIDDEN, Msg::ErrCsrf).lang(l));
    }
    let nonce = nonce.unwrap_or_default();
    let next = safe_next(form.next.as_deref());
    let ip = req
        .peer_addr()
        .map(|a| a.ip())
        .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    let password = SecretString::from(form.password);
    let refused = |e: LoginError| {
        let (status, msg) = match e {
            LoginError::Auth(AuthError::Unauthorized) => {
                (StatusCode::UNAUTHORIZED, Msg::LoginFailed)
            }
            LoginError::Auth(AuthError::RateLimited { .. }) | LoginError::Busy { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, Msg::LoginThrottled)
            }
            _ => (StatusCode::SERVICE_UNAVAILABLE, Msg::ErrInternal),
        };
        login_form(l, &nonce, &next, status, Some(msg))
    };
    let turn = match state.security.begin_login(&form.username, ip) {
        Ok(attempt) => match attempt.turn().await {
            Ok(t) => t,
            Err(e) => return Ok(refused(e)),
        },
        Err(e) => return Ok(refused(e)),
    };
    let security = state.security.clone();
    let done = web::block(move || security.finish_login(turn, &password))
        .await
        .map_err(|_| {
            ConsoleError::new(StatusCode::SERVICE_UNAVAILABLE, Msg::ErrInternal).lang(l)
        })?;
    let (session, principal) = match done {
        Ok(ok) => ok,
        Err(e) => return Ok(refused(e)),
    };
    if !principal
        .roles
        .iter()
        .any(|r| matches!(r, Role::Supervisor | Role::Technician | Role::Admin))
    {
        state.security.end_session(&session);
        return Err(ConsoleError::new(StatusCode::FORBIDDEN, Msg::ErrForbidden).lang(l));
    }
    state
        .security
        .audit(&principal.name, "console.login", &format!("from {ip}"));
    let mut cookie = session_cookie(&state, session);
    cookie.set_max_age(actix_web::cookie::time::Duration::seconds(
        state.settings.security.session_ttl_secs as i64,
    ));
    let mut gone = Cookie::new(NONCE_COOKIE, "");
    gone.set_path("/console/");
    gone.make_removal();
    Ok(HttpResponse::SeeOther()
        .insert_header(("location", next))
        .cookie(cookie)
        .cookie(gone)
        .finish())
}

#[derive(Deserialize)]
struct NoFields {}

impl ConsoleForm for NoFields {
    const WHILE_LOCKED: bool = true;
}

/// Log out: end the session, clear the cookie, back to the login page.
#[post("/console/logout")]
pub async fn logout(
    state: web::Data<AppState>,
    posted: Posted<NoFields>,
) -> Result<HttpResponse, ConsoleError> {
    let staff = posted.staff;
    state.security.end_session(staff.session_id());
    state.security.audit(staff.name(), "logout", "console");
    let mut gone = session_cookie(&state, String::new());
    gone.make_removal();
    Ok(HttpResponse::SeeOther()
        .insert_header(("location", "/console/login"))
        .cookie(gone)
        .finish())
}

#[derive(Deserialize)]
struct LangForm {
    lang: String,
}

/// Switch the language: a cookie for a year, back to the page it was asked from. Takes
/// the session's token, or the login page's before anyone logged in.
#[post("/console/lang")]
pub async fn set_lang(req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, ConsoleError> {
    let l = Lang::of(&req);
    let (token, form) = split_form::<LangForm>(&body).map_err(|e| {
        ConsoleError::new(StatusCode::BAD_REQUEST, Msg::ErrBadForm)
            .detail(e)
            .lang(l)
    })?;
    let state = state_of(&req)?;
    let token = token.unwrap_or_default();
    let by_session = req
        .cookie(SESSION_COOKIE)
        .filter(|c| state.security.session(c.value()).is_ok())
        .is_some_and(|c| csrf_ok(c.value(), &token));
    let by_nonce = req
        .cookie(NONCE_COOKIE)
        .is_some_and(|c| csrf_ok(c.value(), &token));
    if !(by_session || by_nonce) {
        return Err(ConsoleError::new(StatusCode::FORBIDDEN, Msg::ErrCsrf).lang(l));
    }
    let lang = Lang::parse(&form.lang)
        .ok_or_else(|| ConsoleError::new(StatusCode::BAD_REQUEST, Msg::ErrBadForm).lang(l))?;
    let back = req
        .headers()
        .get("referer")
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.find("/console/").map(|i| r[i..].to_owned()));
    let cookie = Cookie::build(LANG_COOKIE, lang.tag())
        .path("/")
        .same_site(SameSite::Strict)
        .max_age(actix_web::cookie::time::Duration::days(365))
        .finish();
    Ok(HttpResponse::SeeOther()
        .insert_header(("location", safe_next(back.as_deref())))
        .cookie(cookie)
        .finish())
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_never_leaves_the_console() {
        assert_eq!(safe_next(Some("/console/sales?x=1")), "/console/sales?x=1");
        assert_eq!(safe_next(Some("https://evil.example/")), "/console/");
        assert_eq!(safe_next(Some("/console//evil.example")), "/console/");
        assert_eq!(safe_next(Some("/api/v1/sales")), "/console/");
        assert_eq!(safe_next(Some("/console/\\evil")), "/console/");
        assert_eq!(safe_next(None), "/console/");
    }
}
