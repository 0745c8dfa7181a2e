//! `dataplane-relay`: the baseline of the data-plane benchmark
//! (scripts/bench-dataplane.sh, BENCHMARKS.md). It moves packets between two sides, each a
//! TUN device or a connected UDP socket, with one blocking thread per direction: the same
//! reads and writes the real path does per packet (TUN read + UDP send at the UE, UDP
//! receive + send at the ePDG, receive + TUN write at the LMA), without ESP crypto, GRE
//! framing or session lookups.
//!
//! ```text
//! dataplane-relay --a tun:NAME --b udp:LOCAL=REMOTE
//! dataplane-relay --a udp:LOCAL=REMOTE --b udp:LOCAL=REMOTE
//! ```
//!
//! A TUN device is created ([`pmip_node::tun`], `IFF_TUN | IFF_NO_PI`) and left for the caller to configure
//! with `ip`; it goes away when the relay exits (SIGTERM/SIGINT end it).

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};

use anyhow::{bail, Context, Result};

/// One side of the relay.
enum Side {
    Tun(File),
    Udp(UdpSocket),
}

impl Side {
    fn open(spec: &str) -> Result<Side> {
        if let Some(name) = spec.strip_prefix("tun:") {
            let file = pmip_node::tun::create(name, pmip_node::tun::Mode::Blocking)?;
            Ok(Side::Tun(file))
        } else if let Some(pair) = spec.strip_prefix("udp:") {
            let (local, remote) = pair
                .split_once('=')
                .with_context(|| format!("`{spec}`: give udp:LOCAL=REMOTE"))?;
            let local: SocketAddr = local.parse().with_context(|| format!("`{local}`"))?;
            let remote: SocketAddr = remote.parse().with_context(|| format!("`{remote}`"))?;
            let socket = UdpSocket::bind(local).with_context(|| format!("binding {local}"))?;
            socket
                .connect(remote)
                .with_context(|| format!("connecting to {remote}"))?;
            Ok(Side::Udp(socket))
        } else {
            bail!("`{spec}`: give tun:NAME or udp:LOCAL=REMOTE")
        }
    }

    fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Side::Tun(f) => (&*f).read(buf),
            Side::Udp(s) => s.recv(buf),
        }
    }

    fn write(&self, packet: &[u8]) -> std::io::Result<usize> {
        match self {
            Side::Tun(f) => (&*f).write(packet),
            Side::Udp(s) => s.send(packet),
        }
    }
}

/// Moves packets from `from` to `to` until a read fails.
fn pump(from: &Side, to: &Side) {
    let mut buf = vec![0u8; 65536];
    loop {
        let n = match from.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // ECONNREFUSED from an earlier send to a peer not yet up: keep going.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
            Err(e) => {
                eprintln!("dataplane-relay: read failed: {e}");
                return;
            }
        };
        // A lost packet (full buffer, peer not up yet) is lost, as on the real path.
        let _ = to.write(&buf[..n]);
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut a, mut b) = (None, None);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--a" => a = it.next().cloned(),
            "--b" => b = it.next().cloned(),
            "-h" | "--help" => {
                println!(
                    "dataplane-relay --a SIDE --b SIDE\n  SIDE: tun:NAME | udp:LOCAL=REMOTE\n\
                     The data-plane benchmark's baseline: relays packets between the two \
                     sides, one thread per direction, no crypto, no tunnel lookups."
                );
                return Ok(());
            }
            other => bail!("unknown argument `{other}` (see --help)"),
        }
    }
    let a = Side::open(&a.context("missing --a SIDE")?)?;
    let b = Side::open(&b.context("missing --b SIDE")?)?;
    eprintln!("dataplane-relay: relaying");
    std::thread::scope(|s| {
        s.spawn(|| pump(&a, &b));
        pump(&b, &a);
    });
    Ok(())
}
