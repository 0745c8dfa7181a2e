//! The admin interface every node serves: a small HTTP/1.1 listener on the configured
//! `admin_listen` (off unless set; give a loopback address), JSON out. Each request is
//! handed to the node's own event loop as an [`AdminRequest`] over a channel and answered
//! from there with an [`AdminResponse`], so the sans-IO core is only ever touched by the
//! task that drives it; which paths exist is the node's (the `lma` binary: `GET
//! /bindings`, `POST /revoke`). [`request`] is the client the binaries' subcommands use
//! (`lma bindings`). Prometheus metrics are to come on the same listener, as one more
//! path.
//!
//! Built on `hyper` (HTTP/1.1 server and client connections, with `hyper-util`'s tokio
//! glue): the HTTP implementation under axum and reqwest, well kept, and all that is
//! needed here. A router framework (axum, with tower) would add a layer for a handful of
//! paths that the node matches itself. Request bodies are limited to
//! [`MAX_BODY`] octets; one connection at a time per client is enough for an operator.

use std::convert::Infallible;
use std::net::SocketAddr;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
pub use hyper::Method;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// The largest request body read (a revocation is a few dozen octets).
pub const MAX_BODY: usize = 64 * 1024;

/// Requests waiting for the node's loop.
const QUEUE: usize = 64;

/// Why an admin request (client side) failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("connecting to the admin interface at {0}: {1}")]
    Connect(SocketAddr, std::io::Error),
    #[error("HTTP exchange with {0}: {1}")]
    Http(SocketAddr, hyper::Error),
    #[error("building the request: {0}")]
    Request(hyper::http::Error),
    #[error("the answer from {0} is not JSON: {1}")]
    Json(SocketAddr, serde_json::Error),
}

/// One request for the node's loop to answer.
#[derive(Debug)]
pub struct AdminRequest {
    pub method: Method,
    /// The path, without the query.
    pub path: String,
    /// `key=value` pairs of the query, percent-decoding not applied beyond `%40` (@).
    pub query: Vec<(String, String)>,
    /// The body, parsed as JSON when there is one (`Null` when empty or not JSON).
    pub body: serde_json::Value,
    reply: oneshot::Sender<AdminResponse>,
}

impl AdminRequest {
    /// The value of query parameter `key`.
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Answers the request (a client that went away is no error).
    pub fn respond(self, response: AdminResponse) {
        let _ = self.reply.send(response);
    }
}

/// An answer: an HTTP status and a JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminResponse {
    pub status: u16,
    pub body: serde_json::Value,
}

impl AdminResponse {
    pub fn ok(body: serde_json::Value) -> Self {
        AdminResponse { status: 200, body }
    }

    /// An error status with `{"error": message}`.
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        AdminResponse {
            status,
            body: serde_json::json!({ "error": message.into() }),
        }
    }
}

fn parse_query(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                s.replace("%40", "@")
                    .replace("%3A", ":")
                    .replace("%3a", ":")
            };
            (decode(k), decode(v))
        })
        .collect()
}

async fn answer(
    request: Request<Incoming>,
    to_node: mpsc::Sender<AdminRequest>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query = parse_query(request.uri().query());
    let response = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Err(_) => AdminResponse::error(413, format!("the body is over {MAX_BODY} octets")),
        Ok(collected) => {
            let bytes = collected.to_bytes();
            let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
            let (reply, answer) = oneshot::channel();
            let request = AdminRequest {
                method,
                path,
                query,
                body,
                reply,
            };
            if to_node.send(request).await.is_err() {
                AdminResponse::error(503, "the node is shutting down")
            } else {
                answer
                    .await
                    .unwrap_or_else(|_| AdminResponse::error(500, "the node did not answer"))
            }
        }
    };
    let mut text = serde_json::to_vec_pretty(&response.body).unwrap_or_default();
    text.push(b'\n');
    let mut http = Response::new(Full::new(Bytes::from(text)));
    *http.status_mut() =
        StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    http.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(http)
}

/// Listens on `listen` and hands every request to the receiver returned, with the
/// address actually bound (port 0 picks one). Runs on the current tokio runtime until
/// the receiver is dropped.
pub async fn serve(
    listen: SocketAddr,
) -> std::io::Result<(SocketAddr, mpsc::Receiver<AdminRequest>)> {
    let listener = TcpListener::bind(listen).await?;
    let local = listener.local_addr()?;
    let (to_node, from_http) = mpsc::channel(QUEUE);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            if to_node.is_closed() {
                return;
            }
            let to_node = to_node.clone();
            tokio::spawn(async move {
                let service = service_fn(move |r| answer(r, to_node.clone()));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((local, from_http))
}

/// Sends one request to a node's admin interface and returns the status and JSON body.
pub async fn request(
    admin: SocketAddr,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<(u16, serde_json::Value), AdminError> {
    let stream = TcpStream::connect(admin)
        .await
        .map_err(|e| AdminError::Connect(admin, e))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| AdminError::Http(admin, e))?;
    tokio::spawn(connection);
    let text = body.map(|b| b.to_string()).unwrap_or_default();
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, admin.to_string())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(text)))
        .map_err(AdminError::Request)?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| AdminError::Http(admin, e))?;
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| AdminError::Http(admin, e))?
        .to_bytes();
    let body = serde_json::from_slice(&bytes).map_err(|e| AdminError::Json(admin, e))?;
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_reaches_the_loop_and_its_answer_the_client() {
        let (local, mut requests) = serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let node = tokio::spawn(async move {
            while let Some(r) = requests.recv().await {
                let answer = match (r.method.clone(), r.path.as_str()) {
                    (Method::GET, "/echo") => AdminResponse::ok(serde_json::json!({
                        "nai": r.query("nai"),
                    })),
                    (Method::POST, "/echo") => AdminResponse::ok(r.body.clone()),
                    _ => AdminResponse::error(404, "no such path"),
                };
                r.respond(answer);
            }
        });
        let (status, body) = request(local, Method::GET, "/echo?nai=a%40b", None)
            .await
            .unwrap();
        assert_eq!((status, body), (200, serde_json::json!({"nai": "a@b"})));
        let sent = serde_json::json!({"apn": "internet"});
        let (status, body) = request(local, Method::POST, "/echo", Some(sent.clone()))
            .await
            .unwrap();
        assert_eq!((status, body), (200, sent));
        let (status, body) = request(local, Method::GET, "/nothing", None).await.unwrap();
        assert_eq!(status, 404);
        assert_eq!(body["error"], "no such path");
        node.abort();
    }
}
