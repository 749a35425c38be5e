//! Issue 15's `rws` flags end to end, against `rws serve` (a child
//! process): TLS (`rws serve --tls-cert/--tls-key`, `rws connect --ca`,
//! `--cert/--key`, `-k`), `--path`, `--binary` and `--jsonl`, the server's
//! and the client's limit flags, sizes with units and humantime durations,
//! and `rws connect --help` giving an example for every flag.

use std::{path::Path, thread, time::Duration};

use common::cli::*;

// The helpers every `tests/cli_*.rs` file shares are in `common::cli`.
mod common;

/// A self-signed certificate for 127.0.0.1 (an IP SAN) and localhost, and
/// its key, written as PEM files `cert.pem` and `key.pem` in `dir`.
fn write_self_signed(dir: &Path, name: &str) -> (String, String) {
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("valid names");
    let key = rcgen::KeyPair::generate().expect("rcgen generates a key");
    let cert = params.self_signed(&key).expect("rcgen signs");
    let cert_path = dir.join(format!("{name}-cert.pem"));
    let key_path = dir.join(format!("{name}-key.pem"));
    std::fs::write(&cert_path, cert.pem()).expect("write cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    (
        cert_path.to_str().expect("utf-8 path").to_owned(),
        key_path.to_str().expect("utf-8 path").to_owned(),
    )
}

/// `rws serve --tls-cert --tls-key --path /feed` on a free port.
fn start_wss_server(cert: &str, key: &str) -> RwsServe {
    let server = RwsServe::start(
        "127.0.0.1:0",
        &["--tls-cert", cert, "--tls-key", key, "--path", "/feed"],
    );
    assert!(
        server.url.starts_with("wss://127.0.0.1:") && server.url.ends_with("/feed"),
        "the address line must say wss:// and the route: {}",
        server.url
    );
    server
}

#[test]
fn connect_reaches_serve_over_wss_with_ca_in_both_modes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = write_self_signed(dir.path(), "server");
    let server = start_wss_server(&cert, &key);
    for mode in ["none", "stateful"] {
        let mut cmd = rws();
        cmd.args(["connect", "--mode", mode, "--ca", &cert, &server.url]);
        let out = run(cmd, Input::Bytes(b"over tls\nsecond\n".to_vec()));
        assert_exit(&out, 0);
        assert_eq!(out.stdout, "over tls\nsecond\n", "{mode}: {}", out.stderr);
        assert!(
            !out.stderr.contains("WARNING"),
            "{mode}: no warning with --ca: {}",
            out.stderr
        );
    }
}

#[test]
fn wss_without_the_ca_fails_clearly_and_insecure_connects_with_a_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = write_self_signed(dir.path(), "server");
    let server = start_wss_server(&cert, &key);

    // The built-in roots do not know the self-signed certificate.
    let mut cmd = rws();
    cmd.args(["connect", &server.url]);
    let out = run(cmd, Input::Bytes(b"never sent\n".to_vec()));
    assert_exit(&out, 2);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    let err = out.stderr.to_lowercase();
    assert!(
        err.contains("certificate") || err.contains("unknownissuer"),
        "the error must say the certificate is the problem:\n{}",
        out.stderr
    );

    // Another CA is no better.
    let (other_ca, _) = write_self_signed(dir.path(), "other");
    let mut cmd = rws();
    cmd.args(["connect", "--ca", &other_ca, &server.url]);
    let out = run(cmd, Input::Bytes(b"never sent\n".to_vec()));
    assert_exit(&out, 2);

    // -k connects, and says loudly what it skipped.
    let mut cmd = rws();
    cmd.args(["connect", "-k", &server.url]);
    let out = run(cmd, Input::Bytes(b"insecure but here\n".to_vec()));
    assert_exit(&out, 0);
    assert_eq!(out.stdout, "insecure but here\n", "{}", out.stderr);
    assert!(
        out.stderr.contains("WARNING: --insecure") && out.stderr.contains("NOT checked"),
        "-k must warn on stderr:\n{}",
        out.stderr
    );
}

#[test]
fn bad_tls_files_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = write_self_signed(dir.path(), "server");
    let missing = dir.path().join("missing.pem");
    let missing = missing.to_str().unwrap();
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello\n").unwrap();
    let not_pem = not_pem.to_str().unwrap();

    // Server side: exits 2 and names the flag and the file.
    for (args, says) in [
        (vec!["--tls-cert", missing, "--tls-key", &key], "--tls-cert"),
        (
            vec!["--tls-cert", not_pem, "--tls-key", &key],
            "no PEM certificate",
        ),
        (vec!["--tls-cert", &cert, "--tls-key", not_pem], "--tls-key"),
        (vec!["--tls-cert", &cert], "--tls-key"),
    ] {
        let mut cmd = rws();
        cmd.args(["serve", "--bind", "127.0.0.1:0"]).args(&args);
        let out = run(cmd, Input::Bytes(Vec::new()));
        assert_exit(&out, 2);
        assert!(out.stderr.contains(says), "{args:?}: {}", out.stderr);
    }

    // Client side, before any connection is tried.
    for (args, says) in [
        (vec!["--ca", missing], "--ca"),
        (vec!["--ca", not_pem], "no PEM certificate"),
        (vec!["--cert", &cert], "--key"),
        (vec!["--cert", &cert, "--key", not_pem], "--key"),
        (vec!["--ca", &cert, "-k"], "--insecure"),
    ] {
        let mut cmd = rws();
        cmd.arg("connect").args(&args).arg("wss://127.0.0.1:9/ws");
        let out = run(cmd, Input::Bytes(Vec::new()));
        assert_exit(&out, 2);
        assert!(out.stderr.contains(says), "{args:?}: {}", out.stderr);
    }
}

/// A WebSocket echo over TLS that requires a client certificate signed by
/// `client_ca`, on its own thread and System; its `wss://` URL.
fn start_mtls_echo(cert: &str, key: &str, client_ca: &str) -> String {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(client_ca).unwrap())
        .unwrap();
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider.clone())
            .build()
            .expect("client verifier");
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from_pem_file(cert).unwrap()],
            PrivateKeyDer::from_pem_file(key).unwrap(),
        )
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let reliable = resilient_ws::server::ReliableServer::echo(Default::default());
            let server = actix_web::HttpServer::new(move || {
                let reliable = reliable.clone();
                actix_web::App::new()
                    .configure(move |c| resilient_ws::server::reliable_route(c, "/ws", reliable))
            })
            .workers(1)
            .disable_signals()
            .bind_rustls_0_23("127.0.0.1:0", config)
            .expect("bind");
            let addr = server.addrs()[0];
            tx.send(format!("wss://{addr}/ws")).unwrap();
            let _ = server.run().await;
        });
    });
    rx.recv_timeout(TIMEOUT).expect("mTLS server started")
}

#[test]
fn a_client_certificate_is_presented_when_the_server_asks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = write_self_signed(dir.path(), "server");
    let (client_cert, client_key) = write_self_signed(dir.path(), "client");
    let url = start_mtls_echo(&cert, &key, &client_cert);

    let mut cmd = rws();
    cmd.args([
        "connect",
        "--ca",
        &cert,
        "--cert",
        &client_cert,
        "--key",
        &client_key,
        &url,
    ]);
    let out = run(cmd, Input::Bytes(b"mutual\n".to_vec()));
    assert_exit(&out, 0);
    assert_eq!(out.stdout, "mutual\n", "{}", out.stderr);

    // Without it the server refuses the handshake.
    let mut cmd = rws();
    cmd.args(["connect", "--ca", &cert, &url]);
    let out = run(cmd, Input::Bytes(b"never sent\n".to_vec()));
    assert_exit(&out, 2);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
}

#[test]
fn path_moves_the_route_on_both_ends() {
    let server = start_server(&["--path", "/v2/feed"]);
    assert!(server.url.ends_with("/v2/feed"), "{}", server.url);
    let base = server.url.trim_end_matches("/v2/feed").to_owned();
    // The URL's own path is replaced, its query kept.
    let mut cmd = rws();
    cmd.args([
        "connect",
        "--mode",
        "stateful",
        "--path",
        "/v2/feed",
        &format!("{base}/elsewhere?x=1"),
    ]);
    let out = run(cmd, Input::Bytes(b"routed\n".to_vec()));
    assert_exit(&out, 0);
    assert_eq!(out.stdout, "routed\n", "{}", out.stderr);

    // The old route is gone.
    let mut cmd = rws();
    cmd.args(["connect", &format!("{base}/ws")]);
    let out = run(cmd, Input::Bytes(b"lost\n".to_vec()));
    assert_exit(&out, 2);
}

/// The `--jsonl` objects of `stdout`, one per line.
fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

#[test]
fn binary_lines_go_out_as_binary_and_a_bad_line_is_refused_alone() {
    let server = start_echo_server();
    for (encoding, input) in [
        ("base64", "AQID\nnot base64!\n\n/w==\n"),
        ("hex", "010203\n0g\n\nFF\n"),
    ] {
        let mut cmd = rws();
        cmd.args([
            "connect",
            "--binary",
            encoding,
            "--jsonl",
            "--json",
            &server.url,
        ]);
        let out = run(cmd, Input::Bytes(input.as_bytes().to_vec()));
        assert_exit(&out, 0);
        let got = json_lines(&out.stdout);
        let want = [
            serde_json::json!({"kind": "binary", "data": "AQID"}),
            serde_json::json!({"kind": "binary", "data": ""}),
            serde_json::json!({"kind": "binary", "data": "/w=="}),
        ];
        assert_eq!(got, want, "{encoding}: {}", out.stderr);
        // Line 2 is reported, with the encoding it failed, and nothing else.
        let not_sent: Vec<serde_json::Value> = out
            .stderr
            .lines()
            .filter(|l| event_name(l).as_deref() == Some("not_sent"))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(not_sent.len(), 1, "{encoding}: {}", out.stderr);
        assert_eq!(not_sent[0]["line"], 2, "{}", not_sent[0]);
        let error = not_sent[0]["error"].as_str().unwrap();
        assert!(
            error.contains(&format!("not valid {encoding}")),
            "{encoding}: {error}"
        );
    }
}

#[test]
fn jsonl_tells_text_that_looks_binary_from_binary() {
    let server = start_server(&["--broadcast"]);
    let mut jsonl = rws();
    jsonl.args(["connect", "--json", "--jsonl", &server.url]);
    let mut jsonl = Running::connected(jsonl);
    let mut plain = rws();
    plain.args(["connect", "--json", &server.url]);
    let mut plain = Running::connected(plain);

    // A library client sends what no stdin line can: text with a newline.
    let url = server.url.clone();
    thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let ws = resilient_ws::ResilientWebSocket::builder(url)
                .reconnect_mode(resilient_ws::ReconnectMode::None)
                .connect()
                .await
                .expect("connect");
            ws.send("base64:AQID").await.unwrap();
            ws.send(vec![1u8, 2, 3]).await.unwrap();
            ws.send("two\nlines").await.unwrap();
            let _ = ws.disconnect().await;
        })
    })
    .join()
    .unwrap();

    let mut got = Vec::new();
    for _ in 0..3 {
        let line = jsonl.wait_for(Pipe::Stdout, "a message", |_| true);
        got.push(serde_json::from_str::<serde_json::Value>(&line).expect("one JSON per line"));
    }
    assert_eq!(
        got,
        [
            serde_json::json!({"kind": "text", "data": "base64:AQID"}),
            serde_json::json!({"kind": "binary", "data": "AQID"}),
            serde_json::json!({"kind": "text", "data": "two\nlines"}),
        ]
    );
    // The default output, unchanged, is what was ambiguous: the first two
    // print alike and the third as two lines.
    let mut lines = Vec::new();
    for _ in 0..4 {
        lines.push(plain.wait_for(Pipe::Stdout, "a line", |_| true));
    }
    assert_eq!(lines, ["base64:AQID", "base64:AQID", "two", "lines"]);
}

#[test]
fn jsonl_carries_the_servers_seq_in_stateful_mode() {
    let server = start_echo_server();
    let mut cmd = rws();
    cmd.args(["connect", "--mode", "stateful", "--jsonl", &server.url]);
    let out = run(cmd, Input::Bytes(b"one\ntwo\n".to_vec()));
    assert_exit(&out, 0);
    assert_eq!(
        json_lines(&out.stdout),
        [
            serde_json::json!({"kind": "text", "seq": 1, "data": "one"}),
            serde_json::json!({"kind": "text", "seq": 2, "data": "two"}),
        ],
        "{}",
        out.stderr
    );
}

#[test]
fn sizes_take_units_and_durations_take_humantime() {
    let server = start_server(&[
        "--resume-window",
        "1m30s",
        "--max-message-size",
        "16KiB",
        "--max-unacked-bytes",
        "1MB",
        "--heartbeat-interval",
        "1.5s",
    ]);
    // Negotiate reports the limits the flags set.
    let mut cmd = rws();
    cmd.args([
        "connect",
        "--mode",
        "stateful",
        "--json",
        "--max-message-size",
        "1MiB",
        "--heartbeat-interval",
        "1m",
        "--initial-delay",
        "250ms",
        "--max-delay",
        "1m30s",
        &server.url,
    ]);
    // A line over the server's 16 KiB is refused before it is sent (the
    // server's limit from negotiate); a line at it goes through.
    let at_limit = "a".repeat(16 * 1024);
    let over = "b".repeat(16 * 1024 + 1);
    let input = format!("{at_limit}\n{over}\nafter\n");
    let out = run(cmd, Input::Bytes(input.into_bytes()));
    assert_exit(&out, 0);
    assert_eq!(out.stdout, format!("{at_limit}\nafter\n"), "{}", out.stderr);
    assert!(
        out.stderr.contains("\"not_sent\",\"line\":2"),
        "{}",
        out.stderr
    );

    // Bad values say what was expected.
    for (flag, value, says) in [
        ("--max-message-size", "16 parsecs", "16MiB"),
        ("--max-message-size", "0KiB", "greater than zero"),
        ("--initial-delay", "soon", "1m30s"),
    ] {
        let mut cmd = rws();
        cmd.args(["connect", flag, value, "ws://127.0.0.1:9/ws"]);
        let out = run(cmd, Input::Bytes(Vec::new()));
        assert_exit(&out, 2);
        assert!(out.stderr.contains(says), "{flag} {value}: {}", out.stderr);
    }
}

#[test]
fn the_token_query_parameter_is_set_on_both_ends() {
    let server = start_server(&["--auth-token", "s3cret", "--token-query-param", "tok"]);
    // The client puts the token in `tok` (not the header): accepted, in
    // raw and in reliable mode (negotiate and socket).
    for mode in ["none", "stateful"] {
        let mut cmd = rws();
        cmd.args([
            "connect",
            "--mode",
            mode,
            "--token",
            "s3cret",
            "--token-query-param",
            "tok",
            &server.url,
        ]);
        let out = run(cmd, Input::Bytes(b"by query\n".to_vec()));
        assert_exit(&out, 0);
        assert_eq!(out.stdout, "by query\n", "{mode}: {}", out.stderr);
    }
    // The server no longer reads `access_token`.
    let mut cmd = rws();
    cmd.args([
        "connect",
        "--token",
        "s3cret",
        "--token-query-param",
        "access_token",
        &server.url,
    ]);
    let out = run(cmd, Input::Bytes(b"refused\n".to_vec()));
    assert_exit(&out, 2);
    assert!(out.stderr.contains("401"), "{}", out.stderr);
}

#[test]
fn serve_limit_flags_reach_negotiate_and_bad_ones_are_refused() {
    // Accepted (and the server starts).
    let server = start_server(&[
        "--max-fragments",
        "8",
        "--failed-resume-limit",
        "5/30s",
        "--max-sessions",
        "1",
        "--max-sessions-per-identity",
        "1",
        "--hello-timeout",
        "2s",
        "--heartbeat-timeout",
        "1m",
    ]);
    // --max-sessions 1: a second live session is refused with 503.
    let mut first = rws();
    first.args(["connect", "--mode", "stateful", "--json", &server.url]);
    let mut first = Running::connected(first);
    let mut second = rws();
    second.args(["connect", "--mode", "stateful", &server.url]);
    let out = run(second, Input::Bytes(b"x\n".to_vec()));
    assert_exit(&out, 2);
    assert!(out.stderr.contains("503"), "{}", out.stderr);
    first.close_stdin();
    let status = first.finish(TIMEOUT);
    first.assert_exit(status, 0);

    for args in [
        &["--failed-resume-limit", "5"][..],
        &["--failed-resume-limit", "0/1m"],
        &["--max-fragments", "0"],
        &["--path", "ws"],
        &["--token-query-param", "a b"],
        &["--hello-timeout", "0s"],
    ] {
        let mut cmd = rws();
        cmd.args(["serve", "--bind", "127.0.0.1:0"]).args(args);
        let out = run(cmd, Input::Bytes(Vec::new()));
        assert_exit(&out, 2);
        assert!(out.stderr.contains(args[0]), "{args:?}: {}", out.stderr);
    }
}

#[test]
fn connect_help_gives_an_example_for_every_flag() {
    let mut cmd = rws();
    cmd.args(["connect", "--help"]);
    let out = run(cmd, Input::Bytes(Vec::new()));
    assert_exit(&out, 0);
    // Each option's block starts with an indented `-x, --flag` or
    // `--flag` line and runs to the next one.
    let options = out
        .stdout
        .split_once("Options:")
        .map(|(_, o)| o)
        .expect("an Options section");
    let options = options.split("\n\n").collect::<Vec<_>>();
    let mut flags = 0;
    for block in &options {
        let head = block.trim_start();
        if !head.starts_with('-') {
            continue;
        }
        let flag = head.split_whitespace().next().unwrap();
        if matches!(flag, "-h," | "-V,") {
            continue;
        }
        flags += 1;
        assert!(
            block.contains("E.g.") || block.contains("e.g."),
            "`rws connect --help`: {flag} has no example:\n{block}"
        );
    }
    assert!(flags >= 30, "only {flags} flags found:\n{}", out.stdout);
    for flag in [
        "--insecure",
        "--ca",
        "--cert",
        "--key",
        "--binary",
        "--jsonl",
        "--path",
        "--max-fragments",
        "--token-query-param",
    ] {
        assert!(out.stdout.contains(flag), "help lacks {flag}");
    }
    // The positional URL too.
    assert!(out.stdout.contains("E.g. ws://"), "{}", out.stdout);
}

/// Sends `frames` fragments of one text message on `conn`; returns the
/// close code the peer answers with (its first Close frame).
async fn fragments_then_close_code(
    conn: &mut resilient_ws::testing::RawConn,
    frames: usize,
) -> Option<u16> {
    use resilient_ws::testing::opcode;
    for i in 0..frames {
        let op = if i == 0 {
            opcode::TEXT
        } else {
            opcode::CONTINUATION
        };
        if conn.send_frame(i + 1 == frames, op, b"ab").await.is_err() {
            break;
        }
    }
    loop {
        let frame = tokio::time::timeout(TIMEOUT, conn.read_frame())
            .await
            .expect("a frame in time")
            .ok()?;
        if frame.opcode == opcode::CLOSE {
            return frame.close_code();
        }
    }
}

#[tokio::test]
async fn max_fragments_bounds_a_message_on_both_ends() {
    use resilient_ws::testing::{RawConn, RawServer};

    // Server: 3 frames are within --max-fragments 3, 4 are not.
    let server = RwsServe::start_async("127.0.0.1:0", &["--max-fragments", "3"]).await;
    let addr: std::net::SocketAddr = server.addr().parse().unwrap();
    let mut ok = RawConn::connect(addr, "/ws", &[]).await.expect("upgrade");
    for i in 0..3 {
        let op = if i == 0 { 0x1 } else { 0x0 };
        ok.send_frame(i == 2, op, b"ab").await.unwrap();
    }
    let echo = tokio::time::timeout(TIMEOUT, ok.read_data_frame())
        .await
        .expect("echo in time")
        .expect("echo");
    assert_eq!(echo.payload, b"ababab");
    let mut over = RawConn::connect(addr, "/ws", &[]).await.expect("upgrade");
    assert_eq!(fragments_then_close_code(&mut over, 4).await, Some(1009));

    // Client: --max-fragments 2 closes a 3-frame message with 1009.
    let peer = RawServer::bind().await.unwrap();
    let mut cmd = rws();
    cmd.args([
        "connect",
        "--json",
        "--max-fragments",
        "2",
        "--close-timeout",
        "200ms",
        &peer.ws_url(),
    ]);
    let mut child = Running::start(cmd);
    let mut conn = peer.accept().await.expect("rws connects");
    assert_eq!(fragments_then_close_code(&mut conn, 3).await, Some(1009));
    let status = tokio::task::spawn_blocking(move || {
        let status = child.finish(TIMEOUT);
        (status, child.dump())
    })
    .await
    .unwrap();
    assert_eq!(status.0.code(), Some(1), "{}", status.1);
}

#[actix_rt::test]
async fn serve_hello_timeout_and_failed_resume_limit_take_effect() {
    use resilient_ws::{
        protocol::{new_reconnect_token, Frame, SUBPROTOCOL},
        testing::RawConn,
    };
    let server = RwsServe::start_async(
        "127.0.0.1:0",
        &["--hello-timeout", "150ms", "--failed-resume-limit", "1/1m"],
    )
    .await;
    let addr: std::net::SocketAddr = server.addr().parse().unwrap();
    let protocol = [("Sec-WebSocket-Protocol", SUBPROTOCOL)];

    // A protocol socket that sends no HELLO is closed with 1002 after
    // --hello-timeout (not the default 10s).
    let started = std::time::Instant::now();
    let mut silent = RawConn::connect(addr, "/ws", &protocol).await.unwrap();
    assert_eq!(common::close_code_of(&mut silent).await, Some(1002));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(150) && took < Duration::from_secs(5),
        "closed after {took:?}"
    );

    // --failed-resume-limit 1/1m: one forged HELLO is answered 4001, and
    // then this address's protocol sockets get 429 before the upgrade.
    let neg = common::negotiate_at(addr, &[]).await.expect("negotiate");
    let mut forged = RawConn::connect(addr, "/ws", &protocol).await.unwrap();
    let hello = Frame::Hello {
        connection_id: neg.connection_id.clone(),
        reconnect_token: new_reconnect_token(),
        last_received: 0,
        first_seq: 1,
    };
    forged.send_binary(&hello.to_bytes()).await.unwrap();
    assert_eq!(common::close_code_of(&mut forged).await, Some(4001));
    let Err(refused) = RawConn::connect(addr, "/ws", &protocol).await else {
        panic!("a protocol socket past the limit was upgraded");
    };
    assert!(refused.to_string().contains("429"), "{refused}");
}

/// `rws serve --redis URL --store-unavailable-timeout 300ms`: with Redis
/// gone, an attached session whose message cannot be recorded closes its
/// socket with 1013 after about 300 ms, not after the default 10 s.
#[actix_rt::test]
async fn serve_store_unavailable_timeout_takes_effect() {
    use resilient_ws::{
        protocol::{Frame, SUBPROTOCOL},
        testing::RawConn,
    };
    let mut redis = common::TestRedis::start();
    let args: Vec<String> = [
        "--redis",
        redis.url(),
        "--redis-prefix",
        &common::TestRedis::unique_prefix("unavailable"),
        "--store-unavailable-timeout",
        "300ms",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let server = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        RwsServe::start("127.0.0.1:0", &args)
    })
    .await
    .unwrap();
    let addr: std::net::SocketAddr = server.addr().parse().unwrap();
    let neg = common::negotiate_at(addr, &[]).await.expect("negotiate");
    let mut c = RawConn::connect(addr, "/ws", &[("Sec-WebSocket-Protocol", SUBPROTOCOL)])
        .await
        .unwrap();
    let hello = Frame::Hello {
        connection_id: neg.connection_id.clone(),
        reconnect_token: neg.reconnect_token.clone(),
        last_received: 0,
        first_seq: 1,
    };
    c.send_binary(&hello.to_bytes()).await.unwrap();
    let welcome = c.read_frame().await.unwrap();
    assert!(
        matches!(common::decode(&welcome), Frame::Welcome { .. }),
        "{welcome:?}"
    );

    redis.stop();
    let started = std::time::Instant::now();
    c.send_binary(&common::data(1, "unrecordable"))
        .await
        .unwrap();
    assert_eq!(common::close_code_of(&mut c).await, Some(1013));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "closed after {took:?}"
    );
}
