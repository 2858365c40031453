//! Running a bound select: bind the FROM and JOIN sources into rows, filter, then either project
//! each row or fold rows into groups, and finally order, deduplicate and page.
//!
//! The clause order is the one of the SELECT page: FROM, WHERE, GROUP BY, SELECT, DISTINCT,
//! ORDER BY, OFFSET LIMIT / TOP (<https://learn.microsoft.com/azure/cosmos-db/nosql/query/select>).
//! ORDER BY keys are computed from the row before projection, so sorting the projected rows by
//! them is the same as sorting first.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use crate::eval::{self, eval, is_true, Context};
use crate::functions::AggregateKind;
use crate::plan::{ProjectionPlan, SelectPlan, SourcePlan};
use crate::value::{self, canonical, number, write_canonical};
use crate::CurrentTime;

static NULL: Value = Value::Null;

/// Slots a row holds without a heap allocation.
const INLINE_SLOTS: usize = 8;

/// Calls `each` for every row the sources produce from `row`, which holds the slots bound so far.
/// Returns false when `each` asked to stop.
pub(crate) fn bind_sources(
    context: &Context<'_>,
    sources: &[SourcePlan],
    row: &[&Value],
    each: &mut dyn FnMut(&[&Value]) -> bool,
) -> bool {
    let Some((source, rest)) = sources.split_first() else {
        return each(row);
    };
    let Some(value) = eval(context, &source.expr, row) else {
        return true;
    };
    let value: &Value = &value;
    // Rows are short (the item, the FROM alias, a few JOIN aliases), so they live on the stack.
    let mut inline: [&Value; INLINE_SLOTS] = [&NULL; INLINE_SLOTS];
    let mut spilled: Vec<&Value> = Vec::new();
    let extended: &mut [&Value] = if row.len() < INLINE_SLOTS {
        inline[..row.len()].copy_from_slice(row);
        &mut inline[..row.len() + 1]
    } else {
        spilled.extend_from_slice(row);
        spilled.push(&NULL);
        &mut spilled[..]
    };
    let last = extended.len() - 1;
    if source.iterate {
        // `x IN expr` ranges over an array; any other value yields no row (the JOIN page).
        let Value::Array(elements) = value else {
            return true;
        };
        for element in elements {
            extended[last] = element;
            if !bind_sources(context, rest, extended, each) {
                return false;
            }
        }
        true
    } else {
        extended[last] = value;
        bind_sources(context, rest, extended, each)
    }
}

enum Accumulator {
    Count(u64),
    Sum {
        total: f64,
        exact: Option<i64>,
        valid: bool,
    },
    Average {
        total: f64,
        count: u64,
        valid: bool,
    },
    Extreme {
        best: Option<Value>,
        maximum: bool,
        valid: bool,
    },
}

impl Accumulator {
    fn new(kind: AggregateKind) -> Accumulator {
        match kind {
            AggregateKind::Count => Accumulator::Count(0),
            AggregateKind::Sum => Accumulator::Sum {
                total: 0.0,
                exact: Some(0),
                valid: true,
            },
            AggregateKind::Avg => Accumulator::Average {
                total: 0.0,
                count: 0,
                valid: true,
            },
            AggregateKind::Min => Accumulator::Extreme {
                best: None,
                maximum: false,
                valid: true,
            },
            AggregateKind::Max => Accumulator::Extreme {
                best: None,
                maximum: true,
                valid: true,
            },
        }
    }

    /// Adds one row's value; undefined values are ignored by every aggregate (COUNT's, SUM's,
    /// MIN's pages), and SUM and AVG of anything but numbers are undefined.
    fn add(&mut self, value: Option<&Value>) {
        let Some(value) = value else { return };
        match self {
            Accumulator::Count(count) => *count += 1,
            Accumulator::Sum {
                total,
                exact,
                valid,
            } => match value {
                Value::Number(number) => {
                    *total += number.as_f64().unwrap_or(0.0);
                    *exact = match (*exact, number.as_i64()) {
                        (Some(sum), Some(addend)) => sum.checked_add(addend),
                        _ => None,
                    };
                }
                _ => *valid = false,
            },
            Accumulator::Average {
                total,
                count,
                valid,
            } => match value {
                Value::Number(number) => {
                    *total += number.as_f64().unwrap_or(0.0);
                    *count += 1;
                }
                _ => *valid = false,
            },
            Accumulator::Extreme {
                best,
                maximum,
                valid,
            } => {
                if matches!(value, Value::Array(_) | Value::Object(_)) {
                    *valid = false;
                    return;
                }
                let better = match best {
                    None => true,
                    Some(current) => {
                        let order = value::total_order(Some(value), Some(current));
                        if *maximum {
                            order.is_gt()
                        } else {
                            order.is_lt()
                        }
                    }
                };
                if better {
                    *best = Some(value.clone());
                }
            }
        }
    }

    fn result(&self) -> Option<Value> {
        match self {
            Accumulator::Count(count) => Some(Value::from(*count)),
            Accumulator::Sum { valid: false, .. }
            | Accumulator::Average { valid: false, .. }
            | Accumulator::Extreme { valid: false, .. } => None,
            Accumulator::Sum {
                exact: Some(exact), ..
            } => Some(Value::from(*exact)),
            Accumulator::Sum { total, .. } => number(*total),
            Accumulator::Average { count: 0, .. } => None,
            Accumulator::Average { total, count, .. } => number(*total / *count as f64),
            Accumulator::Extreme { best, .. } => best.clone(),
        }
    }
}

struct Group {
    keys: Vec<Option<Value>>,
    accumulators: Vec<Accumulator>,
}

/// Gathers the rows of one select and turns them into its results.
pub(crate) struct Collector<'p> {
    plan: &'p SelectPlan,
    now: CurrentTime,
    /// Projected rows with their ORDER BY keys (empty keys without ORDER BY).
    rows: Vec<Row>,
    groups: Vec<Group>,
    group_index: HashMap<String, usize>,
    /// When rows need no sorting, grouping or deduplication, how many are enough.
    enough: Option<usize>,
    /// Whether DISTINCT, ORDER BY, OFFSET, LIMIT and TOP apply (not for one item of a stream).
    paged: bool,
    /// With ORDER BY, no DISTINCT and a last row: how many sorted rows can reach the result.
    keep_sorted: Option<usize>,
    /// Rows the sources produced (before WHERE), a measure of the work done.
    pub(crate) rows_examined: u64,
}

impl<'p> Collector<'p> {
    pub(crate) fn new(plan: &'p SelectPlan, now: CurrentTime) -> Collector<'p> {
        let streaming = !plan.grouped && plan.order_by.is_empty() && !plan.distinct;
        let end = window(plan)
            .1
            .map(|end| usize::try_from(end).unwrap_or(usize::MAX));
        let enough = if streaming { end } else { None };
        let keep_sorted = if !plan.grouped && !plan.distinct && !plan.order_by.is_empty() {
            end
        } else {
            None
        };
        let mut collector = Collector {
            plan,
            now,
            rows: Vec::new(),
            groups: Vec::new(),
            group_index: HashMap::new(),
            enough,
            paged: true,
            keep_sorted,
            rows_examined: 0,
        };
        // An aggregate without GROUP BY has one group, even over no rows (COUNT of nothing is 0).
        if plan.grouped && plan.group_by.is_empty() {
            collector.groups.push(Group {
                keys: Vec::new(),
                accumulators: plan
                    .aggregates
                    .iter()
                    .map(|(kind, _)| Accumulator::new(*kind))
                    .collect(),
            });
            collector.group_index.insert(String::new(), 0);
        }
        collector
    }

    /// A collector for one item of a streaming query, whose paging the caller does.
    pub(crate) fn unpaged(plan: &'p SelectPlan, now: CurrentTime) -> Collector<'p> {
        let mut collector = Collector::new(plan, now);
        collector.enough = None;
        collector.paged = false;
        collector.keep_sorted = None;
        collector
    }

    fn context(&self) -> Context<'static> {
        Context {
            now: self.now,
            group: None,
        }
    }

    /// Feeds one item (or, for a subquery, the enclosing row); false once enough rows are in.
    pub(crate) fn feed(&mut self, base: &[&Value]) -> bool {
        let context = self.context();
        let plan = self.plan;
        if plan.sources.is_empty() {
            return self.row(&context, base);
        }
        bind_sources(&context, &plan.sources, base, &mut |row| {
            self.row(&context, row)
        })
    }

    fn row(&mut self, context: &Context<'_>, row: &[&Value]) -> bool {
        let plan = self.plan;
        self.rows_examined += 1;
        if let Some(filter) = &plan.filter {
            if !is_true(context, filter, row) {
                return true;
            }
        }
        if plan.grouped {
            let keys: Vec<Option<Value>> = plan
                .group_by
                .iter()
                .map(|key| eval(context, key, row).map(|value| value.into_owned()))
                .collect();
            let mut signature = String::new();
            for key in &keys {
                write_canonical(key.as_ref(), &mut signature);
                signature.push('|');
            }
            let index = match self.group_index.get(&signature) {
                Some(index) => *index,
                None => {
                    self.groups.push(Group {
                        keys,
                        accumulators: plan
                            .aggregates
                            .iter()
                            .map(|(kind, _)| Accumulator::new(*kind))
                            .collect(),
                    });
                    self.group_index.insert(signature, self.groups.len() - 1);
                    self.groups.len() - 1
                }
            };
            let group = &mut self.groups[index];
            for ((_, argument), accumulator) in plan.aggregates.iter().zip(&mut group.accumulators)
            {
                accumulator.add(eval(context, argument, row).as_deref());
            }
            return true;
        }
        let Some(projected) = project(context, &plan.projection, row) else {
            return true;
        };
        let keys = plan
            .order_by
            .iter()
            .filter(|_| self.paged)
            .map(|(key, _)| eval(context, key, row).map(|value| value.into_owned()))
            .collect();
        self.rows.push((keys, projected));
        // With ORDER BY and a known last row (TOP, LIMIT), only that many rows can survive:
        // sorting now and then keeps the buffer small; the sort is stable, so ties keep item order.
        if let Some(keep) = self.keep_sorted {
            if self.rows.len() >= keep.saturating_mul(2).max(1024) {
                sort_rows(&mut self.rows, &plan.order_by);
                self.rows.truncate(keep);
            }
        }
        self.enough.is_none_or(|enough| self.rows.len() < enough)
    }

    pub(crate) fn finish(self) -> Vec<Value> {
        let plan = self.plan;
        let mut results: Vec<Value> = if plan.grouped {
            let mut groups = self.groups;
            // Groups come out in the order of their keys (the GROUP BY page's results are sorted,
            // the undefined group first).
            groups.sort_by(|left, right| {
                left.keys
                    .iter()
                    .zip(&right.keys)
                    .map(|(left, right)| eval::order(left, right))
                    .find(|order| order.is_ne())
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
            groups
                .iter()
                .filter_map(|group| {
                    let aggregates: Vec<Option<Value>> =
                        group.accumulators.iter().map(Accumulator::result).collect();
                    let context = Context {
                        now: self.now,
                        group: Some((&group.keys, &aggregates)),
                    };
                    project(&context, &plan.projection, &[])
                })
                .collect()
        } else {
            let mut rows = self.rows;
            if self.paged && !plan.order_by.is_empty() {
                rows.sort_by(|(left, _), (right, _)| {
                    for ((left, right), (_, descending)) in
                        left.iter().zip(right).zip(&plan.order_by)
                    {
                        let order = eval::order(left, right);
                        if order.is_ne() {
                            return if *descending { order.reverse() } else { order };
                        }
                    }
                    std::cmp::Ordering::Equal
                });
            }
            rows.into_iter().map(|(_, value)| value).collect()
        };
        if !self.paged {
            return results;
        }
        if plan.distinct {
            let mut seen = HashSet::new();
            results.retain(|value| seen.insert(canonical(value)));
        }
        let (skip, end) = window(plan);
        let skip = skip as usize;
        let end = end.map_or(usize::MAX, |end| end as usize);
        if skip > 0 || end < results.len() {
            results = results.into_iter().take(end).skip(skip).collect();
        }
        results
    }
}

type Row = (Vec<Option<Value>>, Value);

fn sort_rows(rows: &mut [Row], order_by: &[(crate::plan::Expr, bool)]) {
    rows.sort_by(|(left, _), (right, _)| {
        for ((left, right), (_, descending)) in left.iter().zip(right).zip(order_by) {
            let order = eval::order(left, right);
            if order.is_ne() {
                return if *descending { order.reverse() } else { order };
            }
        }
        std::cmp::Ordering::Equal
    });
}

/// The rows kept after ordering: from OFFSET, up to OFFSET + LIMIT and at most TOP.
pub(crate) fn window(plan: &SelectPlan) -> (u64, Option<u64>) {
    let offset = SelectPlan::count(&plan.offset).unwrap_or(0);
    let limit_end = SelectPlan::count(&plan.limit).map(|limit| offset.saturating_add(limit));
    let top_end = SelectPlan::count(&plan.top).map(|top| offset.saturating_add(top));
    let end = match (limit_end, top_end) {
        (Some(limit), Some(top)) => Some(limit.min(top)),
        (limit, top) => limit.or(top),
    };
    (offset, end)
}

/// The projection of one row; `None` (undefined) drops the row, as SELECT VALUE of an undefined
/// expression returns nothing for it.
pub(crate) fn project(
    context: &Context<'_>,
    projection: &ProjectionPlan,
    row: &[&Value],
) -> Option<Value> {
    match projection {
        ProjectionPlan::Star(slot) => row.get(*slot).map(|value| (*value).clone()),
        ProjectionPlan::Value(expr) => eval(context, expr, row).map(|value| value.into_owned()),
        ProjectionPlan::Object(members) => {
            let mut object = Map::new();
            for (name, expr) in members {
                if let Some(value) = eval(context, expr, row) {
                    object.insert(name.clone(), value.into_owned());
                }
            }
            Some(Value::Object(object))
        }
    }
}

/// Runs a subquery for one enclosing row; `enough` stops early (EXISTS needs one row).
pub(crate) fn run_subquery(
    now: CurrentTime,
    plan: &SelectPlan,
    row: &[&Value],
    enough: Option<usize>,
) -> Vec<Value> {
    let mut collector = Collector::new(plan, now);
    if enough.is_some()
        && collector.enough.is_none()
        && !plan.grouped
        && plan.order_by.is_empty()
        && !plan.distinct
    {
        collector.enough = enough;
    }
    // The subquery's first slot follows the enclosing row's, which is the row as given.
    let base: Vec<&Value> = row
        .iter()
        .copied()
        .chain(std::iter::repeat(&NULL))
        .take(plan.first_slot)
        .collect();
    collector.feed(&base);
    collector.finish()
}
