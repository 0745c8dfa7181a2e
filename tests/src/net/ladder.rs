//! What crossed the links, read back as messages: each trace entry's octets decoded into
//! the IKE exchange it is (and, with the ePDG's keys, what its SK payload carries: IDi,
//! EAP, AUTH, CP, notifies), the Diameter command and result, the PBU or PBA. Tests
//! check a procedure's ladder and its gate from this, with the times, rather than from
//! what the nodes say about themselves.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};
use pmip_common::diameter::codes::command;
use pmip_common::diameter::swm::SwmMessage;
use pmip_common::diameter::{Framer, Message as DiameterMessage};
use pmip_common::esp::NON_ESP_MARKER;
use pmip_common::ike::wire::{
    CfgType, ExchangeType, Identification, IkeHeader, NotifyType, Payload, PayloadType,
};
use pmip_common::ike::IkeMessage;
use pmip_common::mh::{
    BindingAckStatus, ChecksumContext, MobilityHeaderRepr, MobilityMessage, ProxyBindingAck,
    ProxyBindingUpdate, ThreeGppOption, VendorSpecific,
};

use super::epdg::IkeKeyring;
use super::{Fate, Net, TraceEntry, TraceKind};

/// An IKE message: its header, and its payloads where they could be read (the SK
/// payload opened with the IKE SA's keys).
#[derive(Debug, Clone, PartialEq)]
pub struct Ike {
    pub exchange: ExchangeType,
    pub response: bool,
    pub message_id: u32,
    pub initiator_spi: u64,
    pub responder_spi: u64,
    /// Unencrypted payloads, or the SK payload's contents; None when encrypted with keys
    /// not known.
    pub payloads: Option<Vec<Payload>>,
}

impl Ike {
    /// The code of the EAP packet it carries (1 request, 2 response, 3 success, 4
    /// failure).
    pub fn eap_code(&self) -> Option<u8> {
        self.find(|p| match p {
            Payload::Eap(eap) => eap.first().copied(),
            _ => None,
        })
    }

    /// The NAI in IDi.
    pub fn idi(&self) -> Option<String> {
        self.find(|p| match p {
            Payload::IdI(Identification::Rfc822Addr(nai)) => Some(nai.clone()),
            _ => None,
        })
    }

    /// The error notifies (types below 16384, RFC 7296 section 3.10.1).
    pub fn errors(&self) -> Vec<NotifyType> {
        self.payloads
            .iter()
            .flatten()
            .filter_map(|p| match p {
                Payload::Notify(n) if u16::from(n.notify_type) < 16384 => Some(n.notify_type),
                _ => None,
            })
            .collect()
    }

    pub fn has(&self, payload_type: PayloadType) -> bool {
        self.payloads
            .iter()
            .flatten()
            .any(|p| p.payload_type() == payload_type)
    }

    /// The CP payload's type (CFG_REQUEST, CFG_REPLY).
    pub fn cp(&self) -> Option<CfgType> {
        self.find(|p| match p {
            Payload::Cp(cp) => Some(cp.cfg_type),
            _ => None,
        })
    }

    fn find<T>(&self, f: impl Fn(&Payload) -> Option<T>) -> Option<T> {
        self.payloads.iter().flatten().find_map(f)
    }

    /// `IKE_AUTH[EAP-Success]`, `IKE_SA_INIT`, `INFORMATIONAL[DELETE]`...: the exchange
    /// and what it carries that a ladder names.
    pub fn label(&self) -> String {
        let exchange = match self.exchange {
            ExchangeType::IkeSaInit => "IKE_SA_INIT",
            ExchangeType::IkeAuth => "IKE_AUTH",
            ExchangeType::CreateChildSa => "CREATE_CHILD_SA",
            ExchangeType::Informational => "INFORMATIONAL",
            ExchangeType::Unknown(_) => "IKE?",
        };
        let mut parts: Vec<String> = Vec::new();
        if self.exchange != ExchangeType::IkeSaInit {
            if self.idi().is_some() {
                parts.push("IDi".into());
            }
            if self.has(PayloadType::IdR) {
                parts.push("IDr".into());
            }
            if let Some(code) = self.eap_code() {
                parts.push(
                    match code {
                        1 => "EAP-Request",
                        2 => "EAP-Response",
                        3 => "EAP-Success",
                        4 => "EAP-Failure",
                        _ => "EAP?",
                    }
                    .into(),
                );
            }
            if self.has(PayloadType::Auth) {
                parts.push("AUTH".into());
            }
            match self.cp() {
                Some(CfgType::CfgRequest) => parts.push("CFG_REQUEST".into()),
                Some(CfgType::CfgReply) => parts.push("CFG_REPLY".into()),
                _ => {}
            }
            if self.has(PayloadType::Sa) {
                parts.push("SA".into());
            }
            if self.has(PayloadType::TsI) && self.has(PayloadType::TsR) {
                parts.push("TS".into());
            }
            if self.has(PayloadType::Delete) {
                parts.push("DELETE".into());
            }
            parts.extend(self.errors().iter().map(|n| format!("{n:?}")));
            if self.payloads.is_none() {
                parts.push("encrypted".into());
            }
        }
        if parts.is_empty() {
            exchange.into()
        } else {
            format!("{exchange}[{}]", parts.join(","))
        }
    }
}

/// One message that crossed a link, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Ike(Ike),
    /// A Diameter message: its command, whether a request, Session-Id, and the result
    /// code of an answer (Result-Code or Experimental-Result-Code).
    Diameter {
        command: u32,
        request: bool,
        session: Option<String>,
        result: Option<u32>,
    },
    Pbu {
        mn_id: String,
        apn: Option<String>,
        sequence: u16,
        lifetime_secs: u32,
        /// The home gateway named for chaining (TS 29.275 PDN GW IP address).
        pdn_gw: Option<IpAddr>,
    },
    Pba {
        mn_id: Option<String>,
        sequence: u16,
        status: BindingAckStatus,
        lifetime_secs: u32,
        ipv4: Option<Ipv4Net>,
        prefix: Option<Ipv6Net>,
    },
    /// An RFC 5847 Heartbeat (liveness between a MAG and an LMA, not part of an attach).
    Heartbeat {
        response: bool,
    },
    /// A stream connection opened, closed or cut.
    Connect,
    Close,
    Cut,
    /// Octets no decoder here reads (ESP, garbage).
    Unknown,
}

impl Message {
    /// What a ladder calls it: `IKE_AUTH[EAP-Request]`, `DER`, `DEA 1001`, `PBU`,
    /// `PBA Accepted`...
    pub fn label(&self) -> String {
        match self {
            Message::Ike(ike) => ike.label(),
            Message::Diameter {
                command: c,
                request,
                result,
                ..
            } => {
                let name = match (*c, *request) {
                    (command::CAPABILITIES_EXCHANGE, true) => "CER",
                    (command::CAPABILITIES_EXCHANGE, false) => "CEA",
                    (command::DEVICE_WATCHDOG, true) => "DWR",
                    (command::DEVICE_WATCHDOG, false) => "DWA",
                    (command::DISCONNECT_PEER, true) => "DPR",
                    (command::DISCONNECT_PEER, false) => "DPA",
                    (command::DIAMETER_EAP, true) => "DER",
                    (command::DIAMETER_EAP, false) => "DEA",
                    (command::AA, true) => "AAR",
                    (command::AA, false) => "AAA",
                    (command::SESSION_TERMINATION, true) => "STR",
                    (command::SESSION_TERMINATION, false) => "STA",
                    _ => "Diameter?",
                };
                let base = matches!(
                    *c,
                    command::CAPABILITIES_EXCHANGE
                        | command::DEVICE_WATCHDOG
                        | command::DISCONNECT_PEER
                );
                match result {
                    Some(r) if !request && !base => format!("{name} {r}"),
                    _ => name.into(),
                }
            }
            Message::Pbu { lifetime_secs, .. } if *lifetime_secs == 0 => "PBU(lifetime 0)".into(),
            Message::Pbu { .. } => "PBU".into(),
            Message::Pba { status, .. } => format!("PBA {status:?}"),
            Message::Heartbeat { response: false } => "Heartbeat".into(),
            Message::Heartbeat { response: true } => "Heartbeat response".into(),
            Message::Connect => "connect".into(),
            Message::Close => "close".into(),
            Message::Cut => "cut".into(),
            Message::Unknown => "?".into(),
        }
    }
}

/// One message on the wire: where and when.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Its trace entry's index.
    pub index: usize,
    pub entry: TraceEntry,
    pub message: Message,
}

impl Seen {
    /// When it arrived, if it did.
    pub fn arrived(&self) -> Option<Duration> {
        match self.entry.fate {
            Fate::Arrives(at) => Some(at),
            _ => None,
        }
    }

    pub fn sent(&self) -> Duration {
        self.entry.sent
    }
}

/// Every message of the trace, decoded (IKE_AUTH contents with `keys`).
pub fn read(net: &Net, keys: &IkeKeyring) -> Vec<Seen> {
    let mut seen = Vec::new();
    for (index, (entry, bytes)) in net.messages().enumerate() {
        for message in decode(entry, bytes, keys) {
            seen.push(Seen {
                index,
                entry: *entry,
                message,
            });
        }
    }
    seen
}

/// The messages in one trace entry (a stream write may hold several Diameter
/// messages).
fn decode(entry: &TraceEntry, bytes: &[u8], keys: &IkeKeyring) -> Vec<Message> {
    match entry.kind {
        TraceKind::Connect { .. } => vec![Message::Connect],
        TraceKind::Close { .. } => vec![Message::Close],
        TraceKind::Cut { .. } => vec![Message::Cut],
        TraceKind::Stream { .. } => {
            let mut framer = Framer::new(1 << 20);
            framer.push(bytes);
            let mut out = Vec::new();
            while let Ok(Some(bytes)) = framer.next_message() {
                out.push(match DiameterMessage::from_bytes(&bytes) {
                    Ok(m) => diameter(&m),
                    Err(_) => Message::Unknown,
                });
            }
            if out.is_empty() {
                out.push(Message::Unknown);
            }
            out
        }
        TraceKind::Datagram { from, to } => {
            let message = if from.port() == super::lma::MH_PORT || to.port() == super::lma::MH_PORT
            {
                mobility(bytes)
            } else {
                ike(bytes, keys)
            };
            vec![message.unwrap_or(Message::Unknown)]
        }
    }
}

fn diameter(m: &DiameterMessage) -> Message {
    let result = match SwmMessage::parse(m) {
        Ok(SwmMessage::Dea(dea)) => Some(dea.result.code()),
        Ok(SwmMessage::Aaa(aaa)) => Some(aaa.result.code()),
        Ok(SwmMessage::Sta(sta)) => Some(sta.result_code),
        _ => m.result_code(),
    };
    Message::Diameter {
        command: m.header.command_code,
        request: m.header.flags.request(),
        session: m.session_id().map(str::to_string),
        result,
    }
}

fn mobility(bytes: &[u8]) -> Option<Message> {
    let message = MobilityHeaderRepr::parse(bytes, ChecksumContext::Skip)
        .ok()?
        .message;
    match message {
        MobilityMessage::BindingUpdate(bu) => {
            let pbu = ProxyBindingUpdate::try_from(&bu).ok()?;
            let pdn_gw = pbu.vendor.iter().find_map(|v| match v {
                VendorSpecific::ThreeGpp(ThreeGppOption::PdnGwIpAddress(a)) => Some(*a),
                _ => None,
            });
            Some(Message::Pbu {
                mn_id: pbu.mn_id,
                apn: pbu.apn,
                sequence: pbu.sequence,
                lifetime_secs: pbu.lifetime.as_secs(),
                pdn_gw,
            })
        }
        MobilityMessage::BindingAck(ba) => {
            let pba = ProxyBindingAck::try_from(&ba).ok()?;
            Some(Message::Pba {
                mn_id: pba.mn_id,
                sequence: pba.sequence,
                status: pba.status,
                lifetime_secs: pba.lifetime.as_secs(),
                ipv4: pba.ipv4_home_address_reply.map(|(_, a)| a),
                prefix: pba.home_network_prefixes.first().copied(),
            })
        }
        MobilityMessage::Heartbeat(hb) => Some(Message::Heartbeat {
            response: hb.response,
        }),
        _ => None,
    }
}

fn ike(bytes: &[u8], keys: &IkeKeyring) -> Option<Message> {
    // On port 4500 IKE follows the non-ESP marker (RFC 3948 section 2.2).
    let bytes = bytes.strip_prefix(&NON_ESP_MARKER).unwrap_or(bytes);
    let header = IkeHeader::new_checked(bytes).ok()?;
    let header = pmip_common::ike::wire::HeaderRepr::parse(&header).ok()?;
    let payloads = if header.next_payload == PayloadType::Sk {
        keys.get(header.initiator_spi, header.responder_spi)
            .and_then(|k| {
                let sk = if header.flags.initiator {
                    k.initiator_sk()
                } else {
                    k.responder_sk()
                };
                sk.open(bytes).ok()
            })
            .map(|m| m.payloads)
    } else {
        IkeMessage::parse(bytes).ok().map(|m| m.payloads)
    };
    Some(Message::Ike(Ike {
        exchange: header.exchange_type,
        response: header.flags.response,
        message_id: header.message_id,
        initiator_spi: header.initiator_spi,
        responder_spi: header.responder_spi,
        payloads,
    }))
}

/// The messages between the nodes at `a` and `b` (either way), labelled
/// `"<sender> <message>"` in send order; those that `keep` rejects are left out.
pub fn between(
    net: &Net,
    seen: &[Seen],
    a: usize,
    b: usize,
    keep: impl Fn(&Seen) -> bool,
) -> Vec<String> {
    seen.iter()
        .filter(|s| {
            s.entry
                .to
                .is_some_and(|to| (s.entry.from, to) == (a, b) || (s.entry.from, to) == (b, a))
        })
        .filter(|s| keep(s))
        .map(|s| format!("{} {}", net.name_of(s.entry.from), s.message.label()))
        .collect()
}
