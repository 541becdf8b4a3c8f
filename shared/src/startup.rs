//! What every function's `main` does before it serves: JSON logs, its
//! configuration read and checked once (refusing to start with one message
//! naming every problem), and the AWS SDK configuration, built once per
//! container.

use crate::config::{ConfigError, EnvReader, FromEnv};

/// Logs on, configuration read, AWS configured.
pub async fn start<C: FromEnv>() -> Result<(C, aws_config::SdkConfig), ConfigError> {
    crate::logging::init();
    let config = C::from_env(EnvReader::from_env()).inspect_err(|e| {
        tracing::error!(error = %e, "refusing to start");
    })?;
    Ok((config, crate::aws_config().await))
}

/// What a function's constructor gave: on `Err` (an HTTPS client that could
/// not be built), logged as [`start`] logs a configuration that won't do,
/// before `main` returns it.
pub fn built<T, E: std::fmt::Display>(made: Result<T, E>) -> Result<T, E> {
    made.inspect_err(|e| tracing::error!(error = %e, "refusing to start"))
}
