//! Classifiers fed by reassembled stream bytes (or one datagram): they say what the bytes
//! are — an HTTP upgrade request or response head, WebSocket frames, TLS records and the
//! ClientHello, DNS messages — and never decide what to keep. That is `policy`'s job.

pub mod dns;
pub mod http;
pub mod tls;
pub mod units;
pub mod websocket;
