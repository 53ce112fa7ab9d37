//! Secret files — the node's signing key and the API token — are created owner-only (0600)
//! and refused at start if group or others may read or write them, as ssh refuses a private
//! key. The check runs before the file is read, so a refused file's content never reaches
//! memory, let alone a message.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// Permission bits a secret file must not have: any access for group or others.
#[cfg(unix)]
const MODE_FORBIDDEN_BITS: u32 = 0o077;

/// Fails unless `path` is a regular file (not a symlink) that only its owner may access.
pub fn check_private(path: &Path) -> Result<()> {
    let meta = std::fs::symlink_metadata(path)
        .with_context(|| format!("reading the permissions of {}", path.display()))?;
    if !meta.file_type().is_file() {
        bail!(
            "{} must be a regular file (not a symlink or directory)",
            path.display()
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & MODE_FORBIDDEN_BITS != 0 {
            bail!(
                "{} is accessible by group or others (mode {mode:03o}); it holds a secret: \
                 run `chmod 600 {}`",
                path.display(),
                path.display()
            );
        }
    }
    Ok(())
}

/// Reads a secret file after [`check_private`]. Size-bounded: a secret here is a hex line.
pub fn read_private(path: &Path, bytes_max: u64) -> Result<String> {
    check_private(path)?;
    let len = std::fs::metadata(path)?.len();
    if len > bytes_max {
        bail!(
            "{} is {len} bytes; a secret file here is at most {bytes_max}",
            path.display()
        );
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text)
}

/// Writes a new secret file, owner-only from its creation (never world-readable, not even
/// briefly), failing if it exists. Synced before returning.
pub fn write_private(path: &Path, text: &str) -> Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_readable_secret_is_refused_and_its_content_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        write_private(&path, "c0ffee").unwrap();
        assert_eq!(read_private(&path, 100).unwrap(), "c0ffee");
        for mode in [0o640, 0o604, 0o660, 0o644, 0o620] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = format!("{:#}", read_private(&path, 100).unwrap_err());
            assert!(err.contains("chmod 600"), "{err}");
            assert!(!err.contains("c0ffee"), "{err}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(read_private(&path, 100).is_ok());
    }

    #[test]
    fn a_symlinked_or_oversized_secret_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        write_private(&real, "0123456789").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(read_private(&link, 100).is_err());
        assert!(read_private(&real, 4).is_err());
        assert!(write_private(&real, "again").is_err(), "never overwrites");
    }
}
