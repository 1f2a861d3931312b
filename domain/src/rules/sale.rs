//! Sales: what kind of sale a sale is (studio or normal), its lines and total,
//! its draft → final life, and the numbers printed on invoices and orders.

use super::money::{Currency, Money, MoneyError};
use serde::{Deserialize, Serialize};

/// Where a sale came from. Metadata for audit, analytics and where to send
/// notifications: no business rule reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Web,
    Mobile,
    WalkIn,
    Whatsapp,
    Facebook,
    Instagram,
    Telegram,
}

impl Channel {
    pub const ALL: [Channel; 7] = [
        Channel::Web,
        Channel::Mobile,
        Channel::WalkIn,
        Channel::Whatsapp,
        Channel::Facebook,
        Channel::Instagram,
        Channel::Telegram,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Web => "web",
            Channel::Mobile => "mobile",
            Channel::WalkIn => "walk_in",
            Channel::Whatsapp => "whatsapp",
            Channel::Facebook => "facebook",
            Channel::Instagram => "instagram",
            Channel::Telegram => "telegram",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SaleStatus {
    Draft,
    Final,
}

impl SaleStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SaleStatus::Draft => "draft",
            SaleStatus::Final => "final",
        }
    }

    pub fn parse(s: &str) -> Option<SaleStatus> {
        match s {
            "draft" => Some(SaleStatus::Draft),
            "final" => Some(SaleStatus::Final),
            _ => None,
        }
    }
}

/// A studio sale needs production; a normal sale leaves the shelf at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SaleKind {
    Studio,
    Normal,
}

/// A sale is a studio sale when any line's product requires production. The
/// products' `requires_production` flags are the only input: never the channel.
pub fn sale_kind(requires_production: impl IntoIterator<Item = bool>) -> SaleKind {
    if requires_production.into_iter().any(|r| r) { SaleKind::Studio } else { SaleKind::Normal }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaleError {
    #[error("a sale needs at least one line")]
    NoLines,
    #[error("line {line}: quantity must be at least 1")]
    InvalidQuantity { line: usize },
    #[error("line {line}: unit price must not be negative")]
    NegativePrice { line: usize },
    #[error("line {line}: {source}")]
    Money { line: usize, source: MoneyError },
    #[error("the sale is already final")]
    AlreadyFinal,
    #[error("sale {invoice_no} is a draft: production starts when it is final")]
    Draft { invoice_no: String },
    #[error("amount_minor: {amount} is more than the {owed} the sale still owes")]
    PaymentExceedsBalance { amount: i64, owed: i64 },
}

/// What a sale of `total` still owes after `paid` (computed in i128: no
/// overflow whatever the rows hold), and whether a payment of `amount` fits.
pub fn check_payment(total: i64, paid: &[i64], amount: i64) -> Result<(), SaleError> {
    let paid: i128 = paid.iter().map(|p| i128::from(*p)).sum();
    let owed = (i128::from(total) - paid).max(0);
    if i128::from(amount) > owed {
        return Err(SaleError::PaymentExceedsBalance { amount, owed: i64::try_from(owed).unwrap_or(i64::MAX) });
    }
    Ok(())
}

#[cfg(test)]
mod payment_tests {
    use super::*;

    #[test]
    fn a_payment_fits_what_is_still_owed_and_no_more() {
        assert_eq!(check_payment(1000, &[400], 600), Ok(()));
        assert_eq!(check_payment(1000, &[400], 601), Err(SaleError::PaymentExceedsBalance { amount: 601, owed: 600 }));
        assert_eq!(check_payment(1000, &[1000], 1), Err(SaleError::PaymentExceedsBalance { amount: 1, owed: 0 }));
        assert_eq!(
            check_payment(i64::MAX, &[i64::MAX, i64::MAX], 1).unwrap_err().to_string().split(':').next(),
            Some("amount_minor")
        );
    }
}

/// One line as priced: quantity × unit price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PricedLine {
    pub quantity: i32,
    pub unit_price: Money,
}

impl PricedLine {
    pub fn total(&self) -> Result<Money, MoneyError> {
        self.unit_price.checked_mul(i64::from(self.quantity))
    }
}

/// The total of a sale's lines, all in the sale's currency.
pub fn sale_total(currency: Currency, lines: &[PricedLine]) -> Result<Money, SaleError> {
    if lines.is_empty() {
        return Err(SaleError::NoLines);
    }
    let mut total = Money::zero(currency);
    for (i, line) in lines.iter().enumerate() {
        let n = i + 1;
        if line.quantity < 1 {
            return Err(SaleError::InvalidQuantity { line: n });
        }
        if line.unit_price.minor < 0 {
            return Err(SaleError::NegativePrice { line: n });
        }
        let line_total = line.total().map_err(|source| SaleError::Money { line: n, source })?;
        total = total.checked_add(line_total).map_err(|source| SaleError::Money { line: n, source })?;
    }
    Ok(total)
}

/// Completing a sale: only a draft may become final.
pub fn complete(status: SaleStatus) -> Result<SaleStatus, SaleError> {
    match status {
        SaleStatus::Draft => Ok(SaleStatus::Final),
        SaleStatus::Final => Err(SaleError::AlreadyFinal),
    }
}

/// Completing a sale that has `line_count` lines: only a draft, and only one
/// with at least one line (a draft opened from a chat starts empty).
pub fn complete_with_lines(status: SaleStatus, line_count: usize) -> Result<SaleStatus, SaleError> {
    let next = complete(status)?;
    if line_count == 0 {
        return Err(SaleError::NoLines);
    }
    Ok(next)
}

/// Production starts for a sale only once it is final.
pub fn ready_for_production(status: SaleStatus, invoice_no: &str) -> Result<(), SaleError> {
    match status {
        SaleStatus::Final => Ok(()),
        SaleStatus::Draft => Err(SaleError::Draft { invoice_no: invoice_no.to_owned() }),
    }
}

/// The invoice period of a date: `YYYYMM`.
pub fn invoice_period(year: i32, month: u32) -> String {
    format!("{year:04}{month:02}")
}

/// `INV-202601-0001`: the business's `seq`-th sale of the period, the
/// number padded with zeros to [`INVOICE_SEQ_DIGITS`] digits.
pub fn invoice_no(period: &str, seq: i32) -> String {
    format!("{}{seq:0width$}", invoice_prefix(period), width = INVOICE_SEQ_DIGITS as usize)
}

/// What precedes the number in a period's invoice numbers: `INV-202601-`.
pub fn invoice_prefix(period: &str) -> String {
    format!("INV-{period}-")
}

/// The fewest digits of the number in an invoice number (more when needed).
pub const INVOICE_SEQ_DIGITS: i32 = 4;

/// The production order number of a sale: `PO-202601-0001` for `INV-202601-0001`.
pub fn order_no(invoice_no: &str) -> String {
    format!("PO-{}", invoice_no.strip_prefix("INV-").unwrap_or(invoice_no))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn usd(minor: i64) -> Money {
        Money::new(minor, "USD".parse().unwrap())
    }

    #[test]
    fn a_sale_is_a_studio_sale_when_any_product_requires_production() {
        assert_eq!(sale_kind([false, true, false]), SaleKind::Studio);
        assert_eq!(sale_kind([false, false]), SaleKind::Normal);
        assert_eq!(sale_kind([]), SaleKind::Normal);
    }

    #[test]
    fn totals_multiply_and_add_lines() {
        let lines =
            [PricedLine { quantity: 2, unit_price: usd(1250) }, PricedLine { quantity: 1, unit_price: usd(99) }];
        assert_eq!(sale_total("USD".parse().unwrap(), &lines), Ok(usd(2599)));
    }

    #[test]
    fn bad_lines_are_named() {
        let c = "USD".parse().unwrap();
        assert_eq!(sale_total(c, &[]), Err(SaleError::NoLines));
        let lines = [PricedLine { quantity: 1, unit_price: usd(1) }, PricedLine { quantity: 0, unit_price: usd(1) }];
        assert_eq!(sale_total(c, &lines), Err(SaleError::InvalidQuantity { line: 2 }));
        let lines = [PricedLine { quantity: 1, unit_price: usd(-1) }];
        assert_eq!(sale_total(c, &lines), Err(SaleError::NegativePrice { line: 1 }));
        let inr = Money::new(1, "INR".parse().unwrap());
        assert!(matches!(
            sale_total(c, &[PricedLine { quantity: 1, unit_price: inr }]),
            Err(SaleError::Money { line: 1, source: MoneyError::CurrencyMismatch(..) })
        ));
    }

    #[test]
    fn only_a_draft_completes() {
        assert_eq!(complete(SaleStatus::Draft), Ok(SaleStatus::Final));
        assert_eq!(complete(SaleStatus::Final), Err(SaleError::AlreadyFinal));
        assert_eq!(complete_with_lines(SaleStatus::Draft, 1), Ok(SaleStatus::Final));
        assert_eq!(complete_with_lines(SaleStatus::Draft, 0), Err(SaleError::NoLines));
        assert_eq!(complete_with_lines(SaleStatus::Final, 0), Err(SaleError::AlreadyFinal));
    }

    #[test]
    fn production_waits_for_a_final_sale() {
        assert_eq!(ready_for_production(SaleStatus::Final, "INV-202601-0001"), Ok(()));
        let e = ready_for_production(SaleStatus::Draft, "INV-202601-0002").unwrap_err();
        assert_eq!(e, SaleError::Draft { invoice_no: "INV-202601-0002".into() });
        assert_eq!(e.to_string(), "sale INV-202601-0002 is a draft: production starts when it is final");
    }

    #[test]
    fn numbers_follow_the_invoice() {
        let inv = invoice_no(&invoice_period(2026, 1), 1);
        assert_eq!(inv, "INV-202601-0001");
        assert_eq!(order_no(&inv), "PO-202601-0001");
        assert_eq!(order_no("X-7"), "PO-X-7");
    }

    proptest! {
        #[test]
        fn kind_ignores_order_and_is_studio_iff_any(flags in proptest::collection::vec(any::<bool>(), 0..20)) {
            let mut reversed = flags.clone();
            reversed.reverse();
            prop_assert_eq!(sale_kind(flags.clone()), sale_kind(reversed));
            prop_assert_eq!(sale_kind(flags.clone()) == SaleKind::Studio, flags.contains(&true));
        }
    }
}
