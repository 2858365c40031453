//! What the plan tells the caller before execution: the partition-key filter, and the
//! `queryInfo` object of Cosmos DB's query plan response.
//!
//! The SDKs read `queryInfo` (`@azure/cosmos`: `PartitionedQueryExecutionInfo` in
//! `request/ErrorResponse.ts`, consumed by `PipelinedQueryExecutionContext`; `azure-cosmos`:
//! `_PartitionedQueryExecutionInfo`, consumed by `_PipelineExecutionContext`) and build a
//! client-side pipeline from it that merges what each partition-key range returns:
//! - `orderBy` non-empty: the SDK sends `rewrittenQuery` to every range and expects documents of
//!   the shape `{"orderByItems": [{"item": ...}], "payload": ...}`, merges them, returns payloads;
//! - `aggregates` / `groupByExpressions` / `groupByAliasToAggregateType` non-empty: it aggregates
//!   per-range partial results itself (`hasSelectValue` chooses the VALUE form);
//! - `top`, `offset` and `limit`: it applies them again over the merged stream;
//! - `distinctType` `Ordered` / `Unordered`: it deduplicates again;
//! - `hasNonStreamingOrderBy`: vector-search ordering, buffered on the client.
//!
//! A server that runs the whole query itself on one range wants none of that, so it reports
//! [`passthrough`]: every field empty, which makes both SDKs send the original query and return
//! its pages as they come.

use serde_json::{json, Map, Value};

use crate::ast::{self, Count, ExprKind, Projection};
use crate::functions::AggregateKind;
use crate::plan::{Expr, SelectPlan};
use crate::value::equal;

/// Most key combinations a filter may expand to before it is treated as unconstrained.
const MOST_KEYS: usize = 1000;

fn count_value(count: &Option<Count>, bound: Option<u64>) -> Value {
    match (count, bound) {
        (Some(_), Some(value)) => Value::from(value),
        _ => Value::Null,
    }
}

pub(crate) fn query_info(text: &str, select: &ast::Select, plan: &SelectPlan) -> Value {
    let has_select_value = matches!(select.projection, Projection::Value(_));
    let distinct_type = match (select.distinct, select.order_by.is_empty()) {
        (false, _) => "None",
        (true, false) => "Ordered",
        (true, true) => "Unordered",
    };
    let order_by: Vec<Value> = select
        .order_by
        .iter()
        .map(|(_, descending)| {
            Value::from(if *descending {
                "Descending"
            } else {
                "Ascending"
            })
        })
        .collect();
    let order_by_expressions: Vec<Value> = select
        .order_by
        .iter()
        .map(|(expr, _)| Value::from(print(expr)))
        .collect();
    let group_by_expressions: Vec<Value> = select
        .group_by
        .iter()
        .map(|expr| Value::from(print(expr)))
        .collect();
    // Cosmos DB reports `aggregates` for `SELECT VALUE <aggregate>` without GROUP BY, and the
    // alias map for aggregates in a select list (with or without GROUP BY).
    let mut aggregates = Vec::new();
    let mut group_by_aliases = Vec::new();
    let mut alias_to_aggregate = Map::new();
    match (&select.projection, select.group_by.is_empty()) {
        (Projection::Value(expr), true) => {
            if let Some(kind) = aggregate_of(expr) {
                aggregates.push(Value::from(kind.plan_name()));
            }
        }
        (Projection::Items(_), _) if plan.grouped => {
            if let crate::plan::ProjectionPlan::Object(members) = &plan.projection {
                for (name, expr) in members {
                    group_by_aliases.push(Value::from(name.clone()));
                    let kind = match expr {
                        Expr::Aggregate(index) => plan
                            .aggregates
                            .get(*index)
                            .map(|(kind, _)| Value::from(kind.plan_name())),
                        _ => None,
                    };
                    alias_to_aggregate.insert(name.clone(), kind.unwrap_or(Value::Null));
                }
            }
        }
        _ => {}
    }
    json!({
        "distinctType": distinct_type,
        "top": count_value(&select.top, SelectPlan::count(&plan.top)),
        "offset": count_value(&select.offset_limit.as_ref().map(|(offset, _)| offset.clone()), SelectPlan::count(&plan.offset)),
        "limit": count_value(&select.offset_limit.as_ref().map(|(_, limit)| limit.clone()), SelectPlan::count(&plan.limit)),
        "orderBy": order_by,
        "orderByExpressions": order_by_expressions,
        "groupByExpressions": group_by_expressions,
        "groupByAliases": group_by_aliases,
        "aggregates": aggregates,
        "groupByAliasToAggregateType": alias_to_aggregate,
        "rewrittenQuery": rewritten_query(text, select),
        "hasSelectValue": has_select_value,
        "dCountInfo": Value::Null,
        "hasNonStreamingOrderBy": false,
    })
}

/// The `queryInfo` of a query the server answers whole: nothing for the SDK to redo.
pub(crate) fn passthrough(plan: &SelectPlan) -> Value {
    let has_select_value = matches!(plan.projection, crate::plan::ProjectionPlan::Value(_));
    json!({
        "distinctType": "None",
        "top": Value::Null,
        "offset": Value::Null,
        "limit": Value::Null,
        "orderBy": [],
        "orderByExpressions": [],
        "groupByExpressions": [],
        "groupByAliases": [],
        "aggregates": [],
        "groupByAliasToAggregateType": {},
        "rewrittenQuery": "",
        "hasSelectValue": has_select_value,
        "dCountInfo": Value::Null,
        "hasNonStreamingOrderBy": false,
    })
}

fn aggregate_of(expr: &ast::Expr) -> Option<AggregateKind> {
    match &expr.kind {
        ExprKind::Call {
            name, udf: false, ..
        } => AggregateKind::from_name(name),
        _ => None,
    }
}

/// The per-range query Cosmos DB gives the SDK for an ORDER BY query: the sort keys as
/// `orderByItems` beside the original projection as `payload`. Other queries run unchanged, so
/// their `rewrittenQuery` is empty.
fn rewritten_query(text: &str, select: &ast::Select) -> String {
    if select.order_by.is_empty() {
        return String::new();
    }
    let alias = select
        .from
        .as_ref()
        .and_then(|from| from.alias.clone().or_else(|| root_name(&from.expr)))
        .unwrap_or_else(|| "root".to_string());
    let items: Vec<String> = select
        .order_by
        .iter()
        .map(|(expr, _)| format!("{{\"item\": {}}}", print(expr)))
        .collect();
    let payload = match &select.projection {
        Projection::Star(_) => alias.clone(),
        Projection::Value(expr) => print(expr),
        Projection::Items(members) => {
            let members: Vec<String> = members
                .iter()
                .enumerate()
                .map(|(index, (expr, name))| {
                    let name = name
                        .clone()
                        .or_else(|| implicit_name(expr))
                        .unwrap_or_else(|| format!("${}", index + 1));
                    format!("{}: {}", quote(&name), print(expr))
                })
                .collect();
            format!("{{{}}}", members.join(", "))
        }
    };
    let tail = text.get(select.tail.start..select.tail.end).unwrap_or("");
    format!(
        "SELECT {alias}._rid, [{}] AS orderByItems, {payload} AS payload {tail}",
        items.join(", ")
    )
}

fn root_name(expr: &ast::Expr) -> Option<String> {
    match &expr.kind {
        ExprKind::Ident(name) => Some(name.clone()),
        ExprKind::Member(target, _) | ExprKind::Index(target, _) => root_name(target),
        _ => None,
    }
}

fn implicit_name(expr: &ast::Expr) -> Option<String> {
    match &expr.kind {
        ExprKind::Ident(name) | ExprKind::Member(_, name) => Some(name.clone()),
        _ => None,
    }
}

fn quote(text: &str) -> String {
    Value::from(text).to_string()
}

/// Prints an expression back as query text (for `orderByExpressions`, `groupByExpressions`
/// and the rewritten query).
pub(crate) fn print(expr: &ast::Expr) -> String {
    let list = |exprs: &[ast::Expr]| exprs.iter().map(print).collect::<Vec<_>>().join(", ");
    match &expr.kind {
        ExprKind::Literal(value) => value.to_string(),
        ExprKind::Undefined => "undefined".to_string(),
        ExprKind::Param(name) | ExprKind::Ident(name) => name.clone(),
        ExprKind::Member(target, name) => format!("{}.{name}", print(target)),
        ExprKind::Index(target, index) => format!("{}[{}]", print(target), print(index)),
        ExprKind::Unary(ast::UnaryOp::Not, operand) => format!("(NOT {})", print(operand)),
        ExprKind::Unary(ast::UnaryOp::Negate, operand) => format!("(-{})", print(operand)),
        ExprKind::Unary(ast::UnaryOp::Plus, operand) => format!("(+{})", print(operand)),
        ExprKind::Unary(ast::UnaryOp::BitNot, operand) => format!("(~{})", print(operand)),
        ExprKind::Binary(operator, left, right) => {
            format!("({} {} {})", print(left), operator.symbol(), print(right))
        }
        ExprKind::Between {
            value,
            low,
            high,
            negated,
        } => format!(
            "({} {}BETWEEN {} AND {})",
            print(value),
            if *negated { "NOT " } else { "" },
            print(low),
            print(high)
        ),
        ExprKind::In {
            value,
            list: items,
            negated,
        } => {
            format!(
                "({} {}IN ({}))",
                print(value),
                if *negated { "NOT " } else { "" },
                list(items)
            )
        }
        ExprKind::Like {
            value,
            pattern,
            escape,
            negated,
        } => format!(
            "({} {}LIKE {}{})",
            print(value),
            if *negated { "NOT " } else { "" },
            print(pattern),
            escape
                .as_ref()
                .map(|escape| format!(" ESCAPE {}", print(escape)))
                .unwrap_or_default()
        ),
        ExprKind::Conditional(condition, then, otherwise) => {
            format!(
                "({} ? {} : {})",
                print(condition),
                print(then),
                print(otherwise)
            )
        }
        ExprKind::Coalesce(left, right) => format!("({} ?? {})", print(left), print(right)),
        ExprKind::Call { name, args, udf } => {
            format!("{}{name}({})", if *udf { "udf." } else { "" }, list(args))
        }
        ExprKind::Array(elements) => format!("[{}]", list(elements)),
        ExprKind::Object(members) => format!(
            "{{{}}}",
            members
                .iter()
                .map(|(key, value)| format!("{}: {}", quote(key), print(value)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        ExprKind::Exists(_) | ExprKind::ArraySubquery(_) | ExprKind::ScalarSubquery(_) => {
            "(subquery)".to_string()
        }
    }
}

/// One way a row can satisfy the filter: a value for some of the key paths (by index).
type Assignment = Vec<Option<Value>>;

pub(crate) fn partition_filter(plan: &SelectPlan, paths: &[String]) -> Option<Vec<Vec<Value>>> {
    // The key paths are read from the item itself, so only `FROM c` (slot 1 bound to the item)
    // lets a condition on the alias constrain them.
    let from = plan.sources.first()?;
    if from.iterate || from.expr != Expr::Slot(0) || paths.is_empty() {
        return None;
    }
    let paths: Vec<Vec<&str>> = paths
        .iter()
        .map(|path| {
            path.split('/')
                .filter(|segment| !segment.is_empty())
                .collect()
        })
        .collect();
    let assignments = constrain(plan.filter.as_ref()?, plan.first_slot, &paths)?;
    let mut keys: Vec<Vec<Value>> = Vec::new();
    for assignment in assignments {
        let prefix: Vec<Value> = assignment.into_iter().map_while(|value| value).collect();
        if prefix.is_empty() {
            return None;
        }
        if !keys.iter().any(|known| {
            known.len() == prefix.len() && known.iter().zip(&prefix).all(|(a, b)| equal(a, b))
        }) {
            keys.push(prefix);
        }
    }
    Some(keys)
}

/// The disjunction of assignments a condition implies; `None` when it constrains no key path.
fn constrain(expr: &Expr, slot: usize, paths: &[Vec<&str>]) -> Option<Vec<Assignment>> {
    let single = |path: usize, value: &Value| {
        let mut assignment = vec![None; paths.len()];
        assignment[path] = Some(value.clone());
        assignment
    };
    match expr {
        Expr::Binary(ast::BinaryOp::Equal, left, right) => {
            match (key_path(left, slot, paths), &**right) {
                (Some(path), Expr::Const(value)) => Some(vec![single(path, value)]),
                _ => match (&**left, key_path(right, slot, paths)) {
                    (Expr::Const(value), Some(path)) => Some(vec![single(path, value)]),
                    _ => None,
                },
            }
        }
        Expr::In(value, list) => {
            let path = key_path(value, slot, paths)?;
            list.iter()
                .map(|item| match item {
                    Expr::Const(value) => Some(single(path, value)),
                    _ => None,
                })
                .collect()
        }
        Expr::Binary(ast::BinaryOp::And, left, right) => {
            match (constrain(left, slot, paths), constrain(right, slot, paths)) {
                (None, None) => None,
                (Some(only), None) | (None, Some(only)) => Some(only),
                (Some(left), Some(right)) => {
                    if left.len().saturating_mul(right.len()) > MOST_KEYS {
                        return None;
                    }
                    let mut combined = Vec::new();
                    for left in &left {
                        for right in &right {
                            // A path given two different values cannot hold: that pair is dropped.
                            let merged: Option<Assignment> = left
                                .iter()
                                .zip(right)
                                .map(|pair| match pair {
                                    (Some(a), Some(b)) if !equal(a, b) => None,
                                    (Some(a), _) | (None, Some(a)) => Some(Some(a.clone())),
                                    (None, None) => Some(None),
                                })
                                .collect();
                            combined.extend(merged);
                        }
                    }
                    Some(combined)
                }
            }
        }
        Expr::Binary(ast::BinaryOp::Or, left, right) => {
            let mut either = constrain(left, slot, paths)?;
            either.extend(constrain(right, slot, paths)?);
            (either.len() <= MOST_KEYS).then_some(either)
        }
        _ => None,
    }
}

/// Which key path an expression reads, if it is `alias.a.b` (or `alias["a"]["b"]`) for one.
fn key_path(expr: &Expr, slot: usize, paths: &[Vec<&str>]) -> Option<usize> {
    let mut segments = Vec::new();
    let mut current = expr;
    loop {
        match current {
            Expr::Member(target, name) => {
                segments.push(name.as_str());
                current = target;
            }
            Expr::Index(target, index) => match &**index {
                Expr::Const(Value::String(name)) => {
                    segments.push(name.as_str());
                    current = target;
                }
                _ => return None,
            },
            Expr::Slot(found) if *found == slot => break,
            _ => return None,
        }
    }
    segments.reverse();
    paths.iter().position(|path| *path == segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Printing an expression and parsing the text again gives the same tree (up to spans), so
    /// the expressions the plan reports are the query's own.
    fn check(text: &str) {
        let printed = |query: &str| -> String {
            let select = crate::parse::parse(query).unwrap();
            let Projection::Value(expr) = &select.projection else {
                panic!("use SELECT VALUE")
            };
            print(expr)
        };
        let once = printed(&format!("SELECT VALUE {text}"));
        let twice = printed(&format!("SELECT VALUE {once}"));
        assert_eq!(once, twice, "{text}");
    }

    #[test]
    fn printed_expressions_parse_back() {
        for text in [
            "c.a.b[0][\"x y\"]",
            "1 + 2 * -c.n - 3 / 4 % 5",
            "NOT (c.a = 1 AND c.b != 'x') OR c.c <= 2.5",
            "c.a BETWEEN 1 AND 2 AND c.b NOT IN ('a', \"b\") AND c.d LIKE 'x%' ESCAPE '!'",
            "c.a ?? c.b ? [1, {k: null, \"q r\": true}] : ARRAY_CONTAINS(@list, c.id, true)",
            "'it\\'s' || \"a\\\"b\" || '\\u00e9\\n'",
            "(c.a | c.b) ^ (c.c & ~c.d) << 2 >> 1 >>> 3",
            "udf.tax(c.price, undefined)",
        ] {
            check(text);
        }
    }
}
