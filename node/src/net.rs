//! The libp2p side: TCP (TLS 1.3 or noise, then yamux) and QUIC, identify, ping, circuit
//! relay between nodes with no direct route ([`crate::relay`]), and two protocols that carry
//! protocol frames ([`backflow_protocol::wire`]):
//! - `/backflow/frame/1`, the control plane: request-response, one frame per request (hello,
//!   announces, chunk requests, receipts, catalog sync).
//! - `/backflow/chunks/1`, the data plane: one long-lived stream per peer and direction
//!   (libp2p-stream) carrying chunk frames back to back, read and written by their own tasks.
//!   Why: a megabyte frame per request-response stream paid a stream negotiation and a trip
//!   through the swarm's event loop each; the loop is the one task that routes every control
//!   frame, and it became the transfer's serial bottleneck.
//!
//! Why TLS 1.3 before noise on TCP: QUIC is TLS 1.3 anyway, so both transports share one
//! handshake and certificate format; and rustls (aws-lc) offers the hybrid post-quantum key
//! exchange X25519MLKEM768 first, where noise XX has only X25519 — this data must stay
//! confidential for years. The TLS upgrade is [`crate::tls`]: libp2p-tls's certificates and
//! server, with a dialer that offers AES-GCM first (hardware AES; libp2p-tls's own dialer
//! offers ChaCha20-Poly1305 first) and buffered sockets below TLS. Noise stays as the second
//! choice, so a peer that only speaks noise still connects. Note: libp2p-tls writes session
//! keys to the file named by `SSLKEYLOGFILE` if that is set — only possible in a build with
//! the `fault-injection` feature ([`crate::faults`]), which warns at start.
//!
//! Both use one framing: a u32 length prefix plus the frame, refusing any frame over
//! [`FRAME_BYTES_MAX`] (the protocol's named limit) *before* allocating, so the limit is
//! deliberate and equal on both sides. (The built-in cbor/json request-response codecs would
//! cap requests at 1 MiB.) Chunk frames are ≤ 1 MiB + 64 KiB by the protocol's
//! `CHUNK_FRAME_BYTES_MAX`.

use std::io;
use std::time::Duration;

use backflow_protocol::wire::FRAME_BYTES_MAX;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    connection_limits, identify, identity, noise, ping, quic, relay, tcp, yamux, Multiaddr,
    StreamProtocol, Swarm,
};

pub const FRAME_PROTOCOL: StreamProtocol = StreamProtocol::new("/backflow/frame/1");
pub const CHUNK_PROTOCOL: StreamProtocol = StreamProtocol::new("/backflow/chunks/1");
/// Identify's protocol version string: peers on another major version are visible in logs.
pub const IDENTIFY_VERSION: &str = "/backflow/1.0.0";
/// A request not answered within this time fails and the state machine retries it.
pub const REQUEST_TIMEOUT_MS: u64 = 60_000;
/// Concurrent inbound+outbound streams per connection: enough to keep a window of chunk
/// requests in flight, bounded so a peer cannot open streams without limit.
pub const STREAMS_PER_CONNECTION_MAX: usize = 256;
/// Parent/child connections are long-lived: keep them open while idle for this long; ping
/// detects dead ones much sooner.
pub const IDLE_CONNECTION_TIMEOUT_MS: u64 = 24 * 60 * 60 * 1000;
pub const PING_INTERVAL_MS: u64 = 15_000;
/// Inbound connections still in their transport handshake, at once: a flood of half-open
/// dials is cut off before it costs TLS/noise work.
pub const PENDING_INBOUND_CONNECTIONS_MAX: u32 = 128;
/// Established inbound connections in all. A parent's children, plus its descendants in a
/// skip-level fallback: a province whose cities and counties are all down serves up to ~3,500
/// townships directly. Below `PEERS_MAX` (16,384), the endpoint's own table.
pub const INBOUND_CONNECTIONS_MAX: u32 = 8_192;
/// Connections one peer id may hold: a dial from each side at once, a redial racing a dying
/// connection, a TCP and a QUIC path.
pub const CONNECTIONS_PER_PEER_MAX: u32 = 4;

/// Length-prefixed frames, both ways.
#[derive(Clone, Copy, Debug, Default)]
pub struct FrameCodec;

/// Reads one length-prefixed frame (≤ [`FRAME_BYTES_MAX`]).
pub async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let len = read_frame_into(io, &mut buf).await?;
    buf.truncate(len);
    Ok(buf)
}

/// Reads one length-prefixed frame into `buf[..len]` and returns `len`. `buf` keeps its size
/// between calls, so a stream of megabyte frames neither allocates nor zero-fills per frame.
pub async fn read_frame_into<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    buf: &mut Vec<u8>,
) -> io::Result<usize> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len) as usize;
    if len > FRAME_BYTES_MAX {
        // Refuse before allocating: a hostile length must not cost memory.
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the limit of {FRAME_BYTES_MAX} bytes"),
        ));
    }
    if buf.len() < len {
        buf.resize(len, 0);
    }
    io.read_exact(&mut buf[..len]).await?;
    Ok(len)
}

/// Writes one length-prefixed frame and flushes it.
pub async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, bytes: &[u8]) -> io::Result<()> {
    write_frame_parts(io, &[bytes]).await
}

/// Writes one length-prefixed frame given as consecutive parts (a chunk frame's head and its
/// payload, which is not copied into one buffer first) and flushes it.
pub async fn write_frame_parts<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    parts: &[&[u8]],
) -> io::Result<()> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if len > FRAME_BYTES_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to send a frame of {len} bytes"),
        ));
    }
    io.write_all(&(len as u32).to_le_bytes()).await?;
    for p in parts {
        io.write_all(p).await?;
    }
    io.flush().await
}

impl request_response::Codec for FrameCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &req).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &res).await
    }
}

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// First, so a connection over a limit is refused before the others see it.
    pub limits: connection_limits::Behaviour,
    pub ip_limits: crate::ip_limits::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub frames: request_response::Behaviour<FrameCodec>,
    pub chunks: libp2p_stream::Behaviour,
    /// Relays circuits for admitted peers ([`crate::relay`]).
    pub relay: relay::Behaviour,
    /// Reserves at upstream relays and dials relayed addresses ([`crate::relay`]).
    pub relay_client: relay::client::Behaviour,
}

/// Builds the swarm for an identity key (the node's ed25519 key doubles as its libp2p key, so
/// the certificate's peer id is derived from the certified key). `relay_admission` is who may
/// use this node as a relay: the endpoint's admission, kept up to date by the event loop.
pub fn build_swarm(
    keypair: identity::Keypair,
    relay_admission: &crate::relay::RelayAdmission,
) -> anyhow::Result<Swarm<Behaviour>> {
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            // Offered in this order; the listener picks the first it supports.
            (crate::tls::Config::new, noise::Config::new),
            || {
                let mut cfg = yamux::Config::default();
                cfg.set_max_num_streams(STREAMS_PER_CONNECTION_MAX);
                cfg
            },
        )?
        .with_quic_config(|mut cfg: quic::Config| {
            // Same stream bound as yamux: a window of chunk requests, not unbounded.
            cfg.max_concurrent_stream_limit = STREAMS_PER_CONNECTION_MAX as u32;
            cfg
        })
        // Relayed connections get the same security and multiplexing as direct TCP, end to
        // end between the two parties: the relay forwards ciphertext.
        .with_relay_client((crate::tls::Config::new, noise::Config::new), || {
            let mut cfg = yamux::Config::default();
            cfg.set_max_num_streams(STREAMS_PER_CONNECTION_MAX);
            cfg
        })?
        .with_behaviour(|key, relay_client| Behaviour {
            limits: connection_limits::Behaviour::new(
                connection_limits::ConnectionLimits::default()
                    .with_max_pending_incoming(Some(PENDING_INBOUND_CONNECTIONS_MAX))
                    .with_max_established_incoming(Some(INBOUND_CONNECTIONS_MAX))
                    .with_max_established_per_peer(Some(CONNECTIONS_PER_PEER_MAX)),
            ),
            ip_limits: crate::ip_limits::Behaviour::new(
                crate::ip_limits::INBOUND_CONNECTIONS_PER_IP_MAX,
            ),
            identify: identify::Behaviour::new(identify::Config::new(
                IDENTIFY_VERSION.to_string(),
                key.public(),
            )),
            ping: ping::Behaviour::new(
                ping::Config::new().with_interval(Duration::from_millis(PING_INTERVAL_MS)),
            ),
            frames: request_response::Behaviour::with_codec(
                FrameCodec,
                [(FRAME_PROTOCOL, ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_millis(REQUEST_TIMEOUT_MS))
                    .with_max_concurrent_streams(STREAMS_PER_CONNECTION_MAX),
            ),
            chunks: libp2p_stream::Behaviour::new(),
            relay: {
                let mut relay = relay::Behaviour::new(
                    key.public().to_peer_id(),
                    crate::relay::server_config(relay_admission),
                );
                // libp2p turns a relay on only once the node has confirmed external
                // addresses (AutoNAT); nodes here are reached at configured addresses, and
                // admission, not advertisement, decides who may use the relay.
                relay.set_status(Some(relay::Status::Enable));
                relay
            },
            relay_client,
        })?
        .with_swarm_config(|c| {
            c.with_idle_connection_timeout(Duration::from_millis(IDLE_CONNECTION_TIMEOUT_MS))
        })
        .build();
    Ok(swarm)
}

/// A direct address this node listens on is one of its external addresses: what its relay
/// tells the nodes reserving there to build their relayed addresses from. libp2p's relay
/// refuses every reservation while it has none (it learns them from AutoNAT otherwise, which
/// this network does not run), and its client refuses a reservation that names none. Nodes
/// of this network reach each other on the addresses they listen on (data centres on
/// government networks, configured by their operators), so those are the ones to name;
/// relayed and unspecified (`0.0.0.0`) addresses are not.
pub(crate) fn listen_addr_added(swarm: &mut Swarm<Behaviour>, addr: &Multiaddr) {
    if !crate::relay::is_relayed(addr) && !is_unspecified(addr) {
        swarm.add_external_address(addr.clone());
    }
}

/// A listen address went away: no longer named to reserving nodes.
pub(crate) fn listen_addr_expired(swarm: &mut Swarm<Behaviour>, addr: &Multiaddr) {
    swarm.remove_external_address(addr);
}

/// Whether `addr` is a wildcard (`0.0.0.0`, `::`): listened on, never dialled.
pub fn is_unspecified(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        libp2p::multiaddr::Protocol::Ip4(ip) => ip.is_unspecified(),
        libp2p::multiaddr::Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}

/// Whether `addr` is on this host only (`127.0.0.0/8`, `::1`).
pub fn is_loopback(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        libp2p::multiaddr::Protocol::Ip4(ip) => ip.is_loopback(),
        libp2p::multiaddr::Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}

/// `addr` without its `/p2p/<peer id>` parts: upstream nodes are dialled by address, and
/// admission decides who answers (a parent that rotated its key has another peer id).
pub fn without_peer_id(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .filter(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
        .collect()
}

/// The libp2p keypair for a node's ed25519 signing key.
pub fn keypair_from_signing_key(key: &ed25519_dalek::SigningKey) -> identity::Keypair {
    // 32 secret bytes always form a valid ed25519 key.
    identity::Keypair::ed25519_from_bytes(key.to_bytes()).expect("32-byte ed25519 secret")
}

/// The libp2p peer id of an ed25519 verifying key (node keys double as libp2p keys).
pub fn peer_id_of(key: &ed25519_dalek::VerifyingKey) -> anyhow::Result<libp2p::PeerId> {
    let pk = identity::ed25519::PublicKey::try_from_bytes(key.as_bytes())?;
    Ok(identity::PublicKey::from(pk).to_peer_id())
}

/// What the transport authenticated of `peer`, for the endpoint's admission check: the
/// ed25519 key its id encodes (libp2p inlines ed25519 public keys in the peer id) and the id's
/// bytes. `None` for a peer id of another key type: no node has one.
pub fn auth_of_peer(peer: &libp2p::PeerId) -> Option<backflow_protocol::endpoint::PeerAuth> {
    let key = identity::PublicKey::try_decode_protobuf(peer.as_ref().digest())
        .ok()?
        .try_into_ed25519()
        .ok()?;
    Some(backflow_protocol::endpoint::PeerAuth {
        key: key.to_bytes(),
        peer_id: peer.to_bytes(),
    })
}
