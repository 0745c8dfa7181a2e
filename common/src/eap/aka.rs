//! EAP-AKA messages (RFC 4187 sections 8 to 11): the Type-Data of an EAP packet of Type
//! 23, as a checked view ([`AkaMessage`], attributes walked by [`AttributeIter`]) and a
//! typed [`AkaRepr`].
//!
//! Every attribute of full authentication, identity requests, notifications, client
//! errors and fast re-authentication is decoded. Unknown skippable attributes (type 128
//! and above) are kept as [`Attribute::Unknown`] and re-emitted unchanged; an unknown
//! non-skippable one is [`EapError::UnsupportedAttribute`].

use super::error::EapError;
use crate::registry::registry;

/// Subtype, two Reserved octets.
pub const AKA_HEADER_LEN: usize = 3;
/// Length of AT_MAC's MAC field (HMAC-SHA1-128).
pub const MAC_LEN: usize = 16;
/// Length of AT_AUTS's AUTS field (TS 33.102 section 6.3.3).
pub const AUTS_LEN: usize = 14;
/// Length of the AT_CHECKCODE value when there is one (a SHA-1 hash).
pub const CHECKCODE_LEN: usize = 20;

registry! {
    /// EAP-AKA Subtype (RFC 4187 section 11).
    pub enum Subtype: u8 {
        Challenge = 1 => "AKA-Challenge",
        AuthenticationReject = 2 => "AKA-Authentication-Reject",
        SynchronizationFailure = 4 => "AKA-Synchronization-Failure",
        Identity = 5 => "AKA-Identity",
        Notification = 12 => "AKA-Notification",
        Reauthentication = 13 => "AKA-Reauthentication",
        ClientError = 14 => "AKA-Client-Error",
    }
}

registry! {
    /// EAP-AKA (and EAP-SIM) attribute types (RFC 4187 section 11; AT_BIDDING from
    /// RFC 9048 section 4). Types from 128 on may be skipped by a receiver that does not
    /// know them.
    pub enum AttributeType: u8 {
        AtRand = 1 => "AT_RAND",
        AtAutn = 2 => "AT_AUTN",
        AtRes = 3 => "AT_RES",
        AtAuts = 4 => "AT_AUTS",
        AtPadding = 6 => "AT_PADDING",
        /// EAP-SIM only (RFC 4186).
        AtNonceMt = 7 => "AT_NONCE_MT",
        AtPermanentIdReq = 10 => "AT_PERMANENT_ID_REQ",
        AtMac = 11 => "AT_MAC",
        AtNotification = 12 => "AT_NOTIFICATION",
        AtAnyIdReq = 13 => "AT_ANY_ID_REQ",
        AtIdentity = 14 => "AT_IDENTITY",
        /// EAP-SIM only (RFC 4186).
        AtVersionList = 15 => "AT_VERSION_LIST",
        /// EAP-SIM only (RFC 4186).
        AtSelectedVersion = 16 => "AT_SELECTED_VERSION",
        AtFullauthIdReq = 17 => "AT_FULLAUTH_ID_REQ",
        AtCounter = 19 => "AT_COUNTER",
        AtCounterTooSmall = 20 => "AT_COUNTER_TOO_SMALL",
        AtNonceS = 21 => "AT_NONCE_S",
        AtClientErrorCode = 22 => "AT_CLIENT_ERROR_CODE",
        AtIv = 129 => "AT_IV",
        AtEncrData = 130 => "AT_ENCR_DATA",
        AtNextPseudonym = 132 => "AT_NEXT_PSEUDONYM",
        AtNextReauthId = 133 => "AT_NEXT_REAUTH_ID",
        AtCheckcode = 134 => "AT_CHECKCODE",
        AtResultInd = 135 => "AT_RESULT_IND",
        /// EAP-AKA' only (RFC 9048 section 4).
        AtBidding = 136 => "AT_BIDDING",
    }
}

impl AttributeType {
    /// Attributes from this type on may be skipped by a receiver that does not know them
    /// (RFC 4187 section 8.1).
    pub const SKIPPABLE_FROM: u8 = 128;

    pub fn is_skippable(self) -> bool {
        self.value() >= Self::SKIPPABLE_FROM
    }
}

/// Attribute type numbers as plain octets, for code that patches packets by hand (the
/// tests); [`AttributeType`] is the registry they come from.
pub mod attribute_type {
    use super::AttributeType as T;
    pub const AT_RAND: u8 = T::AtRand.value();
    pub const AT_AUTN: u8 = T::AtAutn.value();
    pub const AT_RES: u8 = T::AtRes.value();
    pub const AT_AUTS: u8 = T::AtAuts.value();
    pub const AT_PADDING: u8 = T::AtPadding.value();
    pub const AT_PERMANENT_ID_REQ: u8 = T::AtPermanentIdReq.value();
    pub const AT_MAC: u8 = T::AtMac.value();
    pub const AT_NOTIFICATION: u8 = T::AtNotification.value();
    pub const AT_ANY_ID_REQ: u8 = T::AtAnyIdReq.value();
    pub const AT_IDENTITY: u8 = T::AtIdentity.value();
    pub const AT_FULLAUTH_ID_REQ: u8 = T::AtFullauthIdReq.value();
    pub const AT_COUNTER: u8 = T::AtCounter.value();
    pub const AT_COUNTER_TOO_SMALL: u8 = T::AtCounterTooSmall.value();
    pub const AT_NONCE_S: u8 = T::AtNonceS.value();
    pub const AT_CLIENT_ERROR_CODE: u8 = T::AtClientErrorCode.value();
    pub const AT_IV: u8 = T::AtIv.value();
    pub const AT_ENCR_DATA: u8 = T::AtEncrData.value();
    pub const AT_NEXT_PSEUDONYM: u8 = T::AtNextPseudonym.value();
    pub const AT_NEXT_REAUTH_ID: u8 = T::AtNextReauthId.value();
    pub const AT_CHECKCODE: u8 = T::AtCheckcode.value();
    pub const AT_RESULT_IND: u8 = T::AtResultInd.value();
    /// Attributes from this type on may be skipped by a receiver that does not know them.
    pub const SKIPPABLE_FROM: u8 = T::SKIPPABLE_FROM;
}

registry! {
    /// AT_NOTIFICATION codes (RFC 4187 sections 10.19 and 11): the S bit (0x8000) set
    /// means success, the P bit (0x4000) set means the notification comes before the
    /// challenge phase (and so carries no AT_MAC).
    pub enum NotificationCode: u16 {
        GeneralFailureAfterAuthentication = 0 => "General failure after authentication",
        TemporarilyDenied = 1026 => "User has been temporarily denied access",
        NotSubscribed = 1031 => "User has not subscribed to the requested service",
        /// Before authentication.
        GeneralFailure = 16384 => "General failure",
        /// Sent after the challenge when both sides asked for result indications.
        Success = 32768 => "Success",
    }
}

impl NotificationCode {
    pub fn is_success(self) -> bool {
        self.value() & 0x8000 != 0
    }
    /// The P bit: set when the notification is sent before the challenge phase.
    pub fn is_phase_bit(self) -> bool {
        self.value() & 0x4000 != 0
    }
}

registry! {
    /// AT_CLIENT_ERROR_CODE values (RFC 4187 sections 10.20 and 11; 1 to 3 from EAP-SIM,
    /// RFC 4186 section 10.19).
    pub enum ClientErrorCode: u16 {
        UnableToProcessPacket = 0 => "unable to process packet",
        UnsupportedVersion = 1 => "unsupported version",
        InsufficientNumberOfChallenges = 2 => "insufficient number of challenges",
        RandsAreNotFresh = 3 => "RANDs are not fresh",
    }
}

/// AT_RES: the RES and its length in bits (RFC 4187 section 10.8).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Res {
    /// RES Length, in bits: 32 to 128.
    pub bits: u16,
    /// The RES, `ceil(bits / 8)` octets.
    pub value: Vec<u8>,
}

impl Res {
    /// A whole-octet RES of 4 to 16 octets.
    pub fn from_octets(value: &[u8]) -> Self {
        Res {
            bits: u16::try_from(value.len() * 8).unwrap_or(u16::MAX),
            value: value.to_vec(),
        }
    }
}

/// One EAP-AKA attribute, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Attribute {
    /// AT_RAND: the AKA RAND.
    Rand([u8; 16]),
    /// AT_AUTN: the AKA AUTN (SQN xor AK, AMF, MAC).
    Autn([u8; 16]),
    /// AT_RES.
    Res(Res),
    /// AT_AUTS: the resynchronisation parameter (Conc(SQN_MS), MAC-S).
    Auts([u8; AUTS_LEN]),
    /// AT_PADDING (inside AT_ENCR_DATA only): the attribute's length in units of 4
    /// octets, 1 to 3; the content is zeros.
    Padding(u8),
    PermanentIdReq,
    /// AT_MAC: HMAC-SHA1-128 over the packet with this field zeroed (section 10.15).
    Mac([u8; MAC_LEN]),
    Notification(NotificationCode),
    AnyIdReq,
    /// AT_IDENTITY: the peer's identity (an NAI).
    Identity(Vec<u8>),
    FullauthIdReq,
    Counter(u16),
    CounterTooSmall,
    NonceS([u8; 16]),
    ClientErrorCode(ClientErrorCode),
    /// AT_IV (skippable).
    Iv([u8; 16]),
    /// AT_ENCR_DATA (skippable): a multiple of 16 octets of AES-CBC ciphertext.
    EncrData(Vec<u8>),
    NextPseudonym(Vec<u8>),
    NextReauthId(Vec<u8>),
    /// AT_CHECKCODE (skippable): `None` when no AKA-Identity round was run.
    Checkcode(Option<[u8; CHECKCODE_LEN]>),
    /// AT_RESULT_IND (skippable).
    ResultInd,
    /// A skippable attribute this implementation does not know: its type and the octets
    /// after its Length field, re-emitted as they were.
    Unknown {
        attribute_type: u8,
        data: Vec<u8>,
    },
}

impl Attribute {
    /// The attribute's type.
    pub fn kind(&self) -> AttributeType {
        use AttributeType as T;
        match self {
            Attribute::Rand(_) => T::AtRand,
            Attribute::Autn(_) => T::AtAutn,
            Attribute::Res(_) => T::AtRes,
            Attribute::Auts(_) => T::AtAuts,
            Attribute::Padding(_) => T::AtPadding,
            Attribute::PermanentIdReq => T::AtPermanentIdReq,
            Attribute::Mac(_) => T::AtMac,
            Attribute::Notification(_) => T::AtNotification,
            Attribute::AnyIdReq => T::AtAnyIdReq,
            Attribute::Identity(_) => T::AtIdentity,
            Attribute::FullauthIdReq => T::AtFullauthIdReq,
            Attribute::Counter(_) => T::AtCounter,
            Attribute::CounterTooSmall => T::AtCounterTooSmall,
            Attribute::NonceS(_) => T::AtNonceS,
            Attribute::ClientErrorCode(_) => T::AtClientErrorCode,
            Attribute::Iv(_) => T::AtIv,
            Attribute::EncrData(_) => T::AtEncrData,
            Attribute::NextPseudonym(_) => T::AtNextPseudonym,
            Attribute::NextReauthId(_) => T::AtNextReauthId,
            Attribute::Checkcode(_) => T::AtCheckcode,
            Attribute::ResultInd => T::AtResultInd,
            Attribute::Unknown { attribute_type, .. } => T::from(*attribute_type),
        }
    }

    /// The attribute's type number.
    pub fn attribute_type(&self) -> u8 {
        self.kind().value()
    }

    /// Octets after the Type and Length fields, padding included.
    fn value_len(&self) -> usize {
        match self {
            Attribute::Rand(_)
            | Attribute::Autn(_)
            | Attribute::Mac(_)
            | Attribute::NonceS(_)
            | Attribute::Iv(_) => 2 + 16,
            Attribute::Res(res) => pad4(2 + 2 + res.value.len()) - 2,
            Attribute::Auts(_) => AUTS_LEN,
            Attribute::Padding(units) => (usize::from(*units) * 4).saturating_sub(2),
            Attribute::PermanentIdReq
            | Attribute::AnyIdReq
            | Attribute::FullauthIdReq
            | Attribute::CounterTooSmall
            | Attribute::ResultInd => 2,
            Attribute::Notification(_) | Attribute::Counter(_) | Attribute::ClientErrorCode(_) => 2,
            Attribute::Identity(id)
            | Attribute::NextPseudonym(id)
            | Attribute::NextReauthId(id) => pad4(2 + 2 + id.len()) - 2,
            Attribute::EncrData(data) => pad4(2 + 2 + data.len()) - 2,
            Attribute::Checkcode(None) => 2,
            Attribute::Checkcode(Some(_)) => 2 + CHECKCODE_LEN,
            Attribute::Unknown { data, .. } => pad4(2 + data.len()) - 2,
        }
    }

    /// Size of the emitted attribute, header included.
    pub fn buffer_len(&self) -> usize {
        2 + self.value_len()
    }

    /// Decodes one attribute from its type and the octets after its Length field.
    pub fn parse(attribute_type: u8, value: &[u8]) -> Result<Self, EapError> {
        fn fixed<const N: usize>(
            value: &[u8],
            offset: usize,
            what: &'static str,
        ) -> Result<[u8; N], EapError> {
            if value.len() != offset + N {
                return Err(EapError::Malformed(what));
            }
            let mut out = [0; N];
            out.copy_from_slice(&value[offset..]);
            Ok(out)
        }
        fn reserved_only(value: &[u8], what: &'static str) -> Result<(), EapError> {
            if value.len() == 2 {
                Ok(())
            } else {
                Err(EapError::Malformed(what))
            }
        }
        fn u16_only(value: &[u8], what: &'static str) -> Result<u16, EapError> {
            if value.len() == 2 {
                Ok(u16::from_be_bytes([value[0], value[1]]))
            } else {
                Err(EapError::Malformed(what))
            }
        }
        /// A two-octet "actual length" then that many octets, then padding.
        fn counted(value: &[u8], what: &'static str) -> Result<Vec<u8>, EapError> {
            if value.len() < 2 {
                return Err(EapError::Malformed(what));
            }
            let actual = usize::from(u16::from_be_bytes([value[0], value[1]]));
            value
                .get(2..2 + actual)
                .map(<[u8]>::to_vec)
                .ok_or(EapError::Malformed(what))
        }

        use AttributeType as T;
        Ok(match T::from(attribute_type) {
            T::AtRand => Attribute::Rand(fixed(value, 2, "AT_RAND length")?),
            T::AtAutn => Attribute::Autn(fixed(value, 2, "AT_AUTN length")?),
            T::AtRes => {
                if value.len() < 2 {
                    return Err(EapError::Malformed("AT_RES length"));
                }
                let bits = u16::from_be_bytes([value[0], value[1]]);
                if !(32..=128).contains(&bits) {
                    return Err(EapError::Malformed("AT_RES length outside 32 to 128 bits"));
                }
                let octets = usize::from(bits).div_ceil(8);
                let res = value
                    .get(2..2 + octets)
                    .ok_or(EapError::Malformed("AT_RES shorter than its RES Length"))?;
                if value.len() != pad4(2 + 2 + octets) - 2 {
                    return Err(EapError::Malformed("AT_RES longer than its RES Length"));
                }
                Attribute::Res(Res {
                    bits,
                    value: res.to_vec(),
                })
            }
            T::AtAuts => Attribute::Auts(fixed(value, 0, "AT_AUTS length")?),
            T::AtPadding => {
                if value.iter().any(|&b| b != 0) {
                    return Err(EapError::Malformed("AT_PADDING not zero"));
                }
                match value.len() {
                    2 => Attribute::Padding(1),
                    6 => Attribute::Padding(2),
                    10 => Attribute::Padding(3),
                    _ => return Err(EapError::Malformed("AT_PADDING length")),
                }
            }
            T::AtPermanentIdReq => {
                reserved_only(value, "AT_PERMANENT_ID_REQ length")?;
                Attribute::PermanentIdReq
            }
            T::AtMac => Attribute::Mac(fixed(value, 2, "AT_MAC length")?),
            T::AtNotification => {
                Attribute::Notification(NotificationCode::from(u16_only(value, "AT_NOTIFICATION")?))
            }
            T::AtAnyIdReq => {
                reserved_only(value, "AT_ANY_ID_REQ length")?;
                Attribute::AnyIdReq
            }
            T::AtIdentity => Attribute::Identity(counted(value, "AT_IDENTITY length")?),
            T::AtFullauthIdReq => {
                reserved_only(value, "AT_FULLAUTH_ID_REQ length")?;
                Attribute::FullauthIdReq
            }
            T::AtCounter => Attribute::Counter(u16_only(value, "AT_COUNTER length")?),
            T::AtCounterTooSmall => {
                reserved_only(value, "AT_COUNTER_TOO_SMALL length")?;
                Attribute::CounterTooSmall
            }
            T::AtNonceS => Attribute::NonceS(fixed(value, 2, "AT_NONCE_S length")?),
            T::AtClientErrorCode => Attribute::ClientErrorCode(ClientErrorCode::from(u16_only(
                value,
                "AT_CLIENT_ERROR_CODE length",
            )?)),
            T::AtIv => Attribute::Iv(fixed(value, 2, "AT_IV length")?),
            T::AtEncrData => {
                let data = &value[2.min(value.len())..];
                if value.len() < 2 || data.is_empty() || !data.len().is_multiple_of(16) {
                    return Err(EapError::Malformed("AT_ENCR_DATA not whole AES blocks"));
                }
                Attribute::EncrData(data.to_vec())
            }
            T::AtNextPseudonym => {
                Attribute::NextPseudonym(counted(value, "AT_NEXT_PSEUDONYM length")?)
            }
            T::AtNextReauthId => {
                Attribute::NextReauthId(counted(value, "AT_NEXT_REAUTH_ID length")?)
            }
            T::AtCheckcode => match value.len() {
                2 => Attribute::Checkcode(None),
                22 => Attribute::Checkcode(Some(fixed(value, 2, "AT_CHECKCODE length")?)),
                _ => return Err(EapError::Malformed("AT_CHECKCODE length")),
            },
            T::AtResultInd => {
                reserved_only(value, "AT_RESULT_IND length")?;
                Attribute::ResultInd
            }
            t if t.is_skippable() => Attribute::Unknown {
                attribute_type,
                data: value.to_vec(),
            },
            _ => return Err(EapError::UnsupportedAttribute(attribute_type)),
        })
    }

    /// Writes the attribute into the first `buffer_len()` octets of `out`.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, EapError> {
        let len = self.buffer_len();
        let units = u8::try_from(len / 4).map_err(|_| EapError::TooLong("attribute"))?;
        if let Attribute::Padding(units) = self {
            if !(1..=3).contains(units) {
                return Err(EapError::Malformed("AT_PADDING length"));
            }
        }
        if let Attribute::Unknown {
            attribute_type,
            data,
        } = self
        {
            if *attribute_type < AttributeType::SKIPPABLE_FROM
                || !(data.len() + 2).is_multiple_of(4)
            {
                return Err(EapError::Malformed(
                    "unknown attribute not skippable or padded",
                ));
            }
        }
        let out = out.get_mut(..len).ok_or(EapError::BufferTooShort)?;
        out.fill(0);
        out[0] = self.attribute_type();
        out[1] = units;
        let value = &mut out[2..];
        fn counted(value: &mut [u8], data: &[u8], what: &'static str) -> Result<(), EapError> {
            let actual = u16::try_from(data.len()).map_err(|_| EapError::TooLong(what))?;
            value[..2].copy_from_slice(&actual.to_be_bytes());
            value[2..2 + data.len()].copy_from_slice(data);
            Ok(())
        }
        match self {
            Attribute::Rand(v)
            | Attribute::Autn(v)
            | Attribute::Mac(v)
            | Attribute::NonceS(v)
            | Attribute::Iv(v) => value[2..18].copy_from_slice(v),
            Attribute::Res(res) => {
                if usize::from(res.bits).div_ceil(8) != res.value.len() {
                    return Err(EapError::Malformed("AT_RES length and value disagree"));
                }
                value[..2].copy_from_slice(&res.bits.to_be_bytes());
                value[2..2 + res.value.len()].copy_from_slice(&res.value);
            }
            Attribute::Auts(v) => value.copy_from_slice(v),
            Attribute::Padding(_)
            | Attribute::PermanentIdReq
            | Attribute::AnyIdReq
            | Attribute::FullauthIdReq
            | Attribute::CounterTooSmall
            | Attribute::ResultInd
            | Attribute::Checkcode(None) => {}
            Attribute::Notification(code) => value.copy_from_slice(&code.value().to_be_bytes()),
            Attribute::Counter(counter) => value.copy_from_slice(&counter.to_be_bytes()),
            Attribute::ClientErrorCode(code) => value.copy_from_slice(&code.value().to_be_bytes()),
            Attribute::Identity(id) => counted(value, id, "AT_IDENTITY")?,
            Attribute::NextPseudonym(id) => counted(value, id, "AT_NEXT_PSEUDONYM")?,
            Attribute::NextReauthId(id) => counted(value, id, "AT_NEXT_REAUTH_ID")?,
            Attribute::EncrData(data) => {
                if data.is_empty() || !data.len().is_multiple_of(16) {
                    return Err(EapError::Malformed("AT_ENCR_DATA not whole AES blocks"));
                }
                value[2..].copy_from_slice(data)
            }
            Attribute::Checkcode(Some(hash)) => value[2..].copy_from_slice(hash),
            Attribute::Unknown { data, .. } => value.copy_from_slice(data),
        }
        Ok(len)
    }
}

fn pad4(len: usize) -> usize {
    len.div_ceil(4) * 4
}

/// One attribute as it sits in the message, not yet decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawAttribute<'a> {
    pub attribute_type: u8,
    /// Offset of the attribute's Type octet within the EAP-AKA Type-Data.
    pub offset: usize,
    /// The octets after the Length field.
    pub value: &'a [u8],
}

/// Walks the attributes of an EAP-AKA message; each item's lengths are checked before
/// it is returned, and the walk stops after the first error.
#[derive(Debug, Clone)]
pub struct AttributeIter<'a> {
    data: &'a [u8],
    offset: usize,
    failed: bool,
}

impl<'a> Iterator for AttributeIter<'a> {
    type Item = Result<RawAttribute<'a>, EapError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.offset >= self.data.len() {
            return None;
        }
        let rest = &self.data[self.offset..];
        let Some(&[attribute_type, units]) = rest.get(..2) else {
            self.failed = true;
            return Some(Err(EapError::Truncated("attribute without its Length")));
        };
        let len = usize::from(units) * 4;
        if len == 0 {
            self.failed = true;
            return Some(Err(EapError::Malformed("attribute Length zero")));
        }
        let Some(attribute) = rest.get(..len) else {
            self.failed = true;
            return Some(Err(EapError::Truncated(
                "attribute longer than the message",
            )));
        };
        let raw = RawAttribute {
            attribute_type,
            offset: self.offset,
            value: &attribute[2..],
        };
        self.offset += len;
        Some(Ok(raw))
    }
}

/// A checked view over the Type-Data of an EAP-AKA packet (after the Type octet).
#[derive(Debug, Clone)]
pub struct AkaMessage<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> AkaMessage<T> {
    /// Checks that the Subtype and Reserved octets are there.
    pub fn new_checked(buffer: T) -> Result<Self, EapError> {
        if buffer.as_ref().len() < AKA_HEADER_LEN {
            return Err(EapError::Truncated("EAP-AKA without Subtype and Reserved"));
        }
        Ok(AkaMessage { buffer })
    }

    pub fn subtype(&self) -> Subtype {
        Subtype::from(self.buffer.as_ref()[0])
    }

    pub fn attributes(&self) -> AttributeIter<'_> {
        AttributeIter {
            data: self.buffer.as_ref(),
            offset: AKA_HEADER_LEN,
            failed: false,
        }
    }
}

/// What an EAP-AKA message means: its subtype and its attributes in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AkaRepr {
    pub subtype: Subtype,
    pub attributes: Vec<Attribute>,
}

impl AkaRepr {
    pub fn new(subtype: Subtype, attributes: Vec<Attribute>) -> Self {
        AkaRepr {
            subtype,
            attributes,
        }
    }

    /// Decodes the Type-Data of an EAP-AKA packet: an unknown subtype, an attribute
    /// that does not parse, an unknown non-skippable attribute or a repeated known one
    /// is an error.
    pub fn parse(type_data: &[u8]) -> Result<Self, EapError> {
        let message = AkaMessage::new_checked(type_data)?;
        let subtype = message.subtype();
        if let Subtype::Unknown(t) = subtype {
            return Err(EapError::UnknownSubtype(t));
        }
        let mut attributes: Vec<Attribute> = Vec::new();
        for raw in message.attributes() {
            let raw = raw?;
            let attribute = Attribute::parse(raw.attribute_type, raw.value)?;
            let known = !matches!(attribute, Attribute::Unknown { .. });
            if known
                && attributes
                    .iter()
                    .any(|a| a.attribute_type() == raw.attribute_type)
            {
                return Err(EapError::RepeatedAttribute(raw.attribute_type));
            }
            attributes.push(attribute);
        }
        Ok(AkaRepr {
            subtype,
            attributes,
        })
    }

    /// The first attribute of this type.
    pub fn get(&self, attribute_type: u8) -> Option<&Attribute> {
        self.attributes
            .iter()
            .find(|a| a.attribute_type() == attribute_type)
    }

    pub fn has(&self, attribute_type: u8) -> bool {
        self.get(attribute_type).is_some()
    }

    pub fn rand(&self) -> Option<[u8; 16]> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Rand(v) => Some(*v),
            _ => None,
        })
    }

    pub fn autn(&self) -> Option<[u8; 16]> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Autn(v) => Some(*v),
            _ => None,
        })
    }

    pub fn res(&self) -> Option<&Res> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Res(v) => Some(v),
            _ => None,
        })
    }

    pub fn auts(&self) -> Option<[u8; AUTS_LEN]> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Auts(v) => Some(*v),
            _ => None,
        })
    }

    pub fn mac(&self) -> Option<[u8; MAC_LEN]> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Mac(v) => Some(*v),
            _ => None,
        })
    }

    pub fn identity(&self) -> Option<&[u8]> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Identity(v) => Some(v.as_slice()),
            _ => None,
        })
    }

    pub fn notification(&self) -> Option<NotificationCode> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Notification(v) => Some(*v),
            _ => None,
        })
    }

    pub fn client_error_code(&self) -> Option<ClientErrorCode> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::ClientErrorCode(v) => Some(*v),
            _ => None,
        })
    }

    /// `None`: no AT_CHECKCODE; `Some(None)`: an empty one; `Some(Some(hash))`.
    pub fn checkcode(&self) -> Option<Option<[u8; CHECKCODE_LEN]>> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Checkcode(v) => Some(*v),
            _ => None,
        })
    }

    /// Size of the emitted Type-Data (Subtype, Reserved, attributes).
    pub fn buffer_len(&self) -> usize {
        AKA_HEADER_LEN
            + self
                .attributes
                .iter()
                .map(Attribute::buffer_len)
                .sum::<usize>()
    }

    /// Writes the Type-Data into the first `buffer_len()` octets of `out`.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, EapError> {
        let len = self.buffer_len();
        let out = out.get_mut(..len).ok_or(EapError::BufferTooShort)?;
        out[0] = self.subtype.into();
        out[1] = 0;
        out[2] = 0;
        let mut offset = AKA_HEADER_LEN;
        for attribute in &self.attributes {
            offset += attribute.emit(&mut out[offset..])?;
        }
        Ok(len)
    }
}
