//! The console's error: a page in the user's language, or the way to the login page.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use maud::{DOCTYPE, html};

use super::catalogue::Msg;
use super::document::{head, html_response};
use super::i18n::Lang;

/// Why a console request failed, rendered as a page in the user's language.
#[derive(Debug)]
pub struct ConsoleError {
    status: StatusCode,
    msg: Msg,
    detail: Option<String>,
    lang: Lang,
    /// Where to send the browser instead (login).
    redirect: Option<String>,
}

impl ConsoleError {
    /// A failure with `status` and the catalogue's `msg`.
    pub fn new(status: StatusCode, msg: Msg) -> Self {
        Self {
            status,
            msg,
            detail: None,
            lang: Lang::En,
            redirect: None,
        }
    }

    /// Not logged in: to the login page, then back here.
    pub fn login(req: &HttpRequest) -> Self {
        let mut e = Self::new(StatusCode::SEE_OTHER, Msg::LogIn);
        let back = if req.method() == actix_web::http::Method::GET {
            req.uri()
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default()
        } else {
            String::new()
        };
        e.redirect = Some(
            if back.starts_with("/console/") && back != "/console/login" {
                format!(
                    "/console/login?next={}",
                    serde_urlencoded::to_string([("", back)])
                        .unwrap_or_default()
                        .trim_start_matches('=')
                )
            } else {
                "/console/login".into()
            },
        );
        e
    }

    /// Adds what went wrong in the service's own words.
    pub fn detail(mut self, d: impl Into<String>) -> Self {
        self.detail = Some(d.into());
        self
    }

    /// Renders in `lang`.
    pub fn lang(mut self, lang: Lang) -> Self {
        self.lang = lang;
        self
    }

    /// The status it answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl std::fmt::Display for ConsoleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.msg.text(Lang::En))?;
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

impl ResponseError for ConsoleError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        if let Some(to) = &self.redirect {
            return HttpResponse::SeeOther()
                .insert_header(("location", to.as_str()))
                .finish();
        }
        let l = self.lang;
        let body = html! {
            (DOCTYPE)
            html lang=(l.tag()) {
                (head(l, Msg::ErrTitle))
                body {
                    main #main.error {
                        h1 { (l.t(Msg::ErrTitle)) " " span.raw translate="no" { (self.status.as_u16()) } }
                        p.notice.bad role="alert" { (l.t(self.msg)) }
                        @if let Some(d) = &self.detail { p { span.raw translate="no" { (d) } } }
                        p { a href="/console/" { (l.t(Msg::BackToDashboard)) } }
                    }
                }
            }
        };
        html_response(self.status, body)
    }
}

/// An API error of a service call (the REST handlers' mapping, reused) as a console
/// error: its status, the catalogue's `msg`, its code and message as detail.
pub fn api_failed(msg: Msg, l: Lang) -> impl FnOnce(crate::http::ApiError) -> ConsoleError {
    move |e| {
        ConsoleError::new(e.status, msg)
            .detail(format!("{}: {}", e.code, e.message))
            .lang(l)
    }
}
