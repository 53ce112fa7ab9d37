//! The one bincode configuration (bincode 2, serde, standard varint) and what is built on it:
//! encoding and exact decoding of values under the frame byte limit, decoding of stored records
//! under their own limit, encoded sizes, and the domain-separated digests that signatures sign
//! and hashes name. Decoding untrusted bytes is total: it returns a [`WireError`] for anything
//! malformed or oversized, and never panics.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::limits::{LimitError, FRAME_BYTES_MAX, STORED_RECORD_BYTES_MAX};

/// Why bytes are not an acceptable frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },
    #[error("unsupported protocol version {got} (this node speaks {supported})")]
    UnsupportedVersion { got: u16, supported: u16 },
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("{extra} trailing bytes after the message")]
    TrailingBytes { extra: usize },
    #[error(transparent)]
    Limit(#[from] LimitError),
}

type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<FRAME_BYTES_MAX>,
>;

pub(crate) fn config() -> Config {
    bincode::config::standard().with_limit::<FRAME_BYTES_MAX>()
}

/// Decodes a value read from local storage: like [`decode_exact`] but under
/// `STORED_RECORD_BYTES_MAX`. Corrupt storage yields an error, never a panic.
pub fn decode_stored<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    if bytes.len() > STORED_RECORD_BYTES_MAX {
        return Err(WireError::FrameTooLarge {
            len: bytes.len(),
            max: STORED_RECORD_BYTES_MAX,
        });
    }
    let config = bincode::config::standard().with_limit::<STORED_RECORD_BYTES_MAX>();
    let (value, used) = bincode::serde::decode_from_slice(bytes, config)
        .map_err(|e| WireError::Malformed(e.to_string()))?;
    if used != bytes.len() {
        return Err(WireError::TrailingBytes {
            extra: bytes.len() - used,
        });
    }
    Ok(value)
}

/// Encodes any value with the wire configuration (used for storage records too).
pub fn encode_value<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, WireError> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| WireError::Malformed(e.to_string()))
}

/// Decodes a value that must span all of `bytes`, under the frame byte limit.
pub fn decode_exact<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    let (value, used) = decode_prefix(bytes)?;
    if used != bytes.len() {
        return Err(WireError::TrailingBytes {
            extra: bytes.len() - used,
        });
    }
    Ok(value)
}

pub(crate) fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), WireError> {
    bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| WireError::Malformed(e.to_string()))
}

/// Domain-separated digest of a value's canonical encoding: what signatures sign and what
/// hashes name. Domain tags keep a signature over one type from being replayed as another.
pub fn digest<T: Serialize + ?Sized>(domain: &[u8], value: &T) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&(domain.len() as u64).to_le_bytes());
    hasher.update(domain);
    // Invariant: encoding our own in-memory values cannot fail (bincode only fails on
    // unknown-length sequences, which serde derive never produces) and writing into a hasher is
    // infallible. This never sees untrusted bytes.
    bincode::serde::encode_into_std_write(value, &mut hasher, bincode::config::standard())
        .expect("canonical encoding of an in-memory value");
    *hasher.finalize().as_bytes()
}

/// Encoded size of a value in bytes (without allocating the encoding).
pub fn encoded_len<T: Serialize + ?Sized>(value: &T) -> usize {
    let mut w = bincode::enc::write::SizeWriter::default();
    // Invariant as in `digest`: encoding an in-memory value cannot fail.
    bincode::serde::encode_into_writer(value, &mut w, bincode::config::standard())
        .expect("canonical encoding of an in-memory value");
    w.bytes_written
}
