//! `pbu-load --target ADDR:PORT --bindings N --sessions M`: Proxy Binding Updates for N
//! distinct bindings at full rate, from M simulated MAG sessions, to an LMA over UDP 5436
//! on loopback; reports PBU->PBA per second. With `--echo` the target is `udp-echo` and the
//! same datagrams are sent (the baseline of the same run).
//!
//! Session i is a UDP socket on its own address (`--mag-base` + i), so the LMA sees M
//! MAGs. Every session keeps `--window` PBUs outstanding: each reply (matched by its
//! sequence number) releases the next PBU; one that is not answered within
//! `--retransmit-ms` is sent again. The PBUs are encoded before the clock starts, and the
//! sessions run as tasks on one thread, so the tool uses at most one core: the other one
//! is the LMA's (its driver is one task).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use clap::Parser;
use perf::{pbu, settled_rss, PBA_SEQUENCE_AT, PBA_STATUS_AT, PBU_SEQUENCE_AT};
use serde::Serialize;

/// Drives PBUs for many bindings at an LMA (or the same datagrams at udp-echo).
#[derive(Debug, Parser)]
#[command(name = "pbu-load", version, about)]
struct Cli {
    /// The LMA's (or udp-echo's) address and port.
    #[arg(long, value_name = "ADDR:PORT")]
    target: SocketAddrV4,
    /// Distinct bindings (MN-IDs) to register.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    bindings: u64,
    /// The first binding's index (to add bindings to those of an earlier run).
    #[arg(long, value_name = "I", default_value_t = 0)]
    first: u64,
    /// Simulated MAG sessions (sockets); session i uses address mag-base + i.
    #[arg(long, value_name = "M", default_value_t = 16)]
    sessions: u32,
    /// Address of session 0 (the LMA must allow these MAGs).
    #[arg(long, value_name = "ADDR", default_value = "127.0.160.16")]
    mag_base: Ipv4Addr,
    /// Outstanding PBUs per session.
    #[arg(long, value_name = "W", default_value_t = 32)]
    window: usize,
    /// Send an unanswered PBU again after this many milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    retransmit_ms: u64,
    /// Give up after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    timeout: u64,
    /// Binding lifetime asked for, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    lifetime: u16,
    /// The target is udp-echo: replies are the request's octets (sequence number where
    /// the PBU has it), no status to check.
    #[arg(long)]
    echo: bool,
    /// Read this process's resident memory (VmRSS) before and after: the LMA's pid.
    #[arg(long, value_name = "PID")]
    rss_pid: Option<u32>,
    /// Print one JSON object instead of the summary.
    #[arg(long)]
    json: bool,
}

/// What `--json` prints.
#[derive(Debug, Default, Serialize)]
struct Report {
    target: String,
    echo: bool,
    bindings: u64,
    sessions: u32,
    window: usize,
    pbu_octets: usize,
    reply_octets: usize,
    answered: u64,
    /// Replies whose Status is 128 or more (refused); always 0 against udp-echo.
    refused: u64,
    retransmitted: u64,
    elapsed_s: f64,
    replies_per_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    rss_before: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rss_after: Option<u64>,
}

struct SessionResult {
    answered: u64,
    refused: u64,
    retransmitted: u64,
    reply_octets: usize,
    unanswered: usize,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    anyhow::ensure!(
        cli.sessions > 0 && cli.window > 0,
        "--sessions and --window must be positive"
    );
    anyhow::ensure!(
        cli.bindings / u64::from(cli.sessions) < 60_000,
        "at most 60000 bindings per session (16-bit sequence numbers): add --sessions"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let local = tokio::task::LocalSet::new();
    let report = local.block_on(&runtime, run(&cli))?;
    if cli.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "pbu-load -> {} ({}): {} bindings, {} sessions x window {}",
            report.target,
            if report.echo { "udp-echo" } else { "LMA" },
            report.bindings,
            report.sessions,
            report.window
        );
        println!(
            "  {} replies ({} refused, {} retransmissions) in {:.3} s: {:.0} replies/s",
            report.answered,
            report.refused,
            report.retransmitted,
            report.elapsed_s,
            report.replies_per_s
        );
        println!(
            "  PBU {} octets, reply {} octets",
            report.pbu_octets, report.reply_octets
        );
        if let (Some(a), Some(b)) = (report.rss_before, report.rss_after) {
            println!("  target VmRSS {a} -> {b} bytes");
        }
    }
    anyhow::ensure!(
        report.answered == report.bindings,
        "{} of {} PBUs unanswered",
        report.bindings - report.answered,
        report.bindings
    );
    Ok(())
}

async fn run(cli: &Cli) -> Result<Report> {
    let rss_before = match cli.rss_pid {
        Some(pid) => Some(settled_rss(pid, Duration::from_millis(200))?),
        None => None,
    };
    // Encode every PBU before the clock starts.
    let at = SystemTime::now();
    let mut sessions = Vec::new();
    let per = cli.bindings.div_ceil(u64::from(cli.sessions));
    let mut pbu_octets = 0;
    for s in 0..cli.sessions {
        let mag = Ipv4Addr::from(u32::from(cli.mag_base) + s);
        let start = cli.first + u64::from(s) * per;
        let end = (start + per).min(cli.first + cli.bindings);
        let images: Vec<Vec<u8>> = (start..end)
            .enumerate()
            .map(|(n, index)| pbu(index, n as u16, false, cli.lifetime, at))
            .collect();
        pbu_octets = pbu_octets.max(images.first().map_or(0, Vec::len));
        let socket = std::net::UdpSocket::bind(SocketAddrV4::new(mag, 0))
            .with_context(|| format!("binding session {s} at {mag}"))?;
        socket.set_nonblocking(true)?;
        let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(1 << 20);
        sessions.push((tokio::net::UdpSocket::from_std(socket)?, images));
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(cli.timeout);
    let mut tasks = Vec::new();
    for (socket, images) in sessions {
        let target = SocketAddr::V4(cli.target);
        let window = cli.window;
        let retransmit = Duration::from_millis(cli.retransmit_ms);
        let echo = cli.echo;
        tasks.push(tokio::task::spawn_local(session(
            Rc::new(socket),
            images,
            target,
            window,
            retransmit,
            deadline,
            echo,
        )));
    }
    let mut report = Report {
        target: cli.target.to_string(),
        echo: cli.echo,
        bindings: cli.bindings,
        sessions: cli.sessions,
        window: cli.window,
        pbu_octets,
        rss_before,
        ..Report::default()
    };
    let mut unanswered = 0;
    for t in tasks {
        let r = t.await.context("a session task failed")??;
        report.answered += r.answered;
        report.refused += r.refused;
        report.retransmitted += r.retransmitted;
        report.reply_octets = report.reply_octets.max(r.reply_octets);
        unanswered += r.unanswered;
    }
    let elapsed = started.elapsed().as_secs_f64();
    report.elapsed_s = (elapsed * 1000.0).round() / 1000.0;
    report.replies_per_s = (report.answered as f64 / elapsed).round();
    if unanswered > 0 {
        eprintln!("pbu-load: {unanswered} PBUs unanswered before the timeout");
    }
    if let Some(pid) = cli.rss_pid {
        report.rss_after = Some(settled_rss(pid, Duration::from_millis(200))?);
    }
    Ok(report)
}

/// One MAG: keeps `window` PBUs outstanding until every one is answered.
async fn session(
    socket: Rc<tokio::net::UdpSocket>,
    images: Vec<Vec<u8>>,
    target: SocketAddr,
    window: usize,
    retransmit: Duration,
    deadline: Instant,
    echo: bool,
) -> Result<SessionResult> {
    let mut result = SessionResult {
        answered: 0,
        refused: 0,
        retransmitted: 0,
        reply_octets: 0,
        unanswered: 0,
    };
    // Sequence number (= index in `images`, mod 2^16) -> when sent.
    let mut outstanding: HashMap<u16, Instant> = HashMap::with_capacity(window * 2);
    let mut next = 0usize;
    let mut buf = vec![0u8; 4096];
    let sequence_at = if echo {
        PBU_SEQUENCE_AT
    } else {
        PBA_SEQUENCE_AT
    };
    loop {
        while outstanding.len() < window && next < images.len() {
            socket
                .send_to(&images[next], target)
                .await
                .with_context(|| format!("sending to {target}"))?;
            outstanding.insert(next as u16, Instant::now());
            next += 1;
        }
        if outstanding.is_empty() {
            return Ok(result);
        }
        let now = Instant::now();
        if now >= deadline {
            result.unanswered = outstanding.len() + images.len() - next;
            return Ok(result);
        }
        let oldest = outstanding.values().min().copied().unwrap_or(now);
        let wake = (oldest + retransmit).min(deadline);
        match tokio::time::timeout_at(wake.into(), socket.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => {
                let Some(seq) = buf.get(sequence_at..sequence_at + 2) else {
                    continue;
                };
                let seq = u16::from_be_bytes([seq[0], seq[1]]);
                if outstanding.remove(&seq).is_some() {
                    result.answered += 1;
                    result.reply_octets = result.reply_octets.max(n);
                    if !echo && buf[PBA_STATUS_AT] >= 128 {
                        result.refused += 1;
                    }
                }
            }
            Ok(Err(e)) => return Err(e).context("receiving replies"),
            Err(_) => {
                let now = Instant::now();
                for (seq, sent) in outstanding.iter_mut() {
                    if now.duration_since(*sent) >= retransmit {
                        if let Some(image) = images.get(usize::from(*seq)) {
                            socket.send_to(image, target).await?;
                            *sent = now;
                            result.retransmitted += 1;
                        }
                    }
                }
            }
        }
    }
}
