//! Code shared by every Lambda of the service: configuration, the Meta client,
//! the token vault, the DynamoDB stores and the HTTP helpers.
//!
//! Decisions (is this state usable, is this return URL allowed, what does this
//! Meta error mean) live in plain functions with unit tests; the stores and the
//! clients are thin adapters around them.
//! `docs/architecture.md` maps each decision to the one file that makes it.

pub mod aws;
pub mod clock;
pub mod config;
pub mod connection;
pub mod continuation;
pub mod door;
pub mod event_kind;
pub mod graph;
pub mod http;
pub mod invoke;
pub mod logging;
pub mod mac;
pub mod meta;
pub mod metrics;
pub mod oauth_state;
pub mod outbound;
pub mod provider;
pub mod refresh;
pub mod return_to;
pub mod secrets;
pub mod startup;
pub mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tls;
pub mod vault;
pub mod webhook;

pub use clock::Clock;
pub use config::{ConfigError, EnvReader, FromEnv};
pub use provider::Provider;

// Re-exported so every function builds against the same versions.
pub use aws_sdk_dynamodb;
pub use aws_sdk_kms;
pub use aws_sdk_lambda;
pub use aws_sdk_secretsmanager;
pub use secrecy;
pub use time;
pub use url;

/// Builds the AWS SDK configuration once per container ([`aws`]).
/// `AWS_ENDPOINT_URL` (read by the SDK itself) points it at a local emulator
/// in tests.
pub use aws::aws_config;
