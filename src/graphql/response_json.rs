//! A GraphQL response written as JSON: the same bytes as `serde_json`, in
//! fewer steps.
//!
//! Through serde, every string is escaped a byte at a time and every key,
//! comma and bracket is its own small copy; for a dashboard's page that was
//! 14 % of the server's CPU per request (BENCHMARKS.md, "Parsing, timers,
//! cursors"). Here a string with nothing to escape (nearly all of them) is
//! copied whole, and everything rarer (a string to escape, a number,
//! the errors and extensions) is left to `serde_json`, so the output is byte
//! for byte what it gives.
//!
//! One exception: `Value::Binary` holds JSON written in advance, and is
//! copied as it is. Task pages answered from memory come as such
//! (`graphql::task_page`); no field of the schema gives bytes (its scalars
//! are strings, dates and ids), so nothing else does.

use async_graphql::{Response, Value};

/// `response` as JSON, exactly as `serde_json::to_vec` writes it, but for
/// `Value::Binary`: JSON written in advance, copied as it is (see the
/// module's comment).
pub fn to_vec(response: &Response) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(b"{\"data\":");
    value(&mut out, &response.data)?;
    // The order and omissions of `Response`'s own `Serialize`.
    if !response.extensions.is_empty() {
        out.extend_from_slice(b",\"extensions\":");
        serde_json::to_writer(&mut out, &response.extensions)?;
    }
    if !response.errors.is_empty() {
        out.extend_from_slice(b",\"errors\":");
        serde_json::to_writer(&mut out, &response.errors)?;
    }
    out.push(b'}');
    Ok(out)
}

/// Writes `v` as `serde_json` would (`Value::Binary` aside: see the
/// module's comment).
pub fn value(out: &mut Vec<u8>, v: &Value) -> serde_json::Result<()> {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Boolean(true) => out.extend_from_slice(b"true"),
        Value::Boolean(false) => out.extend_from_slice(b"false"),
        Value::String(s) => string(out, s)?,
        Value::Enum(name) => string(out, name)?,
        Value::List(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                value(out, item)?;
            }
            out.push(b']');
        }
        Value::Object(fields) => {
            out.push(b'{');
            for (i, (key, item)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(out, key)?;
                out.push(b':');
                value(out, item)?;
            }
            out.push(b'}');
        }
        Value::Binary(json) => out.extend_from_slice(json),
        Value::Number(_) => serde_json::to_writer(&mut *out, v)?,
    }
    Ok(())
}

/// Writes `s` as a JSON string, as `serde_json` would.
pub fn string(out: &mut Vec<u8>, s: &str) -> serde_json::Result<()> {
    if !needs_escape(s.as_bytes()) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        Ok(())
    } else {
        serde_json::to_writer(out, s)
    }
}

/// Whether `bytes` hold anything serde_json escapes: a control character,
/// `"` or `\`. Eight bytes at a time: a byte below 0x20, or equal to one of
/// the two, sets its top bit in the mask (exact for any byte, UTF-8 included).
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGHS;
    let zero = |x: u64| below(x, 1);
    let flagged = |x: u64| {
        below(x, 0x20) | zero(x ^ (ONES * u64::from(b'"'))) | zero(x ^ (ONES * u64::from(b'\\')))
            != 0
    };
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        if flagged(u64::from_ne_bytes(chunk.try_into().unwrap_or_default())) {
            return true;
        }
    }
    // The last few bytes (most keys are shorter than eight) padded with a
    // byte that needs no escape, and checked the same way.
    let rest = chunks.remainder();
    let mut last = [b'a'; 8];
    last[..rest.len()].copy_from_slice(rest);
    flagged(u64::from_ne_bytes(last))
}

#[cfg(test)]
mod tests {
    use async_graphql::indexmap::IndexMap;
    use async_graphql::{ErrorExtensionValues, Name, Pos, ServerError};

    use super::*;

    fn same_as_serde(response: &Response) {
        assert_eq!(
            String::from_utf8(to_vec(response).unwrap()).unwrap(),
            String::from_utf8(serde_json::to_vec(response).unwrap()).unwrap()
        );
    }

    fn strings() -> Vec<&'static str> {
        vec![
            "",
            "plain",
            "quote \" inside",
            "back\\slash",
            "new\nline\ttab\r",
            "bell \u{7} and nul \u{0} and unit sep \u{1f}",
            "delete \u{7f} is not escaped",
            "é ü ñ — “quotes” 日本語 🦀",
            "</script><!-- /slash",
        ]
    }

    #[test]
    fn every_kind_of_value_is_written_as_serde_writes_it() {
        let mut object = IndexMap::new();
        for (i, s) in strings().into_iter().enumerate() {
            object.insert(Name::new(format!("k{i}{s}")), Value::String(s.to_owned()));
        }
        object.insert(Name::new("null"), Value::Null);
        object.insert(Name::new("yes"), Value::Boolean(true));
        object.insert(Name::new("no"), Value::Boolean(false));
        object.insert(Name::new("enum"), Value::Enum(Name::new("IN_PROGRESS")));
        object.insert(Name::new("int"), Value::from(-42i64));
        object.insert(Name::new("big"), Value::from(u64::MAX));
        object.insert(Name::new("float"), Value::from(1.5e-7f64));
        object.insert(Name::new("empty list"), Value::List(vec![]));
        object.insert(Name::new("empty object"), Value::Object(IndexMap::new()));
        object.insert(
            Name::new("nested"),
            Value::List(vec![
                Value::Object(object.clone()),
                Value::List(vec![Value::Null, Value::from(1)]),
            ]),
        );
        same_as_serde(&Response::new(Value::Object(object)));
        same_as_serde(&Response::new(Value::Null));
    }

    #[test]
    fn json_written_in_advance_is_copied_as_it_is() {
        let page = br#"{"edges":[{"node":{"title":"a \"b\""}}]}"#;
        let mut object = IndexMap::new();
        object.insert(Name::new("tasks"), Value::Binary(page.to_vec().into()));
        object.insert(Name::new("after"), Value::Null);
        let written = to_vec(&Response::new(Value::Object(object))).unwrap();
        let expected =
            br#"{"data":{"tasks":{"edges":[{"node":{"title":"a \"b\""}}]},"after":null}}"#;
        assert_eq!(
            String::from_utf8(written).unwrap(),
            String::from_utf8(expected.to_vec()).unwrap()
        );
    }

    #[test]
    fn needs_escape_finds_each_byte_that_needs_it_wherever_it_is() {
        for b in 0..=255u8 {
            let escaped = b < 0x20 || b == b'"' || b == b'\\';
            for len in 1..20 {
                for at in 0..len {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    assert_eq!(
                        needs_escape(&bytes),
                        escaped,
                        "byte {b:#x} at {at} of {len}"
                    );
                }
            }
        }
        // Bytes just above and below the limits, next to each other.
        assert!(!needs_escape("  !#[]\u{7f}\u{80}ÿ".as_bytes()));
        assert!(!needs_escape(b""));
    }

    #[test]
    fn errors_and_extensions_are_written_as_serde_writes_them() {
        let mut error = ServerError::new("not \"found\"", Some(Pos { line: 1, column: 3 }));
        error.path = vec![async_graphql::PathSegment::Field("tasks".into())];
        let mut ext = ErrorExtensionValues::default();
        ext.set("code", "NOT_FOUND");
        error.extensions = Some(ext);
        let mut response = Response::from_errors(vec![error]);
        same_as_serde(&response);
        response = response.extension("cost", Value::from(3));
        same_as_serde(&response);
        response.data = Value::String("partial".into());
        same_as_serde(&response);
    }
}
