//! The evaluator: an expression tree and a context give a JSON value, as a pure function.
//!
//! Template values are compiled once (`TNode::compile`): JSON without expressions stays a
//! literal `Value`, each expression string becomes a parsed `Expr`, and an object's `copy`
//! array of `{name, count, input}` becomes a property loop. The context says which part of
//! the template is being evaluated (`Phase`), because ARM allows some functions only in some
//! parts: `reference` and `list*` only in resource bodies and outputs, `newGuid` and `utcNow`
//! only in parameter default values, `variables` nowhere in parameters (learn.microsoft.com,
//! "Resource functions", "String functions", "Date functions").

use serde_json::{Map, Value};

use crate::{
    error::{EvalError, EvalResult, Pos, EXPRESSIONS_LINK},
    json::Node,
    parse::{self, Expr, ExprKind},
    plan::{Resolver, Scope},
};

/// Which part of the template an expression belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// A parameter's `defaultValue`.
    ParameterDefault,
    /// Variables, and everything `plan` evaluates: names, types, api versions, locations,
    /// conditions, copy counts, `dependsOn`, `scope`.
    Plan,
    /// A resource's body, evaluated once the resources it depends on exist.
    Body,
    /// The `outputs` element, evaluated after every resource.
    Output,
}

impl Phase {
    pub(crate) fn allows_runtime_functions(self) -> bool {
        matches!(self, Phase::Body | Phase::Output)
    }
}

/// One enclosing copy loop and the iteration being evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CopyFrame {
    pub kind: CopyKind,
    pub name: String,
    pub index: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CopyKind {
    Resource,
    Output,
    Variable,
    Property,
}

/// What an expression can ask its surroundings for.
pub(crate) trait Env {
    fn scope(&self) -> &Scope;
    fn parameter(&self, name: &str) -> EvalResult<Value>;
    fn variable(&self, name: &str) -> EvalResult<Value>;
    fn deployment(&self) -> Value;
    /// The full id of the template resource that `reference`/`list*` name by name, by
    /// `type/name` or by id, and its `apiVersion`.
    fn resolve_resource(&self, name_or_id: &str) -> EvalResult<(String, Option<String>)>;
    fn resolver(&self) -> Option<&dyn Resolver>;
    /// A caller-supplied GUID for `newGuid()`, only while parameters are bound.
    fn new_guid(&self) -> Option<String>;
    /// The caller's clock for `utcNow()`, only while parameters are bound.
    fn utc_now(&self) -> Option<i64>;
}

pub(crate) struct Ctx<'a> {
    pub env: &'a dyn Env,
    pub phase: Phase,
    pub copies: &'a [CopyFrame],
}

impl<'a> Ctx<'a> {
    pub(crate) fn with_phase(&self, phase: Phase) -> Ctx<'a> {
        Ctx {
            env: self.env,
            phase,
            copies: self.copies,
        }
    }
}

/// ARM's name for the type of a value, as its messages print it.
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "Null",
        Value::Bool(_) => "Boolean",
        Value::Number(number) if number.is_f64() => "Float",
        Value::Number(_) => "Integer",
        Value::String(_) => "String",
        Value::Array(_) => "Array",
        Value::Object(_) => "Object",
    }
}

pub(crate) fn eval(expr: &Expr, ctx: &Ctx) -> EvalResult<Value> {
    match &expr.kind {
        ExprKind::String(text) => Ok(Value::String(text.clone())),
        ExprKind::Int(value) => Ok(Value::from(*value)),
        ExprKind::Bool(flag) => Ok(Value::Bool(*flag)),
        ExprKind::Call { func, name, args } => crate::functions::call(*func, name, args, ctx),
        ExprKind::Property { target, name } => {
            let value = eval(target, ctx)?;
            property(value, name)
        }
        ExprKind::Index { target, index } => {
            let value = eval(target, ctx)?;
            let index = eval(index, ctx)?;
            match (&value, &index) {
                (Value::Array(items), Value::Number(number)) => {
                    let position = number.as_i64().unwrap_or(-1);
                    usize::try_from(position)
                        .ok()
                        .and_then(|position| items.get(position))
                        .cloned()
                        .ok_or_else(|| {
                            EvalError::new(format!(
                                "The language expression property array index '{position}' is out of bounds."
                            ))
                        })
                }
                (Value::Object(_), Value::String(name)) => property(value.clone(), name),
                (Value::Array(_), other) => Err(EvalError::new(format!(
                    "The language expression property array index '{}' is not valid: an array index must be an integer, not a value of type '{}'.",
                    crate::dotnet::to_dotnet_string(other),
                    type_name(other)
                ))),
                (other, _) => Err(EvalError::new(format!(
                    "The language expression property '{}' can't be evaluated: the value is of type '{}', not an object or an array.",
                    crate::dotnet::to_dotnet_string(&index),
                    type_name(other)
                ))),
            }
        }
    }
}

/// `value.name`: property names match case-insensitively, as in ARM, where
/// `reference(..., 'Full').Identity.principalId` works (the docs' example).
pub(crate) fn property(value: Value, name: &str) -> EvalResult<Value> {
    match value {
        Value::Object(mut map) => {
            if let Some(found) = map.remove(name) {
                return Ok(found);
            }
            let key = map.keys().find(|key| key.eq_ignore_ascii_case(name)).cloned();
            match key.and_then(|key| map.remove(&key)) {
                Some(found) => Ok(found),
                None => Err(EvalError::new(format!(
                    "The language expression property '{name}' doesn't exist, available properties are '{}'.",
                    map.keys().cloned().collect::<Vec<_>>().join(", ")
                ))),
            }
        }
        other => Err(EvalError::new(format!(
            "The language expression property '{name}' can't be evaluated, property name must be a string and the value must be an object; the value is of type '{}'.",
            type_name(&other)
        ))),
    }
}

/// A template value compiled once: literals stay JSON, expression strings are parsed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TNode {
    pub value: TValue,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TValue {
    Literal(Value),
    /// An expression and its source text (what-if shows the text of what it cannot evaluate).
    Expr(Box<Expr>, Box<str>),
    Array(Vec<TNode>),
    Object(Vec<(Key, TNode)>, Vec<PropertyCopy>),
}

/// An object member's name: ARM evaluates names that are expressions too, as in
/// `"userAssignedIdentities": {"[resourceId('Microsoft.ManagedIdentity/userAssignedIdentities', 'id1')]": {}}`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Key {
    Literal(String),
    Expr(Box<Expr>),
}

/// A property loop: `"copy": [{"name": "disks", "count": 3, "input": {...}}]` in an object
/// sets the property `disks` to an array of `count` evaluated inputs
/// (learn.microsoft.com "Property iteration in ARM templates").
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PropertyCopy {
    pub name: String,
    pub count: TNode,
    pub input: TNode,
    pub pos: Pos,
}

/// A compile failure and where it happened.
pub(crate) type CompileError = (EvalError, Pos);

impl TNode {
    pub(crate) fn literal(value: Value, pos: Pos) -> TNode {
        TNode {
            value: TValue::Literal(value),
            pos,
        }
    }

    /// Compiles a JSON value; `copy_loops` says whether objects may hold property loops
    /// (resource bodies and variables do, parameter default values do not).
    pub(crate) fn compile(node: &Node, copy_loops: bool) -> Result<TNode, CompileError> {
        let pos = node.pos();
        let compiled = match node {
            Node::String(text, _) => match compile_string(text) {
                Ok(Some(expr)) => TValue::Expr(Box::new(expr), text.as_str().into()),
                Ok(None) => TValue::Literal(Value::String(unescape(text))),
                Err(error) => return Err((error, pos)),
            },
            Node::Array(items, _) => {
                let items = items
                    .iter()
                    .map(|item| TNode::compile(item, copy_loops))
                    .collect::<Result<Vec<_>, _>>()?;
                if items
                    .iter()
                    .all(|item| matches!(item.value, TValue::Literal(_)))
                {
                    TValue::Literal(Value::Array(
                        items.into_iter().map(TNode::into_literal).collect(),
                    ))
                } else {
                    TValue::Array(items)
                }
            }
            Node::Object(members, _) => {
                let mut fields = Vec::new();
                let mut copies = Vec::new();
                for member in members {
                    if copy_loops && member.key.eq_ignore_ascii_case("copy") {
                        if let Some(loops) = property_loops(&member.value)? {
                            copies.extend(loops);
                            continue;
                        }
                    }
                    let key = match compile_string(&member.key) {
                        Ok(Some(expr)) => Key::Expr(Box::new(expr)),
                        Ok(None) => Key::Literal(unescape(&member.key)),
                        Err(error) => return Err((error, member.value.pos())),
                    };
                    fields.push((key, TNode::compile(&member.value, copy_loops)?));
                }
                if copies.is_empty()
                    && fields.iter().all(|(key, field)| {
                        matches!(key, Key::Literal(_)) && matches!(field.value, TValue::Literal(_))
                    })
                {
                    let mut map = Map::new();
                    for (key, field) in fields {
                        if let Key::Literal(key) = key {
                            map.insert(key, field.into_literal());
                        }
                    }
                    TValue::Literal(Value::Object(map))
                } else {
                    TValue::Object(fields, copies)
                }
            }
            other => TValue::Literal(other.to_value()),
        };
        Ok(TNode {
            value: compiled,
            pos,
        })
    }

    fn into_literal(self) -> Value {
        match self.value {
            TValue::Literal(value) => value,
            _ => Value::Null,
        }
    }

    /// Calls `visit` with every expression in this value, including loop counts and inputs.
    pub(crate) fn visit_exprs<'n>(&'n self, visit: &mut dyn FnMut(&'n Expr)) {
        match &self.value {
            TValue::Literal(_) => {}
            TValue::Expr(expr, _) => visit(expr),
            TValue::Array(items) => items.iter().for_each(|item| item.visit_exprs(visit)),
            TValue::Object(fields, copies) => {
                for (key, field) in fields {
                    if let Key::Expr(expr) = key {
                        visit(expr);
                    }
                    field.visit_exprs(visit);
                }
                for copy in copies {
                    copy.count.visit_exprs(visit);
                    copy.input.visit_exprs(visit);
                }
            }
        }
    }

    pub(crate) fn eval(&self, ctx: &Ctx) -> EvalResult<Value> {
        self.eval_as(ctx, false)
    }

    /// `eval`, but an expression that cannot be evaluated (a `reference()` to a resource that
    /// is not deployed yet) stays as its source text, as ARM's what-if shows it.
    pub(crate) fn eval_lenient(&self, ctx: &Ctx) -> EvalResult<Value> {
        self.eval_as(ctx, true)
    }

    fn eval_as(&self, ctx: &Ctx, lenient: bool) -> EvalResult<Value> {
        match &self.value {
            TValue::Literal(value) => Ok(value.clone()),
            TValue::Expr(expr, text) => match eval(expr, ctx) {
                Err(_) if lenient => Ok(Value::String(text.to_string())),
                other => other,
            },
            TValue::Array(items) => items
                .iter()
                .map(|item| item.eval_as(ctx, lenient))
                .collect::<EvalResult<Vec<_>>>()
                .map(Value::Array),
            TValue::Object(fields, copies) => {
                let mut map = Map::new();
                for (key, field) in fields {
                    let name = match key {
                        Key::Literal(name) => name.clone(),
                        Key::Expr(expr) => match eval(expr, ctx)? {
                            Value::String(name) => name,
                            other => {
                                return Err(EvalError::new(format!(
                                    "The language expression used as a property name must give a string, not a value of type '{}'.",
                                    type_name(&other)
                                )))
                            }
                        },
                    };
                    map.insert(name, field.eval_as(ctx, lenient)?);
                }
                for copy in copies {
                    let count = copy_count(&copy.count, &ctx.with_phase(Phase::Plan), copy.pos)?;
                    let mut items = Vec::with_capacity(count as usize);
                    for index in 0..count {
                        let mut frames = ctx.copies.to_vec();
                        frames.push(CopyFrame {
                            kind: CopyKind::Property,
                            name: copy.name.clone(),
                            index,
                        });
                        let inner = Ctx {
                            env: ctx.env,
                            phase: ctx.phase,
                            copies: &frames,
                        };
                        items.push(copy.input.eval_as(&inner, lenient)?);
                    }
                    map.insert(copy.name.clone(), Value::Array(items));
                }
                Ok(Value::Object(map))
            }
        }
    }
}

/// ARM's copy count limit (learn.microsoft.com "Resource iteration in ARM templates").
pub(crate) const MAX_COPY_COUNT: i64 = 800;

/// Evaluates a copy loop's `count`: an integer from 0 to 800; `pos` is the loop's.
pub(crate) fn copy_count(count: &TNode, ctx: &Ctx, pos: Pos) -> EvalResult<i64> {
    let value = count.eval(ctx)?;
    let count = match &value {
        Value::Number(number) => number.as_i64(),
        Value::String(text) => text.trim().parse::<i64>().ok(),
        _ => None,
    };
    match count {
        Some(count) if (0..=MAX_COPY_COUNT).contains(&count) => Ok(count),
        _ => Err(EvalError::new(format!(
            "The template 'copy' definition {pos} has an invalid copy count. The copy count must be a positive integer value and cannot exceed '{MAX_COPY_COUNT}'. Please see https://aka.ms/arm-copy for usage details."
        ))),
    }
}

fn property_loops(node: &Node) -> Result<Option<Vec<PropertyCopy>>, CompileError> {
    let Node::Array(items, _) = node else {
        return Ok(None);
    };
    let looks_like_loops = !items.is_empty()
        && items.iter().all(|item| {
            item.get("name").is_some() && item.get("count").is_some() && item.get("input").is_some()
        });
    if !looks_like_loops {
        return Ok(None);
    }
    let mut loops = Vec::new();
    for item in items {
        let pos = item.pos();
        let name = match item.get("name").and_then(Node::as_str) {
            Some(name) => name.to_string(),
            None => {
                return Err((
                    EvalError::new(format!(
                        "The template 'copy' definition {pos} is not valid: the 'name' property must be a string. Please see https://aka.ms/arm-copy for usage details."
                    )),
                    pos,
                ))
            }
        };
        let count = match item.get("count") {
            Some(count) => TNode::compile(count, false)?,
            None => TNode::literal(Value::from(0), pos),
        };
        let input = match item.get("input") {
            Some(input) => TNode::compile(input, true)?,
            None => TNode::literal(Value::Null, pos),
        };
        loops.push(PropertyCopy {
            name,
            count,
            input,
            pos,
        });
    }
    Ok(Some(loops))
}

/// Whether a template string is an expression: it starts with `[` and ends with `]`, and
/// does not start with `[[`, which escapes a literal `[` (learn.microsoft.com "Syntax and
/// expressions in ARM templates", "Escape characters").
pub(crate) fn compile_string(text: &str) -> EvalResult<Option<Expr>> {
    if text.starts_with('[') && text.ends_with(']') && !text.starts_with("[[") && text.len() >= 2 {
        let inner = &text[1..text.len() - 1];
        return parse::parse(inner).map(Some);
    }
    Ok(None)
}

/// A literal template string: `[[...]` stands for `[...]`; a string that would not be an
/// expression anyway (`[[x`, no closing bracket) is left as it is.
pub(crate) fn unescape(text: &str) -> String {
    match text.strip_prefix("[[") {
        Some(rest) if text.ends_with(']') => format!("[{rest}"),
        _ => text.to_string(),
    }
}

/// The error for a function used where ARM does not allow it.
pub(crate) fn not_expected(name: &str) -> EvalError {
    EvalError::new(format!(
        "The template function '{name}' is not expected at this location. {EXPRESSIONS_LINK}"
    ))
}
