//! `backflow cert issue|install|revoke|revocations`: jurisdiction certificates — a parent
//! signs its child's, the child verifies and installs the chain. The national node installs
//! the national certificate signed by the offline root (`backflow root certify`) the same way.
//! Any ancestor revokes a descendant's key through its running node, which spreads the
//! revocation to every node in that region's line.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use backflow_node::config::{self, Config};
use backflow_node::node::{now_ms, peer_id_of};
use backflow_protocol::cert::TrustStore;
use backflow_protocol::time::DAY_MS;
use backflow_topology::{RegionCode, Topology};
use clap::Subcommand;

use super::common::{call, DataArg};

#[derive(Subcommand, Debug)]
pub enum CertCmd {
    /// Sign a child's certificate with this (parent) node's key; writes the child's chain.
    Issue {
        #[command(flatten)]
        data: DataArg,
        /// The child's region code.
        #[arg(long)]
        region: String,
        /// The child's public key (hex, printed by its `backflow init`).
        #[arg(long)]
        key: String,
        #[arg(long, default_value_t = 365)]
        days: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Install the chain issued by the parent (at the national node: the national certificate
    /// from `backflow root certify`) into this node's data dir, after verifying it.
    Install {
        #[command(flatten)]
        data: DataArg,
        file: PathBuf,
    },
    /// Revoke the key of a region below this node (after a compromise or a lost key), through
    /// the running node: in force here at once, spread to every node in that region's line
    /// within seconds, kept across restarts. The region's node is refused from then on — and
    /// so is every certificate its key issued (its descendants need new ones, under its new
    /// key). Without `--key`, the key of that region's node connected now.
    Revoke {
        #[command(flatten)]
        data: DataArg,
        /// The region code (or name) whose key is revoked.
        #[arg(long, required_unless_present = "file")]
        region: Option<String>,
        /// The key to revoke (hex, as `backflow init` printed it).
        #[arg(long)]
        key: Option<String>,
        /// Instead: a signed revocation made elsewhere (the root's, `backflow root revoke`),
        /// to put in force here and spread.
        #[arg(long, conflicts_with_all = ["region", "key"])]
        file: Option<PathBuf>,
    },
    /// List the revocations in force at the running node.
    Revocations {
        #[command(flatten)]
        data: DataArg,
    },
    /// Start a key rotation: a new key in `node.key.next` (owner-only), printed for the
    /// parent, which issues its chain (`cert issue --key <new key>`); `cert install` of that
    /// chain makes it this node's key (restart the node then). Transfers, receipts and data
    /// stay; peers find the node at its address whatever its key.
    Rotate {
        #[command(flatten)]
        data: DataArg,
    },
}

pub fn run(cmd: CertCmd) -> Result<()> {
    match cmd {
        CertCmd::Issue {
            data,
            region,
            key,
            days,
            out,
        } => issue(&data.dir, &region, &key, days, &out),
        CertCmd::Install { data, file } => install(&data.dir, &file),
        CertCmd::Revoke {
            data,
            region,
            key,
            file,
        } => match (file, region) {
            (Some(file), _) => submit_revocation(&data.dir, &file),
            (None, Some(region)) => revoke(&data.dir, &region, key),
            (None, None) => bail!("give --region (and optionally --key), or --file"),
        },
        CertCmd::Rotate { data } => rotate(&data.dir),
        CertCmd::Revocations { data } => {
            let list = call(&data.dir, "GET", "/api/revocations", None)?;
            outln!("{}", serde_json::to_string_pretty(&list)?)?;
            Ok(())
        }
    }
}

fn rotate(dir: &Path) -> Result<()> {
    let cfg = Config::load(dir)?;
    let old = config::load_key(dir)?;
    let next_path = dir.join(config::NEXT_KEY_FILE);
    if next_path.exists() {
        bail!(
            "a rotation is already under way ({} exists): install the chain the parent issued for              its key with `backflow cert install`, or delete that file to start over",
            next_path.display()
        );
    }
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    config::save_key_file(&next_path, &key)?;
    let public = hex::encode(key.verifying_key().as_bytes());
    let region = cfg.region_code()?;
    outln!("new key written to {} (mode 0600)", next_path.display())?;
    outln!("new public key: {public}")?;
    outln!("new peer id:    {}", peer_id_of(&key.verifying_key())?)?;
    outln!(
        "old public key: {}",
        hex::encode(old.verifying_key().as_bytes())
    )?;
    outln!("next:")?;
    outln!("  1. at the parent: backflow cert issue --region {region} --key {public} --out {region}.chain")?;
    outln!("  2. here: backflow cert install {region}.chain, then restart this node")?;
    outln!(
        "  3. at the parent, once this node runs with its new key: backflow cert revoke --region {region} --key {}",
        hex::encode(old.verifying_key().as_bytes())
    )?;
    Ok(())
}

/// A signed revocation is a few hundred bytes; anything much larger is not one.
const REVOCATION_FILE_BYTES_MAX: u64 = 16 * 1024;

fn submit_revocation(dir: &Path, file: &Path) -> Result<()> {
    let len = std::fs::metadata(file)
        .with_context(|| format!("reading {}", file.display()))?
        .len();
    if len > REVOCATION_FILE_BYTES_MAX {
        bail!(
            "{} is {len} bytes; a signed revocation is at most {REVOCATION_FILE_BYTES_MAX}",
            file.display()
        );
    }
    let bytes = std::fs::read(file)?;
    let body = serde_json::json!({ "signed": hex::encode(bytes) });
    let view = call(dir, "POST", "/api/revocations", Some(&body))?;
    outln!(
        "the revocation of {}'s key {} is in force here, spreading to every node in its line",
        view["subject"].as_str().unwrap_or("?"),
        view["key"].as_str().unwrap_or("?")
    )?;
    Ok(())
}

fn revoke(dir: &Path, region: &str, key: Option<String>) -> Result<()> {
    let region = Topology::china().lookup(region)?.code;
    if let Some(k) = &key {
        // Checked here too, so a typo is reported before the node is asked.
        config::parse_public_key(k)?;
    }
    let body = serde_json::json!({ "region": region.to_string(), "key": key });
    let view = call(dir, "POST", "/api/revocations", Some(&body))?;
    outln!(
        "revoked the key {} of {} — in force here, spreading to every node in its line",
        view["key"].as_str().unwrap_or("?"),
        view["subject"].as_str().unwrap_or("?")
    )?;
    Ok(())
}

fn issue(dir: &Path, region: &str, key: &str, days: u64, out: &Path) -> Result<()> {
    let cfg = Config::load(dir)?;
    let identity = config::load_identity(dir, &cfg)?;
    let child = Topology::china().lookup(region)?.code;
    if child.parent() != Some(identity.region) {
        bail!(
            "{child} is not a child of this node's region {}; only the parent issues its certificate",
            identity.region
        );
    }
    let child_key = config::parse_public_key(key)?;
    let now = now_ms();
    let cert = backflow_protocol::cert::Certificate::issue(
        identity.region,
        &identity.key,
        backflow_protocol::cert::CertRequest {
            subject: child,
            subject_key: child_key,
            peer_id: peer_id_of(&child_key)?.to_bytes(),
            not_before: now.minus_ms(5 * 60_000),
            not_after: now.plus_ms(days * DAY_MS),
            serial: now.0,
        },
    )?;
    let mut chain = identity.chain.clone();
    chain.push(cert);
    config::save_chain(out, &chain)?;
    outln!(
        "issued certificate for {child} valid {days} days → {}",
        out.display()
    )?;
    Ok(())
}

fn install(dir: &Path, file: &Path) -> Result<()> {
    let cfg = Config::load(dir)?;
    let key = config::load_key(dir)?;
    let bytes = std::fs::read(file)?;
    let chain: backflow_protocol::cert::CertChain =
        backflow_protocol::wire::decode_exact(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: not a certificate chain: {e}", file.display()))?;
    // The anchor is the offline root: every chain, the national node's included, opens with
    // the national certificate the root signed.
    match chain.first() {
        None => bail!(
            "{} is an empty chain; the national node installs its national certificate \
             (`backflow root certify`), every other node the chain its parent issued",
            file.display()
        ),
        Some(first) if first.body.subject != RegionCode::NATIONAL => bail!(
            "{} does not open with the national certificate (it starts at {}): was it issued \
             by a parent that has not installed its own chain yet?",
            file.display(),
            first.body.subject
        ),
        Some(_) => {}
    }
    let id = TrustStore::new(cfg.anchor()?)
        .verify_chain(&chain, now_ms())
        .map_err(|e| anyhow::anyhow!("certificate chain does not verify: {e}"))?;
    let next_path = dir.join(config::NEXT_KEY_FILE);
    let next = if next_path.exists() {
        Some(config::load_key_file(&next_path)?)
    } else {
        None
    };
    let region = cfg.region_code()?;
    let rotating =
        id.region == region && next.as_ref().is_some_and(|n| id.key == n.verifying_key());
    if id.region != region || (id.key != key.verifying_key() && !rotating) {
        bail!(
            "this certificate is for {} with another key, not for this node{}",
            id.region,
            if next.is_some() {
                " (nor for the key of the rotation under way)"
            } else {
                ""
            }
        );
    }
    // Chain first, then the key: a crash between the two leaves `node.key.next` in place, the
    // node refuses to start (its chain names another key), and running install again ends it.
    config::save_chain(&dir.join(config::CHAIN_FILE), &chain)?;
    if rotating {
        let key_path = dir.join(config::KEY_FILE);
        std::fs::rename(&next_path, &key_path)
            .map_err(|e| anyhow::anyhow!("making {} the node key: {e}", next_path.display()))?;
        config::sync_dir(&key_path)?;
        outln!(
            "rotated: {region}'s key is now {} (the old key {} is gone); restart the node",
            hex::encode(id.key.as_bytes()),
            hex::encode(key.verifying_key().as_bytes())
        )?;
    }
    outln!(
        "installed certificate chain for {} (valid until {} ms)",
        id.region,
        id.not_after.0
    )?;
    Ok(())
}
