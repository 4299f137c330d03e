//! `sunlight-provision`: the field technician's tool. Not built yet (issue 7): it says what is coming
//! and what to use until then, and exits with an error so no script mistakes it for the real thing.

use std::process::ExitCode;

const COMING: &str = "\
sunlight-provision is not built yet (tracked in issue 7). It will:
  init                 create the county CA, the hub certificate and a hub config skeleton
  site add/device add  register a site or box and print a one-time enrollment token
  broker-config        write a Mosquitto config with mTLS and per-device ACLs
  revoke               refuse a device at the hub and the broker
  check                the on-site pass/fail report (cameras, hub, broker, clock, disk)

Until then, enroll a box by hand:
  on the box:  sunlight-agent init --site SITE --device DEVICE --data-dir /var/lib/sunlight
  at the hub:  sunlight-hub device add --site SITE --device DEVICE --pubkey <printed key>";

fn main() -> ExitCode {
    eprintln!("{COMING}");
    ExitCode::from(2)
}
