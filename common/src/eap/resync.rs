//! The home environment's side of sequence number resynchronisation (TS 33.102 section
//! 6.3.5 and annex C): given the USIM's SQN_MS from a verified AUTS and the HE's own
//! counter SQN_HE, whether the HE keeps its counter or resets it, and the SQN of the
//! next challenge.
//!
//! Annex C divides an SQN into SEQ || IND: IND, the low `ind_bits` bits, indexes the
//! USIM's array of SEQ values (C.2.2), SEQ is the rest. A USIM accepts SQN = SEQ || IND
//! when SEQ is above the array's entry for IND, SEQ_MS(IND), and at most Δ above the
//! highest entry, SEQ_MS (C.2.1); it may also refuse one more than L below SEQ_MS (C.2.3,
//! optional). On a failure the USIM sends SQN_MS = SEQ_MS || IND in AUTS (6.3.3, C.2).
//! The HE knows SEQ_MS, not the array, so for section 6.3.5 step 2 ("the next sequence
//! number generated using SQN_HE would be accepted") it counts on what holds for any
//! array: SEQ above SEQ_MS and at most Δ above it. The age limit only ever widens
//! acceptance below SEQ_MS, which the HE cannot rely on.
//!
//! * **In range** (step 3): the HE keeps SQN_HE and the next challenge is SQN_HE + 1. A
//!   USIM that fell behind, a stale or reordered AUTS, or two conversations of one
//!   subscriber crossing each other cannot move the counter backwards.
//! * **Out of range** (steps 4 and 5): SEQ_HE is reset to SEQ_MS, and the next challenge
//!   carries SEQ_MS + 1 with IND 0 (C.3: the next SEQ after the reset, so that it is above
//!   every entry of the array). The AUTS has been verified before (the caller's step 4).
//!
//! The profile (IND length, Δ) must describe the USIMs: the software USIMs of this
//! project (`ue-emu`, strongSwan's `eap-aka-3gpp`) keep a single counter, which is annex
//! C with an IND of zero bits, and `ue-emu`'s Δ is 2^28 SQN values; hence the default.

use super::milenage::{Sqn, SQN_MAX};
use super::peer::DEFAULT_SQN_DELTA;

/// What the HE assumes of the USIMs' freshness check (TS 33.102 annex C).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqnProfile {
    /// Length of IND in bits (annex C: 5 is usual for a USIM with an array of 32).
    pub ind_bits: u8,
    /// Δ: how far above SEQ_MS a SEQ is still accepted (C.2.1), in units of SEQ.
    pub delta: u64,
}

impl Default for SqnProfile {
    /// One counter (IND of zero bits) and Δ = 2^28: the project's software USIMs.
    fn default() -> Self {
        SqnProfile {
            ind_bits: 0,
            delta: DEFAULT_SQN_DELTA,
        }
    }
}

/// What the HE does on a verified resynchronisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resynchronisation {
    /// SQN_HE is in range: kept; the next challenge uses this SQN (SQN_HE + 1).
    Kept(Sqn),
    /// SQN_HE is out of range: reset to SQN_MS; the next challenge uses this SQN.
    Reset(Sqn),
}

impl Resynchronisation {
    /// The SQN of the next challenge.
    pub fn next(self) -> Sqn {
        match self {
            Resynchronisation::Kept(s) | Resynchronisation::Reset(s) => s,
        }
    }
}

impl SqnProfile {
    /// `ind_bits` checked: at most 47, so that SEQ keeps at least one bit.
    fn shift(self) -> u32 {
        u32::from(self.ind_bits.min(47))
    }

    /// SEQ of an SQN.
    pub fn seq(self, sqn: Sqn) -> u64 {
        sqn.value() >> self.shift()
    }

    /// Whether every USIM whose highest accepted SQN is `sqn_ms` accepts `sqn` (module
    /// doc): SEQ above SEQ_MS, and at most Δ above it.
    pub fn surely_accepted(self, sqn: Sqn, sqn_ms: Sqn) -> bool {
        let (seq, seq_ms) = (self.seq(sqn), self.seq(sqn_ms));
        seq > seq_ms && seq - seq_ms <= self.delta
    }

    /// TS 33.102 section 6.3.5 steps 2 to 5 for the HE's counter `sqn_he` (the highest
    /// SQN it used) and the USIM's `sqn_ms`. `None` when no SQN is left in 48 bits.
    pub fn resynchronise(self, sqn_he: Sqn, sqn_ms: Sqn) -> Option<Resynchronisation> {
        if let Some(next) = sqn_he.next() {
            if self.surely_accepted(next, sqn_ms) {
                return Some(Resynchronisation::Kept(next));
            }
        }
        let seq = self.seq(sqn_ms).checked_add(1)?;
        let next = seq.checked_shl(self.shift()).filter(|v| *v <= SQN_MAX)?;
        Sqn::new(next).map(Resynchronisation::Reset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqn(v: u64) -> Sqn {
        Sqn::new(v).unwrap()
    }

    #[test]
    fn one_counter_keeps_the_he_ahead_within_delta_and_resets_otherwise() {
        let p = SqnProfile::default();
        // The USIM is ahead: reset to SQN_MS, continue above it.
        assert_eq!(
            p.resynchronise(sqn(6), sqn(1000)),
            Some(Resynchronisation::Reset(sqn(1001)))
        );
        // The HE is ahead and in range: its own counter goes on.
        assert_eq!(
            p.resynchronise(sqn(5000), sqn(1000)),
            Some(Resynchronisation::Kept(sqn(5001)))
        );
        // Exactly Δ ahead is still in range; one more is not.
        assert_eq!(
            p.resynchronise(sqn(1000 + DEFAULT_SQN_DELTA - 1), sqn(1000)),
            Some(Resynchronisation::Kept(sqn(1000 + DEFAULT_SQN_DELTA)))
        );
        assert_eq!(
            p.resynchronise(sqn(1000 + DEFAULT_SQN_DELTA), sqn(1000)),
            Some(Resynchronisation::Reset(sqn(1001)))
        );
        // Equal: the next one is above.
        assert_eq!(
            p.resynchronise(sqn(1000), sqn(1000)),
            Some(Resynchronisation::Kept(sqn(1001)))
        );
    }

    #[test]
    fn with_ind_the_range_is_judged_on_seq_and_a_reset_starts_the_next_seq() {
        let p = SqnProfile {
            ind_bits: 5,
            delta: 1 << 28,
        };
        let at = |seq: u64, ind: u64| sqn((seq << 5) | ind);
        // SQN_HE + 1 has the same SEQ as SQN_MS: not surely accepted (its array entry may
        // hold SEQ_MS already): reset, and the next SEQ, IND 0.
        assert_eq!(
            p.resynchronise(at(10, 3), at(10, 4)),
            Some(Resynchronisation::Reset(at(11, 0)))
        );
        // SEQ_HE + 1 above SEQ_MS: kept, whatever the INDs.
        assert_eq!(
            p.resynchronise(at(20, 31), at(12, 7)),
            Some(Resynchronisation::Kept(at(21, 0)))
        );
        assert_eq!(
            p.resynchronise(at(20, 5), at(12, 7)),
            Some(Resynchronisation::Kept(at(20, 6)))
        );
        // Δ is counted in SEQ.
        let far = at(12 + (1 << 28) + 1, 0);
        assert_eq!(
            p.resynchronise(far, at(12, 7)),
            Some(Resynchronisation::Reset(at(13, 0)))
        );
    }

    #[test]
    fn the_top_of_the_48_bits_is_handled() {
        let p = SqnProfile::default();
        // Nothing above SQN_MAX to keep counting with: reset, to the last one.
        assert_eq!(
            p.resynchronise(sqn(SQN_MAX), sqn(SQN_MAX - 1)),
            Some(Resynchronisation::Reset(sqn(SQN_MAX)))
        );
        assert_eq!(
            p.resynchronise(sqn(SQN_MAX - 1), sqn(SQN_MAX - 2)),
            Some(Resynchronisation::Kept(sqn(SQN_MAX)))
        );
        assert_eq!(p.resynchronise(sqn(3), sqn(SQN_MAX)), None);
    }
}
