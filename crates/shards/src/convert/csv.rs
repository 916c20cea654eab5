//! The CSV reading shared by both passes of a conversion: the header (a UTF-8 byte order
//! mark tolerated), field splitting with double quotes, cell parsing and error values
//! that name the file, line and column.

use std::borrow::Cow;
use std::io::BufRead;
use std::path::Path;

use super::Record;
use crate::error::{Result, ShardError, io};

/// The UTF-8 byte order mark some tools write at the start of a file.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Reads only the header line of a CSV file (a leading byte order mark is dropped).
pub fn read_header(path: &Path) -> Result<Vec<String>> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    let mut line = Vec::new();
    std::io::BufReader::new(file)
        .read_until(b'\n', &mut line)
        .map_err(io(path))?;
    let line = line.strip_prefix(BOM).unwrap_or(&line);
    if line.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(csv_err(
            path,
            1,
            "-",
            "empty file: a header line is needed".into(),
        ));
    }
    let mut spans = Vec::new();
    split(trim_eol(line), &mut spans);
    Ok(spans
        .iter()
        .map(|&(a, b)| {
            String::from_utf8_lossy(&unquote(&line[a..b]))
                .trim()
                .to_string()
        })
        .collect())
}

pub(crate) fn csv_err(path: &Path, line: usize, column: &str, detail: String) -> ShardError {
    ShardError::Csv {
        file: path.display().to_string(),
        line,
        column: column.to_string(),
        detail,
    }
}

pub(crate) fn trim_eol(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && (line[end - 1] == b'\n' || line[end - 1] == b'\r') {
        end -= 1;
    }
    &line[..end]
}

/// Splits a CSV line into field spans (double-quoted fields may contain commas).
pub(crate) fn split(line: &[u8], spans: &mut Vec<(usize, usize)>) {
    spans.clear();
    let mut start = 0;
    let mut quoted = false;
    for (i, &b) in line.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                spans.push((start, i));
                start = i + 1;
            }
            _ => {}
        }
    }
    spans.push((start, line.len()));
}

/// A field without its surrounding quotes ("" inside becomes ").
pub(crate) fn unquote(f: &[u8]) -> Cow<'_, [u8]> {
    if f.len() >= 2 && f[0] == b'"' && f[f.len() - 1] == b'"' {
        let inner = &f[1..f.len() - 1];
        let mut out = Vec::with_capacity(inner.len());
        let mut i = 0;
        while i < inner.len() {
            out.push(inner[i]);
            i += if inner[i] == b'"' && inner.get(i + 1) == Some(&b'"') {
                2
            } else {
                1
            };
        }
        Cow::Owned(out)
    } else {
        Cow::Borrowed(f)
    }
}

pub(crate) fn parse_u64(f: &[u8]) -> Option<u64> {
    let f = f.trim_ascii();
    if f.is_empty() || f.len() > 19 {
        return None;
    }
    f.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + (b - b'0') as u64)
    })
}

pub(crate) fn parse_f32(f: &[u8]) -> Option<f32> {
    std::str::from_utf8(f.trim_ascii())
        .ok()?
        .parse::<f32>()
        .ok()
}

/// One data line: its number, its text and the spans of its cells.
pub(crate) struct Line<'a> {
    pub number: usize,
    pub text: &'a [u8],
    pub spans: &'a [(usize, usize)],
    pub header: &'a [String],
    pub path: &'a Path,
}

impl Line<'_> {
    /// Cell `i`, unquoted.
    pub fn cell(&self, i: usize) -> Cow<'_, [u8]> {
        unquote(&self.text[self.spans[i].0..self.spans[i].1])
    }

    /// An error at column `i` of this line.
    pub fn err(&self, i: usize, detail: String) -> ShardError {
        let name = self
            .header
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("#{}", i + 1));
        csv_err(self.path, self.number, &name, detail)
    }
}

impl Record for Line<'_> {
    fn cell(&self, i: usize) -> Cow<'_, [u8]> {
        Line::cell(self, i)
    }

    fn for_each_value(
        &self,
        i: usize,
        separator: u8,
        f: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        let cell = Line::cell(self, i);
        if cell.trim_ascii().is_empty() {
            return Ok(());
        }
        cell.split(|&b| b == separator).try_for_each(f)
    }

    fn err(&self, i: usize, detail: String) -> ShardError {
        Line::err(self, i, detail)
    }

    fn row_err(&self, columns: &str, detail: String) -> ShardError {
        csv_err(self.path, self.number, columns, detail)
    }
}

/// Calls `f` on every data line (the header and empty lines skipped), after checking its
/// cell count against the header's. Returns the bytes read and whether the file had a line.
pub(crate) fn for_each_line(
    path: &Path,
    header: &[String],
    mut f: impl FnMut(&Line<'_>) -> Result<()>,
) -> Result<u64> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut line = Vec::with_capacity(4096);
    let mut spans = Vec::new();
    let (mut bytes, mut number) = (0u64, 0usize);
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(io(path))?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        number += 1;
        if number == 1 {
            continue;
        }
        let text = trim_eol(&line);
        if text.is_empty() {
            continue;
        }
        split(text, &mut spans);
        if spans.len() != header.len() {
            let at = spans.len().min(header.len());
            return Err(csv_err(
                path,
                number,
                header
                    .get(at)
                    .map(String::as_str)
                    .unwrap_or(&format!("#{}", at + 1)),
                format!("{} columns, the header has {}", spans.len(), header.len()),
            ));
        }
        f(&Line {
            number,
            text,
            spans: &spans,
            header,
            path,
        })?;
    }
    if number == 0 {
        return Err(csv_err(
            path,
            1,
            "-",
            "empty file: a header line is needed".into(),
        ));
    }
    Ok(bytes)
}
