//! Figures per unit or window over a day range (OVERSIGHT.md §2, §4; the monthly report of §5 uses
//! the same queries): cases accepted and completed, on-time and early rates, warnings by level,
//! ratings and satisfaction, work-order callback and fix rates.

use chrono::NaiveDate;
use rusqlite::{Connection, params};
use serde::Serialize;
use std::collections::BTreeMap;

/// Group figures by unit (科室/部门) or by window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Unit,
    Window,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Figures {
    pub site: String,
    /// The unit or window.
    pub group: String,
    pub accepted: i64,
    pub accepted_immediate: i64,
    pub accepted_promised: i64,
    pub completed: i64,
    pub on_time: i64,
    pub early: i64,
    /// on_time / completed, when any were completed.
    pub on_time_rate: Option<f64>,
    pub early_rate: Option<f64>,
    /// Warnings raised in the range, by level name (yellow_light, red_card, ...).
    pub warnings: BTreeMap<String, i64>,
    pub ratings: i64,
    /// Ratings of 基本满意 or better over all counted ratings (defaults included).
    pub satisfied: i64,
    pub satisfaction_rate: Option<f64>,
    pub bad_ratings: i64,
    pub work_orders: i64,
    pub called_back_on_time: i64,
    pub fixed_on_time: i64,
    pub callback_rate: Option<f64>,
    pub fix_rate: Option<f64>,
}

fn rate(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| (part as f64 / whole as f64 * 10_000.0).round() / 10_000.0)
}

fn slot(
    map: &mut BTreeMap<(String, String), Figures>,
    site: String,
    group: String,
) -> &mut Figures {
    map.entry((site.clone(), group.clone()))
        .or_insert_with(|| Figures {
            site,
            group,
            ..Figures::default()
        })
}

fn n(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<i64> {
    Ok(r.get::<_, Option<i64>>(i)?.unwrap_or(0))
}

/// Figures for `[from, to]` (inclusive days), per site and group, optionally one site only.
pub fn figures(
    conn: &Connection,
    by: GroupBy,
    site: Option<&str>,
    from: NaiveDate,
    to: NaiveDate,
) -> rusqlite::Result<Vec<Figures>> {
    let col = match by {
        GroupBy::Unit => "unit",
        GroupBy::Window => "window",
    };
    let (from, to) = (from.to_string(), to.to_string());
    let mut out: BTreeMap<(String, String), Figures> = BTreeMap::new();
    // Cases accepted and completed in the range.
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT site, {col},
            sum(accepted BETWEEN ?2 AND ?3),
            sum(accepted BETWEEN ?2 AND ?3 AND kind = 'immediate'),
            sum(accepted BETWEEN ?2 AND ?3 AND kind = 'promised'),
            sum(completed BETWEEN ?2 AND ?3),
            sum(completed BETWEEN ?2 AND ?3 AND on_time = 1),
            sum(completed BETWEEN ?2 AND ?3 AND early = 1)
         FROM cases WHERE (?1 IS NULL OR site = ?1) GROUP BY site, {col}"
    ))?;
    let mut rows = stmt.query(params![site, from, to])?;
    while let Some(r) = rows.next()? {
        let f = slot(&mut out, r.get(0)?, r.get(1)?);
        f.accepted = n(r, 2)?;
        f.accepted_immediate = n(r, 3)?;
        f.accepted_promised = n(r, 4)?;
        f.completed = n(r, 5)?;
        f.on_time = n(r, 6)?;
        f.early = n(r, 7)?;
    }
    // Warnings raised in the range.
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT c.site, c.{col}, w.level, count(*) FROM case_warnings w
         JOIN cases c ON c.site = w.site AND c.case_no = w.case_no
         WHERE (?1 IS NULL OR c.site = ?1) AND w.on_day BETWEEN ?2 AND ?3 AND w.level != 'blue'
         GROUP BY c.site, c.{col}, w.level"
    ))?;
    let mut rows = stmt.query(params![site, from, to])?;
    while let Some(r) = rows.next()? {
        let f = slot(&mut out, r.get(0)?, r.get(1)?);
        f.warnings.insert(r.get(2)?, n(r, 3)?);
    }
    // Ratings given (or defaulted) in the range; duplicates are not counted.
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT site, {col}, count(*), sum(level >= 3), sum(level <= 2) FROM ratings
         WHERE (?1 IS NULL OR site = ?1) AND day BETWEEN ?2 AND ?3 AND duplicate = 0
         GROUP BY site, {col}"
    ))?;
    let mut rows = stmt.query(params![site, from, to])?;
    while let Some(r) = rows.next()? {
        let f = slot(&mut out, r.get(0)?, r.get(1)?);
        f.ratings = n(r, 2)?;
        f.satisfied = n(r, 3)?;
        f.bad_ratings = n(r, 4)?;
    }
    // Work orders opened in the range: callbacks and fixes made by their due days. A rating found
    // 不实, 误评 or 恶意 needs no fix and counts as fixed.
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT site, {col}, count(*),
            sum(callback_day IS NOT NULL AND callback_day <= callback_due),
            sum((fixed_day IS NOT NULL AND fixed_day <= fix_due)
                OR (classification IS NOT NULL AND classification != '属实'))
         FROM work_orders WHERE (?1 IS NULL OR site = ?1) AND opened_day BETWEEN ?2 AND ?3
         GROUP BY site, {col}"
    ))?;
    let mut rows = stmt.query(params![site, from, to])?;
    while let Some(r) = rows.next()? {
        let f = slot(&mut out, r.get(0)?, r.get(1)?);
        f.work_orders = n(r, 2)?;
        f.called_back_on_time = n(r, 3)?;
        f.fixed_on_time = n(r, 4)?;
    }
    Ok(out
        .into_values()
        .map(|mut f| {
            f.on_time_rate = rate(f.on_time, f.completed);
            f.early_rate = rate(f.early, f.completed);
            f.satisfaction_rate = rate(f.satisfied, f.ratings);
            f.callback_rate = rate(f.called_back_on_time, f.work_orders);
            f.fix_rate = rate(f.fixed_on_time, f.work_orders);
            f
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_rounded_and_absent_without_a_base() {
        assert_eq!(rate(2, 3), Some(0.6667));
        assert_eq!(rate(0, 0), None);
        assert_eq!(rate(5, 5), Some(1.0));
    }
}
