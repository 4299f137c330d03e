//! Capture sources: each accepts events from one kind of source and writes them only to the outbox.
//! A source never blocks another: the LAN intake API (with its file import and import directory,
//! behind keys: [`intake_keys`]),
//! ZKTeco terminals, the kiosk page, and the cameras (whose pictures go to the spool first).
//! Every source masks personal data ([`mask`]) before an event becomes a draft.

pub mod camera;
pub mod import;
pub mod import_dir;
pub mod intake_api;
pub mod intake_keys;
pub mod kiosk;
pub mod mask;
pub mod table;
pub mod zkteco_push;

/// Text from a township system: UTF-8 (a leading BOM dropped) when it is, else GB18030 (a superset
/// of GBK and GB2312), as zh_CN Windows exports and terminals write it.
pub fn decode_text(bytes: &[u8]) -> String {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => encoding_rs::GB18030.decode(bytes).0.into_owned(),
    }
}
