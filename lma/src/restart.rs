//! The restart counter (RFC 5847 section 5.2): a number the LMA changes every time it
//! restarts and reports in every Heartbeat response, so a MAG notices that the LMA lost
//! its bindings. RFC 5847 asks for it to be kept across restarts and incremented by one:
//! with a state file that is exactly what [`next_from_file`] does; without one the
//! counter is the start time in seconds since 1970 (also larger after every restart,
//! though not by one).
//!
//! The file is read and written once at start, by the driver; the core only reports the
//! value it is given.

use std::io;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// The counter to use when no state file is configured.
pub fn from_clock(now: SystemTime) -> u32 {
    let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    u32::try_from(secs).unwrap_or(u32::MAX)
}

/// The counter after `previous` (a fresh LMA starts at 1).
pub fn next(previous: Option<u32>) -> u32 {
    previous.map_or(1, |p| p.wrapping_add(1))
}

/// Reads the previous counter from `path` (missing file: none), writes and returns the
/// next one. The write goes to a temporary file renamed over the old one, so a crash
/// leaves either the old or the new value.
pub fn next_from_file(path: &Path) -> io::Result<u32> {
    let previous = match std::fs::read_to_string(path) {
        Ok(text) => Some(text.trim().parse::<u32>().map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} does not hold a restart counter: {e}", path.display()),
            )
        })?),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let counter = next(previous);
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    std::fs::write(&temporary, format!("{counter}\n"))?;
    std::fs::rename(&temporary, path)?;
    Ok(counter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_counts_restarts() {
        let dir = std::env::temp_dir().join(format!("lma-restart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("restart_counter");
        let _ = std::fs::remove_file(&path);
        assert_eq!(next_from_file(&path).unwrap(), 1);
        assert_eq!(next_from_file(&path).unwrap(), 2);
        std::fs::write(&path, "garbage").unwrap();
        assert!(next_from_file(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(next(Some(u32::MAX)), 0);
        assert!(from_clock(SystemTime::now()) > 1_700_000_000);
    }
}
