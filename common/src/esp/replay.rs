//! The receiver's anti-replay window (RFC 4303 section 3.4.3 and appendix A).

use thiserror::Error;

/// How many sequence numbers back from the highest authenticated one are still accepted
/// (RFC 4303 section 3.4.3 asks for at least 32, recommends 64; reordering on Wi-Fi and
/// a multi-queue data plane make a larger window cheap insurance).
pub const REPLAY_WINDOW_SIZE: u32 = 128;

/// Why a sequence number was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ReplayError {
    /// Already received (and authenticated) once.
    #[error("sequence number {0} was already received")]
    Duplicate(u32),
    /// Left of the window: too old to tell whether it is a replay, or zero (never sent
    /// without extended sequence numbers).
    #[error("sequence number {0} is left of the anti-replay window")]
    TooOld(u32),
}

/// The sliding window of RFC 4303 appendix A2.1 over 32-bit sequence numbers: bit `i` of
/// the bitmap says whether `top - i` has been received.
///
/// The receiver calls [`ReplayWindow::check`] before verifying the ICV (cheap refusal of
/// replays) and [`ReplayWindow::accept`] only after the ICV verified, so that forged
/// packets never move the window (section 3.4.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    /// The highest authenticated sequence number; 0 before any packet.
    top: u32,
    bitmap: u128,
}

impl ReplayWindow {
    pub fn new() -> Self {
        Self::default()
    }

    /// The highest sequence number accepted so far (0 if none).
    pub fn highest(&self) -> u32 {
        self.top
    }

    /// Whether `sequence_number` may be new: right of the window, or inside it and not
    /// yet seen.
    pub fn check(&self, sequence_number: u32) -> Result<(), ReplayError> {
        if sequence_number == 0 {
            return Err(ReplayError::TooOld(0));
        }
        if sequence_number > self.top {
            return Ok(());
        }
        let age = self.top - sequence_number;
        if age >= REPLAY_WINDOW_SIZE {
            return Err(ReplayError::TooOld(sequence_number));
        }
        if self.bitmap & (1u128 << age) != 0 {
            return Err(ReplayError::Duplicate(sequence_number));
        }
        Ok(())
    }

    /// Records an authenticated `sequence_number`, sliding the window when it is the new
    /// highest. Checks again, so a caller cannot record a replay by mistake.
    pub fn accept(&mut self, sequence_number: u32) -> Result<(), ReplayError> {
        self.check(sequence_number)?;
        if sequence_number > self.top {
            let shift = sequence_number - self.top;
            self.bitmap = if shift >= REPLAY_WINDOW_SIZE {
                0
            } else {
                self.bitmap << shift
            };
            self.bitmap |= 1;
            self.top = sequence_number;
        } else {
            self.bitmap |= 1u128 << (self.top - sequence_number);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_then_duplicate() {
        let mut w = ReplayWindow::new();
        for n in 1..=300 {
            assert_eq!(w.check(n), Ok(()));
            w.accept(n).unwrap();
            assert_eq!(w.check(n), Err(ReplayError::Duplicate(n)));
        }
        assert_eq!(w.highest(), 300);
    }

    #[test]
    fn zero_is_never_accepted() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.accept(0), Err(ReplayError::TooOld(0)));
        w.accept(5).unwrap();
        assert_eq!(w.check(0), Err(ReplayError::TooOld(0)));
    }

    #[test]
    fn in_window_out_of_order_is_accepted_once() {
        let mut w = ReplayWindow::new();
        w.accept(200).unwrap();
        // The oldest still inside the window, and one just outside it.
        let oldest = 200 - (REPLAY_WINDOW_SIZE - 1);
        assert_eq!(w.check(oldest), Ok(()));
        assert_eq!(w.check(oldest - 1), Err(ReplayError::TooOld(oldest - 1)));
        for n in [150, oldest, 199, 100] {
            w.accept(n).unwrap();
            assert_eq!(w.accept(n), Err(ReplayError::Duplicate(n)));
        }
        assert_eq!(w.highest(), 200);
        assert_eq!(w.check(198), Ok(()));
    }

    #[test]
    fn far_ahead_clears_the_window() {
        let mut w = ReplayWindow::new();
        for n in 1..=10 {
            w.accept(n).unwrap();
        }
        w.accept(10_000).unwrap();
        assert_eq!(w.check(10), Err(ReplayError::TooOld(10)));
        assert_eq!(w.check(9_999), Ok(()));
        assert_eq!(w.check(10_000 - (REPLAY_WINDOW_SIZE - 1)), Ok(()));
        // A jump of exactly one window keeps only the new top.
        w.accept(10_000 + REPLAY_WINDOW_SIZE).unwrap();
        assert_eq!(w.check(10_000), Err(ReplayError::TooOld(10_000)));
        assert_eq!(w.check(10_001), Ok(()));
        // Near the top of the sequence space.
        w.accept(u32::MAX).unwrap();
        assert_eq!(w.check(u32::MAX), Err(ReplayError::Duplicate(u32::MAX)));
        assert_eq!(w.check(u32::MAX - 1), Ok(()));
    }

    #[test]
    fn a_slide_keeps_the_bits_still_inside() {
        let mut w = ReplayWindow::new();
        w.accept(10).unwrap();
        w.accept(8).unwrap();
        w.accept(20).unwrap();
        assert_eq!(w.check(10), Err(ReplayError::Duplicate(10)));
        assert_eq!(w.check(8), Err(ReplayError::Duplicate(8)));
        assert_eq!(w.check(9), Ok(()));
    }
}
