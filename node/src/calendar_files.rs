//! The node's working-day calendar: the embedded official years plus the notices its operator
//! added as files under `<data>/calendar/` (one `YYYY.toml` per year, the format of
//! `protocol/data/cn-official-holidays.toml`). The State Council publishes a year's notice in
//! November or December; until its file is added, any deadline reaching into that year is an
//! error naming it (see `backflow_protocol::calendar`).

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use backflow_protocol::calendar::{WorkingCalendar, CALENDAR_FILE_BYTES_MAX};

use crate::config::sync_dir;

/// Where operator-added notices live, inside the data directory.
pub const CALENDAR_DIR: &str = "calendar";
/// Files read from it: one per year, so decades of notices fit.
pub const CALENDAR_FILES_MAX: usize = 128;

pub fn calendar_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(CALENDAR_DIR)
}

/// The official calendar plus every `*.toml` under `<data>/calendar/`, in name order. A file
/// that does not parse, or contradicts a year already known, is an error naming the file.
pub fn load(data_dir: &Path) -> Result<WorkingCalendar> {
    let mut calendar = WorkingCalendar::official();
    let dir = calendar_dir(data_dir);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(calendar),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|x| x == "toml") {
            files.push(path);
            if files.len() > CALENDAR_FILES_MAX {
                bail!(
                    "{} holds more than {CALENDAR_FILES_MAX} calendar files",
                    dir.display()
                );
            }
        }
    }
    files.sort();
    for path in files {
        let text = read_bounded(&path)?;
        calendar
            .add_file(&text)
            .with_context(|| path.display().to_string())?;
    }
    Ok(calendar)
}

/// Checks a notice file against the node's calendar and installs it as
/// `<data>/calendar/<years>.toml` (written whole or not at all); returns the years it added.
pub fn add(data_dir: &Path, file: &Path) -> Result<Vec<i16>> {
    let text = read_bounded(file)?;
    let mut calendar = load(data_dir)?;
    let before: Vec<i16> = calendar.years().collect();
    calendar
        .add_file(&text)
        .with_context(|| file.display().to_string())?;
    let added: Vec<i16> = calendar.years().filter(|y| !before.contains(y)).collect();
    if added.is_empty() {
        return Ok(added);
    }
    let name = added
        .iter()
        .map(|y| y.to_string())
        .collect::<Vec<_>>()
        .join("-");
    let dir = calendar_dir(data_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{name}.toml"));
    let tmp = dir.join(format!("{name}.toml.tmp"));
    {
        use std::io::Write;
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    sync_dir(&path)?;
    Ok(added)
}

/// A file's text, refusing more than [`CALENDAR_FILE_BYTES_MAX`] bytes before reading them.
fn read_bounded(path: &Path) -> Result<String> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut bytes = Vec::new();
    f.take(CALENDAR_FILE_BYTES_MAX as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() > CALENDAR_FILE_BYTES_MAX {
        bail!(
            "{} is larger than {CALENDAR_FILE_BYTES_MAX} bytes: not a holiday notice",
            path.display()
        );
    }
    String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8 text", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOTICE_2027: &str = "[2027]\noff = [[\"2027-01-01\", \"2027-01-01\"]]\nwork = []\n";

    #[test]
    fn an_added_notice_is_installed_and_loaded_again() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), WorkingCalendar::official());
        let file = dir.path().join("notice.toml");
        std::fs::write(&file, NOTICE_2027).unwrap();
        assert_eq!(add(dir.path(), &file).unwrap(), vec![2027]);
        assert!(calendar_dir(dir.path()).join("2027.toml").exists());
        let years: Vec<i16> = load(dir.path()).unwrap().years().collect();
        assert_eq!(years, vec![2025, 2026, 2027]);
        // Adding it again adds nothing; a contradicting one is refused, naming the file.
        assert!(add(dir.path(), &file).unwrap().is_empty());
        std::fs::write(&file, "[2027]\noff = []\nwork = []\n").unwrap();
        let e = format!("{:#}", add(dir.path(), &file).unwrap_err());
        assert!(e.contains("notice.toml") && e.contains("differs"), "{e}");
    }

    #[test]
    fn oversized_and_broken_files_are_refused_without_echoing_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("big.toml");
        std::fs::write(&file, vec![b'#'; CALENDAR_FILE_BYTES_MAX + 1]).unwrap();
        let e = format!("{:#}", add(dir.path(), &file).unwrap_err());
        assert!(e.contains("larger than"), "{e}");
        std::fs::write(&file, "[2027]\nsecret-token-here = 1\n").unwrap();
        let e = format!("{:#}", add(dir.path(), &file).unwrap_err());
        assert!(!e.contains("secret-token-here"), "{e}");
        // A broken file already installed stops the node's calendar from loading, by name.
        std::fs::create_dir_all(calendar_dir(dir.path())).unwrap();
        std::fs::write(calendar_dir(dir.path()).join("2028.toml"), "[2028\n").unwrap();
        let e = format!("{:#}", load(dir.path()).unwrap_err());
        assert!(e.contains("2028.toml"), "{e}");
    }
}
