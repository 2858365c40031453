//! The standard functions of ARM templates as one table: a name (case-insensitive, as in
//! ARM) maps to a `Func`, its argument count is checked when the template is parsed, and
//! `call` evaluates it. Each function follows its page in learn.microsoft.com "ARM template
//! functions" (array, comparison, date, deployment, logical, numeric, object, resource, scope,
//! string); the tests at the bottom are those pages' examples with their documented results.
//!
//! Arguments arrive unevaluated so that `if` evaluates only the chosen branch, as ARM does
//! ("Logical functions", `if`: only the value for the matching condition is evaluated), and
//! `and`, `or` and `coalesce` stop at the first deciding argument.

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::{
    dotnet::{self, DateTime},
    error::{EvalError, EvalResult, EXPRESSIONS_LINK},
    eval::{self, not_expected, type_name, CopyKind, Ctx, Phase},
    hash,
    parse::Expr,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Func {
    Parameters,
    Variables,
    ResourceGroup,
    Subscription,
    Tenant,
    ManagementGroup,
    Deployment,
    Environment,
    ResourceId,
    SubscriptionResourceId,
    ExtensionResourceId,
    TenantResourceId,
    Reference,
    List,
    Concat,
    Format,
    String,
    Int,
    Float,
    Bool,
    Json,
    If,
    Equals,
    Not,
    And,
    Or,
    Less,
    LessOrEquals,
    Greater,
    GreaterOrEquals,
    Length,
    Empty,
    Contains,
    Union,
    Intersection,
    First,
    Last,
    Take,
    Skip,
    Split,
    Join,
    Replace,
    Substring,
    ToLower,
    ToUpper,
    Trim,
    StartsWith,
    EndsWith,
    IndexOf,
    LastIndexOf,
    PadLeft,
    UniqueString,
    Guid,
    NewGuid,
    UtcNow,
    CreateArray,
    CreateObject,
    Coalesce,
    Range,
    Base64,
    Base64ToString,
    Base64ToJson,
    DataUri,
    DataUriToString,
    Uri,
    UriComponent,
    UriComponentToString,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Min,
    Max,
    Array,
    CopyIndex,
    Null,
    True,
    False,
    Items,
    DateTimeAdd,
    DateTimeFromEpoch,
    DateTimeToEpoch,
}

/// The function a name stands for; any name starting with `list` is a `list*` function
/// (`listKeys`, `listSecrets`, ...), which the resource provider implements.
pub(crate) fn lookup(name: &str) -> Option<Func> {
    let lower = name.to_ascii_lowercase();
    Some(match lower.as_str() {
        "parameters" => Func::Parameters,
        "variables" => Func::Variables,
        "resourcegroup" => Func::ResourceGroup,
        "subscription" => Func::Subscription,
        "tenant" => Func::Tenant,
        "managementgroup" => Func::ManagementGroup,
        "deployment" => Func::Deployment,
        "environment" => Func::Environment,
        "resourceid" => Func::ResourceId,
        "subscriptionresourceid" => Func::SubscriptionResourceId,
        "extensionresourceid" => Func::ExtensionResourceId,
        "tenantresourceid" => Func::TenantResourceId,
        "reference" => Func::Reference,
        "concat" => Func::Concat,
        "format" => Func::Format,
        "string" => Func::String,
        "int" => Func::Int,
        "float" => Func::Float,
        "bool" => Func::Bool,
        "json" => Func::Json,
        "if" => Func::If,
        "equals" => Func::Equals,
        "not" => Func::Not,
        "and" => Func::And,
        "or" => Func::Or,
        "less" => Func::Less,
        "lessorequals" => Func::LessOrEquals,
        "greater" => Func::Greater,
        "greaterorequals" => Func::GreaterOrEquals,
        "length" => Func::Length,
        "empty" => Func::Empty,
        "contains" => Func::Contains,
        "union" => Func::Union,
        "intersection" => Func::Intersection,
        "first" => Func::First,
        "last" => Func::Last,
        "take" => Func::Take,
        "skip" => Func::Skip,
        "split" => Func::Split,
        "join" => Func::Join,
        "replace" => Func::Replace,
        "substring" => Func::Substring,
        "tolower" => Func::ToLower,
        "toupper" => Func::ToUpper,
        "trim" => Func::Trim,
        "startswith" => Func::StartsWith,
        "endswith" => Func::EndsWith,
        "indexof" => Func::IndexOf,
        "lastindexof" => Func::LastIndexOf,
        "padleft" => Func::PadLeft,
        "uniquestring" => Func::UniqueString,
        "guid" => Func::Guid,
        "newguid" => Func::NewGuid,
        "utcnow" => Func::UtcNow,
        "createarray" => Func::CreateArray,
        "createobject" => Func::CreateObject,
        "coalesce" => Func::Coalesce,
        "range" => Func::Range,
        "base64" => Func::Base64,
        "base64tostring" => Func::Base64ToString,
        "base64tojson" => Func::Base64ToJson,
        "datauri" => Func::DataUri,
        "datauritostring" => Func::DataUriToString,
        "uri" => Func::Uri,
        "uricomponent" => Func::UriComponent,
        "uricomponenttostring" => Func::UriComponentToString,
        "add" => Func::Add,
        "sub" => Func::Sub,
        "mul" => Func::Mul,
        "div" => Func::Div,
        "mod" => Func::Mod,
        "min" => Func::Min,
        "max" => Func::Max,
        "array" => Func::Array,
        "copyindex" => Func::CopyIndex,
        "null" => Func::Null,
        "true" => Func::True,
        "false" => Func::False,
        "items" => Func::Items,
        "datetimeadd" => Func::DateTimeAdd,
        "datetimefromepoch" => Func::DateTimeFromEpoch,
        "datetimetoepoch" => Func::DateTimeToEpoch,
        other if other.starts_with("list") => Func::List,
        _ => return None,
    })
}

/// The argument counts a function accepts: (at least, at most).
fn arity(func: Func) -> (usize, Option<usize>) {
    use Func::*;
    match func {
        ResourceGroup | Subscription | Tenant | Deployment | Environment | NewGuid | Null
        | True | False => (0, Some(0)),
        ManagementGroup | UtcNow => (0, Some(1)),
        CopyIndex => (0, Some(2)),
        CreateArray | CreateObject => (0, None),
        Parameters | Variables | String | Int | Float | Bool | Json | Not | Length | Empty
        | First | Last | ToLower | ToUpper | Trim | Base64 | Base64ToString | Base64ToJson
        | DataUri | DataUriToString | UriComponent | UriComponentToString | Array | Items
        | DateTimeFromEpoch | DateTimeToEpoch => (1, Some(1)),
        Reference => (1, Some(3)),
        Substring => (1, Some(3)),
        List => (2, Some(3)),
        PadLeft | DateTimeAdd => (2, Some(3)),
        Equals | Less | LessOrEquals | Greater | GreaterOrEquals | Contains | Take | Skip
        | Split | Join | StartsWith | EndsWith | IndexOf | LastIndexOf | Range | Uri | Add
        | Sub | Mul | Div | Mod => (2, Some(2)),
        If | Replace => (3, Some(3)),
        ResourceId
        | SubscriptionResourceId
        | TenantResourceId
        | And
        | Or
        | Union
        | Intersection => (2, None),
        ExtensionResourceId => (3, None),
        Concat | Format | UniqueString | Guid | Coalesce | Min | Max => (1, None),
    }
}

pub(crate) fn check_arity(func: Func, name: &str, count: usize) -> EvalResult<()> {
    let (least, most) = arity(func);
    if count >= least && most.is_none_or(|most| count <= most) {
        return Ok(());
    }
    let required = match most {
        Some(most) if most == least => least.to_string(),
        Some(most) => format!("{least} to {most}"),
        None => format!("at least {least}"),
    };
    Err(EvalError::new(format!(
        "Unable to evaluate template language function '{name}': function requires {required} argument(s) while {count} were provided. Please see https://aka.ms/arm-template-expressions/#{} for usage details.",
        name.to_ascii_lowercase()
    )))
}

fn ordinal(index: usize) -> &'static str {
    ["first", "second", "third", "fourth", "fifth", "sixth"]
        .get(index)
        .copied()
        .unwrap_or("next")
}

fn type_error(name: &str, index: usize, count: usize, expected: &str, actual: &Value) -> EvalError {
    let which = if count == 1 {
        "its parameter".to_string()
    } else {
        format!("its {} parameter", ordinal(index))
    };
    EvalError::new(format!(
        "The template language function '{name}' expects {which} to be {expected}. The provided value is of type '{}'. Please see https://aka.ms/arm-template-expressions/#{} for usage details.",
        type_name(actual),
        name.to_ascii_lowercase()
    ))
}

fn invalid_argument(name: &str, what: &str) -> EvalError {
    EvalError::new(format!(
        "Unable to evaluate template language function '{name}': {what} Please see https://aka.ms/arm-template-expressions/#{} for usage details.",
        name.to_ascii_lowercase()
    ))
}

/// The evaluated arguments of one call, with typed accessors that fail in ARM's words.
struct Args<'n> {
    name: &'n str,
    values: Vec<Value>,
}

impl Args<'_> {
    fn str(&self, index: usize) -> EvalResult<&str> {
        match &self.values[index] {
            Value::String(text) => Ok(text),
            other => Err(type_error(
                self.name,
                index,
                self.values.len(),
                "of type 'String'",
                other,
            )),
        }
    }

    fn int(&self, index: usize) -> EvalResult<i64> {
        match &self.values[index] {
            Value::Number(number) if number.is_i64() => Ok(number.as_i64().unwrap_or(0)),
            other => Err(type_error(
                self.name,
                index,
                self.values.len(),
                "of type 'Integer'",
                other,
            )),
        }
    }

    fn bool(&self, index: usize) -> EvalResult<bool> {
        match &self.values[index] {
            Value::Bool(flag) => Ok(*flag),
            other => Err(type_error(
                self.name,
                index,
                self.values.len(),
                "of type 'Boolean'",
                other,
            )),
        }
    }

    fn opt_str(&self, index: usize) -> EvalResult<Option<&str>> {
        if index < self.values.len() {
            self.str(index).map(Some)
        } else {
            Ok(None)
        }
    }

    fn strings(&self) -> EvalResult<Vec<&str>> {
        (0..self.values.len())
            .map(|index| self.str(index))
            .collect()
    }
}

fn evaluate_all<'n>(name: &'n str, args: &[Expr], ctx: &Ctx) -> EvalResult<Args<'n>> {
    let values = args
        .iter()
        .map(|arg| eval::eval(arg, ctx))
        .collect::<EvalResult<Vec<_>>>()?;
    Ok(Args { name, values })
}

fn bool_of(name: &str, value: Value, index: usize, count: usize) -> EvalResult<bool> {
    match value {
        Value::Bool(flag) => Ok(flag),
        other => Err(type_error(name, index, count, "of type 'Boolean'", &other)),
    }
}

/// Evaluates one call of the standard function `func`.
pub(crate) fn call(func: Func, name: &str, args: &[Expr], ctx: &Ctx) -> EvalResult<Value> {
    // The lazily evaluated functions first.
    match func {
        Func::If => {
            let condition = bool_of(name, eval::eval(&args[0], ctx)?, 0, 3)?;
            return eval::eval(&args[if condition { 1 } else { 2 }], ctx);
        }
        Func::And | Func::Or => {
            let stop_at = func == Func::Or;
            for (index, arg) in args.iter().enumerate() {
                if bool_of(name, eval::eval(arg, ctx)?, index, args.len())? == stop_at {
                    return Ok(Value::Bool(stop_at));
                }
            }
            return Ok(Value::Bool(!stop_at));
        }
        Func::Coalesce => {
            for arg in args {
                let value = eval::eval(arg, ctx)?;
                if !value.is_null() {
                    return Ok(value);
                }
            }
            return Ok(Value::Null);
        }
        _ => {}
    }
    let args = evaluate_all(name, args, ctx)?;
    let values = &args.values;
    Ok(match func {
        Func::If | Func::And | Func::Or | Func::Coalesce => Value::Null,
        Func::Parameters => {
            let parameter = args.str(0)?;
            ctx.env.parameter(parameter)?
        }
        Func::Variables => {
            if ctx.phase == Phase::ParameterDefault {
                return Err(not_expected(name));
            }
            let variable = args.str(0)?;
            ctx.env.variable(variable)?
        }
        Func::ResourceGroup => {
            let scope = ctx.env.scope();
            let Some(group) = &scope.resource_group else {
                return Err(not_expected(name));
            };
            let mut object = Map::new();
            object.insert(
                "id".into(),
                Value::String(format!(
                    "/subscriptions/{}/resourceGroups/{}",
                    scope.subscription_id, group.name
                )),
            );
            object.insert("name".into(), Value::String(group.name.clone()));
            object.insert("type".into(), "Microsoft.Resources/resourceGroups".into());
            object.insert("location".into(), Value::String(group.location.clone()));
            if !group.tags.is_null() {
                object.insert("tags".into(), group.tags.clone());
            }
            object.insert(
                "properties".into(),
                serde_json::json!({"provisioningState": "Succeeded"}),
            );
            Value::Object(object)
        }
        Func::Subscription => {
            let scope = ctx.env.scope();
            serde_json::json!({
                "id": format!("/subscriptions/{}", scope.subscription_id),
                "subscriptionId": scope.subscription_id,
                "tenantId": scope.tenant_id,
                "displayName": scope.subscription_display_name,
            })
        }
        Func::Tenant => {
            let scope = ctx.env.scope();
            serde_json::json!({
                "id": format!("/tenants/{}", scope.tenant_id),
                "tenantId": scope.tenant_id,
            })
        }
        // Management group deployments are not supported, so the function is never valid.
        Func::ManagementGroup => return Err(not_expected(name)),
        Func::Deployment => ctx.env.deployment(),
        Func::Environment => ctx.env.scope().environment.clone(),
        Func::ResourceId => resource_id(&args, ctx)?.into(),
        Func::SubscriptionResourceId => {
            let strings = args.strings()?;
            let type_at = strings.iter().position(|arg| arg.contains('/')).unwrap_or(0);
            let subscription = match type_at {
                0 => ctx.env.scope().subscription_id.as_str(),
                1 => strings[0],
                _ => return Err(invalid_argument(name, "the subscription id and the resource type are the only arguments allowed before the resource names.")),
            };
            let path = provider_path(name, strings[type_at], &strings[type_at + 1..])?;
            format!("/subscriptions/{subscription}/providers/{path}").into()
        }
        Func::TenantResourceId => {
            let strings = args.strings()?;
            let path = provider_path(name, strings[0], &strings[1..])?;
            format!("/providers/{path}").into()
        }
        Func::ExtensionResourceId => {
            let strings = args.strings()?;
            let path = provider_path(name, strings[1], &strings[2..])?;
            format!("{}/providers/{path}", strings[0].trim_end_matches('/')).into()
        }
        Func::Reference => {
            if !ctx.phase.allows_runtime_functions() {
                return Err(not_expected(name));
            }
            let target = args.str(0)?;
            let api_version = args.opt_str(1)?;
            let full = match args.opt_str(2)? {
                None => false,
                Some(option) if option.eq_ignore_ascii_case("full") => true,
                Some(option) if option.eq_ignore_ascii_case("properties") => false,
                Some(option) => {
                    return Err(invalid_argument(
                        name,
                        &format!("the third argument must be 'Full' or 'Properties', not '{option}'."),
                    ))
                }
            };
            let (id, template_api_version) = ctx.env.resolve_resource(target)?;
            let api_version = api_version.map(str::to_string).or(template_api_version);
            let resolver = ctx.env.resolver().ok_or_else(|| not_expected(name))?;
            resolver
                .reference(&id, api_version.as_deref(), full)
                .map_err(EvalError::new)?
        }
        Func::List => {
            if !ctx.phase.allows_runtime_functions() {
                return Err(not_expected(name));
            }
            let target = args.str(0)?;
            let api_version = args.str(1)?.to_string();
            let body = values.get(2);
            let (id, _) = ctx.env.resolve_resource(target)?;
            let resolver = ctx.env.resolver().ok_or_else(|| not_expected(name))?;
            resolver
                .list(name, &id, &api_version, body)
                .map_err(EvalError::new)?
        }
        Func::Concat => concat(&args)?,
        Func::Format => {
            let format = args.str(0)?;
            dotnet::composite_format(format, &values[1..])
                .map_err(|error| invalid_argument(name, &error.message))?
                .into()
        }
        Func::String => match &values[0] {
            Value::String(text) => Value::String(text.clone()),
            other => dotnet::to_dotnet_string(other).into(),
        },
        Func::Int => match &values[0] {
            Value::Number(number) if number.is_i64() => values[0].clone(),
            Value::Number(number) => (number.as_f64().unwrap_or(0.0).round_ties_even() as i64).into(),
            Value::String(text) => text.trim().parse::<i64>().map(Value::from).map_err(|_| {
                invalid_argument(name, &format!("the string '{text}' could not be converted to an integer."))
            })?,
            other => return Err(type_error(name, 0, 1, "a string or an integer", other)),
        },
        Func::Float => match &values[0] {
            Value::Number(number) => serde_json::Number::from_f64(number.as_f64().unwrap_or(0.0))
                .map_or(Value::Null, Value::Number),
            Value::String(text) => text
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| invalid_argument(name, &format!("the string '{text}' could not be converted to a floating point number.")))?,
            other => return Err(type_error(name, 0, 1, "a string or an integer", other)),
        },
        Func::Bool => match &values[0] {
            Value::Bool(flag) => Value::Bool(*flag),
            Value::String(text) if text.trim().eq_ignore_ascii_case("true") => Value::Bool(true),
            Value::String(text) if text.trim().eq_ignore_ascii_case("false") => Value::Bool(false),
            Value::Number(number) if number.is_i64() => Value::Bool(number.as_i64() != Some(0)),
            other => return Err(type_error(name, 0, 1, "a boolean, the string 'true' or 'false', or an integer", other)),
        },
        Func::Json => parse_json(name, args.str(0)?)?,
        Func::Equals => Value::Bool(values[0] == values[1]),
        Func::Not => Value::Bool(!args.bool(0)?),
        Func::Less | Func::LessOrEquals | Func::Greater | Func::GreaterOrEquals => {
            let ordering = compare(name, &values[0], &values[1])?;
            Value::Bool(match func {
                Func::Less => ordering.is_lt(),
                Func::LessOrEquals => ordering.is_le(),
                Func::Greater => ordering.is_gt(),
                _ => ordering.is_ge(),
            })
        }
        Func::Length => match &values[0] {
            Value::String(text) => (text.chars().count() as i64).into(),
            Value::Array(items) => (items.len() as i64).into(),
            Value::Object(map) => (map.len() as i64).into(),
            other => return Err(type_error(name, 0, 1, "an array, an object, or a string", other)),
        },
        Func::Empty => Value::Bool(match &values[0] {
            Value::Null => true,
            Value::String(text) => text.is_empty(),
            Value::Array(items) => items.is_empty(),
            Value::Object(map) => map.is_empty(),
            other => return Err(type_error(name, 0, 1, "an object, an array, or a string", other)),
        }),
        Func::Contains => Value::Bool(match &values[0] {
            Value::String(text) => text.contains(&*dotnet::to_dotnet_string(&values[1])),
            Value::Array(items) => items.contains(&values[1]),
            Value::Object(map) => {
                let key = dotnet::to_dotnet_string(&values[1]);
                map.keys().any(|existing| existing.eq_ignore_ascii_case(&key))
            }
            other => return Err(type_error(name, 0, 2, "an array, an object, or a string", other)),
        }),
        Func::Union => union(&args)?,
        Func::Intersection => intersection(&args)?,
        Func::First | Func::Last => match &values[0] {
            Value::Array(items) => {
                let item = if func == Func::First { items.first() } else { items.last() };
                item.cloned().unwrap_or(Value::Null)
            }
            Value::String(text) => {
                let character = if func == Func::First { text.chars().next() } else { text.chars().last() };
                character.map(String::from).unwrap_or_default().into()
            }
            other => return Err(type_error(name, 0, 1, "an array or a string", other)),
        },
        Func::Take | Func::Skip => {
            let count = args.int(1)?.max(0) as usize;
            let take = func == Func::Take;
            match &values[0] {
                Value::Array(items) => {
                    let count = count.min(items.len());
                    let slice = if take { &items[..count] } else { &items[count..] };
                    Value::Array(slice.to_vec())
                }
                Value::String(text) => {
                    let characters = text.chars();
                    if take {
                        characters.take(count).collect::<String>().into()
                    } else {
                        characters.skip(count).collect::<String>().into()
                    }
                }
                other => return Err(type_error(name, 0, 2, "an array or a string", other)),
            }
        }
        Func::Split => {
            let text = args.str(0)?;
            let delimiters: Vec<String> = match &values[1] {
                Value::String(delimiter) => vec![delimiter.clone()],
                Value::Array(items) => items
                    .iter()
                    .map(|item| match item {
                        Value::String(delimiter) => Ok(delimiter.clone()),
                        other => Err(type_error(name, 1, 2, "a string or an array of strings", other)),
                    })
                    .collect::<EvalResult<_>>()?,
                other => return Err(type_error(name, 1, 2, "a string or an array of strings", other)),
            };
            Value::Array(split(text, &delimiters).into_iter().map(Value::String).collect())
        }
        Func::Join => {
            let Value::Array(items) = &values[0] else {
                return Err(type_error(name, 0, 2, "of type 'Array'", &values[0]));
            };
            let delimiter = args.str(1)?;
            let parts: Vec<String> = items
                .iter()
                .map(|item| match item {
                    Value::Array(_) | Value::Object(_) => Err(type_error(name, 0, 2, "an array of strings", item)),
                    other => Ok(dotnet::to_dotnet_string(other)),
                })
                .collect::<EvalResult<_>>()?;
            parts.join(delimiter).into()
        }
        Func::Replace => {
            let (text, old, new) = (args.str(0)?, args.str(1)?, args.str(2)?);
            if old.is_empty() {
                return Err(invalid_argument(name, "the string to replace must not be empty."));
            }
            text.replace(old, new).into()
        }
        Func::Substring => {
            let text = args.str(0)?;
            let characters: Vec<char> = text.chars().collect();
            let start = if values.len() > 1 { args.int(1)? } else { 0 };
            let length = if values.len() > 2 { args.int(2)? } else { characters.len() as i64 - start };
            let total = characters.len() as i64;
            if start < 0 || length < 0 || start + length > total {
                return Err(EvalError::new(format!(
                    "The index and length parameters must refer to a location within the string. The index parameter: '{start}', the length parameter: '{length}', the length of the string parameter: '{total}'. {EXPRESSIONS_LINK}"
                )));
            }
            characters[start as usize..(start + length) as usize].iter().collect::<String>().into()
        }
        Func::ToLower => args.str(0)?.to_lowercase().into(),
        Func::ToUpper => args.str(0)?.to_uppercase().into(),
        Func::Trim => args.str(0)?.trim().to_string().into(),
        Func::StartsWith => Value::Bool(lower(args.str(0)?).starts_with(&lower(args.str(1)?))),
        Func::EndsWith => Value::Bool(lower(args.str(0)?).ends_with(&lower(args.str(1)?))),
        Func::IndexOf | Func::LastIndexOf => {
            let haystack: Vec<char> = lower(args.str(0)?).chars().collect();
            let needle: Vec<char> = lower(args.str(1)?).chars().collect();
            let found = if needle.is_empty() {
                Some(if func == Func::IndexOf { 0 } else { haystack.len().saturating_sub(1) })
            } else if needle.len() > haystack.len() {
                None
            } else {
                let mut starts = 0..=haystack.len() - needle.len();
                let matches = |start: &usize| haystack[*start..*start + needle.len()] == needle[..];
                if func == Func::IndexOf { starts.find(matches) } else { starts.rev().find(matches) }
            };
            found.map_or(-1, |index| index as i64).into()
        }
        Func::PadLeft => {
            let text = match &values[0] {
                Value::String(text) => text.clone(),
                Value::Number(number) if number.is_i64() => number.to_string(),
                other => return Err(type_error(name, 0, values.len(), "a string or an integer", other)),
            };
            let total = args.int(1)?;
            let padding = match args.opt_str(2)? {
                None => ' ',
                Some(padding) => {
                    let mut characters = padding.chars();
                    match (characters.next(), characters.next()) {
                        (Some(character), None) => character,
                        _ => return Err(invalid_argument(name, "the padding character must be a single character.")),
                    }
                }
            };
            if total > dotnet::MAX_WIDTH as i64 {
                return Err(invalid_argument(name, &format!("the total length must not exceed {}.", dotnet::MAX_WIDTH)));
            }
            let length = text.chars().count() as i64;
            let mut out: String = std::iter::repeat_n(padding, (total - length).max(0) as usize).collect();
            out.push_str(&text);
            out.into()
        }
        Func::UniqueString => hash::unique_string(&args.strings()?).into(),
        Func::Guid => hash::guid(&args.strings()?).into(),
        Func::NewGuid => {
            if ctx.phase != Phase::ParameterDefault {
                return Err(default_value_only(name));
            }
            ctx.env.new_guid().ok_or_else(|| default_value_only(name))?.into()
        }
        Func::UtcNow => {
            if ctx.phase != Phase::ParameterDefault {
                return Err(default_value_only(name));
            }
            let now = ctx.env.utc_now().ok_or_else(|| default_value_only(name))?;
            let format = args.opt_str(0)?.unwrap_or("");
            DateTime::from_unix(now)
                .format(format)
                .map_err(|error| invalid_argument(name, &error.message))?
                .into()
        }
        Func::CreateArray => Value::Array(values.clone()),
        Func::CreateObject => {
            if values.len() % 2 != 0 {
                return Err(invalid_argument(name, "the function requires an even number of arguments, a value for each key."));
            }
            let mut object = Map::new();
            for pair in (0..values.len()).step_by(2) {
                object.insert(args.str(pair)?.to_string(), values[pair + 1].clone());
            }
            Value::Object(object)
        }
        Func::Range => {
            let (start, count) = (args.int(0)?, args.int(1)?);
            if !(0..=10_000).contains(&count) {
                return Err(invalid_argument(name, &format!("the count '{count}' must be a non-negative integer up to 10000.")));
            }
            if start.checked_add(count).is_none_or(|end| end > i64::from(i32::MAX)) {
                return Err(invalid_argument(name, "the sum of the start index and the count must be no greater than 2147483647."));
            }
            Value::Array((start..start + count).map(Value::from).collect())
        }
        Func::Base64 => base64::engine::general_purpose::STANDARD.encode(args.str(0)?).into(),
        Func::Base64ToString | Func::Base64ToJson => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(args.str(0)?.trim())
                .map_err(|_| invalid_argument(name, "the input is not a valid Base-64 string."))?;
            let text = String::from_utf8_lossy(&bytes).into_owned();
            if func == Func::Base64ToJson { parse_json(name, &text)? } else { text.into() }
        }
        Func::DataUri => format!(
            "data:text/plain;charset=utf8;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(args.str(0)?)
        )
        .into(),
        Func::DataUriToString => {
            let uri = args.str(0)?;
            let (header, data) = uri
                .strip_prefix("data:")
                .and_then(|rest| rest.split_once(','))
                .ok_or_else(|| invalid_argument(name, "the input is not a valid data URI."))?;
            if header.ends_with(";base64") {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .map_err(|_| invalid_argument(name, "the input is not a valid data URI."))?;
                String::from_utf8_lossy(&bytes).into_owned().into()
            } else {
                percent_decode(data).into()
            }
        }
        Func::Uri => resolve_uri(args.str(0)?, args.str(1)?).into(),
        Func::UriComponent => percent_encode(args.str(0)?).into(),
        Func::UriComponentToString => percent_decode(args.str(0)?).into(),
        Func::Add | Func::Sub | Func::Mul | Func::Div | Func::Mod => {
            let (left, right) = (args.int(0)?, args.int(1)?);
            let result = match func {
                Func::Add => left.checked_add(right),
                Func::Sub => left.checked_sub(right),
                Func::Mul => left.checked_mul(right),
                _ if right == 0 => {
                    return Err(invalid_argument(name, "the second operand must not be zero."))
                }
                Func::Div => left.checked_div(right),
                _ => left.checked_rem(right),
            };
            result
                .ok_or_else(|| invalid_argument(name, "the result does not fit in a 64-bit integer."))?
                .into()
        }
        Func::Min | Func::Max => {
            let numbers: Vec<&Value> = match values.as_slice() {
                [Value::Array(items)] => items.iter().collect(),
                all => all.iter().collect(),
            };
            let mut best: Option<&Value> = None;
            for number in numbers {
                if !number.is_number() {
                    return Err(type_error(name, 0, 1, "an array of integers or a list of integers", number));
                }
                let replace = match best {
                    None => true,
                    Some(current) => {
                        let ordering = compare(name, number, current)?;
                        if func == Func::Min { ordering.is_lt() } else { ordering.is_gt() }
                    }
                };
                if replace {
                    best = Some(number);
                }
            }
            best.cloned().ok_or_else(|| invalid_argument(name, "the array must not be empty."))?
        }
        Func::Array => match &values[0] {
            Value::Array(_) => values[0].clone(),
            Value::Null => Value::Array(Vec::new()),
            other => Value::Array(vec![other.clone()]),
        },
        Func::CopyIndex => copy_index(&args, ctx)?,
        Func::Null => Value::Null,
        Func::True => Value::Bool(true),
        Func::False => Value::Bool(false),
        Func::Items => {
            let Value::Object(map) = &values[0] else {
                return Err(type_error(name, 0, 1, "of type 'Object'", &values[0]));
            };
            // Keys come out sorted, as the docs' example shows (item001 before item002).
            Value::Array(
                map.iter()
                    .map(|(key, value)| serde_json::json!({"key": key, "value": value}))
                    .collect(),
            )
        }
        Func::DateTimeAdd => {
            let base = args.str(0)?;
            let parsed = DateTime::parse_iso(base).ok_or_else(|| {
                invalid_argument(name, &format!("the first parameter '{base}' is not a valid ISO8601 datetime string."))
            })?;
            let duration = args.str(1)?;
            let moved = parsed.add_duration(duration).ok_or_else(|| {
                EvalError::new(format!(
                    "The template function '{name}' has an invalid parameter. The second parameter '{duration}' is not a valid ISO8601 Duration string. Please see https://aka.ms/arm-syntax-functions ."
                ))
            })?;
            let format = args.opt_str(2)?.unwrap_or("yyyy-MM-ddTHH:mm:ssZ");
            moved.format(format).map_err(|error| invalid_argument(name, &error.message))?.into()
        }
        Func::DateTimeFromEpoch => DateTime::from_unix(args.int(0)?)
            .format("yyyy-MM-ddTHH:mm:ssZ")
            .map_err(|error| invalid_argument(name, &error.message))?
            .into(),
        Func::DateTimeToEpoch => {
            let text = args.str(0)?;
            let parsed = DateTime::parse_iso(text).ok_or_else(|| {
                invalid_argument(name, &format!("the parameter '{text}' is not a valid ISO8601 datetime string."))
            })?;
            parsed.unix().into()
        }
    })
}

fn default_value_only(name: &str) -> EvalError {
    EvalError::new(format!(
        "The template function '{name}' is not expected at this location. The function can only be used with parameter default value expressions. {EXPRESSIONS_LINK}"
    ))
}

fn lower(text: &str) -> String {
    text.to_lowercase()
}

fn parse_json(name: &str, text: &str) -> EvalResult<Value> {
    crate::json::parse_lenient(text)
        .map(|node| node.to_value())
        .map_err(|error| {
            invalid_argument(
                name,
                &format!("the argument is not valid JSON: {}", error.message),
            )
        })
}

fn concat(args: &Args) -> EvalResult<Value> {
    let arrays = args.values.iter().any(Value::is_array);
    if arrays {
        let mut out = Vec::new();
        for (index, value) in args.values.iter().enumerate() {
            match value {
                Value::Array(items) => out.extend(items.iter().cloned()),
                Value::Null => {}
                other => {
                    return Err(type_error(
                        args.name,
                        index,
                        args.values.len(),
                        "of type 'Array' like the other parameters",
                        other,
                    ))
                }
            }
        }
        return Ok(Value::Array(out));
    }
    let mut out = String::new();
    for (index, value) in args.values.iter().enumerate() {
        match value {
            Value::Object(_) => {
                return Err(type_error(
                    args.name,
                    index,
                    args.values.len(),
                    "a string or an array",
                    value,
                ))
            }
            other => out.push_str(&dotnet::to_dotnet_string(other)),
        }
    }
    Ok(out.into())
}

/// `union`: arrays keep the first occurrence of each value; objects merge, later values
/// win, and nested objects merge recursively while nested arrays are replaced (the docs'
/// "deep merge" example).
fn union(args: &Args) -> EvalResult<Value> {
    match &args.values[0] {
        Value::Array(_) => {
            let mut out: Vec<Value> = Vec::new();
            for (index, value) in args.values.iter().enumerate() {
                let Value::Array(items) = value else {
                    return Err(type_error(
                        args.name,
                        index,
                        args.values.len(),
                        "of type 'Array'",
                        value,
                    ));
                };
                for item in items {
                    if !out.contains(item) {
                        out.push(item.clone());
                    }
                }
            }
            Ok(Value::Array(out))
        }
        Value::Object(_) => {
            let mut out = Map::new();
            for (index, value) in args.values.iter().enumerate() {
                let Value::Object(map) = value else {
                    return Err(type_error(
                        args.name,
                        index,
                        args.values.len(),
                        "of type 'Object'",
                        value,
                    ));
                };
                merge_objects(&mut out, map);
            }
            Ok(Value::Object(out))
        }
        other => Err(type_error(
            args.name,
            0,
            args.values.len(),
            "an array or an object",
            other,
        )),
    }
}

fn merge_objects(into: &mut Map<String, Value>, from: &Map<String, Value>) {
    for (key, value) in from {
        match (into.get_mut(key), value) {
            (Some(Value::Object(existing)), Value::Object(incoming)) => {
                merge_objects(existing, incoming)
            }
            _ => {
                into.insert(key.clone(), value.clone());
            }
        }
    }
}

fn intersection(args: &Args) -> EvalResult<Value> {
    match &args.values[0] {
        Value::Array(first) => {
            let mut out: Vec<Value> = Vec::new();
            for item in first {
                let everywhere = args.values[1..].iter().all(|other| match other {
                    Value::Array(items) => items.contains(item),
                    _ => false,
                });
                if everywhere && !out.contains(item) {
                    out.push(item.clone());
                }
            }
            for (index, value) in args.values.iter().enumerate() {
                if !value.is_array() {
                    return Err(type_error(
                        args.name,
                        index,
                        args.values.len(),
                        "of type 'Array'",
                        value,
                    ));
                }
            }
            Ok(Value::Array(out))
        }
        Value::Object(first) => {
            let mut out = Map::new();
            for (index, value) in args.values.iter().enumerate() {
                if !value.is_object() {
                    return Err(type_error(
                        args.name,
                        index,
                        args.values.len(),
                        "of type 'Object'",
                        value,
                    ));
                }
            }
            for (key, value) in first {
                let everywhere = args.values[1..]
                    .iter()
                    .all(|other| other.get(key) == Some(value));
                if everywhere {
                    out.insert(key.clone(), value.clone());
                }
            }
            Ok(Value::Object(out))
        }
        other => Err(type_error(
            args.name,
            0,
            args.values.len(),
            "an array or an object",
            other,
        )),
    }
}

/// Orders two integers, two numbers or two strings. Strings compare as .NET's invariant
/// culture does, which the docs' example shows: `greater('A', 'a')` is true, so letters
/// order alphabetically first and a lowercase letter before its uppercase form.
fn compare(name: &str, left: &Value, right: &Value) -> EvalResult<std::cmp::Ordering> {
    match (left, right) {
        (Value::Number(a), Value::Number(b)) => {
            if let (Some(a), Some(b)) = (a.as_i64(), b.as_i64()) {
                Ok(a.cmp(&b))
            } else {
                let (a, b) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
                Ok(a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal))
            }
        }
        (Value::String(a), Value::String(b)) => Ok(compare_culture(a, b)),
        (Value::Number(_) | Value::String(_), other) => Err(type_error(
            name,
            1,
            2,
            &format!("of type '{}' like the first parameter", type_name(left)),
            other,
        )),
        (other, _) => Err(type_error(name, 0, 2, "an integer or a string", other)),
    }
}

fn compare_culture(left: &str, right: &str) -> std::cmp::Ordering {
    let primary = left.to_lowercase().cmp(&right.to_lowercase());
    if primary != std::cmp::Ordering::Equal {
        return primary;
    }
    for (a, b) in left.chars().zip(right.chars()) {
        if a != b {
            // Same letter, different case: lowercase sorts first.
            return if a.is_lowercase() {
                std::cmp::Ordering::Less
            } else {
                std::cmp::Ordering::Greater
            };
        }
    }
    left.len().cmp(&right.len())
}

/// `String.Split(delimiters, None)`: empty entries are kept.
fn split(text: &str, delimiters: &[String]) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut rest = text;
    'outer: while !rest.is_empty() {
        for delimiter in delimiters.iter().filter(|delimiter| !delimiter.is_empty()) {
            if let Some(after) = rest.strip_prefix(delimiter.as_str()) {
                parts.push(std::mem::take(&mut current));
                rest = after;
                continue 'outer;
            }
        }
        let mut characters = rest.chars();
        if let Some(character) = characters.next() {
            current.push(character);
        }
        rest = characters.as_str();
    }
    parts.push(current);
    parts
}

fn resource_id(args: &Args, ctx: &Ctx) -> EvalResult<String> {
    let strings = args.strings()?;
    let scope = ctx.env.scope();
    let type_at = strings
        .iter()
        .position(|arg| arg.contains('/'))
        .unwrap_or(0);
    let (subscription, group) = match type_at {
        0 => (
            scope.subscription_id.as_str(),
            scope.resource_group.as_ref().map(|group| group.name.as_str()),
        ),
        1 => (scope.subscription_id.as_str(), Some(strings[0])),
        2 => (strings[0], Some(strings[1])),
        _ => {
            return Err(invalid_argument(
                args.name,
                "only the subscription id and the resource group name may come before the resource type.",
            ))
        }
    };
    let path = provider_path(args.name, strings[type_at], &strings[type_at + 1..])?;
    Ok(match group {
        Some(group) => {
            format!("/subscriptions/{subscription}/resourceGroups/{group}/providers/{path}")
        }
        None => format!("/subscriptions/{subscription}/providers/{path}"),
    })
}

/// `{namespace}/{type1}/{name1}/{type2}/{name2}` from a type and its names, one name per
/// type segment after the namespace (names may also be given joined with `/`).
pub(crate) fn provider_path(
    function: &str,
    resource_type: &str,
    names: &[&str],
) -> EvalResult<String> {
    let type_segments: Vec<&str> = resource_type.split('/').collect();
    let name_segments: Vec<&str> = names.iter().flat_map(|name| name.split('/')).collect();
    if type_segments.len() < 2 || name_segments.len() != type_segments.len() - 1 {
        return Err(EvalError::new(format!(
            "Unable to evaluate template language function '{function}': the type '{resource_type}' requires '{}' resource name argument(s). Please see https://aka.ms/arm-template-expressions/#{} for usage details.",
            type_segments.len().saturating_sub(1),
            function.to_ascii_lowercase()
        )));
    }
    let mut path = type_segments[0].to_string();
    for (segment, name) in type_segments[1..].iter().zip(name_segments) {
        path.push('/');
        path.push_str(segment);
        path.push('/');
        path.push_str(name);
    }
    Ok(path)
}

fn copy_index(args: &Args, ctx: &Ctx) -> EvalResult<Value> {
    let (loop_name, offset) = match args.values.as_slice() {
        [] => (None, 0),
        [Value::Number(_)] => (None, args.int(0)?),
        [Value::String(name)] => (Some(name.as_str()), 0),
        [Value::String(name), _] => (Some(name.as_str()), args.int(1)?),
        [other, ..] => {
            return Err(type_error(
                args.name,
                0,
                args.values.len(),
                "a loop name or an integer offset",
                other,
            ))
        }
    };
    let frame = match loop_name {
        // Without a name, copyIndex() is the resource's (or output's) own loop: property and
        // variable loops must be named (learn.microsoft.com, "Numeric functions", copyIndex).
        None => ctx
            .copies
            .iter()
            .rev()
            .find(|frame| matches!(frame.kind, CopyKind::Resource | CopyKind::Output)),
        Some(name) => ctx
            .copies
            .iter()
            .rev()
            .find(|frame| frame.name.eq_ignore_ascii_case(name)),
    };
    match frame {
        Some(frame) => Ok((frame.index + offset).into()),
        None if loop_name.is_some() && !ctx.copies.is_empty() => Err(EvalError::new(format!(
            "The template function 'copyIndex' has an invalid parameter: the copy loop '{}' is not found. Please see https://aka.ms/arm-copy for usage details.",
            loop_name.unwrap_or_default()
        ))),
        None => Err(EvalError::new(format!(
            "The template function '{}' is not expected at this location. The function can only be used in a resource with copy specified. Please see https://aka.ms/arm-copy for usage details.",
            args.name
        ))),
    }
}

/// `Uri.EscapeDataString`: everything but RFC 3986's unreserved characters is escaped.
fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            if let Some(value) = text
                .get(index + 1..index + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            {
                out.push(value);
                index += 3;
                continue;
            }
        }
        out.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `uri(base, relative)`: RFC 3986 section 5 reference resolution, as the docs describe.
fn resolve_uri(base: &str, relative: &str) -> String {
    if relative.contains("://") {
        return relative.to_string();
    }
    let authority_end = match base.find("://") {
        Some(scheme_end) => base[scheme_end + 3..]
            .find('/')
            .map_or(base.len(), |slash| scheme_end + 3 + slash),
        None => 0,
    };
    let root = &base[..authority_end];
    if let Some(absolute) = relative.strip_prefix('/') {
        return format!("{root}/{absolute}");
    }
    let path = &base[authority_end..];
    let directory = match path.rfind('/') {
        Some(slash) => &path[..=slash],
        None => "/",
    };
    let mut segments: Vec<&str> = Vec::new();
    let joined = format!("{directory}{relative}");
    let trailing = joined.ends_with('/') || joined.ends_with("/.") || joined.ends_with("/..");
    for segment in joined.split('/').filter(|segment| !segment.is_empty()) {
        match segment {
            "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let mut out = format!("{root}/{}", segments.join("/"));
    if trailing && !out.ends_with('/') {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        eval::{CopyFrame, Env},
        plan::{Resolver, ResourceGroupInfo, Scope},
    };
    use serde_json::json;

    /// An environment with the docs' example parameters and a fixed scope.
    struct TestEnv {
        scope: Scope,
        parameters: Map<String, Value>,
    }

    impl Env for TestEnv {
        fn scope(&self) -> &Scope {
            &self.scope
        }
        fn parameter(&self, name: &str) -> EvalResult<Value> {
            self.parameters.get(name).cloned().ok_or_else(|| {
                EvalError::new(format!("The template parameter '{name}' is not found."))
            })
        }
        fn variable(&self, name: &str) -> EvalResult<Value> {
            self.parameter(name)
        }
        fn deployment(&self) -> Value {
            json!({"name": "deployment"})
        }
        fn resolve_resource(&self, name_or_id: &str) -> EvalResult<(String, Option<String>)> {
            Ok((name_or_id.to_string(), None))
        }
        fn resolver(&self) -> Option<&dyn Resolver> {
            None
        }
        fn new_guid(&self) -> Option<String> {
            Some("b76a51fc-bd72-4a77-b9a2-3c29e7d2e551".into())
        }
        fn utc_now(&self) -> Option<i64> {
            Some(1_551_808_398)
        }
    }

    fn env() -> TestEnv {
        TestEnv {
            scope: Scope {
                tenant_id: "00000000-0000-0000-0000-000000000000".into(),
                subscription_id: "11111111-1111-1111-1111-111111111111".into(),
                subscription_display_name: "Example".into(),
                resource_group: Some(ResourceGroupInfo {
                    name: "examplegroup".into(),
                    location: "southcentralus".into(),
                    tags: Value::Null,
                }),
                deployment_name: "deployment".into(),
                deployment_location: None,
                environment: json!({"name": "AzureCloud"}),
            },
            parameters: json!({
                "stringToTest": "OneTwoThree",
                "objectToTest": {"one": "a", "two": "b", "three": "c"},
                "arrayToTest": ["one", "two", "three"],
                "firstObject": {"one": "a", "two": "b", "three": "c1"},
                "secondObject": {"three": "c2", "four": "d", "five": "e"},
                "nullsObject": {"null1": null, "null2": null, "string": "default", "int": 1, "object": {"first": "default"}, "array": [1]},
                "numbers": [0, 3, 2, 5, 4],
                "entities": {"item002": {"enabled": false}, "item001": {"enabled": true}},
            })
            .as_object()
            .cloned()
            .unwrap(),
        }
    }

    fn eval_in(expression: &str, phase: Phase, copies: &[CopyFrame]) -> EvalResult<Value> {
        let env = env();
        let expr = crate::parse::parse(expression)?;
        let ctx = Ctx {
            env: &env,
            phase,
            copies,
        };
        eval::eval(&expr, &ctx)
    }

    /// Evaluates one expression (without the brackets) and compares with the expected value.
    fn check(expression: &str, expected: Value) {
        match eval_in(expression, Phase::Body, &[]) {
            Ok(value) => assert_eq!(value, expected, "{expression}"),
            Err(error) => panic!("{expression}: {}", error.message),
        }
    }

    fn check_error(expression: &str, expected: &str) {
        let error = eval_in(expression, Phase::Body, &[]).unwrap_err();
        assert!(
            error.message.contains(expected),
            "{expression}: {}",
            error.message
        );
    }

    #[test]
    fn string_functions() {
        // Rows from learn.microsoft.com "String functions for ARM templates".
        check("base64('one, two, three')", json!("b25lLCB0d28sIHRocmVl"));
        check(
            "base64ToString('b25lLCB0d28sIHRocmVl')",
            json!("one, two, three"),
        );
        check(
            "base64ToJson(base64('{''one'': ''a'', ''two'': ''b''}'))",
            json!({"one": "a", "two": "b"}),
        );
        check(
            "dataUri('Hello')",
            json!("data:text/plain;charset=utf8;base64,SGVsbG8="),
        );
        check(
            "dataUriToString('data:;base64,SGVsbG8sIFdvcmxkIQ==')",
            json!("Hello, World!"),
        );
        check("concat('prefix', '-', 'x')", json!("prefix-x"));
        check("contains(parameters('stringToTest'), 'e')", json!(true));
        check("contains(parameters('stringToTest'), 'z')", json!(false));
        check("endsWith('abcdef', 'ef')", json!(true));
        check("endsWith('abcdef', 'F')", json!(true));
        check("endsWith('abcdef', 'e')", json!(false));
        check("startsWith('abcdef', 'ab')", json!(true));
        check("startsWith('abcdef', 'A')", json!(true));
        check("startsWith('abcdef', 'e')", json!(false));
        check("first('One Two Three')", json!("O"));
        check("last('One Two Three')", json!("e"));
        check(
            "format('{0}, {1}. Formatted number: {2:N0}', 'Hello', 'User', 8175133)",
            json!("Hello, User. Formatted number: 8,175,133"),
        );
        check("indexOf('test', 't')", json!(0));
        check("lastIndexOf('test', 't')", json!(3));
        check("indexOf('abcdef', 'CD')", json!(2));
        check("lastIndexOf('abcdef', 'AB')", json!(0));
        check("indexOf('abcdef', 'z')", json!(-1));
        check("length('One Two Three')", json!(13));
        check("padLeft('123', 10, '0')", json!("0000000123"));
        check("padLeft(123, 5)", json!("  123"));
        check_error("padLeft('a', 100000000)", "must not exceed");
        check_error(
            "format('{0,100000000}', 1)",
            "Input string was not in a correct format.",
        );
        check("replace('123-123-1234', '-', '')", json!("1231231234"));
        check(
            "replace('123-123-1234', '1234', 'xxxx')",
            json!("123-123-xxxx"),
        );
        check("skip('one two three', 4)", json!("two three"));
        check(
            "split('one,two,three', ',')",
            json!(["one", "two", "three"]),
        );
        check(
            "split('one;two,three', createArray(',', ';'))",
            json!(["one", "two", "three"]),
        );
        check(
            "string(json('{\"valueA\": 10, \"valueB\": \"Example Text\"}'))",
            json!("{\"valueA\":10,\"valueB\":\"Example Text\"}"),
        );
        check(
            "string(createArray('a', 'b', 'c'))",
            json!("[\"a\",\"b\",\"c\"]"),
        );
        check("string(5)", json!("5"));
        check("string(true)", json!("True"));
        check("substring('one two three', 4, 3)", json!("two"));
        check("take('one two three', 2)", json!("on"));
        check("toLower('One Two Three')", json!("one two three"));
        check("toUpper('One Two Three')", json!("ONE TWO THREE"));
        check("trim('    one two three   ')", json!("one two three"));
        check(
            "uri('http://contoso.com/resources/', 'nested/azuredeploy.json')",
            json!("http://contoso.com/resources/nested/azuredeploy.json"),
        );
        check(
            "uri('http://contoso.org/firstpath', 'myscript.sh')",
            json!("http://contoso.org/myscript.sh"),
        );
        check(
            "uri('http://contoso.org/firstpath/', 'myscript.sh')",
            json!("http://contoso.org/firstpath/myscript.sh"),
        );
        check(
            "uri('http://contoso.org/firstpath/azuredeploy.json', 'myscript.sh')",
            json!("http://contoso.org/firstpath/myscript.sh"),
        );
        check(
            "uri('http://contoso.org/firstpath/azuredeploy.json/', 'myscript.sh')",
            json!("http://contoso.org/firstpath/azuredeploy.json/myscript.sh"),
        );
        check(
            "uriComponent('http://contoso.com/resources/nested/azuredeploy.json')",
            json!("http%3A%2F%2Fcontoso.com%2Fresources%2Fnested%2Fazuredeploy.json"),
        );
        check("uriComponentToString('http%3A%2F%2Fcontoso.com%2Fresources%2Fnested%2Fazuredeploy.json')", json!("http://contoso.com/resources/nested/azuredeploy.json"));
        check(
            "join(createArray('one', 'two', 'three'), ',')",
            json!("one,two,three"),
        );
        check(
            "join(createArray('one', 'two', 'three'), ';')",
            json!("one;two;three"),
        );
        check("uniqueString('test')", json!("rbgf3xv4ufgzg"));
        check(
            "guid('hello', 'world')",
            json!("a5b868f8-11fe-567a-ace0-e77cc87f104e"),
        );
        check_error(
            "substring('1234567890', 0, 11)",
            "The index and length parameters must refer to a location within the string. The index parameter: '0', the length parameter: '11', the length of the string parameter: '10'.",
        );
        check_error("toLower(1)", "The template language function 'toLower' expects its parameter to be of type 'String'. The provided value is of type 'Integer'.");
    }

    #[test]
    fn array_and_object_functions() {
        // Rows from "Array functions" and "Object functions".
        check("array(1)", json!([1]));
        check("array('efgh')", json!(["efgh"]));
        check(
            "array(json('{\"a\": \"b\", \"c\": \"d\"}'))",
            json!([{"a": "b", "c": "d"}]),
        );
        check(
            "concat(createArray('1-1', '1-2', '1-3'), createArray('2-1', '2-2', '2-3'))",
            json!(["1-1", "1-2", "1-3", "2-1", "2-2", "2-3"]),
        );
        check("contains(parameters('objectToTest'), 'one')", json!(true));
        check("contains(parameters('objectToTest'), 'ONE')", json!(true));
        check("contains(parameters('objectToTest'), 'a')", json!(false));
        check("contains(parameters('arrayToTest'), 'three')", json!(true));
        check("contains(parameters('arrayToTest'), 'four')", json!(false));
        check("createArray('a', 'b', 'c')", json!(["a", "b", "c"]));
        check("createArray(1, 2, 3)", json!([1, 2, 3]));
        check(
            "createArray(parameters('arrayToTest'))",
            json!([["one", "two", "three"]]),
        );
        check("createArray()", json!([]));
        check("empty(createArray())", json!(true));
        check("empty(json('{}'))", json!(true));
        check("empty('')", json!(true));
        check("first(parameters('arrayToTest'))", json!("one"));
        check("last(parameters('arrayToTest'))", json!("three"));
        check("intersection(json('{\"one\": \"a\", \"two\": \"b\", \"three\": \"c\"}'), json('{\"one\": \"a\", \"two\": \"z\", \"three\": \"c\"}'))", json!({"one": "a", "three": "c"}));
        check(
            "intersection(parameters('arrayToTest'), createArray('two', 'three'))",
            json!(["two", "three"]),
        );
        check("length(parameters('arrayToTest'))", json!(3));
        check("length(json('{\"propA\": \"one\", \"propB\": \"two\", \"propC\": \"three\", \"propD\": {\"propD-1\": \"sub\", \"propD-2\": \"sub\"}}'))", json!(4));
        check("max(parameters('numbers'))", json!(5));
        check("max(0,3,2,5,4)", json!(5));
        check("min(parameters('numbers'))", json!(0));
        check("min(0,3,2,5,4)", json!(0));
        check("range(5, 3)", json!([5, 6, 7]));
        check("skip(parameters('arrayToTest'), 2)", json!(["three"]));
        check("take(parameters('arrayToTest'), 2)", json!(["one", "two"]));
        check(
            "union(parameters('firstObject'), parameters('secondObject'))",
            json!({"one": "a", "two": "b", "three": "c2", "four": "d", "five": "e"}),
        );
        check(
            "union(parameters('arrayToTest'), createArray('three', 'four'))",
            json!(["one", "two", "three", "four"]),
        );
        check(
            "union(json('{\"property\": {\"one\": \"a\", \"two\": \"b\", \"three\": \"c1\"}, \"nestedArray\": [1, 2]}'), json('{\"property\": {\"three\": \"c2\", \"four\": \"d\", \"five\": \"e\"}, \"nestedArray\": [3, 4]}'))",
            json!({"property": {"one": "a", "two": "b", "three": "c2", "four": "d", "five": "e"}, "nestedArray": [3, 4]}),
        );
        check(
            "union(json('[[\"one\", \"two\"], [\"three\"]]'), json('[[\"three\"], [\"four\", \"two\"]]'))",
            json!([["one", "two"], ["three"], ["four", "two"]]),
        );
        check("createObject('intProp', 1, 'stringProp', 'abc', 'boolProp', true(), 'arrayProp', createArray('a', 'b', 'c'), 'objectProp', createObject('key1', 'value1'))", json!({"intProp": 1, "stringProp": "abc", "boolProp": true, "arrayProp": ["a", "b", "c"], "objectProp": {"key1": "value1"}}));
        check(
            "items(parameters('entities'))",
            json!([{"key": "item001", "value": {"enabled": true}}, {"key": "item002", "value": {"enabled": false}}]),
        );
        check("empty(json('null'))", json!(true));
        check("json('{\"a\": \"b\"}')", json!({"a": "b"}));
        check("json('\"test\"')", json!("test"));
        check("json('true')", json!(true));
        check("json('3')", json!(3));
        check("json('[1,2,3 ]')", json!([1, 2, 3]));
        check(
            "json(concat('{\"a\": \"', 'demo value', '\"}'))",
            json!({"a": "demo value"}),
        );
        check("empty(null())", json!(true));
        check_error("range(0, 10001)", "non-negative integer up to 10000");
        check_error("createObject('a')", "even number of arguments");
    }

    #[test]
    fn comparison_and_logical_functions() {
        // Rows from "Comparison functions" and "Logical functions".
        check("coalesce(parameters('nullsObject').null1, parameters('nullsObject').null2, parameters('nullsObject').string)", json!("default"));
        check("coalesce(parameters('nullsObject').null1, parameters('nullsObject').null2, parameters('nullsObject').int)", json!(1));
        check("coalesce(parameters('nullsObject').null1, parameters('nullsObject').null2, parameters('nullsObject').object)", json!({"first": "default"}));
        check("coalesce(parameters('nullsObject').null1, parameters('nullsObject').null2, parameters('nullsObject').array)", json!([1]));
        check(
            "empty(coalesce(parameters('nullsObject').null1, parameters('nullsObject').null2))",
            json!(true),
        );
        check("equals(1, 1)", json!(true));
        check("equals('a', 'a')", json!(true));
        check(
            "equals(createArray('a', 'b'), createArray('a', 'b'))",
            json!(true),
        );
        check(
            "equals(json('{\"a\": \"b\"}'), json('{\"a\": \"b\"}'))",
            json!(true),
        );
        check("not(equals(1, 2))", json!(true));
        check("greater(1, 2)", json!(false));
        check("greater('A', 'a')", json!(true));
        check("greaterOrEquals(1, 2)", json!(false));
        check("greaterOrEquals('A', 'a')", json!(true));
        check("less(1, 2)", json!(true));
        check("less('A', 'a')", json!(false));
        check("lessOrEquals(1, 2)", json!(true));
        check("lessOrEquals('A', 'a')", json!(false));
        check("and(bool('true'), true())", json!(true));
        check("or(bool(1), false())", json!(true));
        check("not(true)", json!(false));
        check("bool('false')", json!(false));
        check("bool(0)", json!(false));
        check("if(equals('a', 'a'), 'yes', 'no')", json!("yes"));
        check("true()", json!(true));
        check("false()", json!(false));
        // `if` evaluates only the chosen branch, so the failing one is never reached.
        check("if(true, 'safe', parameters('missing'))", json!("safe"));
        check("or(true, parameters('missing'))", json!(true));
        check_error(
            "if(1, 'a', 'b')",
            "expects its first parameter to be of type 'Boolean'",
        );
    }

    #[test]
    fn numeric_functions() {
        // Rows from "Numeric functions".
        check("add(5, 3)", json!(8));
        check("sub(7, 3)", json!(4));
        check("mul(5, 3)", json!(15));
        check("div(8, 3)", json!(2));
        check("mod(7, 3)", json!(1));
        check("int('4')", json!(4));
        check("float('3.0')", json!(3.0));
        check_error("div(1, 0)", "must not be zero");
        let frames = [CopyFrame {
            kind: CopyKind::Resource,
            name: "websitescopy".into(),
            index: 2,
        }];
        assert_eq!(
            eval_in("concat('examplecopy-', copyIndex())", Phase::Body, &frames).unwrap(),
            json!("examplecopy-2")
        );
        assert_eq!(
            eval_in("copyIndex(1)", Phase::Body, &frames).unwrap(),
            json!(3)
        );
        assert_eq!(
            eval_in("copyIndex('websitescopy', 10)", Phase::Body, &frames).unwrap(),
            json!(12)
        );
        assert!(eval_in("copyIndex()", Phase::Body, &[])
            .unwrap_err()
            .message
            .contains("can only be used in a resource with copy specified"));
    }

    #[test]
    fn scope_and_deployment_functions() {
        check(
            "resourceGroup().id",
            json!(
                "/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/examplegroup"
            ),
        );
        check("resourceGroup().location", json!("southcentralus"));
        check(
            "subscription().subscriptionId",
            json!("11111111-1111-1111-1111-111111111111"),
        );
        check(
            "subscription().tenantId",
            json!("00000000-0000-0000-0000-000000000000"),
        );
        check(
            "tenant().id",
            json!("/tenants/00000000-0000-0000-0000-000000000000"),
        );
        check("deployment().name", json!("deployment"));
        check("environment().name", json!("AzureCloud"));
        check(
            "uniqueString(subscription().subscriptionId)",
            json!(hash::unique_string(&[
                "11111111-1111-1111-1111-111111111111"
            ])),
        );
    }

    #[test]
    fn resource_id_functions() {
        // The docs' resourceId example outputs, with the current subscription 1111....
        check("resourceId('Microsoft.Storage/storageAccounts', 'examplestorage')", json!("/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/examplegroup/providers/Microsoft.Storage/storageAccounts/examplestorage"));
        check("resourceId('otherResourceGroup', 'Microsoft.Storage/storageAccounts', 'examplestorage')", json!("/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/otherResourceGroup/providers/Microsoft.Storage/storageAccounts/examplestorage"));
        check("resourceId('22222222-2222-2222-2222-222222222222', 'otherResourceGroup', 'Microsoft.Storage/storageAccounts', 'examplestorage')", json!("/subscriptions/22222222-2222-2222-2222-222222222222/resourceGroups/otherResourceGroup/providers/Microsoft.Storage/storageAccounts/examplestorage"));
        check("resourceId('Microsoft.SQL/servers/databases', 'serverName', 'databaseName')", json!("/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/examplegroup/providers/Microsoft.SQL/servers/serverName/databases/databaseName"));
        check("subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'acdd72a7-3385-48ef-bd42-f606fba81ae7')", json!("/subscriptions/11111111-1111-1111-1111-111111111111/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7"));
        check(
            "tenantResourceId('Microsoft.Authorization/policyDefinitions', 'abc')",
            json!("/providers/Microsoft.Authorization/policyDefinitions/abc"),
        );
        check("extensionResourceId(resourceGroup().id, 'Microsoft.Authorization/locks', 'lock1')", json!("/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/examplegroup/providers/Microsoft.Authorization/locks/lock1"));
        check_error("resourceId('Microsoft.Network/virtualNetworks/subnets', 'vnet')", "the type 'Microsoft.Network/virtualNetworks/subnets' requires '2' resource name argument(s)");
    }

    #[test]
    fn date_functions() {
        let default = |expression: &str| eval_in(expression, Phase::ParameterDefault, &[]).unwrap();
        // The docs' utcNow() example, at 2019-03-05T17:53:18Z.
        assert_eq!(default("utcNow()"), json!("20190305T175318Z"));
        assert_eq!(default("utcNow('d')"), json!("03/05/2019"));
        assert_eq!(default("utcNow('M d')"), json!("3 5"));
        assert_eq!(
            default("newGuid()"),
            json!("b76a51fc-bd72-4a77-b9a2-3c29e7d2e551")
        );
        check(
            "dateTimeAdd('2020-04-07 14:53:14Z', 'P3Y')",
            json!("2023-04-07T14:53:14Z"),
        );
        check(
            "dateTimeAdd('2020-04-07 14:53:14Z', '-P9D')",
            json!("2020-03-29T14:53:14Z"),
        );
        check(
            "dateTimeAdd('2020-04-07 14:53:14Z', 'PT1H', 'u')",
            json!("2020-04-07 15:53:14Z"),
        );
        check(
            "dateTimeFromEpoch(1683040573)",
            json!("2023-05-02T15:16:13Z"),
        );
        check("dateTimeToEpoch('2023-05-02T15:16:13Z')", json!(1683040573));
        check_error(
            "utcNow()",
            "can only be used with parameter default value expressions",
        );
        check_error(
            "newGuid()",
            "The template function 'newGuid' is not expected at this location.",
        );
        check_error(
            "dateTimeAdd('2020-04-07T00:00:00Z', 'PTASDIONS1D')",
            "is not a valid ISO8601 Duration string",
        );
    }

    #[test]
    fn accessors() {
        check("parameters('objectToTest').ONE", json!("a"));
        check("parameters('objectToTest')['two']", json!("b"));
        check("parameters('arrayToTest')[1]", json!("two"));
        check_error("parameters('objectToTest').four", "The language expression property 'four' doesn't exist, available properties are 'one, three, two'.");
        check_error(
            "parameters('arrayToTest')[3]",
            "The language expression property array index '3' is out of bounds.",
        );
    }

    #[test]
    fn phases() {
        assert_eq!(
            eval_in("variables('x')", Phase::ParameterDefault, &[]).unwrap_err().message,
            "The template function 'variables' is not expected at this location. Please see https://aka.ms/arm-template-expressions for usage details."
        );
        assert!(eval_in("reference('x')", Phase::Plan, &[])
            .unwrap_err()
            .message
            .contains("'reference' is not expected at this location"));
        assert!(eval_in("listKeys('x', '2019-06-01')", Phase::Plan, &[])
            .unwrap_err()
            .message
            .contains("'listKeys' is not expected at this location"));
    }
}
