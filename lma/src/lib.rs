//! The LMA / SAE GW: binding cache, address pools and PBU handling, sans-IO, with thin tokio drivers.
