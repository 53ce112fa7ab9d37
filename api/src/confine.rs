//! Path-based publish and export stay inside directories the operator configured
//! (`import_dir`, `export_dir`). A requested name is resolved against the directory; `..`
//! is refused outright, symlinks are resolved and the result must still lie inside, and the
//! file is then opened without following a symlink, so swapping one in after the check
//! fails instead of escaping. Exports are written to a temporary file in the target
//! directory, synced and renamed over the name (a rename replaces a symlink, never its
//! target). What this does not promise: a local user who can write inside the directory can
//! still replace files there — the directories belong to the operator.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::error::ApiError;

#[derive(Clone, Debug)]
pub struct Confined {
    /// Canonical: absolute, no symlinks.
    root: PathBuf,
    /// "import" or "export", for messages.
    role: &'static str,
}

impl Confined {
    /// `dir` must exist and must not contain `secrets_dir` (the node's data directory with its
    /// key and token), or a request could read or overwrite them.
    pub fn new(role: &'static str, dir: &Path, secrets_dir: &Path) -> Result<Confined> {
        let root =
            std::fs::canonicalize(dir).with_context(|| format!("{role}_dir {}", dir.display()))?;
        if !root.is_dir() {
            bail!("{role}_dir {} is not a directory", dir.display());
        }
        let secrets = std::fs::canonicalize(secrets_dir)
            .with_context(|| format!("data directory {}", secrets_dir.display()))?;
        if secrets.starts_with(&root) {
            bail!(
                "{role}_dir {} contains the data directory with the node's key; \
                 configure a directory of its own",
                dir.display()
            );
        }
        Ok(Confined { root, role })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The name relative to the root, refusing `..`, and absolute names outside the root.
    fn relative<'a>(&self, name: &'a Path) -> Result<&'a Path, ApiError> {
        if name.as_os_str().is_empty() {
            return Err(ApiError::bad_request(format!(
                "empty {} file name",
                self.role
            )));
        }
        if name.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(ApiError::forbidden(format!(
                "{}: `..` is not allowed in {} paths",
                name.display(),
                self.role
            )));
        }
        if name.is_absolute() {
            return name
                .strip_prefix(&self.root)
                .map_err(|_| self.outside(name));
        }
        Ok(name)
    }

    fn outside(&self, name: &Path) -> ApiError {
        ApiError::forbidden(format!(
            "{} is outside the node's {} directory",
            name.display(),
            self.role
        ))
    }

    /// Opens a file of the directory for reading. Returns it and its length.
    pub fn open(&self, name: &Path) -> Result<(File, u64), ApiError> {
        let relative = self.relative(name)?;
        let joined = self.root.join(relative);
        let resolved = std::fs::canonicalize(&joined).map_err(|_| {
            ApiError::not_found(format!(
                "{}: no such file in the {} directory",
                name.display(),
                self.role
            ))
        })?;
        if !resolved.starts_with(&self.root) {
            return Err(self.outside(name));
        }
        let file = open_nofollow(OpenOptions::new().read(true), &resolved)
            .map_err(|_| ApiError::forbidden(format!("{}: cannot be opened", name.display())))?;
        let meta = file
            .metadata()
            .map_err(|_| ApiError::forbidden(format!("{}: cannot be read", name.display())))?;
        if !meta.is_file() {
            return Err(ApiError::bad_request(format!(
                "{} is not a regular file",
                name.display()
            )));
        }
        Ok((file, meta.len()))
    }

    /// A new file of the directory, written under a temporary name until [`OutFile::commit`].
    pub fn create(&self, name: &Path) -> Result<OutFile, ApiError> {
        let relative = self.relative(name)?;
        let file_name = relative
            .file_name()
            .ok_or_else(|| ApiError::bad_request(format!("{}: no file name", name.display())))?
            .to_owned();
        let parent = self.root.join(relative.parent().unwrap_or(Path::new("")));
        let parent = std::fs::canonicalize(&parent).map_err(|_| {
            ApiError::not_found(format!(
                "{}: its directory does not exist in the {} directory",
                name.display(),
                self.role
            ))
        })?;
        if !parent.starts_with(&self.root) {
            return Err(self.outside(name));
        }
        let target = parent.join(&file_name);
        if std::fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
            return Err(ApiError::bad_request(format!(
                "{} is a directory",
                name.display()
            )));
        }
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(&file_name);
        temp_name.push(format!(".partial-{:016x}", rand::random::<u64>()));
        let temp = parent.join(temp_name);
        let file = open_nofollow(OpenOptions::new().write(true).create_new(true), &temp)
            .map_err(|_| ApiError::forbidden(format!("{}: cannot be created", name.display())))?;
        Ok(OutFile {
            file: Some(file),
            temp,
            target,
            parent,
        })
    }
}

fn open_nofollow(options: &mut OpenOptions, path: &Path) -> std::io::Result<File> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW).mode(0o640);
    }
    options.open(path)
}

/// An export file being written: removed unless committed.
pub struct OutFile {
    file: Option<File>,
    temp: PathBuf,
    target: PathBuf,
    parent: PathBuf,
}

impl OutFile {
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The file to write (the temporary one).
    pub fn take_file(&mut self) -> Option<File> {
        self.file.take()
    }

    /// Syncs the written file, renames it over the target and syncs the directory, so a
    /// finished export survives a power cut.
    pub fn commit(mut self, written: File) -> Result<PathBuf> {
        written.sync_all()?;
        drop(written);
        std::fs::rename(&self.temp, &self.target)?;
        if let Ok(dir) = File::open(&self.parent) {
            dir.sync_all()?;
        }
        self.temp = PathBuf::new();
        Ok(self.target.clone())
    }
}

impl Drop for OutFile {
    fn drop(&mut self) {
        if !self.temp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// For writers that must flush before commit.
pub fn finish(mut writer: std::io::BufWriter<File>) -> Result<File> {
    writer.flush()?;
    writer.into_inner().map_err(|e| e.into_error().into())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    struct Dirs {
        _tmp: tempfile::TempDir,
        data: PathBuf,
        import: PathBuf,
        outside: PathBuf,
    }

    fn dirs() -> Dirs {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let import = tmp.path().join("import");
        let outside = tmp.path().join("outside");
        for d in [&data, &import, &outside] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::write(data.join("node.key"), "secret").unwrap();
        std::fs::write(outside.join("x.csv"), "a\n").unwrap();
        std::fs::write(import.join("ok.csv"), "a\n").unwrap();
        Dirs {
            _tmp: tmp,
            data,
            import,
            outside,
        }
    }

    #[test]
    fn traversal_absolute_and_symlink_escapes_are_refused() {
        let d = dirs();
        let c = Confined::new("import", &d.import, &d.data).unwrap();
        assert_eq!(c.open(Path::new("ok.csv")).unwrap().1, 2);
        assert!(c.open(&d.import.join("ok.csv")).is_ok());
        for bad in [
            PathBuf::from("../data/node.key"),
            PathBuf::from("sub/../../data/node.key"),
            d.data.join("node.key"),
            d.outside.join("x.csv"),
        ] {
            let e = c.open(&bad).unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::FORBIDDEN, "{bad:?}: {e}");
        }
        std::os::unix::fs::symlink(d.data.join("node.key"), d.import.join("key.csv")).unwrap();
        std::os::unix::fs::symlink(&d.data, d.import.join("datadir")).unwrap();
        for bad in ["key.csv", "datadir/node.key"] {
            let e = c.open(Path::new(bad)).unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::FORBIDDEN, "{bad}: {e}");
            assert!(!e.message.contains("secret"));
        }
    }

    #[test]
    fn a_directory_holding_the_data_dir_is_refused() {
        let d = dirs();
        let parent = d.data.parent().unwrap();
        assert!(Confined::new("import", parent, &d.data).is_err());
        assert!(Confined::new("import", &d.data, &d.data).is_err());
    }

    #[test]
    fn exports_are_confined_atomic_and_never_follow_a_symlink() {
        let d = dirs();
        let c = Confined::new("export", &d.import, &d.data).unwrap();
        for bad in ["../outside/y.csv", "datadir/z"] {
            assert!(c.create(Path::new(bad)).is_err(), "{bad}");
        }
        // A symlink planted at the target is replaced, its target untouched.
        std::os::unix::fs::symlink(d.data.join("node.key"), d.import.join("out.csv")).unwrap();
        let mut out = c.create(Path::new("out.csv")).unwrap();
        let mut f = out.take_file().unwrap();
        f.write_all(b"exported\n").unwrap();
        let path = out.commit(f).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "exported\n");
        assert_eq!(
            std::fs::read_to_string(d.data.join("node.key")).unwrap(),
            "secret"
        );
        assert!(!std::fs::symlink_metadata(&path).unwrap().is_symlink());
        // An abandoned export leaves nothing behind.
        let out = c.create(Path::new("gone.csv")).unwrap();
        drop(out);
        let names: Vec<_> = std::fs::read_dir(&d.import)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(!names
            .iter()
            .any(|n| n.to_string_lossy().contains("partial")));
    }
}
