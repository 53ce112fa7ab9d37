//! Node configuration (TOML) and on-disk identity.
//!
//! A data directory holds:
//! - `config.toml` — region, listen addresses, parent address, trust anchor, HTTP address;
//! - `node.key` — the node's ed25519 secret key (hex), mode 0600. It is also the libp2p
//!   identity, so the peer id in a certificate follows from the certified key;
//! - `api.token` — the local HTTP API's bearer token (hex), mode 0600;
//! - `chain.bin` — the node's certificate chain (from `backflow cert install`); the national
//!   node's is its national certificate, signed by the offline root whose public key is the
//!   trust anchor (see `backflow root`);
//! - `db/` — RocksDB.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use backflow_protocol::cert::{CertChain, NodeIdentity};
use backflow_protocol::tuning::Tuning;
use backflow_protocol::wire::{decode_exact, encode_value};
use backflow_topology::{RegionCode, Topology};
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

pub const CONFIG_FILE: &str = "config.toml";
pub const KEY_FILE: &str = "node.key";
/// The key a rotation (`backflow cert rotate`) created, until `cert install` of the chain the
/// parent issued for it makes it `node.key`.
pub const NEXT_KEY_FILE: &str = "node.key.next";
pub const CHAIN_FILE: &str = "chain.bin";
pub const DB_DIR: &str = "db";

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This node's jurisdiction (0 for national).
    pub region: String,
    /// Department name used as the publisher of manifests and catalog entries.
    #[serde(default = "default_department")]
    pub department: String,
    /// libp2p listen multiaddrs, e.g. `/ip4/127.0.0.1/tcp/7400`.
    pub listen: Vec<String>,
    /// The parent node's multiaddr including `/p2p/<peer id>`; absent at national.
    #[serde(default)]
    pub parent: Option<String>,
    /// Ancestors to fall back to when the parent stays unreachable (skip-level fallback).
    #[serde(default)]
    pub ancestors: Vec<String>,
    /// National root public key (hex): the trust anchor, installed out of band.
    pub trust_anchor: String,
    /// Local HTTP JSON API; loopback by default (ministry systems on the same host).
    #[serde(default = "default_http")]
    pub http: SocketAddr,
    /// Allow `http` on a non-loopback address. Off by default: the API then answers anyone
    /// who can reach the address and holds the token, so put it behind TLS (a reverse proxy).
    #[serde(default)]
    pub http_allow_remote: bool,
    /// Host names (with port, as in the `Host` header) the API also answers to, e.g. a
    /// reverse proxy's. The bound address (and `localhost:<port>` on loopback) always count.
    #[serde(default)]
    pub http_hosts: Vec<String>,
    /// The only directory `POST /api/publish/file` may read from; absent: path-based publish
    /// is off (send the data as the body of `POST /api/publish`). Must not contain this data
    /// directory.
    #[serde(default)]
    pub import_dir: Option<PathBuf>,
    /// The only directory `POST /api/export` may write to; absent: path-based export is off
    /// (`GET /api/export` streams the records). Must not contain this data directory.
    #[serde(default)]
    pub export_dir: Option<PathBuf>,
    /// Protocol timers and windows; defaults suit a national deployment.
    #[serde(default)]
    pub tuning: Tuning,
}

fn default_department() -> String {
    "data-authority".to_string()
}

fn default_http() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7480))
}

impl Config {
    pub fn load(data_dir: &Path) -> Result<Config> {
        let path = data_dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {} (run `backflow init` first)", path.display()))?;
        let cfg: Config =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        cfg.region_code()?;
        cfg.anchor()?;
        cfg.tuning
            .validate()
            .with_context(|| format!("in {}", path.display()))?;
        Ok(cfg)
    }

    /// The daemon's check before it binds the API: a non-loopback `http` needs
    /// `http_allow_remote = true`.
    pub fn check_http_bind(&self) -> Result<()> {
        if !self.http.ip().is_loopback() && !self.http_allow_remote {
            bail!(
                "http = {} is not a loopback address; the local API would be reachable from \
                 the network. Bind it to 127.0.0.1, or set http_allow_remote = true in \
                 config.toml (and put it behind TLS)",
                self.http
            );
        }
        Ok(())
    }

    pub fn save(&self, data_dir: &Path) -> Result<()> {
        std::fs::create_dir_all(data_dir)?;
        std::fs::write(data_dir.join(CONFIG_FILE), toml::to_string_pretty(self)?)?;
        Ok(())
    }

    pub fn region_code(&self) -> Result<RegionCode> {
        Ok(Topology::china().lookup(&self.region)?.code)
    }

    pub fn anchor(&self) -> Result<VerifyingKey> {
        parse_public_key(&self.trust_anchor).context("config trust_anchor")
    }
}

pub fn parse_public_key(hex_text: &str) -> Result<VerifyingKey> {
    let bytes = hex_decode(hex_text.trim())?;
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("a public key is 32 bytes (64 hex digits)"))?;
    Ok(VerifyingKey::from_bytes(&arr)?)
}

/// Decodes hex text. The error never repeats the text: it may be a secret key.
pub fn hex_decode(text: &str) -> Result<Vec<u8>> {
    hex::decode(text).map_err(|_| anyhow::anyhow!("not a hex string ({} characters)", text.len()))
}

/// The key file holds 64 hex digits and perhaps a newline.
const KEY_FILE_BYTES_MAX: u64 = 66;

/// Reads the node's secret key, refusing a key file that group or others may access.
pub fn load_key(data_dir: &Path) -> Result<SigningKey> {
    load_key_file(&data_dir.join(KEY_FILE))
}

/// Reads a secret key file (owner-only, at most 66 bytes of hex).
pub fn load_key_file(path: &Path) -> Result<SigningKey> {
    let path = path.to_path_buf();
    let text = backflow_api::secret_file::read_private(&path, KEY_FILE_BYTES_MAX)?;
    let bytes = hex_decode(text.trim()).with_context(|| format!("{}", path.display()))?;
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("{} must hold 32 bytes", path.display()))?;
    Ok(SigningKey::from_bytes(&arr))
}

/// Writes a new key file, owner-only from the start; never overwrites one.
pub fn save_key(data_dir: &Path, key: &SigningKey) -> Result<()> {
    save_key_file(&data_dir.join(KEY_FILE), key)
}

/// Writes a new secret key file, owner-only from the start; never overwrites one.
pub fn save_key_file(path: &Path, key: &SigningKey) -> Result<()> {
    backflow_api::secret_file::write_private(path, &hex::encode(key.to_bytes()))
}

pub fn load_chain(data_dir: &Path) -> Result<Option<CertChain>> {
    let path = data_dir.join(CHAIN_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let bytes = std::fs::read(&path)?;
    Ok(Some(decode_exact(&bytes).map_err(|e| {
        anyhow::anyhow!("{}: not a certificate chain: {e}", path.display())
    })?))
}

/// Writes a chain file whole or not at all: a temporary file, synced, renamed over the old
/// one, and the directory synced (a crash leaves the old chain or the new one).
pub fn save_chain(path: &Path, chain: &CertChain) -> Result<()> {
    use std::io::Write;
    let bytes = encode_value(chain).map_err(|e| anyhow::anyhow!("{e}"))?;
    let tmp = path.with_extension("tmp");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    sync_dir(path)
}

/// Syncs the directory holding `path`, so a rename into it survives a power cut.
pub fn sync_dir(path: &Path) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))
}

/// The node's signing identity from its data directory: its key and its installed chain.
/// Every node, national included, holds a chain; the anchor (`trust_anchor`) is the offline
/// root's public key and is never a node's own key.
pub fn load_identity(data_dir: &Path, cfg: &Config) -> Result<NodeIdentity> {
    let key = load_key(data_dir)?;
    let region = cfg.region_code()?;
    refuse_anchor_key(&key, cfg)?;
    let chain = load_chain(data_dir)?.with_context(|| no_chain(data_dir, region, &key))?;
    if region == RegionCode::NATIONAL {
        return national_identity(key, chain);
    }
    let leaf = chain.last().context("empty certificate chain")?;
    if leaf.body.subject != region || leaf.body.subject_key != key.verifying_key() {
        bail!(
            "installed certificate is for {} with another key",
            leaf.body.subject
        );
    }
    Ok(NodeIdentity { region, key, chain })
}

/// Refuses a node whose own key is the trust anchor: the anchor (the root) stays offline.
fn refuse_anchor_key(key: &SigningKey, cfg: &Config) -> Result<()> {
    if key.verifying_key() == cfg.anchor()? {
        bail!(
            "this node's key is the trust anchor, but the trust anchor's key must stay offline: \
             create a root with `backflow root init --dir <ROOT_DIR>` on an offline machine, \
             set trust_anchor in config.toml to the root public key it prints, and have the \
             root certify this node's key (`backflow root certify`, then here \
             `backflow cert install`); the root's key never goes on a node"
        );
    }
    Ok(())
}

/// What to do when no chain is installed yet (the next step of the ceremony for this node).
fn no_chain(data_dir: &Path, region: RegionCode, key: &SigningKey) -> String {
    let public = hex::encode(key.verifying_key().as_bytes());
    if region == RegionCode::NATIONAL {
        format!(
            "no national certificate installed in {}: on the offline root machine run \
             `backflow root certify --dir <ROOT_DIR> --key {public} --out national.chain`, \
             then here `backflow cert install national.chain`",
            data_dir.display()
        )
    } else {
        format!(
            "no certificate installed in {}: ask the parent to run `backflow cert issue \
             --region {region} --key {public}` and install it with `backflow cert install`",
            data_dir.display()
        )
    }
}

/// The national node's identity: its chain is the national certificate for its key, issued
/// by the root (verified against the anchor when the node starts, and by `cert install`).
fn national_identity(key: SigningKey, chain: CertChain) -> Result<NodeIdentity> {
    let [cert]: [_; 1] = chain.try_into().map_err(|chain: CertChain| {
        anyhow::anyhow!(
            "the national node's chain must be its national certificate alone, found {} \
             certificates",
            chain.len()
        )
    })?;
    NodeIdentity::national_certified(key, cert)
        .context("the installed chain is not a national certificate for this node's key")
}

pub fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join(DB_DIR)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
region = "11"
listen = ["/ip4/127.0.0.1/tcp/0"]
trust_anchor = "0000000000000000000000000000000000000000000000000000000000000000"
"#;

    fn parse(extra: &str) -> Result<Config> {
        let cfg: Config = toml::from_str(&format!("{BASE}{extra}"))?;
        cfg.tuning.validate()?;
        Ok(cfg)
    }

    #[test]
    fn tuning_is_optional_and_defaults() {
        let cfg = parse("").unwrap();
        assert_eq!(cfg.tuning.source_silence_ms_max, 60_000);
    }

    #[test]
    fn tuning_section_overrides_only_what_it_names() {
        let cfg = parse("[tuning]\nsource_silence_ms_max = 10000\n").unwrap();
        assert_eq!(cfg.tuning.source_silence_ms_max, 10_000);
        assert_eq!(cfg.tuning.retry_ms, Tuning::default().retry_ms);
    }

    #[test]
    fn bad_tuning_reports_every_problem() {
        let err = parse("[tuning]\nretry_ms = 0\ngroups_in_flight_max = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("tuning.retry_ms"), "{err}");
        assert!(err.contains("tuning.groups_in_flight_max"), "{err}");
        let err = parse("[tuning]\nretry_ms = 9000\nsource_silence_ms_max = 1000\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least tuning.retry_ms"), "{err}");
    }

    /// A national data dir whose key is the anchor (as `init --region 0` made it before the
    /// offline root): refused at start, with the way out, whether or not a chain is there.
    #[test]
    fn a_national_node_whose_key_is_the_anchor_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[7; 32]);
        save_key(dir.path(), &key).unwrap();
        let cfg: Config = toml::from_str(&format!(
            "region = \"0\"\nlisten = []\ntrust_anchor = \"{}\"\n",
            hex::encode(key.verifying_key().as_bytes())
        ))
        .unwrap();
        let err = format!("{:#}", load_identity(dir.path(), &cfg).unwrap_err());
        assert!(err.contains("must stay offline"), "{err}");
        assert!(err.contains("backflow root init"), "{err}");
        save_chain(&dir.path().join(CHAIN_FILE), &Vec::new()).unwrap();
        let err = format!("{:#}", load_identity(dir.path(), &cfg).unwrap_err());
        assert!(err.contains("must stay offline"), "{err}");
    }

    /// The national node loads with the national certificate for its key, and not without.
    #[test]
    fn a_national_node_needs_its_national_certificate() {
        use backflow_protocol::cert::{CertRequest, Certificate};
        use backflow_protocol::time::UnixMs;
        let dir = tempfile::tempdir().unwrap();
        let root = SigningKey::from_bytes(&[1; 32]);
        let key = SigningKey::from_bytes(&[2; 32]);
        save_key(dir.path(), &key).unwrap();
        let cfg: Config = toml::from_str(&format!(
            "region = \"0\"\nlisten = []\ntrust_anchor = \"{}\"\n",
            hex::encode(root.verifying_key().as_bytes())
        ))
        .unwrap();
        let err = format!("{:#}", load_identity(dir.path(), &cfg).unwrap_err());
        assert!(err.contains("backflow root certify"), "{err}");
        let cert_for = |subject_key| {
            Certificate::issue_national(
                &root,
                CertRequest {
                    subject: RegionCode::NATIONAL,
                    subject_key,
                    peer_id: Vec::new(),
                    not_before: UnixMs(0),
                    not_after: UnixMs(u64::MAX),
                    serial: 1,
                },
            )
            .unwrap()
        };
        let chain_file = dir.path().join(CHAIN_FILE);
        save_chain(
            &chain_file,
            &vec![cert_for(SigningKey::from_bytes(&[3; 32]).verifying_key())],
        )
        .unwrap();
        let err = format!("{:#}", load_identity(dir.path(), &cfg).unwrap_err());
        assert!(
            err.contains("not a national certificate for this node"),
            "{err}"
        );
        save_chain(&chain_file, &vec![cert_for(key.verifying_key())]).unwrap();
        let id = load_identity(dir.path(), &cfg).unwrap();
        assert_eq!(id.region, RegionCode::NATIONAL);
        assert_eq!(id.chain.len(), 1);
    }

    #[test]
    fn fault_switch_cannot_come_from_a_config_file() {
        let err = parse("[tuning]\nfault_tamper_serve = true\n").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
