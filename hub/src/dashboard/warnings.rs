//! Warnings board (`/warnings`): the open cases on the warning ladder, most serious first, with the
//! due day and the counted days left or overdue; filters by site, unit, window and level; refreshes
//! itself every 30 s. Supervision letters are linked and served (`/letters/{id}`) within scope.

use super::html::{self, Lang, esc, level_badge, level_name};
use super::{Role, Viewer};
use crate::oversight::calendar::Calendar;
use crate::oversight::cases::CaseState;
use crate::oversight::deadlines::WarningLevel;
use crate::web::read;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::NaiveDate;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Deserialize;
use std::collections::HashMap;

/// Rows shown at most (the count says how many there are).
const LIMIT: u32 = 500;

#[derive(Deserialize, Default)]
pub struct Filters {
    pub site: Option<String>,
    pub unit: Option<String>,
    pub window: Option<String>,
    pub level: Option<String>,
}

struct Row {
    site: String,
    case_no: String,
    unit: String,
    window: String,
    level: String,
    due: Option<String>,
    state: Option<CaseState>,
    problem: Option<String>,
    /// The provisional calendar year the due day and light rest on.
    provisional: Option<i32>,
}

pub struct Letter {
    pub id: i64,
    pub number: String,
    pub site: String,
    pub case_no: String,
    pub unit: String,
    pub issued_day: String,
    pub overdue_days: i64,
}

/// Letters of a scope, newest first.
pub fn letters(
    conn: &Connection,
    site: Option<&str>,
    unit: Option<&str>,
    case_no: Option<&str>,
    limit: u32,
) -> rusqlite::Result<Vec<Letter>> {
    conn.prepare_cached(&format!(
        "SELECT id, number, site, case_no, unit, issued_day, overdue_days FROM letters
         WHERE {} AND (?2 IS NULL OR unit = ?2) AND (?3 IS NULL OR case_no = ?3)
         ORDER BY id DESC LIMIT ?4",
        super::site_clause(site)
    ))?
    .query_map(params![site, unit, case_no, limit], |r| {
        Ok(Letter {
            id: r.get(0)?,
            number: r.get(1)?,
            site: r.get(2)?,
            case_no: r.get(3)?,
            unit: r.get(4)?,
            issued_day: r.get(5)?,
            overdue_days: r.get(6)?,
        })
    })?
    .collect()
}

/// "3 working days left", "overdue 2", "paused": the countdown of an open case.
pub fn countdown(
    lang: Lang,
    cal: &Calendar,
    state: Option<&CaseState>,
    due: Option<&str>,
    today: NaiveDate,
) -> String {
    let (Some(state), Some(due)) = (state, due.and_then(|d| d.parse::<NaiveDate>().ok())) else {
        return "—".into();
    };
    let Some(clock) = state.clock() else {
        return "—".into();
    };
    if clock.is_paused() {
        return lang.t("暂停计时", "clock paused").into();
    }
    let unit = match state.unit_of_days {
        crate::oversight::calendar::DayUnit::Working => lang.t("个工作日", " working days"),
        crate::oversight::calendar::DayUnit::Natural => lang.t("天", " days"),
    };
    if due >= today {
        match cal.days_between(today, due, state.unit_of_days) {
            Ok(0) => lang.t("今日到期", "due today").into(),
            Ok(n) => match lang {
                Lang::Zh => format!("剩 {n} {unit}"),
                Lang::En => format!("{n}{unit} left"),
            },
            Err(e) => esc(&e.to_string()),
        }
    } else {
        match clock.overdue_days(cal, today) {
            Ok(n) => match lang {
                Lang::Zh => format!("<span class=\"bad\">超期 {n} {unit}</span>"),
                Lang::En => format!("<span class=\"bad\">overdue {n}{unit}</span>"),
            },
            Err(e) => esc(&e.to_string()),
        }
    }
}

pub async fn page(
    State(state): State<super::DashState>,
    viewer: Viewer,
    Query(f): Query<Filters>,
) -> Response {
    if let Err(r) = viewer.require(&[Role::Supervisor, Role::Head, Role::Admin]) {
        return r;
    }
    let scope = viewer.scope();
    let (Ok(site), Ok(unit)) = (
        scope.site_filter(f.site.as_deref()),
        scope.unit_filter(f.unit.as_deref()),
    ) else {
        return viewer.forbidden();
    };
    let window = f.window.clone().filter(|w| !w.trim().is_empty());
    let level = f
        .level
        .as_deref()
        .and_then(WarningLevel::parse)
        .map(WarningLevel::as_str);
    let (s, u, w) = (site.clone(), unit.clone(), window.clone());
    let sc = scope.clone();
    let data = read(&state.api, move |r| {
        r.run(|c| {
            let clause = super::site_clause(s.as_deref());
            let total: i64 = c.query_row(
                &format!("SELECT count(*) FROM cases WHERE open = 1 AND level IS NOT NULL AND {clause}
                 AND (?2 IS NULL OR unit = ?2) AND (?3 IS NULL OR window = ?3) AND (?4 IS NULL OR level = ?4)"),
                params![s, u, w, level],
                |r| r.get(0),
            )?;
            let rows = c
                .prepare_cached(&format!(
                    "SELECT site, case_no, unit, window, level, due, state, problem, provisional FROM cases
                     WHERE open = 1 AND level IS NOT NULL AND {clause}
                       AND (?2 IS NULL OR unit = ?2) AND (?3 IS NULL OR window = ?3) AND (?4 IS NULL OR level = ?4)
                     ORDER BY CASE level WHEN 'supervision_letter' THEN 0 WHEN 'red_card' THEN 1 WHEN 'yellow_card' THEN 2
                                         WHEN 'red_light' THEN 3 WHEN 'yellow_light' THEN 4 ELSE 5 END, due, site, case_no
                     LIMIT ?5"
                ))?
                .query_map(params![s, u, w, level, LIMIT], |r| {
                    let state: String = r.get(6)?;
                    Ok(Row {
                        site: r.get(0)?,
                        case_no: r.get(1)?,
                        unit: r.get(2)?,
                        window: r.get(3)?,
                        level: r.get(4)?,
                        due: r.get(5)?,
                        state: serde_json::from_str(&state).ok(),
                        problem: r.get(7)?,
                        provisional: r.get(8)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let letters = letters(c, s.as_deref(), u.as_deref(), None, 50)?;
            let sites = super::overview::sites(c, &sc)?;
            Ok((total, rows, letters, sites))
        })
    })
    .await;
    let (total, rows, letters, sites) = match data {
        Ok(d) => d,
        Err(r) => return r,
    };
    let l = viewer.lang;
    let today = state.api.sup.clock.today();
    let cal = &state.api.sup.calendar();
    let by_case: HashMap<(&str, &str), &Letter> = letters
        .iter()
        .map(|x| ((x.site.as_str(), x.case_no.as_str()), x))
        .collect();
    let mut body = filters_form(
        l,
        &viewer,
        &sites,
        site.as_deref(),
        unit.as_deref(),
        window.as_deref(),
        level,
    );
    body.push_str(&format!(
        "<p>{} <b>{total}</b>{} · {} {today} · {}</p>",
        l.t("在办预警", "Open cases on the ladder:"),
        if total > LIMIT as i64 {
            match l {
                Lang::Zh => format!("（显示前 {LIMIT} 件）"),
                Lang::En => format!(" (the first {LIMIT} shown)"),
            }
        } else {
            String::new()
        },
        l.t("今日", "today"),
        l.t("每 30 秒自动刷新", "refreshes every 30 s")
    ));
    body.push_str(&format!(
        "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        l.t("预警", "Level"),
        l.t("乡镇", "Site"),
        l.t("办件编号", "Case"),
        l.t("事项", "Item"),
        l.t("科室", "Unit"),
        l.t("窗口", "Window"),
        l.t("经办人", "Handler"),
        l.t("办结时限", "Due"),
        l.t("倒计时", "Countdown"),
        l.t("监察建议书", "Letter"),
    ));
    for r in &rows {
        let letter = by_case
            .get(&(r.site.as_str(), r.case_no.as_str()))
            .map(|x| format!("<a href=\"/letters/{}\">{}</a>", x.id, esc(&x.number)))
            .unwrap_or_default();
        let count = match &r.problem {
            Some(p) => format!("<span class=\"muted\">{}</span>", esc(p)),
            None => countdown(l, cal, r.state.as_ref(), r.due.as_deref(), today),
        };
        let mark = r
            .provisional
            .map(|y| format!(" {}", html::provisional_mark(l, y)))
            .unwrap_or_default();
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td><a href=\"/cases/{}/{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{mark}</td><td>{}</td><td>{}</td></tr>",
            level_badge(l, &r.level),
            esc(&r.site),
            html::url(&r.site),
            html::url(&r.case_no),
            esc(&r.case_no),
            esc(r.state.as_ref().map(|s| s.item_name.as_str()).unwrap_or("")),
            esc(&r.unit),
            esc(&r.window),
            esc(r.state.as_ref().map(|s| s.staff_id.as_str()).unwrap_or("")),
            esc(r.due.as_deref().unwrap_or("—")),
            count,
            letter
        ));
    }
    body.push_str("</table>");
    if let Some(year) = rows.iter().filter_map(|r| r.provisional).min() {
        body.push_str(&html::provisional_note(l, year));
    }
    body.push_str(&format!(
        "<h2>{}</h2>",
        l.t("监察建议书", "Supervision letters")
    ));
    if letters.is_empty() {
        body.push_str(&format!("<p class=\"muted\">{}</p>", l.t("无", "None")));
    } else {
        body.push_str(&format!(
            "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            l.t("文号", "Number"),
            l.t("乡镇", "Site"),
            l.t("办件编号", "Case"),
            l.t("科室", "Unit"),
            l.t("签发日", "Issued"),
            l.t("超期", "Overdue"),
        ));
        for x in &letters {
            body.push_str(&format!(
                "<tr><td><a href=\"/letters/{}\">{}</a></td><td>{}</td><td><a href=\"/cases/{}/{}\">{}</a></td><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
                x.id,
                esc(&x.number),
                esc(&x.site),
                html::url(&x.site),
                html::url(&x.case_no),
                esc(&x.case_no),
                esc(&x.unit),
                esc(&x.issued_day),
                x.overdue_days
            ));
        }
        body.push_str("</table>");
    }
    viewer.page(
        "/warnings",
        l.t("预警看板", "Warnings board").to_owned(),
        Some(30),
        &body,
    )
}

fn filters_form(
    l: Lang,
    viewer: &Viewer,
    sites: &[String],
    site: Option<&str>,
    unit: Option<&str>,
    window: Option<&str>,
    level: Option<&str>,
) -> String {
    let site_choices = html::site_choices(l, viewer.scope().site.is_none(), sites);
    let mut level_choices = vec![(String::new(), l.t("全部", "all").to_owned())];
    level_choices.extend(
        WarningLevel::ALL
            .iter()
            .map(|lv| (lv.as_str().to_owned(), level_name(l, *lv).to_owned())),
    );
    let unit_field = match &viewer.scope().unit {
        Some(u) => format!("<input name=\"unit\" value=\"{}\" readonly>", esc(u)),
        None => format!(
            "<input name=\"unit\" value=\"{}\">",
            esc(unit.unwrap_or(""))
        ),
    };
    format!(
        "<form class=\"filters\" method=\"get\"><label>{}<select name=\"site\">{}</select></label>\
<label>{}{unit_field}</label><label>{}<input name=\"window\" value=\"{}\" size=\"6\"></label>\
<label>{}<select name=\"level\">{}</select></label><button type=\"submit\">{}</button></form>",
        l.t("乡镇", "Site"),
        html::options(&site_choices, site),
        l.t("科室", "Unit"),
        l.t("窗口", "Window"),
        esc(window.unwrap_or("")),
        l.t("预警", "Level"),
        html::options(&level_choices, level),
        l.t("筛选", "Filter"),
    )
}

/// The printable supervision letter, if its case is in the user's scope.
pub async fn letter(
    State(state): State<super::DashState>,
    viewer: Viewer,
    Path(id): Path<i64>,
) -> Response {
    if let Err(r) = viewer.require(&[Role::Supervisor, Role::Head, Role::Admin]) {
        return r;
    }
    let found = read(&state.api, move |r| {
        r.run(|c| {
            c.query_row(
                "SELECT site, unit, document FROM letters WHERE id = ?1",
                [id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                },
            )
            .optional()
        })
    })
    .await;
    match found {
        Ok(Some((site, unit, doc))) if viewer.scope().allows(&site, &unit) => {
            super::html_response(StatusCode::OK, doc)
        }
        Ok(_) => viewer.not_found(),
        Err(r) => r,
    }
}
