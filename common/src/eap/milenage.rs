//! The MILENAGE algorithm set (TS 35.206): the authentication functions f1, f1*, f2, f3,
//! f4, f5 and f5* over AES-128, OPc from OP, and the AKA procedures of TS 33.102 section
//! 6.3 built on them (the network's authentication vector and AUTS check, the USIM's
//! AUTN check and AUTS).
//!
//! Hand-written: it is a page of XORs and rotations around the `aes` block cipher, and no
//! maintained crate offers it with the resynchronisation procedures.

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes128;

/// Largest value of the 48-bit sequence number.
pub const SQN_MAX: u64 = (1 << 48) - 1;

/// The 48-bit AKA sequence number (TS 33.102 section 6.3.2 and Annex C), held as an
/// integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Sqn(u64);

impl Sqn {
    /// `None` when `value` needs more than 48 bits.
    pub fn new(value: u64) -> Option<Self> {
        (value <= SQN_MAX).then_some(Sqn(value))
    }

    pub fn value(self) -> u64 {
        self.0
    }

    pub fn from_bytes(bytes: [u8; 6]) -> Self {
        let mut wide = [0; 8];
        wide[2..].copy_from_slice(&bytes);
        Sqn(u64::from_be_bytes(wide))
    }

    pub fn to_bytes(self) -> [u8; 6] {
        let wide = self.0.to_be_bytes();
        let mut out = [0; 6];
        out.copy_from_slice(&wide[2..]);
        out
    }

    /// The next sequence number; `None` once the 48 bits are used up.
    pub fn next(self) -> Option<Self> {
        Sqn::new(self.0 + 1)
    }
}

/// OPc = OP xor E_K(OP) (TS 35.206 section 4.1).
pub fn opc_from_op(k: &[u8; 16], op: &[u8; 16]) -> [u8; 16] {
    let mut opc = encrypt(&Aes128::new(GenericArray::from_slice(k)), op);
    xor_in(&mut opc, op);
    opc
}

/// The outputs of f2, f3, f4 and f5 for one RAND.
#[derive(Clone, PartialEq, Eq)]
pub struct F2345 {
    /// f2: RES (XRES at the network), 64 bits.
    pub res: [u8; 8],
    /// f3: the cipher key CK.
    pub ck: [u8; 16],
    /// f4: the integrity key IK.
    pub ik: [u8; 16],
    /// f5: the anonymity key AK.
    pub ak: [u8; 6],
}

impl std::fmt::Debug for F2345 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("F2345 { .. }")
    }
}

/// MILENAGE keyed with a subscriber's K and OPc.
#[derive(Clone)]
pub struct Milenage {
    cipher: Aes128,
    opc: [u8; 16],
}

impl std::fmt::Debug for Milenage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Milenage { .. }")
    }
}

// Rotation amounts (in octets) and constants of TS 35.206 section 4.1.
const R1: usize = 8;
const R2: usize = 0;
const R3: usize = 4;
const R4: usize = 8;
const R5: usize = 12;
const C2: u8 = 1;
const C3: u8 = 2;
const C4: u8 = 4;
const C5: u8 = 8;

impl Milenage {
    pub fn new(k: &[u8; 16], opc: &[u8; 16]) -> Self {
        Milenage {
            cipher: Aes128::new(GenericArray::from_slice(k)),
            opc: *opc,
        }
    }

    /// From K and OP rather than OPc.
    pub fn with_op(k: &[u8; 16], op: &[u8; 16]) -> Self {
        Milenage::new(k, &opc_from_op(k, op))
    }

    pub fn opc(&self) -> [u8; 16] {
        self.opc
    }

    /// TEMP = E_K(RAND xor OPc).
    fn temp(&self, rand: &[u8; 16]) -> [u8; 16] {
        let mut block = *rand;
        xor_in(&mut block, &self.opc);
        encrypt(&self.cipher, &block)
    }

    /// OUT1 = E_K(TEMP xor rot(IN1 xor OPc, r1) xor c1) xor OPc, with
    /// IN1 = SQN || AMF || SQN || AMF and c1 = 0.
    fn out1(&self, rand: &[u8; 16], sqn: &[u8; 6], amf: &[u8; 2]) -> [u8; 16] {
        let temp = self.temp(rand);
        let mut in1 = [0; 16];
        in1[..6].copy_from_slice(sqn);
        in1[6..8].copy_from_slice(amf);
        in1[8..14].copy_from_slice(sqn);
        in1[14..].copy_from_slice(amf);
        xor_in(&mut in1, &self.opc);
        let mut block = rotate(&in1, R1);
        xor_in(&mut block, &temp);
        let mut out = encrypt(&self.cipher, &block);
        xor_in(&mut out, &self.opc);
        out
    }

    /// OUTn = E_K(rot(TEMP xor OPc, rn) xor cn) xor OPc for n = 2 to 5.
    fn out_n(&self, temp: &[u8; 16], r: usize, c: u8) -> [u8; 16] {
        let mut block = *temp;
        xor_in(&mut block, &self.opc);
        let mut block = rotate(&block, r);
        block[15] ^= c;
        let mut out = encrypt(&self.cipher, &block);
        xor_in(&mut out, &self.opc);
        out
    }

    /// f1: the network authentication code MAC-A.
    pub fn f1(&self, rand: &[u8; 16], sqn: &[u8; 6], amf: &[u8; 2]) -> [u8; 8] {
        first(&self.out1(rand, sqn, amf))
    }

    /// f1*: the resynchronisation authentication code MAC-S.
    pub fn f1_star(&self, rand: &[u8; 16], sqn: &[u8; 6], amf: &[u8; 2]) -> [u8; 8] {
        let out = self.out1(rand, sqn, amf);
        let mut mac_s = [0; 8];
        mac_s.copy_from_slice(&out[8..]);
        mac_s
    }

    /// f2 (RES), f3 (CK), f4 (IK) and f5 (AK) in one pass.
    pub fn f2345(&self, rand: &[u8; 16]) -> F2345 {
        let temp = self.temp(rand);
        let out2 = self.out_n(&temp, R2, C2);
        let mut res = [0; 8];
        res.copy_from_slice(&out2[8..]);
        F2345 {
            res,
            ck: self.out_n(&temp, R3, C3),
            ik: self.out_n(&temp, R4, C4),
            ak: first(&out2),
        }
    }

    /// f5*: the anonymity key used to conceal SQN_MS in AUTS.
    pub fn f5_star(&self, rand: &[u8; 16]) -> [u8; 6] {
        first(&self.out_n(&self.temp(rand), R5, C5))
    }

    /// The network's authentication vector for RAND, SQN and AMF (TS 33.102 section
    /// 6.3.2): XRES, CK, IK and AUTN = (SQN xor AK) || AMF || MAC-A.
    pub fn vector(&self, rand: &[u8; 16], sqn: Sqn, amf: &[u8; 2]) -> AuthVector {
        let sqn = sqn.to_bytes();
        let f = self.f2345(rand);
        let mac_a = self.f1(rand, &sqn, amf);
        let mut autn = [0; 16];
        autn[..6].copy_from_slice(&sqn);
        xor_in(&mut autn[..6], &f.ak);
        autn[6..8].copy_from_slice(amf);
        autn[8..].copy_from_slice(&mac_a);
        AuthVector {
            rand: *rand,
            xres: f.res,
            ck: f.ck,
            ik: f.ik,
            autn,
        }
    }

    /// The USIM's side of TS 33.102 section 6.3.3: recovers SQN from AUTN and checks
    /// MAC-A. The SQN freshness check is the caller's (it holds SQN_MS).
    pub fn check_autn(&self, rand: &[u8; 16], autn: &[u8; 16]) -> Result<AutnResult, AutnError> {
        let f = self.f2345(rand);
        let mut sqn = [0; 6];
        sqn.copy_from_slice(&autn[..6]);
        xor_in(&mut sqn, &f.ak);
        let amf = [autn[6], autn[7]];
        let xmac = self.f1(rand, &sqn, &amf);
        if !ct_eq(&xmac, &autn[8..]) {
            return Err(AutnError::MacFailure);
        }
        Ok(AutnResult {
            sqn: Sqn::from_bytes(sqn),
            amf,
            keys: f,
        })
    }

    /// AUTS = (SQN_MS xor f5*(RAND)) || f1*(SQN_MS, RAND, AMF = 0) (TS 33.102 section
    /// 6.3.3: the AMF of the resynchronisation message is a dummy of zeros).
    pub fn auts(&self, rand: &[u8; 16], sqn_ms: Sqn) -> [u8; 14] {
        let sqn = sqn_ms.to_bytes();
        let mac_s = self.f1_star(rand, &sqn, &[0, 0]);
        let mut auts = [0; 14];
        auts[..6].copy_from_slice(&sqn);
        xor_in(&mut auts[..6], &self.f5_star(rand));
        auts[6..].copy_from_slice(&mac_s);
        auts
    }

    /// The network's side of resynchronisation (TS 33.102 section 6.3.5): recovers
    /// SQN_MS from AUTS and checks MAC-S; `None` if MAC-S is wrong.
    pub fn sqn_ms_from_auts(&self, rand: &[u8; 16], auts: &[u8; 14]) -> Option<Sqn> {
        let mut sqn = [0; 6];
        sqn.copy_from_slice(&auts[..6]);
        xor_in(&mut sqn, &self.f5_star(rand));
        let xmac_s = self.f1_star(rand, &sqn, &[0, 0]);
        ct_eq(&xmac_s, &auts[6..]).then(|| Sqn::from_bytes(sqn))
    }
}

/// An authentication vector (TS 33.102 section 6.3.2), for EAP-AKA's AT_RAND and AT_AUTN.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthVector {
    pub rand: [u8; 16],
    pub xres: [u8; 8],
    pub ck: [u8; 16],
    pub ik: [u8; 16],
    pub autn: [u8; 16],
}

impl std::fmt::Debug for AuthVector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthVector")
            .field("rand", &self.rand)
            .field("autn", &self.autn)
            .finish_non_exhaustive()
    }
}

/// What the USIM learns from a valid AUTN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutnResult {
    pub sqn: Sqn,
    pub amf: [u8; 2],
    pub keys: F2345,
}

/// Why the USIM refused an AUTN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AutnError {
    /// XMAC differs from the MAC in AUTN: the network (or its K) is not genuine.
    #[error("MAC failure: AUTN was not made with this K and OPc")]
    MacFailure,
}

fn encrypt(cipher: &Aes128, block: &[u8; 16]) -> [u8; 16] {
    let mut b = GenericArray::clone_from_slice(block);
    cipher.encrypt_block(&mut b);
    let mut out = [0; 16];
    out.copy_from_slice(&b);
    out
}

fn xor_in(a: &mut [u8], b: &[u8]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x ^= y;
    }
}

/// rot(x, r): cyclic rotation of the 128-bit value towards the most significant bit
/// by `octets` octets.
fn rotate(x: &[u8; 16], octets: usize) -> [u8; 16] {
    let mut out = [0; 16];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = x[(i + octets) % 16];
    }
    out
}

fn first<const N: usize>(x: &[u8; 16]) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&x[..N]);
    out
}

/// Comparison whose time does not depend on where the inputs differ.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h<const N: usize>(s: &str) -> [u8; N] {
        let v = hex::decode(s).expect("test vector hex");
        v.try_into().expect("test vector length")
    }

    /// One test set of TS 35.208 section 4.3: K, RAND, SQN, AMF, OP, OPc, f1, f1*,
    /// f2, f5, f3, f4, f5*.
    struct TestSet {
        set: u8,
        k: &'static str,
        rand: &'static str,
        sqn: &'static str,
        amf: &'static str,
        op: &'static str,
        opc: &'static str,
        f1: &'static str,
        f1_star: &'static str,
        f2: &'static str,
        f5: &'static str,
        f3: &'static str,
        f4: &'static str,
        f5_star: &'static str,
    }

    // TS 35.208 (V6.0.0 onwards) section 4.3, test sets 1 to 8. Test set 2 repeats test
    // set 1 in the specification itself. Checked against two independent public copies.
    const TEST_SETS: &[TestSet] = &[
        TestSet {
            set: 1,
            k: "465b5ce8b199b49faa5f0a2ee238a6bc",
            rand: "23553cbe9637a89d218ae64dae47bf35",
            sqn: "ff9bb4d0b607",
            amf: "b9b9",
            op: "cdc202d5123e20f62b6d676ac72cb318",
            opc: "cd63cb71954a9f4e48a5994e37a02baf",
            f1: "4a9ffac354dfafb3",
            f1_star: "01cfaf9ec4e871e9",
            f2: "a54211d5e3ba50bf",
            f5: "aa689c648370",
            f3: "b40ba9a3c58b2a05bbf0d987b21bf8cb",
            f4: "f769bcd751044604127672711c6d3441",
            f5_star: "451e8beca43b",
        },
        TestSet {
            set: 2,
            k: "465b5ce8b199b49faa5f0a2ee238a6bc",
            rand: "23553cbe9637a89d218ae64dae47bf35",
            sqn: "ff9bb4d0b607",
            amf: "b9b9",
            op: "cdc202d5123e20f62b6d676ac72cb318",
            opc: "cd63cb71954a9f4e48a5994e37a02baf",
            f1: "4a9ffac354dfafb3",
            f1_star: "01cfaf9ec4e871e9",
            f2: "a54211d5e3ba50bf",
            f5: "aa689c648370",
            f3: "b40ba9a3c58b2a05bbf0d987b21bf8cb",
            f4: "f769bcd751044604127672711c6d3441",
            f5_star: "451e8beca43b",
        },
        TestSet {
            set: 3,
            k: "fec86ba6eb707ed08905757b1bb44b8f",
            rand: "9f7c8d021accf4db213ccff0c7f71a6a",
            sqn: "9d0277595ffc",
            amf: "725c",
            op: "dbc59adcb6f9a0ef735477b7fadf8374",
            opc: "1006020f0a478bf6b699f15c062e42b3",
            f1: "9cabc3e99baf7281",
            f1_star: "95814ba2b3044324",
            f2: "8011c48c0c214ed2",
            f5: "33484dc2136b",
            f3: "5dbdbb2954e8f3cde665b046179a5098",
            f4: "59a92d3b476a0443487055cf88b2307b",
            f5_star: "deacdd848cc6",
        },
        TestSet {
            set: 4,
            k: "9e5944aea94b81165c82fbf9f32db751",
            rand: "ce83dbc54ac0274a157c17f80d017bd6",
            sqn: "0b604a81eca8",
            amf: "9e09",
            op: "223014c5806694c007ca1eeef57f004f",
            opc: "a64a507ae1a2a98bb88eb4210135dc87",
            f1: "74a58220cba84c49",
            f1_star: "ac2cc74a96871837",
            f2: "f365cd683cd92e96",
            f5: "f0b9c08ad02e",
            f3: "e203edb3971574f5a94b0d61b816345d",
            f4: "0c4524adeac041c4dd830d20854fc46b",
            f5_star: "6085a86c6f63",
        },
        TestSet {
            set: 5,
            k: "4ab1deb05ca6ceb051fc98e77d026a84",
            rand: "74b0cd6031a1c8339b2b6ce2b8c4a186",
            sqn: "e880a1b580b6",
            amf: "9f07",
            op: "2d16c5cd1fdf6b22383584e3bef2a8d8",
            opc: "dcf07cbd51855290b92a07a9891e523e",
            f1: "49e785dd12626ef2",
            f1_star: "9e85790336bb3fa2",
            f2: "5860fc1bce351e7e",
            f5: "31e11a609118",
            f3: "7657766b373d1c2138f307e3de9242f9",
            f4: "1c42e960d89b8fa99f2744e0708ccb53",
            f5_star: "fe2555e54aa9",
        },
        TestSet {
            set: 6,
            k: "6c38a116ac280c454f59332ee35c8c4f",
            rand: "ee6466bc96202c5a557abbeff8babf63",
            sqn: "414b98222181",
            amf: "4464",
            op: "1ba00a1a7c6700ac8c3ff3e96ad08725",
            opc: "3803ef5363b947c6aaa225e58fae3934",
            f1: "078adfb488241a57",
            f1_star: "80246b8d0186bcf1",
            f2: "16c8233f05a0ac28",
            f5: "45b0f69ab06c",
            f3: "3f8c7587fe8e4b233af676aede30ba3b",
            f4: "a7466cc1e6b2a1337d49d3b66e95d7b4",
            f5_star: "1f53cd2b1113",
        },
        TestSet {
            set: 7,
            k: "2d609d4db0ac5bf0d2c0de267014de0d",
            rand: "194aa756013896b74b4a2a3b0af4539e",
            sqn: "6bf69438c2e4",
            amf: "5f67",
            op: "460a48385427aa39264aac8efc9e73e8",
            opc: "c35a0ab0bcbfc9252caff15f24efbde0",
            f1: "bd07d3003b9e5cc3",
            f1_star: "bcb6c2fcad152250",
            f2: "8c25a16cd918a1df",
            f5: "7e6455f34cf3",
            f3: "4cd0846020f8fa0731dd47cbdc6be411",
            f4: "88ab80a415f15c73711254a1d388f696",
            f5_star: "dc6dd01e8f15",
        },
        TestSet {
            set: 8,
            k: "a530a7fe428fad1082c45eddfce13884",
            rand: "3a4c2b3245c50eb5c71d08639395764d",
            sqn: "f63f5d768784",
            amf: "b90e",
            op: "511c6c4e83e38c89b1c5d8dde62426fa",
            opc: "27953e49bc8af6dcc6e730eb80286be3",
            f1: "53761fbd679b0bad",
            f1_star: "21adfd334a10e7ce",
            f2: "a63241e1ffc3e5ab",
            f5: "88196c47986f",
            f3: "10f05bab75a99a5fbb98a9c287679c3b",
            f4: "f9ec0865eb32f22369cade40c59c3a44",
            f5_star: "c987a3d23115",
        },
    ];

    #[test]
    fn ts_35_208_test_sets() {
        for t in TEST_SETS {
            let k = h::<16>(t.k);
            let rand = h::<16>(t.rand);
            let sqn = h::<6>(t.sqn);
            let amf = h::<2>(t.amf);
            let opc = opc_from_op(&k, &h(t.op));
            assert_eq!(opc, h::<16>(t.opc), "set {}: OPc", t.set);
            let m = Milenage::new(&k, &opc);
            assert_eq!(m.f1(&rand, &sqn, &amf), h::<8>(t.f1), "set {}: f1", t.set);
            assert_eq!(
                m.f1_star(&rand, &sqn, &amf),
                h::<8>(t.f1_star),
                "set {}: f1*",
                t.set
            );
            let f = m.f2345(&rand);
            assert_eq!(f.res, h::<8>(t.f2), "set {}: f2", t.set);
            assert_eq!(f.ck, h::<16>(t.f3), "set {}: f3", t.set);
            assert_eq!(f.ik, h::<16>(t.f4), "set {}: f4", t.set);
            assert_eq!(f.ak, h::<6>(t.f5), "set {}: f5", t.set);
            assert_eq!(m.f5_star(&rand), h::<6>(t.f5_star), "set {}: f5*", t.set);
        }
    }

    /// TS 35.207 section 4.3 / TS 35.208: the Rijndael kernel alone (test set 1's K).
    #[test]
    fn kernel_is_aes_128() {
        let cipher = Aes128::new(GenericArray::from_slice(&h::<16>(
            "465b5ce8b199b49faa5f0a2ee238a6bc",
        )));
        assert_eq!(
            encrypt(&cipher, &h("ee36f7cf037d37d3692f7f0399e7949a")),
            h::<16>("9e2980c59739da67b136355e3cede6a2")
        );
    }

    #[test]
    fn vector_autn_and_resynchronisation() {
        for t in TEST_SETS {
            let m = Milenage::new(&h(t.k), &h(t.opc));
            let rand = h::<16>(t.rand);
            let sqn = Sqn::from_bytes(h(t.sqn));
            let amf = h::<2>(t.amf);
            let v = m.vector(&rand, sqn, &amf);
            let checked = m.check_autn(&rand, &v.autn).expect("own AUTN verifies");
            assert_eq!(checked.sqn, sqn);
            assert_eq!(checked.amf, amf);
            assert_eq!(checked.keys.res, v.xres);
            for i in 0..16 {
                let mut bad = v.autn;
                bad[i] ^= 0x01;
                assert_eq!(m.check_autn(&rand, &bad), Err(AutnError::MacFailure));
            }
            let auts = m.auts(&rand, sqn);
            assert_eq!(m.sqn_ms_from_auts(&rand, &auts), Some(sqn));
            let mut bad = auts;
            bad[13] ^= 0x80;
            assert_eq!(m.sqn_ms_from_auts(&rand, &bad), None);
        }
    }

    #[test]
    fn sqn_is_48_bits() {
        assert_eq!(Sqn::new(SQN_MAX + 1), None);
        assert_eq!(Sqn::new(SQN_MAX).and_then(Sqn::next), None);
        let s = Sqn::from_bytes([0xff, 0x9b, 0xb4, 0xd0, 0xb6, 0x07]);
        assert_eq!(s.value(), 0xff9b_b4d0_b607);
        assert_eq!(s.to_bytes(), [0xff, 0x9b, 0xb4, 0xd0, 0xb6, 0x07]);
    }
}
