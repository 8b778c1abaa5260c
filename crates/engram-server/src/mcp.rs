//! `engram mcp`: the MCP server on stdin/stdout, for a desktop agent that
//! launches Engram as a subprocess.

use crate::ServerError;
use rmcp::ServiceExt;
use std::future::Future;

/// Serves `server` on stdin/stdout until the client closes stdin or
/// `shutdown` resolves. Logs go to stderr: stdout carries the protocol.
pub(crate) async fn serve_stdio(
    server: engram_mcp::EngramMcp,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| ServerError::Mcp(e.to_string()))?;
    tracing::info!("engram serving mcp on stdio");
    let cancel = running.cancellation_token();
    tokio::select! {
        quit = running.waiting() => {
            tracing::info!(reason = ?quit.map_err(|e| e.to_string()), "mcp client closed the session");
        }
        () = shutdown => {
            tracing::info!("shutting down: closing the mcp session");
            cancel.cancel();
        }
    }
    Ok(())
}
