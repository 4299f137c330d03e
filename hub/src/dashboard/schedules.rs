//! Office hours and attendance rules (`/admin/schedules`, admins only): hub.toml's `[attendance]`
//! is the default; an admin's copy saved here wins over it, in the running hub at once (swapped
//! into [`crate::supervise::Supervision`]), until it is reset to hub.toml. Checked by
//! [`settings::parse_attendance`]: times parse, segments in order without overlap, check-in and
//! check-out windows around their segment, seasons covering the year once.

use super::accounts::Role;
use super::html::{Lang, esc};
use super::{Viewer, message_page};
use crate::store::settings::{self, ATTENDANCE, Saved};
use crate::web::{read, write};
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

fn render(
    viewer: &Viewer,
    saved: Option<&Saved>,
    text: &str,
    message: Option<(bool, String)>,
) -> String {
    let l = viewer.lang;
    let csrf = esc(&viewer.session.csrf);
    let mut body = String::new();
    if let Some((ok, m)) = message {
        body.push_str(&format!(
            "<p class=\"{}\">{}</p>",
            if ok { "notice" } else { "error" },
            esc(&m)
        ));
    }
    let in_force = match saved {
        Some(s) => match l {
            Lang::Zh => format!(
                "当前生效：管理员保存的版本（{}，{}），优先于 hub.toml。",
                esc(&s.set_by),
                super::html::time_ms(Some(s.at_ms))
            ),
            Lang::En => format!(
                "In force: the copy saved by {} at {}, over hub.toml.",
                esc(&s.set_by),
                super::html::time_ms(Some(s.at_ms))
            ),
        },
        None => l
            .t(
                "当前生效：hub.toml 的 [attendance]（尚无管理员保存的版本）。",
                "In force: hub.toml's [attendance] (no admin copy saved).",
            )
            .to_owned(),
    };
    body.push_str(&format!(
        "<p><b>{in_force}</b></p><p class=\"muted\">{}</p>\
<form method=\"post\" action=\"/admin/schedules\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<textarea name=\"attendance\" rows=\"34\" cols=\"100\" spellcheck=\"false\">{}</textarea><br>\
<button type=\"submit\" name=\"action\" value=\"save\">{}</button> \
<button type=\"submit\" name=\"action\" value=\"reset\">{}</button></form>",
        l.t(
            "格式同 hub.toml 的 [attendance] 一节（不含标题行）：grace_min 迟到宽限分钟，absent_after_min 超过即按旷工，makeup_quota 每月补卡次数，schedules 为各季节（from/to 为 MM-DD）的办公时段及签到、签退窗口。保存后立即用于考勤、设备在岗时段与报表，无需重启。",
            "As hub.toml's [attendance] section, without its header: grace_min, absent_after_min, makeup_quota a month, and schedules by season (from/to as MM-DD) with each segment's check-in and check-out windows. Once saved it is used at once for attendance, office hours and reports, without a restart."
        ),
        esc(text),
        l.t("保存并生效", "Save and apply"),
        l.t("恢复为 hub.toml", "Reset to hub.toml"),
    ));
    body
}

async fn page_with(
    state: &super::DashState,
    viewer: &Viewer,
    status: StatusCode,
    message: Option<(bool, String)>,
    text: Option<&str>,
) -> Response {
    let saved = match read(&state.api, |r| {
        r.run(|c| settings::get_setting(c, ATTENDANCE))
    })
    .await
    {
        Ok(s) => s,
        Err(r) => return r,
    };
    let current = toml::to_string(&state.api.sup.config().attendance).unwrap_or_default();
    let mut resp = viewer.page(
        "/admin/schedules",
        viewer
            .lang
            .t("作息与考勤规则", "Office hours and attendance")
            .to_owned(),
        None,
        &render(viewer, saved.as_ref(), text.unwrap_or(&current), message),
    );
    *resp.status_mut() = status;
    resp
}

pub async fn page(State(state): State<super::DashState>, viewer: Viewer) -> Response {
    if let Err(r) = viewer.require(&[Role::Admin]) {
        return r;
    }
    page_with(&state, &viewer, StatusCode::OK, None, None).await
}

#[derive(Deserialize)]
pub struct SaveForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    attendance: String,
}

pub async fn save(
    State(state): State<super::DashState>,
    viewer: Viewer,
    Form(form): Form<SaveForm>,
) -> Response {
    if let Err(r) = viewer.require(&[Role::Admin]) {
        return r;
    }
    if let Err(r) = viewer.check_csrf(&form.csrf) {
        return r;
    }
    let l = viewer.lang;
    let sup = state.api.sup.clone();
    let mut next = (*sup.config()).clone();
    let reset = match form.action.as_str() {
        "reset" => {
            next.attendance = sup.file_config().attendance.clone();
            true
        }
        _ => match settings::parse_attendance(&form.attendance) {
            Ok(a) => {
                next.attendance = a;
                false
            }
            Err(e) => {
                let m = match l {
                    Lang::Zh => e.zh,
                    Lang::En => e.en,
                };
                return page_with(
                    &state,
                    &viewer,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Some((false, m)),
                    Some(&form.attendance),
                )
                .await;
            }
        },
    };
    let by = viewer.user().name.clone();
    let before = sup.config().attendance.clone();
    let text = toml::to_string(&next.attendance).unwrap_or_default();
    let after = next.attendance.clone();
    let result = write(&state.api, move |tx| {
        if reset {
            settings::clear_setting(tx, ATTENDANCE)?;
        } else {
            settings::put_setting(tx, ATTENDANCE, &text, &by)?;
        }
        crate::store::audit(
            tx,
            &by,
            if reset {
                "settings.attendance.reset"
            } else {
                "settings.attendance"
            },
            "settings:attendance",
            &summary(&before, &after),
        )?;
        Ok::<_, rusqlite::Error>(())
    })
    .await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return message_page(StatusCode::INTERNAL_SERVER_ERROR, l, &e.to_string()),
        Err(r) => return r,
    }
    let m = match sup.set_config(next) {
        Ok(()) => (
            true,
            l.t("已保存，已生效。", "Saved and in force.").to_owned(),
        ),
        Err(e) => (false, format!("saved, but not in force: {e}")),
    };
    page_with(&state, &viewer, StatusCode::OK, Some(m), None).await
}

/// A short before → after of the rules, for the audit log.
fn summary(a: &crate::config::AttendanceConfig, b: &crate::config::AttendanceConfig) -> String {
    let line = |c: &crate::config::AttendanceConfig| {
        let seasons: Vec<String> = c
            .schedules
            .iter()
            .map(|s| {
                let segs: Vec<String> = s
                    .segments
                    .iter()
                    .map(|g| format!("{}-{}", g.start, g.end))
                    .collect();
                format!("{}..{} {}", s.from, s.to, segs.join(","))
            })
            .collect();
        format!(
            "grace {} absent {} quota {} | {}",
            c.grace_min,
            c.absent_after_min,
            c.makeup_quota,
            seasons.join(" | ")
        )
    };
    let (x, y) = (line(a), line(b));
    if x == y {
        format!("unchanged: {y}")
    } else {
        format!("{x} → {y}")
    }
}
