//! Unit tests of the `ConnectionActor`.
