//! The console's languages: which one a request gets, and numbers, money, dates and
//! durations written the way that language writes them. The words themselves are in
//! [`super::catalogue`], which adds [`Lang::t`].

use actix_web::HttpRequest;
use time::OffsetDateTime;

use crate::domain::money::{Currency, Money};

/// The cookie that keeps the language a user picked with the switch.
pub const LANG_COOKIE: &str = "outpost_lang";

/// A language the console speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// English.
    En,
    /// Russian.
    Ru,
}

impl Lang {
    /// Every language, in the order the switch shows them.
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Ru];

    /// The BCP 47 tag (`lang` attribute, cookie value).
    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ru => "ru",
        }
    }

    /// The language's own name, for the switch.
    pub fn native_name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::Ru => "Русский",
        }
    }

    /// A tag as the cookie or a form holds it; `None` for any other value.
    pub fn parse(tag: &str) -> Option<Lang> {
        let primary = tag.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        match primary.as_str() {
            "en" => Some(Lang::En),
            "ru" => Some(Lang::Ru),
            _ => None,
        }
    }

    /// The language of a request: the switch's cookie, else the best language of
    /// `Accept-Language` the console speaks, else English.
    pub fn of(req: &HttpRequest) -> Lang {
        if let Some(l) = req.cookie(LANG_COOKIE).and_then(|c| Lang::parse(c.value())) {
            return l;
        }
        req.headers()
            .get("accept-language")
            .and_then(|h| h.to_str().ok())
            .and_then(from_accept_language)
            .unwrap_or(Lang::En)
    }

    fn group_separator(self) -> char {
        match self {
            Lang::En => ',',
            // Russian groups digits with a no-break space (CLDR).
            Lang::Ru => '\u{a0}',
        }
    }

    fn decimal_separator(self) -> char {
        match self {
            Lang::En => '.',
            Lang::Ru => ',',
        }
    }

    /// An integer with the language's digit grouping: `12,345` / `12 345`.
    pub fn number(self, n: i64) -> String {
        let digits = n.unsigned_abs().to_string();
        let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
        if n < 0 {
            out.push('-');
        }
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(self.group_separator());
            }
            out.push(c);
        }
        out
    }

    /// A byte count in the largest unit that keeps it at or above 1: `1.5 GB`.
    pub fn bytes(self, n: u64) -> String {
        let units = match self {
            Lang::En => ["B", "KB", "MB", "GB", "TB"],
            Lang::Ru => ["Б", "КБ", "МБ", "ГБ", "ТБ"],
        };
        let mut value = n as f64;
        let mut unit = 0;
        while value >= 1024.0 && unit < units.len() - 1 {
            value /= 1024.0;
            unit += 1;
        }
        if unit == 0 {
            return format!("{} {}", self.number(n as i64), units[0]);
        }
        let tenths = (value * 10.0).round() as i64;
        format!(
            "{}{}{} {}",
            self.number(tenths / 10),
            self.decimal_separator(),
            tenths % 10,
            units[unit]
        )
    }

    /// An amount of `currency`: `€1,234.50` / `1 234,50 €`; codes without a sign
    /// written out (`1,234.50 CHF`).
    pub fn money(self, m: Money, currency: &Currency) -> String {
        let exponent = u32::from(currency.exponent());
        let abs = m.minor().unsigned_abs();
        let scale = 10u64.pow(exponent);
        let whole = self.number((abs / scale) as i64);
        let mut amount = if exponent == 0 {
            whole
        } else {
            format!(
                "{whole}{}{:0width$}",
                self.decimal_separator(),
                abs % scale,
                width = exponent as usize
            )
        };
        if m.is_negative() {
            amount.insert(0, '-');
        }
        let sign = match currency.code() {
            "EUR" => Some('€'),
            "USD" => Some('$'),
            "GBP" => Some('£'),
            "RUB" => Some('₽'),
            _ => None,
        };
        match (self, sign) {
            (Lang::En, Some(s)) if m.is_negative() => format!("-{s}{}", &amount[1..]),
            (Lang::En, Some(s)) => format!("{s}{amount}"),
            (Lang::Ru, Some(s)) => format!("{amount}\u{a0}{s}"),
            (_, None) => format!("{amount}\u{a0}{}", currency.code()),
        }
    }

    /// A moment in UTC: `7 Dec 2026, 15:21:06 UTC` / `07.12.2026, 15:21:06 UTC`.
    pub fn datetime(self, t: OffsetDateTime) -> String {
        let t = t.to_offset(time::UtcOffset::UTC);
        match self {
            Lang::En => format!(
                "{} {} {}, {:02}:{:02}:{:02} UTC",
                t.day(),
                EN_MONTHS[usize::from(u8::from(t.month())) - 1],
                t.year(),
                t.hour(),
                t.minute(),
                t.second()
            ),
            Lang::Ru => format!(
                "{:02}.{:02}.{}, {:02}:{:02}:{:02} UTC",
                t.day(),
                u8::from(t.month()),
                t.year(),
                t.hour(),
                t.minute(),
                t.second()
            ),
        }
    }

    /// A moment given in Unix milliseconds; `—` for 0 (never).
    pub fn datetime_ms(self, ms: i64) -> String {
        if ms <= 0 {
            return "—".into();
        }
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .map(|t| self.datetime(t))
            .unwrap_or_else(|_| "—".into())
    }

    /// A span of time, its two largest units: `2 h 5 min` / `2 ч 5 мин`.
    pub fn duration(self, secs: u64) -> String {
        let (d, h, m, s) = (
            secs / 86_400,
            secs % 86_400 / 3600,
            secs % 3600 / 60,
            secs % 60,
        );
        let [ud, uh, um, us] = match self {
            Lang::En => ["d", "h", "min", "s"],
            Lang::Ru => ["д", "ч", "мин", "с"],
        };
        let parts = [(d, ud), (h, uh), (m, um), (s, us)];
        let first = parts.iter().position(|(v, _)| *v > 0).unwrap_or(3);
        parts[first..]
            .iter()
            .take(2)
            .filter(|(v, _)| *v > 0 || first == 3)
            .map(|(v, u)| format!("{}\u{a0}{u}", self.number(*v as i64)))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

const EN_MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// The language of `Accept-Language` with the highest weight that the console speaks.
fn from_accept_language(header: &str) -> Option<Lang> {
    let mut best: Option<(f32, Lang)> = None;
    for item in header.split(',') {
        let mut parts = item.split(';');
        let tag = parts.next().unwrap_or_default();
        let q = parts
            .find_map(|p| p.trim().strip_prefix("q="))
            .and_then(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if let Some(lang) = Lang::parse(tag)
            && q > 0.0
            && best.is_none_or(|(b, _)| q > b)
        {
            best = Some((q, lang));
        }
    }
    best.map(|(_, l)| l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_best_spoken_language() {
        assert_eq!(
            from_accept_language("ru-RU,ru;q=0.9,en;q=0.8"),
            Some(Lang::Ru)
        );
        assert_eq!(
            from_accept_language("de-DE,en;q=0.5,ru;q=0.7"),
            Some(Lang::Ru)
        );
        assert_eq!(from_accept_language("en-US"), Some(Lang::En));
        assert_eq!(from_accept_language("de, fr;q=0.5"), None);
        assert_eq!(from_accept_language("ru;q=0"), None);
        assert_eq!(from_accept_language(""), None);
    }

    #[test]
    fn numbers_are_grouped_per_language() {
        assert_eq!(Lang::En.number(1_234_567), "1,234,567");
        assert_eq!(Lang::Ru.number(1_234_567), "1\u{a0}234\u{a0}567");
        assert_eq!(Lang::En.number(-1000), "-1,000");
        assert_eq!(Lang::En.number(999), "999");
        assert_eq!(Lang::En.number(0), "0");
    }

    #[test]
    fn money_is_written_per_language() {
        let eur = Currency::EUR;
        assert_eq!(Lang::En.money(Money(123_456), &eur), "€1,234.56");
        assert_eq!(Lang::Ru.money(Money(123_456), &eur), "1\u{a0}234,56\u{a0}€");
        assert_eq!(Lang::En.money(Money(-5), &eur), "-€0.05");
        let jpy = Currency::parse("JPY").unwrap();
        assert_eq!(Lang::En.money(Money(1200), &jpy), "1,200\u{a0}JPY");
        let rub = Currency::parse("RUB").unwrap();
        assert_eq!(Lang::Ru.money(Money(9_900), &rub), "99,00\u{a0}₽");
    }

    #[test]
    fn dates_and_durations_are_written_per_language() {
        let t = time::macros::datetime!(2026-12-07 15:21:06 UTC);
        assert_eq!(Lang::En.datetime(t), "7 Dec 2026, 15:21:06 UTC");
        assert_eq!(Lang::Ru.datetime(t), "07.12.2026, 15:21:06 UTC");
        assert_eq!(Lang::En.datetime_ms(0), "—");
        assert_eq!(Lang::En.duration(7500), "2\u{a0}h 5\u{a0}min");
        assert_eq!(Lang::Ru.duration(7500), "2\u{a0}ч 5\u{a0}мин");
        assert_eq!(Lang::En.duration(0), "0\u{a0}s");
        assert_eq!(Lang::En.duration(3600), "1\u{a0}h");
        assert_eq!(Lang::En.bytes(1536), "1.5 KB");
        assert_eq!(Lang::Ru.bytes(100), "100 Б");
    }

    #[test]
    fn tags_parse() {
        assert_eq!(Lang::parse("ru-RU"), Some(Lang::Ru));
        assert_eq!(Lang::parse("EN"), Some(Lang::En));
        assert_eq!(Lang::parse("de"), None);
    }
}
