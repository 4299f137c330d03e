//! Files exported by approval systems, read as a table of text cells: CSV (UTF-8, UTF-8 with BOM,
//! or GBK/GB18030; comma- or tab-separated) or XLSX (its first sheet). The importer maps the cells
//! to event bodies; this module only knows about rows and cells.

use calamine::{DataRef, Reader, Xlsx};

/// Columns read from a file, at most.
pub const MAX_COLUMNS: usize = 200;

/// One non-empty row: its number as a spreadsheet shows it (the header is row 1) and its cells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub number: usize,
    pub cells: Vec<String>,
}

/// Reads a CSV or XLSX file (XLSX is recognised by its ZIP signature). Rows whose cells are all
/// blank are left out. More than `max_rows` rows (the header included) is an error.
pub fn read(bytes: &[u8], max_rows: usize) -> Result<Vec<Row>, String> {
    if bytes.starts_with(b"PK\x03\x04") {
        read_xlsx(bytes, max_rows)
    } else {
        read_csv(&super::decode_text(bytes), max_rows)
    }
}

fn too_many(max_rows: usize) -> String {
    format!(
        "the file has more than {} rows; split it into files of at most that many",
        max_rows.saturating_sub(1)
    )
}

fn too_wide(row: usize) -> String {
    format!("row {row} has more than {MAX_COLUMNS} columns; is this the right file?")
}

/// RFC 4180 CSV: quoted fields may hold separators, quotes (doubled) and line breaks.
pub fn read_csv(text: &str, max_rows: usize) -> Result<Vec<Row>, String> {
    let first_line = text.lines().next().unwrap_or("");
    let sep = if !first_line.contains(',') && first_line.contains('\t') {
        '\t'
    } else {
        ','
    };
    let mut rows = Vec::new();
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut number = 1;
    let mut chars = text.chars().peekable();
    let mut end_row = |cells: &mut Vec<String>, number: &mut usize| -> Result<(), String> {
        let row = std::mem::take(cells);
        if row.iter().any(|c| !c.trim().is_empty()) {
            if rows.len() >= max_rows {
                return Err(too_many(max_rows));
            }
            rows.push(Row {
                number: *number,
                cells: row,
            });
        }
        *number += 1;
        Ok(())
    };
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cell.push(c),
            (false, '"') if cell.trim().is_empty() => {
                cell.clear();
                quoted = true;
            }
            (false, c) if c == sep => {
                cells.push(std::mem::take(&mut cell));
                if cells.len() > MAX_COLUMNS {
                    return Err(too_wide(number));
                }
            }
            (false, '\r') if chars.peek() == Some(&'\n') => {}
            (false, '\n' | '\r') => {
                cells.push(std::mem::take(&mut cell));
                end_row(&mut cells, &mut number)?;
            }
            (false, c) => cell.push(c),
        }
    }
    if !cell.is_empty() || !cells.is_empty() {
        cells.push(cell);
        end_row(&mut cells, &mut number)?;
    }
    Ok(rows)
}

/// The first sheet of an XLSX workbook, read cell by cell (a stray far-away cell costs nothing).
fn read_xlsx(bytes: &[u8], max_rows: usize) -> Result<Vec<Row>, String> {
    let bad = |e: calamine::XlsxError| format!("the file is not a readable XLSX workbook: {e}");
    let mut book = Xlsx::new(std::io::Cursor::new(bytes)).map_err(bad)?;
    let sheet = book
        .sheet_names()
        .into_iter()
        .next()
        .ok_or("the workbook has no sheet")?;
    let mut reader = book.worksheet_cells_reader(&sheet).map_err(bad)?;
    let mut rows: Vec<Row> = Vec::new();
    while let Some(cell) = reader.next_cell().map_err(bad)? {
        let text = cell_text(cell.get_value());
        if text.trim().is_empty() {
            continue;
        }
        let (r, c) = cell.get_position();
        let (number, column) = (r as usize + 1, c as usize);
        if column >= MAX_COLUMNS {
            return Err(too_wide(number));
        }
        if rows.last().is_none_or(|last| last.number != number) {
            if rows.len() >= max_rows {
                return Err(too_many(max_rows));
            }
            rows.push(Row {
                number,
                cells: Vec::new(),
            });
        }
        if let Some(row) = rows.last_mut() {
            if row.cells.len() <= column {
                row.cells.resize(column + 1, String::new());
            }
            row.cells[column] = text;
        }
    }
    rows.sort_by_key(|r| r.number);
    Ok(rows)
}

/// A cell as text: whole numbers without a fraction (a phone number or a day count typed into
/// Excel is a number), dates as `YYYY-MM-DD HH:MM:SS`.
fn cell_text(value: &DataRef<'_>) -> String {
    match value {
        DataRef::Int(i) => i.to_string(),
        DataRef::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{f:.0}"),
        DataRef::Float(f) => f.to_string(),
        DataRef::String(s) | DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => s.clone(),
        DataRef::SharedString(s) => (*s).to_owned(),
        DataRef::Bool(b) => b.to_string(),
        DataRef::DateTime(d) => {
            let (y, mo, da, h, mi, s, _) = d.to_ymd_hms_milli();
            format!("{y:04}-{mo:02}-{da:02} {h:02}:{mi:02}:{s:02}")
        }
        DataRef::Error(e) => e.to_string(),
        DataRef::Empty => String::new(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn cells(rows: &[Row]) -> Vec<(usize, Vec<&str>)> {
        rows.iter()
            .map(|r| (r.number, r.cells.iter().map(String::as_str).collect()))
            .collect()
    }

    #[test]
    fn csv_quotes_line_breaks_and_blank_rows() {
        let text = "a,b,c\r\n1,\"x, \"\"y\"\"\",3\n\n,,\n\"multi\nline\",,\n4,5";
        let rows = read_csv(text, 100).unwrap();
        assert_eq!(
            cells(&rows),
            [
                (1, vec!["a", "b", "c"]),
                (2, vec!["1", "x, \"y\"", "3"]),
                (5, vec!["multi\nline", "", ""]),
                (6, vec!["4", "5"]),
            ]
        );
    }

    #[test]
    fn tabs_separate_when_the_header_has_no_comma() {
        let rows = read_csv("办件编号\t环节\nC1\t受理\n", 100).unwrap();
        assert_eq!(
            cells(&rows),
            [(1, vec!["办件编号", "环节"]), (2, vec!["C1", "受理"])]
        );
    }

    #[test]
    fn gbk_and_bom_are_decoded() {
        let (gbk, _, _) = encoding_rs::GBK.encode("办件编号,环节\nC1,受理\n");
        let rows = read(&gbk, 100).unwrap();
        assert_eq!(rows[1].cells, ["C1", "受理"]);
        let bom = "\u{feff}办件编号,环节\n".as_bytes();
        assert_eq!(read(bom, 100).unwrap()[0].cells[0], "办件编号");
    }

    #[test]
    fn limits_are_errors_that_say_what_to_do() {
        let err = read_csv("a\n1\n2\n3\n", 3).unwrap_err();
        assert!(err.contains("more than 2 rows"), "{err}");
        let err = read_csv(&",".repeat(MAX_COLUMNS + 1), 3).unwrap_err();
        assert!(err.contains("columns"), "{err}");
        let err = read(b"PK\x03\x04garbage", 3).unwrap_err();
        assert!(err.contains("not a readable XLSX"), "{err}");
    }

    /// A minimal XLSX workbook with inline strings and numbers, written for tests.
    pub(crate) fn xlsx(rows: &[&[&str]]) -> Vec<u8> {
        use std::io::Write;
        let mut sheet = String::from(
            r#"<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>"#,
        );
        for (r, row) in rows.iter().enumerate() {
            sheet.push_str(&format!("<row r=\"{}\">", r + 1));
            for (c, value) in row.iter().enumerate() {
                let at = format!("{}{}", (b'A' + c as u8) as char, r + 1);
                if value.parse::<f64>().is_ok() {
                    sheet.push_str(&format!("<c r=\"{at}\"><v>{value}</v></c>"));
                } else {
                    sheet.push_str(&format!(
                        "<c r=\"{at}\" t=\"inlineStr\"><is><t>{value}</t></is></c>"
                    ));
                }
            }
            sheet.push_str("</row>");
        }
        sheet.push_str("</sheetData></worksheet>");
        let files = [
            (
                "[Content_Types].xml",
                r#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>"#.to_owned(),
            ),
            (
                "_rels/.rels",
                r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#.to_owned(),
            ),
            (
                "xl/workbook.xml",
                r#"<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="办件" sheetId="1" r:id="rId1"/></sheets></workbook>"#.to_owned(),
            ),
            (
                "xl/_rels/workbook.xml.rels",
                r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#.to_owned(),
            ),
            ("xl/worksheets/sheet1.xml", sheet),
        ];
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for (name, text) in files {
            zip.start_file(name, options).unwrap();
            zip.write_all(text.as_bytes()).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    #[test]
    fn xlsx_first_sheet_numbers_as_text() {
        let book = xlsx(&[
            &["办件编号", "时限", "联系电话"],
            &["C1", "5", "13812341234"],
        ]);
        let rows = read(&book, 100).unwrap();
        assert_eq!(
            cells(&rows),
            [
                (1, vec!["办件编号", "时限", "联系电话"]),
                (2, vec!["C1", "5", "13812341234"]),
            ]
        );
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any bytes give rows or a reason, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = read(&bytes, 50);
        }

        /// CSV-looking text: every row number increases, no row is blank.
        #[test]
        fn csv_like_text_reads_in_order(text in "([a-z\"\\r\\n,\t 办]{0,8}){0,40}") {
            if let Ok(rows) = read_csv(&text, 1000) {
                prop_assert!(rows.windows(2).all(|w| w[0].number < w[1].number));
                prop_assert!(rows.iter().all(|r| r.cells.iter().any(|c| !c.trim().is_empty())));
            }
        }

        /// A ZIP signature followed by anything is refused, not a panic.
        #[test]
        fn broken_xlsx_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut bytes = b"PK\x03\x04".to_vec();
            bytes.extend(tail);
            let _ = read(&bytes, 50);
        }
    }
}
