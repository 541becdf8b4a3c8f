//! The bodies `POST` and `PATCH /admin/endpoints` take, read field by field
//! so each refusal names its field: `invalid_url`, `invalid_kinds`,
//! `invalid_accounts`, `invalid_description`, `invalid_status`.

use serde_json::{Map, Value};
use shared::outbound::filter::{valid_accounts, valid_kinds};
use shared::outbound::target::validate_url;

/// The longest description kept.
pub const MAX_DESCRIPTION: usize = 500;

/// What a request asked to set; `None`: leave as it is (PATCH) or the
/// default (POST).
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    pub url: Option<String>,
    /// `Some(None)`: every kind.
    pub kinds: Option<Option<Vec<String>>>,
    pub accounts: Option<Option<Vec<String>>>,
    pub description: Option<String>,
    /// `Some(true)`: enabled.
    pub enabled: Option<bool>,
}

/// A refusal: the contract's error code.
#[derive(Debug, PartialEq, Eq)]
pub struct Invalid(pub &'static str);

fn list(
    v: &Value,
    code: &'static str,
    ok: fn(&[String]) -> bool,
) -> Result<Option<Vec<String>>, Invalid> {
    match v {
        Value::Null => Ok(None),
        Value::Array(items) => {
            let strings: Option<Vec<String>> = items
                .iter()
                .map(|i| i.as_str().map(str::to_string))
                .collect();
            match strings {
                Some(s) if ok(&s) => Ok(Some(s)),
                _ => Err(Invalid(code)),
            }
        }
        _ => Err(Invalid(code)),
    }
}

/// Reads a JSON object body. `allow_loopback`: `DELIVERY_ALLOW_LOOPBACK`.
pub fn read(body: &[u8], allow_loopback: bool) -> Result<Changes, Invalid> {
    let obj: Map<String, Value> =
        serde_json::from_slice(body).map_err(|_| Invalid("invalid_json"))?;
    let mut c = Changes::default();
    if let Some(url) = obj.get("url") {
        let url = url.as_str().ok_or(Invalid("invalid_url"))?;
        validate_url(url, allow_loopback).map_err(|_| Invalid("invalid_url"))?;
        c.url = Some(url.to_string());
    }
    if let Some(kinds) = obj.get("kinds") {
        c.kinds = Some(list(kinds, "invalid_kinds", valid_kinds)?);
    }
    if let Some(accounts) = obj.get("accounts") {
        c.accounts = Some(list(accounts, "invalid_accounts", valid_accounts)?);
    }
    if let Some(d) = obj.get("description") {
        match d {
            Value::Null => c.description = Some(String::new()),
            Value::String(s) if s.chars().count() <= MAX_DESCRIPTION => {
                c.description = Some(s.clone())
            }
            _ => return Err(Invalid("invalid_description")),
        }
    }
    if let Some(status) = obj.get("status") {
        c.enabled = Some(match status.as_str() {
            Some("enabled") => true,
            Some("disabled") => false,
            _ => return Err(Invalid("invalid_status")),
        });
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(v: Value) -> Result<Changes, Invalid> {
        read(v.to_string().as_bytes(), false)
    }

    #[test]
    fn each_field_is_checked_and_named() {
        let ok = r(
            json!({"url": "https://b.example.com/h", "kinds": ["messages", "connection.*"],
            "accounts": null, "description": "main", "status": "disabled"}),
        )
        .unwrap();
        assert_eq!(ok.url.as_deref(), Some("https://b.example.com/h"));
        assert_eq!(
            ok.kinds,
            Some(Some(vec!["messages".into(), "connection.*".into()]))
        );
        assert_eq!(ok.accounts, Some(None));
        assert_eq!(ok.enabled, Some(false));
        for (body, code) in [
            (json!({"url": "http://b.example.com/"}), "invalid_url"),
            (json!({"url": "https://10.0.0.1/"}), "invalid_url"),
            (json!({"url": 5}), "invalid_url"),
            (json!({"kinds": "messages"}), "invalid_kinds"),
            (json!({"kinds": [1]}), "invalid_kinds"),
            (json!({"kinds": ["*"]}), "invalid_kinds"),
            (json!({"accounts": [""]}), "invalid_accounts"),
            (
                json!({"description": "x".repeat(501)}),
                "invalid_description",
            ),
            (json!({"status": "paused"}), "invalid_status"),
            (json!([]), "invalid_json"),
        ] {
            assert_eq!(r(body.clone()), Err(Invalid(code)), "{body}");
        }
        assert_eq!(read(b"{", false), Err(Invalid("invalid_json")));
        assert!(read(br#"{"url": "http://127.0.0.1:9/"}"#, true).is_ok());
    }
}
