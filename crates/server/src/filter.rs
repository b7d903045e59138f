//! The `filter` of a collection search, from JSON to the store's
//! [`Filter`], with a located 422 for every mistake (`body.filter.must[2].range`),
//! and its OpenAPI schema. The shape is Qdrant's:
//!
//! ```json
//! {"must": [{"key": "tag", "match": {"value": "news"}},
//!           {"key": "price", "range": {"gte": 1, "lt": 5}}],
//!  "should": [{"key": "lang", "match": {"any": ["en", "fr"]}}],
//!  "must_not": [{"has_id": [7, 9]}, {"is_empty": {"key": "author"}}]}
//! ```
//! A condition can also be a whole filter (nested). What each condition
//! means is the store's (`vectorwise_store::filter`).

use crate::models::{FieldError, LocItem};
use serde_json::{Map, Value, json};
use utoipa::openapi::{RefOr, Schema};
use vectorwise_store::{Condition, Filter, KeyPath, MatchValue, NumRange};

/// Nesting depth a filter may reach (a filter inside a condition is one level).
pub const MAX_DEPTH: usize = 8;
/// Conditions in one `must` / `should` / `must_not` list.
pub const MAX_CONDITIONS: usize = 64;
/// Conditions in a whole filter, nested ones counted: every condition
/// costs a pass over a segment's words (a hostile nesting of 64 lists of
/// 64 would otherwise multiply them).
pub const MAX_TOTAL_CONDITIONS: usize = 1024;
/// Errors reported for one filter.
pub const MAX_ERRORS: usize = 32;
/// Values in one `match.any`.
pub const MAX_ANY: usize = 1024;
/// Ids in one `has_id`.
pub const MAX_HAS_ID: usize = 10_000;

fn push(at: &[LocItem], name: &str) -> Vec<LocItem> {
    let mut l = at.to_vec();
    l.push(LocItem::from(name));
    l
}

fn index(at: &[LocItem], i: usize) -> Vec<LocItem> {
    let mut l = at.to_vec();
    l.push(LocItem::Index(i));
    l
}

fn object<'a>(v: &'a Value, at: &[LocItem], errors: &mut Vec<FieldError>) -> Option<&'a Map<String, Value>> {
    match v {
        Value::Object(m) => Some(m),
        other => {
            errors.push(FieldError::new(at.to_vec(), "dict_type", "Input should be a valid dictionary").with_input(other));
            None
        }
    }
}

fn extra(map: &Map<String, Value>, known: &[&str], at: &[LocItem], errors: &mut Vec<FieldError>) {
    for (name, value) in map.iter().filter(|(n, _)| !known.contains(&n.as_str())) {
        errors.push(FieldError::new(push(at, name), "extra_forbidden", "Extra inputs are not permitted").with_input(value));
    }
}

fn value_error(at: Vec<LocItem>, msg: impl Into<String>, input: &Value) -> FieldError {
    let msg = msg.into();
    FieldError::new(at, "value_error", format!("Value error, {msg}")).with_input(input).with_ctx(json!({ "error": msg }))
}

/// `body.filter` (at `at`) as a [`Filter`]; `null` is no filter.
pub(crate) fn parse(v: &Value, at: &[LocItem], errors: &mut Vec<FieldError>) -> Option<Option<Filter>> {
    if v.is_null() {
        return Some(None);
    }
    let before = errors.len();
    let f = filter(v, at, 1, errors);
    if errors.len() != before {
        // A body of many bad conditions must not answer with many times its
        // size in errors (as elsewhere, at most 32 are reported).
        errors.truncate(before + MAX_ERRORS);
        return None;
    }
    if let Some(f) = &f {
        let total = f.conditions().len();
        if total > MAX_TOTAL_CONDITIONS {
            errors.push(value_error(at.to_vec(), format!("a filter holds at most {MAX_TOTAL_CONDITIONS} conditions in all (nested ones counted); this one has {total}"), v));
            return None;
        }
    }
    Some(f)
}

fn filter(v: &Value, at: &[LocItem], depth: usize, errors: &mut Vec<FieldError>) -> Option<Filter> {
    if depth > MAX_DEPTH {
        errors.push(value_error(at.to_vec(), format!("filters nest at most {MAX_DEPTH} deep"), v));
        return None;
    }
    let map = object(v, at, errors)?;
    extra(map, &["must", "should", "must_not"], at, errors);
    let mut list = |name: &str| -> Vec<Condition> {
        let at = push(at, name);
        match map.get(name) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) if items.len() > MAX_CONDITIONS => {
                errors.push(
                    FieldError::new(at, "too_long", format!("List should have at most {MAX_CONDITIONS} items"))
                        .with_ctx(json!({ "max_length": MAX_CONDITIONS })),
                );
                Vec::new()
            }
            Some(Value::Array(items)) => {
                items.iter().enumerate().filter_map(|(i, c)| condition(c, &index(&at, i), depth, errors)).collect()
            }
            Some(other) => {
                errors.push(FieldError::new(at, "list_type", "Input should be a valid list").with_input(other));
                Vec::new()
            }
        }
    };
    let (must, should, must_not) = (list("must"), list("should"), list("must_not"));
    Some(Filter { must, should, must_not })
}

fn key(map: &Map<String, Value>, at: &[LocItem], errors: &mut Vec<FieldError>) -> Option<KeyPath> {
    let at = push(at, "key");
    match map.get("key") {
        None => {
            errors.push(FieldError::new(at, "missing", "Field required"));
            None
        }
        Some(Value::String(s)) => KeyPath::parse(s).map_err(|reason| errors.push(value_error(at, format!("key {reason}"), &Value::String(s.clone())))).ok(),
        Some(other) => {
            errors.push(FieldError::new(at, "string_type", "Input should be a valid string").with_input(other));
            None
        }
    }
}

fn condition(v: &Value, at: &[LocItem], depth: usize, errors: &mut Vec<FieldError>) -> Option<Condition> {
    let map = object(v, at, errors)?;
    let is = |k: &str| map.contains_key(k);
    if is("must") || is("should") || is("must_not") || map.is_empty() {
        return filter(v, at, depth + 1, errors).map(|f| Condition::Nested(Box::new(f)));
    }
    if is("has_id") {
        extra(map, &["has_id"], at, errors);
        return has_id(&map["has_id"], &push(at, "has_id"), errors);
    }
    if is("is_empty") {
        extra(map, &["is_empty"], at, errors);
        let at = push(at, "is_empty");
        let inner = object(&map["is_empty"], &at, errors)?;
        extra(inner, &["key"], &at, errors);
        return key(inner, &at, errors).map(Condition::IsEmpty);
    }
    match (map.get("match"), map.get("range")) {
        (Some(m), None) => {
            extra(map, &["key", "match"], at, errors);
            let k = key(map, at, errors);
            let values = match_values(m, &push(at, "match"), errors);
            Some(Condition::Match { key: k?, values: values? })
        }
        (None, Some(r)) => {
            extra(map, &["key", "range"], at, errors);
            let k = key(map, at, errors);
            let range = range(r, &push(at, "range"), errors);
            Some(Condition::Range { key: k?, range: range? })
        }
        (Some(_), Some(_)) => {
            errors.push(value_error(at.to_vec(), "a condition has `match` or `range`, not both", v));
            None
        }
        (None, None) => {
            errors.push(value_error(
                at.to_vec(),
                "a condition is {\"key\", \"match\"}, {\"key\", \"range\"}, {\"has_id\"}, {\"is_empty\"} or a nested filter",
                v,
            ));
            None
        }
    }
}

fn match_value(v: &Value, at: &[LocItem], errors: &mut Vec<FieldError>) -> Option<MatchValue> {
    match v {
        Value::String(s) => Some(MatchValue::Keyword(s.clone())),
        Value::Bool(b) => Some(MatchValue::Bool(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Some(MatchValue::Integer(i)),
            None => {
                errors.push(value_error(at.to_vec(), "match compares strings, integers (within i64) and booleans; use range for other numbers", v));
                None
            }
        },
        other => {
            errors.push(value_error(at.to_vec(), "match compares strings, integers and booleans", other));
            None
        }
    }
}

fn match_values(v: &Value, at: &[LocItem], errors: &mut Vec<FieldError>) -> Option<Vec<MatchValue>> {
    let map = object(v, at, errors)?;
    match (map.get("value"), map.get("any")) {
        (Some(one), None) => {
            extra(map, &["value"], at, errors);
            Some(vec![match_value(one, &push(at, "value"), errors)?])
        }
        (None, Some(Value::Array(items))) => {
            extra(map, &["any"], at, errors);
            let at = push(at, "any");
            if items.len() > MAX_ANY {
                errors.push(
                    FieldError::new(at, "too_long", format!("List should have at most {MAX_ANY} items")).with_ctx(json!({ "max_length": MAX_ANY })),
                );
                return None;
            }
            let before = errors.len();
            let values: Vec<MatchValue> = items.iter().enumerate().filter_map(|(i, x)| match_value(x, &index(&at, i), errors)).collect();
            (errors.len() == before).then_some(values)
        }
        (None, Some(other)) => {
            errors.push(FieldError::new(push(at, "any"), "list_type", "Input should be a valid list").with_input(other));
            None
        }
        _ => {
            errors.push(value_error(at.to_vec(), "match is {\"value\": ...} or {\"any\": [...]}", v));
            None
        }
    }
}

fn range(v: &Value, at: &[LocItem], errors: &mut Vec<FieldError>) -> Option<NumRange> {
    let map = object(v, at, errors)?;
    extra(map, &["gt", "gte", "lt", "lte"], at, errors);
    let before = errors.len();
    let mut bound = |name: &str| match map.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_f64(),
        Some(other) => {
            errors.push(FieldError::new(push(at, name), "float_type", "Input should be a valid number").with_input(other));
            None
        }
    };
    let r = NumRange { gt: bound("gt"), gte: bound("gte"), lt: bound("lt"), lte: bound("lte") };
    if errors.len() != before {
        return None;
    }
    if r == NumRange::default() {
        errors.push(value_error(at.to_vec(), "a range needs at least one of gt, gte, lt, lte", v));
        return None;
    }
    Some(r)
}

/// `has_id`: integers as `HasId`, UUID strings as `HasUuid`, both (either
/// holds) as a nested filter of the two.
fn has_id(v: &Value, at: &[LocItem], errors: &mut Vec<FieldError>) -> Option<Condition> {
    let Value::Array(items) = v else {
        errors.push(FieldError::new(at.to_vec(), "list_type", "Input should be a valid list").with_input(v));
        return None;
    };
    if items.len() > MAX_HAS_ID {
        errors.push(
            FieldError::new(at.to_vec(), "too_long", format!("List should have at most {MAX_HAS_ID} items")).with_ctx(json!({ "max_length": MAX_HAS_ID })),
        );
        return None;
    }
    let before = errors.len();
    let mut ids = Vec::with_capacity(items.len());
    let mut uuids = Vec::new();
    for (i, x) in items.iter().enumerate() {
        match (x.as_u64().filter(|&id| id <= i64::MAX as u64), x.as_str().and_then(vectorwise_store::PointId::parse_uuid)) {
            (Some(id), _) => ids.push(id),
            (None, Some(vectorwise_store::PointId::Uuid(u))) => uuids.push(u),
            _ => errors.push(value_error(index(at, i), "ids are integers from 0 to 2^63 - 1 or UUID strings", x)),
        }
        if errors.len() - before >= 32 {
            break;
        }
    }
    if errors.len() != before {
        return None;
    }
    Some(match (ids.is_empty(), uuids.is_empty()) {
        (_, true) => Condition::HasId(ids),
        (true, false) => Condition::HasUuid(uuids),
        (false, false) => Condition::Nested(Box::new(Filter { should: vec![Condition::HasId(ids), Condition::HasUuid(uuids)], ..Default::default() })),
    })
}

/// The OpenAPI components `Filter` and `Condition` (what [`parse`] accepts,
/// as far as a schema can say it).
pub(crate) fn schemas() -> Vec<(String, RefOr<Schema>)> {
    let key = json!({ "type": "string", "minLength": 1, "maxLength": vectorwise_store::filter::MAX_KEY_BYTES,
        "pattern": r"^[^.\[\]]+(\[\])?(\.[^.\[\]]+(\[\])?)*$",
        "description": "A dotted payload key (`meta.source`); arrays on the way are walked into" });
    let scalar = json!({ "type": ["string", "integer", "boolean"] });
    let list = |desc: &str| json!({ "type": ["array", "null"], "maxItems": MAX_CONDITIONS, "description": desc,
        "items": { "$ref": "#/components/schemas/Condition" } });
    let filter = json!({
        "type": "object",
        "additionalProperties": false,
        "description": "Only points the filter lets through are answered: every `must` condition holds, at least one `should` (if any), no `must_not`. At most 8 levels of nesting and 1024 conditions in all.",
        "properties": {
            "must": list("Conditions that must all hold"),
            "should": list("Conditions of which at least one must hold"),
            "must_not": list("Conditions none of which may hold"),
        }
    });
    let condition = json!({
        "description": "One condition, or a nested filter.",
        "oneOf": [
            { "type": "object", "additionalProperties": false, "required": ["key", "match"], "title": "match",
              "description": "One of the key's values equals the value (or one of `any`); strings, integers and booleans.",
              "properties": { "key": key, "match": { "oneOf": [
                  { "type": "object", "additionalProperties": false, "required": ["value"], "properties": { "value": scalar } },
                  { "type": "object", "additionalProperties": false, "required": ["any"],
                    "properties": { "any": { "type": "array", "maxItems": MAX_ANY, "items": scalar } } } ] } } },
            { "type": "object", "additionalProperties": false, "required": ["key", "range"], "title": "range",
              "description": "One of the key's values is a number within the bounds.",
              "properties": { "key": key, "range": { "type": "object", "additionalProperties": false, "minProperties": 1,
                  "properties": { "gt": { "type": "number" }, "gte": { "type": "number" }, "lt": { "type": "number" }, "lte": { "type": "number" } } } } },
            { "type": "object", "additionalProperties": false, "required": ["has_id"], "title": "has_id",
              "properties": { "has_id": { "type": "array", "maxItems": MAX_HAS_ID,
                  "items": { "$ref": "#/components/schemas/PointId" } } } },
            { "type": "object", "additionalProperties": false, "required": ["is_empty"], "title": "is_empty",
              "description": "The key has no value (missing, null or []).",
              "properties": { "is_empty": { "type": "object", "additionalProperties": false, "required": ["key"], "properties": { "key": key } } } },
            { "$ref": "#/components/schemas/Filter" }
        ]
    });
    let point_id = json!({
        "description": "A point id: an integer from 0 to 2^63 - 1, or a UUID string.",
        "oneOf": [{ "type": "integer", "minimum": 0, "maximum": i64::MAX }, { "type": "string", "format": "uuid" }]
    });
    [("Filter", filter), ("Condition", condition), ("PointId", point_id)]
        .into_iter()
        .map(|(name, v)| (name.to_string(), serde_json::from_value(v).expect("a valid schema")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(v: Value) -> Filter {
        let mut errors = Vec::new();
        let f = parse(&v, &["body".into(), "filter".into()], &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        f.unwrap().unwrap()
    }

    fn err(v: Value) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        assert!(parse(&v, &["body".into(), "filter".into()], &mut errors).is_none());
        errors
            .into_iter()
            .map(|e| {
                let loc = e.loc.iter().map(|l| match l {
                    LocItem::Key(k) => k.clone(),
                    LocItem::Index(i) => i.to_string(),
                });
                (loc.collect::<Vec<_>>().join("."), e.kind)
            })
            .collect()
    }

    #[test]
    fn the_qdrant_shape_parses() {
        let f = ok(json!({
            "must": [{"key": "tag", "match": {"value": "news"}}, {"key": "price", "range": {"gte": 1, "lt": 5.5}}],
            "should": [{"key": "n", "match": {"any": [1, 2, true, "x"]}}, {"must": [{"has_id": [3]}]}],
            "must_not": [{"is_empty": {"key": "meta.author"}}]
        }));
        assert_eq!(f.must.len(), 2);
        assert!(matches!(&f.should[1], Condition::Nested(_)));
        assert_eq!(ok(json!({})), Filter::default());
        let mut errors = Vec::new();
        assert_eq!(parse(&Value::Null, &[], &mut errors), Some(None));
    }

    #[test]
    fn mistakes_are_located() {
        let cases = [
            (json!({"must": [{"key": "a", "match": {"value": 1.5}}]}), "body.filter.must.0.match.value"),
            (json!({"must": [{"key": "a", "range": {}}]}), "body.filter.must.0.range"),
            (json!({"must": [{"key": "a", "range": {"gte": "x"}}]}), "body.filter.must.0.range.gte"),
            (json!({"should": [{"key": "", "match": {"value": 1}}]}), "body.filter.should.0.key"),
            (json!({"must_not": [{"has_id": [-1]}]}), "body.filter.must_not.0.has_id.0"),
            (json!({"must": [{"is_empty": {"key": "a", "x": 1}}]}), "body.filter.must.0.is_empty.x"),
            (json!({"must": [{"key": "a"}]}), "body.filter.must.0"),
            (json!({"must": [{"key": "a", "match": {"value": 1}, "range": {"gt": 1}}]}), "body.filter.must.0"),
            (json!({"must": "x"}), "body.filter.must"),
            (json!({"mus": []}), "body.filter.mus"),
            (json!([1]), "body.filter"),
        ];
        for (v, want) in cases {
            let got = err(v.clone());
            assert!(got.iter().any(|(loc, _)| loc == want), "{v}: {got:?}");
        }
        let mut deep = json!({});
        for _ in 0..MAX_DEPTH + 1 {
            deep = json!({"must": [deep]});
        }
        assert!(!err(deep).is_empty());
        assert!(!err(json!({"must": vec![json!({}); MAX_CONDITIONS + 1]})).is_empty());
        // 64 nested filters of 17 conditions: 1152 in all.
        let wide = json!({"must": vec![json!({"must": vec![json!({"has_id": [1]}); 16]}); 64]});
        assert_eq!(err(wide), vec![("body.filter".to_string(), "value_error".to_string())]);
        let fits = json!({"must": vec![json!({"must": vec![json!({"has_id": [1]}); 14]}); 64]});
        assert_eq!(ok(fits).conditions().len(), 64 * 15);
    }
}
