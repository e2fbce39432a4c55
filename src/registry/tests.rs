//! Behaviour tests of the client against small axum registries on loopback.
