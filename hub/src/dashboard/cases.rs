//! Cases (`/cases?view=todo|doing|done`): seed 002's 待办 / 在办 / 已办 lists with a case-number
//! search, and one case's timeline (`/cases/{site}/{case_no}`): its stage events at their own
//! times, pauses, warnings, anomalies, letters, ratings, work orders and the messages sent about it.

use super::html::{self, Lang, esc, level_badge, stage_name};
use super::{Role, Viewer};
use crate::oversight::cases::CaseState;
use crate::store;
use crate::web::read;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use rusqlite::params;
use serde::Deserialize;

const LIMIT: u32 = 300;

#[derive(Deserialize, Default)]
pub struct Filters {
    pub view: Option<String>,
    pub site: Option<String>,
    pub unit: Option<String>,
    /// A case number, or its beginning.
    pub q: Option<String>,
}

struct Row {
    site: String,
    case_no: String,
    unit: String,
    window: String,
    level: Option<String>,
    due: Option<String>,
    accepted: Option<String>,
    completed: Option<String>,
    state: Option<CaseState>,
}

const VIEWS: [(&str, &str, &str); 3] = [
    ("todo", "待办", "To do"),
    ("doing", "在办", "In progress"),
    ("done", "已办", "Done"),
];

pub async fn list(
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
    let view = VIEWS
        .iter()
        .find(|v| Some(v.0) == f.view.as_deref())
        .map_or("doing", |v| v.0);
    let q =
        f.q.clone()
            .map(|q| q.trim().to_owned())
            .filter(|q| !q.is_empty());
    let like = q.as_ref().map(|q| {
        format!(
            "{}%",
            q.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        )
    });
    let (s, u, sc) = (site.clone(), unit.clone(), scope.clone());
    let data = read(&state.api, move |r| {
        r.run(|c| {
            let mut counts = Vec::new();
            for (v, ..) in VIEWS {
                counts.push(c.query_row(
                    "SELECT count(*) FROM cases WHERE view = ?1 AND (?2 IS NULL OR site = ?2) AND (?3 IS NULL OR unit = ?3)
                     AND (?4 IS NULL OR case_no LIKE ?4 ESCAPE '\\')",
                    params![v, s, u, like],
                    |r| r.get::<_, i64>(0),
                )?);
            }
            let rows = c
                .prepare_cached(
                    "SELECT site, case_no, unit, window, level, due, accepted, completed, state FROM cases
                     WHERE view = ?1 AND (?2 IS NULL OR site = ?2) AND (?3 IS NULL OR unit = ?3)
                       AND (?4 IS NULL OR case_no LIKE ?4 ESCAPE '\\')
                     ORDER BY COALESCE(completed, accepted) DESC, site, case_no LIMIT ?5",
                )?
                .query_map(params![view, s, u, like, LIMIT], |r| {
                    let state: String = r.get(8)?;
                    Ok(Row {
                        site: r.get(0)?,
                        case_no: r.get(1)?,
                        unit: r.get(2)?,
                        window: r.get(3)?,
                        level: r.get(4)?,
                        due: r.get(5)?,
                        accepted: r.get(6)?,
                        completed: r.get(7)?,
                        state: serde_json::from_str(&state).ok(),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((counts, rows, super::overview::sites(c, &sc)?))
        })
    })
    .await;
    let (counts, rows, sites) = match data {
        Ok(d) => d,
        Err(r) => return r,
    };
    let l = viewer.lang;
    let keep = |v: &str| {
        let mut p = format!("/cases?view={v}");
        for (k, val) in [("site", &site), ("unit", &unit), ("q", &q)] {
            if let Some(val) = val {
                p.push_str(&format!("&amp;{k}={}", html::url(val)));
            }
        }
        p
    };
    let mut body = String::from("<p class=\"tabs\">");
    for ((v, zh, en), n) in VIEWS.iter().zip(&counts) {
        body.push_str(&format!(
            "<a href=\"{}\"{}>{} ({n})</a>",
            keep(v),
            if *v == view { " class=\"on\"" } else { "" },
            l.t(zh, en)
        ));
    }
    body.push_str("</p>");
    let site_choices = html::site_choices(l, scope.site.is_none(), &sites);
    body.push_str(&format!(
        "<form class=\"filters\" method=\"get\"><input type=\"hidden\" name=\"view\" value=\"{view}\">\
<label>{}<select name=\"site\">{}</select></label><label>{}<input name=\"unit\" value=\"{}\"{}></label>\
<label>{}<input name=\"q\" value=\"{}\"></label><button type=\"submit\">{}</button></form>",
        l.t("乡镇", "Site"),
        html::options(&site_choices, site.as_deref()),
        l.t("科室", "Unit"),
        esc(unit.as_deref().unwrap_or("")),
        if scope.unit.is_some() { " readonly" } else { "" },
        l.t("办件编号", "Case number"),
        esc(q.as_deref().unwrap_or("")),
        l.t("查询", "Search"),
    ));
    body.push_str(&format!(
        "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        l.t("乡镇", "Site"),
        l.t("办件编号", "Case"),
        l.t("事项", "Item"),
        l.t("科室", "Unit"),
        l.t("窗口", "Window"),
        l.t("受理", "Accepted"),
        l.t("办结时限", "Due"),
        l.t("办结", "Completed"),
        l.t("预警", "Level"),
    ));
    for r in &rows {
        body.push_str(&format!(
            "<tr><td>{}</td><td><a href=\"/cases/{}/{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.site),
            html::url(&r.site),
            html::url(&r.case_no),
            esc(&r.case_no),
            esc(r.state.as_ref().map_or("", |s| s.item_name.as_str())),
            esc(&r.unit),
            esc(&r.window),
            esc(r.accepted.as_deref().unwrap_or("—")),
            esc(r.due.as_deref().unwrap_or("—")),
            esc(r.completed.as_deref().unwrap_or("—")),
            r.level.as_deref().map(|lv| level_badge(l, lv)).unwrap_or_default(),
        ));
    }
    body.push_str("</table>");
    if rows.len() as u32 >= LIMIT {
        body.push_str(&format!(
            "<p class=\"muted\">{}</p>",
            l.t(
                "只显示最近的 300 件：用办件编号或科室缩小范围。",
                "Only the latest 300 are shown: narrow down by case number or unit."
            )
        ));
    }
    viewer.page("/cases", l.t("办件", "Cases").to_owned(), None, &body)
}

pub async fn detail(
    State(state): State<super::DashState>,
    viewer: Viewer,
    Path((site, case_no)): Path<(String, String)>,
) -> Response {
    if let Err(r) = viewer.require(&[Role::Supervisor, Role::Head, Role::Admin]) {
        return r;
    }
    let scope = viewer.scope();
    // Another site's case does not exist for this user: the same answer as a wrong number.
    if !scope.site_allowed(&site) {
        return viewer.not_found();
    }
    let (s, n) = (site.clone(), case_no.clone());
    let found = read(&state.api, move |r| {
        r.run(|c| store::cases::detail(c, &s, &n))
    })
    .await;
    let d = match found {
        Ok(Some(d)) if scope.unit_allowed(&d.case.unit) => d,
        Ok(_) => return viewer.not_found(),
        Err(r) => return r,
    };
    let l = viewer.lang;
    let today = state.api.sup.clock.today();
    let cs: Option<CaseState> = serde_json::from_value(d.case.state.clone()).ok();
    let mut body = String::new();
    let field = |k: &str, v: String| format!("<tr><th>{k}</th><td>{v}</td></tr>");
    body.push_str("<table>");
    body.push_str(&field(l.t("乡镇", "Site"), esc(&d.case.site)));
    if let Some(cs) = &cs {
        body.push_str(&field(
            l.t("事项", "Item"),
            format!("{} ({})", esc(&cs.item_name), esc(&cs.item_code)),
        ));
        let kind = match cs.kind {
            crate::oversight::cases::Kind::Immediate => l.t("即办件", "immediate").to_owned(),
            crate::oversight::cases::Kind::Promised => match l {
                Lang::Zh => format!("承诺件，{} 天", cs.limit_days),
                Lang::En => format!("promised, {} days", cs.limit_days),
            },
        };
        body.push_str(&field(l.t("类型", "Kind"), kind));
        body.push_str(&field(l.t("经办人", "Handler"), esc(&cs.staff_id)));
        if cs.extension_days > 0 {
            body.push_str(&field(
                l.t("延期", "Extension"),
                cs.extension_days.to_string(),
            ));
        }
    }
    body.push_str(&field(
        l.t("科室 / 窗口", "Unit / window"),
        format!("{} / {}", esc(&d.case.unit), esc(&d.case.window)),
    ));
    body.push_str(&field(
        l.t("办结时限", "Due"),
        format!(
            "{}{}",
            esc(d.case.due.as_deref().unwrap_or("—")),
            d.case
                .provisional_year
                .map(|y| format!(" {}", super::html::provisional_mark(l, y)))
                .unwrap_or_default()
        ),
    ));
    body.push_str(&field(
        l.t("预警", "Level"),
        d.case
            .level
            .as_deref()
            .map(|lv| level_badge(l, lv))
            .unwrap_or_else(|| "—".into()),
    ));
    if d.case.open {
        body.push_str(&field(
            l.t("倒计时", "Countdown"),
            super::warnings::countdown(
                l,
                &state.api.sup.calendar(),
                cs.as_ref(),
                d.case.due.as_deref(),
                today,
            ),
        ));
    }
    if let Some(p) = &d.case.problem {
        body.push_str(&field(l.t("问题", "Problem"), esc(p)));
    }
    body.push_str("</table>");
    if let Some(year) = d.case.provisional_year {
        body.push_str(&super::html::provisional_note(l, year));
    }

    body.push_str(&format!(
        "<h2>{}</h2><table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        l.t("办理过程", "Timeline"),
        l.t("时间", "Time"),
        l.t("环节", "Stage"),
        l.t("经办人", "Staff"),
        l.t("说明", "Note")
    ));
    for t in &d.timeline {
        let note = ["reason", "note", "approval_ref", "fee_yuan"]
            .iter()
            .filter_map(|k| {
                t.body.get(*k).filter(|v| !v.is_null()).map(|v| {
                    format!(
                        "{k}: {}",
                        v.as_str().map_or_else(|| v.to_string(), str::to_owned)
                    )
                })
            })
            .collect::<Vec<_>>()
            .join("; ");
        body.push_str(&format!(
            "<tr><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&t.at),
            t.backdated
                .as_ref()
                .map(|m| format!(" {}", super::html::backdated_mark(l, m)))
                .unwrap_or_default(),
            stage_name(l, &t.stage),
            esc(&t.staff_id),
            esc(&note)
        ));
    }
    body.push_str("</table>");
    if let Some(cs) = &cs {
        if !cs.pauses.is_empty() {
            body.push_str(&format!("<h2>{}</h2><ul>", l.t("暂停", "Pauses")));
            for (from, until) in &cs.pauses {
                body.push_str(&format!(
                    "<li>{from} → {}</li>",
                    until.map_or_else(
                        || l.t("未恢复", "still paused").to_owned(),
                        |u| u.to_string()
                    )
                ));
            }
            body.push_str("</ul>");
        }
        if !cs.anomalies.is_empty() {
            body.push_str(&format!("<h2>{}</h2><ul>", l.t("异常", "Anomalies")));
            for a in &cs.anomalies {
                body.push_str(&format!("<li>{} {}</li>", a.on, esc(&a.what)));
            }
            body.push_str("</ul>");
        }
    }
    body.push_str(&format!("<h2>{}</h2>", l.t("预警记录", "Warnings")));
    if d.case.warnings.is_empty() {
        body.push_str(&format!("<p class=\"muted\">{}</p>", l.t("无", "None")));
    } else {
        body.push_str("<ul>");
        for w in &d.case.warnings {
            let badge = if w.level == "pause_overdue" {
                l.t("暂停超时", "pause overdue").to_owned()
            } else {
                level_badge(l, &w.level)
            };
            body.push_str(&format!("<li>{} {badge}</li>", esc(&w.on_day)));
        }
        body.push_str("</ul>");
    }
    if !d.letters.is_empty() {
        body.push_str(&format!(
            "<h2>{}</h2><ul>",
            l.t("监察建议书", "Supervision letters")
        ));
        for x in &d.letters {
            body.push_str(&format!(
                "<li><a href=\"/letters/{}\">{}</a> {}</li>",
                x.id,
                esc(&x.number),
                esc(&x.issued_day)
            ));
        }
        body.push_str("</ul>");
    }
    if !d.ratings.is_empty() {
        body.push_str(&format!("<h2>{}</h2><ul>", l.t("评价", "Ratings")));
        for x in &d.ratings {
            body.push_str(&format!(
                "<li>{} {} ({}){} {}</li>",
                esc(&x.day),
                esc(x.level_name),
                esc(&x.channel),
                if x.defaulted {
                    l.t(" 默认", " default")
                } else {
                    ""
                },
                esc(x.comment.as_deref().unwrap_or(""))
            ));
        }
        body.push_str("</ul>");
    }
    if !d.work_orders.is_empty() {
        body.push_str(&format!("<h2>{}</h2><ul>", l.t("差评工单", "Work orders")));
        for w in &d.work_orders {
            body.push_str(&format!(
                "<li>#{} {} · {} {} · {} {}</li>",
                w.id,
                esc(&w.status),
                l.t("回访期限", "callback due"),
                esc(w.callback_due.as_deref().unwrap_or("—")),
                l.t("整改期限", "fix due"),
                esc(w.fix_due.as_deref().unwrap_or("—"))
            ));
        }
        body.push_str("</ul>");
    }
    if !d.notifications.is_empty() {
        body.push_str(&format!(
            "<h2>{}</h2><table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            l.t("通知", "Messages"),
            l.t("日期", "Day"),
            l.t("对象", "To"),
            l.t("内容", "Subject"),
            l.t("状态", "Status")
        ));
        for n in &d.notifications {
            body.push_str(&format!(
                "<tr><td>{}</td><td>{} {}</td><td>{}</td><td>{}</td></tr>",
                esc(&n.day),
                esc(&n.role),
                esc(n.name.as_deref().unwrap_or("")),
                esc(&n.subject),
                esc(&n.status)
            ));
        }
        body.push_str("</table>");
    }
    let title = match l {
        Lang::Zh => format!("办件 {}", d.case.case_no),
        Lang::En => format!("Case {}", d.case.case_no),
    };
    viewer.page("/cases", title, None, &body)
}
