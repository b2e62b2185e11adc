//! Logs: a live tail (server-sent events) filtered by level and module, and a
//! download of the last minutes, from the recent lines the server keeps
//! (`telemetry`: the last few thousand lines, in memory).

use std::time::Duration;

use actix_web::{HttpResponse, get, web};
use maud::html;
use outpost_security::auth::roles::Permission;
use serde::Deserialize;

use super::super::catalogue::Msg;
use super::super::page::{ConsoleError, shell};
use super::super::session::Staff;
use crate::http::AppState;

/// How often the tail looks for new lines.
const POLL: Duration = Duration::from_millis(500);
/// How long one event stream lasts; the browser reconnects by itself.
const STREAM_FOR: Duration = Duration::from_secs(300);
/// Lines sent when a stream starts.
const BACKLOG: usize = 200;
/// The longest window a download covers, in minutes.
const MAX_MINUTES: u32 = 24 * 60;

const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// Which lines to show.
#[derive(Debug, Default, Deserialize)]
pub struct Filter {
    /// The least severe level shown (`error` … `trace`; default `info`).
    level: Option<String>,
    /// A part of the module path (`target`), e.g. `devices`.
    module: Option<String>,
    /// Download only: the last this many minutes.
    minutes: Option<u32>,
}

impl Filter {
    fn rank(level: &str) -> usize {
        LEVELS
            .iter()
            .position(|l| l.eq_ignore_ascii_case(level))
            .unwrap_or(2)
    }

    /// Whether a JSON log line passes, and its time.
    fn pass(&self, line: &str) -> bool {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        let level = v["level"].as_str().unwrap_or("INFO");
        let max = Self::rank(self.level.as_deref().unwrap_or("info"));
        let module = self.module.as_deref().map(str::trim).unwrap_or_default();
        Self::rank(level) <= max
            && (module.is_empty() || v["target"].as_str().unwrap_or_default().contains(module))
    }
}

/// The logs page.
#[get("/console/logs")]
pub async fn logs(staff: Staff, q: web::Query<Filter>) -> Result<HttpResponse, ConsoleError> {
    staff.require(Permission::ReadLogs)?;
    let l = staff.lang;
    let level = q.level.as_deref().unwrap_or("info");
    let body = html! {
        p.muted { (l.t(Msg::LogsHelp)) }
        form #log-filter.filters method="get" action="/console/logs" {
            div {
                label for="level" { (l.t(Msg::Level)) }
                select #level name="level" {
                    @for (lv, m) in LEVELS.iter().zip([Msg::LevelError, Msg::LevelWarn, Msg::LevelInfo, Msg::LevelDebug, Msg::LevelTrace]) {
                        option value=(lv) selected[*lv == level] { (l.t(m)) }
                    }
                }
            }
            div { label for="module" { (l.t(Msg::Module)) } input #module name="module" value=(q.module.as_deref().unwrap_or_default()); }
            div { button type="submit" { (l.t(Msg::Apply)) } }
        }
        ol #log-lines.log aria-live="off" aria-label=(l.t(Msg::LiveLog)) {}
        section.card.mt aria-labelledby="h-dl" {
            h2 #h-dl { (l.t(Msg::DownloadLogs)) }
            form.filters method="get" action="/console/logs/download" {
                div { label for="minutes" { (l.t(Msg::LastMinutes)) } input #minutes name="minutes" type="number" min="1" max=(MAX_MINUTES) value="60"; }
                input type="hidden" name="level" value=(level);
                input type="hidden" name="module" value=(q.module.as_deref().unwrap_or_default());
                div { button type="submit" { (l.t(Msg::Download)) } }
            }
        }
    };
    Ok(shell(&staff, "/console/logs", Msg::NavLogs, body))
}

/// The live tail: `text/event-stream`, one event per line, for a few minutes.
#[get("/console/logs/stream")]
pub async fn stream(staff: Staff, q: web::Query<Filter>) -> Result<HttpResponse, ConsoleError> {
    staff.require(Permission::ReadLogs)?;
    let filter = q.into_inner();
    let started = tokio::time::Instant::now();
    let (seq, backlog) = crate::telemetry::lines_after(0, BACKLOG);
    let first: Vec<String> = backlog.into_iter().filter(|l| filter.pass(l)).collect();
    let state = (Some(first), seq, filter);
    let events = futures::stream::unfold(state, move |(first, seq, filter)| async move {
        if let Some(lines) = first {
            return Some((
                Ok::<_, actix_web::Error>(web::Bytes::from(sse(&lines))),
                (None, seq, filter),
            ));
        }
        if started.elapsed() >= STREAM_FOR {
            return None;
        }
        tokio::time::sleep(POLL).await;
        let (next, lines) = crate::telemetry::lines_after(seq, BACKLOG);
        let lines: Vec<String> = lines.into_iter().filter(|l| filter.pass(l)).collect();
        // A comment keeps the connection alive when nothing passed the filter.
        let chunk = if lines.is_empty() {
            ": .\n\n".to_owned()
        } else {
            sse(&lines)
        };
        Some((Ok(web::Bytes::from(chunk)), (None, next, filter)))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-store"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(events))
}

/// Lines as server-sent events (a line never holds a newline: the ring keeps JSON).
fn sse(lines: &[String]) -> String {
    let mut out = String::new();
    for l in lines {
        out.push_str("data: ");
        out.push_str(&l.replace(['\r', '\n'], " "));
        out.push_str("\n\n");
    }
    if out.is_empty() {
        out.push_str(": .\n\n");
    }
    out
}

/// The lines of the last `minutes` that pass the filter, as a JSON-lines file.
#[get("/console/logs/download")]
pub async fn download(
    staff: Staff,
    state: web::Data<AppState>,
    q: web::Query<Filter>,
) -> Result<HttpResponse, ConsoleError> {
    staff.require(Permission::ReadLogs)?;
    let minutes = q.minutes.unwrap_or(60).clamp(1, MAX_MINUTES);
    let since = time::OffsetDateTime::now_utc() - time::Duration::minutes(i64::from(minutes));
    let mut body = String::new();
    for line in crate::telemetry::recent_lines(crate::telemetry::RING_LINES) {
        let at = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| v["timestamp"].as_str().map(str::to_owned))
            .and_then(|t| {
                time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339).ok()
            });
        if at.is_some_and(|t| t >= since) && q.pass(&line) {
            body.push_str(&line);
            body.push('\n');
        }
    }
    state.security.audit(
        staff.name(),
        "logs.download",
        &format!("last {minutes} min (console)"),
    );
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .insert_header((
            "content-disposition",
            format!("attachment; filename=\"outpost-log-{minutes}min.jsonl\""),
        ))
        .body(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_keeps_the_level_and_module_asked_for() {
        let f = Filter {
            level: Some("warn".into()),
            module: Some("devices".into()),
            minutes: None,
        };
        assert!(f.pass(r#"{"level":"ERROR","target":"outpost_server::devices::x"}"#));
        assert!(f.pass(r#"{"level":"WARN","target":"outpost_server::devices"}"#));
        assert!(!f.pass(r#"{"level":"INFO","target":"outpost_server::devices"}"#));
        assert!(!f.pass(r#"{"level":"ERROR","target":"outpost_server::hq"}"#));
        assert!(Filter::default().pass(r#"{"level":"INFO","target":"a"}"#));
        assert!(!Filter::default().pass(r#"{"level":"DEBUG","target":"a"}"#));
    }

    #[test]
    fn events_are_one_per_line() {
        assert_eq!(
            sse(&["a".into(), "b\nc".into()]),
            "data: a\n\ndata: b c\n\n"
        );
        assert_eq!(sse(&[]), ": .\n\n");
    }
}
