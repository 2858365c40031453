//! The Cosmos DB for NoSQL query language as a pure library: parse a query once, bind its
//! parameters, then learn which partitions it can touch and run it over items.
//!
//! The pipeline has jaq's shape, one module per stage: `lex` (hand-written lexer), `parse`
//! (recursive descent with precedence climbing, keeping byte ranges), `plan` (names resolved,
//! functions looked up, aggregates and group keys taken out, unsupported constructs refused with
//! their line and column), and `eval`/`exec` (a pure function of the bound plan and the items).
//! As in DataFusion, planning happens once: the partition-key filter and the query plan's
//! `queryInfo` are read off the bound plan, before and without execution.
//!
//! **Architecture invariant:** no I/O, no async, no clock. The current time that
//! GetCurrentDateTime and its siblings return is a parameter of execution, so a query's results
//! are a pure function of its text, its parameters, the items and that time.

mod ast;
mod datetime;
mod error;
mod eval;
mod exec;
mod functions;
mod lex;
mod parse;
mod plan;
mod query_info;
mod value;

#[cfg(test)]
mod tests;

use serde_json::Value;

pub use crate::error::{Position, QueryError};

/// The time a query runs at, which the date functions read (GetCurrentDateTime,
/// GetCurrentTimestamp, GetCurrentTicks and their `Static` forms return one value for the whole
/// query, as their pages say).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurrentTime {
    /// 100-nanosecond ticks since the Unix epoch, the unit of DateTimeToTicks.
    ticks: i64,
}

impl CurrentTime {
    pub fn from_unix_ticks(ticks: i64) -> CurrentTime {
        CurrentTime { ticks }
    }

    pub fn from_unix_millis(milliseconds: i64) -> CurrentTime {
        CurrentTime {
            ticks: milliseconds.saturating_mul(10_000),
        }
    }

    pub fn unix_ticks(self) -> i64 {
        self.ticks
    }
}

/// What one execution read: the basis of a request charge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecutionStats {
    /// Items taken from the iterator (a streaming query with TOP or LIMIT stops early).
    pub items_read: u64,
    /// Rows the FROM and JOIN clauses produced from them, before WHERE.
    pub rows_examined: u64,
    /// Result rows returned.
    pub rows_returned: u64,
}

/// A parsed and checked query. Parsing resolves every name and function, so a `Query` can only
/// fail to bind because of its parameters.
#[derive(Debug, Clone)]
pub struct Query {
    text: String,
    select: ast::Select,
    plan: plan::SelectPlan,
}

/// A query with its parameters bound: ready to plan partitions and to run.
#[derive(Debug, Clone)]
pub struct BoundQuery {
    text: String,
    select: ast::Select,
    plan: plan::SelectPlan,
}

/// Parses and checks a query.
pub fn parse(text: &str) -> Result<Query, QueryError> {
    let select = parse::parse(text)?;
    let plan = plan::lower(text, &select)?;
    Ok(Query {
        text: text.to_string(),
        select,
        plan,
    })
}

impl Query {
    /// The query text as given.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Binds `(name, value)` pairs (names with their `@`, as the request body's `parameters`
    /// carry them). A parameter the query uses but the request lacks is an error; unused ones
    /// are ignored.
    pub fn bind(&self, parameters: &[(String, Value)]) -> Result<BoundQuery, QueryError> {
        if let Some((name, _)) = parameters
            .iter()
            .find(|(name, _)| !name.starts_with('@') || name.len() < 2)
        {
            return Err(QueryError::InvalidParameter {
                name: name.clone(),
                message: "a parameter name starts with '@'".to_string(),
            });
        }
        let text = &self.text;
        let mut resolve = |name: &str, span: ast::Span| -> Result<Value, QueryError> {
            match parameters.iter().find(|(known, _)| known == name) {
                Some((_, value)) => Ok(value.clone()),
                None => Err(QueryError::MissingParameter {
                    name: name.to_string(),
                    position: Position::of(text, span.start),
                }),
            }
        };
        let plan = plan::bind(&self.plan, &mut resolve)?;
        Ok(BoundQuery {
            text: self.text.clone(),
            select: self.select.clone(),
            plan,
        })
    }
}

impl BoundQuery {
    /// Runs the query over the items (in the container's stable order) and returns every result
    /// row in order, with ORDER BY, GROUP BY, aggregates, DISTINCT, OFFSET LIMIT and TOP applied.
    /// A streaming query stops reading items once TOP or OFFSET + LIMIT rows are found.
    pub fn execute<'a>(
        &self,
        items: impl IntoIterator<Item = &'a Value>,
        now: CurrentTime,
    ) -> Result<Vec<Value>, QueryError> {
        self.execute_with_stats(items, now).map(|(rows, _)| rows)
    }

    /// [`BoundQuery::execute`], also telling how much work it took.
    pub fn execute_with_stats<'a>(
        &self,
        items: impl IntoIterator<Item = &'a Value>,
        now: CurrentTime,
    ) -> Result<(Vec<Value>, ExecutionStats), QueryError> {
        let mut collector = exec::Collector::new(&self.plan, now);
        let mut items_read = 0;
        if self.plan.sources.is_empty() {
            // A query without FROM evaluates once, whatever the container holds.
            collector.feed(&[&Value::Null]);
        } else {
            for item in items {
                items_read += 1;
                if !collector.feed(&[item]) {
                    break;
                }
            }
        }
        let rows_examined = collector.rows_examined;
        let rows = collector.finish();
        let stats = ExecutionStats {
            items_read,
            rows_examined,
            rows_returned: rows.len() as u64,
        };
        Ok((rows, stats))
    }

    /// For a streaming query: the rows one item contributes (FROM, JOIN, WHERE and the
    /// projection), without OFFSET, LIMIT or TOP, which the caller applies across items with
    /// [`BoundQuery::skip_and_take`]. This lets the caller page by item position.
    pub fn rows_of_item(&self, item: &Value, now: CurrentTime) -> Vec<Value> {
        let mut collector = exec::Collector::unpaged(&self.plan, now);
        if self.plan.sources.is_empty() {
            collector.feed(&[&Value::Null]);
        } else {
            collector.feed(&[item]);
        }
        collector.finish()
    }

    /// Whether the WHERE clause keeps at least one row of this item (every item, without WHERE).
    pub fn matches(&self, item: &Value, now: CurrentTime) -> bool {
        let context = eval::Context { now, group: None };
        let Some(filter) = &self.plan.filter else {
            return true;
        };
        let mut found = false;
        exec::bind_sources(&context, &self.plan.sources, &[item], &mut |row| {
            found = eval::is_true(&context, filter, row);
            !found
        });
        found
    }

    /// The rows to skip and the most rows to return over the whole result (OFFSET, and the
    /// smaller of LIMIT and TOP), for callers paging a streaming query themselves.
    pub fn skip_and_take(&self) -> (u64, Option<u64>) {
        let (skip, end) = exec::window(&self.plan);
        (skip, end.map(|end| end - skip))
    }

    /// Whether rows can be produced in item order without seeing all items (no ORDER BY, GROUP
    /// BY, aggregate or DISTINCT), so the caller can page by item position.
    pub fn is_streaming(&self) -> bool {
        !self.plan.grouped && self.plan.order_by.is_empty() && !self.plan.distinct
    }

    /// Equality constraints on the container's partition-key paths that every result satisfies,
    /// from the WHERE clause (`c.pk = 'x'`, `c.pk IN ('a', 'b')`, ANDed with anything, ORed
    /// between such constraints). Each entry is a key value, or for hierarchical keys
    /// (`["/tenantId", "/userId"]`) a value or a prefix of values, so the caller reads only
    /// those partitions. `None` means the query may touch any partition.
    pub fn partition_filter(&self, partition_key_paths: &[String]) -> Option<Vec<Vec<Value>>> {
        query_info::partition_filter(&self.plan, partition_key_paths)
    }

    /// The `queryInfo` object of the query plan response, describing this query as Cosmos DB
    /// does (DISTINCT, TOP, OFFSET, LIMIT, ORDER BY, GROUP BY, aggregates). `rewrittenQuery` is
    /// written only for ORDER BY (the `orderByItems`/`payload` form the SDKs merge); for
    /// aggregates and GROUP BY it stays empty, so a server answering whole queries should hand
    /// the SDKs [`BoundQuery::passthrough_query_info`] instead.
    pub fn query_info(&self) -> Value {
        query_info::query_info(&self.text, &self.select, &self.plan)
    }

    /// A `queryInfo` that asks the SDKs to pass results through unchanged: what a server that
    /// answers the whole query itself on one partition-key range reports.
    pub fn passthrough_query_info(&self) -> Value {
        query_info::passthrough(&self.plan)
    }
}
