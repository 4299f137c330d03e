//! `sunlight-hub`: the command line of the county hub.

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use sunlight_hub::clock::HubClock;
use sunlight_hub::config::HubConfig;
use sunlight_hub::downkeys::HubKeys;
use sunlight_hub::ingest::{self, BrokerLink, Ingest, IngestConfig, Supervision};
use sunlight_hub::metrics::Metrics;
use sunlight_hub::store::{self, Reader, Writer};
use sunlight_hub::{Error, broker, enroll, notify, supervise, web};
use sunlight_protocol::{DeviceId, PublicKey, SiteId};

#[derive(Parser)]
#[command(
    name = "sunlight-hub",
    version,
    about = "Sunlight county hub: ingest, store and oversight of the township boxes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start: the size of the largest variant (`run` with its many options) costs nothing.
// `sunlight-hub command send|list` is the CLI's word for commands to boxes.
#[allow(clippy::large_enum_variant, clippy::enum_variant_names)]
#[derive(Subcommand)]
enum Command {
    /// Run the hub.
    Run(RunArgs),
    /// Manage registered boxes.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Manage the item catalog (事项目录).
    #[command(subcommand)]
    Items(ItemsCommand),
    /// Manage the roster: clerks, their windows, A/B roles and kiosk PINs.
    #[command(subcommand)]
    Roster(RosterCommand),
    /// Manage dashboard accounts (supervisors, township heads, technicians, admins).
    #[command(subcommand)]
    User(UserCommand),
    /// Enroll boxes over the network: one-time tokens for `sunlight-agent enroll`.
    #[command(subcommand)]
    Enroll(EnrollCommand),
    /// Agent updates: publish signed archives, roll them out in waves, follow each box.
    #[command(subcommand)]
    Update(UpdateCommand),
    /// Send maintenance commands to boxes (executed at most once, answered through the outbox).
    #[command(subcommand)]
    Command(CommandCommand),
    /// The hub's down-link keys, which seal every ack and command a box obeys.
    #[command(subcommand)]
    HubKey(HubKeyCommand),
    /// The working-day calendar: load a year's official holidays (放假安排) at run time.
    #[command(subcommand)]
    Calendar(CalendarCommand),
    /// Check a configuration file and print what it sets.
    CheckConfig {
        /// The file, e.g. /etc/sunlight/hub.toml (see hub/hub.example.toml).
        path: PathBuf,
    },
}

#[derive(Subcommand)]
enum UpdateCommand {
    /// Check an archive's signature against [updates] verifying_keys of --config and keep it in
    /// the data directory, where boxes download it from.
    Publish {
        #[arg(long, default_value = "/var/lib/sunlight-hub")]
        data_dir: PathBuf,
        /// The hub's configuration file with [updates] verifying_keys.
        #[arg(long, default_value = "/etc/sunlight/hub.toml")]
        config: PathBuf,
        /// The release's version; the archive's VERSION file must say the same.
        #[arg(long)]
        version: String,
        /// The signed .tar.gz (sunlight-provision sign-update).
        archive: PathBuf,
        #[arg(long, default_value = "admin")]
        by: String,
    },
    /// Send `update` to a wave of boxes: --percent P (a fixed share: the boxes of 10% are in 50%)
    /// or --sites a,b. Boxes already on the version, or already sent it, are skipped.
    Rollout {
        #[arg(long, default_value = "/var/lib/sunlight-hub")]
        data_dir: PathBuf,
        #[arg(long)]
        version: String,
        #[arg(long, conflicts_with = "sites", required_unless_present = "sites")]
        percent: Option<u32>,
        #[arg(long, value_delimiter = ',')]
        sites: Vec<String>,
        #[arg(long, default_value = "admin")]
        by: String,
        /// The version is older than what the boxes run (a withdrawn release): boxes refuse an
        /// older version unless the command says so.
        #[arg(long)]
        downgrade: bool,
    },
    /// Show the published releases and each box's progress (sent, installed, healthy, rolled
    /// back with the reason, failed).
    Status {
        #[arg(long, default_value = "/var/lib/sunlight-hub")]
        data_dir: PathBuf,
        #[arg(long)]
        version: Option<String>,
    },
}

#[derive(Subcommand)]
enum CommandCommand {
    /// Record a command for a box (or every box of a site); the running hub publishes it until the
    /// box answers or it expires. Answers: `sunlight-hub command list`, GET /api/v1/commands.
    Send {
        #[arg(long, default_value = "/var/lib/sunlight-hub")]
        data_dir: PathBuf,
        #[arg(long)]
        site: String,
        /// One box; every registered box of the site without it.
        #[arg(long)]
        device: Option<String>,
        /// reload_config, upload_logs, snapshot, set_roster, restart, update.
        #[arg(long)]
        kind: String,
        /// The arguments as a JSON object, e.g. '{"max_kb": 256}'.
        #[arg(long)]
        args: Option<String>,
        /// Hours the box has to pick it up.
        #[arg(long, default_value_t = 24)]
        ttl_hours: u32,
        #[arg(long, default_value = "admin")]
        by: String,
    },
    /// The latest commands and their answers.
    List {
        #[arg(long, default_value = "/var/lib/sunlight-hub")]
        data_dir: PathBuf,
        #[arg(long)]
        site: Option<String>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a dashboard account; the password is read from --password-file or the first line of
    /// standard input (at least 10 characters), and stored as an argon2id hash.
    Add {
        #[arg(long, default_value = "/var/lib/sunlight-hub")]
        data_dir: PathBuf,
        #[arg(long)]
        name: String,
        /// supervisor (every site), head (one site, optionally one unit), technician (fleet
        /// page) or admin (everything, and the accounts page).
        #[arg(long)]
        role: String,
        /// The site a head oversees.
        #[arg(long)]
        site: Option<String>,
        /// The unit of that site, for a unit chief.
        #[arg(long)]
        unit: Option<String>,
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// Who is adding it (recorded in the audit log).
        #[arg(long, default_value = "admin")]
        by: String,
    },
    /// List the accounts.
    List {
        #[arg(long, default_value = "/var/lib/sunlight-hub")]
        data_dir: PathBuf,
    },
    /// Make an API token for an account (for scripts and other systems calling /api/v1/); it is
    /// printed once and acts with the account's role. The hub keeps only its SHA-256.
    Token {
        #[arg(long, default_value = "/var/lib/sunlight-hub")]
        data_dir: PathBuf,
        /// The account the token acts as.
        #[arg(long)]
        name: String,
        /// What uses the token, e.g. "county OA export".
        #[arg(long)]
        label: String,
        #[arg(long, default_value = "admin")]
        by: String,
    },
    /// List the API tokens (never the tokens themselves).
    Tokens {
        #[arg(long, default_value = "/var/lib/sunlight-hub")]
        data_dir: PathBuf,
    },
    /// Revoke an API token by the id `user tokens` shows.
    RevokeToken {
        #[arg(long, default_value = "/var/lib/sunlight-hub")]
        data_dir: PathBuf,
        #[arg(long)]
        id: i64,
        #[arg(long, default_value = "admin")]
        by: String,
    },
}

#[derive(Subcommand)]
enum EnrollCommand {
    /// Make a one-time enrollment token for a box that is not registered yet, and print the
    /// command the technician types on the box. The token is shown once; the hub keeps only its
    /// SHA-256.
    Token {
        #[arg(long, default_value = "/var/lib/sunlight-hub")]
        data_dir: PathBuf,
        #[arg(long)]
        site: SiteId,
        #[arg(long)]
        device: DeviceId,
        /// How long the token may be used, in hours (1 to 720).
        #[arg(long, default_value_t = 72)]
        ttl_hours: u32,
        /// Who makes it (recorded in the audit log).
        #[arg(long)]
        by: String,
        /// This hub's HTTP address as boxes reach it, e.g. https://hub.suixian.gov.cn.
        #[arg(long)]
        hub_url: String,
        /// The enrollment CA directory the hub runs with: the printed command then pins the
        /// county CA's fingerprint, and --bundle can include the county CA.
        #[arg(long)]
        enroll_ca_dir: Option<PathBuf>,
        /// Also write the token, the hub's address and the county CA into this directory (a USB
        /// stick): `sunlight-agent enroll --bundle DIR` reads it.
        #[arg(long, requires = "enroll_ca_dir")]
        bundle: Option<PathBuf>,
        /// The hub's configuration file: its [updates] verifying_keys go into the bundle.
        #[arg(long, requires = "bundle")]
        config: Option<PathBuf>,
    },
    /// List the enrollment tokens: waiting, used (when, from where), expired or replaced.
    List {
        #[arg(long, default_value = "/var/lib/sunlight-hub")]
        data_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum RosterCommand {
    /// Add or replace clerks from a TOML roster (PINs are hashed with argon2 on import).
    Import {
        #[arg(long, default_value = "/var/lib/sunlight-hub")]
        data_dir: PathBuf,
        file: PathBuf,
        #[arg(long, default_value = "admin")]
        by: String,
    },
    /// Print a site's roster as JSON, with PIN hashes: the file a box caches for offline punching.
    Export {
        #[arg(long, default_value = "/var/lib/sunlight-hub")]
        data_dir: PathBuf,
        #[arg(long)]
        site: String,
    },
}

#[derive(Subcommand)]
enum ItemsCommand {
    /// Add or replace items from a TOML catalog (see hub/data/items-demo.toml).
    Import {
        #[arg(long, default_value = "/var/lib/sunlight-hub")]
        data_dir: PathBuf,
        /// Import the demo catalog shipped with the hub instead of a file.
        #[arg(long, conflicts_with = "file")]
        demo: bool,
        file: Option<PathBuf>,
        /// Who is importing (recorded in the audit log).
        #[arg(long, default_value = "admin")]
        by: String,
    },
    /// Print the catalog as JSON.
    List {
        #[arg(long, default_value = "/var/lib/sunlight-hub")]
        data_dir: PathBuf,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Where the event store lives.
    #[arg(long, default_value = "/var/lib/sunlight-hub")]
    data_dir: PathBuf,
    /// HTTP API address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// Also serve the API over HTTPS on this address (boxes enrolling and uploading over the
    /// county network), with --tls-cert and --tls-key.
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    https: Option<SocketAddr>,
    /// The hub's server certificate from the county CA, PEM, with its chain (sunlight-provision
    /// init makes hub/server.pem for the hub hosts).
    #[arg(long, requires = "https")]
    tls_cert: Option<PathBuf>,
    /// Its private key, PEM (hub/server.key).
    #[arg(long, requires = "https")]
    tls_key: Option<PathBuf>,
    /// Run the embedded MQTT broker on this address (the default tier). Boxes log in with their
    /// device keys and are held to their own topics, but it has no TLS: on any address but loopback
    /// the hub refuses to start without --insecure-broker.
    #[arg(long, default_value = "127.0.0.1:1883", conflicts_with = "broker")]
    embedded_broker: SocketAddr,
    /// Serve the embedded broker on a non-loopback address although anybody on the network path
    /// can then read every batch and roster and replay a box's login (acks and commands stay
    /// sealed, batches signed).
    #[arg(long)]
    insecure_broker: bool,
    /// Use an external broker instead, e.g. mqtt://127.0.0.1:1883, or mqtts://host:8883 with the
    /// county CA and the hub's certificate (sunlight-provision init makes them).
    #[arg(long)]
    broker: Option<String>,
    /// The CA that signed the broker's certificate (for mqtts://).
    #[arg(long, requires = "broker")]
    broker_ca: Option<PathBuf>,
    /// The hub's client certificate at the broker (CN `hub`), with --broker-key.
    #[arg(long, requires = "broker")]
    broker_cert: Option<PathBuf>,
    #[arg(long, requires = "broker")]
    broker_key: Option<PathBuf>,
    /// MQTT client id of this hub process (its session is kept by the broker).
    #[arg(long, default_value = "sunlight-hub")]
    client_id: String,
    /// Largest batch accepted, in bytes.
    #[arg(long, default_value_t = sunlight_protocol::DEFAULT_MAX_BATCH_BYTES)]
    max_batch_bytes: usize,
    /// Fix "today" for oversight (YYYY-MM-DD): for simulations, training and tests only.
    #[arg(long)]
    today: Option<chrono::NaiveDate>,
    /// Seconds between oversight ticks (case lights and cards).
    #[arg(long, default_value_t = 60)]
    tick_secs: u64,
    /// Configuration file: notifications, contacts, rating and complaint rules (all optional).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Enroll boxes (POST /api/v1/enroll) with the enrollment CA in this directory (made by
    /// `sunlight-provision hub-signer`); without it, enrollment answers 503.
    #[arg(long)]
    enroll_ca_dir: Option<PathBuf>,
    /// The broker address enrolled boxes are given, e.g. mqtts://hub.suixian.gov.cn:8883
    /// (default: the first hub host of the county CA, port 8883).
    #[arg(long, requires = "enroll_ca_dir")]
    public_broker_url: Option<String>,
    /// Seconds before an unanswered command is published to its box again.
    #[arg(long, default_value_t = 60)]
    command_resend_secs: u32,
}

#[derive(Subcommand)]
enum HubKeyCommand {
    /// Print the keys in force as a box's `[hub] verifying_keys` line (makes the first key).
    Show {
        #[arg(long, default_value = "/var/lib/sunlight-hub")]
        data_dir: PathBuf,
    },
    /// Make the next key: from the hub's next start both keys seal, so boxes that trust either
    /// go on. Give the new line to every box (enrollment does), then `retire`.
    Rotate {
        #[arg(long, default_value = "/var/lib/sunlight-hub")]
        data_dir: PathBuf,
    },
    /// End a rotation: the next key becomes the only one (the old file is kept aside, renamed).
    Retire {
        #[arg(long, default_value = "/var/lib/sunlight-hub")]
        data_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum CalendarCommand {
    /// Load a year's official arrangement from the State Council notice: the project's TOML (as
    /// protocol/data/holidays-cn.toml) or the holiday-cn dataset's JSON. Checked first (dates
    /// inside the year, no day both off and make-up, every statutory holiday present); a running
    /// hub puts it in force within a minute and re-evaluates the open cases.
    Import {
        #[arg(long, default_value = "/var/lib/sunlight-hub")]
        data_dir: PathBuf,
        /// The file, e.g. 2027.json.
        file: PathBuf,
        #[arg(long, default_value = "admin")]
        by: String,
    },
    /// Show, per year, where the calendar's answers come from: official (shipped or loaded),
    /// provisional (the statutory holidays alone) or missing.
    Status {
        #[arg(long, default_value = "/var/lib/sunlight-hub")]
        data_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// Revoke a box (lost, stolen, replaced): its batches and uploads are refused from now on, also
    /// by a running hub. Regenerate the broker config too (`sunlight-provision revoke`).
    Revoke {
        #[arg(long, default_value = "/var/lib/sunlight-hub")]
        data_dir: PathBuf,
        #[arg(long)]
        site: SiteId,
        #[arg(long)]
        device: DeviceId,
        /// Why (recorded in the audit log and the alarm).
        #[arg(long)]
        reason: String,
        #[arg(long, default_value = "admin")]
        by: String,
    },
    /// Restart a box's agent: a `restart` command, answered first, executed once.
    Restart {
        #[arg(long, default_value = "/var/lib/sunlight-hub")]
        data_dir: PathBuf,
        #[arg(long)]
        site: SiteId,
        #[arg(long)]
        device: DeviceId,
        #[arg(long, default_value = "admin")]
        by: String,
    },
    /// Register a box with the public key that `sunlight-agent init` printed.
    Add {
        #[arg(long, default_value = "/var/lib/sunlight-hub")]
        data_dir: PathBuf,
        #[arg(long)]
        site: SiteId,
        #[arg(long)]
        device: DeviceId,
        #[arg(long)]
        pubkey: String,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn store_path(data_dir: &std::path::Path) -> Result<PathBuf, Error> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| Error::io(format!("creating data directory {}", data_dir.display()), e))?;
    Ok(data_dir.join("hub.db"))
}

fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Device(DeviceCommand::Add {
            data_dir,
            site,
            device,
            pubkey,
        }) => {
            let key = PublicKey::from_base64(&pubkey)
                .ok_or_else(|| Error::Invalid(format!("--pubkey {pubkey:?} is not a base64 ed25519 public key (copy it from 'sunlight-agent init')")))?;
            let added = store::add_device(&store_path(&data_dir)?, &site, &device, &key)?;
            let hub_keys = HubKeys::load_or_create(&data_dir)?.public_keys();
            println!(
                "{site}/{device} {}",
                if added {
                    "registered"
                } else {
                    "was already registered with this key"
                }
            );
            println!(
                "In the box's agent.toml, [hub] section (acks and commands are sealed by this hub):\n    verifying_keys = [{}]",
                enroll::toml_list(&hub_keys)
            );
            Ok(())
        }
        Command::HubKey(HubKeyCommand::Show { data_dir }) => {
            let keys = HubKeys::load_or_create(&data_dir)?.public_keys();
            println!("verifying_keys = [{}]", enroll::toml_list(&keys));
            Ok(())
        }
        Command::HubKey(HubKeyCommand::Rotate { data_dir }) => {
            let next = HubKeys::rotate(&data_dir)?;
            let keys = HubKeys::load_or_create(&data_dir)?.public_keys();
            println!(
                "Next hub key {next} made. Restart the hub: it then seals with both keys.\n\
                 Give every box this line (boxes enrolled from now on get it):\n    \
                 verifying_keys = [{}]\n\
                 Once every box has it: sunlight-hub hub-key retire",
                enroll::toml_list(&keys)
            );
            Ok(())
        }
        Command::HubKey(HubKeyCommand::Retire { data_dir }) => {
            let aside = HubKeys::retire(&data_dir)?;
            let keys = HubKeys::load_or_create(&data_dir)?.public_keys();
            println!(
                "The old hub key is retired (kept as {}). Restart the hub. Boxes need only:\n    \
                 verifying_keys = [{}]",
                aside.display(),
                enroll::toml_list(&keys)
            );
            Ok(())
        }
        Command::Device(DeviceCommand::Restart {
            data_dir,
            site,
            device,
            by,
        }) => {
            let mut writer = Writer::open(&existing_store(&data_dir)?)?;
            let ids = writer.run(|tx| {
                let ids = store::commands::create(
                    tx,
                    site.as_str(),
                    Some(device.as_str()),
                    "restart",
                    &serde_json::json!({}),
                    24 * 3_600_000,
                    &by,
                )?;
                if !ids.is_empty() {
                    store::audit(tx, &by, "device.restart", &format!("{site}/{device}"), "")?;
                }
                Ok(ids)
            })?;
            match ids.first() {
                Some(id) => {
                    println!(
                        "restart {id} recorded for {site}/{device}; the hub sends it within seconds (GET /api/v1/commands shows the answer)."
                    );
                    Ok(())
                }
                None => Err(Error::Invalid(format!(
                    "{site}/{device} is not registered at this hub"
                ))),
            }
        }
        Command::Device(DeviceCommand::Revoke {
            data_dir,
            site,
            device,
            reason,
            by,
        }) => {
            if store::revoke_device(
                &store_path(&data_dir)?,
                site.as_str(),
                device.as_str(),
                &by,
                &reason,
            )? {
                println!(
                    "{site}/{device} revoked: its batches and uploads are refused from now on."
                );
                println!(
                    "Next: regenerate the broker config without it (sunlight-provision revoke) and restart the broker."
                );
                Ok(())
            } else {
                Err(Error::Invalid(format!(
                    "{site}/{device} is not registered at this hub or was already revoked (see GET /api/v1/devices)"
                )))
            }
        }
        Command::Items(ItemsCommand::Import {
            data_dir,
            demo,
            file,
            by,
        }) => {
            let (text, source) = match (demo, file) {
                (true, _) => (store::items::DEMO.to_owned(), "the demo catalog".to_owned()),
                (false, Some(path)) => (
                    std::fs::read_to_string(&path)
                        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?,
                    path.display().to_string(),
                ),
                (false, None) => {
                    return Err(Error::Invalid(
                        "give a catalog file, or --demo for the demo catalog".into(),
                    ));
                }
            };
            let items =
                store::items::parse(&text).map_err(|e| Error::Invalid(format!("{source}: {e}")))?;
            let n = Writer::open(&store_path(&data_dir)?)?.run(|tx| {
                let n = store::items::upsert(tx, &items)?;
                store::audit(tx, &by, "items.import", &source, &format!("{n} items"))?;
                Ok(n)
            })?;
            println!("{n} items imported from {source}");
            Ok(())
        }
        Command::Items(ItemsCommand::List { data_dir }) => {
            let items = Reader::open(&store_path(&data_dir)?)?.run(store::items::list)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&items).unwrap_or_default()
            );
            Ok(())
        }
        Command::Roster(RosterCommand::Import { data_dir, file, by }) => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| Error::io(format!("reading {}", file.display()), e))?;
            let staff = store::attendance::parse_roster(&text)
                .map_err(|e| Error::Invalid(format!("{}: {e}", file.display())))?;
            let mut writer = Writer::open(&store_path(&data_dir)?)?;
            let tx = writer
                .transaction()
                .map_err(|e| Error::Invalid(e.to_string()))?;
            let n = store::attendance::upsert_staff(&tx, &staff).map_err(Error::Invalid)?;
            store::audit(
                &tx,
                &by,
                "roster.import",
                &file.display().to_string(),
                &format!("{n} staff"),
            )
            .and_then(|()| tx.commit())
            .map_err(|e| Error::Invalid(e.to_string()))?;
            println!("{n} staff imported from {}", file.display());
            Ok(())
        }
        Command::Calendar(CalendarCommand::Import { data_dir, file, by }) => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| Error::io(format!("reading {}", file.display()), e))?;
            let today = HubClock::system().today();
            let mut writer = Writer::open(&store_path(&data_dir)?)?;
            let imported = writer
                .run(
                    |tx| match store::settings::import_calendar(tx, &text, &by, today) {
                        Ok(years) => Ok(Ok(years)),
                        // Refused before anything was written.
                        Err(store::settings::ImportError::Refused(why)) => Ok(Err(why)),
                        // Rolled back.
                        Err(store::settings::ImportError::Db(e)) => Err(e),
                    },
                )?
                .map_err(|e| Error::Invalid(format!("{}: {e}", file.display())))?;
            for y in imported {
                println!(
                    "{}: {} → official ({}), {} days changed{}",
                    y.year,
                    y.before,
                    y.source,
                    y.changed.len(),
                    y.changed
                        .iter()
                        .map(|(d, working)| format!(
                            "\n  {d} {}",
                            if *working { "working" } else { "off" }
                        ))
                        .collect::<String>()
                );
            }
            println!("loaded; a running hub puts it in force within a minute");
            Ok(())
        }
        Command::Calendar(CalendarCommand::Status { data_dir }) => {
            let cal = Reader::open(&store_path(&data_dir)?)?
                .run(|c| Ok(store::settings::calendar(c)))?
                .map_err(Error::Invalid)?;
            let year = chrono::Datelike::year(&HubClock::system().today());
            for y in year - 1..=year + 1 {
                let state = if cal.official_data().has_year(y) {
                    format!(
                        "official ({})",
                        cal.official_data().source(y).unwrap_or_default()
                    )
                } else if !cal.provisional_years(y, y).is_empty() {
                    "provisional (statutory holidays only, no make-up days)".to_owned()
                } else {
                    "missing".to_owned()
                };
                println!("{y}: {state}");
            }
            Ok(())
        }
        Command::Roster(RosterCommand::Export { data_dir, site }) => {
            let roster = Reader::open(&store_path(&data_dir)?)?
                .run(|c| store::attendance::roster(c, Some(&site), true))?;
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({ "site": site, "staff": roster }))
                    .unwrap_or_default()
            );
            Ok(())
        }
        Command::User(UserCommand::Add {
            data_dir,
            name,
            role,
            site,
            unit,
            password_file,
            by,
        }) => {
            use sunlight_hub::dashboard::accounts;
            let role = accounts::Role::parse(&role).ok_or_else(|| {
                Error::Invalid(format!(
                    "--role {role:?}: use supervisor, head, technician or admin"
                ))
            })?;
            let password = match &password_file {
                Some(f) => std::fs::read_to_string(f)
                    .map_err(|e| Error::io(format!("reading {}", f.display()), e))?,
                None => {
                    use std::io::IsTerminal;
                    if std::io::stdin().is_terminal() {
                        eprint!("password for {name} (shown as typed): ");
                    }
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .map_err(|e| Error::io("reading the password from standard input", e))?;
                    line
                }
            };
            let password = password.lines().next().unwrap_or("").to_owned();
            let user = accounts::NewUser {
                name,
                role,
                site,
                unit,
            };
            let mut writer = Writer::open(&store_path(&data_dir)?)?;
            accounts::ensure_schema(writer.conn()).map_err(|e| Error::Invalid(e.to_string()))?;
            let tx = writer
                .transaction()
                .map_err(|e| Error::Invalid(e.to_string()))?;
            let id = accounts::create(&tx, &user, &password, &by)
                .map_err(|e| Error::Invalid(e.to_string()))?;
            store::audit(
                &tx,
                &by,
                "user.add",
                &format!("user:{id}:{}", user.name.trim()),
                role.as_str(),
            )
            .and_then(|()| tx.commit())
            .map_err(|e| Error::Invalid(e.to_string()))?;
            println!(
                "{} added as {}{}; sign in at the hub's /login",
                user.name.trim(),
                role.as_str(),
                user.site
                    .as_deref()
                    .map(|s| format!(
                        " of {s}{}",
                        user.unit
                            .as_deref()
                            .map(|u| format!(" ({u})"))
                            .unwrap_or_default()
                    ))
                    .unwrap_or_default()
            );
            Ok(())
        }
        Command::User(UserCommand::List { data_dir }) => {
            use sunlight_hub::dashboard::accounts;
            let writer = Writer::open(&store_path(&data_dir)?)?;
            accounts::ensure_schema(writer.conn()).map_err(|e| Error::Invalid(e.to_string()))?;
            for u in accounts::list(writer.conn()).map_err(|e| Error::Invalid(e.to_string()))? {
                println!(
                    "{}\t{}\t{}\t{}{}",
                    u.name,
                    u.role.as_str(),
                    u.site.as_deref().unwrap_or("-"),
                    u.unit.as_deref().unwrap_or("-"),
                    if u.disabled { "\tdisabled" } else { "" }
                );
            }
            Ok(())
        }
        Command::User(UserCommand::Token {
            data_dir,
            name,
            label,
            by,
        }) => {
            use sunlight_hub::dashboard::accounts;
            let mut writer = Writer::open(&store_path(&data_dir)?)?;
            accounts::ensure_schema(writer.conn()).map_err(|e| Error::Invalid(e.to_string()))?;
            let tx = writer
                .transaction()
                .map_err(|e| Error::Invalid(e.to_string()))?;
            let (id, token) =
                accounts::create_api_token(&tx, &name, &label, &by, accounts::now_ms())
                    .map_err(Error::Invalid)?;
            store::audit(
                &tx,
                &by,
                "api_token.add",
                &format!("api_token:{id}"),
                &format!("{} ({})", name.trim(), label.trim()),
            )
            .and_then(|()| tx.commit())
            .map_err(|e| Error::Invalid(e.to_string()))?;
            eprintln!(
                "API token {id} for {} — shown once; send it as `Authorization: Bearer <token>`:",
                name.trim()
            );
            println!("{token}");
            Ok(())
        }
        Command::User(UserCommand::Tokens { data_dir }) => {
            use sunlight_hub::dashboard::accounts;
            let writer = Writer::open(&store_path(&data_dir)?)?;
            accounts::ensure_schema(writer.conn()).map_err(|e| Error::Invalid(e.to_string()))?;
            for t in accounts::list_api_tokens(writer.conn())
                .map_err(|e| Error::Invalid(e.to_string()))?
            {
                let when = |ms: i64| {
                    chrono::DateTime::from_timestamp_millis(ms)
                        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                        .unwrap_or_default()
                };
                println!(
                    "{}\t{}\t{}\tcreated {}{}",
                    t.id,
                    t.user,
                    t.label,
                    when(t.created_ms),
                    t.revoked_ms
                        .map(|ms| format!("\trevoked {}", when(ms)))
                        .unwrap_or_default()
                );
            }
            Ok(())
        }
        Command::User(UserCommand::RevokeToken { data_dir, id, by }) => {
            use sunlight_hub::dashboard::accounts;
            let mut writer = Writer::open(&store_path(&data_dir)?)?;
            accounts::ensure_schema(writer.conn()).map_err(|e| Error::Invalid(e.to_string()))?;
            let tx = writer
                .transaction()
                .map_err(|e| Error::Invalid(e.to_string()))?;
            if !accounts::revoke_api_token(&tx, id, accounts::now_ms())
                .map_err(|e| Error::Invalid(e.to_string()))?
            {
                return Err(Error::Invalid(format!(
                    "no live API token {id}: see `sunlight-hub user tokens`"
                )));
            }
            store::audit(&tx, &by, "api_token.revoke", &format!("api_token:{id}"), "")
                .and_then(|()| tx.commit())
                .map_err(|e| Error::Invalid(e.to_string()))?;
            println!("API token {id} revoked; requests with it are refused from now on");
            Ok(())
        }
        Command::Enroll(EnrollCommand::Token {
            data_dir,
            site,
            device,
            ttl_hours,
            by,
            hub_url,
            enroll_ca_dir,
            bundle,
            config,
        }) => {
            let update_keys = match &config {
                Some(file) => HubConfig::load(file)?.updates.verifying_keys,
                None => Vec::new(),
            };
            enroll_token(
                &data_dir,
                &site,
                &device,
                ttl_hours,
                &by,
                &hub_url,
                enroll_ca_dir.as_deref(),
                bundle.as_deref(),
                &update_keys,
            )
        }
        Command::Enroll(EnrollCommand::List { data_dir }) => {
            let tokens = Reader::open(&store_path(&data_dir)?)?.run(enroll::tokens)?;
            if tokens.is_empty() {
                println!("no enrollment tokens yet (sunlight-hub enroll token makes one)");
            }
            for t in tokens {
                println!(
                    "{}/{}\t{}\tmade {} by {}\tvalid until {}{}",
                    t.site,
                    t.device,
                    t.state,
                    t.created,
                    t.created_by,
                    t.expires,
                    t.used
                        .map(|u| format!(
                            "\tused {u} from {}",
                            t.used_from.as_deref().unwrap_or("?")
                        ))
                        .unwrap_or_default()
                );
            }
            Ok(())
        }
        Command::Update(command) => update(command),
        Command::Command(CommandCommand::Send {
            data_dir,
            site,
            device,
            kind,
            args,
            ttl_hours,
            by,
        }) => {
            let args = match args {
                Some(text) => Some(serde_json::from_str(&text).map_err(|e| {
                    Error::Invalid(format!(
                        "--args {text:?} is not JSON: {e} (give an object, e.g. '{{\"max_kb\": 256}}')"
                    ))
                })?),
                None => None,
            };
            let send = sunlight_hub::fieldops::SendCommand {
                site,
                device,
                kind,
                args,
                ttl_hours: Some(ttl_hours),
                by: Some(by),
            };
            sunlight_hub::fieldops::check_command(&send).map_err(Error::Invalid)?;
            let mut w = Writer::open(&store_path(&data_dir)?)?;
            let ids = w
                .run(|tx| sunlight_hub::fieldops::create_command(tx, &send))?
                .map_err(Error::Invalid)?;
            for id in ids {
                println!("{id}");
            }
            eprintln!(
                "The running hub publishes it until the box answers; see: sunlight-hub command list --data-dir {}",
                data_dir.display()
            );
            Ok(())
        }
        Command::Command(CommandCommand::List { data_dir, site }) => {
            let r = Reader::open(&store_path(&data_dir)?)?;
            let list = r.run(|c| store::commands::list(c, site.as_deref(), store::now_ms()))?;
            for c in list {
                println!(
                    "{}\t{}/{}\t{}\t{}\t{}",
                    c.cmd_id,
                    c.site,
                    c.device,
                    c.kind,
                    c.state,
                    c.detail.unwrap_or_default()
                );
            }
            Ok(())
        }
        Command::CheckConfig { path } => {
            let config = HubConfig::load(&path)?;
            println!(
                "{}: ok — {} contacts, webhook {}, digest roles {:?} at {}:00",
                path.display(),
                config.contacts.len(),
                config
                    .notify
                    .webhook
                    .as_ref()
                    .map(|w| w.url.as_str())
                    .unwrap_or("none (log only)"),
                config
                    .notify
                    .digest
                    .roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>(),
                config.notify.digest.hour
            );
            Ok(())
        }
        Command::Run(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::io("starting the runtime", e))?;
            rt.block_on(serve(args))
        }
    }
}

async fn serve(args: RunArgs) -> Result<(), Error> {
    let path = store_path(&args.data_dir)?;
    let link = match &args.broker {
        Some(url) => {
            let (rest, tls) = match (url.strip_prefix("mqtt://"), url.strip_prefix("mqtts://")) {
                (Some(rest), _) => (rest, false),
                (_, Some(rest)) => (rest, true),
                _ => {
                    return Err(Error::Invalid(format!(
                        "--broker {url:?} must be mqtt://host:port or mqtts://host:port"
                    )));
                }
            };
            let (host, port) = rest
                .trim_end_matches('/')
                .rsplit_once(':')
                .unwrap_or((rest, if tls { "8883" } else { "1883" }));
            let port = port
                .parse()
                .map_err(|_| Error::Invalid(format!("--broker {url:?} has a bad port")))?;
            let read = |p: &PathBuf| {
                std::fs::read(p).map_err(|e| Error::io(format!("reading {}", p.display()), e))
            };
            let tls = if tls {
                let ca = args
                    .broker_ca
                    .as_ref()
                    .map(read)
                    .transpose()?
                    .ok_or_else(|| {
                        Error::Invalid("mqtts:// needs --broker-ca (the county CA, ca.pem)".into())
                    })?;
                let client_auth = match (&args.broker_cert, &args.broker_key) {
                    (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
                    (None, None) => None,
                    _ => {
                        return Err(Error::Invalid(
                            "--broker-cert and --broker-key go together (the hub's hub.pem and hub.key)".into(),
                        ));
                    }
                };
                Some(ingest::BrokerTls { ca, client_auth })
            } else {
                None
            };
            BrokerLink {
                host: host.to_owned(),
                port,
                client_id: args.client_id.clone(),
                tls,
                login: None,
            }
        }
        None => {
            if !args.embedded_broker.ip().is_loopback() && !args.insecure_broker {
                return Err(Error::Invalid(format!(
                    "--embedded-broker {}: the embedded broker has no TLS, so anyone on the \
                     network path could read every box's batches and rosters (PIN hashes, card \
                     numbers) and replay a box's login. For boxes on the network, run Mosquitto with the county \
                     certificates (sunlight-provision broker-config; docs/provisioning.md) and start \
                     the hub with --broker mqtts://…; on a closed test network only, add \
                     --insecure-broker",
                    args.embedded_broker
                )));
            }
            if args.insecure_broker && !args.embedded_broker.ip().is_loopback() {
                tracing::warn!(listen = %args.embedded_broker, "the embedded broker serves the network without TLS (--insecure-broker)");
            }
            // Create the store's tables before the broker's gate reads the device list.
            drop(Writer::open(&path)?);
            let gate = Arc::new(broker::Gate::new(&path, &args.client_id)?);
            let embedded = broker::start_embedded(args.embedded_broker, gate.clone())?;
            BrokerLink {
                host: embedded.internal.ip().to_string(),
                port: embedded.internal.port(),
                client_id: args.client_id.clone(),
                tls: None,
                login: Some(gate.hub_credentials()),
            }
        }
    };
    let hub_keys = Arc::new(HubKeys::load_or_create(&args.data_dir)?);
    tracing::info!(keys = ?hub_keys.public_keys(), "acks and commands are sealed with the hub's down-link keys");
    let metrics = Arc::new(Metrics::default());
    // The official data under the admins' overrides stored in the hub's database.
    let calendar = {
        let w = Writer::open(&path)?;
        Arc::new(
            sunlight_hub::store::settings::calendar(w.conn())
                .map_err(|e| Error::Invalid(format!("calendar: {e}")))?,
        )
    };
    let clock = match args.today {
        Some(day) => {
            tracing::warn!(%day, "simulated clock: today is fixed by --today");
            HubClock::fixed(day)
        }
        None => HubClock::system(),
    };
    let config = Arc::new(match &args.config {
        Some(file) => HubConfig::load(file)?,
        None => HubConfig::default(),
    });
    let sup = Supervision::new(calendar, clock, config.clone())?;
    {
        // The calendar was built with the years loaded so far; the tick rebuilds it on the next.
        let w = Writer::open(&path)?;
        sup.set_calendar_loaded(
            sunlight_hub::store::settings::get_setting(
                w.conn(),
                sunlight_hub::store::settings::CALENDAR_LOADED,
            )
            .map_err(|e| Error::Invalid(format!("calendar: {e}")))?
            .map(|s| s.value),
        );
    }
    {
        // The sections an admin saved in the dashboard win over hub.toml.
        let w = Writer::open(&path)?;
        // A saved copy that no longer reads (an older release's format) leaves hub.toml in force
        // rather than a county without oversight; the admin sees hub.toml in force on the page.
        match sunlight_hub::store::settings::effective_config(w.conn(), &config)
            .and_then(|c| sup.set_config(c))
        {
            Ok(()) => {}
            Err(e) => tracing::error!(
                error = %e,
                "the settings saved in the dashboard do not read: hub.toml stays in force; save them again at /admin/schedules and /admin/notify"
            ),
        }
    }
    let enrollment = match &args.enroll_ca_dir {
        Some(dir) => {
            let mut signer = enroll::Signer::load(dir, args.public_broker_url.as_deref())
                .map_err(|e| Error::Invalid(e.to_string()))?;
            signer.hub_keys = hub_keys.public_keys();
            tracing::info!(signer = ?signer, "enrollment enabled");
            enroll::Enrollment::enabled(signer)
        }
        None => enroll::Enrollment::disabled(),
    };
    supervise::spawn(
        Writer::open(&path)?,
        sup.clone(),
        std::time::Duration::from_secs(args.tick_secs.max(1)),
    )
    .map_err(|e| Error::io("starting the oversight tick", e))?;
    notify::spawn(
        Writer::open(&path)?,
        sup.clone(),
        std::time::Duration::from_secs(1),
    )?;
    let ingest = Ingest::new(
        Writer::open(&path)?,
        IngestConfig {
            max_batch_bytes: args.max_batch_bytes,
            command_resend_ms: i64::from(args.command_resend_secs.max(1)) * 1000,
            ..Default::default()
        },
        metrics.clone(),
        sup.clone(),
    );
    let blobs: Arc<dyn sunlight_hub::blobs::BlobStore> = match &sup.config().blobs.s3 {
        Some(s3) if sup.config().blobs.store == sunlight_hub::config::BlobStoreKind::S3 => {
            let store = sunlight_hub::s3::S3Store::open(s3, tokio::runtime::Handle::current())
                .await
                .map_err(Error::Invalid)?;
            tracing::info!(store = ?store, "snapshot images go to the S3 store");
            Arc::new(store)
        }
        _ => Arc::new(
            sunlight_hub::blobs::LocalDir::new(args.data_dir.join("blobs"))
                .map_err(|e| Error::io("creating the blob directory", e))?,
        ),
    };
    sunlight_hub::blobs::spawn_cleaner(Writer::open(&path)?, blobs.clone(), sup.config().clone())
        .map_err(|e| Error::io("starting the blob cleaner", e))?;
    sunlight_hub::report::summary::spawn_keeper(
        sunlight_hub::store::Reader::open(&path)?,
        sup.clone(),
        std::time::Duration::from_secs(60),
    )
    .map_err(|e| Error::io("starting the report summaries", e))?;
    sunlight_hub::store::spawn_checkpointer(&path, std::time::Duration::from_secs(1))?;
    sunlight_hub::metrics::spawn_integrity_check(
        Reader::open(&path)?,
        metrics.clone(),
        std::time::Duration::from_secs(24 * 3600),
    )
    .map_err(|e| Error::io("starting the integrity check", e))?;
    sunlight_hub::fleet::spawn(Writer::open(&path)?, sup.clone())
        .map_err(|e| Error::io("starting the fleet watcher", e))?;
    let api_writer = Arc::new(Mutex::new(Writer::open(&path)?));
    let api = web::router(web::ApiState {
        reader: Arc::new(Mutex::new(Reader::open(&path)?)),
        writer: api_writer.clone(),
        metrics,
        blob_puts: Arc::new(tokio::sync::Semaphore::new(
            sup.config().blobs.max_concurrent_puts,
        )),
        sup,
        blobs,
    });
    let api = enroll::attach(api, enrollment);
    let api = sunlight_hub::updates::attach(
        api,
        sunlight_hub::updates::Archives::in_data_dir(&args.data_dir),
    );
    let listener = tokio::net::TcpListener::bind(args.http)
        .await
        .map_err(|e| {
            Error::io(
                format!(
                    "listening for HTTP on {} (pick another with --http)",
                    args.http
                ),
                e,
            )
        })?;
    let https = match (args.https, &args.tls_cert, &args.tls_key) {
        (Some(addr), Some(cert), Some(key)) => {
            let config = sunlight_hub::tls::server_config(cert, key).map_err(Error::Invalid)?;
            let tcp = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                Error::io(
                    format!("listening for HTTPS on {addr} (pick another with --https)"),
                    e,
                )
            })?;
            let tls = sunlight_hub::tls::TlsListener::new(tcp, config)
                .map_err(|e| Error::io("the HTTPS listener", e))?;
            tracing::info!(https = %addr, cert = %cert.display(), "serving HTTPS");
            // tap_io: the listener's peer address reaches handlers as ConnectInfo.
            let tls = axum::serve::ListenerExt::tap_io(tls, |_| {});
            let api = sunlight_hub::tls::https_only(api.clone());
            Some(async move {
                axum::serve(tls, api.into_make_service_with_connect_info::<SocketAddr>()).await
            })
        }
        _ => None,
    };
    let https = async move {
        match https {
            Some(serve) => serve.await,
            None => std::future::pending().await,
        }
    };
    tracing::info!(http = %args.http, store = %path.display(), broker = %format!("{}:{}", link.host, link.port), "hub started");
    systemd_ready(Reader::open(&path)?);
    tokio::select! {
        r = ingest::run(link, ingest, api_writer, hub_keys) => r,
        r = axum::serve(listener, api.into_make_service_with_connect_info::<SocketAddr>()) => r.map_err(|e| Error::io("HTTP server", e)),
        r = https => r.map_err(|e| Error::io("HTTPS server", e)),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// Under systemd (`Type=notify`): says the hub is serving, and while the watchdog is on, pings it
/// as long as the store answers, so a hub that hangs on its database is restarted. Outside systemd
/// this does nothing.
fn systemd_ready(reader: Reader) {
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    let mut usec = 0u64;
    if !sd_notify::watchdog_enabled(false, &mut usec) {
        return;
    }
    let every = std::time::Duration::from_micros(usec / 2);
    std::thread::spawn(move || {
        loop {
            if reader
                .run(|c| c.query_row("SELECT 1", [], |_| Ok(())))
                .is_ok()
            {
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
            } else {
                tracing::error!("the store does not answer; not pinging the watchdog");
            }
            std::thread::sleep(every);
        }
    });
}

/// `sunlight-hub enroll token`: makes the token, prints it once with the technician's command,
/// and optionally writes the offline bundle.
#[allow(clippy::too_many_arguments)]
fn enroll_token(
    data_dir: &std::path::Path,
    site: &SiteId,
    device: &DeviceId,
    ttl_hours: u32,
    by: &str,
    hub_url: &str,
    enroll_ca_dir: Option<&std::path::Path>,
    bundle: Option<&std::path::Path>,
    update_keys: &[String],
) -> Result<(), Error> {
    let hub_url = hub_url.trim().trim_end_matches('/');
    if !(hub_url.starts_with("http://") || hub_url.starts_with("https://"))
        || hub_url.chars().any(|c| c.is_whitespace() || c == '"')
    {
        return Err(Error::Invalid(format!(
            "--hub-url {hub_url:?}: give this hub's HTTP address as boxes reach it, e.g. https://hub.suixian.gov.cn"
        )));
    }
    let ca = match enroll_ca_dir {
        Some(dir) => {
            let path = dir.join(enroll::files::COUNTY_CA);
            let pem = std::fs::read_to_string(&path)
                .map_err(|e| Error::io(format!("reading {} (the county CA)", path.display()), e))?;
            let sha = enroll::pem_sha256(&pem).ok_or_else(|| {
                Error::Invalid(format!("{} is not a PEM certificate", path.display()))
            })?;
            Some((pem, sha))
        }
        None => None,
    };
    // A mistyped --data-dir would make a store of its own that the running hub never reads.
    if !data_dir.join("hub.db").is_file() {
        return Err(Error::Invalid(format!(
            "{} has no hub.db: pass the --data-dir the hub runs with (e.g. /var/lib/sunlight-hub)",
            data_dir.display()
        )));
    }
    let mut writer = Writer::open(&store_path(data_dir)?)?;
    let tx = writer
        .transaction()
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let made = enroll::issue_token(&tx, site, device, ttl_hours, by)
        .map_err(|e| Error::Invalid(e.to_string()))?;
    tx.commit().map_err(|e| Error::Invalid(e.to_string()))?;
    let expires = store::fmt_ms(made.expires_ms);
    let pin = ca
        .as_ref()
        .map(|(_, sha)| format!(" --ca-sha256 {sha}"))
        .unwrap_or_default();
    println!(
        "One-time enrollment token for {site}/{device}, valid until {expires} (shown only now):\n\n    {}\n",
        made.token
    );
    if made.replaced > 0 {
        println!("The earlier unused token for this box no longer works.\n");
    }
    println!(
        "On the box, as root, with the box on the network:\n\n    sunlight-agent enroll --hub {hub_url} --token {} --site {site} --device {device}{pin}\n",
        made.token
    );
    if let (Some(dir), Some((pem, sha))) = (bundle, &ca) {
        let files = enroll::bundle_files(&enroll::BundleSpec {
            site,
            device,
            token: &made.token,
            hub_url,
            expires: &expires,
            ca_pem: pem,
            ca_sha256: sha,
            update_keys,
            hub_keys: &HubKeys::load_or_create(data_dir)?.public_keys(),
        });
        for f in &files {
            enroll::write_bundle_file(dir, f)
                .map_err(|e| Error::io(format!("writing {}", dir.join(&f.name).display()), e))?;
        }
        println!(
            "Bundle for a USB stick written to {} (the token is in it: keep the stick safe, wipe it after).\n\
             On the box: sunlight-agent enroll --bundle {}\n",
            dir.display(),
            dir.display()
        );
    }
    println!(
        "Next:\n\
         1. Let the broker know the box: sunlight-provision broker-config mosquitto ... --hub-data {}\n\
         \x20  lists boxes with a waiting token too; copy it to the broker and restart Mosquitto.\n\
         2. Give the technician the token (or the stick). It works once, for this box only, until {expires}.\n\
         3. See whether the box enrolled: sunlight-hub enroll list --data-dir {}",
        data_dir.display(),
        data_dir.display()
    );
    if ca.is_none() {
        println!(
            "   (With --enroll-ca-dir the command above would also pin the county CA's fingerprint.)"
        );
    }
    Ok(())
}

fn existing_store(data_dir: &std::path::Path) -> Result<PathBuf, Error> {
    let path = data_dir.join("hub.db");
    if !path.is_file() {
        return Err(Error::Invalid(format!(
            "{} has no hub.db: pass the --data-dir the hub runs with (e.g. /var/lib/sunlight-hub)",
            data_dir.display()
        )));
    }
    Ok(path)
}

fn update(command: UpdateCommand) -> Result<(), Error> {
    use sunlight_hub::store::updates as db;
    match command {
        UpdateCommand::Publish {
            data_dir,
            config,
            version,
            archive,
            by,
        } => {
            let config = HubConfig::load(&config)?;
            let c = sunlight_hub::updates::publish(
                &data_dir,
                &config.updates.verifying_keys,
                &version,
                &archive,
                &by,
            )?;
            println!(
                "sunlight-agent {} published: {} bytes, sha256 {}, signed by update key #{}.",
                c.version,
                c.size,
                c.sha256,
                c.key_index + 1
            );
            println!(
                "Boxes download it from {}.\nNext: sunlight-hub update rollout --data-dir {} --version {} --percent 10",
                db::archive_path(&c.version),
                data_dir.display(),
                c.version
            );
            Ok(())
        }
        UpdateCommand::Rollout {
            data_dir,
            version,
            percent,
            sites,
            by,
            downgrade,
        } => {
            let wave = match percent {
                Some(p) if (1..=100).contains(&p) => db::Wave::Percent(p),
                Some(p) => {
                    return Err(Error::Invalid(format!("--percent {p}: give 1 to 100")));
                }
                None if !sites.is_empty() => db::Wave::Sites(sites),
                None => {
                    return Err(Error::Invalid("give --percent P or --sites a,b".into()));
                }
            };
            let mut writer = Writer::open(&existing_store(&data_dir)?)?;
            let r = writer
                .run(|tx| db::rollout(tx, &version, &wave, &by, downgrade))?
                .map_err(Error::Invalid)?;
            println!(
                "update {version}: sent to {} box(es){}",
                r.sent.len(),
                if r.sent.is_empty() {
                    String::new()
                } else {
                    format!(": {}", r.sent.join(", "))
                }
            );
            for s in &r.skipped {
                println!("  skipped {s}");
            }
            println!(
                "A running hub publishes the commands within seconds; follow them with\n  sunlight-hub update status --data-dir {} --version {version}",
                data_dir.display()
            );
            Ok(())
        }
        UpdateCommand::Status { data_dir, version } => {
            let reader = Reader::open(&existing_store(&data_dir)?)?;
            let (releases, boxes) = reader.run(|c| {
                Ok((
                    db::releases(c)?,
                    db::targets(c, version.as_deref(), store::now_ms())?,
                ))
            })?;
            for r in &releases {
                println!(
                    "release {:<12} {} bytes, sha256 {}, published {} by {}",
                    r.version, r.size, r.sha256, r.published_at, r.by
                );
            }
            println!(
                "{:<10} {:<32} {:<12} {:<12} {:<24} detail",
                "version", "box", "state", "running", "updated"
            );
            for b in &boxes {
                println!(
                    "{:<10} {:<32} {:<12} {:<12} {:<24} {}",
                    b.version,
                    format!("{}/{}", b.site, b.device),
                    b.state,
                    b.running.as_deref().unwrap_or("?"),
                    b.updated_at,
                    b.detail.as_deref().unwrap_or("")
                );
            }
            Ok(())
        }
    }
}
