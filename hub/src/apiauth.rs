//! Sign-in for the hub's JSON API (`/api/v1/…`).
//!
//! People and their scripts authenticate with an API token (`Authorization: Bearer slt_…`, made
//! by `sunlight-hub user token`) or with a dashboard session cookie; a request with a cookie that
//! changes something must also carry the session's CSRF token in `X-CSRF-Token`. Either way the
//! request acts as one account, with its role:
//!
//! - supervisor and admin: every endpoint, every site;
//! - technician: the fleet (devices, alarms, dead letters, commands, cameras and their images);
//! - head (township head or unit chief): the images of their own site only — their data is in the
//!   dashboard, which cuts every query to their scope; the JSON API answers county-wide queries
//!   and refuses them with 403 rather than risk leaking another site's data.
//!
//! Boxes do not sign in: the routes they call authenticate the box itself or serve only public,
//! signed material — enrollment (one-time token), blob uploads (`PUT`, device signature) and the
//! upload check (`HEAD`), and everything under `/api/v1/box/`.

use crate::dashboard::accounts::{self, Role, User};
use crate::dashboard::{SESSION_COOKIE, cookie};
use crate::web::{ApiState, read};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The prefix of the routes boxes call; they are never behind sign-in.
pub const BOX_PREFIX: &str = "/api/v1/box/";

/// The header a cookie-authenticated request that changes something carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Who a request acts as, put in the request's extensions for the handlers.
#[derive(Debug, Clone)]
pub struct Caller(pub User);

/// True for the API routes that need no account.
pub fn is_public(method: &Method, path: &str) -> bool {
    if !path.starts_with("/api/v1/") || path.starts_with(BOX_PREFIX) {
        return true;
    }
    if path == "/api/v1/enroll" {
        return method == Method::POST;
    }
    if path.starts_with("/api/v1/blobs/") {
        return method == Method::PUT || method == Method::HEAD;
    }
    false
}

/// Whether `role` may call `method path` at all (scope within a site is checked further on).
/// Registering sites and boxes (`/api/v1/sites`, `/api/v1/enroll/tokens`) and update rollouts
/// (`POST /api/v1/updates/rollout`) are for supervisors and admins only: no other role lists them.
pub fn role_allows(role: Role, method: &Method, path: &str) -> bool {
    match role {
        Role::Supervisor | Role::Admin => true,
        Role::Technician => {
            let fleet_read = [
                "/api/v1/devices",
                "/api/v1/alarms",
                "/api/v1/dead-letters",
                "/api/v1/commands",
                "/api/v1/cameras",
                "/api/v1/blobs/",
                "/api/v1/updates",
            ]
            .iter()
            .any(|p| path.starts_with(p));
            let snapshot_now = method == Method::POST
                && path.starts_with("/api/v1/cameras/")
                && path.ends_with("/snapshot");
            (method == Method::GET && fleet_read) || snapshot_now
        }
        Role::Head => method == Method::GET && path.starts_with("/api/v1/blobs/"),
    }
}

fn refuse(status: StatusCode, message: &str) -> Response {
    let mut r = (status, axum::Json(json!({ "error": message }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"sunlight-hub\""),
        );
    }
    r
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// The middleware: lets public routes through, otherwise finds the account or answers 401/403.
pub async fn guard(State(state): State<ApiState>, mut req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    if is_public(&method, &path) {
        return next.run(req).await;
    }
    let headers = req.headers();
    let user = if let Some(token) = bearer(headers) {
        match read(&state, move |r| {
            r.run(|c| accounts::api_token_user(c, &token))
        })
        .await
        {
            Ok(Some(u)) => u,
            Ok(None) => {
                return refuse(
                    StatusCode::UNAUTHORIZED,
                    "this API token is unknown, revoked, or its account is disabled",
                );
            }
            Err(r) => return r,
        }
    } else if let Some(sid) = cookie(headers, SESSION_COOKIE) {
        let sent_csrf = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let now = accounts::now_ms();
        let session = match read(&state, move |r| r.run(|c| accounts::session(c, &sid, now))).await
        {
            Ok(Some(s)) => s,
            Ok(None) => {
                return refuse(
                    StatusCode::UNAUTHORIZED,
                    "the session has ended: sign in again at /login",
                );
            }
            Err(r) => return r,
        };
        let reads_only = method == Method::GET || method == Method::HEAD;
        if !reads_only && !sent_csrf.is_some_and(|t| accounts::same_token(&t, &session.csrf)) {
            return refuse(
                StatusCode::FORBIDDEN,
                "a request with a session cookie that changes something must carry the session's CSRF token in X-CSRF-Token",
            );
        }
        session.user
    } else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "sign in: send `Authorization: Bearer <token>` with a token from `sunlight-hub user token --name <account> --label <what uses it>`, or use the dashboard",
        );
    };
    if !role_allows(user.role, &method, &path) {
        return refuse(
            StatusCode::FORBIDDEN,
            match user.role {
                Role::Head => {
                    "the JSON API answers county-wide queries; a township head or unit chief sees their own site in the dashboard"
                }
                _ => "this account's role may not use this endpoint",
            },
        );
    }
    if user.role == Role::Head
        && let Some(sha) = path.strip_prefix("/api/v1/blobs/")
    {
        let sha = sha.to_owned();
        let site = match read(&state, move |r| r.run(|c| crate::blobs::site_of(c, &sha))).await {
            Ok(s) => s,
            Err(r) => return r,
        };
        if site.is_none() || site != user.site {
            // The same answer as for an image that is not there: a head learns nothing about
            // other sites' images.
            return refuse(StatusCode::NOT_FOUND, "no such image");
        }
    }
    req.extensions_mut().insert(Caller(user));
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_reach_their_routes_without_an_account() {
        assert!(is_public(&Method::POST, "/api/v1/enroll"));
        assert!(is_public(&Method::PUT, "/api/v1/blobs/ab"));
        assert!(is_public(&Method::HEAD, "/api/v1/blobs/ab"));
        assert!(is_public(&Method::GET, "/api/v1/box/time"));
        assert!(is_public(&Method::GET, "/healthz"));
        assert!(is_public(&Method::GET, "/login"));
        assert!(!is_public(&Method::GET, "/api/v1/blobs/ab"));
        assert!(!is_public(&Method::GET, "/api/v1/enroll"));
        assert!(!is_public(&Method::GET, "/api/v1/events"));
        assert!(!is_public(&Method::POST, "/api/v1/roster/push"));
        // No way around the check by spelling the prefix differently.
        assert!(!is_public(&Method::GET, "/api/v1/boxes"));
    }

    #[test]
    fn roles_reach_what_they_are_for() {
        let get = Method::GET;
        let post = Method::POST;
        assert!(role_allows(Role::Supervisor, &get, "/api/v1/events"));
        assert!(role_allows(Role::Admin, &post, "/api/v1/roster/push"));
        assert!(role_allows(Role::Technician, &get, "/api/v1/devices"));
        assert!(role_allows(
            Role::Technician,
            &post,
            "/api/v1/cameras/suixian-lishan/win-1/snapshot"
        ));
        assert!(!role_allows(Role::Technician, &get, "/api/v1/events"));
        assert!(!role_allows(Role::Technician, &get, "/api/v1/cases"));
        assert!(!role_allows(Role::Technician, &post, "/api/v1/roster/push"));
        assert!(!role_allows(Role::Head, &get, "/api/v1/cases"));
        assert!(!role_allows(Role::Head, &get, "/api/v1/attendance/board"));
        assert!(role_allows(Role::Head, &get, "/api/v1/blobs/ab"));
        // Registering sites and boxes and rolling out updates: supervisors and admins only.
        for path in [
            "/api/v1/sites",
            "/api/v1/enroll/tokens",
            "/api/v1/updates/rollout",
        ] {
            assert!(role_allows(Role::Admin, &post, path));
            assert!(role_allows(Role::Supervisor, &post, path));
            assert!(!role_allows(Role::Technician, &post, path), "{path}");
            assert!(!role_allows(Role::Head, &post, path), "{path}");
            assert!(!is_public(&post, path), "{path}");
        }
        assert!(!role_allows(
            Role::Technician,
            &get,
            "/api/v1/enroll/tokens"
        ));
    }
}
