//! The local API as an attacker on the same host would try it, against a real node: the
//! requests that used to hand over the signing key get no key byte back, and nothing is
//! published or written outside the configured directories.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use backflow_api::client::Client;
use backflow_api::ApiToken;
use backflow_node::api_backend::api_router;
use backflow_node::config::{self, Config};
use backflow_node::localnet::LocalNet;
use backflow_node::node::Tuning;
use backflow_topology::RegionCode;

struct Api {
    addr: std::net::SocketAddr,
    token: ApiToken,
    key_hex: String,
    _net: LocalNet,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Api {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A national node with its real API on a loopback port; its data dir holds a key file.
async fn serve(dir: &Path, extra_config: &str) -> Result<Api> {
    let net = LocalNet::start(&[RegionCode::NATIONAL], &dir.join("net"), Tuning::default()).await?;
    let node = net.nodes[&RegionCode::NATIONAL].clone();
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;
    config::save_key(&data, &node.identity.key)?;
    let key_hex = hex::encode(node.identity.key.to_bytes());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let cfg: Config = toml::from_str(&format!(
        "region = \"0\"\nlisten = []\ntrust_anchor = \"{}\"\nhttp = \"{addr}\"\n{extra_config}",
        hex::encode(node.identity.key.verifying_key().as_bytes())
    ))?;
    let app = api_router(&data, &cfg, node).await?;
    let token = ApiToken::load(&data)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(backflow_api::serve::serve(listener, app, async {
        let _ = stopped.await;
    }));
    Ok(Api {
        addr,
        token,
        key_hex,
        _net: net,
        stop: Some(stop),
    })
}

/// One raw HTTP/1.1 request; returns the whole response (status line, headers, body).
async fn raw(addr: std::net::SocketAddr, request: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn no_key_bytes(response: &str, key_hex: &str) {
    // Any 16-hex-digit stretch of the key would be a leak.
    for start in (0..key_hex.len() - 16).step_by(8) {
        assert!(
            !response.contains(&key_hex[start..start + 16]),
            "key bytes in a response: {response}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_exfiltration_requests_get_no_key_byte_back() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let import = tmp.path().join("import");
    std::fs::create_dir(&import)?;
    let api = serve(
        tmp.path(),
        &format!("import_dir = \"{}\"\n", import.display()),
    )
    .await?;
    let key_path = tmp.path().join("data").join("node.key");
    let client = Client::new(api.addr, api.token.clone());
    let mut answers = Vec::new();

    // The request of the issue: publish the key file by path (old route, then the path route).
    let body = serde_json::json!({"dataset": "x", "region_field": "v", "file": key_path,
        "format": "csv"});
    for path in ["/api/publish", "/api/publish/file"] {
        answers.push(format!(
            "{:#}",
            client.json("POST", path, Some(&body)).await.unwrap_err()
        ));
    }
    // Through a symlink planted in the import directory.
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&key_path, import.join("key.csv"))?;
        let body = serde_json::json!({"dataset": "x", "region_field": "v", "file": "key.csv"});
        answers.push(format!(
            "{:#}",
            client
                .json("POST", "/api/publish/file", Some(&body))
                .await
                .unwrap_err()
        ));
    }
    // The key's content as a CSV whose header lacks the field: the parse error must not echo it.
    let key_text = std::fs::read_to_string(&key_path)?;
    let len = key_text.len() as u64;
    let err = client
        .upload(
            "/api/publish?dataset=x&region_field=village&format=csv",
            std::io::Cursor::new(key_text.clone().into_bytes()),
            len,
            |_| {},
        )
        .await
        .unwrap_err();
    answers.push(format!("{err:#}"));
    // The same as NDJSON, and as CSV records after a real header.
    let ndjson = format!("{{\"village\": \"{key_text}\"}}\n{key_text}\n");
    let err = client
        .upload(
            "/api/publish?dataset=x&region_field=village&format=ndjson",
            std::io::Cursor::new(ndjson.clone().into_bytes()),
            ndjson.len() as u64,
            |_| {},
        )
        .await
        .unwrap_err();
    answers.push(format!("{err:#}"));
    // Job views and status of everything that ran.
    for id in 1..=6 {
        if let Ok(v) = client.json("GET", &format!("/api/jobs/{id}"), None).await {
            answers.push(v.to_string());
        }
    }
    answers.push(client.json("GET", "/api/status", None).await?.to_string());
    // Export to the key file's place (no export_dir: off), and without a token at all.
    let body = serde_json::json!({"dataset": "x", "out": key_path});
    answers.push(format!(
        "{:#}",
        client
            .json("POST", "/api/export", Some(&body))
            .await
            .unwrap_err()
    ));
    let host = api.addr;
    answers.push(
        raw(
            api.addr,
            format!(
                "POST /api/publish/file HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.to_string().len()
            ),
        )
        .await,
    );
    for a in &answers {
        no_key_bytes(a, &api.key_hex);
    }
    assert!(
        answers.last().unwrap().starts_with("HTTP/1.1 401"),
        "{}",
        answers.last().unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(&key_path)?,
        key_text,
        "key file untouched"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_wrong_token_and_foreign_host_are_refused_over_tcp() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let api = serve(tmp.path(), "").await?;
    let addr = api.addr;
    let get = |extra: &str| format!("GET /api/status HTTP/1.1\r\nConnection: close\r\n{extra}\r\n");
    let wrong = ApiToken::generate();
    let cases = [
        (get(&format!("Host: {addr}\r\n")), "401"),
        (
            get(&format!(
                "Host: {addr}\r\nAuthorization: {}\r\n",
                wrong.bearer()
            )),
            "401",
        ),
        (
            get(&format!(
                "Host: {addr}\r\nAuthorization: Basic Zm9vOmJhcg==\r\n"
            )),
            "401",
        ),
        (
            get(&format!(
                "Host: rebound.example:{}\r\nAuthorization: {}\r\n",
                addr.port(),
                api.token.bearer()
            )),
            "421",
        ),
        (
            get(&format!(
                "Host: {addr}\r\nAuthorization: {}\r\n",
                api.token.bearer()
            )),
            "200",
        ),
    ];
    for (request, status) in cases {
        let response = raw(addr, request.clone()).await;
        assert!(
            response.starts_with(&format!("HTTP/1.1 {status}")),
            "{request:?} → {response}"
        );
    }
    Ok(())
}

#[test]
fn a_public_bind_needs_an_explicit_key_and_secrets_must_be_private() {
    let tmp = tempfile::tempdir().unwrap();
    let write = |extra: &str| {
        std::fs::write(
            tmp.path().join(config::CONFIG_FILE),
            format!(
                "region = \"0\"\nlisten = []\ntrust_anchor = \"{}\"\n{extra}",
                "00".repeat(32)
            ),
        )
        .unwrap();
    };
    write("http = \"0.0.0.0:7480\"\n");
    let err = format!(
        "{:#}",
        Config::load(tmp.path())
            .unwrap()
            .check_http_bind()
            .unwrap_err()
    );
    assert!(err.contains("http_allow_remote"), "{err}");
    write("http = \"0.0.0.0:7480\"\nhttp_allow_remote = true\n");
    Config::load(tmp.path()).unwrap().check_http_bind().unwrap();
    write("http = \"127.0.0.1:7480\"\n");
    Config::load(tmp.path()).unwrap().check_http_bind().unwrap();

    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    config::save_key(tmp.path(), &key).unwrap();
    assert_eq!(
        config::load_key(tmp.path()).unwrap().to_bytes(),
        key.to_bytes()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let path = tmp.path().join(config::KEY_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = format!("{:#}", config::load_key(tmp.path()).unwrap_err());
        assert!(err.contains("chmod 600"), "{err}");
        assert!(!err.contains(&hex::encode(key.to_bytes())[..16]), "{err}");
    }
}
