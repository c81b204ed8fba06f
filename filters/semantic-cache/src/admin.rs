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
//!
//! With an external store (`store.chroma`) the tenant's entries are deleted
//! there too ([`StoreClear`]: the collection id first if this VM has none),
//! and the reply waits for it: 200 `{"tenant", "cleared", "store_deleted"}`,
//! or 502 `{"tenant", "cleared", "store_error": "<reason>"}` when the store
//! failed (shared data is cleared either way; retry).

use crate::chroma::{self, StoreCall, StoreError};
use crate::config::Chroma;
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

/// A tenant's entries removed from shared data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cleared {
    pub tenant: String,
    pub cleared: usize,
}

impl Cleared {
    /// The body of the 200 without an external store.
    pub fn body(&self) -> Vec<u8> {
        json!({"tenant": self.tenant, "cleared": self.cleared}).to_string().into_bytes()
    }
}

/// What the admin path does next while clearing the external store.
#[derive(Debug, Clone, PartialEq)]
pub enum AdminStep {
    /// Send this call to the store, then [`StoreClear::on_response`].
    Call(StoreCall),
    /// Reply with this status and JSON body; `failed`: count it as a store failure.
    Reply { status: u32, body: Vec<u8>, failed: Option<StoreError> },
}

/// Deleting a cleared tenant's entries from the external store.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreClear {
    cleared: Cleared,
    /// Waiting for the collection id (this VM had none).
    resolving: bool,
}

impl StoreClear {
    /// The first call: the delete, or the collection id when this VM has none yet.
    pub fn start(chroma: &Chroma, cleared: Cleared) -> (StoreClear, AdminStep) {
        let mut clear = StoreClear { cleared, resolving: false };
        let step = clear.next(chroma);
        (clear, step)
    }

    fn next(&mut self, chroma: &Chroma) -> AdminStep {
        match chroma::known_collection() {
            Some(id) => {
                self.resolving = false;
                AdminStep::Call(chroma::delete_tenant_call(chroma, &id, tenant_id(&self.cleared.tenant)))
            }
            None => {
                self.resolving = true;
                AdminStep::Call(chroma::resolve_call(chroma))
            }
        }
    }

    /// The store answered (`status` absent: timeout or reset).
    pub fn on_response(&mut self, chroma: &Chroma, status: Option<&str>, body: Option<&[u8]>) -> AdminStep {
        if self.resolving {
            return match chroma::parse_resolve(status, body) {
                Ok(id) => {
                    chroma::remember_collection(Some(id));
                    self.next(chroma)
                }
                Err(err) => self.failed(err),
            };
        }
        match chroma::parse_delete(status, body) {
            Ok(deleted) => AdminStep::Reply {
                status: 200,
                body: json!({"tenant": self.cleared.tenant, "cleared": self.cleared.cleared, "store_deleted": deleted})
                    .to_string()
                    .into_bytes(),
                failed: None,
            },
            Err(err) => {
                if err == StoreError::NotFound {
                    chroma::remember_collection(None);
                }
                self.failed(err)
            }
        }
    }

    /// The store could not be cleared (shared data was).
    pub fn failed(&self, err: StoreError) -> AdminStep {
        let body = json!({"tenant": self.cleared.tenant, "cleared": self.cleared.cleared, "store_error": err.reason()});
        AdminStep::Reply { status: 502, body: body.to_string().into_bytes(), failed: Some(err) }
    }
}

/// Handles an admin request: clears the tenant's entries in shared data.
pub fn handle<S: SharedStore + ?Sized>(
    token: &str,
    method: &str,
    header: &dyn Fn(&str) -> Option<String>,
    store: &S,
    slots: usize,
) -> Result<Cleared, ApiError> {
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
    Ok(Cleared { tenant, cleared })
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
        let cleared = handle(TOKEN, "POST", &headers(TOKEN, "retail"), &store, 2).unwrap();
        assert_eq!(cleared.cleared, 1);
        assert_eq!(String::from_utf8(cleared.body()).unwrap(), r#"{"cleared":1,"tenant":"retail"}"#);
        assert_eq!(cache.index().unwrap().usage().0, 0);
        assert!(is_admin_path("/aigw/cache/clear", "/aigw/cache/clear?x=1"));
        assert!(!is_admin_path("/aigw/cache/clear", "/v1/chat/completions"));
    }

    fn chroma() -> Chroma {
        let config = crate::config::from_json(Some(
            br#"{"semantic": {"cluster": "e"}, "store": {"chroma": {"cluster": "chroma", "collection": "answers"}}}"#,
        ))
        .unwrap();
        config.store.unwrap()
    }

    fn call_path(step: &AdminStep) -> String {
        let AdminStep::Call(call) = step else { panic!("expected a call, got {step:?}") };
        call.headers.iter().find(|(n, _)| n == ":path").map(|(_, v)| v.clone()).unwrap()
    }

    fn reply(step: AdminStep) -> (u32, serde_json::Value, Option<StoreError>) {
        let AdminStep::Reply { status, body, failed } = step else { panic!("expected a reply, got {step:?}") };
        (status, serde_json::from_slice(&body).unwrap(), failed)
    }

    #[test]
    fn the_store_is_cleared_too() {
        let chroma = chroma();
        let cleared = Cleared { tenant: "retail".to_string(), cleared: 2 };
        // No collection id in this VM: resolve, then delete the tenant's entries.
        chroma::remember_collection(None);
        let (mut clear, step) = StoreClear::start(&chroma, cleared.clone());
        assert!(call_path(&step).ends_with("/collections"));
        let step = clear.on_response(&chroma, Some("200"), Some(br#"{"id":"c-1"}"#));
        assert!(call_path(&step).ends_with("/collections/c-1/delete"));
        let AdminStep::Call(call) = &step else { panic!("expected a call") };
        let sent: serde_json::Value = serde_json::from_slice(&call.body).unwrap();
        assert_eq!(sent["where"]["tenant"]["$eq"], format!("{:016x}", tenant_id("retail")));
        let (status, body, failed) = reply(clear.on_response(&chroma, Some("200"), Some(br#"{"deleted":5}"#)));
        assert_eq!((status, failed), (200, None));
        assert_eq!(body, json!({"tenant": "retail", "cleared": 2, "store_deleted": 5}));

        // The id is known now: the delete at once. Failures: 502, shared data cleared all the same.
        let (mut clear, step) = StoreClear::start(&chroma, cleared.clone());
        assert!(call_path(&step).ends_with("/c-1/delete"));
        let (status, body, failed) = reply(clear.on_response(&chroma, None, None));
        assert_eq!((status, failed), (502, Some(StoreError::NoResponse)));
        assert_eq!(body, json!({"tenant": "retail", "cleared": 2, "store_error": "no_response"}));
        let (mut clear, _) = StoreClear::start(&chroma, cleared.clone());
        let (status, _, failed) = reply(clear.on_response(&chroma, Some("404"), None));
        assert_eq!((status, failed), (502, Some(StoreError::NotFound)));
        assert_eq!(chroma::known_collection(), None, "a 404 forgets the collection");
        let (mut clear, _) = StoreClear::start(&chroma, cleared);
        let (status, body, _) = reply(clear.on_response(&chroma, Some("200"), Some(b"<html>")));
        assert_eq!((status, &body["store_error"]), (502, &json!("bad_body")));
        chroma::remember_collection(None);
    }
}
