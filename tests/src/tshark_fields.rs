//! Flattening `tshark -T json` output into (field, value) pairs, for the oracle tests that
//! compare what tshark decoded with what we encoded.

use serde_json::Value;

/// Every (field, value) pair in a JSON tree, depth first, in document order; a field
/// that tshark repeated (`--no-duplicate-keys` makes that an array) yields each value.
pub fn walk(v: &Value, out: &mut Vec<(String, String)>) {
    fn scalar(k: &str, v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::String(s) => out.push((k.to_string(), s.clone())),
            Value::Number(n) => out.push((k.to_string(), n.to_string())),
            Value::Bool(b) => out.push((k.to_string(), b.to_string())),
            _ => {}
        }
    }
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::Array(items) => {
                        for item in items {
                            scalar(k, item, out);
                            walk(item, out);
                        }
                    }
                    Value::Object(_) => {
                        out.push((k.to_string(), String::new()));
                        walk(v, out);
                    }
                    _ => scalar(k, v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
        _ => {}
    }
}

/// Every value of field `key`, in order.
pub fn values<'a>(fields: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    fields
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}
