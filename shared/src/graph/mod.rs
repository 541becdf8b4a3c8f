//! The Graph proxy's decisions and state: what may be called
//! ([`policy`]), when Meta's limits stop calls for an account
//! ([`ratelimit`]), opened tokens kept warm ([`token_cache`]), and the
//! proxy's DynamoDB records ([`store`]; erased per account for data
//! deletion by [`erase`]). The function `graph` wires them.

pub mod erase;
pub mod policy;
pub mod ratelimit;
pub mod store;
pub mod token_cache;

use serde_json::Value;

/// Removes every `access_token` field, at any depth, from Meta's answer: a
/// second line of defence behind the policy (a Page token must never reach
/// the product). Returns how many were removed.
pub fn strip_tokens(value: &mut Value) -> usize {
    match value {
        Value::Object(map) => {
            let removed = usize::from(map.remove("access_token").is_some());
            removed + map.values_mut().map(strip_tokens).sum::<usize>()
        }
        Value::Array(items) => items.iter_mut().map(strip_tokens).sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tokens_are_stripped_at_any_depth() {
        let mut v = json!({"id": "1", "access_token": "EAA1",
            "data": [{"id": "p1", "access_token": "EAA2", "nested": {"access_token": "EAA3", "keep": 1}}]});
        assert_eq!(strip_tokens(&mut v), 3);
        assert_eq!(
            v,
            json!({"id": "1", "data": [{"id": "p1", "nested": {"keep": 1}}]})
        );
        let mut plain = json!({"data": []});
        assert_eq!(strip_tokens(&mut plain), 0);
    }
}
