//! Binary search bodies: `application/octet-stream` (raw little-endian f32,
//! row-major) and `application/x-npy` (a `.npy` float32 array: 1-D for one
//! query, 2-D for one query a row), so that a client sends its vectors
//! without printing and the server reads them without parsing decimal text.
//! The request's other fields (`k`, `profile`, `filter`, ...) come from the
//! query string, checked by the same rules as the JSON fields
//! (`validate.rs`) and located at `["query", name]`; problems of the data
//! are located at `["body", ...]`. A body that does not fit the dimension
//! searched is a 400 naming the body, as a JSON vector of the wrong length
//! is a 400 naming the field. The result is the route's JSON request type:
//! the handlers do not know which form a request came in.

use crate::error::ApiError;
use crate::extract::{NoDuplicateKeys, read_body};
use crate::models::{FieldError, LocItem};
use crate::state::{AppState, ServerConfig};
use axum::extract::{FromRequestParts, Path, Query, Request};
use axum::http::{HeaderMap, header};
use serde_json::{Map, Value, json};

/// A binary body's encoding, by its `Content-Type` (parameters ignored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// `application/octet-stream`: little-endian f32, row-major, nothing else.
    Raw,
    /// `application/x-npy`: a `.npy` file of dtype `<f4`, C order.
    Npy,
}

pub(crate) const OCTET_STREAM: &str = "application/octet-stream";
pub(crate) const NPY: &str = "application/x-npy";

/// The binary encoding a request declares, if any.
pub(crate) fn encoding(headers: &HeaderMap) -> Option<Encoding> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case(OCTET_STREAM) {
        Some(Encoding::Raw)
    } else if essence.eq_ignore_ascii_case(NPY) {
        Some(Encoding::Npy)
    } else {
        None
    }
}

/// Where the vectors a route searches take their dimension from.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Searched {
    /// The served index (`/search`, `/search/batch`).
    Index,
    /// The collection named in the path (`/collections/{name}/search...`).
    Collection,
}

/// A search request that may come with a binary body.
pub(crate) trait FromBinary: Sized {
    /// Whether the route takes many vectors (a raw body is cut into rows).
    const BATCH: bool;
    /// Where the dimension of the vectors comes from.
    const SEARCHED: Searched;
    /// The fields the query string may hold: the JSON body's, but the vectors.
    const FIELDS: &'static [&'static str];

    /// The request from its `fields` and its checked vectors (`None` when the
    /// body was refused: the fields are still checked, so that every problem
    /// is reported at once), row-major, `dim` values a row. Problems go to
    /// `errors`, located as if the fields were in the body (`["body", "k"]`);
    /// the caller moves them to the query.
    fn from_parts(
        fields: &Map<String, Value>,
        vectors: Option<Vec<f32>>,
        dim: usize,
        config: &ServerConfig,
        errors: &mut Vec<FieldError>,
    ) -> Option<Self>;
}

/// The rows of a row-major matrix of `dim` columns.
pub(crate) fn rows(values: &[f32], dim: usize) -> Vec<Vec<f32>> {
    values.chunks_exact(dim.max(1)).map(<[f32]>::to_vec).collect()
}

/// Reads a binary search request: the dimension searched, the fields from
/// the query string, the vectors from the body.
pub(crate) async fn extract<T: FromBinary>(req: Request, state: &AppState, encoding: Encoding) -> Result<T, ApiError> {
    let (mut parts, body) = req.into_parts();
    let dim = match T::SEARCHED {
        Searched::Index => state.index()?.dim(),
        Searched::Collection => {
            let Path(name) = Path::<String>::from_request_parts(&mut parts, state).await.map_err(|_| ApiError::NotFound)?;
            state.store().ok_or(ApiError::NotFound)?.get(&name)?.dimension()
        }
    };
    let (fields, mut errors) = query_fields(&parts.uri, T::FIELDS);
    let bytes = read_body(Request::from_parts(parts, body), state).await?;
    let config = state.config();
    let (vectors, shape_error) = match decode(&bytes, encoding, dim, T::BATCH, config.max_batch) {
        Ok(values) => (Some(values), None),
        Err(Refused::Invalid(data_errors)) => {
            errors.splice(0..0, data_errors);
            (None, None)
        }
        Err(Refused::Shape(e)) => (None, Some(e)),
    };
    let mut field_errors = Vec::new();
    let request = T::from_parts(&fields, vectors, dim, config, &mut field_errors);
    errors.extend(field_errors.into_iter().map(in_query));
    // As with JSON: what is invalid (422) before what does not fit the index (400).
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    if let Some(e) = shape_error {
        return Err(e);
    }
    request.ok_or_else(|| ApiError::Validation(Vec::new()))
}

/// An error located in the body as the JSON rules locate it, moved to the query.
pub(crate) fn in_query(mut error: FieldError) -> FieldError {
    if let Some(first @ LocItem::Key(_)) = error.loc.first_mut()
        && *first == LocItem::from("body")
    {
        *first = LocItem::from("query");
    }
    error
}

/// The query string as a JSON object of the route's fields: numbers for the
/// numeric fields, booleans for the flags, the filter parsed as JSON, text
/// for everything else (an unknown name is then refused by the route's
/// rules, naming it, as an unknown JSON field is). A name given twice is
/// refused, as a JSON key given twice is.
pub(crate) fn query_fields(uri: &axum::http::Uri, known: &[&str]) -> (Map<String, Value>, Vec<FieldError>) {
    let mut fields = Map::new();
    let mut errors = Vec::new();
    let pairs = match Query::<Vec<(String, String)>>::try_from_uri(uri) {
        Ok(Query(pairs)) => pairs,
        Err(e) => {
            let why = e.body_text();
            let error = FieldError::new(vec!["query".into()], "value_error", format!("Value error, {why}"))
                .with_ctx(json!({ "error": why }));
            return (fields, vec![error]);
        }
    };
    for (name, text) in pairs {
        let at = || vec![LocItem::from("query"), LocItem::from(name.as_str())];
        if fields.contains_key(&name) {
            let why = "given more than once";
            errors.push(
                FieldError::new(at(), "value_error", format!("Value error, {why}"))
                    .with_input(&Value::String(text))
                    .with_ctx(json!({ "error": why })),
            );
            continue;
        }
        let value = if known.contains(&name.as_str()) { typed(&name, text, &at, &mut errors) } else { Some(Value::String(text)) };
        if let Some(value) = value {
            fields.insert(name, value);
        }
    }
    (fields, errors)
}

/// A query-string value as the JSON value the field's rules expect; text
/// that is not one stays text and gets the rules' own error (`int_parsing`,
/// `float_parsing`, ...).
fn typed(name: &str, text: String, at: &dyn Fn() -> Vec<LocItem>, errors: &mut Vec<FieldError>) -> Option<Value> {
    match name {
        "k" | "ef_search" | "recall_target" => {
            let t = text.trim();
            let number = t
                .parse::<i64>()
                .map(Value::from)
                .or_else(|_| t.parse::<u64>().map(Value::from))
                .ok()
                .or_else(|| t.parse::<f64>().ok().and_then(serde_json::Number::from_f64).map(Value::Number));
            Some(number.unwrap_or(Value::String(text)))
        }
        "with_payload" | "with_vector" => Some(match text.to_ascii_lowercase().as_str() {
            "true" | "1" => Value::Bool(true),
            "false" | "0" => Value::Bool(false),
            _ => Value::String(text),
        }),
        "filter" => match serde_json::from_str::<NoDuplicateKeys>(&text) {
            Ok(NoDuplicateKeys(v)) => Some(v),
            Err(e) => {
                errors.push(
                    FieldError::new(at(), "json_invalid", "JSON decode error").with_ctx(json!({ "error": e.to_string() })),
                );
                None
            }
        },
        _ => Some(Value::String(text)),
    }
}

/// Why a body was refused.
#[derive(Debug)]
pub(crate) enum Refused {
    /// Not a valid body (422, located).
    Invalid(Vec<FieldError>),
    /// Valid, but not of the dimension searched (400).
    Shape(ApiError),
}

fn invalid(kind: &str, why: String) -> Refused {
    Refused::Invalid(vec![FieldError::new(vec!["body".into()], kind, format!("Value error, {why}")).with_ctx(json!({ "error": why }))])
}

/// The body's vectors, row-major, every one `dim` values, checked: one for a
/// single search, 1 to `max_batch` for a batch, every value finite.
fn decode(bytes: &[u8], encoding: Encoding, dim: usize, batch: bool, max_batch: usize) -> Result<Vec<f32>, Refused> {
    if bytes.is_empty() {
        return Err(Refused::Invalid(vec![FieldError::new(vec!["body".into()], "missing", "Field required")]));
    }
    let row_bytes = dim.saturating_mul(4).max(1);
    let (data, rows) = match encoding {
        Encoding::Raw => {
            if bytes.len() % row_bytes != 0 || (!batch && bytes.len() != row_bytes) {
                return Err(Refused::Shape(ApiError::RawBodyLength { bytes: bytes.len(), dim, batch }));
            }
            (bytes, bytes.len() / row_bytes)
        }
        Encoding::Npy => {
            let npy = parse_npy(bytes)?;
            let (rows, width) = match npy.shape[..] {
                [width] => (1, width),
                [rows, width] => (rows, width),
                _ => unreachable!("parse_npy returns 1-D or 2-D shapes"),
            };
            if width != dim {
                return Err(Refused::Shape(ApiError::NpyWidth { shape: shape_text(&npy.shape), dim }));
            }
            if !batch && rows != 1 {
                let why = format!(
                    "the .npy array has shape {}: a search takes one query (a 1-D array, or one row); \
                     send many to the batch route",
                    shape_text(&npy.shape)
                );
                return Err(invalid("value_error", why));
            }
            (npy.data, rows)
        }
    };
    if batch && let Some(e) = crate::validate::list_length_error(&["body".into()], rows, max_batch) {
        return Err(Refused::Invalid(vec![e]));
    }
    let values: Vec<f32> = data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    if values.iter().all(|x| x.is_finite()) {
        return Ok(values);
    }
    let errors = values
        .iter()
        .enumerate()
        .filter(|(_, x)| !x.is_finite())
        .take(crate::validate::MAX_ELEMENT_ERRORS)
        .map(|(i, x)| {
            let loc = if batch {
                vec!["body".into(), (i / dim).into(), (i % dim).into()]
            } else {
                vec!["body".into(), i.into()]
            };
            // NaN and infinities are not JSON: echoed as text.
            FieldError::new(loc, "finite_number", "Input should be a finite number").with_input(&Value::String(x.to_string()))
        })
        .collect();
    Err(Refused::Invalid(errors))
}

/// Bytes of an uploaded job body (`jobs.rs`) that [`upload_rows`] needs
/// to see: a `.npy` header is at most this long.
pub(crate) const UPLOAD_HEAD: usize = 64 * 1024 + 12;

/// Where the rows of an uploaded job body start and how many there are:
/// `head` is its first bytes (all of it, or at least [`UPLOAD_HEAD`]) and
/// `len` its whole length. Checked as a batch body is (whole rows of `dim`
/// float32, 1 to `max` of them), but the values: see [`non_finite`].
pub(crate) fn upload_rows(head: &[u8], len: u64, encoding: Encoding, dim: usize, max: usize) -> Result<(u64, usize), ApiError> {
    let refused = |r: Refused| match r {
        Refused::Invalid(errors) => ApiError::Validation(errors),
        Refused::Shape(e) => e,
    };
    if len == 0 {
        return Err(ApiError::Validation(vec![FieldError::new(vec!["body".into()], "missing", "Field required")]));
    }
    let row_bytes = dim.saturating_mul(4).max(1) as u64;
    let (start, rows) = match encoding {
        Encoding::Raw => {
            if len % row_bytes != 0 {
                let bytes = usize::try_from(len).unwrap_or(usize::MAX);
                return Err(ApiError::RawBodyLength { bytes, dim, batch: true });
            }
            (0, len / row_bytes)
        }
        Encoding::Npy => {
            let (shape, start) = npy_header(head).map_err(refused)?;
            let (rows, width) = match shape[..] {
                [width] => (1, width),
                [rows, width] => (rows, width),
                _ => unreachable!("npy_header returns 1-D or 2-D shapes"),
            };
            let expected = (rows as u64).checked_mul(width as u64).and_then(|n| n.checked_mul(4));
            let data = len - start as u64;
            if expected != Some(data) {
                return Err(refused(invalid(
                    "value_error",
                    format!("the .npy data is {data} bytes, but shape {} of float32 is {}", shape_text(&shape),
                        expected.map_or_else(|| "too large".to_owned(), |n| format!("{n} bytes"))),
                )));
            }
            if width != dim {
                return Err(ApiError::NpyWidth { shape: shape_text(&shape), dim });
            }
            (start as u64, rows as u64)
        }
    };
    let rows = usize::try_from(rows).unwrap_or(usize::MAX);
    if let Some(e) = crate::validate::list_length_error(&["body".into()], rows, max) {
        return Err(ApiError::Validation(vec![e]));
    }
    Ok((start, rows))
}

/// The values of `data` (little-endian f32, row-major, `dim` a row, its
/// first value the `first`-th of the matrix at `at`) that are not finite, as
/// errors at `[at.., row, column]`, up to [`crate::validate::MAX_ELEMENT_ERRORS`]
/// in `errors` in all.
pub(crate) fn non_finite(data: &[u8], first: usize, dim: usize, at: &[LocItem], errors: &mut Vec<FieldError>) {
    for (i, b) in data.chunks_exact(4).enumerate() {
        if errors.len() >= crate::validate::MAX_ELEMENT_ERRORS {
            return;
        }
        let x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if !x.is_finite() {
            let i = first + i;
            let mut loc = at.to_vec();
            loc.extend([(i / dim.max(1)).into(), (i % dim.max(1)).into()]);
            errors.push(FieldError::new(loc, "finite_number", "Input should be a finite number").with_input(&Value::String(x.to_string())));
        }
    }
}

/// `(3, 128)`, `(128,)`: a shape as numpy prints it.
pub(crate) fn shape_text(shape: &[usize]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => format!("({})", shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")),
    }
}

/// A `.npy` array: its shape (1-D or 2-D) and its data (exactly the shape's bytes).
#[derive(Debug)]
pub(crate) struct Npy<'a> {
    pub(crate) shape: Vec<usize>,
    pub(crate) data: &'a [u8],
}

/// A `.npy` body (format versions 1 to 3), refused unless its dtype is
/// little-endian float32 (`<f4`), its order C (row-major), its shape 1-D or
/// 2-D and its data exactly that shape.
pub(crate) fn parse_npy(bytes: &[u8]) -> Result<Npy<'_>, Refused> {
    let (shape, end) = npy_header(bytes)?;
    let bad = |why: String| invalid("value_error", why);
    let data = &bytes[end..];
    let expected = shape.iter().try_fold(4usize, |n, &d| n.checked_mul(d));
    if expected != Some(data.len()) {
        return Err(bad(format!(
            "the .npy data is {} bytes, but shape {} of float32 is {}",
            data.len(),
            shape_text(&shape),
            expected.map_or_else(|| "too large".to_owned(), |n| format!("{n} bytes"))
        )));
    }
    Ok(Npy { shape, data })
}

/// A `.npy` header at the start of `bytes`, checked as [`parse_npy`] says:
/// the array's shape and where its data starts.
fn npy_header(bytes: &[u8]) -> Result<(Vec<usize>, usize), Refused> {
    let bad = |why: String| invalid("value_error", why);
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy array: it must start with the magic string \\x93NUMPY".into()));
    }
    let (header_len, start): (usize, usize) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        2 | 3 => return Err(bad("the .npy header is cut off".into())),
        v => return Err(bad(format!(".npy format version {v} is not supported (1, 2 or 3)"))),
    };
    if header_len > 64 * 1024 {
        return Err(bad(format!("the .npy header is {header_len} bytes: longer than the 64 KiB accepted")));
    }
    let end = start.checked_add(header_len).filter(|&end| end <= bytes.len());
    let Some(end) = end else { return Err(bad("the .npy header is cut off".into())) };
    let Ok(header) = std::str::from_utf8(&bytes[start..end]) else {
        return Err(bad("the .npy header is not text".into()));
    };
    // Each key once (numpy writes exactly these three): a second `'descr'`,
    // hidden in another value, must not decide the dtype.
    for key in ["descr", "fortran_order", "shape"] {
        if header.matches(&format!("'{key}'")).count() + header.matches(&format!("\"{key}\"")).count() > 1 {
            return Err(bad(format!("the .npy header names '{key}' more than once")));
        }
    }
    let field = |key: &str| dict_value(header, key).ok_or_else(|| bad(format!("the .npy header has no '{key}'")));
    let descr = field("descr")?.trim_matches(['\'', '"']);
    if descr != "<f4" {
        return Err(bad(format!(
            "the .npy array's dtype is '{descr}': send float32, little-endian ('<f4'), e.g. x.astype('<f4')"
        )));
    }
    match field("fortran_order")? {
        "False" => {}
        "True" => {
            return Err(bad(
                "the .npy array is in Fortran (column-major) order: send it in C order (row-major), \
                 e.g. np.ascontiguousarray(x)"
                    .into(),
            ));
        }
        other => return Err(bad(format!("the .npy header's fortran_order is '{other}', not True or False"))),
    }
    let shape_field = field("shape")?;
    let shape: Option<Vec<usize>> = shape_field
        .trim_start_matches('(')
        .trim_end_matches(')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<usize>().ok())
        .collect();
    let Some(shape) = shape else { return Err(bad(format!("the .npy header's shape '{shape_field}' is not a tuple of sizes"))) };
    if !(1..=2).contains(&shape.len()) {
        return Err(bad(format!(
            "the .npy array has shape {}: send a 1-D array (one query) or a 2-D array (one query a row)",
            shape_text(&shape)
        )));
    }
    Ok((shape, end))
}

/// The text of `key`'s value in a `.npy` header (a Python dict literal):
/// a quoted string with its quotes, a parenthesised tuple, or a word.
fn dict_value<'h>(header: &'h str, key: &str) -> Option<&'h str> {
    let at = ["'", "\""].iter().find_map(|q| header.find(&format!("{q}{key}{q}")).map(|i| i + key.len() + 2))?;
    let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
    let end = match rest.chars().next()? {
        q @ ('\'' | '"') => rest[1..].find(q)? + 2,
        '(' => rest.find(')')? + 1,
        _ => rest.find([',', '}']).unwrap_or(rest.len()),
    };
    Some(rest[..end].trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, fortran: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let dict = format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}");
        let mut header = dict.into_bytes();
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(b' ');
        }
        header.push(b'\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(data);
        out
    }

    fn le(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn why(r: Result<Vec<f32>, Refused>) -> String {
        match r {
            Err(Refused::Invalid(e)) => e[0].msg.clone(),
            Err(Refused::Shape(e)) => e.to_string(),
            Ok(v) => panic!("accepted {v:?}"),
        }
    }

    #[test]
    fn content_types() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, v.parse().unwrap());
            encoding(&h)
        };
        assert_eq!(with("application/octet-stream"), Some(Encoding::Raw));
        assert_eq!(with("Application/X-NPY; foo=bar"), Some(Encoding::Npy));
        assert_eq!(with("application/json"), None);
        assert_eq!(encoding(&HeaderMap::new()), None);
    }

    #[test]
    fn raw_bodies_are_whole_rows_of_the_dimension() {
        let body = le(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(decode(&body, Encoding::Raw, 3, true, 10).unwrap(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(decode(&body, Encoding::Raw, 6, false, 10).unwrap().len(), 6);
        assert_eq!(why(decode(&body, Encoding::Raw, 3, false, 10)), "body has 24 bytes: one query of 3 float32 values is 12 bytes");
        assert!(why(decode(&body[..23], Encoding::Raw, 3, true, 10)).starts_with("body has 23 bytes: not a whole number"));
        assert_eq!(why(decode(&body, Encoding::Raw, 3, true, 1)), "List should have at most 1 item after validation, not 2");
        assert_eq!(why(decode(&[], Encoding::Raw, 3, true, 1)), "Field required");
        let Err(Refused::Invalid(e)) = decode(&le(&[1.0, f32::NAN, 0.0, f32::INFINITY]), Encoding::Raw, 2, true, 10) else { panic!() };
        let locs: Vec<String> = e.iter().map(|e| serde_json::to_string(&e.loc).unwrap()).collect();
        assert_eq!(locs, [r#"["body",0,1]"#, r#"["body",1,1]"#]);
    }

    #[test]
    fn npy_bodies() {
        let data = le(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(decode(&npy("<f4", "False", "(2, 2)", &data), Encoding::Npy, 2, true, 10).unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(decode(&npy("<f4", "False", "(4,)", &data), Encoding::Npy, 4, false, 10).unwrap().len(), 4);
        assert_eq!(decode(&npy("<f4", "False", "(1, 4)", &data), Encoding::Npy, 4, false, 10).unwrap().len(), 4);
        assert_eq!(decode(&npy("<f4", "False", "(4,)", &data), Encoding::Npy, 4, true, 10).unwrap().len(), 4, "1-D: a batch of one");
        for (body, expected) in [
            (npy("<f8", "False", "(2,)", &data), "dtype is '<f8'"),
            (npy(">f4", "False", "(2, 2)", &data), "dtype is '>f4'"),
            (npy("<f4", "True", "(2, 2)", &data), "Fortran"),
            (npy("<f4", "False", "(2, 1, 2)", &data), "shape (2, 1, 2)"),
            (npy("<f4", "False", "(3, 2)", &data), "the .npy data is 16 bytes, but shape (3, 2) of float32 is 24 bytes"),
            (npy("<f4", "False", "(2, 2)", &data[..15]), "the .npy data is 15 bytes"),
            (npy("<f4", "False", "(4,)", &data)[..20].to_vec(), "header is cut off"),
            (b"NUMPY\x01\x00abcdefgh".to_vec(), "magic string"),
            (npy("<f4", "False", "(2, 2)", &data), "a search takes one query"),
        ] {
            let batch = !expected.contains("one query");
            let got = why(decode(&body, Encoding::Npy, 2, batch, 10));
            assert!(got.contains(expected), "{got} !~ {expected}");
        }
        assert_eq!(
            why(decode(&npy("<f4", "False", "(1, 4)", &data), Encoding::Npy, 2, true, 10)),
            "body is a .npy array of shape (1, 4): its rows must have 2 values (the dimension searched)"
        );
    }

    #[test]
    fn query_fields_are_typed_by_name() {
        let uri: axum::http::Uri = "/s?k=10&ef_search=1e2&with_payload=true&profile=balanced&filter=%7B%22must%22%3A%5B%5D%7D&x=1".parse().unwrap();
        let (fields, errors) = query_fields(&uri, &["k", "ef_search", "with_payload", "profile", "filter"]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(Value::Object(fields), json!({"k": 10, "ef_search": 100.0, "with_payload": true, "profile": "balanced", "filter": {"must": []}, "x": "1"}));
        let uri: axum::http::Uri = "/s?k=ten&k=3&filter=%7B".parse().unwrap();
        let (fields, errors) = query_fields(&uri, &["k", "filter"]);
        assert_eq!(Value::Object(fields), json!({"k": "ten"}));
        let kinds: Vec<(String, &str)> = errors.iter().map(|e| (serde_json::to_string(&e.loc).unwrap(), e.kind.as_str())).collect();
        assert_eq!(kinds, [(r#"["query","k"]"#.to_owned(), "value_error"), (r#"["query","filter"]"#.to_owned(), "json_invalid")]);
    }
}
