//! openmi-store.
