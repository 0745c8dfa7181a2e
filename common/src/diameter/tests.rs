//! Tests of the Diameter module.
