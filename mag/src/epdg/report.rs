//! What the ePDG core tells its driver besides what to send: [`Report`]s for the log
//! lines, and the [`Status`] summary the driver writes to the status file.

use std::net::{Ipv4Addr, SocketAddr};

use pmip_common::binding_update_list::MobileNodeKey;
use pmip_common::diameter::peer::{DownReason, PeerEvent};
use pmip_common::diameter::Error as DiameterError;
use pmip_common::ike::sa::Discard;
use pmip_common::mh::{BindingAckStatus, Lifetime};
use serde::Serialize;

use crate::attach::{AttachInfo, Outcome};

/// What happened, for the log.
#[derive(Debug)]
pub enum Report {
    /// A new IKE SA, not yet authenticated.
    IkeSaCreated {
        spi: u64,
    },
    /// The IKE SA `spi` is authenticated, or was rekeyed: `record` is its line for a
    /// Wireshark keylog (`ikev2_decryption_table`). Half-open SAs get none.
    IkeSaKeys {
        spi: u64,
        record: String,
    },
    /// A CHILD_SA of the IKE SA `spi` was rekeyed (RFC 7296 section 1.3.3): the new one
    /// replaces the one with inbound SPI `old`.
    ChildSaRekeyed {
        spi: u64,
        old: u32,
        new: u32,
    },
    /// An IKE datagram was dropped without effect.
    IkeDropped {
        spi: Option<u64>,
        reason: Discard,
    },
    DiameterOpen {
        applications: Vec<u32>,
    },
    DiameterDown(DownReason),
    /// The AAA's byte stream could not be framed: the connection is closed.
    DiameterStreamBroken(DiameterError),
    /// A request from the AAA, answered DIAMETER_COMMAND_UNSUPPORTED.
    DiameterRequestRefused {
        command: u32,
        session: String,
    },
    /// Another event of the Diameter peer (failover, failback, DPR from the AAA).
    DiameterEvent(PeerEvent),
    /// A Diameter answer that is not usable: no such session, or not parsable.
    SwmAnswerDropped {
        reason: String,
    },
    /// A STR could not be sent: the AAA is unreachable.
    StrNotSent {
        session: String,
    },
    PbuSent {
        to: SocketAddr,
        sequence: u16,
        lifetime: Lifetime,
    },
    PbaReceived {
        from: SocketAddr,
        sequence: u16,
        status: BindingAckStatus,
    },
    /// A Mobility Header message the MAG does not act on (not a PBA).
    MobilityIgnored {
        from: SocketAddr,
        message: String,
    },
    /// A Mobility Header message that should have been a PBA and is not usable.
    MobilityDropped {
        from: SocketAddr,
        reason: String,
    },
    /// The PBA accepted the binding: the EAP-Success goes to the UE.
    EapSuccessReleased {
        nai: String,
        apn: String,
    },
    /// A UE is attached; `attached` UEs are now.
    Attached {
        spi: u64,
        info: Box<AttachInfo>,
        attached: usize,
    },
    /// Attached without a CHILD_SA for the data plane.
    NoChildSa {
        spi: u64,
    },
    /// A newer IKE SA of the same (NAI, APN) took the binding over.
    BindingHandedOver {
        key: MobileNodeKey,
        old: u64,
        new: u64,
    },
    /// An attach ended (rejected, detached or abandoned).
    AttachEnded {
        spi: u64,
        outcome: Outcome,
    },
    /// A UE's state is gone; what is left (counted as in [`Status`]).
    UeRemoved {
        spi: u64,
        ike_sas: usize,
        aaa_sessions: usize,
        bindings: usize,
    },
    BindingRefreshed {
        key: MobileNodeKey,
    },
    BindingRemoved {
        key: MobileNodeKey,
        acknowledged: bool,
        bindings: usize,
    },
    ShuttingDown {
        ike_sas: usize,
    },
    /// Shutdown is done (DPR sent if the AAA was reachable): the driver may exit.
    Stopped {
        bindings: usize,
    },
}

/// The state summary of the status file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// IKE SAs with their UE, half-open ones included.
    pub ike_sas: usize,
    /// Sessions that reached the AAA: a DER was sent (RFC 4072 section 3.1) and no STR
    /// yet (RFC 6733 section 8.4.1). A half-open IKE SA, or one still before its first
    /// DER, has none.
    pub aaa_sessions: usize,
    pub bindings: usize,
    pub diameter_open: bool,
    /// Attached UEs by NAI and APN.
    pub attached: Vec<AttachedUe>,
}

/// One attached UE in the status file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttachedUe {
    pub nai: String,
    pub apn: String,
    pub lma: SocketAddr,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6_prefix: Option<ipnet::Ipv6Net>,
    pub uplink_gre_key: Option<u32>,
    pub downlink_gre_key: u32,
}

impl From<&AttachInfo> for AttachedUe {
    fn from(a: &AttachInfo) -> Self {
        AttachedUe {
            nai: a.nai.clone(),
            apn: a.apn.clone(),
            lma: a.lma,
            ipv4: a.ipv4.map(|n| n.addr()),
            ipv6_prefix: a.ipv6_prefix,
            uplink_gre_key: a.uplink_gre_key.map(|k| k.0),
            downlink_gre_key: a.downlink_gre_key.0,
        }
    }
}
