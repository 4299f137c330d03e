//! Calendar overrides (`/admin/calendar`, admins only; OVERSIGHT.md §1): the year's official
//! holidays and make-up working days, the admins' overrides that win over them, a form to add one
//! (a date or a short range) and removal. Overrides are stored in the hub's database and put in
//! force in the running hub at once: the calendar is rebuilt and swapped in
//! ([`crate::supervise::Supervision::set_calendar`]) and the open cases are re-evaluated against it.

use super::accounts::Role;
use super::html::{self, Lang, esc};
use super::{Viewer, message_page};
use crate::store::settings::{self, Override, Refused};
use crate::supervise::{Supervision, TICK_CHUNK};
use crate::web::{ApiState, read, write};
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{Datelike, NaiveDate};
use serde::Deserialize;
use sunlight_protocol::holidays::OfficialDay;

#[derive(Deserialize, Default, Clone)]
pub struct AddForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    working: String,
    #[serde(default)]
    reason: String,
}

fn render(
    viewer: &Viewer,
    sup: &Supervision,
    year: i32,
    overrides: &[Override],
    message: Option<(bool, String)>,
    form: &AddForm,
) -> String {
    let l = viewer.lang;
    let csrf = esc(&viewer.session.csrf);
    let mut body = String::new();
    body.push_str(&html::flash(message.as_ref()));
    body.push_str(&format!(
        "<p class=\"muted\">{}</p><h2>{}</h2>",
        l.t(
            "管理员设置的调整优先于国务院公布的放假安排；保存后立即用于办件时限、考勤、设备在岗时段和报表，无需重启。",
            "An admin override wins over the State Council's data; once saved it is used at once for case deadlines, attendance, office hours and reports, without a restart."
        ),
        l.t("本地调整", "Overrides"),
    ));
    if overrides.is_empty() {
        body.push_str(&format!(
            "<p class=\"muted\">{}</p>",
            l.t("暂无调整。", "No overrides.")
        ));
    } else {
        body.push_str(&format!(
            "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th></th></tr>",
            l.t("日期", "Date"),
            l.t("调整为", "Made"),
            l.t("原因", "Reason"),
            l.t("设置人", "By"),
            l.t("时间", "At"),
        ));
        for o in overrides {
            body.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>\
<form method=\"post\" action=\"/admin/calendar/remove\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<input type=\"hidden\" name=\"day\" value=\"{}\"><button type=\"submit\">{}</button></form></td></tr>",
                o.day,
                day_name(l, o.working),
                esc(&o.reason),
                esc(&o.set_by),
                super::html::time_ms(Some(o.at_ms)),
                o.day,
                l.t("删除", "Remove"),
            ));
        }
        body.push_str("</table>");
    }
    let choices = [
        ("off".to_owned(), day_name(l, false).to_owned()),
        ("working".to_owned(), day_name(l, true).to_owned()),
    ];
    body.push_str(&format!(
        "<h2>{}</h2><form class=\"filters\" method=\"post\" action=\"/admin/calendar\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<label>{}<input name=\"from\" value=\"{}\" placeholder=\"2025-11-05\" required></label>\
<label>{}<input name=\"to\" value=\"{}\" placeholder=\"{}\"></label>\
<label>{}<select name=\"working\">{}</select></label>\
<label>{}<input name=\"reason\" value=\"{}\" size=\"30\" required></label>\
<button type=\"submit\">{}</button></form>",
        l.t("新增调整", "Add an override"),
        l.t("日期（YYYY-MM-DD）", "Date (YYYY-MM-DD)"),
        esc(&form.from),
        l.t("至（可选，最多 31 天）", "To (optional, up to 31 days)"),
        esc(&form.to),
        l.t("单日可不填", "blank for one day"),
        l.t("调整为", "Make it"),
        super::html::options(&choices, Some(form.working.as_str())),
        l.t("原因", "Reason"),
        esc(&form.reason),
        l.t("保存", "Save"),
    ));
    let cal = sup.calendar();
    let official = cal.official_data();
    let years: Vec<i32> = official.years().collect();
    body.push_str(&format!(
        "<h2>{} {year}</h2><p class=\"tabs\">",
        l.t("国务院放假安排", "Official holidays")
    ));
    for y in &years {
        body.push_str(&format!(
            "<a href=\"/admin/calendar?year={y}\"{}>{y}</a>",
            if *y == year { " class=\"on\"" } else { "" }
        ));
    }
    body.push_str("</p>");
    let listed = official.listed(year);
    if listed.is_empty() {
        body.push_str(&format!(
            "<p class=\"error\">{}</p>",
            l.t(
                "没有该年度的官方数据：请在 holidays-cn.toml 中补充国务院通知，或逐日设置调整。",
                "No official data for this year: add the State Council notice to holidays-cn.toml, or set each needed date as an override."
            )
        ));
    } else {
        body.push_str(&format!(
            "<table><tr><th>{}</th><th>{}</th><th>{}</th></tr>",
            l.t("日期", "Date"),
            l.t("官方", "Official"),
            l.t("本地调整", "Override"),
        ));
        for (d, kind) in listed {
            let o = overrides.iter().find(|o| o.day == d);
            body.push_str(&format!(
                "<tr><td>{d} {}</td><td>{}</td><td>{}</td></tr>",
                weekday(l, d),
                match kind {
                    OfficialDay::Holiday => l.t("放假", "holiday"),
                    OfficialDay::MakeUpWorkday => l.t("调休上班", "make-up working day"),
                    OfficialDay::Ordinary => l.t("平常日", "ordinary"),
                },
                o.map(|o| day_name(l, o.working)).unwrap_or("—"),
            ));
        }
        body.push_str("</table>");
    }
    body
}

fn day_name(l: Lang, working: bool) -> &'static str {
    if working {
        l.t("上班", "working day")
    } else {
        l.t("休息", "day off")
    }
}

fn weekday(l: Lang, d: NaiveDate) -> &'static str {
    let i = d.weekday().num_days_from_monday() as usize;
    match l {
        Lang::Zh => ["周一", "周二", "周三", "周四", "周五", "周六", "周日"][i],
        Lang::En => ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][i],
    }
}

async fn page_with(
    state: &super::DashState,
    viewer: &Viewer,
    year: Option<i32>,
    status: StatusCode,
    message: Option<(bool, String)>,
    form: &AddForm,
) -> Response {
    let overrides = match read(&state.api, |r| r.run(settings::overrides)).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let sup = &state.api.sup;
    let year = year.unwrap_or_else(|| sup.clock.today().year());
    viewer.page_with_status(
        status,
        "/admin/calendar",
        viewer.lang.t("工作日历", "Working-day calendar").to_owned(),
        None,
        &render(viewer, sup, year, &overrides, message, form),
    )
}

#[derive(Deserialize)]
pub struct YearQuery {
    year: Option<i32>,
}

pub async fn page(
    State(state): State<super::DashState>,
    viewer: Viewer,
    Query(q): Query<YearQuery>,
) -> Response {
    if let Err(r) = viewer.require(&[Role::Admin]) {
        return r;
    }
    let form = AddForm {
        working: "off".into(),
        ..AddForm::default()
    };
    page_with(&state, &viewer, q.year, StatusCode::OK, None, &form).await
}

fn refused(l: Lang, r: Refused) -> String {
    match l {
        Lang::Zh => r.zh,
        Lang::En => r.en,
    }
}

/// Puts the stored calendar in force and re-evaluates the open cases against it (their due days
/// and lights move with the calendar). The oversight tick would get there within the hour; an admin
/// expects to see it now.
async fn apply(api: &ApiState) -> Result<(), String> {
    let api2 = api.clone();
    let result = write(api, move |tx| {
        let cal = settings::calendar(tx)?;
        api2.sup.set_calendar(cal);
        let today = api2.sup.clock.today();
        crate::store::cases::recheck_open(tx, today).map_err(|e| e.to_string())?;
        loop {
            let n = crate::store::cases::tick_chunk(tx, &api2.sup, today, TICK_CHUNK)
                .map_err(|e| e.to_string())?;
            if n < TICK_CHUNK as usize {
                break;
            }
        }
        Ok::<_, String>(())
    })
    .await;
    match result {
        Ok(r) => r,
        Err(_) => Err("the store did not answer".into()),
    }
}

pub async fn add(
    State(state): State<super::DashState>,
    viewer: Viewer,
    Form(form): Form<AddForm>,
) -> Response {
    if let Err(r) = viewer.require(&[Role::Admin]) {
        return r;
    }
    if let Err(r) = viewer.check_csrf(&form.csrf) {
        return r;
    }
    let l = viewer.lang;
    let bad = |m: String| (StatusCode::UNPROCESSABLE_ENTITY, Some((false, m)));
    let working = match form.working.as_str() {
        "working" => true,
        "off" => false,
        other => {
            let (s, m) = bad(match l {
                Lang::Zh => format!("调整类型 {other:?} 无效：请选择上班或休息。"),
                Lang::En => format!("{other:?}: choose working day or day off."),
            });
            return page_with(&state, &viewer, None, s, m, &form).await;
        }
    };
    let days = match settings::override_days(&form.from, &form.to, &form.reason) {
        Ok(d) => d,
        Err(e) => {
            let (s, m) = bad(refused(l, e));
            return page_with(&state, &viewer, None, s, m, &form).await;
        }
    };
    let by = viewer.user().name.clone();
    let reason = form.reason.trim().to_owned();
    let (first, last) = (days[0], days[days.len() - 1]);
    let ds = days.clone();
    let today = state.api.sup.clock.today();
    let result = write(&state.api, move |tx| {
        // Before → after of each day, for the audit log.
        let mut before = Vec::new();
        for d in &ds {
            if let Some(o) = settings::get_override(tx, *d)? {
                before.push(format!(
                    "{d} was {}",
                    if o.working { "working" } else { "off" }
                ));
            }
        }
        settings::set_overrides(tx, &ds, working, &reason, &by)?;
        let target = if first == last {
            format!("calendar:{first}")
        } else {
            format!("calendar:{first}..{last}")
        };
        let mut detail = format!("{} ({reason})", if working { "working" } else { "off" });
        if !before.is_empty() {
            detail.push_str(&format!("; {}", before.join(", ")));
        }
        crate::store::audit(tx, &by, "calendar.set", &target, &detail)?;
        crate::store::cases::recheck_open(tx, today)?;
        Ok::<_, rusqlite::Error>(())
    })
    .await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return message_page(StatusCode::INTERNAL_SERVER_ERROR, l, &e.to_string()),
        Err(r) => return r,
    }
    let applied = apply(&state.api).await;
    let m = match (l, applied) {
        (_, Err(e)) => (false, format!("saved, but not yet in force: {e}")),
        (Lang::Zh, Ok(())) => (
            true,
            format!(
                "已将 {first}{} 设为{}，已生效。",
                if first == last {
                    String::new()
                } else {
                    format!(" 至 {last}")
                },
                day_name(l, working)
            ),
        ),
        (Lang::En, Ok(())) => (
            true,
            format!(
                "{first}{} is now a {}, in force.",
                if first == last {
                    String::new()
                } else {
                    format!(" to {last}")
                },
                day_name(l, working)
            ),
        ),
    };
    let form = AddForm {
        working: "off".into(),
        ..AddForm::default()
    };
    page_with(
        &state,
        &viewer,
        Some(first.year()),
        StatusCode::OK,
        Some(m),
        &form,
    )
    .await
}

#[derive(Deserialize)]
pub struct RemoveForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    day: String,
}

pub async fn remove(
    State(state): State<super::DashState>,
    viewer: Viewer,
    Form(form): Form<RemoveForm>,
) -> Response {
    if let Err(r) = viewer.require(&[Role::Admin]) {
        return r;
    }
    if let Err(r) = viewer.check_csrf(&form.csrf) {
        return r;
    }
    let l = viewer.lang;
    let empty = AddForm {
        working: "off".into(),
        ..AddForm::default()
    };
    let Ok(day) = NaiveDate::parse_from_str(form.day.trim(), "%Y-%m-%d") else {
        let m = match l {
            Lang::Zh => format!("日期 {:?} 格式不对，应为 YYYY-MM-DD。", form.day),
            Lang::En => format!("Date {:?} is not YYYY-MM-DD.", form.day),
        };
        return page_with(
            &state,
            &viewer,
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some((false, m)),
            &empty,
        )
        .await;
    };
    let by = viewer.user().name.clone();
    let today = state.api.sup.clock.today();
    let result = write(&state.api, move |tx| {
        let removed = settings::remove_override(tx, day)?;
        if let Some(o) = &removed {
            crate::store::audit(
                tx,
                &by,
                "calendar.remove",
                &format!("calendar:{day}"),
                &format!(
                    "{} ({}) → official",
                    if o.working { "working" } else { "off" },
                    o.reason
                ),
            )?;
            crate::store::cases::recheck_open(tx, today)?;
        }
        Ok::<_, rusqlite::Error>(removed.is_some())
    })
    .await;
    match result {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => return viewer.not_found(),
        Ok(Err(e)) => return message_page(StatusCode::INTERNAL_SERVER_ERROR, l, &e.to_string()),
        Err(r) => return r,
    }
    let m = match (l, apply(&state.api).await) {
        (_, Err(e)) => (false, format!("removed, but not yet in force: {e}")),
        (Lang::Zh, Ok(())) => (true, format!("已删除 {day} 的调整，恢复官方安排。")),
        (Lang::En, Ok(())) => (
            true,
            format!("The override of {day} is removed; the official data applies."),
        ),
    };
    page_with(
        &state,
        &viewer,
        Some(day.year()),
        StatusCode::OK,
        Some(m),
        &empty,
    )
    .await
}
