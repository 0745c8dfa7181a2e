//! The 3GPP AAA server speaking Diameter SWm (DESIGN.md sections 3 and 4): subscriber
//! store with crash-safe SQNs today; the Diameter server, EAP-AKA and APN resolution are
//! the AAA issue's remaining work.

pub mod config;
pub mod subscriber;
