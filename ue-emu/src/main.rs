//! `ue-emu attach --config ue.toml [--apn APN] [--json]`: one emulated UE through the
//! S2b attach; the ladder with per-step times, or one JSON object.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};
use ue_emu::config::UeConfig;
use ue_emu::{attach, print_summary, AttachOptions};

/// The UE emulator: IKEv2 initiator with an EAP-AKA software USIM (Milenage).
#[derive(Debug, Parser)]
#[command(name = "ue-emu", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Attach one UE to the ePDG: IKE_SA_INIT, IKE_AUTH with EAP-AKA, CFG_REPLY. Exits
    /// non-zero on failure, naming the notify the ePDG sent.
    Attach {
        /// The UE's configuration (see ue.example.toml).
        #[arg(long, short = 'c', value_name = "FILE")]
        config: PathBuf,
        /// The APN (IDr); overrides the file.
        #[arg(long, value_name = "APN")]
        apn: Option<String>,
        /// Print one JSON object instead of the ladder.
        #[arg(long)]
        json: bool,
        /// Do not check the ePDG's certificate (only matters without EAP-only).
        #[arg(long)]
        insecure: bool,
        /// Stay attached this many seconds before detaching.
        #[arg(long, value_name = "SECS", default_value_t = 0)]
        hold_secs: u64,
        /// Leave the IKE SA up at exit (no INFORMATIONAL DELETE).
        #[arg(long)]
        no_detach: bool,
    },
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("ue-emu: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<bool> {
    let Command::Attach {
        config,
        apn,
        json,
        insecure,
        hold_secs,
        no_detach,
    } = Cli::parse().command;
    let config = UeConfig::load(&config)?;
    let options = AttachOptions {
        apn,
        insecure,
        print: !json,
        hold: Duration::from_secs(hold_secs),
        no_detach,
    };
    if !json {
        println!("attach imsi={} epdg={}", config.imsi, config.epdg);
    }
    let report = attach(&config, &options)?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_summary(&report);
    }
    if report.result != "attached" {
        eprintln!(
            "ue-emu: attach failed: {}",
            report.error.as_deref().unwrap_or("unknown")
        );
    }
    Ok(report.result == "attached")
}
