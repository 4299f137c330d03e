//! File import (`POST /api/v1/import?kind=case|rating|complaint`) for offices whose approval system
//! can only export files: each row of a CSV or XLSX export becomes one event, checked exactly as a
//! posted event is ([`intake_api::draft`]). Good rows are recorded even when others are bad; the
//! answer says row by row what happened.
//!
//! Re-importing a file records nothing twice: each row's event is appended with the dedup key
//! `import:<kind>:<sha256 of kind, time and masked body>`, so a row already recorded is reported as
//! a duplicate. A row without a time gets the box's clock and is still recognised on re-import.

use super::intake_api::{self, IntakeState};
use super::intake_keys::Grant;
use super::table::{self, Limits, Row, TableError};
use crate::clock::Clock;
use crate::error::Error;
use crate::outbox::{Keyed, Outbox};
use axum::body::Bytes;
use axum::extract::{Extension, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDateTime, TimeZone};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// Largest file accepted.
pub const MAX_FILE: usize = 10 * 1024 * 1024;
/// Most rows in one file, the header not counted.
pub const MAX_ROWS: usize = 50_000;
/// What a file may cost the box (unpacked size, shared strings, rows, cells): [`table::Limits`].
pub const LIMITS: Limits = Limits {
    rows: MAX_ROWS + 1,
    ..Limits::DEFAULT
};

/// The kinds a file may hold, one kind per file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportKind {
    /// 办件
    Case,
    /// 好差评
    Rating,
    /// 投诉
    Complaint,
}

impl ImportKind {
    pub fn parse(name: &str) -> Option<ImportKind> {
        match name {
            "case" => Some(ImportKind::Case),
            "rating" => Some(ImportKind::Rating),
            "complaint" => Some(ImportKind::Complaint),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ImportKind::Case => "case",
            ImportKind::Rating => "rating",
            ImportKind::Complaint => "complaint",
        }
    }

    fn fields(self) -> &'static [Field] {
        match self {
            ImportKind::Case => CASE,
            ImportKind::Rating => RATING,
            ImportKind::Complaint => COMPLAINT,
        }
    }
}

/// How a cell becomes a JSON value.
#[derive(Debug, Clone, Copy)]
enum Cell {
    Text,
    /// A whole number of days (`5` or `5天`).
    Days,
    /// An amount of yuan (`12.5` or `12.5元`).
    Yuan,
    /// One of the protocol's words, or its Chinese name from `WORDS`.
    Word(&'static [(&'static str, &'static str)]),
    /// Rating level 1–5, or its Chinese name.
    Level,
    /// A list separated by `;`, `；` or `、`.
    List,
    /// A JSON object.
    Object,
    /// A JSON object when the cell holds one, else text.
    TextOrObject,
}

/// One body field: its name, the Chinese column names an export uses, and how to read it.
struct Field {
    name: &'static str,
    aliases: &'static [&'static str],
    cell: Cell,
    required: bool,
}

const fn field(
    name: &'static str,
    aliases: &'static [&'static str],
    cell: Cell,
    required: bool,
) -> Field {
    Field {
        name,
        aliases,
        cell,
        required,
    }
}

const STAGES: &[(&str, &str)] = &[
    ("收件", "received"),
    ("受理", "accepted"),
    ("承办", "undertaken"),
    ("审核", "reviewed"),
    ("批准", "approved"),
    ("办结", "completed"),
    ("不予受理", "rejected"),
    ("暂停", "paused"),
    ("恢复", "resumed"),
    ("延期", "extended"),
    ("撤回", "withdrawn"),
];
const CASE_KINDS: &[(&str, &str)] = &[("即办件", "immediate"), ("承诺件", "promised")];
const LIMIT_UNITS: &[(&str, &str)] = &[("工作日", "working"), ("自然日", "natural")];
const RATING_CHANNELS: &[(&str, &str)] = &[
    ("评价器", "pad"),
    ("平板", "pad"),
    ("短信", "sms"),
    ("网站", "web"),
    ("网上", "web"),
    ("自助终端", "kiosk"),
];
const LEVELS: &[(&str, u8)] = &[
    ("非常不满意", 1),
    ("不满意", 2),
    ("基本满意", 3),
    ("满意", 4),
    ("非常满意", 5),
];

const CASE: &[Field] = &[
    field("case_no", &["办件编号"], Cell::Text, true),
    field("item_code", &["事项编码"], Cell::Text, true),
    field("item_name", &["事项名称"], Cell::Text, true),
    field("unit", &["部门"], Cell::Text, true),
    field("window", &["窗口"], Cell::Text, true),
    field("stage", &["环节"], Cell::Word(STAGES), true),
    field("staff_id", &["经办人"], Cell::Text, true),
    field("kind", &["办件类型"], Cell::Word(CASE_KINDS), true),
    field("limit_days", &["时限"], Cell::Days, false),
    field("limit_unit", &["时限单位"], Cell::Word(LIMIT_UNITS), false),
    field("applicant_name", &["申请人"], Cell::Text, false),
    field("applicant_phone", &["联系电话"], Cell::Text, false),
    field("pause_reason", &["暂停原因"], Cell::Text, false),
    field("extension_days", &["延期天数"], Cell::Days, false),
    field("approval_ref", &["批准文号"], Cell::Text, false),
    field("reason", &["原因"], Cell::Text, false),
    field("fee_yuan", &["收费金额"], Cell::Yuan, false),
];

const RATING: &[Field] = &[
    field("case_no", &["办件编号"], Cell::Text, false),
    field("window", &["窗口"], Cell::Text, false),
    field("level", &["评价等级", "满意度"], Cell::Level, true),
    field(
        "channel",
        &["评价渠道", "渠道"],
        Cell::Word(RATING_CHANNELS),
        true,
    ),
    field("staff_id", &["经办人", "工作人员"], Cell::Text, false),
    field("indicators", &["评价指标"], Cell::Object, false),
    field("reason_codes", &["差评原因"], Cell::List, false),
    field("comment", &["评价内容", "意见"], Cell::Text, false),
];

const COMPLAINT: &[Field] = &[
    field("complaint_no", &["投诉编号"], Cell::Text, true),
    field("channel", &["投诉渠道", "渠道"], Cell::Text, true),
    field("about", &["投诉对象"], Cell::TextOrObject, true),
    field("text", &["投诉内容", "内容"], Cell::Text, true),
    field("contact", &["联系电话", "联系方式"], Cell::Text, false),
];

/// Column names of the event time, in office time or RFC 3339.
const AT_ALIASES: &[&str] = &["at", "时间", "办理时间", "评价时间", "投诉时间"];

/// What a header column feeds.
#[derive(Clone, Copy)]
enum Target {
    At,
    Field(&'static Field),
}

/// The header of a file, resolved against the kind's fields.
struct Header {
    /// Per column: what it feeds, with the column's name as written.
    columns: Vec<Option<(Target, String)>>,
    ignored: Vec<String>,
}

fn resolve_header(kind: ImportKind, cells: &[String]) -> Result<Header, String> {
    let mut columns = Vec::with_capacity(cells.len());
    let mut ignored = Vec::new();
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for name in cells {
        let name = name.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
        let lower = name.to_ascii_lowercase();
        let target = if AT_ALIASES.contains(&lower.as_str()) {
            Some((Target::At, "at"))
        } else {
            kind.fields()
                .iter()
                .find(|f| f.name == lower || f.aliases.contains(&name))
                .map(|f| (Target::Field(f), f.name))
        };
        match target {
            Some((target, field)) => {
                if let Some((other, _)) = seen.iter().find(|(_, f)| *f == field) {
                    return Err(format!(
                        "columns {other:?} and {name:?} both give {field}; keep one of them"
                    ));
                }
                seen.push((name, field));
                columns.push(Some((target, name.to_owned())));
            }
            None => {
                if !name.is_empty() {
                    ignored.push(name.to_owned());
                }
                columns.push(None);
            }
        }
    }
    let missing: Vec<String> = kind
        .fields()
        .iter()
        .filter(|f| f.required && !seen.iter().any(|(_, s)| *s == f.name))
        .map(|f| match f.aliases.first() {
            Some(zh) => format!("{} ({zh})", f.name),
            None => f.name.to_owned(),
        })
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the header has no column for {}: a {} file needs it; name the column in the first row",
            missing.join(", "),
            kind.as_str()
        ));
    }
    Ok(Header { columns, ignored })
}

/// A cell's JSON value for `field`, or what is wrong with it.
fn cell_value(field: &Field, column: &str, text: &str) -> Result<Value, String> {
    let bad = |what: &str| format!("column {column}: {text:?} {what}");
    Ok(match field.cell {
        Cell::Text => json!(text),
        Cell::Days => {
            let digits = text.strip_suffix('天').unwrap_or(text).trim();
            json!(
                digits
                    .parse::<u32>()
                    .map_err(|_| bad("is not a whole number of days"))?
            )
        }
        Cell::Yuan => {
            let amount = text.strip_suffix('元').unwrap_or(text).trim();
            json!(
                amount
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .ok_or_else(|| bad("is not an amount of yuan"))?
            )
        }
        Cell::Word(words) => {
            let word = words
                .iter()
                .find(|(zh, _)| *zh == text)
                .map(|(_, en)| (*en).to_owned())
                .unwrap_or_else(|| text.to_ascii_lowercase());
            json!(word)
        }
        Cell::Level => match LEVELS.iter().find(|(zh, _)| *zh == text) {
            Some((_, level)) => json!(level),
            None => json!(text.parse::<u8>().map_err(|_| bad(
                "is not a level: 1 to 5, or 非常不满意/不满意/基本满意/满意/非常满意"
            ))?),
        },
        Cell::List => json!(
            text.split([';', '；', '、'])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
        ),
        Cell::Object => match serde_json::from_str::<Value>(text) {
            Ok(object @ Value::Object(_)) => object,
            _ => return Err(bad("is not a JSON object like {\"attitude\": 5}")),
        },
        Cell::TextOrObject => match serde_json::from_str::<Value>(text) {
            Ok(object @ Value::Object(_)) => object,
            _ => json!(text),
        },
    })
}

/// An office-time `YYYY-MM-DD HH:MM[:SS]` (or with `/`) in `tz`, or RFC 3339, as RFC 3339.
pub fn event_time(text: &str, tz: chrono_tz::Tz) -> Result<String, String> {
    if chrono::DateTime::parse_from_rfc3339(text).is_ok() {
        return Ok(text.to_owned());
    }
    const FORMATS: [&str; 6] = [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y/%m/%d %H:%M:%S%.f",
        "%Y/%m/%d %H:%M",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ];
    FORMATS
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        .and_then(|local| tz.from_local_datetime(&local).single())
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false))
        .ok_or_else(|| {
            format!(
                "time {text:?} is not YYYY-MM-DD HH:MM[:SS] in office time ({}) or RFC 3339",
                tz.name()
            )
        })
}

/// The event of one row, keyed for dedup, or why the row is refused.
fn row_event(
    kind: ImportKind,
    header: &Header,
    row: &Row,
    clock: &Clock,
    now: &str,
) -> Result<Keyed, String> {
    if let Some(extra) = row.cells.get(header.columns.len()..) {
        if extra.iter().any(|c| !c.trim().is_empty()) {
            return Err(format!(
                "the row has {} cells but the header only {} columns",
                row.cells.len(),
                header.columns.len()
            ));
        }
    }
    let mut at = None;
    let mut body = Map::new();
    for (column, text) in header.columns.iter().zip(&row.cells) {
        let (Some((target, name)), text) = (column, text.trim()) else {
            continue;
        };
        if text.is_empty() {
            continue;
        }
        match target {
            Target::At => at = Some(event_time(text, clock.tz())?),
            Target::Field(field) => {
                body.insert(field.name.to_owned(), cell_value(field, name, text)?);
            }
        }
    }
    let draft = intake_api::draft(
        kind.as_str(),
        at.as_deref().unwrap_or(now),
        Value::Object(body),
    )
    .map_err(|e| e.to_string())?;
    let mut hash = Sha256::new();
    for part in [kind.as_str(), at.as_deref().unwrap_or(""), draft.body()] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    Ok(Keyed {
        key: Some(format!(
            "import:{}:{}",
            kind.as_str(),
            hex::encode(hash.finalize())
        )),
        draft,
    })
}

/// A file read and checked: the ignored columns, and per data row (by number) its event or why
/// the row is refused.
struct Plan {
    ignored: Vec<String>,
    rows: Vec<(usize, Result<Keyed, String>)>,
}

/// Reads a file into a [`Plan`]. Errors are about the whole file (empty, no header, a required
/// column missing, over a bound of [`LIMITS`]).
fn plan(kind: ImportKind, bytes: &[u8], clock: &Clock) -> Result<Plan, TableError> {
    let rows = table::read(bytes, &LIMITS)?;
    let Some((header, rows)) = rows.split_first() else {
        return Err(TableError::Invalid(
            "the file is empty: export the cases with a header row".into(),
        ));
    };
    if rows.is_empty() {
        return Err(TableError::Invalid(
            "the file has a header row but no data rows".into(),
        ));
    }
    let header = resolve_header(kind, &header.cells).map_err(TableError::Invalid)?;
    let now = clock.now_rfc3339();
    let rows = rows
        .iter()
        .map(|row| (row.number, row_event(kind, &header, row, clock, &now)))
        .collect();
    Ok(Plan {
        ignored: header.ignored,
        rows,
    })
}

/// One row's outcome.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RowResult {
    /// The row number a spreadsheet shows (the header is row 1).
    pub row: usize,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Recorded before, by an earlier import of the same row.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The answer to an import.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Report {
    pub kind: String,
    /// Rows whose event is in the outbox: recorded now, or earlier (`duplicates`).
    pub accepted: usize,
    pub duplicates: usize,
    pub rejected: usize,
    /// Header columns that are not fields of this kind; their cells were not read.
    pub ignored_columns: Vec<String>,
    pub rows: Vec<RowResult>,
}

impl Report {
    /// Events recorded by this import.
    pub fn recorded(&self) -> usize {
        self.accepted - self.duplicates
    }
}

/// Why a whole import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file or the request is unusable; nothing was recorded.
    #[error("{0}")]
    File(String),
    /// The file is over a size bound (the message names it); nothing was recorded.
    #[error("{0}")]
    TooLarge(String),
    /// The outbox could not record; nothing was recorded, retry.
    #[error(transparent)]
    Store(#[from] Error),
}

impl From<TableError> for ImportError {
    fn from(e: TableError) -> ImportError {
        match e {
            TableError::TooLarge(m) => ImportError::TooLarge(m),
            TableError::Invalid(m) => ImportError::File(m),
        }
    }
}

/// Imports a file of `kind` (`case`, `rating` or `complaint`): every good row is durable in the
/// outbox when this returns.
pub async fn import(
    outbox: &Outbox,
    clock: &Clock,
    backdating: &crate::config::BackdatingConfig,
    kind: &str,
    bytes: Bytes,
) -> Result<Report, ImportError> {
    let kind = ImportKind::parse(kind).ok_or_else(|| {
        ImportError::File(format!(
            "kind {:?} cannot be imported: use kind=case, kind=rating or kind=complaint",
            kind.chars().take(40).collect::<String>()
        ))
    })?;
    let reader = clock.clone();
    let planned = tokio::task::spawn_blocking(move || plan(kind, &bytes, &reader))
        .await
        .map_err(|e| ImportError::File(format!("the file could not be read: {e}")))??;
    let mut rows = Vec::with_capacity(planned.rows.len());
    let mut keyed = Vec::new();
    for (row, event) in planned.rows {
        match event {
            Ok(k) => {
                keyed.push(k);
                rows.push(RowResult {
                    row,
                    ok: true,
                    seq: None,
                    duplicate: false,
                    error: None,
                });
            }
            Err(e) => rows.push(RowResult {
                row,
                ok: false,
                seq: None,
                duplicate: false,
                error: Some(e),
            }),
        }
    }
    // A row dated long before the file arrived is recorded with its back-dated mark.
    let marked = backdating.mark(keyed.iter_mut().map(|k| &mut k.draft), &clock.now_rfc3339());
    if marked > 0 {
        tracing::warn!(
            kind = kind.as_str(),
            marked,
            "import: back-dated rows recorded with their mark"
        );
    }
    let mut appended = outbox.append_keyed(keyed).await?.into_iter();
    for r in rows.iter_mut().filter(|r| r.ok) {
        match appended.next().flatten() {
            Some(a) => r.seq = Some(a.seq),
            None => r.duplicate = true,
        }
    }
    let accepted = rows.iter().filter(|r| r.ok).count();
    let report = Report {
        kind: kind.as_str().to_owned(),
        accepted,
        duplicates: rows.iter().filter(|r| r.duplicate).count(),
        rejected: rows.len() - accepted,
        ignored_columns: planned.ignored,
        rows,
    };
    tracing::info!(
        kind = kind.as_str(),
        recorded = report.recorded(),
        duplicates = report.duplicates,
        rejected = report.rejected,
        "file imported"
    );
    Ok(report)
}

#[derive(Deserialize)]
pub(super) struct ImportQuery {
    kind: Option<String>,
}

/// `POST /api/v1/import?kind=..`: 201 when rows were recorded, 200 when none were new, 413 for a
/// file over a size bound, 422 for an unusable file, 503 when the outbox could not record.
pub(super) async fn post_import(
    State(state): State<IntakeState>,
    Extension(grant): Extension<Grant>,
    Query(query): Query<ImportQuery>,
    body: Bytes,
) -> Response {
    let kind = query.kind.unwrap_or_default();
    if ImportKind::parse(&kind).is_some() {
        if let Err(refusal) = grant.allows(&kind) {
            return refusal.into_response();
        }
    }
    match import(&state.outbox, &state.clock, &state.backdating, &kind, body).await {
        Ok(report) => {
            let status = if report.recorded() > 0 {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (status, axum::Json(report)).into_response()
        }
        Err(ImportError::File(message)) => {
            intake_api::refuse(StatusCode::UNPROCESSABLE_ENTITY, message)
        }
        Err(ImportError::TooLarge(message)) => {
            intake_api::refuse(StatusCode::PAYLOAD_TOO_LARGE, message)
        }
        Err(ImportError::Store(e)) => intake_api::store_failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::table::tests::xlsx;
    use sunlight_protocol::{DeviceId, SiteId};

    fn clock() -> Clock {
        Clock::new(chrono_tz::Asia::Shanghai)
    }

    const HEADER: &str = "办件编号,事项编码,事项名称,部门,窗口,环节,经办人,办件类型,时限,时限单位,申请人,联系电话,暂停原因,时间,备注";

    fn file(rows: &[&str]) -> Bytes {
        Bytes::from(format!("{HEADER}\n{}\n", rows.join("\n")))
    }

    fn outbox(dir: &tempfile::TempDir) -> Outbox {
        Outbox::open(
            &dir.path().join("o.db"),
            &SiteId::new("suixian-shangshi").unwrap(),
            &DeviceId::new("box-01").unwrap(),
        )
        .unwrap()
    }

    fn stored(outbox: &Outbox) -> Vec<Value> {
        outbox
            .read_from(1, 1000, usize::MAX)
            .unwrap()
            .iter()
            .map(|e| serde_json::from_slice(&e.canonical).unwrap())
            .collect()
    }

    const ACCEPTED: &str = "C-1,MZ-001,老年优待证,民政办,W1,受理,0451,承诺件,5,工作日,张三,13812341234,,2025-11-03 09:00,";
    const PAUSED: &str =
        "C-1,MZ-001,老年优待证,民政办,W1,暂停,0451,承诺件,5,工作日,,,补正材料,2025-11-04 10:30:15,";

    #[test]
    fn office_times_become_rfc3339_in_the_office_zone() {
        let tz = chrono_tz::Asia::Shanghai;
        assert_eq!(
            event_time("2025-11-03 09:00", tz).unwrap(),
            "2025-11-03T09:00:00+08:00"
        );
        assert_eq!(
            event_time("2025/11/03 09:00:05", tz).unwrap(),
            "2025-11-03T09:00:05+08:00"
        );
        assert_eq!(
            event_time("2025-11-03T01:00:00Z", tz).unwrap(),
            "2025-11-03T01:00:00Z"
        );
        let err = event_time("11月3日", tz).unwrap_err();
        assert!(err.contains("Asia/Shanghai"), "{err}");
    }

    #[test]
    fn cells_in_chinese_become_protocol_values() {
        let find = |kind: ImportKind, name: &str| {
            kind.fields()
                .iter()
                .find(|f| f.name == name)
                .expect("a field")
        };
        let case = |name, text| cell_value(find(ImportKind::Case, name), "c", text);
        assert_eq!(case("stage", "不予受理"), Ok(json!("rejected")));
        assert_eq!(case("stage", "Completed"), Ok(json!("completed")));
        assert_eq!(case("limit_unit", "自然日"), Ok(json!("natural")));
        assert_eq!(case("limit_days", "20天"), Ok(json!(20)));
        assert_eq!(case("fee_yuan", "12.5元"), Ok(json!(12.5)));
        assert!(case("fee_yuan", "NaN").is_err());
        assert!(case("extension_days", "-1").is_err());
        let rating = |name, text| cell_value(find(ImportKind::Rating, name), "c", text);
        assert_eq!(rating("level", "基本满意"), Ok(json!(3)));
        assert_eq!(rating("channel", "自助终端"), Ok(json!("kiosk")));
        assert_eq!(
            rating("indicators", "{\"attitude\": 4}"),
            Ok(json!({"attitude": 4}))
        );
        assert!(rating("indicators", "态度好").is_err());
        let about = cell_value(find(ImportKind::Complaint, "about"), "c", "W1窗口");
        assert_eq!(about, Ok(json!("W1窗口")));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rows_become_events_and_bad_rows_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = outbox(&dir);
        let bad_stage = "C-2,MZ-001,老年优待证,民政办,W1,审查,0451,即办件,,,,,,2025-11-03 09:00,";
        let bad_days = "C-3,MZ-001,老年优待证,民政办,W1,受理,0451,承诺件,五,工作日,,,,,";
        let no_reason = "C-1,MZ-001,老年优待证,民政办,W1,暂停,0451,承诺件,5,工作日,,,,,";
        let report = import(
            &outbox,
            &clock(),
            &Default::default(),
            "case",
            file(&[ACCEPTED, bad_stage, PAUSED, bad_days, no_reason]),
        )
        .await
        .unwrap();
        assert_eq!(
            (report.accepted, report.duplicates, report.rejected),
            (2, 0, 3)
        );
        assert_eq!(report.ignored_columns, ["备注"]);
        assert_eq!(report.rows[0].seq, Some(1));
        assert_eq!(report.rows[2].seq, Some(2));
        let errors: Vec<(usize, &str)> = report
            .rows
            .iter()
            .filter_map(|r| Some((r.row, r.error.as_deref()?)))
            .collect();
        assert_eq!(errors.len(), 3);
        assert_eq!(errors[0].0, 3);
        assert!(errors[0].1.contains("unknown variant `审查`"), "{errors:?}");
        assert!(errors[1].1.contains("column 时限: \"五\""), "{errors:?}");
        assert!(errors[2].1.contains("pause_reason"), "{errors:?}");

        let events = stored(&outbox);
        assert_eq!(events[0]["at"], "2025-11-03T09:00:00+08:00");
        let body = &events[0]["body"];
        assert_eq!(body["stage"], "accepted");
        assert_eq!(body["kind"], "promised");
        assert_eq!(body["limit_days"], 5);
        assert_eq!(body["limit_unit"], "working");
        assert_eq!(body["applicant_phone"], "138****1234");
        assert!(body.get("备注").is_none() && body.get("pause_reason").is_none());
        assert_eq!(events[1]["body"]["pause_reason"], "补正材料");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn importing_again_records_nothing_twice() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = outbox(&dir);
        let untimed = "C-9,MZ-001,老年优待证,民政办,W1,受理,0451,即办件,,,,,,,";
        let bytes = file(&[ACCEPTED, PAUSED, untimed, ACCEPTED]);
        let first = import(
            &outbox,
            &clock(),
            &Default::default(),
            "case",
            bytes.clone(),
        )
        .await
        .unwrap();
        assert_eq!((first.recorded(), first.duplicates), (3, 1));
        assert!(first.rows[3].duplicate, "the same row twice in one file");
        let again = import(&outbox, &clock(), &Default::default(), "case", bytes)
            .await
            .unwrap();
        assert_eq!(
            (again.accepted, again.recorded(), again.duplicates),
            (4, 0, 4)
        );
        assert!(again.rows.iter().all(|r| r.duplicate && r.seq.is_none()));
        assert_eq!(outbox.backlog().unwrap().head_seq, 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn whole_file_errors_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = outbox(&dir);
        let cases: [(&str, &[u8], &str); 6] = [
            ("case", b"", "the file is empty"),
            ("case", b"\xEF\xBB\xBF\r\n,,\n", "the file is empty"),
            ("case", HEADER.as_bytes(), "no data rows"),
            (
                "case",
                "办件编号,环节\nC1,受理\n".as_bytes(),
                "item_code (事项编码)",
            ),
            ("punch", b"staff_id\n1\n", "use kind=case"),
            (
                "rating",
                "满意度,level,渠道\n5,5,pad\n".as_bytes(),
                "both give level",
            ),
        ];
        for (kind, bytes, expected) in cases {
            let err = import(
                &outbox,
                &clock(),
                &Default::default(),
                kind,
                Bytes::from_static(bytes),
            )
            .await
            .unwrap_err()
            .to_string();
            assert!(err.contains(expected), "{err} should contain {expected}");
        }
        assert_eq!(outbox.backlog().unwrap().head_seq, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ratings_and_complaints_in_chinese_and_xlsx() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = outbox(&dir);
        let ratings = "办件编号,满意度,评价渠道,差评原因,评价时间\nC-1,非常满意,评价器,,2025-11-03 10:00\nC-2,2,短信,等待时间长、态度差,2025-11-03 11:00\nC-3,7,pad,,\n";
        let report = import(
            &outbox,
            &clock(),
            &Default::default(),
            "rating",
            Bytes::from(ratings),
        )
        .await
        .unwrap();
        assert_eq!((report.accepted, report.rejected), (2, 1), "{report:?}");
        let refused = report.rows[2].error.as_deref().unwrap_or("");
        assert!(refused.contains("out of range"), "{refused}");
        let book = xlsx(&[
            &["投诉编号", "投诉渠道", "投诉对象", "投诉内容", "联系电话"],
            &[
                "T-1",
                "12345",
                "{\"window\": \"W1\"}",
                "态度差",
                "13812341234",
            ],
        ]);
        let report = import(
            &outbox,
            &clock(),
            &Default::default(),
            "complaint",
            Bytes::from(book),
        )
        .await
        .unwrap();
        assert_eq!(report.accepted, 1, "{report:?}");
        let events = stored(&outbox);
        assert_eq!(events[0]["body"]["level"], 5);
        assert_eq!(events[0]["body"]["channel"], "pad");
        assert_eq!(
            events[1]["body"]["reason_codes"],
            json!(["等待时间长", "态度差"])
        );
        assert_eq!(events[2]["body"]["about"], json!({"window": "W1"}));
        assert_eq!(events[2]["body"]["contact"], "138****1234");
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// Rows of anything under a real header: each row is an event or a reason, never a panic.
        #[test]
        fn arbitrary_rows_never_panic(kind in prop_oneof![Just(ImportKind::Case), Just(ImportKind::Rating), Just(ImportKind::Complaint)],
                                      rows in "([^\"]{0,12}[,\n\"]){0,60}") {
            let header: Vec<&str> = kind.fields().iter().map(|f| f.name).chain(["时间"]).collect();
            let text = format!("{}\n{rows}", header.join(","));
            let clock = Clock::new(chrono_tz::Asia::Shanghai);
            if let Ok(planned) = plan(kind, text.as_bytes(), &clock) {
                prop_assert!(planned.rows.iter().all(|(n, _)| *n >= 2));
            }
        }
    }
}
