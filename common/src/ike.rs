//! IKEv2 (RFC 7296) messages, crypto suites and the initiator and responder state machines; built with the ePDG work.
