//! Diameter messages (RFC 6733 section 3): the checked view [`Packet`], the header and
//! message representations, the answer helpers, and [`Framer`], which splits a TCP byte
//! stream into messages.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |    Version    |                 Message Length                |
//! | command flags |                  Command Code                 |
//! |                         Application-ID                        |
//! |                      Hop-by-Hop Identifier                    |
//! |                      End-to-End Identifier                    |
//! |  AVPs ...
//! ```

use super::avp::{pad4, Avp, AvpIter, EmitError, MAX_LEN24};
use super::codes::{avp, result};
use super::error::Error;

/// Length of the Diameter header.
pub const HEADER_LEN: usize = 20;
/// The only protocol version (RFC 6733 section 3).
pub const VERSION: u8 = 1;

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    if let Some(src) = bytes.get(at..at + 4) {
        word.copy_from_slice(src);
    }
    u32::from_be_bytes(word)
}

/// The command flags octet (RFC 6733 section 3). Reserved bits are kept as received, so a
/// relayed message is re-emitted unchanged; RFC 6733 says to ignore them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CommandFlags(pub u8);

impl CommandFlags {
    /// R: the message is a request.
    pub const REQUEST: u8 = 0x80;
    /// P: the message may be proxied, relayed or redirected.
    pub const PROXIABLE: u8 = 0x40;
    /// E: the answer carries a protocol error.
    pub const ERROR: u8 = 0x20;
    /// T: a request possibly retransmitted after a failover.
    pub const RETRANSMITTED: u8 = 0x10;

    /// Whether the R bit is set.
    pub fn request(self) -> bool {
        self.0 & Self::REQUEST != 0
    }
    /// Whether the P bit is set.
    pub fn proxiable(self) -> bool {
        self.0 & Self::PROXIABLE != 0
    }
    /// Whether the E bit is set.
    pub fn error(self) -> bool {
        self.0 & Self::ERROR != 0
    }
    /// Whether the T bit is set.
    pub fn retransmitted(self) -> bool {
        self.0 & Self::RETRANSMITTED != 0
    }
    fn with(self, bit: u8, on: bool) -> Self {
        if on {
            CommandFlags(self.0 | bit)
        } else {
            CommandFlags(self.0 & !bit)
        }
    }
    /// Sets or clears R.
    pub fn with_request(self, on: bool) -> Self {
        self.with(Self::REQUEST, on)
    }
    /// Sets or clears P.
    pub fn with_proxiable(self, on: bool) -> Self {
        self.with(Self::PROXIABLE, on)
    }
    /// Sets or clears E.
    pub fn with_error(self, on: bool) -> Self {
        self.with(Self::ERROR, on)
    }
    /// Sets or clears T.
    pub fn with_retransmitted(self, on: bool) -> Self {
        self.with(Self::RETRANSMITTED, on)
    }
}

/// A checked view over one Diameter message at the start of a buffer.
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks the version, and that the Message Length is at least a header, a multiple
    /// of 4 and within the buffer; every accessor below then reads within bounds.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let bytes = buffer.as_ref();
        if bytes.len() < HEADER_LEN {
            return Err(Error::Truncated {
                have: bytes.len(),
                need: HEADER_LEN,
            });
        }
        if bytes[0] != VERSION {
            return Err(Error::UnsupportedVersion(bytes[0]));
        }
        let length = be_u32(bytes, 0) & 0x00ff_ffff;
        if (length as usize) < HEADER_LEN || length & 3 != 0 {
            return Err(Error::InvalidMessageLength(length));
        }
        if length as usize > bytes.len() {
            return Err(Error::Truncated {
                have: bytes.len(),
                need: length as usize,
            });
        }
        Ok(Packet { buffer })
    }

    /// The Version field.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0]
    }
    /// The Message Length field: header plus AVPs, padding included.
    pub fn length(&self) -> usize {
        (be_u32(self.buffer.as_ref(), 0) & 0x00ff_ffff) as usize
    }
    /// The command flags.
    pub fn flags(&self) -> CommandFlags {
        CommandFlags(self.buffer.as_ref()[4])
    }
    /// The Command Code (24 bits).
    pub fn command_code(&self) -> u32 {
        be_u32(self.buffer.as_ref(), 4) & 0x00ff_ffff
    }
    /// The Application-ID.
    pub fn application_id(&self) -> u32 {
        be_u32(self.buffer.as_ref(), 8)
    }
    /// The Hop-by-Hop Identifier.
    pub fn hop_by_hop(&self) -> u32 {
        be_u32(self.buffer.as_ref(), 12)
    }
    /// The End-to-End Identifier.
    pub fn end_to_end(&self) -> u32 {
        be_u32(self.buffer.as_ref(), 16)
    }
    /// The AVPs, as bytes.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.length()]
    }
    /// The AVPs, one checked view each.
    pub fn avps(&self) -> AvpIter<'_> {
        AvpIter::new(self.payload())
    }
}

/// The header fields a message carries, Version and Message Length aside (those are
/// computed when emitting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// R, P, E, T and the reserved bits.
    pub flags: CommandFlags,
    /// The Command Code; must fit 24 bits.
    pub command_code: u32,
    /// The Application-ID.
    pub application_id: u32,
    /// The Hop-by-Hop Identifier.
    pub hop_by_hop: u32,
    /// The End-to-End Identifier.
    pub end_to_end: u32,
}

impl Header {
    /// A request header; `proxiable` sets the P bit.
    pub fn request(
        command_code: u32,
        application_id: u32,
        proxiable: bool,
        hop_by_hop: u32,
        end_to_end: u32,
    ) -> Self {
        Header {
            flags: CommandFlags(CommandFlags::REQUEST).with_proxiable(proxiable),
            command_code,
            application_id,
            hop_by_hop,
            end_to_end,
        }
    }

    /// The header of the answer to this request (RFC 6733 section 6.2): same command,
    /// application and identifiers, R and T cleared, P kept, E set for protocol errors.
    pub fn answer(&self, protocol_error: bool) -> Self {
        Header {
            flags: CommandFlags(self.flags.0 & CommandFlags::PROXIABLE).with_error(protocol_error),
            ..*self
        }
    }

    /// Reads the header of a checked message. E together with R is an error
    /// (DIAMETER_INVALID_HDR_BITS: "a message with the 'E' bit MUST NOT be sent as a
    /// response to an answer message", RFC 6733 section 7.2, so it only marks answers).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Self, Error> {
        let flags = packet.flags();
        if flags.request() && flags.error() {
            return Err(Error::InvalidHdrBits(flags.0));
        }
        Ok(Header {
            flags,
            command_code: packet.command_code(),
            application_id: packet.application_id(),
            hop_by_hop: packet.hop_by_hop(),
            end_to_end: packet.end_to_end(),
        })
    }

    fn emit(&self, length: usize, out: &mut [u8]) -> Result<(), EmitError> {
        if length > MAX_LEN24 {
            return Err(EmitError::TooLarge("message length"));
        }
        if self.command_code as usize > MAX_LEN24 {
            return Err(EmitError::TooLarge("command code"));
        }
        out[0..4].copy_from_slice(&(length as u32 | u32::from(VERSION) << 24).to_be_bytes());
        out[4..8]
            .copy_from_slice(&(self.command_code | u32::from(self.flags.0) << 24).to_be_bytes());
        out[8..12].copy_from_slice(&self.application_id.to_be_bytes());
        out[12..16].copy_from_slice(&self.hop_by_hop.to_be_bytes());
        out[16..20].copy_from_slice(&self.end_to_end.to_be_bytes());
        Ok(())
    }
}

/// A whole Diameter message: the header and every AVP in order, known or not.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Message {
    /// The header.
    pub header: Header,
    /// The top-level AVPs in order.
    pub avps: Vec<Avp>,
}

impl Message {
    /// A message with a header and no AVPs yet.
    pub fn new(header: Header) -> Self {
        Message {
            header,
            avps: Vec::new(),
        }
    }

    /// Adds an AVP at the end (builder style).
    pub fn with(mut self, avp: Avp) -> Self {
        self.avps.push(avp);
        self
    }

    /// Adds an AVP at the end.
    pub fn push(&mut self, avp: Avp) {
        self.avps.push(avp);
    }

    /// Reads a message from a checked view: the header and every AVP (their data formats
    /// are read later, by whoever knows them).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Self, Error> {
        let header = Header::parse(packet)?;
        let avps = Avp::parse_all(packet.payload())?;
        Ok(Message { header, avps })
    }

    /// Reads one message from the start of `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        Message::parse(&Packet::new_checked(bytes)?)
    }

    /// Bytes the message takes when emitted.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.avps.iter().map(|a| pad4(a.length())).sum::<usize>()
    }

    /// Writes the message at the start of `out`; returns the bytes written.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, EmitError> {
        let need = self.buffer_len();
        let Some(out) = out.get_mut(..need) else {
            return Err(EmitError::BufferTooShort {
                have: out.len(),
                need,
            });
        };
        self.header.emit(need, out)?;
        let mut at = HEADER_LEN;
        for avp in &self.avps {
            at += avp.emit(&mut out[at..])?;
        }
        Ok(need)
    }

    /// The message as bytes.
    pub fn to_vec(&self) -> Result<Vec<u8>, EmitError> {
        let mut out = vec![0; self.buffer_len()];
        self.emit(&mut out)?;
        Ok(out)
    }

    /// The first top-level AVP with this code and vendor.
    pub fn find(&self, code: u32, vendor_id: Option<u32>) -> Option<&Avp> {
        self.avps.iter().find(|a| a.is(code, vendor_id))
    }

    /// Every top-level AVP with this code and vendor.
    pub fn find_all(&self, code: u32, vendor_id: Option<u32>) -> impl Iterator<Item = &Avp> {
        self.avps.iter().filter(move |a| a.is(code, vendor_id))
    }

    /// The Session-Id, if present and UTF-8.
    pub fn session_id(&self) -> Option<&str> {
        self.find(avp::SESSION_ID, None)?.as_utf8().ok()
    }

    /// The Result-Code, if present and well formed.
    pub fn result_code(&self) -> Option<u32> {
        self.find(avp::RESULT_CODE, None)?.as_u32().ok()
    }

    /// The start of the answer to this request (RFC 6733 section 6.2): the answer header,
    /// the request's Session-Id and its Proxy-Info AVPs, in that order. The caller adds
    /// Result-Code, Origin-Host, Origin-Realm and the command's own AVPs.
    pub fn answer(&self) -> Message {
        let mut answer = Message::new(self.header.answer(false));
        if let Some(session) = self.find(avp::SESSION_ID, None) {
            answer.push(session.clone());
        }
        answer
            .avps
            .extend(self.find_all(avp::PROXY_INFO, None).cloned());
        answer
    }

    /// The answer to a request that failed with `error` (RFC 6733 section 7.2): E set for
    /// protocol errors, Session-Id and Proxy-Info copied, Origin-Host, Origin-Realm,
    /// Result-Code, Error-Message and the Failed-AVP the RFC asks for.
    pub fn error_answer(&self, origin_host: &str, origin_realm: &str, error: &Error) -> Message {
        let mut answer = self.answer();
        answer.header = self.header.answer(error.is_protocol_error());
        push_error_avps(&mut answer, origin_host, origin_realm, error);
        answer
    }

    /// The error answer for request bytes that could not be fully parsed: needs a readable
    /// header; copies the Session-Id if it can be read before the fault. `None` when the
    /// bytes are no request (answers are never answered, RFC 6733 section 7.2) or carry
    /// no readable header.
    pub fn error_answer_for_bytes(
        request: &[u8],
        origin_host: &str,
        origin_realm: &str,
        error: &Error,
    ) -> Option<Message> {
        let packet = Packet::new_checked(request).ok()?;
        let flags = packet.flags();
        if !flags.request() {
            return None;
        }
        let header = Header {
            flags,
            command_code: packet.command_code(),
            application_id: packet.application_id(),
            hop_by_hop: packet.hop_by_hop(),
            end_to_end: packet.end_to_end(),
        };
        let mut answer = Message::new(header.answer(error.is_protocol_error()));
        let session = packet
            .avps()
            .map_while(Result::ok)
            .filter_map(|p| Avp::parse(&p).ok())
            .find(|a| a.is(avp::SESSION_ID, None));
        if let Some(session) = session {
            answer.push(session);
        }
        push_error_avps(&mut answer, origin_host, origin_realm, error);
        Some(answer)
    }
}

fn push_error_avps(answer: &mut Message, origin_host: &str, origin_realm: &str, error: &Error) {
    answer.push(Avp::identity(avp::ORIGIN_HOST, origin_host));
    answer.push(Avp::identity(avp::ORIGIN_REALM, origin_realm));
    answer.push(Avp::u32(avp::RESULT_CODE, error.result_code()));
    answer.push(Avp::utf8(avp::ERROR_MESSAGE, &error.to_string()).with_mandatory(false));
    if let Some(failed) = error.failed_avp() {
        answer.push(Avp::grouped(avp::FAILED_AVP, std::slice::from_ref(failed)));
    }
    debug_assert!(result::is_protocol_error(error.result_code()) == answer.header.flags.error());
}

/// Splits a TCP byte stream into Diameter messages using the Message Length field.
///
/// Push bytes as they arrive, then take messages until `Ok(None)`. A bad Version or an
/// impossible length is an error after which the stream cannot be re-synchronised: the
/// caller closes the connection (the error gives the Result-Code to log or answer with).
#[derive(Debug, Clone)]
pub struct Framer {
    buffer: Vec<u8>,
    max_len: usize,
}

impl Default for Framer {
    fn default() -> Self {
        Framer::new(1 << 20)
    }
}

impl Framer {
    /// A framer that refuses messages longer than `max_len` bytes (at most 2^24 - 1).
    pub fn new(max_len: usize) -> Self {
        Framer {
            buffer: Vec::new(),
            max_len: max_len.min(MAX_LEN24),
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// Bytes received but not yet returned as a message.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// The length of the message at the start of `bytes`, once its first 4 bytes are in:
    /// `Ok(None)` when more bytes are needed to know it.
    pub fn message_len(bytes: &[u8], max_len: usize) -> Result<Option<usize>, Error> {
        let Some(first) = bytes.first() else {
            return Ok(None);
        };
        if *first != VERSION {
            return Err(Error::UnsupportedVersion(*first));
        }
        if bytes.len() < 4 {
            return Ok(None);
        }
        let length = be_u32(bytes, 0) & 0x00ff_ffff;
        if (length as usize) < HEADER_LEN || length & 3 != 0 || length as usize > max_len {
            return Err(Error::InvalidMessageLength(length));
        }
        Ok(Some(length as usize))
    }

    /// The next complete message, if one is buffered.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, Error> {
        match Framer::message_len(&self.buffer, self.max_len)? {
            Some(len) if len <= self.buffer.len() => {
                let rest = self.buffer.split_off(len);
                Ok(Some(std::mem::replace(&mut self.buffer, rest)))
            }
            _ => Ok(None),
        }
    }
}
