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
    let mut w = HashWriter {
        hasher,
        buf: [0; HASH_WRITER_BYTES],
        len: 0,
    };
    // Invariant: encoding our own in-memory values cannot fail (bincode only fails on
    // unknown-length sequences, which serde derive never produces) and writing into a hasher is
    // infallible. This never sees untrusted bytes.
    bincode::serde::encode_into_writer(value, &mut w, bincode::config::standard())
        .expect("canonical encoding of an in-memory value");
    w.hasher.update(&w.buf[..w.len]);
    *w.hasher.finalize().as_bytes()
}

/// Bytes gathered before they are hashed: one BLAKE3 chunk.
const HASH_WRITER_BYTES: usize = 1024;

/// Feeds an encoding to a hasher a chunk at a time. Why not bincode's `std::io::Write`
/// adapter: it hands each field's bytes (often one) to `Hasher::update` as they are encoded,
/// and a call per byte made the region tree's leaf and node hashes — 41,352 of them for a
/// national dataset, at every province — the largest cost of accepting its announce
/// (`perf`, session 30). Why not `std::io::BufWriter` around the hasher, which batches the
/// same way: its buffer is a heap allocation per digest, and this one lives on the stack.
/// The digest is the same: BLAKE3 does not depend on how its input is split.
struct HashWriter {
    hasher: blake3::Hasher,
    buf: [u8; HASH_WRITER_BYTES],
    len: usize,
}

impl bincode::enc::write::Writer for HashWriter {
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        if self.len + bytes.len() > HASH_WRITER_BYTES {
            self.hasher.update(&self.buf[..self.len]);
            self.len = 0;
        }
        if bytes.len() >= HASH_WRITER_BYTES {
            self.hasher.update(bytes);
        } else {
            self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        }
        Ok(())
    }
}

/// Encoded size of a value in bytes (without allocating the encoding).
pub fn encoded_len<T: Serialize + ?Sized>(value: &T) -> usize {
    let mut w = bincode::enc::write::SizeWriter::default();
    // Invariant as in `digest`: encoding an in-memory value cannot fail.
    bincode::serde::encode_into_writer(value, &mut w, bincode::config::standard())
        .expect("canonical encoding of an in-memory value");
    w.bytes_written
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chunked hashing of `digest` gives the digest of the whole encoding, for values
    /// whose encodings are shorter than, around and far past one buffer.
    #[test]
    fn digest_is_the_hash_of_the_domain_and_the_whole_encoding() {
        for n in [0usize, 1, 7, 300, 1_000, 1_023, 1_024, 1_025, 5_000, 70_000] {
            let value: (u8, Vec<u64>, String, Vec<u8>) = (
                7,
                (0..n as u64 / 9).map(|i| i * 1_000_003).collect(),
                "市辖区".repeat(n % 5),
                (0..n).map(|i| i as u8).collect(),
            );
            let domain = b"backflow/test/v1";
            let encoded = bincode::serde::encode_to_vec(&value, bincode::config::standard())
                .expect("encodes");
            let mut hasher = blake3::Hasher::new();
            hasher.update(&(domain.len() as u64).to_le_bytes());
            hasher.update(domain);
            hasher.update(&encoded);
            assert_eq!(
                digest(domain, &value),
                *hasher.finalize().as_bytes(),
                "n = {n}"
            );
        }
    }
}
