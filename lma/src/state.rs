//! The restoration state file (TS 23.007 section 19: what must outlive a restart): the
//! core's [`JournalRecord`]s, one line each, appended as they come, beside the restart
//! counter file (`<restart_counter_file>.bindings`). At start it is read back into
//! [`Restored`] (the bindings that were up, the entries held back) for
//! [`crate::Lma::restore`], then written anew from what that restoration holds back, and
//! appended to from there on. A line is written out at the end of each event the driver
//! handles, so a `kill -9` loses nothing the kernel has seen; a torn last line (power
//! loss) is skipped.
//!
//! Lines, fields separated by one space, `-` for none, `%` escapes (`%20`, `%25`, `%0A`)
//! in the NAI and APN: `B id mag nai apn ipv4 prefix home` (a binding), `U id` (gone),
//! `Q id until mag nai apn ipv4 prefix home` (held back until `until`, seconds since
//! 1970), `R id` (released). A MAG path is `udp:ADDR:PORT@LOCAL` or `mh:ADDR@LOCAL`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use crate::anchor::{HeldBinding, JournalRecord, Quarantined, Restored};
use crate::transport::MagAddress;

/// The state file that goes with a restart counter file.
pub fn path_for(restart_counter_file: &Path) -> PathBuf {
    let mut name = restart_counter_file.as_os_str().to_owned();
    name.push(".bindings");
    PathBuf::from(name)
}

fn escape(text: &str) -> String {
    text.replace('%', "%25")
        .replace(' ', "%20")
        .replace('\n', "%0A")
}

fn unescape(text: &str) -> String {
    text.replace("%20", " ")
        .replace("%0A", "\n")
        .replace("%25", "%")
}

fn optional<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn mag_text(mag: &MagAddress) -> String {
    match mag {
        MagAddress::Udp4 { mag, local } => format!("udp:{mag}@{local}"),
        MagAddress::Ip6 { mag, local, .. } => format!("mh:{mag}@{local}"),
    }
}

fn parse_mag(text: &str) -> Option<MagAddress> {
    if let Some(rest) = text.strip_prefix("udp:") {
        let (mag, local) = rest.split_once('@')?;
        let SocketAddr::V4(mag) = mag.parse().ok()? else {
            return None;
        };
        return Some(MagAddress::Udp4 {
            mag,
            local: local.parse::<Ipv4Addr>().ok()?,
        });
    }
    let rest = text.strip_prefix("mh:")?;
    let (mag, local) = rest.split_once('@')?;
    Some(MagAddress::Ip6 {
        mag: mag.parse::<Ipv6Addr>().ok()?,
        local: local.parse::<Ipv6Addr>().ok()?,
        kernel_checksum: true,
    })
}

fn binding_text(b: &HeldBinding) -> String {
    format!(
        "{} {} {} {} {} {}",
        mag_text(&b.mag),
        escape(&b.mn_id),
        b.apn.as_deref().map_or_else(|| "-".to_string(), escape),
        optional(b.ipv4_home_address),
        optional(b.home_network_prefix),
        optional(b.home.as_ref().map(mag_text)),
    )
}

fn parse_binding(fields: &[&str]) -> Option<HeldBinding> {
    let [mag, nai, apn, ipv4, prefix, home] = fields else {
        return None;
    };
    let none = |f: &str| f == "-";
    Some(HeldBinding {
        mag: parse_mag(mag)?,
        mn_id: unescape(nai),
        apn: (!none(apn)).then(|| unescape(apn)),
        ipv4_home_address: if none(ipv4) {
            None
        } else {
            Some(ipv4.parse().ok()?)
        },
        home_network_prefix: if none(prefix) {
            None
        } else {
            Some(prefix.parse().ok()?)
        },
        home: if none(home) {
            None
        } else {
            Some(parse_mag(home)?)
        },
    })
}

/// One record as a line (with its newline).
pub fn line(record: &JournalRecord) -> String {
    match record {
        JournalRecord::Bound { id, binding } => format!("B {id} {}\n", binding_text(binding)),
        JournalRecord::Unbound { id } => format!("U {id}\n"),
        JournalRecord::Quarantined { id, binding, until } => {
            let secs = until
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            format!("Q {id} {secs} {}\n", binding_text(binding))
        }
        JournalRecord::Released { id } => format!("R {id}\n"),
    }
}

/// Replays the lines of a state file; lines that do not parse are skipped.
pub fn replay(text: &str) -> Restored {
    let mut bound: BTreeMap<u64, HeldBinding> = BTreeMap::new();
    let mut held: BTreeMap<u64, Quarantined> = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(id) = fields.get(1).and_then(|f| f.parse::<u64>().ok()) else {
            continue;
        };
        match (fields[0], &fields[2..]) {
            ("B", rest) => {
                if let Some(b) = parse_binding(rest) {
                    bound.insert(id, b);
                }
            }
            ("U", []) => {
                bound.remove(&id);
            }
            ("Q", [until, rest @ ..]) => {
                let until = until.parse::<u64>().ok().map(Duration::from_secs);
                if let (Some(until), Some(binding)) = (until, parse_binding(rest)) {
                    let until = UNIX_EPOCH + until;
                    held.insert(id, Quarantined { binding, until });
                }
            }
            ("R", []) => {
                held.remove(&id);
            }
            _ => {}
        }
    }
    Restored {
        bindings: bound.into_values().collect(),
        quarantined: held.into_values().collect(),
    }
}

/// Reads what the previous run left (nothing when there is no file).
pub fn read(path: &Path) -> io::Result<Restored> {
    match File::open(path) {
        Ok(file) => {
            let mut text = String::new();
            for line in BufReader::new(file).lines() {
                text.push_str(&line?);
                text.push('\n');
            }
            Ok(replay(&text))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Restored::default()),
        Err(e) => Err(e),
    }
}

/// The state file being written.
pub struct StateFile {
    path: PathBuf,
    out: BufWriter<File>,
    /// The first write error, kept for the log (writing goes on being tried).
    pub failed: Option<io::Error>,
}

impl StateFile {
    /// Starts a new state file at `path` with `records` (what the restoration holds
    /// back): written to a temporary file first and renamed over the old one, so a crash
    /// leaves one of the two whole.
    pub fn create(path: &Path, records: &[JournalRecord]) -> io::Result<StateFile> {
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        let mut out = BufWriter::new(File::create(&temporary)?);
        for record in records {
            out.write_all(line(record).as_bytes())?;
        }
        out.flush()?;
        out.get_ref().sync_all()?;
        std::fs::rename(&temporary, path)?;
        Ok(StateFile {
            path: path.to_path_buf(),
            out,
            failed: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record (buffered until [`StateFile::flush`]).
    pub fn append(&mut self, record: &JournalRecord) {
        if let Err(e) = self.out.write_all(line(record).as_bytes()) {
            self.failed.get_or_insert(e);
        }
    }

    /// Hands what was appended to the kernel.
    pub fn flush(&mut self) {
        if let Err(e) = self.out.flush() {
            self.failed.get_or_insert(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddrV4;

    fn binding(n: u8, home: bool) -> HeldBinding {
        HeldBinding {
            mn_id: format!("00101{n}@nai epc%"),
            apn: Some("internet".into()),
            mag: MagAddress::Udp4 {
                mag: SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 5436),
                local: Ipv4Addr::new(192, 0, 2, 2),
            },
            ipv4_home_address: Some(Ipv4Addr::new(10, 0, 0, n)),
            home_network_prefix: Some(format!("2001:db8:0:{n}::/64").parse().unwrap()),
            home: home.then_some(MagAddress::Ip6 {
                mag: "2001:db8::3".parse().unwrap(),
                local: "2001:db8::2".parse().unwrap(),
                kernel_checksum: true,
            }),
        }
    }

    #[test]
    fn records_replay_into_what_is_left() {
        let until = UNIX_EPOCH + Duration::from_secs(1_900_000_000);
        let records = [
            JournalRecord::Bound {
                id: 1,
                binding: binding(1, false),
            },
            JournalRecord::Bound {
                id: 2,
                binding: binding(2, true),
            },
            JournalRecord::Unbound { id: 1 },
            JournalRecord::Bound {
                id: 3,
                binding: binding(3, false),
            },
            JournalRecord::Quarantined {
                id: 1,
                binding: binding(4, false),
                until,
            },
            JournalRecord::Quarantined {
                id: 2,
                binding: binding(5, false),
                until,
            },
            JournalRecord::Released { id: 2 },
        ];
        let mut text: String = records.iter().map(line).collect();
        // A torn last line is skipped.
        text.push_str("B 9 udp:192.0.2.1:54");
        let restored = replay(&text);
        assert_eq!(restored.bindings, vec![binding(2, true), binding(3, false)]);
        assert_eq!(
            restored.quarantined,
            vec![Quarantined {
                binding: binding(4, false),
                until
            }]
        );
    }

    #[test]
    fn the_file_is_started_anew_and_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_for(&dir.path().join("restart_counter"));
        assert_eq!(read(&path).unwrap(), Restored::default());
        let first = JournalRecord::Bound {
            id: 7,
            binding: binding(7, false),
        };
        let mut file = StateFile::create(&path, &[first]).unwrap();
        file.append(&JournalRecord::Bound {
            id: 8,
            binding: binding(8, false),
        });
        file.flush();
        assert!(file.failed.is_none());
        let restored = read(&path).unwrap();
        assert_eq!(
            restored.bindings,
            vec![binding(7, false), binding(8, false)]
        );
    }
}
