//! Structured JSON logs. Nothing here ever formats a token, code, state,
//! secret, signature or request URL: handlers log reasons and short hashes.

use sha2::{Digest, Sha256};

/// Installs the JSON subscriber (`RUST_LOG` filters; default `info`).
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_ansi(false)
        .without_time() // CloudWatch stamps each line
        .try_init();
}

/// A short, stable, non-reversible tag for an id in logs.
pub fn tag(value: &str) -> String {
    hex::encode(&Sha256::digest(value.as_bytes())[..6])
}
