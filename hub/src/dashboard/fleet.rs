//! Fleet (`/fleet`): the boxes in scope with their link state and the figures of their last
//! `health` event (CPU, memory, free disk, uptime, backlog, clock offset, version), and the latest
//! alarms (tamper, broken chain, ...). Technicians see every site; a head sees their own.

use super::html::{self, esc};
use super::{Role, Viewer};
use crate::web::read;
use axum::extract::State;
use axum::response::Response;
use rusqlite::params;

struct Alarm {
    at_ms: i64,
    site: Option<String>,
    device: Option<String>,
    kind: String,
    detail: String,
}

fn bytes(v: &serde_json::Value) -> String {
    match v.as_f64() {
        Some(b) if b >= 1e9 => format!("{:.1} GB", b / 1e9),
        Some(b) => format!("{:.0} MB", b / 1e6),
        None => "—".into(),
    }
}

/// The backlog trend's span and resolution.
const TREND_HOURS: i64 = 24;
const TREND_POINTS: usize = 48;

/// A box's backlog over time as a small inline SVG line (no scripts: the dashboard has none), with
/// the highest value as its title.
pub fn sparkline(points: &[(i64, i64)]) -> String {
    let (w, h) = (120.0_f64, 24.0_f64);
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return "<span class=\"muted\">—</span>".into();
    };
    let max = points.iter().map(|p| p.1).max().unwrap_or(0).max(1) as f64;
    let span = (last.0 - first.0).max(1) as f64;
    let coords: Vec<String> = points
        .iter()
        .map(|(t, v)| {
            format!(
                "{:.1},{:.1}",
                (*t - first.0) as f64 / span * w,
                h - 1.0 - (*v as f64 / max) * (h - 2.0)
            )
        })
        .collect();
    let growing = points.len() >= 2 && last.1 > first.1;
    format!(
        "<svg width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\"><title>max {}</title><polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" points=\"{}\"/></svg>",
        max as i64,
        if growing { "#cf222e" } else { "#1f6feb" },
        coords.join(" ")
    )
}

pub async fn page(State(state): State<super::DashState>, viewer: Viewer) -> Response {
    if let Err(r) = viewer.require(&[Role::Supervisor, Role::Head, Role::Technician, Role::Admin]) {
        return r;
    }
    let scope = viewer.scope();
    let data = read(&state.api, move |r| {
        r.run(|c| {
            let boxes = super::overview::boxes(c, &scope)?;
            // A head sees their site's alarms; alarms without a site only the county's staff.
            let alarms = c
                .prepare_cached(
                    "SELECT at_ms, site, device, kind, detail FROM alarms
                     WHERE (?1 IS NULL OR site = ?1) ORDER BY id DESC LIMIT 100",
                )?
                .query_map(params![scope.site], |r| {
                    Ok(Alarm {
                        at_ms: r.get(0)?,
                        site: r.get(1)?,
                        device: r.get(2)?,
                        kind: r.get(3)?,
                        detail: r.get(4)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let conditions = crate::fleet::open_conditions(c, scope.site.as_deref())?;
            let since = super::accounts::now_ms() - TREND_HOURS * 3_600_000;
            let trends = boxes
                .iter()
                .map(|b| crate::fleet::backlog_trend(c, &b.site, &b.device, since, TREND_POINTS))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((boxes, alarms, conditions, trends))
        })
    })
    .await;
    let (boxes, alarms, conditions, trends) = match data {
        Ok(d) => d,
        Err(r) => return r,
    };
    let l = viewer.lang;
    let now = super::accounts::now_ms();
    let mut body = String::new();
    if conditions.is_empty() {
        body.push_str(&format!(
            "<p class=\"notice\">{}</p>",
            l.t("当前没有设备问题。", "No open problem with any box.")
        ));
    } else {
        body.push_str(&format!(
            "<h2>{}</h2><table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            l.t("当前问题", "Open problems"),
            l.t("乡镇", "Site"),
            l.t("设备", "Box"),
            l.t("问题", "Problem"),
            l.t("开始于", "Since"),
            l.t("详情", "Detail"),
        ));
        for (c, since) in &conditions {
            body.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td class=\"bad\">{}</td><td>{}</td><td>{}</td></tr>",
                esc(&c.site),
                esc(&c.device),
                match l {
                    html::Lang::Zh => esc(crate::fleet::kind_zh(&c.kind)),
                    html::Lang::En => esc(&c.kind.replace('_', " ")),
                },
                html::time_ms(Some(*since)),
                esc(&c.detail),
            ));
        }
        body.push_str("</table>");
    }
    body.push_str(&format!(
        "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>CPU</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        l.t("乡镇", "Site"),
        l.t("设备", "Box"),
        l.t("状态", "Status"),
        l.t("最后联系", "Last seen"),
        l.t("积压", "Backlog"),
        l.t("积压趋势（24 小时）", "Backlog, last 24 h"),
        l.t("时钟偏差", "Clock offset"),
        l.t("内存", "Memory"),
        l.t("剩余磁盘", "Free disk"),
        l.t("运行时间", "Uptime"),
        l.t("版本", "Version"),
        l.t("告警", "Alarms"),
    ));
    for (b, trend) in boxes.iter().zip(&trends) {
        let h: serde_json::Value = b
            .health
            .as_deref()
            .and_then(|h| serde_json::from_str(h).ok())
            .unwrap_or_default();
        let silent_min = b.last_seen_ms.map(|t| (now - t) / 60_000);
        let status = if b.online && silent_min.is_none_or(|m| m < 30) {
            format!("<span class=\"ok\">{}</span>", l.t("在线", "online"))
        } else {
            format!("<span class=\"bad\">{}</span>", l.t("离线", "offline"))
        };
        let disk = match h["disk_free"].as_f64() {
            Some(f) if f > 0.0 && f < 1e9 => {
                format!("<span class=\"bad\">{}</span>", bytes(&h["disk_free"]))
            }
            _ => bytes(&h["disk_free"]),
        };
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{status}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{disk}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
            esc(&b.site),
            esc(&b.device),
            html::time_ms(b.last_seen_ms),
            b.backlog_events.map_or_else(|| "—".into(), |n| n.to_string()),
            sparkline(trend),
            html::offset(b.clock_offset_ms),
            h["cpu"].as_f64().map_or_else(|| "—".into(), |c| format!("{c:.0}%")),
            bytes(&h["mem"]),
            h["uptime"].as_u64().map_or_else(|| "—".into(), |s| format!("{}h", s / 3600)),
            esc(b.version.as_deref().unwrap_or("—")),
            if b.alarms > 0 { format!("<span class=\"bad\">{}</span>", b.alarms) } else { "0".into() },
        ));
    }
    body.push_str("</table>");
    if boxes.is_empty() {
        body.push_str(&format!(
            "<p class=\"muted\">{}</p>",
            l.t("未登记设备。", "No box registered.")
        ));
    }
    body.push_str(&format!("<h2>{}</h2>", l.t("最近告警", "Latest alarms")));
    if alarms.is_empty() {
        body.push_str(&format!("<p class=\"ok\">{}</p>", l.t("无", "None")));
    } else {
        body.push_str(&format!(
            "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            l.t("时间", "Time"),
            l.t("乡镇", "Site"),
            l.t("设备", "Box"),
            l.t("类型", "Kind"),
            l.t("详情", "Detail"),
        ));
        for a in &alarms {
            body.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                html::time_ms(Some(a.at_ms)),
                esc(a.site.as_deref().unwrap_or("—")),
                esc(a.device.as_deref().unwrap_or("—")),
                esc(&a.kind),
                esc(&a.detail)
            ));
        }
        body.push_str("</table>");
    }
    viewer.page("/fleet", l.t("设备", "Fleet").to_owned(), Some(60), &body)
}
