//! The command line: every command, flag and exit code.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub const EXIT_CODES: &str = "\
Exit codes:
  0  done (`diff`: no difference)
  1  `diff`: there are differences
  2  bad usage, or a bad input file (each fault as file:line:column)
  3  the controller refused the request (invalid, not found, exists,
     stale etag, over a limit, not allowed)
  4  the controller could not be reached, or its store is unavailable
  5  `status --wait`: the revision was not applied within the timeout";

/// lbctl: operate the load balancer through a node controller's gRPC API.
#[derive(Debug, Parser)]
#[command(name = "lbctl", version, after_long_help = EXIT_CODES, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(flatten)]
    pub connection: Connection,
    /// Output: aligned tables for people, or JSON / YAML (proto3 JSON
    /// field names, stable) for scripts.
    #[arg(short, long, value_enum, global = true, default_value_t = Output::Table)]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the controller is. Flags win over `LBCTL_*` variables, which
/// win over the config file (`--config`, `LBCTL_CONFIG`, else
/// `~/.config/lbctl/config.yaml` when it exists).
#[derive(Debug, Args)]
pub struct Connection {
    /// The controller's API [default: http://127.0.0.1:9620]
    #[arg(long, env = "LBCTL_ENDPOINT", global = true)]
    pub endpoint: Option<String>,
    /// Seconds to wait for a call's answer [default: 30]
    #[arg(long, env = "LBCTL_REQUEST_TIMEOUT", global = true)]
    pub request_timeout: Option<f64>,
    /// lbctl's config file (YAML: `endpoint`, `requestTimeout`, `tlsCa`,
    /// `tlsCert`, `tlsKey`, `tlsServerName`).
    #[arg(long, env = "LBCTL_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// CA that signed the controller's certificate (PEM): TLS.
    #[arg(long, env = "LBCTL_TLS_CA", global = true)]
    pub tls_ca: Option<PathBuf>,
    /// This client's certificate (PEM), for a controller that asks for one.
    #[arg(long, env = "LBCTL_TLS_CERT", global = true)]
    pub tls_cert: Option<PathBuf>,
    /// This client's private key (PEM).
    #[arg(long, env = "LBCTL_TLS_KEY", global = true)]
    pub tls_key: Option<PathBuf>,
    /// The name the controller's certificate is checked against
    /// [default: the endpoint's host].
    #[arg(long, env = "LBCTL_TLS_SERVER_NAME", global = true)]
    pub tls_server_name: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, read, replace and delete VIPs.
    #[command(subcommand)]
    Vip(VipCommand),
    /// Change one backend of a VIP.
    #[command(subcommand)]
    Backend(BackendCommand),
    /// Make the store's VIPs match files: creates and updates, in one
    /// transaction; deletes only with --prune, and only VIPs this owner
    /// applied.
    Apply(ApplyArgs),
    /// What `apply` would change. Exit 0: nothing; 1: differences.
    Diff(FilesArgs),
    /// Desired, applied and actual state of the node, side by side.
    Status(StatusArgs),
    /// The dataplane's counters.
    Stats(StatsArgs),
    /// Which VIP and backend a flow gets, and why.
    Explain(ExplainArgs),
    /// Shell completions, to stdout.
    Completion { shell: clap_complete::Shell },
}

#[derive(Debug, Args)]
pub struct Write {
    /// Only if the VIP is still at this etag (from `vip get`).
    #[arg(long)]
    pub etag: Option<String>,
    /// Check the change on the controller, write nothing.
    #[arg(long)]
    pub validate_only: bool,
}

#[derive(Debug, Subcommand)]
pub enum VipCommand {
    /// Create a VIP from a file (-f) or from flags.
    Create {
        /// A file of one VIP (YAML or JSON, lb.v1.Vip).
        #[arg(short, long, conflicts_with_all = ["name", "address"])]
        file: Option<PathBuf>,
        #[command(flatten)]
        spec: VipSpec,
        /// Check on the controller, write nothing.
        #[arg(long)]
        validate_only: bool,
    },
    /// One VIP.
    Get { name: String },
    /// Every VIP.
    List,
    /// Replace a VIP whole with the one in a file (or given by flags).
    Update {
        #[arg(short, long, conflicts_with_all = ["name", "address"])]
        file: Option<PathBuf>,
        #[command(flatten)]
        spec: VipSpec,
        #[command(flatten)]
        write: Write,
    },
    /// Delete a VIP.
    Delete {
        name: String,
        #[command(flatten)]
        write: Write,
    },
}

/// A VIP from flags.
#[derive(Debug, Args)]
pub struct VipSpec {
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long)]
    pub address: Option<String>,
    #[arg(long, default_value_t = 0)]
    pub port: u32,
    #[arg(long, value_enum, default_value_t = Protocol::Tcp)]
    pub protocol: Protocol,
    /// A backend: ADDRESS or ADDRESS*WEIGHT; repeat for more.
    #[arg(long = "backend")]
    pub backends: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    Tcp,
    Udp,
}

#[derive(Debug, Subcommand)]
pub enum BackendCommand {
    /// Add a backend to a VIP.
    Add {
        vip: String,
        address: String,
        #[arg(long)]
        weight: Option<u32>,
        #[command(flatten)]
        write: Write,
    },
    /// Remove a backend from a VIP.
    Remove {
        vip: String,
        address: String,
        #[command(flatten)]
        write: Write,
    },
    /// Take a backend out of rotation: no new flows, placed flows stay.
    Drain {
        vip: String,
        address: String,
        #[command(flatten)]
        write: Write,
    },
    /// Put a drained backend back into rotation.
    Activate {
        vip: String,
        address: String,
        #[command(flatten)]
        write: Write,
    },
    /// Set a backend's weight (1 to 65535).
    Weight {
        vip: String,
        address: String,
        weight: u32,
        #[command(flatten)]
        write: Write,
    },
}

#[derive(Debug, Args)]
pub struct FilesArgs {
    /// A file, or a directory of *.yaml, *.yml and *.json files; repeat
    /// for more. A YAML file may hold several VIPs as documents.
    #[arg(short, long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// The owner recorded on the VIPs applied, and the only one pruned.
    #[arg(long, default_value = "lbctl")]
    pub owner: String,
    /// Also delete VIPs of this owner that the files no longer hold.
    #[arg(long)]
    pub prune: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub files: FilesArgs,
    /// Bulk load: in several transactions within the store's limits, not
    /// all-or-nothing.
    #[arg(long)]
    pub chunked: bool,
    /// Check on the controller, write nothing.
    #[arg(long)]
    pub validate_only: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Wait until the node has applied this store revision (from a
    /// write's output), then print the status.
    #[arg(long, value_name = "REVISION")]
    pub wait: Option<u64>,
    /// Seconds to wait with --wait.
    #[arg(long, default_value_t = 30.0, requires = "wait")]
    pub timeout: f64,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Print a snapshot every interval until interrupted.
    #[arg(long)]
    pub watch: bool,
    /// Seconds between snapshots with --watch.
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Client address.
    pub source: String,
    /// VIP address.
    pub destination: String,
    #[arg(value_enum)]
    pub protocol: Protocol,
    /// Client port [default: 0].
    pub source_port: Option<u32>,
    /// VIP port [default: that of the address's one VIP].
    pub destination_port: Option<u32>,
}
