//! Request rules, checked by hand on a parsed `serde_json::Value` so that every
//! problem is reported at once with pydantic v2's `loc`, `msg` and `type`, as
//! the demo's FastAPI did. Stricter than pydantic's lax mode on purpose: `"10"`
//! and `true` are not integers here, `"0.5"` is not a number. An integral float
//! such as `10.0` is an integer, as in pydantic.

use crate::models::{FieldError, LocItem, SearchBatchRequest, SearchOptions, SearchRequest};
use crate::binary::{FromBinary, Searched};
use crate::state::ServerConfig;
use serde_json::{Map, Value, json};

/// A request body type that can be built from a parsed JSON body.
pub(crate) trait FromBody: Sized {
    fn from_body(body: &Value, config: &ServerConfig) -> Result<Self, Vec<FieldError>>;

    /// A direct parse of the raw JSON bytes for bodies that are large and
    /// usually valid (no `Value` tree): `Some` only when the body is valid;
    /// `None` sends it through [`FromBody::from_body`], which locates every
    /// problem.
    fn fast(_bytes: &[u8], _config: &ServerConfig) -> Option<Self> {
        None
    }
}

/// The search routes' [`FromBody::fast`]: the vector field (`field`; a list of
/// lists when `T::BATCH`) is read straight into f32s and every other field into
/// a `Value` map, which [`FromBinary::from_parts`] checks by the same rules as
/// the full path. Building no `Value` for each of a query's numbers is most of
/// a JSON search's parse (see `a_json_search_parses_fast_and_as_the_full_path_does`
/// for the equality; bench/results/HISTORY.md for the time). `None`, for the
/// full path and its located errors, on anything unusual: a value that is not
/// a number or not finite as an f32, rows of unequal or zero length, a batch
/// of more than `max_batch` or none, a repeated key, any field's error.
pub(crate) fn fast_search<T: FromBinary>(bytes: &[u8], field: &'static str, config: &ServerConfig) -> Option<T> {
    use serde::de::DeserializeSeed;
    let seed = FastSearchBody { field, batch: T::BATCH, max_rows: config.max_batch };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let (vectors, dim, fields) = seed.deserialize(&mut de).ok()?;
    de.end().ok()?;
    let mut errors = Vec::new();
    let request = T::from_parts(&fields, Some(vectors?), dim, config, &mut errors)?;
    errors.is_empty().then_some(request)
}

/// What [`fast_search`] reads: (the vectors row-major, their dimension, the other fields).
struct FastSearchBody {
    field: &'static str,
    batch: bool,
    max_rows: usize,
}

type FastParts = (Option<Vec<f32>>, usize, Map<String, Value>);

impl<'de> serde::de::DeserializeSeed<'de> for FastSearchBody {
    type Value = FastParts;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<FastParts, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for FastSearchBody {
    type Value = FastParts;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a search body")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<FastParts, A::Error> {
        use serde::de::Error;
        let (mut vectors, mut dim, mut fields) = (None, 0, Map::new());
        while let Some(key) = map.next_key::<String>()? {
            if key == self.field {
                if vectors.is_some() {
                    return Err(A::Error::custom("repeated key"));
                }
                let mut out = Vec::new();
                if self.batch {
                    let rows = map.next_value_seed(FastRows { out: &mut out, max_rows: self.max_rows })?;
                    dim = out.len() / rows;
                } else {
                    map.next_value_seed(FastRow { out: &mut out, len: None })?;
                    dim = out.len();
                }
                vectors = Some(out);
            } else {
                // As the full path reads them: a key repeated at any depth is an error.
                let crate::extract::NoDuplicateKeys(value) = map.next_value()?;
                if fields.insert(key, value).is_some() {
                    return Err(A::Error::custom("repeated key"));
                }
            }
        }
        Ok((vectors, dim, fields))
    }
}

/// One vector appended to `out`: JSON numbers read as f64 and narrowed, as
/// [`parse_vector`] does; of `len` values when given.
struct FastRow<'a> {
    out: &'a mut Vec<f32>,
    len: Option<usize>,
}

impl<'de> serde::de::DeserializeSeed<'de> for FastRow<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for FastRow<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of numbers")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        use serde::de::Error;
        let start = self.out.len();
        self.out.reserve(self.len.unwrap_or(seq.size_hint().unwrap_or(0)));
        while let Some(x) = seq.next_element::<f64>()? {
            let x = x as f32;
            if !x.is_finite() {
                return Err(A::Error::custom("not a finite f32"));
            }
            self.out.push(x);
        }
        match self.len {
            Some(len) if self.out.len() - start != len => Err(A::Error::custom("rows of unequal length")),
            _ => Ok(()),
        }
    }
}

/// A batch's vectors appended to `out`, all of the first one's nonzero length;
/// the number of rows, 1 to `max_rows`.
struct FastRows<'a> {
    out: &'a mut Vec<f32>,
    max_rows: usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for FastRows<'_> {
    type Value = usize;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<usize, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for FastRows<'_> {
    type Value = usize;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of lists of numbers")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        use serde::de::Error;
        let (mut rows, mut len) = (0, None);
        while seq.next_element_seed(FastRow { out: &mut *self.out, len })?.is_some() {
            rows += 1;
            if rows > self.max_rows {
                return Err(A::Error::custom("too many rows"));
            }
            if len.is_none() {
                if self.out.is_empty() {
                    return Err(A::Error::custom("an empty row"));
                }
                len = Some(self.out.len());
            }
        }
        if rows == 0 {
            return Err(A::Error::custom("no rows"));
        }
        Ok(rows)
    }
}

/// Element errors reported per list. pydantic reports all of them, but a
/// 4 MiB body of strings would then answer with ~100 MB of errors.
pub(crate) const MAX_ELEMENT_ERRORS: usize = 32;

/// Strings longer than this are not echoed back in `input`.
const MAX_ECHO_CHARS: usize = 256;

impl FieldError {
    pub(crate) fn new(loc: Vec<LocItem>, kind: &str, msg: impl Into<String>) -> Self {
        FieldError { loc, msg: msg.into(), kind: kind.to_owned(), input: None, ctx: None }
    }

    /// Echoes `value` as `input` when it is a short scalar (pydantic echoes
    /// everything; whole lists and objects would make errors as big as bodies).
    pub(crate) fn with_input(mut self, value: &Value) -> Self {
        self.input = match value {
            Value::Array(_) | Value::Object(_) => None,
            Value::String(s) if s.chars().count() > MAX_ECHO_CHARS => None,
            v => Some(v.clone()),
        };
        self
    }

    pub(crate) fn with_ctx(mut self, ctx: Value) -> Self {
        self.ctx = Some(ctx);
        self
    }
}

fn loc(items: &[LocItem]) -> Vec<LocItem> {
    items.to_vec()
}

/// The body must be a JSON object; anything else is one error at `["body"]`.
pub(crate) fn body_object(body: &Value) -> Result<&Map<String, Value>, Vec<FieldError>> {
    match body {
        Value::Object(map) => Ok(map),
        // FastAPI treats a `null` body as an absent one.
        Value::Null => Err(vec![FieldError::new(vec!["body".into()], "missing", "Field required")]),
        other => Err(vec![
            FieldError::new(
                vec!["body".into()],
                "model_attributes_type",
                "Input should be a valid dictionary or object to extract fields from",
            )
            .with_input(other),
        ]),
    }
}

/// A required field, or a `missing` error.
pub(crate) fn required<'a>(map: &'a Map<String, Value>, name: &str, errors: &mut Vec<FieldError>) -> Option<&'a Value> {
    let value = map.get(name);
    if value.is_none() {
        errors.push(FieldError::new(vec!["body".into(), name.into()], "missing", "Field required"));
    }
    value
}

/// A strict integer: a JSON number without a fractional part.
pub(crate) fn parse_int(value: &Value, at: &[LocItem], errors: &mut Vec<FieldError>) -> Option<i128> {
    let err = |kind: &str, msg: &str| FieldError::new(loc(at), kind, msg).with_input(value);
    match value {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                return Some(i128::from(i));
            }
            if let Some(u) = n.as_u64() {
                return Some(i128::from(u));
            }
            let f = n.as_f64().unwrap_or(f64::NAN);
            if f.fract() != 0.0 {
                errors.push(err(
                    "int_from_float",
                    "Input should be a valid integer, got a number with a fractional part",
                ));
                return None;
            }
            // `as` saturates: 1e300 becomes i128::MAX, still "too large".
            Some(f as i128)
        }
        Value::String(s) if s.trim().parse::<i128>().is_err() => {
            errors.push(err("int_parsing", "Input should be a valid integer, unable to parse string as an integer"));
            None
        }
        _ => {
            errors.push(err("int_type", "Input should be a valid integer"));
            None
        }
    }
}

/// A list of finite f32; every bad element is reported with its index.
pub(crate) fn parse_vector(value: &Value, at: &[LocItem], errors: &mut Vec<FieldError>) -> Option<Vec<f32>> {
    let Value::Array(items) = value else {
        errors.push(FieldError::new(loc(at), "list_type", "Input should be a valid list").with_input(value));
        return None;
    };
    let before = errors.len();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let bad = match item {
            // serde_json only yields finite f64s; a finite f64 can still
            // overflow f32 (1e39).
            Value::Number(n) => {
                let x = n.as_f64().unwrap_or(f64::NAN) as f32;
                out.push(x);
                (!x.is_finite()).then_some(("finite_number", "Input should be a finite number"))
            }
            Value::String(s) if s.trim().parse::<f64>().is_err() => {
                Some(("float_parsing", "Input should be a valid number, unable to parse string as a number"))
            }
            _ => Some(("float_type", "Input should be a valid number")),
        };
        if let Some((kind, msg)) = bad {
            if errors.len() - before < MAX_ELEMENT_ERRORS {
                let mut item_loc = loc(at);
                item_loc.push(i.into());
                errors.push(FieldError::new(item_loc, kind, msg).with_input(item));
            }
        }
    }
    (errors.len() == before).then_some(out)
}

/// `query_vectors`: 1 to `max` queries, each checked as [`parse_vector`] with
/// its index in `loc`. Element errors are capped over the whole batch.
pub(crate) fn parse_queries(value: &Value, at: &[LocItem], max: usize, errors: &mut Vec<FieldError>) -> Option<Vec<Vec<f32>>> {
    let Value::Array(items) = value else {
        errors.push(FieldError::new(loc(at), "list_type", "Input should be a valid list").with_input(value));
        return None;
    };
    // pydantic's length errors (`conlist(min_length=1, max_length=max)`). Too
    // long a batch is refused before its elements are looked at.
    let n = items.len();
    if let Some(e) = list_length_error(at, n, max) {
        errors.push(e);
        return None;
    }
    let mut queries = Vec::with_capacity(n);
    let (mut failed, mut reported, mut scratch) = (false, 0, Vec::new());
    for (i, item) in items.iter().enumerate() {
        let mut item_at = loc(at);
        item_at.push(i.into());
        match parse_vector(item, &item_at, &mut scratch) {
            Some(query) => queries.push(query),
            None => failed = true,
        }
        let room = MAX_ELEMENT_ERRORS - reported;
        reported += scratch.len().min(room);
        errors.extend(scratch.drain(..).take(room));
    }
    (!failed).then_some(queries)
}

/// pydantic's error for a list of `n` items that must hold 1 to `max`
/// (`conlist(min_length=1, max_length=max)`), if it does not.
pub(crate) fn list_length_error(at: &[LocItem], n: usize, max: usize) -> Option<FieldError> {
    let (kind, bound_name, bound, relation) = if n == 0 {
        ("too_short", "min_length", 1, "at least")
    } else if n > max {
        ("too_long", "max_length", max, "at most")
    } else {
        return None;
    };
    let plural = if bound == 1 { "" } else { "s" };
    let msg = format!("List should have {relation} {bound} item{plural} after validation, not {n}");
    Some(FieldError::new(loc(at), kind, msg).with_ctx(json!({ "field_type": "List", bound_name: bound, "actual_length": n })))
}

/// `k`: a strict integer in `1..=max_k`.
pub(crate) fn parse_k(map: &Map<String, Value>, config: &ServerConfig, errors: &mut Vec<FieldError>) -> Option<usize> {
    let k_at = [LocItem::from("body"), LocItem::from("k")];
    let v = required(map, "k", errors)?;
    let k = parse_int(v, &k_at, errors)?;
    let err = |kind: &str, msg: String, ctx: Value| FieldError::new(loc(&k_at), kind, msg).with_input(v).with_ctx(ctx);
    if k <= 0 {
        errors.push(err("greater_than", "Input should be greater than 0".into(), json!({ "gt": 0 })));
        None
    } else if k > config.max_k as i128 {
        let max = config.max_k;
        errors.push(err("less_than_equal", format!("Input should be less than or equal to {max}"), json!({ "le": max })));
        None
    } else {
        Some(k as usize)
    }
}

/// Largest `ef_search` a request may give.
pub(crate) const MAX_EF_SEARCH: usize = 100_000;

const PROFILE_NAMES: &str = "'low_latency', 'balanced' or 'high_accuracy'";

/// The optional settings both search requests accept: at most one of
/// `profile`, `recall_target`, `ef_search` (`null` is absent).
pub(crate) fn search_options(map: &Map<String, Value>, errors: &mut Vec<FieldError>) -> Option<SearchOptions> {
    let before = errors.len();
    let given = |name: &str| map.get(name).filter(|v| !v.is_null());
    let mut options = SearchOptions::default();
    if let Some(v) = given("profile") {
        let at = vec![LocItem::from("body"), LocItem::from("profile")];
        options.profile = serde_json::from_value(v.clone()).ok();
        if options.profile.is_none() {
            errors.push(
                FieldError::new(at, "enum", format!("Input should be {PROFILE_NAMES}"))
                    .with_input(v)
                    .with_ctx(json!({ "expected": PROFILE_NAMES })),
            );
        }
    }
    if let Some(v) = given("recall_target") {
        let at = vec![LocItem::from("body"), LocItem::from("recall_target")];
        let err = |kind: &str, msg: &str| FieldError::new(at.clone(), kind, msg).with_input(v);
        match v {
            Value::Number(n) => {
                let r = n.as_f64().unwrap_or(f64::NAN);
                if !(r > 0.0) {
                    errors.push(err("greater_than", "Input should be greater than 0").with_ctx(json!({ "gt": 0 })));
                } else if r > 1.0 {
                    errors.push(err("less_than_equal", "Input should be less than or equal to 1").with_ctx(json!({ "le": 1 })));
                } else {
                    options.recall_target = Some(r);
                }
            }
            Value::String(s) if s.trim().parse::<f64>().is_err() => {
                errors.push(err("float_parsing", "Input should be a valid number, unable to parse string as a number"));
            }
            _ => errors.push(err("float_type", "Input should be a valid number")),
        }
    }
    if let Some(v) = given("ef_search") {
        let at = [LocItem::from("body"), LocItem::from("ef_search")];
        if let Some(ef) = parse_int(v, &at, errors) {
            let err = |kind: &str, msg: String, ctx: Value| FieldError::new(loc(&at), kind, msg).with_input(v).with_ctx(ctx);
            if ef < 1 {
                errors.push(err("greater_than_equal", "Input should be greater than or equal to 1".into(), json!({ "ge": 1 })));
            } else if ef > MAX_EF_SEARCH as i128 {
                let msg = format!("Input should be less than or equal to {MAX_EF_SEARCH}");
                errors.push(err("less_than_equal", msg, json!({ "le": MAX_EF_SEARCH })));
            } else {
                options.ef_search = Some(ef as usize);
            }
        }
    }
    let named: Vec<&str> = ["profile", "recall_target", "ef_search"].into_iter().filter(|n| given(n).is_some()).collect();
    if named.len() > 1 {
        let reason = format!("give at most one of profile, recall_target and ef_search (got {})", named.join(", "));
        errors.push(
            FieldError::new(vec!["body".into()], "value_error", format!("Value error, {reason}"))
                .with_ctx(json!({ "error": reason })),
        );
    }
    (errors.len() == before).then_some(options)
}

/// Every field of `map` not in `known` is an error, as with pydantic's
/// `extra="forbid"`: a misspelt or unsupported option (`filter`, `metric`)
/// must not be silently dropped from a search that then answers 200.
pub(crate) fn unknown_fields(map: &Map<String, Value>, known: &[&str], errors: &mut Vec<FieldError>) {
    for (name, value) in map.iter().filter(|(name, _)| !known.contains(&name.as_str())) {
        let at = vec![LocItem::from("body"), LocItem::from(name.as_str())];
        errors.push(FieldError::new(at, "extra_forbidden", "Extra inputs are not permitted").with_input(value));
    }
}

const SEARCH_FIELDS: &[&str] = &["query_vector", "k", "profile", "recall_target", "ef_search"];
const SEARCH_BATCH_FIELDS: &[&str] = &["query_vectors", "k", "profile", "recall_target", "ef_search"];
/// The fields of both searches but their vectors: what a binary body's query string may hold.
const SEARCH_QUERY_FIELDS: &[&str] = &["k", "profile", "recall_target", "ef_search"];

impl FromBinary for SearchRequest {
    const BATCH: bool = false;
    const SEARCHED: Searched = Searched::Index;
    const FIELDS: &'static [&'static str] = SEARCH_QUERY_FIELDS;

    fn from_parts(
        fields: &Map<String, Value>,
        vector: Option<Vec<f32>>,
        _dim: usize,
        config: &ServerConfig,
        errors: &mut Vec<FieldError>,
    ) -> Option<Self> {
        let k = parse_k(fields, config, errors);
        let o = search_options(fields, errors);
        unknown_fields(fields, Self::FIELDS, errors);
        let (k, o) = (k?, o?);
        Some(SearchRequest { query_vector: vector?, k, profile: o.profile, recall_target: o.recall_target, ef_search: o.ef_search })
    }
}

impl FromBinary for SearchBatchRequest {
    const BATCH: bool = true;
    const SEARCHED: Searched = Searched::Index;
    const FIELDS: &'static [&'static str] = SEARCH_QUERY_FIELDS;

    fn from_parts(
        fields: &Map<String, Value>,
        vectors: Option<Vec<f32>>,
        dim: usize,
        config: &ServerConfig,
        errors: &mut Vec<FieldError>,
    ) -> Option<Self> {
        let k = parse_k(fields, config, errors);
        let o = search_options(fields, errors);
        unknown_fields(fields, Self::FIELDS, errors);
        let (k, o) = (k?, o?);
        let query_vectors = crate::binary::rows(&vectors?, dim);
        Some(SearchBatchRequest { query_vectors, k, profile: o.profile, recall_target: o.recall_target, ef_search: o.ef_search })
    }
}

impl FromBody for SearchRequest {
    fn fast(bytes: &[u8], config: &ServerConfig) -> Option<Self> {
        fast_search(bytes, "query_vector", config)
    }

    fn from_body(body: &Value, config: &ServerConfig) -> Result<Self, Vec<FieldError>> {
        let map = body_object(body)?;
        let mut errors = Vec::new();
        let query_at = [LocItem::from("body"), LocItem::from("query_vector")];
        let query = required(map, "query_vector", &mut errors)
            .and_then(|v| parse_vector(v, &query_at, &mut errors));
        let k = parse_k(map, config, &mut errors);
        let options = search_options(map, &mut errors);
        unknown_fields(map, SEARCH_FIELDS, &mut errors);
        match (query, k, options) {
            (Some(query_vector), Some(k), Some(o)) if errors.is_empty() => Ok(SearchRequest {
                query_vector,
                k,
                profile: o.profile,
                recall_target: o.recall_target,
                ef_search: o.ef_search,
            }),
            _ => Err(errors),
        }
    }
}

impl FromBody for SearchBatchRequest {
    fn fast(bytes: &[u8], config: &ServerConfig) -> Option<Self> {
        fast_search(bytes, "query_vectors", config)
    }

    fn from_body(body: &Value, config: &ServerConfig) -> Result<Self, Vec<FieldError>> {
        let map = body_object(body)?;
        let mut errors = Vec::new();
        let at = [LocItem::from("body"), LocItem::from("query_vectors")];
        let queries = required(map, "query_vectors", &mut errors)
            .and_then(|v| parse_queries(v, &at, config.max_batch, &mut errors));
        let k = parse_k(map, config, &mut errors);
        let options = search_options(map, &mut errors);
        unknown_fields(map, SEARCH_BATCH_FIELDS, &mut errors);
        match (queries, k, options) {
            (Some(query_vectors), Some(k), Some(o)) if errors.is_empty() => Ok(SearchBatchRequest {
                query_vectors,
                k,
                profile: o.profile,
                recall_target: o.recall_target,
                ef_search: o.ef_search,
            }),
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: Value) -> Result<SearchRequest, Vec<FieldError>> {
        SearchRequest::from_body(&body, &ServerConfig::default())
    }

    fn kinds(errors: &[FieldError]) -> Vec<(String, String)> {
        errors.iter().map(|e| (serde_json::to_string(&e.loc).unwrap(), e.kind.clone())).collect()
    }

    #[test]
    fn accepts_a_valid_body_and_integral_floats() {
        let r = check(json!({"query_vector": [1, 0.5, -2e-3], "k": 10.0})).unwrap();
        assert_eq!((r.query_vector.clone(), r.k, r.options()), (vec![1.0, 0.5, -0.002], 10, SearchOptions::default()));
    }

    #[test]
    fn reports_every_problem_with_its_location() {
        let errors = check(json!({"query_vector": [1, "a", null, "2", 1e39, true], "k": "10"})).unwrap_err();
        assert_eq!(
            kinds(&errors),
            vec![
                (r#"["body","query_vector",1]"#.into(), "float_parsing".into()),
                (r#"["body","query_vector",2]"#.into(), "float_type".into()),
                (r#"["body","query_vector",3]"#.into(), "float_type".into()),
                (r#"["body","query_vector",4]"#.into(), "finite_number".into()),
                (r#"["body","query_vector",5]"#.into(), "float_type".into()),
                (r#"["body","k"]"#.into(), "int_type".into()),
            ]
        );
    }

    #[test]
    fn huge_and_tiny_k_are_range_errors() {
        for (k, kind) in
            [(json!(1e300), "less_than_equal"), (json!(u64::MAX), "less_than_equal"), (json!(i64::MIN), "greater_than")]
        {
            let errors = check(json!({"query_vector": [1], "k": k})).unwrap_err();
            assert_eq!(errors.len(), 1);
            assert_eq!(errors[0].kind, kind);
        }
        assert_eq!(check(json!({"query_vector": [1], "k": "ten"})).unwrap_err()[0].kind, "int_parsing");
    }

    #[test]
    fn search_options_are_checked() {
        let base = || json!({"query_vector": [1, 2], "k": 3});
        let with = |key: &str, v: Value| {
            let mut b = base();
            b[key] = v;
            check(b)
        };
        assert_eq!(check(base()).unwrap().options(), SearchOptions::default());
        let r = with("profile", json!("high_accuracy")).unwrap();
        assert_eq!(r.options().profile, Some(crate::models::SearchProfile::HighAccuracy));
        assert_eq!(with("recall_target", json!(1)).unwrap().options().recall_target, Some(1.0));
        assert_eq!(with("ef_search", json!(128.0)).unwrap().options().ef_search, Some(128));
        assert_eq!(with("profile", Value::Null).unwrap().options(), SearchOptions::default(), "null is absent");
        for (key, v, kind) in [
            ("profile", json!("fast"), "enum"),
            ("profile", json!(3), "enum"),
            ("profile", json!("Balanced"), "enum"),
            ("recall_target", json!(0), "greater_than"),
            ("recall_target", json!(-0.5), "greater_than"),
            ("recall_target", json!(1.01), "less_than_equal"),
            ("recall_target", json!("high"), "float_parsing"),
            ("recall_target", json!(true), "float_type"),
            ("ef_search", json!(0), "greater_than_equal"),
            ("ef_search", json!(MAX_EF_SEARCH + 1), "less_than_equal"),
            ("ef_search", json!(12.5), "int_from_float"),
            ("ef_search", json!("64"), "int_type"),
        ] {
            let errors = with(key, v.clone()).unwrap_err();
            assert_eq!(kinds(&errors), vec![(format!(r#"["body","{key}"]"#), kind.to_owned())], "{key}={v}");
        }
        let mut both = base();
        both["profile"] = json!("balanced");
        both["ef_search"] = json!(64);
        let errors = check(both).unwrap_err();
        assert_eq!(kinds(&errors), vec![(r#"["body"]"#.to_owned(), "value_error".to_owned())]);
        assert!(errors[0].msg.contains("at most one of"), "{}", errors[0].msg);
    }

    #[test]
    fn unknown_fields_are_each_refused_with_the_other_problems() {
        let body = json!({"query_vector": [1, 2], "k": 3, "filter": {"tag": "a"}, "metric": "cosine"});
        let errors = check(body).unwrap_err();
        assert_eq!(
            kinds(&errors),
            vec![
                (r#"["body","filter"]"#.to_owned(), "extra_forbidden".to_owned()),
                (r#"["body","metric"]"#.to_owned(), "extra_forbidden".to_owned()),
            ]
        );
        assert_eq!(errors[0].msg, "Extra inputs are not permitted");
        assert_eq!((&errors[0].input, &errors[1].input), (&None, &Some(json!("cosine"))), "objects are not echoed");
        assert_eq!(check(json!({"query_vector": [1], "k": 1, "nprobe": null})).unwrap_err()[0].input, Some(Value::Null));
        // Reported with every other problem, after them (as pydantic does).
        let errors = check(json!({"query_vector": [1, "a"], "k": 0, "metric": "ip"})).unwrap_err();
        assert_eq!(
            kinds(&errors),
            vec![
                (r#"["body","query_vector",1]"#.to_owned(), "float_parsing".to_owned()),
                (r#"["body","k"]"#.to_owned(), "greater_than".to_owned()),
                (r#"["body","metric"]"#.to_owned(), "extra_forbidden".to_owned()),
            ]
        );
        // Each body knows its own fields: `query_vector` is unknown to a batch.
        let batch = |body: Value| SearchBatchRequest::from_body(&body, &ServerConfig::default());
        let errors = batch(json!({"query_vector": [1], "k": 1})).unwrap_err();
        assert_eq!(
            kinds(&errors),
            vec![
                (r#"["body","query_vectors"]"#.to_owned(), "missing".to_owned()),
                (r#"["body","query_vector"]"#.to_owned(), "extra_forbidden".to_owned()),
            ]
        );
        let ok = json!({"query_vectors": [[1]], "k": 1, "profile": "balanced", "recall_target": null, "ef_search": null});
        assert!(batch(ok).is_ok());
        // The serde derive (what the OpenAPI schema is made from) agrees.
        assert!(serde_json::from_value::<SearchRequest>(json!({"query_vector": [1.0], "k": 1, "metric": "l2"})).is_err());
    }

    #[test]
    fn element_errors_are_capped() {
        let errors = check(json!({"query_vector": vec!["x"; 1000], "k": 1})).unwrap_err();
        assert_eq!(errors.len(), MAX_ELEMENT_ERRORS);
    }

    #[test]
    fn empty_vector_is_left_to_the_dimension_check() {
        assert_eq!(check(json!({"query_vector": [], "k": 1})).unwrap().query_vector, Vec::<f32>::new());
    }

    #[test]
    fn long_strings_are_not_echoed() {
        let long = "x".repeat(MAX_ECHO_CHARS + 1);
        let errors = check(json!({"query_vector": [long], "k": "abc"})).unwrap_err();
        assert_eq!(errors[0].input, None);
        assert_eq!(errors[1].input, Some(json!("abc")));
    }

    /// Bodies of every kind, valid and not, from a fixed seed: whenever the
    /// fast path answers, the full path accepts the body with the same request;
    /// and it answers every body a client usually sends.
    #[test]
    fn a_json_search_parses_fast_and_as_the_full_path_does() {
        use crate::collections::{CollectionSearchBatchRequest, CollectionSearchRequest};
        let seed = std::cell::Cell::new(0x9e37_79b9_7f4a_7c15_u64);
        let next = |n: u64| {
            let mut x = seed.get();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            seed.set(x);
            x % n
        };
        let config = ServerConfig { max_batch: 4, ..ServerConfig::default() };
        fn same<T: FromBody + PartialEq + std::fmt::Debug>(body: &str, config: &ServerConfig) -> Option<bool> {
            let fast = T::fast(body.as_bytes(), config);
            // The full path as the extractor takes it.
            let full = crate::extract::parse_body(body.as_bytes(), true).ok().map(|v| T::from_body(&v, config));
            if let Some(fast) = &fast {
                assert_eq!(full.as_ref().and_then(|r| r.as_ref().ok()), Some(fast), "{body}");
            }
            Some(fast.is_some())
        }
        let number = |clean: bool| -> String {
            let x = (next(2_000_001) as f64 - 1e6) / 7e5;
            match next(if clean { 5 } else { 12 }) {
                0 => format!("{x:.9}"),
                1 => format!("{x}"),
                2 => format!("{:e}", x / 1e3),
                3 => format!("{}", next(7) as i64 - 3),
                4 => format!("{:.9}", (x as f32) as f64),
                5 => "1e39".into(),
                6 => "\"0.5\"".into(),
                7 => "true".into(),
                8 => "null".into(),
                9 => "123456789012345678901234567890".into(),
                10 => "-3.4028235e38".into(),
                _ => "[1]".into(),
            }
        };
        let (mut answered, mut clean_bodies) = (0, 0);
        for round in 0..4000 {
            let clean = round % 2 == 0;
            let row = |n: usize| format!("[{}]", (0..n).map(|_| number(clean)).collect::<Vec<_>>().join(","));
            let dim = 1 + round % 5;
            let single = row(dim);
            let rows = 1 + round % 4;
            let batch = format!("[{}]", (0..rows).map(|_| row(if clean || round % 3 > 0 { dim } else { 1 + round % 7 })).collect::<Vec<_>>().join(","));
            let mut extra: Vec<String> = Vec::new();
            let options: &[&str] = if clean {
                &["", r#""profile": "low_latency""#, r#""recall_target": 0.97"#, r#""ef_search": 40"#, r#""profile": "high_accuracy""#]
            } else {
                &[r#""profile": null"#, r#""profile": "fast""#, r#""recall_target": 1.5"#, r#""ef_search": 0"#, r#""ef_search": 40, "profile": "balanced""#, r#""other": {"a": [1]}"#, r#""k": 3"#]
            };
            let option = options[next(options.len() as u64) as usize];
            if !option.is_empty() {
                extra.push(option.into());
            }
            let k = if clean { format!("{}", 1 + next(20)) } else { ["0", "10.0", "\"10\"", "1000", "2.5", "-1"][next(6) as usize].to_string() };
            let collection_extra: &[&str] = if clean {
                &["", r#""with_payload": true"#, r#""with_vector": false"#, r#""filter": {"must": [{"key": "tag", "match": {"value": "a"}}]}"#]
            } else {
                &[
                    r#""with_payload": 1"#,
                    r#""filter": {"must": [{"key": "", "match": {}}]}"#,
                    r#""vector": [1]"#,
                    r#""filter": {"must_not": [{"has_id": [1]}], "must_not": []}"#,
                    r#""filter": {"must": [{"key": "price", "range": {"lt": 4, "lt": 100}}]}"#,
                ]
            };
            let c = collection_extra[next(collection_extra.len() as u64) as usize];
            let tail = |extra: &[String]| extra.iter().map(|e| format!(", {e}")).collect::<String>();
            let results = [
                same::<SearchRequest>(&format!(r#"{{"query_vector": {single}, "k": {k}{}}}"#, tail(&extra)), &config),
                same::<SearchBatchRequest>(&format!(r#"{{"k": {k}, "query_vectors": {batch}{}}}"#, tail(&extra)), &config),
                same::<CollectionSearchRequest>(
                    &format!(r#"{{"vector": {single}{}, "k": {k}{}}}"#, if c.is_empty() { String::new() } else { format!(", {c}") }, tail(&extra)),
                    &config,
                ),
                same::<CollectionSearchBatchRequest>(&format!(r#"{{"vectors": {batch}, "k": {k}{}}}"#, tail(&extra)), &config),
            ];
            if clean {
                clean_bodies += results.len();
                answered += results.iter().filter(|r| **r == Some(true)).count();
            }
        }
        assert_eq!(answered, clean_bodies, "every usual body takes the fast path");
        // A repeated key, trailing bytes, a body that is not an object: the full path.
        for body in [
            r#"{"query_vector": [1, 2], "query_vector": [3, 4], "k": 1}"#,
            r#"{"query_vector": [1, 2], "k": 1, "k": 2}"#,
            r#"{"query_vector": [1, 2], "k": 1, "other": {"a": 1, "a": 2}}"#,
            r#"{"query_vector": [1, 2], "k": 1} x"#,
            r#"[[1, 2], 1]"#,
            r#"{"query_vector": [], "k": 1}"#,
        ] {
            let fast = SearchRequest::fast(body.as_bytes(), &config);
            assert!(fast.is_none() || body.contains("[]"), "{body}");
            same::<SearchRequest>(body, &config);
        }
        assert_eq!(same::<SearchBatchRequest>(r#"{"query_vectors": [[], []], "k": 1}"#, &config), Some(false));
        assert_eq!(same::<SearchBatchRequest>(r#"{"query_vectors": [], "k": 1}"#, &config), Some(false));
        assert_eq!(same::<SearchBatchRequest>(r#"{"query_vectors": [[1], [2], [3], [4], [5]], "k": 1}"#, &config), Some(false));
    }
}
