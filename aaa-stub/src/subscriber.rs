//! The subscriber store: USIM credentials (K, OPc, AMF), allowed APNs, and each
//! subscriber's sequence number SQN, which is persisted before every authentication
//! vector leaves the server, atomically (write a temporary file, fsync, rename), so a
//! crash or `kill -9` never makes the AAA reuse a sequence number.
//!
//! Subscribers come from a TOML file: single subscribers, and IMSI ranges sharing one
//! K/OPc for load tests. SQNs live in a separate state file that holds only the
//! subscribers whose SQN moved from the provisioned value.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
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

/// A range of consecutive IMSIs sharing credentials.
#[derive(Debug, Clone)]
struct Range {
    first: u64,
    count: u64,
    digits: usize,
    template: Subscriber,
    sqn: u64,
}

/// The persisted SQN state: IMSI -> last SQN used.
#[derive(Debug, Default, Serialize, Deserialize)]
struct SqnState {
    #[serde(default)]
    sqn: BTreeMap<String, u64>,
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
                first,
                count: entry.count,
                digits,
                template,
                sqn: entry.sqn,
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

    fn range_of(&self, imsi: &str) -> Option<&Range> {
        let number: u64 = imsi.parse().ok()?;
        self.ranges
            .iter()
            .find(|r| imsi.len() == r.digits && number >= r.first && number - r.first < r.count)
    }

    /// The last SQN used for this subscriber.
    pub fn sqn(&self, imsi: &str) -> Option<u64> {
        if let Some(sqn) = self.state.sqn.get(imsi) {
            return Some(*sqn);
        }
        if let Some((_, sqn)) = self.single.get(imsi) {
            return Some(*sqn);
        }
        self.range_of(imsi).map(|r| r.sqn)
    }

    /// Records `sqn` as used for `imsi` and persists it before returning, so the vector
    /// built with it may leave. SQNs only move forward: an older value is ignored.
    pub fn commit_sqn(&mut self, imsi: &str, sqn: u64) -> Result<(), SubscriberError> {
        if self.sqn(imsi).is_some_and(|current| sqn <= current) {
            return Ok(());
        }
        self.state.sqn.insert(imsi.to_string(), sqn & SQN_MAX);
        self.persist()
    }

    /// Writes the state file atomically: temporary file, fsync, rename, fsync the folder.
    fn persist(&self) -> Result<(), SubscriberError> {
        let path = &self.state_path;
        let write_err = |source| SubscriberError::Write {
            path: path.clone(),
            source,
        };
        let text = toml::to_string(&self.state)
            .map_err(|e| write_err(std::io::Error::other(e.to_string())))?;
        let tmp = path.with_extension("tmp");
        {
            let mut file = fs::File::create(&tmp).map_err(write_err)?;
            file.write_all(
                b"# Last SQN used per IMSI; written by aaa-stub, do not edit while it runs.\n",
            )
            .and_then(|_| file.write_all(text.as_bytes()))
            .and_then(|_| file.sync_all())
            .map_err(write_err)?;
        }
        fs::rename(&tmp, path).map_err(write_err)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(dir) = fs::File::open(dir) {
                let _ = dir.sync_all();
            }
        }
        Ok(())
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
        s.commit_sqn("001010000100005", 7).unwrap();
        s.commit_sqn("001010000000001", 40).unwrap();
        let reloaded = store(dir.path());
        assert_eq!(reloaded.sqn("001010000000001"), Some(64));
        assert_eq!(reloaded.sqn("001010000100005"), Some(7));
        assert_eq!(reloaded.sqn("001010000100006"), Some(0));
        assert!(
            !dir.path().join("sqn.tmp").exists(),
            "temporary file renamed away"
        );
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
