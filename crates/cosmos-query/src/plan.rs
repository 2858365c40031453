//! The checking step and the lower form: names become slots, function names become `Func`s,
//! aggregates are taken out of the projection, GROUP BY expressions in the projection become
//! group keys, and every construct the evaluator does not support is refused here, with its
//! position, before any item is read.
//!
//! Slot 0 of every row is the container's item itself (the root the FROM clause starts from);
//! the FROM alias and the JOIN aliases take the next slots, and a subquery's aliases follow its
//! enclosing query's, so an inner expression can read the outer row.

use std::sync::Arc;

use regex_automata::meta::Regex;
use serde_json::Value;

use crate::ast::{self, BinaryOp, Count, ExprKind, Span, UnaryOp};
use crate::error::{Position, QueryError};
use crate::functions::{self, AggregateKind, Func};

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    Const(Value),
    Undefined,
    /// A parameter, replaced by its value when the query is bound.
    Param(String, Span),
    Slot(usize),
    Member(Box<Expr>, String),
    Index(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Unary(UnaryOp, Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    Between(Box<Expr>, Box<Expr>, Box<Expr>),
    In(Box<Expr>, Vec<Expr>),
    Like(Box<Expr>, Box<Expr>, Option<Box<Expr>>),
    Conditional(Box<Expr>, Box<Expr>, Box<Expr>),
    Coalesce(Box<Expr>, Box<Expr>),
    Call(Func, Vec<Expr>),
    /// RegexMatch whose pattern and modifiers were constant at bind time, compiled once.
    Regex(Box<Expr>, CompiledRegex),
    Array(Vec<Expr>),
    Object(Vec<(String, Expr)>),
    Exists(Box<SelectPlan>),
    ArraySubquery(Box<SelectPlan>),
    ScalarSubquery(Box<SelectPlan>),
    /// The result of the select's aggregate with this index (grouped selects only).
    Aggregate(usize),
    /// The value of the select's GROUP BY expression with this index.
    GroupKey(usize),
}

/// A compiled regular expression; two are never equal, which only matters to the GROUP BY
/// matching of expressions, done before binding.
#[derive(Debug, Clone)]
pub(crate) struct CompiledRegex(pub(crate) Arc<Regex>);

impl PartialEq for CompiledRegex {
    fn eq(&self, _: &CompiledRegex) -> bool {
        false
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SourcePlan {
    pub(crate) iterate: bool,
    pub(crate) expr: Expr,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ProjectionPlan {
    /// `SELECT *`: the value bound to this slot.
    Star(usize),
    Value(Expr),
    Object(Vec<(String, Expr)>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CountPlan {
    Literal(u64),
    Param(String, Span),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SelectPlan {
    /// The slot of the first source; sources take consecutive slots.
    pub(crate) first_slot: usize,
    pub(crate) sources: Vec<SourcePlan>,
    pub(crate) filter: Option<Expr>,
    pub(crate) group_by: Vec<Expr>,
    pub(crate) aggregates: Vec<(AggregateKind, Expr)>,
    /// GROUP BY or an aggregate: rows fold into groups before projection.
    pub(crate) grouped: bool,
    pub(crate) projection: ProjectionPlan,
    pub(crate) distinct: bool,
    pub(crate) order_by: Vec<(Expr, bool)>,
    pub(crate) top: Option<CountPlan>,
    pub(crate) offset: Option<CountPlan>,
    pub(crate) limit: Option<CountPlan>,
}

struct Scope {
    names: Vec<(String, usize)>,
}

impl Scope {
    fn resolve(&self, name: &str) -> Option<usize> {
        self.names
            .iter()
            .rev()
            .find(|(known, _)| known == name)
            .map(|(_, slot)| *slot)
    }
}

struct Lowerer<'t> {
    text: &'t str,
}

/// Where aggregates may appear while lowering an expression.
enum Aggregates<'a> {
    Forbidden,
    Collect(&'a mut Vec<(AggregateKind, Expr)>),
}

pub(crate) fn lower(text: &str, select: &ast::Select) -> Result<SelectPlan, QueryError> {
    let lowerer = Lowerer { text };
    let scope = Scope { names: Vec::new() };
    lowerer.select(select, &scope, true)
}

impl Lowerer<'_> {
    fn position(&self, span: Span) -> Position {
        Position::of(self.text, span.start)
    }

    fn invalid(&self, span: Span, message: impl Into<String>) -> QueryError {
        QueryError::Invalid {
            message: message.into(),
            position: self.position(span),
        }
    }

    fn unsupported(&self, span: Span, construct: impl Into<String>) -> QueryError {
        QueryError::Unsupported {
            construct: construct.into(),
            position: self.position(span),
        }
    }

    fn select(
        &self,
        select: &ast::Select,
        outer: &Scope,
        top_level: bool,
    ) -> Result<SelectPlan, QueryError> {
        let first_slot = if top_level {
            1
        } else {
            outer
                .names
                .iter()
                .map(|(_, slot)| slot + 1)
                .max()
                .unwrap_or(1)
        };
        let mut scope = Scope {
            names: outer.names.clone(),
        };
        let mut sources = Vec::new();
        let mut next_slot = first_slot;
        if let Some(from) = &select.from {
            let (expr, default_alias) = if top_level {
                self.container_path(&from.expr)?
            } else {
                self.refuse_subquery_source(&from.expr)?;
                let expr = self.expr(&from.expr, &scope, &mut Aggregates::Forbidden)?;
                (expr, default_alias(&from.expr))
            };
            let alias = from.alias.clone().or(default_alias);
            let Some(alias) = alias else {
                return Err(self.invalid(from.expr.span, "the FROM source needs an alias"));
            };
            sources.push(SourcePlan {
                iterate: from.iterate,
                expr,
            });
            scope.names.push((alias, next_slot));
            next_slot += 1;
        } else if !select.joins.is_empty() {
            return Err(self.invalid(select.joins[0].expr.span, "JOIN needs a FROM clause"));
        }
        for join in &select.joins {
            self.refuse_subquery_source(&join.expr)?;
            let expr = self.expr(&join.expr, &scope, &mut Aggregates::Forbidden)?;
            let Some(alias) = join.alias.clone().or_else(|| default_alias(&join.expr)) else {
                return Err(self.invalid(join.expr.span, "the JOIN source needs an alias"));
            };
            sources.push(SourcePlan {
                iterate: join.iterate,
                expr,
            });
            scope.names.push((alias, next_slot));
            next_slot += 1;
        }
        let filter = match &select.filter {
            Some(filter) => Some(self.expr(filter, &scope, &mut Aggregates::Forbidden)?),
            None => None,
        };
        let group_by = select
            .group_by
            .iter()
            .map(|expr| self.expr(expr, &scope, &mut Aggregates::Forbidden))
            .collect::<Result<Vec<_>, _>>()?;
        let mut aggregates = Vec::new();
        let projection = match &select.projection {
            ast::Projection::Star(span) => {
                if sources.len() != 1 {
                    return Err(
                        self.invalid(*span, "'SELECT *' is only valid with a single input set.")
                    );
                }
                if !group_by.is_empty() {
                    return Err(self.invalid(*span, "'SELECT *' is not valid with GROUP BY."));
                }
                ProjectionPlan::Star(first_slot)
            }
            ast::Projection::Value(expr) => ProjectionPlan::Value(self.expr(
                expr,
                &scope,
                &mut Aggregates::Collect(&mut aggregates),
            )?),
            ast::Projection::Items(items) => {
                let mut members: Vec<(String, Expr)> = Vec::new();
                let mut unnamed = 0;
                for (expr, alias) in items {
                    let name = match alias.clone().or_else(|| implicit_alias(expr)) {
                        Some(name) => name,
                        None => {
                            unnamed += 1;
                            format!("${unnamed}")
                        }
                    };
                    if members.iter().any(|(known, _)| *known == name) {
                        return Err(self.invalid(
                            expr.span,
                            format!("Duplicate alias '{name}' in the select list."),
                        ));
                    }
                    let lowered =
                        self.expr(expr, &scope, &mut Aggregates::Collect(&mut aggregates))?;
                    members.push((name, lowered));
                }
                ProjectionPlan::Object(members)
            }
        };
        let grouped = !group_by.is_empty() || !aggregates.is_empty();
        let projection = if grouped {
            self.group_projection(select, projection, &group_by)?
        } else {
            projection
        };
        let mut order_by = Vec::new();
        for (expr, descending) in &select.order_by {
            if grouped {
                return Err(
                    self.unsupported(expr.span, "ORDER BY together with GROUP BY or an aggregate")
                );
            }
            let lowered = self.expr(expr, &scope, &mut Aggregates::Forbidden)?;
            if !is_path(&lowered) {
                return Err(self.invalid(
                    expr.span,
                    "Unsupported ORDER BY clause. ORDER BY item expression could not be mapped to a document path.",
                ));
            }
            order_by.push((lowered, *descending));
        }
        let count = |count: &Count| match count {
            Count::Literal(value) => CountPlan::Literal(*value),
            Count::Param(name, span) => CountPlan::Param(name.clone(), *span),
        };
        Ok(SelectPlan {
            first_slot,
            sources,
            filter,
            group_by,
            aggregates,
            grouped,
            projection,
            distinct: select.distinct,
            order_by,
            top: select.top.as_ref().map(count),
            offset: select
                .offset_limit
                .as_ref()
                .map(|(offset, _)| count(offset)),
            limit: select.offset_limit.as_ref().map(|(_, limit)| count(limit)),
        })
    }

    /// `JOIN (SELECT ...) x` ranges over the subquery's rows, which this crate does not do; it
    /// must not be taken for a scalar subquery's single value.
    fn refuse_subquery_source(&self, expr: &ast::Expr) -> Result<(), QueryError> {
        match &expr.kind {
            ExprKind::ScalarSubquery(_) => {
                Err(self.unsupported(expr.span, "a subquery as a FROM or JOIN source"))
            }
            _ => Ok(()),
        }
    }

    /// In a grouped select, the projection may read a row only through a GROUP BY expression or
    /// inside an aggregate (the GROUP BY page's rule); those parts become group keys.
    fn group_projection(
        &self,
        select: &ast::Select,
        projection: ProjectionPlan,
        group_by: &[Expr],
    ) -> Result<ProjectionPlan, QueryError> {
        let substitute = |expr: Expr| -> Result<Expr, QueryError> {
            let replaced = expr.rebuild(&mut |node| {
                Ok(group_by
                    .iter()
                    .position(|key| key == node)
                    .map(Expr::GroupKey))
            })?;
            if replaced.reads_row() {
                return Err(self.invalid(
                    select.span,
                    "a property reference in the select list is not contained in either an aggregate function or the GROUP BY clause",
                ));
            }
            Ok(replaced)
        };
        Ok(match projection {
            ProjectionPlan::Star(slot) => ProjectionPlan::Star(slot),
            ProjectionPlan::Value(expr) => ProjectionPlan::Value(substitute(expr)?),
            ProjectionPlan::Object(members) => ProjectionPlan::Object(
                members
                    .into_iter()
                    .map(|(name, expr)| Ok((name, substitute(expr)?)))
                    .collect::<Result<_, QueryError>>()?,
            ),
        })
    }

    /// The top-level FROM source: the container (any name) with an optional path into each item.
    fn container_path(&self, expr: &ast::Expr) -> Result<(Expr, Option<String>), QueryError> {
        match &expr.kind {
            ExprKind::Ident(name) => Ok((Expr::Slot(0), Some(name.clone()))),
            ExprKind::Member(target, name) => {
                let (target, _) = self.container_path(target)?;
                Ok((
                    Expr::Member(Box::new(target), name.clone()),
                    Some(name.clone()),
                ))
            }
            ExprKind::Index(target, index) => {
                let (target, _) = self.container_path(target)?;
                let index = match &index.kind {
                    ExprKind::Literal(value @ (Value::String(_) | Value::Number(_))) => {
                        Expr::Const(value.clone())
                    }
                    _ => {
                        return Err(self.invalid(
                            index.span,
                            "a FROM path index must be a string or number literal",
                        ))
                    }
                };
                let alias = match &index {
                    Expr::Const(Value::String(name)) => Some(name.clone()),
                    _ => None,
                };
                Ok((Expr::Index(Box::new(target), Box::new(index)), alias))
            }
            ExprKind::ScalarSubquery(_) => Err(self.unsupported(expr.span, "a subquery in FROM")),
            _ => Err(self.invalid(
                expr.span,
                "the FROM clause must name the container or a path in it",
            )),
        }
    }

    fn expr(
        &self,
        expr: &ast::Expr,
        scope: &Scope,
        aggregates: &mut Aggregates<'_>,
    ) -> Result<Expr, QueryError> {
        let boxed = |lowered: Expr| Box::new(lowered);
        Ok(match &expr.kind {
            ExprKind::Literal(value) => Expr::Const(value.clone()),
            ExprKind::Undefined => Expr::Undefined,
            ExprKind::Param(name) => Expr::Param(name.clone(), expr.span),
            ExprKind::Ident(name) => match scope.resolve(name) {
                Some(slot) => Expr::Slot(slot),
                None => {
                    return Err(self.invalid(
                        expr.span,
                        format!("Identifier '{name}' could not be resolved."),
                    ))
                }
            },
            ExprKind::Member(target, name) => {
                Expr::Member(boxed(self.expr(target, scope, aggregates)?), name.clone())
            }
            ExprKind::Index(target, index) => Expr::Index(
                boxed(self.expr(target, scope, aggregates)?),
                boxed(self.expr(index, scope, aggregates)?),
            ),
            ExprKind::Unary(UnaryOp::Not, operand) => {
                Expr::Not(boxed(self.expr(operand, scope, aggregates)?))
            }
            ExprKind::Unary(operator, operand) => {
                Expr::Unary(*operator, boxed(self.expr(operand, scope, aggregates)?))
            }
            ExprKind::Binary(operator, left, right) => Expr::Binary(
                *operator,
                boxed(self.expr(left, scope, aggregates)?),
                boxed(self.expr(right, scope, aggregates)?),
            ),
            ExprKind::Between {
                value,
                low,
                high,
                negated,
            } => {
                let between = Expr::Between(
                    boxed(self.expr(value, scope, aggregates)?),
                    boxed(self.expr(low, scope, aggregates)?),
                    boxed(self.expr(high, scope, aggregates)?),
                );
                negate_if(between, *negated)
            }
            ExprKind::In {
                value,
                list,
                negated,
            } => {
                let value = self.expr(value, scope, aggregates)?;
                let list = list
                    .iter()
                    .map(|item| self.expr(item, scope, aggregates))
                    .collect::<Result<_, _>>()?;
                negate_if(Expr::In(boxed(value), list), *negated)
            }
            ExprKind::Like {
                value,
                pattern,
                escape,
                negated,
            } => {
                let escape = match escape {
                    Some(escape) => Some(boxed(self.expr(escape, scope, aggregates)?)),
                    None => None,
                };
                let like = Expr::Like(
                    boxed(self.expr(value, scope, aggregates)?),
                    boxed(self.expr(pattern, scope, aggregates)?),
                    escape,
                );
                negate_if(like, *negated)
            }
            ExprKind::Conditional(condition, then, otherwise) => Expr::Conditional(
                boxed(self.expr(condition, scope, aggregates)?),
                boxed(self.expr(then, scope, aggregates)?),
                boxed(self.expr(otherwise, scope, aggregates)?),
            ),
            ExprKind::Coalesce(left, right) => Expr::Coalesce(
                boxed(self.expr(left, scope, aggregates)?),
                boxed(self.expr(right, scope, aggregates)?),
            ),
            ExprKind::Call {
                name, udf: true, ..
            } => {
                return Err(
                    self.unsupported(expr.span, format!("the user-defined function udf.{name}"))
                );
            }
            ExprKind::Call {
                name,
                args,
                udf: false,
            } => return self.call(expr, name, args, scope, aggregates),
            ExprKind::Array(elements) => Expr::Array(
                elements
                    .iter()
                    .map(|element| self.expr(element, scope, aggregates))
                    .collect::<Result<_, _>>()?,
            ),
            ExprKind::Object(members) => Expr::Object(
                members
                    .iter()
                    .map(|(key, member)| Ok((key.clone(), self.expr(member, scope, aggregates)?)))
                    .collect::<Result<_, QueryError>>()?,
            ),
            ExprKind::Exists(select) => Expr::Exists(Box::new(self.subquery(select, scope)?)),
            ExprKind::ArraySubquery(select) => {
                Expr::ArraySubquery(Box::new(self.subquery(select, scope)?))
            }
            ExprKind::ScalarSubquery(select) => {
                Expr::ScalarSubquery(Box::new(self.subquery(select, scope)?))
            }
        })
    }

    /// A subquery ranges over a value of the enclosing row (`x IN c.tags`), never over the
    /// container again: that would be a second scan, which the subquery page calls costly and
    /// which this crate refuses.
    fn subquery(&self, select: &ast::Select, scope: &Scope) -> Result<SelectPlan, QueryError> {
        if let Some(from) = &select.from {
            if let Some(name) = root_name(&from.expr) {
                if scope.resolve(name).is_none() {
                    return Err(
                        self.unsupported(from.expr.span, "a subquery over the whole container")
                    );
                }
            }
        }
        self.select(select, scope, false)
    }

    fn call(
        &self,
        expr: &ast::Expr,
        name: &str,
        args: &[ast::Expr],
        scope: &Scope,
        aggregates: &mut Aggregates<'_>,
    ) -> Result<Expr, QueryError> {
        if let Some(kind) = AggregateKind::from_name(name) {
            let Aggregates::Collect(collected) = aggregates else {
                return Err(self.invalid(
                    expr.span,
                    format!("the aggregate {} is not allowed here", kind.sql_name()),
                ));
            };
            if args.len() != 1 {
                return Err(self.invalid(
                    expr.span,
                    format!("The function '{}' requires 1 argument(s).", kind.sql_name()),
                ));
            }
            let argument = self.expr(&args[0], scope, &mut Aggregates::Forbidden)?;
            collected.push((kind, argument));
            return Ok(Expr::Aggregate(collected.len() - 1));
        }
        let Some((func, min, max)) = functions::lookup(name) else {
            if functions::REFUSED.contains(&name.to_ascii_uppercase().as_str()) {
                return Err(self.unsupported(expr.span, format!("the system function {name}")));
            }
            return Err(self.invalid(
                expr.span,
                format!("'{name}' is not a recognized built-in function name."),
            ));
        };
        if args.len() < min || args.len() > max {
            let expected = if min == max {
                format!("{min}")
            } else if max == usize::MAX {
                format!("at least {min}")
            } else {
                format!("between {min} and {max}")
            };
            return Err(self.invalid(
                expr.span,
                format!("The function '{name}' requires {expected} argument(s)."),
            ));
        }
        let args = args
            .iter()
            .map(|arg| self.expr(arg, scope, aggregates))
            .collect::<Result<_, _>>()?;
        Ok(Expr::Call(func, args))
    }
}

fn negate_if(expr: Expr, negated: bool) -> Expr {
    if negated {
        Expr::Not(Box::new(expr))
    } else {
        expr
    }
}

/// The name at the root of a path expression (`c` in `c.a[0]`).
fn root_name(expr: &ast::Expr) -> Option<&str> {
    match &expr.kind {
        ExprKind::Ident(name) => Some(name),
        ExprKind::Member(target, _) | ExprKind::Index(target, _) => root_name(target),
        _ => None,
    }
}

/// The alias a source gets without AS: its last property name.
fn default_alias(expr: &ast::Expr) -> Option<String> {
    match &expr.kind {
        ExprKind::Ident(name) | ExprKind::Member(_, name) => Some(name.clone()),
        ExprKind::Index(_, index) => match &index.kind {
            ExprKind::Literal(Value::String(name)) => Some(name.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// The name a projected expression gets without AS: the property it reads
/// (<https://learn.microsoft.com/azure/cosmos-db/nosql/query/select>); others are `$1`, `$2`, ...
fn implicit_alias(expr: &ast::Expr) -> Option<String> {
    match &expr.kind {
        ExprKind::Ident(name) | ExprKind::Member(_, name) => Some(name.clone()),
        ExprKind::Index(_, index) => match &index.kind {
            ExprKind::Literal(Value::String(name)) => Some(name.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// ORDER BY accepts document paths only: an alias followed by property names and constant indexes.
fn is_path(expr: &Expr) -> bool {
    match expr {
        Expr::Slot(_) => true,
        Expr::Member(target, _) => is_path(target),
        Expr::Index(target, index) => {
            is_path(target) && matches!(**index, Expr::Const(_) | Expr::Param(..))
        }
        _ => false,
    }
}

impl Expr {
    /// A copy where `replace` may substitute any node (checked first, before its children).
    pub(crate) fn rebuild(
        &self,
        replace: &mut dyn FnMut(&Expr) -> Result<Option<Expr>, QueryError>,
    ) -> Result<Expr, QueryError> {
        if let Some(replacement) = replace(self)? {
            return Ok(replacement);
        }
        let mut again = |expr: &Expr| expr.rebuild(replace).map(Box::new);
        Ok(match self {
            Expr::Const(_)
            | Expr::Undefined
            | Expr::Param(..)
            | Expr::Slot(_)
            | Expr::Aggregate(_)
            | Expr::GroupKey(_) => self.clone(),
            Expr::Member(target, name) => Expr::Member(again(target)?, name.clone()),
            Expr::Index(target, index) => Expr::Index(again(target)?, again(index)?),
            Expr::Not(operand) => Expr::Not(again(operand)?),
            Expr::Unary(operator, operand) => Expr::Unary(*operator, again(operand)?),
            Expr::Binary(operator, left, right) => {
                Expr::Binary(*operator, again(left)?, again(right)?)
            }
            Expr::Between(value, low, high) => {
                Expr::Between(again(value)?, again(low)?, again(high)?)
            }
            Expr::In(value, list) => {
                let value = again(value)?;
                Expr::In(
                    value,
                    list.iter()
                        .map(|item| item.rebuild(replace))
                        .collect::<Result<_, _>>()?,
                )
            }
            Expr::Like(value, pattern, escape) => {
                let value = again(value)?;
                let pattern = again(pattern)?;
                let escape = match escape {
                    Some(escape) => Some(escape.rebuild(replace).map(Box::new)?),
                    None => None,
                };
                Expr::Like(value, pattern, escape)
            }
            Expr::Conditional(condition, then, otherwise) => {
                Expr::Conditional(again(condition)?, again(then)?, again(otherwise)?)
            }
            Expr::Coalesce(left, right) => Expr::Coalesce(again(left)?, again(right)?),
            Expr::Call(func, args) => Expr::Call(
                *func,
                args.iter()
                    .map(|arg| arg.rebuild(replace))
                    .collect::<Result<_, _>>()?,
            ),
            Expr::Regex(target, regex) => Expr::Regex(again(target)?, regex.clone()),
            Expr::Array(elements) => Expr::Array(
                elements
                    .iter()
                    .map(|element| element.rebuild(replace))
                    .collect::<Result<_, _>>()?,
            ),
            Expr::Object(members) => Expr::Object(
                members
                    .iter()
                    .map(|(key, member)| Ok((key.clone(), member.rebuild(replace)?)))
                    .collect::<Result<_, QueryError>>()?,
            ),
            Expr::Exists(select) => Expr::Exists(Box::new(select.rebuild(replace)?)),
            Expr::ArraySubquery(select) => Expr::ArraySubquery(Box::new(select.rebuild(replace)?)),
            Expr::ScalarSubquery(select) => {
                Expr::ScalarSubquery(Box::new(select.rebuild(replace)?))
            }
        })
    }

    /// Whether evaluating the expression reads the current row (a slot or a subquery over it).
    fn reads_row(&self) -> bool {
        let mut reads = false;
        let _ = self.rebuild(&mut |node| {
            match node {
                Expr::Slot(_)
                | Expr::Exists(_)
                | Expr::ArraySubquery(_)
                | Expr::ScalarSubquery(_) => reads = true,
                // An aggregate's argument is read row by row, before grouping ends.
                Expr::Aggregate(_) => return Ok(Some(Expr::Undefined)),
                _ => {}
            }
            Ok(None)
        });
        reads
    }
}

impl SelectPlan {
    pub(crate) fn rebuild(
        &self,
        replace: &mut dyn FnMut(&Expr) -> Result<Option<Expr>, QueryError>,
    ) -> Result<SelectPlan, QueryError> {
        let sources = self
            .sources
            .iter()
            .map(|source| {
                Ok(SourcePlan {
                    iterate: source.iterate,
                    expr: source.expr.rebuild(replace)?,
                })
            })
            .collect::<Result<_, QueryError>>()?;
        let filter = match &self.filter {
            Some(filter) => Some(filter.rebuild(replace)?),
            None => None,
        };
        let group_by = self
            .group_by
            .iter()
            .map(|expr| expr.rebuild(replace))
            .collect::<Result<_, _>>()?;
        let aggregates = self
            .aggregates
            .iter()
            .map(|(kind, expr)| Ok((*kind, expr.rebuild(replace)?)))
            .collect::<Result<_, QueryError>>()?;
        let projection = match &self.projection {
            ProjectionPlan::Star(slot) => ProjectionPlan::Star(*slot),
            ProjectionPlan::Value(expr) => ProjectionPlan::Value(expr.rebuild(replace)?),
            ProjectionPlan::Object(members) => ProjectionPlan::Object(
                members
                    .iter()
                    .map(|(name, expr)| Ok((name.clone(), expr.rebuild(replace)?)))
                    .collect::<Result<_, QueryError>>()?,
            ),
        };
        let order_by = self
            .order_by
            .iter()
            .map(|(expr, descending)| Ok((expr.rebuild(replace)?, *descending)))
            .collect::<Result<_, QueryError>>()?;
        Ok(SelectPlan {
            first_slot: self.first_slot,
            sources,
            filter,
            group_by,
            aggregates,
            grouped: self.grouped,
            projection,
            distinct: self.distinct,
            order_by,
            top: self.top.clone(),
            offset: self.offset.clone(),
            limit: self.limit.clone(),
        })
    }

    /// Every count parameter of this select and its subqueries, resolved to an integer.
    pub(crate) fn bind_counts(
        &mut self,
        resolve: &mut dyn FnMut(&str, Span) -> Result<Value, QueryError>,
    ) -> Result<(), QueryError> {
        for count in [&mut self.top, &mut self.offset, &mut self.limit]
            .into_iter()
            .flatten()
        {
            if let CountPlan::Param(name, span) = count {
                let value = resolve(name, *span)?;
                match value.as_u64() {
                    Some(integer) => *count = CountPlan::Literal(integer),
                    None => {
                        return Err(QueryError::InvalidParameter {
                            name: name.clone(),
                            message: "TOP, OFFSET and LIMIT take a non-negative integer"
                                .to_string(),
                        })
                    }
                }
            }
        }
        Ok(())
    }

    pub(crate) fn count(count: &Option<CountPlan>) -> Option<u64> {
        match count {
            Some(CountPlan::Literal(value)) => Some(*value),
            _ => None,
        }
    }
}

/// Binds parameters into a plan: each `@name` becomes its value, RegexMatch with a constant
/// pattern is compiled once, and so are counts; subqueries are bound too.
pub(crate) fn bind(
    plan: &SelectPlan,
    resolve: &mut dyn FnMut(&str, Span) -> Result<Value, QueryError>,
) -> Result<SelectPlan, QueryError> {
    let mut bound = plan.rebuild(&mut |node| match node {
        Expr::Param(name, span) => Ok(Some(Expr::Const(resolve(name, *span)?))),
        Expr::ScalarSubquery(select) => {
            Ok(Some(Expr::ScalarSubquery(Box::new(bind(select, resolve)?))))
        }
        Expr::Exists(select) => Ok(Some(Expr::Exists(Box::new(bind(select, resolve)?)))),
        Expr::ArraySubquery(select) => {
            Ok(Some(Expr::ArraySubquery(Box::new(bind(select, resolve)?))))
        }
        _ => Ok(None),
    })?;
    bound = bound.rebuild(&mut |node| {
        if let Expr::Call(Func::RegexMatch, args) = node {
            let modifiers = match args.get(2) {
                None => Some(""),
                Some(Expr::Const(Value::String(modifiers))) => Some(modifiers.as_str()),
                Some(_) => None,
            };
            if let (Expr::Const(Value::String(pattern)), Some(modifiers)) = (&args[1], modifiers) {
                return Ok(Some(match functions::compile_regex(pattern, modifiers) {
                    Some(regex) => {
                        Expr::Regex(Box::new(args[0].clone()), CompiledRegex(Arc::new(regex)))
                    }
                    // An invalid pattern matches nothing: RegexMatch returns undefined.
                    None => Expr::Undefined,
                }));
            }
        }
        Ok(None)
    })?;
    bound.bind_counts(resolve)?;
    Ok(bound)
}
