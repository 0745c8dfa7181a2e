//! Whole procedures on the in-memory network, the ePDG's core among the others: the
//! attach ladder, the EAP-Success gate, the cleanup of every failure path, roaming
//! through two gateways, and a thousand attaches through a lossy network.

use std::time::Duration;

use super::epc::{Epc, Options};

#[test]
fn ladder_debug() {
    let mut epc = Epc::new(Options::default());
    let start = epc.net.trace().len();
    epc.attach(0);
    assert!(epc.settle_attaches(Duration::from_secs(30)));
    let seen = epc.read();
    for s in seen.iter().filter(|s| s.index >= start) {
        eprintln!(
            "{:>8?} {} -> {} {}",
            s.sent(),
            epc.net.name_of(s.entry.from),
            s.entry.to.map_or("?", |t| epc.net.name_of(t)),
            s.message.label()
        );
    }
    eprintln!("{:?}", epc.ue(0).outcome());
    eprintln!("{:?}", epc.gate(&seen));
    epc.detach(0);
    eprintln!("{}", epc.settle_cleanup(Duration::from_secs(120)));
    eprintln!("{:?}", epc.leftovers());
}
