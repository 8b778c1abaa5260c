//! `engram`: the memory service binary. Thin by design: configuration and
//! wiring live in `engram-server`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use engram_server::{Config, Role};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "engram",
    version,
    about = "Self-hosted memory for LLM agents, over gRPC, REST and MCP"
)]
struct Cli {
    /// TOML configuration file (ENGRAM__SECTION__KEY variables override it).
    #[arg(long, global = true, env = "ENGRAM_CONFIG")]
    config: Option<PathBuf>,
    /// Directory holding all data (overrides storage.data_dir).
    #[arg(long, global = true, env = "ENGRAM_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every role in one process (embedded default, or the backends
    /// the config names).
    Serve {
        /// Address to listen on (overrides server.listen).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Run the ingest role alone: IngestService and JobService, publishing
    /// to NATS JetStream, writing to a Qdrant server.
    Ingest {
        /// Address to listen on (overrides server.listen).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Run the recall role alone: RecallService over a Qdrant server.
    Recall {
        /// Address to listen on (overrides server.listen).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Run the enrichment consumer alone (NATS JetStream to a Qdrant
    /// server); the listener serves health and reflection.
    Enrich {
        /// Address to listen on (overrides server.listen).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Serve MCP on stdin/stdout for a desktop agent, running everything
    /// in this process as `serve` does (stop a `serve` on the same data
    /// directory first). Every tool call acts as the token's caller.
    Mcp {
        /// The caller's JWT (e.g. from `engram token`).
        #[arg(long, env = "ENGRAM_TOKEN", hide_env_values = true)]
        token: String,
    },
    /// Re-embed the configured vector store with the configured embedder
    /// (after changing `[embedder]`); stop the serving processes first. A
    /// re-run finishes an interrupted one.
    Reembed,
    /// Mint a development token signed with the configured HS256 secret.
    Token {
        /// Tenant (org_id claim).
        #[arg(long)]
        org: String,
        /// End user (user_id claim).
        #[arg(long)]
        user: String,
        /// Default session (session_id claim).
        #[arg(long)]
        session: Option<String>,
        /// Role claim: viewer, member, admin or owner (a token without one
        /// is a member).
        #[arg(long, value_parser = ["viewer", "member", "admin", "owner"])]
        role: Option<String>,
        /// Lifetime: a number with s, m, h or d (e.g. 30m, 12h, 7d).
        #[arg(long, default_value = "24h", value_parser = parse_ttl)]
        ttl: u64,
    },
}

fn parse_ttl(s: &str) -> Result<u64, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("bad ttl {s:?}: use e.g. 30m, 12h, 7d"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("bad ttl unit {unit:?}: use s, m, h or d")),
    };
    Ok(n * mult)
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(d) = &cli.data_dir {
        config.storage.data_dir = d.clone();
    }
    Ok(config)
}

fn telemetry_options(config: &Config, role: Role) -> engram_telemetry::TelemetryOptions {
    engram_telemetry::TelemetryOptions {
        log_filter: config.log.filter.clone(),
        log_json: config.log.format == "json",
        service_name: format!("engram-{}", role.as_str()),
        metrics_listen: config.metrics.listen,
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("received sigint"),
        _ = term => tracing::info!("received sigterm"),
    }
}

fn serve(role: Role, mut config: Config, listen: Option<SocketAddr>) -> anyhow::Result<()> {
    if let Some(l) = listen {
        config.server.listen = l;
    }
    if role == Role::Enrich {
        // Before any thread starts, so every one the role creates inherits it.
        engram_server::lower_priority(config.enrich.nice)?;
    }
    let options = telemetry_options(&config, role);
    let telemetry = engram_telemetry::Telemetry::init(&options)?;
    config.validate_role(role)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(async move {
        engram_telemetry::Telemetry::serve_metrics(&options)?;
        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.server.listen))?;
        engram_server::run_role(role, config, listener, shutdown_signal()).await?;
        Ok(())
    });
    // Outside the runtime: flushing blocks until the last spans are sent.
    drop(rt);
    telemetry.shutdown();
    result
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = load_config(&cli)?;
    match cli.command {
        Command::Serve { listen } => serve(Role::Serve, config, listen),
        Command::Ingest { listen } => serve(Role::Ingest, config, listen),
        Command::Recall { listen } => serve(Role::Recall, config, listen),
        Command::Enrich { listen } => serve(Role::Enrich, config, listen),
        Command::Mcp { token } => {
            let options = telemetry_options(&config, Role::Serve);
            let telemetry = engram_telemetry::Telemetry::init(&options)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let result = rt.block_on(async move {
                engram_telemetry::Telemetry::serve_metrics(&options)?;
                engram_server::run_mcp(config, token, shutdown_signal()).await?;
                anyhow::Ok(())
            });
            drop(rt);
            telemetry.shutdown();
            result
        }
        Command::Reembed => {
            let options = telemetry_options(&config, Role::Serve);
            let telemetry = engram_telemetry::Telemetry::init(&options)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let result = rt.block_on(engram_server::reembed(&config));
            drop(rt);
            telemetry.shutdown();
            let report = result?;
            println!(
                "re-embedded {} points: {} -> {}",
                report.points, report.from, report.to
            );
            Ok(())
        }
        Command::Token {
            org,
            user,
            session,
            role,
            ttl,
        } => {
            let secret = config.signing_secret()?.context(
                "the server verifies public keys (RS256/ES256/JWKS); mint tokens with your identity provider",
            )?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs();
            let claims = engram_auth::Claims {
                org_id: org,
                user_id: Some(user.clone()),
                sub: Some(user),
                session_id: session,
                role,
                exp: now + ttl,
                iat: Some(now),
                iss: config.auth.issuer.clone(),
                aud: config.auth.audience.clone(),
            };
            println!("{}", engram_auth::mint_hs256(&secret, &claims)?);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("90"), Ok(90));
        assert_eq!(parse_ttl("30m"), Ok(1800));
        assert_eq!(parse_ttl("7d"), Ok(604_800));
        assert!(parse_ttl("1w").is_err());
        assert!(parse_ttl("h").is_err());
    }
}
