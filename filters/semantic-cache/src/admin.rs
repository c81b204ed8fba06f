//! The admin path: clears one tenant's entries.
//!
//! ```text
//! POST <admin.path>
//! x-aigw-cache-admin-token: <admin.token>
//! x-aigw-cache-tenant: retail
//!
//! 200 {"tenant": "retail", "cleared": 3}
//! ```
//!
//! A missing or wrong token gets 403 (compared in constant time), a missing
//! tenant 400, another method 405. The token is never logged. Requests to
//! other paths are not affected.

use crate::key::tenant_id;
use crate::store::Cache;
use aigw_shared::contract::{HEADER_CACHE_ADMIN_TOKEN, HEADER_CACHE_TENANT};
use aigw_shared::counter::SharedStore;
use aigw_shared::ApiError;
use serde_json::json;

/// Compares two byte strings in time that depends only on their lengths.
fn same_token(given: &[u8], expected: &[u8]) -> bool {
    if given.len() != expected.len() {
        return false;
    }
    given.iter().zip(expected).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0
}

/// Whether a request path is the admin path (query string ignored).
pub fn is_admin_path(admin_path: &str, path: &str) -> bool {
    path.split('?').next() == Some(admin_path)
}

/// Handles an admin request; `Ok` is the JSON body of a 200.
pub fn handle<S: SharedStore + ?Sized>(
    token: &str,
    method: &str,
    header: &dyn Fn(&str) -> Option<String>,
    store: &S,
    slots: usize,
) -> Result<(Vec<u8>, usize), ApiError> {
    let given = header(HEADER_CACHE_ADMIN_TOKEN).unwrap_or_default();
    if !same_token(given.as_bytes(), token.as_bytes()) {
        return Err(ApiError::forbidden("cache_admin_denied", "A valid cache admin token is required."));
    }
    if !method.eq_ignore_ascii_case("POST") {
        return Err(ApiError::method_not_allowed(method));
    }
    let tenant = header(HEADER_CACHE_TENANT)
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request("missing_tenant", format!("Name the tenant in {HEADER_CACHE_TENANT}.")))?;
    let cleared = Cache::new(store, slots).clear_tenant(tenant_id(&tenant)).map_err(|err| {
        ApiError::service_unavailable("cache_busy", format!("The cache could not be cleared ({}).", err.reason()))
    })?;
    Ok((json!({"tenant": tenant, "cleared": cleared}).to_string().into_bytes(), cleared))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewEntry;
    use aigw_shared::counter::memory::MemoryStore;

    const TOKEN: &str = "0123456789abcdef-admin";

    fn headers(token: &str, tenant: &str) -> impl Fn(&str) -> Option<String> {
        let (token, tenant) = (token.to_string(), tenant.to_string());
        move |name: &str| match name {
            HEADER_CACHE_ADMIN_TOKEN if !token.is_empty() => Some(token.clone()),
            HEADER_CACHE_TENANT if !tenant.is_empty() => Some(tenant.clone()),
            _ => None,
        }
    }

    #[test]
    fn clears_only_with_the_token() {
        let store = MemoryStore::new();
        let cache = Cache::new(&store, 2);
        let entry = NewEntry {
            tenant: tenant_id("retail"),
            exact: 1,
            context: 2,
            vector: vec![],
            answer: b"a".to_vec(),
            ttl_seconds: 60,
        };
        cache.insert(&entry, 10, 1000, 1000).unwrap();
        assert_eq!(handle(TOKEN, "POST", &headers("wrong-token-wrong-", "retail"), &store, 2).unwrap_err().status, 403);
        assert_eq!(handle(TOKEN, "POST", &headers("", "retail"), &store, 2).unwrap_err().status, 403);
        assert_eq!(handle(TOKEN, "GET", &headers(TOKEN, "retail"), &store, 2).unwrap_err().status, 405);
        assert_eq!(handle(TOKEN, "POST", &headers(TOKEN, ""), &store, 2).unwrap_err().status, 400);
        assert_eq!(cache.index().unwrap().usage().0, 1);
        let (body, cleared) = handle(TOKEN, "POST", &headers(TOKEN, "retail"), &store, 2).unwrap();
        assert_eq!(cleared, 1);
        assert_eq!(String::from_utf8(body).unwrap(), r#"{"cleared":1,"tenant":"retail"}"#);
        assert_eq!(cache.index().unwrap().usage().0, 0);
        assert!(is_admin_path("/aigw/cache/clear", "/aigw/cache/clear?x=1"));
        assert!(!is_admin_path("/aigw/cache/clear", "/v1/chat/completions"));
    }
}
