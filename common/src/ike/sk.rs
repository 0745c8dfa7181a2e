//! The Encrypted and Authenticated payload (RFC 7296 section 3.14): sealing a message's
//! payloads into SK and opening it again, with AES-CBC + HMAC (encrypt, then MAC over
//! the whole message) or AES-GCM-16 (RFC 5282: 8-octet IV, salt from the key material,
//! AAD = IKE header | SK generic header).

use thiserror::Error;

use super::crypto::{constant_time_eq, CryptoError, Encr, Integ, Random};
use super::wire::{
    emit_payloads, parse_payloads, GenericPayload, HeaderRepr, IkeHeader, IkeMessage, PayloadType,
    WireError, GENERIC_PAYLOAD_HEADER_LEN, HEADER_LEN,
};

/// Why an SK payload could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SkError {
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The ICV did not match (wrong keys, or the message was altered): drop the message.
    #[error("integrity check failed")]
    IntegrityCheckFailed,
    #[error("message has no SK payload as its first payload")]
    NotEncrypted,
    #[error("SK payload too short for IV, padding and ICV")]
    TooShort,
    #[error("Pad Length exceeds the plaintext")]
    BadPadding,
    /// The ICV verified but the payloads inside do not parse: an authentic message the
    /// peer gets an error notify for (RFC 7296 sections 2.5, 2.21), unlike every other
    /// error here, which may come from anyone.
    #[error("inner payloads: {0}")]
    InnerPayloads(WireError),
    #[error(transparent)]
    Crypto(CryptoError),
}

impl From<CryptoError> for SkError {
    fn from(e: CryptoError) -> Self {
        match e {
            CryptoError::IntegrityCheckFailed => SkError::IntegrityCheckFailed,
            other => SkError::Crypto(other),
        }
    }
}

/// The keys that protect one direction of an IKE SA: SK_ei/SK_ai or SK_er/SK_ar.
#[derive(Clone, PartialEq, Eq)]
pub struct SkKeys {
    encr: Encr,
    integ: Option<Integ>,
    encr_key: Vec<u8>,
    integ_key: Vec<u8>,
}

impl std::fmt::Debug for SkKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SkKeys")
            .field("encr", &self.encr)
            .field("integ", &self.integ)
            .finish_non_exhaustive()
    }
}

impl SkKeys {
    /// `encr_key` is SK_e as derived: for AES-GCM the cipher key followed by the salt.
    pub fn new(encr: Encr, integ: Option<Integ>, encr_key: Vec<u8>, integ_key: Vec<u8>) -> Self {
        SkKeys {
            encr,
            integ,
            encr_key,
            integ_key,
        }
    }

    fn icv_len(&self) -> usize {
        if self.encr.is_aead() {
            self.encr.icv_len()
        } else {
            self.integ.map_or(0, Integ::icv_len)
        }
    }

    fn gcm_nonce(&self, iv: &[u8]) -> Result<(&[u8], [u8; 12]), CryptoError> {
        let key_len = self.encr.cipher_key_len();
        let want = key_len + 4;
        if self.encr_key.len() != want || iv.len() != 8 {
            return Err(CryptoError::KeyLength {
                got: self.encr_key.len(),
                want,
            });
        }
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(&self.encr_key[key_len..]);
        nonce[4..].copy_from_slice(iv);
        Ok((&self.encr_key[..key_len], nonce))
    }

    /// Emits `message` with all its payloads inside one SK payload, IV drawn from `rng`.
    pub fn seal(&self, message: &IkeMessage, rng: &mut dyn Random) -> Result<Vec<u8>, SkError> {
        let mut plain = Vec::new();
        let first_inner = emit_payloads(&message.payloads, &mut plain);
        self.seal_chain(message, first_inner, plain, rng)
    }

    /// Seals an emitted payload chain starting with a `first_inner` payload under the
    /// header of `message` (whose own payloads are ignored): a test's way to send what
    /// [`IkeMessage`] cannot say, such as an unknown payload marked critical.
    pub fn seal_chain(
        &self,
        message: &IkeMessage,
        first_inner: PayloadType,
        mut plain: Vec<u8>,
        rng: &mut dyn Random,
    ) -> Result<Vec<u8>, SkError> {
        let block = self.encr.block_len();
        let pad_len = (block - (plain.len() + 1) % block) % block;
        plain.resize(plain.len() + pad_len, 0);
        plain.push(pad_len as u8);

        let mut iv = vec![0u8; self.encr.iv_len()];
        rng.fill(&mut iv);
        let sk_len = GENERIC_PAYLOAD_HEADER_LEN + iv.len() + plain.len() + self.icv_len();
        let header = message.header(PayloadType::Sk, sk_len);
        let mut out = header.to_bytes().to_vec();
        out.push(first_inner.into());
        out.push(0);
        out.extend_from_slice(&u16::try_from(sk_len).unwrap_or(u16::MAX).to_be_bytes());
        out.extend_from_slice(&iv);
        if self.encr.is_aead() {
            let (key, nonce) = self.gcm_nonce(&iv)?;
            let aad = out[..HEADER_LEN + GENERIC_PAYLOAD_HEADER_LEN].to_vec();
            Encr::gcm_seal(key, nonce, &aad, &mut plain)?;
            out.extend_from_slice(&plain);
        } else {
            Encr::cbc_encrypt(&self.encr_key, &iv, &mut plain)?;
            out.extend_from_slice(&plain);
            let integ = self
                .integ
                .ok_or(CryptoError::NoProposalChosen("CBC without integrity"))?;
            let icv = integ.compute(&self.integ_key, &out);
            out.extend_from_slice(&icv);
        }
        Ok(out)
    }

    /// Checks the ICV of a message whose first payload is SK, decrypts it and parses the
    /// payloads inside. The returned message holds the inner payloads.
    pub fn open(&self, datagram: &[u8]) -> Result<IkeMessage, SkError> {
        let header = HeaderRepr::parse(&IkeHeader::new_checked(datagram)?)?;
        if header.length as usize != datagram.len() {
            return Err(
                WireError::InvalidSyntax("IKE header length differs from the message").into(),
            );
        }
        if header.next_payload != PayloadType::Sk {
            return Err(SkError::NotEncrypted);
        }
        let sk = GenericPayload::new_checked(&datagram[HEADER_LEN..])?;
        if HEADER_LEN + sk.payload_length() != datagram.len() {
            return Err(WireError::InvalidSyntax("octets after the SK payload").into());
        }
        let first_inner = sk.next_payload();
        let body = sk.body();
        let (iv_len, icv_len) = (self.encr.iv_len(), self.icv_len());
        if body.len() < iv_len + icv_len + 1 {
            return Err(SkError::TooShort);
        }
        let iv = &body[..iv_len];
        let mut data = body[iv_len..].to_vec();
        let plain_len = if self.encr.is_aead() {
            let (key, nonce) = self.gcm_nonce(iv)?;
            let aad = &datagram[..HEADER_LEN + GENERIC_PAYLOAD_HEADER_LEN];
            Encr::gcm_open(key, nonce, aad, &mut data)?
        } else {
            let integ = self
                .integ
                .ok_or(CryptoError::NoProposalChosen("CBC without integrity"))?;
            let (signed, icv) = datagram.split_at(datagram.len() - icv_len);
            if !constant_time_eq(&integ.compute(&self.integ_key, signed), icv) {
                return Err(SkError::IntegrityCheckFailed);
            }
            data.truncate(data.len() - icv_len);
            Encr::cbc_decrypt(&self.encr_key, iv, &mut data)?;
            data.len()
        };
        let plain = &data[..plain_len];
        let (&pad_len, padded) = plain.split_last().ok_or(SkError::TooShort)?;
        let inner_len = padded
            .len()
            .checked_sub(pad_len as usize)
            .ok_or(SkError::BadPadding)?;
        let payloads =
            parse_payloads(first_inner, &padded[..inner_len]).map_err(SkError::InnerPayloads)?;
        Ok(IkeMessage {
            initiator_spi: header.initiator_spi,
            responder_spi: header.responder_spi,
            exchange_type: header.exchange_type,
            flags: header.flags,
            message_id: header.message_id,
            payloads,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eap::{EapRepr, TypeData};
    use crate::ike::crypto::IkeSuite;
    use crate::ike::keys::IkeSaKeys;
    use crate::ike::wire::{ExchangeType, Flags, Payload};
    use proptest::prelude::*;
    use rand::{rngs::StdRng, SeedableRng};

    fn keys(suite: &str) -> IkeSaKeys {
        let s: IkeSuite = suite.parse().unwrap();
        IkeSaKeys::derive(&s, b"skeyseed", &[1; 32], &[2; 32], 0xaa, 0xbb).unwrap()
    }

    const SUITES: [&str; 6] = [
        "aes128gcm16-prfsha256-ecp256",
        "aes256gcm16-prfsha1-curve25519",
        "aes128-sha256-prfsha256-modp2048",
        "aes256-sha256-prfsha256-ecp256",
        "aes128-sha1-prfsha1-modp1024",
        "aes256-sha1-prfsha256-ecp256",
    ];

    fn message(payloads: Vec<Payload>) -> IkeMessage {
        IkeMessage {
            initiator_spi: 0xaa,
            responder_spi: 0xbb,
            exchange_type: ExchangeType::IkeAuth,
            flags: Flags {
                initiator: true,
                ..Flags::default()
            },
            message_id: 1,
            payloads,
        }
    }

    /// An EAP-Response/Identity with no identity, as payload data to seal.
    fn identity_response() -> Vec<u8> {
        EapRepr::Response {
            identifier: 0,
            data: TypeData::Identity(Vec::new()),
        }
        .to_bytes()
        .unwrap()
    }

    #[test]
    fn every_suite_seals_and_opens_and_detects_tampering() {
        let mut rng = StdRng::seed_from_u64(3);
        for suite in SUITES {
            let k = keys(suite);
            let m = message(vec![
                Payload::Eap(identity_response()),
                Payload::VendorId(b"pmip".to_vec()),
            ]);
            let bytes = k.initiator_sk().seal(&m, &mut rng).unwrap();
            assert_eq!(k.initiator_sk().open(&bytes), Ok(m.clone()), "{suite}");
            // The other direction's keys do not open it.
            assert_eq!(
                k.responder_sk().open(&bytes),
                Err(SkError::IntegrityCheckFailed),
                "{suite}"
            );
            // Any altered octet, header and SK header included, is detected.
            for i in [0, 17, 19, 23, HEADER_LEN, HEADER_LEN + 5, bytes.len() - 1] {
                let mut bad = bytes.clone();
                bad[i] ^= 0x01;
                assert!(k.initiator_sk().open(&bad).is_err(), "{suite} octet {i}");
            }
            let mut bad = bytes.clone();
            bad[HEADER_LEN + 10] ^= 0x80;
            assert_eq!(
                k.initiator_sk().open(&bad),
                Err(SkError::IntegrityCheckFailed),
                "{suite}"
            );
        }
    }

    #[test]
    fn gcm_layout_is_rfc_5282() {
        let k = keys("aes128gcm16-prfsha256-ecp256");
        let eap = EapRepr::success_bytes(0);
        let m = message(vec![Payload::Eap(eap.to_vec())]);
        let bytes = k
            .initiator_sk()
            .seal(&m, &mut StdRng::seed_from_u64(1))
            .unwrap();
        // header 28 | SK header 4 | IV 8 | EAP payload 8 + Pad Length 1 | ICV 16
        assert_eq!(bytes.len(), 28 + 4 + 8 + 9 + 16);
        assert_eq!(bytes[16], 46);
        assert_eq!(
            bytes[28], 48,
            "SK's Next Payload names the first inner payload"
        );
        assert_eq!(
            u16::from_be_bytes([bytes[30], bytes[31]]) as usize,
            bytes.len() - 28
        );
        // Decrypt by hand with salt | IV as the nonce and header | SK header as AAD.
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(&k.sk_ei[16..]);
        nonce[4..].copy_from_slice(&bytes[32..40]);
        let mut data = bytes[40..].to_vec();
        let n = Encr::gcm_open(&k.sk_ei[..16], nonce, &bytes[..32], &mut data).unwrap();
        // The EAP payload's generic header, the packet, Pad Length 0.
        assert_eq!(&data[..n], &[&[0, 0, 0, 8][..], &eap, &[0]].concat()[..]);
    }

    #[test]
    fn cbc_layout_pads_to_the_block_and_macs_everything_before_the_icv() {
        let k = keys("aes128-sha256-prfsha256-ecp256");
        let eap = EapRepr::success_bytes(0);
        let m = message(vec![Payload::Eap(eap.to_vec())]);
        let bytes = k
            .initiator_sk()
            .seal(&m, &mut StdRng::seed_from_u64(1))
            .unwrap();
        assert_eq!(bytes.len(), 28 + 4 + 16 + 16 + 16);
        let (signed, icv) = bytes.split_at(bytes.len() - 16);
        assert_eq!(icv, &Integ::HmacSha2_256_128.compute(&k.sk_ai, signed)[..]);
        let mut data = bytes[48..64].to_vec();
        Encr::cbc_decrypt(&k.sk_ei, &bytes[32..48], &mut data).unwrap();
        assert_eq!(&data[..8], &[&[0, 0, 0, 8][..], &eap].concat()[..]);
        assert_eq!(data[15], 7, "Pad Length");
    }

    #[test]
    fn unencrypted_and_short_messages_are_refused() {
        let k = keys("aes128gcm16-prfsha256-ecp256");
        let plain = message(vec![Payload::Eap(vec![1])]).to_bytes();
        assert_eq!(k.initiator_sk().open(&plain), Err(SkError::NotEncrypted));
        let mut m = message(vec![]);
        m.payloads.clear();
        let mut short = m.header(PayloadType::Sk, 4 + 8).to_bytes().to_vec();
        short.extend_from_slice(&[0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(k.initiator_sk().open(&short), Err(SkError::TooShort));
    }

    proptest! {
        #[test]
        fn any_payloads_seal_and_open_under_every_suite(
            payloads in proptest::collection::vec(crate::ike::wire::tests::payload(), 0..6),
            suite in 0..SUITES.len(),
            seed in any::<u64>(),
        ) {
            let k = keys(SUITES[suite]);
            let m = message(payloads);
            let bytes = k.responder_sk().seal(&m, &mut StdRng::seed_from_u64(seed)).unwrap();
            prop_assert_eq!(k.responder_sk().open(&bytes), Ok(m));
        }

        #[test]
        fn opening_garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200), sk in any::<bool>()) {
            let k = keys(if sk { SUITES[0] } else { SUITES[2] });
            let mut b = b;
            if b.len() >= HEADER_LEN {
                b[16] = 46;
                b[17] = 0x20;
                let len = (b.len() as u32).to_be_bytes();
                b[24..28].copy_from_slice(&len);
                if b.len() >= HEADER_LEN + 4 {
                    let l = ((b.len() - HEADER_LEN) as u16).to_be_bytes();
                    b[30..32].copy_from_slice(&l);
                }
            }
            let _ = k.initiator_sk().open(&b);
        }
    }
}
