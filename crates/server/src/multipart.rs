//! Upserts as `multipart/form-data`: the vectors in binary, so that a client
//! sends them without printing and the server reads them without parsing
//! decimal text (JSON's text of 1000 points of 128 values is ~1.6 MB, and
//! parsing it was ~80 % of an upsert's CPU: `bench/ingest`). The parts:
//!
//! - `ids` (required): a JSON array of ids, as the JSON body's `id`s;
//! - `vectors` (required): `application/x-npy` (float32, C order, 2-D, one
//!   point a row; 1-D is one point) or `application/octet-stream` (raw
//!   little-endian float32, row-major, cut into rows at the collection's
//!   dimension: it has no shape of its own), one row per id;
//! - `payloads` (optional): a JSON array with one object or `null` per id.
//!
//! No other part, and each once. The result is the JSON body's request type
//! (`UpsertRequest`), so the write path does not know which form it came in.
//! Problems are located at the part: `["body", "ids", 3]`,
//! `["body", "vectors", 2, 7]`, `["body", "payloads", 0]`.

use crate::binary::{NPY, OCTET_STREAM, Refused, parse_npy, shape_text};
use crate::collections::{PointIn, UpsertRequest, parse_ids};
use crate::error::ApiError;
use crate::extract::{NoDuplicateKeys, ValidJson, read_body};
use crate::models::{FieldError, LocItem};
use crate::state::{AppState, ServerConfig};
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::{HeaderMap, header};
use serde_json::{Value, json};

pub(crate) const FORM_DATA: &str = "multipart/form-data";

/// The parts a form may hold.
const PARTS: [&str; 3] = ["ids", "vectors", "payloads"];

/// Whether the request declares a `multipart/form-data` body.
pub(crate) fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case(FORM_DATA))
}

/// An upsert body: JSON ([`ValidJson`]) or a form; `form` says which, so that
/// the write path's errors can be located in the parts.
#[derive(Debug)]
pub(crate) struct UpsertBody {
    pub(crate) request: UpsertRequest,
    pub(crate) form: bool,
}

impl FromRequest<AppState> for UpsertBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        if is_form(req.headers()) {
            extract(req, state).await.map(|request| UpsertBody { request, form: true })
        } else {
            ValidJson::<UpsertRequest>::from_request(req, state).await.map(|ValidJson(request)| UpsertBody { request, form: false })
        }
    }
}

/// A write-path error located in the JSON body's terms
/// (`["body", "points", i, "vector"]`) moved to the part that held it
/// (`["body", "vectors", i]`).
pub(crate) fn locate_in_parts(error: ApiError) -> ApiError {
    let ApiError::Validation(mut errors) = error else { return error };
    for e in &mut errors {
        if let [LocItem::Key(body), LocItem::Key(points), LocItem::Index(i), LocItem::Key(field), ..] = &e.loc[..]
            && body == "body"
            && points == "points"
        {
            let part = match field.as_str() {
                "vector" => "vectors",
                "payload" => "payloads",
                "id" => "ids",
                _ => continue,
            };
            e.loc = vec!["body".into(), part.into(), LocItem::Index(*i)];
        }
    }
    ApiError::Validation(errors)
}

fn at(path: &[&str]) -> Vec<LocItem> {
    std::iter::once("body").chain(path.iter().copied()).map(LocItem::from).collect()
}

fn value_error(loc: Vec<LocItem>, why: String) -> FieldError {
    FieldError::new(loc, "value_error", format!("Value error, {why}")).with_ctx(json!({ "error": why }))
}

/// One part as read: its media type (lower case, no parameters) and bytes.
struct Part {
    media_type: Option<String>,
    data: Bytes,
}

/// Reads the form: the collection's dimension, the parts, then (on the
/// blocking pool for large bodies, as JSON is) the request they make.
async fn extract(req: Request, state: &AppState) -> Result<UpsertRequest, ApiError> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let (mut parts, body) = req.into_parts();
    let Path(name) = Path::<String>::from_request_parts(&mut parts, state).await.map_err(|_| ApiError::NotFound)?;
    let dim = state.store().ok_or(ApiError::NotFound)?.get(&name)?.dimension();
    let boundary = multer::parse_boundary(&content_type).map_err(|e| {
        ApiError::Validation(vec![value_error(at(&[]), format!("the multipart/form-data content type has no usable boundary: {e}"))])
    })?;
    let bytes = read_body(Request::from_parts(parts, body), state).await?;
    let size = bytes.len();
    let mut form = multer::Multipart::new(futures_util::stream::once(async move { Ok::<_, std::convert::Infallible>(bytes) }), boundary);
    let mut found: [Option<Part>; 3] = [None, None, None];
    let mut errors = Vec::new();
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => {
                errors.push(value_error(at(&[]), format!("not a valid multipart/form-data body: {e}")));
                break;
            }
        };
        if errors.len() >= crate::validate::MAX_ELEMENT_ERRORS {
            break;
        }
        let name = field.name().map(str::to_owned);
        let media_type = field.content_type().map(|m| m.essence_str().to_ascii_lowercase());
        // A Content-Type multer cannot read would otherwise look like none
        // (raw float32 for the vectors): refused, as is any transfer
        // encoding but the identity ones (HTTP forms have none).
        let declared = |h: &str| field.headers().get(h).map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_ascii_lowercase());
        let unread_type = declared("content-type").filter(|_| media_type.is_none());
        let encoding = declared("content-transfer-encoding").filter(|e| !matches!(e.as_str(), "7bit" | "8bit" | "binary"));
        let part_at = || at(&[name.as_deref().unwrap_or("")]);
        if let Some(t) = unread_type {
            errors.push(value_error(part_at(), format!("the part's Content-Type `{t}` is not a media type")));
            continue;
        }
        if let Some(e) = encoding {
            errors.push(value_error(part_at(), format!("Content-Transfer-Encoding `{e}` is not supported: send the part's bytes as they are")));
            continue;
        }
        let data = match field.bytes().await {
            Ok(data) => data,
            Err(e) => {
                errors.push(value_error(at(&[]), format!("not a valid multipart/form-data body: {e}")));
                break;
            }
        };
        let Some(name) = name else {
            errors.push(value_error(at(&[]), "a part has no name (its Content-Disposition needs `name=`)".into()));
            continue;
        };
        match PARTS.iter().position(|p| *p == name) {
            None => errors.push(FieldError::new(at(&[&name]), "extra_forbidden", "Extra inputs are not permitted")),
            Some(i) if found[i].is_some() => errors.push(value_error(at(&[&name]), "given more than once".into())),
            Some(i) => found[i] = Some(Part { media_type, data }),
        }
    }
    // The parser's buffer goes before the parts are read: at most the
    // parts and the points made of them are held together.
    drop(form);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let config = state.config().clone();
    let [ids, vectors, payloads] = found;
    let assemble = move || assemble(ids, vectors, payloads, dim, &config);
    let parsed = if size <= 64 * 1024 { assemble() } else { tokio::task::spawn_blocking(assemble).await? };
    parsed.map_err(ApiError::Validation)
}

/// The request the parts make, or every problem found in them.
fn assemble(
    ids: Option<Part>,
    vectors: Option<Part>,
    payloads: Option<Part>,
    dim: usize,
    config: &ServerConfig,
) -> Result<UpsertRequest, Vec<FieldError>> {
    let mut errors = Vec::new();
    let ids = match ids {
        None => {
            errors.push(FieldError::new(at(&["ids"]), "missing", "Field required"));
            None
        }
        Some(part) => json_part(&part.data, "ids", &mut errors)
            .and_then(|v| parse_ids(&v, &at(&["ids"]), config.max_batch.max(1) * 10, &mut errors)),
    };
    let rows = match &vectors {
        None => {
            errors.push(FieldError::new(at(&["vectors"]), "missing", "Field required"));
            None
        }
        Some(part) => matrix(part, dim, ids.as_ref().map(Vec::len), &mut errors),
    };
    let payloads = payloads.and_then(|part| {
        let v = json_part(&part.data, "payloads", &mut errors)?;
        let Value::Array(items) = v else {
            errors.push(FieldError::new(at(&["payloads"]), "list_type", "Input should be a valid list").with_input(&v));
            return None;
        };
        let before = errors.len();
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            match item {
                Value::Null => out.push(None),
                v @ Value::Object(_) if depth(&v) > MAX_PAYLOAD_DEPTH => {
                    let loc = vec!["body".into(), "payloads".into(), LocItem::Index(i)];
                    let why = format!("nested deeper than {MAX_PAYLOAD_DEPTH} levels (what a JSON body's payload can hold)");
                    errors.push(value_error(loc, why));
                }
                v @ Value::Object(_) => out.push(Some(v)),
                v => {
                    let loc = vec!["body".into(), "payloads".into(), LocItem::Index(i)];
                    errors.push(FieldError::new(loc, "dict_type", "Input should be a valid dictionary").with_input(&v));
                    if errors.len() - before >= crate::validate::MAX_ELEMENT_ERRORS {
                        break;
                    }
                }
            }
        }
        (errors.len() == before).then_some(out)
    });
    let (Some(ids), Some(rows)) = (ids, rows) else { return Err(errors) };
    let n = ids.len();
    let row_bytes = dim.max(1) * 4;
    if rows.len() / row_bytes != n {
        let have = rows.len() / row_bytes;
        errors.push(value_error(at(&["vectors"]), format!("{have} vectors for {n} ids: one row per id")));
    }
    if let Some(p) = &payloads
        && p.len() != n
    {
        errors.push(value_error(at(&["payloads"]), format!("{} payloads for {n} ids: one object or null per id", p.len())));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut payloads = payloads.map(Vec::into_iter);
    let points = ids
        .into_iter()
        .zip(rows.chunks_exact(dim.max(1) * 4))
        .map(|(id, row)| PointIn {
            id,
            vector: row.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            payload: payloads.as_mut().and_then(Iterator::next).flatten(),
        })
        .collect();
    Ok(UpsertRequest { points })
}

/// How deep a payload may nest in a form: as deep as in a JSON body, where
/// it sits under three levels (body, `points`, the point) and serde_json
/// refuses a 128th (measured: 124 nested objects pass, 125 do not).
const MAX_PAYLOAD_DEPTH: usize = 124;

/// Levels of objects and arrays in `v` (a scalar is 0).
fn depth(v: &Value) -> usize {
    match v {
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// A part holding JSON, parsed (repeated keys refused, as in JSON bodies).
fn json_part(data: &[u8], name: &str, errors: &mut Vec<FieldError>) -> Option<Value> {
    match serde_json::from_slice::<NoDuplicateKeys>(data) {
        Ok(NoDuplicateKeys(v)) => Some(v),
        Err(e) => {
            let why = e.to_string();
            errors.push(FieldError::new(at(&[name]), "json_invalid", "JSON decode error").with_ctx(json!({ "error": why })));
            None
        }
    }
}

/// The `vectors` part's little-endian float32 values, row-major, `dim` a
/// row, all finite (its bytes: the points are made straight from them).
/// `ids`: how many ids the form names, when known (a raw part that holds
/// that many rows of another width is told so).
fn matrix<'a>(part: &'a Part, dim: usize, ids: Option<usize>, errors: &mut Vec<FieldError>) -> Option<&'a [u8]> {
    let here = || at(&["vectors"]);
    let data: &[u8] = match part.media_type.as_deref() {
        Some(NPY) => {
            let npy = match parse_npy(&part.data) {
                Ok(npy) => npy,
                Err(Refused::Invalid(found)) => {
                    // Located at `["body"]` by the search bodies' rules: here, the part.
                    errors.extend(found.into_iter().map(|mut e| {
                        e.loc.insert(1, "vectors".into());
                        e
                    }));
                    return None;
                }
                Err(Refused::Shape(e)) => {
                    errors.push(value_error(here(), e.to_string()));
                    return None;
                }
            };
            let width = *npy.shape.last().unwrap_or(&0);
            if width != dim {
                let shape = shape_text(&npy.shape);
                errors.push(value_error(here(), format!("the .npy array has shape {shape}; the collection's dimension is {dim}")));
                return None;
            }
            npy.data
        }
        None | Some(OCTET_STREAM) => {
            if part.data.starts_with(b"\x93NUMPY") {
                let why = "this part is a .npy file: send it with Content-Type application/x-npy \
                    (curl: -F 'vectors=@x.npy;type=application/x-npy')";
                errors.push(value_error(here(), why.into()));
                return None;
            }
            let row = dim.saturating_mul(4).max(1);
            let len = part.data.len();
            // Raw data has no shape: rows are cut at the collection's
            // dimension. When the bytes are a whole number of rows of another
            // width for the ids given, that width is the likely mistake.
            if let Some(n) = ids.filter(|&n| len > 0 && len % row != 0 && len % (4 * n) == 0) {
                let why = format!("{len} bytes for {n} ids are rows of {} float32 values; the collection's dimension is {dim}", len / (4 * n));
                errors.push(value_error(here(), why));
                return None;
            }
            if len % row != 0 {
                let why = format!(
                    "{} bytes is not a whole number of rows of {dim} little-endian float32 values ({row} bytes each)",
                    part.data.len()
                );
                errors.push(value_error(here(), why));
                return None;
            }
            &part.data
        }
        Some(other) => {
            let why = format!("the vectors part must be {NPY} or {OCTET_STREAM}, not {other}");
            errors.push(value_error(here(), why));
            return None;
        }
    };
    let value = |b: &[u8]| f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    if data.chunks_exact(4).all(|b| value(b).is_finite()) {
        return Some(data);
    }
    // Counted apart from the form's other errors, as each list's are.
    let mut found = Vec::new();
    crate::binary::non_finite(data, 0, dim, &here(), &mut found);
    errors.extend(found);
    None
}
