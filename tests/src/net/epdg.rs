//! The place for the ePDG's core (`mag::epdg::Epdg`, `handle(input, now, rng, out)` /
//! `poll_timeout()`) on the in-memory network. It lands in its own change; this module
//! says how it plugs in, so that adding it is one node type:
//!
//! * **Addresses**: its IKE address (UDP 500 and 4500, the UEs' [`super::ue::UeNode`]s
//!   send there) and its Mobility Header address toward the gateways (UDP 5436, as
//!   [`super::mag::MagNode`] uses today); [`super::Node::addresses`] returns both.
//! * **Inputs**: [`super::NodeInput::Datagram`] carries both addresses (`from`, `to`), so
//!   an IKE datagram on port 500 or 4500 and a PBA on 5436 are told apart by `to`;
//!   [`super::StreamEvent`]s are its Diameter connection to the AAA: it opens it with
//!   [`super::NodeOutput::Connect`] toward [`super::aaa::AaaNode::listen`], frames the
//!   bytes with `pmip_common::diameter::Framer` and runs the Diameter peer state machine
//!   (as [`super::aaa`] does on the server side); `Down` and `Refused` are its connection
//!   up/down inputs; [`super::NodeInput::Timeout`] its timeouts.
//! * **Outputs**: datagrams to the UEs and the gateways become
//!   [`super::NodeOutput::Datagram`] (from its own address and port), Diameter bytes
//!   [`super::NodeOutput::Send`], the data-plane installs and removes and the reports
//!   are kept in the node for the test to read, with their time.
//!
//! Until then, [`super::mag::MagNode`] stands in for its MAG side.
