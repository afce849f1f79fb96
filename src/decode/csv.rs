//! CSV exports (EventLogFile `Login`, or `sf data query --result-format csv`)
//! → records, with columns mapped by header name in any order.
//!
//! Salesforce quotes every value and doubles embedded quotes (the "three
//! quotation marks" quirk is just that escaping); the `csv` crate handles both.
//! A row whose field count differs from the header's is rejected as
//! `invalid_csv`; missing optional columns are simply absent fields.

use super::{decode_record, Decoded, Fields, Reject, RejectReason};
use std::borrow::Cow;

/// The header of one CSV file.
#[derive(Debug, Clone)]
pub struct CsvHeader {
    names: Vec<String>,
}

/// Fields in one CSV line (0 when it does not parse as CSV).
pub fn field_count(line: &[u8]) -> usize {
    let mut rdr = csv::ReaderBuilder::new().has_headers(false).from_reader(line);
    let mut rec = csv::ByteRecord::new();
    match rdr.read_byte_record(&mut rec) {
        Ok(true) => rec.len(),
        _ => 0,
    }
}

impl CsvHeader {
    /// Parses the header line; a leading UTF-8 byte-order mark is dropped.
    pub fn parse(line: &[u8]) -> Result<CsvHeader, String> {
        let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        let mut rdr = csv::ReaderBuilder::new().has_headers(false).from_reader(line);
        let mut rec = csv::StringRecord::new();
        match rdr.read_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => return Err("empty CSV header".into()),
            Err(e) => return Err(format!("unreadable CSV header: {e}")),
        }
        let names: Vec<String> = rec.iter().map(|s| s.trim().to_string()).collect();
        if names.len() < 2 || names.iter().any(String::is_empty) {
            return Err("CSV header has blank column names".into());
        }
        Ok(CsvHeader { names })
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    fn index(&self, key: &str) -> Option<usize> {
        self.names.iter().position(|n| n == key)
    }

    /// Whether this header looks like a Salesforce export ccwatch can read.
    pub fn looks_like_salesforce(&self) -> bool {
        ["EVENT_TYPE", "TIMESTAMP", "Action", "LoginTime", "EventDate", "Id", "AssigneeId"]
            .iter()
            .any(|k| self.index(k).is_some())
    }
}

struct CsvRow<'r> {
    header: &'r CsvHeader,
    rec: &'r csv::ByteRecord,
}

impl<'r> Fields<'r> for CsvRow<'r> {
    fn text(&self, key: &str) -> Option<Cow<'r, str>> {
        let raw = self.rec.get(self.header.index(key)?)?;
        let s = String::from_utf8_lossy(raw);
        (!s.trim().is_empty()).then_some(s)
    }
    fn has(&self, key: &str) -> bool {
        self.header.index(key).is_some()
    }
    fn sample_keys(&self) -> String {
        self.header.names.iter().take(8).cloned().collect::<Vec<_>>().join(",")
    }
}

/// Decodes a block of whole CSV rows; `first_line` is the file line of its first row.
pub fn decode_chunk(header: &CsvHeader, bytes: &[u8], first_line: u64, out: &mut Vec<(u64, Decoded)>) {
    let mut rdr = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(bytes);
    let mut rec = csv::ByteRecord::new();
    let mut items = Vec::new();
    loop {
        let line = first_line + rdr.position().line().saturating_sub(1);
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {
                let line = rec.position().map_or(line, |p| first_line + p.line().saturating_sub(1));
                if rec.len() == 1 && rec.get(0).is_some_and(|f| f.is_empty()) {
                    continue;
                }
                if rec.len() != header.len() {
                    out.push((
                        line,
                        Decoded::Rejected(Reject {
                            reason: RejectReason::InvalidCsv,
                            detail: format!("row has {} fields, header has {}", rec.len(), header.len()),
                            index: None,
                        }),
                    ));
                    continue;
                }
                items.clear();
                decode_record(&CsvRow { header, rec: &rec }, None, None, &mut items);
                out.extend(items.drain(..).map(|d| (line, d)));
            }
            Err(e) => {
                out.push((
                    line,
                    Decoded::Rejected(Reject { reason: RejectReason::InvalidCsv, detail: e.to_string(), index: None }),
                ));
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    break;
                }
            }
        }
    }
}
