//! The audit log (`/admin/audit`, admins only): who changed what, latest first, filtered by action.

use super::Viewer;
use super::accounts::Role;
use super::html::{self, esc};
use crate::web::read;
use axum::extract::{Query, State};
use axum::response::Response;
use rusqlite::{Connection, params};
use serde::Deserialize;

/// Rows shown at most.
const LIMIT: u32 = 500;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub at_ms: i64,
    pub who: String,
    pub action: String,
    pub target: String,
    pub detail: String,
}

/// The latest rows, of one action (or of actions starting with `action.` for a family such as
/// `calendar`) when given.
pub fn rows(conn: &Connection, action: Option<&str>, limit: u32) -> rusqlite::Result<Vec<Row>> {
    let map = |r: &rusqlite::Row<'_>| {
        Ok(Row {
            at_ms: r.get(0)?,
            who: r.get(1)?,
            action: r.get(2)?,
            target: r.get(3)?,
            detail: r.get(4)?,
        })
    };
    match action {
        Some(a) => conn
            .prepare_cached(
                "SELECT at_ms, who, action, target, detail FROM audit
                 WHERE action = ?1 OR (action >= ?1 || '.' AND action < ?1 || '/')
                 ORDER BY id DESC LIMIT ?2",
            )?
            .query_map(params![a, limit], map)?
            .collect(),
        None => conn
            .prepare_cached(
                "SELECT at_ms, who, action, target, detail FROM audit ORDER BY id DESC LIMIT ?1",
            )?
            .query_map([limit], map)?
            .collect(),
    }
}

pub fn actions(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    conn.prepare_cached("SELECT DISTINCT action FROM audit ORDER BY action")?
        .query_map([], |r| r.get(0))?
        .collect()
}

#[derive(Deserialize)]
pub struct AuditQuery {
    action: Option<String>,
}

pub async fn page(
    State(state): State<super::DashState>,
    viewer: Viewer,
    Query(q): Query<AuditQuery>,
) -> Response {
    if let Err(r) = viewer.require(&[Role::Admin]) {
        return r;
    }
    let l = viewer.lang;
    let action = q
        .action
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty());
    let a = action.clone();
    let (all, list) = match read(&state.api, move |r| {
        r.run(|c| Ok((actions(c)?, rows(c, a.as_deref(), LIMIT)?)))
    })
    .await
    {
        Ok(x) => x,
        Err(r) => return r,
    };
    let mut choices = vec![(String::new(), l.t("全部", "all").to_owned())];
    choices.extend(all.into_iter().map(|a| (a.clone(), a)));
    let mut body = format!(
        "<form class=\"filters\" method=\"get\" action=\"/admin/audit\"><label>{}<select name=\"action\">{}</select></label>\
<button type=\"submit\">{}</button></form><table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        l.t("操作", "Action"),
        html::options(&choices, Some(action.as_deref().unwrap_or(""))),
        l.t("筛选", "Filter"),
        l.t("时间", "At"),
        l.t("操作人", "Who"),
        l.t("操作", "Action"),
        l.t("对象", "Target"),
        l.t("内容", "Detail"),
    );
    for r in &list {
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            html::time_ms(Some(r.at_ms)),
            esc(&r.who),
            esc(&r.action),
            esc(&r.target),
            esc(&r.detail),
        ));
    }
    body.push_str("</table>");
    if list.len() as u32 == LIMIT {
        body.push_str(&format!(
            "<p class=\"muted\">{}</p>",
            l.t("只显示最近 500 条。", "The latest 500 rows only.")
        ));
    }
    viewer.page(
        "/admin/audit",
        l.t("审计日志", "Audit log").to_owned(),
        None,
        &body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_first_and_filtered_by_action_or_family() {
        let dir = tempfile::tempdir().unwrap();
        let w = crate::store::Writer::open(&dir.path().join("hub.db")).unwrap();
        let c = w.conn();
        for (a, t) in [
            ("item.add", "item:A"),
            ("calendar.set", "calendar:2025-11-05"),
            ("calendar.remove", "calendar:2025-11-05"),
            ("calendarx", "x"),
        ] {
            crate::store::audit(c, "admin", a, t, "").unwrap();
        }
        let all = rows(c, None, 10).unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(all[0].action, "calendarx");
        let cal = rows(c, Some("calendar"), 10).unwrap();
        assert_eq!(
            cal.iter().map(|r| r.action.as_str()).collect::<Vec<_>>(),
            ["calendar.remove", "calendar.set"]
        );
        assert_eq!(rows(c, Some("item.add"), 10).unwrap().len(), 1);
        assert_eq!(actions(c).unwrap().len(), 4);
    }
}
