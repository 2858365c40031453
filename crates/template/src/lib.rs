//! The ARM template language as a pure library: parse a template (`Template::parse`), plan a
//! deployment against the engine's scope and the request's parameters (`plan`), then
//! evaluate each resource body and the outputs late, once the resources they reference
//! exist (`Plan::resource_body`, `Plan::outputs`, through a `Resolver`). `whatif` diffs two
//! resource documents in ARM's what-if shape.
//!
//! The pipeline follows jaq's shape (STYLE.md §3): a JSON reader that keeps positions
//! (`json`), a hand-written lexer (`lex`) and recursive-descent parser (`parse`) for the
//! expressions inside `[...]` strings, a function table (`functions`), and an evaluator that
//! is a pure function of its context (`eval`). Errors carry ARM's code and wording
//! (`TemplateError`).
//!
//! **Architecture invariant:** no I/O, no async, no clock, no randomness: `utcNow()` and
//! `newGuid()` take their values from `Inputs`, deployed state comes only through
//! `Resolver`. Not supported, and refused with an InvalidTemplate error: `languageVersion`
//! 2.0 templates (symbolic names), user-defined `functions`, nested and linked deployments
//! (`Microsoft.Resources/deployments`), Key Vault parameter references, management group
//! and tenant deployments.

mod dotnet;
mod error;
mod eval;
mod functions;
mod hash;
mod json;
mod lex;
mod parse;
mod plan;
mod template;
pub mod whatif;

pub use error::TemplateError;
pub use plan::{
    plan, CopyInstance, Inputs, Plan, PlannedResource, Resolver, ResourceGroupInfo, Scope,
};
pub use template::Template;

#[cfg(test)]
mod tests;
