//! The TCP security upgrade: TLS 1.3 by the libp2p TLS spec (`/tls/1.0.0`), with a client that
//! offers AES-GCM before ChaCha20-Poly1305.
//!
//! Why not `libp2p::tls::Config` as it is: in TLS 1.3 the server takes the client's cipher
//! preference, and libp2p-tls's client offers ChaCha20-Poly1305 first, a cipher built for CPUs
//! without AES instructions. Server CPUs of the last decade have them (x86 AES-NI and VAES,
//! ARMv8's crypto extensions), and there AES-GCM costs less CPU per byte (measured: the cipher
//! fell from ~16 % to ~6 % of a transfer's CPU); a transfer encrypts and decrypts every byte
//! once, on both ends of every hop. (A CPU without AES instructions would do better with
//! ChaCha20 — a reason to make this order a setting if such nodes appear.) The client here offers rustls's default TLS 1.3
//! order instead (AES-256-GCM, AES-128-GCM, ChaCha20-Poly1305): AES-256 first because this
//! data must stay confidential for years.
//!
//! Everything else is libp2p-tls's own: the certificate (`certificate::generate`), its parsing
//! and signature checks (`certificate::parse`, `verify_signature`), the whole server side, the
//! ALPN, TLS 1.3 only, and rustls's key exchange order (hybrid X25519MLKEM768 first). So a peer
//! running stock libp2p-tls interoperates both ways; it just keeps ChaCha20 when it dials.
//! QUIC builds its TLS config inside libp2p-quic and keeps ChaCha20.
//!
//! Below TLS, the socket is buffered both ways ([`Buffered`]). Why: rustls reads at most 4 KiB
//! per call while a record is incomplete, so a 16 KiB record took about five `read` syscalls;
//! and yamux writes each 16 KiB frame as a 12-byte header and a body, which TLS sealed as two
//! records written by two `write` syscalls. Buffered, the reader takes whatever the socket
//! holds (up to [`SOCKET_READ_BUFFER_BYTES`]) in one syscall, and a frame's records leave in
//! one write when yamux flushes after the frame.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::io::{BufReader, BufWriter};
use futures::{AsyncRead, AsyncWrite, FutureExt};
use libp2p::core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade};
use libp2p::core::UpgradeInfo;
use libp2p::identity::{Keypair, PeerId};
use libp2p::tls::certificate::{self, GenError};
use libp2p::tls::{TlsStream, UpgradeError};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};

/// The libp2p TLS spec's protocol name and ALPN.
const PROTOCOL: &str = "/tls/1.0.0";
const ALPN: &[u8] = b"libp2p";
/// Read-ahead below TLS, per connection: many records per `read` syscall.
pub const SOCKET_READ_BUFFER_BYTES: usize = 256 * 1024;
/// Write coalescing below TLS, per connection: one frame's records (≤ 16 KiB + headers) per
/// `write`; the same size as rustls's own limit on pending ciphertext.
pub const SOCKET_WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// The socket as TLS sees it. Writes leave on flush (yamux flushes after every frame, and
/// rustls's handshake after every flight) or when the buffer fills.
pub type Buffered<C> = BufReader<BufWriter<C>>;

fn buffered<C: AsyncRead + AsyncWrite>(socket: C) -> Buffered<C> {
    BufReader::with_capacity(
        SOCKET_READ_BUFFER_BYTES,
        BufWriter::with_capacity(SOCKET_WRITE_BUFFER_BYTES, socket),
    )
}

#[derive(Clone)]
pub struct Config {
    /// Inbound: libp2p-tls unchanged (it follows the client's cipher order).
    server: libp2p::tls::Config,
    client: Arc<rustls::ClientConfig>,
}

/// Why a TLS config could not be built from the node's key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("generating the libp2p TLS certificate: {0}")]
    Certificate(#[from] GenError),
    #[error("building the TLS client config: {0}")]
    Rustls(#[from] rustls::Error),
}

impl Config {
    pub fn new(keypair: &Keypair) -> Result<Self, ConfigError> {
        Ok(Self {
            server: libp2p::tls::Config::new(keypair)?,
            client: Arc::new(client_config(keypair)?),
        })
    }
}

fn client_config(keypair: &Keypair) -> Result<rustls::ClientConfig, ConfigError> {
    let (cert, key) = certificate::generate(keypair)?;
    // A resolver rather than `with_client_auth_cert`: that one checks the certificate with
    // webpki, which rejects the libp2p extension (critical, and unknown to webpki).
    let own = OwnCert(Arc::new(CertifiedKey::new(
        vec![cert],
        rustls::crypto::aws_lc_rs::sign::any_ecdsa_type(&key)?,
    )));
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    // TLS 1.3 suites only, in rustls's order: AES-256-GCM, AES-128-GCM, ChaCha20-Poly1305.
    provider
        .cipher_suites
        .retain(|s| s.version() == &rustls::version::TLS13);
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PeerCertVerifier))
        .with_client_cert_resolver(Arc::new(own));
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(cfg)
}

impl UpgradeInfo for Config {
    type Info = &'static str;
    type InfoIter = std::iter::Once<Self::Info>;

    fn protocol_info(&self) -> Self::InfoIter {
        std::iter::once(PROTOCOL)
    }
}

impl<C> InboundConnectionUpgrade<C> for Config
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = (PeerId, TlsStream<Buffered<C>>);
    type Error = UpgradeError;
    type Future = BoxFuture<'static, Result<Self::Output, Self::Error>>;

    fn upgrade_inbound(self, socket: C, info: Self::Info) -> Self::Future {
        self.server.upgrade_inbound(buffered(socket), info)
    }
}

impl<C> OutboundConnectionUpgrade<C> for Config
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = (PeerId, TlsStream<Buffered<C>>);
    type Error = UpgradeError;
    type Future = BoxFuture<'static, Result<Self::Output, Self::Error>>;

    fn upgrade_outbound(self, socket: C, _: Self::Info) -> Self::Future {
        async move {
            // The spec: clients MUST NOT send a server name; an unspecified IP disables SNI.
            let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::UNSPECIFIED).into());
            let stream = futures_rustls::TlsConnector::from(self.client)
                .connect(name, buffered(socket))
                .await
                .map_err(UpgradeError::ClientUpgrade)?;
            // The verifier accepted exactly one certificate; its key names the peer.
            let peer_id = match stream.get_ref().1.peer_certificates() {
                Some([cert]) => certificate::parse(cert)?.peer_id(),
                _ => {
                    return Err(UpgradeError::ClientUpgrade(std::io::Error::other(
                        "the server presented no single certificate",
                    )))
                }
            };
            Ok((peer_id, stream.into()))
        }
        .boxed()
    }
}

/// This node's certificate, for every server that asks (libp2p TLS always authenticates both).
#[derive(Debug)]
struct OwnCert(Arc<CertifiedKey>);

impl ResolvesClientCert for OwnCert {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The libp2p TLS spec's check of a server: exactly one self-signed certificate carrying a
/// libp2p key extension whose signature verifies, and handshake signatures by that certificate.
/// The peer id it names is checked against the dialed one by the swarm, as with libp2p-tls.
#[derive(Debug)]
struct PeerCertVerifier;

impl ServerCertVerifier for PeerCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if !intermediates.is_empty() {
            return Err(rustls::Error::General(
                "libp2p TLS requires exactly one certificate".into(),
            ));
        }
        certificate::parse(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // The config offers TLS 1.3 only; refuse rather than panic if that ever changes.
        Err(rustls::Error::General("TLS 1.2 is not offered".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        certificate::parse(cert)?.verify_signature(dss.scheme, message, dss.signature())?;
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        // libp2p-tls's list: elliptic curves first; RSA only for peers that have nothing else.
        vec![
            SignatureScheme::ECDSA_NISTP384_SHA384,
            SignatureScheme::ECDSA_NISTP256_SHA256,
            SignatureScheme::ED25519,
            SignatureScheme::RSA_PSS_SHA512,
            SignatureScheme::RSA_PSS_SHA384,
            SignatureScheme::RSA_PSS_SHA256,
            SignatureScheme::RSA_PKCS1_SHA512,
            SignatureScheme::RSA_PKCS1_SHA384,
            SignatureScheme::RSA_PKCS1_SHA256,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_rustls::TlsStream as Stream;
    use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

    type Sock = Compat<tokio::net::TcpStream>;

    /// A connected loopback TCP pair: (dialer's end, listener's end).
    async fn pair() -> (Sock, Sock) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dial = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
        let (dialed, accepted) = tokio::join!(dial, listener.accept());
        (dialed.unwrap().compat(), accepted.unwrap().0.compat())
    }

    /// `dialer` dials `listener` over a fresh loopback pair; both handshakes run at once.
    async fn handshake<D, L>(
        dialer: D,
        listener: L,
    ) -> (Result<D::Output, D::Error>, Result<L::Output, L::Error>)
    where
        D: OutboundConnectionUpgrade<Sock, Info = &'static str>,
        L: InboundConnectionUpgrade<Sock, Info = &'static str>,
    {
        let (c, s) = pair().await;
        tokio::join!(
            dialer.upgrade_outbound(c, PROTOCOL),
            listener.upgrade_inbound(s, PROTOCOL),
        )
    }

    fn suite<S>(s: &TlsStream<S>) -> String {
        let s: &Stream<S> = s;
        let common: &rustls::CommonState = match s {
            Stream::Client(c) => c.get_ref().1,
            Stream::Server(c) => c.get_ref().1,
        };
        format!("{:?}", common.negotiated_cipher_suite().unwrap().suite())
    }

    #[tokio::test]
    async fn our_dialer_gets_aes_gcm_from_our_and_stock_listeners() {
        let a = Keypair::generate_ed25519();
        let b = Keypair::generate_ed25519();

        let (dialed, accepted) =
            handshake(Config::new(&a).unwrap(), Config::new(&b).unwrap()).await;
        let ((dp, ds), (ap, as_)) = (dialed.unwrap(), accepted.unwrap());
        assert_eq!(dp, b.public().to_peer_id());
        assert_eq!(ap, a.public().to_peer_id());
        assert_eq!(suite(&ds), "TLS13_AES_256_GCM_SHA384");
        assert_eq!(suite(&as_), "TLS13_AES_256_GCM_SHA384");

        // A stock libp2p-tls listener follows our order too.
        let (dialed, accepted) = handshake(
            Config::new(&a).unwrap(),
            libp2p::tls::Config::new(&b).unwrap(),
        )
        .await;
        let ((dp, ds), (ap, _)) = (dialed.unwrap(), accepted.unwrap());
        assert_eq!(dp, b.public().to_peer_id());
        assert_eq!(ap, a.public().to_peer_id());
        assert_eq!(suite(&ds), "TLS13_AES_256_GCM_SHA384");
    }

    #[tokio::test]
    async fn buffered_streams_carry_data_both_ways() {
        use futures::{AsyncReadExt, AsyncWriteExt};
        let a = Keypair::generate_ed25519();
        let b = Keypair::generate_ed25519();
        let (dialed, accepted) =
            handshake(Config::new(&a).unwrap(), Config::new(&b).unwrap()).await;
        let ((_, mut d), (_, mut l)) = (dialed.unwrap(), accepted.unwrap());
        // More than both buffers and many records; a small message after it must not be held
        // back in the write buffer once flushed.
        let big: Vec<u8> = (0..3 * SOCKET_READ_BUFFER_BYTES as u32)
            .map(|i| (i % 251) as u8)
            .collect();
        let send = async {
            d.write_all(&big).await.unwrap();
            d.write_all(b"tail").await.unwrap();
            d.flush().await.unwrap();
            // The answer arrives only if our flushed tail did.
            let mut ack = [0u8; 3];
            d.read_exact(&mut ack).await.unwrap();
            ack
        };
        let recv = async {
            let mut got = vec![0u8; big.len() + 4];
            l.read_exact(&mut got).await.unwrap();
            l.write_all(b"ack").await.unwrap();
            l.flush().await.unwrap();
            got
        };
        // A tail held back in a buffer would hang here, so bound the wait.
        let (ack, got) = tokio::time::timeout(std::time::Duration::from_secs(30), async {
            tokio::join!(send, recv)
        })
        .await
        .expect("the flushed tail and the answer arrive");
        assert_eq!(&ack, b"ack");
        assert_eq!(&got[..big.len()], &big[..]);
        assert_eq!(&got[big.len()..], b"tail");
    }

    #[tokio::test]
    async fn stock_libp2p_tls_dialer_still_connects() {
        let a = Keypair::generate_ed25519();
        let b = Keypair::generate_ed25519();
        let (dialed, accepted) = handshake(
            libp2p::tls::Config::new(&a).unwrap(),
            Config::new(&b).unwrap(),
        )
        .await;
        let ((dp, ds), (ap, _)) = (dialed.unwrap(), accepted.unwrap());
        assert_eq!(dp, b.public().to_peer_id());
        assert_eq!(ap, a.public().to_peer_id());
        // Its own preference, ChaCha20, is what the listener follows.
        assert_eq!(suite(&ds), "TLS13_CHACHA20_POLY1305_SHA256");
    }

    #[tokio::test]
    async fn a_certificate_without_the_libp2p_extension_is_refused() {
        let a = Keypair::generate_ed25519();
        let (cert, key) = plain_self_signed();
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        let (c, s) = pair().await;
        let (dialed, _) = tokio::join!(
            Config::new(&a).unwrap().upgrade_outbound(c, PROTOCOL),
            futures_rustls::TlsAcceptor::from(Arc::new(server)).accept(s),
        );
        let Err(err) = dialed else {
            panic!("a certificate without the libp2p extension must be refused");
        };
        assert!(matches!(err, UpgradeError::ClientUpgrade(_)), "{err}");
    }

    /// A plain self-signed certificate (rcgen), without the libp2p key extension.
    fn plain_self_signed() -> (
        CertificateDer<'static>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ) {
        let c = rcgen::generate_simple_self_signed(vec!["backflow.test".into()]).unwrap();
        let key = rustls::pki_types::PrivatePkcs8KeyDer::from(c.key_pair.serialize_der());
        (c.cert.der().clone(), key.into())
    }
}
