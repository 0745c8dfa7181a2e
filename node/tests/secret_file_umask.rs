//! Secret files under a permissive umask: their own test binary, hence their own process,
//! since the umask is per process and would change the mode of files other tests make.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use pmip_node::pcap::PcapWriter;
use pmip_node::secret_file;

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Runs `f` under `umask`, restoring the old one.
fn with_umask<T>(umask: libc::mode_t, f: impl FnOnce() -> T) -> T {
    // SAFETY: umask(2) only swaps the process's file mode creation mask.
    let old = unsafe { libc::umask(umask) };
    let result = f();
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    result
}

#[test]
fn secret_files_and_pcaps_are_0600_whatever_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    for (umask, name) in [(0o022, "a"), (0o000, "b"), (0o277, "c")] {
        let created = dir.path().join(format!("{name}.keylog"));
        let replaced = dir.path().join(format!("{name}.toml"));
        let pcap = dir.path().join(format!("{name}.pcap"));
        with_umask(umask, || {
            secret_file::create(&created)
                .unwrap()
                .write_all(b"keys")
                .unwrap();
            secret_file::write_atomically(&replaced, &[b"sqn = ", b"1\n"]).unwrap();
            PcapWriter::create(&pcap).unwrap().flush().unwrap();
        });
        for path in [&created, &replaced, &pcap] {
            assert_eq!(
                mode(path),
                0o600,
                "{} under umask {umask:03o}",
                path.display()
            );
        }
        assert_eq!(fs::read(&created).unwrap(), b"keys");
        assert_eq!(fs::read_to_string(&replaced).unwrap(), "sqn = 1\n");
        assert_eq!(
            fs::metadata(&pcap).unwrap().len(),
            24,
            "the pcap global header"
        );
    }
    assert!(!dir.path().join("a.tmp").exists());
}
