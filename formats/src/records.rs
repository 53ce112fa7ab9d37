//! Reading stored records back as table rows, for export: a stream of lines split as it is
//! written, a CSV line's fields (RFC 4180, one line), an NDJSON object's keys and values in
//! the order written. Values become text: JSON strings as they are, numbers as written,
//! `true`/`false`, objects and arrays as their JSON; `null` and a missing field are `None`.

use std::io::Write;

use anyhow::{bail, Result};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;

/// A [`Write`] that hands `f` every complete line (without its `\n` or `\r\n`), numbered from 1.
pub struct Lines<F: FnMut(u64, &[u8]) -> Result<()>> {
    carry: Vec<u8>,
    line: u64,
    f: F,
}

impl<F: FnMut(u64, &[u8]) -> Result<()>> Lines<F> {
    pub fn new(f: F) -> Self {
        Lines {
            carry: Vec::new(),
            line: 0,
            f,
        }
    }

    fn emit(&mut self, line: &[u8]) -> std::io::Result<()> {
        self.line += 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        (self.f)(self.line, line).map_err(|e| std::io::Error::other(format!("{e:#}")))
    }

    /// Hands over a last line without a line end, if any.
    pub fn finish(mut self) -> Result<()> {
        if !self.carry.is_empty() {
            let carry = std::mem::take(&mut self.carry);
            self.emit(&carry)?;
        }
        Ok(())
    }
}

impl<F: FnMut(u64, &[u8]) -> Result<()>> Write for Lines<F> {
    fn write(&mut self, mut buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len();
        while let Some(i) = memchr::memchr(b'\n', buf) {
            if self.carry.is_empty() {
                self.emit(&buf[..i])?;
            } else {
                let mut line = std::mem::take(&mut self.carry);
                line.extend_from_slice(&buf[..i]);
                self.emit(&line)?;
                line.clear();
                self.carry = line;
            }
            buf = &buf[i + 1..];
        }
        self.carry.extend_from_slice(buf);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The fields of one CSV line, unquoted (`""` → `"`). Bytes that are not UTF-8 are replaced
/// (U+FFFD): Excel and Parquet strings are Unicode.
pub fn csv_fields(line: &[u8], out: &mut Vec<String>) -> Result<()> {
    out.clear();
    let line = String::from_utf8_lossy(line);
    let mut chars = line.chars().peekable();
    let mut field = String::new();
    loop {
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => bail!("a quoted field is not closed"),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    out.push(std::mem::take(&mut field));
                    return Ok(());
                }
                Some(',') => out.push(std::mem::take(&mut field)),
                Some(_) => bail!("text follows a quoted field's closing quote"),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        out.push(std::mem::take(&mut field));
                        return Ok(());
                    }
                    Some(',') => {
                        out.push(std::mem::take(&mut field));
                        break;
                    }
                    Some(c) => field.push(c),
                }
            }
        }
    }
}

/// One NDJSON object's fields in the order written, values as text.
pub fn json_fields(line: &[u8]) -> Result<Vec<(String, Option<String>)>> {
    struct Ordered;
    impl<'de> Visitor<'de> for Ordered {
        type Value = Vec<(String, Option<String>)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some((k, v)) = map.next_entry::<String, Value>()? {
                out.push((k, value_text(v)));
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(line);
    let fields = de
        .deserialize_map(Ordered)
        .map_err(|e| anyhow::anyhow!("not a JSON object (column {})", e.column()))?;
    de.end()
        .map_err(|_| anyhow::anyhow!("text follows the JSON object"))?;
    Ok(fields)
}

fn value_text(v: Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_lines_split_and_unquoted() {
        let mut f = Vec::new();
        csv_fields(r#"1,"a,""b""",,北京"#.as_bytes(), &mut f).unwrap();
        assert_eq!(f, ["1", "a,\"b\"", "", "北京"]);
        assert!(csv_fields(br#"1,"a"#, &mut f).is_err());
        assert!(csv_fields(br#""a"b"#, &mut f).is_err());
    }

    #[test]
    fn json_keys_in_written_order() {
        let f = json_fields(br#"{"z":1,"a":"x","n":null,"o":{"k":[1]},"b":true}"#).unwrap();
        let keys: Vec<&str> = f.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["z", "a", "n", "o", "b"]);
        assert_eq!(f[0].1.as_deref(), Some("1"));
        assert_eq!(f[2].1, None);
        assert_eq!(f[3].1.as_deref(), Some(r#"{"k":[1]}"#));
        assert_eq!(f[4].1.as_deref(), Some("true"));
        assert!(json_fields(b"[1]").is_err());
    }

    #[test]
    fn lines_across_writes() {
        let mut got = Vec::new();
        let mut w = Lines::new(|n, l: &[u8]| {
            got.push((n, l.to_vec()));
            Ok(())
        });
        w.write_all(b"ab").unwrap();
        w.write_all(b"c\r\nd\n\ne").unwrap();
        w.finish().unwrap();
        assert_eq!(
            got,
            [
                (1, b"abc".to_vec()),
                (2, b"d".to_vec()),
                (3, b"".to_vec()),
                (4, b"e".to_vec())
            ]
        );
    }
}
