//! The SGi TUN device toward the PDN: created by [`pmip_node::tun`] (`IFF_TUN |
//! IFF_NO_PI`), its MTU, addresses and link state set with the `ip` command.

use anyhow::{bail, Context, Result};
use lma::config::SgiSettings;
use pmip_node::tun::AsyncTun;

fn ip(args: &[&str]) -> Result<()> {
    let status = std::process::Command::new("ip")
        .args(args)
        .status()
        .with_context(|| format!("running ip {}", args.join(" ")))?;
    if !status.success() {
        bail!("ip {} failed: {status}", args.join(" "));
    }
    Ok(())
}

fn configure(s: &SgiSettings) -> Result<()> {
    let mtu = s.mtu.to_string();
    ip(&["link", "set", "dev", &s.tun_name, "mtu", &mtu])?;
    if let Some(a) = s.ipv4 {
        ip(&["addr", "add", &a.to_string(), "dev", &s.tun_name])?;
    }
    if let Some(a) = s.ipv6 {
        ip(&[
            "-6",
            "addr",
            "add",
            &a.to_string(),
            "dev",
            &s.tun_name,
            "nodad",
        ])?;
    }
    ip(&["link", "set", "dev", &s.tun_name, "up"])
}

/// Creates and configures the TUN device of `[sgi]`.
pub fn open_tun(s: &SgiSettings) -> Result<AsyncTun> {
    let tun = AsyncTun::create(&s.tun_name)?;
    configure(s).with_context(|| format!("configuring TUN device {}", s.tun_name))?;
    Ok(tun)
}
