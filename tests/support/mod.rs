//! Test harness shared by the integration test files: a real registry process (and a token
//! server for it), an OCI pusher, real git repositories with Argo CD Applications, and fakes of
//! what cannot run here (GitHub, GitLab, a Kubernetes API server).
#![allow(dead_code)]

pub mod oci_push;
pub mod registry;
pub mod token_server;
pub mod git_http;
pub mod gitops;
pub mod cli;
pub mod local_world;
pub mod fake_github;
pub mod fake_gitlab;
pub mod fake_kube;
pub mod tls;

/// A fresh `X-GitHub-Delivery` id, as GitHub gives every delivery (a redelivery keeps its id).
pub fn delivery_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("72d3162e-cc78-11e3-81ab-{:012x}", (std::process::id() as u64) << 24 | n)
}
