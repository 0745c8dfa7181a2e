//! Diameter base protocol (RFC 6733), the peer state machine and the SWm application (TS 29.273).
