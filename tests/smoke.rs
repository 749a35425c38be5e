use resilient_ws::{testing::TestServer, ResilientWebSocket};
#[actix_rt::test]
async fn smoke() {
    let server = TestServer::echo().await.unwrap();
    let ws = ResilientWebSocket::builder(server.ws_url()).connect().await.unwrap();
    ws.send("hi").await.unwrap();
    ws.disconnect().await.unwrap();
    assert_eq!(ws.state(), resilient_ws::ConnectionState::Disconnected);
}
