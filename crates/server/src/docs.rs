//! API documentation: the OpenAPI document generated from the handlers and
//! models (`/openapi.json`), Swagger UI (`/docs`) and ReDoc (`/redoc`). Both
//! UIs are served from assets compiled into the binary, so the pages make no
//! request to any other host: Swagger UI from `utoipa-swagger-ui`'s vendored
//! dist, ReDoc from the standalone bundle in `assets/` (redoc 2.5.4, MIT).

use crate::auth::{self, Keys, Need};
use crate::error::ApiError;
use crate::ratelimit::RateLimits;
use crate::{collections, jobs, routes, snapshots};
use crate::state::{AppState, ServerConfig};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, Method, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use std::sync::{Arc, LazyLock};
use utoipa::OpenApi;
use utoipa::openapi::schema::{AdditionalProperties, Array, ArrayItems, Object, Schema, SchemaType, Type};
use utoipa::openapi::{RefOr, Required};
use vectorwise_index::{Index, Metric};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "VectorWise",
        description = "Nearest-neighbour search by the index's metric (l2, ip or cosine; see /stats), with calibrated recall profiles."
    ),
    paths(routes::health, routes::stats, routes::search, routes::search_batch, routes::metrics,
        collections::list, collections::create, collections::info, collections::remove,
        collections::upsert, collections::delete_points, collections::get_point, collections::get_points,
        collections::search, collections::search_batch, collections::create_index, collections::drop_index,
        snapshots::create, snapshots::list, snapshots::download, snapshots::remove,
        jobs::submit, jobs::list, jobs::info, jobs::remove, jobs::download),
    tags(
        (name = "health", description = "Liveness and readiness"),
        (name = "index", description = "The served index"),
        (name = "search", description = "k-nearest-neighbour queries"),
        (name = "monitoring", description = "Prometheus metrics"),
        (name = "collections", description = "Collections: create, list, inspect, delete"),
        (name = "points", description = "Upsert, delete and read points of a collection"),
        (name = "snapshots", description = "Point-in-time archives of a collection (restore: `vectorwise restore`)"),
        (name = "jobs", description = "Batch jobs: many queries searched in the background, answers downloadable"),
    )
)]
struct ApiDoc;

/// The OpenAPI document for `config` and the index served now (`None`
/// while it loads): a statement of exactly what the server accepts and
/// answers, checked by schemathesis in CI (`clients/conformance`).
///
/// Beyond what the derives say, the document carries what only the running
/// service knows: the configured bounds on `k` and on the batch size; with
/// an index, the vectors' length (its dimension) and, under `cosine`, that a
/// vector must have a non-zero value (the zero vector has no direction); and
/// request examples of the served dimension.
pub fn openapi(config: &ServerConfig, index: Option<&Index>) -> utoipa::openapi::OpenApi {
    openapi_for(config, index, &Keys::open())
}

/// [`openapi`] for a server checking `keys`: the operations that need a key
/// say so (`security`, 401 and 403), and those whose rate budget is
/// limited answer 429.
pub fn openapi_for(config: &ServerConfig, index: Option<&Index>, keys: &Keys) -> utoipa::openapi::OpenApi {
    let mut doc = document(config, index.map(|index| VectorRules { dim: index.dim(), metric: index.metric() }));
    security(&mut doc, keys, &config.rate_limits);
    cache_header(&mut doc, config.cache_bytes > 0);
    doc
}

/// The routes whose answers the hot-query cache keeps (`cache.rs`).
pub(crate) const CACHED_ROUTES: [&str; 2] = ["/search", "/collections/{name}/search"];

/// With the cache on, the cached routes' 200 says whether it was a hit.
fn cache_header(doc: &mut utoipa::openapi::OpenApi, on: bool) {
    if !on {
        return;
    }
    let header: utoipa::openapi::header::Header = serde_json::from_value(json!({
        "schema": { "type": "string", "enum": ["hit", "miss"] },
        "description": "`hit`: the answer was kept from an identical earlier search of the same state of the data \
            (no write since); `miss`: searched now (and kept)",
    }))
    .expect("a header object deserialises");
    let tier: utoipa::openapi::header::Header = serde_json::from_value(json!({
        "schema": { "type": "string", "enum": ["memory", "redis"] },
        "description": "On a hit, which tier kept the answer: `memory` (this process) or `redis` (the shared tier, \
            `--cache-url`: an answer computed by any replica on the same contents)",
    }))
    .expect("a header object deserialises");
    for path in CACHED_ROUTES {
        if let Some(RefOr::T(ok)) = doc
            .paths
            .paths
            .get_mut(path)
            .and_then(|p| p.post.as_mut())
            .and_then(|op| op.responses.responses.get_mut("200"))
        {
            ok.headers.insert(crate::cache::HEADER.to_owned(), header.clone());
            ok.headers.insert(crate::cache::TIER_HEADER.to_owned(), tier.clone());
        }
    }
}

/// Names of the two security schemes: `Authorization: Bearer <key>` and `api-key: <key>`.
const BEARER: &str = "bearer";
const API_KEY: &str = "api_key";

/// The security schemes (always, as a statement of how a key is sent), and
/// per operation what this configuration asks: a key (`security`, where
/// either scheme will do, and the 401 and 403 it may answer), and 429 where
/// its rate budget is limited. An open server's operations declare no
/// requirement: a document that asked for a key the server does not check
/// would be untrue (schemathesis's `ignored_auth`).
fn security(doc: &mut utoipa::openapi::OpenApi, keys: &Keys, limits: &RateLimits) {
    use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
    if let Some(components) = doc.components.as_mut() {
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key: `Authorization: Bearer <key>`"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            API_KEY,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description("api-key", "An API key: `api-key: <key>`"))),
        );
    }
    let response = |value: serde_json::Value| {
        serde_json::from_value::<utoipa::openapi::Response>(value).expect("a response object deserialises")
    };
    let error_body = json!({ "application/json": { "schema": { "$ref": "#/components/schemas/ErrorResponse" } } });
    for (path, item) in doc.paths.paths.iter_mut() {
        let operations = [
            (Method::GET, &mut item.get),
            (Method::PUT, &mut item.put),
            (Method::POST, &mut item.post),
            (Method::DELETE, &mut item.delete),
        ];
        for (method, operation) in operations {
            let (Some(operation), Some(rule)) = (operation.as_mut(), auth::rule_for(&method, path)) else { continue };
            let needs_key = match rule.need {
                Need::Open => false,
                Need::Metrics => keys.is_required() || keys.has_metrics_key(),
                Need::Role(_) => keys.is_required(),
            };
            let responses = &mut operation.responses.responses;
            if needs_key {
                let either: Vec<String> = Vec::new();
                operation.security = Some(vec![
                    SecurityRequirement::new(BEARER, either.clone()),
                    SecurityRequirement::new(API_KEY, either),
                ]);
                responses.insert(
                    "401".into(),
                    RefOr::T(response(json!({
                        "description": "No API key, or not one the server knows",
                        "headers": { "www-authenticate": { "schema": { "type": "string" }, "description": "`Bearer`" } },
                        "content": error_body.clone(),
                    }))),
                );
                responses.insert(
                    "403".into(),
                    RefOr::T(response(json!({
                        "description": "The key's role or collections do not allow this request",
                        "content": error_body.clone(),
                    }))),
                );
            }
            if rule.budget.is_some_and(|b| limits.get(b).is_some()) {
                responses.insert(
                    "429".into(),
                    RefOr::T(response(json!({
                        "description": "Over this caller's rate budget (its key's, or its address's without one)",
                        "headers": { "retry-after": { "schema": { "type": "integer", "minimum": 1 }, "description": "Seconds until the request would pass" } },
                        "content": error_body.clone(),
                    }))),
                );
            }
        }
    }
}

/// What a query vector must be for the served index.
#[derive(Clone, Copy, Debug)]
struct VectorRules {
    dim: usize,
    metric: Metric,
}

fn document(config: &ServerConfig, vectors: Option<VectorRules>) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for schema in ["SearchRequest", "SearchBatchRequest"] {
        if let Some(RefOr::T(Schema::Object(k))) = schema_property(&mut doc, schema, "k") {
            k.maximum = Some(config.max_k.into());
        }
        if let Some(components) = doc.components.as_mut()
            && let Some(RefOr::T(Schema::Object(request))) = components.schemas.get_mut(schema)
        {
            at_most_one_search_option(request);
        }
    }
    if let Some(RefOr::T(Schema::Array(query))) = schema_property(&mut doc, "SearchRequest", "query_vector") {
        vector_rules(query, vectors);
    }
    if let Some(RefOr::T(Schema::Array(queries))) = schema_property(&mut doc, "SearchBatchRequest", "query_vectors") {
        queries.max_items = Some(config.max_batch);
        if let ArrayItems::RefOrSchema(item) = &mut queries.items
            && let RefOr::T(Schema::Array(query)) = item.as_mut()
        {
            vector_rules(query, vectors);
        }
    }
    filter_schemas(&mut doc);
    binary_bodies(&mut doc, vectors);
    upsert_form(&mut doc);
    close_response_objects(&mut doc);
    // Whole examples, which Swagger UI's "Try it out" sends as they are: built
    // from the fields' own examples it would send profile, recall_target and
    // ef_search together, which is a 422. The vectors are the README's.
    let dim = vectors.map_or(DEMO_DIM, |v| v.dim);
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

/// The binary forms of the search bodies (`binary.rs`) beside the JSON one:
/// `application/octet-stream` and `application/x-npy`, with the other
/// fields in the query string. One `parameters` list serves every media type
/// of an operation, so the query fields (which a JSON body does not read)
/// are stated in the request body's description, not as parameters.
fn binary_bodies(doc: &mut utoipa::openapi::OpenApi, vectors: Option<VectorRules>) {
    use crate::binary::{NPY, OCTET_STREAM};
    let demo = "`k` (required), `profile`, `recall_target`, `ef_search`";
    let collection = "`k` (required), `with_payload`, `with_vector`, `profile`, `recall_target`, `ef_search`, \
        `filter` (the JSON filter, URL-encoded)";
    let routes = [
        ("/search", false, demo),
        ("/search/batch", true, demo),
        ("/collections/{name}/search", false, collection),
        ("/collections/{name}/search/batch", true, collection),
    ];
    let dim = vectors.map_or_else(|| "the dimension".to_owned(), |v| v.dim.to_string());
    for (path, batch, fields) in routes {
        let Some(body) =
            doc.paths.paths.get_mut(path).and_then(|p| p.post.as_mut()).and_then(|op| op.request_body.as_mut())
        else {
            continue;
        };
        let (raw, npy) = if batch {
            (
                format!("Little-endian float32 values, row-major, nothing else: whole queries of {dim} values (4 × {dim} bytes each)"),
                "A .npy array of dtype `<f4` in C order: 2-D, one query a row (a 1-D array is one query)".to_owned(),
            )
        } else {
            (
                format!("Little-endian float32 values, nothing else: one query, exactly 4 × {dim} bytes"),
                "A .npy array of dtype `<f4` in C order: 1-D (or 2-D of one row)".to_owned(),
            )
        };
        for (media_type, description) in [(OCTET_STREAM, raw), (NPY, npy)] {
            let content = json!({ "schema": { "type": "string", "format": "binary", "description": description } });
            body.content.insert(media_type.to_owned(), serde_json::from_value(content).expect("a content object deserialises"));
        }
        body.description = Some(format!(
            "A JSON body, or the vectors in binary (`{OCTET_STREAM}` or `{NPY}`) with the other fields in the \
             query string: {fields}, and no other (422 `extra_forbidden` at `[\"query\", name]`; their other \
             problems are located there too). A binary body that does not fit the dimension is a 400 naming \
             the body; an invalid .npy (another dtype or order, a shape not 1-D or 2-D, data not of the \
             shape's size) or a non-finite value is a 422 at `[\"body\", ...]`. The answer is JSON either way."
        ));
    }
}

/// The upsert's `multipart/form-data` body (`multipart.rs`) beside its JSON one.
fn upsert_form(doc: &mut utoipa::openapi::OpenApi) {
    use crate::binary::{NPY, OCTET_STREAM};
    let Some(body) = doc
        .paths
        .paths
        .get_mut("/collections/{name}/points")
        .and_then(|p| p.put.as_mut())
        .and_then(|op| op.request_body.as_mut())
    else {
        return;
    };
    let content = json!({
        "schema": {
            "type": "object",
            "required": ["ids", "vectors"],
            "additionalProperties": false,
            "properties": {
                "ids": { "type": "string", "description": "A JSON array of ids (integers 0 to 2^63 - 1, or UUID strings), as the JSON body's `id`s" },
                "vectors": { "type": "string", "format": "binary", "description": format!(
                    "One row per id, of the collection's dimension: `{NPY}` (float32, C order, 2-D; 1-D is one point) or \
                     `{OCTET_STREAM}` (little-endian float32, row-major, nothing else)") },
                "payloads": { "type": "string", "description": "A JSON array with one object or null per id (optional)" },
            },
        },
        "encoding": {
            "ids": { "contentType": "application/json", "headers": {} },
            "vectors": { "contentType": format!("{NPY}, {OCTET_STREAM}"), "headers": {} },
            "payloads": { "contentType": "application/json", "headers": {} },
        },
    });
    body.content.insert(crate::multipart::FORM_DATA.to_owned(), serde_json::from_value(content).expect("a content object deserialises"));
    body.description = Some(
        "A JSON body, or `multipart/form-data` with the vectors in binary: parts `ids`, `vectors` and (optional) \
         `payloads`, no other, each once. A form's problems are located at its part: `[\"body\", \"ids\", 3]`, \
         `[\"body\", \"vectors\", 2, 7]`, `[\"body\", \"payloads\", 0]`."
            .to_owned(),
    );
}

/// Values a query vector may hold: those that stay finite as f32, the
/// engine's type. The server converts each number to the nearest f32; from
/// `f32::MAX` plus half its last step (2^128 - 2^103, exactly an f64) on,
/// that is infinity (a `finite_number` 422).
const F32_OVERFLOW: f64 = 340_282_356_779_733_661_637_539_395_458_142_568_448.0;

/// Largest magnitude that is 0 as an f32 (2^-150, half the smallest
/// subnormal, rounds to even: 0). Under `cosine` a vector of such values is
/// the zero vector.
const F32_ROUNDS_TO_ZERO: f64 = 7.006_492_321_624_085e-46;

/// The rules on one query vector (`query_vector`, an item of
/// `query_vectors`): finite f32 values; with an index, exactly its dimension
/// of them and, under `cosine`, at least one that is not 0 as an f32. (Under
/// `l2` and `ip` a vector whose squared norm reaches 1e34 is a 422 too,
/// which no schema keyword can say; the description does.)
fn vector_rules(vector: &mut Array, rules: Option<VectorRules>) {
    if let ArrayItems::RefOrSchema(item) = &mut vector.items
        && let RefOr::T(Schema::Object(number)) = item.as_mut()
    {
        number.exclusive_minimum = Some((-F32_OVERFLOW).into());
        number.exclusive_maximum = Some(F32_OVERFLOW.into());
    }
    let Some(rules) = rules else { return };
    vector.min_items = Some(rules.dim);
    vector.max_items = Some(rules.dim);
    if rules.metric == Metric::Cosine {
        // utoipa's `Array` has no `contains`; its extensions are written as
        // keys of the schema object, which is all `contains` needs.
        let nonzero = json!({ "anyOf": [
            { "exclusiveMinimum": F32_ROUNDS_TO_ZERO },
            { "exclusiveMaximum": -F32_ROUNDS_TO_ZERO },
        ]});
        vector.extensions.get_or_insert_with(Default::default).insert("contains".to_owned(), nonzero);
    }
}

/// "At most one of `profile`, `recall_target` and `ef_search`" (`null` is
/// absent), which the server answers with a 422 otherwise: the body must
/// match one of three schemas, each leaving two of them null or absent.
/// (`properties` only constrains the keys present; a body naming none
/// matches all three.) utoipa's `Object` has no `anyOf` beside its
/// properties; extensions are written as keys of the schema object.
fn at_most_one_search_option(request: &mut Object) {
    const OPTIONS: [&str; 3] = ["profile", "recall_target", "ef_search"];
    let branches: Vec<serde_json::Value> = OPTIONS
        .iter()
        .map(|kept| {
            let others: serde_json::Map<String, serde_json::Value> = OPTIONS
                .iter()
                .filter(|o| *o != kept)
                .map(|o| ((*o).to_owned(), json!({ "type": "null" })))
                .collect();
            json!({ "properties": others })
        })
        .collect();
    request.extensions.get_or_insert_with(Default::default).insert("anyOf".to_owned(), json!(branches));
}

/// The `Filter` and `Condition` components, and the `filter` property of the
/// collection search requests pointing at `Filter` (the derives say only
/// "an object": the shape is recursive and a `oneOf`).
fn filter_schemas(doc: &mut utoipa::openapi::OpenApi) {
    let Some(components) = doc.components.as_mut() else { return };
    for (name, schema) in crate::filter::schemas() {
        components.schemas.insert(name, schema);
    }
    for request in ["CollectionSearchRequest", "CollectionSearchBatchRequest"] {
        if let Some(property) = schema_property(doc, request, "filter") {
            *property = serde_json::from_value(json!({ "oneOf": [{ "type": "null" }, { "$ref": "#/components/schemas/Filter" }] }))
                .expect("a valid schema");
        }
    }
    // Point ids (the derives say only "an object"): `PointId`, from `crate::filter::schemas`.
    let id = json!({ "$ref": "#/components/schemas/PointId" });
    for (schema, property, value) in [
        ("PointIn", "id", id.clone()),
        ("PointOut", "id", id.clone()),
        ("HitOut", "id", id.clone()),
        ("DeleteRequest", "ids", json!({ "type": "array", "items": id })),
        ("GetRequest", "ids", json!({ "type": "array", "items": id })),
    ] {
        if let Some(p) = schema_property(doc, schema, property) {
            *p = serde_json::from_value(value).expect("a valid schema");
        }
    }
}

/// Response bodies hold the fields their types declare and no others: every
/// component object without an `additionalProperties` rule gets `false`
/// (request bodies have theirs from `deny_unknown_fields`).
fn close_response_objects(doc: &mut utoipa::openapi::OpenApi) {
    let Some(components) = doc.components.as_mut() else { return };
    for schema in components.schemas.values_mut() {
        if let RefOr::T(Schema::Object(object)) = schema
            && object.schema_type == SchemaType::Type(Type::Object)
            && object.additional_properties.is_none()
        {
            object.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
        }
    }
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
    let index = state.index().ok();
    let doc = openapi_for(state.config(), index.as_deref(), &state.keys());
    let spec = serde_json::to_vec(&doc).expect("an OpenAPI document serialises");
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
        let doc = serde_json::to_value(openapi(&config, None)).unwrap();
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
        let doc = serde_json::to_value(document(&config, Some(VectorRules { dim: 7, metric: Metric::L2 }))).unwrap();
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

    fn doc_for(dim: usize, metric: Metric) -> serde_json::Value {
        serde_json::to_value(document(&ServerConfig::default(), Some(VectorRules { dim, metric }))).unwrap()
    }

    /// `query_vector`'s schema and the schema of one of `query_vectors`.
    fn vector_schemas(doc: &serde_json::Value) -> [serde_json::Value; 2] {
        let schemas = &doc["components"]["schemas"];
        [
            schemas["SearchRequest"]["properties"]["query_vector"].clone(),
            schemas["SearchBatchRequest"]["properties"]["query_vectors"]["items"].clone(),
        ]
    }

    #[test]
    fn vectors_have_the_served_dimension_and_under_cosine_a_nonzero_value() {
        for v in vector_schemas(&doc_for(16, Metric::Cosine)) {
            assert_eq!((v["minItems"].as_u64(), v["maxItems"].as_u64()), (Some(16), Some(16)), "{v}");
            let nonzero = &v["contains"]["anyOf"];
            assert_eq!(nonzero[0]["exclusiveMinimum"].as_f64(), Some(F32_ROUNDS_TO_ZERO), "{v}");
            assert_eq!(nonzero[1]["exclusiveMaximum"].as_f64(), Some(-F32_ROUNDS_TO_ZERO), "{v}");
            assert_eq!(v["items"]["exclusiveMaximum"].as_f64(), Some(F32_OVERFLOW), "{v}");
            assert_eq!(v["items"]["exclusiveMinimum"].as_f64(), Some(-F32_OVERFLOW), "{v}");
        }
        for metric in [Metric::L2, Metric::Ip] {
            for v in vector_schemas(&doc_for(5, metric)) {
                assert_eq!((v["minItems"].as_u64(), v["maxItems"].as_u64()), (Some(5), Some(5)), "{v}");
                assert!(v.get("contains").is_none(), "{metric:?}: the zero vector is a query: {v}");
            }
        }
        // No index: no length to state; the values' range holds regardless.
        let doc = serde_json::to_value(openapi(&ServerConfig::default(), None)).unwrap();
        for v in vector_schemas(&doc) {
            assert!(v.get("minItems").is_none() && v.get("maxItems").is_none() && v.get("contains").is_none(), "{v}");
            assert_eq!(v["items"]["exclusiveMaximum"].as_f64(), Some(F32_OVERFLOW), "{v}");
        }
    }

    /// The bounds are where the server's f64 -> f32 conversion flips, and the
    /// request validation agrees with them at both edges.
    #[test]
    fn value_bounds_are_where_f32_conversion_flips() {
        assert_eq!(F32_OVERFLOW, 2f64.powi(128) - 2f64.powi(103));
        assert!((F32_OVERFLOW as f32).is_infinite() && (F32_OVERFLOW.next_down() as f32) == f32::MAX);
        assert_eq!(F32_ROUNDS_TO_ZERO, 2f64.powi(-150));
        assert_eq!(F32_ROUNDS_TO_ZERO as f32, 0.0);
        assert!(F32_ROUNDS_TO_ZERO.next_up() as f32 > 0.0);
        use crate::models::SearchRequest;
        use crate::validate::FromBody;
        let config = ServerConfig::default();
        let body = |x: f64| json!({ "query_vector": [x, -x], "k": 1 });
        assert!(SearchRequest::from_body(&body(F32_OVERFLOW.next_down()), &config).is_ok());
        let errors = SearchRequest::from_body(&body(F32_OVERFLOW), &config).unwrap_err();
        assert_eq!(errors.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), ["finite_number", "finite_number"]);
    }

    /// The document's "at most one of profile, recall_target, ef_search"
    /// (an `anyOf` of branches that each require two of them null or absent)
    /// accepts exactly the bodies the request validation accepts.
    #[test]
    fn the_search_option_rule_matches_the_validation() {
        use crate::models::{SearchBatchRequest, SearchRequest};
        use crate::validate::FromBody;
        let config = ServerConfig::default();
        let doc = doc_for(2, Metric::L2);
        let given = [("profile", json!("balanced")), ("recall_target", json!(0.9)), ("ef_search", json!(64))];
        for (schema, base) in [
            ("SearchRequest", json!({ "query_vector": [1.0, 0.0], "k": 1 })),
            ("SearchBatchRequest", json!({ "query_vectors": [[1.0, 0.0]], "k": 1 })),
        ] {
            let branches = doc["components"]["schemas"][schema]["anyOf"].as_array().unwrap().clone();
            assert_eq!(branches.len(), 3, "{schema}");
            // Each option absent, null or given: 27 bodies.
            for n in 0..27 {
                let mut body = base.clone();
                let mut code = n;
                for (name, value) in &given {
                    match code % 3 {
                        0 => {}
                        1 => body[*name] = serde_json::Value::Null,
                        _ => body[*name] = value.clone(),
                    }
                    code /= 3;
                }
                // A branch matches when each property it names is absent or null.
                let matches = |branch: &serde_json::Value| {
                    branch["properties"].as_object().unwrap().iter().all(|(name, rule)| {
                        assert_eq!(rule, &json!({ "type": "null" }));
                        body.get(name).is_none_or(serde_json::Value::is_null)
                    })
                };
                let documented = branches.iter().any(matches);
                let accepted = if schema == "SearchRequest" {
                    SearchRequest::from_body(&body, &config).is_ok()
                } else {
                    SearchBatchRequest::from_body(&body, &config).is_ok()
                };
                assert_eq!(documented, accepted, "{schema}: {body}");
            }
        }
    }

    /// Open: the schemes are described and no operation asks for them.
    /// With keys: every operation but `/` asks for either scheme and answers
    /// 401 and 403; with rate limits, the routes of a limited budget 429.
    #[test]
    fn security_follows_the_configuration() {
        let operations = |doc: &serde_json::Value| -> Vec<(String, String, serde_json::Value)> {
            let mut out = Vec::new();
            for (path, item) in doc["paths"].as_object().unwrap() {
                for (method, op) in item.as_object().unwrap() {
                    out.push((method.clone(), path.clone(), op.clone()));
                }
            }
            out
        };
        let open = serde_json::to_value(openapi(&ServerConfig::default(), None)).unwrap();
        let schemes = &open["components"]["securitySchemes"];
        assert_eq!(schemes["bearer"]["scheme"], "bearer");
        assert_eq!((schemes["api_key"]["in"].as_str(), schemes["api_key"]["name"].as_str()), (Some("header"), Some("api-key")));
        for (method, path, op) in operations(&open) {
            assert!(op.get("security").is_none(), "{method} {path}");
            for status in ["401", "403", "429"] {
                assert!(op["responses"].get(status).is_none(), "{method} {path} {status}");
            }
        }

        let key = crate::auth::ApiKey { name: "k".into(), role: crate::auth::Role::Read, sha256: [0; 32], collections: None };
        let keys = Keys::required(vec![key]).unwrap();
        let config = ServerConfig {
            rate_limits: RateLimits { search: Some(5.0), write: None, batch: Some(100.0) },
            ..ServerConfig::default()
        };
        let keyed = serde_json::to_value(openapi_for(&config, None, &keys)).unwrap();
        let mut limited = Vec::new();
        for (method, path, op) in operations(&keyed) {
            if path == "/" {
                assert!(op.get("security").is_none() && op["responses"].get("401").is_none());
                continue;
            }
            assert_eq!(op["security"], json!([{ "bearer": [] }, { "api_key": [] }]), "{method} {path}");
            assert_eq!(op["responses"]["401"]["headers"]["www-authenticate"]["schema"]["type"], "string", "{method} {path}");
            assert!(op["responses"].get("403").is_some(), "{method} {path}");
            if op["responses"].get("429").is_some() {
                assert_eq!(op["responses"]["429"]["headers"]["retry-after"]["schema"]["minimum"], 1);
                limited.push(format!("{method} {path}"));
            }
        }
        limited.sort();
        assert_eq!(
            limited,
            [
                "get /collections/{name}/points/{id}",
                "post /collections/{name}/points/get",
                "post /collections/{name}/search",
                "post /collections/{name}/search/batch",
                "post /search",
                "post /search/batch",
            ],
            "searches and batches limited, writes not"
        );
        // Only a metrics key: /metrics alone asks for one.
        let metrics_only = serde_json::to_value(openapi_for(&ServerConfig::default(), None, &Keys::open().with_metrics_key("m"))).unwrap();
        for (method, path, op) in operations(&metrics_only) {
            assert_eq!(op.get("security").is_some(), path == "/metrics", "{method} {path}");
        }
    }

    #[test]
    fn response_bodies_are_closed_and_errors_echo_any_value() {
        let doc = doc_for(4, Metric::Cosine);
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let mut objects = 0;
        for (name, schema) in schemas {
            if schema["type"] == "object" {
                assert_eq!(schema["additionalProperties"], false, "{name}");
                objects += 1;
            }
        }
        assert!(objects >= 10, "{objects}");
        let error = &schemas["ValidationError"]["properties"];
        assert!(error["input"].get("type").is_none(), "input is any JSON value: {}", error["input"]);
        assert_eq!(error["ctx"]["type"], "object");
        assert_eq!(schemas["ValidationError"]["required"], json!(["loc", "msg", "type"]));
        // Fields always written, null or not, are required.
        assert!(schemas["StatsResponse"]["required"].as_array().unwrap().contains(&json!("calibration")));
        assert!(schemas["MonitorEntry"]["required"].as_array().unwrap().contains(&json!("promised")));
        for name in ["ProfileStats", "CalibrationPoint"] {
            let required = schemas[name]["required"].as_array().unwrap();
            assert!(required.contains(&json!("latency_p50_ms")) && required.contains(&json!("latency_p95_ms")), "{name}");
        }
    }
}
