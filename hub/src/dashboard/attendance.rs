//! Attendance: a site's board for a day per window (`/attendance?site=&day=`: who is on duty in
//! each segment, late, absent, vacant, A/B substitution, each clerk's punches with the box's clock
//! offset), and the month per unit (`/attendance/month?site=&month=`), with patrol sign-ins.

use super::html::{self, Lang, esc};
use super::{Role, Viewer};
use crate::oversight::attendance::Verdict;
use crate::store::attendance;
use crate::web::read;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{Datelike, NaiveDate};
use serde::Deserialize;

#[derive(Deserialize, Default)]
pub struct Filters {
    pub site: Option<String>,
    pub day: Option<String>,
    pub month: Option<String>,
}

fn verdict(l: Lang, v: &Verdict) -> String {
    match v {
        Verdict::OnTime => format!("<span class=\"ok\">{}</span>", l.t("正常", "on time")),
        Verdict::Late { minutes } => match l {
            Lang::Zh => format!("<span class=\"bad\">迟到 {minutes} 分</span>"),
            Lang::En => format!("<span class=\"bad\">late {minutes} min</span>"),
        },
        Verdict::LeftEarly { minutes } => match l {
            Lang::Zh => format!("<span class=\"bad\">早退 {minutes} 分</span>"),
            Lang::En => format!("<span class=\"bad\">left {minutes} min early</span>"),
        },
        Verdict::LateAndEarly { late, early } => match l {
            Lang::Zh => format!("<span class=\"bad\">迟到 {late} 分，早退 {early} 分</span>"),
            Lang::En => format!("<span class=\"bad\">late {late}, early {early} min</span>"),
        },
        Verdict::Absent => format!("<span class=\"bad\">{}</span>", l.t("旷工", "absent")),
        Verdict::OnLeave => l.t("请假/外出", "on leave / out").to_owned(),
        Verdict::NotRequired => {
            format!("<span class=\"muted\">{}</span>", l.t("休息日", "day off"))
        }
        Verdict::Pending => {
            format!(
                "<span class=\"muted\">{}</span>",
                l.t("未到时", "not over yet")
            )
        }
    }
}

/// The sites in the viewer's scope and the one to show: the one asked for (in scope), the user's
/// own, or the first there is; with no site at all, a page saying there is no roster yet.
async fn sites_and_pick(
    state: &super::DashState,
    viewer: &Viewer,
    asked: Option<&str>,
) -> Result<(Vec<String>, String), Response> {
    let l = viewer.lang;
    let sc = viewer.scope();
    let sites = read(&state.api, move |r| {
        r.run(|c| super::overview::sites(c, &sc))
    })
    .await?;
    let site = match viewer.scope().site_filter(asked) {
        Ok(Some(s)) => s,
        Ok(None) => match sites.first() {
            Some(s) => s.clone(),
            None => {
                return Err(viewer.page(
                    "/attendance",
                    l.t("考勤", "Attendance").to_owned(),
                    None,
                    &format!("<p>{}</p>", l.t("还没有花名册。", "No roster yet.")),
                ));
            }
        },
        Err(_) => return Err(viewer.forbidden()),
    };
    Ok((sites, site))
}

fn site_form(l: Lang, sites: &[String], site: &str, extra: &str) -> String {
    let choices: Vec<(String, String)> = sites.iter().map(|s| (s.clone(), s.clone())).collect();
    format!(
        "<form class=\"filters\" method=\"get\"><label>{}<select name=\"site\">{}</select></label>{extra}\
<button type=\"submit\">{}</button></form>",
        l.t("乡镇", "Site"),
        html::options(&choices, Some(site)),
        l.t("查看", "Show")
    )
}

pub async fn board(
    State(state): State<super::DashState>,
    viewer: Viewer,
    Query(f): Query<Filters>,
) -> Response {
    if let Err(r) = viewer.require(&[Role::Supervisor, Role::Head, Role::Admin]) {
        return r;
    }
    let l = viewer.lang;
    let today = state.api.sup.clock.today();
    let day = match f.day.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
        None => today,
        Some(d) => match d.parse::<NaiveDate>() {
            Ok(d) => d,
            Err(_) => {
                return super::message_page(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    l,
                    &format!(
                        "day {d:?}: {}",
                        l.t("日期格式应为 YYYY-MM-DD", "use YYYY-MM-DD")
                    ),
                );
            }
        },
    };
    let scope = viewer.scope();
    let (sites, site) = match sites_and_pick(&state, &viewer, f.site.as_deref()).await {
        Ok(picked) => picked,
        Err(r) => return r,
    };
    let sup = state.api.sup.clone();
    let s = site.clone();
    let windows = match read(&state.api, move |r| {
        r.run(|c| {
            attendance::board_at(
                c,
                &sup.office(),
                &sup.calendar(),
                &s,
                day,
                sup.clock.until(),
            )
        })
    })
    .await
    {
        Ok(w) => w,
        Err(r) => return r,
    };
    let windows: Vec<_> = windows
        .into_iter()
        .filter(|w| scope.unit_allowed(&w.unit))
        .collect();
    let q = html::url(&site);
    let (prev, next) = (day.pred_opt().unwrap_or(day), day.succ_opt().unwrap_or(day));
    let mut body = site_form(
        l,
        &sites,
        &site,
        &format!(
            "<label>{}<input name=\"day\" type=\"date\" value=\"{day}\"></label>",
            l.t("日期", "Day")
        ),
    );
    body.push_str(&format!(
        "<p><a href=\"/attendance?site={q}&amp;day={prev}\">← {prev}</a> · <b>{day}</b> · <a href=\"/attendance?site={q}&amp;day={next}\">{next} →</a> · \
<a href=\"/attendance/month?site={q}&amp;month={:04}-{:02}\">{}</a></p>",
        day.year(),
        day.month(),
        l.t("本月按科室统计", "This month by unit")
    ));
    body.push_str(&format!(
        "<p><a href=\"/attendance/makeups?site={q}\">{}</a></p>",
        l.t("补卡审批", "Make-up punch requests")
    ));
    let vacant: usize = windows
        .iter()
        .map(|w| w.segments.iter().filter(|s| s.vacant).count())
        .sum();
    body.push_str(&format!(
        "<p>{}: {}</p>",
        l.t("空岗时段", "Vacant segments"),
        if vacant == 0 {
            "<span class=\"ok\">0</span>".to_owned()
        } else {
            format!("<span class=\"bad\">{vacant}</span>")
        }
    ));
    if windows.is_empty() {
        body.push_str(&format!(
            "<p class=\"muted\">{}</p>",
            l.t("没有窗口：请导入花名册。", "No windows: import a roster.")
        ));
    }
    for w in &windows {
        body.push_str(&format!(
            "<h2>{} · {} {}</h2><table><tr><th>{}</th>",
            esc(&w.unit),
            l.t("窗口", "window"),
            esc(&w.window),
            l.t("时段", "Segment")
        ));
        for s in &w.segments {
            body.push_str(&format!("<th>{}–{}</th>", esc(&s.start), esc(&s.end)));
        }
        body.push_str(&format!(
            "<th>{}</th></tr><tr><td>{}</td>",
            l.t("打卡记录", "Punches"),
            l.t("在岗", "On duty")
        ));
        for s in &w.segments {
            let cell = if s.vacant {
                format!("<span class=\"bad\">{}</span>", l.t("空岗", "VACANT"))
            } else if s.on_duty.is_empty() {
                "—".to_owned()
            } else {
                let mut c = esc(&s.on_duty.join(", "));
                if s.substituted {
                    c.push_str(l.t("（B角替岗）", " (B-role substitute)"));
                }
                c
            };
            body.push_str(&format!("<td>{cell}</td>"));
        }
        body.push_str("<td></td></tr>");
        for st in &w.staff {
            body.push_str(&format!(
                "<tr><td><a href=\"/attendance/staff/{q}/{}?month={:04}-{:02}\">{} {}</a> <span class=\"muted\">{}{}</span></td>",
                html::url(&st.staff_id),
                day.year(),
                day.month(),
                esc(&st.staff_id),
                esc(&st.name),
                esc(&st.role),
                l.t("角", "-role")
            ));
            for v in &st.verdicts {
                body.push_str(&format!("<td>{}</td>", verdict(l, &v.verdict)));
            }
            let punches: Vec<String> = st
                .punches
                .iter()
                .map(|p| {
                    let mut s = esc(&p.time);
                    if p.makeup {
                        s.push_str(l.t("（补卡）", " (make-up)"));
                    }
                    if let Some(o) = p.clock_offset_ms.filter(|o| o.abs() >= 1000) {
                        s.push_str(&format!(
                            " <span class=\"muted\">[{}]</span>",
                            html::offset(Some(o))
                        ));
                    }
                    s.push_str(&punch_photo(l, p.photo.as_deref()));
                    if let Some(m) = &p.backdated {
                        s.push_str(&format!(" {}", html::backdated_mark(l, m)));
                    }
                    s
                })
                .collect();
            body.push_str(&format!("<td>{}</td></tr>", punches.join(", ")));
        }
        body.push_str("</table>");
    }
    if let Some(year) = state.api.sup.calendar().provisional_in(day, day) {
        body.push_str(&super::html::provisional_note(l, year));
    }
    let title = match l {
        Lang::Zh => format!("考勤 · {site} · {day}"),
        Lang::En => format!("Attendance · {site} · {day}"),
    };
    viewer.page("/attendance", title, None, &body)
}

pub async fn month(
    State(state): State<super::DashState>,
    viewer: Viewer,
    Query(f): Query<Filters>,
) -> Response {
    if let Err(r) = viewer.require(&[Role::Supervisor, Role::Head, Role::Admin]) {
        return r;
    }
    let l = viewer.lang;
    let today = state.api.sup.clock.today();
    let month = f
        .month
        .clone()
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| format!("{:04}-{:02}", today.year(), today.month()));
    if attendance::month_range(&month).is_none() {
        return super::message_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            l,
            &format!(
                "month {month:?}: {}",
                l.t("月份格式应为 YYYY-MM", "use YYYY-MM")
            ),
        );
    }
    let scope = viewer.scope();
    let (sites, site) = match sites_and_pick(&state, &viewer, f.site.as_deref()).await {
        Ok(picked) => picked,
        Err(r) => return r,
    };
    let sup = state.api.sup.clone();
    let (s, m) = (site.clone(), month.clone());
    let data = read(&state.api, move |r| {
        r.run(|c| {
            let units = attendance::units_month(
                c,
                &sup.office(),
                &sup.calendar(),
                &s,
                &m,
                today,
                sup.clock.until(),
            )?;
            let patrols = attendance::patrols_month(c, &s, &m)?;
            Ok((units.unwrap_or_default(), patrols))
        })
    })
    .await;
    let (units, patrols) = match data {
        Ok(d) => d,
        Err(r) => return r,
    };
    let units: Vec<_> = units
        .into_iter()
        .filter(|u| scope.unit_allowed(&u.unit))
        .collect();
    let mut body = site_form(
        l,
        &sites,
        &site,
        &format!(
            "<label>{}<input name=\"month\" value=\"{}\" size=\"8\" placeholder=\"YYYY-MM\"></label>",
            l.t("月份", "Month"),
            esc(&month)
        ),
    );
    body.push_str(&format!(
        "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        l.t("科室", "Unit"),
        l.t("人数", "Staff"),
        l.t("正常", "On time"),
        l.t("迟到", "Late"),
        l.t("早退", "Early"),
        l.t("旷工(半天)", "Absent (half days)"),
        l.t("请假/外出", "Leave / out"),
        l.t("补卡", "Make-ups"),
        l.t("空岗时段", "Vacant segments"),
        l.t("AB角替岗", "B-role substitutions"),
        l.t("巡查签到", "Patrols"),
        l.t("违纪", "Violations"),
        l.t("捆绑考核", "Bundled deductions"),
    ));
    for u in &units {
        let t = &u.totals;
        let bad = |n: u32| {
            if n > 0 {
                format!("<span class=\"bad\">{n}</span>")
            } else {
                "0".into()
            }
        };
        body.push_str(&format!(
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&u.unit), u.staff, t.on_time, bad(t.late), bad(t.left_early), bad(t.absent), t.on_leave, t.makeups,
            bad(u.vacant_segments), u.substitutions,
            if u.patrols == 0 { "<span class=\"bad\">0</span>".to_owned() } else { u.patrols.to_string() },
            bad(u.violations), u.bundled.len()
        ));
    }
    body.push_str("</table>");
    if let Some(p) = patrols {
        let without: Vec<&String> = p
            .units_without
            .iter()
            .filter(|u| scope.unit_allowed(u))
            .collect();
        body.push_str(&format!(
            "<h2>{}</h2>",
            l.t("无巡查签到的科室", "Units without a patrol sign-in")
        ));
        if without.is_empty() {
            body.push_str(&format!("<p class=\"ok\">{}</p>", l.t("无", "None")));
        } else {
            body.push_str("<ul>");
            for u in without {
                body.push_str(&format!("<li>{}</li>", esc(u)));
            }
            body.push_str("</ul>");
        }
    }
    let title = match l {
        Lang::Zh => format!("月度考勤 · {site} · {month}"),
        Lang::En => format!("Attendance by unit · {site} · {month}"),
    };
    viewer.page("/attendance", title, None, &body)
}

/// The units of a site's clerks, to hold a unit chief to their unit.
fn units_of(
    c: &rusqlite::Connection,
    site: &str,
) -> rusqlite::Result<std::collections::HashMap<String, String>> {
    Ok(attendance::roster(c, Some(site), false)?
        .into_iter()
        .map(|s| (s.staff_id, s.unit))
        .collect())
}

/// One clerk's month (`/attendance/staff/{site}/{staff_id}?month=`): each day's verdicts and
/// punches, the totals, and leaves that lack the stamped note the rules ask for.
pub async fn staff(
    State(state): State<super::DashState>,
    viewer: Viewer,
    axum::extract::Path((site, staff_id)): axum::extract::Path<(String, String)>,
    Query(f): Query<Filters>,
) -> Response {
    if let Err(r) = viewer.require(&[Role::Supervisor, Role::Head, Role::Admin]) {
        return r;
    }
    let l = viewer.lang;
    let scope = viewer.scope();
    if !scope.site_allowed(&site) {
        return viewer.not_found();
    }
    let today = state.api.sup.clock.today();
    let month = f
        .month
        .clone()
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| format!("{:04}-{:02}", today.year(), today.month()));
    if attendance::month_range(&month).is_none() {
        return super::message_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            l,
            &format!(
                "month {month:?}: {}",
                l.t("月份格式应为 YYYY-MM", "use YYYY-MM")
            ),
        );
    }
    let sup = state.api.sup.clone();
    let (s, id, m) = (site.clone(), staff_id.clone(), month.clone());
    let data = read(&state.api, move |r| {
        r.run(|c| {
            let who = attendance::roster(c, Some(&s), false)?
                .into_iter()
                .find(|x| x.staff_id == id);
            let month = attendance::staff_month(
                c,
                &sup.office(),
                &sup.calendar(),
                &s,
                &id,
                &m,
                (today, sup.clock.until()),
            )?;
            Ok((who, month))
        })
    })
    .await;
    let (who, view) = match data {
        Ok((Some(who), Some(view))) if scope.unit_allowed(&who.unit) => (who, view),
        Ok(_) => return viewer.not_found(),
        Err(r) => return r,
    };
    let t = &view.totals;
    let mut body = format!(
        "<p>{} · {} {} · {} {}</p>",
        esc(&site),
        esc(&who.unit),
        esc(&who.window),
        esc(&who.role),
        l.t("角", "-role")
    );
    body.push_str(&format!(
        "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>\
<tr><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr></table>",
        l.t("正常", "On time"),
        l.t("迟到", "Late"),
        l.t("早退", "Early"),
        l.t("旷工(半天)", "Absent (half days)"),
        l.t("请假/外出", "Leave / out"),
        l.t("补卡", "Make-ups"),
        t.on_time, t.late, t.left_early, t.absent, t.on_leave, t.makeups
    ));
    if !view.leave_needing_note.is_empty() {
        body.push_str(&format!(
            "<h2>{}</h2><ul>",
            l.t("缺盖章假条的请假", "Leave lacking a stamped note")
        ));
        for x in &view.leave_needing_note {
            body.push_str(&format!(
                "<li>{} → {} {}</li>",
                esc(x["from"].as_str().unwrap_or("")),
                esc(x["to"].as_str().unwrap_or("")),
                esc(x["leave_type"].as_str().unwrap_or(""))
            ));
        }
        body.push_str("</ul>");
    }
    body.push_str(&format!(
        "<table><tr><th>{}</th><th>{}</th><th>{}</th></tr>",
        l.t("日期", "Day"),
        l.t("各时段", "Segments"),
        l.t("打卡记录", "Punches")
    ));
    for d in &view.days {
        let verdicts: Vec<String> = d
            .verdicts
            .iter()
            .map(|v| {
                format!(
                    "{}–{} {}",
                    esc(&v.start),
                    esc(&v.end),
                    verdict(l, &v.verdict)
                )
            })
            .collect();
        let punches: Vec<String> = d
            .punches
            .iter()
            .map(|p| {
                let mut s = esc(&p.time);
                if p.makeup {
                    s.push_str(l.t("（补卡）", " (make-up)"));
                }
                s.push_str(&punch_photo(l, p.photo.as_deref()));
                if let Some(m) = &p.backdated {
                    s.push_str(&format!(" {}", html::backdated_mark(l, m)));
                }
                s
            })
            .collect();
        body.push_str(&format!(
            "<tr><td>{}{}</td><td>{}</td><td>{}</td></tr>",
            esc(&d.day),
            match view.provisional_year {
                Some(y) if d.provisional => format!(" {}", super::html::provisional_mark(l, y)),
                _ => String::new(),
            },
            verdicts.join("<br>"),
            punches.join(", ")
        ));
    }
    body.push_str("</table>");
    if let Some(year) = view.provisional_year {
        body.push_str(&super::html::provisional_note(l, year));
    }
    let title = match l {
        Lang::Zh => format!("个人考勤 · {} {} · {month}", who.staff_id, who.name),
        Lang::En => format!("Attendance of {} {} · {month}", who.staff_id, who.name),
    };
    viewer.page("/attendance", title, None, &body)
}

#[derive(Deserialize, Default)]
pub struct MakeupFilters {
    pub site: Option<String>,
    pub status: Option<String>,
}

/// Make-up punch requests (补卡) in scope, with approve / refuse forms for the pending ones.
pub async fn makeups(
    State(state): State<super::DashState>,
    viewer: Viewer,
    Query(f): Query<MakeupFilters>,
) -> Response {
    makeups_page(&state, &viewer, f, StatusCode::OK, None).await
}

async fn makeups_page(
    state: &super::DashState,
    viewer: &Viewer,
    f: MakeupFilters,
    status: StatusCode,
    message: Option<(bool, String)>,
) -> Response {
    if let Err(r) = viewer.require(&[Role::Supervisor, Role::Head, Role::Admin]) {
        return r;
    }
    let l = viewer.lang;
    let scope = viewer.scope();
    let Ok(site) = scope.site_filter(f.site.as_deref()) else {
        return viewer.forbidden();
    };
    let wanted = match f.status.as_deref().map(str::trim) {
        None | Some("") => Some("pending".to_owned()),
        Some("all") => None,
        Some(s) => Some(s.to_owned()),
    };
    let (s, w, sc) = (site.clone(), wanted.clone(), scope.clone());
    let data = read(&state.api, move |r| {
        r.run(|c| {
            let list = attendance::makeups(c, s.as_deref(), w.as_deref())?;
            // A unit chief sees their unit's clerks only.
            let mut units = std::collections::HashMap::new();
            let mut out = Vec::new();
            for m in list {
                if !sc.site_allowed(&m.site) {
                    continue;
                }
                if sc.unit.is_some() {
                    if !units.contains_key(&m.site) {
                        units.insert(m.site.clone(), units_of(c, &m.site)?);
                    }
                    let unit = units.get(&m.site).and_then(|u| u.get(&m.staff_id));
                    if !unit.is_some_and(|u| sc.unit_allowed(u)) {
                        continue;
                    }
                }
                out.push(m);
            }
            Ok(out)
        })
    })
    .await;
    let list = match data {
        Ok(d) => d,
        Err(r) => return r,
    };
    let csrf = esc(&viewer.session.csrf);
    let mut body = String::new();
    body.push_str(&html::flash(message.as_ref()));
    let q = site
        .as_deref()
        .map(|s| format!("site={}&amp;", html::url(s)))
        .unwrap_or_default();
    body.push_str(&format!(
        "<p class=\"tabs\"><a href=\"/attendance/makeups?{q}status=pending\"{}>{}</a><a href=\"/attendance/makeups?{q}status=all\"{}>{}</a></p>",
        if wanted.is_some() { " class=\"on\"" } else { "" },
        l.t("待审批", "Pending"),
        if wanted.is_none() { " class=\"on\"" } else { "" },
        l.t("全部", "All"),
    ));
    if list.is_empty() {
        body.push_str(&format!(
            "<p class=\"muted\">{}</p>",
            l.t("没有补卡申请。", "No make-up requests.")
        ));
    } else {
        body.push_str(&format!(
            "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            l.t("乡镇", "Site"),
            l.t("工号", "Staff"),
            l.t("补卡时间", "Punch"),
            l.t("原因", "Reason"),
            l.t("申请", "Requested"),
            l.t("状态", "Status"),
            l.t("审批", "Decision"),
        ));
        for m in &list {
            let decision = if m.status == "pending" {
                format!(
                    "<form method=\"post\" action=\"/attendance/makeups/{id}\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<input name=\"note\" placeholder=\"{note}\" size=\"12\"> <button name=\"decision\" value=\"approve\">{yes}</button> \
<button name=\"decision\" value=\"refuse\">{no}</button></form>",
                    id = m.id,
                    note = l.t("意见", "note"),
                    yes = l.t("批准", "Approve"),
                    no = l.t("驳回", "Refuse"),
                )
            } else {
                format!(
                    "{} {} {}",
                    esc(m.decided_by.as_deref().unwrap_or("")),
                    esc(m.decided_day.as_deref().unwrap_or("")),
                    esc(m.note.as_deref().unwrap_or(""))
                )
            };
            let status = match m.status.as_str() {
                "pending" => l.t("待审批", "pending"),
                "approved" => l.t("已批准", "approved"),
                "refused" => l.t("已驳回", "refused"),
                _ => "",
            };
            body.push_str(&format!(
                "<tr><td>{}</td><td><a href=\"/attendance/staff/{}/{}?month={}\">{}</a></td><td>{} {}</td><td>{}</td><td>{} {}</td><td>{}</td><td>{decision}</td></tr>",
                esc(&m.site),
                html::url(&m.site),
                html::url(&m.staff_id),
                esc(m.day.get(..7).unwrap_or("")),
                esc(&m.staff_id),
                esc(&m.day),
                esc(&m.time),
                esc(&m.reason),
                esc(&m.requested_day),
                esc(&m.requested_by),
                status,
            ));
        }
        body.push_str("</table>");
    }
    viewer.page_with_status(
        status,
        "/attendance",
        l.t("补卡审批", "Make-up punches").to_owned(),
        None,
        &body,
    )
}

#[derive(Deserialize)]
pub struct DecisionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    note: String,
}

/// Approves or refuses a make-up request in the user's scope; recorded in the audit log.
pub async fn decide(
    State(state): State<super::DashState>,
    viewer: Viewer,
    axum::extract::Path(id): axum::extract::Path<i64>,
    axum::extract::Form(form): axum::extract::Form<DecisionForm>,
) -> Response {
    if let Err(r) = viewer.require(&[Role::Supervisor, Role::Head, Role::Admin]) {
        return r;
    }
    if let Err(r) = viewer.check_csrf(&form.csrf) {
        return r;
    }
    let l = viewer.lang;
    let approve = match form.decision.as_str() {
        "approve" => true,
        "refuse" => false,
        other => {
            let m = format!("decision {other:?}: approve | refuse");
            return makeups_page(
                &state,
                &viewer,
                MakeupFilters::default(),
                StatusCode::UNPROCESSABLE_ENTITY,
                Some((false, m)),
            )
            .await;
        }
    };
    let scope = viewer.scope();
    let by = viewer.user().name.clone();
    let today = state.api.sup.clock.today();
    let note = form.note.trim().to_owned();
    let result = crate::web::write(&state.api, move |tx| {
        // Another site's (or unit's) request does not exist for this user.
        let m = attendance::makeup(tx, id)?
            .ok_or_else(|| attendance::RequestError::NotFound(format!("make-up {id}")))?;
        let unit = units_of(tx, &m.site)?
            .remove(&m.staff_id)
            .unwrap_or_default();
        if !scope.allows(&m.site, &unit) {
            return Err(attendance::RequestError::NotFound(format!("make-up {id}")));
        }
        let d = attendance::MakeupDecision {
            approve,
            by: by.clone(),
            note: note.clone(),
        };
        let v = attendance::decide_makeup(tx, id, &d, today)?;
        crate::store::audit(
            tx,
            &by,
            &format!("makeup.{}", v.status),
            &format!("makeup:{id}"),
            &note,
        )?;
        Ok(v)
    })
    .await;
    match result {
        Ok(Ok(v)) => {
            let m = match l {
                Lang::Zh => format!(
                    "补卡申请 {id}（{} {}）已{}。",
                    v.staff_id,
                    v.day,
                    if approve { "批准" } else { "驳回" }
                ),
                Lang::En => format!("Make-up {id} ({} {}) {}.", v.staff_id, v.day, v.status),
            };
            makeups_page(
                &state,
                &viewer,
                MakeupFilters::default(),
                StatusCode::OK,
                Some((true, m)),
            )
            .await
        }
        Ok(Err(attendance::RequestError::NotFound(_))) => viewer.not_found(),
        Ok(Err(attendance::RequestError::Refused(m))) => {
            makeups_page(
                &state,
                &viewer,
                MakeupFilters::default(),
                StatusCode::CONFLICT,
                Some((false, m)),
            )
            .await
        }
        Ok(Err(e)) => super::message_page(StatusCode::INTERNAL_SERVER_ERROR, l, &e.to_string()),
        Err(r) => r,
    }
}

/// The punch photo (拍照刷卡考勤) next to its punch: a small thumbnail opening the picture.
fn punch_photo(l: Lang, url: Option<&str>) -> String {
    match url {
        Some(u) => format!(
            " <a href=\"{u}\" target=\"_blank\" rel=\"noopener\"><img src=\"{u}?thumb=1\" alt=\"{alt}\" style=\"height:36px;vertical-align:middle;border-radius:2px\" loading=\"lazy\"></a>",
            u = esc(u),
            alt = l.t("打卡照片", "punch photo"),
        ),
        None => String::new(),
    }
}
