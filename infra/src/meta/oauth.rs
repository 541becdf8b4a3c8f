//! The OAuth endpoints: code exchanges, long-lived tokens and refresh
//! (Instagram Login), the Facebook token exchange, `debug_token` and
//! revoking permissions.

#![allow(clippy::result_large_err)]

use super::*;

pub(super) async fn ig_code_exchange(
    State(s): State<Shared>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    if let Some(r) = enter(&s, "ig_code_exchange").await {
        return r;
    }
    let mut i = s.lock().unwrap();
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    if get("client_id") != i.apps.instagram_app_id
        || get("client_secret") != i.apps.instagram_app_secret
    {
        return ig_oauth_error("Invalid platform app");
    }
    if get("grant_type") != "authorization_code" {
        return ig_oauth_error("Unsupported grant_type");
    }
    let code = get("code");
    let grant = match i.codes.get_mut(&code) {
        Some(c) if !c.used && c.client_id == get("client_id") => {
            c.used = true;
            if c.redirect_uri != get("redirect_uri") {
                return ig_oauth_error("Error validating verification code. Please make sure your redirect_uri is identical to the one you used in the OAuth dialog request");
            }
            c.grant.clone()
        }
        _ => return ig_oauth_error("Matching code was not found or was already used"),
    };
    let Grant::Instagram(person) = &grant else {
        return ig_oauth_error("Matching code was not found or was already used");
    };
    let person = person.clone();
    let token = issue(&mut i, "IGQshort", Kind::IgShort, grant);
    // Ids as numbers, like Meta's examples (they exceed 2^53: keep them exact).
    let user_id: Value = serde_json::from_str(&person.app_scoped_id)
        .unwrap_or(Value::String(person.app_scoped_id.clone()));
    let body = if i.flat_ig_exchange {
        json!({"access_token": token, "user_id": person.app_scoped_id, "permissions": ["instagram_business_basic", "instagram_business_manage_messages", "instagram_business_manage_comments"]})
    } else {
        json!({"data": [{"access_token": token, "user_id": user_id, "permissions": "instagram_business_basic,instagram_business_manage_messages,instagram_business_manage_comments"}]})
    };
    Json(body).into_response()
}

pub(super) async fn ig_long_lived(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = enter(&s, "ig_long_lived").await {
        return r;
    }
    let mut i = s.lock().unwrap();
    if q.get("grant_type").map(String::as_str) != Some("ig_exchange_token")
        || q.get("client_secret") != Some(&i.apps.instagram_app_secret)
    {
        return graph_error(400, 100, "Invalid parameters");
    }
    let t = match token_of(&i, q.get("access_token"), &["ig_short"]) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let long = issue(&mut i, "IGQlong", Kind::IgLong, t.grant);
    let expires_in = i.ig_lifetime.unwrap_or(5_183_944);
    Json(json!({"access_token": long, "token_type": "bearer", "expires_in": expires_in}))
        .into_response()
}

pub(super) async fn ig_refresh(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = enter(&s, "ig_refresh").await {
        return r;
    }
    let mut i = s.lock().unwrap();
    let t = match token_of(&i, q.get("access_token"), &["ig_long"]) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let long = issue(&mut i, "IGQlong", Kind::IgLong, t.grant);
    Json(json!({"access_token": long, "token_type": "bearer", "expires_in": 5_184_000}))
        .into_response()
}

pub(super) async fn fb_access_token(
    Path(_v): Path<String>,
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let exchange = q.get("grant_type").map(String::as_str) == Some("fb_exchange_token");
    let endpoint = if exchange {
        "fb_long_lived"
    } else {
        "fb_code_exchange"
    };
    if let Some(r) = enter(&s, endpoint).await {
        return r;
    }
    let mut i = s.lock().unwrap();
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    if get("client_id") != i.apps.facebook_app_id
        || get("client_secret") != i.apps.facebook_app_secret
    {
        return graph_error(400, 1, "Error validating client secret.");
    }
    if exchange {
        return fb_long_lived(&mut i, &q);
    }
    let grant = match redeem_fb_code(&mut i, &q) {
        Ok(grant) => grant,
        Err(r) => return r,
    };
    if let Some(v) = q.get("code_verifier") {
        i.pkce_verifiers.push(v.clone());
    }
    if !matches!(grant, Grant::Facebook(_)) {
        return graph_error(400, 100, "Invalid verification code format.");
    }
    let short = issue(&mut i, "EAAshort", Kind::FbShort, grant);
    Json(json!({"access_token": short, "token_type": "bearer", "expires_in": 5_400}))
        .into_response()
}

/// `grant_type=fb_exchange_token`: a short-lived Facebook token for a long one.
fn fb_long_lived(i: &mut Inner, q: &HashMap<String, String>) -> Response {
    let t = match token_of(i, q.get("fb_exchange_token"), &["fb_short"]) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let long = issue(i, "EAAlong", Kind::FbLong, t.grant);
    Json(json!({"access_token": long, "token_type": "bearer", "expires_in": 5_183_944}))
        .into_response()
}

/// The grant of an unused code issued to this client and redirect URI, with
/// its PKCE verifier if it was issued with a challenge.
fn redeem_fb_code(i: &mut Inner, q: &HashMap<String, String>) -> Result<Grant, Response> {
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    let code = get("code");
    match i.codes.get_mut(&code) {
        Some(c) if !c.used && c.client_id == get("client_id") => {
            c.used = true;
            if c.redirect_uri != get("redirect_uri") {
                return Err(graph_error(400, 100, "Error validating verification code. Please make sure your redirect_uri is identical to the one you used in the OAuth dialog request"));
            }
            // PKCE (RFC 7636 4.6): a code issued with a challenge needs the
            // verifier that hashes to it; one issued without takes none.
            let verifier = q.get("code_verifier");
            let proven = match (&c.code_challenge, verifier) {
                (Some(challenge), Some(v)) => *challenge == pkce_s256(v),
                (None, None) => true,
                _ => false,
            };
            if !proven {
                return Err(graph_error(400, 100, "Invalid code verifier."));
            }
            Ok(c.grant.clone())
        }
        _ => Err(graph_error(
            400,
            100,
            "This authorization code has been used.",
        )),
    }
}

pub(super) async fn fb_debug_token(
    Path(_v): Path<String>,
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = enter(&s, "fb_debug_token").await {
        return r;
    }
    let i = s.lock().unwrap();
    let app_token = format!("{}|{}", i.apps.facebook_app_id, i.apps.facebook_app_secret);
    if q.get("access_token") != Some(&app_token) {
        return graph_error(
            400,
            190,
            "Invalid OAuth access token - Cannot parse access token",
        );
    }
    let input = q.get("input_token").and_then(|t| i.tokens.get(t));
    let valid = input.is_some_and(|t| t.valid);
    // Meta says what kind of token it is: a Page's, a user's, or (unknown
    // or another app's) nothing of the sort.
    let kind = match input.map(|t| &t.kind) {
        Some(Kind::Page(_)) => "PAGE",
        Some(Kind::FbShort | Kind::FbLong) => "USER",
        _ => "UNKNOWN",
    };
    let mut data = json!({"app_id": i.apps.facebook_app_id, "type": kind, "is_valid": valid, "expires_at": 0,
                          "scopes": ["instagram_basic", "pages_show_list"]});
    if let Some(at) = i.data_access_expires_at {
        data["data_access_expires_at"] = json!(at);
    }
    Json(json!({"data": data})).into_response()
}

pub(super) async fn fb_revoke(
    Path((_v, user)): Path<(String, String)>,
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = enter(&s, "fb_revoke").await {
        return r;
    }
    let mut i = s.lock().unwrap();
    let app_token = format!("{}|{}", i.apps.facebook_app_id, i.apps.facebook_app_secret);
    if q.get("access_token") != Some(&app_token) {
        return graph_error(400, 190, "Invalid OAuth access token");
    }
    i.revoked.push(user);
    Json(json!({"success": true})).into_response()
}
