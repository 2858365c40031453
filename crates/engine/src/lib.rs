//! openmi-engine.
