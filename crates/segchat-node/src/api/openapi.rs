//! `GET /openapi.json`: the API described for people and bots, an OpenAPI
//! 3.1 document kept by hand in `openapi.json` beside this file. Anyone on
//! this machine may read it without a token (it holds no secrets). A test
//! below keeps it in step with the router: every route registered in
//! `mod.rs` must be documented, and every documented route must exist.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::IntoResponse;

/// The document, as served.
pub(super) const OPENAPI_JSON: &str = include_str!("openapi.json");

pub(super) async fn document() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "application/json"),
            (CACHE_CONTROL, "no-cache"),
        ],
        OPENAPI_JSON,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// `(method, path)` of every `.route(...)` in the router's source.
    fn routes_in_source() -> Vec<(String, String)> {
        let src = include_str!("mod.rs");
        let body = &src[src.find("pub fn router").expect("router fn")..];
        let body = &body[..body.find("\n}\n").expect("end of router")];
        let mut out = Vec::new();
        for chunk in body.split(".route(").skip(1) {
            let path = chunk.split('"').nth(1).expect("a quoted path");
            let handlers = chunk.split(".route(").next().unwrap_or(chunk);
            for method in ["get", "post", "put", "delete", "patch"] {
                let called = handlers.contains(&format!("{method}("))
                    || handlers.contains(&format!(".{method}("));
                if called {
                    out.push((method.to_owned(), format!("/api/v1{path}")));
                }
            }
        }
        out
    }

    #[test]
    fn every_route_is_documented_and_every_documented_route_exists() {
        let doc: Value = serde_json::from_str(OPENAPI_JSON).expect("openapi.json is JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        let routes = routes_in_source();
        assert!(routes.len() >= 20, "found only {routes:?}");
        for (method, path) in &routes {
            assert!(
                doc["paths"][path][method].is_object(),
                "{} {path} is in the router but not in openapi.json",
                method.to_uppercase()
            );
        }
        let paths = doc["paths"].as_object().expect("paths");
        for (path, ops) in paths {
            for method in ops.as_object().expect("operations").keys() {
                assert!(
                    routes.iter().any(|(m, p)| m == method && p == path),
                    "{} {path} is documented but not routed",
                    method.to_uppercase()
                );
            }
        }
    }

    #[test]
    fn every_reference_resolves() {
        let doc: Value = serde_json::from_str(OPENAPI_JSON).expect("json");
        let text = OPENAPI_JSON;
        for part in text.split("\"#/components/schemas/").skip(1) {
            let name: String = part.chars().take_while(|c| *c != '"').collect();
            assert!(
                doc["components"]["schemas"][&name].is_object(),
                "unresolved $ref {name}"
            );
        }
    }
}
