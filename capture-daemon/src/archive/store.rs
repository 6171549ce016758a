//! The archive's object store: an S3-compatible bucket (AWS S3, Garage, Ceph RGW, MinIO)
//! reached with the `object_store` crate's S3 client, which signs requests (SigV4), streams
//! multipart uploads and reads byte ranges. ringcap adds where things go in the bucket
//! ([`ArchiveTarget`]), where settings come from, and errors that say what to fix.
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use super::ArchiveError;

/// `s3://BUCKET/PREFIX`: the bucket, and the prefix every key of this archive starts with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveTarget {
    pub bucket: String,
    /// Without leading or trailing `/`; may be empty.
    pub prefix: String,
}

impl ArchiveTarget {
    pub fn parse(url: &str) -> Result<Self, ArchiveError> {
        let bad = |why: &str| ArchiveError::BadUrl { url: url.to_string(), why: why.to_string() };
        let rest = url.strip_prefix("s3://").ok_or_else(|| bad("it must start with s3://"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        // S3's bucket naming rules: 3-63 characters of lower-case letters, digits, '.', '-'.
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
            && !bucket.starts_with(['.', '-'])
            && !bucket.ends_with(['.', '-']);
        if !bucket_ok {
            return Err(bad("the bucket name must be 3-63 lower-case letters, digits, '.' or '-'"));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|part| part == "." || part == "..") || prefix.contains("//") {
            return Err(bad("the prefix must not hold empty, '.' or '..' parts"));
        }
        Ok(ArchiveTarget { bucket: bucket.to_string(), prefix: prefix.to_string() })
    }

    /// The key of `parts` under the prefix.
    pub fn key(&self, parts: &[&str]) -> ObjectPath {
        let mut joined = self.prefix.clone();
        for part in parts {
            if !joined.is_empty() {
                joined.push('/');
            }
            joined.push_str(part);
        }
        ObjectPath::from(joined)
    }

    /// The prefix as an object path (`None` when the whole bucket is the archive).
    pub fn prefix_path(&self) -> Option<ObjectPath> {
        (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.as_str()))
    }
}

impl std::fmt::Display for ArchiveTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.prefix.as_str() {
            "" => write!(f, "s3://{}", self.bucket),
            prefix => write!(f, "s3://{}/{prefix}", self.bucket),
        }
    }
}

/// How to reach the archive. What is not given here comes from the environment variables
/// every S3 tool reads: `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT`), `AWS_REGION` (or
/// `AWS_DEFAULT_REGION`), `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`.
#[derive(Clone, Debug)]
pub struct ArchiveSettings {
    pub target: ArchiveTarget,
    /// The server's URL (`http://127.0.0.1:3900`); AWS when neither this nor the
    /// environment names one.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// An AWS shared-credentials file (`aws_access_key_id`, `aws_secret_access_key` in a
    /// `[default]` or `[$AWS_PROFILE]` section), used when the environment has no keys.
    pub credentials_file: Option<PathBuf>,
}

/// The archive's bucket, and the runtime its requests run on.
pub struct Archive {
    pub target: ArchiveTarget,
    pub store: Arc<dyn ObjectStore>,
    runtime: tokio::runtime::Runtime,
}

/// How long one request may take before it counts as failed (a stopped server must not
/// stall the uploader) and how long connecting may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Archive {
    /// Sets up the client; sends nothing yet (see [`Archive::check`]).
    pub fn connect(settings: &ArchiveSettings) -> Result<Self, ArchiveError> {
        let env =
            |names: &[&str]| names.iter().find_map(|name| std::env::var(name).ok()).filter(|v| !v.is_empty());
        let mut builder = AmazonS3Builder::new().with_bucket_name(&settings.target.bucket);
        let endpoint = settings.endpoint.clone().or_else(|| env(&["AWS_ENDPOINT_URL", "AWS_ENDPOINT"]));
        if let Some(endpoint) = &endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        // Plain HTTP only where the endpoint asks for it (a server on the same host or LAN).
        let allow_http = endpoint.as_deref().is_some_and(|e| e.starts_with("http://"));
        let region = settings.region.clone().or_else(|| env(&["AWS_REGION", "AWS_DEFAULT_REGION"]));
        builder = builder.with_region(region.unwrap_or_else(|| "us-east-1".into()));
        let keys = match (env(&["AWS_ACCESS_KEY_ID"]), env(&["AWS_SECRET_ACCESS_KEY"])) {
            (Some(id), Some(secret)) => Some((id, secret)),
            _ => match &settings.credentials_file {
                Some(path) => Some(read_credentials(path)?),
                None => None,
            },
        };
        let Some((id, secret)) = keys else {
            return Err(ArchiveError::NoCredentials { target: settings.target.to_string() });
        };
        builder = builder.with_access_key_id(id).with_secret_access_key(secret);
        if let Some(token) = env(&["AWS_SESSION_TOKEN"]) {
            builder = builder.with_token(token);
        }
        // The client retries briefly; the uploader's own backoff (counted) does the rest.
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
            },
            max_retries: 2,
            retry_timeout: Duration::from_secs(20),
        };
        let options = ClientOptions::new()
            .with_allow_http(allow_http)
            .with_timeout(REQUEST_TIMEOUT)
            .with_connect_timeout(CONNECT_TIMEOUT);
        let store =
            builder.with_retry(retry).with_client_options(options).build().map_err(|e| {
                ArchiveError::Setup { target: settings.target.to_string(), why: e.to_string() }
            })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("archive-io")
            .enable_all()
            .build()
            .map_err(|e| ArchiveError::Setup { target: settings.target.to_string(), why: e.to_string() })?;
        Ok(Archive { target: settings.target.clone(), store: Arc::new(store), runtime })
    }

    /// Runs a request to completion on the archive's runtime (from any thread but its own).
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Lists the prefix once: tells at start whether the bucket is reachable and the
    /// credentials are accepted.
    pub fn check(&self) -> Result<(), ArchiveError> {
        use futures_util::StreamExt;
        let prefix = self.target.prefix_path();
        let first = self.block_on(async { self.store.list(prefix.as_ref()).next().await });
        match first {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(ArchiveError::from_store(&self.target, e)),
        }
    }
}

/// The access key and secret of an AWS shared-credentials file.
fn read_credentials(path: &Path) -> Result<(String, String), ArchiveError> {
    use std::os::unix::fs::PermissionsExt;
    let refused = |why: String| ArchiveError::Credentials { path: path.to_path_buf(), why };
    let meta = std::fs::metadata(path).map_err(|e| refused(e.to_string()))?;
    if meta.permissions().mode() & 0o004 != 0 {
        return Err(refused(format!("it is readable by every user: chmod o-r {} (or 600)", path.display())));
    }
    let text = std::fs::read_to_string(path).map_err(|e| refused(e.to_string()))?;
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    let (mut section, mut id, mut secret) = (String::new(), None, None);
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().trim_start_matches("profile ").to_string();
        } else if let Some((key, value)) = line.split_once('=') {
            if section == profile {
                match key.trim() {
                    "aws_access_key_id" => id = Some(value.trim().to_string()),
                    "aws_secret_access_key" => secret = Some(value.trim().to_string()),
                    _ => {}
                }
            }
        }
    }
    match (id, secret) {
        (Some(id), Some(secret)) => Ok((id, secret)),
        _ => Err(ArchiveError::Credentials {
            path: path.to_path_buf(),
            why: format!("no aws_access_key_id and aws_secret_access_key in its [{profile}] section"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_urls() {
        let t = ArchiveTarget::parse("s3://ringcap-evidence/gateways/fra1/").unwrap();
        assert_eq!((t.bucket.as_str(), t.prefix.as_str()), ("ringcap-evidence", "gateways/fra1"));
        assert_eq!(t.key(&["gw1", "pins", "a"]).as_ref(), "gateways/fra1/gw1/pins/a");
        assert_eq!(t.to_string(), "s3://ringcap-evidence/gateways/fra1");
        let t = ArchiveTarget::parse("s3://bucket").unwrap();
        assert_eq!(t.key(&["x"]).as_ref(), "x");
        for bad in [
            "http://b/p",
            "s3://",
            "s3://B/p",
            "s3://ab",
            "s3://b-/p",
            "s3://bucket/a/../b",
            "s3://bucket/a//b",
        ] {
            assert!(ArchiveTarget::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shared_credentials_files() {
        let path = std::env::temp_dir().join(format!("ringcap-credentials-{}", std::process::id()));
        std::fs::write(&path, "[other]\naws_access_key_id = no\n[default]\naws_access_key_id = GKabc\naws_secret_access_key = s3cr3t\n")
            .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let refused = read_credentials(&path).unwrap_err().to_string();
        assert!(refused.contains("readable by every user"), "{refused}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_credentials(&path).unwrap(), ("GKabc".into(), "s3cr3t".into()));
        std::fs::write(&path, "[default]\naws_access_key_id = GKabc\n").unwrap();
        assert!(read_credentials(&path).unwrap_err().to_string().contains("aws_secret_access_key"));
        std::fs::remove_file(&path).unwrap();
    }
}
