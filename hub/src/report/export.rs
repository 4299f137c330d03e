//! The report as files: XLSX (rust_xlsxwriter, decision 0008) with a sheet per part and a chart of
//! volumes by unit, and CSV (the table by unit, UTF-8 with a byte-order mark so that Excel on a
//! Chinese Windows reads it as UTF-8, CRLF line ends, RFC 4180 quoting).

use super::{Candidate, Report, UnitRow};
use crate::dashboard::html::Lang;
use rust_xlsxwriter::{Chart, ChartType, Format, Workbook, Worksheet, XlsxError};

/// A cell of the table by unit.
pub enum Cell {
    Text(String),
    Int(i64),
    /// A rate in 0..=1, none without a base.
    Rate(Option<f64>),
}

type Getter = fn(&UnitRow) -> Cell;

/// The columns of the table by unit: (zh, en, value).
pub const COLUMNS: &[(&str, &str, Getter)] = &[
    ("乡镇", "Site", |u| Cell::Text(u.site.clone())),
    ("单位", "Unit", |u| Cell::Text(u.unit.clone())),
    ("受理", "Accepted", |u| Cell::Int(u.accepted)),
    ("受理·即办件", "Accepted immediate", |u| {
        Cell::Int(u.accepted_immediate)
    }),
    ("受理·承诺件", "Accepted promised", |u| {
        Cell::Int(u.accepted_promised)
    }),
    ("办结", "Completed", |u| Cell::Int(u.completed)),
    ("办结·即办件", "Completed immediate", |u| {
        Cell::Int(u.completed_immediate)
    }),
    ("办结·承诺件", "Completed promised", |u| {
        Cell::Int(u.completed_promised)
    }),
    ("按时办结", "On time", |u| Cell::Int(u.on_time)),
    ("提前办结", "Early", |u| Cell::Int(u.early)),
    ("按时办结率", "On-time rate", |u| {
        Cell::Rate(u.on_time_rate)
    }),
    ("提前办结率", "Early rate", |u| {
        Cell::Rate(u.early_rate)
    }),
    ("黄灯", "Yellow lights", |u| Cell::Int(u.yellow_lights)),
    ("红灯", "Red lights", |u| Cell::Int(u.red_lights)),
    ("黄牌", "Yellow cards", |u| Cell::Int(u.yellow_cards)),
    ("红牌", "Red cards", |u| Cell::Int(u.red_cards)),
    ("监察建议书", "Supervision letters", |u| {
        Cell::Int(u.letters)
    }),
    ("人数", "Staff", |u| Cell::Int(u.staff)),
    ("正常时段", "Segments on time", |u| {
        Cell::Int(u.segments_on_time)
    }),
    ("迟到", "Late", |u| Cell::Int(u.late)),
    ("早退", "Left early", |u| Cell::Int(u.left_early)),
    ("旷工（半天）", "Absent (half days)", |u| {
        Cell::Int(u.absent)
    }),
    ("请假时段", "Leave segments", |u| {
        Cell::Int(u.on_leave_segments)
    }),
    ("补卡", "Make-up punches", |u| Cell::Int(u.makeups)),
    ("空岗时段", "Vacant segments", |u| {
        Cell::Int(u.vacant_segments)
    }),
    ("B角替岗", "B-role substitutions", |u| {
        Cell::Int(u.substitutions)
    }),
    ("违纪", "Violations", |u| Cell::Int(u.violations)),
    ("巡查签到", "Patrol sign-ins", |u| Cell::Int(u.patrols)),
    ("评价", "Ratings", |u| Cell::Int(u.ratings)),
    ("基本满意及以上", "Satisfied", |u| {
        Cell::Int(u.satisfied)
    }),
    ("不满意及以下", "Dissatisfied", |u| {
        Cell::Int(u.bad_ratings)
    }),
    ("满意率", "Satisfaction rate", |u| {
        Cell::Rate(u.satisfaction_rate)
    }),
    ("整改工单", "Work orders", |u| Cell::Int(u.work_orders)),
    ("按期回访", "Called back on time", |u| {
        Cell::Int(u.called_back_on_time)
    }),
    ("按期整改", "Fixed on time", |u| {
        Cell::Int(u.fixed_on_time)
    }),
    ("投诉", "Complaints", |u| Cell::Int(u.complaints)),
    ("投诉属实", "Complaints upheld", |u| {
        Cell::Int(u.complaints_upheld)
    }),
];

/// The report's title: 随县… style, e.g. "2025-10 窗口工作情况通报（suixian-shangshi）".
pub fn title(r: &Report, l: Lang) -> String {
    let whose = match (&r.scope.site, &r.scope.unit) {
        (Some(s), Some(u)) => format!("{s} {u}"),
        (Some(s), None) => s.clone(),
        _ => l.t("全县", "county").to_owned(),
    };
    match (l, r.period.kind) {
        (Lang::Zh, "week") => format!("{} 窗口工作周报（{whose}）", r.period.label),
        (Lang::Zh, _) => format!("{} 窗口工作情况通报（{whose}）", r.period.label),
        (Lang::En, "week") => format!("Window work weekly summary {} ({whose})", r.period.label),
        (Lang::En, _) => format!("Window work report {} ({whose})", r.period.label),
    }
}

/// A CSV cell, quoted when needed. A text that a spreadsheet would run as a formula (starting with
/// `=`, `+`, `-`, `@`, a tab or a carriage return, and not a plain number) is prefixed with `'`,
/// so a unit or item name typed by anyone cannot become a formula on a supervisor's PC.
fn csv_field(s: &str) -> String {
    let formula = s.starts_with(['=', '+', '-', '@', '\t', '\r'])
        && s.trim_end_matches('%').parse::<f64>().is_err();
    let s = if formula {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn rate_text(r: Option<f64>) -> String {
    r.map(|r| format!("{:.2}%", r * 100.0)).unwrap_or_default()
}

/// The table by unit, then the total, as CSV (UTF-8 with BOM).
pub fn csv(r: &Report, l: Lang) -> Vec<u8> {
    let mut out = String::from("\u{feff}");
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .map(|c| csv_field(c))
            .collect::<Vec<_>>()
            .join(",")
            + "\r\n"
    };
    out.push_str(&line(vec![title(r, l)]));
    out.push_str(&line(vec![
        l.t("期间", "Period").to_owned(),
        format!("{} – {}", r.period.from, r.period.to),
    ]));
    out.push_str(&line(
        COLUMNS
            .iter()
            .map(|(zh, en, _)| l.t(zh, en).to_owned())
            .collect(),
    ));
    let cells = |u: &UnitRow| {
        COLUMNS
            .iter()
            .map(|(_, _, get)| match get(u) {
                Cell::Text(t) => t,
                Cell::Int(i) => i.to_string(),
                Cell::Rate(x) => rate_text(x),
            })
            .collect::<Vec<_>>()
    };
    for u in &r.units {
        out.push_str(&line(cells(u)));
    }
    let mut total = cells(&r.total);
    total[0] = l.t("合计", "Total").to_owned();
    total[1] = String::new();
    out.push_str(&line(total));
    out.into_bytes()
}

fn write_cell(
    ws: &mut Worksheet,
    row: u32,
    col: u16,
    cell: Cell,
    pct: &Format,
) -> Result<(), XlsxError> {
    match cell {
        Cell::Text(t) => ws.write_string(row, col, t).map(|_| ()),
        Cell::Int(i) => ws.write_number(row, col, i as f64).map(|_| ()),
        Cell::Rate(Some(x)) => ws.write_number_with_format(row, col, x, pct).map(|_| ()),
        Cell::Rate(None) => Ok(()),
    }
}

fn candidates(
    ws: &mut Worksheet,
    row: &mut u32,
    l: Lang,
    heading: &str,
    list: &[Candidate],
    bold: &Format,
    pct: &Format,
) -> Result<(), XlsxError> {
    ws.write_string_with_format(*row, 0, heading, bold)?;
    *row += 1;
    let head = [
        l.t("乡镇", "Site"),
        l.t("单位", "Unit"),
        l.t("工号", "Staff no."),
        l.t("姓名", "Name"),
        l.t("效率（按时办结率）", "Efficiency (on-time rate)"),
        l.t("纪律（正常时段率）", "Discipline (segments on time)"),
        l.t("评价（满意率）", "Ratings (satisfaction)"),
        l.t("得分（满分 80）", "Score (of 80)"),
        l.t("取消资格原因", "Disqualified by"),
    ];
    for (i, h) in head.iter().enumerate() {
        ws.write_string_with_format(*row, i as u16, *h, bold)?;
    }
    *row += 1;
    for c in list {
        ws.write_string(*row, 0, &c.site)?;
        ws.write_string(*row, 1, &c.unit)?;
        ws.write_string(*row, 2, c.staff_id.as_deref().unwrap_or(""))?;
        ws.write_string(*row, 3, c.name.as_deref().unwrap_or(""))?;
        write_cell(ws, *row, 4, Cell::Rate(c.efficiency), pct)?;
        write_cell(ws, *row, 5, Cell::Rate(c.discipline), pct)?;
        write_cell(ws, *row, 6, Cell::Rate(c.ratings), pct)?;
        ws.write_number(*row, 7, c.score)?;
        ws.write_string(*row, 8, disqualifications(c, l))?;
        *row += 1;
    }
    *row += 1;
    Ok(())
}

/// The reasons a candidate is disqualified, in words.
pub fn disqualifications(c: &Candidate, l: Lang) -> String {
    c.disqualified
        .iter()
        .map(|d| match *d {
            "upheld_complaint" => l.t("投诉属实", "upheld complaint"),
            "card" => l.t("黄牌/红牌", "yellow/red card"),
            "bad_rating" => l.t("不满意评价", "dissatisfied rating"),
            other => other,
        })
        .collect::<Vec<_>>()
        .join(l.t("、", ", "))
}

/// The summary figures as (label, value) pairs: the first sheet, the page's key figures.
pub fn summary(r: &Report, l: Lang) -> Vec<(&'static str, String)> {
    let t = &r.total;
    let a = &r.attendance;
    vec![
        (l.t("受理", "Accepted"), t.accepted.to_string()),
        (l.t("办结", "Completed"), t.completed.to_string()),
        (
            l.t("其中即办件", "of which immediate"),
            t.completed_immediate.to_string(),
        ),
        (
            l.t("其中承诺件", "of which promised"),
            t.completed_promised.to_string(),
        ),
        (l.t("按时办结率", "On-time rate"), rate_text(t.on_time_rate)),
        (l.t("提前办结率", "Early rate"), rate_text(t.early_rate)),
        (l.t("黄灯", "Yellow lights"), t.yellow_lights.to_string()),
        (l.t("红灯", "Red lights"), t.red_lights.to_string()),
        (l.t("黄牌", "Yellow cards"), t.yellow_cards.to_string()),
        (l.t("红牌", "Red cards"), t.red_cards.to_string()),
        (
            l.t("监察建议书", "Supervision letters"),
            t.letters.to_string(),
        ),
        (
            l.t("请假人次", "Leave (person-times)"),
            a.leave_person_times.to_string(),
        ),
        (l.t("请假天数", "Leave (days)"), format!("{}", a.leave_days)),
        (
            l.t("外出办事登记", "Out-of-office registrations"),
            a.out_of_office.to_string(),
        ),
        (l.t("迟到", "Late"), a.late.to_string()),
        (l.t("早退", "Left early"), a.left_early.to_string()),
        (
            l.t("旷工（半天）", "Absent (half days)"),
            a.absent.to_string(),
        ),
        (
            l.t("空岗时段", "Vacant segments"),
            a.vacant_segments.to_string(),
        ),
        (
            l.t("B角替岗", "B-role substitutions"),
            a.substitutions.to_string(),
        ),
        (
            l.t("补卡（已批准）", "Make-up punches (approved)"),
            a.makeups.to_string(),
        ),
        (
            l.t("补卡待审批", "Make-up requests pending"),
            a.makeups_pending.to_string(),
        ),
        (l.t("巡查签到", "Patrol sign-ins"), t.patrols.to_string()),
        (l.t("评价", "Ratings"), t.ratings.to_string()),
        (
            l.t("满意率", "Satisfaction rate"),
            rate_text(t.satisfaction_rate),
        ),
        (
            l.t("不满意及以下", "Dissatisfied or worse"),
            t.bad_ratings.to_string(),
        ),
        (l.t("整改工单", "Work orders"), t.work_orders.to_string()),
        (
            l.t("按期整改", "Fixed on time"),
            t.fixed_on_time.to_string(),
        ),
        (l.t("投诉", "Complaints"), r.complaints.received.to_string()),
        (l.t("投诉属实", "Upheld"), r.complaints.upheld.to_string()),
        (
            l.t("投诉办理中", "Complaints open"),
            r.complaints.open.to_string(),
        ),
    ]
}

/// The whole report as an XLSX workbook.
pub fn xlsx(r: &Report, l: Lang) -> Result<Vec<u8>, XlsxError> {
    let mut wb = Workbook::new();
    let bold = Format::new().set_bold();
    let big = Format::new().set_bold().set_font_size(14);
    let pct = Format::new().set_num_format("0.00%");

    // 概况 Summary
    let ws = wb.add_worksheet();
    ws.set_name(l.t("概况", "Summary"))?;
    ws.set_column_width(0, 28)?;
    ws.set_column_width(1, 18)?;
    ws.write_string_with_format(0, 0, title(r, l), &big)?;
    ws.write_string(
        1,
        0,
        format!(
            "{} {} – {}",
            l.t("期间", "Period"),
            r.period.from,
            r.period.to
        ),
    )?;
    let mut row = 3;
    for (label, value) in summary(r, l) {
        ws.write_string(row, 0, label)?;
        match value.parse::<f64>() {
            Ok(v) if !value.ends_with('%') => ws.write_number(row, 1, v)?,
            _ => ws.write_string(row, 1, value)?,
        };
        row += 1;
    }
    row += 1;
    ws.write_string_with_format(
        row,
        0,
        l.t("受理前五名单位", "Top units by cases accepted"),
        &bold,
    )?;
    row += 1;
    for u in &r.top_units {
        ws.write_string(row, 0, format!("{} {}", u.site, u.unit))?;
        ws.write_number(row, 1, u.count as f64)?;
        row += 1;
    }
    row += 1;
    ws.write_string_with_format(
        row,
        0,
        l.t("未发生受理办件的单位", "Units without cases"),
        &bold,
    )?;
    row += 1;
    for u in &r.zero_case_units {
        ws.write_string(row, 0, format!("{} {}", u.site, u.unit))?;
        row += 1;
    }
    row += 1;
    ws.write_string_with_format(
        row,
        0,
        l.t("未巡查签到的单位", "Units without a patrol sign-in"),
        &bold,
    )?;
    row += 1;
    for u in &r.units_without_patrol {
        ws.write_string(row, 0, format!("{} {}", u.site, u.unit))?;
        row += 1;
    }
    row += 1;
    ws.write_string_with_format(row, 0, l.t("请假类别", "Leave by type"), &bold)?;
    ws.write_string_with_format(row, 1, l.t("人次", "Person-times"), &bold)?;
    ws.write_string_with_format(row, 2, l.t("天数", "Days"), &bold)?;
    row += 1;
    for k in &r.attendance.leave {
        ws.write_string(row, 0, &k.leave_type)?;
        ws.write_number(row, 1, k.person_times as f64)?;
        ws.write_number(row, 2, k.days)?;
        row += 1;
    }

    // 按单位 By unit, with a chart of volumes.
    let sheet = l.t("按单位", "By unit");
    let ws = wb.add_worksheet();
    ws.set_name(sheet)?;
    for (i, (zh, en, _)) in COLUMNS.iter().enumerate() {
        ws.write_string_with_format(0, i as u16, l.t(zh, en), &bold)?;
    }
    ws.set_column_width(0, 20)?;
    ws.set_column_width(1, 14)?;
    let mut row = 1u32;
    for u in &r.units {
        for (i, (_, _, get)) in COLUMNS.iter().enumerate() {
            write_cell(ws, row, i as u16, get(u), &pct)?;
        }
        row += 1;
    }
    let units_end = row - 1;
    for (i, (_, _, get)) in COLUMNS.iter().enumerate() {
        let cell = match i {
            0 => Cell::Text(l.t("合计", "Total").to_owned()),
            1 => Cell::Text(String::new()),
            _ => get(&r.total),
        };
        write_cell(ws, row, i as u16, cell, &pct)?;
    }
    if !r.units.is_empty() {
        let mut chart = Chart::new(ChartType::Column);
        chart
            .add_series()
            .set_name(l.t("受理", "Accepted"))
            .set_categories((sheet, 1, 1, units_end, 1))
            .set_values((sheet, 1, 2, units_end, 2));
        chart
            .add_series()
            .set_name(l.t("办结", "Completed"))
            .set_categories((sheet, 1, 1, units_end, 1))
            .set_values((sheet, 1, 5, units_end, 5));
        chart.title().set_name(l.t("各单位办件量", "Cases by unit"));
        ws.insert_chart(row + 2, 1, &chart)?;
    }

    // 趋势 Trend
    let ws = wb.add_worksheet();
    ws.set_name(l.t("时限趋势", "On-time trend"))?;
    let head = [
        l.t("期间", "Period"),
        l.t("办结", "Completed"),
        l.t("按时办结", "On time"),
        l.t("提前办结", "Early"),
        l.t("按时办结率", "On-time rate"),
        l.t("提前办结率", "Early rate"),
    ];
    for (i, h) in head.iter().enumerate() {
        ws.write_string_with_format(0, i as u16, *h, &bold)?;
    }
    for (i, p) in r.trend.iter().enumerate() {
        let row = i as u32 + 1;
        ws.write_string(row, 0, &p.label)?;
        ws.write_number(row, 1, p.completed as f64)?;
        ws.write_number(row, 2, p.on_time as f64)?;
        ws.write_number(row, 3, p.early as f64)?;
        write_cell(ws, row, 4, Cell::Rate(p.on_time_rate), &pct)?;
        write_cell(ws, row, 5, Cell::Rate(p.early_rate), &pct)?;
    }

    // 量化评比 Awards
    let ws = wb.add_worksheet();
    ws.set_name(l.t("量化评比", "Awards"))?;
    let mut row = 0u32;
    candidates(
        ws,
        &mut row,
        l,
        l.t("红旗窗口", "Red-flag windows"),
        &r.awards.red_flag_units,
        &bold,
        &pct,
    )?;
    candidates(
        ws,
        &mut row,
        l,
        l.t("服务标兵", "Service models"),
        &r.awards.service_models,
        &bold,
        &pct,
    )?;
    candidates(
        ws,
        &mut row,
        l,
        l.t("各单位得分", "Every unit's score"),
        &r.awards.units_ranked,
        &bold,
        &pct,
    )?;

    // 存在问题 Problems, and what the store does not hold.
    let ws = wb.add_worksheet();
    ws.set_name(l.t("存在问题", "Problems"))?;
    ws.set_column_width(0, 120)?;
    let mut row = 0u32;
    ws.write_string_with_format(row, 0, l.t("存在问题", "Problems found"), &bold)?;
    row += 1;
    for (i, p) in r.problems.iter().enumerate() {
        let text = if l == Lang::Zh { &p.zh } else { &p.en };
        ws.write_string(row, 0, format!("{}. {text}", i + 1))?;
        row += 1;
    }
    row += 1;
    ws.write_string_with_format(row, 0, l.t("本报告未含的数据", "Not in this report"), &bold)?;
    row += 1;
    for m in &r.missing {
        ws.write_string(row, 0, l.t(m.zh, m.en))?;
        row += 1;
    }
    if let Some(year) = r.provisional_year {
        row += 1;
        let zh = crate::oversight::calendar::provisional_note_zh(year);
        let text = match l {
            Lang::Zh => format!("※ {zh}"),
            Lang::En => format!(
                "※ {zh} ({})",
                crate::oversight::calendar::provisional_note_en(year)
            ),
        };
        ws.write_string(row, 0, text)?;
    }
    wb.save_to_buffer()
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_cells_never_become_formulas() {
        assert_eq!(
            csv_field("=HYPERLINK(\"http://x\",\"y\")"),
            "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\""
        );
        assert_eq!(csv_field("+86 1380000"), "'+86 1380000");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_field("-2+3"), "'-2+3");
        assert_eq!(csv_field("\tx"), "'\tx");
        // Numbers stay numbers; ordinary text is untouched.
        assert_eq!(csv_field("-3"), "-3");
        assert_eq!(csv_field("-12.50%"), "-12.50%");
        assert_eq!(csv_field("尚市镇 便民服务中心"), "尚市镇 便民服务中心");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
    }
}
