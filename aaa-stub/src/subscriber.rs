//! The subscriber store: USIM credentials (K, OPc, AMF), allowed APNs, and each
//! subscriber's sequence number SQN, which is persisted before every authentication
//! vector leaves the server, atomically (write a temporary file, fsync, rename), so a
//! crash or `kill -9` never makes the AAA reuse a sequence number.
//!
//! Subscribers come from a TOML file: single subscribers (`[[subscriber]]`), and IMSI
//! ranges sharing one K/OPc (`[[range]]`: `first_imsi`, `count`), for load tests.
//! SQNs live in a separate state file.
//!
//! * A single subscriber's SQN is its own counter (TS 33.102 annex C.1.1.1), and the state
//!   file holds it once it moved from the provisioned value: every vector costs one
//!   durable rewrite of the state file.
//! * A range draws its SQNs from one counter for the whole range (TS 33.102 annex C.1.2,
//!   SEQ from a global counter): every vector of any IMSI in the range takes the counter's
//!   next value, so each IMSI still sees its SQNs strictly increase, and no state per IMSI
//!   is kept at all. The counter is made durable in blocks: the state file records a
//!   reservation ([`SQN_BLOCK`] values ahead); values up to it are handed out without
//!   touching the disk, and after a restart the counter resumes above the reservation, so
//!   no value is ever used twice. One durable write per [`SQN_BLOCK`] vectors instead of
//!   one per vector is what lets an attach storm run at CPU speed (BENCHMARKS.md). The
//!   USIM accepts the jumps as long as they stay within its delta (2^28 by default,
//!   TS 33.102 annex C.2.1); beyond, it answers with AUTS and the resynchronised SQN
//!   moves the range's counter above it.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The largest SQN: 48 bits (TS 33.102 section 6.3.2).
pub const SQN_MAX: u64 = (1 << 48) - 1;

/// Everything that can go wrong loading or saving subscribers.
#[derive(Debug, thiserror::Error)]
pub enum SubscriberError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: subscriber {imsi}: {message}")]
    Invalid {
        path: PathBuf,
        imsi: String,
        message: String,
    },
}

/// A 128-bit key or OPc, written as 32 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key128(pub [u8; 16]);

/// The credentials and permissions of one subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    pub imsi: String,
    pub k: Key128,
    pub opc: Key128,
    pub amf: [u8; 2],
    pub apns: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscriberFile {
    #[serde(default)]
    subscriber: Vec<SubscriberEntry>,
    #[serde(default)]
    range: Vec<RangeEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscriberEntry {
    imsi: String,
    k: String,
    opc: String,
    #[serde(default = "default_amf")]
    amf: String,
    /// Provisioned SQN, hex (up to 12 digits) or decimal.
    #[serde(default)]
    sqn: u64,
    apns: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeEntry {
    /// The first IMSI of the range (15 digits).
    first_imsi: String,
    /// How many consecutive IMSIs the range holds.
    count: u64,
    k: String,
    opc: String,
    #[serde(default = "default_amf")]
    amf: String,
    #[serde(default)]
    sqn: u64,
    apns: Vec<String>,
}

fn default_amf() -> String {
    "8000".into()
}

/// How far ahead of a range's SQN counter the state file reserves.
pub const SQN_BLOCK: u64 = 1024;

/// A range of consecutive IMSIs sharing credentials and one SQN counter.
#[derive(Debug, Clone)]
struct Range {
    /// The first IMSI as written (the range's key in the state file).
    name: String,
    first: u64,
    count: u64,
    digits: usize,
    template: Subscriber,
    /// The last SQN used by any IMSI of the range.
    counter: u64,
    /// The SQN up to which values may have been used, as persisted.
    reserved: u64,
}

/// The persisted SQN state.
#[derive(Debug, Default, Serialize, Deserialize)]
struct SqnState {
    /// Single subscribers: IMSI -> last SQN used.
    #[serde(default)]
    sqn: BTreeMap<String, u64>,
    /// Ranges: first IMSI -> the SQN reserved (every value up to it may have been used).
    #[serde(default)]
    range: BTreeMap<String, u64>,
}

/// All subscribers, and their SQNs persisted in `state_path`.
#[derive(Debug)]
pub struct SubscriberStore {
    single: HashMap<String, (Subscriber, u64)>,
    ranges: Vec<Range>,
    state: SqnState,
    state_path: PathBuf,
}

impl SubscriberStore {
    /// Loads the subscriber file and the SQN state file (absent state = provisioned SQNs).
    pub fn load(subscribers: &Path, state_path: &Path) -> Result<Self, SubscriberError> {
        let text = fs::read_to_string(subscribers).map_err(|source| SubscriberError::Read {
            path: subscribers.into(),
            source,
        })?;
        let file: SubscriberFile = toml::from_str(&text).map_err(|e| SubscriberError::Parse {
            path: subscribers.into(),
            message: e.to_string(),
        })?;
        let invalid = |imsi: &str, message: String| SubscriberError::Invalid {
            path: subscribers.into(),
            imsi: imsi.into(),
            message,
        };
        let mut single = HashMap::new();
        for entry in file.subscriber {
            check_imsi(&entry.imsi).map_err(|m| invalid(&entry.imsi, m))?;
            let subscriber = credentials(&entry.imsi, &entry.k, &entry.opc, &entry.amf, entry.apns)
                .map_err(|m| invalid(&entry.imsi, m))?;
            check_sqn(entry.sqn).map_err(|m| invalid(&entry.imsi, m))?;
            if single
                .insert(entry.imsi.clone(), (subscriber, entry.sqn))
                .is_some()
            {
                return Err(invalid(&entry.imsi, "listed twice".into()));
            }
        }
        let mut ranges = Vec::new();
        for entry in file.range {
            check_imsi(&entry.first_imsi).map_err(|m| invalid(&entry.first_imsi, m))?;
            let first: u64 = entry
                .first_imsi
                .parse()
                .map_err(|_| invalid(&entry.first_imsi, "not a number".into()))?;
            let digits = entry.first_imsi.len();
            // The last IMSI must keep the digit count: below 10^digits (leading zeros count).
            let limit = 10u64.checked_pow(digits as u32).unwrap_or(u64::MAX);
            let last = first.checked_add(entry.count.saturating_sub(1));
            if entry.count == 0 || last.is_none_or(|l| l >= limit) {
                return Err(invalid(
                    &entry.first_imsi,
                    format!("a range of {} does not fit in {digits} digits", entry.count),
                ));
            }
            check_sqn(entry.sqn).map_err(|m| invalid(&entry.first_imsi, m))?;
            let template = credentials(
                &entry.first_imsi,
                &entry.k,
                &entry.opc,
                &entry.amf,
                entry.apns,
            )
            .map_err(|m| invalid(&entry.first_imsi, m))?;
            ranges.push(Range {
                name: entry.first_imsi,
                first,
                count: entry.count,
                digits,
                template,
                counter: entry.sqn,
                reserved: entry.sqn,
            });
        }
        let state = match fs::read_to_string(state_path) {
            Ok(text) => toml::from_str(&text).map_err(|e| SubscriberError::Parse {
                path: state_path.into(),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => SqnState::default(),
            Err(source) => {
                return Err(SubscriberError::Read {
                    path: state_path.into(),
                    source,
                })
            }
        };
        for range in &mut ranges {
            // SQNs a state file of an older version kept per IMSI of the range.
            for (imsi, sqn) in &state.sqn {
                let inside = imsi.len() == range.digits
                    && imsi
                        .parse::<u64>()
                        .is_ok_and(|n| n >= range.first && n - range.first < range.count);
                if inside {
                    range.counter = range.counter.max(*sqn);
                    range.reserved = range.counter;
                }
            }
            if let Some(&reserved) = state.range.get(&range.name) {
                // Resume above everything that may have been used before the restart.
                range.counter = range.counter.max(reserved);
                range.reserved = range.counter;
            }
        }
        Ok(SubscriberStore {
            single,
            ranges,
            state,
            state_path: state_path.into(),
        })
    }

    /// How many subscribers the store knows (ranges counted in full).
    pub fn len(&self) -> u64 {
        self.single.len() as u64 + self.ranges.iter().map(|r| r.count).sum::<u64>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The subscriber with this IMSI, if provisioned.
    pub fn get(&self, imsi: &str) -> Option<Subscriber> {
        if let Some((subscriber, _)) = self.single.get(imsi) {
            return Some(subscriber.clone());
        }
        self.range_of(imsi).map(|range| Subscriber {
            imsi: imsi.to_string(),
            ..range.template.clone()
        })
    }

    fn range_index(&self, imsi: &str) -> Option<usize> {
        let number: u64 = imsi.parse().ok()?;
        self.ranges
            .iter()
            .position(|r| imsi.len() == r.digits && number >= r.first && number - r.first < r.count)
    }

    fn range_of(&self, imsi: &str) -> Option<&Range> {
        self.range_index(imsi).and_then(|i| self.ranges.get(i))
    }

    /// The last SQN used for this subscriber: its own, or its range's counter.
    pub fn sqn(&self, imsi: &str) -> Option<u64> {
        if let Some((_, provisioned)) = self.single.get(imsi) {
            return Some(self.state.sqn.get(imsi).copied().unwrap_or(*provisioned));
        }
        self.range_of(imsi).map(|r| r.counter)
    }

    /// Records `sqn` as used for `imsi`, durably before returning, so the vector built
    /// with it may leave. SQNs only move forward: an older value is ignored. In a range
    /// the value moves the range's counter, and the state file is rewritten only when it
    /// passes the reservation.
    pub fn commit_sqn(&mut self, imsi: &str, sqn: u64) -> Result<(), SubscriberError> {
        let sqn = sqn & SQN_MAX;
        if self.single.contains_key(imsi) {
            if self.sqn(imsi).is_some_and(|current| sqn <= current) {
                return Ok(());
            }
            self.state.sqn.insert(imsi.to_string(), sqn);
            return self.persist();
        }
        let Some(range) = self.range_index(imsi).and_then(|i| self.ranges.get_mut(i)) else {
            return Ok(());
        };
        range.counter = range.counter.max(sqn);
        if range.counter <= range.reserved {
            return Ok(());
        }
        let reserved = range.counter.saturating_add(SQN_BLOCK).min(SQN_MAX);
        let name = range.name.clone();
        let previous = self.state.range.insert(name.clone(), reserved);
        if let Err(e) = self.persist() {
            // Not durable: the next vector tries again.
            match previous {
                Some(p) => self.state.range.insert(name, p),
                None => self.state.range.remove(&name),
            };
            return Err(e);
        }
        if let Some(range) = self.range_index(imsi).and_then(|i| self.ranges.get_mut(i)) {
            range.reserved = reserved;
        }
        Ok(())
    }

    /// Writes the state file atomically (temporary file, fsync, rename, fsync the folder),
    /// mode 0600 from the temporary file on: the SQNs are what keeps challenges fresh.
    fn persist(&self) -> Result<(), SubscriberError> {
        let path = &self.state_path;
        let write_err = |source| SubscriberError::Write {
            path: path.clone(),
            source,
        };
        let text = toml::to_string(&self.state)
            .map_err(|e| write_err(std::io::Error::other(e.to_string())))?;
        pmip_node::secret_file::write_atomically(
            path,
            &[
                b"# Last SQN used per IMSI; written by aaa-stub, do not edit while it runs.\n",
                text.as_bytes(),
            ],
        )
        .map_err(write_err)
    }
}

fn check_imsi(imsi: &str) -> Result<(), String> {
    if !(6..=15).contains(&imsi.len()) || !imsi.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("IMSI {imsi:?} is not 6 to 15 digits (TS 23.003)"));
    }
    Ok(())
}

fn check_sqn(sqn: u64) -> Result<(), String> {
    if sqn > SQN_MAX {
        return Err(format!("sqn {sqn} exceeds 48 bits"));
    }
    Ok(())
}

fn credentials(
    imsi: &str,
    k: &str,
    opc: &str,
    amf: &str,
    apns: Vec<String>,
) -> Result<Subscriber, String> {
    let k = parse_hex::<16>(k).map_err(|e| format!("k: {e}"))?;
    let opc = parse_hex::<16>(opc).map_err(|e| format!("opc: {e}"))?;
    let amf = parse_hex::<2>(amf).map_err(|e| format!("amf: {e}"))?;
    if apns.is_empty() {
        return Err("apns: at least one APN is needed".into());
    }
    Ok(Subscriber {
        imsi: imsi.to_string(),
        k: Key128(k),
        opc: Key128(opc),
        amf,
        apns,
    })
}

fn parse_hex<const N: usize>(text: &str) -> Result<[u8; N], String> {
    let text = text.trim();
    if text.len() != 2 * N {
        return Err(format!("expected {} hex digits, got {}", 2 * N, text.len()));
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
            .map_err(|_| format!("{text:?} is not hex"))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[[subscriber]]
imsi = "001010000000001"
k = "465b5ce8b199b49faa5f0a2ee238a6bc"
opc = "cd63cb71954a9f4e48a5994e37a02baf"
amf = "b9b9"
sqn = 32
apns = ["internet", "ims"]

[[range]]
first_imsi = "001010000100000"
count = 1000
k = "465b5ce8b199b49faa5f0a2ee238a6bc"
opc = "cd63cb71954a9f4e48a5994e37a02baf"
apns = ["internet"]
"#;

    fn store(dir: &Path) -> SubscriberStore {
        let subs = dir.join("subscribers.toml");
        fs::write(&subs, FILE).unwrap();
        SubscriberStore::load(&subs, &dir.join("sqn.toml")).unwrap()
    }

    #[test]
    fn singles_and_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        assert_eq!(store.len(), 1001);
        let one = store.get("001010000000001").unwrap();
        assert_eq!(one.amf, [0xb9, 0xb9]);
        assert_eq!(one.apns, vec!["internet", "ims"]);
        assert_eq!(store.sqn("001010000000001"), Some(32));
        let ranged = store.get("001010000100999").unwrap();
        assert_eq!(ranged.imsi, "001010000100999");
        assert_eq!(ranged.amf, [0x80, 0x00]);
        assert!(store.get("001010000101000").is_none(), "one past the range");
        assert!(
            store.get("01010000100000").is_none(),
            "fewer digits is another IMSI"
        );
        assert!(store.get("999").is_none());
    }

    #[test]
    fn sqn_survives_reload_and_never_goes_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = store(dir.path());
        s.commit_sqn("001010000000001", 64).unwrap();
        s.commit_sqn("001010000000001", 40).unwrap();
        let reloaded = store(dir.path());
        assert_eq!(reloaded.sqn("001010000000001"), Some(64));
        assert!(
            !dir.path().join("sqn.tmp").exists(),
            "temporary file renamed away"
        );
    }

    #[test]
    fn the_sqn_state_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("sqn.toml");
        // An older file of a wider mode is replaced by a 0600 one.
        fs::write(&state, "").unwrap();
        fs::set_permissions(&state, fs::Permissions::from_mode(0o644)).unwrap();
        let mut s = store(dir.path());
        s.commit_sqn("001010000000001", 64).unwrap();
        let mode = fs::metadata(&state).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_range_shares_one_counter_and_persists_it_in_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("sqn.toml");
        let mut s = store(dir.path());
        // Every IMSI of the range starts at the range's provisioned SQN.
        assert_eq!(s.sqn("001010000100000"), Some(0));
        assert_eq!(s.sqn("001010000100999"), Some(0));
        // A vector for one IMSI moves the counter for all: the next IMSI gets a higher SQN.
        s.commit_sqn("001010000100005", 1).unwrap();
        assert_eq!(s.sqn("001010000100006"), Some(1));
        let first_write = fs::read_to_string(&state).unwrap();
        assert!(
            first_write.contains(&format!("001010000100000 = {}", 1 + SQN_BLOCK)),
            "{first_write}"
        );
        // Within the reservation nothing more is written, and nothing per IMSI is kept.
        for (n, imsi) in (2..=SQN_BLOCK + 1).zip((0..1000).cycle()) {
            s.commit_sqn(&format!("{:015}", 1_010_000_100_000u64 + imsi), n)
                .unwrap();
        }
        assert_eq!(fs::read_to_string(&state).unwrap(), first_write);
        assert_eq!(s.sqn("001010000100999"), Some(SQN_BLOCK + 1));
        // Passing it reserves the next block.
        s.commit_sqn("001010000100001", SQN_BLOCK + 2).unwrap();
        assert!(fs::read_to_string(&state)
            .unwrap()
            .contains(&format!("001010000100000 = {}", 2 + 2 * SQN_BLOCK)));
        // After a restart (or a crash) the counter resumes above every value handed out.
        let reloaded = store(dir.path());
        assert_eq!(reloaded.sqn("001010000100001"), Some(2 + 2 * SQN_BLOCK));
        // Single subscribers keep their own SQN, untouched by the range.
        assert_eq!(reloaded.sqn("001010000000001"), Some(32));
    }

    #[test]
    fn a_range_resumes_above_sqns_an_older_state_file_kept_per_imsi() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("sqn.toml"),
            "[sqn]\n001010000100007 = 99\n001010000000001 = 40\n",
        )
        .unwrap();
        let s = store(dir.path());
        assert_eq!(s.sqn("001010000100123"), Some(99));
        assert_eq!(s.sqn("001010000000001"), Some(40));
    }

    #[test]
    fn a_failed_write_hands_out_nothing_and_is_retried() {
        let dir = tempfile::tempdir().unwrap();
        let subs = dir.path().join("subscribers.toml");
        fs::write(&subs, FILE).unwrap();
        // The state file's folder does not exist: the write fails.
        let mut s =
            SubscriberStore::load(&subs, &dir.path().join("missing").join("sqn.toml")).unwrap();
        assert!(s.commit_sqn("001010000100005", 1).is_err());
        fs::create_dir(dir.path().join("missing")).unwrap();
        s.commit_sqn("001010000100005", 2).unwrap();
        let reloaded =
            SubscriberStore::load(&subs, &dir.path().join("missing").join("sqn.toml")).unwrap();
        assert_eq!(reloaded.sqn("001010000100005"), Some(2 + SQN_BLOCK));
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let subs = dir.path().join("subscribers.toml");
        fs::write(&subs, FILE.replace("amf = \"b9b9\"", "amf = \"b9\"")).unwrap();
        let err = SubscriberStore::load(&subs, &dir.path().join("sqn.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("subscribers.toml")
                && err.contains("amf")
                && err.contains("001010000000001"),
            "{err}"
        );
        fs::write(
            &subs,
            FILE.replace("apns = [\"internet\", \"ims\"]", "apns = []\ncolour = 1"),
        )
        .unwrap();
        let err = SubscriberStore::load(&subs, &dir.path().join("sqn.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("colour"), "{err}");
        fs::write(
            &subs,
            FILE.replace("count = 1000", "count = 999999999999999"),
        )
        .unwrap();
        let err = SubscriberStore::load(&subs, &dir.path().join("sqn.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not fit"), "{err}");
    }
}
