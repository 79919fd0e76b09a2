//! Reading a spreadsheet file into a table of cells: CSV (RFC 4180; UTF-8 with or without a
//! BOM, UTF-16 with a BOM, or GB18030 as Chinese spreadsheets write it; comma, semicolon or
//! tab) and Excel `.xlsx` (through `calamine`).
//!
//! Invariants:
//! - A malformed file is a [`FileError`] naming its line (or sheet cell), never a panic and
//!   never a partial table: an import reads the whole file before it writes anything.
//! - Every row keeps the line (CSV, where its record starts) or the sheet row (xlsx) it came
//!   from, 1-based, so that a report names what the user sees in their editor.
//! - The header is the first row, among the first ten, that names a known column; rows above
//!   it (a title, a merged banner) are skipped. An `.xlsx` header cell merged across several
//!   columns names each of them.

use std::collections::BTreeMap;
use std::io::Cursor;

use calamine::{DataRef, Reader, Xlsx};

/// Most bytes an import file may have (32 MiB).
pub const MAX_FILE_BYTES: usize = 32 * 1024 * 1024;
/// Most data rows one import may have.
pub const MAX_ROWS: usize = 200_000;
/// Most columns a file may have.
pub const MAX_COLUMNS: usize = 200;

/// The file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, async_graphql::Enum)]
#[graphql(name = "FileFormat")]
pub enum Format {
    /// Comma-separated values (RFC 4180).
    Csv,
    /// Office Open XML workbook (`.xlsx`), first sheet.
    Xlsx,
}

impl Format {
    /// `csv` or `xlsx`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Xlsx => "xlsx",
        }
    }

    /// The format a file's first bytes show: a ZIP archive is `.xlsx`, anything else CSV.
    #[must_use]
    pub fn sniff(bytes: &[u8]) -> Format {
        if bytes.starts_with(b"PK\x03\x04") {
            Format::Xlsx
        } else {
            Format::Csv
        }
    }

    /// The format of a file named `file_name` whose format was not given: its bytes'
    /// ([`Format::sniff`]), except that a file named as a workbook (`.xlsx`, `.xlsm`, `.xls`)
    /// whose bytes are not one is refused rather than read as text.
    ///
    /// # Errors
    /// [`FileError::Xlsx`] for such a file.
    pub fn of(file_name: &str, bytes: &[u8]) -> Result<Format, FileError> {
        let lower = file_name.to_lowercase();
        let named_workbook = [".xlsx", ".xlsm", ".xls"].iter().any(|ext| lower.ends_with(ext));
        match Format::sniff(bytes) {
            Format::Csv if named_workbook => Err(FileError::Xlsx(format!(
                "{file_name} is named as a workbook, but it is not an .xlsx file (a ZIP archive); save it as \
                 .xlsx, or give the format CSV to read it as text"
            ))),
            format => Ok(format),
        }
    }
}

/// The text encoding of a CSV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, async_graphql::Enum)]
pub enum TextEncoding {
    /// A BOM if there is one, else UTF-8 if the bytes are valid UTF-8, else GB18030.
    #[default]
    Auto,
    /// UTF-8 (a BOM is skipped).
    Utf8,
    /// GB18030 (a superset of GBK and GB2312).
    Gb18030,
}

/// Why a file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error("the file has {bytes} bytes; at most {limit} are accepted")]
    TooLarge {
        /// Its size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// More data rows than [`MAX_ROWS`].
    #[error("the file has more than {limit} rows; split it")]
    TooManyRows {
        /// The limit.
        limit: usize,
    },
    /// More columns than [`MAX_COLUMNS`].
    #[error("line {line}: {columns} columns; at most {limit} are accepted")]
    TooManyColumns {
        /// The line.
        line: u64,
        /// Its columns.
        columns: usize,
        /// The limit.
        limit: usize,
    },
    /// The bytes are not text in the encoding given (or in any the detection knows).
    #[error("line {line}: {reason}")]
    Encoding {
        /// The line of the first bad byte.
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// A quoted CSV field is never closed.
    #[error("line {line}: a quoted field starts here and is never closed (unbalanced quotes)")]
    UnclosedQuote {
        /// The line where the quote opens.
        line: u64,
    },
    /// The CSV parser refused a record.
    #[error("line {line}: {reason}")]
    Csv {
        /// The line.
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// The `.xlsx` could not be read.
    #[error("the .xlsx file cannot be read: {0}")]
    Xlsx(String),
    /// The file has no rows at all.
    #[error("the file holds no rows")]
    Empty,
    /// The file has a header and nothing under it.
    #[error("the file holds a header (line {header_line}) and no rows under it")]
    NoRows {
        /// The header's line.
        header_line: u64,
    },
}

/// One cell as the file typed it.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Nothing.
    Empty,
    /// Text (every CSV cell).
    Text(String),
    /// A number (xlsx).
    Number(f64),
    /// A date and time without zone (xlsx date-formatted cells): y, m, d, h, min, s.
    DateTime(i32, u8, u8, u8, u8, u8),
}

impl Cell {
    /// Whether the cell holds nothing but white space.
    #[must_use]
    pub fn is_blank(&self) -> bool {
        match self {
            Cell::Empty => true,
            Cell::Text(t) => t.trim().is_empty(),
            Cell::Number(_) | Cell::DateTime(..) => false,
        }
    }

    /// The cell as text (numbers in their shortest exact form).
    #[must_use]
    pub fn text(&self) -> String {
        match self {
            Cell::Empty => String::new(),
            Cell::Text(t) => t.clone(),
            Cell::Number(n) => n.to_string(),
            Cell::DateTime(y, m, d, h, min, s) => {
                if (*h, *min, *s) == (0, 0, 0) {
                    format!("{y:04}-{m:02}-{d:02}")
                } else {
                    format!("{y:04}-{m:02}-{d:02} {h:02}:{min:02}:{s:02}")
                }
            }
        }
    }
}

/// A data row and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// 1-based line (CSV: where the record starts) or sheet row (xlsx).
    pub line: u64,
    /// Its cells, as many as the header has (missing ones empty).
    pub cells: Vec<Cell>,
    /// Cells beyond the header's width that are not blank.
    pub extra: usize,
}

/// A file read whole.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// The header's cells, trimmed.
    pub headers: Vec<String>,
    /// The header's line.
    pub header_line: u64,
    /// The data rows, blank rows left out.
    pub rows: Vec<Row>,
    /// The encoding the CSV was read in (`utf-8`, `utf-16`, `gb18030`), or `xlsx`.
    pub encoding: &'static str,
}

/// Reads a file. `is_header` tells a header cell from data (a known column name).
pub fn read(
    bytes: &[u8],
    format: Format,
    encoding: TextEncoding,
    is_header: &dyn Fn(&str) -> bool,
) -> Result<Table, FileError> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(FileError::TooLarge { bytes: bytes.len(), limit: MAX_FILE_BYTES });
    }
    let (raw, encoding) = match format {
        Format::Csv => {
            let (text, encoding) = decode(bytes, encoding)?;
            (csv_rows(&text)?, encoding)
        }
        Format::Xlsx => (xlsx_rows(bytes)?, "xlsx"),
    };
    table(raw, encoding, is_header)
}

fn table(
    raw: Vec<(u64, Vec<Cell>)>,
    encoding: &'static str,
    is_header: &dyn Fn(&str) -> bool,
) -> Result<Table, FileError> {
    let first = raw.iter().position(|(_, cells)| cells.iter().any(|c| !c.is_blank())).ok_or(FileError::Empty)?;
    let header_at = raw
        .iter()
        .enumerate()
        .skip(first)
        .take(10)
        .find(|(_, (_, cells))| cells.iter().any(|c| is_header(c.text().trim())))
        .map_or(first, |(i, _)| i);
    let (header_line, header_cells) = raw[header_at].clone();
    let mut headers: Vec<String> = header_cells.iter().map(|c| c.text().trim().to_owned()).collect();
    while headers.last().is_some_and(String::is_empty) {
        headers.pop();
    }
    if headers.len() > MAX_COLUMNS {
        return Err(FileError::TooManyColumns { line: header_line, columns: headers.len(), limit: MAX_COLUMNS });
    }
    let mut rows = Vec::new();
    for (line, mut cells) in raw.into_iter().skip(header_at + 1) {
        if cells.iter().all(Cell::is_blank) {
            continue;
        }
        if rows.len() == MAX_ROWS {
            return Err(FileError::TooManyRows { limit: MAX_ROWS });
        }
        let extra = cells.iter().skip(headers.len()).filter(|c| !c.is_blank()).count();
        cells.resize(headers.len(), Cell::Empty);
        rows.push(Row { line, cells, extra });
    }
    if rows.is_empty() {
        return Err(FileError::NoRows { header_line });
    }
    Ok(Table { headers, header_line, rows, encoding })
}

/// The line (1-based) of byte `at`, after any line ends there (the CSV parser starts a
/// record at the LF of a CRLF, and before blank lines it skips).
fn line_of(bytes: &[u8], at: usize) -> u64 {
    Lines::default().line_of(bytes, at)
}

/// Line ends in `bytes[from..to]`: LF, CRLF (once) and a lone CR (old Mac files, and files
/// with mixed line ends).
fn line_ends(bytes: &[u8], from: usize, to: usize) -> usize {
    (from..to).filter(|&i| bytes[i] == b'\n' || (bytes[i] == b'\r' && bytes.get(i + 1) != Some(&b'\n'))).count()
}

/// Line numbers of byte positions asked in ascending order, counted in one pass over the
/// text (linear in its length, however many records it has).
#[derive(Default)]
struct Lines {
    /// Bytes counted so far.
    at: usize,
    /// Newlines before `at`.
    newlines: u64,
}

impl Lines {
    /// As the free `line_of`; a position before the last one asked counts from the start.
    fn line_of(&mut self, bytes: &[u8], at: usize) -> u64 {
        let mut at = at.min(bytes.len());
        while matches!(bytes.get(at), Some(b'\r' | b'\n')) {
            at += 1;
        }
        if at < self.at {
            *self = Lines::default();
        }
        let counted = line_ends(bytes, self.at, at);
        self.newlines = self.newlines.saturating_add(u64::try_from(counted).unwrap_or(u64::MAX));
        self.at = at;
        self.newlines.saturating_add(1)
    }
}

/// The text of a CSV file and the name of its encoding.
fn decode(bytes: &[u8], encoding: TextEncoding) -> Result<(String, &'static str), FileError> {
    let utf8 = |body: &[u8], offset: usize| match std::str::from_utf8(body) {
        Ok(text) => Ok(text.to_owned()),
        Err(e) => Err(FileError::Encoding {
            line: line_of(bytes, offset + e.valid_up_to()),
            reason: format!("byte 0x{:02X} is not UTF-8", body[e.valid_up_to()]),
        }),
    };
    if let Some(body) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        if encoding != TextEncoding::Gb18030 {
            return Ok((utf8(body, 3)?, "utf-8"));
        }
    }
    if encoding == TextEncoding::Auto {
        if let Some((codec, bom)) = encoding_rs::Encoding::for_bom(bytes) {
            if codec != encoding_rs::UTF_8 {
                let (text, malformed) = codec.decode_without_bom_handling(&bytes[bom..]);
                if malformed {
                    return Err(FileError::Encoding { line: 1, reason: "the UTF-16 text is malformed".into() });
                }
                return Ok((text.into_owned(), "utf-16"));
            }
        }
    }
    match encoding {
        TextEncoding::Utf8 => Ok((utf8(bytes, 0)?, "utf-8")),
        TextEncoding::Auto if std::str::from_utf8(bytes).is_ok() => Ok((utf8(bytes, 0)?, "utf-8")),
        TextEncoding::Auto | TextEncoding::Gb18030 => {
            // 0x0A is never part of a GB18030 multi-byte character, so lines decode alone and
            // the first bad one can be named.
            let mut text = String::with_capacity(bytes.len() * 3 / 2);
            for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
                if i > 0 {
                    text.push('\n');
                }
                match encoding_rs::GB18030.decode_without_bom_handling_and_without_replacement(line) {
                    Some(part) => text.push_str(&part),
                    None => {
                        let reason = if encoding == TextEncoding::Auto {
                            "the file is neither UTF-8 nor GB18030; save it as UTF-8 CSV"
                        } else {
                            "the bytes are not GB18030"
                        };
                        return Err(FileError::Encoding {
                            line: u64::try_from(i).unwrap_or(u64::MAX).saturating_add(1),
                            reason: reason.into(),
                        });
                    }
                }
            }
            Ok((text, "gb18030"))
        }
    }
}

/// The CSV's records with their lines. Quotes are checked first, so that an unclosed one
/// is named where it opens instead of swallowing the rest of the file.
fn csv_rows(text: &str) -> Result<Vec<(u64, Vec<Cell>)>, FileError> {
    let mut quoted_since = None;
    let mut line = 1u64;
    for b in text.bytes() {
        match b {
            b'"' => quoted_since = if quoted_since.is_some() { None } else { Some(line) },
            b'\n' => line += 1,
            _ => {}
        }
    }
    if let Some(line) = quoted_since {
        return Err(FileError::UnclosedQuote { line });
    }
    // The separator that the first lines use most (a title line above the header may have
    // none); commas win a tie.
    let head: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).take(10).collect();
    let delimiter = [b',', b'\t', b';']
        .into_iter()
        .max_by_key(|d| {
            let uses: usize = head.iter().map(|l| l.bytes().filter(|b| b == d).count()).sum();
            (uses, *d == b',')
        })
        .unwrap_or(b',');
    let mut reader =
        csv::ReaderBuilder::new().has_headers(false).flexible(true).delimiter(delimiter).from_reader(text.as_bytes());
    let mut rows = Vec::new();
    let mut record = csv::StringRecord::new();
    let mut lines = Lines::default();
    loop {
        let line = reader.position().line();
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                if record.len() > MAX_COLUMNS {
                    return Err(FileError::TooManyColumns { line, columns: record.len(), limit: MAX_COLUMNS });
                }
                if rows.len() > MAX_ROWS + 10 {
                    return Err(FileError::TooManyRows { limit: MAX_ROWS });
                }
                // The line where the record starts, counted here: the parser's own count
                // does not follow CRLF line ends.
                let line = record
                    .position()
                    .map_or(line, |p| lines.line_of(text.as_bytes(), usize::try_from(p.byte()).unwrap_or(usize::MAX)));
                rows.push((line, record.iter().map(|f| Cell::Text(unneutralised(f).to_owned())).collect()));
            }
            Err(e) => {
                let line = e
                    .position()
                    .map_or(line, |p| lines.line_of(text.as_bytes(), usize::try_from(p.byte()).unwrap_or(usize::MAX)));
                return Err(FileError::Csv { line, reason: e.to_string() });
            }
        }
    }
    Ok(rows)
}

/// A CSV cell as written for spreadsheets: a cell that starts with `=`, `+`, `-`, `@`, a
/// tab or a CR would be read as a formula (OWASP "CSV injection"), so it gets a leading `'`,
/// which spreadsheets show as text and [`read`] takes off again. Cells of digits, signs,
/// spaces, commas and `;ext=` (phone lists, masked or not) cannot call anything and are left as they are.
#[must_use]
pub fn neutralised(cell: &str) -> std::borrow::Cow<'_, str> {
    let starts_formula = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let phone_like = cell.chars().all(|c| c.is_ascii_digit() || " +-,;=ext*".contains(c));
    if starts_formula && !phone_like {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

/// The cell's text with the `'` of [`neutralised`] taken off.
fn unneutralised(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '-', '@', '\t', '\r']) => rest,
        _ => cell,
    }
}

/// Rows above the header that may be titles.
const TITLE_ROWS: usize = 10;

/// The most a workbook may unpack to: fifty times its packed size plus 16 MiB, and never
/// more than 512 MiB (spreadsheets pack about ten to one; a zip bomb a thousand to one).
fn unpacked_limit(packed: usize) -> u64 {
    let packed = u64::try_from(packed).unwrap_or(u64::MAX);
    packed.saturating_mul(50).saturating_add(16 << 20).min(512 << 20)
}

/// Refuses a workbook whose parts declare more bytes than [`unpacked_limit`] before
/// anything is unpacked.
fn check_unpacked_size(bytes: &[u8]) -> Result<(), FileError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| FileError::Xlsx(format!("it is not a zip archive: {e}")))?;
    let mut unpacked = 0u64;
    for i in 0..archive.len() {
        let part = archive.by_index_raw(i).map_err(|e| FileError::Xlsx(e.to_string()))?;
        unpacked = unpacked.saturating_add(part.size());
    }
    let limit = unpacked_limit(bytes.len());
    if unpacked > limit {
        return Err(FileError::Xlsx(format!("it unpacks to {unpacked} bytes; at most {limit} are accepted")));
    }
    Ok(())
}

/// The first sheet's rows with their sheet row numbers; a header cell merged across columns
/// names each of them.
fn xlsx_rows(bytes: &[u8]) -> Result<Vec<(u64, Vec<Cell>)>, FileError> {
    let broken = |e: calamine::XlsxError| FileError::Xlsx(e.to_string());
    check_unpacked_size(bytes)?;
    let mut book: Xlsx<_> = Xlsx::new(Cursor::new(bytes)).map_err(broken)?;
    let sheet = book.sheet_names().first().cloned().ok_or_else(|| FileError::Xlsx("it has no sheet".into()))?;
    let merged = book.merge_cells_by_sheet_name(&sheet).map_err(broken)?;
    // Cells are streamed and kept only where they are (a sheet's declared range, or one far
    // cell, must not make a grid of empty cells); a cell past the limits refuses the file.
    let mut by_row: BTreeMap<u32, Vec<Cell>> = BTreeMap::new();
    let mut cells = book.worksheet_cells_reader(&sheet).map_err(broken)?;
    let last_row = u32::try_from(MAX_ROWS + TITLE_ROWS).unwrap_or(u32::MAX);
    while let Some(cell) = cells.next_cell().map_err(broken)? {
        let (r, c) = cell.get_position();
        let value = match cell.get_value() {
            DataRef::Empty | DataRef::Error(_) => continue,
            DataRef::String(s) | DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => Cell::Text(s.clone()),
            DataRef::SharedString(s) => Cell::Text((*s).to_owned()),
            DataRef::Bool(b) => Cell::Text(b.to_string()),
            #[allow(clippy::cast_precision_loss)]
            DataRef::Int(n) => Cell::Number(*n as f64),
            DataRef::Float(f) => Cell::Number(*f),
            DataRef::DateTime(dt) if dt.is_datetime() => {
                let (y, m, d, h, min, s, _) = dt.to_ymd_hms_milli();
                Cell::DateTime(i32::from(y), m, d, h, min, s)
            }
            DataRef::DateTime(dt) => Cell::Number(dt.as_f64()),
        };
        if r >= last_row {
            return Err(FileError::TooManyRows { limit: MAX_ROWS });
        }
        let column = usize::try_from(c).unwrap_or(usize::MAX);
        if column >= MAX_COLUMNS {
            return Err(FileError::TooManyColumns {
                line: u64::from(r) + 1,
                columns: column.saturating_add(1),
                limit: MAX_COLUMNS,
            });
        }
        let row = by_row.entry(r).or_default();
        if row.len() <= column {
            row.resize(column + 1, Cell::Empty);
        }
        row[column] = value;
    }
    let mut rows: Vec<(u64, Vec<Cell>)> = by_row.into_iter().map(|(r, cells)| (u64::from(r) + 1, cells)).collect();
    if rows.is_empty() {
        return Err(FileError::Empty);
    }
    // A merged cell holds its value in its top-left cell only: spread it across the columns
    // of its first row (a header "电话" merged over two columns names both).
    for region in merged {
        let (r, c0) = region.start;
        let (_, c1) = region.end;
        let Some((_, row)) = rows.iter_mut().find(|(line, _)| *line == u64::from(r) + 1) else { continue };
        let Some(value) = row.get(c0 as usize).cloned() else { continue };
        let wanted = (c1 as usize + 1).min(MAX_COLUMNS);
        if row.len() < wanted {
            row.resize(wanted, Cell::Empty);
        }
        for c in c0 + 1..=c1 {
            if let Some(cell) = row.get_mut(c as usize) {
                if cell.is_blank() {
                    *cell = value.clone();
                }
            }
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any_header(text: &str) -> bool {
        matches!(text, "name" | "姓名" | "phone" | "手机")
    }

    /// A workbook with a header, one row, and one more cell at (`row`, `column`).
    fn sparse_workbook(row: u32, column: u16) -> Vec<u8> {
        let mut book = rust_xlsxwriter::Workbook::new();
        let sheet = book.add_worksheet();
        sheet.write_string(0, 0, "name").unwrap();
        sheet.write_string(1, 0, "张三").unwrap();
        sheet.write_string(row, column, "z").unwrap();
        book.save_to_buffer().unwrap()
    }

    #[test]
    fn a_far_cell_refuses_a_workbook_without_filling_a_grid() {
        // The last cell of a sheet: a grid up to it would take terabytes.
        let far = read(&sparse_workbook(1_048_575, 16_383), Format::Xlsx, TextEncoding::Auto, &any_header);
        assert!(matches!(far, Err(FileError::TooManyRows { .. })), "{far:?}");
        let wide = read(&sparse_workbook(5, 16_383), Format::Xlsx, TextEncoding::Auto, &any_header);
        assert!(matches!(wide, Err(FileError::TooManyColumns { line: 6, .. })), "{wide:?}");
        // Sparse cells within the limits are read where they are.
        let near = read(&sparse_workbook(40, 3), Format::Xlsx, TextEncoding::Auto, &any_header).unwrap();
        assert_eq!(near.rows.len(), 2);
        assert_eq!(near.rows[1].line, 41);
    }

    #[test]
    fn a_workbook_that_unpacks_far_beyond_its_size_is_refused_before_unpacking() {
        assert_eq!(unpacked_limit(1 << 20), (50 << 20) + (16 << 20));
        assert_eq!(unpacked_limit(32 << 20), 512 << 20);
        let error = check_unpacked_size(b"PK not a zip").unwrap_err();
        assert!(error.to_string().contains("not a zip archive"), "{error}");
    }

    #[test]
    fn formulas_are_neutralised_for_spreadsheets_and_read_back_as_written() {
        for (cell, written) in [
            ("=HYPERLINK(\"http://evil.example\",\"x\")", "'=HYPERLINK(\"http://evil.example\",\"x\")"),
            ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
            ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
            ("-2+3a", "'-2+3a"),
            ("\t=1+2", "'\t=1+2"),
            ("+8613912345678, +8613912345679", "+8613912345678, +8613912345679"),
            ("+86139****5678;ext=****", "+86139****5678;ext=****"),
            ("王小明", "王小明"),
            ("'quoted", "'quoted"),
        ] {
            assert_eq!(neutralised(cell), written);
            let mut out = csv::Writer::from_writer(Vec::new());
            out.write_record(["name", written]).unwrap();
            let text = String::from_utf8(out.into_inner().unwrap()).unwrap();
            let rows = csv_rows(&text).unwrap();
            assert_eq!(rows[0].1[1].text(), cell, "{written:?} reads back as written");
        }
    }

    #[test]
    fn a_title_line_above_a_semicolon_or_tab_header_does_not_hide_the_separator() {
        for sep in [";", "\t"] {
            let text = format!("客户名单\n姓名{sep}手机\n张三{sep}13912345678\n李四{sep}13912345679\n");
            let table = read(text.as_bytes(), Format::Csv, TextEncoding::Auto, &any_header).unwrap();
            assert_eq!(table.headers, vec!["姓名", "手机"], "separator {sep:?}");
            assert_eq!(table.header_line, 2);
            assert_eq!(table.rows.len(), 2);
            assert_eq!(table.rows[1].cells[1].text(), "13912345679");
        }
    }

    #[test]
    fn lines_counted_in_one_pass_agree_with_counting_from_the_start() {
        let text = b"a,b\r\n1,2\n\n\n3,\"x\ny\"\r\n4,5\r6,7\r\r8,9\n";
        let mut lines = Lines::default();
        let positions: Vec<usize> = (0..text.len()).collect();
        for at in positions.iter().copied().chain([3, 0, text.len()]) {
            let expected = {
                let mut at = at;
                while matches!(text.get(at), Some(b'\r' | b'\n')) {
                    at += 1;
                }
                1 + line_ends(text, 0, at) as u64
            };
            assert_eq!(lines.line_of(text, at), expected, "byte {at}");
        }
    }

    #[test]
    fn lines_end_with_cr_alone_too() {
        let rows = csv_rows("name,phone\r张三,1\r李四,2\r\n王五,3\n").unwrap();
        let lines: Vec<u64> = rows.iter().map(|r| r.0).collect();
        assert_eq!(lines, vec![1, 2, 3, 4]);
    }

    #[test]
    fn a_large_file_is_read_with_every_line_number() {
        // 200,000 records, each line numbered (counted in one pass: from the start for each
        // record, this file would take minutes).
        let mut text = String::from("name,phone\n");
        for i in 0..200_000 {
            text.push_str(&format!("n{i},1390000{i:04}\r\n"));
        }
        let rows = csv_rows(&text).unwrap();
        assert_eq!(rows.len(), 200_001);
        assert_eq!(rows.last().map(|r| r.0), Some(200_001));
    }

    #[test]
    fn csv_in_gb18030_with_bom_crlf_and_title_rows_is_read() {
        let (gbk, _, _) = encoding_rs::GB18030.encode("客户名单\r\n姓名,手机\r\n张伟,13912345678\r\n\r\n李娜,\r\n");
        let table = read(&gbk, Format::Csv, TextEncoding::Auto, &any_header).unwrap();
        assert_eq!(table.encoding, "gb18030");
        assert_eq!(table.headers, ["姓名", "手机"]);
        assert_eq!(table.header_line, 2);
        assert_eq!(table.rows.iter().map(|r| r.line).collect::<Vec<_>>(), [3, 5]);
        assert_eq!(table.rows[0].cells[0], Cell::Text("张伟".into()));

        let bom = b"\xEF\xBB\xBFname,phone\r\n\"Wang, Wei\",1\r\n";
        let table = read(bom, Format::Csv, TextEncoding::Auto, &any_header).unwrap();
        assert_eq!((table.encoding, table.headers[0].as_str()), ("utf-8", "name"));
        assert_eq!(table.rows[0].cells[0], Cell::Text("Wang, Wei".into()));
    }

    #[test]
    fn malformed_files_name_their_line() {
        let err = read(b"name,phone\nok,1\n\"open,2\nmore,3\n", Format::Csv, TextEncoding::Auto, &any_header);
        assert_eq!(err, Err(FileError::UnclosedQuote { line: 3 }));
        let err = read(b"name\nok\n\xFF\xFF\n", Format::Csv, TextEncoding::Auto, &any_header);
        assert!(matches!(err, Err(FileError::Encoding { line: 3, .. })), "{err:?}");
        let err = read(b"name\n\xC3\x28\n", Format::Csv, TextEncoding::Utf8, &any_header);
        assert!(matches!(err, Err(FileError::Encoding { line: 2, .. })), "{err:?}");
        let err = read(b"PK\x03\x04broken", Format::Xlsx, TextEncoding::Auto, &any_header);
        assert!(matches!(err, Err(FileError::Xlsx(_))), "{err:?}");
        assert_eq!(read(b"\n ,\n", Format::Csv, TextEncoding::Auto, &any_header), Err(FileError::Empty));
        assert_eq!(
            read(b"title\nname,phones\n,\n", Format::Csv, TextEncoding::Auto, &|t| t == "name"),
            Err(FileError::NoRows { header_line: 2 })
        );
    }

    #[test]
    fn a_file_named_as_a_workbook_must_be_one() {
        assert_eq!(Format::of("客户.xlsx", b"PK\x03\x04rest"), Ok(Format::Xlsx));
        assert_eq!(Format::of("customers.csv", b"name\n"), Ok(Format::Csv));
        assert_eq!(Format::of("export", b"PK\x03\x04"), Ok(Format::Xlsx), "a workbook by its bytes, whatever its name");
        for name in ["bad.xlsx", "BAD.XLSX", "old.xls", "macro.xlsm"] {
            assert!(matches!(Format::of(name, b"name\n"), Err(FileError::Xlsx(_))), "{name}");
        }
    }
}
