//! Pushes demo images to a registry, one distinct linux/amd64 image per tag, each built a day
//! after the one before (so newest-build has something to choose by):
//!
//!     cargo run --example seed -- 127.0.0.1:5000 demo/api 1.0.0 1.1.0 1.2.0
//!
//! The registry is spoken to over plain http. Used by scripts/demo.sh.

#[path = "../tests/support/oci_push.rs"]
mod oci_push;

use oci_push::{ImageSpec, PushAuth, Pusher};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [registry, repo, tags @ ..] = &args[..] else {
        eprintln!("usage: seed <registry host:port> <repository> <tag>...");
        return std::process::ExitCode::from(2);
    };
    if tags.is_empty() {
        eprintln!("seed: give at least one tag");
        return std::process::ExitCode::from(2);
    }
    let pusher = Pusher::new(registry, PushAuth::Anonymous);
    for (i, tag) in tags.iter().enumerate() {
        let created = format!("2024-01-{:02}T12:00:00Z", (i % 28) + 1);
        let spec = ImageSpec::new(&created, &format!("{repo}:{tag}"));
        match pusher.push_image(repo, tag, &spec).await {
            Ok(digest) => println!("  pushed {registry}/{repo}:{tag}  built {created}  {digest}"),
            Err(e) => {
                eprintln!("seed: pushing {repo}:{tag} to {registry} failed: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    std::process::ExitCode::SUCCESS
}
