//! The provider's side of a grant's delivery by batch exchange or file download (批量交换 /
//! 文件下载, Art. 22): the granted data, exactly as the provider's department sends it, stored
//! as one partition for the requester's region under a signed delivery manifest
//! ([`backflow_protocol::manifest::Manifest::delivers`]). The endpoint then publishes it to
//! the requester's node only (`Endpoint::deliver_grant`), which fetches and verifies it
//! directly from this node and exports it byte for byte (header line and records as sent).
//!
//! The provider prepares the granted subset (its scope, Art. 20's 使用范围) itself; the node
//! does not filter records, so what is delivered is exactly what the department signed off.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use backflow_protocol::catalog::CatalogOrigin;
use backflow_protocol::cert::NodeIdentity;
use backflow_protocol::manifest::{
    build_manifest, Hash, ManifestPolicy, OutboardBuilder, PartitionEntry, SignedManifest,
};
use backflow_protocol::time::{UnixMs, HOUR_MS};
use backflow_protocol::wire::SCHEMA_HEADER_BYTES_MAX;
use backflow_topology::RegionCode;

use crate::partition::Format;
use crate::publish::{schema_for, GroupLoader, OUTBOARD_STORED_BYTES_MIN};
use crate::store::{is_inline, Store};

/// Kept off the longest manifest validity, so clock skew between the nodes cannot make it
/// look too long.
const DELIVERY_VALIDITY_MARGIN_MS: u64 = HOUR_MS;

/// Bytes read from the input (and from the spill file) at a time.
const READ_BYTES: usize = 8 * 1024 * 1024;

/// What to stage.
#[derive(Clone, Debug)]
pub struct DeliveryRequest {
    /// The share request granted.
    pub request: Hash,
    /// The requester's region: the one partition's, and the manifest's scope.
    pub requester: RegionCode,
    /// The end of the grant's term of use (使用时限): the delivered data expires with it.
    pub use_until: UnixMs,
    /// The provider department (the manifest's publisher department).
    pub department: String,
    pub format: Format,
    /// Scratch space for the body, spilled once while it is hashed.
    pub work_dir: PathBuf,
    /// The delivered version this one corrects (its version, manifest hash; Art. 26), or
    /// `None` for the first delivery.
    pub corrects: Option<(u64, Hash)>,
}

/// A staged delivery: its content stored and synced, the manifest signed.
pub struct Staged {
    pub manifest: SignedManifest,
    pub entry: PartitionEntry,
}

/// The delivered dataset's name at the requester (`backflow export --dataset …`).
pub fn dataset_name(request: &Hash) -> String {
    format!("share-{}", &hex::encode(request)[..16])
}

/// Reads `input` once (a request body as it streams): the CSV header line into the schema,
/// the rest hashed as it is spilled to the work directory, then stored as the partition's
/// content and synced; builds and signs the delivery manifest.
pub fn stage(
    store: &Store,
    identity: &NodeIdentity,
    req: &DeliveryRequest,
    input: &mut dyn Read,
    now: UnixMs,
) -> Result<Staged> {
    let mut input = BufReader::with_capacity(READ_BYTES, input);
    let header = match req.format {
        Format::Csv => read_header(&mut input)?,
        Format::Ndjson => Vec::new(),
    };
    let schema = schema_for(req.format, &header, "")?;
    std::fs::create_dir_all(&req.work_dir)
        .with_context(|| format!("creating {}", req.work_dir.display()))?;
    let spill_path = req.work_dir.join("delivery.body");
    let mut spill =
        File::create(&spill_path).with_context(|| format!("creating {}", spill_path.display()))?;
    let mut hasher = OutboardBuilder::new();
    let (mut bytes, mut records, mut last) = (0u64, 0u64, b'\n');
    let mut buf = vec![0u8; READ_BYTES];
    loop {
        let n = input.read(&mut buf).context("reading the data")?;
        if n == 0 {
            break;
        }
        let piece = &buf[..n];
        hasher.push(piece);
        spill.write_all(piece).context("spilling the data")?;
        records += memchr_count(piece);
        bytes += n as u64;
        last = piece[n - 1];
    }
    if bytes == 0 {
        bail!("no records to deliver: the data after the header line is empty");
    }
    if last != b'\n' {
        // The last line gets its terminator, as a publish gives it: every record is a line.
        hasher.push(b"\n");
        spill.write_all(b"\n").context("spilling the data")?;
        records += 1;
        bytes += 1;
    }
    drop(spill);
    let (content_hash, outboard) = hasher.finish();
    let mut spilled =
        File::open(&spill_path).with_context(|| format!("opening {}", spill_path.display()))?;
    if is_inline(bytes) {
        let mut data = Vec::with_capacity(bytes as usize);
        spilled.read_to_end(&mut data)?;
        store.load_inline(&content_hash, &data)?;
    } else {
        let mut loader = GroupLoader::new(store, content_hash, bytes);
        loop {
            let n = spilled.read(&mut buf)?;
            if n == 0 {
                break;
            }
            loader.push(&buf[..n])?;
        }
        if loader.finish()? != bytes {
            bail!("the spilled data changed while it was stored");
        }
        store.sync_content(&content_hash)?;
    }
    if bytes >= OUTBOARD_STORED_BYTES_MIN {
        store.put_outboard(&content_hash, &outboard)?;
    }
    // Durable before the manifest that refers to it is published.
    store.flush()?;
    let _ = std::fs::remove_file(&spill_path);
    let entry = PartitionEntry {
        region: req.requester,
        content_hash,
        bytes,
        records,
        schema_hash: schema.hash(),
    };
    let (version, previous) = match req.corrects {
        Some((version, hash)) => (version + 1, Some(hash)),
        None => (1, None),
    };
    let mut manifest = build_manifest(
        dataset_name(&req.request),
        version,
        CatalogOrigin {
            region: identity.region,
            department: req.department.clone(),
        },
        req.requester,
        now,
        expires_at(now, req.use_until),
        previous,
        schema,
        &[entry],
    )?;
    manifest.delivers = Some(req.request);
    Ok(Staged {
        manifest: SignedManifest::sign(manifest, identity)?,
        entry,
    })
}

/// When the delivered data expires: with the term of use (使用时限; past it, the requester's
/// node no longer exports it), but no later than a manifest may be valid
/// ([`ManifestPolicy::validity_ms_max`], 90 days): a longer term needs the provider to
/// deliver again before then.
fn expires_at(now: UnixMs, use_until: UnixMs) -> UnixMs {
    let longest =
        now.plus_ms(ManifestPolicy::default().validity_ms_max - DELIVERY_VALIDITY_MARGIN_MS);
    use_until.min(longest)
}

/// The CSV header line, terminator included (kept verbatim for export), bounded.
fn read_header(input: &mut impl BufRead) -> Result<Vec<u8>> {
    let mut header = Vec::new();
    let limit = SCHEMA_HEADER_BYTES_MAX as u64 + 2;
    input
        .take(limit)
        .read_until(b'\n', &mut header)
        .context("reading the header line")?;
    if header.last() != Some(&b'\n') {
        if header.len() as u64 >= limit {
            bail!("the header line is longer than {SCHEMA_HEADER_BYTES_MAX} bytes");
        }
        bail!("the data has no header line followed by records");
    }
    Ok(header)
}

fn memchr_count(piece: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', piece).count() as u64
}
