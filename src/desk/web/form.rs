//! The citizen form as it arrives (multipart: text fields and an optional photo), read into a
//! [`NewReport`] for the pages and the JSON API alike.

use axum::extract::Multipart;
use axum::http::StatusCode;

use crate::desk::error::{DeskError, FieldError};
use crate::desk::workflow::NewReport;

/// A citizen form that could not be taken, with what was read of it (to show it again).
pub(crate) struct FormError {
    pub error: DeskError,
    pub partial: NewReport,
}

/// Reads the citizen form (multipart) into a report. A photo over the limit is read to the
/// end of the request (which the body limit keeps bounded) and dropped, so the client gets a
/// clean 413 instead of a connection cut mid-upload; the other fields are kept for the form.
pub(crate) async fn read_report_form(
    mut mp: Multipart,
    max_photo: usize,
) -> Result<NewReport, FormError> {
    let mut r = NewReport::default();
    let mut errs: Vec<FieldError> = Vec::new();
    let mut lat = String::new();
    let mut lon = String::new();
    let mut too_large = false;
    let unreadable = |field: &'static str, e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            DeskError::TooLarge { max: max_photo }
        } else {
            DeskError::Invalid(vec![FieldError {
                field,
                message: format!("formulir tidak terbaca: {}", e.body_text()),
            }])
        }
    };
    loop {
        let mut field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                return Err(FormError {
                    error: unreadable("form", e),
                    partial: r,
                })
            }
        };
        let name = field.name().unwrap_or_default().to_string();
        if name == "photo" {
            let has_name = field.file_name().is_some_and(|n| !n.is_empty());
            let mut bytes = Vec::new();
            loop {
                match field.chunk().await {
                    Ok(Some(c)) => {
                        if too_large || bytes.len() + c.len() > max_photo {
                            too_large = true;
                            bytes = Vec::new();
                        } else {
                            bytes.extend_from_slice(&c);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        return Err(FormError {
                            error: unreadable("photo", e),
                            partial: r,
                        })
                    }
                }
            }
            // A file input left empty still sends a part, without a name or bytes.
            if !too_large && (has_name || !bytes.is_empty()) {
                r.photo = Some(bytes);
            }
            continue;
        }
        let text = match field.text().await {
            Ok(t) => t,
            Err(e) => {
                return Err(FormError {
                    error: unreadable("form", e),
                    partial: r,
                })
            }
        };
        match name.as_str() {
            "title" => r.title = text,
            "description" => r.description = text,
            "category" => r.category = text,
            "address" => r.address = text,
            "phone" => r.phone = Some(text).filter(|p| !p.trim().is_empty()),
            "lat" => lat = text,
            "lon" => lon = text,
            _ => {}
        }
    }
    let mut coord = |field: &'static str, s: &str| -> Option<f64> {
        let s = s.trim();
        if s.is_empty() {
            return None;
        }
        match s.replace(',', ".").parse::<f64>() {
            Ok(v) => Some(v),
            Err(_) => {
                errs.push(FieldError {
                    field,
                    message: format!("{s:?} bukan angka"),
                });
                Some(f64::NAN)
            }
        }
    };
    r.lat = coord("lat", &lat);
    r.lon = coord("lon", &lon);
    if too_large {
        return Err(FormError {
            error: DeskError::TooLarge { max: max_photo },
            partial: r,
        });
    }
    if !errs.is_empty() {
        return Err(FormError {
            error: DeskError::Invalid(errs),
            partial: r,
        });
    }
    Ok(r)
}
