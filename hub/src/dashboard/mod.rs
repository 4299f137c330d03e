//! The supervisors' dashboard (issue 6): server-rendered pages on the hub's store for county
//! supervisors, township heads and unit chiefs, technicians and admins.
//!
//! Every page needs a session: [`Viewer`] reads the session cookie, looks the session up in the
//! store and redirects to `/login` without one. What a user sees is cut to their [`Scope`] in the
//! queries themselves (a head sees their site, or one unit of it), never only in the menu. Every
//! form that changes something carries the session's CSRF token, checked on POST. Pages are built
//! by the modules below from the store's own queries: `overview`, `warnings`, `cases`,
//! `attendance`, `report` (the monthly report and its exports), `fleet`, and `admin` (accounts).

// Page helpers return the finished error page as their `Err`: one per request, never hot.
#![allow(clippy::result_large_err)]

pub mod accounts;
mod admin;
mod attendance;
mod audit;
mod cases;
mod catalog;
mod fleet;
mod holidays;
pub mod html;
pub mod limiter;
mod notify_rules;
mod overview;
pub mod report;
mod schedules;
mod section;
mod wall;
mod warnings;

use crate::web::{ApiState, read, write};
use accounts::{Role, Session, User};
use axum::Router;
use axum::extract::{ConnectInfo, Form, FromRequestParts, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use html::{Lang, esc};
use limiter::Limiter;
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;

/// The session cookie.
pub const SESSION_COOKIE: &str = "sl_session";
/// The sign-in form's own token (double submit), before there is a session.
const LOGIN_COOKIE: &str = "sl_login";
const LANG_COOKIE: &str = "lang";

/// The dashboard's state: the API's store handles, and the sign-in throttle.
#[derive(Clone)]
pub struct DashState {
    pub api: ApiState,
    pub limiter: Arc<Limiter>,
}

/// The dashboard's routes, to merge into the hub's router. Creates the account tables if needed.
pub fn router(api: ApiState) -> Router<ApiState> {
    match api.writer.lock() {
        Ok(w) => {
            if let Err(e) = accounts::ensure_schema(w.conn()) {
                tracing::error!(error = %e, "dashboard: cannot create the account tables");
            }
        }
        Err(_) => tracing::error!("dashboard: the write connection is poisoned"),
    }
    let state = DashState {
        api,
        limiter: Arc::new(Limiter::default()),
    };
    Router::new()
        .route("/", get(overview::page))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/lang", get(set_lang))
        .route("/warnings", get(warnings::page))
        .route("/letters/{id}", get(warnings::letter))
        .route("/cases", get(cases::list))
        .route("/cases/{site}/{case_no}", get(cases::detail))
        .route("/attendance", get(attendance::board))
        .route("/attendance/month", get(attendance::month))
        .route(
            "/attendance/staff/{site}/{staff_id}",
            get(attendance::staff),
        )
        .route("/attendance/makeups", get(attendance::makeups))
        .route("/attendance/makeups/{id}", post(attendance::decide))
        .route("/reports", get(report::page))
        .route("/reports/{file}", get(report::export_file))
        .route("/fleet", get(fleet::page))
        .route("/wall", get(wall::page))
        .route("/wall/snapshot", post(wall::snapshot))
        .route("/wall/{site}/{camera}", get(wall::history))
        .route("/admin/users", get(admin::users).post(admin::add_user))
        .route("/admin/users/{id}", post(admin::set_disabled))
        .route("/admin/items", get(catalog::page).post(catalog::save))
        .route("/admin/calendar", get(holidays::page).post(holidays::add))
        .route("/admin/calendar/remove", post(holidays::remove))
        .route("/admin/calendar/import", post(holidays::import))
        .route("/admin/audit", get(audit::page))
        .route(
            "/admin/schedules",
            get(schedules::page).post(schedules::save),
        )
        .route(
            "/admin/notify",
            get(notify_rules::page).post(notify_rules::save),
        )
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// No caching of pages with data, no framing, no scripts or outside resources.
async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    let set = |h: &mut HeaderMap, k: header::HeaderName, v: &'static str| {
        if !h.contains_key(&k) {
            h.insert(k, HeaderValue::from_static(v));
        }
    };
    set(h, header::CACHE_CONTROL, "no-store");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "same-origin");
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    r
}

/// What a user may see: every site, or one site (and maybe one unit of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub site: Option<String>,
    pub unit: Option<String>,
}

/// A request for another site's or unit's data than the user's own.
#[derive(Debug)]
pub struct OutOfScope;

impl Scope {
    pub fn of(user: &User) -> Scope {
        match user.role {
            // A head without a site (a row edited by hand) sees nothing rather than everything.
            Role::Head => Scope {
                site: Some(user.site.clone().unwrap_or_default()),
                unit: user.unit.clone(),
            },
            Role::Supervisor | Role::Admin | Role::Technician => Scope {
                site: None,
                unit: None,
            },
        }
    }

    pub fn site_allowed(&self, site: &str) -> bool {
        self.site.as_deref().is_none_or(|s| s == site)
    }

    pub fn unit_allowed(&self, unit: &str) -> bool {
        self.unit.as_deref().is_none_or(|u| u == unit)
    }

    pub fn allows(&self, site: &str, unit: &str) -> bool {
        self.site_allowed(site) && self.unit_allowed(unit)
    }

    /// The site filter of a request: the one asked for if allowed, the user's own if none.
    pub fn site_filter(&self, asked: Option<&str>) -> Result<Option<String>, OutOfScope> {
        pick(&self.site, asked)
    }

    pub fn unit_filter(&self, asked: Option<&str>) -> Result<Option<String>, OutOfScope> {
        pick(&self.unit, asked)
    }
}

fn pick(own: &Option<String>, asked: Option<&str>) -> Result<Option<String>, OutOfScope> {
    let asked = asked.map(str::trim).filter(|s| !s.is_empty());
    match (own, asked) {
        (Some(own), Some(a)) if own != a => Err(OutOfScope),
        (Some(own), _) => Ok(Some(own.clone())),
        (None, a) => Ok(a.map(str::to_owned)),
    }
}

/// The site condition of a query whose first parameter is the site filter: `site = ?1` when there
/// is one, so that SQLite can use the tables' `(site, …)` indexes (`?1 IS NULL OR site = ?1` makes
/// it scan the whole table).
pub fn site_clause(site: Option<&str>) -> &'static str {
    if site.is_some() {
        "site = ?1"
    } else {
        "?1 IS NULL"
    }
}

/// The signed-in user of a request, with their language and session.
pub struct Viewer {
    pub session: Session,
    pub lang: Lang,
    /// Path and query of the request (for the language switch and redirects).
    pub here: String,
}

impl Viewer {
    pub fn user(&self) -> &User {
        &self.session.user
    }

    pub fn scope(&self) -> Scope {
        Scope::of(&self.session.user)
    }

    /// 403 unless the user has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), Response> {
        if roles.contains(&self.session.user.role) {
            Ok(())
        } else {
            Err(self.forbidden())
        }
    }

    /// Checks the CSRF token of a submitted form.
    pub fn check_csrf(&self, token: &str) -> Result<(), Response> {
        if accounts::same_token(token, &self.session.csrf) {
            Ok(())
        } else {
            Err(message_page(
                StatusCode::FORBIDDEN,
                self.lang,
                self.lang.t(
                    "表单已过期或来源不明（CSRF 校验失败），请返回重新提交。",
                    "This form is stale or did not come from this site (CSRF check failed): go back and submit it again.",
                ),
            ))
        }
    }

    pub fn forbidden(&self) -> Response {
        message_page(
            StatusCode::FORBIDDEN,
            self.lang,
            self.lang.t(
                "您的账号无权查看此页面或此范围的数据。",
                "Your account may not see this page or data of this scope.",
            ),
        )
    }

    pub fn not_found(&self) -> Response {
        message_page(
            StatusCode::NOT_FOUND,
            self.lang,
            self.lang.t("没有找到。", "Not found."),
        )
    }

    /// A full page of `body` with the frame.
    pub fn page(&self, path: &str, title: String, refresh: Option<u32>, body: &str) -> Response {
        self.page_with_status(StatusCode::OK, path, title, refresh, body)
    }

    /// A page answering with `status`: a form shown again with its error (422), or after a save.
    pub fn page_with_status(
        &self,
        status: StatusCode,
        path: &str,
        title: String,
        refresh: Option<u32>,
        body: &str,
    ) -> Response {
        html_response(
            status,
            html::Frame {
                lang: self.lang,
                user: &self.session.user,
                csrf: &self.session.csrf,
                path,
                here: &self.here,
                title,
                refresh_secs: refresh,
            }
            .render(body),
        )
    }
}

impl FromRequestParts<DashState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &DashState) -> Result<Self, Response> {
        let lang = lang_of(&parts.headers);
        let here = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".into());
        let to_login = || see_other(&format!("/login?next={}", html::url(&here)));
        let Some(sid) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(to_login());
        };
        let now = accounts::now_ms();
        match read(&state.api, move |r| {
            r.run(|c| accounts::session(c, &sid, now))
        })
        .await
        {
            Ok(Some(session)) => Ok(Viewer {
                session,
                lang,
                here,
            }),
            Ok(None) => Err(to_login()),
            Err(r) => Err(r),
        }
    }
}

/// The value of a cookie of the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_owned())
}

pub fn lang_of(headers: &HeaderMap) -> Lang {
    match cookie(headers, LANG_COOKIE).as_deref() {
        Some("en") => Lang::En,
        _ => Lang::Zh,
    }
}

/// Did the request come through a TLS-terminating proxy that says so? Then cookies get `Secure`.
fn behind_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> HeaderValue {
    let v = format!(
        "{name}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
}

pub fn html_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

pub fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// A small page with one message and a way back.
pub fn message_page(status: StatusCode, lang: Lang, text: &str) -> Response {
    html_response(
        status,
        format!(
            "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\"><title>{}</title></head>\
<body style=\"font-family:sans-serif;margin:3em\"><p>{}</p><p><a href=\"/\">{}</a></p></body></html>",
            lang.code(),
            status.as_u16(),
            esc(text),
            lang.t("返回总览", "Back to the overview")
        ),
    )
}

/// A path on this site to return to (never another host).
fn local_path(p: &str) -> Option<&str> {
    (p.starts_with('/')
        && !p.starts_with("//")
        && !p.starts_with("/\\")
        && !p.chars().any(|c| c.is_control()))
    .then_some(p)
}

fn home(role: Role) -> &'static str {
    match role {
        Role::Technician => "/fleet",
        _ => "/",
    }
}

#[derive(Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

fn login_page(lang: Lang, token: &str, next: &str, error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p class=\"error\">{}</p>", esc(e)))
        .unwrap_or_default();
    format!(
        "<!doctype html>\n<html lang=\"{code}\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{title}</title>\
<style>body{{font:15px/1.6 system-ui,'Microsoft YaHei',sans-serif;background:#f6f7f9;display:flex;justify-content:center;padding-top:8vh}}\
form{{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:1.5em 2em;min-width:320px}}\
h1{{font-size:1.3em;color:#8b1a1a}}label{{display:block;margin:.6em 0}}input{{display:block;width:100%;font:inherit;padding:.3em}}\
button{{margin-top:1em;font:inherit;padding:.3em 1.5em}}.error{{background:#ffebe9;border:1px solid #cf222e;padding:.4em .8em}}</style></head>\
<body><form method=\"post\" action=\"/login\"><h1>☀ {title}</h1>{error}\
<input type=\"hidden\" name=\"csrf\" value=\"{token}\"><input type=\"hidden\" name=\"next\" value=\"{next}\">\
<label>{name_label}<input name=\"name\" autocomplete=\"username\" required autofocus></label>\
<label>{password_label}<input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
<button type=\"submit\">{submit}</button>\
<p><a href=\"/lang?to={other}&amp;back=%2Flogin\">{other_name}</a></p></form></body></html>\n",
        code = lang.code(),
        title = lang.t("阳光政务监督 · 登录", "Sunlight oversight · sign in"),
        token = esc(token),
        next = esc(next),
        name_label = lang.t("用户名", "Name"),
        password_label = lang.t("密码", "Password"),
        submit = lang.t("登录", "Sign in"),
        other = if lang == Lang::Zh { "en" } else { "zh" },
        other_name = if lang == Lang::Zh {
            "English"
        } else {
            "中文"
        },
    )
}

/// The sign-in form, with a fresh token in a cookie and in the form (double submit).
async fn login_form(headers: HeaderMap, Query(q): Query<LoginQuery>) -> Response {
    let lang = lang_of(&headers);
    let Ok(token) = accounts::random_token() else {
        return message_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            lang,
            "no randomness from the OS",
        );
    };
    let next = q.next.as_deref().and_then(local_path).unwrap_or("/");
    let mut r = html_response(StatusCode::OK, login_page(lang, &token, next, None));
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(LOGIN_COOKIE, &token, 3600, behind_tls(&headers)),
    );
    r
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: String,
}

/// The client's address for throttling: the peer, or the address a proxy on this machine says it
/// forwarded for (the last `X-Forwarded-For` entry, the one the proxy itself added).
fn client_address(headers: &HeaderMap, peer: Option<SocketAddr>) -> String {
    let forwarded = headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty());
    match (peer, forwarded) {
        (Some(p), Some(f)) if p.ip().is_loopback() => f,
        (Some(p), _) => p.ip().to_string(),
        (None, Some(f)) => f,
        (None, None) => "unknown".into(),
    }
}

async fn login(
    State(state): State<DashState>,
    headers: HeaderMap,
    connect: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    Form(form): Form<LoginForm>,
) -> Response {
    let lang = lang_of(&headers);
    let secure = behind_tls(&headers);
    let next = local_path(&form.next).unwrap_or("/").to_owned();
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !accounts::same_token(&form.csrf, &expected) {
        return message_page(
            StatusCode::FORBIDDEN,
            lang,
            lang.t(
                "登录表单已过期（CSRF 校验失败），请重新打开登录页。",
                "The sign-in form is stale (CSRF check failed): open the sign-in page again.",
            ),
        );
    }
    let address = client_address(&headers, connect.map(|c| c.0.0));
    let keys = limiter::keys(&form.name, &address);
    let now = accounts::now_ms();
    if let Err(wait_ms) = state.limiter.attempt(&keys, now) {
        // The typed name is not logged: it may be a password typed into the wrong field.
        tracing::warn!(%address, "dashboard sign-in throttled");
        let minutes = (wait_ms + 59_999) / 60_000;
        let text = match lang {
            Lang::Zh => format!("登录失败次数过多，请 {minutes} 分钟后再试。"),
            Lang::En => format!("Too many failed sign-ins: try again in {minutes} min."),
        };
        let mut r = html_response(
            StatusCode::TOO_MANY_REQUESTS,
            login_page(lang, &expected, &next, Some(&text)),
        );
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(((wait_ms + 999) / 1000).max(1)),
        );
        return r;
    }
    let name = form.name.clone();
    let found = match read(&state.api, move |r| r.run(|c| accounts::lookup(c, &name))).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    // argon2 takes tens of milliseconds: off the runtime, and not holding the store's reader.
    let password = form.password.clone();
    let user = match tokio::task::spawn_blocking(move || accounts::check(found, &password)).await {
        Ok(u) => u,
        Err(e) => return message_page(StatusCode::INTERNAL_SERVER_ERROR, lang, &e.to_string()),
    };
    let Some(user) = user else {
        tracing::warn!(%address, "dashboard sign-in failed (the typed name is not logged)");
        return html_response(
            StatusCode::UNAUTHORIZED,
            login_page(
                lang,
                &expected,
                &next,
                Some(lang.t("用户名或密码不正确。", "The name or the password is wrong.")),
            ),
        );
    };
    state.limiter.succeeded(&keys, now);
    let u = user.clone();
    let who = address.clone();
    let started = write(&state.api, move |tx| {
        let s = accounts::start_session(tx, &u, now)?;
        crate::store::audit(
            tx,
            &u.name,
            "session.start",
            &format!("user:{}", u.id),
            &who,
        )
        .map_err(|e| e.to_string())?;
        Ok::<_, String>(s)
    })
    .await;
    let (sid, _) = match started {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return message_page(StatusCode::INTERNAL_SERVER_ERROR, lang, &e);
        }
        Err(r) => return r,
    };
    tracing::info!(user = %user.name, role = user.role.as_str(), %address, "dashboard sign-in");
    let to = if next == "/" { home(user.role) } else { &next };
    let mut r = see_other(to);
    let h = r.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, &sid, accounts::SESSION_MS / 1000, secure),
    );
    h.append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, "", 0, secure));
    r
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(state): State<DashState>,
    headers: HeaderMap,
    viewer: Viewer,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(r) = viewer.check_csrf(&form.csrf) {
        return r;
    }
    if let Some(sid) = cookie(&headers, SESSION_COOKIE) {
        let name = viewer.user().name.clone();
        let id = viewer.user().id;
        let result = write(&state.api, move |tx| {
            accounts::end_session(tx, &sid)?;
            crate::store::audit(tx, &name, "session.end", &format!("user:{id}"), "")
        })
        .await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return message_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    viewer.lang,
                    &e.to_string(),
                );
            }
            Err(r) => return r,
        }
    }
    let mut r = see_other("/login");
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", 0, behind_tls(&headers)),
    );
    r
}

#[derive(Deserialize)]
struct LangQuery {
    to: Option<String>,
    back: Option<String>,
}

/// Switches the language (a preference cookie, no session state) and goes back.
async fn set_lang(headers: HeaderMap, Query(q): Query<LangQuery>) -> Response {
    let lang = if q.to.as_deref() == Some("en") {
        "en"
    } else {
        "zh"
    };
    let back = q.back.as_deref().and_then(local_path).unwrap_or("/");
    let mut r = see_other(back);
    let secure = if behind_tls(&headers) { "; Secure" } else { "" };
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{LANG_COOKIE}={lang}; SameSite=Strict; Path=/; Max-Age=31536000{secure}"
    )) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_is_held_to_their_site_and_unit() {
        let head = User {
            id: 1,
            name: "h".into(),
            role: Role::Head,
            site: Some("a".into()),
            unit: Some("民政办".into()),
            disabled: false,
        };
        let s = Scope::of(&head);
        assert_eq!(s.site_filter(None).unwrap().as_deref(), Some("a"));
        assert_eq!(s.site_filter(Some("")).unwrap().as_deref(), Some("a"));
        assert!(s.site_filter(Some("b")).is_err());
        assert!(s.unit_filter(Some("林业站")).is_err());
        assert!(s.allows("a", "民政办") && !s.allows("a", "林业站") && !s.allows("b", "民政办"));
        // Without a site on record, a head sees nothing.
        let broken = User {
            site: None,
            unit: None,
            ..head.clone()
        };
        assert!(!Scope::of(&broken).site_allowed("a"));
        let sup = User {
            role: Role::Supervisor,
            site: None,
            unit: None,
            ..head
        };
        let s = Scope::of(&sup);
        assert_eq!(s.site_filter(Some("b")).unwrap().as_deref(), Some("b"));
        assert_eq!(s.site_filter(None).unwrap(), None);
    }

    #[test]
    fn redirects_stay_on_this_site() {
        assert_eq!(local_path("/cases?view=done"), Some("/cases?view=done"));
        assert_eq!(local_path("//evil.example/"), None);
        assert_eq!(local_path("/\\evil.example"), None);
        assert_eq!(local_path("https://evil.example/"), None);
        assert_eq!(local_path("/x\r\nSet-Cookie: a=b"), None);
    }

    #[test]
    fn cookies_are_read_by_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("lang=en; sl_session=abc"),
        );
        assert_eq!(cookie(&h, "sl_session").as_deref(), Some("abc"));
        assert_eq!(lang_of(&h), Lang::En);
        assert_eq!(cookie(&h, "session"), None);
    }

    #[test]
    fn the_throttle_key_is_the_peer_unless_a_local_proxy_forwarded() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("1.2.3.4, 10.0.0.7"),
        );
        let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let remote: SocketAddr = "10.1.1.1:5000".parse().unwrap();
        assert_eq!(client_address(&h, Some(local)), "10.0.0.7");
        assert_eq!(client_address(&h, Some(remote)), "10.1.1.1");
        assert_eq!(client_address(&HeaderMap::new(), Some(local)), "127.0.0.1");
    }
}
