//! Files exported by approval systems, read as a table of text cells: CSV (UTF-8, UTF-8 with BOM,
//! or GBK/GB18030; comma- or tab-separated) or XLSX (its first sheet). The importer maps the cells
//! to event bodies; this module only knows about rows and cells.
//!
//! A file is bounded ([`Limits`]) before anything big is allocated: a 3 MB XLSX can unpack to
//! gigabytes (a "zip bomb"), and calamine keeps every shared string in memory. An XLSX's parts are
//! checked by their declared sizes, then counted while inflating (declared sizes can lie), before
//! calamine opens it; rows, cell lengths and the memory the rows take are counted while reading.

use calamine::{DataRef, Reader, Xlsx};
use std::io::Read;

/// Columns read from a file, at most.
pub const MAX_COLUMNS: usize = 200;
/// Parts (files inside the ZIP) of an XLSX workbook, at most; Excel writes a dozen.
pub const MAX_PARTS: usize = 1000;

/// What a file may cost the box. Over a size bound the file is [`TableError::TooLarge`] (HTTP 413),
/// over a shape bound (rows, cell length, columns) [`TableError::Invalid`] (422).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// XLSX: bytes of all its parts once unpacked.
    pub unpacked: u64,
    /// XLSX: bytes of its shared strings part (`xl/sharedStrings.xml`) unpacked; calamine keeps
    /// all of them in memory while the sheet is read.
    pub shared_strings: u64,
    /// Rows kept, the header included.
    pub rows: usize,
    /// Bytes of one cell.
    pub cell: usize,
    /// Bytes the rows take in memory: cell text plus a `String` for every cell slot.
    pub table: usize,
}

impl Limits {
    /// The box's bounds. A 50,000-row export of 20 columns takes about 30 MiB unpacked; a
    /// complaint's text is a few KiB.
    pub const DEFAULT: Limits = Limits {
        unpacked: 128 * 1024 * 1024,
        shared_strings: 32 * 1024 * 1024,
        rows: 50_001,
        cell: 32 * 1024,
        table: 64 * 1024 * 1024,
    };
}

/// Why a file cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// Over a size bound; the message names the bound.
    #[error("{0}")]
    TooLarge(String),
    /// Not a readable table, or over a shape bound; the message says which.
    #[error("{0}")]
    Invalid(String),
}

/// One non-empty row: its number as a spreadsheet shows it (the header is row 1) and its cells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub number: usize,
    pub cells: Vec<String>,
}

/// Reads a CSV or XLSX file (XLSX is recognised by its ZIP signature). Rows whose cells are all
/// blank are left out.
pub fn read(bytes: &[u8], limits: &Limits) -> Result<Vec<Row>, TableError> {
    if bytes.starts_with(b"PK\x03\x04") {
        read_xlsx(bytes, limits)
    } else {
        read_csv(&super::decode_text(bytes), limits)
    }
}

fn too_many(max_rows: usize) -> TableError {
    TableError::Invalid(format!(
        "the file has more than {} rows; split it into files of at most that many",
        max_rows.saturating_sub(1)
    ))
}

fn too_wide(row: usize) -> TableError {
    TableError::Invalid(format!(
        "row {row} has more than {MAX_COLUMNS} columns; is this the right file?"
    ))
}

/// `n` bytes as people read them: `32 MiB`, `32 KiB`, `100 bytes`.
fn size(n: u64) -> String {
    match n {
        n if n >= 1024 * 1024 && n % (1024 * 1024) == 0 => format!("{} MiB", n / (1024 * 1024)),
        n if n >= 1024 && n % 1024 == 0 => format!("{} KiB", n / 1024),
        n => format!("{n} bytes"),
    }
}

/// The memory the rows of a file may still take, charged cell by cell.
struct Budget {
    limits: Limits,
    left: usize,
}

impl Budget {
    fn new(limits: &Limits) -> Budget {
        Budget {
            limits: *limits,
            left: limits.table,
        }
    }

    fn charge(&mut self, bytes: usize) -> Result<(), TableError> {
        match self.left.checked_sub(bytes) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => Err(TableError::TooLarge(format!(
                "the file's cells take more than {} in memory (the import limit); split it into smaller files",
                size(self.limits.table as u64)
            ))),
        }
    }

    /// `slots` more cells, empty.
    fn slots(&mut self, slots: usize) -> Result<(), TableError> {
        self.charge(slots.saturating_mul(std::mem::size_of::<String>()))
    }

    /// One more cell holding `len` bytes.
    fn cell(&mut self, row: usize, column: usize, len: usize) -> Result<(), TableError> {
        check_cell(&self.limits, row, column, len)?;
        self.slots(1)?;
        self.charge(len)
    }
}

/// A cell of `len` bytes at `row` (as a spreadsheet numbers it) and `column` (from 0) is refused
/// when it is longer than the bound.
fn check_cell(limits: &Limits, row: usize, column: usize, len: usize) -> Result<(), TableError> {
    if len > limits.cell {
        return Err(TableError::Invalid(format!(
            "row {row}, column {}: the cell holds more than {} (the import limit for one cell); is this the right file?",
            column + 1,
            size(limits.cell as u64)
        )));
    }
    Ok(())
}

/// RFC 4180 CSV: quoted fields may hold separators, quotes (doubled) and line breaks.
pub fn read_csv(text: &str, limits: &Limits) -> Result<Vec<Row>, TableError> {
    let first_line = text.lines().next().unwrap_or("");
    let sep = if !first_line.contains(',') && first_line.contains('\t') {
        '\t'
    } else {
        ','
    };
    let mut budget = Budget::new(limits);
    let mut rows = Vec::new();
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut number = 1;
    let mut chars = text.chars().peekable();
    let mut end_row = |cells: &mut Vec<String>, number: &mut usize| -> Result<(), TableError> {
        let row = std::mem::take(cells);
        if row.iter().any(|c| !c.trim().is_empty()) {
            if rows.len() >= limits.rows {
                return Err(too_many(limits.rows));
            }
            for (column, c) in row.iter().enumerate() {
                budget.cell(*number, column, c.len())?;
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
        // A cell grows char by char: its bound is checked as it grows, not once it is whole.
        check_cell(limits, number, cells.len(), cell.len())?;
    }
    if !cell.is_empty() || !cells.is_empty() {
        cells.push(cell);
        end_row(&mut cells, &mut number)?;
    }
    Ok(rows)
}

fn not_xlsx(e: impl std::fmt::Display) -> TableError {
    TableError::Invalid(format!("the file is not a readable XLSX workbook: {e}"))
}

fn is_shared_strings(part: &str) -> bool {
    part.to_ascii_lowercase().ends_with("sharedstrings.xml")
}

/// Checks an XLSX's parts against the unpacked bounds before calamine opens it: first by the sizes
/// the ZIP declares (nothing inflated), then by inflating each part into nothing and counting, so a
/// part that declares little and unpacks to gigabytes is stopped one byte past its bound.
pub fn check_unpacked(bytes: &[u8], limits: &Limits) -> Result<(), TableError> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(not_xlsx)?;
    if zip.len() > MAX_PARTS {
        return Err(not_xlsx(format!(
            "it holds {} parts; a workbook has a few dozen (the import limit is {MAX_PARTS})",
            zip.len()
        )));
    }
    let unpacked = |name: &str| {
        TableError::TooLarge(format!(
            "the workbook unpacks to more than {} ({name} and the parts before it); the import limit is {} unpacked: split the export into smaller files",
            size(limits.unpacked),
            size(limits.unpacked)
        ))
    };
    let shared = || {
        TableError::TooLarge(format!(
            "the workbook's shared strings (xl/sharedStrings.xml) unpack to more than {}, the import limit for shared strings: split the export into smaller files or save it as CSV",
            size(limits.shared_strings)
        ))
    };
    let mut declared: u64 = 0;
    for i in 0..zip.len() {
        let part = zip.by_index_raw(i).map_err(not_xlsx)?;
        let name = part.name().map_err(not_xlsx)?;
        if is_shared_strings(&name) && part.size() > limits.shared_strings {
            return Err(shared());
        }
        declared = declared.saturating_add(part.size());
        if declared > limits.unpacked {
            return Err(unpacked(&name));
        }
    }
    let mut counted: u64 = 0;
    for i in 0..zip.len() {
        let part = zip.by_index(i).map_err(not_xlsx)?;
        let name = part.name().map_err(not_xlsx)?.into_owned();
        let declares = part.size();
        let shared_part = is_shared_strings(&name);
        let room = limits.unpacked.saturating_sub(counted);
        let cap = if shared_part {
            room.min(limits.shared_strings)
        } else {
            room
        };
        let lie = || {
            TableError::TooLarge(format!(
                "{name} unpacks to more than the {} it declares (a zip bomb?); the import limit is {} unpacked",
                size(declares),
                size(limits.unpacked)
            ))
        };
        // Read up to the declared size, then one byte more to see whether there is more; the
        // ZIP reader itself refuses to go past the declared size (an error): a lie either way.
        let mut part = part;
        let mut n: u64 = 0;
        let mut buf = [0u8; 16 * 1024];
        loop {
            let want = match declares.saturating_sub(n) {
                0 => 1,
                left => left.min(buf.len() as u64) as usize,
            };
            match part.read(&mut buf[..want]) {
                Ok(0) => break,
                Ok(k) => n += k as u64,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) if n >= declares => return Err(lie()),
                Err(e) => return Err(not_xlsx(e)),
            }
            if n > cap {
                return Err(if shared_part && cap == limits.shared_strings {
                    shared()
                } else {
                    unpacked(&name)
                });
            }
            if n > declares {
                return Err(lie());
            }
        }
        counted += n;
    }
    Ok(())
}

/// The first sheet of an XLSX workbook, read cell by cell (a stray far-away cell costs nothing).
fn read_xlsx(bytes: &[u8], limits: &Limits) -> Result<Vec<Row>, TableError> {
    check_unpacked(bytes, limits)?;
    let mut book = Xlsx::new(std::io::Cursor::new(bytes)).map_err(not_xlsx)?;
    let sheet = book
        .sheet_names()
        .into_iter()
        .next()
        .ok_or_else(|| TableError::Invalid("the workbook has no sheet".into()))?;
    let mut reader = book.worksheet_cells_reader(&sheet).map_err(not_xlsx)?;
    let mut budget = Budget::new(limits);
    let mut rows: Vec<Row> = Vec::new();
    while let Some(cell) = reader.next_cell().map_err(not_xlsx)? {
        let (r, c) = cell.get_position();
        let (number, column) = (r as usize + 1, c as usize);
        // Checked before the text is copied: a shared string is borrowed until then.
        check_cell(limits, number, column, text_len(cell.get_value()))?;
        let text = cell_text(cell.get_value());
        if text.trim().is_empty() {
            continue;
        }
        if column >= MAX_COLUMNS {
            return Err(too_wide(number));
        }
        if rows.last().is_none_or(|last| last.number != number) {
            if rows.len() >= limits.rows {
                return Err(too_many(limits.rows));
            }
            rows.push(Row {
                number,
                cells: Vec::new(),
            });
        }
        if let Some(row) = rows.last_mut() {
            if row.cells.len() <= column {
                budget.slots(column + 1 - row.cells.len())?;
                row.cells.resize(column + 1, String::new());
            }
            budget.charge(text.len())?;
            row.cells[column] = text;
        }
    }
    rows.sort_by_key(|r| r.number);
    Ok(rows)
}

/// The length of a cell's text without making it (numbers and dates are short).
fn text_len(value: &DataRef<'_>) -> usize {
    match value {
        DataRef::String(s) | DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => s.len(),
        DataRef::SharedString(s) => s.len(),
        _ => 0,
    }
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

    /// The box's bounds with at most `rows` rows.
    pub(crate) fn with_rows(rows: usize) -> Limits {
        Limits {
            rows,
            ..Limits::DEFAULT
        }
    }

    fn cells(rows: &[Row]) -> Vec<(usize, Vec<&str>)> {
        rows.iter()
            .map(|r| (r.number, r.cells.iter().map(String::as_str).collect()))
            .collect()
    }

    #[test]
    fn csv_quotes_line_breaks_and_blank_rows() {
        let text = "a,b,c\r\n1,\"x, \"\"y\"\"\",3\n\n,,\n\"multi\nline\",,\n4,5";
        let rows = read_csv(text, &with_rows(100)).unwrap();
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
        let rows = read_csv("办件编号\t环节\nC1\t受理\n", &with_rows(100)).unwrap();
        assert_eq!(
            cells(&rows),
            [(1, vec!["办件编号", "环节"]), (2, vec!["C1", "受理"])]
        );
    }

    #[test]
    fn gbk_and_bom_are_decoded() {
        let (gbk, _, _) = encoding_rs::GBK.encode("办件编号,环节\nC1,受理\n");
        let rows = read(&gbk, &with_rows(100)).unwrap();
        assert_eq!(rows[1].cells, ["C1", "受理"]);
        let bom = "\u{feff}办件编号,环节\n".as_bytes();
        assert_eq!(read(bom, &with_rows(100)).unwrap()[0].cells[0], "办件编号");
    }

    #[test]
    fn limits_are_errors_that_say_what_to_do() {
        let err = read_csv("a\n1\n2\n3\n", &with_rows(3))
            .unwrap_err()
            .to_string();
        assert!(err.contains("more than 2 rows"), "{err}");
        let err = read_csv(&",".repeat(MAX_COLUMNS + 1), &with_rows(3))
            .unwrap_err()
            .to_string();
        assert!(err.contains("columns"), "{err}");
        let err = read(b"PK\x03\x04garbage", &with_rows(3))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a readable XLSX"), "{err}");
    }

    /// A minimal XLSX workbook with inline strings and numbers, written for tests.
    pub(crate) fn xlsx(rows: &[&[&str]]) -> Vec<u8> {
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
        workbook(&sheet, None)
    }

    /// A workbook of one sheet (its XML) and, if given, shared strings (their XML), deflated.
    pub(crate) fn workbook(sheet: &str, shared_strings: Option<&str>) -> Vec<u8> {
        use std::io::Write;
        let mut files = vec![
            (
                "[Content_Types].xml",
                r#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>"#,
            ),
            (
                "_rels/.rels",
                r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#,
            ),
            (
                "xl/workbook.xml",
                r#"<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="办件" sheetId="1" r:id="rId1"/></sheets></workbook>"#,
            ),
            (
                "xl/_rels/workbook.xml.rels",
                r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/><Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/></Relationships>"#,
            ),
        ];
        if let Some(shared) = shared_strings {
            files.push(("xl/sharedStrings.xml", shared));
        }
        files.push(("xl/worksheets/sheet1.xml", sheet));
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, text) in files {
            zip.start_file(name, options).unwrap();
            zip.write_all(text.as_bytes()).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    /// Shared strings XML of `strings`, and a sheet of `rows` rows of `columns` cells citing them
    /// in turn.
    pub(crate) fn shared_parts(
        strings: &[String],
        rows: usize,
        columns: usize,
    ) -> (String, String) {
        let mut shared = String::from(
            r#"<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">"#,
        );
        for s in strings {
            shared.push_str(&format!("<si><t>{s}</t></si>"));
        }
        shared.push_str("</sst>");
        let mut sheet = String::from(
            r#"<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>"#,
        );
        for r in 0..rows {
            sheet.push_str(&format!("<row r=\"{}\">", r + 1));
            for c in 0..columns {
                let at = format!("{}{}", (b'A' + c as u8) as char, r + 1);
                let i = (r * columns + c) % strings.len().max(1);
                sheet.push_str(&format!("<c r=\"{at}\" t=\"s\"><v>{i}</v></c>"));
            }
            sheet.push_str("</row>");
        }
        sheet.push_str("</sheetData></worksheet>");
        (shared, sheet)
    }

    /// Rewrites every part's declared unpacked size (local header and central directory) to
    /// `declared`, as a crafted bomb does.
    pub(crate) fn lie_about_sizes(zip: &mut [u8], declared: u32) {
        let u16_at = |z: &[u8], at: usize| u16::from_le_bytes([z[at], z[at + 1]]) as usize;
        let u32_at =
            |z: &[u8], at: usize| u32::from_le_bytes([z[at], z[at + 1], z[at + 2], z[at + 3]]);
        let end = zip
            .windows(4)
            .rposition(|w| w == b"PK\x05\x06")
            .expect("end of central directory");
        let parts = u16_at(zip, end + 10);
        let mut at = u32_at(zip, end + 16) as usize;
        for _ in 0..parts {
            assert_eq!(&zip[at..at + 4], b"PK\x01\x02");
            let local = u32_at(zip, at + 42) as usize;
            zip[at + 24..at + 28].copy_from_slice(&declared.to_le_bytes());
            zip[local + 22..local + 26].copy_from_slice(&declared.to_le_bytes());
            at += 46 + u16_at(zip, at + 28) + u16_at(zip, at + 30) + u16_at(zip, at + 32);
        }
    }

    fn refusal(result: Result<Vec<Row>, TableError>) -> TableError {
        result.expect_err("the file is over a bound")
    }

    #[test]
    fn shared_strings_over_their_bound_are_refused_by_the_declared_size_and_by_counting() {
        let strings: Vec<String> = (0..100).map(|i| format!("{i:0>300}")).collect();
        let (shared, sheet) = shared_parts(&strings, 3, 2);
        let limits = Limits {
            shared_strings: 16 * 1024,
            ..with_rows(100)
        };
        let honest = workbook(&sheet, Some(&shared));
        let mut liar = honest.clone();
        lie_about_sizes(&mut liar, 10);
        for book in [honest, liar] {
            match refusal(read(&book, &limits)) {
                TableError::TooLarge(m) => assert!(
                    (m.contains("shared strings") && m.contains("16 KiB"))
                        || m.contains("more than the 10 bytes it declares"),
                    "{m}"
                ),
                other => panic!("{other:?}"),
            }
        }
        let roomy = Limits {
            shared_strings: 64 * 1024,
            ..with_rows(100)
        };
        let rows = read(&workbook(&sheet, Some(&shared)), &roomy).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[2].cells[1], strings[5]);
    }

    /// A zip bomb: a sheet of 200 MiB of one byte, deflated to about 200 KiB, its size declared
    /// truly.
    pub(crate) fn bomb() -> Vec<u8> {
        use std::io::Write;
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("xl/worksheets/sheet1.xml", options).unwrap();
        let chunk = vec![b'a'; 1024 * 1024];
        for _ in 0..200 {
            zip.write_all(&chunk).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    #[test]
    fn a_part_that_unpacks_to_more_than_it_declares_is_stopped_at_the_bound() {
        let mut bomb = bomb();
        assert!(bomb.len() < 1024 * 1024, "{} bytes", bomb.len());
        match refusal(read(&bomb, &Limits::DEFAULT)) {
            TableError::TooLarge(m) => assert!(m.contains("more than 128 MiB"), "{m}"),
            other => panic!("{other:?}"),
        }
        lie_about_sizes(&mut bomb, 1024);
        let started = std::time::Instant::now();
        match refusal(read(&bomb, &Limits::DEFAULT)) {
            TableError::TooLarge(m) => assert!(
                m.contains("unpacks to more than the 1 KiB it declares")
                    && m.contains("the import limit is 128 MiB"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn long_cells_and_big_tables_are_refused_naming_the_bound() {
        let limits = Limits {
            cell: 100,
            ..with_rows(1000)
        };
        let err = refusal(read_csv(&format!("a,b\n1,{}\n", "x".repeat(101)), &limits));
        assert_eq!(
            err,
            TableError::Invalid(
                "row 2, column 2: the cell holds more than 100 bytes (the import limit for one cell); is this the right file?".into()
            )
        );
        let (shared, sheet) = shared_parts(&["y".repeat(101)], 1, 1);
        let err = refusal(read(&workbook(&sheet, Some(&shared)), &limits));
        assert!(err.to_string().contains("row 1, column 1"), "{err}");
        // 1,000 rows of 200 cells: 200,000 strings are more than 1 MiB of slots.
        let wide = format!("x{}\n", ",".repeat(MAX_COLUMNS - 1)).repeat(1000);
        let small = Limits {
            table: 1024 * 1024,
            ..with_rows(1000)
        };
        match refusal(read_csv(&wide, &small)) {
            TableError::TooLarge(m) => assert!(m.contains("more than 1 MiB in memory"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn xlsx_first_sheet_numbers_as_text() {
        let book = xlsx(&[
            &["办件编号", "时限", "联系电话"],
            &["C1", "5", "13812341234"],
        ]);
        let rows = read(&book, &with_rows(100)).unwrap();
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
    use super::tests::{lie_about_sizes, shared_parts, with_rows, workbook};
    use super::*;
    use proptest::prelude::*;

    /// The bounds a file over them must be refused with: each one's size as the message writes it.
    fn named(message: &str, violated: &[(bool, u64)]) -> bool {
        violated
            .iter()
            .any(|(over, limit)| *over && message.contains(&size(*limit)))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any bytes give rows or a reason, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = read(&bytes, &with_rows(50));
        }

        /// CSV-looking text: every row number increases, no row is blank.
        #[test]
        fn csv_like_text_reads_in_order(text in "([a-z\"\\r\\n,\t 办]{0,8}){0,40}") {
            if let Ok(rows) = read_csv(&text, &with_rows(1000)) {
                prop_assert!(rows.windows(2).all(|w| w[0].number < w[1].number));
                prop_assert!(rows.iter().all(|r| r.cells.iter().any(|c| !c.trim().is_empty())));
            }
        }

        /// Any workbook against any bounds, its sizes declared truly or not: read only when its
        /// parts fit; refused over a bound, with that bound named.
        #[test]
        fn xlsx_bounds_hold_whatever_the_zip_declares(
            string_len in 1usize..2000,
            strings in 1usize..40,
            sheet_rows in 1usize..40,
            columns in 1usize..6,
            shared_limit in 1u64..120_000,
            unpacked_limit in 1u64..400_000,
            cell_limit in 1usize..2500,
            declared in prop_oneof![Just(None), Just(Some(0u32)), Just(Some(1u32)), any::<u32>().prop_map(Some)],
        ) {
            let texts: Vec<String> = (0..strings)
                .map(|i| char::from(b'a' + (i % 26) as u8).to_string().repeat(string_len))
                .collect();
            let (shared, sheet) = shared_parts(&texts, sheet_rows, columns);
            let mut book = workbook(&sheet, Some(&shared));
            let sizes: Vec<u64> = {
                let mut zip = zip::ZipArchive::new(std::io::Cursor::new(&book)).unwrap();
                (0..zip.len()).map(|i| zip.by_index(i).unwrap().size()).collect()
            };
            let unpacked: u64 = sizes.iter().sum();
            // A part that declares more than it holds is refused by what it declares; one that
            // holds more than it declares, for the lie.
            let (declared_shared, declared_total, lied) = match declared {
                Some(d) => {
                    lie_about_sizes(&mut book, d);
                    let d = u64::from(d);
                    (d, sizes.len() as u64 * d, sizes.iter().any(|s| *s > d))
                }
                None => (0, 0, false),
            };
            let limits = Limits {
                unpacked: unpacked_limit,
                shared_strings: shared_limit,
                rows: 100,
                cell: cell_limit,
                table: usize::MAX,
            };
            let over_shared = (shared.len() as u64).max(declared_shared) > shared_limit;
            let over_unpacked = unpacked.max(declared_total) > unpacked_limit;
            let over_cell = string_len > cell_limit;
            match read(&book, &limits) {
                Ok(rows) => {
                    prop_assert!(!over_shared && !over_unpacked && !over_cell && !lied);
                    prop_assert_eq!(rows.len(), sheet_rows);
                }
                Err(TableError::TooLarge(m)) => prop_assert!(
                    named(&m, &[(over_shared, shared_limit), (over_unpacked, unpacked_limit)])
                        || (lied && m.contains("it declares")),
                    "{}", m
                ),
                Err(TableError::Invalid(m)) => {
                    prop_assert!(!over_shared && !over_unpacked && !lied, "{}", m);
                    prop_assert!(over_cell && m.contains(&size(cell_limit as u64)), "{}", m);
                }
            }
        }

        /// Any CSV table against any bounds: read only within them, refused naming the bound.
        #[test]
        fn csv_bounds_hold(
            cell_len in 0usize..300,
            csv_rows in 1usize..80,
            columns in 1usize..30,
            row_limit in 1usize..100,
            cell_limit in 1usize..400,
            table_limit in 1usize..200_000,
        ) {
            let line = vec!["c".repeat(cell_len.max(1)); columns].join(",");
            let text = format!("{line}\n").repeat(csv_rows);
            let limits = Limits { rows: row_limit, cell: cell_limit, table: table_limit, ..Limits::DEFAULT };
            let kept_rows = csv_rows.min(row_limit);
            let cost = kept_rows * columns * (cell_len.max(1) + std::mem::size_of::<String>());
            let over_rows = csv_rows > row_limit;
            let over_cell = cell_len.max(1) > cell_limit;
            let over_table = cost > table_limit;
            match read_csv(&text, &limits) {
                Ok(rows) => {
                    prop_assert!(!over_rows && !over_cell && !over_table);
                    prop_assert_eq!(rows.len(), csv_rows);
                }
                Err(TableError::TooLarge(m)) => {
                    prop_assert!(named(&m, &[(over_table, table_limit as u64)]), "{}", m)
                }
                Err(TableError::Invalid(m)) => prop_assert!(
                    (over_cell && m.contains(&size(cell_limit as u64)))
                        || (over_rows && m.contains(&format!("more than {} rows", row_limit - 1))),
                    "{}", m
                ),
            }
        }

        /// A ZIP signature followed by anything is refused, not a panic.
        #[test]
        fn broken_xlsx_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut bytes = b"PK\x03\x04".to_vec();
            bytes.extend(tail);
            let _ = read(&bytes, &with_rows(50));
        }
    }
}
