//! Security and admin: the lock and lease with the HQ unlock procedure, the audit log
//! with its chain verified, staff accounts and terminal tokens.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, get, post, web};
use maud::html;
use outpost_security::auth::roles::Permission;
use serde::Deserialize;

use super::super::catalogue::Msg;
use super::super::facts::left_secs;
use super::super::label;
use super::super::page::{ConsoleError, csrf_field, notice, shell};
use super::super::session::{ConsoleForm, Posted, Staff};
use crate::http::AppState;

/// Audit entries shown, the newest.
const AUDIT_SHOWN: u64 = 100;

#[derive(Deserialize)]
struct Done {
    done: Option<String>,
    name: Option<String>,
}

/// The security page.
#[get("/console/security")]
pub async fn security(
    staff: Staff,
    state: web::Data<AppState>,
    q: web::Query<Done>,
) -> Result<HttpResponse, ConsoleError> {
    let l = staff.lang;
    let lease = state.security.lease_status();
    let facts_left = left_secs(
        state.security.lease_state().as_ref(),
        time::OffsetDateTime::now_utc(),
    );
    let csrf = staff.csrf();
    let audit = staff.may(Permission::ManageUsers).then(|| {
        let after = state
            .security
            .audit_head()
            .map_or(0, |(seq, _)| seq.saturating_sub(AUDIT_SHOWN));
        let entries = state
            .security
            .audit_entries(after, AUDIT_SHOWN as usize)
            .map_err(|e| e.to_string());
        (
            entries,
            state.security.audit_verify().map_err(|e| e.to_string()),
        )
    });
    let body = html! {
        @if q.done.as_deref() == Some("revoked") { (notice(true, l.t(Msg::TerminalRevoked), q.name.as_deref())) }
        div.grid {
            section.card.span2.lock[!lease.can_transact] #lock aria-labelledby="h-lock" {
                h2 #h-lock { (l.t(Msg::LockAndLease)) }
                dl {
                    dt { (l.t(Msg::State)) } dd #lock-state data-state=(lease.state) { (label(l, "lease", &lease.state)) }
                    @if let Some(left) = facts_left { dt { (l.t(Msg::TimeLeft)) } dd { (l.duration(left)) } }
                    dt { (l.t(Msg::Transactions)) }
                    dd { @if lease.can_transact { span.good { (l.t(Msg::Allowed)) } } @else { span.bad { (l.t(Msg::Refused)) } } }
                    dt { (l.t(Msg::Why)) } dd.raw translate="no" { (lease.reason) }
                    dt { (l.t(Msg::DataKey)) } dd { (label(l, "key", &lease.data_key)) }
                    dt { (l.t(Msg::UnlockPolicy)) } dd.raw translate="no" { (lease.unlock_policy) }
                }
            }
            section.card.span2 aria-labelledby="h-unlock" {
                h2 #h-unlock { (l.t(Msg::UnlockProcedure)) }
                ol {
                    li { (l.t(Msg::Unlock1)) }
                    li { (l.t(Msg::Unlock2)) }
                    li { (l.t(Msg::Unlock3)) }
                    li { (l.t(Msg::Unlock4)) }
                }
            }
        }
        @if let Some((entries, verified)) = &audit {
            section.card.mt aria-labelledby="h-audit" {
                h2 #h-audit { (l.t(Msg::AuditLog)) }
                @match verified {
                    Ok(n) => { p.good #audit-verified { (l.t(Msg::ChainVerified)) " (" (l.number(*n as i64)) ")" } }
                    Err(e) => { p.bad #audit-verified { (l.t(Msg::ChainBroken)) " " span.raw translate="no" { (e) } } }
                }
                @match entries {
                    Err(e) => { p.bad { (l.t(Msg::Unavailable)) " " span.raw translate="no" { (e) } } }
                    Ok(list) => {
                        table {
                            thead { tr { th.num scope="col" { "#" } th scope="col" { (l.t(Msg::When)) } th scope="col" { (l.t(Msg::Who)) } th scope="col" { (l.t(Msg::Action)) } th scope="col" { (l.t(Msg::Detail)) } } }
                            tbody {
                                @for e in list.iter().rev() {
                                    tr {
                                        td.num { (l.number(e.seq as i64)) }
                                        td { (l.datetime_ms(e.at_ms)) }
                                        td translate="no" { (e.actor) }
                                        td.raw translate="no" { (e.action) }
                                        td.raw translate="no" { (e.detail) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if staff.may(Permission::ManageUsers) {
            section.card.mt aria-labelledby="h-users" {
                h2 #h-users { (l.t(Msg::StaffAccounts)) }
                table {
                    thead { tr { th scope="col" { (l.t(Msg::Username)) } th scope="col" { (l.t(Msg::Roles)) } th scope="col" { (l.t(Msg::State)) } } }
                    tbody {
                        @for u in state.security.users() {
                            tr {
                                td translate="no" { (u.username) }
                                td { @for (i, r) in u.roles.iter().enumerate() { @if i > 0 { ", " } (label(l, "role", r.as_str())) } }
                                td { @if u.disabled { span.bad { (l.t(Msg::Disabled)) } } @else { span.good { (l.t(Msg::Enabled)) } } }
                            }
                        }
                    }
                }
                form #add-staff.filters method="post" action="/console/security/users" data-once {
                    (csrf_field(&csrf))
                    label { (l.t(Msg::NewUsername)) " " input name="username" required maxlength="64" pattern="[A-Za-z0-9._@\\-]{1,64}" autocomplete="off"; }
                    fieldset.roles {
                        legend { (l.t(Msg::Roles)) }
                        @for role in ["supervisor", "technician", "admin"] {
                            label { input type="checkbox" name=(role) value="on"; " " (label(l, "role", role)) }
                        }
                    }
                    button type="submit" { (l.t(Msg::AddStaff)) }
                }
                p.muted { (l.t(Msg::UsersHelp)) " " code translate="no" { "outpost users" } }
            }
        }
        @if staff.may(Permission::ManageTerminals) {
            section.card.mt aria-labelledby="h-terms" {
                h2 #h-terms { (l.t(Msg::TerminalTokens)) }
                table {
                    thead { tr { th scope="col" { (l.t(Msg::Terminal)) } th scope="col" { (l.t(Msg::Issued)) } th scope="col" { (l.t(Msg::State)) } th scope="col" { (l.t(Msg::Actions)) } } }
                    tbody {
                        @for t in state.security.terminals() {
                            tr {
                                td translate="no" { (t.name) }
                                td { (l.datetime_ms(t.created_at.saturating_mul(1000))) }
                                td {
                                    @match t.revoked_at {
                                        Some(at) => { span.muted { (l.t(Msg::Revoked)) " " (l.datetime_ms(at.saturating_mul(1000))) } }
                                        None => { span.good { (l.t(Msg::Active)) } }
                                    }
                                }
                                td {
                                    @if t.revoked_at.is_none() {
                                        form.inline method="post" action=(format!("/console/security/terminals/{}/revoke", t.name)) data-once {
                                            (csrf_field(&csrf))
                                            button.danger type="submit" { (l.t(Msg::Revoke)) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                form #issue-token.filters method="post" action="/console/security/terminals" data-once {
                    (csrf_field(&csrf))
                    label { (l.t(Msg::TerminalName)) " " input name="name" required maxlength="64" pattern="[A-Za-z0-9._@\\-]{1,64}" autocomplete="off"; }
                    button type="submit" { (l.t(Msg::IssueToken)) }
                }
                p.muted { (l.t(Msg::TerminalsHelp)) " " code translate="no" { "outpost terminals add NAME" } }
            }
        }
    };
    Ok(shell(&staff, "/console/security", Msg::NavSecurity, body))
}

#[derive(Deserialize)]
struct NoFields {}
impl ConsoleForm for NoFields {}

/// Revoke a terminal's token (admin), as `DELETE /api/v1/terminals/{name}` does.
#[post("/console/security/terminals/{name}/revoke")]
pub async fn revoke_terminal(
    state: web::Data<AppState>,
    name: web::Path<String>,
    posted: Posted<NoFields>,
) -> Result<HttpResponse, ConsoleError> {
    let staff = posted.staff;
    staff.require(Permission::ManageTerminals)?;
    let l = staff.lang;
    let revoked = state
        .security
        .revoke_terminal(staff.name(), &name)
        .map_err(|e| {
            ConsoleError::new(StatusCode::SERVICE_UNAVAILABLE, Msg::ActionFailed)
                .detail(e.to_string())
                .lang(l)
        })?;
    if !revoked {
        return Err(ConsoleError::new(StatusCode::NOT_FOUND, Msg::ErrNotFound)
            .detail(name.into_inner())
            .lang(l));
    }
    Ok(HttpResponse::SeeOther()
        .insert_header((
            "location",
            format!(
                "/console/security?{}",
                serde_urlencoded::to_string([("done", "revoked"), ("name", name.as_str())])
                    .unwrap_or_default()
            ),
        ))
        .finish())
}
