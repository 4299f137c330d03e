//! The snapshots wall (`/wall`): the latest image of every camera in scope with its age, a
//! "snapshot now" button per camera, and each camera's history strip (`/wall/{site}/{camera}`) for
//! a day. Images come from the hub's blob store as thumbnails (`/api/v1/blobs/{sha}?thumb=1`,
//! which lets a head see only their own site's images); clicking one opens the full picture.

use super::html::{self, Lang, esc};
use super::{Role, Viewer, see_other};
use crate::blobs::{self, SnapshotRequest, SnapshotView};
use crate::web::read;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{NaiveDate, TimeZone};
use serde::Deserialize;
use std::time::Duration;

/// Who sees the wall: everyone (a head their own site).
const ROLES: [Role; 4] = [Role::Supervisor, Role::Head, Role::Technician, Role::Admin];

/// How long the "snapshot now" button waits for the picture before going back to the wall.
const WAIT: Duration = Duration::from_secs(10);

/// Older than this, a camera's latest picture is marked stale.
const STALE_SECS: i64 = 2 * 3600;

#[derive(Deserialize, Default)]
pub struct WallQuery {
    site: Option<String>,
    /// The camera just asked for a picture: `site/camera`.
    asked: Option<String>,
    /// `arrived`, `waiting` or `nobox`.
    outcome: Option<String>,
}

/// "3 分钟前" / "3 min ago".
pub fn age(lang: Lang, secs: i64) -> String {
    let secs = secs.max(0);
    match (lang, secs) {
        (Lang::Zh, s) if s < 60 => "刚刚".into(),
        (Lang::Zh, s) if s < 3600 => format!("{} 分钟前", s / 60),
        (Lang::Zh, s) if s < 86_400 => format!("{} 小时前", s / 3600),
        (Lang::Zh, s) => format!("{} 天前", s / 86_400),
        (Lang::En, s) if s < 60 => "just now".into(),
        (Lang::En, s) if s < 3600 => format!("{} min ago", s / 60),
        (Lang::En, s) if s < 86_400 => format!("{} h ago", s / 3600),
        (Lang::En, s) => format!("{} days ago", s / 86_400),
    }
}

fn trigger_name(lang: Lang, trigger: &str) -> String {
    match trigger {
        "schedule" => lang.t("定时", "scheduled").into(),
        "punch" => lang.t("打卡", "punch").into(),
        "command" => lang.t("抓拍", "on request").into(),
        "event" => lang.t("办件", "case event").into(),
        other => esc(other),
    }
}

/// The picture of a snapshot, or why there is none yet.
fn picture(lang: Lang, s: &SnapshotView) -> String {
    match s.image {
        "uploaded" => format!(
            "<a href=\"/api/v1/blobs/{sha}\" target=\"_blank\" rel=\"noopener\"><img src=\"/api/v1/blobs/{sha}?thumb=1\" alt=\"{alt}\" loading=\"lazy\"></a>",
            sha = esc(&s.sha256),
            alt = esc(&format!("{} {}", s.camera_id, s.taken_at)),
        ),
        "removed" => format!(
            "<div class=\"nopic\">{}</div>",
            lang.t("图像已过保留期", "Image past retention")
        ),
        _ => format!(
            "<div class=\"nopic\">{}</div>",
            lang.t("上传中…", "Uploading…")
        ),
    }
}

const WALL_STYLE: &str = "<style>
.wall{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:.8em}
.cam{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:.5em}
.cam img{width:100%;display:block;border-radius:3px;background:#eee}
.cam .nopic{aspect-ratio:16/9;display:flex;align-items:center;justify-content:center;background:#eef1f4;color:#656d76;border-radius:3px}
.cam .meta{display:flex;justify-content:space-between;gap:.5em;margin:.3em 0;font-size:.92em}
.cam form{display:inline;margin:0}
.strip{display:flex;gap:.5em;overflow-x:auto;padding-bottom:.5em}
.strip figure{margin:0;flex:0 0 200px;background:#fff;border:1px solid #d0d7de;border-radius:4px;padding:.3em}
.strip img{width:100%;display:block}
.strip figcaption{font-size:.85em}
</style>";

pub async fn page(
    State(state): State<super::DashState>,
    viewer: Viewer,
    Query(q): Query<WallQuery>,
) -> Response {
    if let Err(r) = viewer.require(&ROLES) {
        return r;
    }
    let scope = viewer.scope();
    let site = match scope.site_filter(q.site.as_deref()) {
        Ok(s) => s,
        Err(_) => return viewer.forbidden(),
    };
    let (s, all_sites) = (site.clone(), scope.site.is_none());
    let data = read(&state.api, move |r| {
        r.run(|c| {
            let cams = blobs::latest(c, s.as_deref())?;
            let sites: Vec<String> = if all_sites {
                c.prepare_cached("SELECT DISTINCT site FROM devices ORDER BY site")?
                    .query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?
            } else {
                Vec::new()
            };
            Ok((cams, sites))
        })
    })
    .await;
    let (cams, sites) = match data {
        Ok(d) => d,
        Err(r) => return r,
    };
    let l = viewer.lang;
    let mut body = String::from(WALL_STYLE);
    if let (Some(asked), Some(outcome)) = (&q.asked, &q.outcome) {
        let (class, text) = match outcome.as_str() {
            "arrived" => ("notice", l.t("已抓拍，新图像如下。", "Snapshot taken: the new picture is below.")),
            "nobox" => ("error", l.t("该乡镇没有登记设备。", "No box is registered for this site.")),
            _ => (
                "notice",
                l.t(
                    "抓拍指令已发出，设备尚未回传（可能离线或网络较慢）；图像到达后本页会显示，指令保留一小时。",
                    "The snapshot command is out; the box has not answered yet (offline or a slow link). The picture shows here when it arrives; the command waits an hour.",
                ),
            ),
        };
        body.push_str(&format!("<p class=\"{class}\">{} — {text}</p>", esc(asked)));
    }
    if all_sites {
        let choices: Vec<(String, String)> =
            std::iter::once((String::new(), l.t("全部", "All").to_owned()))
                .chain(sites.iter().map(|s| (s.clone(), s.clone())))
                .collect();
        body.push_str(&format!(
            "<form class=\"filters\" method=\"get\" action=\"/wall\"><label>{}<select name=\"site\">{}</select></label><button type=\"submit\">{}</button></form>",
            l.t("乡镇", "Site"),
            html::options(&choices, site.as_deref()),
            l.t("筛选", "Filter"),
        ));
    }
    if cams.is_empty() {
        body.push_str(&format!(
            "<p class=\"muted\">{}</p>",
            l.t(
                "还没有摄像头图像。设备配置摄像头后，第一张定时抓拍会显示在这里。",
                "No camera pictures yet. Once a box has cameras configured, its first scheduled snapshot shows here.",
            )
        ));
    }
    body.push_str("<div class=\"wall\">");
    for s in &cams {
        let stale = s.age_secs > STALE_SECS;
        body.push_str(&format!(
            "<div class=\"cam\" id=\"cam-{anchor}\">{pic}<div class=\"meta\"><b>{site} · {cam}</b><span class=\"{age_class}\" title=\"{taken}\">{age}</span></div>\
<div class=\"meta\"><span class=\"muted\">{trigger}</span><span><a href=\"/wall/{usite}/{ucam}\">{history}</a> \
<form method=\"post\" action=\"/wall/snapshot\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<input type=\"hidden\" name=\"site\" value=\"{site}\"><input type=\"hidden\" name=\"camera\" value=\"{cam}\">\
<button type=\"submit\">{now}</button></form></span></div></div>",
            anchor = esc(&format!("{}-{}", s.site, s.camera_id)),
            pic = picture(l, s),
            site = esc(&s.site),
            cam = esc(&s.camera_id),
            usite = html::url(&s.site),
            ucam = html::url(&s.camera_id),
            age_class = if stale { "bad" } else { "muted" },
            taken = esc(&s.taken_at),
            age = age(l, s.age_secs),
            trigger = trigger_name(l, &s.trigger),
            history = l.t("历史", "History"),
            csrf = esc(&viewer.session.csrf),
            now = l.t("立即抓拍", "Snapshot now"),
        ));
    }
    body.push_str("</div>");
    // While a picture is awaited, the page looks again every 10 seconds; otherwise every minute.
    let refresh = if q.outcome.as_deref() == Some("waiting") {
        10
    } else {
        60
    };
    viewer.page(
        "/wall",
        l.t("抓拍墙", "Snapshots").to_owned(),
        Some(refresh),
        &body,
    )
}

#[derive(Deserialize)]
pub struct SnapshotForm {
    csrf: String,
    site: String,
    camera: String,
}

/// "Snapshot now" from the wall: sends the command, waits a little for the picture, and goes back
/// to the wall saying what happened.
pub async fn snapshot(
    State(state): State<super::DashState>,
    viewer: Viewer,
    Form(form): Form<SnapshotForm>,
) -> Response {
    if let Err(r) = viewer.require(&ROLES) {
        return r;
    }
    if let Err(r) = viewer.check_csrf(&form.csrf) {
        return r;
    }
    let (site, camera) = (form.site.trim().to_owned(), form.camera.trim().to_owned());
    if site.is_empty() || camera.is_empty() || site.len() > 64 || camera.len() > 64 {
        return super::message_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            viewer.lang,
            viewer.lang.t("请选择一个摄像头。", "Choose a camera."),
        );
    }
    if !viewer.scope().site_allowed(&site) {
        return viewer.forbidden();
    }
    let by = viewer.user().name.clone();
    let outcome = match blobs::request_snapshot(&state.api, &site, &camera, &by, WAIT).await {
        Ok(SnapshotRequest::Arrived { .. }) => "arrived",
        Ok(SnapshotRequest::Waiting { .. }) => "waiting",
        Ok(SnapshotRequest::NoBox) => "nobox",
        Err(r) => return r,
    };
    let asked = format!("{site}/{camera}");
    let back_site = if viewer.scope().site.is_some() {
        String::new()
    } else {
        format!("site={}&", html::url(&site))
    };
    see_other(&format!(
        "/wall?{back_site}asked={}&outcome={outcome}#cam-{}",
        html::url(&asked),
        html::url(&format!("{site}-{camera}"))
    ))
}

#[derive(Deserialize, Default)]
pub struct HistoryQuery {
    /// The day to show (default today).
    date: Option<String>,
}

/// One camera's pictures of a day, newest first.
pub async fn history(
    State(state): State<super::DashState>,
    viewer: Viewer,
    Path((site, camera)): Path<(String, String)>,
    Query(q): Query<HistoryQuery>,
) -> Response {
    if let Err(r) = viewer.require(&ROLES) {
        return r;
    }
    if !viewer.scope().site_allowed(&site) {
        return viewer.forbidden();
    }
    let l = viewer.lang;
    let today = state.api.sup.clock.today();
    let day = match q.date.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
        None => today,
        Some(d) => match NaiveDate::parse_from_str(d, "%Y-%m-%d") {
            Ok(d) => d,
            Err(_) => {
                return super::message_page(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    l,
                    l.t("日期格式应为 2025-10-09。", "Dates look like 2025-10-09."),
                );
            }
        },
    };
    let bounds = |d: NaiveDate| {
        d.and_hms_opt(0, 0, 0)
            .and_then(|t| crate::clock::cst().from_local_datetime(&t).earliest())
            .map(|t| t.timestamp_millis())
    };
    let (Some(from), Some(to)) = (bounds(day), day.succ_opt().and_then(bounds)) else {
        return viewer.not_found();
    };
    let (s, c) = (site.clone(), camera.clone());
    let shots = match read(&state.api, move |r| {
        r.run(|conn| blobs::history(conn, &s, &c, from, to - 1))
    })
    .await
    {
        Ok(v) => v,
        Err(r) => return r,
    };
    let mut body = String::from(WALL_STYLE);
    let nav = |d: Option<NaiveDate>, text: &str| match d {
        Some(d) => format!(
            "<a href=\"/wall/{}/{}?date={d}\">{text}</a>",
            html::url(&site),
            html::url(&camera)
        ),
        None => String::new(),
    };
    body.push_str(&format!(
        "<form class=\"filters\" method=\"get\"><label>{}<input type=\"date\" name=\"date\" value=\"{day}\"></label><button type=\"submit\">{}</button> {} {} <a href=\"/wall\">{}</a></form>",
        l.t("日期", "Day"),
        l.t("查看", "Show"),
        nav(day.pred_opt(), l.t("← 前一天", "← Day before")),
        nav(day.succ_opt().filter(|d| *d <= today), l.t("后一天 →", "Day after →")),
        l.t("返回抓拍墙", "Back to the wall"),
    ));
    if shots.is_empty() {
        body.push_str(&format!(
            "<p class=\"muted\">{}</p>",
            l.t("这一天没有图像。", "No pictures this day.")
        ));
    } else {
        body.push_str(&format!(
            "<p class=\"muted\">{} {}</p><div class=\"strip\">",
            shots.len(),
            l.t("张（最新在前）", "pictures (newest first)")
        ));
        for s in &shots {
            let time = s.taken_at.get(11..19).unwrap_or(&s.taken_at);
            body.push_str(&format!(
                "<figure>{}<figcaption>{} · {}</figcaption></figure>",
                picture(l, s),
                esc(time),
                trigger_name(l, &s.trigger)
            ));
        }
        body.push_str("</div>");
    }
    viewer.page(
        "/wall",
        format!(
            "{} · {} · {}",
            l.t("抓拍历史", "Camera history"),
            site,
            camera
        ),
        None,
        &body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_people_say_them() {
        assert_eq!(age(Lang::Zh, 5), "刚刚");
        assert_eq!(age(Lang::Zh, 180), "3 分钟前");
        assert_eq!(age(Lang::Zh, 7200), "2 小时前");
        assert_eq!(age(Lang::En, 3 * 86_400), "3 days ago");
        assert_eq!(age(Lang::En, -4), "just now");
    }
}
