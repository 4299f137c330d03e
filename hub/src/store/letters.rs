//! Supervision letters (监察建议书): when a case is three counted days overdue the hub issues a
//! numbered letter to its unit (seed 002). The document is rendered once, at issue, and stored:
//! an issued letter never changes (a trigger refuses it), and a case gets at most one letter.

use crate::config::LetterConfig;
use crate::oversight::cases::CaseState;
use chrono::{Datelike, NaiveDate};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS letters (
    id INTEGER PRIMARY KEY, number TEXT NOT NULL UNIQUE, year INTEGER NOT NULL, serial INTEGER NOT NULL,
    site TEXT NOT NULL, case_no TEXT NOT NULL, unit TEXT NOT NULL, window TEXT NOT NULL,
    staff_id TEXT NOT NULL, item_name TEXT NOT NULL, due TEXT, issued_day TEXT NOT NULL,
    overdue_days INTEGER NOT NULL, issuer TEXT NOT NULL, document TEXT NOT NULL, created_ms INTEGER NOT NULL,
    UNIQUE (site, case_no));
CREATE INDEX IF NOT EXISTS letters_serial ON letters (year, serial);
CREATE TRIGGER IF NOT EXISTS letters_no_update BEFORE UPDATE ON letters
    BEGIN SELECT RAISE(ABORT, 'an issued supervision letter is never changed'); END;
CREATE TRIGGER IF NOT EXISTS letters_no_delete BEFORE DELETE ON letters
    BEGIN SELECT RAISE(ABORT, 'an issued supervision letter is never deleted'); END;
";

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn zh_date(d: NaiveDate) -> String {
    format!("{}年{}月{}日", d.year(), d.month(), d.day())
}

/// The facts a letter states.
pub struct LetterFacts<'a> {
    pub number: &'a str,
    pub site: &'a str,
    pub case: &'a CaseState,
    pub due: Option<NaiveDate>,
    pub issued: NaiveDate,
    pub overdue_days: u32,
    pub issuer: &'a str,
}

/// The printable document (zh-CN, A4).
pub fn render(f: &LetterFacts<'_>) -> String {
    let c = f.case;
    let due = f.due.map(zh_date).unwrap_or_else(|| "（未定）".into());
    let limit = match c.kind {
        crate::oversight::cases::Kind::Immediate => "即办件，应当场办结".to_owned(),
        crate::oversight::cases::Kind::Promised => format!(
            "承诺件，承诺时限 {} 个{}",
            c.limit_days,
            match c.unit_of_days {
                crate::oversight::calendar::DayUnit::Working => "工作日",
                crate::oversight::calendar::DayUnit::Natural => "自然日",
            }
        ),
    };
    format!(
        r#"<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>{number}</title>
<style>
body {{ font-family: "FangSong", "仿宋", "Noto Serif CJK SC", serif; max-width: 42em; margin: 3em auto; line-height: 1.9; font-size: 16pt; }}
h1 {{ text-align: center; font-size: 22pt; letter-spacing: .3em; margin-bottom: .2em; }}
.number {{ text-align: center; margin-top: 0; }}
.sign {{ text-align: right; margin-top: 3em; }}
@media print {{ body {{ margin: 0 auto; }} }}
</style></head>
<body>
<h1>监察建议书</h1>
<p class="number">{number}</p>
<p>{unit}：</p>
<p>　　经电子监察系统监测，你单位{window}窗口受理的“{item}”事项（办件编号 {case_no}，{site}，经办人 {staff}），{limit}，应于 {due} 前办结。截至 {issued}，该件已超过办理时限 {overdue} 个工作日仍未办结，系统已依次亮黄灯、红灯，出示黄牌、红牌。</p>
<p>　　根据《中华人民共和国行政许可法》关于办理时限的规定和本县政务服务电子监察制度，现提出如下监察建议：</p>
<p>　　一、立即办结该件，并向申请人说明超期原因；</p>
<p>　　二、查明超期原因，对相关责任人依规提出处理意见；</p>
<p>　　三、自收到本建议书之日起 5 个工作日内，将整改情况书面反馈{issuer}。</p>
<p class="sign">{issuer}<br>{issued}</p>
</body></html>
"#,
        number = escape(f.number),
        unit = escape(&c.unit),
        window = escape(&c.window),
        item = escape(&c.item_name),
        case_no = escape(&c.case_no),
        site = escape(f.site),
        staff = escape(&c.staff_id),
        limit = limit,
        due = due,
        issued = zh_date(f.issued),
        overdue = f.overdue_days,
        issuer = escape(f.issuer),
    )
}

/// Issues the letter for a case unless it has one. Returns the new letter's number.
pub fn issue(
    conn: &Connection,
    config: &LetterConfig,
    site: &str,
    case: &CaseState,
    due: Option<NaiveDate>,
    today: NaiveDate,
    overdue_days: u32,
) -> rusqlite::Result<Option<String>> {
    let exists: Option<i64> = conn
        .query_row(
            "SELECT id FROM letters WHERE site = ?1 AND case_no = ?2",
            params![site, case.case_no],
            |r| r.get(0),
        )
        .optional()?;
    if exists.is_some() {
        return Ok(None);
    }
    let year = today.year();
    let serial: i64 = conn.query_row(
        "SELECT COALESCE(MAX(serial), 0) + 1 FROM letters WHERE year = ?1",
        [year],
        |r| r.get(0),
    )?;
    let number = format!("{}〔{year}〕{serial}号", config.prefix);
    let document = render(&LetterFacts {
        number: &number,
        site,
        case,
        due,
        issued: today,
        overdue_days,
        issuer: &config.issuer,
    });
    conn.execute(
        "INSERT INTO letters (number, year, serial, site, case_no, unit, window, staff_id, item_name, due, issued_day,
                              overdue_days, issuer, document, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        params![
            number,
            year,
            serial,
            site,
            case.case_no,
            case.unit,
            case.window,
            case.staff_id,
            case.item_name,
            due.map(|d| d.to_string()),
            today.to_string(),
            overdue_days,
            config.issuer,
            document,
            super::now_ms()
        ],
    )?;
    Ok(Some(number))
}

/// A letter as the API lists it (the document itself is served on its own).
#[derive(Debug, Serialize)]
pub struct LetterView {
    pub id: i64,
    pub number: String,
    pub site: String,
    pub case_no: String,
    pub unit: String,
    pub window: String,
    pub item_name: String,
    pub due: Option<String>,
    pub issued_day: String,
    pub overdue_days: u32,
}

pub fn list(
    conn: &Connection,
    site: Option<&str>,
    case_no: Option<&str>,
    limit: u32,
) -> rusqlite::Result<Vec<LetterView>> {
    // Only the conditions given, so the (site, case_no) index is used.
    let sql = format!(
        "SELECT id, number, site, case_no, unit, window, item_name, due, issued_day, overdue_days FROM letters
         WHERE {} ORDER BY id DESC LIMIT {}",
        match (site.is_some(), case_no.is_some()) {
            (true, true) => "site = ?1 AND case_no = ?2",
            (true, false) => "site = ?1 AND ?2 IS NULL",
            (false, true) => "?1 IS NULL AND case_no = ?2",
            (false, false) => "?1 IS NULL AND ?2 IS NULL",
        },
        limit.clamp(1, 1000)
    );
    conn.prepare_cached(&sql)?
        .query_map(params![site, case_no], |r| {
            Ok(LetterView {
                id: r.get(0)?,
                number: r.get(1)?,
                site: r.get(2)?,
                case_no: r.get(3)?,
                unit: r.get(4)?,
                window: r.get(5)?,
                item_name: r.get(6)?,
                due: r.get(7)?,
                issued_day: r.get(8)?,
                overdue_days: r.get(9)?,
            })
        })?
        .collect()
}

pub fn document(conn: &Connection, id: i64) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT document FROM letters WHERE id = ?1", [id], |r| {
        r.get(0)
    })
    .optional()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_outside_is_escaped() {
        assert_eq!(
            escape(r#"<script>"x" & 'y'</script>"#),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
    }
}
