//! `POST /webhooks/github` over real HTTP with GitHub's own example payloads (npm package
//! `@octokit/webhooks-examples`, installed by scripts/test.sh into
//! `${ARGOCD_IMAGE_PR_NPM:-/var/tmp/argocd-image-pr-npm}`). Each test starts its own server on a
//! free loopback port and reads what reaches the engine's channel.
//!
//! The package has no comment on a pull request and no merged pull request: those cases take the
//! real payload and change only the fields GitHub sets differently (`issue.pull_request`,
//! `pull_request.merged`), with values shaped as GitHub documents them.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use argocd_image_pr::server::{
    CommentAction, Metrics, PrAction, ServerLimits, ServerState, WebhookEvent, WebhookSecret, serve_limited, serve_on, sign,
};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

const SECRET: &str = "It's a Secret to Everybody";

/// Every example payload, as `(event name, payload)`, read once per test binary.
fn examples() -> Vec<(String, Value)> {
    static EXAMPLES: OnceLock<Vec<(String, Value)>> = OnceLock::new();
    EXAMPLES.get_or_init(read_examples).clone()
}

fn read_examples() -> Vec<(String, Value)> {
    let root = std::env::var_os("ARGOCD_IMAGE_PR_NPM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/argocd-image-pr-npm"));
    let path = root.join("node_modules/@octokit/webhooks-examples/api.github.com/index.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read GitHub's webhook examples at {}: {e}\n\
             run scripts/test.sh, which installs the npm package @octokit/webhooks-examples there \
             (or set ARGOCD_IMAGE_PR_NPM to the --prefix it was installed with)",
            path.display()
        )
    });
    let index: Vec<Value> = serde_json::from_str(&text).expect("index.json is a list of events");
    let mut all = Vec::new();
    for entry in index {
        let name = entry["name"].as_str().expect("event name").to_string();
        for example in entry["examples"].as_array().expect("examples") {
            all.push((name.clone(), example.clone()));
        }
    }
    assert!(all.len() > 100, "only {} examples in {}", all.len(), path.display());
    all
}

/// The first example of `event` with `action`.
fn example(event: &str, action: &str) -> Value {
    examples()
        .into_iter()
        .find(|(e, p)| e == event && p["action"] == action)
        .unwrap_or_else(|| panic!("no {event} example with action {action}"))
        .1
}

/// A comment on a pull request: GitHub sets `issue.pull_request` to these links.
fn pr_comment(action: &str, body: &str) -> Value {
    let mut p = example("issue_comment", action);
    assert!(p["issue"].get("pull_request").is_none(), "the package gained a PR comment: use it instead");
    let number = p["issue"]["number"].as_u64().unwrap();
    p["issue"]["pull_request"] = json!({
        "url": format!("https://api.github.com/repos/Codertocat/Hello-World/pulls/{number}"),
        "html_url": format!("https://github.com/Codertocat/Hello-World/pull/{number}"),
        "diff_url": format!("https://github.com/Codertocat/Hello-World/pull/{number}.diff"),
        "patch_url": format!("https://github.com/Codertocat/Hello-World/pull/{number}.patch"),
        "merged_at": null
    });
    p["comment"]["body"] = json!(body);
    p
}

struct Bot {
    url: String,
    events: mpsc::Receiver<WebhookEvent>,
    metrics: Arc<Metrics>,
    client: reqwest::Client,
    _stop: oneshot::Sender<()>,
}

async fn start(secret: Option<&str>, capacity: usize) -> Bot {
    let (tx, events) = mpsc::channel(capacity);
    let metrics = Arc::new(Metrics::new());
    let state = ServerState::new(secret.map(|s| WebhookSecret::new(s).unwrap()), tx, metrics.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve_on(listener, state, async {
        let _ = stopped.await;
    }));
    Bot { url, events, metrics, client: reqwest::Client::new(), _stop: stop }
}

fn signature(secret: &str, body: &[u8]) -> String {
    sign(&WebhookSecret::new(secret).unwrap(), body)
}

struct Delivery<'a> {
    event: &'a str,
    body: Vec<u8>,
    signature: Option<String>,
    content_type: &'a str,
}

impl<'a> Delivery<'a> {
    /// Signed with [`SECRET`], as GitHub sends it.
    fn signed(event: &'a str, payload: &Value) -> Self {
        let body = serde_json::to_vec(payload).unwrap();
        Delivery { event, signature: Some(signature(SECRET, &body)), body, content_type: "application/json" }
    }
}

impl Bot {
    /// Sends `d` with a fresh delivery id, as GitHub does for every delivery.
    async fn deliver(&self, d: Delivery<'_>) -> (u16, String) {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.deliver_as(d, &format!("72d3162e-cc78-11e3-81ab-{n:012x}")).await
    }

    async fn deliver_as(&self, d: Delivery<'_>, id: &str) -> (u16, String) {
        let mut request = self
            .client
            .post(format!("{}/webhooks/github", self.url))
            .header("X-GitHub-Event", d.event)
            .header("X-GitHub-Delivery", id)
            .header("X-GitHub-Hook-ID", "292430182")
            .header("User-Agent", "GitHub-Hookshot/044aadd")
            .header("Content-Type", d.content_type)
            .body(d.body);
        if let Some(s) = d.signature {
            request = request.header("X-Hub-Signature-256", s);
        }
        let response = request.send().await.expect("request reaches the server");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    fn no_event(&mut self, case: &str) {
        if let Ok(e) = self.events.try_recv() {
            panic!("case {case}: unexpected event on the channel: {e:?}");
        }
    }

    fn event(&mut self, case: &str) -> WebhookEvent {
        self.events.try_recv().unwrap_or_else(|e| panic!("case {case}: no event on the channel ({e})"))
    }
}

#[tokio::test]
async fn closed_pull_request_is_queued_with_its_fields() {
    let mut bot = start(Some(SECRET), 8).await;
    let payload = example("pull_request", "closed");
    let (status, body) = bot.deliver(Delivery::signed("pull_request", &payload)).await;
    assert_eq!((status, body.as_str()), (202, "queued\n"));
    let WebhookEvent::PullRequest(e) = bot.event("closed") else { panic!("not a pull request event") };
    assert_eq!(e.repo.full_name, "Codertocat/Hello-World");
    assert_eq!(e.repo.clone_url, "https://github.com/Codertocat/Hello-World.git");
    assert_eq!(e.pr, 2);
    assert_eq!(e.action, PrAction::Closed);
    assert_eq!(e.head_ref, "changes");
    assert_eq!(e.base_ref, "master");
    assert!(!e.merged);
    assert_eq!(e.merge_commit_sha, None, "a merge commit only counts when merged");
    assert!(e.delivery.as_deref().is_some_and(|d| d.starts_with("72d3162e-cc78-11e3-81ab-")), "{:?}", e.delivery);
    bot.no_event("closed");
}

#[tokio::test]
async fn merged_reopened_and_synchronize_are_queued() {
    let mut bot = start(Some(SECRET), 8).await;
    let mut merged = example("pull_request", "closed");
    merged["pull_request"]["merged"] = json!(true);
    let sha = merged["pull_request"]["merge_commit_sha"].as_str().unwrap().to_string();
    let (status, _) = bot.deliver(Delivery::signed("pull_request", &merged)).await;
    assert_eq!(status, 202);
    let WebhookEvent::PullRequest(e) = bot.event("merged") else { panic!("not a pull request event") };
    assert!(e.merged);
    assert_eq!(e.merge_commit_sha, Some(sha));

    for (action, want) in [("reopened", PrAction::Reopened), ("synchronize", PrAction::Synchronize)] {
        let (status, _) = bot.deliver(Delivery::signed("pull_request", &example("pull_request", action))).await;
        assert_eq!(status, 202, "case {action}");
        let e = bot.event(action);
        assert!(matches!(&e, WebhookEvent::PullRequest(p) if p.action == want && p.pr == 2), "case {action}: {e:?}");
    }
}

#[tokio::test]
async fn command_comment_on_a_pull_request_is_queued() {
    let mut bot = start(Some(SECRET), 8).await;
    for (action, want) in [("created", CommentAction::Created), ("edited", CommentAction::Edited)] {
        let payload = pr_comment(action, "Thanks!\r\n\r\n/pin api 1.2.3");
        let (status, body) = bot.deliver(Delivery::signed("issue_comment", &payload)).await;
        assert_eq!((status, body.as_str()), (202, "queued\n"), "case {action}");
        let WebhookEvent::Comment(c) = bot.event(action) else { panic!("case {action}: not a comment event") };
        assert_eq!(c.action, want);
        assert_eq!(c.repo.full_name, "Codertocat/Hello-World");
        assert_eq!(c.pr, payload["issue"]["number"].as_u64().unwrap());
        assert_eq!(c.comment_id, 492700400);
        assert_eq!(c.author, "Codertocat");
        assert_eq!(c.body, "Thanks!\r\n\r\n/pin api 1.2.3");
        assert!(c.delivery.as_deref().is_some_and(|d| d.starts_with("72d3162e-cc78-11e3-81ab-")), "{:?}", c.delivery);
    }
}

#[tokio::test]
async fn comments_the_bot_has_nothing_to_do_with_are_ignored() {
    let mut bot = start(Some(SECRET), 8).await;
    // Every real issue_comment example is on an issue, not a pull request: ignored, even with a command.
    for (n, (_, mut payload)) in examples().into_iter().filter(|(e, _)| e == "issue_comment").enumerate() {
        payload["comment"]["body"] = json!("/pin");
        let (status, body) = bot.deliver(Delivery::signed("issue_comment", &payload)).await;
        assert_eq!(status, 200, "example {n}: {body}");
        assert!(body.starts_with("ignored: "), "example {n}: {body}");
        bot.no_event(&format!("issue example {n}"));
    }
    let mut by_bot = pr_comment("created", "/pin");
    by_bot["comment"]["user"]["type"] = json!("Bot");
    let cases = [
        ("no command", pr_comment("created", "LGTM, merging")),
        ("command only in a quote", pr_comment("created", "> /pin\n\nno thanks")),
        ("command only in code", pr_comment("created", "```\n/pin\n```")),
        ("deleted", pr_comment("deleted", "/pin")),
        ("by a bot", by_bot),
    ];
    for (case, payload) in cases {
        let (status, body) = bot.deliver(Delivery::signed("issue_comment", &payload)).await;
        assert_eq!(status, 200, "case {case}: {body}");
        assert!(body.starts_with("ignored: "), "case {case}: {body}");
        bot.no_event(case);
    }
}

#[tokio::test]
async fn every_other_example_is_accepted_and_ignored() {
    let mut bot = start(Some(SECRET), 8).await;
    let mut delivered = 0;
    for (event, payload) in examples() {
        let acted_on = match event.as_str() {
            "pull_request" => ["closed", "reopened", "synchronize"].contains(&payload["action"].as_str().unwrap_or("")),
            "issue_comment" | "ping" => true,
            _ => false,
        };
        if acted_on {
            continue;
        }
        let case = format!("{event}/{}", payload["action"].as_str().unwrap_or("-"));
        let (status, body) = bot.deliver(Delivery::signed(&event, &payload)).await;
        assert_eq!(status, 200, "case {case}: {body}");
        assert!(body.starts_with("ignored: "), "case {case}: {body}");
        bot.no_event(&case);
        delivered += 1;
    }
    assert!(delivered > 100, "only {delivered} examples delivered");
}

#[tokio::test]
async fn ping_answers_pong() {
    let mut bot = start(Some(SECRET), 8).await;
    for (_, payload) in examples().into_iter().filter(|(e, _)| e == "ping") {
        let (status, body) = bot.deliver(Delivery::signed("ping", &payload)).await;
        assert_eq!((status, body.as_str()), (200, "pong\n"));
    }
    bot.no_event("ping");
}

#[tokio::test]
async fn bad_signatures_are_refused_and_nothing_is_processed() {
    let mut bot = start(Some(SECRET), 8).await;
    let payload = example("pull_request", "closed");
    let body = serde_json::to_vec(&payload).unwrap();
    let good = signature(SECRET, &body);
    let mut tampered = payload.clone();
    tampered["pull_request"]["merged"] = json!(true);
    let cases: Vec<(&str, Vec<u8>, Option<String>)> = vec![
        ("missing", body.clone(), None),
        ("wrong secret", body.clone(), Some(signature("not the secret", &body))),
        ("body changed after signing", serde_json::to_vec(&tampered).unwrap(), Some(good.clone())),
        ("sha1 header form", body.clone(), Some("sha1=7d38cdd689735b008b3c702edd92eea23791c5f6".into())),
        ("no prefix", body.clone(), Some(good.trim_start_matches("sha256=").to_string())),
        ("not hex", body.clone(), Some("sha256=not-hex".into())),
        ("truncated", body.clone(), Some(good[..30].to_string())),
        ("empty", body.clone(), Some(String::new())),
    ];
    for (case, body, signature) in cases {
        let d = Delivery { event: "pull_request", body, signature, content_type: "application/json" };
        let (status, text) = bot.deliver(d).await;
        assert_eq!(status, 401, "case {case}: {text}");
        assert!(text.starts_with("signature refused: "), "case {case}: {text}");
        bot.no_event(case);
    }
    assert!(
        bot.metrics
            .render()
            .contains("argocd_image_pr_webhook_deliveries_total{event=\"pull_request\",result=\"unauthorized\"} 8")
    );
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let mut bot = start(Some(SECRET), 8).await;
    let mut payload = pr_comment("created", "/help");
    let padding = 1024 * 1024;
    payload["comment"]["body"] = json!(format!("/help\n{}", "x".repeat(padding)));
    let (status, text) = bot.deliver(Delivery::signed("issue_comment", &payload)).await;
    assert_eq!(status, 413, "{text}");
    bot.no_event("oversized");
}

#[tokio::test]
async fn the_unauthenticated_body_limit_is_small() {
    // Issue 15: 1 MiB was buffered per connection before the signature check.
    let mut bot = start(Some(SECRET), 8).await;
    let mut payload = pr_comment("created", "/help");
    payload["comment"]["body"] = json!(format!("/help\n{}", "x".repeat(600 * 1024)));
    let (status, text) = bot.deliver(Delivery::signed("issue_comment", &payload)).await;
    assert_eq!(status, 413, "{text}");
    bot.no_event("600 KiB");
}

#[tokio::test]
async fn a_replayed_delivery_is_queued_once() {
    let mut bot = start(Some(SECRET), 8).await;
    let payload = example("pull_request", "closed");
    let id = "0b6c8f3e-1d2a-11ef-9e1a-4c9367dc0958";
    assert_eq!(bot.deliver_as(Delivery::signed("pull_request", &payload), id).await.0, 202);
    let (status, text) = bot.deliver_as(Delivery::signed("pull_request", &payload), id).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("already taken"), "{text}");
    bot.event("first");
    bot.no_event("the replay");
    assert_eq!(bot.deliver(Delivery::signed("pull_request", &payload)).await.0, 202, "another id is another delivery");
}

/// Server limits small enough for a test: 4 connections, 1 s idle, 3 s per connection.
async fn start_limited() -> (String, oneshot::Sender<()>) {
    let (tx, events) = mpsc::channel(8);
    std::mem::forget(events);
    let state = ServerState::new(Some(WebhookSecret::new(SECRET).unwrap()), tx, Arc::new(Metrics::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let limits = ServerLimits {
        max_connections: 4,
        idle_timeout: std::time::Duration::from_secs(1),
        max_connection_age: std::time::Duration::from_secs(3),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve_limited(listener, state, limits, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

/// Reads until the server closes the connection; how long that took.
async fn closed_after(stream: &mut tokio::net::TcpStream) -> std::time::Duration {
    use tokio::io::AsyncReadExt;
    let started = std::time::Instant::now();
    let mut buf = [0u8; 1024];
    // Well above the 1 s idle limit, well below hyper's own 30 s header timeout.
    let patience = std::time::Duration::from_secs(20);
    loop {
        match tokio::time::timeout(patience, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the server kept the connection open for {patience:?}"),
        }
    }
}

#[tokio::test]
async fn idle_and_trickling_connections_are_closed_and_their_slots_reused() {
    // Issue 15: 300 idle connections exhausted file descriptors; 200 slow ones grew memory.
    use tokio::io::AsyncWriteExt;
    let (addr, _stop) = start_limited().await;
    // Four connections fill every slot: they never send a byte.
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    // A fifth client waits for a slot; it gets one once the idle ones are closed.
    let health = tokio::spawn({
        let addr = addr.clone();
        async move { reqwest::Client::new().get(format!("http://{addr}/healthz")).send().await.map(|r| r.status().as_u16()) }
    });
    for stream in &mut idle {
        closed_after(stream).await;
    }
    assert_eq!(health.await.unwrap().unwrap(), 200, "/healthz is served once the idle connections are gone");

    // A request that trickles one byte every half second never goes idle, but is cut at 3 s.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"POST /webhooks/github HTTP/1.1\r\nHost: x\r\nContent-Length: 400000\r\n\r\n").await.unwrap();
    let trickle = async {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            if slow.write_all(b"x").await.is_err() {
                break;
            }
        }
    };
    let cut = tokio::time::timeout(std::time::Duration::from_secs(20), trickle).await;
    assert!(cut.is_ok(), "the trickling request was never cut off");
}

#[tokio::test]
async fn malformed_payloads_with_a_valid_signature_are_bad_requests() {
    let mut bot = start(Some(SECRET), 8).await;
    let mut no_head = example("pull_request", "closed");
    no_head["pull_request"].as_object_mut().unwrap().remove("head");
    let cases: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        ("not JSON", "pull_request", b"{\"action\": \"closed\",".to_vec(), "pull_request payload does not parse"),
        ("missing field", "pull_request", serde_json::to_vec(&no_head).unwrap(), "missing field `head`"),
        ("comment not JSON", "issue_comment", b"<xml/>".to_vec(), "issue_comment payload does not parse"),
    ];
    for (case, event, body, wanted) in cases {
        let d = Delivery { event, signature: Some(signature(SECRET, &body)), body, content_type: "application/json" };
        let (status, text) = bot.deliver(d).await;
        assert_eq!(status, 400, "case {case}: {text}");
        assert!(text.contains(wanted), "case {case}: {text:?} lacks {wanted:?}");
        bot.no_event(case);
    }
    // GitHub's other content type: the signature is fine, the format is not.
    let body = b"payload=%7B%7D".to_vec();
    let d = Delivery {
        event: "pull_request",
        signature: Some(signature(SECRET, &body)),
        body,
        content_type: "application/x-www-form-urlencoded",
    };
    let (status, text) = bot.deliver(d).await;
    assert_eq!(status, 415, "{text}");
    assert!(text.contains("application/json"), "{text}");
}

#[tokio::test]
async fn without_a_secret_webhooks_are_not_served() {
    let mut bot = start(None, 8).await;
    let (status, text) = bot.deliver(Delivery::signed("pull_request", &example("pull_request", "closed"))).await;
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("no webhook secret is configured"), "{text}");
    bot.no_event("no secret");
}

#[tokio::test]
async fn a_full_queue_answers_503() {
    let mut bot = start(Some(SECRET), 1).await;
    let payload = example("pull_request", "closed");
    assert_eq!(bot.deliver(Delivery::signed("pull_request", &payload)).await.0, 202);
    let (status, text) = bot.deliver(Delivery::signed("pull_request", &payload)).await;
    assert_eq!(status, 503, "{text}");
    bot.event("first");
    bot.no_event("second");
}

#[tokio::test]
async fn healthz_and_metrics() {
    let bot = start(Some(SECRET), 8).await;
    let health = bot.client.get(format!("{}/healthz", bot.url)).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    assert_eq!(health.text().await.unwrap(), "ok");

    bot.metrics.cycle_finished();
    bot.metrics.error("registry");
    bot.deliver(Delivery::signed("ping", &json!({"zen": "Keep it logically awesome."}))).await;
    let metrics = bot.client.get(format!("{}/metrics", bot.url)).send().await.unwrap();
    assert_eq!(metrics.status().as_u16(), 200);
    assert!(metrics.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = metrics.text().await.unwrap();
    for line in [
        "argocd_image_pr_cycles_total 1",
        "argocd_image_pr_webhook_deliveries_total{event=\"ping\",result=\"ping\"} 1",
        "argocd_image_pr_errors_total{kind=\"registry\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} missing from:\n{text}");
    }
}
