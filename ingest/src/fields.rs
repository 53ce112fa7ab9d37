//! Parsing a record line: the input formats (CSV with a header, NDJSON) and extracting one
//! field's value — the region field while partitioning, a key field for the service
//! interface. Nothing here allocates more than the line it is given.

use std::path::Path;

use anyhow::{bail, Result};
use serde::Serialize;

/// Input record format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Comma-separated with a header line naming the fields (RFC 4180 quoting; one record per line).
    Csv,
    /// One JSON object per line.
    Ndjson,
}

impl Format {
    /// Guesses from the file extension (`.csv`, `.ndjson`/`.jsonl`/`.json`).
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(Format::Csv),
            "ndjson" | "jsonl" | "json" => Some(Format::Ndjson),
            _ => None,
        }
    }

    pub fn parse(text: &str) -> Result<Format> {
        match text.to_ascii_lowercase().as_str() {
            "csv" => Ok(Format::Csv),
            "ndjson" | "jsonl" | "json" => Ok(Format::Ndjson),
            other => bail!("unknown format {other:?}; expected csv or ndjson"),
        }
    }

    /// The canonical name (also the stored schema's name).
    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Ndjson => "ndjson",
        }
    }
}

/// Extracts field `index` of a CSV line (without the newline). `None` if the line has fewer
/// fields or broken quoting. Quoted values are returned without quotes (doubled quotes are not
/// unescaped: a region code never contains a quote, and such a value is rejected anyway).
pub(crate) fn csv_field(line: &[u8], index: usize) -> Option<&[u8]> {
    if memchr::memchr(b'"', line).is_none() {
        // Fast path: no quoting anywhere.
        return line.split(|&b| b == b',').nth(index);
    }
    let mut field = 0;
    let mut i = 0;
    loop {
        let start = i;
        let (value, next) = if line.get(i) == Some(&b'"') {
            // Quoted field: find the closing quote not followed by another quote.
            let mut j = i + 1;
            loop {
                match memchr::memchr(b'"', &line[j..]) {
                    None => return None,
                    Some(k) => {
                        let q = j + k;
                        if line.get(q + 1) == Some(&b'"') {
                            j = q + 2;
                        } else {
                            let after = q + 1;
                            if after < line.len() && line[after] != b',' {
                                return None;
                            }
                            break (&line[start + 1..q], after);
                        }
                    }
                }
            }
        } else {
            let end = memchr::memchr(b',', &line[i..]).map_or(line.len(), |k| i + k);
            (&line[start..end], end)
        };
        if field == index {
            return Some(value);
        }
        if next >= line.len() {
            return None;
        }
        field += 1;
        i = next + 1;
    }
}

/// Splits a CSV header (without its line terminator) into field names.
pub fn csv_header_fields(header: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(f) = csv_field(header, i) {
        out.push(String::from_utf8_lossy(f.trim_ascii()).into_owned());
        i += 1;
    }
    out
}

/// The value of one field of a record line (without its line end), as a lookup key: CSV field
/// `csv_index` (quotes removed, doubled quotes unescaped) or NDJSON field `name` (a string,
/// or a number as written). `None`: the line does not parse, lacks the field, or its value is
/// empty or neither a string nor a number.
pub fn field_value(format: Format, line: &[u8], csv_index: usize, name: &str) -> Option<Vec<u8>> {
    let value = match format {
        Format::Csv => {
            let raw = csv_field(line, csv_index)?;
            let mut v = Vec::with_capacity(raw.len());
            let mut i = 0;
            while i < raw.len() {
                v.push(raw[i]);
                i += if raw[i] == b'"' && raw.get(i + 1) == Some(&b'"') {
                    2
                } else {
                    1
                };
            }
            v
        }
        Format::Ndjson => json_field(line, name).ok()??,
    };
    (!value.is_empty()).then_some(value)
}

/// Extracts `field` from one NDJSON object line: a string, or a number (written as digits).
pub(crate) fn json_field(line: &[u8], field: &str) -> Result<Option<Vec<u8>>, ()> {
    use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
    struct Seed<'f>(&'f str);
    impl<'de> DeserializeSeed<'de> for Seed<'_> {
        type Value = Option<Vec<u8>>;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
    }
    impl<'de> Visitor<'de> for Seed<'_> {
        type Value = Option<Vec<u8>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found = None;
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if found.is_none() && key == self.0 {
                    let v: serde_json::Value = map.next_value()?;
                    found = match v {
                        serde_json::Value::String(s) => Some(s.into_bytes()),
                        serde_json::Value::Number(n) => Some(n.to_string().into_bytes()),
                        _ => Some(Vec::new()),
                    };
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(found)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(line);
    let v = Seed(field).deserialize(&mut de).map_err(|_| ())?;
    de.end().map_err(|_| ())?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_values_for_lookups() {
        let line = br#"1,"a""b",x"#;
        assert_eq!(
            field_value(Format::Csv, line, 1, ""),
            Some(br#"a"b"#.to_vec())
        );
        assert_eq!(field_value(Format::Csv, line, 0, ""), Some(b"1".to_vec()));
        assert_eq!(field_value(Format::Csv, b"1,,x", 1, ""), None);
        assert_eq!(field_value(Format::Csv, b"1", 3, ""), None);
        let json = br#"{"id":"110101","n":7,"o":{}}"#;
        assert_eq!(
            field_value(Format::Ndjson, json, 0, "id"),
            Some(b"110101".to_vec())
        );
        assert_eq!(
            field_value(Format::Ndjson, json, 0, "n"),
            Some(b"7".to_vec())
        );
        assert_eq!(field_value(Format::Ndjson, json, 0, "o"), None);
        assert_eq!(field_value(Format::Ndjson, b"{", 0, "id"), None);
    }

    #[test]
    fn csv_field_extraction() {
        assert_eq!(csv_field(b"a,b,c", 1), Some(&b"b"[..]));
        assert_eq!(csv_field(b"a,\"b,x\",c", 2), Some(&b"c"[..]));
        assert_eq!(csv_field(b"a,\"b\"\"x\",c", 1), Some(&b"b\"\"x"[..]));
        assert_eq!(csv_field(b"a,\"b", 1), None);
        assert_eq!(csv_field(b"a,b", 2), None);
    }
}
