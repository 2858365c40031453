//! The evaluator: a pure function from a bound expression and a row to a value or `undefined`.
//!
//! A row is a slice of borrowed values (slot 0 the item, then the aliases); results borrow from
//! the row where they can (`c.a.b` costs no copy), so filtering an item allocates nothing.
//! Operator semantics follow the operator pages: arithmetic and `||` need numbers and strings,
//! comparisons across types are undefined, AND/OR/NOT are three-valued with undefined
//! (<https://learn.microsoft.com/azure/cosmos-db/nosql/query/logical-operators>).

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::{Map, Value};

use crate::ast::{BinaryOp, UnaryOp};
use crate::exec;
use crate::functions::{self, Arg};
use crate::plan::Expr;
use crate::value::{self, as_f64, as_integer, compare, equality, number};
use crate::CurrentTime;

/// A group's key values and aggregate results, in the order of the select's lists.
pub(crate) type GroupValues<'g> = (&'g [Option<Value>], &'g [Option<Value>]);

/// What an expression may read besides its row.
pub(crate) struct Context<'g> {
    pub(crate) now: CurrentTime,
    /// In a grouped select's projection: the group's keys and aggregate results.
    pub(crate) group: Option<GroupValues<'g>>,
}

pub(crate) type Eval<'v> = Option<Cow<'v, Value>>;

fn owned<'v>(value: Option<Value>) -> Eval<'v> {
    value.map(Cow::Owned)
}

fn boolean<'v>(flag: Option<bool>) -> Eval<'v> {
    flag.map(|flag| Cow::Owned(Value::Bool(flag)))
}

fn as_bool(value: &Eval<'_>) -> Option<bool> {
    match value.as_deref() {
        Some(Value::Bool(flag)) => Some(*flag),
        _ => None,
    }
}

/// Whether a WHERE condition keeps the row: only `true` does.
pub(crate) fn is_true(context: &Context<'_>, expr: &Expr, row: &[&Value]) -> bool {
    matches!(eval(context, expr, row).as_deref(), Some(Value::Bool(true)))
}

pub(crate) fn eval<'v>(context: &Context<'_>, expr: &'v Expr, row: &[&'v Value]) -> Eval<'v> {
    match expr {
        Expr::Const(value) => Some(Cow::Borrowed(value)),
        Expr::Undefined | Expr::Param(..) => None,
        Expr::Slot(slot) => row.get(*slot).map(|value| Cow::Borrowed(*value)),
        Expr::Member(target, name) => member(eval(context, target, row)?, name),
        Expr::Index(target, index) => {
            let target = eval(context, target, row)?;
            match eval(context, index, row)?.as_ref() {
                Value::String(name) => member(target, name),
                Value::Number(position) => {
                    let position = usize::try_from(position.as_u64()?).ok()?;
                    match target {
                        Cow::Borrowed(Value::Array(elements)) => {
                            elements.get(position).map(Cow::Borrowed)
                        }
                        Cow::Owned(Value::Array(mut elements)) if position < elements.len() => {
                            Some(Cow::Owned(elements.swap_remove(position)))
                        }
                        _ => None,
                    }
                }
                _ => None,
            }
        }
        Expr::Not(operand) => boolean(as_bool(&eval(context, operand, row)).map(|flag| !flag)),
        Expr::Unary(operator, operand) => {
            let operand = eval(context, operand, row)?;
            match operator {
                UnaryOp::Negate => owned(number(-as_f64(&operand)?)),
                UnaryOp::Plus => owned(number(as_f64(&operand)?)),
                UnaryOp::BitNot => owned(Some(Value::from(!as_integer(&operand)?))),
                UnaryOp::Not => boolean(as_bool(&Some(operand)).map(|flag| !flag)),
            }
        }
        Expr::Binary(operator, left, right) => binary(context, *operator, left, right, row),
        Expr::Between(value, low, high) => {
            let value = eval(context, value, row);
            let low = compare(value.as_deref(), eval(context, low, row).as_deref());
            let high = compare(value.as_deref(), eval(context, high, row).as_deref());
            boolean(Some(low? != Ordering::Less && high? != Ordering::Greater))
        }
        Expr::In(value, list) => {
            // IN is a chain of ORs of equalities: true on a match, else undefined when some
            // comparison was undefined, else false.
            let value = eval(context, value, row)?;
            let mut undefined = false;
            for item in list {
                match equality(Some(&value), eval(context, item, row).as_deref()) {
                    Some(true) => return boolean(Some(true)),
                    Some(false) => {}
                    None => undefined = true,
                }
            }
            if undefined {
                None
            } else {
                boolean(Some(false))
            }
        }
        Expr::Like(value, pattern, escape) => {
            let value = eval(context, value, row)?;
            let pattern = eval(context, pattern, row)?;
            let escape = match escape {
                Some(escape) => match eval(context, escape, row)?.as_ref() {
                    Value::String(escape) if escape.chars().count() == 1 => escape.chars().next(),
                    _ => return None,
                },
                None => None,
            };
            match (value.as_ref(), pattern.as_ref()) {
                (Value::String(text), Value::String(pattern)) => {
                    boolean(Some(like(text, pattern, escape)))
                }
                _ => None,
            }
        }
        Expr::Conditional(condition, then, otherwise) => {
            if as_bool(&eval(context, condition, row)) == Some(true) {
                eval(context, then, row)
            } else {
                eval(context, otherwise, row)
            }
        }
        Expr::Coalesce(left, right) => {
            eval(context, left, row).or_else(|| eval(context, right, row))
        }
        Expr::Call(func, args) => {
            let args: Vec<Arg<'v>> = args.iter().map(|arg| eval(context, arg, row)).collect();
            owned(functions::call(*func, &args, context.now))
        }
        Expr::Regex(target, regex) => owned(functions::regex_match(
            &regex.0,
            &eval(context, target, row),
        )),
        Expr::Array(elements) => {
            // An undefined element is left out, as in a projection.
            let elements = elements
                .iter()
                .filter_map(|element| eval(context, element, row))
                .map(Cow::into_owned);
            Some(Cow::Owned(Value::Array(elements.collect())))
        }
        Expr::Object(members) => {
            let mut object = Map::new();
            for (key, member) in members {
                if let Some(value) = eval(context, member, row) {
                    object.insert(key.clone(), value.into_owned());
                }
            }
            Some(Cow::Owned(Value::Object(object)))
        }
        Expr::Exists(select) => boolean(Some(
            !exec::run_subquery(context.now, select, row, Some(1)).is_empty(),
        )),
        Expr::ArraySubquery(select) => Some(Cow::Owned(Value::Array(exec::run_subquery(
            context.now,
            select,
            row,
            None,
        )))),
        Expr::ScalarSubquery(select) => exec::run_subquery(context.now, select, row, Some(1))
            .into_iter()
            .next()
            .map(Cow::Owned),
        Expr::Aggregate(index) => context
            .group
            .and_then(|(_, aggregates)| aggregates.get(*index)?.clone())
            .map(Cow::Owned),
        Expr::GroupKey(index) => context
            .group
            .and_then(|(keys, _)| keys.get(*index)?.clone())
            .map(Cow::Owned),
    }
}

fn member<'v>(target: Cow<'v, Value>, name: &str) -> Eval<'v> {
    match target {
        Cow::Borrowed(Value::Object(members)) => members.get(name).map(Cow::Borrowed),
        Cow::Owned(Value::Object(mut members)) => members.remove(name).map(Cow::Owned),
        _ => None,
    }
}

fn binary<'v>(
    context: &Context<'_>,
    operator: BinaryOp,
    left: &'v Expr,
    right: &'v Expr,
    row: &[&'v Value],
) -> Eval<'v> {
    match operator {
        // AND is false as soon as one side is false, whatever the other is.
        BinaryOp::And => {
            let left = as_bool(&eval(context, left, row));
            if left == Some(false) {
                return boolean(Some(false));
            }
            match (left, as_bool(&eval(context, right, row))) {
                (_, Some(false)) => boolean(Some(false)),
                (Some(true), Some(true)) => boolean(Some(true)),
                _ => None,
            }
        }
        BinaryOp::Or => {
            let left = as_bool(&eval(context, left, row));
            if left == Some(true) {
                return boolean(Some(true));
            }
            match (left, as_bool(&eval(context, right, row))) {
                (_, Some(true)) => boolean(Some(true)),
                (Some(false), Some(false)) => boolean(Some(false)),
                _ => None,
            }
        }
        _ => {
            let left = eval(context, left, row);
            let right = eval(context, right, row);
            let (left, right) = (left.as_deref(), right.as_deref());
            match operator {
                BinaryOp::Equal => boolean(equality(left, right)),
                BinaryOp::NotEqual => boolean(equality(left, right).map(|equal| !equal)),
                BinaryOp::Less => boolean(compare(left, right).map(Ordering::is_lt)),
                BinaryOp::LessEqual => boolean(compare(left, right).map(Ordering::is_le)),
                BinaryOp::Greater => boolean(compare(left, right).map(Ordering::is_gt)),
                BinaryOp::GreaterEqual => boolean(compare(left, right).map(Ordering::is_ge)),
                BinaryOp::Concat => match (left?, right?) {
                    (Value::String(left), Value::String(right)) => {
                        Some(Cow::Owned(Value::String(format!("{left}{right}"))))
                    }
                    _ => None,
                },
                BinaryOp::Add
                | BinaryOp::Subtract
                | BinaryOp::Multiply
                | BinaryOp::Divide
                | BinaryOp::Modulo => owned(arithmetic(operator, left?, right?)),
                _ => {
                    let (left, right) = (as_integer(left?)?, as_integer(right?)?);
                    let result = match operator {
                        BinaryOp::BitOr => left | right,
                        BinaryOp::BitXor => left ^ right,
                        BinaryOp::BitAnd => left & right,
                        // Shifts work on 32-bit integers, as in JavaScript, whose operators these are.
                        BinaryOp::ShiftLeft => i64::from((left as i32).wrapping_shl(right as u32)),
                        BinaryOp::ShiftRight => i64::from((left as i32).wrapping_shr(right as u32)),
                        _ => i64::from((left as u32).wrapping_shr(right as u32)),
                    };
                    Some(Cow::Owned(Value::from(result)))
                }
            }
        }
    }
}

fn arithmetic(operator: BinaryOp, left: &Value, right: &Value) -> Option<Value> {
    let (Value::Number(left), Value::Number(right)) = (left, right) else {
        return None;
    };
    // Integers stay exact while they fit; the service computes in doubles, which agree there.
    if let (Some(left), Some(right)) = (left.as_i64(), right.as_i64()) {
        let exact = match operator {
            BinaryOp::Add => left.checked_add(right),
            BinaryOp::Subtract => left.checked_sub(right),
            BinaryOp::Multiply => left.checked_mul(right),
            _ => None,
        };
        if let Some(exact) = exact {
            return Some(Value::from(exact));
        }
    }
    let (left, right) = (left.as_f64()?, right.as_f64()?);
    number(match operator {
        BinaryOp::Add => left + right,
        BinaryOp::Subtract => left - right,
        BinaryOp::Multiply => left * right,
        BinaryOp::Divide => left / right,
        _ => left % right,
    })
}

/// LIKE: `%` any run, `_` one character, `[abc]`, `[a-c]` and `[^a]` sets, and an optional escape
/// character (<https://learn.microsoft.com/azure/cosmos-db/nosql/query/keywords#like>).
pub(crate) fn like(text: &str, pattern: &str, escape: Option<char>) -> bool {
    let tokens = like_tokens(pattern, escape);
    let text: Vec<char> = text.chars().collect();
    // Dynamic programming over pattern tokens: `reachable[i]` says the tokens so far can match
    // exactly the first `i` characters. Linear in text times pattern, whatever the `%`s.
    let mut reachable = vec![false; text.len() + 1];
    reachable[0] = true;
    for token in &tokens {
        let mut next = vec![false; text.len() + 1];
        match token {
            LikeToken::Any => {
                let mut seen = false;
                for (index, slot) in next.iter_mut().enumerate() {
                    seen |= reachable[index];
                    *slot = seen;
                }
            }
            _ => {
                for index in 0..text.len() {
                    if reachable[index] && token.matches(text[index]) {
                        next[index + 1] = true;
                    }
                }
            }
        }
        reachable = next;
    }
    reachable[text.len()]
}

enum LikeToken {
    /// `%`: any run of characters.
    Any,
    /// `_`: one character.
    One,
    Literal(char),
    /// `[...]`: single characters and `a-z` ranges, negated by a leading `^`.
    Set {
        negated: bool,
        singles: Vec<char>,
        ranges: Vec<(char, char)>,
    },
}

impl LikeToken {
    fn matches(&self, character: char) -> bool {
        match self {
            LikeToken::Any | LikeToken::One => true,
            LikeToken::Literal(literal) => *literal == character,
            LikeToken::Set {
                negated,
                singles,
                ranges,
            } => {
                let inside = singles.contains(&character)
                    || ranges
                        .iter()
                        .any(|(low, high)| (*low..=*high).contains(&character));
                inside != *negated
            }
        }
    }
}

fn like_tokens(pattern: &str, escape: Option<char>) -> Vec<LikeToken> {
    let pattern: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut index = 0;
    while index < pattern.len() {
        let character = pattern[index];
        index += 1;
        if Some(character) == escape {
            // An escape at the very end escapes nothing and matches itself.
            let literal = pattern.get(index).copied().unwrap_or(character);
            index += 1;
            tokens.push(LikeToken::Literal(literal));
            continue;
        }
        match character {
            // Consecutive `%`s mean the same as one.
            '%' if matches!(tokens.last(), Some(LikeToken::Any)) => {}
            '%' => tokens.push(LikeToken::Any),
            '_' => tokens.push(LikeToken::One),
            '[' => match pattern[index..].iter().position(|&close| close == ']') {
                Some(close) => {
                    let mut set = &pattern[index..index + close];
                    index += close + 1;
                    let negated = set.first() == Some(&'^');
                    if negated {
                        set = &set[1..];
                    }
                    let (mut singles, mut ranges) = (Vec::new(), Vec::new());
                    let mut at = 0;
                    while at < set.len() {
                        if at + 2 < set.len() && set[at + 1] == '-' {
                            ranges.push((set[at], set[at + 2]));
                            at += 3;
                        } else {
                            singles.push(set[at]);
                            at += 1;
                        }
                    }
                    tokens.push(LikeToken::Set {
                        negated,
                        singles,
                        ranges,
                    });
                }
                None => tokens.push(LikeToken::Literal('[')),
            },
            literal => tokens.push(LikeToken::Literal(literal)),
        }
    }
    tokens
}

/// For ORDER BY and grouping: the total order of Cosmos DB's types.
pub(crate) fn order(left: &Option<Value>, right: &Option<Value>) -> Ordering {
    value::total_order(left.as_ref(), right.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns() {
        let cases = [
            ("Adventure", "Adv%", None, true),
            ("Adventure", "%ture", None, true),
            ("Adventure", "A_venture", None, true),
            ("Adventure", "a%", None, false),
            ("50% off", "50!%%", Some('!'), true),
            ("50 off", "50!%%", Some('!'), false),
            ("bike", "[a-c]ike", None, true),
            ("hike", "[^a-c]ike", None, true),
            ("bike", "[^a-c]ike", None, false),
            ("", "%", None, true),
            (
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                "%a%a%a%a%a%a%a%a%a%a%a%b",
                None,
                false,
            ),
        ];
        for (text, pattern, escape, expected) in cases {
            assert_eq!(
                like(text, pattern, escape),
                expected,
                "{text} LIKE {pattern}"
            );
        }
    }
}
