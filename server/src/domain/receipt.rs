//! Receipts: the record handed to the customer, as data and as printer text.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::macros::format_description;
use utoipa::ToSchema;

use super::money::{Currency, Money, format_amount};
use super::pricing::{PricedCart, Quantity, TaxLine};

/// Narrowest receipt rendered: 58 mm printers print about 32 columns, some only 24.
pub const MIN_WIDTH: usize = 24;
/// Widest receipt rendered: 80 mm printers in condensed font.
pub const MAX_WIDTH: usize = 80;
/// Lines an item name may take before it is cut, so one long name cannot eat paper.
const NAME_MAX_LINES: usize = 2;

/// A completed sale as printed and stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Receipt {
    /// Printed as the header.
    pub store_name: String,
    /// Lines printed under the name (address, VAT number), as HQ set them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub header: Vec<String>,
    /// The sale's id, printed so a receipt can be traced back (returns, disputes).
    pub sale_id: String,
    /// Till that made the sale.
    pub terminal_id: String,
    /// When the sale completed, RFC 3339.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Currency of every amount.
    pub currency: Currency,
    /// Items in cart order.
    pub lines: Vec<ReceiptLine>,
    /// Sum of line gross amounts.
    pub subtotal: Money,
    /// Sum of line discounts.
    pub discount_total: Money,
    /// Tax per class.
    pub taxes: Vec<TaxLine>,
    /// Sum of `taxes`.
    pub tax_total: Money,
    /// What the customer paid for.
    pub total: Money,
    /// Whether `total` contains the taxes or they were added.
    pub prices_include_tax: bool,
    /// How it was paid.
    pub tenders: Vec<ReceiptTender>,
    /// Cash handed back.
    pub change: Money,
    /// Points earned and redeemed, vouchers used, and the balances as the unit knew them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loyalty: Option<super::loyalty::SaleLoyalty>,
}

/// One item on a receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReceiptLine {
    /// Product name at the time of sale.
    pub name: String,
    /// Units or grams.
    pub quantity: Quantity,
    /// Per unit, or per kilogram for weighed items.
    pub unit_price: Money,
    /// Before discount.
    pub gross: Money,
    /// Taken off by a promotion.
    pub discount: Money,
    /// The promotion, when one used the line.
    pub promotion_name: Option<String>,
    /// `gross - discount`.
    pub total: Money,
}

/// One payment towards a sale.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReceiptTender {
    /// `"cash"`, `"card"` or `"wallet"`.
    pub method: String,
    /// Amount tendered (for cash, what the customer handed over).
    pub amount: Money,
    /// Last four digits of the card, never more: receipts are not PCI-protected.
    #[serde(default)]
    pub card_last4: Option<String>,
    /// Authorization code from the card terminal, for disputes.
    #[serde(default)]
    pub auth_code: Option<String>,
    /// The payment brand the terminal reported (`VISA`, `ApplePay`, ...); a wallet
    /// tender is printed under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand: Option<String>,
}

impl Receipt {
    /// Builds a receipt from a priced cart and how it was paid.
    pub fn from_priced(
        store_name: impl Into<String>,
        sale_id: impl Into<String>,
        terminal_id: impl Into<String>,
        at: OffsetDateTime,
        cart: &PricedCart,
        tenders: Vec<ReceiptTender>,
        change: Money,
    ) -> Receipt {
        Receipt {
            store_name: store_name.into(),
            header: Vec::new(),
            sale_id: sale_id.into(),
            terminal_id: terminal_id.into(),
            at,
            currency: cart.currency,
            lines: cart
                .lines
                .iter()
                .map(|l| ReceiptLine {
                    name: l.name.clone(),
                    quantity: l.quantity,
                    unit_price: l.unit_price,
                    gross: l.gross,
                    discount: l.discount,
                    promotion_name: l.promotion_name.clone(),
                    total: l.total,
                })
                .collect(),
            subtotal: cart.subtotal,
            discount_total: cart.discount_total,
            taxes: cart.taxes.clone(),
            tax_total: cart.tax_total,
            total: cart.total,
            prices_include_tax: cart.prices_include_tax,
            tenders,
            change,
            loyalty: None,
        }
    }

    /// Renders the receipt as plain text for a receipt printer, one `\n`-terminated line
    /// per printed line, none longer than `width` characters (clamped to
    /// [`MIN_WIDTH`]..=[`MAX_WIDTH`]). Amounts are right-aligned; control characters in
    /// names are blanked so they cannot smuggle printer commands.
    pub fn render_text(&self, width: usize) -> String {
        let width = width.clamp(MIN_WIDTH, MAX_WIDTH);
        let money = |m: Money| format_amount(m, &self.currency);
        let minus = |m: Money| money(Money(m.minor().saturating_neg()));
        let mut out = Lines::new(width);

        out.centered(&self.store_name);
        for line in &self.header {
            out.centered(line);
        }
        out.text(&format!("Terminal {}", self.terminal_id));
        out.rule();

        for line in &self.lines {
            out.columns_limited(0, &line.name, &money(line.gross), NAME_MAX_LINES);
            match line.quantity {
                Quantity::Units(1) => {}
                Quantity::Units(units) => {
                    out.indented(2, &format!("{units} x {}", money(line.unit_price)));
                }
                Quantity::Grams(grams) => out.indented(
                    2,
                    &format!(
                        "{}.{:03} kg x {}/kg",
                        grams / 1000,
                        grams % 1000,
                        money(line.unit_price)
                    ),
                ),
            }
            if line.discount.minor() != 0 {
                let label = line.promotion_name.as_deref().unwrap_or("Discount");
                out.columns_limited(2, label, &minus(line.discount), 1);
            }
        }
        out.rule();

        out.columns(0, "Subtotal", &money(self.subtotal));
        if self.discount_total.minor() != 0 {
            out.columns(0, "Discounts", &minus(self.discount_total));
        }
        let total_label = format!("TOTAL {}", self.currency.code());
        if self.prices_include_tax {
            out.columns(0, &total_label, &money(self.total));
            if !self.taxes.is_empty() {
                out.text("Taxes included:");
            }
            for tax in &self.taxes {
                out.columns(2, &tax_label(tax), &money(tax.tax));
            }
        } else {
            for tax in &self.taxes {
                out.columns(0, &tax_label(tax), &money(tax.tax));
            }
            out.columns(0, &total_label, &money(self.total));
        }
        out.rule();

        for tender in &self.tenders {
            let mut label = match tender.method.as_str() {
                "cash" => "Cash".to_owned(),
                "card" => "Card".to_owned(),
                "wallet" => tender.brand.clone().unwrap_or_else(|| "Wallet".to_owned()),
                "points" => "Points".to_owned(),
                "voucher" => "Voucher".to_owned(),
                other => other.to_owned(),
            };
            if let Some(last4) = &tender.card_last4 {
                label.push_str(" ****");
                label.push_str(last4);
            }
            out.columns(0, &label, &money(tender.amount));
            if let Some(auth) = &tender.auth_code {
                out.indented(2, &format!("Auth {auth}"));
            }
        }
        if self.change.minor() != 0 || self.tenders.iter().any(|t| t.method == "cash") {
            out.columns(0, "Change", &money(self.change));
        }
        out.rule();
        if let Some(l) = &self.loyalty {
            loyalty_lines(&mut out, l, &money);
        }

        out.text(&format!("Sale {}", self.sale_id));
        out.text(&format_time(self.at));
        out.finish()
    }
}

/// Points earned and redeemed and the balances after the sale, as the unit knew them.
fn loyalty_lines(
    out: &mut Lines,
    l: &super::loyalty::SaleLoyalty,
    money: &dyn Fn(Money) -> String,
) {
    if let Some(balance) = l.points_balance {
        out.columns(0, "Points earned", &l.points_earned.to_string());
        if l.points_redeemed != 0 {
            out.columns(0, "Points redeemed", &l.points_redeemed.to_string());
        }
        out.columns(0, "Points balance", &balance.to_string());
    }
    for v in &l.vouchers {
        out.columns(0, "Voucher balance", &money(Money(v.balance)));
    }
    out.rule();
}

/// `VAT reduced 7.00%`.
fn tax_label(tax: &TaxLine) -> String {
    format!(
        "VAT {} {}.{:02}%",
        tax.tax_class,
        tax.rate_bp / 100,
        tax.rate_bp % 100
    )
}

/// `2025-06-01 12:00:00 UTC`, or with the numeric offset for local times.
fn format_time(at: OffsetDateTime) -> String {
    let date_time = at
        .format(format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second]"
        ))
        .unwrap_or_default();
    if at.offset().is_utc() {
        format!("{date_time} UTC")
    } else {
        let offset = at
            .format(format_description!(
                "[offset_hour sign:mandatory]:[offset_minute]"
            ))
            .unwrap_or_default();
        format!("{date_time} {offset}")
    }
}

/// Builds printer lines that never exceed the width.
struct Lines {
    width: usize,
    out: String,
}

impl Lines {
    fn new(width: usize) -> Lines {
        Lines {
            width,
            out: String::new(),
        }
    }

    fn push(&mut self, line: &str) {
        self.out.push_str(line.trim_end());
        self.out.push('\n');
    }

    fn rule(&mut self) {
        let rule = "-".repeat(self.width);
        self.push(&rule);
    }

    fn text(&mut self, text: &str) {
        self.indented(0, text);
    }

    fn indented(&mut self, indent: usize, text: &str) {
        for line in wrap(text, self.width - indent) {
            self.push(&format!("{:indent$}{line}", ""));
        }
    }

    fn centered(&mut self, text: &str) {
        for line in wrap(text, self.width) {
            let pad = (self.width - line.chars().count()) / 2;
            self.push(&format!("{:pad$}{line}", ""));
        }
    }

    fn columns(&mut self, indent: usize, left: &str, right: &str) {
        self.columns_limited(indent, left, right, usize::MAX);
    }

    /// `left` wrapped (to at most `max_lines` lines, the last one cut) with `right`
    /// right-aligned on its first line.
    fn columns_limited(&mut self, indent: usize, left: &str, right: &str, max_lines: usize) {
        let right_len = right.chars().count();
        // Room for the indent, at least 4 characters of text and a space.
        if indent + 5 + right_len > self.width {
            self.indented(indent, left);
            let width = self.width;
            for part in wrap(right, width) {
                self.push(&format!("{part:>width$}"));
            }
            return;
        }
        let room = self.width - indent - 1 - right_len;
        let mut parts = wrap(left, room);
        if parts.len() > max_lines {
            parts.truncate(max_lines.max(1));
            if let Some(last) = parts.last_mut() {
                let kept: String = last.chars().take(room.saturating_sub(3)).collect();
                *last = format!("{kept}...");
            }
        }
        for (i, part) in parts.iter().enumerate() {
            if i == 0 {
                self.push(&format!("{:indent$}{part:<room$} {right}", ""));
            } else {
                self.push(&format!("{:indent$}{part}", ""));
            }
        }
    }

    fn finish(self) -> String {
        self.out
    }
}

/// Word-wraps `text` to lines of at most `width` characters (at least 1), splitting
/// words that are longer than a line. Control characters become spaces. Always returns
/// at least one (possibly empty) line.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut lines = Vec::new();
    let mut current = String::new();
    let mut current_len = 0;
    for word in clean.split_whitespace() {
        let chars: Vec<char> = word.chars().collect();
        for chunk in chars.chunks(width) {
            let needed = if current_len == 0 {
                chunk.len()
            } else {
                current_len + 1 + chunk.len()
            };
            if needed > width {
                lines.push(std::mem::take(&mut current));
                current_len = 0;
            }
            if current_len > 0 {
                current.push(' ');
                current_len += 1;
            }
            current.extend(chunk);
            current_len += chunk.len();
        }
    }
    if current_len > 0 || lines.is_empty() {
        lines.push(current);
    }
    lines
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::domain::pricing::PricedLine;
    use crate::domain::product::{Sku, SoldBy};

    fn line(name: &str, quantity: Quantity, unit_price: i64, gross: i64) -> PricedLine {
        PricedLine {
            sku: Sku::parse("X").unwrap(),
            name: name.into(),
            category: "food".into(),
            tax_class: "reduced".into(),
            sold_by: match quantity {
                Quantity::Units(_) => SoldBy::Each,
                Quantity::Grams(_) => SoldBy::Weight,
            },
            quantity,
            unit_price: Money(unit_price),
            gross: Money(gross),
            discount: Money(0),
            promotion_id: None,
            promotion_name: None,
            total: Money(gross),
            slot: None,
        }
    }

    fn cart(include_tax: bool) -> PricedCart {
        let mut milk = line("Alpenhof Whole Milk 1 L", Quantity::Units(2), 129, 258);
        milk.discount = Money(26);
        milk.total = Money(232);
        milk.promotion_id = Some("MILK10".into());
        milk.promotion_name = Some("Milk 10 % off".into());
        let apples = line("Regional Apples", Quantity::Grams(350), 349, 122);
        let long = line(
            "Extraordinarily Long Product Name That Keeps Going Well Past Any Receipt Width \
             Because Marketing Wrote It",
            Quantity::Units(1),
            99,
            99,
        );
        let lines_total = 232 + 122 + 99;
        let tax = 30;
        PricedCart {
            currency: Currency::EUR,
            lines: vec![milk, apples, long],
            subtotal: Money(258 + 122 + 99),
            discount_total: Money(26),
            taxes: vec![TaxLine {
                tax_class: "reduced".into(),
                rate_bp: 700,
                base: Money(lines_total),
                tax: Money(tax),
            }],
            tax_total: Money(tax),
            total: Money(if include_tax {
                lines_total
            } else {
                lines_total + tax
            }),
            prices_include_tax: include_tax,
            age_restricted: false,
        }
    }

    fn receipt(include_tax: bool) -> Receipt {
        Receipt::from_priced(
            "Outpost Corner Shop Hauptstraße 1",
            "0197a3f2-7c1e-7b7a-9a51-6c1d2e3f4a5b",
            "till-1",
            datetime!(2025-06-01 12:34:56 UTC),
            &cart(include_tax),
            vec![
                ReceiptTender {
                    method: "card".into(),
                    amount: Money(200),
                    card_last4: Some("4242".into()),
                    auth_code: Some("A1B2C3".into()),
                    brand: Some("VISA".into()),
                },
                ReceiptTender {
                    method: "cash".into(),
                    amount: Money(300),
                    card_last4: None,
                    auth_code: None,
                    brand: None,
                },
            ],
            Money(47),
        )
    }

    #[test]
    fn from_priced_copies_the_cart() {
        let r = receipt(true);
        let c = cart(true);
        assert_eq!(r.lines.len(), 3);
        assert_eq!(r.lines[0].promotion_name.as_deref(), Some("Milk 10 % off"));
        assert_eq!(r.lines[1].quantity, Quantity::Grams(350));
        assert_eq!(r.total, c.total);
        assert_eq!(r.taxes, c.taxes);
        assert_eq!(r.change, Money(47));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["at"], "2025-06-01T12:34:56Z");
        assert_eq!(json["currency"], "EUR");
        assert_eq!(serde_json::from_value::<Receipt>(json).unwrap(), r);
    }

    #[test]
    fn loyalty_prints_points_and_balances_within_the_width() {
        let mut r = receipt(true);
        assert!(!r.render_text(32).contains("Points"));
        r.loyalty = Some(crate::domain::loyalty::SaleLoyalty {
            tier: Some("gold".into()),
            points_earned: 12,
            points_redeemed: 100,
            points_balance: Some(912),
            vouchers: vec![crate::domain::loyalty::VoucherUse {
                voucher_id: "v-1".into(),
                amount: Money(150),
                balance: 1_850,
            }],
        });
        let text = r.render_text(MIN_WIDTH);
        for want in [
            "Points earned",
            "Points redeemed",
            "Points balance",
            "912",
            "18.50",
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
        assert!(
            text.lines().all(|l| l.chars().count() <= MIN_WIDTH),
            "{text}"
        );
        // Balances only: no voucher id or code on paper.
        assert!(!text.contains("v-1"));
    }

    #[test]
    fn no_line_is_wider_than_the_clamped_width() {
        for (asked, clamped) in [
            (0, 24),
            (10, 24),
            (24, 24),
            (32, 32),
            (42, 42),
            (80, 80),
            (500, 80),
        ] {
            for include_tax in [true, false] {
                let text = receipt(include_tax).render_text(asked);
                let widest = text.lines().map(|l| l.chars().count()).max().unwrap();
                assert_eq!(widest, clamped, "asked {asked}:\n{text}");
                assert!(text.ends_with('\n'));
            }
        }
    }

    #[test]
    fn extreme_amounts_and_names_still_fit() {
        let mut r = receipt(true);
        r.lines[0].gross = Money(i64::MIN);
        r.lines[0].discount = Money(i64::MIN);
        r.lines[0].name = "W".repeat(300);
        r.total = Money(i64::MAX);
        r.store_name = "\u{1b}@ESC-injection\nStore".into();
        for width in [24, 33, 80] {
            let text = r.render_text(width);
            assert!(text.lines().all(|l| l.chars().count() <= width), "{text}");
            assert!(text.contains("92233720368547758.07"));
            assert!(!text.contains('\u{1b}'));
        }
    }

    #[test]
    fn content_of_a_tax_inclusive_receipt() {
        let text = receipt(true).render_text(40);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].trim() == "Outpost Corner Shop Hauptstraße 1",
            "{text}"
        );
        let item = lines
            .iter()
            .position(|l| l.starts_with("Alpenhof Whole Milk 1 L"))
            .unwrap();
        assert!(lines[item].ends_with(" 2.58"));
        assert_eq!(lines[item].chars().count(), 40);
        assert_eq!(lines[item + 1], "  2 x 1.29");
        assert!(
            lines[item + 2].starts_with("  Milk 10 % off") && lines[item + 2].ends_with("-0.26")
        );
        assert!(text.contains("\n  0.350 kg x 3.49/kg\n"), "{text}");
        // The long name takes two lines, the second cut with an ellipsis.
        let long = lines
            .iter()
            .position(|l| l.starts_with("Extraordinarily"))
            .unwrap();
        assert!(lines[long].ends_with(" 0.99"));
        assert!(lines[long + 1].ends_with("..."), "{}", lines[long + 1]);
        assert!(text.contains("Subtotal") && text.contains("Discounts"));
        let total = lines
            .iter()
            .position(|l| l.starts_with("TOTAL EUR"))
            .unwrap();
        assert!(lines[total].ends_with(" 4.53"));
        let vat = lines
            .iter()
            .position(|l| l.contains("VAT reduced 7.00%"))
            .unwrap();
        assert!(vat > total, "inclusive tax is stated after the total");
        assert!(lines[vat].ends_with(" 0.30"));
        assert!(text.contains("Card ****4242"));
        assert!(text.contains("  Auth A1B2C3"));
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("Change") && l.ends_with(" 0.47"))
        );
        // "Sale <uuid>" is 41 characters: the id moves, whole, to its own line.
        assert!(
            text.contains("Sale\n0197a3f2-7c1e-7b7a-9a51-6c1d2e3f4a5b\n"),
            "{text}"
        );
        assert!(text.ends_with("2025-06-01 12:34:56 UTC\n"));
    }

    #[test]
    fn tax_exclusive_receipt_adds_tax_before_the_total() {
        let text = receipt(false).render_text(32);
        let vat = text.find("VAT reduced 7.00%").unwrap();
        let total = text.find("TOTAL EUR").unwrap();
        assert!(vat < total);
        assert!(!text.contains("Taxes included"));
        assert!(
            text.lines()
                .any(|l| l.starts_with("TOTAL EUR") && l.ends_with(" 4.83"))
        );
    }

    #[test]
    fn long_ids_wrap_and_times_keep_their_offset() {
        let mut r = receipt(true);
        r.sale_id = "S".repeat(50);
        r.at = datetime!(2025-06-01 14:34:56 +02:00);
        let text = r.render_text(24);
        let joined: String = text.lines().filter(|l| l.starts_with('S')).collect();
        assert!(joined.contains(&"S".repeat(50)), "{text}");
        assert!(text.lines().all(|l| l.chars().count() <= 24));
        let wider = r.render_text(32);
        assert!(wider.ends_with("\n2025-06-01 14:34:56 +02:00\n"), "{wider}");
    }

    #[test]
    fn wrap_splits_words_and_long_tokens() {
        assert_eq!(wrap("a bb ccc", 4), ["a bb", "ccc"]);
        assert_eq!(wrap("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        assert_eq!(wrap("", 4), [""]);
        assert_eq!(wrap("x\ty\u{7}z", 10), ["x y z"]);
        assert_eq!(wrap("äöü äöü", 3), ["äöü", "äöü"]);
    }
}
