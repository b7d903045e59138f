//! The collections API in process (`app(state)` with a store on real files,
//! driven with `oneshot`): every route, every refusal with its status and
//! the field it names.

mod common;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::sync::Arc;
use tower::ServiceExt;
use vectorwise_server::{AppState, ServerConfig, app};
use vectorwise_store::{Store, SyncMode};

struct Api {
    app: Router,
    _dir: tempfile::TempDir,
}

async fn call(api: &Api, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    common::call(&api.app, method, path, body.map(|b| b.to_string())).await
}

fn api() -> Api {
    let dir = tempfile::tempdir().unwrap();
    let state = AppState::new(ServerConfig::default());
    state.set_store(Arc::new(Store::open(dir.path(), SyncMode::Always).unwrap()));
    Api { app: app(state), _dir: dir }
}

fn locs(body: &Value) -> Vec<(Value, String)> {
    body["detail"].as_array().unwrap().iter().map(|e| (e["loc"].clone(), e["type"].as_str().unwrap().to_string())).collect()
}

#[tokio::test]
async fn collections_are_created_listed_inspected_and_deleted() {
    let api = api();
    let (s, body) = call(&api, Method::PUT, "/collections/a", Some(json!({"dimension": 3}))).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!((body["metric"].as_str(), body["points"].as_u64()), (Some("cosine"), Some(0)), "cosine by default");
    assert_eq!(call(&api, Method::PUT, "/collections/a", Some(json!({"dimension": 3, "metric": "cosine"}))).await.0, StatusCode::OK);
    let (s, body) = call(&api, Method::PUT, "/collections/a", Some(json!({"dimension": 3, "metric": "l2"}))).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(body["detail"].as_str().unwrap().contains("metric cosine, asked l2"), "{body}");
    for (body, loc, kind) in [
        (json!({"dimension": 0}), json!(["body", "dimension"]), "greater_than_equal"),
        (json!({"dimension": 3, "metric": "dot"}), json!(["body", "metric"]), "enum"),
        (json!({"dimension": 3, "replicas": 2}), json!(["body", "replicas"]), "extra_forbidden"),
        (json!({}), json!(["body", "dimension"]), "missing"),
    ] {
        let (s, reply) = call(&api, Method::PUT, "/collections/b", Some(body.clone())).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {reply}");
        assert_eq!(locs(&reply), vec![(loc, kind.to_string())], "{body}");
    }
    let (s, body) = call(&api, Method::PUT, "/collections/no%20spaces", Some(json!({"dimension": 3}))).await;
    assert_eq!((s, locs(&body)), (StatusCode::UNPROCESSABLE_ENTITY, vec![(json!(["path", "name"]), "value_error".into())]));
    let (_, body) = call(&api, Method::GET, "/collections", None).await;
    assert_eq!(body, json!({"collections": [{"name": "a", "points": 0}]}));
    assert_eq!(call(&api, Method::GET, "/collections/zzz", None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(call(&api, Method::DELETE, "/collections/a", None).await.0, StatusCode::OK);
    assert_eq!(call(&api, Method::DELETE, "/collections/a", None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(call(&api, Method::GET, "/collections/a/points/1", None).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn points_are_written_read_searched_and_refused_by_field() {
    let api = api();
    call(&api, Method::PUT, "/collections/c", Some(json!({"dimension": 2, "metric": "l2", "max_payload_bytes": 64}))).await;
    let points = json!({"points": [
        {"id": 1, "vector": [0.0, 0.0], "payload": {"name": "origin"}},
        {"id": 2, "vector": [1.0, 0.0]},
        {"id": 3, "vector": [0.0, 2.0], "payload": null},
    ]});
    let (s, body) = call(&api, Method::PUT, "/collections/c/points", Some(points)).await;
    assert_eq!((s, body), (StatusCode::OK, json!({"upserted": 3})));
    let (s, body) = call(&api, Method::POST, "/collections/c/search", Some(json!({"vector": [0.75, 0.25], "k": 2, "with_payload": true, "with_vector": true}))).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["hits"][0]["id"], 2);
    assert_eq!(body["hits"][1], json!({"id": 1, "distance": 0.625, "payload": {"name": "origin"}, "vector": [0.0, 0.0]}));
    let (_, body) = call(&api, Method::POST, "/collections/c/search", Some(json!({"vector": [0.75, 0.25], "k": 1}))).await;
    assert_eq!(body["hits"][0], json!({"id": 2, "distance": 0.125}), "no payload or vector unless asked");
    let (_, body) = call(&api, Method::GET, "/collections/c/points/1", None).await;
    assert_eq!(body, json!({"id": 1, "vector": [0.0, 0.0], "payload": {"name": "origin"}}));
    assert_eq!(call(&api, Method::GET, "/collections/c/points/9", None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(call(&api, Method::GET, "/collections/c/points/-1", None).await.0, StatusCode::NOT_FOUND);
    let (_, body) = call(&api, Method::POST, "/collections/c/points/get", Some(json!({"ids": [3, 9, 1], "with_vector": false}))).await;
    assert_eq!(body, json!({"points": [{"id": 3, "payload": null}, {"id": 1, "payload": {"name": "origin"}}]}));

    for (body, loc, kind) in [
        (json!({"points": [{"id": 4, "vector": [1.0, 1.0]}, {"id": 5, "vector": [1.0]}]}), json!(["body", "points", 1, "vector"]), "value_error"),
        (json!({"points": [{"id": -4, "vector": [1.0, 1.0]}]}), json!(["body", "points", 0, "id"]), "greater_than_equal"),
        (json!({"points": [{"id": 4.0, "vector": [1.0, 1.0]}]}), json!(["body", "points", 0, "id"]), "int_type"),
        (json!({"points": [{"id": 4, "vector": [1.0, "x"]}]}), json!(["body", "points", 0, "vector", 1]), "float_parsing"),
        (json!({"points": [{"id": 4, "vector": [1.0, 1.0], "payload": [1]}]}), json!(["body", "points", 0, "payload"]), "dict_type"),
        (json!({"points": [{"id": 4, "vector": [1.0, 1.0], "payload": {"s": "x".repeat(100)}}]}), json!(["body", "points", 0, "payload"]), "too_long"),
        (json!({"points": [{"id": 4, "vector": [1.0, 1.0], "colour": 1}]}), json!(["body", "points", 0, "colour"]), "extra_forbidden"),
        (json!({"points": [{"vector": [1.0, 1.0]}]}), json!(["body", "points", 0, "id"]), "missing"),
        (json!({"points": 3}), json!(["body", "points"]), "list_type"),
    ] {
        let (s, reply) = call(&api, Method::PUT, "/collections/c/points", Some(body.clone())).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {reply}");
        assert_eq!(locs(&reply), vec![(loc, kind.to_string())], "{body}");
    }
    let (_, body) = call(&api, Method::GET, "/collections/c", None).await;
    assert_eq!(body["points"], 3, "refused batches wrote nothing");
    // The collection's series.
    let req = Request::get("/metrics").body(Body::empty()).unwrap();
    let text = String::from_utf8(api.app.clone().oneshot(req).await.unwrap().into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    for line in [
        r#"vectorwise_collection_points{collection="c"} 3"#,
        r#"vectorwise_collection_segments{collection="c",kind="mutable"} 1"#,
        r#"vectorwise_collection_writes_total{collection="c"} 1"#,
        r#"vectorwise_collection_optimiser_runs_total{collection="c",kind="seal"} 0"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
    }

    let (s, body) = call(&api, Method::POST, "/collections/c/search", Some(json!({"vector": [1.0], "k": 1}))).await;
    assert_eq!((s, body["detail"].as_str()), (StatusCode::BAD_REQUEST, Some("vector has 1 dimensions, expected 2")));
    let (s, body) = call(&api, Method::POST, "/collections/c/search", Some(json!({"vector": [1.0, 1.0], "k": 0}))).await;
    assert_eq!((s, locs(&body)), (StatusCode::UNPROCESSABLE_ENTITY, vec![(json!(["body", "k"]), "greater_than".into())]));
    let (s, body) = call(&api, Method::POST, "/collections/c/search/batch", Some(json!({"vectors": [[1.0, 1.0], [1.0]], "k": 1}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let (s, body) = call(&api, Method::POST, "/collections/c/points/delete", Some(json!({"ids": [1, 1, 77]}))).await;
    assert_eq!((s, body), (StatusCode::OK, json!({"deleted": 1})));
    let (s, body) = call(&api, Method::POST, "/collections/c/points/delete", Some(json!({"ids": [1.0]}))).await;
    assert_eq!((s, locs(&body)), (StatusCode::UNPROCESSABLE_ENTITY, vec![(json!(["body", "ids", 0]), "int_type".into())]), "ids are strict, as has_id is");
    let (s, body) = call(&api, Method::POST, "/collections/c/points/delete", Some(json!({"ids": [1], "filter": {}}))).await;
    assert_eq!((s, locs(&body)), (StatusCode::UNPROCESSABLE_ENTITY, vec![(json!(["body", "filter"]), "extra_forbidden".into())]));
    let (_, body) = call(&api, Method::POST, "/collections/c/search/batch", Some(json!({"vectors": [[0.0, 0.0], [0.0, 2.0]], "k": 5}))).await;
    let ids: Vec<Vec<u64>> = body["results"].as_array().unwrap().iter().map(|r| r["hits"].as_array().unwrap().iter().map(|h| h["id"].as_u64().unwrap()).collect()).collect();
    assert_eq!(ids, vec![vec![2, 3], vec![3, 2]], "deleted points are never returned; k capped by the live points");
}

#[tokio::test]
async fn uuid_ids_are_written_read_searched_filtered_and_refused_by_field() {
    let api = api();
    call(&api, Method::PUT, "/collections/u", Some(json!({"dimension": 2, "metric": "l2"}))).await;
    let a = "550e8400-e29b-41d4-a716-446655440000";
    let b = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
    let points = json!({"points": [
        {"id": a, "vector": [0.0, 0.0], "payload": {"name": "a"}},
        // The simple (32 hex digits) and upper-case forms name the same UUID.
        {"id": "6BA7B8109DAD11D180B400C04FD430C8", "vector": [1.0, 0.0]},
        {"id": 7, "vector": [0.0, 2.0]},
    ]});
    let (s, body) = call(&api, Method::PUT, "/collections/u/points", Some(points)).await;
    assert_eq!((s, body), (StatusCode::OK, json!({"upserted": 3})));
    // Answers name UUIDs hyphenated, lower case.
    let (s, body) = call(&api, Method::POST, "/collections/u/search", Some(json!({"vector": [0.9, 0.0], "k": 3}))).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let ids: Vec<Value> = body["hits"].as_array().unwrap().iter().map(|h| h["id"].clone()).collect();
    assert_eq!(ids, vec![json!(b), json!(a), json!(7)]);
    let (_, body) = call(&api, Method::GET, &format!("/collections/u/points/{a}"), None).await;
    assert_eq!(body, json!({"id": a, "vector": [0.0, 0.0], "payload": {"name": "a"}}));
    for uuid_7 in ["00000000-0000-0000-0000-000000000007", "00000000000000000000000000000007"] {
        let path = format!("/collections/u/points/{uuid_7}");
        assert_eq!(call(&api, Method::GET, &path, None).await.0, StatusCode::NOT_FOUND, "a UUID is never an integer id: {uuid_7}");
    }
    let (_, body) = call(&api, Method::GET, "/collections/u/points/6ba7b8109dad11d180b400c04fd430c8", None).await;
    assert_eq!(body["id"], b, "the simple form by path");
    let (_, body) = call(&api, Method::POST, "/collections/u/points/get", Some(json!({"ids": [7, b, "00000000-0000-0000-0000-000000000000"], "with_vector": false}))).await;
    assert_eq!(body, json!({"points": [{"id": 7, "payload": null}, {"id": b, "payload": null}]}));
    // An upsert by an existing UUID replaces the point.
    let (_, body) = call(&api, Method::PUT, "/collections/u/points", Some(json!({"points": [{"id": a, "vector": [5.0, 5.0]}]}))).await;
    assert_eq!(body, json!({"upserted": 1}));
    let (_, body) = call(&api, Method::GET, "/collections/u", None).await;
    assert_eq!(body["points"], 3);
    // has_id takes UUIDs and integers together.
    let filtered = json!({"vector": [0.0, 0.0], "k": 3, "filter": {"must": [{"has_id": [a, 7, "00000000-0000-0000-0000-000000000001"]}]}});
    let (s, body) = call(&api, Method::POST, "/collections/u/search", Some(filtered)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let ids: Vec<Value> = body["hits"].as_array().unwrap().iter().map(|h| h["id"].clone()).collect();
    assert_eq!(ids, vec![json!(7), json!(a)]);
    let (_, body) = call(&api, Method::POST, "/collections/u/points/delete", Some(json!({"ids": [a, a, "00000000-0000-0000-0000-000000000001"]}))).await;
    assert_eq!(body, json!({"deleted": 1}));
    assert_eq!(call(&api, Method::GET, &format!("/collections/u/points/{a}"), None).await.0, StatusCode::NOT_FOUND);
    for (path, body, loc) in [
        ("/collections/u/points", json!({"points": [{"id": "not-a-uuid", "vector": [1.0, 1.0]}]}), json!(["body", "points", 0, "id"])),
        ("/collections/u/points", json!({"points": [{"id": "550e8400-e29b-41d4-a716-44665544000", "vector": [1.0, 1.0]}]}), json!(["body", "points", 0, "id"])),
        ("/collections/u/points/delete", json!({"ids": [1, "x"]}), json!(["body", "ids", 1])),
        ("/collections/u/points/get", json!({"ids": [{"uuid": a}]}), json!(["body", "ids", 0])),
        ("/collections/u/search", json!({"vector": [1.0, 1.0], "k": 1, "filter": {"must": [{"has_id": ["x"]}]}}), json!(["body", "filter", "must", 0, "has_id", 0])),
    ] {
        let method = if path.ends_with("/points") { Method::PUT } else { Method::POST };
        let (s, reply) = call(&api, method, path, Some(body.clone())).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {reply}");
        assert_eq!(reply["detail"][0]["loc"], loc, "{body}: {reply}");
    }
}

#[tokio::test]
async fn cosine_collections_refuse_zero_vectors_at_the_field() {
    let api = api();
    call(&api, Method::PUT, "/collections/z", Some(json!({"dimension": 2}))).await;
    let (s, body) = call(&api, Method::PUT, "/collections/z/points", Some(json!({"points": [{"id": 1, "vector": [0.0, 0.0]}]}))).await;
    assert_eq!((s, locs(&body)), (StatusCode::UNPROCESSABLE_ENTITY, vec![(json!(["body", "points", 0, "vector"]), "value_error".into())]));
    call(&api, Method::PUT, "/collections/z/points", Some(json!({"points": [{"id": 1, "vector": [3.0, 4.0]}]}))).await;
    let (s, body) = call(&api, Method::POST, "/collections/z/search", Some(json!({"vector": [0.0, 0.0], "k": 1}))).await;
    assert_eq!((s, locs(&body)), (StatusCode::UNPROCESSABLE_ENTITY, vec![(json!(["body", "vector"]), "value_error".into())]));
    let (_, body) = call(&api, Method::GET, "/collections/z/points/1", None).await;
    assert_eq!(body["vector"], json!([0.6, 0.8]), "cosine collections keep unit vectors");
}

/// Under `l2` and `ip`, points so small that f32 distances between them
/// underflow (squared norm under 1e-20, not zero) would tie every distance:
/// refused at the field in a write; the zero vector is fine, and a query
/// may be of any scale.
#[tokio::test]
async fn l2_and_ip_collections_refuse_vectors_too_small_for_f32_distances() {
    let api = api();
    for metric in ["l2", "ip"] {
        let name = format!("/collections/t{metric}");
        call(&api, Method::PUT, &name, Some(json!({"dimension": 2, "metric": metric}))).await;
        let points = json!({"points": [{"id": 1, "vector": [1.0, 2.0]}, {"id": 2, "vector": [1e-25, 3e-25]}]});
        let (s, body) = call(&api, Method::PUT, &format!("{name}/points"), Some(points)).await;
        assert_eq!((s, locs(&body)), (StatusCode::UNPROCESSABLE_ENTITY, vec![(json!(["body", "points", 1, "vector"]), "value_error".into())]), "{body}");
        assert!(body["detail"][0]["msg"].as_str().unwrap().contains("too small"), "{body}");
        let points = json!({"points": [{"id": 1, "vector": [1.0, 2.0]}, {"id": 2, "vector": [0.0, 0.0]}]});
        assert_eq!(call(&api, Method::PUT, &format!("{name}/points"), Some(points)).await.0, StatusCode::OK);
        // A query may be of any scale.
        for q in [json!([1e-25, 1e-25]), json!([0.0, 0.0])] {
            let (s, body) = call(&api, Method::POST, &format!("{name}/search"), Some(json!({"vector": q, "k": 1}))).await;
            assert_eq!(s, StatusCode::OK, "{body}");
        }
    }
}

async fn call_with_headers(api: &Api, method: Method, path: &str, body: Value) -> (StatusCode, axum::http::HeaderMap, Value) {
    let req = Request::builder().method(method).uri(path).header(header::CONTENT_TYPE, "application/json");
    let response = api.app.clone().oneshot(req.body(Body::from(body.to_string())).unwrap()).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn filtered_searches_answer_only_matching_points_and_say_how() {
    let api = api();
    call(&api, Method::PUT, "/collections/f", Some(json!({"dimension": 2, "metric": "l2"}))).await;
    let points: Vec<Value> = (0..200)
        .map(|i| json!({"id": i, "vector": [i as f32, 0.0], "payload": {"tag": if i % 10 == 0 { "ten" } else { "other" }, "price": i, "meta": {"even": i % 2 == 0}}}))
        .collect();
    assert_eq!(call(&api, Method::PUT, "/collections/f/points", Some(json!({"points": points}))).await.0, StatusCode::OK);
    let search = |filter: Value| json!({"vector": [0.0, 0.0], "k": 5, "filter": filter, "with_payload": true});
    // Unindexed: right answers, and the header names the key read from payloads.
    let (s, h, body) = call_with_headers(&api, Method::POST, "/collections/f/search", search(json!({"must": [{"key": "tag", "match": {"value": "ten"}}]}))).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let ids: Vec<u64> = body["hits"].as_array().unwrap().iter().map(|h| h["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, vec![0, 10, 20, 30, 40]);
    assert_eq!(h["x-vectorwise-filter-unindexed"], "tag");
    assert_eq!(h["x-vectorwise-filter-allowed"], "20");
    assert_eq!(h["x-vectorwise-filter-selectivity"], "0.100000");
    // Declare indexes: 201, then 200 for the same, 409 for another type, 422 for a bad one.
    let (s, _) = call(&api, Method::PUT, "/collections/f/index", Some(json!({"field": "tag", "type": "keyword"}))).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(call(&api, Method::PUT, "/collections/f/index", Some(json!({"field": "tag", "type": "keyword"}))).await.0, StatusCode::OK);
    assert_eq!(call(&api, Method::PUT, "/collections/f/index", Some(json!({"field": "tag", "type": "integer"}))).await.0, StatusCode::CONFLICT);
    assert_eq!(call(&api, Method::PUT, "/collections/f/index", Some(json!({"field": "price", "type": "integer"}))).await.0, StatusCode::CREATED);
    for (body, loc, kind) in [
        (json!({"field": "a..b", "type": "keyword"}), json!(["body", "field"]), "value_error"),
        (json!({"field": "a", "type": "text"}), json!(["body", "type"]), "enum"),
        (json!({"field": "a", "type": "bool", "x": 1}), json!(["body", "x"]), "extra_forbidden"),
    ] {
        let (s, reply) = call(&api, Method::PUT, "/collections/f/index", Some(body.clone())).await;
        assert_eq!((s, locs(&reply)), (StatusCode::UNPROCESSABLE_ENTITY, vec![(loc, kind.to_string())]), "{body}");
    }
    let (_, info) = call(&api, Method::GET, "/collections/f", None).await;
    assert_eq!(info["payload_indexes"], json!([{"field": "tag", "type": "keyword"}, {"field": "price", "type": "integer"}]));
    // Indexed now: no unindexed header; a combination with must_not and a range.
    let f = json!({"must": [{"key": "tag", "match": {"value": "ten"}}, {"key": "price", "range": {"gte": 50}}],
                   "must_not": [{"has_id": [60]}]});
    let (s, h, body) = call_with_headers(&api, Method::POST, "/collections/f/search", search(f)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let ids: Vec<u64> = body["hits"].as_array().unwrap().iter().map(|h| h["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, vec![50, 70, 80, 90, 100]);
    assert!(h.get("x-vectorwise-filter-unindexed").is_none());
    assert_eq!(body["hits"][0]["payload"]["tag"], "ten");
    // A nested bool on an unindexed key, in a batch (one filter for all vectors).
    let batch = json!({"vectors": [[0.0, 0.0], [199.0, 0.0]], "k": 2, "filter": {"must": [{"key": "meta.even", "match": {"value": false}}]}});
    let (s, body) = call(&api, Method::POST, "/collections/f/search/batch", Some(batch)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let ids: Vec<Vec<u64>> = body["results"].as_array().unwrap().iter().map(|r| r["hits"].as_array().unwrap().iter().map(|h| h["id"].as_u64().unwrap()).collect()).collect();
    assert_eq!(ids, vec![vec![1, 3], vec![199, 197]]);
    // Nothing passes: no hits, not an error.
    let (s, body) = call(&api, Method::POST, "/collections/f/search", Some(search(json!({"must": [{"key": "tag", "match": {"value": "none"}}]})))).await;
    assert_eq!((s, body), (StatusCode::OK, json!({"hits": []})));
    // Bad filters: 422 at the place.
    for (filter, loc, kind) in [
        (json!({"must": [{"key": "price", "range": {}}]}), json!(["body", "filter", "must", 0, "range"]), "value_error"),
        (json!({"must": [{"key": "price", "match": {"value": 1.5}}]}), json!(["body", "filter", "must", 0, "match", "value"]), "value_error"),
        (json!({"should": [{"has_id": ["x"]}]}), json!(["body", "filter", "should", 0, "has_id", 0]), "value_error"),
        (json!({"must": [{"key": "tag", "match": {"value": "a"}, "boost": 2}]}), json!(["body", "filter", "must", 0, "boost"]), "extra_forbidden"),
        (json!({"filter": 1}), json!(["body", "filter", "filter"]), "extra_forbidden"),
        (json!("tag = ten"), json!(["body", "filter"]), "dict_type"),
    ] {
        let (s, reply) = call(&api, Method::POST, "/collections/f/search", Some(search(filter.clone()))).await;
        assert_eq!((s, locs(&reply)), (StatusCode::UNPROCESSABLE_ENTITY, vec![(loc, kind.to_string())]), "{filter}");
    }
    // Keys in the unindexed header are percent-encoded (commas, non-ASCII);
    // `a[].b` is the key `a.b`; control characters are refused.
    let odd = json!({"must": [{"key": "a,b", "match": {"value": 1}}, {"key": "prix€", "match": {"value": 1}}, {"is_empty": {"key": "m[].x"}}]});
    let (s, h, body) = call_with_headers(&api, Method::POST, "/collections/f/search", search(odd)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(h["x-vectorwise-filter-unindexed"], "a%2Cb,m.x,prix%E2%82%AC");
    let (s, reply) = call(&api, Method::POST, "/collections/f/search", Some(search(json!({"must": [{"key": "a\nb", "match": {"value": 1}}]})))).await;
    assert_eq!((s, locs(&reply)), (StatusCode::UNPROCESSABLE_ENTITY, vec![(json!(["body", "filter", "must", 0, "key"]), "value_error".to_string())]));
    assert_eq!(call(&api, Method::PUT, "/collections/f/index", Some(json!({"field": "meta[].even", "type": "bool"}))).await.0, StatusCode::CREATED);
    assert_eq!(call(&api, Method::PUT, "/collections/f/index", Some(json!({"field": "meta.even", "type": "bool"}))).await.0, StatusCode::OK, "one key");
    // Drop an index: 200, then 404.
    assert_eq!(call(&api, Method::DELETE, "/collections/f/index/price", None).await.0, StatusCode::OK);
    assert_eq!(call(&api, Method::DELETE, "/collections/f/index/price", None).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_samples_filtered_collection_searches_against_the_exact_filtered_answer() {
    let dir = tempfile::tempdir().unwrap();
    let monitor = vectorwise_server::monitor::MonitorConfig { sample_rate: 1.0, cpu_share: 1.0, queue: 1024 };
    let state = AppState::new(ServerConfig { monitor, ..ServerConfig::default() });
    let store = Arc::new(Store::open(dir.path(), SyncMode::Always).unwrap());
    state.set_store(Arc::clone(&store));
    let api = Api { app: app(state.clone()), _dir: tempfile::tempdir().unwrap() };
    call(&api, Method::PUT, "/collections/m", Some(json!({"dimension": 16, "metric": "l2", "seal_points": 4000}))).await;
    // Seeded uniform points (no structure: the quantised scan is approximate
    // there); tag = id % 2, so 6000 allowed, past the exact path's 2048.
    let mut x = 12345u64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % 10_000) as f32 / 10_000.0
    };
    let points: Vec<Value> = (0..12_000u64)
        .map(|i| json!({"id": i, "vector": (0..16).map(|_| rnd()).collect::<Vec<f32>>(), "payload": {"tag": format!("t{}", i % 2)}}))
        .collect();
    for chunk in points.chunks(1000) {
        assert_eq!(call(&api, Method::PUT, "/collections/m/points", Some(json!({"points": chunk}))).await.0, StatusCode::OK);
    }
    let c = store.get("m").unwrap();
    tokio::task::spawn_blocking(move || c.flush().unwrap()).await.unwrap();
    let filter = json!({"must": [{"key": "tag", "match": {"value": "t1"}}]});
    let mut delivered = Vec::new();
    for i in 0..40 {
        let q: Vec<f32> = (0..16).map(|j| ((i * 16 + j) * 7919 % 10_000) as f32 / 10_000.0).collect();
        // A shallow fixed depth: recall below 1, so the check can fail.
        let (s, got) = call(&api, Method::POST, "/collections/m/search", Some(json!({"vector": q, "k": 10, "filter": filter, "ef_search": 10}))).await;
        assert_eq!(s, StatusCode::OK, "{got}");
        let (_, exact) = call(&api, Method::POST, "/collections/m/search", Some(json!({"vector": q, "k": 10, "filter": filter, "recall_target": 1}))).await;
        let ids = |b: &Value| b["hits"].as_array().unwrap().iter().map(|h| h["id"].as_u64().unwrap()).collect::<Vec<_>>();
        let (got, exact) = (ids(&got), ids(&exact));
        delivered.push(got.iter().filter(|id| exact.contains(id)).count() as f64 / exact.len() as f64);
    }
    let truth = delivered.iter().sum::<f64>() / delivered.len() as f64;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        // (`/stats` shows the same entries; it needs a served index.)
        let entries = state.monitor().snapshot();
        if let Some(e) = entries.iter().find(|e| e.label == "ef_search+filter" && e.samples == 40) {
            // An exact run that ignored the filter would find about half of
            // its ids outside the tag, so the means would differ.
            assert!((e.recall_mean - truth).abs() < 1e-9, "monitor {} vs delivered {truth}", e.recall_mean);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the monitor did not catch up: {entries:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A `multipart/form-data` body of `(name, content type, bytes)` parts.
fn form(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "vw-test-boundary-39f1";
    let mut body = Vec::new();
    for (name, content_type, data) in parts {
        body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n").as_bytes());
        if let Some(t) = content_type {
            body.extend_from_slice(format!("Content-Type: {t}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn send_form(api: &Api, path: &str, content_type: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let req = Request::builder().method(Method::PUT).uri(path).header(header::CONTENT_TYPE, content_type).body(Body::from(body)).unwrap();
    let response = api.app.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn f32s(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A `.npy` (version 1) of float32 values of `shape`.
fn npy(shape: &str, values: &[f32]) -> Vec<u8> {
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&f32s(values));
    out
}

#[tokio::test]
async fn multipart_upserts_write_what_json_writes_and_locate_problems_at_their_part() {
    let api = api();
    for name in ["j", "m"] {
        let (s, body) = call(&api, Method::PUT, &format!("/collections/{name}"), Some(json!({"dimension": 2, "metric": "cosine", "max_payload_bytes": 64}))).await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
    }
    let uuid = "5b7c1f2e-2d4a-4c31-9e0f-0a1b2c3d4e5f";
    let vectors = [0.6f32, 0.8, 1.0, 0.0, -0.5, 0.25];
    let json_points = json!({"points": [
        {"id": 1, "vector": [0.6, 0.8], "payload": {"tag": "a"}},
        {"id": uuid, "vector": [1.0, 0.0]},
        {"id": 7, "vector": [-0.5, 0.25], "payload": {"n": 3}},
    ]});
    assert_eq!(call(&api, Method::PUT, "/collections/j/points", Some(json_points)).await, (StatusCode::OK, json!({"upserted": 3})));
    let ids = format!("[1, \"{uuid}\", 7]");
    let payloads = br#"[{"tag": "a"}, null, {"n": 3}]"#;
    // Raw float32, then the same points again as .npy: an upsert replaces.
    for vectors_part in [(Some("application/octet-stream"), f32s(&vectors)), (Some("application/x-npy"), npy("(3, 2)", &vectors)), (None, f32s(&vectors))] {
        let (t, body) = form(&[("ids", Some("application/json"), ids.as_bytes()), ("vectors", vectors_part.0, &vectors_part.1), ("payloads", None, payloads)]);
        let (s, reply) = send_form(&api, "/collections/m/points", &t, body).await;
        assert_eq!((s, reply), (StatusCode::OK, json!({"upserted": 3})), "{:?}", vectors_part.0);
    }
    let get = json!({"ids": [1, uuid, 7, 9]});
    let from_json = call(&api, Method::POST, "/collections/j/points/get", Some(get.clone())).await;
    let from_form = call(&api, Method::POST, "/collections/m/points/get", Some(get)).await;
    assert_eq!(from_form, from_json, "the same points, vectors (normalised) and payloads");
    assert_eq!(from_form.1["points"].as_array().unwrap().len(), 3);
    let (_, info) = call(&api, Method::GET, "/collections/m", None).await;
    assert_eq!(info["points"], 3, "{info}");
    let search = json!({"vector": [0.1, -0.9], "k": 3, "with_payload": true});
    assert_eq!(
        call(&api, Method::POST, "/collections/m/search", Some(search.clone())).await,
        call(&api, Method::POST, "/collections/j/search", Some(search)).await
    );

    let two = f32s(&[1.0, 0.0, 0.0, 1.0]);
    let ids2: &[u8] = b"[20, 21]";
    let cases: Vec<(Vec<(&str, Option<&str>, Vec<u8>)>, Vec<(Value, &str)>)> = vec![
        (vec![("ids", None, ids2.to_vec()), ("vectors", None, f32s(&[1.0, 0.0]))], vec![(json!(["body", "vectors"]), "value_error")]),
        (vec![("ids", None, b"[20, 21".to_vec()), ("vectors", None, two.clone())], vec![(json!(["body", "ids"]), "json_invalid")]),
        (vec![("ids", None, b"[20, -1]".to_vec()), ("vectors", None, two.clone())], vec![(json!(["body", "ids", 1]), "greater_than_equal")]),
        (vec![("ids", None, b"[20, \"not-a-uuid\"]".to_vec()), ("vectors", None, two.clone())], vec![(json!(["body", "ids", 1]), "uuid_parsing")]),
        (vec![("ids", None, ids2.to_vec()), ("vectors", None, two[..15].to_vec())], vec![(json!(["body", "vectors"]), "value_error")]),
        (vec![("ids", None, ids2.to_vec()), ("vectors", Some("application/octet-stream"), npy("(2, 2)", &[1.0, 0.0, 0.0, 1.0]))], vec![(json!(["body", "vectors"]), "value_error")]),
        (vec![("ids", None, ids2.to_vec()), ("vectors", Some("application/x-npy"), npy("(2, 3)", &[1.0; 6]))], vec![(json!(["body", "vectors"]), "value_error")]),
        (vec![("ids", None, ids2.to_vec()), ("vectors", Some("application/x-npy"), b"\x93NUMPY garbage".to_vec())], vec![(json!(["body", "vectors"]), "value_error")]),
        (vec![("ids", None, ids2.to_vec()), ("vectors", Some("text/plain"), two.clone())], vec![(json!(["body", "vectors"]), "value_error")]),
        (
            vec![("ids", None, ids2.to_vec()), ("vectors", None, f32s(&[1.0, f32::NAN, f32::INFINITY, 1.0]))],
            vec![(json!(["body", "vectors", 0, 1]), "finite_number"), (json!(["body", "vectors", 1, 0]), "finite_number")],
        ),
        (vec![("ids", None, ids2.to_vec()), ("vectors", None, two.clone()), ("payloads", None, b"[{}, 3]".to_vec())], vec![(json!(["body", "payloads", 1]), "dict_type")]),
        (vec![("ids", None, ids2.to_vec()), ("vectors", None, two.clone()), ("payloads", None, b"[{}]".to_vec())], vec![(json!(["body", "payloads"]), "value_error")]),
        (vec![("ids", None, ids2.to_vec()), ("vectors", None, two.clone()), ("payloads", None, br#"[{"a": 1, "a": 2}, {}]"#.to_vec())], vec![(json!(["body", "payloads"]), "json_invalid")]),
        (vec![("ids", None, ids2.to_vec()), ("vectors", None, two.clone()), ("colour", None, b"1".to_vec())], vec![(json!(["body", "colour"]), "extra_forbidden")]),
        (vec![("ids", None, ids2.to_vec()), ("ids", None, ids2.to_vec()), ("vectors", None, two.clone())], vec![(json!(["body", "ids"]), "value_error")]),
        (vec![("vectors", None, two.clone())], vec![(json!(["body", "ids"]), "missing")]),
        (vec![("ids", None, ids2.to_vec())], vec![(json!(["body", "vectors"]), "missing")]),
        // The write path's own refusals, located at the part: a zero vector
        // under cosine, a payload over the collection's limit.
        (vec![("ids", None, ids2.to_vec()), ("vectors", None, f32s(&[1.0, 0.0, 0.0, 0.0]))], vec![(json!(["body", "vectors", 1]), "value_error")]),
        (
            vec![("ids", None, ids2.to_vec()), ("vectors", None, two.clone()), ("payloads", None, format!("[null, {{\"s\": \"{}\"}}]", "x".repeat(100)).into_bytes())],
            vec![(json!(["body", "payloads", 1]), "too_long")],
        ),
    ];
    for (parts, want) in cases {
        let parts: Vec<(&str, Option<&str>, &[u8])> = parts.iter().map(|(n, t, d)| (*n, *t, d.as_slice())).collect();
        let (t, body) = form(&parts);
        let (s, reply) = send_form(&api, "/collections/m/points", &t, body).await;
        let names: Vec<&str> = parts.iter().map(|p| p.0).collect();
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{names:?}: {reply}");
        let want: Vec<(Value, String)> = want.into_iter().map(|(l, k)| (l, k.to_string())).collect();
        assert_eq!(locs(&reply), want, "{names:?}: {reply}");
    }
    // Raw rows of another width for the ids given: the width is named.
    let (t, body) = form(&[("ids", None, b"[20, 21, 22]"), ("vectors", None, &f32s(&[1.0; 9]))]);
    let (s, reply) = send_form(&api, "/collections/m/points", &t, body).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reply["detail"][0]["msg"].as_str().unwrap().contains("rows of 3 float32 values; the collection's dimension is 2"), "{reply}");
    // A part's Content-Type that is not a media type, a transfer encoding:
    // refused, never read as raw float32.
    for header in ["Content-Type: text/csv; charset", "Content-Transfer-Encoding: base64"] {
        let body = format!(
            "--b\r\nContent-Disposition: form-data; name=\"ids\"\r\n\r\n[20, 21]\r\n--b\r\nContent-Disposition: form-data; name=\"vectors\"\r\n{header}\r\n\r\n0.5,0.5,0.5,0.5\r\n--b--\r\n"
        );
        let (s, reply) = send_form(&api, "/collections/m/points", "multipart/form-data; boundary=b", body.into_bytes()).await;
        assert_eq!((s, locs(&reply)), (StatusCode::UNPROCESSABLE_ENTITY, vec![(json!(["body", "vectors"]), "value_error".to_string())]), "{header}: {reply}");
    }
    // Many bad parts: at most 32 errors, as for JSON lists.
    let nameless = "--b\r\nContent-Disposition: form-data\r\n\r\n\r\n".repeat(1000) + "--b--\r\n";
    let (s, reply) = send_form(&api, "/collections/m/points", "multipart/form-data; boundary=b", nameless.into_bytes()).await;
    assert_eq!((s, reply["detail"].as_array().map(Vec::len)), (StatusCode::UNPROCESSABLE_ENTITY, Some(32)));
    // A payload nested as deep as a JSON body's can be, and one level more.
    let nested = |levels: usize| format!("[{}1{}, null]", "{\"a\": ".repeat(levels), "}".repeat(levels));
    let (t, body) = form(&[("ids", None, ids2), ("vectors", None, &two), ("payloads", None, nested(125).as_bytes())]);
    let (s, reply) = send_form(&api, "/collections/m/points", &t, body).await;
    assert_eq!((s, locs(&reply)), (StatusCode::UNPROCESSABLE_ENTITY, vec![(json!(["body", "payloads", 0]), "value_error".to_string())]), "{reply}");
    call(&api, Method::PUT, "/collections/deep", Some(json!({"dimension": 2}))).await;
    let (t, body) = form(&[("ids", None, b"[30, 31]"), ("vectors", None, &two), ("payloads", None, nested(124).as_bytes())]);
    let (s, reply) = send_form(&api, "/collections/deep/points", &t, body).await;
    assert_eq!(s, StatusCode::OK, "{reply}");
    // Not a form at all, and a form without its boundary: 422 at the body.
    for (t, body) in [("multipart/form-data; boundary=zz", b"garbage".to_vec()), ("multipart/form-data", b"garbage".to_vec())] {
        let (s, reply) = send_form(&api, "/collections/m/points", t, body).await;
        assert_eq!((s, locs(&reply)), (StatusCode::UNPROCESSABLE_ENTITY, vec![(json!(["body"]), "value_error".to_string())]), "{t}: {reply}");
    }
    let (t, body) = form(&[("ids", None, ids2), ("vectors", None, &two)]);
    assert_eq!(send_form(&api, "/collections/nope/points", &t, body).await.0, StatusCode::NOT_FOUND);
    let (_, info) = call(&api, Method::GET, "/collections/m", None).await;
    assert_eq!(info["points"], 3, "refused forms wrote nothing: {info}");
}
