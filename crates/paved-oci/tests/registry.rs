//! Against a real registry: Debian's `docker-registry` (distribution 2.8)
//! started on 127.0.0.1 for each test.

use paved_oci::{Auth, Image, Registry};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Served {
    child: Child,
    _dir: tempfile::TempDir,
    url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("these tests need Debian's docker-registry package (distribution 2.8)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "docker-registry did not listen on 127.0.0.1:{port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Served { child, _dir: dir, url: format!("http://127.0.0.1:{port}") }
}

/// The body of a plain HTTP GET (what any client would be served).
fn get(url: &str, path: &str) -> Vec<u8> {
    use std::io::{Read, Write};
    let host = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\nAccept: application/vnd.oci.image.manifest.v1+json\r\n\r\n")
        .unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let at = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    assert!(all.starts_with(b"HTTP/1.0 200") || all.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&all));
    all[at + 4..].to_vec()
}

fn image(body: &str) -> Image {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("bin")).unwrap();
    std::fs::write(dir.path().join("bin/api"), body).unwrap();
    Image::of_bundle(dir.path(), &["/bin/api".into()], &[]).unwrap()
}

#[tokio::test]
async fn an_image_pushed_by_digest_is_there_and_copies_to_another_registry_unchanged() {
    let (a, b) = (serve(), serve());
    let first =
        Registry::new("111111111111.dkr.ecr.eu-central-1.amazonaws.com", Some(&a.url), Auth::Anonymous).unwrap();
    let second = Registry::new("222222222222.dkr.ecr.eu-west-1.amazonaws.com", Some(&b.url), Auth::Anonymous).unwrap();
    let v1 = image("v1");
    assert!(!first.has("paved/api", v1.digest()).await.unwrap());
    first.push("paved/api", &v1).await.unwrap();
    assert!(first.has("paved/api", v1.digest()).await.unwrap());
    // Pushing again is harmless.
    first.push("paved/api", &v1).await.unwrap();
    // The registry serves exactly the bytes whose hash is the digest.
    assert_eq!(paved_oci::sha256(&get(&a.url, &format!("/v2/paved/api/manifests/{}", v1.digest()))), v1.digest());
    assert!(!second.has("paved/api", v1.digest()).await.unwrap());
    second.copy_from(&first, "paved/api", "paved/api", v1.digest()).await.unwrap();
    assert!(second.has("paved/api", v1.digest()).await.unwrap());
    assert_eq!(
        second.image_reference("paved/api", v1.digest()),
        format!("222222222222.dkr.ecr.eu-west-1.amazonaws.com/paved/api@{}", v1.digest())
    );
    // A digest the source does not hold is an error naming the registry.
    let v2 = image("v2");
    let err = second.copy_from(&first, "paved/api", "paved/api", v2.digest()).await.unwrap_err().to_string();
    assert!(err.contains("111111111111.dkr.ecr.eu-central-1.amazonaws.com"), "{err}");
}

#[tokio::test]
async fn an_unreachable_registry_is_an_error_naming_it() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let r = Registry::new("r.example.com", Some(&format!("http://127.0.0.1:{port}")), Auth::Anonymous).unwrap();
    let err = r.has("paved/api", image("v1").digest()).await.unwrap_err().to_string();
    assert!(err.starts_with(&format!("registry r.example.com (at 127.0.0.1:{port})")), "{err}");
}
