//! The crypto bound of an attach: the cryptography the network side (ePDG responder and
//! AAA) performs for one S2b attach with the default suite (ECP-256 Diffie-Hellman,
//! PRF-HMAC-SHA2-256, AES-GCM-16-256 IKE SA, AES-GCM ESP, EAP-only authentication per
//! RFC 5998), each part on its own and all together. The reciprocal of the whole is the
//! attaches per second one core could do if crypto were all; `ue-emu load` reports the
//! attach storm as a ratio to it (BENCHMARKS.md).
//!
//! Per attach the responder: draws its ECP-256 key and computes g^ir; derives SKEYSEED
//! and the seven SK_* keys with prf+, and the CHILD_SA KEYMAT; computes its AUTH from the
//! MSK and checks the UE's (two signed-octets MACs, two AUTH PRFs); opens the UE's four
//! IKE_AUTH requests and seals its four responses (AES-GCM). The AAA builds one AKA
//! vector (Milenage f1..f5), derives MK and the session keys (SHA-1, FIPS 186-2 PRF),
//! MACs the Challenge and checks the response's AT_MAC (HMAC-SHA1-128).
//!
//! `cargo bench -p pmip-common --bench attach_crypto` (add `-- --test` for a smoke run).
//! After criterion's figures it prints one line,
//! `crypto bound: N attaches/s/core (T us per attach)`, timed by hand over about a second.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use pmip_common::eap::{
    fill_mac, verify_mac, AkaRepr, Attribute, EapRepr, Milenage, Res, SessionKeys, Sqn, Subtype,
    TypeData, MAC_LEN,
};
use pmip_common::ike::keys::{
    child_sa_keymat, shared_key_auth, signed_octets, verify_shared_key_auth,
};
use pmip_common::ike::{DhGroup, DhPrivate, Encr, IkeSaKeys, IkeSuite};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

const K: [u8; 16] = [
    0x46, 0x5b, 0x5c, 0xe8, 0xb1, 0x99, 0xb4, 0x9f, 0xaa, 0x5f, 0x0a, 0x2e, 0xe2, 0x38, 0xa6, 0xbc,
];
const OPC: [u8; 16] = [
    0xcd, 0x63, 0xcb, 0x71, 0x95, 0x4a, 0x9f, 0x4e, 0x48, 0xa5, 0x99, 0x4e, 0x37, 0xa0, 0x2b, 0xaf,
];
const NAI: &[u8] = b"0001010000000001@nai.epc.mnc001.mcc001.3gppnetwork.org";

/// Wire sizes of one attach's encrypted IKE_AUTH messages (plaintext of the SK payload):
/// the UE's four requests, the ePDG's four responses, as our ePDG exchanges them.
const REQUESTS: [usize; 4] = [330, 72, 72, 40];
const RESPONSES: [usize; 4] = [24, 96, 12, 260];

struct Inputs {
    peer_public: Vec<u8>,
    ni: Vec<u8>,
    nr: Vec<u8>,
    init_request: Vec<u8>,
    init_response: Vec<u8>,
    challenge: Vec<u8>,
    response: Vec<u8>,
}

fn inputs(rng: &mut StdRng) -> Inputs {
    let peer = DhPrivate::generate(DhGroup::Ecp256, rng).expect("P-256 key");
    let mut bytes = |n: usize| {
        let mut v = vec![0u8; n];
        rng.fill_bytes(&mut v);
        v
    };
    // An EAP-Request/AKA-Challenge with AT_RAND, AT_AUTN, AT_MAC (zeroed MAC value),
    // and an EAP-Response/AKA-Challenge with AT_RES and AT_MAC.
    let challenge = EapRepr::Request {
        identifier: 1,
        data: TypeData::Aka(AkaRepr::new(
            Subtype::Challenge,
            vec![
                Attribute::Rand([0x11; 16]),
                Attribute::Autn([0x22; 16]),
                Attribute::Mac([0; MAC_LEN]),
            ],
        )),
    }
    .to_bytes()
    .expect("EAP-Request/AKA-Challenge");
    let response = EapRepr::Response {
        identifier: 1,
        data: TypeData::Aka(AkaRepr::new(
            Subtype::Challenge,
            vec![
                Attribute::Res(Res::from_octets(&[0x33; 8])),
                Attribute::Mac([0; MAC_LEN]),
            ],
        )),
    }
    .to_bytes()
    .expect("EAP-Response/AKA-Challenge");
    assert_eq!((challenge.len(), response.len()), (68, 40));
    Inputs {
        peer_public: peer.public_value().to_vec(),
        ni: bytes(32),
        nr: bytes(32),
        init_request: bytes(336),
        init_response: bytes(312),
        challenge,
        response,
    }
}

fn dh(rng: &mut StdRng, i: &Inputs) -> Vec<u8> {
    let ours = DhPrivate::generate(DhGroup::Ecp256, rng).expect("P-256 key");
    ours.shared_secret(&i.peer_public)
        .expect("valid peer point")
}

fn ike_keys(g_ir: &[u8], i: &Inputs) -> IkeSaKeys {
    let suite = IkeSuite::DEFAULT;
    let keys = IkeSaKeys::from_ike_sa_init(&suite, g_ir, &i.ni, &i.nr, 0x1122, 0x3344)
        .expect("prf+ length");
    // CHILD_SA KEYMAT for AES-GCM-16-256 ESP: 2 x (32 + 4 salt).
    black_box(child_sa_keymat(suite.prf, &keys.sk_d, None, &i.ni, &i.nr, 72).expect("keymat"));
    keys
}

fn auth(keys: &IkeSaKeys, msk: &[u8], i: &Inputs) -> bool {
    let prf = keys.suite().prf;
    let theirs = signed_octets(prf, &i.init_request, &i.nr, &keys.sk_pi, NAI);
    let ours = signed_octets(prf, &i.init_response, &i.ni, &keys.sk_pr, b"epdg");
    let our_auth = shared_key_auth(prf, msk, &ours);
    let their_auth = shared_key_auth(prf, msk, &theirs);
    black_box(our_auth);
    verify_shared_key_auth(prf, msk, &theirs, &their_auth)
}

fn sk(keys: &IkeSaKeys) -> usize {
    let mut total = 0;
    for (n, len) in REQUESTS.iter().enumerate() {
        // Sealed with SK_ei by the UE (done here to have valid input), opened with it by us.
        let mut data = vec![0x5a; *len];
        let nonce = nonce(&keys.sk_ei, n as u64);
        Encr::gcm_seal(&keys.sk_ei[..32], nonce, &[0; 32], &mut data).expect("seal");
        total += Encr::gcm_open(&keys.sk_ei[..32], nonce, &[0; 32], &mut data).expect("open");
    }
    for (n, len) in RESPONSES.iter().enumerate() {
        let mut data = vec![0xa5; *len];
        Encr::gcm_seal(
            &keys.sk_er[..32],
            nonce(&keys.sk_er, n as u64),
            &[0; 32],
            &mut data,
        )
        .expect("seal");
        total += data.len();
    }
    total
}

fn nonce(key: &[u8], counter: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(&key[32..36]);
    n[4..].copy_from_slice(&counter.to_be_bytes());
    n
}

fn aka(rng: &mut StdRng, i: &Inputs) -> SessionKeys {
    let milenage = Milenage::new(&K, &OPC);
    let mut rand = [0u8; 16];
    rng.fill_bytes(&mut rand);
    let v = milenage.vector(&rand, Sqn::new(32).expect("sqn"), &[0x80, 0]);
    let keys = SessionKeys::derive(NAI, &v.ik, &v.ck);
    let mut challenge = i.challenge.clone();
    fill_mac(&keys.k_aut, &mut challenge, &[]).expect("AT_MAC present");
    let mut response = i.response.clone();
    fill_mac(&keys.k_aut, &mut response, &[]).expect("AT_MAC present");
    assert!(verify_mac(&keys.k_aut, &response, &[]).expect("AT_MAC present"));
    keys
}

/// Everything the network side computes for one attach.
fn whole_attach(rng: &mut StdRng, i: &Inputs) -> bool {
    let g_ir = dh(rng, i);
    let keys = ike_keys(&g_ir, i);
    let session = aka(rng, i);
    black_box(sk(&keys));
    auth(&keys, &session.msk, i)
}

fn bench(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(9);
    let i = inputs(&mut rng);
    let g_ir = dh(&mut rng, &i);
    let keys = ike_keys(&g_ir, &i);
    let session = aka(&mut rng, &i);
    let mut g = c.benchmark_group("attach_crypto");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    g.bench_function("dh_ecp256_keygen_and_shared_secret", |b| {
        b.iter(|| dh(&mut rng, &i))
    });
    g.bench_function("prf_plus_ike_and_child_keys", |b| {
        b.iter(|| ike_keys(&g_ir, &i))
    });
    g.bench_function("auth_compute_and_check", |b| {
        b.iter(|| auth(&keys, &session.msk, &i))
    });
    g.bench_function("sk_open_4_seal_4_aes_gcm", |b| b.iter(|| sk(&keys)));
    g.bench_function("aka_vector_keys_and_macs", |b| b.iter(|| aka(&mut rng, &i)));
    g.bench_function("whole_attach", |b| b.iter(|| whole_attach(&mut rng, &i)));
    g.finish();
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // The headline figure, timed by hand so a script can read one line.
    let mut rng = StdRng::seed_from_u64(10);
    let i = inputs(&mut rng);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(1) {
        assert!(whole_attach(&mut rng, &i));
        n += 1;
    }
    let per = start.elapsed().as_secs_f64() / n as f64;
    println!(
        "crypto bound: {:.0} attaches/s/core ({:.1} us per attach)",
        1.0 / per,
        per * 1e6
    );
}
