//! Payload filters: the conditions a search's answers must meet, in the
//! shape Qdrant users know (`must` / `should` / `must_not` lists of
//! conditions, nested filters as conditions).
//!
//! This module is the *meaning* of a filter: [`Filter::matches`] decides one
//! point from its id and payload. The payload indexes
//! ([`crate::payload_index`]) answer the same questions for a whole segment
//! at once and must agree with it (a property test holds them to it).
//!
//! The rules:
//! - a key is a dotted path (`meta.source`); an array met on the way is
//!   walked into element by element (`tags` and `items.name` reach into
//!   arrays; `items[].name` is accepted and means the same);
//! - the values at a key are the leaves the path reaches, arrays flattened
//!   one level, `null`s left out;
//! - `match` holds when one of the values equals one of the wanted values:
//!   a string equals a keyword, an integer (a JSON number without a
//!   fraction or exponent that fits i64) an integer, a boolean a boolean;
//! - `range` holds when one of the values is a number inside the bounds
//!   (compared as f64);
//! - `is_empty` holds when the key has no value (missing, `null`, `[]`);
//! - `has_id` holds for the listed ids (integers as `HasId`, UUIDs as
//!   `HasUuid`, which a collection turns into `HasId` of their keys before
//!   it searches: [`Filter::resolve_uuids`]);
//! - a filter holds when every `must` holds, at least one `should` holds
//!   (if any is given), and no `must_not` holds. The empty filter holds for
//!   every point.

use serde_json::Value;

/// A search filter.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    pub must: Vec<Condition>,
    pub should: Vec<Condition>,
    pub must_not: Vec<Condition>,
}

/// One condition of a filter.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// One of the key's values equals one of `values` (`match.value`: one,
    /// `match.any`: several; none matches nothing).
    Match { key: KeyPath, values: Vec<MatchValue> },
    /// One of the key's values is a number within `range`.
    Range { key: KeyPath, range: NumRange },
    /// The point's key is one of these (integer ids are their own keys).
    HasId(Vec<u64>),
    /// The point's id is one of these UUIDs. Meets no point until resolved
    /// to keys ([`Filter::resolve_uuids`]).
    HasUuid(Vec<u128>),
    /// The key has no value.
    IsEmpty(KeyPath),
    /// A nested filter.
    Nested(Box<Filter>),
}

/// A value `match` compares with.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MatchValue {
    Keyword(String),
    Integer(i64),
    Bool(bool),
}

/// Bounds of a `range` condition; at least one is set.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct NumRange {
    pub gt: Option<f64>,
    pub gte: Option<f64>,
    pub lt: Option<f64>,
    pub lte: Option<f64>,
}

impl NumRange {
    pub fn contains(&self, x: f64) -> bool {
        self.gt.is_none_or(|b| x > b)
            && self.gte.is_none_or(|b| x >= b)
            && self.lt.is_none_or(|b| x < b)
            && self.lte.is_none_or(|b| x <= b)
    }
}

/// A checked dotted key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyPath {
    text: String,
    parts: Vec<String>,
}

/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 256;

impl KeyPath {
    /// Parses `a.b.c` (`a[].b` means `a.b`: the key's text is the dotted
    /// form without `[]`, so both name one index). Refuses an empty key or
    /// part, control characters, and keys longer than [`MAX_KEY_BYTES`].
    pub fn parse(text: &str) -> Result<KeyPath, String> {
        if text.is_empty() {
            return Err("must not be empty".into());
        }
        if text.len() > MAX_KEY_BYTES {
            return Err(format!("is {} bytes long; the limit is {MAX_KEY_BYTES}", text.len()));
        }
        if text.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        let mut parts = Vec::new();
        for part in text.split('.') {
            let part = part.strip_suffix("[]").unwrap_or(part);
            if part.is_empty() {
                return Err(format!("`{text}` has an empty part (keys are dotted names like `meta.source`)"));
            }
            if part.contains('[') || part.contains(']') {
                return Err(format!("`{text}`: only `[]` at the end of a part is understood"));
            }
            parts.push(part.to_string());
        }
        Ok(KeyPath { text: parts.join("."), parts })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The top-level key this path starts with.
    pub fn head(&self) -> &str {
        &self.parts[0]
    }

    /// The values at this key in `payload` (see the module's rules).
    pub fn values<'a>(&self, payload: &'a Value) -> Vec<&'a Value> {
        let mut out = Vec::new();
        collect(payload, &self.parts, &mut out);
        out
    }
}

fn collect<'a>(v: &'a Value, parts: &[String], out: &mut Vec<&'a Value>) {
    match (parts.split_first(), v) {
        (None, Value::Array(items)) => out.extend(items.iter().filter(|x| !x.is_null())),
        (None, Value::Null) => {}
        (None, v) => out.push(v),
        (Some((head, rest)), Value::Object(map)) => {
            if let Some(x) = map.get(head.as_str()) {
                collect(x, rest, out);
            }
        }
        (Some(_), Value::Array(items)) => {
            for x in items {
                if x.is_object() {
                    collect(x, parts, out);
                }
            }
        }
        (Some(_), _) => {}
    }
}

impl MatchValue {
    /// Whether the JSON value `v` is this value.
    pub fn equals(&self, v: &Value) -> bool {
        match (self, v) {
            (MatchValue::Keyword(s), Value::String(x)) => s == x,
            (MatchValue::Integer(i), Value::Number(n)) => n.as_i64() == Some(*i),
            (MatchValue::Bool(b), Value::Bool(x)) => b == x,
            _ => false,
        }
    }
}

impl Condition {
    /// Whether the point with `id` and `payload` (`None`: no payload) meets it.
    pub fn matches(&self, id: u64, payload: Option<&Value>) -> bool {
        self.matches_named(id, None, payload)
    }

    /// [`Condition::matches`] for the point of key `id` whose id is the UUID
    /// `uuid` (when it has one): `HasUuid` is decided by it.
    pub fn matches_named(&self, id: u64, uuid: Option<u128>, payload: Option<&Value>) -> bool {
        let values = |key: &KeyPath| payload.map(|p| key.values(p)).unwrap_or_default();
        match self {
            Condition::Match { key, values: want } => values(key).iter().any(|v| want.iter().any(|w| w.equals(v))),
            Condition::Range { key, range } => values(key).iter().any(|v| v.as_f64().is_some_and(|x| range.contains(x))),
            Condition::HasId(ids) => ids.contains(&id),
            Condition::HasUuid(us) => uuid.is_some_and(|u| us.contains(&u)),
            Condition::IsEmpty(key) => values(key).is_empty(),
            Condition::Nested(f) => f.matches_named(id, uuid, payload),
        }
    }
}

impl Filter {
    /// Whether the point with `id` and `payload` passes.
    pub fn matches(&self, id: u64, payload: Option<&Value>) -> bool {
        self.matches_named(id, None, payload)
    }

    /// [`Filter::matches`] for the point of key `id` named `uuid`.
    pub fn matches_named(&self, id: u64, uuid: Option<u128>, payload: Option<&Value>) -> bool {
        self.must.iter().all(|c| c.matches_named(id, uuid, payload))
            && (self.should.is_empty() || self.should.iter().any(|c| c.matches_named(id, uuid, payload)))
            && !self.must_not.iter().any(|c| c.matches_named(id, uuid, payload))
    }

    /// How many UUIDs `has_id` conditions name anywhere in the filter.
    pub fn uuid_count(&self) -> usize {
        self.conditions().iter().map(|c| if let Condition::HasUuid(us) = c { us.len() } else { 0 }).sum()
    }

    /// Whether the filter holds for every point (no condition at all).
    pub fn is_empty(&self) -> bool {
        self.must.is_empty() && self.should.is_empty() && self.must_not.is_empty()
    }

    /// Every condition, nested ones included (depth first).
    pub fn conditions(&self) -> Vec<&Condition> {
        let mut out = Vec::new();
        for c in self.must.iter().chain(&self.should).chain(&self.must_not) {
            out.push(c);
            if let Condition::Nested(f) = c {
                out.extend(f.conditions());
            }
        }
        out
    }

    /// Whether a `has_id` names a UUID anywhere in the filter.
    pub fn has_uuids(&self) -> bool {
        self.conditions().iter().any(|c| matches!(c, Condition::HasUuid(_)))
    }

    /// The filter with every UUID of a `has_id` replaced by its key
    /// (`key_of`; a UUID without one names no point).
    pub fn resolve_uuids(&self, key_of: &dyn Fn(u128) -> Option<u64>) -> Filter {
        let list = |cs: &[Condition]| {
            cs.iter()
                .map(|c| match c {
                    Condition::HasUuid(us) => Condition::HasId(us.iter().filter_map(|&u| key_of(u)).collect()),
                    Condition::Nested(f) => Condition::Nested(Box::new(f.resolve_uuids(key_of))),
                    c => c.clone(),
                })
                .collect()
        };
        Filter { must: list(&self.must), should: list(&self.should), must_not: list(&self.must_not) }
    }

    /// The ids `has_id` conditions name anywhere in the filter.
    pub fn named_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> =
            self.conditions().into_iter().filter_map(|c| if let Condition::HasId(ids) = c { Some(ids.iter().copied()) } else { None }).flatten().collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(s: &str) -> KeyPath {
        KeyPath::parse(s).unwrap()
    }

    #[test]
    fn keys_walk_objects_and_arrays() {
        let p = json!({"tag": ["a", "b", null], "meta": {"source": "wiki", "n": 3}, "items": [{"name": "x"}, {"name": ["y", "z"]}, 5]});
        let strs = |k: &str| key(k).values(&p).into_iter().map(|v| v.to_string()).collect::<Vec<_>>();
        assert_eq!(strs("tag"), ["\"a\"", "\"b\""]);
        assert_eq!(strs("meta.source"), ["\"wiki\""]);
        assert_eq!(strs("items.name"), ["\"x\"", "\"y\"", "\"z\""]);
        assert_eq!(strs("items[].name"), strs("items.name"));
        assert_eq!(key("items[].name"), key("items.name"), "one key, one index");
        assert_eq!(key("items[].name").as_str(), "items.name");
        assert!(KeyPath::parse("a\nb").is_err());
        assert!(KeyPath::parse("a\u{7f}b").is_err());
        assert!(strs("meta.missing").is_empty());
        assert!(strs("tag.deeper").is_empty());
        assert!(KeyPath::parse("").is_err());
        assert!(KeyPath::parse("a..b").is_err());
        assert!(KeyPath::parse("a[0]").is_err());
        assert!(KeyPath::parse(&"x".repeat(300)).is_err());
    }

    #[test]
    fn conditions_mean_what_the_module_says() {
        let p = json!({"tag": ["news", "sport"], "price": 3.5, "n": 7, "flag": true, "empty": [], "nothing": null});
        let m = |k: &str, v: MatchValue| Condition::Match { key: key(k), values: vec![v] };
        assert!(m("tag", MatchValue::Keyword("news".into())).matches(1, Some(&p)));
        assert!(!m("tag", MatchValue::Keyword("tech".into())).matches(1, Some(&p)));
        assert!(m("n", MatchValue::Integer(7)).matches(1, Some(&p)));
        assert!(!m("price", MatchValue::Integer(3)).matches(1, Some(&p)), "3.5 is not the integer 3");
        assert!(!m("n", MatchValue::Keyword("7".into())).matches(1, Some(&p)), "no type coercion");
        assert!(m("flag", MatchValue::Bool(true)).matches(1, Some(&p)));
        let r = |gte, lt| Condition::Range { key: key("price"), range: NumRange { gte, lt, ..Default::default() } };
        assert!(r(Some(3.0), Some(4.0)).matches(1, Some(&p)));
        assert!(!r(Some(3.5 + f64::EPSILON * 4.0), None).matches(1, Some(&p)));
        assert!(Condition::IsEmpty(key("empty")).matches(1, Some(&p)));
        assert!(Condition::IsEmpty(key("nothing")).matches(1, Some(&p)));
        assert!(Condition::IsEmpty(key("missing")).matches(1, Some(&p)));
        assert!(Condition::IsEmpty(key("tag")).matches(1, None), "no payload: every key is empty");
        assert!(!Condition::IsEmpty(key("tag")).matches(1, Some(&p)));
        assert!(Condition::HasId(vec![1, 2]).matches(2, None));
        let f = Filter {
            must: vec![m("tag", MatchValue::Keyword("news".into()))],
            should: vec![Condition::HasId(vec![9]), m("flag", MatchValue::Bool(true))],
            must_not: vec![Condition::Nested(Box::new(Filter { must: vec![Condition::HasId(vec![5])], ..Default::default() }))],
        };
        assert!(f.matches(1, Some(&p)));
        assert!(!f.matches(5, Some(&p)));
        assert!(Filter::default().matches(1, None));
        assert_eq!(f.named_ids(), vec![5, 9]);
    }
}
