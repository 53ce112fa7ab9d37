//! Arbitrary requests through the API's real router (gate, extractors, confinement) over an
//! in-memory backend. Invariants: no panic; nothing but a request with the right token and
//! Host gets past the gate; no response ever carries the token or the data directory's key;
//! no file appears outside the export directory.
#![no_main]

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use backflow_api::confine::Confined;
use backflow_api::gate::{AllowedHosts, Gate};
use backflow_api::{router, ApiToken, Directories};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

/// The API tests' in-memory node: one fake for both, so a change of the `Backend` trait that
/// the tests follow cannot leave this build behind.
#[path = "../../tests/common/mod.rs"]
mod common;

use common::HOST;

const KEY: &str = "KEYMATERIAL0123456789abcdef";

struct World {
    runtime: tokio::runtime::Runtime,
    fake: common::Fake,
    app: axum::Router,
    token: ApiToken,
    dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let import = dir.path().join("import");
        let export = dir.path().join("export");
        for d in [&data, &import, &export] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::write(data.join("node.key"), KEY).unwrap();
        std::fs::write(import.join("a.csv"), "v\n110101001001\n").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(data.join("node.key"), import.join("k.csv")).unwrap();
        let token = ApiToken::create(&data).unwrap();
        let dirs = Directories {
            import: Some(Confined::new("import", &import, &data).unwrap()),
            export: Some(Confined::new("export", &export, &data).unwrap()),
        };
        let gate = Gate {
            token: token.clone(),
            departments: Default::default(),
            hosts: AllowedHosts::for_bind(HOST.parse().unwrap(), &[]),
        };
        let fake = common::Fake::default();
        *fake.export.lock().unwrap() = Some(b"h\nx\n".to_vec());
        World {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            app: router(fake.clone(), gate, dirs),
            fake,
            token,
            dir,
        }
    })
}

const PATHS: &[&str] = &[
    "/api/publish?dataset=d&region_field=v&format=csv",
    "/api/publish/file",
    "/api/jobs/1",
    "/api/status",
    "/api/export?dataset=d",
    "/api/export",
    "/api/catalog",
    "/api/catalog/a",
    "/api/peers",
    "/api/revocations",
    "/api/openapi.json",
];

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let w = world();
    let (head, rest) = data.split_at(3);
    let method = ["GET", "POST", "PUT", "DELETE"][usize::from(head[0] % 4)];
    let auth = head[1] % 4;
    let host_ok = head[2] % 8 != 0;
    // The rest: "<path or index>\n<body>".
    let split = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let (path_part, body) = (&rest[..split], rest.get(split + 1..).unwrap_or(&[]));
    let path = match path_part {
        [i] => PATHS[usize::from(*i) % PATHS.len()].to_string(),
        p => String::from_utf8_lossy(p).into_owned(),
    };
    let mut request = Request::builder().method(method).uri(path.as_str());
    if host_ok {
        request = request.header("host", HOST);
    } else {
        request = request.header("host", "evil.example:7480");
    }
    let authorized = auth != 0 && host_ok;
    match auth {
        0 => {}
        1 | 2 => request = request.header("authorization", w.token.bearer()),
        _ => request = request.header("authorization", "Bearer 00"),
    }
    let authorized = authorized && auth != 3;
    if !body.is_empty() && body[0] == b'{' {
        request = request.header("content-type", "application/json");
    }
    let Ok(request) = request.body(Body::from(body.to_vec())) else {
        return;
    };
    // The OpenAPI document is answered without a token (to the right Host, for GET/HEAD).
    let open = host_ok
        && request.method() == axum::http::Method::GET
        && backflow_api::gate::OPEN_PATHS.contains(&request.uri().path());
    // The fake keeps what it was asked to publish: forget it, or memory grows with the run.
    w.fake.published.lock().unwrap().clear();
    w.runtime.block_on(async {
        let Ok(response) = w.app.clone().oneshot(request).await;
        let status = response.status();
        if !authorized && !open {
            assert!(
                status == StatusCode::UNAUTHORIZED || status == StatusCode::MISDIRECTED_REQUEST,
                "ungated: {status} for {path}"
            );
        }
        assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{path}");
        let bytes = match response.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return,
        };
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(KEY), "key in a response to {path}");
        assert!(
            !w.token.admits(format!("Bearer {}", text.trim()).as_bytes()),
            "token in a response"
        );
    });
    // Nothing written beside the data directory's key, nothing outside the export directory.
    let data_dir: Vec<_> = std::fs::read_dir(w.dir.path().join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        data_dir.len(),
        2,
        "files appeared in the data directory: {data_dir:?}"
    );
    assert_eq!(
        std::fs::read_to_string(w.dir.path().join("data/node.key")).unwrap(),
        KEY
    );
});
