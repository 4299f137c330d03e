//! The monthly window work report (`/reports?month=2025-10&site=…`) and the weekly summary
//! (`/reports?week=2025-W41`): the parts of seed 001's report from the store's figures, with
//! charts drawn on the server as inline SVG (volumes by unit, the on-time trend, attendance issues),
//! printable, and its exports (`/reports/export.xlsx`, `/reports/export.csv`) scoped like the page.

use super::html::{self, Lang, esc};
use super::{Role, Viewer};
use crate::report::{self, Candidate, Period, Report, ReportScope, UnitCount, UnitRow, export};
use crate::web::read;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

#[derive(Deserialize, Default)]
pub struct ReportQuery {
    pub month: Option<String>,
    pub week: Option<String>,
    pub site: Option<String>,
}

fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// The period asked for: a week if `week` is given, else the month (the last full month by default).
pub fn period(q: &ReportQuery, today: chrono::NaiveDate) -> Result<Period, String> {
    match (given(&q.week), given(&q.month)) {
        (Some(w), _) => Period::week(w),
        (None, Some(m)) => Period::month(m),
        (None, None) => Ok(Period::last_month(today)),
    }
}

/// The period and scope of a request, or the error page.
fn request(
    viewer: &Viewer,
    q: &ReportQuery,
    today: chrono::NaiveDate,
) -> Result<(Period, ReportScope), Response> {
    viewer.require(&[Role::Supervisor, Role::Head, Role::Admin])?;
    let p = period(q, today)
        .map_err(|e| super::message_page(StatusCode::UNPROCESSABLE_ENTITY, viewer.lang, &e))?;
    let scope = viewer.scope();
    let site = scope
        .site_filter(q.site.as_deref())
        .map_err(|_| viewer.forbidden())?;
    Ok((
        p,
        ReportScope {
            site,
            unit: scope.unit.clone(),
        },
    ))
}

async fn compute(
    state: &super::DashState,
    period: Period,
    scope: ReportScope,
) -> Result<Report, Response> {
    let sup = state.api.sup.clone();
    let today = sup.clock.report_day();
    read(&state.api, move |r| {
        r.run(|c| report::compute_live(c, &sup, &scope, &period, today))
    })
    .await
}

/// The query string of this report (for links and exports).
fn query(p: &Period, scope: &ReportScope) -> String {
    let mut q = format!("{}={}", p.kind, html::url(&p.label));
    if let Some(s) = &scope.site {
        q.push_str(&format!("&amp;site={}", html::url(s)));
    }
    q
}

pub async fn page(
    State(state): State<super::DashState>,
    viewer: Viewer,
    Query(q): Query<ReportQuery>,
) -> Response {
    let today = state.api.sup.clock.today();
    let (period, scope) = match request(&viewer, &q, today) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let sc = viewer.scope();
    let sites = match read(&state.api, move |r| {
        r.run(|c| super::overview::sites(c, &sc))
    })
    .await
    {
        Ok(s) => s,
        Err(r) => return r,
    };
    let r = match compute(&state, period, scope).await {
        Ok(r) => r,
        Err(e) => return e,
    };
    let l = viewer.lang;
    let body = render(&r, l, &sites, viewer.scope().site.is_none());
    viewer.page("/reports", export::title(&r, l), None, &body)
}

/// An export of the report: `.xlsx` or `.csv`, scoped like the page.
pub async fn export_file(
    State(state): State<super::DashState>,
    viewer: Viewer,
    axum::extract::Path(file): axum::extract::Path<String>,
    Query(q): Query<ReportQuery>,
) -> Response {
    let today = state.api.sup.clock.today();
    let (period, scope) = match request(&viewer, &q, today) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let l = viewer.lang;
    let r = match compute(&state, period, scope).await {
        Ok(r) => r,
        Err(e) => return e,
    };
    let stem = format!(
        "sunlight-report-{}{}",
        r.period.label,
        r.scope
            .site
            .as_deref()
            .map(|s| format!("-{s}"))
            .unwrap_or_default()
    );
    let (bytes, kind, ext) = match file.as_str() {
        "export.xlsx" => match export::xlsx(&r, l) {
            Ok(b) => (
                b,
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                "xlsx",
            ),
            Err(e) => {
                return super::message_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    l,
                    &format!("XLSX: {e}"),
                );
            }
        },
        "export.csv" => (export::csv(&r, l), "text/csv; charset=utf-8", "csv"),
        _ => return viewer.not_found(),
    };
    let mut resp = (StatusCode::OK, bytes).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    // The site names are ASCII identifiers; anything else is replaced to keep the header valid.
    let safe: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}.{ext}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

fn pct(r: Option<f64>) -> String {
    r.map(|r| format!("{:.2}%", r * 100.0))
        .unwrap_or_else(|| "—".into())
}

type UnitCell = fn(&UnitRow) -> String;

/// The columns of the cases table by unit, after the unit's name: (zh, en, cell).
const CASE_COLUMNS: &[(&str, &str, UnitCell)] = &[
    ("受理", "Accepted", |u| u.accepted.to_string()),
    ("办结", "Completed", |u| u.completed.to_string()),
    ("即办件", "Immediate", |u| {
        u.completed_immediate.to_string()
    }),
    ("承诺件", "Promised", |u| {
        u.completed_promised.to_string()
    }),
    ("按时办结率", "On time", |u| pct(u.on_time_rate)),
    ("提前办结率", "Early", |u| pct(u.early_rate)),
    ("黄灯/红灯", "Lights Y/R", |u| {
        format!("{} / {}", u.yellow_lights, u.red_lights)
    }),
    ("黄牌", "Yellow cards", |u| u.yellow_cards.to_string()),
    ("红牌", "Red cards", |u| u.red_cards.to_string()),
    ("监察建议书", "Letters", |u| u.letters.to_string()),
];

/// The columns of the attendance table by unit, after the unit's name: (zh, en, cell).
const ATTENDANCE_COLUMNS: &[(&str, &str, UnitCell)] = &[
    ("人数", "Staff", |u| u.staff.to_string()),
    ("正常", "On time", |u| u.segments_on_time.to_string()),
    ("迟到", "Late", |u| u.late.to_string()),
    ("早退", "Early", |u| u.left_early.to_string()),
    ("旷工（半天）", "Absent (½ d)", |u| {
        u.absent.to_string()
    }),
    ("请假时段", "Leave", |u| u.on_leave_segments.to_string()),
    ("补卡", "Make-ups", |u| u.makeups.to_string()),
    ("空岗", "Vacant", |u| u.vacant_segments.to_string()),
    ("B角替岗", "B-role", |u| u.substitutions.to_string()),
    ("巡查签到", "Patrols", |u| u.patrols.to_string()),
];

/// A table by unit: the unit's name and `columns` for each of `units`, then a total row when
/// `total` is given.
fn unit_table<'a>(
    l: Lang,
    many: bool,
    columns: &[(&'static str, &'static str, UnitCell)],
    units: impl Iterator<Item = &'a UnitRow>,
    total: Option<&UnitRow>,
) -> String {
    let mut t = format!("<table><tr><th>{}</th>", l.t("单位", "Unit"));
    for (zh, en, _) in columns {
        t.push_str(&format!("<th>{}</th>", l.t(zh, en)));
    }
    t.push_str("</tr>");
    for u in units {
        t.push_str(&format!("<tr><td>{}</td>", esc(&unit_name(u, many))));
        for (_, _, cell) in columns {
            t.push_str(&format!("<td class=\"num\">{}</td>", cell(u)));
        }
        t.push_str("</tr>");
    }
    if let Some(u) = total {
        t.push_str(&format!("<tr><th>{}</th>", l.t("合计", "Total")));
        for (_, _, cell) in columns {
            t.push_str(&format!("<th class=\"num\">{}</th>", cell(u)));
        }
        t.push_str("</tr>");
    }
    t.push_str("</table>");
    t
}

fn unit_name(u: &UnitRow, many_sites: bool) -> String {
    if many_sites {
        format!("{} {}", u.site, u.unit)
    } else {
        u.unit.clone()
    }
}

const PRINT_STYLE: &str = "<style>\
.report p{max-width:60em}.report svg{background:#fff;border:1px solid #d0d7de;max-width:100%;height:auto}\
.report .charts{display:flex;flex-wrap:wrap;gap:1em}.report table{font-size:.92em}\
@media print{@page{size:A4;margin:15mm}main{max-width:none;padding:0}.noprint{display:none}\
.report h2{break-after:avoid}.report table,.report svg{break-inside:avoid}a{color:inherit;text-decoration:none}}\
</style>";

/// The page body.
pub fn render(r: &Report, l: Lang, sites: &[String], county: bool) -> String {
    let many = r.sites.len() > 1;
    let t = &r.total;
    let q = query(&r.period, &r.scope);
    let mut b = String::from(PRINT_STYLE);
    b.push_str("<div class=\"report\">");

    // Filters, navigation and exports (not printed).
    let mut choices: Vec<(String, String)> = Vec::new();
    if county {
        choices.push((String::new(), l.t("全县", "Whole county").to_owned()));
    }
    choices.extend(sites.iter().map(|s| (s.clone(), s.clone())));
    let (month_value, week_value) = if r.period.kind == "week" {
        (String::new(), r.period.label.clone())
    } else {
        (r.period.label.clone(), String::new())
    };
    b.push_str(&format!(
        "<form class=\"filters noprint\" method=\"get\" action=\"/reports\">\
<label>{}<select name=\"site\">{}</select></label>\
<label>{}<input name=\"month\" type=\"month\" value=\"{}\"></label>\
<label>{}<input name=\"week\" type=\"week\" value=\"{}\"></label>\
<button type=\"submit\">{}</button></form>",
        l.t("范围", "Scope"),
        html::options(&choices, Some(r.scope.site.as_deref().unwrap_or(""))),
        l.t("月报（月份）", "Monthly (month)"),
        esc(&month_value),
        l.t("周报（周，优先）", "Weekly (week, wins)"),
        esc(&week_value),
        l.t("生成", "Show"),
    ));
    let (prev, next) = (r.period.previous(), r.period.next());
    b.push_str(&format!(
        "<p class=\"noprint\"><a href=\"/reports?{}\">← {}</a> · <b>{}</b> · <a href=\"/reports?{}\">{} →</a> · \
<a id=\"export-xlsx\" href=\"/reports/export.xlsx?{q}\">{}</a> · <a id=\"export-csv\" href=\"/reports/export.csv?{q}\">{}</a> · \
<span class=\"muted\">{}</span></p>",
        query(&prev, &r.scope),
        esc(&prev.label),
        esc(&r.period.label),
        query(&next, &r.scope),
        esc(&next.label),
        l.t("导出 Excel（XLSX）", "Export Excel (XLSX)"),
        l.t("导出 CSV", "Export CSV"),
        l.t("打印：使用浏览器的打印（Ctrl+P），菜单和按钮不会打印。", "Print with the browser (Ctrl+P): the menu and buttons are left out."),
    ));
    b.push_str(&format!(
        "<p class=\"muted\">{} {} – {}{}</p>",
        l.t("统计期间", "Period"),
        r.period.from,
        r.period.to,
        match r.attendance.judged_to {
            Some(d) if d < r.period.to => match l {
                Lang::Zh => format!("（考勤统计至 {d}）"),
                Lang::En => format!(" (attendance judged up to {d})"),
            },
            None => l
                .t(
                    "（尚未开始，考勤未统计）",
                    " (not begun: no attendance yet)"
                )
                .to_owned(),
            _ => String::new(),
        }
    ));

    // 一、运行情况 (一) 业务受理
    b.push_str(&format!(
        "<h2>{}</h2><h3>{}</h3>",
        l.t("一、运行情况", "1. Operations"),
        l.t("（一）业务受理", "(1) Cases")
    ));
    let top: Vec<String> = r
        .top_units
        .iter()
        .map(|u| match l {
            Lang::Zh => format!("{}（{}件）", esc(&names(&u.site, &u.unit, many)), u.count),
            Lang::En => format!("{} ({})", esc(&names(&u.site, &u.unit, many)), u.count),
        })
        .collect();
    let zero = unit_names(&r.zero_case_units, many);
    b.push_str(&match l {
        Lang::Zh => format!(
            "<p id=\"intake\">本期各窗口单位共受理业务办件 <b>{}</b> 件（其中即办件 {} 件，承诺件 {} 件），办结 <b>{}</b> 件，其中，即办件 {} 件，承诺件 {} 件。{}{}</p>",
            t.accepted,
            t.accepted_immediate,
            t.accepted_promised,
            t.completed,
            t.completed_immediate,
            t.completed_promised,
            if top.is_empty() {
                String::new()
            } else {
                format!("受理业务前{}名窗口单位为：{}。", top.len(), top.join("、"))
            },
            if zero.is_empty() {
                String::new()
            } else {
                format!("未发生业务受理办件的窗口单位为：{}。", zero.join("、"))
            }
        ),
        Lang::En => format!(
            "<p id=\"intake\">Cases accepted: <b>{}</b> ({} immediate, {} promised); completed: <b>{}</b> ({} immediate, {} promised).{}{}</p>",
            t.accepted,
            t.accepted_immediate,
            t.accepted_promised,
            t.completed,
            t.completed_immediate,
            t.completed_promised,
            if top.is_empty() {
                String::new()
            } else {
                format!(" Top units by cases accepted: {}.", top.join(", "))
            },
            if zero.is_empty() {
                String::new()
            } else {
                format!(" Units without cases: {}.", zero.join(", "))
            }
        ),
    });
    b.push_str("<div class=\"charts\">");
    b.push_str(&volume_chart(r, l, many));
    b.push_str(&trend_chart(r, l));
    b.push_str(&attendance_chart(r, l, many));
    b.push_str("</div>");

    // (二) 办理时限
    b.push_str(&format!(
        "<h3>{}</h3>",
        l.t("（二）办理时限", "(2) Time limits")
    ));
    b.push_str(&match l {
        Lang::Zh => format!(
            "<p id=\"limits\">按时办结率 <b>{}</b>，提前办结率 <b>{}</b>；本期黄灯 {} 次、红灯 {} 次，黄牌 {} 张、红牌 {} 张，监察建议书 {} 份。</p>",
            pct(t.on_time_rate), pct(t.early_rate), t.yellow_lights, t.red_lights, t.yellow_cards, t.red_cards, t.letters
        ),
        Lang::En => format!(
            "<p id=\"limits\">On-time rate <b>{}</b>, early rate <b>{}</b>; {} yellow lights, {} red lights, {} yellow cards, {} red cards, {} supervision letters.</p>",
            pct(t.on_time_rate), pct(t.early_rate), t.yellow_lights, t.red_lights, t.yellow_cards, t.red_cards, t.letters
        ),
    });
    b.push_str(&unit_table(l, many, CASE_COLUMNS, r.units.iter(), Some(t)));

    // (三) 窗口人员
    let a = &r.attendance;
    b.push_str(&format!(
        "<h3>{}</h3>",
        l.t("（三）窗口人员考勤", "(3) Attendance")
    ));
    let leave: Vec<String> = a
        .leave
        .iter()
        .map(|k| match l {
            Lang::Zh => format!(
                "{} {} 人次 {} 天",
                esc(&k.leave_type),
                k.person_times,
                k.days
            ),
            Lang::En => format!(
                "{} {} times, {} days",
                esc(&k.leave_type),
                k.person_times,
                k.days
            ),
        })
        .collect();
    b.push_str(&match l {
        Lang::Zh => format!(
            "<p id=\"attendance\">窗口工作人员请假 <b>{}</b> 人次，合计 <b>{}</b> 天{}；外出办事登记 {} 次；迟到 {} 次，早退 {} 次，旷工 {} 个半天；空岗 {} 个时段，B角替岗 {} 次；补卡 {} 次（待审批 {} 次）；违纪 {} 起。</p>",
            a.leave_person_times,
            a.leave_days,
            if leave.is_empty() { String::new() } else { format!("（{}）", leave.join("，")) },
            a.out_of_office, a.late, a.left_early, a.absent, a.vacant_segments, a.substitutions, a.makeups, a.makeups_pending, a.violations
        ),
        Lang::En => format!(
            "<p id=\"attendance\">Leave: <b>{}</b> registrations, <b>{}</b> days{}; out-of-office registrations: {}; late {}, left early {}, absent {} half days; vacant segments {}, B-role substitutions {}; make-up punches {} ({} pending); violations {}.</p>",
            a.leave_person_times,
            a.leave_days,
            if leave.is_empty() { String::new() } else { format!(" ({})", leave.join("; ")) },
            a.out_of_office, a.late, a.left_early, a.absent, a.vacant_segments, a.substitutions, a.makeups, a.makeups_pending, a.violations
        ),
    });
    b.push_str(&unit_table(
        l,
        many,
        ATTENDANCE_COLUMNS,
        r.units.iter().filter(|u| u.staff > 0 || u.patrols > 0),
        None,
    ));

    // (四) 巡查签到
    b.push_str(&format!(
        "<h3>{}</h3>",
        l.t("（四）巡查签到", "(4) Patrol sign-ins")
    ));
    let without = unit_names(&r.units_without_patrol, many);
    b.push_str(&match l {
        Lang::Zh => format!(
            "<p id=\"patrols\">本期分管领导巡查签到 <b>{}</b> 次。{}</p>",
            t.patrols,
            if without.is_empty() {
                "各单位均有巡查签到。".to_owned()
            } else {
                format!("未巡查签到的单位：{}。", without.join("、"))
            }
        ),
        Lang::En => format!(
            "<p id=\"patrols\">Patrol sign-ins: <b>{}</b>. {}</p>",
            t.patrols,
            if without.is_empty() {
                "Every unit had one.".to_owned()
            } else {
                format!("Units without: {}.", without.join(", "))
            }
        ),
    });

    // (五) 评价与投诉
    let c = &r.complaints;
    b.push_str(&format!(
        "<h3>{}</h3>",
        l.t("（五）评价与投诉", "(5) Ratings and complaints")
    ));
    b.push_str(&match l {
        Lang::Zh => format!(
            "<p id=\"ratings\">收到评价 <b>{}</b> 件，满意率（基本满意及以上）<b>{}</b>；不满意及以下 {} 件，其中非常不满意 {} 件；整改工单 {} 件，按期回访 {} 件，按期整改 {} 件。收到投诉 <b>{}</b> 件，已归档 {} 件（属实 {} 件，不属实 {} 件），办理中 {} 件。</p>",
            t.ratings, pct(t.satisfaction_rate), t.bad_ratings, t.very_bad_ratings, t.work_orders, t.called_back_on_time, t.fixed_on_time,
            c.received, c.archived, c.upheld, c.not_upheld, c.open
        ),
        Lang::En => format!(
            "<p id=\"ratings\">Ratings: <b>{}</b>, satisfaction (fair or better) <b>{}</b>; dissatisfied or worse {}, very dissatisfied {}; work orders {}, called back on time {}, fixed on time {}. Complaints: <b>{}</b>, archived {} (upheld {}, not upheld {}), open {}.</p>",
            t.ratings, pct(t.satisfaction_rate), t.bad_ratings, t.very_bad_ratings, t.work_orders, t.called_back_on_time, t.fixed_on_time,
            c.received, c.archived, c.upheld, c.not_upheld, c.open
        ),
    });

    // 二、量化评比
    b.push_str(&format!("<h2>{}</h2>", l.t("二、量化评比", "2. Awards")));
    b.push_str(&format!(
        "<p class=\"muted\">{}</p>",
        l.t(
            "综合评分：效率（按时办结率）30 分、纪律（正常考勤时段率）30 分、评价（满意率）20 分；领导评分 20 分未录入，满分按 80 分计。有投诉属实、黄牌/红牌或不满意评价者不参评。",
            "Composite score: efficiency (on-time rate) 30, discipline (segments on time) 30, ratings (satisfaction) 20; the supervisor's 20 are not recorded, so scores are out of 80. An upheld complaint, a yellow or red card, or a dissatisfied rating disqualifies."
        )
    ));
    b.push_str(&format!(
        "<p id=\"red-flags\"><b>{}</b>：{}</p><p id=\"service-models\"><b>{}</b>：{}</p>",
        l.t("红旗窗口", "Red-flag windows"),
        award_names(&r.awards.red_flag_units, l, many),
        l.t("服务标兵", "Service models"),
        award_names(&r.awards.service_models, l, many),
    ));
    b.push_str(&format!(
        "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        l.t("单位", "Unit"),
        l.t("效率", "Efficiency"),
        l.t("纪律", "Discipline"),
        l.t("评价", "Ratings"),
        l.t("得分", "Score"),
        l.t("不参评原因", "Disqualified by"),
    ));
    for cnd in r.awards.units_ranked.iter().take(30) {
        b.push_str(&format!(
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.2}</td><td>{}</td></tr>",
            esc(&names(&cnd.site, &cnd.unit, many)),
            pct(cnd.efficiency),
            pct(cnd.discipline),
            pct(cnd.ratings),
            cnd.score,
            esc(&export::disqualifications(cnd, l))
        ));
    }
    b.push_str("</table>");

    // 三、存在问题
    b.push_str(&format!(
        "<h2>{}</h2><ol id=\"problems\">",
        l.t("三、存在问题", "3. Problems found")
    ));
    if r.problems.is_empty() {
        b.push_str(&format!(
            "<li>{}</li>",
            l.t("本期未发现问题。", "None found this period.")
        ));
    }
    for p in &r.problems {
        b.push_str(&format!(
            "<li>{}</li>",
            esc(if l == Lang::Zh { &p.zh } else { &p.en })
        ));
    }
    b.push_str("</ol>");

    // What the store does not hold.
    b.push_str(&format!(
        "<h2>{}</h2><ul id=\"missing\" class=\"muted\">",
        l.t("说明：本报告未含的数据", "Note: not in this report")
    ));
    for m in &r.missing {
        b.push_str(&format!("<li>{}</li>", esc(l.t(m.zh, m.en))));
    }
    b.push_str("</ul>");
    // The footnote of a report whose working days rest on a provisional year (decision 0014).
    if let Some(year) = r.provisional_year {
        b.push_str(&super::html::provisional_note(l, year).replacen(
            "<p class=\"provisional\"",
            "<p id=\"provisional\" class=\"provisional\"",
            1,
        ));
    }
    b.push_str("</div>");
    b
}

/// The units of a list, escaped for the page (with their sites when there are `many`).
fn unit_names(list: &[UnitCount], many: bool) -> Vec<String> {
    list.iter()
        .map(|u| esc(&names(&u.site, &u.unit, many)))
        .collect()
}

fn names(site: &str, unit: &str, many: bool) -> String {
    if many {
        format!("{site} {unit}")
    } else {
        unit.to_owned()
    }
}

fn award_names(list: &[Candidate], l: Lang, many: bool) -> String {
    if list.is_empty() {
        return l.t("（无符合条件者）", "(none eligible)").to_owned();
    }
    list.iter()
        .map(|c| {
            let who = match &c.name {
                Some(n) => format!("{} {}", names(&c.site, &c.unit, many), n),
                None => names(&c.site, &c.unit, many),
            };
            format!("{}（{:.2}）", esc(&who), c.score)
        })
        .collect::<Vec<_>>()
        .join(l.t("、", ", "))
}

// ---------------------------------------------------------------------------------------------
// Charts: inline SVG made here (the pages carry no scripts).

const COLORS: [&str; 4] = ["#1f6feb", "#1a7f37", "#d4a72c", "#cf222e"];

/// Horizontal bars, one group per row, one bar per series (stacked when `stacked`).
fn bars(
    id: &str,
    title: &str,
    series: &[&str],
    rows: &[(String, Vec<i64>)],
    stacked: bool,
) -> String {
    let label_w = 150.0;
    let width = 560.0;
    let plot_w = width - label_w - 50.0;
    let per = if stacked { 1 } else { series.len().max(1) };
    let row_h = (per as f64) * 9.0 + 8.0;
    let top = 44.0;
    let height = top + row_h * rows.len().max(1) as f64 + 10.0;
    let max = rows
        .iter()
        .map(|(_, v)| {
            if stacked {
                v.iter().sum()
            } else {
                v.iter().copied().max().unwrap_or(0)
            }
        })
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let mut s = format!(
        "<svg id=\"{id}\" xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" font-size=\"11\" font-family=\"sans-serif\"><title>{}</title>\
<text x=\"8\" y=\"16\" font-size=\"13\" font-weight=\"bold\">{}</text>",
        esc(title),
        esc(title)
    );
    for (i, name) in series.iter().enumerate() {
        let x = 8.0 + i as f64 * 110.0;
        s.push_str(&format!(
            "<rect x=\"{x}\" y=\"24\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"33\">{}</text>",
            COLORS[i % COLORS.len()],
            x + 14.0,
            esc(name)
        ));
    }
    if rows.is_empty() {
        s.push_str(&format!(
            "<text x=\"8\" y=\"{}\" fill=\"#656d76\">—</text>",
            top + 12.0
        ));
    }
    for (r, (label, values)) in rows.iter().enumerate() {
        let y0 = top + r as f64 * row_h;
        let short: String = label.chars().take(14).collect();
        s.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            label_w - 6.0,
            y0 + row_h / 2.0 + 3.0,
            esc(&short)
        ));
        let mut x = label_w;
        for (i, v) in values.iter().enumerate() {
            let w = (*v as f64 / max * plot_w).max(if *v > 0 { 1.0 } else { 0.0 });
            let y = if stacked {
                y0 + 4.0
            } else {
                y0 + 4.0 + i as f64 * 9.0
            };
            s.push_str(&format!(
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"8\" fill=\"{}\"><title>{}: {v}</title></rect>",
                COLORS[i % COLORS.len()],
                esc(series.get(i).copied().unwrap_or(""))
            ));
            if stacked {
                x += w;
            } else {
                s.push_str(&format!(
                    "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\">{v}</text>",
                    x + w + 3.0,
                    y + 7.5
                ));
            }
        }
        if stacked {
            let total: i64 = values.iter().sum();
            s.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\">{total}</text>",
                x + 3.0,
                y0 + 11.5
            ));
        }
    }
    s.push_str("</svg>");
    s
}

fn volume_chart(r: &Report, l: Lang, many: bool) -> String {
    let mut units: Vec<&UnitRow> = r
        .units
        .iter()
        .filter(|u| u.accepted + u.completed > 0)
        .collect();
    units.sort_by_key(|u| std::cmp::Reverse(u.accepted));
    let rows: Vec<(String, Vec<i64>)> = units
        .iter()
        .take(15)
        .map(|u| (unit_name(u, many), vec![u.accepted, u.completed]))
        .collect();
    bars(
        "chart-volumes",
        l.t("各单位办件量（前 15）", "Cases by unit (top 15)"),
        &[l.t("受理", "Accepted"), l.t("办结", "Completed")],
        &rows,
        false,
    )
}

fn attendance_chart(r: &Report, l: Lang, many: bool) -> String {
    let mut units: Vec<&UnitRow> = r
        .units
        .iter()
        .filter(|u| u.late + u.left_early + u.absent + u.vacant_segments > 0)
        .collect();
    units.sort_by_key(|u| std::cmp::Reverse(u.late + u.left_early + u.absent + u.vacant_segments));
    let rows: Vec<(String, Vec<i64>)> = units
        .iter()
        .take(15)
        .map(|u| {
            (
                unit_name(u, many),
                vec![u.late, u.left_early, u.absent, u.vacant_segments],
            )
        })
        .collect();
    bars(
        "chart-attendance",
        l.t(
            "考勤问题（前 15 个单位）",
            "Attendance issues (top 15 units)",
        ),
        &[
            l.t("迟到", "Late"),
            l.t("早退", "Early"),
            l.t("旷工", "Absent"),
            l.t("空岗", "Vacant"),
        ],
        &rows,
        true,
    )
}

/// The on-time and early rates over the last periods, as lines with points.
fn trend_chart(r: &Report, l: Lang) -> String {
    let (width, height) = (560.0, 230.0);
    let (left, right, top, bottom) = (44.0, 16.0, 44.0, 40.0);
    let plot_w = width - left - right;
    let plot_h = height - top - bottom;
    let n = r.trend.len().max(1);
    let step = plot_w / n as f64;
    let title = l.t("按时 / 提前办结率走势", "On-time / early rate trend");
    let mut s = format!(
        "<svg id=\"chart-trend\" xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" font-size=\"11\" font-family=\"sans-serif\"><title>{}</title>\
<text x=\"8\" y=\"16\" font-size=\"13\" font-weight=\"bold\">{}</text>",
        esc(title),
        esc(title)
    );
    for (i, name) in [l.t("按时办结率", "On time"), l.t("提前办结率", "Early")]
        .iter()
        .enumerate()
    {
        let x = 8.0 + i as f64 * 110.0;
        s.push_str(&format!(
            "<rect x=\"{x}\" y=\"24\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"33\">{}</text>",
            COLORS[i],
            x + 14.0,
            esc(name)
        ));
    }
    for pctl in [0, 25, 50, 75, 100] {
        let y = top + plot_h * (1.0 - pctl as f64 / 100.0);
        s.push_str(&format!(
            "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#d0d7de\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{pctl}%</text>",
            left + plot_w,
            left - 4.0,
            y + 3.5
        ));
    }
    let xy = |i: usize, v: f64| (left + step * (i as f64 + 0.5), top + plot_h * (1.0 - v));
    for (k, get) in [
        (
            0usize,
            (|p: &report::TrendPoint| p.on_time_rate) as fn(&report::TrendPoint) -> Option<f64>,
        ),
        (1, |p: &report::TrendPoint| p.early_rate),
    ] {
        let pts: Vec<(f64, f64, f64)> = r
            .trend
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                get(p).map(|v| {
                    let (x, y) = xy(i, v);
                    (x, y, v)
                })
            })
            .collect();
        if pts.len() > 1 {
            let path: Vec<String> = pts
                .iter()
                .map(|(x, y, _)| format!("{x:.1},{y:.1}"))
                .collect();
            s.push_str(&format!(
                "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>",
                COLORS[k],
                path.join(" ")
            ));
        }
        for (x, y, v) in &pts {
            s.push_str(&format!(
                "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{}\"><title>{:.2}%</title></circle>",
                COLORS[k],
                v * 100.0
            ));
        }
    }
    for (i, p) in r.trend.iter().enumerate() {
        let (x, _) = xy(i, 0.0);
        s.push_str(&format!(
            "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"9\" fill=\"#656d76\">{}</text>",
            top + plot_h + 14.0,
            esc(&p.label),
            top + plot_h + 26.0,
            p.completed
        ));
    }
    s.push_str("</svg>");
    s
}
