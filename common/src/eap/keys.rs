//! EAP-AKA key derivation and message authentication (RFC 4187 sections 7 and 10.15,
//! Appendix A): MK = SHA1(Identity | IK | CK), the FIPS 186-2 pseudo-random function
//! (change notice 1, without the mod q step) giving K_encr, K_aut, MSK and EMSK, and
//! AT_MAC as HMAC-SHA1-128 over the whole EAP packet with the MAC field zeroed.

use sha1::digest::generic_array::GenericArray;
use sha1::{Digest, Sha1};

use super::aka::{AkaMessage, MAC_LEN};
use super::error::EapError;
use super::milenage::ct_eq;
use super::packet::{EapPacket, EapType, HEADER_LEN};

/// The keys of one EAP-AKA full authentication (RFC 4187 section 7).
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKeys {
    /// Encryption key for AT_ENCR_DATA (AES-128-CBC).
    pub k_encr: [u8; 16],
    /// Authentication key for AT_MAC.
    pub k_aut: [u8; 16],
    /// Master Session Key, exported to the authenticator (the ePDG's IKEv2 AUTH).
    pub msk: [u8; 64],
    /// Extended Master Session Key.
    pub emsk: [u8; 64],
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys { .. }")
    }
}

impl SessionKeys {
    /// Derives the keys from the identity used in this authentication and the AKA
    /// outputs IK and CK.
    pub fn derive(identity: &[u8], ik: &[u8; 16], ck: &[u8; 16]) -> Self {
        SessionKeys::from_master_key(&master_key(identity, ik, ck))
    }

    /// K_encr | K_aut | MSK | EMSK = the first 160 octets of PRF(MK).
    pub fn from_master_key(mk: &[u8; 20]) -> Self {
        let mut stream = [0u8; 160];
        fips186_2_prf(mk, &mut stream);
        let mut keys = SessionKeys {
            k_encr: [0; 16],
            k_aut: [0; 16],
            msk: [0; 64],
            emsk: [0; 64],
        };
        keys.k_encr.copy_from_slice(&stream[..16]);
        keys.k_aut.copy_from_slice(&stream[16..32]);
        keys.msk.copy_from_slice(&stream[32..96]);
        keys.emsk.copy_from_slice(&stream[96..160]);
        keys
    }
}

/// MK = SHA1(Identity | IK | CK) (RFC 4187 section 7). `identity` is the one from the
/// last AT_IDENTITY the peer sent, or else from its EAP-Response/Identity, as octets
/// without any terminating null.
pub fn master_key(identity: &[u8], ik: &[u8; 16], ck: &[u8; 16]) -> [u8; 20] {
    let mut h = Sha1::new();
    h.update(identity);
    h.update(ik);
    h.update(ck);
    h.finalize().into()
}

/// The FIPS 186-2 general-purpose random number generator with change notice 1, as RFC
/// 4187 Appendix A (and RFC 4186 Appendix B) use it: b = 160, G is the SHA-1
/// compression function on XVAL padded with zeros to 512 bits, no XSEED, no mod q.
/// Fills `out` (a multiple of 40 octets is one or more whole rounds; a shorter tail is
/// cut from the last round).
pub fn fips186_2_prf(xkey_in: &[u8; 20], out: &mut [u8]) {
    let mut xkey = *xkey_in;
    for chunk in out.chunks_mut(40) {
        let mut x = [0u8; 40];
        for w_slot in x.chunks_mut(20) {
            // a. XVAL = (XKEY + XSEED_j) mod 2^b, with XSEED_j = 0
            // b. w_i = G(t, XVAL)
            let w = sha1_g(&xkey);
            w_slot.copy_from_slice(&w);
            // c. XKEY = (1 + XKEY + w_i) mod 2^b
            add_160(&mut xkey, &w, 1);
        }
        chunk.copy_from_slice(&x[..chunk.len()]);
    }
}

/// G(t, c): the SHA-1 compression function with the standard initial value t, applied
/// once to c followed by zeros to 512 bits (FIPS 186-2 Appendix 3.3).
fn sha1_g(c: &[u8; 20]) -> [u8; 20] {
    let mut state: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut block = [0u8; 64];
    block[..20].copy_from_slice(c);
    sha1::compress(&mut state, &[*GenericArray::from_slice(&block)]);
    let mut out = [0u8; 20];
    for (slot, word) in out.chunks_mut(4).zip(state) {
        slot.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// a = (a + b + carry) mod 2^160, big-endian.
fn add_160(a: &mut [u8; 20], b: &[u8; 20], carry: u16) {
    let mut carry = carry;
    for i in (0..20).rev() {
        let sum = u16::from(a[i]) + u16::from(b[i]) + carry;
        a[i] = sum as u8;
        carry = sum >> 8;
    }
}

/// HMAC-SHA1 (RFC 2104).
pub fn hmac_sha1(key: &[u8], parts: &[&[u8]]) -> [u8; 20] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..20].copy_from_slice(&Sha1::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha1::new();
    inner.update(block.map(|b| b ^ 0x36));
    for part in parts {
        inner.update(part);
    }
    let mut outer = Sha1::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// HMAC-SHA1-128 over `packet` followed by `extra`, with the 16 octets at `mac_at`
/// taken as zeros.
fn mac_with_hole(k_aut: &[u8; 16], packet: &[u8], mac_at: usize, extra: &[u8]) -> [u8; MAC_LEN] {
    let zeros = [0u8; MAC_LEN];
    let full = hmac_sha1(
        k_aut,
        &[
            &packet[..mac_at],
            &zeros,
            &packet[mac_at + MAC_LEN..],
            extra,
        ],
    );
    let mut mac = [0u8; MAC_LEN];
    mac.copy_from_slice(&full[..MAC_LEN]);
    mac
}

/// Offset, within the EAP packet, of the MAC field of its single AT_MAC.
pub fn find_mac(packet: &[u8]) -> Result<usize, EapError> {
    let view = EapPacket::new_checked(packet)?;
    if view.eap_type() != Some(EapType::Aka) {
        return Err(EapError::Malformed("not an EAP-AKA packet"));
    }
    let message = AkaMessage::new_checked(view.type_data())?;
    let mut found = None;
    for raw in message.attributes() {
        let raw = raw?;
        if raw.attribute_type == super::aka::attribute_type::AT_MAC {
            if found.is_some() {
                return Err(EapError::RepeatedAttribute(raw.attribute_type));
            }
            if raw.value.len() != 2 + MAC_LEN {
                return Err(EapError::Malformed("AT_MAC length"));
            }
            // EAP header, Type octet, then the attribute's Type, Length, Reserved.
            found = Some(HEADER_LEN + 1 + raw.offset + 4);
        }
    }
    found.ok_or(EapError::Malformed("no AT_MAC"))
}

/// Fills in the AT_MAC of an emitted EAP-AKA packet (RFC 4187 section 10.15): the MAC
/// covers the whole packet, its own field zeroed, followed by `extra` (empty for every
/// message of full authentication).
pub fn fill_mac(k_aut: &[u8; 16], packet: &mut [u8], extra: &[u8]) -> Result<(), EapError> {
    let at = find_mac(packet)?;
    let len = usize::from(EapPacket::new_checked(&*packet)?.length());
    let mac = mac_with_hole(k_aut, &packet[..len], at, extra);
    packet[at..at + MAC_LEN].copy_from_slice(&mac);
    Ok(())
}

/// Checks the AT_MAC of a received EAP-AKA packet.
pub fn verify_mac(k_aut: &[u8; 16], packet: &[u8], extra: &[u8]) -> Result<bool, EapError> {
    let at = find_mac(packet)?;
    let view = EapPacket::new_checked(packet)?;
    let bytes = view.as_bytes();
    let expected = mac_with_hole(k_aut, bytes, at, extra);
    Ok(ct_eq(&expected, &bytes[at..at + MAC_LEN]))
}

/// The running AT_CHECKCODE hash (RFC 4187 section 10.13): SHA-1 over every
/// EAP-Request/AKA-Identity and EAP-Response/AKA-Identity packet of this
/// authentication, in order.
#[derive(Clone, Default)]
pub struct Checkcode {
    hash: Option<Sha1>,
}

impl std::fmt::Debug for Checkcode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkcode")
            .field("rounds", &self.hash.is_some())
            .finish()
    }
}

impl Checkcode {
    /// Adds one AKA-Identity packet (the octets its Length covers).
    pub fn add(&mut self, packet: &[u8]) {
        self.hash.get_or_insert_with(Sha1::new).update(packet);
    }

    /// The AT_CHECKCODE value: `None` (an empty attribute) if no AKA-Identity packet
    /// was exchanged.
    pub fn value(&self) -> Option<[u8; 20]> {
        self.hash.clone().map(|h| h.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).expect("test hex")
    }

    /// FIPS 186-2 change notice 1, Appendix 3.1 example (one round, x_0 = w_0 | w_1).
    #[test]
    fn fips_186_2_prf_nist_example() {
        let xkey: [u8; 20] = unhex("bd029bbe7f51960bcf9edb2b61f06f0feb5a38b6")
            .try_into()
            .expect("20 octets");
        let mut out = [0u8; 40];
        fips186_2_prf(&xkey, &mut out);
        assert_eq!(
            out.to_vec(),
            unhex(
                "2070b3223dba372fde1c0ffc7b2e3b498b2606143c6c18bacb0f6c55babb13788e20d737a3275116"
            )
        );
    }

    /// RFC 4186 Appendix A.5: the same generator from an EAP-SIM MK gives K_encr,
    /// K_aut, MSK and EMSK.
    #[test]
    fn key_derivation_rfc_4186_a5() {
        let mk: [u8; 20] = unhex("e576d5ca332e9930018bf1baee2763c795b3c712")
            .try_into()
            .expect("20 octets");
        let keys = SessionKeys::from_master_key(&mk);
        assert_eq!(
            keys.k_encr.to_vec(),
            unhex("536e5ebc4465582aa6a8ec9986ebb620")
        );
        assert_eq!(
            keys.k_aut.to_vec(),
            unhex("25af1942efcbf4bc72b3943421f2a974")
        );
        assert_eq!(
            keys.msk.to_vec(),
            unhex(
                "39d45aeaf4e30601983e972b6cfd46d1 c363773365690d09cd44976b525f47d3
                 a60a985e955c53b090b2e4b73719196a 402542968fd14a888f46b9a7886e4488"
            )
        );
        assert_eq!(
            keys.emsk.to_vec(),
            unhex(
                "5949eab0fff69d52315c6c634fd14a7f 0d52023d56f79698fa6596abeed4f93f
                 bb48eb534d985414ceed0d9a8ed33c38 7c9dfdab92ffbdf240fcecf65a2c93b9"
            )
        );
    }

    /// RFC 2202 test cases 1 and 2 for HMAC-SHA1.
    #[test]
    fn hmac_sha1_rfc_2202() {
        assert_eq!(
            hmac_sha1(&[0x0b; 20], &[b"Hi There"]).to_vec(),
            unhex("b617318655057264e28bc0b6fb378c8ef146be00")
        );
        assert_eq!(
            hmac_sha1(b"Jefe", &[b"what do ya want ", b"for nothing?"]).to_vec(),
            unhex("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79")
        );
    }
}
