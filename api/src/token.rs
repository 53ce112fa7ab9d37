//! The API token: 32 random bytes as hex in `api.token` (mode 0600), created by `backflow
//! init`. Every request carries it as `Authorization: Bearer <token>`; the comparison takes
//! the same time whatever the guess (`subtle`), so it leaks nothing through timing.

use std::path::Path;

use anyhow::{bail, Result};
use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::secret_file;

pub const TOKEN_FILE: &str = "api.token";
const TOKEN_BYTES: usize = 32;
/// The file holds the hex token and perhaps a newline.
const TOKEN_FILE_BYTES_MAX: u64 = 2 * TOKEN_BYTES as u64 + 2;

#[derive(Clone)]
pub struct ApiToken(String);

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(..)")
    }
}

impl ApiToken {
    pub fn generate() -> ApiToken {
        let mut bytes = [0u8; TOKEN_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        ApiToken(hex::encode(bytes))
    }

    /// Creates `<data dir>/api.token` (owner-only; fails if it exists).
    pub fn create(data_dir: &Path) -> Result<ApiToken> {
        let token = ApiToken::generate();
        secret_file::write_private(&data_dir.join(TOKEN_FILE), &token.0)?;
        Ok(token)
    }

    /// A token kept elsewhere (a department's, in its secret file): 64 hex digits.
    pub fn from_hex(text: &str) -> Result<ApiToken> {
        let text = text.trim();
        if text.len() != 2 * TOKEN_BYTES || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("not a token ({} hex digits expected)", 2 * TOKEN_BYTES);
        }
        Ok(ApiToken(text.to_ascii_lowercase()))
    }

    /// The token's text, to keep it (in an owner-only file) or hand it to its holder once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Reads `<data dir>/api.token`, refusing it if group or others may read it.
    pub fn load(data_dir: &Path) -> Result<ApiToken> {
        let path = data_dir.join(TOKEN_FILE);
        let text = secret_file::read_private(&path, TOKEN_FILE_BYTES_MAX)?;
        let text = text.trim();
        if text.len() != 2 * TOKEN_BYTES || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!(
                "{} does not hold a token ({} hex digits expected)",
                path.display(),
                2 * TOKEN_BYTES
            );
        }
        Ok(ApiToken(text.to_string()))
    }

    /// The `Authorization` header value that carries this token.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.0)
    }

    /// Whether an `Authorization` header value carries this token.
    pub fn admits(&self, authorization: &[u8]) -> bool {
        let Some(presented) = authorization.strip_prefix(b"Bearer ") else {
            return false;
        };
        // Lengths are public (every token has the same); the bytes are compared in constant time.
        presented.len() == self.0.len() && bool::from(presented.ct_eq(self.0.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_is_admitted() {
        let t = ApiToken::generate();
        assert!(t.admits(t.bearer().as_bytes()));
        assert!(!t.admits(ApiToken::generate().bearer().as_bytes()));
        assert!(!t.admits(t.0.as_bytes()), "the scheme is required");
        assert!(!t.admits(format!("Bearer {}x", t.0).as_bytes()));
        assert!(!t.admits(&t.bearer().as_bytes()[..70]));
        assert!(!t.admits(b""));
        assert!(!format!("{t:?}").contains(&t.0));
    }

    #[test]
    fn created_tokens_load_back_and_are_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let t = ApiToken::create(dir.path()).unwrap();
        assert!(ApiToken::create(dir.path()).is_err(), "never overwrites");
        let back = ApiToken::load(dir.path()).unwrap();
        assert!(back.admits(t.bearer().as_bytes()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(TOKEN_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
