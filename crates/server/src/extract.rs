//! [`ValidJson`]: the JSON body extractor with the API's own rejections.
//! It reads the body as bytes under the size limit (413), decides like FastAPI
//! whether it is JSON (by `Content-Type`), parses it (syntax errors are a 422
//! `json_invalid` at the character position) and hands it to the request
//! type's rules in `validate.rs`. [`SearchBody`]: the search routes' extractor,
//! which also takes binary bodies (`binary.rs`).

use crate::error::ApiError;
use crate::models::FieldError;
use crate::state::AppState;
use crate::binary::FromBinary;
use crate::validate::FromBody;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde_json::{Value, json};

/// A request body parsed as JSON and validated into `T`.
#[derive(Debug)]
pub(crate) struct ValidJson<T>(pub T);

/// Bodies larger than this are parsed on the blocking pool: a 4 MiB array
/// takes ~0.8 s to parse and validate, which must not stall the async workers
/// that answer `/` and every other request (measured in review).
const INLINE_PARSE_BYTES: usize = 64 * 1024;

impl<T: FromBody + Send + 'static> FromRequest<AppState> for ValidJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let is_json = match req.headers().get(header::CONTENT_TYPE) {
            None => true,
            Some(value) => value.to_str().is_ok_and(is_json_content_type),
        };
        let bytes = read_body(req, state).await?;
        let small = bytes.len() <= INLINE_PARSE_BYTES;
        let config = state.config().clone();
        let parse = move || {
            if let Some(fast) = is_json.then(|| T::fast(&bytes, &config)).flatten() {
                return Ok(fast);
            }
            parse_body(&bytes, is_json).and_then(|body| T::from_body(&body, &config))
        };
        let parsed = if small { parse() } else { tokio::task::spawn_blocking(parse).await? };
        parsed.map(ValidJson).map_err(ApiError::Validation)
    }
}

/// A search request: a JSON body as [`ValidJson`] reads it, or a binary one
/// (`application/octet-stream`, `application/x-npy`) with its other fields in
/// the query string (`binary.rs`). Either way the route's request type.
#[derive(Debug)]
pub(crate) struct SearchBody<T>(pub T);

impl<T: FromBody + FromBinary + Send + 'static> FromRequest<AppState> for SearchBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        match crate::binary::encoding(req.headers()) {
            Some(encoding) => crate::binary::extract(req, state, encoding).await.map(SearchBody),
            None => ValidJson::<T>::from_request(req, state).await.map(|ValidJson(t)| SearchBody(t)),
        }
    }
}

/// The whole body, under the size limit (413).
pub(crate) async fn read_body(req: Request, state: &AppState) -> Result<Bytes, ApiError> {
    // A declared length past the limit is refused before any of the body
    // is waited for (a client announcing 20 GB gets its 413 at once).
    let limit = state.config().body_limit_bytes;
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    // `Bytes` honours the router's `DefaultBodyLimit` and stops reading
    // past it, so an oversized body costs at most the limit. The body
    // timeout layer limits each wait for a chunk; this bounds the whole
    // body (a byte every few seconds would otherwise hold a request open).
    let total = state.config().body_timeout;
    let read = tokio::time::timeout(total, Bytes::from_request(req, state)).await.map_err(|_| {
        tracing::info!(timeout_s = total.as_secs_f64(), "request body refused: slower than --body-timeout");
        ApiError::BodyTooSlow { secs: total.as_secs_f64() }
    })?;
    read.map_err(|rejection| match rejection {
        BytesRejection::FailedToBufferBody(e) if is_length_limit(&e) => ApiError::PayloadTooLarge { limit },
        BytesRejection::FailedToBufferBody(e) => ApiError::BodyRead(axum::Error::new(e)),
        other => ApiError::BodyRead(axum::Error::new(other)),
    })
}

fn is_length_limit(e: &axum::extract::rejection::FailedToBufferBody) -> bool {
    matches!(e, axum::extract::rejection::FailedToBufferBody::LengthLimitError(_))
}

/// `application/json` or any `application/*+json`, parameters ignored.
fn is_json_content_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.strip_prefix("application/") {
        Some(subtype) => subtype == "json" || subtype.ends_with("+json"),
        None => false,
    }
}

/// The body as JSON, or the error FastAPI gives for it.
pub(crate) fn parse_body(bytes: &[u8], is_json: bool) -> Result<Value, Vec<FieldError>> {
    if bytes.is_empty() {
        return Err(vec![FieldError::new(vec!["body".into()], "missing", "Field required")]);
    }
    if !is_json {
        // FastAPI hands non-JSON bodies to pydantic as raw bytes.
        return Err(vec![FieldError::new(
            vec!["body".into()],
            "model_attributes_type",
            "Input should be a valid dictionary or object to extract fields from",
        )]);
    }
    serde_json::from_slice::<NoDuplicateKeys>(bytes).map(|v| v.0).map_err(|e| {
        // Python reports a premature end at the end; serde_json at the last byte.
        let position = if e.is_eof() {
            String::from_utf8_lossy(bytes).chars().count()
        } else {
            char_position(bytes, e.line(), e.column())
        };
        // serde_json appends " at line L column C"; the position is in `loc`.
        let full = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let reason = full.strip_suffix(&suffix).unwrap_or(&full);
        vec![
            FieldError::new(vec!["body".into(), position.into()], "json_invalid", "JSON decode error")
                .with_ctx(json!({ "error": reason })),
        ]
    })
}

/// A JSON value whose objects repeat no key at any depth: `{"k": 3, "k": 5}`
/// is an error (`json_invalid` at the second key), not a silent last-wins.
pub(crate) struct NoDuplicateKeys(pub(crate) Value);

impl<'de> serde::Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(NoDuplicateKeys)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(NoDuplicateKeys(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format!("duplicate key `{key}`")));
            }
            let NoDuplicateKeys(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// The 0-based character index of serde_json's 1-based (line, byte column),
/// which is what Python's `JSONDecodeError.pos` (and so FastAPI's `loc`) holds.
fn char_position(bytes: &[u8], line: usize, column: usize) -> usize {
    let line_start: usize = bytes.split(|&b| b == b'\n').take(line.saturating_sub(1)).map(|l| l.len() + 1).sum();
    let end = (line_start + column.saturating_sub(1)).min(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        for ok in ["application/json", "Application/JSON; charset=utf-8", "application/vnd.api+json"] {
            assert!(is_json_content_type(ok), "{ok}");
        }
        for bad in ["text/plain", "application/x-www-form-urlencoded", "json", ""] {
            assert!(!is_json_content_type(bad), "{bad}");
        }
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        for body in [r#"{"k": 3, "k": 5}"#, r#"{"a": [{"x": 1, "x": 2}]}"#] {
            let errors = parse_body(body.as_bytes(), true).unwrap_err();
            assert_eq!(errors[0].kind, "json_invalid", "{body}");
            assert!(errors[0].ctx.as_ref().unwrap()["error"].as_str().unwrap().starts_with("duplicate key"), "{body}");
        }
        let v = parse_body(br#"{"k": 3, "q": [1, 2.5, -3, null, true, "s", {"k": 1}]}"#, true).unwrap();
        assert_eq!(v, json!({"k": 3, "q": [1, 2.5, -3, null, true, "s", {"k": 1}]}));
    }

    #[test]
    fn syntax_errors_carry_the_python_position() {
        // Python: json.loads('{"k": 1,}') -> "line 1 column 9 (char 8)".
        let errors = parse_body(br#"{"k": 1,}"#, true).unwrap_err();
        assert_eq!(serde_json::to_value(&errors[0].loc).unwrap(), json!(["body", 8]));
        assert_eq!(errors[0].kind, "json_invalid");
        assert_eq!(errors[0].ctx, Some(json!({"error": "trailing comma"})));
        let errors = parse_body(b"{\n\"k\": \xc3\xa9}", true).unwrap_err();
        assert_eq!(serde_json::to_value(&errors[0].loc).unwrap(), json!(["body", 7]));
    }

    #[test]
    fn overflowing_numbers_are_invalid_json() {
        let errors = parse_body(br#"{"k": 1e999}"#, true).unwrap_err();
        assert_eq!(errors[0].kind, "json_invalid");
    }
}
