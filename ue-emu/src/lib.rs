//! The UE emulator (DESIGN.md section 6): not built yet; see the ePDG issue.
