//! The citizens' side: reports filed from the web form and by SMS, and the SMS commands
//! (`LAPOR`, `CEK`, `PUAS`, `TIDAK PUAS`; the language itself is [`crate::desk::sms`]).
//! Citizens' other steps (confirming with the PIN, chat) are in [`super::Workflow`].

use serde::Serialize;

use super::steps::Confirm;
use super::transition::By;
use super::Workflow;
use crate::config::DeskConfig;
use crate::desk::auth;
use crate::desk::core::Actor;
use crate::desk::domain::{Source, Status};
use crate::desk::error::{invalid, DeskError, FieldError};
use crate::desk::input::normalise_phone;
use crate::desk::photo::{self, sha256_hex, PhotoError};
use crate::desk::sms;
use crate::desk::store::{self, ReportRow};

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

impl Workflow {
    /// Files a citizen's report from the web form; returns the ticket and the reporter's PIN.
    pub async fn create_web_report(&self, input: NewReport) -> Result<Created, DeskError> {
        let core = &*self.core;
        let photo = check_new(&input, &core.cfg.desk)?;
        if let Some(phone) = input.phone.as_deref().and_then(normalise_phone) {
            self.phone_rate(&phone)?;
        }
        let pin = auth::random_pin();
        let pin_hash = core.hasher.hash(pin.clone()).await?;
        let now = core.clock.now();
        let mut tx = core.store.begin().await?;
        let ticket = core.new_ticket(&mut tx).await?;
        let mut r = ReportRow::blank(&ticket, Source::Web, now);
        r.category_id = input.category.trim().to_string();
        r.title = input.title.trim().to_string();
        r.description = input.description.trim().to_string();
        r.address = input.address.trim().to_string();
        r.lat = input.lat;
        r.lon = input.lon;
        r.phone = input.phone.as_deref().and_then(normalise_phone);
        r.pin_hash = Some(pin_hash);
        let facts = [
            ("photo", photo.is_some().into()),
            ("phone_given", r.phone.is_some().into()),
        ];
        core.insert_new(&mut tx, &Actor::Reporter(Source::Web), &mut r, &facts)
            .await?;
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
        tx.commit().await?;
        tracing::info!(ticket = %ticket, source = "web", "report filed");
        core.after_commit("status", &r, None);
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
        self.phone_rate(&phone)?;
        match sms::parse(text) {
            sms::SmsCommand::Unknown => Ok((None, sms::USAGE.to_string())),
            sms::SmsCommand::Lapor(body) => {
                let ticket = self.create_sms_report(&phone, &body).await?;
                let url = self.core.labels.track_url(&ticket);
                let reply = sms::receipt(&ticket, url.as_deref());
                Ok((Some(ticket), reply))
            }
            sms::SmsCommand::Cek(ticket) => Ok((None, self.sms_status(&ticket, &phone).await?)),
            sms::SmsCommand::Puas(ticket) => {
                let reply = self.confirm_by_phone(&ticket, &phone, true, "").await?;
                Ok((None, reply))
            }
            sms::SmsCommand::TidakPuas { ticket, reason } => {
                let reply = self
                    .confirm_by_phone(&ticket, &phone, false, &reason)
                    .await?;
                Ok((None, reply))
            }
        }
    }

    /// `LAPOR <isi>`: a report in category `other` (the operator sorts it).
    async fn create_sms_report(&self, phone: &str, body: &str) -> Result<String, DeskError> {
        let core = &*self.core;
        let now = core.clock.now();
        let mut tx = core.store.begin().await?;
        let ticket = core.new_ticket(&mut tx).await?;
        let mut r = ReportRow::blank(&ticket, Source::Sms, now);
        r.category_id = if core.cfg.desk.category("other").is_some() {
            "other".into()
        } else {
            core.cfg
                .desk
                .categories
                .first()
                .map(|c| c.id.clone())
                .unwrap_or_default()
        };
        r.title = sms::title_from(body, 80);
        r.description = body.trim().to_string();
        r.phone = Some(phone.to_string());
        let facts = [("phone_given", true.into())];
        core.insert_new(&mut tx, &Actor::Reporter(Source::Sms), &mut r, &facts)
            .await?;
        tx.commit().await?;
        tracing::info!(ticket = %ticket, source = "sms", "report filed");
        core.after_commit("status", &r, None);
        Ok(ticket)
    }

    /// `CEK <tiket>`: the status and agency; the filing phone is told how to confirm.
    async fn sms_status(&self, ticket: &str, phone: &str) -> Result<String, DeskError> {
        let mut c = self.core.store.pool().acquire().await?;
        let Some(r) = store::report_by_ticket(&mut c, ticket).await? else {
            return Ok(sms::fit(&format!("Tiket {ticket} tidak ditemukan.")));
        };
        let s = r.status()?;
        let agency = r
            .agency_id
            .as_deref()
            .and_then(|a| self.core.cfg.desk.agency(a))
            .map(|a| format!(" ({})", a.short()))
            .unwrap_or_default();
        let hint = if s == Status::Answered && r.phone.as_deref() == Some(phone) {
            format!(
                " Balas PUAS {t} bila selesai, atau TIDAK PUAS {t} <alasan>.",
                t = r.ticket
            )
        } else {
            String::new()
        };
        Ok(sms::fit(&format!(
            "Tiket {}: {}{agency}.{hint}",
            r.ticket,
            s.label()
        )))
    }

    /// `PUAS` / `TIDAK PUAS` from the phone that filed the report; the reply says what became
    /// of it (another phone's ticket is "not found").
    async fn confirm_by_phone(
        &self,
        ticket: &str,
        phone: &str,
        satisfied: bool,
        reason: &str,
    ) -> Result<String, DeskError> {
        let step = Confirm::by_reporter(satisfied, reason);
        match self.run(By::Phone(phone), ticket, step).await {
            Ok(after) => Ok(sms::fit(&if satisfied {
                format!("Terima kasih. Tiket {} dinyatakan selesai.", after.ticket)
            } else {
                format!(
                    "Tiket {} dikembalikan ke OPD untuk ditindaklanjuti.",
                    after.ticket
                )
            })),
            Err(DeskError::NotFound) => Ok(sms::fit(&format!(
                "Tiket {ticket} tidak ditemukan untuk nomor ini."
            ))),
            Err(DeskError::NotAllowed(e)) => Ok(sms::fit(&format!(
                "Tiket {ticket} berstatus {}; belum bisa dikonfirmasi.",
                e.from.label()
            ))),
            Err(e) => Err(e),
        }
    }
}

/// Checks a citizen's report before anything is stored: every bad field named at once (a
/// photo over the size limit answers "too large" on its own). Returns the photo, sniffed.
fn check_new(
    input: &NewReport,
    cfg: &DeskConfig,
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
    match cfg.category(input.category.trim()) {
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
        if bytes.len() > cfg.max_photo_bytes {
            return Err(DeskError::TooLarge {
                max: cfg.max_photo_bytes,
            });
        }
        // What is stored is the picture without its metadata (GPS position, camera serial).
        match photo::sniff(bytes).and_then(|info| Ok((info, photo::strip_metadata(bytes)?))) {
            Ok(clean) => photo = Some(clean),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> NewReport {
        NewReport {
            title: "Lampu jalan mati".into(),
            description: "Sudah tiga malam gelap".into(),
            category: "street_lights".into(),
            address: "Jl. Merdeka".into(),
            ..Default::default()
        }
    }

    #[test]
    fn new_reports_are_checked_whole() {
        let cfg = DeskConfig::default();
        let fields = |r: NewReport| match check_new(&r, &cfg) {
            Ok(_) => Vec::new(),
            Err(DeskError::Invalid(errs)) => errs.iter().map(|e| e.field).collect(),
            Err(e) => panic!("{e}"),
        };
        assert!(fields(good()).is_empty());
        /// A change to a good report, and the fields it makes bad.
        type Case = (fn(&mut NewReport), &'static [&'static str]);
        let cases: [Case; 7] = [
            (|r| r.title = "abc".into(), &["title"]),
            (|r| r.category = "camera_fault".into(), &["category"]),
            (|r| r.category = " ".into(), &["category"]),
            (|r| r.lat = Some(1.0), &["lat"]),
            (
                |r| {
                    r.lat = Some(91.0);
                    r.lon = Some(f64::NAN);
                },
                &["lat", "lon"],
            ),
            (|r| r.phone = Some("12".into()), &["phone"]),
            (
                |r| {
                    r.title.clear();
                    r.address.clear();
                    r.photo = Some(b"not an image".to_vec());
                },
                &["title", "address", "photo"],
            ),
        ];
        for (change, want) in cases {
            let mut r = good();
            change(&mut r);
            assert_eq!(fields(r), want);
        }
        let mut big = good();
        big.photo = Some(vec![0; cfg.max_photo_bytes + 1]);
        assert!(matches!(
            check_new(&big, &cfg),
            Err(DeskError::TooLarge { .. })
        ));
    }
}
