//! `lbctl`: the operator's CLI over a node controller's gRPC API.

mod apply;
mod cli;
mod client;
mod fail;
mod files;
mod output;

use std::{process::ExitCode, time::Duration};

use clap::{CommandFactory as _, Parser as _};
use futures_util::StreamExt as _;
use lb_proto::v1::{self as pb, TransactMode};

use crate::{
    cli::{BackendCommand, Cli, Command, Output, Protocol, VipCommand, VipSpec, Write},
    client::Clients,
    fail::{Called as _, Failure, Result},
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if f.code != fail::DIFFERENT {
                eprintln!("lbctl: {}", f.message);
            }
            ExitCode::from(f.code)
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    if let Command::Completion { shell } = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "lbctl", &mut std::io::stdout());
        return Ok(());
    }
    let mut c = client::connect(&cli.connection).await?;
    let out = cli.output;
    match cli.command {
        Command::Vip(v) => vip(&mut c, out, v).await,
        Command::Backend(b) => backend(&mut c, out, b).await,
        Command::Apply(a) => {
            let changes = plan(&mut c, &a.files).await?;
            if changes.is_empty() {
                println!("no changes: the store matches the files");
                return Ok(());
            }
            let response = c
                .vips
                .transact(pb::TransactRequest {
                    changes: changes.iter().map(apply::Change::to_request).collect(),
                    mode: if a.chunked {
                        TransactMode::Chunked
                    } else {
                        TransactMode::Atomic
                    }
                    .into(),
                    validate_only: a.validate_only,
                })
                .await
                .called("applying")?;
            output::print(out, &response, |r| {
                let mut s = String::new();
                for ch in &changes {
                    let verb = match ch {
                        apply::Change::Create { .. } => "created",
                        apply::Change::Update { .. } => "updated",
                        apply::Change::Delete { .. } => "deleted",
                    };
                    s.push_str(&format!(
                        "{}{verb} {}\n",
                        if a.validate_only { "would have " } else { "" },
                        ch.name()
                    ));
                }
                s.push_str(&format!(
                    "store revision {} ({} transaction{}); `lbctl status --wait {}` waits for a node to apply it\n",
                    r.store_revision,
                    r.chunks.len(),
                    if r.chunks.len() == 1 { "" } else { "s" },
                    r.store_revision
                ));
                s
            });
            Ok(())
        }
        Command::Diff(files) => {
            let changes = plan(&mut c, &files).await?;
            print!("{}", apply::render(&changes));
            if changes.is_empty() {
                Ok(())
            } else {
                Err(Failure::new(fail::DIFFERENT, "differences"))
            }
        }
        Command::Status(s) => {
            let status = match s.wait {
                None => c
                    .node
                    .get_status(pb::GetStatusRequest {})
                    .await
                    .called("status")?,
                Some(revision) => wait(&mut c, revision, s.timeout).await?,
            };
            output::print(out, &status, output::status);
            Ok(())
        }
        Command::Stats(s) => {
            if !s.watch {
                let stats = c
                    .node
                    .get_stats(pb::GetStatsRequest {})
                    .await
                    .called("stats")?;
                output::print(out, &stats, output::stats);
                return Ok(());
            }
            let interval_ms = (s.interval * 1000.0).clamp(100.0, 3_600_000.0) as u32;
            let mut stream = c
                .node
                .watch_stats(pb::WatchStatsRequest { interval_ms })
                .await
                .called("stats")?;
            while let Some(stats) = stream.next().await {
                let stats = stats.map_err(|s| Failure::status("stats", &s))?;
                output::print(out, &stats, |s| format!("{}\n", output::stats(s)));
            }
            Ok(())
        }
        Command::Explain(e) => {
            let answer = c
                .node
                .explain_flow(pb::ExplainFlowRequest {
                    source: e.source,
                    destination: e.destination,
                    protocol: protocol(e.protocol).into(),
                    source_port: e.source_port.unwrap_or(0),
                    destination_port: e.destination_port,
                })
                .await
                .called("explaining the flow")?;
            output::print(out, &answer, output::explanation);
            Ok(())
        }
        Command::Completion { .. } => unreachable!("handled before connecting"),
    }
}

fn protocol(p: Protocol) -> pb::Protocol {
    match p {
        Protocol::Tcp => pb::Protocol::Tcp,
        Protocol::Udp => pb::Protocol::Udp,
    }
}

/// Every VIP, page by page (one listing, one revision).
async fn list_all(c: &mut Clients) -> Result<Vec<pb::VipResource>> {
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = c
            .vips
            .list_vips(pb::ListVipsRequest {
                page_size: 0,
                page_token,
            })
            .await
            .called("listing VIPs")?;
        all.extend(page.vips);
        if page.next_page_token.is_empty() {
            return Ok(all);
        }
        page_token = page.next_page_token;
    }
}

async fn plan(c: &mut Clients, f: &cli::FilesArgs) -> Result<Vec<apply::Change>> {
    let documents = files::read_all(&f.files)?;
    let stored = list_all(c).await?;
    Ok(apply::plan(&documents, &stored, &f.owner, f.prune))
}

/// The status once the node has applied `revision`.
async fn wait(c: &mut Clients, revision: u64, timeout: f64) -> Result<pb::NodeStatus> {
    let watch = async {
        let mut stream = c
            .node
            .watch_status(pb::WatchStatusRequest {
                read_back_interval_ms: 0,
            })
            .await
            .called("status")?;
        while let Some(status) = stream.next().await {
            let status = status.map_err(|s| Failure::status("status", &s))?;
            if status.applied_revision >= revision
                && status.sync_state == pb::SyncState::InSync as i32
            {
                return Ok(status);
            }
        }
        Err(Failure::new(
            fail::UNREACHABLE,
            "the controller ended the status stream",
        ))
    };
    match tokio::time::timeout(Duration::from_secs_f64(timeout.max(0.0)), watch).await {
        Ok(result) => result,
        Err(_) => {
            let now = c
                .node
                .get_status(pb::GetStatusRequest {})
                .await
                .called("status")?;
            Err(Failure::new(
                fail::TIMED_OUT,
                format!(
                    "the node has not applied revision {revision} within {timeout} s: it is at \
                     {} ({}); `lbctl status` shows why",
                    now.applied_revision,
                    if now.error.is_empty() {
                        "no error"
                    } else {
                        &now.error
                    }
                ),
            ))
        }
    }
}

fn vip_from(file: Option<std::path::PathBuf>, spec: VipSpec) -> Result<pb::Vip> {
    if let Some(path) = file {
        let mut docs = files::read_file(&path)?;
        if docs.len() != 1 {
            return Err(Failure::input(format!(
                "{}: holds {} VIPs; give a file of one",
                path.display(),
                docs.len()
            )));
        }
        return Ok(docs.remove(0).vip.to_proto());
    }
    let (Some(name), Some(address)) = (spec.name, spec.address) else {
        return Err(Failure::input(
            "give -f FILE, or --name and --address (and --port, --protocol, --backend)",
        ));
    };
    let mut backends = Vec::new();
    for b in spec.backends {
        let (address, weight) = match b.split_once('*') {
            Some((a, w)) => (
                a.to_owned(),
                Some(w.parse::<u32>().map_err(|_| {
                    Failure::input(format!("--backend {b:?}: the weight {w:?} is not a number"))
                })?),
            ),
            None => (b, None),
        };
        backends.push(pb::Backend {
            address,
            weight,
            state: 0,
        });
    }
    Ok(pb::Vip {
        schema: lb_proto::SCHEMA,
        name,
        address,
        port: spec.port,
        protocol: protocol(spec.protocol).into(),
        backends,
        ..pb::Vip::default()
    })
}

async fn vip(c: &mut Clients, out: Output, command: VipCommand) -> Result<()> {
    let resource = match command {
        VipCommand::Create {
            file,
            spec,
            validate_only,
        } => {
            let vip = vip_from(file, spec)?;
            c.vips
                .create_vip(pb::CreateVipRequest {
                    vip: Some(vip),
                    validate_only,
                })
                .await
                .called("creating the VIP")?
        }
        VipCommand::Get { name } => c
            .vips
            .get_vip(pb::GetVipRequest { name })
            .await
            .called("reading the VIP")?,
        VipCommand::List => {
            let all = list_all(c).await?;
            let listing = pb::ListVipsResponse {
                vips: all,
                ..pb::ListVipsResponse::default()
            };
            output::print(out, &listing, |l| output::vips(&l.vips));
            return Ok(());
        }
        VipCommand::Update { file, spec, write } => {
            let vip = vip_from(file, spec)?;
            c.vips
                .update_vip(pb::UpdateVipRequest {
                    vip: Some(vip),
                    etag: write.etag.unwrap_or_default(),
                    validate_only: write.validate_only,
                })
                .await
                .called("updating the VIP")?
        }
        VipCommand::Delete { name, write } => {
            let r = c
                .vips
                .delete_vip(pb::DeleteVipRequest {
                    name: name.clone(),
                    etag: write.etag.unwrap_or_default(),
                    validate_only: write.validate_only,
                })
                .await
                .called("deleting the VIP")?;
            output::print(out, &r, |r| {
                format!("deleted {name}; store revision {}\n", r.store_revision)
            });
            return Ok(());
        }
    };
    print_resource(out, &resource);
    Ok(())
}

async fn backend(c: &mut Clients, out: Output, command: BackendCommand) -> Result<()> {
    let update = |vip: String, address: String, weight, state: pb::BackendState, w: Write| {
        pb::UpdateBackendRequest {
            vip,
            address,
            weight,
            state: state.into(),
            etag: w.etag.unwrap_or_default(),
            validate_only: w.validate_only,
        }
    };
    let resource = match command {
        BackendCommand::Add {
            vip,
            address,
            weight,
            write,
        } => c
            .vips
            .add_backend(pb::AddBackendRequest {
                vip,
                backend: Some(pb::Backend {
                    address,
                    weight,
                    state: 0,
                }),
                etag: write.etag.unwrap_or_default(),
                validate_only: write.validate_only,
            })
            .await
            .called("adding the backend")?,
        BackendCommand::Remove {
            vip,
            address,
            write,
        } => c
            .vips
            .remove_backend(pb::RemoveBackendRequest {
                vip,
                address,
                etag: write.etag.unwrap_or_default(),
                validate_only: write.validate_only,
            })
            .await
            .called("removing the backend")?,
        BackendCommand::Drain {
            vip,
            address,
            write,
        } => c
            .vips
            .update_backend(update(
                vip,
                address,
                None,
                pb::BackendState::Draining,
                write,
            ))
            .await
            .called("draining the backend")?,
        BackendCommand::Activate {
            vip,
            address,
            write,
        } => c
            .vips
            .update_backend(update(vip, address, None, pb::BackendState::Active, write))
            .await
            .called("activating the backend")?,
        BackendCommand::Weight {
            vip,
            address,
            weight,
            write,
        } => c
            .vips
            .update_backend(update(
                vip,
                address,
                Some(weight),
                pb::BackendState::Unspecified,
                write,
            ))
            .await
            .called("setting the weight")?,
    };
    print_resource(out, &resource);
    Ok(())
}

/// A VIP a command read or wrote, with the store revision of the call.
fn print_resource(out: Output, resource: &pb::VipResource) {
    output::print(out, resource, |r| {
        format!(
            "{}store revision {}\n",
            output::vips(std::slice::from_ref(r)),
            r.store_revision
        )
    });
}
