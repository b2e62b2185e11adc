//! A QR code as an SVG image (no script, no external reference), for the store QR a
//! technician prints or a kiosk shows.

use qrcodegen::{QrCode, QrCodeEcc};

/// Why text could not be drawn as a QR code.
#[derive(Debug, thiserror::Error)]
#[error("the text is too long for a QR code ({0} bytes)")]
pub struct TooLong(pub usize);

/// `text` as a QR code in SVG, one unit per module with a four-module quiet zone.
pub fn svg(text: &str) -> Result<String, TooLong> {
    let code = QrCode::encode_text(text, QrCodeEcc::Medium).map_err(|_| TooLong(text.len()))?;
    let border = 4;
    let size = code.size() + border * 2;
    let mut path = String::new();
    for y in 0..code.size() {
        for x in 0..code.size() {
            if code.get_module(x, y) {
                path.push_str(&format!("M{},{}h1v1h-1z", x + border, y + border));
            }
        }
    }
    Ok(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" shape-rendering=\"crispEdges\"><rect width=\"100%\" height=\"100%\" fill=\"#fff\"/><path d=\"{path}\" fill=\"#000\"/></svg>"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_draws_as_a_square_svg_of_dark_modules() {
        let s = svg("https://store.example/shop/?t=abc").unwrap();
        assert!(s.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 "));
        // Version 3 (29 modules) plus the quiet zone.
        assert!(s.contains("viewBox=\"0 0 37 37\""), "{s}");
        assert!(s.matches('M').count() > 100);
        assert!(!s.contains("<script"));
    }

    #[test]
    fn text_beyond_a_qr_codes_capacity_is_refused() {
        assert!(svg(&"x".repeat(5000)).is_err());
    }
}
