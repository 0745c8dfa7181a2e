//! The IKEv2 wire format (RFC 7296 section 3): the IKE header, the generic payload chain
//! and every payload an ePDG meets, each as a typed representation that parses (checking
//! every length) and emits.
//!
//! Why not `ipsec-parser`: it is parse-only, lacks the CP (47) and EAP (48) payloads that
//! carry the whole S2b attach, and would leave us two representations of each payload (its
//! parse types and our emit types). One codec that both parses and emits lets every payload
//! round-trip under proptest, so we write our own.

use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;

use crate::registry::registry;

/// Length of the fixed IKE header (RFC 7296 section 3.1).
pub const HEADER_LEN: usize = 28;
/// Length of the generic payload header (RFC 7296 section 3.2).
pub const GENERIC_PAYLOAD_HEADER_LEN: usize = 4;

/// Why bytes are not a valid IKEv2 message; each maps to the notify an IKE peer answers.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    #[error("INVALID_SYNTAX: truncated, {needed} octets needed, {available} present")]
    Truncated { needed: usize, available: usize },
    #[error("INVALID_MAJOR_VERSION: major version {0}")]
    InvalidMajorVersion(u8),
    #[error("INVALID_SYNTAX: {0}")]
    InvalidSyntax(&'static str),
    #[error("UNSUPPORTED_CRITICAL_PAYLOAD: payload type {0}")]
    UnsupportedCriticalPayload(u8),
}

impl WireError {
    /// The error notify type (RFC 7296 section 3.10.1) that reports this error.
    pub fn notify_type(&self) -> NotifyType {
        match self {
            WireError::Truncated { .. } | WireError::InvalidSyntax(_) => NotifyType::InvalidSyntax,
            WireError::InvalidMajorVersion(_) => NotifyType::InvalidMajorVersion,
            WireError::UnsupportedCriticalPayload(_) => NotifyType::UnsupportedCriticalPayload,
        }
    }
}

fn need(bytes: &[u8], needed: usize) -> Result<(), WireError> {
    if bytes.len() < needed {
        Err(WireError::Truncated {
            needed,
            available: bytes.len(),
        })
    } else {
        Ok(())
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn len16(len: usize) -> [u8; 2] {
    u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes()
}

registry! {
    /// Exchange types (RFC 7296 section 3.1).
    pub enum ExchangeType: u8 {
        IkeSaInit = 34 => "IKE_SA_INIT",
        IkeAuth = 35 => "IKE_AUTH",
        CreateChildSa = 36 => "CREATE_CHILD_SA",
        Informational = 37 => "INFORMATIONAL",
    }
}

registry! {
    /// Payload types (RFC 7296 section 3.2), displayed in the RFC's notation.
    pub enum PayloadType: u8 {
        NoNextPayload = 0 => "No Next Payload",
        /// Security Association.
        Sa = 33 => "SA",
        /// Key Exchange.
        Ke = 34 => "KE",
        /// Identification - Initiator.
        IdI = 35 => "IDi",
        /// Identification - Responder.
        IdR = 36 => "IDr",
        /// Certificate.
        Cert = 37 => "CERT",
        /// Certificate Request.
        CertReq = 38 => "CERTREQ",
        /// Authentication.
        Auth = 39 => "AUTH",
        /// Nonce.
        Nonce = 40 => "Ni, Nr",
        /// Notify.
        Notify = 41 => "N",
        /// Delete.
        Delete = 42 => "D",
        /// Vendor ID.
        VendorId = 43 => "V",
        /// Traffic Selector - Initiator.
        TsI = 44 => "TSi",
        /// Traffic Selector - Responder.
        TsR = 45 => "TSr",
        /// Encrypted and Authenticated.
        Sk = 46 => "SK",
        /// Configuration.
        Cp = 47 => "CP",
        /// Extensible Authentication.
        Eap = 48 => "EAP",
    }
}

registry! {
    /// Security protocol identifiers (RFC 7296 section 3.3.1).
    pub enum ProtocolId: u8 {
        Ike = 1 => "IKE",
        Ah = 2 => "AH",
        Esp = 3 => "ESP",
    }
}

registry! {
    /// Transform Type 1 identifiers: encryption algorithms (RFC 7296 section 3.3.2 and
    /// the IANA "Transform Type 1" registry).
    pub enum EncrId: u16 {
        EncrDes = 2 => "ENCR_DES",
        Encr3Des = 3 => "ENCR_3DES",
        EncrNull = 11 => "ENCR_NULL",
        EncrAesCbc = 12 => "ENCR_AES_CBC",
        EncrAesCtr = 13 => "ENCR_AES_CTR",
        EncrAesCcm8 = 14 => "ENCR_AES_CCM_8",
        EncrAesGcm8 = 18 => "ENCR_AES_GCM_8",
        EncrAesGcm12 = 19 => "ENCR_AES_GCM_12",
        EncrAesGcm16 = 20 => "ENCR_AES_GCM_16",
        EncrChacha20Poly1305 = 28 => "ENCR_CHACHA20_POLY1305",
    }
}

registry! {
    /// Transform Type 2 identifiers: pseudorandom functions (RFC 7296 section 3.3.2).
    pub enum PrfId: u16 {
        PrfHmacMd5 = 1 => "PRF_HMAC_MD5",
        PrfHmacSha1 = 2 => "PRF_HMAC_SHA1",
        PrfAes128Xcbc = 4 => "PRF_AES128_XCBC",
        PrfHmacSha2_256 = 5 => "PRF_HMAC_SHA2_256",
        PrfHmacSha2_384 = 6 => "PRF_HMAC_SHA2_384",
        PrfHmacSha2_512 = 7 => "PRF_HMAC_SHA2_512",
    }
}

registry! {
    /// Transform Type 3 identifiers: integrity algorithms (RFC 7296 section 3.3.2).
    pub enum IntegId: u16 {
        None = 0 => "NONE",
        AuthHmacMd5_96 = 1 => "AUTH_HMAC_MD5_96",
        AuthHmacSha1_96 = 2 => "AUTH_HMAC_SHA1_96",
        AuthAesXcbc96 = 5 => "AUTH_AES_XCBC_96",
        AuthHmacSha2_256_128 = 12 => "AUTH_HMAC_SHA2_256_128",
        AuthHmacSha2_384_192 = 13 => "AUTH_HMAC_SHA2_384_192",
        AuthHmacSha2_512_256 = 14 => "AUTH_HMAC_SHA2_512_256",
    }
}

registry! {
    /// Transform Type 4 identifiers: Diffie-Hellman groups (RFC 7296 section 3.3.2 and the
    /// IANA "Transform Type 4" registry, whose descriptions are the identifiers here).
    pub enum DhGroupId: u16 {
        None = 0 => "NONE",
        /// RFC 2409 section 6.2.
        Modp1024 = 2 => "1024-bit MODP Group",
        /// RFC 3526 section 2.
        Modp1536 = 5 => "1536-bit MODP Group",
        /// RFC 3526 section 3.
        Modp2048 = 14 => "2048-bit MODP Group",
        /// RFC 3526 section 4.
        Modp3072 = 15 => "3072-bit MODP Group",
        /// RFC 5903.
        Ecp256 = 19 => "256-bit random ECP group",
        /// RFC 5903.
        Ecp384 = 20 => "384-bit random ECP group",
        /// RFC 8031.
        Curve25519 = 31 => "Curve25519",
    }
}

registry! {
    /// Transform Type 5 identifiers: Extended Sequence Numbers (RFC 7296 section 3.3.2).
    pub enum EsnId: u16 {
        NoEsn = 0 => "No Extended Sequence Numbers",
        Esn = 1 => "Extended Sequence Numbers",
    }
}

registry! {
    /// Transform types (RFC 7296 section 3.3.2).
    pub enum TransformType: u8 {
        /// Encryption Algorithm.
        Encr = 1 => "ENCR",
        /// Pseudorandom Function.
        Prf = 2 => "PRF",
        /// Integrity Algorithm.
        Integ = 3 => "INTEG",
        /// Diffie-Hellman group.
        Dh = 4 => "D-H",
        /// Extended Sequence Numbers.
        Esn = 5 => "ESN",
    }
}

registry! {
    /// Transform attribute types (RFC 7296 section 3.3.5).
    pub enum TransformAttributeType: u16 {
        /// Key Length in bits, TV format.
        KeyLength = 14 => "Key Length",
    }
}

registry! {
    /// Identification types (RFC 7296 section 3.5).
    pub enum IdType: u8 {
        IdIpv4Addr = 1 => "ID_IPV4_ADDR",
        IdFqdn = 2 => "ID_FQDN",
        IdRfc822Addr = 3 => "ID_RFC822_ADDR",
        IdIpv6Addr = 5 => "ID_IPV6_ADDR",
        IdDerAsn1Dn = 9 => "ID_DER_ASN1_DN",
        IdDerAsn1Gn = 10 => "ID_DER_ASN1_GN",
        IdKeyId = 11 => "ID_KEY_ID",
    }
}

registry! {
    /// Certificate encodings (RFC 7296 section 3.6).
    pub enum CertEncoding: u8 {
        X509CertificateSignature = 4 => "X.509 Certificate - Signature",
        RawRsaKey = 11 => "Raw RSA Key",
        HashAndUrlOfX509Certificate = 12 => "Hash and URL of X.509 certificate",
        HashAndUrlOfX509Bundle = 13 => "Hash and URL of X.509 bundle",
    }
}

registry! {
    /// Authentication methods (RFC 7296 section 3.8, RFC 4754 section 7, RFC 7427 section 7).
    pub enum AuthMethod: u8 {
        RsaDigitalSignature = 1 => "RSA Digital Signature",
        SharedKeyMessageIntegrityCode = 2 => "Shared Key Message Integrity Code",
        DssDigitalSignature = 3 => "DSS Digital Signature",
        EcdsaSha256P256 = 9 => "ECDSA with SHA-256 on the P-256 curve",
        EcdsaSha384P384 = 10 => "ECDSA with SHA-384 on the P-384 curve",
        EcdsaSha512P521 = 11 => "ECDSA with SHA-512 on the P-521 curve",
        DigitalSignature = 14 => "Digital Signature",
    }
}

registry! {
    /// Notify message types (RFC 7296 section 3.10.1, RFC 4555, RFC 5998, RFC 7383,
    /// RFC 7427, and the private error types of TS 24.302 section 8.1.2.2 that an ePDG
    /// sends), below 16384 errors, from 16384 on status types.
    pub enum NotifyType: u16 {
        UnsupportedCriticalPayload = 1 => "UNSUPPORTED_CRITICAL_PAYLOAD",
        InvalidIkeSpi = 4 => "INVALID_IKE_SPI",
        InvalidMajorVersion = 5 => "INVALID_MAJOR_VERSION",
        InvalidSyntax = 7 => "INVALID_SYNTAX",
        InvalidMessageId = 9 => "INVALID_MESSAGE_ID",
        InvalidSpi = 11 => "INVALID_SPI",
        NoProposalChosen = 14 => "NO_PROPOSAL_CHOSEN",
        InvalidKePayload = 17 => "INVALID_KE_PAYLOAD",
        AuthenticationFailed = 24 => "AUTHENTICATION_FAILED",
        SinglePairRequired = 34 => "SINGLE_PAIR_REQUIRED",
        NoAdditionalSas = 35 => "NO_ADDITIONAL_SAS",
        InternalAddressFailure = 36 => "INTERNAL_ADDRESS_FAILURE",
        FailedCpRequired = 37 => "FAILED_CP_REQUIRED",
        TsUnacceptable = 38 => "TS_UNACCEPTABLE",
        InvalidSelectors = 39 => "INVALID_SELECTORS",
        TemporaryFailure = 43 => "TEMPORARY_FAILURE",
        ChildSaNotFound = 44 => "CHILD_SA_NOT_FOUND",
        /// TS 24.302 section 8.1.2.2 private error types, from here to
        /// UNAUTHENTICATED_EMERGENCY_NOT_SUPPORTED.
        PdnConnectionRejection = 8192 => "PDN_CONNECTION_REJECTION",
        MaxConnectionReached = 8193 => "MAX_CONNECTION_REACHED",
        SemanticErrorInTheTftOperation = 8241 => "SEMANTIC_ERROR_IN_THE_TFT_OPERATION",
        SyntacticalErrorInTheTftOperation = 8242 => "SYNTACTICAL_ERROR_IN_THE_TFT_OPERATION",
        SemanticErrorsInPacketFilters = 8244 => "SEMANTIC_ERRORS_IN_PACKET_FILTERS",
        SyntacticalErrorsInPacketFilters = 8245 => "SYNTACTICAL_ERRORS_IN_PACKET_FILTERS",
        Non3gppAccessToEpcNotAllowed = 9000 => "NON_3GPP_ACCESS_TO_EPC_NOT_ALLOWED",
        UserUnknown = 9001 => "USER_UNKNOWN",
        NoApnSubscription = 9002 => "NO_APN_SUBSCRIPTION",
        AuthorizationRejected = 9003 => "AUTHORIZATION_REJECTED",
        IllegalMe = 9006 => "ILLEGAL_ME",
        NetworkFailure = 10500 => "NETWORK_FAILURE",
        RatTypeNotAllowed = 11001 => "RAT_TYPE_NOT_ALLOWED",
        ImeiNotAccepted = 11005 => "IMEI_NOT_ACCEPTED",
        PlmnNotAllowed = 11011 => "PLMN_NOT_ALLOWED",
        UnauthenticatedEmergencyNotSupported = 11055 => "UNAUTHENTICATED_EMERGENCY_NOT_SUPPORTED",
        InitialContact = 16384 => "INITIAL_CONTACT",
        SetWindowSize = 16385 => "SET_WINDOW_SIZE",
        AdditionalTsPossible = 16386 => "ADDITIONAL_TS_POSSIBLE",
        IpcompSupported = 16387 => "IPCOMP_SUPPORTED",
        NatDetectionSourceIp = 16388 => "NAT_DETECTION_SOURCE_IP",
        NatDetectionDestinationIp = 16389 => "NAT_DETECTION_DESTINATION_IP",
        Cookie = 16390 => "COOKIE",
        UseTransportMode = 16391 => "USE_TRANSPORT_MODE",
        HttpCertLookupSupported = 16392 => "HTTP_CERT_LOOKUP_SUPPORTED",
        RekeySa = 16393 => "REKEY_SA",
        EspTfcPaddingNotSupported = 16394 => "ESP_TFC_PADDING_NOT_SUPPORTED",
        NonFirstFragmentsAlso = 16395 => "NON_FIRST_FRAGMENTS_ALSO",
        MobikeSupported = 16396 => "MOBIKE_SUPPORTED",
        EapOnlyAuthentication = 16417 => "EAP_ONLY_AUTHENTICATION",
        Ikev2FragmentationSupported = 16430 => "IKEV2_FRAGMENTATION_SUPPORTED",
        SignatureHashAlgorithms = 16431 => "SIGNATURE_HASH_ALGORITHMS",
    }
}

impl NotifyType {
    /// Error types are below 16384 (RFC 7296 section 3.10.1).
    pub fn is_error(self) -> bool {
        u16::from(self) < 16384
    }
}

registry! {
    /// Traffic selector types (RFC 7296 section 3.13.1).
    pub enum TsType: u8 {
        TsIpv4AddrRange = 7 => "TS_IPV4_ADDR_RANGE",
        TsIpv6AddrRange = 8 => "TS_IPV6_ADDR_RANGE",
    }
}

registry! {
    /// CFG types of the Configuration payload (RFC 7296 section 3.15).
    pub enum CfgType: u8 {
        CfgRequest = 1 => "CFG_REQUEST",
        CfgReply = 2 => "CFG_REPLY",
        CfgSet = 3 => "CFG_SET",
        CfgAck = 4 => "CFG_ACK",
    }
}

registry! {
    /// Configuration attribute types (RFC 7296 section 3.15.1, RFC 7651 section 6). The
    /// private-use P-CSCF types some phones send are [`ConfigAttribute::PrivatePCscf`].
    pub enum CfgAttributeType: u16 {
        InternalIp4Address = 1 => "INTERNAL_IP4_ADDRESS",
        InternalIp4Netmask = 2 => "INTERNAL_IP4_NETMASK",
        InternalIp4Dns = 3 => "INTERNAL_IP4_DNS",
        InternalIp4Nbns = 4 => "INTERNAL_IP4_NBNS",
        InternalIp4Dhcp = 6 => "INTERNAL_IP4_DHCP",
        ApplicationVersion = 7 => "APPLICATION_VERSION",
        InternalIp6Address = 8 => "INTERNAL_IP6_ADDRESS",
        InternalIp6Dns = 10 => "INTERNAL_IP6_DNS",
        InternalIp6Dhcp = 12 => "INTERNAL_IP6_DHCP",
        InternalIp4Subnet = 13 => "INTERNAL_IP4_SUBNET",
        SupportedAttributes = 14 => "SUPPORTED_ATTRIBUTES",
        InternalIp6Subnet = 15 => "INTERNAL_IP6_SUBNET",
        PCscfIp4Address = 20 => "P_CSCF_IP4_ADDRESS",
        PCscfIp6Address = 21 => "P_CSCF_IP6_ADDRESS",
    }
}

/// The flags octet of the IKE header (RFC 7296 section 3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Flags {
    /// I (Initiator): set by the original initiator of the IKE SA.
    pub initiator: bool,
    /// V (Version): the sender could speak a higher major version.
    pub version: bool,
    /// R (Response): this message answers a request with the same message ID.
    pub response: bool,
}

impl Flags {
    const INITIATOR: u8 = 0x08;
    const VERSION: u8 = 0x10;
    const RESPONSE: u8 = 0x20;

    pub fn from_octet(b: u8) -> Self {
        Flags {
            initiator: b & Self::INITIATOR != 0,
            version: b & Self::VERSION != 0,
            response: b & Self::RESPONSE != 0,
        }
    }

    pub fn octet(self) -> u8 {
        (if self.initiator { Self::INITIATOR } else { 0 })
            | (if self.version { Self::VERSION } else { 0 })
            | (if self.response { Self::RESPONSE } else { 0 })
    }
}

/// A checked view of the IKE header at the start of a buffer (RFC 7296 section 3.1).
#[derive(Debug, Clone)]
pub struct IkeHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IkeHeader<T> {
    /// Checks that the buffer holds a whole header, so every accessor cannot panic.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        need(buffer.as_ref(), HEADER_LEN)?;
        Ok(IkeHeader { buffer })
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    pub fn initiator_spi(&self) -> u64 {
        u64::from_be_bytes(self.spi_octets(0))
    }

    pub fn responder_spi(&self) -> u64 {
        u64::from_be_bytes(self.spi_octets(8))
    }

    fn spi_octets(&self, at: usize) -> [u8; 8] {
        let mut spi = [0; 8];
        spi.copy_from_slice(&self.b()[at..at + 8]);
        spi
    }

    pub fn next_payload(&self) -> PayloadType {
        PayloadType::from(self.b()[16])
    }

    pub fn major_version(&self) -> u8 {
        self.b()[17] >> 4
    }

    pub fn minor_version(&self) -> u8 {
        self.b()[17] & 0x0f
    }

    pub fn exchange_type(&self) -> ExchangeType {
        ExchangeType::from(self.b()[18])
    }

    pub fn flags(&self) -> Flags {
        Flags::from_octet(self.b()[19])
    }

    pub fn message_id(&self) -> u32 {
        be32(self.b(), 20)
    }

    /// Length of the whole message, header included.
    pub fn length(&self) -> u32 {
        be32(self.b(), 24)
    }
}

/// The IKE header's fields as the protocol logic uses them. The version emitted is 2.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderRepr {
    pub initiator_spi: u64,
    pub responder_spi: u64,
    pub next_payload: PayloadType,
    pub exchange_type: ExchangeType,
    pub flags: Flags,
    pub message_id: u32,
    pub length: u32,
}

impl HeaderRepr {
    /// Parses and validates a header: major version 2 (any minor version, as section 2.5
    /// asks), a length no shorter than the header.
    pub fn parse<T: AsRef<[u8]>>(view: &IkeHeader<T>) -> Result<Self, WireError> {
        if view.major_version() != 2 {
            return Err(WireError::InvalidMajorVersion(view.major_version()));
        }
        if (view.length() as usize) < HEADER_LEN {
            return Err(WireError::InvalidSyntax("IKE header length below 28"));
        }
        Ok(HeaderRepr {
            initiator_spi: view.initiator_spi(),
            responder_spi: view.responder_spi(),
            next_payload: view.next_payload(),
            exchange_type: view.exchange_type(),
            flags: view.flags(),
            message_id: view.message_id(),
            length: view.length(),
        })
    }

    /// The 28 header octets.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..8].copy_from_slice(&self.initiator_spi.to_be_bytes());
        out[8..16].copy_from_slice(&self.responder_spi.to_be_bytes());
        out[16] = self.next_payload.into();
        out[17] = 0x20;
        out[18] = self.exchange_type.into();
        out[19] = self.flags.octet();
        out[20..24].copy_from_slice(&self.message_id.to_be_bytes());
        out[24..28].copy_from_slice(&self.length.to_be_bytes());
        out
    }
}

/// A checked view of a generic payload header and its body (RFC 7296 section 3.2).
#[derive(Debug, Clone)]
pub struct GenericPayload<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> GenericPayload<T> {
    /// Checks the header is present and its Payload Length fits in the buffer.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        need(b, GENERIC_PAYLOAD_HEADER_LEN)?;
        let len = be16(b, 2) as usize;
        if len < GENERIC_PAYLOAD_HEADER_LEN {
            return Err(WireError::InvalidSyntax("payload length below 4"));
        }
        need(b, len)?;
        Ok(GenericPayload { buffer })
    }

    pub fn next_payload(&self) -> PayloadType {
        PayloadType::from(self.buffer.as_ref()[0])
    }

    pub fn critical(&self) -> bool {
        self.buffer.as_ref()[1] & 0x80 != 0
    }

    /// Payload Length, header included.
    pub fn payload_length(&self) -> usize {
        be16(self.buffer.as_ref(), 2) as usize
    }

    pub fn body(&self) -> &[u8] {
        &self.buffer.as_ref()[GENERIC_PAYLOAD_HEADER_LEN..self.payload_length()]
    }
}

/// A transform attribute (RFC 7296 section 3.3.5): TV when the AF bit is set, else TLV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformAttribute {
    /// Attribute Type, 15 bits.
    pub attribute_type: u16,
    pub value: AttributeValue,
}

/// The value of a transform attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeValue {
    /// Type/Value format (AF = 1): a 16-bit value.
    Short(u16),
    /// Type/Length/Value format (AF = 0).
    Long(Vec<u8>),
}

impl TransformAttribute {
    /// Attribute type 14, Key Length in bits; the only one RFC 7296 defines.
    pub const KEY_LENGTH: u16 = TransformAttributeType::KeyLength.value();

    pub fn key_length(bits: u16) -> Self {
        TransformAttribute {
            attribute_type: Self::KEY_LENGTH,
            value: AttributeValue::Short(bits),
        }
    }

    fn wire_len(&self) -> usize {
        match &self.value {
            AttributeValue::Short(_) => 4,
            AttributeValue::Long(v) => 4 + v.len(),
        }
    }

    fn emit(&self, out: &mut Vec<u8>) {
        let ty = self.attribute_type & 0x7fff;
        match &self.value {
            AttributeValue::Short(v) => {
                out.extend_from_slice(&(ty | 0x8000).to_be_bytes());
                out.extend_from_slice(&v.to_be_bytes());
            }
            AttributeValue::Long(v) => {
                out.extend_from_slice(&ty.to_be_bytes());
                out.extend_from_slice(&len16(v.len()));
                out.extend_from_slice(v);
            }
        }
    }
}

/// Which algorithm a transform names: its Transform Type and Transform ID, typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransformId {
    Encr(EncrId),
    Prf(PrfId),
    Integ(IntegId),
    Dh(DhGroupId),
    Esn(EsnId),
    /// A transform type this codec does not know.
    Unknown {
        transform_type: u8,
        id: u16,
    },
}

impl TransformId {
    fn from_wire(transform_type: u8, id: u16) -> Self {
        match TransformType::from(transform_type) {
            TransformType::Encr => TransformId::Encr(id.into()),
            TransformType::Prf => TransformId::Prf(id.into()),
            TransformType::Integ => TransformId::Integ(id.into()),
            TransformType::Dh => TransformId::Dh(id.into()),
            TransformType::Esn => TransformId::Esn(id.into()),
            TransformType::Unknown(_) => TransformId::Unknown { transform_type, id },
        }
    }

    fn to_wire(self) -> (u8, u16) {
        let (transform_type, id) = match self {
            TransformId::Encr(id) => (TransformType::Encr, id.value()),
            TransformId::Prf(id) => (TransformType::Prf, id.value()),
            TransformId::Integ(id) => (TransformType::Integ, id.value()),
            TransformId::Dh(id) => (TransformType::Dh, id.value()),
            TransformId::Esn(id) => (TransformType::Esn, id.value()),
            TransformId::Unknown { transform_type, id } => (transform_type.into(), id),
        };
        (transform_type.value(), id)
    }

    pub fn transform_type(self) -> TransformType {
        TransformType::from(self.to_wire().0)
    }
}

/// A transform substructure (RFC 7296 section 3.3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transform {
    pub id: TransformId,
    pub attributes: Vec<TransformAttribute>,
}

impl Transform {
    pub fn new(id: TransformId) -> Self {
        Transform {
            id,
            attributes: Vec::new(),
        }
    }

    pub fn with_key_length(id: TransformId, bits: u16) -> Self {
        Transform {
            id,
            attributes: vec![TransformAttribute::key_length(bits)],
        }
    }

    /// The Key Length attribute, in bits, if present.
    pub fn key_length(&self) -> Option<u16> {
        self.attributes.iter().find_map(|a| match a.value {
            AttributeValue::Short(bits) if a.attribute_type == TransformAttribute::KEY_LENGTH => {
                Some(bits)
            }
            _ => None,
        })
    }

    fn wire_len(&self) -> usize {
        8 + self.attributes.iter().map(|a| a.wire_len()).sum::<usize>()
    }

    fn parse(b: &[u8]) -> Result<Self, WireError> {
        let (transform_type, id) = (b[4], be16(b, 6));
        let mut attributes = Vec::new();
        let mut rest = &b[8..];
        while !rest.is_empty() {
            need(rest, 4)?;
            let raw = be16(rest, 0);
            let attribute_type = raw & 0x7fff;
            if raw & 0x8000 != 0 {
                attributes.push(TransformAttribute {
                    attribute_type,
                    value: AttributeValue::Short(be16(rest, 2)),
                });
                rest = &rest[4..];
            } else {
                let len = be16(rest, 2) as usize;
                need(rest, 4 + len)?;
                attributes.push(TransformAttribute {
                    attribute_type,
                    value: AttributeValue::Long(rest[4..4 + len].to_vec()),
                });
                rest = &rest[4 + len..];
            }
        }
        Ok(Transform {
            id: TransformId::from_wire(transform_type, id),
            attributes,
        })
    }

    fn emit(&self, last: bool, out: &mut Vec<u8>) {
        let (ty, id) = self.id.to_wire();
        out.push(if last { 0 } else { 3 });
        out.push(0);
        out.extend_from_slice(&len16(self.wire_len()));
        out.push(ty);
        out.push(0);
        out.extend_from_slice(&id.to_be_bytes());
        for a in &self.attributes {
            a.emit(out);
        }
    }
}

/// A proposal substructure (RFC 7296 section 3.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// Proposal Num: 1 for the first, each next one more; the responder echoes the one it took.
    pub number: u8,
    pub protocol_id: ProtocolId,
    /// The sending entity's SPI: empty for an IKE SA's first negotiation, 4 octets for ESP.
    pub spi: Vec<u8>,
    pub transforms: Vec<Transform>,
}

impl Proposal {
    fn wire_len(&self) -> usize {
        8 + self.spi.len()
            + self
                .transforms
                .iter()
                .map(Transform::wire_len)
                .sum::<usize>()
    }

    fn parse(b: &[u8]) -> Result<Self, WireError> {
        let (number, protocol_id, spi_size, count) = (b[4], b[5], b[6] as usize, b[7]);
        need(b, 8 + spi_size)?;
        let spi = b[8..8 + spi_size].to_vec();
        let mut rest = &b[8 + spi_size..];
        let mut transforms = Vec::new();
        loop {
            if rest.is_empty() {
                break;
            }
            need(rest, 8)?;
            let len = be16(rest, 2) as usize;
            if len < 8 {
                return Err(WireError::InvalidSyntax("transform length below 8"));
            }
            need(rest, len)?;
            transforms.push(Transform::parse(&rest[..len])?);
            let last = rest[0];
            rest = &rest[len..];
            match last {
                0 if rest.is_empty() => break,
                3 if !rest.is_empty() => {}
                _ => return Err(WireError::InvalidSyntax("transform Last Substruc")),
            }
        }
        if transforms.len() != count as usize {
            return Err(WireError::InvalidSyntax("number of transforms"));
        }
        Ok(Proposal {
            number,
            protocol_id: protocol_id.into(),
            spi,
            transforms,
        })
    }

    fn emit(&self, last: bool, out: &mut Vec<u8>) {
        out.push(if last { 0 } else { 2 });
        out.push(0);
        out.extend_from_slice(&len16(self.wire_len()));
        out.push(self.number);
        out.push(self.protocol_id.into());
        out.push(self.spi.len() as u8);
        out.push(self.transforms.len() as u8);
        out.extend_from_slice(&self.spi);
        let n = self.transforms.len();
        for (i, t) in self.transforms.iter().enumerate() {
            t.emit(i + 1 == n, out);
        }
    }
}

/// The Security Association payload (RFC 7296 section 3.3): proposals in preference order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaPayload {
    pub proposals: Vec<Proposal>,
}

impl SaPayload {
    fn parse(body: &[u8]) -> Result<Self, WireError> {
        let mut proposals = Vec::new();
        let mut rest = body;
        while !rest.is_empty() {
            need(rest, 8)?;
            let len = be16(rest, 2) as usize;
            if len < 8 {
                return Err(WireError::InvalidSyntax("proposal length below 8"));
            }
            need(rest, len)?;
            proposals.push(Proposal::parse(&rest[..len])?);
            let last = rest[0];
            rest = &rest[len..];
            match last {
                0 if rest.is_empty() => {}
                2 if !rest.is_empty() => {}
                _ => return Err(WireError::InvalidSyntax("proposal Last Substruc")),
            }
        }
        if proposals.is_empty() {
            return Err(WireError::InvalidSyntax("SA payload without proposals"));
        }
        Ok(SaPayload { proposals })
    }

    fn emit(&self, out: &mut Vec<u8>) {
        let n = self.proposals.len();
        for (i, p) in self.proposals.iter().enumerate() {
            p.emit(i + 1 == n, out);
        }
    }
}

/// The Key Exchange payload (RFC 7296 section 3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KePayload {
    pub dh_group: DhGroupId,
    pub key_exchange_data: Vec<u8>,
}

/// The Identification payloads IDi and IDr (RFC 7296 section 3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identification {
    Ipv4Addr(Ipv4Addr),
    /// ID_FQDN: the APN in an S2b IDr.
    Fqdn(String),
    /// ID_RFC822_ADDR: the NAI in an S2b IDi.
    Rfc822Addr(String),
    Ipv6Addr(Ipv6Addr),
    DerAsn1Dn(Vec<u8>),
    KeyId(Vec<u8>),
    /// Any other ID Type (ID_DER_ASN1_GN and unknown ones), its data kept.
    Other {
        id_type: IdType,
        data: Vec<u8>,
    },
}

impl Identification {
    pub fn id_type(&self) -> IdType {
        match self {
            Identification::Ipv4Addr(_) => IdType::IdIpv4Addr,
            Identification::Fqdn(_) => IdType::IdFqdn,
            Identification::Rfc822Addr(_) => IdType::IdRfc822Addr,
            Identification::Ipv6Addr(_) => IdType::IdIpv6Addr,
            Identification::DerAsn1Dn(_) => IdType::IdDerAsn1Dn,
            Identification::KeyId(_) => IdType::IdKeyId,
            Identification::Other { id_type, .. } => *id_type,
        }
    }

    fn data(&self) -> Vec<u8> {
        match self {
            Identification::Ipv4Addr(a) => a.octets().to_vec(),
            Identification::Fqdn(s) | Identification::Rfc822Addr(s) => s.as_bytes().to_vec(),
            Identification::Ipv6Addr(a) => a.octets().to_vec(),
            Identification::DerAsn1Dn(d) | Identification::KeyId(d) => d.clone(),
            Identification::Other { data, .. } => data.clone(),
        }
    }

    /// The payload body after the generic header: ID Type, three reserved octets, the
    /// data. This is the RestOfInitIDPayload / RestOfRespIDPayload that AUTH signs
    /// (RFC 7296 section 2.15).
    pub fn body_bytes(&self) -> Vec<u8> {
        let mut out = vec![self.id_type().into(), 0, 0, 0];
        out.extend_from_slice(&self.data());
        out
    }

    pub fn parse_body(body: &[u8]) -> Result<Self, WireError> {
        need(body, 4)?;
        let id_type = IdType::from(body[0]);
        let data = &body[4..];
        let text = |d: &[u8]| {
            String::from_utf8(d.to_vec())
                .map_err(|_| WireError::InvalidSyntax("identification is not UTF-8"))
        };
        Ok(match id_type {
            IdType::IdIpv4Addr => Identification::Ipv4Addr(
                <[u8; 4]>::try_from(data)
                    .map_err(|_| WireError::InvalidSyntax("ID_IPV4_ADDR length"))?
                    .into(),
            ),
            IdType::IdIpv6Addr => Identification::Ipv6Addr(
                <[u8; 16]>::try_from(data)
                    .map_err(|_| WireError::InvalidSyntax("ID_IPV6_ADDR length"))?
                    .into(),
            ),
            IdType::IdFqdn => Identification::Fqdn(text(data)?),
            IdType::IdRfc822Addr => Identification::Rfc822Addr(text(data)?),
            IdType::IdDerAsn1Dn => Identification::DerAsn1Dn(data.to_vec()),
            IdType::IdKeyId => Identification::KeyId(data.to_vec()),
            other => Identification::Other {
                id_type: other,
                data: data.to_vec(),
            },
        })
    }
}

/// The Certificate payload (RFC 7296 section 3.6) and the Certificate Request payload
/// (section 3.7): an encoding and opaque data (a DER certificate, or CA key hashes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPayload {
    pub encoding: CertEncoding,
    pub data: Vec<u8>,
}

/// The Authentication payload (RFC 7296 section 3.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthPayload {
    pub method: AuthMethod,
    pub data: Vec<u8>,
}

/// The Notify payload (RFC 7296 section 3.10). Unknown types are kept with their data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyPayload {
    /// Protocol ID: 0 (none) when the notify concerns the IKE SA, or 1/2/3.
    pub protocol_id: u8,
    pub spi: Vec<u8>,
    pub notify_type: NotifyType,
    pub data: Vec<u8>,
}

impl NotifyPayload {
    /// A notify about the IKE SA itself: no protocol, no SPI.
    pub fn new(notify_type: NotifyType, data: Vec<u8>) -> Self {
        NotifyPayload {
            protocol_id: 0,
            spi: Vec::new(),
            notify_type,
            data,
        }
    }

    /// INVALID_KE_PAYLOAD carrying the DH group the responder accepts (section 3.10.1).
    pub fn invalid_ke_payload(group: DhGroupId) -> Self {
        Self::new(
            NotifyType::InvalidKePayload,
            u16::from(group).to_be_bytes().to_vec(),
        )
    }

    /// The accepted group of an INVALID_KE_PAYLOAD notify.
    pub fn accepted_dh_group(&self) -> Option<DhGroupId> {
        match (self.notify_type, self.data.as_slice()) {
            (NotifyType::InvalidKePayload, [a, b]) => Some(u16::from_be_bytes([*a, *b]).into()),
            _ => None,
        }
    }

    fn parse(body: &[u8]) -> Result<Self, WireError> {
        need(body, 4)?;
        let spi_size = body[1] as usize;
        need(body, 4 + spi_size)?;
        Ok(NotifyPayload {
            protocol_id: body[0],
            spi: body[4..4 + spi_size].to_vec(),
            notify_type: be16(body, 2).into(),
            data: body[4 + spi_size..].to_vec(),
        })
    }

    fn emit(&self, out: &mut Vec<u8>) {
        out.push(self.protocol_id);
        out.push(self.spi.len() as u8);
        out.extend_from_slice(&u16::from(self.notify_type).to_be_bytes());
        out.extend_from_slice(&self.spi);
        out.extend_from_slice(&self.data);
    }
}

/// The Delete payload (RFC 7296 section 3.11): no SPI for the IKE SA, 4-octet SPIs for
/// ESP and AH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletePayload {
    pub protocol_id: ProtocolId,
    pub spis: Vec<u32>,
}

impl DeletePayload {
    fn parse(body: &[u8]) -> Result<Self, WireError> {
        need(body, 4)?;
        let protocol_id = ProtocolId::from(body[0]);
        let (spi_size, count) = (body[1] as usize, be16(body, 2) as usize);
        let rest = &body[4..];
        let spis = match (protocol_id, spi_size) {
            (ProtocolId::Ike, 0) if count == 0 && rest.is_empty() => Vec::new(),
            (ProtocolId::Ike, _) => {
                return Err(WireError::InvalidSyntax("Delete of the IKE SA with an SPI"))
            }
            (_, 4) if rest.len() == 4 * count => rest.chunks_exact(4).map(|c| be32(c, 0)).collect(),
            _ => return Err(WireError::InvalidSyntax("Delete SPI size or count")),
        };
        Ok(DeletePayload { protocol_id, spis })
    }

    fn emit(&self, out: &mut Vec<u8>) {
        out.push(self.protocol_id.into());
        if self.protocol_id == ProtocolId::Ike {
            out.extend_from_slice(&[0, 0, 0]);
        } else {
            out.push(4);
            out.extend_from_slice(&len16(self.spis.len()));
            for spi in &self.spis {
                out.extend_from_slice(&spi.to_be_bytes());
            }
        }
    }
}

/// One traffic selector (RFC 7296 section 3.13.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrafficSelector {
    /// TS_IPV4_ADDR_RANGE or TS_IPV6_ADDR_RANGE (the family of the addresses says which).
    AddrRange {
        /// IP Protocol ID, 0 for any.
        ip_protocol: u8,
        start_port: u16,
        end_port: u16,
        start_address: IpAddr,
        /// Same family as `start_address`.
        end_address: IpAddr,
    },
    /// A TS Type this codec does not know: the octets after Selector Length.
    Unknown { ts_type: u8, data: Vec<u8> },
}

impl TrafficSelector {
    /// Everything in IPv4: all protocols, all ports, 0.0.0.0 to 255.255.255.255.
    pub fn any_ipv4() -> Self {
        TrafficSelector::AddrRange {
            ip_protocol: 0,
            start_port: 0,
            end_port: 65535,
            start_address: Ipv4Addr::UNSPECIFIED.into(),
            end_address: Ipv4Addr::BROADCAST.into(),
        }
    }

    /// Everything in IPv6.
    pub fn any_ipv6() -> Self {
        TrafficSelector::AddrRange {
            ip_protocol: 0,
            start_port: 0,
            end_port: 65535,
            start_address: Ipv6Addr::UNSPECIFIED.into(),
            end_address: Ipv6Addr::from(u128::MAX).into(),
        }
    }

    fn wire_len(&self) -> usize {
        match self {
            TrafficSelector::AddrRange {
                start_address: IpAddr::V4(_),
                ..
            } => 16,
            TrafficSelector::AddrRange { .. } => 40,
            TrafficSelector::Unknown { data, .. } => 4 + data.len(),
        }
    }

    fn parse(b: &[u8]) -> Result<Self, WireError> {
        let ts_type = TsType::from(b[0]);
        let v4 = |at: usize| IpAddr::from([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let v6 = |at: usize| {
            let mut o = [0u8; 16];
            o.copy_from_slice(&b[at..at + 16]);
            IpAddr::from(o)
        };
        Ok(match (ts_type, b.len()) {
            (TsType::TsIpv4AddrRange, 16) => TrafficSelector::AddrRange {
                ip_protocol: b[1],
                start_port: be16(b, 4),
                end_port: be16(b, 6),
                start_address: v4(8),
                end_address: v4(12),
            },
            (TsType::TsIpv6AddrRange, 40) => TrafficSelector::AddrRange {
                ip_protocol: b[1],
                start_port: be16(b, 4),
                end_port: be16(b, 6),
                start_address: v6(8),
                end_address: v6(24),
            },
            (TsType::TsIpv4AddrRange | TsType::TsIpv6AddrRange, _) => {
                return Err(WireError::InvalidSyntax("traffic selector length"))
            }
            (TsType::Unknown(t), _) => TrafficSelector::Unknown {
                ts_type: t,
                data: b[4..].to_vec(),
            },
        })
    }

    fn emit(&self, out: &mut Vec<u8>) {
        match self {
            TrafficSelector::AddrRange {
                ip_protocol,
                start_port,
                end_port,
                start_address,
                end_address,
            } => {
                let v4 = start_address.is_ipv4();
                out.push(if v4 { 7 } else { 8 });
                out.push(*ip_protocol);
                out.extend_from_slice(&len16(self.wire_len()));
                out.extend_from_slice(&start_port.to_be_bytes());
                out.extend_from_slice(&end_port.to_be_bytes());
                for a in [start_address, end_address] {
                    match (a, v4) {
                        (IpAddr::V4(a), true) => out.extend_from_slice(&a.octets()),
                        (IpAddr::V6(a), false) => out.extend_from_slice(&a.octets()),
                        // A mixed-family range: the end address is written in the start's
                        // family (mapped), so the selector stays well formed.
                        (IpAddr::V6(a), true) => out.extend_from_slice(
                            &a.to_ipv4_mapped().unwrap_or(Ipv4Addr::BROADCAST).octets(),
                        ),
                        (IpAddr::V4(a), false) => {
                            out.extend_from_slice(&a.to_ipv6_mapped().octets())
                        }
                    }
                }
            }
            TrafficSelector::Unknown { ts_type, data } => {
                out.push(*ts_type);
                out.push(0);
                out.extend_from_slice(&len16(self.wire_len()));
                out.extend_from_slice(data);
            }
        }
    }
}

fn parse_traffic_selectors(body: &[u8]) -> Result<Vec<TrafficSelector>, WireError> {
    need(body, 4)?;
    let count = body[0] as usize;
    let mut rest = &body[4..];
    let mut selectors = Vec::with_capacity(count);
    while !rest.is_empty() {
        need(rest, 4)?;
        let len = be16(rest, 2) as usize;
        if len < 4 {
            return Err(WireError::InvalidSyntax("selector length below 4"));
        }
        need(rest, len)?;
        selectors.push(TrafficSelector::parse(&rest[..len])?);
        rest = &rest[len..];
    }
    if selectors.len() != count || count == 0 {
        return Err(WireError::InvalidSyntax("number of TSs"));
    }
    Ok(selectors)
}

fn emit_traffic_selectors(selectors: &[TrafficSelector], out: &mut Vec<u8>) {
    out.extend_from_slice(&[selectors.len() as u8, 0, 0, 0]);
    for ts in selectors {
        ts.emit(out);
    }
}

/// One configuration attribute (RFC 7296 section 3.15.1, RFC 7651, and the private
/// P-CSCF attributes 16389/16390 that some phones send). `None` is the empty value a
/// CFG_REQUEST carries to ask for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigAttribute {
    /// INTERNAL_IP4_ADDRESS (1).
    InternalIp4Address(Option<Ipv4Addr>),
    /// INTERNAL_IP4_NETMASK (2).
    InternalIp4Netmask(Option<Ipv4Addr>),
    /// INTERNAL_IP4_DNS (3).
    InternalIp4Dns(Option<Ipv4Addr>),
    /// INTERNAL_IP6_ADDRESS (8): address and prefix length.
    InternalIp6Address(Option<(Ipv6Addr, u8)>),
    /// INTERNAL_IP6_DNS (10).
    InternalIp6Dns(Option<Ipv6Addr>),
    /// P_CSCF_IP4_ADDRESS (20, RFC 7651).
    PCscfIp4Address(Option<Ipv4Addr>),
    /// P_CSCF_IP6_ADDRESS (21, RFC 7651).
    PCscfIp6Address(Option<Ipv6Addr>),
    /// The private-use P-CSCF attributes 16389 and 16390 that some phones send in place
    /// of RFC 7651's; which family each means varies between vendors, so the value's
    /// length decides (0, 4 or 16 octets; other lengths are kept as `Unknown`).
    PrivatePCscf {
        attribute_type: u16,
        address: Option<IpAddr>,
    },
    /// Any other attribute, kept as it was.
    Unknown { attribute_type: u16, value: Vec<u8> },
}

impl ConfigAttribute {
    pub const INTERNAL_IP4_ADDRESS: u16 = CfgAttributeType::InternalIp4Address.value();
    pub const INTERNAL_IP4_NETMASK: u16 = CfgAttributeType::InternalIp4Netmask.value();
    pub const INTERNAL_IP4_DNS: u16 = CfgAttributeType::InternalIp4Dns.value();
    pub const INTERNAL_IP6_ADDRESS: u16 = CfgAttributeType::InternalIp6Address.value();
    pub const INTERNAL_IP6_DNS: u16 = CfgAttributeType::InternalIp6Dns.value();
    pub const P_CSCF_IP4_ADDRESS: u16 = CfgAttributeType::PCscfIp4Address.value();
    pub const P_CSCF_IP6_ADDRESS: u16 = CfgAttributeType::PCscfIp6Address.value();
    pub const PRIVATE_P_CSCF_16389: u16 = 16389;
    pub const PRIVATE_P_CSCF_16390: u16 = 16390;

    pub fn attribute_type(&self) -> u16 {
        match self {
            ConfigAttribute::InternalIp4Address(_) => Self::INTERNAL_IP4_ADDRESS,
            ConfigAttribute::InternalIp4Netmask(_) => Self::INTERNAL_IP4_NETMASK,
            ConfigAttribute::InternalIp4Dns(_) => Self::INTERNAL_IP4_DNS,
            ConfigAttribute::InternalIp6Address(_) => Self::INTERNAL_IP6_ADDRESS,
            ConfigAttribute::InternalIp6Dns(_) => Self::INTERNAL_IP6_DNS,
            ConfigAttribute::PCscfIp4Address(_) => Self::P_CSCF_IP4_ADDRESS,
            ConfigAttribute::PCscfIp6Address(_) => Self::P_CSCF_IP6_ADDRESS,
            ConfigAttribute::PrivatePCscf { attribute_type, .. }
            | ConfigAttribute::Unknown { attribute_type, .. } => *attribute_type & 0x7fff,
        }
    }

    fn value(&self) -> Vec<u8> {
        fn v4(a: &Option<Ipv4Addr>) -> Vec<u8> {
            a.map(|a| a.octets().to_vec()).unwrap_or_default()
        }
        fn v6(a: &Option<Ipv6Addr>) -> Vec<u8> {
            a.map(|a| a.octets().to_vec()).unwrap_or_default()
        }
        match self {
            ConfigAttribute::InternalIp4Address(a)
            | ConfigAttribute::InternalIp4Netmask(a)
            | ConfigAttribute::InternalIp4Dns(a)
            | ConfigAttribute::PCscfIp4Address(a) => v4(a),
            ConfigAttribute::InternalIp6Dns(a) | ConfigAttribute::PCscfIp6Address(a) => v6(a),
            ConfigAttribute::InternalIp6Address(a) => a
                .map(|(a, len)| {
                    let mut v = a.octets().to_vec();
                    v.push(len);
                    v
                })
                .unwrap_or_default(),
            ConfigAttribute::PrivatePCscf { address, .. } => match address {
                None => Vec::new(),
                Some(IpAddr::V4(a)) => a.octets().to_vec(),
                Some(IpAddr::V6(a)) => a.octets().to_vec(),
            },
            ConfigAttribute::Unknown { value, .. } => value.clone(),
        }
    }

    fn parse(attribute_type: u16, v: &[u8]) -> Result<Self, WireError> {
        fn v4(v: &[u8]) -> Result<Option<Ipv4Addr>, WireError> {
            match v.len() {
                0 => Ok(None),
                4 => Ok(Some(Ipv4Addr::new(v[0], v[1], v[2], v[3]))),
                _ => Err(WireError::InvalidSyntax(
                    "IPv4 configuration attribute length",
                )),
            }
        }
        fn v6(v: &[u8]) -> Result<Option<Ipv6Addr>, WireError> {
            match <[u8; 16]>::try_from(v) {
                Ok(o) => Ok(Some(o.into())),
                Err(_) if v.is_empty() => Ok(None),
                Err(_) => Err(WireError::InvalidSyntax(
                    "IPv6 configuration attribute length",
                )),
            }
        }
        Ok(match attribute_type {
            Self::INTERNAL_IP4_ADDRESS => ConfigAttribute::InternalIp4Address(v4(v)?),
            Self::INTERNAL_IP4_NETMASK => ConfigAttribute::InternalIp4Netmask(v4(v)?),
            Self::INTERNAL_IP4_DNS => ConfigAttribute::InternalIp4Dns(v4(v)?),
            Self::INTERNAL_IP6_DNS => ConfigAttribute::InternalIp6Dns(v6(v)?),
            Self::P_CSCF_IP4_ADDRESS => ConfigAttribute::PCscfIp4Address(v4(v)?),
            Self::P_CSCF_IP6_ADDRESS => ConfigAttribute::PCscfIp6Address(v6(v)?),
            Self::INTERNAL_IP6_ADDRESS => match v.len() {
                0 => ConfigAttribute::InternalIp6Address(None),
                17 => {
                    let addr = v6(&v[..16])?.unwrap_or(Ipv6Addr::UNSPECIFIED);
                    ConfigAttribute::InternalIp6Address(Some((addr, v[16])))
                }
                _ => return Err(WireError::InvalidSyntax("INTERNAL_IP6_ADDRESS length")),
            },
            Self::PRIVATE_P_CSCF_16389 | Self::PRIVATE_P_CSCF_16390 => match v.len() {
                0 => ConfigAttribute::PrivatePCscf {
                    attribute_type,
                    address: None,
                },
                4 => ConfigAttribute::PrivatePCscf {
                    attribute_type,
                    address: v4(v)?.map(IpAddr::V4),
                },
                16 => ConfigAttribute::PrivatePCscf {
                    attribute_type,
                    address: v6(v)?.map(IpAddr::V6),
                },
                _ => ConfigAttribute::Unknown {
                    attribute_type,
                    value: v.to_vec(),
                },
            },
            _ => ConfigAttribute::Unknown {
                attribute_type,
                value: v.to_vec(),
            },
        })
    }
}

/// The Configuration payload (RFC 7296 section 3.15).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpPayload {
    pub cfg_type: CfgType,
    pub attributes: Vec<ConfigAttribute>,
}

impl CpPayload {
    fn parse(body: &[u8]) -> Result<Self, WireError> {
        need(body, 4)?;
        let mut rest = &body[4..];
        let mut attributes = Vec::new();
        while !rest.is_empty() {
            need(rest, 4)?;
            let attribute_type = be16(rest, 0) & 0x7fff;
            let len = be16(rest, 2) as usize;
            need(rest, 4 + len)?;
            attributes.push(ConfigAttribute::parse(attribute_type, &rest[4..4 + len])?);
            rest = &rest[4 + len..];
        }
        Ok(CpPayload {
            cfg_type: body[0].into(),
            attributes,
        })
    }

    fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.cfg_type.into(), 0, 0, 0]);
        for a in &self.attributes {
            let v = a.value();
            out.extend_from_slice(&a.attribute_type().to_be_bytes());
            out.extend_from_slice(&len16(v.len()));
            out.extend_from_slice(&v);
        }
    }
}

/// The Encrypted and Authenticated payload as it stands on the wire (RFC 7296 section
/// 3.14): the type of the first payload inside, and IV, ciphertext and ICV, opaque here.
/// [`super::sk`] seals and opens it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkPayload {
    pub first_inner_payload: PayloadType,
    pub data: Vec<u8>,
}

/// One payload of an IKE message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Sa(SaPayload),
    Ke(KePayload),
    IdI(Identification),
    IdR(Identification),
    Cert(CertPayload),
    CertReq(CertPayload),
    Auth(AuthPayload),
    Nonce(Vec<u8>),
    Notify(NotifyPayload),
    Delete(DeletePayload),
    VendorId(Vec<u8>),
    TsI(Vec<TrafficSelector>),
    TsR(Vec<TrafficSelector>),
    /// Encrypted and Authenticated; only ever the last payload of a message.
    Sk(SkPayload),
    Cp(CpPayload),
    /// An EAP packet (RFC 3748), opaque here: [`crate::eap`] reads it.
    Eap(Vec<u8>),
    /// A payload type this codec does not know, its Critical bit clear; kept as it was.
    Unknown {
        payload_type: u8,
        body: Vec<u8>,
    },
}

impl Payload {
    pub fn payload_type(&self) -> PayloadType {
        match self {
            Payload::Sa(_) => PayloadType::Sa,
            Payload::Ke(_) => PayloadType::Ke,
            Payload::IdI(_) => PayloadType::IdI,
            Payload::IdR(_) => PayloadType::IdR,
            Payload::Cert(_) => PayloadType::Cert,
            Payload::CertReq(_) => PayloadType::CertReq,
            Payload::Auth(_) => PayloadType::Auth,
            Payload::Nonce(_) => PayloadType::Nonce,
            Payload::Notify(_) => PayloadType::Notify,
            Payload::Delete(_) => PayloadType::Delete,
            Payload::VendorId(_) => PayloadType::VendorId,
            Payload::TsI(_) => PayloadType::TsI,
            Payload::TsR(_) => PayloadType::TsR,
            Payload::Sk(_) => PayloadType::Sk,
            Payload::Cp(_) => PayloadType::Cp,
            Payload::Eap(_) => PayloadType::Eap,
            Payload::Unknown { payload_type, .. } => PayloadType::from(*payload_type),
        }
    }

    /// Parses one payload body of the given type. `critical` is the payload's Critical
    /// bit: an unknown payload with it set is UNSUPPORTED_CRITICAL_PAYLOAD.
    pub fn parse_body(
        payload_type: PayloadType,
        critical: bool,
        body: &[u8],
    ) -> Result<Self, WireError> {
        Ok(match payload_type {
            PayloadType::Sa => Payload::Sa(SaPayload::parse(body)?),
            PayloadType::Ke => {
                need(body, 4)?;
                Payload::Ke(KePayload {
                    dh_group: be16(body, 0).into(),
                    key_exchange_data: body[4..].to_vec(),
                })
            }
            PayloadType::IdI => Payload::IdI(Identification::parse_body(body)?),
            PayloadType::IdR => Payload::IdR(Identification::parse_body(body)?),
            PayloadType::Cert | PayloadType::CertReq => {
                need(body, 1)?;
                let c = CertPayload {
                    encoding: body[0].into(),
                    data: body[1..].to_vec(),
                };
                if payload_type == PayloadType::Cert {
                    Payload::Cert(c)
                } else {
                    Payload::CertReq(c)
                }
            }
            PayloadType::Auth => {
                need(body, 4)?;
                Payload::Auth(AuthPayload {
                    method: body[0].into(),
                    data: body[4..].to_vec(),
                })
            }
            PayloadType::Nonce => {
                // Section 3.9: between 16 and 256 octets.
                if !(16..=256).contains(&body.len()) {
                    return Err(WireError::InvalidSyntax("nonce length"));
                }
                Payload::Nonce(body.to_vec())
            }
            PayloadType::Notify => Payload::Notify(NotifyPayload::parse(body)?),
            PayloadType::Delete => Payload::Delete(DeletePayload::parse(body)?),
            PayloadType::VendorId => Payload::VendorId(body.to_vec()),
            PayloadType::TsI => Payload::TsI(parse_traffic_selectors(body)?),
            PayloadType::TsR => Payload::TsR(parse_traffic_selectors(body)?),
            PayloadType::Cp => Payload::Cp(CpPayload::parse(body)?),
            PayloadType::Eap => Payload::Eap(body.to_vec()),
            PayloadType::Sk => {
                return Err(WireError::InvalidSyntax("SK payload parsed out of a chain"))
            }
            PayloadType::NoNextPayload | PayloadType::Unknown(_) if critical => {
                return Err(WireError::UnsupportedCriticalPayload(payload_type.into()))
            }
            PayloadType::NoNextPayload | PayloadType::Unknown(_) => Payload::Unknown {
                payload_type: payload_type.into(),
                body: body.to_vec(),
            },
        })
    }

    /// Appends the payload body (what follows the generic header).
    pub fn emit_body(&self, out: &mut Vec<u8>) {
        match self {
            Payload::Sa(sa) => sa.emit(out),
            Payload::Ke(ke) => {
                out.extend_from_slice(&u16::from(ke.dh_group).to_be_bytes());
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&ke.key_exchange_data);
            }
            Payload::IdI(id) | Payload::IdR(id) => out.extend_from_slice(&id.body_bytes()),
            Payload::Cert(c) | Payload::CertReq(c) => {
                out.push(c.encoding.into());
                out.extend_from_slice(&c.data);
            }
            Payload::Auth(a) => {
                out.extend_from_slice(&[a.method.into(), 0, 0, 0]);
                out.extend_from_slice(&a.data);
            }
            Payload::Notify(n) => n.emit(out),
            Payload::Delete(d) => d.emit(out),
            Payload::TsI(ts) | Payload::TsR(ts) => emit_traffic_selectors(ts, out),
            Payload::Cp(cp) => cp.emit(out),
            Payload::Sk(SkPayload { data, .. })
            | Payload::Nonce(data)
            | Payload::VendorId(data)
            | Payload::Eap(data)
            | Payload::Unknown { body: data, .. } => out.extend_from_slice(data),
        }
    }

    /// The value of the generic header's Next Payload field when this payload is
    /// followed by `next`: for SK it names the first payload inside instead.
    fn next_field(&self, next: PayloadType) -> PayloadType {
        match self {
            Payload::Sk(sk) => sk.first_inner_payload,
            _ => next,
        }
    }
}

/// Parses a payload chain that starts with a payload of type `first`. An SK payload
/// ends the chain (its Next Payload names its first inner payload, section 3.14).
pub fn parse_payloads(first: PayloadType, bytes: &[u8]) -> Result<Vec<Payload>, WireError> {
    let mut payloads = Vec::new();
    let mut this = first;
    let mut rest = bytes;
    while this != PayloadType::NoNextPayload {
        let view = GenericPayload::new_checked(rest)?;
        let len = view.payload_length();
        if this == PayloadType::Sk {
            payloads.push(Payload::Sk(SkPayload {
                first_inner_payload: view.next_payload(),
                data: view.body().to_vec(),
            }));
            rest = &rest[len..];
            break;
        }
        payloads.push(Payload::parse_body(this, view.critical(), view.body())?);
        this = view.next_payload();
        rest = &rest[len..];
    }
    if !rest.is_empty() {
        return Err(WireError::InvalidSyntax("octets after the last payload"));
    }
    Ok(payloads)
}

/// Appends a payload chain (generic headers included) and returns the first payload's
/// type, for the header (or the SK payload) that precedes the chain.
pub fn emit_payloads(payloads: &[Payload], out: &mut Vec<u8>) -> PayloadType {
    for (i, p) in payloads.iter().enumerate() {
        let next = payloads
            .get(i + 1)
            .map(Payload::payload_type)
            .unwrap_or(PayloadType::NoNextPayload);
        let start = out.len();
        out.extend_from_slice(&[p.next_field(next).into(), 0, 0, 0]);
        p.emit_body(out);
        let len = len16(out.len() - start);
        out[start + 2..start + 4].copy_from_slice(&len);
    }
    payloads
        .first()
        .map(Payload::payload_type)
        .unwrap_or(PayloadType::NoNextPayload)
}

/// Length of a payload chain on the wire.
pub fn payloads_len(payloads: &[Payload]) -> usize {
    let mut scratch = Vec::new();
    emit_payloads(payloads, &mut scratch);
    scratch.len()
}

/// A whole IKE message: header fields and payloads. Next Payload and Length are
/// computed when emitting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IkeMessage {
    pub initiator_spi: u64,
    pub responder_spi: u64,
    pub exchange_type: ExchangeType,
    pub flags: Flags,
    pub message_id: u32,
    pub payloads: Vec<Payload>,
}

impl IkeMessage {
    /// Parses a whole message; the header's Length must equal the buffer's.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let header = HeaderRepr::parse(&IkeHeader::new_checked(bytes)?)?;
        if header.length as usize != bytes.len() {
            return Err(WireError::InvalidSyntax(
                "IKE header length differs from the message",
            ));
        }
        let payloads = parse_payloads(header.next_payload, &bytes[HEADER_LEN..])?;
        Ok(IkeMessage {
            initiator_spi: header.initiator_spi,
            responder_spi: header.responder_spi,
            exchange_type: header.exchange_type,
            flags: header.flags,
            message_id: header.message_id,
            payloads,
        })
    }

    /// The header that precedes a chain of `body_len` octets starting with `first`.
    pub fn header(&self, first: PayloadType, body_len: usize) -> HeaderRepr {
        HeaderRepr {
            initiator_spi: self.initiator_spi,
            responder_spi: self.responder_spi,
            next_payload: first,
            exchange_type: self.exchange_type,
            flags: self.flags,
            message_id: self.message_id,
            length: u32::try_from(HEADER_LEN + body_len).unwrap_or(u32::MAX),
        }
    }

    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + payloads_len(&self.payloads)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut body = Vec::new();
        let first = emit_payloads(&self.payloads, &mut body);
        let mut out = self.header(first, body.len()).to_bytes().to_vec();
        out.extend_from_slice(&body);
        out
    }

    /// Writes the message into `out`, which must be exactly [`Self::buffer_len`] long.
    pub fn emit(&self, out: &mut [u8]) {
        out.copy_from_slice(&self.to_bytes());
    }

    /// The first payload of a kind, by a matcher such as `|p| match p { Payload::Ke(k) => Some(k), _ => None }`.
    pub fn find<'a, R>(&'a self, f: impl FnMut(&'a Payload) -> Option<R>) -> Option<R> {
        self.payloads.iter().find_map(f)
    }

    /// The CERT payloads of the message, in order (the peer's certificate first).
    pub fn certificates(&self) -> Vec<CertPayload> {
        self.payloads
            .iter()
            .filter_map(|p| match p {
                Payload::Cert(c) => Some(c.clone()),
                _ => None,
            })
            .collect()
    }

    /// The notifies of the message.
    pub fn notifies(&self) -> impl Iterator<Item = &NotifyPayload> {
        self.payloads.iter().filter_map(|p| match p {
            Payload::Notify(n) => Some(n),
            _ => None,
        })
    }
}

impl fmt::Display for IkeMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} #{} {}",
            self.exchange_type,
            self.message_id,
            if self.flags.response {
                "response"
            } else {
                "request"
            }
        )?;
        for p in &self.payloads {
            write!(f, " {:?}", p.payload_type())?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        vec(any::<u8>(), 0..max)
    }

    fn attribute() -> impl Strategy<Value = TransformAttribute> {
        (
            0u16..0x8000,
            prop_oneof![
                any::<u16>().prop_map(AttributeValue::Short),
                bytes(8).prop_map(AttributeValue::Long)
            ],
        )
            .prop_map(|(attribute_type, value)| TransformAttribute {
                attribute_type,
                value,
            })
    }

    fn transform() -> impl Strategy<Value = Transform> {
        (any::<u8>(), any::<u16>(), vec(attribute(), 0..3)).prop_map(|(t, id, attributes)| {
            Transform {
                id: TransformId::from_wire(t, id),
                attributes,
            }
        })
    }

    fn proposal() -> impl Strategy<Value = Proposal> {
        (any::<u8>(), any::<u8>(), bytes(9), vec(transform(), 1..6)).prop_map(
            |(number, p, spi, transforms)| Proposal {
                number,
                protocol_id: p.into(),
                spi,
                transforms,
            },
        )
    }

    fn ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(IpAddr::from),
            any::<[u8; 16]>().prop_map(IpAddr::from)
        ]
    }

    fn selector() -> impl Strategy<Value = TrafficSelector> {
        prop_oneof![
            (
                any::<u8>(),
                any::<u16>(),
                any::<u16>(),
                ip(),
                any::<[u8; 16]>()
            )
                .prop_map(|(ip_protocol, start_port, end_port, start_address, end)| {
                    let end_address = match start_address {
                        IpAddr::V4(_) => IpAddr::from([end[0], end[1], end[2], end[3]]),
                        IpAddr::V6(_) => IpAddr::from(end),
                    };
                    TrafficSelector::AddrRange {
                        ip_protocol,
                        start_port,
                        end_port,
                        start_address,
                        end_address,
                    }
                }),
            (9u8..=255, bytes(12))
                .prop_map(|(ts_type, data)| TrafficSelector::Unknown { ts_type, data }),
        ]
    }

    fn opt<T: fmt::Debug + Clone>(s: impl Strategy<Value = T>) -> impl Strategy<Value = Option<T>> {
        proptest::option::of(s)
    }

    fn config_attribute() -> impl Strategy<Value = ConfigAttribute> {
        let v4 = || any::<[u8; 4]>().prop_map(Ipv4Addr::from);
        let v6 = || any::<[u8; 16]>().prop_map(Ipv6Addr::from);
        prop_oneof![
            opt(v4()).prop_map(ConfigAttribute::InternalIp4Address),
            opt(v4()).prop_map(ConfigAttribute::InternalIp4Netmask),
            opt(v4()).prop_map(ConfigAttribute::InternalIp4Dns),
            opt((v6(), any::<u8>())).prop_map(ConfigAttribute::InternalIp6Address),
            opt(v6()).prop_map(ConfigAttribute::InternalIp6Dns),
            opt(v4()).prop_map(ConfigAttribute::PCscfIp4Address),
            opt(v6()).prop_map(ConfigAttribute::PCscfIp6Address),
            (prop_oneof![Just(16389u16), Just(16390u16)], opt(ip())).prop_map(
                |(attribute_type, address)| ConfigAttribute::PrivatePCscf {
                    attribute_type,
                    address
                }
            ),
            (22u16..16389, bytes(10)).prop_map(|(attribute_type, value)| {
                ConfigAttribute::Unknown {
                    attribute_type,
                    value,
                }
            }),
        ]
    }

    fn text() -> impl Strategy<Value = String> {
        "[a-z0-9@.]{0,30}"
    }

    fn identification() -> impl Strategy<Value = Identification> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(|a| Identification::Ipv4Addr(a.into())),
            any::<[u8; 16]>().prop_map(|a| Identification::Ipv6Addr(a.into())),
            text().prop_map(Identification::Fqdn),
            text().prop_map(Identification::Rfc822Addr),
            bytes(20).prop_map(Identification::DerAsn1Dn),
            bytes(20).prop_map(Identification::KeyId),
            bytes(20).prop_map(|data| Identification::Other {
                id_type: IdType::IdDerAsn1Gn,
                data
            }),
            (12u8..=255, bytes(20)).prop_map(|(t, data)| Identification::Other {
                id_type: t.into(),
                data
            }),
        ]
    }

    pub(crate) fn payload() -> impl Strategy<Value = Payload> {
        prop_oneof![
            vec(proposal(), 1..4).prop_map(|proposals| Payload::Sa(SaPayload { proposals })),
            (any::<u16>(), bytes(64)).prop_map(|(g, key_exchange_data)| Payload::Ke(KePayload {
                dh_group: g.into(),
                key_exchange_data
            })),
            identification().prop_map(Payload::IdI),
            identification().prop_map(Payload::IdR),
            (any::<u8>(), bytes(40)).prop_map(|(e, data)| Payload::Cert(CertPayload {
                encoding: e.into(),
                data
            })),
            (any::<u8>(), bytes(40)).prop_map(|(e, data)| Payload::CertReq(CertPayload {
                encoding: e.into(),
                data
            })),
            (any::<u8>(), bytes(40)).prop_map(|(m, data)| Payload::Auth(AuthPayload {
                method: m.into(),
                data
            })),
            vec(any::<u8>(), 16..=256).prop_map(Payload::Nonce),
            (any::<u8>(), bytes(9), any::<u16>(), bytes(30)).prop_map(
                |(protocol_id, spi, t, data)| Payload::Notify(NotifyPayload {
                    protocol_id,
                    spi,
                    notify_type: t.into(),
                    data
                })
            ),
            prop_oneof![
                Just(Payload::Delete(DeletePayload {
                    protocol_id: ProtocolId::Ike,
                    spis: vec![]
                })),
                vec(any::<u32>(), 0..4).prop_map(|spis| Payload::Delete(DeletePayload {
                    protocol_id: ProtocolId::Esp,
                    spis
                })),
            ],
            bytes(20).prop_map(Payload::VendorId),
            vec(selector(), 1..4).prop_map(Payload::TsI),
            vec(selector(), 1..4).prop_map(Payload::TsR),
            (any::<u8>(), vec(config_attribute(), 0..8)).prop_map(|(t, attributes)| {
                Payload::Cp(CpPayload {
                    cfg_type: t.into(),
                    attributes,
                })
            }),
            bytes(60).prop_map(Payload::Eap),
            (49u8..=255, bytes(20))
                .prop_map(|(payload_type, body)| Payload::Unknown { payload_type, body }),
        ]
    }

    pub(crate) fn message() -> impl Strategy<Value = IkeMessage> {
        (
            any::<u64>(),
            any::<u64>(),
            any::<u8>(),
            any::<u8>(),
            any::<u32>(),
            vec(payload(), 0..8),
            opt((any::<u8>(), bytes(64))),
        )
            .prop_map(|(spi_i, spi_r, x, flags, message_id, mut payloads, sk)| {
                if let Some((inner, data)) = sk {
                    payloads.push(Payload::Sk(SkPayload {
                        first_inner_payload: inner.into(),
                        data,
                    }));
                }
                IkeMessage {
                    initiator_spi: spi_i,
                    responder_spi: spi_r,
                    exchange_type: x.into(),
                    flags: Flags::from_octet(flags),
                    message_id,
                    payloads,
                }
            })
    }

    proptest! {
        #[test]
        fn every_message_round_trips(m in message()) {
            let bytes = m.to_bytes();
            prop_assert_eq!(bytes.len(), m.buffer_len());
            prop_assert_eq!(IkeMessage::parse(&bytes), Ok(m));
        }

        #[test]
        fn parsing_never_panics(b in bytes(600)) {
            let _ = IkeMessage::parse(&b);
            for t in 0u8..=50 {
                let _ = Payload::parse_body(t.into(), false, &b);
                let _ = parse_payloads(t.into(), &b);
            }
        }

        #[test]
        fn parsing_mutated_messages_never_panics(m in message(), at in any::<usize>(), x in any::<u8>()) {
            let mut b = m.to_bytes();
            let i = at % b.len();
            b[i] ^= x;
            let _ = IkeMessage::parse(&b);
            b.truncate(i);
            let _ = IkeMessage::parse(&b);
        }
    }

    #[test]
    fn critical_unknown_payload_is_refused_and_uncritical_one_kept() {
        let mut m = IkeMessage {
            initiator_spi: 1,
            responder_spi: 0,
            exchange_type: ExchangeType::IkeSaInit,
            flags: Flags {
                initiator: true,
                ..Flags::default()
            },
            message_id: 0,
            payloads: vec![Payload::Unknown {
                payload_type: 200,
                body: vec![1, 2, 3],
            }],
        };
        let mut b = m.to_bytes();
        assert_eq!(IkeMessage::parse(&b).as_ref(), Ok(&m));
        b[HEADER_LEN + 1] = 0x80;
        let err = IkeMessage::parse(&b).unwrap_err();
        assert_eq!(err, WireError::UnsupportedCriticalPayload(200));
        assert_eq!(err.notify_type(), NotifyType::UnsupportedCriticalPayload);
        assert!(err.to_string().contains("UNSUPPORTED_CRITICAL_PAYLOAD"));
        // A known payload's Critical bit is ignored (section 2.5).
        m.payloads = vec![Payload::VendorId(vec![9])];
        let mut b = m.to_bytes();
        b[HEADER_LEN + 1] = 0x80;
        assert_eq!(IkeMessage::parse(&b), Ok(m));
    }

    #[test]
    fn header_fields_are_where_rfc_7296_puts_them() {
        let m = IkeMessage {
            initiator_spi: 0x0102030405060708,
            responder_spi: 0x1112131415161718,
            exchange_type: ExchangeType::IkeAuth,
            flags: Flags {
                initiator: true,
                version: false,
                response: true,
            },
            message_id: 0xa0b0c0d0,
            payloads: vec![Payload::Eap(
                crate::eap::EapRepr::Request {
                    identifier: 7,
                    data: crate::eap::TypeData::Identity(Vec::new()),
                }
                .to_bytes()
                .unwrap(),
            )],
        };
        let b = m.to_bytes();
        assert_eq!(
            hex::encode(&b),
            concat!(
                "0102030405060708",
                "1112131415161718",
                "30202328",
                "a0b0c0d0",
                "00000025",
                "00000009",
                "0107000501"
            )
        );
        let h = IkeHeader::new_checked(&b[..]).unwrap();
        assert_eq!(h.major_version(), 2);
        assert_eq!(h.minor_version(), 0);
        assert_eq!(h.next_payload(), PayloadType::Eap);
        assert_eq!(h.length() as usize, b.len());
    }

    #[test]
    fn wrong_major_version_is_invalid_major_version() {
        let m = IkeMessage {
            initiator_spi: 1,
            responder_spi: 0,
            exchange_type: ExchangeType::IkeSaInit,
            flags: Flags::default(),
            message_id: 0,
            payloads: vec![],
        };
        let mut b = m.to_bytes();
        b[17] = 0x30;
        assert_eq!(
            IkeMessage::parse(&b),
            Err(WireError::InvalidMajorVersion(3))
        );
        b[17] = 0x21; // a higher minor version is accepted
        assert!(IkeMessage::parse(&b).is_ok());
    }

    #[test]
    fn cp_request_with_every_attribute_an_epdg_sees() {
        let cp = CpPayload {
            cfg_type: CfgType::CfgRequest,
            attributes: vec![
                ConfigAttribute::InternalIp4Address(None),
                ConfigAttribute::InternalIp4Netmask(None),
                ConfigAttribute::InternalIp4Dns(None),
                ConfigAttribute::InternalIp6Address(None),
                ConfigAttribute::InternalIp6Dns(None),
                ConfigAttribute::PCscfIp4Address(None),
                ConfigAttribute::PCscfIp6Address(None),
                ConfigAttribute::PrivatePCscf {
                    attribute_type: 16389,
                    address: None,
                },
                ConfigAttribute::PrivatePCscf {
                    attribute_type: 16390,
                    address: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
                },
                ConfigAttribute::Unknown {
                    attribute_type: 24,
                    value: vec![0, 0, 0, 5],
                },
            ],
        };
        let mut body = Vec::new();
        cp.emit(&mut body);
        assert_eq!(
            hex::encode(&body[..20]),
            "0100000000010000000200000003000000080000"
        );
        assert_eq!(CpPayload::parse(&body), Ok(cp));
    }

    #[test]
    fn invalid_ke_payload_notify_carries_the_group() {
        let n = NotifyPayload::invalid_ke_payload(DhGroupId::Ecp256);
        assert_eq!(n.data, vec![0, 19]);
        assert_eq!(n.accepted_dh_group(), Some(DhGroupId::Ecp256));
        assert!(n.notify_type.is_error());
        assert!(!NotifyType::EapOnlyAuthentication.is_error());
        assert_eq!(u16::from(NotifyType::EapOnlyAuthentication), 16417);
        assert_eq!(NotifyType::from(9002), NotifyType::NoApnSubscription);
        assert_eq!(u16::from(NotifyType::NetworkFailure), 10500);
        assert!(NotifyType::PdnConnectionRejection.is_error());
    }

    #[test]
    fn every_registry_round_trips_named_and_unknown_values() {
        use crate::registry::tests::assert_registry;
        assert_registry::<ExchangeType>();
        assert_registry::<PayloadType>();
        assert_registry::<ProtocolId>();
        assert_registry::<EncrId>();
        assert_registry::<PrfId>();
        assert_registry::<IntegId>();
        assert_registry::<DhGroupId>();
        assert_registry::<EsnId>();
        assert_registry::<TransformType>();
        assert_registry::<TransformAttributeType>();
        assert_registry::<IdType>();
        assert_registry::<CertEncoding>();
        assert_registry::<AuthMethod>();
        assert_registry::<NotifyType>();
        assert_registry::<TsType>();
        assert_registry::<CfgType>();
        assert_registry::<CfgAttributeType>();
        assert_eq!(NotifyType::from(24).to_string(), "AUTHENTICATION_FAILED");
        assert_eq!(ExchangeType::IkeAuth.to_string(), "IKE_AUTH");
        assert_eq!(ConfigAttribute::P_CSCF_IP6_ADDRESS, 21);
    }
}
