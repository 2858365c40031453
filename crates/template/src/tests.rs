//! Tests of whole templates: planning, late evaluation and the seeds' managed-identity templates.
