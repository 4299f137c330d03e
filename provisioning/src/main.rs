//! `sunlight-provision`: the county CA, the hub's enrollment CA, box certificates, the broker's
//! config and revocation.
//! A thin shell over the library: it parses arguments, calls one function, and prints what was
//! made and what the technician does next. Errors go to stderr with exit status 1.

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use sunlight_protocol::{DeviceId, SiteId};
use sunlight_provisioning::broker::{self, BrokerPlan, DeviceSource, MosquittoSettings};
use sunlight_provisioning::ca::{self, CaDir, KeySource};
use sunlight_provisioning::{Error, enroll_ca, files, hub_api};

const NOT_YET: &str = "\
Enrolling a box over the network: 'hub-signer' here once; then per site 'site add' and per box \
'device add' against the running hub (an API token of a supervisor or admin account; the hub \
keeps the tokens and registers the boxes), and 'sunlight-agent enroll' on the box. Without a link, \
a box gets its certificate here ('device cert --csr'). Agent updates: 'update-key' once, \
'sign-update' per release (docs/updates.md). Not built yet (issue 7): the on-site 'check'. See \
docs/provisioning.md.";

#[derive(Parser)]
#[command(
    name = "sunlight-provision",
    version,
    about = "The county CA, box certificates, the broker's config and revocation for Sunlight.",
    after_help = NOT_YET
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the county CA, the broker/hub server certificate, the hub's client certificate
    /// and a hub config skeleton in --dir.
    Init {
        /// The CA directory (keep it on the county's offline machine or an encrypted stick).
        #[arg(long)]
        dir: PathBuf,
        /// The county's name, e.g. 随县.
        #[arg(long)]
        county: String,
        /// Names and addresses boxes use to reach the broker, comma-separated
        /// (e.g. hub.suixian.gov.cn,10.20.0.5).
        #[arg(long = "hub-host", value_delimiter = ',', required = true)]
        hub_hosts: Vec<String>,
        /// Replace an existing CA (moved to a replaced-<time>/ folder): every box then needs a
        /// new certificate.
        #[arg(long)]
        force: bool,
    },
    /// Create the hub's enrollment CA: an intermediate of the county CA (box certificates only,
    /// shorter-lived) whose key the hub keeps, so boxes enroll over the network while ca.key
    /// stays offline.
    HubSigner {
        /// The county CA directory (needs ca.key).
        #[arg(long)]
        dir: PathBuf,
        /// Where to write it: the directory for 'sunlight-hub run --enroll-ca-dir'.
        #[arg(long)]
        out: PathBuf,
        /// How long it is valid (box certificates it signs end with it at the latest).
        #[arg(long, default_value_t = enroll_ca::ENROLL_CA_YEARS)]
        years: i64,
        /// Replace an existing one in --out (moved to a replaced-<time>/ folder there).
        #[arg(long)]
        force: bool,
    },
    /// Sites at the county hub (over its API).
    #[command(subcommand)]
    Site(SiteCommand),
    /// Boxes: registered at the hub over its API, or certificates from the county CA.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Generate a broker's configuration.
    #[command(subcommand)]
    BrokerConfig(BrokerCommand),
    /// Make the agent update signing key in --dir (the county CA directory, kept offline) and
    /// print its verifying key for the hub's and the boxes' configs.
    UpdateKey {
        #[arg(long)]
        dir: PathBuf,
        /// Make a new key although one exists (boxes must then trust both for a while).
        #[arg(long)]
        force: bool,
    },
    /// Sign an update archive (.tar.gz with sunlight-agent and VERSION) with the update key.
    SignUpdate {
        /// The signing key (update-signing.key in the CA directory).
        #[arg(long)]
        key: PathBuf,
        archive: PathBuf,
        /// Write the signed archive here instead of replacing ARCHIVE.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Revoke a box's certificates: recorded in --dir, written to the CRL, and the broker config
    /// generated again without it.
    Revoke {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        site: SiteId,
        #[arg(long)]
        device: DeviceId,
        /// Why, for the record (stolen, replaced, decommissioned...).
        #[arg(long, default_value = "revoked by the county")]
        reason: String,
    },
}

/// How to reach the hub's API.
#[derive(Args, Clone)]
struct HubArgs {
    /// The hub's HTTP address, e.g. https://hub.suixian.gov.cn.
    #[arg(long)]
    hub: String,
    /// An API token of a supervisor or admin account (sunlight-hub user token); default
    /// $SUNLIGHT_API_TOKEN.
    #[arg(long)]
    token: Option<String>,
    /// A CA to trust for an https:// hub besides the system's (the county CA, ca.pem).
    #[arg(long)]
    ca_file: Option<PathBuf>,
}

impl HubArgs {
    fn api(&self) -> Result<hub_api::HubApi, Error> {
        hub_api::HubApi::new(&self.hub, self.token.as_deref(), self.ca_file.as_deref())
    }
}

#[derive(Subcommand)]
enum SiteCommand {
    /// Register a site (its id and name) at the hub.
    Add {
        #[command(flatten)]
        hub: HubArgs,
        /// The site's id, as boxes and rosters use it, e.g. suixian-shangshi.
        #[arg(long)]
        id: SiteId,
        /// Its name, e.g. 尚市镇便民服务中心.
        #[arg(long)]
        name: String,
    },
    /// The sites the hub knows, with their boxes.
    List {
        #[command(flatten)]
        hub: HubArgs,
    },
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// Register a box of a registered site at the hub: prints its one-time enrollment token
    /// (expires, single use) and the command to run on the box, or writes an offline bundle.
    Add {
        #[command(flatten)]
        hub: HubArgs,
        #[arg(long)]
        site: SiteId,
        #[arg(long)]
        device: DeviceId,
        /// How long the token may be used, in hours (1 to 720).
        #[arg(long, default_value_t = 72)]
        ttl_hours: u32,
        /// The hub's address as the box reaches it, if not --hub.
        #[arg(long)]
        box_hub: Option<String>,
        /// Write the offline bundle (token, county CA, update verifying keys) into this directory,
        /// e.g. a USB stick: 'sunlight-agent enroll --bundle DIR' reads it.
        #[arg(long)]
        bundle: Option<PathBuf>,
    },
    /// Issue a box's client certificate (CN <site>.<device>) signed by the county CA.
    Cert {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        site: SiteId,
        #[arg(long)]
        device: DeviceId,
        /// Where to write box.pem (and box.key), ca.pem and agent-hub.toml; default
        /// DIR/devices/<site>/<device>.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Sign this certificate request made on the box (its key never leaves the box) instead
        /// of generating a key here.
        #[arg(long)]
        csr: Option<PathBuf>,
        /// Issue another certificate for a box that has one (the earlier one stays valid).
        #[arg(long)]
        force: bool,
    },
    /// List the certificates issued from --dir, and which are revoked.
    List {
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum BrokerCommand {
    /// Mosquitto: mTLS listener, per-box ACL, CRL.
    Mosquitto(MosquittoArgs),
}

#[derive(Args)]
struct MosquittoArgs {
    #[arg(long)]
    dir: PathBuf,
    /// A TOML file listing the boxes ([[devices]] with site and device).
    #[arg(
        long,
        conflicts_with = "hub_data",
        required_unless_present = "hub_data"
    )]
    devices: Option<PathBuf>,
    /// The hub's data directory: its registered boxes are the list.
    #[arg(long)]
    hub_data: Option<PathBuf>,
    /// Where to write the config and the broker's files; default DIR/broker.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The boxes' mTLS listener.
    #[arg(long, default_value = "0.0.0.0:8883")]
    listen: SocketAddr,
    /// Also a plain loopback listener for the hub on the broker's host (e.g. 127.0.0.1:1883),
    /// for as long as the hub does not connect over mTLS.
    #[arg(long)]
    hub_listener: Option<SocketAddr>,
    #[arg(long, default_value = "/var/lib/mosquitto")]
    persistence_dir: PathBuf,
    /// Where the broker will read the files from, if not from --out (e.g. /etc/mosquitto/sunlight
    /// when --out is a stick).
    #[arg(long)]
    install_dir: Option<PathBuf>,
    /// The agents' sync.max_batch_bytes.
    #[arg(long, default_value_t = sunlight_protocol::DEFAULT_MAX_BATCH_BYTES)]
    max_batch_bytes: usize,
    /// The hub's enrollment CA directory (from 'hub-signer'): its revocation list goes into the
    /// broker's, which Mosquitto needs before it lets in a box the hub enrolled.
    #[arg(long)]
    enroll_ca_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<(), Error> {
    match command {
        Command::Init {
            dir,
            county,
            hub_hosts,
            force,
        } => init(&CaDir::new(&dir), &county, &hub_hosts, force),
        Command::HubSigner {
            dir,
            out,
            years,
            force,
        } => hub_signer(&CaDir::new(&dir), &out, years, force),
        Command::Device(DeviceCommand::Cert {
            dir,
            site,
            device,
            out,
            csr,
            force,
        }) => device_cert(&CaDir::new(&dir), &site, &device, out, csr, force),
        Command::Device(DeviceCommand::List { dir }) => device_list(&CaDir::new(&dir)),
        Command::Site(SiteCommand::Add { hub, id, name }) => site_add(&hub, &id, &name),
        Command::Site(SiteCommand::List { hub }) => site_list(&hub),
        Command::Device(DeviceCommand::Add {
            hub,
            site,
            device,
            ttl_hours,
            box_hub,
            bundle,
        }) => device_add(
            &hub,
            &site,
            &device,
            ttl_hours,
            box_hub.as_deref(),
            bundle.as_deref(),
        ),
        Command::UpdateKey { dir, force } => {
            let m = sunlight_provisioning::update_key::make(&dir, force)?;
            println!(
                "Update signing key written to {} (0600): keep it offline with the CA.",
                m.key.display()
            );
            println!(
                "Verifying key (also in {}):\n\n    {}\n",
                m.verifying_file.display(),
                m.verifying_key
            );
            println!(
                "Next:\n1. At the hub, in hub.toml:   [updates] verifying_keys = [\"{k}\"]\n2. On every box, in agent.toml: [update]  verifying_keys = [\"{k}\"]\n3. Per release: sunlight-provision sign-update --key {} sunlight-agent-VERSION.tar.gz",
                m.key.display(),
                k = m.verifying_key
            );
            Ok(())
        }
        Command::SignUpdate { key, archive, out } => {
            let s = sunlight_provisioning::update_key::sign(&key, &archive, out.as_deref())?;
            println!(
                "{} signed: sunlight-agent {}, verifying key {}.\nNext: sunlight-hub update publish --version {} {}",
                s.out.display(),
                s.version,
                s.verifying_key,
                s.version,
                s.out.display()
            );
            Ok(())
        }
        Command::BrokerConfig(BrokerCommand::Mosquitto(args)) => mosquitto(args),
        Command::Revoke {
            dir,
            site,
            device,
            reason,
        } => revoke(&CaDir::new(&dir), &site, &device, &reason),
    }
}

fn site_add(hub: &HubArgs, id: &SiteId, name: &str) -> Result<(), Error> {
    let site = hub.api()?.add_site(id.as_str(), name)?;
    println!(
        "Site {} ({}) registered at {} by {}.",
        site.id,
        site.name.as_deref().unwrap_or(name),
        hub.hub.trim_end_matches('/'),
        site.registered_by.as_deref().unwrap_or("?")
    );
    println!(
        "Next: register its boxes, one per window hall:

    sunlight-provision device add --hub {} --site {} --device box-01
",
        hub.hub.trim_end_matches('/'),
        site.id
    );
    Ok(())
}

fn site_list(hub: &HubArgs) -> Result<(), Error> {
    let sites = hub.api()?.sites()?;
    if sites.is_empty() {
        println!(
            "no sites at this hub yet: sunlight-provision site add --hub {} --id ID --name NAME",
            hub.hub.trim_end_matches('/')
        );
    }
    for s in sites {
        println!(
            "{:<28} {:<24} {} box(es){}",
            s.id,
            s.name
                .as_deref()
                .unwrap_or("(not registered: known by its boxes)"),
            s.devices,
            s.registered
                .map(|r| format!(
                    "\tregistered {r} by {}",
                    s.registered_by.unwrap_or_default()
                ))
                .unwrap_or_default()
        );
    }
    Ok(())
}

fn device_add(
    hub: &HubArgs,
    site: &SiteId,
    device: &DeviceId,
    ttl_hours: u32,
    box_hub: Option<&str>,
    bundle: Option<&Path>,
) -> Result<(), Error> {
    let api = hub.api()?;
    let box_hub = hub_api::check_url(box_hub.unwrap_or(&hub.hub), "--box-hub")?;
    let issued = api.add_device(&hub_api::DeviceAdd {
        site: site.as_str(),
        device: device.as_str(),
        ttl_hours,
        box_hub_url: &box_hub,
        bundle: bundle.is_some(),
    })?;
    println!(
        "One-time enrollment token for {}/{}, valid until {} (shown only now):\n\n    {}\n",
        issued.site, issued.device, issued.expires, issued.token
    );
    if issued.replaced > 0 {
        println!("The earlier unused token for this box no longer works.\n");
    }
    println!(
        "On the box, as root, with the box on the network:\n\n    {}\n",
        issued.command
    );
    if !issued.enrollment_enabled {
        println!(
            "Note: this hub does not enroll boxes yet (it runs without --enroll-ca-dir): the box's\n\
             command is refused until the county operator enables it (docs/provisioning.md).\n"
        );
    }
    if let (Some(dir), Some(files)) = (bundle, &issued.bundle) {
        let written = hub_api::write_bundle(dir, files)?;
        println!(
            "Bundle for a USB stick written to {} ({} files; the token is in enroll.toml, 0600: keep\n\
             the stick safe and wipe it after).\nOn the box: sunlight-agent enroll --bundle {}\n",
            dir.display(),
            written.len(),
            dir.display()
        );
    }
    println!(
        "Next:\n\
         1. Let the broker know the box: sunlight-provision broker-config mosquitto ... --hub-data\n\
         \x20  <the hub's data dir> lists boxes with a waiting token too; copy it to the broker and\n\
         \x20  restart Mosquitto.\n\
         2. Give the technician the token (or the stick). It works once, for this box only, until {}.\n\
         3. See whether the box enrolled: GET {}/api/v1/enroll/tokens (or sunlight-hub enroll list at the hub).",
        issued.expires,
        hub.hub.trim_end_matches('/')
    );
    Ok(())
}

fn init(dir: &CaDir, county: &str, hosts: &[String], force: bool) -> Result<(), Error> {
    let report = ca::init(dir, county, hosts, force)?;
    if let Some(old) = &report.replaced {
        println!(
            "The earlier CA and everything issued from it were moved to {}.\n\
             Certificates from it no longer match this CA: every box needs a new one.\n",
            old.display()
        );
    }
    println!(
        "County CA for {county} created in {}:",
        dir.root().display()
    );
    for (path, what) in &report.made {
        println!("  {:<28} {what}", rel(dir.root(), path));
    }
    let d = dir.root().display();
    next_steps(&[
        format!(
            "Back up {d} (above all ca.key) to a second offline medium: whoever has ca.key\n\
             can make certificates that every box and the broker trust."
        ),
        format!(
            "For each box: sunlight-provision device cert --dir {d} --site SITE --device DEVICE\n\
             (add --csr FILE to sign a request made on the box, so its key never leaves it)."
        ),
        format!(
            "To enroll boxes over the network, make the hub's enrollment CA:\n\
             sunlight-provision hub-signer --dir {d} --out /media/usb/sunlight-enroll"
        ),
        format!(
            "Register the boxes at the hub (sunlight-hub device add ..., or enroll tokens), then write\n\
             the broker's config:\n\
             sunlight-provision broker-config mosquitto --dir {d} --hub-data /var/lib/sunlight-hub \\\n\
             \x20   --hub-listener 127.0.0.1:1883"
        ),
        "Copy hub/hub.toml to the hub as /etc/sunlight/hub.toml and fill it in (hub/hub.example.toml\n\
         in the Sunlight source lists every key); check it with: sunlight-hub check-config FILE"
            .to_string(),
    ]);
    Ok(())
}

fn hub_signer(dir: &CaDir, out: &Path, years: i64, force: bool) -> Result<(), Error> {
    let r = enroll_ca::hub_signer(dir, out, years, force)?;
    if let Some(old) = &r.replaced {
        println!(
            "The earlier enrollment CA was moved to {}; broker-config still signs its revocation\n\
             list, so the boxes it enrolled keep working until their certificates expire.\n",
            old.display()
        );
    }
    println!(
        "Enrollment CA \"{}\" (serial {}, valid until {}) written to {}:",
        r.cn,
        r.serial,
        r.not_after,
        r.out.display()
    );
    for (path, what) in &r.made {
        println!("  {:<16} {what}", rel(&r.out, path));
    }
    let o = r.out.display();
    next_steps(&[
        format!(
            "Copy {o} to the hub, e.g. to /etc/sunlight/enroll, readable only by the hub's user:\n\
             chown -R sunlight: /etc/sunlight/enroll; chmod 600 /etc/sunlight/enroll/enroll-ca.key\n\
             Wipe the stick afterwards: whoever has enroll-ca.key can make box certificates."
        ),
        "Run the hub with it: sunlight-hub run ... --enroll-ca-dir /etc/sunlight/enroll \\\n\
         \x20   --public-broker-url mqtts://<broker host as boxes reach it>:8883"
            .into(),
        format!(
            "Generate the broker's config with it, so Mosquitto has its revocation list:\n\
             sunlight-provision broker-config mosquitto --dir {} --hub-data /var/lib/sunlight-hub \\\n\
             \x20   --enroll-ca-dir /etc/sunlight/enroll ...",
            dir.root().display()
        ),
        "For each box: sunlight-hub enroll token --site SITE --device DEVICE --by NAME --hub-url URL\n\
         prints the command the technician runs on the box."
            .into(),
    ]);
    Ok(())
}

fn device_cert(
    dir: &CaDir,
    site: &SiteId,
    device: &DeviceId,
    out: Option<PathBuf>,
    csr: Option<PathBuf>,
    force: bool,
) -> Result<(), Error> {
    let key = match csr {
        Some(path) => KeySource::Csr(path),
        None => KeySource::GenerateHere,
    };
    let r = ca::issue_device(dir, site, device, &key, out.as_deref(), force)?;
    if !r.replaced_serials.is_empty() {
        println!(
            "Note: the earlier certificate(s) of {site}/{device} (serial {}) stay valid until revoked.\n",
            r.replaced_serials.join(", ")
        );
    }
    println!(
        "Certificate for {site}/{device} issued: CN {}, serial {}, valid until {}.\nIn {}:",
        r.cn,
        r.serial,
        r.not_after,
        r.out.display()
    );
    println!("  box.pem         the box's certificate");
    match &r.key {
        Some(_) => println!(
            "  box.key         its private key (0600), made on this computer: it travels to the box on\n\
             \x20                 a stick and is deleted here afterwards (use --csr when the box can make its own)"
        ),
        None => println!("  (no key here: it stays on the box that made the request)"),
    }
    println!("  ca.pem          the county CA the box checks the broker against");
    println!("  agent-hub.toml  the [hub] lines for the box's agent.toml");
    let d = dir.root().display();
    let copy = if r.key.is_some() {
        "box.pem, box.key and ca.pem"
    } else {
        "box.pem and ca.pem"
    };
    next_steps(&[
        format!(
            "Copy {copy} to /etc/sunlight/ on the box\n\
             (box.key: chmod 600, owned by the user the agent runs as)."
        ),
        "Put the lines of agent-hub.toml into the [hub] section of /etc/sunlight/agent.toml."
            .into(),
        format!(
            "If the box is new: run 'sunlight-agent init' on the box, then at the hub:\n\
             sunlight-hub device add --site {site} --device {device} --pubkey <printed key>"
        ),
        format!(
            "Let the broker in on it: sunlight-provision broker-config mosquitto --dir {d} ...\n\
             (the box must be in the device list), copy the output to the broker and restart it."
        ),
    ]);
    Ok(())
}

fn device_list(dir: &CaDir) -> Result<(), Error> {
    let county = dir.county()?;
    let issued = dir.issued()?;
    let revoked = dir.revoked()?;
    println!(
        "Certificates issued by the {} CA in {}:",
        county.county,
        dir.root().display()
    );
    println!(
        "  {:<8} {:<40} {:<32} {:<20} state",
        "role", "CN", "serial", "valid until"
    );
    for c in &issued.cert {
        let state = match revoked
            .revoked
            .iter()
            .find(|r| r.serials.contains(&c.serial))
        {
            Some(r) => format!("revoked {} ({})", r.at, r.reason),
            None => "valid".to_string(),
        };
        let role = format!("{:?}", c.role).to_lowercase();
        println!(
            "  {role:<8} {:<40} {:<32} {:<20} {state}",
            c.cn, c.serial, c.not_after
        );
    }
    Ok(())
}

fn mosquitto(args: MosquittoArgs) -> Result<(), Error> {
    let dir = CaDir::new(&args.dir);
    dir.county()?;
    let source = match (args.devices, args.hub_data) {
        (Some(f), _) => DeviceSource::File(files::absolute(&f)),
        (None, Some(h)) => DeviceSource::HubData(files::absolute(&h)),
        (None, None) => {
            return Err(Error::Refused(
                "name the boxes: --hub-data /var/lib/sunlight-hub (the hub's registered boxes) or --devices FILE".into(),
            ));
        }
    };
    let out = files::absolute(&args.out.unwrap_or_else(|| dir.root().join("broker")));
    let plan = BrokerPlan {
        source,
        mosquitto: MosquittoSettings {
            listen: args.listen,
            hub_listener: args.hub_listener,
            persistence_dir: files::absolute(&args.persistence_dir),
            install_dir: args
                .install_dir
                .map(|p| files::absolute(&p))
                .unwrap_or_else(|| out.clone()),
            max_batch_bytes: args.max_batch_bytes,
        },
        out,
        enroll_ca_dir: args.enroll_ca_dir.map(|p| files::absolute(&p)),
    };
    println!("Reading {}...", plan.source.describe());
    let report = broker::generate(&dir, &plan)?;
    print_broker(&dir, &plan, &report);
    let m = &plan.mosquitto;
    let mut steps = vec![
        format!(
            "Copy {} to {} on the broker's host (or pass --install-dir to name another place)\n\
             and give server.key to the mosquitto user: chown mosquitto: server.key (it stays 0600).",
            plan.out.display(),
            m.install_dir.display()
        ),
        format!(
            "Restart Mosquitto with it: mosquitto -c {}/mosquitto.conf\n\
             (or install it as /etc/mosquitto/mosquitto.conf and run 'systemctl restart mosquitto').",
            m.install_dir.display()
        ),
        format!(
            "Boxes connect to mqtts://<hub host>:{} with their certificate.",
            m.listen.port()
        ),
    ];
    if let Some(l) = m.hub_listener {
        steps.push(format!(
            "Run the hub on the broker's host with --broker mqtt://{l}."
        ));
    }
    steps.push(
        "Run this again after registering or revoking a box ('revoke' does it by itself).".into(),
    );
    next_steps(&steps);
    Ok(())
}

fn print_broker(dir: &CaDir, plan: &BrokerPlan, r: &broker::BrokerReport) {
    println!(
        "Mosquitto config for {} written to {}:",
        boxes(r.allowed.len()),
        plan.out.display()
    );
    for f in &r.files {
        println!("  {}", rel(&plan.out, f));
    }
    for d in &r.left_out_revoked {
        println!(
            "Left out: {}/{} is revoked (see {}).",
            d.site,
            d.device,
            dir.revoked_file().display()
        );
    }
    for d in &r.waiting {
        println!(
            "Waiting: {}/{} has an enrollment token and no certificate yet; it connects once \
             'sunlight-agent enroll' has run on it.",
            d.site, d.device
        );
    }
    if r.enrollment_crls > 0 {
        println!(
            "crl.pem holds the county CA's revocation list and {} of the hub's enrollment CA.",
            r.enrollment_crls
        );
    }
    for d in &r.without_certificate {
        println!(
            "Warning: {}/{} is listed but has no certificate from this CA yet: it cannot connect \
             until you run 'sunlight-provision device cert --dir {} --site {} --device {}'.",
            d.site,
            d.device,
            dir.root().display(),
            d.site,
            d.device
        );
    }
}

fn revoke(dir: &CaDir, site: &SiteId, device: &DeviceId, reason: &str) -> Result<(), Error> {
    let enrolled = broker::enrolled_serials(BrokerPlan::load(dir)?.as_ref(), site, device)?;
    let r = ca::revoke(dir, site, device, reason, &enrolled)?;
    match &r.already {
        Some(at) => println!(
            "{site}/{device} was already revoked on {at} (serial {}); the CRL was written again.",
            r.serials.join(", ")
        ),
        None => println!(
            "{site}/{device} revoked: certificate serial {} (CN {}) recorded in {} and listed in {}.",
            r.serials.join(", "),
            r.cn,
            dir.revoked_file().display(),
            dir.crl().display()
        ),
    }
    match BrokerPlan::load(dir)? {
        Some(plan) => {
            println!(
                "Generating the broker config again from {}...",
                plan.source.describe()
            );
            let report = broker::generate(dir, &plan)?;
            print_broker(dir, &plan, &report);
            next_steps(&[
                format!(
                    "Copy {} to {} on the broker's host and restart Mosquitto.\n\
                     Until it restarts the box may stay connected; after, its certificate is refused\n\
                     (crl.pem) and the ACL gives it no rights.",
                    plan.out.display(),
                    plan.mosquitto.install_dir.display()
                ),
                format!(
                    "Revoke it at the hub too, so batches signed with its key are refused:\n\
                     sunlight-hub device revoke --site {site} --device {device} --reason '{reason}'"
                ),
                "A replacement box gets a new device id: make an enrollment token for it at the hub\n\
                 (sunlight-hub enroll token), or register it and run 'sunlight-provision device cert'."
                    .into(),
            ]);
        }
        None => println!(
            "\nNo broker config was generated from {} yet; when you generate one, the box is left out:\n  \
             sunlight-provision broker-config mosquitto --dir {} --hub-data /var/lib/sunlight-hub\n\
             Revoke it at the hub too: sunlight-hub device revoke --site {site} --device {device} --reason '{reason}'",
            dir.root().display(),
            dir.root().display()
        ),
    }
    Ok(())
}

/// Prints numbered next steps; a step's further lines are indented under its first.
fn next_steps(steps: &[String]) {
    println!("\nNext:");
    for (i, step) in steps.iter().enumerate() {
        let mut lines = step.lines();
        println!("{}. {}", i + 1, lines.next().unwrap_or_default());
        for line in lines {
            println!("   {line}");
        }
    }
}

fn boxes(n: usize) -> String {
    if n == 1 {
        "1 box".into()
    } else {
        format!("{n} boxes")
    }
}

/// `path` relative to `base` when it is inside it.
fn rel(base: &Path, path: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .display()
        .to_string()
}
