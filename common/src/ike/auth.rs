//! Certificate authentication of the ePDG in IKE_AUTH (RFC 7296 section 2.15): the
//! [`Signer`] a responder signs its AUTH with, and the [`PeerVerifier`] an initiator checks
//! it with. ECDSA on P-256 with SHA-256 (AUTH method 9, RFC 4754) is provided with ring;
//! checking a certificate chain against a CA is the verifier's business (a node may plug
//! in an X.509 verifier), [`PinnedEcdsaP256Key`] checks against one known public key.

use std::fmt;

use ring::signature::{self, EcdsaKeyPair, KeyPair};

use super::crypto::CryptoError;
use super::wire::{AuthMethod, AuthPayload, CertEncoding, CertPayload};

/// Signs the responder's AUTH and names the certificate that proves the key.
pub trait Signer: Send + Sync + fmt::Debug {
    /// The CERT payload sent with AUTH.
    fn certificate(&self) -> CertPayload;
    fn method(&self) -> AuthMethod;
    /// The AUTH data over `signed_octets` (section 2.15).
    fn sign(&self, signed_octets: &[u8]) -> Result<Vec<u8>, CryptoError>;
}

/// Decides whether a responder's CERT payloads and AUTH prove its identity.
pub trait PeerVerifier: Send + Sync + fmt::Debug {
    fn verify(
        &self,
        certificates: &[CertPayload],
        auth: &AuthPayload,
        signed_octets: &[u8],
    ) -> bool;
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

/// Accepts an AUTH signed (method 9) by one known P-256 key, whatever the CERT says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedEcdsaP256Key(pub Vec<u8>);

impl PeerVerifier for PinnedEcdsaP256Key {
    fn verify(&self, _: &[CertPayload], auth: &AuthPayload, signed_octets: &[u8]) -> bool {
        auth.method == AuthMethod::EcdsaSha256P256
            && signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &self.0)
                .verify(signed_octets, &auth.data)
                .is_ok()
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
}
