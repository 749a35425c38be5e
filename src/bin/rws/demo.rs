//! `rws demo`: an embedded echo server and a client in one process. Numbered
//! messages stream out and back; the summary says what arrived, what was
//! lost or duplicated, and how fast.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use clap::Args;
use resilient_ws::{
    testing::{EventRecorder, TestServer},
    ReconnectMode, ResilientWebSocket,
};

/// Options of `rws demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many numbered messages to send.
    #[arg(long, default_value_t = 20_000)]
    messages: u64,
}

/// Runs the demo; returns the process exit code (0 when nothing was lost).
pub fn run(args: DemoArgs) -> i32 {
    actix_rt::System::new().block_on(async move {
        match stream(args.messages).await {
            Ok(summary) => {
                println!("{summary}");
                if summary.lost == 0 && summary.duplicated == 0 && summary.out_of_order == 0 {
                    0
                } else {
                    1
                }
            }
            Err(e) => {
                eprintln!("rws: demo failed: {e}");
                1
            }
        }
    })
}

struct Summary {
    sent: u64,
    received: u64,
    lost: u64,
    duplicated: u64,
    out_of_order: u64,
    elapsed: Duration,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rate = self.received as f64 / self.elapsed.as_secs_f64().max(1e-9);
        writeln!(
            f,
            "rws demo: embedded echo server and client, one connection"
        )?;
        writeln!(f, "  sent          {}", self.sent)?;
        writeln!(f, "  received      {}", self.received)?;
        writeln!(f, "  lost          {}", self.lost)?;
        writeln!(f, "  duplicated    {}", self.duplicated)?;
        writeln!(f, "  out of order  {}", self.out_of_order)?;
        write!(
            f,
            "  elapsed       {:.0} ms ({rate:.0} msgs/s round trip)",
            self.elapsed.as_secs_f64() * 1000.0
        )
    }
}

async fn stream(n: u64) -> Result<Summary, Box<dyn std::error::Error>> {
    let server = TestServer::echo().await?;
    eprintln!("server listening on {}", server.ws_url());
    let rec = EventRecorder::start();
    let ws = rec
        .attach(ResilientWebSocket::builder(server.ws_url()).reconnect_mode(ReconnectMode::None))
        .connect()
        .await?;
    let start = Instant::now();
    for i in 0..n {
        ws.send(format!("msg {i}")).await?;
    }
    let got = rec.wait_messages(n as usize, Duration::from_secs(60)).await;
    let elapsed = start.elapsed();
    ws.disconnect().await?;
    server.stop().await;

    let mut seen = HashSet::new();
    let (mut duplicated, mut out_of_order, mut next) = (0, 0, 0u64);
    for p in &got {
        let i: u64 = p
            .as_text()
            .and_then(|t| t.strip_prefix("msg "))
            .and_then(|t| t.parse().ok())
            .ok_or("unexpected message from the server")?;
        if !seen.insert(i) {
            duplicated += 1;
        } else if i != next {
            out_of_order += 1;
        }
        next = i + 1;
    }
    Ok(Summary {
        sent: n,
        received: got.len() as u64,
        lost: n - seen.len() as u64,
        duplicated,
        out_of_order,
        elapsed,
    })
}
