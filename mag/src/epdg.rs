//! The ePDG's signaling logic (docs/attach.md; TS 23.402 section 7.2, TS 24.302
//! section 7.2), sans-IO: a plain struct advanced by [`Epdg::handle`] and asked
//! [`Epdg::poll_timeout`]. No socket, no clock, no randomness of its own: the driver
//! passes every IKE datagram (with both addresses), Mobility Header message and Diameter
//! byte with `now` and a random source, and carries out the [`Output`]s: datagrams and
//! messages to send, the Diameter connection to open or close, data-plane sessions to
//! install or remove, and [`Report`]s for the log.
//!
//! The attach ladder, and the function that makes each step:
//!
//! 1. IKE_SA_INIT: [`Endpoint::handle`] answers it (cookies, the retransmission cache)
//!    with a new half-open IKE SA; `Epdg::new_ue` gives it a Diameter Session-Id and a
//!    downlink GRE key (RFC 5845) and starts its [`Attach`].
//! 2. IKE_AUTH (IDi = NAI, IDr = APN, CP request): the SA reports
//!    [`Event::AuthRequested`]; `Epdg::step` feeds it to [`Attach::handle`], whose DER
//!    (EAP-Response/Identity) `Epdg::carry_out` sends on the SWm link
//!    (`AaaLink::send`); without an open link the attach fails at once
//!    (NETWORK_FAILURE).
//! 3. DEA with DIAMETER_MULTI_ROUND_AUTH (the AKA-Challenge): `Epdg::on_swm_answer`
//!    finds the UE by Session-Id; the EAP request goes to the UE
//!    ([`Endpoint::send_eap`]), its EAP response comes back as [`Event::EapResponse`] and
//!    goes out in the next DER.
//! 4. DEA with DIAMETER_SUCCESS: the attach holds the EAP-Success and the MSK and, unless
//!    the DEA named the gateway, asks with an AAR; the AAA names it.
//! 5. PBU: `Epdg::register` either hands over the binding of an older IKE SA of the
//!    same (NAI, APN) or gives the request to the [`BindingUpdateList`], which sends the
//!    PBU (`Epdg::send_pbu`) and retransmits it (RFC 5213 section 6.9.4).
//! 6. PBA: `Epdg::on_mobility` hands it to the list; `Epdg::on_list_outputs` passes
//!    `Registered` to the attach, which only now releases the EAP-Success (the gate) with
//!    the LMA's addresses in the CFG_REPLY to come ([`Endpoint::eap_success`]). A
//!    registration whose UE left meanwhile is undone with a lifetime-0 PBU.
//! 7. IKE_AUTH (AUTH from the MSK): the SA checks it and answers with AUTH, CFG_REPLY,
//!    SA and TS; [`Event::Established`] makes the attach report the UE attached and
//!    `Epdg::session_up` hands the data plane its CHILD_SA keys, addresses and GRE keys.
//!
//! Every failure (DEA or AAA refusal, AAA silent or unreachable, PBA error, LMA silent)
//! ends IKE_AUTH with an error notify; the attach then de-registers a binding it made and
//! ends its AAA session (STR), and `Epdg::remove_ue` drops the UE with its IKE SA,
//! Session-Id, binding key and deadline. A UE that deletes its IKE SA, stops answering
//! liveness checks (RFC 7296 section 2.4) or never finishes IKE_AUTH goes the same way.
//! A registration given up without a usable PBA (the LMA may have heard it) is followed
//! by one lifetime-0 PBU (`Epdg::release_failed`); one for a key whose earlier binding,
//! of a UE now gone, is still being removed waits for that (`Epdg::resume_deferred`).
//! [`Input::Shutdown`] deletes every IKE SA, waits (up to `shutdown_grace`) for the
//! de-registrations, then says goodbye to the AAA (DPR) and reports [`Report::Stopped`].
//!
//! One timer structure: the per-UE deadlines sit in a [`DeadlineQueue`] (the IKE SAs'
//! in the endpoint's), and [`Epdg::poll_timeout`] is the exact earliest of them, the
//! list's, the Diameter link's and the shutdown's.

mod aaa_link;
mod config;
mod report;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use pmip_common::binding_update_list::{
    self as bul, BindingUpdateList, MobileNodeKey, RegistrationFailure, RegistrationRequest,
};
use pmip_common::diameter::codes::command;
use pmip_common::diameter::swm::{self, SwmMessage};
use pmip_common::diameter::Message;
use pmip_common::ike::endpoint::{Endpoint, EndpointOutput, Transmit};
use pmip_common::ike::sa::{ChildSa, Established, Event};
use pmip_common::ike::Random;
use pmip_common::mh::{
    ChecksumContext, GreKey, Lifetime, MobilityHeaderRepr, MobilityMessage, ProxyBindingAck,
    ProxyBindingUpdate, Timestamp, IPPROTO_NONE,
};
use pmip_common::time::{DeadlineQueue, WallClock};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use crate::attach::{self, Attach, AttachConfig, AttachInfo};
use crate::dataplane::SessionInfo;
use aaa_link::AaaLink;
pub use config::{EpdgConfig, EpdgConfigError};
pub use report::{AttachedUe, Report, Status};

/// What the driver feeds in.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// An IKE datagram from `remote` to our `local` address, on the NAT-T port 4500
    /// (`natt`, after the non-ESP marker of RFC 3948) or on port 500.
    Ike {
        remote: SocketAddr,
        local: SocketAddr,
        natt: bool,
        bytes: &'a [u8],
    },
    /// A Mobility Header message from an LMA: over IPv4 in UDP (RFC 5844, `from` with
    /// its port), or over IPv6 from a raw socket that checked the checksum.
    Mobility { from: SocketAddr, bytes: &'a [u8] },
    /// The connection asked for by [`Output::DiameterConnect`] is up.
    DiameterConnected,
    /// It could not be opened.
    DiameterConnectFailed,
    /// Bytes of the stream from the AAA.
    DiameterBytes(&'a [u8]),
    /// The connection is closed.
    DiameterClosed,
    /// The data plane's CHILD_SA with our inbound SPI `inbound_spi` of the IKE SA
    /// `ike_spi` nears the end of its sequence numbers
    /// ([`crate::dataplane::DataPlane::take_rekeys_due`]): rekey it (RFC 4303 section
    /// 3.3.3, RFC 7296 section 1.3.3).
    RekeyChildSa { ike_spi: u64, inbound_spi: u32 },
    /// The deadline of [`Epdg::poll_timeout`] passed.
    Timeout,
    /// Detach every UE and stop (see the module doc).
    Shutdown,
}

/// What the driver carries out, in order.
#[derive(Debug)]
pub enum Output {
    /// An IKE datagram (on the NAT-T port the driver adds the non-ESP marker).
    Ike(Transmit),
    /// A Mobility Header message to an LMA: in UDP to `to` over IPv4 (checksum done), or
    /// directly in IPv6 to `to`'s address (checksum zero: the raw socket fills it).
    Mobility { to: SocketAddr, bytes: Vec<u8> },
    /// Open the TCP connection to the AAA; answer with `DiameterConnected` or
    /// `DiameterConnectFailed`.
    DiameterConnect,
    /// Write these bytes (one Diameter message) to the AAA connection.
    Diameter(Vec<u8>),
    /// Close the AAA connection (no `DiameterClosed` needed).
    DiameterClose,
    /// Install the data-plane session of an attached UE.
    SessionUp {
        ike_spi: u64,
        child: Box<ChildSa>,
        session: SessionInfo,
    },
    /// A rekey replaced the session's CHILD_SA (RFC 7296 section 2.8): add `child`; the
    /// old one still receives until its `ChildSaRetired`.
    ChildSaRekeyed { ike_spi: u64, child: Box<ChildSa> },
    /// The CHILD_SA with this inbound SPI is deleted: stop using it.
    ChildSaRetired { ike_spi: u64, inbound_spi: u32 },
    /// Remove it.
    SessionDown { ike_spi: u64 },
    /// Something to log.
    Report(Report),
}

/// One UE: its attach procedure (its IKE SA is in the endpoint under the same SPI).
struct Ue {
    attach: Attach,
    /// The CHILD_SA of the finished IKE_AUTH, until the data plane gets it.
    child: Option<Box<ChildSa>>,
    /// Whether its data-plane session is installed.
    attached: bool,
    /// The attach's deadline in [`Epdg::deadlines`]; others for it are stale.
    scheduled: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Shutdown {
    deadline: Instant,
    stopped: bool,
}

/// The whole ePDG's signaling state.
pub struct Epdg {
    attach_config: Arc<AttachConfig>,
    shutdown_grace: Duration,
    ike: Endpoint,
    /// Every UE by our IKE SPI.
    ues: HashMap<u64, Ue>,
    /// UEs by Diameter Session-Id, for the AAA's answers.
    by_session: HashMap<String, u64>,
    /// The UE holding each binding key (NAI, APN).
    by_key: HashMap<MobileNodeKey, u64>,
    list: BindingUpdateList,
    /// The last PBU of each first registration under way, and where it went: what a
    /// release after a failed registration repeats with lifetime 0.
    registering: HashMap<MobileNodeKey, (SocketAddr, ProxyBindingUpdate)>,
    /// Wall-clock time of `now`, for the Timestamp of such a release.
    clock: WallClock,
    /// Registrations waiting for the list to let go of their key, whose earlier binding
    /// (of a UE now gone) is still being registered or removed: the UE by IKE SPI, and
    /// its request.
    deferred: HashMap<MobileNodeKey, (u64, RegistrationRequest)>,
    aaa: AaaLink,
    /// The attach procedures' deadlines (DEA, AAA answers), by IKE SPI.
    deadlines: DeadlineQueue<u64>,
    next_gre_key: u32,
    next_session: u32,
    attached: usize,
    /// UEs whose attach has a session at the AAA ([`Attach::has_aaa_session`]); a
    /// half-open IKE SA has a Session-Id in `by_session` but no session yet.
    aaa_sessions: usize,
    shutdown: Option<Shutdown>,
}

impl Epdg {
    /// A core at `now` (`wall_clock` is the same moment, for PBU timestamps); `rng`
    /// seeds the first GRE key and the Diameter identifiers. The first connect to the
    /// AAA is due at once.
    pub fn new(
        config: EpdgConfig,
        now: Instant,
        wall_clock: SystemTime,
        rng: &mut dyn Random,
    ) -> Self {
        let mut seed = [0u8; 8];
        rng.fill(&mut seed);
        let mut diameter_rng = StdRng::seed_from_u64(u64::from_be_bytes(seed));
        let mut first_key = [0u8; 4];
        rng.fill(&mut first_key);
        Epdg {
            attach_config: Arc::new(config.attach),
            shutdown_grace: config.shutdown_grace,
            ike: Endpoint::new(config.ike, rng),
            ues: HashMap::new(),
            by_session: HashMap::new(),
            by_key: HashMap::new(),
            list: BindingUpdateList::new(config.mag, now, wall_clock),
            registering: HashMap::new(),
            clock: WallClock::new(now, wall_clock),
            deferred: HashMap::new(),
            aaa: AaaLink::new(
                config.diameter,
                Box::new(move || diameter_rng.next_u32()),
                config.reconnect_delay,
                now,
            ),
            deadlines: DeadlineQueue::new(),
            next_gre_key: u32::from_be_bytes(first_key) & 0x00ff_ffff | 1,
            next_session: 0,
            attached: 0,
            aaa_sessions: 0,
            shutdown: None,
        }
    }

    /// The earliest moment `handle(Input::Timeout, ..)` has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.ike.poll_timeout(),
            self.deadlines.peek().map(|(at, _)| at),
            self.list.poll_timeout(),
            self.aaa.poll_timeout(),
            self.shutdown.filter(|s| !s.stopped).map(|s| s.deadline),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Advances the ePDG by one input at `now`, appending what to do to `out`.
    pub fn handle(
        &mut self,
        input: Input<'_>,
        now: Instant,
        rng: &mut dyn Random,
        out: &mut Vec<Output>,
    ) {
        match input {
            Input::Ike {
                remote,
                local,
                natt,
                bytes,
            } => {
                let mut ike_out = Vec::new();
                self.ike
                    .handle(bytes, remote, local, natt, now, rng, &mut ike_out);
                self.on_ike_outputs(ike_out, now, rng, out);
            }
            Input::Mobility { from, bytes } => self.on_mobility(from, bytes, now, rng, out),
            Input::DiameterConnected => self.aaa.connected(now, out),
            Input::DiameterConnectFailed => self.aaa.connect_failed(now),
            Input::DiameterBytes(bytes) => {
                let mut answers = Vec::new();
                self.aaa.receive(bytes, now, out, &mut answers);
                for answer in answers {
                    self.on_swm_answer(&answer, now, rng, out);
                }
            }
            Input::DiameterClosed => self.aaa.closed(now, out),
            Input::RekeyChildSa {
                ike_spi,
                inbound_spi,
            } => {
                let mut ike_out = Vec::new();
                self.ike
                    .rekey_child_sa(ike_spi, inbound_spi, now, rng, &mut ike_out);
                self.on_ike_outputs(ike_out, now, rng, out);
            }
            Input::Timeout => self.on_timeout(now, rng, out),
            Input::Shutdown => self.start_shutdown(now, rng, out),
        }
        self.prune_deadlines();
        self.check_stopped(now, out);
    }

    /// The state summary for the status file.
    pub fn status(&self) -> Status {
        let mut attached: Vec<AttachedUe> = self
            .ues
            .values()
            .filter_map(|u| u.attach.info())
            .map(AttachedUe::from)
            .collect();
        attached.sort_unstable_by(|a, b| (&a.nai, &a.apn).cmp(&(&b.nai, &b.apn)));
        Status {
            ike_sas: self.ues.len(),
            aaa_sessions: self.aaa_sessions,
            bindings: self.list.len(),
            diameter_open: self.aaa.is_open(),
            attached,
        }
    }

    /// Nothing left of any UE: no IKE SA, no AAA session, no binding, no deadline but
    /// the Diameter link's.
    pub fn is_idle(&self) -> bool {
        self.ues.is_empty()
            && self.ike.is_empty()
            && self.by_session.is_empty()
            && self.by_key.is_empty()
            && self.list.is_empty()
            && self.registering.is_empty()
            && self.deferred.is_empty()
            && self.ike.poll_timeout().is_none()
            && self.deadlines.is_empty()
            && self.list.poll_timeout().is_none()
    }

    /// The Wireshark IKEv2 decryption record (`ikev2_decryption_table`) of the IKE SA
    /// `spi` as it is now, for a keylog file; None while it is not authenticated (the
    /// records come as [`Report::IkeSaKeys`] anyway).
    pub fn keylog_record(&self, spi: u64) -> Option<String> {
        let sa = self.ike.sa(spi).filter(|sa| !sa.is_half_open())?;
        Some(
            sa.keys()
                .wireshark_decryption_record(sa.initiator_spi(), sa.responder_spi()),
        )
    }

    /// The IKE endpoint (SAs, half-open count, counters), for tests and diagnostics.
    pub fn ike(&self) -> &Endpoint {
        &self.ike
    }

    fn on_timeout(&mut self, now: Instant, rng: &mut dyn Random, out: &mut Vec<Output>) {
        let mut ike_out = Vec::new();
        self.ike.handle_timeout(now, rng, &mut ike_out);
        self.on_ike_outputs(ike_out, now, rng, out);
        while let Some((at, spi)) = self.deadlines.pop_due(now) {
            let Some(ue) = self.ues.get_mut(&spi) else {
                continue;
            };
            if ue.scheduled == Some(at) {
                ue.scheduled = None;
                self.step(spi, attach::Input::Timeout, now, rng, out);
            }
        }
        if self.list.poll_timeout().is_some_and(|t| t <= now) {
            let mut list_out = Vec::new();
            self.list.handle(bul::Input::Timeout, now, &mut list_out);
            self.on_list_outputs(list_out, now, rng, out);
        }
        self.aaa.handle_timeout(now, out);
    }

    /// Carries out what the IKE endpoint output: datagrams go out, a new SA gets its UE,
    /// SA events go to the UE's attach.
    fn on_ike_outputs(
        &mut self,
        ike_out: Vec<EndpointOutput>,
        now: Instant,
        rng: &mut dyn Random,
        out: &mut Vec<Output>,
    ) {
        for o in ike_out {
            match o {
                EndpointOutput::Transmit(t) => out.push(Output::Ike(t)),
                EndpointOutput::Created { spi } => self.new_ue(spi, out),
                EndpointOutput::Event { spi, event } => {
                    let input = match event {
                        Event::AuthRequested(request) => {
                            attach::Input::AuthRequested(Box::new(request))
                        }
                        Event::EapResponse(eap) => attach::Input::EapFromUe(eap),
                        Event::Established(established) => {
                            let Established { child, keylog, .. } = *established;
                            out.push(Output::Report(Report::IkeSaKeys {
                                spi,
                                record: keylog,
                            }));
                            if let Some(ue) = self.ues.get_mut(&spi) {
                                ue.child = Some(Box::new(child));
                            }
                            attach::Input::IkeEstablished
                        }
                        Event::Closed(reason) => attach::Input::IkeClosed(reason),
                        Event::IkeSaRekeyed { keylog, .. } => {
                            out.push(Output::Report(Report::IkeSaKeys {
                                spi,
                                record: keylog,
                            }));
                            continue;
                        }
                        Event::ChildSaRekeyed { replaces, child } => {
                            out.push(Output::Report(Report::ChildSaRekeyed {
                                spi,
                                old: replaces,
                                new: child.inbound_spi,
                            }));
                            if self.ues.get(&spi).is_some_and(|u| u.attached) {
                                out.push(Output::ChildSaRekeyed {
                                    ike_spi: spi,
                                    child,
                                });
                            }
                            continue;
                        }
                        Event::ChildSaDeleted { inbound_spi, .. } => {
                            out.push(Output::ChildSaRetired {
                                ike_spi: spi,
                                inbound_spi,
                            });
                            continue;
                        }
                        Event::Alive | Event::EapRequest(_) | Event::Discarded(_) => continue,
                    };
                    self.step(spi, input, now, rng, out);
                }
                EndpointOutput::Discarded { spi, reason } => {
                    out.push(Output::Report(Report::IkeDropped { spi, reason }))
                }
            }
        }
    }

    /// Step 1: a new IKE SA gets its Session-Id, downlink GRE key and attach procedure.
    fn new_ue(&mut self, spi: u64, out: &mut Vec<Output>) {
        self.next_session = self.next_session.wrapping_add(1);
        let session_id = swm::session_id(
            &self.attach_config.origin_host,
            (spi >> 32) as u32,
            self.next_session,
            None,
        );
        self.next_gre_key = self.next_gre_key.wrapping_add(1).max(1);
        let attach = Attach::new(
            Arc::clone(&self.attach_config),
            session_id.clone(),
            GreKey(self.next_gre_key),
        );
        self.by_session.insert(session_id, spi);
        self.ues.insert(
            spi,
            Ue {
                attach,
                child: None,
                attached: false,
                scheduled: None,
            },
        );
        out.push(Output::Report(Report::IkeSaCreated { spi }));
    }

    /// Feeds one input to the attach of `spi` and carries out what it asks, in order.
    /// What comes back at once (an IKE SA closing on a reject, the AAA being
    /// unreachable, a binding handed over) is fed in by a nested call: each attach
    /// output causes at most one more input, so the nesting stays shallow.
    fn step(
        &mut self,
        spi: u64,
        input: attach::Input,
        now: Instant,
        rng: &mut dyn Random,
        out: &mut Vec<Output>,
    ) {
        let Some(ue) = self.ues.get_mut(&spi) else {
            return;
        };
        let mut steps = Vec::new();
        let had_session = ue.attach.has_aaa_session();
        ue.attach.handle(input, now, &mut steps);
        match (had_session, ue.attach.has_aaa_session()) {
            (false, true) => self.aaa_sessions += 1,
            (true, false) => self.aaa_sessions -= 1,
            _ => {}
        }
        for o in steps {
            self.carry_out(spi, o, now, rng, out);
        }
        self.reschedule(spi);
    }

    /// One output of the attach of `spi`.
    fn carry_out(
        &mut self,
        spi: u64,
        o: attach::Output,
        now: Instant,
        rng: &mut dyn Random,
        out: &mut Vec<Output>,
    ) {
        let mut ike_out = Vec::new();
        match o {
            attach::Output::SendEap(eap) => {
                self.ike.send_eap(spi, eap, now, rng, &mut ike_out);
            }
            attach::Output::EapSuccess {
                eap,
                msk,
                acceptance,
            } => {
                if let Some(ue) = self.ues.get(&spi) {
                    out.push(Output::Report(Report::EapSuccessReleased {
                        nai: ue.attach.nai().to_string(),
                        apn: ue.attach.apn().to_string(),
                    }));
                }
                // Our ESP SPI, unique at the node (RFC 4303 section 2.1).
                let inbound_spi = self.ike.fresh_esp_spi(rng);
                self.ike.eap_success(
                    spi,
                    eap,
                    msk,
                    acceptance,
                    inbound_spi,
                    now,
                    rng,
                    &mut ike_out,
                );
            }
            attach::Output::Reject {
                notify,
                eap_failure,
            } => {
                self.ike
                    .reject(spi, notify, eap_failure, now, rng, &mut ike_out);
            }
            attach::Output::DeleteIke => self.ike.delete(spi, now, rng, &mut ike_out),
            attach::Output::Der(der) => {
                if !self.aaa.send(|h, e| der.to_message(h, e), out) {
                    self.step(spi, attach::Input::AaaUnavailable, now, rng, out);
                }
            }
            attach::Output::Aar(aar) => {
                if !self.aaa.send(|h, e| aar.to_message(h, e), out) {
                    self.step(spi, attach::Input::AaaUnavailable, now, rng, out);
                }
            }
            attach::Output::Str(str) => {
                if !self.aaa.send(|h, e| str.to_message(h, e), out) {
                    out.push(Output::Report(Report::StrNotSent {
                        session: str.session_id,
                    }));
                }
            }
            attach::Output::Register(request) => self.register(spi, *request, now, rng, out),
            attach::Output::Deregister(key) => self.deregister(key, now, rng, out),
            attach::Output::Attached(info) => self.session_up(spi, info, out),
            attach::Output::Finished(outcome) => {
                out.push(Output::Report(Report::AttachEnded { spi, outcome }));
                self.remove_ue(spi, now, rng, out);
            }
        }
        self.on_ike_outputs(ike_out, now, rng, out);
    }

    /// Steps 3 and 4: a DEA or AAA, to the attach of its session. An STA needs
    /// nothing: it answers the STR of a UE that is already gone (its session ended when
    /// the STR left, RFC 6733 section 8.4), so it is not reported as dropped.
    fn on_swm_answer(
        &mut self,
        answer: &Message,
        now: Instant,
        rng: &mut dyn Random,
        out: &mut Vec<Output>,
    ) {
        if answer.header.command_code == command::SESSION_TERMINATION {
            return;
        }
        let Some(spi) = answer
            .session_id()
            .and_then(|s| self.by_session.get(s))
            .copied()
        else {
            return out.push(Output::Report(Report::SwmAnswerDropped {
                reason: format!("no UE has session {:?}", answer.session_id().unwrap_or("")),
            }));
        };
        let input = match SwmMessage::parse(answer) {
            Ok(SwmMessage::Dea(dea)) => attach::Input::Dea(Box::new(dea)),
            Ok(SwmMessage::Aaa(aaa)) => attach::Input::Aaa(Box::new(aaa)),
            Ok(SwmMessage::Sta(_)) => return,
            Ok(other) => {
                return out.push(Output::Report(Report::SwmAnswerDropped {
                    reason: format!("unexpected SWm message {other:?}"),
                }))
            }
            Err(e) => {
                return out.push(Output::Report(Report::SwmAnswerDropped {
                    reason: format!("unparsable SWm answer: {e}"),
                }))
            }
        };
        self.step(spi, input, now, rng, out);
    }

    /// Step 5: the binding for the attach of `spi`. The same (NAI, APN) registered by an
    /// older IKE SA (the UE came back without deleting it) is handed over, addresses and
    /// GRE key kept, and the old SA goes with its AAA session; otherwise the list sends
    /// the PBU. The key's earlier binding, of a UE that is gone, still being removed (or
    /// still being registered, to be undone) is not disturbed, as its retransmissions
    /// would undo a new binding at the LMA: this registration waits until the list lets
    /// go of the key (`Epdg::resume_deferred`). A registration of that key already under
    /// way for a live UE fails.
    fn register(
        &mut self,
        spi: u64,
        request: RegistrationRequest,
        now: Instant,
        rng: &mut dyn Random,
        out: &mut Vec<Output>,
    ) {
        let key = request.key.clone();
        let older = self
            .by_key
            .get(&key)
            .copied()
            .filter(|old| *old != spi && self.ues.contains_key(old));
        if let (Some(old), Some(registration)) = (older, self.list.registration(&key).cloned()) {
            out.push(Output::Report(Report::BindingHandedOver {
                key: key.clone(),
                old,
                new: spi,
            }));
            self.by_key.insert(key, spi);
            let gre_key = self.ues.get(&old).map(|u| u.attach.downlink_gre_key());
            if let (Some(gre_key), Some(ue)) = (gre_key, self.ues.get_mut(&spi)) {
                ue.attach.adopt_downlink_gre_key(gre_key);
            }
            self.step(old, attach::Input::Superseded, now, rng, out);
            let registered = attach::Input::Registered(Box::new(registration));
            return self.step(spi, registered, now, rng, out);
        }
        let held = self.list.is_registering(&key) || self.list.registration(&key).is_some();
        let holder_alive = self
            .by_key
            .get(&key)
            .is_some_and(|holder| self.ues.contains_key(holder));
        if held && !holder_alive && !self.deferred.contains_key(&key) {
            self.deferred.insert(key, (spi, request));
            return;
        }
        let mut list_out = Vec::new();
        self.list
            .handle(bul::Input::Register(request), now, &mut list_out);
        if let [bul::Output::Failed {
            reason: RegistrationFailure::Duplicate,
            ..
        }] = list_out.as_slice()
        {
            let failed = attach::Input::RegistrationFailed(RegistrationFailure::Duplicate);
            return self.step(spi, failed, now, rng, out);
        }
        self.by_key.insert(key, spi);
        self.on_list_outputs(list_out, now, rng, out);
    }

    /// The attach wants its binding gone. One still waiting for its first PBA is left
    /// to it: if the LMA grants it, [`Epdg::on_list_outputs`] finds no UE for it and
    /// undoes it with a lifetime-0 PBU (RFC 5213 section 6.9.3), so the LMA keeps
    /// nothing.
    fn deregister(
        &mut self,
        key: MobileNodeKey,
        now: Instant,
        rng: &mut dyn Random,
        out: &mut Vec<Output>,
    ) {
        // A deferred registration's key: the list entry is the earlier binding's.
        if self.deferred.remove(&key).is_some() || self.list.is_registering(&key) {
            return;
        }
        let mut list_out = Vec::new();
        self.list
            .handle(bul::Input::Deregister(key), now, &mut list_out);
        self.on_list_outputs(list_out, now, rng, out);
    }

    /// Step 6 and the binding's life: PBUs go out, results go to the UE holding the key.
    fn on_list_outputs(
        &mut self,
        list_out: Vec<bul::Output>,
        now: Instant,
        rng: &mut dyn Random,
        out: &mut Vec<Output>,
    ) {
        for o in list_out {
            match o {
                bul::Output::Send { to, pbu } => {
                    let key = MobileNodeKey::new(&pbu.mn_id, pbu.apn.as_deref());
                    if self.list.is_registering(&key) {
                        self.registering.insert(key, (to, pbu.clone()));
                    }
                    self.send_pbu(to, &pbu, out);
                }
                bul::Output::Registered { key, registration } => {
                    self.registering.remove(&key);
                    match self.by_key.get(&key) {
                        Some(&spi) => {
                            let registered = attach::Input::Registered(Box::new(registration));
                            self.step(spi, registered, now, rng, out);
                        }
                        None => {
                            // The UE left while the PBU was out: undo the binding.
                            let mut undo = Vec::new();
                            self.list
                                .handle(bul::Input::Deregister(key), now, &mut undo);
                            self.on_list_outputs(undo, now, rng, out);
                        }
                    }
                }
                bul::Output::Failed { key, reason } => {
                    self.release_failed(&key, &reason, now, out);
                    if let Some(&spi) = self.by_key.get(&key) {
                        let failed = attach::Input::RegistrationFailed(reason);
                        self.step(spi, failed, now, rng, out);
                    }
                    self.resume_deferred(key, now, rng, out);
                }
                bul::Output::Lost { key, reason } => {
                    if let Some(&spi) = self.by_key.get(&key) {
                        self.step(spi, attach::Input::BindingLost(reason), now, rng, out);
                    }
                    self.resume_deferred(key, now, rng, out);
                }
                bul::Output::Refreshed { key, .. } => {
                    out.push(Output::Report(Report::BindingRefreshed { key }))
                }
                bul::Output::Deregistered { key, acknowledged } => {
                    self.registering.remove(&key);
                    out.push(Output::Report(Report::BindingRemoved {
                        key: key.clone(),
                        acknowledged,
                        bindings: self.list.len(),
                    }));
                    self.resume_deferred(key, now, rng, out);
                }
            }
        }
    }

    /// The list let go of `key`: a registration waiting for that goes ahead, if its UE
    /// is still there.
    fn resume_deferred(
        &mut self,
        key: MobileNodeKey,
        now: Instant,
        rng: &mut dyn Random,
        out: &mut Vec<Output>,
    ) {
        if self.list.is_registering(&key) || self.list.registration(&key).is_some() {
            return;
        }
        if let Some((spi, request)) = self.deferred.remove(&key) {
            if self.ues.contains_key(&spi) {
                self.register(spi, request, now, rng, out);
            }
        }
    }

    /// A first registration failed where the LMA may hold the binding all the same: no
    /// PBA after every retransmission (the PBUs may have arrived and the answers been
    /// lost), or an accepting PBA that did not give what was asked. One PBU with
    /// lifetime 0 (RFC 5213 section 6.9.1.4), not retransmitted, lets such an LMA
    /// release the binding and its addresses at once rather than at the end of the
    /// lifetime; the visited gateway does the same toward a silent home gateway. It
    /// repeats the last PBU of the registration with its sequence number, which the list
    /// does not hand out again before its counter wraps (so the answer matches no
    /// exchange), and a fresh Timestamp, by which the LMA orders it (RFC 5213 section
    /// 5.5).
    fn release_failed(
        &mut self,
        key: &MobileNodeKey,
        reason: &RegistrationFailure,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let Some((to, last)) = self.registering.remove(key) else {
            return;
        };
        let maybe_held = match reason {
            RegistrationFailure::Timeout(_)
            | RegistrationFailure::Incomplete(_)
            | RegistrationFailure::Ipv4Refused(_)
            // Best effort: should the gateway come back with the binding, it goes.
            | RegistrationFailure::Unreachable { .. } => true,
            RegistrationFailure::Rejected(_)
            | RegistrationFailure::Duplicate
            | RegistrationFailure::Revoked { .. } => false,
        };
        if !maybe_held {
            return;
        }
        let release = ProxyBindingUpdate {
            lifetime: Lifetime(0),
            timestamp: last
                .timestamp
                .map(|_| Timestamp::from_system_time(self.clock.at(now))),
            ..last
        };
        self.send_pbu(to, &release, out);
    }

    /// A PBU: over IPv4 in UDP with the MH checksum zero (RFC 5844 section 4.2.2.1), over
    /// IPv6 with it zero for the raw socket to fill (RFC 6275 section 6.1.1).
    fn send_pbu(&mut self, to: SocketAddr, pbu: &ProxyBindingUpdate, out: &mut Vec<Output>) {
        let message = MobilityHeaderRepr {
            payload_proto: IPPROTO_NONE,
            message: MobilityMessage::BindingUpdate(pbu.to_binding_update()),
        };
        let checksum = match to.ip() {
            IpAddr::V4(_) => ChecksumContext::Ipv4Udp,
            IpAddr::V6(_) => ChecksumContext::Skip,
        };
        out.push(Output::Report(Report::PbuSent {
            to,
            sequence: pbu.sequence,
            lifetime: pbu.lifetime,
        }));
        out.push(Output::Mobility {
            to,
            bytes: message.to_bytes(checksum),
        });
    }

    /// Step 6: a Mobility Header message from an LMA; a PBA goes to the list.
    fn on_mobility(
        &mut self,
        from: SocketAddr,
        bytes: &[u8],
        now: Instant,
        rng: &mut dyn Random,
        out: &mut Vec<Output>,
    ) {
        let checksum = match from.ip() {
            IpAddr::V4(_) => ChecksumContext::Ipv4Udp,
            // The raw socket checked it (IPV6_CHECKSUM).
            IpAddr::V6(_) => ChecksumContext::Skip,
        };
        let dropped = |reason: String, out: &mut Vec<Output>| {
            out.push(Output::Report(Report::MobilityDropped { from, reason }))
        };
        let ack = match MobilityHeaderRepr::parse(bytes, checksum).map(|m| m.message) {
            Ok(MobilityMessage::BindingAck(ba)) => match ProxyBindingAck::try_from(&ba) {
                Ok(ack) => ack,
                Err(e) => return dropped(format!("bad PBA: {e}"), out),
            },
            Ok(other) => {
                return out.push(Output::Report(Report::MobilityIgnored {
                    from,
                    message: format!("{other:?}"),
                }))
            }
            Err(e) => return dropped(format!("unparsable Mobility Header: {e}"), out),
        };
        out.push(Output::Report(Report::PbaReceived {
            from,
            sequence: ack.sequence,
            status: ack.status,
        }));
        let mut list_out = Vec::new();
        self.list
            .handle(bul::Input::Ack { from, ack }, now, &mut list_out);
        self.on_list_outputs(list_out, now, rng, out);
    }

    /// Step 7: the attached UE's data-plane session.
    fn session_up(&mut self, spi: u64, info: Box<AttachInfo>, out: &mut Vec<Output>) {
        let Some(ue) = self.ues.get_mut(&spi) else {
            return;
        };
        ue.attached = true;
        self.attached += 1;
        match (ue.child.take(), self.ike.natt_peer(spi)) {
            (Some(child), Some(ue_address)) => out.push(Output::SessionUp {
                ike_spi: spi,
                child,
                session: SessionInfo {
                    ipv4: info.ipv4.map(|n| n.addr()),
                    ipv6_prefix: info.ipv6_prefix,
                    lma: info.lma.ip(),
                    uplink_key: info.uplink_gre_key.map(|k| k.0),
                    downlink_key: info.downlink_gre_key.0,
                    ue: ue_address,
                },
            }),
            _ => out.push(Output::Report(Report::NoChildSa { spi })),
        }
        out.push(Output::Report(Report::Attached {
            spi,
            info,
            attached: self.attached,
        }));
    }

    /// Drops the UE of `spi`: its data-plane session, Session-Id, binding key, and its
    /// IKE SA if the attach ended without closing it.
    fn remove_ue(&mut self, spi: u64, now: Instant, rng: &mut dyn Random, out: &mut Vec<Output>) {
        let Some(ue) = self.ues.remove(&spi) else {
            return;
        };
        if ue.attached {
            self.attached -= 1;
            out.push(Output::SessionDown { ike_spi: spi });
        }
        if ue.attach.has_aaa_session() {
            self.aaa_sessions -= 1;
        }
        self.by_session.remove(ue.attach.session_id());
        self.deferred.retain(|_, (waiting, _)| *waiting != spi);
        let key = ue.attach.key();
        if self.by_key.get(&key) == Some(&spi) {
            self.by_key.remove(&key);
        }
        if self.ike.sa(spi).is_some() {
            let mut ike_out = Vec::new();
            self.ike.delete(spi, now, rng, &mut ike_out);
            self.on_ike_outputs(ike_out, now, rng, out);
        }
        out.push(Output::Report(Report::UeRemoved {
            spi,
            ike_sas: self.ues.len(),
            aaa_sessions: self.aaa_sessions,
            bindings: self.list.len(),
        }));
    }

    fn reschedule(&mut self, spi: u64) {
        let Some(ue) = self.ues.get_mut(&spi) else {
            return;
        };
        let deadline = ue.attach.poll_timeout();
        if deadline != ue.scheduled {
            ue.scheduled = deadline;
            if let Some(at) = deadline {
                self.deadlines.push(at, spi);
            }
        }
    }

    /// Drops stale deadlines from the front so [`Epdg::poll_timeout`] is exact, and all
    /// of them when they outnumber the live ones (amortised O(1)).
    fn prune_deadlines(&mut self) {
        let ues = &self.ues;
        let stale = |at: Instant, spi: u64| ues.get(&spi).is_none_or(|u| u.scheduled != Some(at));
        self.deadlines.prune_front(stale);
        if self.deadlines.len() > 2 * self.ues.len() + 1024 {
            self.deadlines.retain(|at, spi| !stale(at, spi));
        }
    }

    /// Deletes every IKE SA: each attach de-registers its binding and ends its AAA
    /// session.
    fn start_shutdown(&mut self, now: Instant, rng: &mut dyn Random, out: &mut Vec<Output>) {
        if self.shutdown.is_some() {
            return;
        }
        out.push(Output::Report(Report::ShuttingDown {
            ike_sas: self.ues.len(),
        }));
        self.shutdown = Some(Shutdown {
            deadline: now + self.shutdown_grace,
            stopped: false,
        });
        let spis: Vec<u64> = self.ike.spis().collect();
        for spi in spis {
            let mut ike_out = Vec::new();
            self.ike.delete(spi, now, rng, &mut ike_out);
            self.on_ike_outputs(ike_out, now, rng, out);
        }
    }

    /// Once every binding is gone, or the grace time is over: DPR, and stopped.
    fn check_stopped(&mut self, now: Instant, out: &mut Vec<Output>) {
        let Some(shutdown) = self.shutdown.as_mut() else {
            return;
        };
        if shutdown.stopped || !(self.list.is_empty() || now >= shutdown.deadline) {
            return;
        }
        shutdown.stopped = true;
        self.aaa.disconnect(now, out);
        out.push(Output::Report(Report::Stopped {
            bindings: self.list.len(),
        }));
    }
}
