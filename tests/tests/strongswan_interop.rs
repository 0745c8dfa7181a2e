//! A real IKEv2 client as the UE. strongSwan's charon (built by
//! scripts/build-strongswan.sh, with the eap-aka-3gpp software USIM and kernel-libipsec)
//! runs in a network namespace of its own and attaches, driven by swanctl over its vici
//! socket, to the real `mag` (root namespace), which uses the real `aaa-stub` (SWm, on
//! 127.0.130.4) and the real `lma` (in a second namespace, with its SGi TUN device as the
//! PDN host):
//!
//! ```text
//!  ns "ue" (tag 6)              root                          ns "lma" (tag 5)
//!  charon, ipsec0 (libipsec) == mag (IKE 500/4500) ==GRE==>  lma, SGi TUN 10.130.1.1
//!  172.25.x.2 ---veth--- 172.25.x.1   172.26.x.1 ---veth--- 172.26.x.2
//!                          aaa-stub 127.0.130.4:3868
//! ```
//!
//! The UE is configured as a phone is: EAP-AKA with its permanent NAI as IDi, K and OPc
//! as the EAP secret (eap-aka-3gpp reads `0x<K><OPc>`), the APN as IDr, virtual IPv4 and
//! IPv6 addresses requested, traffic selectors 0.0.0.0/0 and ::/0. eap-aka-3gpp's
//! SQN check is switched on (`seq_check`, off by default in strongSwan; a real USIM always
//! checks): its SQN is time based, so the AAA's first challenge is out of range and the
//! first attach goes through Synchronization-Failure, AUTS and a new challenge.
//!
//! Checked: IKE SA ESTABLISHED and CHILD_SA INSTALLED (`swanctl --list-sas`); the virtual
//! IPs charon installed equal the LMA's binding; a ping from the virtual IPv4 and IPv6
//! addresses reaches the PDN host and returns; resynchronisation on the first attach and
//! none on the second; `swanctl --terminate` removes the LMA binding, the ePDG's state and
//! the Diameter session; and each proposal of a table (strongSwan's defaults and what
//! phones offer) attaches. A second lab (its own namespaces and AAA address) lets
//! strongSwan rekey its IKE SA and CHILD_SA every 20 s during a minute of pings (RFC 7296
//! section 1.3): every rekey succeeds, at most one ping is lost per rekey, and tshark
//! decrypts the CREATE_CHILD_SA exchanges with the keylog. Needs root (namespaces, veths,
//! TUN devices, raw GRE sockets); without it the test says so and passes without running.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use integration_tests::netns::{LmaProcess, Topology};
use integration_tests::tshark_fields::{values, walk};
use integration_tests::{node_binary, write_file, Node};
use ipnet::Ipv6Net;
use serde_json::{Map, Value};

const K: &str = "465b5ce8b199b49faa5f0a2ee238a6bc";
const OPC: &str = "cd63cb71954a9f4e48a5994e37a02baf";
const IMSI: &str = "001010000000001";
/// The EAP-AKA permanent identity (TS 23.003 section 19.3.2).
const NAI: &str = "0001010000000001@nai.epc.mnc001.mcc001.3gppnetwork.org";
const APN: &str = "internet";
const IPV4_POOL: &str = "10.130.0.0/24";
const IPV6_POOL: &str = "2001:db8:130:100::/56";
/// The LMA's SGi TUN device: the PDN host the UE pings (the kernel behind it answers).
const PDN_V4: &str = "10.130.1.1";
const PDN_V6: &str = "2001:db8:130::1";
/// Attaches in the test: resync + second, the other proposals, before and after the reboot.
const ATTACHES: usize = 2 + (PROPOSALS.len() - 1) + 2;
/// Wireshark's expert severity "warning" (`PI_WARN`); "note" and "chat" are below it.
const PI_WARN: u32 = 0x0060_0000;
/// Where each lab's aaa-stub listens, and the tags of its namespaces.
struct LabIds {
    aaa: Ipv4Addr,
    lma_tag: u8,
    ue_tag: u8,
}

const MAIN: LabIds = LabIds {
    aaa: Ipv4Addr::new(127, 0, 130, 4),
    lma_tag: 5,
    ue_tag: 6,
};

const REKEYING: LabIds = LabIds {
    aaa: Ipv4Addr::new(127, 0, 130, 5),
    lma_tag: 3,
    ue_tag: 4,
};

fn path(p: &Path) -> Result<&str> {
    p.to_str().context("non-UTF-8 path")
}

/// Where scripts/build-strongswan.sh installed strongSwan.
fn strongswan_prefix() -> PathBuf {
    std::env::var_os("STRONGSWAN_PREFIX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/pmip-strongswan"))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// charon in the UE namespace, its configuration, vici socket, pid file and log in a
/// folder of its own; SIGTERM then SIGKILL on drop.
struct Charon {
    child: Child,
    dir: PathBuf,
    ns: String,
    swanctl: PathBuf,
}

impl Charon {
    fn start(ns: &str, dir: &Path) -> Result<Charon> {
        let prefix = strongswan_prefix();
        let charon = prefix.join("libexec/ipsec/charon");
        let swanctl = prefix.join("sbin/swanctl");
        ensure!(
            charon.exists() && swanctl.exists() && prefix.join("run").is_dir(),
            "strongSwan is not built in {} (run scripts/build-strongswan.sh, which \
             scripts/setup.sh runs)",
            prefix.display()
        );
        let log = dir.join("charon.log");
        write_file(
            dir,
            "strongswan.conf",
            &format!(
                "charon {{\n\
                 \x20 filelog {{\n    ue {{\n      path = {log}\n      time_format = %T\n\
                 \x20     default = 1\n      ike = 2\n      flush_line = yes\n    }}\n  }}\n\
                 \x20 retransmit_timeout = 2\n  retransmit_tries = 3\n\
                 \x20 plugins {{\n\
                 \x20   vici {{\n      socket = unix://{vici}\n    }}\n\
                 \x20   eap-aka-3gpp {{\n      seq_check = yes\n    }}\n\
                 \x20   resolve {{\n      file = {resolv}\n    }}\n\
                 \x20 }}\n}}\n",
                log = log.display(),
                vici = dir.join("charon.vici").display(),
                resolv = dir.join("resolv.conf").display(),
            ),
        )?;
        let out = std::fs::File::create(dir.join("charon.out"))?;
        // `ip netns exec` gives charon a mount namespace of its own: its pid file folder
        // (fixed at build time) is bound to `dir` there, so charons of concurrent tests
        // do not see each other's pid file.
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "sh", "-c"])
            .arg(
                "mount --bind \"$1\" \"$2/run\" && \
                 exec env STRONGSWAN_CONF=\"$1/strongswan.conf\" \"$3\"",
            )
            .arg("sh")
            .arg(dir)
            .arg(&prefix)
            .arg(&charon)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting charon in the UE namespace")?;
        let mut c = Charon {
            child,
            dir: dir.to_path_buf(),
            ns: ns.to_string(),
            swanctl,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if c.swanctl(&["--stats"]).is_ok_and(|o| o.status.success()) {
                return Ok(c);
            }
            if let Ok(Some(status)) = c.child.try_wait() {
                bail!("charon exited ({status}):\n{}", c.logs());
            }
            ensure!(
                Instant::now() < deadline,
                "charon's vici socket did not answer:\n{}",
                c.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn swanctl(&self, args: &[&str]) -> Result<Output> {
        let uri = format!("unix://{}", self.dir.join("charon.vici").display());
        Command::new(&self.swanctl)
            .args(args)
            .args(["--uri", &uri])
            .output()
            .with_context(|| format!("running swanctl {}", args.join(" ")))
    }

    /// Runs swanctl and fails with its output unless it succeeds.
    fn swanctl_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.swanctl(args)?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ensure!(
            out.status.success(),
            "swanctl {} failed ({}):\n{text}\ncharon:\n{}",
            args.join(" "),
            out.status,
            self.logs()
        );
        Ok(text)
    }

    /// Loads `swanctl.conf` (connections and secrets) from `dir`.
    fn load(&self, swanctl_conf: &Path) -> Result<()> {
        self.swanctl_ok(&["--load-all", "--noprompt", "--file", path(swanctl_conf)?])?;
        Ok(())
    }

    /// The IKE SAs, from `swanctl --list-sas --raw` as JSON: {name: {key: value, ...}}.
    fn list_sas(&self) -> Result<Map<String, Value>> {
        let text = self.swanctl_ok(&["--list-sas", "--raw"])?;
        let mut sas = Map::new();
        for line in text.lines().filter(|l| l.starts_with("list-sa event")) {
            let parsed = parse_vici_raw(line.trim_start_matches("list-sa event").trim())
                .with_context(|| format!("parsing {line}"))?;
            if let Value::Object(m) = parsed {
                sas.extend(m);
            }
        }
        Ok(sas)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("charon.log")).unwrap_or_default()
    }

    fn logs(&self) -> String {
        format!(
            "{}{}",
            std::fs::read_to_string(self.dir.join("charon.out")).unwrap_or_default(),
            self.log()
        )
    }

    /// Runs `ARGS` inside the UE namespace.
    fn exec(&self, args: &[&str]) -> Result<Output> {
        Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .args(args)
            .output()
            .with_context(|| format!("running {} in {}", args.join(" "), self.ns))
    }
}

impl Charon {
    /// Kills charon at once (SIGKILL): no DELETE reaches the ePDG.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Charon {
    fn drop(&mut self) {
        // `ip netns exec` and sh exec'd into charon: the child's pid is charon's.
        // SAFETY: signalling our own child by its pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parses swanctl's `--raw` rendering of a vici message (`{k=v k=[a b] s {..}}`) into
/// JSON objects, arrays and strings.
fn parse_vici_raw(text: &str) -> Result<Value> {
    fn section(s: &mut std::iter::Peekable<std::str::Chars>) -> Result<Map<String, Value>> {
        let mut m = Map::new();
        loop {
            while s.peek() == Some(&' ') {
                s.next();
            }
            match s.peek() {
                None => return Ok(m),
                Some('}') => {
                    s.next();
                    return Ok(m);
                }
                _ => {}
            }
            let mut key = String::new();
            while let Some(&c) = s.peek() {
                if c == '=' || c == ' ' || c == '{' {
                    break;
                }
                key.push(c);
                s.next();
            }
            while s.peek() == Some(&' ') {
                s.next();
            }
            match s.next() {
                Some('{') => {
                    m.insert(key, Value::Object(section(s)?));
                }
                Some('=') if s.peek() == Some(&'[') => {
                    s.next();
                    let mut items = Vec::new();
                    let mut item = String::new();
                    for c in s.by_ref() {
                        match c {
                            ']' => break,
                            ' ' => {
                                if !item.is_empty() {
                                    items.push(Value::String(std::mem::take(&mut item)));
                                }
                            }
                            c => item.push(c),
                        }
                    }
                    if !item.is_empty() {
                        items.push(Value::String(item));
                    }
                    m.insert(key, Value::Array(items));
                }
                Some('=') => {
                    let mut value = String::new();
                    while let Some(&c) = s.peek() {
                        if c == ' ' || c == '}' {
                            break;
                        }
                        value.push(c);
                        s.next();
                    }
                    m.insert(key, Value::String(value));
                }
                other => bail!("unexpected {other:?} after {key:?}"),
            }
        }
    }
    let mut chars = text.trim().chars().peekable();
    ensure!(chars.next() == Some('{'), "no opening brace");
    Ok(Value::Object(section(&mut chars)?))
}

/// One IKE and ESP proposal pair the UE offers.
struct Proposal {
    name: &'static str,
    ike: &'static str,
    esp: &'static str,
    /// What the IKE SA must end up with (swanctl's names) and the CHILD_SA's cipher.
    ike_encr: &'static str,
    dh: &'static str,
    esp_encr: &'static str,
}

const PROPOSALS: &[Proposal] = &[
    // strongSwan's own defaults (what `proposals = default` offers).
    Proposal {
        name: "strongswan-default",
        ike: "default",
        esp: "default",
        ike_encr: "",
        dh: "",
        esp_encr: "",
    },
    Proposal {
        name: "cbc-sha1-modp2048",
        ike: "aes128-sha1-modp2048",
        esp: "aes128-sha1",
        ike_encr: "AES_CBC",
        dh: "MODP_2048",
        esp_encr: "AES_CBC",
    },
    Proposal {
        name: "cbc-sha256-modp2048",
        ike: "aes256-sha256-modp2048",
        esp: "aes256-sha256",
        ike_encr: "AES_CBC",
        dh: "MODP_2048",
        esp_encr: "AES_CBC",
    },
    Proposal {
        name: "cbc-sha256-ecp256",
        ike: "aes128-sha256-ecp256",
        esp: "aes128-sha256",
        ike_encr: "AES_CBC",
        dh: "ECP_256",
        esp_encr: "AES_CBC",
    },
    Proposal {
        name: "cbc-sha256-curve25519",
        ike: "aes256-sha256-curve25519",
        esp: "aes256-sha1",
        ike_encr: "AES_CBC",
        dh: "CURVE_25519",
        esp_encr: "AES_CBC",
    },
    Proposal {
        name: "gcm128-ecp256",
        ike: "aes128gcm16-prfsha256-ecp256",
        esp: "aes128gcm16",
        ike_encr: "AES_GCM_16",
        dh: "ECP_256",
        esp_encr: "AES_GCM_16",
    },
    Proposal {
        name: "gcm256-curve25519",
        ike: "aes256gcm16-prfsha256-curve25519",
        esp: "aes256gcm16",
        ike_encr: "AES_GCM_16",
        dh: "CURVE_25519",
        esp_encr: "AES_GCM_16",
    },
];

/// Starts `mag` with NAME.toml (NAME.pcap, NAME.keylog) and `extra` settings; waits for
/// its Diameter peer.
fn start_mag(
    d: &Path,
    name: &str,
    (epdg, mh, aaa): (Ipv4Addr, Ipv4Addr, Ipv4Addr),
    extra: &str,
) -> Result<Node> {
    let config = write_file(
        d,
        &format!("{name}.toml"),
        &format!(
            "ike_listen = \"{epdg}:500\"\nnatt_listen = \"{epdg}:4500\"\naaa = \"{aaa}:3868\"\n\
             mh_local = \"{mh}\"\ndns = [\"10.130.0.1\"]\ndiameter_timeout_ms = 3000\n\
             liveness_interval_secs = 1\n\
             status_file = \"{status}\"\npcap = \"{pcap}\"\nkeylog = \"{keylog}\"\n{extra}",
            status = d.join("mag-status.json").display(),
            pcap = d.join(format!("{name}.pcap")).display(),
            keylog = d.join(format!("{name}.keylog")).display(),
        ),
    )?;
    let mut mag = Node::start("mag", &["--config", path(&config)?])?;
    mag.wait_for("mag listening", Duration::from_secs(30))?;
    mag.wait_for("Diameter peer open", Duration::from_secs(10))?;
    Ok(mag)
}

/// The ePDG's identity: mag's default ike_identity, the name in its lab certificate.
const EPDG_ID: &str = "epdg.epc.mnc015.mcc234.pub.3gppnetwork.org";

/// The whole lab; dropped charon first, namespaces last.
struct Lab {
    charon: Charon,
    mag: Node,
    aaa: Node,
    lma: LmaProcess,
    ue_topology: Topology,
    lma_topology: Topology,
    aaa_address: Ipv4Addr,
    dir: tempfile::TempDir,
}

impl Lab {
    fn start(ids: &LabIds) -> Result<Lab> {
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        // Tag 5 (3): the LMA's namespace (mag side 172.26.x.1); tag 6 (4): the UE's
        // namespace, its root end (172.25.x.1) is the ePDG's IKE address, the UE is
        // 172.25.x.2.
        let lma_topology = Topology::new("sswl", ids.lma_tag)?;
        let ue_topology = Topology::new("sswu", ids.ue_tag)?;
        let epdg = ue_topology.mag;
        let aaa_address = ids.aaa;
        let tun = format!("sswl{}{}", std::process::id() % 10_000, ids.lma_tag);
        let lma_config = write_file(
            d,
            "lma.toml",
            &format!(
                "listen_v4 = \"{lma}:5436\"\nipv4_pool = \"{IPV4_POOL}\"\n\
                 ipv6_pool = \"{IPV6_POOL}\"\nallowed_mags = [\"{mag}\"]\n\
                 timestamp_window_ms = 7000\n\
                 [sgi]\ntun_name = \"{tun}\"\nipv4 = \"{PDN_V4}/16\"\nipv6 = \"{PDN_V6}/48\"\nmtu = 1500\n",
                lma = lma_topology.lma,
                mag = lma_topology.mag,
            ),
        )?;
        let lma = LmaProcess::start(&lma_topology.ns, &lma_config, d.join("lma.log"))?;
        lma.wait_for("lma listening", Duration::from_secs(30))?;
        write_file(
            d,
            "subscribers.toml",
            &format!(
                "[[subscriber]]\nimsi = \"{IMSI}\"\nk = \"{K}\"\nopc = \"{OPC}\"\napns = [\"{APN}\"]\n"
            ),
        )?;
        let epdg_peer = integration_tests::aaa_peer_epdg_loopback();
        let aaa_config = write_file(
            d,
            "aaa.toml",
            &format!(
                "origin_host = \"aaa.epc.mnc001.mcc001.3gppnetwork.org\"\n\
                 origin_realm = \"epc.mnc001.mcc001.3gppnetwork.org\"\nlisten = \"{aaa_address}:3868\"\n\
                 subscribers = \"subscribers.toml\"\nsqn_state = \"sqn.toml\"\n{epdg_peer}[gateways]\n{APN} = \"{}\"\n",
                lma_topology.lma
            ),
        )?;
        let aaa_status = d.join("aaa-status.json");
        let mut aaa = Node::start(
            "aaa-stub",
            &[
                "--config",
                path(&aaa_config)?,
                "--status-file",
                path(&aaa_status)?,
            ],
        )?;
        aaa.wait_for("aaa listening", Duration::from_secs(30))?;
        // The lab PKI for the certificate phase: the CA strongSwan trusts, the ePDG's
        // certificate for its ike_identity.
        let pki = node_binary("mag")?;
        let generated = Command::new(&pki)
            .arg("--generate-lab-pki")
            .arg(d.join("pki"))
            .output()
            .context("mag --generate-lab-pki")?;
        ensure!(
            generated.status.success(),
            "mag --generate-lab-pki: {}",
            String::from_utf8_lossy(&generated.stderr)
        );
        let mag = start_mag(d, "mag", (epdg, lma_topology.mag, aaa_address), "")?;
        let charon_dir = d.join("charon");
        std::fs::create_dir(&charon_dir)?;
        let charon = Charon::start(&ue_topology.ns, &charon_dir)?;
        let lab = Lab {
            charon,
            mag,
            aaa,
            lma,
            ue_topology,
            lma_topology,
            aaa_address,
            dir,
        };
        lab.write_swanctl_conf()?;
        Ok(lab)
    }

    /// One connection per proposal of [`PROPOSALS`], all for the same subscriber.
    fn write_swanctl_conf(&self) -> Result<()> {
        let mut conns = String::new();
        for p in PROPOSALS {
            conns.push_str(&format!(
                "  {name} {{\n\
                 \x20   version = 2\n    local_addrs = {ue}\n    remote_addrs = {epdg}\n\
                 \x20   proposals = {ike}\n    vips = 0.0.0.0, ::\n\
                 \x20   rekey_time = 24h\n    dpd_delay = 1s\n\
                 \x20   local {{\n      auth = eap-aka\n      id = {NAI}\n    }}\n\
                 \x20   remote {{\n      auth = eap-aka\n      id = {APN}\n    }}\n\
                 \x20   children {{\n      {name} {{\n        remote_ts = 0.0.0.0/0, ::/0\n\
                 \x20       esp_proposals = {esp}\n        rekey_time = 24h\n      }}\n    }}\n  }}\n",
                name = p.name,
                ue = self.ue_topology.lma,
                epdg = self.ue_topology.mag,
                ike = p.ike,
                esp = p.esp,
            ));
        }
        // The rekeying lab: IKE SA and CHILD_SA rekeyed every 18 to 20 s.
        conns.push_str(&format!(
            "  rekey {{\n\
             \x20   version = 2\n    local_addrs = {ue}\n    remote_addrs = {epdg}\n\
             \x20   vips = 0.0.0.0, ::\n    rekey_time = 20s\n    rand_time = 2s\n\
             \x20   dpd_delay = 1s\n\
             \x20   local {{\n      auth = eap-aka\n      id = {NAI}\n    }}\n\
             \x20   remote {{\n      auth = eap-aka\n      id = {APN}\n    }}\n\
             \x20   children {{\n      rekey {{\n        remote_ts = 0.0.0.0/0, ::/0\n\
             \x20       rekey_time = 20s\n        rand_time = 2s\n      }}\n    }}\n  }}\n",
            ue = self.ue_topology.lma,
            epdg = self.ue_topology.mag,
        ));
        // The certificate phase: strongSwan checks the ePDG's signature and certificate
        // against the lab CA. It sends no IDr (remote.id %any): with one, it would demand
        // that very identity back and in the certificate, so it cannot send the APN there
        // and check the ePDG's name at once; the ePDG uses its default APN.
        conns.push_str(&format!(
            "  cert {{\n\
             \x20   version = 2\n    local_addrs = {ue}\n    remote_addrs = {epdg}\n\
             \x20   vips = 0.0.0.0, ::\n    rekey_time = 24h\n\
             \x20   local {{\n      auth = eap-aka\n      id = {NAI}\n    }}\n\
             \x20   remote {{\n      auth = pubkey\n      id = %any\n      cacerts = {ca}\n    }}\n\
             \x20   children {{\n      cert {{\n        remote_ts = 0.0.0.0/0, ::/0\n\
             \x20       rekey_time = 24h\n      }}\n    }}\n  }}\n",
            ue = self.ue_topology.lma,
            epdg = self.ue_topology.mag,
            ca = self.dir.path().join("pki/ca.der").display(),
        ));
        let conf = format!(
            "connections {{\n{conns}}}\n\
             secrets {{\n  eap-ue {{\n    id = {NAI}\n    secret = 0x{K}{OPC}\n  }}\n}}\n"
        );
        write_file(self.dir.path(), "swanctl.conf", &conf)?;
        self.charon.load(&self.dir.path().join("swanctl.conf"))
    }

    fn status(&self, file: &str) -> Option<Value> {
        let text = std::fs::read_to_string(self.dir.path().join(file)).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn aaa_sessions(&self) -> Option<u64> {
        self.status("aaa-status.json")?["sessions"].as_u64()
    }

    /// The SQN the aaa-stub last used for the subscriber (its `sqn_state` file).
    fn aaa_sqn(&self) -> Option<u64> {
        let text = std::fs::read_to_string(self.dir.path().join("sqn.toml")).ok()?;
        text.lines()
            .find(|l| l.contains(IMSI))
            .and_then(|l| l.split('=').nth(1))
            .and_then(|v| v.trim().parse().ok())
    }

    /// The LMA's PBU log lines for the subscriber with this outcome.
    fn lma_lines(&self, outcome: &str) -> Vec<String> {
        self.lma
            .output()
            .lines()
            .filter(|l| {
                l.contains(" PBU")
                    && l.contains(IMSI)
                    && l.contains(&format!("outcome=\"{outcome}\""))
            })
            .map(str::to_string)
            .collect()
    }

    fn outputs(&self) -> String {
        format!(
            "charon:\n{}\naaa:\n{}\nlma:\n{}\nmag:\n{}\nmag status: {:?}\naaa status: {:?}",
            self.charon.logs(),
            self.aaa.output(),
            self.lma.output(),
            self.mag.output(),
            self.status("mag-status.json"),
            self.status("aaa-status.json"),
        )
    }

    /// Waits until `check` holds, up to ten seconds.
    fn eventually(&self, what: &str, check: impl Fn(&Lab) -> bool) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check(self) {
            ensure!(Instant::now() < deadline, "{what}\n{}", self.outputs());
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// `swanctl --initiate` of connection `name`; the established IKE SA as swanctl
    /// lists it.
    fn attach(&self, name: &str) -> Result<Map<String, Value>> {
        let initiated = self.charon.swanctl(&[
            "--initiate",
            "--ike",
            name,
            "--child",
            name,
            "--timeout",
            "30",
        ])?;
        ensure!(
            initiated.status.success(),
            "swanctl --initiate {name} failed:\n{}{}\n{}",
            String::from_utf8_lossy(&initiated.stdout),
            String::from_utf8_lossy(&initiated.stderr),
            self.outputs()
        );
        let sas = self.charon.list_sas()?;
        let sa = sas
            .get(name)
            .and_then(Value::as_object)
            .with_context(|| format!("no IKE SA {name} listed: {sas:?}"))?
            .clone();
        ensure!(sa["state"] == "ESTABLISHED", "IKE SA {name}: {sa:?}");
        let child = sa
            .get("child-sas")
            .and_then(Value::as_object)
            .and_then(|c| c.values().next())
            .with_context(|| format!("IKE SA {name} has no CHILD_SA: {sa:?}"))?;
        ensure!(
            child["state"] == "INSTALLED",
            "CHILD_SA of {name}: {child:?}"
        );
        Ok(sa)
    }

    /// `swanctl --terminate` of the IKE SA, then nothing may be left: no IKE SA at the
    /// UE or the ePDG, no binding at the LMA, no Diameter session at the AAA.
    fn detach(&self, name: &str) -> Result<()> {
        let registered = self.lma_lines("registered").len();
        self.charon
            .swanctl_ok(&["--terminate", "--ike", name, "--timeout", "10"])?;
        ensure!(self.charon.list_sas()?.is_empty(), "IKE SAs left at the UE");
        self.eventually("state left after swanctl --terminate", |l| {
            let mag_ok = l
                .status("mag-status.json")
                .is_some_and(|s| s["ike_sas"] == 0 && s["bindings"] == 0 && s["aaa_sessions"] == 0);
            mag_ok && l.aaa_sessions() == Some(0) && l.lma_lines("deregistered").len() == registered
        })
    }

    /// Pings `target` from `source` inside the UE namespace; the number of replies.
    fn ping(&self, source: &str, target: &str) -> Result<usize> {
        let out = self.charon.exec(&[
            "ping", "-c", "3", "-i", "0.3", "-W", "2", "-I", source, target,
        ])?;
        let text = String::from_utf8_lossy(&out.stdout);
        let received = text
            .lines()
            .find(|l| l.contains("received"))
            .and_then(|l| l.split(", ").nth(1))
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .with_context(|| {
                format!(
                    "ping printed no summary: {text}{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })?;
        Ok(received)
    }

    /// For each Diameter session at the AAA, in order, its DIAMETER_MULTI_ROUND_AUTH
    /// answers (1 for a plain challenge, 2 with a resynchronisation).
    fn aaa_multi_rounds(&self) -> Vec<usize> {
        let mut sessions: Vec<(String, usize)> = Vec::new();
        for line in self.aaa.output().lines().filter(|l| l.contains(" swm ")) {
            let Some(session) = line.split(' ').find(|w| w.starts_with("session=")) else {
                continue;
            };
            if !sessions.iter().any(|(s, _)| s == session) {
                sessions.push((session.to_string(), 0));
            }
            if line.contains("result=DIAMETER_MULTI_ROUND_AUTH") {
                if let Some(entry) = sessions.iter_mut().find(|(s, _)| s == session) {
                    entry.1 += 1;
                }
            }
        }
        sessions.into_iter().map(|(_, n)| n).collect()
    }

    /// A phone that reboots: attached, charon is killed (no DELETE), a new charon attaches
    /// again (with INITIAL_CONTACT). The mag hands the binding to the new IKE SA and drops
    /// the old one with its AAA session: one IKE SA, one binding (the same addresses, no
    /// de-registration at the LMA in between), one Diameter session, and traffic flows.
    fn reboot(&mut self) -> Result<()> {
        let first = PROPOSALS[0].name;
        let before = vips(&self.attach(first)?)?;
        let deregistered = self.lma_lines("deregistered").len();
        let registered = self.lma_lines("registered").len();
        self.charon.kill();
        let dir = self.dir.path().join("charon-rebooted");
        std::fs::create_dir(&dir)?;
        self.charon = Charon::start(&self.ue_topology.ns, &dir)?;
        self.write_swanctl_conf()?;
        let sa = self.attach(first)?;
        ensure!(
            self.charon.log().contains("N(INIT_CONTACT)"),
            "no INITIAL_CONTACT after the reboot"
        );
        ensure!(
            vips(&sa)? == before,
            "addresses changed over the reboot: {before:?} -> {:?}",
            vips(&sa)?
        );
        self.eventually(
            "the old IKE SA or its AAA session left after the reboot",
            |l| {
                l.aaa_sessions() == Some(1)
                    && l.status("mag-status.json").is_some_and(|s| {
                        s["ike_sas"] == 1 && s["bindings"] == 1 && s["aaa_sessions"] == 1
                    })
            },
        )?;
        // The mag keeps the LMA binding (it is the same UE and APN): no de-registration,
        // and still exactly one binding for the subscriber.
        let now_registered = self.lma_lines("registered").len();
        let now_deregistered = self.lma_lines("deregistered").len();
        ensure!(
            now_deregistered == deregistered
                && now_registered >= registered
                && now_registered - now_deregistered == 1,
            "the LMA binding did not carry over the reboot\n{}",
            self.outputs()
        );
        ensure!(
            self.ping(&before.0.to_string(), PDN_V4)? >= 2,
            "no traffic after the reboot\n{}",
            self.outputs()
        );
        self.detach(first)
    }

    /// Stops the mag (so its pcap is complete) and decodes every IKE message it recorded
    /// with tshark and its keylog: none of those it sent may be malformed or carry expert
    /// info, and the IKE_AUTH responses carry the CFG_REPLY with the LMA's IPv4 address.
    fn tshark_check(&mut self, name: &str, attaches: usize) -> Result<Vec<Vec<(String, String)>>> {
        self.mag.signal(libc::SIGTERM)?;
        self.mag.wait_exit(Duration::from_secs(10))?;
        let d = self.dir.path();
        let keylog = std::fs::read_to_string(d.join(format!("{name}.keylog")))
            .with_context(|| format!("{name}.keylog"))?;
        let mut command = Command::new("tshark");
        command
            .arg("-r")
            .arg(d.join(format!("{name}.pcap")))
            .args(["-V", "-T", "json", "--no-duplicate-keys"])
            .args([
                "-Y",
                &format!("isakmp && ip.src == {}", self.ue_topology.mag),
            ]);
        for record in keylog.lines().filter(|l| !l.trim().is_empty()) {
            command.args(["-o", &format!("uat:ikev2_decryption_table:{record}")]);
        }
        let out = command
            .output()
            .context("running tshark (installed by scripts/setup.sh)")?;
        ensure!(
            out.status.success(),
            "tshark: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let packets: Vec<Value> = serde_json::from_slice(&out.stdout).context("tshark JSON")?;
        // At least IKE_SA_INIT and four IKE_AUTH responses each.
        ensure!(
            packets.len() >= attaches * 5,
            "{} IKE messages from the ePDG",
            packets.len()
        );
        let mut addresses = Vec::new();
        let mut decoded = Vec::new();
        for (n, packet) in packets.iter().enumerate() {
            let mut fields = Vec::new();
            walk(packet, &mut fields);
            // Notes are allowed: Wireshark's EAP dissector calls a new IKE SA's first
            // EAP-Request a "retransmission" when the previous SA on the same UDP ports
            // used the same EAP Identifier (RFC 3748 section 4.1 scopes it to one
            // conversation). Warnings and errors are not.
            let severe = values(&fields, "_ws.expert.severity")
                .iter()
                .any(|s| s.parse::<u32>().map_or(true, |s| s >= PI_WARN));
            ensure!(
                !severe && !fields.iter().any(|(k, _)| k.starts_with("_ws.malformed")),
                "ePDG message {n}: malformed, or expert info of warning level:\n{}\ncharon:\n{}",
                serde_json::to_string_pretty(packet).unwrap_or_default(),
                self.charon.log()
            );
            addresses.extend(
                values(&fields, "isakmp.cfg.attr.internal_ip4_address")
                    .into_iter()
                    .map(str::to_string),
            );
            decoded.push(fields);
        }
        // Every attach's CFG_REPLY decrypted and decoded, with an address from the pool.
        let pool: ipnet::Ipv4Net = IPV4_POOL.parse()?;
        ensure!(
            addresses.len() == attaches
                && addresses
                    .iter()
                    .all(|a| a.parse().is_ok_and(|a: Ipv4Addr| pool.contains(&a))),
            "CFG_REPLY addresses tshark decoded: {addresses:?}"
        );
        Ok(decoded)
    }

    /// The ePDG authenticating with its certificate (`eap_only_auth = false`): strongSwan
    /// verifies the CERT and the signature AUTH against the lab CA and the IDr the ePDG
    /// names (its own identity), and the attach carries traffic like the EAP-only ones.
    fn certificate_phase(&mut self) -> Result<()> {
        let d = self.dir.path().to_path_buf();
        self.mag = start_mag(
            &d,
            "mag-cert",
            (
                self.ue_topology.mag,
                self.lma_topology.mag,
                self.aaa_address,
            ),
            &format!(
                "certificate = \"{}\"\nprivate_key = \"{}\"\neap_only_auth = false\n\
                 default_apn = \"{APN}\"\n",
                d.join("pki/epdg.der").display(),
                d.join("pki/epdg.key.der").display()
            ),
        )?;
        let sa = self.attach("cert")?;
        ensure!(
            sa["remote-id"] == EPDG_ID,
            "the ePDG's IDr as strongSwan saw it: {sa:?}"
        );
        let log = self.charon.log();
        let verified = log.lines().any(|l| {
            l.contains(&format!("authentication of '{EPDG_ID}' with"))
                && !l.contains("with EAP")
                && l.contains("successful")
        });
        ensure!(
            verified,
            "strongSwan did not verify the ePDG's signature\n{}",
            self.outputs()
        );
        let (v4, _) = vips(&sa)?;
        ensure!(
            self.ping(&v4.to_string(), PDN_V4)? >= 2,
            "no traffic with certificate authentication\n{}",
            self.outputs()
        );
        self.detach("cert")?;
        let decoded = self.tshark_check("mag-cert", 1)?;
        // tshark saw the certificate and the signature AUTH (not the MSK's method 2).
        let all: Vec<&(String, String)> = decoded.iter().flatten().collect();
        ensure!(
            all.iter().any(|(k, _)| k.starts_with("isakmp.cert"))
                && all
                    .iter()
                    .any(|(k, v)| k == "isakmp.auth.method" && v != "2"),
            "no CERT or signature AUTH decoded from the ePDG"
        );
        Ok(())
    }

    /// How often charon's USIM found the challenge's SQN out of range so far.
    fn sync_failures(&self) -> usize {
        self.charon
            .log()
            .matches("received SQN invalid, sending AKA_SYNCHRONIZATION_FAILURE")
            .count()
    }
}

fn vips(sa: &Map<String, Value>) -> Result<(Ipv4Addr, Ipv6Addr)> {
    let list: Vec<&str> = sa
        .get("local-vips")
        .and_then(Value::as_array)
        .context("no local-vips")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let v4 = list
        .iter()
        .find_map(|a| a.parse::<Ipv4Addr>().ok())
        .with_context(|| format!("no virtual IPv4 address in {list:?}"))?;
    let v6 = list
        .iter()
        .find_map(|a| a.parse::<Ipv6Addr>().ok())
        .with_context(|| format!("no virtual IPv6 address in {list:?}"))?;
    Ok((v4, v6))
}

#[test]
fn strongswan_attaches_resyncs_pings_and_detaches() -> Result<()> {
    if !is_root() {
        eprintln!("skipping strongswan_interop: needs root (network namespaces, TUN, raw GRE)");
        return Ok(());
    }
    let mut lab = Lab::start(&MAIN)?;
    let first = &PROPOSALS[0];
    lab.eventually("aaa status file", |l| l.aaa_sessions() == Some(0))?;
    let sqn_before = lab.aaa_sqn().unwrap_or(0);

    // First attach: the AAA's SQN is behind the USIM's time-based one.
    let sa = lab.attach(first.name)?;
    ensure!(
        lab.sync_failures() == 1,
        "expected one Synchronization-Failure on the first attach\n{}",
        lab.outputs()
    );
    // At the AAA: challenge, Synchronization-Failure -> new challenge, then success (two
    // multi-round DEAs), and its stored SQN moved on.
    ensure!(
        lab.aaa_multi_rounds() == vec![2],
        "expected a resynchronising EAP-AKA conversation at the AAA: {:?}\n{}",
        lab.aaa_multi_rounds(),
        lab.outputs()
    );
    let sqn_after = lab.aaa_sqn().context("no SQN state at the AAA")?;
    ensure!(
        sqn_after > sqn_before,
        "AAA SQN {sqn_before} -> {sqn_after}"
    );

    // The virtual IPs are the LMA's binding and are installed in the UE namespace.
    let (v4, v6) = vips(&sa)?;
    let registered = lab.lma_lines("registered");
    ensure!(registered.len() == 1, "{}", lab.outputs());
    let prefix: Ipv6Net = registered[0]
        .split([' ', '"', '=', ','])
        .find_map(|w| w.parse::<Ipv6Net>().ok())
        .with_context(|| format!("no prefix in {}", registered[0]))?;
    ensure!(
        registered[0].contains(&format!("{v4}")) && prefix.contains(&v6),
        "virtual IPs {v4} {v6} are not the LMA's binding: {}",
        registered[0]
    );
    let addrs = lab.charon.exec(&["ip", "addr", "show"])?;
    let addrs = String::from_utf8_lossy(&addrs.stdout);
    ensure!(
        addrs.contains(&format!("{v4}/")) && addrs.contains(&format!("{v6}/")),
        "virtual IPs not installed in the UE namespace:\n{addrs}"
    );
    lab.eventually("one session everywhere while attached", |l| {
        l.aaa_sessions() == Some(1)
            && l.status("mag-status.json")
                .is_some_and(|s| s["ike_sas"] == 1 && s["bindings"] == 1)
    })?;

    // Liveness both ways (the mag checks every second, charon's DPD when it heard nothing
    // for a second): after three seconds charon answered the mag's checks and the mag
    // answered every DPD charon sent, and the SA is still up.
    std::thread::sleep(Duration::from_secs(3));
    let liveness = |l: &Lab| {
        let log = l.charon.log();
        (
            log.matches("parsed INFORMATIONAL request").count(),
            log.matches("generating INFORMATIONAL request").count(),
            log.matches("parsed INFORMATIONAL response").count(),
        )
    };
    // A DPD may be on its way, and a loaded machine may run the mag's second check
    // late: give them a moment.
    let _ = lab.eventually("", |l| {
        let (asked_by_mag, sent, answered) = liveness(l);
        asked_by_mag >= 2 && sent == answered
    });
    let (asked_by_mag, dpd_sent, dpd_answered) = liveness(&lab);
    ensure!(
        asked_by_mag >= 2 && dpd_answered == dpd_sent,
        "liveness: {asked_by_mag} checks from the mag, {dpd_answered} of charon's {dpd_sent} \
         DPDs answered\n{}",
        lab.outputs()
    );
    let sas = lab.charon.list_sas()?;
    ensure!(
        sas.get(first.name)
            .is_some_and(|sa| sa["state"] == "ESTABLISHED")
            && lab
                .status("mag-status.json")
                .is_some_and(|s| s["ike_sas"] == 1),
        "the SA did not survive the liveness checks: {sas:?}\n{}",
        lab.outputs()
    );

    // The data plane: strongSwan's ESP (libipsec) -> mag -> GRE -> lma -> PDN and back.
    let v4_replies = lab.ping(&v4.to_string(), PDN_V4)?;
    let v6_replies = lab.ping(&v6.to_string(), PDN_V6)?;
    ensure!(
        v4_replies >= 2 && v6_replies >= 2,
        "ping replies: IPv4 {v4_replies}/3, IPv6 {v6_replies}/3\n{}",
        lab.outputs()
    );

    lab.detach(first.name)?;

    // Second attach: the SQN is in range now, no resynchronisation.
    lab.attach(first.name)?;
    ensure!(
        lab.sync_failures() == 1,
        "the second attach resynchronised again\n{}",
        lab.outputs()
    );
    ensure!(
        lab.aaa_multi_rounds() == vec![2, 1],
        "the second attach is not one challenge at the AAA: {:?}",
        lab.aaa_multi_rounds()
    );
    lab.detach(first.name)?;

    // Every proposal of the table attaches (and detaches cleanly).
    for p in &PROPOSALS[1..] {
        let sa = lab
            .attach(p.name)
            .with_context(|| format!("proposal {} ({} / {})", p.name, p.ike, p.esp))?;
        ensure!(
            sa["encr-alg"] == p.ike_encr && sa["dh-group"] == p.dh,
            "proposal {}: IKE SA {sa:?}",
            p.name
        );
        let child = sa["child-sas"]
            .as_object()
            .and_then(|c| c.values().next())
            .context("no CHILD_SA")?;
        ensure!(
            child["encr-alg"] == p.esp_encr,
            "proposal {}: CHILD_SA {child:?}",
            p.name
        );
        ensure!(
            lab.ping(&vips(&sa)?.0.to_string(), PDN_V4)? >= 2,
            "proposal {}: no ping replies\n{}",
            p.name,
            lab.outputs()
        );
        lab.detach(p.name)?;
    }
    ensure!(lab.sync_failures() == 1, "{}", lab.outputs());
    // Every offer's first KE group was one we take: no INVALID_KE_PAYLOAD round trip.
    ensure!(
        !lab.charon.log().contains("peer didn't accept DH group"),
        "an INVALID_KE_PAYLOAD for an acceptable KE group\n{}",
        lab.outputs()
    );
    lab.reboot()?;
    lab.tshark_check("mag", ATTACHES)?;
    lab.certificate_phase()?;
    drop(lab);
    Ok(())
}

/// strongSwan rekeys its IKE SA and its CHILD_SA every 18 to 20 s (CREATE_CHILD_SA, RFC
/// 7296 sections 1.3.2 and 1.3.3) while the UE pings the PDN once a second for a minute:
/// the ePDG answers every rekey (no NO_ADDITIONAL_SAS), its data plane follows the new
/// CHILD_SAs, at most one ping is lost per rekey, the session is one IKE SA and one
/// binding throughout, and tshark decrypts every message the ePDG sent, the
/// CREATE_CHILD_SA responses under each IKE SA's keylog record included.
#[test]
fn strongswan_rekeys_its_ike_and_child_sas_while_pinging() -> Result<()> {
    if !is_root() {
        eprintln!("skipping strongswan_interop: needs root (network namespaces, TUN, raw GRE)");
        return Ok(());
    }
    let mut lab = Lab::start(&REKEYING)?;
    lab.eventually("aaa status file", |l| l.aaa_sessions() == Some(0))?;
    let sa = lab.attach("rekey")?;
    let (v4, _) = vips(&sa)?;
    let out = lab.charon.exec(&[
        "ping",
        "-c",
        "60",
        "-i",
        "1",
        "-W",
        "2",
        "-I",
        &v4.to_string(),
        PDN_V4,
    ])?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let received: usize = text
        .lines()
        .find(|l| l.contains("received"))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("ping printed no summary: {text}"))?;
    let log = lab.charon.log();
    let ike_rekeys = log.matches("rekeyed between").count();
    // strongSwan installs a rekey's CHILD_SA inbound first, then outbound (the first
    // CHILD_SA at once: "CHILD_SA rekey{1} established").
    let child_rekeys = log.matches("outbound CHILD_SA").count();
    for failure in [
        "rekeying failed",
        "not support",
        "NO_ADDITIONAL_SAS",
        "CHILD_SA not found",
        "peer not responding",
    ] {
        ensure!(
            !log.contains(failure),
            "charon logged {failure:?}\n{}",
            lab.outputs()
        );
    }
    ensure!(
        ike_rekeys >= 2 && child_rekeys >= 2,
        "in a minute: {ike_rekeys} IKE SA and {child_rekeys} CHILD_SA rekeys\n{}",
        lab.outputs()
    );
    eprintln!(
        "{received}/60 pings answered; {ike_rekeys} IKE SA and {child_rekeys} CHILD_SA rekeys"
    );
    ensure!(
        received + ike_rekeys + child_rekeys >= 60,
        "{received}/60 pings answered over {ike_rekeys} IKE SA and {child_rekeys} CHILD_SA \
         rekeys:\n{text}\n{}",
        lab.outputs()
    );
    let sas = lab.charon.list_sas()?;
    ensure!(
        sas.get("rekey")
            .is_some_and(|sa| sa["state"] == "ESTABLISHED")
            && lab
                .status("mag-status.json")
                .is_some_and(|s| s["ike_sas"] == 1 && s["bindings"] == 1),
        "after the rekeys: {sas:?}\n{}",
        lab.outputs()
    );
    ensure!(
        lab.mag.output().matches("CHILD_SA rekeyed").count() == child_rekeys,
        "the mag logged other CHILD_SA rekeys than charon made\n{}",
        lab.outputs()
    );
    lab.detach("rekey")?;
    let decoded = lab.tshark_check("mag", 1)?;
    // The ePDG's CREATE_CHILD_SA responses, decrypted: an SA and a nonce in each.
    let responses: Vec<&Vec<(String, String)>> = decoded
        .iter()
        .filter(|f| values(f, "isakmp.exchangetype") == vec!["36"])
        .collect();
    ensure!(
        responses.len() == ike_rekeys + child_rekeys
            && responses
                .iter()
                .all(|f| !values(f, "isakmp.nonce").is_empty()),
        "{} CREATE_CHILD_SA responses from the ePDG decrypted, {} rekeys",
        responses.len(),
        ike_rekeys + child_rekeys
    );
    drop(lab);
    Ok(())
}

#[test]
fn vici_raw_parser_reads_nested_sections_and_lists() -> Result<()> {
    let v = parse_vici_raw(
        "{epdg {state=ESTABLISHED local-vips=[10.0.0.2 2001:db8::1] child-sas {a-1 {state=INSTALLED}}}}",
    )?;
    assert_eq!(v["epdg"]["state"], "ESTABLISHED");
    assert_eq!(v["epdg"]["local-vips"][1], "2001:db8::1");
    assert_eq!(v["epdg"]["child-sas"]["a-1"]["state"], "INSTALLED");
    Ok(())
}
