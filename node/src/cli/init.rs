//! `backflow init`: a new node's key pair and config in its data directory.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{bail, Result};
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
    /// National root public key (hex). Omit at the national node: its key is the anchor.
    #[arg(long)]
    anchor: Option<String>,
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
    anchor: Option<String>,
    listen: String,
    parent: Option<String>,
    http: SocketAddr,
    department: String,
) -> Result<()> {
    if dir.join(config::CONFIG_FILE).exists() {
        bail!("{} is already initialised", dir.display());
    }
    let code = Topology::china().lookup(region)?.code;
    std::fs::create_dir_all(dir)?;
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let public = hex::encode(key.verifying_key().as_bytes());
    let anchor = match (code == RegionCode::NATIONAL, anchor) {
        (true, None) => public.clone(),
        (true, Some(_)) => bail!("the national node's key is the trust anchor; omit --anchor"),
        (false, Some(a)) => {
            config::parse_public_key(&a)?;
            a
        }
        (false, None) => {
            bail!("--anchor (the national root public key) is required below national")
        }
    };
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
        tuning: Tuning::default(),
    };
    cfg.save(dir)?;
    let peer = peer_id_of(&key.verifying_key())?;
    println!("initialised {} for region {code}", dir.display());
    println!("public key: {public}");
    println!("peer id:    {peer}");
    if code != RegionCode::NATIONAL {
        println!(
            "next: the parent runs `backflow cert issue --region {code} --key {public} --out {code}.chain`, \
             then here `backflow cert install {code}.chain`"
        );
    }
    Ok(())
}
