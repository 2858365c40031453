//! openmi-server.
