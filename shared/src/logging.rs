//! Structured JSON logs. Nothing here ever formats a token, code, state,
//! secret, signature or request URL: handlers log reasons and short hashes.
//!
//! `RUST_LOG` chooses the level, but only this service's own crates may go
//! below `info`. Dependencies print payloads at `debug`/`trace` (the Lambda
//! runtime logs the raw event, with its codes, cookies and JWT; the AWS SDK and
//! hyper log wire data), so they are capped at `info` whatever the operator
//! sets: an event must pass both `RUST_LOG` and that cap.

use sha2::{Digest, Sha256};
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::{EnvFilter, FilterExt, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// The crates of this service: the only targets that may log below `info`.
pub const SERVICE_CRATES: &[&str] = &[
    "shared",
    "authorize",
    "callback",
    "webhook",
    "refresh",
    "connections",
    "graph",
    "admin",
    "deliver",
    "infra",
    "local_stack",
];

/// The most verbose level any dependency may log at.
pub const DEPENDENCY_MAX_LEVEL: LevelFilter = LevelFilter::INFO;

/// The cap: service crates at any level, everything else at most `info`.
pub fn level_caps() -> Targets {
    SERVICE_CRATES
        .iter()
        .fold(Targets::new().with_default(DEPENDENCY_MAX_LEVEL), |t, c| {
            t.with_target(*c, LevelFilter::TRACE)
        })
}

/// `RUST_LOG` (default `info`); an unparsable value falls back to `info`.
pub fn env_filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Installs the JSON subscriber on stdout, without timestamps (CloudWatch
/// stamps each line).
pub fn init() {
    install(std::io::stdout, false);
}

/// Installs the JSON subscriber writing to `writer`, with or without a
/// timestamp per line (the local stack has no CloudWatch to stamp them).
/// Does nothing if a subscriber is already installed.
pub fn install<W>(writer: W, timestamps: bool)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    install_filtered(writer, timestamps, env_filter());
}

/// [`install`] with the operator's filter given instead of read from
/// `RUST_LOG` (tests pass `EnvFilter::new("trace")`). The dependency cap
/// applies all the same.
pub fn install_filtered<W>(writer: W, timestamps: bool, filter: EnvFilter)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let base = tracing_subscriber::fmt::layer()
        .json()
        .with_writer(writer)
        .with_current_span(false)
        .with_ansi(false);
    let layer = if timestamps {
        base.boxed()
    } else {
        base.without_time().boxed()
    };
    let _ = tracing_subscriber::registry()
        .with(layer.with_filter(filter.and(level_caps())))
        .try_init();
}

/// A short, stable, non-reversible tag for an id in logs.
pub fn tag(value: &str) -> String {
    hex::encode(&Sha256::digest(value.as_bytes())[..6])
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    fn passes(target: &str, level: Level) -> bool {
        level_caps().would_enable(target, &level)
    }

    #[test]
    fn dependencies_are_capped_at_info_and_the_service_is_not() {
        for dep in [
            "lambda_runtime::layers::api_response",
            "lambda_runtime_api_client",
            "hyper_util::client",
            "aws_smithy_runtime::client::orchestrator",
            "aws_sigv4",
            "reqwest::connect",
            "h2::codec",
            "rustls",
        ] {
            assert!(!passes(dep, Level::TRACE), "{dep} at trace");
            assert!(!passes(dep, Level::DEBUG), "{dep} at debug");
            assert!(passes(dep, Level::INFO), "{dep} at info");
        }
        for own in ["shared::store", "callback", "refresh", "webhook"] {
            assert!(passes(own, Level::TRACE), "{own} at trace");
        }
    }
}
