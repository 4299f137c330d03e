//! Oversight engines: pure functions of (events, calendar, rules, now) that decide what supervisors
//! are warned about. No I/O here: the shells that feed them events and store their transitions live
//! beside ingest. One calendar ([`calendar`]) serves deadlines and attendance alike.

pub mod attendance;
pub mod calendar;
pub mod cases;
pub mod deadlines;
