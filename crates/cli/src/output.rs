//! What the az-style verbs print: the `--query` JMESPath filter and the `--output` formats, with
//! the semantics of az (whose output layer is knack's `knack/output.py` and `knack/query.py`).
//!
//! The pipeline is az's: the command's result, then the global transform that adds
//! `resourceGroup` to every object whose `id` names a resource inside a group, then `--query`, then
//! the formatter. A result of `null` (after the query too) prints nothing, in every format.
//!
//! Key order follows az as well. JSON is printed with sorted keys (`json.dumps(sort_keys=True)`).
//! Table and TSV sort the keys of plain objects, but keep the order written in a query's
//! multi-select hash (`--query "[].{name:name, id:id}"`), because az evaluates queries into
//! `OrderedDict`s. JMESPath results here are sorted maps, so that order is read from the query's
//! syntax tree instead (see `query_key_order`).
//!
//! The only I/O here is writing stdout (`OutputArgs::print`) and asking whether it is a terminal
//! (for `jsonc` colours).

use std::fmt::Write as _;
use std::io::IsTerminal;

use anyhow::anyhow;
use clap::{Args, ValueEnum};
use serde_json::{Map, Value};

/// `--output`: az's formats, less the YAML ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Pretty JSON with sorted keys.
    Json,
    /// Coloured JSON (plain JSON when stdout is not a terminal).
    Jsonc,
    /// A table with a header row; nested values are left out.
    Table,
    /// Tab-separated values, one line per item, no header.
    Tsv,
    /// Nothing.
    None,
}

/// The output options every verb takes; `global` so they may follow the subcommand, as in az.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Output format.
    #[arg(
        long,
        short = 'o',
        global = true,
        help_heading = "Global Arguments",
        value_enum,
        ignore_case = true,
        default_value = "json"
    )]
    pub output: OutputFormat,
    /// JMESPath query string applied to the result (see <https://jmespath.org>).
    #[arg(
        long,
        global = true,
        help_heading = "Global Arguments",
        value_name = "JMESPATH",
        value_parser = parse_query
    )]
    pub query: Option<String>,
}

/// Validates `--query` while parsing arguments, so that a bad query fails before any request is
/// sent (az validates it in its argument parser too).
fn parse_query(expression: &str) -> Result<String, String> {
    jmespath::compile(expression)
        .map(|_| expression.to_string())
        .map_err(|error| format!("invalid JMESPath query: {error}"))
}

/// Turns a command's result into table rows when `-o table` is asked without `--query`, as az's
/// per-command `table_transformer`s do (for example `group list` shows Name, Location, Status).
/// Each row is an object given as ordered `(column, value)` pairs.
pub type TableTransformer = fn(&Value) -> Vec<Vec<(String, Value)>>;

/// A command's result, ready for the output pipeline.
pub struct Outcome {
    /// `None` prints nothing (az's commands that return nothing, such as deletes).
    pub value: Option<Value>,
    /// The command's table layout, if it has one.
    pub table: Option<TableTransformer>,
}

impl Outcome {
    /// A result printed with the generic table layout.
    pub fn value(value: Value) -> Outcome {
        Outcome {
            value: Some(value),
            table: None,
        }
    }

    /// No output.
    pub fn nothing() -> Outcome {
        Outcome {
            value: None,
            table: None,
        }
    }

    /// A result with its own table layout.
    pub fn with_table(value: Value, table: TableTransformer) -> Outcome {
        Outcome {
            value: Some(value),
            table: Some(table),
        }
    }
}

/// The order of an object's keys for table and TSV output.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyOrder {
    /// A plain object: keys sorted.
    Sorted,
    /// Keys listed here first, in this order (a multi-select hash or a table transformer), then
    /// any others sorted.
    Given(Vec<String>),
}

impl OutputArgs {
    /// Formats `outcome` as asked; returns the text to write to stdout (empty for no output).
    pub fn render(&self, outcome: Outcome) -> anyhow::Result<String> {
        let Some(mut value) = outcome.value else {
            return Ok(String::new());
        };
        add_resource_group(&mut value);
        let (value, order) = match &self.query {
            Some(query) => apply_query(query, &value)?,
            None => (value, KeyOrder::Sorted),
        };
        if value.is_null() {
            return Ok(String::new());
        }
        Ok(match self.output {
            OutputFormat::Json => format_json(&value, false),
            OutputFormat::Jsonc => format_json(&value, std::io::stdout().is_terminal()),
            OutputFormat::Tsv => format_tsv(&value, &order),
            OutputFormat::None => String::new(),
            OutputFormat::Table => match (outcome.table, &self.query) {
                (Some(transformer), None) => format_table_rows(
                    transformer(&value)
                        .into_iter()
                        .map(TableItem::Object)
                        .collect(),
                )?,
                _ => format_table(&value, &order)?,
            },
        })
    }

    /// Renders and prints `outcome` to stdout.
    pub fn print(&self, outcome: Outcome) -> anyhow::Result<()> {
        let text = self.render(outcome)?;
        if !text.is_empty() {
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(text.as_bytes())?;
            stdout.flush()?;
        }
        Ok(())
    }
}

/// az's global transform (`azure/cli/core/commands/transform.py::_add_resource_group`): every
/// object, at any depth, whose `id` is a resource id inside a group (at least nine segments) and
/// that has no `resourceGroup` key in any casing gains `resourceGroup`. A group's own id is too
/// short, so groups never get one.
pub fn add_resource_group(value: &mut Value) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(add_resource_group),
        Value::Object(object) => {
            let has_key = object
                .keys()
                .any(|key| key.eq_ignore_ascii_case("resourcegroup"));
            if !has_key {
                if let Some(group) = object
                    .get("id")
                    .and_then(Value::as_str)
                    .and_then(resource_group_of_id)
                {
                    object.insert("resourceGroup".to_string(), Value::String(group));
                }
            }
            for (key, child) in object.iter_mut() {
                if key != "sourceVault" {
                    add_resource_group(child);
                }
            }
        }
        _ => {}
    }
}

/// The group segment of `/subscriptions/S/resourceGroups/RG/providers/NS/TYPE/NAME...`, with
/// az's exact test: segment 3 is `resourcegroups` in any casing and segment 8 exists.
fn resource_group_of_id(id: &str) -> Option<String> {
    let parts: Vec<&str> = id.split('/').collect();
    if parts.len() < 9 || !parts[3].eq_ignore_ascii_case("resourcegroups") {
        return None;
    }
    Some(parts[4].to_string())
}

/// Runs `query` on `value`; returns the result and the key order its syntax implies.
fn apply_query(query: &str, value: &Value) -> anyhow::Result<(Value, KeyOrder)> {
    let expression =
        jmespath::compile(query).map_err(|error| anyhow!("invalid JMESPath query: {error}"))?;
    let result = expression
        .search(value)
        .map_err(|error| anyhow!("the query failed: {error}"))?;
    let result = serde_json::to_value(&*result)
        .map_err(|error| anyhow!("the query result is not JSON: {error}"))?;
    let order = query_key_order(expression.as_ast()).map_or(KeyOrder::Sorted, KeyOrder::Given);
    Ok((result, order))
}

/// The keys of the multi-select hash that shapes the query's result objects, if one does:
/// `{a:x, b:y}`, `[].{a:x, b:y}`, `items[?cond].{...}`, `x | {...}` and the like. Nested hashes
/// and hashes inside functions keep sorted keys (a close approximation of az there).
fn query_key_order(ast: &jmespath::ast::Ast) -> Option<Vec<String>> {
    use jmespath::ast::Ast;
    match ast {
        Ast::MultiHash { elements, .. } => {
            Some(elements.iter().map(|element| element.key.clone()).collect())
        }
        Ast::Projection { rhs, .. } | Ast::Subexpr { rhs, .. } => query_key_order(rhs),
        Ast::Condition { then, .. } => query_key_order(then),
        Ast::Flatten { node, .. } => query_key_order(node),
        _ => None,
    }
}

/// `object`'s entries in `order`.
fn ordered_entries<'a>(
    object: &'a Map<String, Value>,
    order: &KeyOrder,
) -> Vec<(&'a str, &'a Value)> {
    let mut entries: Vec<(&str, &Value)> = Vec::with_capacity(object.len());
    if let KeyOrder::Given(keys) = order {
        for key in keys {
            if let Some((name, value)) = object.get_key_value(key.as_str()) {
                entries.push((name.as_str(), value));
            }
        }
    }
    let mut rest: Vec<(&str, &Value)> = object
        .iter()
        .filter(|(name, _)| match order {
            KeyOrder::Given(keys) => !keys.iter().any(|key| key == *name),
            KeyOrder::Sorted => true,
        })
        .map(|(name, value)| (name.as_str(), value))
        .collect();
    rest.sort_by(|left, right| left.0.cmp(right.0));
    entries.extend(rest);
    entries
}

// ---------------------------------------------------------------------------------------------
// JSON

const COLOR_KEY: &str = "\x1b[94m";
const COLOR_STRING: &str = "\x1b[33m";
const COLOR_LITERAL: &str = "\x1b[34m";
const COLOR_RESET: &str = "\x1b[39;49;00m";

/// `json.dumps(result, indent=2, sort_keys=True, ensure_ascii=False)` plus a newline; with
/// `color`, keys, strings and literals coloured as pygments' terminal formatter does.
fn format_json(value: &Value, color: bool) -> String {
    let mut text = String::new();
    write_json(value, 0, color, &mut text);
    text.push('\n');
    text
}

fn write_json(value: &Value, depth: usize, color: bool, text: &mut String) {
    let paint = |text: &mut String, code: &str, body: &str| {
        if color {
            text.push_str(code);
            text.push_str(body);
            text.push_str(COLOR_RESET);
        } else {
            text.push_str(body);
        }
    };
    match value {
        Value::Null => paint(text, COLOR_LITERAL, "null"),
        Value::Bool(flag) => paint(text, COLOR_LITERAL, if *flag { "true" } else { "false" }),
        Value::Number(number) => paint(text, COLOR_LITERAL, &number.to_string()),
        Value::String(string) => paint(text, COLOR_STRING, &json_string(string)),
        Value::Array(items) if items.is_empty() => text.push_str("[]"),
        Value::Object(object) if object.is_empty() => text.push_str("{}"),
        Value::Array(items) => {
            text.push('[');
            for (item_idx, item) in items.iter().enumerate() {
                if item_idx > 0 {
                    text.push(',');
                }
                newline_indent(text, depth + 1);
                write_json(item, depth + 1, color, text);
            }
            newline_indent(text, depth);
            text.push(']');
        }
        Value::Object(object) => {
            text.push('{');
            for (entry_idx, (key, child)) in ordered_entries(object, &KeyOrder::Sorted)
                .into_iter()
                .enumerate()
            {
                if entry_idx > 0 {
                    text.push(',');
                }
                newline_indent(text, depth + 1);
                paint(text, COLOR_KEY, &json_string(key));
                text.push_str(": ");
                write_json(child, depth + 1, color, text);
            }
            newline_indent(text, depth);
            text.push('}');
        }
    }
}

fn newline_indent(text: &mut String, depth: usize) {
    text.push('\n');
    for _ in 0..depth {
        text.push_str("  ");
    }
}

/// A JSON string literal with Python's escapes under `ensure_ascii=False`.
fn json_string(string: &str) -> String {
    let mut literal = String::with_capacity(string.len() + 2);
    literal.push('"');
    for character in string.chars() {
        match character {
            '"' => literal.push_str("\\\""),
            '\\' => literal.push_str("\\\\"),
            '\n' => literal.push_str("\\n"),
            '\r' => literal.push_str("\\r"),
            '\t' => literal.push_str("\\t"),
            '\u{8}' => literal.push_str("\\b"),
            '\u{c}' => literal.push_str("\\f"),
            control if (control as u32) < 0x20 => {
                let _ = write!(literal, "\\u{:04x}", control as u32);
            }
            other => literal.push(other),
        }
    }
    literal.push('"');
    literal
}

// ---------------------------------------------------------------------------------------------
// TSV

/// knack's `_TsvOutput`: one line per item of a list result (a non-list result is one item).
/// An object's values are written in key order, a list's in order; inside a row a nested list is
/// written as its length, a nested object as nothing, `null` as `None` and booleans as Python
/// spells them (`True`), while a top-level boolean is `true`/`false`. Strings are unquoted.
fn format_tsv(value: &Value, order: &KeyOrder) -> String {
    let items: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let mut text = String::new();
    for item in items {
        match item {
            Value::Object(object) => {
                let cells: Vec<String> = ordered_entries(object, order)
                    .into_iter()
                    .map(|(_, child)| tsv_cell(child))
                    .collect();
                text.push_str(&cells.join("\t"));
            }
            Value::Array(children) => {
                let cells: Vec<String> = children.iter().map(tsv_cell).collect();
                text.push_str(&cells.join("\t"));
            }
            Value::Bool(flag) => text.push_str(if *flag { "true" } else { "false" }),
            scalar => text.push_str(&tsv_cell(scalar)),
        }
        text.push('\n');
    }
    text
}

fn tsv_cell(value: &Value) -> String {
    match value {
        Value::Array(items) => items.len().to_string(),
        Value::Object(_) => String::new(),
        scalar => python_str(scalar),
    }
}

/// Python's `str()` of a JSON scalar.
fn python_str(value: &Value) -> String {
    match value {
        Value::Null => "None".to_string(),
        Value::Bool(true) => "True".to_string(),
        Value::Bool(false) => "False".to_string(),
        Value::Number(number) => number.to_string(),
        Value::String(string) => string.clone(),
        Value::Array(_) | Value::Object(_) => String::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Table

/// One item of a table, before columns are chosen.
enum TableItem {
    /// An object, as ordered `(key, value)` pairs.
    Object(Vec<(String, Value)>),
    /// A list: its elements become `Column1`, `Column2`, ...
    List(Vec<Value>),
    /// A scalar: one `Result` column.
    Scalar(Value),
}

/// knack's `_TableOutput` for a result without a table transformer: each item of a list (or the
/// result itself) is a row; keys `id`, `type` and `etag`, `null` values and nested values are
/// left out; headers are the keys with their first letter capitalised.
fn format_table(value: &Value, order: &KeyOrder) -> anyhow::Result<String> {
    let items: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let items = items
        .into_iter()
        .map(|item| match item {
            Value::Object(object) => TableItem::Object(
                ordered_entries(object, order)
                    .into_iter()
                    .map(|(key, child)| (key.to_string(), child.clone()))
                    .collect(),
            ),
            Value::Array(children) => TableItem::List(children.clone()),
            scalar => TableItem::Scalar(scalar.clone()),
        })
        .collect();
    format_table_rows(items)
}

/// Lays the items out as tabulate's `simple` format with `disable_numparse=True`: every column
/// left-aligned and at least two characters wider than its header, two spaces between columns,
/// a dashed line under the header, trailing spaces trimmed. No items print an empty line.
fn format_table_rows(items: Vec<TableItem>) -> anyhow::Result<String> {
    const SKIP_KEYS: [&str; 3] = ["id", "type", "etag"];
    if items.is_empty() {
        return Ok("\n".to_string());
    }
    let rows: Vec<Vec<(String, String)>> = items
        .into_iter()
        .map(|item| match item {
            TableItem::Object(entries) => entries
                .into_iter()
                .filter(|(key, child)| {
                    !SKIP_KEYS.contains(&key.as_str())
                        && !matches!(child, Value::Null | Value::Array(_) | Value::Object(_))
                })
                .map(|(key, child)| (capitalize_first(&key), python_str(&child)))
                .collect(),
            TableItem::List(children) => children
                .iter()
                .enumerate()
                .map(|(column_idx, child)| (format!("Column{}", column_idx + 1), python_str(child)))
                .collect(),
            TableItem::Scalar(scalar) => vec![("Result".to_string(), python_str(&scalar))],
        })
        .collect();
    let mut headers: Vec<String> = Vec::new();
    for row in &rows {
        for (header, _) in row {
            if !headers.contains(header) {
                headers.push(header.clone());
            }
        }
    }
    if headers.is_empty() {
        return Err(anyhow!(
            "Table output unavailable. Use the --query option to specify an appropriate query."
        ));
    }
    let cells: Vec<Vec<&str>> = rows
        .iter()
        .map(|row| {
            headers
                .iter()
                .map(|header| {
                    row.iter()
                        .find(|(name, _)| name == header)
                        .map_or("", |(_, cell)| cell.as_str())
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = headers
        .iter()
        .enumerate()
        .map(|(column_idx, header)| {
            cells
                .iter()
                .map(|row| row[column_idx].chars().count())
                .fold(header.chars().count() + 2, usize::max)
        })
        .collect();
    let mut text = String::new();
    let header_cells: Vec<&str> = headers.iter().map(String::as_str).collect();
    push_table_line(&mut text, &header_cells, &widths);
    let dashes: Vec<String> = widths.iter().map(|width| "-".repeat(*width)).collect();
    let dash_cells: Vec<&str> = dashes.iter().map(String::as_str).collect();
    push_table_line(&mut text, &dash_cells, &widths);
    for row in &cells {
        push_table_line(&mut text, row, &widths);
    }
    Ok(text)
}

fn push_table_line(text: &mut String, cells: &[&str], widths: &[usize]) {
    let mut line = String::new();
    for (column_idx, (cell, width)) in cells.iter().zip(widths).enumerate() {
        if column_idx > 0 {
            line.push_str("  ");
        }
        line.push_str(cell);
        for _ in cell.chars().count()..*width {
            line.push(' ');
        }
    }
    text.push_str(line.trim_end());
    text.push('\n');
}

fn capitalize_first(key: &str) -> String {
    let mut characters = key.chars();
    match characters.next() {
        Some(first) => first.to_uppercase().chain(characters).collect(),
        None => String::new(),
    }
}

/// A table row for table transformers: each (column, JSON pointer into `item`); missing values
/// are null.
pub fn table_row(item: &Value, columns: &[(&str, &str)]) -> Vec<(String, Value)> {
    columns
        .iter()
        .map(|(name, pointer)| {
            let value = item.pointer(pointer).cloned().unwrap_or(Value::Null);
            (name.to_string(), value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(format: OutputFormat, query: Option<&str>, value: Value, expected: &str) {
        let args = OutputArgs {
            output: format,
            query: query.map(str::to_string),
        };
        assert_eq!(args.render(Outcome::value(value)).unwrap(), expected);
    }

    fn groups() -> Value {
        json!([
            {"id": "/subscriptions/s/resourceGroups/rg1", "location": "westus", "managedBy": null,
             "name": "rg1", "properties": {"provisioningState": "Succeeded"}, "tags": null,
             "type": "Microsoft.Resources/resourceGroups"},
            {"id": "/subscriptions/s/resourceGroups/second-group", "location": "eastus2",
             "name": "second-group", "properties": {"provisioningState": "Succeeded"},
             "tags": {"a": "b"}, "type": "Microsoft.Resources/resourceGroups"}
        ])
    }

    #[test]
    fn json_sorts_keys_and_indents_by_two() {
        check(
            OutputFormat::Json,
            None,
            json!({"b": [1, {"d": null, "c": true}], "a": {}, "e": [], "f": "x\"y\u{1}é"}),
            "{\n  \"a\": {},\n  \"b\": [\n    1,\n    {\n      \"c\": true,\n      \"d\": null\n    }\n  ],\n  \"e\": [],\n  \"f\": \"x\\\"y\\u0001é\"\n}\n",
        );
    }

    #[test]
    fn null_results_print_nothing() {
        check(OutputFormat::Json, None, Value::Null, "");
        check(OutputFormat::Table, Some("missing"), json!({"a": 1}), "");
        check(OutputFormat::None, None, json!({"a": 1}), "");
        let args = OutputArgs {
            output: OutputFormat::Json,
            query: None,
        };
        assert_eq!(args.render(Outcome::nothing()).unwrap(), "");
    }

    #[test]
    fn table_of_objects_sorts_keys_and_skips_ids_nulls_and_nested_values() {
        check(
            OutputFormat::Table,
            None,
            groups(),
            "Location    Name\n----------  ------------\nwestus      rg1\neastus2     second-group\n",
        );
    }

    #[test]
    fn table_of_one_object_is_one_row() {
        check(
            OutputFormat::Table,
            None,
            json!({"name": "x", "enabled": false, "count": 12}),
            "Count    Enabled    Name\n-------  ---------  ------\n12       False      x\n",
        );
    }

    #[test]
    fn table_keeps_the_order_of_a_multi_select_hash() {
        check(
            OutputFormat::Table,
            Some("[].{Name:name, Where:location}"),
            groups(),
            "Name          Where\n------------  -------\nrg1           westus\nsecond-group  eastus2\n",
        );
    }

    #[test]
    fn table_of_a_scalar_has_a_result_column() {
        check(
            OutputFormat::Table,
            None,
            json!(true),
            "Result\n--------\nTrue\n",
        );
        check(
            OutputFormat::Table,
            Some("[].name"),
            groups(),
            "Result\n------------\nrg1\nsecond-group\n",
        );
    }

    #[test]
    fn table_of_lists_numbers_columns_and_of_nothing_is_an_empty_line() {
        check(
            OutputFormat::Table,
            Some("[].[name, location]"),
            groups(),
            "Column1       Column2\n------------  ---------\nrg1           westus\nsecond-group  eastus2\n",
        );
        check(OutputFormat::Table, None, json!([]), "\n");
    }

    #[test]
    fn table_transformer_is_used_only_without_a_query() {
        fn names(value: &Value) -> Vec<Vec<(String, Value)>> {
            value
                .as_array()
                .into_iter()
                .flatten()
                .map(|item| {
                    table_row(
                        item,
                        &[
                            ("Name", "/name"),
                            ("Status", "/properties/provisioningState"),
                        ],
                    )
                })
                .collect()
        }
        let table = |query: Option<&str>| {
            OutputArgs {
                output: OutputFormat::Table,
                query: query.map(str::to_string),
            }
            .render(Outcome::with_table(groups(), names))
            .unwrap()
        };
        assert_eq!(
            table(None),
            "Name          Status\n------------  ---------\nrg1           Succeeded\nsecond-group  Succeeded\n"
        );
        assert_eq!(table(Some("[0].name")), "Result\n--------\nrg1\n");
    }

    #[test]
    fn tsv_prints_values_unquoted_one_line_per_item() {
        check(
            OutputFormat::Tsv,
            None,
            json!({"name": "x", "enabled": false, "tags": {"a": "b"}, "list": [1, 2], "none": null}),
            "False\t2\tx\tNone\t\n",
        );
        check(
            OutputFormat::Tsv,
            Some("[].{n:name, l:location}"),
            groups(),
            "rg1\twestus\nsecond-group\teastus2\n",
        );
        check(
            OutputFormat::Tsv,
            Some("[].name"),
            groups(),
            "rg1\nsecond-group\n",
        );
        check(OutputFormat::Tsv, None, json!(true), "true\n");
        check(
            OutputFormat::Tsv,
            Some("[0].id"),
            groups(),
            "/subscriptions/s/resourceGroups/rg1\n",
        );
    }

    #[test]
    fn resource_group_is_added_to_resources_inside_groups_only() {
        let mut value = json!({
            "id": "/subscriptions/s/resourceGroups/RG/providers/Microsoft.Compute/virtualMachines/vm",
            "networkProfile": {"networkInterfaces": [
                {"id": "/subscriptions/s/resourcegroups/other/providers/Microsoft.Network/networkInterfaces/nic"}
            ]},
            "group": {"id": "/subscriptions/s/resourceGroups/RG"},
            "kept": {"id": "/subscriptions/s/resourceGroups/x/providers/a/b/c", "ResourceGroup": "y"}
        });
        add_resource_group(&mut value);
        assert_eq!(value["resourceGroup"], "RG");
        assert_eq!(
            value["networkProfile"]["networkInterfaces"][0]["resourceGroup"],
            "other"
        );
        assert!(value["group"].get("resourceGroup").is_none());
        assert!(value["kept"].get("resourceGroup").is_none());
    }

    #[test]
    fn query_filters_before_formatting() {
        check(
            OutputFormat::Json,
            Some("[?location=='eastus2'].name"),
            groups(),
            "[\n  \"second-group\"\n]\n",
        );
        assert!(parse_query("[?").is_err());
        assert!(parse_query("[].name").is_ok());
    }
}
