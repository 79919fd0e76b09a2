//! `oacis serve` settings: every one a flag and an `OACIS_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How to run the server.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// The data folder (created with an empty store if missing).
    #[arg(long, value_name = "DIR", env = "OACIS_DATA", default_value = "./oacis-data")]
    pub data: PathBuf,
    /// Where the key-encryption key of the personal data is.
    #[command(flatten)]
    pub keys: crate::cli::keys::KeyArgs,
    /// The event store's page cache (sled's), in MiB. Queries are answered from the views, so
    /// the store's cache serves only the command path's stream reads (a miss is a read from
    /// the operating system's page cache). 64 MiB served the load run as fast as 1,024 MiB
    /// with 500 MiB less resident memory (BENCHMARKS.md).
    #[arg(long, value_name = "MIB", env = "OACIS_STORE_CACHE_MIB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(16..))]
    pub store_cache_mib: u64,
    /// Keep the log on PostgreSQL instead of the embedded store: a `postgres://` URL (or
    /// libpq key=value string with `host=`). Several servers may share one database; each
    /// keeps its views and follows the log. The data folder still holds this server's key
    /// store and attachments. Unset: the embedded store in the data folder.
    #[arg(long, value_name = "URL", env = "OACIS_STORE")]
    pub store: Option<String>,
    /// How long a request carrying `Oacis-Min-Seq: N` waits for this server's views to reach
    /// seq N (read-your-writes across servers) before it is answered 503, in milliseconds.
    #[arg(long, value_name = "MS", env = "OACIS_CONSISTENCY_WAIT_MS", default_value_t = 5_000)]
    pub consistency_wait_ms: u64,
    /// Address and port to listen on.
    #[arg(long, value_name = "ADDR", env = "OACIS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Fill an empty store with demo data (customers, users of every default role) first.
    #[arg(long, env = "OACIS_DEMO")]
    pub demo: bool,
    /// Customers the demo generates.
    #[arg(long, value_name = "N", env = "OACIS_DEMO_CUSTOMERS", default_value_t = 2_000)]
    pub demo_customers: usize,
    /// The first administrator's password (generated and printed once when unset).
    #[arg(long, env = "OACIS_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// Consecutive failed sign-ins that lock an account.
    #[arg(long, value_name = "N", env = "OACIS_LOCKOUT_THRESHOLD", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub lockout_threshold: u32,
    /// How long a failed-sign-in lock lasts, in minutes.
    #[arg(long, value_name = "MINUTES", env = "OACIS_LOCKOUT_MINUTES", default_value_t = 15)]
    pub lockout_minutes: u32,
    /// A session ends after this many minutes without a request.
    #[arg(long, value_name = "MINUTES", env = "OACIS_SESSION_IDLE_MINUTES", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    pub session_idle_minutes: u32,
    /// A session ends this many hours after sign-in, however active.
    #[arg(long, value_name = "HOURS", env = "OACIS_SESSION_MAX_HOURS", default_value_t = 12, value_parser = clap::value_parser!(u32).range(1..))]
    pub session_max_hours: u32,
    /// Largest request body, in bytes.
    #[arg(long, value_name = "BYTES", env = "OACIS_MAX_BODY_BYTES", default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(1024..))]
    pub max_body_bytes: u64,
    /// Largest GraphQL multipart request (a file upload for `importCustomers`), in bytes.
    #[arg(long, value_name = "BYTES", env = "OACIS_MAX_UPLOAD_BYTES", default_value_t = 33 << 20, value_parser = clap::value_parser!(u64).range(1024..))]
    pub max_upload_bytes: u64,
    /// A multipart request (an import) whose body has not arrived within this is answered
    /// 408, in seconds.
    #[arg(long, value_name = "SECONDS", env = "OACIS_UPLOAD_TIMEOUT_SECONDS", default_value_t = 600)]
    pub upload_timeout_seconds: u64,
    /// A request whose body has not arrived within this is answered 408, and one still
    /// running after it 503 with code TIMEOUT (a write in it may still be recorded: retry with
    /// the same clientMutationId), in seconds.
    #[arg(long, value_name = "SECONDS", env = "OACIS_REQUEST_TIMEOUT_SECONDS", default_value_t = 10)]
    pub request_timeout_seconds: u64,
    /// On SIGTERM or SIGINT: how long requests in flight may take to finish before the
    /// server exits anyway, in seconds.
    #[arg(long, value_name = "SECONDS", env = "OACIS_SHUTDOWN_SECONDS", default_value_t = 20)]
    pub shutdown_seconds: u64,
    /// Requests without an `Authorization` header act as this user, with its roles and
    /// scopes as if it had signed in (PostGraphile's default role): for dashboards, kiosks and
    /// load tests. A user who may administer users or roles is never used so. Unset: such
    /// requests are UNAUTHENTICATED.
    #[arg(long, value_name = "USERNAME", env = "OACIS_ANONYMOUS_USER")]
    pub anonymous_user: Option<String>,
    /// A bearer token that lets a scraper read `/metrics` without a session (at least 32
    /// characters; compared in constant time).
    #[arg(long, value_name = "TOKEN", env = "OACIS_METRICS_TOKEN", hide_env_values = true, value_parser = metrics_token)]
    pub metrics_token: Option<String>,
    /// Sign-in attempts per minute per account.
    #[arg(long, value_name = "N", env = "OACIS_SIGNIN_PER_ACCOUNT_PER_MINUTE", default_value_t = 10)]
    pub sign_in_per_account_per_minute: u32,
    /// Sign-in attempts per minute per client address.
    #[arg(long, value_name = "N", env = "OACIS_SIGNIN_PER_ADDRESS_PER_MINUTE", default_value_t = 30)]
    pub sign_in_per_address_per_minute: u32,
    /// The region whose national phone forms are understood (ISO 3166-1 alpha-2).
    #[arg(long, value_name = "CC", env = "OACIS_DEFAULT_REGION", default_value = "CN")]
    pub default_region: String,
    /// Serve HTTPS with this certificate chain (PEM, leaf first); needs `--tls-key`.
    #[arg(long, value_name = "FILE", env = "OACIS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert` (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", env = "OACIS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The folder `runBackup` writes backups into (created if missing). Unset: backups are
    /// taken offline with `oacis backup`.
    #[arg(long, value_name = "DIR", env = "OACIS_BACKUP_DIR")]
    pub backup_dir: Option<PathBuf>,
    /// A customer file (CSV or .xlsx) to import at start, as `admin`, after any demo data;
    /// skipped when the same file (by BLAKE3) was imported into this store before and not
    /// undone. Rows are matched by their id column, else their external_id column.
    #[arg(long, value_name = "FILE", env = "OACIS_IMPORT")]
    pub import: Option<PathBuf>,
    /// For `--import`: a header the import does not know and the field it holds (or
    /// `ignore`), `--import-map "客户名=name"`; repeatable (comma-separated in the variable).
    #[arg(long, value_name = "HEADER=FIELD", env = "OACIS_IMPORT_MAP", value_delimiter = ',')]
    pub import_map: Vec<String>,
    /// For `--import`: leave out refused values a row can do without (a bad phone, a
    /// person's industry, an unknown owner or status), each reported, instead of refusing
    /// the row.
    #[arg(long, env = "OACIS_IMPORT_OMIT_INVALID_VALUES")]
    pub import_omit_invalid_values: bool,
}

/// A metrics token: 32 characters or more, no white space.
fn metrics_token(value: &str) -> Result<String, String> {
    if value.chars().count() < 32 || value.chars().any(char::is_whitespace) {
        return Err("at least 32 characters, without white space".into());
    }
    Ok(value.to_owned())
}

impl ServeArgs {
    /// The request timeout.
    #[must_use]
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_seconds.max(1))
    }

    /// Microseconds in a failed-login lock.
    #[must_use]
    pub fn lockout_us(&self) -> i64 {
        i64::from(self.lockout_minutes) * 60 * 1_000_000
    }

    /// Microseconds a session may stay idle.
    #[must_use]
    pub fn session_idle_us(&self) -> i64 {
        i64::from(self.session_idle_minutes) * 60 * 1_000_000
    }

    /// Microseconds a session may last.
    #[must_use]
    pub fn session_max_us(&self) -> i64 {
        i64::from(self.session_max_hours) * 3_600 * 1_000_000
    }
}
