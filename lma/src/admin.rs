//! What the `lma` binary's admin interface (`pmip_node::admin`, `admin_listen`) answers,
//! from the core: `GET /bindings` (every binding), `GET /status` (counts), `POST
//! /revoke` (an operator's RFC 5846 revocation, [`crate::Lma::revoke_bindings`]). The
//! routes and the JSON shapes are documented in lma/README.md; this module builds them,
//! the driver hands it the requests.

use std::net::IpAddr;
use std::time::Instant;

use pmip_node::admin::{AdminRequest, AdminResponse};
use serde_json::{json, Value};

use crate::anchor::RevokeTarget;
use crate::{Lma, Output};

/// Every binding, as `GET /bindings` lists them.
pub fn bindings(lma: &Lma, now: Instant) -> Value {
    let mut list: Vec<Value> = lma
        .cache()
        .iter()
        .map(|(id, e)| {
            let a = e.addresses();
            let chained = lma.chained_home(id);
            json!({
                "id": id.to_string(),
                "mn_id": e.mn_id(),
                "apn": e.apn(),
                "mag": e.mag().ip().to_string(),
                "transport": e.mag().to_string(),
                "ipv4_home_address": a.ipv4_home_address.map(|x| x.to_string()),
                "home_network_prefix": a.home_network_prefix.map(|x| x.to_string()),
                "uplink_gre_key": a.uplink_gre_key.map(|k| k.0),
                "downlink_gre_key": e.state.downlink_gre_key.map(|k| k.0),
                "lifetime_secs": e.state.lifetime.as_secs(),
                "expires_in_secs": e.state.expires.saturating_duration_since(now).as_secs(),
                "home_gateway": chained.map(|(home, _)| home.ip().to_string()),
                "home_uplink_gre_key": chained.and_then(|(_, k)| k).map(|k| k.0),
            })
        })
        .collect();
    list.sort_by(|a, b| {
        let key = |v: &Value| (v["mn_id"].to_string(), v["apn"].to_string());
        key(a).cmp(&key(b))
    });
    json!({ "bindings": list })
}

/// Counts, as `GET /status` gives them.
pub fn status(lma: &Lma) -> Value {
    let (chained, held) = lma.chain_counts();
    let stats = lma.stats();
    let heartbeats = lma.heartbeat_stats();
    json!({
        "restart_counter": lma.settings().restart_counter,
        "bindings": lma.cache().len(),
        "chained": chained,
        "held_for_home": held,
        "held_back": lma.held_back(),
        "revocations_outstanding": lma.revocations_outstanding(),
        "available_ipv4": lma.available_ipv4(),
        "available_prefixes": lma.available_prefixes(),
        "pbus_accepted": stats.pbus_accepted,
        "pbus_rejected": stats.pbus_rejected,
        "revocations_sent": stats.revocations_sent,
        "revocation_acks": stats.revocation_acks,
        "revocation_timeouts": stats.revocation_timeouts,
        "heartbeats_sent": heartbeats.requests_sent,
        "heartbeat_responses": heartbeats.responses_received,
        "mag_restarts_detected": heartbeats.restarts_detected,
    })
}

/// What a `POST /revoke` body names: `{"nai", "apn"?}`, `{"address"}` or `{"mag"}`.
pub fn revoke_target(body: &Value) -> Result<RevokeTarget, String> {
    let text = |k: &str| body.get(k).and_then(Value::as_str);
    let address = |k: &str| -> Result<Option<IpAddr>, String> {
        text(k)
            .map(|t| {
                t.parse()
                    .map_err(|_| format!("{k}: `{t}` is not an IP address"))
            })
            .transpose()
    };
    if let Some(nai) = text("nai") {
        return Ok(RevokeTarget::Binding {
            mn_id: nai.to_string(),
            apn: text("apn").map(str::to_string),
        });
    }
    if let Some(a) = address("address")? {
        return Ok(RevokeTarget::Address(a));
    }
    if let Some(mag) = address("mag")? {
        return Ok(RevokeTarget::Mag(mag));
    }
    Err("give {\"nai\": .., \"apn\": ..}, {\"address\": ..} or {\"mag\": ..}".into())
}

/// Answers one admin request; what the core does goes to `out`.
pub fn handle(lma: &mut Lma, request: AdminRequest, now: Instant, out: &mut Vec<Output>) {
    use pmip_node::admin::AdminResponse as R;
    let method = request.method.as_str().to_string();
    let response = match (method.as_str(), request.path.as_str()) {
        ("GET", "/bindings") => R::ok(bindings(lma, now)),
        ("GET", "/status") => R::ok(status(lma)),
        ("POST", "/revoke") => match revoke_target(&request.body) {
            Err(message) => R::error(400, message),
            Ok(target) => match lma.revoke_bindings(target, now, out) {
                Ok(revoked) => R::ok(json!({ "revoked": revoked })),
                Err(e) => R::error(404, e.to_string()),
            },
        },
        (_, "/bindings" | "/status" | "/revoke") => R::error(405, "method not allowed"),
        _ => AdminResponse::error(404, "no such path: /bindings, /status, /revoke"),
    };
    request.respond(response);
}
