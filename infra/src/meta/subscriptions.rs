//! The account endpoints (`me`, `me/accounts`) and webhook subscriptions
//! (`subscribed_apps`), for both providers.

#![allow(clippy::result_large_err)]

use super::*;

pub(super) async fn ig_me(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = enter(&s, "ig_me").await {
        return r;
    }
    let i = s.lock().unwrap();
    let t = match token_of(
        &i,
        bearer_or_query(&headers, &q).as_ref(),
        &["ig_long", "ig_short"],
    ) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let Grant::Instagram(p) = t.grant else {
        return graph_error(400, 190, "Invalid OAuth access token");
    };
    Json(json!({"id": p.app_scoped_id, "user_id": p.account_id, "username": p.username, "name": "Acme", "account_type": "BUSINESS"})).into_response()
}

pub(super) async fn ig_subscribe(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = enter(&s, "ig_subscribe").await {
        return r;
    }
    let mut i = s.lock().unwrap();
    let t = match token_of(&i, bearer_or_query(&headers, &q).as_ref(), &["ig_long"]) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let Grant::Instagram(p) = t.grant else {
        return graph_error(400, 190, "Invalid OAuth access token");
    };
    let fields = q.get("subscribed_fields").cloned().unwrap_or_default();
    if fields.is_empty() {
        return graph_error(400, 100, "subscribed_fields is required");
    }
    i.subscriptions.insert(p.account_id, fields);
    Json(json!({"success": true})).into_response()
}

pub(super) async fn ig_unsubscribe(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = enter(&s, "ig_unsubscribe").await {
        return r;
    }
    let mut i = s.lock().unwrap();
    let t = match token_of(&i, bearer_or_query(&headers, &q).as_ref(), &["ig_long"]) {
        Ok(t) => t,
        Err(r) => return r,
    };
    if let Grant::Instagram(p) = t.grant {
        i.subscriptions.remove(&p.account_id);
    }
    Json(json!({"success": true})).into_response()
}

pub(super) async fn fb_me(
    Path(_v): Path<String>,
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = enter(&s, "fb_me").await {
        return r;
    }
    let i = s.lock().unwrap();
    if let Err(r) = check_proof(&i, &q) {
        return r;
    }
    let t = match token_of(&i, q.get("access_token"), &["fb_long", "fb_short"]) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let Grant::Facebook(p) = t.grant else {
        return graph_error(400, 190, "Invalid OAuth access token");
    };
    Json(json!({"id": p.id, "name": p.name})).into_response()
}

pub(super) async fn fb_accounts(
    Path(_v): Path<String>,
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = enter(&s, "fb_accounts").await {
        return r;
    }
    let mut i = s.lock().unwrap();
    if let Err(r) = check_proof(&i, &q) {
        return r;
    }
    let t = match token_of(&i, q.get("access_token"), &["fb_long"]) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let Grant::Facebook(p) = t.grant.clone() else {
        return graph_error(400, 190, "Invalid OAuth access token");
    };
    let start: usize = q.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
    let limit: usize = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(25)
        .min(i.page_size)
        .max(1);
    let end = (start + limit).min(p.pages.len());
    let mut data = Vec::new();
    for page in &p.pages[start.min(end)..end] {
        let token = issue(
            &mut i,
            "EAApage",
            Kind::Page(page.id.clone()),
            t.grant.clone(),
        );
        let mut v =
            json!({"id": page.id, "name": page.name, "access_token": token, "category": "Brand"});
        if let Some((id, username)) = &page.instagram {
            v["instagram_business_account"] = json!({"id": id, "username": username});
        }
        data.push(v);
    }
    let mut body = json!({"data": data, "paging": {"cursors": {"before": start.to_string(), "after": end.to_string()}}});
    if end < p.pages.len() {
        body["paging"]["next"] = json!("https://graph.facebook.com/next-page-placeholder");
    }
    Json(body).into_response()
}

pub(super) async fn fb_subscribe(
    Path((_v, page)): Path<(String, String)>,
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = enter(&s, "fb_subscribe").await {
        return r;
    }
    let mut i = s.lock().unwrap();
    if let Err(r) = check_proof(&i, &q) {
        return r;
    }
    let t = match token_of(&i, q.get("access_token"), &["page"]) {
        Ok(t) => t,
        Err(r) => return r,
    };
    if t.kind != Kind::Page(page.clone()) {
        return graph_error(400, 200, "Permissions error: the token is not this Page's");
    }
    let fields = q.get("subscribed_fields").cloned().unwrap_or_default();
    if fields.split(',').all(|f| f.trim().is_empty()) {
        return graph_error(
            400,
            100,
            "(#100) The parameter subscribed_fields is required",
        );
    }
    i.subscriptions.insert(page, fields);
    Json(json!({"success": true})).into_response()
}

/// The Page token of `page`, and only that Page's (Meta refuses another
/// Page's token with a permissions error).
pub(super) fn page_token_of(
    i: &Inner,
    q: &HashMap<String, String>,
    page: &str,
) -> Result<(), Response> {
    check_proof(i, q)?;
    let t = token_of(i, q.get("access_token"), &["page"])?;
    if t.kind != Kind::Page(page.to_string()) {
        return Err(graph_error(
            400,
            200,
            "Permissions error: the token is not this Page's",
        ));
    }
    Ok(())
}

pub(super) async fn fb_unsubscribe(
    Path((_v, page)): Path<(String, String)>,
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = enter(&s, "fb_unsubscribe").await {
        return r;
    }
    let mut i = s.lock().unwrap();
    if let Err(r) = page_token_of(&i, &q, &page) {
        return r;
    }
    i.subscriptions.remove(&page);
    Json(json!({"success": true})).into_response()
}

pub(super) async fn ig_subscriptions(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = enter(&s, "ig_subscriptions").await {
        return r;
    }
    let i = s.lock().unwrap();
    let t = match token_of(&i, bearer_or_query(&headers, &q).as_ref(), &["ig_long"]) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let Grant::Instagram(p) = t.grant else {
        return graph_error(400, 190, "Invalid OAuth access token");
    };
    let data: Vec<Value> = i
        .subscriptions
        .get(&p.account_id)
        .map(|f| vec![json!({"subscribed_fields": f.split(',').collect::<Vec<_>>()})])
        .unwrap_or_default();
    Json(json!({"data": data})).into_response()
}

pub(super) async fn fb_subscriptions(
    Path((_v, page)): Path<(String, String)>,
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = enter(&s, "fb_subscriptions").await {
        return r;
    }
    let i = s.lock().unwrap();
    if let Err(r) = page_token_of(&i, &q, &page) {
        return r;
    }
    let data: Vec<Value> = i
        .subscriptions
        .get(&page)
        .map(|f| vec![json!({"id": i.apps.facebook_app_id, "name": "ig-connect", "subscribed_fields": f.split(',').collect::<Vec<_>>()})])
        .unwrap_or_default();
    Json(json!({"data": data})).into_response()
}
