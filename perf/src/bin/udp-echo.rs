//! `udp-echo --listen ADDR --reply-size N`: the bare request/response baseline of the
//! LMA load test. One tokio task on one UDP socket, like the LMA's driver: every
//! datagram gets one reply of N octets (the request's first octets, zero-padded), so the
//! client can match replies by the request's sequence number. Runs until killed.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use clap::Parser;

/// A UDP request/response server with no protocol work: the baseline for `pbu-load`.
#[derive(Debug, Parser)]
#[command(name = "udp-echo", version, about)]
struct Cli {
    /// Address and port to answer on.
    #[arg(long, value_name = "ADDR:PORT")]
    listen: SocketAddr,
    /// Octets in each reply (give the PBA size `pbu-load` reported against the LMA).
    #[arg(long, value_name = "N", default_value_t = 160)]
    reply_size: usize,
    /// Receive buffer in bytes (the LMA's default is 4 MiB).
    #[arg(long, value_name = "BYTES", default_value_t = 4 << 20)]
    socket_buffer_bytes: usize,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(serve(cli))
}

async fn serve(cli: Cli) -> Result<()> {
    let std_socket = std::net::UdpSocket::bind(cli.listen)
        .with_context(|| format!("binding UDP {}", cli.listen))?;
    std_socket.set_nonblocking(true)?;
    let socket = tokio::net::UdpSocket::from_std(std_socket)?;
    // Best effort, capped by net.core.rmem_max as the LMA's is without privilege.
    let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(cli.socket_buffer_bytes);
    eprintln!(
        "udp-echo listening on {} (replies of {} octets)",
        cli.listen, cli.reply_size
    );
    let mut buf = vec![0u8; 65536];
    let mut reply = vec![0u8; cli.reply_size];
    loop {
        let (n, from) = socket.recv_from(&mut buf).await?;
        let copy = n.min(reply.len());
        reply[..copy].copy_from_slice(&buf[..copy]);
        reply[copy..].fill(0);
        if let Err(e) = socket.send_to(&reply, from).await {
            eprintln!("udp-echo: sending to {from}: {e}");
        }
    }
}
