//! Test harness shared by the integration test files: a real registry process (and a token
//! server for it), an OCI pusher, and real git repositories with Argo CD Applications.
#![allow(dead_code)]

pub mod oci_push;
pub mod registry;
pub mod token_server;
pub mod git_http;
pub mod gitops;
pub mod cli;
pub mod local_world;
pub mod fake_github;
