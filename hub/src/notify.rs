//! Delivering notifications: one [`Notifier`] trait, a webhook adapter (an HTTP SMS gateway or a
//! chat bot, by reqwest) and a log sink. The sender thread takes pending rows from the store
//! ([`crate::store::notices`]), delivers each, and records the outcome; failures are retried with a
//! doubling delay. Each message carries its unique key as `Idempotency-Key`, so a gateway that
//! honours it never shows a message twice even if the hub dies between sending and recording.

use crate::clock::HubClock;
use crate::config::{HubConfig, WebhookConfig};
use crate::report::{Period, ReportScope};
use crate::store::{Writer, notices};
use crate::supervise::Supervision;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// A delivery channel.
pub trait Notifier: Send + Sync {
    /// Recorded with each message it delivered.
    fn channel(&self) -> &'static str;
    fn send<'a>(&'a self, message: &'a notices::Outgoing) -> SendFuture<'a>;
}

/// Writes each message to the hub's log (target `sunlight::notify`); the channel when no webhook
/// is configured.
pub struct LogSink;

impl Notifier for LogSink {
    fn channel(&self) -> &'static str {
        "log"
    }

    fn send<'a>(&'a self, m: &'a notices::Outgoing) -> SendFuture<'a> {
        Box::pin(async move {
            tracing::info!(target: "sunlight::notify", to = %m.to, role = %m.role, key = %m.key, subject = %m.subject, "{}", m.text);
            Ok(())
        })
    }
}

/// POSTs each message as JSON to a configured URL; any 2xx answer is a delivery.
pub struct Webhook {
    client: reqwest::Client,
    url: String,
    token: Option<String>,
}

impl Webhook {
    pub fn new(config: &WebhookConfig) -> Result<Webhook, crate::Error> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_secs.max(1)))
            .build()
            .map_err(|e| crate::Error::Invalid(format!("notify.webhook: {e}")))?;
        Ok(Webhook {
            client,
            url: config.url.clone(),
            token: config.token.clone(),
        })
    }
}

impl Notifier for Webhook {
    fn channel(&self) -> &'static str {
        "webhook"
    }

    fn send<'a>(&'a self, m: &'a notices::Outgoing) -> SendFuture<'a> {
        Box::pin(async move {
            let mut request = self
                .client
                .post(&self.url)
                .header("Idempotency-Key", &m.key)
                .json(m);
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.map_err(|e| e.to_string())?;
            let status = response.status();
            if status.is_success() {
                Ok(())
            } else {
                let body = response.text().await.unwrap_or_default();
                Err(format!(
                    "{} answered {status}: {}",
                    self.url,
                    body.chars().take(200).collect::<String>()
                ))
            }
        })
    }
}

/// The delay before attempt `attempts + 1`: `base · 2^attempts`, at most `max`.
pub fn retry_delay(base_secs: u64, max_secs: u64, attempts: u32) -> Duration {
    let factor = 1u64.checked_shl(attempts.min(30)).unwrap_or(u64::MAX);
    Duration::from_secs(base_secs.max(1).saturating_mul(factor).min(max_secs.max(1)))
}

/// Whether the digest of `day` is due: from `hour` o'clock of the next day (UTC+8), or, with a fixed
/// simulation clock, as soon as the next day has come.
fn digests_before(clock: &HubClock, hour: u32) -> chrono::NaiveDate {
    let today = clock.today();
    if clock.is_fixed() || clock.hour() >= hour {
        today
    } else {
        today.pred_opt().unwrap_or(today)
    }
}

/// Records the report's figures as one message to each contact of `[notify.digest] report_roles`
/// when a period's report is due (OVERSIGHT.md §5): the month's from the digest hour of the next
/// month's first day until its 7th, with `report_weekly` the week's from Monday until Wednesday (a
/// report later than that belongs on the dashboard, not in a text message). A contact with a site
/// gets its township's figures, with a unit too its unit's, others the county's. One message per
/// period and contact (`report:<period>:<role>:<to>`), however often this runs. Returns how many
/// were recorded.
pub fn queue_reports(
    conn: &rusqlite::Connection,
    sup: &Supervision,
    clock: &HubClock,
) -> rusqlite::Result<usize> {
    let config = sup.config();
    let rules = &config.notify.digest;
    let now = digests_before(clock, rules.hour);
    let mut due = Vec::new();
    let month = Period::last_month(now);
    if (now - month.to).num_days() <= 7 {
        due.push(month);
    }
    let week = Period::last_week(now);
    if rules.report_weekly && (now - week.to).num_days() <= 3 {
        due.push(week);
    }
    let mut n = 0;
    for period in &due {
        for c in config
            .contacts
            .iter()
            .filter(|c| rules.report_roles.contains(&c.role))
        {
            let key = format!("report:{}:{}:{}", period.label, c.role.as_str(), c.to);
            if notices::recorded(conn, &key)? {
                continue;
            }
            let scope = ReportScope {
                site: c.site.clone(),
                unit: c.site.as_ref().and(c.unit.clone()),
            };
            let r = crate::report::compute_live(conn, sup, &scope, period, clock.report_day())?;
            let (subject, text) = crate::report::message(&r);
            n += notices::enqueue_to(conn, &key, now, c, &subject, &text)?;
        }
    }
    Ok(n)
}

/// Runs the sender on its own thread, forever: records due report messages and digests, then
/// delivers pending messages. The rules are `sup`'s in force, read each round (an admin may change
/// the digest's roles and hour in the running hub); the webhook is hub.toml's, taken once here.
pub fn spawn(mut writer: Writer, sup: Supervision, every: Duration) -> Result<(), crate::Error> {
    let clock = sup.clock;
    let notifier: Box<dyn Notifier> = match &sup.config().notify.webhook {
        Some(w) => Box::new(Webhook::new(w)?),
        None => Box::new(LogSink),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| crate::Error::io("starting the notification sender", e))?;
    std::thread::Builder::new()
        .name("notify".into())
        .spawn(move || {
            loop {
                let config = sup.config();
                if let Err(e) = queue_reports(writer.conn(), &sup, &clock) {
                    tracing::error!(error = %e, "recording the report messages failed; retrying");
                }
                if let Err(e) = round(&mut writer, &config, &clock, notifier.as_ref(), &rt) {
                    tracing::error!(error = %e, "notification sender failed; retrying");
                }
                std::thread::sleep(every);
            }
        })
        .map_err(|e| crate::Error::io("starting the notification sender", e))?;
    Ok(())
}

/// One pass: digests, then every due message. Returns how many were delivered.
pub fn round(
    writer: &mut Writer,
    config: &HubConfig,
    clock: &HubClock,
    notifier: &dyn Notifier,
    rt: &tokio::runtime::Runtime,
) -> rusqlite::Result<usize> {
    {
        let tx = writer.transaction()?;
        notices::make_digests(&tx, digests_before(clock, config.notify.digest.hour))?;
        tx.commit()?;
    }
    let mut delivered = 0;
    loop {
        let due = notices::due(writer.conn(), crate::store::now_ms(), 64)?;
        if due.is_empty() {
            return Ok(delivered);
        }
        for m in &due {
            match rt.block_on(notifier.send(m)) {
                Ok(()) => {
                    notices::mark_sent(writer.conn(), m.id, notifier.channel())?;
                    delivered += 1;
                }
                Err(error) => {
                    let delay = retry_delay(
                        config.notify.retry_secs,
                        config.notify.retry_max_secs,
                        m.attempts,
                    );
                    tracing::warn!(key = %m.key, attempts = m.attempts + 1, retry_in = ?delay, %error, "notification not delivered");
                    notices::mark_failed(
                        writer.conn(),
                        m.id,
                        &error,
                        crate::store::now_ms() + delay.as_millis() as i64,
                    )?;
                }
            }
        }
        if due.len() < 64 {
            return Ok(delivered);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_a_ceiling() {
        assert_eq!(retry_delay(5, 3600, 0), Duration::from_secs(5));
        assert_eq!(retry_delay(5, 3600, 3), Duration::from_secs(40));
        assert_eq!(retry_delay(5, 3600, 20), Duration::from_secs(3600));
        assert_eq!(retry_delay(5, 3600, u32::MAX), Duration::from_secs(3600));
    }
}
