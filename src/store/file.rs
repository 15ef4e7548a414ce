//! The database file itself: who may read it, and opening it without writing.
//!
//! The database holds employees' names and attendance, so it is readable by its
//! owner only. A new file is created 0600 before SQLite opens it: SQLite creates
//! the `-wal` and `-shm` files with the mode of the database file, whatever the
//! umask, so they are 0600 too. That is more robust than changing the process
//! umask (process-wide, and racy with other threads creating files) or chmod
//! after the open (a window where the files are readable). Files an older
//! version left wider are tightened when the database is opened for writing.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::{StoreError, BUSY_TIMEOUT};

/// The companion files SQLite keeps next to a WAL database.
pub(super) fn companions(path: &Path) -> [PathBuf; 2] {
    let with = |suffix: &str| {
        let mut name = path.as_os_str().to_os_string();
        name.push(suffix);
        PathBuf::from(name)
    };
    [with("-wal"), with("-shm")]
}

/// Creates the database file owner-only if it is missing, and takes group and
/// other permissions off it and its companions if they have any.
#[cfg(unix)]
pub(super) fn make_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io_err = |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io_err)?;
    let [wal, shm] = companions(path);
    for file in [path.to_path_buf(), wal, shm] {
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            let private = std::fs::Permissions::from_mode(mode & 0o700);
            if let Err(e) = std::fs::set_permissions(&file, private) {
                // Not ours to change (another owner): say so, and go on.
                tracing::warn!(file = %file.display(), error = %e,
                    "the database file is readable by other users and cannot be made owner-only");
            }
        }
    }
    Ok(())
}

#[cfg(not(unix))]
pub(super) fn make_private(_path: &Path) -> Result<(), StoreError> {
    Ok(())
}

/// Opens an existing database for reading only: never creates, migrates or
/// changes it (`status`). A missing file is [`StoreError::Missing`].
pub(super) fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    let open_err = |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => {
            return Err(StoreError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::other("not a file"),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StoreError::Missing {
                path: path.to_path_buf(),
            })
        }
        Err(source) => {
            return Err(StoreError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(open_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(open_err)?;
    if version == 0 {
        return Err(StoreError::NotAttendsync {
            path: path.to_path_buf(),
        });
    }
    if version > super::CURRENT_VERSION {
        return Err(StoreError::TooNew {
            found: version,
            supported: super::CURRENT_VERSION,
        });
    }
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::super::tests::m;
    use super::super::Store;
    use super::*;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[cfg(unix)]
    #[test]
    fn the_database_and_its_wal_and_shm_files_are_owner_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.db");
        let s = Store::open(&path).expect("open");
        s.add_metered("j", m("2026-11"), 1).expect("write");
        let [wal, shm] = companions(&path);
        for file in [&path, &wal, &shm] {
            assert_eq!(mode(file), 0o600, "{}", file.display());
        }
    }

    #[cfg(unix)]
    #[test]
    fn files_left_readable_by_others_are_tightened_at_open() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("old.db");
        let [wal, shm] = companions(&path);
        {
            let s = Store::open(&path).expect("open");
            s.add_metered("j", m("2026-11"), 1).expect("write");
            let wide = std::fs::Permissions::from_mode(0o644);
            for file in [&path, &wal, &shm] {
                std::fs::set_permissions(file, wide.clone()).expect("chmod");
            }
            // Reopened while the first handle keeps -wal and -shm in place.
            let again = Store::open(&path).expect("reopen");
            for file in [&path, &wal, &shm] {
                assert_eq!(mode(file), 0o600, "{}", file.display());
            }
            drop(again);
        }
    }

    #[test]
    fn read_only_opening_never_creates_a_file_and_never_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("typo.db");
        let err = Store::open_read_only(&path).err().expect("missing");
        assert!(matches!(err, StoreError::Missing { .. }), "{err}");
        assert!(!path.exists(), "no file was created");

        let s = Store::open(&path).expect("open");
        s.add_metered("j", m("2026-11"), 1).expect("write");
        drop(s);
        let ro = Store::open_read_only(&path).expect("read-only");
        assert_eq!(ro.metered_spent("j", m("2026-11")).expect("read"), 1);
        assert!(
            ro.add_metered("j", m("2026-11"), 1).is_err(),
            "writes refused"
        );

        let empty = dir.path().join("empty.db");
        std::fs::write(&empty, b"").expect("empty file");
        let err = Store::open_read_only(&empty).err().expect("not ours");
        assert!(matches!(err, StoreError::NotAttendsync { .. }), "{err}");
    }
}
