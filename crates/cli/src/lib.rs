//! openmi-cli.
