//! Choosing the set of decorations and templates for a request.
//!
//! `tenant.from` names an attribute (`header:x-team`, `jwt:team`, …; see
//! `aigw_shared::attributes`). Its value picks an entry of `tenants`. When the
//! attribute is absent or names no tenant, `tenant.on_unknown` decides: use the
//! top-level (default) set, or answer 403 `unknown_tenant`.
//!
//! A header is only as trustworthy as whatever sets it: in production, key on
//! a JWT claim verified by Envoy's `jwt_authn`, or on a header that an earlier
//! hop overwrites.

use crate::config::{Config, OnUnknown, TenantSet};
use aigw_shared::host::Host;
use aigw_shared::ApiError;

/// The set for this request.
pub fn select<'a>(config: &'a Config, host: &dyn Host) -> Result<&'a TenantSet, ApiError> {
    let Some(selector) = &config.tenant_selector else {
        return Ok(&config.default_set);
    };
    if let Some(set) = selector.source.resolve(host).and_then(|name| config.tenant(&name)) {
        return Ok(set);
    }
    match selector.on_unknown {
        OnUnknown::Default => Ok(&config.default_set),
        OnUnknown::Reject => {
            Err(ApiError::forbidden("unknown_tenant", "The request names no tenant this gateway has prompts for."))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::from_json;
    use aigw_shared::attributes::envoy_value;
    use aigw_shared::host::fake::FakeHost;
    use serde_json::json;

    fn config(on_unknown: &str, from: &str) -> Config {
        let text = format!(
            r#"{{"tenant": {{"from": "{from}", "on_unknown": "{on_unknown}"}},
                "tenants": {{"wealth": {{}}, "retail": {{}}}}}}"#
        );
        from_json(Some(text.as_bytes())).unwrap()
    }

    #[test]
    fn header_picks_the_tenant() {
        let config = config("default", "header:x-team");
        let host = FakeHost::new().with_header("x-team", "wealth");
        assert_eq!(select(&config, &host).unwrap().name, "wealth");
        let host = FakeHost::new().with_header("x-team", "retail");
        assert_eq!(select(&config, &host).unwrap().name, "retail");
    }

    #[test]
    fn jwt_claim_picks_the_tenant() {
        let config = config("reject", "jwt:team");
        let host = FakeHost::new().with_property(
            &["metadata", "filter_metadata", "envoy.filters.http.jwt_authn", "jwt_payload", "team"],
            envoy_value::encode(&json!("retail")),
        );
        assert_eq!(select(&config, &host).unwrap().name, "retail");
    }

    #[test]
    fn unknown_or_missing_uses_default_or_rejects() {
        let lenient = config("default", "header:x-team");
        assert_eq!(select(&lenient, &FakeHost::new()).unwrap().name, "default");
        let host = FakeHost::new().with_header("x-team", "hr");
        assert_eq!(select(&lenient, &host).unwrap().name, "default");
        let strict = config("reject", "header:x-team");
        let err = select(&strict, &host).unwrap_err();
        assert_eq!((err.status, err.code), (403, "unknown_tenant"));
        assert!(select(&strict, &FakeHost::new()).is_err());
    }

    #[test]
    fn no_selector_means_default() {
        let config = from_json(None).unwrap();
        assert_eq!(select(&config, &FakeHost::new().with_header("x-team", "wealth")).unwrap().name, "default");
    }
}
