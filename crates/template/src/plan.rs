//! Planning a deployment: parameters are bound and checked, variables evaluated, copy loops
//! and conditions expanded, and every resource instance gets its full ARM id, type, name,
//! api version, location and dependencies; then the dependency graph is checked for cycles
//! and cut into levels the engine can run concurrently (Terraform's `dag` walk, in
//! STYLE.md's terms).
//!
//! Evaluation has two phases because ARM's does: what decides *which* resources exist
//! (names, types, conditions, copy counts, `dependsOn`) is evaluated here, where `reference`
//! and `list*` are refused as ARM refuses them; resource bodies and outputs are evaluated
//! late, through `Plan::resource_body` and `Plan::outputs`, once the resources they
//! reference exist, with a `Resolver` that reads them (learn.microsoft.com "Resource
//! functions": reference "can only be used in the outputs section of a template or deployment
//! and properties object of a resource definition").
//!
//! Dependencies follow "Define the order for deploying resources in ARM templates": explicit
//! `dependsOn` by name, by `type/name`, by resource id or by copy loop name; implicit ones
//! from nesting and from `reference()`/`list*()` calls whose target is a template resource
//! (ARM documents the implicit dependency for references by name; openmi also adds it for a
//! resource id that names a template resource, since the reference could not succeed
//! otherwise); a dependency on a resource whose condition is false is dropped ("Conditional
//! deployment in ARM templates").

use std::{cell::RefCell, collections::HashMap};

use serde_json::{Map, Value};

use crate::{
    error::{EvalError, EvalResult, Pos, TemplateError},
    eval::{copy_count, CopyFrame, CopyKind, Ctx, Env, Phase, TNode},
    template::{
        parameter_error, resource_error, template_error, variable_error, ParameterDef, ResourceDef,
        Template, VariableValue,
    },
};

/// Where the deployment happens, as the engine knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Scope {
    pub tenant_id: String,
    pub subscription_id: String,
    pub subscription_display_name: String,
    /// `None` for a subscription-scope deployment.
    pub resource_group: Option<ResourceGroupInfo>,
    pub deployment_name: String,
    /// The deployment's own location (subscription-scope deployments have one).
    pub deployment_location: Option<String>,
    /// What `environment()` returns (the cloud's endpoints).
    pub environment: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResourceGroupInfo {
    pub name: String,
    pub location: String,
    pub tags: Value,
}

/// What the request supplies besides the template.
pub struct Inputs<'a> {
    /// The request's `properties.parameters`: `{"name": {"value": ...}}`.
    pub parameters: Map<String, Value>,
    /// The time `utcNow()` reports, in seconds since 1970 (UTC).
    pub utc_now_unix: i64,
    /// Called once per `newGuid()` in a parameter default value.
    pub new_guid: &'a mut dyn FnMut() -> String,
}

/// Reads deployed resources for `reference()` and calls `list*` actions, for late evaluation.
/// Errors are ARM's messages (for example the ResourceNotFound text).
pub trait Resolver {
    /// The resource's `properties`, or with `full` the whole resource (`identity`, `location`,
    /// ...). `api_version` is `None` when the template gave none and the resource is not
    /// defined in it.
    fn reference(
        &self,
        resource_id: &str,
        api_version: Option<&str>,
        full: bool,
    ) -> Result<Value, String>;
    /// `POST {resource_id}/{function}?api-version={api_version}` with the optional body.
    fn list(
        &self,
        function: &str,
        resource_id: &str,
        api_version: &str,
        body: Option<&Value>,
    ) -> Result<Value, String>;
}

/// One resource instance of the deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedResource {
    /// The full ARM id, `/subscriptions/{s}/resourceGroups/{g}/providers/{ns}/{type}/{name}`.
    pub id: String,
    /// The full type, `Microsoft.Compute/virtualMachines/extensions` for a nested resource.
    pub resource_type: String,
    /// The full name, `vm1/ext1` for a nested resource.
    pub name: String,
    pub api_version: String,
    pub location: Option<String>,
    /// False when the resource's `condition` is false: it is not deployed (but a Complete
    /// mode deployment deletes it, as ARM does since api-version 2019-05-10).
    pub condition: bool,
    /// Indices into `Plan::resources` of the deployed resources this one waits for.
    pub depends_on: Vec<usize>,
    /// The copy loop and iteration, for resources in a `copy`.
    pub copy: Option<CopyInstance>,
    /// Where the resource is defined in the template.
    pub line: u32,
    pub column: u32,
    def: usize,
    frames: Vec<CopyFrame>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyInstance {
    pub name: String,
    pub index: i64,
}

/// A planned deployment: the resources, their order, and what late evaluation needs.
#[derive(Debug, Clone)]
pub struct Plan {
    template: Template,
    scope: Scope,
    request_parameters: Map<String, Value>,
    parameters: HashMap<String, Value>,
    variables: HashMap<String, Value>,
    resources: Vec<PlannedResource>,
    levels: Vec<Vec<usize>>,
    lookup: Lookup,
}

/// Plans `template` for `scope` with the request's `inputs`.
pub fn plan(template: &Template, scope: &Scope, inputs: Inputs) -> Result<Plan, TemplateError> {
    let model = &template.inner;
    let request_parameters = inputs.parameters.clone();
    let parameters = bind_parameters(template, scope, inputs)?;
    let planner = PlanEnv {
        template,
        scope,
        parameters: &parameters,
        request_parameters: &request_parameters,
        variables: RefCell::new(HashMap::new()),
    };
    let mut resources: Vec<PlannedResource> = Vec::new();
    // For each definition, its instances (indices into `resources`), for nested children.
    let mut instances_of: Vec<Vec<usize>> = Vec::with_capacity(model.resources.len());
    // Instances of each copy loop, for `dependsOn` a loop and for serial mode.
    let mut loops: Vec<(usize, Vec<usize>)> = Vec::new();
    for (def_index, def) in model.resources.iter().enumerate() {
        let mut created = Vec::new();
        let parents: Vec<Option<usize>> = match def.parent {
            Some(parent) => instances_of[parent].iter().copied().map(Some).collect(),
            None => vec![None],
        };
        for parent in parents {
            let base_frames = match parent {
                Some(parent) => resources[parent].frames.clone(),
                None => Vec::new(),
            };
            let ctx = Ctx {
                env: &planner,
                phase: Phase::Plan,
                copies: &base_frames,
            };
            let count = match &def.copy {
                // ARM reports a bad count on its own, at the loop's position.
                Some(copy) => Some(copy_count(&copy.count, &ctx, copy.pos).map_err(|error| {
                    if error.message.starts_with("The template 'copy' definition") {
                        TemplateError::validation(&error.message, copy.pos)
                    } else {
                        resource_error(def, &error)
                    }
                })?),
                None => None,
            };
            let mut loop_members = Vec::new();
            for index in 0..count.unwrap_or(1) {
                let mut frames = base_frames.clone();
                if let Some(copy) = &def.copy {
                    frames.push(CopyFrame {
                        kind: CopyKind::Resource,
                        name: copy.name.clone(),
                        index,
                    });
                }
                let parent_resource = parent.map(|parent| &resources[parent]);
                let planned =
                    plan_instance(&planner, scope, def, def_index, frames, parent_resource)
                        .map_err(|error| match error {
                            InstanceError::Eval(error) => resource_error(def, &error),
                            InstanceError::Template(error) => error,
                        })?;
                loop_members.push(resources.len());
                created.push(resources.len());
                resources.push(planned);
            }
            if def.copy.is_some() {
                loops.push((def_index, loop_members));
            }
        }
        instances_of.push(created);
    }
    let lookup = Lookup::build(template, &resources);
    for index in 0..resources.len() {
        let dependencies = dependencies(
            &planner,
            template,
            &resources,
            &lookup,
            &loops,
            &instances_of,
            index,
        )?;
        resources[index].depends_on = dependencies;
    }
    let levels = levels(&resources)?;
    // Every variable is evaluated now, so late evaluation reads a finished table.
    for def in &model.variables {
        planner
            .variable(&def.name)
            .map_err(|error| variable_error(def, &error))?;
    }
    let variables = planner
        .variables
        .into_inner()
        .into_iter()
        .filter_map(|(name, slot)| match slot {
            Slot::Done(value) => Some((name, value)),
            Slot::Busy => None,
        })
        .collect();
    Ok(Plan {
        template: template.clone(),
        scope: scope.clone(),
        request_parameters,
        parameters,
        variables,
        resources,
        levels,
        lookup,
    })
}

enum InstanceError {
    Eval(EvalError),
    Template(TemplateError),
}

impl From<EvalError> for InstanceError {
    fn from(error: EvalError) -> Self {
        InstanceError::Eval(error)
    }
}

fn eval_string(node: &TNode, ctx: &Ctx, what: &str) -> EvalResult<String> {
    match node.eval(ctx)? {
        Value::String(text) => Ok(text),
        other => Err(EvalError::new(format!(
            "The resource '{what}' must be a string, not a value of type '{}'.",
            crate::eval::type_name(&other)
        ))),
    }
}

fn plan_instance(
    planner: &PlanEnv,
    scope: &Scope,
    def: &ResourceDef,
    def_index: usize,
    frames: Vec<CopyFrame>,
    parent: Option<&PlannedResource>,
) -> Result<PlannedResource, InstanceError> {
    let ctx = Ctx {
        env: planner,
        phase: Phase::Plan,
        copies: &frames,
    };
    let condition = match &def.condition {
        None => true,
        Some(condition) => match condition.eval(&ctx)? {
            Value::Bool(flag) => flag,
            Value::String(text) if text.eq_ignore_ascii_case("true") => true,
            Value::String(text) if text.eq_ignore_ascii_case("false") => false,
            other => {
                return Err(EvalError::new(format!(
                    "The resource 'condition' must be a boolean, not a value of type '{}'.",
                    crate::eval::type_name(&other)
                ))
                .into())
            }
        },
    };
    let short_type = eval_string(&def.resource_type, &ctx, "type")?;
    let short_name = eval_string(&def.name, &ctx, "name")?;
    let api_version = eval_string(&def.api_version, &ctx, "apiVersion")?;
    let location = match &def.location {
        None => None,
        Some(location) => match location.eval(&ctx)? {
            Value::Null => None,
            Value::String(text) => Some(text),
            other => {
                return Err(EvalError::new(format!(
                    "The resource 'location' must be a string, not a value of type '{}'.",
                    crate::eval::type_name(&other)
                ))
                .into())
            }
        },
    };
    if short_type.eq_ignore_ascii_case("Microsoft.Resources/deployments") {
        return Err(EvalError::new(
            "Resources of type 'Microsoft.Resources/deployments' (nested and linked templates) are not supported by this server; deploy the inner template as a deployment of its own",
        )
        .into());
    }
    // A nested resource written with a one-segment type is relative to its parent
    // (learn.microsoft.com "Set name and type for child resources").
    let (resource_type, name) = match parent {
        Some(parent) if !short_type.contains('/') => (
            format!("{}/{short_type}", parent.resource_type),
            format!("{}/{short_name}", parent.name),
        ),
        _ => (short_type, short_name),
    };
    let type_segments: Vec<&str> = resource_type.split('/').collect();
    let name_segments: Vec<&str> = name.split('/').collect();
    if type_segments.len() != name_segments.len() + 1 {
        return Err(InstanceError::Template(TemplateError::validation(
            &format!(
                "The template resource '{name}' for type '{resource_type}' {} has incorrect segment lengths. A nested resource type must have identical number of segments as its resource name. A root resource type must have segment length one greater than its resource name. Please see https://aka.ms/arm-syntax-resources for usage details.",
                def.pos
            ),
            def.pos,
        )));
    }
    let mut path = type_segments[0].to_string();
    for (segment, name) in type_segments[1..].iter().zip(&name_segments) {
        path.push('/');
        path.push_str(segment);
        path.push('/');
        path.push_str(name);
    }
    let extension_scope = match &def.scope {
        None => None,
        Some(node) => Some(eval_string(node, &ctx, "scope")?),
    };
    let deployment_scope = match &scope.resource_group {
        Some(group) => format!(
            "/subscriptions/{}/resourceGroups/{}",
            scope.subscription_id, group.name
        ),
        None => format!("/subscriptions/{}", scope.subscription_id),
    };
    let id = match extension_scope {
        // An extension resource: `{scope}/providers/{type}/{name}`; a relative scope is a
        // resource of the deployment's scope (`Microsoft.Storage/storageAccounts/st1`).
        Some(target) if target == "/" => format!("/providers/{path}"),
        Some(target) if target.starts_with('/') => {
            format!("{}/providers/{path}", target.trim_end_matches('/'))
        }
        Some(target) => format!(
            "{deployment_scope}/providers/{}/providers/{path}",
            target.trim_matches('/')
        ),
        None if scope.resource_group.is_none()
            && resource_type.eq_ignore_ascii_case("Microsoft.Resources/resourceGroups") =>
        {
            format!(
                "/subscriptions/{}/resourceGroups/{name}",
                scope.subscription_id
            )
        }
        None => format!("{deployment_scope}/providers/{path}"),
    };
    let copy = def.copy.as_ref().and_then(|copy| {
        frames
            .last()
            .filter(|frame| frame.kind == CopyKind::Resource)
            .map(|frame| CopyInstance {
                name: copy.name.clone(),
                index: frame.index,
            })
    });
    Ok(PlannedResource {
        id,
        resource_type,
        name,
        api_version,
        location,
        condition,
        depends_on: Vec::new(),
        copy,
        line: def.pos.line,
        column: def.pos.column,
        def: def_index,
        frames,
    })
}

/// ARM ids compare case-insensitively, and `.../providers/Microsoft.Resources/resourceGroups/x`
/// names the same group as `.../resourceGroups/x`.
fn normalize_id(id: &str) -> String {
    id.trim_end_matches('/').to_ascii_lowercase().replace(
        "/providers/microsoft.resources/resourcegroups/",
        "/resourcegroups/",
    )
}

/// The ways a template names its resources, for `dependsOn`, `reference` and `list*`.
#[derive(Debug, Clone, Default)]
struct Lookup {
    by_id: HashMap<String, Vec<usize>>,
    by_name: HashMap<String, Vec<usize>>,
    by_loop: HashMap<String, Vec<usize>>,
}

impl Lookup {
    fn build(template: &Template, resources: &[PlannedResource]) -> Lookup {
        let mut lookup = Lookup::default();
        for (index, resource) in resources.iter().enumerate() {
            lookup
                .by_id
                .entry(normalize_id(&resource.id))
                .or_default()
                .push(index);
            let type_and_name =
                format!("{}/{}", resource.resource_type, resource.name).to_ascii_lowercase();
            let relative = resource
                .id
                .rsplit_once("/providers/")
                .map(|(_, path)| path.to_ascii_lowercase())
                .unwrap_or_default();
            let mut keys = vec![resource.name.to_ascii_lowercase(), type_and_name, relative];
            keys.dedup();
            for key in keys {
                lookup.by_name.entry(key).or_default().push(index);
            }
            if let Some(copy) = template.inner.resources[resource.def].copy.as_ref() {
                lookup
                    .by_loop
                    .entry(copy.name.to_ascii_lowercase())
                    .or_default()
                    .push(index);
            }
        }
        lookup
    }

    /// The resources `target` names: an id, a name, `type/name`, or a copy loop's name.
    fn find(&self, target: &str) -> Vec<usize> {
        if target.starts_with('/') {
            return self
                .by_id
                .get(&normalize_id(target))
                .cloned()
                .unwrap_or_default();
        }
        let key = target.trim_matches('/').to_ascii_lowercase();
        let mut found: Vec<usize> = self.by_name.get(&key).cloned().unwrap_or_default();
        if let Some(members) = self.by_loop.get(&key) {
            found.extend(members);
        }
        found.sort_unstable();
        found.dedup();
        found
    }
}

fn dependencies(
    planner: &PlanEnv,
    template: &Template,
    resources: &[PlannedResource],
    lookup: &Lookup,
    loops: &[(usize, Vec<usize>)],
    instances_of: &[Vec<usize>],
    index: usize,
) -> Result<Vec<usize>, TemplateError> {
    let resource = &resources[index];
    let def = &template.inner.resources[resource.def];
    let ctx = Ctx {
        env: planner,
        phase: Phase::Plan,
        copies: &resource.frames,
    };
    let mut out: Vec<usize> = Vec::new();
    for entry in &def.depends_on {
        let target = match entry
            .eval(&ctx)
            .map_err(|error| resource_error(def, &error))?
        {
            Value::String(target) => target,
            Value::Null => continue,
            other => {
                return Err(resource_error(
                    def,
                    &EvalError::new(format!(
                        "A 'dependsOn' entry must be a string, not a value of type '{}'.",
                        crate::eval::type_name(&other)
                    )),
                ))
            }
        };
        let found = lookup.find(&target);
        if found.is_empty() {
            // ARM reports no position for this one ("lineNumber": 0).
            return Err(TemplateError::validation(
                &format!("The resource '{target}' is not defined in the template. Please see https://aka.ms/arm-template for usage details."),
                Pos::default(),
            ));
        }
        out.extend(found);
    }
    // Nested resources wait for their parent instance.
    if let Some(parent_def) = def.parent {
        if let Some(parent) = instances_of[parent_def].iter().copied().find(|&candidate| {
            let parent = &resources[candidate];
            resource.frames.starts_with(&parent.frames)
                && resource.name.starts_with(&format!("{}/", parent.name))
        }) {
            out.push(parent);
        }
    }
    // `reference()` and `list*()` targets that are template resources, found without
    // running the calls: only their first argument is evaluated, and one that cannot be
    // evaluated here (it uses `reference` itself) adds nothing.
    for target in &def.runtime_targets {
        if let Ok(Value::String(target)) = crate::eval::eval(target, &ctx) {
            out.extend(
                lookup
                    .find(&target)
                    .into_iter()
                    .filter(|&found| found != index),
            );
        }
    }
    // An extension resource waits for the resource it extends, when that is in the template.
    if let Some(scope_start) = resource.id.rfind("/providers/") {
        let target = &resource.id[..scope_start];
        if !target.is_empty() {
            out.extend(
                lookup
                    .find(target)
                    .into_iter()
                    .filter(|&found| found != index),
            );
        }
    }
    // Serial copy loops: each batch waits for the previous one (learn.microsoft.com
    // "Resource iteration in ARM templates", "Serial or Parallel").
    if let (Some(copy), Some(instance)) = (&def.copy, &resource.copy) {
        let serial = match &copy.mode {
            Some(mode) => {
                matches!(mode.eval(&ctx).map_err(|error| resource_error(def, &error))?, Value::String(mode) if mode.eq_ignore_ascii_case("serial"))
            }
            None => false,
        };
        if serial {
            let batch_size = match &copy.batch_size {
                Some(size) => size
                    .eval(&ctx)
                    .map_err(|error| resource_error(def, &error))?
                    .as_i64()
                    .unwrap_or(1)
                    .max(1),
                None => 1,
            };
            let batch = instance.index / batch_size;
            if batch > 0 {
                if let Some((_, members)) =
                    loops.iter().find(|(_, members)| members.contains(&index))
                {
                    for &member in members {
                        if let Some(other) = &resources[member].copy {
                            if other.index / batch_size == batch - 1 {
                                out.push(member);
                            }
                        }
                    }
                }
            }
        }
    }
    // A dependency on a resource that is not deployed is dropped, as ARM does.
    out.retain(|&dependency| resources[dependency].condition);
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Cuts the deployed resources into levels: each level depends only on earlier ones.
fn levels(resources: &[PlannedResource]) -> Result<Vec<Vec<usize>>, TemplateError> {
    let mut level_of: Vec<Option<usize>> = vec![None; resources.len()];
    let mut remaining: Vec<usize> = (0..resources.len())
        .filter(|&index| resources[index].condition)
        .collect();
    let mut levels: Vec<Vec<usize>> = Vec::new();
    while !remaining.is_empty() {
        let current = levels.len();
        let ready: Vec<usize> = remaining
            .iter()
            .copied()
            .filter(|&index| {
                resources[index]
                    .depends_on
                    .iter()
                    .all(|&dependency| level_of[dependency].is_some_and(|level| level < current))
            })
            .collect();
        if ready.is_empty() {
            let on_cycle = find_cycle(resources, &remaining).unwrap_or(remaining[0]);
            return Err(TemplateError::validation(
                &format!(
                    "Circular dependency detected on resource: '{}'. Please see https://aka.ms/arm-syntax-resources for usage details.",
                    resources[on_cycle].id
                ),
                Pos { line: resources[on_cycle].line, column: resources[on_cycle].column },
            ));
        }
        for &index in &ready {
            level_of[index] = Some(current);
        }
        remaining.retain(|&index| level_of[index].is_none());
        levels.push(ready);
    }
    Ok(levels)
}

/// The first resource, in template order, that lies on a dependency cycle.
fn find_cycle(resources: &[PlannedResource], candidates: &[usize]) -> Option<usize> {
    candidates.iter().copied().find(|&start| {
        let mut stack = resources[start].depends_on.clone();
        let mut seen = vec![false; resources.len()];
        while let Some(next) = stack.pop() {
            if next == start {
                return true;
            }
            if !std::mem::replace(&mut seen[next], true) {
                stack.extend(&resources[next].depends_on);
            }
        }
        false
    })
}

enum Slot {
    Busy,
    Done(Value),
}

/// The environment while parameters are bound: defaults may name other parameters.
struct BindEnv<'a> {
    template: &'a Template,
    scope: &'a Scope,
    given: HashMap<String, Value>,
    bound: RefCell<HashMap<String, Slot>>,
    utc_now: i64,
    new_guid: RefCell<&'a mut dyn FnMut() -> String>,
    request_parameters: &'a Map<String, Value>,
    failure: RefCell<Option<TemplateError>>,
}

fn bind_parameters(
    template: &Template,
    scope: &Scope,
    inputs: Inputs,
) -> Result<HashMap<String, Value>, TemplateError> {
    let model = &template.inner;
    let mut given = HashMap::new();
    let mut unknown = Vec::new();
    for (name, entry) in &inputs.parameters {
        if !model
            .parameters
            .iter()
            .any(|def| def.name.eq_ignore_ascii_case(name))
        {
            unknown.push(name.clone());
            continue;
        }
        let value = match entry {
            Value::Object(object) if object.contains_key("reference") => {
                return Err(TemplateError::validation(
                    &format!("The template parameter '{name}' uses a Key Vault 'reference', which this server does not support; pass the secret as a 'value'. Please see https://aka.ms/arm-create-parameter-file for usage details."),
                    Pos::default(),
                ))
            }
            Value::Object(object) => object.get("value").cloned(),
            _ => None,
        };
        if let Some(value) = value {
            given.insert(name.to_ascii_lowercase(), value);
        }
    }
    if !unknown.is_empty() {
        let supported: Vec<&str> = model
            .parameters
            .iter()
            .map(|def| def.name.as_str())
            .collect();
        return Err(TemplateError::validation(
            &format!(
                "The template parameters '{}' in the parameters file are not valid; they are not present in the original template and can therefore not be provided at deployment time. The only supported parameters for this template are '{}'. Please see https://aka.ms/arm-deploy/#parameter-file for usage details.",
                unknown.join(", "),
                supported.join(", ")
            ),
            Pos::default(),
        ));
    }
    let env = BindEnv {
        template,
        scope,
        given,
        bound: RefCell::new(HashMap::new()),
        utc_now: inputs.utc_now_unix,
        new_guid: RefCell::new(inputs.new_guid),
        request_parameters: &inputs.parameters,
        failure: RefCell::new(None),
    };
    for def in &model.parameters {
        if let Err(error) = env.parameter(&def.name) {
            return Err(env
                .failure
                .take()
                .unwrap_or_else(|| parameter_error(def, &error)));
        }
    }
    let bound = env.bound.into_inner();
    Ok(bound
        .into_iter()
        .filter_map(|(name, slot)| match slot {
            Slot::Done(value) => Some((name, value)),
            Slot::Busy => None,
        })
        .collect())
}

impl BindEnv<'_> {
    fn bind(&self, def: &ParameterDef) -> Result<Value, TemplateError> {
        let key = def.name.to_ascii_lowercase();
        let value = match self.given.get(&key) {
            Some(value) => value.clone(),
            None => match &def.default {
                Some(default) => {
                    let ctx = Ctx { env: self, phase: Phase::ParameterDefault, copies: &[] };
                    default.eval(&ctx).map_err(|error| {
                        self.failure.take().unwrap_or_else(|| parameter_error(def, &error))
                    })?
                }
                None => {
                    return Err(TemplateError::validation(
                        &format!(
                            "The value for the template parameter '{}' {} is not provided. Please see https://aka.ms/arm-create-parameter-file for usage details.",
                            def.name, def.pos
                        ),
                        def.pos,
                    ))
                }
            },
        };
        check_parameter(def, &value)?;
        Ok(value)
    }
}

/// The parameter checks of learn.microsoft.com "Parameters in ARM templates", in the words
/// of ARM's responses.
fn check_parameter(def: &ParameterDef, value: &Value) -> Result<(), TemplateError> {
    let invalid = |detail: String| {
        TemplateError::validation(
            &format!(
                "The provided value for the template parameter '{}' {} is not valid. {detail} Please see https://aka.ms/arm-syntax-parameters for usage details.",
                def.name, def.pos
            ),
            def.pos,
        )
    };
    if !def.kind.accepts(value) {
        return Err(TemplateError::validation(
            &format!(
                "Template parameter '{}' was provided an invalid value. Expected a value of type '{}', but received a value of type '{}'. Please see https://aka.ms/arm-create-parameter-file for usage details.",
                def.name,
                def.kind.json_name(),
                crate::eval::type_name(value)
            ),
            def.pos,
        ));
    }
    if let Some(allowed) = &def.allowed {
        let candidates: Vec<&Value> = match value {
            // Each element of an array parameter must be an allowed value.
            Value::Array(items) if !allowed.iter().any(Value::is_array) => items.iter().collect(),
            other => vec![other],
        };
        if let Some(bad) = candidates
            .iter()
            .find(|candidate| !allowed.contains(candidate))
        {
            let shown: Vec<String> = allowed
                .iter()
                .map(crate::dotnet::to_dotnet_string)
                .collect();
            return Err(TemplateError::validation(
                &format!(
                    "The provided value '{}' for the template parameter '{}' {} is not valid. The parameter value is not part of the allowed value(s): '{}'.",
                    crate::dotnet::to_dotnet_string(bad),
                    def.name,
                    def.pos,
                    shown.join(",")
                ),
                def.pos,
            ));
        }
    }
    if let Some(number) = value.as_i64() {
        if let Some(min) = def.min_value.filter(|min| number < *min) {
            return Err(invalid(format!(
                "Value should be greater than or equal to '{min}'."
            )));
        }
        if let Some(max) = def.max_value.filter(|max| number > *max) {
            return Err(invalid(format!(
                "Value should be less than or equal to '{max}'."
            )));
        }
    }
    let length = match value {
        Value::String(text) => Some(text.chars().count() as i64),
        Value::Array(items) => Some(items.len() as i64),
        _ => None,
    };
    if let Some(length) = length {
        if let Some(min) = def.min_length.filter(|min| length < *min) {
            return Err(invalid(format!(
                "Length of the value should be greater than or equal to '{min}'."
            )));
        }
        if let Some(max) = def.max_length.filter(|max| length > *max) {
            return Err(invalid(format!(
                "Length of the value should be less than or equal to '{max}'."
            )));
        }
    }
    Ok(())
}

fn parameter_not_found(name: &str) -> EvalError {
    EvalError::new(format!(
        "The template parameter '{name}' is not found. Please see https://aka.ms/arm-syntax-parameters for usage details."
    ))
}

fn deployment_value(
    template: &Template,
    scope: &Scope,
    request_parameters: &Map<String, Value>,
) -> Value {
    let mut properties = Map::new();
    properties.insert("template".into(), template.inner.raw.clone());
    properties.insert(
        "templateHash".into(),
        Value::String(template.template_hash()),
    );
    properties.insert(
        "parameters".into(),
        Value::Object(request_parameters.clone()),
    );
    let mut object = Map::new();
    object.insert("name".into(), Value::String(scope.deployment_name.clone()));
    if let Some(location) = &scope.deployment_location {
        object.insert("location".into(), Value::String(location.clone()));
    }
    object.insert("properties".into(), Value::Object(properties));
    Value::Object(object)
}

impl Env for BindEnv<'_> {
    fn scope(&self) -> &Scope {
        self.scope
    }

    fn parameter(&self, name: &str) -> EvalResult<Value> {
        let key = name.to_ascii_lowercase();
        match self.bound.borrow().get(&key) {
            Some(Slot::Done(value)) => return Ok(value.clone()),
            Some(Slot::Busy) => {
                return Err(EvalError::new(format!(
                    "The template parameter '{name}' refers to itself through its default value."
                )))
            }
            None => {}
        }
        let def = self
            .template
            .inner
            .parameters
            .iter()
            .find(|def| def.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| parameter_not_found(name))?;
        self.bound.borrow_mut().insert(key.clone(), Slot::Busy);
        match self.bind(def) {
            Ok(value) => {
                self.bound
                    .borrow_mut()
                    .insert(key, Slot::Done(value.clone()));
                Ok(value)
            }
            Err(error) => {
                let message = error.message.clone();
                self.failure.borrow_mut().get_or_insert(error);
                Err(EvalError::new(message))
            }
        }
    }

    fn variable(&self, name: &str) -> EvalResult<Value> {
        Err(crate::eval::not_expected(&format!("variables('{name}')")))
    }

    fn deployment(&self) -> Value {
        deployment_value(self.template, self.scope, self.request_parameters)
    }

    fn resolve_resource(&self, _: &str) -> EvalResult<(String, Option<String>)> {
        Err(crate::eval::not_expected("reference"))
    }

    fn resolver(&self) -> Option<&dyn Resolver> {
        None
    }

    fn new_guid(&self) -> Option<String> {
        Some((self.new_guid.borrow_mut())())
    }

    fn utc_now(&self) -> Option<i64> {
        Some(self.utc_now)
    }
}

/// The environment of `plan`: parameters are bound, variables are evaluated on first use.
struct PlanEnv<'a> {
    template: &'a Template,
    scope: &'a Scope,
    parameters: &'a HashMap<String, Value>,
    request_parameters: &'a Map<String, Value>,
    variables: RefCell<HashMap<String, Slot>>,
}

fn variable_not_found(name: &str) -> EvalError {
    EvalError::new(format!(
        "The template variable '{name}' is not found. Please see https://aka.ms/arm-syntax-variables for usage details."
    ))
}

impl Env for PlanEnv<'_> {
    fn scope(&self) -> &Scope {
        self.scope
    }

    fn parameter(&self, name: &str) -> EvalResult<Value> {
        self.parameters
            .get(&name.to_ascii_lowercase())
            .cloned()
            .ok_or_else(|| parameter_not_found(name))
    }

    fn variable(&self, name: &str) -> EvalResult<Value> {
        let key = name.to_ascii_lowercase();
        match self.variables.borrow().get(&key) {
            Some(Slot::Done(value)) => return Ok(value.clone()),
            Some(Slot::Busy) => {
                return Err(EvalError::new(format!(
                    "The template variable '{name}' refers to itself; circular references between variables are not allowed. Please see https://aka.ms/arm-syntax-variables for usage details."
                )))
            }
            None => {}
        }
        let def = self
            .template
            .inner
            .variables
            .iter()
            .find(|def| def.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| variable_not_found(name))?;
        self.variables.borrow_mut().insert(key.clone(), Slot::Busy);
        let ctx = Ctx {
            env: self,
            phase: Phase::Plan,
            copies: &[],
        };
        let result = match &def.value {
            VariableValue::Plain(node) => node.eval(&ctx),
            VariableValue::Loop { count, input } => (|| {
                let count = copy_count(count, &ctx, def.pos)?;
                let mut items = Vec::with_capacity(count as usize);
                for index in 0..count {
                    let frames = [CopyFrame {
                        kind: CopyKind::Variable,
                        name: def.name.clone(),
                        index,
                    }];
                    let inner = Ctx {
                        env: self,
                        phase: Phase::Plan,
                        copies: &frames,
                    };
                    items.push(input.eval(&inner)?);
                }
                Ok(Value::Array(items))
            })(),
        };
        match result {
            Ok(value) => {
                self.variables
                    .borrow_mut()
                    .insert(key, Slot::Done(value.clone()));
                Ok(value)
            }
            Err(error) => {
                self.variables.borrow_mut().remove(&key);
                Err(error)
            }
        }
    }

    fn deployment(&self) -> Value {
        deployment_value(self.template, self.scope, self.request_parameters)
    }

    fn resolve_resource(&self, _: &str) -> EvalResult<(String, Option<String>)> {
        Err(crate::eval::not_expected("reference"))
    }

    fn resolver(&self) -> Option<&dyn Resolver> {
        None
    }

    fn new_guid(&self) -> Option<String> {
        None
    }

    fn utc_now(&self) -> Option<i64> {
        None
    }
}

/// The environment of late evaluation: everything is known but the deployed resources,
/// which the resolver reads.
struct LateEnv<'a> {
    plan: &'a Plan,
    resolver: &'a dyn Resolver,
}

impl Env for LateEnv<'_> {
    fn scope(&self) -> &Scope {
        &self.plan.scope
    }

    fn parameter(&self, name: &str) -> EvalResult<Value> {
        self.plan
            .parameters
            .get(&name.to_ascii_lowercase())
            .cloned()
            .ok_or_else(|| parameter_not_found(name))
    }

    fn variable(&self, name: &str) -> EvalResult<Value> {
        self.plan
            .variables
            .get(&name.to_ascii_lowercase())
            .cloned()
            .ok_or_else(|| variable_not_found(name))
    }

    fn deployment(&self) -> Value {
        deployment_value(
            &self.plan.template,
            &self.plan.scope,
            &self.plan.request_parameters,
        )
    }

    fn resolve_resource(&self, target: &str) -> EvalResult<(String, Option<String>)> {
        let found = self.plan.lookup.find(target);
        let chosen = found
            .iter()
            .copied()
            .find(|&index| self.plan.resources[index].condition)
            .or_else(|| found.first().copied());
        match chosen {
            Some(index) => {
                let resource = &self.plan.resources[index];
                Ok((resource.id.clone(), Some(resource.api_version.clone())))
            }
            None if target.starts_with('/') => Ok((target.to_string(), None)),
            None => Err(EvalError::new(format!(
                "The template reference '{target}' is not valid: could not find template resource or resource copy with this name. Please see https://aka.ms/arm-template-expressions/#reference for usage details."
            ))),
        }
    }

    fn resolver(&self) -> Option<&dyn Resolver> {
        Some(self.resolver)
    }

    fn new_guid(&self) -> Option<String> {
        None
    }

    fn utc_now(&self) -> Option<i64> {
        None
    }
}

impl Plan {
    /// Every resource instance, deployed or not (see `PlannedResource::condition`).
    pub fn resources(&self) -> &[PlannedResource] {
        &self.resources
    }

    /// The deployed resources cut into levels: the resources of a level depend only on
    /// resources of earlier levels, so each level can run concurrently.
    pub fn levels(&self) -> &[Vec<usize>] {
        &self.levels
    }

    /// The deployed resources in a dependency order (level by level).
    pub fn order(&self) -> Vec<usize> {
        self.levels.iter().flatten().copied().collect()
    }

    /// The body to PUT for resource `index`: every element but the template's own (`type`,
    /// `apiVersion`, `name`, `dependsOn`, `condition`, `copy`, `resources`, `comments`,
    /// `scope`), with property loops expanded and `location` as planned.
    pub fn resource_body(
        &self,
        index: usize,
        resolver: &dyn Resolver,
    ) -> Result<Value, TemplateError> {
        self.body(index, resolver, false)
    }

    /// `resource_body` for what-if: an expression that cannot be evaluated yet (a
    /// `reference()` to a resource the deployment has not created) stays as its text.
    pub fn resource_body_preview(
        &self,
        index: usize,
        resolver: &dyn Resolver,
    ) -> Result<Value, TemplateError> {
        self.body(index, resolver, true)
    }

    fn body(
        &self,
        index: usize,
        resolver: &dyn Resolver,
        lenient: bool,
    ) -> Result<Value, TemplateError> {
        let resource = self.resources.get(index).ok_or_else(|| {
            template_error(
                &format!("There is no planned resource number {index}."),
                Pos::default(),
            )
        })?;
        let def = &self.template.inner.resources[resource.def];
        let env = LateEnv {
            plan: self,
            resolver,
        };
        let ctx = Ctx {
            env: &env,
            phase: Phase::Body,
            copies: &resource.frames,
        };
        let mut body = Map::new();
        if let Some(location) = &resource.location {
            body.insert("location".into(), Value::String(location.clone()));
        }
        for (key, node) in &def.body {
            let value = if lenient {
                node.eval_lenient(&ctx)
            } else {
                node.eval(&ctx)
            };
            let value = value.map_err(|error| {
                TemplateError::new(
                    "InvalidTemplate",
                    format!(
                        "Unable to process template language expressions for resource '{}' {}. '{}'",
                        resource.id, def.pos, error.message
                    ),
                    def.pos,
                )
            })?;
            body.insert(key.clone(), value);
        }
        Ok(Value::Object(body))
    }

    /// The deployment's outputs as ARM returns them: `{"name": {"type": "String", "value": ...}}`;
    /// outputs whose condition is false are left out, and secure outputs have no value.
    pub fn outputs(&self, resolver: &dyn Resolver) -> Result<Map<String, Value>, TemplateError> {
        let env = LateEnv {
            plan: self,
            resolver,
        };
        let mut out = Map::new();
        for def in &self.template.inner.outputs {
            let failed = |error: EvalError| {
                TemplateError::new(
                    "DeploymentOutputEvaluationFailed",
                    format!(
                        "The template output '{}' is not valid: {}",
                        def.name, error.message
                    ),
                    def.pos,
                )
            };
            let ctx = Ctx {
                env: &env,
                phase: Phase::Output,
                copies: &[],
            };
            if let Some(condition) = &def.condition {
                if condition.eval(&ctx).map_err(failed)? != Value::Bool(true) {
                    continue;
                }
            }
            let value = match &def.copy {
                Some((count, input)) => {
                    let count = copy_count(count, &ctx, def.pos).map_err(failed)?;
                    let mut items = Vec::with_capacity(count as usize);
                    for index in 0..count {
                        let frames = [CopyFrame {
                            kind: CopyKind::Output,
                            name: def.name.clone(),
                            index,
                        }];
                        let inner = Ctx {
                            env: &env,
                            phase: Phase::Output,
                            copies: &frames,
                        };
                        items.push(input.eval(&inner).map_err(failed)?);
                    }
                    Value::Array(items)
                }
                None => match &def.value {
                    Some(value) => value.eval(&ctx).map_err(failed)?,
                    None => Value::Null,
                },
            };
            let mut entry = Map::new();
            entry.insert("type".into(), Value::String(def.kind.arm_name().into()));
            if !def.kind.is_secure() {
                entry.insert("value".into(), value);
            }
            out.insert(def.name.clone(), Value::Object(entry));
        }
        Ok(out)
    }

    /// The evaluated parameters for the deployment record, `{"p": {"type": "String", "value": "x"}}`;
    /// secure parameters show only their type, as ARM shows them.
    pub fn parameters(&self) -> Map<String, Value> {
        let mut out = Map::new();
        for def in &self.template.inner.parameters {
            let mut entry = Map::new();
            entry.insert("type".into(), Value::String(def.kind.arm_name().into()));
            if !def.kind.is_secure() {
                if let Some(value) = self.parameters.get(&def.name.to_ascii_lowercase()) {
                    entry.insert("value".into(), value.clone());
                }
            }
            out.insert(def.name.clone(), Value::Object(entry));
        }
        out
    }

    /// See `Template::template_hash`.
    pub fn template_hash(&self) -> String {
        self.template.template_hash()
    }
}
