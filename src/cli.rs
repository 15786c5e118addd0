//! Command-line arguments (parsing only; execution lives in `commands/`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{ProviderKind, DEFAULT_CONFIG};

#[derive(Debug, Parser)]
#[command(
    name = "daft",
    version,
    about = "From \"I have code\" to \"it runs on a Ray cluster\" with one TOML file",
    long_about = "daft brings up a Ray cluster (on AWS EC2, on your own SSH hosts, on this machine, in a Slurm allocation or on Kubernetes through KubeRay) from one \
                  .daft.toml file, runs your code on it, and takes it down again.\n\n\
                  Set RUST_LOG=debug to see every remote command and API call."
)]
pub struct Cli {
    /// Print only results and warnings: no progress lines, no notes
    #[arg(short = 'q', long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented .daft.toml template
    InitConfig(InitConfigArgs),
    /// Show what `up` would change, without changing anything
    Plan(PlanArgs),
    /// Create or update the cluster to match the config
    Up(UpArgs),
    /// Remove every node and resource of the cluster
    Down(DownArgs),
    /// List daft clusters and their nodes
    List(ListArgs),
    /// Zip a working directory, send it to the head and run a command there as a job
    Submit(SubmitArgs),
    /// List the cluster's jobs
    Jobs(JobsArgs),
    /// Print (or follow) a job's output from the start
    Logs(LogsArgs),
    /// Stop a running job
    Cancel(CancelArgs),
    /// Copy a job's directory (output, logs, record) back from the head; only what changed
    Pull(PullArgs),
    /// Forward the head's Ray dashboard to localhost
    Dashboard(DashboardArgs),
    /// Set, change or cancel how long the running cluster may be idle before it takes itself down
    Autostop(AutostopArgs),
    /// Build the project's image, push it and run it on Kubernetes as a Job (a RayJob with workers), following its pods' logs
    Launch(LaunchArgs),
    /// Check what the configured commands need here (builder, Kubernetes access, KubeRay, AWS credentials, SSH keys, git)
    Doctor(DoctorArgs),
    /// Run a command on the head, a named node, the workers or every node; each line prefixed with its node
    #[command(
        after_help = "Examples:\n  daft exec -- nvidia-smi                 # the head\n  daft exec --all -- 'df -h /tmp'\n  daft exec worker-2 -- python -c 'import ray; print(ray.__version__)'\n\nNodes are named as `daft list` orders them: head, worker-1, worker-2, … (or give a node's id).\nExit status 1 when the command failed on any node."
    )]
    Exec(ExecArgs),
    /// Print `Host` entries for the cluster's nodes, so plain ssh, scp and editors reach them
    #[command(
        after_help = "Example:\n  daft ssh-config > ~/.ssh/daft-demo.conf\n  echo 'Include ~/.ssh/daft-demo.conf' >> ~/.ssh/config   # once\n  ssh demo            # the head\n  ssh demo-worker-1   # a worker"
    )]
    SshConfig(SshConfigArgs),
    /// Print the JSON Schema of .daft.toml (or launch.toml) for editors that check TOML as you type
    #[command(
        after_help = "Examples:\n  daft schema > .daft.schema.json\n  daft schema --launch > launch.schema.json\n\nWith Even Better TOML (taplo), point the file at it: a first line\n  #:schema ./.daft.schema.json"
    )]
    Schema(SchemaArgs),
    /// Print a shell completion script
    #[command(
        after_help = "Examples:\n  daft completions bash > ~/.local/share/bash-completion/completions/daft\n  daft completions zsh > \"${fpath[1]}/_daft\"\n  daft completions fish > ~/.config/fish/completions/daft.fish"
    )]
    Completions(CompletionsArgs),
}

impl Command {
    /// The result format the command was asked for (`--output`; text for those without one).
    pub fn output(&self) -> OutputFormat {
        match self {
            Command::Plan(a) => a.output,
            Command::List(a) => a.output,
            Command::Submit(a) => a.output,
            Command::Jobs(a) => a.output,
            Command::Doctor(a) => a.output,
            Command::InitConfig(_)
            | Command::Up(_)
            | Command::Down(_)
            | Command::Logs(_)
            | Command::Cancel(_)
            | Command::Pull(_)
            | Command::Dashboard(_)
            | Command::Autostop(_)
            | Command::Launch(_)
            | Command::SshConfig(_)
            | Command::Exec(_)
            | Command::Schema(_)
            | Command::Completions(_) => OutputFormat::Text,
        }
    }
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The cluster config to check for (default: .daft.toml when it exists)
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The launch file to check for (default: launch.toml when it exists)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub launch: Option<PathBuf>,
    /// Output format
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    pub output: OutputFormat,
}

/// `--output text|json` (the printer's result format).
pub use crate::printer::Format as OutputFormat;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProviderArg {
    Aws,
    Ssh,
    Local,
    Slurm,
    Kubernetes,
}

impl From<ProviderArg> for ProviderKind {
    fn from(p: ProviderArg) -> Self {
        match p {
            ProviderArg::Aws => ProviderKind::Aws,
            ProviderArg::Ssh => ProviderKind::Ssh,
            ProviderArg::Local => ProviderKind::Local,
            ProviderArg::Slurm => ProviderKind::Slurm,
            ProviderArg::Kubernetes => ProviderKind::Kubernetes,
        }
    }
}

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The config file
    #[arg(short = 'c', long = "config", value_name = "FILE", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct KeyArg {
    /// Private key for SSH (overrides `ssh_private_key`; else ssh-agent is used)
    #[arg(short = 'i', long = "identity", value_name = "KEY")]
    pub identity: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InitConfigArgs {
    /// Where to write the config
    #[arg(value_name = "FILE", default_value = DEFAULT_CONFIG)]
    pub file: PathBuf,
    /// Which back-end the cluster runs on
    #[arg(long, value_enum, default_value = "aws")]
    pub provider: ProviderArg,
    /// Fill in the cluster's name
    #[arg(long)]
    pub name: Option<String>,
    /// Overwrite an existing file
    #[arg(long)]
    pub force: bool,
    /// Write a launch.toml (a job for `daft launch`) instead of a cluster config
    #[arg(long)]
    pub launch: bool,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub key: KeyArg,
    /// Every node of the cluster
    #[arg(long, conflicts_with_all = ["workers", "node"])]
    pub all: bool,
    /// Every worker
    #[arg(long, conflicts_with = "node")]
    pub workers: bool,
    /// One node: head, worker-N, or its id (default: the head)
    #[arg(value_name = "NODE")]
    pub node: Option<String>,
    /// The command: several words are one argument each; a single word is a shell command line
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SshConfigArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub key: KeyArg,
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// The schema of launch.toml instead of .daft.toml
    #[arg(long)]
    pub launch: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct LaunchArgs {
    /// The launch file
    #[arg(short = 'f', long = "file", value_name = "FILE", default_value = crate::config::launch::DEFAULT_LAUNCH)]
    pub file: PathBuf,
    /// Print the manifests it would create; build and create nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Run the command on this machine instead (no image, no Kubernetes)
    #[arg(long)]
    pub local: bool,
    /// Build from a working tree with uncommitted changes (the tag then carries a hash of the diff)
    #[arg(long)]
    pub allow_dirty: bool,
    /// Do not warn when the commit is on no remote
    #[arg(long)]
    pub allow_unpushed: bool,
    /// Follow an existing job (its name) instead of launching one
    #[arg(long, value_name = "JOB", conflicts_with_all = ["dry_run", "local", "delete"])]
    pub follow: Option<String>,
    /// Delete an existing job (its name) and its pods
    #[arg(long, value_name = "JOB", conflicts_with_all = ["dry_run", "local"])]
    pub delete: Option<String>,
    /// Start the job and return, without following it
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// How long the job's first pod may take to start
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub start_timeout: std::time::Duration,
    /// The command (default: `command` in the launch file); several words are one argument each
    #[arg(last = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LockArg {
    /// Fail at once when another `up`/`down` of this cluster runs, instead of waiting for it
    #[arg(long)]
    pub no_wait_lock: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub key: KeyArg,
    /// Output format
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub key: KeyArg,
    #[command(flatten)]
    pub lock: LockArg,
    /// Apply without asking, even when the plan removes nodes
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Return as soon as the nodes are running, without connecting to them
    #[arg(long)]
    pub no_wait: bool,
    /// Also wait until every worker has joined the cluster
    #[arg(long)]
    pub wait_workers: bool,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub key: KeyArg,
    #[command(flatten)]
    pub lock: LockArg,
    /// Remove without asking
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Forget nodes that cannot be reached (a host that is gone for good) instead of failing
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this config's provider and region (default: local clusters and the config's region when a config exists)
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub key: KeyArg,
    /// AWS region to list (default: the config's, else us-west-2)
    #[arg(long)]
    pub region: Option<String>,
    /// List every AWS region
    #[arg(long)]
    pub all_regions: bool,
    /// Skip AWS (list local clusters only)
    #[arg(long)]
    pub local_only: bool,
    /// Output format
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub key: KeyArg,
    /// The working directory to send
    #[arg(
        short = 'w',
        long = "working-dir",
        value_name = "DIR",
        default_value = "."
    )]
    pub working_dir: PathBuf,
    /// Start the job and return (it runs on without this connection; `daft logs -f JOB` follows it)
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// The job's name (default: the working directory's name)
    #[arg(long)]
    pub name: Option<String>,
    /// An environment variable for the job (repeatable); added to `[run] env`
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// A sweep: one job per variant of this file's [sweep] table (grid, random or list), named
    /// <sweep>-<n>, `max_parallel` at a time; a summary table at the end
    #[arg(long, value_name = "FILE")]
    pub sweep: Option<PathBuf>,
    /// Output format of a sweep's summary
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    pub output: OutputFormat,
    /// Submit even though the working directory's git repository has uncommitted changes
    /// (the job records the diff)
    #[arg(long)]
    pub allow_dirty: bool,
    /// The command to run on the head, after `--` (default: `[run] command`). Several words are
    /// passed as they are, each one argument; a single word is a shell command line
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct JobsArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub key: KeyArg,
    /// Output format
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub key: KeyArg,
    /// The job: its id, a unique part of it, its name (the newest of that name), or `last`
    #[arg(value_name = "JOB")]
    pub job: String,
    /// Follow the output until the job ends, then exit with its status
    #[arg(short = 'f', long)]
    pub follow: bool,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub key: KeyArg,
    /// The job: its id, a unique part of it, its name (the newest of that name), or `last`
    #[arg(value_name = "JOB")]
    pub job: String,
    /// Where to put it (default: ./daft-jobs/JOB_ID)
    #[arg(value_name = "DEST")]
    pub dest: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub key: KeyArg,
    /// The job: its id, a unique part of it, its name (the newest of that name), or `last`
    #[arg(value_name = "JOB")]
    pub job: String,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  daft autostop 30m        down after 30 minutes with no job, task or actor\n  daft autostop --cancel   keep it until `daft down`"
)]
pub struct AutostopArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub key: KeyArg,
    /// How long the cluster may be idle (no daft job, no Ray job, task or actor), e.g. 30m, 2h
    #[arg(
        value_name = "DURATION",
        required_unless_present = "cancel",
        conflicts_with = "cancel"
    )]
    pub duration: Option<String>,
    /// Keep the cluster until `daft down`
    #[arg(long)]
    pub cancel: bool,
}

#[derive(Debug, Args)]
pub struct DashboardArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub key: KeyArg,
    /// Local port to listen on (127.0.0.1 only)
    #[arg(long, default_value_t = 8265)]
    pub port: u16,
    /// The dashboard's port on the head (Ray's default: 8265)
    #[arg(long, value_name = "PORT")]
    pub remote_port: Option<u16>,
    /// Do not open a browser
    #[arg(long)]
    pub no_browser: bool,
    /// Print the cluster's Ray token (the dashboard asks for it once) and exit
    #[arg(long)]
    pub show_token: bool,
}
