//! `POST /search/batch` over a real socket: answers equal to the same
//! queries sent one by one, every validation error located at its query,
//! the size limits, overload, and its OpenAPI entry.

mod common;

use common::{DIM, FIXTURE, N, Server, query, row, state_with};
use serde_json::{Value, json};
use std::sync::Arc;
use vectorwise_server::{AppState, ServerConfig};

fn server() -> Server {
    Server::start(state_with(ServerConfig::default()))
}

/// Asserts a 422 with exactly these `(loc, type)` pairs, in order.
fn assert_422(reply: &common::Reply, expected: &[(Value, &str)]) {
    assert_eq!(reply.status, 422, "{}", reply.body);
    let body = reply.json();
    let got: Vec<(Value, String)> = body["detail"]
        .as_array()
        .unwrap_or_else(|| panic!("detail is not a list: {body}"))
        .iter()
        .map(|e| {
            assert!(e["msg"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
            (e["loc"].clone(), e["type"].as_str().unwrap().to_owned())
        })
        .collect();
    let expected: Vec<(Value, String)> = expected.iter().map(|(l, t)| (l.clone(), (*t).to_owned())).collect();
    assert_eq!(got, expected, "{body}");
}

#[test]
fn a_batch_answers_exactly_as_its_queries_sent_one_by_one_in_order() {
    let server = server();
    // Stored points, random queries, and scaled copies (normalised alike).
    let mut queries: Vec<Vec<f32>> = (0..8).map(|i| row(i * 97)).collect();
    queries.extend((0..8).map(query));
    queries.extend((0..8).map(|i| query(i).iter().map(|x| x * 40.0).collect::<Vec<_>>()));
    for k in [1, 10, 100] {
        let reply = server.post_json("/search/batch", &json!({"query_vectors": queries, "k": k}));
        assert_eq!(reply.status, 200, "{}", reply.body);
        let body = reply.json();
        assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
        let results = body["results"].as_array().unwrap();
        assert_eq!(results.len(), queries.len());
        for (i, (q, got)) in queries.iter().zip(results).enumerate() {
            let single = server.post_json("/search", &json!({"query_vector": q, "k": k}));
            assert_eq!(single.status, 200);
            assert_eq!(got, &single.json(), "query {i}, k {k}");
            assert_eq!(got["indices"].as_array().unwrap().len(), k);
        }
        for i in 0..8 {
            assert_eq!(results[i]["indices"][0], i * 97, "a stored point finds itself first");
        }
    }
    // One query is a batch too; k past the index size returns every point.
    let small = Server::start(AppState::with_index(ServerConfig::default(), Arc::clone(&FIXTURE.small)));
    let reply = small.post_json("/search/batch", &json!({"query_vectors": [query(1), query(2)], "k": 100}));
    for result in reply.json()["results"].as_array().unwrap() {
        assert_eq!(result["indices"].as_array().unwrap().len(), common::SMALL_N);
    }
    let reply = server.post_json("/search/batch", &json!({"query_vectors": [row(5)], "k": 3}));
    assert_eq!(reply.json()["results"][0]["indices"][0], 5);
}

#[test]
fn validation_errors_name_the_query_by_its_index() {
    let server = server();
    let mut bad_element: Vec<Value> = query(1).into_iter().map(|x| json!(x)).collect();
    bad_element[1] = json!("a");
    let mut null_element: Vec<Value> = query(2).into_iter().map(|x| json!(x)).collect();
    null_element[5] = json!(null);
    let body = json!({
        "query_vectors": [query(0), bad_element, vec![0.0; DIM], "not a list", null_element],
        "k": 0,
    });
    let reply = server.post_json("/search/batch", &body);
    assert_422(
        &reply,
        &[
            (json!(["body", "query_vectors", 1, 1]), "float_parsing"),
            (json!(["body", "query_vectors", 3]), "list_type"),
            (json!(["body", "query_vectors", 4, 5]), "float_type"),
            (json!(["body", "k"]), "greater_than"),
        ],
    );
    assert_eq!(reply.json()["detail"][0]["input"], "a");
    // A zero vector is well-formed; the cosine index (the demo's metric)
    // refuses it, located at its query.
    let reply = server.post_json("/search/batch", &json!({"query_vectors": [query(0), query(1), vec![0.0; DIM]], "k": 3}));
    assert_422(&reply, &[(json!(["body", "query_vectors", 2]), "value_error")]);
    let reason = "query_vectors[2] must not be the zero vector: it has no direction under the cosine metric";
    assert_eq!(reply.json()["detail"][0]["msg"], format!("Value error, {reason}"));
    assert_eq!(reply.json()["detail"][0]["ctx"], json!({ "error": reason }));

    // The body's own shape, as for /search.
    assert_422(&server.post_json("/search/batch", &json!({"k": 5})), &[(json!(["body", "query_vectors"]), "missing")]);
    assert_422(
        &server.post_json("/search/batch", &json!({})),
        &[(json!(["body", "query_vectors"]), "missing"), (json!(["body", "k"]), "missing")],
    );
    // One flat vector instead of a list of them: each number is not a list.
    assert_422(
        &server.post_json("/search/batch", &json!({"query_vectors": [0.5, 1.5], "k": 5})),
        &[(json!(["body", "query_vectors", 0]), "list_type"), (json!(["body", "query_vectors", 1]), "list_type")],
    );
    assert_422(
        &server.post_json("/search/batch", &json!({"query_vectors": "x", "k": 5})),
        &[(json!(["body", "query_vectors"]), "list_type")],
    );
    assert_422(&server.post("/search/batch", "[1, 2]"), &[(json!(["body"]), "model_attributes_type")]);
    assert_422(&server.post("/search/batch", r#"{"query_vectors": [[1, 2"#), &[(json!(["body", 24]), "json_invalid")]);
    // The old field name is not accepted for a batch, and is named as unknown.
    assert_422(
        &server.post_json("/search/batch", &json!({"query_vector": query(0), "k": 5})),
        &[(json!(["body", "query_vectors"]), "missing"), (json!(["body", "query_vector"]), "extra_forbidden")],
    );
}

#[test]
fn element_errors_are_capped_over_the_whole_batch() {
    let server = server();
    let reply = server.post_json("/search/batch", &json!({"query_vectors": vec![vec!["x"; 10]; 100], "k": 1}));
    assert_eq!(reply.status, 422);
    let detail = reply.json()["detail"].as_array().unwrap().clone();
    assert_eq!(detail.len(), 32);
    assert_eq!(detail[31]["loc"], json!(["body", "query_vectors", 3, 1]));
}

#[test]
fn a_query_of_the_wrong_dimension_is_400_naming_it() {
    let server = server();
    let reply =
        server.post_json("/search/batch", &json!({"query_vectors": [query(0), query(1), query(2), [1.0, 2.0]], "k": 5}));
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json(), json!({"detail": "query_vectors[3] has 2 dimensions, expected 128"}));
    // An empty query is a dimension error too (as in /search), the first one named.
    let reply = server.post_json("/search/batch", &json!({"query_vectors": [[], [1.0]], "k": 5}));
    assert_eq!(reply.json(), json!({"detail": "query_vectors[0] has 0 dimensions, expected 128"}));
    // Validation comes first.
    assert_422(
        &server.post_json("/search/batch", &json!({"query_vectors": [[1.0, 2.0]], "k": 0})),
        &[(json!(["body", "k"]), "greater_than")],
    );
}

#[test]
fn an_empty_batch_is_422_too_short() {
    let reply = server().post_json("/search/batch", &json!({"query_vectors": [], "k": 5}));
    assert_eq!(reply.status, 422);
    assert_eq!(
        reply.json(),
        json!({"detail": [{
            "loc": ["body", "query_vectors"],
            "msg": "List should have at least 1 item after validation, not 0",
            "type": "too_short",
            "ctx": {"field_type": "List", "min_length": 1, "actual_length": 0},
        }]})
    );
}

#[test]
fn a_batch_past_max_batch_is_422_too_long() {
    let server = Server::start(state_with(ServerConfig { max_batch: 4, ..ServerConfig::default() }));
    let four: Vec<Vec<f32>> = (0..4).map(query).collect();
    let reply = server.post_json("/search/batch", &json!({"query_vectors": four, "k": 2}));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["results"].as_array().unwrap().len(), 4);
    let five: Vec<Vec<f32>> = (0..5).map(query).collect();
    let reply = server.post_json("/search/batch", &json!({"query_vectors": five, "k": 2}));
    assert_eq!(
        reply.json(),
        json!({"detail": [{
            "loc": ["body", "query_vectors"],
            "msg": "List should have at most 4 items after validation, not 5",
            "type": "too_long",
            "ctx": {"field_type": "List", "max_length": 4, "actual_length": 5},
        }]})
    );
    // The default is 1024. Past it the queries are not even looked at (they
    // would be dimension errors), and other fields are still checked.
    let reply = server_default_too_long();
    assert_422(&reply, &[(json!(["body", "query_vectors"]), "too_long"), (json!(["body", "k"]), "greater_than")]);
    assert_eq!(reply.json()["detail"][0]["ctx"]["max_length"], 1024);
}

fn server_default_too_long() -> common::Reply {
    server().post_json("/search/batch", &json!({"query_vectors": vec![vec!["x"]; 1025], "k": 0}))
}

#[test]
fn k_is_checked_as_in_single_search() {
    let server = server();
    for (k, kind) in [
        (json!(0), "greater_than"),
        (json!(-1), "greater_than"),
        (json!(101), "less_than_equal"),
        (json!(1.5), "int_from_float"),
        (json!("10"), "int_type"),
        (json!("ten"), "int_parsing"),
        (json!(null), "int_type"),
    ] {
        let reply = server.post_json("/search/batch", &json!({"query_vectors": [query(0)], "k": k}));
        assert_422(&reply, &[(json!(["body", "k"]), kind)]);
    }
    assert_422(
        &server.post_json("/search/batch", &json!({"query_vectors": [query(0)]})),
        &[(json!(["body", "k"]), "missing")],
    );
    let reply = server.post_json("/search/batch", &json!({"query_vectors": [query(0)], "k": 101}));
    assert_eq!(reply.json()["detail"][0]["ctx"], json!({"le": 100}));
    // An integral float is an integer, as in pydantic.
    let reply = server.post_json("/search/batch", &json!({"query_vectors": [query(0)], "k": 3.0}));
    assert_eq!(reply.json()["results"][0]["indices"].as_array().unwrap().len(), 3);
}

/// The README's promise: at 128 dimensions a full default batch fits the
/// default 4 MiB body limit even when every number takes 24 characters (the
/// longest `json.dumps` writes for a float: `-2.2250738585072014e-308`).
#[test]
fn a_full_batch_of_128_d_floats_fits_the_default_body_limit() {
    let config = ServerConfig::default();
    let server = Server::start(state_with(config.clone()));
    let mut body = String::from(r#"{"k": 10, "query_vectors": ["#);
    for i in 0..config.max_batch {
        body.push_str(if i == 0 { "[" } else { ",[" });
        for (j, x) in row(i % N).iter().enumerate() {
            let number = format!("{:.16e}", -x.abs() - 1e-3);
            // Pad each number to 24 characters plus ", ".
            body.push_str(&format!("{}{number}", " ".repeat(24 - number.len().min(24))));
            body.push_str(if j + 1 < DIM { ", " } else { "]" });
        }
    }
    body.push_str("]}");
    assert!(body.len() >= config.max_batch * DIM * 26, "{}", body.len());
    assert!(body.len() <= config.body_limit_bytes, "{}", body.len());
    let reply = server.post("/search/batch", body);
    assert_eq!(reply.status, 200, "{}", &reply.body[..reply.body.len().min(300)]);
    assert_eq!(reply.json()["results"].as_array().unwrap().len(), config.max_batch);
}

#[test]
fn batches_are_refused_at_once_when_the_pool_is_full_and_wait_for_the_index() {
    let server = Server::start(state_with(ServerConfig { max_pending_searches: 0, ..ServerConfig::default() }));
    let reply = server.post_json("/search/batch", &json!({"query_vectors": [query(0), query(1)], "k": 3}));
    assert_eq!((reply.status, reply.json()), (503, json!({"detail": "Too many pending searches, retry later"})));
    assert_eq!(reply.retry_after.as_deref(), Some("1"));

    let state = AppState::new(ServerConfig::default());
    let server = Server::start(state.clone());
    let reply = server.post_json("/search/batch", &json!({"query_vectors": [query(0)], "k": 3}));
    assert_eq!((reply.status, reply.json()), (503, json!({"detail": "Index not loaded yet"})));
    assert_422(&server.post_json("/search/batch", &json!({"k": 3})), &[(json!(["body", "query_vectors"]), "missing")]);
    state.set_index(Arc::clone(&FIXTURE.index));
    assert_eq!(server.post_json("/search/batch", &json!({"query_vectors": [query(0)], "k": 3})).status, 200);
}

#[test]
fn the_openapi_document_describes_batch_search_with_the_configured_limits() {
    let server = Server::start(state_with(ServerConfig { max_batch: 77, max_k: 9, ..ServerConfig::default() }));
    let doc = server.get("/openapi.json").json();
    let op = &doc["paths"]["/search/batch"]["post"];
    for status in ["200", "400", "413", "422", "500", "503"] {
        assert!(op["responses"][status].is_object(), "{status}");
    }
    assert_eq!(op["requestBody"]["required"], true);
    let request = &doc["components"]["schemas"]["SearchBatchRequest"];
    assert_eq!(request["required"], json!(["query_vectors", "k"]));
    assert_eq!(request["properties"]["query_vectors"]["maxItems"], 77);
    assert_eq!(request["properties"]["query_vectors"]["minItems"], 1);
    assert_eq!(request["properties"]["k"]["maximum"], 9);
    assert_eq!(doc["components"]["schemas"]["SearchRequest"]["properties"]["k"]["maximum"], 9);
    let response = &doc["components"]["schemas"]["SearchBatchResponse"];
    assert_eq!(response["properties"]["results"]["items"]["$ref"], "#/components/schemas/SearchResponse");
}
