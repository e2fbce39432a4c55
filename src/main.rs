//! Command line: options (every flag also from an environment variable) and wiring only.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use argocd_image_pr::{ConfigFile, PlanOptions, RegistrySettings, output, plan};

#[derive(Parser)]
#[command(name = "argocd-image-pr", version, about = "A GitOps pull-request bot for Argo CD")]
struct Cli {
    /// Log filter (tracing env-filter syntax), logs go to stderr.
    #[arg(long, env = "ARGOCD_IMAGE_PR_LOG", default_value = "warn", global = true)]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show, for every annotated Application, the version git has and the version the bot would propose. Changes nothing.
    Plan(PlanArgs),
}

#[derive(clap::Args)]
struct PlanArgs {
    /// Directory or git URL (https, ssh, file://) holding Application manifests; repeatable.
    #[arg(long = "apps", env = "ARGOCD_IMAGE_PR_APPS", value_delimiter = ',')]
    apps: Vec<String>,
    /// argocd-image-updater registries.conf.
    #[arg(long, env = "ARGOCD_IMAGE_PR_REGISTRIES_CONF")]
    registries_conf: Option<PathBuf>,
    /// docker config.json / .dockerconfigjson with registry credentials; repeatable.
    #[arg(long = "docker-config", env = "ARGOCD_IMAGE_PR_DOCKER_CONFIG", value_delimiter = ',')]
    docker_configs: Vec<PathBuf>,
    /// Configuration file (YAML); flags override it.
    #[arg(long, env = "ARGOCD_IMAGE_PR_CONFIG")]
    config: Option<PathBuf>,
    /// Where git clones are kept between runs (default: a temporary directory per run).
    #[arg(long, env = "ARGOCD_IMAGE_PR_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    #[arg(long, value_enum, env = "ARGOCD_IMAGE_PR_OUTPUT", default_value = "table")]
    output: Output,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Plan(args) => run_plan(args),
    }
}

fn run_plan(args: PlanArgs) -> ExitCode {
    let file = match &args.config {
        Some(path) => match ConfigFile::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        None => ConfigFile::default(),
    };
    let options = PlanOptions {
        apps: if args.apps.is_empty() { file.apps } else { args.apps },
        registry: RegistrySettings {
            registries_conf: args.registries_conf.or(file.registries_conf),
            docker_configs: if args.docker_configs.is_empty() { file.docker_configs } else { args.docker_configs },
        },
        cache_dir: args.cache_dir.or(file.cache_dir),
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
    let report = runtime.block_on(plan(options));
    let text = match args.output {
        Output::Table => output::table(&report, std::io::stdout().is_terminal()),
        Output::Json => output::json(&report),
    };
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{}", text.trim_end());
    if report.has_errors() { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
