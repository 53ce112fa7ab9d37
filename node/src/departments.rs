//! The departments (政府部门) this node hosts, on disk: one owner-only file each under
//! `<data>/departments/`, holding the department's name, its signing key (certified by the
//! jurisdiction key at every start: [`backflow_protocol::department`]) and its API token.
//!
//! Files, like `node.key` and `api.token`, not the database: secrets are created 0600 and
//! refused at start if group or others may read them ([`backflow_api::secret_file`]). A
//! department is never deleted here (its past acts stay verifiable by their certificates);
//! a compromised department key is replaced by rotating the jurisdiction key.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use backflow_api::secret_file;
use backflow_api::ApiToken;
use backflow_protocol::department::DEPARTMENTS_PER_NODE_MAX;
use backflow_protocol::wire::NAME_BYTES_MAX;
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

pub const DEPARTMENTS_DIR: &str = "departments";
/// A department file: a name of at most `NAME_BYTES_MAX` bytes and two hex secrets, in JSON.
const DEPARTMENT_FILE_BYTES_MAX: u64 = 4 * 1024;

/// A department of this node, with its secrets (never printed by `Debug`).
pub struct Department {
    pub name: String,
    pub key: SigningKey,
    pub token: ApiToken,
}

impl std::fmt::Debug for Department {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Department")
            .field("name", &self.name)
            .field("key", &hex::encode(self.key.verifying_key().as_bytes()))
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DepartmentFile {
    name: String,
    key: String,
    token: String,
}

/// The file of department `name`: named by a hash of the name, so any name (Chinese, with
/// slashes) maps to one safe file name.
fn file_of(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join(DEPARTMENTS_DIR).join(file_name(name))
}

fn file_name(name: &str) -> String {
    let hash = blake3::hash(name.as_bytes()).to_hex();
    format!("{}.json", &hash[..16])
}

/// A department name as operators type it: trimmed, 1..=`NAME_BYTES_MAX` bytes, no control
/// characters.
pub fn check_name(name: &str) -> Result<&str> {
    let name = name.trim();
    if name.is_empty() {
        bail!("a department needs a name");
    }
    if name.len() > NAME_BYTES_MAX {
        bail!(
            "a department name is at most {NAME_BYTES_MAX} bytes ({} given)",
            name.len()
        );
    }
    if name.chars().any(char::is_control) {
        bail!("a department name may not contain control characters");
    }
    Ok(name)
}

/// Every department of the node, sorted by name.
pub fn load_all(data_dir: &Path) -> Result<Vec<Department>> {
    let dir = data_dir.join(DEPARTMENTS_DIR);
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        if out.len() >= DEPARTMENTS_PER_NODE_MAX {
            bail!(
                "{} holds more than {DEPARTMENTS_PER_NODE_MAX} departments",
                dir.display()
            );
        }
        out.push(load(&path)?);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn load(path: &Path) -> Result<Department> {
    let text = secret_file::read_private(path, DEPARTMENT_FILE_BYTES_MAX)?;
    // The content is secret: errors name the file and the problem, never the text.
    let file: DepartmentFile = serde_json::from_str(&text)
        .map_err(|_| anyhow::anyhow!("{} is not a department file", path.display()))?;
    let name = check_name(&file.name)
        .with_context(|| format!("{}", path.display()))?
        .to_string();
    let key = hex::decode(file.key.trim())
        .ok()
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .map(|k| SigningKey::from_bytes(&k))
        .with_context(|| format!("{} holds no valid key", path.display()))?;
    let token = ApiToken::from_hex(&file.token)
        .with_context(|| format!("{} holds no valid token", path.display()))?;
    if path.file_name().and_then(|f| f.to_str()) != Some(file_name(&name).as_str()) {
        bail!(
            "{} names another department than its file name says",
            path.display()
        );
    }
    Ok(Department { name, key, token })
}

/// Creates department `name`: a fresh key and token in a new owner-only file. Fails if the
/// node holds it already or holds the most it may.
pub fn add(data_dir: &Path, name: &str) -> Result<Department> {
    let name = check_name(name)?.to_string();
    let path = file_of(data_dir, &name);
    if path.exists() {
        bail!("this node holds department {name:?} already");
    }
    let dir = data_dir.join(DEPARTMENTS_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // Counted by file name: the files themselves (secrets) are read only at start.
    let held = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().and_then(|x| x.to_str()) == Some("json"))
        .count();
    if held >= DEPARTMENTS_PER_NODE_MAX {
        bail!("this node holds {DEPARTMENTS_PER_NODE_MAX} departments already");
    }
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let token = ApiToken::generate();
    let file = DepartmentFile {
        name: name.clone(),
        key: hex::encode(key.to_bytes()),
        token: token.expose().to_string(),
    };
    secret_file::write_private(&path, &serde_json::to_string(&file)?)?;
    // The new file's directory entry, before the department is reported created.
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    Ok(Department { name, key, token })
}

/// Department `name`, created if the node does not hold it yet (the configured department,
/// at every start).
pub fn ensure(data_dir: &Path, name: &str) -> Result<()> {
    let name = check_name(name)?;
    if !file_of(data_dir, name).exists() {
        add(data_dir, name)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn departments_are_created_once_and_load_back() {
        let dir = tempfile::tempdir().unwrap();
        let a = add(dir.path(), " 市民政局 ").unwrap();
        assert_eq!(a.name, "市民政局");
        assert!(add(dir.path(), "市民政局").is_err());
        ensure(dir.path(), "市民政局").unwrap();
        ensure(dir.path(), "市公安局/交警支队").unwrap();
        let all = load_all(dir.path()).unwrap();
        let names: Vec<&str> = all.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["市公安局/交警支队", "市民政局"]);
        assert_eq!(all[1].key.to_bytes(), a.key.to_bytes());
        assert_eq!(all[1].token.expose(), a.token.expose());
        for bad in ["", "  ", "a\nb"] {
            assert!(add(dir.path(), bad).is_err(), "{bad:?}");
        }
        assert!(add(dir.path(), &"部".repeat(NAME_BYTES_MAX)).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_readable_or_renamed_file_is_refused_without_echoing_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = add(dir.path(), "市民政局").unwrap();
        let path = file_of(dir.path(), "市民政局");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = format!("{:#}", load_all(dir.path()).unwrap_err());
        assert!(e.contains("chmod 600"), "{e}");
        assert!(!e.contains(a.token.expose()), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        // A file moved to another department's name.
        let other = file_of(dir.path(), "市公安局");
        std::fs::rename(&path, &other).unwrap();
        let e = format!("{:#}", load_all(dir.path()).unwrap_err());
        assert!(e.contains("another department"), "{e}");
        assert!(!e.contains(a.token.expose()), "{e}");
    }
}
