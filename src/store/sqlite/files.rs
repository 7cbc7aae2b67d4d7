//! The database's files on disk (SPEC §16–§17): they hold every tenant's signing secret,
//! so nobody but the service's user may read them.
//!
//! A folder created for the database is 0700; a new database file is created 0600 before
//! SQLite opens it, and SQLite gives its WAL and shared-memory files the database file's
//! mode. An existing database (or WAL, or shared-memory file) that others may read is set
//! to 0600 at start, with a warning.

use std::path::{Path, PathBuf};

use crate::store::{StoreError, StoreResult};

/// Owner read and write only.
#[cfg(unix)]
const FILE_MODE: u32 = 0o600;
/// Owner only.
#[cfg(unix)]
const DIR_MODE: u32 = 0o700;

/// Makes the database's folder (0700) and file (0600) if they are missing, and takes
/// group and other permissions away from existing ones.
pub fn prepare(path: &Path) -> StoreResult<()> {
    let unavailable = |what: &Path, e: std::io::Error| {
        StoreError::Unavailable(format!("cannot prepare {}: {e}", what.display()))
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        create_dir(dir).map_err(|e| unavailable(dir, e))?;
    }
    create_file(path).map_err(|e| unavailable(path, e))?;
    for file in [
        path.to_owned(),
        companion(path, "-wal"),
        companion(path, "-shm"),
    ] {
        restrict(&file).map_err(|e| unavailable(&file, e))?;
    }
    Ok(())
}

/// `path` with `suffix` appended to its file name, as SQLite names its WAL and SHM files.
fn companion(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(unix)]
fn create_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
}

#[cfg(not(unix))]
fn create_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// Creates an empty file 0600 unless one exists (SQLite then takes it as a new database).
fn create_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, FILE_MODE);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Sets an existing file that group or others may access to 0600, with a warning.
#[cfg(unix)]
fn restrict(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = match std::fs::metadata(path) {
        Ok(meta) => meta.permissions().mode() & 0o777,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if mode & 0o077 == 0 {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(FILE_MODE))?;
    tracing::warn!(
        file = %path.display(),
        was = format!("{mode:o}"),
        "the database file was readable by others (it holds every tenant's signing secret); set to 600"
    );
    Ok(())
}

#[cfg(not(unix))]
fn restrict(_: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_new_folder_is_0700_and_a_new_file_0600() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("data/deeper/consuma.db");
        prepare(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&tmp.path().join("data/deeper")), 0o700);
        assert_eq!(mode(&tmp.path().join("data")), 0o700);
    }

    #[test]
    fn existing_files_readable_by_others_are_restricted() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("consuma.db");
        for file in [db.clone(), companion(&db, "-wal"), companion(&db, "-shm")] {
            std::fs::write(&file, b"").unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        prepare(&db).unwrap();
        for file in [db.clone(), companion(&db, "-wal"), companion(&db, "-shm")] {
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
    }

    #[test]
    fn an_existing_folder_keeps_its_mode() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        prepare(&tmp.path().join("x.db")).unwrap();
        assert_eq!(mode(tmp.path()), 0o755);
    }
}
