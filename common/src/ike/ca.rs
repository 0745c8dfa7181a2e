//! Certificate authentication of IKE peers against an operator CA (RFC 7296 sections
//! 2.15, 3.6, 3.7; RFC 4945 section 3.1 for matching the identity): the first CERT
//! payload is the peer's certificate, the others may be intermediates; the chain must end
//! in a certificate signed by one of our CAs, every certificate in it valid now, and the
//! peer's certificate must name the identity the peer claims in its ID payload. Then the
//! AUTH must be the certificate key's signature (ECDSA P-256, AUTH method 9 or 14).
//!
//! x509-parser (with its `verify` feature, which checks signatures with ring) reads and
//! checks the certificates: parsing X.509 by hand is no job for a protocol library, and
//! the crate is already the workspace's choice for the UE emulator's CA check.

use thiserror::Error;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use super::auth::{verify_ecdsa_p256, PeerVerifier};
use super::wire::{AuthPayload, CertEncoding, CertPayload, Identification};

/// Why a CA certificate could not be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CaError {
    #[error("CA certificate {index} is not a DER X.509 certificate: {reason}")]
    NotACertificate { index: usize, reason: String },
    #[error("no CA certificate given")]
    Empty,
}

/// Intermediate certificates followed at most between the peer's and a CA's.
const MAX_CHAIN: usize = 4;

/// Accepts a peer whose certificate chains to one of our CAs and names its identity.
#[derive(Debug, Clone)]
pub struct CaVerifier {
    /// The CA certificates, DER.
    cas: Vec<Vec<u8>>,
    /// SHA-1 of each CA's SubjectPublicKeyInfo, concatenated: our CERTREQ (section 3.7).
    authorities: Vec<u8>,
}

fn parse(der: &[u8]) -> Option<X509Certificate<'_>> {
    x509_parser::parse_x509_certificate(der)
        .ok()
        .map(|(_, c)| c)
}

impl CaVerifier {
    /// From the CA certificates (DER) peers' certificates must chain to.
    pub fn new(cas: Vec<Vec<u8>>) -> Result<Self, CaError> {
        if cas.is_empty() {
            return Err(CaError::Empty);
        }
        let mut authorities = Vec::new();
        for (index, der) in cas.iter().enumerate() {
            let (_, ca) =
                x509_parser::parse_x509_certificate(der).map_err(|e| CaError::NotACertificate {
                    index,
                    reason: e.to_string(),
                })?;
            let hash =
                ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, ca.public_key().raw);
            authorities.extend_from_slice(hash.as_ref());
        }
        Ok(CaVerifier { cas, authorities })
    }

    /// The peer's public key (the uncompressed point) if `certificates` hold a chain from
    /// the peer's certificate (the first X.509 one) to one of our CAs, all valid now, and
    /// it names `id` (when given).
    pub fn chained_key(
        &self,
        certificates: &[CertPayload],
        id: Option<&Identification>,
    ) -> Option<Vec<u8>> {
        let x509: Vec<X509Certificate<'_>> = certificates
            .iter()
            .filter(|c| c.encoding == CertEncoding::X509CertificateSignature)
            .filter_map(|c| parse(&c.data))
            .collect();
        let (leaf, intermediates) = x509.split_first()?;
        if !leaf.validity().is_valid() || id.is_some_and(|id| !names(leaf, id)) {
            return None;
        }
        let cas: Vec<X509Certificate<'_>> = self.cas.iter().filter_map(|d| parse(d)).collect();
        let mut current = leaf;
        for _ in 0..=MAX_CHAIN {
            let issued_by = |issuer: &X509Certificate<'_>| {
                issuer.subject().as_raw() == current.issuer().as_raw()
                    && issuer.validity().is_valid()
                    && current.verify_signature(Some(issuer.public_key())).is_ok()
            };
            if cas.iter().any(issued_by) {
                return Some(leaf.public_key().subject_public_key.data.to_vec());
            }
            current = intermediates.iter().find(|i| i.is_ca() && issued_by(i))?;
        }
        None
    }
}

/// Whether a certificate names the identity (RFC 4945 section 3.1): an FQDN as a
/// dNSName (or, without subjectAltName, the subject's common name), an RFC 822 address
/// as an rfc822Name, an IP address as an iPAddress, a DN as the subject.
fn names(cert: &X509Certificate<'_>, id: &Identification) -> bool {
    let alt: Vec<&GeneralName<'_>> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san.value.general_names.iter().collect(),
        Ok(None) => Vec::new(),
        Err(_) => return false,
    };
    match id {
        Identification::Fqdn(name) => {
            alt.iter()
                .any(|g| matches!(g, GeneralName::DNSName(d) if d.eq_ignore_ascii_case(name)))
                || (alt.is_empty()
                    && cert
                        .subject()
                        .iter_common_name()
                        .any(|cn| cn.as_str().is_ok_and(|cn| cn.eq_ignore_ascii_case(name))))
        }
        Identification::Rfc822Addr(address) => alt
            .iter()
            .any(|g| matches!(g, GeneralName::RFC822Name(a) if a.eq_ignore_ascii_case(address))),
        Identification::Ipv4Addr(a) => alt
            .iter()
            .any(|g| matches!(g, GeneralName::IPAddress(ip) if *ip == a.octets())),
        Identification::Ipv6Addr(a) => alt
            .iter()
            .any(|g| matches!(g, GeneralName::IPAddress(ip) if *ip == a.octets())),
        Identification::DerAsn1Dn(dn) => cert.subject().as_raw() == dn.as_slice(),
        _ => false,
    }
}

impl PeerVerifier for CaVerifier {
    /// A chain to our CA and the AUTH signed by its key, whatever identity it names.
    fn verify(
        &self,
        certificates: &[CertPayload],
        auth: &AuthPayload,
        signed_octets: &[u8],
    ) -> bool {
        self.chained_key(certificates, None)
            .is_some_and(|key| verify_ecdsa_p256(&key, auth, signed_octets))
    }

    fn verify_peer(
        &self,
        id: &Identification,
        certificates: &[CertPayload],
        auth: &AuthPayload,
        signed_octets: &[u8],
    ) -> bool {
        self.chained_key(certificates, Some(id))
            .is_some_and(|key| verify_ecdsa_p256(&key, auth, signed_octets))
    }

    fn certificate_request(&self) -> Option<CertPayload> {
        Some(CertPayload {
            encoding: CertEncoding::X509CertificateSignature,
            data: self.authorities.clone(),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ike::auth::{EcdsaP256Signer, Signer};
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        SanType, PKCS_ECDSA_P256_SHA256,
    };

    /// A CA of the lab: its certificate and what it signs with.
    pub(crate) struct TestCa {
        pub(crate) der: Vec<u8>,
        issuer: Issuer<'static, KeyPair>,
    }

    impl TestCa {
        pub(crate) fn new(name: &str) -> Self {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
            let der = params.self_signed(&key).unwrap().der().to_vec();
            TestCa {
                der,
                issuer: Issuer::new(params, key),
            }
        }

        /// An intermediate CA under this one.
        pub(crate) fn intermediate(&self, name: &str) -> Self {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
            let der = params.signed_by(&key, &self.issuer).unwrap().der().to_vec();
            TestCa {
                der,
                issuer: Issuer::new(params, key),
            }
        }

        /// A node's signer with a certificate naming `sans` (DNS names, IP addresses,
        /// e-mail addresses as `user@host`).
        pub(crate) fn signer(&self, sans: &[&str]) -> EcdsaP256Signer {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params
                .distinguished_name
                .push(DnType::CommonName, sans.first().copied().unwrap_or("node"));
            params.subject_alt_names = sans
                .iter()
                .map(|s| {
                    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
                        SanType::IpAddress(ip)
                    } else if s.contains('@') {
                        SanType::Rfc822Name((*s).try_into().unwrap())
                    } else {
                        SanType::DnsName((*s).try_into().unwrap())
                    }
                })
                .collect();
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
            let cert = params.signed_by(&key, &self.issuer).unwrap();
            EcdsaP256Signer::from_pkcs8(&key.serialize_der(), cert.der().to_vec()).unwrap()
        }
    }

    fn signed(s: &EcdsaP256Signer, octets: &[u8]) -> AuthPayload {
        AuthPayload {
            method: s.method(),
            data: s.sign(octets).unwrap(),
        }
    }

    #[test]
    fn a_certificate_from_our_ca_proves_the_identities_it_names() {
        let ca = TestCa::new("operator CA");
        let verifier = CaVerifier::new(vec![ca.der.clone()]).unwrap();
        let node = ca.signer(&[
            "lma.example.net",
            "192.0.2.1",
            "2001:db8::1",
            "mag@example.net",
        ]);
        let certs = [node.certificate()];
        let auth = signed(&node, b"octets");
        for id in [
            Identification::Fqdn("LMA.example.net".into()),
            Identification::Ipv4Addr("192.0.2.1".parse().unwrap()),
            Identification::Ipv6Addr("2001:db8::1".parse().unwrap()),
            Identification::Rfc822Addr("mag@example.net".into()),
        ] {
            assert!(
                verifier.verify_peer(&id, &certs, &auth, b"octets"),
                "{id:?}"
            );
        }
        for id in [
            Identification::Fqdn("other.example.net".into()),
            Identification::Ipv4Addr("192.0.2.2".parse().unwrap()),
            Identification::KeyId(b"lma".to_vec()),
        ] {
            assert!(
                !verifier.verify_peer(&id, &certs, &auth, b"octets"),
                "{id:?}"
            );
        }
        assert!(verifier.verify(&certs, &auth, b"octets"));
        assert!(!verifier.verify(&certs, &auth, b"tampered"));
        assert!(!verifier.verify(&[], &auth, b"octets"));
        // CERTREQ names the CA by the SHA-1 of its key (section 3.7).
        let req = verifier.certificate_request().unwrap();
        assert_eq!(req.encoding, CertEncoding::X509CertificateSignature);
        assert_eq!(req.data.len(), 20);
    }

    #[test]
    fn another_cas_certificate_or_a_foreign_key_is_refused() {
        let ours = TestCa::new("operator CA");
        let theirs = TestCa::new("operator CA"); // same name, other key
        let verifier = CaVerifier::new(vec![ours.der.clone()]).unwrap();
        let stranger = theirs.signer(&["lma.example.net"]);
        let id = Identification::Fqdn("lma.example.net".into());
        let auth = signed(&stranger, b"octets");
        assert!(!verifier.verify_peer(&id, &[stranger.certificate()], &auth, b"octets"));
        // Our CA's certificate with a signature by some other key.
        let genuine = ours.signer(&["lma.example.net"]);
        assert!(!verifier.verify_peer(&id, &[genuine.certificate()], &auth, b"octets"));
        assert!(CaVerifier::new(vec![]).is_err());
        assert!(matches!(
            CaVerifier::new(vec![b"junk".to_vec()]),
            Err(CaError::NotACertificate { index: 0, .. })
        ));
    }

    #[test]
    fn an_intermediate_in_the_cert_payloads_completes_the_chain() {
        let root = TestCa::new("root");
        let sub = root.intermediate("signaling CA");
        let node = sub.signer(&["mag.example.net"]);
        let verifier = CaVerifier::new(vec![root.der.clone()]).unwrap();
        let id = Identification::Fqdn("mag.example.net".into());
        let auth = signed(&node, b"octets");
        let intermediate = CertPayload {
            encoding: CertEncoding::X509CertificateSignature,
            data: sub.der.clone(),
        };
        assert!(verifier.verify_peer(&id, &[node.certificate(), intermediate], &auth, b"octets"));
        assert!(!verifier.verify_peer(&id, &[node.certificate()], &auth, b"octets"));
    }
}
