//! Operations: the HTTP listener every mode serves (`http.listen`) with `/healthz`
//! (alive), `/readyz` (the database, the session store and each platform answer) and
//! `/metrics` (Prometheus), and the metrics themselves ([`metrics`]).

pub mod http;
pub mod metrics;
pub mod readiness;
pub mod server;

pub use readiness::Readiness;
pub use server::serve;
