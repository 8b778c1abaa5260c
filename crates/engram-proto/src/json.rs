//! Conversions between `google.protobuf.Struct` (metadata on the wire and
//! in events) and the JSON objects stored in payloads.

use prost_types::value::Kind as PKind;
use serde_json::{Map, Number, Value};

/// Converts a `google.protobuf.Struct` into a JSON object.
pub fn struct_to_json(s: &prost_types::Struct) -> Map<String, Value> {
    s.fields
        .iter()
        .map(|(k, v)| (k.clone(), value_to_json(v)))
        .collect()
}

/// Converts a `google.protobuf.Value` into a JSON value.
pub fn value_to_json(v: &prost_types::Value) -> Value {
    match &v.kind {
        None | Some(PKind::NullValue(_)) => Value::Null,
        Some(PKind::BoolValue(b)) => Value::Bool(*b),
        // JSON in a Struct has only doubles; integral ones are kept as
        // integers so that a stored 2026 matches an integer filter.
        Some(PKind::NumberValue(n)) if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 => {
            Value::from(*n as i64)
        }
        Some(PKind::NumberValue(n)) => Number::from_f64(*n).map_or(Value::Null, Value::Number),
        Some(PKind::StringValue(s)) => Value::String(s.clone()),
        Some(PKind::ListValue(l)) => Value::Array(l.values.iter().map(value_to_json).collect()),
        Some(PKind::StructValue(s)) => Value::Object(struct_to_json(s)),
    }
}

/// Converts a JSON object into a `google.protobuf.Struct`.
pub fn json_to_struct(m: &Map<String, Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: m
            .iter()
            .map(|(k, v)| (k.clone(), json_to_value(v)))
            .collect(),
    }
}

/// Converts a JSON value into a `google.protobuf.Value`.
pub fn json_to_value(v: &Value) -> prost_types::Value {
    let kind = match v {
        Value::Null => PKind::NullValue(0),
        Value::Bool(b) => PKind::BoolValue(*b),
        Value::Number(n) => PKind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => PKind::StringValue(s.clone()),
        Value::Array(a) => PKind::ListValue(prost_types::ListValue {
            values: a.iter().map(json_to_value).collect(),
        }),
        Value::Object(o) => PKind::StructValue(json_to_struct(o)),
    };
    prost_types::Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn nested_struct_round_trips_to_json() {
        let mut fields = BTreeMap::new();
        fields.insert(
            "channel".to_string(),
            prost_types::Value {
                kind: Some(PKind::StringValue("support".into())),
            },
        );
        fields.insert(
            "n".to_string(),
            prost_types::Value {
                kind: Some(PKind::NumberValue(2.0)),
            },
        );
        let j = struct_to_json(&prost_types::Struct { fields });
        assert_eq!(
            Value::Object(j),
            serde_json::json!({"channel": "support", "n": 2})
        );
    }

    #[test]
    fn json_round_trips_through_struct() {
        let j = serde_json::json!({"a": [1.5, "x", null, true], "b": {"c": "d"}});
        let Value::Object(m) = j.clone() else {
            unreachable!()
        };
        assert_eq!(Value::Object(struct_to_json(&json_to_struct(&m))), j);
    }
}
