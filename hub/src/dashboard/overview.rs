//! Overview (`/`): every township in the user's scope as a card — its boxes (online, last seen,
//! backlog, clock offset), the open cases by warning level, and today's vacant window segments.

use super::html::{self, Lang, esc, level_badge};
use super::{Scope, Viewer};
use crate::oversight::deadlines::WarningLevel;
use crate::store::attendance;
use crate::web::read;
use axum::extract::State;
use axum::response::Response;
use rusqlite::{Connection, params};
use std::collections::BTreeMap;

/// A box as the overview and the fleet page show it.
#[derive(Debug, Clone)]
pub struct Box {
    pub site: String,
    pub device: String,
    pub online: bool,
    pub last_seen_ms: Option<i64>,
    pub backlog_events: Option<i64>,
    pub clock_offset_ms: Option<i64>,
    pub version: Option<String>,
    pub health: Option<String>,
    pub alarms: i64,
}

/// The boxes of the scope's site (or every box).
pub fn boxes(conn: &Connection, scope: &Scope) -> rusqlite::Result<Vec<Box>> {
    conn.prepare_cached(
        "SELECT d.site, d.device, d.online, d.last_seen_ms, d.backlog_events, d.clock_offset_ms, d.version, d.health,
                (SELECT count(*) FROM alarms a WHERE a.site = d.site AND a.device = d.device)
         FROM devices d WHERE (?1 IS NULL OR d.site = ?1) ORDER BY d.site, d.device",
    )?
    .query_map([scope.site.as_deref()], |r| {
        Ok(Box {
            site: r.get(0)?,
            device: r.get(1)?,
            online: r.get(2)?,
            last_seen_ms: r.get(3)?,
            backlog_events: r.get(4)?,
            clock_offset_ms: r.get(5)?,
            version: r.get(6)?,
            health: r.get(7)?,
            alarms: r.get(8)?,
        })
    })?
    .collect()
}

/// The sites in scope: those registered (`sunlight-provision site add`), with a box or a roster.
pub fn sites(conn: &Connection, scope: &Scope) -> rusqlite::Result<Vec<String>> {
    conn.prepare_cached(
        "SELECT site FROM devices WHERE (?1 IS NULL OR site = ?1)
         UNION SELECT site FROM staff WHERE (?1 IS NULL OR site = ?1)
         UNION SELECT id FROM sites WHERE (?1 IS NULL OR id = ?1) ORDER BY 1",
    )?
    .query_map([scope.site.as_deref()], |r| r.get(0))?
    .collect()
}

/// Open cases per site and level, in scope.
fn warnings(
    conn: &Connection,
    scope: &Scope,
) -> rusqlite::Result<BTreeMap<String, BTreeMap<WarningLevel, i64>>> {
    let mut out: BTreeMap<String, BTreeMap<WarningLevel, i64>> = BTreeMap::new();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT site, level, count(*) FROM cases
         WHERE open = 1 AND level IS NOT NULL AND {} AND (?2 IS NULL OR unit = ?2)
         GROUP BY site, level",
        super::site_clause(scope.site.as_deref())
    ))?;
    let mut rows = stmt.query(params![scope.site, scope.unit])?;
    while let Some(r) = rows.next()? {
        let (site, level, n): (String, String, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
        if let Some(l) = WarningLevel::parse(&level) {
            *out.entry(site).or_default().entry(l).or_default() += n;
        }
    }
    Ok(out)
}

struct SiteCard {
    site: String,
    boxes: Vec<Box>,
    warnings: BTreeMap<WarningLevel, i64>,
    /// (unit, window, segment) vacant today so far.
    vacant: Vec<(String, String, String)>,
}

pub async fn page(State(state): State<super::DashState>, viewer: Viewer) -> Response {
    if viewer.user().role == super::Role::Technician {
        return super::see_other("/fleet");
    }
    let scope = viewer.scope();
    let sup = state.api.sup.clone();
    let today = sup.clock.today();
    // Segments count as vacant once they have started (all of them on a simulated day).
    let now_hm = if sup.clock.is_fixed() {
        "24:00".to_owned()
    } else {
        chrono::Utc::now()
            .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).expect("UTC+8"))
            .format("%H:%M")
            .to_string()
    };
    let cards = read(&state.api, move |r| {
        r.run(|c| {
            let boxes = boxes(c, &scope)?;
            let mut warnings = warnings(c, &scope)?;
            let mut cards = Vec::new();
            for site in sites(c, &scope)? {
                let vacant = attendance::board_at(
                    c,
                    &sup.office(),
                    &sup.calendar(),
                    &site,
                    today,
                    sup.clock.until(),
                )?
                .into_iter()
                .filter(|w| scope.unit_allowed(&w.unit))
                .flat_map(|w| {
                    w.segments
                        .into_iter()
                        .filter(|s| s.vacant && s.start <= now_hm)
                        .map(move |s| {
                            (
                                w.unit.clone(),
                                w.window.clone(),
                                format!("{}–{}", s.start, s.end),
                            )
                        })
                })
                .collect();
                cards.push(SiteCard {
                    boxes: boxes.iter().filter(|b| b.site == site).cloned().collect(),
                    warnings: warnings.remove(&site).unwrap_or_default(),
                    vacant,
                    site,
                });
            }
            Ok(cards)
        })
    })
    .await;
    let cards = match cards {
        Ok(c) => c,
        Err(r) => return r,
    };
    let l = viewer.lang;
    let mut totals: BTreeMap<WarningLevel, i64> = BTreeMap::new();
    for c in &cards {
        for (lv, n) in &c.warnings {
            *totals.entry(*lv).or_default() += n;
        }
    }
    let mut body = format!(
        "<p class=\"muted\">{} {today}</p><table><tr>",
        l.t("今日", "Today")
    );
    for lv in WarningLevel::ALL {
        body.push_str(&format!("<th>{}</th>", level_badge(l, lv.as_str())));
    }
    body.push_str("</tr><tr>");
    for lv in WarningLevel::ALL {
        let n = totals.get(&lv).copied().unwrap_or(0);
        body.push_str(&format!(
            "<td class=\"num\"><a href=\"/warnings?level={}\">{n}</a></td>",
            lv.as_str()
        ));
    }
    body.push_str("</tr></table>");
    if cards.is_empty() {
        body.push_str(&format!(
            "<p>{}</p>",
            l.t(
                "还没有乡镇：登记设备（sunlight-hub device add）或导入花名册后显示。",
                "No townships yet: they appear once a box is registered (sunlight-hub device add) or a roster imported."
            )
        ));
    }
    body.push_str("<div class=\"grid\">");
    for c in &cards {
        body.push_str(&card(l, c));
    }
    body.push_str("</div>");
    viewer.page("/", l.t("总览", "Overview").to_owned(), Some(60), &body)
}

fn card(l: Lang, c: &SiteCard) -> String {
    let site = esc(&c.site);
    let q = html::url(&c.site);
    let mut s = format!("<section class=\"card\"><h2>{site}</h2>");
    if c.boxes.is_empty() {
        s.push_str(&format!(
            "<p class=\"muted\">{}</p>",
            l.t("未登记设备", "No box registered")
        ));
    } else {
        s.push_str(&format!(
            "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            l.t("设备", "Box"),
            l.t("状态", "Status"),
            l.t("最后联系", "Last seen"),
            l.t("积压", "Backlog"),
            l.t("时钟偏差", "Clock offset")
        ));
        for b in &c.boxes {
            s.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                esc(&b.device),
                if b.online {
                    format!("<span class=\"ok\">{}</span>", l.t("在线", "online"))
                } else {
                    format!("<span class=\"bad\">{}</span>", l.t("离线", "offline"))
                },
                html::time_ms(b.last_seen_ms),
                b.backlog_events.map(|n| n.to_string()).unwrap_or_else(|| "—".into()),
                html::offset(b.clock_offset_ms)
            ));
        }
        s.push_str("</table>");
    }
    let open: i64 = c.warnings.values().sum();
    s.push_str(&format!("<p>{} ", l.t("在办预警", "Open warnings")));
    if open == 0 {
        s.push_str(&format!("<span class=\"ok\">{}</span>", l.t("无", "none")));
    }
    for (lv, n) in &c.warnings {
        s.push_str(&format!(
            "<a href=\"/warnings?site={q}&amp;level={}\">{} {n}</a> ",
            lv.as_str(),
            level_badge(l, lv.as_str())
        ));
    }
    s.push_str("</p>");
    s.push_str(&format!(
        "<div><a href=\"/attendance?site={q}\">{}</a>: ",
        l.t("今日空岗", "Vacant today")
    ));
    if c.vacant.is_empty() {
        s.push_str(&format!("<span class=\"ok\">{}</span>", l.t("无", "none")));
    } else {
        s.push_str(&format!(
            "<span class=\"bad\">{}</span><ul>",
            c.vacant.len()
        ));
        for (unit, window, seg) in &c.vacant {
            s.push_str(&format!("<li>{} {} {seg}</li>", esc(unit), esc(window)));
        }
        s.push_str("</ul>");
    }
    s.push_str("</div></section>");
    s
}
