//! Load tools of the performance harness (BENCHMARKS.md, "Performance harness"):
//!
//! * `pbu-load` drives Proxy Binding Updates for N distinct bindings at full rate from M
//!   simulated MAG sessions (one UDP socket each, on its own loopback address) to an LMA's
//!   UDP port 5436 (RFC 5844) and counts the PBAs; pointed at `udp-echo` with `--echo`,
//!   the same tool sends the same datagrams to the bare baseline.
//! * `udp-echo` answers every datagram with one reply of a fixed size (the PBA's), from
//!   one task on one socket like the LMA's driver: what request/response over loopback
//!   costs without any protocol work.
//!
//! This library holds what both need: the PBU wire images and the resident-memory probe.

use std::time::{Duration, SystemTime};

use pmip_common::mh::{
    AccessTechnologyType, BuFlags, ChecksumContext, GreKey, HandoffIndicator, Lifetime,
    MobilityHeaderRepr, MobilityMessage, ProxyBindingUpdate, Timestamp, IPPROTO_NONE,
};

/// Offset of the Sequence Number in a PBU (after the 6-octet Mobility Header) and in a
/// PBA (after Status and the flags octet).
pub const PBU_SEQUENCE_AT: usize = 6;
pub const PBA_SEQUENCE_AT: usize = 8;
/// Offset of the PBA's Status octet.
pub const PBA_STATUS_AT: usize = 6;

/// The MN-ID of binding `index`: the NAI of IMSI 001010000000000 + index, as an ePDG
/// sends it (54 characters).
pub fn nai(index: u64) -> String {
    format!(
        "0{:015}@nai.epc.mnc001.mcc001.3gppnetwork.org",
        1_010_000_000_000u64 + index
    )
}

/// The wire image of the first (or, with `refresh`, a refreshing) PBU of binding `index`
/// from `mag` to `lma` over UDP 5436: what an ePDG sends at attach (MN-ID, APN, HNP
/// `::/0`, Handoff Indicator, Access Technology Type, Timestamp, GRE key, IPv4 HoA
/// Request), with the Mobility Header checksum zero as RFC 5844 section 4.2.2.1 says.
pub fn pbu(
    index: u64,
    sequence: u16,
    refresh: bool,
    lifetime_secs: u16,
    at: SystemTime,
) -> Vec<u8> {
    let pbu = ProxyBindingUpdate {
        sequence,
        flags: BuFlags(BuFlags::ACK | BuFlags::HOME_REGISTRATION | BuFlags::PROXY),
        lifetime: Lifetime::from_secs(u32::from(lifetime_secs)),
        mn_id: nai(index),
        apn: Some("internet".into()),
        home_network_prefixes: vec!["::/0".parse().unwrap_or_default()],
        handoff: if refresh {
            HandoffIndicator::HandoffStateNotChanged
        } else {
            HandoffIndicator::AttachmentOverNewInterface
        },
        access_technology: AccessTechnologyType::Ieee80211,
        timestamp: Some(Timestamp::from_system_time(at)),
        link_local_address: None,
        link_layer_id: None,
        gre_key: Some(GreKey((index as u32).wrapping_add(1))),
        ipv4_home_address_request: Some("0.0.0.0/0".parse().unwrap_or_default()),
        ipv4_care_of_address: None,
        restart_counter: None,
        vendor: Vec::new(),
        other: Vec::new(),
    };
    MobilityHeaderRepr {
        payload_proto: IPPROTO_NONE,
        message: MobilityMessage::BindingUpdate(pbu.to_binding_update()),
    }
    .to_bytes(ChecksumContext::Ipv4Udp)
}

/// VmRSS of process `pid` in bytes, from /proc/PID/status.
pub fn vm_rss(pid: u32) -> std::io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| std::io::Error::other(format!("no VmRSS in /proc/{pid}/status")))
}

/// Waits until `pid`'s resident memory stops moving (two readings `settle` apart within
/// 64 KiB of each other, at most ten tries) and returns it.
pub fn settled_rss(pid: u32, settle: Duration) -> std::io::Result<u64> {
    let mut last = vm_rss(pid)?;
    for _ in 0..10 {
        std::thread::sleep(settle);
        let now = vm_rss(pid)?;
        if now.abs_diff(last) < 64 * 1024 {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmip_common::mh::ProxyBindingUpdate;

    #[test]
    fn pbu_images_decode_with_their_sequence_where_the_load_reads_it() {
        let bytes = pbu(41, 0x1234, false, 3600, SystemTime::now());
        assert_eq!(&bytes[PBU_SEQUENCE_AT..PBU_SEQUENCE_AT + 2], &[0x12, 0x34]);
        let repr = MobilityHeaderRepr::parse(&bytes, ChecksumContext::Ipv4Udp)
            .expect("a valid Mobility Header");
        let MobilityMessage::BindingUpdate(bu) = repr.message else {
            panic!("not a BU: {:?}", repr.message);
        };
        let pbu = ProxyBindingUpdate::try_from(&bu).expect("a PBU");
        assert_eq!(pbu.mn_id, nai(41));
        assert_eq!(pbu.mn_id.len(), 54);
        assert_eq!(pbu.gre_key, Some(GreKey(42)));
    }

    #[test]
    fn rss_of_this_process_is_read() {
        assert!(vm_rss(std::process::id()).expect("VmRSS") > 0);
    }
}
