//! How IKE peers prove who they are in IKE_AUTH (RFC 7296 section 2.15): [`LocalAuth`]
//! says how we do (EAP for a UE, a pre-shared key, or a certificate's [`Signer`]), and
//! [`PeerAuth`] which peers we accept and how they must (a pre-shared key per peer
//! identity, or a certificate a [`PeerVerifier`] accepts for the identity the peer
//! claims). ECDSA on P-256 with SHA-256 is provided with ring: AUTH method 9 (RFC 4754)
//! signed and checked, method 14 (RFC 7427, `ecdsa-with-SHA256`) checked; an X.509 chain
//! to a CA is [`super::ca::CaVerifier`]'s, [`PinnedEcdsaP256Key`] checks against one known
//! public key.

use std::fmt;

use std::sync::Arc;

use ring::signature::{self, EcdsaKeyPair, KeyPair};

use super::crypto::{constant_time_eq, CryptoError, Prf};
use super::keys::{shared_key_auth, verify_shared_key_auth};
use super::sa::PeerAuthMethod;
use super::wire::{AuthMethod, AuthPayload, CertEncoding, CertPayload, Identification};

/// Signs the responder's AUTH and names the certificate that proves the key.
pub trait Signer: Send + Sync + fmt::Debug {
    /// The CERT payload sent with AUTH.
    fn certificate(&self) -> CertPayload;
    fn method(&self) -> AuthMethod;
    /// The AUTH data over `signed_octets` (section 2.15).
    fn sign(&self, signed_octets: &[u8]) -> Result<Vec<u8>, CryptoError>;
}

/// Decides whether a peer's CERT payloads and AUTH prove its identity.
pub trait PeerVerifier: Send + Sync + fmt::Debug {
    fn verify(
        &self,
        certificates: &[CertPayload],
        auth: &AuthPayload,
        signed_octets: &[u8],
    ) -> bool;

    /// Whether they prove `id`, the identity the peer claims in IDi or IDr: a verifier
    /// that knows certificates checks that the certificate names it (its subject or
    /// subjectAltName). By default `verify` alone decides.
    fn verify_peer(
        &self,
        id: &Identification,
        certificates: &[CertPayload],
        auth: &AuthPayload,
        signed_octets: &[u8],
    ) -> bool {
        let _ = id;
        self.verify(certificates, auth, signed_octets)
    }

    /// The CERTREQ payload naming the CAs we trust (RFC 7296 section 3.7), if any.
    fn certificate_request(&self) -> Option<CertPayload> {
        None
    }
}

/// A pre-shared key (RFC 7296 section 2.15). Its octets never show in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Psk(Vec<u8>);

impl Psk {
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Psk(secret.into())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Psk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Psk({} octets)", self.0.len())
    }
}

/// How we prove our identity in IKE_AUTH.
#[derive(Debug, Clone, Default)]
pub enum LocalAuth {
    /// With EAP, as a UE does (RFC 7296 section 2.16): the application answers the
    /// responder's EAP requests.
    #[default]
    Eap,
    /// With a pre-shared key (AUTH method 2).
    Psk(Psk),
    /// With a signature by our certificate's key, the certificate in a CERT payload.
    Certificate(Arc<dyn Signer>),
}

impl LocalAuth {
    /// Our CERT payload (with a certificate) and AUTH payload over `signed_octets`;
    /// None for EAP, whose AUTH comes from the MSK after EAP.
    pub fn prove(
        &self,
        prf: Prf,
        signed_octets: &[u8],
    ) -> Option<Result<(Option<CertPayload>, AuthPayload), CryptoError>> {
        match self {
            LocalAuth::Eap => None,
            LocalAuth::Psk(psk) => Some(Ok((
                None,
                AuthPayload {
                    method: AuthMethod::SharedKeyMessageIntegrityCode,
                    data: shared_key_auth(prf, psk.as_bytes(), signed_octets),
                },
            ))),
            LocalAuth::Certificate(signer) => Some(signer.sign(signed_octets).map(|data| {
                (
                    Some(signer.certificate()),
                    AuthPayload {
                        method: signer.method(),
                        data,
                    },
                )
            })),
        }
    }
}

/// Whether two identities are the same peer: FQDNs and RFC 822 addresses compared
/// without regard to ASCII case (DNS names are case-insensitive), the rest octet for octet.
pub fn same_identity(a: &Identification, b: &Identification) -> bool {
    match (a, b) {
        (Identification::Fqdn(x), Identification::Fqdn(y))
        | (Identification::Rfc822Addr(x), Identification::Rfc822Addr(y)) => {
            x.eq_ignore_ascii_case(y)
        }
        _ => a == b,
    }
}

/// The peers a node accepts when they authenticate with a key or a certificate (not
/// EAP): a pre-shared key per identity, and a verifier for certificates.
#[derive(Debug, Clone, Default)]
pub struct PeerAuth {
    /// The key each peer identity (ID_FQDN, ID_IPV4_ADDR, ID_IPV6_ADDR, ID_RFC822_ADDR)
    /// authenticates with; we answer that peer with the same key.
    pub psks: Vec<(Identification, Psk)>,
    /// Checks a certificate AUTH for the identity it claims: [`super::ca::CaVerifier`].
    pub verifier: Option<Arc<dyn PeerVerifier>>,
}

impl PeerAuth {
    /// The pre-shared key of the peer `id`.
    pub fn psk(&self, id: &Identification) -> Option<&Psk> {
        self.psks
            .iter()
            .find(|(i, _)| same_identity(i, id))
            .map(|(_, k)| k)
    }

    /// Whether there is anyone to accept at all.
    pub fn is_empty(&self) -> bool {
        self.psks.is_empty() && self.verifier.is_none()
    }

    /// How the AUTH payload `auth` (with the CERT payloads) proves the peer `id` over
    /// `signed_octets`, or None if it does not: method 2 with `id`'s key, a signature the
    /// verifier accepts for `id`.
    pub fn verify(
        &self,
        prf: Prf,
        id: &Identification,
        certificates: &[CertPayload],
        auth: &AuthPayload,
        signed_octets: &[u8],
    ) -> Option<PeerAuthMethod> {
        match auth.method {
            AuthMethod::SharedKeyMessageIntegrityCode => {
                let psk = self.psk(id)?;
                verify_shared_key_auth(prf, psk.as_bytes(), signed_octets, &auth.data)
                    .then_some(PeerAuthMethod::SharedKey)
            }
            _ => self
                .verifier
                .as_ref()?
                .verify_peer(id, certificates, auth, signed_octets)
                .then_some(PeerAuthMethod::Certificate),
        }
    }
}

/// The AlgorithmIdentifier of ecdsa-with-SHA256 as RFC 7427 appendix A.3.1 gives it.
const ECDSA_WITH_SHA256: [u8; 12] = [
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
];

/// Whether `auth` is a signature over `signed_octets` by the P-256 key `public_key` (the
/// uncompressed point 04 | x | y): AUTH method 9 (RFC 4754, r | s), or method 14 (RFC
/// 7427 section 3) with ecdsa-with-SHA256 and a DER signature.
pub fn verify_ecdsa_p256(public_key: &[u8], auth: &AuthPayload, signed_octets: &[u8]) -> bool {
    let (algorithm, sig): (&'static dyn signature::VerificationAlgorithm, &[u8]) = match auth.method
    {
        AuthMethod::EcdsaSha256P256 => (&signature::ECDSA_P256_SHA256_FIXED, &auth.data),
        AuthMethod::DigitalSignature => {
            let Some((&len, rest)) = auth.data.split_first() else {
                return false;
            };
            let len = usize::from(len);
            match (rest.get(..len), rest.get(len..)) {
                (Some(id), Some(sig)) if constant_time_eq(id, &ECDSA_WITH_SHA256) => {
                    (&signature::ECDSA_P256_SHA256_ASN1, sig)
                }
                _ => return false,
            }
        }
        _ => return false,
    };
    signature::UnparsedPublicKey::new(algorithm, public_key)
        .verify(signed_octets, sig)
        .is_ok()
}

/// An ECDSA P-256 key and its X.509 certificate (DER). Signing draws its nonce from the
/// operating system (ring's generator): signatures differ run to run, verification does not.
pub struct EcdsaP256Signer {
    key: EcdsaKeyPair,
    certificate_der: Vec<u8>,
}

impl fmt::Debug for EcdsaP256Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcdsaP256Signer")
            .field("public_key", &self.key.public_key())
            .finish_non_exhaustive()
    }
}

impl EcdsaP256Signer {
    /// From a PKCS#8 private key (as rcgen or openssl write it) and the certificate.
    pub fn from_pkcs8(pkcs8: &[u8], certificate_der: Vec<u8>) -> Result<Self, CryptoError> {
        let key = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8,
            &ring::rand::SystemRandom::new(),
        )
        .map_err(|e| CryptoError::InvalidKey(e.to_string()))?;
        Ok(EcdsaP256Signer {
            key,
            certificate_der,
        })
    }

    /// The public key as an uncompressed point (04 | x | y).
    pub fn public_key(&self) -> &[u8] {
        self.key.public_key().as_ref()
    }
}

impl Signer for EcdsaP256Signer {
    fn certificate(&self) -> CertPayload {
        CertPayload {
            encoding: CertEncoding::X509CertificateSignature,
            data: self.certificate_der.clone(),
        }
    }

    fn method(&self) -> AuthMethod {
        AuthMethod::EcdsaSha256P256
    }

    /// RFC 4754: the signature is r | s, 32 octets each.
    fn sign(&self, signed_octets: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.key
            .sign(&ring::rand::SystemRandom::new(), signed_octets)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| CryptoError::SigningFailed)
    }
}

/// Accepts an AUTH signed (method 9 or 14) by one known P-256 key, whatever the CERT says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedEcdsaP256Key(pub Vec<u8>);

impl PeerVerifier for PinnedEcdsaP256Key {
    fn verify(&self, _: &[CertPayload], auth: &AuthPayload, signed_octets: &[u8]) -> bool {
        verify_ecdsa_p256(&self.0, auth, signed_octets)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fresh P-256 signer with a placeholder certificate.
    pub(crate) fn signer() -> EcdsaP256Signer {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
        EcdsaP256Signer::from_pkcs8(pkcs8.as_ref(), b"certificate".to_vec()).unwrap()
    }

    #[test]
    fn a_pinned_key_verifies_its_signatures_only() {
        let s = signer();
        let auth = AuthPayload {
            method: s.method(),
            data: s.sign(b"signed octets").unwrap(),
        };
        assert_eq!(auth.data.len(), 64);
        let pinned = PinnedEcdsaP256Key(s.public_key().to_vec());
        assert!(pinned.verify(&[s.certificate()], &auth, b"signed octets"));
        assert!(!pinned.verify(&[], &auth, b"signed octetz"));
        let other = PinnedEcdsaP256Key(signer().public_key().to_vec());
        assert!(!other.verify(&[], &auth, b"signed octets"));
        let wrong_method = AuthPayload {
            method: AuthMethod::SharedKeyMessageIntegrityCode,
            ..auth
        };
        assert!(!pinned.verify(&[], &wrong_method, b"signed octets"));
        assert!(EcdsaP256Signer::from_pkcs8(b"not a key", vec![]).is_err());
    }

    /// RFC 7427 method 14: the AlgorithmIdentifier of ecdsa-with-SHA256, then an ASN.1
    /// DER signature, as strongSwan sends it.
    #[test]
    fn a_digital_signature_auth_with_ecdsa_sha256_is_checked_too() {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
        let key = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            pkcs8.as_ref(),
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
        let der = key
            .sign(&ring::rand::SystemRandom::new(), b"octets")
            .unwrap();
        let mut data = vec![ECDSA_WITH_SHA256.len() as u8];
        data.extend_from_slice(&ECDSA_WITH_SHA256);
        data.extend_from_slice(der.as_ref());
        let auth = AuthPayload {
            method: AuthMethod::DigitalSignature,
            data,
        };
        let public = key.public_key().as_ref();
        assert!(verify_ecdsa_p256(public, &auth, b"octets"));
        assert!(!verify_ecdsa_p256(public, &auth, b"octetz"));
        let mut other_algorithm = auth.clone();
        other_algorithm.data[12] ^= 1; // sha256 -> another hash
        assert!(!verify_ecdsa_p256(public, &other_algorithm, b"octets"));
        let truncated = AuthPayload {
            method: AuthMethod::DigitalSignature,
            data: vec![40, 1, 2],
        };
        assert!(!verify_ecdsa_p256(public, &truncated, b"octets"));
    }

    #[test]
    fn a_peer_proves_itself_with_its_own_key_or_a_verified_certificate() {
        let prf = Prf::HmacSha2_256;
        let lma = Identification::Fqdn("LMA.example.net".into());
        let peers = PeerAuth {
            psks: vec![(
                Identification::Fqdn("lma.example.net".into()),
                Psk::new(*b"secret"),
            )],
            verifier: None,
        };
        let (cert, auth) = LocalAuth::Psk(Psk::new(*b"secret"))
            .prove(prf, b"octets")
            .unwrap()
            .unwrap();
        assert_eq!(cert, None);
        assert_eq!(
            peers.verify(prf, &lma, &[], &auth, b"octets"),
            Some(PeerAuthMethod::SharedKey),
            "FQDNs compare without case"
        );
        assert_eq!(peers.verify(prf, &lma, &[], &auth, b"octetz"), None);
        let other = Identification::Fqdn("mag.example.net".into());
        assert_eq!(peers.verify(prf, &other, &[], &auth, b"octets"), None);
        let (_, wrong) = LocalAuth::Psk(Psk::new(*b"secreT"))
            .prove(prf, b"octets")
            .unwrap()
            .unwrap();
        assert_eq!(peers.verify(prf, &lma, &[], &wrong, b"octets"), None);
        // A signature without a verifier proves nothing; with one it is a certificate.
        let s = signer();
        let (cert, signed) = LocalAuth::Certificate(Arc::new(s))
            .prove(prf, b"octets")
            .unwrap()
            .unwrap();
        assert!(cert.is_some());
        assert_eq!(peers.verify(prf, &lma, &[], &signed, b"octets"), None);
        assert!(LocalAuth::Eap.prove(prf, b"octets").is_none());
        assert_eq!(format!("{:?}", Psk::new(*b"secret")), "Psk(6 octets)");
    }
}
