//! An in-process test server on 127.0.0.1, port 0.

use std::net::SocketAddr;

use actix_web::{dev::ServerHandle, App, HttpServer};

use crate::server::{echo_route, reliable_route, EchoConfig, ReliableServer, ServerOptions};

/// A real actix-web server on an ephemeral port; stopped by [`stop`](Self::stop)
/// or when the test's `System` ends.
#[derive(Debug)]
pub struct TestServer {
    addr: SocketAddr,
    handle: ServerHandle,
}

impl TestServer {
    /// Starts an echo server with `/ws` as the socket path.
    ///
    /// # Errors
    /// If binding 127.0.0.1:0 fails.
    pub async fn echo() -> std::io::Result<TestServer> {
        Self::echo_with(EchoConfig::default()).await
    }

    /// Starts an echo server with the given limits.
    ///
    /// # Errors
    /// If binding 127.0.0.1:0 fails.
    pub async fn echo_with(config: EchoConfig) -> std::io::Result<TestServer> {
        Self::echo_at(SocketAddr::from(([127, 0, 0, 1], 0)), config)
    }

    /// Starts an echo server on a given address: for a server "restarted"
    /// on the port an earlier one had.
    ///
    /// # Errors
    /// If binding fails.
    pub fn echo_at(addr: SocketAddr, config: EchoConfig) -> std::io::Result<TestServer> {
        Self::bind_at(addr, move || {
            let config = config.clone();
            App::new().configure(move |c| echo_route(c, "/ws", config))
        })
    }

    /// Starts a reliable-protocol server ([`ReliableServer::start`]) with
    /// `/ws` as its path (`POST /ws/negotiate`, `GET /ws`). Subscribe to
    /// its events and send with the returned handle. Must run inside an
    /// actix `System` (the hub lives on the current arbiter, the sessions
    /// on the server's worker).
    ///
    /// # Errors
    /// If binding 127.0.0.1:0 fails.
    ///
    /// # Examples
    /// ```
    /// use resilient_ws::{server::ServerOptions, testing::TestServer};
    ///
    /// #[actix::main]
    /// async fn main() {
    ///     let (server, reliable) = TestServer::reliable(ServerOptions::default()).unwrap();
    ///     assert_eq!(reliable.sessions(), 0);
    ///     server.stop().await;
    /// }
    /// ```
    pub fn reliable(options: ServerOptions) -> std::io::Result<(TestServer, ReliableServer)> {
        let reliable = ReliableServer::start(options);
        let server = Self::serve_reliable(SocketAddr::from(([127, 0, 0, 1], 0)), &reliable)?;
        Ok((server, reliable))
    }

    /// Starts a reliable echo server ([`ReliableServer::echo`]) at `/ws`.
    ///
    /// # Errors
    /// If binding 127.0.0.1:0 fails.
    pub fn reliable_echo(options: ServerOptions) -> std::io::Result<(TestServer, ReliableServer)> {
        let reliable = ReliableServer::echo(options);
        let server = Self::serve_reliable(SocketAddr::from(([127, 0, 0, 1], 0)), &reliable)?;
        Ok((server, reliable))
    }

    /// Serves an existing [`ReliableServer`] at `/ws` on `addr` (for
    /// example the port an earlier server had, to "restart" it).
    ///
    /// # Errors
    /// If binding fails.
    pub fn serve_reliable(
        addr: SocketAddr,
        reliable: &ReliableServer,
    ) -> std::io::Result<TestServer> {
        let reliable = reliable.clone();
        Self::bind_at(addr, move || {
            let reliable = reliable.clone();
            App::new().configure(move |c| reliable_route(c, "/ws", reliable))
        })
    }

    /// Starts a server with any app (one worker, 127.0.0.1:0).
    ///
    /// # Errors
    /// If binding 127.0.0.1:0 fails.
    pub fn bind<F, T>(app: F) -> std::io::Result<TestServer>
    where
        F: Fn() -> App<T> + Send + Clone + 'static,
        T: actix_web::dev::ServiceFactory<
                actix_web::dev::ServiceRequest,
                Config = (),
                Response = actix_web::dev::ServiceResponse<actix_web::body::BoxBody>,
                Error = actix_web::Error,
                InitError = (),
            > + 'static,
    {
        Self::bind_at(SocketAddr::from(([127, 0, 0, 1], 0)), app)
    }

    /// Starts a server with any app on a given address (one worker).
    ///
    /// # Errors
    /// If binding fails.
    pub fn bind_at<F, T>(addr: SocketAddr, app: F) -> std::io::Result<TestServer>
    where
        F: Fn() -> App<T> + Send + Clone + 'static,
        T: actix_web::dev::ServiceFactory<
                actix_web::dev::ServiceRequest,
                Config = (),
                Response = actix_web::dev::ServiceResponse<actix_web::body::BoxBody>,
                Error = actix_web::Error,
                InitError = (),
            > + 'static,
    {
        let server = HttpServer::new(app)
            // As a real deployment should: no Nagle delay on small frames.
            .tcp_nodelay(true)
            .workers(1)
            .disable_signals()
            .shutdown_timeout(1)
            .bind(addr)?;
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Ok(TestServer { addr, handle })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://127.0.0.1:PORT/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Stops the server at once, dropping every open connection (a crash
    /// or a restart, as a client sees it).
    pub async fn kill(self) {
        self.handle.stop(false).await;
    }

    /// Stops the server (gracefully, up to a second).
    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}
