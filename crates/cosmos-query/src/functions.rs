//! The system functions: one table of names and argument counts, and one function per entry.
//!
//! Each behaviour follows the function's page under
//! <https://learn.microsoft.com/azure/cosmos-db/nosql/query/> (the page name is the function name in
//! lower case with `_` as `-`, e.g. `array-contains`); the tests are those pages' examples.
//! Every function is total: an argument of the wrong type gives `undefined`, never an error,
//! as the pages' remarks say.
//! Strings are indexed by Unicode scalar values (the service counts UTF-16 code units, which
//! differs only outside the Basic Multilingual Plane).

use std::borrow::Cow;

use regex_automata::meta::Regex;
use serde_json::{Map, Value};

use crate::datetime::{self, Part, Parts};
use crate::value::{as_f64, as_integer, canonical, equal, number};
use crate::CurrentTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Func {
    IsArray,
    IsBool,
    IsDefined,
    IsFiniteNumber,
    IsInteger,
    IsNull,
    IsNumber,
    IsObject,
    IsPrimitive,
    IsString,
    Concat,
    Contains,
    EndsWith,
    StartsWith,
    IndexOf,
    LastIndexOf,
    Left,
    Right,
    Length,
    Lower,
    Upper,
    Ltrim,
    Rtrim,
    Trim,
    Replace,
    Replicate,
    Reverse,
    Substring,
    StringEquals,
    StringToArray,
    StringToBoolean,
    StringToNull,
    StringToNumber,
    StringToObject,
    ToString,
    RegexMatch,
    Abs,
    Acos,
    Asin,
    Atan,
    Atn2,
    Ceiling,
    Cos,
    Cot,
    Degrees,
    Exp,
    Floor,
    Log,
    Log10,
    Pi,
    Power,
    Radians,
    Round,
    Sign,
    Sin,
    Sqrt,
    Square,
    Tan,
    Trunc,
    NumberBin,
    IntAdd,
    IntSub,
    IntMul,
    IntDiv,
    IntMod,
    IntBitAnd,
    IntBitOr,
    IntBitXor,
    IntBitNot,
    IntBitLeftShift,
    IntBitRightShift,
    ArrayConcat,
    ArrayContains,
    ArrayContainsAny,
    ArrayContainsAll,
    ArrayLength,
    ArraySlice,
    SetIntersect,
    SetUnion,
    ObjectToArray,
    Iif,
    GetCurrentDateTime,
    GetCurrentTimestamp,
    GetCurrentTicks,
    DateTimeAdd,
    DateTimePart,
    DateTimeDiff,
    DateTimeFromParts,
    DateTimeToTimestamp,
    DateTimeToTicks,
    TimestampToDateTime,
    TicksToDateTime,
}

/// The aggregate functions, which the planner takes out of the expression tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AggregateKind {
    Count,
    Sum,
    Min,
    Max,
    Avg,
}

impl AggregateKind {
    pub(crate) fn from_name(name: &str) -> Option<AggregateKind> {
        let kind = match name.to_ascii_uppercase().as_str() {
            "COUNT" => AggregateKind::Count,
            "SUM" => AggregateKind::Sum,
            "MIN" => AggregateKind::Min,
            "MAX" => AggregateKind::Max,
            "AVG" => AggregateKind::Avg,
            _ => return None,
        };
        Some(kind)
    }

    /// The name the query plan uses (`aggregates`, `groupByAliasToAggregateType`).
    pub(crate) fn plan_name(self) -> &'static str {
        match self {
            AggregateKind::Count => "Count",
            AggregateKind::Sum => "Sum",
            AggregateKind::Min => "Min",
            AggregateKind::Max => "Max",
            AggregateKind::Avg => "Average",
        }
    }

    pub(crate) fn sql_name(self) -> &'static str {
        match self {
            AggregateKind::Count => "COUNT",
            AggregateKind::Sum => "SUM",
            AggregateKind::Min => "MIN",
            AggregateKind::Max => "MAX",
            AggregateKind::Avg => "AVG",
        }
    }
}

/// Name (upper case), function, fewest and most arguments.
const TABLE: &[(&str, Func, usize, usize)] = &[
    ("IS_ARRAY", Func::IsArray, 1, 1),
    ("IS_BOOL", Func::IsBool, 1, 1),
    ("IS_DEFINED", Func::IsDefined, 1, 1),
    ("IS_FINITE_NUMBER", Func::IsFiniteNumber, 1, 1),
    ("IS_INTEGER", Func::IsInteger, 1, 1),
    ("IS_NULL", Func::IsNull, 1, 1),
    ("IS_NUMBER", Func::IsNumber, 1, 1),
    ("IS_OBJECT", Func::IsObject, 1, 1),
    ("IS_PRIMITIVE", Func::IsPrimitive, 1, 1),
    ("IS_STRING", Func::IsString, 1, 1),
    ("CONCAT", Func::Concat, 2, usize::MAX),
    ("CONTAINS", Func::Contains, 2, 3),
    ("ENDSWITH", Func::EndsWith, 2, 3),
    ("STARTSWITH", Func::StartsWith, 2, 3),
    ("INDEX_OF", Func::IndexOf, 2, 3),
    ("LASTINDEXOF", Func::LastIndexOf, 2, 3),
    ("LEFT", Func::Left, 2, 2),
    ("RIGHT", Func::Right, 2, 2),
    ("LENGTH", Func::Length, 1, 1),
    ("LOWER", Func::Lower, 1, 1),
    ("UPPER", Func::Upper, 1, 1),
    ("LTRIM", Func::Ltrim, 1, 2),
    ("RTRIM", Func::Rtrim, 1, 2),
    ("TRIM", Func::Trim, 1, 2),
    ("REPLACE", Func::Replace, 3, 3),
    ("REPLICATE", Func::Replicate, 2, 2),
    ("REVERSE", Func::Reverse, 1, 1),
    ("SUBSTRING", Func::Substring, 3, 3),
    ("STRINGEQUALS", Func::StringEquals, 2, 3),
    ("STRINGTOARRAY", Func::StringToArray, 1, 1),
    ("STRINGTOBOOLEAN", Func::StringToBoolean, 1, 1),
    ("STRINGTONULL", Func::StringToNull, 1, 1),
    ("STRINGTONUMBER", Func::StringToNumber, 1, 1),
    ("STRINGTOOBJECT", Func::StringToObject, 1, 1),
    ("TOSTRING", Func::ToString, 1, 1),
    ("REGEXMATCH", Func::RegexMatch, 2, 3),
    ("ABS", Func::Abs, 1, 1),
    ("ACOS", Func::Acos, 1, 1),
    ("ASIN", Func::Asin, 1, 1),
    ("ATAN", Func::Atan, 1, 1),
    ("ATN2", Func::Atn2, 2, 2),
    ("CEILING", Func::Ceiling, 1, 1),
    ("COS", Func::Cos, 1, 1),
    ("COT", Func::Cot, 1, 1),
    ("DEGREES", Func::Degrees, 1, 1),
    ("EXP", Func::Exp, 1, 1),
    ("FLOOR", Func::Floor, 1, 1),
    ("LOG", Func::Log, 1, 2),
    ("LOG10", Func::Log10, 1, 1),
    ("PI", Func::Pi, 0, 0),
    ("POWER", Func::Power, 2, 2),
    ("RADIANS", Func::Radians, 1, 1),
    ("ROUND", Func::Round, 1, 1),
    ("SIGN", Func::Sign, 1, 1),
    ("SIN", Func::Sin, 1, 1),
    ("SQRT", Func::Sqrt, 1, 1),
    ("SQUARE", Func::Square, 1, 1),
    ("TAN", Func::Tan, 1, 1),
    ("TRUNC", Func::Trunc, 1, 1),
    ("NUMBERBIN", Func::NumberBin, 1, 2),
    ("INTADD", Func::IntAdd, 2, 2),
    ("INTSUB", Func::IntSub, 2, 2),
    ("INTMUL", Func::IntMul, 2, 2),
    ("INTDIV", Func::IntDiv, 2, 2),
    ("INTMOD", Func::IntMod, 2, 2),
    ("INTBITAND", Func::IntBitAnd, 2, 2),
    ("INTBITOR", Func::IntBitOr, 2, 2),
    ("INTBITXOR", Func::IntBitXor, 2, 2),
    ("INTBITNOT", Func::IntBitNot, 1, 1),
    ("INTBITLEFTSHIFT", Func::IntBitLeftShift, 2, 2),
    ("INTBITRIGHTSHIFT", Func::IntBitRightShift, 2, 2),
    ("ARRAY_CONCAT", Func::ArrayConcat, 2, usize::MAX),
    ("ARRAY_CONTAINS", Func::ArrayContains, 2, 3),
    ("ARRAY_CONTAINS_ANY", Func::ArrayContainsAny, 2, usize::MAX),
    ("ARRAY_CONTAINS_ALL", Func::ArrayContainsAll, 2, usize::MAX),
    ("ARRAY_LENGTH", Func::ArrayLength, 1, 1),
    ("ARRAY_SLICE", Func::ArraySlice, 2, 3),
    ("SETINTERSECT", Func::SetIntersect, 2, 2),
    ("SETUNION", Func::SetUnion, 2, 2),
    ("OBJECTTOARRAY", Func::ObjectToArray, 1, 3),
    ("IIF", Func::Iif, 3, 3),
    ("GETCURRENTDATETIME", Func::GetCurrentDateTime, 0, 0),
    ("GETCURRENTDATETIMESTATIC", Func::GetCurrentDateTime, 0, 0),
    ("GETCURRENTTIMESTAMP", Func::GetCurrentTimestamp, 0, 0),
    ("GETCURRENTTIMESTAMPSTATIC", Func::GetCurrentTimestamp, 0, 0),
    ("GETCURRENTTICKS", Func::GetCurrentTicks, 0, 0),
    ("GETCURRENTTICKSSTATIC", Func::GetCurrentTicks, 0, 0),
    ("DATETIMEADD", Func::DateTimeAdd, 3, 3),
    ("DATETIMEPART", Func::DateTimePart, 2, 2),
    ("DATETIMEDIFF", Func::DateTimeDiff, 3, 3),
    ("DATETIMEFROMPARTS", Func::DateTimeFromParts, 3, 7),
    ("DATETIMETOTIMESTAMP", Func::DateTimeToTimestamp, 1, 1),
    ("DATETIMETOTICKS", Func::DateTimeToTicks, 1, 1),
    ("TIMESTAMPTODATETIME", Func::TimestampToDateTime, 1, 1),
    ("TICKSTODATETIME", Func::TicksToDateTime, 1, 1),
];

/// Functions Cosmos DB has that this crate refuses by name instead of calling them unknown.
pub(crate) const REFUSED: &[&str] = &[
    "ST_DISTANCE",
    "ST_WITHIN",
    "ST_INTERSECTS",
    "ST_ISVALID",
    "ST_ISVALIDDETAILED",
    "ST_AREA",
    "VECTORDISTANCE",
    "FULLTEXTCONTAINS",
    "FULLTEXTCONTAINSALL",
    "FULLTEXTCONTAINSANY",
    "FULLTEXTSCORE",
    "RRF",
    "DOCUMENTID",
    "RAND",
    "CHOOSE",
    "DATETIMEBIN",
    "DATETIMEFORMAT",
    "COUNTIF",
    "MAKELIST",
    "MAKESET",
];

/// The function a name stands for (case-insensitive) and its argument range.
pub(crate) fn lookup(name: &str) -> Option<(Func, usize, usize)> {
    let upper = name.to_ascii_uppercase();
    TABLE
        .iter()
        .find(|(entry, ..)| *entry == upper)
        .map(|(_, func, min, max)| (*func, *min, *max))
}

/// One evaluated argument: `None` is undefined.
pub(crate) type Arg<'v> = Option<Cow<'v, Value>>;

fn string<'a>(arg: &'a Arg<'_>) -> Option<&'a str> {
    match arg.as_deref() {
        Some(Value::String(text)) => Some(text),
        _ => None,
    }
}

fn float(arg: &Arg<'_>) -> Option<f64> {
    arg.as_deref().and_then(as_f64)
}

fn integer(arg: &Arg<'_>) -> Option<i64> {
    arg.as_deref().and_then(as_integer)
}

fn boolean(arg: &Arg<'_>) -> Option<bool> {
    match arg.as_deref() {
        Some(Value::Bool(flag)) => Some(*flag),
        _ => None,
    }
}

/// The optional ignore-case argument: absent means false; present, it must be a boolean.
fn ignore_case(args: &[Arg<'_>], index: usize) -> Option<bool> {
    match args.get(index) {
        None => Some(false),
        Some(arg) => boolean(arg),
    }
}

fn math(arg: &Arg<'_>, operation: fn(f64) -> f64) -> Option<Value> {
    number(operation(float(arg)?))
}

fn int_operation(args: &[Arg<'_>], operation: fn(i64, i64) -> Option<i64>) -> Option<Value> {
    Some(Value::from(operation(
        integer(&args[0])?,
        integer(&args[1])?,
    )?))
}

/// A character index or count as the string functions take it: a whole number.
fn count(arg: &Arg<'_>) -> Option<i64> {
    let float = float(arg)?;
    (float.fract() == 0.0).then_some(float as i64)
}

fn chars_of(text: &str, start: usize, length: usize) -> String {
    text.chars().skip(start).take(length).collect()
}

fn trim_set<'t>(text: &'t str, set: Option<&str>, start: bool, end: bool) -> &'t str {
    let matches = |character: char| match set {
        None => character.is_whitespace(),
        Some(set) => set.contains(character),
    };
    let mut trimmed = text;
    if start {
        trimmed = trimmed.trim_start_matches(matches);
    }
    if end {
        trimmed = trimmed.trim_end_matches(matches);
    }
    trimmed
}

fn contains_value(array: &[Value], needle: &Value, partial: bool) -> bool {
    array.iter().any(|element| {
        if partial {
            if let (Value::Object(element), Value::Object(needle)) = (element, needle) {
                return needle.iter().all(|(key, wanted)| {
                    element.get(key).is_some_and(|found| equal(found, wanted))
                });
            }
        }
        equal(element, needle)
    })
}

fn date_part(arg: &Arg<'_>) -> Option<Part> {
    Part::from_name(string(arg)?)
}

fn date(arg: &Arg<'_>) -> Option<Parts> {
    datetime::parse(string(arg)?)
}

/// Calls a function on evaluated arguments (already checked for count).
pub(crate) fn call(func: Func, args: &[Arg<'_>], now: CurrentTime) -> Option<Value> {
    let first = args.first().unwrap_or(&None);
    let bool_value = |flag: bool| Some(Value::Bool(flag));
    match func {
        Func::IsArray => bool_value(matches!(first.as_deref(), Some(Value::Array(_)))),
        Func::IsBool => bool_value(matches!(first.as_deref(), Some(Value::Bool(_)))),
        Func::IsDefined => bool_value(first.is_some()),
        Func::IsFiniteNumber => bool_value(float(first).is_some_and(f64::is_finite)),
        Func::IsInteger => bool_value(integer(first).is_some()),
        Func::IsNull => bool_value(matches!(first.as_deref(), Some(Value::Null))),
        Func::IsNumber => bool_value(matches!(first.as_deref(), Some(Value::Number(_)))),
        Func::IsObject => bool_value(matches!(first.as_deref(), Some(Value::Object(_)))),
        Func::IsPrimitive => bool_value(matches!(
            first.as_deref(),
            Some(Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_))
        )),
        Func::IsString => bool_value(matches!(first.as_deref(), Some(Value::String(_)))),
        Func::Concat => {
            let mut joined = String::new();
            for arg in args {
                joined.push_str(string(arg)?);
            }
            Some(Value::String(joined))
        }
        Func::Contains | Func::StartsWith | Func::EndsWith => {
            let (text, part, ignore) = (string(first)?, string(&args[1])?, ignore_case(args, 2)?);
            let (text, part) = if ignore {
                (
                    Cow::Owned(text.to_lowercase()),
                    Cow::Owned(part.to_lowercase()),
                )
            } else {
                (Cow::Borrowed(text), Cow::Borrowed(part))
            };
            bool_value(match func {
                Func::Contains => text.contains(part.as_ref()),
                Func::StartsWith => text.starts_with(part.as_ref()),
                _ => text.ends_with(part.as_ref()),
            })
        }
        Func::IndexOf | Func::LastIndexOf => {
            let (text, part) = (string(first)?, string(&args[1])?);
            let characters: Vec<char> = text.chars().collect();
            let wanted: Vec<char> = part.chars().collect();
            let start = match args.get(2) {
                Some(arg) => count(arg)?,
                None => 0,
            };
            if start < 0 {
                return Some(Value::from(-1));
            }
            let start = start as usize;
            let fits = |at: usize| characters.get(at..at + wanted.len()) == Some(&wanted[..]);
            let found = if func == Func::IndexOf {
                (start..=characters.len()).find(|&at| fits(at))
            } else {
                (start..=characters.len()).rev().find(|&at| fits(at))
            };
            Some(Value::from(found.map_or(-1, |at| at as i64)))
        }
        Func::Left | Func::Right => {
            let (text, length) = (string(first)?, count(&args[1])?);
            if length < 0 {
                return None;
            }
            let total = text.chars().count();
            let length = (length as usize).min(total);
            let start = if func == Func::Left {
                0
            } else {
                total - length
            };
            Some(Value::String(chars_of(text, start, length)))
        }
        Func::Length => Some(Value::from(string(first)?.chars().count())),
        Func::Lower => Some(Value::String(string(first)?.to_lowercase())),
        Func::Upper => Some(Value::String(string(first)?.to_uppercase())),
        Func::Ltrim | Func::Rtrim | Func::Trim => {
            let text = string(first)?;
            let set = match args.get(1) {
                Some(arg) => Some(string(arg)?),
                None => None,
            };
            // An empty set trims nothing (LTRIM's page: trimEmptyString).
            if set == Some("") {
                return Some(Value::String(text.to_string()));
            }
            let trimmed = trim_set(text, set, func != Func::Rtrim, func != Func::Ltrim);
            Some(Value::String(trimmed.to_string()))
        }
        Func::Replace => {
            let (text, from, to) = (string(first)?, string(&args[1])?, string(&args[2])?);
            if from.is_empty() {
                return Some(Value::String(text.to_string()));
            }
            Some(Value::String(text.replace(from, to)))
        }
        Func::Replicate => {
            let (text, times) = (string(first)?, count(&args[1])?);
            // The page caps the result at 10,000 characters.
            if times < 0 || (text.chars().count() as i64).saturating_mul(times) > 10_000 {
                return None;
            }
            Some(Value::String(text.repeat(times as usize)))
        }
        Func::Reverse => Some(Value::String(string(first)?.chars().rev().collect())),
        Func::Substring => {
            let (text, start, length) = (string(first)?, count(&args[1])?, count(&args[2])?);
            if length <= 0 || start < 0 {
                return Some(Value::String(String::new()));
            }
            Some(Value::String(chars_of(
                text,
                start as usize,
                length as usize,
            )))
        }
        Func::StringEquals => {
            let (left, right, ignore) = (string(first)?, string(&args[1])?, ignore_case(args, 2)?);
            bool_value(if ignore {
                left.to_lowercase() == right.to_lowercase()
            } else {
                left == right
            })
        }
        Func::StringToArray
        | Func::StringToObject
        | Func::StringToBoolean
        | Func::StringToNull
        | Func::StringToNumber => {
            let parsed: Value = serde_json::from_str(string(first)?.trim()).ok()?;
            let fits = match func {
                Func::StringToArray => parsed.is_array(),
                Func::StringToObject => parsed.is_object(),
                Func::StringToBoolean => parsed.is_boolean(),
                Func::StringToNull => parsed.is_null(),
                _ => parsed.is_number(),
            };
            fits.then_some(parsed)
        }
        Func::ToString => match first.as_deref()? {
            Value::String(text) => Some(Value::String(text.clone())),
            // Numbers are doubles to the service, so a whole stored 1.0 prints as "1".
            Value::Number(stored) => {
                let normalized = stored
                    .as_f64()
                    .and_then(number)
                    .unwrap_or(Value::Number(stored.clone()));
                Some(Value::String(normalized.to_string()))
            }
            other => Some(Value::String(other.to_string())),
        },
        // Handled by the evaluator, which keeps the compiled expression (see `regex_match`).
        Func::RegexMatch => None,
        Func::Abs => math(first, f64::abs),
        Func::Acos => math(first, f64::acos),
        Func::Asin => math(first, f64::asin),
        Func::Atan => math(first, f64::atan),
        Func::Atn2 => number(float(first)?.atan2(float(&args[1])?)),
        Func::Ceiling => math(first, f64::ceil),
        Func::Cos => math(first, f64::cos),
        Func::Cot => math(first, |x| 1.0 / x.tan()),
        Func::Degrees => math(first, f64::to_degrees),
        Func::Exp => math(first, f64::exp),
        Func::Floor => math(first, f64::floor),
        Func::Log => match args.get(1) {
            // Through base-10 logarithms, which is what the page's LOG(2, 10) = LOG10(2) shows.
            Some(base) => number(float(first)?.log10() / float(base)?.log10()),
            None => math(first, f64::ln),
        },
        Func::Log10 => math(first, f64::log10),
        Func::Pi => number(std::f64::consts::PI),
        Func::Power => number(float(first)?.powf(float(&args[1])?)),
        Func::Radians => math(first, f64::to_radians),
        // ROUND rounds half away from zero (ROUND's page: 2.5 gives 3, -2.5 gives -3).
        Func::Round => math(first, f64::round),
        Func::Sign => math(first, |x| {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                0.0
            }
        }),
        Func::Sin => math(first, f64::sin),
        Func::Sqrt => math(first, f64::sqrt),
        Func::Square => math(first, |x| x * x),
        Func::Tan => math(first, f64::tan),
        Func::Trunc => math(first, f64::trunc),
        Func::NumberBin => {
            let (value, size) = (
                float(first)?,
                match args.get(1) {
                    Some(size) => float(size)?,
                    None => 1.0,
                },
            );
            if size == 0.0 {
                return None;
            }
            number((value / size).floor() * size)
        }
        Func::IntAdd => int_operation(args, i64::checked_add),
        Func::IntSub => int_operation(args, i64::checked_sub),
        Func::IntMul => int_operation(args, i64::checked_mul),
        Func::IntDiv => int_operation(args, i64::checked_div),
        Func::IntMod => int_operation(args, i64::checked_rem),
        Func::IntBitAnd => int_operation(args, |a, b| Some(a & b)),
        Func::IntBitOr => int_operation(args, |a, b| Some(a | b)),
        Func::IntBitXor => int_operation(args, |a, b| Some(a ^ b)),
        Func::IntBitNot => Some(Value::from(!integer(first)?)),
        Func::IntBitLeftShift => int_operation(args, |a, b| {
            u32::try_from(b).ok().and_then(|b| a.checked_shl(b))
        }),
        Func::IntBitRightShift => int_operation(args, |a, b| {
            u32::try_from(b).ok().and_then(|b| a.checked_shr(b))
        }),
        Func::ArrayConcat => {
            let mut joined = Vec::new();
            for arg in args {
                match arg.as_deref() {
                    Some(Value::Array(elements)) => joined.extend(elements.iter().cloned()),
                    _ => return None,
                }
            }
            Some(Value::Array(joined))
        }
        Func::ArrayContains => {
            let Some(Value::Array(array)) = first.as_deref() else {
                return None;
            };
            let needle = args[1].as_deref()?;
            let partial = match args.get(2) {
                Some(arg) => boolean(arg)?,
                None => false,
            };
            bool_value(contains_value(array, needle, partial))
        }
        Func::ArrayContainsAny | Func::ArrayContainsAll => {
            let Some(Value::Array(array)) = first.as_deref() else {
                return None;
            };
            let mut wanted = args[1..].iter().map(|arg| arg.as_deref());
            let found = |needle: Option<&Value>| {
                needle.is_some_and(|needle| contains_value(array, needle, false))
            };
            bool_value(if func == Func::ArrayContainsAny {
                wanted.any(found)
            } else {
                wanted.all(found)
            })
        }
        Func::ArrayLength => match first.as_deref()? {
            Value::Array(elements) => Some(Value::from(elements.len())),
            _ => None,
        },
        Func::ArraySlice => {
            let Some(Value::Array(elements)) = first.as_deref() else {
                return None;
            };
            let total = elements.len() as i64;
            let start = count(&args[1])?;
            let start = if start < 0 {
                (total + start).max(0)
            } else {
                start.min(total)
            };
            let length = match args.get(2) {
                Some(arg) => count(arg)?,
                None => total,
            };
            let end = if length < 0 {
                (total + length).max(start)
            } else {
                (start + length).min(total)
            };
            Some(Value::Array(
                elements[start as usize..end.max(start) as usize].to_vec(),
            ))
        }
        Func::SetIntersect | Func::SetUnion => {
            let (Some(Value::Array(left)), Some(Value::Array(right))) =
                (first.as_deref(), args[1].as_deref())
            else {
                return None;
            };
            let mut seen = std::collections::HashSet::new();
            let mut result = Vec::new();
            let candidates: Box<dyn Iterator<Item = &Value>> = if func == Func::SetUnion {
                Box::new(left.iter().chain(right.iter()))
            } else {
                Box::new(
                    left.iter()
                        .filter(|element| right.iter().any(|other| equal(element, other))),
                )
            };
            for element in candidates {
                if seen.insert(canonical(element)) {
                    result.push(element.clone());
                }
            }
            Some(Value::Array(result))
        }
        Func::ObjectToArray => {
            let Some(Value::Object(members)) = first.as_deref() else {
                return None;
            };
            let key_name = match args.get(1) {
                Some(arg) => string(arg)?.to_string(),
                None => "k".to_string(),
            };
            let value_name = match args.get(2) {
                Some(arg) => string(arg)?.to_string(),
                None => "v".to_string(),
            };
            let pairs = members
                .iter()
                .map(|(key, member)| {
                    let mut pair = Map::new();
                    pair.insert(key_name.clone(), Value::String(key.clone()));
                    pair.insert(value_name.clone(), member.clone());
                    Value::Object(pair)
                })
                .collect();
            Some(Value::Array(pairs))
        }
        Func::Iif => {
            let chosen = if boolean(first) == Some(true) {
                &args[1]
            } else {
                &args[2]
            };
            chosen.as_deref().cloned()
        }
        Func::GetCurrentDateTime => datetime::format(now.ticks).map(Value::String),
        Func::GetCurrentTimestamp => Some(Value::from(now.ticks.div_euclid(10_000))),
        Func::GetCurrentTicks => Some(Value::from(now.ticks)),
        Func::DateTimeAdd => {
            let (part, amount, parts) = (date_part(first)?, integer(&args[1])?, date(&args[2])?);
            datetime::format(datetime::add(part, amount, parts)?).map(Value::String)
        }
        Func::DateTimePart => Some(Value::from(datetime::part(
            date_part(first)?,
            date(&args[1])?,
        ))),
        Func::DateTimeDiff => {
            let (part, start, end) = (date_part(first)?, date(&args[1])?, date(&args[2])?);
            datetime::diff(part, start, end).map(Value::from)
        }
        Func::DateTimeFromParts => {
            let mut numbers = [0_i64; 7];
            for (slot, arg) in numbers.iter_mut().zip(args) {
                *slot = integer(arg)?;
            }
            let parts = Parts {
                year: numbers[0],
                month: numbers[1],
                day: numbers[2],
                hour: numbers[3],
                minute: numbers[4],
                second: numbers[5],
                fraction: numbers[6],
            };
            if !parts.is_valid() {
                return None;
            }
            datetime::format(parts.to_ticks()).map(Value::String)
        }
        Func::DateTimeToTimestamp => Some(Value::from(date(first)?.to_ticks().div_euclid(10_000))),
        Func::DateTimeToTicks => Some(Value::from(date(first)?.to_ticks())),
        Func::TimestampToDateTime => {
            let milliseconds = integer(first)?;
            datetime::format(milliseconds.checked_mul(10_000)?).map(Value::String)
        }
        Func::TicksToDateTime => datetime::format(integer(first)?).map(Value::String),
    }
}

/// RegexMatch's modifiers (<https://learn.microsoft.com/azure/cosmos-db/nosql/query/regexmatch>):
/// `m` multi-line, `s` dot matches newline, `i` ignore case, `x` ignore whitespace.
pub(crate) fn compile_regex(pattern: &str, modifiers: &str) -> Option<Regex> {
    let mut syntax = regex_automata::util::syntax::Config::new();
    for modifier in modifiers.chars() {
        syntax = match modifier {
            'm' => syntax.multi_line(true),
            's' => syntax.dot_matches_new_line(true),
            'i' => syntax.case_insensitive(true),
            'x' => syntax.ignore_whitespace(true),
            _ => return None,
        };
    }
    Regex::builder().syntax(syntax).build(pattern).ok()
}

pub(crate) fn regex_match(regex: &Regex, arg: &Arg<'_>) -> Option<Value> {
    Some(Value::Bool(regex.is_match(string(arg)?)))
}
