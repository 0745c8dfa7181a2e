//! IKEv2 key derivation: SKEYSEED and the seven SK_* keys (RFC 7296 section 2.14), CHILD_SA
//! KEYMAT (section 2.17), and the AUTH payload value for shared-key and EAP MSK
//! authentication (section 2.15, 2.16; RFC 5998).

use super::crypto::{CryptoError, EspSuite, IkeSuite, Prf};
use super::sk::SkKeys;

/// SKEYSEED = prf(Ni | Nr, g^ir) (section 2.14; the HMAC PRFs take the whole nonces as key).
pub fn skeyseed(prf: Prf, ni: &[u8], nr: &[u8], g_ir: &[u8]) -> Vec<u8> {
    let key = [ni, nr].concat();
    prf.prf(&key, &[g_ir])
}

/// SKEYSEED of a rekeyed IKE SA (section 2.18): prf(SK_d (old), g^ir (new) | Ni | Nr).
pub fn rekey_skeyseed(prf: Prf, old_sk_d: &[u8], g_ir: &[u8], ni: &[u8], nr: &[u8]) -> Vec<u8> {
    prf.prf(old_sk_d, &[g_ir, ni, nr])
}

/// The keys of an IKE SA (section 2.14).
#[derive(Clone, PartialEq, Eq)]
pub struct IkeSaKeys {
    pub sk_d: Vec<u8>,
    pub sk_ai: Vec<u8>,
    pub sk_ar: Vec<u8>,
    pub sk_ei: Vec<u8>,
    pub sk_er: Vec<u8>,
    pub sk_pi: Vec<u8>,
    pub sk_pr: Vec<u8>,
    suite: IkeSuite,
}

impl std::fmt::Debug for IkeSaKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IkeSaKeys")
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

impl IkeSaKeys {
    /// {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr).
    pub fn derive(
        suite: &IkeSuite,
        skeyseed: &[u8],
        ni: &[u8],
        nr: &[u8],
        spi_i: u64,
        spi_r: u64,
    ) -> Result<Self, CryptoError> {
        let prf = suite.prf;
        let (d, a, e, p) = (
            prf.key_len(),
            suite.integ.map_or(0, |i| i.key_len()),
            suite.encr.key_len(),
            prf.key_len(),
        );
        let seed = [ni, nr, &spi_i.to_be_bytes(), &spi_r.to_be_bytes()].concat();
        let km = prf.prf_plus(skeyseed, &seed, d + 2 * a + 2 * e + 2 * p)?;
        let mut at = 0;
        let mut take = |n: usize| {
            let k = km[at..at + n].to_vec();
            at += n;
            k
        };
        Ok(IkeSaKeys {
            sk_d: take(d),
            sk_ai: take(a),
            sk_ar: take(a),
            sk_ei: take(e),
            sk_er: take(e),
            sk_pi: take(p),
            sk_pr: take(p),
            suite: *suite,
        })
    }

    /// The whole derivation of an IKE_SA_INIT: SKEYSEED from g^ir, then the keys.
    pub fn from_ike_sa_init(
        suite: &IkeSuite,
        g_ir: &[u8],
        ni: &[u8],
        nr: &[u8],
        spi_i: u64,
        spi_r: u64,
    ) -> Result<Self, CryptoError> {
        let seed = skeyseed(suite.prf, ni, nr, g_ir);
        Self::derive(suite, &seed, ni, nr, spi_i, spi_r)
    }

    /// The keys of the IKE SA a rekey of `old` makes (section 2.18): SKEYSEED with the old
    /// PRF from the old SK_d, g^ir (new) and the exchange's nonces, the rest as section
    /// 2.14 with the new suite and SPIs.
    pub fn from_rekey(
        old: &IkeSaKeys,
        suite: &IkeSuite,
        g_ir: &[u8],
        (ni, nr): (&[u8], &[u8]),
        spi_i: u64,
        spi_r: u64,
    ) -> Result<Self, CryptoError> {
        let seed = rekey_skeyseed(old.suite.prf, &old.sk_d, g_ir, ni, nr);
        Self::derive(suite, &seed, ni, nr, spi_i, spi_r)
    }

    pub fn suite(&self) -> &IkeSuite {
        &self.suite
    }

    /// Keys that protect what the original initiator sends (SK_ei, SK_ai).
    pub fn initiator_sk(&self) -> SkKeys {
        SkKeys::new(
            self.suite.encr,
            self.suite.integ,
            self.sk_ei.clone(),
            self.sk_ai.clone(),
        )
    }

    /// Keys that protect what the original responder sends (SK_er, SK_ar).
    pub fn responder_sk(&self) -> SkKeys {
        SkKeys::new(
            self.suite.encr,
            self.suite.integ,
            self.sk_er.clone(),
            self.sk_ar.clone(),
        )
    }

    /// KEYMAT of a CHILD_SA made with this IKE SA (section 2.17).
    pub fn child_keymat(
        &self,
        g_ir_new: Option<&[u8]>,
        ni: &[u8],
        nr: &[u8],
        len: usize,
    ) -> Result<Vec<u8>, CryptoError> {
        child_sa_keymat(self.suite.prf, &self.sk_d, g_ir_new, ni, nr, len)
    }
}

/// KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr) (section 2.17).
pub fn child_sa_keymat(
    prf: Prf,
    sk_d: &[u8],
    g_ir_new: Option<&[u8]>,
    ni: &[u8],
    nr: &[u8],
    len: usize,
) -> Result<Vec<u8>, CryptoError> {
    let seed = [g_ir_new.unwrap_or(&[]), ni, nr].concat();
    prf.prf_plus(sk_d, &seed, len)
}

/// One direction of an ESP CHILD_SA's keys.
#[derive(Clone, PartialEq, Eq)]
pub struct EspDirectionKeys {
    /// Encryption key, with the 4-octet salt last for AES-GCM (RFC 4106 section 8.1).
    pub encr: Vec<u8>,
    pub integ: Vec<u8>,
}

/// The keys of an ESP CHILD_SA.
#[derive(Clone, PartialEq, Eq)]
pub struct ChildSaKeys {
    /// For the SA that carries traffic from the initiator to the responder.
    pub initiator_to_responder: EspDirectionKeys,
    pub responder_to_initiator: EspDirectionKeys,
}

impl std::fmt::Debug for ChildSaKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChildSaKeys { .. }")
    }
}

impl ChildSaKeys {
    /// Splits KEYMAT as section 2.17 orders it: initiator-to-responder keys first,
    /// encryption before integrity in each direction.
    pub fn derive(
        ike: &IkeSaKeys,
        esp: &EspSuite,
        g_ir_new: Option<&[u8]>,
        ni: &[u8],
        nr: &[u8],
    ) -> Result<Self, CryptoError> {
        let (e, a) = (esp.encr.key_len(), esp.integ.map_or(0, |i| i.key_len()));
        let km = ike.child_keymat(g_ir_new, ni, nr, 2 * (e + a))?;
        let (i2r, r2i) = km.split_at(e + a);
        let dir = |k: &[u8]| EspDirectionKeys {
            encr: k[..e].to_vec(),
            integ: k[e..].to_vec(),
        };
        Ok(ChildSaKeys {
            initiator_to_responder: dir(i2r),
            responder_to_initiator: dir(r2i),
        })
    }
}

/// The key pad of section 2.15: 17 ASCII octets, no terminating NUL.
pub const KEY_PAD: &[u8] = b"Key Pad for IKEv2";

/// The octets an AUTH payload signs (section 2.15): the sender's first message (its
/// IKE_SA_INIT request or response, as sent), the peer's nonce, and
/// prf(SK_px, RestOfIDPayload) with the sender's own SK_pi or SK_pr and ID payload body.
pub fn signed_octets(
    prf: Prf,
    first_message: &[u8],
    peer_nonce: &[u8],
    sk_p: &[u8],
    id_body: &[u8],
) -> Vec<u8> {
    let mac_id = prf.prf(sk_p, &[id_body]);
    [first_message, peer_nonce, &mac_id].concat()
}

/// `AUTH = prf(prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>)` (section 2.15).
/// With EAP the shared secret is the MSK (section 2.16, RFC 5998); without an MSK it is
/// SK_pi or SK_pr.
pub fn shared_key_auth(prf: Prf, shared_secret: &[u8], signed_octets: &[u8]) -> Vec<u8> {
    let key = prf.prf(shared_secret, &[KEY_PAD]);
    prf.prf(&key, &[signed_octets])
}

/// Checks a peer's shared-key AUTH in constant time.
pub fn verify_shared_key_auth(
    prf: Prf,
    shared_secret: &[u8],
    signed_octets: &[u8],
    auth_data: &[u8],
) -> bool {
    super::crypto::constant_time_eq(
        &shared_key_auth(prf, shared_secret, signed_octets),
        auth_data,
    )
}

/// The data of NAT_DETECTION_SOURCE_IP / NAT_DETECTION_DESTINATION_IP (section 2.23):
/// SHA-1(SPIi | SPIr | IP | Port), the SPIr zero in an IKE_SA_INIT request.
pub fn nat_detection_hash(spi_i: u64, spi_r: u64, addr: std::net::SocketAddr) -> [u8; 20] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(&spi_i.to_be_bytes());
    ctx.update(&spi_r.to_be_bytes());
    match addr.ip() {
        std::net::IpAddr::V4(a) => ctx.update(&a.octets()),
        std::net::IpAddr::V6(a) => ctx.update(&a.octets()),
    }
    ctx.update(&addr.port().to_be_bytes());
    let mut out = [0u8; 20];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

impl IkeSaKeys {
    /// One record of Wireshark's IKEv2 decryption table (`ikev2_decryption_table`, the
    /// file of that name in a Wireshark profile, or `tshark -o uat:ikev2_decryption_table:RECORD`),
    /// so the SK payloads of this IKE SA can be read in Wireshark: `--keylog` writes these.
    pub fn wireshark_decryption_record(&self, spi_i: u64, spi_r: u64) -> String {
        let hex = |b: &[u8]| b.iter().map(|o| format!("{o:02x}")).collect::<String>();
        let encr = self.suite.encr.description().wireshark;
        let integ = self
            .suite
            .integ
            .map_or("NONE [RFC4306]", |i| i.description().wireshark);
        format!(
            "{spi_i:016x},{spi_r:016x},{},{},\"{encr}\",{},{},\"{integ}\"",
            hex(&self.sk_ei),
            hex(&self.sk_er),
            hex(&self.sk_ai),
            hex(&self.sk_ar),
        )
    }
}

/// The secret behind COOKIE notifies (section 2.6): a responder under load answers an
/// IKE_SA_INIT with Cookie = `<VersionIDofSecret> | SHA-256(Ni | IPi | SPIi | <secret>)`
/// and keeps no state until the initiator returns it. The secret is changed from time to
/// time; the previous one stays valid for a while.
#[derive(Clone, PartialEq, Eq)]
pub struct CookieSecret {
    pub version: u32,
    pub secret: [u8; 32],
}

impl std::fmt::Debug for CookieSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieSecret")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl CookieSecret {
    /// A fresh secret drawn from `rng`.
    pub fn generate(version: u32, rng: &mut dyn super::crypto::Random) -> Self {
        let mut secret = [0u8; 32];
        rng.fill(&mut secret);
        CookieSecret { version, secret }
    }

    /// The 36-octet cookie for an initiator (RFC 7296 allows 1 to 64).
    pub fn cookie(&self, ni: &[u8], initiator_ip: std::net::IpAddr, spi_i: u64) -> Vec<u8> {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(ni);
        match initiator_ip {
            std::net::IpAddr::V4(a) => ctx.update(&a.octets()),
            std::net::IpAddr::V6(a) => ctx.update(&a.octets()),
        }
        ctx.update(&spi_i.to_be_bytes());
        ctx.update(&self.secret);
        let mut out = self.version.to_be_bytes().to_vec();
        out.extend_from_slice(ctx.finish().as_ref());
        out
    }

    /// Whether a returned cookie was made by this secret or by `previous`.
    pub fn verify(
        &self,
        previous: Option<&CookieSecret>,
        cookie: &[u8],
        ni: &[u8],
        initiator_ip: std::net::IpAddr,
        spi_i: u64,
    ) -> bool {
        let version = cookie
            .get(..4)
            .map(|v| u32::from_be_bytes([v[0], v[1], v[2], v[3]]));
        [Some(self), previous].into_iter().flatten().any(|s| {
            version == Some(s.version)
                && super::crypto::constant_time_eq(&s.cookie(ni, initiator_ip, spi_i), cookie)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ike::crypto::{Encr, Integ};

    fn suite(s: &str) -> IkeSuite {
        s.parse().unwrap()
    }

    #[test]
    fn sk_keys_have_the_lengths_and_order_of_section_2_14() {
        let s = suite("aes128-sha1-prfsha256-ecp256");
        let (ni, nr) = ([1u8; 32], [2u8; 32]);
        let keys = IkeSaKeys::derive(&s, b"seed", &ni, &nr, 0x11, 0x22).unwrap();
        let all = Prf::HmacSha2_256
            .prf_plus(
                b"seed",
                &[&ni[..], &nr, &0x11u64.to_be_bytes(), &0x22u64.to_be_bytes()].concat(),
                32 + 20 + 20 + 16 + 16 + 32 + 32,
            )
            .unwrap();
        assert_eq!(
            [
                &keys.sk_d[..],
                &keys.sk_ai,
                &keys.sk_ar,
                &keys.sk_ei,
                &keys.sk_er,
                &keys.sk_pi,
                &keys.sk_pr
            ]
            .concat(),
            all
        );
        assert_eq!(keys.sk_ai.len(), 20);
        assert_eq!(keys.sk_ei.len(), 16);
        let gcm = IkeSaKeys::derive(
            &suite("aes256gcm16-prfsha1-curve25519"),
            b"seed",
            &ni,
            &nr,
            1,
            2,
        )
        .unwrap();
        assert_eq!(gcm.sk_ei.len(), 36, "32-octet key and 4-octet salt");
        assert!(gcm.sk_ai.is_empty());
        assert_eq!(gcm.sk_d.len(), 20);
    }

    #[test]
    fn skeyseed_keys_the_prf_with_both_nonces() {
        let prf = Prf::HmacSha2_256;
        assert_eq!(
            skeyseed(prf, b"ni", b"nr", b"gir"),
            prf.prf(b"ninr", &[b"gir"])
        );
        assert_eq!(
            rekey_skeyseed(prf, b"d", b"g", b"ni", b"nr"),
            prf.prf(b"d", &[b"gninr"])
        );
    }

    #[test]
    fn child_keymat_splits_initiator_to_responder_first() {
        let s = suite("aes256gcm16-prfsha256-ecp256");
        let ike = IkeSaKeys::derive(&s, b"seed", &[1; 16], &[2; 16], 1, 2).unwrap();
        let esp = EspSuite {
            encr: Encr::AES_CBC_128,
            integ: Some(Integ::HmacSha2_256_128),
        };
        let child = ChildSaKeys::derive(&ike, &esp, None, &[3; 16], &[4; 16]).unwrap();
        let km =
            child_sa_keymat(Prf::HmacSha2_256, &ike.sk_d, None, &[3; 16], &[4; 16], 96).unwrap();
        assert_eq!(child.initiator_to_responder.encr, km[..16].to_vec());
        assert_eq!(child.initiator_to_responder.integ, km[16..48].to_vec());
        assert_eq!(child.responder_to_initiator.encr, km[48..64].to_vec());
        assert_eq!(child.responder_to_initiator.integ, km[64..].to_vec());
        let pfs = ChildSaKeys::derive(&ike, &esp, Some(b"gir"), &[3; 16], &[4; 16]).unwrap();
        assert_ne!(pfs, child);
        assert_eq!(esp.keymat_len_per_direction(), 48);
    }

    #[test]
    fn nat_detection_hash_is_sha1_of_spis_address_and_port() {
        let h = nat_detection_hash(1, 0, "192.0.2.1:500".parse().unwrap());
        let want = ring::digest::digest(
            &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            &[
                &1u64.to_be_bytes()[..],
                &[0; 8],
                &[192, 0, 2, 1],
                &500u16.to_be_bytes(),
            ]
            .concat(),
        );
        assert_eq!(&h[..], want.as_ref());
        // SHA-1("abc") shows ring's SHA-1 is the FIPS 180 one.
        assert_eq!(
            hex::encode(ring::digest::digest(
                &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
                b"abc"
            )),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }

    #[test]
    fn cookies_verify_under_the_current_and_previous_secret_only() {
        let ip: std::net::IpAddr = "192.0.2.7".parse().unwrap();
        let old = CookieSecret {
            version: 1,
            secret: [1; 32],
        };
        let new = CookieSecret {
            version: 2,
            secret: [2; 32],
        };
        let c = old.cookie(b"nonce", ip, 42);
        assert_eq!(c.len(), 36);
        assert!(old.verify(None, &c, b"nonce", ip, 42));
        assert!(new.verify(Some(&old), &c, b"nonce", ip, 42));
        assert!(!new.verify(None, &c, b"nonce", ip, 42));
        assert!(!old.verify(None, &c, b"nonce", ip, 43));
        assert!(!old.verify(None, &c, b"other", ip, 42));
        assert!(!old.verify(None, &c, b"nonce", "192.0.2.8".parse().unwrap(), 42));
        assert!(!old.verify(None, &c[..10], b"nonce", ip, 42));
        assert!(!old.verify(None, &[], b"nonce", ip, 42));
    }

    #[test]
    fn wireshark_record_names_the_keys_and_algorithms() {
        let keys = IkeSaKeys::derive(
            &suite("aes128-sha1-prfsha1-modp2048"),
            b"s",
            &[1; 16],
            &[2; 16],
            1,
            2,
        )
        .unwrap();
        let r = keys.wireshark_decryption_record(0x11, 0xabc);
        assert!(r.starts_with("0000000000000011,0000000000000abc,"));
        assert!(r.contains(",\"AES-CBC-128 [RFC3602]\","));
        assert!(r.ends_with(",\"HMAC_SHA1_96 [RFC2404]\""));
        assert_eq!(r.split(',').count(), 8);
    }

    #[test]
    fn msk_auth_is_prf_of_prf_msk_key_pad() {
        let prf = Prf::HmacSha2_256;
        let msk = [0x5a; 64];
        let octets = signed_octets(
            prf,
            b"IKE_SA_INIT request",
            &[7; 32],
            b"SK_pi",
            b"\x03\0\0\0nai",
        );
        assert_eq!(
            octets,
            [
                &b"IKE_SA_INIT request"[..],
                &[7; 32],
                &prf.prf(b"SK_pi", &[b"\x03\0\0\0nai"])
            ]
            .concat()
        );
        let auth = shared_key_auth(prf, &msk, &octets);
        let inner = prf.prf(&msk, &[b"Key Pad for IKEv2"]);
        assert_eq!(auth, prf.prf(&inner, &[&octets]));
        assert!(verify_shared_key_auth(prf, &msk, &octets, &auth));
        assert!(!verify_shared_key_auth(prf, &[0x5b; 64], &octets, &auth));
    }
}
