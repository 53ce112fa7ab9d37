//! Node configuration (TOML) and on-disk identity.
//!
//! A data directory holds:
//! - `config.toml` — region, listen addresses, parent address, trust anchor, HTTP address;
//! - `node.key` — the node's ed25519 secret key (hex). It is also the libp2p identity, so the
//!   peer id in a certificate follows from the certified key;
//! - `chain.bin` — the node's certificate chain (from `backflow cert install`; absent for the
//!   national node, whose key is the anchor);
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

pub fn load_key(data_dir: &Path) -> Result<SigningKey> {
    let path = data_dir.join(KEY_FILE);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let bytes = hex_decode(text.trim())?;
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("{} must hold 32 bytes", path.display()))?;
    Ok(SigningKey::from_bytes(&arr))
}

pub fn save_key(data_dir: &Path, key: &SigningKey) -> Result<()> {
    let path = data_dir.join(KEY_FILE);
    std::fs::write(&path, hex::encode(key.to_bytes()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
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

pub fn save_chain(path: &Path, chain: &CertChain) -> Result<()> {
    std::fs::write(
        path,
        encode_value(chain).map_err(|e| anyhow::anyhow!("{e}"))?,
    )?;
    Ok(())
}

/// The node's signing identity from its data directory.
pub fn load_identity(data_dir: &Path, cfg: &Config) -> Result<NodeIdentity> {
    let key = load_key(data_dir)?;
    let region = cfg.region_code()?;
    if region == RegionCode::NATIONAL {
        if key.verifying_key() != cfg.anchor()? {
            bail!("the national node's key must be the trust anchor");
        }
        return Ok(NodeIdentity::national(key));
    }
    let chain = load_chain(data_dir)?.with_context(|| {
        format!(
            "no certificate installed in {}: ask the parent to run `backflow cert issue` and \
             install it with `backflow cert install`",
            data_dir.display()
        )
    })?;
    let leaf = chain.last().context("empty certificate chain")?;
    if leaf.body.subject != region || leaf.body.subject_key != key.verifying_key() {
        bail!(
            "installed certificate is for {} with another key",
            leaf.body.subject
        );
    }
    Ok(NodeIdentity { region, key, chain })
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

    #[test]
    fn fault_switch_cannot_come_from_a_config_file() {
        let err = parse("[tuning]\nfault_tamper_serve = true\n").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
