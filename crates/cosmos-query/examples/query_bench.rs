//! Measures how fast a bound query runs over 100 000 small items in memory.
//!
//! `cargo run --release -p openmi-cosmos-query --example query_bench` prints items per second for
//! a filtered query (the common data-plane shape), a filter that matches nothing (pure WHERE
//! cost), an ORDER BY with TOP, and a GROUP BY. Each figure is the median of several runs.

use std::time::Instant;

use openmi_cosmos_query::{parse, CurrentTime};
use serde_json::{json, Value};

const ITEMS: usize = 100_000;
const RUNS: usize = 9;

fn items() -> Vec<Value> {
    let categories = [
        "bikes", "helmets", "gloves", "lights", "locks", "pumps", "bags", "bells", "tyres",
        "chains",
    ];
    (0..ITEMS)
        .map(|index| {
            json!({
                "id": format!("item-{index}"),
                "tenantId": format!("tenant-{}", index % 100),
                "category": categories[index % categories.len()],
                "price": (index % 1000) as f64 / 10.0,
                "quantity": index % 37,
                "tags": ["a", "b"],
                "_rid": format!("rid{index}"),
                "_ts": 1_700_000_000 + index,
            })
        })
        .collect()
}

fn measure(name: &str, query: &str, parameters: &[(String, Value)], items: &[Value]) {
    let bound = match parse(query).and_then(|query| query.bind(parameters)) {
        Ok(bound) => bound,
        Err(error) => {
            eprintln!("{name}: {error}");
            return;
        }
    };
    let now = CurrentTime::from_unix_millis(1_767_323_045_000);
    let mut seconds = Vec::new();
    let mut rows = 0;
    for _ in 0..RUNS {
        let start = Instant::now();
        match bound.execute(items, now) {
            Ok(results) => rows = results.len(),
            Err(error) => {
                eprintln!("{name}: {error}");
                return;
            }
        }
        seconds.push(start.elapsed().as_secs_f64());
    }
    seconds.sort_by(f64::total_cmp);
    let median = seconds[RUNS / 2];
    println!(
        "{name:<28} {:>6.1} ms  {:>12.0} items/s  {rows:>6} rows  ({query})",
        median * 1000.0,
        items.len() as f64 / median
    );
}

/// The same filter written by hand against `serde_json::Value`: the floor that reading the
/// items' maps costs, whatever evaluates the query.
fn baseline(items: &[Value]) {
    let mut seconds = Vec::new();
    let mut rows = 0;
    for _ in 0..RUNS {
        let start = Instant::now();
        rows = items
            .iter()
            .filter(|item| {
                item.get("category").and_then(Value::as_str) == Some("none")
                    && item
                        .get("price")
                        .and_then(Value::as_f64)
                        .is_some_and(|price| price > 50.0)
            })
            .count();
        seconds.push(start.elapsed().as_secs_f64());
    }
    seconds.sort_by(f64::total_cmp);
    let median = seconds[RUNS / 2];
    println!(
        "{:<28} {:>6.1} ms  {:>12.0} items/s  {rows:>6} rows  (hand-written serde_json filter)",
        "baseline (no match)",
        median * 1000.0,
        items.len() as f64 / median
    );
}

fn main() {
    let items = items();
    baseline(&items);
    let category = vec![("@category".to_string(), json!("helmets"))];
    measure(
        "filter (10% match)",
        "SELECT * FROM c WHERE c.category = @category AND c.price > 50",
        &category,
        &items,
    );
    measure(
        "filter (no match)",
        "SELECT * FROM c WHERE c.category = 'none' AND c.price > 50",
        &[],
        &items,
    );
    measure(
        "filter + projection",
        "SELECT c.id, c.price FROM c WHERE c.category = @category AND STARTSWITH(c.id, 'item-1')",
        &category,
        &items,
    );
    measure(
        "order by + top",
        "SELECT TOP 10 c.id FROM c WHERE c.quantity > 3 ORDER BY c.price DESC",
        &[],
        &items,
    );
    measure(
        "group by",
        "SELECT c.category, COUNT(1) AS n, AVG(c.price) AS mean FROM c GROUP BY c.category",
        &[],
        &items,
    );
}
