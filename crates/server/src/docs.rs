//! API documentation: the OpenAPI document generated from the handlers and
//! models (`/openapi.json`), Swagger UI (`/docs`) and ReDoc (`/redoc`). Both
//! UIs are served from assets compiled into the binary, so the pages make no
//! request to any other host: Swagger UI from `utoipa-swagger-ui`'s vendored
//! dist, ReDoc from the standalone bundle in `assets/` (redoc 2.5.4, MIT).

use crate::error::ApiError;
use crate::routes;
use crate::state::{AppState, ServerConfig};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use std::sync::{Arc, LazyLock};
use utoipa::OpenApi;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::{RefOr, Required};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "VectorWise",
        description = "Nearest-neighbour search by the index's metric (l2, ip or cosine; see /stats), with calibrated recall profiles."
    ),
    paths(routes::health, routes::stats, routes::search, routes::search_batch, routes::metrics),
    tags(
        (name = "health", description = "Liveness and readiness"),
        (name = "index", description = "The served index"),
        (name = "search", description = "k-nearest-neighbour queries"),
        (name = "monitoring", description = "Prometheus metrics"),
    )
)]
struct ApiDoc;

/// The OpenAPI document for `config` (the bounds on `k` and on the batch size
/// are the configured ones), its request examples holding `dim`-dimensional
/// vectors.
pub fn openapi(config: &ServerConfig, dim: usize) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for schema in ["SearchRequest", "SearchBatchRequest"] {
        if let Some(RefOr::T(Schema::Object(k))) = schema_property(&mut doc, schema, "k") {
            k.maximum = Some(config.max_k.into());
        }
    }
    if let Some(RefOr::T(Schema::Array(queries))) = schema_property(&mut doc, "SearchBatchRequest", "query_vectors") {
        queries.max_items = Some(config.max_batch);
    }
    // Whole examples, which Swagger UI's "Try it out" sends as they are: built
    // from the fields' own examples it would send profile, recall_target and
    // ef_search together, which is a 422. The vectors are the README's.
    let k = config.max_k.min(10);
    let ones = vec![0.1; dim];
    let mixed: Vec<f64> = (0..dim).map(|i| if i % 2 == 0 { 0.2 } else { -0.1 }).collect();
    let examples = [
        ("/search", json!({ "query_vector": ones, "k": k })),
        ("/search/batch", json!({ "query_vectors": [ones, mixed], "k": k.min(3) })),
    ];
    for (path, example) in examples {
        if let Some(body) =
            doc.paths.paths.get_mut(path).and_then(|p| p.post.as_mut()).and_then(|op| op.request_body.as_mut())
        {
            // Request bodies are required (an empty body is a 422).
            body.required = Some(Required::True);
            if let Some(content) = body.content.get_mut("application/json") {
                content.example = Some(example);
            }
        }
    }
    doc
}

/// A property of a component schema, to adjust it to the configuration.
fn schema_property<'a>(
    doc: &'a mut utoipa::openapi::OpenApi,
    schema: &str,
    name: &str,
) -> Option<&'a mut RefOr<Schema>> {
    match doc.components.as_mut()?.schemas.get_mut(schema)? {
        RefOr::T(Schema::Object(o)) => o.properties.get_mut(name),
        // A struct with a flattened field is `allOf` its own properties and the field's type.
        RefOr::T(Schema::AllOf(all)) => all.items.iter_mut().find_map(|item| match item {
            RefOr::T(Schema::Object(o)) if o.properties.contains_key(name) => o.properties.get_mut(name),
            _ => None,
        }),
        _ => None,
    }
}

/// Dimension of the request examples while no index is served: the demo's.
const DEMO_DIM: usize = 128;

/// `/openapi.json`, made per request: its examples take the dimension of the
/// index served now, which may not be loaded yet when the router is built and
/// may be swapped later.
async fn openapi_json(State(state): State<AppState>) -> impl IntoResponse {
    let dim = state.index().map_or(DEMO_DIM, |index| index.dim());
    let spec = serde_json::to_vec(&openapi(state.config(), dim)).expect("an OpenAPI document serialises");
    ([(header::CONTENT_TYPE, "application/json")], spec)
}

/// Routes for `/openapi.json`, `/docs` and `/redoc`.
pub(crate) fn router() -> Router<AppState> {
    let swagger = Arc::new(
        utoipa_swagger_ui::Config::new([OPENAPI_URL])
            // Else Swagger UI shows a badge image fetched from validator.swagger.io.
            .validator_url("none")
            // FastAPI's layout: no top bar with a spec URL box.
            .use_base_layout(),
    );
    Router::new()
        .route(OPENAPI_URL, get(openapi_json))
        .route("/docs", get(|| async { Html(SWAGGER_HTML) }))
        .route("/docs/", get(|| async { Html(SWAGGER_HTML) }))
        .route("/docs/{*file}", get(move |Path(file): Path<String>| swagger_file(file, Arc::clone(&swagger))))
        .route("/redoc", get(|| async { Html(REDOC_HTML) }))
        .route(REDOC_JS_URL, get(redoc_js))
}

const OPENAPI_URL: &str = "/openapi.json";
const REDOC_JS_URL: &str = "/redoc/redoc.standalone.js";

/// Swagger UI's page, as FastAPI writes its own; assets under `/docs/`.
const SWAGGER_HTML: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>VectorWise - Swagger UI</title>
<link rel="stylesheet" type="text/css" href="/docs/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/favicon-32x32.png" sizes="32x32">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js" charset="UTF-8"></script>
<script src="/docs/swagger-ui-standalone-preset.js" charset="UTF-8"></script>
<script src="/docs/swagger-initializer.js" charset="UTF-8"></script>
</body>
</html>
"#;

/// ReDoc's page: the `<redoc>` element is picked up by the standalone bundle.
const REDOC_HTML: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>VectorWise - ReDoc</title>
<style>body { margin: 0; padding: 0; }</style>
</head>
<body>
<redoc spec-url="/openapi.json"></redoc>
<script src="/redoc/redoc.standalone.js" charset="UTF-8"></script>
</body>
</html>
"#;

/// A file of Swagger UI's dist (`swagger-initializer.js` carries our config).
async fn swagger_file(file: String, config: Arc<utoipa_swagger_ui::Config<'static>>) -> Result<Response, ApiError> {
    match utoipa_swagger_ui::serve(&file, config) {
        Ok(Some(f)) => Ok(([(header::CONTENT_TYPE, f.content_type)], f.bytes.into_owned()).into_response()),
        Ok(None) => Err(ApiError::NotFound),
        Err(e) => {
            // Only formatting our own config can fail here.
            tracing::error!(error = %e, file, "swagger ui asset");
            Err(ApiError::NotFound)
        }
    }
}

/// The ReDoc bundle as shipped, license header included. It holds non-ASCII
/// regex ranges: served without `charset=utf-8`, browsers read it as Latin-1
/// and it fails to parse (seen in headless Chromium).
const REDOC_JS: &[u8] = include_bytes!("../assets/redoc.standalone.js");

/// The one remote asset in the bundle: the sidebar's Redocly logo. The `<img>`
/// hides itself when its source fails to load, which `data:,` does at once.
const REDOC_REMOTE_LOGO: &str = "https://cdn.redoc.ly/redoc/logo-mini.svg";

/// [`REDOC_JS`] with its one remote URL removed, computed once.
static REDOC_JS_LOCAL: LazyLock<Bytes> = LazyLock::new(|| {
    let js = std::str::from_utf8(REDOC_JS).expect("the ReDoc bundle is UTF-8");
    Bytes::from(js.replace(REDOC_REMOTE_LOGO, "data:,"))
});

async fn redoc_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/javascript; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400")),
        ],
        REDOC_JS_LOCAL.clone(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vendored_bundle_keeps_its_header_and_loses_its_remote_logo() {
        assert!(REDOC_JS.starts_with(b"/*! For license information please see redoc.standalone.js.LICENSE.txt */"));
        let js = std::str::from_utf8(REDOC_JS).unwrap();
        assert_eq!(js.matches(REDOC_REMOTE_LOGO).count(), 1, "the bundle changed: recheck its remote assets");
        assert!(!REDOC_JS_LOCAL.windows(b"cdn.redoc.ly".len()).any(|w| w == b"cdn.redoc.ly"));
        assert!(REDOC_JS_LOCAL.starts_with(b"/*! For license information"));
    }

    #[test]
    fn the_document_carries_the_configured_max_k() {
        let config = ServerConfig { max_k: 37, max_batch: 12, ..ServerConfig::default() };
        let doc = serde_json::to_value(openapi(&config, 16)).unwrap();
        let schemas = &doc["components"]["schemas"];
        assert_eq!(schemas["SearchRequest"]["properties"]["k"]["maximum"], 37);
        assert_eq!(schemas["SearchBatchRequest"]["properties"]["k"]["maximum"], 37);
        assert_eq!(schemas["SearchBatchRequest"]["properties"]["query_vectors"]["maxItems"], 12);
        assert_eq!(doc["paths"]["/search"]["post"]["requestBody"]["required"], true);
        assert_eq!(doc["paths"]["/search/batch"]["post"]["requestBody"]["required"], true);
    }

    #[test]
    fn request_bodies_forbid_unknown_fields_and_have_whole_examples() {
        let config = ServerConfig { max_k: 5, ..ServerConfig::default() };
        let doc = serde_json::to_value(openapi(&config, 7)).unwrap();
        for schema in ["SearchRequest", "SearchBatchRequest"] {
            assert_eq!(doc["components"]["schemas"][schema]["additionalProperties"], false, "{schema}");
        }
        let example =
            |path: &str| doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["example"].clone();
        let search = example("/search");
        assert_eq!(search["k"], 5, "at most max_k");
        assert_eq!(search["query_vector"].as_array().unwrap().len(), 7);
        assert_eq!(search.as_object().unwrap().len(), 2, "only query_vector and k: {search}");
        let batch = example("/search/batch");
        assert_eq!(batch["k"], 3);
        assert!(batch["query_vectors"].as_array().unwrap().iter().all(|q| q.as_array().unwrap().len() == 7));
        assert_eq!(batch.as_object().unwrap().len(), 2, "only query_vectors and k: {batch}");
    }
}
