//! Reading the environment: every variable is read and every problem
//! collected before anything is reported.

use std::collections::HashMap;
use std::fmt;

use url::Url;

/// Every problem found while reading the environment, so an operator fixes
/// them in one deploy rather than one per cold start.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(pub Vec<String>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: {}", self.0.join("; "))
    }
}

impl std::error::Error for ConfigError {}

/// Reads variables from a source (the process environment, or a map in tests)
/// and collects problems instead of stopping at the first.
pub struct EnvReader {
    vars: HashMap<String, String>,
    problems: Vec<String>,
}

impl EnvReader {
    pub fn from_env() -> Self {
        Self::from_map(std::env::vars().collect())
    }

    pub fn from_map(vars: HashMap<String, String>) -> Self {
        Self {
            vars,
            problems: Vec::new(),
        }
    }

    fn raw(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(|v| v.trim())
    }

    /// A non-empty value, or a problem named after the variable.
    pub fn required(&mut self, name: &str) -> String {
        match self.raw(name) {
            Some(v) if !v.is_empty() => v.to_string(),
            _ => {
                self.problems.push(format!("{name} is missing"));
                String::new()
            }
        }
    }

    /// The value, or `""` when unset.
    pub fn optional(&mut self, name: &str) -> String {
        self.raw(name).unwrap_or_default().to_string()
    }

    pub fn or_default(&mut self, name: &str, default: &str) -> String {
        match self.raw(name) {
            Some(v) if !v.is_empty() => v.to_string(),
            _ => default.to_string(),
        }
    }

    /// A comma list; empty items are dropped.
    pub fn list_or(&mut self, name: &str, default: &str) -> Vec<String> {
        self.or_default(name, default)
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    pub fn number_or(&mut self, name: &str, default: u64, min: u64, max: u64) -> u64 {
        let Some(raw) = self.raw(name).filter(|v| !v.is_empty()) else {
            return default;
        };
        match raw.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => n,
            _ => {
                self.problems.push(format!(
                    "{name} must be a whole number from {min} to {max}, got {raw:?}"
                ));
                default
            }
        }
    }

    /// An absolute http(s) URL without a trailing slash, without query or fragment.
    pub fn base_url(&mut self, name: &str, default: Option<&str>) -> String {
        let value = match (self.raw(name).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => v.to_string(),
            (None, Some(d)) => d.to_string(),
            (None, None) => {
                self.problems.push(format!("{name} is missing"));
                return String::new();
            }
        };
        match Url::parse(&value) {
            Ok(u)
                if matches!(u.scheme(), "http" | "https")
                    && u.host().is_some()
                    && u.query().is_none()
                    && u.fragment().is_none() =>
            {
                value.trim_end_matches('/').to_string()
            }
            _ => {
                self.problems.push(format!(
                    "{name} must be an absolute http(s) URL without query or fragment, got {value:?}"
                ));
                String::new()
            }
        }
    }

    /// An absolute http(s) URL (query allowed), or `None` when unset.
    pub fn optional_url(&mut self, name: &str) -> Option<Url> {
        let raw = self.raw(name).filter(|v| !v.is_empty())?.to_string();
        match Url::parse(&raw) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
            _ => {
                self.problems.push(format!(
                    "{name} must be an absolute http(s) URL, got {raw:?}"
                ));
                None
            }
        }
    }

    pub fn problem(&mut self, message: String) {
        self.problems.push(message);
    }

    /// Ends reading: `Err` lists every problem found.
    pub fn finish(self) -> Result<(), ConfigError> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(self.problems))
        }
    }
}

/// A function's configuration, read from its environment. Every variable is
/// read before anything is reported, so one start names every problem.
pub trait FromEnv: Sized {
    /// Reads every variable, recording each problem in `env`; `None` only
    /// when a value the configuration can't be built without is missing
    /// (and `env` then holds its problem).
    fn read(env: &mut EnvReader) -> Option<Self>;

    fn from_env(mut env: EnvReader) -> Result<Self, ConfigError> {
        let config = Self::read(&mut env);
        env.finish()?;
        config.ok_or_else(|| ConfigError(vec!["the configuration is incomplete".into()]))
    }
}
