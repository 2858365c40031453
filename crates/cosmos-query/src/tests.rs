//! End-to-end tests through the public API: the documentation's examples, error positions,
//! partition filters, the type order and undefined semantics, each through one `check` helper.
