//! Routes, headers and the page, against the real binary.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Server;

const POD: [(&str, &str); 3] = [
    ("VERSION", "0.5"),
    ("POD_IP", "172.1.62.11"),
    ("POD_NAME", "testpage-7d9f-abcde"),
];

#[test]
fn page_is_the_tutorials_byte_for_byte() {
    let server = Server::start(&POD);
    let r = server.get("/");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"I am: 172.1.62.11, the version is: 0.5\n");
    assert_eq!(r.header("content-length"), Some("39"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
}

#[test]
fn head_has_exact_length_and_no_body() {
    let server = Server::start(&POD);
    let mut conn = common::Conn::open(server.addr);
    let head = conn.send("HEAD / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("39"));
    // The next response on the same connection starts right away: no body bytes were sent.
    let next = conn.get("/healthz").unwrap();
    assert_eq!((next.status, next.text().as_str()), (200, "ok\n"));
}

#[test]
fn head_over_http2_has_the_length_and_no_body() {
    use http_body_util::{BodyExt, Empty};
    let server = Server::start(&POD);
    common::runtime().block_on(async {
        let (mut sender, _driver) = common::h2_client(server.addr, None).await;
        for (method, path, body_len) in [
            (hyper::Method::HEAD, "/", 0),
            (hyper::Method::GET, "/", 39),
            (hyper::Method::HEAD, "/healthz", 0),
            (hyper::Method::HEAD, "/events", 0),
        ] {
            let request = hyper::Request::builder()
                .method(method.clone())
                .uri(format!("http://t{path}"))
                .body(Empty::<bytes::Bytes>::new())
                .unwrap();
            let response = sender.send_request(request).await.unwrap();
            assert_eq!(response.status(), 200, "{method} {path}");
            if path == "/" {
                assert_eq!(response.headers()["content-length"], "39", "{method}");
            }
            // A body on a HEAD answer is a protocol error to HTTP/2 clients (curl -I fails).
            let body = response.into_body().collect().await;
            let body = body.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
            assert_eq!(body.to_bytes().len(), body_len, "{method} {path}");
        }
    });
}

#[test]
fn identity_headers_on_every_response() {
    let server = Server::start(&POD);
    for path in ["/", "/healthz", "/readyz", "/info", "/nope", "/delay/x"] {
        let r = server.get(path);
        assert_eq!(r.header("x-version"), Some("0.5"), "{path}");
        assert_eq!(r.header("x-pod"), Some("testpage-7d9f-abcde"), "{path}");
        assert_eq!(r.header("x-pod-ip"), Some("172.1.62.11"), "{path}");
    }
}

#[test]
fn x_pod_falls_back_to_hostname() {
    let server = Server::start(&[("VERSION", "1")]);
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(server.get("/").header("x-pod"), Some(hostname.trim()));
}

#[test]
fn health_readiness_and_aliases() {
    let server = Server::start(&POD);
    for (path, status, body) in [
        ("/healthz", 200, "ok\n"),
        ("/livez", 200, "ok\n"),
        ("/readyz", 200, "ready\n"),
        ("/healthy.html", 200, "ready\n"),
        ("/missing", 404, "not found\n"),
        ("/index.html", 404, "not found\n"),
    ] {
        let r = server.get(path);
        assert_eq!((r.status, r.text().as_str()), (status, body), "{path}");
    }
    let post = server.request("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
}

#[test]
fn info_json_and_accept_negotiation() {
    let server = Server::start(&[
        ("VERSION", "0.9"),
        ("POD_IP", "10.1.2.3"),
        ("POD_NAME", "p"),
        ("POD_NAMESPACE", "ns"),
        ("NODE_NAME", "n1"),
        ("COLOR", "blue"),
    ]);
    let r = server.get("/info");
    assert_eq!(r.header("content-type"), Some("application/json"));
    let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(json["ip"], "10.1.2.3", "flat document: {json}");
    let info: testpage::pod_info::Info = serde_json::from_value(json).unwrap();
    let pod = &info.pod_info;
    assert_eq!(pod.ip.to_string(), "10.1.2.3");
    assert_eq!(pod.version, "0.9");
    assert_eq!(pod.pod.as_deref(), Some("p"));
    assert_eq!(pod.namespace.as_deref(), Some("ns"));
    assert_eq!(pod.node.as_deref(), Some("n1"));
    assert_eq!(pod.color.as_deref(), Some("blue"));
    assert_eq!(info.state, "serving");
    assert!(info.started_at.ends_with('Z'), "{}", info.started_at);

    let r = server.request(
        "GET / HTTP/1.1\r\nHost: t\r\nAccept: text/html, application/json;q=0.9\r\nConnection: close\r\n\r\n",
    );
    let json: testpage::pod_info::Info = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(json.pod_info.version, "0.9");
}

#[test]
fn message_template_fields() {
    let server = Server::start(&[
        ("VERSION", "2"),
        ("POD_IP", "10.0.0.7"),
        ("COLOR", "green"),
        ("MESSAGE", "This is version {version}. ({color} {ip})"),
    ]);
    assert_eq!(
        server.get("/").text(),
        "This is version 2. (green 10.0.0.7)\n"
    );
}

#[test]
fn ip_is_discovered_when_pod_ip_is_unset() {
    // No POD_IP and an interface that does not exist: the default-route or first non-loopback
    // address is reported, and it is one of this host's addresses.
    let server = Server::start(&[("VERSION", "1"), ("INTERFACE", "nonexistent0")]);
    let page = server.get("/").text();
    let ip = page
        .strip_prefix("I am: ")
        .and_then(|rest| rest.split(',').next())
        .unwrap();
    let ip: std::net::IpAddr = ip.parse().unwrap();
    assert!(
        std::net::TcpListener::bind((ip, 0)).is_ok(),
        "{ip} is not a local address"
    );
}

#[test]
fn delay_waits_then_answers_the_page() {
    let server = Server::start(&POD);
    let started = std::time::Instant::now();
    let r = server.get("/delay/300ms");
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    assert_eq!(r.text(), "I am: 172.1.62.11, the version is: 0.5\n");
    for bad in ["/delay/-1", "/delay/fast", "/delay/"] {
        assert_eq!(server.get(bad).status, 400, "{bad}");
    }
}

#[test]
fn the_live_view_is_one_page_and_its_polls_each_get_a_new_connection() {
    let server = Server::start(&[("VERSION", "0.9")]);
    let ui = server.get("/ui");
    assert_eq!(ui.status, 200);
    assert_eq!(ui.header("content-type"), Some("text/html; charset=utf-8"));
    let page = ui.text();
    let script = server.get("/ui.js");
    assert_eq!(script.status, 200);
    assert_eq!(
        script.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    let code = script.text();
    assert!(code.contains("dataset.version") && code.contains("X-Testpage-View"));
    assert_eq!(server.get("/ui.css").status, 200);
    let size = ui.body.len() + script.body.len() + server.get("/ui.css").body.len();
    assert!(size < 32 * 1024, "{size} bytes");
    // Nothing from elsewhere: no script, style or font from another origin.
    assert!(!page.contains("src=\"http") && !page.contains("href=\"http"));
    // No inline script or style, and a policy that forbids them and any framing.
    assert!(page.contains("<script src=\"ui.js\"></script>") && !page.contains("<style"));
    let policy = ui.header("content-security-policy").unwrap_or_default();
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(part), "{policy}");
    }
    assert_eq!(ui.header("x-frame-options"), Some("DENY"));

    // A poll of the view is answered with Connection: close; a keep-alive client is not.
    let mut conn = common::Conn::open(server.addr);
    let plain = conn.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(plain.header("connection"), None);
    let poll = conn
        .send("GET / HTTP/1.1\r\nHost: t\r\nAccept: application/json\r\nX-Testpage-View: 1\r\n\r\n")
        .unwrap();
    assert_eq!(poll.header("connection"), Some("close"));
    assert!(poll.text().contains("\"version\":\"0.9\""));
    assert!(conn.closed_within(std::time::Duration::from_secs(2)));
}

#[test]
fn a_fault_for_another_version_is_refused_and_changes_nothing() {
    let server = Server::start(&[("VERSION", "0.9")]);
    let post = |path: &str| {
        server.request(&format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ))
    };
    let other = post("/fault?error_rate=1&version=0.8");
    assert_eq!(other.status, 409);
    assert!(
        other.text().contains("serves version 0.9"),
        "{}",
        other.text()
    );
    assert!(server.get("/fault").text().contains("\"error_rate\":0.0"));
    let ours = post("/fault?error_rate=1&version=0.9");
    assert_eq!(ours.status, 200);
    assert!(server.get("/fault").text().contains("\"error_rate\":1.0"));
}
