//! ESP (RFC 4303) security associations in tunnel mode and ESP-in-UDP (RFC 3948): the
//! ePDG's and the UE emulator's user-space IPsec data plane, sealing and opening inner
//! IPv4 and IPv6 packets with the keys of an IKEv2 CHILD_SA. A transport-mode CHILD_SA
//! (RFC 4301 section 4.1) seals the upper-layer payload with its own Next Header
//! ([`OutboundSa::encapsulate`], [`InboundSa::decapsulate`]): 17 for the Mobility Header
//! over UDP, 135 over IPv6.
//!
//! Hand-written because the kernels we run on have no XFRM ESP and no maintained Rust
//! crate offers sans-IO ESP; the cryptography itself is `ring` (AES-GCM, HMAC) and
//! RustCrypto's `aes` + `cbc` (AES-CBC). Suites: AES-GCM with a 16-octet ICV (RFC 4106,
//! 128 and 256 bits) and AES-CBC (RFC 3602, 128 and 256 bits) or ENCR_NULL (RFC 2410,
//! integrity only) with HMAC-SHA2-256-128 (RFC 4868) or HMAC-SHA1-96 (RFC 2404),
//! encrypt-then-MAC. No extended sequence numbers (the IKE code negotiates "No ESN"), so
//! an SA must be rekeyed before 2^32 - 1 packets (RFC 4303 section 3.3.3): past
//! [`REKEY_SEQUENCE_NUMBER`] [`OutboundSa::needs_rekey`] says so, and the application asks
//! IKE for a CREATE_CHILD_SA rekey.
//!
//! An SA is unidirectional: an [`OutboundSa`] seals, an [`InboundSa`] opens and keeps the
//! [`ReplayWindow`]. Both take the raw key octets of one direction of the CHILD_SA KEYMAT
//! ([`crate::ike::ChildSaKeys`]): for AES-GCM the encryption key is the AES key followed
//! by the 4-octet salt (RFC 4106 section 8.1), and there is no integrity key; for
//! AES-CBC the encryption key is the AES key and the integrity key the HMAC key. An ePDG
//! (IKE responder) seals with `responder_to_initiator` under the UE's SPI and opens with
//! `initiator_to_responder` under its own; the UE the other way round.
//!
//! Nothing here does I/O or draws randomness of its own: CBC IVs come from a
//! [`Random`] the caller passes, and AES-GCM uses the sequence number as its explicit IV,
//! which RFC 4106 section 3.1 allows and which never repeats under one key because the
//! sequence number never cycles.

use std::ops::Range;

mod replay;
#[cfg(test)]
mod tests;

pub use replay::{ReplayError, ReplayWindow, REPLAY_WINDOW_SIZE};

use aes::{Aes128, Aes256};
use cbc::cipher::{
    block_padding::NoPadding, BlockDecryptMut, BlockEncryptMut, InnerIvInit, KeyInit,
};
use ring::{aead, hmac};
use thiserror::Error;

use crate::ike::sa::ChildSa;
use crate::ike::{EspSuite, Integ, Random};

/// The UDP port of IKE after NAT detection and of UDP-encapsulated ESP (RFC 3948).
pub const ESP_IN_UDP_PORT: u16 = 4500;
/// The non-ESP marker (RFC 3948 section 2.2): four zero octets before an IKE message on
/// port 4500, where an ESP packet would have its (never zero) SPI.
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];
/// A NAT-keepalive packet (RFC 3948 section 2.3): one octet 0xFF.
pub const NAT_KEEPALIVE: [u8; 1] = [0xff];

/// SPI and Sequence Number.
pub const ESP_HEADER_LEN: usize = 8;
/// Past this sequence number an outbound SA should be replaced: 2^28 packets before the
/// counter would cycle (RFC 4303 section 3.3.3 forbids that without ESN), room for a
/// CREATE_CHILD_SA rekey even at millions of packets a second.
pub const REKEY_SEQUENCE_NUMBER: u32 = u32::MAX - (1 << 28);
/// Next Header value of an inner IPv4 packet (tunnel mode).
pub const NEXT_HEADER_IPV4: u8 = 4;
/// Next Header value of an inner IPv6 packet (tunnel mode).
pub const NEXT_HEADER_IPV6: u8 = 41;
/// Next Header value of a dummy packet (RFC 4303 section 2.6): drop it after opening.
pub const NEXT_HEADER_NO_NEXT_HEADER: u8 = 59;

/// Length of the AES-GCM salt at the end of the encryption key (RFC 4106 section 8.1).
pub const GCM_SALT_LEN: usize = 4;
/// Length of the explicit IV of AES-GCM in ESP (RFC 4106 section 3.1).
pub const GCM_IV_LEN: usize = 8;
/// Length of the AES-GCM ICV we use (ENCR_AES_GCM_16).
pub const GCM_ICV_LEN: usize = 16;
/// AES block length: the CBC IV and the CBC padding boundary.
pub const AES_BLOCK_LEN: usize = 16;

/// Why an ESP packet could not be sealed or opened, or an SA not built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EspError {
    #[error("truncated: {0}")]
    Truncated(&'static str),
    #[error("ESP packet for SPI {found:#010x} reached the SA with SPI {expected:#010x}")]
    WrongSpi { expected: u32, found: u32 },
    #[error("anti-replay: {0}")]
    Replay(#[from] ReplayError),
    #[error("integrity check failed (bad ICV)")]
    BadIcv,
    #[error("padding or pad length is not what RFC 4303 section 2.4 prescribes")]
    BadPadding,
    #[error("invalid length: {0}")]
    InvalidLength(&'static str),
    #[error("the sequence number counter is exhausted; the SA must be rekeyed")]
    SequenceNumberOverflow,
    #[error("unsupported suite: {0}")]
    UnsupportedSuite(&'static str),
    #[error("{what} key is {found} octets, the suite needs {expected}")]
    KeyLength {
        what: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("inner packet is not IPv4 or IPv6 (first octet {0:#04x})")]
    NotAnIpPacket(u8),
    #[error("Next Header {0} is neither IPv4 (4) nor IPv6 (41)")]
    UnexpectedNextHeader(u8),
    #[error("Next Header {next_header} does not match the inner packet's IP version {version}")]
    InnerVersionMismatch { next_header: u8, version: u8 },
}

/// A view of an ESP packet (RFC 4303 section 2): SPI, Sequence Number, then the
/// protected part (IV, ciphertext, ICV), which only an SA can interpret.
#[derive(Debug, Clone)]
pub struct EspPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EspPacket<T> {
    /// Wraps `buffer` once it holds at least the SPI and Sequence Number.
    pub fn new_checked(buffer: T) -> Result<Self, EspError> {
        if buffer.as_ref().len() < ESP_HEADER_LEN {
            return Err(EspError::Truncated(
                "ESP packet shorter than SPI and sequence number",
            ));
        }
        Ok(EspPacket { buffer })
    }

    /// Security Parameters Index.
    pub fn spi(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Sequence Number.
    pub fn sequence_number(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([b[4], b[5], b[6], b[7]])
    }

    /// Everything after the header: IV, ciphertext, ICV.
    pub fn protected(&self) -> &[u8] {
        &self.buffer.as_ref()[ESP_HEADER_LEN..]
    }

    /// The whole packet.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// What a UDP datagram on port 4500 carries (RFC 3948 sections 2.2 and 2.3).
#[derive(Debug, Clone)]
pub enum UdpEncapsulated<'a> {
    /// A UDP-encapsulated ESP packet (SPI not zero).
    Esp(EspPacket<&'a [u8]>),
    /// An IKE message, after the non-ESP marker.
    Ike(&'a [u8]),
    /// A NAT-keepalive: ignore it.
    NatKeepalive,
}

impl<'a> UdpEncapsulated<'a> {
    /// Tells ESP, IKE and NAT-keepalive apart by the first octets of a UDP payload.
    pub fn classify(payload: &'a [u8]) -> Result<Self, EspError> {
        if payload == NAT_KEEPALIVE {
            return Ok(UdpEncapsulated::NatKeepalive);
        }
        match payload.get(..4) {
            None => Err(EspError::Truncated(
                "UDP payload on port 4500 shorter than 4 octets",
            )),
            Some(marker) if marker == NON_ESP_MARKER => Ok(UdpEncapsulated::Ike(&payload[4..])),
            Some(_) => EspPacket::new_checked(payload).map(UdpEncapsulated::Esp),
        }
    }
}

/// The IP version of an inner packet and the Next Header value it travels under.
pub fn next_header_of(ip_packet: &[u8]) -> Result<u8, EspError> {
    let first = *ip_packet
        .first()
        .ok_or(EspError::Truncated("empty inner packet"))?;
    match first >> 4 {
        4 => Ok(NEXT_HEADER_IPV4),
        6 => Ok(NEXT_HEADER_IPV6),
        _ => Err(EspError::NotAnIpPacket(first)),
    }
}

/// Boxed: the expanded key schedules are large beside the AES-GCM key.
enum CbcCipher {
    Aes128(Box<Aes128>),
    Aes256(Box<Aes256>),
}

/// The keyed algorithms of one SA.
enum Transform {
    AesGcm {
        /// Boxed, like the CBC key schedules, to keep the variants of similar size.
        key: Box<aead::LessSafeKey>,
        salt: [u8; GCM_SALT_LEN],
    },
    /// AES-CBC with an HMAC, or ENCR_NULL (RFC 2410, no cipher) with the HMAC alone.
    AesCbc {
        cipher: Option<CbcCipher>,
        integ: Integ,
        integ_key: hmac::Key,
    },
}

impl Transform {
    fn new(suite: EspSuite, encryption_key: &[u8], integrity_key: &[u8]) -> Result<Self, EspError> {
        let key_len = |what, expected: usize, key: &[u8]| {
            if key.len() == expected {
                Ok(())
            } else {
                Err(EspError::KeyLength {
                    what,
                    expected,
                    found: key.len(),
                })
            }
        };
        match (suite.encr.description().aead, suite.integ) {
            (Some(algorithm), None) => {
                let cipher_len = suite.encr.cipher_key_len();
                key_len(
                    "AES-GCM key || salt",
                    cipher_len + GCM_SALT_LEN,
                    encryption_key,
                )?;
                key_len("integrity", 0, integrity_key)?;
                let (key, salt) = encryption_key.split_at(cipher_len);
                let key = aead::UnboundKey::new(algorithm, key)
                    .map_err(|_| EspError::UnsupportedSuite("AES-GCM key rejected"))?;
                let mut s = [0; GCM_SALT_LEN];
                s.copy_from_slice(salt);
                Ok(Transform::AesGcm {
                    key: Box::new(aead::LessSafeKey::new(key)),
                    salt: s,
                })
            }
            (None, Some(integ)) if suite.encr.is_null() => {
                key_len("integrity", integ.key_len(), integrity_key)?;
                key_len("ENCR_NULL", 0, encryption_key)?;
                Ok(Transform::AesCbc {
                    cipher: None,
                    integ,
                    integ_key: hmac::Key::new(integ.hmac_algorithm(), integrity_key),
                })
            }
            (None, Some(integ)) => {
                key_len("integrity", integ.key_len(), integrity_key)?;
                key_len("AES-CBC", suite.encr.cipher_key_len(), encryption_key)?;
                let cipher = match encryption_key.len() {
                    16 => Aes128::new_from_slice(encryption_key)
                        .map(|c| CbcCipher::Aes128(Box::new(c))),
                    32 => Aes256::new_from_slice(encryption_key)
                        .map(|c| CbcCipher::Aes256(Box::new(c))),
                    _ => {
                        return Err(EspError::KeyLength {
                            what: "AES-CBC",
                            expected: suite.encr.cipher_key_len(),
                            found: encryption_key.len(),
                        })
                    }
                }
                .map_err(|_| EspError::UnsupportedSuite("AES-CBC key rejected"))?;
                Ok(Transform::AesCbc {
                    cipher: Some(cipher),
                    integ,
                    integ_key: hmac::Key::new(integ.hmac_algorithm(), integrity_key),
                })
            }
            (Some(_), Some(_)) => Err(EspError::UnsupportedSuite(
                "AES-GCM is combined mode and takes no integrity algorithm",
            )),
            (None, None) => Err(EspError::UnsupportedSuite(
                "AES-CBC needs an integrity algorithm",
            )),
        }
    }

    fn iv_len(&self) -> usize {
        match self {
            Transform::AesGcm { .. } => GCM_IV_LEN,
            Transform::AesCbc { cipher: None, .. } => 0,
            Transform::AesCbc { .. } => AES_BLOCK_LEN,
        }
    }

    fn icv_len(&self) -> usize {
        match self {
            Transform::AesGcm { .. } => GCM_ICV_LEN,
            Transform::AesCbc { integ, .. } => integ.icv_len(),
        }
    }

    /// The ciphertext is a multiple of this (at least 4, RFC 4303 section 2.4).
    fn block_len(&self) -> usize {
        match self {
            Transform::AesGcm { .. } | Transform::AesCbc { cipher: None, .. } => 4,
            Transform::AesCbc { .. } => AES_BLOCK_LEN,
        }
    }

    /// Pad Length for a payload of `len` octets.
    fn pad_len(&self, len: usize) -> usize {
        let block = self.block_len();
        (block - (len + 2) % block) % block
    }

    /// Salt || explicit IV (RFC 4106 section 4); `iv` is always [`GCM_IV_LEN`] octets,
    /// cut from a packet whose length was checked.
    fn nonce(salt: &[u8; GCM_SALT_LEN], iv: &[u8]) -> aead::Nonce {
        let mut n = [0u8; aead::NONCE_LEN];
        n[..GCM_SALT_LEN].copy_from_slice(salt);
        n[GCM_SALT_LEN..].copy_from_slice(iv);
        aead::Nonce::assume_unique_for_key(n)
    }
}

/// Compares in time independent of where the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The sending side of an ESP SA.
pub struct OutboundSa {
    spi: u32,
    suite: EspSuite,
    transform: Transform,
    /// The sequence number of the last packet sent; 0 before the first.
    sequence_number: u32,
}

impl std::fmt::Debug for OutboundSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundSa")
            .field("spi", &format_args!("{:#010x}", self.spi))
            .field("suite", &self.suite)
            .field("sequence_number", &self.sequence_number)
            .finish_non_exhaustive()
    }
}

impl OutboundSa {
    /// An SA that sends under `spi` (the peer's inbound SPI) with the raw keys of one
    /// direction of the CHILD_SA KEYMAT (see the module documentation for the split).
    pub fn new(
        spi: u32,
        suite: EspSuite,
        encryption_key: &[u8],
        integrity_key: &[u8],
    ) -> Result<Self, EspError> {
        Ok(OutboundSa {
            spi,
            suite,
            transform: Transform::new(suite, encryption_key, integrity_key)?,
            sequence_number: 0,
        })
    }

    pub fn spi(&self) -> u32 {
        self.spi
    }

    pub fn suite(&self) -> EspSuite {
        self.suite
    }

    /// The sequence number of the last packet sealed (0 before the first).
    pub fn last_sequence_number(&self) -> u32 {
        self.sequence_number
    }

    /// Whether the sequence number passed [`REKEY_SEQUENCE_NUMBER`]: time to rekey the
    /// CHILD_SA before the counter is exhausted.
    pub fn needs_rekey(&self) -> bool {
        self.sequence_number >= REKEY_SEQUENCE_NUMBER
    }

    /// The length of the ESP packet that sealing `payload_len` octets produces.
    pub fn encapsulated_len(&self, payload_len: usize) -> usize {
        let t = &self.transform;
        ESP_HEADER_LEN + t.iv_len() + payload_len + t.pad_len(payload_len) + 2 + t.icv_len()
    }

    /// Appends to `out` the ESP packet carrying `payload` under `next_header` and returns
    /// its sequence number. `random` supplies the CBC IV (AES-GCM draws nothing).
    pub fn encapsulate<R: Random + ?Sized>(
        &mut self,
        next_header: u8,
        payload: &[u8],
        random: &mut R,
        out: &mut Vec<u8>,
    ) -> Result<u32, EspError> {
        let sequence_number = self
            .sequence_number
            .checked_add(1)
            .ok_or(EspError::SequenceNumberOverflow)?;
        let start = out.len();
        out.reserve(self.encapsulated_len(payload.len()));
        out.extend_from_slice(&self.spi.to_be_bytes());
        out.extend_from_slice(&sequence_number.to_be_bytes());
        let iv_start = out.len();
        let iv_len = self.transform.iv_len();
        match &self.transform {
            Transform::AesGcm { .. } => {
                out.extend_from_slice(&u64::from(sequence_number).to_be_bytes())
            }
            Transform::AesCbc { .. } => {
                out.resize(iv_start + iv_len, 0);
                random.fill(&mut out[iv_start..]);
            }
        }
        let text_start = out.len();
        out.extend_from_slice(payload);
        let pad_len = self.transform.pad_len(payload.len());
        out.extend((1..=pad_len).map(|i| i as u8)); // 1, 2, 3, ... (section 2.4)
        out.push(pad_len as u8); // at most 15
        out.push(next_header);
        match &self.transform {
            Transform::AesGcm { key, salt } => {
                let (header, text) = out[start..].split_at_mut(text_start - start);
                let nonce = Transform::nonce(salt, &header[ESP_HEADER_LEN..]);
                let aad = aead::Aad::from(&header[..ESP_HEADER_LEN]); // SPI || Sequence Number
                match key.seal_in_place_separate_tag(nonce, aad, text) {
                    Ok(tag) => out.extend_from_slice(tag.as_ref()),
                    Err(_) => {
                        out.truncate(start);
                        return Err(EspError::InvalidLength("payload too long for AES-GCM"));
                    }
                }
            }
            Transform::AesCbc {
                cipher,
                integ,
                integ_key,
            } => {
                let (iv, text) = out[iv_start..].split_at_mut(iv_len);
                let text_len = text.len();
                let encrypted = match cipher {
                    None => Ok(true),
                    Some(CbcCipher::Aes128(c)) => {
                        cbc::Encryptor::<Aes128>::inner_iv_slice_init((**c).clone(), iv)
                            .map(|e| e.encrypt_padded_mut::<NoPadding>(text, text_len).is_ok())
                    }
                    Some(CbcCipher::Aes256(c)) => {
                        cbc::Encryptor::<Aes256>::inner_iv_slice_init((**c).clone(), iv)
                            .map(|e| e.encrypt_padded_mut::<NoPadding>(text, text_len).is_ok())
                    }
                };
                if encrypted != Ok(true) {
                    out.truncate(start);
                    return Err(EspError::InvalidLength(
                        "AES-CBC plaintext not block aligned",
                    ));
                }
                let icv_len = integ.icv_len();
                let tag = hmac::sign(integ_key, &out[start..]);
                out.extend_from_slice(&tag.as_ref()[..icv_len]);
            }
        }
        self.sequence_number = sequence_number;
        Ok(sequence_number)
    }

    /// Seals an inner IPv4 or IPv6 packet (Next Header 4 or 41, from its version).
    pub fn encapsulate_ip<R: Random + ?Sized>(
        &mut self,
        ip_packet: &[u8],
        random: &mut R,
        out: &mut Vec<u8>,
    ) -> Result<u32, EspError> {
        let next_header = next_header_of(ip_packet)?;
        self.encapsulate(next_header, ip_packet, random, out)
    }
}

/// What opening an ESP packet yielded besides the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decapsulated {
    pub sequence_number: u32,
    /// 4 (IPv4), 41 (IPv6), or 59 for a dummy packet to drop.
    pub next_header: u8,
}

/// The receiving side of an ESP SA, with its anti-replay window.
pub struct InboundSa {
    spi: u32,
    suite: EspSuite,
    transform: Transform,
    replay_window: ReplayWindow,
}

impl std::fmt::Debug for InboundSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundSa")
            .field("spi", &format_args!("{:#010x}", self.spi))
            .field("suite", &self.suite)
            .field("replay_window", &self.replay_window)
            .finish_non_exhaustive()
    }
}

impl InboundSa {
    /// An SA that receives under our `spi` with the raw keys of one direction of the
    /// CHILD_SA KEYMAT (see the module documentation for the split).
    pub fn new(
        spi: u32,
        suite: EspSuite,
        encryption_key: &[u8],
        integrity_key: &[u8],
    ) -> Result<Self, EspError> {
        Ok(InboundSa {
            spi,
            suite,
            transform: Transform::new(suite, encryption_key, integrity_key)?,
            replay_window: ReplayWindow::new(),
        })
    }

    pub fn spi(&self) -> u32 {
        self.spi
    }

    pub fn suite(&self) -> EspSuite {
        self.suite
    }

    pub fn replay_window(&self) -> &ReplayWindow {
        &self.replay_window
    }

    /// Opens an ESP packet (RFC 4303 section 3.4): SPI, anti-replay check, ICV (and
    /// decryption), window update, then the trailer. `out` is cleared and receives the
    /// payload without padding and trailer (nothing on error). The window moves only for
    /// packets whose ICV verified.
    pub fn decapsulate(
        &mut self,
        packet: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Decapsulated, EspError> {
        out.clear();
        out.extend_from_slice(packet);
        match self.decapsulate_in_place(out) {
            Ok((d, payload)) => {
                out.copy_within(payload.clone(), 0);
                out.truncate(payload.len());
                Ok(d)
            }
            Err(e) => {
                out.clear();
                Err(e)
            }
        }
    }

    /// Like [`InboundSa::decapsulate`], but decrypts in the packet's own buffer and
    /// returns where the payload now lies in it; no copy. On error the buffer's content
    /// is unspecified.
    pub fn decapsulate_in_place(
        &mut self,
        packet: &mut [u8],
    ) -> Result<(Decapsulated, Range<usize>), EspError> {
        let view = EspPacket::new_checked(&*packet)?;
        if view.spi() != self.spi {
            return Err(EspError::WrongSpi {
                expected: self.spi,
                found: view.spi(),
            });
        }
        let sequence_number = view.sequence_number();
        self.replay_window.check(sequence_number)?;
        let (iv_len, icv_len) = (self.transform.iv_len(), self.transform.icv_len());
        // IV, at least the two trailer octets, ICV.
        if packet.len() < ESP_HEADER_LEN + iv_len + 2 + icv_len {
            return Err(EspError::Truncated(
                "ESP packet shorter than IV, trailer and ICV",
            ));
        }
        let text_start = ESP_HEADER_LEN + iv_len;
        let text_end = packet.len() - icv_len;
        let (header, body) = packet.split_at_mut(text_start);
        let iv = &header[ESP_HEADER_LEN..];
        match &self.transform {
            Transform::AesGcm { key, salt } => {
                let nonce = Transform::nonce(salt, iv);
                let aad = aead::Aad::from(&header[..ESP_HEADER_LEN]);
                key.open_in_place(nonce, aad, body)
                    .map_err(|_| EspError::BadIcv)?;
            }
            Transform::AesCbc {
                cipher, integ_key, ..
            } => {
                let tag = {
                    let mut context = hmac::Context::with_key(integ_key);
                    context.update(header);
                    context.update(&body[..text_end - text_start]);
                    context.sign()
                };
                if !constant_time_eq(&tag.as_ref()[..icv_len], &body[text_end - text_start..]) {
                    return Err(EspError::BadIcv);
                }
                let ciphertext = &mut body[..text_end - text_start];
                let block = self.transform.block_len();
                if !ciphertext.len().is_multiple_of(block) {
                    return Err(EspError::InvalidLength(
                        "ciphertext not a multiple of the block",
                    ));
                }
                let decrypted = match cipher {
                    None => Ok(true),
                    Some(CbcCipher::Aes128(c)) => {
                        cbc::Decryptor::<Aes128>::inner_iv_slice_init((**c).clone(), iv)
                            .map(|d| d.decrypt_padded_mut::<NoPadding>(ciphertext).is_ok())
                    }
                    Some(CbcCipher::Aes256(c)) => {
                        cbc::Decryptor::<Aes256>::inner_iv_slice_init((**c).clone(), iv)
                            .map(|d| d.decrypt_padded_mut::<NoPadding>(ciphertext).is_ok())
                    }
                };
                if decrypted != Ok(true) {
                    return Err(EspError::InvalidLength("AES-CBC decryption failed"));
                }
            }
        }
        self.replay_window.accept(sequence_number)?;
        let (next_header, payload_len) = parse_trailer(&packet[text_start..text_end])?;
        Ok((
            Decapsulated {
                sequence_number,
                next_header,
            },
            text_start..text_start + payload_len,
        ))
    }

    /// Opens an ESP packet that must carry an IPv4 or IPv6 packet whose version agrees
    /// with the Next Header. A dummy packet (59) is an error here
    /// ([`EspError::UnexpectedNextHeader`]) and counts as received for anti-replay.
    pub fn decapsulate_ip(
        &mut self,
        packet: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Decapsulated, EspError> {
        let d = self.decapsulate(packet, out)?;
        if d.next_header != NEXT_HEADER_IPV4 && d.next_header != NEXT_HEADER_IPV6 {
            out.clear();
            return Err(EspError::UnexpectedNextHeader(d.next_header));
        }
        let version = out.first().map_or(0, |b| b >> 4);
        let found = next_header_of(out).ok();
        if found != Some(d.next_header) {
            out.clear();
            return Err(EspError::InnerVersionMismatch {
                next_header: d.next_header,
                version,
            });
        }
        Ok(d)
    }
}

/// Which end of the IKE SA that made a CHILD_SA we are: it decides which half of the
/// KEYMAT protects which direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IkeRole {
    /// The UE (it sent IKE_SA_INIT).
    Initiator,
    /// The ePDG.
    Responder,
}

/// The two SAs of an established CHILD_SA: we open with the peer's sending keys under
/// our inbound SPI and seal with ours under the peer's SPI (RFC 7296 section 2.17: the
/// initiator-to-responder keys come first in KEYMAT).
pub fn child_sa_pair(child: &ChildSa, role: IkeRole) -> Result<(InboundSa, OutboundSa), EspError> {
    let (receive, send) = match role {
        IkeRole::Initiator => (
            &child.keys.responder_to_initiator,
            &child.keys.initiator_to_responder,
        ),
        IkeRole::Responder => (
            &child.keys.initiator_to_responder,
            &child.keys.responder_to_initiator,
        ),
    };
    Ok((
        InboundSa::new(
            child.inbound_spi,
            child.suite,
            &receive.encr,
            &receive.integ,
        )?,
        OutboundSa::new(child.outbound_spi, child.suite, &send.encr, &send.integ)?,
    ))
}

/// Checks Padding, Pad Length and Next Header at the end of a decrypted payload (the
/// padding must be 1, 2, 3, ..., RFC 4303 section 2.4); returns Next Header and the
/// length of the payload before them.
fn parse_trailer(plaintext: &[u8]) -> Result<(u8, usize), EspError> {
    let (next_header, pad_len) = match plaintext {
        [.., pad_len, next_header] => (*next_header, usize::from(*pad_len)),
        _ => {
            return Err(EspError::Truncated(
                "no room for Pad Length and Next Header",
            ))
        }
    };
    let payload_len = plaintext
        .len()
        .checked_sub(2 + pad_len)
        .ok_or(EspError::BadPadding)?;
    let padding = &plaintext[payload_len..payload_len + pad_len];
    if !padding
        .iter()
        .enumerate()
        .all(|(i, b)| usize::from(*b) == i + 1)
    {
        return Err(EspError::BadPadding);
    }
    Ok((next_header, payload_len))
}
