//! What-if: the property changes between a resource as it is and as the template would
//! make it, in the shape of ARM's `WhatIfPropertyChange` (azure-rest-api-specs,
//! `Microsoft.Resources/stable/2021-04-01/deployments.json`): `path`, `propertyChangeType`
//! (`Create`, `Delete`, `Modify`, `Array`, `NoEffect`), `before`, `after`, and `children` for
//! the elements of a changed array.
//!
//! Objects are walked down to their leaves, so a new tag is one change at `tags.myNewTag`,
//! as in the spec's `PostDeploymentWhatIfOnResourceGroup` example. Arrays are aligned by a
//! longest common subsequence; an element changed in place is a `Modify` whose children
//! are the element's own changes, with paths relative to it. `NoEffect` (a change the
//! resource provider ignores) needs the provider's schema, so this pure diff never
//! produces it.

use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertyChangeType {
    Create,
    Delete,
    Modify,
    Array,
    NoEffect,
}

impl PropertyChangeType {
    pub fn as_str(self) -> &'static str {
        match self {
            PropertyChangeType::Create => "Create",
            PropertyChangeType::Delete => "Delete",
            PropertyChangeType::Modify => "Modify",
            PropertyChangeType::Array => "Array",
            PropertyChangeType::NoEffect => "NoEffect",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PropertyChange {
    pub path: String,
    pub property_change_type: PropertyChangeType,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub children: Vec<PropertyChange>,
}

impl PropertyChange {
    /// The change as ARM's JSON, without the absent members.
    pub fn to_value(&self) -> Value {
        let mut object = Map::new();
        object.insert("path".into(), Value::String(self.path.clone()));
        object.insert(
            "propertyChangeType".into(),
            Value::String(self.property_change_type.as_str().into()),
        );
        if let Some(before) = &self.before {
            object.insert("before".into(), before.clone());
        }
        if let Some(after) = &self.after {
            object.insert("after".into(), after.clone());
        }
        if !self.children.is_empty() {
            object.insert(
                "children".into(),
                Value::Array(self.children.iter().map(PropertyChange::to_value).collect()),
            );
        }
        Value::Object(object)
    }
}

/// The changes that turn `before` into `after` (two resource documents).
pub fn property_changes(before: &Value, after: &Value) -> Vec<PropertyChange> {
    let mut out = Vec::new();
    diff("", before, after, &mut out);
    out
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn change(
    path: String,
    kind: PropertyChangeType,
    before: Option<&Value>,
    after: Option<&Value>,
) -> PropertyChange {
    PropertyChange {
        path,
        property_change_type: kind,
        before: before.cloned(),
        after: after.cloned(),
        children: Vec::new(),
    }
}

fn diff(path: &str, before: &Value, after: &Value, out: &mut Vec<PropertyChange>) {
    if before == after {
        return;
    }
    match (before, after) {
        (Value::Object(old), Value::Object(new)) => {
            for (key, old_value) in old {
                match new.get(key) {
                    Some(new_value) => diff(&join(path, key), old_value, new_value, out),
                    None => out.push(change(
                        join(path, key),
                        PropertyChangeType::Delete,
                        Some(old_value),
                        None,
                    )),
                }
            }
            for (key, new_value) in new {
                if !old.contains_key(key) {
                    out.push(change(
                        join(path, key),
                        PropertyChangeType::Create,
                        None,
                        Some(new_value),
                    ));
                }
            }
        }
        (Value::Array(old), Value::Array(new)) => out.push(PropertyChange {
            path: path.to_string(),
            property_change_type: PropertyChangeType::Array,
            before: None,
            after: None,
            children: array_changes(old, new),
        }),
        _ => out.push(change(
            path.to_string(),
            PropertyChangeType::Modify,
            Some(before),
            Some(after),
        )),
    }
}

fn array_changes(old: &[Value], new: &[Value]) -> Vec<PropertyChange> {
    // Longest common subsequence table over equal elements.
    let (rows, columns) = (old.len(), new.len());
    let mut table = vec![vec![0u32; columns + 1]; rows + 1];
    for row in (0..rows).rev() {
        for column in (0..columns).rev() {
            table[row][column] = if old[row] == new[column] {
                table[row + 1][column + 1] + 1
            } else {
                table[row + 1][column].max(table[row][column + 1])
            };
        }
    }
    let mut changes = Vec::new();
    let (mut row, mut column) = (0, 0);
    while row < rows || column < columns {
        if row < rows && column < columns && old[row] == new[column] {
            row += 1;
            column += 1;
        } else if row < rows
            && column < columns
            && table[row + 1][column] == table[row][column + 1]
            && table[row + 1][column + 1] == table[row][column]
        {
            // Neither dropping the old element nor the new one keeps more in common: the
            // element was changed in place.
            let mut modified = change(column.to_string(), PropertyChangeType::Modify, None, None);
            match (&old[row], &new[column]) {
                (left @ (Value::Object(_) | Value::Array(_)), right)
                    if std::mem::discriminant(left) == std::mem::discriminant(right) =>
                {
                    let mut nested = Vec::new();
                    diff("", left, right, &mut nested);
                    if let [single] = nested.as_slice() {
                        if single.path.is_empty() {
                            modified.children = single.children.clone();
                        } else {
                            modified.children = nested;
                        }
                    } else {
                        modified.children = nested;
                    }
                }
                (left, right) => {
                    modified.before = Some(left.clone());
                    modified.after = Some(right.clone());
                }
            }
            changes.push(modified);
            row += 1;
            column += 1;
        } else if column < columns
            && (row == rows || table[row][column + 1] >= table[row + 1][column])
        {
            changes.push(change(
                column.to_string(),
                PropertyChangeType::Create,
                None,
                Some(&new[column]),
            ));
            column += 1;
        } else {
            changes.push(change(
                row.to_string(),
                PropertyChangeType::Delete,
                Some(&old[row]),
                None,
            ));
            row += 1;
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(before: Value, after: Value, expected: Value) {
        let changes: Vec<Value> = property_changes(&before, &after)
            .iter()
            .map(PropertyChange::to_value)
            .collect();
        assert_eq!(Value::Array(changes), expected);
    }

    #[test]
    fn spec_example() {
        // PostDeploymentWhatIfOnResourceGroup.json: a tag added to an existing identity.
        check(
            json!({"apiVersion": "2018-11-30", "name": "myExistingIdentity", "location": "westus2"}),
            json!({"apiVersion": "2018-11-30", "name": "myExistingIdentity", "location": "westus2", "tags": {"myNewTag": "my tag value"}}),
            json!([{"path": "tags", "propertyChangeType": "Create", "after": {"myNewTag": "my tag value"}}]),
        );
        check(
            json!({"tags": {}}),
            json!({"tags": {"myNewTag": "my tag value"}}),
            json!([{"path": "tags.myNewTag", "propertyChangeType": "Create", "after": "my tag value"}]),
        );
    }

    #[test]
    fn leaves() {
        check(json!({"a": 1}), json!({"a": 1}), json!([]));
        check(
            json!({"properties": {"sku": "S1", "gone": true}}),
            json!({"properties": {"sku": "S2"}}),
            json!([
                {"path": "properties.gone", "propertyChangeType": "Delete", "before": true},
                {"path": "properties.sku", "propertyChangeType": "Modify", "before": "S1", "after": "S2"}
            ]),
        );
    }

    #[test]
    fn arrays() {
        check(
            json!({"zones": ["1", "2"]}),
            json!({"zones": ["1", "3", "2"]}),
            json!([{"path": "zones", "propertyChangeType": "Array", "children": [
                {"path": "1", "propertyChangeType": "Create", "after": "3"}
            ]}]),
        );
        check(
            json!({"rules": [{"name": "a", "port": 80}, {"name": "b"}]}),
            json!({"rules": [{"name": "a", "port": 443}]}),
            json!([{"path": "rules", "propertyChangeType": "Array", "children": [
                {"path": "0", "propertyChangeType": "Modify", "children": [
                    {"path": "port", "propertyChangeType": "Modify", "before": 80, "after": 443}
                ]},
                {"path": "1", "propertyChangeType": "Delete", "before": {"name": "b"}}
            ]}]),
        );
        check(
            json!({"a": ["x"]}),
            json!({"a": ["y"]}),
            json!([{"path": "a", "propertyChangeType": "Array", "children": [
                {"path": "0", "propertyChangeType": "Modify", "before": "x", "after": "y"}
            ]}]),
        );
    }
}
