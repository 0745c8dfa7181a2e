//! The IKEv2 crypto suites an ePDG offers (RFC 7296 section 3.3.2): encryption
//! (ENCR_AES_GCM_16, ENCR_AES_CBC), integrity (AUTH_HMAC_SHA2_256_128, AUTH_HMAC_SHA1_96),
//! PRFs (PRF_HMAC_SHA2_256, PRF_HMAC_SHA1) and Diffie-Hellman groups 19, 31, 14 and 2,
//! with randomness injected through [`Random`] so that tests are deterministic.
//!
//! The transforms are data, as rustls keeps its cipher suites: one static table per
//! transform type ([`Encr`], [`Prf`], [`Integ`], [`DhGroup`]), each row a description
//! (the names configs use, the IANA transform ID and key length, the key, IV, block and
//! ICV sizes, and the primitive that runs it: ring's AEAD, HMAC or key agreement, or the
//! MODP prime). Adding a transform is adding a row. The suites are combinations of rows:
//! parsing a suite name (`aes128gcm16-prfsha256-ecp256`) looks each part up in the
//! tables, and the default suites ([`IkeSuite::defaults`], [`EspSuite::defaults`]) are the
//! rows marked default, combined in table order (the order of preference).
//!
//! ring does ECDH, X25519, AES-GCM and HMAC; the RustCrypto `aes` and `cbc` crates do
//! AES-CBC, which ring lacks; `num-bigint` does the MODP exponentiation (not constant
//! time: MODP groups are for old UEs, group 2 is off by default).

use std::fmt;
use std::str::FromStr;

use num_bigint::BigUint;
use ring::{aead, agreement, hmac};
use thiserror::Error;

use super::wire::{
    DhGroupId, EncrId, EsnId, IntegId, PrfId, Proposal, ProtocolId, SaPayload, Transform,
    TransformId,
};

/// Where key material comes from: the OS in a node, a seeded generator in a test.
pub trait Random {
    fn fill(&mut self, out: &mut [u8]);
}

impl<R: rand::RngCore + ?Sized> Random for R {
    fn fill(&mut self, out: &mut [u8]) {
        self.fill_bytes(out)
    }
}

/// Why a cryptographic operation failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CryptoError {
    #[error("unsupported transform {0:?}")]
    UnsupportedTransform(TransformId),
    #[error("NO_PROPOSAL_CHOSEN: {0}")]
    NoProposalChosen(&'static str),
    #[error("invalid key exchange data for {0}")]
    InvalidKeyExchangeData(DhGroup),
    #[error("key exchange failed for {0}")]
    KeyExchangeFailed(DhGroup),
    #[error("key of {got} octets where {want} are needed")]
    KeyLength { got: usize, want: usize },
    #[error("prf+ cannot produce {0} octets (255 iterations at most)")]
    PrfPlusTooLong(usize),
    #[error("ciphertext length {0} is not a whole number of blocks")]
    CiphertextLength(usize),
    #[error("integrity check failed")]
    IntegrityCheckFailed,
    #[error("unknown algorithm name {0:?}")]
    UnknownName(String),
    #[error("invalid private key: {0}")]
    InvalidKey(String),
    #[error("signing failed")]
    SigningFailed,
}

/// Constant-time equality of two byte strings.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

// ---------------------------------------------------------------------------------------
// The transform tables

/// Declares one transform type as a table: the enum naming each row (in preference
/// order), the static description each row holds, and what every table shares: `ALL`,
/// the defaults, parsing and displaying the names configs use.
macro_rules! transform_table {
    (
        $(#[$meta:meta])*
        pub enum $name:ident => $desc:ident {
            $(
                $(#[$vmeta:meta])*
                $variant:ident => $row:expr,
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            /// Every row of the table, in its order (the order of preference).
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The row that describes it.
            pub fn description(self) -> &'static $desc {
                match self {
                    $($name::$variant => {
                        static ROW: $desc = $row;
                        &ROW
                    })*
                }
            }

            /// The rows offered when a config names none, in table order.
            pub fn defaults() -> impl Iterator<Item = $name> {
                $name::ALL.iter().copied().filter(|t| t.description().default)
            }
        }

        /// The canonical name (the first of the row's names).
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.description().names[0])
            }
        }

        /// Any of the row's names.
        impl FromStr for $name {
            type Err = CryptoError;
            fn from_str(s: &str) -> Result<Self, CryptoError> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|t| t.description().names.contains(&s))
                    .ok_or_else(|| CryptoError::UnknownName(s.to_string()))
            }
        }
    };
}

/// An encryption transform (Transform Type 1) with its Key Length, as data.
#[derive(Debug)]
pub struct EncrDescription {
    /// The names a config may use (strongSwan's), the canonical one first.
    pub names: &'static [&'static str],
    /// Transform ID.
    pub id: EncrId,
    /// The Key Length attribute (RFC 7296 section 3.3.5), in bits.
    pub key_bits: u16,
    /// Octets of salt after the key in SK_e and in ESP KEYMAT (RFC 5282 section 7.1,
    /// RFC 4106 section 8.1).
    pub salt_len: usize,
    /// Octets of IV in an SK payload or ESP packet.
    pub iv_len: usize,
    /// The plaintext, padding and Pad Length included, is a multiple of this.
    pub block_len: usize,
    /// The combined-mode primitive (ring's AEAD, 16-octet ICV); `None` for a cipher that
    /// takes an integrity transform (AES-CBC, RustCrypto's `cbc`).
    pub aead: Option<&'static aead::Algorithm>,
    /// Its name in Wireshark's IKEv2 decryption table.
    pub wireshark: &'static str,
    /// Offered by default.
    pub default: bool,
}

/// A pseudorandom function (Transform Type 2), as data.
#[derive(Debug)]
pub struct PrfDescription {
    /// The names a config may use (strongSwan's), the canonical one first.
    pub names: &'static [&'static str],
    /// Transform ID.
    pub id: PrfId,
    /// The primitive: ring's HMAC.
    pub hmac: &'static hmac::Algorithm,
    /// Output length in octets, also the length of SK_d, SK_pi and SK_pr (RFC 7296
    /// section 2.14).
    pub output_len: usize,
    /// Offered by default.
    pub default: bool,
}

/// An integrity algorithm (Transform Type 3), as data.
#[derive(Debug)]
pub struct IntegDescription {
    /// The names a config may use (strongSwan's), the canonical one first.
    pub names: &'static [&'static str],
    /// Transform ID.
    pub id: IntegId,
    /// The primitive: ring's HMAC, truncated to `icv_len`.
    pub hmac: &'static hmac::Algorithm,
    /// Key length in octets (SK_ai, SK_ar, ESP integrity keys).
    pub key_len: usize,
    /// Integrity Checksum Data length in octets.
    pub icv_len: usize,
    /// The PRF a suite name with this integrity algorithm and no PRF takes.
    pub prf: Prf,
    /// Its name in Wireshark's IKEv2 decryption table.
    pub wireshark: &'static str,
    /// Offered by default.
    pub default: bool,
}

/// How a Diffie-Hellman group computes.
#[derive(Debug)]
pub enum KeyExchange {
    /// An elliptic curve of ring's. With `sec1_point`, ring's public key is the SEC1
    /// uncompressed point 04 | x | y, and IKE sends x | y (RFC 5903 section 7).
    Ring {
        algorithm: &'static agreement::Algorithm,
        sec1_point: bool,
    },
    /// A MODP group: the prime in hex (generator 2) and the length of the private
    /// exponent drawn, twice the group's strength (RFC 3526 section 8).
    Modp {
        prime: &'static str,
        exponent_len: usize,
    },
}

/// A Diffie-Hellman group (Transform Type 4), as data.
#[derive(Debug)]
pub struct DhDescription {
    /// The names a config may use (strongSwan's), the canonical one first.
    pub names: &'static [&'static str],
    /// Transform ID.
    pub id: DhGroupId,
    /// Length of the Key Exchange Data: the modulus length for MODP, x | y for ECP
    /// (RFC 5903 section 7), 32 octets for Curve25519 (RFC 8031).
    pub public_len: usize,
    /// The primitive.
    pub exchange: KeyExchange,
    /// Offered by default.
    pub default: bool,
}

transform_table! {
    /// An encryption algorithm (Transform Type 1) with its Key Length attribute.
    pub enum Encr => EncrDescription {
        /// ENCR_AES_GCM_16 (RFC 4106, RFC 5282 for IKE), 256-bit key, 16-octet ICV.
        AesGcm16_256 => EncrDescription {
            names: &["aes256gcm16", "aes256gcm"],
            id: EncrId::EncrAesGcm16,
            key_bits: 256,
            salt_len: 4,
            iv_len: 8,
            block_len: 1,
            aead: Some(&aead::AES_256_GCM),
            wireshark: "AES-GCM-256 with 16 octet ICV [RFC5282]",
            default: true,
        },
        /// ENCR_AES_GCM_16, 128-bit key.
        AesGcm16_128 => EncrDescription {
            names: &["aes128gcm16", "aes128gcm"],
            id: EncrId::EncrAesGcm16,
            key_bits: 128,
            salt_len: 4,
            iv_len: 8,
            block_len: 1,
            aead: Some(&aead::AES_128_GCM),
            wireshark: "AES-GCM-128 with 16 octet ICV [RFC5282]",
            default: true,
        },
        /// ENCR_AES_CBC (RFC 3602), 256-bit key; needs an integrity algorithm.
        AesCbc256 => EncrDescription {
            names: &["aes256", "aes256cbc"],
            id: EncrId::EncrAesCbc,
            key_bits: 256,
            salt_len: 0,
            iv_len: 16,
            block_len: 16,
            aead: None,
            wireshark: "AES-CBC-256 [RFC3602]",
            default: true,
        },
        /// ENCR_AES_CBC, 128-bit key.
        AesCbc128 => EncrDescription {
            names: &["aes128", "aes128cbc"],
            id: EncrId::EncrAesCbc,
            key_bits: 128,
            salt_len: 0,
            iv_len: 16,
            block_len: 16,
            aead: None,
            wireshark: "AES-CBC-128 [RFC3602]",
            default: true,
        },
        /// ENCR_NULL (RFC 2410): ESP with integrity and no confidentiality, which is what
        /// RFC 5213 section 4 asks for PMIPv6 signaling; needs an integrity algorithm, has
        /// no Key Length attribute, never protects an IKE SA (RFC 8247 section 2.1), and
        /// is offered only when configured by name.
        Null => EncrDescription {
            names: &["null"],
            id: EncrId::EncrNull,
            key_bits: 0,
            salt_len: 0,
            iv_len: 0,
            block_len: 4,
            aead: None,
            wireshark: "NULL [RFC2410]",
            default: false,
        },
    }
}

transform_table! {
    /// A pseudorandom function (Transform Type 2).
    pub enum Prf => PrfDescription {
        /// PRF_HMAC_SHA2_256 (RFC 4868).
        HmacSha2_256 => PrfDescription {
            names: &["prfsha256", "prfsha2_256"],
            id: PrfId::PrfHmacSha2_256,
            hmac: &hmac::HMAC_SHA256,
            output_len: 32,
            default: true,
        },
        /// PRF_HMAC_SHA1 (RFC 2104).
        HmacSha1 => PrfDescription {
            names: &["prfsha1"],
            id: PrfId::PrfHmacSha1,
            hmac: &hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            output_len: 20,
            default: true,
        },
    }
}

transform_table! {
    /// An integrity algorithm (Transform Type 3).
    pub enum Integ => IntegDescription {
        /// AUTH_HMAC_SHA2_256_128 (RFC 4868).
        HmacSha2_256_128 => IntegDescription {
            names: &["sha256", "sha2_256"],
            id: IntegId::AuthHmacSha2_256_128,
            hmac: &hmac::HMAC_SHA256,
            key_len: 32,
            icv_len: 16,
            prf: Prf::HmacSha2_256,
            wireshark: "HMAC_SHA2_256_128 [RFC4868]",
            default: true,
        },
        /// AUTH_HMAC_SHA1_96 (RFC 2404).
        HmacSha1_96 => IntegDescription {
            names: &["sha1"],
            id: IntegId::AuthHmacSha1_96,
            hmac: &hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            key_len: 20,
            icv_len: 12,
            prf: Prf::HmacSha1,
            wireshark: "HMAC_SHA1_96 [RFC2404]",
            default: true,
        },
    }
}

transform_table! {
    /// A Diffie-Hellman group (Transform Type 4).
    pub enum DhGroup => DhDescription {
        /// Group 19, 256-bit random ECP (RFC 5903).
        Ecp256 => DhDescription {
            names: &["ecp256"],
            id: DhGroupId::Ecp256,
            public_len: 64,
            exchange: KeyExchange::Ring {
                algorithm: &agreement::ECDH_P256,
                sec1_point: true,
            },
            default: true,
        },
        /// Group 31, Curve25519 (RFC 8031).
        Curve25519 => DhDescription {
            names: &["curve25519", "x25519"],
            id: DhGroupId::Curve25519,
            public_len: 32,
            exchange: KeyExchange::Ring {
                algorithm: &agreement::X25519,
                sec1_point: false,
            },
            default: true,
        },
        /// Group 14, 2048-bit MODP (RFC 3526 section 3).
        Modp2048 => DhDescription {
            names: &["modp2048"],
            id: DhGroupId::Modp2048,
            public_len: 256,
            exchange: KeyExchange::Modp {
                prime: MODP_2048_P,
                exponent_len: 48,
            },
            default: true,
        },
        /// Group 2, 1024-bit MODP (RFC 2409 section 6.2): for old UEs, off by default.
        Modp1024 => DhDescription {
            names: &["modp1024"],
            id: DhGroupId::Modp1024,
            public_len: 128,
            exchange: KeyExchange::Modp {
                prime: MODP_1024_P,
                exponent_len: 32,
            },
            default: false,
        },
    }
}

impl Prf {
    pub fn from_id(id: PrfId) -> Option<Self> {
        Prf::ALL.iter().copied().find(|p| p.id() == id)
    }

    pub fn id(self) -> PrfId {
        self.description().id
    }

    fn algorithm(self) -> hmac::Algorithm {
        *self.description().hmac
    }

    /// Output length in octets, also the length of SK_d, SK_pi and SK_pr (section 2.14).
    pub fn output_len(self) -> usize {
        self.description().output_len
    }

    /// The preferred key length: the output length for the HMAC PRFs.
    pub fn key_len(self) -> usize {
        self.output_len()
    }

    /// prf(key, data), with `data` given in parts that are concatenated.
    pub fn prf(self, key: &[u8], data: &[&[u8]]) -> Vec<u8> {
        let key = hmac::Key::new(self.algorithm(), key);
        let mut ctx = hmac::Context::with_key(&key);
        for d in data {
            ctx.update(d);
        }
        ctx.sign().as_ref().to_vec()
    }

    /// prf+ (RFC 7296 section 2.13): T1 | T2 | ... with Tn = prf(K, Tn-1 | S | n), cut to
    /// `len` octets.
    pub fn prf_plus(self, key: &[u8], seed: &[u8], len: usize) -> Result<Vec<u8>, CryptoError> {
        if len > 255 * self.output_len() {
            return Err(CryptoError::PrfPlusTooLong(len));
        }
        let mut out = Vec::with_capacity(len + self.output_len());
        let mut t: Vec<u8> = Vec::new();
        let mut n: u8 = 1;
        while out.len() < len {
            t = self.prf(key, &[&t, seed, &[n]]);
            out.extend_from_slice(&t);
            n = n.wrapping_add(1);
        }
        out.truncate(len);
        Ok(out)
    }
}

impl Integ {
    pub fn from_id(id: IntegId) -> Option<Self> {
        Integ::ALL.iter().copied().find(|i| i.id() == id)
    }

    pub fn id(self) -> IntegId {
        self.description().id
    }

    /// The HMAC behind it (ESP keys its integrity with it).
    pub fn hmac_algorithm(self) -> hmac::Algorithm {
        *self.description().hmac
    }

    /// Key length in octets (SK_ai, SK_ar).
    pub fn key_len(self) -> usize {
        self.description().key_len
    }

    /// Integrity Checksum Data length in octets.
    pub fn icv_len(self) -> usize {
        self.description().icv_len
    }

    /// The truncated HMAC of `data`.
    pub fn compute(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        let tag = hmac::sign(&hmac::Key::new(self.hmac_algorithm(), key), data);
        tag.as_ref()[..self.icv_len()].to_vec()
    }

    /// Checks an ICV in constant time.
    pub fn verify(self, key: &[u8], data: &[u8], icv: &[u8]) -> Result<(), CryptoError> {
        if constant_time_eq(&self.compute(key, data), icv) {
            Ok(())
        } else {
            Err(CryptoError::IntegrityCheckFailed)
        }
    }
}

impl Encr {
    pub const AES_CBC_128: Encr = Encr::AesCbc128;
    pub const AES_CBC_256: Encr = Encr::AesCbc256;
    pub const AES_GCM_16_128: Encr = Encr::AesGcm16_128;
    pub const AES_GCM_16_256: Encr = Encr::AesGcm16_256;

    pub const NULL: Encr = Encr::Null;

    /// From a transform: a row with its ID and its Key Length attribute (none for a
    /// cipher of fixed key length such as ENCR_NULL, RFC 7296 section 3.3.5).
    pub fn from_transform(t: &Transform) -> Option<Self> {
        let key_bits = t.key_length();
        Encr::ALL.iter().copied().find(|e| {
            let d = e.description();
            let wanted = (d.key_bits != 0).then_some(d.key_bits);
            TransformId::Encr(d.id) == t.id && key_bits == wanted
        })
    }

    pub fn transform(self) -> Transform {
        let d = self.description();
        if d.key_bits == 0 {
            Transform::new(TransformId::Encr(d.id))
        } else {
            Transform::with_key_length(TransformId::Encr(d.id), d.key_bits)
        }
    }

    /// ENCR_NULL: integrity only.
    pub fn is_null(self) -> bool {
        self == Encr::Null
    }

    pub fn is_aead(self) -> bool {
        self.description().aead.is_some()
    }

    /// The AES key length in octets.
    pub fn cipher_key_len(self) -> usize {
        usize::from(self.description().key_bits) / 8
    }

    /// Length of SK_ei/SK_er: for GCM the key plus a 4-octet salt (RFC 5282 section 7.1).
    pub fn key_len(self) -> usize {
        self.cipher_key_len() + self.description().salt_len
    }

    /// Length of the IV in an SK payload: the block for CBC, 8 octets for GCM (RFC 5282).
    pub fn iv_len(self) -> usize {
        self.description().iv_len
    }

    /// The plaintext (with padding and Pad Length) must be a multiple of this.
    pub fn block_len(self) -> usize {
        self.description().block_len
    }

    /// The ICV a combined-mode cipher appends (0 for one that takes an integrity transform).
    pub fn icv_len(self) -> usize {
        self.description().aead.map_or(0, aead::Algorithm::tag_len)
    }

    /// AES-CBC encryption in place; `data` must be whole blocks.
    pub fn cbc_encrypt(key: &[u8], iv: &[u8], data: &mut [u8]) -> Result<(), CryptoError> {
        use cbc::cipher::{block_padding::NoPadding, BlockEncryptMut, KeyIvInit};
        let len = data.len();
        if len & 0xf != 0 {
            return Err(CryptoError::CiphertextLength(len));
        }
        let bad_key = || CryptoError::KeyLength {
            got: key.len(),
            want: 16,
        };
        let done = match key.len() {
            16 => cbc::Encryptor::<aes::Aes128>::new_from_slices(key, iv)
                .map_err(|_| bad_key())?
                .encrypt_padded_mut::<NoPadding>(data, len)
                .is_ok(),
            32 => cbc::Encryptor::<aes::Aes256>::new_from_slices(key, iv)
                .map_err(|_| bad_key())?
                .encrypt_padded_mut::<NoPadding>(data, len)
                .is_ok(),
            _ => return Err(bad_key()),
        };
        if done {
            Ok(())
        } else {
            Err(CryptoError::CiphertextLength(len))
        }
    }

    /// AES-CBC decryption in place; `data` must be whole blocks.
    pub fn cbc_decrypt(key: &[u8], iv: &[u8], data: &mut [u8]) -> Result<(), CryptoError> {
        use cbc::cipher::{block_padding::NoPadding, BlockDecryptMut, KeyIvInit};
        let len = data.len();
        if len & 0xf != 0 {
            return Err(CryptoError::CiphertextLength(len));
        }
        let bad_key = || CryptoError::KeyLength {
            got: key.len(),
            want: 16,
        };
        let done = match key.len() {
            16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(key, iv)
                .map_err(|_| bad_key())?
                .decrypt_padded_mut::<NoPadding>(data)
                .is_ok(),
            32 => cbc::Decryptor::<aes::Aes256>::new_from_slices(key, iv)
                .map_err(|_| bad_key())?
                .decrypt_padded_mut::<NoPadding>(data)
                .is_ok(),
            _ => return Err(bad_key()),
        };
        if done {
            Ok(())
        } else {
            Err(CryptoError::CiphertextLength(len))
        }
    }

    fn gcm_key(key: &[u8]) -> Result<aead::LessSafeKey, CryptoError> {
        let alg = match key.len() {
            16 => &aead::AES_128_GCM,
            32 => &aead::AES_256_GCM,
            got => return Err(CryptoError::KeyLength { got, want: 16 }),
        };
        aead::UnboundKey::new(alg, key)
            .map(aead::LessSafeKey::new)
            .map_err(|_| CryptoError::KeyLength {
                got: key.len(),
                want: 16,
            })
    }

    /// AES-GCM sealing in place with a 12-octet nonce; appends the 16-octet tag.
    pub fn gcm_seal(
        key: &[u8],
        nonce: [u8; 12],
        aad: &[u8],
        data: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        let key = Self::gcm_key(key)?;
        let tag = key
            .seal_in_place_separate_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(aad),
                data,
            )
            .map_err(|_| CryptoError::CiphertextLength(data.len()))?;
        data.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// AES-GCM opening in place of ciphertext followed by its tag; returns the plaintext
    /// length, or [`CryptoError::IntegrityCheckFailed`].
    pub fn gcm_open(
        key: &[u8],
        nonce: [u8; 12],
        aad: &[u8],
        data: &mut [u8],
    ) -> Result<usize, CryptoError> {
        let key = Self::gcm_key(key)?;
        key.open_in_place(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(aad),
            data,
        )
        .map(|p| p.len())
        .map_err(|_| CryptoError::IntegrityCheckFailed)
    }
}

/// RFC 2409 section 6.2, the Second Oakley Group.
const MODP_1024_P: &str = concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1",
    "29024E088A67CC74020BBEA63B139B22514A08798E3404DD",
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245",
    "E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381",
    "FFFFFFFFFFFFFFFF"
);

/// RFC 3526 section 3, the 2048-bit MODP group.
const MODP_2048_P: &str = concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1",
    "29024E088A67CC74020BBEA63B139B22514A08798E3404DD",
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245",
    "E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3D",
    "C2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F",
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D",
    "670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9",
    "DE2BCBF6955817183995497CEA956AE515D2261898FA0510",
    "15728E5A8AACAA68FFFFFFFFFFFFFFFF"
);

impl DhGroup {
    pub fn from_id(id: DhGroupId) -> Option<Self> {
        DhGroup::ALL.iter().copied().find(|g| g.id() == id)
    }

    pub fn id(self) -> DhGroupId {
        self.description().id
    }

    /// Length of the Key Exchange Data: the modulus length for MODP, x | y for ECP
    /// (RFC 5903 section 7), 32 octets for Curve25519 (RFC 8031).
    pub fn public_len(self) -> usize {
        self.description().public_len
    }

    /// The prime of a MODP group.
    pub fn modp_prime(self) -> Option<BigUint> {
        match self.description().exchange {
            KeyExchange::Modp { prime, .. } => BigUint::parse_bytes(prime.as_bytes(), 16),
            KeyExchange::Ring { .. } => None,
        }
    }
}

/// Runs ring's key generation on private-key octets we drew ourselves, so that the
/// injected [`Random`] decides the key (ring's own RNG trait is sealed).
#[allow(deprecated)]
fn ring_private_key(
    alg: &'static agreement::Algorithm,
    seed: &[u8],
) -> Result<agreement::EphemeralPrivateKey, ring::error::Unspecified> {
    let rng = ring::test::rand::FixedSliceRandom { bytes: seed };
    agreement::EphemeralPrivateKey::generate(alg, &rng)
}

enum PrivateKey {
    Ring(agreement::EphemeralPrivateKey),
    Modp(BigUint),
}

/// Our half of a Diffie-Hellman exchange: the private key and the public value sent in KE.
pub struct DhPrivate {
    group: DhGroup,
    key: PrivateKey,
    public: Vec<u8>,
}

impl fmt::Debug for DhPrivate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DhPrivate")
            .field("group", &self.group)
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl DhPrivate {
    /// Draws a private key from `rng` and computes the public value.
    pub fn generate(group: DhGroup, rng: &mut dyn Random) -> Result<Self, CryptoError> {
        match group.description().exchange {
            KeyExchange::Ring { .. } => {
                let mut seed = [0u8; 32];
                // A P-256 scalar is out of range with probability 2^-32; draw again then.
                for _ in 0..8 {
                    rng.fill(&mut seed);
                    if let Ok(key) = Self::from_private_octets(group, &seed) {
                        return Ok(key);
                    }
                }
                Err(CryptoError::KeyExchangeFailed(group))
            }
            KeyExchange::Modp { exponent_len, .. } => {
                let mut seed = vec![0u8; exponent_len];
                rng.fill(&mut seed);
                if let Some(first) = seed.first_mut() {
                    *first |= 0x80; // a full-length exponent, never 0 or 1
                }
                Self::from_private_octets(group, &seed)
            }
        }
    }

    /// A key from known private octets: a test vector's, or ones drawn by [`Self::generate`].
    pub fn from_private_octets(group: DhGroup, private: &[u8]) -> Result<Self, CryptoError> {
        let failed = || CryptoError::KeyExchangeFailed(group);
        match group.description().exchange {
            KeyExchange::Ring {
                algorithm,
                sec1_point,
            } => {
                if private.len() != 32 {
                    return Err(CryptoError::KeyLength {
                        got: private.len(),
                        want: 32,
                    });
                }
                let key = ring_private_key(algorithm, private).map_err(|_| failed())?;
                let public = key.compute_public_key().map_err(|_| failed())?;
                let public = if sec1_point {
                    // ring gives the SEC1 uncompressed point 04 | x | y; IKE sends x | y.
                    public.as_ref().get(1..).ok_or_else(failed)?.to_vec()
                } else {
                    public.as_ref().to_vec()
                };
                Ok(DhPrivate {
                    group,
                    key: PrivateKey::Ring(key),
                    public,
                })
            }
            KeyExchange::Modp { .. } => {
                let p = group.modp_prime().ok_or_else(failed)?;
                let x = BigUint::from_bytes_be(private);
                let public = left_pad(
                    &BigUint::from(2u8).modpow(&x, &p).to_bytes_be(),
                    group.public_len(),
                );
                Ok(DhPrivate {
                    group,
                    key: PrivateKey::Modp(x),
                    public,
                })
            }
        }
    }

    pub fn group(&self) -> DhGroup {
        self.group
    }

    /// The Key Exchange Data of our KE payload.
    pub fn public_value(&self) -> &[u8] {
        &self.public
    }

    /// g^ir from the peer's Key Exchange Data (consumes the private key). Peer values are
    /// checked: on the curve (ring), or 1 < y < p-1 for MODP (RFC 6989 section 2.1).
    pub fn shared_secret(self, peer: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let group = self.group;
        let invalid = || CryptoError::InvalidKeyExchangeData(group);
        if peer.len() != group.public_len() {
            return Err(invalid());
        }
        match (self.key, &group.description().exchange) {
            (
                PrivateKey::Ring(key),
                KeyExchange::Ring {
                    algorithm,
                    sec1_point,
                },
            ) => {
                let peer = if *sec1_point {
                    [&[4][..], peer].concat()
                } else {
                    peer.to_vec()
                };
                agreement::agree_ephemeral(
                    key,
                    &agreement::UnparsedPublicKey::new(algorithm, peer),
                    |secret| secret.to_vec(),
                )
                .map_err(|_| invalid())
            }
            (PrivateKey::Modp(x), KeyExchange::Modp { .. }) => {
                let p = group
                    .modp_prime()
                    .ok_or(CryptoError::KeyExchangeFailed(group))?;
                let y = BigUint::from_bytes_be(peer);
                let one = BigUint::from(1u8);
                if y <= one || y >= &p - &one {
                    return Err(invalid());
                }
                Ok(left_pad(
                    &y.modpow(&x, &p).to_bytes_be(),
                    group.public_len(),
                ))
            }
            _ => Err(CryptoError::KeyExchangeFailed(group)),
        }
    }
}

fn left_pad(v: &[u8], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len.saturating_sub(v.len())];
    out.extend_from_slice(v);
    out
}

/// The algorithms of an IKE SA: one proposal's worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IkeSuite {
    pub encr: Encr,
    pub prf: Prf,
    /// None with an AEAD cipher, required otherwise.
    pub integ: Option<Integ>,
    pub dh: DhGroup,
}

impl IkeSuite {
    /// The default an ePDG offers first: AES-GCM-16-256, PRF-HMAC-SHA2-256, ECP-256.
    pub const DEFAULT: IkeSuite = IkeSuite {
        encr: Encr::AES_GCM_16_256,
        prf: Prf::HmacSha2_256,
        integ: None,
        dh: DhGroup::Ecp256,
    };

    /// The suites enabled by default, in preference order: every default DH group, then
    /// PRF, then cipher (an AEAD alone, a CBC cipher with each default integrity
    /// algorithm), in table order. MODP-1024 is not among them.
    pub fn defaults() -> Vec<IkeSuite> {
        let mut out = Vec::new();
        for dh in DhGroup::defaults() {
            for prf in Prf::defaults() {
                out.extend(default_ciphers().map(|(encr, integ)| IkeSuite {
                    encr,
                    prf,
                    integ,
                    dh,
                }));
            }
        }
        out
    }

    /// Whether the combination is one IKE allows: integrity exactly when not AEAD, and
    /// never ENCR_NULL (RFC 8247 section 2.1: an IKE SA is always encrypted).
    pub fn is_valid(&self) -> bool {
        self.encr.is_aead() == self.integ.is_none() && !self.encr.is_null()
    }

    fn transforms(&self) -> Vec<Transform> {
        let mut t = vec![
            self.encr.transform(),
            Transform::new(TransformId::Prf(self.prf.id())),
        ];
        if let Some(integ) = self.integ {
            t.push(Transform::new(TransformId::Integ(integ.id())));
        }
        t.push(Transform::new(TransformId::Dh(self.dh.id())));
        t
    }

    /// This suite as an IKE proposal (no SPI, as in IKE_SA_INIT).
    pub fn proposal(&self, number: u8) -> Proposal {
        Proposal {
            number,
            protocol_id: ProtocolId::Ike,
            spi: Vec::new(),
            transforms: self.transforms(),
        }
    }

    /// The suite a responder's chosen proposal names: exactly one transform of each type.
    pub fn from_chosen_proposal(p: &Proposal) -> Result<Self, CryptoError> {
        if p.protocol_id != ProtocolId::Ike {
            return Err(CryptoError::NoProposalChosen("not an IKE proposal"));
        }
        let (mut encr, mut prf, mut integ, mut dh) = (None, None, None, None);
        for t in &p.transforms {
            let unsupported = || CryptoError::UnsupportedTransform(t.id);
            let slot_taken = || CryptoError::NoProposalChosen("two transforms of one type");
            match t.id {
                TransformId::Encr(_) => {
                    let e = Encr::from_transform(t).ok_or_else(unsupported)?;
                    encr.replace(e).map_or(Ok(()), |_| Err(slot_taken()))?;
                }
                TransformId::Prf(id) => {
                    let f = Prf::from_id(id).ok_or_else(unsupported)?;
                    prf.replace(f).map_or(Ok(()), |_| Err(slot_taken()))?;
                }
                TransformId::Integ(IntegId::None) => {}
                TransformId::Integ(id) => {
                    let i = Integ::from_id(id).ok_or_else(unsupported)?;
                    integ.replace(i).map_or(Ok(()), |_| Err(slot_taken()))?;
                }
                TransformId::Dh(id) => {
                    let g = DhGroup::from_id(id).ok_or_else(unsupported)?;
                    dh.replace(g).map_or(Ok(()), |_| Err(slot_taken()))?;
                }
                _ => return Err(unsupported()),
            }
        }
        let suite = IkeSuite {
            encr: encr.ok_or(CryptoError::NoProposalChosen("no encryption transform"))?,
            prf: prf.ok_or(CryptoError::NoProposalChosen("no PRF transform"))?,
            integ,
            dh: dh.ok_or(CryptoError::NoProposalChosen("no DH transform"))?,
        };
        if suite.is_valid() {
            Ok(suite)
        } else {
            Err(CryptoError::NoProposalChosen(
                "integrity transform missing or with an AEAD cipher",
            ))
        }
    }

    /// Whether an offered proposal includes every transform of this suite.
    pub fn offered_in(&self, p: &Proposal) -> bool {
        let has = |want: &Transform| p.transforms.iter().any(|t| t == want);
        let integ_ok = match self.integ {
            Some(_) => true,
            // An AEAD proposal may carry no integrity transform or INTEG NONE; any other
            // integrity transform in it would be invalid for us.
            None => p
                .transforms
                .iter()
                .all(|t| !matches!(t.id, TransformId::Integ(i) if i != IntegId::None)),
        };
        p.protocol_id == ProtocolId::Ike
            && integ_ok
            && self.transforms().iter().all(|t| {
                // Key Length must match; other attributes an offer carries are compared too.
                has(t)
            })
    }

    /// The responder's choice (section 2.7): the first of our `configured` suites, in our
    /// order, that some offered proposal includes, with that proposal's number.
    pub fn select(configured: &[IkeSuite], offered: &SaPayload) -> Option<(u8, IkeSuite)> {
        configured.iter().find_map(|s| {
            offered
                .proposals
                .iter()
                .find(|p| s.offered_in(p))
                .map(|p| (p.number, *s))
        })
    }

    /// The DH groups offered anywhere in an SA, in the initiator's order.
    pub fn offered_groups(offered: &SaPayload) -> Vec<DhGroupId> {
        let mut out = Vec::new();
        for p in &offered.proposals {
            for t in &p.transforms {
                if let TransformId::Dh(g) = t.id {
                    if !out.contains(&g) {
                        out.push(g);
                    }
                }
            }
        }
        out
    }
}

/// The pairs of a default cipher and its integrity algorithm, in table order: an AEAD
/// cipher alone, a CBC cipher with each default integrity algorithm.
fn default_ciphers() -> impl Iterator<Item = (Encr, Option<Integ>)> {
    Encr::defaults().flat_map(|encr| {
        let integs: Vec<Option<Integ>> = if encr.is_aead() {
            vec![None]
        } else {
            Integ::defaults().map(Some).collect()
        };
        integs.into_iter().map(move |integ| (encr, integ))
    })
}

/// strongSwan-style names, e.g. `aes256gcm16-prfsha256-ecp256` or
/// `aes128-sha256-prfsha256-modp2048`, so a node's config can list its suites: each part
/// looked up in the tables. Without a PRF name a CBC suite takes the PRF its integrity
/// algorithm's row names.
impl FromStr for IkeSuite {
    type Err = CryptoError;
    fn from_str(s: &str) -> Result<Self, CryptoError> {
        let unknown = || CryptoError::UnknownName(s.to_string());
        let mut parts = s.split('-');
        let encr: Encr = parts.next().ok_or_else(unknown)?.parse()?;
        let (mut integ, mut prf, mut dh) = (None, None, None);
        for p in parts {
            if let Ok(v) = p.parse::<Prf>() {
                prf = Some(v);
            } else if let Ok(v) = p.parse::<DhGroup>() {
                dh = Some(v);
            } else {
                integ = Some(p.parse::<Integ>()?);
            }
        }
        let prf = prf
            .or(integ.map(|i: Integ| i.description().prf))
            .ok_or_else(unknown)?;
        let suite = IkeSuite {
            encr,
            prf,
            integ,
            dh: dh.ok_or_else(unknown)?,
        };
        if suite.is_valid() {
            Ok(suite)
        } else {
            Err(unknown())
        }
    }
}

/// The canonical name, which parses back to the same suite: cipher, integrity (if any),
/// PRF, group.
impl fmt::Display for IkeSuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.encr)?;
        if let Some(integ) = self.integ {
            write!(f, "-{integ}")?;
        }
        write!(f, "-{}-{}", self.prf, self.dh)
    }
}

/// The algorithms of an ESP CHILD_SA (no DH: the first CHILD_SA uses the IKE SA's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EspSuite {
    pub encr: Encr,
    pub integ: Option<Integ>,
}

impl EspSuite {
    /// KEYMAT length for one direction: encryption key (with salt for GCM) then integrity.
    pub fn keymat_len_per_direction(&self) -> usize {
        self.encr.key_len() + self.integ.map_or(0, Integ::key_len)
    }

    /// This suite as an ESP proposal with our 4-octet SPI, without ESN.
    pub fn proposal(&self, number: u8, spi: u32) -> Proposal {
        self.proposal_with_dh(number, spi, None)
    }

    /// The proposal of a CREATE_CHILD_SA, with the Diffie-Hellman group of its KE payload
    /// when there is one (RFC 7296 section 1.3: the offer includes KEi's group).
    pub fn proposal_with_dh(&self, number: u8, spi: u32, dh: Option<DhGroup>) -> Proposal {
        let mut transforms = vec![self.encr.transform()];
        if let Some(i) = self.integ {
            transforms.push(Transform::new(TransformId::Integ(i.id())));
        }
        if let Some(g) = dh {
            transforms.push(Transform::new(TransformId::Dh(g.id())));
        }
        transforms.push(Transform::new(TransformId::Esn(EsnId::NoEsn)));
        Proposal {
            number,
            protocol_id: ProtocolId::Esp,
            spi: spi.to_be_bytes().to_vec(),
            transforms,
        }
    }

    /// The suites enabled by default, in preference order: the default ciphers in table
    /// order, an AEAD alone, a CBC cipher with each default integrity algorithm.
    pub fn defaults() -> Vec<EspSuite> {
        default_ciphers()
            .map(|(encr, integ)| EspSuite { encr, integ })
            .collect()
    }

    /// Whether the combination is one ESP allows: integrity exactly when not AEAD (so
    /// ENCR_NULL always has one, RFC 4303 section 3.2).
    pub fn is_valid(&self) -> bool {
        self.encr.is_aead() == self.integ.is_none()
    }

    /// Whether an offered ESP proposal (with a 4-octet SPI) includes this suite and
    /// allows running without extended sequence numbers.
    pub fn offered_in(&self, p: &Proposal) -> bool {
        let has = |want: &Transform| p.transforms.iter().any(|t| t == want);
        let integ_ok = match self.integ {
            Some(i) => has(&Transform::new(TransformId::Integ(i.id()))),
            None => p
                .transforms
                .iter()
                .all(|t| !matches!(t.id, TransformId::Integ(i) if i != IntegId::None)),
        };
        let esn_ok = p
            .transforms
            .iter()
            .all(|t| !matches!(t.id, TransformId::Esn(_)))
            || has(&Transform::new(TransformId::Esn(EsnId::NoEsn)));
        p.protocol_id == ProtocolId::Esp
            && p.spi.len() == 4
            && has(&self.encr.transform())
            && integ_ok
            && esn_ok
    }

    /// The responder's choice: the first of our suites some offered proposal includes,
    /// with that proposal's number and the initiator's SPI.
    pub fn select(configured: &[EspSuite], offered: &SaPayload) -> Option<(u8, u32, EspSuite)> {
        configured.iter().find_map(|s| {
            offered.proposals.iter().find(|p| s.offered_in(p)).map(|p| {
                let spi = u32::from_be_bytes([p.spi[0], p.spi[1], p.spi[2], p.spi[3]]);
                (p.number, spi, *s)
            })
        })
    }

    /// The suite and the responder's SPI from a chosen ESP proposal (a Diffie-Hellman
    /// transform in it is the KE exchange's business).
    pub fn from_chosen_proposal(p: &Proposal) -> Result<(u32, Self), CryptoError> {
        let spi = <[u8; 4]>::try_from(p.spi.as_slice())
            .map_err(|_| CryptoError::NoProposalChosen("ESP proposal without a 4-octet SPI"))?;
        if p.protocol_id != ProtocolId::Esp {
            return Err(CryptoError::NoProposalChosen("not an ESP proposal"));
        }
        let (mut encr, mut integ) = (None, None);
        for t in &p.transforms {
            match t.id {
                TransformId::Encr(_) => {
                    encr = Some(
                        Encr::from_transform(t).ok_or(CryptoError::UnsupportedTransform(t.id))?,
                    )
                }
                TransformId::Integ(IntegId::None) => {}
                TransformId::Integ(id) => {
                    integ = Some(Integ::from_id(id).ok_or(CryptoError::UnsupportedTransform(t.id))?)
                }
                TransformId::Esn(EsnId::NoEsn) => {}
                // The group of a CREATE_CHILD_SA's KE exchange (read with the KE payload).
                TransformId::Dh(_) => {}
                _ => return Err(CryptoError::UnsupportedTransform(t.id)),
            }
        }
        let suite = EspSuite {
            encr: encr.ok_or(CryptoError::NoProposalChosen("no encryption transform"))?,
            integ,
        };
        if suite.is_valid() {
            Ok((u32::from_be_bytes(spi), suite))
        } else {
            Err(CryptoError::NoProposalChosen(
                "integrity transform missing or with an AEAD cipher",
            ))
        }
    }
}

/// Names such as `aes256gcm16` or `aes128-sha256`.
impl FromStr for EspSuite {
    type Err = CryptoError;
    fn from_str(s: &str) -> Result<Self, CryptoError> {
        let mut parts = s.split('-');
        let encr: Encr = parts
            .next()
            .ok_or_else(|| CryptoError::UnknownName(s.to_string()))?
            .parse()?;
        let integ = parts.next().map(str::parse::<Integ>).transpose()?;
        let suite = EspSuite { encr, integ };
        if parts.next().is_none() && suite.is_valid() {
            Ok(suite)
        } else {
            Err(CryptoError::UnknownName(s.to_string()))
        }
    }
}

/// The canonical name, which parses back to the same suite.
impl fmt::Display for EspSuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.encr)?;
        match self.integ {
            Some(integ) => write!(f, "-{integ}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, SeedableRng};

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace([' ', '\n'], "")).unwrap()
    }

    #[test]
    fn hmac_sha2_256_rfc_4231() {
        // Test cases 1 and 2.
        assert_eq!(
            Prf::HmacSha2_256.prf(&[0x0b; 20], &[b"Hi There"]),
            h("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        );
        assert_eq!(
            Prf::HmacSha2_256.prf(b"Jefe", &[b"what do ya want ", b"for nothing?"]),
            h("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        );
        // AUTH_HMAC_SHA2_256_128 is the same, cut to 128 bits (RFC 4868).
        let icv = Integ::HmacSha2_256_128.compute(&[0x0b; 32], b"Hi There");
        assert_eq!(icv.len(), 16);
        assert_eq!(
            icv,
            Prf::HmacSha2_256.prf(&[0x0b; 32], &[b"Hi There"])[..16].to_vec()
        );
    }

    #[test]
    fn hmac_sha1_rfc_2202() {
        assert_eq!(
            Prf::HmacSha1.prf(&[0x0b; 20], &[b"Hi There"]),
            h("b617318655057264e28bc0b6fb378c8ef146be00")
        );
        assert_eq!(
            Prf::HmacSha1.prf(b"Jefe", &[b"what do ya want for nothing?"]),
            h("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79")
        );
        // AUTH_HMAC_SHA1_96 (RFC 2404) keeps the first 96 bits.
        let icv = Integ::HmacSha1_96.compute(&[0x0b; 20], b"Hi There");
        assert_eq!(icv, h("b617318655057264e28bc0b6"));
        assert!(Integ::HmacSha1_96
            .verify(&[0x0b; 20], b"Hi There", &icv)
            .is_ok());
        assert_eq!(
            Integ::HmacSha1_96.verify(&[0x0b; 20], b"Hi there", &icv),
            Err(CryptoError::IntegrityCheckFailed)
        );
    }

    #[test]
    fn prf_plus_is_the_concatenation_rfc_7296_defines() {
        let prf = Prf::HmacSha2_256;
        let out = prf.prf_plus(b"key", b"seed", 70).unwrap();
        let t1 = prf.prf(b"key", &[b"seed", &[1]]);
        let t2 = prf.prf(b"key", &[&t1, b"seed", &[2]]);
        let t3 = prf.prf(b"key", &[&t2, b"seed", &[3]]);
        assert_eq!(out, [t1, t2, t3].concat()[..70].to_vec());
        assert!(prf.prf_plus(b"k", b"s", 255 * 32).is_ok());
        assert_eq!(
            prf.prf_plus(b"k", b"s", 255 * 32 + 1),
            Err(CryptoError::PrfPlusTooLong(255 * 32 + 1))
        );
    }

    const GCM_P: &str = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39";
    const GCM_A: &str = "feedfacedeadbeeffeedfacedeadbeefabaddad2";

    #[test]
    fn aes_gcm_test_cases_4_and_16() {
        // McGrew and Viega, "The Galois/Counter Mode of Operation", test cases 4 and 16.
        // The 12-octet nonce cafebabe|facedbaddecaf888 is exactly RFC 5282's salt | IV.
        let nonce: [u8; 12] = h("cafebabefacedbaddecaf888").try_into().unwrap();
        for (key, ct, tag) in [
            (
                "feffe9928665731c6d6a8f9467308308",
                "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
                "5bc94fbc3221a5db94fae95ae7121a47",
            ),
            (
                "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
                "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
                "76fc6ece0f4e1768cddf8853bb2d551b",
            ),
        ] {
            let mut data = h(GCM_P);
            Encr::gcm_seal(&h(key), nonce, &h(GCM_A), &mut data).unwrap();
            assert_eq!(hex::encode(&data), format!("{ct}{tag}"));
            let n = Encr::gcm_open(&h(key), nonce, &h(GCM_A), &mut data).unwrap();
            assert_eq!(hex::encode(&data[..n]), GCM_P);
            let mut bad = h(&format!("{ct}{tag}"));
            bad[3] ^= 1;
            assert_eq!(
                Encr::gcm_open(&h(key), nonce, &h(GCM_A), &mut bad),
                Err(CryptoError::IntegrityCheckFailed)
            );
        }
    }

    #[test]
    fn aes_cbc_sp_800_38a() {
        // NIST SP 800-38A F.2.1 and F.2.5, first two blocks.
        let iv = h("000102030405060708090a0b0c0d0e0f");
        let plain = h("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51");
        for (key, ct) in [
            (
                "2b7e151628aed2a6abf7158809cf4f3c",
                "7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2",
            ),
            (
                "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
                "f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d",
            ),
        ] {
            let mut data = plain.clone();
            Encr::cbc_encrypt(&h(key), &iv, &mut data).unwrap();
            assert_eq!(hex::encode(&data), ct);
            Encr::cbc_decrypt(&h(key), &iv, &mut data).unwrap();
            assert_eq!(data, plain);
        }
        assert!(Encr::cbc_encrypt(&[0; 16], &iv, &mut [0; 15]).is_err());
        assert!(Encr::cbc_encrypt(&[0; 24], &iv, &mut [0; 16]).is_err());
    }

    #[test]
    fn x25519_rfc_7748_section_6_1() {
        let alice = DhPrivate::from_private_octets(
            DhGroup::Curve25519,
            &h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"),
        )
        .unwrap();
        assert_eq!(
            hex::encode(alice.public_value()),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
        let bob = DhPrivate::from_private_octets(
            DhGroup::Curve25519,
            &h("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"),
        )
        .unwrap();
        assert_eq!(
            hex::encode(bob.public_value()),
            "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
        );
        let bob_public = bob.public_value().to_vec();
        let shared = alice.shared_secret(&bob_public).unwrap();
        assert_eq!(
            hex::encode(shared),
            "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
        );
    }

    #[test]
    fn ecp256_rfc_5903_section_8_1_including_the_ke_payload() {
        use crate::ike::wire::{emit_payloads, KePayload, Payload};
        let i = DhPrivate::from_private_octets(
            DhGroup::Ecp256,
            &h("C88F01F510D9AC3F70A292DAA2316DE544E9AAB8AFE84049C62A9C57862D1433"),
        )
        .unwrap();
        let gi = concat!(
            "DAD0B65394221CF9B051E1FECA5787D098DFE637FC90B9EF945D0C3772581180",
            "5271A0461CDB8252D61F1C456FA3E59AB1F45B33ACCF5F58389E0577B8990BB3"
        );
        assert_eq!(hex::encode_upper(i.public_value()), gi);
        // RFC 5903 section 8.1 gives the initiator's KE payload: 00000048 00130000 | gix | giy.
        let mut ke = Vec::new();
        emit_payloads(
            &[Payload::Ke(KePayload {
                dh_group: DhGroupId::Ecp256,
                key_exchange_data: i.public_value().to_vec(),
            })],
            &mut ke,
        );
        assert_eq!(hex::encode_upper(&ke), format!("0000004800130000{gi}"));
        let r = DhPrivate::from_private_octets(
            DhGroup::Ecp256,
            &h("C6EF9C5D78AE012A011164ACB397CE2088685D8F06BF9BE0B283AB46476BEE53"),
        )
        .unwrap();
        let gr = concat!(
            "D12DFB5289C8D4F81208B70270398C342296970A0BCCB74C736FC7554494BF63",
            "56FBF3CA366CC23E8157854C13C58D6AAC23F046ADA30F8353E74F33039872AB"
        );
        assert_eq!(hex::encode_upper(r.public_value()), gr);
        let girx = "D6840F6B42F6EDAFD13116E0E12565202FEF8E9ECE7DCE03812464D04B9442DE";
        assert_eq!(hex::encode_upper(i.shared_secret(&h(gr)).unwrap()), girx);
        assert_eq!(hex::encode_upper(r.shared_secret(&h(gi)).unwrap()), girx);
    }

    #[test]
    fn ecp256_rejects_a_point_off_the_curve() {
        let mut rng = StdRng::seed_from_u64(1);
        let k = DhPrivate::generate(DhGroup::Ecp256, &mut rng).unwrap();
        let mut bad = k.public_value().to_vec();
        bad[63] ^= 1;
        assert_eq!(
            k.shared_secret(&bad),
            Err(CryptoError::InvalidKeyExchangeData(DhGroup::Ecp256))
        );
    }

    #[test]
    fn modp_primes_are_the_rfc_safe_primes() {
        // The typed hex is checked by arithmetic: p is a safe prime with generator 2 of
        // the order-q subgroup (q = (p-1)/2), so 2^q = 1 mod p, Fermat holds for base 3,
        // and 2^10 is itself (a known exponentiation).
        for (group, bits) in [(DhGroup::Modp1024, 1024), (DhGroup::Modp2048, 2048)] {
            let p = group.modp_prime().unwrap();
            assert_eq!(p.bits(), bits);
            let one = BigUint::from(1u8);
            let q = (&p - &one) >> 1;
            assert_eq!(BigUint::from(2u8).modpow(&q, &p), one);
            assert_eq!(BigUint::from(3u8).modpow(&(&p - &one), &p), one);
            let k = DhPrivate::from_private_octets(group, &[10]).unwrap();
            let mut want = vec![0u8; group.public_len()];
            let n = want.len();
            want[n - 2] = 4; // 2^10 = 0x0400
            assert_eq!(k.public_value(), &want[..]);
        }
    }

    #[test]
    fn every_group_agrees_with_itself_and_draws_from_the_injected_random() {
        for group in [
            DhGroup::Modp1024,
            DhGroup::Modp2048,
            DhGroup::Ecp256,
            DhGroup::Curve25519,
        ] {
            let a = DhPrivate::generate(group, &mut StdRng::seed_from_u64(7)).unwrap();
            let a_again = DhPrivate::generate(group, &mut StdRng::seed_from_u64(7)).unwrap();
            assert_eq!(a.public_value(), a_again.public_value(), "{group}");
            let b = DhPrivate::generate(group, &mut StdRng::seed_from_u64(8)).unwrap();
            assert_eq!(a.public_value().len(), group.public_len());
            let (pa, pb) = (a.public_value().to_vec(), b.public_value().to_vec());
            let s1 = a.shared_secret(&pb).unwrap();
            let s2 = b.shared_secret(&pa).unwrap();
            assert_eq!(s1, s2, "{group}");
            assert!(a_again.shared_secret(&pb[1..]).is_err());
        }
        let k = DhPrivate::generate(DhGroup::Modp1024, &mut StdRng::seed_from_u64(1)).unwrap();
        let mut one = vec![0u8; 128];
        one[127] = 1;
        assert!(k.shared_secret(&one).is_err());
    }

    #[test]
    fn suites_round_trip_through_proposals_and_names() {
        for s in IkeSuite::defaults() {
            assert!(s.is_valid());
            let p = s.proposal(3);
            assert_eq!(IkeSuite::from_chosen_proposal(&p), Ok(s));
            assert!(s.offered_in(&p));
        }
        assert_eq!(
            "aes256gcm16-prfsha256-ecp256".parse::<IkeSuite>(),
            Ok(IkeSuite::DEFAULT)
        );
        assert_eq!(
            "aes128-sha1-modp1024".parse::<IkeSuite>(),
            Ok(IkeSuite {
                encr: Encr::AES_CBC_128,
                prf: Prf::HmacSha1,
                integ: Some(Integ::HmacSha1_96),
                dh: DhGroup::Modp1024
            })
        );
        assert!("aes128-prfsha1-modp1024".parse::<IkeSuite>().is_err());
        assert!("aes128gcm16-sha1-prfsha1-ecp256"
            .parse::<IkeSuite>()
            .is_err());
    }

    #[test]
    fn esp_suites_negotiate_with_the_initiators_spi() {
        let offered = SaPayload {
            proposals: vec![
                "aes128-sha1"
                    .parse::<EspSuite>()
                    .unwrap()
                    .proposal(1, 0x1234_5678),
                "aes256gcm16"
                    .parse::<EspSuite>()
                    .unwrap()
                    .proposal(2, 0x9abc_def0),
            ],
        };
        let (n, spi, s) = EspSuite::select(&EspSuite::defaults(), &offered).unwrap();
        assert_eq!((n, spi), (2, 0x9abc_def0));
        assert_eq!(s.encr, Encr::AES_GCM_16_256);
        let answer = s.proposal(n, 0x0102_0304);
        assert_eq!(
            EspSuite::from_chosen_proposal(&answer),
            Ok((0x0102_0304, s))
        );
        for e in EspSuite::defaults() {
            assert!(e.offered_in(&e.proposal(1, 7)));
            assert_eq!(
                EspSuite::from_chosen_proposal(&e.proposal(1, 7)),
                Ok((7, e))
            );
        }
        let mut ike = IkeSuite::DEFAULT.proposal(1);
        ike.spi = vec![0; 4];
        assert_eq!(
            EspSuite::select(
                &EspSuite::defaults(),
                &SaPayload {
                    proposals: vec![ike]
                }
            ),
            None
        );
        assert!("aes128gcm16-sha1".parse::<EspSuite>().is_err());
    }

    #[test]
    fn responder_picks_its_own_preference_among_the_offers() {
        let offered = SaPayload {
            proposals: vec![
                "aes128-sha256-prfsha256-modp2048"
                    .parse::<IkeSuite>()
                    .unwrap()
                    .proposal(1),
                "aes128gcm16-prfsha256-ecp256"
                    .parse::<IkeSuite>()
                    .unwrap()
                    .proposal(2),
            ],
        };
        let ours = IkeSuite::defaults();
        let (n, s) = IkeSuite::select(&ours, &offered).unwrap();
        assert_eq!(n, 2);
        assert_eq!(s.encr, Encr::AES_GCM_16_128);
        assert_eq!(
            IkeSuite::offered_groups(&offered),
            vec![DhGroupId::Modp2048, DhGroupId::Ecp256]
        );
        let only_1024 = SaPayload {
            proposals: vec!["aes128-sha1-modp1024"
                .parse::<IkeSuite>()
                .unwrap()
                .proposal(1)],
        };
        assert_eq!(IkeSuite::select(&ours, &only_1024), None);
    }

    /// Every row of every table is consistent with itself and with the wire: its ID
    /// leads back to it, its names parse back to it, its sizes agree with its RFC.
    #[test]
    fn every_table_row_round_trips_through_its_id_and_names() {
        for &e in Encr::ALL {
            let d = e.description();
            assert_eq!(Encr::from_transform(&e.transform()), Some(e));
            assert_eq!(e.to_string(), d.names[0]);
            for name in d.names {
                assert_eq!(name.parse::<Encr>(), Ok(e));
            }
            assert_eq!(e.key_len(), usize::from(d.key_bits) / 8 + d.salt_len);
            // RFC 5282 section 7.1: GCM keys carry a 4-octet salt, 8-octet IV, 16-octet ICV.
            if e.is_aead() {
                assert_eq!((d.salt_len, d.iv_len, e.icv_len()), (4, 8, 16));
            } else if e.is_null() {
                // RFC 2410: no key, no IV, no Key Length attribute; ESP's 4-octet alignment.
                assert_eq!((d.key_bits, d.iv_len, d.block_len), (0, 0, 4));
                assert!(e.transform().attributes.is_empty());
            } else {
                assert_eq!(
                    (d.salt_len, d.iv_len, d.block_len, e.icv_len()),
                    (0, 16, 16, 0)
                );
            }
        }
        for &p in Prf::ALL {
            assert_eq!(Prf::from_id(p.id()), Some(p));
            assert_eq!(p.to_string().parse::<Prf>(), Ok(p));
            assert_eq!(p.prf(b"k", &[b"d"]).len(), p.output_len());
        }
        for &i in Integ::ALL {
            assert_eq!(Integ::from_id(i.id()), Some(i));
            assert_eq!(i.to_string().parse::<Integ>(), Ok(i));
            assert_eq!(i.compute(&vec![0; i.key_len()], b"d").len(), i.icv_len());
        }
        for &g in DhGroup::ALL {
            assert_eq!(DhGroup::from_id(g.id()), Some(g));
            assert_eq!(g.to_string().parse::<DhGroup>(), Ok(g));
            if let Some(p) = g.modp_prime() {
                assert_eq!(p.bits() as usize, g.public_len() * 8);
            }
        }
        assert_eq!("x25519".parse::<DhGroup>(), Ok(DhGroup::Curve25519));
        assert_eq!(
            "aes9".parse::<Encr>(),
            Err(CryptoError::UnknownName("aes9".into()))
        );
        assert_eq!(
            Encr::from_transform(&Transform::with_key_length(
                TransformId::Encr(EncrId::EncrAesCbc),
                192
            )),
            None
        );
    }

    /// ENCR_NULL with HMAC-SHA2-256-128 is an ESP suite when named, never a default and
    /// never an IKE suite; its proposal carries no Key Length and reads back the same.
    #[test]
    fn encr_null_is_an_esp_suite_only_when_configured() {
        let null: EspSuite = "null-sha256".parse().unwrap();
        assert_eq!(null.encr, Encr::NULL);
        assert_eq!(null.integ, Some(Integ::HmacSha2_256_128));
        assert_eq!(null.keymat_len_per_direction(), 32);
        assert!("null".parse::<EspSuite>().is_err(), "NULL needs integrity");
        assert!("null-sha256-prfsha256-ecp256".parse::<IkeSuite>().is_err());
        assert!(!EspSuite::defaults().iter().any(|s| s.encr.is_null()));
        let p = null.proposal(1, 0x1234_5678);
        let encr = p
            .transforms
            .iter()
            .find(|t| matches!(t.id, TransformId::Encr(_)))
            .unwrap();
        assert_eq!(encr.id, TransformId::Encr(EncrId::EncrNull));
        assert!(encr.attributes.is_empty());
        assert_eq!(EspSuite::from_chosen_proposal(&p), Ok((0x1234_5678, null)));
        let offered = SaPayload { proposals: vec![p] };
        assert_eq!(
            EspSuite::select(&EspSuite::defaults(), &offered),
            None,
            "not offered unless configured"
        );
        assert_eq!(
            EspSuite::select(&[null], &offered),
            Some((1, 0x1234_5678, null))
        );
        let ike = IkeSuite {
            encr: Encr::NULL,
            prf: Prf::HmacSha2_256,
            integ: Some(Integ::HmacSha2_256_128),
            dh: DhGroup::Ecp256,
        };
        assert!(!ike.is_valid());
        assert!(IkeSuite::from_chosen_proposal(&ike.proposal(1)).is_err());
    }

    /// The default lists come from the tables: every default row combined, in table
    /// order, MODP-1024 left out; each suite's name parses back to it.
    #[test]
    fn default_suites_are_the_tables_defaults_and_their_names_parse_back() {
        let ike = IkeSuite::defaults();
        assert_eq!(ike.len(), 3 * 2 * (2 + 2 * 2));
        assert_eq!(ike[0], IkeSuite::DEFAULT);
        assert_eq!(
            IkeSuite::DEFAULT.to_string(),
            "aes256gcm16-prfsha256-ecp256"
        );
        assert!(ike.iter().all(|s| s.dh != DhGroup::Modp1024));
        for s in &ike {
            assert_eq!(s.to_string().parse::<IkeSuite>(), Ok(*s), "{s}");
        }
        let esp = EspSuite::defaults();
        let names: Vec<String> = esp.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            [
                "aes256gcm16",
                "aes128gcm16",
                "aes256-sha256",
                "aes256-sha1",
                "aes128-sha256",
                "aes128-sha1"
            ]
        );
        for s in &esp {
            assert_eq!(s.to_string().parse::<EspSuite>(), Ok(*s));
        }
    }
}
