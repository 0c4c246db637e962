//! The workflow operations: every change to a report or an account goes through here, inside
//! one transaction that also writes the audit entry (who, when, before → after) and, when the
//! status changes, the status message for MQTT. Pages and the JSON API are thin layers over it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use serde::Serialize;
use tokio::sync::{broadcast, Notify};
use tokio_util::sync::CancellationToken;

use super::auth::{self, RateLimiter};
use super::domain::{self, Action, Colour, NotAllowed, Role, Source, Status};
use super::photo::{self, PhotoError};
use super::sms;
use super::store::{
    self, AttachmentMeta, AuditRow, MessageRow, ReportFilter, ReportRow, Store, StoreError, Tx,
    UserRow,
};
use crate::config::{Config, DeskConfig};

/// Why an operation did not happen. Each maps to one HTTP status in the web layer.
#[derive(Debug, thiserror::Error)]
pub enum DeskError {
    #[error("tidak ditemukan")]
    NotFound,
    #[error("Anda tidak berwenang melakukan ini")]
    Forbidden,
    #[error("silakan masuk terlebih dahulu")]
    Unauthorized,
    #[error("{}", .0.iter().map(|f| f.message.clone()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    #[error("berkas terlalu besar (maksimal {max} byte)")]
    TooLarge { max: usize },
    #[error(transparent)]
    NotAllowed(#[from] NotAllowed),
    #[error("laporan baru saja diubah orang lain; muat ulang halaman lalu coba lagi")]
    Conflict,
    #[error("terlalu banyak percobaan gagal; coba lagi dalam {0} detik")]
    RateLimited(i64),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    #[error("kesalahan internal: {0}")]
    Internal(String),
}

impl From<sqlx::Error> for DeskError {
    fn from(e: sqlx::Error) -> Self {
        DeskError::Store(StoreError::Db(e))
    }
}

/// One bad input field, named as the form and the JSON API name it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> DeskError {
    DeskError::Invalid(vec![FieldError {
        field,
        message: message.into(),
    }])
}

/// The desk's notion of now, in Unix seconds. Tests move it forward to pass SLA due times.
#[derive(Clone, Default)]
pub struct Clock {
    offset_s: Arc<AtomicI64>,
}

impl Clock {
    pub fn now(&self) -> i64 {
        Utc::now().timestamp() + self.offset_s.load(Ordering::Relaxed)
    }
    pub fn advance(&self, seconds: i64) {
        self.offset_s.fetch_add(seconds, Ordering::Relaxed);
    }
}

/// A signed-in staff member.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StaffUser {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub agency_id: Option<String>,
}

impl StaffUser {
    fn from_row(u: &UserRow) -> Result<Self, DeskError> {
        Ok(Self {
            id: u.id,
            username: u.username.clone(),
            display_name: u.display_name.clone(),
            role: u.role()?,
            agency_id: u.agency_id.clone(),
        })
    }
}

/// Who makes a change, as the audit log records it.
#[derive(Clone, Debug)]
pub enum Actor {
    Staff(StaffUser),
    /// A citizen, through the web form, the tracker (with the PIN) or SMS.
    Reporter(Source),
    /// The camera pipeline, over MQTT.
    Mqtt,
    /// The command line (`simpang desk user add`) and start-up tasks.
    System,
}

impl Actor {
    fn id(&self) -> Option<i64> {
        match self {
            Actor::Staff(u) => Some(u.id),
            _ => None,
        }
    }
    fn label(&self) -> String {
        match self {
            Actor::Staff(u) => u.username.clone(),
            Actor::Reporter(s) => format!("pelapor ({})", s.as_str()),
            Actor::Mqtt => "mqtt".into(),
            Actor::System => "sistem".into(),
        }
    }
}

/// A change other pages want to hear about at once (the dashboard's live feed).
#[derive(Clone, Debug, Serialize)]
pub struct FeedEvent {
    /// `incident_new`, `incident_update`, `incident_end` or `status`.
    pub event: &'static str,
    pub ticket: String,
    pub title: String,
    pub source: Source,
    pub status: Status,
    pub status_label: &'static str,
    pub colour: Colour,
    pub category_name: String,
    pub site_name: Option<String>,
    pub level: Option<String>,
    pub at: i64,
    /// `at` as the desk shows times ("24 Nov 2026, 17.05 WIB").
    pub at_label: String,
    /// Snapshot attachment id, for `/attachments/{id}`.
    pub snapshot: Option<i64>,
    /// The agency the report is with (the feed is filtered per agency officer).
    pub agency_id: Option<String>,
}

/// A citizen's report as submitted (web form or API).
#[derive(Clone, Debug, Default)]
pub struct NewReport {
    pub title: String,
    pub description: String,
    pub category: String,
    pub address: String,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub phone: Option<String>,
    pub photo: Option<Vec<u8>>,
}

/// What the reporter takes home.
#[derive(Clone, Debug, Serialize)]
pub struct Created {
    pub ticket: String,
    /// Proves the reporter on the tracking page (to confirm or chat). Shown once.
    pub pin: Option<String>,
}

/// The message published on `.../reports/{ticket}/status`.
#[derive(Clone, Debug, Serialize)]
pub struct StatusMessage {
    pub schema: &'static str,
    pub ticket: String,
    pub status: Status,
    pub status_label: &'static str,
    pub colour: Colour,
    pub source: Source,
    pub category: String,
    pub agency: Option<String>,
    pub incident_id: Option<String>,
    pub due_at: Option<String>,
    pub overdue: bool,
    pub at: String,
}

pub const STATUS_SCHEMA: &str = "simpang.desk.status/1";

/// Everything a staff page shows about one report.
#[derive(Clone, Debug)]
pub struct ReportView {
    pub report: ReportRow,
    pub status: Status,
    pub source: Source,
    pub attachments: Vec<AttachmentMeta>,
    pub messages: Vec<MessageRow>,
    pub merged: Vec<ReportRow>,
    pub merged_into: Option<String>,
    pub audit: Vec<AuditRow>,
    /// Account id -> display name, for the ids the audit trail records.
    pub names: BTreeMap<i64, String>,
    pub operator: Option<String>,
    pub officer: Option<String>,
}

/// Counts of one category or agency on the dashboard.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GroupStat {
    pub id: String,
    pub name: String,
    pub total: i64,
    pub open: i64,
    pub done: i64,
    pub overdue: i64,
    pub on_time: i64,
    pub answered: i64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Dashboard {
    /// Received in the period (everything filed).
    pub total: i64,
    /// Still being handled.
    pub open: i64,
    /// Confirmed solved.
    pub done: i64,
    /// Rejected or merged.
    pub closed_other: i64,
    pub red: i64,
    pub yellow: i64,
    pub green: i64,
    pub grey: i64,
    pub overdue: i64,
    /// Answers on time over all judged (answered, or overdue without an answer), percent.
    pub sla_compliance: Option<f64>,
    pub sla_on_time: i64,
    pub sla_judged: i64,
    pub by_category: Vec<GroupStat>,
    pub by_agency: Vec<GroupStat>,
    pub by_source: BTreeMap<String, i64>,
}

/// The service behind every page and API call.
pub struct Desk {
    pub(crate) store: Store,
    pub(crate) cfg: Arc<Config>,
    pub clock: Clock,
    feed: broadcast::Sender<FeedEvent>,
    pub(crate) outbox_wake: Arc<Notify>,
    pub(crate) login_limiter: RateLimiter,
    pub(crate) pin_limiter: RateLimiter,
    pub(crate) shutdown: CancellationToken,
    /// The incident subscription is in place on a live broker connection.
    pub(crate) intake_up: std::sync::atomic::AtomicBool,
}

/// Ticket alphabet: no 0/O, 1/I/L or U, so a ticket read out over the phone is unambiguous.
const TICKET_ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTVWXYZ";

impl Desk {
    pub fn new(cfg: Arc<Config>, store: Store, clock: Clock) -> Self {
        let d = &cfg.desk;
        let (feed, _) = broadcast::channel(256);
        Self {
            login_limiter: RateLimiter::new(d.login_max_failures, d.login_window_s),
            pin_limiter: RateLimiter::new(d.login_max_failures, d.login_window_s),
            store,
            clock,
            feed,
            outbox_wake: Arc::new(Notify::new()),
            shutdown: CancellationToken::new(),
            intake_up: std::sync::atomic::AtomicBool::new(false),
            cfg,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
    pub fn config(&self) -> &Config {
        &self.cfg
    }
    pub fn desk_config(&self) -> &DeskConfig {
        &self.cfg.desk
    }
    pub fn subscribe(&self) -> broadcast::Receiver<FeedEvent> {
        self.feed.subscribe()
    }
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
    /// True while the desk is subscribed to incidents on a connected broker.
    pub fn intake_subscribed(&self) -> bool {
        self.intake_up.load(Ordering::Relaxed)
    }

    /// `ts` in the city's time zone.
    pub fn local(&self, ts: i64) -> DateTime<FixedOffset> {
        let utc = Utc.timestamp_opt(ts, 0).single().unwrap_or_default();
        crate::time::local(&self.cfg.city.timezone, utc)
    }

    /// A time as people read it on the desk: "24 Nov 2026, 17.05 WIB".
    pub fn time_label(&self, ts: i64) -> String {
        use chrono::{Datelike, Timelike};
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "Mei", "Jun", "Jul", "Agu", "Sep", "Okt", "Nov", "Des",
        ];
        let t = self.local(ts);
        let zone = match t.offset().local_minus_utc() {
            25_200 => "WIB".to_string(),
            28_800 => "WITA".to_string(),
            32_400 => "WIT".to_string(),
            s => format!("UTC{:+}", s / 3600),
        };
        format!(
            "{} {} {}, {:02}.{:02} {zone}",
            t.day(),
            MONTHS[t.month0() as usize],
            t.year(),
            t.hour(),
            t.minute()
        )
    }

    pub fn category_name(&self, id: &str) -> String {
        self.cfg
            .desk
            .category(id)
            .map(|c| c.name.clone())
            .unwrap_or_else(|| id.to_string())
    }
    pub fn agency_name(&self, id: &str) -> String {
        self.cfg
            .desk
            .agency(id)
            .map(|a| a.name.clone())
            .unwrap_or_else(|| id.to_string())
    }

    pub fn track_url(&self, ticket: &str) -> Option<String> {
        self.cfg
            .desk
            .public_url
            .as_ref()
            .map(|u| format!("{}/track/{ticket}", u.trim_end_matches('/')))
    }

    // ------------------------------------------------------------------------------------------
    // Plumbing shared by every change

    pub(crate) async fn new_ticket(&self, tx: &mut Tx) -> Result<String, DeskError> {
        use rand::Rng;
        for _ in 0..8 {
            let suffix: String = {
                let mut rng = rand::thread_rng();
                (0..6)
                    .map(|_| char::from(TICKET_ALPHABET[rng.gen_range(0..TICKET_ALPHABET.len())]))
                    .collect()
            };
            let t = format!("{}-{suffix}", self.cfg.desk.ticket_prefix);
            if !store::ticket_exists(tx, &t).await? {
                return Ok(t);
            }
        }
        Err(DeskError::Internal(
            "no free ticket number after 8 tries".into(),
        ))
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn audit(
        &self,
        tx: &mut Tx,
        actor: &Actor,
        action: &str,
        entity: &str,
        entity_id: &str,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) -> Result<(), DeskError> {
        let b = before.map(|v| v.to_string());
        let a = after.map(|v| v.to_string());
        store::insert_audit(
            tx,
            self.clock.now(),
            actor.id(),
            &actor.label(),
            action,
            entity,
            entity_id,
            b.as_deref(),
            a.as_deref(),
        )
        .await?;
        Ok(())
    }

    fn status_message(&self, r: &ReportRow) -> Result<StatusMessage, DeskError> {
        let status = r.status()?;
        let now = self.clock.now();
        Ok(StatusMessage {
            schema: STATUS_SCHEMA,
            ticket: r.ticket.clone(),
            status,
            status_label: status.label(),
            colour: status.colour(),
            source: r.source()?,
            category: r.category_id.clone(),
            agency: r.agency_id.clone(),
            incident_id: r.incident_id.clone(),
            due_at: r.due_at.map(|t| self.local(t).to_rfc3339()),
            overdue: domain::is_overdue(status, r.due_at, now),
            at: self.local(now).to_rfc3339(),
        })
    }

    pub(crate) async fn enqueue_status(&self, tx: &mut Tx, r: &ReportRow) -> Result<(), DeskError> {
        let msg = self.status_message(r)?;
        let payload =
            serde_json::to_string(&msg).map_err(|e| DeskError::Internal(e.to_string()))?;
        let topic = format!(
            "{}/{}/status",
            self.cfg.desk.mqtt.status_topic_prefix, r.ticket
        );
        store::insert_outbox(tx, self.clock.now(), &topic, &payload).await?;
        Ok(())
    }

    /// Writes a changed report (if nobody changed it meanwhile), its audit entry and, when the
    /// status or agency moved, its status message.
    pub(crate) async fn save(
        &self,
        tx: &mut Tx,
        actor: &Actor,
        action: &str,
        before: &ReportRow,
        after: &mut ReportRow,
    ) -> Result<(), DeskError> {
        after.updated_at = self.clock.now();
        if !store::update_report(tx, after).await? {
            return Err(DeskError::Conflict);
        }
        after.version += 1;
        let (b, a) = diff(before, after);
        self.audit(tx, actor, action, "report", &after.ticket, b, a)
            .await?;
        if before.status != after.status || before.agency_id != after.agency_id {
            self.enqueue_status(tx, after).await?;
        }
        Ok(())
    }

    pub(crate) fn after_commit(&self, event: &'static str, r: &ReportRow, snapshot: Option<i64>) {
        self.outbox_wake.notify_one();
        let (Ok(status), Ok(source)) = (r.status(), r.source()) else {
            return;
        };
        let _ = self.feed.send(FeedEvent {
            event,
            ticket: r.ticket.clone(),
            title: r.title.clone(),
            source,
            status,
            status_label: status.label(),
            colour: status.colour(),
            category_name: self.category_name(&r.category_id),
            site_name: r.site_name.clone(),
            level: r.level.clone(),
            at: r.updated_at,
            at_label: self.time_label(r.updated_at),
            snapshot,
            agency_id: r.agency_id.clone(),
        });
    }

    async fn load(&self, tx: &mut Tx, ticket: &str) -> Result<ReportRow, DeskError> {
        store::report_by_ticket(tx, &normalise_ticket(ticket))
            .await?
            .ok_or(DeskError::NotFound)
    }

    /// Staff may see the report: agency officers only what has been sent to their agency.
    pub fn can_see(&self, user: &StaffUser, r: &ReportRow) -> bool {
        match user.role {
            Role::Agency => {
                r.agency_id.is_some()
                    && r.agency_id == user.agency_id
                    && r.status().is_ok_and(|s| s.is_with_agency())
            }
            Role::Admin | Role::Operator | Role::Viewer => true,
        }
    }

    /// Loads a report for `user` to change with `action`: unseen reports are "not found"
    /// (an officer learns nothing about other agencies), seen but forbidden is "forbidden".
    async fn load_for(
        &self,
        tx: &mut Tx,
        user: &StaffUser,
        ticket: &str,
        action: Action,
    ) -> Result<ReportRow, DeskError> {
        let r = self.load(tx, ticket).await?;
        if !self.can_see(user, &r) {
            return Err(DeskError::NotFound);
        }
        if !user.role.may(action) {
            return Err(DeskError::Forbidden);
        }
        Ok(r)
    }

    // ------------------------------------------------------------------------------------------
    // Intake: citizens (web, SMS)

    fn check_new(
        &self,
        input: &NewReport,
    ) -> Result<Option<(photo::ImageInfo, Vec<u8>)>, DeskError> {
        let mut errs = Vec::new();
        let mut need = |field: &'static str, v: &str, min: usize, max: usize, what: &str| {
            let n = v.trim().chars().count();
            if n == 0 {
                errs.push(FieldError {
                    field,
                    message: format!("{what} wajib diisi"),
                });
            } else if n < min || n > max {
                errs.push(FieldError {
                    field,
                    message: format!("{what} harus {min} sampai {max} karakter (sekarang {n})"),
                });
            }
        };
        need("title", &input.title, 5, 150, "Judul");
        need("description", &input.description, 10, 5000, "Isi laporan");
        need("address", &input.address, 5, 300, "Alamat");
        match self.cfg.desk.category(input.category.trim()) {
            Some(c) if c.public => {}
            _ if input.category.trim().is_empty() => errs.push(FieldError {
                field: "category",
                message: "Kategori wajib dipilih".into(),
            }),
            _ => errs.push(FieldError {
                field: "category",
                message: format!("Kategori {:?} tidak dikenal", input.category),
            }),
        }
        match (input.lat, input.lon) {
            (None, None) => {}
            (Some(lat), Some(lon)) => {
                if !(lat.is_finite() && (-90.0..=90.0).contains(&lat)) {
                    errs.push(FieldError {
                        field: "lat",
                        message: "Lintang harus antara -90 dan 90".into(),
                    });
                }
                if !(lon.is_finite() && (-180.0..=180.0).contains(&lon)) {
                    errs.push(FieldError {
                        field: "lon",
                        message: "Bujur harus antara -180 dan 180".into(),
                    });
                }
            }
            _ => errs.push(FieldError {
                field: "lat",
                message: "Isi lintang dan bujur keduanya, atau kosongkan keduanya".into(),
            }),
        }
        if let Some(p) = &input.phone {
            if normalise_phone(p).is_none() {
                errs.push(FieldError {
                    field: "phone",
                    message: "Nomor HP tidak valid (8 sampai 15 angka, boleh diawali +)".into(),
                });
            }
        }
        let mut photo = None;
        if let Some(bytes) = &input.photo {
            if bytes.len() > self.cfg.desk.max_photo_bytes {
                return Err(DeskError::TooLarge {
                    max: self.cfg.desk.max_photo_bytes,
                });
            }
            match photo::sniff(bytes) {
                Ok(info) => photo = Some((info, bytes.clone())),
                Err(
                    e @ (PhotoError::Empty
                    | PhotoError::NotAnImage
                    | PhotoError::Corrupt(_)
                    | PhotoError::BadSize { .. }),
                ) => errs.push(FieldError {
                    field: "photo",
                    message: format!("Foto ditolak: {e}"),
                }),
            }
        }
        if errs.is_empty() {
            Ok(photo)
        } else {
            Err(DeskError::Invalid(errs))
        }
    }

    /// Files a citizen's report from the web form; returns the ticket and the reporter's PIN.
    pub async fn create_web_report(&self, input: NewReport) -> Result<Created, DeskError> {
        let photo = self.check_new(&input)?;
        let pin = auth::random_pin();
        let pin_hash = hash_blocking(pin.clone()).await?;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let ticket = self.new_ticket(&mut tx).await?;
        let mut r = blank_report(&ticket, Source::Web, now);
        r.category_id = input.category.trim().to_string();
        r.title = input.title.trim().to_string();
        r.description = input.description.trim().to_string();
        r.address = input.address.trim().to_string();
        r.lat = input.lat;
        r.lon = input.lon;
        r.phone = input.phone.as_deref().and_then(normalise_phone);
        r.pin_hash = Some(pin_hash);
        r.id = store::insert_report(&mut tx, &r).await?;
        if let Some((info, bytes)) = &photo {
            store::insert_attachment(
                &mut tx,
                &store::NewAttachment {
                    report_id: r.id,
                    kind: "photo",
                    content_type: info.content_type,
                    sha256: &sha256_hex(bytes),
                    width: info.width,
                    height: info.height,
                    bytes,
                    at: now,
                },
            )
            .await?;
        }
        let mut after = serde_json::to_value(&r).unwrap_or_default();
        if let Some(obj) = after.as_object_mut() {
            obj.insert("photo".into(), photo.is_some().into());
            obj.insert("phone_given".into(), r.phone.is_some().into());
        }
        self.audit(
            &mut tx,
            &Actor::Reporter(Source::Web),
            "create",
            "report",
            &ticket,
            None,
            Some(after),
        )
        .await?;
        self.enqueue_status(&mut tx, &r).await?;
        tx.commit().await?;
        tracing::info!(ticket = %ticket, source = "web", "report filed");
        self.after_commit("status", &r, None);
        Ok(Created {
            ticket,
            pin: Some(pin),
        })
    }

    /// Handles one SMS from the gateway; returns the ticket (when one was filed) and the reply.
    pub async fn handle_sms(
        &self,
        from: &str,
        text: &str,
    ) -> Result<(Option<String>, String), DeskError> {
        let phone = normalise_phone(from).ok_or_else(|| {
            invalid(
                "from",
                "nomor pengirim tidak valid (8 sampai 15 angka, boleh diawali +)",
            )
        })?;
        if text.chars().count() > 2000 {
            return Err(invalid(
                "text",
                "pesan terlalu panjang (maksimal 2000 karakter)",
            ));
        }
        match sms::parse(text) {
            sms::SmsCommand::Unknown => Ok((None, sms::USAGE.to_string())),
            sms::SmsCommand::Lapor(body) => {
                let ticket = self.create_sms_report(&phone, &body).await?;
                let url = self.track_url(&ticket);
                let reply = sms::receipt(&ticket, url.as_deref());
                Ok((Some(ticket), reply))
            }
            sms::SmsCommand::Cek(ticket) => {
                let mut c = self.store.pool().acquire().await?;
                let reply = match store::report_by_ticket(&mut c, &ticket).await? {
                    Some(r) => {
                        let s = r.status()?;
                        let agency = r
                            .agency_id
                            .as_deref()
                            .and_then(|a| self.cfg.desk.agency(a))
                            .map(|a| format!(" ({})", a.short()))
                            .unwrap_or_default();
                        let hint = if s == Status::Answered && r.phone.as_deref() == Some(&phone) {
                            format!(
                                " Balas PUAS {t} bila selesai, atau TIDAK PUAS {t} <alasan>.",
                                t = r.ticket
                            )
                        } else {
                            String::new()
                        };
                        sms::fit(&format!("Tiket {}: {}{agency}.{hint}", r.ticket, s.label()))
                    }
                    None => sms::fit(&format!("Tiket {ticket} tidak ditemukan.")),
                };
                Ok((None, reply))
            }
            sms::SmsCommand::Puas(ticket) => self.confirm_by_phone(&ticket, &phone, true, "").await,
            sms::SmsCommand::TidakPuas { ticket, reason } => {
                self.confirm_by_phone(&ticket, &phone, false, &reason).await
            }
        }
    }

    async fn create_sms_report(&self, phone: &str, body: &str) -> Result<String, DeskError> {
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let ticket = self.new_ticket(&mut tx).await?;
        let mut r = blank_report(&ticket, Source::Sms, now);
        r.category_id = if self.cfg.desk.category("other").is_some() {
            "other".into()
        } else {
            self.cfg
                .desk
                .categories
                .first()
                .map(|c| c.id.clone())
                .unwrap_or_default()
        };
        r.title = sms::title_from(body, 80);
        r.description = body.trim().to_string();
        r.phone = Some(phone.to_string());
        r.id = store::insert_report(&mut tx, &r).await?;
        let mut after = serde_json::to_value(&r).unwrap_or_default();
        if let Some(obj) = after.as_object_mut() {
            obj.insert("phone_given".into(), true.into());
        }
        self.audit(
            &mut tx,
            &Actor::Reporter(Source::Sms),
            "create",
            "report",
            &ticket,
            None,
            Some(after),
        )
        .await?;
        self.enqueue_status(&mut tx, &r).await?;
        tx.commit().await?;
        tracing::info!(ticket = %ticket, source = "sms", "report filed");
        self.after_commit("status", &r, None);
        Ok(ticket)
    }

    async fn confirm_by_phone(
        &self,
        ticket: &str,
        phone: &str,
        satisfied: bool,
        reason: &str,
    ) -> Result<(Option<String>, String), DeskError> {
        let not_found = || sms::fit(&format!("Tiket {ticket} tidak ditemukan untuk nomor ini."));
        let mut tx = self.store.begin().await?;
        let Some(before) = store::report_by_ticket(&mut tx, ticket).await? else {
            return Ok((None, not_found()));
        };
        if before.phone.as_deref() != Some(phone) {
            return Ok((None, not_found()));
        }
        match self
            .confirm_in(
                &mut tx,
                &Actor::Reporter(Source::Sms),
                before,
                satisfied,
                reason,
            )
            .await
        {
            Ok(after) => {
                tx.commit().await?;
                self.after_commit("status", &after, None);
                let reply = if satisfied {
                    format!("Terima kasih. Tiket {} dinyatakan selesai.", after.ticket)
                } else {
                    format!(
                        "Tiket {} dikembalikan ke OPD untuk ditindaklanjuti.",
                        after.ticket
                    )
                };
                Ok((None, sms::fit(&reply)))
            }
            Err(DeskError::NotAllowed(e)) => Ok((
                None,
                sms::fit(&format!(
                    "Tiket {ticket} berstatus {}; belum bisa dikonfirmasi.",
                    e.from.label()
                )),
            )),
            Err(e) => Err(e),
        }
    }

    // ------------------------------------------------------------------------------------------
    // Workflow: operators

    pub async fn verify(
        &self,
        user: &StaffUser,
        ticket: &str,
        category: Option<&str>,
    ) -> Result<ReportRow, DeskError> {
        let mut tx = self.store.begin().await?;
        let before = self.load_for(&mut tx, user, ticket, Action::Verify).await?;
        let mut r = moved(&before, Action::Verify, true)?;
        if let Some(c) = category.map(str::trim).filter(|c| !c.is_empty()) {
            self.cfg
                .desk
                .category(c)
                .ok_or_else(|| invalid("category", format!("kategori {c:?} tidak dikenal")))?;
            r.category_id = c.into();
        }
        r.verified_at = Some(self.clock.now());
        r.operator_id = r.operator_id.or(Some(user.id));
        self.save(
            &mut tx,
            &Actor::Staff(user.clone()),
            "verify",
            &before,
            &mut r,
        )
        .await?;
        tx.commit().await?;
        self.after_commit("status", &r, None);
        Ok(r)
    }

    pub async fn reject(
        &self,
        user: &StaffUser,
        ticket: &str,
        reason: &str,
    ) -> Result<ReportRow, DeskError> {
        let reason = bounded("reason", reason, 5, 1000, "Alasan penolakan")?;
        let mut tx = self.store.begin().await?;
        let before = self.load_for(&mut tx, user, ticket, Action::Reject).await?;
        let mut r = moved(&before, Action::Reject, true)?;
        let now = self.clock.now();
        r.reject_reason = Some(reason.clone());
        r.closed_at = Some(now);
        r.operator_id = r.operator_id.or(Some(user.id));
        self.save(
            &mut tx,
            &Actor::Staff(user.clone()),
            "reject",
            &before,
            &mut r,
        )
        .await?;
        store::insert_message(
            &mut tx,
            r.id,
            now,
            "operator",
            Some(user.id),
            "chat",
            &format!("Laporan ditolak: {reason}"),
        )
        .await?;
        tx.commit().await?;
        self.after_commit("status", &r, None);
        Ok(r)
    }

    /// Folds a duplicate into `into`: the duplicate closes, pointing at the report that goes on.
    pub async fn merge(
        &self,
        user: &StaffUser,
        ticket: &str,
        into: &str,
    ) -> Result<ReportRow, DeskError> {
        let into = normalise_ticket(into);
        if into.is_empty() {
            return Err(invalid("into", "Nomor tiket tujuan wajib diisi"));
        }
        let mut tx = self.store.begin().await?;
        let before = self.load_for(&mut tx, user, ticket, Action::Merge).await?;
        if before.ticket == into {
            return Err(invalid(
                "into",
                "Laporan tidak dapat digabung ke dirinya sendiri",
            ));
        }
        let target = store::report_by_ticket(&mut tx, &into)
            .await?
            .ok_or_else(|| invalid("into", format!("Tiket {into} tidak ditemukan")))?;
        let ts = target.status()?;
        if matches!(ts, Status::Merged | Status::Rejected) {
            return Err(invalid(
                "into",
                format!(
                    "Tiket {into} berstatus {}; pilih laporan yang masih berjalan",
                    ts.label()
                ),
            ));
        }
        let mut r = moved(&before, Action::Merge, true)?;
        let now = self.clock.now();
        r.merged_into = Some(target.id);
        r.closed_at = Some(now);
        r.operator_id = r.operator_id.or(Some(user.id));
        let actor = Actor::Staff(user.clone());
        self.save(&mut tx, &actor, "merge", &before, &mut r).await?;
        store::insert_message(
            &mut tx,
            target.id,
            now,
            "system",
            Some(user.id),
            "system",
            &format!("Laporan {} digabung ke laporan ini (duplikat).", r.ticket),
        )
        .await?;
        self.audit(
            &mut tx,
            &actor,
            "merge_in",
            "report",
            &target.ticket,
            None,
            Some(serde_json::json!({ "duplicate": r.ticket })),
        )
        .await?;
        tx.commit().await?;
        self.after_commit("status", &r, None);
        Ok(r)
    }

    /// Sends the report to an agency from its category's routing list (optionally moving it to
    /// another category first); starts the SLA clock.
    pub async fn disposition(
        &self,
        user: &StaffUser,
        ticket: &str,
        agency: &str,
        category: Option<&str>,
        note: Option<&str>,
    ) -> Result<ReportRow, DeskError> {
        let mut tx = self.store.begin().await?;
        let before = self
            .load_for(&mut tx, user, ticket, Action::Disposition)
            .await?;
        let mut r = before.clone();
        let to = domain::next_status(before.status()?, Action::Disposition, true)?;
        if let Some(c) = category.map(str::trim).filter(|c| !c.is_empty()) {
            self.cfg
                .desk
                .category(c)
                .ok_or_else(|| invalid("category", format!("Kategori {c:?} tidak dikenal")))?;
            r.category_id = c.into();
        }
        let cat = self.cfg.desk.category(&r.category_id).ok_or_else(|| {
            invalid(
                "category",
                format!("Kategori {:?} tidak dikenal", r.category_id),
            )
        })?;
        let agency = agency.trim();
        if !cat.agencies.iter().any(|a| a == agency) {
            let allowed: Vec<String> = cat.agencies.iter().map(|a| self.agency_name(a)).collect();
            return Err(invalid(
                "agency",
                format!(
                    "Kategori {} didisposisikan ke: {}",
                    cat.name,
                    allowed.join(", ")
                ),
            ));
        }
        let now = self.clock.now();
        r.status = to.as_str().into();
        if r.agency_id.as_deref() != Some(agency) {
            // A different agency: its officers pick it up afresh.
            r.officer_id = None;
        }
        r.agency_id = Some(agency.into());
        r.verified_at = r.verified_at.or(Some(now));
        r.dispositioned_at = Some(now);
        r.due_at = Some(domain::due_at(now, cat.sla_hours));
        r.operator_id = r.operator_id.or(Some(user.id));
        self.save(
            &mut tx,
            &Actor::Staff(user.clone()),
            "disposition",
            &before,
            &mut r,
        )
        .await?;
        if let Some(n) = note.map(str::trim).filter(|n| !n.is_empty()) {
            let n = bounded("note", n, 1, 2000, "Catatan")?;
            store::insert_message(&mut tx, r.id, now, "operator", Some(user.id), "note", &n)
                .await?;
        }
        tx.commit().await?;
        self.after_commit("status", &r, None);
        Ok(r)
    }

    /// The agency's answer: the report turns yellow.
    pub async fn answer(
        &self,
        user: &StaffUser,
        ticket: &str,
        text: &str,
    ) -> Result<ReportRow, DeskError> {
        let text = bounded("text", text, 5, 4000, "Jawaban")?;
        let mut tx = self.store.begin().await?;
        let before = self.load_for(&mut tx, user, ticket, Action::Answer).await?;
        let mut r = moved(&before, Action::Answer, true)?;
        let now = self.clock.now();
        r.answered_at = Some(now);
        r.officer_id = r.officer_id.or(Some(user.id));
        let actor = Actor::Staff(user.clone());
        self.save(&mut tx, &actor, "answer", &before, &mut r)
            .await?;
        store::insert_message(&mut tx, r.id, now, "agency", Some(user.id), "answer", &text).await?;
        tx.commit().await?;
        self.after_commit("status", &r, None);
        Ok(r)
    }

    /// Shared by every confirmation path: green when satisfied, else back to the agency with a
    /// fresh due time and the reason on the thread.
    async fn confirm_in(
        &self,
        tx: &mut Tx,
        actor: &Actor,
        before: ReportRow,
        satisfied: bool,
        text: &str,
    ) -> Result<ReportRow, DeskError> {
        let action = match actor {
            Actor::Staff(_) => Action::ConfirmCctv,
            _ => Action::ConfirmReporter,
        };
        let mut r = moved(&before, action, satisfied)?;
        let now = self.clock.now();
        if satisfied {
            r.closed_at = Some(now);
        } else {
            let sla = self
                .cfg
                .desk
                .category(&r.category_id)
                .map(|c| c.sla_hours)
                .unwrap_or(72);
            r.due_at = Some(domain::due_at(now, sla));
            r.answered_at = None;
        }
        let name = if satisfied {
            "confirm_satisfied"
        } else {
            "confirm_unsatisfied"
        };
        self.save(tx, actor, name, &before, &mut r).await?;
        let text = text.trim();
        let (author, uid) = match actor {
            Actor::Staff(u) => ("operator", Some(u.id)),
            _ => ("reporter", None),
        };
        let body = match (satisfied, text.is_empty()) {
            (true, true) => "Dikonfirmasi selesai.".to_string(),
            (true, false) => format!("Dikonfirmasi selesai. {text}"),
            (false, true) => "Belum puas dengan jawaban; dikembalikan ke OPD.".to_string(),
            (false, false) => format!("Belum puas: {text}"),
        };
        let body: String = body.chars().take(2000).collect();
        store::insert_message(tx, r.id, now, author, uid, "chat", &body).await?;
        Ok(r)
    }

    /// The operator confirms a camera report in place of a reporter.
    pub async fn confirm_cctv(
        &self,
        user: &StaffUser,
        ticket: &str,
        satisfied: bool,
        text: &str,
    ) -> Result<ReportRow, DeskError> {
        let mut tx = self.store.begin().await?;
        let before = self
            .load_for(&mut tx, user, ticket, Action::ConfirmCctv)
            .await?;
        if before.source()? != Source::Cctv {
            return Err(DeskError::Forbidden);
        }
        let r = self
            .confirm_in(
                &mut tx,
                &Actor::Staff(user.clone()),
                before,
                satisfied,
                text,
            )
            .await?;
        tx.commit().await?;
        self.after_commit("status", &r, None);
        Ok(r)
    }

    /// The reporter, proving themselves with the PIN from the receipt.
    async fn check_pin(&self, r: &ReportRow, pin: &str) -> Result<(), DeskError> {
        let key = format!("pin:{}", r.ticket);
        let now = self.clock.now();
        self.pin_limiter
            .check(&key, now)
            .map_err(DeskError::RateLimited)?;
        let ok = match &r.pin_hash {
            Some(h) => verify_blocking(pin.trim().to_string(), h.clone()).await?,
            None => false,
        };
        if ok {
            self.pin_limiter.clear(&key);
            Ok(())
        } else {
            self.pin_limiter.fail(&key, now);
            Err(invalid("pin", "PIN tidak cocok dengan tiket ini"))
        }
    }

    pub async fn confirm_with_pin(
        &self,
        ticket: &str,
        pin: &str,
        satisfied: bool,
        text: &str,
    ) -> Result<ReportRow, DeskError> {
        let mut tx = self.store.begin().await?;
        let before = self.load(&mut tx, ticket).await?;
        self.check_pin(&before, pin).await?;
        let r = self
            .confirm_in(
                &mut tx,
                &Actor::Reporter(Source::Web),
                before,
                satisfied,
                text,
            )
            .await?;
        tx.commit().await?;
        self.after_commit("status", &r, None);
        Ok(r)
    }

    pub async fn reporter_message(
        &self,
        ticket: &str,
        pin: &str,
        text: &str,
    ) -> Result<(), DeskError> {
        let text = bounded("text", text, 1, 2000, "Pesan")?;
        let mut tx = self.store.begin().await?;
        let r = self.load(&mut tx, ticket).await?;
        self.check_pin(&r, pin).await?;
        domain::next_status(r.status()?, Action::Message, true)?;
        let now = self.clock.now();
        store::insert_message(&mut tx, r.id, now, "reporter", None, "chat", &text).await?;
        self.audit(
            &mut tx,
            &Actor::Reporter(Source::Web),
            "message",
            "report",
            &r.ticket,
            None,
            Some(serde_json::json!({ "kind": "chat", "body": text })),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A staff message on the thread (`internal`: a note only staff see).
    pub async fn staff_message(
        &self,
        user: &StaffUser,
        ticket: &str,
        text: &str,
        internal: bool,
    ) -> Result<(), DeskError> {
        let text = bounded("text", text, 1, 2000, "Pesan")?;
        let action = if internal {
            Action::Note
        } else {
            Action::Message
        };
        let mut tx = self.store.begin().await?;
        let r = self.load_for(&mut tx, user, ticket, action).await?;
        domain::next_status(r.status()?, action, true)?;
        let author = if user.role == Role::Agency {
            "agency"
        } else {
            "operator"
        };
        let kind = if internal { "note" } else { "chat" };
        let now = self.clock.now();
        store::insert_message(&mut tx, r.id, now, author, Some(user.id), kind, &text).await?;
        self.audit(
            &mut tx,
            &Actor::Staff(user.clone()),
            "message",
            "report",
            &r.ticket,
            None,
            Some(serde_json::json!({ "kind": kind, "body": text })),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Takes the report as one's own: operators as the operator in charge, officers as the
    /// officer in charge.
    pub async fn claim(&self, user: &StaffUser, ticket: &str) -> Result<ReportRow, DeskError> {
        let mut tx = self.store.begin().await?;
        let before = self.load_for(&mut tx, user, ticket, Action::Claim).await?;
        domain::next_status(before.status()?, Action::Claim, true)?;
        let mut r = before.clone();
        match user.role {
            Role::Agency => r.officer_id = Some(user.id),
            _ => r.operator_id = Some(user.id),
        }
        self.save(
            &mut tx,
            &Actor::Staff(user.clone()),
            "claim",
            &before,
            &mut r,
        )
        .await?;
        tx.commit().await?;
        Ok(r)
    }

    // ------------------------------------------------------------------------------------------
    // Reading

    pub async fn report_for_staff(
        &self,
        user: &StaffUser,
        ticket: &str,
    ) -> Result<ReportView, DeskError> {
        let mut c = self.store.pool().acquire().await?;
        let r = store::report_by_ticket(&mut c, &normalise_ticket(ticket))
            .await?
            .ok_or(DeskError::NotFound)?;
        if !self.can_see(user, &r) {
            return Err(DeskError::NotFound);
        }
        let mut view = self.view_of(&mut c, r).await?;
        if !user.role.sees_contact() {
            view.report.phone = None;
        }
        view.audit =
            store::audit_list(&mut c, Some(("report", &view.report.ticket)), 500, 0).await?;
        view.names = store::user_names(&mut c).await?.into_iter().collect();
        Ok(view)
    }

    /// What the public tracker may show (the caller strips personal data; see web::public).
    pub async fn report_for_public(&self, ticket: &str) -> Result<ReportView, DeskError> {
        let mut c = self.store.pool().acquire().await?;
        let r = store::report_by_ticket(&mut c, &normalise_ticket(ticket))
            .await?
            .ok_or(DeskError::NotFound)?;
        let mut view = self.view_of(&mut c, r).await?;
        view.report.phone = None;
        view.report.pin_hash = None;
        view.messages.retain(|m| m.kind != "note");
        view.operator = None;
        view.officer = None;
        Ok(view)
    }

    async fn view_of(
        &self,
        c: &mut sqlx::AnyConnection,
        r: ReportRow,
    ) -> Result<ReportView, DeskError> {
        let attachments = store::attachments_of(c, r.id).await?;
        let messages = store::messages_of(c, r.id).await?;
        let merged = store::merged_into(c, r.id).await?;
        let merged_into = match r.merged_into {
            Some(id) => store::report_by_id(c, id).await?.map(|t| t.ticket),
            None => None,
        };
        let name_of = |u: Option<UserRow>| u.map(|u| u.display_name);
        let operator = match r.operator_id {
            Some(id) => name_of(store::user_by_id(c, id).await?),
            None => None,
        };
        let officer = match r.officer_id {
            Some(id) => name_of(store::user_by_id(c, id).await?),
            None => None,
        };
        Ok(ReportView {
            status: r.status()?,
            source: r.source()?,
            report: r,
            attachments,
            messages,
            merged,
            merged_into,
            audit: Vec::new(),
            names: BTreeMap::new(),
            operator,
            officer,
        })
    }

    pub async fn list(
        &self,
        user: &StaffUser,
        mut filter: ReportFilter,
    ) -> Result<(Vec<ReportRow>, i64), DeskError> {
        if user.role == Role::Agency {
            filter.scope_agency = Some(user.agency_id.clone().unwrap_or_default());
        }
        let mut c = self.store.pool().acquire().await?;
        let (mut rows, total) = store::list_reports(&mut c, &filter).await?;
        if !user.role.sees_contact() {
            for r in &mut rows {
                r.phone = None;
            }
        }
        Ok((rows, total))
    }

    /// An attachment, if `user` may see its report.
    pub async fn attachment(
        &self,
        user: &StaffUser,
        id: i64,
    ) -> Result<(AttachmentMeta, Vec<u8>), DeskError> {
        let mut c = self.store.pool().acquire().await?;
        let (meta, bytes) = store::attachment_bytes(&mut c, id)
            .await?
            .ok_or(DeskError::NotFound)?;
        let r = store::report_by_id(&mut c, meta.report_id)
            .await?
            .ok_or(DeskError::NotFound)?;
        if !self.can_see(user, &r) {
            return Err(DeskError::NotFound);
        }
        Ok((meta, bytes))
    }

    pub async fn dashboard(
        &self,
        user: &StaffUser,
        since: Option<i64>,
    ) -> Result<Dashboard, DeskError> {
        let scope = match user.role {
            Role::Agency => Some(user.agency_id.clone().unwrap_or_default()),
            _ => None,
        };
        let now = self.clock.now();
        let mut c = self.store.pool().acquire().await?;
        let rows = store::stats(&mut c, now, scope.as_deref(), since).await?;
        let mut d = Dashboard::default();
        let mut cats: BTreeMap<String, GroupStat> = BTreeMap::new();
        let mut ags: BTreeMap<String, GroupStat> = BTreeMap::new();
        for row in rows {
            let status: Status = row
                .status
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("{e}")))?;
            d.total += row.n;
            match status.colour() {
                Colour::Red => d.red += row.n,
                Colour::Yellow => d.yellow += row.n,
                Colour::Green => d.green += row.n,
                Colour::Grey => d.grey += row.n,
            }
            if status.is_open() {
                d.open += row.n;
            } else if status == Status::Done {
                d.done += row.n;
            } else {
                d.closed_other += row.n;
            }
            d.overdue += row.overdue;
            d.sla_on_time += row.on_time;
            d.sla_judged += row.answered + row.overdue;
            let add = |g: &mut GroupStat| {
                g.total += row.n;
                if status.is_open() {
                    g.open += row.n;
                }
                if status == Status::Done {
                    g.done += row.n;
                }
                g.overdue += row.overdue;
                g.on_time += row.on_time;
                g.answered += row.answered;
            };
            add(cats.entry(row.category_id.clone()).or_default());
            if let Some(a) = &row.agency_id {
                add(ags.entry(a.clone()).or_default());
            }
        }
        if d.sla_judged > 0 {
            d.sla_compliance = Some(100.0 * d.sla_on_time as f64 / d.sla_judged as f64);
        }
        // Config order (the order people know), then anything no longer configured.
        for c in &self.cfg.desk.categories {
            if let Some(mut g) = cats.remove(&c.id) {
                g.id = c.id.clone();
                g.name = c.name.clone();
                d.by_category.push(g);
            }
        }
        for (id, mut g) in cats {
            g.name = id.clone();
            g.id = id;
            d.by_category.push(g);
        }
        for a in &self.cfg.desk.agencies {
            if let Some(mut g) = ags.remove(&a.id) {
                g.id = a.id.clone();
                g.name = a.name.clone();
                d.by_agency.push(g);
            }
        }
        for (id, mut g) in ags {
            g.name = id.clone();
            g.id = id;
            d.by_agency.push(g);
        }
        let (_, n) = store::list_reports(
            &mut c,
            &ReportFilter {
                source: Some(Source::Cctv),
                scope_agency: scope.clone(),
                created_since: since,
                limit: 1,
                ..Default::default()
            },
        )
        .await?;
        d.by_source.insert("cctv".into(), n);
        Ok(d)
    }

    pub async fn overdue(&self, user: &StaffUser, limit: i64) -> Result<Vec<ReportRow>, DeskError> {
        let f = ReportFilter {
            overdue_at: Some(self.clock.now()),
            limit,
            ..Default::default()
        };
        Ok(self.list(user, f).await?.0)
    }

    pub async fn cctv_feed(
        &self,
        user: &StaffUser,
        limit: i64,
    ) -> Result<Vec<(ReportRow, Option<i64>)>, DeskError> {
        let scope = match user.role {
            Role::Agency => Some(user.agency_id.clone().unwrap_or_default()),
            _ => None,
        };
        let mut c = self.store.pool().acquire().await?;
        Ok(store::latest_cctv(&mut c, limit, scope.as_deref()).await?)
    }

    pub async fn audit_log(
        &self,
        user: &StaffUser,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<AuditRow>, DeskError> {
        if !matches!(user.role, Role::Admin | Role::Operator) {
            return Err(DeskError::Forbidden);
        }
        let mut c = self.store.pool().acquire().await?;
        Ok(store::audit_list(&mut c, None, limit, offset).await?)
    }

    /// Account id -> display name (staff only).
    pub async fn user_names(&self, user: &StaffUser) -> Result<BTreeMap<i64, String>, DeskError> {
        if !matches!(user.role, Role::Admin | Role::Operator) {
            return Err(DeskError::Forbidden);
        }
        let mut c = self.store.pool().acquire().await?;
        Ok(store::user_names(&mut c).await?.into_iter().collect())
    }

    pub async fn dead_letters(
        &self,
        user: &StaffUser,
        limit: i64,
    ) -> Result<Vec<store::DeadLetterRow>, DeskError> {
        if !matches!(user.role, Role::Admin | Role::Operator) {
            return Err(DeskError::Forbidden);
        }
        let mut c = self.store.pool().acquire().await?;
        Ok(store::dead_letters(&mut c, limit).await?)
    }

    // ------------------------------------------------------------------------------------------
    // Accounts and sessions

    /// Creates an account; `by` is the admin doing it (`None` from the command line).
    pub async fn create_user(
        &self,
        by: Option<&StaffUser>,
        username: &str,
        display_name: &str,
        role: Role,
        agency: Option<&str>,
        password: &str,
    ) -> Result<StaffUser, DeskError> {
        if let Some(u) = by {
            if u.role != Role::Admin {
                return Err(DeskError::Forbidden);
            }
        }
        let username = username.trim().to_lowercase();
        let mut errs = Vec::new();
        let name_ok = (3..=32).contains(&username.len())
            && username
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if !name_ok {
            errs.push(FieldError {
                field: "username",
                message: "3 sampai 32 karakter: huruf kecil, angka, titik, minus, garis bawah"
                    .into(),
            });
        }
        let display = display_name.trim();
        let display = if display.is_empty() {
            username.clone()
        } else {
            display.to_string()
        };
        if display.chars().count() > 100 {
            errs.push(FieldError {
                field: "display_name",
                message: "maksimal 100 karakter".into(),
            });
        }
        let agency = agency.map(str::trim).filter(|a| !a.is_empty());
        match (role, agency) {
            (Role::Agency, None) => errs.push(FieldError {
                field: "agency",
                message: "akun petugas OPD harus terikat pada satu OPD".into(),
            }),
            (Role::Agency, Some(a)) if self.cfg.desk.agency(a).is_none() => errs.push(FieldError {
                field: "agency",
                message: format!("OPD {a:?} tidak dikenal"),
            }),
            (Role::Admin | Role::Operator | Role::Viewer, Some(_)) => errs.push(FieldError {
                field: "agency",
                message: "hanya akun petugas OPD yang terikat pada OPD".into(),
            }),
            _ => {}
        }
        if password.chars().count() < 10 {
            errs.push(FieldError {
                field: "password",
                message: "kata sandi minimal 10 karakter".into(),
            });
        }
        if !errs.is_empty() {
            return Err(DeskError::Invalid(errs));
        }
        let hash = hash_blocking(password.to_string()).await?;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        if store::user_by_name(&mut tx, &username).await?.is_some() {
            return Err(invalid(
                "username",
                format!("nama akun {username:?} sudah dipakai"),
            ));
        }
        let id = store::insert_user(&mut tx, &username, &display, role, agency, &hash, now).await?;
        let actor = by.cloned().map(Actor::Staff).unwrap_or(Actor::System);
        self.audit(
            &mut tx,
            &actor,
            "user_create",
            "user",
            &username,
            None,
            Some(serde_json::json!({
                "display_name": display, "role": role.as_str(), "agency_id": agency, "active": true
            })),
        )
        .await?;
        tx.commit().await?;
        Ok(StaffUser {
            id,
            username,
            display_name: display,
            role,
            agency_id: agency.map(str::to_string),
        })
    }

    pub async fn users(&self, by: &StaffUser) -> Result<Vec<UserRow>, DeskError> {
        if by.role != Role::Admin {
            return Err(DeskError::Forbidden);
        }
        let mut c = self.store.pool().acquire().await?;
        Ok(store::users(&mut c).await?)
    }

    /// Open reports a user is in charge of.
    pub async fn open_items_of(
        &self,
        by: &StaffUser,
        username: &str,
    ) -> Result<Vec<ReportRow>, DeskError> {
        if by.role != Role::Admin {
            return Err(DeskError::Forbidden);
        }
        let mut c = self.store.pool().acquire().await?;
        let u = store::user_by_name(&mut c, username)
            .await?
            .ok_or(DeskError::NotFound)?;
        Ok(store::open_items_of(&mut c, u.id).await?)
    }

    /// Deactivates an account (its sessions end at once) and hands its open reports to
    /// `reassign_to`, or back to the shared queue when none is given.
    pub async fn deactivate_user(
        &self,
        admin: &StaffUser,
        username: &str,
        reassign_to: Option<&str>,
    ) -> Result<usize, DeskError> {
        if admin.role != Role::Admin {
            return Err(DeskError::Forbidden);
        }
        let mut tx = self.store.begin().await?;
        let u = store::user_by_name(&mut tx, &username.trim().to_lowercase())
            .await?
            .ok_or(DeskError::NotFound)?;
        if u.id == admin.id {
            return Err(invalid(
                "username",
                "tidak dapat menonaktifkan akun sendiri",
            ));
        }
        if u.active == 0 {
            return Err(invalid("username", "akun sudah nonaktif"));
        }
        let target = match reassign_to.map(str::trim).filter(|t| !t.is_empty()) {
            Some(t) => {
                let t = store::user_by_name(&mut tx, &t.to_lowercase())
                    .await?
                    .filter(|t| t.active == 1)
                    .ok_or_else(|| {
                        invalid("reassign_to", format!("akun aktif {t:?} tidak ditemukan"))
                    })?;
                if t.id == u.id {
                    return Err(invalid("reassign_to", "pilih akun lain"));
                }
                Some(t)
            }
            None => None,
        };
        let now = self.clock.now();
        store::set_user_active(&mut tx, u.id, false, now).await?;
        store::delete_sessions_of(&mut tx, u.id).await?;
        let actor = Actor::Staff(admin.clone());
        self.audit(
            &mut tx,
            &actor,
            "user_deactivate",
            "user",
            &u.username,
            Some(serde_json::json!({ "active": true })),
            Some(serde_json::json!({ "active": false })),
        )
        .await?;
        let items = store::open_items_of(&mut tx, u.id).await?;
        let n = items.len();
        for before in items {
            let mut r = before.clone();
            let target_role = target.as_ref().map(|t| t.role()).transpose()?;
            if r.operator_id == Some(u.id) {
                r.operator_id = match (&target, target_role) {
                    (Some(t), Some(Role::Admin | Role::Operator)) => Some(t.id),
                    (Some(t), _) => {
                        return Err(invalid(
                            "reassign_to",
                            format!(
                                "{} bukan operator; laporan {} perlu operator",
                                t.username, r.ticket
                            ),
                        ))
                    }
                    (None, _) => None,
                };
            }
            if r.officer_id == Some(u.id) {
                r.officer_id = match (&target, target_role) {
                    (Some(t), Some(Role::Agency)) if t.agency_id == r.agency_id => Some(t.id),
                    (Some(t), _) => {
                        return Err(invalid(
                            "reassign_to",
                            format!(
                                "{} bukan petugas {}; laporan {} perlu petugas OPD yang sama",
                                t.username,
                                r.agency_id
                                    .as_deref()
                                    .map(|a| self.agency_name(a))
                                    .unwrap_or_default(),
                                r.ticket
                            ),
                        ))
                    }
                    (None, _) => None,
                };
            }
            self.save(&mut tx, &actor, "reassign", &before, &mut r)
                .await?;
        }
        tx.commit().await?;
        tracing::info!(user = %u.username, reassigned = n, "account deactivated");
        Ok(n)
    }

    /// Checks a login. Returns the session token (for the cookie), its CSRF token and the user.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        client: &str,
    ) -> Result<(String, String, StaffUser), DeskError> {
        let now = self.clock.now();
        let name = username.trim().to_lowercase();
        let keys = [format!("user:{name}"), format!("ip:{client}")];
        for k in &keys {
            self.login_limiter
                .check(k, now)
                .map_err(DeskError::RateLimited)?;
        }
        let mut c = self.store.pool().acquire().await?;
        let user = store::user_by_name(&mut c, &name).await?;
        drop(c);
        let hash = user
            .as_ref()
            .filter(|u| u.active == 1)
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| auth::dummy_hash().to_string());
        let ok = verify_blocking(password.to_string(), hash).await?
            && user.as_ref().is_some_and(|u| u.active == 1);
        let mut tx = self.store.begin().await?;
        let Some(user) = user.filter(|_| ok) else {
            for k in &keys {
                self.login_limiter.fail(k, now);
            }
            self.audit(
                &mut tx,
                &Actor::System,
                "login_failed",
                "user",
                &name,
                None,
                Some(serde_json::json!({ "client": client })),
            )
            .await?;
            tx.commit().await?;
            return Err(invalid("password", "nama akun atau kata sandi salah"));
        };
        self.login_limiter.clear(&keys[0]);
        let staff = StaffUser::from_row(&user)?;
        let token = auth::random_token();
        let csrf = auth::random_token();
        let expires = now + i64::from(self.cfg.desk.session_hours) * 3600;
        store::purge_sessions(&mut tx, now).await?;
        store::insert_session(
            &mut tx,
            &auth::token_hash(&token),
            user.id,
            &csrf,
            now,
            expires,
        )
        .await?;
        self.audit(
            &mut tx,
            &Actor::Staff(staff.clone()),
            "login",
            "user",
            &staff.username,
            None,
            Some(serde_json::json!({ "client": client })),
        )
        .await?;
        tx.commit().await?;
        Ok((token, csrf, staff))
    }

    /// The user and CSRF token behind a session cookie's token.
    pub async fn session(&self, token: &str) -> Result<Option<(StaffUser, String)>, DeskError> {
        let mut c = self.store.pool().acquire().await?;
        match store::session(&mut c, &auth::token_hash(token), self.clock.now()).await? {
            Some((u, csrf)) => Ok(Some((StaffUser::from_row(&u)?, csrf))),
            None => Ok(None),
        }
    }

    pub async fn logout(&self, token: &str) -> Result<(), DeskError> {
        let mut c = self.store.pool().acquire().await?;
        store::delete_session(&mut c, &auth::token_hash(token)).await?;
        Ok(())
    }

    /// Sets a new password (used by the demo accounts and the CLI).
    pub async fn set_password(&self, username: &str, password: &str) -> Result<(), DeskError> {
        let hash = hash_blocking(password.to_string()).await?;
        let mut tx = self.store.begin().await?;
        let u = store::user_by_name(&mut tx, username)
            .await?
            .ok_or(DeskError::NotFound)?;
        store::set_user_password(&mut tx, u.id, &hash).await?;
        self.audit(
            &mut tx,
            &Actor::System,
            "password_set",
            "user",
            username,
            None,
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Changed fields only, as JSON objects (before, after); the change stamp itself is left out.
pub(crate) fn diff(
    before: &ReportRow,
    after: &ReportRow,
) -> (Option<serde_json::Value>, Option<serde_json::Value>) {
    let (Ok(serde_json::Value::Object(b)), Ok(serde_json::Value::Object(a))) =
        (serde_json::to_value(before), serde_json::to_value(after))
    else {
        return (None, None);
    };
    let mut bo = serde_json::Map::new();
    let mut ao = serde_json::Map::new();
    for (k, av) in &a {
        if k == "updated_at" {
            continue;
        }
        let bv = b.get(k).cloned().unwrap_or(serde_json::Value::Null);
        if &bv != av {
            bo.insert(k.clone(), bv);
            ao.insert(k.clone(), av.clone());
        }
    }
    (
        Some(serde_json::Value::Object(bo)),
        Some(serde_json::Value::Object(ao)),
    )
}

pub(crate) fn blank_report(ticket: &str, source: Source, now: i64) -> ReportRow {
    ReportRow {
        id: 0,
        ticket: ticket.into(),
        source: source.as_str().into(),
        status: Status::Received.as_str().into(),
        category_id: String::new(),
        title: String::new(),
        description: String::new(),
        address: String::new(),
        lat: None,
        lon: None,
        phone: None,
        pin_hash: None,
        agency_id: None,
        operator_id: None,
        officer_id: None,
        merged_into: None,
        reject_reason: None,
        incident_id: None,
        incident_seq: None,
        incident_kind: None,
        level: None,
        site_id: None,
        site_name: None,
        camera: None,
        evidence: None,
        incident_started_at: None,
        cleared_at: None,
        created_at: now,
        updated_at: now,
        verified_at: None,
        dispositioned_at: None,
        due_at: None,
        answered_at: None,
        closed_at: None,
        version: 0,
    }
}

fn bounded(
    field: &'static str,
    v: &str,
    min: usize,
    max: usize,
    what: &str,
) -> Result<String, DeskError> {
    let v = v.trim();
    let n = v.chars().count();
    if n == 0 {
        return Err(invalid(field, format!("{what} wajib diisi")));
    }
    if n < min || n > max {
        return Err(invalid(
            field,
            format!("{what} harus {min} sampai {max} karakter (sekarang {n})"),
        ));
    }
    Ok(v.to_string())
}

/// Tickets are matched upper-case and trimmed, as people type them.
pub fn normalise_ticket(t: &str) -> String {
    t.trim().to_uppercase()
}

/// `+62 812-3456-7890` → `+6281234567890`; None unless 8 to 15 digits (with an optional +).
pub fn normalise_phone(p: &str) -> Option<String> {
    let p = p.trim();
    if p.is_empty() {
        return None;
    }
    let (plus, rest) = match p.strip_prefix('+') {
        Some(r) => ("+", r),
        None => ("", p),
    };
    let digits: String = rest
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    (digits.chars().all(|c| c.is_ascii_digit()) && (8..=15).contains(&digits.len()))
        .then(|| format!("{plus}{digits}"))
}

pub fn sha256_hex(b: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(b))
}

async fn hash_blocking(secret: String) -> Result<String, DeskError> {
    tokio::task::spawn_blocking(move || auth::hash_password(&secret))
        .await
        .map_err(|e| DeskError::Internal(e.to_string()))?
        .map_err(DeskError::from)
}

async fn verify_blocking(secret: String, hash: String) -> Result<bool, DeskError> {
    tokio::task::spawn_blocking(move || auth::verify_password(&secret, &hash))
        .await
        .map_err(|e| DeskError::Internal(e.to_string()))
}

/// A copy of `before` moved to the status `action` leads to (`satisfied` for confirmations);
/// an error when the workflow does not allow `action` from its status.
fn moved(before: &ReportRow, action: Action, satisfied: bool) -> Result<ReportRow, DeskError> {
    let mut r = before.clone();
    r.status = domain::next_status(before.status()?, action, satisfied)?
        .as_str()
        .into();
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones() {
        let cases = [
            ("081234567890", Some("081234567890")),
            ("+62 812-3456-7890", Some("+6281234567890")),
            ("(0711) 352.000", Some("0711352000")),
            ("1234567", None),
            ("1234567890123456", None),
            ("12345678", Some("12345678")),
            ("", None),
            ("   ", None),
            ("0812abc4567", None),
            ("++62812345678", None),
            ("'; DROP TABLE reports; --", None),
        ];
        for (p, want) in cases {
            assert_eq!(normalise_phone(p).as_deref(), want, "{p:?}");
        }
    }

    #[test]
    fn diff_keeps_changed_fields_only() {
        let a = blank_report("PLG-A", Source::Web, 10);
        let mut b = a.clone();
        b.status = "verified".into();
        b.updated_at = 99;
        b.verified_at = Some(50);
        let (before, after) = diff(&a, &b);
        assert_eq!(
            before,
            Some(serde_json::json!({"status": "received", "verified_at": null}))
        );
        assert_eq!(
            after,
            Some(serde_json::json!({"status": "verified", "verified_at": 50}))
        );
        let (before, after) = diff(&a, &a);
        assert_eq!(before, Some(serde_json::json!({})));
        assert_eq!(after, Some(serde_json::json!({})));
    }

    #[test]
    fn tickets_normalise() {
        assert_eq!(normalise_ticket("  plg-abc  "), "PLG-ABC");
        assert_eq!(normalise_ticket(""), "");
    }

    #[test]
    fn clock_advances() {
        let c = Clock::default();
        let t = c.now();
        c.advance(3600);
        assert!(c.now() >= t + 3600);
    }
}
