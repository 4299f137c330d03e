//! `sunlight-agent`: the command line of the township box.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use sunlight_agent::{AgentConfig, Outbox};

#[derive(Parser)]
#[command(
    name = "sunlight-agent",
    version,
    about = "Sunlight township box: records punches, cases and snapshots and syncs them to the county hub"
)]
struct Cli {
    /// The agent's config file.
    #[arg(long, short, global = true, default_value = "/etc/sunlight/agent.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Join the county with a one-time token: make this box's keys here, get its certificate
    /// from the hub, and write its config (--config) for `run`.
    Enroll(EnrollArgs),
    /// Create the data directory and this box's signing key; print the public key for the hub.
    Init,
    /// Run the agent (intake, outbox, sync, health, cameras).
    Run,
    /// Show the link, backlog, last ack, snapshot spool, uploads and cameras of the running agent
    /// (or of its outbox if it is stopped).
    Status,
    /// Updates from the hub (docs/updates.md).
    Update {
        #[command(subcommand)]
        action: UpdateAction,
    },
    /// Check this box at install time: cameras (a test picture each), the hub (round trip, clock
    /// offset), the broker (TLS, CONNACK, SUBACK, PUBACK), disk space, the outbox. Prints a
    /// pass/fail report; exit code 0 only when every check passed. Safe next to a running agent.
    Check(CheckArgs),
    /// The roster the kiosk checks punches against (normally sent by the hub).
    Roster {
        #[command(subcommand)]
        action: RosterAction,
    },
    /// The working-day calendar of the snapshot schedule (sent by the hub: its official years and
    /// overrides, over the data shipped with the agent and the statutory holidays).
    Calendar {
        #[command(subcommand)]
        action: CalendarAction,
    },
    /// Keys of the systems that post to this box's intake API, each for some kinds of events
    /// (docs/intake-api.md). A running agent uses a change from the next request.
    IntakeKey {
        #[command(subcommand)]
        action: IntakeKeyAction,
    },
}

#[derive(Subcommand)]
enum IntakeKeyAction {
    /// Issue a key: printed once on stdout, kept on the box only as its SHA-256.
    Add {
        /// Who uses it: approval-system, pads-hall, import-script.
        name: String,
        /// The kinds it may post: case, rating, complaint, duty, patrol, correction.
        #[arg(long, value_delimiter = ',', required = true)]
        kinds: Vec<String>,
        /// Accepted only from this box itself (127.0.0.1 / ::1): a tool running on the box. Only
        /// such a key may post punch or snapshot.
        #[arg(long)]
        local: bool,
    },
    /// The keys issued: name, kinds, when (never the keys).
    List,
    /// Revoke a key: refused from the next request.
    Revoke { name: String },
}

#[derive(clap::Args)]
struct EnrollArgs {
    /// The county hub's address, as the county operator printed it (https://hub.suixian.gov.cn).
    #[arg(long, required_unless_present = "bundle")]
    hub: Option<String>,
    /// The one-time token (letters and digits in groups of 4).
    #[arg(long, required_unless_present = "bundle")]
    token: Option<String>,
    #[arg(long, required_unless_present = "bundle")]
    site: Option<sunlight_protocol::SiteId>,
    #[arg(long, required_unless_present = "bundle")]
    device: Option<sunlight_protocol::DeviceId>,
    /// The county CA's SHA-256 fingerprint from the token's printout: the hub's answer must carry
    /// that CA.
    #[arg(long)]
    ca_sha256: Option<String>,
    /// Read the hub, token, site, device and CA from a directory made by `sunlight-hub enroll
    /// token --bundle` (a USB stick).
    #[arg(long, conflicts_with_all = ["hub", "token", "site", "device", "ca_sha256"])]
    bundle: Option<PathBuf>,
    /// Where the keys, certificates and outbox live.
    #[arg(long, default_value = "/var/lib/sunlight")]
    data_dir: PathBuf,
    /// Trust this CA too for an https:// hub (e.g. the county CA).
    #[arg(long)]
    hub_ca: Option<PathBuf>,
    /// Enroll even though this box has keys or a config (moved aside, not deleted): a new identity.
    #[arg(long)]
    force: bool,
}

#[derive(clap::Args)]
struct CheckArgs {
    /// Print the report as JSON (for machines).
    #[arg(long)]
    json: bool,
    /// Free space (MiB) the data directory's disk must have.
    #[arg(long, default_value_t = 500)]
    min_free_mb: u64,
    /// Largest clock offset against the hub (ms) that passes.
    #[arg(long, default_value_t = 2000)]
    max_offset_ms: i64,
    /// Time limit of each network step, in seconds.
    #[arg(long, default_value_t = 10)]
    timeout_secs: u64,
    /// Do not look for ONVIF cameras on the LAN (WS-Discovery multicast).
    #[arg(long)]
    no_discovery: bool,
}

#[derive(Subcommand)]
enum UpdateAction {
    /// Run by the packaged binary before every start of the service (ExecStartPre): installs
    /// the service's updatable copy if it is missing, counts the starts of a newly installed
    /// binary and puts the previous one back when it keeps failing or misses its deadline.
    Guard,
    /// Show the installed version, a pending update and the kept previous binary.
    Show,
}

#[derive(Subcommand)]
enum CalendarAction {
    /// Print the calendar the hub sent, each day from --from with the layer it comes from, and
    /// each scheduled camera's next snapshot after --at, as the schedule reckons them.
    Show {
        /// First day to print (YYYY-MM-DD); default today.
        #[arg(long)]
        from: Option<String>,
        /// How many days to print.
        #[arg(long, default_value_t = 14)]
        days: u32,
        /// Reckon the cameras' next scheduled snapshot after this local time ("YYYY-MM-DD HH:MM");
        /// default now.
        #[arg(long)]
        at: Option<String>,
    },
}

#[derive(Subcommand)]
enum RosterAction {
    /// Replace the roster with a file exported at the hub (sunlight-hub roster export --site S),
    /// e.g. from a USB stick at a site without a link. A running agent uses it at the next punch.
    Load {
        /// The exported roster JSON.
        file: PathBuf,
    },
    /// Print the roster cached on this box (PIN hashes are never printed).
    Show,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    // Enrollment writes the config: it runs without one. The check reports a bad config itself.
    let result = match cli.command {
        Command::Enroll(args) => enroll(args, cli.config),
        Command::Check(args) => return check(args, &cli.config),
        command => run(command, &cli.config).map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr (journald under systemd); `run` also keeps a size-capped log file in its data
/// directory, for the hub's `upload_logs` command.
fn init_logging(cli: &Cli) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // The check prints its own report: only errors besides it.
    let level = if matches!(cli.command, Command::Check(_)) {
        "error"
    } else {
        "info"
    };
    let filter =
        || tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| level.into());
    let stderr = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let file = match &cli.command {
        Command::Run => AgentConfig::load(&cli.config).ok().and_then(|c| {
            let dir = sunlight_agent::logfile::dir(&c.data_dir);
            match sunlight_agent::logfile::LogFile::open(
                &dir,
                sunlight_agent::logfile::MAX_FILE_BYTES,
            ) {
                Ok(f) => Some(f),
                Err(e) => {
                    eprintln!("warning: no log file in {}: {e}", dir.display());
                    None
                }
            }
        }),
        _ => None,
    };
    let file = file.map(|f| {
        tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(f))
    });
    tracing_subscriber::registry()
        .with(filter())
        .with(stderr)
        .with(file)
        .init();
}

/// `sunlight-agent check`: the report on stdout, progress on stderr when it is a terminal.
fn check(args: CheckArgs, path: &std::path::Path) -> ExitCode {
    use std::io::IsTerminal;
    use sunlight_agent::check;
    let report = match AgentConfig::load(path) {
        Ok(config) => {
            let options = check::Options {
                min_free_mb: args.min_free_mb,
                max_offset_ms: args.max_offset_ms,
                timeout: std::time::Duration::from_secs(args.timeout_secs.max(1)),
                discover: !args.no_discovery,
            };
            let tty = std::io::stderr().is_terminal();
            let progress = move |what: &str| {
                if tty {
                    eprint!("\r\x1b[2Kchecking {what} …");
                }
            };
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: starting the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let report = rt.block_on(check::run(&config, path, &options, &progress));
            if tty {
                eprint!("\r\x1b[2K");
            }
            report
        }
        Err(e) => check::config_failed(path, &e.to_string()),
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print!("{}", check::render(&report));
    }
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn enroll(a: EnrollArgs, config: PathBuf) -> Result<(), String> {
    use sunlight_agent::enroll;
    let args = match (&a.bundle, a.hub, a.token, a.site, a.device) {
        (Some(dir), ..) => {
            let mut args = enroll::EnrollArgs::from_bundle(dir, a.data_dir, config, a.force)
                .map_err(|e| e.to_string())?;
            if a.hub_ca.is_some() {
                args.hub_ca = a.hub_ca;
            }
            args
        }
        (None, Some(hub), Some(token), Some(site), Some(device)) => enroll::EnrollArgs {
            hub,
            token,
            site,
            device,
            data_dir: a.data_dir,
            config,
            ca_sha256: a.ca_sha256,
            hub_ca: a.hub_ca,
            force: a.force,
            update_keys: Vec::new(),
            hub_keys: Vec::new(),
        },
        _ => {
            return Err(
                "give --hub, --token, --site and --device as the county operator printed them, or --bundle DIR"
                    .into(),
            );
        }
    };
    let r = enroll::enroll(&args).map_err(|e| e.to_string())?;
    if let Some(old) = &r.moved_aside {
        println!(
            "The earlier keys, outbox and certificates were moved to {}{}.",
            old.display(),
            if r.unsent_before > 0 {
                format!(
                    " ({} events there were never acknowledged by the hub)",
                    r.unsent_before
                )
            } else {
                String::new()
            }
        );
    }
    println!(
        "{}/{} enrolled{}: certificate serial {}, valid until {}.",
        r.site,
        r.device,
        if r.repeated {
            " (the hub had enrolled this box already and sent its answer again)"
        } else if r.resumed {
            " (with the keys of the earlier attempt)"
        } else {
            ""
        },
        r.serial,
        r.not_after
    );
    println!(
        "  {:<34} batch-signing key (0600), made here; the hub has its public half {}",
        r.signing_key.display(),
        r.public_key
    );
    println!(
        "  {:<34} TLS key (0600), made here; never sent",
        r.tls_key.display()
    );
    println!(
        "  {:<34} this box's certificate, then the enrollment CA that signed it",
        r.certificate.display()
    );
    println!(
        "  {:<34} the county CA, SHA-256 {} ({})",
        r.ca.display(),
        r.ca_sha256,
        if r.ca_pinned {
            "matches --ca-sha256"
        } else {
            "not pinned: compare it with the county's printout"
        }
    );
    println!(
        "  {:<34} this box's configuration: broker {}; {}",
        r.config.display(),
        r.broker_url,
        match r.update_keys {
            0 => "no update verifying key (the hub has none: updates are refused until\n\
                  \x20  [update] verifying_keys is added)"
                .to_string(),
            n => format!("{n} update verifying key(s): signed agent updates are accepted"),
        }
    );
    println!(
        "\nNext:\n\
         1. Add this office's settings to {c} if it needs any (intake listen address, ZKTeco\n\
         \x20  terminals, cameras: see agent.example.toml).\n\
         2. Start the agent: systemctl enable --now sunlight-agent   (or: sunlight-agent -c {c} run)\n\
         3. Check it: sunlight-agent -c {c} status  shows 'broker ... connected' once the county's\n\
         \x20  broker lists this box (the county operator regenerates its config after making the token).",
        c = r.config.display()
    );
    Ok(())
}

fn run(command: Command, path: &std::path::Path) -> Result<(), sunlight_agent::Error> {
    let config = AgentConfig::load(path)?;
    match command {
        // Handled in main.
        Command::Enroll(_) | Command::Check(_) => Ok(()),
        Command::Init => {
            let key = sunlight_agent::run::init(&config)?;
            println!("{}", key.public());
            eprintln!(
                "Signing key ready at {}.\nRegister this box at the hub:\n  sunlight-hub device add --site {} --device {} --pubkey {}",
                config.key_path().display(),
                config.site,
                config.device,
                key.public()
            );
            Ok(())
        }
        Command::Run => {
            tune_malloc();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| sunlight_agent::Error::io("starting the runtime", e))?;
            rt.block_on(sunlight_agent::run::run(config, path.to_path_buf()))
        }
        Command::Status => status(&config),
        Command::Update {
            action: UpdateAction::Guard,
        } => {
            let did = sunlight_agent::update::guard(&config).map_err(|e| {
                sunlight_agent::Error::Config {
                    path: "update guard".into(),
                    detail: e,
                }
            })?;
            println!("update guard: {did}");
            Ok(())
        }
        Command::Update {
            action: UpdateAction::Show,
        } => {
            use sunlight_agent::update;
            let paths = update::Paths::of(&config);
            println!(
                "binary     {} ({})",
                paths.binary.display(),
                if paths.binary.exists() {
                    "present"
                } else {
                    "missing: run 'sunlight-agent update guard'"
                }
            );
            println!("this       sunlight-agent {}", update::version());
            println!(
                "previous   {}",
                if paths.previous().exists() {
                    paths.previous().display().to_string()
                } else {
                    "none kept".into()
                }
            );
            match update::read_marker(&paths) {
                Ok(Some(m)) => println!(
                    "pending    {} (from {}), {:?}, {} start(s){}",
                    m.version,
                    m.from_version,
                    m.state,
                    m.starts,
                    m.reason.map(|r| format!(": {r}")).unwrap_or_default()
                ),
                Ok(None) => println!("pending    nothing"),
                Err(e) => println!("pending    unreadable marker: {e}"),
            }
            Ok(())
        }
        Command::Roster {
            action: RosterAction::Load { file },
        } => {
            let (roster, version) = sunlight_agent::roster::load_file(
                &config.outbox_path(),
                config.site.as_str(),
                &file,
            )?;
            let with_pin = roster.staff.iter().filter(|s| s.pin_hash.is_some()).count();
            let with_card = roster.staff.iter().filter(|s| s.card_no.is_some()).count();
            println!(
                "roster of {} loaded from {}: {} staff, {with_pin} with a PIN, {with_card} with a card (version {version}); the kiosk uses it from the next punch",
                roster.site,
                file.display(),
                roster.staff.len()
            );
            Ok(())
        }
        Command::Roster {
            action: RosterAction::Show,
        } => roster_show(&config),
        Command::IntakeKey { action } => intake_key(&config, action),
        Command::Calendar {
            action: CalendarAction::Show { from, days, at },
        } => calendar_show(&config, from.as_deref(), days, at.as_deref()),
    }
}

fn calendar_show(
    config: &AgentConfig,
    from: Option<&str>,
    days: u32,
    at: Option<&str>,
) -> Result<(), sunlight_agent::Error> {
    use sunlight_agent::calendar;
    let bad = |detail: String| sunlight_agent::Error::Config {
        path: "calendar show".into(),
        detail,
    };
    // The outbox must be there (the agent ran once); an agent of before set_calendar has no table yet.
    Outbox::inspect(&config.outbox_path())?;
    let received = calendar::load(&config.outbox_path())?;
    match &received {
        Some(r) => println!(
            "calendar   {} issued {} ({}, stored {}): official years {}, {} overrides",
            r.calendar.version,
            r.calendar.issued,
            r.source,
            fmt_ms(Some(r.loaded_ms)),
            r.calendar
                .official
                .years()
                .map(|y| y.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            r.calendar.overrides.len()
        ),
        None => println!(
            "calendar   none from the hub yet: the data shipped with this agent, then the statutory holidays (provisional)"
        ),
    }
    if !config.snapshots.official_holidays {
        println!(
            "           not used: snapshots.official_holidays = false, the schedule follows office_days alone"
        );
    }
    let live = calendar::LiveCalendar::new(
        sunlight_protocol::holidays::Official::cn().map_err(bad)?,
        received,
    );
    let office_days =
        sunlight_agent::config::parse_days(&config.snapshots.office_days).map_err(bad)?;
    let tz = config.tz().map_err(bad)?;
    let now = chrono::Utc::now().with_timezone(&tz);
    let first = match from {
        Some(d) => sunlight_protocol::holidays::date(d).map_err(bad)?,
        None => now.date_naive(),
    };
    for d in first.iter_days().take(days.min(400) as usize) {
        println!("{}", calendar::describe(&live, d, &office_days));
    }
    let at = match at {
        Some(t) => calendar::local_time(&tz, t).map_err(bad)?,
        None => now,
    };
    let hours = sunlight_agent::config::parse_hours(&config.snapshots.office_hours).map_err(bad)?;
    for c in &config.cameras {
        let Some(every) = c.every() else { continue };
        let plan = sunlight_agent::capture::camera::schedule::Plan {
            every,
            hours: c
                .office_hours
                .as_ref()
                .and_then(|h| sunlight_agent::config::parse_hours(h).ok())
                .unwrap_or_else(|| hours.clone()),
            days: office_days.clone(),
            calendar: config.snapshots.official_holidays.then(|| live.clone()),
        };
        println!(
            "next       camera {} after {}: {}",
            c.id,
            at.format("%Y-%m-%d %H:%M"),
            sunlight_agent::capture::camera::schedule::next_slot(&at, &plan)
                .map(|t| t.format("%a %Y-%m-%d %H:%M").to_string())
                .unwrap_or_else(|| "none within 40 days".into())
        );
    }
    Ok(())
}

fn intake_key(config: &AgentConfig, action: IntakeKeyAction) -> Result<(), sunlight_agent::Error> {
    use sunlight_agent::capture::intake_keys;
    match action {
        IntakeKeyAction::Add { name, kinds, local } => {
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let key = intake_keys::add(&config.data_dir, &name, &kinds, local, &now)?;
            println!("{key}");
            eprintln!(
                "Key {name} issued for {}{}. It is shown only now: give it to the system that posts, which sends\n  Authorization: Bearer {key}\nwith every request to http://{}/api/v1/. Revoke it with: sunlight-agent intake-key revoke {name}",
                kinds.join(", "),
                if local { " (from this box only)" } else { "" },
                config.intake.listen
            );
            Ok(())
        }
        IntakeKeyAction::List => {
            let keys = intake_keys::list(&config.data_dir)?;
            if keys.is_empty() {
                println!(
                    "no intake keys: nothing can post to this box. Issue one with: sunlight-agent intake-key add NAME --kinds case,rating,complaint,duty"
                );
            }
            for k in keys {
                println!(
                    "{:<24} {:<40} issued {}{}",
                    k.name,
                    k.kinds.join(","),
                    k.created,
                    if k.local { "  (this box only)" } else { "" }
                );
            }
            Ok(())
        }
        IntakeKeyAction::Revoke { name } => {
            if intake_keys::revoke(&config.data_dir, &name)? {
                println!("key {name} revoked: refused from the next request");
                Ok(())
            } else {
                Err(sunlight_agent::Error::Config {
                    path: intake_keys::path(&config.data_dir),
                    detail: format!(
                        "there is no key named {name}; 'sunlight-agent intake-key list' shows them"
                    ),
                })
            }
        }
    }
}

fn roster_show(config: &AgentConfig) -> Result<(), sunlight_agent::Error> {
    let Some(r) = sunlight_agent::roster::show(&config.outbox_path())? else {
        println!(
            "no roster on this box yet: the hub sends it (roster push), or load an export with 'sunlight-agent roster load FILE'.\nUntil then kiosk punches are kept and flagged unknown_staff."
        );
        return Ok(());
    };
    println!(
        "roster     {} — {} staff (version {}, stored {}, from {})",
        r.roster().site,
        r.roster().staff.len(),
        r.version,
        fmt_ms(Some(r.loaded_ms)),
        r.source
    );
    println!(
        "{:<10} {:<12} {:<12} {:<8} {:<4} {:<5} card",
        "staff_id", "name", "unit", "window", "role", "PIN"
    );
    for s in &r.roster().staff {
        println!(
            "{:<10} {:<12} {:<12} {:<8} {:<4} {:<5} {}",
            s.staff_id,
            s.name,
            s.unit,
            s.window,
            s.role,
            if s.pin_hash.is_some() { "set" } else { "-" },
            s.card_no.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}

fn status(config: &AgentConfig) -> Result<(), sunlight_agent::Error> {
    let url = format!("http://{}/api/v1/status", config.intake.listen);
    if let Some(live) = fetch_status(&url) {
        let link = &live["link"];
        let backlog = &live["backlog"];
        println!(
            "agent      {}/{} v{} (running)",
            live["site"].as_str().unwrap_or("?"),
            live["device"].as_str().unwrap_or("?"),
            live["version"].as_str().unwrap_or("?")
        );
        println!(
            "broker     {} — {}",
            link["broker"].as_str().unwrap_or("?"),
            if link["connected"].as_bool() == Some(true) {
                "connected"
            } else {
                "NOT connected"
            }
        );
        if let Some(e) = link["last_error"].as_str() {
            println!("last error {e}");
        }
        print_backlog(backlog);
        println!("last ack   {}", fmt_ms(link["last_ack_ms"].as_i64()));
        if let Some(n) = link["refused_down"].as_u64().filter(|n| *n > 0) {
            // Acks and commands not sealed by the hub for this box: someone on the broker forged
            // them, or this box's [hub] verifying_keys is out of date.
            println!(
                "refused    {n} acks/commands not sealed by the hub; last: {}",
                link["last_refused"].as_str().unwrap_or("?")
            );
        }
        println!(
            "clock      {}",
            live["clock_offset_ms"]
                .as_i64()
                .map(|o| format!("hub − box = {o} ms"))
                .unwrap_or_else(|| "offset not yet measured".into())
        );
        let snapshots = &live["snapshots"];
        print_spool(&snapshots["spool"]);
        let upload = &snapshots["upload"];
        println!(
            "upload     {} — {}",
            upload["api"].as_str().unwrap_or("no hub.api"),
            upload["doing"].as_str().unwrap_or("?")
        );
        if let Some(e) = upload["last_error"].as_str() {
            println!(
                "           last error {e} ({})",
                fmt_ms(upload["last_error_ms"].as_i64())
            );
        }
        for camera in snapshots["cameras"].as_array().into_iter().flatten() {
            print_camera(camera);
        }
        for alarm in live["alarms"].as_array().into_iter().flatten() {
            println!(
                "ALARM      {} {}: {}",
                alarm["at"].as_str().unwrap_or("?"),
                alarm["what"].as_str().unwrap_or("?"),
                alarm["detail"].as_str().unwrap_or("")
            );
        }
        return Ok(());
    }
    let backlog = Outbox::inspect(&config.outbox_path())?;
    println!(
        "agent      {}/{} (NOT running: nothing answered at {url})",
        config.site, config.device
    );
    print_backlog(&serde_json::to_value(&backlog).unwrap_or_default());
    let quota = config.snapshots.quota_mb.saturating_mul(1024 * 1024);
    let spool = sunlight_agent::spool::Spool::inspect(&config.outbox_path(), quota)?;
    print_spool(&serde_json::to_value(&spool).unwrap_or_default());
    println!(
        "upload     {}",
        config
            .hub
            .api
            .as_deref()
            .unwrap_or("hub.api is not set: snapshots stay in the spool")
    );
    Ok(())
}

fn print_spool(s: &serde_json::Value) {
    let mib = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0) / (1024.0 * 1024.0);
    println!(
        "spool      {} images, {:.1} MiB of {:.0} MiB; {} waiting for upload ({:.1} MiB){}",
        s["images"],
        mib(&s["bytes"]),
        mib(&s["quota_bytes"]),
        s["waiting"],
        mib(&s["waiting_bytes"]),
        s["oldest_waiting"]
            .as_str()
            .map(|t| format!(", oldest taken {t}"))
            .unwrap_or_default()
    );
    println!(
        "           last upload {}; {} uploaded; evicted for the quota {} ({} never uploaded){}",
        fmt_ms(s["last_upload_ms"].as_i64()),
        s["uploaded_total"],
        s["evicted_total"],
        s["evicted_waiting_total"],
        match s["refused"].as_u64() {
            Some(n) if n > 0 => format!("; {n} refused by the hub, retried hourly"),
            _ => String::new(),
        }
    );
}

fn print_camera(c: &serde_json::Value) {
    let state = if let Some(stopped) = c["stopped"].as_str() {
        format!("STOPPED: {stopped}")
    } else if c["consecutive_failures"].as_u64().unwrap_or(0) > 0 {
        format!(
            "FAILING ({} in a row): {}",
            c["consecutive_failures"],
            c["last_error"].as_str().unwrap_or("?")
        )
    } else {
        "ok".into()
    };
    println!(
        "camera     {} ({} {}) — {}; {} pictures, {} errors, last picture {}",
        c["id"].as_str().unwrap_or("?"),
        c["kind"].as_str().unwrap_or("?"),
        c["location"].as_str().unwrap_or("?"),
        state,
        c["captures"],
        c["failures"],
        c["last_ok"].as_str().unwrap_or("never")
    );
}

fn print_backlog(b: &serde_json::Value) {
    println!(
        "backlog    {} events, {} bytes (seq {} acked of {})",
        b["events"], b["bytes"], b["acked_seq"], b["head_seq"]
    );
    let oldest = b["oldest_ms"].as_i64();
    let age = oldest.map(|ms| (chrono::Utc::now().timestamp_millis() - ms) / 1000);
    println!(
        "oldest     {}",
        age.map(|s| format!("unsent for {s} s"))
            .unwrap_or_else(|| "nothing unsent".into())
    );
}

fn fmt_ms(ms: Option<i64>) -> String {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339())
        .unwrap_or_else(|| "never".into())
}

/// A tiny blocking HTTP GET on the LAN intake port (no client library needed for one request).
fn fetch_status(url: &str) -> Option<serde_json::Value> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (addr, path) = rest.split_once('/')?;
    let mut stream = std::net::TcpStream::connect_timeout(
        &addr.parse().ok()?,
        std::time::Duration::from_secs(2),
    )
    .ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(
        stream,
        "GET /{path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let body = text.split_once("\r\n\r\n")?.1;
    serde_json::from_str(body).ok()
}

/// glibc's malloc, tuned for a box with little memory (docs/BENCHMARKS.md, "Cameras"). By default
/// every thread that allocates gets an arena of its own (up to 8 per core) and keeps what it frees
/// there; and buffers of 100 KiB — a snapshot read for upload — come from those arenas and stay
/// in them. While uploading a thousand snapshots that held about 1 MiB more than idle. Two arenas
/// (the runtime has two workers) and buffers from 64 KiB up taken straight from the kernel
/// (returned at once when freed) bring that down to about 0.4 MiB, at the cost of an mmap per
/// image. Other C libraries (musl) have no such knobs and need none.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_malloc() {
    // SAFETY: mallopt only sets allocator parameters; it is called before any other thread
    // exists (the runtime is built after it), as glibc asks.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_malloc() {}
