//! `Template::parse`: the template's JSON text becomes a checked model whose every
//! expression is parsed once, with the line and column of each element kept for messages.
//!
//! The elements follow learn.microsoft.com "Understand the structure and syntax of ARM
//! templates": `$schema`, `contentVersion`, `parameters`, `variables` (with `copy`),
//! `resources` (with `condition`, `copy`, nested `resources`, `dependsOn`, `scope`) and
//! `outputs` (with `condition` and `copy`). Refused with an InvalidTemplate error, so a
//! deployment never half-works: `languageVersion` 2.0 (symbolic names, resources as an object),
//! non-empty `functions` (user-defined functions), `copy` on a nested resource, and resources
//! of type `Microsoft.Resources/deployments` (nested and linked templates).

use std::sync::Arc;

use serde_json::Value;

use crate::{
    error::{EvalError, Pos, TemplateError, EXPRESSIONS_LINK},
    eval::{CompileError, TNode},
    functions::Func,
    json::{self, Node},
    parse::{visit_calls, Expr},
};

/// A parsed ARM template. Cheap to clone: the model is shared.
#[derive(Debug, Clone)]
pub struct Template {
    pub(crate) inner: Arc<Model>,
}

#[derive(Debug)]
pub(crate) struct Model {
    pub raw: Value,
    pub hash: u64,
    pub parameters: Vec<ParameterDef>,
    pub variables: Vec<VariableDef>,
    pub resources: Vec<ResourceDef>,
    pub outputs: Vec<OutputDef>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValueType {
    String,
    SecureString,
    Int,
    Bool,
    Object,
    SecureObject,
    Array,
}

impl ValueType {
    fn parse(text: &str) -> Option<ValueType> {
        Some(match text.to_ascii_lowercase().as_str() {
            "string" => ValueType::String,
            "securestring" => ValueType::SecureString,
            "int" => ValueType::Int,
            "bool" => ValueType::Bool,
            "object" => ValueType::Object,
            "secureobject" => ValueType::SecureObject,
            "array" => ValueType::Array,
            _ => return None,
        })
    }

    /// The spelling ARM uses in deployment records and outputs (`"type": "String"`).
    pub(crate) fn arm_name(self) -> &'static str {
        match self {
            ValueType::String => "String",
            ValueType::SecureString => "SecureString",
            ValueType::Int => "Int",
            ValueType::Bool => "Bool",
            ValueType::Object => "Object",
            ValueType::SecureObject => "SecureObject",
            ValueType::Array => "Array",
        }
    }

    /// The JSON type name a value of this type must have, in ARM's messages.
    pub(crate) fn json_name(self) -> &'static str {
        match self {
            ValueType::String | ValueType::SecureString => "String",
            ValueType::Int => "Integer",
            ValueType::Bool => "Boolean",
            ValueType::Object | ValueType::SecureObject => "Object",
            ValueType::Array => "Array",
        }
    }

    pub(crate) fn is_secure(self) -> bool {
        matches!(self, ValueType::SecureString | ValueType::SecureObject)
    }

    pub(crate) fn accepts(self, value: &Value) -> bool {
        match self {
            ValueType::String | ValueType::SecureString => value.is_string(),
            ValueType::Int => value.as_i64().is_some(),
            ValueType::Bool => value.is_boolean(),
            ValueType::Object | ValueType::SecureObject => value.is_object(),
            ValueType::Array => value.is_array(),
        }
    }
}

#[derive(Debug)]
pub(crate) struct ParameterDef {
    pub name: String,
    pub kind: ValueType,
    pub default: Option<TNode>,
    pub allowed: Option<Vec<Value>>,
    pub min_value: Option<i64>,
    pub max_value: Option<i64>,
    pub min_length: Option<i64>,
    pub max_length: Option<i64>,
    pub pos: Pos,
}

#[derive(Debug)]
pub(crate) struct VariableDef {
    pub name: String,
    pub value: VariableValue,
    pub pos: Pos,
}

#[derive(Debug)]
pub(crate) enum VariableValue {
    Plain(TNode),
    /// A top-level `variables.copy` entry: an array of `count` inputs
    /// (learn.microsoft.com "Variable iteration in ARM templates").
    Loop {
        count: TNode,
        input: TNode,
    },
}

#[derive(Debug)]
pub(crate) struct CopyDef {
    pub name: String,
    pub count: TNode,
    pub mode: Option<TNode>,
    pub batch_size: Option<TNode>,
    pub pos: Pos,
}

#[derive(Debug)]
pub(crate) struct ResourceDef {
    /// The `name` element as written, which ARM's messages quote.
    pub display_name: String,
    pub pos: Pos,
    pub resource_type: TNode,
    pub name: TNode,
    pub api_version: TNode,
    pub location: Option<TNode>,
    pub condition: Option<TNode>,
    pub copy: Option<CopyDef>,
    pub depends_on: Vec<TNode>,
    pub scope: Option<TNode>,
    /// Every other element: the body sent to the resource provider.
    pub body: Vec<(String, TNode)>,
    pub parent: Option<usize>,
    /// The first arguments of the `reference()` and `list*()` calls in the body, whose
    /// targets become implicit dependencies.
    pub runtime_targets: Vec<Expr>,
}

#[derive(Debug)]
pub(crate) struct OutputDef {
    pub name: String,
    pub kind: ValueType,
    pub value: Option<TNode>,
    pub condition: Option<TNode>,
    pub copy: Option<(TNode, TNode)>,
    pub pos: Pos,
}

/// Resource elements that only the template engine reads; they are not sent to the
/// resource provider.
const TEMPLATE_ONLY: &[&str] = &[
    "type",
    "apiVersion",
    "name",
    "location",
    "dependsOn",
    "condition",
    "copy",
    "resources",
    "comments",
    "scope",
];

/// Where in the template an error happened, for ARM's message prefix.
enum Element<'a> {
    Template,
    Parameter(&'a str),
    Variable(&'a str),
    Resource(&'a str),
    Output(&'a str),
}

fn element_error(element: &Element, inner: &str, pos: Pos) -> TemplateError {
    let message = match element {
        Element::Template => inner.to_string(),
        Element::Parameter(name) => {
            format!(
                "The template parameter '{name}' {pos} is not valid: {inner}. {EXPRESSIONS_LINK}"
            )
        }
        Element::Variable(name) => {
            format!(
                "The template variable '{name}' {pos} is not valid: {inner}. {EXPRESSIONS_LINK}"
            )
        }
        Element::Resource(name) => {
            format!(
                "The template resource '{name}' {pos} is not valid: {inner}. {EXPRESSIONS_LINK}"
            )
        }
        Element::Output(name) => {
            format!("The template output '{name}' {pos} is not valid: {inner}. {EXPRESSIONS_LINK}")
        }
    };
    TemplateError::validation(&message, pos)
}

fn compile(node: &Node, copy_loops: bool, element: &Element) -> Result<TNode, TemplateError> {
    TNode::compile(node, copy_loops)
        .map_err(|(error, pos): CompileError| element_error(element, &error.message, pos))
}

impl Template {
    /// Parses a template from its JSON text (comments allowed, as in ARM).
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        let root = json::parse(source).map_err(|error| {
            TemplateError::new(
                "InvalidTemplate",
                format!("Deployment template parse failed: '{}'.", error.message),
                error.pos,
            )
        })?;
        let raw = root.to_value();
        let hash = crate::hash::murmur64(raw.to_string().as_bytes());
        if !matches!(root, Node::Object(..)) {
            return Err(TemplateError::validation(
                "The template must be a JSON object.",
                root.pos(),
            ));
        }
        if let Some(version) = root.get("languageVersion") {
            return Err(TemplateError::validation(
                &format!(
                    "The template 'languageVersion' {} is not supported: this server deploys templates without symbolic names only (no 'languageVersion'). Please see https://aka.ms/arm-syntax for usage details.",
                    version.as_str().unwrap_or("")
                ),
                version.pos(),
            ));
        }
        if let Some(functions) = root.get("functions") {
            let empty = matches!(functions, Node::Array(items, _) if items.is_empty());
            if !empty {
                return Err(TemplateError::validation(
                    "The template 'functions' element is not supported: user-defined functions cannot be deployed by this server. Please see https://aka.ms/arm-syntax for usage details.",
                    functions.pos(),
                ));
            }
        }
        let parameters = parse_parameters(root.get("parameters"))?;
        let variables = parse_variables(root.get("variables"))?;
        let mut resources = Vec::new();
        match root.get("resources") {
            None | Some(Node::Null(_)) => {}
            Some(Node::Array(items, _)) => {
                for item in items {
                    parse_resource(item, None, &mut resources)?;
                }
            }
            Some(other) => {
                return Err(TemplateError::validation(
                    "The template 'resources' element must be an array; resources as an object (symbolic names, languageVersion 2.0) are not supported. Please see https://aka.ms/arm-syntax-resources for usage details.",
                    other.pos(),
                ))
            }
        }
        let outputs = parse_outputs(root.get("outputs"))?;
        Ok(Template {
            inner: Arc::new(Model {
                raw,
                hash,
                parameters,
                variables,
                resources,
                outputs,
            }),
        })
    }

    /// The template as JSON, as `deployment().properties.template` returns it.
    pub fn to_value(&self) -> &Value {
        &self.inner.raw
    }

    /// A stable hash of the template for the deployment record's `templateHash`: a decimal
    /// 64-bit number like ARM's, but computed by openmi (ARM's exact input is not known),
    /// so it matches between openmi deployments only.
    pub fn template_hash(&self) -> String {
        self.inner.hash.to_string()
    }
}

fn members(node: Option<&Node>) -> &[json::Member] {
    match node {
        Some(Node::Object(members, _)) => members,
        _ => &[],
    }
}

fn int_of(node: Option<&Node>) -> Option<i64> {
    match node {
        Some(Node::Number(number, _)) => number.as_i64(),
        _ => None,
    }
}

fn parse_parameters(node: Option<&Node>) -> Result<Vec<ParameterDef>, TemplateError> {
    let mut out = Vec::new();
    for member in members(node) {
        let name = member.key.as_str();
        let definition = &member.value;
        let pos = definition.pos();
        let element = Element::Parameter(name);
        let kind = definition
            .get("type")
            .and_then(Node::as_str)
            .and_then(ValueType::parse)
            .ok_or_else(|| {
                element_error(
                    &element,
                    "The parameter 'type' must be one of 'string', 'securestring', 'int', 'bool', 'object', 'secureObject' or 'array'",
                    pos,
                )
            })?;
        let default = match definition.get("defaultValue") {
            Some(value) => Some(compile(value, false, &element)?),
            None => None,
        };
        let allowed = match definition.get("allowedValues") {
            Some(Node::Array(items, _)) => Some(items.iter().map(Node::to_value).collect()),
            Some(other) => {
                return Err(element_error(
                    &element,
                    "The 'allowedValues' property must be an array",
                    other.pos(),
                ))
            }
            None => None,
        };
        out.push(ParameterDef {
            name: name.to_string(),
            kind,
            default,
            allowed,
            min_value: int_of(definition.get("minValue")),
            max_value: int_of(definition.get("maxValue")),
            min_length: int_of(definition.get("minLength")),
            max_length: int_of(definition.get("maxLength")),
            pos,
        });
    }
    Ok(out)
}

fn parse_variables(node: Option<&Node>) -> Result<Vec<VariableDef>, TemplateError> {
    let mut out = Vec::new();
    for member in members(node) {
        if member.key.eq_ignore_ascii_case("copy") {
            let Node::Array(loops, _) = &member.value else {
                return Err(element_error(
                    &Element::Variable("copy"),
                    "The variable 'copy' element must be an array",
                    member.value.pos(),
                ));
            };
            for item in loops {
                let pos = item.pos();
                let name = item.get("name").and_then(Node::as_str).ok_or_else(|| {
                    element_error(
                        &Element::Variable("copy"),
                        "Each variable 'copy' entry needs a 'name' string",
                        pos,
                    )
                })?;
                let element = Element::Variable(name);
                let count = match item.get("count") {
                    Some(count) => compile(count, false, &element)?,
                    None => {
                        return Err(element_error(
                            &element,
                            "The variable 'copy' entry needs a 'count'",
                            pos,
                        ))
                    }
                };
                let input = match item.get("input") {
                    Some(input) => compile(input, true, &element)?,
                    None => {
                        return Err(element_error(
                            &element,
                            "The variable 'copy' entry needs an 'input'",
                            pos,
                        ))
                    }
                };
                out.push(VariableDef {
                    name: name.to_string(),
                    value: VariableValue::Loop { count, input },
                    pos,
                });
            }
            continue;
        }
        let element = Element::Variable(&member.key);
        out.push(VariableDef {
            name: member.key.clone(),
            value: VariableValue::Plain(compile(&member.value, true, &element)?),
            pos: member.value.pos(),
        });
    }
    Ok(out)
}

fn parse_resource(
    node: &Node,
    parent: Option<usize>,
    out: &mut Vec<ResourceDef>,
) -> Result<(), TemplateError> {
    let pos = node.pos();
    let Node::Object(fields, _) = node else {
        return Err(TemplateError::validation(
            &format!("The template resource {pos} is not valid: a resource must be a JSON object. Please see https://aka.ms/arm-syntax-resources for usage details."),
            pos,
        ));
    };
    let display_name = node
        .get("name")
        .and_then(Node::as_str)
        .unwrap_or_default()
        .to_string();
    let element = Element::Resource(&display_name);
    let required = |key: &str| -> Result<TNode, TemplateError> {
        match node.get(key) {
            Some(value) => compile(value, false, &element),
            None => Err(element_error(
                &element,
                &format!("The resource is missing the required property '{key}'"),
                pos,
            )),
        }
    };
    let resource_type = required("type")?;
    let name = required("name")?;
    let api_version = required("apiVersion")?;
    if let Some(literal) = node.get("type").and_then(Node::as_str) {
        if literal.eq_ignore_ascii_case("Microsoft.Resources/deployments") {
            return Err(element_error(
                &element,
                "Resources of type 'Microsoft.Resources/deployments' (nested and linked templates) are not supported by this server; deploy the inner template as a deployment of its own",
                pos,
            ));
        }
    }
    let optional = |key: &str| -> Result<Option<TNode>, TemplateError> {
        node.get(key)
            .map(|value| compile(value, false, &element))
            .transpose()
    };
    let location = optional("location")?;
    let condition = optional("condition")?;
    let scope = optional("scope")?;
    let copy = match node.get("copy") {
        None => None,
        Some(copy) if parent.is_some() => {
            return Err(element_error(
                &element,
                "The 'copy' property is not allowed on a nested resource; define the resource at the top level of 'resources' to iterate it (see https://aka.ms/arm-copy)",
                copy.pos(),
            ))
        }
        Some(copy) => {
            let copy_pos = copy.pos();
            let copy_name = copy.get("name").and_then(Node::as_str).ok_or_else(|| {
                element_error(&element, "The 'copy' property needs a 'name' string", copy_pos)
            })?;
            let count = match copy.get("count") {
                Some(count) => compile(count, false, &element)?,
                None => return Err(element_error(&element, "The 'copy' property needs a 'count'", copy_pos)),
            };
            Some(CopyDef {
                name: copy_name.to_string(),
                count,
                mode: copy.get("mode").map(|mode| compile(mode, false, &element)).transpose()?,
                batch_size: copy
                    .get("batchSize")
                    .map(|size| compile(size, false, &element))
                    .transpose()?,
                pos: copy_pos,
            })
        }
    };
    let depends_on = match node.get("dependsOn") {
        None | Some(Node::Null(_)) => Vec::new(),
        Some(Node::Array(items, _)) => items
            .iter()
            .map(|item| compile(item, false, &element))
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(element_error(
                &element,
                "The 'dependsOn' property must be an array",
                other.pos(),
            ))
        }
    };
    let mut body = Vec::new();
    for field in fields {
        if TEMPLATE_ONLY
            .iter()
            .any(|key| key.eq_ignore_ascii_case(&field.key))
        {
            continue;
        }
        body.push((field.key.clone(), compile(&field.value, true, &element)?));
    }
    let mut runtime_targets = Vec::new();
    for (_, value) in &body {
        value.visit_exprs(&mut |expr| {
            visit_calls(expr, &mut |func, _, args| {
                if matches!(func, Func::Reference | Func::List) {
                    if let Some(first) = args.first() {
                        runtime_targets.push(first.clone());
                    }
                }
            })
        });
    }
    let index = out.len();
    out.push(ResourceDef {
        display_name: display_name.clone(),
        pos,
        resource_type,
        name,
        api_version,
        location,
        condition,
        copy,
        depends_on,
        scope,
        body,
        parent,
        runtime_targets,
    });
    match node.get("resources") {
        None | Some(Node::Null(_)) => {}
        Some(Node::Array(children, _)) => {
            for child in children {
                parse_resource(child, Some(index), out)?;
            }
        }
        Some(other) => {
            return Err(element_error(
                &Element::Resource(&display_name),
                "The nested 'resources' property must be an array",
                other.pos(),
            ))
        }
    }
    Ok(())
}

fn parse_outputs(node: Option<&Node>) -> Result<Vec<OutputDef>, TemplateError> {
    let mut out = Vec::new();
    for member in members(node) {
        let name = member.key.as_str();
        let definition = &member.value;
        let pos = definition.pos();
        let element = Element::Output(name);
        let kind = definition
            .get("type")
            .and_then(Node::as_str)
            .and_then(ValueType::parse)
            .ok_or_else(|| {
                element_error(&element, "The output 'type' must be one of 'string', 'securestring', 'int', 'bool', 'object', 'secureObject' or 'array'", pos)
            })?;
        let value = definition
            .get("value")
            .map(|value| compile(value, true, &element))
            .transpose()?;
        let condition = definition
            .get("condition")
            .map(|value| compile(value, false, &element))
            .transpose()?;
        let copy = match definition.get("copy") {
            None => None,
            Some(copy) => {
                let count = copy.get("count").ok_or_else(|| {
                    element_error(&element, "The output 'copy' needs a 'count'", copy.pos())
                })?;
                let input = copy.get("input").ok_or_else(|| {
                    element_error(&element, "The output 'copy' needs an 'input'", copy.pos())
                })?;
                Some((
                    compile(count, false, &element)?,
                    compile(input, true, &element)?,
                ))
            }
        };
        if value.is_none() && copy.is_none() {
            return Err(element_error(
                &element,
                "The output needs a 'value' or a 'copy'",
                pos,
            ));
        }
        out.push(OutputDef {
            name: name.to_string(),
            kind,
            value,
            condition,
            copy,
            pos,
        });
    }
    Ok(out)
}

/// Used by `plan` to report errors in a named element, in ARM's words.
pub(crate) fn resource_error(def: &ResourceDef, error: &EvalError) -> TemplateError {
    element_error(
        &Element::Resource(&def.display_name),
        &error.message,
        def.pos,
    )
}

pub(crate) fn variable_error(def: &VariableDef, error: &EvalError) -> TemplateError {
    element_error(&Element::Variable(&def.name), &error.message, def.pos)
}

pub(crate) fn parameter_error(def: &ParameterDef, error: &EvalError) -> TemplateError {
    element_error(&Element::Parameter(&def.name), &error.message, def.pos)
}

pub(crate) fn template_error(message: &str, pos: Pos) -> TemplateError {
    element_error(&Element::Template, message, pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_error(source: &str, expected: &str, line: u32, column: u32) {
        let error = Template::parse(source).unwrap_err();
        assert_eq!(error.code, "InvalidTemplate");
        assert!(error.message.contains(expected), "{}", error.message);
        assert_eq!(
            (error.line, error.column),
            (line, column),
            "{}",
            error.message
        );
    }

    #[test]
    fn parses_elements() {
        let template = Template::parse(
            r#"{
  "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
  "contentVersion": "1.0.0.0",
  "parameters": {"name": {"type": "string", "defaultValue": "[[literal]"}},
  "variables": {"v": "[parameters('name')]", "copy": [{"name": "list", "count": 2, "input": "[copyIndex('list')]"}]},
  "functions": [],
  "resources": [
    {"type": "Microsoft.KeyVault/vaults", "apiVersion": "2022-07-01", "name": "kv", "location": "westus",
     "properties": {"tenantId": "[subscription().tenantId]", "other": "[reference('x').y]"},
     "resources": [{"type": "secrets", "apiVersion": "2022-07-01", "name": "s", "dependsOn": ["kv"], "properties": {"value": "x"}}]}
  ],
  "outputs": {"o": {"type": "string", "value": "[variables('v')]"}}
}"#,
        )
        .unwrap();
        let model = &template.inner;
        assert_eq!(model.parameters[0].kind, ValueType::String);
        assert_eq!(model.variables.len(), 2);
        assert_eq!(model.resources.len(), 2);
        assert_eq!(model.resources[1].parent, Some(0));
        assert_eq!(model.resources[0].runtime_targets.len(), 1);
        assert_eq!(
            model.resources[0].body.len(),
            1,
            "only 'properties' is sent"
        );
        assert_eq!(model.outputs[0].kind.arm_name(), "String");
    }

    #[test]
    fn refusals() {
        check_error(
            r#"{"languageVersion": "2.0", "resources": {}}"#,
            "languageVersion",
            1,
            21,
        );
        check_error(
            r#"{"functions": [{"namespace": "x"}]}"#,
            "user-defined functions",
            1,
            15,
        );
        check_error(
            r#"{"resources": [{"type": "Microsoft.Resources/deployments", "apiVersion": "2022-09-01", "name": "inner"}]}"#,
            "The template resource 'inner' at line '1' and column '16' is not valid: Resources of type 'Microsoft.Resources/deployments'",
            1,
            16,
        );
        check_error(
            r#"{"resources": [{"type": "a/b", "apiVersion": "1", "name": "p", "resources": [{"type": "c", "apiVersion": "1", "name": "n", "copy": {"name": "l", "count": 2}}]}]}"#,
            "not allowed on a nested resource",
            1,
            132,
        );
    }

    #[test]
    fn expression_errors_name_their_element() {
        check_error(
            "{\n  \"resources\": [\n    {\"type\": \"a/b\", \"apiVersion\": \"1\", \"name\": \"[concat('a')))]\"}\n  ]\n}",
            "Deployment template validation failed: 'The template resource '[concat('a')))]' at line '3' and column '48' is not valid: Unable to parse language expression 'concat('a')))': expected token 'EndOfData' and actual 'RightParenthesis'.. Please see https://aka.ms/arm-template-expressions for usage details.'.",
            3,
            48,
        );
        check_error(
            r#"{"variables": {"v": "[nosuch(1)]"}}"#,
            "The template variable 'v' at line '1' and column '21' is not valid: The template function 'nosuch' is not valid.",
            1,
            21,
        );
        check_error(
            r#"{"resources": [1, 2"#,
            "Deployment template parse failed",
            1,
            20,
        );
    }
}
