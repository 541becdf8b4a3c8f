//! Which events an endpoint receives: `kinds` (exact kinds, or a prefix
//! ending in `.*`; `None` = every kind) and `accounts` (`None` = every
//! account).

/// The most entries a `kinds` or `accounts` list may hold.
pub const MAX_ENTRIES: usize = 100;

/// Whether `kinds` is acceptable: a list of 1 to 100 entries, each an
/// event kind (`[a-z0-9_]` words joined by dots) or such a prefix with `.*`.
pub fn valid_kinds(kinds: &[String]) -> bool {
    !kinds.is_empty()
        && kinds.len() <= MAX_ENTRIES
        && kinds.iter().all(|k| {
            let name = k.strip_suffix(".*").unwrap_or(k);
            !name.is_empty()
                && name.len() <= 100
                && name.split('.').all(|word| {
                    !word.is_empty()
                        && word
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                })
        })
}

/// Whether `accounts` is acceptable: 1 to 100 non-empty ids of printable
/// ASCII, at most 100 characters each.
pub fn valid_accounts(accounts: &[String]) -> bool {
    !accounts.is_empty()
        && accounts.len() <= MAX_ENTRIES
        && accounts
            .iter()
            .all(|a| !a.is_empty() && a.len() <= 100 && a.bytes().all(|b| b.is_ascii_graphic()))
}

/// Whether an event of `kind` about `account_id` goes to an endpoint with
/// these filters.
pub fn matches(
    kinds: Option<&[String]>,
    accounts: Option<&[String]>,
    kind: &str,
    account_id: &str,
) -> bool {
    let kind_ok = kinds.is_none_or(|ks| {
        ks.iter().any(|k| match k.strip_suffix('*') {
            Some(prefix) => kind.starts_with(prefix) && kind.len() > prefix.len(),
            None => k == kind,
        })
    });
    kind_ok && accounts.is_none_or(|accs| accs.iter().any(|a| a == account_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn kinds_are_exact_or_a_dotted_prefix() {
        let kinds = v(&["messages", "connection.*"]);
        let m = |kind| matches(Some(&kinds), None, kind, "a1");
        assert!(m("messages"));
        assert!(m("connection.connected"));
        assert!(m("connection.needs_reauth"));
        assert!(!m("message_edit"), "exact means exact");
        assert!(!m("messages.x"));
        assert!(!m("connection"), "the prefix needs something after the dot");
        assert!(!m("connectionx.y"));
        assert!(matches(None, None, "anything.at_all", "a1"));
    }

    #[test]
    fn accounts_filter_by_exact_id() {
        let accounts = v(&["178414", "9"]);
        assert!(matches(None, Some(&accounts), "messages", "9"));
        assert!(!matches(None, Some(&accounts), "messages", "1784"));
        let kinds = v(&["comments"]);
        assert!(!matches(Some(&kinds), Some(&accounts), "messages", "9"));
        assert!(matches(Some(&kinds), Some(&accounts), "comments", "9"));
    }

    #[test]
    fn kind_lists_are_checked() {
        assert!(valid_kinds(&v(&[
            "messages",
            "connection.*",
            "webhook_endpoint.disabled"
        ])));
        for bad in [
            v(&[]),
            v(&["*"]),
            v(&[".*"]),
            v(&["Messages"]),
            v(&["connection.*.*"]),
            v(&["connection*"]),
            v(&["a..b"]),
            v(&["messages "]),
            vec!["m".to_string(); 101],
        ] {
            assert!(!valid_kinds(&bad), "{bad:?}");
        }
    }

    #[test]
    fn account_lists_are_checked() {
        assert!(valid_accounts(&v(&["17841400000000"])));
        assert!(!valid_accounts(&v(&[])));
        assert!(!valid_accounts(&v(&[""])));
        assert!(!valid_accounts(&v(&["a b"])));
    }
}
