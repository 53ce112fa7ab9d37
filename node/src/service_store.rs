//! The provider's side of a service interface (服务接口, Art. 22): the granted data, as the
//! provider's department prepared it (its scope, 使用范围 — the node does not filter records),
//! loaded into RocksDB keyed by the field the department names (e.g. 公民身份号码), and looked
//! up per call of the requester's department. The requester never receives the dataset, only
//! the records of the keys it asks for.
//!
//! Keys in the `state` column family:
//!
//! | key | value |
//! |---|---|
//! | `svc/` request (32 B) generation (u32 BE) key `\0` line number (u32 BE) | the record line, without its line end |
//! | `svcm/` request (32 B) | [`ServiceMeta`]: the generation answering, format, key field, CSV header, counts |
//!
//! A load writes a new generation beside the one answering, syncs it, then switches the meta
//! to it (one write) and deletes the old one: calls are answered from a complete load at every
//! moment, and a load that fails (bad input, a crash) leaves the previous data answering —
//! the provider's corrected data (Art. 26) replaces it only whole.

use std::io::{BufRead, BufReader, Read};

use anyhow::{bail, Context, Result};
use backflow_protocol::manifest::Hash;
use backflow_protocol::service_interface::{
    LookupAnswer, LookupRecord, LOOKUP_KEY_BYTES_MAX, LOOKUP_RECORDS_MAX, LOOKUP_RECORD_BYTES_MAX,
};
use backflow_protocol::wire::{decode_exact, encode_value};
use serde::{Deserialize, Serialize};

use crate::partition::{csv_header_fields, field_value, Format};
use crate::store::{Store, CF_STATE};

const RECORD_PREFIX: &[u8] = b"svc/";
const META_PREFIX: &[u8] = b"svcm/";
/// Records written per batch while loading.
const BATCH_RECORDS: usize = 10_000;
/// Records one service may hold (a line number is a u32; the upload limit bounds it first).
pub const SERVICE_RECORDS_MAX: u64 = u32::MAX as u64;

/// What a load stored, kept beside the records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceMeta {
    /// Which generation of records answers.
    pub generation: u32,
    pub csv: bool,
    pub key_field: String,
    /// The CSV header line (empty for NDJSON), returned with every answer.
    pub header: Vec<u8>,
    pub records: u64,
    pub bytes: u64,
}

fn meta_key(request: &Hash) -> Vec<u8> {
    [META_PREFIX, request.as_slice()].concat()
}

fn generation_prefix(request: &Hash, generation: u32) -> Vec<u8> {
    [RECORD_PREFIX, request.as_slice(), &generation.to_be_bytes()].concat()
}

fn key_prefix(request: &Hash, generation: u32, key: &[u8]) -> Vec<u8> {
    [&generation_prefix(request, generation), key, b"\0"].concat()
}

/// Reads one line (without its line end) of at most `max` bytes into `buf`; `Ok(false)` at
/// the end of the input. A longer line is an error naming its number, never its content.
fn read_line(
    input: &mut impl BufRead,
    buf: &mut Vec<u8>,
    max: usize,
    line_no: u64,
) -> Result<bool> {
    buf.clear();
    let n = input
        .take(max as u64 + 2)
        .read_until(b'\n', buf)
        .with_context(|| format!("reading line {line_no}"))?;
    if n == 0 {
        return Ok(false);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    } else if n > max {
        bail!("line {line_no} is longer than {max} bytes");
    }
    if buf.len() > max {
        bail!("line {line_no} is longer than {max} bytes");
    }
    Ok(true)
}

/// Loads the granted data of `request` (CSV with its header line, or NDJSON) keyed by
/// `key_field` as a new generation, syncs it and makes it the one answering (the previous
/// one, if any, is deleted after). Every line must carry a
/// non-empty key of at most [`LOOKUP_KEY_BYTES_MAX`] bytes: the first that does not is an
/// error naming its line number (and nothing of its content), and nothing is served.
pub fn load(
    store: &Store,
    request: &Hash,
    input: &mut dyn Read,
    format: Format,
    key_field: &str,
) -> Result<ServiceMeta> {
    if key_field.is_empty() || key_field.len() > LOOKUP_KEY_BYTES_MAX {
        bail!("the key field's name must be 1 to {LOOKUP_KEY_BYTES_MAX} bytes");
    }
    let previous = meta(store, request)?;
    let generation = previous
        .as_ref()
        .map_or(1, |m| m.generation.wrapping_add(1));
    // Leftovers of a load of this generation that failed before its switch.
    clear_generation(store, request, generation)?;
    let mut input = BufReader::with_capacity(1 << 20, input);
    let mut line = Vec::new();
    let mut line_no = 1;
    let (header, csv_index) = match format {
        Format::Csv => {
            if !read_line(&mut input, &mut line, LOOKUP_RECORD_BYTES_MAX, line_no)? {
                bail!("the input is empty: a CSV file starts with its header line");
            }
            let index = csv_header_fields(&line)
                .iter()
                .position(|f| f == key_field)
                .with_context(|| format!("the CSV header has no field named {key_field:?}"))?;
            line_no += 1;
            (std::mem::take(&mut line), index)
        }
        Format::Ndjson => (Vec::new(), 0),
    };
    let mut meta = ServiceMeta {
        generation,
        csv: format == Format::Csv,
        key_field: key_field.to_string(),
        header,
        records: 0,
        bytes: 0,
    };
    let mut batch = store.batch();
    let mut in_batch = 0;
    while read_line(&mut input, &mut line, LOOKUP_RECORD_BYTES_MAX, line_no)? {
        if line.is_empty() {
            line_no += 1;
            continue;
        }
        let key = field_value(format, &line, csv_index, key_field)
            .with_context(|| format!("line {line_no} has no value for {key_field:?}"))?;
        if key.len() > LOOKUP_KEY_BYTES_MAX
            || key.contains(&0)
            || std::str::from_utf8(&key).is_err()
        {
            bail!(
                "line {line_no}: the value of {key_field:?} is not a key (UTF-8, no NUL, at most \
                 {LOOKUP_KEY_BYTES_MAX} bytes)"
            );
        }
        if meta.records >= SERVICE_RECORDS_MAX {
            bail!("more than {SERVICE_RECORDS_MAX} records");
        }
        let mut k = key_prefix(request, generation, &key);
        k.extend_from_slice(&(meta.records as u32).to_be_bytes());
        batch.put(CF_STATE, &k, &line);
        meta.records += 1;
        meta.bytes += line.len() as u64;
        in_batch += 1;
        if in_batch == BATCH_RECORDS {
            store.write(std::mem::replace(&mut batch, store.batch()))?;
            in_batch = 0;
        }
        line_no += 1;
    }
    if meta.records == 0 {
        bail!("the input holds no records");
    }
    store.write(batch)?;
    // The records durable before the meta names them; the meta durable before the service
    // opens or the provider answers a correction (after this returns).
    store.sync_wal()?;
    store.put(CF_STATE, &meta_key(request), &encode_value(&meta)?)?;
    store.sync_wal()?;
    if let Some(old) = previous {
        clear_generation(store, request, old.generation)?;
    }
    Ok(meta)
}

/// Removes one generation's records of `request`.
fn clear_generation(store: &Store, request: &Hash, generation: u32) -> Result<()> {
    let prefix = generation_prefix(request, generation);
    loop {
        let keys = store.scan_prefix(CF_STATE, &prefix, BATCH_RECORDS)?;
        if keys.is_empty() {
            return Ok(());
        }
        let mut batch = store.batch();
        for (k, _) in &keys {
            batch.delete(CF_STATE, k);
        }
        store.write(batch)?;
    }
}

/// Deletes the data loaded for `request` — the sharing has ended (Art. 27) — and returns how
/// many records went (`None`: nothing was loaded). The meta goes first, so no call is
/// answered from a half-deleted load.
pub fn drop_service(store: &Store, request: &Hash) -> Result<Option<u64>> {
    let Some(meta) = meta(store, request)? else {
        return Ok(None);
    };
    store.delete(CF_STATE, &meta_key(request))?;
    store.sync_wal()?;
    clear_generation(store, request, meta.generation)?;
    Ok(Some(meta.records))
}

/// What a service of `request` holds, if its load completed.
pub fn meta(store: &Store, request: &Hash) -> Result<Option<ServiceMeta>> {
    store
        .get(CF_STATE, &meta_key(request))?
        .map(|v| decode_exact(&v).context("the service's stored description is unreadable"))
        .transpose()
}

/// The records of `keys` in the data loaded for `request`: in key order as asked, then load
/// order; at most [`LOOKUP_RECORDS_MAX`] (more: `truncated`).
pub fn lookup(store: &Store, request: &Hash, keys: &[String]) -> Result<LookupAnswer> {
    let Some(meta) = meta(store, request)? else {
        bail!("no data is loaded for this grant's service interface");
    };
    let mut answer = LookupAnswer {
        header: meta.header,
        records: Vec::new(),
        truncated: false,
    };
    for key in keys {
        if key.is_empty() || key.as_bytes().contains(&0) {
            continue; // never a stored key
        }
        let prefix = key_prefix(request, meta.generation, key.as_bytes());
        store.for_each_from(CF_STATE, &prefix, |k, v| {
            if !k.starts_with(&prefix) {
                return Ok(false);
            }
            if answer.records.len() == LOOKUP_RECORDS_MAX {
                answer.truncated = true;
                return Ok(false);
            }
            answer.records.push(LookupRecord {
                key: key.clone(),
                line: v.to_vec(),
            });
            Ok(true)
        })?;
        if answer.truncated {
            break;
        }
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        (dir, store)
    }

    #[test]
    fn loads_csv_and_answers_by_key_in_order() {
        let (_d, s) = store();
        let r = [1; 32];
        let data =
            "姓名,公民身份号码,状态\r\n张三,A1,参保\r\n李四,B2,停保\r\n\"王,五\",A1,参保\r\n";
        let meta = load(&s, &r, &mut data.as_bytes(), Format::Csv, "公民身份号码").unwrap();
        assert_eq!(
            (meta.records, meta.header.as_slice()),
            (3, "姓名,公民身份号码,状态".as_bytes())
        );
        let a = lookup(&s, &r, &["A1".into(), "C3".into(), "B2".into()]).unwrap();
        let lines: Vec<(&str, &[u8])> = a
            .records
            .iter()
            .map(|r| (r.key.as_str(), r.line.as_slice()))
            .collect();
        assert_eq!(
            lines,
            vec![
                ("A1", "张三,A1,参保".as_bytes()),
                ("A1", "\"王,五\",A1,参保".as_bytes()),
                ("B2", "李四,B2,停保".as_bytes()),
            ]
        );
        // Another grant's service holds nothing of this one's.
        assert!(lookup(&s, &[2; 32], &["A1".into()]).is_err());
        // A key is matched whole, not as a prefix.
        assert!(lookup(&s, &r, &["A".into()]).unwrap().records.is_empty());
    }

    /// A correction's reload replaces the data whole; a failed one leaves the old answering.
    #[test]
    fn a_reload_replaces_the_data_whole_and_a_failed_one_changes_nothing() {
        let (_d, s) = store();
        let r = [1; 32];
        load(
            &s,
            &r,
            &mut "id,v\nA,1\nB,2\n".as_bytes(),
            Format::Csv,
            "id",
        )
        .unwrap();
        let e = load(&s, &r, &mut "id,v\nA,9\n,x\n".as_bytes(), Format::Csv, "id");
        assert!(e.is_err());
        let a = lookup(&s, &r, &["A".into(), "B".into()]).unwrap();
        assert_eq!(a.records.len(), 2);
        assert_eq!(a.records[0].line, b"A,1".to_vec());
        let m = load(&s, &r, &mut "id,v\nA,3\n".as_bytes(), Format::Csv, "id").unwrap();
        let a = lookup(&s, &r, &["A".into(), "B".into()]).unwrap();
        assert_eq!(a.records.len(), 1, "B is gone with the old generation");
        assert_eq!(a.records[0].line, b"A,3".to_vec());
        // Nothing of older generations is left.
        let all = s
            .scan_prefix(CF_STATE, &[RECORD_PREFIX, r.as_slice()].concat(), 100)
            .unwrap();
        assert_eq!(all.len() as u64, m.records);
        // The sharing ended: all of it goes, and nothing answers.
        assert_eq!(drop_service(&s, &r).unwrap(), Some(1));
        assert!(lookup(&s, &r, &["A".into()]).is_err());
        let left = s
            .scan_prefix(CF_STATE, &[RECORD_PREFIX, r.as_slice()].concat(), 100)
            .unwrap();
        assert!(left.is_empty());
        assert_eq!(drop_service(&s, &r).unwrap(), None);
    }

    #[test]
    fn bad_input_is_refused_by_line_number_without_its_content() {
        let (_d, s) = store();
        let r = [1; 32];
        let e = load(&s, &r, &mut "a,b\n1,2\n".as_bytes(), Format::Csv, "id").unwrap_err();
        assert!(format!("{e:#}").contains("no field named \"id\""), "{e:#}");
        let e = load(
            &s,
            &r,
            &mut "id,b\n1,2\n,秘密\n".as_bytes(),
            Format::Csv,
            "id",
        )
        .unwrap_err();
        let e = format!("{e:#}");
        assert!(e.contains("line 3") && !e.contains("秘密"), "{e}");
        let long = format!("id\n{}\n", "x".repeat(LOOKUP_RECORD_BYTES_MAX + 1));
        let e = load(&s, &r, &mut long.as_bytes(), Format::Csv, "id").unwrap_err();
        assert!(format!("{e:#}").contains("line 2 is longer"), "{e:#}");
        // Nothing half-loaded is served.
        assert!(meta(&s, &r).unwrap().is_none());
        // NDJSON: the field by name.
        let json = "{\"id\":\"k1\",\"v\":1}\n{\"id\":7}\n";
        load(&s, &r, &mut json.as_bytes(), Format::Ndjson, "id").unwrap();
        let a = lookup(&s, &r, &["7".into()]).unwrap();
        assert_eq!(a.records[0].line, b"{\"id\":7}".to_vec());
        assert!(a.header.is_empty());
    }
}
