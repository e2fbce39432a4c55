//! Command line: options (every flag also from an environment variable) and wiring only.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use argocd_image_pr::daemon::{self, DaemonArgs, Stopped};
use argocd_image_pr::forge::{AnyForge, ByHost, Forge, GithubAuth, GithubForge, GithubSettings, GitlabForge, GitlabSettings};
use argocd_image_pr::{
    ConfigFile, Drivers, Identity, LocalForge, Mode, PlanOptions, RegistrySettings, RepoRef, RunOptions, Templates, output, plan,
    run_once,
};

#[derive(Parser)]
#[command(name = "argocd-image-pr", version, about = "A GitOps pull-request bot for Argo CD")]
struct Cli {
    /// Log filter (tracing env-filter syntax: `info`, `warn`, `argocd_image_pr=debug`); logs go
    /// to stderr. `info` shows the phases of a run, one line per Application and a summary.
    #[arg(long, env = "ARGOCD_IMAGE_PR_LOG", default_value = "warn", global = true)]
    log: String,
    /// Log lines as `text` (colours only on a terminal) or `json` (one object per line, for log
    /// stores).
    #[arg(long, value_enum, env = "ARGOCD_IMAGE_PR_LOG_FORMAT", default_value = "text", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Show, for every annotated Application, the version git has and the version the bot would propose. Changes nothing.
    Plan(PlanArgs),
    /// Propose updates: open, update or close one pull request per Application; once (--once), or
    /// as a daemon: a cycle every --interval, webhooks, /healthz and /metrics.
    Run(RunArgs),
    /// Per Application and image: the version in git, the newest candidate, the open pull
    /// request, and every pin, ignore and hold with who set it, when, and a link. Changes nothing.
    Status(RunArgs),
    /// Act on the local forge's pull requests the way a person would on GitHub.
    Local(LocalArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    #[command(flatten)]
    plan: PlanArgs,
    /// One pass, then exit (a CronJob). Without it: the daemon (docs/webhooks.md).
    #[arg(long, env = "ARGOCD_IMAGE_PR_ONCE")]
    once: bool,
    #[command(flatten)]
    daemon: DaemonArgs,
    /// Where pull requests go: `github`, `gitlab` (merge requests) or `local` (branches pushed to
    /// the repository itself, pull requests as JSON files in --local-forge-dir).
    #[arg(long, env = "ARGOCD_IMAGE_PR_FORGE")]
    forge: Option<ForgeKind>,
    /// A directory of templates replacing the defaults (docs/templates.md).
    #[arg(long, env = "ARGOCD_IMAGE_PR_TEMPLATES_DIR")]
    templates_dir: Option<PathBuf>,
    /// `--forge local`: where pull-request records are kept.
    #[arg(long, env = "ARGOCD_IMAGE_PR_LOCAL_FORGE_DIR")]
    local_forge_dir: Option<PathBuf>,
    #[command(flatten)]
    github: GithubArgs,
    #[command(flatten)]
    gitlab: GitlabArgs,
}

/// `run`'s and `status`'s options for `--forge github`.
#[derive(clap::Args, Clone)]
struct GithubArgs {
    /// `--forge github`: GitHub Enterprise Server URL, https://HOST (or its API base
    /// https://HOST/api/v3); github.com when not given.
    #[arg(long, env = "ARGOCD_IMAGE_PR_GITHUB_URL")]
    github_url: Option<String>,
    /// `--forge github`: a file holding the token (a mounted Secret). Without it, the token is
    /// read from the environment variable GITHUB_TOKEN; there is no flag with the token itself,
    /// so it never shows in `ps`.
    #[arg(long, env = "ARGOCD_IMAGE_PR_GITHUB_TOKEN_FILE")]
    github_token_file: Option<PathBuf>,
    /// `--forge github`: read the token from this environment variable instead of GITHUB_TOKEN.
    #[arg(long, env = "ARGOCD_IMAGE_PR_GITHUB_TOKEN_ENV")]
    github_token_env: Option<String>,
    /// `--forge github`: allow an `http://` --github-url that is not a loopback address (the
    /// token then crosses the network unencrypted).
    #[arg(long, env = "ARGOCD_IMAGE_PR_GITHUB_ALLOW_HTTP")]
    github_allow_http: bool,
    /// `--forge github`: GitHub App id (with --github-app-key).
    #[arg(long, env = "ARGOCD_IMAGE_PR_GITHUB_APP_ID")]
    github_app_id: Option<u64>,
    /// `--forge github`: the GitHub App's private key (PEM file).
    #[arg(long, env = "ARGOCD_IMAGE_PR_GITHUB_APP_KEY")]
    github_app_key: Option<PathBuf>,
}

/// `run`'s and `status`'s options for `--forge gitlab`.
#[derive(clap::Args, Clone)]
struct GitlabArgs {
    /// `--forge gitlab`: the GitLab server, https://HOST (or its API base https://HOST/api/v4);
    /// gitlab.com when not given.
    #[arg(long, env = "ARGOCD_IMAGE_PR_GITLAB_URL")]
    gitlab_url: Option<String>,
    /// `--forge gitlab`: a file holding the token (a mounted Secret). Without it, the token is
    /// read from the environment variable GITLAB_TOKEN; there is no flag with the token itself,
    /// so it never shows in `ps`.
    #[arg(long, env = "ARGOCD_IMAGE_PR_GITLAB_TOKEN_FILE")]
    gitlab_token_file: Option<PathBuf>,
    /// `--forge gitlab`: read the token from this environment variable instead of GITLAB_TOKEN.
    #[arg(long, env = "ARGOCD_IMAGE_PR_GITLAB_TOKEN_ENV")]
    gitlab_token_env: Option<String>,
    /// `--forge gitlab`: allow an `http://` --gitlab-url that is not a loopback address (the
    /// token then crosses the network unencrypted).
    #[arg(long, env = "ARGOCD_IMAGE_PR_GITLAB_ALLOW_HTTP")]
    gitlab_allow_http: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ForgeKind {
    Github,
    Gitlab,
    Local,
}

#[derive(clap::Args)]
struct LocalArgs {
    /// Where pull-request records are kept (as for `run --forge local`).
    #[arg(long, env = "ARGOCD_IMAGE_PR_LOCAL_FORGE_DIR")]
    local_forge_dir: PathBuf,
    /// The repository (path or file:// URL, as the Applications' repoURL names it).
    #[arg(long, env = "ARGOCD_IMAGE_PR_REPO")]
    repo: String,
    #[command(subcommand)]
    action: LocalAction,
}

#[derive(Subcommand)]
enum LocalAction {
    /// Every pull request, newest first.
    List,
    /// One pull request: title, body, comments and diff.
    Show { number: u64 },
    /// Merge it (a merge commit on the base branch).
    Merge { number: u64 },
    /// Close it without merging.
    Close { number: u64 },
    /// Reopen a closed pull request.
    Reopen { number: u64 },
    /// Comment on it.
    Comment {
        number: u64,
        body: String,
        /// Who comments.
        #[arg(long = "as", default_value = "someone")]
        author: String,
    },
    /// Revert a merged pull request on its base branch.
    Revert { number: u64 },
}

#[derive(clap::Args)]
struct PlanArgs {
    /// Directory or git URL (https, ssh, file://) holding Application manifests, or `k8s`
    /// (`k8s:<namespace>`) for the Applications of the cluster; repeatable.
    #[arg(long = "apps", env = "ARGOCD_IMAGE_PR_APPS", value_delimiter = ',')]
    apps: Vec<String>,
    /// kubeconfig for the cluster (`--apps k8s`, `pullsecret:` credentials); default: KUBECONFIG,
    /// ~/.kube/config, then the in-cluster service account.
    #[arg(long, env = "ARGOCD_IMAGE_PR_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use instead of its current one.
    #[arg(long, env = "ARGOCD_IMAGE_PR_CONTEXT")]
    context: Option<String>,
    /// argocd-image-updater registries.conf.
    #[arg(long, env = "ARGOCD_IMAGE_PR_REGISTRIES_CONF")]
    registries_conf: Option<PathBuf>,
    /// docker config.json / .dockerconfigjson with registry credentials; repeatable.
    #[arg(long = "docker-config", env = "ARGOCD_IMAGE_PR_DOCKER_CONFIG", value_delimiter = ',')]
    docker_configs: Vec<PathBuf>,
    /// Configuration file (YAML); flags override it.
    #[arg(long, env = "ARGOCD_IMAGE_PR_CONFIG")]
    config: Option<PathBuf>,
    /// Where git clones (and, on GitLab, what each project's last comment listing saw) are kept
    /// between runs (default: a temporary directory for the life of the process, removed at exit).
    #[arg(long, env = "ARGOCD_IMAGE_PR_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    #[arg(long, value_enum, env = "ARGOCD_IMAGE_PR_OUTPUT", default_value = "table")]
    output: Output,
    /// Deadline to connect to a git server, registry or forge (`10s`, Go duration syntax).
    #[arg(long, env = "ARGOCD_IMAGE_PR_CONNECT_TIMEOUT", default_value = "10s", value_parser = daemon::parse_timeout)]
    connect_timeout: std::time::Duration,
    /// Deadline of one registry or forge request, and how long a git server may send nothing.
    #[arg(long, env = "ARGOCD_IMAGE_PR_TIMEOUT", default_value = "60s", value_parser = daemon::parse_timeout)]
    timeout: std::time::Duration,
    /// Deadline of one whole git operation (clone or fetch, ls-remote, push): past it, that
    /// repository or `--apps` location is reported as failed and the others go on.
    #[arg(long, env = "ARGOCD_IMAGE_PR_GIT_TIMEOUT", default_value = "5m", value_parser = daemon::parse_timeout)]
    git_timeout: std::time::Duration,
}

/// `table` for `plan` and `run`; `status` prints a tree (an Application, its images, their
/// holds), so it is also called `tree` there.
#[derive(Clone, Copy, ValueEnum)]
enum Output {
    #[value(alias = "tree")]
    Table,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // An unusable filter is an error: falling back would hide the logs that were asked for.
    let filter = match tracing_subscriber::EnvFilter::builder().parse(&cli.log) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: --log {:?} is not a log filter ({e}); examples: info, warn, argocd_image_pr=debug", cli.log);
            return ExitCode::from(2);
        }
    };
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().init(),
    }
    match cli.command {
        Command::Plan(args) => run_plan(args),
        Command::Run(args) => run_run(args, Mode::Run),
        Command::Status(args) => run_run(args, Mode::Status),
        Command::Local(args) => run_local(args),
    }
}

fn load_config(path: Option<&PathBuf>) -> Result<ConfigFile, ExitCode> {
    match path {
        Some(path) => ConfigFile::load(path).map_err(|e| {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }),
        None => Ok(ConfigFile::default()),
    }
}

/// Applies the network deadlines to git (process-wide) and returns them for the other clients.
fn network(args: &PlanArgs) -> Result<(), ExitCode> {
    argocd_image_pr::set_git_timeouts(args.connect_timeout, args.timeout, args.git_timeout).map_err(|e| {
        eprintln!("error: git timeouts: {e}");
        ExitCode::from(2)
    })
}

/// What to look at, and the drivers to look with (built once; the daemon keeps them).
fn plan_options(args: PlanArgs, file: &ConfigFile) -> Result<(PlanOptions, Drivers), ExitCode> {
    let registry = RegistrySettings {
        registries_conf: args.registries_conf.or(file.registries_conf.clone()),
        docker_configs: if args.docker_configs.is_empty() { file.docker_configs.clone() } else { args.docker_configs },
        optional_docker_configs: file.optional_docker_configs.clone(),
        connect_timeout: Some(args.connect_timeout),
        request_timeout: Some(args.timeout),
        cache_dir: args.cache_dir.clone().or(file.cache_dir.clone()),
    };
    let cluster = argocd_image_pr::ClusterSettings {
        kubeconfig: args.kubeconfig.or(file.kubeconfig.clone()),
        context: args.context.or(file.context.clone()),
        connect_timeout: Some(args.connect_timeout),
        read_timeout: Some(args.timeout),
    };
    let drivers = Drivers::standard(registry, args.cache_dir.or(file.cache_dir.clone()), cluster).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })?;
    let options = PlanOptions { apps: if args.apps.is_empty() { file.apps.clone() } else { args.apps } };
    Ok((options, drivers))
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Runtime::new().map_err(|e| {
        eprintln!("error: cannot start the async runtime: {e}");
        ExitCode::FAILURE
    })
}

fn run_run(args: RunArgs, mode: Mode) -> ExitCode {
    let file = match load_config(args.plan.config.as_ref()) {
        Ok(f) => f,
        Err(code) => return code,
    };
    // `status` shares the flags of `run` but never starts the daemon.
    let daemon = (mode == Mode::Run && !args.once).then_some(args.daemon);
    let output_kind = args.plan.output;
    let explicit_forge = match (args.forge, file.forge.as_deref()) {
        (Some(k), _) => Some(k),
        (None, Some("local")) => Some(ForgeKind::Local),
        (None, Some("gitlab")) => Some(ForgeKind::Gitlab),
        (None, Some("github")) => Some(ForgeKind::Github),
        (None, None) => None,
        (None, Some(other)) => {
            eprintln!("error: config key forge: {other:?} is not github, gitlab or local");
            return ExitCode::from(2);
        }
    };
    let forge_kind = explicit_forge.unwrap_or(ForgeKind::Github);
    let templates = match args.templates_dir.as_ref().or(file.templates_dir.as_ref()) {
        Some(dir) => match Templates::from_dir(dir) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: templates: {e}");
                return ExitCode::from(2);
            }
        },
        None => Templates::defaults(),
    };
    let identity = file.identity.clone().unwrap_or_default();
    if let Err(code) = network(&args.plan) {
        return code;
    }
    let (connect_timeout, request_timeout) = (args.plan.connect_timeout, args.plan.timeout);
    let cache_dir = args.plan.cache_dir.clone().or(file.cache_dir.clone());
    let (plan, drivers) = match plan_options(args.plan, &file) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let options = RunOptions {
        plan,
        branch_template: file.branch_template.clone().unwrap_or_else(|| argocd_image_pr::DEFAULT_BRANCH_TEMPLATE.into()),
        identity: argocd_image_pr::GitIdentity { name: identity.name.clone(), email: identity.email.clone() },
        repositories: file.repositories.clone(),
        templates: std::sync::Arc::new(templates),
        mode,
    };
    if options.plan.apps.is_empty() {
        eprintln!("error: no Applications to look at: give --apps <DIR or git URL> (or `apps:` in --config)");
        return ExitCode::from(2);
    }
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let pass = Pass { runtime, drivers, options, daemon, mode, output: output_kind };
    if !file.forges.is_empty() {
        // A forge per git host; `--forge` (or `forge:`), when given, serves the other hosts.
        let mut routes = Vec::new();
        for (i, entry) in file.forges.iter().enumerate() {
            match configured_forge(i, entry, &args.github, &args.gitlab, &file, (connect_timeout, request_timeout), cache_dir.as_deref()) {
                Ok(forge) => routes.push((entry.host.clone(), forge)),
                Err(code) => return code,
            }
        }
        let fallback = match explicit_forge {
            None => None,
            Some(ForgeKind::Local) => match local_forge(args.local_forge_dir.or(file.local_forge_dir.clone()), &identity) {
                Ok(f) => Some(AnyForge::Local(f)),
                Err(code) => return code,
            },
            Some(ForgeKind::Github) => match github_forge(&args.github, &file, connect_timeout, request_timeout) {
                Ok(f) => Some(AnyForge::Github(Box::new(f))),
                Err(code) => return code,
            },
            Some(ForgeKind::Gitlab) => match gitlab_forge(&args.gitlab, &file, connect_timeout, request_timeout, cache_dir.as_deref()) {
                Ok(f) => Some(AnyForge::Gitlab(Box::new(f))),
                Err(code) => return code,
            },
        };
        return pass.with_forge(ByHost::new(routes, fallback));
    }
    match forge_kind {
        ForgeKind::Local => match local_forge(args.local_forge_dir.or(file.local_forge_dir.clone()), &identity) {
            Ok(forge) => pass.with_forge(forge),
            Err(code) => code,
        },
        ForgeKind::Github => match github_forge(&args.github, &file, connect_timeout, request_timeout) {
            Ok(forge) => pass.with_forge(forge),
            Err(code) => code,
        },
        ForgeKind::Gitlab => match gitlab_forge(&args.gitlab, &file, connect_timeout, request_timeout, cache_dir.as_deref()) {
            Ok(forge) => pass.with_forge(forge),
            Err(code) => code,
        },
    }
}

/// `run` or `status` once the options are read: everything that does not depend on the forge.
struct Pass {
    runtime: tokio::runtime::Runtime,
    drivers: Drivers,
    options: RunOptions,
    /// `run` without `--once`.
    daemon: Option<DaemonArgs>,
    mode: Mode,
    output: Output,
}

impl Pass {
    /// The one path every forge takes: the daemon, or one pass and its report.
    fn with_forge<F: Forge>(self, forge: F) -> ExitCode {
        let Pass { runtime, drivers, options, daemon, mode, output } = self;
        if let Some(daemon) = daemon {
            return run_daemon(runtime, &forge, &drivers, options, &daemon);
        }
        let report = runtime.block_on(run_once(&forge, &drivers, options));
        let text = match (mode, output) {
            (Mode::Run, Output::Table) => output::run_table(&report),
            (Mode::Run, Output::Json) => output::run_json(&report),
            (Mode::Status, Output::Table) => output::status_table(&report),
            (Mode::Status, Output::Json) => output::status_json(&report),
        };
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{}", text.trim_end());
        if report.has_errors() { ExitCode::FAILURE } else { ExitCode::SUCCESS }
    }
}

/// `--forge local`: pull requests as files in `dir`, by the configured identity.
fn local_forge(dir: Option<PathBuf>, identity: &Identity) -> Result<LocalForge, ExitCode> {
    let Some(dir) = dir else {
        eprintln!("error: --forge local needs --local-forge-dir DIR (or `localForgeDir:` in --config)");
        return Err(ExitCode::from(2));
    };
    Ok(LocalForge::new(dir, identity.name.clone()))
}

/// `--forge github`: the token or App, the server and the deadlines.
fn github_forge(
    args: &GithubArgs,
    file: &ConfigFile,
    connect_timeout: std::time::Duration,
    request_timeout: std::time::Duration,
) -> Result<GithubForge, ExitCode> {
    let token = match forge_token("github", args.github_token_file.as_deref(), args.github_token_env.as_deref(), "GITHUB_TOKEN") {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return Err(ExitCode::from(2));
        }
    };
    let auth = match (args.github_app_id, &args.github_app_key, token) {
        (Some(app_id), Some(key), _) => match std::fs::read_to_string(key) {
            Ok(pem) => GithubAuth::App { app_id, private_key_pem: pem },
            Err(e) => {
                eprintln!("error: --github-app-key {}: {e}", key.display());
                return Err(ExitCode::from(2));
            }
        },
        (Some(_), None, _) | (None, Some(_), _) => {
            eprintln!("error: a GitHub App needs both --github-app-id and --github-app-key");
            return Err(ExitCode::from(2));
        }
        (None, None, Some(token)) => GithubAuth::Token(token),
        (None, None, None) => {
            eprintln!(
                "error: --forge github needs a token (GITHUB_TOKEN, --github-token-file FILE or --github-token-env VAR) or a GitHub App (--github-app-id and --github-app-key)"
            );
            return Err(ExitCode::from(2));
        }
    };
    let url = args.github_url.clone().or(file.github_url.clone());
    let mut settings = GithubSettings::new(url, auth);
    settings.allow_http = args.github_allow_http;
    settings.connect_timeout = connect_timeout;
    settings.read_timeout = request_timeout;
    GithubForge::new(settings).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}

/// `forges[i]` of the config file: its kind's driver for its server, with its own token file
/// when it names one.
fn configured_forge(
    i: usize,
    entry: &argocd_image_pr::ForgeEntry,
    github: &GithubArgs,
    gitlab: &GitlabArgs,
    file: &ConfigFile,
    (connect_timeout, request_timeout): (std::time::Duration, std::time::Duration),
    cache_dir: Option<&std::path::Path>,
) -> Result<AnyForge, ExitCode> {
    let url = entry.url.clone().or_else(|| {
        let host = entry.host.to_ascii_lowercase();
        (host != "github.com" && host != "gitlab.com").then(|| format!("https://{}", entry.host))
    });
    match entry.kind.as_str() {
        "github" => {
            let mut args = github.clone();
            args.github_url = url;
            args.github_token_file = entry.token_file.clone().or(args.github_token_file);
            github_forge(&args, file, connect_timeout, request_timeout).map(|f| AnyForge::Github(Box::new(f)))
        }
        "gitlab" => {
            let mut args = gitlab.clone();
            args.gitlab_url = url;
            args.gitlab_token_file = entry.token_file.clone().or(args.gitlab_token_file);
            gitlab_forge(&args, file, connect_timeout, request_timeout, cache_dir).map(|f| AnyForge::Gitlab(Box::new(f)))
        }
        other => {
            eprintln!("error: config key forges[{i}].kind: {other:?} is not github or gitlab (host {})", entry.host);
            Err(ExitCode::from(2))
        }
    }
}

/// `--forge gitlab`: the token, the server and the deadlines.
fn gitlab_forge(
    args: &GitlabArgs,
    file: &ConfigFile,
    connect_timeout: std::time::Duration,
    request_timeout: std::time::Duration,
    cache_dir: Option<&std::path::Path>,
) -> Result<GitlabForge, ExitCode> {
    let token = match forge_token("gitlab", args.gitlab_token_file.as_deref(), args.gitlab_token_env.as_deref(), "GITLAB_TOKEN") {
        Ok(Some(t)) => t,
        Ok(None) => {
            eprintln!("error: --forge gitlab needs a token (GITLAB_TOKEN, --gitlab-token-file FILE or --gitlab-token-env VAR)");
            return Err(ExitCode::from(2));
        }
        Err(e) => {
            eprintln!("error: {e}");
            return Err(ExitCode::from(2));
        }
    };
    let url = args.gitlab_url.clone().or(file.gitlab_url.clone());
    let mut settings = GitlabSettings::new(url, token);
    settings.allow_http = args.gitlab_allow_http;
    settings.connect_timeout = connect_timeout;
    settings.read_timeout = request_timeout;
    settings.cache_dir = cache_dir.map(std::path::Path::to_path_buf);
    GitlabForge::new(settings).map_err(|e| {
        eprintln!("error: {}", e.message);
        ExitCode::from(2)
    })
}

/// A forge's token: from `--<forge>-token-file`, else the variable `--<forge>-token-env` names,
/// else `default_var` (`GITHUB_TOKEN`, `GITLAB_TOKEN`). A file or variable named explicitly must
/// hold a token: falling back to another one would run the bot as someone else than the
/// operator meant.
fn forge_token(
    forge: &str,
    file: Option<&std::path::Path>,
    env: Option<&str>,
    default_var: &str,
) -> Result<Option<String>, String> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| format!("--{forge}-token-file {}: {e}", path.display()))?;
        let token = text.trim().to_string();
        if token.is_empty() {
            return Err(format!("--{forge}-token-file {}: the file is empty", path.display()));
        }
        return Ok(Some(token));
    }
    if let Some(var) = env {
        return match std::env::var(var) {
            Ok(t) if !t.trim().is_empty() => Ok(Some(t.trim().to_string())),
            _ => Err(format!("--{forge}-token-env {var}: the environment variable {var} is not set or empty")),
        };
    }
    Ok(std::env::var(default_var).ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()))
}

/// `run` without `--once`: exit 0 after a signal once the running cycle finished, 1 when it had to
/// be cut short or the server failed, 2 when the daemon cannot start.
fn run_daemon<F: Forge>(
    runtime: tokio::runtime::Runtime,
    forge: &F,
    drivers: &Drivers,
    options: RunOptions,
    args: &DaemonArgs,
) -> ExitCode {
    let result = runtime.block_on(daemon::run(forge, drivers, options, args));
    // A cycle cut short may leave a git worker thread blocked on the network: do not wait for it
    // (dropping the runtime would).
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(Stopped::Clean) => ExitCode::SUCCESS,
        Ok(Stopped::CycleAbandoned) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            if e.at_startup() { ExitCode::from(2) } else { ExitCode::FAILURE }
        }
    }
}

fn run_local(args: LocalArgs) -> ExitCode {
    let Some(repo) = RepoRef::from_url(&args.repo) else {
        eprintln!("error: --repo {}: not a repository path or URL", args.repo);
        return ExitCode::from(2);
    };
    let forge = LocalForge::new(&args.local_forge_dir, Identity::default().name);
    let result = match args.action {
        LocalAction::List => forge.list(&repo).map(|prs| {
            prs.iter()
                .map(|p| format!("#{} [{}] {} ({} -> {})", p.number, format!("{:?}", p.state).to_lowercase(), p.title, p.head, p.base))
                .collect::<Vec<_>>()
                .join("\n")
        }),
        LocalAction::Show { number } => forge.show(&repo, number).map(|v| v.to_string()),
        LocalAction::Merge { number } => forge.merge(&repo, number).map(|p| format!("merged #{}: {}", p.number, p.merge_commit_sha.unwrap_or_default())),
        LocalAction::Close { number } => forge.close(&repo, number).map(|p| format!("closed #{}", p.number)),
        LocalAction::Reopen { number } => forge.reopen(&repo, number).map(|p| format!("reopened #{}", p.number)),
        LocalAction::Comment { number, body, author } => {
            forge.comment(&repo, number, &author, &body).map(|c| format!("comment {} on #{number}", c.id))
        }
        LocalAction::Revert { number } => forge.revert(&repo, number).map(|sha| format!("reverted #{number}: {sha}")),
    };
    match result {
        Ok(text) => {
            println!("{}", text.trim_end());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_plan(args: PlanArgs) -> ExitCode {
    let file = match load_config(args.config.as_ref()) {
        Ok(f) => f,
        Err(code) => return code,
    };
    if let Err(code) = network(&args) {
        return code;
    }
    let output_kind = args.output;
    let (options, drivers) = match plan_options(args, &file) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if options.apps.is_empty() {
        eprintln!("error: no Applications to look at: give --apps <DIR or git URL> (or `apps:` in --config)");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = runtime.block_on(plan(&drivers, options));
    let text = match output_kind {
        Output::Table => output::table(&report, std::io::stdout().is_terminal()),
        Output::Json => output::json(&report),
    };
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{}", text.trim_end());
    if report.has_errors() { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
