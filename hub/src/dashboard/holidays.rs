//! Calendar overrides (`/admin/calendar`, admins only; OVERSIGHT.md §1): the year's official
//! holidays and make-up working days, the admins' overrides that win over them, a form to add one
//! (a date or a short range) and removal. Overrides are stored in the hub's database and put in
//! force in the running hub at once: the calendar is rebuilt and swapped in
//! ([`crate::supervise::Supervision::set_calendar`]) and the open cases are re-evaluated against it.
//! Per year the page says where the answers come from — official (shipped or loaded), provisional
//! (the statutory holidays alone, decision 0014) or missing — and takes a year's notice pasted as
//! the project's TOML or holiday-cn JSON (as `sunlight-hub calendar import` does).

use super::accounts::Role;
use super::html::{self, Lang, esc};
use super::{Viewer, message_page};
use crate::store::settings::{self, Override, Refused};
use crate::supervise::Supervision;
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
    /// A year's arrangement pasted into the import form.
    #[serde(default)]
    data: String,
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
    let this_year = sup.clock.today().year();
    let first = official.years().next().unwrap_or(this_year).min(this_year);
    body.push_str(&format!(
        "<h2>{} {year}</h2><p class=\"tabs\">",
        l.t("国务院放假安排", "Official holidays")
    ));
    for y in first..=(this_year + 1).max(year) {
        body.push_str(&format!(
            "<a href=\"/admin/calendar?year={y}\"{}>{y} {}</a>",
            if y == year { " class=\"on\"" } else { "" },
            year_state(l, &cal, y)
        ));
    }
    body.push_str("</p>");
    let listed = official.listed(year);
    if listed.is_empty() && !cal.provisional_years(year, year).is_empty() {
        body.push_str(&super::html::provisional_note(l, year));
        body.push_str(&format!(
            "<p>{}</p><table><tr><th>{}</th><th>{}</th><th>{}</th></tr>",
            l.t(
                "尚未录入该年度国务院放假安排：暂按《全国年节及纪念日放假办法》的法定节假日计算（含周末补假），周末休息，无调休上班日。",
                "This year's State Council arrangement is not loaded: the statutory holidays of the 办法 apply (with their weekday make-up days off), weekends off, no make-up working days."
            ),
            l.t("日期", "Date"),
            l.t("法定节假日", "Statutory holiday"),
            l.t("本地调整", "Override"),
        ));
        for s in sunlight_protocol::holidays::statutory(year).unwrap_or_default() {
            let o = overrides.iter().find(|o| o.day == s.date);
            body.push_str(&format!(
                "<tr><td>{} {}</td><td>{}{}</td><td>{}</td></tr>",
                s.date,
                weekday(l, s.date),
                s.festival.zh(),
                if s.substitute {
                    l.t("（补假）", " (make-up day off)")
                } else {
                    ""
                },
                o.map(|o| day_name(l, o.working)).unwrap_or("—"),
            ));
        }
        body.push_str("</table>");
    } else if listed.is_empty() {
        body.push_str(&format!(
            "<p class=\"error\">{}</p>",
            l.t(
                "没有该年度的数据（2025 年以前的年份不按现行放假办法推算）：请录入国务院通知，或逐日设置调整。",
                "No data for this year (years before 2025 are not reckoned by the current rules): load the State Council notice, or set each needed date as an override."
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
        if year >= sunlight_protocol::holidays::FIRST_STATUTORY_YEAR {
            body.push_str(&differences(l, official, year));
        }
    }
    body.push_str(&format!(
        "<h2>{}</h2><form method=\"post\" action=\"/admin/calendar/import\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<p class=\"muted\">{}</p><textarea name=\"data\" rows=\"12\" cols=\"90\" required>{}</textarea><br>\
<button type=\"submit\">{}</button></form>",
        l.t("录入年度放假安排", "Load a year's arrangement"),
        l.t(
            "粘贴国务院通知的数据：本项目的 TOML 格式（同 holidays-cn.toml），或 holiday-cn 的 JSON（{\"year\":2027,\"days\":[{\"name\":\"元旦\",\"date\":\"2027-01-01\",\"isOffDay\":true},…]}）。保存前会检查日期、名称和全部法定节假日；保存后立即生效并重新计算在办件。也可用命令 sunlight-hub calendar import FILE。",
            "Paste the notice's data: the project's TOML (as holidays-cn.toml) or holiday-cn JSON ({\"year\":2027,\"days\":[{\"name\":\"元旦\",\"date\":\"2027-01-01\",\"isOffDay\":true},…]}). Dates, names and every statutory holiday are checked first; once saved it is in force at once and the open cases are re-evaluated. The command sunlight-hub calendar import FILE does the same."
        ),
        esc(&form.data),
        l.t("检查并录入", "Check and load"),
    ));
    body
}

/// Official, provisional or missing: where the calendar's answers for `year` come from.
fn year_state(l: Lang, cal: &crate::oversight::calendar::Calendar, year: i32) -> &'static str {
    if cal.official_data().has_year(year) {
        l.t("（官方）", "(official)")
    } else if !cal.provisional_years(year, year).is_empty() {
        l.t("（暂定）", "(provisional)")
    } else {
        l.t("（无数据）", "(missing)")
    }
}

/// The days where the official arrangement of `year` differs from the provisional year the
/// statutory rules give: its make-up working days and the long breaks it builds.
fn differences(l: Lang, official: &sunlight_protocol::holidays::Official, year: i32) -> String {
    let working = |kind: OfficialDay, d: NaiveDate| match kind {
        OfficialDay::Holiday => false,
        OfficialDay::MakeUpWorkday => true,
        OfficialDay::Ordinary => {
            !matches!(d.weekday(), chrono::Weekday::Sat | chrono::Weekday::Sun)
        }
    };
    let (Some(first), Some(last)) = (
        NaiveDate::from_ymd_opt(year, 1, 1),
        NaiveDate::from_ymd_opt(year, 12, 31),
    ) else {
        return String::new();
    };
    let rows: Vec<String> = first
        .iter_days()
        .take_while(|d| *d <= last)
        .filter_map(|d| {
            let now = working(official.day(d)?, d);
            let was = working(sunlight_protocol::holidays::provisional_day(d)?, d);
            (now != was).then(|| {
                format!(
                    "<tr><td>{d} {}</td><td>{}</td><td>{}</td></tr>",
                    weekday(l, d),
                    day_name(l, was),
                    day_name(l, now)
                )
            })
        })
        .collect();
    format!(
        "<h3>{}</h3>{}",
        l.t(
            "与暂定安排（仅法定节假日）不同的日期",
            "Days that differ from the provisional year (statutory holidays only)"
        ),
        if rows.is_empty() {
            format!("<p class=\"muted\">{}</p>", l.t("无", "None"))
        } else {
            format!(
                "<table id=\"differences\"><tr><th>{}</th><th>{}</th><th>{}</th></tr>{}</table>",
                l.t("日期", "Date"),
                l.t("暂定", "Provisional"),
                l.t("官方", "Official"),
                rows.concat()
            )
        }
    )
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
        let today = api2.sup.clock.today();
        crate::supervise::reload_calendar(tx, &api2.sup, today).map(|_| ())
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

#[derive(Deserialize)]
pub struct ImportForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    data: String,
}

/// Loads a year's arrangement pasted by an admin: checked, stored with an audit entry of its
/// before → after, put in force and the open cases re-evaluated, in one transaction.
pub async fn import(
    State(state): State<super::DashState>,
    viewer: Viewer,
    Form(form): Form<ImportForm>,
) -> Response {
    if let Err(r) = viewer.require(&[Role::Admin]) {
        return r;
    }
    if let Err(r) = viewer.check_csrf(&form.csrf) {
        return r;
    }
    let l = viewer.lang;
    let by = viewer.user().name.clone();
    let today = state.api.sup.clock.today();
    let (text, api2) = (form.data.clone(), state.api.clone());
    let result = write(&state.api, move |tx| {
        match settings::import_calendar(tx, &text, &by, today) {
            Ok(years) => {
                crate::supervise::reload_calendar(tx, &api2.sup, today)
                    .map_err(rusqlite::Error::InvalidParameterName)?;
                Ok(Ok(years))
            }
            // Refused before anything was written.
            Err(settings::ImportError::Refused(why)) => Ok(Err(why)),
            Err(settings::ImportError::Db(e)) => Err(e),
        }
    })
    .await;
    let years = match result {
        Ok(Ok(Ok(years))) => years,
        Ok(Ok(Err(why))) => {
            let m = match l {
                Lang::Zh => format!("未录入：{why}"),
                Lang::En => format!("Not loaded: {why}"),
            };
            let form = AddForm {
                working: "off".into(),
                data: form.data,
                ..AddForm::default()
            };
            return page_with(
                &state,
                &viewer,
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some((false, m)),
                &form,
            )
            .await;
        }
        Ok(Err(e)) => return message_page(StatusCode::INTERNAL_SERVER_ERROR, l, &e.to_string()),
        Err(r) => return r,
    };
    let done: Vec<String> = years
        .iter()
        .map(|y| match l {
            Lang::Zh => format!(
                "已录入 {} 年放假安排（{}），{} 天与此前不同，已生效。",
                y.year,
                y.source,
                y.changed.len()
            ),
            Lang::En => format!(
                "{}'s arrangement ({}) is loaded and in force; {} days changed.",
                y.year,
                y.source,
                y.changed.len()
            ),
        })
        .collect();
    let form = AddForm {
        working: "off".into(),
        ..AddForm::default()
    };
    page_with(
        &state,
        &viewer,
        years.first().map(|y| y.year),
        StatusCode::OK,
        Some((true, done.join(" "))),
        &form,
    )
    .await
}
