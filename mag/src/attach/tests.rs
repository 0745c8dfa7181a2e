//! The attach procedure with virtual time: the gate (EAP-Success only after the PBA) and
//! every failure's notify and cleanup.

use super::*;
use pmip_common::binding_update_list::RegistrationFailure;
use pmip_common::diameter::swm::ApnConfiguration;
use pmip_common::ike::crypto::EspSuite;
use pmip_common::mh::{BindingAckStatus, Lifetime};

const NAI: &str = "0234150999999999@nai.epc.mnc015.mcc234.3gppnetwork.org";
const APN: &str = "internet";
const SESSION: &str = "epdg.test;1;1";

fn config() -> Arc<AttachConfig> {
    Arc::new(AttachConfig {
        dns: vec!["10.45.0.1".parse().unwrap()],
        pcscf: vec!["2001:db8:46::2".parse().unwrap()],
        ..AttachConfig::default()
    })
}

fn auth_request() -> Box<AuthRequest> {
    Box::new(AuthRequest {
        idi: Identification::Rfc822Addr(NAI.into()),
        idr: Some(Identification::Fqdn(APN.into())),
        cp_request: None,
        eap_only: true,
        initial_contact: true,
        esp: EspSuite::defaults()[0],
        tsi: vec![TrafficSelector::any_ipv4()],
        tsr: vec![TrafficSelector::any_ipv4()],
    })
}

fn dea(result: AnswerResult, eap: Option<Vec<u8>>) -> Input {
    let mut a = DiameterEapAnswer::new(
        &DiameterEapRequest {
            session_id: SESSION.into(),
            origin_host: "epdg".into(),
            origin_realm: "r".into(),
            destination_realm: "r".into(),
            destination_host: None,
            auth_request_type: AuthRequestType::AuthorizeAuthenticate,
            eap_payload: vec![],
            user_name: None,
            rat_type: None,
            service_selection: None,
            mip6_feature_vector: None,
            visited_network_identifier: None,
            route_record: vec![],
            proxy_info: vec![],
            other: vec![],
        },
        result,
        "aaa",
        "r",
    );
    a.eap_payload = eap;
    if result.is_success() && result.code() != result::DIAMETER_MULTI_ROUND_AUTH {
        a.eap_master_session_key = Some(vec![0x4d; 64]);
    }
    Input::Dea(Box::new(a))
}

fn aaa_answer(result: AnswerResult, gateway: Option<IpAddr>) -> Input {
    let mut a = AaAnswer::new(
        &AaRequest {
            session_id: SESSION.into(),
            origin_host: "epdg".into(),
            origin_realm: "r".into(),
            destination_realm: "r".into(),
            destination_host: None,
            auth_request_type: AuthRequestType::AuthorizeOnly,
            user_name: None,
            service_selection: None,
            visited_network_identifier: None,
            mip6_agent_info: vec![],
            route_record: vec![],
            proxy_info: vec![],
            other: vec![],
        },
        result,
        "aaa",
        "r",
    );
    if let Some(g) = gateway {
        a.mip6_agent_info.push(Mip6AgentInfo::address(g));
    }
    Input::Aaa(Box::new(a))
}

fn registration() -> Box<Registration> {
    Box::new(Registration {
        lma: "127.0.0.3:5436".parse().unwrap(),
        home_network_prefix: Some("2001:db8:45:7::/64".parse().unwrap()),
        ipv4_home_address: Some("10.45.0.7/32".parse().unwrap()),
        ipv4_default_router: None,
        uplink_gre_key: Some(GreKey(77)),
        lifetime: Lifetime::from_secs(3600),
        vendor: vec![],
    })
}

/// Drives an attach up to the PBU: DER(identity), challenge, DER(response), DEA
/// success, AAR, AAA with a gateway.
fn to_registering(a: &mut Attach, t0: Instant) -> Vec<Output> {
    let mut out = Vec::new();
    a.handle(Input::AuthRequested(auth_request()), t0, &mut out);
    let Some(Output::Der(der)) = out.first() else {
        panic!("{out:?}")
    };
    assert_eq!(der.eap_payload[0], 2, "EAP-Response/Identity");
    assert_eq!(der.eap_payload[4], 1);
    assert_eq!(&der.eap_payload[5..], NAI.as_bytes());
    assert_eq!(der.service_selection.as_deref(), Some(APN));
    out.clear();
    let t = t0 + Duration::from_millis(10);
    a.handle(
        dea(
            AnswerResult::ResultCode(result::DIAMETER_MULTI_ROUND_AUTH),
            Some(vec![1, 7, 0, 8, 23, 1, 0, 0]),
        ),
        t,
        &mut out,
    );
    assert_eq!(out, vec![Output::SendEap(vec![1, 7, 0, 8, 23, 1, 0, 0])]);
    out.clear();
    a.handle(Input::EapFromUe(vec![2, 7, 0, 8, 23, 1, 0, 0]), t, &mut out);
    assert!(matches!(&out[..], [Output::Der(_)]), "{out:?}");
    out.clear();
    a.handle(
        dea(
            AnswerResult::SUCCESS,
            Some(EapRepr::success_bytes(7).to_vec()),
        ),
        t,
        &mut out,
    );
    assert!(matches!(&out[..], [Output::Aar(_)]), "{out:?}");
    out.clear();
    a.handle(
        aaa_answer(AnswerResult::SUCCESS, Some("127.0.0.3".parse().unwrap())),
        t,
        &mut out,
    );
    let [Output::Register(r)] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!(r.lma, "127.0.0.3:5436".parse().unwrap());
    assert_eq!(r.key, MobileNodeKey::new(NAI, Some(APN)));
    assert!(r.request_home_network_prefix && r.request_ipv4_home_address);
    assert_eq!(r.downlink_gre_key, Some(GreKey(1001)));
    std::mem::take(&mut out)
}

fn attach() -> Attach {
    Attach::new(config(), SESSION.into(), GreKey(1001))
}

fn has_str(out: &[Output]) -> bool {
    out.iter().any(|o| matches!(o, Output::Str(_)))
}

#[test]
fn eap_success_only_after_the_pba() {
    let t0 = Instant::now();
    let mut a = attach();
    to_registering(&mut a, t0);
    // Nothing releases the EAP-Success before the PBA: not a timeout, not a retransmitted
    // EAP response, not an hour of waiting.
    let mut out = Vec::new();
    a.handle(Input::Timeout, t0 + Duration::from_secs(3600), &mut out);
    a.handle(Input::EapFromUe(vec![2, 7, 0, 4]), t0, &mut out);
    assert!(out.is_empty(), "{out:?}");
    a.handle(Input::Registered(registration()), t0, &mut out);
    let [Output::EapSuccess {
        eap,
        msk,
        acceptance,
    }] = &out[..]
    else {
        panic!("{out:?}")
    };
    assert_eq!(eap, &EapRepr::success_bytes(7).to_vec());
    assert_eq!(msk.len(), 64);
    assert!(acceptance
        .cp_reply
        .contains(&ConfigAttribute::InternalIp4Address(Some(
            "10.45.0.7".parse().unwrap()
        ))));
    assert!(acceptance
        .cp_reply
        .contains(&ConfigAttribute::InternalIp6Address(Some((
            "2001:db8:45:7::".parse().unwrap(),
            64
        )))));
    assert!(acceptance
        .cp_reply
        .contains(&ConfigAttribute::InternalIp4Dns(Some(
            "10.45.0.1".parse().unwrap()
        ))));
    assert!(acceptance
        .cp_reply
        .contains(&ConfigAttribute::PCscfIp6Address(Some(
            "2001:db8:46::2".parse().unwrap()
        ))));
    out.clear();
    a.handle(Input::IkeEstablished, t0, &mut out);
    assert!(matches!(&out[..], [Output::Attached(_)]), "{out:?}");
    assert_eq!(a.info().unwrap().uplink_gre_key, Some(GreKey(77)));

    // The UE deletes its IKE SA: de-registration and STR.
    out.clear();
    a.handle(Input::IkeClosed(CloseReason::DeletedByPeer), t0, &mut out);
    assert_eq!(
        out[0],
        Output::Deregister(MobileNodeKey::new(NAI, Some(APN)))
    );
    assert!(matches!(&out[1], Output::Str(s) if s.termination_cause == TerminationCause::Logout));
    assert!(matches!(&out[2], Output::Finished(Outcome::Detached(_))));
    assert!(a.is_done());
}

#[test]
fn the_dea_gateway_skips_the_aar() {
    let t0 = Instant::now();
    let mut a = attach();
    let mut out = Vec::new();
    a.handle(Input::AuthRequested(auth_request()), t0, &mut out);
    out.clear();
    let Input::Dea(mut d) = dea(
        AnswerResult::SUCCESS,
        Some(EapRepr::success_bytes(1).to_vec()),
    ) else {
        unreachable!()
    };
    d.apn_configuration = Some(ApnConfiguration {
        context_identifier: 1,
        pdn_type: pmip_common::diameter::swm::PdnType::Ipv4v6,
        service_selection: APN.into(),
        mip6_agent_info: Some(Mip6AgentInfo::address("127.0.0.9".parse().unwrap())),
        visited_network_identifier: None,
        other: vec![],
    });
    a.handle(Input::Dea(d), t0, &mut out);
    assert!(matches!(&out[..], [Output::Register(r)] if r.lma.ip().to_string() == "127.0.0.9"));
}

#[test]
fn pba_reject_gives_a_notify_and_an_str() {
    let t0 = Instant::now();
    let mut a = attach();
    to_registering(&mut a, t0);
    let mut out = Vec::new();
    a.handle(
        Input::RegistrationFailed(RegistrationFailure::Rejected(BindingAckStatus::from(130u8))),
        t0,
        &mut out,
    );
    let Output::Reject {
        notify,
        eap_failure,
    } = &out[0]
    else {
        panic!("{out:?}")
    };
    assert_eq!(*notify, NotifyType::PdnConnectionRejection);
    assert_eq!(eap_failure.as_deref().map(|e| e[0]), Some(4));
    assert!(has_str(&out));
    // The list dropped the entry itself: no de-registration for a binding never made.
    assert!(!out.iter().any(|o| matches!(o, Output::Deregister(_))));
    assert!(!out.iter().any(|o| matches!(o, Output::EapSuccess { .. })));
    assert!(matches!(
        out.last(),
        Some(Output::Finished(Outcome::Rejected { .. }))
    ));
}

#[test]
fn pba_timeout_gives_network_failure() {
    let t0 = Instant::now();
    let mut a = attach();
    to_registering(&mut a, t0);
    let mut out = Vec::new();
    a.handle(
        Input::RegistrationFailed(RegistrationFailure::Timeout(4)),
        t0 + Duration::from_secs(15),
        &mut out,
    );
    assert!(matches!(
        &out[0],
        Output::Reject {
            notify: NotifyType::NetworkFailure,
            ..
        }
    ));
    assert!(has_str(&out));
    assert!(a.is_done());
}

#[test]
fn aaa_reject_passes_the_eap_failure() {
    let t0 = Instant::now();
    let mut a = attach();
    let mut out = Vec::new();
    a.handle(Input::AuthRequested(auth_request()), t0, &mut out);
    out.clear();
    a.handle(
        dea(
            AnswerResult::ResultCode(result::DIAMETER_AUTHENTICATION_REJECTED),
            Some(EapRepr::failure_bytes(3).to_vec()),
        ),
        t0,
        &mut out,
    );
    assert_eq!(
        out[0],
        Output::Reject {
            notify: NotifyType::AuthenticationFailed,
            eap_failure: Some(EapRepr::failure_bytes(3).to_vec())
        }
    );
    assert!(has_str(&out));
    assert!(!out.iter().any(|o| matches!(o, Output::Register(_))));
}

#[test]
fn unknown_apn_at_the_aar() {
    let t0 = Instant::now();
    let mut a = attach();
    let mut out = Vec::new();
    a.handle(Input::AuthRequested(auth_request()), t0, &mut out);
    a.handle(
        dea(
            AnswerResult::SUCCESS,
            Some(EapRepr::success_bytes(1).to_vec()),
        ),
        t0,
        &mut out,
    );
    out.clear();
    a.handle(
        aaa_answer(
            AnswerResult::tgpp(result::DIAMETER_ERROR_USER_NO_APN_SUBSCRIPTION),
            None,
        ),
        t0,
        &mut out,
    );
    assert!(matches!(
        &out[0],
        Output::Reject {
            notify: NotifyType::NoApnSubscription,
            ..
        }
    ));
    assert!(has_str(&out));
}

#[test]
fn silent_aaa_times_out_exactly() {
    let t0 = Instant::now();
    let mut a = attach();
    let mut out = Vec::new();
    a.handle(Input::AuthRequested(auth_request()), t0, &mut out);
    let deadline = a.poll_timeout().unwrap();
    assert_eq!(deadline, t0 + Duration::from_secs(5));
    out.clear();
    a.handle(
        Input::Timeout,
        deadline - Duration::from_millis(1),
        &mut out,
    );
    assert!(out.is_empty());
    a.handle(Input::Timeout, deadline, &mut out);
    assert!(matches!(
        &out[0],
        Output::Reject {
            notify: NotifyType::NetworkFailure,
            ..
        }
    ));
    assert!(has_str(&out));
}

#[test]
fn ike_failure_after_the_pba_deregisters() {
    let t0 = Instant::now();
    let mut a = attach();
    to_registering(&mut a, t0);
    let mut out = Vec::new();
    a.handle(Input::Registered(registration()), t0, &mut out);
    out.clear();
    // The UE's AUTH did not verify: the IKE SA rejected it.
    a.handle(
        Input::IkeClosed(CloseReason::NotifySent(NotifyType::AuthenticationFailed)),
        t0,
        &mut out,
    );
    assert!(matches!(&out[0], Output::Deregister(_)));
    assert!(has_str(&out));
}

#[test]
fn answers_of_other_sessions_are_ignored() {
    let t0 = Instant::now();
    let mut a = Attach::new(config(), "other;1;1".into(), GreKey(1));
    let mut out = Vec::new();
    a.handle(Input::AuthRequested(auth_request()), t0, &mut out);
    out.clear();
    a.handle(dea(AnswerResult::SUCCESS, None), t0, &mut out);
    assert!(out.is_empty());
}

#[test]
fn roaming_registers_at_the_visited_gateway_naming_the_home_one() {
    let t0 = Instant::now();
    let mut a = attach();
    let mut out = Vec::new();
    a.handle(Input::AuthRequested(auth_request()), t0, &mut out);
    a.handle(
        dea(
            AnswerResult::SUCCESS,
            Some(EapRepr::success_bytes(1).to_vec()),
        ),
        t0,
        &mut out,
    );
    out.clear();
    let Input::Aaa(mut answer) =
        aaa_answer(AnswerResult::SUCCESS, Some("192.0.2.1".parse().unwrap()))
    else {
        unreachable!()
    };
    answer
        .mip6_agent_info
        .push(Mip6AgentInfo::address("198.51.100.7".parse().unwrap()));
    a.handle(Input::Aaa(answer), t0, &mut out);
    let [Output::Register(r)] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!(r.lma, "198.51.100.7:5436".parse().unwrap());
    assert_eq!(
        r.vendor,
        vec![VendorSpecific::ThreeGpp(ThreeGppOption::PdnGwIpAddress(
            "192.0.2.1".parse().unwrap()
        ))]
    );
}

#[test]
fn a_superseded_attach_keeps_the_binding() {
    let t0 = Instant::now();
    let mut a = attach();
    to_registering(&mut a, t0);
    let mut out = Vec::new();
    a.handle(Input::Registered(registration()), t0, &mut out);
    a.handle(Input::IkeEstablished, t0, &mut out);
    out.clear();
    a.handle(Input::Superseded, t0, &mut out);
    assert_eq!(out[0], Output::DeleteIke);
    assert!(
        matches!(&out[1], Output::Str(s) if s.termination_cause == TerminationCause::UserMoved)
    );
    assert!(matches!(&out[2], Output::Finished(Outcome::Detached(_))));
    assert!(!out.iter().any(|o| matches!(o, Output::Deregister(_))));
    // The IKE SA's close that follows changes nothing.
    out.clear();
    a.handle(Input::IkeClosed(CloseReason::Deleted), t0, &mut out);
    assert!(out.is_empty());
}

#[test]
fn diameter_failures_map_to_ts_24_302_notifies() {
    let cases = [
        (
            AnswerResult::tgpp(result::DIAMETER_ERROR_USER_UNKNOWN),
            NotifyType::UserUnknown,
        ),
        (
            AnswerResult::tgpp(result::DIAMETER_ERROR_USER_NO_APN_SUBSCRIPTION),
            NotifyType::NoApnSubscription,
        ),
        (
            AnswerResult::tgpp(result::DIAMETER_ERROR_ROAMING_NOT_ALLOWED),
            NotifyType::PlmnNotAllowed,
        ),
        (
            AnswerResult::tgpp(result::DIAMETER_ERROR_USER_NO_NON_3GPP_SUBSCRIPTION),
            NotifyType::Non3gppAccessToEpcNotAllowed,
        ),
        (
            AnswerResult::ResultCode(result::DIAMETER_AUTHORIZATION_REJECTED),
            NotifyType::AuthorizationRejected,
        ),
        (
            AnswerResult::ResultCode(result::DIAMETER_UNABLE_TO_DELIVER),
            NotifyType::NetworkFailure,
        ),
        (
            AnswerResult::ResultCode(result::DIAMETER_AUTHENTICATION_REJECTED),
            NotifyType::AuthenticationFailed,
        ),
    ];
    for (answer, notify) in cases {
        assert_eq!(notify_for(&answer), notify, "{answer:?}");
    }
}

/// The attach together with the real binding update list, in virtual time: no PBA ever
/// comes, the list retransmits the PBU (1 s, 2 s, 4 s) and gives up, and only then does
/// the UE get its notify.
#[test]
fn pba_timeout_through_the_binding_update_list_in_virtual_time() {
    use pmip_common::binding_update_list::{self as bul, BindingUpdateList, MagConfig};
    use std::time::SystemTime;
    let t0 = Instant::now();
    let mut a = attach();
    let mut list = BindingUpdateList::new(MagConfig::default(), t0, SystemTime::now());
    let mut out = to_registering(&mut a, t0);
    let Some(Output::Register(request)) = out.pop() else {
        panic!()
    };
    let mut lout = Vec::new();
    list.handle(bul::Input::Register(*request), t0, &mut lout);
    let mut pbus = lout
        .iter()
        .filter(|o| matches!(o, bul::Output::Send { .. }))
        .count();
    let (failure, now) = loop {
        let now = list
            .poll_timeout()
            .expect("a retransmission or the end is due");
        lout.clear();
        list.handle(bul::Input::Timeout, now, &mut lout);
        pbus += lout
            .iter()
            .filter(|o| matches!(o, bul::Output::Send { .. }))
            .count();
        if let Some(bul::Output::Failed { reason, .. }) = lout
            .iter()
            .find(|o| matches!(o, bul::Output::Failed { .. }))
            .cloned()
        {
            break (reason, now);
        }
        // Nothing reaches the UE while the PBU is out.
        let mut aout = Vec::new();
        a.handle(Input::Timeout, now, &mut aout);
        assert!(aout.is_empty(), "{aout:?}");
    };
    assert_eq!(pbus, 4, "the PBU and three retransmissions");
    assert_eq!(now - t0, Duration::from_secs(1 + 2 + 4 + 8));
    out.clear();
    a.handle(Input::RegistrationFailed(failure), now, &mut out);
    assert!(matches!(
        &out[0],
        Output::Reject {
            notify: NotifyType::NetworkFailure,
            ..
        }
    ));
    assert!(has_str(&out));
    assert!(list.is_empty());
}
