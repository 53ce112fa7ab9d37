//! `backflow root init|certify`: the offline root (根密钥), the trust anchor of the whole
//! network. It lives in a directory of its own on a machine that stays offline — never in a
//! node's data directory — and signs one thing: the national certificate for the national
//! node's key (again when that key is rotated). Every node's `trust_anchor` is its public key.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use backflow_node::config::{self, parse_public_key};
use backflow_node::node::{now_ms, peer_id_of};
use backflow_protocol::cert::{CertRequest, Certificate, TrustStore};
use backflow_protocol::time::DAY_MS;
use backflow_topology::RegionCode;
use clap::Subcommand;
use ed25519_dalek::SigningKey;

/// The root's secret key (hex), owner-only.
pub const ROOT_KEY_FILE: &str = "root.key";
/// The root's public key (hex): the trust anchor, to copy out to every node's configuration.
pub const ROOT_PUBLIC_FILE: &str = "root.pub";
/// 64 hex digits and perhaps a newline.
const ROOT_KEY_FILE_BYTES_MAX: u64 = 66;

#[derive(Subcommand, Debug)]
pub enum RootCmd {
    /// Create the root key in ROOT_DIR (on an offline machine; not a node's data directory)
    /// and print its public key: the trust anchor (`--anchor`) of every node.
    Init {
        /// The root's directory (created if missing; must not be a node's data directory).
        #[arg(long)]
        dir: PathBuf,
    },
    /// Sign the national certificate for the national node's key; the national node installs
    /// it with `backflow cert install`.
    Certify {
        /// The root's directory (from `backflow root init`).
        #[arg(long)]
        dir: PathBuf,
        /// The national node's public key (hex, printed by its `backflow init --region 0`).
        #[arg(long)]
        key: String,
        /// The national node's peer id (printed by its `init`); checked against the key, so
        /// a mistyped key is caught before it is signed. Derived from the key if omitted.
        #[arg(long)]
        peer_id: Option<String>,
        /// Validity in days from now.
        #[arg(long, default_value_t = 365)]
        days: u64,
        /// Where to write the national node's chain (its national certificate).
        #[arg(long)]
        out: PathBuf,
    },
    /// Revoke a national key (after a compromise, or once the national node runs on a new
    /// one): writes the root's signed revocation, which the national node (or any node) takes
    /// with `backflow cert revoke --file`; it then reaches every node.
    Revoke {
        /// The root's directory (from `backflow root init`).
        #[arg(long)]
        dir: PathBuf,
        /// The national key to revoke (hex).
        #[arg(long)]
        key: String,
        /// Where to write the signed revocation.
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(cmd: RootCmd) -> Result<()> {
    match cmd {
        RootCmd::Init { dir } => init(&dir),
        RootCmd::Certify {
            dir,
            key,
            peer_id,
            days,
            out,
        } => certify(&dir, &key, peer_id.as_deref(), days, &out),
        RootCmd::Revoke { dir, key, out } => revoke(&dir, &key, &out),
    }
}

/// Refuses a directory that is (or looks like) a node's data directory: the root key must
/// never sit where a running node, its backups or its operators' tools reach.
fn not_a_node_dir(dir: &Path) -> Result<()> {
    for entry in [
        config::CONFIG_FILE,
        config::DB_DIR,
        config::KEY_FILE,
        config::CHAIN_FILE,
    ] {
        if dir.join(entry).exists() {
            bail!(
                "{} holds {entry}: it is a node's data directory; the root key must be kept \
                 apart from every node (use a directory of its own on an offline machine)",
                dir.display()
            );
        }
    }
    Ok(())
}

fn init(dir: &Path) -> Result<()> {
    not_a_node_dir(dir)?;
    let key_path = dir.join(ROOT_KEY_FILE);
    if key_path.exists() {
        bail!("{} already holds a root key", dir.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let root = SigningKey::generate(&mut rand::rngs::OsRng);
    backflow_api::secret_file::write_private(&key_path, &hex::encode(root.to_bytes()))?;
    let public = hex::encode(root.verifying_key().as_bytes());
    std::fs::write(dir.join(ROOT_PUBLIC_FILE), format!("{public}\n"))?;
    outln!(
        "root key created in {} (mode 0600; keep this machine offline)",
        key_path.display()
    )?;
    outln!("root public key: {public}")?;
    outln!(
        "next: copy out only the public key ({}); every node, national included, is \
         initialised with `backflow init … --anchor {public}`; then here \
         `backflow root certify --dir {} --key <national public key> --out national.chain`",
        dir.join(ROOT_PUBLIC_FILE).display(),
        dir.display()
    )?;
    Ok(())
}

fn load_root(dir: &Path) -> Result<SigningKey> {
    not_a_node_dir(dir)?;
    let path = dir.join(ROOT_KEY_FILE);
    let text = backflow_api::secret_file::read_private(&path, ROOT_KEY_FILE_BYTES_MAX)
        .with_context(|| {
            format!(
                "no root key in {} (run `backflow root init`)",
                dir.display()
            )
        })?;
    let bytes = config::hex_decode(text.trim()).with_context(|| format!("{}", path.display()))?;
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("{} must hold 32 bytes", path.display()))?;
    Ok(SigningKey::from_bytes(&arr))
}

fn revoke(dir: &Path, key: &str, out: &Path) -> Result<()> {
    let root = load_root(dir)?;
    let national = parse_public_key(key).context("--key")?;
    if national == root.verifying_key() {
        bail!("--key is the root's own public key; the root revokes national keys, never itself");
    }
    let r = backflow_protocol::cert::Revocation::issue_by_root(&root, national, now_ms());
    let bytes = backflow_protocol::wire::encode_value(&r).map_err(|e| anyhow::anyhow!("{e}"))?;
    std::fs::write(out, bytes).with_context(|| format!("writing {}", out.display()))?;
    outln!(
        "wrote the root's revocation of national key {key} to {}; hand it to the national node:          backflow cert revoke --file {}",
        out.display(),
        out.display()
    )?;
    Ok(())
}

fn certify(dir: &Path, key: &str, peer_id: Option<&str>, days: u64, out: &Path) -> Result<()> {
    let root = load_root(dir)?;
    let national = parse_public_key(key).context("--key")?;
    if national == root.verifying_key() {
        bail!("--key is the root's own public key; the root certifies the national node's key, never itself");
    }
    let derived = peer_id_of(&national)?;
    if let Some(given) = peer_id {
        let given: libp2p::PeerId = given
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("--peer-id is not a libp2p peer id"))?;
        if given != derived {
            bail!(
                "--peer-id {given} does not belong to --key (whose peer id is {derived}); \
                 check both against the national node's `backflow init` output"
            );
        }
    }
    if days == 0 {
        bail!("--days must be at least 1");
    }
    let now = now_ms();
    let cert = Certificate::issue_national(
        &root,
        CertRequest {
            subject: RegionCode::NATIONAL,
            subject_key: national,
            peer_id: derived.to_bytes(),
            not_before: now.minus_ms(5 * 60_000),
            not_after: now.plus_ms(days.saturating_mul(DAY_MS)),
            serial: now.0,
        },
    )?;
    let chain = vec![cert];
    // What every node will check: the chain verifies to this root and names the key.
    let id = TrustStore::new_root(root.verifying_key())
        .verify_chain(&chain, now)
        .map_err(|e| anyhow::anyhow!("the new national certificate does not verify: {e}"))?;
    debug_assert_eq!(id.key, national);
    config::save_chain(out, &chain)?;
    outln!(
        "signed the national certificate for {key} (peer id {derived}), valid {days} days → {}",
        out.display()
    )?;
    outln!(
        "next: at the national node `backflow cert install --data <DIR> {}`",
        out.display()
    )?;
    Ok(())
}
