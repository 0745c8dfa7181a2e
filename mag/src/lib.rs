//! The ePDG acting as PMIPv6 MAG (DESIGN.md section 3): not built yet; see the ePDG issue.
