//! Counters, gauges and histograms of the client and the server, through
//! the [`metrics`](https://docs.rs/metrics) facade (the `metrics` feature),
//! so whatever recorder the application installs (a Prometheus exporter,
//! StatsD, a test's debugging recorder) picks them up.
//!
//! Nothing is reported until the application asks: one
//! [`MetricsReporter`] per client or server, named by a label. The
//! reporter is a small actor that listens to the events the client or
//! server already publishes and reads their stats on an interval (1 s by
//! default), so reporting adds nothing to the message path (the server
//! reporter does not subscribe to its messages: it reads their counts). The one
//! sample no event carries, a heartbeat's round-trip time, the client
//! records itself once a reporter is attached.
//!
//! ```no_run
//! use resilient_ws::{metrics::MetricsReporter, server::{ReliableServer, ServerOptions}, ResilientWebSocket};
//!
//! #[actix::main]
//! async fn main() -> Result<(), resilient_ws::Error> {
//!     // Install a recorder first (metrics-exporter-prometheus, ...).
//!     let ws = ResilientWebSocket::builder("ws://127.0.0.1:8080/ws").connect().await?;
//!     MetricsReporter::new("feed").client(&ws); // client="feed"
//!     let server = ReliableServer::echo(ServerOptions::default());
//!     MetricsReporter::new("api").server(&server); // server="api"
//!     Ok(())
//! }
//! ```
//!
//! # Client metrics (label `client`)
//!
//! | name | kind | what |
//! | --- | --- | --- |
//! | `rws_client_connected` | gauge | 1 while connected, else 0 |
//! | `rws_client_reconnects_total` | counter | successful reconnects after a loss ([`Reconnected`](crate::Reconnected)) |
//! | `rws_client_reconnect_attempts_total` | counter | reconnect attempts announced ([`Reconnecting`](crate::Reconnecting)) |
//! | `rws_client_downtime_seconds` | histogram | time from a loss to the reconnect that ended it |
//! | `rws_client_heartbeat_rtt_seconds` | histogram | round-trip time of each answered heartbeat ping |
//! | `rws_client_messages_buffered` | gauge | messages waiting in the outbox |
//! | `rws_client_messages_dropped_total` | counter | messages let go, label `reason`: `overflow`, `expired`, `retries_exhausted` ([`MessageDropped`](crate::MessageDropped)) |
//! | `rws_client_messages_sent_total` | counter | messages written to a socket |
//! | `rws_client_messages_received_total` | counter | messages received and handed to subscribers |
//! | `rws_client_write_batches_total` | counter | batches written (one flush each) |
//!
//! # Server metrics (label `server`)
//!
//! | name | kind | what |
//! | --- | --- | --- |
//! | `rws_server_sessions` | gauge | live sessions (attached or within their resume window) |
//! | `rws_server_sessions_attached` | gauge | sessions with an attached socket |
//! | `rws_server_plain_clients` | gauge | open plain (non-protocol) WebSocket clients |
//! | `rws_server_inbound_backlog` | gauge | client messages handed to subscribers and not yet handled |
//! | `rws_server_sessions_opened_total` | counter | sessions that got their first socket |
//! | `rws_server_resumes_total` | counter | sessions resumed by a later socket |
//! | `rws_server_sessions_expired_total` | counter | sessions ended, label `reason`: `resume_window`, `overflow`, `closed` |
//! | `rws_server_undelivered_total` | counter | server messages never acknowledged by sessions that ended |
//! | `rws_server_messages_received_total` | counter | client messages delivered to the application, each once (replays not counted again) |
//! | `rws_server_messages_acked_total` | counter | server messages the clients acknowledged |
//! | `rws_server_broadcast_skipped_total` | counter | sessions a broadcast skipped (message over their limit) |
//!
//! The server's messages out are counted once acknowledged
//! (`rws_server_messages_acked_total`); there is no count of the ones
//! merely written, so no `rws_server_messages_sent_total`.
//!
//! Counters read from the stats (`messages_sent`, `messages_received`,
//! `messages_acked`, `write_batches`, `broadcast_skipped`) are set to the stat's total
//! ([`Counter::absolute`](::metrics::Counter::absolute)); the others count
//! events as they come. Durations are in seconds.

#[cfg(feature = "client")]
mod client;
#[cfg(feature = "server")]
mod server;

use std::time::Duration;

use ::metrics::{Label, SharedString};
use actix::prelude::*;

/// The metric names, for code that reads them back (dashboards, tests).
pub mod names {
    /// `rws_client_connected` (gauge).
    pub const CLIENT_CONNECTED: &str = "rws_client_connected";
    /// `rws_client_reconnects_total` (counter).
    pub const CLIENT_RECONNECTS: &str = "rws_client_reconnects_total";
    /// `rws_client_reconnect_attempts_total` (counter).
    pub const CLIENT_RECONNECT_ATTEMPTS: &str = "rws_client_reconnect_attempts_total";
    /// `rws_client_downtime_seconds` (histogram).
    pub const CLIENT_DOWNTIME: &str = "rws_client_downtime_seconds";
    /// `rws_client_heartbeat_rtt_seconds` (histogram; the client records
    /// it itself, under the same name).
    pub const CLIENT_HEARTBEAT_RTT: &str = "rws_client_heartbeat_rtt_seconds";
    /// `rws_client_messages_buffered` (gauge).
    pub const CLIENT_BUFFERED: &str = "rws_client_messages_buffered";
    /// `rws_client_messages_dropped_total` (counter, label `reason`).
    pub const CLIENT_DROPPED: &str = "rws_client_messages_dropped_total";
    /// `rws_client_messages_sent_total` (counter).
    pub const CLIENT_SENT: &str = "rws_client_messages_sent_total";
    /// `rws_client_messages_received_total` (counter).
    pub const CLIENT_RECEIVED: &str = "rws_client_messages_received_total";
    /// `rws_client_write_batches_total` (counter).
    pub const CLIENT_WRITE_BATCHES: &str = "rws_client_write_batches_total";

    /// `rws_server_sessions` (gauge).
    pub const SERVER_SESSIONS: &str = "rws_server_sessions";
    /// `rws_server_sessions_attached` (gauge).
    pub const SERVER_ATTACHED: &str = "rws_server_sessions_attached";
    /// `rws_server_plain_clients` (gauge).
    pub const SERVER_PLAIN_CLIENTS: &str = "rws_server_plain_clients";
    /// `rws_server_inbound_backlog` (gauge).
    pub const SERVER_INBOUND_BACKLOG: &str = "rws_server_inbound_backlog";
    /// `rws_server_sessions_opened_total` (counter).
    pub const SERVER_OPENED: &str = "rws_server_sessions_opened_total";
    /// `rws_server_resumes_total` (counter).
    pub const SERVER_RESUMES: &str = "rws_server_resumes_total";
    /// `rws_server_sessions_expired_total` (counter, label `reason`).
    pub const SERVER_EXPIRED: &str = "rws_server_sessions_expired_total";
    /// `rws_server_undelivered_total` (counter).
    pub const SERVER_UNDELIVERED: &str = "rws_server_undelivered_total";
    /// `rws_server_messages_received_total` (counter).
    pub const SERVER_RECEIVED: &str = "rws_server_messages_received_total";
    /// `rws_server_messages_acked_total` (counter).
    pub const SERVER_ACKED: &str = "rws_server_messages_acked_total";
    /// `rws_server_broadcast_skipped_total` (counter).
    pub const SERVER_BROADCAST_SKIPPED: &str = "rws_server_broadcast_skipped_total";
}

/// The stats are read this often unless [`MetricsReporter::interval`]
/// says otherwise: a Prometheus scrape every 15 s or so sees fresh gauges
/// at little cost.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// Starts reporting a client's or a server's metrics (see the
/// [module docs](self) for the names).
///
/// `name` becomes the value of the `client` or `server` label, so several
/// clients (or servers) in one process stay apart. Reporting needs a
/// running actix `System` (the reporter is an actor) and ends when the
/// client's actors stop (its last handle dropped), when the server shuts
/// down, or on [`Reporting::stop`].
///
/// # Examples
/// ```no_run
/// use std::time::Duration;
/// use resilient_ws::{metrics::MetricsReporter, ResilientWebSocket};
///
/// # async fn run(ws: ResilientWebSocket) {
/// let reporting = MetricsReporter::new("market-feed")
///     .interval(Duration::from_secs(5))
///     .client(&ws);
/// // ... later, to stop reporting while the client goes on:
/// reporting.stop();
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct MetricsReporter {
    name: SharedString,
    interval: Duration,
}

impl MetricsReporter {
    /// A reporter whose metrics carry the label value `name`.
    pub fn new(name: impl Into<String>) -> Self {
        MetricsReporter {
            name: SharedString::from(name.into()),
            interval: DEFAULT_INTERVAL,
        }
    }

    /// How often the gauges and the stat-based counters are refreshed
    /// (1 s by default; a zero interval is raised to 1 ms). Event-based
    /// counters and the histograms are recorded as their events come.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// The labels of every metric: `key` (`client` or `server`) = name.
    fn labels(&self, key: &'static str) -> Vec<Label> {
        vec![Label::new(key, self.name.clone())]
    }
}

/// Gives the recorder each metric's unit and help text (Prometheus'
/// `# HELP` lines). Cheap and idempotent: every reporter calls it when it
/// starts, so a recorder installed late still gets them.
fn describe() {
    use ::metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    use names::*;
    describe_gauge!(CLIENT_CONNECTED, "1 while the client is connected, else 0");
    describe_counter!(CLIENT_RECONNECTS, "Successful reconnects after a loss");
    describe_counter!(CLIENT_RECONNECT_ATTEMPTS, "Reconnect attempts announced");
    describe_histogram!(
        CLIENT_DOWNTIME,
        Unit::Seconds,
        "Time from a loss to the reconnect that ended it"
    );
    describe_histogram!(
        CLIENT_HEARTBEAT_RTT,
        Unit::Seconds,
        "Round-trip time of each answered heartbeat ping"
    );
    describe_gauge!(CLIENT_BUFFERED, "Messages waiting in the outbox");
    describe_counter!(CLIENT_DROPPED, "Messages let go, by reason");
    describe_counter!(CLIENT_SENT, "Messages written to a socket");
    describe_counter!(
        CLIENT_RECEIVED,
        "Messages received and handed to subscribers"
    );
    describe_counter!(CLIENT_WRITE_BATCHES, "Batches written, one flush each");
    describe_gauge!(
        SERVER_SESSIONS,
        "Live sessions, attached or within their resume window"
    );
    describe_gauge!(SERVER_ATTACHED, "Sessions with an attached socket");
    describe_gauge!(SERVER_PLAIN_CLIENTS, "Open plain WebSocket clients");
    describe_gauge!(
        SERVER_INBOUND_BACKLOG,
        "Client messages handed to subscribers, not yet handled"
    );
    describe_counter!(SERVER_OPENED, "Sessions that got their first socket");
    describe_counter!(SERVER_RESUMES, "Sessions resumed by a later socket");
    describe_counter!(SERVER_EXPIRED, "Sessions ended, by reason");
    describe_counter!(
        SERVER_UNDELIVERED,
        "Server messages never acknowledged by sessions that ended"
    );
    describe_counter!(
        SERVER_RECEIVED,
        "Client messages delivered to the application"
    );
    describe_counter!(SERVER_ACKED, "Server messages the clients acknowledged");
    describe_counter!(
        SERVER_BROADCAST_SKIPPED,
        "Sessions a broadcast skipped (message over their limit)"
    );
}

/// Stops the reporter actor.
#[derive(Message)]
#[rtype(result = "()")]
struct StopReporting;

/// A running reporter ([`MetricsReporter::client`],
/// [`MetricsReporter::server`]). Dropping it leaves the reporter running
/// (it ends with what it reports on); [`stop`](Self::stop) ends it sooner.
#[derive(Debug, Clone)]
pub struct Reporting {
    stop: Recipient<StopReporting>,
}

impl Reporting {
    /// Stops reporting. The metrics keep their last values in the
    /// recorder; the client or server goes on unchanged. A client goes on
    /// recording its heartbeat RTTs (it records them itself once a
    /// reporter was attached: one histogram sample per ping).
    pub fn stop(&self) {
        self.stop.do_send(StopReporting);
    }

    /// Whether the reporter still runs.
    pub fn is_running(&self) -> bool {
        self.stop.connected()
    }
}

#[cfg(all(test, feature = "client"))]
mod tests {
    #[test]
    fn the_rtt_histogram_the_client_records_has_the_tabled_name() {
        assert_eq!(
            super::names::CLIENT_HEARTBEAT_RTT,
            crate::client::stats::RTT_METRIC
        );
    }
}
