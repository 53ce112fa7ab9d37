//! `backflow init`: a new node's key pair and config in its data directory.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{bail, Context, Result};
use backflow_api::ApiToken;
use backflow_node::config::{self, Config};
use backflow_node::node::peer_id_of;
use backflow_protocol::tuning::Tuning;
use backflow_topology::{RegionCode, Topology};
use ed25519_dalek::SigningKey;

use super::common::DataArg;

#[derive(clap::Args, Debug)]
pub struct InitArgs {
    #[command(flatten)]
    data: DataArg,
    /// This node's region code (0 for national).
    #[arg(long)]
    region: String,
    /// The offline root's public key (hex, printed by `backflow root init`): the trust
    /// anchor. Required at every node, national included.
    #[arg(long)]
    anchor: String,
    /// libp2p listen address.
    #[arg(long, default_value = "/ip4/0.0.0.0/tcp/7400")]
    listen: String,
    /// Parent's multiaddr with /p2p/<peer id>.
    #[arg(long)]
    parent: Option<String>,
    /// HTTP API address (keep it on loopback unless behind a proxy).
    #[arg(long, default_value = "127.0.0.1:7480")]
    http: SocketAddr,
    /// Department that publishes from this node.
    #[arg(long, default_value = "data-authority")]
    department: String,
}

pub fn run(args: InitArgs) -> Result<()> {
    let InitArgs {
        data,
        region,
        anchor,
        listen,
        parent,
        http,
        department,
    } = args;
    init(&data.dir, &region, anchor, listen, parent, http, department)
}

fn init(
    dir: &Path,
    region: &str,
    anchor: String,
    listen: String,
    parent: Option<String>,
    http: SocketAddr,
    department: String,
) -> Result<()> {
    if dir.join(config::CONFIG_FILE).exists() {
        bail!("{} is already initialised", dir.display());
    }
    if dir.join(super::root::ROOT_KEY_FILE).exists() {
        bail!(
            "{} holds the root key; a node's data directory must be elsewhere (the root stays \
             offline)",
            dir.display()
        );
    }
    let code = Topology::china().lookup(region)?.code;
    // The anchor is the offline root's key, never a node's (checked again at start).
    let anchor = hex::encode(
        config::parse_public_key(&anchor)
            .context("--anchor (the root public key from `backflow root init`)")?
            .as_bytes(),
    );
    std::fs::create_dir_all(dir)?;
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let public = hex::encode(key.verifying_key().as_bytes());
    if code != RegionCode::NATIONAL && parent.is_none() {
        eprintln!("note: no --parent given; add `parent = \"/ip4/…/tcp/…/p2p/…\"` to config.toml before `run`");
    }
    config::save_key(dir, &key)?;
    let cfg = Config {
        region: code.to_string(),
        department,
        listen: vec![listen],
        parent,
        ancestors: Vec::new(),
        trust_anchor: anchor,
        http,
        http_allow_remote: false,
        http_hosts: Vec::new(),
        import_dir: None,
        export_dir: None,
        tuning: Tuning::default(),
    };
    cfg.save(dir)?;
    ApiToken::create(dir)?;
    let peer = peer_id_of(&key.verifying_key())?;
    outln!("initialised {} for region {code}", dir.display())?;
    outln!("public key: {public}")?;
    outln!("peer id:    {peer}")?;
    outln!(
        "API token:  {} (mode 0600; send it as `Authorization: Bearer <token>`)",
        dir.join(backflow_api::token::TOKEN_FILE).display()
    )?;
    if code == RegionCode::NATIONAL {
        outln!(
            "next: on the offline root machine `backflow root certify --dir <ROOT_DIR> --key {public} \
             --peer-id {peer} --out national.chain`, then here \
             `backflow cert install --data {} national.chain`",
            dir.display()
        )?;
    } else {
        outln!(
            "next: the parent runs `backflow cert issue --region {code} --key {public} --out {code}.chain`, \
             then here `backflow cert install {code}.chain`"
        )?;
    }
    Ok(())
}
