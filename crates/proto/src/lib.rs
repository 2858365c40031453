//! openmi-proto.
