//! Console sessions: a login with the node's or a department's API token creates one — an id
//! of 32 random bytes (hex) in the `backflow_session` cookie, and a CSRF token of 32 more that
//! every form of the session carries. Sessions live in memory only (a restart logs everyone
//! out), at most [`SESSIONS_MAX`] (the oldest goes first), each for [`SESSION_TTL`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use backflow_api::gate::Principal;
use rand::RngCore;
use subtle::ConstantTimeEq;

pub const COOKIE: &str = "backflow_session";
pub const SESSIONS_MAX: usize = 256;
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
const SECRET_BYTES: usize = 32;

/// One logged-in operator or department.
#[derive(Clone, Debug)]
pub struct Session {
    pub id: String,
    pub principal: Principal,
    /// Every POST form of this session carries it (`csrf`); compared in constant time.
    pub csrf: String,
    pub created: Instant,
}

impl Session {
    pub fn is_node(&self) -> bool {
        self.principal == Principal::Node
    }

    /// The department a department's session acts as (`None` for the node's).
    pub fn department(&self) -> Option<&str> {
        match &self.principal {
            Principal::Node => None,
            Principal::Department(d) => Some(d),
        }
    }

    /// Whether a form's `csrf` field is this session's token (constant time; the length is
    /// public, every token has the same).
    pub fn csrf_ok(&self, presented: &str) -> bool {
        presented.len() == self.csrf.len()
            && bool::from(presented.as_bytes().ct_eq(self.csrf.as_bytes()))
    }

    /// The `Set-Cookie` value that hands this session to the browser. `HttpOnly`: no script
    /// reads it; `SameSite=Strict`: no other site's page sends it. Not `Secure`: the API (and
    /// with it the console) is plain HTTP on loopback or behind the operator's own TLS proxy,
    /// and a `Secure` cookie would never be sent back over `http://127.0.0.1`.
    pub fn cookie(&self) -> String {
        format!(
            "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
            self.id,
            SESSION_TTL.as_secs()
        )
    }
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn cookie_cleared() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

fn secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The sessions of this process.
#[derive(Debug, Default)]
pub struct Sessions {
    all: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Starts a session for `principal`, evicting expired ones and, at the bound, the oldest.
    pub fn create(&self, principal: Principal) -> Session {
        let session = Session {
            id: secret(),
            principal,
            csrf: secret(),
            created: Instant::now(),
        };
        let mut all = self.lock();
        all.retain(|_, s| s.created.elapsed() < SESSION_TTL);
        while all.len() >= SESSIONS_MAX {
            let Some(oldest) = all.values().min_by_key(|s| s.created).map(|s| s.id.clone()) else {
                break;
            };
            all.remove(&oldest);
        }
        all.insert(session.id.clone(), session.clone());
        session
    }

    /// The live session with this id. The id is 256 random bits: looking it up in a hash map
    /// tells an attacker nothing usable about any other id.
    pub fn get(&self, id: &str) -> Option<Session> {
        if id.len() != 2 * SECRET_BYTES {
            return None;
        }
        let mut all = self.lock();
        match all.get(id) {
            Some(s) if s.created.elapsed() < SESSION_TTL => Some(s.clone()),
            Some(_) => {
                all.remove(id);
                None
            }
            None => None,
        }
    }

    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.all
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The session id in a `Cookie` header, if it carries one.
pub fn id_in_cookies(header: &str) -> Option<&str> {
    cookie_value(header, COOKIE)
}

/// A cookie's value in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_bounded_and_ids_unguessable() {
        let sessions = Sessions::default();
        let first = sessions.create(Principal::Node);
        assert_eq!(first.id.len(), 64);
        assert_ne!(first.id, first.csrf);
        assert!(sessions.get(&first.id).is_some());
        for _ in 0..SESSIONS_MAX {
            sessions.create(Principal::Department("民政厅".into()));
        }
        assert_eq!(sessions.len(), SESSIONS_MAX);
        assert!(sessions.get(&first.id).is_none(), "the oldest was evicted");
        assert!(sessions.get("short").is_none());
    }

    #[test]
    fn csrf_tokens_and_cookies() {
        let s = Sessions::default().create(Principal::Node);
        assert!(s.csrf_ok(&s.csrf.clone()));
        assert!(!s.csrf_ok(""));
        assert!(!s.csrf_ok(&"0".repeat(64)));
        let cookie = s.cookie();
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        assert_eq!(
            id_in_cookies(&format!("lang=en; {COOKIE}={}", s.id)),
            Some(s.id.as_str())
        );
        assert_eq!(cookie_value("lang=en", "lang"), Some("en"));
    }
}
