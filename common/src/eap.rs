//! EAP (RFC 3748) and EAP-AKA (RFC 4187) with Milenage (TS 35.206).
