//! EAP packet framing (RFC 3748 section 4 and 5): the checked view [`EapPacket`] and the
//! typed [`EapRepr`] for Request, Response, Success and Failure, with the Identity,
//! Notification and legacy Nak types decoded and EAP-AKA decoded by [`super::aka`].

use super::aka::AkaRepr;
use super::error::EapError;
use crate::registry::registry;

/// Length of the Code, Identifier and Length fields.
pub const HEADER_LEN: usize = 4;

registry! {
    /// EAP Code (RFC 3748 section 4).
    pub enum Code: u8 {
        Request = 1 => "Request",
        Response = 2 => "Response",
        Success = 3 => "Success",
        Failure = 4 => "Failure",
    }
}

registry! {
    /// EAP method Type (RFC 3748 section 5, IANA "Method Types").
    pub enum EapType: u8 {
        Identity = 1 => "Identity",
        Notification = 2 => "Notification",
        /// Legacy Nak, Response only (RFC 3748 section 5.3.1).
        Nak = 3 => "Nak",
        Md5Challenge = 4 => "MD5-Challenge",
        /// RFC 4186.
        Sim = 18 => "EAP-SIM",
        /// RFC 4187.
        Aka = 23 => "EAP-AKA",
        /// RFC 9048.
        AkaPrime = 50 => "EAP-AKA'",
        /// RFC 3748 section 5.7.
        Expanded = 254 => "Expanded Types",
        Experimental = 255 => "Experimental",
    }
}

/// A checked view over the bytes of one EAP packet.
///
/// Octets past the Length field are link-layer padding and are ignored (RFC 3748
/// section 4.1).
#[derive(Debug, Clone)]
pub struct EapPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EapPacket<T> {
    /// Checks only what is needed so that every accessor below cannot panic: the header
    /// is there, Length covers at least the header (and the Type of a Request or
    /// Response) and does not run past the buffer.
    pub fn new_checked(buffer: T) -> Result<Self, EapError> {
        let bytes = buffer.as_ref();
        if bytes.len() < HEADER_LEN {
            return Err(EapError::Truncated("shorter than the EAP header"));
        }
        let length = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
        if length < HEADER_LEN {
            return Err(EapError::Malformed("Length below the header size"));
        }
        if length > bytes.len() {
            return Err(EapError::Truncated("shorter than its Length field"));
        }
        if matches!(Code::from(bytes[0]), Code::Request | Code::Response) && length < HEADER_LEN + 1
        {
            return Err(EapError::Malformed("Request or Response without a Type"));
        }
        Ok(EapPacket { buffer })
    }

    pub fn code(&self) -> Code {
        Code::from(self.buffer.as_ref()[0])
    }

    pub fn identifier(&self) -> u8 {
        self.buffer.as_ref()[1]
    }

    /// The Length field: the packet's size, header included.
    pub fn length(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[2], b[3]])
    }

    /// The bytes the Length field covers, header included.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[..usize::from(self.length())]
    }

    /// The Type of a Request or Response; `None` for Success, Failure and unknown Codes.
    pub fn eap_type(&self) -> Option<EapType> {
        match self.code() {
            Code::Request | Code::Response => Some(EapType::from(self.buffer.as_ref()[4])),
            _ => None,
        }
    }

    /// The Type-Data of a Request or Response (empty for other Codes).
    pub fn type_data(&self) -> &[u8] {
        match self.code() {
            Code::Request | Code::Response => &self.as_bytes()[HEADER_LEN + 1..],
            _ => &[],
        }
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }
}

/// The Type and Type-Data of a Request or Response, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeData {
    /// Identity (RFC 3748 section 5.1): in a Request an optional displayable message, in
    /// a Response the peer's identity (an NAI, RFC 7542). Kept as octets: UTF-8 is
    /// recommended, not required.
    Identity(Vec<u8>),
    /// Notification (RFC 3748 section 5.2): a displayable message in a Request, empty in
    /// the Response.
    Notification(Vec<u8>),
    /// Legacy Nak (RFC 3748 section 5.3.1): the authentication types the peer desires,
    /// `EapType::Unknown(0)` meaning "no alternative". Response only.
    Nak(Vec<EapType>),
    /// EAP-AKA (RFC 4187).
    Aka(AkaRepr),
    /// Any other method, kept as it was.
    Other { eap_type: EapType, data: Vec<u8> },
}

impl TypeData {
    pub fn eap_type(&self) -> EapType {
        match self {
            TypeData::Identity(_) => EapType::Identity,
            TypeData::Notification(_) => EapType::Notification,
            TypeData::Nak(_) => EapType::Nak,
            TypeData::Aka(_) => EapType::Aka,
            TypeData::Other { eap_type, .. } => *eap_type,
        }
    }

    fn data_len(&self) -> usize {
        match self {
            TypeData::Identity(data) | TypeData::Notification(data) => data.len(),
            TypeData::Nak(types) => types.len(),
            TypeData::Aka(aka) => aka.buffer_len(),
            TypeData::Other { data, .. } => data.len(),
        }
    }
}

/// What an EAP packet means, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EapRepr {
    Request { identifier: u8, data: TypeData },
    Response { identifier: u8, data: TypeData },
    Success { identifier: u8 },
    Failure { identifier: u8 },
}

impl EapRepr {
    /// Decodes a checked packet. An EAP-AKA payload is decoded too, so a malformed one is
    /// an error here; a state machine that must answer a malformed EAP-AKA message reads
    /// the header from the view and the payload with [`AkaRepr::parse`] instead.
    pub fn parse<T: AsRef<[u8]>>(packet: &EapPacket<T>) -> Result<Self, EapError> {
        let identifier = packet.identifier();
        match packet.code() {
            Code::Success => Ok(EapRepr::Success { identifier }),
            Code::Failure => Ok(EapRepr::Failure { identifier }),
            Code::Unknown(code) => Err(EapError::UnknownCode(code)),
            code @ (Code::Request | Code::Response) => {
                let eap_type = packet.eap_type().unwrap_or(EapType::Unknown(0));
                let body = packet.type_data();
                let data = match eap_type {
                    EapType::Identity => TypeData::Identity(body.to_vec()),
                    EapType::Notification => TypeData::Notification(body.to_vec()),
                    EapType::Nak => {
                        if code == Code::Request {
                            return Err(EapError::Malformed("Nak in a Request"));
                        }
                        if body.is_empty() {
                            return Err(EapError::Malformed("Nak without a desired Type"));
                        }
                        TypeData::Nak(body.iter().map(|&t| EapType::from(t)).collect())
                    }
                    EapType::Aka => TypeData::Aka(AkaRepr::parse(body)?),
                    other => TypeData::Other {
                        eap_type: other,
                        data: body.to_vec(),
                    },
                };
                Ok(if code == Code::Request {
                    EapRepr::Request { identifier, data }
                } else {
                    EapRepr::Response { identifier, data }
                })
            }
        }
    }

    /// Parses bytes: the view and the typed form in one step.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Self, EapError> {
        EapRepr::parse(&EapPacket::new_checked(bytes)?)
    }

    pub fn identifier(&self) -> u8 {
        match self {
            EapRepr::Request { identifier, .. }
            | EapRepr::Response { identifier, .. }
            | EapRepr::Success { identifier }
            | EapRepr::Failure { identifier } => *identifier,
        }
    }

    pub fn code(&self) -> Code {
        match self {
            EapRepr::Request { .. } => Code::Request,
            EapRepr::Response { .. } => Code::Response,
            EapRepr::Success { .. } => Code::Success,
            EapRepr::Failure { .. } => Code::Failure,
        }
    }

    /// Size of the emitted packet.
    pub fn buffer_len(&self) -> usize {
        match self {
            EapRepr::Request { data, .. } | EapRepr::Response { data, .. } => {
                HEADER_LEN + 1 + data.data_len()
            }
            EapRepr::Success { .. } | EapRepr::Failure { .. } => HEADER_LEN,
        }
    }

    /// Code, Identifier and Length (RFC 3748 section 4).
    fn header(&self, length: u16) -> [u8; HEADER_LEN] {
        let [high, low] = length.to_be_bytes();
        [self.code().value(), self.identifier(), high, low]
    }

    /// An EAP-Success (RFC 3748 section 4.2) with `identifier`: four octets, so writing
    /// it cannot fail.
    pub fn success_bytes(identifier: u8) -> [u8; HEADER_LEN] {
        EapRepr::Success { identifier }.header(HEADER_LEN as u16)
    }

    /// An EAP-Failure (RFC 3748 section 4.2) with `identifier`: four octets, so writing
    /// it cannot fail.
    pub fn failure_bytes(identifier: u8) -> [u8; HEADER_LEN] {
        EapRepr::Failure { identifier }.header(HEADER_LEN as u16)
    }

    /// Writes the packet into the first `buffer_len()` octets of `out`; returns that length.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, EapError> {
        let len = self.buffer_len();
        let length = u16::try_from(len).map_err(|_| EapError::TooLong("EAP Length"))?;
        let out = out.get_mut(..len).ok_or(EapError::BufferTooShort)?;
        out[..HEADER_LEN].copy_from_slice(&self.header(length));
        if let EapRepr::Request { data, .. } | EapRepr::Response { data, .. } = self {
            out[4] = data.eap_type().into();
            let body = &mut out[HEADER_LEN + 1..];
            match data {
                TypeData::Identity(bytes) | TypeData::Notification(bytes) => {
                    body.copy_from_slice(bytes)
                }
                TypeData::Nak(types) => {
                    for (slot, &t) in body.iter_mut().zip(types) {
                        *slot = t.into();
                    }
                }
                TypeData::Aka(aka) => {
                    aka.emit(body)?;
                }
                TypeData::Other { data, .. } => body.copy_from_slice(data),
            }
        }
        Ok(len)
    }

    /// Emits into a new vector.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EapError> {
        let mut out = vec![0; self.buffer_len()];
        self.emit(&mut out)?;
        Ok(out)
    }
}
