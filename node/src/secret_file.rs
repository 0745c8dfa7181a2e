//! Files that hold secrets, created readable and writable by their owner only (mode
//! 0600) whatever the process umask: every `--pcap` (a Diameter capture carries the
//! EAP-Master-Session-Key, RFC 4072 section 4.1.3), every IKEv2/ESP key log, the AAA's
//! SQN state.
//!
//! The mode is set on the open descriptor (`fchmod`) right after it is created and before
//! any byte is written, so neither a restrictive umask (which would leave 0400) nor a
//! permissive one (0644 under 022), nor an older file of a wider mode, decides it.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The mode of every file made here: owner read and write.
pub const MODE: u32 = 0o600;

/// Creates (or truncates) `path` for writing, with mode 0600.
pub fn create(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(MODE)
        .open(path)?;
    file.set_permissions(Permissions::from_mode(MODE))?;
    Ok(file)
}

/// Replaces `path` with `parts`, written one after the other, atomically: a temporary
/// file beside it (mode 0600 before its first byte), fsync, rename over `path`, fsync of
/// the folder. A reader sees the old file or the new one, never a part of either.
pub fn write_atomically(path: &Path, parts: &[&[u8]]) -> io::Result<()> {
    let tmp = temporary_path(path);
    let written = create(&tmp).and_then(|mut file| {
        for part in parts {
            file.write_all(part)?;
        }
        file.sync_all()
    });
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(dir) = File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

/// `path` with `.tmp` in place of its extension (`sqn.toml` -> `sqn.tmp`).
fn temporary_path(path: &Path) -> PathBuf {
    path.with_extension("tmp")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn an_older_wider_file_is_narrowed_and_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keylog");
        fs::write(&path, b"old secrets, longer than the new ones").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        create(&path).unwrap().write_all(b"new").unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(fs::read(&path).unwrap(), b"new");
    }

    #[test]
    fn a_failed_replacement_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a non-empty folder: the rename fails.
        let path = dir.path().join("state.toml");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("inside"), b"x").unwrap();
        assert!(write_atomically(&path, &[b"new"]).is_err());
        assert!(path.join("inside").exists());
        assert!(!dir.path().join("state.tmp").exists());
    }
}
