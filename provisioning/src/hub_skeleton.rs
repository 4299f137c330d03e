//! The hub config skeleton that `init` writes: the county's own values and pointers, not a copy of
//! `hub/hub.example.toml` (which lists every key with its default and stays the one reference).

use crate::ca::CaDir;

/// A TOML string literal (quoted and escaped).
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// `hub/hub.toml` for `county`.
pub fn text(county: &str, hosts: &[String], dir: &CaDir) -> String {
    let issuer = format!("{county}政务服务电子监察室");
    format!(
        "# Sunlight hub for {county}: written by sunlight-provision init.\n\
         # Every key, with its default and what it does, is in hub/hub.example.toml of the Sunlight\n\
         # source; copy the sections you need below. Check the file with:\n\
         #   sunlight-hub check-config /etc/sunlight/hub.toml\n\
         #\n\
         # Run the hub against the county's Mosquitto, whose config comes from\n\
         # 'sunlight-provision broker-config mosquitto --hub-listener 127.0.0.1:1883 ...':\n\
         #   sunlight-hub run --config /etc/sunlight/hub.toml --data-dir /var/lib/sunlight-hub \\\n\
         #       --http 127.0.0.1:8080 --broker mqtt://127.0.0.1:1883\n\
         #\n\
         # Made with this file, in {hub}:\n\
         #   server.pem, server.key  the broker's TLS certificate for {hosts}\n\
         #   hub.pem, hub.key        the hub's own identity at the broker (CN \"hub\"), for when the\n\
         #                           hub connects over mTLS instead of the local listener\n\
         # and {ca}: the county CA that boxes and the broker trust.\n\
         \n\
         [letters]\n\
         # Printed on supervision letters (监察建议书).\n\
         issuer = {issuer}\n\
         \n\
         # Who is told at each warning step, and how (see [notify] in hub.example.toml):\n\
         # [notify.webhook]\n\
         # url = \"http://127.0.0.1:9000/sms\"\n\
         #\n\
         # [[contacts]]\n\
         # role = \"supervisor\"\n\
         # name = \"县电子监察室\"\n\
         # to = \"13800000003\"\n",
        hub = dir.hub_dir().display(),
        hosts = hosts.join(", "),
        ca = dir.ca_cert().display(),
        issuer = quoted(&issuer),
    )
}
