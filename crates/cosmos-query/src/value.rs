//! Cosmos DB value semantics over `serde_json::Value`: numbers, equality, comparison, the type
//! order used by ORDER BY, MIN and MAX, and a canonical key for DISTINCT and GROUP BY.
//!
//! `undefined` is not a JSON value: the evaluator represents it as `None`.
//! Numbers are IEEE 754 doubles in Cosmos DB; a result that is a whole number within ±2^53 is
//! written as a JSON integer, which is how the service prints such doubles (ROUND(2.6) is `3`).

use std::cmp::Ordering;
use std::fmt::Write;

use serde_json::{Number, Value};

/// Largest integer a double holds exactly.
const EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;

/// A double as a JSON value, or `None` (undefined) for NaN and the infinities, which JSON cannot
/// carry.
pub(crate) fn number(float: f64) -> Option<Value> {
    if !float.is_finite() {
        return None;
    }
    if float.fract() == 0.0 && float.abs() < EXACT_INTEGER {
        // The range check above makes the conversion exact.
        return Some(Value::from(float as i64));
    }
    Number::from_f64(float).map(Value::Number)
}

pub(crate) fn as_f64(value: &Value) -> Option<f64> {
    match value {
        Value::Number(number) => number.as_f64(),
        _ => None,
    }
}

/// The integer a number holds, when it holds one exactly (as Cosmos DB's Int* functions need).
pub(crate) fn as_integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(number) => match number.as_i64() {
            Some(integer) => Some(integer),
            None => {
                let float = number.as_f64()?;
                (float.fract() == 0.0 && float.abs() < EXACT_INTEGER).then_some(float as i64)
            }
        },
        _ => None,
    }
}

/// The rank of a value's type in Cosmos DB's cross-type order: undefined, null, boolean, number,
/// string, array, object (<https://learn.microsoft.com/azure/cosmos-db/nosql/query/order-by> and
/// the .NET SDK's ItemComparer, which puts arrays after strings and objects last).
pub(crate) fn type_rank(value: Option<&Value>) -> u8 {
    match value {
        None => 0,
        Some(Value::Null) => 1,
        Some(Value::Bool(_)) => 2,
        Some(Value::Number(_)) => 3,
        Some(Value::String(_)) => 4,
        Some(Value::Array(_)) => 5,
        Some(Value::Object(_)) => 6,
    }
}

/// The total order of ORDER BY: by type rank, then within the type. Arrays and objects, which
/// have no natural order, compare by their canonical text so that the order is stable.
pub(crate) fn total_order(left: Option<&Value>, right: Option<&Value>) -> Ordering {
    let by_type = type_rank(left).cmp(&type_rank(right));
    if by_type != Ordering::Equal {
        return by_type;
    }
    match (left, right) {
        (Some(Value::Bool(left)), Some(Value::Bool(right))) => left.cmp(right),
        (Some(Value::Number(left)), Some(Value::Number(right))) => {
            let left = left.as_f64().unwrap_or(0.0);
            let right = right.as_f64().unwrap_or(0.0);
            left.partial_cmp(&right).unwrap_or(Ordering::Equal)
        }
        (Some(Value::String(left)), Some(Value::String(right))) => left.cmp(right),
        (Some(left @ (Value::Array(_) | Value::Object(_))), Some(right)) => {
            canonical(left).cmp(&canonical(right))
        }
        _ => Ordering::Equal,
    }
}

/// Deep equality with numbers compared as doubles, so that `1 = 1.0`.
pub(crate) fn equal(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(left), Value::Number(right)) => match (left.as_i64(), right.as_i64()) {
            (Some(left), Some(right)) => left == right,
            _ => left.as_f64() == right.as_f64(),
        },
        (Value::Array(left), Value::Array(right)) => {
            left.len() == right.len()
                && left
                    .iter()
                    .zip(right)
                    .all(|(left, right)| equal(left, right))
        }
        (Value::Object(left), Value::Object(right)) => {
            left.len() == right.len()
                && left
                    .iter()
                    .all(|(key, value)| right.get(key).is_some_and(|other| equal(value, other)))
        }
        _ => left == right,
    }
}

/// `=`: undefined when either side is undefined or the types differ
/// (<https://learn.microsoft.com/azure/cosmos-db/nosql/query/equality-comparison-operators>).
pub(crate) fn equality(left: Option<&Value>, right: Option<&Value>) -> Option<bool> {
    let (left, right) = (left?, right?);
    if type_rank(Some(left)) != type_rank(Some(right)) {
        return None;
    }
    Some(equal(left, right))
}

/// `<`, `<=`, `>`, `>=`: defined only between two values of the same primitive type.
pub(crate) fn compare(left: Option<&Value>, right: Option<&Value>) -> Option<Ordering> {
    match (left?, right?) {
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        (Value::Bool(left), Value::Bool(right)) => Some(left.cmp(right)),
        (Value::Number(left), Value::Number(right)) => left.as_f64()?.partial_cmp(&right.as_f64()?),
        (Value::String(left), Value::String(right)) => Some(left.cmp(right)),
        _ => None,
    }
}

/// A text that is equal for equal values (numbers by their double value, objects with sorted
/// keys), used to find duplicates and groups.
pub(crate) fn canonical(value: &Value) -> String {
    let mut text = String::new();
    write_canonical(Some(value), &mut text);
    text
}

pub(crate) fn write_canonical(value: Option<&Value>, text: &mut String) {
    match value {
        None => text.push('~'),
        Some(Value::Null) => text.push('n'),
        Some(Value::Bool(true)) => text.push('t'),
        Some(Value::Bool(false)) => text.push('f'),
        Some(Value::Number(number)) => {
            let float = number.as_f64().unwrap_or(0.0);
            let _ = write!(text, "#{float:?}");
        }
        Some(Value::String(string)) => {
            text.push('"');
            for character in string.chars() {
                if character == '"' || character == '\\' {
                    text.push('\\');
                }
                text.push(character);
            }
            text.push('"');
        }
        Some(Value::Array(elements)) => {
            text.push('[');
            for element in elements {
                write_canonical(Some(element), text);
                text.push(',');
            }
            text.push(']');
        }
        Some(Value::Object(members)) => {
            // serde_json's map (without preserve_order) iterates in key order already.
            text.push('{');
            for (key, member) in members {
                write_canonical(Some(&Value::String(key.clone())), text);
                text.push(':');
                write_canonical(Some(member), text);
                text.push(',');
            }
            text.push('}');
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn type_order_matches_cosmos() {
        let ascending = [
            None,
            Some(json!(null)),
            Some(json!(false)),
            Some(json!(true)),
            Some(json!(-1)),
            Some(json!(2.5)),
            Some(json!("")),
            Some(json!("a")),
            Some(json!([])),
            Some(json!({})),
        ];
        for pair in ascending.windows(2) {
            assert_eq!(
                total_order(pair[0].as_ref(), pair[1].as_ref()),
                Ordering::Less,
                "{pair:?}"
            );
        }
    }

    #[test]
    fn comparisons_across_types_are_undefined() {
        assert_eq!(equality(Some(&json!(1)), Some(&json!("1"))), None);
        assert_eq!(equality(Some(&json!(1)), Some(&json!(1.0))), Some(true));
        assert_eq!(equality(None, Some(&json!(null))), None);
        assert_eq!(
            equality(Some(&json!({"a": [1]})), Some(&json!({"a": [1.0]}))),
            Some(true)
        );
        assert_eq!(compare(Some(&json!([1])), Some(&json!([2]))), None);
        assert_eq!(
            compare(Some(&json!("a")), Some(&json!("b"))),
            Some(Ordering::Less)
        );
    }

    #[test]
    fn numbers_print_as_cosmos_does() {
        assert_eq!(number(3.0), Some(json!(3)));
        assert_eq!(number(-0.0), Some(json!(0)));
        assert_eq!(number(2.5), Some(json!(2.5)));
        assert_eq!(number(f64::NAN), None);
        assert_eq!(canonical(&json!(1)), canonical(&json!(1.0)));
    }
}
